//! What the tests of the web pages share: a service with a product, a license and the account
//! `bob`; forms posted as a browser posts them; signing in over plain HTTP; reading answers.

use crate::fixture::Fixture;
use crate::gated_repo::{GatedRepo, gated_repo};
use crate::http::{self, Response};
use crate::service::{Service, account_for_paid, license_for_paid};

pub fn started(fx: &Fixture, config: &str, entitlements: &str) -> (GatedRepo, Service) {
    let g = gated_repo(fx);
    let s = Service::start_on(
        fx,
        &g.repo,
        &g.data,
        &format!("{config}\n[tokens]\nflat-manager-secret-file = \"flat-manager-secret\"\n"),
        None,
        entitlements,
    );
    license_for_paid(&s);
    account_for_paid(&s);
    (g, s)
}

pub fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The value of the cookie `name` that an answer sets, and the whole `Set-Cookie` line.
pub fn set_cookie(r: &Response, name: &str) -> Option<(String, String)> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .find_map(|(_, v)| {
            let (pair, _) = v.split_once(';').unwrap_or((v, ""));
            let (n, value) = pair.split_once('=')?;
            (n == name).then(|| (value.to_owned(), v.clone()))
        })
}

/// What a browser holds after opening the sign-in page: its form cookie, which is also the
/// form's CSRF token.
pub fn form_token(s: &Service) -> String {
    let r = http::get(s.server.addr, "/account/sign-in");
    assert_eq!(r.status, 200, "{}", text(&r));
    let (token, _) = set_cookie(&r, "tollgate_form").expect("a form cookie");
    assert!(
        text(&r).contains(&format!("name=\"csrf\" value=\"{token}\"")),
        "the form does not carry its token: {}",
        text(&r)
    );
    token
}

pub fn post_form(s: &Service, path: &str, cookie: &str, body: &str) -> Response {
    http::request_with_body(
        s.server.addr,
        "POST",
        path,
        &[
            ("Cookie", cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        body.as_bytes(),
    )
}

/// Opens the sign-in page and posts its form for `name` and `password`, as a browser would.
pub fn sign_in(s: &Service, name: &str, password: &str) -> Response {
    let token = form_token(s);
    post_form(
        s,
        "/account/sign-in",
        &format!("tollgate_form={token}"),
        &format!(
            "csrf={token}&name={name}&password={}",
            password.replace(' ', "+")
        ),
    )
}

/// Signs in as `name` over plain HTTP: the session cookie's value.
pub fn signed_in(s: &Service, name: &str, password: &str) -> String {
    let r = sign_in(s, name, password);
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(r.header("location"), Some("/account/"));
    set_cookie(&r, "tollgate_session")
        .expect("a session cookie")
        .0
}

pub fn portal(s: &Service, session: &str) -> Response {
    http::request(
        s.server.addr,
        "GET",
        "/account/",
        &[("Cookie", &format!("tollgate_session={session}"))],
    )
}

/// The portal's own CSRF token, from its page.
pub fn portal_csrf(s: &Service, session: &str) -> String {
    let page = text(&portal(s, session));
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the portal's forms carry a token")
        .to_owned()
}
