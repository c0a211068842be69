//! What token issuance reads on every request — a license's row and the products — kept in
//! memory, so that an issuance costs no database round trip.
//!
//! Every change to products, licenses or accounts moves one counter (`entitlement_changes`,
//! kept by triggers, so a change made by `tollgate admin`, by another instance on the same
//! PostgreSQL or by SQL typed by hand counts as much as one made here). Issuance reads the counter
//! at most every [`FRESHNESS`]; when it has moved, everything kept is dropped. Writes through this
//! process drop it at once. So a license deactivated anywhere gets no new token after
//! [`FRESHNESS`] at most — against tokens already issued, which stay good until they expire
//! (minutes), that adds nothing.
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

    fn fresh(&self) -> bool {
        let at = self.checked_at.load(Ordering::Acquire);
        at != 0 && u128::from(self.millis().saturating_sub(at)) < FRESHNESS.as_millis()
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
        let mut seen = recent.changes.lock().await;
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
