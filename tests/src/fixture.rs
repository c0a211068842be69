//! Temporary directories with an isolated HOME, XDG tree and runtime dir, and builders for
//! real OSTree and Flatpak repositories made with the real tools.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::cmd::{Cmd, require_tool};

/// A temporary directory that is also a private HOME: every command run through [`Fixture::cmd`]
/// sees HOME and the XDG variables pointing inside it, so flatpak, ostree and friends never touch
/// the real user's files.
#[derive(Debug)]
pub struct Fixture {
    dir: TempDir,
    env: Vec<(String, PathBuf)>,
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("tollgate-test-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path();
        let env: Vec<(String, PathBuf)> = vec![
            ("HOME".into(), root.join("home")),
            ("XDG_DATA_HOME".into(), root.join("home/.local/share")),
            ("XDG_CONFIG_HOME".into(), root.join("home/.config")),
            ("XDG_CACHE_HOME".into(), root.join("home/.cache")),
            ("XDG_STATE_HOME".into(), root.join("home/.local/state")),
            ("XDG_RUNTIME_DIR".into(), root.join("run")),
        ];
        for (_, path) in &env {
            std::fs::create_dir_all(path).expect("creating the isolated home");
        }
        set_mode(&root.join("run"), 0o700);
        Fixture { dir, env }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// The isolated HOME and XDG variables.
    pub fn env(&self) -> &[(String, PathBuf)] {
        &self.env
    }

    /// A command running in the fixture's directory with its isolated environment.
    pub fn cmd(&self, program: &str) -> Cmd {
        Cmd::new(program).envs(&self.env).current_dir(self.path())
    }

    /// `ostree --repo=REPO ...`
    pub fn ostree(&self, repo: &Path) -> Cmd {
        require_tool("ostree", "ostree");
        self.cmd("ostree").arg(format!("--repo={}", repo.display()))
    }

    /// A bare-user client repository `client` with a remote `origin` pointing at `url`.
    pub fn ostree_client(&self, url: &str) -> PathBuf {
        self.ostree_client_named("client", url)
    }

    /// As [`Fixture::ostree_client`], in the folder `name`, for a test with several clients.
    pub fn ostree_client_named(&self, name: &str, url: &str) -> PathBuf {
        let repo = self.join(name);
        self.ostree(&repo).args(["init", "--mode=bare-user"]).run();
        self.ostree(&repo)
            .args(["remote", "add", "--no-gpg-verify", "origin", url])
            .run();
        repo
    }

    /// `ostree pull origin R` in the client repository `client`, with `token` as a bearer
    /// token when given; run it with `run`, `run_fail` or `output`.
    pub fn pull(&self, client: &Path, r: &str, token: Option<&str>) -> Cmd {
        let mut pull = self.ostree(client).arg("pull");
        if let Some(token) = token {
            pull = pull.arg(format!("--http-header=Authorization=Bearer {token}"));
        }
        pull.args(["origin", r])
    }

    /// `ostree rev-parse REV` in `repo`.
    pub fn rev_parse(&self, repo: &Path, rev: &str) -> String {
        self.ostree(repo)
            .args(["rev-parse", rev])
            .run()
            .trim()
            .to_owned()
    }

    /// Runs the real `ostree fsck` on `repo` and fails unless it finds no errors.
    pub fn fsck(&self, repo: &Path) {
        let out = self.ostree(repo).arg("fsck").run();
        assert!(out.contains("no errors found"), "ostree fsck said:\n{out}");
    }

    /// Fails unless the client repository `client` has `remote:r` at the commit `source` has
    /// `r` at, and `ostree fsck` finds it whole.
    pub fn assert_pulled(&self, client: &Path, remote: &str, source: &Path, r: &str) {
        assert_eq!(
            self.rev_parse(client, &format!("{remote}:{r}")),
            self.rev_parse(source, r),
            "{r} in {}",
            client.display()
        );
        self.fsck(client);
    }

    /// `flatpak --user remote-add --no-gpg-verify NAME URL`.
    pub fn flatpak_remote_add(&self, name: &str, url: &str) {
        self.flatpak()
            .args(["--user", "remote-add", "--no-gpg-verify", name, url])
            .run();
    }

    /// `flatpak ...`, checked to be installed.
    pub fn flatpak(&self) -> Cmd {
        require_tool("flatpak", "flatpak");
        self.cmd("flatpak")
    }

    /// Makes an archive repository at `name` and commits `tree` to `branch` in it; returns the
    /// repository's path and the commit.
    pub fn archive_repo(&self, name: &str, branch: &str, tree: &Path) -> (PathBuf, String) {
        let repo = self.join(name);
        self.ostree(&repo).args(["init", "--mode=archive"]).run();
        let commit = self.commit(&repo, branch, tree, "first");
        (repo, commit)
    }

    /// A repository (collection `org.example.Mirror`) holding a mirror of `branch` from another
    /// (collection `org.example.Src`), made with the real `ostree pull --mirror`, which writes
    /// `refs/mirrors/org.example.Src/<branch>`. Returns the mirror's path and the commit.
    pub fn mirror_repo(&self, branch: &str, tree: &Path) -> (PathBuf, String) {
        let src = self.join("mirror-src");
        self.ostree(&src)
            .args(["init", "--mode=archive", "--collection-id=org.example.Src"])
            .run();
        let commit = self.commit(&src, branch, tree, "mirrored");
        let mirror = self.join("mirror");
        self.ostree(&mirror)
            .args([
                "init",
                "--mode=archive",
                "--collection-id=org.example.Mirror",
            ])
            .run();
        self.ostree(&mirror)
            .args([
                "remote",
                "add",
                "--no-gpg-verify",
                "--collection-id=org.example.Src",
                "origin",
            ])
            .arg(format!("file://{}", src.display()))
            .run();
        self.ostree(&mirror)
            .args(["pull", "--mirror", "origin", branch])
            .run();
        (mirror, commit)
    }

    /// Commits `tree` to `branch` and updates the summary; returns the commit checksum.
    pub fn commit(&self, repo: &Path, branch: &str, tree: &Path, subject: &str) -> String {
        let out = self
            .ostree(repo)
            .args([
                "commit",
                &format!("--branch={branch}"),
                &format!("--subject={subject}"),
            ])
            .arg(tree)
            .run();
        self.ostree(repo).args(["summary", "-u"]).run();
        out.trim().to_owned()
    }
}

impl Fixture {
    /// flatpak's default architecture (`x86_64` here).
    pub fn flatpak_arch(&self) -> String {
        self.flatpak().arg("--default-arch").run().trim().to_owned()
    }

    /// `flatpak --user install -y --noninteractive REMOTE ID` with `env` added (a session bus,
    /// say), which must succeed; then `flatpak list` must show `id`. Returns what
    /// [`Fixture::installed_app`] reads of it (`""` for a runtime).
    pub fn flatpak_install(&self, env: &[(String, PathBuf)], remote: &str, id: &str) -> String {
        self.flatpak_installing(env, remote, id).run();
        let listed = self
            .flatpak()
            .envs(env)
            .args(["--user", "list", "--columns=application"])
            .run();
        assert!(
            listed.lines().any(|l| l.trim() == id),
            "flatpak list after installing {id}:\n{listed}"
        );
        self.installed_app(id)
    }

    /// The same install, which must fail: what flatpak said on stderr.
    pub fn flatpak_install_fails(
        &self,
        env: &[(String, PathBuf)],
        remote: &str,
        id: &str,
    ) -> String {
        self.flatpak_installing(env, remote, id).run_fail()
    }

    fn flatpak_installing(&self, env: &[(String, PathBuf)], remote: &str, id: &str) -> Cmd {
        self.flatpak()
            .envs(env)
            .args(["--user", "install", "-y", "--noninteractive", remote, id])
            .timeout(std::time::Duration::from_secs(180))
    }

    /// The script `bin/app` of the user's installed `app` (branch `stable`), as the app
    /// builders write it; `""` when it is not installed.
    pub fn installed_app(&self, app: &str) -> String {
        let arch = self.flatpak_arch();
        let path = self.join(format!(
            "home/.local/share/flatpak/app/{app}/{arch}/stable/active/files/bin/app"
        ));
        std::fs::read_to_string(&path).unwrap_or_default()
    }

    /// Exports a commit of the runtime `name` (branch `stable`) into `repo` with the real
    /// `flatpak build-export`, its files being the sample tree plus a `version` file. A
    /// `token_type` marks it as needing a token (`--token-type`). Returns the ref.
    pub fn flatpak_runtime(
        &self,
        repo: &Path,
        name: &str,
        version: u32,
        token_type: Option<i32>,
    ) -> String {
        let arch = self.flatpak_arch();
        let build = self.join(format!("build-{name}"));
        write_files(
            &build,
            &[(
                "metadata",
                format!("[Runtime]\nname={name}\nruntime={name}/{arch}/stable\nsdk={name}/{arch}/stable\n")
                    .into_bytes(),
            )],
        );
        sample_tree(&build.join("files"));
        write_files(
            &build,
            &[("files/version", format!("{version}\n").into_bytes())],
        );
        let mut export = self
            .flatpak()
            .args(["build-export", "--runtime", "--files=files"]);
        if let Some(t) = token_type {
            export = export.arg(format!("--token-type={t}"));
        }
        export.arg(repo).arg(&build).arg("stable").run();
        format!("runtime/{name}/{arch}/stable")
    }

    /// Exports a commit of the application `app_id` (branch `stable`, running on the runtime
    /// `runtime`) into `repo`, as `flatpak build-finish` and `build-export` make it. Returns the
    /// ref.
    pub fn flatpak_app(
        &self,
        repo: &Path,
        app_id: &str,
        runtime: &str,
        version: u32,
        token_type: Option<i32>,
    ) -> String {
        let arch = self.flatpak_arch();
        let build = self.join(format!("build-{app_id}-{version}"));
        write_files(
            &build,
            &[
                (
                    "metadata",
                    format!(
                        "[Application]\nname={app_id}\nruntime={runtime}/{arch}/stable\n\
                         sdk={runtime}/{arch}/stable\n"
                    )
                    .into_bytes(),
                ),
                (
                    "files/bin/app",
                    format!("#!/bin/sh\necho {app_id} {version}\n").into_bytes(),
                ),
                (
                    "files/share/data",
                    pseudo_random(64 * 1024, u64::from(version) + 99),
                ),
            ],
        );
        set_mode(&build.join("files/bin/app"), 0o755);
        self.flatpak()
            .args(["build-finish", "--command=app"])
            .arg(&build)
            .run();
        let mut export = self.flatpak().arg("build-export");
        if let Some(t) = token_type {
            export = export.arg(format!("--token-type={t}"));
        }
        export.arg(repo).arg(&build).arg("stable").run();
        format!("app/{app_id}/{arch}/stable")
    }

    /// `flatpak build-update-repo --generate-static-deltas`: summaries, appstream, deltas.
    pub fn flatpak_update_repo(&self, repo: &Path) {
        self.flatpak()
            .args(["build-update-repo", "--generate-static-deltas"])
            .arg(repo)
            .run();
    }

    /// `flatpak build-export --runtime --files=files [--token-type=T] REPO BUILD stable`, for a
    /// runtime whose `metadata` and `files/` the caller wrote into `build`; run it with `run`
    /// (and a `timeout` for a large tree).
    pub fn flatpak_export_runtime_dir(
        &self,
        repo: &Path,
        build: &Path,
        token_type: Option<i32>,
    ) -> Cmd {
        let export = self
            .flatpak()
            .args(["build-export", "--runtime", "--files=files"]);
        let export = match token_type {
            Some(t) => export.arg(format!("--token-type={t}")),
            None => export,
        };
        export.arg(repo).arg(build).arg("stable")
    }

    /// For an application whose `metadata` and `files/` the caller wrote into `build`: runs
    /// `flatpak build-finish --command=COMMAND BUILD`, and returns `flatpak build-export
    /// [--token-type=T] REPO BUILD stable` to run.
    pub fn flatpak_export_app_dir(
        &self,
        repo: &Path,
        build: &Path,
        command: &str,
        token_type: Option<i32>,
    ) -> Cmd {
        self.flatpak()
            .arg("build-finish")
            .arg(format!("--command={command}"))
            .arg(build)
            .run();
        let export = self.flatpak().arg("build-export");
        let export = match token_type {
            Some(t) => export.arg(format!("--token-type={t}")),
            None => export,
        };
        export.arg(repo).arg(build).arg("stable")
    }
}

/// A small tree with the kinds of entries OSTree handles: nested directories, an empty file,
/// an executable, a symlink, and a 300 KiB file of varied bytes (bigger than any read buffer).
pub fn sample_tree(root: &Path) -> PathBuf {
    write_files(
        root,
        &[
            ("usr/bin/hello", b"#!/bin/sh\necho hello\n".to_vec()),
            ("usr/share/doc/empty", Vec::new()),
            ("usr/share/doc/README", b"tollgate test tree\n".to_vec()),
            ("usr/lib/data.bin", pseudo_random(300 * 1024, 7)),
            ("etc/deep/a/b/c/d/e/file", b"deep\n".to_vec()),
        ],
    );
    set_mode(&root.join("usr/bin/hello"), 0o755);
    let link = root.join("usr/bin/hi");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("hello", link).expect("symlink");
    }
    root.to_owned()
}

pub fn write_files(root: &Path, files: &[(&str, Vec<u8>)]) {
    for (name, content) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().expect("file has a parent")).expect("mkdir");
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("writing {path:?}: {e}"));
    }
}

/// Deterministic bytes that do not compress to nothing.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {path:?}: {e}"));
}

/// Every file under `root`, as paths relative to it, sorted.
pub fn files_under(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => walk(root, &path, out),
                Ok(_) => out.push(
                    path.strip_prefix(root)
                        .expect("under root")
                        .to_string_lossy()
                        .into_owned(),
                ),
                Err(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Sets its flag when dropped, a panic's unwinding included, so that background loops
/// watching the flag stop whatever becomes of the test that started them.
#[derive(Debug)]
pub struct StopOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
