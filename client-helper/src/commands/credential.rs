//! `tollgate-helper credential URL`: which provider has a credential for a service, and of
//! what kind (never the secret).

use std::process::ExitCode;

use clap::Args;
use serde_json::json;
use tollgate_plugin_api::url::normalise;

use super::{load_chain, note, out, what};
use crate::chain::{describe, failures};

#[derive(Debug, Args)]
pub(super) struct CredentialArgs {
    /// The entitlement service's URL (the repository's URL, for tollgate).
    url: String,
    /// Let providers ask the user, e.g. to unlock a keyring.
    #[arg(long)]
    interactive: bool,
    #[arg(long)]
    json: bool,
}

pub(super) fn run(args: &CredentialArgs) -> anyhow::Result<ExitCode> {
    let (interactive, as_json) = (args.interactive, args.json);
    let url = normalise(&args.url)?;
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
