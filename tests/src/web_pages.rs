//! The customers' web pages under `/account/`: signing in with an account in a real Chromium,
//! the portal's content, and what the pages do with forged, replayed and malformed requests.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::browser::Browser;
use crate::fixture::Fixture;
use crate::gated_repo::APP;
use crate::http::{self, Response};
use crate::pages::{
    form_token, portal, portal_csrf, post_form, set_cookie, sign_in, signed_in, started, text,
};
use crate::service::{PASSWORD, Service, basic};

#[test]
fn an_account_signs_in_redeems_a_license_and_signs_out_in_chromium() {
    let fx = Fixture::new();
    let (g, s) = started(&fx, "", "");
    // A download by the account, which the portal lists.
    let commit = fx.rev_parse(&g.repo, &g.app_ref);
    let object = format!("/objects/{}/{}.commit", &commit[..2], &commit[2..]);
    let r = http::request(
        s.server.addr,
        "GET",
        &object,
        &[("Authorization", &basic("bob", PASSWORD))],
    );
    assert_eq!(r.status, 200);
    // A license for another product, to redeem in the portal.
    s.admin_ok(
        201,
        "POST",
        "products",
        Some(json!({"slug": "extra", "name": "Extra", "refs": ["app/org.example.Extra/*"]})),
    );
    let extra = s.admin_ok(
        201,
        "POST",
        "licenses",
        Some(json!({"products": ["extra"]})),
    );

    let browser = Browser::start(&fx);
    let root = s.server.url();
    browser.goto(&format!("{root}account/"));
    browser.wait_for_url("/account/sign-in");
    assert!(browser.text().contains("Sign in"), "{}", browser.text());
    let inputs = browser.inputs();
    assert_eq!(inputs.len(), 2, "{inputs:?}");
    assert!(inputs.iter().all(|(_, labelled)| *labelled), "{inputs:?}");
    browser.screenshot("sign-in");

    // A wrong password: the page says so, and keeps the name typed.
    browser.fill("Account name", "bob");
    browser.fill("Password", "not the password");
    browser.press("Sign in");
    browser.wait_for_text("Wrong account name or password.");
    assert!(browser.source().contains("value=\"bob\""));
    browser.screenshot("sign-in-wrong-password");

    browser.fill("Password", PASSWORD);
    browser.press("Sign in");
    browser.wait_for_url("/account/");
    let shown = browser.text();
    assert!(shown.contains("bob"), "{shown}");
    assert!(shown.contains("Paid"), "{shown}");
    assert!(shown.contains(&format!("app/{APP}/*")), "{shown}");
    // The download shows once the audit has written it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !browser.text().contains(&g.app_ref) {
        assert!(
            Instant::now() < deadline,
            "the portal does not list the download of {}:\n{}",
            g.app_ref,
            browser.text()
        );
        std::thread::sleep(Duration::from_millis(200));
        browser.goto(&format!("{root}account/"));
    }
    assert!(browser.text().contains(&commit[..12]), "{}", browser.text());
    let inputs = browser.inputs();
    assert!(
        !inputs.is_empty() && inputs.iter().all(|(_, labelled)| *labelled),
        "{inputs:?}"
    );
    browser.fill("License key", extra["key"].as_str().unwrap());
    browser.press("Redeem");
    browser.wait_for_text("The license is redeemed");
    assert!(browser.text().contains("Extra"), "{}", browser.text());
    assert!(
        browser.text().contains(extra["id"].as_str().unwrap()),
        "{}",
        browser.text()
    );
    browser.screenshot("portal");

    browser.press("Sign out");
    browser.wait_for_url("/account/sign-in");
    browser.goto(&format!("{root}account/"));
    assert!(
        browser.current_url().ends_with("/account/sign-in"),
        "signed out, the portal still opened: {}",
        browser.current_url()
    );
}

#[test]
fn sessions_are_cookies_a_script_cannot_read_and_end_when_the_account_does() {
    let fx = Fixture::new();
    let (_g, s) = started(&fx, "", "");
    let r = sign_in(&s, "bob", PASSWORD);
    let (session, line) = set_cookie(&r, "tollgate_session").expect("a session cookie");
    for part in ["HttpOnly", "SameSite=Lax", "Path=/account", "Max-Age=43200"] {
        assert!(line.contains(part), "{line}");
    }
    assert!(!line.contains("Secure"), "Secure over plain HTTP: {line}");
    assert_eq!(portal(&s, &session).status, 200);
    // Another value, or a made-up one, opens nothing.
    let last = if session.ends_with('A') { 'B' } else { 'A' };
    let near = format!("{}{last}", &session[..42]);
    for other in ["", "x", &session[1..], &near] {
        let r = portal(&s, other);
        assert_eq!(r.status, 303, "{other}");
        assert_eq!(r.header("location"), Some("/account/sign-in"));
    }
    // The account deactivated: its session opens nothing from then on.
    s.admin_ok(200, "PATCH", "accounts/bob", Some(json!({"active": false})));
    assert_eq!(portal(&s, &session).status, 303);
    // A deactivated account cannot sign in, and is told why.
    let r = sign_in(&s, "bob", PASSWORD);
    assert_eq!(r.status, 403, "{}", text(&r));
    assert!(
        text(&r).contains("This account has been deactivated"),
        "{}",
        text(&r)
    );
    assert!(set_cookie(&r, "tollgate_session").is_none());
}

#[test]
fn behind_https_the_session_cookie_is_secure() {
    let fx = Fixture::new();
    let (_g, s) = started(&fx, "public-url = \"https://apps.example.com/store/\"", "");
    let r = http::get(s.server.addr, "/account/sign-in");
    let (token, line) = set_cookie(&r, "tollgate_form").expect("a form cookie");
    assert!(
        line.contains("Secure") && line.contains("Path=/store/account"),
        "{line}"
    );
    // Links and forms name the public path.
    assert!(
        text(&r).contains("action=\"/store/account/sign-in\""),
        "{}",
        text(&r)
    );
    let r = post_form(
        &s,
        "/account/sign-in",
        &format!("tollgate_form={token}"),
        &format!(
            "csrf={token}&name=bob&password={}",
            PASSWORD.replace(' ', "+")
        ),
    );
    assert_eq!(r.header("location"), Some("/store/account/"));
    let (_, line) = set_cookie(&r, "tollgate_session").expect("a session cookie");
    assert!(line.contains("Secure"), "{line}");
}

#[test]
fn forms_without_their_csrf_token_change_nothing() {
    let fx = Fixture::new();
    let (_g, s) = started(&fx, "", "");
    let right = format!("name=bob&password={}", PASSWORD.replace(' ', "+"));
    let token = form_token(&s);
    let other = form_token(&s);
    assert_ne!(token, other, "two browsers got the same form token");
    for (cookie, body) in [
        // No token anywhere, as a form posted from another site.
        (String::new(), right.clone()),
        // The cookie, and no token in the form.
        (format!("tollgate_form={token}"), right.clone()),
        // Another browser's token.
        (
            format!("tollgate_form={token}"),
            format!("csrf={other}&{right}"),
        ),
        // A token in the form, and no cookie.
        (String::new(), format!("csrf={token}&{right}")),
    ] {
        let r = post_form(&s, "/account/sign-in", &cookie, &body);
        assert_eq!(r.status, 403, "{cookie} {body}: {}", text(&r));
        assert!(text(&r).contains("This form has expired"), "{}", text(&r));
        assert!(set_cookie(&r, "tollgate_session").is_none());
    }
    // Signing out takes the session's own token: without it, the session goes on.
    let session = signed_in(&s, "bob", PASSWORD);
    let cookie = format!("tollgate_session={session}");
    for body in ["", &format!("csrf={token}")] {
        let r = post_form(&s, "/account/sign-out", &cookie, body);
        assert_eq!(r.status, 403, "{body}: {}", text(&r));
    }
    assert_eq!(portal(&s, &session).status, 200);
    let page = text(&portal(&s, &session));
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the sign-out form's token");
    let r = post_form(&s, "/account/sign-out", &cookie, &format!("csrf={csrf}"));
    assert_eq!(r.status, 303);
    let (cleared, line) = set_cookie(&r, "tollgate_session").expect("the cookie cleared");
    assert!(cleared.is_empty() && line.contains("Max-Age=0"), "{line}");
    // The session is over on the server too, not only in this browser.
    assert_eq!(portal(&s, &session).status, 303);
}

#[test]
fn sign_in_failures_count_towards_the_limit() {
    let fx = Fixture::new();
    let (g, s) = started(&fx, "", "max-failures = 2\nfailure-window = 60");
    let token = form_token(&s);
    let cookie = format!("tollgate_form={token}");
    for _ in 0..2 {
        let r = post_form(
            &s,
            "/account/sign-in",
            &cookie,
            &format!("csrf={token}&name=bob&password=wrong"),
        );
        assert_eq!(r.status, 401, "{}", text(&r));
        assert!(text(&r).contains("Wrong account name or password."));
    }
    // Now the right password is refused too, from this address, and the page says for how
    // long; the token endpoint counts the same failures.
    let r = post_form(
        &s,
        "/account/sign-in",
        &cookie,
        &format!(
            "csrf={token}&name=bob&password={}",
            PASSWORD.replace(' ', "+")
        ),
    );
    assert_eq!(r.status, 429, "{}", text(&r));
    assert!(r.header("retry-after").is_some());
    assert!(text(&r).contains("try again in"), "{}", text(&r));
    let (status, _) = http::json(
        s.server.addr,
        "POST",
        "/api/v1/tokens",
        Some(&basic("bob", PASSWORD)),
        Some(&json!({"refs": [g.app_ref]})),
    );
    assert_eq!(status, 429);
}

#[test]
fn wrong_keys_typed_into_the_redeem_form_count_towards_the_limit() {
    let fx = Fixture::new();
    let (_g, s) = started(&fx, "", "max-failures = 2\nfailure-window = 60");
    let key = s.admin_ok(201, "POST", "licenses", Some(json!({"products": ["paid"]})))["key"]
        .as_str()
        .expect("a key")
        .to_owned();
    let session = signed_in(&s, "bob", PASSWORD);
    for wrong in [wrong_secret(&key), "not-a-key".to_owned()] {
        let r = redeem(&s, &session, &wrong);
        assert_eq!(r.status, 400, "{}", text(&r));
    }
    // The right key is refused now, from this address, and is still free to redeem later.
    let r = redeem(&s, &session, &key);
    assert_eq!(r.status, 429, "{}", text(&r));
    assert!(text(&r).contains("try again in"), "{}", text(&r));
    let id = key.split('_').nth(1).expect("a license id");
    let license = s.admin_ok(200, "GET", &format!("licenses/{id}"), None);
    assert_eq!(license["account"], serde_json::Value::Null, "{license}");
}

#[test]
fn the_pages_answer_bad_input_with_a_page_and_never_5xx() {
    let fx = Fixture::new();
    let (_g, s) = started(&fx, "", "");
    // A vendor's product name with markup in it is shown, not run.
    s.admin_ok(
        200,
        "PATCH",
        "products/paid",
        Some(json!({"name": "<script>alert(1)</script> & \"Pro\""})),
    );
    let session = signed_in(&s, "bob", PASSWORD);
    let page = text(&portal(&s, &session));
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(
        page.contains("&#60;script&#62;alert(1)&#60;/script&#62; &#38; &#34;Pro&#34;"),
        "{page}"
    );

    let token = form_token(&s);
    let cookie = format!("tollgate_form={token}");
    let big = format!("csrf={token}&name=bob&password={}", "x".repeat(20_000));
    let r = post_form(&s, "/account/sign-in", &cookie, &big);
    assert_eq!(r.status, 413, "{}", text(&r));
    assert!(text(&r).contains("at most 16 KiB"), "{}", text(&r));
    let r = http::request_with_body(
        s.server.addr,
        "POST",
        "/account/sign-in",
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        b"{}",
    );
    assert_eq!(r.status, 415, "{}", text(&r));
    // Bytes that are not UTF-8, fields twice, no fields: a page, never a failure.
    for body in [
        &b"csrf=\xff\xfe&name=\xff"[..],
        b"name=a&name=b&password=c&password=d",
        b"",
        b"%%%&&&===",
    ] {
        let r = http::request_with_body(
            s.server.addr,
            "POST",
            "/account/sign-in",
            &[
                ("Cookie", &cookie),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            body,
        );
        assert!(r.status < 500, "{body:?}: {}", r.status);
    }
    for (method, path, status) in [
        ("GET", "/account/nothing", 404),
        ("PUT", "/account/", 405),
        ("DELETE", "/account/sign-in", 405),
        ("GET", "/account/sign-out", 405),
        ("GET", "/account", 303),
    ] {
        let r = http::request(s.server.addr, method, path, &[]);
        assert_eq!(r.status, status, "{method} {path}: {}", text(&r));
        if status != 303 {
            assert!(
                r.header("content-type")
                    .is_some_and(|t| t.starts_with("text/html")),
                "{method} {path}"
            );
        }
    }
    // Cookies of every shape: the sign-in page, never a failure.
    for cookie in [
        "tollgate_session=",
        "tollgate_session",
        "tollgate_session=;;;",
        &format!("tollgate_session={}", "a".repeat(4000)),
        "tollgate_session=\u{e9}",
    ] {
        let r = http::request(s.server.addr, "GET", "/account/", &[("Cookie", cookie)]);
        assert_eq!(r.status, 303, "{cookie:.40}");
    }
    // Every page says it may not be framed or cached, and loads nothing from elsewhere.
    let r = http::get(s.server.addr, "/account/sign-in");
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(
        r.header("content-security-policy").is_some_and(
            |p| p.contains("default-src 'none'") && p.contains("frame-ancestors 'none'")
        ),
        "{:?}",
        r.headers
    );
    let css = http::get(s.server.addr, "/account/style.css");
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
}

fn redeem(s: &Service, session: &str, key: &str) -> Response {
    let csrf = portal_csrf(s, session);
    post_form(
        s,
        "/account/redeem",
        &format!("tollgate_session={session}"),
        &format!("csrf={csrf}&key={key}"),
    )
}

/// Tokens an account's name and password get for `r`: the signed token's refs, and the denials.
fn account_tokens(s: &Service, name: &str, r: &str) -> (Vec<String>, serde_json::Value) {
    let (status, answer) = http::json(
        s.server.addr,
        "POST",
        "/api/v1/tokens",
        Some(&basic(name, PASSWORD)),
        Some(&json!({"refs": [r]})),
    );
    assert_eq!(status, 200, "{answer}");
    let refs = crate::service::signed_token(&answer).map_or_else(Vec::new, |(_, refs)| refs);
    (refs, answer["denied"].clone())
}

#[test]
fn a_license_key_redeemed_into_an_account_opens_what_it_holds() {
    let fx = Fixture::new();
    let (g, s) = started(&fx, "", "");
    s.admin_ok(
        201,
        "POST",
        "products",
        Some(json!({"slug": "extra", "name": "Extra", "refs": ["app/org.example.Extra/*"]})),
    );
    s.admin_ok(
        201,
        "POST",
        "accounts",
        Some(json!({"name": "carol", "password": PASSWORD, "products": ["extra"]})),
    );
    let license = s.admin_ok(201, "POST", "licenses", Some(json!({"products": ["paid"]})));
    let (id, key) = (
        license["id"].as_str().unwrap(),
        license["key"].as_str().unwrap(),
    );
    let (refs, denied) = account_tokens(&s, "carol", &g.app_ref);
    assert!(
        refs.is_empty() && denied[&g.app_ref] == "not-licensed",
        "{denied}"
    );

    let carol = signed_in(&s, "carol", PASSWORD);
    let page = text(&portal(&s, &carol));
    assert!(page.contains("Extra") && !page.contains("Paid"), "{page}");
    assert!(
        page.contains("No license is redeemed into this account."),
        "{page}"
    );
    // Without the portal's token, nothing is redeemed.
    let r = post_form(
        &s,
        "/account/redeem",
        &format!("tollgate_session={carol}"),
        &format!("key={key}"),
    );
    assert_eq!(r.status, 403, "{}", text(&r));
    let r = redeem(&s, &carol, key);
    assert_eq!(r.status, 200, "{}", text(&r));
    let page = text(&r);
    assert!(page.contains("The license is redeemed"), "{page}");
    assert!(
        page.contains(id) && page.contains("Paid") && page.contains("active"),
        "{page}"
    );
    assert!(!page.contains(key), "the portal shows the key: {page}");
    let shown = s.admin_ok(200, "GET", &format!("licenses/{id}"), None);
    assert_eq!(shown["account"], "carol", "{shown}");
    // The account's credentials now open what the license holds.
    let (refs, _) = account_tokens(&s, "carol", &g.app_ref);
    assert_eq!(refs, std::slice::from_ref(&g.app_ref));

    // Once only: again here, or into another account.
    let r = redeem(&s, &carol, key);
    assert_eq!(r.status, 409, "{}", text(&r));
    assert!(
        text(&r).contains("already redeemed into this account"),
        "{}",
        text(&r)
    );
    let bob = signed_in(&s, "bob", PASSWORD);
    let r = redeem(&s, &bob, key);
    assert_eq!(r.status, 409, "{}", text(&r));
    assert!(
        text(&r).contains("redeemed into another account"),
        "{}",
        text(&r)
    );

    // Keys that are not one, and a revoked one, say so; wrong ones count as failures.
    for (typed, status, said) in [
        ("", 400, "Give a license key."),
        (
            "not-a-key",
            400,
            "That is not a license key of this service",
        ),
        (
            &wrong_secret(key),
            400,
            "That is not a license key of this service",
        ),
    ] {
        let r = redeem(&s, &bob, typed);
        assert_eq!(r.status, status, "{typed}: {}", text(&r));
        assert!(text(&r).contains(said), "{typed}: {}", text(&r));
    }
    let revoked = s.admin_ok(201, "POST", "licenses", Some(json!({"products": ["paid"]})));
    s.admin_ok(
        200,
        "PATCH",
        &format!("licenses/{}", revoked["id"].as_str().unwrap()),
        Some(json!({"active": false})),
    );
    let r = redeem(&s, &bob, revoked["key"].as_str().unwrap());
    assert_eq!(r.status, 403, "{}", text(&r));
    assert!(
        text(&r).contains("This license has been deactivated"),
        "{}",
        text(&r)
    );

    // Revoked after it was redeemed: the account no longer opens it, and the portal says so.
    s.admin_ok(
        200,
        "PATCH",
        &format!("licenses/{id}"),
        Some(json!({"active": false})),
    );
    let (refs, denied) = account_tokens(&s, "carol", &g.app_ref);
    assert!(
        refs.is_empty() && denied[&g.app_ref] == "not-licensed",
        "{denied}"
    );
    assert!(text(&portal(&s, &carol)).contains("revoked"));
}

/// `key` with another secret: the same id, wrong.
fn wrong_secret(key: &str) -> String {
    let (head, secret) = key.rsplit_once('_').unwrap();
    let flipped: String = secret
        .chars()
        .map(|c| if c == 'a' { 'b' } else { 'a' })
        .collect();
    format!("{head}_{flipped}")
}

#[test]
fn with_sign_up_on_anyone_makes_an_account_a_few_per_address() {
    let fx = Fixture::new();
    let (g, s) = started(
        &fx,
        "[web]\nsign-up = true",
        "max-failures = 3\nfailure-window = 60",
    );
    let r = http::get(s.server.addr, "/account/sign-in");
    assert!(
        text(&r).contains("/account/create"),
        "no sign-up link: {}",
        text(&r)
    );
    let create = |name: &str, password: &str, again: &str| {
        let r = http::get(s.server.addr, "/account/create");
        assert_eq!(r.status, 200, "{}", text(&r));
        let (token, _) = set_cookie(&r, "tollgate_form").expect("a form cookie");
        post_form(
            &s,
            "/account/create",
            &format!("tollgate_form={token}"),
            &format!("csrf={token}&name={name}&password={password}&again={again}"),
        )
    };
    for (name, password, again, status, said) in [
        (
            "dora",
            "long-enough-1",
            "long-enough-2",
            400,
            "The two passwords differ.",
        ),
        ("dora", "short", "short", 400, "8 to 1024 bytes"),
        (
            "bob",
            "long-enough-1",
            "long-enough-1",
            409,
            "That name is taken",
        ),
        (
            "a+b",
            "long-enough-1",
            "long-enough-1",
            400,
            "is not an account name",
        ),
    ] {
        let r = create(name, password, again);
        assert_eq!(r.status, status, "{name}: {}", text(&r));
        assert!(text(&r).contains(said), "{name}: {}", text(&r));
        assert!(set_cookie(&r, "tollgate_session").is_none());
    }
    // Without the form's token, nothing is made.
    let r = post_form(
        &s,
        "/account/create",
        "",
        "name=eve&password=long-enough-1&again=long-enough-1",
    );
    assert_eq!(r.status, 403, "{}", text(&r));

    let r = create("dora", "long-enough-1", "long-enough-1");
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(r.header("location"), Some("/account/"));
    let (session, _) = set_cookie(&r, "tollgate_session").expect("signed in");
    let page = text(&portal(&s, &session));
    assert!(
        page.contains("dora") && page.contains("This account holds no product yet."),
        "{page}"
    );
    // The new account signs in and redeems as any other; it opens nothing before.
    let (status, answer) = http::json(
        s.server.addr,
        "POST",
        "/api/v1/tokens",
        Some(&basic("dora", "long-enough-1")),
        Some(&json!({"refs": [g.app_ref]})),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["denied"][&g.app_ref], "not-licensed");
    // Each account made counts against the address: the third is the last for now.
    for name in ["erin", "fred"] {
        assert_eq!(create(name, "long-enough-1", "long-enough-1").status, 303);
    }
    let r = create("gina", "long-enough-1", "long-enough-1");
    assert_eq!(r.status, 429, "{}", text(&r));
    assert!(r.header("retry-after").is_some());
    let (status, _) = s.admin("GET", "accounts/gina", None);
    assert_eq!(status, 404, "an account was made past the limit");
}

#[test]
fn without_sign_up_accounts_are_the_vendors_and_sessions_end() {
    let fx = Fixture::new();
    let (_g, s) = started(&fx, "[web]\nsession-ttl = 2", "");
    let r = http::get(s.server.addr, "/account/sign-in");
    assert!(!text(&r).contains("/account/create"), "{}", text(&r));
    let r = http::get(s.server.addr, "/account/create");
    assert_eq!(r.status, 404, "{}", text(&r));
    assert!(text(&r).contains("made by the vendor"), "{}", text(&r));
    let r = sign_in(&s, "bob", PASSWORD);
    let (session, line) = set_cookie(&r, "tollgate_session").expect("signed in");
    assert!(line.contains("Max-Age=2"), "{line}");
    assert_eq!(portal(&s, &session).status, 200);
    // The session over (the browser would drop the cookie; the server refuses it anyway).
    std::thread::sleep(std::time::Duration::from_millis(3100));
    let r = portal(&s, &session);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/account/sign-in"));
}

#[test]
fn an_account_is_made_in_chromium_and_a_problem_shows_as_a_page() {
    let fx = Fixture::new();
    let (_g, s) = started(&fx, "[web]\nsign-up = true", "");
    let browser = Browser::start(&fx);
    let root = s.server.url();
    browser.goto(&format!("{root}account/sign-in"));
    browser.wait_for_text("Create one");
    browser.follow("Create one");
    browser.wait_for_url("/account/create");
    let inputs = browser.inputs();
    assert_eq!(inputs.len(), 3, "{inputs:?}");
    assert!(inputs.iter().all(|(_, labelled)| *labelled), "{inputs:?}");
    browser.screenshot("create");
    browser.fill("Account name", "fern");
    browser.fill("Password (8 characters or more)", "long-enough-1");
    browser.fill("Password again", "long-enough-2");
    browser.press("Create the account");
    browser.wait_for_text("The two passwords differ.");
    browser.screenshot("create-passwords-differ");
    browser.fill("Password (8 characters or more)", "long-enough-1");
    browser.fill("Password again", "long-enough-1");
    browser.press("Create the account");
    browser.wait_for_url("/account/");
    browser.wait_for_text("This account holds no product yet.");
    assert!(browser.text().contains("fern"), "{}", browser.text());
    browser.screenshot("portal-new-account");
    // A problem is a page of its own, with a way on.
    browser.goto(&format!("{root}account/buy?product=nope"));
    browser.wait_for_text("Nothing is on sale here for this app");
    browser.screenshot("nothing-on-sale");
}
