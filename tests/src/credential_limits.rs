//! The failure limiter and timing against someone guessing credentials: per address, per
//! account, never locking a license key's owner out, and unknown ids that cost what wrong
//! secrets cost.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use serde_json::{Value, json};

use crate::fixture::Fixture;
use crate::gated_repo::gated_repo;
use crate::http::{self, Response};
use crate::service::{
    ADMIN_TOKEN, PASSWORD, Service, account_for_paid, basic, bearer, error_type, license_for_paid,
    signed_token,
};

/// A client at its own loopback address.
fn client(n: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
}

fn tokens_from(s: &Service, source: Option<IpAddr>, authorization: &str, body: &Value) -> Response {
    http::request_with_body_from(
        source,
        s.server.addr,
        "POST",
        "/api/v1/tokens",
        &[
            ("Authorization", authorization),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

fn assert_limited(r: &Response, window: u64) {
    assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    let answer: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(error_type(&answer), "too-many-failures");
    let retry: u64 = r
        .header("Retry-After")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=window).contains(&retry), "Retry-After: {retry}");
}

#[test]
fn the_limiter_stops_guessing_per_address_and_per_account() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start(&fx, &g, None, "max-failures = 3\nfailure-window = 60");
    let key = license_for_paid(&s);
    let second = s.admin_ok(201, "POST", "licenses", Some(json!({"products": ["paid"]})));
    let second_key = second["key"].as_str().unwrap().to_owned();
    let ask = json!({ "refs": [g.app_ref] });
    let random_key = |n: u8| {
        format!(
            "tg_{}_{}",
            "a".repeat(9) + "b",
            "x".repeat(42) + &n.to_string()
        )
    };

    // One address guessing: three wrong guesses, then even the right key is refused there, and
    // only there.
    for n in 0..3 {
        assert_eq!(
            tokens_from(&s, client(2), &bearer(&random_key(n)), &ask).status,
            401
        );
    }
    assert_limited(&tokens_from(&s, client(2), &bearer(&key), &ask), 60);
    assert_eq!(tokens_from(&s, client(3), &bearer(&key), &ask).status, 200);
    let admin_from = |n: u8, token: &str| {
        http::request_with_body_from(
            client(n),
            s.server.addr,
            "GET",
            "/api/v1/admin/products",
            &[("Authorization", &bearer(token))],
            b"",
        )
    };
    assert_eq!(
        admin_from(2, ADMIN_TOKEN).status,
        200,
        "customers' failures do not lock out the admin API"
    );

    // Guesses sent all at once are not all checked: the limiter engages within about
    // max-failures of them, whatever the concurrency.
    let guesses: Vec<u16> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..40u8)
            .map(|n| {
                let (s, ask) = (&s, &ask);
                scope.spawn(move || {
                    // Each guess at a license id of its own: only the address limits them.
                    let id = format!(
                        "zzzzzzzz{}{}",
                        char::from(b'a' + n / 26),
                        char::from(b'a' + n % 26)
                    );
                    let guess = format!("tg_{id}_{}", "x".repeat(43));
                    tokens_from(s, client(20), &bearer(&guess), ask).status
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let checked = guesses.iter().filter(|s| **s == 401).count();
    let limited = guesses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked + limited, guesses.len(), "{guesses:?}");
    assert!(
        (3..6).contains(&checked),
        "{checked} of 40 simultaneous guesses were checked"
    );

    // One account's password guessed at from many addresses: that account is refused
    // everywhere, the others not (a license key id is not: see the next test).
    for name in ["carol", "dave"] {
        s.admin_ok(
            201,
            "POST",
            "accounts",
            Some(json!({"name": name, "password": PASSWORD, "products": ["paid"]})),
        );
    }
    for n in 4..7 {
        assert_eq!(
            tokens_from(&s, client(n), &basic("carol", "a wrong guess"), &ask).status,
            401
        );
    }
    assert_limited(
        &tokens_from(&s, client(7), &basic("carol", PASSWORD), &ask),
        60,
    );
    assert_eq!(
        tokens_from(&s, client(7), &basic("dave", PASSWORD), &ask).status,
        200
    );
    assert_eq!(
        tokens_from(&s, client(7), &bearer(&second_key), &ask).status,
        200
    );

    // Wrong admin tokens count too, apart from customers' failures.
    for _ in 0..3 {
        assert_eq!(
            admin_from(8, "a wrong admin token, long enough").status,
            401
        );
    }
    assert_limited(&admin_from(8, ADMIN_TOKEN), 60);
    assert_eq!(admin_from(9, ADMIN_TOKEN).status, 200);
    assert_eq!(
        tokens_from(&s, client(8), &bearer(&second_key), &ask).status,
        200,
        "admin failures do not lock out customers"
    );
}

#[test]
fn wrong_secrets_for_a_license_key_id_do_not_lock_its_owner_out() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start(&fx, &g, None, "max-failures = 3\nfailure-window = 60");
    let key = license_for_paid(&s);
    let ask = json!({ "refs": [g.app_ref] });
    // tg_<id>_<secret>: the id is no secret (it shows in the audit and to support), the secret
    // has 256 bits.
    let (id, secret) = key
        .strip_prefix("tg_")
        .and_then(|rest| rest.split_once('_'))
        .expect("tg_ID_SECRET");
    let guess = |n: usize| {
        let mut wrong: Vec<u8> = secret.bytes().collect();
        let last = wrong.len() - 1 - n % wrong.len();
        wrong[last] = if wrong[last] == b'A' { b'B' } else { b'A' };
        format!("tg_{id}_{}", String::from_utf8(wrong).unwrap())
    };

    // Many wrong secrets for that id from one address: that address is refused...
    for n in 0..3 {
        assert_eq!(
            tokens_from(&s, client(2), &bearer(&guess(n)), &ask).status,
            401
        );
    }
    for n in 3..10 {
        assert_limited(&tokens_from(&s, client(2), &bearer(&guess(n)), &ask), 60);
    }
    assert_limited(&tokens_from(&s, client(2), &bearer(&key), &ask), 60);
    // ...and from a few more, each under its own limit.
    for n in 3..6u8 {
        for m in 0..2 {
            let r = tokens_from(&s, client(n), &bearer(&guess(usize::from(n) * 2 + m)), &ask);
            assert_eq!(r.status, 401);
        }
    }
    // The owner, elsewhere, still gets tokens.
    let r = tokens_from(&s, client(1), &bearer(&key), &ask);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let answer: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(signed_token(&answer).expect("a token").1, [g.app_ref]);
}

/// The median of `samples`.
fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// How `a` and `b` compare in time, measured in pairs run back to back (in alternating order),
/// so that the machine's load, which comes and goes over seconds here, falls on both sides of
/// each pair alike: the median time of each, and the median of the pairs' differences relative
/// to the median time. Timing differences the server leaks show up in that last figure.
fn paired_timing(pairs: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64, f64) {
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        f();
        start.elapsed().as_secs_f64() * 1e6
    };
    let (mut ta, mut tb, mut differences) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..pairs {
        let (x, y) = if i % 2 == 0 {
            let x = time(&mut a);
            (x, time(&mut b))
        } else {
            let y = time(&mut b);
            (time(&mut a), y)
        };
        ta.push(x);
        tb.push(y);
        differences.push(x - y);
    }
    let (ma, mb) = (median(ta), median(tb));
    (ma, mb, median(differences) / ma.min(mb))
}

#[test]
fn unknown_ids_and_wrong_secrets_take_the_same_time() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start(&fx, &g, None, "max-failures = 1000000");
    let key = license_for_paid(&s);
    account_for_paid(&s);
    let ask = json!({ "refs": [g.app_ref] });
    let (id, secret) = key["tg_".len()..].split_once('_').unwrap();
    let mut wrong_secret = format!("tg_{id}_{secret}");
    wrong_secret.pop();
    wrong_secret.push(if secret.ends_with('A') { 'B' } else { 'A' });
    let unknown_id = format!(
        "tg_{}_{secret}",
        if id == "zzzzzzzzzz" {
            "yyyyyyyyyy"
        } else {
            "zzzzzzzzzz"
        }
    );
    let refused = |auth: &str| {
        let (status, answer) = s.tokens(Some(auth), &ask);
        assert_eq!(status, 401, "{answer}");
    };
    // The same query either way: a license id is looked up by its index, then the secret's hash
    // is compared in constant time (or a stand-in's, when the id is unknown). A test cannot see
    // a difference: pairs a fifth apart would be plain over 400 of them.
    let (known, unknown, apart) = paired_timing(
        400,
        || refused(&bearer(&wrong_secret)),
        || refused(&bearer(&unknown_id)),
    );
    assert!(
        apart.abs() <= 0.2,
        "a wrong secret takes {known:.0} µs (median), an unknown id {unknown:.0} µs: pairs differ \
         by {:.0}%",
        apart * 100.0
    );
    // The same through Basic credentials on a gated file, the way an ostree remote's URL sends
    // a key: nothing remembered for a wrong one, the same lookup and compare.
    let commit = fx.rev_parse(&g.repo, &g.app_ref);
    let file = format!("/objects/{}/{}.commit", &commit[..2], &commit[2..]);
    let refused_file = |key: &str| {
        let auth = basic("customer", key);
        let r = http::request(s.server.addr, "GET", &file, &[("Authorization", &auth)]);
        assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    };
    let (known, unknown, apart) = paired_timing(
        400,
        || refused_file(&wrong_secret),
        || refused_file(&unknown_id),
    );
    assert!(
        apart.abs() <= 0.2,
        "through Basic on a gated file, a wrong secret takes {known:.0} µs (median), an unknown \
         id {unknown:.0} µs: pairs differ by {:.0}%",
        apart * 100.0
    );
    // Accounts: an unknown name costs a password hash too, so it is not told by its speed.
    // Without the stand-in hash it would answer in a tenth of the time (pairs ~90% apart).
    let (known, unknown, apart) = paired_timing(
        40,
        || refused(&basic("bob", "not the password")),
        || refused(&basic("nobody", "not the password")),
    );
    assert!(
        apart.abs() <= 0.3,
        "a wrong password takes {known:.0} µs (median), an unknown account {unknown:.0} µs: \
         pairs differ by {:.0}%",
        apart * 100.0
    );
}

#[test]
fn wrong_credentials_at_the_entitlements_endpoint_count_towards_the_limit() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start(&fx, &g, None, "max-failures = 2\nfailure-window = 60");
    let key = license_for_paid(&s);
    let ask = |authorization: &str| {
        http::json(
            s.server.addr,
            "GET",
            "/api/v1/entitlements",
            Some(authorization),
            None,
        )
        .0
    };
    assert_eq!(ask(&bearer("tg_0000000000000000_notakey")), 401);
    assert_eq!(ask(&bearer("tg_0000000000000000_notakey")), 401);
    // Past the limit even the right key waits, here and at /api/v1/tokens.
    assert_eq!(ask(&bearer(&key)), 429);
    let (status, _) = s.tokens(Some(&bearer(&key)), &json!({"refs": [g.app_ref]}));
    assert_eq!(status, 429);
}
