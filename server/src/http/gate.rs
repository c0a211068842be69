//! The gate: the one place that decides who may have a repository file.
//!
//! Summary files, `config` and `summaries/` are public (flatpak fetches them without a token).
//! An object is judged by the reachability index, by its kind and checksum (a checksum reached
//! as a dirmeta opens only the `.dirmeta` of that name; `.commitmeta` goes with its commit); a static delta and a delta index by their
//! to-commit; a ref file by its ref. Public → served to anyone; gated → served only to a valid
//! token that covers one of the refs reaching it (401 without a valid token, 403 with one that
//! covers none). `Flatpak-Ref` only says which ref to try first.
//!
//! One refinement: a delta *from* one commit carries patches against that commit's content,
//! which together with the target give the source's bytes back. So a delta is served only when
//! both its target and its source are open to the request: a delta from a gated commit needs a
//! token covering that commit's refs too, even when its target is public, and a delta from a
//! commit the index does not know is refused like any unknown file. When the target is open
//! but the source is not, the answer is a 404, on which ostree falls back to fetching objects
//! (a 401 would fail the pull).

use std::sync::Arc;

use http::HeaderMap;
use tollgate_ostree_format::{Checksum, RepoPath};

use crate::index::{Access, Kind, RepoIndex};
use crate::tokens::{Grant, TokenError, Verifier};

/// The answer to "may this request have this file".
#[derive(Debug)]
pub(super) enum Decision {
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
    /// Gated, and the request presents HTTP Basic credentials not checked yet: the caller
    /// checks them with the entitlement service and asks again with the grant.
    CheckCredential,
}

/// What a request's `Authorization` header presents to the gate.
enum Presented<'h> {
    Nothing,
    Bearer(&'h str),
    Basic,
}

fn presented(headers: &HeaderMap) -> Presented<'_> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Presented::Nothing;
    };
    let bytes = value.as_bytes();
    let scheme = bytes.split(|b| *b == b' ').next().unwrap_or_default();
    if scheme.eq_ignore_ascii_case(b"basic") {
        return Presented::Basic;
    }
    bearer_token(headers).map_or(Presented::Nothing, Presented::Bearer)
}

/// What a path's access depends on.
#[derive(Debug, Clone, Copy)]
enum Subject<'p> {
    Public,
    Object(Kind, &'p Checksum),
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
        RepoPath::Object(o) => match Kind::of(o.kind) {
            Some(kind) => Subject::Object(kind, &o.checksum),
            None => Subject::Public,
        },
        RepoPath::Delta { delta, .. } => Subject::Delta {
            from: delta.from.as_ref(),
            to: &delta.to,
        },
        RepoPath::DeltaIndex(to) => Subject::Delta { from: None, to },
        RepoPath::Head(name) | RepoPath::Mirror(_, name) => Subject::Ref(name.as_str()),
    }
}

/// Decides with the index as it is; `None` when the index does not know the file's subject
/// (the caller then brings the index up to date and asks again, or refuses). `basic`: what the
/// request's Basic credentials open, once checked.
pub(super) fn decide(
    index: &RepoIndex,
    path: &RepoPath,
    repo_name: &str,
    headers: &HeaderMap,
    verifier: &Verifier,
    basic: Option<&Arc<Grant>>,
) -> Option<Decision> {
    let check = |refs: &[u32]| authorize(index, refs, repo_name, headers, verifier, basic);
    match subject(path) {
        Subject::Public => Some(Decision::Public),
        Subject::Object(kind, checksum) => match index.object(kind, checksum) {
            Access::Public => Some(Decision::Public),
            Access::Gated(refs) => Some(check(refs)),
            Access::Unknown => None,
        },
        Subject::Ref(name) => match index.ref_file(name) {
            Access::Public => Some(Decision::Public),
            Access::Gated(refs) => Some(check(refs)),
            Access::Unknown => None,
        },
        Subject::Delta { from, to } => {
            let target = match index.object(Kind::Commit, to) {
                Access::Public => Decision::Public,
                Access::Gated(refs) => check(refs),
                Access::Unknown => return None,
            };
            match from.map(|f| index.object(Kind::Commit, f)) {
                None | Some(Access::Public) => Some(target),
                Some(Access::Unknown) => None,
                // The target is open to this request; the source must be too.
                Some(Access::Gated(source_refs))
                    if matches!(target, Decision::Public | Decision::Allowed { .. }) =>
                {
                    Some(match (check(source_refs), target) {
                        (Decision::CheckCredential, _) => Decision::CheckCredential,
                        (Decision::Allowed { .. }, target @ Decision::Allowed { .. }) => target,
                        (source @ Decision::Allowed { .. }, Decision::Public) => source,
                        _ => Decision::Withheld,
                    })
                }
                Some(Access::Gated(_)) => Some(target),
            }
        }
    }
}

/// Checks the request's token (or checked Basic credentials) against the gated refs `refs`,
/// trying the `Flatpak-Ref` hint first.
fn authorize(
    index: &RepoIndex,
    refs: &[u32],
    repo_name: &str,
    headers: &HeaderMap,
    verifier: &Verifier,
    basic: Option<&Arc<Grant>>,
) -> Decision {
    let grant = match presented(headers) {
        Presented::Nothing => return Decision::TokenRequired,
        Presented::Bearer(token) => match verifier.verify(token) {
            Ok(grant) => grant,
            Err(e) => return Decision::InvalidToken(e),
        },
        Presented::Basic => match basic {
            Some(grant) => Arc::clone(grant),
            None => return Decision::CheckCredential,
        },
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
    use std::path::Path;

    use tollgate_ostree_format::{
        CollectionId, DeltaFile, DeltaName, ObjectName, ObjectType, RefName, Repo,
    };
    use tollgate_tests::synth::{Generated, Shape, generate};

    use super::*;
    use crate::tokens::{SigningKey, issue};

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

    /// A generated repository of four apps, App0 and App2 gated; App0 also mirrored from
    /// another collection.
    struct Setup {
        _dir: tempfile::TempDir,
        generated: Generated,
        index: RepoIndex,
        key: SigningKey,
        verifier: Verifier,
        /// What Basic credentials open, once checked.
        basic: Option<Arc<Grant>>,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let shape = Shape {
            refs: 4,
            gated_every: 2,
            objects: 200,
            files_per_dir: 5,
            fanout: 2,
            content: false,
        };
        let generated = generate(&dir.path().join("repo"), &shape);
        let mirror = generated
            .repo
            .join("refs/mirrors/org.example.Other/app/org.example.App0/x86_64");
        std::fs::create_dir_all(&mirror).unwrap();
        std::fs::write(mirror.join("stable"), format!("{}\n", generated.refs[0].1)).unwrap();
        let repo = Repo::open(&generated.repo).unwrap();
        let index =
            RepoIndex::build(&repo, crate::index::Rules::by_name(&|_| false), &mut |_| {}).unwrap();
        let key = SigningKey::generate().unwrap();
        let verifier = Verifier::new([(key.kid().to_owned(), key.decoding_key())], None);
        Setup {
            _dir: dir,
            generated,
            index,
            key,
            verifier,
            basic: None,
        }
    }

    impl Setup {
        fn app(&self, n: usize) -> (&str, Checksum) {
            let (name, commit, _) = &self.generated.refs[n];
            (name, Checksum::from_hex(commit).unwrap())
        }

        fn token(&self, refs: &[&str]) -> String {
            let refs: Vec<String> = refs.iter().map(|r| r.to_string()).collect();
            issue(&self.key, "test", &["".to_owned()], &refs, 600)
                .unwrap()
                .token
        }

        /// The decision's name, for comparing: `None` when the index does not know the file.
        fn decide(&self, path: &RepoPath, headers: &[(&str, &str)]) -> Option<&'static str> {
            let mut map = HeaderMap::new();
            for (k, v) in headers {
                map.insert(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            decide(
                &self.index,
                path,
                "",
                &map,
                &self.verifier,
                self.basic.as_ref(),
            )
            .map(|d| match d {
                Decision::Public => "public",
                Decision::Allowed { .. } => "allowed",
                Decision::TokenRequired => "token required",
                Decision::InvalidToken(_) => "invalid token",
                Decision::NotEntitled => "not entitled",
                Decision::Withheld => "withheld",
                Decision::CheckCredential => "check credential",
            })
        }
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    #[test]
    fn decisions() {
        let s = setup();
        let ((app0, c0), (_, c1), (app2, c2)) = (s.app(0), s.app(1), s.app(2));
        assert!(s.generated.refs[0].2 && !s.generated.refs[1].2 && s.generated.refs[2].2);
        let object = |c: Checksum| RepoPath::Object(ObjectName::new(c, ObjectType::Commit));
        let delta = |from: Option<Checksum>, to: Checksum| RepoPath::Delta {
            delta: DeltaName { from, to },
            file: DeltaFile::Superblock,
        };
        let mirror = RepoPath::Mirror(
            CollectionId::new("org.example.Other").unwrap(),
            RefName::new(app0).unwrap(),
        );
        let t0 = bearer(&s.token(&[app0]));
        let t2 = bearer(&s.token(&[app2]));
        let both = bearer(&s.token(&[app0, app2]));
        fn auth(t: &str) -> Vec<(&'static str, &str)> {
            vec![("authorization", t)]
        }
        let unknown = Checksum::from_bytes([7; 32]);
        type Case<'a> = (&'a str, RepoPath, Vec<(&'a str, &'a str)>, Option<&'a str>);
        let cases: Vec<Case<'_>> = vec![
            (
                "gated commit, no token",
                object(c0),
                vec![],
                Some("token required"),
            ),
            (
                "gated commit, its token",
                object(c0),
                auth(&t0),
                Some("allowed"),
            ),
            (
                "gated commit, another's token",
                object(c0),
                auth(&t2),
                Some("not entitled"),
            ),
            (
                "gated commit, garbage",
                object(c0),
                auth("Bearer x.y.z"),
                Some("invalid token"),
            ),
            (
                "Flatpak-Ref is no grant",
                object(c0),
                vec![("flatpak-ref", app0)],
                Some("token required"),
            ),
            (
                "public commit, no token",
                object(c1),
                vec![],
                Some("public"),
            ),
            (
                "public commit, any token",
                object(c1),
                auth("Bearer x"),
                Some("public"),
            ),
            ("unknown object", object(unknown), auth(&t0), None),
            (
                "gated mirror ref",
                mirror.clone(),
                vec![],
                Some("token required"),
            ),
            (
                "gated mirror ref, its token",
                mirror,
                auth(&t0),
                Some("allowed"),
            ),
            (
                "gated head",
                RepoPath::Head(RefName::new(app2).unwrap()),
                auth(&t0),
                Some("not entitled"),
            ),
            (
                "public head",
                RepoPath::Head(RefName::new(s.app(1).0).unwrap()),
                vec![],
                Some("public"),
            ),
            (
                "tombstone",
                RepoPath::Object(ObjectName::new(c0, ObjectType::TombstoneCommit)),
                vec![],
                Some("public"),
            ),
            (
                "gated delta index",
                RepoPath::DeltaIndex(c2),
                vec![],
                Some("token required"),
            ),
            (
                "delta from scratch to gated",
                delta(None, c2),
                auth(&t2),
                Some("allowed"),
            ),
            (
                "delta to public from public",
                delta(Some(c1), c1),
                vec![],
                Some("public"),
            ),
            // A delta from one gated app's commit to another's: both must be covered.
            (
                "gated to gated, target's token only",
                delta(Some(c0), c2),
                auth(&t2),
                Some("withheld"),
            ),
            (
                "gated to gated, source's token only",
                delta(Some(c0), c2),
                auth(&t0),
                Some("not entitled"),
            ),
            (
                "gated to gated, both",
                delta(Some(c0), c2),
                auth(&both),
                Some("allowed"),
            ),
            // A delta from a gated commit to a public one: only for the source's token.
            (
                "gated to public, no token",
                delta(Some(c0), c1),
                vec![],
                Some("withheld"),
            ),
            (
                "gated to public, another's token",
                delta(Some(c0), c1),
                auth(&t2),
                Some("withheld"),
            ),
            (
                "gated to public, source's token",
                delta(Some(c0), c1),
                auth(&t0),
                Some("allowed"),
            ),
            ("unknown source", delta(Some(unknown), c1), vec![], None),
            ("unknown target", delta(Some(c1), unknown), vec![], None),
        ];
        for (what, path, headers, expected) in cases {
            assert_eq!(s.decide(&path, &headers), expected, "{what}");
        }
    }

    /// Basic credentials are checked only for a gated file, and once checked open what their
    /// products' patterns cover, in their repository only.
    #[test]
    fn basic_credentials() {
        let mut s = setup();
        let ((app0, c0), (_, c1), (_, c2)) = (s.app(0), s.app(1), s.app(2));
        let app0 = app0.to_owned();
        let object = |c: Checksum| RepoPath::Object(ObjectName::new(c, ObjectType::Commit));
        let delta_from_gated = RepoPath::Delta {
            delta: DeltaName {
                from: Some(c0),
                to: c1,
            },
            file: DeltaFile::Superblock,
        };
        let basic = [("authorization", "Basic dXNlcjpwYXNz")];
        assert_eq!(s.decide(&object(c1), &basic), Some("public"));
        assert_eq!(s.decide(&object(c0), &basic), Some("check credential"));
        assert_eq!(
            s.decide(&delta_from_gated, &basic),
            Some("check credential")
        );
        let pattern = |p: &str| crate::refpattern::RefPattern::new(p).unwrap();
        let prefix = app0.rsplit_once('/').unwrap().0;
        s.basic = Some(Arc::new(Grant::from_products(
            "license:x".to_owned(),
            String::new(),
            vec![pattern(&format!("{prefix}/*"))],
            u64::MAX,
        )));
        assert_eq!(s.decide(&object(c0), &basic), Some("allowed"));
        assert_eq!(s.decide(&delta_from_gated, &basic), Some("allowed"));
        assert_eq!(s.decide(&object(c2), &basic), Some("not entitled"));
        // Another repository's grant opens nothing here.
        s.basic = Some(Arc::new(Grant::from_products(
            "license:x".to_owned(),
            "other".to_owned(),
            vec![pattern("*")],
            u64::MAX,
        )));
        assert_eq!(s.decide(&object(c0), &basic), Some("not entitled"));
        // A Bearer token is still read as a token, whatever was checked.
        assert_eq!(
            s.decide(&object(c0), &[("authorization", "Bearer x.y.z")]),
            Some("invalid token")
        );
    }

    #[test]
    fn the_index_judges_the_generated_repository() {
        let s = setup();
        for (name, commit, gated) in &s.generated.refs {
            let access = s
                .index
                .object(Kind::Commit, &Checksum::from_hex(commit).unwrap());
            assert_eq!(matches!(access, Access::Gated(_)), *gated, "{name}");
            assert_eq!(
                matches!(s.index.ref_file(name), Access::Gated(_)),
                *gated,
                "{name}"
            );
        }
        assert_eq!(s.index.stats().gated_refs, 2);
        assert!(Path::new(&s.generated.repo).join("refs/mirrors").is_dir());
    }
}
