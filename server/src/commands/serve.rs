//! `tollgate serve`: the repositories, the address, the data directory, the configuration and
//! the database, from the command line and the environment.

use std::path::PathBuf;

use clap::Args;

use super::{DataDirArg, DatabaseArg, ListenArg};
use crate::repos::RepoArg;

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// An OSTree archive repository to serve: a folder, or `s3://BUCKET/PREFIX` in S3-compatible
    /// object storage (see [storage] in the configuration). `PATH` serves it at `/`;
    /// `NAME=PATH` serves it at `/NAME/`. Repeat to serve several (at most one at `/`).
    #[arg(long = "repo", value_name = "[NAME=]PATH", required = true)]
    repos: Vec<RepoArg>,
    #[command(flatten)]
    listen: ListenArg,
    #[command(flatten)]
    data_dir: DataDirArg,
    /// A TOML configuration file: refs gated by name, and keys, key sets and the flat-manager
    /// secret whose tokens are accepted (see the README).
    #[arg(long, value_name = "FILE", env = "TOLLGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    database: DatabaseArg,
}

pub(super) fn run(args: ServeArgs) -> anyhow::Result<()> {
    crate::serve::serve(crate::serve::Options {
        repos: args.repos,
        listen: args.listen.listen,
        data_dir: args.data_dir.resolve()?,
        config: args.config,
        database_url: args.database.url,
    })
}
