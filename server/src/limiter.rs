//! Counting failed credential checks, to stop guessing.
//!
//! A key (a client address, a license id, an account name) that fails `max_failures` times
//! within `window` is blocked until that window ends, and a blocked key is refused *before* its
//! credential is checked, so a blocked guesser learns nothing from further tries. Only failures
//! count: a legitimate client asking for tokens often is never limited. (governor's limiters
//! count every attempt and cannot look without taking, which is why this is not one of them.)
//!
//! A check takes time (a database lookup, a password hash), so a guesser could send many at
//! once, all let in before the first failure is counted. Checks therefore take turns: at most
//! `max_failures` of one key's checks run at a time, the others wait, and each looks again
//! whether the key is blocked when its turn comes. So a key gets fewer than `2 * max_failures`
//! guesses per window however many it sends at once, while a busy legitimate client only waits
//! a moment for a turn.
//!
//! Memory is bounded: at most `capacity` keys are tracked; stale ones are dropped when the table
//! fills, and when all are fresh the older half goes (never a key with a check running).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct FailureLimiter<K> {
    max_failures: u32,
    window: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, Entry>>,
}

#[derive(Debug, Clone)]
struct Entry {
    started: Instant,
    failures: u32,
    /// Turns for this key's checks: `max_failures` permits, each waiter woken in order.
    turns: Arc<Semaphore>,
}

impl Entry {
    /// Whether a check of this key is running or waiting for its turn (each holds the
    /// semaphore).
    fn busy(&self) -> bool {
        Arc::strong_count(&self.turns) > 1
    }
}

/// One check's turn; it ends when dropped.
#[derive(Debug)]
pub struct Turn {
    _permit: OwnedSemaphorePermit,
}

impl<K: Hash + Eq + Clone> FailureLimiter<K> {
    pub fn new(max_failures: u32, window: Duration, capacity: usize) -> FailureLimiter<K> {
        FailureLimiter {
            max_failures: max_failures.max(1),
            window,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long `key` is still blocked, if it is.
    pub fn blocked(&self, key: &K) -> Option<Duration> {
        self.blocked_in(&self.lock(), key)
    }

    fn blocked_in(&self, entries: &HashMap<K, Entry>, key: &K) -> Option<Duration> {
        let entry = entries.get(key)?;
        let left = self.window.checked_sub(entry.started.elapsed())?;
        (entry.failures >= self.max_failures && !left.is_zero()).then_some(left)
    }

    /// Waits for a turn to check a credential of `key`; refuses, with how long it is blocked,
    /// when it is blocked (also after waiting).
    pub async fn turn(&self, key: &K) -> Result<Turn, Duration> {
        let turns = {
            let mut entries = self.lock();
            if let Some(left) = self.blocked_in(&entries, key) {
                return Err(left);
            }
            Arc::clone(&self.entry(&mut entries, key).turns)
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

    /// Counts one failure for `key`.
    pub fn fail(&self, key: &K) {
        let mut entries = self.lock();
        let entry = self.entry(&mut entries, key);
        entry.failures = entry.failures.saturating_add(1);
    }

    /// The entry of `key`, made (room made first) or restarted when its window is over.
    fn entry<'m>(&self, entries: &'m mut HashMap<K, Entry>, key: &K) -> &'m mut Entry {
        let now = Instant::now();
        if !entries.contains_key(key) && entries.len() >= self.capacity {
            // Full: drop what is stale, and if that is not enough, the older half. Halving keeps
            // the cost per key constant on average, however fast keys churn.
            let window = self.window;
            entries.retain(|_, e| e.busy() || now.duration_since(e.started) < window);
            if entries.len() >= self.capacity {
                let mut starts: Vec<Instant> = entries.values().map(|e| e.started).collect();
                let middle = starts.len() / 2;
                let (_, cut, _) = starts.select_nth_unstable(middle);
                let cut = *cut;
                entries.retain(|_, e| e.busy() || e.started > cut);
            }
        }
        let entry = entries.entry(key.clone()).or_insert_with(|| Entry {
            started: now,
            failures: 0,
            turns: Arc::new(Semaphore::new(self.max_failures as usize)),
        });
        if now.duration_since(entry.started) >= self.window {
            entry.started = now;
            entry.failures = 0;
        }
        entry
    }

    /// Keys tracked now.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.lock().len()
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
}
