//! Commands for operators: `tollgate keys ...` and `tollgate token issue`, so that keys and
//! tokens can be made and inspected without the entitlement service.

use anyhow::{Context, bail};
use tollgate_ostree_format::RefName;

use crate::cli::{KeysCommand, TokenIssueArgs};
use crate::repos::is_valid_name;
use crate::serve::prepare_data_dir;
use crate::tokens::{KeyDir, issue};

/// Longest validity `token issue` accepts: a year. Download tokens are meant to live minutes.
const MAX_TTL_SECS: u64 = 365 * 24 * 3600;

pub fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate(dir) => {
            let data_dir = dir.resolve()?;
            prepare_data_dir(&data_dir)?;
            let keys = KeyDir::new(&data_dir);
            let (key, created) = keys.ensure()?;
            let what = if created { "created" } else { "already has" };
            tracing::info!(
                "{} {what} the signing key {}",
                keys.path().display(),
                key.kid()
            );
            print_line(key.kid());
        }
        KeysCommand::List(dir) => {
            let keys = KeyDir::new(&dir.resolve()?).load_all()?;
            if keys.is_empty() {
                bail!("no signing keys yet; `tollgate keys generate` makes one");
            }
            for (i, key) in keys.iter().enumerate() {
                let role = if i == 0 { "signing" } else { "verifying" };
                print_line(&format!("{}  created {}  {role}", key.kid(), key.created()));
                print_line(key.public_pem().trim_end());
            }
        }
    }
    Ok(())
}

pub fn issue_token(args: TokenIssueArgs) -> anyhow::Result<()> {
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
            "--ttl {} is out of range: give 1 to {MAX_TTL_SECS} seconds",
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
    let token = issue(
        &key,
        &args.subject,
        std::slice::from_ref(&args.repo),
        &args.refs,
        args.ttl,
    )?;
    print_line(&token);
    Ok(())
}

fn print_line(text: &str) {
    #[allow(clippy::print_stdout)]
    {
        println!("{text}");
    }
}
