//! Reading secrets from files that only their owner may read.

use std::path::Path;

use anyhow::{Context, bail};

/// The contents of `path`, trimmed, refusing a file that others can read or write. `what` names
/// the secret in errors ("the admin token").
pub(crate) fn read_private(path: &Path, what: &str) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {what} from {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{what} in {} has mode {:o}; it must be readable by its owner only: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {what} from {}", path.display()))?;
    Ok(text.trim().to_owned())
}

/// A secret string whose `Debug` does not show it, so that no `{:?}` of a struct holding one
/// (a configuration, a credential) can carry it into a log.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(secret: String) -> Secret {
        Secret(secret)
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_show_in_debug() {
        let secret = Secret::new("hunter2-hunter2-hunter2".to_owned());
        let shown = format!("{:?} {:#?}", secret, Some(&secret));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(secret.expose(), "hunter2-hunter2-hunter2");
    }
}
