//! A real S3-protocol server for the tests: `s3s-fs` on a folder of the test's own, loopback
//! only on a port the test picks, stopped when the test ends. It checks SigV4 signatures,
//! presigned URLs' signatures and their expiry, as a cloud store does. Files go in through the
//! S3 API with the real `curl` (`--aws-sigv4`), as a publisher's upload would.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cmd::{Cmd, require_tool};

pub const ACCESS_KEY: &str = "tollgate-tests";
pub const SECRET_KEY: &str = "a secret key for the object storage tests";
pub const REGION: &str = "us-east-1";

/// Where `s3s-fs` is: on PATH, or where `cargo install` puts it.
fn s3s_fs() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    std::env::split_paths(&path)
        .chain(cargo_home.map(|h| h.join("bin")))
        .map(|dir| dir.join("s3s-fs"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`s3s-fs` is not installed; the object storage tests drive a real S3 server. \
                 Install it with `cargo install --locked s3s-fs --version 0.14.1 --features \
                 binary`, or run `scripts/setup`, which installs everything the tests need"
            )
        })
}

/// A running `s3s-fs`.
#[derive(Debug)]
pub struct S3 {
    child: Child,
    root: PathBuf,
    log: PathBuf,
    pub port: u16,
}

impl S3 {
    /// Starts a server keeping its buckets in `root` (created if missing).
    pub fn start(root: &Path) -> S3 {
        let bin = s3s_fs();
        std::fs::create_dir_all(root).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = root.with_extension("log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting s3s-fs");
        let s3 = S3 {
            child,
            root: root.to_owned(),
            log,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not start listening:\n{}",
                s3.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s3
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where the server keeps the object `key` of `bucket` (s3s-fs stores objects as files).
    pub fn file(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.join(bucket).join(key)
    }

    /// `curl` signing its requests with the test's credentials.
    pub fn curl(&self) -> Cmd {
        Cmd::new(require_tool("curl", "curl"))
            .args(["-sS", "--fail-with-body"])
            .args(["--aws-sigv4", &format!("aws:amz:{REGION}:s3")])
            .args(["--user", &format!("{ACCESS_KEY}:{SECRET_KEY}")])
            .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
    }

    pub fn create_bucket(&self, bucket: &str) {
        self.curl()
            .args(["-X", "PUT", &format!("{}/{bucket}", self.endpoint())])
            .run();
    }

    /// Uploads the files of the repository `repo` (not its `tmp/`) below `prefix` in `bucket`
    /// whose stamp in `before` differs (all of them for an empty `before`), the way a
    /// publisher does: objects and deltas first, then the rest, refs and summaries last, so
    /// that nothing points at what is not there yet. Returns the stamps after.
    pub fn sync(&self, repo: &Path, bucket: &str, prefix: &str, before: &Stamps) -> Stamps {
        let now = stamps(repo);
        let mut changed: Vec<&String> = now
            .iter()
            .filter(|(path, stamp)| before.get(*path) != Some(*stamp))
            .map(|(path, _)| path)
            .collect();
        let rank = |p: &str| {
            if p.starts_with("objects/") || p.starts_with("deltas/") {
                0
            } else if p.starts_with("refs/") || p.starts_with("summar") {
                2
            } else {
                1
            }
        };
        changed.sort_by_key(|p| (rank(p), p.as_str()));
        for rank_group in [0, 1, 2] {
            let group: Vec<&&String> = changed.iter().filter(|p| rank(p) == rank_group).collect();
            for batch in group.chunks(100) {
                let mut curl = self.curl().arg("--parallel");
                for path in batch {
                    curl = curl
                        .arg("-T")
                        .arg(repo.join(path))
                        .arg(format!("{}/{bucket}/{prefix}/{path}", self.endpoint()));
                }
                curl.run();
            }
        }
        now
    }
}

/// Every file of a repository but its `tmp/`, with its size and modification time.
pub type Stamps = std::collections::BTreeMap<String, (u64, std::time::SystemTime)>;

fn stamps(repo: &Path) -> Stamps {
    fn walk(dir: &Path, prefix: &str, out: &mut Stamps) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let name = entry.file_name().into_string().unwrap();
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                if path != "tmp" {
                    walk(&entry.path(), &path, out);
                }
            } else {
                out.insert(path, (meta.len(), meta.modified().unwrap()));
            }
        }
    }
    let mut out = Stamps::new();
    walk(repo, "", &mut out);
    out
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
