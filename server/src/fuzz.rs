//! Entry points for the fuzz targets in `fuzz/`: the token parser and verifier, fed arbitrary
//! tokens and arbitrary headers and claims signed with the keys it trusts. A panic is what the
//! fuzzer reports: here, a crash, or a token accepted that should not be. The test below runs
//! every input in `fuzz/regressions/token/`, so a crash once found stays fixed.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::tokens::{LEEWAY_SECS, SigningKey, Verifier};

/// flat-manager's secret, as the verifier under test trusts it.
const FLAT_MANAGER_SECRET: &[u8] = b"fuzzing flat-manager secret";

struct Keys {
    native: SigningKey,
    verifier: Verifier,
    /// The same keys, for raw tokens only: its cache never holds a token signed for another
    /// input, which a raw token could otherwise repeat and pass.
    raw: Verifier,
}

/// One Ed25519 key, new in each process (so no input can carry a signature made with it), and
/// the flat-manager secret; the verifier trusts both.
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let native = SigningKey::generate().expect("generating an Ed25519 key");
        let verifier = || {
            Verifier::new(
                [(
                    native.kid().to_owned(),
                    DecodingKey::from_ed_der(native.public_key()),
                )],
                Some(FLAT_MANAGER_SECRET),
            )
        };
        Keys {
            verifier: verifier(),
            raw: verifier(),
            native,
        }
    })
}

fn hs256(header: &[u8], payload: &[u8]) -> String {
    use aws_lc_rs::hmac;
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let key = hmac::Key::new(hmac::HMAC_SHA256, FLAT_MANAGER_SECRET);
    let tag = hmac::sign(&key, token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut token);
    token
}

/// The token with its signature's first character changed.
fn tampered(token: &str) -> String {
    let (signed, signature) = token.rsplit_once('.').expect("a compact JWS");
    let mut chars: Vec<char> = signature.chars().collect();
    if let Some(first) = chars.first_mut() {
        *first = if *first == 'A' { 'B' } else { 'A' };
    }
    format!("{signed}.{}", chars.into_iter().collect::<String>())
}

/// The first byte picks what the rest is:
/// - 0: a token as a client sends it; nothing unsigned by the trusted keys may pass;
/// - 1: a header length byte, then header and claims bytes, signed with the Ed25519 key (a
///   `KID` in the header becomes the key's id);
/// - 2: the same, signed with the flat-manager secret.
///
/// A signed token that passes must have asked for the algorithm its signer uses (the
/// algorithm is pinned by key, never taken from the token), must not have expired, and must
/// stop passing when its signature changes.
pub fn token(data: &[u8]) {
    let keys = keys();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (token, signer) = match mode % 3 {
        0 => {
            let token = String::from_utf8_lossy(rest);
            let outcome = keys.raw.verify(&token);
            assert!(
                outcome.is_err(),
                "a token nobody signed passed: {outcome:?}"
            );
            return;
        }
        mode => {
            let Some((&len, rest)) = rest.split_first() else {
                return;
            };
            let (header, payload) = rest.split_at(usize::from(len).min(rest.len()));
            if mode == 1 {
                // `KID` stands for the trusted key's id, which changes with every process.
                let header = String::from_utf8_lossy(header).replace("KID", keys.native.kid());
                let token = keys.native.sign_parts(header.as_bytes(), payload);
                (token, Algorithm::EdDSA)
            } else {
                (hs256(header, payload), Algorithm::HS256)
            }
        }
    };
    let Ok(grant) = keys.verifier.verify(&token) else {
        return;
    };
    let header = jsonwebtoken::decode_header(&token).expect("a token that passed has a header");
    assert_eq!(
        header.alg, signer,
        "a token passed under an algorithm its key does not use"
    );
    if signer == Algorithm::EdDSA {
        assert_eq!(header.kid.as_deref(), Some(keys.native.kid()));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    assert!(
        grant.expires.saturating_add(LEEWAY_SECS) > now,
        "an expired token passed: {grant:?}"
    );
    assert!(grant.names_anything(), "a token that grants nothing passed");
    let again = keys
        .verifier
        .verify(&token)
        .expect("the same token passes twice");
    assert_eq!(again, grant, "the cache answers what the check answered");
    let forged = tampered(&token);
    assert!(
        keys.verifier.verify(&forged).is_err(),
        "a token passed with a changed signature"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_regressions_stay_fixed() {
        tollgate_tests::fuzz::replay_regressions("token", token);
    }

    #[test]
    fn a_good_token_goes_the_whole_way_through_the_target() {
        // Claims a client really gets: the target's checks after a pass run, and hold.
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        let header = format!(r#"{{"alg":"EdDSA","kid":"{}"}}"#, keys().native.kid());
        let claims = format!(
            r#"{{"iss":"t","sub":"s","iat":0,"nbf":0,"exp":{exp},"jti":"j","scope":["download"],"repos":[""],"refs":["app/x"]}}"#
        );
        let token = keys()
            .native
            .sign_parts(header.as_bytes(), claims.as_bytes());
        assert!(keys().verifier.verify(&token).is_ok());
        let mut input = vec![1, header.len() as u8];
        input.extend_from_slice(header.as_bytes());
        input.extend_from_slice(claims.as_bytes());
        super::token(&input);
        // The same claims with an HS256 header, signed with the Ed25519 key, do not pass.
        let confused = keys()
            .native
            .sign_parts(br#"{"alg":"HS256"}"#, claims.as_bytes());
        assert!(keys().verifier.verify(&confused).is_err());
    }
}
