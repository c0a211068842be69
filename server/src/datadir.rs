//! Where tollgate keeps its own state: the data directory and the user's data folder.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// `$XDG_DATA_HOME/tollgate`, or `~/.local/share/tollgate`.
pub(crate) fn default_data_dir() -> anyhow::Result<PathBuf> {
    Ok(data_home()?.join("tollgate"))
}

/// The user's data folder: `$XDG_DATA_HOME`, or `~/.local/share`.
pub(crate) fn data_home() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither XDG_DATA_HOME nor HOME is set; give a data directory with --data-dir")?;
    Ok(PathBuf::from(home).join(".local/share"))
}

/// Creates the data directory (mode 0700) if it does not exist yet.
pub(crate) fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))
}
