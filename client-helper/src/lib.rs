//! The client helper: what runs on the customer's machine.
//!
//! So far it holds the provider chain ([`chain`]): credentials from plugins, found in the
//! provider search path and asked in a configured order ([`config`]), and the `tollgate-helper`
//! commands that list providers and find, store and forget credentials ([`cli`]).
//!
//! Later issues add the client of the entitlement service with a per-remote, per-ref token
//! cache, the `tollgate-authenticator` D-Bus service implementing
//! `org.freedesktop.Flatpak.Authenticator`, token-aware `ostree pull`, and P2P pulls that give a
//! token only to the origin and to mirrors the user trusts. It must never send a token to a
//! server it was not issued for, and it never prints a secret.

pub mod authenticator;
pub mod cache;
pub mod chain;
pub mod cli;
pub mod config;
pub mod service;
pub mod tokens;
