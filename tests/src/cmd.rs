//! Running external commands with a useful failure message.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a command may run before the test kills it and fails; generous, because a flatpak
/// install on a busy machine can take seconds, but finite, so a hang never stalls CI.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Finds `tool` on PATH, or panics saying which Debian package provides it.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{tool}` is not installed; this test drives the real one. Install it with \
                 `apt-get install {package}`, or run `scripts/setup`, which installs everything \
                 the tests need"
            )
        })
}

/// A command to run, with the environment and working directory a test gives it.
#[derive(Debug)]
pub struct Cmd {
    command: Command,
    display: String,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        let display = program.as_ref().to_string_lossy().into_owned();
        Cmd {
            command: Command::new(program),
            display,
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.display.push(' ');
        self.display.push_str(&arg.as_ref().to_string_lossy());
        self.command.arg(arg);
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Cmd {
        for arg in args {
            self = self.arg(arg);
        }
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Cmd {
        self.command.env(key, value);
        self
    }

    pub fn envs<'a>(mut self, vars: impl IntoIterator<Item = &'a (String, PathBuf)>) -> Cmd {
        for (key, value) in vars {
            self.command.env(key, value);
        }
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Cmd {
        self.command.current_dir(dir);
        self
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(input.into());
        self
    }

    /// Fails the test if the command runs longer than `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Cmd {
        self.timeout = timeout;
        self
    }

    /// Runs the command and returns what it did, whatever its exit status. Panics, after
    /// killing it, if it runs past its timeout.
    pub fn output(mut self) -> Output {
        self.command.stdout(Stdio::piped()).stderr(Stdio::piped());
        self.command.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = self
            .command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", self.display));
        // Feed stdin and drain stdout and stderr on their own threads, so that no pipe can fill
        // up and block the child while this thread waits.
        if let Some(input) = self.stdin.take() {
            let mut stdin = child.stdin.take().expect("stdin is piped");
            std::thread::spawn(move || stdin.write_all(&input));
        }
        let stdout = drain(child.stdout.take().expect("stdout is piped"));
        let stderr = drain(child.stderr.take().expect("stderr is piped"));
        let status = wait_with_deadline(&mut child, self.timeout);
        let output = Output {
            status: status.unwrap_or_default(),
            stdout: stdout.join().expect("stdout reader"),
            stderr: stderr.join().expect("stderr reader"),
        };
        if status.is_none() {
            panic!(
                "`{}` ran longer than {:?} and was killed:\n{}",
                self.display,
                self.timeout,
                describe(&output)
            );
        }
        output
    }

    /// Runs the command, panics with its output unless it succeeds, and returns its stdout.
    pub fn run(self) -> String {
        let display = self.display.clone();
        let output = self.output();
        if !output.status.success() {
            panic!(
                "`{display}` failed ({}):\n{}",
                output.status,
                describe(&output)
            );
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs the command, panics with its output if it succeeds, and returns its stderr.
    pub fn run_fail(self) -> String {
        let display = self.display.clone();
        let output = self.output();
        if output.status.success() {
            panic!(
                "`{display}` succeeded but should have failed:\n{}",
                describe(&output)
            );
        }
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Waits for `child` until `timeout`; kills it and returns `None` if it is still running then.
fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn describe(output: &Output) -> String {
    format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
