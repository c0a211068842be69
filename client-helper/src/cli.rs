//! `tollgate-helper`: the command line.
//!
//! ```text
//! tollgate-helper providers [--json]
//! tollgate-helper credential URL [--interactive] [--json]
//! tollgate-helper login URL [--key-stdin | --token-stdin | --user NAME [--password-stdin]] [--provider NAME] [--no-check]
//! tollgate-helper logout URL
//! tollgate-helper token URL REF... [--repo NAME]
//! tollgate-helper pull --repo PATH REMOTE REF... [--url URL] [--service-repo NAME]
//! tollgate-helper pull --p2p --repo PATH [--finder config|mount|override=URL]... [--origin URL] [--dry-run] COLLECTION-ID REF...
//! tollgate-helper status
//! tollgate-helper trust add|remove URL | trust list
//! tollgate-helper p2p-options --origin URL --result URL=REF[,REF...]... [--url URL] [--service-repo NAME]
//! tollgate-helper install-authenticator [--user] [--exec PATH] [--provider-path DIR]
//! ```
//! Answers go to stdout, the providers' answers along the way and errors to stderr. No command
//! ever prints a secret.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use tollgate_plugin_api::url::normalise;
use tollgate_plugin_api::{Credential, Secret};

use crate::authenticator::BUS_NAME;
use crate::chain::{Chain, describe, failures, search_path};
use crate::config::{Config, config_path, edit_trusted};
use crate::libostree::Finder;
use crate::p2p::{Found, options_text, plan};
use crate::service::Want;
use crate::tokens::{Helper, RefTokens, grouped};
use crate::trust::check;

#[derive(Debug, Parser)]
#[command(
    name = "tollgate-helper",
    version,
    about = "Credentials and download tokens for tollgate repositories"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the credential providers found, in the order they are asked, and the files in the
    /// search path that are not used, with why.
    Providers {
        #[arg(long)]
        json: bool,
    },
    /// Say which provider has a credential for an entitlement service, and of what kind (never
    /// the secret itself).
    Credential {
        /// The entitlement service's URL (the repository's URL, for tollgate).
        url: String,
        /// Let providers ask the user, e.g. to unlock a keyring.
        #[arg(long)]
        interactive: bool,
        #[arg(long)]
        json: bool,
    },
    /// Keep a credential for an entitlement service, with the first provider that can store
    /// (or the one named). The secret is read from stdin.
    Login(LoginArgs),
    /// Forget the credentials for an entitlement service, in every provider that can erase.
    Logout {
        url: String,
        /// Let providers ask the user, e.g. to unlock a keyring.
        #[arg(long)]
        interactive: bool,
    },
    /// Print download tokens for refs, as JSON: {"tokens": {TOKEN: [REF...]}} ("" for refs that
    /// need none). From the cache, else from the entitlement service with the stored credential.
    Token {
        /// The entitlement service's URL.
        url: String,
        #[arg(required = true)]
        refs: Vec<String>,
        /// The repository's name on the server (`tollgate serve --repo NAME=PATH`).
        #[arg(long, default_value = "")]
        repo: String,
        /// Let providers ask the user, e.g. to unlock a keyring.
        #[arg(long)]
        interactive: bool,
    },
    /// Pull refs of a remote into a local OSTree repository, each group of refs that shares a
    /// token with its own `Authorization` header (and refs that need none, with none). With
    /// --p2p, find a collection's refs wherever libostree's finders look, and send each token
    /// only to the origin it was issued for and to trusted mirrors.
    Pull {
        /// The local OSTree repository.
        #[arg(long = "repo", value_name = "PATH")]
        local: std::path::PathBuf,
        /// The remote to pull from; with --p2p, the collection id.
        #[arg(value_name = "REMOTE|COLLECTION-ID")]
        source: String,
        #[arg(required = true)]
        refs: Vec<String>,
        /// Find the refs with libostree's finders and pull them from wherever they are.
        #[arg(long)]
        p2p: bool,
        #[command(flatten)]
        p2p_args: P2pArgs,
        #[command(flatten)]
        service: ServiceArgs,
    },
    /// Show the providers, which of them has a credential for each service seen, and the cached
    /// tokens with their expiry (never a secret).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The mirrors that may see tokens besides the entitlement service's own origin (scheme,
    /// host and port): flatpak installs and pulls from a remote at or beneath one of them get
    /// tokens, and P2P pulls send it the tokens for the refs it has.
    Trust {
        #[command(subcommand)]
        action: TrustAction,
    },
    /// Print the options a P2P pull would use at each place its refs were found, in GVariant
    /// text form: a gated ref's token goes only to the origin and trusted mirrors.
    P2pOptions {
        /// The repository the tokens are for (the origin remote's URL).
        #[arg(long)]
        origin: String,
        /// A place refs were found at, and which: URL=REF[,REF...] (once per place).
        #[arg(long = "result", value_name = "URL=REF[,REF...]", required = true)]
        results: Vec<String>,
        #[command(flatten)]
        service: ServiceArgs,
    },
    /// Install the D-Bus activation file of `tollgate-authenticator`, so that flatpak can start
    /// it: for this user (`--user`, in $XDG_DATA_HOME/dbus-1/services) or for everyone.
    InstallAuthenticator {
        #[arg(long)]
        user: bool,
        /// The authenticator binary (default: `tollgate-authenticator` beside this program).
        #[arg(long, value_name = "PATH")]
        exec: Option<std::path::PathBuf>,
        /// Also look for providers in DIR (the authenticator is started with
        /// TOLLGATE_PROVIDER_PATH=DIR), as `tollgate demo` does for providers of a build tree.
        #[arg(long, value_name = "DIR")]
        provider_path: Option<PathBuf>,
    },
    /// For packaging: write the man pages, shell completions and the providers' pkg-config
    /// file into a folder.
    #[command(hide = true)]
    PackageFiles {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// How a P2P pull finds its refs.
#[derive(Debug, Args)]
pub struct P2pArgs {
    /// Where to look, once per finder: `config` (the local remotes with a collection-id),
    /// `mount` (mounted volumes) or `override=URL` (a repository at URL). Default: config and
    /// mount.
    #[arg(
        long = "finder",
        value_name = "config|mount|override=URL",
        requires = "p2p"
    )]
    pub finders: Vec<String>,
    /// The repository the tokens are for (default: the URL of the local remote with the
    /// collection id).
    #[arg(long, requires = "p2p")]
    pub origin: Option<String>,
    /// Print where each ref would be pulled from and with which options, and pull nothing.
    #[arg(long, requires = "p2p")]
    pub dry_run: bool,
}

impl P2pArgs {
    fn finders(&self) -> anyhow::Result<Vec<Finder>> {
        let mut finders = Vec::new();
        let mut overrides = Vec::new();
        for f in &self.finders {
            match f.as_str() {
                "config" => finders.push(Finder::Config),
                "mount" => finders.push(Finder::Mount),
                _ => match f.strip_prefix("override=") {
                    Some(url) if !url.is_empty() => overrides.push(url.to_owned()),
                    _ => bail!("--finder {f:?}: use config, mount or override=URL"),
                },
            }
        }
        if !overrides.is_empty() {
            finders.push(Finder::Override(overrides));
        }
        if finders.is_empty() {
            finders = vec![Finder::Config, Finder::Mount];
        }
        finders.dedup();
        Ok(finders)
    }
}

/// Where a pull's tokens come from.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The entitlement service's URL (default: the remote's URL, or --origin).
    #[arg(long)]
    pub url: Option<String>,
    /// The repository's name on the server (`tollgate serve --repo NAME=PATH`).
    #[arg(long, default_value = "")]
    pub service_repo: String,
    /// Let providers ask the user, e.g. to unlock a keyring.
    #[arg(long)]
    pub interactive: bool,
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

#[derive(Debug, Subcommand)]
pub enum TrustAction {
    /// Trust a mirror with tokens.
    Add { url: String },
    /// Stop trusting a mirror.
    Remove { url: String },
    /// The mirrors trusted.
    List,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("kind").args(["key_stdin", "token_stdin", "password_stdin"])))]
pub struct LoginArgs {
    pub url: String,
    /// A license key (tg_...), read from stdin.
    #[arg(long)]
    pub key_stdin: bool,
    /// A bearer token, read from stdin.
    #[arg(long)]
    pub token_stdin: bool,
    /// An account's password, read from stdin (with --user).
    #[arg(long, requires = "user")]
    pub password_stdin: bool,
    /// The account's name (its password is asked for, or read from stdin with
    /// --password-stdin). Without --user or a --*-stdin option, the license key is asked for.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Store with this provider only.
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// Let providers ask the user, e.g. to unlock a keyring.
    #[arg(long)]
    pub interactive: bool,
    /// Store the credential without first asking the entitlement service whether it is right
    /// (for when it cannot be reached now).
    #[arg(long)]
    pub no_check: bool,
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

fn out(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

fn load_chain() -> anyhow::Result<Chain> {
    Ok(Chain::load(&search_path(), &Config::read()?))
}

/// What a credential is, without its secret.
fn what(credential: &Credential) -> String {
    match credential.user() {
        Some(user) => format!("{} for {user}", credential.kind()),
        None => credential.kind().to_string(),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Providers { json } => providers(json),
        Command::Credential {
            url,
            interactive,
            json,
        } => credential(&url, interactive, json),
        Command::Login(args) => login(args),
        Command::Logout { url, interactive } => logout(&url, interactive),
        Command::Token {
            url,
            refs,
            repo,
            interactive,
        } => token(&url, refs, repo, interactive),
        Command::Pull {
            local,
            source,
            refs,
            p2p: false,
            p2p_args: _,
            service,
        } => pull(&local, &source, refs, &service),
        Command::Pull {
            local,
            source,
            refs,
            p2p: true,
            p2p_args,
            service,
        } => pull_p2p(&local, &source, &refs, &p2p_args, &service),
        Command::Status { json } => status(json),
        Command::Trust { action } => trust(action),
        Command::P2pOptions {
            origin,
            results,
            service,
        } => p2p_options(&origin, &results, &service),
        Command::InstallAuthenticator {
            user,
            exec,
            provider_path,
        } => install_authenticator(user, exec, provider_path),
        Command::PackageFiles { out } => package_files(&out),
    }
}

fn providers(as_json: bool) -> anyhow::Result<ExitCode> {
    let dirs = search_path();
    let chain = load_chain()?;
    if as_json {
        let value = json!({
            "search-path": dirs,
            "providers": chain.providers.iter().map(|p| json!({
                "name": p.name,
                "version": p.version,
                "description": p.description,
                "capabilities": p.capabilities.names(),
                "abi-minor": p.abi_minor,
                "path": p.path,
            })).collect::<Vec<_>>(),
            "refused": chain.refused.iter().map(|r| json!({
                "path": r.path,
                "reason": r.reason,
            })).collect::<Vec<_>>(),
            "missing": chain.missing,
        });
        out(&serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let paths: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    out(&format!("search path: {}", paths.join(":")));
    if chain.providers.is_empty() {
        out("no providers found");
    }
    for (i, p) in chain.providers.iter().enumerate() {
        out(&format!(
            "{}. {} {} [{}] {}\n   {}",
            i + 1,
            p.name,
            p.version,
            p.capabilities.names().join(", "),
            p.path.display(),
            p.description
        ));
    }
    for r in &chain.refused {
        out(&format!("refused: {} {}", r.path.display(), r.reason));
    }
    for name in &chain.missing {
        out(&format!(
            "missing: {name} is in the configuration's providers, but no provider has that name"
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn credential(url: &str, interactive: bool, as_json: bool) -> anyhow::Result<ExitCode> {
    let url = normalise(url)?;
    let chain = load_chain()?;
    let (found, asked) = chain.lookup(&url, interactive);
    if as_json {
        let value = json!({
            "url": url,
            "found": found.as_ref().map(|(provider, c)| json!({
                "provider": provider,
                "kind": c.kind().name(),
                "user": c.user(),
            })),
            "asked": asked.iter().map(|a| json!({
                "provider": a.provider,
                "path": a.path,
                "answer": describe(&a.answer),
            })).collect::<Vec<_>>(),
        });
        out(&serde_json::to_string_pretty(&value)?);
    } else {
        for line in failures(&asked) {
            note(&line);
        }
        if let Some((provider, credential)) = &found {
            out(&format!("{provider}: {}", what(credential)));
        }
    }
    if found.is_none() {
        if !as_json {
            note(&format!(
                "error: no provider has a credential for {url} (asked {})",
                if asked.is_empty() {
                    "none: no provider can look up".to_owned()
                } else {
                    asked
                        .iter()
                        .map(|a| a.provider.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The first line of stdin, without its line end.
fn read_secret(what: &str) -> anyhow::Result<Secret> {
    // Room for all that is read, so the buffer never moves (leaving a copy behind); wiped
    // when dropped.
    const MAX: usize = 16 * 1024;
    let mut text = zeroize::Zeroizing::new(String::with_capacity(MAX + 1024));
    std::io::stdin()
        .take(MAX as u64)
        .read_to_string(&mut text)
        .with_context(|| format!("reading the {what} from stdin"))?;
    let line = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r');
    if line.is_empty() {
        bail!(
            "no {what} on stdin: pipe it in, e.g. `printf '%s\\n' \"$SECRET\" | tollgate-helper login ...`"
        );
    }
    Ok(Secret::new(line))
}

/// Asks at the terminal, without echo.
fn ask_secret(prompt: &str) -> anyhow::Result<Secret> {
    use std::io::IsTerminal as _;
    if !std::io::stdin().is_terminal() {
        bail!(
            "not at a terminal, so nothing can be asked: pipe the secret in with --key-stdin \
             (or --user NAME --password-stdin, or --token-stdin)"
        );
    }
    let typed = zeroize::Zeroizing::new(
        rpassword::prompt_password(prompt).context("reading from the terminal")?,
    );
    // Only the line end is not part of it (rpassword drops it): spaces may be.
    let typed = typed.trim_end_matches(['\r', '\n']);
    if typed.is_empty() {
        bail!("nothing was typed; nothing is stored");
    }
    Ok(Secret::new(typed))
}

fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let url = normalise(&args.url)?;
    let credential = if args.key_stdin {
        Credential::LicenseKey(read_secret("license key")?)
    } else if args.token_stdin {
        Credential::Token(read_secret("token")?)
    } else if args.password_stdin {
        let user = args.user.clone().unwrap_or_default();
        Credential::Password {
            user,
            password: read_secret("password")?,
        }
    } else if let Some(user) = &args.user {
        Credential::Password {
            user: user.clone(),
            password: ask_secret(&format!("Password of {user} at {url}: "))?,
        }
    } else {
        Credential::LicenseKey(ask_secret(&format!("License key for {url}: "))?)
    };
    let chain = load_chain()?;
    if let Some(name) = &args.provider
        && !chain.providers.iter().any(|p| p.name == *name)
    {
        bail!("no provider named {name:?} (`tollgate-helper providers` lists them)");
    }
    // A token is for the repository server, not the entitlement service: nothing to ask.
    if !args.no_check && !matches!(credential, Credential::Token(_)) {
        let checked = runtime()?.block_on(crate::service::check_credential(
            &crate::service::client()?,
            &url,
            &credential,
        ));
        match checked {
            Ok(entitled) => out(&describe_entitled(&url, &credential, &entitled)),
            Err(
                e @ (crate::service::ServiceError::Unreachable(_)
                | crate::service::ServiceError::Refused { status: 404, .. }),
            ) => bail!(
                "not stored: {}; to store it anyway, unchecked, add --no-check",
                e.explain(&url)
            ),
            Err(e) => bail!("not stored: {}", e.explain(&url)),
        }
    }
    let (stored, asked) = chain.store(
        &url,
        &credential,
        args.interactive,
        args.provider.as_deref(),
    );
    for line in failures(&asked) {
        note(&line);
    }
    match stored {
        Some(provider) => {
            if let Err(e) = crate::known::remember(&url) {
                note(&format!(
                    "could not add {url} to the services `status` lists: {e}"
                ));
            }
            out(&format!(
                "stored the {} for {url} with {provider}",
                what(&credential)
            ));
            Ok(ExitCode::SUCCESS)
        }
        None => bail!(
            "no provider stored the credential for {url}{}",
            if asked.is_empty() {
                ": none can store"
            } else {
                ""
            }
        ),
    }
}

/// What the service said a credential opens, for the person logging in.
fn describe_entitled(
    url: &str,
    credential: &Credential,
    entitled: &crate::service::Entitled,
) -> String {
    let mut text = format!("{url} accepts the {}", what(credential));
    match entitled.expires {
        Some(at) => {
            let at =
                // RFC 3339 ends with year 9999; a later expiry is as good as none.
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(at.clamp(0, 253_402_300_799).unsigned_abs());
            text.push_str(&format!(
                ", valid until {}",
                humantime::format_rfc3339_seconds(at)
            ));
        }
        None => text.push_str(", valid without end"),
    }
    if entitled.products.is_empty() {
        text.push_str("; it includes no product yet");
    }
    for p in &entitled.products {
        text.push_str(&format!(
            "\n  {} ({}): {}{}",
            p.name,
            p.slug,
            p.refs.join(", "),
            if p.active { "" } else { " [withdrawn]" }
        ));
    }
    text
}

fn logout(url: &str, interactive: bool) -> anyhow::Result<ExitCode> {
    let url = normalise(url)?;
    let chain = load_chain()?;
    let asked = chain.erase(&url, interactive);
    let mut failed = false;
    let mut erased = Vec::new();
    for a in &asked {
        match &a.answer {
            Ok(()) => erased.push(a.provider.clone()),
            Err(e) if e.is_not_found() => {}
            Err(_) => {
                failed = true;
                note(&a.line());
            }
        }
    }
    if let Some(cache) = crate::cache::Cache::default_location()
        && let Err(e) = cache.forget(&url)
    {
        note(&format!("could not forget the cached tokens of {url}: {e}"));
    }
    if !failed && let Err(e) = crate::known::forget(&url) {
        note(&format!(
            "could not take {url} off the services `status` lists: {e}"
        ));
    }
    if erased.is_empty() {
        out(&format!("no provider had a credential for {url}"));
    } else {
        out(&format!(
            "forgot the credentials for {url} in {}",
            erased.join(", ")
        ));
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A runtime for the commands that talk to the entitlement service.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Tokens for `want`, or an error that says what to do.
fn tokens_for(want: &Want, interactive: bool) -> anyhow::Result<RefTokens> {
    let helper = Helper::load()?;
    runtime()?
        .block_on(helper.tokens(want, interactive))
        .map_err(|failure| anyhow::anyhow!(failure.explain()))
}

fn token(
    url: &str,
    refs: Vec<String>,
    repo: String,
    interactive: bool,
) -> anyhow::Result<ExitCode> {
    let want = Want {
        url: normalise(url)?,
        repo,
        refs,
    };
    let tokens = tokens_for(&want, interactive)?;
    out(&serde_json::to_string_pretty(
        &json!({ "tokens": grouped(&tokens) }),
    )?);
    Ok(ExitCode::SUCCESS)
}

/// The local repository at `path`, opened.
fn open_repo(path: &Path) -> anyhow::Result<ostree::Repo> {
    let repo = ostree::Repo::new_for_path(path);
    repo.open(None::<&ostree::gio::Cancellable>)
        .with_context(|| format!("opening the OSTree repository {}", path.display()))?;
    Ok(repo)
}

fn pull(
    local: &Path,
    remote: &str,
    refs: Vec<String>,
    service: &ServiceArgs,
) -> anyhow::Result<ExitCode> {
    let repo = open_repo(local)?;
    let remote_url = repo
        .remote_get_url(remote)
        .with_context(|| format!("{}: remote {remote}", local.display()))?
        .to_string();
    // libostree sends the pull's headers to the remote's URL and to its contenturl, if any.
    let content_url = repo
        .remote_option(remote, "contenturl", None)
        .with_context(|| format!("{}: remote {remote}", local.display()))?
        .map(|u| u.to_string());
    let trusted = Config::read()?.trusted_mirrors;
    for address in std::iter::once(&remote_url).chain(&content_url) {
        service
            .may_send_to(address, &remote_url, &trusted)
            .with_context(|| format!("pulling from the remote {remote}"))?;
    }
    let tokens = service.tokens(|| Ok(remote_url.clone()), refs)?;
    for (token, refs) in grouped(&tokens) {
        // Through libostree itself: the token never appears on a command line.
        let options = crate::p2p::headers((!token.is_empty()).then_some(token.as_str()));
        options.insert_value("refs", &ostree::glib::variant::ToVariant::to_variant(&refs));
        repo.pull_with_options(
            remote,
            &options.end(),
            None,
            None::<&ostree::gio::Cancellable>,
        )
        .with_context(|| format!("pulling {} from {remote}", refs.join(" ")))?;
        out(&format!(
            "pulled {} {}",
            refs.join(" "),
            if token.is_empty() {
                "(public)"
            } else {
                "with a token"
            }
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// The URL of the one remote of `repo` with `collection_id`.
fn origin_of(repo: &ostree::Repo, local: &Path, collection_id: &str) -> anyhow::Result<String> {
    let mut found = Vec::new();
    for name in repo.remote_list() {
        let id = repo
            .remote_option(&name, "collection-id", None)
            .ok()
            .flatten();
        if id.as_deref() == Some(collection_id) {
            found.push((name.to_string(), repo.remote_get_url(&name)?.to_string()));
        }
    }
    match found.as_slice() {
        [(_, url)] => Ok(url.clone()),
        [] => bail!(
            "no remote of {} has collection-id {collection_id}: add the origin with \
             `ostree remote add --collection-id={collection_id} NAME URL` (its GPG key too), or \
             name it with --origin URL",
            local.display()
        ),
        several => bail!(
            "several remotes of {} have collection-id {collection_id} ({}): say which one the \
             tokens are for with --origin URL",
            local.display(),
            several
                .iter()
                .map(|(n, u)| format!("{n} at {u}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn pull_p2p(
    local: &Path,
    collection_id: &str,
    refs: &[String],
    p2p: &P2pArgs,
    service: &ServiceArgs,
) -> anyhow::Result<ExitCode> {
    let repo = open_repo(local)?;
    let finders = p2p.finders()?;
    let origin = match &p2p.origin {
        Some(origin) => origin.clone(),
        None => origin_of(&repo, local, collection_id)?,
    };
    let trusted = Config::read()?.trusted_mirrors;
    service.may_send_to(&origin, &origin, &trusted)?;
    let request = crate::p2p::Request {
        collection_id,
        refs,
        finders: &finders,
        origin: &origin,
        trusted: &trusted,
    };
    let tokens = |refs| service.tokens(|| Ok(origin.clone()), refs);
    if p2p.dry_run {
        let (_, found) = crate::p2p::find(&repo, &request)?;
        let (wanted, not_found) = crate::p2p::found_or_not(refs, &found);
        for r in not_found {
            out(&format!("{r}: not found"));
        }
        if !wanted.is_empty() {
            print_plan(&plan(&found, &origin, &trusted, &tokens(wanted)?));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report = crate::p2p::pull(&repo, &request, tokens)?;
    for batch in &report.batches {
        let places = batch
            .places
            .iter()
            .map(|(url, standing)| format!("{url} ({})", standing.name()))
            .collect::<Vec<_>>()
            .join(", ");
        let how = if batch.with_token {
            "with a token"
        } else {
            "without a token"
        };
        let refs = batch.refs.join(" ");
        match &batch.error {
            None => out(&format!("pulled {refs} {how}, from {places}")),
            Some(error) if !batch.withheld.is_empty() => note(&format!(
                "error: {refs} needs a token, which goes only to {origin} and trusted mirrors, \
                 and none of them was found with it; tried without the token at {places}: \
                 {error}. Make the origin reachable, or trust a mirror that has it with \
                 `tollgate-helper trust add URL`."
            )),
            Some(error) => note(&format!(
                "error: pulling {refs} {how} from {places}: {error} (G_MESSAGES_DEBUG=OSTree \
                 shows libostree's account of each place)"
            )),
        }
    }
    for r in &report.not_found {
        note(&format!(
            "error: {r} was found nowhere the finders looked ({}): is the collection id \
             {collection_id} right, and is a place that has it reachable?",
            p2p_finder_names(&finders)
        ));
    }
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The finders, as `--finder` names them.
fn p2p_finder_names(finders: &[Finder]) -> String {
    finders
        .iter()
        .map(|f| match f {
            Finder::Config => "config".to_owned(),
            Finder::Mount => "mount".to_owned(),
            Finder::Override(urls) => urls
                .iter()
                .map(|u| format!("override={u}"))
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each pull of a plan: where, which refs, and its options in GVariant text form.
fn print_plan(pulls: &[crate::p2p::Pull]) {
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

fn trust(action: TrustAction) -> anyhow::Result<ExitCode> {
    let path = config_path().context("no HOME or XDG_CONFIG_HOME: nowhere to keep the list")?;
    match action {
        TrustAction::List => {
            let list = Config::load(Some(&path))?.trusted_mirrors;
            if list.is_empty() {
                out("no trusted mirrors: tokens go only to the origin they were issued for");
            }
            for url in list {
                out(&url);
            }
        }
        TrustAction::Add { url } => {
            let url = normalise(&url)?;
            edit_trusted(&path, |list| {
                if !list.iter().any(|u| normalise(u).is_ok_and(|u| u == url)) {
                    list.push(url.clone());
                }
            })?;
            out(&format!(
                "trusted {url}: installs and pulls from it or beneath it, P2P pulls included, \
                 may send it tokens"
            ));
            if url.starts_with("http://") {
                note(&format!(
                    "warning: {url} is plain HTTP: tokens sent to it can be read on the way"
                ));
            }
        }
        TrustAction::Remove { url } => {
            let url = normalise(&url)?;
            let mut found = false;
            edit_trusted(&path, |list| {
                let before = list.len();
                list.retain(|u| normalise(u).map_or(true, |u| u != url));
                found = list.len() != before;
            })?;
            if !found {
                bail!("{url} was not trusted (`tollgate-helper trust list` shows which are)");
            }
            out(&format!("no longer trusted: {url}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn p2p_options(
    origin: &str,
    results: &[String],
    service: &ServiceArgs,
) -> anyhow::Result<ExitCode> {
    let mut found = Vec::new();
    for result in results {
        let Some((place, refs)) = result.rsplit_once('=') else {
            bail!("--result {result:?} is not URL=REF[,REF...]");
        };
        let refs: Vec<String> = refs
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect();
        if place.is_empty() || refs.is_empty() {
            bail!("--result {result:?} is not URL=REF[,REF...]");
        }
        found.push(Found {
            url: place.to_owned(),
            refs,
        });
    }
    let mut refs: Vec<String> = found.iter().flat_map(|f| f.refs.clone()).collect();
    refs.sort();
    refs.dedup();
    let trusted = Config::read()?.trusted_mirrors;
    service.may_send_to(origin, origin, &trusted)?;
    let tokens = service.tokens(|| Ok(origin.to_owned()), refs)?;
    print_plan(&plan(&found, origin, &trusted, &tokens));
    Ok(ExitCode::SUCCESS)
}

fn status(as_json: bool) -> anyhow::Result<ExitCode> {
    let helper = Helper::load()?;
    let now = crate::cache::now();
    let entries = helper
        .cache
        .as_ref()
        .map(|c| c.entries(now))
        .unwrap_or_default();
    // The services a credential was stored for, then those with cached tokens.
    let mut urls: Vec<String> = crate::known::list();
    for e in &entries {
        if !urls.contains(&e.url) {
            urls.push(e.url.clone());
        }
    }
    let credentials: Vec<(&str, Option<(String, Credential)>)> = urls
        .iter()
        .map(|url| (url.as_str(), helper.chain.lookup(url, false).0))
        .collect();
    let kind = |token: &str| if token.is_empty() { "public" } else { "token" };
    if as_json {
        let value = json!({
            "providers": helper.chain.providers.iter().map(|p| json!({
                "name": p.name,
                "version": p.version,
                "capabilities": p.capabilities.names(),
            })).collect::<Vec<_>>(),
            "credentials": credentials.iter().map(|(url, found)| json!({
                "url": url,
                "found": found.as_ref().map(|(provider, c)| json!({
                    "provider": provider,
                    "kind": c.kind().name(),
                    "user": c.user(),
                })),
            })).collect::<Vec<_>>(),
            "tokens": entries.iter().map(|e| json!({
                "url": e.url,
                "repo": e.repo,
                "ref": e.ref_,
                "kind": kind(&e.token),
                "expires-in": e.expires_at.saturating_sub(now),
            })).collect::<Vec<_>>(),
        });
        out(&serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    out("providers:");
    if helper.chain.providers.is_empty() {
        out("  none found (`tollgate-helper providers` shows where they are looked for)");
    }
    for p in &helper.chain.providers {
        out(&format!(
            "  {} {} [{}]",
            p.name,
            p.version,
            p.capabilities.names().join(", ")
        ));
    }
    out("credentials:");
    if credentials.is_empty() {
        out("  no service seen yet");
    }
    for (url, found) in &credentials {
        match found {
            Some((provider, credential)) => {
                out(&format!("  {url}: {} in {provider}", what(credential)))
            }
            None => out(&format!("  {url}: none stored")),
        }
    }
    out("cached tokens:");
    if entries.is_empty() {
        out("  none");
    }
    for e in &entries {
        let repo = if e.repo.is_empty() {
            String::new()
        } else {
            format!(" repo {}", e.repo)
        };
        out(&format!(
            "  {}{repo} {}: {}, expires in {} s",
            e.url,
            e.ref_,
            kind(&e.token),
            e.expires_at.saturating_sub(now)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn install_authenticator(
    user: bool,
    exec: Option<PathBuf>,
    provider_path: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
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

/// `man/` (this command's page and one per subcommand, gzipped), `completions/` (bash, zsh,
/// fish) and `tollgate-provider.pc`, whose `providersdir` is where the helper finds packaged
/// providers first.
fn package_files(dir: &Path) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    use std::io::Write as _;

    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut command = Cli::command();
    command.build();
    let mut pages = vec![(command.get_name().to_owned(), command.clone())];
    for sub in command
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help")
    {
        let name = format!("{}-{}", command.get_name(), sub.get_name());
        pages.push((name.clone(), sub.clone().display_name(name)));
    }
    for (name, page) in pages {
        let mut roff = Vec::new();
        clap_mangen::Man::new(page).render(&mut roff)?;
        let path = man.join(format!("{name}.1.gz"));
        // No name or time in the gzip header, so that the package builds reproducibly.
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::best());
        gz.write_all(&roff)?;
        std::fs::write(&path, gz.finish()?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let name = command.get_name().to_owned();
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut command, &name, &completions)
            .with_context(|| format!("writing the {shell} completions"))?;
    }
    let pc = format!(
        "prefix=/usr\nincludedir=${{prefix}}/include\nprovidersdir={}\nabi_major={}\n\n\
         Name: tollgate-provider\n\
         Description: Credential-provider plugins for tollgate-helper\n\
         Version: {}\n\
         Cflags: -I${{includedir}}\n",
        crate::chain::PACKAGED_DIR,
        tollgate_plugin_api::abi::ABI_MAJOR,
        env!("CARGO_PKG_VERSION"),
    );
    let path = dir.join("tollgate-provider.pc");
    std::fs::write(&path, pc).with_context(|| format!("writing {}", path.display()))?;
    out(&format!("wrote the package files into {}", dir.display()));
    Ok(ExitCode::SUCCESS)
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
