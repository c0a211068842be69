//! Keeping a repository's index current while it is served.
//!
//! One thread per repository owns the rebuilds. It wakes on a file system event under `refs/`
//! or at the repository's top (inotify, through `notify`, for a local folder), on a poll tick
//! (the fallback when events are missed or unavailable, and the only way for a bucket, which
//! sends no events), and when a request asks for a check. Each time it takes a fingerprint of
//! the refs and the summary (path and stamp of each: size, modification time and inode of a
//! file, the ETag of an object in a bucket); when that changed, it builds a new index and swaps
//! it in whole. Requests read the current index through
//! `ArcSwap`, without locks.
//!
//! A request that finds an object on disk that the index does not know asks for a check and
//! waits, bounded, until a check that began after its request has finished: then the index is
//! as new as the refs were when the request arrived, and "still unknown" means "not reachable
//! from any ref", never "not indexed yet".

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use tollgate_ostree_format::{Listed, Repo};

use super::{IndexError, RepoIndex, Rules};

/// How often the refs are checked even without a file system event.
const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Events arrive in bursts (a publish writes many files): wait this long for the burst to end.
const EVENT_SETTLE: Duration = Duration::from_millis(50);
/// How often a long build reports its progress.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// The least a request waits for the index to catch up; longer when builds take longer.
const MIN_REFRESH_WAIT: Duration = Duration::from_secs(10);

/// Decides whether a ref is gated by its name, shared with the rebuild thread.
pub(crate) type SharedPolicy = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The current index of one repository, rebuilt in the background when its refs change.
pub(crate) struct LiveIndex {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LiveIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveIndex")
            .field("repo", &self.shared.repo.location())
            .finish()
    }
}

struct Shared {
    repo: Repo,
    policy: SharedPolicy,
    max_ref_objects: usize,
    current: ArcSwap<RepoIndex>,
    /// Checks asked for so far; a check serves every request made before it began.
    requested: AtomicU64,
    /// Set by events and requests; the thread sleeps on it.
    wake: (Mutex<bool>, Condvar),
    /// The number of the last request a finished check has served.
    served: tokio::sync::watch::Sender<u64>,
    /// How long the last build took, in milliseconds.
    last_build_ms: AtomicU64,
    /// When the index in use was put in place.
    swapped_at: Mutex<Instant>,
    /// How many times the thread has looked at the refs.
    checks: AtomicU64,
    /// How many times an index has been put in place since the first.
    generation: AtomicU64,
}

impl LiveIndex {
    /// Builds the index of `repo` now, then keeps it current in a background thread.
    /// `max_ref_objects`: see [`Rules::max_ref_objects`].
    pub(crate) fn start(
        repo: Repo,
        policy: SharedPolicy,
        max_ref_objects: usize,
    ) -> Result<Arc<LiveIndex>, IndexError> {
        let fingerprint = fingerprint(&repo);
        let rules = Rules {
            gated_by_name: &*policy,
            max_ref_objects,
        };
        let index = build(&repo, rules, None)?;
        let shared = Arc::new(Shared {
            repo,
            max_ref_objects,
            policy,
            current: ArcSwap::from_pointee(index),
            requested: AtomicU64::new(0),
            wake: (Mutex::new(false), Condvar::new()),
            served: tokio::sync::watch::channel(0).0,
            last_build_ms: AtomicU64::new(0),
            swapped_at: Mutex::new(Instant::now()),
            checks: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        });
        let watcher = watch(&shared);
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("tollgate-index".to_owned())
            .spawn(move || {
                // The watcher lives as long as the thread that listens to it.
                let _watcher = watcher;
                let run =
                    std::panic::AssertUnwindSafe(|| keep_current(&thread_shared, fingerprint));
                if std::panic::catch_unwind(run).is_err() {
                    // Without this thread the index would stay as it is for good; better to stop
                    // and be restarted with a fresh one.
                    tracing::error!(
                        "the index thread of {} failed; stopping tollgate",
                        thread_shared.repo.location()
                    );
                    std::process::exit(70);
                }
            })
            .map_err(|e| {
                IndexError::Repo(tollgate_ostree_format::RepoError::Io {
                    path: shared.repo.location().into(),
                    source: e,
                })
            })?;
        Ok(Arc::new(LiveIndex { shared }))
    }

    /// The current index, without locking.
    pub(crate) fn load(&self) -> Guard<Arc<RepoIndex>> {
        self.shared.current.load()
    }

    /// A number that moves on every change of the index (a publish seen, or a failed rebuild):
    /// what was read from a bucket while it had one value may be stale once it has another.
    pub(crate) fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::SeqCst)
    }

    /// How long the current index has been in use.
    pub(crate) fn age(&self) -> Duration {
        self.shared
            .swapped_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    /// Asks for the refs to be checked now and waits until a check that began after this call
    /// has finished (and any rebuild it needed is in place), or for a bound: three times the
    /// last build's time, and at least 10 seconds. Returns whether the index is now known to
    /// be current.
    pub(crate) async fn refresh(&self) -> bool {
        let last_build = Duration::from_millis(self.shared.last_build_ms.load(Ordering::Relaxed));
        let timeout = MIN_REFRESH_WAIT.max(last_build * 3);
        let mut served = self.shared.served.subscribe();
        let ticket = self.shared.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared.wake_up();
        matches!(
            tokio::time::timeout(timeout, served.wait_for(|done| *done >= ticket)).await,
            Ok(Ok(_))
        )
    }
}

impl Shared {
    fn rules(&self) -> Rules<'_> {
        Rules {
            gated_by_name: &*self.policy,
            max_ref_objects: self.max_ref_objects,
        }
    }

    fn wake_up(&self) {
        let (flag, cvar) = &self.wake;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cvar.notify_one();
    }

    /// Sleeps until woken or until the poll interval is over; returns whether it was woken.
    fn sleep(&self) -> bool {
        let (flag, cvar) = &self.wake;
        let guard = flag.lock().unwrap_or_else(|e| e.into_inner());
        let (mut guard, _) = cvar
            .wait_timeout_while(guard, POLL_INTERVAL, |woken| !*woken)
            .unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *guard, false)
    }
}

fn keep_current(shared: &Shared, mut last: Fingerprint) {
    loop {
        if shared.sleep() && shared.requested.load(Ordering::SeqCst) <= *shared.served.borrow() {
            // Woken by a file system event, not by a request: let the burst settle.
            std::thread::sleep(EVENT_SETTLE);
        }
        let ticket = shared.requested.load(Ordering::SeqCst);
        shared.checks.fetch_add(1, Ordering::Relaxed);
        let now = fingerprint(&shared.repo);
        if now != last {
            tracing::info!(
                "the refs of {} changed; updating its index",
                shared.repo.location()
            );
            let started = Instant::now();
            let previous = shared.current.load_full();
            match build(&shared.repo, shared.rules(), Some(&previous)) {
                Ok(index) => {
                    shared.current.store(Arc::new(index));
                    last = now;
                }
                // The old index may call public what the refs now gate: fail closed with an
                // index that knows nothing (every file refused), and try again next tick.
                Err(e) => {
                    shared.current.store(Arc::new(RepoIndex::closed()));
                    tracing::error!(
                        "rebuilding the index of {} failed: {e:#}; refusing its files until a \
                         rebuild succeeds",
                        shared.repo.location()
                    );
                }
            }
            // After the new index is in place: a request that read the old generation and
            // then the store may have read a file the publish replaced.
            shared.generation.fetch_add(1, Ordering::SeqCst);
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            shared.last_build_ms.store(ms, Ordering::Relaxed);
            *shared.swapped_at.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
        shared.served.send_replace(ticket);
    }
}

/// Builds the index of `repo`, or updates `previous` where only new commits need walking.
fn build(
    repo: &Repo,
    rules: Rules<'_>,
    previous: Option<&RepoIndex>,
) -> Result<RepoIndex, IndexError> {
    let started = Instant::now();
    let mut last_report = started;
    let root = repo.location();
    let mut progress = |seen| {
        if last_report.elapsed() >= PROGRESS_INTERVAL {
            last_report = Instant::now();
            tracing::info!("indexing {root}: {seen} objects so far");
        }
    };
    let index = match previous {
        Some(previous) => previous.update(repo, rules, &mut progress)?,
        None => {
            tracing::info!("building the index of {root}");
            RepoIndex::build(repo, rules, &mut progress)?
        }
    };
    let stats = index.stats();
    tracing::info!(
        "indexed {root}: {} objects ({} public), {} public and {} gated refs, {} access sets, \
         {} KiB, {} in {:.1?} ({} objects walked)",
        stats.objects,
        stats.public_objects,
        stats.public_refs,
        stats.gated_refs,
        stats.access_sets,
        stats.bytes / 1024,
        if stats.incremental {
            "updated"
        } else {
            "built"
        },
        stats.build_time,
        stats.walked,
    );
    for name in index.gated_by_name_only() {
        tracing::warn!(
            "{root}: ref {name} is gated by a gated-refs pattern, but its commit has no \
             xa.token-type, so flatpak will not ask for a token and cannot install it; \
             republish it with `flatpak build-commit-from --token-type=1`"
        );
    }
    Ok(index)
}

/// Watches `refs/` and the repository's top folder; `None` for a repository in a bucket, and
/// (with a warning) where the file system cannot be watched, in which case polling alone keeps
/// the index current.
fn watch(shared: &Arc<Shared>) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let root = shared.repo.local_root()?;
    let weak = Arc::downgrade(shared);
    let handler = move |event: notify::Result<notify::Event>| {
        // Only changes matter. Opening and reading (requests for `config` and `summary`, this
        // thread's own walk of `refs/`) are events too, and waking on them would loop.
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
            && let Some(shared) = weak.upgrade()
        {
            shared.wake_up();
        }
    };
    let result = notify::recommended_watcher(handler).and_then(|mut w| {
        w.watch(root, RecursiveMode::NonRecursive)?;
        w.watch(&root.join("refs"), RecursiveMode::Recursive)?;
        Ok(w)
    });
    match result {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            tracing::warn!(
                "cannot watch {} for changes ({e}); checking every {POLL_INTERVAL:?} instead",
                root.display()
            );
            None
        }
    }
}

/// What identifies the state of a repository's refs: every file under `refs/heads` and
/// `refs/mirrors`, and the summary, with their stamps (ostree replaces ref files by rename, so a
/// rewrite always changes the inode; a bucket gives a new ETag to every upload). A listing that
/// fails gives a fingerprint of its own, so that the next one that works is a change.
type Fingerprint = Vec<Listed>;

fn fingerprint(repo: &Repo) -> Fingerprint {
    let storage = repo.storage();
    let mut out = Vec::new();
    for dir in ["refs/heads", "refs/mirrors"] {
        match storage.list(dir) {
            Ok(listed) => out.extend(listed),
            Err(e) => {
                tracing::warn!("listing {dir} of {}: {e}", repo.location());
                out.push(Listed {
                    path: dir.to_owned(),
                    symlink: false,
                    stamp: format!("unreadable: {e}"),
                });
            }
        }
    }
    let summary = storage
        .stamp("summary")
        .unwrap_or_else(|e| Some(format!("unreadable: {e}")));
    out.extend(summary.map(|stamp| Listed {
        path: "summary".to_owned(),
        symlink: false,
        stamp,
    }));
    out
}

#[cfg(test)]
mod tests {
    use tollgate_tests::fixture::{Fixture, sample_tree};

    use super::*;
    use crate::index::Access;

    #[test]
    fn reads_do_not_wake_the_index_and_changes_do() {
        let fx = Fixture::new();
        let tree = sample_tree(&fx.join("tree"));
        let (path, _) = fx.archive_repo("repo", "test/a", &tree);
        let live = LiveIndex::start(
            Repo::open(&path).unwrap(),
            Arc::new(|_: &str| false),
            crate::index::DEFAULT_MAX_REF_OBJECTS,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let checks = || live.shared.checks.load(Ordering::Relaxed);
        let before = checks();
        let started = Instant::now();
        // What requests do all day: read the top-level files and the refs.
        for _ in 0..40 {
            std::fs::read(path.join("config")).unwrap();
            std::fs::read(path.join("refs/heads/test/a")).unwrap();
            assert!(std::fs::read_dir(path.join("refs/heads")).unwrap().count() > 0);
            std::thread::sleep(Duration::from_millis(25));
        }
        std::thread::sleep(Duration::from_millis(300));
        let polls = started.elapsed().as_secs() / POLL_INTERVAL.as_secs() + 1;
        let woken = checks() - before;
        assert!(
            woken <= polls,
            "the index looked at the refs {woken} times in {:?} of reads",
            started.elapsed()
        );

        // A publish wakes it, well before the next poll would.
        fx.commit(&path, "test/b", &tree, "another ref");
        let published = Instant::now();
        while matches!(live.load().ref_file("test/b"), Access::Unknown) {
            assert!(
                published.elapsed() < POLL_INTERVAL + Duration::from_secs(1),
                "the new ref was not indexed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
