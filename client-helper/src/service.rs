//! The client of the entitlement service: `POST {url}/api/v1/tokens` with a credential, and
//! what the answer means for a person.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tollgate_plugin_api::Credential;

/// What to ask for: refs of one repository of one entitlement service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Want {
    /// The service's base URL, normalised.
    pub url: String,
    /// The repository's name on the server (`--repo NAME=PATH`), `""` for the one at `/`.
    pub repo: String,
    pub refs: Vec<String>,
}

/// The service's answer: each token with the refs it opens (`""` for refs that need none),
/// the refs it would not give, and how long the tokens live.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Issued {
    pub tokens: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub denied: BTreeMap<String, String>,
    /// Of the refs denied `not-licensed`, those a product on sale covers: ref → product slug.
    #[serde(default, rename = "for-sale")]
    pub for_sale: BTreeMap<String, String>,
    pub expires_in: u64,
}

/// Why the service gave no tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServiceError {
    /// The credential was refused (`invalid-credentials`), or is for a license or account that
    /// cannot get tokens now (`license-expired`, ...).
    Credential {
        refused: CredentialRefused,
        message: String,
    },
    /// Too many failed attempts lately.
    TooMany { retry_after: Option<u64> },
    /// Another refusal (unknown repository or refs, a bad request).
    Refused {
        status: u16,
        error_type: String,
        message: String,
    },
    /// The service could not be reached or answered something that is not its API.
    Unreachable(String),
}

/// Why the service refused a credential, from the `error-type` of its 401 (the README's
/// list). A type this helper does not know yet is kept as it came, and explained as what every
/// refusal has in common.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CredentialRefused {
    /// `invalid-credentials`: not a license key or account the service knows.
    Invalid,
    /// `license-inactive`: revoked or suspended.
    LicenseInactive,
    /// `license-expired`.
    LicenseExpired,
    /// `account-inactive`: the account is disabled.
    AccountInactive,
    /// Any other `error-type`.
    Other(String),
}

impl CredentialRefused {
    fn from_error_type(error_type: &str) -> CredentialRefused {
        match error_type {
            "invalid-credentials" => CredentialRefused::Invalid,
            "license-inactive" => CredentialRefused::LicenseInactive,
            "license-expired" => CredentialRefused::LicenseExpired,
            "account-inactive" => CredentialRefused::AccountInactive,
            other => CredentialRefused::Other(other.to_owned()),
        }
    }

    /// What it means for the person holding the credential.
    fn what(&self) -> &'static str {
        match self {
            CredentialRefused::Invalid => "the license key or account is not known",
            CredentialRefused::LicenseInactive => "the license has been revoked or suspended",
            CredentialRefused::LicenseExpired => "the license has expired",
            CredentialRefused::AccountInactive => "the account has been disabled",
            CredentialRefused::Other(_) => "the credential cannot get downloads now",
        }
    }
}

impl ServiceError {
    /// Whether asking the user for another credential could help.
    pub(crate) fn is_bad_credential(&self) -> bool {
        matches!(
            self,
            ServiceError::Credential {
                refused: CredentialRefused::Invalid,
                ..
            }
        )
    }

    /// What happened, for the person at the terminal, with what to do about it.
    pub(crate) fn explain(&self, url: &str) -> String {
        match self {
            ServiceError::Credential {
                refused: CredentialRefused::Invalid,
                ..
            } => {
                format!(
                    "{url} refused the license key or account: check it, and store the right one \
                     with `tollgate-helper login {url}`"
                )
            }
            ServiceError::Credential { refused, message } => format!(
                "{url}: {} ({message}); contact the vendor to renew it",
                refused.what()
            ),
            ServiceError::TooMany { retry_after } => format!(
                "{url} refuses for now after too many failed attempts; try again in {} seconds",
                retry_after.unwrap_or(60)
            ),
            ServiceError::Refused {
                status, message, ..
            } => format!("{url} refused the request ({status}): {message}"),
            ServiceError::Unreachable(why) => format!(
                "cannot reach the entitlement service at {url}: {why}; check the network, or try \
                 again later"
            ),
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "error-type", default)]
    error_type: String,
    #[serde(default)]
    message: String,
}

/// An HTTP client for the service, with time limits. Where the system has no CA certificates
/// (a bare container or Flatpak runtime), the client has no roots: `http://` services work and
/// `https://` ones fail their certificate check, rather than every call failing (reqwest's own
/// default client panics there).
pub(crate) fn client() -> anyhow::Result<reqwest::Client> {
    let builder = || {
        reqwest::Client::builder()
            .user_agent(concat!("tollgate-helper/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
    };
    builder()
        .build()
        .or_else(|_| builder().tls_certs_only([]).build())
        .map_err(|e| anyhow::anyhow!("cannot set up an HTTP client: {e}"))
}

/// The `Authorization` header value for a credential.
fn authorization(credential: &Credential) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(match credential {
        Credential::LicenseKey(secret) | Credential::Token(secret) => {
            format!("Bearer {}", secret.expose())
        }
        Credential::Password { user, password } => {
            let pair = zeroize::Zeroizing::new(format!("{user}:{}", password.expose()));
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
            )
        }
    })
}

/// Asks the service for tokens for `want.refs` with `credential`.
pub(crate) async fn request_tokens(
    client: &reqwest::Client,
    want: &Want,
    credential: &Credential,
) -> Result<Issued, ServiceError> {
    let endpoint = format!("{}/api/v1/tokens", want.url);
    let mut body = serde_json::json!({ "refs": want.refs });
    if !want.repo.is_empty() {
        body["repo"] = serde_json::Value::from(want.repo.as_str());
    }
    call(
        client.post(&endpoint).json(&body),
        &endpoint,
        credential,
        "a token answer",
    )
    .await
}

/// What a credential opens at the service (`GET /api/v1/entitlements`), as it answers (the
/// credential's kind and account it also names are the ones the helper sent).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Entitled {
    pub products: Vec<EntitledProduct>,
    /// Unix seconds; `None` for never.
    pub expires: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EntitledProduct {
    pub slug: String,
    pub name: String,
    pub refs: Vec<String>,
    pub active: bool,
}

/// Checks a credential with the service at `url` without getting any token: what it opens.
pub(crate) async fn check_credential(
    client: &reqwest::Client,
    url: &str,
    credential: &Credential,
) -> Result<Entitled, ServiceError> {
    let endpoint = format!("{url}/api/v1/entitlements");
    call(
        client.get(&endpoint),
        &endpoint,
        credential,
        "an entitlements answer",
    )
    .await
}

/// Sends `request` with `credential`, and reads the answer as a `T` (`what`, in errors) or as
/// the service's error.
async fn call<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    endpoint: &str,
    credential: &Credential,
    what: &str,
) -> Result<T, ServiceError> {
    let mut header =
        reqwest::header::HeaderValue::from_str(&authorization(credential)).map_err(|_| {
            ServiceError::Refused {
                status: 0,
                error_type: "bad-credential".to_owned(),
                message: "the credential has characters an HTTP header cannot carry".to_owned(),
            }
        })?;
    header.set_sensitive(true);
    let response = request
        .header(reqwest::header::AUTHORIZATION, header)
        .send()
        .await
        .map_err(|e| ServiceError::Unreachable(without_url(&e)))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let text = response
        .text()
        .await
        .map_err(|e| ServiceError::Unreachable(without_url(&e)))?;
    if status == 200 {
        return serde_json::from_str(&text).map_err(|_| {
            ServiceError::Unreachable(format!(
                "{endpoint} answered 200 with something that is not {what}; is this a \
                 tollgate server?"
            ))
        });
    }
    let Ok(error) = serde_json::from_str::<ErrorBody>(&text) else {
        return Err(ServiceError::Unreachable(format!(
            "{endpoint} answered {status}, not as a tollgate server would"
        )));
    };
    Err(match status {
        401 => ServiceError::Credential {
            refused: CredentialRefused::from_error_type(&error.error_type),
            message: error.message,
        },
        429 => ServiceError::TooMany { retry_after },
        500..=599 => ServiceError::Unreachable(format!(
            "it answered {status} ({}); this is a fault on the server",
            error.message
        )),
        _ => ServiceError::Refused {
            status,
            error_type: error.error_type,
            message: error.message,
        },
    })
}

/// A request error in words: what failed and its causes, without the URL (which the caller
/// names itself).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "no answer in time".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        let mut t = e.to_string();
        if let Some(at) = t.find(" for url (") {
            t.truncate(at);
        }
        t
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every refusal of a credential the README promises has its own explanation; an
    /// `error-type` of a newer server is kept, and explained as a refusal all the same.
    #[test]
    fn each_credential_refusal_is_explained_as_itself() {
        let readme = include_str!("../../README.md");
        let known = [
            "invalid-credentials",
            "license-inactive",
            "license-expired",
            "account-inactive",
        ];
        let mut explained = Vec::new();
        for error_type in known {
            assert!(
                readme.contains(&format!("`401` | `{error_type}`"))
                    || readme.contains(&format!("`{error_type}`, ")),
                "{error_type} is not in the README's errors"
            );
            let refused = CredentialRefused::from_error_type(error_type);
            assert!(
                !matches!(refused, CredentialRefused::Other(_)),
                "{error_type}"
            );
            explained.push(refused.what());
        }
        explained.sort_unstable();
        explained.dedup();
        assert_eq!(explained.len(), known.len(), "{explained:?}");

        let newer = ServiceError::Credential {
            refused: CredentialRefused::from_error_type("license-on-hold"),
            message: "on hold until paid".to_owned(),
        };
        assert!(!newer.is_bad_credential());
        let told = newer.explain("https://shop.example");
        assert!(
            told.contains("cannot get downloads now") && told.contains("on hold until paid"),
            "{told}"
        );
        let expired = ServiceError::Credential {
            refused: CredentialRefused::LicenseExpired,
            message: String::new(),
        };
        assert!(expired.explain("u").contains("the license has expired"));
    }
}
