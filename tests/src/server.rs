//! The real `tollgate` binary, started for a test on a port it picks itself, stopped when the
//! test ends (also when it panics).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::cmd::Cmd;
use crate::fixture::Fixture;

/// Path of a binary of this workspace, built into the same target directory as the test.
/// Panics if it is missing or older than the workspace's sources, so that a test never runs
/// yesterday's binary against today's expectations.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test binary> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let bin = profile_dir.join(name);
    let fix = "run `cargo build --workspace` before the tests (scripts/test does)";
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is not built; {fix}", bin.display()));
    // Cargo's dep-info file lists every source file the binary was built from.
    let deps = std::fs::read_to_string(bin.with_extension("d")).unwrap_or_default();
    let sources = deps.split_once(": ").map_or("", |(_, rest)| rest);
    let newer = sources.split_whitespace().find(|source| {
        std::fs::metadata(source)
            .and_then(|m| m.modified())
            .is_ok_and(|m| m > built)
    });
    if let Some(newer) = newer {
        panic!("{} is older than {newer}; {fix}", bin.display());
    }
    bin
}

pub fn tollgate_bin() -> PathBuf {
    workspace_bin("tollgate")
}

/// One line of the server's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub bytes: u64,
    /// The scheme of the request's `Authorization` header, `-` for none.
    pub auth: String,
}

/// A running `tollgate` process and everything it has logged so far.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<(Mutex<String>, Condvar)>,
}

impl Server {
    /// Runs `tollgate serve ARGS --listen 127.0.0.1:0` and waits until it listens.
    pub fn serve(args: &[&str], env: &[(String, PathBuf)]) -> Server {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--listen", "127.0.0.1:0"]);
        Server::start(&all, env)
    }

    /// Runs `tollgate ARGS` (which must include a listen address) and waits for the
    /// "listening on http://ADDR/" line.
    pub fn start(args: &[&str], env: &[(String, PathBuf)]) -> Server {
        let mut command = Command::new(tollgate_bin());
        command.args(args).env("RUST_LOG", "info");
        for (k, v) in env {
            command.env(k, v);
        }
        Server::run(command)
    }

    /// Runs `command` (a tollgate server, however started) and waits for the "listening on
    /// http://ADDR/" line.
    pub fn run(mut command: Command) -> Server {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("starting tollgate");
        let log = Arc::new((Mutex::new(String::new()), Condvar::new()));
        for stream in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let (text, changed) = &*log;
                    let mut text = text.lock().expect("log lock");
                    text.push_str(&line);
                    text.push('\n');
                    changed.notify_all();
                }
            });
        }
        let mut server = Server {
            child,
            addr: ([127, 0, 0, 1], 0).into(),
            log,
        };
        let line = server.wait_for_log("listening on http://", Duration::from_secs(30));
        let addr = line
            .split("listening on http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        server.addr = addr;
        server
    }

    /// `GET /metrics`, as text (from 127.0.0.1, which needs no token).
    pub fn metrics(&self) -> String {
        let scrape = crate::http::get(self.addr, "/metrics");
        assert_eq!(scrape.status, 200, "GET /metrics");
        String::from_utf8_lossy(&scrape.body).into_owned()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Everything the server printed on stdout and stderr so far.
    pub fn log(&self) -> String {
        self.log.0.lock().expect("log lock").clone()
    }

    /// Waits until a log line contains `needle` and returns that line; panics with the whole log
    /// after `timeout`, or if the server exits first.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (text, changed) = &*self.log;
        let mut guard = text.lock().expect("log lock");
        loop {
            if let Some(line) = guard.lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            let now = Instant::now();
            if now >= deadline {
                panic!("tollgate never logged {needle:?}; its log:\n{guard}");
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                drop(guard);
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "tollgate exited ({status}) before logging {needle:?}:\n{}",
                    self.log()
                );
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            guard = changed.wait_timeout(guard, wait).expect("log lock").0;
        }
    }

    /// Waits until the server has logged nothing new for a moment: access log lines are written
    /// when a response body is finished, which can be just after the client saw its last byte.
    pub fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = self.log().len();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(150));
            let now = self.log().len();
            if now == last {
                return;
            }
            last = now;
        }
    }

    /// Kills the server with SIGKILL, and returns its whole log once the last line is read.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.settle();
        self.log()
    }

    /// Access log entries, in order, from log byte `from` on.
    pub fn requests_since(&self, from: usize) -> Vec<Access> {
        self.settle();
        let log = self.log();
        log[from.min(log.len())..]
            .lines()
            .filter(|l| l.contains("tollgate::access"))
            .filter_map(|l| {
                let quoted = l.split('"').nth(1)?;
                let (method, path) = quoted.split_once(' ')?;
                let mut after = l.split('"').nth(2)?.split_whitespace();
                let status = after.next()?.parse().ok()?;
                let bytes = after.next()?.parse().ok()?;
                let auth = after.nth(1)?.strip_prefix("auth=")?;
                Some(Access {
                    method: method.to_owned(),
                    path: path.to_owned(),
                    status,
                    bytes,
                    auth: auth.to_owned(),
                })
            })
            .collect()
    }

    /// Stops the server with SIGTERM and returns its exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "tollgate did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tollgate serve ARGS --data-dir DATA` expecting failure; returns its one error line.
pub fn serve_refused(fx: &Fixture, args: &[&str]) -> String {
    let data = fx.join("data");
    let stderr = Cmd::new(tollgate_bin())
        .arg("serve")
        .args(args)
        .args(["--data-dir", data.to_str().unwrap()])
        .envs(fx.env())
        .timeout(Duration::from_secs(20))
        .run_fail();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line, got:\n{stderr}");
    assert!(
        !data.exists(),
        "the data directory was created although serve failed"
    );
    lines[0].to_owned()
}
