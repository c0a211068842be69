//! The safe Rust side of what crosses the ABI: requests, credentials, capabilities and errors.
//! Providers written in Rust and the host both work with these, never with raw pointers.

use std::fmt;

use zeroize::Zeroizing;

use crate::abi;

/// A secret (a license key, a password, a token): its `Debug` shows nothing, and its memory is
/// wiped when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(Zeroizing::new(secret.into()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// A credential for an entitlement service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    LicenseKey(Secret),
    Password { user: String, password: Secret },
    Token(Secret),
}

impl Credential {
    pub fn kind(&self) -> Kind {
        match self {
            Credential::LicenseKey(_) => Kind::LicenseKey,
            Credential::Password { .. } => Kind::Password,
            Credential::Token(_) => Kind::Token,
        }
    }

    pub fn secret(&self) -> &Secret {
        match self {
            Credential::LicenseKey(s) | Credential::Token(s) => s,
            Credential::Password { password, .. } => password,
        }
    }

    pub fn user(&self) -> Option<&str> {
        match self {
            Credential::Password { user, .. } => Some(user),
            _ => None,
        }
    }
}

/// The kind of a credential, with the names the Secret Service items and the file provider use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    LicenseKey,
    Password,
    Token,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::LicenseKey, Kind::Password, Kind::Token];

    pub fn name(self) -> &'static str {
        match self {
            Kind::LicenseKey => "license-key",
            Kind::Password => "password",
            Kind::Token => "token",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn code(self) -> u32 {
        match self {
            Kind::LicenseKey => abi::kind::LICENSE_KEY,
            Kind::Password => abi::kind::PASSWORD,
            Kind::Token => abi::kind::TOKEN,
        }
    }

    pub fn from_code(code: u32) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.code() == code)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the host asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The entitlement service's URL, normalised (see [`crate::url::normalise`]).
    pub url: String,
    /// Whether the provider may ask the user (to unlock a keyring, say).
    pub interactive: bool,
}

/// What a provider can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    pub lookup: bool,
    pub store: bool,
    pub erase: bool,
}

impl Capabilities {
    pub fn bits(self) -> u32 {
        (u32::from(self.lookup) * abi::capability::LOOKUP)
            | (u32::from(self.store) * abi::capability::STORE)
            | (u32::from(self.erase) * abi::capability::ERASE)
    }

    pub fn from_bits(bits: u32) -> Capabilities {
        Capabilities {
            lookup: bits & abi::capability::LOOKUP != 0,
            store: bits & abi::capability::STORE != 0,
            erase: bits & abi::capability::ERASE != 0,
        }
    }

    /// `lookup`, `store`, `erase`: the names of what it can do.
    pub fn names(self) -> Vec<&'static str> {
        [
            (self.lookup, "lookup"),
            (self.store, "store"),
            (self.erase, "erase"),
        ]
        .into_iter()
        .filter_map(|(has, name)| has.then_some(name))
        .collect()
    }
}

/// Why a provider gave no credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// It has no credential for the URL: the host asks the next provider.
    NotFound,
    /// It does not handle this URL at all.
    UrlNotSupported,
    /// It cannot do this (store, say).
    OperationNotSupported,
    /// Its store is locked, and it may not ask the user now.
    Locked,
    Other,
}

impl ErrorKind {
    pub fn code(self) -> i32 {
        match self {
            ErrorKind::NotFound => abi::status::NOT_FOUND,
            ErrorKind::UrlNotSupported => abi::status::URL_NOT_SUPPORTED,
            ErrorKind::OperationNotSupported => abi::status::OPERATION_NOT_SUPPORTED,
            ErrorKind::Locked => abi::status::LOCKED,
            ErrorKind::Other => abi::status::OTHER,
        }
    }

    /// The kind for a status code; an unknown non-zero code is `Other`.
    pub fn from_code(code: i32) -> ErrorKind {
        match code {
            abi::status::NOT_FOUND => ErrorKind::NotFound,
            abi::status::URL_NOT_SUPPORTED => ErrorKind::UrlNotSupported,
            abi::status::OPERATION_NOT_SUPPORTED => ErrorKind::OperationNotSupported,
            abi::status::LOCKED => ErrorKind::Locked,
            _ => ErrorKind::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not-found",
            ErrorKind::UrlNotSupported => "url-not-supported",
            ErrorKind::OperationNotSupported => "operation-not-supported",
            ErrorKind::Locked => "locked",
            ErrorKind::Other => "other",
        }
    }
}

/// A provider's error: its kind, and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.name())]
pub struct ProviderError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ProviderError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ProviderError {
        ProviderError {
            kind,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> ProviderError {
        ProviderError::new(ErrorKind::NotFound, message)
    }

    pub fn other(message: impl Into<String>) -> ProviderError {
        ProviderError::new(ErrorKind::Other, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_code(kind.code()), Some(kind));
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(Kind::from_code(99), None);
        for e in [
            ErrorKind::NotFound,
            ErrorKind::UrlNotSupported,
            ErrorKind::OperationNotSupported,
            ErrorKind::Locked,
            ErrorKind::Other,
        ] {
            assert_eq!(ErrorKind::from_code(e.code()), e);
        }
        assert_eq!(ErrorKind::from_code(77), ErrorKind::Other);
        let all = Capabilities {
            lookup: true,
            store: false,
            erase: true,
        };
        assert_eq!(Capabilities::from_bits(all.bits()), all);
        assert_eq!(all.names(), ["lookup", "erase"]);
    }

    #[test]
    fn secrets_do_not_show() {
        let c = Credential::Password {
            user: "alice".into(),
            password: Secret::new("hunter2hunter2"),
        };
        let shown = format!("{c:?}");
        assert!(
            shown.contains("alice") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
