//! tollgate's server: serves OSTree archive repositories over HTTP (and, in later versions,
//! gates each object by per-ref tokens and runs the entitlement service).
//!
//! Map: [`cli`] is the command line; `serve` and `demo` are its commands; `repos` opens and
//! guards the served repositories; `http` holds the route table, the file handler, the error
//! type and the listener. The OSTree format itself lives in the `tollgate-ostree-format` crate.
//!
//! The server must never serve a file outside the closed grammar of repository paths, never
//! follow a symlink out of a repository, and never answer 5xx for a client's mistake.

mod admin_cli;
mod audit;
mod bucket;
pub mod cli;
mod clients;
mod config;
mod demo;
mod entitlements;
mod flatpak_app;
#[doc(hidden)]
pub mod fuzz;
mod http;
mod index;
mod limiter;
mod logging;
mod metrics;
mod operator;
mod output;
mod refpattern;
mod repos;
mod secrets;
mod serve;
mod store;
mod tokens;
