//! The admin API, under `/api/v1/admin/`: products, licenses and accounts (list, create, show,
//! update, remove) and the audit records, as JSON. `tollgate admin ...` does the same straight
//! in the database, through the same `Store` operations.
//!
//! Every request needs `Authorization: Bearer <admin token>`; the token is compared in constant
//! time (as SHA-256 digests, so not even its length leaks), and failed attempts count against
//! the client (its IPv4 address or IPv6 /64; behind a trusted proxy, the one it names), in a limiter of their own (customers' failures never lock out the
//! admin, nor the other way round). Without an admin token configured, the admin API refuses
//! everything.
//!
//! ```text
//! GET, POST            /api/v1/admin/products            POST: {"slug", "name", "refs", "repo"?, "purchase-url"?}
//! GET, PATCH, DELETE   /api/v1/admin/products/SLUG       PATCH: {"name"?, "refs"?, "active"?, "repo"?, "purchase-url"?}
//! GET, POST            /api/v1/admin/licenses            POST: {"products", "expires"?, "note"?, "account"?}
//! GET, PATCH, DELETE   /api/v1/admin/licenses/ID         PATCH: {"products"?, "active"?, "expires"?, "note"?}
//! GET, POST            /api/v1/admin/accounts            POST: {"name", "password", "products"}
//! GET, PATCH, DELETE   /api/v1/admin/accounts/NAME       PATCH: {"products"?, "active"?, "password"?}
//! GET                  /api/v1/admin/audit/tokens        ?since=&license=&ref=&limit=&before=
//! GET                  /api/v1/admin/audit/downloads     ?since=&ref=&limit=&before=
//! ```
//! Times are seconds since the epoch; `expires` also takes an RFC 3339 string, and `null` for
//! never.

use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Deserializer};
use warp::reply::Response;

use super::api::{Body, json, quote, read_body};
use super::{AppState, HttpError};
use crate::clients::Client;
use crate::store::{AuditFilter, NewLicense, StoreError, check_purchase_url};

/// Admin requests are small too.
const MAX_ADMIN_REQUEST: usize = 256 * 1024;
/// A failed admin attempt waits this long before its answer.
const FAILURE_DELAY: Duration = Duration::from_millis(250);

/// Handles a request under `/api/v1/admin/`; `rest` is the path after that prefix.
pub(super) async fn handle(
    state: &AppState,
    method: &Method,
    rest: &str,
    query: &str,
    headers: &HeaderMap,
    client: Client,
    body: Body,
) -> Result<Response, HttpError> {
    let client = client.ip;
    authorize(state, headers, client).await?;
    let segments: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    // No slug, id or name has control characters (and PostgreSQL refuses NUL outright).
    if segments.iter().any(|s| s.chars().any(char::is_control)) {
        return Err(HttpError::NotFound);
    }
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let store = state.entitlements.store();
    let result = match (method, segments.as_slice()) {
        (&Method::GET, ["products"]) => ok(store.product_list().await),
        (&Method::POST, ["products"]) => {
            let new: ProductNew = parse(body).await?;
            served_repo(state, new.repo.as_deref(), true)?;
            if let Some(url) = &new.purchase_url {
                check_purchase_url(url).map_err(store_error)?;
            }
            let added = store
                .product_add(&new.slug, &new.name, &new.refs, new.repo.as_deref())
                .await;
            match (added, &new.purchase_url) {
                (Ok(_), Some(url)) => {
                    created(store.product_set_purchase_url(&new.slug, Some(url)).await)
                }
                (added, _) => created(added),
            }
        }
        (&Method::GET, ["products", slug]) => ok(store.product_get(slug).await),
        (&Method::PATCH, ["products", slug]) => {
            let change: ProductChange = parse(body).await?;
            if let Some(repo) = &change.repo {
                served_repo(state, repo.as_deref(), false)?;
            }
            if let Some(Some(url)) = &change.purchase_url {
                check_purchase_url(url).map_err(store_error)?;
            }
            let updated = store
                .product_update(
                    slug,
                    change.name.as_deref(),
                    change.refs.as_deref(),
                    change.active,
                    change.repo.as_ref().map(Option::as_deref),
                )
                .await;
            match (updated, &change.purchase_url) {
                (Ok(_), Some(url)) => {
                    ok(store.product_set_purchase_url(slug, url.as_deref()).await)
                }
                (updated, _) => ok(updated),
            }
        }
        (&Method::DELETE, ["products", slug]) => removed(store.product_remove(slug).await),

        (&Method::GET, ["licenses"]) => ok(store.license_list().await),
        (&Method::POST, ["licenses"]) => {
            let new: LicenseNew = parse(body).await?;
            let license = NewLicense {
                products: new.products,
                expires: new.expires.map(|t| t.seconds()).transpose()?,
                note: new.note.unwrap_or_default(),
                account: new.account,
            };
            match store.license_add(&license).await {
                Ok((license, key)) => {
                    let mut value = serde_json::to_value(&license).unwrap_or_default();
                    value["key"] = serde_json::Value::String(key);
                    Ok(json(StatusCode::CREATED, &value))
                }
                Err(e) => Err(e),
            }
        }
        (&Method::GET, ["licenses", id]) => ok(store.license_get(id).await),
        (&Method::PATCH, ["licenses", id]) => {
            let change: LicenseChange = parse(body).await?;
            let expires = match change.expires {
                None => None,
                Some(None) => Some(None),
                Some(Some(t)) => Some(Some(t.seconds()?)),
            };
            ok(store
                .license_update(
                    id,
                    change.products.as_deref(),
                    change.active,
                    expires,
                    change.note.as_deref(),
                )
                .await)
        }
        (&Method::DELETE, ["licenses", id]) => removed(store.license_remove(id).await),

        (&Method::GET, ["accounts"]) => ok(store.account_list().await),
        (&Method::POST, ["accounts"]) => {
            let new: AccountNew = parse(body).await?;
            created(
                store
                    .account_add(&new.name, &new.password, &new.products)
                    .await,
            )
        }
        (&Method::GET, ["accounts", name]) => ok(store.account_get(name).await),
        (&Method::PATCH, ["accounts", name]) => {
            let change: AccountChange = parse(body).await?;
            ok(store
                .account_update(
                    name,
                    change.products.as_deref(),
                    change.active,
                    change.password.as_deref(),
                )
                .await)
        }
        (&Method::DELETE, ["accounts", name]) => removed(store.account_remove(name).await),

        (&Method::GET, ["audit", "tokens"]) => {
            let filter = audit_filter(query)?;
            page(store.issued_tokens(&filter).await.map(|rows| {
                let next = rows
                    .last()
                    .map(|r| r.seq)
                    .filter(|_| rows.len() as i64 == filter.limit);
                (rows, next)
            }))
        }
        (&Method::GET, ["audit", "downloads"]) => {
            let filter = audit_filter(query)?;
            page(store.downloads(&filter).await.map(|rows| {
                let next = rows
                    .last()
                    .map(|r| r.seq)
                    .filter(|_| rows.len() as i64 == filter.limit);
                (rows, next)
            }))
        }
        (_, ["products" | "licenses" | "accounts"]) => {
            return Err(HttpError::MethodNotAllowed("GET, POST"));
        }
        (_, ["products" | "licenses" | "accounts", _]) => {
            return Err(HttpError::MethodNotAllowed("GET, PATCH, DELETE"));
        }
        (_, ["audit", "tokens" | "downloads"]) => return Err(HttpError::MethodNotAllowed("GET")),
        _ => return Err(HttpError::NotFound),
    };
    result.map_err(store_error)
}

/// Checks the admin token; answers a failure slowly, and refuses a client that failed too often.
async fn authorize(state: &AppState, headers: &HeaderMap, client: IpAddr) -> Result<(), HttpError> {
    let Some(expected) = &state.admin_token else {
        return Err(HttpError::AdminDisabled);
    };
    if let Some(left) = state.entitlements.admin_blocked(client) {
        return Err(HttpError::TooManyFailures(left.as_secs().max(1)));
    }
    if super::bearer_matches(headers, expected) {
        return Ok(());
    }
    state.entitlements.admin_failed(client);
    tokio::time::sleep(FAILURE_DELAY).await;
    Err(HttpError::AdminUnauthorized)
}

fn ok<T: serde::Serialize>(result: Result<T, StoreError>) -> Result<Response, StoreError> {
    result.map(|value| json(StatusCode::OK, &value))
}

fn created<T: serde::Serialize>(result: Result<T, StoreError>) -> Result<Response, StoreError> {
    result.map(|value| json(StatusCode::CREATED, &value))
}

fn removed(result: Result<(), StoreError>) -> Result<Response, StoreError> {
    result.map(|()| {
        let mut response = Response::new(Vec::new().into());
        *response.status_mut() = StatusCode::NO_CONTENT;
        response
    })
}

fn page<T: serde::Serialize>(
    result: Result<(Vec<T>, Option<i64>), StoreError>,
) -> Result<Response, StoreError> {
    result.map(|(items, next)| {
        json(
            StatusCode::OK,
            &serde_json::json!({"items": items, "next": next}),
        )
    })
}

fn store_error(e: StoreError) -> HttpError {
    match e {
        StoreError::NotFound(what) => HttpError::Missing(format!("{what} not found")),
        StoreError::Conflict(why) => HttpError::Conflict(why),
        StoreError::Invalid(why) => HttpError::BadRequest(why),
        other => {
            tracing::error!("an admin request failed: {other:#}");
            HttpError::Internal
        }
    }
}

/// Checks a product's repository against the ones served: a name this server serves, or none
/// (the only one served) when it serves one. `creating`: a new product, for the message.
fn served_repo(state: &AppState, repo: Option<&str>, creating: bool) -> Result<(), HttpError> {
    let names: Vec<String> = state
        .repos
        .iter()
        .map(|r| format!("{:?}", r.token_name()))
        .collect();
    match repo {
        Some(name) if state.by_token_name(name).is_none() => Err(HttpError::BadRequest(format!(
            "this server serves no repository {}; it serves {}",
            quote(name),
            names.join(", ")
        ))),
        None if state.repos.len() > 1 => Err(HttpError::BadRequest(format!(
            "several repositories are served ({}): {} the product's \"repo\"",
            names.join(", "),
            if creating { "give" } else { "keep" }
        ))),
        _ => Ok(()),
    }
}

/// Reads a JSON body into `T`, refusing unknown fields and wrong types with a 400.
async fn parse<T: for<'de> Deserialize<'de>>(body: Body) -> Result<T, HttpError> {
    let bytes = read_body(body, MAX_ADMIN_REQUEST).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| HttpError::BadRequest(format!("the body is not what this takes: {e}")))
}

/// A time as JSON gives it: seconds since the epoch, or RFC 3339.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Time {
    Seconds(i64),
    Text(String),
}

impl Time {
    fn seconds(self) -> Result<i64, HttpError> {
        match self {
            Time::Seconds(s) if s > 0 => Ok(s),
            Time::Seconds(s) => Err(HttpError::BadRequest(format!(
                "{s} is not a time in seconds since the epoch"
            ))),
            Time::Text(t) => crate::times::parse_rfc3339(&t).map_err(|_| {
                HttpError::BadRequest(format!("{} is not an RFC 3339 time", quote(&t)))
            }),
        }
    }
}

/// Tells a field left out (`None`) from one set to `null` (`Some(None)`).
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductNew {
    slug: String,
    name: String,
    refs: Vec<String>,
    /// The repository's name in tokens (`""` for the one at `/`); left out: the only one.
    repo: Option<String>,
    #[serde(rename = "purchase-url")]
    purchase_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductChange {
    name: Option<String>,
    refs: Option<Vec<String>>,
    active: Option<bool>,
    /// `null`: no repository, the only one served.
    #[serde(default, deserialize_with = "double_option")]
    repo: Option<Option<String>>,
    /// `null`: not on sale.
    #[serde(default, deserialize_with = "double_option", rename = "purchase-url")]
    purchase_url: Option<Option<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LicenseNew {
    products: Vec<String>,
    expires: Option<Time>,
    note: Option<String>,
    /// Redeemed into this account from the start.
    account: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LicenseChange {
    products: Option<Vec<String>>,
    active: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    expires: Option<Option<Time>>,
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountNew {
    name: String,
    password: String,
    products: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountChange {
    products: Option<Vec<String>>,
    active: Option<bool>,
    password: Option<String>,
}

/// `since` (seconds or RFC 3339), `license`, `ref`, `limit` (1 to 1000, default 100) and
/// `before` (a `seq`, for the next page) from a query string.
fn audit_filter(query: &str) -> Result<AuditFilter, HttpError> {
    let mut filter = AuditFilter {
        limit: 100,
        ..Default::default()
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode_str(&value.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        if value.chars().any(char::is_control) {
            return Err(HttpError::BadRequest(format!(
                "{key}={} has control characters",
                quote(&value)
            )));
        }
        let number = |v: &str| {
            v.parse::<i64>()
                .map_err(|_| HttpError::BadRequest(format!("{key}={} is not a number", quote(v))))
        };
        match key {
            "since" => {
                filter.since = Some(match value.parse::<i64>() {
                    Ok(s) => s,
                    Err(_) => Time::Text(value.clone()).seconds()?,
                })
            }
            "license" => filter.license = Some(value),
            "ref" => filter.ref_name = Some(value),
            "limit" => filter.limit = number(&value)?,
            "before" => filter.before = Some(number(&value)?),
            _ => {
                return Err(HttpError::BadRequest(format!(
                    "unknown parameter {}",
                    quote(key)
                )));
            }
        }
    }
    if !(1..=1000).contains(&filter.limit) {
        return Err(HttpError::BadRequest("limit is 1 to 1000".to_owned()));
    }
    Ok(filter)
}
