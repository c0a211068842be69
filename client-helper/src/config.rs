//! The helper's configuration, `$XDG_CONFIG_HOME/tollgate/helper.toml`
//! (`~/.config/tollgate/helper.toml`), or without one the first `tollgate/helper.toml` of
//! `$XDG_CONFIG_DIRS` (default `/etc/xdg`); every setting is optional:
//!
//! ```toml
//! providers = ["secret-service", "file"]   # asked first, in this order; others found after
//! provider-timeout = 10                    # seconds a provider may take to answer (1 to 300)
//! trusted-mirrors = ["https://mirror.example.com"]   # P2P: mirrors trusted with tokens
//! ```
//!
//! `tollgate-helper trust add|remove URL` edit `trusted-mirrors`, keeping the rest of the file.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::files::{Mode, rewrite_locked};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct Config {
    /// Provider names, in the order to ask them.
    #[serde(default)]
    pub providers: Vec<String>,
    /// Seconds a provider call may take.
    #[serde(default = "default_timeout")]
    pub provider_timeout: u64,
    /// Mirrors that may see the tokens of any origin whose refs they serve (normalised URLs).
    #[serde(default)]
    pub trusted_mirrors: Vec<String>,
}

fn default_timeout() -> u64 {
    10
}

impl Default for Config {
    fn default() -> Config {
        Config {
            providers: Vec::new(),
            provider_timeout: default_timeout(),
            trusted_mirrors: Vec::new(),
        }
    }
}

/// An XDG base directory: `$var` when it is absolute, else `~/under_home`.
fn xdg_dir(var: &str, under_home: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(under_home)))
}

/// `$XDG_CONFIG_HOME`, else `~/.config`.
pub(crate) fn config_home() -> Option<PathBuf> {
    xdg_dir("XDG_CONFIG_HOME", ".config")
}

/// `$XDG_CACHE_HOME`, else `~/.cache`.
pub(crate) fn cache_home() -> Option<PathBuf> {
    xdg_dir("XDG_CACHE_HOME", ".cache")
}

/// `$XDG_STATE_HOME`, else `~/.local/state`.
pub(crate) fn state_home() -> Option<PathBuf> {
    xdg_dir("XDG_STATE_HOME", ".local/state")
}

/// `$XDG_DATA_HOME`, else `~/.local/share`.
pub(crate) fn data_home() -> Option<PathBuf> {
    xdg_dir("XDG_DATA_HOME", ".local/share")
}

/// Where the user's configuration file is (the one `trust` edits).
pub(crate) fn config_path() -> Option<PathBuf> {
    config_home().map(|c| c.join("tollgate/helper.toml"))
}

/// The configuration file that is read: the user's when there is one, else the first
/// `tollgate/helper.toml` in `$XDG_CONFIG_DIRS` (default `/etc/xdg`), as the XDG base directory
/// rules have it; a system's or an app's defaults go there (the Flatpak app of the
/// authenticator has one in `/app/etc/xdg`). The files are not merged: a user's file replaces
/// them whole.
pub(crate) fn config_to_read() -> Option<PathBuf> {
    let user = config_path();
    if user.as_deref().is_some_and(Path::exists) {
        return user;
    }
    let dirs = std::env::var_os("XDG_CONFIG_DIRS")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/etc/xdg".into());
    std::env::split_paths(&dirs)
        .filter(|d| d.is_absolute())
        .map(|d| d.join("tollgate/helper.toml"))
        .find(|p| p.exists())
        .or(user)
}

impl Config {
    /// The configuration in effect: the file [`config_to_read`] names, or the defaults.
    pub(crate) fn read() -> anyhow::Result<Config> {
        Config::load(config_to_read().as_deref())
    }

    /// The configuration at `path`; the defaults when there is no file there.
    pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading the configuration {}", path.display()));
            }
        };
        Config::parse(&text, path)
    }

    /// The configuration in `text`, read from `path` (named in errors).
    fn parse(text: &str, path: &Path) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text)
            .with_context(|| format!("in the configuration {}", path.display()))?;
        if !(1..=300).contains(&config.provider_timeout) {
            bail!(
                "in the configuration {}: provider-timeout = {} is out of range (1 to 300 seconds)",
                path.display(),
                config.provider_timeout
            );
        }
        Ok(config)
    }
}

/// Rewrites `trusted-mirrors` in the configuration at `path` with `change`, keeping everything
/// else in the file as it was (comments included); creates the file if there is none. Returns
/// the new list.
pub(crate) fn edit_trusted(
    path: &Path,
    change: impl FnOnce(&mut Vec<String>),
) -> anyhow::Result<Vec<String>> {
    let mut list = Vec::new();
    rewrite_locked(path, Mode::KeepOr(0o644), || -> anyhow::Result<Vec<u8>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading the configuration {}", path.display()));
            }
        };
        // Check the whole file first, so that a broken one is reported, not rewritten.
        list = Config::parse(&text, path)?.trusted_mirrors;
        let mut doc: toml_edit::DocumentMut = text
            .parse()
            .with_context(|| format!("in the configuration {}", path.display()))?;
        change(&mut list);
        let mut array = toml_edit::Array::new();
        for url in &list {
            array.push(url.as_str());
        }
        doc["trusted-mirrors"] = toml_edit::value(array);
        Ok(doc.to_string().into_bytes())
    })
    .with_context(|| format!("updating the configuration {}", path.display()))?;
    Ok(list)
}
