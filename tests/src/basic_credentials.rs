//! HTTP Basic credentials on repository files, which is what a stock ostree remote keeps in
//! its URL: a license key as the password (any user name), or an account's name and password,
//! judged as `POST /api/v1/tokens` judges them.

use std::net::{IpAddr, Ipv4Addr};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::customer::{helper as customer_helper, provider_dir};
use crate::fixture::Fixture;
use crate::gated_repo::{GatedRepo, gated_repo};
use crate::http::{self, Response};
use crate::service::{
    PASSWORD, Service, account_for_paid, basic, error_type, license_for_paid, set_license_active,
};

fn commit_path(fx: &Fixture, repo: &std::path::Path, r: &str) -> (String, String) {
    let commit = fx.rev_parse(repo, r);
    let path = format!("objects/{}/{}.commit", &commit[..2], &commit[2..]);
    (commit, path)
}

fn get(s: &Service, path: &str, authorization: &str) -> Response {
    http::request(
        s.server.addr,
        "GET",
        &format!("/{path}"),
        &[("Authorization", authorization)],
    )
}

fn answer_type(r: &Response) -> String {
    let answer: serde_json::Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&r.body)));
    error_type(&answer).to_owned()
}

/// The key with its secret's last character changed.
fn wrong_secret(key: &str) -> String {
    let mut wrong = key.to_owned();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    wrong
}

fn started(fx: &Fixture, settings: &str) -> (GatedRepo, Service, String) {
    let g = gated_repo(fx);
    let s = Service::start(fx, &g, None, settings);
    let key = license_for_paid(&s);
    account_for_paid(&s);
    (g, s, key)
}

#[test]
fn basic_credentials_open_gated_files_as_a_token_does() {
    let fx = Fixture::new();
    let (g, s, key) = started(&fx, "");
    let (commit, path) = commit_path(&fx, &g.repo, &g.app_ref);
    let bytes = std::fs::read(g.repo.join(&path)).unwrap();
    for authorization in [
        basic("anyone", &key),
        basic("", &key),
        basic("bob", PASSWORD),
    ] {
        let r = get(&s, &path, &authorization);
        assert_eq!(r.status, 200, "{authorization}: {}", answer_type(&r));
        assert_eq!(r.body, bytes);
        assert_eq!(r.header("cache-control"), Some("private, no-store"));
    }

    // A right credential whose products do not cover the file: 403.
    s.admin_ok(
        201,
        "POST",
        "products",
        Some(json!({"slug": "other", "name": "Other", "refs": ["app/org.example.Other/*"]})),
    );
    let other = s.admin_ok(
        201,
        "POST",
        "licenses",
        Some(json!({"products": ["other"]})),
    );
    let r = get(&s, &path, &basic("x", other["key"].as_str().unwrap()));
    assert_eq!((r.status, answer_type(&r).as_str()), (403, "not-entitled"));

    // Wrong credentials: 401, with a challenge for each scheme the gate takes.
    for authorization in [
        basic("x", &wrong_secret(&key)),
        basic("bob", "not the password"),
        basic("nobody", PASSWORD),
    ] {
        let r = get(&s, &path, &authorization);
        assert_eq!(
            (r.status, answer_type(&r).as_str()),
            (401, "invalid-credentials"),
            "{authorization}"
        );
        let challenges: Vec<&str> = r
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert!(
            challenges.iter().any(|c| c.starts_with("Bearer "))
                && challenges.iter().any(|c| c.starts_with("Basic ")),
            "{challenges:?}"
        );
    }

    // Public files stay open whatever Basic credentials come with them.
    let (_, public) = commit_path(&fx, &g.repo, &g.runtime_ref);
    let r = get(&s, &public, &basic("x", "wrong"));
    assert_eq!(r.status, 200);

    // The audit names the license and the account, as for token downloads.
    let records = s.wait_for_audit("downloads", "limit=100", 3);
    let subjects: Vec<&str> = records
        .iter()
        .map(|r| {
            assert_eq!(r["ref"], g.app_ref.as_str(), "{r}");
            assert_eq!(r["commit"], commit.as_str(), "{r}");
            r["subject"].as_str().unwrap()
        })
        .collect();
    let license_id = &key["tg_".len()..].split_once('_').unwrap().0;
    assert_eq!(
        subjects
            .iter()
            .filter(|s| **s == format!("license:{license_id}"))
            .count(),
        2,
        "{subjects:?}"
    );
    assert!(subjects.contains(&"account:bob"), "{subjects:?}");
}

#[test]
fn malformed_and_ambiguous_basic_headers_are_refused_not_guessed_at() {
    let fx = Fixture::new();
    let (g, s, key) = started(&fx, "max-failures = 1000");
    let (_, path) = commit_path(&fx, &g.repo, &g.app_ref);
    let huge = format!("Basic {}", STANDARD.encode("x".repeat(6000)));
    let no_colon = format!("Basic {}", STANDARD.encode(&key));
    let not_utf8 = format!("Basic {}", STANDARD.encode(b"bob:\xff\xfe"));
    for authorization in [
        "Basic",
        "Basic ",
        "Basic !!!not base64!!!",
        no_colon.as_str(),
        not_utf8.as_str(),
        huge.as_str(),
    ] {
        let r = get(&s, &path, authorization);
        assert_eq!(r.status, 401, "{authorization:.40}: {}", answer_type(&r));
    }
    // Bytes that are not UTF-8 in the header itself.
    let mut raw = format!("GET /{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n").into_bytes();
    raw.extend_from_slice(b"Authorization: Basic \xff\xfe\xfd\r\n\r\n");
    let r = http::send_raw(s.server.addr, &raw).unwrap();
    assert_eq!(r.status, 401);

    // Two credentials: refused as ambiguous, even when one of them is right.
    let right = basic("x", &key);
    let r = http::request(
        s.server.addr,
        "GET",
        &format!("/{path}"),
        &[("Authorization", &right), ("Authorization", "Basic eDp5")],
    );
    assert_eq!((r.status, answer_type(&r).as_str()), (400, "bad-request"));
    assert!(
        String::from_utf8_lossy(&r.body).contains("Authorization headers"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(get(&s, &path, &right).status, 200);
    // So are they where credentials get tokens, or say what they open.
    let body = json!({"refs": [g.app_ref]}).to_string();
    let two = [
        ("Authorization", right.as_str()),
        ("Authorization", "Basic eDp5"),
        ("Content-Type", "application/json"),
    ];
    for (method, endpoint, body) in [
        ("POST", "/api/v1/tokens", body.as_bytes()),
        ("GET", "/api/v1/entitlements", &b""[..]),
    ] {
        let r = http::request_with_body(s.server.addr, method, endpoint, &two, body);
        assert_eq!(
            (r.status, answer_type(&r).as_str()),
            (400, "bad-request"),
            "{endpoint}"
        );
    }
}

#[test]
fn a_license_deactivated_is_refused_to_basic_credentials_at_once() {
    let fx = Fixture::new();
    let (g, s, key) = started(&fx, "");
    let (_, path) = commit_path(&fx, &g.repo, &g.app_ref);
    let authorization = basic("me", &key);
    assert_eq!(get(&s, &path, &authorization).status, 200);
    let id = s.admin_ok(200, "GET", "licenses", None)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    set_license_active(&s, &id, false);
    let r = get(&s, &path, &authorization);
    assert_eq!(
        (r.status, answer_type(&r).as_str()),
        (401, "license-inactive")
    );
    set_license_active(&s, &id, true);
    assert_eq!(get(&s, &path, &authorization).status, 200);
    // The account, likewise.
    let bob = basic("bob", PASSWORD);
    assert_eq!(get(&s, &path, &bob).status, 200);
    s.admin_ok(200, "PATCH", "accounts/bob", Some(json!({"active": false})));
    let r = get(&s, &path, &bob);
    assert_eq!(
        (r.status, answer_type(&r).as_str()),
        (401, "account-inactive")
    );
    // A product deactivated opens nothing to the license that holds it.
    assert_eq!(get(&s, &path, &authorization).status, 200);
    s.admin_ok(
        200,
        "PATCH",
        "products/paid",
        Some(json!({"active": false})),
    );
    let r = get(&s, &path, &authorization);
    assert_eq!((r.status, answer_type(&r).as_str()), (403, "not-entitled"));
}

#[test]
fn basic_failures_count_towards_the_limit_as_token_endpoint_failures_do() {
    let fx = Fixture::new();
    let (g, s, key) = started(&fx, "max-failures = 2\nfailure-window = 60");
    let (_, path) = commit_path(&fx, &g.repo, &g.app_ref);
    let from = |n: u8, authorization: &str| {
        http::request_with_body_from(
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))),
            s.server.addr,
            "GET",
            &format!("/{path}"),
            &[("Authorization", authorization)],
            b"",
        )
    };
    for _ in 0..2 {
        assert_eq!(from(1, &basic("x", &wrong_secret(&key))).status, 401);
    }
    // Blocked: even the right key is not checked from that address now, at the token
    // endpoint as here.
    let r = from(1, &basic("x", &key));
    assert_eq!(
        (r.status, answer_type(&r).as_str()),
        (429, "too-many-failures")
    );
    let (status, _) = s.tokens(
        Some(&crate::service::bearer(&key)),
        &json!({"refs": [g.app_ref]}),
    );
    assert_eq!(status, 429);
    // Another address is not held up.
    assert_eq!(from(2, &basic("x", &key)).status, 200);
}

/// The real `ostree pull`, from a remote whose URL carries a license key.
#[test]
fn ostree_pulls_a_gated_ref_with_a_license_key_in_the_remote_url() {
    let fx = Fixture::new();
    let (g, s, key) = started(&fx, "");
    let port = s.server.addr.port();
    let client = fx.ostree_client(&format!("http://customer:{key}@127.0.0.1:{port}/"));
    fx.pull(&client, &g.app_ref, None).run();
    fx.assert_pulled(&client, "origin", &g.repo, &g.app_ref);

    // A wrong key fails the pull with the status, and the output does not show the key.
    let wrong = wrong_secret(&key);
    let other = fx.ostree_client_named(
        "other",
        &format!("http://customer:{wrong}@127.0.0.1:{port}/"),
    );
    let out = fx.pull(&other, &g.app_ref, None).run_fail();
    assert!(out.contains("401"), "{out}");
    assert!(!out.contains(&wrong), "ostree printed the key: {out}");
}

/// A tree `ostree admin deploy` takes: a kernel and an initramfs (any bytes do) and `usr/etc`.
fn os_tree(fx: &Fixture, name: &str, version: &str) -> std::path::PathBuf {
    let tree = fx.join(name);
    crate::fixture::write_files(
        &tree,
        &[
            ("usr/lib/modules/6.1.0/vmlinuz", b"a kernel".to_vec()),
            (
                "usr/lib/modules/6.1.0/initramfs.img",
                b"an initramfs".to_vec(),
            ),
            (
                "usr/etc/os-release",
                format!(
                    "NAME=TestOS\nID=testos\nPRETTY_NAME=\"TestOS {version}\"\nVERSION={version}\n"
                )
                .into_bytes(),
            ),
            ("usr/bin/hello", format!("version {version}\n").into_bytes()),
        ],
    );
    tree
}

/// The commit the OS `testos` in `sysroot` has deployed first, as `ostree admin status` says.
fn deployed(fx: &Fixture, sysroot: &std::path::Path) -> String {
    let status = fx
        .cmd("ostree")
        .args([
            "admin",
            &format!("--sysroot={}", sysroot.display()),
            "status",
        ])
        .run();
    let line = status
        .lines()
        .find(|l| l.contains("testos "))
        .unwrap_or_else(|| panic!("no testos deployment in:\n{status}"));
    let checksum = line.split_whitespace().find(|w| w.len() > 64).unwrap();
    checksum.split('.').next().unwrap().to_owned()
}

/// Takes the immutable flag off the deployments under a sysroot when dropped (ostree sets it
/// on each deployment's root), so that the fixture's folder can be removed, pass or fail.
struct Deployments(std::path::PathBuf);

impl Drop for Deployments {
    fn drop(&mut self) {
        let Ok(oses) = std::fs::read_dir(self.0.join("ostree/deploy")) else {
            return;
        };
        for os in oses.flatten() {
            for deployment in std::fs::read_dir(os.path().join("deploy"))
                .into_iter()
                .flatten()
            {
                let path = deployment.map(|d| d.path());
                if let Ok(path) = path.as_ref()
                    && path.is_dir()
                {
                    let _ = std::process::Command::new("chattr")
                        .arg("-i")
                        .arg(path)
                        .status();
                }
            }
        }
    }
}

/// A password ostree passes on as written in a URL (it does not percent-decode user
/// information, so a space cannot be sent).
const URL_PASSWORD: &str = "correct-horse-battery-staple";

/// A real OSTree system in a folder, updated by the stock `ostree admin upgrade` from the remote
/// `tollgate-helper os-remote add` writes with the stored license key in its URL, then with an
/// account's name and password.
#[test]
fn ostree_admin_upgrades_a_gated_os_with_credentials_in_the_remote_url() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let os_ref = "os/x86_64/stable";
    let first = fx.commit(&g.repo, os_ref, &os_tree(&fx, "tree1", "1"), "one");
    let s = Service::start_on(
        &fx,
        &g.repo,
        &g.data,
        "gated-refs = [\"os/*\"]\n[tokens]\nflat-manager-secret-file = \"flat-manager-secret\"\n",
        None,
        "",
    );
    s.admin_ok(
        201,
        "POST",
        "products",
        Some(json!({"slug": "os", "name": "TestOS", "refs": ["os/*"]})),
    );
    let license = s.admin_ok(201, "POST", "licenses", Some(json!({"products": ["os"]})));
    let key = license["key"].as_str().unwrap();
    for (name, password) in [("bob", URL_PASSWORD), ("carol", "two words")] {
        s.admin_ok(
            201,
            "POST",
            "accounts",
            Some(json!({"name": name, "password": password, "products": ["os"]})),
        );
    }
    // Without credentials the OS's commit stays closed.
    let (_, path) = commit_path(&fx, &g.repo, os_ref);
    assert_eq!(http::get(s.server.addr, &format!("/{path}")).status, 401);

    let sysroot = fx.join("sysroot");
    std::fs::create_dir(&sysroot).unwrap();
    let _deployments = Deployments(sysroot.clone());
    let sysroot_arg = format!("--sysroot={}", sysroot.display());
    let admin = |args: &[&str]| {
        fx.cmd("ostree")
            .arg("admin")
            .arg(&sysroot_arg)
            .args(args.iter().copied())
    };
    fx.cmd("ostree")
        .args(["admin", "init-fs"])
        .arg(&sysroot)
        .run();
    admin(&["os-init", "testos"]).run();
    // The first commit comes as an installer brings it, from a copy of the repository, under
    // the remote `vendor` that no configuration names yet.
    let system_repo = sysroot.join("ostree/repo");
    fx.ostree(&system_repo)
        .args(["pull-local", "--remote=vendor"])
        .arg(&g.repo)
        .arg(os_ref)
        .run();
    admin(&["deploy", "--os=testos", &format!("vendor:{os_ref}")]).run();
    assert_eq!(deployed(&fx, &sysroot), first);

    // The customer keeps the key with the helper, which writes the remote with it.
    let url = s.server.url();
    let providers = provider_dir(&fx, &["file"]);
    let helper = || customer_helper(&fx, &providers);
    helper()
        .args(["login", &url, "--key-stdin"])
        .stdin(format!("{key}\n"))
        .run();
    let os_remote = |args: &[&str]| {
        helper()
            .args([
                "os-remote",
                "add",
                "vendor",
                &url,
                &sysroot_arg,
                "--no-gpg-verify",
            ])
            .args(args.iter().copied())
    };
    let said = os_remote(&[]).run();
    let file = sysroot.join("etc/ostree/remotes.d/vendor.conf");
    assert!(
        said.contains(&format!("wrote {}, mode 0600", file.display())),
        "{said}"
    );
    assert!(!said.contains(key), "the helper printed the key: {said}");
    let written = std::fs::read_to_string(&file).unwrap();
    let port = s.server.addr.port();
    assert!(
        written.contains(&format!(
            "[remote \"vendor\"]\nurl=http://license:{key}@127.0.0.1:{port}/\ngpg-verify=false\n"
        )),
        "{written}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", file.display());
    // Nothing else is left where ostree reads every file.
    let left: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["vendor.conf"], "{left:?}");
    // A second add does not replace it without --force.
    let said = os_remote(&[]).run_fail();
    assert!(said.contains("exists: add --force"), "{said}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);

    // A new commit published while tollgate serves: the upgrade pulls and deploys it.
    let second = fx.commit(&g.repo, os_ref, &os_tree(&fx, "tree2", "2"), "two");
    admin(&["upgrade", "--os=testos"]).run();
    assert_eq!(deployed(&fx, &sysroot), second);

    // The license deactivated: the next upgrade fails, saying so as ostree can, and the
    // deployment stays as it was.
    let id = license["id"].as_str().unwrap();
    set_license_active(&s, id, false);
    let third = fx.commit(&g.repo, os_ref, &os_tree(&fx, "tree3", "3"), "three");
    let out = admin(&["upgrade", "--os=testos"]).run_fail();
    assert!(out.contains("HTTP 401"), "{out}");
    assert!(!out.contains(key), "ostree printed the key: {out}");
    assert_eq!(deployed(&fx, &sysroot), second);
    // Nor does the helper write a remote for a credential the service refuses.
    let said = os_remote(&["--force"]).run_fail();
    assert!(said.contains("nothing written"), "{said}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);

    // An account's name and password work the same way; --print gives the command instead,
    // and that command, run, makes a remote ostree upgrades from.
    helper()
        .args(["login", &url, "--user", "bob", "--password-stdin"])
        .stdin(format!("{URL_PASSWORD}\n"))
        .run();
    let line = os_remote(&["--force", "--print"]).run();
    assert_eq!(
        line.trim(),
        format!(
            "ostree remote add --sysroot='{}' --force --no-gpg-verify vendor \
             'http://bob:{URL_PASSWORD}@127.0.0.1:{port}/'",
            sysroot.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        written,
        "--print wrote"
    );
    fx.cmd("sh").args(["-c", line.trim()]).run();
    admin(&["upgrade", "--os=testos"]).run();
    assert_eq!(deployed(&fx, &sysroot), third);
    s.admin_ok(200, "PATCH", "accounts/bob", Some(json!({"active": false})));
    let fourth = fx.commit(&g.repo, os_ref, &os_tree(&fx, "tree4", "4"), "four");
    let out = admin(&["upgrade", "--os=testos"]).run_fail();
    assert!(out.contains("HTTP 401"), "{out}");
    assert_eq!(deployed(&fx, &sysroot), third);
    assert_ne!(third, fourth);

    // A password ostree cannot send as it is is refused, not mangled, and nothing is written.
    helper()
        .args(["login", &url, "--user", "carol", "--password-stdin"])
        .stdin("two words\n")
        .run();
    let said = os_remote(&["--force"]).run_fail();
    assert!(said.contains("cannot carry"), "{said}");
    assert!(!said.contains("two words"), "{said}");
    let kept = std::fs::read_to_string(&file).unwrap();
    assert!(kept.contains(&format!("bob:{URL_PASSWORD}@")), "{kept}");
    // `remove` takes the remote, and the credential in it, away.
    let said = helper()
        .args(["os-remote", "remove", "vendor", &sysroot_arg])
        .run();
    assert!(said.contains("removed"), "{said}");
    assert!(!file.exists());
}
