//! Ref names and collection IDs, validated before they are ever joined into a path.
//!
//! The rules are OSTree's, narrowed where narrowing costs nothing real: a ref is one or more
//! `/`-separated fragments of ASCII letters, digits, `-`, `.` and `_`, and here no fragment may
//! start with `.`, so that no ref name can be `..` or a dotfile.

use std::fmt;

/// A valid ref name such as `app/org.example.App/x86_64/stable`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefName(String);

/// A valid collection ID, a reverse-DNS name such as `org.example.Repo`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CollectionId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "{0:?} is not a valid ref name (fragments of letters, digits, '-', '.', '_' separated by '/')"
    )]
    Ref(String),
    #[error("{0:?} is not a valid collection ID (a reverse-DNS name such as org.example.Repo)")]
    CollectionId(String),
}

/// The longest ref name accepted; OSTree itself has no limit, but file names do.
const MAX_REF_LEN: usize = 1024;

impl RefName {
    pub fn new(name: &str) -> Result<RefName, NameError> {
        let fragment_ok = |f: &str| {
            !f.is_empty()
                && !f.starts_with('.')
                && f.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        };
        if name.len() <= MAX_REF_LEN && name.split('/').all(fragment_ok) {
            Ok(RefName(name.to_owned()))
        } else {
            Err(NameError::Ref(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl CollectionId {
    pub fn new(id: &str) -> Result<CollectionId, NameError> {
        let element_ok = |e: &str| {
            e.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        if id.len() <= 255 && id.split('.').count() >= 2 && id.split('.').all(element_ok) {
            Ok(CollectionId(id.to_owned()))
        } else {
            Err(NameError::CollectionId(id.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for CollectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names() {
        let check = |name: &str, ok: bool| assert_eq!(RefName::new(name).is_ok(), ok, "{name:?}");
        check("app/org.example.App/x86_64/stable", true);
        check("runtime/org.example.Platform/x86_64/23.08", true);
        check("appstream2/x86_64", true);
        check("exampleos/x86_64-standard_1", true);
        for bad in [
            "",
            "/",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            "a/.hidden",
            ".lock",
            "a b",
            "a\0b",
            "a\\b",
            "a%2e",
            "é",
            "a:b",
        ] {
            check(bad, false);
        }
        check(&"a".repeat(MAX_REF_LEN + 1), false);
    }

    #[test]
    fn collection_ids() {
        let check = |id: &str, ok: bool| assert_eq!(CollectionId::new(id).is_ok(), ok, "{id:?}");
        check("org.example.Repo", true);
        check("org.flathub.Stable", true);
        check("_a.b_2", true);
        for bad in [
            "",
            "org",
            "org.",
            ".org.x",
            "org..x",
            "org.2x",
            "org.ex-ample",
            "org/x",
        ] {
            check(bad, false);
        }
    }
}
