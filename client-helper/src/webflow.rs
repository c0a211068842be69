//! The web flow's client side: signing in in the browser, as OAuth 2.0 for native apps does it
//! (RFC 8252, with PKCE, RFC 7636). The service says it has the flow (`GET
//! {url}/api/v1/sign-in`); the authenticator listens on a loopback port, has flatpak open the
//! service's sign-in page with that address, a random `state` and the challenge of a random
//! verifier, and waits for the browser to come back with a one-time code, which it exchanges
//! (with the verifier) for a device credential.
//!
//! Only an answer carrying this flow's `state` is taken; any other request to the port gets a
//! page saying so and changes nothing, so a page elsewhere that guesses the port cannot finish
//! the flow with a code of its own. The answer must also name the service it started with as
//! its issuer (`iss`, RFC 9207): a look-alike service that sends the browser on to the real
//! one's pages, to have the real code exchanged with it, gets an answer naming the real one,
//! which is refused, so the code never reaches it.

use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tollgate_plugin_api::url::normalise;
use tollgate_plugin_api::{Credential, Secret};

/// The path the browser comes back to.
const RETURN_PATH: &str = "/done";
/// The most of a request from the browser read.
const MAX_REQUEST: usize = 16 * 1024;

/// Where the service's two ends of the flow are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ends {
    pub authorize: String,
    pub exchange: String,
}

#[derive(Deserialize)]
struct Discovery {
    authorize: String,
    exchange: String,
}

/// A path the service may name for an end: relative, of plain characters, going nowhere up.
fn relative_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.split('/').any(|part| part.is_empty() || part == "..")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b))
}

/// The service's web flow, if it has one (an older service, or one that cannot be reached,
/// has none: the caller asks at flatpak's prompt instead).
pub(crate) async fn discover(client: &reqwest::Client, url: &str) -> Option<Ends> {
    let response = client
        .get(format!("{url}/api/v1/sign-in"))
        .send()
        .await
        .ok()?;
    if response.status() != reqwest::StatusCode::OK {
        return None;
    }
    let found: Discovery = response.json().await.ok()?;
    (relative_path(&found.authorize) && relative_path(&found.exchange)).then(|| Ends {
        authorize: format!("{url}/{}", found.authorize),
        exchange: format!("{url}/{}", found.exchange),
    })
}

fn random_text() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// RFC 7636's S256 challenge of `verifier`.
pub(crate) fn challenge_of(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

/// One sign-in under way: the port it listens on and its secrets.
pub(crate) struct Flow {
    listener: TcpListener,
    /// The service the flow is with, normalised: what the answer's `iss` must be.
    issuer: String,
    redirect_uri: String,
    state: String,
    verifier: zeroize::Zeroizing<String>,
}

/// What came back to the loopback port.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A code, to exchange.
    Code(String),
    /// The person said no in the browser.
    Denied,
    /// Back without a code, nor a no: a buy page saying the account holds the product now.
    Back,
    /// The answer names another issuer than the service (or none): refused, with why.
    Refused(String),
}

impl Flow {
    /// Listens on a port of 127.0.0.1 the system picks, for a flow with the service `url`
    /// (normalised).
    pub(crate) async fn start(url: &str) -> anyhow::Result<Flow> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on a loopback port: {e}"))?;
        let port = listener.local_addr()?.port();
        Ok(Flow {
            listener,
            issuer: url.to_owned(),
            redirect_uri: format!("http://127.0.0.1:{port}{RETURN_PATH}"),
            state: random_text()?,
            verifier: zeroize::Zeroizing::new(random_text()?),
        })
    }

    /// The sign-in page to open, for the device `device`.
    pub(crate) fn page(&self, ends: &Ends, device: &str) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("state", &self.state)
            .append_pair("code_challenge", &challenge_of(&self.verifier))
            .append_pair("code_challenge_method", "S256")
            .append_pair("device", device)
            .finish();
        format!("{}?{query}", ends.authorize)
    }

    /// The service's buy page for the product `slug`, coming back here.
    pub(crate) fn buy_page(&self, url: &str, slug: &str) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("product", slug)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("state", &self.state)
            .finish();
        format!("{url}/account/buy?{query}")
    }

    /// Waits for the browser to come back with this flow's state. Requests that do not carry
    /// it are answered and ignored.
    pub(crate) async fn answer(&self) -> Answer {
        loop {
            let Ok((stream, _)) = self.listener.accept().await else {
                continue;
            };
            if let Some(answer) = self.one_request(stream).await {
                return answer;
            }
        }
    }

    async fn one_request(&self, mut stream: TcpStream) -> Option<Answer> {
        let target = tokio::time::timeout(Duration::from_secs(10), read_target(&mut stream))
            .await
            .ok()
            .flatten();
        let Some(target) = target else {
            let _ = reply(
                &mut stream,
                "400 Bad Request",
                "Not a request this page takes.",
            )
            .await;
            return None;
        };
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let value = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        if path != RETURN_PATH || !value("state").is_some_and(|s| equal(s, &self.state)) {
            let _ = reply(
                &mut stream,
                "400 Bad Request",
                "This is not the answer to the sign-in flatpak is waiting for: nothing was done. \
                 Go back to the sign-in page flatpak opened.",
            )
            .await;
            return None;
        }
        let issuer = value("iss").unwrap_or_default();
        if normalise(issuer).ok().as_deref() != Some(self.issuer.as_str()) {
            let _ = reply(
                &mut stream,
                "400 Bad Request",
                "This answer comes from another server than the one flatpak asked: it was \
                 refused, and nothing was signed in.",
            )
            .await;
            return Some(Answer::Refused(format!(
                "the browser came back from {}, not from {}: refused (a remote may be posing \
                 as this vendor's); nothing was signed in",
                if issuer.is_empty() {
                    "a server that does not say which it is"
                } else {
                    issuer
                },
                self.issuer
            )));
        }
        if let Some(code) = value("code").filter(|c| !c.is_empty()) {
            let _ = reply(
                &mut stream,
                "200 OK",
                "Signed in. You can close this page and go back to flatpak.",
            )
            .await;
            return Some(Answer::Code(code.to_owned()));
        }
        if value("error").is_some() {
            let _ = reply(&mut stream, "200 OK", "Cancelled. You can close this page.").await;
            return Some(Answer::Denied);
        }
        let _ = reply(
            &mut stream,
            "200 OK",
            "Done. You can close this page and go back to flatpak.",
        )
        .await;
        Some(Answer::Back)
    }

    /// Exchanges `code` for a device credential.
    pub(crate) async fn exchange(
        &self,
        client: &reqwest::Client,
        ends: &Ends,
        code: &str,
    ) -> Result<Credential, String> {
        #[derive(Deserialize)]
        struct Made {
            credential: String,
        }
        #[derive(Deserialize)]
        struct Refused {
            #[serde(default)]
            message: String,
        }
        let body = serde_json::json!({
            "code": code,
            "code_verifier": self.verifier.as_str(),
            "redirect_uri": self.redirect_uri,
        });
        let response = client
            .post(&ends.exchange)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", ends.exchange))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("cannot read the answer of {}: {e}", ends.exchange))?;
        if status == reqwest::StatusCode::OK
            && let Ok(made) = serde_json::from_str::<Made>(&text)
        {
            return Ok(Credential::LicenseKey(Secret::new(made.credential)));
        }
        let why = serde_json::from_str::<Refused>(&text)
            .map(|r| r.message)
            .unwrap_or_default();
        Err(format!(
            "{} did not sign this device in ({status}){}",
            ends.exchange,
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        ))
    }
}

/// The target of an HTTP request's first line (`GET <target> HTTP/1.1`), once its head is in.
async fn read_target(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_REQUEST {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = std::str::from_utf8(&head).ok()?.lines().next()?;
    let mut parts = line.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    (method == "GET").then(|| target.to_owned())
}

/// A short page for the browser.
async fn reply(stream: &mut TcpStream, status: &str, text: &str) -> std::io::Result<()> {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><title>tollgate</title></head>\
         <body><main><p>{text}</p></main></body></html>\n"
    );
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nContent-Security-Policy: default-src 'none'\r\n\
         Connection: close\r\n\r\n",
        html.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(html.as_bytes()).await?;
    stream.shutdown().await
}

/// Seconds a page in the browser may take; `TOLLGATE_WEBFLOW_TIMEOUT` overrides it.
pub(crate) const DEFAULT_WEBFLOW_SECS: u64 = 600;

/// How long a page in the browser may take.
pub(crate) fn limit() -> Duration {
    let secs = std::env::var("TOLLGATE_WEBFLOW_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_WEBFLOW_SECS);
    Duration::from_secs(secs)
}

/// What the device calls itself at the service: the program, the machine's name, and what
/// for (`detail`).
pub(crate) fn device_name(program: &str, detail: Option<&str>) -> String {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let host = if host.is_empty() {
        "this computer".to_owned()
    } else {
        host
    };
    let detail = detail.map(|d| format!(" ({d})")).unwrap_or_default();
    let name: String = format!("{program} on {host}{detail}")
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect();
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_rfc_7636s() {
        // RFC 7636, appendix B.
        assert_eq!(
            challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn the_service_names_only_paths_below_itself() {
        for good in ["account/authorize", "api/v1/device-credentials"] {
            assert!(relative_path(good), "{good}");
        }
        for bad in [
            "",
            "/account/authorize",
            "https://evil.example/a",
            "../x",
            "a//b",
            "a?b",
        ] {
            assert!(!relative_path(bad), "{bad}");
        }
    }

    /// Only the flow's own state is taken: a request without it, or with another, is answered
    /// and the flow goes on waiting; the right one ends it with its code.
    #[tokio::test]
    async fn only_the_answer_with_the_flows_state_is_taken() {
        let flow = Flow::start("http://127.0.0.1:9").await.unwrap();
        let ends = Ends {
            authorize: "http://127.0.0.1:9/account/authorize".to_owned(),
            exchange: String::new(),
        };
        let page = url::Url::parse(&flow.page(&ends, "box")).unwrap();
        let asked: std::collections::HashMap<String, String> =
            page.query_pairs().into_owned().collect();
        let redirect = asked["redirect_uri"].clone();
        let state = asked["state"].clone();
        assert_eq!(asked["code_challenge"], challenge_of(&flow.verifier));
        assert!(redirect.starts_with("http://127.0.0.1:"), "{redirect}");

        let get = |target: String| async move {
            let addr = redirect_addr(&target);
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let path = &target[target.find("/done").unwrap()..];
            stream
                .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            answer
        };
        let waiting = tokio::spawn(async move { flow.answer().await });
        let wrong = get(format!("{redirect}?code=evil&state=guessed")).await;
        assert!(wrong.starts_with("HTTP/1.1 400"), "{wrong}");
        let none = get(format!("{redirect}?code=evil")).await;
        assert!(none.starts_with("HTTP/1.1 400"), "{none}");
        assert!(!waiting.is_finished());
        let right = get(format!(
            "{redirect}?code=good&state={state}&iss=http%3A%2F%2F127.0.0.1%3A9%2F"
        ))
        .await;
        assert!(right.contains("Signed in."), "{right}");
        assert_eq!(waiting.await.unwrap(), Answer::Code("good".to_owned()));
    }

    /// An answer with the right state that names another issuer, or none, ends the flow
    /// refused: its code is never exchanged.
    #[tokio::test]
    async fn an_answer_from_another_issuer_is_refused() {
        for iss in ["&iss=http%3A%2F%2Freal.example%2F", ""] {
            let flow = Flow::start("http://look-alike.example").await.unwrap();
            let redirect = flow.redirect_uri.clone();
            let target = format!("/done?code=real&state={}{iss}", flow.state);
            let waiting = tokio::spawn(async move { flow.answer().await });
            let mut stream = TcpStream::connect(redirect_addr(&redirect)).await.unwrap();
            stream
                .write_all(format!("GET {target} HTTP/1.1\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
            match waiting.await.unwrap() {
                Answer::Refused(why) => assert!(why.contains("not from"), "{why}"),
                other => panic!("{iss}: {other:?}"),
            }
        }
    }

    fn redirect_addr(url: &str) -> std::net::SocketAddr {
        let url = url::Url::parse(url).unwrap();
        format!("127.0.0.1:{}", url.port().unwrap())
            .parse()
            .unwrap()
    }
}
