//! The entitlement service's public endpoints: `POST /api/v1/tokens` (a credential and refs in,
//! tokens out), `GET /api/v1/entitlements` (what a credential opens, so that a client can check
//! one before keeping it) and `GET /.well-known/jwks.json` (the public keys tokens are signed
//! with).

use std::net::IpAddr;
use std::pin::Pin;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::Deserialize;
use tollgate_ostree_format::RefName;
use warp::reply::Response;

use super::{AppState, HttpError};
use crate::clients::Client;
use crate::entitlements::{Credential, IssueError, RefKind};
use crate::index::Access;
use crate::store::now;
use crate::tokens::{LEEWAY_SECS, SubsetError, SubsetRequest};

/// A request body, not yet read, and when it must have arrived whole.
pub(super) struct Body {
    pub stream: Pin<Box<dyn Stream<Item = Result<Bytes, hyper::Error>> + Send>>,
    pub deadline: tokio::time::Instant,
}

/// Token requests are small: a list of refs.
const MAX_TOKEN_REQUEST: usize = 64 * 1024;
/// Refs one request may ask for (flatpak asks for one transaction's refs at once).
const MAX_REFS: usize = 256;
/// The longest a token_subset token may live: ten years, as flat-manager's long-lived tokens.
const MAX_SUBSET_DURATION: i64 = 10 * 366 * 24 * 3600;

/// Reads a body of at most `limit` bytes, which must arrive by its deadline: a body sent a
/// byte at a time would otherwise hold its connection for hours.
pub(super) async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, HttpError> {
    let mut out = BytesMut::new();
    loop {
        let next = tokio::time::timeout_at(body.deadline, body.stream.next())
            .await
            .map_err(|_| HttpError::BodyTooSlow)?;
        let Some(chunk) = next else { break };
        let chunk = chunk
            .map_err(|_| HttpError::BadRequest("the request body could not be read".to_owned()))?;
        if out.len() + chunk.len() > limit {
            return Err(HttpError::PayloadTooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// A JSON answer.
pub(super) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// What a client sends to `/api/v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    refs: Vec<String>,
    /// The repository's name; `""` (or absent) for the one served at `/`.
    #[serde(default)]
    repo: String,
}

/// Shows a client's own input in an error without letting it grow the answer.
pub(super) fn quote(text: &str) -> String {
    let short: String = text.chars().take(100).collect();
    if short.len() < text.len() {
        format!("{short:?}…")
    } else {
        format!("{short:?}")
    }
}

pub(super) async fn tokens(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    client: Client,
    body: Body,
) -> Result<Response, HttpError> {
    if method != Method::POST {
        return Err(HttpError::MethodNotAllowed("POST"));
    }
    let body = read_body(body, MAX_TOKEN_REQUEST).await?;
    let request: TokenRequest = serde_json::from_slice(&body).map_err(|e| {
        HttpError::BadRequest(format!(
            "the body must be JSON like {{\"refs\": [\"app/...\"], \"repo\": \"\"}}: {e}"
        ))
    })?;
    if request.refs.is_empty() || request.refs.len() > MAX_REFS {
        return Err(HttpError::BadRequest(format!(
            "ask for 1 to {MAX_REFS} refs"
        )));
    }
    for r in &request.refs {
        RefName::new(r)
            .map_err(|_| HttpError::BadRequest(format!("{} is not a valid ref name", quote(r))))?;
    }
    let served = state
        .by_token_name(&request.repo)
        .ok_or(HttpError::UnknownRepo)?;

    // What the index says of each ref; a ref it does not know may have been published a
    // moment ago: bring it up to date once before calling it unknown.
    let classify = || {
        let index = served.index.load();
        request
            .refs
            .iter()
            .map(|r| {
                let kind = match index.ref_file(r) {
                    Access::Public => RefKind::Public,
                    Access::Gated(_) => RefKind::Gated,
                    Access::Unknown => RefKind::Unknown,
                };
                (r.clone(), kind)
            })
            .collect::<Vec<_>>()
    };
    let mut refs = classify();
    if refs.iter().any(|(_, k)| *k == RefKind::Unknown) {
        served.index.refresh().await;
        refs = classify();
    }
    if refs.iter().all(|(_, k)| *k == RefKind::Unknown) {
        return Err(HttpError::UnknownRefs);
    }

    let (credential, client) = credential_and_client(headers, client)?;
    let answer = state
        .entitlements
        .issue(credential, &request.repo, state.sole_repo(), &refs, client)
        .await
        .map_err(|e| issue_error(e, "issuing a token"))?;
    Ok(json(StatusCode::OK, &answer))
}

/// The credential a request presents, and the address its failures count against.
fn credential_and_client(
    headers: &HeaderMap,
    client: Client,
) -> Result<(Option<Credential>, IpAddr), HttpError> {
    let credential = super::authorization(headers)?.map(|v| Credential::from_header(v.as_bytes()));
    Ok((credential, client.ip))
}

pub(super) fn issue_error(e: IssueError, doing: &str) -> HttpError {
    match e {
        IssueError::NoCredentials => HttpError::CredentialsRequired,
        IssueError::InvalidCredentials => HttpError::InvalidCredentials,
        IssueError::Refused(refusal) => HttpError::CredentialsRefused(refusal),
        IssueError::TooManyFailures(left) => {
            HttpError::TooManyFailures(left.as_secs() + u64::from(left.subsec_nanos() > 0))
        }
        other => {
            tracing::error!("{doing} failed: {other:#}");
            HttpError::Internal
        }
    }
}

/// What the presented credential opens: `{kind, account?, products: [{slug, name, refs,
/// active}], expires}`. Wrong credentials get the same answers, and count the same, as at
/// `/api/v1/tokens`.
pub(super) async fn entitlements(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    client: Client,
) -> Result<Response, HttpError> {
    if method != Method::GET {
        return Err(HttpError::MethodNotAllowed("GET"));
    }
    let (credential, client) = credential_and_client(headers, client)?;
    let entitled = state
        .entitlements
        .entitled(credential, client)
        .await
        .map_err(|e| issue_error(e, "checking a credential"))?;
    Ok(json(StatusCode::OK, &entitled))
}

/// flat-manager's `POST /api/v1/token_subset`: a flat-manager token (Bearer) and
/// `{sub, scope, duration, prefixes?, apps?, repos?, name}` in, `{token}` out, the new token a
/// subset of the presented one and expiring no later.
pub(super) async fn token_subset(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    if method != Method::POST {
        return Err(HttpError::MethodNotAllowed("POST"));
    }
    let body = read_body(body, MAX_TOKEN_REQUEST).await?;
    let request: SubsetRequest = serde_json::from_slice(&body).map_err(|e| {
        HttpError::BadRequest(format!(
            "the body must be JSON like {{\"sub\", \"scope\", \"duration\", \"name\", \
             \"prefixes\"?, \"apps\"?, \"repos\"?}}: {e}"
        ))
    })?;
    if !(1..=MAX_SUBSET_DURATION).contains(&request.duration) {
        return Err(HttpError::BadRequest(format!(
            "duration {} is out of range: give 1 to {MAX_SUBSET_DURATION} seconds",
            request.duration
        )));
    }
    let parent = super::authorization(headers)?
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or(HttpError::CredentialsRequired)?;
    match state.verifier.load().flat_manager_subset(parent, &request) {
        Ok(token) => Ok(json(StatusCode::OK, &serde_json::json!({ "token": token }))),
        Err(SubsetError::NotConfigured) => Err(HttpError::Missing(
            "token_subset needs a flat-manager secret in the configuration".to_owned(),
        )),
        Err(SubsetError::Parent(e)) => {
            tracing::debug!("refused a token_subset parent: {e}");
            Err(HttpError::InvalidToken)
        }
        Err(SubsetError::NotSubset) => Err(HttpError::NotEntitled),
    }
}

/// The Ed25519 keys that tokens still valid can be signed with, as a JSON Web Key Set.
pub(super) async fn jwks(state: &AppState, method: &Method) -> Result<Response, HttpError> {
    super::get_or_head(method)?;
    let overlap = state.entitlements.ttl() + LEEWAY_SECS;
    let since = now().saturating_sub(i64::try_from(overlap).unwrap_or(i64::MAX));
    let keys = state
        .entitlements
        .store()
        .keys_valid_since(since)
        .await
        .map_err(|e| {
            tracing::error!("reading the signing keys failed: {e:#}");
            HttpError::Internal
        })?;
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| {
            serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "use": "sig",
                "kid": k.kid,
                "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&k.public_key),
            })
        })
        .collect();
    let mut response = json(StatusCode::OK, &serde_json::json!({ "keys": keys }));
    // Other servers fetch this often; a minute of caching keeps a rotation visible soon.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Ok(response)
}
