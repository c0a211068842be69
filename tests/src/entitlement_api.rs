//! The entitlement service's whole HTTP API over real HTTP, on SQLite and on a real PostgreSQL:
//! products, licenses, accounts, tokens, refusals, the audit, flat-manager's `token_subset`,
//! bad input; the entitlements endpoint; and settings that stop the server.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cmd::Cmd;
use crate::fixture::Fixture;
use crate::gated_repo::{APP, FLAT_MANAGER_SECRET, GatedRepo, gated_repo};
use crate::http::{self};
use crate::postgres::Postgres;
use crate::server::tollgate_bin;
use crate::service::{
    ADMIN_TOKEN, OTHER_APP, PASSWORD, Service, basic, bearer, claims, error_type, fetch,
    license_for_paid, signed_token, verify_with_jwks,
};
use crate::tokens;

/// The whole API on one service, subject by subject: each phase leaves what the next ones
/// rely on (the licenses, the tokens issued and counted in the audit).
fn the_whole_api(database_url: Option<&str>) {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start(
        &fx,
        &g,
        database_url,
        "max-failures = 1000\ntoken-ttl = 300",
    );
    let (app_ref, runtime_ref) = (g.app_ref.as_str(), g.runtime_ref.as_str());
    let ask = json!({"refs": [app_ref, runtime_ref, NOPE_REF]});
    products(&s);
    let l = licenses_and_accounts(&s);
    let t = tokens_open_exactly_what_is_licensed(&fx, &g, &s, &l, &ask);
    one_answer_for_every_wrong_credential(&s, &l, &ask);
    refusals_say_why(&s, &l, &ask);
    audit_records_filter_and_page(&s, &l, &t, app_ref);
    flat_managers_token_subset(&s, &t);
    removing(&s, &l, &ask);
    let (key, head) = (&l.key, &t.head);

    // Bad input: the right 4xx, a JSON error, and nothing stored changes.
    let before = s.settled_snapshot();
    bad_input(&s, key, app_ref);
    assert_eq!(s.snapshot(), before, "bad input changed stored data");

    // A restart keeps everything.
    let s = s.restart();
    assert_eq!(s.snapshot(), before, "data lost in a restart");
    let (status, answer) = s.tokens(Some(&bearer(key)), &ask);
    assert_eq!(status, 200, "{answer}");
    let (jwt, _) = signed_token(&answer).unwrap();
    assert_eq!(fetch(&s.server, head, Some(&jwt)).status, 200);
}

/// A gated ref no repository has.
const NOPE_REF: &str = "app/org.example.Nope/x86_64/stable";
/// Tokens the scenario has issued to the license `alice`, and to the account `bob`, when the
/// audit is read.
const ISSUED_TO_LICENSE: usize = 3;
const ISSUED_TO_BOB: usize = 2;

/// What [`licenses_and_accounts`] made.
struct Licensed {
    id: String,
    key: String,
    secret: String,
    other: Value,
    other_key: String,
}

/// The first token, for the license, and what it opened.
struct Issued {
    jwt: String,
    claims: Value,
    head: String,
    commit: String,
}

/// Products: made, refused twice, listed, renamed, not found.
fn products(s: &Service) {
    let paid = s.admin_ok(
        201,
        "POST",
        "products",
        Some(json!({"slug": "paid", "name": "Paid", "refs": [format!("app/{APP}/*")]})),
    );
    assert_eq!(paid["refs"], json!([format!("app/{APP}/*")]));
    let (status, err) = s.admin(
        "POST",
        "products",
        Some(json!({"slug": "paid", "name": "Again", "refs": ["x"]})),
    );
    assert_eq!((status, error_type(&err)), (409, "conflict"), "{err}");
    s.admin_ok(
        201,
        "POST",
        "products",
        Some(json!({"slug": "other", "name": "Other", "refs": [format!("app/{OTHER_APP}/*")]})),
    );
    let listed = s.admin_ok(200, "GET", "products", None);
    let slugs: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["other", "paid"]);
    let renamed = s.admin_ok(
        200,
        "PATCH",
        "products/paid",
        Some(json!({"name": "Paid App"})),
    );
    assert_eq!(renamed["name"], "Paid App");
    assert_eq!(s.admin_ok(200, "GET", "products/paid", None), renamed);
    let (status, err) = s.admin("GET", "products/nope", None);
    assert_eq!((status, error_type(&err)), (404, "not-found"), "{err}");
}

/// Licenses and accounts: the key is shown once, and never again.
fn licenses_and_accounts(s: &Service) -> Licensed {
    let license = s.admin_ok(
        201,
        "POST",
        "licenses",
        Some(json!({"products": ["paid"], "note": "alice"})),
    );
    let id = license["id"].as_str().unwrap().to_owned();
    let key = license["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("tg_{id}_")), "{key}");
    let secret = key.rsplit('_').next().unwrap().to_owned();
    let shown = http::request(
        s.server.addr,
        "GET",
        "/api/v1/admin/licenses",
        &[("Authorization", &bearer(ADMIN_TOKEN))],
    );
    let shown = String::from_utf8_lossy(&shown.body).into_owned();
    assert!(shown.contains(&id) && !shown.contains(&secret), "{shown}");
    let other = s.admin_ok(
        201,
        "POST",
        "licenses",
        Some(json!({"products": ["other"]})),
    );
    let other_key = other["key"].as_str().unwrap().to_owned();
    let account = s.admin_ok(
        201,
        "POST",
        "accounts",
        Some(json!({"name": "bob", "password": PASSWORD, "products": ["paid"]})),
    );
    assert!(!account.to_string().contains(PASSWORD), "{account}");
    Licensed {
        id,
        key,
        secret,
        other,
        other_key,
    }
}

/// Tokens: exactly the licensed gated ref, "" for the public one, and why not for the rest;
/// for another license, a withdrawn product, and the account.
fn tokens_open_exactly_what_is_licensed(
    fx: &Fixture,
    g: &GatedRepo,
    s: &Service,
    l: &Licensed,
    ask: &Value,
) -> Issued {
    let (app_ref, runtime_ref, nope_ref) = (g.app_ref.as_str(), g.runtime_ref.as_str(), NOPE_REF);
    let Licensed { key, other_key, .. } = l;
    let (status, answer) = s.tokens(Some(&bearer(key)), ask);
    assert_eq!(status, 200, "{answer}");
    let (jwt, refs) = signed_token(&answer).expect("a signed token");
    assert_eq!(refs, [app_ref]);
    assert_eq!(answer["tokens"][""], json!([runtime_ref]));
    assert_eq!(answer["denied"], json!({ nope_ref: "unknown-ref" }));
    assert_eq!(answer["expires_in"], 300);
    let c = verify_with_jwks(&s.server, &jwt);
    assert_eq!(c["refs"], json!([app_ref]));
    assert_eq!(c["repos"], json!([""]));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
    let head = format!("/refs/heads/{app_ref}");
    let on_disk = std::fs::read(g.repo.join(&head[1..])).unwrap();
    let r = fetch(&s.server, &head, Some(&jwt));
    assert_eq!((r.status, &r.body), (200, &on_disk));
    assert_eq!(fetch(&s.server, &head, None).status, 401);
    let commit = fx.rev_parse(&g.repo, app_ref);
    let object = format!("/objects/{}/{}.commit", &commit[..2], &commit[2..]);
    assert_eq!(fetch(&s.server, &object, Some(&jwt)).status, 200);

    let (status, answer) = s.tokens(Some(&bearer(other_key)), ask);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(signed_token(&answer), None, "{answer}");
    assert_eq!(
        answer["denied"],
        json!({ app_ref: "not-licensed", nope_ref: "unknown-ref" })
    );

    // A withdrawn product opens nothing until it is back.
    let off = s.admin_ok(
        200,
        "PATCH",
        "products/paid",
        Some(json!({"active": false})),
    );
    assert_eq!(off["active"], false);
    let (status, answer) = s.tokens(Some(&bearer(key)), ask);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(signed_token(&answer), None, "{answer}");
    assert_eq!(answer["denied"][app_ref], "product-inactive");
    s.admin_ok(200, "PATCH", "products/paid", Some(json!({"active": true})));

    let (status, answer) = s.tokens(Some(&basic("bob", PASSWORD)), ask);
    assert_eq!(status, 200, "{answer}");
    let (bob_jwt, _) = signed_token(&answer).expect("a token for the account");
    assert_eq!(fetch(&s.server, &head, Some(&bob_jwt)).status, 200);
    Issued {
        jwt,
        claims: c,
        head,
        commit,
    }
}

/// One answer for every wrong credential.
fn one_answer_for_every_wrong_credential(s: &Service, l: &Licensed, ask: &Value) {
    let Licensed {
        id, key, secret, ..
    } = l;
    let mut near_miss = key.clone();
    let last = near_miss.pop().unwrap();
    near_miss.push(if last == 'A' { 'B' } else { 'A' });
    let unknown_id = format!(
        "tg_{}_{secret}",
        if id == "aaaaaaaaaa" {
            "bbbbbbbbbb"
        } else {
            "aaaaaaaaaa"
        }
    );
    let mut wrong_answers = Vec::new();
    for auth in [
        bearer(&near_miss),
        bearer(&unknown_id),
        bearer("nonsense"),
        basic("bob", "not the password"),
        basic("nobody", PASSWORD),
        "Digest x".to_owned(),
    ] {
        let (status, answer) = s.tokens(Some(&auth), ask);
        assert_eq!(status, 401, "{auth}: {answer}");
        wrong_answers.push(answer);
    }
    assert!(
        wrong_answers.iter().all(|a| *a == wrong_answers[0]),
        "{wrong_answers:?}"
    );
    assert_eq!(error_type(&wrong_answers[0]), "invalid-credentials");
    let (status, answer) = s.tokens(None, ask);
    assert_eq!((status, error_type(&answer)), (401, "credentials-required"));
}

/// Deactivated and expired licenses and accounts say so.
fn refusals_say_why(s: &Service, l: &Licensed, ask: &Value) {
    let Licensed { id, key, .. } = l;
    let refused = |auth: &str, code: &str| {
        let (status, answer) = s.tokens(Some(auth), ask);
        assert_eq!((status, error_type(&answer)), (401, code), "{answer}");
        assert!(answer["message"].as_str().unwrap().contains("vendor"));
    };
    let license_path = format!("licenses/{id}");
    let off = s.admin_ok(200, "PATCH", &license_path, Some(json!({"active": false})));
    assert_eq!(off["active"], false);
    refused(&bearer(key), "license-inactive");
    s.admin_ok(
        200,
        "PATCH",
        &license_path,
        Some(json!({"active": true, "expires": "2001-09-09T01:46:40Z"})),
    );
    assert_eq!(
        s.admin_ok(200, "GET", &license_path, None)["expires"],
        1_000_000_000
    );
    refused(&bearer(key), "license-expired");
    // A license about to expire gets tokens that expire with it.
    s.admin_ok(
        200,
        "PATCH",
        &license_path,
        Some(json!({"expires": tokens::now() + 100})),
    );
    let (status, answer) = s.tokens(Some(&bearer(key)), ask);
    assert_eq!(status, 200, "{answer}");
    let expires_in = answer["expires_in"].as_i64().unwrap();
    assert!((90..=100).contains(&expires_in), "{answer}");
    let (short, _) = signed_token(&answer).unwrap();
    let short = claims(&short);
    assert_eq!(
        short["exp"].as_i64().unwrap() - short["iat"].as_i64().unwrap(),
        expires_in
    );
    s.admin_ok(200, "PATCH", &license_path, Some(json!({"expires": null})));
    assert_eq!(s.tokens(Some(&bearer(key)), ask).0, 200);
    s.admin_ok(200, "PATCH", "accounts/bob", Some(json!({"active": false})));
    refused(&basic("bob", PASSWORD), "account-inactive");
    let accounts = s.admin_ok(200, "GET", "accounts", None);
    assert_eq!(accounts[0]["name"], "bob", "{accounts}");
    assert_eq!(accounts[0]["products"], json!(["paid"]));
    assert_eq!(s.admin_ok(200, "GET", "accounts/bob", None), accounts[0]);
    assert!(!accounts.to_string().contains("argon2"), "{accounts}");
    s.admin_ok(
        200,
        "PATCH",
        "accounts/bob",
        Some(json!({"active": true, "password": "a new password for bob"})),
    );
    let (status, answer) = s.tokens(Some(&basic("bob", PASSWORD)), ask);
    assert_eq!((status, error_type(&answer)), (401, "invalid-credentials"));
    assert_eq!(
        s.tokens(Some(&basic("bob", "a new password for bob")), ask)
            .0,
        200
    );
}

/// The audit records, with filters and paging.
fn audit_records_filter_and_page(s: &Service, l: &Licensed, t: &Issued, app_ref: &str) {
    let (id, c, commit) = (&l.id, &t.claims, &t.commit);
    let issued = s.wait_for_audit("tokens", &format!("license={id}"), ISSUED_TO_LICENSE);
    assert_eq!(issued.len(), ISSUED_TO_LICENSE, "{issued:?}");
    assert!(
        issued.iter().all(|t| t["refs"] == json!([app_ref])),
        "{issued:?}"
    );
    assert!(issued.iter().any(|t| t["jti"] == c["jti"]), "{issued:?}");
    let all = s.wait_for_audit("tokens", "limit=1000", ISSUED_TO_LICENSE + ISSUED_TO_BOB);
    assert_eq!(all.len(), ISSUED_TO_LICENSE + ISSUED_TO_BOB, "{all:?}");
    let downloads = s.wait_for_audit("downloads", &format!("ref={app_ref}"), 1);
    assert_eq!(
        (&downloads[0]["commit"], &downloads[0]["token_id"]),
        (&json!(commit), &c["jti"]),
        "{downloads:?}"
    );
    let first = s.admin_ok(200, "GET", "audit/tokens?limit=1", None);
    let next = first["next"].as_i64().expect("a next page");
    let second = s.admin_ok(
        200,
        "GET",
        &format!("audit/tokens?limit=1&before={next}"),
        None,
    );
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_ne!(first["items"][0]["jti"], second["items"][0]["jti"]);
    let by_ref = s.admin_ok(
        200,
        "GET",
        &format!("audit/tokens?ref={app_ref}&since=2020-01-01T00:00:00Z"),
        None,
    );
    assert_eq!(
        by_ref["items"].as_array().unwrap().len(),
        ISSUED_TO_LICENSE + ISSUED_TO_BOB
    );
}

/// flat-manager's token_subset.
fn flat_managers_token_subset(s: &Service, t: &Issued) {
    let (head, jwt) = (&t.head, &t.jwt);
    let exp = tokens::now() + 3600;
    let parent = tokens::flat_manager(
        FLAT_MANAGER_SECRET,
        &json!({"sub": "", "scope": ["download"], "prefixes": [APP], "repos": [""],
                "exp": exp, "name": "parent"}),
    );
    let subset = |token: &str, body: Value| {
        http::json(
            s.server.addr,
            "POST",
            "/api/v1/token_subset",
            Some(&bearer(token)),
            Some(&body),
        )
    };
    let (status, answer) = subset(
        &parent,
        json!({"sub": "", "scope": ["download"], "duration": 600, "prefixes": [APP],
               "name": "child"}),
    );
    assert_eq!(status, 200, "{answer}");
    let child = answer["token"].as_str().unwrap();
    let child_claims = claims(child);
    assert_eq!(child_claims["name"], "parent/child");
    assert!((child_claims["exp"].as_i64().unwrap() - (tokens::now() + 600)).abs() <= 5);
    assert_eq!(fetch(&s.server, head, Some(child)).status, 200);
    for (why, token, body, status, kind) in [
        (
            "longer than the parent",
            parent.as_str(),
            json!({"sub": "", "scope": ["download"], "duration": 7200, "name": "c"}),
            403,
            "not-entitled",
        ),
        (
            "a wider prefix",
            parent.as_str(),
            json!({"sub": "", "scope": ["download"], "duration": 60, "prefixes": [""],
                   "name": "c"}),
            403,
            "not-entitled",
        ),
        (
            "another scope",
            parent.as_str(),
            json!({"sub": "", "scope": ["upload"], "duration": 60, "name": "c"}),
            403,
            "not-entitled",
        ),
        (
            "a parent that is not one",
            jwt.as_str(),
            json!({"sub": "", "scope": ["download"], "duration": 60, "name": "c"}),
            401,
            "invalid-token",
        ),
    ] {
        let (got, answer) = subset(token, body);
        assert_eq!(
            (got, error_type(&answer)),
            (status, kind),
            "{why}: {answer}"
        );
    }
}

/// Removing: a product a license holds stays; the rest goes once.
fn removing(s: &Service, l: &Licensed, ask: &Value) {
    let Licensed {
        other, other_key, ..
    } = l;
    let (status, err) = s.admin("DELETE", "products/paid", None);
    assert_eq!((status, error_type(&err)), (409, "conflict"), "{err}");
    let other_path = format!("licenses/{}", other["id"].as_str().unwrap());
    assert_eq!(s.admin("DELETE", &other_path, None).0, 204);
    assert_eq!(s.admin("DELETE", &other_path, None).0, 404);
    assert_eq!(s.admin("DELETE", "products/other", None).0, 204);
    assert_eq!(s.admin("DELETE", "accounts/bob", None).0, 204);
    assert_eq!(s.admin("GET", "accounts/bob", None).0, 404);
    let (status, answer) = s.tokens(Some(&basic("bob", "a new password for bob")), ask);
    assert_eq!((status, error_type(&answer)), (401, "invalid-credentials"));
    assert_eq!(
        s.tokens(Some(&bearer(other_key)), ask).0,
        401,
        "a removed license opens nothing"
    );
}

/// Why, method, path, Authorization, body; the status and `error-type` it must get.
type BadRequest<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    Vec<u8>,
    u16,
    &'a str,
);

/// Sends each bad request and checks the status, the JSON error, and its `error-type`.
fn bad_input(s: &Service, key: &str, app_ref: &str) {
    let license = bearer(key);
    let admin = bearer(ADMIN_TOKEN);
    let refs = |refs: Value| json!({ "refs": refs }).to_string().into_bytes();
    let mut huge_refs = b"{\"refs\": [\"".to_vec();
    huge_refs.resize(70 * 1024, b'a');
    huge_refs.extend_from_slice(b"\"]}");
    let mut huge_product = b"{\"slug\": \"x\", \"name\": \"".to_vec();
    huge_product.resize(300 * 1024, b'a');
    huge_product.extend_from_slice(b"\", \"refs\": [\"x\"]}");
    let many: Vec<String> = (0..257)
        .map(|i| format!("app/a{i}/x86_64/stable"))
        .collect();
    let product = |v: Value| v.to_string().into_bytes();
    let subset = |v: Value| v.to_string().into_bytes();

    #[rustfmt::skip]
        let cases: Vec<BadRequest<'_>> = vec![
        ("malformed JSON", "POST", "/api/v1/tokens", Some(&license), b"{\"refs\": [".to_vec(), 400, "bad-request"),
        ("refs not a list", "POST", "/api/v1/tokens", Some(&license), refs(json!(app_ref)), 400, "bad-request"),
        ("refs of numbers", "POST", "/api/v1/tokens", Some(&license), refs(json!([1, 2])), 400, "bad-request"),
        ("repo a number", "POST", "/api/v1/tokens", Some(&license), json!({"refs": [app_ref], "repo": 7}).to_string().into_bytes(), 400, "bad-request"),
        ("an empty body", "POST", "/api/v1/tokens", Some(&license), Vec::new(), 400, "bad-request"),
        ("JSON null", "POST", "/api/v1/tokens", Some(&license), b"null".to_vec(), 400, "bad-request"),
        ("no refs", "POST", "/api/v1/tokens", Some(&license), refs(json!([])), 400, "bad-request"),
        ("257 refs", "POST", "/api/v1/tokens", Some(&license), refs(json!(many)), 400, "bad-request"),
        ("a huge body", "POST", "/api/v1/tokens", Some(&license), huge_refs, 413, "payload-too-large"),
        ("invalid UTF-8", "POST", "/api/v1/tokens", Some(&license), b"{\"refs\": [\"app/\xff\xfe/x86_64/stable\"]}".to_vec(), 400, "bad-request"),
        ("an unknown repo", "POST", "/api/v1/tokens", Some(&license), json!({"refs": [app_ref], "repo": "nope"}).to_string().into_bytes(), 404, "unknown-repo"),
        ("only unknown refs", "POST", "/api/v1/tokens", Some(&license), refs(json!(["app/org.example.Nope/x86_64/stable"])), 404, "unknown-refs"),
        ("an injection-shaped ref", "POST", "/api/v1/tokens", Some(&license), refs(json!(["app/x'; DROP TABLE licenses; --/x86_64/stable"])), 400, "bad-request"),
        ("an injection-shaped repo", "POST", "/api/v1/tokens", Some(&license), json!({"refs": [app_ref], "repo": "' OR 1=1 --"}).to_string().into_bytes(), 404, "unknown-repo"),
        ("a TTL of its own", "POST", "/api/v1/tokens", Some(&license), json!({"refs": [app_ref], "ttl": 315_360_000}).to_string().into_bytes(), 400, "bad-request"),
        ("an injection-shaped key", "POST", "/api/v1/tokens", Some("Bearer tg_' OR '1'='1"), refs(json!([app_ref])), 401, "invalid-credentials"),
        ("GET", "GET", "/api/v1/tokens", Some(&license), Vec::new(), 405, "method-not-allowed"),
        ("a subset for a week-long epoch", "POST", "/api/v1/token_subset", Some(&license), subset(json!({"sub": "", "scope": ["download"], "duration": 1_000_000_000_000_i64, "name": "x"})), 400, "bad-request"),
        ("a subset with a negative duration", "POST", "/api/v1/token_subset", Some(&license), subset(json!({"sub": "", "scope": ["download"], "duration": -5, "name": "x"})), 400, "bad-request"),
        ("a subset with a duration in words", "POST", "/api/v1/token_subset", Some(&license), subset(json!({"sub": "", "scope": ["download"], "duration": "forever", "name": "x"})), 400, "bad-request"),
        ("a subset without a token", "POST", "/api/v1/token_subset", None, subset(json!({"sub": "", "scope": ["download"], "duration": 60, "name": "x"})), 401, "credentials-required"),
        ("a wrong admin token", "GET", "/api/v1/admin/products", Some("Bearer not the admin token at all"), Vec::new(), 401, "admin-unauthorized"),
        ("no admin token", "POST", "/api/v1/admin/products", None, product(json!({"slug": "x", "name": "x", "refs": ["x"]})), 401, "admin-unauthorized"),
        ("a license key as the admin token", "GET", "/api/v1/admin/licenses", Some(&license), Vec::new(), 401, "admin-unauthorized"),
        ("malformed admin JSON", "POST", "/api/v1/admin/products", Some(&admin), b"{\"slug\":".to_vec(), 400, "bad-request"),
        ("a slug of the wrong type", "POST", "/api/v1/admin/products", Some(&admin), product(json!({"slug": 1, "name": "x", "refs": ["x"]})), 400, "bad-request"),
        ("an injection-shaped slug", "POST", "/api/v1/admin/products", Some(&admin), product(json!({"slug": "x'; DROP TABLE products; --", "name": "x", "refs": ["x"]})), 400, "bad-request"),
        ("a product without refs", "POST", "/api/v1/admin/products", Some(&admin), product(json!({"slug": "x", "name": "x", "refs": []})), 400, "bad-request"),
        ("a huge product", "POST", "/api/v1/admin/products", Some(&admin), huge_product, 413, "payload-too-large"),
        ("an invalid UTF-8 product", "POST", "/api/v1/admin/products", Some(&admin), b"{\"slug\": \"x\", \"name\": \"\xc3\x28\", \"refs\": [\"x\"]}".to_vec(), 400, "bad-request"),
        ("an unknown license field", "POST", "/api/v1/admin/licenses", Some(&admin), product(json!({"products": ["paid"], "admin": true})), 400, "bad-request"),
        ("a license for no product", "POST", "/api/v1/admin/licenses", Some(&admin), product(json!({"products": []})), 400, "bad-request"),
        ("a license for an unknown product", "POST", "/api/v1/admin/licenses", Some(&admin), product(json!({"products": ["nope"]})), 404, "not-found"),
        ("a negative expiry", "POST", "/api/v1/admin/licenses", Some(&admin), product(json!({"products": ["paid"], "expires": -5})), 400, "bad-request"),
                ("an expiry in words", "POST", "/api/v1/admin/licenses", Some(&admin), product(json!({"products": ["paid"], "expires": "next tuesday"})), 400, "bad-request"),
        ("an expiry past the year 9999", "POST", "/api/v1/admin/licenses", Some(&admin), product(json!({"products": ["paid"], "expires": 300_000_000_000_i64})), 400, "bad-request"),
        ("a NUL in a slug", "GET", "/api/v1/admin/products/a%00b", Some(&admin), Vec::new(), 404, "not-found"),
        ("a NUL in an account name", "DELETE", "/api/v1/admin/accounts/a%00b", Some(&admin), Vec::new(), 404, "not-found"),
        ("a NUL in an audit filter", "GET", "/api/v1/admin/audit/tokens?license=%00", Some(&admin), Vec::new(), 400, "bad-request"),
        ("an audit ref that is no ref", "GET", "/api/v1/admin/audit/tokens?ref=app/%25", Some(&admin), Vec::new(), 400, "bad-request"),
        ("a note with control characters", "POST", "/api/v1/admin/licenses", Some(&admin), product(json!({"products": ["paid"], "note": "a\u{0}b"})), 400, "bad-request"),
        ("an empty license body", "POST", "/api/v1/admin/licenses", Some(&admin), Vec::new(), 400, "bad-request"),
        ("an unknown license", "PATCH", "/api/v1/admin/licenses/aaaaaaaaaa", Some(&admin), product(json!({"active": false})), 404, "not-found"),
        ("a short password", "POST", "/api/v1/admin/accounts", Some(&admin), product(json!({"name": "eve", "password": "short", "products": ["paid"]})), 400, "bad-request"),
        ("an account name with a colon", "POST", "/api/v1/admin/accounts", Some(&admin), product(json!({"name": "e:ve", "password": PASSWORD, "products": ["paid"]})), 400, "bad-request"),
        ("PUT", "PUT", "/api/v1/admin/products", Some(&admin), product(json!({"slug": "x", "name": "x", "refs": ["x"]})), 405, "method-not-allowed"),
        ("an unknown admin path", "GET", "/api/v1/admin/nothing", Some(&admin), Vec::new(), 404, "not-found"),
        ("an audit limit of 0", "GET", "/api/v1/admin/audit/tokens?limit=0", Some(&admin), Vec::new(), 400, "bad-request"),
        ("an audit limit in words", "GET", "/api/v1/admin/audit/tokens?limit=many", Some(&admin), Vec::new(), 400, "bad-request"),
        ("an unknown audit parameter", "GET", "/api/v1/admin/audit/tokens?user=1", Some(&admin), Vec::new(), 400, "bad-request"),
        ("an audit time in words", "GET", "/api/v1/admin/audit/downloads?since=yesterday", Some(&admin), Vec::new(), 400, "bad-request"),
    ];
    for (why, method, path, auth, body, status, kind) in cases {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = auth {
            headers.push(("Authorization", auth));
        }
        let r = http::request_with_body(s.server.addr, method, path, &headers, &body);
        let answer: Value = serde_json::from_slice(&r.body).unwrap_or_else(|_| {
            panic!(
                "{why}: not a JSON error ({}): {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )
        });
        assert_eq!(
            (r.status, error_type(&answer)),
            (status, kind),
            "{why}: {answer}"
        );
        assert!(
            !answer["message"].as_str().unwrap_or_default().is_empty(),
            "{why}: {answer}"
        );
        assert_eq!(r.header("Content-Type"), Some("application/json"), "{why}");
    }
    let log = s.server.log();
    assert!(
        !log.contains(ADMIN_TOKEN) && !log.contains(key),
        "secrets in the log:\n{log}"
    );
}

#[test]
fn the_whole_api_on_sqlite() {
    the_whole_api(None);
}

#[test]
fn the_whole_api_on_postgresql() {
    let postgres = Postgres::start();
    let url = postgres.database("tollgate");
    the_whole_api(Some(&url));
}

#[test]
fn bad_entitlement_settings_stop_the_server_with_a_reason() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    for (settings, env_token, expected) in [
        ("token-ttl = 10", None, "token-ttl"),
        ("token-ttl = 99999999", None, "token-ttl"),
        ("max-failures = 0", None, "max-failures"),
        ("tokenttl = 5", None, "tokenttl"),
        ("", Some("short"), "at least 16 characters"),
    ] {
        let config = fx.join("bad.toml");
        std::fs::write(&config, format!("[entitlements]\n{settings}\n")).unwrap();
        let mut cmd = Cmd::new(tollgate_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--repo"])
            .arg(&g.repo)
            .arg("--data-dir")
            .arg(&g.data)
            .arg("--config")
            .arg(&config)
            .envs(fx.env());
        if let Some(token) = env_token {
            cmd = cmd.env("TOLLGATE_ADMIN_TOKEN", token);
        }
        let err = cmd.timeout(Duration::from_secs(30)).run_fail();
        assert!(err.contains(expected), "{settings:?}: {err}");
    }
}

#[test]
fn the_entitlements_endpoint_says_what_a_credential_opens_and_nothing_to_others() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start(&fx, &g, None, "");
    let key = license_for_paid(&s);
    let ask = |authorization: Option<&str>| {
        http::json(
            s.server.addr,
            "GET",
            "/api/v1/entitlements",
            authorization,
            None,
        )
    };
    let (status, answer) = ask(Some(&bearer(&key)));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({
            "kind": "license",
            "products": [{"slug": "paid", "name": "Paid", "refs": [format!("app/{APP}/*")], "active": true}],
            "expires": null,
        })
    );
    let (status, answer) = ask(None);
    assert_eq!(
        (status, &answer["error-type"]),
        (401, &json!("credentials-required"))
    );
    let (status, answer) = ask(Some(&bearer("tg_0000000000000000_notakey")));
    assert_eq!(
        (status, &answer["error-type"]),
        (401, &json!("invalid-credentials"))
    );
    let (status, answer) = ask(Some(&basic("nobody", PASSWORD)));
    assert_eq!(
        (status, &answer["error-type"]),
        (401, &json!("invalid-credentials"))
    );

    // An account shows its name; a revoked license says so.
    s.admin_ok(
        201,
        "POST",
        "accounts",
        Some(json!({"name": "alice", "password": PASSWORD, "products": ["paid"]})),
    );
    let (status, answer) = ask(Some(&basic("alice", PASSWORD)));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (&answer["kind"], &answer["account"]),
        (&json!("account"), &json!("alice"))
    );
    let id = s.admin_ok(200, "GET", "licenses", None)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.admin_ok(
        200,
        "PATCH",
        &format!("licenses/{id}"),
        Some(json!({"active": false})),
    );
    let (status, answer) = ask(Some(&bearer(&key)));
    assert_eq!(
        (status, &answer["error-type"]),
        (401, &json!("license-inactive"))
    );

    let (status, _) = http::json(
        s.server.addr,
        "POST",
        "/api/v1/entitlements",
        None,
        Some(&json!({})),
    );
    assert_eq!(status, 405);
    // Checking issues nothing.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        s.admin_ok(200, "GET", "audit/tokens?limit=10", None)["items"],
        json!([])
    );
}
