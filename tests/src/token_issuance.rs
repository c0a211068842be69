//! What issued tokens open for the real `ostree` and `flatpak`, and issuance under load: two
//! hundred clients at once, and `kill -9` while tokens and licenses are being written.

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::{Value, json};

use crate::bus::{SessionBus, TEST_AUTHENTICATOR_NAME, test_authenticator};
use crate::cmd::Cmd;
use crate::fixture::Fixture;
use crate::gated_repo::{APP, GatedRepo, RUNTIME, gated_repo, update_repo};
use crate::http::{self};
use crate::server::tollgate_bin;
use crate::service::{
    ADMIN_TOKEN, OTHER_APP, Service, bearer, claims, fetch, license_for_paid, signed_token,
};

/// A repository with a second gated app, `org.example.Other`, that the license does not cover.
fn two_gated_apps(fx: &Fixture) -> (GatedRepo, String) {
    let g = gated_repo(fx);
    let other_ref = fx.flatpak_app(&g.repo, OTHER_APP, RUNTIME, 1, Some(2));
    update_repo(fx, &g.repo);
    (g, other_ref)
}

#[test]
fn a_licensed_token_opens_its_app_for_ostree_and_flatpak_and_nothing_else() {
    let fx = Fixture::new();
    let (g, other_ref) = two_gated_apps(&fx);
    let s = Service::start(&fx, &g, None, "");
    let key = license_for_paid(&s);
    let (status, answer) = s.tokens(
        Some(&bearer(&key)),
        &json!({"refs": [g.app_ref, g.runtime_ref, other_ref]}),
    );
    assert_eq!(status, 200, "{answer}");
    let (jwt, refs) = signed_token(&answer).unwrap();
    assert_eq!(refs, std::slice::from_ref(&g.app_ref));
    assert_eq!(
        answer["denied"],
        json!({ other_ref.clone(): "not-licensed" })
    );

    // ostree: the licensed app pulls and checks out whole; the other gated app does not.
    let cli = fx.ostree_client(&s.server.url());
    let header = format!("--http-header=Authorization=Bearer {jwt}");
    fx.ostree(&cli)
        .args(["pull", &header, "origin", &g.app_ref])
        .run();
    fx.assert_pulled(&cli, "origin", &g.repo, &g.app_ref);
    let err = fx
        .ostree(&cli)
        .args(["pull", &header, "origin", &other_ref])
        .run_fail();
    assert!(err.contains("403"), "the other app with this token: {err}");

    // flatpak, through its authenticator: the app and its runtime install; the other does not.
    let bus = SessionBus::start(&fx, &[(TEST_AUTHENTICATOR_NAME, test_authenticator())]);
    let env: Vec<(String, PathBuf)> = fx.env().iter().cloned().chain([bus.env()]).collect();
    std::fs::write(fx.join("run/required-token"), &jwt).unwrap();
    fx.flatpak_remote_add("test", &s.server.url());
    fx.flatpak_install(&env, "test", APP);
    assert_eq!(fx.installed_app(APP), format!("#!/bin/sh\necho {APP} 2\n"));
    let err = fx.flatpak_install_fails(&env, "test", OTHER_APP);
    assert!(err.contains("403"), "{err}");

    // The gated downloads are in the audit records, under the token's id.
    let jti = claims(&jwt)["jti"].as_str().unwrap().to_owned();
    let downloads = s.wait_for_audit("downloads", "limit=1000", 1);
    assert!(
        downloads
            .iter()
            .all(|d| d["ref"] == json!(g.app_ref) && d["token_id"] == json!(jti)),
        "{downloads:?}"
    );
}

#[test]
fn two_hundred_clients_at_once() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start(&fx, &g, None, "");
    let key = license_for_paid(&s);
    let addr = s.server.addr;
    const CLIENTS: usize = 200;
    const WRITERS: usize = 10;
    let barrier = Arc::new(Barrier::new(CLIENTS + WRITERS));
    let mut threads = Vec::new();
    for _ in 0..CLIENTS {
        let (barrier, key, app) = (Arc::clone(&barrier), key.clone(), g.app_ref.clone());
        threads.push(std::thread::spawn(move || {
            barrier.wait();
            http::json(
                addr,
                "POST",
                "/api/v1/tokens",
                Some(&bearer(&key)),
                Some(&json!({ "refs": [app] })),
            )
        }));
    }
    // Admin writes at the same time, so that the audit writer is not the only writer.
    for i in 0..WRITERS {
        let barrier = Arc::clone(&barrier);
        threads.push(std::thread::spawn(move || {
            barrier.wait();
            http::json(
                addr,
                "POST",
                "/api/v1/admin/licenses",
                Some(&bearer(ADMIN_TOKEN)),
                Some(&json!({"products": ["paid"], "note": format!("writer {i}")})),
            )
        }));
    }
    let answers: Vec<(u16, Value)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let (tokens, writes) = answers.split_at(CLIENTS);
    for (status, answer) in tokens {
        assert_eq!(*status, 200, "{answer}");
        assert!(signed_token(answer).is_some(), "{answer}");
    }
    for (status, answer) in writes {
        assert_eq!(*status, 201, "{answer}");
    }
    // A clean stop writes every record still queued.
    let status = s.server.stop();
    assert!(status.success());
    let audit = Cmd::new(tollgate_bin())
        .args(["admin", "--json", "--data-dir"])
        .arg(&g.data)
        .args(["audit", "--limit", "1000"])
        .run();
    let audit: Vec<Value> = serde_json::from_str(&audit).unwrap();
    assert_eq!(audit.len(), CLIENTS, "issued tokens recorded");
    let licenses = Cmd::new(tollgate_bin())
        .args(["admin", "--json", "--data-dir"])
        .arg(&g.data)
        .args(["license", "list"])
        .run();
    let licenses: Vec<Value> = serde_json::from_str(&licenses).unwrap();
    assert_eq!(licenses.len(), WRITERS + 1);
}

/// What the server acknowledged to one writer: licenses (id, key), and tokens.
type Acknowledged = (Vec<(String, String)>, Vec<String>);

/// Writers that create licenses and get tokens as fast as they can until the server is gone.
fn write_until_killed(
    addr: std::net::SocketAddr,
    key: &str,
    app: &str,
    round: usize,
) -> Vec<std::thread::JoinHandle<Acknowledged>> {
    (0..4)
        .map(|w| {
            let (key, app) = (key.to_owned(), app.to_owned());
            std::thread::spawn(move || {
                let (mut licenses, mut tokens) = (Vec::new(), Vec::new());
                for n in 0.. {
                    let (path, auth, body) = if n % 2 == 0 {
                        ("/api/v1/tokens", bearer(&key), json!({ "refs": [app] }))
                    } else {
                        (
                            "/api/v1/admin/licenses",
                            bearer(ADMIN_TOKEN),
                            json!({"products": ["paid"], "note": format!("{round}-{w}-{n}")}),
                        )
                    };
                    let sent = http::try_request_with_body_from(
                        None,
                        addr,
                        "POST",
                        path,
                        &[
                            ("Authorization", &auth),
                            ("Content-Type", "application/json"),
                        ],
                        body.to_string().as_bytes(),
                    );
                    match sent {
                        Ok(r) if r.status == 201 => {
                            let answer: Value = serde_json::from_slice(&r.body).unwrap();
                            licenses.push((
                                answer["id"].as_str().unwrap().to_owned(),
                                answer["key"].as_str().unwrap().to_owned(),
                            ));
                        }
                        Ok(r) if r.status == 200 => {
                            let answer: Value = serde_json::from_slice(&r.body).unwrap();
                            if let Some((token, _)) = signed_token(&answer) {
                                tokens.push(token);
                            }
                        }
                        Ok(_) => {}
                        // The connection broke: the server is gone.
                        Err(_) => break,
                    }
                }
                (licenses, tokens)
            })
        })
        .collect()
}

#[test]
fn the_database_survives_kill_9_during_writes() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let mut s = Service::start(&fx, &g, None, "");
    let key = license_for_paid(&s);
    let head = format!("/refs/heads/{}", g.app_ref);
    let (mut licenses, mut tokens) = (Vec::new(), Vec::new());
    // Three rounds of writes cut short by SIGKILL at a different moment each.
    for (round, after) in [1500u64, 900, 2300].into_iter().enumerate() {
        let writers = write_until_killed(s.server.addr, &key, &g.app_ref, round);
        std::thread::sleep(Duration::from_millis(after));
        s = s.kill_and_restart(|| {
            for writer in writers {
                let (l, t) = writer.join().unwrap();
                licenses.extend(l);
                tokens.extend(t);
            }
        });
    }
    assert!(
        licenses.len() > 5 && tokens.len() > 5,
        "few writes before the kills: {} licenses, {} tokens",
        licenses.len(),
        tokens.len()
    );

    // Every license the server confirmed is there, and every license there is whole: nothing
    // half-written is visible.
    let listed = Cmd::new(tollgate_bin())
        .args(["admin", "--json", "--data-dir"])
        .arg(&g.data)
        .args(["license", "list"])
        .run();
    let listed: Vec<Value> = serde_json::from_str(&listed).unwrap();
    let ids: Vec<&str> = listed.iter().map(|l| l["id"].as_str().unwrap()).collect();
    for (id, _) in &licenses {
        assert!(ids.contains(&id.as_str()), "license {id} lost in a crash");
    }
    for license in &listed {
        assert_eq!(license["products"], json!(["paid"]), "{license}");
    }
    // Acknowledged keys and tokens still work after the restarts.
    for (id, license_key) in licenses.iter().step_by(licenses.len() / 5) {
        let (status, answer) =
            s.tokens(Some(&bearer(license_key)), &json!({ "refs": [g.app_ref] }));
        assert_eq!(status, 200, "license {id}: {answer}");
    }
    for token in tokens.iter().step_by(tokens.len() / 5) {
        assert_eq!(
            fetch(&s.server, &head, Some(token)).status,
            200,
            "a token issued before a crash"
        );
    }
    // The database takes new writes.
    s.admin_ok(
        201,
        "POST",
        "products",
        Some(json!({"slug": "after", "name": "After", "refs": ["app/x/*"]})),
    );
    let (status, answer) = s.tokens(Some(&bearer(&key)), &json!({ "refs": [g.app_ref] }));
    assert_eq!(status, 200, "{answer}");
}
