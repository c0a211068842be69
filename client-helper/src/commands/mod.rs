//! `tollgate-helper`: the command line, one module per command, each owning its clap
//! arguments. Answers go to stdout, the providers' answers along the way and errors to stderr.
//! No command prints a secret unless asked to (`os-remote add --print`). Nothing outside this
//! folder uses it, and clap appears only here (the `workspace_rules` tests keep it so).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tollgate_plugin_api::Credential;
use tollgate_plugin_api::url::normalise;

use crate::chain::{Chain, search_path};
use crate::config::Config;
use crate::p2p::options_text;
use crate::service::Want;
use crate::tokens::{Helper, RefTokens};
use crate::trust::check;

mod credential;
mod install_authenticator;
mod login;
mod logout;
mod os_remote;
mod p2p_options;
mod package_files;
mod providers;
mod pull;
mod status;
mod token;
mod trust;

#[derive(Debug, Parser)]
#[command(
    name = "tollgate-helper",
    version,
    about = "Credentials and download tokens for tollgate repositories"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the credential providers found, in the order they are asked, and the files in the
    /// search path that are not used, with why.
    Providers(providers::ProvidersArgs),
    /// Say which provider has a credential for an entitlement service, and of what kind (never
    /// the secret itself).
    Credential(credential::CredentialArgs),
    /// Keep a credential for an entitlement service, with the first provider that can store
    /// (or the one named). The secret is read from stdin.
    Login(login::LoginArgs),
    /// Forget the credentials for an entitlement service, in every provider that can erase.
    Logout(logout::LogoutArgs),
    /// Print download tokens for refs, as JSON: {"tokens": {TOKEN: [REF...]}} ("" for refs that
    /// need none). From the cache, else from the entitlement service with the stored credential.
    Token(token::TokenArgs),
    /// Pull refs of a remote into a local OSTree repository, each group of refs that shares a
    /// token with its own `Authorization` header (and refs that need none, with none). With
    /// --p2p, find a collection's refs wherever libostree's finders look, and send each token
    /// only to the origin it was issued for and to trusted mirrors.
    Pull(pull::PullArgs),
    /// Show the providers, which of them has a credential for each service seen, and the cached
    /// tokens with their expiry (never a secret).
    Status(status::StatusArgs),
    /// The mirrors that may see tokens besides the entitlement service's own origin (scheme,
    /// host and port): flatpak installs and pulls from a remote at or beneath one of them get
    /// tokens, and P2P pulls send it the tokens for the refs it has.
    Trust {
        #[command(subcommand)]
        action: trust::TrustAction,
    },
    /// An ostree remote for OS updates (`ostree admin upgrade`) whose URL carries the stored
    /// credential, in SYSROOT/etc/ostree/remotes.d/NAME.conf, readable by root alone.
    OsRemote {
        #[command(subcommand)]
        action: os_remote::OsRemoteAction,
    },
    /// Print the options a P2P pull would use at each place its refs were found, in GVariant
    /// text form: a gated ref's token goes only to the origin and trusted mirrors.
    P2pOptions(p2p_options::P2pOptionsArgs),
    /// Install the D-Bus activation file of `tollgate-authenticator`, so that flatpak can start
    /// it: for this user (`--user`, in $XDG_DATA_HOME/dbus-1/services) or for everyone.
    InstallAuthenticator(install_authenticator::InstallAuthenticatorArgs),
    /// For packaging: write the man pages, shell completions and the providers' pkg-config
    /// file into a folder.
    #[command(hide = true)]
    PackageFiles(package_files::PackageFilesArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Providers(args) => providers::run(&args),
        Command::Credential(args) => credential::run(&args),
        Command::Login(args) => login::run(args),
        Command::Logout(args) => logout::run(&args),
        Command::Token(args) => token::run(args),
        Command::Pull(args) => pull::run(args),
        Command::Status(args) => status::run(&args),
        Command::Trust { action } => trust::run(action),
        Command::OsRemote { action } => os_remote::run(action),
        Command::P2pOptions(args) => p2p_options::run(&args),
        Command::InstallAuthenticator(args) => install_authenticator::run(args),
        Command::PackageFiles(args) => package_files::run(&args),
    }
}

pub(super) fn out(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

pub(super) fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

pub(super) fn load_chain() -> anyhow::Result<Chain> {
    Ok(Chain::load(&search_path(), &Config::read()?))
}

/// What a credential is, without its secret.
pub(super) fn what(credential: &Credential) -> String {
    match credential.user() {
        Some(user) => format!("{} for {user}", credential.kind()),
        None => credential.kind().to_string(),
    }
}

/// A runtime for the commands that talk to the entitlement service.
pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Tokens for `want`, or an error that says what to do.
pub(super) fn tokens_for(want: &Want, interactive: bool) -> anyhow::Result<RefTokens> {
    let helper = Helper::load()?;
    runtime()?
        .block_on(helper.tokens(want, interactive))
        .map_err(|failure| anyhow::anyhow!(failure.explain()))
}

/// Each pull of a plan: where, which refs, and its options in GVariant text form.
pub(super) fn print_plan(pulls: &[crate::p2p::Pull]) {
    for pull in pulls {
        let mut line = format!(
            "{} ({}): {}",
            pull.url,
            pull.standing.name(),
            pull.refs.join(" ")
        );
        if !pull.withheld.is_empty() {
            line.push_str(&format!(
                " (without the token for {}: only untrusted places have it)",
                pull.withheld.join(" ")
            ));
        }
        out(&line);
        out(&options_text(pull));
    }
}

/// Where a pull's tokens come from.
#[derive(Debug, Args)]
pub(super) struct ServiceArgs {
    /// The entitlement service's URL (default: the remote's URL, or --origin).
    #[arg(long)]
    url: Option<String>,
    /// The repository's name on the server (`tollgate serve --repo NAME=PATH`).
    #[arg(long, default_value = "")]
    service_repo: String,
    /// Let providers ask the user, e.g. to unlock a keyring.
    #[arg(long)]
    interactive: bool,
}

impl ServiceArgs {
    /// The service's URL: --url, else `default`, normalised.
    fn url_or(&self, default: &str) -> anyhow::Result<String> {
        Ok(normalise(self.url.as_deref().unwrap_or(default))?)
    }

    /// Refuses unless `address` may see the tokens of the service at --url (else `default`):
    /// it is the service's origin or a trusted mirror ([`crate::trust`]).
    fn may_send_to(&self, address: &str, default: &str, trusted: &[String]) -> anyhow::Result<()> {
        check(address, &self.url_or(default)?, trusted)?;
        Ok(())
    }

    /// The tokens for `refs` from the service at --url, else at `default_url()`.
    fn tokens(
        &self,
        default_url: impl FnOnce() -> anyhow::Result<String>,
        refs: Vec<String>,
    ) -> anyhow::Result<RefTokens> {
        let url = match &self.url {
            Some(url) => url.clone(),
            None => default_url()?,
        };
        let want = Want {
            url: normalise(&url)?,
            repo: self.service_repo.clone(),
            refs,
        };
        tokens_for(&want, self.interactive)
    }
}
