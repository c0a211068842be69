//! Verifying a bearer token into a [`Grant`], with a cache so that the hot path checks each
//! token's signature once.
//!
//! The token's header only selects which pinned key to try: `EdDSA` with a `kid` the server
//! knows, or `HS256` when a flat-manager secret is configured. Anything else (`none`, RSA, an
//! HMAC token when no secret is configured, an unknown `kid`) is refused before any signature
//! check. `exp` is required, `nbf` is checked when present, and at most 60 seconds of clock
//! skew are allowed.

use crate::metrics::METRICS;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};

use super::claims::{FlatManagerClaims, Grant, NativeClaims};
#[cfg(test)]
use super::keys::SigningKey;
use super::keys::thumbprint;
use crate::config::TokenConfig;

/// Clock skew allowed on `exp` and `nbf`.
pub(crate) const LEEWAY_SECS: u64 = 60;
/// The shortest flat-manager secret accepted, in bytes: HS256 wants a key at least as long as
/// its hash (RFC 7518, 3.2), and a short or empty one lets anyone sign tokens.
pub(super) const MIN_FLAT_MANAGER_SECRET: usize = 32;
/// How many verified tokens are remembered; each is a few hundred bytes.
const CACHE_CAPACITY: usize = 16_384;

/// Why a token was refused. The client is told only that it is invalid; the kind is for logs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("not a JSON Web Token")]
    Malformed(#[source] jsonwebtoken::errors::Error),
    #[error("algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("the token names no key (`kid`)")]
    MissingKeyId,
    #[error("signed by an unknown key {0:?}")]
    UnknownKey(String),
    #[error("flat-manager tokens are not accepted: no flat-manager secret is configured")]
    NoFlatManagerSecret,
    #[error("expired, or not valid yet (refused before its signature was checked)")]
    OutOfTime,
    #[error("invalid")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    #[error("not a download token (its scope lacks \"download\")")]
    Scope,
    #[error("grants nothing (it names no repository, or no ref, prefix or app)")]
    GrantsNothing,
}

/// Checks tokens against the keys the server trusts.
pub(crate) struct Verifier {
    native: HashMap<String, DecodingKey>,
    /// flat-manager's secret, to check its tokens and to sign subsets of them.
    flat_manager: Option<(DecodingKey, EncodingKey)>,
    cache: quick_cache::sync::Cache<String, Arc<Grant>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<&String> = self.native.keys().collect();
        kids.sort();
        f.debug_struct("Verifier")
            .field("kids", &kids)
            .field("flat_manager", &self.flat_manager.is_some())
            .finish()
    }
}

impl Verifier {
    /// `keys`: Ed25519 public keys by key id; `flat_manager_secret`: the HMAC key itself.
    pub(crate) fn new(
        keys: impl IntoIterator<Item = (String, DecodingKey)>,
        flat_manager_secret: Option<&[u8]>,
    ) -> Verifier {
        Verifier {
            native: keys.into_iter().collect(),
            flat_manager: flat_manager_secret
                .map(|s| (DecodingKey::from_secret(s), EncodingKey::from_secret(s))),
            cache: quick_cache::sync::Cache::new(CACHE_CAPACITY),
        }
    }

    /// The configured keys and secret (`trusted`) plus the data directory's own keys. Two
    /// different keys under one key id are refused: which one a token meant would be a guess.
    #[cfg(test)]
    pub(crate) fn with_local_keys(
        trusted: TrustedKeys,
        local: &[SigningKey],
    ) -> anyhow::Result<Verifier> {
        let published = local
            .iter()
            .map(|k| (k.kid().to_owned(), k.decoding_key()))
            .collect();
        Verifier::with_keys(&trusted, published)
    }

    /// The configured keys and secret (`trusted`) plus `published` keys (by key id). Two
    /// different keys under one key id are refused: which one a token meant would be a guess.
    pub(crate) fn with_keys(
        trusted: &TrustedKeys,
        published: Vec<(String, DecodingKey)>,
    ) -> anyhow::Result<Verifier> {
        let mut keys = trusted.keys.clone();
        keys.extend(published);
        let flat_manager_secret = &trusted.flat_manager_secret;
        let mut by_kid: HashMap<String, DecodingKey> = HashMap::new();
        for (kid, key) in keys {
            match by_kid.get(&kid) {
                Some(known) if known.try_get_as_bytes()? != key.try_get_as_bytes()? => {
                    bail!("two different keys have the key id {kid:?}; remove one of them");
                }
                Some(_) => {}
                None => {
                    by_kid.insert(kid, key);
                }
            }
        }
        Ok(Verifier::new(by_kid, flat_manager_secret.as_deref()))
    }

    /// Whether flat-manager tokens are accepted.
    pub(crate) fn accepts_flat_manager(&self) -> bool {
        self.flat_manager.is_some()
    }

    /// flat-manager's `token_subset`: checks `parent` (a flat-manager token) and signs a child
    /// that is a subset of it, by flat-manager's rules.
    pub(crate) fn flat_manager_subset(
        &self,
        parent: &str,
        request: &SubsetRequest,
    ) -> Result<String, SubsetError> {
        let (decoding, encoding) = self
            .flat_manager
            .as_ref()
            .ok_or(SubsetError::NotConfigured)?;
        let header = jsonwebtoken::decode_header(parent)
            .map_err(|e| SubsetError::Parent(TokenError::Malformed(e)))?;
        if header.alg != Algorithm::HS256 {
            return Err(SubsetError::Parent(TokenError::Algorithm(format!(
                "{:?}",
                header.alg
            ))));
        }
        let parent = jsonwebtoken::decode::<FlatManagerToken>(
            parent,
            decoding,
            &validation(Algorithm::HS256),
        )
        .map_err(|e| SubsetError::Parent(TokenError::Invalid(e)))?
        .claims;
        let exp = i64::try_from(now())
            .unwrap_or(i64::MAX)
            .saturating_add(request.duration);
        let subset = exp <= parent.exp
            && sub_has_prefix(&request.sub, &parent.sub)
            && request.scope.iter().all(|s| parent.scope.contains(s))
            && request.prefixes.as_ref().is_none_or(|ps| {
                ps.iter()
                    .all(|p| parent.prefixes.iter().any(|q| fm_prefix_matches(p, q)))
            })
            && request
                .apps
                .as_ref()
                .is_none_or(|apps| apps.iter().all(|a| parent.apps.contains(a)))
            && request.repos.as_ref().is_none_or(|repos| {
                repos
                    .iter()
                    .all(|r| parent.repos.iter().any(|q| q.is_empty() || q == r))
            });
        if !subset {
            return Err(SubsetError::NotSubset);
        }
        let child = FlatManagerToken {
            sub: request.sub.clone(),
            scope: request.scope.clone(),
            name: Some(format!(
                "{}/{}",
                parent.name.unwrap_or_default(),
                request.name
            )),
            jti: parent.jti,
            prefixes: request.prefixes.clone().unwrap_or(parent.prefixes),
            apps: request.apps.clone().unwrap_or(parent.apps),
            repos: request.repos.clone().unwrap_or(parent.repos),
            branches: parent.branches,
            token_type: parent.token_type,
            exp,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &child,
            encoding,
        )
        .map_err(|e| SubsetError::Parent(TokenError::Invalid(e)))
    }

    /// The key ids this verifier accepts.
    pub(crate) fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.native.keys().map(String::as_str)
    }

    /// Checks `token` and returns what it grants.
    pub(crate) fn verify(&self, token: &str) -> Result<Arc<Grant>, TokenError> {
        let now = now();
        if let Some(grant) = self.cache.get(token) {
            if grant.expires.saturating_add(LEEWAY_SECS) > now {
                METRICS.token_check(true);
                return Ok(grant);
            }
            self.cache.remove(token);
        }
        METRICS.token_check(false);
        let grant = Arc::new(self.verify_uncached(token)?);
        self.cache.insert(token.to_owned(), Arc::clone(&grant));
        Ok(grant)
    }

    fn verify_uncached(&self, token: &str) -> Result<Grant, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(TokenError::Malformed)?;
        if out_of_time(token, now()) {
            return Err(TokenError::OutOfTime);
        }
        let grant = match header.alg {
            Algorithm::EdDSA => {
                let kid = header.kid.ok_or(TokenError::MissingKeyId)?;
                let key = self.native.get(&kid).ok_or(TokenError::UnknownKey(kid))?;
                let data =
                    jsonwebtoken::decode::<NativeClaims>(token, key, &validation(Algorithm::EdDSA))
                        .map_err(TokenError::Invalid)?;
                if !data.claims.scope.iter().any(|s| s == "download") {
                    return Err(TokenError::Scope);
                }
                Grant::from_native(data.claims)
            }
            Algorithm::HS256 => {
                let (key, _) = self
                    .flat_manager
                    .as_ref()
                    .ok_or(TokenError::NoFlatManagerSecret)?;
                let data = jsonwebtoken::decode::<FlatManagerClaims>(
                    token,
                    key,
                    &validation(Algorithm::HS256),
                )
                .map_err(TokenError::Invalid)?;
                if !data.claims.scope.iter().any(|s| s == "download") {
                    return Err(TokenError::Scope);
                }
                Grant::from_flat_manager(data.claims)
            }
            other => return Err(TokenError::Algorithm(format!("{other:?}"))),
        };
        if !grant.names_anything() {
            return Err(TokenError::GrantsNothing);
        }
        Ok(grant)
    }
}

/// Whether the token's `exp` or `nbf` says it is not valid at `now`, by the same rule as the
/// full check ([`validation`]), read before any signature check: a client retrying with an
/// expired token, or anyone sending expired tokens on purpose, then costs no signature check.
/// Only a refusal is ever decided on these unverified claims; a token whose times cannot be
/// read here goes on to the full check, which decides.
fn out_of_time(token: &str, now: u64) -> bool {
    #[derive(serde::Deserialize)]
    struct Times {
        exp: Option<u64>,
        nbf: Option<u64>,
    }
    let Some(payload) = token.split('.').nth(1) else {
        return false;
    };
    let Ok(json) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload) else {
        return false;
    };
    let Ok(times) = serde_json::from_slice::<Times>(&json) else {
        return false;
    };
    times
        .exp
        .is_some_and(|exp| exp.saturating_add(LEEWAY_SECS) < now)
        || times
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS))
}

fn validation(alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.set_required_spec_claims(&["exp"]);
    validation.leeway = LEEWAY_SECS;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What `POST /api/v1/token_subset` asks for, as flat-manager defines it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubsetRequest {
    pub sub: String,
    pub scope: Vec<String>,
    /// Seconds from now.
    pub duration: i64,
    pub prefixes: Option<Vec<String>>,
    pub apps: Option<Vec<String>>,
    pub repos: Option<Vec<String>>,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SubsetError {
    #[error("no flat-manager secret is configured")]
    NotConfigured,
    #[error("the parent token: {0}")]
    Parent(TokenError),
    #[error("what was asked for is not a subset of the parent token")]
    NotSubset,
}

/// A flat-manager token's claims, all of them, for making a subset.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct FlatManagerToken {
    sub: String,
    #[serde(default)]
    scope: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    apps: Vec<String>,
    #[serde(default)]
    repos: Vec<String>,
    #[serde(default)]
    branches: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_type: Option<serde_json::Value>,
    exp: i64,
}

/// flat-manager's subject rule: `build` covers `build` and `build/N[/...]`.
fn sub_has_prefix(required: &str, claimed: &str) -> bool {
    required
        .strip_prefix(claimed)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The prefix rule for subsets: `org.foo` covers `org.foo` and `org.foo.Bar`. flat-manager lets
/// `""` cover everything; here it covers nothing, as it grants nothing when downloading (see
/// `Grant`), so that a subset can never open what its parent could not.
fn fm_prefix_matches(id: &str, prefix: &str) -> bool {
    !prefix.is_empty()
        && id
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// The keys and secret the configuration file names, read and checked before the server
/// writes anything.
#[derive(Clone)]
pub(crate) struct TrustedKeys {
    keys: Vec<(String, DecodingKey)>,
    flat_manager_secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for TrustedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&String> = self.keys.iter().map(|(k, _)| k).collect();
        f.debug_struct("TrustedKeys")
            .field("kids", &kids)
            .field("flat_manager_secret", &self.flat_manager_secret.is_some())
            .finish()
    }
}

impl TrustedKeys {
    pub(crate) fn load(config: &TokenConfig) -> anyhow::Result<TrustedKeys> {
        let mut keys = Vec::new();
        for path in &config.trusted_keys {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the trusted key {}", path.display()))?;
            let key = DecodingKey::from_ed_pem(&pem).with_context(|| {
                format!(
                    "{} is not an Ed25519 public key in PEM form",
                    path.display()
                )
            })?;
            let kid = thumbprint(key.try_get_as_bytes()?);
            keys.push((kid, key));
        }
        if let Some(path) = &config.jwks_file {
            keys.extend(read_jwks(path)?);
        }
        let secret = match (
            &config.flat_manager_secret,
            &config.flat_manager_secret_file,
        ) {
            (Some(secret), None) => Some(secret.expose().to_owned()),
            (None, Some(path)) => Some(crate::secrets::read_private(
                path,
                "the flat-manager secret",
            )?),
            _ => None,
        };
        let flat_manager_secret =
            secret
                .map(|s| {
                    base64::engine::general_purpose::STANDARD.decode(s.trim()).context(
                    "the flat-manager secret is not base64 (as in flat-manager's config.json)",
                )
                })
                .transpose()?;
        if let Some(secret) = &flat_manager_secret
            && secret.len() < MIN_FLAT_MANAGER_SECRET
        {
            let setting = if config.flat_manager_secret_file.is_some() {
                "flat-manager-secret-file"
            } else {
                "flat-manager-secret"
            };
            let size = match secret.len() {
                0 => "empty".to_owned(),
                n => format!("only {n} bytes once decoded from base64"),
            };
            bail!(
                "the flat-manager secret ([tokens] {setting}) is {size}: anyone could sign \
                 HS256 tokens with a key that short and open every gated Flatpak ref, so it \
                 needs at least {MIN_FLAT_MANAGER_SECRET} bytes. Give flat-manager's own \
                 secret (`secret` in its config.json, base64), make a new one for both with \
                 `head -c 32 /dev/urandom | base64`, or remove {setting} to refuse \
                 flat-manager tokens"
            );
        }
        Ok(TrustedKeys {
            keys,
            flat_manager_secret,
        })
    }
}

/// Ed25519 keys of a JSON Web Key Set; other kinds of keys are refused, not skipped, so that a
/// set meant for tollgate never half-loads.
fn read_jwks(path: &Path) -> anyhow::Result<Vec<(String, DecodingKey)>> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
    let text =
        std::fs::read(path).with_context(|| format!("reading the JWKS file {}", path.display()))?;
    let set: JwkSet = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a JSON Web Key Set", path.display()))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let AlgorithmParameters::OctetKeyPair(params) = &jwk.algorithm else {
            bail!("{}: only Ed25519 (OKP) keys are accepted", path.display());
        };
        if params.curve != EllipticCurve::Ed25519 {
            bail!("{}: only Ed25519 keys are accepted", path.display());
        }
        let key = DecodingKey::from_jwk(jwk)
            .with_context(|| format!("{}: a key is invalid", path.display()))?;
        let kid = match &jwk.common.key_id {
            Some(kid) => kid.clone(),
            None => thumbprint(key.try_get_as_bytes()?),
        };
        keys.push((kid, key));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;
    use crate::tokens::issue;
    use crate::tokens::keys::SigningKey;

    fn verifier(key: &SigningKey, secret: Option<&[u8]>) -> Verifier {
        Verifier::new([(key.kid().to_owned(), key.decoding_key())], secret)
    }

    fn sign(header: Header, claims: &serde_json::Value, key: &EncodingKey) -> String {
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn ed_header(key: &SigningKey) -> Header {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid().to_owned());
        header
    }

    fn native(exp_offset: i64) -> serde_json::Value {
        let now = now() as i64;
        json!({"iss": "t", "sub": "s", "iat": now, "nbf": now, "exp": now + exp_offset, "jti": "j",
               "scope": ["download"], "repos": [""], "refs": ["app/a/x86_64/stable"]})
    }

    #[test]
    fn accepts_what_it_issued() {
        let key = SigningKey::generate().unwrap();
        let token = issue(
            &key,
            "operator",
            &["".into()],
            &["app/a/x86_64/stable".into()],
            600,
        )
        .unwrap()
        .token;
        let grant = verifier(&key, None).verify(&token).unwrap();
        assert!(grant.covers("", "app/a/x86_64/stable"));
        assert!(!grant.covers("", "app/b/x86_64/stable"));
        assert_eq!(grant.subject, "operator");
        // Cached: the same grant again.
        let v = verifier(&key, None);
        let first = v.verify(&token).unwrap();
        assert!(Arc::ptr_eq(&first, &v.verify(&token).unwrap()));
    }

    #[test]
    fn refuses_everything_else() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let secret = b"flat-manager-secret";
        let hmac = EncodingKey::from_secret(secret);
        let v = verifier(&key, Some(secret));
        let now = now() as i64;
        let good = sign(ed_header(&key), &native(600), &key.encoding_key());

        let mut no_kid = ed_header(&key);
        no_kid.kid = None;
        let mut unknown_kid = ed_header(&key);
        unknown_kid.kid = Some("nobody".into());
        let mut hs_with_our_kid = Header::new(Algorithm::HS256);
        hs_with_our_kid.kid = Some(key.kid().to_owned());
        let mut without_exp = native(600);
        without_exp.as_object_mut().unwrap().remove("exp");
        let mut future_nbf = native(600);
        future_nbf["nbf"] = json!(now + 3600);
        let mut string_exp = native(600);
        string_exp["exp"] = json!(format!("{}", now + 600));
        let mut wrong_scope = native(600);
        wrong_scope["scope"] = json!(["build"]);
        let mut no_refs = native(600);
        no_refs["refs"] = json!([]);
        // A body swapped under a valid signature.
        let (head, rest) = good.split_once('.').unwrap();
        let sig = rest.split_once('.').unwrap().1;
        let mut forged_claims = native(600);
        forged_claims["refs"] = json!(["app/b/x86_64/stable"]);
        let forged_body = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&forged_claims).unwrap());
        let alg_none = format!(
            "{}.{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(r#"{"alg":"none","typ":"JWT"}"#),
            rest.split_once('.').unwrap().0
        );
        let fm = |claims: serde_json::Value| sign(Header::new(Algorithm::HS256), &claims, &hmac);

        let cases: Vec<(&str, String)> = vec![
            ("garbage", "not.a.token".into()),
            ("empty", String::new()),
            ("alg none", alg_none),
            ("no kid", sign(no_kid, &native(600), &key.encoding_key())),
            (
                "unknown kid",
                sign(unknown_kid, &native(600), &key.encoding_key()),
            ),
            (
                "another key",
                sign(ed_header(&key), &native(600), &other.encoding_key()),
            ),
            (
                "expired",
                sign(ed_header(&key), &native(-120), &key.encoding_key()),
            ),
            (
                "no exp",
                sign(ed_header(&key), &without_exp, &key.encoding_key()),
            ),
            (
                "exp as string",
                sign(ed_header(&key), &string_exp, &key.encoding_key()),
            ),
            (
                "future nbf",
                sign(ed_header(&key), &future_nbf, &key.encoding_key()),
            ),
            (
                "wrong scope",
                sign(ed_header(&key), &wrong_scope, &key.encoding_key()),
            ),
            (
                "no refs",
                sign(ed_header(&key), &no_refs, &key.encoding_key()),
            ),
            ("forged body", format!("{head}.{forged_body}.{sig}")),
            // HS/EdDSA confusion: an HMAC token "signed" with our public key as the secret.
            (
                "hs256 keyed with the public key",
                sign(
                    hs_with_our_kid,
                    &native(600),
                    &EncodingKey::from_secret(key.public_key()),
                ),
            ),
            (
                "flat-manager without prefixes",
                fm(
                    json!({"sub": "download", "exp": now + 600, "scope": ["download"], "repos": [""]}),
                ),
            ),
            (
                "flat-manager with the empty prefix",
                fm(
                    json!({"sub": "download", "exp": now + 600, "scope": ["download"],
                          "prefixes": [""], "repos": [""]}),
                ),
            ),
            (
                "flat-manager upload token",
                fm(
                    json!({"sub": "build", "exp": now + 600, "scope": ["build", "upload"],
                          "prefixes": ["org.a"], "repos": [""]}),
                ),
            ),
            (
                "flat-manager expired",
                fm(
                    json!({"sub": "download", "exp": now - 120, "scope": ["download"],
                          "apps": ["a"], "repos": [""]}),
                ),
            ),
            (
                "flat-manager with another secret",
                sign(
                    Header::new(Algorithm::HS256),
                    &json!({"sub": "download", "exp": now + 600, "scope": ["download"],
                            "apps": ["a"], "repos": [""]}),
                    &EncodingKey::from_secret(b"other"),
                ),
            ),
        ];
        for (what, token) in cases {
            assert!(v.verify(&token).is_err(), "{what} was accepted");
        }
        assert!(v.verify(&good).is_ok());
        let fm_ok = fm(
            json!({"sub": "download", "exp": now + 600, "scope": ["download"],
                              "apps": ["a"], "repos": [""]}),
        );
        assert!(v.verify(&fm_ok).unwrap().covers("x", "app/a/x86_64/stable"));
        // Without a configured secret, flat-manager tokens are refused outright.
        assert!(matches!(
            verifier(&key, None).verify(&fm_ok),
            Err(TokenError::NoFlatManagerSecret)
        ));
    }

    #[test]
    fn tokens_out_of_time_are_refused_before_their_signature() {
        let key = SigningKey::generate().unwrap();
        let v = verifier(&key, None);
        let broken = |claims: &serde_json::Value| {
            let token = key.sign_jwt(claims).unwrap();
            // A character of the signature changed: only a signature check can tell.
            let mut bytes = token.into_bytes();
            let at = bytes.len() - 10;
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            String::from_utf8(bytes).unwrap()
        };
        let expired = native(-(LEEWAY_SECS as i64) - 5);
        let mut early = native(600);
        early["nbf"] = json!(now() + LEEWAY_SECS + 60);
        for claims in [&expired, &early] {
            assert!(matches!(
                v.verify(&key.sign_jwt(claims).unwrap()),
                Err(TokenError::OutOfTime)
            ));
            assert!(matches!(
                v.verify(&broken(claims)),
                Err(TokenError::OutOfTime)
            ));
        }
        // Within the leeway, the full check decides: a good signature passes, a broken one not.
        let late = native(-(LEEWAY_SECS as i64) + 5);
        assert!(v.verify(&key.sign_jwt(&late).unwrap()).is_ok());
        assert!(matches!(
            v.verify(&broken(&late)),
            Err(TokenError::Invalid(_))
        ));
        // Times that cannot be read here are left to the full check, which refuses them.
        let mut string_exp = native(-600);
        string_exp["exp"] = json!("0");
        assert!(matches!(
            v.verify(&key.sign_jwt(&string_exp).unwrap()),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn the_cache_serves_live_grants_only() {
        let key = SigningKey::generate().unwrap();
        let v = verifier(&key, None);
        // Strings that fail verification, so only a cache hit can make them pass.
        let live = Arc::new(Grant::from_native(
            serde_json::from_value(native(600)).unwrap(),
        ));
        let stale = Arc::new(Grant::from_native(
            serde_json::from_value(native(-120)).unwrap(),
        ));
        v.cache.insert("live".to_owned(), live);
        v.cache.insert("stale".to_owned(), stale);
        assert!(v.verify("live").is_ok());
        assert!(v.verify("stale").is_err());
        assert!(
            v.cache.get("stale").is_none(),
            "an expired grant leaves the cache"
        );
    }

    #[test]
    fn the_cache_stays_bounded_under_many_tokens() {
        let key = SigningKey::generate().unwrap();
        let v = verifier(&key, None);
        // Twice as many distinct valid tokens as the cache holds: each verifies, and the
        // cache keeps at most its capacity.
        for i in 0..2 * CACHE_CAPACITY {
            let mut claims = native(600);
            claims["jti"] = json!(format!("token-{i}"));
            let token = key.sign_jwt(&claims).unwrap();
            assert!(v.verify(&token).is_ok());
        }
        assert!(
            v.cache.len() <= CACHE_CAPACITY,
            "{} tokens cached",
            v.cache.len()
        );
        // Tokens that fail are never cached.
        let before = v.cache.len();
        for i in 0..1000 {
            assert!(v.verify(&format!("garbage-{i}")).is_err());
        }
        assert_eq!(v.cache.len(), before);
    }

    #[test]
    fn two_keys_under_one_key_id_are_refused() {
        let local = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let same = TrustedKeys {
            keys: vec![(local.kid().to_owned(), local.decoding_key())],
            flat_manager_secret: None,
        };
        assert!(Verifier::with_local_keys(same, std::slice::from_ref(&local)).is_ok());
        let clash = TrustedKeys {
            keys: vec![(local.kid().to_owned(), other.decoding_key())],
            flat_manager_secret: None,
        };
        let err = Verifier::with_local_keys(clash, std::slice::from_ref(&local)).unwrap_err();
        assert!(err.to_string().contains("two different keys"), "{err}");
    }

    #[test]
    fn short_flat_manager_secrets_are_refused() {
        let check = |secret: &[u8], accepted: bool| {
            let config = TokenConfig {
                flat_manager_secret: Some(crate::secrets::Secret::new(
                    base64::engine::general_purpose::STANDARD.encode(secret),
                )),
                ..TokenConfig::default()
            };
            match TrustedKeys::load(&config) {
                Ok(_) => assert!(accepted, "{} bytes accepted", secret.len()),
                Err(e) => {
                    assert!(!accepted, "{} bytes refused: {e}", secret.len());
                    let e = e.to_string();
                    assert!(e.contains("[tokens] flat-manager-secret"), "{e}");
                    assert!(e.contains("at least 32 bytes"), "{e}");
                }
            }
        };
        check(b"", false);
        check(&[7; 31], false);
        check(&[7; 32], true);
        check(&[7; 64], true);
    }

    #[test]
    fn token_subsets_follow_flat_manager() {
        let secret = b"subset-secret";
        let key = SigningKey::generate().unwrap();
        let v = verifier(&key, Some(secret));
        let now = now() as i64;
        let parent = sign(
            Header::new(Algorithm::HS256),
            &json!({"sub": "download", "scope": ["download"], "exp": now + 3600, "name": "vendor",
                    "jti": "parent-jti", "prefixes": ["org.foo"], "apps": ["org.other.App"],
                    "repos": ["stable"], "branches": ["stable"]}),
            &EncodingKey::from_secret(secret),
        );
        let ask =
            |json: serde_json::Value| -> SubsetRequest { serde_json::from_value(json).unwrap() };
        let base = json!({"sub": "download", "scope": ["download"], "duration": 600,
                          "prefixes": ["org.foo.Bar"], "name": "customer"});

        let child = v.flat_manager_subset(&parent, &ask(base.clone())).unwrap();
        let claims: serde_json::Value = jsonwebtoken::decode(
            &child,
            &DecodingKey::from_secret(secret),
            &validation(Algorithm::HS256),
        )
        .unwrap()
        .claims;
        assert_eq!(claims["name"], "vendor/customer");
        assert_eq!(
            claims["jti"], "parent-jti",
            "the child inherits the parent's id"
        );
        assert_eq!(claims["prefixes"], json!(["org.foo.Bar"]));
        assert_eq!(
            claims["repos"],
            json!(["stable"]),
            "repos left out are inherited"
        );
        assert_eq!(claims["branches"], json!(["stable"]));
        assert!(claims["exp"].as_i64().unwrap() <= now + 601);
        // The child works as a download token for what it names, and only that.
        let grant = v.verify(&child).unwrap();
        assert!(grant.covers("stable", "app/org.foo.Bar/x86_64/stable"));
        assert!(!grant.covers("stable", "app/org.foo.Baz/x86_64/stable"));

        let mut not_subsets = Vec::new();
        for (what, field, value) in [
            ("another prefix", "prefixes", json!(["org.bar"])),
            ("a wider prefix", "prefixes", json!(["org"])),
            ("another app", "apps", json!(["org.third.App"])),
            ("another repo", "repos", json!(["beta"])),
            ("another scope", "scope", json!(["upload"])),
            ("another subject", "sub", json!("build")),
            ("past the parent", "duration", json!(7200)),
        ] {
            let mut request = base.clone();
            request[field] = value;
            not_subsets.push((what, v.flat_manager_subset(&parent, &ask(request))));
        }
        for (what, result) in not_subsets {
            assert!(
                matches!(result, Err(SubsetError::NotSubset)),
                "{what}: {result:?}"
            );
        }
        let native = issue(
            &key,
            "s",
            &["".into()],
            &["app/a/x86_64/stable".into()],
            600,
        )
        .unwrap()
        .token;
        assert!(matches!(
            v.flat_manager_subset(&native, &ask(base.clone())),
            Err(SubsetError::Parent(_))
        ));
        assert!(matches!(
            v.flat_manager_subset(&tampered_exp(&parent), &ask(base.clone())),
            Err(SubsetError::Parent(_))
        ));
        assert!(matches!(
            verifier(&key, None).flat_manager_subset(&parent, &ask(base.clone())),
            Err(SubsetError::NotConfigured)
        ));

        // A parent whose empty prefix opens nothing here cannot make a child that opens an app.
        let open_prefix = sign(
            Header::new(Algorithm::HS256),
            &json!({"sub": "download", "scope": ["download"], "exp": now + 3600,
                    "prefixes": [""]}),
            &EncodingKey::from_secret(secret),
        );
        assert!(v.verify(&open_prefix).is_err(), "the parent grants nothing");
        for prefixes in [json!(["org.foo.Bar"]), json!([""])] {
            let mut request = base.clone();
            request["prefixes"] = prefixes;
            assert!(
                matches!(
                    v.flat_manager_subset(&open_prefix, &ask(request.clone())),
                    Err(SubsetError::NotSubset)
                ),
                "{request}"
            );
        }
    }

    fn tampered_exp(token: &str) -> String {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: serde_json::Value =
            serde_json::from_slice(&engine.decode(&parts[1]).unwrap()).unwrap();
        claims["exp"] = json!(claims["exp"].as_i64().unwrap() + 86_400);
        parts[1] = engine.encode(serde_json::to_vec(&claims).unwrap());
        parts.join(".")
    }
}
