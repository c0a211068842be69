//! `tollgate-helper p2p-options`: the options a P2P pull would use at each place its refs were
//! found, in GVariant text form.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::{ServiceArgs, print_plan};
use crate::config::Config;
use crate::p2p::{Found, plan};

#[derive(Debug, Args)]
pub(super) struct P2pOptionsArgs {
    /// The repository the tokens are for (the origin remote's URL).
    #[arg(long)]
    origin: String,
    /// A place refs were found at, and which: URL=REF[,REF...] (once per place).
    #[arg(long = "result", value_name = "URL=REF[,REF...]", required = true)]
    results: Vec<String>,
    #[command(flatten)]
    service: ServiceArgs,
}

pub(super) fn run(args: &P2pOptionsArgs) -> anyhow::Result<ExitCode> {
    let (origin, results, service) = (args.origin.as_str(), &args.results, &args.service);
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
