//! Credentials are keyed by the entitlement service's URL, normalised, because remote names
//! differ between machines and URLs do not: `scheme://host[:port]/path`, scheme and host in
//! lower case, no default port, no trailing slash, no user, query or fragment.

/// Why a URL cannot key a credential. The messages never repeat the text given: a mistyped URL
/// may be a pasted secret, and a URL's user, password or query may hold one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error(
        "not a URL ({0}): give the entitlement service's address, e.g. https://apps.example.com"
    )]
    Invalid(String),
    #[error("{0}: is not http: or https:; give the entitlement service's web address")]
    Scheme(String),
    #[error("the URL of {0} carries a user name or password; give the credential separately")]
    Userinfo(String),
    #[error("the URL of {0} has a query or a fragment; give the service's base URL")]
    Extra(String),
}

/// The normalised form of `text`.
pub fn normalise(text: &str) -> Result<String, UrlError> {
    let url = url::Url::parse(text.trim()).map_err(|e| UrlError::Invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Scheme(url.scheme().to_owned()));
    }
    let host = url
        .host_str()
        .ok_or_else(|| UrlError::Invalid("no host".to_owned()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Userinfo(host.to_owned()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(UrlError::Extra(host.to_owned()));
    }
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let path = url.path().trim_end_matches('/');
    Ok(format!("{}://{host}{port}{path}", url.scheme()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_normalise() {
        for (given, expected) in [
            ("https://Apps.Example.COM/", "https://apps.example.com"),
            ("https://apps.example.com", "https://apps.example.com"),
            (
                "https://apps.example.com:443/repo/",
                "https://apps.example.com/repo",
            ),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
            ("http://[::1]:8080/a//", "http://[::1]:8080/a"),
            ("  HTTPS://x.example/a%20b/ ", "https://x.example/a%20b"),
        ] {
            assert_eq!(normalise(given).as_deref(), Ok(expected), "{given}");
        }
        let said = normalise("https://alice:hunter2@x.example/?token=abc").unwrap_err();
        assert!(!said.to_string().contains("hunter2"), "{said}");
        let said = normalise("https://x.example/?token=abc").unwrap_err();
        assert!(!said.to_string().contains("abc"), "{said}");
        let said = normalise("tg_abcdefghij_secret").unwrap_err();
        assert!(!said.to_string().contains("secret"), "{said}");
        for bad in [
            "",
            "apps.example.com",
            "ftp://x.example/",
            "https://user:pw@x.example/",
            "https://x.example/?a=1",
            "https://x.example/#f",
            "file:///etc/passwd",
        ] {
            assert!(normalise(bad).is_err(), "{bad}");
        }
    }
}
