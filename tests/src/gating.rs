//! Per-ref gating against the real clients: every file of a real Flatpak repository with a
//! public runtime and a gated app (`--token-type=2`), static deltas and appstream, asked for with
//! every kind of token; `ostree pull` with and without tokens; `flatpak install` through
//! flatpak's own test authenticator; and publishing while the server runs.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_ostree_format::{Checksum, ObjectType, RepoPath};

use crate::bus::{SessionBus, TEST_AUTHENTICATOR_NAME, test_authenticator};
use crate::cmd::Cmd;
use crate::fixture::{Fixture, files_under, set_mode, write_files};
use crate::http::{Response, request};
use crate::server::{Server, tollgate_bin};
use crate::tokens;

pub(crate) const FLAT_MANAGER_SECRET: &[u8] = b"a flat-manager download secret for tests";
pub(crate) const RUNTIME: &str = "org.example.Platform";
pub(crate) const APP: &str = "org.example.Paid";

/// A Flatpak repository with a public runtime and a gated app in two versions, deltas,
/// appstream, and the test authenticator configured; plus the server's data directory with its
/// key, and a configuration accepting flat-manager tokens.
pub(crate) struct GatedRepo {
    pub repo: PathBuf,
    pub data: PathBuf,
    pub config: PathBuf,
    pub runtime_ref: String,
    pub app_ref: String,
}

pub(crate) fn gated_repo(fx: &Fixture) -> GatedRepo {
    let repo = fx.join("repo");
    let runtime_ref = fx.flatpak_runtime(&repo, RUNTIME, 1, None);
    fx.flatpak_app(&repo, APP, RUNTIME, 1, Some(2));
    let app_ref = fx.flatpak_app(&repo, APP, RUNTIME, 2, Some(2));
    update_repo(fx, &repo);
    // A delta across refs, from the gated app to the public runtime: its patches are against
    // gated content, so it goes only to a token for the app.
    let from = fx.rev_parse(&repo, &app_ref);
    let to = fx.rev_parse(&repo, &runtime_ref);
    fx.ostree(&repo)
        .args([
            "static-delta",
            "generate",
            &format!("--from={from}"),
            &format!("--to={to}"),
        ])
        .run();
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
pub(crate) fn update_repo(fx: &Fixture, repo: &Path) {
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

pub(crate) fn serve(fx: &Fixture, g: &GatedRepo) -> Server {
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

/// The kind under which the gate judges an object, as the rules name them: commits with their
/// detached metadata, directory trees, directory metadata, and files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    Commit,
    DirTree,
    DirMeta,
    File,
}

impl Kind {
    fn of(t: ObjectType) -> Option<Kind> {
        match t {
            ObjectType::Commit | ObjectType::CommitMeta => Some(Kind::Commit),
            ObjectType::DirTree => Some(Kind::DirTree),
            ObjectType::DirMeta => Some(Kind::DirMeta),
            ObjectType::File => Some(Kind::File),
            ObjectType::TombstoneCommit => None,
        }
    }
}

/// Every commit of the ref's history, as `ostree log` shows it.
pub(crate) fn history(fx: &Fixture, repo: &Path, r: &str) -> Vec<Checksum> {
    let log = fx.ostree(repo).args(["log", r]).run();
    log.lines()
        .filter_map(|l| l.strip_prefix("commit "))
        .map(|c| Checksum::from_hex(c.trim()).unwrap())
        .collect()
}

/// What a commit holds, each object under the kind it is reached as: the commit itself, and
/// every dirtree, dirmeta and file `ostree ls -R -C` shows for it.
fn held_by(fx: &Fixture, repo: &Path, commit: &Checksum) -> HashSet<(Kind, Checksum)> {
    let mut objects = HashSet::from([(Kind::Commit, *commit)]);
    let listing = fx
        .ostree(repo)
        .args(["ls", "-R", "-C", &commit.to_string()])
        .run();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let sum = |i: usize| Checksum::from_hex(fields[i]).unwrap();
        if line.starts_with('d') {
            objects.insert((Kind::DirTree, sum(4)));
            objects.insert((Kind::DirMeta, sum(5)));
        } else {
            objects.insert((Kind::File, sum(4)));
        }
    }
    objects
}

/// Whether the real ostree finds a non-zero `xa.token-type` on the ref's commit.
pub(crate) fn has_token_type(fx: &Fixture, repo: &Path, r: &str) -> bool {
    let out = fx
        .ostree(repo)
        .args(["show", "--print-metadata-key=xa.token-type", r])
        .output();
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() != "0"
}

/// Who may have a file, as the real ostree's view of the repository says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expect {
    Public,
    /// Reached only by these gated refs.
    Gated(BTreeSet<String>),
    /// A delta to a public commit from one of these gated refs' commits.
    Withheld(BTreeSet<String>),
    /// On disk, but no ref reaches it.
    Unreachable,
}

/// Every servable file of the repository as it is now, with who may have it, by the rules (from
/// the real ostree's view of each ref, not from the index's code):
///
/// - a ref is gated when its tip commit has a non-zero `xa.token-type`;
/// - every commit of a gated ref's history (as `ostree log` shows it) is gated;
/// - an object is public when a commit of a public ref's history that no gated ref reaches
///   holds it, as the kind it is (`.commit`/`.commitmeta` for the commit, `.dirtree`/`.dirmeta`
///   for directories, `.filez` for files): a checksum public as one kind opens nothing else;
/// - otherwise it opens to a token of any gated ref whose history holds it; else nobody;
/// - deltas and delta indexes are judged as the commits they join.
pub(crate) fn expectations(fx: &Fixture, repo: &Path) -> Vec<(String, Expect)> {
    let refs = files_under(&repo.join("refs/heads"));
    let histories: HashMap<String, Vec<Checksum>> = refs
        .iter()
        .map(|r| (r.clone(), history(fx, repo, r)))
        .collect();
    let (gated_refs, public_refs): (Vec<String>, Vec<String>) =
        refs.into_iter().partition(|r| has_token_type(fx, repo, r));
    let mut holds: HashMap<Checksum, HashSet<(Kind, Checksum)>> = HashMap::new();
    for c in histories.values().flatten() {
        if !holds.contains_key(c) {
            holds.insert(*c, held_by(fx, repo, c));
        }
    }
    let gated_commits: HashSet<&Checksum> = gated_refs.iter().flat_map(|r| &histories[r]).collect();
    let public: HashSet<(Kind, Checksum)> = public_refs
        .iter()
        .flat_map(|r| &histories[r])
        .filter(|c| !gated_commits.contains(c))
        .flat_map(|c| holds[c].iter().copied())
        .collect();
    let mut gated: HashMap<(Kind, Checksum), BTreeSet<String>> = HashMap::new();
    for r in &gated_refs {
        for o in histories[r].iter().flat_map(|c| &holds[c]) {
            if !public.contains(o) {
                gated.entry(*o).or_default().insert(r.clone());
            }
        }
    }
    let judge = |kind: Kind, c: &Checksum| {
        let key = (kind, *c);
        match (public.contains(&key), gated.get(&key)) {
            (true, _) => Expect::Public,
            (false, Some(refs)) => Expect::Gated(refs.clone()),
            (false, None) => Expect::Unreachable,
        }
    };
    let mut files = Vec::new();
    for rel in files_under(repo) {
        let expect = match RepoPath::parse(&rel) {
            None => continue,
            Some(RepoPath::Object(o)) => match Kind::of(o.kind) {
                Some(kind) => judge(kind, &o.checksum),
                None => Expect::Public,
            },
            // Open only when both the target and the source are open to the request.
            Some(RepoPath::Delta { delta, .. }) => {
                let to = judge(Kind::Commit, &delta.to);
                match (to, delta.from.map(|f| judge(Kind::Commit, &f))) {
                    (Expect::Unreachable, _) | (_, Some(Expect::Unreachable)) => {
                        Expect::Unreachable
                    }
                    (Expect::Public, Some(Expect::Gated(source))) => Expect::Withheld(source),
                    (to, _) => to,
                }
            }
            Some(RepoPath::DeltaIndex(to)) => judge(Kind::Commit, &to),
            Some(RepoPath::Head(name)) if gated_refs.iter().any(|r| r == name.as_str()) => {
                Expect::Gated(BTreeSet::from([name.to_string()]))
            }
            Some(_) => Expect::Public,
        };
        files.push((rel, expect));
    }
    files
}

/// What a token does for a request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Presented<'a> {
    /// No token, or one the server must refuse: 401 for anything gated.
    Invalid,
    /// A valid token that covers no ref of this repository: 403 for anything gated.
    CoversNothing,
    /// A valid token covering this ref.
    Covers(&'a str),
}

/// The status `file` must get with `token`.
pub(crate) fn wanted(expect: &Expect, token: Presented<'_>) -> u16 {
    match (expect, token) {
        (Expect::Public, _) => 200,
        (Expect::Unreachable, _) => 404,
        (Expect::Gated(_), Presented::Invalid) => 401,
        (Expect::Gated(_), Presented::CoversNothing) => 403,
        (Expect::Gated(refs), Presented::Covers(r)) => {
            if refs.contains(r) {
                200
            } else {
                403
            }
        }
        (Expect::Withheld(refs), Presented::Covers(r)) if refs.contains(r) => 200,
        (Expect::Withheld(_), _) => 404,
    }
}

/// Asks for every file with `header` (an Authorization value) and compares with what `token`
/// must get; returns the mismatches.
pub(crate) fn mismatches(
    server: &Server,
    repo: &Path,
    files: &[(String, Expect)],
    header: Option<&str>,
    token: Presented<'_>,
) -> Vec<String> {
    let headers: Vec<(&str, &str)> = header.iter().map(|h| ("Authorization", *h)).collect();
    let mut wrong = Vec::new();
    for (rel, expect) in files {
        let r = request(server.addr, "GET", &format!("/{rel}"), &headers);
        let want = wanted(expect, token);
        if r.status != want {
            wrong.push(format!(
                "{rel} ({expect:?}): {} instead of {want}",
                r.status
            ));
            continue;
        }
        check_answer(repo, rel, expect, &r);
    }
    wrong
}

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

/// Checks the headers and body of one answer.
fn check_answer(repo: &Path, rel: &str, expect: &Expect, r: &Response) {
    if r.status == 200 {
        if rel != "config" {
            assert_eq!(r.body, std::fs::read(repo.join(rel)).unwrap(), "{rel}");
        }
        let private = r.header("cache-control") == Some("private, no-store");
        assert_eq!(
            private,
            *expect != Expect::Public,
            "{rel}: {:?}",
            r.header("cache-control")
        );
        return;
    }
    if r.status == 401 {
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{rel}"
        );
    }
    let body = String::from_utf8_lossy(&r.body);
    assert!(body.contains("\"error-type\""), "{rel}: {body}");
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
