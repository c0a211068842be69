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

    /// This command run through `program` and `args` (a wrapper such as `unshare ...`, which
    /// ends by running its remaining arguments): same environment, directory, stdin and time
    /// limit.
    pub fn through<S: AsRef<OsStr>>(self, program: impl AsRef<OsStr>, args: &[S]) -> Cmd {
        let mut wrapped = Cmd::new(program)
            .args(args)
            .arg(self.command.get_program())
            .args(self.command.get_args());
        for (key, value) in self.command.get_envs() {
            match value {
                Some(value) => wrapped.command.env(key, value),
                None => wrapped.command.env_remove(key),
            };
        }
        if let Some(dir) = self.command.get_current_dir() {
            wrapped.command.current_dir(dir);
        }
        wrapped.stdin = self.stdin;
        wrapped.timeout = self.timeout;
        wrapped
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

impl Cmd {
    /// Starts the command on a pseudo-terminal of its own (through util-linux's `script`), for
    /// programs that only prompt when a person could answer, as flatpak does.
    pub fn in_terminal(self) -> Terminal {
        require_tool("script", "bsdutils");
        let quote = |s: &OsStr| format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"));
        let line: Vec<String> = std::iter::once(self.command.get_program())
            .chain(self.command.get_args())
            .map(quote)
            .collect();
        let mut command = Command::new("script");
        command.args(["--quiet", "--flush", "--return", "--command"]);
        command.arg(line.join(" ")).arg("/dev/null");
        for (key, value) in self.command.get_envs() {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        if let Some(dir) = self.command.get_current_dir() {
            command.current_dir(dir);
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}` in a terminal: {e}", self.display));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let readers = vec![
            follow(child.stdout.take().expect("stdout is piped"), &seen),
            follow(child.stderr.take().expect("stderr is piped"), &seen),
        ];
        Terminal {
            stdin: child.stdin.take(),
            child,
            seen,
            readers,
            cursor: 0,
            display: self.display,
            deadline: Instant::now() + self.timeout,
        }
    }
}

/// Appends what `pipe` gives to `seen` as it comes.
fn follow(
    mut pipe: impl Read + Send + 'static,
    seen: &std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
) -> std::thread::JoinHandle<()> {
    let seen = std::sync::Arc::clone(seen);
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buffer) {
            if n == 0 {
                break;
            }
            seen.lock()
                .expect("terminal output")
                .extend_from_slice(&buffer[..n]);
        }
    })
}

/// A command running on a pseudo-terminal: wait for what it prints, type answers.
#[derive(Debug)]
pub struct Terminal {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    /// How much of the output earlier `expect`s have consumed.
    cursor: usize,
    display: String,
    deadline: Instant,
}

impl Terminal {
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().expect("terminal output")).into_owned()
    }

    /// Waits until the output after what earlier calls consumed contains `text`; returns that
    /// output up to and including it. Panics, with all the output, if the command ends or its
    /// time runs out first.
    pub fn expect(&mut self, text: &str) -> String {
        match self.next_of(&[text]) {
            Some((_, upto)) => upto,
            None => panic!(
                "`{}` ended before printing {text:?}; it printed:\n{}",
                self.display,
                self.output()
            ),
        }
    }

    /// Waits until the output after what earlier calls consumed contains one of `texts`: which
    /// one came first, and the output up to and including it; `None` if the command ended
    /// without printing any. Panics, with all the output, if its time runs out first.
    pub fn next_of(&mut self, texts: &[&str]) -> Option<(usize, String)> {
        loop {
            // Whether it had ended is read before its output, so that nothing it printed last
            // is missed.
            let ended = self
                .child
                .try_wait()
                .expect("waiting for a child")
                .is_some();
            if ended {
                for reader in std::mem::take(&mut self.readers) {
                    let _ = reader.join();
                }
            }
            let output = self.output();
            let rest = output.get(self.cursor..).unwrap_or_default();
            let first = texts
                .iter()
                .enumerate()
                .filter_map(|(i, text)| rest.find(text).map(|at| (at, i, text.len())))
                .min();
            if let Some((at, i, len)) = first {
                let upto = rest[..at + len].to_owned();
                self.cursor += at + len;
                return Some((i, upto));
            }
            if ended {
                return None;
            }
            if Instant::now() >= self.deadline {
                panic!(
                    "`{}` ran out of time waiting for one of {texts:?}; it printed:\n{output}",
                    self.display
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `line` and Enter, a moment after the prompt appeared: programs print a password
    /// prompt before they turn echo off (flushing input), as flatpak and rpassword do.
    pub fn send(&mut self, line: &str) {
        std::thread::sleep(Duration::from_millis(300));
        let stdin = self.stdin.as_mut().expect("the terminal's input is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("typing into `{}`: {e}", self.display));
    }

    /// Answers an interactive `flatpak install` until it ends: no to opening a browser for a
    /// web sign-in (so that the authenticator asks at the prompt, as where there is no
    /// browser), yes to every other `[Y/n]`, `user` at its login's `User:`, and at each
    /// `Password:` the next of `passwords` (the last again once they run out). Returns how many
    /// passwords were asked for.
    pub fn answer_flatpak_install(&mut self, user: &str, passwords: &[&str]) -> usize {
        let mut asked = 0;
        while let Some((prompt, _)) =
            self.next_of(&["Open browser? [Y/n]", "[Y/n]", "User:", "Password:"])
        {
            match prompt {
                0 => self.send("n"),
                1 => self.send("y"),
                2 => self.send(user),
                _ => {
                    let password = passwords
                        .get(asked)
                        .or(passwords.last())
                        .expect("a password to type");
                    asked += 1;
                    self.send(password);
                }
            }
        }
        asked
    }

    /// Waits for the command to end; its exit status and everything it printed.
    pub fn finish(mut self) -> (std::process::ExitStatus, String) {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let status = wait_with_deadline(&mut self.child, remaining);
        self.stdin.take();
        for reader in std::mem::take(&mut self.readers) {
            let _ = reader.join();
        }
        let output =
            String::from_utf8_lossy(&self.seen.lock().expect("terminal output")).into_owned();
        let status = status
            .unwrap_or_else(|| panic!("`{}` ran out of time; it printed:\n{output}", self.display));
        (status, output)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
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
