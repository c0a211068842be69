//! The order hook (`POST /api/v1/hooks/orders`): a shop's signed order makes a license that a
//! real `flatpak install` then uses, a second order of the same customer extends it, and every
//! hook that is unsigned, late, replayed or wrongly signed leaves the database as it was.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::customer::Setup;
use crate::gated_repo::APP;
use crate::http::{self, Response};
use crate::pages::{portal, signed_in, text};
use crate::service::{PASSWORD, Service, account_holding_other};

const SECRET: &str = "the shop's shared secret, thirty-two characters or more";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
        .try_into()
        .expect("seconds")
}

/// `t=TIME,v1=HMAC-SHA256(secret, "TIME.BODY")`, as Stripe signs its webhooks.
fn signature(secret: &str, time: i64, body: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, format!("{time}.{body}").as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={time},v1={hex}")
}

fn post(s: &Service, signatures: &[&str], body: &str) -> Response {
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend(signatures.iter().map(|v| ("Tollgate-Signature", *v)));
    http::request_with_body(
        s.server.addr,
        "POST",
        "/api/v1/hooks/orders",
        &headers,
        body.as_bytes(),
    )
}

/// What the database holds that an order could change.
fn holdings(s: &Service) -> Value {
    json!({
        "licenses": s.admin_ok(200, "GET", "licenses", None),
        "accounts": s.admin_ok(200, "GET", "accounts", None),
    })
}

fn body_of(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", text(r)))
}

#[test]
fn a_signed_order_makes_a_license_flatpak_installs_with_and_bad_hooks_change_nothing() {
    let t = Setup::with_config("[hooks]\norder-secret-file = \"order-secret\"\n", |fx| {
        let path = fx.join("order-secret");
        std::fs::write(&path, format!("{SECRET}\n")).expect("the secret");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    });
    let s = &t.s;
    account_holding_other(s, "dana");
    let order =
        json!({"id": "ord_1", "email": "erin@example.com", "products": ["paid"], "days": 30})
            .to_string();
    let at = now();
    let good = signature(SECRET, at, &order);

    // Unsigned, signed with another secret, too late, too early, over another body, with a
    // header that is not a signature, or two of them: 401, and nothing changes.
    let before = holdings(s);
    let other_body = order.replace("ord_1", "ord_2");
    let wrong_secret = signature("not the shop's secret, but as long as it", at, &order);
    let late = signature(SECRET, at - 301, &order);
    let early = signature(SECRET, at + 400, &order);
    let garbage = "t=now,v1=zz".to_owned();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![], &order),
        (vec![&wrong_secret], &order),
        (vec![&late], &order),
        (vec![&early], &order),
        (vec![&good], &other_body),
        (vec![&garbage], &order),
        (vec![&good, &good], &order),
    ];
    for (signatures, body) in cases {
        let r = post(s, &signatures, body);
        assert_eq!(r.status, 401, "{signatures:?}: {}", text(&r));
        assert_eq!(
            body_of(&r)["error-type"],
            "invalid-signature",
            "{}",
            text(&r)
        );
    }
    assert_eq!(holdings(s), before, "a refused hook changed the database");
    let r = http::request(s.server.addr, "GET", "/api/v1/hooks/orders", &[]);
    assert_eq!(r.status, 405);

    // Signed right: a license for the order's products and 30 days, its key shown once.
    let r = post(s, &[&good], &order);
    assert_eq!(r.status, 201, "{}", text(&r));
    let made = body_of(&r);
    let key = made["key"].as_str().expect("a key").to_owned();
    let license = made["license"].clone();
    assert_eq!(license["products"], json!(["paid"]));
    assert!(
        license["note"]
            .as_str()
            .is_some_and(|n| n.contains("ord_1") && n.contains("erin@example.com")),
        "{license}"
    );
    let expires = license["expires"].as_i64().expect("an end");
    assert!((expires - (at + 30 * 86_400)).abs() <= 5, "{license}");

    // Replayed: 409, and nothing changes (its window is still open).
    let before = holdings(s);
    let r = post(s, &[&good], &order);
    assert_eq!(r.status, 409, "{}", text(&r));
    assert_eq!(holdings(s), before, "a replayed hook changed the database");

    // An order naming what does not exist: 400, nothing changes, and the id is still free.
    let unknown =
        json!({"id": "ord_x", "email": "erin@example.com", "products": ["nope"]}).to_string();
    let r = post(s, &[&signature(SECRET, now(), &unknown)], &unknown);
    assert_eq!(r.status, 400, "{}", text(&r));
    assert_eq!(holdings(s), before);
    let fixed = unknown.replace("nope", "other");
    let r = post(s, &[&signature(SECRET, now(), &fixed)], &fixed);
    assert_eq!(r.status, 201, "{}", text(&r));

    // The same customer buys the same again: the license runs 30 days longer, no new key.
    let again =
        json!({"id": "ord_2", "email": "erin@example.com", "products": ["paid"], "days": 30})
            .to_string();
    let r = post(s, &[&signature(SECRET, now(), &again)], &again);
    assert_eq!(r.status, 200, "{}", text(&r));
    let extended = body_of(&r);
    assert_eq!(extended["extended"], true);
    assert!(extended.get("key").is_none(), "{extended}");
    assert_eq!(extended["license"]["id"], license["id"]);
    assert_eq!(
        extended["license"]["expires"].as_i64(),
        Some(expires + 30 * 86_400)
    );

    // An order for a signed-in customer's account: the license is in their portal.
    let for_dana = json!({"id": "ord_3", "email": "dana@example.com", "products": ["paid"], "account": "dana"})
        .to_string();
    let r = post(s, &[&signature(SECRET, now(), &for_dana)], &for_dana);
    assert_eq!(r.status, 201, "{}", text(&r));
    let dana_license = body_of(&r)["license"].clone();
    assert_eq!(dana_license["account"], "dana");
    let session = signed_in(s, "dana", PASSWORD);
    let page = text(&portal(s, &session));
    assert!(
        page.contains(dana_license["id"].as_str().expect("an id")),
        "{page}"
    );

    // The key the first order made installs the app with the real flatpak.
    let url = s.server.url();
    t.login(url.trim_end_matches('/'), &key).run();
    t.fx.flatpak_remote_add("shop", &url);
    t.fx.flatpak_install(&t.env(), "shop", APP);
    assert_eq!(t.installed_app(), format!("#!/bin/sh\necho {APP} 2\n"));
}
