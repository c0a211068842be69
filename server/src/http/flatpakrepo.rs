//! `/[NAME/]repo.flatpakrepo`: the file that lets `flatpak remote-add NAME URL-OF-THIS-FILE` set
//! up a remote for the repository, tollgate's authenticator included. It is made on each request
//! from the repository's `config` (`[flatpak]` title, comment, homepage, authenticator, ... as
//! `flatpak build-update-repo` writes them) and the address the client reached the server at.

use std::io::Read as _;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, header};
use tollgate_ostree_format::flatpak_repo_file;
use warp::reply::Response;

use super::files::MAX_CONFIG_LEN;
use super::{AppState, HttpError, Served};
use crate::authenticator::AUTHENTICATOR_NAME;

/// The file's name inside each repository's URL.
pub(super) const FILE_NAME: &str = "repo.flatpakrepo";

pub(super) async fn serve(
    state: &AppState,
    served: &Arc<Served>,
    headers: &HeaderMap,
) -> Result<Response, HttpError> {
    let base = match &state.public_url {
        Some(url) => url.clone(),
        None => format!("http://{}/", host(headers)?),
    };
    let url = match &served.repo.name {
        Some(name) => format!("{base}{name}/"),
        None => base,
    };
    let config = read_config(served).await.map_err(|e| {
        tracing::error!(
            repo = served.repo.repo.location(),
            "reading the repository's config for its .flatpakrepo failed: {e}"
        );
        HttpError::Internal
    })?;
    let body = flatpak_repo_file(&config, &url, AUTHENTICATOR_NAME);
    let mut response = Response::new(body.into());
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.flatpak.repo"),
    );
    // The Url line depends on the Host asked for.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("Host"));
    Ok(response)
}

/// The repository's `config` as it is stored (empty when there is none).
async fn read_config(served: &Arc<Served>) -> std::io::Result<String> {
    if let Some(bucket) = served.repo.bucket() {
        return Ok(match bucket.read_all("config").await? {
            Some((_, bytes)) if bytes.len() as u64 <= MAX_CONFIG_LEN => {
                String::from_utf8_lossy(&bytes).into_owned()
            }
            Some(_) => return Err(std::io::Error::other("the config is over 1 MiB")),
            None => String::new(),
        });
    }
    let task_served = Arc::clone(served);
    tokio::task::spawn_blocking(move || {
        let Some((file, _)) = task_served.repo.open_file("config")? else {
            return Ok(String::new());
        };
        let mut text = String::new();
        file.take(MAX_CONFIG_LEN).read_to_string(&mut text)?;
        Ok(text)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The request's `Host`, if it is a host and port and nothing else.
fn host(headers: &HeaderMap) -> Result<&str, HttpError> {
    let missing = || {
        HttpError::BadRequest(
            "the request has no usable Host header, so the .flatpakrepo cannot say where the \
             repository is; the server's operator can set public-url in the configuration"
                .to_owned(),
        )
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(missing)?;
    if !is_host_and_port(host) {
        return Err(missing());
    }
    Ok(host)
}

/// `name[:port]` or `[v6 address][:port]`: what a Host header may carry, and nothing more.
fn is_host_and_port(text: &str) -> bool {
    let (host_ok, port) = match text.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, after)) => (v6.parse::<std::net::Ipv6Addr>().is_ok(), after),
            None => return false,
        },
        None => {
            let (name, port) = text.find(':').map_or((text, ""), |at| text.split_at(at));
            let name_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
            (name_ok, port)
        }
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.parse::<u16>().is_ok() && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::is_host_and_port;

    #[test]
    fn host_headers() {
        for good in [
            "apps.test",
            "apps.test:8080",
            "127.0.0.1:80",
            "[::1]:443",
            "[::1]",
            "a-b",
        ] {
            assert!(is_host_and_port(good), "{good}");
        }
        for bad in [
            "",
            ":80",
            "apps.test:",
            "apps.test:port",
            "apps.test:99999",
            "user@apps.test",
            "apps.test/evil",
            "[::1",
            "[nope]:80",
            "a b",
            "apps.test:+80",
            "apps.test:80:80",
        ] {
            assert!(!is_host_and_port(bad), "{bad}");
        }
    }
}
