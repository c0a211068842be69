//! Crashes and restarts: `kill -9` while the index is being built and rebuilt, and signing key
//! rotation while clients get tokens and pull. (`kill -9` during token issuance and admin
//! writes: `entitlements::the_database_survives_kill_9_during_writes`.)

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cmd::Cmd;
use crate::fixture::Fixture;
use crate::gated_repo::gated_repo;
use crate::http;
use crate::server::{Server, tollgate_bin};
use crate::service::{Service, license_for_paid, token_for};
use crate::synth::{Shape, generate};
use crate::tokens;

fn object_path(commit: &str) -> String {
    format!("/objects/{}/{}.commit", &commit[..2], &commit[2..])
}

/// Runs `tollgate serve` with its log in a file, kills it with SIGKILL as soon as it has
/// logged `when`, and returns its whole log.
fn serve_and_kill(fx: &Fixture, args: &[&str], when: &str) -> String {
    let log = fx.join("killed.log");
    let mut child = Command::new(tollgate_bin())
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .envs(fx.env().iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log).unwrap().contains(when) {
        assert!(Instant::now() < deadline, "tollgate never logged {when:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::read_to_string(log).unwrap()
}

/// Every ref's commit answers as its ref says: 401 without a token when gated, 200 when public,
/// and 200 with a token for it.
fn gate_is_right(server: &Server, data: &Path, refs: &[(String, String, bool)]) {
    for (name, commit, gated) in refs {
        let path = object_path(commit);
        let bare = http::get(server.addr, &path).status;
        assert_eq!(
            bare,
            if *gated { 401 } else { 200 },
            "{name} without a token"
        );
        if *gated {
            let token = tokens::issue(data, &[name], None, 600);
            let auth = format!("Bearer {token}");
            let with = http::request(server.addr, "GET", &path, &[("Authorization", &auth)]);
            assert_eq!(with.status, 200, "{name} with its token");
        }
    }
}

#[test]
fn kill_9_during_index_builds_leaves_nothing_behind() {
    let fx = Fixture::new();
    let shape = Shape {
        refs: 40,
        gated_every: 2,
        objects: 160_000,
        files_per_dir: 20,
        fanout: 4,
        content: false,
    };
    let repo = fx.join("repo");
    let generated = generate(&repo, &shape);
    let data = fx.join("data");
    Cmd::new(tollgate_bin())
        .args(["keys", "generate", "--data-dir"])
        .arg(&data)
        .run();
    let args = [
        "--repo",
        repo.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];

    // Killed during the first build, before it listens.
    let log = serve_and_kill(&fx, &args, "building the index of");
    assert!(
        !log.contains("indexed ") && !log.contains("listening on"),
        "the first build was over before the kill; make the repository bigger:\n{log}"
    );

    // Half the refs held back: a server indexes the rest, then they are published at once and
    // it is killed while it rebuilds.
    let held = fx.join("held");
    std::fs::create_dir_all(&held).unwrap();
    let heads = repo.join("refs/heads/app");
    let late: Vec<String> = (20..40).map(|r| format!("org.example.App{r}")).collect();
    for app in &late {
        std::fs::rename(heads.join(app), held.join(app)).unwrap();
    }
    let mut server = Server::serve(&args, fx.env());
    server.wait_for_log("indexed ", Duration::from_secs(60));
    let early: Vec<_> = generated.refs[..20].to_vec();
    gate_is_right(&server, &data, &early);
    let before = server.log().matches("indexed ").count();
    for app in &late {
        std::fs::rename(held.join(app), heads.join(app)).unwrap();
    }
    server.wait_for_log("changed; updating its index", Duration::from_secs(30));
    let log = server.kill();
    assert_eq!(
        log.matches("indexed ").count(),
        before,
        "the rebuild was over before the kill; make the repository bigger:\n{log}"
    );

    // Restarted: every ref, early and late, is judged as it should be.
    let server = Server::serve(&args, fx.env());
    gate_is_right(&server, &data, &generated.refs);
    let metrics = server.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l == "tollgate_index_gated_refs{repo=\"\"} 20"),
        "{metrics}"
    );
}

#[test]
fn keys_rotate_under_load_and_no_pull_fails() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start(&fx, &g, None, "");
    let key = license_for_paid(&s);
    let ask = json!({ "refs": [g.app_ref] });
    let before = token_for(&s, &key, &ask);
    let kid = |token: &str| -> String {
        use base64::Engine as _;
        let header = token.split('.').next().unwrap();
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap();
        let header: Value = serde_json::from_slice(&header).unwrap();
        header["kid"].as_str().unwrap().to_owned()
    };
    let first_kid = kid(&before);

    // Clients ask for a token and pull with it, again and again, while the keys rotate.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = s.server.addr;
    let askers: Vec<_> = (0..3)
        .map(|_| {
            let (stop, key, ask) = (std::sync::Arc::clone(&stop), key.clone(), ask.clone());
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                let mut kids = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let r = http::request_with_body(
                        addr,
                        "POST",
                        "/api/v1/tokens",
                        &[
                            ("Authorization", &format!("Bearer {key}")),
                            ("Content-Type", "application/json"),
                        ],
                        ask.to_string().as_bytes(),
                    );
                    if r.status != 200 {
                        failures.push(format!(
                            "{}: {}",
                            r.status,
                            String::from_utf8_lossy(&r.body)
                        ));
                    } else {
                        let answer: Value = serde_json::from_slice(&r.body).unwrap();
                        kids.push(crate::service::signed_token(&answer).unwrap().0);
                    }
                }
                (failures, kids)
            })
        })
        .collect();
    let mut pulls = 0;
    let mut failed = Vec::new();
    let mut rotations = 0;
    let started = Instant::now();
    // Three rotations a few seconds apart; the pulls go on until the server signs with a new
    // key (it looks for one every 10 s).
    let mut latest = first_kid.clone();
    while rotations < 3 || latest == first_kid {
        if rotations < 3 && started.elapsed() > Duration::from_secs(3 * (rotations + 1)) {
            Cmd::new(tollgate_bin())
                .args(["keys", "rotate", "--data-dir"])
                .arg(&g.data)
                .run();
            rotations += 1;
        }
        pulls += 1;
        let token = token_for(&s, &key, &ask);
        latest = kid(&token);
        let client = fx.ostree_client_named(&format!("c{pulls}"), &s.server.url());
        let out = fx.pull(&client, &g.app_ref, Some(&token)).output();
        if !out.status.success() {
            failed.push(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "still signing with {first_kid} after 120 s"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut issued = Vec::new();
    for asker in askers {
        let (f, t) = asker.join().unwrap();
        failed.extend(f);
        issued.extend(t);
    }
    assert!(
        failed.is_empty(),
        "{} failures, the first: {:?}",
        failed.len(),
        failed.first()
    );
    // The rotations took: tokens came signed by more than one key, and the last by a new one.
    let kids: std::collections::BTreeSet<String> = issued.iter().map(|t| kid(t)).collect();
    assert!(kids.len() >= 2, "every token was signed by {kids:?}");
    assert_ne!(kid(&token_for(&s, &key, &ask)), first_kid);
    // A token signed before any rotation still opens the app.
    let head = format!("/refs/heads/{}", g.app_ref);
    assert_eq!(
        crate::service::fetch(&s.server, &head, Some(&before)).status,
        200
    );
}
