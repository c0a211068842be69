//! The web flow (issue: sign in in the browser): the authenticator's `Webflow` with a real
//! `flatpak install`, a real Chromium signing in through the pages, the device credential it
//! leaves, and what the server does with forged, replayed and misdirected requests of the flow.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::cmd::Terminal;
use crate::customer::Setup;
use crate::fixture::Fixture;
use crate::gated_repo::APP;
use crate::http::{self, Response};
use crate::pages::{portal, portal_csrf, post_form, set_cookie, signed_in, started, text};
use crate::service::{
    ADMIN_TOKEN, PASSWORD, Service, account_for_paid, account_holding_other, basic, bearer,
};

/// RFC 7636, appendix B: a verifier and its S256 challenge.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const RETURN: &str = "http://127.0.0.1:4711/done";
const DEVICE: &str = "flatpak on test-box";

fn flow_fields(redirect: &str, state: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("redirect_uri", redirect)
        .append_pair("state", state)
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .append_pair("device", DEVICE)
        .finish()
}

fn authorize_page(s: &Service, session: Option<&str>, redirect: &str, state: &str) -> Response {
    let cookie = session.map(|v| format!("tollgate_session={v}"));
    let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("Cookie", c.as_str())).collect();
    http::request(
        s.server.addr,
        "GET",
        &format!("/account/authorize?{}", flow_fields(redirect, state)),
        &headers,
    )
}

/// The session's CSRF token, from the authorize page it is shown.
fn page_csrf(r: &Response) -> String {
    text(r)
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page's form carries a token")
        .to_owned()
}

fn decide(s: &Service, session: &str, csrf: Option<&str>, decision: &str, state: &str) -> Response {
    let mut body = flow_fields(RETURN, state);
    if let Some(csrf) = csrf {
        body.push_str(&format!("&csrf={csrf}"));
    }
    body.push_str(&format!("&decision={decision}"));
    post_form(
        s,
        "/account/authorize",
        &format!("tollgate_session={session}"),
        &body,
    )
}

/// The code a redirect to the return address carries (and checks the state came back, and
/// the server named itself as the issuer).
fn code_of(r: &Response, state: &str) -> String {
    assert_eq!(r.status, 303, "{}", text(r));
    let location = r.header("location").expect("a Location");
    let url = url::Url::parse(location).expect("an absolute return address");
    assert_eq!(
        format!("{}://{}{}", url.scheme(), url.authority(), url.path()),
        RETURN
    );
    let pairs: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(pairs.get("state").map(String::as_str), Some(state));
    let issuer = pairs.get("iss").expect("an issuer");
    assert!(
        issuer.starts_with("http://127.0.0.1:") && issuer.ends_with('/'),
        "{issuer}"
    );
    pairs.get("code").expect("a code").clone()
}

fn exchange(s: &Service, code: &str, verifier: &str, redirect: &str) -> (u16, Value) {
    http::json(
        s.server.addr,
        "POST",
        "/api/v1/device-credentials",
        None,
        Some(&json!({"code": code, "code_verifier": verifier, "redirect_uri": redirect})),
    )
}

#[test]
fn the_web_flow_gives_a_device_credential_once_per_code_and_sends_browsers_only_to_loopback() {
    let fx = Fixture::new();
    let (g, s) = started(&fx, "", "");

    // The service says it has the flow, and where.
    let (status, ends) = http::json(s.server.addr, "GET", "/api/v1/sign-in", None, None);
    assert_eq!(status, 200, "{ends}");
    assert_eq!(ends["authorize"], "account/authorize");
    assert_eq!(ends["exchange"], "api/v1/device-credentials");

    // No open redirect: a return address that is not a loopback port gets a page, and no
    // Location, signed in or not.
    let session = signed_in(&s, "bob", PASSWORD);
    for bad in [
        "https://127.0.0.1:4711/done",
        "http://evil.example:4711/done",
        "http://localhost:4711/done",
        "http://127.0.0.1:4711/done?then=https://evil.example/",
        "http://127.0.0.1/done",
        "//evil.example/done",
        "",
    ] {
        for who in [None, Some(session.as_str())] {
            let r = authorize_page(&s, who, bad, "st");
            assert_eq!(r.status, 400, "{bad}: {}", text(&r));
            assert_eq!(r.header("location"), None, "{bad}");
            assert!(
                text(&r).contains("This link is not right"),
                "{bad}: {}",
                text(&r)
            );
        }
    }

    // Not signed in: to the sign-in page, which comes back to the same request.
    let r = authorize_page(&s, None, RETURN, "st-1");
    assert_eq!(r.status, 303);
    let to_sign_in = r.header("location").expect("a Location").to_owned();
    assert!(
        to_sign_in.starts_with("/account/sign-in?next=%2Faccount%2Fauthorize%3F"),
        "{to_sign_in}"
    );
    let page = http::get(s.server.addr, &to_sign_in);
    assert_eq!(page.status, 200);
    assert!(text(&page).contains(DEVICE), "{}", text(&page));
    let (token, _) = set_cookie(&page, "tollgate_form").expect("a form cookie");
    let next_path = format!("/account/authorize?{}", flow_fields(RETURN, "st-1"));
    let sign_in_then = |next: &str| {
        post_form(
            &s,
            "/account/sign-in",
            &format!("tollgate_form={token}"),
            &url::form_urlencoded::Serializer::new(String::new())
                .append_pair("csrf", &token)
                .append_pair("name", "bob")
                .append_pair("password", PASSWORD)
                .append_pair("next", next)
                .finish(),
        )
    };
    let r = sign_in_then(&next_path);
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(r.header("location"), Some(next_path.as_str()));
    // A `next` that is not an authorize page of this server, or not one of loopback, leads
    // to the portal and nowhere else.
    for next in [
        "https://evil.example/".to_owned(),
        "//evil.example/account/authorize?x".to_owned(),
        format!(
            "/account/authorize?{}",
            flow_fields("http://evil.example:1/", "st")
        ),
    ] {
        let r = sign_in_then(&next);
        assert_eq!(r.status, 303, "{next}");
        assert_eq!(r.header("location"), Some("/account/"), "{next}");
    }

    // Signed in: the page asks; its form may lead to the return address only.
    let r = authorize_page(&s, Some(&session), RETURN, "st-1");
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(
        text(&r).contains(DEVICE) && text(&r).contains("bob"),
        "{}",
        text(&r)
    );
    let policy = r.header("content-security-policy").unwrap_or_default();
    assert!(
        policy.contains("form-action 'self' http://127.0.0.1:4711;"),
        "{policy}"
    );
    let csrf = page_csrf(&r);

    // Without the form's token, or with another, nothing is given.
    for forged in [None, Some("x".repeat(43))] {
        let r = decide(&s, &session, forged.as_deref(), "allow", "st-1");
        assert_eq!(r.status, 403, "{}", text(&r));
        assert_eq!(r.header("location"), None);
        assert!(text(&r).contains("This form has expired"), "{}", text(&r));
    }
    // Cancel: back with access_denied and no code.
    let r = decide(&s, &session, Some(&csrf), "deny", "st-1");
    assert_eq!(r.status, 303);
    let issuer: String = url::form_urlencoded::byte_serialize(s.server.url().as_bytes()).collect();
    assert_eq!(
        r.header("location"),
        Some(format!("{RETURN}?error=access_denied&state=st-1&iss={issuer}").as_str())
    );

    // A code is taken once: a wrong verifier uses it up, as does the right one after.
    let code = code_of(&decide(&s, &session, Some(&csrf), "allow", "st-1"), "st-1");
    let wrong_verifier = VERIFIER.replace('d', "e");
    let (status, answer) = exchange(&s, &code, &wrong_verifier, RETURN);
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error-type"], "invalid-grant");
    let (status, answer) = exchange(&s, &code, VERIFIER, RETURN);
    assert_eq!(
        (status, answer["error-type"].clone()),
        (400, json!("invalid-grant"))
    );
    // For another return address than it was given for: refused.
    let code = code_of(&decide(&s, &session, Some(&csrf), "allow", "st-2"), "st-2");
    let (status, answer) = exchange(&s, &code, VERIFIER, "http://127.0.0.1:4712/done");
    assert_eq!(
        (status, answer["error-type"].clone()),
        (400, json!("invalid-grant"))
    );
    // Right: a device credential; replayed: refused.
    let code = code_of(&decide(&s, &session, Some(&csrf), "allow", "st-3"), "st-3");
    let (status, made) = exchange(&s, &code, VERIFIER, RETURN);
    assert_eq!(status, 200, "{made}");
    assert_eq!(made["account"], "bob");
    let credential = made["credential"]
        .as_str()
        .expect("a credential")
        .to_owned();
    assert!(credential.starts_with("tgd_"), "{credential}");
    let (status, answer) = exchange(&s, &code, VERIFIER, RETURN);
    assert_eq!(
        (status, answer["error-type"].clone()),
        (400, json!("invalid-grant"))
    );
    let (status, answer) = exchange(&s, "not-a-code", VERIFIER, RETURN);
    assert_eq!(
        (status, answer["error-type"].clone()),
        (400, json!("invalid-grant"))
    );

    // The credential opens what the account holds, as a bearer and as a Basic password.
    let ask = json!({"refs": [g.app_ref]});
    let (status, answer) = s.tokens(Some(&bearer(&credential)), &ask);
    assert_eq!(status, 200, "{answer}");
    assert!(crate::service::signed_token(&answer).is_some(), "{answer}");
    let commit = fx.rev_parse(&g.repo, &g.app_ref);
    let object = format!("/objects/{}/{}.commit", &commit[..2], &commit[2..]);
    let with_basic = || {
        http::request(
            s.server.addr,
            "GET",
            &object,
            &[("Authorization", &basic("device", &credential))],
        )
        .status
    };
    assert_eq!(with_basic(), 200);

    // The portal lists it; a revocation needs the portal's token, and then it opens nothing.
    let portal = portal(&s, &session);
    assert!(text(&portal).contains(DEVICE), "{}", text(&portal));
    let id = made["device"].as_str().expect("a device id");
    let revoke = |csrf: &str| {
        post_form(
            &s,
            "/account/devices/revoke",
            &format!("tollgate_session={session}"),
            &format!("csrf={csrf}&id={id}"),
        )
    };
    assert_eq!(revoke(&"y".repeat(43)).status, 403);
    assert_eq!(with_basic(), 200);
    let r = revoke(&portal_csrf(&s, &session));
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(
        text(&r).contains("The device is signed out"),
        "{}",
        text(&r)
    );
    assert!(!text(&r).contains(DEVICE), "{}", text(&r));
    let (status, answer) = s.tokens(Some(&bearer(&credential)), &ask);
    assert_eq!(
        (status, answer["error-type"].clone()),
        (401, json!("invalid-credentials"))
    );
    assert_eq!(with_basic(), 401);
    // Another account cannot revoke what is not its own; an unknown id is 404.
    let r = revoke(&portal_csrf(&s, &session));
    assert_eq!(r.status, 404, "{}", text(&r));
}

#[test]
fn an_expired_session_signs_in_again_and_a_code_is_good_for_a_minute_only() {
    let fx = Fixture::new();
    let (_g, s) = started(&fx, "[web]\nsession-ttl = 2\n", "");
    let session = signed_in(&s, "bob", PASSWORD);
    let page = authorize_page(&s, Some(&session), RETURN, "st");
    assert_eq!(page.status, 200, "{}", text(&page));
    let csrf = page_csrf(&page);
    let code = code_of(&decide(&s, &session, Some(&csrf), "allow", "st"), "st");
    std::thread::sleep(Duration::from_secs(3));
    let r = decide(&s, &session, Some(&csrf), "allow", "st");
    assert_eq!(r.status, 303, "{}", text(&r));
    let location = r.header("location").unwrap_or_default();
    assert!(
        location.starts_with("/account/sign-in?next=%2Faccount%2Fauthorize%3F"),
        "an expired session was let through to {location}"
    );
    // The code given before is no good after a minute, verifier and address right or not.
    std::thread::sleep(Duration::from_secs(59));
    let (status, answer) = exchange(&s, &code, VERIFIER, RETURN);
    assert_eq!(
        (status, answer["error-type"].clone()),
        (400, json!("invalid-grant")),
        "{answer}"
    );
}

/// The browser program flatpak starts: it hands the page to the test's WebDriver session by
/// writing it to `opened`, one line per page.
fn browser_program(fx: &Fixture, opened: &Path) -> std::path::PathBuf {
    let program = fx.join("browser");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\n",
            opened.display()
        ),
    )
    .expect("writing the browser program");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the browser program");
    program
}

/// Answers the rest of an interactive install (no password asked), which must end installed:
/// what flatpak printed.
fn finish_install(t: &Setup, mut terminal: Terminal) -> String {
    let passwords = terminal.answer_flatpak_install("", &[]);
    let (status, output) = terminal.finish();
    assert!(
        status.success(),
        "flatpak install failed ({status}):\n{output}"
    );
    assert_eq!(passwords, 0, "{output}");
    assert_eq!(t.installed_app(), format!("#!/bin/sh\necho {APP} 2\n"));
    output
}

/// Answers yes until flatpak waits for the browser; the `nth` page it opened.
fn page_opened(terminal: &mut Terminal, opened: &Path, nth: usize) -> String {
    loop {
        match terminal.next_of(&["Open browser? [Y/n]", "[Y/n]", "Waiting for browser..."]) {
            Some((2, _)) => break,
            Some(_) => terminal.send("y"),
            None => panic!(
                "flatpak ended before it opened a browser:\n{}",
                terminal.output()
            ),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pages: Vec<String> = std::fs::read_to_string(opened)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if let Some(page) = pages.get(nth - 1) {
            return page.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the browser program got no page {nth}:\n{}",
            terminal.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn flatpak_install_signs_in_through_the_browser_and_a_revoked_device_signs_in_again() {
    let t = Setup::start();
    account_for_paid(&t.s);
    let url = t.s.server.url();
    let url = url.trim_end_matches('/').to_owned();
    t.flatpak()
        .args(["--user", "remote-add", "shop"])
        .arg(format!("{url}/repo.flatpakrepo"))
        .run();
    let opened = t.fx.join("browser-opened");
    let program = browser_program(&t.fx, &opened);
    let browser = Browser::start(&t.fx);
    let install = || {
        t.flatpak()
            .env("BROWSER", &program)
            .args(["--user", "install", "shop", APP])
            .in_terminal()
    };

    // No credential stored: flatpak opens the service's sign-in page.
    let mut terminal = install();
    let page = page_opened(&mut terminal, &opened, 1);
    assert!(
        page.starts_with(&format!("{url}/account/authorize?")),
        "{page}"
    );
    let asked: std::collections::HashMap<String, String> = url::Url::parse(&page)
        .expect("a URL")
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(asked["code_challenge_method"], "S256");
    let redirect = url::Url::parse(&asked["redirect_uri"]).expect("a return address");
    assert_eq!(redirect.host_str(), Some("127.0.0.1"));
    let port = redirect.port().expect("a port");
    // A request to the authenticator's port with another state is turned away; the install
    // goes on waiting for the right one.
    let forged = http::get(
        format!("127.0.0.1:{port}").parse().expect("an address"),
        "/done?code=forged&state=guessed",
    );
    assert_eq!(forged.status, 400, "{}", text(&forged));

    browser.goto(&page);
    browser.wait_for_text("Sign in");
    assert!(
        browser.current_url().contains("/account/sign-in?next="),
        "{}",
        browser.current_url()
    );
    let inputs = browser.inputs();
    assert!(
        inputs.len() == 2 && inputs.iter().all(|(_, labelled)| *labelled),
        "{inputs:?}"
    );
    assert!(
        browser.text().contains("(remote shop)"),
        "{}",
        browser.text()
    );
    browser.screenshot("webflow-sign-in");
    browser.fill("Account name", "bob");
    browser.fill("Password", "not the password");
    browser.press("Sign in");
    browser.wait_for_text("Wrong account name or password.");
    browser.fill("Password", PASSWORD);
    browser.press("Sign in");
    browser.wait_for_text("Sign in a device");
    assert!(browser.text().contains("bob"), "{}", browser.text());
    browser.screenshot("webflow-allow");
    browser.press("Allow");
    browser.wait_for_text("Signed in.");
    browser.screenshot("webflow-done");

    let output = finish_install(&t, terminal);
    assert!(output.contains("Browser done"), "{output}");
    // The device credential is kept in the keyring, never printed.
    let found = t.helper().args(["credential", &url]).run();
    assert_eq!(found.trim(), "secret-service: license-key");
    assert!(!output.contains("tgd_"), "{output}");

    // A second install asks nothing: with no token cached, the stored device credential gets
    // one, without any interaction (flatpak's -y asks the authenticator for none).
    let cache = t.fx.join("home/.cache/tollgate/tokens.json");
    let reinstall_quietly = || {
        t.flatpak().args(["--user", "uninstall", "-y", APP]).run();
        let _ = std::fs::remove_file(&cache);
        t.flatpak()
            .env("BROWSER", &program)
            .args(["--user", "install", "-y", "shop", APP])
            .output()
    };
    let quiet = reinstall_quietly();
    assert!(quiet.status.success(), "{quiet:?}");
    assert_eq!(
        std::fs::read_to_string(&opened)
            .unwrap_or_default()
            .lines()
            .count(),
        1,
        "the second install opened a browser"
    );

    // Revoked in the portal, the device gets nothing: the next install signs in through the
    // browser again (the browser's session still holds, so it only asks to allow).
    browser.goto(&format!("{url}/account/"));
    browser.wait_for_text("Devices");
    assert!(
        browser.text().contains("(remote shop)"),
        "{}",
        browser.text()
    );
    browser.screenshot("portal-devices");
    browser.press("Revoke");
    browser.wait_for_text("The device is signed out");
    let refused = reinstall_quietly();
    assert!(
        !refused.status.success(),
        "a revoked device still installed: {refused:?}"
    );
    let mut terminal = install();
    let page = page_opened(&mut terminal, &opened, 2);
    browser.goto(&page);
    browser.wait_for_text("Sign in a device");
    browser.press("Allow");
    browser.wait_for_text("Signed in.");
    finish_install(&t, terminal);
}

/// A vendor's shop, as small as one can be: `GET /buy?product=&account=&return=` "sells" the
/// product by making a license redeemed into the account through the admin API, and sends the
/// browser back to `return`. It serves until the test ends.
fn shop(service: std::net::SocketAddr) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port for the shop");
    let url = format!("http://{}/buy", listener.local_addr().expect("its address"));
    std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let mut reader = std::io::BufReader::new(&stream);
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let target = line.split(' ').nth(1).unwrap_or_default().to_owned();
            let asked: std::collections::HashMap<String, String> =
                url::Url::parse(&format!("http://shop{target}"))
                    .map(|u| u.query_pairs().into_owned().collect())
                    .unwrap_or_default();
            let (status, made) = http::json(
                service,
                "POST",
                "/api/v1/admin/licenses",
                Some(&bearer(ADMIN_TOKEN)),
                Some(&json!({
                    "products": [asked.get("product").cloned().unwrap_or_default()],
                    "account": asked.get("account").cloned().unwrap_or_default(),
                    "note": "sold by the shop",
                })),
            );
            let answer = if status == 201 {
                format!(
                    "HTTP/1.1 303 See Other\r\nLocation: {}\r\nContent-Length: 0\r\n\
                     Connection: close\r\n\r\n",
                    asked.get("return").cloned().unwrap_or_default()
                )
            } else {
                let body = format!("the shop could not sell: {made}");
                format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    url
}

#[test]
fn a_customer_without_the_app_buys_it_in_the_shop_and_the_install_goes_on() {
    let t = Setup::start();
    let s = &t.s;
    account_holding_other(s, "carol");
    let ask = json!({"refs": [t.g.app_ref]});
    let carol = basic("carol", PASSWORD);

    // Not on sale: denied, and nothing says where to buy it; its buy page says so.
    let (status, answer) = s.tokens(Some(&carol), &ask);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["denied"][&t.g.app_ref], "not-licensed");
    assert!(answer.get("for-sale").is_none(), "{answer}");
    let session = signed_in(s, "carol", PASSWORD);
    let cookie = format!("tollgate_session={session}");
    let buy = |query: &str| {
        http::request(
            s.server.addr,
            "GET",
            &format!("/account/buy?{query}"),
            &[("Cookie", &cookie)],
        )
    };
    let r = buy("product=paid");
    assert_eq!(r.status, 404, "{}", text(&r));
    assert!(
        text(&r).contains("Nothing is on sale here for this app"),
        "{}",
        text(&r)
    );

    // On sale: the answer names the product; a bad shop address is refused.
    let shop_url = shop(s.server.addr);
    let (status, refused) = http::json(
        s.server.addr,
        "PATCH",
        "/api/v1/admin/products/paid",
        Some(&bearer(ADMIN_TOKEN)),
        Some(&json!({"purchase-url": "javascript:alert(1)"})),
    );
    assert_eq!(status, 400, "{refused}");
    let product = s.admin_ok(
        200,
        "PATCH",
        "products/paid",
        Some(json!({"purchase-url": shop_url})),
    );
    assert_eq!(product["purchase-url"], json!(shop_url));
    let (_, answer) = s.tokens(Some(&carol), &ask);
    assert_eq!(answer["for-sale"][&t.g.app_ref], "paid", "{answer}");
    // The buy page goes back only to loopback, and links to the configured shop.
    let r = buy("product=paid&redirect_uri=https%3A%2F%2Fevil.example%2F&state=s");
    assert_eq!(r.status, 400, "{}", text(&r));
    assert_eq!(r.header("location"), None);
    let r = buy("product=paid");
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(
        text(&r).contains(&format!(
            "href=\"{shop_url}?product=paid&#38;account=carol&#38;return="
        )),
        "{}",
        text(&r)
    );
    let r = http::request(
        s.server.addr,
        "GET",
        "/account/buy/done?product=paid",
        &[("Cookie", &cookie)],
    );
    assert!(
        text(&r).contains("The shop has not added Paid to this account yet"),
        "{}",
        text(&r)
    );

    // With flatpak: signed in through the browser, carol holds nothing for the app; the buy
    // page opens, the shop sells it, and the install goes on.
    let url = s.server.url();
    let url = url.trim_end_matches('/').to_owned();
    t.flatpak()
        .args(["--user", "remote-add", "shop"])
        .arg(format!("{url}/repo.flatpakrepo"))
        .run();
    let opened = t.fx.join("browser-opened");
    let program = browser_program(&t.fx, &opened);
    let browser = Browser::start(&t.fx);
    let mut terminal = t
        .flatpak()
        .env("BROWSER", &program)
        .args(["--user", "install", "shop", APP])
        .in_terminal();
    let page = page_opened(&mut terminal, &opened, 1);
    browser.goto(&page);
    browser.wait_for_text("Account name");
    browser.fill("Account name", "carol");
    browser.fill("Password", PASSWORD);
    browser.press("Sign in");
    browser.wait_for_text("Sign in a device");
    browser.press("Allow");
    browser.wait_for_text("Signed in.");
    let page = page_opened(&mut terminal, &opened, 2);
    assert!(
        page.starts_with(&format!("{url}/account/buy?product=paid&")),
        "{page}"
    );
    browser.goto(&page);
    browser.wait_for_text("Buy Paid");
    browser.screenshot("buy");
    // Back from the shop before it sold: the page says so, and leads to the shop again.
    browser.goto(&page.replace("/account/buy?", "/account/buy/done?"));
    browser.wait_for_text("The shop has not added Paid to this account yet");
    browser.screenshot("buy-not-yet");
    browser.follow("Buy Paid in the shop");
    browser.wait_for_text("Done.");
    finish_install(&t, terminal);
    // The license the shop made is carol's, in her portal.
    let licenses = s.admin_ok(200, "GET", "licenses", None);
    let sold = licenses
        .as_array()
        .expect("licenses")
        .iter()
        .find(|l| l["note"] == "sold by the shop")
        .expect("the shop's license");
    assert_eq!(sold["account"], "carol");
    let portal = portal(s, &session);
    assert!(
        text(&portal).contains(sold["id"].as_str().expect("an id")),
        "{}",
        text(&portal)
    );
}

#[test]
fn a_sign_in_left_unfinished_or_cancelled_ends_the_install_saying_so() {
    let t = Setup::with_authenticator_env(&[("TOLLGATE_WEBFLOW_TIMEOUT", "3")]);
    account_for_paid(&t.s);
    let url = t.s.server.url();
    let url = url.trim_end_matches('/').to_owned();
    t.flatpak()
        .args(["--user", "remote-add", "shop"])
        .arg(format!("{url}/repo.flatpakrepo"))
        .run();
    let opened = t.fx.join("browser-opened");
    let program = browser_program(&t.fx, &opened);
    let install = || {
        t.flatpak()
            .env("BROWSER", &program)
            .args(["--user", "install", "shop", APP])
            .in_terminal()
    };
    // Nobody signs in: the authenticator gives up by itself (flatpak would wait for ever),
    // ends the browser's part first (flatpak aborts otherwise), and says what happened.
    let mut terminal = install();
    page_opened(&mut terminal, &opened, 1);
    let (status, output) = terminal.finish();
    assert!(!status.success(), "{output}");
    assert_eq!(
        status.code(),
        Some(1),
        "flatpak did not exit by itself:\n{output}"
    );
    assert!(output.contains("Browser done"), "{output}");
    assert!(
        output.contains("was not finished within 3 seconds; run the command again"),
        "{output}"
    );
    assert_eq!(t.installed_app(), "", "installed without a sign-in");

    // Cancelled in the browser: the install ends as cancelled, and nothing is stored.
    let browser = Browser::start(&t.fx);
    let mut terminal = install();
    let page = page_opened(&mut terminal, &opened, 2);
    browser.goto(&page);
    browser.wait_for_text("Account name");
    browser.fill("Account name", "bob");
    browser.fill("Password", PASSWORD);
    browser.press("Sign in");
    browser.wait_for_text("Sign in a device");
    browser.press("Cancel");
    browser.wait_for_text("Cancelled.");
    let (status, output) = terminal.finish();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("Browser done"), "{output}");
    assert!(output.to_lowercase().contains("cancelled"), "{output}");
    let found = t.helper().args(["credential", &url]).output();
    assert!(
        !found.status.success(),
        "a credential was stored: {found:?}"
    );
}

#[test]
fn the_flows_pages_and_exchange_answer_bad_input_without_5xx_or_a_redirect_elsewhere() {
    let fx = Fixture::new();
    let (_g, s) = started(&fx, "", "");
    s.admin_ok(
        200,
        "PATCH",
        "products/paid",
        Some(json!({"name": "<b>Paid</b> & \"more\"", "purchase-url": "https://shop.example/buy"})),
    );
    let session = signed_in(&s, "bob", PASSWORD);
    let signed = format!("tollgate_session={session}");
    // Queries of every shape, signed in and not: a page or a redirect here, never a failure
    // and never a Location elsewhere.
    let long = "x".repeat(5000);
    let queries = [
        "",
        "redirect_uri",
        "redirect_uri=&state=&code_challenge=&device=",
        "redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2F&state=%ff&code_challenge_method=S256",
        "product=paid&redirect_uri=http%3A%2F%2Fevil.example%3A1%2F&state=s",
        "product=%00&state=s",
        "product=paid&product=other",
        "%%%&&&===",
        long.as_str(),
    ];
    for path in ["/account/authorize", "/account/buy", "/account/buy/done"] {
        for query in queries {
            for cookie in ["", signed.as_str()] {
                let headers: Vec<(&str, &str)> = if cookie.is_empty() {
                    vec![]
                } else {
                    vec![("Cookie", cookie)]
                };
                let r = http::request(s.server.addr, "GET", &format!("{path}?{query}"), &headers);
                assert!(r.status < 500, "{path}?{query:.60}: {}", r.status);
                if let Some(to) = r.header("location") {
                    assert!(to.starts_with("/account/"), "{path}?{query:.60} -> {to}");
                }
            }
        }
    }
    // What users set is escaped on the buy page too.
    let r = http::request(
        s.server.addr,
        "GET",
        "/account/buy?product=paid",
        &[("Cookie", &signed)],
    );
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(!text(&r).contains("<b>Paid"), "{}", text(&r));
    assert!(
        text(&r).contains("&#60;b&#62;Paid&#60;/b&#62; &#38; &#34;more&#34;"),
        "{}",
        text(&r)
    );
    // Forms: over the limit 413, not a form 415, garbage a page.
    let big = format!("csrf=x&device={}", "d".repeat(20_000));
    for path in ["/account/authorize", "/account/devices/revoke"] {
        let r = post_form(&s, path, &signed, &big);
        assert_eq!(r.status, 413, "{path}: {}", text(&r));
        let r = http::request_with_body(
            s.server.addr,
            "POST",
            path,
            &[("Cookie", &signed), ("Content-Type", "application/json")],
            b"{}",
        );
        assert_eq!(r.status, 415, "{path}: {}", text(&r));
        for body in ["", "%%%&&&===", "csrf=&id=&decision=allow", "csrf=\u{e9}"] {
            let r = post_form(&s, path, &signed, body);
            assert!(r.status < 500, "{path} {body:?}: {}", r.status);
            assert!(
                r.header("location")
                    .is_none_or(|to| to.starts_with("/account/")),
                "{path} {body:?}"
            );
        }
    }
    // The exchange: JSON only, small, and errors that say what is wrong.
    let exchange_raw = |method: &str, body: &[u8]| {
        http::request_with_body(
            s.server.addr,
            method,
            "/api/v1/device-credentials",
            &[("Content-Type", "application/json")],
            body,
        )
    };
    for (body, status) in [
        (&b"not json"[..], 400),
        (b"{}", 400),
        (
            b"{\"code\": 1, \"code_verifier\": [], \"redirect_uri\": null}",
            400,
        ),
        (
            b"{\"code\": \"c\", \"code_verifier\": \"v\", \"redirect_uri\": \"r\", \"more\": 1}",
            400,
        ),
    ] {
        let r = exchange_raw("POST", body);
        assert_eq!(r.status, status, "{body:?}: {}", text(&r));
        assert!(text(&r).contains("error-type"), "{}", text(&r));
    }
    let r = exchange_raw("POST", "x".repeat(10_000).as_bytes());
    assert_eq!(r.status, 413);
    assert_eq!(exchange_raw("GET", b"").status, 405);
    assert_eq!(
        exchange_raw("POST", b"{}").header("cache-control"),
        Some("no-store")
    );
    let r = http::request(s.server.addr, "POST", "/api/v1/sign-in", &[]);
    assert_eq!(r.status, 405);
}

#[test]
fn tollgate_helper_login_signs_in_through_the_browser_for_ostree_and_scripts() {
    let t = Setup::start();
    account_for_paid(&t.s);
    let url = t.s.server.url();
    let url = url.trim_end_matches('/').to_owned();
    let opened = t.fx.join("browser-opened");
    let program = browser_program(&t.fx, &opened);
    let browser = Browser::start(&t.fx);
    let mut terminal = t
        .helper()
        .env("BROWSER", &program)
        .args(["login", &url, "--browser"])
        .in_terminal();
    terminal.expect("open this page in a browser to sign in");
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        if let Some(line) = std::fs::read_to_string(&opened)
            .unwrap_or_default()
            .lines()
            .next()
        {
            break line.to_owned();
        }
        assert!(Instant::now() < deadline, "{}", terminal.output());
        std::thread::sleep(Duration::from_millis(100));
    };
    // The page it printed is the one it opened.
    terminal.expect(&page);
    browser.goto(&page);
    browser.wait_for_text("Account name");
    browser.fill("Account name", "bob");
    browser.fill("Password", PASSWORD);
    browser.press("Sign in");
    browser.wait_for_text("tollgate-helper on");
    browser.press("Allow");
    browser.wait_for_text("Signed in.");
    let (status, output) = terminal.finish();
    assert!(status.success(), "{output}");
    assert!(
        output.contains(&format!("{url} accepts the license-key"))
            && output.contains(&format!(
                "stored the license-key for {url} with secret-service"
            )),
        "{output}"
    );
    assert!(
        !output.contains("tgd_"),
        "the credential was printed: {output}"
    );
    // Stored, it gets tokens for scripts and ostree.
    let printed = t.helper().args(["token", &url, &t.g.app_ref]).run();
    assert!(printed.contains("eyJ"), "{printed}");
    // A service without the flow (or none at all) says so, and stores nothing.
    let refused = t
        .helper()
        .args(["login", "http://127.0.0.1:1", "--browser"])
        .output();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("offers no sign-in in the browser"),
        "{refused:?}"
    );
}
