//! Per-ref gating against the real clients: every file of a real Flatpak repository with a
//! public runtime and a gated app (`--token-type=2`), static deltas and appstream, asked for with
//! every kind of token; `ostree pull` with and without tokens; `flatpak install` through
//! flatpak's own test authenticator; and publishing while the server runs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_ostree_format::Checksum;

use crate::bus::{SessionBus, TEST_AUTHENTICATOR_NAME, test_authenticator};
use crate::cmd::Cmd;
use crate::fixture::{Fixture, write_files};
use crate::gated_repo::{APP, FLAT_MANAGER_SECRET, RUNTIME, gated_repo, serve, update_repo};
use crate::http::request;
use crate::model::{Expect, Presented, expectations, mismatches};
use crate::server::{Server, tollgate_bin};
use crate::tokens;

#[test]
fn every_file_answers_as_its_refs_say_for_every_token() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let server = serve(&fx, &g);
    let files = expectations(&fx, &g.repo);

    let count = |f: fn(&Expect) -> bool| files.iter().filter(|(_, e)| f(e)).count();
    assert!(count(|e| matches!(e, Expect::Gated(_))) > 10, "{files:?}");
    assert!(count(|e| *e == Expect::Public) > 10, "{files:?}");
    assert!(
        count(|e| matches!(e, Expect::Withheld(_))) >= 2,
        "the cross-ref delta: {files:?}"
    );
    assert!(
        files
            .iter()
            .any(|(f, e)| f.starts_with("deltas/") && matches!(e, Expect::Gated(_))),
        "the app has static deltas"
    );
    assert!(
        files
            .iter()
            .any(|(f, _)| f.starts_with("refs/heads/appstream2/")),
        "appstream2"
    );

    let app = g.app_ref.as_str();
    let other_dir = fx.join("other-data");
    Cmd::new(tollgate_bin())
        .args(["keys", "generate", "--data-dir"])
        .arg(&other_dir)
        .run();
    let good = tokens::issue(&g.data, &[app], None, 600);
    let fm = |claims: serde_json::Value| tokens::flat_manager(FLAT_MANAGER_SECRET, &claims);
    let exp = tokens::now() + 600;
    let cases: Vec<(&str, Option<String>, Presented<'_>)> = vec![
        ("no token", None, Presented::Invalid),
        ("garbage", Some("not-a-token".into()), Presented::Invalid),
        (
            "tampered",
            Some(tokens::tampered(&good)),
            Presented::Invalid,
        ),
        (
            "expired",
            Some(tokens::sign_native(
                &g.data,
                &tokens::native_claims(&[app], &[""], -120),
            )),
            Presented::Invalid,
        ),
        (
            "another key",
            Some(tokens::issue(&other_dir, &[app], None, 600)),
            Presented::Invalid,
        ),
        (
            "alg none",
            Some(tokens::unsigned(&tokens::native_claims(&[app], &[""], 600))),
            Presented::Invalid,
        ),
        (
            "another ref",
            Some(tokens::issue(
                &g.data,
                &["app/org.example.Other/x86_64/stable"],
                None,
                600,
            )),
            Presented::CoversNothing,
        ),
        (
            "another repo",
            Some(tokens::issue(&g.data, &[app], Some("elsewhere"), 600)),
            Presented::CoversNothing,
        ),
        (
            "flat-manager without prefixes",
            Some(fm(
                json!({"sub": "download", "exp": exp, "scope": ["download"], "repos": [""]}),
            )),
            Presented::Invalid,
        ),
        (
            "flat-manager for another app",
            Some(fm(
                json!({"sub": "download", "exp": exp, "scope": ["download"],
                           "prefixes": ["org.example.Other"], "repos": [""]}),
            )),
            Presented::CoversNothing,
        ),
        ("right token", Some(good.clone()), Presented::Covers(app)),
        (
            "flat-manager for the app",
            Some(fm(
                json!({"sub": "download", "exp": exp, "scope": ["download"],
                           "prefixes": [APP], "repos": [""]}),
            )),
            Presented::Covers(app),
        ),
    ];
    // Twice: the second time, every small object and delta part the right token opened is
    // served from memory, and must be refused to every other token just the same.
    for pass in ["from disk", "from memory"] {
        for (what, token, presented) in &cases {
            let header = token.as_ref().map(|t| format!("Bearer {t}"));
            let wrong = mismatches(&server, &g.repo, &files, header.as_deref(), *presented);
            assert!(wrong.is_empty(), "{what}, {pass}:\n{}", wrong.join("\n"));
        }
    }

    // A Flatpak-Ref header is a hint, never a grant.
    let hinted: Vec<&(String, Expect)> = files
        .iter()
        .filter(|(_, e)| matches!(e, Expect::Gated(_)))
        .collect();
    for (rel, _) in hinted.iter().take(5) {
        let r = request(
            server.addr,
            "GET",
            &format!("/{rel}"),
            &[("Flatpak-Ref", app)],
        );
        assert_eq!(r.status, 401, "{rel} with only a Flatpak-Ref");
    }

    // HEAD answers like GET, without the body.
    let auth = format!("Bearer {good}");
    for (rel, _) in hinted {
        let path = format!("/{rel}");
        assert_eq!(
            request(server.addr, "HEAD", &path, &[]).status,
            401,
            "HEAD {rel}"
        );
        let head = request(server.addr, "HEAD", &path, &[("Authorization", &auth)]);
        assert_eq!(head.status, 200, "HEAD {rel}");
        assert!(head.body.is_empty(), "HEAD {rel} sent a body");
        let size = std::fs::metadata(g.repo.join(rel))
            .unwrap()
            .len()
            .to_string();
        assert_eq!(
            head.header("content-length"),
            Some(size.as_str()),
            "HEAD {rel}"
        );
    }
}

#[test]
fn ostree_pull_needs_a_token_for_the_gated_ref() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let server = serve(&fx, &g);
    let cli = fx.ostree_client(&server.url());

    // The public runtime needs nothing.
    fx.ostree(&cli)
        .args(["pull", "origin", &g.runtime_ref])
        .run();

    let err = fx
        .ostree(&cli)
        .args(["pull", "origin", &g.app_ref])
        .run_fail();
    assert!(err.contains("401"), "without a token: {err}");
    let other = tokens::issue(&g.data, &["app/org.example.Other/x86_64/stable"], None, 600);
    let err = fx.pull(&cli, &g.app_ref, Some(&other)).run_fail();
    assert!(err.contains("403"), "with a token for another ref: {err}");

    let token = tokens::issue(&g.data, &[&g.app_ref], None, 600);
    let mark = server.log().len();
    fx.pull(&cli, &g.app_ref, Some(&token)).run();
    fx.assert_pulled(&cli, "origin", &g.repo, &g.app_ref);
    // The pull went through the gated delta, and the audit log recorded it.
    let requests = server.requests_since(mark);
    assert!(
        requests
            .iter()
            .any(|a| a.path.ends_with("/superblock") && a.status == 200),
        "{requests:?}"
    );
    let log = server.log();
    assert!(
        log.lines().any(|l| l.contains("tollgate::audit")
            && l.contains(&g.app_ref)
            && l.contains("token=")),
        "gated downloads are audited:\n{log}"
    );
}

#[test]
fn flatpak_installs_the_gated_app_through_its_authenticator() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let server = serve(&fx, &g);
    let bus = SessionBus::start(&fx, &[(TEST_AUTHENTICATOR_NAME, test_authenticator())]);
    let env: Vec<(String, PathBuf)> = fx.env().iter().cloned().chain([bus.env()]).collect();
    let flatpak = || fx.flatpak().envs(&env);
    let required = fx.join("run/required-token");

    fx.flatpak_remote_add("test", &server.url());

    // Appstream is public: flatpak pulls it without a token, before anything is installed.
    let arch = fx.flatpak_arch();
    let appstream = fx.rev_parse(&g.repo, &format!("appstream2/{arch}"));
    let appstream_b64 = Checksum::from_hex(&appstream).unwrap().to_modified_base64();
    let mark = server.log().len();
    flatpak()
        .args(["--user", "update", "--appstream", "-y", "--noninteractive"])
        .run();
    let requests = server.requests_since(mark);
    assert!(
        requests.iter().any(|a| a.status == 200
            && (a.path.contains(&appstream[2..]) || a.path.contains(&appstream_b64[2..]))),
        "the appstream2 commit {appstream} was served: {requests:?}"
    );
    assert!(
        requests.iter().all(|a| a.status != 401 && a.status != 403),
        "{requests:?}"
    );

    // A token that is not valid: flatpak reports the server's 401.
    let good = tokens::issue(&g.data, &[&g.app_ref], None, 600);
    std::fs::write(&required, tokens::tampered(&good)).unwrap();
    let err = fx.flatpak_install_fails(&env, "test", APP);
    assert!(err.contains("401"), "{err}");

    // The right token: the app and its public runtime install.
    std::fs::write(&required, &good).unwrap();
    fx.flatpak_install(&env, "test", APP);
    assert_eq!(fx.installed_app(APP), format!("#!/bin/sh\necho {APP} 2\n"));
    let asked = std::fs::read_to_string(fx.join("run/request")).unwrap();
    assert!(
        asked.contains("remote: test"),
        "the authenticator was asked: {asked}"
    );
}

#[test]
fn publishing_while_serving() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let server = serve(&fx, &g);
    let token = tokens::issue(&g.data, &[&g.app_ref], None, 600);
    let auth = format!("Bearer {token}");
    let with_and_without = [
        (None, Presented::Invalid),
        (Some(auth.as_str()), Presented::Covers(&g.app_ref)),
    ];
    // Every file, with and without the app's token, against what the real ostree says now.
    let wrong_now = || {
        let files = expectations(&fx, &g.repo);
        let mut wrong = Vec::new();
        for (header, presented) in with_and_without {
            wrong.extend(mismatches(&server, &g.repo, &files, header, presented));
        }
        wrong
    };
    // A commit published a moment ago is gated from the very first request.
    let first_request = |r: &str| {
        let commit = fx.rev_parse(&g.repo, r);
        let path = format!("/objects/{}/{}.commit", &commit[..2], &commit[2..]);
        assert_eq!(
            request(server.addr, "GET", &path, &[]).status,
            401,
            "{r} {commit}"
        );
    };

    // A new version of the gated app, checked before the summary is even updated.
    fx.flatpak_app(&g.repo, APP, RUNTIME, 3, Some(2));
    first_request(&g.app_ref);
    let wrong = wrong_now();
    assert!(
        wrong.is_empty(),
        "a new version of the gated app:\n{}",
        wrong.join("\n")
    );
    update_repo(&fx, &g.repo);
    let wrong = wrong_now();
    assert!(
        wrong.is_empty(),
        "after build-update-repo:\n{}",
        wrong.join("\n")
    );

    // A new gated app: gated at once, and the first app's token does not open it.
    let new_ref = fx.flatpak_app(&g.repo, "org.example.Paid2", RUNTIME, 1, Some(2));
    first_request(&new_ref);
    let wrong = wrong_now();
    assert!(wrong.is_empty(), "a new gated app:\n{}", wrong.join("\n"));

    // The public runtime becomes gated (a new commit with xa.token-type), then public again;
    // its old commits follow the ref. The server catches up within moments.
    for token_type in ["2", "0"] {
        fx.flatpak()
            .args([
                "build-commit-from",
                "--force",
                &format!("--token-type={token_type}"),
            ])
            .arg(format!("--src-ref={}", g.runtime_ref))
            .arg(&g.repo)
            .arg(&g.runtime_ref)
            .run();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let wrong = wrong_now();
            if wrong.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the runtime with token type {token_type}:\n{}",
                wrong.join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn refs_gated_by_name_and_keys_trusted_by_configuration() {
    let fx = Fixture::new();
    let tree = crate::fixture::sample_tree(&fx.join("tree"));
    let (repo, commit) = fx.archive_repo("repo", "os/x86_64/private", &tree);
    write_files(&tree, &[("public-only", b"x".to_vec())]);
    fx.commit(&repo, "os/x86_64/public", &tree, "public");

    // Another server's key, trusted by PEM; and a JWKS holding a third.
    let issuer = fx.join("issuer");
    Cmd::new(tollgate_bin())
        .args(["keys", "generate", "--data-dir"])
        .arg(&issuer)
        .run();
    let listed = Cmd::new(tollgate_bin())
        .args(["keys", "list", "--data-dir"])
        .arg(&issuer)
        .run();
    let pem = &listed[listed.find("-----BEGIN").unwrap()..];
    std::fs::write(fx.join("issuer.pem"), pem).unwrap();
    let jwks_issuer = fx.join("jwks-issuer");
    Cmd::new(tollgate_bin())
        .args(["keys", "generate", "--data-dir"])
        .arg(&jwks_issuer)
        .run();
    let jwks_listed = Cmd::new(tollgate_bin())
        .args(["keys", "list", "--data-dir"])
        .arg(&jwks_issuer)
        .run();
    let kid = jwks_listed.split_whitespace().next().unwrap();
    let key: serde_json::Value = serde_json::from_slice(
        &std::fs::read(jwks_issuer.join(format!("keys/{kid}.json"))).unwrap(),
    )
    .unwrap();
    let jwks =
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": key["public-key"]}]});
    std::fs::write(fx.join("keys.json"), jwks.to_string()).unwrap();

    std::fs::write(
        fx.join("tollgate.toml"),
        "gated-refs = [\"os/*/private\"]\n[tokens]\ntrusted-keys = [\"issuer.pem\"]\n\
         jwks-file = \"keys.json\"\n",
    )
    .unwrap();
    let mut server = Server::serve(
        &[
            "--repo",
            repo.to_str().unwrap(),
            "--data-dir",
            fx.join("data").to_str().unwrap(),
            "--config",
            fx.join("tollgate.toml").to_str().unwrap(),
        ],
        fx.env(),
    );
    server.wait_for_log(
        "is gated by a gated-refs pattern, but its commit has no xa.token-type",
        Duration::from_secs(5),
    );

    let commit_path = format!("/objects/{}/{}.commit", &commit[..2], &commit[2..]);
    assert_eq!(request(server.addr, "GET", &commit_path, &[]).status, 401);
    assert_eq!(
        request(server.addr, "GET", "/refs/heads/os/x86_64/private", &[]).status,
        401
    );
    assert_eq!(
        request(server.addr, "GET", "/refs/heads/os/x86_64/public", &[]).status,
        200
    );
    for data in [&issuer, &jwks_issuer] {
        let token = tokens::issue(data, &["os/x86_64/private"], None, 600);
        let auth = format!("Bearer {token}");
        let r = request(
            server.addr,
            "GET",
            &commit_path,
            &[("Authorization", &auth)],
        );
        assert_eq!(
            r.status,
            200,
            "a token signed by a trusted key ({})",
            data.display()
        );
    }

    let cli = fx.ostree_client(&server.url());
    let token = tokens::issue(&issuer, &["os/x86_64/private"], None, 600);
    fx.pull(&cli, "os/x86_64/private", Some(&token)).run();
    assert_eq!(fx.rev_parse(&cli, "origin:os/x86_64/private"), commit);
}

#[test]
fn operator_commands() {
    let fx = Fixture::new();
    let data = fx.join("data");
    let kid = Cmd::new(tollgate_bin())
        .args(["keys", "generate", "--data-dir"])
        .arg(&data)
        .run();
    let kid = kid.trim();
    let file = data.join(format!("keys/{kid}.json"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = Cmd::new(tollgate_bin())
        .args(["keys", "generate", "--data-dir"])
        .arg(&data)
        .run();
    assert_eq!(again.trim(), kid, "generate keeps an existing key");
    let listed = Cmd::new(tollgate_bin())
        .args(["keys", "list", "--data-dir"])
        .arg(&data)
        .run();
    assert!(
        listed.starts_with(kid)
            && listed.contains("signing")
            && listed.contains("BEGIN PUBLIC KEY")
    );

    let token = tokens::issue(&data, &["app/a/x86_64/stable"], None, 60);
    assert_eq!(token.split('.').count(), 3, "{token}");
    let issue = |args: &[&str]| {
        Cmd::new(tollgate_bin())
            .args(["token", "issue", "--data-dir"])
            .arg(&data)
            .args(args)
            .run_fail()
    };
    assert!(issue(&["--ref", "app/../x"]).contains("is not a valid ref name"));
    assert!(issue(&["--ref", "app/a", "--ttl", "0"]).contains("out of range"));
    assert!(issue(&["--ref", "app/a", "--ttl", "99999999999"]).contains("out of range"));
    assert!(issue(&["--ref", "app/a", "--repo", "a/b"]).contains("is not a repository name"));
    let empty = Cmd::new(tollgate_bin())
        .args(["token", "issue", "--ref", "app/a", "--data-dir"])
        .arg(fx.join("empty"))
        .run_fail();
    assert!(
        empty.contains("has no signing key; make one with `tollgate keys generate`"),
        "{empty}"
    );
}
