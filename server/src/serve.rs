//! Serving: check everything the options name, then listen and serve.
//!
//! Everything that can fail without writing runs first: the configuration, the keys and secret
//! it names, the repositories, the listening address, and each repository's reachability index.
//! Only then are the data directory and its signing key created, so a bad start ends with one
//! error line and leaves nothing behind.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use jsonwebtoken::DecodingKey;

use crate::audit::AuditWriter;
use crate::config::Config;
use crate::datadir::prepare_data_dir;
use crate::entitlements::Entitlements;
use crate::http::{self, AppState, Served};
use crate::index::live::{LiveIndex, SharedPolicy};
use crate::repos::{self, RepoArg, ServedRepo};
use crate::store::{Location, Store, now};
use crate::tokens::{KeyDir, LEEWAY_SECS, TrustedKeys, Verifier};

/// What `tollgate serve` is given.
#[derive(Debug)]
pub(crate) struct Options {
    /// The repositories, each with the name it is served at.
    pub repos: Vec<RepoArg>,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The configuration file, if any.
    pub config: Option<PathBuf>,
    /// PostgreSQL instead of SQLite in the data directory.
    pub database_url: Option<String>,
}

/// Checks everything `options` names, then serves until SIGINT or SIGTERM.
pub(crate) fn serve(options: Options) -> anyhow::Result<()> {
    let config = Config::load(options.config.as_deref())?;
    let trusted = TrustedKeys::load(&config.tokens)?;
    let repos = repos::open_all(&options.repos, &config.storage)?;
    let database = Location::new(&options.data_dir, options.database_url.as_deref());
    let listener = bind(options.listen)?;
    run(
        listener,
        repos,
        &options.data_dir,
        &database,
        config,
        trusted,
        |_| {},
    )
}

/// Binds the listening socket, with an error that says what to do when the address is taken.
pub(crate) fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
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

/// How often a running server looks for a rotated key.
const KEY_REFRESH: Duration = Duration::from_secs(10);

/// Indexes `repos`, prepares the data directory, its signing key and the database, and serves
/// until SIGINT or SIGTERM. `ready` runs once the server accepts connections, with its address.
pub(crate) fn run(
    listener: std::net::TcpListener,
    repos: Vec<ServedRepo>,
    data_dir: &Path,
    database: &Location,
    config: Config,
    trusted: TrustedKeys,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("reading the listening address")?;
    let admin_token = config.admin_token()?;
    let order_secret = config.order_secret()?;
    let metrics_token = config.metrics_token()?;
    raise_file_limit(config.limits.max_connections);
    let config = Arc::new(config);
    let policy_config = Arc::clone(&config);
    let policy: SharedPolicy = Arc::new(move |name: &str| policy_config.gates_by_name(name));
    let mut served = Vec::with_capacity(repos.len());
    for repo in repos {
        let index = LiveIndex::start(
            repo.repo.clone(),
            Arc::clone(&policy),
            config.limits.max_ref_objects,
        )
        .with_context(|| format!("indexing {}", repo.repo.location()))?;
        served.push(Served::new(repo, index));
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

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let store = Store::open(database)
            .await
            .with_context(|| format!("opening the database {database}"))?;
        // The data directory's keys go public; the newest signs, the others only verify until
        // the tokens they signed have expired. Keys of other instances sharing the database
        // are theirs to retire.
        let mut older = Vec::new();
        for key in keys.load_all()? {
            store
                .key_publish(
                    key.kid(),
                    key.public_key(),
                    i64::try_from(key.created()).unwrap_or(0),
                )
                .await?;
            if key.kid() != signing.kid() {
                older.push(key.kid().to_owned());
            }
        }
        store.keys_retire(&older, now()).await?;
        warn_about_product_repos(&store, &served).await?;
        let ttl = config.entitlements.token_ttl;
        let verifier = verifier(&store, &trusted, ttl).await?;
        let mut kids: Vec<&str> = verifier.key_ids().collect();
        kids.sort_unstable();
        tracing::info!(
            "signing tokens with {}; accepting tokens signed by {}{}",
            signing.kid(),
            kids.join(", "),
            if verifier.accepts_flat_manager() {
                ", and flat-manager download tokens"
            } else {
                ""
            }
        );

        let audit = Arc::new(AuditWriter::start(store.clone()));
        let entitlements = Arc::new(Entitlements::new(
            store.clone(),
            signing,
            ttl,
            config.entitlements.max_failures,
            Duration::from_secs(config.entitlements.failure_window),
            Arc::clone(&audit),
        ));
        let listener =
            tokio::net::TcpListener::from_std(listener).context("registering the listener")?;
        for s in &served {
            let at = s
                .repo
                .name
                .as_deref()
                .map(|n| format!("/{n}/"))
                .unwrap_or("/".to_owned());
            tracing::info!("serving {} at {at}", s.repo.repo.location());
        }
        if config.public_url.is_none() {
            tracing::info!(
                "the .flatpakrepo files name http:// and the Host each client asked for; behind \
                 a TLS proxy, set public-url in the configuration"
            );
        }
        if admin_token.is_none() {
            tracing::info!("the admin API is off: no admin token is configured");
        }
        let state = Arc::new(
            AppState::new(
                served,
                verifier,
                entitlements,
                Arc::clone(&audit),
                admin_token,
                metrics_token,
                config.public_url.clone(),
            )
            .with_body_timeout(Duration::from_secs(config.limits.stall_timeout))
            .with_proxies(config.proxies())
            .with_web(config.web)
            .with_order_secret(order_secret),
        );
        let refresher = tokio::spawn(follow_rotations(Arc::clone(&state), keys, trusted, ttl));
        tracing::info!("listening on http://{addr}/");
        ready(addr);
        http::listener::run(listener, state, config.limits, shutdown_signal()).await;
        refresher.abort();
        audit.close().await;
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Says which products open nothing on this server because of their repository: made
/// without one while several are served, or for one it does not serve. An operator adding a
/// second repository learns here which products to give theirs.
async fn warn_about_product_repos(store: &Store, served: &[Served]) -> anyhow::Result<()> {
    let names: Vec<&str> = served
        .iter()
        .map(|s| s.repo.name.as_deref().unwrap_or(""))
        .collect();
    let products = store.product_list().await?;
    let slugs = |keep: &dyn Fn(Option<&str>) -> bool| {
        products
            .iter()
            .filter(|p| keep(p.repo.as_deref()))
            .map(|p| p.slug.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let unassigned = slugs(&|repo| repo.is_none() && names.len() > 1);
    if !unassigned.is_empty() {
        tracing::warn!(
            "the products {unassigned} belong to no repository, so they open nothing while \
             several are served: give each its repository with `tollgate admin product update \
             SLUG --repo NAME`"
        );
    }
    let elsewhere = slugs(&|repo| repo.is_some_and(|r| !names.contains(&r)));
    if !elsewhere.is_empty() {
        tracing::warn!(
            "the products {elsewhere} belong to repositories this server does not serve, so \
             they open nothing here"
        );
    }
    Ok(())
}

/// The verifier for the configured keys and every published key that may still have valid
/// tokens (signing, or retired less than a token's lifetime ago).
async fn verifier(store: &Store, trusted: &TrustedKeys, ttl: u64) -> anyhow::Result<Verifier> {
    let overlap = i64::try_from(ttl + LEEWAY_SECS).unwrap_or(i64::MAX);
    let published = store
        .keys_valid_since(now().saturating_sub(overlap))
        .await?
        .into_iter()
        .map(|k| (k.kid, DecodingKey::from_ed_der(&k.public_key)))
        .collect();
    Verifier::with_keys(trusted, published)
}

/// Signs with the newest key of the data directory and trusts what the database publishes,
/// checking every few seconds, so that `tollgate keys rotate` takes effect without a restart.
/// A new key signs only once the database publishes it: otherwise (rotated against another
/// database, say) no server could check what it signs.
async fn follow_rotations(state: Arc<AppState>, keys: KeyDir, trusted: TrustedKeys, ttl: u64) {
    let store = state.entitlements.store().clone();
    let mut warned: Option<String> = None;
    loop {
        tokio::time::sleep(KEY_REFRESH).await;
        let fresh = match verifier(&store, &trusted, ttl).await {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!("reading the published keys: {e:#}");
                continue;
            }
        };
        match keys.load_all().map(|k| k.into_iter().next()) {
            Ok(Some(newest)) if newest.kid() != state.entitlements.signer_kid() => {
                if fresh.key_ids().any(|kid| kid == newest.kid()) {
                    tracing::info!("signing tokens with {} from now on", newest.kid());
                    state.entitlements.set_signer(newest);
                } else if warned.as_deref() != Some(newest.kid()) {
                    tracing::warn!(
                        "the new key {} is not published in the database, so it does not sign \
                         yet: run `tollgate keys rotate` with this server's --database-url, or \
                         restart the server",
                        newest.kid()
                    );
                    warned = Some(newest.kid().to_owned());
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("reading the signing keys: {e:#}"),
        }
        let current = state.verifier.load();
        let mut old: Vec<&str> = current.key_ids().collect();
        let mut new: Vec<&str> = fresh.key_ids().collect();
        old.sort_unstable();
        new.sort_unstable();
        if old != new {
            tracing::info!("accepting tokens signed by {}", new.join(", "));
            drop(current);
            state.verifier.store(Arc::new(fresh));
        }
    }
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

/// Raises the soft limit on open files to the hard one, so that `max-connections` (plus the
/// files being served) is what bounds connections, not the shell's default of 1024. Says so
/// when even the hard limit is too low.
fn raise_file_limit(max_connections: usize) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!("raising the open file limit: {e}");
        }
    }
    let files = getrlimit(Resource::Nofile).current;
    // Each connection is a socket and, while a file is streamed, that file too.
    let wanted = max_connections.saturating_mul(2).saturating_add(256) as u64;
    if files.is_some_and(|files| files < wanted) {
        tracing::warn!(
            "the open file limit ({}) is below what max-connections = {max_connections} can \
             use ({wanted}): raise it (LimitNOFILE= in a systemd unit, ulimit -n) or lower \
             max-connections",
            files.unwrap_or_default()
        );
    }
}
