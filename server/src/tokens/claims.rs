//! What tokens say, and what they grant.
//!
//! Native tokens name exact refs and repositories. flat-manager tokens name app id prefixes
//! (matched on a `.` boundary) and exact app ids, and repositories (`""` meaning any), as
//! flat-manager itself reads them, with one deliberate difference: a flat-manager token that
//! names no prefix and no app grants nothing (flat-manager lets it open every app), and neither
//! does the empty prefix.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::keys::SigningKey;
use crate::refpattern::RefPattern;

/// The claims of a token tollgate signs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NativeClaims {
    pub iss: String,
    /// Who the token was issued to, e.g. `license:<id>` or `operator`.
    pub sub: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: String,
    pub scope: Vec<String>,
    /// Repository names; the repository served at `/` is named `""`.
    pub repos: Vec<String>,
    /// Exact ref names.
    pub refs: Vec<String>,
}

/// The claims of a flat-manager token, as far as downloads are concerned.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct FlatManagerClaims {
    pub sub: String,
    pub exp: i64,
    #[serde(default)]
    pub scope: Vec<String>,
    #[serde(default)]
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub apps: Vec<String>,
    #[serde(default)]
    pub repos: Vec<String>,
    /// When given, the branches the token is limited to.
    #[serde(default)]
    pub branches: Vec<String>,
    #[serde(default)]
    pub jti: Option<String>,
}

/// What a verified token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub subject: String,
    pub token_id: Option<String>,
    /// Seconds since the epoch.
    pub expires: u64,
    scope: Scope,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    Refs {
        repos: Vec<String>,
        refs: Vec<String>,
    },
    FlatManager {
        repos: Vec<String>,
        prefixes: Vec<String>,
        apps: Vec<String>,
        branches: Vec<String>,
    },
    /// What an HTTP Basic credential opens: the ref patterns of its active products in one
    /// repository, as they were when the credential was checked.
    Patterns {
        repo: String,
        patterns: Vec<RefPattern>,
    },
}

impl Grant {
    pub(crate) fn from_native(claims: NativeClaims) -> Grant {
        let NativeClaims {
            sub,
            exp,
            jti,
            mut repos,
            mut refs,
            ..
        } = claims;
        repos.sort();
        refs.sort();
        Grant {
            subject: sub,
            token_id: Some(jti),
            expires: exp,
            scope: Scope::Refs { repos, refs },
        }
    }

    pub(crate) fn from_flat_manager(claims: FlatManagerClaims) -> Grant {
        let FlatManagerClaims {
            sub,
            exp,
            jti,
            repos,
            prefixes,
            apps,
            branches,
            ..
        } = claims;
        Grant {
            subject: sub,
            token_id: jti,
            expires: u64::try_from(exp).unwrap_or(0),
            scope: Scope::FlatManager {
                repos,
                prefixes,
                apps,
                branches,
            },
        }
    }

    /// What a credential checked by the entitlement service opens: `patterns` (those of its
    /// active products) in `repo`, until `expires`.
    pub(crate) fn from_products(
        subject: String,
        repo: String,
        patterns: Vec<RefPattern>,
        expires: u64,
    ) -> Grant {
        Grant {
            subject,
            token_id: None,
            expires,
            scope: Scope::Patterns { repo, patterns },
        }
    }

    /// Whether the token grants names anything at all.
    pub(crate) fn names_anything(&self) -> bool {
        match &self.scope {
            Scope::Refs { repos, refs } => !repos.is_empty() && !refs.is_empty(),
            Scope::FlatManager {
                repos,
                prefixes,
                apps,
                ..
            } => !repos.is_empty() && (prefixes.iter().any(|p| !p.is_empty()) || !apps.is_empty()),
            Scope::Patterns { patterns, .. } => !patterns.is_empty(),
        }
    }

    /// Whether the token opens `ref_name` in the repository named `repo`.
    pub(crate) fn covers(&self, repo: &str, ref_name: &str) -> bool {
        match &self.scope {
            Scope::Refs { repos, refs } => {
                repos.binary_search_by(|r| r.as_str().cmp(repo)).is_ok()
                    && refs.binary_search_by(|r| r.as_str().cmp(ref_name)).is_ok()
            }
            Scope::FlatManager {
                repos,
                prefixes,
                apps,
                branches,
            } => {
                let Some((id, branch)) = flatpak_id_and_branch(ref_name) else {
                    return false;
                };
                repos.iter().any(|r| r.is_empty() || r == repo)
                    && (branches.is_empty() || branches.iter().any(|b| b == branch))
                    && (apps.iter().any(|a| a == id)
                        || prefixes.iter().any(|p| id_matches_prefix(id, p)))
            }
            Scope::Patterns {
                repo: own,
                patterns,
            } => own == repo && patterns.iter().any(|p| p.matches(ref_name)),
        }
    }
}

/// The application or runtime id and the branch of a Flatpak ref (`app/ID/ARCH/BRANCH`,
/// `runtime/ID/ARCH/BRANCH`).
fn flatpak_id_and_branch(ref_name: &str) -> Option<(&str, &str)> {
    let mut parts = ref_name.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("app" | "runtime"), Some(id), Some(_arch), Some(branch), None)
            if !id.is_empty() && !branch.is_empty() =>
        {
            Some((id, branch))
        }
        _ => None,
    }
}

/// `org.foo` covers `org.foo` and `org.foo.Bar`, not `org.foobar`; the empty prefix covers
/// nothing here (in flat-manager it covers everything).
fn id_matches_prefix(id: &str, prefix: &str) -> bool {
    !prefix.is_empty()
        && id
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// A token just signed, with its id.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub token: String,
    pub jti: String,
}

/// Signs a native download token for `refs` in `repos`, valid for `ttl_secs` from now.
pub(crate) fn issue(
    key: &SigningKey,
    subject: &str,
    repos: &[String],
    refs: &[String],
    ttl_secs: u64,
) -> anyhow::Result<Issued> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti).map_err(|_| anyhow::anyhow!("no randomness for a token id"))?;
    let claims = NativeClaims {
        iss: "tollgate".to_owned(),
        sub: subject.to_owned(),
        iat: now,
        nbf: now,
        exp: now + ttl_secs,
        jti: hex::encode(jti),
        scope: vec!["download".to_owned()],
        repos: repos.to_vec(),
        refs: refs.to_vec(),
    };
    let token = key.sign_jwt(&claims)?;
    Ok(Issued {
        token,
        jti: claims.jti,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat_manager(repos: &[&str], prefixes: &[&str], apps: &[&str]) -> Grant {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Grant::from_flat_manager(FlatManagerClaims {
            sub: "download".into(),
            exp: 0,
            scope: vec!["download".into()],
            prefixes: list(prefixes),
            apps: list(apps),
            repos: list(repos),
            branches: Vec::new(),
            jti: None,
        })
    }

    #[test]
    fn flat_manager_matching() {
        let app = "app/org.foo.Bar/x86_64/stable";
        let cases = [
            (
                flat_manager(&["stable"], &["org.foo"], &[]),
                "stable",
                app,
                true,
            ),
            (
                flat_manager(&["stable"], &["org.foo.Bar"], &[]),
                "stable",
                app,
                true,
            ),
            (
                flat_manager(&["stable"], &["org.foo.Ba"], &[]),
                "stable",
                app,
                false,
            ),
            (
                flat_manager(&["stable"], &["org.fo"], &[]),
                "stable",
                app,
                false,
            ),
            (
                flat_manager(&["stable"], &[], &["org.foo.Bar"]),
                "stable",
                app,
                true,
            ),
            (
                flat_manager(&["stable"], &[], &["org.foo"]),
                "stable",
                app,
                false,
            ),
            (
                flat_manager(&["stable"], &["org.foo.Bar"], &[]),
                "stable",
                "runtime/org.foo.Bar.Locale/x86_64/stable",
                true,
            ),
            (
                flat_manager(&["stable"], &["org.foo"], &[]),
                "beta",
                app,
                false,
            ),
            (flat_manager(&[""], &["org.foo"], &[]), "beta", app, true),
            (
                flat_manager(&["stable"], &["org.foo"], &[]),
                "stable",
                "appstream2/x86_64",
                false,
            ),
            // The holes flat-manager leaves open stay closed here.
            (flat_manager(&["stable"], &[], &[]), "stable", app, false),
            (flat_manager(&["stable"], &[""], &[]), "stable", app, false),
            (flat_manager(&[], &["org.foo"], &[]), "stable", app, false),
        ];
        for (grant, repo, ref_name, expected) in cases {
            assert_eq!(
                grant.covers(repo, ref_name),
                expected,
                "{grant:?} {repo} {ref_name}"
            );
        }
        let mut beta_only = flat_manager(&["stable"], &["org.foo"], &[]);
        if let Scope::FlatManager { branches, .. } = &mut beta_only.scope {
            branches.push("beta".to_owned());
        }
        assert!(beta_only.covers("stable", "app/org.foo.Bar/x86_64/beta"));
        assert!(
            !beta_only.covers("stable", app),
            "a branches claim limits the token"
        );
        assert!(!flat_manager(&["stable"], &["org.foo"], &[]).covers("stable", "app/org.foo"));
        assert!(!flat_manager(&["stable"], &[], &[]).names_anything());
        assert!(!flat_manager(&["stable"], &[""], &[]).names_anything());
        assert!(flat_manager(&["stable"], &[], &["org.x"]).names_anything());
    }

    #[test]
    fn native_matching() {
        let grant = Grant::from_native(NativeClaims {
            iss: "tollgate".into(),
            sub: "operator".into(),
            iat: 0,
            nbf: 0,
            exp: 0,
            jti: "j".into(),
            scope: vec!["download".into()],
            repos: vec!["".into(), "apps".into()],
            refs: vec!["app/a/x86_64/stable".into(), "app/b/x86_64/stable".into()],
        });
        assert!(grant.covers("", "app/a/x86_64/stable"));
        assert!(grant.covers("apps", "app/b/x86_64/stable"));
        assert!(!grant.covers("os", "app/a/x86_64/stable"));
        assert!(!grant.covers("", "app/a/x86_64/beta"));
        assert!(!grant.covers("", "app/a"));
        assert!(grant.names_anything());
    }
}
