//! The configuration file (`--config FILE`, TOML): which refs are gated by name, and which
//! keys and secrets tokens may be signed with besides the data directory's own.
//!
//! ```toml
//! # Refs gated even though their commits carry no xa.token-type (see the README for why
//! # flatpak clients still need xa.token-type).
//! gated-refs = ["app/com.example.Pro/*", "os/private/*"]
//! # Where clients reach the server, for the .flatpakrepo files (default: http://HOST/).
//! public-url = "https://apps.example.com/"
//! # Reverse proxies whose X-Forwarded-For (or, with forwarded-header = "forwarded", RFC 7239
//! # Forwarded) names the client; connections from them skip max-connections-per-address.
//! trusted-proxies = ["127.0.0.1", "10.0.0.0/8"]
//!
//! [tokens]
//! trusted-keys = ["/etc/tollgate/issuer-2.pem"]   # Ed25519 public keys, PEM
//! jwks-file = "/etc/tollgate/jwks.json"           # a JSON Web Key Set of Ed25519 keys
//! flat-manager-secret-file = "/etc/tollgate/flat-manager-secret"  # base64, as in its config.json
//!
//! [metrics]
//! token-file = "/etc/tollgate/metrics-token"   # a bearer token for /metrics (else loopback only)
//!
//! # For repositories in object storage (--repo s3://bucket/prefix); each key falls back to the
//! # usual AWS_* environment variable.
//! [storage]
//! endpoint = "https://s3.eu-central-1.example.com"   # an S3-compatible store (default: AWS)
//! region = "eu-central-1"
//! access-key-id = "AKIA..."
//! secret-access-key-file = "/etc/tollgate/s3-secret"  # mode 0600
//! redirect = true            # answer object downloads with 302 to a presigned URL
//! redirect-ttl = 300         # seconds a presigned URL is valid (1 to 900)
//! public-objects-url = "https://cdn.example.com/"   # public objects redirect here instead:
//!                            # a CDN whose origin is a tollgate in streaming mode
//! ```
//!
//! Relative paths are relative to the configuration file's folder. Unknown keys are an error,
//! so a misspelt setting never silently does nothing.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::clients::{ForwardedHeader, Proxies, ProxyNet};
use crate::refpattern::RefPattern;
use crate::secrets::Secret;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct Config {
    /// Ref patterns (`*` any run of characters, `?` one) whose refs are gated.
    #[serde(default)]
    pub gated_refs: Vec<RefPattern>,
    #[serde(default)]
    pub tokens: TokenConfig,
    #[serde(default)]
    pub entitlements: EntitlementConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub web: WebConfig,
    #[serde(default)]
    pub hooks: HooksConfig,
    /// The address clients reach this server at, when it is not `http://` and the request's
    /// `Host` (behind a TLS proxy, say): written into the `.flatpakrepo` files served.
    pub public_url: Option<String>,
    /// Reverse proxies (addresses or CIDR networks) whose forwarding header says who the
    /// client is, for the limiter, the access log and the audit; their connections are not
    /// held to `max-connections-per-address` (the proxy limits its clients).
    #[serde(default)]
    pub trusted_proxies: Vec<ProxyNet>,
    /// Which header those proxies set: `x-forwarded-for` (the default) or `forwarded`.
    #[serde(default)]
    pub forwarded_header: ForwardedHeader,
}

/// Whether `url` is an http or https address without user, query or fragment: one that can be
/// handed to clients as a server's address.
pub(crate) fn is_http_address(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split(['/', ':']).next().unwrap_or_default();
    !host.is_empty() && !url.contains(|c: char| c.is_whitespace() || matches!(c, '@' | '?' | '#'))
}

/// Who may read `/metrics`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct MetricsConfig {
    /// A file holding a bearer token that scrapes must present (mode 0600); without one,
    /// `/metrics` answers loopback clients only.
    pub token_file: Option<PathBuf>,
}

/// The customers' web pages (`/account/`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct WebConfig {
    /// Whether anyone may make an account in the pages (`/account/create`); off, accounts
    /// are the vendor's to make.
    #[serde(default)]
    pub sign_up: bool,
    /// Seconds a browser stays signed in (1 to 2592000, 30 days).
    #[serde(default = "default_session_ttl")]
    pub session_ttl: i64,
}

fn default_session_ttl() -> i64 {
    12 * 3600
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            sign_up: false,
            session_ttl: default_session_ttl(),
        }
    }
}

/// The hooks a shop calls (`[hooks]`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct HooksConfig {
    /// A file (readable by its owner only) holding the secret orders are signed with, at
    /// least 32 characters; without one, `POST /api/v1/hooks/orders` is off.
    pub order_secret_file: Option<PathBuf>,
}

/// How many connections the server keeps open.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct LimitsConfig {
    /// Open connections in all. Past it the server stops accepting, and new connections wait
    /// in the kernel's queue until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open connections from one client address. Past it a new connection from that address
    /// is closed unanswered, so one address cannot take every connection. Behind a proxy that
    /// connects from one address, raise it to `max-connections`.
    #[serde(default = "default_max_connections_per_address")]
    pub max_connections_per_address: usize,
    /// Seconds a connection may wait on its client with no byte moving either way (a client
    /// that stops reading a response) before it is closed; also the most a request body may
    /// take to arrive whole. 1 to 3600.
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout: u64,
    /// Objects one ref's history may reach before the index takes the ref for hostile and
    /// leaves it out (its ref file and what only it reaches are refused, with a warning), so
    /// that one publisher's ref cannot hold the index or its memory (about 40 bytes an object).
    #[serde(default = "default_max_ref_objects")]
    pub max_ref_objects: usize,
}

fn default_max_ref_objects() -> usize {
    crate::index::DEFAULT_MAX_REF_OBJECTS
}

pub(crate) fn default_stall_timeout() -> u64 {
    60
}

fn default_max_connections() -> usize {
    4096
}

fn default_max_connections_per_address() -> usize {
    256
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: default_max_connections(),
            max_connections_per_address: default_max_connections_per_address(),
            stall_timeout: default_stall_timeout(),
            max_ref_objects: default_max_ref_objects(),
        }
    }
}

/// How to reach repositories in S3-compatible object storage, and whether to serve their
/// objects from there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct StorageConfig {
    /// The store's address, for stores other than AWS; `http://` is allowed (a store on the
    /// same machine or network). Else `AWS_ENDPOINT`, else AWS.
    pub endpoint: Option<String>,
    /// Else `AWS_REGION` or `AWS_DEFAULT_REGION`, else us-east-1.
    pub region: Option<String>,
    /// Else `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// A file holding the secret access key (mode 0600); else `AWS_SECRET_ACCESS_KEY`. There is
    /// no key for the secret itself, so that it never sits in a file people share.
    pub secret_access_key_file: Option<PathBuf>,
    /// Answer each authorised download of an object or delta with `302` to a URL of the store
    /// that is presigned for that file alone and expires after `redirect-ttl` seconds, instead
    /// of streaming it through tollgate. Summaries, refs and `config` are always served here.
    #[serde(default)]
    pub redirect: bool,
    #[serde(default = "default_redirect_ttl")]
    pub redirect_ttl: u64,
    /// In redirect mode, public objects and deltas go to this address plus their path as
    /// tollgate serves it (`NAME/objects/...`), instead of to a presigned URL: a CDN whose
    /// origin is a tollgate instance in streaming mode, which caches what tollgate marks public
    /// (revalidating delta files) and can never serve a gated file (that needs a token, and is sent
    /// `private, no-store`). Do not point it at a bucket that holds gated content: object names
    /// are checksums that the public summary leads to.
    pub public_objects_url: Option<String>,
}

fn default_redirect_ttl() -> u64 {
    300
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key_file: None,
            redirect: false,
            redirect_ttl: default_redirect_ttl(),
            public_objects_url: None,
        }
    }
}

/// How the entitlement service issues tokens and guards its APIs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct EntitlementConfig {
    /// Seconds an issued download token is valid (30 to 86400).
    #[serde(default = "default_token_ttl")]
    pub token_ttl: u64,
    /// Failed credential checks allowed per client address, and per license or account, within
    /// `failure-window` seconds, before further attempts get 429.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    #[serde(default = "default_failure_window")]
    pub failure_window: u64,
    /// The token that opens the admin API. Prefer `admin-token-file` or the
    /// `TOLLGATE_ADMIN_TOKEN` environment variable.
    pub admin_token: Option<Secret>,
    /// A file holding the admin token; it must not be readable by others.
    pub admin_token_file: Option<PathBuf>,
}

fn default_token_ttl() -> u64 {
    600
}

fn default_max_failures() -> u32 {
    10
}

fn default_failure_window() -> u64 {
    300
}

impl Default for EntitlementConfig {
    fn default() -> Self {
        EntitlementConfig {
            token_ttl: default_token_ttl(),
            max_failures: default_max_failures(),
            failure_window: default_failure_window(),
            admin_token: None,
            admin_token_file: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct TokenConfig {
    /// PEM files of Ed25519 public keys whose tokens are accepted.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
    /// A JSON Web Key Set file of Ed25519 public keys whose tokens are accepted.
    pub jwks_file: Option<PathBuf>,
    /// flat-manager's download-token secret, base64 as in its `config.json`. Prefer
    /// `flat-manager-secret-file`, which keeps the secret out of a file people share.
    pub flat_manager_secret: Option<Secret>,
    /// A file holding flat-manager's secret (base64); it must not be readable by others.
    pub flat_manager_secret_file: Option<PathBuf>,
}

impl Config {
    /// Reads and checks `path`; a missing `path` means the defaults (nothing gated by name, only
    /// the data directory's keys, no flat-manager tokens).
    pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration file {}", path.display()))?;
        let mut config: Config = toml::from_str(&text)
            .with_context(|| format!("in the configuration file {}", path.display()))?;
        if config.tokens.flat_manager_secret.is_some() || config.entitlements.admin_token.is_some()
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                anyhow::bail!(
                    "the configuration file {} holds a secret but has mode {:o}; make it \
                     readable by its owner only (chmod 600 {}), or move the secret to its own \
                     file (flat-manager-secret-file, admin-token-file)",
                    path.display(),
                    mode & 0o777,
                    path.display()
                );
            }
        }
        if let Some(url) = &mut config.public_url {
            if !is_http_address(url) {
                anyhow::bail!(
                    "in the configuration file {}: public-url {url:?} is not an http or https \
                     address without user or query, such as \"https://apps.example.com/\"",
                    path.display()
                );
            }
            if !url.ends_with('/') {
                url.push('/');
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        config.tokens.trusted_keys.iter_mut().for_each(resolve);
        config.tokens.jwks_file.iter_mut().for_each(resolve);
        config
            .tokens
            .flat_manager_secret_file
            .iter_mut()
            .for_each(resolve);
        config
            .entitlements
            .admin_token_file
            .iter_mut()
            .for_each(resolve);
        config.metrics.token_file.iter_mut().for_each(resolve);
        config.hooks.order_secret_file.iter_mut().for_each(resolve);
        config
            .storage
            .secret_access_key_file
            .iter_mut()
            .for_each(resolve);
        let storage = &config.storage;
        if !(1..=900).contains(&storage.redirect_ttl) {
            anyhow::bail!(
                "in the configuration file {}: redirect-ttl = {} is out of range (1 to 900 \
                 seconds: a presigned URL is a bearer credential, so it must expire within \
                 minutes)",
                path.display(),
                storage.redirect_ttl
            );
        }
        for (key, url) in [
            ("endpoint", &storage.endpoint),
            ("public-objects-url", &storage.public_objects_url),
        ] {
            if let Some(url) = url
                && !is_http_address(url)
            {
                anyhow::bail!(
                    "in the configuration file {}: {key} {url:?} is not an http or https \
                     address without user or query",
                    path.display()
                );
            }
        }
        if storage.public_objects_url.is_some() && !storage.redirect {
            anyhow::bail!(
                "in the configuration file {}: public-objects-url is used in redirect mode \
                 only; set redirect = true as well, or remove it",
                path.display()
            );
        }
        let limits = &config.limits;
        if limits.max_connections == 0
            || limits.max_connections_per_address == 0
            || limits.max_connections_per_address > limits.max_connections
        {
            anyhow::bail!(
                "in the configuration file {}: max-connections ({}) and \
                 max-connections-per-address ({}) must be above 0, and the second at most the \
                 first",
                path.display(),
                limits.max_connections,
                limits.max_connections_per_address
            );
        }
        if limits.max_ref_objects == 0 {
            anyhow::bail!(
                "in the configuration file {}: max-ref-objects must be above 0 (the default is \
                 {})",
                path.display(),
                crate::index::DEFAULT_MAX_REF_OBJECTS
            );
        }
        if !(1..=3600).contains(&limits.stall_timeout) {
            anyhow::bail!(
                "in the configuration file {}: stall-timeout = {} is out of range (1 to 3600 \
                 seconds)",
                path.display(),
                limits.stall_timeout
            );
        }
        if !(1..=2_592_000).contains(&config.web.session_ttl) {
            anyhow::bail!(
                "in the configuration file {}: session-ttl = {} is out of range (1 to 2592000 \
                 seconds)",
                path.display(),
                config.web.session_ttl
            );
        }
        let e = &config.entitlements;
        if !(30..=86_400).contains(&e.token_ttl) {
            anyhow::bail!(
                "in the configuration file {}: token-ttl = {} is out of range (30 to 86400 \
                 seconds)",
                path.display(),
                e.token_ttl
            );
        }
        if e.max_failures == 0 || e.failure_window == 0 {
            anyhow::bail!(
                "in the configuration file {}: max-failures and failure-window must be above 0",
                path.display()
            );
        }
        if e.admin_token.is_some() && e.admin_token_file.is_some() {
            anyhow::bail!(
                "in the configuration file {}: give admin-token or admin-token-file, not both",
                path.display()
            );
        }
        if config.tokens.flat_manager_secret.is_some()
            && config.tokens.flat_manager_secret_file.is_some()
        {
            anyhow::bail!(
                "in the configuration file {}: give flat-manager-secret or \
                 flat-manager-secret-file, not both",
                path.display()
            );
        }
        Ok(config)
    }

    /// The admin API's token: `TOLLGATE_ADMIN_TOKEN`, else the configuration's. `None` keeps
    /// the admin API closed.
    pub(crate) fn admin_token(&self) -> anyhow::Result<Option<Secret>> {
        let token = match std::env::var_os("TOLLGATE_ADMIN_TOKEN") {
            Some(token) => Some(
                token
                    .into_string()
                    .map_err(|_| anyhow::anyhow!("TOLLGATE_ADMIN_TOKEN is not UTF-8"))?,
            ),
            None => match (
                &self.entitlements.admin_token,
                &self.entitlements.admin_token_file,
            ) {
                (Some(token), _) => Some(token.expose().to_owned()),
                (None, Some(path)) => Some(crate::secrets::read_private(path, "the admin token")?),
                (None, None) => None,
            },
        };
        match token.map(|t| t.trim().to_owned()) {
            Some(t) if t.len() < 16 => {
                anyhow::bail!("the admin token is too short: use at least 16 characters")
            }
            other => Ok(other.map(Secret::new)),
        }
    }

    /// The secret order hooks are signed with, from `[hooks] order-secret-file`; `None`: the
    /// hook is off.
    pub(crate) fn order_secret(&self) -> anyhow::Result<Option<Secret>> {
        let Some(path) = &self.hooks.order_secret_file else {
            return Ok(None);
        };
        let secret = crate::secrets::read_private(path, "the order hook's secret")?;
        if secret.len() < 32 {
            anyhow::bail!(
                "the order hook's secret in {} is too short: use at least 32 characters (openssl \
                 rand -hex 32 makes one)",
                path.display()
            );
        }
        Ok(Some(Secret::new(secret)))
    }

    /// The token `/metrics` asks for, from `[metrics] token-file`; `None`: loopback only.
    pub(crate) fn metrics_token(&self) -> anyhow::Result<Option<Secret>> {
        let Some(path) = &self.metrics.token_file else {
            return Ok(None);
        };
        let token = crate::secrets::read_private(path, "the metrics token")?;
        if token.len() < 16 {
            anyhow::bail!(
                "the metrics token in {} is too short: use at least 16 characters",
                path.display()
            );
        }
        Ok(Some(Secret::new(token)))
    }

    /// The trusted reverse proxies, and the header they say the client in.
    pub(crate) fn proxies(&self) -> Proxies {
        Proxies::new(self.trusted_proxies.clone(), self.forwarded_header)
    }

    /// Whether `ref_name` is gated by one of the `gated-refs` patterns.
    pub(crate) fn gates_by_name(&self, ref_name: &str) -> bool {
        self.gated_refs.iter().any(|p| p.matches(ref_name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_configuration_is_the_readmes_with_every_key_commented() {
        let packaged = include_str!("../debian/tollgate.toml");
        let readme = include_str!("../../README.md");
        let block = readme
            .split("## The configuration file")
            .nth(1)
            .and_then(|s| s.split("```toml\n").nth(1))
            .and_then(|s| s.split("```").next())
            .expect("the README's configuration block");
        // Prose is "# ...", a commented key or section "#key" or "#[section]".
        let mut uncommented = String::new();
        for line in packaged
            .lines()
            .skip_while(|l| l.starts_with("# ") || l.is_empty())
        {
            assert!(!line.starts_with("# "), "prose among the keys: {line}");
            assert!(
                line.is_empty() || line.starts_with('#'),
                "a key set: {line}"
            );
            uncommented.push_str(line.strip_prefix('#').unwrap_or(line));
            uncommented.push('\n');
        }
        assert_eq!(uncommented, block);
        let config: Config = toml::from_str(&uncommented).unwrap();
        assert_eq!(config.limits.max_ref_objects, 20_000_000);
    }

    #[test]
    fn http_addresses() {
        for good in [
            "https://apps.example.com",
            "http://127.0.0.1:8080/",
            "https://[::1]/x/",
        ] {
            assert!(is_http_address(good), "{good}");
        }
        for bad in [
            "https://",
            "https://:80/",
            "http:///x",
            "ftp://a",
            "https://u@a",
            "https://a/?k=1",
            "https://a/#f",
            "https://a b",
            "apps.example.com",
        ] {
            assert!(!is_http_address(bad), "{bad}");
        }
    }

    #[test]
    fn parses_and_refuses_unknown_keys() {
        let config: Config = toml::from_str(
            "gated-refs = [\"app/com.example.Pro/*\"]\n[tokens]\njwks-file = \"k.json\"\n",
        )
        .unwrap();
        assert!(config.gates_by_name("app/com.example.Pro/x86_64/stable"));
        assert!(!config.gates_by_name("app/com.example.Free/x86_64/stable"));
        assert_eq!(config.tokens.jwks_file, Some(PathBuf::from("k.json")));

        let config: Config = toml::from_str(
            "trusted-proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\nforwarded-header = \"forwarded\"\n",
        )
        .unwrap();
        assert_eq!(config.trusted_proxies.len(), 2);
        assert_eq!(config.forwarded_header, ForwardedHeader::Forwarded);

        for bad in [
            "gated_refs = []",
            "[tokens]\ntrusted-key = []",
            "gated-refs = \"x\"",
            "trusted-proxies = [\"localhost\"]",
            "trusted-proxies = [\"10.0.0.1/8\"]",
            "forwarded-header = \"x-real-ip\"",
        ] {
            assert!(toml::from_str::<Config>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_inline_secret_needs_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tollgate.toml");
        std::fs::write(&path, "[tokens]\nflat-manager-secret = \"c2VjcmV0\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = format!("{:#}", Config::load(Some(&path)).unwrap_err());
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(
            Config::load(Some(&path))
                .unwrap()
                .tokens
                .flat_manager_secret
                .is_some()
        );
    }
}
