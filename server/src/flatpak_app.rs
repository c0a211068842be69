//! `tollgate authenticator --install`: tollgate's authenticator as a Flatpak app of the
//! repository itself, `app/org.tollgate.Authenticator/<arch>/autoinstall`, which stock flatpak
//! installs on its own before it asks for tokens when the remote says
//! `xa.authenticator-install=true` (as Flathub's authenticator is installed).
//!
//! The app holds `tollgate-authenticator`, the Secret Service and file providers in
//! [`PROVIDERS_DIR`], the helper configuration that asks the keyring first, and the D-Bus
//! activation file flatpak exports. It has the least it needs: the network (to reach the
//! service), talking to `org.freedesktop.secrets`, and owning its own name (flatpak grants an
//! app its id); no host files, no other bus names. Its config and cache are the sandbox's own
//! (`~/.var/app/org.tollgate.Authenticator/`), so the file provider's credentials stay there.
//! It is built and committed with the real `flatpak build-finish` and `build-export`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::authenticator::{AUTHENTICATOR_NAME, SHIPPED_PROVIDERS, provider_library};
use crate::process::{run, write_file as write};

/// The branch flatpak installs an authenticator from.
pub(crate) const BRANCH: &str = "autoinstall";
/// Where the app's providers are, inside the sandbox.
pub(crate) const PROVIDERS_DIR: &str = "/app/lib/tollgate/providers";
/// The permissions the app is given: `flatpak build-finish` arguments.
pub(crate) const PERMISSIONS: [&str; 2] =
    ["--share=network", "--talk-name=org.freedesktop.secrets"];

/// What to build the app from and on.
#[derive(Debug)]
pub(crate) struct AppSpec<'a> {
    /// The folder holding `tollgate-authenticator` and the providers' libraries.
    pub binaries: &'a Path,
    /// The runtime: `ID/BRANCH` without the architecture.
    pub runtime: &'a str,
    pub runtime_branch: &'a str,
    pub arch: &'a str,
}

/// Builds the app and commits it to `repo` as [`BRANCH`]; returns its ref.
pub(crate) fn publish(repo: &Path, spec: &AppSpec<'_>) -> anyhow::Result<String> {
    let authenticator = spec.binaries.join("tollgate-authenticator");
    let libraries: Vec<PathBuf> = SHIPPED_PROVIDERS
        .iter()
        .map(|p| spec.binaries.join(provider_library(p)))
        .collect();
    for file in std::iter::once(&authenticator).chain(&libraries) {
        if !file.is_file() {
            bail!(
                "{} is missing: build the client side first (`cargo build --release -p \
                 tollgate-helper -p tollgate-provider-file -p tollgate-provider-secret-service`), \
                 or name the folder that holds it with --binaries",
                file.display()
            );
        }
    }
    let build = tempfile::Builder::new()
        .prefix("tollgate-authenticator-app.")
        .tempdir()
        .context("making a folder to build the authenticator app in")?;
    let dir = build.path();
    let files = dir.join("files");
    let providers = files.join("lib/tollgate/providers");
    let services = files.join("share/dbus-1/services");
    let config = files.join("etc/xdg/tollgate");
    for d in [&files.join("bin"), &providers, &services, &config] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    copy_stripped(&authenticator, &files.join("bin/tollgate-authenticator"))?;
    for library in &libraries {
        let name = library.file_name().expect("a file name");
        copy_stripped(library, &providers.join(name))?;
    }
    write(
        &services.join(format!("{AUTHENTICATOR_NAME}.service")),
        &format!(
            "[D-BUS Service]\nName={AUTHENTICATOR_NAME}\nExec=/app/bin/tollgate-authenticator\n"
        ),
    )?;
    // The keyring first: a credential stored through the sandbox goes to the user's Secret
    // Service, the file provider (in the sandbox's own config folder) only without one.
    write(
        &config.join("helper.toml"),
        "# tollgate's authenticator app: ask the keyring first.\nproviders = [\"secret-service\", \"file\"]\n",
    )?;
    write(
        &dir.join("metadata"),
        &format!(
            "[Application]\nname={AUTHENTICATOR_NAME}\nruntime={}/{}/{}\n",
            spec.runtime, spec.arch, spec.runtime_branch
        ),
    )?;
    run(Command::new("flatpak")
        .arg("build-finish")
        .arg("--command=tollgate-authenticator")
        .args(PERMISSIONS)
        .arg(format!("--env=TOLLGATE_PROVIDER_PATH={PROVIDERS_DIR}"))
        .arg(dir))?;
    run(Command::new("flatpak")
        .arg("build-export")
        .arg(format!("--arch={}", spec.arch))
        .arg(format!(
            "--subject=tollgate authenticator {}",
            env!("CARGO_PKG_VERSION")
        ))
        .arg("--no-update-summary")
        .arg(repo)
        .arg(dir)
        .arg(BRANCH))?;
    Ok(format!("app/{AUTHENTICATOR_NAME}/{}/{BRANCH}", spec.arch))
}

/// Copies `from` to `to` without debugging information (`strip --strip-debug`, as Flatpak
/// builders do), or as it is where binutils is not installed.
fn copy_stripped(from: &Path, to: &Path) -> anyhow::Result<()> {
    let stripped = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(to)
        .arg(from)
        .status();
    match stripped {
        Ok(status) if status.success() => Ok(()),
        _ => std::fs::copy(from, to)
            .map(|_| ())
            .with_context(|| format!("copying {} to {}", from.display(), to.display())),
    }
}
