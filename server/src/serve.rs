//! `tollgate serve`: check everything the command line names, then listen and serve.
//!
//! Everything that can fail without writing runs first: the configuration, the keys and secret
//! it names, the repositories, the listening address, and each repository's reachability index.
//! Only then are the data directory and its signing key created, so a bad start ends with one
//! error line and leaves nothing behind.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::audit::LogAudit;
use crate::cli::ServeArgs;
use crate::config::Config;
use crate::http::{self, AppState, Served};
use crate::index::live::{LiveIndex, SharedPolicy};
use crate::repos::{self, ServedRepo};
use crate::tokens::{KeyDir, TrustedKeys, Verifier};

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let trusted = TrustedKeys::load(&config.tokens)?;
    let repos = repos::open_all(&args.repos)?;
    let data_dir = args.data_dir.resolve()?;
    let listener = bind(args.listen.listen)?;
    run(listener, repos, &data_dir, config, trusted, |_| {})
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

/// Indexes `repos`, prepares the data directory and its signing key, and serves until SIGINT
/// or SIGTERM. `ready` runs once the server accepts connections, with its address.
pub fn run(
    listener: std::net::TcpListener,
    repos: Vec<ServedRepo>,
    data_dir: &Path,
    config: Config,
    trusted: TrustedKeys,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("reading the listening address")?;
    let config = Arc::new(config);
    let policy_config = Arc::clone(&config);
    let policy: SharedPolicy = Arc::new(move |name: &str| policy_config.gates_by_name(name));
    let mut served = Vec::with_capacity(repos.len());
    for repo in repos {
        let index = LiveIndex::start(repo.repo.clone(), Arc::clone(&policy))
            .with_context(|| format!("indexing {}", repo.repo.root().display()))?;
        served.push(Served { repo, index });
    }

    prepare_data_dir(data_dir)?;
    let keys = KeyDir::new(data_dir);
    let (signing, created) = keys.ensure()?;
    if created {
        tracing::info!(
            "created the signing key {} in {}",
            signing.kid(),
            keys.path().display()
        );
    }
    let verifier = Verifier::with_local_keys(trusted, &keys.load_all()?)?;
    let mut kids: Vec<&str> = verifier.key_ids().collect();
    kids.sort_unstable();
    tracing::info!(
        "accepting tokens signed by {}{}",
        kids.join(", "),
        if verifier.accepts_flat_manager() {
            ", and flat-manager download tokens"
        } else {
            ""
        }
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::from_std(listener).context("registering the listener")?;
        for s in &served {
            let at = s
                .repo
                .name
                .as_deref()
                .map(|n| format!("/{n}/"))
                .unwrap_or("/".to_owned());
            tracing::info!("serving {} at {at}", s.repo.repo.root().display());
        }
        let state = Arc::new(AppState::new(served, verifier, Arc::new(LogAudit)));
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
