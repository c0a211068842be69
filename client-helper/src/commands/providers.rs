//! `tollgate-helper providers`: the providers found, in order, and the files not used.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::{load_chain, out};
use crate::chain::search_path;

#[derive(Debug, Args)]
pub(super) struct ProvidersArgs {
    #[arg(long)]
    json: bool,
}

pub(super) fn run(args: &ProvidersArgs) -> anyhow::Result<ExitCode> {
    let as_json = args.json;
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
