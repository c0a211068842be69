//! The HTTP side of the server: the route table, the repository file handler, the gate, the
//! entitlement API, the error type, and the listener that runs it all.
//!
//! Every request for a repository file goes through [`repo_file`]: the path is decoded once,
//! matched against the closed grammar of `RepoPath`, judged by the gate, and only then turned
//! into a file name.

mod admin;
mod api;
mod changes;
mod error;
mod files;
mod flatpakrepo;
mod gate;
mod hooks;
pub(crate) mod listener;
mod pages;
mod stall;
mod webflow;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderMap, Method};
use http_body_util::BodyExt as _;
use percent_encoding::percent_decode_str;
use tollgate_ostree_format::{DeltaFile, ObjectType, RepoPath};
use warp::reply::Response;

use crate::audit::{AuditWriter, DownloadRecord};
use crate::clients::{Client, Proxies};
use crate::entitlements::Entitlements;
use crate::index::live::LiveIndex;
use crate::metrics::{IndexFigures, METRICS, Route};
use crate::repos::ServedRepo;
use crate::secrets::Secret;
use crate::tokens::{Grant, Verifier};
use api::Body;
pub(crate) use error::HttpError;
use files::{Conditions, Disk};
use gate::Decision;

/// Longer request paths cannot name a repository file (the longest are delta parts and refs).
const MAX_PATH_LEN: usize = 4096;
/// Request heads (the request line and headers) over this get 431, however the bytes arrive.
/// hyper holds every head to it (`max_header_size`, counted as parsed) and never buffers more
/// of a connection's input than this (`max_buf_size`), which bounds what a connection that
/// sends its head slowly holds (SECURITY.md); [`handle`] checks it again, so the limit does not
/// rest on hyper's settings alone. 64 KiB is eight times nginx's default
/// (`large_client_header_buffers 4 8k`) and far more than a client sends: a token is 1 KiB.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// A served repository and its live reachability index.
#[derive(Debug)]
pub(crate) struct Served {
    pub repo: ServedRepo,
    pub index: Arc<LiveIndex>,
    /// Content-addressed files read whole, by path in the repository.
    files: Arc<files::FileCache>,
    /// The watch that drops from `files` what changes on disk ([`changes`]); `None` for a
    /// bucket, or a folder that cannot be watched (each answer from memory is then checked
    /// with a `statx`).
    watched: Option<Arc<changes::Watched>>,
}

impl Served {
    pub(crate) fn new(repo: ServedRepo, index: Arc<LiveIndex>) -> Served {
        let files = Arc::new(files::file_cache(files::FILE_CACHE_BYTES));
        let watched = repo.repo.local_root().and_then(|root| {
            changes::watch(root, &files)
                .inspect_err(|e| {
                    tracing::warn!(
                        "cannot watch {} for changed files ({e}); checking each file served \
                         from memory on disk instead",
                        root.display()
                    );
                })
                .ok()
        });
        Served {
            repo,
            index,
            files,
            watched,
        }
    }

    /// The repository's name in tokens: its URL prefix, `""` for the one served at `/`.
    fn token_name(&self) -> &str {
        self.repo.name.as_deref().unwrap_or("")
    }
}

/// What every request handler can see.
#[derive(Debug)]
pub(crate) struct AppState {
    repos: Vec<Arc<Served>>,
    /// Replaced whole when the trusted keys change (a rotation).
    pub verifier: ArcSwap<Verifier>,
    pub entitlements: Arc<Entitlements>,
    audit: Arc<AuditWriter>,
    /// Opens the admin API; `None` keeps it closed.
    admin_token: Option<Secret>,
    /// Opens `/metrics` to any client; `None`: to loopback clients only.
    metrics_token: Option<Secret>,
    /// Where clients reach the server (ends with `/`); `None`: `http://` and the `Host` asked.
    public_url: Option<String>,
    /// How long a request body may take to arrive whole (`stall-timeout`).
    body_timeout: Duration,
    /// The reverse proxies whose forwarding header names the client.
    pub(crate) proxies: Proxies,
    /// The web pages' settings.
    web: crate::config::WebConfig,
    /// The secret order hooks are signed with; `None`: the hook is off.
    order_secret: Option<Secret>,
}

impl AppState {
    pub(crate) fn new(
        repos: Vec<Served>,
        verifier: Verifier,
        entitlements: Arc<Entitlements>,
        audit: Arc<AuditWriter>,
        admin_token: Option<Secret>,
        metrics_token: Option<Secret>,
        public_url: Option<String>,
    ) -> AppState {
        AppState {
            repos: repos.into_iter().map(Arc::new).collect(),
            verifier: ArcSwap::from_pointee(verifier),
            entitlements,
            audit,
            admin_token,
            metrics_token,
            public_url,
            body_timeout: Duration::from_secs(crate::config::default_stall_timeout()),
            proxies: Proxies::default(),
            web: crate::config::WebConfig::default(),
            order_secret: None,
        }
    }

    /// The order hook's secret (`[hooks] order-secret-file`).
    pub(crate) fn with_order_secret(mut self, secret: Option<Secret>) -> AppState {
        self.order_secret = secret;
        self
    }

    /// Believes the forwarding header of `proxies` (`trusted-proxies`).
    pub(crate) fn with_proxies(mut self, proxies: Proxies) -> AppState {
        self.proxies = proxies;
        self
    }

    /// The web pages' settings (`[web]`).
    pub(crate) fn with_web(mut self, web: crate::config::WebConfig) -> AppState {
        self.web = web;
        self
    }

    /// How long a request body may take to arrive whole.
    pub(crate) fn with_body_timeout(mut self, timeout: Duration) -> AppState {
        self.body_timeout = timeout;
        self
    }

    /// Whether one repository is served: then a credential's products need not name it.
    pub(crate) fn sole_repo(&self) -> bool {
        self.repos.len() == 1
    }

    /// Which repository a decoded path (without its leading `/`) is in, and the path inside it.
    fn resolve<'p>(&self, path: &'p str) -> Option<(&Arc<Served>, &'p str)> {
        let (first, rest) = path.split_once('/').unwrap_or((path, ""));
        self.repos
            .iter()
            .find(|r| r.repo.name.as_deref() == Some(first))
            .map(|r| (r, rest))
            .or_else(|| {
                self.repos
                    .iter()
                    .find(|r| r.repo.name.is_none())
                    .map(|r| (r, path))
            })
    }

    /// The repository with this name in tokens (`""` for the one at `/`).
    fn by_token_name(&self, name: &str) -> Option<&Arc<Served>> {
        self.repos.iter().find(|r| r.token_name() == name)
    }
}

/// Answers one request: its parts, as the route table wants them, handed to [`route`]; with
/// the answer, the class of route `/metrics` counts it under.
///
/// The request goes straight from hyper to the route table: the table is one `match` on the
/// path, so a framework's filter chain in front of it would only cost (it cloned the headers of
/// every request).
pub(crate) async fn handle(
    state: &AppState,
    request: http::Request<hyper::body::Incoming>,
    client: Client,
) -> (Route, Response) {
    let (parts, body) = request.into_parts();
    if head_len(&parts) > MAX_HEAD {
        return (Route::Other, HttpError::HeadTooLarge.into_response());
    }
    let body = Body {
        stream: Box::pin(body.into_data_stream()),
        deadline: tokio::time::Instant::now() + state.body_timeout,
    };
    let (class, answer) = route(
        state,
        parts.method,
        parts.uri.path(),
        parts.uri.query().unwrap_or_default(),
        parts.headers,
        client,
        body,
    )
    .await;
    (class, answer.unwrap_or_else(HttpError::into_response))
}

/// About the bytes of a request's head as sent: its line and each `name: value` line.
fn head_len(parts: &http::request::Parts) -> usize {
    let target = parts
        .uri
        .path_and_query()
        .map_or(0, |p| p.as_str().len())
        .saturating_add(parts.uri.authority().map_or(0, |a| a.as_str().len()));
    parts.headers.iter().fold(
        parts.method.as_str().len() + target + "  HTTP/1.1\r\n\r\n".len(),
        |sum, (name, value)| sum.saturating_add(name.as_str().len() + value.len() + 4),
    )
}

/// The route table: every endpoint of the server, in one place. It also tells the class of
/// route each request is counted under in `/metrics`, so that what is counted is what was
/// routed: a repository file by what the grammar of repository paths made of it.
async fn route(
    state: &AppState,
    method: Method,
    path: &str,
    query: &str,
    headers: HeaderMap,
    client: Client,
    body: Body,
) -> (Route, Result<Response, HttpError>) {
    // The API's handlers are boxed: their futures are large (the admin API's is 15 KB), and
    // an unboxed one would make every request's future as large, moved about by value.
    if let Some(rest) = path.strip_prefix("/api/v1/admin/") {
        // Products, licenses, accounts and the audit records: see admin.rs for the table.
        let answer = Box::pin(admin::handle(
            state, &method, rest, query, &headers, client, body,
        ));
        return (Route::Admin, answer.await);
    }
    // The customers' web pages: sign in, the portal (see pages.rs).
    if let Some(rest) = path.strip_prefix(pages::PREFIX)
        && (rest.is_empty() || rest.starts_with('/'))
    {
        let answer = Box::pin(pages::handle(
            state, &method, rest, query, &headers, client.ip, body,
        ));
        return (Route::Pages, Ok(answer.await));
    }
    match path {
        // POST: a credential and refs in, download tokens out.
        "/api/v1/tokens" => (
            Route::Tokens,
            Box::pin(api::tokens(state, &method, &headers, client, body)).await,
        ),
        // GET: what a credential opens (checked before a client keeps it).
        "/api/v1/entitlements" => (
            Route::Api,
            Box::pin(api::entitlements(state, &method, &headers, client)).await,
        ),
        // POST: flat-manager's token_subset.
        "/api/v1/token_subset" => (
            Route::Api,
            Box::pin(api::token_subset(state, &method, &headers, body)).await,
        ),
        // POST: a shop's signed order in, a license made or extended out (hooks.rs).
        "/api/v1/hooks/orders" => (
            Route::Api,
            Box::pin(hooks::orders(state, &method, &headers, body)).await,
        ),
        // GET: that the web flow is here (webflow.rs).
        "/api/v1/sign-in" => (Route::Api, webflow::discovery(&method)),
        // POST: a sign-in code of the web flow in, a device credential out.
        "/api/v1/device-credentials" => (
            Route::Api,
            Box::pin(webflow::exchange(state, &method, body)).await,
        ),
        // GET: the public keys of the signing keys.
        "/.well-known/jwks.json" => (Route::Api, api::jwks(state, &method).await),
        // GET: the counters, in Prometheus' text format.
        "/metrics" => (Route::Metrics, metrics(state, &method, &headers, client)),
        // GET: 200 while the server serves.
        "/healthz" => (Route::Health, healthz(&method)),
        // GET, HEAD: /[NAME/]<repository file>, judged by the gate, and
        // /[NAME/]repo.flatpakrepo, made from the repository's config.
        _ => {
            let target = FileTarget::of(state, path);
            let class = target.as_ref().map_or(Route::Other, FileTarget::route);
            (
                class,
                repo_file(state, method, path, target, headers, client.ip).await,
            )
        }
    }
}

/// The repository file a request path names, decoded once and parsed.
struct FileTarget<'s, 'p> {
    served: &'s Arc<Served>,
    /// The path inside the repository, decoded.
    inside: Cow<'p, str>,
    file: RepoFile,
}

enum RepoFile {
    /// `repo.flatpakrepo`, made from the repository's config.
    Flatpakrepo,
    /// A file of the repository itself.
    Path(RepoPath),
}

impl<'s, 'p> FileTarget<'s, 'p> {
    /// The repository and file `raw_path` names: 414 when it is too long to name one, 404 when
    /// it names none.
    fn of(state: &'s AppState, raw_path: &'p str) -> Result<Self, HttpError> {
        if raw_path.len() > MAX_PATH_LEN {
            return Err(HttpError::UriTooLong);
        }
        let decoded = percent_decode_str(raw_path)
            .decode_utf8()
            .map_err(|_| HttpError::NotFound)?;
        let (served, inside_len, file) = {
            let relative = decoded.strip_prefix('/').ok_or(HttpError::NotFound)?;
            let (served, inside) = state.resolve(relative).ok_or(HttpError::NotFound)?;
            let file = if inside == flatpakrepo::FILE_NAME {
                RepoFile::Flatpakrepo
            } else {
                RepoFile::Path(RepoPath::parse(inside).ok_or(HttpError::NotFound)?)
            };
            (served, inside.len(), file)
        };
        // The path inside is the decoded path's end; borrowed from the request when it was.
        let inside = match decoded {
            Cow::Borrowed(all) => Cow::Borrowed(&all[all.len() - inside_len..]),
            Cow::Owned(all) => Cow::Owned(all[all.len() - inside_len..].to_owned()),
        };
        Ok(FileTarget {
            served,
            inside,
            file,
        })
    }

    /// The class of route `/metrics` counts a request for this file under.
    fn route(&self) -> Route {
        match &self.file {
            RepoFile::Flatpakrepo => Route::Flatpakrepo,
            RepoFile::Path(path) => match path {
                RepoPath::Config => Route::Config,
                RepoPath::Summary(_) | RepoPath::SubSummary(_) => Route::Summary,
                RepoPath::Object(_) => Route::Object,
                RepoPath::Delta { .. } | RepoPath::DeltaIndex(_) => Route::Delta,
                RepoPath::Head(_) | RepoPath::Mirror(..) => Route::Refs,
            },
        }
    }
}

fn metrics(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    client: Client,
) -> Result<Response, HttpError> {
    get_or_head(method)?;
    let allowed = match &state.metrics_token {
        Some(token) => bearer_matches(headers, token),
        // A request that came through a proxy, trusted or not, is not this machine's own.
        None => client.is_loopback(),
    };
    if !allowed {
        return Err(HttpError::MetricsRefused {
            token_configured: state.metrics_token.is_some(),
        });
    }
    let figures: Vec<IndexFigures> = state
        .repos
        .iter()
        .map(|served| {
            let index = served.index.load();
            let stats = index.stats();
            IndexFigures {
                repo: served.token_name().to_owned(),
                objects: stats.objects,
                public_objects: stats.public_objects,
                gated_refs: stats.gated_refs,
                public_refs: stats.public_refs,
                left_out_refs: stats.left_out_refs,
                bytes: stats.bytes,
                build_time: stats.build_time,
                age: served.index.age(),
            }
        })
        .collect();
    let mut response = Response::new(METRICS.render(&figures).into());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// `Ok` for GET and HEAD, the answers a read-only resource gives; 405 for anything else.
pub(crate) fn get_or_head(method: &Method) -> Result<(), HttpError> {
    if method == Method::GET || method == Method::HEAD {
        Ok(())
    } else {
        Err(HttpError::MethodNotAllowed("GET, HEAD"))
    }
}

fn healthz(method: &Method) -> Result<Response, HttpError> {
    get_or_head(method)?;
    let mut response = Response::new("ok\n".into());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

/// The request's one `Authorization` header, if any. Two credentials could each open something
/// else, so a request with several is refused (400) rather than guessed at.
pub(super) fn authorization(headers: &HeaderMap) -> Result<Option<&http::HeaderValue>, HttpError> {
    let mut all = headers.get_all(http::header::AUTHORIZATION).iter();
    let first = all.next();
    let more = all.count();
    if more > 0 {
        return Err(HttpError::BadRequest(format!(
            "the request has {} Authorization headers: send one",
            more + 1
        )));
    }
    Ok(first)
}

/// Whether the request carries `Authorization: Bearer <expected>`, compared in constant time
/// (as SHA-256 digests, so that not even the length shows).
pub(crate) fn bearer_matches(headers: &HeaderMap, expected: &Secret) -> bool {
    use subtle::ConstantTimeEq as _;
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let digest = |t: &str| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, t.as_bytes());
    given.is_some_and(|g| {
        let (g, e) = (digest(g), digest(expected.expose()));
        bool::from(g.as_ref().ct_eq(e.as_ref()))
    })
}

async fn repo_file(
    state: &AppState,
    method: Method,
    raw_path: &str,
    target: Result<FileTarget<'_, '_>, HttpError>,
    headers: HeaderMap,
    client: IpAddr,
) -> Result<Response, HttpError> {
    get_or_head(&method)?;
    let FileTarget {
        served,
        inside,
        file,
    } = target?;
    let path = match file {
        RepoFile::Flatpakrepo => return flatpakrepo::serve(state, served, &headers).await,
        RepoFile::Path(path) => path,
    };
    let inside = &*inside;
    authorization(&headers)?;

    let decision = decide(state, served, &path, &headers, client).await?;
    let allowed = match decision {
        Decision::Public => None,
        Decision::Allowed { grant, ref_name } => Some((grant, ref_name)),
        Decision::TokenRequired => return Err(HttpError::TokenRequired),
        Decision::InvalidToken(e) => {
            tracing::debug!("refused a token for {raw_path}: {e}");
            return Err(HttpError::InvalidToken);
        }
        Decision::NotEntitled => return Err(HttpError::NotEntitled),
        Decision::Withheld => return Err(HttpError::NotFound),
        Decision::CheckCredential => {
            tracing::error!("the gate asked for a credential check twice for {raw_path}");
            return Err(HttpError::Internal);
        }
    };

    let conditions = Conditions::from_request(&method, &headers);
    let private = allowed.is_some();
    let answer = match redirect(served, &path, &conditions, private).await? {
        Some(response) => Answer::Redirect(response),
        None => Answer::File(prepare(served, inside, &path, &conditions, private).await?),
    };
    let sends_content = match &answer {
        Answer::Redirect(_) => true,
        Answer::File(prepared) => prepared.sends_content(),
    };

    // A download is bytes sent: a HEAD (flatpak and ostree send none, but scripts and
    // monitors do) or a 304 is not one.
    if let Some((grant, ref_name)) = allowed
        && sends_content
        && !conditions.head
        && let Some(commit) = audited_commit(&path)
    {
        let user_agent = headers
            .get(http::header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        state.audit.gated_download(DownloadRecord {
            repo: served.token_name().to_owned(),
            ref_name,
            commit,
            token_id: grant.token_id.clone(),
            subject: grant.subject.clone(),
            user_agent,
        });
    }
    match answer {
        Answer::Redirect(response) => Ok(response),
        Answer::File(prepared) => prepared.into_response().map_err(|e| {
            tracing::error!("starting to stream {raw_path}: {e}");
            HttpError::Internal
        }),
    }
}

/// What a request for a repository file gets once the gate has let it through.
enum Answer {
    Redirect(Response),
    File(files::Prepared),
}

/// The file at `path` (`inside` as asked), planned and ready to send: from the memory cache
/// while the file there is still the one it was read from, else the bucket or the local folder.
async fn prepare(
    served: &Arc<Served>,
    inside: &str,
    path: &RepoPath,
    conditions: &Conditions,
    private: bool,
) -> Result<files::Prepared, HttpError> {
    // Read before the bucket is asked: a file read from it is kept only until the index
    // changes after that.
    let generation = served.index.generation();
    // Read before the file is: what it is kept in memory as known unchanged at.
    let watched_at = served.watched.as_ref().map_or(0, |w| w.generation());
    if files::kept_in_memory(path) {
        let cached = served.files.get(inside);
        let current = cached
            .as_ref()
            .is_some_and(|file| still_there(served, path, file));
        METRICS.file_cache(current);
        match cached {
            Some(file) if current => return Ok(files::from_cache(&file, conditions, private)),
            Some(_) => {
                served.files.remove(inside);
            }
            None => {}
        }
    }
    let failed = |served: &Served, path: &RepoPath, e: std::io::Error| {
        tracing::error!(
            repo = served.repo.repo.location(),
            path = %path,
            "reading a repository file failed: {e}"
        );
        HttpError::Internal
    };
    let prepared = match served.repo.bucket() {
        Some(bucket) => files::prepare_remote(bucket, path, conditions, private, generation)
            .await
            .map_err(|e| failed(served, path, e))?,
        // From the kernel's caches on this worker if it can be; else in the blocking pool.
        None => match files::prepare(&served.repo, path, conditions, private, Disk::NoWait) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let task_served = Arc::clone(served);
                let task_path = path.clone();
                let conditions = conditions.clone();
                blocking(move || {
                    let (repo, path) = (&task_served.repo, &task_path);
                    files::prepare(repo, path, &conditions, private, Disk::Wait)
                        .map_err(|e| failed(&task_served, path, e))
                })
                .await??
            }
            prepared => prepared.map_err(|e| failed(served, path, e))?,
        },
    }
    .ok_or(HttpError::NotFound)?;
    if let Some(file) = prepared.cacheable(watched_at) {
        served.files.insert(inside.to_owned(), Arc::new(file));
    }
    Ok(prepared)
}

/// Whether a file kept in memory is still the one in the repository: for a local file, the
/// watch has dealt with every change made so far and none since the file was last known
/// unchanged, or else one `statx` finds the same file unchanged; for a bucket, the index has
/// not changed since.
fn still_there(served: &Served, path: &RepoPath, file: &files::CachedFile) -> bool {
    match file.source() {
        files::Source::Local(id) => {
            let watch = served.watched.as_deref();
            if watch
                .and_then(changes::Watched::quiet)
                .is_some_and(|generation| file.verified_at(generation))
            {
                return true;
            }
            let generation = watch.map(changes::Watched::generation);
            let same =
                matches!(served.repo.file_id(&path.relative_path()), Ok(Some(now)) if now == id);
            if same && let Some(generation) = generation {
                file.confirm(generation);
            }
            same
        }
        files::Source::Bucket(generation) => generation == served.index.generation(),
    }
}

/// In redirect mode, a GET of an object, delta or other content-addressed file is answered with
/// `302`: to a URL of the bucket presigned for this file alone, valid for minutes (the URL
/// carries the authorisation: clients drop `Authorization` when a redirect leaves the origin),
/// or, for a public file when a public objects URL is configured, to that address.
async fn redirect(
    served: &Served,
    path: &RepoPath,
    conditions: &Conditions,
    private: bool,
) -> Result<Option<Response>, HttpError> {
    let Some((bucket, mode)) = served.repo.redirect() else {
        return Ok(None);
    };
    // A presigned GET does not answer HEAD. Summaries, refs and other files rewritten on
    // publish stay here, where they are current and revalidated; objects and delta files are
    // what a pull fetches once each, and the store has them as current as tollgate would.
    if conditions.head || !(path.is_immutable() || path.is_delta_payload()) {
        return Ok(None);
    }
    let relative = path.relative_path();
    let (target, cache) = match (&mode.public_base, private) {
        (Some(base), false) => (format!("{base}{relative}"), "no-cache"),
        _ => {
            let url = bucket
                .presigned_url(&relative, mode.ttl)
                .await
                .map_err(|e| {
                    tracing::error!(
                        repo = served.repo.repo.location(),
                        "presigning a URL for {relative} failed: {e}"
                    );
                    HttpError::Internal
                })?;
            (url, "private, no-store")
        }
    };
    let location = http::HeaderValue::try_from(target).map_err(|e| {
        tracing::error!("a redirect address for {relative} is not a header value: {e}");
        HttpError::Internal
    })?;
    let mut response = Response::new(bytes::Bytes::new().into());
    *response.status_mut() = http::StatusCode::FOUND;
    let h = response.headers_mut();
    h.insert(http::header::LOCATION, location);
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static(cache),
    );
    Ok(Some(response))
}

/// Asks the gate with the index as it is; when the file is gated and the request presents
/// Basic credentials, checks them (see [`Entitlements::basic_grant`]) and asks again with what
/// they open, so that public files never cost a check.
async fn ask_gate(
    state: &AppState,
    served: &Arc<Served>,
    path: &RepoPath,
    headers: &HeaderMap,
    client: IpAddr,
) -> Result<Option<Decision>, HttpError> {
    let ask = |basic: Option<&Arc<Grant>>| {
        let index = served.index.load();
        gate::decide(
            &index,
            path,
            served.token_name(),
            headers,
            &state.verifier.load(),
            basic,
        )
    };
    match ask(None) {
        Some(Decision::CheckCredential) => {
            let header = headers
                .get(http::header::AUTHORIZATION)
                .map_or(&b""[..], |v| v.as_bytes());
            let grant = state
                .entitlements
                .basic_grant(header, served.token_name(), state.sole_repo(), client)
                .await
                .map_err(|e| api::issue_error(e, "checking Basic credentials"))?;
            Ok(ask(Some(&grant)))
        }
        decision => Ok(decision),
    }
}

/// Asks the gate, bringing the index up to date first when it does not know the file. A file
/// the index does not know even then is not reachable from any ref, and is refused.
async fn decide(
    state: &AppState,
    served: &Arc<Served>,
    path: &RepoPath,
    headers: &HeaderMap,
    client: IpAddr,
) -> Result<Decision, HttpError> {
    let ask = || ask_gate(state, served, path, headers, client);
    if let Some(decision) = ask().await? {
        return Ok(decision);
    }
    // Unknown to the index. Most such requests are for files that do not exist; only a file
    // that is there is worth waiting for (published a moment ago).
    let relative = path.relative_path();
    let exists = match served.repo.bucket() {
        Some(bucket) => bucket.head(&relative).await.map(|meta| meta.is_some()),
        None => {
            let task_served = Arc::clone(served);
            let task_relative = relative.clone();
            blocking(move || {
                Ok(task_served
                    .repo
                    .open_file(&task_relative)
                    .map(|file| file.is_some()))
            })
            .await??
        }
    }
    .map_err(|e| {
        tracing::error!("checking {relative}: {e}");
        HttpError::Internal
    })?;
    if !exists {
        return Err(HttpError::NotFound);
    }
    if !served.index.refresh().await {
        tracing::warn!(
            "the index of {} did not catch up in time",
            served.repo.repo.location()
        );
    }
    ask().await?.ok_or_else(|| {
        tracing::warn!(
            "refused {path} in {}: it exists, but no ref reaches it",
            served.repo.repo.location()
        );
        HttpError::NotFound
    })
}

/// The commit whose download is worth an audit record: a `.commit` object, or a delta's
/// superblock (which carries its to-commit).
fn audited_commit(path: &RepoPath) -> Option<String> {
    match path {
        RepoPath::Object(o) if o.kind == ObjectType::Commit => Some(o.checksum.to_string()),
        RepoPath::Delta {
            delta,
            file: DeltaFile::Superblock,
        } => Some(delta.to.to_string()),
        _ => None,
    }
}

/// Runs file system work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, HttpError> + Send + 'static,
) -> Result<Result<T, HttpError>, HttpError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        tracing::error!("a file task failed: {e}");
        HttpError::Internal
    })
}
