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

use crate::tokens::RefTokens;

/// A place a finder found refs of the collection at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub url: String,
    pub refs: Vec<String>,
}

/// Whether a place may see the user's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Standing {
    /// The repository the tokens were issued for.
    Origin,
    /// A mirror the user trusts with them.
    Trusted,
    /// Anything else: other mirrors, LAN peers, `file://` repositories.
    Untrusted,
}

impl Standing {
    pub fn name(self) -> &'static str {
        match self {
            Standing::Origin => "origin",
            Standing::Trusted => "trusted",
            Standing::Untrusted => "not trusted",
        }
    }
}

/// Refs to pull from one place, with one token or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pull {
    pub url: String,
    pub standing: Standing,
    pub refs: Vec<String>,
    /// The bearer token sent to this place for these refs.
    pub token: Option<String>,
    /// Refs among `refs` that need a token this place may not see: they are pulled without one
    /// only because no place that may see it has them, and a gated server will refuse them.
    pub withheld: Vec<String>,
}

/// Where `url` stands with tokens issued for `origin`. URLs are compared normalised; one that
/// does not normalise (`file://`, say) is never the origin nor trusted.
pub fn standing(url: &str, origin: &str, trusted: &[String]) -> Standing {
    let Ok(url) = normalise(url) else {
        return Standing::Untrusted;
    };
    if normalise(origin).is_ok_and(|o| o == url) {
        Standing::Origin
    } else if trusted
        .iter()
        .filter_map(|t| normalise(t).ok())
        .any(|t| t == url)
    {
        Standing::Trusted
    } else {
        Standing::Untrusted
    }
}

/// The pulls for `found`, given the tokens for the refs (`""` or absent: needs none). A ref that
/// needs a token is pulled from every place that may see it and has the ref, with the token;
/// when there is none, from the others, without it (`withheld`). A ref that needs none is
/// pulled from every place that has it, without a token. One pull per place and token, in the
/// order of `found`.
pub fn plan(found: &[Found], origin: &str, trusted: &[String], tokens: &RefTokens) -> Vec<Pull> {
    let token_of = |r: &str| tokens.get(r).filter(|t| !t.is_empty()).cloned();
    let standings: Vec<Standing> = found
        .iter()
        .map(|f| standing(&f.url, origin, trusted))
        .collect();
    let may_see = |s: Standing| s != Standing::Untrusted;
    let mut pulls = Vec::new();
    for (place, s) in found.iter().zip(&standings) {
        // token (None: without) → (refs, withheld refs)
        let mut groups: BTreeMap<Option<String>, (Vec<String>, Vec<String>)> = BTreeMap::new();
        for r in &place.refs {
            match token_of(r) {
                None => groups.entry(None).or_default().0.push(r.clone()),
                Some(token) if may_see(*s) => {
                    groups.entry(Some(token)).or_default().0.push(r.clone())
                }
                Some(_) => {
                    let elsewhere = found
                        .iter()
                        .zip(&standings)
                        .any(|(other, os)| may_see(*os) && other.refs.contains(r));
                    if !elsewhere {
                        let group = groups.entry(None).or_default();
                        group.0.push(r.clone());
                        group.1.push(r.clone());
                    }
                }
            }
        }
        for (token, (refs, withheld)) in groups {
            pulls.push(Pull {
                url: place.url.clone(),
                standing: *s,
                refs,
                token,
                withheld,
            });
        }
    }
    pulls
}

/// The options of a pull from one place, as libostree takes them (`a{sv}`): `http-headers` with
/// the `Authorization` header when the pull carries a token, nothing else.
pub fn options(pull: &Pull) -> glib::Variant {
    let dict = glib::VariantDict::new(None);
    if let Some(token) = &pull.token {
        let headers = vec![("Authorization".to_owned(), format!("Bearer {token}"))];
        dict.insert_value(
            "http-headers",
            &glib::variant::ToVariant::to_variant(&headers),
        );
    }
    dict.end()
}

/// [`options`] in GVariant's text form (`g_variant_print`, with types where needed).
pub fn options_text(pull: &Pull) -> String {
    options(pull).print(true).to_string()
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
            ("https://mirror.example.com/other", Standing::Untrusted),
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
            &[(mirror, &[APP, RUNTIME], None, &[APP])],
        );
        check(&[], &[], &[]);
    }

    #[test]
    fn option_texts() {
        let pull = |token: Option<&str>| Pull {
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
