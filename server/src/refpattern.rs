//! Ref patterns such as `app/com.example.Pro/*` or `runtime/com.example.Sdk*`: `*` matches any
//! run of characters (`/` included, so a pattern can cover every arch and branch), `?` matches
//! one character, and everything else matches itself.

use std::fmt;

use serde::Deserialize;

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct RefPattern(String);

impl RefPattern {
    pub(crate) fn new(pattern: &str) -> Result<RefPattern, String> {
        if pattern.is_empty() || pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{pattern:?} is not a ref pattern"));
        }
        Ok(RefPattern(pattern.to_owned()))
    }

    pub(crate) fn matches(&self, name: &str) -> bool {
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

impl TryFrom<String> for RefPattern {
    type Error = String;

    fn try_from(s: String) -> Result<RefPattern, String> {
        RefPattern::new(&s)
    }
}

impl fmt::Debug for RefPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for RefPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Iterative wildcard matching with one backtrack point: linear in practice, never exponential.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let cases = [
            (
                "app/com.example.Pro/*",
                "app/com.example.Pro/x86_64/stable",
                true,
            ),
            ("app/com.example.Pro/*", "app/com.example.Pro", false),
            (
                "app/com.example.Pro/*",
                "app/com.example.ProMax/x86_64/stable",
                false,
            ),
            (
                "runtime/com.example.Sdk*",
                "runtime/com.example.Sdk/x86_64/1",
                true,
            ),
            (
                "runtime/com.example.Sdk*",
                "runtime/com.example.Sdk.Debug/x86_64/1",
                true,
            ),
            ("runtime/com.example.Sdk*", "runtime/com.example.Sd", false),
            ("os/*/stable", "os/x86_64/stable", true),
            ("os/*/stable", "os/x86_64/beta", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*", "anything/at/all", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            (
                "*a*a*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(
                RefPattern::new(pattern).unwrap().matches(name),
                expected,
                "{pattern} {name}"
            );
        }
        assert!(RefPattern::new("").is_err());
        assert!(RefPattern::new("a b").is_err());
    }
}
