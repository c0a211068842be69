//! The entitlement database: products, licenses, accounts, the web pages' sessions, the audit
//! records, and the public halves of the signing keys. SQLite in the data directory by default
//! (WAL, one writer), or PostgreSQL for several instances; one schema (`server/migrations/`),
//! migrated at start.
//!
//! Each operation is written once as SQL that both backends accept and runs on whichever the
//! store holds (see `on_pool!`). Times are seconds since the epoch. Secrets never reach this
//! module in the clear except to be hashed: license keys as SHA-256 of their secret part,
//! passwords with Argon2id.

mod audit;
mod devices;
mod keys;
mod licenses;
mod orders;
mod products;
mod recent;
mod sessions;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub(crate) use audit::{AuditFilter, DownloadRow, IssuedToken};
pub(crate) use devices::{DeviceKey, MAX_DEVICE_NAME};
pub(crate) use licenses::{
    Account, License, LicenseKey, NewLicense, account_holdings, is_account_name,
};
pub(crate) use orders::{Order, OrderOutcome};
pub(crate) use products::{Product, check_purchase_url};
pub(crate) use sessions::{Session, random_token};

/// How long a writer waits for SQLite's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong with a stored thing, by what the caller should answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Db(sqlx::Error),
    #[error("migrating the database")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("hashing a password: no turn to hash in")]
    HashingTurn(#[source] tokio::sync::AcquireError),
    #[error("hashing a password: the hashing task did not finish")]
    Hashing(#[source] tokio::task::JoinError),
}

impl From<sqlx::Error> for StoreError {
    /// A constraint broken by a change made at the same time (a product removed while a
    /// license for it is added, say) is a conflict to retry, not a failure of the server.
    fn from(e: sqlx::Error) -> StoreError {
        match &e {
            sqlx::Error::Database(db)
                if db.is_foreign_key_violation() || db.is_unique_violation() =>
            {
                StoreError::Conflict(
                    "this conflicts with a change made at the same time; look again and retry"
                        .to_owned(),
                )
            }
            _ => StoreError::Db(e),
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, StoreError>;

/// Which database, as the command line names it. Shown (`Display`, `Debug`) without the
/// PostgreSQL URL's password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// `DATA_DIR/tollgate.db`.
    Sqlite(std::path::PathBuf),
    /// `postgres://...`
    Postgres(String),
}

impl Location {
    pub(crate) fn new(data_dir: &Path, database_url: Option<&str>) -> Location {
        match database_url {
            Some(url) => Location::Postgres(url.to_owned()),
            None => Location::Sqlite(data_dir.join("tollgate.db")),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => f.write_str(&shown_url(url)),
        }
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Location::Postgres(url) => f.debug_tuple("Postgres").field(&shown_url(url)).finish(),
        }
    }
}

/// A PostgreSQL URL as it may be shown: where the database is, never how to get in. The
/// password, in the user part or as a `password` parameter, is replaced by `***`; a URL that
/// does not parse is not shown at all, since where its password starts is anyone's guess (an
/// unencoded `@` or `/` in it, say).
pub(crate) fn shown_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "(a PostgreSQL URL that does not parse; not shown, as it may hold a password)"
            .to_owned();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" { "***".into() } else { v };
                (k.into_owned(), v.into_owned())
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// Why a connection to PostgreSQL with these options might cross a network unencrypted, if it
/// might: TLS is not required (`sslmode` other than `require`, `verify-ca` or `verify-full`;
/// sqlx's default, `prefer`, quietly goes without when the server or someone between says so)
/// and the server is not on this machine (loopback or a Unix socket).
fn plaintext_risk(options: &PgConnectOptions) -> Option<String> {
    use sqlx::postgres::PgSslMode;
    let mode = match options.get_ssl_mode() {
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull => return None,
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
    };
    let host = options.get_host();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let local = options.get_socket().is_some()
        || host.starts_with('/')
        || bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback());
    (!local).then(|| format!("{host}:{} with sslmode={mode}", options.get_port()))
}

/// Starts a transaction that writes. On SQLite it is `BEGIN IMMEDIATE`, which takes the write
/// lock at once (waiting up to the busy timeout): a deferred transaction that reads before it
/// writes fails outright (`SQLITE_BUSY_SNAPSHOT`) when another process, such as `tollgate
/// admin` beside a running server, committed in between. PostgreSQL's `BEGIN` needs no such care.
pub(crate) trait BeginWrite {
    type Database: sqlx::Database;
    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, Self::Database>>;
}

impl BeginWrite for SqlitePool {
    type Database = sqlx::Sqlite;
    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Database = sqlx::Postgres;
    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.begin().await
    }
}

#[derive(Debug, Clone)]
enum Db {
    /// One connection writes (SQLite allows one writer; queueing here beats `database is
    /// locked`), several read.
    Sqlite {
        write: SqlitePool,
        read: SqlitePool,
    },
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the pool that does `$kind` (`write`, `change` or `read`).
macro_rules! on_pool {
    ($store:expr, write, $pool:ident => $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite { write: $pool, .. } => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
    // A write to products, licenses or accounts: what issuance keeps in memory is dropped after
    // it, so that this process sees its own change at once.
    ($store:expr, change, $pool:ident => $body:expr) => {{
        let done = $crate::store::on_pool!($store, write, $pool => $body);
        $store.recent.drop_all();
        done
    }};
    ($store:expr, read, $pool:ident => $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite { read: $pool, .. } => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Inserts one row per item of `$items` with `$insert` (binding `$owner`, then the item) in the
/// transaction `$tx` that an `on_pool!` body opened, for either database: a holder's products,
/// a product's patterns.
macro_rules! insert_rows {
    ($tx:ident, $insert:literal, $owner:expr, $items:expr) => {
        for item in $items {
            sqlx::query($insert)
                .bind($owner)
                .bind(item)
                .execute(&mut *$tx)
                .await?;
        }
    };
}
pub(crate) use insert_rows;

/// The entitlement database.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    db: Db,
    /// Licenses and products as issuance last read them (see `recent`).
    recent: std::sync::Arc<recent::Recent>,
}

impl Store {
    /// Opens (creating it if needed) and migrates the database at `location`.
    pub(crate) async fn open(location: &Location) -> Result<Store> {
        let db = match location {
            Location::Sqlite(path) => {
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(BUSY_TIMEOUT);
                let write = SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options.clone())
                    .await?;
                // The file holds hashes of keys and passwords: owner only.
                restrict_mode(path);
                sqlx::migrate!("migrations/sqlite").run(&write).await?;
                let read = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options.read_only(true))
                    .await?;
                Db::Sqlite { write, read }
            }
            Location::Postgres(url) => {
                let options = PgConnectOptions::from_str(url)?;
                if let Some(risk) = plaintext_risk(&options) {
                    tracing::warn!(
                        "PostgreSQL is reached at {risk}: TLS is not required, so the \
                         entitlement data (license and password hashes, the audit) and the \
                         login may cross the network unencrypted. Add sslmode=verify-full (or \
                         require) to the database URL, or reach PostgreSQL over loopback or a \
                         Unix socket"
                    );
                }
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options)
                    .await?;
                sqlx::migrate!("migrations/postgres").run(&pool).await?;
                Db::Postgres(pool)
            }
        };
        Ok(Store {
            db,
            recent: Default::default(),
        })
    }

    /// Waits for queued writes and closes the connections.
    pub(crate) async fn close(&self) {
        match &self.db {
            Db::Sqlite { write, read } => {
                read.close().await;
                write.close().await;
            }
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

fn restrict_mode(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for file in [
        path.to_owned(),
        path.with_extension("db-wal"),
        path.with_extension("db-shm"),
    ] {
        if file.exists() {
            let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
        }
    }
}

/// Seconds since the epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
