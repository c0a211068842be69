//! P2P pulls: which place each ref is pulled from, and with which options.
//!
//! libostree's finders may find a collection's refs at the origin, at mirrors, on LAN peers and
//! on USB sticks, but `ostree_repo_pull_from_remotes` sends one global `http-headers` option to
//! every place it pulls from: a bearer token handed to it reaches whoever answers. So the pull is
//! planned here, per place: a ref that needs a token is pulled only from places that may see
//! that token (the origin it was issued for, or a mirror the user trusts, with
//! `tollgate-helper trust add URL`), each group with its own options; refs that need none are
//! pulled from anywhere, without any token. libostree still checks everything it pulls by
//! checksum (and signature, when the remote asks for it).

use std::collections::BTreeMap;

use tollgate_plugin_api::url::normalise;

use crate::libostree::{Finder, FinderResult, find_remotes, narrowed, pull_from_remotes};
use crate::tokens::RefTokens;
pub(crate) use crate::trust::Standing;
use crate::trust::is_trusted;

/// A place a finder found refs of the collection at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub url: String,
    pub refs: Vec<String>,
}

/// Refs to pull from one place, with one token or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pull {
    /// The place, as its index in the `found` the plan was made for.
    pub place: usize,
    pub url: String,
    pub standing: Standing,
    pub refs: Vec<String>,
    /// The bearer token sent to this place for these refs.
    pub token: Option<String>,
    /// When not empty, `refs` again: refs that need a token this place may not see, pulled
    /// here without it only because no place that may see it has them (a gated server will
    /// refuse them). They are a pull of their own.
    pub withheld: Vec<String>,
}

/// Where `url` stands with tokens issued for `origin`: the origin only when it is that
/// repository's URL (not merely on its server), trusted as [`crate::trust`] says. URLs are
/// compared normalised; one that does not normalise (`file://`, say) is never the origin nor
/// trusted.
pub(crate) fn standing(url: &str, origin: &str, trusted: &[String]) -> Standing {
    let Ok(url) = normalise(url) else {
        return Standing::Untrusted;
    };
    if normalise(origin).is_ok_and(|o| o == url) {
        Standing::Origin
    } else if is_trusted(&url, trusted) {
        Standing::Trusted
    } else {
        Standing::Untrusted
    }
}

/// The pulls for `found`, given the tokens for the refs (`""` or absent: needs none). A ref that
/// needs a token is pulled from every place that may see it and has the ref, with the token;
/// when there is none, from the others, without it (`withheld`). A ref that needs none is
/// pulled from every place that has it, without a token. One pull per place and token (and
/// one for the withheld refs), in the order of `found`.
pub(crate) fn plan(
    found: &[Found],
    origin: &str,
    trusted: &[String],
    tokens: &RefTokens,
) -> Vec<Pull> {
    let token_of = |r: &str| tokens.get(r).filter(|t| !t.is_empty()).cloned();
    let standings: Vec<Standing> = found
        .iter()
        .map(|f| standing(&f.url, origin, trusted))
        .collect();
    let may_see = |s: Standing| s != Standing::Untrusted;
    let mut pulls = Vec::new();
    for (index, (place, s)) in found.iter().zip(&standings).enumerate() {
        // (token, withheld) → refs; withheld refs are a pull of their own, so that a server
        // refusing them fails nothing else.
        let mut groups: BTreeMap<(Option<String>, bool), Vec<String>> = BTreeMap::new();
        for r in &place.refs {
            let key = match token_of(r) {
                None => (None, false),
                Some(token) if may_see(*s) => (Some(token), false),
                Some(_) => {
                    let elsewhere = found
                        .iter()
                        .zip(&standings)
                        .any(|(other, os)| may_see(*os) && other.refs.contains(r));
                    if elsewhere {
                        continue;
                    }
                    (None, true)
                }
            };
            groups.entry(key).or_default().push(r.clone());
        }
        for ((token, withheld), refs) in groups {
            pulls.push(Pull {
                place: index,
                url: place.url.clone(),
                standing: *s,
                withheld: if withheld { refs.clone() } else { Vec::new() },
                refs,
                token,
            });
        }
    }
    pulls
}

/// The options of a pull from one place, as libostree takes them (`a{sv}`): `http-headers` with
/// the `Authorization` header when the pull carries a token, nothing else.
pub(crate) fn options(pull: &Pull) -> glib::Variant {
    headers(pull.token.as_deref()).end()
}

/// Pull options (`a{sv}`) with `http-headers` carrying `Authorization: Bearer TOKEN` when there
/// is a token, and nothing else yet.
pub(crate) fn headers(token: Option<&str>) -> glib::VariantDict {
    let dict = glib::VariantDict::new(None);
    if let Some(token) = token {
        let headers = vec![("Authorization".to_owned(), format!("Bearer {token}"))];
        dict.insert_value(
            "http-headers",
            &glib::variant::ToVariant::to_variant(&headers),
        );
    }
    dict
}

/// [`options`] in GVariant's text form (`g_variant_print`, with types where needed).
pub(crate) fn options_text(pull: &Pull) -> String {
    options(pull).print(true).to_string()
}

/// What to pull, and where tokens may go.
#[derive(Debug, Clone)]
pub(crate) struct Request<'a> {
    pub collection_id: &'a str,
    pub refs: &'a [String],
    pub finders: &'a [Finder],
    /// The repository the tokens are issued for.
    pub origin: &'a str,
    /// The mirrors the user trusts with them.
    pub trusted: &'a [String],
}

/// One `pull_from_remotes` call: the refs that share a token (or need none), and the places
/// they were pulled from, best first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    pub with_token: bool,
    pub places: Vec<(String, Standing)>,
    pub refs: Vec<String>,
    /// Refs that need a token no place tried may see (see [`Pull::withheld`]).
    pub withheld: Vec<String>,
    /// libostree's error, when not every ref came.
    pub error: Option<String>,
}

/// What a P2P pull did: one batch per token (and one for the refs that need none), and the refs
/// no finder found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Report {
    pub found: Vec<Found>,
    pub batches: Vec<Batch>,
    pub not_found: Vec<String>,
}

impl Report {
    pub(crate) fn succeeded(&self) -> bool {
        self.not_found.is_empty() && self.batches.iter().all(|b| b.error.is_none())
    }
}

/// What the finders found for `request`, by place (libostree may give a place several
/// results), best first: the libostree results for each place, and the place as a [`Found`]
/// with the requested refs it has.
pub(crate) fn find(
    repo: &ostree::Repo,
    request: &Request,
) -> anyhow::Result<(Vec<Vec<FinderResult>>, Vec<Found>)> {
    let results = find_remotes(repo, request.collection_id, request.refs, request.finders)
        .map_err(|e| anyhow::anyhow!("finding {}: {e}", request.collection_id))?;
    let mut places: Vec<Vec<FinderResult>> = Vec::new();
    for result in results {
        match places.iter_mut().find(|p| p[0].url == result.url) {
            Some(place) => place.push(result),
            None => places.push(vec![result]),
        }
    }
    let found = places
        .iter()
        .map(|place| Found {
            url: place[0].url.clone(),
            refs: request
                .refs
                .iter()
                .filter(|name| place.iter().any(|r| r.refs.contains_key(*name)))
                .cloned()
                .collect(),
        })
        .collect();
    Ok((places, found))
}

/// The refs among `refs` some place in `found` has, and those none has, in the order asked.
pub(crate) fn found_or_not(refs: &[String], found: &[Found]) -> (Vec<String>, Vec<String>) {
    refs.iter()
        .cloned()
        .partition(|r| found.iter().any(|f| f.refs.contains(r)))
}

/// Finds `request.refs` and pulls them into `repo`, each token only with the places that may
/// see it ([`plan`]): one libostree pull per token, and one for the refs that need none. The
/// tokens come from `tokens` (given the refs found), as the normal path gets them.
pub(crate) fn pull(
    repo: &ostree::Repo,
    request: &Request,
    tokens: impl FnOnce(Vec<String>) -> anyhow::Result<RefTokens>,
) -> anyhow::Result<Report> {
    let (results, found) = find(repo, request)?;
    let (wanted, not_found) = found_or_not(request.refs, &found);
    let mut report = Report {
        not_found,
        ..Report::default()
    };
    if !wanted.is_empty() {
        let tokens = tokens(wanted)?;
        let pulls = plan(&found, request.origin, request.trusted, &tokens);
        // The pulls that share a token (or withhold one), in the finders' order.
        type Key<'a> = (Option<&'a String>, bool);
        let mut batches: Vec<(Key, Vec<&Pull>)> = Vec::new();
        for p in &pulls {
            let key = (p.token.as_ref(), !p.withheld.is_empty());
            match batches.iter_mut().find(|(k, _)| *k == key) {
                Some((_, group)) => group.push(p),
                None => batches.push((key, vec![p])),
            }
        }
        batches.sort_by_key(|((token, withheld), _)| (token.is_some(), *withheld));
        for ((token, _), group) in batches {
            let narrowed: Vec<ostree::RepoFinderResult> = group
                .iter()
                .map(|p| narrowed(&results[p.place].iter().collect::<Vec<_>>(), &p.refs))
                .collect();
            let error = pull_from_remotes(repo, &narrowed, &options(group[0]))
                .err()
                .map(|e| e.to_string());
            let mut refs: Vec<String> = group.iter().flat_map(|p| p.refs.clone()).collect();
            let mut withheld: Vec<String> = group.iter().flat_map(|p| p.withheld.clone()).collect();
            for list in [&mut refs, &mut withheld] {
                list.sort();
                list.dedup();
            }
            report.batches.push(Batch {
                with_token: token.is_some(),
                places: group.iter().map(|p| (p.url.clone(), p.standing)).collect(),
                refs,
                withheld,
                error,
            });
        }
    }
    report.found = found;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "https://apps.example.com/";
    const APP: &str = "app/com.example.Pro/x86_64/stable";
    const RUNTIME: &str = "runtime/com.example.Platform/x86_64/stable";

    fn found(url: &str, refs: &[&str]) -> Found {
        Found {
            url: url.to_owned(),
            refs: refs.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    fn tokens() -> RefTokens {
        [
            (APP.to_owned(), "T1".to_owned()),
            (RUNTIME.to_owned(), String::new()),
        ]
        .into_iter()
        .collect()
    }

    /// A pull as (url, refs, token, withheld).
    type Expected<'a> = (&'a str, &'a [&'a str], Option<&'a str>, &'a [&'a str]);

    fn check(found: &[Found], trusted: &[&str], expected: &[Expected]) {
        let trusted: Vec<String> = trusted.iter().map(|t| (*t).to_owned()).collect();
        let got: Vec<_> = plan(found, ORIGIN, &trusted, &tokens())
            .into_iter()
            .map(|p| (p.url, p.refs, p.token, p.withheld))
            .collect();
        let expected: Vec<_> = expected
            .iter()
            .map(|(u, r, t, w)| {
                (
                    (*u).to_owned(),
                    r.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>(),
                    t.map(str::to_owned),
                    w.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn standings() {
        let trusted = vec!["https://mirror.example.com".to_owned()];
        for (url, s) in [
            ("https://apps.example.com", Standing::Origin),
            ("HTTPS://Apps.Example.com:443/", Standing::Origin),
            ("http://apps.example.com/", Standing::Untrusted),
            ("https://apps.example.com.evil/", Standing::Untrusted),
            ("https://mirror.example.com/", Standing::Trusted),
            // Beneath a trusted mirror on a path boundary: trusted (`trust` says why).
            ("https://mirror.example.com/other", Standing::Trusted),
            ("https://mirror.example.com.evil/", Standing::Untrusted),
            ("file:///media/usb/.ostree/repo", Standing::Untrusted),
            ("not a url", Standing::Untrusted),
        ] {
            assert_eq!(standing(url, ORIGIN, &trusted), s, "{url}");
        }
    }

    #[test]
    fn plans() {
        let mirror = "http://mirror.test/";
        let usb = "file:///media/usb/.ostree/repo";
        // The gated ref goes only to the origin, with its token; the public one from anywhere.
        check(
            &[
                found(ORIGIN, &[APP, RUNTIME]),
                found(mirror, &[APP, RUNTIME]),
                found(usb, &[RUNTIME]),
            ],
            &[],
            &[
                (ORIGIN, &[RUNTIME], None, &[]),
                (ORIGIN, &[APP], Some("T1"), &[]),
                (mirror, &[RUNTIME], None, &[]),
                (usb, &[RUNTIME], None, &[]),
            ],
        );
        // A trusted mirror gets the token too.
        check(
            &[found(ORIGIN, &[APP]), found(mirror, &[APP])],
            &[mirror],
            &[
                (ORIGIN, &[APP], Some("T1"), &[]),
                (mirror, &[APP], Some("T1"), &[]),
            ],
        );
        // Only an untrusted place has the gated ref: tried there without the token.
        check(
            &[found(mirror, &[APP, RUNTIME])],
            &[],
            &[
                (mirror, &[RUNTIME], None, &[]),
                (mirror, &[APP], None, &[APP]),
            ],
        );
        check(&[], &[], &[]);
    }

    #[test]
    fn option_texts() {
        let pull = |token: Option<&str>| Pull {
            place: 0,
            url: ORIGIN.to_owned(),
            standing: Standing::Origin,
            refs: vec![APP.to_owned()],
            token: token.map(str::to_owned),
            withheld: Vec::new(),
        };
        assert_eq!(
            options_text(&pull(Some("a.b'c"))),
            r#"{'http-headers': <[('Authorization', "Bearer a.b'c")]>}"#
        );
        assert_eq!(options_text(&pull(None)), "@a{sv} {}");
    }
}
