//! The file credential provider: credentials from a TOML file that only its owner may read, and
//! from environment variables, for servers and CI where there is no keyring.
//!
//! The file is `$TOLLGATE_CREDENTIALS_FILE`, else `$XDG_CONFIG_HOME/tollgate/credentials.toml`
//! (`~/.config/tollgate/credentials.toml`):
//!
//! ```toml
//! [[credential]]
//! url = "https://apps.example.com"          # the entitlement service
//! license-key = "tg_..."
//!
//! [[credential]]
//! url = "https://other.example.com/store"
//! user = "alice"
//! password = "..."
//!
//! [[credential]]
//! url = "https://ci.example.com"
//! token = "..."
//! ```
//!
//! It is refused, with a message saying how to fix it, when it belongs to someone else or others
//! may read or write it. Mistakes in it are reported with their line. Storing and erasing
//! rewrite it in place (through a temporary file, renamed over it), keeping its comments.
//!
//! The environment gives one credential, and it wins over the file for its URL: `TOLLGATE_URL`
//! names the service, and `TOLLGATE_LICENSE_KEY`, `TOLLGATE_TOKEN`, or `TOLLGATE_USER` with
//! `TOLLGATE_PASSWORD` the credential.
//!
//! It depends on `tollgate-plugin-api` and on its own backend crates only.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tollgate_plugin_api::url::normalise;
use tollgate_plugin_api::{Credential, ErrorKind, Provider, ProviderError, Request, Secret};
use zeroize::Zeroizing;

/// The provider: stateless; the file is read on every call, so edits take effect at once.
#[derive(Debug, Default)]
pub struct FileProvider;

tollgate_plugin_api::export_provider! {
    provider: FileProvider,
    new: FileProvider,
    name: "file",
    description: "credentials from a TOML file readable by its owner only, and from TOLLGATE_* variables",
    capabilities: [lookup, store, erase],
}

/// Where the file is, from the environment.
pub fn credentials_file() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TOLLGATE_CREDENTIALS_FILE") {
        return Some(PathBuf::from(path));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("tollgate/credentials.toml"))
}

// No `Debug`: entries hold secrets.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    credential: Vec<toml::Spanned<Entry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Entry {
    url: String,
    license_key: Option<String>,
    token: Option<String>,
    user: Option<String>,
    password: Option<String>,
}

impl Entry {
    fn credential(self) -> Result<Credential, String> {
        match (self.license_key, self.token, self.user, self.password) {
            (Some(key), None, None, None) => Ok(Credential::LicenseKey(Secret::new(key))),
            (None, Some(token), None, None) => Ok(Credential::Token(Secret::new(token))),
            (None, None, Some(user), Some(password)) => Ok(Credential::Password {
                user,
                password: Secret::new(password),
            }),
            (None, None, Some(_), None) => Err("`user` needs a `password`".to_owned()),
            (None, None, None, Some(_)) => Err("`password` needs a `user`".to_owned()),
            (None, None, None, None) => {
                Err("give `license-key`, `token`, or `user` and `password`".to_owned())
            }
            _ => Err("give one of `license-key`, `token`, or `user` and `password`".to_owned()),
        }
    }
}

/// The line (from 1) of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn other(path: &Path, message: impl std::fmt::Display) -> ProviderError {
    ProviderError::other(format!("{}: {message}", path.display()))
}

/// The file's text (wiped when dropped), or `None` when there is no file; refused when others
/// may read it. The checks are made on the file as opened, so it cannot be swapped between them
/// and the read.
fn read_private(path: &Path) -> Result<Option<Zeroizing<String>>, ProviderError> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(other(path, e)),
    };
    let meta = file.metadata().map_err(|e| other(path, e))?;
    if !meta.is_file() {
        return Err(other(path, "is not a regular file"));
    }
    let uid = rustix::process::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(other(
            path,
            format!(
                "belongs to user {}, not to you (user {uid}); credentials must be in a file of \
                 your own",
                meta.uid()
            ),
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(other(
            path,
            format!(
                "has mode {mode:o}, so others may read it; make it yours alone: chmod 600 {}",
                path.display()
            ),
        ));
    }
    // Room for the whole file (and the probe read past its end), so the text never moves and
    // leaves a copy behind.
    let mut text = Zeroizing::new(String::with_capacity(meta.len() as usize + 64));
    file.read_to_string(&mut text).map_err(|e| other(path, e))?;
    Ok(Some(text))
}

/// Every credential in the file, with its normalised URL.
fn parse(path: &Path, text: &str) -> Result<Vec<(String, Credential)>, ProviderError> {
    let file: File = toml::from_str(text).map_err(|e| match e.span() {
        Some(span) => other(
            path,
            format!("line {}: {}", line_of(text, span.start), e.message()),
        ),
        None => other(path, e.message()),
    })?;
    let mut out = Vec::with_capacity(file.credential.len());
    for spanned in file.credential {
        let line = line_of(text, spanned.span().start);
        let entry = spanned.into_inner();
        let url = normalise(&entry.url).map_err(|e| other(path, format!("line {line}: {e}")))?;
        let credential = entry
            .credential()
            .map_err(|e| other(path, format!("line {line}: {e}")))?;
        out.push((url, credential));
    }
    Ok(out)
}

/// The credential the environment gives for `url`, if any.
fn from_environment(url: &str) -> Result<Option<Credential>, ProviderError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (key, token, user, password) = (
        var("TOLLGATE_LICENSE_KEY"),
        var("TOLLGATE_TOKEN"),
        var("TOLLGATE_USER"),
        var("TOLLGATE_PASSWORD"),
    );
    if key.is_none() && token.is_none() && user.is_none() && password.is_none() {
        return Ok(None);
    }
    let env_error = |m: String| ProviderError::other(format!("in the environment: {m}"));
    let Some(for_url) = var("TOLLGATE_URL") else {
        return Err(env_error(
            "a TOLLGATE_* credential is set but TOLLGATE_URL is not: say which entitlement \
             service it is for"
                .to_owned(),
        ));
    };
    let for_url = normalise(&for_url).map_err(|e| env_error(format!("TOLLGATE_URL: {e}")))?;
    if for_url != url {
        return Ok(None);
    }
    let entry = Entry {
        url: for_url,
        license_key: key,
        token,
        user,
        password,
    };
    entry
        .credential()
        .map(Some)
        .map_err(|e| env_error(e.replace('`', "").replace('-', "_")))
}

fn no_file() -> ProviderError {
    ProviderError::other(
        "no credentials file: set TOLLGATE_CREDENTIALS_FILE, XDG_CONFIG_HOME or HOME".to_owned(),
    )
}

impl FileProvider {
    /// Rewrites the file with `change` applied to its `credential` array, keeping the rest.
    fn rewrite(
        &self,
        path: &Path,
        change: impl FnOnce(&mut toml_edit::ArrayOfTables) -> Result<(), ProviderError>,
    ) -> Result<(), ProviderError> {
        // A file that is a link is rewritten where it points.
        let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let path = target.as_path();
        // One rewrite at a time, so two logins at once cannot lose one another's change.
        let _lock = lock_for(path).map_err(|e| other(path, e))?;
        let text = read_private(path)?.unwrap_or_default();
        // Refuse to rewrite a file with mistakes in it: they are the user's to fix.
        parse(path, &text)?;
        let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| other(path, e))?;
        let credentials = doc
            .entry("credential")
            .or_insert_with(|| toml_edit::Item::ArrayOfTables(Default::default()))
            .as_array_of_tables_mut()
            .ok_or_else(|| {
                other(
                    path,
                    "`credential` is not an array of tables ([[credential]])",
                )
            })?;
        change(credentials)?;
        let text = Zeroizing::new(doc.to_string());
        write_private(path, text.as_bytes()).map_err(|e| other(path, e))
    }
}

/// Makes the file's folder (0700) if needed, and takes the lock on its rewrites: `flock` on
/// `.<name>.lock` beside it, released when the returned file is dropped.
fn lock_for(path: &Path) -> std::io::Result<std::fs::File> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("credentials");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join(format!(".{name}.lock")))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
    Ok(file)
}

/// Writes `bytes` to `path` through a temporary file in the same folder, mode 0600, renamed
/// over it and made durable. The caller holds the rewrite lock (so a leftover temporary file
/// is a crashed rewrite's, and goes).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("credentials");
    let temp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&temp);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Whether a `[[credential]]` table is for `url`.
fn table_is_for(table: &toml_edit::Table, url: &str) -> bool {
    table
        .get("url")
        .and_then(|u| u.as_str())
        .and_then(|u| normalise(u).ok())
        .is_some_and(|u| u == url)
}

impl Provider for FileProvider {
    fn lookup(&self, request: &Request) -> Result<Credential, ProviderError> {
        if let Some(credential) = from_environment(&request.url)? {
            return Ok(credential);
        }
        let path = credentials_file().ok_or_else(no_file)?;
        let Some(text) = read_private(&path)? else {
            return Err(ProviderError::not_found(format!(
                "no credential for {}: {} does not exist",
                request.url,
                path.display()
            )));
        };
        parse(&path, &text)?
            .into_iter()
            .find(|(url, _)| *url == request.url)
            .map(|(_, credential)| credential)
            .ok_or_else(|| {
                ProviderError::not_found(format!(
                    "no credential for {} in {}",
                    request.url,
                    path.display()
                ))
            })
    }

    fn store(&self, request: &Request, credential: &Credential) -> Result<(), ProviderError> {
        let path = credentials_file().ok_or_else(no_file)?;
        self.rewrite(&path, |credentials| {
            credentials.retain(|t| !table_is_for(t, &request.url));
            let mut table = toml_edit::Table::new();
            table["url"] = toml_edit::value(request.url.as_str());
            match credential {
                Credential::LicenseKey(key) => {
                    table["license-key"] = toml_edit::value(key.expose())
                }
                Credential::Token(token) => table["token"] = toml_edit::value(token.expose()),
                Credential::Password { user, password } => {
                    table["user"] = toml_edit::value(user.as_str());
                    table["password"] = toml_edit::value(password.expose());
                }
            }
            credentials.push(table);
            Ok(())
        })
    }

    fn erase(&self, request: &Request) -> Result<(), ProviderError> {
        let path = credentials_file().ok_or_else(no_file)?;
        if read_private(&path)?.is_none() {
            return Err(ProviderError::not_found(format!(
                "no credential for {}: {} does not exist",
                request.url,
                path.display()
            )));
        }
        self.rewrite(&path, |credentials| {
            let before = credentials.len();
            credentials.retain(|t| !table_is_for(t, &request.url));
            if credentials.len() == before {
                return Err(ProviderError::new(
                    ErrorKind::NotFound,
                    format!("no credential for {} in {}", request.url, path.display()),
                ));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_error(text: &str, expected: &str) {
        let path = Path::new("/x/credentials.toml");
        let err = parse(path, text).unwrap_err();
        assert!(
            err.message.contains(expected),
            "for {text:?}: {} (wanted {expected:?})",
            err.message
        );
    }

    #[test]
    fn entries_parse_and_mistakes_name_their_line() {
        let text = "# mine\n[[credential]]\nurl = \"https://A.example/\"\nlicense-key = \"tg_k\"\n\n\
                    [[credential]]\nurl = \"https://b.example/x\"\nuser = \"alice\"\npassword = \"pw\"\n";
        let parsed = parse(Path::new("c.toml"), text).unwrap();
        assert_eq!(parsed[0].0, "https://a.example");
        assert_eq!(parsed[0].1, Credential::LicenseKey(Secret::new("tg_k")));
        assert_eq!(parsed[1].1.user(), Some("alice"));

        check_error(
            "[[credential]]\nurl = \"https://a.example\"\n",
            "line 1: give",
        );
        check_error(
            "\n\n[[credential]]\nurl = \"https://a.example\"\nuser = \"a\"\n",
            "line 3: `user` needs a `password`",
        );
        check_error(
            "[[credential]]\nurl = \"https://a.example\"\nlicense-key = \"k\"\ntoken = \"t\"\n",
            "line 1: give one of",
        );
        check_error(
            "[[credential]]\nurl = \"ftp://a.example\"\ntoken = \"t\"\n",
            "line 1: ftp: is not http: or https:; give the entitlement service's web address",
        );
        check_error(
            "[[credential]]\nurl = \"https://a\"\nkey = \"k\"\n",
            "unknown field `key`",
        );
        check_error(
            "[[credential]]\nurl = \"https://a\nx",
            "line 3: key with no value",
        );
        check_error("\ncredential = 3\n", "line 2: invalid type: integer `3`");
    }
}
