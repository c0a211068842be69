//! `tollgate-helper install-authenticator`: the D-Bus activation file that lets flatpak start
//! `tollgate-authenticator`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::out;
use crate::authenticator::BUS_NAME;

#[derive(Debug, Args)]
pub(super) struct InstallAuthenticatorArgs {
    #[arg(long)]
    user: bool,
    /// The authenticator binary (default: `tollgate-authenticator` beside this program).
    #[arg(long, value_name = "PATH")]
    exec: Option<PathBuf>,
    /// Also look for providers in DIR (the authenticator is started with
    /// TOLLGATE_PROVIDER_PATH=DIR), as `tollgate demo` does for providers of a build tree.
    #[arg(long, value_name = "DIR")]
    provider_path: Option<PathBuf>,
}

pub(super) fn run(args: InstallAuthenticatorArgs) -> anyhow::Result<ExitCode> {
    let InstallAuthenticatorArgs {
        user,
        exec,
        provider_path,
    } = args;
    let exec = match exec {
        Some(exec) => exec,
        None => std::env::current_exe()
            .context("finding this program")?
            .with_file_name("tollgate-authenticator"),
    };
    let exec = std::fs::canonicalize(&exec).with_context(|| {
        format!(
            "{} is missing: install tollgate-authenticator beside tollgate-helper, or give \
             --exec PATH",
            exec.display()
        )
    })?;
    let dir = if user {
        crate::config::data_home()
            .context("neither XDG_DATA_HOME nor HOME is set")?
            .join("dbus-1/services")
    } else {
        PathBuf::from("/usr/share/dbus-1/services")
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join(format!("{BUS_NAME}.service"));
    let mut line = Vec::new();
    if let Some(providers) = provider_path {
        let providers = std::fs::canonicalize(&providers)
            .with_context(|| format!("--provider-path {}", providers.display()))?;
        line.push("/usr/bin/env".to_owned());
        line.push(format!("TOLLGATE_PROVIDER_PATH={}", path_text(&providers)?));
    }
    line.push(path_text(&exec)?.to_owned());
    let exec_line: Vec<String> = line.iter().map(|w| exec_word(w)).collect();
    let text = format!(
        "[D-BUS Service]\nName={BUS_NAME}\nExec={}\n",
        exec_line.join(" ")
    );
    std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    out(&format!(
        "installed {}: flatpak remotes whose authenticator is {BUS_NAME} now start {}",
        file.display(),
        exec.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// A path as text for the activation file, which is UTF-8.
fn path_text(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8, which D-Bus needs", path.display()))
}

/// One word of an activation file's `Exec` line, which D-Bus splits as a shell would: quoted
/// when it holds anything but plain path characters.
fn exec_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::exec_word;

    #[test]
    fn exec_words_with_spaces_or_quotes_stay_one_word() {
        assert_eq!(
            exec_word("/usr/libexec/tollgate-authenticator"),
            "/usr/libexec/tollgate-authenticator"
        );
        assert_eq!(
            exec_word("TOLLGATE_PROVIDER_PATH=/home/a b/providers"),
            "'TOLLGATE_PROVIDER_PATH=/home/a b/providers'"
        );
        // A quote cannot end the word early and add arguments.
        assert_eq!(exec_word("/tmp/x' --evil '"), r"'/tmp/x'\'' --evil '\'''");
        assert_eq!(exec_word(""), "''");
    }
}
