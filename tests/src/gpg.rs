//! GPG signing keys for tests of signed repositories, each made with the real `gpg` in a home
//! of its own inside a fixture.

use std::path::PathBuf;

use crate::cmd::require_tool;
use crate::fixture::{Fixture, set_mode};

/// A GPG key in a home of its own inside the fixture, for signing commits and summaries
/// (libostree's P2P pulls always check commit signatures; flatpak checks summaries when the
/// remote has a key). Its agent is stopped on drop.
#[derive(Debug)]
pub struct SigningKey {
    pub home: PathBuf,
    /// The key's fingerprint.
    pub id: String,
    /// The public key, exported in binary (what `--gpg-import` takes).
    pub public: PathBuf,
}

impl SigningKey {
    /// A key whose home is `gnupg` in the fixture.
    pub fn new(fx: &Fixture) -> SigningKey {
        SigningKey::named(fx, "gnupg")
    }

    /// A key whose home is `name` in the fixture, its public key `name.gpg`, so that one test
    /// can have several.
    pub fn named(fx: &Fixture, name: &str) -> SigningKey {
        require_tool("gpg", "gnupg");
        require_tool("gpgconf", "gnupg");
        let home = fx.join(name);
        std::fs::create_dir_all(&home).expect("mkdir gnupg");
        set_mode(&home, 0o700);
        let gpg = || fx.cmd("gpg").arg("--homedir").arg(&home).arg("--batch");
        gpg()
            .args(["--passphrase", "", "--quick-gen-key"])
            .args([
                &format!("tollgate tests {name} <tests@tollgate.invalid>"),
                "ed25519",
                "sign",
                "never",
            ])
            .run();
        let listed = gpg().args(["--with-colons", "--list-keys"]).run();
        let id = listed
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').find(|f| !f.is_empty()))
            .expect("the key's fingerprint")
            .to_owned();
        let public = fx.join(format!("{name}.gpg"));
        gpg()
            .arg("--output")
            .arg(&public)
            .args(["--export", &id])
            .run();
        SigningKey { home, id, public }
    }

    /// The options of `ostree commit`, `ostree summary`, `ostree gpg-sign` (as
    /// `--gpg-homedir` only) and `flatpak build-update-repo` that sign with this key.
    pub fn sign_args(&self) -> [String; 2] {
        [
            format!("--gpg-sign={}", self.id),
            format!("--gpg-homedir={}", self.home.display()),
        ]
    }
}

impl Drop for SigningKey {
    fn drop(&mut self) {
        let _ = std::process::Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.home)
            .args(["--kill", "all"])
            .status();
    }
}
