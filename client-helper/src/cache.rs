//! The token cache: tokens the entitlement service issued, per service URL, repository and ref,
//! kept until shortly before they expire, so that an update right after an install asks the
//! server nothing.
//!
//! It is `$XDG_CACHE_HOME/tollgate/tokens.json` (`~/.cache/tollgate/tokens.json`), mode 0600 in
//! a 0700 folder, since tokens are secrets for as long as they live. Every change rewrites it
//! through a temporary file under a lock (`flock` on `tokens.json.lock`), so the authenticator
//! and the command line can use it at once. A file that cannot be read as a cache is started
//! afresh: it only ever holds what can be asked for again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::cache_home;
use crate::files::{Mode, rewrite_locked};
use crate::service::Issued;

/// One cached token for one ref.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub url: String,
    pub repo: String,
    #[serde(rename = "ref")]
    pub ref_: String,
    /// `""` for a ref that needs no token.
    pub token: String,
    pub issued_at: u64,
    pub expires_at: u64,
}

impl Entry {
    /// Whether it is still good to hand out at `now`: not within the last quarter of its life
    /// (at most the last minute), so it does not expire during the download it is for.
    pub(crate) fn usable_at(&self, now: u64) -> bool {
        let margin = ((self.expires_at.saturating_sub(self.issued_at)) / 4).min(60);
        now + margin < self.expires_at
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    tokens: Vec<Entry>,
}

/// Seconds since the epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The cache file.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    path: PathBuf,
}

impl Cache {
    /// The cache in the user's cache folder; `None` without HOME or XDG_CACHE_HOME.
    pub(crate) fn default_location() -> Option<Cache> {
        cache_home().map(|c| Cache::at(c.join("tollgate/tokens.json")))
    }

    pub(crate) fn at(path: PathBuf) -> Cache {
        Cache { path }
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn read(&self) -> File {
        std::fs::read(&self.path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Runs `change` on the file's contents under the lock and writes the result.
    fn update(&self, change: impl FnOnce(&mut File)) -> std::io::Result<()> {
        rewrite_locked(&self.path, Mode::Exactly(0o600), || {
            let mut file = self.read();
            change(&mut file);
            serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)
        })
    }

    /// The usable tokens for `refs` of `repo` at `url`: ref → token.
    pub(crate) fn get(
        &self,
        url: &str,
        repo: &str,
        refs: &[String],
        now: u64,
    ) -> BTreeMap<String, String> {
        self.read()
            .tokens
            .into_iter()
            .filter(|e| {
                e.url == url && e.repo == repo && refs.contains(&e.ref_) && e.usable_at(now)
            })
            .map(|e| (e.ref_, e.token))
            .collect()
    }

    /// Keeps what the service issued at `now`, replacing older entries for the same refs and
    /// dropping expired ones.
    pub(crate) fn put(
        &self,
        url: &str,
        repo: &str,
        issued: &Issued,
        now: u64,
    ) -> std::io::Result<()> {
        let fresh: Vec<Entry> = issued
            .tokens
            .iter()
            .flat_map(|(token, refs)| {
                refs.iter().map(move |r| Entry {
                    url: url.to_owned(),
                    repo: repo.to_owned(),
                    ref_: r.clone(),
                    token: token.clone(),
                    issued_at: now,
                    expires_at: now + issued.expires_in,
                })
            })
            .collect();
        self.update(|file| {
            file.tokens.retain(|e| {
                e.expires_at > now
                    && !fresh
                        .iter()
                        .any(|f| f.url == e.url && f.repo == e.repo && f.ref_ == e.ref_)
            });
            file.tokens.extend(fresh);
        })
    }

    /// Forgets every token of `url`, e.g. after a logout.
    pub(crate) fn forget(&self, url: &str) -> std::io::Result<()> {
        if !self.path.exists() {
            return Ok(());
        }
        self.update(|file| file.tokens.retain(|e| e.url != url))
    }

    /// Every entry not yet expired at `now`.
    pub(crate) fn entries(&self, now: u64) -> Vec<Entry> {
        let mut entries: Vec<Entry> = self
            .read()
            .tokens
            .into_iter()
            .filter(|e| e.expires_at > now)
            .collect();
        entries.sort_by(|a, b| (&a.url, &a.repo, &a.ref_).cmp(&(&b.url, &b.repo, &b.ref_)));
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(pairs: &[(&str, &[&str])], expires_in: u64) -> Issued {
        Issued {
            tokens: pairs
                .iter()
                .map(|(t, refs)| (t.to_string(), refs.iter().map(|r| r.to_string()).collect()))
                .collect(),
            denied: BTreeMap::new(),
            for_sale: BTreeMap::new(),
            expires_in,
        }
    }

    #[test]
    fn tokens_are_kept_per_url_repo_and_ref_until_near_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path().join("sub/tokens.json"));
        let refs = vec!["app/a".to_owned(), "runtime/r".to_owned()];
        cache
            .put(
                "https://s",
                "",
                &issued(&[("T1", &["app/a"]), ("", &["runtime/r"])], 600),
                1000,
            )
            .unwrap();
        let got = cache.get("https://s", "", &refs, 1000);
        assert_eq!(got.get("app/a").map(String::as_str), Some("T1"));
        assert_eq!(got.get("runtime/r").map(String::as_str), Some(""));
        assert!(cache.get("https://s", "other", &refs, 1000).is_empty());
        assert!(cache.get("https://t", "", &refs, 1000).is_empty());
        // Usable until the last minute of its life.
        assert_eq!(cache.get("https://s", "", &refs, 1539).len(), 2);
        assert!(cache.get("https://s", "", &refs, 1540).is_empty());
        // A new token for a ref replaces the old.
        cache
            .put("https://s", "", &issued(&[("T2", &["app/a"])], 600), 1100)
            .unwrap();
        let got = cache.get("https://s", "", &refs, 1100);
        assert_eq!(got.get("app/a").map(String::as_str), Some("T2"));
        assert_eq!(cache.entries(1100).len(), 2);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cache.path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        cache.forget("https://s").unwrap();
        assert!(cache.entries(1100).is_empty());
        // A damaged file is started afresh.
        std::fs::write(cache.path(), b"{not json").unwrap();
        assert!(cache.entries(1100).is_empty());
        cache
            .put("https://s", "", &issued(&[("T3", &["app/a"])], 60), 2000)
            .unwrap();
        assert_eq!(cache.entries(2000).len(), 1);
        // A short-lived token keeps a quarter of its life as margin.
        assert_eq!(cache.get("https://s", "", &refs, 2044).len(), 1);
        assert!(cache.get("https://s", "", &refs, 2045).is_empty());
    }
}
