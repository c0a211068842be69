//! `tollgate-helper token URL REF...`: download tokens for refs, as JSON.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;
use tollgate_plugin_api::url::normalise;

use super::{out, tokens_for};
use crate::service::Want;
use crate::tokens::grouped;

#[derive(Debug, Args)]
pub(super) struct TokenArgs {
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
}

pub(super) fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let want = Want {
        url: normalise(&args.url)?,
        repo: args.repo,
        refs: args.refs,
    };
    let tokens = tokens_for(&want, args.interactive)?;
    out(&serde_json::to_string_pretty(
        &json!({ "tokens": grouped(&tokens) }),
    )?);
    Ok(ExitCode::SUCCESS)
}
