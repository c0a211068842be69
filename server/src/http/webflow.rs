//! The web flow's server side: OAuth 2.0 for native apps (RFC 8252) with PKCE (RFC 7636),
//! as tollgate's authenticator drives it. The authenticator listens on a loopback port and
//! sends the browser to `/account/authorize` with that address, a `state` and a code
//! challenge; the person signs in and allows the device (pages.rs); the browser is sent back to
//! the loopback address with a one-time code; the authenticator exchanges the code and its
//! verifier at `POST /api/v1/device-credentials` for a device credential.
//!
//! The address a code goes to must be `http://` on a loopback IP with a port (RFC 8252 §7.3;
//! not `localhost`, which a hosts file can point elsewhere), with no query, user information
//! or fragment: the pages redirect nowhere else, so they are no open redirect. A code is good
//! once, for a minute, for the same address, with the verifier of its challenge.
//!
//! ```text
//! GET   /api/v1/sign-in              {"authorize": PATH, "exchange": PATH}, relative to the service
//! POST  /api/v1/device-credentials   {"code", "code_verifier", "redirect_uri"} in,
//!                                    {"credential", "device", "account"} out
//! ```

use base64::Engine as _;
use http::{Method, StatusCode};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;
use warp::reply::Response;

use super::api::{Body, json, read_body};
use super::{AppState, HttpError};
use crate::store::{MAX_DEVICE_NAME, now};

/// The longest redirect address taken.
const MAX_REDIRECT: usize = 200;
/// The longest `state` taken.
const MAX_STATE: usize = 128;
/// An exchange is three short strings.
const MAX_EXCHANGE: usize = 4096;

/// Where a page of the flow sends the browser back to: a loopback address and the state the
/// program that listens there gave, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Return {
    pub redirect_uri: String,
    pub state: String,
}

/// What `/account/authorize` is asked for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AuthorizeRequest {
    pub back: Return,
    pub code_challenge: String,
    pub device: String,
}

/// What `/account/buy` (and `/account/buy/done`) is asked for, checked: a product, and where
/// to go back when the account holds it (none: the page says so itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BuyRequest {
    pub product: String,
    pub back: Option<Return>,
}

fn value<'p>(pairs: &'p [(String, String)], name: &str) -> Option<&'p str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Whether `text` is of RFC 3986's unreserved characters, as a `state` and a verifier are.
fn unreserved(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Whether `c` is a format character that changes how text around it shows (bidirectional
/// overrides and isolates, zero-width characters, the soft hyphen): a device names itself, so
/// its name may not make the page say something else than it does.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// A redirect address the pages may send a browser to: `http://` on a loopback IP, with a
/// port, and nothing that could carry it elsewhere.
pub(super) fn loopback_redirect(uri: &str) -> Result<url::Url, String> {
    let refused = || {
        format!(
            "the return address must be http://127.0.0.1:PORT/... or http://[::1]:PORT/... (a \
             program on this computer), not {}",
            super::api::quote(uri)
        )
    };
    if uri.len() > MAX_REDIRECT {
        return Err(refused());
    }
    let url = url::Url::parse(uri).map_err(|_| refused())?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    };
    // `port()` is `None` for the scheme's default port too: a written port is required.
    let plain = url.scheme() == "http"
        && url.port().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    if loopback && plain {
        Ok(url)
    } else {
        Err(refused())
    }
}

impl Return {
    /// `redirect_uri` and `state` of the parameters, checked.
    pub(super) fn from_pairs(pairs: &[(String, String)]) -> Result<Return, String> {
        let redirect_uri = value(pairs, "redirect_uri").unwrap_or_default();
        loopback_redirect(redirect_uri)?;
        let state = value(pairs, "state").unwrap_or_default();
        if state.is_empty() || state.len() > MAX_STATE || !unreserved(state) {
            return Err(
                "the request's state is missing or not of the form it must have".to_owned(),
            );
        }
        Ok(Return {
            redirect_uri: redirect_uri.to_owned(),
            state: state.to_owned(),
        })
    }

    fn append(&self, query: &mut url::form_urlencoded::Serializer<'_, String>) {
        query
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("state", &self.state);
    }

    /// The return address with `params`, the state and the issuer added: `iss` (RFC 9207)
    /// names this server, so that a program that started the flow with another server (one
    /// that sent the browser on here, to have the code sent to it) refuses the answer.
    pub(super) fn redirect(&self, issuer: &str, params: &[(&str, &str)]) -> String {
        let mut url = loopback_redirect(&self.redirect_uri)
            .unwrap_or_else(|_| unreachable!("checked when it was read"));
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in params {
                query.append_pair(name, value);
            }
            query
                .append_pair("state", &self.state)
                .append_pair("iss", issuer);
        }
        url.to_string()
    }

    /// The return address's origin, which a page's form may lead to.
    pub(super) fn origin(&self) -> String {
        loopback_redirect(&self.redirect_uri)
            .map(|url| url.origin().ascii_serialization())
            .unwrap_or_default()
    }
}

impl BuyRequest {
    /// Reads and checks the parameters: a product slug, and a return address with its state
    /// or neither.
    pub(super) fn from_pairs(pairs: &[(String, String)]) -> Result<BuyRequest, String> {
        let product = value(pairs, "product").unwrap_or_default();
        let slug_ok = (1..=64).contains(&product.len())
            && product
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !slug_ok {
            return Err("the request names no product".to_owned());
        }
        let back = match (value(pairs, "redirect_uri"), value(pairs, "state")) {
            (None, None) => None,
            _ => Some(Return::from_pairs(pairs)?),
        };
        Ok(BuyRequest {
            product: product.to_owned(),
            back,
        })
    }

    /// The buy page (`done`: the page the shop comes back to) for this request, under `base`.
    pub(super) fn page_path(&self, base: &str, done: bool) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("product", &self.product);
        if let Some(back) = &self.back {
            back.append(&mut query);
        }
        format!(
            "{base}{}/buy{}?{}",
            super::pages::PREFIX,
            if done { "/done" } else { "" },
            query.finish()
        )
    }
}

impl AuthorizeRequest {
    /// Reads and checks the parameters (of the page's query, or of its form); the error says
    /// what is wrong, for the page.
    pub(super) fn from_pairs(pairs: &[(String, String)]) -> Result<AuthorizeRequest, String> {
        let back = Return::from_pairs(pairs)?;
        if value(pairs, "code_challenge_method") != Some("S256") {
            return Err("the request must use code_challenge_method=S256".to_owned());
        }
        let code_challenge = value(pairs, "code_challenge").unwrap_or_default();
        let challenge_ok = code_challenge.len() == 43
            && code_challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !challenge_ok {
            return Err("the request's code_challenge is missing or not a SHA-256".to_owned());
        }
        let device = value(pairs, "device").unwrap_or_default().trim();
        if device.is_empty()
            || device.chars().count() > MAX_DEVICE_NAME
            || device.chars().any(|c| c.is_control() || invisible(c))
        {
            return Err(format!(
                "the request must name the device in 1 to {MAX_DEVICE_NAME} characters"
            ));
        }
        Ok(AuthorizeRequest {
            back,
            code_challenge: code_challenge.to_owned(),
            device: device.to_owned(),
        })
    }

    /// The authorize page for this request, under `base`: what sign-in goes on to.
    pub(super) fn page_path(&self, base: &str) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        self.back.append(&mut query);
        query
            .append_pair("code_challenge", &self.code_challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("device", &self.device);
        format!(
            "{base}{}/authorize?{}",
            super::pages::PREFIX,
            query.finish()
        )
    }
}

/// `GET /api/v1/sign-in`: that this service has the web flow, and where its two ends are.
pub(super) fn discovery(method: &Method) -> Result<Response, HttpError> {
    super::get_or_head(method)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "authorize": "account/authorize",
            "exchange": "api/v1/device-credentials",
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Exchange {
    code: String,
    code_verifier: String,
    redirect_uri: String,
}

/// Whether `verifier` is the one `challenge` was made from (RFC 7636 §4.6, S256).
fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    if !(43..=128).contains(&verifier.len()) || !unreserved(verifier) {
        return false;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    let made = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    made.len() == challenge.len() && bool::from(made.as_bytes().ct_eq(challenge.as_bytes()))
}

/// `POST /api/v1/device-credentials`: a code and its verifier in, a device credential out.
pub(super) async fn exchange(
    state: &AppState,
    method: &Method,
    body: Body,
) -> Result<Response, HttpError> {
    if method != Method::POST {
        return Err(HttpError::MethodNotAllowed("POST"));
    }
    let body = read_body(body, MAX_EXCHANGE).await?;
    let asked: Exchange = serde_json::from_slice(&body).map_err(|e| {
        HttpError::BadRequest(format!(
            "the body must be JSON like {{\"code\", \"code_verifier\", \"redirect_uri\"}}: {e}"
        ))
    })?;
    let store = state.entitlements.store();
    let taken = store
        .device_code_take(&asked.code)
        .await
        .map_err(|e| internal("taking a sign-in code", e))?;
    let Some(taken) = taken else {
        return Err(HttpError::InvalidGrant);
    };
    let same_address = taken.redirect_uri == asked.redirect_uri;
    if taken.expires <= now()
        || !same_address
        || !verifier_matches(&asked.code_verifier, &taken.challenge)
    {
        return Err(HttpError::InvalidGrant);
    }
    let account = store
        .account_get(&taken.account)
        .await
        .map_err(|_| HttpError::InvalidGrant)?;
    if !account.active {
        return Err(HttpError::CredentialsRefused(
            crate::entitlements::Refusal::AccountInactive,
        ));
    }
    let (device, credential) = match store.device_add(&account.name, &taken.device).await {
        Ok(made) => made,
        Err(crate::store::StoreError::Conflict(why)) => return Err(HttpError::Conflict(why)),
        Err(e) => return Err(internal("signing a device in", e)),
    };
    tracing::info!(account = %account.name, device = %device.id, "signed a device in");
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "credential": credential,
            "device": device.id,
            "account": account.name,
        }),
    ))
}

fn internal(doing: &str, e: impl std::fmt::Display) -> HttpError {
    tracing::error!("{doing} failed: {e}");
    HttpError::Internal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs_of(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn asked(redirect: &str) -> Vec<(String, String)> {
        pairs_of(&[
            ("redirect_uri", redirect),
            ("state", "s-1"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("device", "flatpak on laptop"),
        ])
    }

    #[test]
    fn only_loopback_addresses_with_a_port_are_return_addresses() {
        for good in [
            "http://127.0.0.1:4711/done",
            "http://127.0.0.1:4711",
            "http://[::1]:8080/x",
            "http://127.1.2.3:9/",
        ] {
            assert!(loopback_redirect(good).is_ok(), "{good}");
        }
        for bad in [
            "https://127.0.0.1:4711/done",
            "http://localhost:4711/done",
            "http://127.0.0.1/done",
            "http://evil.example:4711/",
            "http://127.0.0.1.evil.example:4711/",
            "http://user@127.0.0.1:4711/",
            "http://127.0.0.1:4711/?next=https://evil.example",
            "http://127.0.0.1:4711/#x",
            "//evil.example/",
            "javascript:alert(1)",
            "",
        ] {
            assert!(loopback_redirect(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_are_checked_and_rebuilt_from_what_was_checked() {
        let request = AuthorizeRequest::from_pairs(&asked("http://127.0.0.1:4711/done")).unwrap();
        assert_eq!(request.device, "flatpak on laptop");
        let again = url::Url::parse(&format!("http://x{}", request.page_path("/shop"))).unwrap();
        assert_eq!(again.path(), "/shop/account/authorize");
        let pairs: Vec<(String, String)> = again.query_pairs().into_owned().collect();
        assert_eq!(AuthorizeRequest::from_pairs(&pairs).unwrap(), request);
        assert_eq!(
            request
                .back
                .redirect("http://shop.example", &[("code", "abc")]),
            "http://127.0.0.1:4711/done?code=abc&state=s-1&iss=http%3A%2F%2Fshop.example"
        );
        assert_eq!(request.back.origin(), "http://127.0.0.1:4711");

        // A buy page: a product, and a return address with its state or neither.
        let buy = BuyRequest::from_pairs(&pairs_of(&[("product", "pro")])).unwrap();
        assert_eq!(buy.back, None);
        assert_eq!(buy.page_path("", true), "/account/buy/done?product=pro");
        let mut with_back = asked("http://127.0.0.1:4711/done");
        with_back.push(("product".to_owned(), "pro".to_owned()));
        let buy = BuyRequest::from_pairs(&with_back).unwrap();
        assert_eq!(buy.back.as_ref(), Some(&request.back));
        for bad in [
            pairs_of(&[("product", "Pro!")]),
            pairs_of(&[("product", "pro"), ("state", "s")]),
            pairs_of(&[
                ("product", "pro"),
                ("redirect_uri", "https://evil.example/"),
                ("state", "s"),
            ]),
        ] {
            assert!(BuyRequest::from_pairs(&bad).is_err(), "{bad:?}");
        }

        let mut wrong = asked("http://127.0.0.1:4711/done");
        wrong[3].1 = "plain".to_owned();
        assert!(AuthorizeRequest::from_pairs(&wrong).is_err());
        let mut wrong = asked("http://127.0.0.1:4711/done");
        wrong[1].1 = "a b".to_owned();
        assert!(AuthorizeRequest::from_pairs(&wrong).is_err());
        for name in ["new\nline", "evil\u{202E}gnp.exe", "zero\u{200B}width"] {
            let mut wrong = asked("http://127.0.0.1:4711/done");
            wrong[4].1 = name.to_owned();
            assert!(AuthorizeRequest::from_pairs(&wrong).is_err(), "{name:?}");
        }
        assert!(AuthorizeRequest::from_pairs(&asked("http://evil.example:1/")).is_err());
    }

    #[test]
    fn the_verifier_is_checked_as_rfc_7636_says() {
        // RFC 7636, appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(verifier_matches(verifier, CHALLENGE));
        assert!(!verifier_matches(&verifier.replace('d', "e"), CHALLENGE));
        assert!(!verifier_matches("short", CHALLENGE));
    }
}
