//! A throwaway PostgreSQL cluster for one test: Debian's `postgresql` binaries, a data folder of
//! its own, loopback only on a port the test picks, stopped when the test ends. PostgreSQL
//! refuses to run as root, so as root the cluster runs as the `postgres` user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cmd::Cmd;

#[derive(Debug)]
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

fn bin_dir() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").is_file())
        .max();
    found.unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server binaries (/usr/lib/postgresql/*/bin/initdb) are missing: install \
             them with `apt-get install postgresql`, or run `scripts/setup`"
        )
    })
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Runs a PostgreSQL program, as `postgres` when we are root.
fn as_owner(program: &Path) -> Cmd {
    if is_root() {
        Cmd::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(program)
    } else {
        Cmd::new(program)
    }
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("tollgate-pg-")
            .tempdir()
            .expect("temp dir");
        if is_root() {
            Cmd::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .run();
        }
        let data = dir.path().join("data");
        as_owner(&bin.join("initdb"))
            .args([
                "--auth=trust",
                "--username=tollgate",
                "--no-sync",
                "--encoding=UTF8",
                "-D",
            ])
            .arg(&data)
            .run();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c max_connections=200",
            dir.path().display()
        );
        as_owner(&bin.join("pg_ctl"))
            .args(["-D"])
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(dir.path().join("log"))
            .args(["-w", "-t", "60", "start"])
            .timeout(Duration::from_secs(90))
            .run();
        Postgres { dir, bin, port }
    }

    /// A new, empty database; its URL.
    pub fn database(&self, name: &str) -> String {
        self.query("postgres", &format!("CREATE DATABASE {name}"));
        format!("postgres://tollgate@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` in the database `name` with the real `psql`; its rows, one per line, columns
    /// separated by `|`.
    pub fn query(&self, name: &str, sql: &str) -> String {
        Cmd::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "tollgate",
            ])
            .args(["-d", name, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .run()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let mut stop = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_ctl);
            c
        } else {
            Command::new(pg_ctl)
        };
        // Not Cmd: a drop must not panic.
        let _ = stop
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
