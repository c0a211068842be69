//! Where a repository's files are kept: a folder on the local file system, or (implemented by the
//! server, which has the runtime and the client for it) an object store.
//!
//! Everything that reads a repository's metadata — the refs, `config`, commits and dirtrees for
//! the reachability index — goes through [`Storage`], with paths relative to the repository's
//! top (`refs/heads/app/x`, `objects/ab/cd….commit`). Serving file bodies is the server's
//! business: it has faster paths for local files.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A file found by [`Storage::list`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    /// Relative to the repository's top, `/`-separated.
    pub path: String,
    /// A symbolic link (local folders only; object stores have none).
    pub symlink: bool,
    /// Changes whenever the file is rewritten: size, time and inode locally; the ETag in an
    /// object store.
    pub stamp: String,
}

/// Read access to a repository's files by relative path.
pub trait Storage: fmt::Debug + Send + Sync {
    /// Where the repository is, for messages: a folder, or an `s3://bucket/prefix` address.
    fn location(&self) -> &str;

    /// The folder, when the repository is on the local file system.
    fn local_root(&self) -> Option<&Path> {
        None
    }

    /// The whole file at `relative`, or `None` when there is none.
    fn read(&self, relative: &str) -> io::Result<Option<Vec<u8>>>;

    /// Whether there is a file at `relative`.
    fn exists(&self, relative: &str) -> io::Result<bool>;

    /// The stamp (see [`Listed::stamp`]) of the file at `relative`, or `None` when there is none.
    fn stamp(&self, relative: &str) -> io::Result<Option<String>>;

    /// Every file below the folder `dir` (at any depth), sorted by path; none when the folder
    /// does not exist.
    fn list(&self, dir: &str) -> io::Result<Vec<Listed>>;
}

/// A repository in a local folder.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
    location: String,
}

impl LocalStorage {
    pub fn new(root: &Path) -> LocalStorage {
        LocalStorage {
            root: root.to_owned(),
            location: root.display().to_string(),
        }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }
}

/// The largest file [`LocalStorage::read`] reads whole: far above ostree's own limit on a
/// metadata object (128 MiB) and any summary, and a bound on what one hostile file costs.
const MAX_READ: u64 = 1 << 30;

fn not_found_as_none<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn local_stamp(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{} {}.{} {}",
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino()
    )
}

impl Storage for LocalStorage {
    fn location(&self) -> &str {
        &self.location
    }

    fn local_root(&self) -> Option<&Path> {
        Some(&self.root)
    }

    /// Only a regular file, and never through a symlink at its own name: a FIFO or a device
    /// put in a repository by a hostile publisher would hold the reader forever.
    fn read(&self, relative: &str) -> io::Result<Option<Vec<u8>>> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path(relative);
        let Some(mut file) = not_found_as_none(
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(
                    rustix::fs::OFlags::NOFOLLOW.bits() as i32
                        | rustix::fs::OFlags::NONBLOCK.bits() as i32,
                )
                .open(&path),
        )
        .map_err(|e| match e.raw_os_error() {
            Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: a symlink, which is not followed", path.display()),
            ),
            _ => e,
        })?
        else {
            return Ok(None);
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a regular file", path.display()),
            ));
        }
        if meta.len() > MAX_READ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: {} bytes, more than the {MAX_READ} a repository's metadata may have",
                    path.display(),
                    meta.len()
                ),
            ));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.read_to_end(&mut bytes)?;
        Ok(Some(bytes))
    }

    fn exists(&self, relative: &str) -> io::Result<bool> {
        Ok(not_found_as_none(std::fs::symlink_metadata(self.path(relative)))?.is_some())
    }

    fn stamp(&self, relative: &str) -> io::Result<Option<String>> {
        Ok(
            not_found_as_none(std::fs::symlink_metadata(self.path(relative)))?
                .map(|meta| local_stamp(&meta)),
        )
    }

    fn list(&self, dir: &str) -> io::Result<Vec<Listed>> {
        fn walk(folder: &Path, prefix: &str, out: &mut Vec<Listed>) -> io::Result<()> {
            let Some(entries) = not_found_as_none(std::fs::read_dir(folder))? else {
                return Ok(());
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().into_string().map_err(|name| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: the name is not UTF-8", folder.join(name).display()),
                    )
                })?;
                let path = format!("{prefix}/{name}");
                // Removed since the folder was listed: a ref deleted a moment ago.
                let Some(meta) = not_found_as_none(std::fs::symlink_metadata(entry.path()))? else {
                    continue;
                };
                if meta.is_dir() {
                    walk(&entry.path(), &path, out)?;
                } else {
                    out.push(Listed {
                        path,
                        symlink: meta.file_type().is_symlink(),
                        stamp: local_stamp(&meta),
                    });
                }
            }
            Ok(())
        }
        let dir = dir.trim_end_matches('/');
        let mut out = Vec::new();
        walk(&self.path(dir), dir, &mut out)?;
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_listing_reads_every_depth_and_reports_symlinks() {
        let dir = std::env::temp_dir().join(format!("tollgate-storage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("refs/heads/app/x")).unwrap();
        std::fs::write(dir.join("refs/heads/app/x/stable"), "a").unwrap();
        std::fs::write(dir.join("refs/heads/top"), "b").unwrap();
        std::os::unix::fs::symlink("top", dir.join("refs/heads/alias")).unwrap();
        let storage = LocalStorage::new(&dir);
        let listed = storage.list("refs/heads").unwrap();
        let paths: Vec<_> = listed
            .iter()
            .map(|l| (l.path.as_str(), l.symlink))
            .collect();
        assert_eq!(
            paths,
            [
                ("refs/heads/alias", true),
                ("refs/heads/app/x/stable", false),
                ("refs/heads/top", false)
            ]
        );
        assert!(storage.list("refs/mirrors").unwrap().is_empty());
        assert_eq!(storage.read("refs/heads/top").unwrap().unwrap(), b"b");
        assert_eq!(storage.read("refs/heads/none").unwrap(), None);
        assert!(storage.exists("refs/heads/top").unwrap());
        let before = storage.stamp("refs/heads/top").unwrap().unwrap();
        std::fs::write(dir.join("refs/heads/top.new"), "bc").unwrap();
        std::fs::rename(dir.join("refs/heads/top.new"), dir.join("refs/heads/top")).unwrap();
        assert_ne!(storage.stamp("refs/heads/top").unwrap().unwrap(), before);
        assert_eq!(storage.stamp("summary").unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
