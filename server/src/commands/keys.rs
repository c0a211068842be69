//! `tollgate keys generate|list|rotate`: the Ed25519 keys that sign download tokens.

use anyhow::{Context, bail};
use clap::Subcommand;

use super::{DataDirArg, DatabaseArg};
use crate::datadir::prepare_data_dir;
use crate::output::print_line;
use crate::store::{Location, Store, now};
use crate::tokens::KeyDir;

#[derive(Debug, Subcommand)]
pub(super) enum KeysCommand {
    /// Create the data directory's signing key, unless it has one (`tollgate serve` does this
    /// too on its first start). Prints the key id.
    Generate(DataDirArg),
    /// List the signing keys, newest (the one that signs) first.
    List(DataDirArg),
    /// Make a new signing key. Servers sign with it within seconds; the old keys stay
    /// published and trusted until every token they signed has expired.
    Rotate {
        #[command(flatten)]
        data_dir: DataDirArg,
        #[command(flatten)]
        database: DatabaseArg,
    },
}

pub(super) fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate(dir) => {
            let data_dir = dir.resolve()?;
            prepare_data_dir(&data_dir)?;
            let keys = KeyDir::new(&data_dir);
            let (key, created) = keys.ensure()?;
            let what = if created { "created" } else { "already has" };
            tracing::info!(
                "{} {what} the signing key {}",
                keys.path().display(),
                key.kid()
            );
            print_line(key.kid());
        }
        KeysCommand::Rotate { data_dir, database } => {
            let data_dir = data_dir.resolve()?;
            prepare_data_dir(&data_dir)?;
            let keys = KeyDir::new(&data_dir);
            let location = Location::new(&data_dir, database.url.as_deref());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let key = runtime.block_on(async {
                // The database first: a key that cannot be published must not be made, or a
                // running server would find it and have nobody able to check what it signs.
                let store = Store::open(&location)
                    .await
                    .with_context(|| format!("opening the database {location}"))?;
                let key = keys.add()?;
                let created = i64::try_from(key.created()).unwrap_or(0);
                store
                    .key_publish(key.kid(), key.public_key(), created)
                    .await?;
                let older: Vec<String> = keys
                    .load_all()?
                    .iter()
                    .map(|k| k.kid().to_owned())
                    .filter(|kid| kid != key.kid())
                    .collect();
                store.keys_retire(&older, now()).await?;
                store.close().await;
                anyhow::Ok(key)
            })?;
            tracing::info!(
                "{} signs from now on; the previous keys stay trusted until the tokens they \
                 signed expire",
                key.kid()
            );
            print_line(key.kid());
        }
        KeysCommand::List(dir) => {
            let keys = KeyDir::new(&dir.resolve()?).load_all()?;
            if keys.is_empty() {
                bail!("no signing keys yet; `tollgate keys generate` makes one");
            }
            for (i, key) in keys.iter().enumerate() {
                let role = if i == 0 { "signing" } else { "verifying" };
                print_line(&format!("{}  created {}  {role}", key.kid(), key.created()));
                print_line(key.public_pem().trim_end());
            }
        }
    }
    Ok(())
}
