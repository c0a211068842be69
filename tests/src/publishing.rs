//! Publishing under load: real `ostree pull` and `flatpak update` clients in a loop while the
//! vendor publishes with the real tools — new versions of the gated app, new refs public and
//! gated, deleted refs, a ref switched between public and gated, static deltas regenerated — and
//! a prober asks for the gated app's files without a covering token the whole time. No pull
//! that should succeed fails, nothing gated goes out without a covering token, and every pulled
//! commit passes `ostree fsck`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::bus::{SessionBus, TEST_AUTHENTICATOR_NAME, test_authenticator};
use crate::fixture::{Fixture, StopOnDrop};
use crate::gated_repo::{APP, RUNTIME, gated_repo, serve, update_repo};
use crate::http::request;
use crate::tokens;

fn object_path(checksum: &str, kind: &str) -> String {
    format!("/objects/{}/{}.{kind}", &checksum[..2], &checksum[2..])
}

/// The files of the app commit `commit` that no other ref has: the commit itself and the
/// app's own program and data, as the real ostree lists them.
fn own_files(fx: &Fixture, repo: &Path, commit: &str) -> Vec<String> {
    let mut files = vec![object_path(commit, "commit")];
    for file in ["/files/bin/app", "/files/share/data"] {
        let listed = fx.ostree(repo).args(["ls", "-C", commit, file]).run();
        let checksum = listed.split_whitespace().nth(4).unwrap().to_owned();
        files.push(object_path(&checksum, "filez"));
    }
    files
}

/// `ostree refs --delete`, as a vendor withdraws a ref.
fn delete_ref(fx: &Fixture, repo: &Path, r: &str) {
    fx.ostree(repo).args(["refs", "--delete", r]).run();
}

/// A new commit of `r` with the token type `token_type`, as flatpak's tools make it.
fn retype(fx: &Fixture, repo: &Path, r: &str, token_type: i32) {
    fx.flatpak()
        .args([
            "build-commit-from",
            "--force",
            &format!("--token-type={token_type}"),
        ])
        .arg(format!("--src-ref={r}"))
        .arg(repo)
        .arg(r)
        .run();
}

/// The status of `path` without a token, once the server has caught up with a publish: until
/// then a new commit is refused (404) or gated (401), and never served.
fn settled_status(addr: std::net::SocketAddr, path: &str, want: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = request(addr, "GET", path, &[]).status;
        if status == want {
            return Ok(());
        }
        if want == 401 && status == 200 {
            return Err(format!(
                "{path} was served without a token while being gated"
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("{path} still answers {status}, not {want}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn publishing_under_load_breaks_no_pull_and_leaks_nothing() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let server = serve(&fx, &g);
    let addr = server.addr;
    let token = tokens::issue(&g.data, &[&g.app_ref], None, 3600);
    let other = tokens::issue(
        &g.data,
        &["app/org.example.Nothing/x86_64/stable"],
        None,
        3600,
    );
    let bus = SessionBus::start(&fx, &[(TEST_AUTHENTICATOR_NAME, test_authenticator())]);
    let env: Vec<(String, PathBuf)> = fx.env().iter().cloned().chain([bus.env()]).collect();
    std::fs::write(fx.join("run/required-token"), &token).unwrap();
    fx.flatpak_remote_add("test", &server.url());
    fx.flatpak_install(&env, "test", APP);
    let client = fx.ostree_client_named("puller", &server.url());

    // A ref that will switch between public and gated.
    let switching = fx.flatpak_app(&g.repo, "org.example.Switching", RUNTIME, 1, None);
    update_repo(&fx, &g.repo);

    let app_commit = fx.rev_parse(&g.repo, &g.app_ref);
    let gated_files = Mutex::new(own_files(&fx, &g.repo, &app_commit));
    let stop = AtomicBool::new(false);
    let mut pulls = (0, 0, 0);
    let (pull_failures, flatpak_failures, leaks, publish_problems) = std::thread::scope(|scope| {
        // ostree: the gated app (with its token) and the public runtime (without), again and
        // again into one repository, checked by fsck each time.
        let pulling = scope.spawn(|| {
            let mut failures = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                for (r, auth) in [(&g.app_ref, Some(token.as_str())), (&g.runtime_ref, None)] {
                    let out = fx.pull(&client, r, auth).output();
                    if !out.status.success() {
                        failures.push(format!(
                            "pull {n} of {r}: {}",
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    }
                }
                let fsck = fx.ostree(&client).arg("fsck").output();
                if !fsck.status.success() {
                    failures.push(format!(
                        "fsck {n}: {}",
                        String::from_utf8_lossy(&fsck.stderr)
                    ));
                }
            }
            (failures, n)
        });
        // flatpak: updates of the installed app and runtime, through its authenticator.
        let updating = scope.spawn(|| {
            let mut failures = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let out = fx
                    .flatpak()
                    .envs(&env)
                    .args(["--user", "update", "-y", "--noninteractive"])
                    .output();
                if !out.status.success() {
                    failures.push(format!(
                        "flatpak update {n}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
            (failures, n)
        });
        // The prober: the app's own files, without a token and with a token for another ref.
        let probing = scope.spawn(|| {
            let mut leaks = Vec::new();
            let mut n = 0;
            let other = format!("Bearer {other}");
            while !stop.load(Ordering::SeqCst) {
                let files = gated_files.lock().unwrap().clone();
                for path in &files {
                    n += 1;
                    for headers in [vec![], vec![("Authorization", other.as_str())]] {
                        let status = request(addr, "GET", path, &headers).status;
                        if !matches!(status, 401 | 403) {
                            leaks.push(format!("{path}: {status} with {headers:?}"));
                        }
                    }
                }
            }
            (leaks, n)
        });

        // The vendor publishes, round after round; the loops above stop when it is done, or
        // if it fails.
        let stopping = StopOnDrop(&stop);
        let mut problems = Vec::new();
        let arch = fx.flatpak_arch();
        for round in 0..6u32 {
            // A new version of the gated app.
            fx.flatpak_app(&g.repo, APP, RUNTIME, 3 + round, Some(2));
            let commit = fx.rev_parse(&g.repo, &g.app_ref);
            gated_files
                .lock()
                .unwrap()
                .extend(own_files(&fx, &g.repo, &commit));
            // A new app, public and gated in turns, and the one of two rounds ago withdrawn.
            let gated = round % 2 == 1;
            fx.flatpak_app(
                &g.repo,
                &format!("org.example.New{round}"),
                RUNTIME,
                1,
                gated.then_some(2),
            );
            if round >= 2 {
                delete_ref(
                    &fx,
                    &g.repo,
                    &format!("app/org.example.New{}/{arch}/stable", round - 2),
                );
            }
            // The switching app changes sides.
            let token_type = if round % 2 == 0 { 2 } else { 0 };
            retype(&fx, &g.repo, &switching, token_type);
            // Summaries, appstream and static deltas made again.
            update_repo(&fx, &g.repo);
            let tip = fx.rev_parse(&g.repo, &switching);
            let want = if token_type == 2 { 401 } else { 200 };
            if let Err(e) = settled_status(addr, &object_path(&tip, "commit"), want) {
                problems.push(e);
            }
        }
        // Let the clients catch up with the last publish, then stop them.
        std::thread::sleep(Duration::from_secs(3));
        drop(stopping);
        let (pull_failures, n) = pulling.join().unwrap();
        let (flatpak_failures, m) = updating.join().unwrap();
        let (leaks, probes) = probing.join().unwrap();
        pulls = (n, m, probes);
        (pull_failures, flatpak_failures, leaks, problems)
    });

    assert!(
        leaks.is_empty(),
        "{} leaks, the first: {:?}",
        leaks.len(),
        &leaks[..leaks.len().min(5)]
    );
    assert!(
        pull_failures.is_empty(),
        "ostree pulls failed: {pull_failures:#?}"
    );
    assert!(
        flatpak_failures.is_empty(),
        "flatpak updates failed: {flatpak_failures:#?}"
    );
    assert!(publish_problems.is_empty(), "{publish_problems:#?}");
    assert!(
        pulls.0 >= 3 && pulls.1 >= 3 && pulls.2 > 100,
        "too few rounds: {pulls:?}"
    );

    // The clients end on the last version, whole.
    let last = fx.rev_parse(&g.repo, &g.app_ref);
    fx.pull(&client, &g.app_ref, Some(&token)).run();
    assert_eq!(
        fx.rev_parse(&client, &format!("origin:{}", g.app_ref)),
        last
    );
    fx.fsck(&client);
    fx.flatpak()
        .envs(&env)
        .args(["--user", "update", "-y", "--noninteractive"])
        .run();
    assert_eq!(fx.installed_app(APP), format!("#!/bin/sh\necho {APP} 8\n"));
    fx.fsck(&fx.join("home/.local/share/flatpak/repo"));
    server.settle();
    assert!(!server.log().contains("panicked"));
}
