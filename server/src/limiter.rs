//! Counting failed credential checks, to stop guessing.
//!
//! A key (a client address, an account name) that fails `max_failures` times within `window`
//! is blocked until that window ends, and a blocked key is refused *before* its credential is
//! checked, so a blocked guesser learns nothing from further tries. Only failures count: a
//! legitimate client asking for tokens often is never limited. (governor's limiters count
//! every attempt and cannot look without taking, which is why this is not one of them.)
//!
//! A check takes time (a database lookup, a password hash), so a guesser could send many at
//! once, all let in before the first failure is counted. Checks therefore take turns: at most
//! `max_failures` of one key's checks run at a time, the others wait, and each looks again
//! whether the key is blocked when its turn comes. So a key gets fewer than `2 * max_failures`
//! guesses per window however many it sends at once, while a busy legitimate client only waits
//! a moment for a turn.
//!
//! Memory is bounded, and a blocked key is never forgotten before its window ends. At most
//! `capacity` keys are tracked. When the table is full and a new key comes, the table is swept:
//! what is not blocked goes (a key with fewer failures than the limit starts again from zero;
//! never a key with a check running). When the sweep leaves more than half the table, which is
//! then all blocked, sweeping again would free little and cost the whole table each time, so
//! the next sweep waits until enough of those blocks have ended to free half; meanwhile, and
//! whenever the table stays full, keys it does not hold all count as one, the *overflow*. The
//! overflow fails closed: once it is blocked, every key the table does not hold is refused until
//! its window ends, even when the table has room again, so that guessers who filled the table
//! are refused rather than forgotten. Filling the table takes `capacity` keys each blocked
//! (with the default limits, a million failures from 100,000 addresses); the clients the table
//! holds are not held up by it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub(crate) struct FailureLimiter<K> {
    max_failures: u32,
    window: Duration,
    capacity: usize,
    table: Mutex<Table<K>>,
}

#[derive(Debug)]
struct Table<K> {
    entries: HashMap<K, Entry>,
    /// What every key the table has no room for counts in.
    overflow: Entry,
    /// No sweep before this: the last one left the table mostly blocked, and this is when
    /// enough of those blocks end for the next to free half of it.
    next_sweep: Instant,
}

#[derive(Debug, Clone)]
struct Entry {
    started: Instant,
    failures: u32,
    /// Turns for this key's checks: `max_failures` permits, each waiter woken in order.
    turns: Arc<Semaphore>,
}

impl Entry {
    fn new(max_failures: u32, now: Instant) -> Entry {
        Entry {
            started: now,
            failures: 0,
            turns: Arc::new(Semaphore::new(max_failures as usize)),
        }
    }

    /// Whether a check of this key is running or waiting for its turn (each holds the
    /// semaphore).
    fn busy(&self) -> bool {
        Arc::strong_count(&self.turns) > 1
    }
}

/// Where a key's failures are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Own,
    Overflow,
    /// Nowhere yet: the key has no entry and there is room for one.
    Untracked,
}

/// One check's turn; it ends when dropped.
#[derive(Debug)]
pub(crate) struct Turn {
    _permit: OwnedSemaphorePermit,
}

impl<K: Hash + Eq + Clone> FailureLimiter<K> {
    pub(crate) fn new(max_failures: u32, window: Duration, capacity: usize) -> FailureLimiter<K> {
        let max_failures = max_failures.max(1);
        let now = Instant::now();
        FailureLimiter {
            max_failures,
            window,
            capacity: capacity.max(1),
            table: Mutex::new(Table {
                entries: HashMap::new(),
                overflow: Entry::new(max_failures, now),
                next_sweep: now,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table<K>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long `entry` is still blocked, if it is.
    fn blocked_for(&self, entry: &Entry, now: Instant) -> Option<Duration> {
        let left = self
            .window
            .checked_sub(now.saturating_duration_since(entry.started))?;
        (entry.failures >= self.max_failures && !left.is_zero()).then_some(left)
    }

    /// How long `key` is still blocked, if it is.
    pub(crate) fn blocked(&self, key: &K) -> Option<Duration> {
        let mut table = self.lock();
        let now = Instant::now();
        let place = self.place(&mut table, key, false, now);
        let entry = match place {
            Place::Own => table.entries.get(key)?,
            Place::Overflow => &table.overflow,
            Place::Untracked => return None,
        };
        self.blocked_for(entry, now)
    }

    /// Waits for a turn to check a credential of `key`; refuses, with how long it is blocked,
    /// when it is blocked (also after waiting).
    pub(crate) async fn turn(&self, key: &K) -> Result<Turn, Duration> {
        let turns = {
            let mut table = self.lock();
            let now = Instant::now();
            let entry = self.entry(&mut table, key, now);
            if let Some(left) = self.blocked_for(entry, now) {
                return Err(left);
            }
            Arc::clone(&entry.turns)
        };
        // The semaphore is never closed.
        let Ok(permit) = turns.acquire_owned().await else {
            return Err(self.window);
        };
        match self.blocked(key) {
            Some(left) => Err(left),
            None => Ok(Turn { _permit: permit }),
        }
    }

    /// Counts one failure for `key`; the first of a window starts it.
    pub(crate) fn fail(&self, key: &K) {
        let mut table = self.lock();
        let now = Instant::now();
        let entry = self.entry(&mut table, key, now);
        if entry.failures == 0 {
            entry.started = now;
        }
        entry.failures = entry.failures.saturating_add(1);
    }

    /// The entry `key` counts in, made when it has none and there is room.
    fn entry<'t>(&self, table: &'t mut Table<K>, key: &K, now: Instant) -> &'t mut Entry {
        if self.place(table, key, true, now) == Place::Overflow {
            return &mut table.overflow;
        }
        // `place` made the entry if there was none.
        table
            .entries
            .entry(key.clone())
            .or_insert_with(|| Entry::new(self.max_failures, now))
    }

    /// Where `key` counts, sweeping the table when it is full and the key new; with `make`,
    /// a key with room for it gets its entry. A window that is over starts again from zero.
    fn place(&self, table: &mut Table<K>, key: &K, make: bool, now: Instant) -> Place {
        let place = if table.entries.contains_key(key) {
            Place::Own
        } else if self.blocked_for(&table.overflow, now).is_some() {
            // Refuse rather than forget: this may be one of the guessers that filled the table.
            Place::Overflow
        } else {
            if table.entries.len() >= self.capacity {
                self.sweep(table, now);
            }
            if table.entries.len() >= self.capacity {
                Place::Overflow
            } else if make {
                table
                    .entries
                    .insert(key.clone(), Entry::new(self.max_failures, now));
                Place::Own
            } else {
                Place::Untracked
            }
        };
        let entry = match place {
            Place::Own => table.entries.get_mut(key),
            Place::Overflow => Some(&mut table.overflow),
            Place::Untracked => None,
        };
        if let Some(entry) = entry
            && now.saturating_duration_since(entry.started) >= self.window
        {
            entry.started = now;
            entry.failures = 0;
        }
        place
    }

    /// Drops every entry that is not blocked (and has no check running), unless the last
    /// sweep said to wait.
    fn sweep(&self, table: &mut Table<K>, now: Instant) {
        if now < table.next_sweep {
            return;
        }
        table
            .entries
            .retain(|_, e| e.busy() || self.blocked_for(e, now).is_some());
        let half = self.capacity / 2;
        if table.entries.len() <= half {
            return;
        }
        // Mostly blocked: wait until enough blocks end that the next sweep frees half.
        let need = table.entries.len() - half;
        let mut ends: Vec<Instant> = table
            .entries
            .values()
            .filter(|e| !e.busy())
            .filter_map(|e| e.started.checked_add(self.window))
            .collect();
        table.next_sweep = if need <= ends.len() {
            *ends.select_nth_unstable(need - 1).1
        } else {
            // Checks are running on most of them; they end soon.
            now + self.window.min(Duration::from_secs(1))
        };
    }

    /// Keys tracked now.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_failures_and_for_the_window() {
        let limiter = FailureLimiter::new(3, Duration::from_millis(200), 100);
        for _ in 0..2 {
            limiter.fail(&"a");
            assert_eq!(limiter.blocked(&"a"), None);
        }
        limiter.fail(&"a");
        assert!(
            limiter
                .blocked(&"a")
                .is_some_and(|d| d <= Duration::from_millis(200))
        );
        assert_eq!(limiter.blocked(&"b"), None, "keys are counted apart");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(limiter.blocked(&"a"), None, "the window ends");
        limiter.fail(&"a");
        assert_eq!(limiter.blocked(&"a"), None, "a new window starts from zero");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn guesses_sent_at_once_take_turns() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, Ordering};

        let limiter = Arc::new(FailureLimiter::new(3, Duration::from_secs(60), 100));
        let checked = Arc::new(AtomicU32::new(0));
        let mut guesses = Vec::new();
        for _ in 0..200 {
            let (limiter, checked) = (Arc::clone(&limiter), Arc::clone(&checked));
            guesses.push(tokio::spawn(async move {
                let Ok(turn) = limiter.turn(&"guesser").await else {
                    return;
                };
                // A slow check (a password hash), then a failure.
                tokio::time::sleep(Duration::from_millis(20)).await;
                checked.fetch_add(1, Ordering::SeqCst);
                limiter.fail(&"guesser");
                drop(turn);
            }));
        }
        for g in guesses {
            g.await.unwrap();
        }
        let checked = checked.load(Ordering::SeqCst);
        assert!(
            (3..6).contains(&checked),
            "{checked} of 200 simultaneous guesses were checked"
        );
        assert!(limiter.turn(&"guesser").await.is_err());
        // Another key is not held up, and successes leave it unblocked.
        for _ in 0..10 {
            let turn = limiter.turn(&"customer").await.unwrap();
            drop(turn);
        }
        assert_eq!(limiter.blocked(&"customer"), None);
    }

    #[test]
    fn memory_stays_bounded_under_churn() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60), 1000);
        for i in 0..100_000u32 {
            limiter.fail(&i);
        }
        assert!(limiter.tracked() <= 1000, "{}", limiter.tracked());
        // A key that keeps failing while others churn is still caught if it is recent.
        for _ in 0..3 {
            limiter.fail(&u32::MAX);
        }
        assert!(limiter.blocked(&u32::MAX).is_some());
    }

    /// Blocks `key`: `max_failures` failures.
    fn block<K: Hash + Eq + Clone>(limiter: &FailureLimiter<K>, key: K) {
        for _ in 0..limiter.max_failures {
            limiter.fail(&key);
        }
        assert!(limiter.blocked(&key).is_some());
    }

    #[test]
    fn blocked_keys_outlive_churn() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60), 10);
        for key in 0..4u32 {
            block(&limiter, key);
        }
        // Many more keys than the table holds, each failing less than the limit: the blocked
        // keys stay, the others come and go.
        for key in 100..100_000u32 {
            limiter.fail(&key);
            limiter.fail(&key);
            assert!(limiter.tracked() <= 10);
        }
        for key in 0..4u32 {
            assert!(limiter.blocked(&key).is_some(), "{key} was forgotten");
        }
        // And a key that reaches the limit amid the churn is caught.
        block(&limiter, 7);
        for key in 200_000..200_100u32 {
            limiter.fail(&key);
        }
        assert!(limiter.blocked(&7).is_some());
    }

    #[tokio::test]
    async fn a_table_full_of_blocked_keys_refuses_rather_than_forgets() {
        let window = Duration::from_millis(400);
        let limiter = FailureLimiter::new(2, window, 4);
        for key in 0..4u32 {
            block(&limiter, key);
        }
        // The table is full of blocked keys: new keys count together, in the overflow, and a
        // right credential of a new key still gets its turn until the overflow is blocked.
        assert_eq!(limiter.blocked(&10), None);
        drop(limiter.turn(&10).await.expect("a turn"));
        limiter.fail(&10);
        limiter.fail(&11);
        assert_eq!(limiter.tracked(), 4, "memory stays bounded");
        for key in [10, 11, 12, 1_000] {
            assert!(limiter.blocked(&key).is_some(), "{key}");
            assert!(limiter.turn(&key).await.is_err(), "{key}");
        }
        for key in 0..4u32 {
            assert!(limiter.blocked(&key).is_some(), "{key} was forgotten");
        }
        // When the blocks end, every key starts again.
        tokio::time::sleep(window + Duration::from_millis(50)).await;
        for key in [0, 3, 10, 12] {
            assert_eq!(limiter.blocked(&key), None, "{key}");
            drop(limiter.turn(&key).await.expect("a turn"));
        }
    }

    #[test]
    fn unblocked_keys_make_room() {
        let limiter = FailureLimiter::new(2, Duration::from_secs(60), 4);
        block(&limiter, 0);
        block(&limiter, 1);
        limiter.fail(&2);
        limiter.fail(&3);
        // Full: the sweep drops the two keys under the limit, which leaves room.
        limiter.fail(&4);
        assert_eq!(limiter.tracked(), 3);
        assert_eq!(
            limiter.blocked(&2),
            None,
            "a key under the limit starts again"
        );
        assert!(limiter.blocked(&0).is_some() && limiter.blocked(&1).is_some());
    }

    #[tokio::test]
    async fn the_overflow_stays_closed_for_its_window_when_room_comes_back() {
        let window = Duration::from_secs(1);
        let limiter = FailureLimiter::new(2, window, 4);
        block(&limiter, 0);
        block(&limiter, 1);
        tokio::time::sleep(window / 2).await;
        block(&limiter, 2);
        block(&limiter, 3);
        // Full of blocked keys: two failures of new keys block the overflow.
        limiter.fail(&10);
        limiter.fail(&11);
        assert!(limiter.blocked(&12).is_some());
        // The first two blocks end, and there is room again; but the overflow is blocked, and
        // the guessers it counted may be any new key: all are refused until it ends.
        tokio::time::sleep(window * 6 / 10).await;
        assert_eq!(limiter.blocked(&0), None);
        for key in [10, 12, 13] {
            assert!(limiter.turn(&key).await.is_err(), "{key}");
        }
        assert!(limiter.tracked() <= 4);
        tokio::time::sleep(window / 2).await;
        for key in [10, 12, 13] {
            drop(limiter.turn(&key).await.expect("a turn"));
        }
    }

    #[tokio::test]
    async fn sweeps_stay_cheap_when_most_keys_are_blocked() {
        // A table with one free place, and many new clients that succeed (each takes a place,
        // which the next one's sweep frees): were each to sweep the whole table, this would
        // take minutes.
        let limiter = FailureLimiter::new(3, Duration::from_secs(60), 10_000);
        for key in 0..9_999u32 {
            block(&limiter, key);
        }
        let started = Instant::now();
        for key in 100_000..400_000u32 {
            drop(limiter.turn(&key).await.expect("a turn"));
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(limiter.tracked() <= 10_000);
        for key in 0..9_999u32 {
            assert!(limiter.blocked(&key).is_some(), "{key} was forgotten");
        }
    }
}
