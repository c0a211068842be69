//! A private D-Bus session bus for one test, with the services the test names activatable on
//! it, started with the test's isolated environment so that activated services inherit it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::cmd::require_tool;
use crate::fixture::{Fixture, write_files};

/// flatpak's own test authenticator (Debian package `flatpak-tests`): answers every
/// `RequestRefTokens` with the token in `$XDG_RUNTIME_DIR/required-token`.
pub const TEST_AUTHENTICATOR: &str = "/usr/libexec/installed-tests/Flatpak/test-authenticator";
pub const TEST_AUTHENTICATOR_NAME: &str = "org.flatpak.Authenticator.test";

#[derive(Debug)]
pub struct SessionBus {
    child: Child,
    address: String,
}

impl SessionBus {
    /// Starts `dbus-daemon` with `services` (bus name, executable) activatable.
    pub fn start(fx: &Fixture, services: &[(&str, &Path)]) -> SessionBus {
        require_tool("dbus-daemon", "dbus-daemon");
        let dir = fx.join("bus");
        let services_dir = dir.join("services");
        let mut files = vec![(
            "session.conf".to_owned(),
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"
 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir={}</listen>
  <servicedir>{}</servicedir>
  <policy context=\"default\">
    <allow send_destination=\"*\" eavesdrop=\"true\"/>
    <allow eavesdrop=\"true\"/>
    <allow own=\"*\"/>
  </policy>
</busconfig>
",
                dir.display(),
                services_dir.display()
            )
            .into_bytes(),
        )];
        for (name, exec) in services {
            files.push((
                format!("services/{name}.service"),
                format!("[D-BUS Service]\nName={name}\nExec={}\n", exec.display()).into_bytes(),
            ));
        }
        let files: Vec<(&str, Vec<u8>)> =
            files.iter().map(|(n, c)| (n.as_str(), c.clone())).collect();
        write_files(&dir, &files);
        SessionBus::spawn(
            fx,
            &format!("--config-file={}", dir.join("session.conf").display()),
            &[],
        )
    }

    /// Starts `dbus-daemon --session`: the system's own session bus configuration, which
    /// activates the services installed in `/usr/share/dbus-1/services` (and the user's).
    pub fn start_as_installed(fx: &Fixture) -> SessionBus {
        SessionBus::start_as_installed_with(fx, &[])
    }

    /// As [`SessionBus::start_as_installed`], with `extra` in its environment (and so in the
    /// services it starts): `XDG_DATA_DIRS`, say, which says where it finds services.
    pub fn start_as_installed_with(fx: &Fixture, extra: &[(String, PathBuf)]) -> SessionBus {
        require_tool("dbus-daemon", "dbus-daemon");
        SessionBus::spawn(fx, "--session", extra)
    }

    fn spawn(fx: &Fixture, config: &str, extra: &[(String, PathBuf)]) -> SessionBus {
        let mut command = Command::new("dbus-daemon");
        command
            .arg(config)
            .args(["--nofork", "--print-address"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in fx.env().iter().chain(extra) {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("starting dbus-daemon");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("reading the bus address");
        assert!(line.starts_with("unix:"), "dbus-daemon printed {line:?}");
        SessionBus {
            child,
            address: line.trim().to_owned(),
        }
    }

    /// The bus's address, for connecting to it from the test itself.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The variable that points clients at this bus.
    pub fn env(&self) -> (String, PathBuf) {
        (
            "DBUS_SESSION_BUS_ADDRESS".to_owned(),
            PathBuf::from(&self.address),
        )
    }
}

impl Drop for SessionBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test authenticator's path, or a panic saying which package provides it.
pub fn test_authenticator() -> &'static Path {
    let path = Path::new(TEST_AUTHENTICATOR);
    assert!(
        path.is_file(),
        "{TEST_AUTHENTICATOR} is missing: install it with `apt-get install flatpak-tests`, or \
         run `scripts/setup`"
    );
    path
}
