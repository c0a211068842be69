//! Running the real tools (flatpak, ostree) tollgate drives, with errors that say what failed
//! and what to install.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// flatpak's default architecture, as `build-export` uses it.
pub(crate) fn default_arch() -> anyhow::Result<String> {
    let out = run(Command::new("flatpak").arg("--default-arch"))?;
    Ok(out.trim().to_owned())
}

/// Writes `content` to `path`, creating its parent folders.
pub(crate) fn write_file(path: &Path, content: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))
}

/// Runs a command, returning its stdout, or an error carrying its stderr.
pub(crate) fn run(command: &mut Command) -> anyhow::Result<String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "`{program}` is not installed; tollgate runs the real one. Install it with \
             `apt-get install {program}` (scripts/setup does this for you)"
        ),
        Err(e) => return Err(e).with_context(|| format!("running {program}")),
    };
    if !output.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            command
                .get_args()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
