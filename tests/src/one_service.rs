//! Processes that must act as one service: signing keys rotated while serving, instances sharing
//! a PostgreSQL database, and the admin commands writing beside a running server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cmd::Cmd;
use crate::fixture::Fixture;
use crate::gated_repo::{APP, GatedRepo, gated_repo};
use crate::http::{self};
use crate::postgres::Postgres;
use crate::server::tollgate_bin;
use crate::service::{
    PASSWORD, Service, basic, bearer, claims, deactivate_and_check_refused, error_type, fetch, kid,
    license_for_paid, published_kids, set_license_active, token_for, verify_with_jwks,
};

#[test]
fn keys_rotate_while_serving() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let mut s = Service::start(&fx, &g, None, "");
    let key = license_for_paid(&s);
    let ask = json!({ "refs": [g.app_ref] });
    let old = token_for(&s, &key, &ask);
    let old_kid = kid(&old);
    assert_eq!(published_kids(&s), std::slice::from_ref(&old_kid));

    // A rotation published in another database: the server keeps signing with the key its own
    // database publishes, and says why.
    let elsewhere = Postgres::start();
    let url = elsewhere.database("elsewhere");
    Cmd::new(tollgate_bin())
        .args(["keys", "rotate", "--data-dir"])
        .arg(&g.data)
        .args(["--database-url", &url])
        .run();
    s.server
        .wait_for_log("is not published in the database", Duration::from_secs(30));
    assert_eq!(kid(&token_for(&s, &key, &ask)), old_kid);
    // A rotation whose database cannot be reached makes no key at all.
    let err = Cmd::new(tollgate_bin())
        .args(["keys", "rotate", "--data-dir"])
        .arg(&g.data)
        .args(["--database-url", "postgres://tollgate@127.0.0.1:1/nothing"])
        .run_fail();
    assert!(err.contains("opening the database"), "{err}");
    assert_eq!(
        std::fs::read_dir(g.data.join("keys")).unwrap().count(),
        2,
        "the first key, and the one published elsewhere"
    );

    // A rotation in the server's own database: it signs with the new key within seconds; both
    // keys stay published and trusted.
    let rotated = Cmd::new(tollgate_bin())
        .args(["keys", "rotate", "--data-dir"])
        .arg(&g.data)
        .run();
    let deadline = Instant::now() + Duration::from_secs(30);
    let new = loop {
        let t = token_for(&s, &key, &ask);
        if kid(&t) != old_kid {
            break t;
        }
        assert!(Instant::now() < deadline, "still signing with {old_kid}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let new_kid = kid(&new);
    assert!(rotated.contains(&new_kid), "rotate printed {rotated:?}");
    let mut want = vec![old_kid, new_kid];
    want.sort();
    assert_eq!(published_kids(&s), want);
    verify_with_jwks(&s.server, &old);
    verify_with_jwks(&s.server, &new);
    let head = format!("/refs/heads/{}", g.app_ref);
    assert_eq!(
        fetch(&s.server, &head, Some(&old)).status,
        200,
        "the old token"
    );
    assert_eq!(
        fetch(&s.server, &head, Some(&new)).status,
        200,
        "the new token"
    );
}

#[test]
fn instances_sharing_a_postgresql_database_act_as_one_service() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let postgres = Postgres::start();
    let url = postgres.database("shared");
    let a = Service::start(&fx, &g, Some(&url), "");
    let key = license_for_paid(&a);
    // A second instance: the same repository and database, a data directory (and signing key)
    // of its own.
    let b_repo = GatedRepo {
        repo: g.repo.clone(),
        data: fx.join("data-b"),
        config: g.config.clone(),
        runtime_ref: g.runtime_ref.clone(),
        app_ref: g.app_ref.clone(),
    };
    let b = Service::start(&fx, &b_repo, Some(&url), "");
    let ask = json!({ "refs": [g.app_ref] });
    let (from_a, from_b) = (token_for(&a, &key, &ask), token_for(&b, &key, &ask));
    assert_ne!(kid(&from_a), kid(&from_b), "each signs with its own key");

    // Starting B retired nothing of A's: both keys sign, and both are published.
    let signing = postgres.query(
        "shared",
        "SELECT kid FROM signing_keys WHERE retired IS NULL ORDER BY kid",
    );
    let mut kids = vec![kid(&from_a), kid(&from_b)];
    kids.sort();
    assert_eq!(signing.lines().collect::<Vec<_>>(), kids);
    assert_eq!(published_kids(&a).len(), 2);

    // Each instance's tokens open the gated ref on the other (A learns of B's key within its
    // next look at the database).
    let head = format!("/refs/heads/{}", g.app_ref);
    assert_eq!(fetch(&b.server, &head, Some(&from_a)).status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while fetch(&a.server, &head, Some(&from_b)).status != 200 {
        assert!(Instant::now() < deadline, "A never trusted B's key");
        std::thread::sleep(Duration::from_millis(500));
    }

    // A key rotated on A reaches B: A signs with its new key within seconds, and B, which
    // reads the published keys from the database, honours the new key's tokens.
    Cmd::new(tollgate_bin())
        .args(["keys", "rotate", "--data-dir"])
        .arg(&g.data)
        .args(["--database-url", &url])
        .run();
    let deadline = Instant::now() + Duration::from_secs(30);
    let rotated = loop {
        let t = token_for(&a, &key, &ask);
        if kid(&t) != kid(&from_a) {
            break t;
        }
        assert!(Instant::now() < deadline, "A still signs with its old key");
        std::thread::sleep(Duration::from_millis(500));
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while fetch(&b.server, &head, Some(&rotated)).status != 200 {
        assert!(Instant::now() < deadline, "B never trusted A's rotated key");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        fetch(&b.server, &head, Some(&from_a)).status,
        200,
        "A's old key still verifies"
    );

    // The audit is one: A lists the token B issued.
    // (The writer writes in batches: wait for these three, not for any three.)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let issued = a.wait_for_audit("tokens", "limit=1000", 1);
        let missing: Vec<Value> = [&from_a, &from_b, &rotated]
            .iter()
            .map(|t| claims(t)["jti"].clone())
            .filter(|jti| !issued.iter().any(|t| &t["jti"] == jti))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{missing:?} not in {issued:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A license deactivated through A gets no new token from B once B's reading of the
    // database's change counter is older than 50 ms (what it keeps in memory is trusted no
    // longer than that). A token already issued lives out its short life.
    let id = deactivate_and_check_refused(&a, &b, &key, &ask);
    assert_eq!(fetch(&b.server, &head, Some(&from_b)).status, 200);

    // And one reactivated through B is honoured by A again.
    set_license_active(&b, &id, true);
    std::thread::sleep(Duration::from_millis(100));
    let (status, answer) = a.tokens(Some(&bearer(&key)), &ask);
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn the_admin_commands_share_the_database_with_the_server() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start(&fx, &g, None, "");
    let admin = |args: &[&str]| {
        Cmd::new(tollgate_bin())
            .args(["admin", "--data-dir"])
            .arg(&g.data)
            .args(args)
    };
    let app_pattern = format!("app/{APP}/*");
    let table = admin(&[
        "product",
        "add",
        "paid",
        "--name",
        "Paid",
        "--ref",
        &app_pattern,
    ])
    .run();
    assert!(
        table.starts_with("SLUG") && table.contains(&app_pattern),
        "{table}"
    );
    let created = admin(&[
        "--json",
        "license",
        "add",
        "--product",
        "paid",
        "--note",
        "cli",
    ])
    .run();
    let created: Value = serde_json::from_str(&created).unwrap();
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    admin(&["account", "add", "carol", "--product", "paid"])
        .stdin(format!("{PASSWORD}\n"))
        .run();

    // What the commands wrote, the running server uses.
    let ask = json!({ "refs": [g.app_ref] });
    assert_eq!(s.tokens(Some(&bearer(key)), &ask).0, 200);
    assert_eq!(s.tokens(Some(&basic("carol", PASSWORD)), &ask).0, 200);

    // The commands write while the server writes too (audit records of a stream of token
    // requests): neither side gets "database is locked".
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = {
        let (stop, addr, auth, ask) = (Arc::clone(&stop), s.server.addr, bearer(key), ask.clone());
        std::thread::spawn(move || {
            let mut issued = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, answer) =
                    http::json(addr, "POST", "/api/v1/tokens", Some(&auth), Some(&ask));
                assert_eq!(status, 200, "{answer}");
                issued += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            issued
        })
    };
    for i in 0..20 {
        admin(&["license", "update", id, "--note", &format!("note {i}")]).run();
        admin(&["product", "update", "paid", "--name", &format!("Paid {i}")]).run();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let issued_meanwhile = loader.join().unwrap();
    assert!(
        (10..900).contains(&issued_meanwhile),
        "{issued_meanwhile} tokens during the writes"
    );
    let log = s.server.log();
    assert!(!log.contains("locked"), "{log}");
    let listed = admin(&["license", "list"]).run();
    let header = listed.lines().next().unwrap_or_default();
    assert!(header.starts_with("ID") && listed.contains(id), "{listed}");
    assert!(!listed.contains(key), "the key is never listed: {listed}");
    // The server keeps licenses and products in memory and reads a counter of changes at most
    // every 50 ms: a change made by another process reaches it within that.
    let reached = || std::thread::sleep(Duration::from_millis(150));
    admin(&["license", "deactivate", id]).run();
    reached();
    let (status, answer) = s.tokens(Some(&bearer(key)), &ask);
    assert_eq!((status, error_type(&answer)), (401, "license-inactive"));
    admin(&["license", "activate", id]).run();
    reached();
    assert_eq!(s.tokens(Some(&bearer(key)), &ask).0, 200);
    let table = admin(&["product", "deactivate", "paid"]).run();
    assert!(table.contains("inactive"), "{table}");
    reached();
    let (_, answer) = s.tokens(Some(&bearer(key)), &ask);
    assert_eq!(answer["denied"][&g.app_ref], "product-inactive", "{answer}");
    admin(&["product", "activate", "paid"]).run();

    // The audit, as the server wrote it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let audit: Vec<Value> = serde_json::from_str(
            &admin(&["--json", "audit", "--license", id, "--limit", "1000"]).run(),
        )
        .unwrap();
        if audit.len() == 2 + issued_meanwhile {
            break;
        }
        assert!(Instant::now() < deadline, "audit records: {audit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Mistakes: a non-zero exit and a message naming what is wrong.
    let err = admin(&["product", "add", "Bad Slug", "--name", "x", "--ref", "x"]).run_fail();
    assert!(err.contains("Bad Slug"), "{err}");
    let err = admin(&["license", "show", "nope"]).run_fail();
    assert!(err.contains("not found"), "{err}");
    let err = admin(&["license", "add", "--product", "nope"]).run_fail();
    assert!(err.contains("nope") && err.contains("not found"), "{err}");
    let err = admin(&["license", "update", id, "--expires", "soon"]).run_fail();
    assert!(err.contains("soon"), "{err}");
    let err = admin(&["account", "add", "dave", "--product", "paid"])
        .stdin("short\n")
        .run_fail();
    assert!(err.contains("8 to 1024"), "{err}");
    let products: Value =
        serde_json::from_str(&admin(&["--json", "product", "list"]).run()).unwrap();
    assert_eq!(products.as_array().unwrap().len(), 1, "{products}");
    let licenses: BTreeMap<String, Value> =
        serde_json::from_str::<Vec<Value>>(&admin(&["--json", "license", "list"]).run())
            .unwrap()
            .into_iter()
            .map(|l| (l["id"].as_str().unwrap().to_owned(), l))
            .collect();
    assert_eq!(licenses.len(), 1);
    assert_eq!(licenses[id]["active"], true);
}
