//! The Flatpak repository `serve`, `pull`, `tokens` and `sendfile` measure: built once per run
//! with the real flatpak tools through the harness's fixture (a public runtime of 2,000
//! generated files and a gated app, `--token-type=2`, of `BENCH_APP_FILES` with an app's size
//! mix), and the object lists read with `tollgate-ostree-format`, not from paths by hand.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tollgate_ostree_format::{ObjectType, RefName, Repo, commit_closure};
use tollgate_tests::bus::TEST_AUTHENTICATOR_NAME;
use tollgate_tests::fixture::{Fixture, set_mode, write_files};

use crate::tools::write_tree;

/// How long one flatpak export of a large generated tree may take on a busy machine.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(1800);

/// The benchmark's repository and what the parts need to know of it.
#[derive(Debug, Clone)]
pub(crate) struct BenchRepo {
    pub(crate) path: PathBuf,
    pub(crate) app_ref: String,
    pub(crate) app_id: String,
    /// Paths (`/objects/ab/cd....commit`) of the runtime's and the app's commit objects.
    pub(crate) public_commit: String,
    pub(crate) gated_commit: String,
    /// Every content, dirtree and dirmeta object only the runtime reaches, and only the app
    /// reaches, as paths from the repository's root, sorted.
    pub(crate) public_paths: Vec<String>,
    pub(crate) gated_paths: Vec<String>,
    /// The smallest object of each list: what a request costs beyond the bytes it carries.
    pub(crate) small_public: String,
    pub(crate) small_gated: String,
    /// Content, dirtree and dirmeta objects the app reaches (its own and shared ones).
    pub(crate) app_objects: usize,
}

impl BenchRepo {
    /// Builds the repository at `fx/repo` with the tools in `fx`'s isolated home.
    pub(crate) fn build(fx: &Fixture, app_files: usize) -> anyhow::Result<BenchRepo> {
        let repo = fx.join("repo");
        let build = fx.join("build");
        let arch = fx.flatpak_arch();
        note!("building the repository: a runtime of 2000 files, an app of {app_files} files");
        let runtime = build.join("runtime");
        write_tree(&runtime.join("files"), 2000, 2);
        write_files(
            &runtime,
            &[(
                "metadata",
                format!(
                    "[Runtime]\nname=org.example.Platform\nruntime=org.example.Platform/{arch}/stable\n\
                     sdk=org.example.Platform/{arch}/stable\n"
                )
                .into_bytes(),
            )],
        );
        fx.flatpak_export_runtime_dir(&repo, &runtime, None)
            .timeout(EXPORT_TIMEOUT)
            .run();

        let app = build.join("app");
        write_tree(&app.join("files"), app_files, 1);
        write_files(
            &app,
            &[
                (
                    "metadata",
                    format!(
                        "[Application]\nname=org.example.Paid\nruntime=org.example.Platform/{arch}/stable\n\
                         sdk=org.example.Platform/{arch}/stable\n"
                    )
                    .into_bytes(),
                ),
                ("files/bin/paid", b"#!/bin/sh\necho paid\n".to_vec()),
            ],
        );
        set_mode(&app.join("files/bin/paid"), 0o755);
        fx.flatpak_export_app_dir(&repo, &app, "paid", Some(2))
            .timeout(EXPORT_TIMEOUT)
            .run();
        // flatpak asks its test authenticator for the app's token (see `tools::flatpak_install`).
        fx.flatpak()
            .arg("build-update-repo")
            .arg(format!("--authenticator-name={TEST_AUTHENTICATOR_NAME}"))
            .arg("--no-authenticator-install")
            .arg(&repo)
            .timeout(EXPORT_TIMEOUT)
            .run();
        std::fs::remove_dir_all(&build).with_context(|| format!("removing {}", build.display()))?;

        let app_id = "org.example.Paid".to_owned();
        let bench = BenchRepo::read(
            &repo,
            &format!("runtime/org.example.Platform/{arch}/stable"),
            &format!("app/{app_id}/{arch}/stable"),
            app_id,
        )?;
        let (objects, _) = files_and_disk_usage(&repo.join("objects"))?;
        let (_, disk) = files_and_disk_usage(&repo)?;
        note!(
            "repository: {objects} objects, {:.0} MiB on disk; {} only public, {} only gated",
            disk as f64 / 1_048_576.0,
            bench.public_paths.len(),
            bench.gated_paths.len()
        );
        Ok(bench)
    }

    /// Reads the refs' closures and object sizes of an existing repository.
    fn read(
        repo: &Path,
        runtime_ref: &str,
        app_ref: &str,
        app_id: String,
    ) -> anyhow::Result<BenchRepo> {
        let opened = Repo::open(repo).with_context(|| format!("opening {}", repo.display()))?;
        let heads = opened
            .heads()
            .with_context(|| format!("reading the refs of {}", repo.display()))?;
        let commit_of = |name: &str| {
            let wanted = RefName::new(name).with_context(|| format!("the ref name {name}"))?;
            heads
                .iter()
                .find(|(r, _)| *r == wanted)
                .map(|(_, c)| *c)
                .with_context(|| format!("{} has no ref {name}", repo.display()))
        };
        let (runtime_commit, app_commit) = (commit_of(runtime_ref)?, commit_of(app_ref)?);
        let objects_of = |commit| -> anyhow::Result<BTreeSet<String>> {
            let closure = commit_closure(&opened, commit)
                .with_context(|| format!("walking commit {commit} in {}", repo.display()))?;
            Ok(closure
                .into_iter()
                .filter(|o| {
                    matches!(
                        o.kind,
                        ObjectType::File | ObjectType::DirTree | ObjectType::DirMeta
                    )
                })
                .map(|o| format!("/{}", o.relative_path()))
                .collect())
        };
        let runtime = objects_of(runtime_commit)?;
        let app = objects_of(app_commit)?;
        let public_paths: Vec<String> = runtime.difference(&app).cloned().collect();
        let gated_paths: Vec<String> = app.difference(&runtime).cloned().collect();
        let commit_path = |commit: tollgate_ostree_format::Checksum| {
            let hex = commit.to_hex();
            format!("/objects/{}/{}.commit", &hex[..2], &hex[2..])
        };
        Ok(BenchRepo {
            small_public: smallest(repo, &public_paths)?,
            small_gated: smallest(repo, &gated_paths)?,
            public_commit: commit_path(runtime_commit),
            gated_commit: commit_path(app_commit),
            public_paths,
            gated_paths,
            app_objects: app.len(),
            app_ref: app_ref.to_owned(),
            app_id,
            path: repo.to_owned(),
        })
    }

    /// The size of the object at `path` (from the repository's root).
    pub(crate) fn size_of(&self, path: &str) -> anyhow::Result<u64> {
        file_size(&self.path, path)
    }

    /// The bytes on disk of the object at `path`.
    pub(crate) fn bytes_of(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let file = self.path.join(path.trim_start_matches('/'));
        std::fs::read(&file).with_context(|| format!("reading {}", file.display()))
    }
}

fn file_size(repo: &Path, path: &str) -> anyhow::Result<u64> {
    let file = repo.join(path.trim_start_matches('/'));
    Ok(std::fs::metadata(&file)
        .with_context(|| format!("reading the size of {}", file.display()))?
        .len())
}

/// The smallest of `paths` (the first in order of the smallest size).
fn smallest(repo: &Path, paths: &[String]) -> anyhow::Result<String> {
    let mut best: Option<(u64, &String)> = None;
    for path in paths {
        let size = file_size(repo, path)?;
        if best.is_none_or(|(min, _)| size < min) {
            best = Some((size, path));
        }
    }
    best.map(|(_, p)| p.clone())
        .with_context(|| format!("no objects to pick the smallest of in {}", repo.display()))
}

/// The files under `dir`, and the disk space it takes (as `du` counts it: blocks, folders
/// included).
fn files_and_disk_usage(dir: &Path) -> anyhow::Result<(usize, u64)> {
    use std::os::unix::fs::MetadataExt;

    let (mut files, mut bytes) = (0, 0);
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let meta = entry
                .metadata()
                .with_context(|| format!("reading {}", entry.path().display()))?;
            bytes += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                files += 1;
            }
        }
    }
    Ok((files, bytes))
}
