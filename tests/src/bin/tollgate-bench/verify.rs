//! Checks made before anything is measured: that each server answers the objects the workloads
//! ask for with 200 and the very bytes on disk (nginx as much as tollgate: a reference that
//! answered 404s, or served another folder, would make every ratio meaningless), and that the
//! gate is closed without a token and open with one.

use std::net::SocketAddr;

use anyhow::{Context, bail, ensure};
use tollgate_tests::http::{Response, send_raw};

use crate::repo::BenchRepo;

/// `GET path`, with `authorization` when given, on a connection of its own.
pub(crate) fn get(
    addr: SocketAddr,
    path: &str,
    authorization: Option<&str>,
) -> anyhow::Result<Response> {
    let mut raw = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(auth) = authorization {
        raw.push_str(&format!("Authorization: {auth}\r\n"));
    }
    raw.push_str("\r\n");
    send_raw(addr, raw.as_bytes()).with_context(|| format!("GET http://{addr}{path}"))
}

/// Every `stride`th path of `paths` and the first and last: about `count` of them.
pub(crate) fn sample(paths: &[String], count: usize) -> Vec<&String> {
    let stride = (paths.len() / count.max(1)).max(1);
    let mut picked: Vec<&String> = paths.iter().step_by(stride).collect();
    if let Some(last) = paths.last()
        && picked.last() != Some(&last)
    {
        picked.push(last);
    }
    picked
}

/// Fails unless `server` (named `name` in the message) answers each of `paths` with 200 and
/// the object's bytes.
pub(crate) fn serves(
    name: &str,
    server: SocketAddr,
    repo: &BenchRepo,
    paths: &[&String],
    authorization: Option<&str>,
) -> anyhow::Result<()> {
    for path in paths {
        let answer = get(server, path, authorization)?;
        ensure!(
            answer.status == 200,
            "{name} answered GET {path} with {} instead of 200",
            answer.status
        );
        let bytes = repo.bytes_of(path)?;
        if answer.body != bytes {
            bail!(
                "{name} served {} bytes for {path}, not the {} bytes of the file",
                answer.body.len(),
                bytes.len()
            );
        }
    }
    Ok(())
}

/// Checks both servers on the objects the workloads ask for: the small ones, and a sample of
/// each random list; and that tollgate refuses the gated objects without `token` (or, when
/// given, the `Authorization: Basic` credential `basic`), and with a wrong one.
pub(crate) fn workloads(
    tollgate: SocketAddr,
    nginx: &[(&str, SocketAddr)],
    repo: &BenchRepo,
    token: &str,
    basic: Option<&str>,
) -> anyhow::Result<()> {
    let auth = format!("Bearer {token}");
    let gate = get(tollgate, &repo.gated_commit, None)?;
    ensure!(
        gate.status == 401,
        "the gated commit {} answered {} without a token, not 401",
        repo.gated_commit,
        gate.status
    );
    let public: Vec<&String> = std::iter::once(&repo.small_public)
        .chain(sample(&repo.public_paths, 50))
        .collect();
    let gated: Vec<&String> = [&repo.small_gated, &repo.gated_commit]
        .into_iter()
        .chain(sample(&repo.gated_paths, 50))
        .collect();
    serves("tollgate", tollgate, repo, &public, None)?;
    serves(
        "tollgate, with a token",
        tollgate,
        repo,
        &gated,
        Some(&auth),
    )?;
    if let Some(basic) = basic {
        serves(
            "tollgate, with Basic credentials",
            tollgate,
            repo,
            &gated,
            Some(basic),
        )?;
        let wrong = get(tollgate, &repo.gated_commit, Some("Basic bGljZW5zZTp4"))?;
        ensure!(
            wrong.status == 401,
            "the gated commit {} answered {} to a wrong Basic credential, not 401",
            repo.gated_commit,
            wrong.status
        );
    }
    for (name, addr) in nginx {
        serves(name, *addr, repo, &public, None)?;
        serves(name, *addr, repo, &gated, Some(&auth))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_cover_the_list() {
        let paths: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        let picked = |count| -> Vec<&str> {
            sample(&paths, count)
                .into_iter()
                .map(|s| s.as_str())
                .collect()
        };
        assert_eq!(picked(5), ["0", "2", "4", "6", "8", "9"]);
        assert_eq!(picked(3), ["0", "3", "6", "9"]);
        assert_eq!(picked(50).len(), 10);
        assert!(sample(&[], 5).is_empty());
    }
}
