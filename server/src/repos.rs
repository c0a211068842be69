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
pub struct RepoArg {
    pub name: Option<String>,
    pub location: RepoLocation,
}

/// Where a repository is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoLocation {
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
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A repository being served.
#[derive(Debug)]
pub struct ServedRepo {
    /// `None` for the repository served at `/`.
    pub name: Option<String>,
    pub repo: Repo,
    pub backend: Backend,
}

/// Redirect mode (`redirect = true` in `[storage]`), for a repository in a bucket.
#[derive(Debug, Clone)]
pub struct Redirect {
    /// How long a presigned URL stays valid.
    pub ttl: std::time::Duration,
    /// Where public objects and deltas go instead of a presigned URL: the public objects URL
    /// with the repository's name, ending in `/`; the file's path follows.
    pub public_base: Option<String>,
}

/// How a repository's files are reached.
#[derive(Debug)]
pub enum Backend {
    /// A handle on the local folder, which every file is opened beneath.
    Local(OwnedFd),
    Bucket {
        bucket: Arc<Bucket>,
        /// Whether authorised downloads of objects and deltas are answered with redirects.
        redirect: Option<Redirect>,
    },
}

impl ServedRepo {
    pub fn open(arg: &RepoArg, storage: &StorageConfig) -> anyhow::Result<ServedRepo> {
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
    pub fn bucket(&self) -> Option<&Arc<Bucket>> {
        match &self.backend {
            Backend::Bucket { bucket, .. } => Some(bucket),
            Backend::Local(_) => None,
        }
    }

    /// The bucket and how to redirect to it, when this repository is served in redirect mode.
    pub fn redirect(&self) -> Option<(&Bucket, &Redirect)> {
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
    pub fn open_file(&self, relative: &str) -> io::Result<Option<(File, Metadata)>> {
        self.open_with(relative, ResolveFlags::empty())
    }

    /// As [`ServedRepo::open_file`], but only if every directory on the way is in the kernel's
    /// cache (`RESOLVE_CACHED`): an error of kind `WouldBlock` otherwise, and on kernels older
    /// than 5.12, which do not know the flag. For an async worker, which must not wait on the
    /// disk: on `WouldBlock`, open the file in the blocking pool instead.
    pub fn open_file_cached(&self, relative: &str) -> io::Result<Option<(File, Metadata)>> {
        use rustix::io::Errno;
        self.open_with(relative, ResolveFlags::CACHED)
            .map_err(|e| match Errno::from_io_error(&e) {
                Some(Errno::AGAIN | Errno::INVAL) => io::ErrorKind::WouldBlock.into(),
                _ => e,
            })
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

/// Opens every repository, checking that names are unique and at most one is served at `/`.
pub fn open_all(args: &[RepoArg], storage: &StorageConfig) -> anyhow::Result<Vec<ServedRepo>> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
