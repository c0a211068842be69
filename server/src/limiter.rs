//! Counting failed credential checks, to stop guessing.
//!
//! A key (a client address, a license id, an account name) that fails `max_failures` times
//! within `window` is blocked until that window ends, and a blocked key is refused *before* its
//! credential is checked, so a blocked guesser learns nothing from further tries. Only failures
//! count: a legitimate client asking for tokens often is never limited. (governor's limiters
//! count every attempt and cannot look without taking, which is why this is not one of them.)
//!
//! Memory is bounded: at most `capacity` keys are tracked; stale ones are dropped when the table
//! fills, and when all are fresh the older half goes.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct FailureLimiter<K> {
    max_failures: u32,
    window: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    started: Instant,
    failures: u32,
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

    /// How long `key` is still blocked, if it is.
    pub fn blocked(&self, key: &K) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get(key)?;
        let left = self.window.checked_sub(entry.started.elapsed())?;
        (entry.failures >= self.max_failures && !left.is_zero()).then_some(left)
    }

    /// Counts one failure for `key`.
    pub fn fail(&self, key: &K) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if !entries.contains_key(key) && entries.len() >= self.capacity {
            // Full: drop what is stale, and if that is not enough, the older half. Halving keeps
            // the cost per failure constant on average, however fast keys churn.
            let window = self.window;
            entries.retain(|_, e| now.duration_since(e.started) < window);
            if entries.len() >= self.capacity {
                let mut starts: Vec<Instant> = entries.values().map(|e| e.started).collect();
                let middle = starts.len() / 2;
                let (_, cut, _) = starts.select_nth_unstable(middle);
                let cut = *cut;
                entries.retain(|_, e| e.started > cut);
            }
        }
        let entry = entries.entry(key.clone()).or_insert(Entry {
            started: now,
            failures: 0,
        });
        if now.duration_since(entry.started) >= self.window {
            *entry = Entry {
                started: now,
                failures: 0,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
    }

    /// Keys tracked now.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
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
