//! `tollgate-helper logout URL`: forget a service's credentials and cached tokens.

use std::process::ExitCode;

use clap::Args;
use tollgate_plugin_api::url::normalise;

use super::{load_chain, note, out};

#[derive(Debug, Args)]
pub(super) struct LogoutArgs {
    url: String,
    /// Let providers ask the user, e.g. to unlock a keyring.
    #[arg(long)]
    interactive: bool,
}

pub(super) fn run(args: &LogoutArgs) -> anyhow::Result<ExitCode> {
    let url = normalise(&args.url)?;
    let interactive = args.interactive;
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
    if let Some(cache) = crate::cache::Cache::default_location()
        && let Err(e) = cache.forget(&url)
    {
        note(&format!("could not forget the cached tokens of {url}: {e}"));
    }
    if !failed && let Err(e) = crate::known::forget(&url) {
        note(&format!(
            "could not take {url} off the services `status` lists: {e}"
        ));
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
