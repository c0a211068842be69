//! `tollgate-authenticator` with the real flatpak: D-Bus-activated on a private bus, the license
//! key in a real gnome-keyring through the Secret Service provider, tokens from the real
//! entitlement service; and `tollgate-helper token`, `pull` and `status` with the real `ostree`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::bus::SessionBus;
use crate::cmd::Cmd;
use crate::entitlements::{Service, license_for_paid};
use crate::fixture::Fixture;
use crate::gating::{APP, GatedRepo, RUNTIME, gated_repo};
use crate::keyring::Keyring;
use crate::server::{tollgate_bin, workspace_bin};

const AUTHENTICATOR: &str = "org.tollgate.Authenticator";

/// A gated app and its public runtime served with the entitlement service, the repository
/// pointed at tollgate's authenticator, the Secret Service provider installed for the user, and
/// a private bus with gnome-keyring on it where flatpak can activate the authenticator.
struct Setup {
    fx: Fixture,
    g: GatedRepo,
    s: Service,
    bus: SessionBus,
    _keyring: Keyring,
    key: String,
}

impl Setup {
    fn new() -> Setup {
        let fx = Fixture::new();
        let g = gated_repo(&fx);
        let s = Service::start(&fx, &g, None, "");
        let key = license_for_paid(&s);
        let said = fx
            .cmd(tollgate_bin().to_str().expect("UTF-8"))
            .args(["authenticator", "--repo"])
            .arg(&g.repo)
            .args(["--url", &s.server.url()])
            .run();
        assert!(
            said.contains(&format!("flatpak clients now ask {AUTHENTICATOR}")),
            "{said}"
        );
        // What flatpak remote-add will copy: the repository's config says it.
        let config = std::fs::read_to_string(g.repo.join("config")).expect("config");
        assert!(
            config.contains(&format!("authenticator-name={AUTHENTICATOR}")),
            "{config}"
        );
        assert!(
            config.contains(&format!("authenticator-options.url={}", s.server.url())),
            "{config}"
        );
        let providers = fx.join("home/.local/share/tollgate/providers");
        std::fs::create_dir_all(&providers).expect("mkdir providers");
        let library = "libtollgate_provider_secret_service.so";
        std::os::unix::fs::symlink(workspace_bin(library), providers.join(library))
            .expect("installing the provider");
        let authenticator = workspace_bin("tollgate-authenticator");
        let bus = SessionBus::start(&fx, &[(AUTHENTICATOR, authenticator.as_path())]);
        let keyring = Keyring::start(&fx, &bus, "login-password");
        Setup {
            fx,
            g,
            s,
            bus,
            _keyring: keyring,
            key,
        }
    }

    fn env(&self) -> Vec<(String, PathBuf)> {
        self.fx
            .env()
            .iter()
            .cloned()
            .chain([self.bus.env()])
            .collect()
    }

    fn flatpak(&self) -> Cmd {
        self.fx
            .flatpak()
            .envs(&self.env())
            .timeout(Duration::from_secs(120))
    }

    fn helper(&self) -> Cmd {
        let bin = workspace_bin("tollgate-helper");
        self.fx
            .cmd(bin.to_str().expect("UTF-8"))
            .envs(&self.env())
            .timeout(Duration::from_secs(60))
    }

    /// Token issuance records so far.
    fn issued(&self) -> usize {
        let page = self.s.admin_ok(200, "GET", "audit/tokens?limit=1000", None);
        page["items"].as_array().map_or(0, Vec::len)
    }

    fn installed_app(&self) -> String {
        let arch = self.fx.flatpak_arch();
        let path = self.fx.join(format!(
            "home/.local/share/flatpak/app/{APP}/{arch}/stable/active/files/bin/app"
        ));
        std::fs::read_to_string(&path).unwrap_or_default()
    }
}

#[test]
fn flatpak_installs_updates_and_uninstalls_a_gated_app_with_the_key_in_the_keyring() {
    let t = Setup::new();
    let url = t.s.server.url();
    let url = url.trim_end_matches('/');
    let stored = t
        .helper()
        .args(["login", url, "--key-stdin"])
        .stdin(format!("{}\n", t.key))
        .run();
    assert_eq!(
        stored.trim(),
        format!("stored the license-key for {url} with secret-service")
    );

    t.fx.flatpak_remote_add("shop", &t.s.server.url());
    t.flatpak()
        .args(["--user", "install", "-y", "--noninteractive", "shop", APP])
        .run();
    let listed = t
        .flatpak()
        .args(["--user", "list", "--columns=application"])
        .run();
    assert!(listed.contains(APP) && listed.contains(RUNTIME), "{listed}");
    assert_eq!(t.installed_app(), format!("#!/bin/sh\necho {APP} 2\n"));
    let issued = t.s.wait_for_audit("tokens", "limit=1000", 1).len();
    assert_eq!(issued, 1, "one token request for the install");

    // The vendor publishes version 3; the update uses the cached token: the server issues none.
    t.fx.flatpak_app(&t.g.repo, APP, RUNTIME, 3, Some(2));
    t.fx.flatpak_update_repo(&t.g.repo);
    t.flatpak()
        .args(["--user", "update", "-y", "--noninteractive"])
        .run();
    assert_eq!(t.installed_app(), format!("#!/bin/sh\necho {APP} 3\n"));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(t.issued(), 1, "the update asked the server for a token");

    // `status` shows the credential and the cached tokens, never a secret.
    let status = t.helper().arg("status").run();
    assert!(status.contains("secret-service"), "{status}");
    assert!(
        status.contains(&format!("{url}: license-key in secret-service")),
        "{status}"
    );
    assert!(
        status.contains(&format!("{url} {}: token, expires in ", t.g.app_ref)),
        "{status}"
    );
    assert!(!status.contains(&t.key), "{status}");
    assert!(!status.contains("eyJ"), "a token in the status: {status}");

    t.flatpak()
        .args(["--user", "uninstall", "-y", "--noninteractive", APP])
        .run();
    assert_eq!(t.installed_app(), "");
}

#[test]
fn without_a_stored_credential_a_noninteractive_install_fails_clearly() {
    let t = Setup::new();
    t.fx.flatpak_remote_add("shop", &t.s.server.url());
    let err = t
        .flatpak()
        .args(["--user", "install", "-y", "--noninteractive", "shop", APP])
        .run_fail();
    let url = t.s.server.url();
    let url = url.trim_end_matches('/');
    assert!(
        err.contains(&format!("no license key or account is stored for {url}")),
        "{err}"
    );
    assert!(
        err.contains(&format!("tollgate-helper login {url}")),
        "{err}"
    );
    assert_eq!(t.issued(), 0);
}

#[test]
fn tollgate_helper_pulls_a_gated_ref_with_its_token_and_the_public_one_without() {
    let t = Setup::new();
    let url = t.s.server.url();
    let url = url.trim_end_matches('/');
    t.helper()
        .args(["login", url, "--key-stdin"])
        .stdin(format!("{}\n", t.key))
        .run();

    let printed = t
        .helper()
        .args(["token", url, &t.g.app_ref, &t.g.runtime_ref])
        .run();
    let tokens: Value = serde_json::from_str(&printed).expect("JSON");
    let groups = tokens["tokens"].as_object().expect("tokens");
    assert_eq!(groups.len(), 2, "{tokens}");
    assert_eq!(groups[""], serde_json::json!([t.g.runtime_ref]));
    let (jwt, refs) = groups.iter().find(|(k, _)| !k.is_empty()).expect("a token");
    assert_eq!(refs, &serde_json::json!([t.g.app_ref]));
    assert!(jwt.starts_with("eyJ"), "{jwt}");

    let cli = t.fx.ostree_client(&t.s.server.url());
    let out = t
        .helper()
        .args(["pull", "--repo"])
        .arg(&cli)
        .args(["origin", &t.g.app_ref, &t.g.runtime_ref])
        .run();
    assert!(
        out.contains(&format!("pulled {} with a token", t.g.app_ref)),
        "{out}"
    );
    assert!(
        out.contains(&format!("pulled {} (public)", t.g.runtime_ref)),
        "{out}"
    );
    t.fx.assert_pulled(&cli, "origin", &t.g.repo, &t.g.app_ref);
    t.fx.assert_pulled(&cli, "origin", &t.g.repo, &t.g.runtime_ref);
    t.fx.fsck(&cli);
    // One issuance served both the token command and the pull.
    assert_eq!(t.s.wait_for_audit("tokens", "limit=1000", 1).len(), 1);

    // After logout there is no credential and no cached token: the pull says what to do.
    t.helper().args(["logout", url]).run();
    let status = t.helper().arg("status").run();
    assert!(status.contains("cached tokens:\n  none"), "{status}");
    let err = t
        .helper()
        .args(["pull", "--repo"])
        .arg(&cli)
        .args(["origin", &t.g.app_ref])
        .run_fail();
    assert!(
        err.contains(&format!("no license key or account is stored for {url}")),
        "{err}"
    );
}

#[test]
fn tollgate_authenticator_refuses_what_is_not_a_repository_or_an_address() {
    let fx = Fixture::new();
    let tree = crate::fixture::sample_tree(&fx.join("tree"));
    let (repo, _) = fx.archive_repo("repo", "test/ref", &tree);
    let before = std::fs::read_to_string(repo.join("config")).expect("config");
    let tollgate = || fx.cmd(tollgate_bin().to_str().expect("UTF-8"));
    let err = tollgate()
        .args(["authenticator", "--repo"])
        .arg(fx.join("tree"))
        .args(["--url", "https://apps.example.com"])
        .run_fail();
    assert!(err.contains("is not an OSTree archive repository"), "{err}");
    for url in [
        "ftp://apps.example.com",
        "https://user:pw@apps.example.com",
        "https://apps.example.com/?key=1",
        "apps.example.com",
    ] {
        let err = tollgate()
            .args(["authenticator", "--repo"])
            .arg(&repo)
            .args(["--url", url])
            .run_fail();
        assert!(
            err.contains("is not an http or https address"),
            "{url}: {err}"
        );
    }
    let err = tollgate()
        .args(["authenticator", "--repo"])
        .arg(&repo)
        .args(["--url", "https://apps.example.com", "--name", "../x"])
        .run_fail();
    assert!(err.contains("is not a repository name"), "{err}");
    assert_eq!(
        std::fs::read_to_string(repo.join("config")).expect("config"),
        before,
        "a refused command changed the repository"
    );
}
