//! The `tollgate` command line: every subcommand and flag, and the entry point `main` calls.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::repos::RepoArg;

/// tollgate serves OSTree and Flatpak repositories over HTTP, so that people install with the
/// ordinary `flatpak install` and `ostree pull`.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve OSTree archive repositories over HTTP.
    Serve(ServeArgs),
    /// Build a small Flatpak repository with the real flatpak tools, serve it, and print the
    /// commands that install from it.
    Demo(DemoArgs),
    /// Manage the Ed25519 keys that sign download tokens.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Make download tokens by hand (the entitlement service makes them for customers).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Build a repository's reachability index and say which refs are gated, why, and what
    /// the index costs (objects, bytes, build time). Reads the repository only.
    Inspect(InspectArgs),
    /// Manage products, licenses and accounts, and read the audit records, straight in the
    /// database (the server may be running).
    Admin(AdminArgs),
    /// Point a Flatpak repository's clients at tollgate's authenticator: writes
    /// `xa.authenticator-name` and `xa.authenticator-options.auth-server-url` (and `.repo`) into its config
    /// and summary with the real `flatpak build-update-repo`, so that a plain
    /// `flatpak remote-add` sets everything up.
    Authenticator(AuthenticatorArgs),
}

#[derive(Debug, Args)]
pub struct AuthenticatorArgs {
    /// The archive repository, as `tollgate serve --repo` serves it.
    #[arg(long, value_name = "PATH")]
    pub repo: PathBuf,
    /// The entitlement service's address as customers reach it, e.g. https://apps.example.com
    #[arg(long)]
    pub url: String,
    /// The repository's name on the server, when it is served as `--repo NAME=PATH`.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Also publish the authenticator as a Flatpak app of this repository
    /// (app/org.tollgate.Authenticator/ARCH/autoinstall) and set authenticator-install, so that
    /// flatpak installs it by itself: customers need nothing but flatpak. Run it again to
    /// publish an update.
    #[arg(long)]
    pub install: bool,
    /// The runtime the app runs on, which customers get from the remotes they have (Flathub).
    #[arg(long, value_name = "ID", default_value = "org.freedesktop.Platform")]
    pub runtime: String,
    /// The runtime's branch.
    #[arg(long, value_name = "BRANCH", default_value = "25.08")]
    pub runtime_branch: String,
    /// The folder with `tollgate-authenticator` and the providers' libraries
    /// (`libtollgate_provider_secret_service.so`, `libtollgate_provider_file.so`) to put in the
    /// app [default: the folder of this program, as in a release build's target/release]
    #[arg(long, value_name = "DIR")]
    pub binaries: Option<PathBuf>,
    /// The app's architecture [default: flatpak's default architecture]
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// A PostgreSQL database instead of the SQLite one in the data directory.
    #[arg(
        long,
        value_name = "URL",
        env = "TOLLGATE_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Print JSON instead of tables, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Products: what is sold, as ref patterns.
    #[command(subcommand)]
    Product(ProductCommand),
    /// Licenses: keys that open products.
    #[command(subcommand)]
    License(LicenseCommand),
    /// Accounts: a name and a password that open products.
    #[command(subcommand)]
    Account(AccountCommand),
    /// The tokens issued (or, with --downloads, the gated downloads), newest first.
    Audit(AuditArgs),
}

#[derive(Debug, Subcommand)]
pub enum ProductCommand {
    /// Add a product.
    Add {
        /// Its short identifier: lowercase letters, digits and '-'.
        slug: String,
        #[arg(long)]
        name: String,
        /// A ref pattern it covers (`*` any run of characters, `?` one). Repeatable.
        #[arg(long = "ref", value_name = "PATTERN", required = true)]
        refs: Vec<String>,
        /// The repository whose refs it covers: NAME as served with `--repo NAME=PATH`, or ''
        /// for the one served at `/`. Needed when the server serves several; left out, the
        /// product covers the only repository served (and nothing while several are).
        #[arg(long, value_name = "NAME")]
        repo: Option<String>,
    },
    List,
    Show {
        slug: String,
    },
    /// Change a product's name or patterns.
    Update {
        slug: String,
        #[arg(long)]
        name: Option<String>,
        /// Replaces all patterns. Repeatable.
        #[arg(long = "ref", value_name = "PATTERN")]
        refs: Vec<String>,
        /// Moves it to this repository (NAME, or '' for the one served at `/`).
        #[arg(long, value_name = "NAME")]
        repo: Option<String>,
    },
    /// Withdraw a product: it opens nothing, whoever holds it, until activated again (tokens
    /// already issued run out within minutes).
    Deactivate {
        slug: String,
    },
    Activate {
        slug: String,
    },
    /// Remove a product that no license or account holds.
    Remove {
        slug: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LicenseCommand {
    /// Create a license and print its key, once: only a hash of it is kept.
    Add {
        /// A product it opens. Repeatable.
        #[arg(long = "product", value_name = "SLUG", required = true)]
        products: Vec<String>,
        /// When it stops working (RFC 3339, e.g. 2027-01-31T00:00:00Z).
        #[arg(long, value_name = "RFC3339")]
        expires: Option<String>,
        #[arg(long, default_value = "")]
        note: String,
    },
    List,
    Show {
        id: String,
    },
    /// Change what a license opens, when it expires, or its note.
    Update {
        id: String,
        /// Replaces all products. Repeatable.
        #[arg(long = "product", value_name = "SLUG")]
        products: Vec<String>,
        #[arg(long, value_name = "RFC3339", conflicts_with = "no_expiry")]
        expires: Option<String>,
        /// Make it never expire.
        #[arg(long)]
        no_expiry: bool,
        #[arg(long)]
        note: Option<String>,
    },
    /// Stop a license from getting tokens (tokens already issued run out within minutes).
    Deactivate {
        id: String,
    },
    Activate {
        id: String,
    },
    Remove {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account; the password is read from stdin.
    Add {
        name: String,
        /// A product it opens. Repeatable.
        #[arg(long = "product", value_name = "SLUG", required = true)]
        products: Vec<String>,
    },
    List,
    Show {
        name: String,
    },
    /// Change what an account opens, or (with --password-stdin) its password.
    Update {
        name: String,
        #[arg(long = "product", value_name = "SLUG")]
        products: Vec<String>,
        #[arg(long)]
        password_stdin: bool,
    },
    Deactivate {
        name: String,
    },
    Activate {
        name: String,
    },
    Remove {
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only records from this time on: RFC 3339, or an age such as `24h` or `7days`.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only tokens issued to this license.
    #[arg(long, value_name = "ID")]
    pub license: Option<String>,
    /// Only records for this ref.
    #[arg(long = "ref", value_name = "REF")]
    pub ref_name: Option<String>,
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: i64,
    /// Gated downloads instead of issued tokens.
    #[arg(long)]
    pub downloads: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The archive repository to inspect.
    #[arg(long, value_name = "PATH")]
    pub repo: PathBuf,
    /// The configuration file whose `gated-refs` patterns apply.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print JSON instead of text, for scripts and benchmarks.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create the data directory's signing key, unless it has one (`tollgate serve` does this
    /// too on its first start). Prints the key id.
    Generate(DataDirArg),
    /// List the signing keys, newest (the one that signs) first.
    List(DataDirArg),
    /// Make a new signing key. Servers sign with it within seconds; the old keys stay
    /// published and trusted until every token they signed has expired.
    Rotate {
        #[command(flatten)]
        data_dir: DataDirArg,
        /// The entitlement database, when it is PostgreSQL.
        #[arg(
            long,
            value_name = "URL",
            env = "TOLLGATE_DATABASE_URL",
            hide_env_values = true
        )]
        database_url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a signed download token for the given refs.
    Issue(TokenIssueArgs),
}

#[derive(Debug, Args)]
pub struct TokenIssueArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// A ref the token opens, exactly (e.g. app/com.example.App/x86_64/stable). Repeatable.
    #[arg(long = "ref", value_name = "REF", required = true)]
    pub refs: Vec<String>,
    /// The repository the token is for: its NAME from `--repo NAME=PATH`; leave it out for the
    /// repository served at `/`.
    #[arg(long, value_name = "NAME", default_value = "")]
    pub repo: String,
    /// Seconds the token is valid for: 1 to 86400 (a day).
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub ttl: u64,
    /// Who the token is for, recorded in the audit log.
    #[arg(long, value_name = "SUBJECT", default_value = "operator")]
    pub subject: String,
}

#[derive(Debug, Args)]
pub struct DataDirArg {
    /// Where tollgate keeps its own state: signing keys (and the database, in later
    /// versions); created with mode 0700 if missing. [default: $XDG_DATA_HOME/tollgate, or
    /// ~/.local/share/tollgate]
    #[arg(long = "data-dir", value_name = "DIR", env = "TOLLGATE_DATA_DIR")]
    pub dir: Option<PathBuf>,
}

impl DataDirArg {
    pub fn resolve(&self) -> anyhow::Result<PathBuf> {
        match &self.dir {
            Some(dir) => Ok(dir.clone()),
            None => default_data_dir(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// An OSTree archive repository to serve: a folder, or `s3://BUCKET/PREFIX` in S3-compatible
    /// object storage (see [storage] in the configuration). `PATH` serves it at `/`;
    /// `NAME=PATH` serves it at `/NAME/`. Repeat to serve several (at most one at `/`).
    #[arg(long = "repo", value_name = "[NAME=]PATH", required = true)]
    pub repos: Vec<RepoArg>,
    #[command(flatten)]
    pub listen: ListenArg,
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// A TOML configuration file: refs gated by name, and keys, key sets and the flat-manager
    /// secret whose tokens are accepted (see the README).
    #[arg(long, value_name = "FILE", env = "TOLLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The entitlement database: PostgreSQL at this URL (postgres://USER@HOST/DB), instead of
    /// SQLite in the data directory (tollgate.db).
    #[arg(
        long,
        value_name = "URL",
        env = "TOLLGATE_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo keeps everything: the repository in DIR/repo, the server's state in
    /// DIR/data. A demo repository already there is served again as it is.
    /// [default: $XDG_DATA_HOME/tollgate/demo, or ~/.local/share/tollgate/demo]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub listen: ListenArg,
}

impl DemoArgs {
    pub fn dir(&self) -> anyhow::Result<PathBuf> {
        match &self.dir {
            Some(dir) => Ok(dir.clone()),
            None => Ok(default_data_dir()?.join("demo")),
        }
    }
}

#[derive(Debug, Args)]
pub struct ListenArg {
    /// The address to listen on. Port 0 picks a free port; the address chosen is logged as
    /// "listening on http://ADDR/".
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8080",
        env = "TOLLGATE_LISTEN"
    )]
    pub listen: SocketAddr,
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
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

/// Parses the command line, runs the command, and turns an error into one line on stderr
/// (the whole chain of causes) and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::logging::init();
    let result = match cli.command {
        Command::Serve(args) => crate::serve::serve(args),
        Command::Demo(args) => crate::demo::demo(args),
        Command::Keys(command) => crate::operator::keys(command),
        Command::Token(TokenCommand::Issue(args)) => crate::operator::issue_token(args),
        Command::Inspect(args) => crate::operator::inspect(args),
        Command::Admin(args) => crate::admin_cli::run(args),
        Command::Authenticator(args) => crate::operator::authenticator(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {err:#}");
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
