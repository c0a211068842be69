//! `tollgate-authenticator` with the real flatpak: D-Bus-activated on a private bus, the license
//! key in a real gnome-keyring through the Secret Service provider, tokens from the real
//! entitlement service; and `tollgate-helper token`, `pull` and `status` with the real `ostree`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::cmd::Cmd;
use crate::customer::{AUTHENTICATOR, Setup};
use crate::fixture::Fixture;
use crate::gated_repo::{APP, RUNTIME};
use crate::server::{Access, Server, tollgate_bin};

#[test]
fn flatpak_installs_updates_and_uninstalls_a_gated_app_with_the_key_in_the_keyring() {
    let t = Setup::start();
    let url = t.s.server.url();
    let url = url.trim_end_matches('/');
    let stored = t.login(url, &t.key).run();
    assert_eq!(
        stored.trim(),
        format!(
            "{url} accepts the license-key, valid without end\n  Paid (paid): app/{APP}/*\n\
             stored the license-key for {url} with secret-service"
        )
    );

    t.fx.flatpak_remote_add("shop", &t.s.server.url());
    t.fx.flatpak_install(&t.env(), "shop", APP);
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
    // The same as JSON, for scripts.
    let text = t.helper().args(["status", "--json"]).run();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["credentials"][0]["url"], url, "{json}");
    assert_eq!(
        json["credentials"][0]["found"]["provider"],
        "secret-service"
    );
    assert_eq!(json["credentials"][0]["found"]["kind"], "license-key");
    assert!(
        json["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["ref"] == t.g.app_ref.as_str() && e["kind"] == "token"),
        "{json}"
    );
    assert!(!text.contains(&t.key) && !text.contains("eyJ"), "{text}");

    t.flatpak()
        .args(["--user", "uninstall", "-y", "--noninteractive", APP])
        .run();
    assert_eq!(t.installed_app(), "");
}

#[test]
fn without_a_stored_credential_a_noninteractive_install_fails_clearly() {
    let t = Setup::start();
    t.fx.flatpak_remote_add("shop", &t.s.server.url());
    let err = t.fx.flatpak_install_fails(&t.env(), "shop", APP);
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
    let t = Setup::start();
    let url = t.s.server.url();
    let url = url.trim_end_matches('/');
    t.login(url, &t.key).run();
    // Before any token was fetched, `status` lists the service a credential was stored for.
    let status = t.helper().arg("status").run();
    assert!(
        status.contains(&format!(
            "credentials:\n  {url}: license-key in secret-service\n"
        )),
        "{status}"
    );
    let json: Value =
        serde_json::from_str(&t.helper().args(["status", "--json"]).run()).expect("JSON");
    assert_eq!(json["credentials"][0]["url"], url, "{json}");
    assert_eq!(json["credentials"][0]["found"]["kind"], "license-key");

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
    assert!(
        status.contains("credentials:\n  no service seen yet"),
        "{status}"
    );
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
    // --install without the binaries to build the app from.
    let err = tollgate()
        .args(["authenticator", "--repo"])
        .arg(&repo)
        .args([
            "--url",
            "https://apps.example.com",
            "--install",
            "--binaries",
        ])
        .arg(fx.join("tree"))
        .run_fail();
    assert!(
        err.contains("tollgate-authenticator is missing: build the client side first"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("config")).expect("config"),
        before,
        "a refused command changed the repository"
    );
    let refs = fx.ostree(&repo).arg("refs").run();
    assert_eq!(
        refs.trim(),
        "test/ref",
        "a refused --install committed: {refs}"
    );
}

/// An address where nothing listens: port 1 (tcpmux), which no test server can be given.
fn dead_url() -> String {
    "http://127.0.0.1:1".to_owned()
}

#[test]
fn a_plain_remote_add_from_the_flatpakrepo_and_flatpaks_own_prompt_in_a_terminal() {
    let t = Setup::start();
    let url = t.s.server.url();
    let url = url.trim_end_matches('/');

    // The .flatpakrepo names the server as the client reached it, and the authenticator.
    let file = crate::http::get(t.s.server.addr, "/repo.flatpakrepo");
    assert_eq!(file.status, 200);
    assert_eq!(
        file.header("content-type"),
        Some("application/vnd.flatpak.repo")
    );
    let text = String::from_utf8_lossy(&file.body);
    assert!(
        text.starts_with(&format!("[Flatpak Repo]\nUrl={url}/\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "AuthenticatorName={AUTHENTICATOR}\nAuthenticatorInstall=false\n"
        )),
        "{text}"
    );

    // A plain remote-add from it sets up the remote, the authenticator included.
    t.flatpak()
        .args(["--user", "remote-add", "shop"])
        .arg(format!("{url}/repo.flatpakrepo"))
        .run();
    let config = std::fs::read_to_string(t.fx.join("home/.local/share/flatpak/repo/config"))
        .expect("the user repository's config");
    assert!(
        config.contains(&format!("authenticator-name={AUTHENTICATOR}")),
        "{config}"
    );

    // No credential is stored: flatpak prompts in the terminal. A wrong key gets the
    // authenticator's previous-error and a second prompt; the right one installs, and is kept.
    // (Not -y: for flatpak, -y also means no interaction.)
    let mut terminal = t
        .flatpak()
        .args(["--user", "install", "shop", APP])
        .in_terminal();
    let passwords =
        terminal.answer_flatpak_install("customer", &["tg_0000000000000000_notakey", &t.key]);
    let (status, output) = terminal.finish();
    assert!(
        status.success(),
        "flatpak install failed ({status}):\n{output}"
    );
    assert_eq!(passwords, 2, "two prompts expected:\n{output}");
    assert!(
        output.contains(&format!("Login required remote shop (realm {url}:")),
        "the prompt does not name the service:\n{output}"
    );
    // The second prompt comes after the authenticator's previous-error.
    let refused = output
        .find(&format!(
            "{url} did not accept that license key, or that account name and password"
        ))
        .unwrap_or_else(|| panic!("no previous-error:\n{output}"));
    let first = output.find("Password:").expect("a prompt");
    let last = output.rfind("Password:").expect("a prompt");
    assert!(first < refused && refused < last, "{output}");
    assert_eq!(t.installed_app(), format!("#!/bin/sh\necho {APP} 2\n"));
    assert!(!output.contains(&t.key), "the key was echoed: {output}");

    // The accepted key was stored in the keyring; the wrong one was not.
    let found = t.helper().args(["credential", url]).run();
    assert_eq!(found.trim(), "secret-service: license-key");
    let printed = t.helper().args(["token", url, &t.g.app_ref]).run();
    assert!(printed.contains("eyJ"), "{printed}");
}

#[test]
fn revoked_licenses_uncovered_refs_and_an_unreachable_service_each_fail_clearly() {
    let t = Setup::start();
    let url = t.s.server.url();
    let url = url.trim_end_matches('/');
    t.fx.flatpak_remote_add("shop", &t.s.server.url());
    let install = || t.fx.flatpak_install_fails(&t.env(), "shop", APP);

    // A license for another product: the app is not covered.
    t.s.admin_ok(
        201,
        "POST",
        "products",
        Some(serde_json::json!({"slug": "other", "name": "Other", "refs": ["app/org.example.Other/*"]})),
    );
    let other = t.s.admin_ok(
        201,
        "POST",
        "licenses",
        Some(serde_json::json!({"products": ["other"]})),
    );
    t.login(url, other["key"].as_str().expect("key")).run();
    let err = install();
    assert!(
        err.contains(&format!(
            "{url} gives no download token for {} (your license does not include it, and \
             nothing is on sale for it here: ask the vendor)",
            t.g.app_ref
        )),
        "{err}"
    );
    // On sale, the message says where to buy it (no browser opens without interaction).
    t.s.admin_ok(
        200,
        "PATCH",
        "products/paid",
        Some(serde_json::json!({"purchase-url": "https://shop.example/buy"})),
    );
    let err = install();
    assert!(
        err.contains(&format!(
            "{url} gives no download token for {} (your license does not include it; buy it \
             at {url}/account/buy?product=paid)",
            t.g.app_ref
        )),
        "{err}"
    );

    // The right license, revoked after it was stored.
    t.login(url, &t.key).run();
    let licenses = t.s.admin_ok(200, "GET", "licenses", None);
    let id = licenses
        .as_array()
        .expect("licenses")
        .iter()
        .find(|l| l["products"] == serde_json::json!(["paid"]))
        .and_then(|l| l["id"].as_str())
        .expect("the paid license")
        .to_owned();
    t.s.admin_ok(
        200,
        "PATCH",
        &format!("licenses/{id}"),
        Some(serde_json::json!({"active": false})),
    );
    let err = install();
    assert!(
        err.contains(&format!("{url}: the license has been revoked or suspended")),
        "{err}"
    );
    assert!(err.contains("contact the vendor"), "{err}");

    // An entitlement service that cannot be reached.
    // (The vendor points the repository at a service that is down.)
    let dead = dead_url();
    t.fx.cmd(tollgate_bin().to_str().expect("UTF-8"))
        .args(["authenticator", "--repo"])
        .arg(&t.g.repo)
        .args(["--url", &dead])
        .run();
    let refused = t.login(&dead, &t.key).run_fail();
    assert!(
        refused.contains(&format!(
            "not stored: cannot reach the entitlement service at {dead}"
        )),
        "{refused}"
    );
    assert!(refused.contains("--no-check"), "{refused}");
    t.login(&dead, &t.key).arg("--no-check").run();
    // The repository is no longer at the service's origin: refused until the user trusts it.
    let err = install();
    assert!(
        err.contains(&format!(
            "refusing to send tokens of the entitlement service {dead} to {url}"
        )),
        "{err}"
    );
    t.helper().args(["trust", "add", url]).run();
    let err = install();
    assert!(
        err.contains(&format!(
            "cannot reach the entitlement service at {dead}: cannot connect"
        )),
        "{err}"
    );
    assert_eq!(t.installed_app(), "", "something was installed");
}

#[test]
fn login_checks_the_credential_with_the_service_before_storing_it() {
    let t = Setup::start();
    let url = t.s.server.url();
    let url = url.trim_end_matches('/');
    let err = t.login(url, "tg_0000000000000000_notakey").run_fail();
    assert!(
        err.contains(&format!(
            "not stored: {url} refused the license key or account"
        )),
        "{err}"
    );
    let err = t.helper().args(["credential", url]).run_fail();
    assert!(err.contains("no provider has a credential"), "{err}");

    // An account's name and password are checked the same way.
    t.s.admin_ok(
        201,
        "POST",
        "accounts",
        Some(serde_json::json!({"name": "alice", "password": "a long enough password", "products": ["paid"]})),
    );
    let err = t
        .helper()
        .args(["login", url, "--user", "alice", "--password-stdin"])
        .stdin("not her password\n")
        .run_fail();
    assert!(err.contains("not stored"), "{err}");
    let out = t
        .helper()
        .args(["login", url, "--user", "alice", "--password-stdin"])
        .stdin("a long enough password\n")
        .run();
    assert!(
        out.contains(&format!(
            "{url} accepts the password for alice, valid without end"
        )),
        "{out}"
    );
    let found = t.helper().args(["credential", url]).run();
    assert_eq!(found.trim(), "secret-service: password for alice");

    // At a terminal, login asks for the key, without echo.
    let mut terminal = t.helper().args(["login", url]).in_terminal();
    terminal.expect(&format!("License key for {url}: "));
    terminal.send(&t.key);
    let (status, output) = terminal.finish();
    assert!(status.success(), "login failed ({status}):\n{output}");
    assert!(
        output.contains(&format!(
            "stored the license-key for {url} with secret-service"
        )),
        "{output}"
    );
    assert!(!output.contains(&t.key), "the key was echoed: {output}");
    let found = t.helper().args(["credential", url]).run();
    assert_eq!(found.trim(), "secret-service: license-key");
    // Elsewhere, it says how to give the key instead.
    let err = t.helper().args(["login", url]).run_fail();
    assert!(err.contains("not at a terminal"), "{err}");
    assert!(err.contains("--key-stdin"), "{err}");
}

#[test]
fn the_flatpakrepo_file_follows_the_repository_config_its_name_and_public_url() {
    let fx = Fixture::new();
    let tree = crate::fixture::sample_tree(&fx.join("tree"));
    let (repo, _) = fx.archive_repo("repo", "test/ref", &tree);
    fx.flatpak()
        .args([
            "build-update-repo",
            "--title=Example Shop",
            "--homepage=https://shop.example.com/",
        ])
        .arg(&repo)
        .run();
    let served = format!("shop={}", repo.display());

    // Behind a proxy: the configured address, with the repository's name.
    let config = fx.join("tollgate.toml");
    std::fs::write(&config, "public-url = \"https://apps.example.com\"\n").expect("config");
    let server = crate::server::Server::serve(
        &[
            "--repo",
            &served,
            "--config",
            config.to_str().expect("UTF-8"),
        ],
        fx.env(),
    );
    let file = crate::http::get(server.addr, "/shop/repo.flatpakrepo");
    assert_eq!(file.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&file.body),
        format!(
            "[Flatpak Repo]\nUrl=https://apps.example.com/shop/\nTitle=Example Shop\n\
             Homepage=https://shop.example.com/\nAuthenticatorName={AUTHENTICATOR}\n\
             AuthenticatorInstall=false\n"
        )
    );
    assert_eq!(file.header("cache-control"), Some("no-cache"));
    // Only repositories have one.
    assert_eq!(
        crate::http::get(server.addr, "/repo.flatpakrepo").status,
        404
    );
    assert_eq!(
        crate::http::get(server.addr, "/shop/other.flatpakrepo").status,
        404
    );
    drop(server);

    // Without public-url: the Host the client asked for, if it is one.
    let server = crate::server::Server::serve(&["--repo", &served], fx.env());
    let ask = |host: &str| {
        crate::http::send_raw(
            server.addr,
            format!(
                "GET /shop/repo.flatpakrepo HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .expect("an answer")
    };
    let file = ask("apps.test:8080");
    assert_eq!(file.status, 200);
    assert!(
        String::from_utf8_lossy(&file.body).contains("\nUrl=http://apps.test:8080/shop/\n"),
        "{}",
        String::from_utf8_lossy(&file.body)
    );
    for host in ["user@apps.test", "apps.test/evil", "apps.test:port"] {
        let answer = ask(host);
        assert_eq!(answer.status, 400, "Host {host}");
        assert!(
            String::from_utf8_lossy(&answer.body).contains("public-url"),
            "Host {host}: {}",
            String::from_utf8_lossy(&answer.body)
        );
    }
    drop(server);

    // A public-url that is not one stops the server at start, saying so.
    std::fs::write(&config, "public-url = \"ftp://apps.example.com\"\n").expect("config");
    let err = fx
        .cmd(tollgate_bin().to_str().expect("UTF-8"))
        .args([
            "serve",
            "--repo",
            &served,
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&config)
        .timeout(Duration::from_secs(30))
        .run_fail();
    assert!(
        err.contains("public-url \"ftp://apps.example.com\" is not an http or https address"),
        "{err}"
    );
}

/// A second tollgate, on another port, serving a copy of the repository: its summary still
/// names the real entitlement service (`xa.authenticator-options.auth-server-url`), as a look-alike's
/// would. It accepts the real service's tokens (its public key is in `trusted-keys`), as the
/// vendor's own mirror would, so that once trusted, installs and pulls from it work.
fn look_alike(t: &Setup) -> (Server, PathBuf) {
    let copy = t.fx.join("look-alike");
    Cmd::new("cp").arg("-a").arg(&t.g.repo).arg(&copy).run();
    let listed = Cmd::new(tollgate_bin())
        .args(["keys", "list", "--data-dir"])
        .arg(&t.g.data)
        .run();
    let pem = &listed[listed.find("-----BEGIN").expect("a public key")..];
    std::fs::write(t.fx.join("issuer.pem"), pem).expect("issuer.pem");
    let config = t.fx.join("look-alike.toml");
    std::fs::write(&config, "[tokens]\ntrusted-keys = [\"issuer.pem\"]\n").expect("config");
    let server = Server::serve(
        &[
            "--repo",
            copy.to_str().expect("UTF-8"),
            "--data-dir",
            t.fx.join("look-alike-data").to_str().expect("UTF-8"),
            "--config",
            config.to_str().expect("UTF-8"),
        ],
        t.fx.env(),
    );
    (server, copy)
}

/// The requests `server` logged that carried an `Authorization` header.
fn with_authorization(server: &Server) -> Vec<Access> {
    server
        .requests_since(0)
        .into_iter()
        .filter(|a| a.auth != "-")
        .collect()
}

#[test]
fn a_look_alike_remote_naming_the_real_service_gets_no_token_until_trusted() {
    let t = Setup::start();
    let url = t.s.server.url();
    let url = url.trim_end_matches('/');
    t.login(url, &t.key).run();
    // A token for the app in the cache already: the refusal comes before the cache too.
    t.helper().args(["token", url, &t.g.app_ref]).run();
    let issued = t.s.wait_for_audit("tokens", "limit=1000", 1).len();
    let (look_alike, _) = look_alike(&t);
    let other = look_alike.url();
    let other = other.trim_end_matches('/');

    // flatpak takes the authenticator and the real service's URL from the look-alike's summary.
    t.fx.flatpak_remote_add("look-alike", &look_alike.url());
    let config = std::fs::read_to_string(t.fx.join("home/.local/share/flatpak/repo/config"))
        .expect("the user repository's config");
    assert!(
        config.contains(&format!(
            "authenticator-options.auth-server-url={}",
            t.s.server.url()
        )),
        "{config}"
    );
    let install = || t.fx.flatpak_install_fails(&t.env(), "look-alike", APP);
    let err = install();
    assert!(
        err.contains(&format!(
            "refusing to send tokens of the entitlement service {url} to {other}"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("run `tollgate-helper trust add {other}`")),
        "{err}"
    );
    assert_eq!(t.installed_app(), "", "the app was installed");
    assert!(
        !look_alike.requests_since(0).is_empty(),
        "flatpak never asked the look-alike anything"
    );
    assert_eq!(with_authorization(&look_alike), [], "tokens reached it");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(t.issued(), issued, "a token was issued for the look-alike");

    // Trusted, it is a mirror: the install works, with the token sent to it.
    let said = t.helper().args(["trust", "add", &look_alike.url()]).run();
    assert!(said.contains(&format!("trusted {other}")), "{said}");
    t.fx.flatpak_install(&t.env(), "look-alike", APP);
    assert_eq!(t.installed_app(), format!("#!/bin/sh\necho {APP} 2\n"));
    assert!(
        with_authorization(&look_alike)
            .iter()
            .any(|a| a.auth == "bearer" && a.status == 200),
        "the trusted mirror got no token"
    );
}

#[test]
fn tollgate_helper_pull_sends_no_token_to_a_remote_neither_the_service_nor_trusted() {
    let t = Setup::start();
    let url = t.s.server.url();
    let url = url.trim_end_matches('/');
    t.login(url, &t.key).run();
    let (look_alike, copy) = look_alike(&t);
    let other = look_alike.url();
    let other = other.trim_end_matches('/');
    let refused = format!("refusing to send tokens of the entitlement service {url} to {other}");
    let how = format!("run `tollgate-helper trust add {other}`");

    // The remote is the look-alike, the tokens the real service's.
    let cli = t.fx.ostree_client(&look_alike.url());
    let pull = |cli: &Path| {
        t.helper()
            .args(["pull", "--repo"])
            .arg(cli)
            .args(["origin", &t.g.app_ref, "--url", url])
    };
    let err = pull(&cli).run_fail();
    assert!(err.contains(&refused) && err.contains(&how), "{err}");

    // The remote is the service, but libostree would fetch its content from the look-alike.
    let content = t.fx.join("content-client");
    t.fx.ostree(&content)
        .args(["init", "--mode=bare-user"])
        .run();
    t.fx.ostree(&content)
        .args(["remote", "add", "--no-gpg-verify"])
        .arg(format!("--set=contenturl={}", look_alike.url()))
        .args(["origin", &t.s.server.url()])
        .run();
    let err = pull(&content).run_fail();
    assert!(err.contains(&refused) && err.contains(&how), "{err}");

    // A P2P pull's origin is held to the same rule.
    let err = t
        .helper()
        .args(["p2p-options", "--origin", other, "--url", url, "--result"])
        .arg(format!("{other}/={}", t.g.app_ref))
        .run_fail();
    assert!(err.contains(&refused) && err.contains(&how), "{err}");

    assert_eq!(with_authorization(&look_alike), [], "tokens reached it");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(t.issued(), 0, "a token was issued for the look-alike");

    // Trusted, it is a mirror: the pull works, with the token sent to it.
    t.helper().args(["trust", "add", other]).run();
    let out = pull(&cli).run();
    assert!(
        out.contains(&format!("pulled {} with a token", t.g.app_ref)),
        "{out}"
    );
    t.fx.assert_pulled(&cli, "origin", &copy, &t.g.app_ref);
    assert!(
        with_authorization(&look_alike)
            .iter()
            .any(|a| a.auth == "bearer" && a.status == 200),
        "the trusted mirror got no token"
    );
}

#[test]
fn a_repository_served_under_a_path_gets_tokens_from_the_service_at_its_origin() {
    // The repository at /apps/, its service at /: one origin, so no trust is needed.
    let t = Setup::serving_as(Some("apps"));
    let url = t.s.server.url();
    let url = url.trim_end_matches('/');
    t.login(url, &t.key).run();
    t.fx.flatpak_remote_add("shop", &format!("{url}/apps/"));
    t.fx.flatpak_install(&t.env(), "shop", APP);
    assert_eq!(t.installed_app(), format!("#!/bin/sh\necho {APP} 2\n"));
    let cli = t.fx.ostree_client(&format!("{url}/apps/"));
    let out = t
        .helper()
        .args(["pull", "--repo"])
        .arg(&cli)
        .args([
            "origin",
            &t.g.app_ref,
            "--url",
            url,
            "--service-repo",
            "apps",
        ])
        .run();
    assert!(
        out.contains(&format!("pulled {} with a token", t.g.app_ref)),
        "{out}"
    );
    t.fx.assert_pulled(&cli, "origin", &t.g.repo, &t.g.app_ref);
    let trusted = t.helper().args(["trust", "list"]).run();
    assert!(trusted.contains("no trusted mirrors"), "{trusted}");
}

#[test]
fn a_remote_set_up_with_the_older_url_option_still_gets_its_tokens() {
    // Served under /apps/ with the service at /: only the option names the service's address
    // (the remote's own URL is not it).
    let t = Setup::serving_as(Some("apps"));
    let url = t.s.server.url();
    let url = url.trim_end_matches('/');
    // The repository as `tollgate authenticator` wrote it before `auth-server-url`: the
    // service's address under `url`.
    let config = t.g.repo.join("config");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("authenticator-options.auth-server-url="),
        "{text}"
    );
    let text = text.replace(
        "authenticator-options.auth-server-url=",
        "authenticator-options.url=",
    );
    std::fs::write(&config, text).unwrap();
    t.fx.flatpak_update_repo(&t.g.repo);
    t.login(url, &t.key).run();

    t.fx.flatpak_remote_add("shop", &format!("{url}/apps/"));
    let remote = std::fs::read_to_string(t.fx.join("home/.local/share/flatpak/repo/config"))
        .expect("the user repository's config");
    assert!(
        remote.contains(&format!("authenticator-options.url={url}/"))
            && !remote.contains("auth-server-url"),
        "{remote}"
    );
    t.fx.flatpak_install(&t.env(), "shop", APP);
    assert_eq!(t.installed_app(), format!("#!/bin/sh\necho {APP} 2\n"));
}
