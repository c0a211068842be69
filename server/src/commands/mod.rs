//! The `tollgate` command line: one module per command, each owning its clap arguments, over the
//! library core. Nothing outside this folder uses it, and clap appears only here (the
//! `workspace_rules` tests keep it so): the core takes plain values and option structs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod admin;
mod authenticator;
mod demo;
mod inspect;
mod keys;
mod serve;
mod token;

/// tollgate serves OSTree and Flatpak repositories over HTTP, so that people install with the
/// ordinary `flatpak install` and `ostree pull`.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve OSTree archive repositories over HTTP.
    Serve(serve::ServeArgs),
    /// Build a small Flatpak repository with the real flatpak tools, serve it, and print the
    /// commands that install from it.
    Demo(demo::DemoArgs),
    /// Manage the Ed25519 keys that sign download tokens.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Make download tokens by hand (the entitlement service makes them for customers).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Build a repository's reachability index and say which refs are gated, why, and what
    /// the index costs (objects, bytes, build time). Reads the repository only.
    Inspect(inspect::InspectArgs),
    /// Manage products, licenses and accounts, and read the audit records, straight in the
    /// database (the server may be running).
    Admin(admin::AdminArgs),
    /// Point a Flatpak repository's clients at tollgate's authenticator: writes
    /// `xa.authenticator-name` and `xa.authenticator-options.auth-server-url` (and `.repo`) into its config
    /// and summary with the real `flatpak build-update-repo`, so that a plain
    /// `flatpak remote-add` sets everything up.
    Authenticator(authenticator::AuthenticatorArgs),
}

/// `--data-dir`, which several commands take.
#[derive(Debug, Args)]
struct DataDirArg {
    /// Where tollgate keeps its own state: the signing keys and the SQLite database; created
    /// with mode 0700 if missing. [default: $XDG_DATA_HOME/tollgate, or
    /// ~/.local/share/tollgate]
    #[arg(long = "data-dir", value_name = "DIR", env = "TOLLGATE_DATA_DIR")]
    dir: Option<PathBuf>,
}

impl DataDirArg {
    fn resolve(&self) -> anyhow::Result<PathBuf> {
        match &self.dir {
            Some(dir) => Ok(dir.clone()),
            None => crate::datadir::default_data_dir(),
        }
    }
}

/// `--database-url`, for the commands that use the entitlement database.
#[derive(Debug, Args)]
struct DatabaseArg {
    /// The entitlement database: PostgreSQL at this URL (postgres://USER@HOST/DB), instead of
    /// SQLite in the data directory (tollgate.db).
    #[arg(
        long = "database-url",
        value_name = "URL",
        env = "TOLLGATE_DATABASE_URL",
        hide_env_values = true
    )]
    url: Option<String>,
}

/// `--listen`, for the commands that serve.
#[derive(Debug, Args)]
struct ListenArg {
    /// The address to listen on. Port 0 picks a free port; the address chosen is logged as
    /// "listening on http://ADDR/".
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8080",
        env = "TOLLGATE_LISTEN"
    )]
    listen: SocketAddr,
}

/// Parses the command line, runs the command, and turns an error into one line on stderr
/// (the whole chain of causes) and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::logging::init();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Keys(command) => keys::run(command),
        Command::Token(token::TokenCommand::Issue(args)) => token::issue(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Admin(args) => admin::run(args),
        Command::Authenticator(args) => authenticator::run(args),
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
