//! `tollgate-helper trust add|remove|list`: the mirrors that may see tokens.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use tollgate_plugin_api::url::normalise;

use super::{note, out};
use crate::config::{Config, config_path, edit_trusted};

#[derive(Debug, Subcommand)]
pub(super) enum TrustAction {
    /// Trust a mirror with tokens.
    Add { url: String },
    /// Stop trusting a mirror.
    Remove { url: String },
    /// The mirrors trusted.
    List,
}

pub(super) fn run(action: TrustAction) -> anyhow::Result<ExitCode> {
    let path = config_path().context("no HOME or XDG_CONFIG_HOME: nowhere to keep the list")?;
    match action {
        TrustAction::List => {
            let list = Config::load(Some(&path))?.trusted_mirrors;
            if list.is_empty() {
                out("no trusted mirrors: tokens go only to the origin they were issued for");
            }
            for url in list {
                out(&url);
            }
        }
        TrustAction::Add { url } => {
            let url = normalise(&url)?;
            edit_trusted(&path, |list| {
                if !list.iter().any(|u| normalise(u).is_ok_and(|u| u == url)) {
                    list.push(url.clone());
                }
            })?;
            out(&format!(
                "trusted {url}: installs and pulls from it or beneath it, P2P pulls included, \
                 may send it tokens"
            ));
            if url.starts_with("http://") {
                note(&format!(
                    "warning: {url} is plain HTTP: tokens sent to it can be read on the way"
                ));
            }
        }
        TrustAction::Remove { url } => {
            let url = normalise(&url)?;
            let mut found = false;
            edit_trusted(&path, |list| {
                let before = list.len();
                list.retain(|u| normalise(u).map_or(true, |u| u != url));
                found = list.len() != before;
            })?;
            if !found {
                bail!("{url} was not trusted (`tollgate-helper trust list` shows which are)");
            }
            out(&format!("no longer trusted: {url}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
