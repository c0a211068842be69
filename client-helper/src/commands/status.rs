//! `tollgate-helper status`: the providers, the credentials for each service seen, and the
//! cached tokens with their expiry (never a secret).

use std::process::ExitCode;

use clap::Args;
use serde_json::json;
use tollgate_plugin_api::Credential;

use super::{out, what};
use crate::tokens::Helper;

#[derive(Debug, Args)]
pub(super) struct StatusArgs {
    #[arg(long)]
    json: bool,
}

pub(super) fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let as_json = args.json;
    let helper = Helper::load()?;
    let now = crate::cache::now();
    let entries = helper
        .cache
        .as_ref()
        .map(|c| c.entries(now))
        .unwrap_or_default();
    // The services a credential was stored for, then those with cached tokens.
    let mut urls: Vec<String> = crate::known::list();
    for e in &entries {
        if !urls.contains(&e.url) {
            urls.push(e.url.clone());
        }
    }
    let credentials: Vec<(&str, Option<(String, Credential)>)> = urls
        .iter()
        .map(|url| (url.as_str(), helper.chain.lookup(url, false).0))
        .collect();
    let kind = |token: &str| if token.is_empty() { "public" } else { "token" };
    if as_json {
        let value = json!({
            "providers": helper.chain.providers.iter().map(|p| json!({
                "name": p.name,
                "version": p.version,
                "capabilities": p.capabilities.names(),
            })).collect::<Vec<_>>(),
            "credentials": credentials.iter().map(|(url, found)| json!({
                "url": url,
                "found": found.as_ref().map(|(provider, c)| json!({
                    "provider": provider,
                    "kind": c.kind().name(),
                    "user": c.user(),
                })),
            })).collect::<Vec<_>>(),
            "tokens": entries.iter().map(|e| json!({
                "url": e.url,
                "repo": e.repo,
                "ref": e.ref_,
                "kind": kind(&e.token),
                "expires-in": e.expires_at.saturating_sub(now),
            })).collect::<Vec<_>>(),
        });
        out(&serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    out("providers:");
    if helper.chain.providers.is_empty() {
        out("  none found (`tollgate-helper providers` shows where they are looked for)");
    }
    for p in &helper.chain.providers {
        out(&format!(
            "  {} {} [{}]",
            p.name,
            p.version,
            p.capabilities.names().join(", ")
        ));
    }
    out("credentials:");
    if credentials.is_empty() {
        out("  no service seen yet");
    }
    for (url, found) in &credentials {
        match found {
            Some((provider, credential)) => {
                out(&format!("  {url}: {} in {provider}", what(credential)))
            }
            None => out(&format!("  {url}: none stored")),
        }
    }
    out("cached tokens:");
    if entries.is_empty() {
        out("  none");
    }
    for e in &entries {
        let repo = if e.repo.is_empty() {
            String::new()
        } else {
            format!(" repo {}", e.repo)
        };
        out(&format!(
            "  {}{repo} {}: {}, expires in {} s",
            e.url,
            e.ref_,
            kind(&e.token),
            e.expires_at.saturating_sub(now)
        ));
    }
    Ok(ExitCode::SUCCESS)
}
