//! The paths a client may fetch from an archive repository, as a closed grammar.
//!
//! [`RepoPath::parse`] accepts exactly the files that `ostree pull` and flatpak fetch and nothing
//! else: no `tmp/`, `state/`, `extensions/`, dotfiles, directories, empty segments or `..`. The
//! file to open is always rebuilt from the parsed value ([`RepoPath::relative_path`]), never taken
//! from the request, so a request can only ever name a file this grammar describes.

use std::fmt;

use crate::checksum::Checksum;
use crate::object::{ObjectName, ObjectType};
use crate::refs::{CollectionId, RefName};

/// One servable file of an archive repository, relative to the repository root.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RepoPath {
    /// `config`
    Config,
    /// `summary`, `summary.sig`, `summary.idx`, `summary.idx.sig`
    Summary(SummaryFile),
    /// `summaries/<sha256>.gz`, `summaries/<sha256>-<sha256>.delta` (flatpak's indexed
    /// summaries) or `summaries/<sha256>.idx.sig` (a signature of a summary index)
    SubSummary(SubSummary),
    /// `objects/ab/<62 hex>.<type>`
    Object(ObjectName),
    /// `deltas/<to>/<file>` or `deltas/<from>-<to>/<file>`, checksums in modified base64
    Delta { delta: DeltaName, file: DeltaFile },
    /// `delta-indexes/<to>.index`: the deltas that lead to a commit
    DeltaIndex(Checksum),
    /// `refs/heads/<ref>`
    Head(RefName),
    /// `refs/mirrors/<collection-id>/<ref>`
    Mirror(CollectionId, RefName),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SummaryFile {
    Summary,
    SummarySig,
    SummaryIdx,
    SummaryIdxSig,
}

/// A file in flatpak's `summaries/` folder. Sub-summaries and their deltas are named by the
/// SHA-256 of what they hold, so they never change; an index's signature is named by the digest
/// of the index it signs, and changes when the same index is signed again (another key, or the
/// same key later).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubSummary {
    /// `<digest>.gz`: a gzipped summary for one subset (an architecture).
    Compressed(Checksum),
    /// `<from>-<to>.delta`: a binary diff between two of those.
    Delta { from: Checksum, to: Checksum },
    /// `<digest>.idx.sig`: the signatures of the `summary.idx` whose SHA-256 is `digest`, which
    /// `flatpak build-update-repo --gpg-sign` writes beside `summary.idx.sig`. flatpak asks for
    /// this one first, so that the signature it gets is for the index it got, whatever a
    /// publish replaced in between.
    IndexSignature(Checksum),
}

/// A static delta: from scratch (`from` is `None`) or from one commit to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeltaName {
    pub from: Option<Checksum>,
    pub to: Checksum,
}

/// A file inside a static delta's folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeltaFile {
    Superblock,
    /// Detached metadata of the delta (signatures).
    Meta,
    /// Detached metadata of the to-commit, carried with the delta.
    CommitMeta,
    /// Part `n` of the delta's payload.
    Part(u32),
}

impl RepoPath {
    /// Parses a path relative to the repository root, already percent-decoded, without a leading
    /// `/`. Returns `None` for anything that is not a servable repository file.
    pub fn parse(path: &str) -> Option<RepoPath> {
        let mut segments = path.split('/');
        let first = segments.next()?;
        let rest: Vec<&str> = segments.collect();
        match (first, rest.as_slice()) {
            ("config", []) => Some(RepoPath::Config),
            ("summary", []) => Some(RepoPath::Summary(SummaryFile::Summary)),
            ("summary.sig", []) => Some(RepoPath::Summary(SummaryFile::SummarySig)),
            ("summary.idx", []) => Some(RepoPath::Summary(SummaryFile::SummaryIdx)),
            ("summary.idx.sig", []) => Some(RepoPath::Summary(SummaryFile::SummaryIdxSig)),
            ("summaries", [name]) => parse_sub_summary(name).map(RepoPath::SubSummary),
            ("objects", [prefix, name]) => parse_object(prefix, name).map(RepoPath::Object),
            ("deltas", [prefix, name, file]) => {
                let delta = parse_delta_name(prefix, name)?;
                Some(RepoPath::Delta {
                    delta,
                    file: parse_delta_file(file)?,
                })
            }
            ("delta-indexes", [prefix, name]) => {
                let rest = name.strip_suffix(".index")?;
                parse_split_base64(prefix, rest).map(RepoPath::DeltaIndex)
            }
            ("refs", ["heads", name @ ..]) if !name.is_empty() => {
                RefName::new(&name.join("/")).ok().map(RepoPath::Head)
            }
            ("refs", ["mirrors", cid, name @ ..]) if !name.is_empty() => Some(RepoPath::Mirror(
                CollectionId::new(cid).ok()?,
                RefName::new(&name.join("/")).ok()?,
            )),
            _ => None,
        }
    }

    /// The file's path relative to the repository root, rebuilt from the parsed parts.
    pub fn relative_path(&self) -> String {
        self.to_string()
    }

    /// Whether the file's content can never change under this name: objects named after what
    /// they hold (the checksum of their bytes) and flatpak's sub-summaries and their deltas.
    /// Not static deltas: a delta is named by the commits it joins, and generating the same
    /// delta again (with other options) rewrites its superblock and parts in place. Detached
    /// metadata (`.commitmeta`, a delta's `meta` and `commitmeta`) and a summary index's
    /// signature (`summaries/<digest>.idx.sig`) are rewritten when signed again, and the
    /// summaries, refs, `config` and delta indexes on every publish.
    pub fn is_immutable(&self) -> bool {
        match self {
            RepoPath::Object(object) => object.kind != ObjectType::CommitMeta,
            RepoPath::SubSummary(sub) => !matches!(sub, SubSummary::IndexSignature(_)),
            RepoPath::Delta { .. }
            | RepoPath::Config
            | RepoPath::Summary(_)
            | RepoPath::DeltaIndex(_)
            | RepoPath::Head(_)
            | RepoPath::Mirror(..) => false,
        }
    }

    /// Whether this is a static delta's superblock or one of its parts: what a pull through the
    /// delta fetches, once, like an object, but named by the delta's commits rather than by its
    /// bytes, so it can change under its name (see [`RepoPath::is_immutable`]).
    pub fn is_delta_payload(&self) -> bool {
        matches!(
            self,
            RepoPath::Delta {
                file: DeltaFile::Superblock | DeltaFile::Part(_),
                ..
            }
        )
    }
}

fn parse_object(prefix: &str, name: &str) -> Option<ObjectName> {
    let (rest, ext) = name.split_once('.')?;
    if prefix.len() != 2 || rest.len() != 62 {
        return None;
    }
    let mut hex = [0u8; 64];
    hex[..2].copy_from_slice(prefix.as_bytes());
    hex[2..].copy_from_slice(rest.as_bytes());
    let checksum = Checksum::from_hex_bytes(&hex)?;
    Some(ObjectName::new(checksum, ObjectType::from_extension(ext)?))
}

fn parse_sub_summary(name: &str) -> Option<SubSummary> {
    if let Some(digest) = name.strip_suffix(".idx.sig") {
        return Checksum::from_hex(digest)
            .ok()
            .map(SubSummary::IndexSignature);
    }
    if let Some(digest) = name.strip_suffix(".gz") {
        return Checksum::from_hex(digest).ok().map(SubSummary::Compressed);
    }
    let (from, to) = name.strip_suffix(".delta")?.split_once('-')?;
    Some(SubSummary::Delta {
        from: Checksum::from_hex(from).ok()?,
        to: Checksum::from_hex(to).ok()?,
    })
}

/// A checksum split as `XX/<41 chars>` in modified base64.
fn parse_split_base64(prefix: &str, rest: &str) -> Option<Checksum> {
    if prefix.len() != 2 || rest.len() != 41 {
        return None;
    }
    Checksum::from_modified_base64(&format!("{prefix}{rest}")).ok()
}

fn parse_delta_name(prefix: &str, name: &str) -> Option<DeltaName> {
    match name.split_once('-') {
        None => Some(DeltaName {
            from: None,
            to: parse_split_base64(prefix, name)?,
        }),
        Some((from_rest, to)) => Some(DeltaName {
            from: Some(parse_split_base64(prefix, from_rest)?),
            to: Checksum::from_modified_base64(to).ok()?,
        }),
    }
}

fn parse_delta_file(file: &str) -> Option<DeltaFile> {
    match file {
        "superblock" => Some(DeltaFile::Superblock),
        "meta" => Some(DeltaFile::Meta),
        "commitmeta" => Some(DeltaFile::CommitMeta),
        // Decimal without leading zeros, so that each part has one name.
        n if n == "0" || (!n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit())) => {
            n.parse().ok().map(DeltaFile::Part)
        }
        _ => None,
    }
}

impl DeltaName {
    /// The delta's folder relative to the repository root, as OSTree names it.
    pub fn relative_dir(&self) -> String {
        match self.from {
            None => {
                let to = self.to.to_modified_base64();
                format!("deltas/{}/{}", &to[..2], &to[2..])
            }
            Some(from) => {
                let from = from.to_modified_base64();
                let to = self.to.to_modified_base64();
                format!("deltas/{}/{}-{}", &from[..2], &from[2..], to)
            }
        }
    }
}

impl fmt::Display for DeltaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeltaFile::Superblock => f.write_str("superblock"),
            DeltaFile::Meta => f.write_str("meta"),
            DeltaFile::CommitMeta => f.write_str("commitmeta"),
            DeltaFile::Part(n) => write!(f, "{n}"),
        }
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoPath::Config => f.write_str("config"),
            RepoPath::Summary(SummaryFile::Summary) => f.write_str("summary"),
            RepoPath::Summary(SummaryFile::SummarySig) => f.write_str("summary.sig"),
            RepoPath::Summary(SummaryFile::SummaryIdx) => f.write_str("summary.idx"),
            RepoPath::Summary(SummaryFile::SummaryIdxSig) => f.write_str("summary.idx.sig"),
            RepoPath::SubSummary(SubSummary::Compressed(digest)) => {
                write!(f, "summaries/{digest}.gz")
            }
            RepoPath::SubSummary(SubSummary::Delta { from, to }) => {
                write!(f, "summaries/{from}-{to}.delta")
            }
            RepoPath::SubSummary(SubSummary::IndexSignature(digest)) => {
                write!(f, "summaries/{digest}.idx.sig")
            }
            RepoPath::Object(object) => f.write_str(&object.relative_path()),
            RepoPath::Delta { delta, file } => write!(f, "{}/{file}", delta.relative_dir()),
            RepoPath::DeltaIndex(to) => {
                let to = to.to_modified_base64();
                write!(f, "delta-indexes/{}/{}.index", &to[..2], &to[2..])
            }
            RepoPath::Head(name) => write!(f, "refs/heads/{name}"),
            RepoPath::Mirror(cid, name) => write!(f, "refs/mirrors/{cid}/{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "f2003bbeb2eb40f7bd6b86c01842c3faa12b4f100bbfd27910ec92cd83e2a9b8";
    const B64: &str = "8gA7vrLrQPe9a4bAGELD+qErTxALv9J5EOySzYPiqbg";
    const B64_2: &str = "TvwS+xq6X+CVGDT4PZzG+W+L4Jp6b5_3i8Z69SfCS4Q";

    /// Every accepted path must print back to exactly itself: one file, one name.
    fn accepted(path: &str) -> RepoPath {
        let parsed = RepoPath::parse(path).unwrap_or_else(|| panic!("refused {path:?}"));
        assert_eq!(parsed.relative_path(), path);
        parsed
    }

    #[test]
    fn accepts_every_kind_of_repo_file() {
        let c = Checksum::from_hex(HEX).unwrap();
        let c2 = Checksum::from_modified_base64(B64_2).unwrap();
        let cases = [
            ("config".to_owned(), RepoPath::Config),
            (
                "summary.idx.sig".to_owned(),
                RepoPath::Summary(SummaryFile::SummaryIdxSig),
            ),
            (
                format!("summaries/{HEX}.gz"),
                RepoPath::SubSummary(SubSummary::Compressed(c)),
            ),
            (
                format!("summaries/{HEX}-{HEX}.delta"),
                RepoPath::SubSummary(SubSummary::Delta { from: c, to: c }),
            ),
            (
                format!("summaries/{HEX}.idx.sig"),
                RepoPath::SubSummary(SubSummary::IndexSignature(c)),
            ),
            (
                format!("objects/f2/{}.dirtree", &HEX[2..]),
                RepoPath::Object(ObjectName::new(c, ObjectType::DirTree)),
            ),
            (
                format!("objects/f2/{}.tombstone-commit", &HEX[2..]),
                RepoPath::Object(ObjectName::new(c, ObjectType::TombstoneCommit)),
            ),
            (
                format!("deltas/8g/{}/superblock", &B64[2..]),
                RepoPath::Delta {
                    delta: DeltaName { from: None, to: c },
                    file: DeltaFile::Superblock,
                },
            ),
            (
                format!("deltas/Tv/{}-{B64}/12", &B64_2[2..]),
                RepoPath::Delta {
                    delta: DeltaName {
                        from: Some(c2),
                        to: c,
                    },
                    file: DeltaFile::Part(12),
                },
            ),
            (
                format!("delta-indexes/8g/{}.index", &B64[2..]),
                RepoPath::DeltaIndex(c),
            ),
            (
                "refs/heads/app/org.example.App/x86_64/stable".to_owned(),
                RepoPath::Head(RefName::new("app/org.example.App/x86_64/stable").unwrap()),
            ),
            (
                "refs/mirrors/org.example.Repo/os/x86_64".to_owned(),
                RepoPath::Mirror(
                    CollectionId::new("org.example.Repo").unwrap(),
                    RefName::new("os/x86_64").unwrap(),
                ),
            ),
        ];
        for (path, expected) in cases {
            assert_eq!(accepted(&path), expected, "{path}");
        }
        for file in ["meta", "commitmeta", "0", "4294967295"] {
            accepted(&format!("deltas/8g/{}/{file}", &B64[2..]));
        }
    }

    #[test]
    fn refuses_everything_else() {
        let obj = format!("objects/f2/{}.filez", &HEX[2..]);
        let refused = [
            "",
            "/config",
            "config/",
            "./config",
            "config/.",
            ".lock",
            "tmp/cache/x",
            "state/x.commitpartial",
            "extensions/x",
            "objects",
            "objects/",
            "objects/f2",
            "objects/f2/",
            "refs",
            "refs/heads",
            "refs/heads/",
            "refs/heads/..",
            "refs/heads/a/../../config",
            "refs/heads/.hidden",
            "refs/remotes/origin/x",
            "refs/mirrors/org.example.Repo",
            "refs/mirrors/../heads/x",
            "summaries",
            "summaries/x.gz",
            "summaries/x.idx.sig",
            &format!("summaries/{HEX}.idx"),
            &format!("summaries/{HEX}.sig"),
            &format!("summaries/{HEX}.gz.sig"),
            &format!("summaries/{HEX}.idx.sig.tmp"),
            &format!("summaries/{}.idx.sig", HEX.to_uppercase()),
            "deltas/8g",
            "summary.idx.sig.gz",
            "SUMMARY",
            "config\0",
            "objects/F2/x.filez",
            &obj.replace(".filez", ".file"),
            &obj.replace(".filez", ".commitmeta2"),
            &obj.replace(".filez", ""),
            &format!("{obj}/x"),
            &format!("objects/f2/../f2/{}.filez", &HEX[2..]),
            &format!("objects/f/2{}.filez", &HEX[2..]),
            &format!("objects/f2/{}.filez", &HEX[2..].to_uppercase()),
            &format!("deltas/8g/{}/01", &B64[2..]),
            &format!("deltas/8g/{}/4294967296", &B64[2..]),
            &format!("deltas/8g/{}/-1", &B64[2..]),
            &format!("deltas/8g/{}/superblock/x", &B64[2..]),
            &format!("deltas/8g/{}", &B64[2..]),
            &format!("deltas/8g/{}-/superblock", &B64[2..]),
            &format!("delta-indexes/8g/{}", &B64[2..]),
            &format!("delta-indexes/8g/{}.index.tmp", &B64[2..]),
        ];
        for path in refused {
            assert_eq!(RepoPath::parse(path), None, "{path:?}");
        }
    }

    #[test]
    fn immutability() {
        assert!(accepted(&format!("objects/f2/{}.commit", &HEX[2..])).is_immutable());
        // Deltas are named by their commits, and rebuilt in place when generated again.
        for file in ["0", "superblock"] {
            let delta = accepted(&format!("deltas/8g/{}/{file}", &B64[2..]));
            assert!(!delta.is_immutable() && delta.is_delta_payload(), "{file}");
        }
        assert!(!accepted(&format!("deltas/8g/{}/meta", &B64[2..])).is_delta_payload());
        assert!(!accepted(&format!("objects/f2/{}.commit", &HEX[2..])).is_delta_payload());
        assert!(accepted(&format!("summaries/{HEX}.gz")).is_immutable());
        assert!(accepted(&format!("summaries/{HEX}-{HEX}.delta")).is_immutable());
        assert!(!accepted(&format!("summaries/{HEX}.idx.sig")).is_immutable());
        assert!(!accepted("summary").is_immutable());
        assert!(!accepted("refs/heads/a").is_immutable());
        assert!(!accepted(&format!("delta-indexes/8g/{}.index", &B64[2..])).is_immutable());
        assert!(!accepted(&format!("objects/f2/{}.commitmeta", &HEX[2..])).is_immutable());
        assert!(!accepted(&format!("deltas/8g/{}/meta", &B64[2..])).is_immutable());
        assert!(!accepted(&format!("deltas/8g/{}/commitmeta", &B64[2..])).is_immutable());
    }
}
