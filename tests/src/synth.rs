//! Generated OSTree archive repositories of any size, for benchmarks: real commits, dirtrees and
//! dirmetas, encoded as ostree encodes them and named by their SHA-256, so that the real
//! `ostree` reads them (a test runs `ostree fsck` on one). Content objects (`.filez`) are
//! written too unless `content` is off: a reachability index never reads them, and a million of
//! them cost minutes and gigabytes of small files.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_bytes::ByteBuf;
use zgvariant::serialized::Context;
use zgvariant::{LE, Variant, to_bytes};

/// The shape of a generated repository.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Refs (`app/org.example.AppN/x86_64/stable`), each with a tree of its own.
    pub refs: usize,
    /// Every `gated_every`th ref carries `xa.token-type = 2`; 0 for none.
    pub gated_every: usize,
    /// Objects to generate in all, roughly (files, dirtrees, dirmetas and commits).
    pub objects: usize,
    /// Files per directory; directories nest `fanout` wide.
    pub files_per_dir: usize,
    pub fanout: usize,
    /// Write `.filez` content objects too.
    pub content: bool,
}

/// What was generated.
#[derive(Debug, Clone)]
pub struct Generated {
    pub repo: PathBuf,
    /// (ref, commit, gated)
    pub refs: Vec<(String, String, bool)>,
    pub objects: usize,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().try_into().expect("32 bytes")
}

fn gvariant<T: serde::Serialize + zgvariant::Type>(value: &T) -> Vec<u8> {
    to_bytes(Context::new(LE, 0), value)
        .expect("serializable")
        .to_vec()
}

/// ostree's framing of a header variant: its length (u32, big-endian), 4 bytes of padding,
/// then the variant.
fn framed(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + 8);
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(header);
    out
}

#[derive(Debug)]
struct Writer {
    root: PathBuf,
    content: bool,
    written: usize,
}

impl Writer {
    fn put(&mut self, checksum: &[u8; 32], ext: &str, bytes: &[u8]) {
        let hex = hex_string(checksum);
        let dir = self.root.join("objects").join(&hex[..2]);
        std::fs::create_dir_all(&dir).expect("objects dir");
        let path = dir.join(format!("{}.{ext}", &hex[2..]));
        if !path.exists() {
            std::fs::write(&path, bytes).expect("writing an object");
            self.written += 1;
        }
    }

    /// A regular file's content object; returns its checksum.
    fn file(&mut self, content: &[u8]) -> [u8; 32] {
        let (uid, gid, mode) = (0u32, 0u32, 0o100644u32);
        let no_xattrs: Vec<(ByteBuf, ByteBuf)> = Vec::new();
        let header = gvariant(&(uid.to_be(), gid.to_be(), mode.to_be(), 0u32, "", &no_xattrs));
        let mut hashed = framed(&header);
        hashed.extend_from_slice(content);
        let checksum = sha256(&hashed);
        if self.content {
            let zheader = gvariant(&(
                (content.len() as u64).to_be(),
                uid.to_be(),
                gid.to_be(),
                mode.to_be(),
                0u32,
                "",
                &no_xattrs,
            ));
            let mut filez = framed(&zheader);
            let mut deflate =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            deflate.write_all(content).expect("deflate");
            filez.extend_from_slice(&deflate.finish().expect("deflate"));
            self.put(&checksum, "filez", &filez);
        } else {
            self.written += 1;
        }
        checksum
    }

    fn dirmeta(&mut self) -> [u8; 32] {
        let no_xattrs: Vec<(ByteBuf, ByteBuf)> = Vec::new();
        let bytes = gvariant(&(0u32, 0u32, 0o40755u32.to_be(), &no_xattrs));
        let checksum = sha256(&bytes);
        self.put(&checksum, "dirmeta", &bytes);
        checksum
    }

    /// A directory `depth` levels deep: files, then subdirectories, until `budget` runs out.
    /// Returns (dirtree, dirmeta).
    fn tree(
        &mut self,
        shape: &Shape,
        seed: &str,
        budget: &mut usize,
        meta: [u8; 32],
    ) -> ([u8; 32], [u8; 32]) {
        let mut files: Vec<(String, ByteBuf)> = Vec::new();
        for i in 0..shape.files_per_dir.min(*budget) {
            let content = format!("{seed}/file{i}\n");
            files.push((
                format!("file{i:05}"),
                ByteBuf::from(self.file(content.as_bytes()).to_vec()),
            ));
            *budget -= 1;
        }
        let mut dirs: Vec<(String, ByteBuf, ByteBuf)> = Vec::new();
        for d in 0..shape.fanout {
            // A directory adds one object, its dirtree (all directories share one dirmeta), and
            // holds at least one file: no empty directories, whose dirtree GLib and zgvariant
            // encode differently (one zero byte, and no bytes).
            if *budget < 2 {
                break;
            }
            *budget -= 1;
            let (tree, meta) = self.tree(shape, &format!("{seed}/d{d}"), budget, meta);
            dirs.push((
                format!("dir{d:03}"),
                ByteBuf::from(tree.to_vec()),
                ByteBuf::from(meta.to_vec()),
            ));
        }
        // A last object of budget too small for a directory is one more file here.
        if *budget == 1 {
            let i = files.len();
            let content = format!("{seed}/file{i}\n");
            files.push((
                format!("file{i:05}"),
                ByteBuf::from(self.file(content.as_bytes()).to_vec()),
            ));
            *budget = 0;
        }
        let bytes = gvariant(&(&files, &dirs));
        let checksum = sha256(&bytes);
        self.put(&checksum, "dirtree", &bytes);
        (checksum, meta)
    }

    fn commit(
        &mut self,
        subject: &str,
        token_type: Option<i32>,
        parent: Option<[u8; 32]>,
        tree: [u8; 32],
        meta: [u8; 32],
    ) -> [u8; 32] {
        let mut metadata: HashMap<&str, Variant<'_>> = HashMap::new();
        if let Some(t) = token_type {
            metadata.insert("xa.token-type", Variant::I32(t));
        }
        let related: Vec<(&str, ByteBuf)> = Vec::new();
        let timestamp: u64 = 1_700_000_000;
        let bytes = gvariant(&(
            &metadata,
            ByteBuf::from(parent.map_or_else(Vec::new, |p| p.to_vec())),
            &related,
            subject,
            "",
            timestamp.to_be(),
            ByteBuf::from(tree.to_vec()),
            ByteBuf::from(meta.to_vec()),
        ));
        let checksum = sha256(&bytes);
        self.put(&checksum, "commit", &bytes);
        checksum
    }
}

/// Objects written straight into an archive repository, as any publisher of it can write them
/// (libostree's own `write_metadata` writes whatever variant it is given): commits and dirtrees
/// that name any checksums, and objects under names that are not their checksums.
#[derive(Debug)]
pub struct Objects {
    writer: Writer,
}

impl Objects {
    pub fn open(repo: &Path) -> Objects {
        Objects {
            writer: Writer {
                root: repo.to_owned(),
                content: true,
                written: 0,
            },
        }
    }

    /// A commit (named by its checksum) with this tree, dirmeta and parent; `token_type` as
    /// `xa.token-type`. Returns its checksum in hex.
    pub fn commit(
        &mut self,
        subject: &str,
        token_type: Option<i32>,
        parent: Option<&str>,
        tree: &str,
        meta: &str,
    ) -> String {
        let parent = parent.map(bytes_of);
        hex_string(
            &self
                .writer
                .commit(subject, token_type, parent, bytes_of(tree), bytes_of(meta)),
        )
    }

    /// A dirtree (named by its checksum) of these files (name, content checksum) and
    /// directories (name, dirtree, dirmeta). Returns its checksum in hex.
    pub fn dirtree(&mut self, files: &[(&str, &str)], dirs: &[(&str, &str, &str)]) -> String {
        let files: Vec<(String, ByteBuf)> = files
            .iter()
            .map(|(n, c)| (n.to_string(), ByteBuf::from(bytes_of(c).to_vec())))
            .collect();
        let dirs: Vec<(String, ByteBuf, ByteBuf)> = dirs
            .iter()
            .map(|(n, t, m)| {
                (
                    n.to_string(),
                    ByteBuf::from(bytes_of(t).to_vec()),
                    ByteBuf::from(bytes_of(m).to_vec()),
                )
            })
            .collect();
        let bytes = gvariant(&(&files, &dirs));
        let checksum = sha256(&bytes);
        self.writer.put(&checksum, "dirtree", &bytes);
        hex_string(&checksum)
    }

    /// A real directory's dirmeta, written under the name `checksum` (hex) rather than its own.
    pub fn dirmeta_named(&mut self, checksum: &str) {
        let no_xattrs: Vec<(ByteBuf, ByteBuf)> = Vec::new();
        let bytes = gvariant(&(0u32, 0u32, 0o40755u32.to_be(), &no_xattrs));
        self.writer.put(&bytes_of(checksum), "dirmeta", &bytes);
    }

    /// A regular file's content object; returns its checksum in hex.
    pub fn file(&mut self, content: &[u8]) -> String {
        hex_string(&self.writer.file(content))
    }

    /// `bytes` as the object `checksum` (hex) of extension `ext`, whatever they hold.
    pub fn raw(&mut self, checksum: &str, ext: &str, bytes: &[u8]) {
        self.writer.put(&bytes_of(checksum), ext, bytes);
    }
}

fn bytes_of(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("a hex checksum");
    }
    out
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Generates a repository at `root` (which must not exist).
pub fn generate(root: &Path, shape: &Shape) -> Generated {
    generate_from(root, shape, 0)
}

/// Generates refs numbered from `first_ref` on at `root`, which may already hold a generated
/// repository with other refs: what a publish adds.
pub fn generate_from(root: &Path, shape: &Shape, first_ref: usize) -> Generated {
    std::fs::create_dir_all(root.join("objects")).expect("repo dir");
    for dir in ["refs/heads", "refs/remotes", "refs/mirrors", "tmp", "state"] {
        std::fs::create_dir_all(root.join(dir)).expect("repo dir");
    }
    std::fs::write(
        root.join("config"),
        "[core]\nrepo_version=1\nmode=archive-z2\n",
    )
    .expect("config");
    let mut writer = Writer {
        root: root.to_owned(),
        content: shape.content,
        written: 0,
    };
    let meta = writer.dirmeta();
    // Each ref: a commit and a root dirtree, then files and directories to fill its share.
    let per_ref = shape.objects.div_ceil(shape.refs.max(1)).max(3);
    let mut refs = Vec::new();
    for r in first_ref..first_ref + shape.refs {
        let name = format!("app/org.example.App{r}/x86_64/stable");
        let gated = shape.gated_every != 0 && r % shape.gated_every == 0;
        let mut budget = per_ref - 2;
        let (tree, meta) = writer.tree(shape, &name, &mut budget, meta);
        let commit = writer.commit(&name, gated.then_some(2), None, tree, meta);
        let hex = hex_string(&commit);
        let path = root.join("refs/heads").join(&name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("ref dir");
        std::fs::write(&path, format!("{hex}\n")).expect("ref");
        refs.push((name, hex, gated));
    }
    Generated {
        repo: root.to_owned(),
        refs,
        objects: writer.written,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;

    #[test]
    fn the_real_ostree_accepts_what_is_generated() {
        let fx = Fixture::new();
        let shape = Shape {
            refs: 3,
            gated_every: 2,
            objects: 600,
            files_per_dir: 7,
            fanout: 3,
            content: true,
        };
        let generated = generate(&fx.join("repo"), &shape);
        let fsck = fx.ostree(&generated.repo).arg("fsck").run();
        assert!(fsck.contains("no errors found"), "{fsck}");
        fx.ostree(&generated.repo).args(["summary", "-u"]).run();
        for (name, commit, gated) in &generated.refs {
            assert_eq!(
                fx.ostree(&generated.repo)
                    .args(["rev-parse", name])
                    .run()
                    .trim(),
                commit
            );
            let listing = fx.ostree(&generated.repo).args(["ls", "-R", name]).run();
            assert!(listing.lines().count() > 50, "{listing}");
            let shown = fx
                .ostree(&generated.repo)
                .args(["show", "--print-metadata-key=xa.token-type", commit])
                .output();
            assert_eq!(shown.status.success(), *gated, "{name}");
        }
        // A client pulls it whole.
        let client = fx.join("client");
        fx.ostree(&client).args(["init", "--mode=bare-user"]).run();
        fx.ostree(&client)
            .args([
                "pull-local",
                generated.repo.to_str().unwrap(),
                &generated.refs[0].0,
            ])
            .run();
        assert!(
            fx.ostree(&client)
                .arg("fsck")
                .run()
                .contains("no errors found")
        );
    }
}
