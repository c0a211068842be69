//! Drops the files a repository keeps in memory when they change on disk: an inotify watch of
//! the folders they come from (`objects/`, `deltas/`, `summaries/`, at any depth), on a thread of
//! its own. Only changes are asked for (deleted, renamed, written, attributes), never opens or
//! reads: the server's own reads cost the watch nothing. When events are lost (the kernel's
//! queue overflowed, or a folder moved away) everything is dropped.
//!
//! An answer from memory never races a change: [`Watched::quiet`] says whether every change made
//! so far has been dealt with (no event waiting in the kernel's queue, by `FIONREAD`; none being
//! dealt with; the same generation, batches dealt with, before and after) and gives that
//! generation, which a file kept in memory must have been confirmed at.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Weak};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

use super::files::FileCache;

/// The folders of a repository whose files may be kept in memory.
const WATCHED: [&str; 3] = ["objects", "deltas", "summaries"];

const CHANGES: WatchFlags = WatchFlags::ATTRIB
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::CREATE)
    .union(WatchFlags::DELETE)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MODIFY)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::ONLYDIR)
    .union(WatchFlags::DONT_FOLLOW);

/// What the request path sees of a watch.
#[derive(Debug)]
pub(crate) struct Watched {
    fd: Arc<OwnedFd>,
    /// Set from when the watch thread wakes for events until it has dealt with them.
    draining: AtomicBool,
    /// Batches of events dealt with so far.
    generation: AtomicU64,
    /// Set when the watch stopped or missed a folder: it can no longer vouch for anything.
    broken: AtomicBool,
}

impl Watched {
    /// The generation, when every change made before this call has been dealt with; `None`
    /// when one may still be waiting (then check the file itself).
    pub(crate) fn quiet(&self) -> Option<u64> {
        let before = self.generation.load(SeqCst);
        if self.draining.load(SeqCst) || self.broken.load(SeqCst) {
            return None;
        }
        if !matches!(rustix::io::ioctl_fionread(&*self.fd), Ok(0)) {
            return None;
        }
        if self.draining.load(SeqCst) || self.generation.load(SeqCst) != before {
            return None;
        }
        Some(before)
    }

    /// The generation now, to confirm a file at: read before the file is.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(SeqCst)
    }
}

struct Watch {
    fd: Arc<OwnedFd>,
    root: PathBuf,
    /// Each watched folder, relative to the root ("" for the root itself).
    dirs: HashMap<i32, PathBuf>,
}

impl Watch {
    /// Watches `relative` and, unless it is the root, every folder beneath it.
    fn add(&mut self, relative: &Path, recursive: bool) -> std::io::Result<()> {
        let path = self.root.join(relative);
        let wd = match inotify::add_watch(&*self.fd, &path, CHANGES) {
            Ok(wd) => wd,
            // Not there (yet), or not a folder: nothing of it can be kept in memory.
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        self.dirs.insert(wd, relative.to_owned());
        if recursive {
            for entry in std::fs::read_dir(&path)?.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    self.add(&relative.join(entry.file_name()), true)?;
                }
            }
        }
        Ok(())
    }
}

/// Starts watching the repository at `root` for `files`; an error when it cannot be watched
/// (inotify's limits), in which case each file served from memory must be checked on disk.
pub(crate) fn watch(root: &Path, files: &Arc<FileCache>) -> std::io::Result<Arc<Watched>> {
    let fd = Arc::new(inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?);
    let mut watch = Watch {
        fd: Arc::clone(&fd),
        root: root.to_owned(),
        dirs: HashMap::new(),
    };
    // The root too, to see the watched folders made.
    watch.add(Path::new(""), false)?;
    for dir in WATCHED {
        watch.add(Path::new(dir), true)?;
    }
    let watched = Arc::new(Watched {
        fd,
        draining: AtomicBool::new(false),
        generation: AtomicU64::new(0),
        broken: AtomicBool::new(false),
    });
    let files = Arc::downgrade(files);
    let shared = Arc::clone(&watched);
    std::thread::Builder::new()
        .name("tollgate-file-watch".into())
        .spawn(move || {
            run(watch, &files, &shared);
            shared.broken.store(true, SeqCst);
        })?;
    Ok(watched)
}

fn run(mut watch: Watch, files: &Weak<FileCache>, watched: &Watched) {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut buffer = vec![std::mem::MaybeUninit::<u8>::uninit(); 64 * 1024];
    loop {
        // Woken while the events are still in the queue, so that `quiet` sees them waiting
        // until `draining` is set.
        let mut fds = [PollFd::new(&*watch.fd, PollFlags::IN)];
        match poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                tracing::warn!(
                    "watching {} for changed files failed ({e}); each file served from memory \
                     is checked on disk from now on",
                    watch.root.display()
                );
                return;
            }
        }
        watched.draining.store(true, SeqCst);
        let mut reader = inotify::Reader::new(&*watch.fd, &mut buffer);
        let mut made = Vec::new();
        loop {
            let event = match reader.next() {
                Ok(event) => event,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(e) => {
                    tracing::warn!(
                        "watching {} for changed files failed ({e}); each file served from \
                         memory is checked on disk from now on",
                        watch.root.display()
                    );
                    return;
                }
            };
            let Some(files) = files.upgrade() else { return };
            let flags = event.events();
            let dir = watch.dirs.get(&event.wd()).cloned();
            let name = event.file_name().map(|n| OsStr::from_bytes(n.to_bytes()));
            if flags.contains(ReadFlags::QUEUE_OVERFLOW)
                || (flags.contains(ReadFlags::ISDIR) && flags.contains(ReadFlags::MOVED_FROM))
                || flags.contains(ReadFlags::DELETE_SELF)
            {
                files.clear();
            }
            if flags.contains(ReadFlags::IGNORED) {
                watch.dirs.remove(&event.wd());
            }
            let (Some(dir), Some(name)) = (dir, name) else {
                continue;
            };
            let relative = dir.join(name);
            if flags.contains(ReadFlags::ISDIR) {
                let top = relative.components().next().map(|c| c.as_os_str());
                if flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO)
                    && top.is_some_and(|t| WATCHED.iter().any(|w| OsStr::new(w) == t))
                {
                    made.push(relative);
                }
            } else if let Some(inside) = relative.to_str() {
                files.remove(inside);
            }
        }
        for dir in made {
            if let Err(e) = watch.add(&dir, true) {
                tracing::warn!(
                    "watching {} for changed files: {e}; each file served from memory is \
                     checked on disk from now on",
                    watch.root.join(&dir).display()
                );
                watched.broken.store(true, SeqCst);
            }
        }
        watched.generation.fetch_add(1, SeqCst);
        watched.draining.store(false, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_never_says_a_change_made_before_it_was_dealt_with_when_it_was_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("objects/ab")).unwrap();
        let files = Arc::new(super::super::files::file_cache(1 << 20));
        let watched = watch(root, &files).unwrap();
        let settled = || loop {
            if let Some(generation) = watched.quiet() {
                return generation;
            }
            std::thread::yield_now();
        };
        for i in 0..300 {
            let file = root.join(format!("objects/ab/{}.filez", i % 7));
            std::fs::write(&file, b"bytes").unwrap();
            let before = settled();
            match i % 3 {
                0 => std::fs::write(&file, b"other bytes").unwrap(),
                1 => std::fs::remove_file(&file).unwrap(),
                _ => {
                    std::fs::write(root.join("objects/ab/tmp"), b"other").unwrap();
                    std::fs::rename(root.join("objects/ab/tmp"), &file).unwrap();
                }
            }
            assert_ne!(watched.quiet(), Some(before), "change {i} went unseen");
        }
        // A folder made later is watched too.
        std::fs::create_dir_all(root.join("deltas/cd")).unwrap();
        let before = settled();
        std::fs::write(root.join("deltas/cd/superblock"), b"x").unwrap();
        assert_ne!(watched.quiet(), Some(before));
    }
}
