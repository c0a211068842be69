//! The authenticator as a Flatpak app of the repository (`tollgate authenticator --install`),
//! installed by stock flatpak itself (`xa.authenticator-install`) for a user who has nothing of
//! tollgate: no package, no activation file of ours, no providers on the host. flatpak starts it
//! through bwrap, on a runtime built from the host's own libraries as flatpak's own test suite
//! builds its test runtime (the real `org.freedesktop.Platform` cannot be fetched here).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bus::SessionBus;
use crate::cmd::{Cmd, require_tool};
use crate::fixture::{Fixture, write_files};
use crate::gated_repo::{APP, gated_repo};
use crate::keyring::Keyring;
use crate::server::{tollgate_bin, workspace_bin};
use crate::service::{Service, license_for_paid};

const AUTHENTICATOR: &str = "org.tollgate.Authenticator";
const RUNTIME_ID: &str = "org.tollgate.Test.HostPlatform";
const RUNTIME_BRANCH: &str = "test";

/// A runtime holding the host's libraries that `binaries` link to (found with `ldd`), exported
/// with the real `flatpak build-export --runtime` into `repo`, as flatpak's
/// `make-test-runtime.sh` does. No CA certificates: the authenticator must not need them for an
/// `http://` service.
fn host_runtime(fx: &Fixture, repo: &Path, binaries: &[PathBuf]) {
    require_tool("ldd", "libc-bin");
    let dir = fx.join("host-runtime");
    let lib = dir.join("usr/lib");
    // build-export wants `files/` even for a runtime made of `usr/`.
    for d in [&lib, &dir.join("files")] {
        std::fs::create_dir_all(d).expect("mkdir runtime");
    }
    std::os::unix::fs::symlink("lib", dir.join("usr/lib64")).expect("lib64");
    let mut libraries = BTreeSet::new();
    for binary in binaries {
        let listed = Cmd::new("ldd").arg(binary).run();
        for line in listed.lines() {
            let path = line.split("=>").last().unwrap_or(line).trim();
            let path = path.split_whitespace().next().unwrap_or("");
            if path.starts_with('/') {
                libraries.insert(PathBuf::from(path));
            }
        }
    }
    assert!(
        libraries
            .iter()
            .any(|l| l.to_string_lossy().contains("libc.so")),
        "ldd found no libc: {libraries:?}"
    );
    for library in &libraries {
        let name = library.file_name().expect("a file name");
        std::fs::copy(library, lib.join(name)).expect("copying a library");
    }
    write_files(
        &dir,
        &[(
            "metadata",
            format!("[Runtime]\nname={RUNTIME_ID}\n").into_bytes(),
        )],
    );
    fx.flatpak()
        .args([
            "build-export",
            "--runtime",
            "--disable-sandbox",
            "--no-update-summary",
        ])
        .arg(repo)
        .arg(&dir)
        .arg(RUNTIME_BRANCH)
        .run();
}

/// The `(group, key, value)` lines of a key file.
fn key_file(text: &str) -> BTreeSet<(String, String, String)> {
    let mut group = String::new();
    let mut lines = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            group = name.to_owned();
        } else if let Some((key, value)) = line.split_once('=') {
            lines.insert((group.clone(), key.to_owned(), value.to_owned()));
        }
    }
    lines
}

#[test]
fn stock_flatpak_installs_the_authenticator_from_the_repository_and_the_paid_app_with_it() {
    let packaged = Path::new("/usr/share/dbus-1/services/org.tollgate.Authenticator.service");
    assert!(
        !packaged.exists(),
        "{} exists (the tollgate-client package is installed): this test is about a user \
         without it; remove it with `apt-get purge tollgate-client`",
        packaged.display()
    );
    require_tool("bwrap", "bubblewrap");
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start(&fx, &g, None, "");
    let key = license_for_paid(&s);
    let url = s.server.url();
    let service = url.trim_end_matches('/');
    let arch = fx.flatpak_arch();
    let binaries = workspace_bin("tollgate-authenticator")
        .parent()
        .expect("the build folder")
        .to_owned();
    host_runtime(
        &fx,
        &g.repo,
        &[
            binaries.join("tollgate-authenticator"),
            binaries.join("libtollgate_provider_secret_service.so"),
            binaries.join("libtollgate_provider_file.so"),
        ],
    );
    let publish = || {
        fx.cmd(tollgate_bin().to_str().expect("UTF-8"))
            .args(["authenticator", "--repo"])
            .arg(&g.repo)
            .args(["--url", &url, "--install"])
            .args(["--runtime", RUNTIME_ID, "--runtime-branch", RUNTIME_BRANCH])
            .arg("--binaries")
            .arg(&binaries)
            .timeout(Duration::from_secs(120))
            .run()
    };
    let said = publish();
    let app_ref = format!("app/{AUTHENTICATOR}/{arch}/autoinstall");
    assert!(said.contains(&app_ref), "{said}");

    // The app's permissions, from its metadata: a widened one fails here.
    let metadata = fx
        .ostree(&g.repo)
        .args(["cat", &app_ref, "/metadata"])
        .run();
    let expected: BTreeSet<(String, String, String)> = [
        ("Application", "name", AUTHENTICATOR.to_owned()),
        (
            "Application",
            "runtime",
            format!("{RUNTIME_ID}/{arch}/{RUNTIME_BRANCH}"),
        ),
        (
            "Application",
            "command",
            "tollgate-authenticator".to_owned(),
        ),
        ("Context", "shared", "network;".to_owned()),
        (
            "Session Bus Policy",
            "org.freedesktop.secrets",
            "talk".to_owned(),
        ),
        (
            "Environment",
            "TOLLGATE_PROVIDER_PATH",
            "/app/lib/tollgate/providers".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(g, k, v)| (g.to_owned(), k.to_owned(), v))
    .collect();
    assert_eq!(key_file(&metadata), expected, "{metadata}");
    let file = crate::http::get(s.server.addr, "/repo.flatpakrepo");
    let text = String::from_utf8_lossy(&file.body);
    assert!(text.contains("AuthenticatorInstall=true\n"), "{text}");

    // A fresh user: the system's session bus configuration with XDG_DATA_DIRS as flatpak's
    // profile script sets it (so the exported activation file of an installed app is found),
    // and an unlocked keyring.
    let data_dirs = format!(
        "{}:/var/lib/flatpak/exports/share:/usr/local/share:/usr/share",
        fx.join("home/.local/share/flatpak/exports/share").display()
    );
    let dirs_env = ("XDG_DATA_DIRS".to_owned(), PathBuf::from(&data_dirs));
    let bus = SessionBus::start_as_installed_with(&fx, std::slice::from_ref(&dirs_env));
    let _keyring = Keyring::start(&fx, &bus, "login-password");
    let env: Vec<(String, PathBuf)> = fx
        .env()
        .iter()
        .cloned()
        .chain([bus.env(), dirs_env])
        .collect();
    let flatpak = || fx.flatpak().envs(&env).timeout(Duration::from_secs(180));
    flatpak()
        .args(["--user", "remote-add", "shop"])
        .arg(format!("{url}repo.flatpakrepo"))
        .run();

    // flatpak installs the authenticator (and its runtime) by itself, starts it, and prompts.
    let mut terminal = flatpak()
        .args(["--user", "install", "shop", APP])
        .in_terminal();
    let passwords =
        terminal.answer_flatpak_install("customer", &["tg_0000000000000000_notakey", &key]);
    let (status, output) = terminal.finish();
    assert!(
        status.success(),
        "flatpak install failed ({status}):\n{output}"
    );
    assert!(
        output.contains("Installing required authenticator for remote shop"),
        "flatpak did not install the authenticator itself:\n{output}"
    );
    assert_eq!(passwords, 2, "a wrong key is asked again:\n{output}");
    assert!(
        output.contains(&format!(
            "{service} did not accept that license key, or that account name and password"
        )),
        "{output}"
    );
    assert!(!output.contains(&key), "the key was echoed: {output}");
    assert_eq!(fx.installed_app(APP), format!("#!/bin/sh\necho {APP} 2\n"));
    fx.fsck(&fx.join("home/.local/share/flatpak/repo"));

    // The key went to the user's keyring, through the sandbox.
    let stored = fx
        .cmd("secret-tool")
        .args(["lookup", "service", "tollgate", "url", service])
        .envs(&env)
        .run();
    assert_eq!(stored.trim(), key);

    // A second install asks nothing: without the sandbox's cached tokens, the key comes from
    // the keyring (and a noninteractive install could not prompt).
    let sandbox_cache = fx.join(format!("home/.var/app/{AUTHENTICATOR}/cache"));
    let uninstall = || {
        flatpak()
            .args(["--user", "uninstall", "-y", "--noninteractive", APP])
            .run()
    };
    // The tokens were cached in the sandbox's own cache folder, not the host's.
    assert!(
        sandbox_cache.join("tollgate/tokens.json").is_file(),
        "no token cache in {}",
        sandbox_cache.display()
    );
    assert!(!fx.join("home/.cache/tollgate/tokens.json").exists());
    uninstall();
    std::fs::remove_dir_all(&sandbox_cache).ok();
    fx.flatpak_install(&env, "shop", APP);
    assert_eq!(fx.installed_app(APP), format!("#!/bin/sh\necho {APP} 2\n"));

    // An update of the authenticator is an ordinary flatpak update.
    let commit = || {
        flatpak()
            .args(["--user", "info", "--show-commit", AUTHENTICATOR])
            .run()
            .trim()
            .to_owned()
    };
    let before = commit();
    publish();
    flatpak()
        .args(["--user", "update", "-y", "--noninteractive"])
        .run();
    let after = commit();
    assert_ne!(
        before, after,
        "flatpak update did not update the authenticator"
    );
    assert_eq!(
        after,
        fx.ostree(&g.repo)
            .args(["rev-parse", &app_ref])
            .run()
            .trim()
    );

    // A revoked license fails with the service's reason.
    let licenses = s.admin_ok(200, "GET", "licenses", None);
    let id = licenses
        .as_array()
        .expect("licenses")
        .iter()
        .find(|l| l["products"] == serde_json::json!(["paid"]))
        .and_then(|l| l["id"].as_str())
        .expect("the paid license")
        .to_owned();
    s.admin_ok(
        200,
        "PATCH",
        &format!("licenses/{id}"),
        Some(serde_json::json!({"active": false})),
    );
    uninstall();
    std::fs::remove_dir_all(&sandbox_cache).ok();
    let err = fx.flatpak_install_fails(&env, "shop", APP);
    assert!(
        err.contains(&format!(
            "{service}: the license has been revoked or suspended"
        )),
        "{err}"
    );
}
