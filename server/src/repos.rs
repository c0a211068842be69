//! The repositories a server serves: `--repo [NAME=]PATH` arguments (a folder, or
//! `s3://bucket/prefix` in object storage), checked and opened once at start.
//!
//! Each local repository keeps an `O_PATH` handle on its root directory; every file is opened relative
//! to it with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so the kernel refuses any `..`
//! and any symlink, whatever is on disk. OSTree never writes symlinks inside a repository; one
//! there could lead out of it, or to a file of the repository that is not for clients (`tmp/`).
//! The repository's root itself may be reached through a symlink.

use std::fs::{File, Metadata};
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use tollgate_ostree_format::Repo;

use crate::bucket::{Bucket, BucketAddress};
use crate::config::StorageConfig;

/// One `--repo` argument: where the repository is, optionally prefixed by the name it is served
/// under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepoArg {
    pub name: Option<String>,
    pub location: RepoLocation,
}

/// Where a repository is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RepoLocation {
    Local(PathBuf),
    Bucket(BucketAddress),
}

impl RepoLocation {
    fn parse(text: &str) -> Result<RepoLocation, String> {
        match BucketAddress::parse(text) {
            Some(address) => Ok(RepoLocation::Bucket(address?)),
            None => Ok(RepoLocation::Local(PathBuf::from(text))),
        }
    }
}

/// Top-level names a repository may not be served under, because a repository served at `/`
/// or the server's own API already answers there.
const RESERVED_NAMES: &[&str] = &[
    "config",
    "summary",
    "summary.sig",
    "summary.idx",
    "summary.idx.sig",
    "summaries",
    "objects",
    "deltas",
    "delta-indexes",
    "refs",
    "api",
    "account",
    "metrics",
    "healthz",
];

impl FromStr for RepoArg {
    type Err = String;

    fn from_str(s: &str) -> Result<RepoArg, String> {
        // A path may itself contain '=', so only a valid name before the first '=' makes one.
        if let Some((name, path)) = s.split_once('=')
            && is_valid_name(name)
        {
            if path.is_empty() {
                return Err(format!(
                    "`{s}` names the repository {name:?} but gives no path"
                ));
            }
            if RESERVED_NAMES.contains(&name) {
                return Err(format!(
                    "a repository cannot be served as {name:?}: that name is reserved for the \
                     files of a repository served at `/` and the server's own endpoints"
                ));
            }
            return Ok(RepoArg {
                name: Some(name.to_owned()),
                location: RepoLocation::parse(path)?,
            });
        }
        if s.is_empty() {
            return Err("the repository path is empty".to_owned());
        }
        Ok(RepoArg {
            name: None,
            location: RepoLocation::parse(s)?,
        })
    }
}

/// Repository names are one URL path segment of letters, digits, `-`, `_` and `.`.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A repository being served.
#[derive(Debug)]
pub(crate) struct ServedRepo {
    /// `None` for the repository served at `/`.
    pub name: Option<String>,
    pub repo: Repo,
    pub backend: Backend,
}

/// Redirect mode (`redirect = true` in `[storage]`), for a repository in a bucket.
#[derive(Debug, Clone)]
pub(crate) struct Redirect {
    /// How long a presigned URL stays valid.
    pub ttl: std::time::Duration,
    /// Where public objects and deltas go instead of a presigned URL: the public objects URL
    /// with the repository's name, ending in `/`; the file's path follows.
    pub public_base: Option<String>,
}

/// How a repository's files are reached.
#[derive(Debug)]
pub(crate) enum Backend {
    /// A handle on the local folder, which every file is opened beneath.
    Local(OwnedFd),
    Bucket {
        bucket: Arc<Bucket>,
        /// Whether authorised downloads of objects and deltas are answered with redirects.
        redirect: Option<Redirect>,
    },
}

impl ServedRepo {
    pub(crate) fn open(arg: &RepoArg, storage: &StorageConfig) -> anyhow::Result<ServedRepo> {
        let (repo, backend) = match &arg.location {
            RepoLocation::Local(path) => {
                let repo = Repo::open(path)?;
                let root = rustix::fs::open(
                    path,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .with_context(|| format!("opening repository {}", path.display()))?;
                (repo, Backend::Local(root))
            }
            RepoLocation::Bucket(address) => {
                let bucket = Arc::new(Bucket::open(address, storage)?);
                let repo = Repo::open_in(Arc::clone(&bucket) as _).with_context(|| {
                    format!(
                        "opening the repository {address}; check the bucket and prefix, the \
                         endpoint, and the credentials ([storage] in the configuration, or \
                         the AWS_* environment variables)"
                    )
                })?;
                let redirect = storage.redirect.then(|| Redirect {
                    ttl: std::time::Duration::from_secs(storage.redirect_ttl),
                    public_base: storage.public_objects_url.as_ref().map(|url| {
                        let base = url.trim_end_matches('/');
                        match &arg.name {
                            Some(name) => format!("{base}/{name}/"),
                            None => format!("{base}/"),
                        }
                    }),
                });
                (repo, Backend::Bucket { bucket, redirect })
            }
        };
        Ok(ServedRepo {
            name: arg.name.clone(),
            repo,
            backend,
        })
    }

    /// The repository's bucket, when it is in object storage.
    pub(crate) fn bucket(&self) -> Option<&Arc<Bucket>> {
        match &self.backend {
            Backend::Bucket { bucket, .. } => Some(bucket),
            Backend::Local(_) => None,
        }
    }

    /// The bucket and how to redirect to it, when this repository is served in redirect mode.
    pub(crate) fn redirect(&self) -> Option<(&Bucket, &Redirect)> {
        match &self.backend {
            Backend::Bucket {
                bucket,
                redirect: Some(redirect),
            } => Some((bucket, redirect)),
            _ => None,
        }
    }

    fn root(&self) -> io::Result<&OwnedFd> {
        match &self.backend {
            Backend::Local(root) => Ok(root),
            Backend::Bucket { .. } => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a repository in object storage has no local files",
            )),
        }
    }

    /// Opens `relative` (a path rebuilt from a parsed `RepoPath`) for reading, with its metadata,
    /// refusing to leave the repository. `Ok(None)` means there is nothing to serve there:
    /// missing, not a regular file, or reached through a symlink.
    pub(crate) fn open_file(&self, relative: &str) -> io::Result<Option<(File, Metadata)>> {
        self.open_with(relative, ResolveFlags::empty())
    }

    /// As [`ServedRepo::open_file`], but only if every directory on the way is in the kernel's
    /// cache (`RESOLVE_CACHED`): an error of kind `WouldBlock` otherwise, and on kernels older
    /// than 5.12, which do not know the flag. For an async worker, which must not wait on the
    /// disk: on `WouldBlock`, open the file in the blocking pool instead.
    pub(crate) fn open_file_cached(&self, relative: &str) -> io::Result<Option<(File, Metadata)>> {
        use rustix::io::Errno;
        self.open_with(relative, ResolveFlags::CACHED)
            .map_err(|e| match Errno::from_io_error(&e) {
                Some(Errno::AGAIN | Errno::INVAL) => io::ErrorKind::WouldBlock.into(),
                _ => e,
            })
    }

    /// The identity of the file at `relative` now, with one `statx` and without opening it:
    /// `None` when nothing is there, or a symlink (its own identity is never a file's). For the
    /// memory cache, which serves a file read through [`ServedRepo::open_file`] again only while
    /// this is still [`FileId::of`] what was read. The directories on the way are resolved as
    /// `statx` does, following symlinks, which one call beneath the root cannot refuse; that
    /// only ever confirms the very file that was opened under the no-symlink rules (same
    /// device and inode, with its size and times unchanged), never lets another one be served.
    /// Attributes are taken from the kernel's caches (`AT_STATX_DONT_SYNC`), so a network file
    /// system is not asked each time.
    pub(crate) fn file_id(&self, relative: &str) -> io::Result<Option<FileId>> {
        use rustix::fs::{AtFlags, FileType, StatxFlags};
        use rustix::io::Errno;
        let flags = AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_DONT_SYNC | AtFlags::NO_AUTOMOUNT;
        let mask = StatxFlags::TYPE
            | StatxFlags::INO
            | StatxFlags::SIZE
            | StatxFlags::MTIME
            | StatxFlags::CTIME;
        let stat = match rustix::fs::statx(self.root()?, relative, flags, mask) {
            Ok(stat) => stat,
            Err(Errno::NOENT | Errno::NOTDIR | Errno::NAMETOOLONG | Errno::LOOP) => {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if FileType::from_raw_mode(stat.stx_mode.into()) != FileType::RegularFile {
            return Ok(None);
        }
        Ok(Some(FileId {
            dev: rustix::fs::makedev(stat.stx_dev_major, stat.stx_dev_minor),
            ino: stat.stx_ino,
            size: stat.stx_size,
            modified: (stat.stx_mtime.tv_sec, stat.stx_mtime.tv_nsec),
            changed: (stat.stx_ctime.tv_sec, stat.stx_ctime.tv_nsec),
        }))
    }

    fn open_with(
        &self,
        relative: &str,
        extra: ResolveFlags,
    ) -> io::Result<Option<(File, Metadata)>> {
        use rustix::io::Errno;
        // O_NONBLOCK: opening a FIFO planted in the repository must not hang a worker.
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | extra;
        let fd = match rustix::fs::openat2(self.root()?, relative, flags, Mode::empty(), resolve) {
            Ok(fd) => fd,
            Err(Errno::LOOP | Errno::XDEV) => {
                tracing::warn!(
                    repo = self.repo.location(),
                    path = relative,
                    "refused a file that is or passes through a symlink; tollgate does not \
                     follow symlinks inside a repository"
                );
                return Ok(None);
            }
            // Not there, or not a file: a socket (ENXIO), a device without a driver (ENODEV).
            Err(
                Errno::NOENT
                | Errno::NOTDIR
                | Errno::ISDIR
                | Errno::NAMETOOLONG
                | Errno::NXIO
                | Errno::NODEV
                | Errno::OPNOTSUPP,
            ) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let file = File::from(fd);
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Ok(None);
        }
        Ok(Some((file, meta)))
    }
}

/// Which file a local repository file is, and in which state: device, inode, size, and the
/// modification and change times (to the nanosecond). A file replaced under its name (a new
/// inode), rewritten in place (new times), or gone no longer has the identity it was read
/// with. The change time cannot be set back from user space, so an inode number reused by
/// a new file does not pass for the old one either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    modified: (i64, u32),
    changed: (i64, u32),
}

impl FileId {
    /// The identity of an opened file, from its metadata.
    pub(crate) fn of(meta: &Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        let nanos = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            modified: (meta.mtime(), nanos(meta.mtime_nsec())),
            changed: (meta.ctime(), nanos(meta.ctime_nsec())),
        }
    }
}

/// Opens every repository, checking that names are unique and at most one is served at `/`.
pub(crate) fn open_all(
    args: &[RepoArg],
    storage: &StorageConfig,
) -> anyhow::Result<Vec<ServedRepo>> {
    if args.is_empty() {
        bail!("no repository to serve: give one with --repo PATH (or --repo NAME=PATH)");
    }
    if args.iter().filter(|a| a.name.is_none()).count() > 1 {
        bail!(
            "more than one repository would be served at `/`; name all but one with \
             --repo NAME=PATH"
        );
    }
    for (i, a) in args.iter().enumerate() {
        if let Some(name) = &a.name
            && args[..i].iter().any(|b| b.name.as_ref() == Some(name))
        {
            bail!("two repositories are named {name:?}; each --repo NAME=PATH needs its own name");
        }
    }
    if storage.redirect
        && !args
            .iter()
            .any(|a| matches!(a.location, RepoLocation::Bucket(_)))
    {
        bail!(
            "redirect = true in [storage], but no repository is in object storage: redirects \
             go to presigned URLs of a bucket (--repo s3://BUCKET/PREFIX); local repositories \
             are always streamed"
        );
    }
    args.iter().map(|a| ServedRepo::open(a, storage)).collect()
}

/// An empty archive repository made at `root` (with an `objects/ab` folder), opened.
#[cfg(test)]
pub(crate) fn empty_repo(root: &std::path::Path) -> ServedRepo {
    std::fs::create_dir_all(root.join("objects/ab")).unwrap();
    std::fs::write(
        root.join("config"),
        "[core]\nrepo_version=1\nmode=archive-z2\n",
    )
    .unwrap();
    ServedRepo::open(
        &RepoArg {
            name: None,
            location: RepoLocation::Local(root.to_owned()),
        },
        &Default::default(),
    )
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_keeps_its_identity_only_while_it_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let repo = empty_repo(&root);
        let relative = format!("objects/ab/{}.filez", "c".repeat(62));
        let file = root.join(&relative);
        std::fs::write(&file, b"first").unwrap();
        let opened = |repo: &ServedRepo| FileId::of(&repo.open_file(&relative).unwrap().unwrap().1);
        let read = opened(&repo);
        assert_eq!(repo.file_id(&relative).unwrap(), Some(read), "as opened");

        // Rewritten in place with as many bytes: the same inode, new times.
        std::thread::sleep(std::time::Duration::from_millis(5));
        std::fs::write(&file, b"other").unwrap();
        let now = repo.file_id(&relative).unwrap().unwrap();
        assert_ne!(now, read, "rewritten in place");
        assert_eq!(now, opened(&repo));

        // Replaced by rename, as ostree writes: another inode.
        let replaced = opened(&repo);
        std::fs::write(root.join("objects/ab/tmp"), b"other").unwrap();
        std::fs::rename(root.join("objects/ab/tmp"), &file).unwrap();
        assert_ne!(repo.file_id(&relative).unwrap(), Some(replaced), "replaced");

        // A symlink is never a file; nothing there is nothing.
        std::fs::remove_file(&file).unwrap();
        assert_eq!(repo.file_id(&relative).unwrap(), None, "deleted");
        std::os::unix::fs::symlink(root.join("config"), &file).unwrap();
        assert_eq!(repo.file_id(&relative).unwrap(), None, "a symlink");
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        assert_eq!(repo.file_id(&relative).unwrap(), None, "a directory");
    }

    #[test]
    fn repo_arguments() {
        let check = |s: &str, name: Option<&str>, path: &str| {
            assert_eq!(
                s.parse::<RepoArg>(),
                Ok(RepoArg {
                    name: name.map(str::to_owned),
                    location: RepoLocation::Local(PathBuf::from(path))
                }),
                "{s}"
            );
        };
        check("/srv/repo", None, "/srv/repo");
        check("apps=/srv/repo", Some("apps"), "/srv/repo");
        check("os-1.x=/srv/os", Some("os-1.x"), "/srv/os");
        check("/srv/a=b", None, "/srv/a=b");
        check("./weird name=x", None, "./weird name=x");

        assert_eq!(
            "apps=s3://repos/apps".parse::<RepoArg>(),
            Ok(RepoArg {
                name: Some("apps".to_owned()),
                location: RepoLocation::Bucket(BucketAddress {
                    bucket: "repos".to_owned(),
                    prefix: "apps".to_owned()
                })
            })
        );

        for bad in [
            "",
            "apps=",
            "objects=/srv/repo",
            "api=/x",
            "s3://Bad/x",
            "a=s3://x",
        ] {
            assert!(bad.parse::<RepoArg>().is_err(), "{bad:?}");
        }
    }
}
