//! Per-ref gating against the real clients: every file of a real Flatpak repository with a
//! public runtime and a gated app (`--token-type=2`), static deltas and appstream, asked for with
//! every kind of token; `ostree pull` with and without tokens; `flatpak install` through
//! flatpak's own test authenticator; and publishing while the server runs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_ostree_format::{
    Checksum, ObjectType, Repo, RepoPath, commit_closure_into, commit_history,
};

use crate::bus::{SessionBus, TEST_AUTHENTICATOR_NAME, test_authenticator};
use crate::cmd::Cmd;
use crate::fixture::{Fixture, files_under, set_mode, write_files};
use crate::http::{Response, request};
use crate::server::{Server, tollgate_bin};
use crate::tokens;

const FLAT_MANAGER_SECRET: &[u8] = b"a flat-manager download secret for tests";
const RUNTIME: &str = "org.example.Platform";
const APP: &str = "org.example.Paid";

/// A Flatpak repository with a public runtime and a gated app in two versions, deltas,
/// appstream, and the test authenticator configured; plus the server's data directory with its
/// key, and a configuration accepting flat-manager tokens.
struct GatedRepo {
    repo: PathBuf,
    data: PathBuf,
    config: PathBuf,
    runtime_ref: String,
    app_ref: String,
}

fn gated_repo(fx: &Fixture) -> GatedRepo {
    let repo = fx.join("repo");
    let runtime_ref = fx.flatpak_runtime(&repo, RUNTIME, 1, None);
    fx.flatpak_app(&repo, APP, RUNTIME, 1, Some(2));
    let app_ref = fx.flatpak_app(&repo, APP, RUNTIME, 2, Some(2));
    update_repo(fx, &repo);
    let data = fx.join("data");
    Cmd::new(tollgate_bin())
        .args(["keys", "generate", "--data-dir"])
        .arg(&data)
        .run();
    let secret_file = fx.join("flat-manager-secret");
    use base64::Engine as _;
    std::fs::write(
        &secret_file,
        base64::engine::general_purpose::STANDARD.encode(FLAT_MANAGER_SECRET),
    )
    .unwrap();
    set_mode(&secret_file, 0o600);
    let config = fx.join("tollgate.toml");
    std::fs::write(
        &config,
        "[tokens]\nflat-manager-secret-file = \"flat-manager-secret\"\n",
    )
    .unwrap();
    GatedRepo {
        repo,
        data,
        config,
        runtime_ref,
        app_ref,
    }
}

/// `flatpak build-update-repo` with static deltas, naming the test authenticator.
fn update_repo(fx: &Fixture, repo: &Path) {
    fx.flatpak()
        .args([
            "build-update-repo",
            "--generate-static-deltas",
            &format!("--authenticator-name={TEST_AUTHENTICATOR_NAME}"),
            "--no-authenticator-install",
        ])
        .arg(repo)
        .run();
}

fn serve(fx: &Fixture, g: &GatedRepo) -> Server {
    Server::serve(
        &[
            "--repo",
            g.repo.to_str().unwrap(),
            "--data-dir",
            g.data.to_str().unwrap(),
            "--config",
            g.config.to_str().unwrap(),
        ],
        fx.env(),
    )
}

fn rev(fx: &Fixture, repo: &Path, r: &str) -> String {
    fx.ostree(repo)
        .args(["rev-parse", r])
        .run()
        .trim()
        .to_owned()
}

/// Checksums of every object in the histories of `refs`, computed from the repository itself.
fn reached_by(repo: &Path, refs: &[String]) -> HashSet<Checksum> {
    let opened = Repo::open(repo).unwrap();
    let mut objects = HashSet::new();
    for r in refs {
        let tip = std::fs::read_to_string(repo.join("refs/heads").join(r)).unwrap();
        for commit in commit_history(&opened, Checksum::from_hex(tip.trim()).unwrap()).unwrap() {
            commit_closure_into(&opened, commit, &mut objects).unwrap();
        }
    }
    objects.into_iter().map(|o| o.checksum).collect()
}

/// What the server must answer for a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Public,
    Gated,
    /// A delta to a public commit from a gated one: only for a token covering the source.
    Withheld,
    /// On disk, but no ref reaches it.
    Unreachable,
}

#[test]
fn every_file_answers_as_its_refs_say_for_every_token() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let server = serve(&fx, &g);

    let public_refs: Vec<String> = files_under(&g.repo.join("refs/heads"))
        .into_iter()
        .filter(|r| *r != g.app_ref)
        .collect();
    let public = reached_by(&g.repo, &public_refs);
    let gated: HashSet<Checksum> = reached_by(&g.repo, std::slice::from_ref(&g.app_ref))
        .difference(&public)
        .copied()
        .collect();
    assert!(
        gated.len() > 10,
        "the app has objects of its own: {}",
        gated.len()
    );
    let judge = |c: &Checksum| {
        if public.contains(c) {
            Expect::Public
        } else if gated.contains(c) {
            Expect::Gated
        } else {
            Expect::Unreachable
        }
    };

    let mut files: Vec<(String, Expect)> = Vec::new();
    for rel in files_under(&g.repo) {
        let expect = match RepoPath::parse(&rel) {
            None => continue,
            Some(RepoPath::Object(o)) if o.kind == ObjectType::TombstoneCommit => Expect::Public,
            Some(RepoPath::Object(o)) => judge(&o.checksum),
            Some(RepoPath::Delta { delta, .. }) => {
                match (judge(&delta.to), delta.from.map(|f| judge(&f))) {
                    (Expect::Public, Some(Expect::Gated)) => Expect::Withheld,
                    (to, _) => to,
                }
            }
            Some(RepoPath::DeltaIndex(to)) => judge(&to),
            Some(RepoPath::Head(name)) if name.as_str() == g.app_ref => Expect::Gated,
            Some(_) => Expect::Public,
        };
        files.push((rel, expect));
    }
    let count = |e: Expect| files.iter().filter(|(_, x)| *x == e).count();
    assert!(
        count(Expect::Gated) > 10 && count(Expect::Public) > 10,
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|(f, e)| f.starts_with("deltas/") && *e == Expect::Gated),
        "the app has static deltas"
    );
    assert!(
        files
            .iter()
            .any(|(f, _)| f.starts_with("refs/heads/appstream2/")),
        "appstream2"
    );

    let app = g.app_ref.as_str();
    let other = tokens::issue(&g.data, &["app/org.example.Other/x86_64/stable"], None, 600);
    let other_dir = fx.join("other-data");
    Cmd::new(tollgate_bin())
        .args(["keys", "generate", "--data-dir"])
        .arg(&other_dir)
        .run();
    let good = tokens::issue(&g.data, &[app], None, 600);
    let fm = |claims: serde_json::Value| tokens::flat_manager(FLAT_MANAGER_SECRET, &claims);
    let exp = tokens::now() + 600;
    // (what, token, answer for a gated file)
    let cases: Vec<(&str, Option<String>, u16)> = vec![
        ("no token", None, 401),
        ("garbage", Some("not-a-token".into()), 401),
        ("tampered", Some(tokens::tampered(&good)), 401),
        (
            "expired",
            Some(tokens::sign_native(
                &g.data,
                &tokens::native_claims(&[app], &[""], -120),
            )),
            401,
        ),
        (
            "another key",
            Some(tokens::issue(&other_dir, &[app], None, 600)),
            401,
        ),
        (
            "alg none",
            Some(tokens::unsigned(&tokens::native_claims(&[app], &[""], 600))),
            401,
        ),
        ("another ref", Some(other), 403),
        (
            "another repo",
            Some(tokens::issue(&g.data, &[app], Some("elsewhere"), 600)),
            403,
        ),
        (
            "flat-manager without prefixes",
            Some(fm(
                json!({"sub": "download", "exp": exp, "scope": ["download"], "repos": [""]}),
            )),
            401,
        ),
        (
            "flat-manager for another app",
            Some(fm(
                json!({"sub": "download", "exp": exp, "scope": ["download"],
                           "prefixes": ["org.example.Other"], "repos": [""]}),
            )),
            403,
        ),
        ("right token", Some(good.clone()), 200),
        (
            "flat-manager for the app",
            Some(fm(
                json!({"sub": "download", "exp": exp, "scope": ["download"],
                           "prefixes": [APP], "repos": [""]}),
            )),
            200,
        ),
    ];

    for (what, token, gated_status) in &cases {
        let auth = token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        for (rel, expect) in &files {
            let r = request(server.addr, "GET", &format!("/{rel}"), &headers);
            let wanted = match expect {
                Expect::Public => 200,
                Expect::Gated => *gated_status,
                Expect::Withheld if *gated_status == 200 => 200,
                Expect::Withheld | Expect::Unreachable => 404,
            };
            assert_eq!(r.status, wanted, "{what}: {rel} ({expect:?})");
            check_answer(&g.repo, rel, *expect, &r);
        }
    }
}

/// Checks the headers and body of one answer.
fn check_answer(repo: &Path, rel: &str, expect: Expect, r: &Response) {
    match r.status {
        200 => {
            if rel != "config" {
                assert_eq!(r.body, std::fs::read(repo.join(rel)).unwrap(), "{rel}");
            }
            let private = r.header("cache-control") == Some("private, no-store");
            assert_eq!(
                private,
                expect != Expect::Public,
                "{rel}: {:?}",
                r.header("cache-control")
            );
        }
        401 => {
            assert!(
                r.header("www-authenticate")
                    .is_some_and(|v| v.starts_with("Bearer")),
                "{rel}"
            );
            assert!(!r.body.windows(4).any(|w| w == b"\x89PNG"), "{rel}");
        }
        _ => {}
    }
    if r.status != 200 {
        let body = String::from_utf8_lossy(&r.body);
        assert!(body.contains("\"error-type\""), "{rel}: {body}");
    }
}

fn client(fx: &Fixture, url: &str) -> PathBuf {
    let repo = fx.join("client");
    fx.ostree(&repo).args(["init", "--mode=bare-user"]).run();
    fx.ostree(&repo)
        .args(["remote", "add", "--no-gpg-verify", "origin", url])
        .run();
    repo
}

#[test]
fn ostree_pull_needs_a_token_for_the_gated_ref() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let server = serve(&fx, &g);
    let cli = client(&fx, &server.url());

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
    let err = fx
        .ostree(&cli)
        .args([
            "pull",
            &format!("--http-header=Authorization=Bearer {other}"),
            "origin",
            &g.app_ref,
        ])
        .run_fail();
    assert!(err.contains("403"), "with a token for another ref: {err}");

    let token = tokens::issue(&g.data, &[&g.app_ref], None, 600);
    let mark = server.log().len();
    fx.ostree(&cli)
        .args([
            "pull",
            &format!("--http-header=Authorization=Bearer {token}"),
            "origin",
            &g.app_ref,
        ])
        .run();
    assert_eq!(
        rev(&fx, &cli, &format!("origin:{}", g.app_ref)),
        rev(&fx, &g.repo, &g.app_ref)
    );
    let fsck = fx.ostree(&cli).arg("fsck").run();
    assert!(fsck.contains("no errors found"), "{fsck}");
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

    flatpak()
        .args([
            "--user",
            "remote-add",
            "--no-gpg-verify",
            "test",
            &server.url(),
        ])
        .run();

    // A token that is not valid: flatpak reports the server's 401.
    let good = tokens::issue(&g.data, &[&g.app_ref], None, 600);
    std::fs::write(&required, tokens::tampered(&good)).unwrap();
    let out = flatpak()
        .args(["--user", "install", "-y", "--noninteractive", "test", APP])
        .output();
    assert!(!out.status.success(), "installed with an invalid token");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401"), "{err}");

    // The right token: the app and its public runtime install.
    std::fs::write(&required, &good).unwrap();
    flatpak()
        .args(["--user", "install", "-y", "--noninteractive", "test", APP])
        .run();
    let listed = flatpak()
        .args(["--user", "list", "--columns=application"])
        .run();
    assert!(listed.contains(APP) && listed.contains(RUNTIME), "{listed}");
    let arch = fx.flatpak_arch();
    let installed = fx.join(format!(
        "home/.local/share/flatpak/app/{APP}/{arch}/stable/active/files/bin/app"
    ));
    assert_eq!(
        std::fs::read_to_string(&installed).unwrap(),
        format!("#!/bin/sh\necho {APP} 2\n")
    );
    let asked = std::fs::read_to_string(fx.join("run/request")).unwrap();
    assert!(
        asked.contains("remote: test"),
        "the authenticator was asked: {asked}"
    );

    // Appstream is public and keeps updating without a token.
    let mark = server.log().len();
    flatpak()
        .args(["--user", "update", "--appstream", "-y", "--noninteractive"])
        .run();
    let requests = server.requests_since(mark);
    assert!(
        requests.iter().all(|a| a.status != 401 && a.status != 403),
        "{requests:?}"
    );
    assert!(
        fx.join(format!(
            "home/.local/share/flatpak/appstream/test/{arch}/active"
        ))
        .exists(),
        "the appstream data was pulled"
    );
}

/// Waits until `path` answers `status` without a token, or fails after a few seconds.
fn eventually(server: &Server, path: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = request(server.addr, "GET", path, &[]).status;
        if got == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still answers {got}, not {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn publishing_while_serving() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let server = serve(&fx, &g);
    let token = tokens::issue(&g.data, &[&g.app_ref], None, 600);
    let auth = format!("Bearer {token}");
    // Public: what the runtime and appstream refs reach (an empty directory, say, is shared).
    let public_refs: Vec<String> = files_under(&g.repo.join("refs/heads"))
        .into_iter()
        .filter(|r| !r.starts_with("app/"))
        .collect();
    let public = reached_by(&g.repo, &public_refs);

    // Every object the real ostree says a commit holds, and the commit: gated from the first
    // request, opened by a token for its ref.
    let check_gated = |commit: &str| {
        // What the token's ref (the first app) reaches now: those objects it opens.
        let covered = reached_by(&g.repo, std::slice::from_ref(&g.app_ref));
        let mut objects = vec![(commit.to_owned(), "commit")];
        let listing = fx.ostree(&g.repo).args(["ls", "-R", "-C", commit]).run();
        for line in listing.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if line.starts_with('d') {
                objects.push((fields[4].to_owned(), "dirtree"));
                objects.push((fields[5].to_owned(), "dirmeta"));
            } else {
                objects.push((fields[4].to_owned(), "filez"));
            }
        }
        let mut gated = 0;
        for (sum, ext) in &objects {
            let checksum = Checksum::from_hex(sum).unwrap();
            if public.contains(&checksum) {
                continue;
            }
            gated += 1;
            let path = format!("/objects/{}/{}.{ext}", &sum[..2], &sum[2..]);
            assert_eq!(
                request(server.addr, "GET", &path, &[]).status,
                401,
                "{path}"
            );
            let with = request(server.addr, "GET", &path, &[("Authorization", &auth)]);
            let expected = if covered.contains(&checksum) {
                200
            } else {
                403
            };
            assert_eq!(
                with.status, expected,
                "{path} with the token for {}",
                g.app_ref
            );
        }
        assert!(gated > 5, "{gated} gated objects in {commit}");
    };

    // A new version of the gated app, before the summary is even updated.
    let app_ref = fx.flatpak_app(&g.repo, APP, RUNTIME, 3, Some(2));
    assert_eq!(app_ref, g.app_ref);
    check_gated(&rev(&fx, &g.repo, &app_ref));
    update_repo(&fx, &g.repo);

    // A new gated app: gated at once, and the first app's token does not open it.
    let new_ref = fx.flatpak_app(&g.repo, "org.example.Paid2", RUNTIME, 1, Some(2));
    check_gated(&rev(&fx, &g.repo, &new_ref));
    let new_commit = rev(&fx, &g.repo, &new_ref);
    let new_commit_path = format!("/objects/{}/{}.commit", &new_commit[..2], &new_commit[2..]);
    let r = request(
        server.addr,
        "GET",
        &new_commit_path,
        &[("Authorization", &auth)],
    );
    assert_eq!(
        r.status, 403,
        "the first app's token does not open the new app's commit"
    );

    // The public runtime becomes gated (a new commit with xa.token-type), then public again.
    let runtime_commit = rev(&fx, &g.repo, &g.runtime_ref);
    let runtime_object = format!(
        "/objects/{}/{}.commit",
        &runtime_commit[..2],
        &runtime_commit[2..]
    );
    assert_eq!(
        request(server.addr, "GET", &runtime_object, &[]).status,
        200
    );
    for (token_type, status) in [("2", 401), ("0", 200)] {
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
        // The old commit is in the ref's history, so it follows the ref.
        eventually(&server, &runtime_object, status);
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

    let cli = client(&fx, &server.url());
    let token = tokens::issue(&issuer, &["os/x86_64/private"], None, 600);
    fx.ostree(&cli)
        .args([
            "pull",
            &format!("--http-header=Authorization=Bearer {token}"),
            "origin",
            "os/x86_64/private",
        ])
        .run();
    assert_eq!(rev(&fx, &cli, "origin:os/x86_64/private"), commit);
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
