//! `tollgate serve`: check everything the command line names, then listen and serve.
//!
//! All checks happen before anything is written: a bad repository or a busy address ends the
//! command with one error line and leaves the data directory untouched.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::cli::ServeArgs;
use crate::http::{self, AppState};
use crate::repos::{self, ServedRepo};

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let repos = repos::open_all(&args.repos)?;
    let data_dir = args.data_dir()?;
    let listener = bind(args.listen.listen)?;
    prepare_data_dir(&data_dir)?;
    run(listener, repos, |_| {})
}

/// Binds the listening socket, with an error that says what to do when the address is taken.
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (another program is listening there: stop it, or choose another address with \
                 --listen; port 0 picks a free one)"
            }
            std::io::ErrorKind::AddrNotAvailable => {
                " (that address does not belong to this machine)"
            }
            _ => "",
        };
        anyhow::Error::new(e).context(format!("cannot listen on {addr}{hint}"))
    })?;
    listener
        .set_nonblocking(true)
        .context("making the listening socket non-blocking")?;
    Ok(listener)
}

/// Creates the data directory (mode 0700) if it does not exist yet.
pub fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))
}

/// Serves `repos` on `listener` until SIGINT or SIGTERM. `ready` runs once the server accepts
/// connections, with the address it listens on.
pub fn run(
    listener: std::net::TcpListener,
    repos: Vec<ServedRepo>,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("reading the listening address")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::from_std(listener).context("registering the listener")?;
        for repo in &repos {
            let at = repo
                .name
                .as_deref()
                .map(|n| format!("/{n}/"))
                .unwrap_or("/".to_owned());
            tracing::info!("serving {} at {at}", repo.repo.root().display());
        }
        let state = Arc::new(AppState::new(repos));
        tracing::info!("listening on http://{addr}/");
        ready(addr);
        http::listener::run(listener, http::routes(state), shutdown_signal()).await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!("cannot watch for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
