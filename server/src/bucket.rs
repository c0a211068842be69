//! A repository kept in S3-compatible object storage (`--repo s3://bucket/prefix`), through
//! `object_store`.
//!
//! The index and the change detection read it through [`Storage`], synchronously, from their
//! own threads; requests read it asynchronously. Either way every call to the store runs on
//! one small runtime of its own ([`runtime`]), which lives as long as the process: the HTTP
//! client's connections stay with the runtime that opened them, and the synchronous callers
//! (the index thread, start-up before the server's runtime exists) have somewhere to send work.

use std::future::Future;
use std::io;
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as KeyPath;
use object_store::prefix::PrefixStore;
use object_store::signer::Signer;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt,
    RetryConfig,
};
use tollgate_ostree_format::{Listed, Storage};

use crate::config::StorageConfig;

/// Where a repository in object storage is: `s3://BUCKET/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BucketAddress {
    pub bucket: String,
    /// The folder of the repository in the bucket, without slashes at its ends; may be empty.
    pub prefix: String,
}

impl BucketAddress {
    /// Parses `s3://BUCKET[/PREFIX]`; `None` when `text` is not an `s3://` address at all.
    pub(crate) fn parse(text: &str) -> Option<Result<BucketAddress, String>> {
        let rest = text.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        // S3's rules for bucket names: 3 to 63 lowercase letters, digits, dots and hyphens.
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'));
        if !bucket_ok {
            return Some(Err(format!(
                "{text:?}: {bucket:?} is not an S3 bucket name (3 to 63 lowercase letters, \
                 digits, dots and hyphens)"
            )));
        }
        if KeyPath::parse(prefix).is_err() || prefix.split('/').any(|s| s == "." || s == "..") {
            return Some(Err(format!(
                "{text:?}: {prefix:?} is not a folder in a bucket"
            )));
        }
        Some(Ok(BucketAddress {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        }))
    }
}

impl std::fmt::Display for BucketAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// The runtime every object-store call runs on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tollgate-s3")
            .enable_all()
            .build()
            .unwrap_or_else(|e| {
                // Without threads there is nothing to serve with either.
                tracing::error!("starting the object storage runtime failed: {e}");
                std::process::exit(70);
            })
    })
}

/// Runs `work` on the object-store runtime and waits for it, from a thread that may block (not
/// from an async task: the caller's thread waits).
fn block_on<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> io::Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.recv()
        .map_err(|_| io::Error::other("an object storage request was cancelled"))
}

/// Runs `work` on the object-store runtime, from async code.
async fn run<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> io::Result<T> {
    runtime().spawn(work).await.map_err(io::Error::other)
}

/// A repository in a bucket.
pub(crate) struct Bucket {
    location: String,
    store: Arc<PrefixStore<AmazonS3>>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("location", &self.location)
            .finish()
    }
}

/// How long the store may keep a request waiting between two reads (a large file streamed to
/// a slow client may take as long as it takes overall).
const READ_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Bucket {
    /// Connects to the bucket of `address` with the endpoint, region and credentials from
    /// `config`, else from the usual `AWS_*` environment variables.
    pub(crate) fn open(address: &BucketAddress, config: &StorageConfig) -> anyhow::Result<Bucket> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&address.bucket)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout_disabled()
                    .with_read_timeout(READ_TIMEOUT)
                    .with_connect_timeout(CONNECT_TIMEOUT),
            )
            // A store that is down should not hold a start or a request for minutes.
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
            });
        let endpoint = config
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT").ok());
        if let Some(endpoint) = &endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(id) = &config.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(file) = &config.secret_access_key_file {
            let secret = crate::secrets::read_private(file, "the S3 secret access key")?;
            builder = builder.with_secret_access_key(secret.trim());
        }
        let store = builder
            .build()
            .with_context(|| format!("connecting to {address}"))?;
        Ok(Bucket {
            location: address.to_string(),
            store: Arc::new(PrefixStore::new(store, address.prefix.as_str())),
        })
    }

    /// The store and the key of `relative`, for a future that owns them.
    fn at(&self, relative: &str) -> io::Result<Target> {
        let key =
            KeyPath::parse(relative).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok((Arc::clone(&self.store), key))
    }

    /// The file's size, date and ETag; `None` when there is none.
    pub(crate) async fn head(&self, relative: &str) -> io::Result<Option<ObjectMeta>> {
        not_found_as_none(run(head_of(self.at(relative)?)).await?)
    }

    /// The whole file, or the bytes `range` of it, with its metadata; `None` when there is none.
    /// With `if_match`, a file whose ETag is no longer that fails instead.
    pub(crate) async fn get(
        &self,
        relative: &str,
        range: Option<Range<u64>>,
        if_match: Option<String>,
    ) -> io::Result<Option<(ObjectMeta, BodyStream)>> {
        let (store, key) = self.at(relative)?;
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            if_match,
            ..GetOptions::default()
        };
        let got = run(async move { store.get_opts(&key, options).await }).await?;
        Ok(not_found_as_none(got)?.map(|got| {
            let meta = got.meta.clone();
            let body: BodyStream = Box::pin(got.into_stream().map_err(io::Error::from));
            (meta, body)
        }))
    }

    /// The whole file read into memory; `None` when there is none.
    pub(crate) async fn read_all(&self, relative: &str) -> io::Result<Option<(ObjectMeta, Bytes)>> {
        not_found_as_none(run(read_of(self.at(relative)?)).await?)
    }

    /// A URL that lets whoever holds it GET the file for `ttl`, and nothing else: the store
    /// checks the signature over method, path and expiry.
    pub(crate) async fn presigned_url(&self, relative: &str, ttl: Duration) -> io::Result<String> {
        let (store, key) = self.at(relative)?;
        let url = run(async move {
            store
                .signed_url(object_store::signer::Method::GET, &key, ttl)
                .await
        })
        .await??;
        Ok(url.to_string())
    }
}

/// A store and a key in it, owned, so that the work on them can go to another runtime.
type Target = (Arc<PrefixStore<AmazonS3>>, KeyPath);

/// The operations that both the requests (async) and the index (blocking) need, written once.
async fn head_of((store, key): Target) -> object_store::Result<ObjectMeta> {
    store.head(&key).await
}

async fn read_of((store, key): Target) -> object_store::Result<(ObjectMeta, Bytes)> {
    let got = store.get(&key).await?;
    let meta = got.meta.clone();
    Ok((meta, got.bytes().await?))
}

/// A file's body as it arrives from the store.
pub(crate) type BodyStream = std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

fn not_found_as_none<T>(result: object_store::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn etag_stamp(meta: &ObjectMeta) -> String {
    match &meta.e_tag {
        Some(tag) => tag.clone(),
        None => format!("{} {}", meta.size, meta.last_modified.timestamp_micros()),
    }
}

impl Storage for Bucket {
    fn location(&self) -> &str {
        &self.location
    }

    fn read(&self, relative: &str) -> io::Result<Option<Vec<u8>>> {
        let got = block_on(read_of(self.at(relative)?))?;
        Ok(not_found_as_none(got)?.map(|(_, bytes)| bytes.to_vec()))
    }

    fn exists(&self, relative: &str) -> io::Result<bool> {
        Ok(self.stamp(relative)?.is_some())
    }

    fn stamp(&self, relative: &str) -> io::Result<Option<String>> {
        let meta = block_on(head_of(self.at(relative)?))?;
        Ok(not_found_as_none(meta)?.map(|meta| etag_stamp(&meta)))
    }

    fn list(&self, dir: &str) -> io::Result<Vec<Listed>> {
        let (store, key) = self.at(dir)?;
        let listed: Vec<ObjectMeta> =
            block_on(async move { store.list(Some(&key)).try_collect().await })??;
        let mut out: Vec<Listed> = listed
            .iter()
            .map(|meta| Listed {
                path: meta.location.to_string(),
                symlink: false,
                stamp: etag_stamp(meta),
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_addresses() {
        let ok = |text: &str, bucket: &str, prefix: &str| {
            assert_eq!(
                BucketAddress::parse(text),
                Some(Ok(BucketAddress {
                    bucket: bucket.to_owned(),
                    prefix: prefix.to_owned()
                })),
                "{text}"
            );
        };
        ok("s3://repos", "repos", "");
        ok("s3://repos/", "repos", "");
        ok("s3://my.repos-1/apps/stable/", "my.repos-1", "apps/stable");
        assert_eq!(BucketAddress::parse("/srv/repo"), None);
        assert_eq!(BucketAddress::parse("s3:/x"), None);
        for bad in [
            "s3://",
            "s3://ab",
            "s3://Repos",
            "s3://re_pos",
            "s3://repos/a/../b",
            "s3://repos/a//b",
        ] {
            assert!(matches!(BucketAddress::parse(bad), Some(Err(_))), "{bad}");
        }
        let address = BucketAddress::parse("s3://repos/apps").unwrap().unwrap();
        assert_eq!(address.to_string(), "s3://repos/apps");
    }
}
