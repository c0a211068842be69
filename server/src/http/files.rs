//! Answering a request for one repository file: validators, conditional requests, ranges, and
//! the body, small files read at once and large ones streamed with large buffers.
//!
//! The decision ([`plan`]) is a pure function of the file's metadata and the request's
//! conditions, so it is tested without a server. The file is opened, checked and (when small)
//! read in one blocking task, so an async worker never waits on the disk.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use headers::{ETag, HeaderMapExt, IfModifiedSince, IfNoneMatch, LastModified};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;
use tollgate_ostree_format::{RepoPath, SubSummary, client_config};
use warp::Reply;
use warp::reply::Response;

use crate::repos::ServedRepo;

/// A repository `config` larger than this is not a real one; refuse to read it into memory.
pub(crate) const MAX_CONFIG_LEN: u64 = 1024 * 1024;
/// Files up to this size are read whole in the task that opens them: one trip to the blocking
/// pool instead of one per read, and headers and body leave together.
const READ_WHOLE_LIMIT: u64 = 256 * 1024;
/// Read size for streamed files (see dependencies.md: 4 KiB reads cost a factor of five).
const STREAM_BUFFER: usize = 256 * 1024;
/// Content-addressed files never change: let every cache keep them for a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Summaries, refs and config change on every publish: caches must ask again each time.
const REVALIDATE: &str = "no-cache";
/// Gated files: for the token holder only, and not to be kept by any cache on the way.
const PRIVATE: &str = "private, no-store";
/// Bytes of content-addressed files each repository keeps in memory, read whole (up to
/// [`READ_WHOLE_LIMIT`] each): they never change once written, so a hot object is served
/// again without a trip to the blocking pool or the disk.
pub(crate) const FILE_CACHE_BYTES: u64 = 128 * 1024 * 1024;

/// A content-addressed file read whole, ready to be served again (the gate still decides).
#[derive(Debug)]
pub(crate) struct CachedFile {
    rep: Representation,
    bytes: Bytes,
}

/// Weighs a cached file by its bytes, plus what the entry itself costs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ByLen;

impl quick_cache::Weighter<String, Arc<CachedFile>> for ByLen {
    fn weight(&self, key: &String, file: &Arc<CachedFile>) -> u64 {
        (file.bytes.len() + key.len() + 256) as u64
    }
}

/// Content-addressed files by their path in the repository.
pub(crate) type FileCache = quick_cache::sync::Cache<String, Arc<CachedFile>, ByLen>;

pub(crate) fn file_cache(bytes: u64) -> FileCache {
    FileCache::with_weighter((bytes / (16 * 1024)).max(16) as usize, bytes, ByLen)
}

/// What the request says about which representation it wants, read from its headers.
#[derive(Debug, Default)]
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

/// The validators and caching policy of one file.
#[derive(Debug, Clone)]
pub(crate) struct Representation {
    pub len: u64,
    pub modified: SystemTime,
    /// The entity tag, quotes included, and the same parsed for `If-None-Match`.
    pub tag: String,
    pub etag: ETag,
    pub immutable: bool,
    /// Gated: served to a token holder, never cached by shared caches.
    pub private: bool,
}

impl Representation {
    /// `len` is the length of what is served, which for `config` is less than the file's.
    fn new(path: &RepoPath, meta: &std::fs::Metadata, len: u64) -> io::Result<Representation> {
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        // Content-addressed files carry their checksum as a strong validator; the others get
        // one from size, modification time and inode, which changes on every rewrite.
        let tag = match path {
            RepoPath::Object(object) if path.is_immutable() => format!("\"{}\"", object.checksum),
            RepoPath::SubSummary(SubSummary::Compressed(digest)) => format!("\"{digest}\""),
            RepoPath::SubSummary(SubSummary::Delta { from, to }) => format!("\"{from}-{to}\""),
            _ => {
                let nanos = modified
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or(Duration::ZERO)
                    .as_nanos();
                format!("\"{:x}-{:x}-{:x}\"", meta.len(), nanos, meta.ino())
            }
        };
        Ok(Representation {
            len,
            modified,
            etag: tag
                .parse()
                .map_err(|_| io::Error::other(format!("invalid ETag {tag}")))?,
            tag,
            immutable: path.is_immutable(),
            private: false,
        })
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
        && if_range.trim() != rep.tag
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

/// A file opened and planned in the blocking pool, ready to become a response.
#[derive(Debug)]
pub(crate) struct Prepared {
    rep: Representation,
    plan: Plan,
    body: PreparedBody,
}

#[derive(Debug)]
enum PreparedBody {
    None,
    Bytes(Bytes),
    Stream { file: File, start: u64, len: u64 },
}

/// The answer from a cached file, without touching the disk.
pub(crate) fn from_cache(file: &CachedFile, conditions: &Conditions, private: bool) -> Prepared {
    let mut rep = file.rep.clone();
    rep.private = private;
    let plan = plan(&rep, conditions);
    let (start, len) = plan.span(rep.len);
    let body = if conditions.head || len == 0 {
        PreparedBody::None
    } else {
        PreparedBody::Bytes(file.bytes.slice(start as usize..(start + len) as usize))
    };
    Prepared { rep, plan, body }
}

/// Opens `path` in `repo`, plans the answer and reads the body if it is small. Blocking.
/// `Ok(None)`: there is no such file to serve.
pub(crate) fn prepare(
    repo: &ServedRepo,
    path: &RepoPath,
    conditions: &Conditions,
    private: bool,
) -> io::Result<Option<Prepared>> {
    let Some(file) = repo.open_file(&path.relative_path())? else {
        return Ok(None);
    };
    let meta = file.metadata()?;
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
    let mut rep = Representation::new(path, &meta, len)?;
    rep.private = private;
    let plan = plan(&rep, conditions);
    let (start, len) = plan.span(rep.len);
    let body = if conditions.head || len == 0 {
        PreparedBody::None
    } else if let Some(bytes) = generated {
        PreparedBody::Bytes(bytes.slice(start as usize..(start + len) as usize))
    } else if len <= READ_WHOLE_LIMIT {
        let mut buf = vec![0; len as usize];
        file.read_exact_at(&mut buf, start)?;
        PreparedBody::Bytes(buf.into())
    } else {
        PreparedBody::Stream { file, start, len }
    };
    Ok(Some(Prepared { rep, plan, body }))
}

impl Prepared {
    /// The file, for the cache, when this is all of a content-addressed file read whole.
    pub(crate) fn cacheable(&self) -> Option<CachedFile> {
        match (&self.plan, &self.body) {
            (Plan::Full, PreparedBody::Bytes(bytes)) if self.rep.immutable => Some(CachedFile {
                rep: Representation {
                    private: false,
                    ..self.rep.clone()
                },
                bytes: bytes.clone(),
            }),
            _ => None,
        }
    }

    /// Whether bytes of the file will be sent (200 or 206), as opposed to 304 or 416.
    pub(crate) fn sends_content(&self) -> bool {
        matches!(self.plan, Plan::Full | Plan::Partial { .. })
    }

    pub(crate) async fn into_response(self) -> io::Result<Response> {
        let Prepared { rep, plan, body } = self;
        let (status, len) = match plan {
            Plan::NotModified => (StatusCode::NOT_MODIFIED, None),
            Plan::Full => (StatusCode::OK, Some(rep.len)),
            Plan::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, Some(end - start + 1)),
            Plan::Unsatisfiable => (StatusCode::RANGE_NOT_SATISFIABLE, Some(0)),
        };
        let mut response = match body {
            PreparedBody::None => Response::new(Bytes::new().into()),
            PreparedBody::Bytes(bytes) => Response::new(bytes.into()),
            PreparedBody::Stream { file, start, len } => {
                let mut file = tokio::fs::File::from_std(file);
                file.seek(io::SeekFrom::Start(start)).await?;
                let stream = ReaderStream::with_capacity(file.take(len), STREAM_BUFFER);
                warp::reply::stream(stream).into_response()
            }
        };
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.typed_insert(rep.etag.clone());
        headers.typed_insert(LastModified::from(rep.modified));
        let cache = match (rep.private, rep.immutable) {
            (true, _) => PRIVATE,
            (false, true) => IMMUTABLE,
            (false, false) => REVALIDATE,
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
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(len: u64) -> Representation {
        Representation {
            len,
            modified: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            tag: "\"abc\"".to_owned(),
            etag: "\"abc\"".parse().unwrap(),
            immutable: true,
            private: false,
        }
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
