//! Reading secrets from files that only their owner may read.

use std::path::Path;

use anyhow::{Context, bail};

/// The contents of `path`, trimmed, refusing a file that others can read or write. `what` names
/// the secret in errors ("the admin token").
pub fn read_private(path: &Path, what: &str) -> anyhow::Result<String> {
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
