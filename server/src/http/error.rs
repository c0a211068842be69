//! The one error type of every HTTP answer that is not a success.
//!
//! Each error maps to a status and a stable machine-readable `error-type`; the JSON body says
//! what to do in words a person can act on. Internal detail (paths on the server, OS errors,
//! database errors) goes to the log, never to the client.

use http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use crate::entitlements::Refusal;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HttpError {
    /// Not a file this server serves: unknown, outside the grammar, or not there.
    NotFound,
    MethodNotAllowed(&'static str),
    UriTooLong,
    /// The request's head (its line and headers) is over [`super::MAX_HEAD`].
    HeadTooLarge,
    /// A gated file, and no token.
    TokenRequired,
    /// A gated file, and a token that is not valid (expired, forged, unknown key, ...).
    InvalidToken,
    /// A gated file, and a valid token that covers none of the refs that reach it.
    NotEntitled,
    /// The request's body or parameters are wrong; the message says how.
    BadRequest(String),
    PayloadTooLarge,
    /// The request body did not arrive whole in time.
    BodyTooSlow,
    /// No credentials where they are needed.
    CredentialsRequired,
    /// Credentials that are wrong: one answer for a wrong secret and an unknown key alike.
    InvalidCredentials,
    /// The right credentials, for a license or account that cannot get tokens now.
    CredentialsRefused(Refusal),
    /// Too many failed attempts; try again after this many seconds.
    TooManyFailures(u64),
    /// A sign-in code that is unknown, used, expired, or presented with the wrong verifier or
    /// return address.
    InvalidGrant,
    /// An order hook that is unsigned, signed wrongly, or signed too long ago: why.
    BadSignature(String),
    /// No repository served by that name.
    UnknownRepo,
    /// None of the refs asked for exists.
    UnknownRefs,
    /// No admin token is configured, so the admin API is closed.
    AdminDisabled,
    /// A missing or wrong admin token.
    AdminUnauthorized,
    /// `/metrics` from a client that may not read it: a wrong or missing scrape token, or,
    /// without one configured, a client that is not on loopback.
    MetricsRefused {
        token_configured: bool,
    },
    /// An admin operation on something that is not there, or would conflict.
    Missing(String),
    Conflict(String),
    /// Something failed on the server's side; the cause was logged.
    Internal,
}

impl HttpError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            HttpError::NotFound | HttpError::UnknownRepo | HttpError::UnknownRefs => {
                StatusCode::NOT_FOUND
            }
            HttpError::Missing(_) => StatusCode::NOT_FOUND,
            HttpError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::UriTooLong => StatusCode::URI_TOO_LONG,
            HttpError::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HttpError::TokenRequired
            | HttpError::InvalidToken
            | HttpError::CredentialsRequired
            | HttpError::InvalidCredentials
            | HttpError::CredentialsRefused(_)
            | HttpError::BadSignature(_) => StatusCode::UNAUTHORIZED,
            HttpError::NotEntitled | HttpError::AdminDisabled => StatusCode::FORBIDDEN,
            HttpError::AdminUnauthorized => StatusCode::UNAUTHORIZED,
            HttpError::MetricsRefused {
                token_configured: true,
            } => StatusCode::UNAUTHORIZED,
            HttpError::MetricsRefused {
                token_configured: false,
            } => StatusCode::FORBIDDEN,
            HttpError::BadRequest(_) | HttpError::InvalidGrant => StatusCode::BAD_REQUEST,
            HttpError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::BodyTooSlow => StatusCode::REQUEST_TIMEOUT,
            HttpError::TooManyFailures(_) => StatusCode::TOO_MANY_REQUESTS,
            HttpError::Conflict(_) => StatusCode::CONFLICT,
            HttpError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn error_type(&self) -> &'static str {
        match self {
            HttpError::NotFound | HttpError::Missing(_) => "not-found",
            HttpError::MethodNotAllowed(_) => "method-not-allowed",
            HttpError::UriTooLong => "uri-too-long",
            HttpError::HeadTooLarge => "head-too-large",
            HttpError::TokenRequired => "token-required",
            HttpError::InvalidToken => "invalid-token",
            HttpError::NotEntitled => "not-entitled",
            HttpError::BadRequest(_) => "bad-request",
            HttpError::PayloadTooLarge => "payload-too-large",
            HttpError::BodyTooSlow => "request-timeout",
            HttpError::CredentialsRequired => "credentials-required",
            HttpError::InvalidCredentials => "invalid-credentials",
            HttpError::CredentialsRefused(refusal) => refusal.error_type(),
            HttpError::TooManyFailures(_) => "too-many-failures",
            HttpError::InvalidGrant => "invalid-grant",
            HttpError::BadSignature(_) => "invalid-signature",
            HttpError::UnknownRepo => "unknown-repo",
            HttpError::UnknownRefs => "unknown-refs",
            HttpError::Conflict(_) => "conflict",
            HttpError::AdminDisabled => "admin-disabled",
            HttpError::AdminUnauthorized => "admin-unauthorized",
            HttpError::MetricsRefused { .. } => "metrics-refused",
            HttpError::Internal => "internal-error",
        }
    }

    fn message(&self) -> String {
        match self {
            HttpError::NotFound => "no such file in this repository".to_owned(),
            HttpError::MethodNotAllowed(allowed) => format!("only {allowed} are supported here"),
            HttpError::UriTooLong => {
                "the request path is too long to name a repository file".to_owned()
            }
            HttpError::HeadTooLarge => format!(
                "the request's headers are over {} KiB: send fewer or shorter ones",
                super::MAX_HEAD / 1024
            ),
            HttpError::TokenRequired => "this content needs a download token: configure the \
                remote's authenticator, or pass one with --http-header='Authorization=Bearer TOKEN', \
                or put a license key in the remote's URL as its password (https://key:tg_...@host/)"
                .to_owned(),
            HttpError::InvalidToken => "the download token is not valid (expired, or not issued \
                for this server): get a new one"
                .to_owned(),
            HttpError::NotEntitled => "the download token does not cover this content".to_owned(),
            HttpError::BadRequest(why)
            | HttpError::Missing(why)
            | HttpError::Conflict(why)
            | HttpError::BadSignature(why) => {
                why.clone()
            }
            HttpError::PayloadTooLarge => "the request body is too large".to_owned(),
            HttpError::BodyTooSlow => {
                "the request body came too slowly: send it whole at once".to_owned()
            }
            HttpError::CredentialsRequired => "give a license key (Authorization: Bearer \
                tg_...) or an account (Authorization: Basic ...)"
                .to_owned(),
            HttpError::InvalidCredentials => {
                "the license key or the account's name and password are not right".to_owned()
            }
            HttpError::CredentialsRefused(refusal) => refusal.message().to_owned(),
            HttpError::TooManyFailures(secs) => {
                format!("too many failed attempts: try again in {secs} seconds")
            }
            HttpError::InvalidGrant => "the sign-in code is not valid: it was used already, is \
                over a minute old, or was given for another request; sign in again"
                .to_owned(),
            HttpError::UnknownRepo => "no repository is served under that name".to_owned(),
            HttpError::AdminDisabled => "the admin API is off: give the server an admin token \
                (TOLLGATE_ADMIN_TOKEN, or admin-token-file in the configuration)"
                .to_owned(),
            HttpError::AdminUnauthorized => {
                "the admin API needs Authorization: Bearer <admin token>".to_owned()
            }
            HttpError::MetricsRefused {
                token_configured: true,
            } => {
                "/metrics needs Authorization: Bearer <the [metrics] token-file's token>".to_owned()
            }
            HttpError::MetricsRefused {
                token_configured: false,
            } => "/metrics is served to loopback clients only; to scrape it from elsewhere, \
                  set [metrics] token-file in the server's configuration"
                .to_owned(),
            HttpError::UnknownRefs => {
                "none of the refs asked for exists in the repository".to_owned()
            }
            HttpError::Internal => {
                "the server failed to answer; try again, and tell the operator if it persists"
                    .to_owned()
            }
        }
    }

    pub(crate) fn into_response(self) -> Response {
        if matches!(self, HttpError::TooManyFailures(_)) {
            crate::metrics::METRICS.rate_limited();
        }
        let mut response = super::api::json(
            self.status(),
            &serde_json::json!({
                "status": self.status().as_u16(),
                "error-type": self.error_type(),
                "message": self.message(),
            }),
        );
        let headers = response.headers_mut();
        match &self {
            HttpError::MethodNotAllowed(allowed) => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allowed));
            }
            // RFC 6750: a challenge for the Bearer scheme, with the error when a token failed;
            // then one for Basic, which an ostree remote's URL can carry (a license key as the
            // password, or an account's name and password).
            HttpError::TokenRequired
            | HttpError::CredentialsRequired
            | HttpError::InvalidToken
            | HttpError::InvalidCredentials
            | HttpError::CredentialsRefused(_) => {
                headers.append(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(if self == HttpError::InvalidToken {
                        "Bearer realm=\"tollgate\", error=\"invalid_token\""
                    } else {
                        "Bearer realm=\"tollgate\""
                    }),
                );
                headers.append(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"tollgate\", charset=\"UTF-8\""),
                );
            }
            HttpError::TooManyFailures(secs) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            // As hyper does for a head it refuses itself: what follows on the connection may
            // be the rest of the oversized head, so nothing more is read from it.
            HttpError::HeadTooLarge => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    /// One of each kind of error. The match below has no catch-all, so a new kind does not
    /// compile until it is added there, and beside it here.
    fn one_of_each() -> Vec<HttpError> {
        let mut all = vec![
            HttpError::NotFound,
            HttpError::MethodNotAllowed("GET, HEAD"),
            HttpError::UriTooLong,
            HttpError::HeadTooLarge,
            HttpError::TokenRequired,
            HttpError::InvalidToken,
            HttpError::NotEntitled,
            HttpError::BadRequest("why".to_owned()),
            HttpError::PayloadTooLarge,
            HttpError::BodyTooSlow,
            HttpError::CredentialsRequired,
            HttpError::InvalidCredentials,
            HttpError::TooManyFailures(7),
            HttpError::InvalidGrant,
            HttpError::BadSignature("why".to_owned()),
            HttpError::UnknownRepo,
            HttpError::UnknownRefs,
            HttpError::AdminDisabled,
            HttpError::AdminUnauthorized,
            HttpError::MetricsRefused {
                token_configured: true,
            },
            HttpError::MetricsRefused {
                token_configured: false,
            },
            HttpError::Missing("no such product".to_owned()),
            HttpError::Conflict("held".to_owned()),
            HttpError::Internal,
        ];
        all.extend(Refusal::ALL.map(HttpError::CredentialsRefused));
        for e in &all {
            match e {
                HttpError::NotFound
                | HttpError::MethodNotAllowed(_)
                | HttpError::UriTooLong
                | HttpError::HeadTooLarge
                | HttpError::TokenRequired
                | HttpError::InvalidToken
                | HttpError::NotEntitled
                | HttpError::BadRequest(_)
                | HttpError::PayloadTooLarge
                | HttpError::BodyTooSlow
                | HttpError::CredentialsRequired
                | HttpError::InvalidCredentials
                | HttpError::CredentialsRefused(_)
                | HttpError::TooManyFailures(_)
                | HttpError::InvalidGrant
                | HttpError::BadSignature(_)
                | HttpError::UnknownRepo
                | HttpError::UnknownRefs
                | HttpError::AdminDisabled
                | HttpError::AdminUnauthorized
                | HttpError::MetricsRefused { .. }
                | HttpError::Missing(_)
                | HttpError::Conflict(_)
                | HttpError::Internal => {}
            }
        }
        all
    }

    /// The README's table of errors: (status, error-type) per row.
    fn readme_table() -> Vec<(u16, String)> {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("\n### Errors\n")
            .nth(1)
            .expect("README.md has a section \"### Errors\"");
        section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|row| {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                let status = cells.get(1)?.trim_matches('`').parse().ok()?;
                Some((status, cells.get(2)?.trim_matches('`').to_owned()))
            })
            .collect()
    }

    #[tokio::test]
    async fn every_error_answers_as_the_readme_promises() {
        let mut answered = Vec::new();
        for e in one_of_each() {
            let (status, error_type) = (e.status(), e.error_type());
            assert!(
                !status.is_server_error() || matches!(e, HttpError::Internal),
                "{e:?} is a client's mistake and answers {status}"
            );
            let response = e.clone().into_response();
            assert_eq!(response.status(), status, "{e:?}");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["status"], status.as_u16(), "{e:?}: {body}");
            assert_eq!(body["error-type"], error_type, "{e:?}: {body}");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(!message.is_empty(), "{e:?} has no message: {body}");
            answered.push((status.as_u16(), error_type.to_owned()));
        }
        answered.sort();
        answered.dedup();
        let mut promised = readme_table();
        promised.sort();
        assert_eq!(
            answered, promised,
            "the server's errors (left) and README.md's table under \"### Errors\" (right) differ: \
             an error-type is a promise to programs, so the table lists each one"
        );
    }

    #[test]
    fn each_refusal_has_its_own_type_and_message() {
        let types: std::collections::BTreeSet<_> =
            Refusal::ALL.iter().map(|r| r.error_type()).collect();
        let messages: std::collections::BTreeSet<_> =
            Refusal::ALL.iter().map(|r| r.message()).collect();
        assert_eq!(types.len(), Refusal::ALL.len());
        assert_eq!(messages.len(), Refusal::ALL.len());
    }
}
