//! `tollgate token issue`: a download token made by hand, without the entitlement service.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use tollgate_ostree_format::RefName;

use super::DataDirArg;
use crate::output::print_line;
use crate::repos::is_valid_name;
use crate::tokens::KeyDir;

#[derive(Debug, Subcommand)]
pub(super) enum TokenCommand {
    /// Print a signed download token for the given refs.
    Issue(TokenIssueArgs),
}

#[derive(Debug, Args)]
pub(super) struct TokenIssueArgs {
    #[command(flatten)]
    data_dir: DataDirArg,
    /// A ref the token opens, exactly (e.g. app/com.example.App/x86_64/stable). Repeatable.
    #[arg(long = "ref", value_name = "REF", required = true)]
    refs: Vec<String>,
    /// The repository the token is for: its NAME from `--repo NAME=PATH`; leave it out for the
    /// repository served at `/`.
    #[arg(long, value_name = "NAME", default_value = "")]
    repo: String,
    /// Seconds the token is valid for: 1 to 86400 (a day).
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    ttl: u64,
    /// Who the token is for, recorded in the audit log.
    #[arg(long, value_name = "SUBJECT", default_value = "operator")]
    subject: String,
}

/// Longest validity `token issue` accepts: a day, as for `token-ttl` and as SECURITY.md
/// promises. Download tokens are meant to live minutes.
const MAX_TTL_SECS: u64 = 24 * 3600;

pub(super) fn issue(args: TokenIssueArgs) -> anyhow::Result<()> {
    for r in &args.refs {
        RefName::new(r)?;
    }
    if !args.repo.is_empty() && !is_valid_name(&args.repo) {
        bail!(
            "{:?} is not a repository name (letters, digits, '-', '_', '.')",
            args.repo
        );
    }
    if args.ttl == 0 || args.ttl > MAX_TTL_SECS {
        bail!(
            "--ttl {} is out of range: give 1 to {MAX_TTL_SECS} seconds (a day at most: \
             download tokens are short-lived; make a new one when it runs out)",
            args.ttl
        );
    }
    let keys = KeyDir::new(&args.data_dir.resolve()?);
    let key = keys.load_all()?.into_iter().next().with_context(|| {
        format!(
            "{} has no signing key; make one with `tollgate keys generate`",
            keys.path().display()
        )
    })?;
    let token = crate::tokens::issue(
        &key,
        &args.subject,
        std::slice::from_ref(&args.repo),
        &args.refs,
        args.ttl,
    )?;
    print_line(&token.token);
    Ok(())
}
