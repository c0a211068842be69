//! The web pages under `/account/`, for customers in a browser: sign in with an account, the
//! portal that shows what it holds (its products, the licenses redeemed into it, its recent
//! downloads, its devices) and redeems a license key into it or revokes a device, then sign
//! out; where `[web] sign-up` is on, make an account; and, for the web flow of tollgate's
//! authenticator, allow a device to sign in (see webflow.rs).
//!
//! Server-rendered HTML from templates checked at compile time (`server/templates/`, askama,
//! which escapes every value), plain forms, no JavaScript, one stylesheet. A session is a
//! random cookie (`HttpOnly`, `SameSite=Lax`, `Secure` when `public-url` is https, ending
//! after `[web] session-ttl`) whose SHA-256 the database keeps. Every form carries a CSRF token:
//! the session's own once signed in, and before that one bound to a cookie of its own (the
//! sign-in form cannot use a session it has not made yet). Sign-in failures count in the
//! limiter the token endpoint uses. The pages' answers are never 5xx for a client's mistake,
//! never cached, and may not be framed.
//!
//! ```text
//! GET            /account/            the portal (or to the sign-in page)
//! GET, POST      /account/sign-in     the form; name, password, csrf (next: an authorize or buy page)
//! GET, POST      /account/authorize   the web flow's page (webflow.rs): allow a device, or not
//! GET            /account/buy         ?product=[&redirect_uri=&state=]: to the product's shop
//! GET            /account/buy/done    where the shop comes back to: on to redirect_uri once held
//! POST           /account/devices/revoke  csrf, id
//! GET, POST      /account/create      with sign-up on: name, password, again, csrf
//! POST           /account/redeem      csrf, key
//! POST           /account/sign-out    csrf
//! GET            /account/style.css
//! ```

use std::net::IpAddr;

use askama::Template;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::reply::Response;

use super::AppState;
use super::HttpError;
use super::api::{Body, read_body};
use super::webflow::{AuthorizeRequest, BuyRequest};
use crate::entitlements::{Credential, IssueError};
use crate::secrets::Secret;
use crate::store::{
    AuditFilter, LicenseKey, Product, Session, StoreError, account_holdings, now, random_token,
};

/// Where the pages are, under the server's root (or `public-url`'s path).
pub(super) const PREFIX: &str = "/account";
/// A form is a few fields.
const MAX_FORM: usize = 16 * 1024;
const SESSION_COOKIE: &str = "tollgate_session";
/// The sign-in form's CSRF token, before there is a session.
const FORM_COOKIE: &str = "tollgate_form";
/// Downloads the portal lists.
const RECENT_DOWNLOADS: i64 = 20;
const STYLE: &str = include_str!("../../templates/style.css");

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignIn<'a> {
    base: &'a str,
    csrf: &'a str,
    name: &'a str,
    problem: Option<&'a str>,
    sign_up: bool,
    /// The authorize page to go on to, and the device it is for.
    next: Option<&'a str>,
    device: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "buy.html")]
struct Buy<'a> {
    base: &'a str,
    account: &'a str,
    product: &'a str,
    shop: &'a str,
    problem: Option<&'a str>,
    /// This page again (after the shop), to look again.
    again: Option<&'a str>,
    /// Back to the program that opened the page, saying no.
    cancel: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "authorize.html")]
struct Authorize<'a> {
    base: &'a str,
    csrf: &'a str,
    account: &'a str,
    device: &'a str,
    request: &'a AuthorizeRequest,
}

#[derive(Template)]
#[template(path = "create.html")]
struct Create<'a> {
    base: &'a str,
    csrf: &'a str,
    name: &'a str,
    problem: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "portal.html")]
struct Portal<'a> {
    base: &'a str,
    csrf: &'a str,
    account: &'a str,
    notice: Option<&'a str>,
    problem: Option<&'a str>,
    products: Vec<ProductView>,
    licenses: Vec<LicenseView>,
    devices: Vec<DeviceView>,
    downloads: Vec<DownloadView>,
}

struct DeviceView {
    id: String,
    name: String,
    since: String,
}

struct LicenseView {
    id: String,
    products: String,
    until: String,
    state: &'static str,
}

struct ProductView {
    name: String,
    refs: Vec<String>,
    active: bool,
}

struct DownloadView {
    at: String,
    ref_name: String,
    commit: String,
}

#[derive(Template)]
#[template(path = "problem.html")]
struct Problem<'a> {
    base: &'a str,
    title: &'a str,
    message: &'a str,
}

/// What went wrong, as a page: its status, title and message (and seconds to wait, for 429).
struct PageError {
    status: StatusCode,
    title: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl PageError {
    fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> PageError {
        PageError {
            status,
            title,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The server's own failure; its cause goes to the log only.
    fn internal(doing: &str, cause: impl std::fmt::Display) -> PageError {
        tracing::error!("{doing} failed: {cause}");
        PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "The server could not do this just now; try again in a moment.",
        )
    }
}

impl From<HttpError> for PageError {
    fn from(e: HttpError) -> PageError {
        match e {
            HttpError::PayloadTooLarge => PageError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too much sent",
                format!("A form here is at most {} KiB.", MAX_FORM / 1024),
            ),
            HttpError::BodyTooSlow => PageError::new(
                StatusCode::REQUEST_TIMEOUT,
                "Too slow",
                "The form did not arrive in time; send it again.",
            ),
            other => PageError::new(
                other.status(),
                "Not possible",
                "The request could not be read; send the form from the page again.",
            ),
        }
    }
}

/// The base path of every link: `public-url`'s path without its last `/` ("" at the root).
fn base(state: &AppState) -> String {
    state
        .public_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .unwrap_or_default()
}

/// Whether cookies are marked `Secure`: the server is reached over HTTPS.
fn secure(state: &AppState) -> bool {
    state
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"))
}

/// Answers a request under `/account` (`rest` is the path after it).
pub(super) async fn handle(
    state: &AppState,
    method: &Method,
    rest: &str,
    query: &str,
    headers: &HeaderMap,
    client: IpAddr,
    body: Body,
) -> Response {
    let base = base(state);
    let answer = match (rest, method) {
        ("", _) => Ok(see_other(&format!("{base}{PREFIX}/"))),
        ("/", &Method::GET | &Method::HEAD) => portal(state, &base, headers).await,
        ("/sign-in", &Method::GET | &Method::HEAD) => {
            sign_in_form(state, &base, query, headers).await
        }
        ("/authorize", &Method::GET | &Method::HEAD) => {
            authorize_page(state, &base, query, headers).await
        }
        ("/authorize", &Method::POST) => authorize(state, &base, headers, body).await,
        ("/devices/revoke", &Method::POST) => revoke_device(state, &base, headers, body).await,
        ("/buy", &Method::GET | &Method::HEAD) => {
            buy_page(state, &base, query, headers, false).await
        }
        ("/buy/done", &Method::GET | &Method::HEAD) => {
            buy_page(state, &base, query, headers, true).await
        }
        ("/sign-in", &Method::POST) => sign_in(state, &base, headers, client, body).await,
        ("/sign-out", &Method::POST) => sign_out(state, &base, headers, body).await,
        ("/redeem", &Method::POST) => redeem(state, &base, headers, client, body).await,
        ("/create", _) if !state.web.sign_up => Err(PageError::new(
            StatusCode::NOT_FOUND,
            "No sign-up here",
            "Accounts here are made by the vendor: ask them for one, or for a license key.",
        )),
        ("/create", &Method::GET | &Method::HEAD) => create_form(state, &base, headers).await,
        ("/create", &Method::POST) => create(state, &base, headers, client, body).await,
        ("/create", _) => Err(not_allowed("GET, POST")),
        ("/style.css", &Method::GET | &Method::HEAD) => Ok(style()),
        ("/" | "/style.css" | "/buy" | "/buy/done", _) => Err(not_allowed("GET")),
        ("/sign-in" | "/authorize", _) => Err(not_allowed("GET, POST")),
        ("/sign-out" | "/redeem" | "/devices/revoke", _) => Err(not_allowed("POST")),
        _ => Err(PageError::new(
            StatusCode::NOT_FOUND,
            "No such page",
            "There is no page here.",
        )),
    };
    answer.unwrap_or_else(|e| problem_page(&base, e))
}

fn not_allowed(allowed: &'static str) -> PageError {
    PageError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Not possible",
        format!("This page answers {allowed} only."),
    )
}

/// The value of the cookie `name`, from any `Cookie` header.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// A value of the form [`random_token`] makes: 43 URL-safe characters.
fn well_formed(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The signed-in session the request's cookie names, if any.
async fn session(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, PageError> {
    let Some(value) = cookie(headers, SESSION_COOKIE).filter(|v| well_formed(v)) else {
        return Ok(None);
    };
    state
        .entitlements
        .store()
        .session_get(value)
        .await
        .map_err(|e| PageError::internal("reading a web session", e))
}

fn set_cookie(state: &AppState, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let mut text = format!(
        "{name}={value}; Path={}{PREFIX}; HttpOnly; SameSite=Lax",
        base(state)
    );
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={age}"));
    }
    if secure(state) {
        text.push_str("; Secure");
    }
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A page: HTML, never cached, never framed, only our own stylesheet, forms posted only here.
fn page(status: StatusCode, html: String) -> Response {
    page_posting_to(status, html, "")
}

/// A page whose forms may also lead to `origin` (the web flow's return address, where the
/// page's answer redirects: browsers hold a redirect after a form to the `form-action` too).
fn page_posting_to(status: StatusCode, html: String, origin: &str) -> Response {
    let mut response = Response::new(html.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let policy = format!(
        "default-src 'none'; style-src 'self'; form-action 'self'{}{origin}; frame-ancestors \
         'none'; base-uri 'none'",
        if origin.is_empty() { "" } else { " " }
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&policy)
            .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'")),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

fn render(template: &impl Template) -> Result<String, PageError> {
    template
        .render()
        .map_err(|e| PageError::internal("rendering a page", e))
}

fn problem_page(base: &str, e: PageError) -> Response {
    let html = Problem {
        base,
        title: e.title,
        message: &e.message,
    }
    .render()
    .unwrap_or_else(|_| e.message.clone());
    let mut response = page(e.status, html);
    if let Some(secs) = e.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if e.status == StatusCode::METHOD_NOT_ALLOWED {
        // Which methods, the message says; the header says it to programs.
        let allow = e.message.trim_start_matches("This page answers ");
        let allow = allow.trim_end_matches(" only.");
        if let Ok(value) = HeaderValue::from_str(allow) {
            response.headers_mut().insert(header::ALLOW, value);
        }
    }
    response
}

fn see_other(location: &str) -> Response {
    let mut response = Response::new(Bytes::new().into());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn style() -> Response {
    let mut response = Response::new(STYLE.into());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The fields of a form the pages sent: `application/x-www-form-urlencoded`, at most
/// [`MAX_FORM`] bytes.
async fn form(headers: &HeaderMap, body: Body) -> Result<Vec<(String, String)>, PageError> {
    let urlencoded = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let bytes = read_body(body, MAX_FORM).await?;
    if !urlencoded {
        return Err(PageError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Not a form",
            "Send the form from the page.",
        ));
    }
    Ok(url::form_urlencoded::parse(&bytes).into_owned().collect())
}

/// A form a signed-in page posted: the session and the fields, once the form carries the
/// session's CSRF token. Without a session, `Err` with what `signed_out` answers (the sign-in
/// page, say).
async fn signed_in_post(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    signed_out: impl FnOnce(&[(String, String)]) -> Result<Response, PageError>,
) -> Result<Result<(Session, Vec<(String, String)>), Response>, PageError> {
    let fields = form(headers, body).await?;
    let Some(session) = session(state, headers).await? else {
        return signed_out(&fields).map(Err);
    };
    if !equal(&session.csrf, field(&fields, "csrf")) {
        return Err(stale_form());
    }
    Ok(Ok((session, fields)))
}

fn field<'f>(fields: &'f [(String, String)], name: &str) -> &'f str {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, v)| v.as_str())
}

fn stale_form() -> PageError {
    PageError::new(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "The form did not come from this site's page, or that page is too old: open the page \
         again and send it from there.",
    )
}

/// The pairs of a query string or form body.
fn pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// A page sign-in goes on to: the web flow's authorize page, or a buy page (`true`: the one
/// the shop comes back to).
enum Next {
    Authorize(AuthorizeRequest),
    Buy(BuyRequest, bool),
}

impl Next {
    fn path(&self, base: &str) -> String {
        match self {
            Next::Authorize(request) => request.page_path(base),
            Next::Buy(request, done) => request.page_path(base, *done),
        }
    }

    fn device(&self) -> Option<&str> {
        match self {
            Next::Authorize(request) => Some(&request.device),
            Next::Buy(..) => None,
        }
    }
}

/// The page a sign-in goes on to (`next`, of the query or the form), checked and rebuilt from
/// what was checked: sign-in leads nowhere else.
fn next_request(next: &str, base: &str) -> Option<Next> {
    let page = |name: &str| next.strip_prefix(&format!("{base}{PREFIX}/{name}?"));
    if let Some(query) = page("authorize") {
        return AuthorizeRequest::from_pairs(&pairs(query))
            .ok()
            .map(Next::Authorize);
    }
    let (query, done) = match page("buy/done") {
        Some(query) => (query, true),
        None => (page("buy")?, false),
    };
    BuyRequest::from_pairs(&pairs(query))
        .ok()
        .map(|request| Next::Buy(request, done))
}

/// To the sign-in page, which goes on to `next` (a path [`next_request`] takes).
fn to_sign_in(base: &str, next: &str) -> Response {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    see_other(&format!("{base}{PREFIX}/sign-in?{query}"))
}

async fn sign_in_form(
    state: &AppState,
    base: &str,
    query: &str,
    headers: &HeaderMap,
) -> Result<Response, PageError> {
    let next = next_request(field(&pairs(query), "next"), base);
    if session(state, headers).await?.is_some() {
        let to = next.map_or_else(|| format!("{base}{PREFIX}/"), |n| n.path(base));
        return Ok(see_other(&to));
    }
    sign_in_page(
        state,
        base,
        headers,
        StatusCode::OK,
        "",
        None,
        next.as_ref(),
    )
}

/// The sign-in form, with its CSRF cookie (the one the browser has, else a new one).
fn sign_in_page(
    state: &AppState,
    base: &str,
    headers: &HeaderMap,
    status: StatusCode,
    name: &str,
    problem: Option<&str>,
    next: Option<&Next>,
) -> Result<Response, PageError> {
    let next_path = next.map(|n| n.path(base));
    form_page(state, headers, status, |csrf| {
        render(&SignIn {
            base,
            csrf,
            name,
            problem,
            sign_up: state.web.sign_up,
            next: next_path.as_deref(),
            device: next.and_then(Next::device),
        })
    })
}

async fn sign_in(
    state: &AppState,
    base: &str,
    headers: &HeaderMap,
    client: IpAddr,
    body: Body,
) -> Result<Response, PageError> {
    let fields = form(headers, body).await?;
    if !form_token_matches(headers, &fields) {
        return Err(stale_form());
    }
    let (name, password) = (field(&fields, "name"), field(&fields, "password"));
    let next = next_request(field(&fields, "next"), base);
    let again = |status, problem: &str| {
        sign_in_page(
            state,
            base,
            headers,
            status,
            name,
            Some(problem),
            next.as_ref(),
        )
    };
    if name.is_empty() || password.is_empty() {
        return again(
            StatusCode::BAD_REQUEST,
            "Give your account name and password.",
        );
    }
    let credential = Credential::Account {
        name: name.to_owned(),
        password: Secret::new(password.to_owned()),
    };
    let entitled = match state.entitlements.entitled(Some(credential), client).await {
        Ok(entitled) => entitled,
        Err(IssueError::InvalidCredentials) => {
            return again(StatusCode::UNAUTHORIZED, "Wrong account name or password.");
        }
        Err(IssueError::Refused(refusal)) => {
            return again(StatusCode::FORBIDDEN, &capitalised(refusal.message()));
        }
        Err(IssueError::TooManyFailures(left)) => return Err(too_many(left)),
        Err(e) => return Err(PageError::internal("signing in", e)),
    };
    let account = entitled.account.unwrap_or_else(|| name.to_owned());
    let cookie = state
        .entitlements
        .store()
        .session_add(&account, state.web.session_ttl)
        .await
        .map_err(|e| PageError::internal("making a web session", e))?;
    let to = next.map(|n| n.path(base));
    Ok(signed_in_answer(state, base, &cookie, to.as_deref()))
}

/// To the portal (or `to`), with the session's cookie.
fn signed_in_answer(state: &AppState, base: &str, cookie: &str, to: Option<&str>) -> Response {
    let portal = format!("{base}{PREFIX}/");
    let mut response = see_other(to.unwrap_or(&portal));
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, SESSION_COOKIE, cookie, Some(state.web.session_ttl)),
    );
    response
}

/// A page whose form is posted before there is a session: its CSRF token is the form cookie's
/// (the one the browser has, else a new one), set with the page.
fn form_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    html: impl FnOnce(&str) -> Result<String, PageError>,
) -> Result<Response, PageError> {
    let csrf = match cookie(headers, FORM_COOKIE).filter(|v| well_formed(v)) {
        Some(existing) => existing.to_owned(),
        None => random_token().map_err(|e| PageError::internal("making a form token", e))?,
    };
    let mut response = page(status, html(&csrf)?);
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, FORM_COOKIE, &csrf, None),
    );
    Ok(response)
}

/// Whether a form posted before there is a session carries its form cookie's token.
fn form_token_matches(headers: &HeaderMap, fields: &[(String, String)]) -> bool {
    cookie(headers, FORM_COOKIE)
        .filter(|v| well_formed(v))
        .is_some_and(|expected| equal(expected, field(fields, "csrf")))
}

async fn create_form(
    state: &AppState,
    base: &str,
    headers: &HeaderMap,
) -> Result<Response, PageError> {
    if session(state, headers).await?.is_some() {
        return Ok(see_other(&format!("{base}{PREFIX}/")));
    }
    create_page(state, base, headers, StatusCode::OK, "", None)
}

fn create_page(
    state: &AppState,
    base: &str,
    headers: &HeaderMap,
    status: StatusCode,
    name: &str,
    problem: Option<&str>,
) -> Result<Response, PageError> {
    form_page(state, headers, status, |csrf| {
        render(&Create {
            base,
            csrf,
            name,
            problem,
        })
    })
}

/// Makes an account (no product yet) and signs it in. Each counts against the address in the
/// failure limiter, so that one address cannot make accounts without end.
async fn create(
    state: &AppState,
    base: &str,
    headers: &HeaderMap,
    client: IpAddr,
    body: Body,
) -> Result<Response, PageError> {
    let fields = form(headers, body).await?;
    if !form_token_matches(headers, &fields) {
        return Err(stale_form());
    }
    if let Some(left) = state.entitlements.blocked(client) {
        return Err(too_many(left));
    }
    let (name, password) = (field(&fields, "name"), field(&fields, "password"));
    let again =
        |status, problem: &str| create_page(state, base, headers, status, name, Some(problem));
    if password != field(&fields, "again") {
        return again(StatusCode::BAD_REQUEST, "The two passwords differ.");
    }
    let store = state.entitlements.store();
    match store.account_sign_up(name, password).await {
        Ok(_) => {}
        Err(StoreError::Invalid(why)) => return again(StatusCode::BAD_REQUEST, &capitalised(&why)),
        Err(StoreError::Conflict(_)) => {
            return again(StatusCode::CONFLICT, "That name is taken: choose another.");
        }
        Err(e) => return Err(PageError::internal("making an account", e)),
    }
    state.entitlements.signed_up(client);
    let cookie = store
        .session_add(name, state.web.session_ttl)
        .await
        .map_err(|e| PageError::internal("making a web session", e))?;
    Ok(signed_in_answer(state, base, &cookie, None))
}

/// A message of the service's (lowercase, no full stop) as a sentence.
fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

async fn portal(state: &AppState, base: &str, headers: &HeaderMap) -> Result<Response, PageError> {
    let Some(session) = session(state, headers).await? else {
        return Ok(see_other(&format!("{base}{PREFIX}/sign-in")));
    };
    portal_page(state, base, &session, StatusCode::OK, None, None).await
}

/// The portal of the session's account, with a notice or a problem to show above it.
async fn portal_page(
    state: &AppState,
    base: &str,
    session: &Session,
    status: StatusCode,
    notice: Option<&str>,
    problem: Option<&str>,
) -> Result<Response, PageError> {
    let store = state.entitlements.store();
    let failed = |doing: &'static str| move |e: StoreError| PageError::internal(doing, e);
    let account = store
        .account_get(&session.account)
        .await
        .map_err(failed("reading an account"))?;
    let redeemed = store
        .account_licenses(&account.name)
        .await
        .map_err(failed("reading an account's licenses"))?;
    let at = now();
    let (held, _) = account_holdings(&account, &redeemed, at);
    let products: Vec<Product> = store
        .products_named(&held)
        .await
        .map_err(failed("reading products"))?;
    let name_of = |slug: &str| {
        products
            .iter()
            .find(|p| p.slug == slug)
            .map_or_else(|| slug.to_owned(), |p| p.name.clone())
    };
    let licenses = redeemed
        .iter()
        .map(|l| LicenseView {
            id: l.id.clone(),
            products: l
                .products
                .iter()
                .map(|p| name_of(p))
                .collect::<Vec<_>>()
                .join(", "),
            until: l
                .expires
                .map_or_else(|| "no end".to_owned(), crate::times::time),
            state: if !l.active {
                "revoked"
            } else if l.expires.is_some_and(|e| e <= at) {
                "expired"
            } else {
                "active"
            },
        })
        .collect();
    let devices = store
        .devices_of(&account.name)
        .await
        .map_err(failed("reading an account's devices"))?
        .into_iter()
        .map(|d| DeviceView {
            id: d.id,
            name: d.name,
            since: crate::times::time(d.created),
        })
        .collect();
    let downloads = store
        .downloads(&AuditFilter {
            subject: Some(format!("account:{}", account.name)),
            limit: RECENT_DOWNLOADS,
            ..Default::default()
        })
        .await
        .map_err(failed("reading downloads"))?
        .into_iter()
        .map(|d| DownloadView {
            at: crate::times::time(d.at),
            ref_name: d.ref_name,
            commit: d.commit.chars().take(12).collect(),
        })
        .collect();
    let html = render(&Portal {
        base,
        csrf: &session.csrf,
        account: &account.name,
        notice,
        problem,
        products: products
            .into_iter()
            .map(|p| ProductView {
                name: p.name,
                refs: p.refs,
                active: p.active,
            })
            .collect(),
        licenses,
        devices,
        downloads,
    })?;
    Ok(page(status, html))
}

/// Redeems a license key into the session's account. The key is checked as at the token
/// endpoint (the same limiter, the same constant-time check), then taken if no account has it.
async fn redeem(
    state: &AppState,
    base: &str,
    headers: &HeaderMap,
    client: IpAddr,
    body: Body,
) -> Result<Response, PageError> {
    let (session, fields) = match signed_in_post(state, headers, body, |_| {
        Ok(see_other(&format!("{base}{PREFIX}/sign-in")))
    })
    .await?
    {
        Ok(posted) => posted,
        Err(answer) => return Ok(answer),
    };
    let again = |status, problem: &str| {
        let problem = problem.to_owned();
        let session = session.clone();
        async move { portal_page(state, base, &session, status, None, Some(&problem)).await }
    };
    let typed = field(&fields, "key").trim();
    if typed.is_empty() {
        return again(StatusCode::BAD_REQUEST, "Give a license key.").await;
    }
    let key = LicenseKey::parse(typed);
    let credential = key
        .clone()
        .map_or(Credential::Unreadable, Credential::License);
    match state.entitlements.entitled(Some(credential), client).await {
        Ok(_) => {}
        Err(IssueError::InvalidCredentials) => {
            return again(
                StatusCode::BAD_REQUEST,
                "That is not a license key of this service: check it, they look like tg_… .",
            )
            .await;
        }
        Err(IssueError::Refused(refusal)) => {
            return again(StatusCode::FORBIDDEN, &capitalised(refusal.message())).await;
        }
        Err(IssueError::TooManyFailures(left)) => return Err(too_many(left)),
        Err(e) => return Err(PageError::internal("checking a license key", e)),
    }
    let Some(key) = key else {
        return Err(PageError::internal(
            "redeeming",
            "a key checked right did not parse",
        ));
    };
    match state
        .entitlements
        .store()
        .license_redeem(&key.id, &session.account)
        .await
    {
        Ok(()) => {
            portal_page(
                state,
                base,
                &session,
                StatusCode::OK,
                Some("The license is redeemed: what it opens is this account's now."),
                None,
            )
            .await
        }
        Err(StoreError::Conflict(why)) => again(StatusCode::CONFLICT, &capitalised(&why)).await,
        Err(e) => Err(PageError::internal("redeeming a license", e)),
    }
}

/// The page of a web flow's request whose parameters are wrong: said, and sent nowhere.
fn bad_link(why: &str) -> PageError {
    PageError::new(
        StatusCode::BAD_REQUEST,
        "This link is not right",
        format!(
            "{}. Start again from flatpak or the installer that opened this page.",
            capitalised(why).trim_end_matches('.')
        ),
    )
}

/// The web flow's page: with a session, asks whether to sign the device in; without one, to
/// the sign-in page, which comes back here.
async fn authorize_page(
    state: &AppState,
    base: &str,
    query: &str,
    headers: &HeaderMap,
) -> Result<Response, PageError> {
    let request = AuthorizeRequest::from_pairs(&pairs(query)).map_err(|why| bad_link(&why))?;
    let Some(session) = session(state, headers).await? else {
        return Ok(to_sign_in(base, &request.page_path(base)));
    };
    let html = render(&Authorize {
        base,
        csrf: &session.csrf,
        account: &session.account,
        device: &request.device,
        request: &request,
    })?;
    Ok(page_posting_to(
        StatusCode::OK,
        html,
        &request.back.origin(),
    ))
}

/// The answer to the web flow's page: to the return address with a one-time code (allowed)
/// or `error=access_denied` (not).
async fn authorize(
    state: &AppState,
    base: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, PageError> {
    let (session, fields) = match signed_in_post(state, headers, body, |fields| {
        // The session ended while the page was open: sign in again, then the page again.
        let request = AuthorizeRequest::from_pairs(fields).map_err(|why| bad_link(&why))?;
        Ok(to_sign_in(base, &request.page_path(base)))
    })
    .await?
    {
        Ok(posted) => posted,
        Err(answer) => return Ok(answer),
    };
    let request = AuthorizeRequest::from_pairs(&fields).map_err(|why| bad_link(&why))?;
    if field(&fields, "decision") != "allow" {
        return Ok(see_other(&request.back.redirect(
            &issuer(state, headers, base),
            &[("error", "access_denied")],
        )));
    }
    let code = state
        .entitlements
        .store()
        .device_code_add(
            &session.account,
            &request.device,
            &request.code_challenge,
            &request.back.redirect_uri,
        )
        .await
        .map_err(|e| PageError::internal("making a sign-in code", e))?;
    Ok(see_other(&request.back.redirect(
        &issuer(state, headers, base),
        &[("code", &code)],
    )))
}

/// Revokes one of the session's account's devices: its credential opens nothing from now on.
async fn revoke_device(
    state: &AppState,
    base: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, PageError> {
    let (session, fields) = match signed_in_post(state, headers, body, |_| {
        Ok(see_other(&format!("{base}{PREFIX}/sign-in")))
    })
    .await?
    {
        Ok(posted) => posted,
        Err(answer) => return Ok(answer),
    };
    let removed = state
        .entitlements
        .store()
        .device_remove(&session.account, field(&fields, "id"))
        .await
        .map_err(|e| PageError::internal("revoking a device", e))?;
    let (status, notice, problem) = if removed {
        (
            StatusCode::OK,
            Some("The device is signed out: its credential opens nothing any more."),
            None,
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            None,
            Some("No such device is signed in with this account."),
        )
    };
    portal_page(state, base, &session, status, notice, problem).await
}

/// The server's origin as the browser reaches it: `public-url`'s, else the request's `Host`
/// (the browser's own, which only it could change), else loopback.
fn origin(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = state
        .public_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
    {
        return url.origin().ascii_serialization();
    }
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|host| {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .map_or_else(
            || "http://localhost".to_owned(),
            |host| format!("http://{host}"),
        )
}

/// This server as the web flow's issuer (RFC 9207): its origin and path, as the service URL
/// a client knows it by.
fn issuer(state: &AppState, headers: &HeaderMap, base: &str) -> String {
    format!("{}{base}/", origin(state, headers))
}

/// The shop's address for `product`, with what it needs to sell it to `account` and send the
/// browser back to `back`.
fn shop_link(purchase_url: &str, product: &str, account: &str, back: &str) -> Option<String> {
    let mut url = url::Url::parse(purchase_url).ok()?;
    url.query_pairs_mut()
        .append_pair("product", product)
        .append_pair("account", account)
        .append_pair("return", back);
    Some(url.to_string())
}

/// A product's buy page: signed in, to the shop with the account and the way back; once the
/// account holds the product (`done`: the shop came back), back to the program that opened
/// the page, or the portal. A product that is not on sale here says so.
async fn buy_page(
    state: &AppState,
    base: &str,
    query: &str,
    headers: &HeaderMap,
    done: bool,
) -> Result<Response, PageError> {
    let request = BuyRequest::from_pairs(&pairs(query)).map_err(|why| bad_link(&why))?;
    let store = state.entitlements.store();
    let nothing_on_sale = || {
        PageError::new(
            StatusCode::NOT_FOUND,
            "Nothing on sale",
            "Nothing is on sale here for this app: ask the vendor how to get it.",
        )
    };
    let product = match store.product_get(&request.product).await {
        Ok(product) if product.active => product,
        Ok(_) | Err(StoreError::NotFound(_)) => return Err(nothing_on_sale()),
        Err(e) => return Err(PageError::internal("reading a product", e)),
    };
    let Some(purchase_url) = product.purchase_url.clone() else {
        return Err(nothing_on_sale());
    };
    let here = request.page_path(base, done);
    let Some(session) = session(state, headers).await? else {
        return Ok(to_sign_in(base, &here));
    };
    let failed = |doing: &'static str| move |e: StoreError| PageError::internal(doing, e);
    let account = store
        .account_get(&session.account)
        .await
        .map_err(failed("reading an account"))?;
    let redeemed = store
        .account_licenses(&account.name)
        .await
        .map_err(failed("reading an account's licenses"))?;
    let (held, _) = account_holdings(&account, &redeemed, now());
    if held.contains(&product.slug) {
        if let Some(back) = &request.back {
            let result = if done { "bought" } else { "held" };
            return Ok(see_other(
                &back.redirect(&issuer(state, headers, base), &[("result", result)]),
            ));
        }
        let notice = format!("{} is this account's: install it again.", product.name);
        return portal_page(state, base, &session, StatusCode::OK, Some(&notice), None).await;
    }
    let back = format!(
        "{}{}",
        origin(state, headers),
        request.page_path(base, true)
    );
    let shop = shop_link(&purchase_url, &product.slug, &account.name, &back)
        .ok_or_else(|| PageError::internal("linking to the shop", "a stored URL did not parse"))?;
    let problem = format!(
        "The shop has not added {} to this account yet. When it has, look again.",
        product.name
    );
    let cancel = request
        .back
        .as_ref()
        .map(|b| b.redirect(&issuer(state, headers, base), &[("error", "access_denied")]));
    let html = render(&Buy {
        base,
        account: &account.name,
        product: &product.name,
        shop: &shop,
        problem: done.then_some(problem.as_str()),
        again: done.then_some(here.as_str()),
        cancel: cancel.as_deref(),
    })?;
    Ok(page(StatusCode::OK, html))
}

fn too_many(left: std::time::Duration) -> PageError {
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    crate::metrics::METRICS.rate_limited();
    PageError {
        retry_after: Some(secs),
        ..PageError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed attempts",
            format!("Too many failed attempts from here; try again in {secs} seconds."),
        )
    }
}

async fn sign_out(
    state: &AppState,
    base: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, PageError> {
    if let Err(answer) = signed_in_post(state, headers, body, |_| {
        Ok(see_other(&format!("{base}{PREFIX}/sign-in")))
    })
    .await?
    {
        return Ok(answer);
    }
    if let Some(value) = cookie(headers, SESSION_COOKIE) {
        state
            .entitlements
            .store()
            .session_remove(value)
            .await
            .map_err(|e| PageError::internal("ending a web session", e))?;
    }
    let mut response = see_other(&format!("{base}{PREFIX}/sign-in"));
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, SESSION_COOKIE, "", Some(0)),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name_in_any_header() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; tollgate_form=x"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("tollgate_session=s"),
        );
        assert_eq!(cookie(&headers, FORM_COOKIE), Some("x"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("s"));
        assert_eq!(cookie(&headers, "b"), None);
    }

    #[test]
    fn only_tokens_of_the_made_form_are_looked_up() {
        let token = random_token().unwrap();
        assert!(well_formed(&token), "{token}");
        for bad in [
            "",
            "short",
            &format!("{token}x"),
            &token.replace(|_| true, "%"),
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
    }

    #[test]
    fn every_value_a_user_sets_is_escaped() {
        let html = Portal {
            base: "",
            csrf: "c",
            account: "<b>bob</b>",
            notice: None,
            problem: Some("<i>no</i>"),
            licenses: vec![],
            devices: vec![DeviceView {
                id: "i".to_owned(),
                name: "<em>laptop</em>".to_owned(),
                since: String::new(),
            }],
            products: vec![ProductView {
                name: "<script>alert(1)</script>".to_owned(),
                refs: vec!["app/\"x\"/*".to_owned()],
                active: false,
            }],
            downloads: vec![],
        }
        .render()
        .unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&#60;script&#62;"), "{html}");
        assert!(!html.contains("<b>bob"), "{html}");
        assert!(!html.contains("<em>laptop"), "{html}");
        assert!(html.contains("(withdrawn)"), "{html}");
    }
}
