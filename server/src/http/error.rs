//! The one error type of every HTTP answer that is not a success.
//!
//! Each error maps to a status and a stable machine-readable `error-type`; the JSON body says
//! what to do in words a person can act on. Internal detail (paths on the server, OS errors) goes
//! to the log, never to the client.

use http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Not a file this server serves: unknown, outside the grammar, or not there.
    NotFound,
    MethodNotAllowed,
    UriTooLong,
    /// A gated file, and no token.
    TokenRequired,
    /// A gated file, and a token that is not valid (expired, forged, unknown key, ...).
    InvalidToken,
    /// A gated file, and a valid token that covers none of the refs that reach it.
    NotEntitled,
    /// Something failed on the server's side; the cause was logged.
    Internal,
}

impl HttpError {
    pub fn status(self) -> StatusCode {
        match self {
            HttpError::NotFound => StatusCode::NOT_FOUND,
            HttpError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::UriTooLong => StatusCode::URI_TOO_LONG,
            HttpError::TokenRequired | HttpError::InvalidToken => StatusCode::UNAUTHORIZED,
            HttpError::NotEntitled => StatusCode::FORBIDDEN,
            HttpError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn error_type(self) -> &'static str {
        match self {
            HttpError::NotFound => "not-found",
            HttpError::MethodNotAllowed => "method-not-allowed",
            HttpError::UriTooLong => "uri-too-long",
            HttpError::TokenRequired => "token-required",
            HttpError::InvalidToken => "invalid-token",
            HttpError::NotEntitled => "not-entitled",
            HttpError::Internal => "internal-error",
        }
    }

    fn message(self) -> &'static str {
        match self {
            HttpError::NotFound => "no such file in this repository",
            HttpError::MethodNotAllowed => "only GET and HEAD are supported here",
            HttpError::UriTooLong => "the request path is too long to name a repository file",
            HttpError::TokenRequired => {
                "this content needs a download token: configure the remote's authenticator, or \
                 pass one with --http-header='Authorization=Bearer TOKEN'"
            }
            HttpError::InvalidToken => {
                "the download token is not valid (expired, or not issued for this server): \
                 get a new one"
            }
            HttpError::NotEntitled => "the download token does not cover this content",
            HttpError::Internal => {
                "the server failed to answer; try again, and tell the operator if it persists"
            }
        }
    }

    pub fn into_response(self) -> Response {
        let body = serde_json::json!({
            "status": self.status().as_u16(),
            "error-type": self.error_type(),
            "message": self.message(),
        })
        .to_string();
        let mut response = Response::new(body.into());
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self {
            HttpError::MethodNotAllowed => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            }
            // RFC 6750: a challenge for the Bearer scheme, with the error when a token failed.
            HttpError::TokenRequired => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"tollgate\""),
                );
            }
            HttpError::InvalidToken => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"tollgate\", error=\"invalid_token\""),
                );
            }
            _ => {}
        }
        response
    }
}
