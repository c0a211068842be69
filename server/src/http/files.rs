//! Answering a request for one repository file: validators, conditional requests, ranges, and
//! the body, small files read at once and large ones streamed with large buffers.
//!
//! The decision ([`plan`]) is a pure function of the file's metadata and the request's
//! conditions, so it is tested without a server. An async worker first tries to open and read
//! the file itself, without waiting on the disk ([`Disk::NoWait`]: `RESOLVE_CACHED` and
//! `RWF_NOWAIT`, which succeed only from the kernel's caches); what is not cached is opened and
//! read in one blocking task instead ([`Disk::Wait`]), so an async worker never waits on the
//! disk and a file in the page cache costs no hand-off to another thread. Large files are
//! streamed the same way, chunk by chunk.

use std::fs::File;
use std::io::{self, IoSliceMut, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use headers::{ETag, Header as _, HeaderMapExt, IfModifiedSince, IfNoneMatch, LastModified};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use object_store::ObjectMeta;
use rustix::io::{Errno, ReadWriteFlags};
use tollgate_ostree_format::{RepoPath, SubSummary, client_config};
use warp::Reply;
use warp::reply::Response;

use crate::bucket::{BodyStream, Bucket};
use crate::repos::{FileId, ServedRepo};

/// A repository `config` larger than this is not a real one; refuse to read it into memory.
pub(crate) const MAX_CONFIG_LEN: u64 = 1024 * 1024;
/// Files up to this size are read whole where they are opened (at most one trip to the
/// blocking pool), and headers and body leave together.
const READ_WHOLE_LIMIT: u64 = 256 * 1024;
/// Read size for streamed files (see dependencies.md: 4 KiB reads cost a factor of five).
const STREAM_BUFFER: usize = 256 * 1024;

/// 9999-12-31T23:59:59Z, the last time an HTTP date can say, after the Unix epoch.
const LAST_HTTP_DATE: Duration = Duration::from_secs(253_402_300_799);

/// Content-addressed files never change: let every cache keep them for a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Public delta superblocks and parts: any cache may keep them, but must ask again each time
/// (a 304 when the ETag still matches), since a delta generated again is written under the
/// same name.
const PUBLIC_REVALIDATE: &str = "public, no-cache";
/// Summaries, refs and config change on every publish: caches must ask again each time.
const REVALIDATE: &str = "no-cache";
/// Gated files: for the token holder only, and not to be kept by any cache on the way.
const PRIVATE: &str = "private, no-store";
/// Bytes of objects, sub-summaries and delta superblocks and parts each repository keeps in
/// memory, read whole (up to [`READ_WHOLE_LIMIT`] each), so that a hot one is served again
/// without a trip to the blocking pool or the disk. Each is served from memory only while it
/// is still what is there ([`Source`]).
pub(crate) const FILE_CACHE_BYTES: u64 = 128 * 1024 * 1024;
/// Files larger than this are not kept in memory. What the cache saves is a request's fixed
/// cost (open, stat, read, close), which weighs most on small files: per byte of memory, a
/// small file saves many more requests than a large one, whose cost is mostly its bytes. In an
/// app's size mix the files up to 64 KiB are 96% of the objects and under a third of the bytes,
/// so they fit where all files up to [`READ_WHOLE_LIMIT`] would push each other out.
const FILE_CACHE_ENTRY_LIMIT: u64 = 64 * 1024;

/// Whether reading may wait on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disk {
    /// In the blocking pool: open and read as usual.
    Wait,
    /// On an async worker: only what the kernel has cached, else an error of kind
    /// `WouldBlock` (and the caller tries again with [`Disk::Wait`] in the blocking pool).
    NoWait,
}

/// A file read whole, ready to be served again (the gate still decides) while `source` says it
/// is still the file there.
#[derive(Debug)]
pub(crate) struct CachedFile {
    rep: Arc<Representation>,
    bytes: Bytes,
    source: Source,
    /// The generation of the repository's watch ([`super::changes::Watched`]) the file was
    /// last known unchanged at.
    verified: AtomicU64,
}

impl CachedFile {
    pub(crate) fn source(&self) -> Source {
        self.source
    }

    /// Whether the file was known unchanged at the watch's generation `generation`.
    pub(crate) fn verified_at(&self, generation: u64) -> bool {
        self.verified.load(Ordering::SeqCst) == generation
    }

    /// The file was found unchanged on disk after the watch was at `generation`.
    pub(crate) fn confirm(&self, generation: u64) {
        self.verified.fetch_max(generation, Ordering::SeqCst);
    }
}

/// What a file kept in memory is checked against before each answer made from it: it is
/// served from memory only while the file it was read from is still the one there, so a file
/// deleted (`ostree prune`, a repair) or replaced on disk is never answered from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A local file, with its identity when it was read: answered from memory while the
    /// repository's watch says nothing has changed since it was last known unchanged, else
    /// checked with one `statx` ([`ServedRepo::file_id`]); per answer where the repository
    /// cannot be watched.
    Local(FileId),
    /// An object or sub-summary in a bucket, read while the repository's index was at this
    /// generation. A bucket has no cheap per-file check (a HEAD costs what the GET it saves
    /// costs), so these are dropped whenever the index changes (a publish: refs or summary).
    /// Their names are their checksums, so between publishes only a deletion can make one
    /// stale. Delta files from a bucket are never kept (see [`prepare_remote`]).
    Bucket(u64),
}

/// Whether a file at `path` may be kept in memory: objects and sub-summaries, named by their
/// bytes, and delta superblocks and parts, which pulls fetch once each as they do objects.
/// Everything else is rewritten on every publish and read from the repository each time.
pub(crate) fn kept_in_memory(path: &RepoPath) -> bool {
    path.is_immutable() || path.is_delta_payload()
}

/// How long caches on the way (a CDN, a proxy) may keep a public file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifetime {
    /// Named by its checksum: kept for a year and never asked for again.
    Immutable,
    /// A delta superblock or part, named by its commits: kept, revalidated each time.
    Delta,
    /// Rewritten on publish or on signing: revalidated each time.
    Mutable,
}

impl Lifetime {
    fn of(path: &RepoPath) -> Lifetime {
        if path.is_immutable() {
            Lifetime::Immutable
        } else if path.is_delta_payload() {
            Lifetime::Delta
        } else {
            Lifetime::Mutable
        }
    }
}

/// Weighs a cached file by its bytes, plus what the entry itself costs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ByLen;

impl quick_cache::Weighter<String, Arc<CachedFile>> for ByLen {
    fn weight(&self, key: &String, file: &Arc<CachedFile>) -> u64 {
        (file.bytes.len() + key.len() + 256) as u64
    }
}

/// Files kept in memory ([`kept_in_memory`]) by their path in the repository.
pub(crate) type FileCache = quick_cache::sync::Cache<String, Arc<CachedFile>, ByLen>;

pub(crate) fn file_cache(bytes: u64) -> FileCache {
    FileCache::with_weighter((bytes / (16 * 1024)).max(16) as usize, bytes, ByLen)
}

/// What the request says about which representation it wants, read from its headers.
#[derive(Debug, Default, Clone)]
pub(crate) struct Conditions {
    pub head: bool,
    if_none_match: Option<IfNoneMatch>,
    if_modified_since: Option<IfModifiedSince>,
    range: Option<String>,
    if_range: Option<String>,
}

impl Conditions {
    pub(crate) fn from_request(method: &Method, headers: &HeaderMap) -> Conditions {
        Conditions {
            head: method == Method::HEAD,
            if_none_match: headers.typed_get(),
            if_modified_since: headers.typed_get(),
            // Ranges are defined for GET only (RFC 9110, 14.2); HEAD ignores them.
            range: if method == Method::GET {
                headers
                    .get(header::RANGE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            } else {
                None
            },
            if_range: headers
                .get(header::IF_RANGE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        }
    }
}

/// The validators and caching policy of one file, with its headers rendered once: a cached
/// file's are shared by every answer made from it.
#[derive(Debug)]
pub(crate) struct Representation {
    pub len: u64,
    pub modified: SystemTime,
    /// The entity tag, parsed for `If-None-Match`.
    pub etag: ETag,
    pub lifetime: Lifetime,
    /// `ETag` (quotes included; `If-Range` compares with it), `Last-Modified` and
    /// `Content-Length` (of the whole file) as sent.
    etag_value: HeaderValue,
    modified_value: HeaderValue,
    len_value: HeaderValue,
}

impl Representation {
    fn with(len: u64, modified: SystemTime, tag: String, lifetime: Lifetime) -> io::Result<Self> {
        // An HTTP date runs from 1970 to 9999 (rendering one outside panics): a file touched
        // outside that range is served as if modified at its nearer end.
        let modified = modified.clamp(
            SystemTime::UNIX_EPOCH,
            SystemTime::UNIX_EPOCH + LAST_HTTP_DATE,
        );
        let invalid = || io::Error::other(format!("invalid ETag {tag}"));
        let etag: ETag = tag.parse().map_err(|_| invalid())?;
        let etag_value = HeaderValue::from_str(&tag).map_err(|_| invalid())?;
        let mut rendered = Vec::with_capacity(1);
        LastModified::from(modified).encode(&mut rendered);
        let modified_value = rendered
            .pop()
            .ok_or_else(|| io::Error::other("Last-Modified did not render"))?;
        Ok(Representation {
            len,
            modified,
            etag,
            lifetime,
            etag_value,
            modified_value,
            len_value: HeaderValue::from(len),
        })
    }

    /// `len` is the length of what is served, which for `config` is less than the file's.
    fn new(path: &RepoPath, meta: &std::fs::Metadata, len: u64) -> io::Result<Representation> {
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        // Files that are not content-addressed (deltas included: they are named by their
        // commits) get a validator from size, modification time and inode, which changes on
        // every rewrite.
        let tag = content_tag(path).unwrap_or_else(|| {
            let nanos = modified
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_nanos();
            format!("\"{:x}-{:x}-{:x}\"", meta.len(), nanos, meta.ino())
        });
        Representation::with(len, modified, tag, Lifetime::of(path))
    }

    /// The same for a file in a bucket, whose ETag changes on every upload.
    fn remote(path: &RepoPath, meta: &ObjectMeta, len: u64) -> io::Result<Representation> {
        let modified = SystemTime::from(meta.last_modified);
        let tag = content_tag(path).unwrap_or_else(|| match &meta.e_tag {
            Some(tag) if tag.starts_with('"') || tag.starts_with("W/\"") => tag.clone(),
            Some(tag) => format!("\"{tag}\""),
            None => format!(
                "\"{:x}-{:x}\"",
                meta.size,
                meta.last_modified.timestamp_micros()
            ),
        });
        Representation::with(len, modified, tag, Lifetime::of(path))
    }
}

/// Content-addressed files carry their checksum as a strong validator.
fn content_tag(path: &RepoPath) -> Option<String> {
    match path {
        RepoPath::Object(object) if path.is_immutable() => Some(format!("\"{}\"", object.checksum)),
        RepoPath::SubSummary(SubSummary::Compressed(digest)) => Some(format!("\"{digest}\"")),
        RepoPath::SubSummary(SubSummary::Delta { from, to }) => Some(format!("\"{from}-{to}\"")),
        _ => None,
    }
}

/// What to answer, before any byte of the body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    NotModified,
    Full,
    /// Bytes `start..=end`.
    Partial {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

impl Plan {
    /// The bytes of a file of `len` bytes this answer sends: (start, length).
    fn span(self, len: u64) -> (u64, u64) {
        match self {
            Plan::Full => (0, len),
            Plan::Partial { start, end } => (start, end - start + 1),
            Plan::NotModified | Plan::Unsatisfiable => (0, 0),
        }
    }
}

/// Decides the answer from the file's validators and the request's conditions, in the order
/// RFC 9110 (13.2.2) gives: If-None-Match, else If-Modified-Since; then Range, if If-Range
/// still matches. If-Range is honoured for a strong entity tag only (13.1.5): a date is not a
/// strong validator at one-second resolution, so it never matches and the whole file is sent.
pub(crate) fn plan(rep: &Representation, conditions: &Conditions) -> Plan {
    let not_modified = match (&conditions.if_none_match, &conditions.if_modified_since) {
        (Some(inm), _) => !inm.precondition_passes(&rep.etag),
        (None, Some(ims)) => !ims.is_modified(rep.modified),
        (None, None) => false,
    };
    if not_modified {
        return Plan::NotModified;
    }
    let Some(range) = &conditions.range else {
        return Plan::Full;
    };
    if let Some(if_range) = &conditions.if_range
        && if_range.trim().as_bytes() != rep.etag_value.as_bytes()
    {
        return Plan::Full;
    }
    single_range(range, rep.len)
}

/// Interprets a `Range` header for a body of `len` bytes (RFC 9110, 14.1.2). Only a single
/// byte range is honoured; a malformed header or a multi-range request gets the whole file,
/// which the RFC allows and which ostree and flatpak never ask otherwise.
fn single_range(header: &str, len: u64) -> Plan {
    let Some(spec) = header.strip_prefix("bytes=") else {
        return Plan::Full;
    };
    if spec.contains(',') {
        return Plan::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Plan::Full;
    };
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // A position too large for u64 is still a valid (unsatisfiable) position.
        Some(s.parse().unwrap_or(u64::MAX))
    };
    match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes, or all of them if the file is shorter.
        (true, false) => match number(last) {
            None => Plan::Full,
            Some(0) => Plan::Unsatisfiable,
            Some(_) if len == 0 => Plan::Unsatisfiable,
            Some(n) => Plan::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
        },
        // bytes=A- and bytes=A-B
        (false, _) => {
            let Some(start) = number(first) else {
                return Plan::Full;
            };
            let end = if last.is_empty() {
                u64::MAX
            } else {
                match number(last) {
                    Some(end) if end >= start => end,
                    _ => return Plan::Full,
                }
            };
            if start >= len {
                Plan::Unsatisfiable
            } else {
                Plan::Partial {
                    start,
                    end: end.min(len - 1),
                }
            }
        }
        (true, true) => Plan::Full,
    }
}

/// A file opened and planned (on the worker or in the blocking pool), ready to become a
/// response.
#[derive(Debug)]
pub(crate) struct Prepared {
    rep: Arc<Representation>,
    /// Gated: served to a token holder, never cached by shared caches.
    private: bool,
    plan: Plan,
    body: PreparedBody,
    /// How a copy kept in memory would be checked; `None`: it may not be kept.
    source: Option<Source>,
}

#[derive(Debug)]
enum PreparedBody {
    None,
    Bytes(Bytes),
    Stream { file: File, start: u64, len: u64 },
    Remote(RemoteBody),
}

/// A body arriving from a bucket. The response body must be `Sync`, which the store's stream is
/// not; the mutex is never locked (the stream is polled through `&mut`), it only says so.
struct RemoteBody(BodyStream);

struct SyncBody(std::sync::Mutex<BodyStream>);

impl Stream for SyncBody {
    type Item = io::Result<Bytes>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let inner = self
            .get_mut()
            .0
            .get_mut()
            .unwrap_or_else(|e| e.into_inner());
        inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for RemoteBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteBody")
    }
}

/// The answer from a cached file, without touching the disk.
pub(crate) fn from_cache(file: &CachedFile, conditions: &Conditions, private: bool) -> Prepared {
    let plan = plan(&file.rep, conditions);
    let (start, len) = plan.span(file.rep.len);
    let body = if conditions.head || len == 0 {
        PreparedBody::None
    } else {
        PreparedBody::Bytes(file.bytes.slice(start as usize..(start + len) as usize))
    };
    Prepared {
        rep: Arc::clone(&file.rep),
        private,
        plan,
        body,
        // Already in memory.
        source: None,
    }
}

/// Opens `path` in `repo`, plans the answer and reads the body if it is small. Blocking with
/// [`Disk::Wait`]; with [`Disk::NoWait`], an error of kind `WouldBlock` when something is not
/// in the kernel's caches. `Ok(None)`: there is no such file to serve.
pub(crate) fn prepare(
    repo: &ServedRepo,
    path: &RepoPath,
    conditions: &Conditions,
    private: bool,
    disk: Disk,
) -> io::Result<Option<Prepared>> {
    let relative = path.relative_path();
    let opened = match disk {
        Disk::Wait => repo.open_file(&relative)?,
        // The config is rewritten for clients after reading it all: not worth a second path.
        Disk::NoWait if matches!(path, RepoPath::Config) => {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Disk::NoWait => repo.open_file_cached(&relative)?,
    };
    let Some((file, meta)) = opened else {
        return Ok(None);
    };
    // `config` is served as clients need it, without the server's remotes and local paths.
    let generated = match path {
        RepoPath::Config if meta.len() <= MAX_CONFIG_LEN => {
            let mut text = Vec::with_capacity(meta.len() as usize);
            (&file).take(MAX_CONFIG_LEN).read_to_end(&mut text)?;
            Some(Bytes::from(client_config(&String::from_utf8_lossy(&text))))
        }
        RepoPath::Config => return Err(io::Error::other("the repository's config is over 1 MiB")),
        _ => None,
    };
    let len = generated.as_ref().map_or(meta.len(), |b| b.len() as u64);
    let rep = Arc::new(Representation::new(path, &meta, len)?);
    let plan = plan(&rep, conditions);
    let (start, len) = plan.span(rep.len);
    let body = if conditions.head || len == 0 {
        PreparedBody::None
    } else if let Some(bytes) = generated {
        PreparedBody::Bytes(bytes.slice(start as usize..(start + len) as usize))
    } else if len <= READ_WHOLE_LIMIT {
        let mut buf = vec![0; len as usize];
        match disk {
            Disk::Wait => file.read_exact_at(&mut buf, start)?,
            // Part of the file cached is as good as none: the rest is read in the pool.
            Disk::NoWait if read_cached(&file, &mut buf, start)? == buf.len() => {}
            Disk::NoWait => return Err(io::ErrorKind::WouldBlock.into()),
        }
        PreparedBody::Bytes(buf.into())
    } else {
        PreparedBody::Stream { file, start, len }
    };
    Ok(Some(Prepared {
        rep,
        private,
        plan,
        body,
        source: Some(Source::Local(FileId::of(&meta))),
    }))
}

/// As [`prepare`], for a file in a bucket. A plain GET is one request to the store, whose
/// answer carries the metadata the plan needs; a HEAD, a conditional request or a range asks
/// for the metadata first (a 304 needs nothing more), then for just the bytes to send of the
/// same version of the file.
///
/// `generation` is the index's generation, read before the store is asked: an object or
/// sub-summary may be kept in memory until the index changes. Delta files may not: a delta
/// generated again is uploaded under its old name before the new summary, and the index sees
/// that summary only at its next poll, up to two seconds later; in between the new summary
/// would be served with the old superblock, which clients refuse. Streamed from the bucket
/// each time, they carry the bucket's ETag, which changes with every upload.
pub(crate) async fn prepare_remote(
    bucket: &Bucket,
    path: &RepoPath,
    conditions: &Conditions,
    private: bool,
    generation: u64,
) -> io::Result<Option<Prepared>> {
    let relative = path.relative_path();
    let source = path.is_immutable().then_some(Source::Bucket(generation));
    let is_config = matches!(path, RepoPath::Config);
    let validators = conditions.if_none_match.is_some() || conditions.if_modified_since.is_some();
    if is_config || (conditions.range.is_none() && !conditions.head && !validators) {
        let Some((meta, body)) = bucket.get(&relative, None, None).await? else {
            return Ok(None);
        };
        let (bytes, body) = if is_config || meta.size <= READ_WHOLE_LIMIT {
            if meta.size > MAX_CONFIG_LEN && is_config {
                return Err(io::Error::other("the repository's config is over 1 MiB"));
            }
            let read: Vec<Bytes> = body.try_collect().await?;
            let bytes = Bytes::from(read.concat());
            let bytes = if is_config {
                Bytes::from(client_config(&String::from_utf8_lossy(&bytes)))
            } else {
                bytes
            };
            (Some(bytes), None)
        } else {
            (None, Some(body))
        };
        let len = bytes.as_ref().map_or(meta.size, |b| b.len() as u64);
        let rep = Arc::new(Representation::remote(path, &meta, len)?);
        let plan = plan(&rep, conditions);
        let (start, len) = plan.span(rep.len);
        let body = match bytes {
            _ if conditions.head || len == 0 => PreparedBody::None,
            Some(bytes) => PreparedBody::Bytes(bytes.slice(start as usize..(start + len) as usize)),
            // No range was asked: the plan is the whole file or nothing.
            None => match body {
                Some(body) if plan == Plan::Full => PreparedBody::Remote(RemoteBody(body)),
                _ => PreparedBody::None,
            },
        };
        return Ok(Some(Prepared {
            rep,
            private,
            plan,
            body,
            source,
        }));
    }
    let Some(meta) = bucket.head(&relative).await? else {
        return Ok(None);
    };
    let rep = Arc::new(Representation::remote(path, &meta, meta.size)?);
    let plan = plan(&rep, conditions);
    let (start, len) = plan.span(rep.len);
    let body = if conditions.head || len == 0 {
        PreparedBody::None
    } else {
        // The same version of the file as the plan was made for, or an error.
        let Some((_, body)) = bucket
            .get(&relative, Some(start..start + len), meta.e_tag.clone())
            .await?
        else {
            return Ok(None);
        };
        PreparedBody::Remote(RemoteBody(body))
    };
    Ok(Some(Prepared {
        rep,
        private,
        plan,
        body,
        source,
    }))
}

impl Prepared {
    /// The file, for the cache, when this is all of a file that may be kept in memory
    /// ([`kept_in_memory`]), read whole, with a way to check it later.
    /// `generation`: the watch's, read before the file was.
    pub(crate) fn cacheable(&self, generation: u64) -> Option<CachedFile> {
        match (&self.plan, &self.body, self.source) {
            (Plan::Full, PreparedBody::Bytes(bytes), Some(source))
                if self.rep.lifetime != Lifetime::Mutable
                    && bytes.len() as u64 <= FILE_CACHE_ENTRY_LIMIT =>
            {
                Some(CachedFile {
                    rep: Arc::clone(&self.rep),
                    bytes: bytes.clone(),
                    source,
                    verified: AtomicU64::new(generation),
                })
            }
            _ => None,
        }
    }

    /// Whether bytes of the file will be sent (200 or 206), as opposed to 304 or 416.
    pub(crate) fn sends_content(&self) -> bool {
        matches!(self.plan, Plan::Full | Plan::Partial { .. })
    }

    pub(crate) fn into_response(self) -> io::Result<Response> {
        let Prepared {
            rep,
            private,
            plan,
            body,
            source: _,
        } = self;
        let (status, len) = match plan {
            Plan::NotModified => (StatusCode::NOT_MODIFIED, None),
            Plan::Full => (StatusCode::OK, Some(rep.len_value.clone())),
            Plan::Partial { start, end } => (
                StatusCode::PARTIAL_CONTENT,
                Some(HeaderValue::from(end - start + 1)),
            ),
            Plan::Unsatisfiable => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                Some(HeaderValue::from_static("0")),
            ),
        };
        let mut response = match body {
            PreparedBody::None => Response::new(Bytes::new().into()),
            PreparedBody::Bytes(bytes) => Response::new(bytes.into()),
            PreparedBody::Stream { file, start, len } => {
                warp::reply::stream(stream_file(file, start, len)).into_response()
            }
            PreparedBody::Remote(RemoteBody(body)) => {
                warp::reply::stream(SyncBody(std::sync::Mutex::new(body))).into_response()
            }
        };
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.reserve(8);
        headers.insert(header::ETAG, rep.etag_value.clone());
        headers.insert(header::LAST_MODIFIED, rep.modified_value.clone());
        let cache = match (private, rep.lifetime) {
            (true, _) => PRIVATE,
            (false, Lifetime::Immutable) => IMMUTABLE,
            (false, Lifetime::Delta) => PUBLIC_REVALIDATE,
            (false, Lifetime::Mutable) => REVALIDATE,
        };
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        if status == StatusCode::NOT_MODIFIED {
            return Ok(response);
        }
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        if let Some(len) = len {
            headers.insert(header::CONTENT_LENGTH, len);
        }
        match plan {
            Plan::Partial { start, end } => {
                let value = format!("bytes {start}-{end}/{}", rep.len);
                headers.insert(
                    header::CONTENT_RANGE,
                    HeaderValue::try_from(value).map_err(io::Error::other)?,
                );
            }
            Plan::Unsatisfiable => {
                let value = format!("bytes */{}", rep.len);
                headers.insert(
                    header::CONTENT_RANGE,
                    HeaderValue::try_from(value).map_err(io::Error::other)?,
                );
            }
            Plan::Full | Plan::NotModified => {}
        }
        Ok(response)
    }
}

/// Reads at `offset` what the page cache holds of `buf.len()` bytes, without waiting on the
/// disk (`RWF_NOWAIT`): the number of bytes read, 0 when none of them is cached (or at the end
/// of the file). A file system that cannot say (`EOPNOTSUPP`) counts as nothing cached.
fn read_cached(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    match rustix::io::preadv2(
        file,
        &mut [IoSliceMut::new(buf)],
        offset,
        ReadWriteFlags::NOWAIT,
    ) {
        Ok(n) => Ok(n),
        Err(Errno::AGAIN | Errno::OPNOTSUPP) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// `len` bytes of `file` from `start`, in chunks of up to [`STREAM_BUFFER`]: read on the async
/// worker while the page cache has them, in the blocking pool when it does not. A file that
/// ends early (it was truncated under the server) ends the stream with an error, so the client
/// sees a short body rather than a wrong one.
fn stream_file(file: File, start: u64, len: u64) -> impl Stream<Item = io::Result<Bytes>> {
    let file = Arc::new(file);
    futures_util::stream::try_unfold((file, start, len), |(file, at, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let mut chunk = vec![0; left.min(STREAM_BUFFER as u64) as usize];
        let mut n = read_cached(&file, &mut chunk, at)?;
        if n == 0 {
            let task_file = Arc::clone(&file);
            (chunk, n) = tokio::task::spawn_blocking(move || {
                task_file.read_at(&mut chunk, at).map(|n| (chunk, n))
            })
            .await
            .map_err(io::Error::other)??;
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file ended before its length: it was truncated while being served",
            ));
        }
        // A short read (part of the range cached) should not pin the whole buffer while hyper
        // queues it.
        let chunk = if n * 2 < chunk.len() {
            Bytes::copy_from_slice(&chunk[..n])
        } else {
            chunk.truncate(n);
            Bytes::from(chunk)
        };
        Ok(Some((chunk, (file, at + n as u64, left - n as u64))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(len: u64) -> Representation {
        let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Representation::with(len, modified, "\"abc\"".to_owned(), Lifetime::Immutable).unwrap()
    }

    fn conditions(headers: &[(&str, &str)], method: Method) -> Conditions {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        Conditions::from_request(&method, &map)
    }

    fn check(headers: &[(&str, &str)], len: u64, expected: Plan) {
        assert_eq!(
            plan(&rep(len), &conditions(headers, Method::GET)),
            expected,
            "{headers:?}"
        );
    }

    /// An archive repository with one small and one large (streamed) content object.
    struct Files {
        dir: tempfile::TempDir,
        repo: ServedRepo,
        small: (RepoPath, Vec<u8>),
        large: (RepoPath, Vec<u8>),
    }

    fn files() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let repo = crate::repos::empty_repo(&root);
        let mut made = (1..=2u8).map(|n| {
            let name = format!("ab/{}.filez", format!("{n:x}").repeat(62));
            // Not a multiple of the stream's chunk, nor of a page.
            let len = if n == 1 {
                3000
            } else {
                2 * STREAM_BUFFER + 12345
            };
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + usize::from(n)) as u8).collect();
            std::fs::write(root.join("objects").join(&name), &bytes).unwrap();
            (RepoPath::parse(&format!("objects/{name}")).unwrap(), bytes)
        });
        let (small, large) = (made.next().unwrap(), made.next().unwrap());
        Files {
            dir,
            repo,
            small,
            large,
        }
    }

    /// Drops a file's pages from the page cache, so that the next read must wait on the disk.
    fn evict(repo: &ServedRepo, path: &RepoPath) {
        let (file, _) = repo.open_file(&path.relative_path()).unwrap().unwrap();
        file.sync_all().unwrap();
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    }

    async fn body(prepared: Prepared) -> Vec<u8> {
        use http_body_util::BodyExt as _;
        let response = prepared.into_response().unwrap();
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    fn get() -> Conditions {
        Conditions::from_request(&Method::GET, &HeaderMap::new())
    }

    #[tokio::test]
    async fn files_read_on_the_worker_or_in_the_pool_give_the_same_bytes() {
        let f = files();
        for (path, bytes) in [&f.small, &f.large] {
            // Just written: in the page cache, so the worker reads it itself.
            let cached = prepare(&f.repo, path, &get(), true, Disk::NoWait)
                .unwrap()
                .unwrap();
            assert_eq!(&body(cached).await, bytes, "{path} from the page cache");
            // Not in the page cache: the worker must not wait (or the file system cannot tell,
            // and it then reads as before); the pool reads it.
            evict(&f.repo, path);
            match prepare(&f.repo, path, &get(), true, Disk::NoWait) {
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{path}: {e}"),
                // A large file is opened only; its chunks wait in the pool when they must. A
                // small one may be read too: eviction is advice, and a RWF_NOWAIT read starts
                // the readahead it lacks, which fast storage can finish within the call. So
                // whether the worker was refused cannot be asserted here, only the bytes.
                Ok(prepared) => assert_eq!(&body(prepared.unwrap()).await, bytes, "{path}"),
            }
            evict(&f.repo, path);
            let waited = prepare(&f.repo, path, &get(), true, Disk::Wait)
                .unwrap()
                .unwrap();
            assert_eq!(&body(waited).await, bytes, "{path} from the disk");
        }
        // A range of the large file, from a cold page cache, in chunks across the boundaries.
        let (path, bytes) = &f.large;
        evict(&f.repo, path);
        let range = conditions(&[("range", "bytes=100-")], Method::GET);
        let prepared = prepare(&f.repo, path, &range, true, Disk::Wait)
            .unwrap()
            .unwrap();
        assert_eq!(body(prepared).await, bytes[100..]);
        // A missing file is no file; the worker may not know that without a lookup on disk.
        let missing = RepoPath::parse(&format!("objects/ab/{}.filez", "c".repeat(62))).unwrap();
        match prepare(&f.repo, &missing, &get(), true, Disk::NoWait) {
            Ok(found) => assert!(found.is_none()),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}"),
        }
        let waited = prepare(&f.repo, &missing, &get(), true, Disk::Wait).unwrap();
        assert!(waited.is_none());
    }

    #[test]
    fn only_small_files_read_whole_are_kept_in_memory() {
        let f = files();
        let cached = |path: &RepoPath, conditions: &Conditions| {
            prepare(&f.repo, path, conditions, false, Disk::Wait)
                .unwrap()
                .unwrap()
                .cacheable(0)
                .map(|file| file.bytes.len())
        };
        let (small, bytes) = &f.small;
        assert_eq!(cached(small, &get()), Some(bytes.len()));
        // A part of a file is not the file.
        let range = conditions(&[("range", "bytes=0-9")], Method::GET);
        assert_eq!(cached(small, &range), None);
        // Read whole, but over the limit: served, not kept.
        let name = format!("ab/{}.filez", "3".repeat(62));
        let len = FILE_CACHE_ENTRY_LIMIT as usize + 1;
        assert!(len as u64 <= READ_WHOLE_LIMIT);
        let root = f.dir.path().join("repo/objects");
        std::fs::write(root.join(&name), vec![7u8; len]).unwrap();
        let mid = RepoPath::parse(&format!("objects/{name}")).unwrap();
        assert_eq!(cached(&mid, &get()), None);
        std::fs::write(root.join(&name), vec![7u8; len - 1]).unwrap();
        assert_eq!(cached(&mid, &get()), Some(len - 1));
        // Streamed files never are.
        assert_eq!(cached(&f.large.0, &get()), None);
    }

    #[tokio::test]
    async fn a_file_truncated_while_streamed_ends_the_body_with_an_error() {
        use http_body_util::BodyExt as _;
        let f = files();
        let (path, bytes) = &f.large;
        let prepared = prepare(&f.repo, path, &get(), true, Disk::Wait)
            .unwrap()
            .unwrap();
        let name = f.dir.path().join("repo").join(path.relative_path());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&name)
            .unwrap()
            .set_len(STREAM_BUFFER as u64)
            .unwrap();
        let mut body = prepared.into_response().unwrap().into_body();
        let mut got = Vec::new();
        let error = loop {
            match body.frame().await {
                Some(Ok(frame)) => got.extend_from_slice(&frame.into_data().unwrap()),
                Some(Err(e)) => break e.to_string(),
                None => panic!("the body ended without an error after {} bytes", got.len()),
            }
        };
        assert_eq!(got, bytes[..STREAM_BUFFER]);
        assert!(error.contains("truncated"), "{error}");
    }

    #[test]
    fn files_dated_outside_what_http_can_say_are_served_at_its_ends() {
        let tag = || "\"abc\"".to_owned();
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(86_400 * 365 * 10);
        let rep = Representation::with(1, before, tag(), Lifetime::Immutable).unwrap();
        assert_eq!(rep.modified_value, "Thu, 01 Jan 1970 00:00:00 GMT");
        let after = SystemTime::UNIX_EPOCH + LAST_HTTP_DATE + Duration::from_secs(86_400 * 400);
        let rep = Representation::with(1, after, tag(), Lifetime::Immutable).unwrap();
        assert_eq!(rep.modified_value, "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn ranges() {
        use Plan::*;
        let cases: &[(&str, u64, Plan)] = &[
            ("bytes=0-9", 100, Partial { start: 0, end: 9 }),
            ("bytes=10-", 100, Partial { start: 10, end: 99 }),
            ("bytes=90-200", 100, Partial { start: 90, end: 99 }),
            ("bytes=-10", 100, Partial { start: 90, end: 99 }),
            ("bytes=-1000", 100, Partial { start: 0, end: 99 }),
            ("bytes=99-99", 100, Partial { start: 99, end: 99 }),
            ("bytes= 5-6", 100, Partial { start: 5, end: 6 }),
            ("bytes=100-", 100, Unsatisfiable),
            ("bytes=100-200", 100, Unsatisfiable),
            ("bytes=99999999999999999999999-", 100, Unsatisfiable),
            ("bytes=-0", 100, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-5", 0, Unsatisfiable),
            // Malformed or multiple ranges: the whole file.
            ("bytes=9-1", 100, Full),
            ("bytes=0-1,5-6", 100, Full),
            ("bytes=a-b", 100, Full),
            ("bytes=-", 100, Full),
            ("bytes=1", 100, Full),
            ("bytes=+1-2", 100, Full),
            ("items=0-1", 100, Full),
            ("", 100, Full),
        ];
        for (header, len, expected) in cases {
            check(&[("range", header)], *len, *expected);
        }
        assert_eq!(
            plan(
                &rep(100),
                &conditions(&[("range", "bytes=0-9")], Method::HEAD)
            ),
            Full,
            "HEAD ignores Range"
        );
    }

    #[test]
    fn conditional_requests() {
        use Plan::*;
        let date_before = "Tue, 14 Nov 2023 22:13:19 GMT";
        let date_same = "Tue, 14 Nov 2023 22:13:20 GMT";
        let cases: &[(&[(&str, &str)], Plan)] = &[
            (&[("if-none-match", "\"abc\"")], NotModified),
            (&[("if-none-match", "W/\"abc\"")], NotModified),
            (&[("if-none-match", "\"x\", \"abc\"")], NotModified),
            (&[("if-none-match", "*")], NotModified),
            (&[("if-none-match", "\"other\"")], Full),
            (&[("if-modified-since", date_same)], NotModified),
            (&[("if-modified-since", date_before)], Full),
            // If-None-Match wins over If-Modified-Since.
            (
                &[
                    ("if-none-match", "\"other\""),
                    ("if-modified-since", date_same),
                ],
                Full,
            ),
            (
                &[("range", "bytes=0-1"), ("if-range", "\"abc\"")],
                Partial { start: 0, end: 1 },
            ),
            (&[("range", "bytes=0-1"), ("if-range", "\"old\"")], Full),
            (&[("range", "bytes=0-1"), ("if-range", "W/\"abc\"")], Full),
            // Dates never match: one second is too coarse to prove the bytes are the same.
            (&[("range", "bytes=0-1"), ("if-range", date_same)], Full),
            (&[("range", "bytes=0-1"), ("if-range", date_before)], Full),
            (
                &[
                    ("range", "bytes=0-1"),
                    ("if-range", "Fri, 01 Jan 2100 00:00:00 GMT"),
                ],
                Full,
            ),
        ];
        for (headers, expected) in cases {
            check(headers, 100, *expected);
        }
    }
}
