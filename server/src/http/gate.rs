//! The gate: the one place that decides who may have a repository file.
//!
//! Summary files, `config` and `summaries/` are public (flatpak fetches them without a token).
//! An object is judged by the reachability index; a static delta and a delta index by their
//! to-commit; a ref file by its ref. Public → served to anyone; gated → served only to a valid
//! token that covers one of the refs reaching it (401 without a valid token, 403 with one that
//! covers none). `Flatpak-Ref` only says which ref to try first.
//!
//! One refinement: a delta *to* a public commit *from* a gated one carries patches against the
//! gated content, which together with the public target give the gated bytes back. It is served
//! only to a token covering the gated source; anyone else gets a 404, on which ostree falls
//! back to fetching objects (a 401 would fail the pull).

use std::sync::Arc;

use http::HeaderMap;
use tollgate_ostree_format::{Checksum, ObjectType, RepoPath};

use crate::index::{Access, RepoIndex};
use crate::tokens::{Grant, TokenError, Verifier};

/// The answer to "may this request have this file".
#[derive(Debug)]
pub enum Decision {
    Public,
    /// Gated, and the token covers `ref_name`.
    Allowed {
        grant: Arc<Grant>,
        ref_name: String,
    },
    /// Gated, and no token was given.
    TokenRequired,
    /// Gated, and the token given is not valid.
    InvalidToken(TokenError),
    /// Gated, and the valid token covers none of the refs that reach the file.
    NotEntitled,
    /// A delta from a gated commit to a public one, without a token for the gated source.
    Withheld,
}

/// What a path's access depends on.
#[derive(Debug, Clone, Copy)]
enum Subject<'p> {
    Public,
    Object(&'p Checksum),
    Delta {
        from: Option<&'p Checksum>,
        to: &'p Checksum,
    },
    Ref(&'p str),
}

fn subject(path: &RepoPath) -> Subject<'_> {
    match path {
        RepoPath::Config | RepoPath::Summary(_) | RepoPath::SubSummary(_) => Subject::Public,
        // A tombstone only says that a commit was deleted; clients fetch it to learn that.
        RepoPath::Object(o) if o.kind == ObjectType::TombstoneCommit => Subject::Public,
        RepoPath::Object(o) => Subject::Object(&o.checksum),
        RepoPath::Delta { delta, .. } => Subject::Delta {
            from: delta.from.as_ref(),
            to: &delta.to,
        },
        RepoPath::DeltaIndex(to) => Subject::Delta { from: None, to },
        RepoPath::Head(name) | RepoPath::Mirror(_, name) => Subject::Ref(name.as_str()),
    }
}

/// Decides with the index as it is; `None` when the index does not know the file's subject
/// (the caller then brings the index up to date and asks again, or refuses).
pub fn decide(
    index: &RepoIndex,
    path: &RepoPath,
    repo_name: &str,
    headers: &HeaderMap,
    verifier: &Verifier,
) -> Option<Decision> {
    let check = |refs: &[u32]| authorize(index, refs, repo_name, headers, verifier);
    match subject(path) {
        Subject::Public => Some(Decision::Public),
        Subject::Object(checksum) => match index.object(checksum) {
            Access::Public => Some(Decision::Public),
            Access::Gated(refs) => Some(check(refs)),
            Access::Unknown => None,
        },
        Subject::Ref(name) => match index.ref_file(name) {
            Access::Public => Some(Decision::Public),
            Access::Gated(refs) => Some(check(refs)),
            Access::Unknown => None,
        },
        Subject::Delta { from, to } => match index.object(to) {
            Access::Gated(refs) => Some(check(refs)),
            Access::Unknown => None,
            Access::Public => match from.map(|f| index.object(f)) {
                Some(Access::Gated(source_refs)) => Some(match check(source_refs) {
                    allowed @ Decision::Allowed { .. } => allowed,
                    _ => Decision::Withheld,
                }),
                _ => Some(Decision::Public),
            },
        },
    }
}

/// Checks the request's token against the gated refs `refs`, trying the `Flatpak-Ref` hint
/// first.
fn authorize(
    index: &RepoIndex,
    refs: &[u32],
    repo_name: &str,
    headers: &HeaderMap,
    verifier: &Verifier,
) -> Decision {
    let Some(token) = bearer_token(headers) else {
        return Decision::TokenRequired;
    };
    let grant = match verifier.verify(token) {
        Ok(grant) => grant,
        Err(e) => return Decision::InvalidToken(e),
    };
    let hint = headers.get("flatpak-ref").and_then(|v| v.to_str().ok());
    let hinted = hint
        .into_iter()
        .filter(|h| refs.iter().any(|id| index.ref_name(*id) == *h));
    let names = hinted.chain(refs.iter().map(|id| index.ref_name(*id)));
    for name in names {
        if grant.covers(repo_name, name) {
            return Decision::Allowed {
                grant,
                ref_name: name.to_owned(),
            };
        }
    }
    Decision::NotEntitled
}

/// The token of an `Authorization: Bearer <token>` header, if there is exactly that.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let check = |value: &str, expected: Option<&str>| {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(bearer_token(&headers), expected, "{value:?}");
        };
        check("Bearer abc.def.ghi", Some("abc.def.ghi"));
        check("bearer abc", Some("abc"));
        check("Bearer  abc ", Some("abc"));
        check("Bearer", None);
        check("Bearer ", None);
        check("Basic dXNlcjpwYXNz", None);
        check("abc", None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
