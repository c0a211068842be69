//! Log output: human-readable lines on stderr, filtered by `RUST_LOG` (default `info`, with
//! the object storage client's notes on each retry at `warn`: the error, if it comes, says
//! how many retries there were).
//! The access log is the `tollgate::access` target; `RUST_LOG=info,tollgate::access=off`
//! silences it.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub(crate) fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,object_store=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
