//! Download tokens: the Ed25519 signing keys in the data directory, issuing native tokens, and
//! verifying native and flat-manager tokens into a [`Grant`] the gate can check refs against.
//!
//! The algorithm is pinned by key, never taken from the token: native tokens are EdDSA and are
//! checked only against Ed25519 public keys found by `kid`; flat-manager tokens are HS256 and are
//! checked only against the configured flat-manager secret. Nothing here logs a token or a
//! secret.

mod claims;
mod keys;
mod verify;

pub(crate) use claims::{Grant, issue};
pub(crate) use keys::{KeyDir, SigningKey};
pub(crate) use verify::{
    LEEWAY_SECS, SubsetError, SubsetRequest, TokenError, TrustedKeys, Verifier,
};
