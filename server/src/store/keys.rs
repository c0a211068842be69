//! The public halves of the signing keys, shared through the database so that every instance
//! publishes and trusts the same set, with the time each key stopped signing.

use serde::Serialize;

use super::{Result, Store, on_pool};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PublishedKey {
    pub kid: String,
    /// The raw Ed25519 public key.
    pub public_key: Vec<u8>,
    pub created: i64,
    /// When it stopped signing; `None` while it signs.
    pub retired: Option<i64>,
}

impl Store {
    /// Records a key's public half, unless it is recorded already.
    pub(crate) async fn key_publish(
        &self,
        kid: &str,
        public_key: &[u8],
        created: i64,
    ) -> Result<()> {
        on_pool!(self, write, pool => {
            sqlx::query(
                "INSERT INTO signing_keys (kid, public_key, created, retired) \
                 VALUES ($1, $2, $3, NULL) ON CONFLICT (kid) DO NOTHING",
            )
            .bind(kid)
            .bind(public_key)
            .bind(created)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Marks the keys `kids` retired at `at` (keys retired earlier keep their time). Only the
    /// keys of one data directory are ever named, so that instances sharing a database never
    /// retire each other's signing keys.
    pub(crate) async fn keys_retire(&self, kids: &[String], at: i64) -> Result<()> {
        for kid in kids {
            on_pool!(self, write, pool => {
                sqlx::query("UPDATE signing_keys SET retired = $1 WHERE kid = $2 AND retired IS NULL")
                    .bind(at)
                    .bind(kid)
                    .execute(pool)
                    .await?;
            });
        }
        Ok(())
    }

    /// Keys that may still have valid tokens: signing ones, and ones retired after `since`.
    pub(crate) async fn keys_valid_since(&self, since: i64) -> Result<Vec<PublishedKey>> {
        let rows: Vec<(String, Vec<u8>, i64, Option<i64>)> = on_pool!(self, read, pool => {
            sqlx::query_as(
                "SELECT kid, public_key, created, retired FROM signing_keys \
                 WHERE retired IS NULL OR retired > $1 ORDER BY created DESC, kid",
            )
            .bind(since)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(kid, public_key, created, retired)| PublishedKey {
                kid,
                public_key,
                created,
                retired,
            })
            .collect())
    }
}
