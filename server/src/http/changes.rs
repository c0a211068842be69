//! Drops the files a repository keeps in memory when they change on disk: an inotify watch of
//! the folders they come from (`objects/`, `deltas/`, `summaries/`, at any depth), on a thread of
//! its own. Only changes are asked for (deleted, renamed, written, attributes), never opens or
//! reads: the server's own reads cost the watch nothing. When events are lost (the kernel's
//! queue overflowed, or a folder moved away) everything is dropped.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
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

struct Watch {
    fd: OwnedFd,
    root: PathBuf,
    /// Each watched folder, relative to the root ("" for the root itself).
    dirs: HashMap<i32, PathBuf>,
}

impl Watch {
    /// Watches `relative` and, unless it is the root, every folder beneath it.
    fn add(&mut self, relative: &Path, recursive: bool) -> std::io::Result<()> {
        let path = self.root.join(relative);
        let wd = match inotify::add_watch(&self.fd, &path, CHANGES) {
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
pub(crate) fn watch(root: &Path, files: &Arc<FileCache>) -> std::io::Result<()> {
    let mut watch = Watch {
        fd: inotify::init(CreateFlags::CLOEXEC)?,
        root: root.to_owned(),
        dirs: HashMap::new(),
    };
    // The root too, to see the watched folders made.
    watch.add(Path::new(""), false)?;
    for dir in WATCHED {
        watch.add(Path::new(dir), true)?;
    }
    let files = Arc::downgrade(files);
    std::thread::Builder::new()
        .name("tollgate-file-watch".into())
        .spawn(move || run(watch, &files))?;
    Ok(())
}

fn run(mut watch: Watch, files: &Weak<FileCache>) {
    let mut buffer = vec![std::mem::MaybeUninit::<u8>::uninit(); 64 * 1024];
    loop {
        let mut reader = inotify::Reader::new(&watch.fd, &mut buffer);
        let mut made = Vec::new();
        loop {
            let event = match reader.next() {
                Ok(event) => event,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    tracing::warn!(
                        "watching {} for changed files failed ({e}); files stay in memory for \
                         at most a second after they change",
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
            if reader.is_buffer_empty() {
                break;
            }
        }
        for dir in made {
            if let Err(e) = watch.add(&dir, true) {
                tracing::warn!(
                    "watching {} for changed files: {e}",
                    watch.root.join(&dir).display()
                );
                if let Some(files) = files.upgrade() {
                    files.clear();
                }
            }
        }
    }
}
