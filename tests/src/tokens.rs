//! Tokens for tests: real ones from `tollgate token issue`, and forged ones of every kind the
//! server must refuse, signed with jsonwebtoken, the library the server verifies with.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::cmd::Cmd;
use crate::server::tollgate_bin;

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `tollgate token issue --data-dir DATA --ref REF... [--repo NAME] [--ttl SECS]`.
pub fn issue(data_dir: &Path, refs: &[&str], repo: Option<&str>, ttl: u64) -> String {
    let mut cmd = Cmd::new(tollgate_bin())
        .args(["token", "issue", "--data-dir"])
        .arg(data_dir)
        .args(["--ttl", &ttl.to_string()]);
    for r in refs {
        cmd = cmd.args(["--ref", r]);
    }
    if let Some(repo) = repo {
        cmd = cmd.args(["--repo", repo]);
    }
    cmd.run().trim().to_owned()
}

/// Native claims for `refs` in `repos`, expiring `exp_offset` seconds from now.
pub fn native_claims(refs: &[&str], repos: &[&str], exp_offset: i64) -> Value {
    let now = now();
    json!({"iss": "tollgate", "sub": "test", "iat": now, "nbf": now, "exp": now + exp_offset,
           "jti": "test-jti", "scope": ["download"], "repos": repos, "refs": refs})
}

/// Signs `claims` with the data directory's signing key, as the server would.
pub fn sign_native(data_dir: &Path, claims: &Value) -> String {
    let keys = data_dir.join("keys");
    let file = std::fs::read_dir(&keys)
        .unwrap_or_else(|e| panic!("{}: {e}", keys.display()))
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a key file");
    let key: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let pkcs8 = STANDARD
        .decode(key["private-key"].as_str().unwrap())
        .unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key["kid"].as_str().unwrap().to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&pkcs8)).unwrap()
}

/// A flat-manager download token signed with `secret` (the raw HMAC key).
pub fn flat_manager(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// The same token with one claim changed and the signature kept.
pub fn tampered(token: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["exp"] = json!(claims["exp"].as_i64().unwrap() + 3600);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    parts[1] = &body;
    parts.join(".")
}

/// An unsigned token (`alg: none`) with `claims`.
pub fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
    )
}
