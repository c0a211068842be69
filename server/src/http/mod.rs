//! The HTTP side of the server: the route table, the repository file handler, the error type,
//! and the listener that runs it all.
//!
//! Every request for a repository file goes through [`repo_file`]: the path is decoded once,
//! matched against the closed grammar of `RepoPath`, and only then turned into a file name.

mod error;
mod files;
pub mod listener;

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderMap, Method};
use percent_encoding::percent_decode_str;
use tollgate_ostree_format::RepoPath;
use warp::Filter;
use warp::filters::path::FullPath;
use warp::reply::Response;

use crate::repos::ServedRepo;
pub use error::HttpError;
use files::Conditions;

/// Longer request paths cannot name a repository file (the longest are delta parts and refs).
const MAX_PATH_LEN: usize = 4096;

/// What every request handler can see.
#[derive(Debug)]
pub struct AppState {
    repos: Vec<Arc<ServedRepo>>,
}

impl AppState {
    pub fn new(repos: Vec<ServedRepo>) -> AppState {
        AppState {
            repos: repos.into_iter().map(Arc::new).collect(),
        }
    }

    /// Which repository a decoded path (without its leading `/`) is in, and the path inside it.
    fn resolve<'p>(&self, path: &'p str) -> Option<(&Arc<ServedRepo>, &'p str)> {
        let (first, rest) = path.split_once('/').unwrap_or((path, ""));
        self.repos
            .iter()
            .find(|r| r.name.as_deref() == Some(first))
            .map(|r| (r, rest))
            .or_else(|| {
                self.repos
                    .iter()
                    .find(|r| r.name.is_none())
                    .map(|r| (r, path))
            })
    }
}

/// The route table: every endpoint of the server, in one place.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    // GET/HEAD /[NAME/]<repository file>
    warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(warp::any().map(move || Arc::clone(&state)))
        .then(
            |method, path: FullPath, headers, state: Arc<AppState>| async move {
                repo_file(&state, method, path.as_str(), headers)
                    .await
                    .unwrap_or_else(HttpError::into_response)
            },
        )
}

async fn repo_file(
    state: &AppState,
    method: Method,
    raw_path: &str,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(HttpError::MethodNotAllowed);
    }
    if raw_path.len() > MAX_PATH_LEN {
        return Err(HttpError::UriTooLong);
    }
    let decoded = percent_decode_str(raw_path)
        .decode_utf8()
        .map_err(|_| HttpError::NotFound)?;
    let relative = decoded.strip_prefix('/').ok_or(HttpError::NotFound)?;
    let (repo, inside) = state.resolve(relative).ok_or(HttpError::NotFound)?;
    let path = RepoPath::parse(inside).ok_or(HttpError::NotFound)?;

    let conditions = Conditions::from_request(&method, &headers);
    let repo = Arc::clone(repo);
    let prepared = tokio::task::spawn_blocking(move || {
        files::prepare(&repo, &path, &conditions).map_err(|e| {
            tracing::error!(
                repo = %repo.repo.root().display(),
                path = %path,
                "reading a repository file failed: {e}"
            );
            HttpError::Internal
        })
    })
    .await
    .map_err(|e| {
        tracing::error!("a file task failed: {e}");
        HttpError::Internal
    })??
    .ok_or(HttpError::NotFound)?;
    prepared.into_response().await.map_err(|e| {
        tracing::error!("starting to stream {raw_path}: {e}");
        HttpError::Internal
    })
}
