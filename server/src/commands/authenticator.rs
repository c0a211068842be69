//! `tollgate authenticator`: point a Flatpak repository's clients at tollgate's authenticator,
//! and (with `--install`) publish it there as a Flatpak app.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use tollgate_ostree_format::Repo;

use crate::authenticator::{AUTHENTICATOR_NAME, build_folder, set_authenticator};
use crate::config::is_http_address;
use crate::output::print_line;
use crate::repos::is_valid_name;

#[derive(Debug, Args)]
pub(super) struct AuthenticatorArgs {
    /// The archive repository, as `tollgate serve --repo` serves it.
    #[arg(long, value_name = "PATH")]
    repo: PathBuf,
    /// The entitlement service's address as customers reach it, e.g. https://apps.example.com
    #[arg(long)]
    url: String,
    /// The repository's name on the server, when it is served as `--repo NAME=PATH`.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Also publish the authenticator as a Flatpak app of this repository
    /// (app/org.tollgate.Authenticator/ARCH/autoinstall) and set authenticator-install, so that
    /// flatpak installs it by itself: customers need nothing but flatpak. Run it again to
    /// publish an update.
    #[arg(long)]
    install: bool,
    /// The runtime the app runs on, which customers get from the remotes they have (Flathub).
    #[arg(long, value_name = "ID", default_value = "org.freedesktop.Platform")]
    runtime: String,
    /// The runtime's branch.
    #[arg(long, value_name = "BRANCH", default_value = "25.08")]
    runtime_branch: String,
    /// The folder with `tollgate-authenticator` and the providers' libraries
    /// (`libtollgate_provider_secret_service.so`, `libtollgate_provider_file.so`) to put in the
    /// app [default: the folder of this program, as in a release build's target/release]
    #[arg(long, value_name = "DIR")]
    binaries: Option<PathBuf>,
    /// The app's architecture [default: flatpak's default architecture]
    #[arg(long, value_name = "ARCH")]
    arch: Option<String>,
}

/// `tollgate authenticator`: the repository's clients will ask tollgate's authenticator for
/// tokens, at the entitlement service `args.url`.
pub(super) fn run(args: AuthenticatorArgs) -> anyhow::Result<()> {
    Repo::open(&args.repo).with_context(|| {
        format!(
            "{} is not an OSTree archive repository",
            args.repo.display()
        )
    })?;
    let url = args.url.trim();
    if !is_http_address(url) {
        bail!(
            "--url {url:?} is not an http or https address without user or query, such as \
             https://apps.example.com"
        );
    }
    if let Some(name) = &args.name
        && !is_valid_name(name)
    {
        bail!(
            "--name {name:?} is not a repository name tollgate serves (letters, digits, -, _, .)"
        );
    }
    if args.install {
        let binaries = match &args.binaries {
            Some(dir) => dir.clone(),
            None => build_folder()?,
        };
        let arch = match &args.arch {
            Some(arch) => arch.clone(),
            None => crate::process::default_arch()?,
        };
        let app_ref = crate::flatpak_app::publish(
            &args.repo,
            &crate::flatpak_app::AppSpec {
                binaries: &binaries,
                runtime: &args.runtime,
                runtime_branch: &args.runtime_branch,
                arch: &arch,
            },
        )
        .context("publishing the authenticator as a Flatpak app")?;
        print_line(&format!(
            "{}: published {app_ref} (on {}/{arch}/{}), which flatpak installs by itself",
            args.repo.display(),
            args.runtime,
            args.runtime_branch
        ));
    }
    set_authenticator(&args.repo, url, args.name.as_deref(), args.install)?;
    print_line(&format!(
        "{}: flatpak clients now ask {AUTHENTICATOR_NAME} for tokens from {url}",
        args.repo.display()
    ));
    Ok(())
}
