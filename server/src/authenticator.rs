//! tollgate's Flatpak authenticator as repositories name it: its bus name, the providers it
//! comes with, and the `flatpak build-update-repo` that names it in a repository.

use std::path::Path;

use anyhow::Context;

/// The bus name of tollgate's Flatpak authenticator (`tollgate-authenticator`).
pub(crate) const AUTHENTICATOR_NAME: &str = "org.tollgate.Authenticator";
/// The credential providers that come with tollgate, the keyring first: what the demo and the
/// authenticator's Flatpak app give the authenticator.
pub(crate) const SHIPPED_PROVIDERS: [&str; 2] = ["secret_service", "file"];

/// A provider's library file name, as the helper finds providers.
pub(crate) fn provider_library(name: &str) -> String {
    format!("libtollgate_provider_{name}.so")
}

/// The folder of the running `tollgate`, where a build puts the client side's binaries too.
pub(crate) fn build_folder() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe().context("finding this program")?;
    Ok(exe
        .parent()
        .context("finding this program's folder")?
        .to_owned())
}

/// Has `flatpak build-update-repo` name tollgate's authenticator and the entitlement service
/// `url` (and the repository's `name` there) in `repo`'s summary and config, and say whether
/// flatpak is to `install` the authenticator from the repository.
pub(crate) fn set_authenticator(
    repo: &Path,
    url: &str,
    name: Option<&str>,
    install: bool,
) -> anyhow::Result<()> {
    let mut command = std::process::Command::new("flatpak");
    command.args([
        "build-update-repo",
        &format!("--authenticator-name={AUTHENTICATOR_NAME}"),
        if install {
            "--authenticator-install"
        } else {
            "--no-authenticator-install"
        },
        &format!("--authenticator-option=auth-server-url={url}"),
    ]);
    if let Some(name) = name {
        command.arg(format!("--authenticator-option=repo={name}"));
    }
    command.arg(repo);
    crate::process::run(&mut command)?;
    Ok(())
}
