//! What token issuance reads on every request — a license's row and the products — kept in
//! memory, so that an issuance costs no database round trip.
//!
//! Every change to products, licenses or accounts moves one counter (`entitlement_changes`,
//! kept by triggers, so a change made by `tollgate admin`, by another instance on the same
//! PostgreSQL or by SQL typed by hand counts as much as one made here). Issuance reads the counter
//! at most every [`FRESHNESS`]; when it has moved, everything kept is dropped. Writes through this
//! process drop it at once. So a license deactivated anywhere gets no new token after
//! [`FRESHNESS`] and the one read of the counter then under way — against tokens already
//! issued, which stay good until they expire (minutes), that adds nothing.
//!
//! One request reads the counter; requests that come while it does go on with what is kept
//! rather than queue behind it (every [`FRESHNESS`], all of them would stall for a database
//! round trip: at 128 connections of Basic credentials that was most of the p99), unless the
//! last read is older than [`STALE_LIMIT`], when they wait for it.
//!
//! A row read from the database before a drop is not kept after it: each drop moves an epoch,
//! and a row is taken back out when the epoch moved while it was read and put in.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use super::{License, Product, Result, Store, on_pool};

/// How old the knowledge of the counter may be when an issuance relies on what is kept.
pub(crate) const FRESHNESS: Duration = Duration::from_millis(50);
/// How old the last read of the counter may be for a request to go on without waiting for the
/// read under way.
const STALE_LIMIT: Duration = Duration::from_secs(1);
/// Licenses kept at most.
const LICENSES: usize = 100_000;

/// A license's stored key hash and the license.
pub(super) type LicenseRow = (Vec<u8>, License);

#[derive(Debug)]
pub(super) struct Recent {
    /// Unknown ids too (as `None`), so that a known and an unknown id take the same time.
    licenses: quick_cache::sync::Cache<String, Option<Arc<LicenseRow>>>,
    products: ArcSwapOption<HashMap<String, Product>>,
    /// Moved by every drop.
    epoch: AtomicU64,
    /// When the counter was last read, in milliseconds since `start`, plus one (0: never).
    checked_at: AtomicU64,
    /// The counter as last read; held while reading it, so that one request reads it at a time.
    changes: tokio::sync::Mutex<Option<i64>>,
    start: Instant,
}

impl Default for Recent {
    fn default() -> Recent {
        Recent {
            licenses: quick_cache::sync::Cache::new(LICENSES),
            products: ArcSwapOption::empty(),
            epoch: AtomicU64::new(0),
            checked_at: AtomicU64::new(0),
            changes: tokio::sync::Mutex::new(None),
            start: Instant::now(),
        }
    }
}

impl Recent {
    /// Forgets everything kept.
    pub(super) fn drop_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.licenses.clear();
        self.products.store(None);
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// Whether the counter was read less than `age` ago.
    fn checked_within(&self, age: Duration) -> bool {
        let at = self.checked_at.load(Ordering::Acquire);
        at != 0 && u128::from(self.millis().saturating_sub(at)) < age.as_millis()
    }

    fn fresh(&self) -> bool {
        self.checked_within(FRESHNESS)
    }
}

impl Store {
    /// Drops what is kept when the counter has moved since it was last read more than
    /// [`FRESHNESS`] ago.
    async fn recent_checked(&self) -> Result<()> {
        let recent = &self.recent;
        if recent.fresh() {
            return Ok(());
        }
        let mut seen = match recent.changes.try_lock() {
            Ok(seen) => seen,
            // Another request is reading it: what is kept is at most that read's age.
            Err(_) if recent.checked_within(STALE_LIMIT) => return Ok(()),
            Err(_) => recent.changes.lock().await,
        };
        if recent.fresh() {
            return Ok(());
        }
        let started = recent.millis();
        let (n,): (i64,) = on_pool!(self, read, pool => {
            sqlx::query_as("SELECT n FROM entitlement_changes")
                .fetch_one(pool)
                .await?
        });
        if *seen != Some(n) {
            recent.drop_all();
            *seen = Some(n);
        }
        recent.checked_at.store(started, Ordering::Release);
        Ok(())
    }

    /// A number that moves whenever products, licenses or accounts may have changed (read at
    /// most [`FRESHNESS`] ago): what is remembered about a credential holds while it stays.
    pub(crate) async fn entitlement_epoch(&self) -> Result<u64> {
        self.recent_checked().await?;
        Ok(self.recent.epoch.load(Ordering::SeqCst))
    }

    /// A license's key hash and the license, from memory when it is fresh.
    pub(super) async fn license_row_recent(&self, id: &str) -> Result<Option<Arc<LicenseRow>>> {
        self.recent_checked().await?;
        if let Some(row) = self.recent.licenses.get(id) {
            return Ok(row);
        }
        let epoch = self.recent.epoch.load(Ordering::SeqCst);
        let row = self.license_row(id).await?.map(Arc::new);
        self.recent.licenses.insert(id.to_owned(), row.clone());
        // Dropped meanwhile: the row may be older than the drop, so it is not kept.
        if self.recent.epoch.load(Ordering::SeqCst) != epoch {
            self.recent.licenses.remove(id);
        }
        Ok(row)
    }

    /// The products named, from memory when it is fresh; an unknown slug is not found.
    pub(crate) async fn products_named(&self, slugs: &[String]) -> Result<Vec<Product>> {
        self.recent_checked().await?;
        let mut all = match self.recent.products.load_full() {
            Some(all) => all,
            None => self.products_read().await?,
        };
        // A license made after the products were read may name one that is new since: read
        // them again rather than answer that it does not exist.
        if slugs.iter().any(|slug| !all.contains_key(slug)) {
            all = self.products_read().await?;
        }
        slugs
            .iter()
            .map(|slug| {
                all.get(slug)
                    .cloned()
                    .ok_or_else(|| super::StoreError::NotFound(format!("product {slug:?}")))
            })
            .collect()
    }

    /// Every product, from memory when it is fresh, in slug order.
    pub(crate) async fn products_all(&self) -> Result<Vec<Product>> {
        self.recent_checked().await?;
        let all = match self.recent.products.load_full() {
            Some(all) => all,
            None => self.products_read().await?,
        };
        let mut products: Vec<Product> = all.values().cloned().collect();
        products.sort_by(|a, b| a.slug.cmp(&b.slug));
        Ok(products)
    }

    async fn products_read(&self) -> Result<Arc<HashMap<String, Product>>> {
        let epoch = self.recent.epoch.load(Ordering::SeqCst);
        let all: Arc<HashMap<String, Product>> = Arc::new(
            self.product_list()
                .await?
                .into_iter()
                .map(|p| (p.slug.clone(), p))
                .collect(),
        );
        self.recent.products.store(Some(all.clone()));
        // Dropped meanwhile: what was read may be older than the drop, so it is not kept.
        if self.recent.epoch.load(Ordering::SeqCst) != epoch {
            self.recent.products.store(None);
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Location;

    #[tokio::test]
    async fn requests_go_on_while_another_reads_the_counter_unless_it_is_old() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&Location::Sqlite(dir.path().join("t.db")))
            .await
            .unwrap();
        let within = Duration::from_millis(500);
        store.recent_checked().await.unwrap();
        // Another request is reading the counter (it holds the lock), and the last read is
        // past FRESHNESS but within STALE_LIMIT: this one does not wait.
        let reading = store.recent.changes.lock().await;
        let age = |d: Duration| {
            let ms = u64::try_from(d.as_millis()).unwrap();
            store.recent.checked_at.store(
                store.recent.millis().saturating_sub(ms).max(1),
                Ordering::Release,
            );
        };
        tokio::time::sleep(FRESHNESS).await;
        age(FRESHNESS * 2);
        tokio::time::timeout(within, store.recent_checked())
            .await
            .expect("waited for the read under way")
            .unwrap();
        // Over STALE_LIMIT old: it waits for that read rather than rely on what is kept.
        tokio::time::sleep(STALE_LIMIT + FRESHNESS).await;
        age(STALE_LIMIT + FRESHNESS);
        assert!(
            tokio::time::timeout(within, store.recent_checked())
                .await
                .is_err(),
            "went on with what was kept over STALE_LIMIT ago"
        );
        drop(reading);
        tokio::time::timeout(within, store.recent_checked())
            .await
            .expect("the counter read")
            .unwrap();
        assert!(store.recent.fresh());
    }
}
