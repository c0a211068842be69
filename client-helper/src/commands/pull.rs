//! `tollgate-helper pull`: refs of a remote into a local repository, each group that shares a
//! token with its own header; with `--p2p`, from wherever libostree's finders find them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use super::{ServiceArgs, note, out, print_plan};
use crate::config::Config;
use crate::libostree::Finder;
use crate::p2p::plan;
use crate::tokens::grouped;

#[derive(Debug, Args)]
pub(super) struct PullArgs {
    /// The local OSTree repository.
    #[arg(long = "repo", value_name = "PATH")]
    local: PathBuf,
    /// The remote to pull from; with --p2p, the collection id.
    #[arg(value_name = "REMOTE|COLLECTION-ID")]
    source: String,
    #[arg(required = true)]
    refs: Vec<String>,
    /// Find the refs with libostree's finders and pull them from wherever they are.
    #[arg(long)]
    p2p: bool,
    #[command(flatten)]
    p2p_args: P2pArgs,
    #[command(flatten)]
    service: ServiceArgs,
}

pub(super) fn run(args: PullArgs) -> anyhow::Result<ExitCode> {
    if args.p2p {
        pull_p2p(
            &args.local,
            &args.source,
            &args.refs,
            &args.p2p_args,
            &args.service,
        )
    } else {
        pull(&args.local, &args.source, args.refs, &args.service)
    }
}

/// How a P2P pull finds its refs.
#[derive(Debug, Args)]
struct P2pArgs {
    /// Where to look, once per finder: `config` (the local remotes with a collection-id),
    /// `mount` (mounted volumes) or `override=URL` (a repository at URL). Default: config and
    /// mount.
    #[arg(
        long = "finder",
        value_name = "config|mount|override=URL",
        requires = "p2p"
    )]
    finders: Vec<String>,
    /// The repository the tokens are for (default: the URL of the local remote with the
    /// collection id).
    #[arg(long, requires = "p2p")]
    origin: Option<String>,
    /// Print where each ref would be pulled from and with which options, and pull nothing.
    #[arg(long, requires = "p2p")]
    dry_run: bool,
}

impl P2pArgs {
    fn finders(&self) -> anyhow::Result<Vec<Finder>> {
        let mut finders = Vec::new();
        let mut overrides = Vec::new();
        for f in &self.finders {
            match f.as_str() {
                "config" => finders.push(Finder::Config),
                "mount" => finders.push(Finder::Mount),
                _ => match f.strip_prefix("override=") {
                    Some(url) if !url.is_empty() => overrides.push(url.to_owned()),
                    _ => bail!("--finder {f:?}: use config, mount or override=URL"),
                },
            }
        }
        if !overrides.is_empty() {
            finders.push(Finder::Override(overrides));
        }
        if finders.is_empty() {
            finders = vec![Finder::Config, Finder::Mount];
        }
        finders.dedup();
        Ok(finders)
    }
}

/// The local repository at `path`, opened.
fn open_repo(path: &Path) -> anyhow::Result<ostree::Repo> {
    let repo = ostree::Repo::new_for_path(path);
    repo.open(None::<&ostree::gio::Cancellable>)
        .with_context(|| format!("opening the OSTree repository {}", path.display()))?;
    Ok(repo)
}

fn pull(
    local: &Path,
    remote: &str,
    refs: Vec<String>,
    service: &ServiceArgs,
) -> anyhow::Result<ExitCode> {
    let repo = open_repo(local)?;
    let remote_url = repo
        .remote_get_url(remote)
        .with_context(|| format!("{}: remote {remote}", local.display()))?
        .to_string();
    // libostree sends the pull's headers to the remote's URL and to its contenturl, if any.
    let content_url = repo
        .remote_option(remote, "contenturl", None)
        .with_context(|| format!("{}: remote {remote}", local.display()))?
        .map(|u| u.to_string());
    let trusted = Config::read()?.trusted_mirrors;
    for address in std::iter::once(&remote_url).chain(&content_url) {
        service
            .may_send_to(address, &remote_url, &trusted)
            .with_context(|| format!("pulling from the remote {remote}"))?;
    }
    let tokens = service.tokens(|| Ok(remote_url.clone()), refs)?;
    for (token, refs) in grouped(&tokens) {
        // Through libostree itself: the token never appears on a command line.
        let options = crate::p2p::headers((!token.is_empty()).then_some(token.as_str()));
        options.insert_value("refs", &ostree::glib::variant::ToVariant::to_variant(&refs));
        repo.pull_with_options(
            remote,
            &options.end(),
            None,
            None::<&ostree::gio::Cancellable>,
        )
        .with_context(|| format!("pulling {} from {remote}", refs.join(" ")))?;
        out(&format!(
            "pulled {} {}",
            refs.join(" "),
            if token.is_empty() {
                "(public)"
            } else {
                "with a token"
            }
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// The URL of the one remote of `repo` with `collection_id`.
fn origin_of(repo: &ostree::Repo, local: &Path, collection_id: &str) -> anyhow::Result<String> {
    let mut found = Vec::new();
    for name in repo.remote_list() {
        let id = repo
            .remote_option(&name, "collection-id", None)
            .ok()
            .flatten();
        if id.as_deref() == Some(collection_id) {
            found.push((name.to_string(), repo.remote_get_url(&name)?.to_string()));
        }
    }
    match found.as_slice() {
        [(_, url)] => Ok(url.clone()),
        [] => bail!(
            "no remote of {} has collection-id {collection_id}: add the origin with \
             `ostree remote add --collection-id={collection_id} NAME URL` (its GPG key too), or \
             name it with --origin URL",
            local.display()
        ),
        several => bail!(
            "several remotes of {} have collection-id {collection_id} ({}): say which one the \
             tokens are for with --origin URL",
            local.display(),
            several
                .iter()
                .map(|(n, u)| format!("{n} at {u}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn pull_p2p(
    local: &Path,
    collection_id: &str,
    refs: &[String],
    p2p: &P2pArgs,
    service: &ServiceArgs,
) -> anyhow::Result<ExitCode> {
    let repo = open_repo(local)?;
    let finders = p2p.finders()?;
    let origin = match &p2p.origin {
        Some(origin) => origin.clone(),
        None => origin_of(&repo, local, collection_id)?,
    };
    let trusted = Config::read()?.trusted_mirrors;
    service.may_send_to(&origin, &origin, &trusted)?;
    let request = crate::p2p::Request {
        collection_id,
        refs,
        finders: &finders,
        origin: &origin,
        trusted: &trusted,
    };
    let tokens = |refs| service.tokens(|| Ok(origin.clone()), refs);
    if p2p.dry_run {
        let (_, found) = crate::p2p::find(&repo, &request)?;
        let (wanted, not_found) = crate::p2p::found_or_not(refs, &found);
        for r in not_found {
            out(&format!("{r}: not found"));
        }
        if !wanted.is_empty() {
            print_plan(&plan(&found, &origin, &trusted, &tokens(wanted)?));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report = crate::p2p::pull(&repo, &request, tokens)?;
    for batch in &report.batches {
        let places = batch
            .places
            .iter()
            .map(|(url, standing)| format!("{url} ({})", standing.name()))
            .collect::<Vec<_>>()
            .join(", ");
        let how = if batch.with_token {
            "with a token"
        } else {
            "without a token"
        };
        let refs = batch.refs.join(" ");
        match &batch.error {
            None => out(&format!("pulled {refs} {how}, from {places}")),
            Some(error) if !batch.withheld.is_empty() => note(&format!(
                "error: {refs} needs a token, which goes only to {origin} and trusted mirrors, \
                 and none of them was found with it; tried without the token at {places}: \
                 {error}. Make the origin reachable, or trust a mirror that has it with \
                 `tollgate-helper trust add URL`."
            )),
            Some(error) => note(&format!(
                "error: pulling {refs} {how} from {places}: {error} (G_MESSAGES_DEBUG=OSTree \
                 shows libostree's account of each place)"
            )),
        }
    }
    for r in &report.not_found {
        note(&format!(
            "error: {r} was found nowhere the finders looked ({}): is the collection id \
             {collection_id} right, and is a place that has it reachable?",
            p2p_finder_names(&finders)
        ));
    }
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The finders, as `--finder` names them.
fn p2p_finder_names(finders: &[Finder]) -> String {
    finders
        .iter()
        .map(|f| match f {
            Finder::Config => "config".to_owned(),
            Finder::Mount => "mount".to_owned(),
            Finder::Override(urls) => urls
                .iter()
                .map(|u| format!("override={u}"))
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
