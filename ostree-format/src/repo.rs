//! An archive repository, in a local folder or in object storage: its `config`, its refs, its
//! objects.
//!
//! This reads; it never writes, locks or repairs anything. Serving files to clients is the
//! server's business (with its own guards against symlinks); this module only reads metadata
//! objects and refs by names it builds itself from checksums and validated ref names.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::checksum::Checksum;
use crate::object::ObjectName;
use crate::refs::{CollectionId, NameError, RefName};
use crate::storage::{Listed, LocalStorage, Storage};
use crate::walk::ObjectSource;

/// Why a repository could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{}: no such directory", .path.display())]
    Missing { path: PathBuf },
    #[error("{} is not a directory", .path.display())]
    NotADirectory { path: PathBuf },
    #[error("{} is not an OSTree repository: it has no `config` file", .path.display())]
    NotARepo { path: PathBuf },
    #[error("{} is not a whole OSTree repository: it has no `objects` folder", .path.display())]
    NoObjects { path: PathBuf },
    #[error("{}/config, line {line}: expected `[group]` or `key=value`, found {text:?}", .path.display())]
    ConfigSyntax {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("{}/config, line {line}", .path.display())]
    ConfigCollectionId {
        path: PathBuf,
        line: usize,
        #[source]
        source: NameError,
    },
    #[error(
        "{} is a repository in mode `{mode}`; only archive repositories (mode=archive-z2) can be \
         served over HTTP. Make one with `ostree init --mode=archive --repo=NEW` and \
         `ostree pull-local --repo=NEW {}`",
        .path.display(), .path.display()
    )]
    NotArchive { path: PathBuf, mode: String },
    #[error("{}: not a valid ref", .path.display())]
    RefName {
        path: PathBuf,
        #[source]
        source: NameError,
    },
    // The content is not quoted: a file that is not a ref could hold anything.
    #[error("{}: not a ref file (64 lowercase hex digits and a newline)", .path.display())]
    RefContent { path: PathBuf },
    #[error(
        "{}: a symlink (a ref alias?); refs that are symlinks are not read or served",
        .path.display()
    )]
    RefSymlink { path: PathBuf },
    #[error("reading {}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What tollgate needs from a repository's `config` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoConfig {
    /// `[core] mode`; `archive-z2` and its alias `archive` are the same format.
    pub mode: String,
    /// `[core] collection-id`, when the repository has one.
    pub collection_id: Option<CollectionId>,
}

impl RepoConfig {
    /// Parses the GKeyFile-style `config`: `[group]` headers, `key=value` lines, `#` comments.
    pub fn parse(text: &str, path: &Path) -> Result<RepoConfig, RepoError> {
        let syntax = |line: usize, text: &str| RepoError::ConfigSyntax {
            path: path.to_owned(),
            line,
            text: text.to_owned(),
        };
        let mut group = None;
        let mut mode = None;
        let mut collection_id = None;
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[') {
                let name = name
                    .strip_suffix(']')
                    .ok_or_else(|| syntax(index + 1, raw))?;
                group = Some(name);
                continue;
            }
            let (key, value) = line.split_once('=').ok_or_else(|| syntax(index + 1, raw))?;
            match (group, key.trim()) {
                (Some("core"), "mode") => mode = Some(value.trim().to_owned()),
                (Some("core"), "collection-id") => {
                    let id = CollectionId::new(value.trim()).map_err(|source| {
                        RepoError::ConfigCollectionId {
                            path: path.to_owned(),
                            line: index + 1,
                            source,
                        }
                    })?;
                    collection_id = Some(id);
                }
                _ => {}
            }
        }
        // OSTree's default mode, when the key is absent, is bare.
        let mode = mode.unwrap_or_else(|| "bare".to_owned());
        Ok(RepoConfig {
            mode,
            collection_id,
        })
    }

    pub fn is_archive(&self) -> bool {
        matches!(self.mode.as_str(), "archive-z2" | "archive")
    }
}

/// `[core]` keys that describe the repository's format, which `ostree pull` reads.
const CLIENT_CORE_KEYS: &[&str] = &[
    "repo_version",
    "mode",
    "collection-id",
    "indexed-deltas",
    "tombstone-commits",
];

/// The part of a repository's `config` that clients need: the `[core]` keys that describe the
/// format, and flatpak's `[flatpak]` group. The rest stays on the server: `[remote ...]` groups
/// hold upstream URLs (sometimes with credentials) and client key paths, and other `[core]` keys
/// local paths such as `parent`.
pub fn client_config(text: &str) -> String {
    let mut out = String::new();
    let mut group = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix('[').and_then(|g| g.strip_suffix(']')) {
            group = Some(name);
            if matches!(name, "core" | "flatpak") {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(trimmed);
                out.push('\n');
            }
            continue;
        }
        let keep = match (group, trimmed.split_once('=')) {
            (Some("core"), Some((key, _))) => CLIENT_CORE_KEYS.contains(&key.trim()),
            (Some("flatpak"), Some(_)) => true,
            _ => false,
        };
        if keep {
            out.push_str(trimmed);
            out.push('\n');
        }
    }
    out
}

/// `[flatpak]` keys of a repository's `config` (as `flatpak build-update-repo --title=...`
/// writes them) and the `.flatpakrepo` keys they become.
const FLATPAKREPO_KEYS: &[(&str, &str)] = &[
    ("title", "Title"),
    ("comment", "Comment"),
    ("description", "Description"),
    ("homepage", "Homepage"),
    ("icon", "Icon"),
    ("default-branch", "DefaultBranch"),
    ("authenticator-name", "AuthenticatorName"),
    ("authenticator-install", "AuthenticatorInstall"),
];

/// A `.flatpakrepo` file for the repository whose `config` is `text`, served at `url`: what
/// `flatpak remote-add NAME URL-OF-THIS-FILE` needs to set the remote up. Values are copied as
/// the config holds them (both files are GKeyFiles, with the same escapes). A repository that
/// names no authenticator gets `default_authenticator`, not installed from the remote: flatpak
/// asks it only for refs whose token type is not 0.
///
/// A signed repository's keys (`[flatpak] gpg-keys`, which `flatpak build-update-repo
/// --gpg-import` writes, base64 as `GPGKey` takes them) become `GPGKey`: without it flatpak adds
/// the remote with `gpg-verify=false` and `gpg-verify-summary=false`, and a summary or commit
/// swapped on the way is taken. Its `[core] collection-id` becomes `DeploySideloadCollectionID`,
/// only beside a key, since flatpak refuses a collection id without one.
pub fn flatpak_repo_file(text: &str, url: &str, default_authenticator: &str) -> String {
    let mut values: Vec<(&str, &str)> = Vec::new();
    let mut collection_id = None;
    let mut gpg_keys = None;
    let mut group = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix('[').and_then(|g| g.strip_suffix(']')) {
            group = Some(name);
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match group {
            Some("core") if key == "collection-id" => collection_id = Some(value),
            Some("flatpak") if key == "gpg-keys" => gpg_keys = Some(value),
            Some("flatpak") => {
                if let Some((_, out)) = FLATPAKREPO_KEYS.iter().find(|(k, _)| *k == key) {
                    values.retain(|(k, _)| k != out);
                    values.push((out, value));
                }
            }
            _ => {}
        }
    }
    if !values.iter().any(|(k, _)| *k == "AuthenticatorName") {
        values.retain(|(k, _)| *k != "AuthenticatorInstall");
        values.push(("AuthenticatorName", default_authenticator));
        values.push(("AuthenticatorInstall", "false"));
    }
    let mut out = format!("[Flatpak Repo]\nUrl={url}\n");
    for (_, key) in FLATPAKREPO_KEYS {
        if let Some((_, value)) = values.iter().find(|(k, _)| k == key) {
            out.push_str(&format!("{key}={value}\n"));
        }
    }
    if let Some(keys) = gpg_keys.filter(|k| !k.is_empty()) {
        // flatpak reads DeploySideloadCollectionID before the older DeployCollectionID and
        // CollectionID, which clients before 1.12.8 act on without handling collection ids
        // properly (flatpakrepo(5)); those clients still verify with the key.
        if let Some(id) = collection_id.filter(|id| !id.is_empty()) {
            out.push_str(&format!("DeploySideloadCollectionID={id}\n"));
        }
        out.push_str(&format!("GPGKey={keys}\n"));
    }
    out
}

/// An archive repository opened for reading.
#[derive(Debug, Clone)]
pub struct Repo {
    storage: Arc<dyn Storage>,
    config: RepoConfig,
}

impl Repo {
    /// Opens the archive repository in the local folder `path`, refusing anything else with a
    /// [`RepoError`] that says what the path is instead.
    pub fn open(path: &Path) -> Result<Repo, RepoError> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(RepoError::NotADirectory {
                    path: path.to_owned(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RepoError::Missing {
                    path: path.to_owned(),
                });
            }
            Err(source) => {
                return Err(RepoError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        if path.join("config").is_dir() {
            return Err(RepoError::NotARepo {
                path: path.to_owned(),
            });
        }
        let repo = Repo::open_in(Arc::new(LocalStorage::new(path)))?;
        if !path.join("objects").is_dir() {
            return Err(RepoError::NoObjects {
                path: path.to_owned(),
            });
        }
        Ok(repo)
    }

    /// Opens the archive repository in `storage`: reads and checks its `config`.
    pub fn open_in(storage: Arc<dyn Storage>) -> Result<Repo, RepoError> {
        let path = PathBuf::from(storage.location());
        let text = match storage.read("config") {
            Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(None) => return Err(RepoError::NotARepo { path }),
            Err(source) => {
                return Err(RepoError::Io {
                    path: path.join("config"),
                    source,
                });
            }
        };
        let config = RepoConfig::parse(&text, &path)?;
        if !config.is_archive() {
            return Err(RepoError::NotArchive {
                path,
                mode: config.mode,
            });
        }
        Ok(Repo { storage, config })
    }

    /// Where the repository is, for messages: its folder, or its address in object storage.
    pub fn location(&self) -> &str {
        self.storage.location()
    }

    /// The repository's folder, when it is on the local file system.
    pub fn local_root(&self) -> Option<&Path> {
        self.storage.local_root()
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// `relative` inside the repository, for messages.
    fn display_path(&self, relative: &str) -> PathBuf {
        Path::new(self.location()).join(relative)
    }

    fn list(&self, dir: &str) -> Result<Vec<Listed>, RepoError> {
        self.storage.list(dir).map_err(|source| RepoError::Io {
            path: self.display_path(dir),
            source,
        })
    }

    /// Every ref under `refs/heads`, sorted by name. A file there that is not a ref (a bad
    /// name, bad content, a symlink) is an error; see [`Repo::heads_skipping`].
    pub fn heads(&self) -> Result<Vec<(RefName, Checksum)>, RepoError> {
        strict(|invalid| self.heads_skipping(invalid))
    }

    /// Every ref under `refs/heads`, sorted by name; a file that is not a ref is handed to
    /// `invalid` and left out.
    pub fn heads_skipping(
        &self,
        invalid: &mut dyn FnMut(RepoError),
    ) -> Result<Vec<(RefName, Checksum)>, RepoError> {
        let mut refs = Vec::new();
        for file in self.list("refs/heads")? {
            // A bucket may hold a "folder" marker, `refs/heads/` itself: not a ref.
            let Some(name) = file.path.strip_prefix("refs/heads/") else {
                continue;
            };
            if let Some(found) = self.read_ref(&file, name, invalid)? {
                refs.push(found);
            }
        }
        refs.sort();
        Ok(refs)
    }

    /// Every ref under `refs/mirrors`, sorted. A file there that is not a ref
    /// is an error; see [`Repo::mirrors_skipping`].
    pub fn mirrors(&self) -> Result<Vec<(CollectionId, RefName, Checksum)>, RepoError> {
        strict(|invalid| self.mirrors_skipping(invalid))
    }

    /// Every ref under `refs/mirrors/<collection-id>/`, sorted; a file or folder that is not a
    /// ref or collection is handed to `invalid` and left out.
    pub fn mirrors_skipping(
        &self,
        invalid: &mut dyn FnMut(RepoError),
    ) -> Result<Vec<(CollectionId, RefName, Checksum)>, RepoError> {
        let mut out = Vec::new();
        let mut refused: Option<String> = None;
        for file in self.list("refs/mirrors")? {
            let Some(inside) = file.path.strip_prefix("refs/mirrors/") else {
                continue;
            };
            let Some((collection, name)) = inside.split_once('/') else {
                // A file directly in refs/mirrors, where only collection folders belong.
                invalid(RepoError::RefName {
                    path: self.display_path(&file.path),
                    source: NameError::CollectionId(inside.to_owned()),
                });
                continue;
            };
            let cid = match CollectionId::new(collection) {
                Ok(cid) => cid,
                Err(source) => {
                    // Once per collection folder, not once per file in it.
                    if refused.as_deref() != Some(collection) {
                        refused = Some(collection.to_owned());
                        invalid(RepoError::RefName {
                            path: self.display_path(&format!("refs/mirrors/{collection}")),
                            source,
                        });
                    }
                    continue;
                }
            };
            if let Some((name, checksum)) = self.read_ref(&file, name, invalid)? {
                out.push((cid, name, checksum));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The ref in `file`, named `name`; `None` (after telling `invalid`, unless it is simply
    /// gone or still being written) when it is not one. A file that cannot be read is an error,
    /// not a ref left out: leaving out a gated ref could let an older public tip of the same
    /// name decide.
    fn read_ref(
        &self,
        file: &Listed,
        name: &str,
        invalid: &mut dyn FnMut(RepoError),
    ) -> Result<Option<(RefName, Checksum)>, RepoError> {
        let base = name.rsplit('/').next().unwrap_or(name);
        if is_write_in_progress(base) {
            return Ok(None);
        }
        let path = self.display_path(&file.path);
        if file.symlink {
            invalid(RepoError::RefSymlink { path });
            return Ok(None);
        }
        let name = match RefName::new(name) {
            Ok(name) => name,
            Err(source) => {
                invalid(RepoError::RefName { path, source });
                return Ok(None);
            }
        };
        let checksum = match self.storage.read(&file.path) {
            Ok(Some(bytes)) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| Checksum::from_hex(text.trim_end_matches('\n')).ok()),
            // Removed since the folder was listed: a ref deleted a moment ago.
            Ok(None) => return Ok(None),
            Err(source) => return Err(RepoError::Io { path, source }),
        };
        match checksum {
            Some(checksum) => Ok(Some((name, checksum))),
            None => {
                invalid(RepoError::RefContent { path });
                Ok(None)
            }
        }
    }
}

/// Runs a lenient listing and turns the first invalid entry into the error.
fn strict<T>(
    list: impl FnOnce(&mut dyn FnMut(RepoError)) -> Result<T, RepoError>,
) -> Result<T, RepoError> {
    let mut first = None;
    let listed = list(&mut |e| {
        first.get_or_insert(e);
    })?;
    first.map_or(Ok(listed), Err)
}

/// Whether `name` is a file ostree is writing: libglnx links a new ref's contents as
/// `tmp.XXXXXX` in the ref's folder and then renames it into place. Such a file is not a ref,
/// and read in that instant it would look like one.
fn is_write_in_progress(name: &str) -> bool {
    name.strip_prefix("tmp.")
        .is_some_and(|rest| rest.len() == 6 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

impl ObjectSource for Repo {
    fn read(&self, object: &ObjectName) -> io::Result<Option<Vec<u8>>> {
        self.storage.read(&object.relative_path())
    }

    fn exists(&self, object: &ObjectName) -> io::Result<bool> {
        self.storage.exists(&object.relative_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_config_keeps_the_format_and_flatpak_groups_only() {
        let text = "[core]\nrepo_version=1\nmode=archive-z2\nparent=/srv/other\n\
                    collection-id=org.example.Os\n\n[remote \"up\"]\n\
                    url=https://user:secret@example.com/repo\ntls-client-key-path=/etc/key\n\n\
                    # comment\n[flatpak]\ntitle=Example\nauthenticator-name=org.x.Auth\n";
        assert_eq!(
            client_config(text),
            "[core]\nrepo_version=1\nmode=archive-z2\ncollection-id=org.example.Os\n\n\
             [flatpak]\ntitle=Example\nauthenticator-name=org.x.Auth\n"
        );
        assert_eq!(client_config(""), "");
    }

    #[test]
    fn flatpakrepo_files() {
        let check = |config: &str, expected: &str| {
            assert_eq!(
                flatpak_repo_file(config, "https://r.example/", "org.x.Auth"),
                expected,
                "{config}"
            );
        };
        check(
            "",
            "[Flatpak Repo]\nUrl=https://r.example/\nAuthenticatorName=org.x.Auth\n\
             AuthenticatorInstall=false\n",
        );
        check(
            "[core]\ntitle=not this\n[flatpak]\nhomepage = https://h\ntitle=Shop\\nA\n\
             authenticator-install=true\nunknown=1\n[remote \"x\"]\nurl=https://secret@up\n",
            "[Flatpak Repo]\nUrl=https://r.example/\nTitle=Shop\\nA\nHomepage=https://h\n\
             AuthenticatorName=org.x.Auth\nAuthenticatorInstall=false\n",
        );
        check(
            "[flatpak]\nauthenticator-name=org.y.Auth\nauthenticator-install=true\n\
             default-branch=stable\ntitle=A\ntitle=B\n",
            "[Flatpak Repo]\nUrl=https://r.example/\nTitle=B\nDefaultBranch=stable\n\
             AuthenticatorName=org.y.Auth\nAuthenticatorInstall=true\n",
        );
    }

    #[test]
    fn flatpakrepo_files_of_signed_repositories() {
        let file = |config: &str| flatpak_repo_file(config, "https://r.example/", "org.x.Auth");
        let tail = "AuthenticatorName=org.x.Auth\nAuthenticatorInstall=false\n";
        // The keys as build-update-repo --gpg-import writes them, and the collection id.
        assert_eq!(
            file(
                "[core]\nmode=archive-z2\ncollection-id=org.example.Shop\n\n\
                 [flatpak]\ntitle=Shop\ngpg-keys=mDMEaxEb+/w==\n"
            ),
            format!(
                "[Flatpak Repo]\nUrl=https://r.example/\nTitle=Shop\n{tail}\
                 DeploySideloadCollectionID=org.example.Shop\nGPGKey=mDMEaxEb+/w==\n"
            )
        );
        assert_eq!(
            file("[flatpak]\ngpg-keys = mDME\n"),
            format!("[Flatpak Repo]\nUrl=https://r.example/\n{tail}GPGKey=mDME\n")
        );
        // No key: no collection id either (flatpak refuses one without a key). Keys only count
        // in [flatpak], the collection id only in [core].
        for unsigned in [
            "[core]\ncollection-id=org.example.Shop\n",
            "[core]\ncollection-id=org.example.Shop\n[flatpak]\ngpg-keys=\n",
            "[core]\ngpg-keys=mDME\n[flatpak]\ncollection-id=org.example.Shop\n",
            "[remote \"up\"]\ngpg-keys=mDME\n",
        ] {
            assert_eq!(
                file(unsigned),
                format!("[Flatpak Repo]\nUrl=https://r.example/\n{tail}"),
                "{unsigned}"
            );
        }
    }

    #[test]
    fn files_ostree_is_writing_are_not_refs() {
        assert!(is_write_in_progress("tmp.bGOAko"));
        assert!(!is_write_in_progress("tmp.bGOAkoo"));
        assert!(!is_write_in_progress("tmp"));
        assert!(!is_write_in_progress("stable"));
        assert!(!is_write_in_progress("tmp.a-b_c."));
    }

    #[test]
    fn config_files() {
        let path = Path::new("/r");
        let check = |text: &str, mode: &str, cid: Option<&str>| {
            let config = RepoConfig::parse(text, path).unwrap();
            assert_eq!(config.mode, mode);
            assert_eq!(config.collection_id.as_ref().map(CollectionId::as_str), cid);
        };
        check(
            "[core]\nrepo_version=1\nmode=archive-z2\n",
            "archive-z2",
            None,
        );
        check(
            "# c\n[core]\nmode = archive\ncollection-id=org.example.Os\n\n[flatpak]\nmode=x\n",
            "archive",
            Some("org.example.Os"),
        );
        check("[core]\nrepo_version=1\n", "bare", None);
        check("[remote \"x\"]\nmode=archive\n", "bare", None);

        for (bad, bad_line) in [
            ("[core\nmode=archive", 1),
            ("[core]\nmode", 2),
            ("[core]\n\ncollection-id=x", 3),
        ] {
            match RepoConfig::parse(bad, path) {
                Err(
                    RepoError::ConfigSyntax { line, .. }
                    | RepoError::ConfigCollectionId { line, .. },
                ) => {
                    assert_eq!(line, bad_line, "{bad:?}")
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }
}
