//! `tollgate-helper`: the command line.
//!
//! ```text
//! tollgate-helper providers [--json]
//! tollgate-helper credential URL [--interactive] [--json]
//! tollgate-helper login URL (--key-stdin | --token-stdin | --user NAME --password-stdin) [--provider NAME]
//! tollgate-helper logout URL
//! ```
//! Answers go to stdout, the providers' answers along the way and errors to stderr. No command
//! ever prints a secret.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use tollgate_plugin_api::url::normalise;
use tollgate_plugin_api::{Credential, Secret};

use crate::chain::{Chain, describe, search_path};
use crate::config::{Config, config_path};

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
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("kind").required(true).args(["key_stdin", "token_stdin", "password_stdin"])))]
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
    /// The account's name.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Store with this provider only.
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// Let providers ask the user, e.g. to unlock a keyring.
    #[arg(long)]
    pub interactive: bool,
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
    let config = Config::load(config_path().as_deref())?;
    Ok(Chain::load(&search_path(), &config))
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
        for a in asked.iter().filter(|a| a.answer.is_err()) {
            note(&a.line());
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

fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let url = normalise(&args.url)?;
    let credential = if args.key_stdin {
        Credential::LicenseKey(read_secret("license key")?)
    } else if args.token_stdin {
        Credential::Token(read_secret("token")?)
    } else {
        let user = args.user.clone().unwrap_or_default();
        Credential::Password {
            user,
            password: read_secret("password")?,
        }
    };
    let chain = load_chain()?;
    if let Some(name) = &args.provider
        && !chain.providers.iter().any(|p| p.name == *name)
    {
        bail!("no provider named {name:?} (`tollgate-helper providers` lists them)");
    }
    let (stored, asked) = chain.store(
        &url,
        &credential,
        args.interactive,
        args.provider.as_deref(),
    );
    for a in asked.iter().filter(|a| a.answer.is_err()) {
        note(&a.line());
    }
    match stored {
        Some(provider) => {
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
