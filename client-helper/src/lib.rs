//! The client helper: what runs on the customer's machine.
//!
//! Credentials come from provider plugins found in a search path and asked in a configured
//! order ([`chain`], [`config`]); download tokens from the entitlement service ([`service`]),
//! kept in a per-service, per-ref cache ([`cache`]), both behind one [`tokens::Helper`]. Two
//! front ends use it: `tollgate-authenticator`, the D-Bus service implementing
//! `org.freedesktop.Flatpak.Authenticator` ([`authenticator`]), and the `tollgate-helper`
//! commands ([`commands`], one module per command). [`trust`] is the rule for who may see a service's tokens (its origin, and
//! mirrors the user trusts), which both front ends apply; [`p2p`] plans P2P pulls so that a
//! token reaches only the origin it was issued for and mirrors the user trusts. Nothing here sends a token to a server it was not
//! issued for, or prints a secret unasked (`tollgate-helper token` prints tokens, which are not;
//! `os-remote add --print` prints the ostree command with the credential, as asked).

// Everything is private to the crate but the two entry points, so that rustc's dead-code check
// sees every item; `unreachable_pub` keeps `pub` for what is really exported.
#![warn(unreachable_pub)]

mod authenticator;
mod cache;
mod chain;
mod commands;
mod config;
mod files;
mod known;
mod libostree;
mod p2p;
mod service;
mod tokens;
mod trust;
mod webflow;

/// `tollgate-helper`'s entry point.
pub use commands::main as helper_main;

/// `tollgate-authenticator`'s entry point.
pub use authenticator::main as authenticator_main;
