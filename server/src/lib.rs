//! tollgate's server: serves OSTree archive repositories over HTTP, gates each object by per-ref
//! tokens, and runs the entitlement service that issues them.
//!
//! Map: [`commands`] is the command line, one module per command, and the only place clap is
//! used; everything else is the library core it drives with plain values. `serve` checks and
//! starts a server; `repos` opens and guards the served repositories; `index` knows which refs
//! reach each object; `http` holds the route table, the handlers, the error type and the
//! listener; `entitlements`, `store` and `tokens` turn credentials into signed download tokens.
//! The OSTree format itself lives in the `tollgate-ostree-format` crate.
//!
//! The server must never serve a file outside the closed grammar of repository paths, never
//! follow a symlink out of a repository, and never answer 5xx for a client's mistake.

// Only the entry point and the fuzzing hooks are exported: rustc's dead-code check sees every
// other item, and `unreachable_pub` keeps `pub` for what is really exported.
#![warn(unreachable_pub)]

mod audit;
mod authenticator;
mod bucket;
mod clients;
pub mod commands;
mod config;
mod datadir;
mod entitlements;
mod flatpak_app;
#[doc(hidden)]
pub mod fuzz;
mod http;
mod index;
mod limiter;
mod logging;
mod metrics;
mod output;
mod process;
mod refpattern;
mod repos;
mod secrets;
mod serve;
mod store;
mod times;
mod tokens;
