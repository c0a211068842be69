//! The credential-provider plugin ABI of tollgate, and both of its sides.
//!
//! Providers are shared libraries (`libtollgate_provider_<name>.so`) that find, keep and forget
//! the credential (a license key, an account's name and password, or a bearer token) for an
//! entitlement service URL: a desktop keyring, a file, an enterprise vault, a hardware token.
//! The tollgate helper loads whichever are installed and asks them in order.
//!
//! - [`abi`]: the C ABI, as `include/tollgate_provider.h` declares it for providers written in C.
//! - [`Provider`] and [`export_provider!`]: write a provider in safe Rust.
//! - [`host`] (feature `host`): load providers, check them, call them with a time limit.
//! - [`url::normalise`]: the form of the URL credentials are keyed by.
//!
//! This is the only crate of the workspace with `extern "C"`, and `unsafe` only in its FFI
//! modules (`abi`, `export`, `host`, and `fuzz`, a provider made up by the fuzzer). Nothing crosses the ABI but C types.

pub mod abi;
mod credential;
mod export;
#[cfg(feature = "host")]
#[doc(hidden)]
pub mod fuzz;
#[cfg(feature = "host")]
pub mod host;
pub mod url;

pub use credential::{Capabilities, Credential, ErrorKind, Kind, ProviderError, Request, Secret};
#[doc(hidden)]
pub use export::__private;
pub use export::{Instance, Provider};
