//! `POST /api/v1/hooks/orders`: a shop posts what it sold, signed with the secret it shares
//! with this server, and gets the license that was made or extended.
//!
//! The signature is the scheme Stripe documents for its webhooks: a header
//! `Tollgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` (several `v1`
//! are allowed, for a secret being changed). A request more than five minutes from the
//! server's clock, unsigned, or signed wrongly is refused before anything is read from it;
//! each order id is taken once, so a replayed request changes nothing either.
//!
//! ```text
//! {"id": "ord_1", "email": "a@example.com", "products": ["pro"], "days": 365?, "account": "alice"?}
//! ```

use http::{HeaderMap, Method, StatusCode};
use serde::Deserialize;
use warp::reply::Response;

use super::api::{Body, json, read_body};
use super::{AppState, HttpError};
use crate::store::{Order, OrderOutcome, StoreError, now};

/// The header the signature comes in.
const SIGNATURE: &str = "tollgate-signature";
/// How far a signature's time may be from the server's: five minutes.
const WINDOW: i64 = 300;
/// An order is a few fields.
const MAX_ORDER: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Posted {
    id: String,
    email: String,
    products: Vec<String>,
    days: Option<i64>,
    account: Option<String>,
}

/// The time and the signatures of a `t=...,v1=...` header.
fn parse_signature(header: &str) -> Option<(i64, Vec<Vec<u8>>)> {
    let mut time = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (key, value) = part.trim().split_once('=')?;
        match key {
            "t" => time = Some(value.parse::<i64>().ok()?),
            "v1" => signatures.push(hex(value)?),
            // Other schemes (as Stripe's v0) are left alone.
            _ => {}
        }
    }
    let time = time?;
    (!signatures.is_empty()).then_some((time, signatures))
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Checks the request's signature over `body` with `secret`, at `at`.
fn verify(headers: &HeaderMap, body: &[u8], secret: &str, at: i64) -> Result<(), HttpError> {
    let mut values = headers.get_all(SIGNATURE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(HttpError::BadSignature(
            "the order is not signed: send one Tollgate-Signature: t=...,v1=... header".to_owned(),
        ));
    };
    let (time, signatures) = value
        .to_str()
        .ok()
        .and_then(parse_signature)
        .ok_or_else(|| {
            HttpError::BadSignature(
                "the Tollgate-Signature header is not t=<unix seconds>,v1=<64 hex digits>"
                    .to_owned(),
            )
        })?;
    if (at - time).abs() > WINDOW {
        return Err(HttpError::BadSignature(format!(
            "the signature's time is {} seconds from the server's: sign each order when sending \
             it (at most {WINDOW} seconds apart), and check both clocks",
            at - time
        )));
    }
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{time}.").into_bytes();
    signed.extend_from_slice(body);
    // hmac::verify compares in constant time.
    if signatures
        .iter()
        .any(|tag| aws_lc_rs::hmac::verify(&key, &signed, tag).is_ok())
    {
        Ok(())
    } else {
        Err(HttpError::BadSignature(
            "the order's signature is not right: sign \"<t>.<body>\" with HMAC-SHA256 and the \
             shared secret"
                .to_owned(),
        ))
    }
}

pub(super) async fn orders(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    if method != Method::POST {
        return Err(HttpError::MethodNotAllowed("POST"));
    }
    let Some(secret) = &state.order_secret else {
        return Err(HttpError::Missing(
            "order hooks are off here: set [hooks] order-secret-file in the server's \
             configuration"
                .to_owned(),
        ));
    };
    let body = read_body(body, MAX_ORDER).await?;
    verify(headers, &body, secret.expose(), now())?;
    let posted: Posted = serde_json::from_slice(&body).map_err(|e| {
        HttpError::BadRequest(format!(
            "the order must be JSON like {{\"id\", \"email\", \"products\", \"days\"?, \
             \"account\"?}}: {e}"
        ))
    })?;
    let order = Order {
        id: posted.id,
        email: posted.email,
        products: posted.products,
        days: posted.days,
        account: posted.account,
    };
    let outcome = state
        .entitlements
        .store()
        .order_apply(&order)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(what) => {
                HttpError::BadRequest(format!("the order names an unknown {what}"))
            }
            StoreError::Invalid(why) => HttpError::BadRequest(why),
            StoreError::Conflict(why) => HttpError::Conflict(why),
            other => {
                tracing::error!("applying an order failed: {other}");
                HttpError::Internal
            }
        })?;
    Ok(match outcome {
        OrderOutcome::Created(license, key) => {
            tracing::info!(order = %order.id, license = %license.id, "an order made a license");
            json(
                StatusCode::CREATED,
                &serde_json::json!({"order": order.id, "license": license, "key": key}),
            )
        }
        OrderOutcome::Extended(license) => {
            tracing::info!(order = %order.id, license = %license.id, "an order extended a license");
            json(
                StatusCode::OK,
                &serde_json::json!({"order": order.id, "license": license, "extended": true}),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &str, time: i64, body: &[u8]) -> String {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
        let mut message = format!("{time}.").into_bytes();
        message.extend_from_slice(body);
        let tag = aws_lc_rs::hmac::sign(&key, &message);
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("t={time},v1={hex}")
    }

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE, value.parse().unwrap());
        headers
    }

    #[test]
    fn only_a_fresh_signature_with_the_secret_over_the_body_passes() {
        let secret = "a shared secret of at least thirty-two characters";
        let body = br#"{"id":"o1"}"#;
        let good = signed(secret, 1000, body);
        assert!(verify(&headers(&good), body, secret, 1000).is_ok());
        assert!(verify(&headers(&good), body, secret, 1300).is_ok());
        // A second v1 (a secret being changed) and another scheme are fine.
        let rotated = format!("{},v1={},v0=abc", good, "0".repeat(64));
        assert!(verify(&headers(&rotated), body, secret, 1000).is_ok());
        for (value, at, body) in [
            (good.clone(), 1301, &body[..]),
            (good.clone(), 699, &body[..]),
            (good.clone(), 1000, br#"{"id":"o2"}"#),
            (signed("another secret", 1000, body), 1000, &body[..]),
            ("t=1000".to_owned(), 1000, &body[..]),
            ("v1=00".to_owned(), 1000, &body[..]),
            (format!("t=x,v1={}", "0".repeat(64)), 1000, &body[..]),
            (good.replace("t=1000", "t=1001"), 1001, &body[..]),
        ] {
            assert!(
                matches!(
                    verify(&headers(&value), body, secret, at),
                    Err(HttpError::BadSignature(_))
                ),
                "{value} at {at}"
            );
        }
        assert!(verify(&HeaderMap::new(), body, secret, 1000).is_err());
    }
}
