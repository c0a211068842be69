//! Who may see an entitlement service's tokens: the one rule every way out of the helper
//! applies before a token leaves it (the authenticator before it answers flatpak,
//! `tollgate-helper pull` before it gives libostree a header, P2P pulls for each place).
//!
//! A remote's URL may see the tokens of the service at `service` when it is:
//! - **the service's origin**: the same scheme, host and port as the service URL, whatever the
//!   paths. tollgate serves a repository named `NAME` at `/NAME/` and its entitlement API at
//!   `/api/v1/` of the same address, so a repository and its service share an origin and
//!   nothing more; and an origin is what a web client treats as one party.
//! - **a trusted mirror**: one of `trusted-mirrors` (`tollgate-helper trust add URL`), or a URL
//!   beneath one on a path boundary: `https://m.example/apps` covers `https://m.example/apps/`
//!   and `https://m.example/apps/x/`, not `https://m.example/apps2/` nor `https://m.example/`.
//!   Everything a client fetches from a remote is beneath the remote's URL, so trusting a URL
//!   trusts exactly the server's files under it.
//!
//! Anything else is refused, with [`NotTrusted`], which names both addresses and says how to
//! trust the remote. URLs are compared in their normal form (`tollgate_plugin_api::url`): case
//! of scheme and host, default ports, trailing slashes and `..` segments make no difference.
//! A URL that has no normal form (`file://`, `oci+https://`, ostree's `mirrorlist=`, one with
//! a user name) is neither an origin nor trusted.

use tollgate_plugin_api::url::{UrlError, normalise};

/// Where a URL stands with a service's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Standing {
    /// The service's own origin (for P2P: the repository the tokens were issued for).
    Origin,
    /// A mirror the user trusts with them.
    Trusted,
    /// Anything else: other servers, LAN peers, `file://` repositories.
    Untrusted,
}

impl Standing {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Standing::Origin => "origin",
            Standing::Trusted => "trusted",
            Standing::Untrusted => "not trusted",
        }
    }
}

/// `scheme://host[:port]` of a normalised URL.
pub(crate) fn origin(normalised: &str) -> &str {
    let authority = normalised.find("://").map_or(0, |i| i + 3);
    match normalised[authority..].find('/') {
        Some(slash) => &normalised[..authority + slash],
        None => normalised,
    }
}

/// Whether the normalised `url` is `prefix` or beneath it on a path boundary.
fn beneath(url: &str, prefix: &str) -> bool {
    url.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether `url` is a mirror in `trusted` or beneath one (any spelling of either).
pub(crate) fn is_trusted(url: &str, trusted: &[String]) -> bool {
    let Ok(url) = normalise(url) else {
        return false;
    };
    trusted
        .iter()
        .filter_map(|t| normalise(t).ok())
        .any(|t| beneath(&url, &t))
}

/// Where the remote at `remote` stands with the tokens of the service at `service`.
pub(crate) fn standing(remote: &str, service: &str, trusted: &[String]) -> Standing {
    let (Ok(remote_n), Ok(service)) = (normalise(remote), normalise(service)) else {
        return Standing::Untrusted;
    };
    if origin(&remote_n) == origin(&service) {
        Standing::Origin
    } else if is_trusted(&remote_n, trusted) {
        Standing::Trusted
    } else {
        Standing::Untrusted
    }
}

/// Why a remote may not see a service's tokens; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotTrusted {
    #[error(
        "refusing to send tokens of the entitlement service {service} to {remote}: tokens go \
         only to the service's own origin ({}) and to mirrors you trust. If you trust {remote} \
         with your tokens, run `tollgate-helper trust add {remote}`",
        origin(.service)
    )]
    Elsewhere { remote: String, service: String },
    #[error(
        "refusing to send tokens of the entitlement service {service} to the remote's URL: \
         tokens go only to the service's own origin ({}) and to http or https mirrors you \
         trust, and the remote's URL is none ({why})",
        origin(.service)
    )]
    NotAnAddress { service: String, why: UrlError },
}

/// `Ok` with its standing when the remote at `remote` may see the tokens of the service at
/// `service` (normalised), else why not.
pub(crate) fn check(
    remote: &str,
    service: &str,
    trusted: &[String],
) -> Result<Standing, NotTrusted> {
    let remote = normalise(remote).map_err(|why| NotTrusted::NotAnAddress {
        service: service.to_owned(),
        why,
    })?;
    match standing(&remote, service, trusted) {
        Standing::Untrusted => Err(NotTrusted::Elsewhere {
            remote,
            service: service.to_owned(),
        }),
        standing => Ok(standing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        for (url, expected) in [
            ("https://apps.example.com", "https://apps.example.com"),
            ("https://apps.example.com/shop", "https://apps.example.com"),
            ("http://127.0.0.1:8080/a/b", "http://127.0.0.1:8080"),
            ("http://[::1]:8080/a", "http://[::1]:8080"),
        ] {
            assert_eq!(origin(url), expected, "{url}");
        }
    }

    #[test]
    fn who_may_see_a_services_tokens() {
        let service = "http://127.0.0.1:8080";
        let trusted = [
            "https://mirror.example.com/apps/".to_owned(),
            "HTTP://Whole.example:80/".to_owned(),
            "not a url".to_owned(),
        ];
        let check = |remote: &str, expected: Standing| {
            assert_eq!(
                standing(remote, service, &trusted),
                expected,
                "{remote} with {service}"
            );
        };
        use Standing::{Origin, Trusted, Untrusted};
        // The service's origin, whatever the path: a repository served at /NAME/.
        check("http://127.0.0.1:8080/", Origin);
        check("http://127.0.0.1:8080/apps/", Origin);
        check("HTTP://127.0.0.1:8080/apps/../os", Origin);
        // Another port, scheme or host is another origin.
        check("http://127.0.0.1:8081/", Untrusted);
        check("https://127.0.0.1:8080/", Untrusted);
        check("http://localhost:8080/", Untrusted);
        check("http://127.0.0.1/", Untrusted);
        // A trusted mirror, and what is beneath it on a path boundary.
        check("https://mirror.example.com/apps", Trusted);
        check("https://mirror.example.com/apps/", Trusted);
        check("https://mirror.example.com:443/apps/sub/", Trusted);
        check("https://mirror.example.com/apps2/", Untrusted);
        check("https://mirror.example.com/", Untrusted);
        check("https://mirror.example.com/apps/../other/", Untrusted);
        check("http://mirror.example.com/apps/", Untrusted);
        check("http://whole.example/anything/", Trusted);
        check("http://whole.example:8080/", Untrusted);
        check("http://whole.example.evil.test/", Untrusted);
        // Nothing without a normal form.
        check("file:///srv/repo", Untrusted);
        check("mirrorlist=http://127.0.0.1:8080/list", Untrusted);
        check("http://user@127.0.0.1:8080/", Untrusted);
        check("", Untrusted);
        // A service with a path has the same origin.
        assert_eq!(
            standing(
                "http://127.0.0.1:8080/apps/",
                "http://127.0.0.1:8080/shop",
                &[]
            ),
            Origin
        );
    }

    #[test]
    fn refusals_name_both_addresses_and_the_way_to_trust() {
        let said = check("http://127.0.0.1:9/apps/", "http://127.0.0.1:8080", &[])
            .unwrap_err()
            .to_string();
        assert!(said.contains("http://127.0.0.1:9/apps"), "{said}");
        assert!(said.contains("http://127.0.0.1:8080"), "{said}");
        assert!(
            said.contains("`tollgate-helper trust add http://127.0.0.1:9/apps`"),
            "{said}"
        );
        let said = check("file:///srv/repo", "http://127.0.0.1:8080", &[])
            .unwrap_err()
            .to_string();
        assert!(said.contains("http://127.0.0.1:8080"), "{said}");
        let said = check(
            "https://alice:hunter2@x.example/",
            "http://127.0.0.1:8080",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(!said.contains("hunter2"), "{said}");
        assert_eq!(
            check(
                "http://127.0.0.1:8080/",
                "http://127.0.0.1:8080",
                &["http://x.example".to_owned()]
            ),
            Ok(Standing::Origin)
        );
    }
}
