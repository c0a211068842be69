//! The client helper: what runs on the customer's machine.
//!
//! Credentials come from provider plugins found in a search path and asked in a configured
//! order ([`chain`], [`config`]); download tokens from the entitlement service ([`service`]),
//! kept in a per-service, per-ref cache ([`cache`]), both behind one [`tokens::Helper`]. Two
//! front ends use it: `tollgate-authenticator`, the D-Bus service implementing
//! `org.freedesktop.Flatpak.Authenticator` ([`authenticator`]), and the `tollgate-helper`
//! commands ([`cli`]). [`trust`] is the rule for who may see a service's tokens (its origin, and
//! mirrors the user trusts), which both front ends apply; [`p2p`] plans P2P pulls so that a
//! token reaches only the origin it was issued for and mirrors the user trusts. Nothing here sends a token to a server it was not
//! issued for, or prints a secret (`tollgate-helper token` prints tokens, which are not).

pub mod authenticator;
pub mod cache;
pub mod chain;
pub mod cli;
pub mod config;
pub mod files;
pub mod known;
pub mod libostree;
pub mod p2p;
pub mod service;
pub mod tokens;
pub mod trust;
