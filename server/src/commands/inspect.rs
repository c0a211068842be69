//! `tollgate inspect`: the refs, whether each is gated and why, and the index's cost.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tollgate_ostree_format::{Commit, Repo, load_commit};

use crate::config::Config;
use crate::index::{Access, RepoIndex};
use crate::output::print_line;

#[derive(Debug, Args)]
pub(super) struct InspectArgs {
    /// The archive repository to inspect.
    #[arg(long, value_name = "PATH")]
    repo: PathBuf,
    /// The configuration file whose `gated-refs` patterns apply.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print JSON instead of text, for scripts and benchmarks.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(args: InspectArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let repo = Repo::open(&args.repo)?;
    let peak_before = peak_rss_bytes();
    let rules = crate::index::Rules {
        gated_by_name: &|name| config.gates_by_name(name),
        max_ref_objects: config.limits.max_ref_objects,
    };
    let index = RepoIndex::build(&repo, rules, &mut |_| {})
        .with_context(|| format!("indexing {}", args.repo.display()))?;
    let stats = index.stats();
    let mut refs = Vec::new();
    for (name, commit) in repo.heads_skipping(&mut |e| tracing::warn!("{e}"))? {
        let token_type = load_commit(&repo, commit)
            .ok()
            .as_ref()
            .and_then(Commit::token_type);
        let gated = matches!(index.ref_file(name.as_str()), Access::Gated(_));
        let why = match (gated, token_type.unwrap_or(0) != 0) {
            (false, _) => "public",
            (true, true) => "gated by xa.token-type",
            (true, false) => "gated by a gated-refs pattern (flatpak cannot install it)",
        };
        refs.push((
            name.to_string(),
            commit.to_string(),
            token_type.unwrap_or(0),
            why,
        ));
    }
    let per_object = stats.bytes as f64 / stats.objects.max(1) as f64;
    if args.json {
        let refs: Vec<serde_json::Value> = refs
            .iter()
            .map(|(name, commit, token_type, why)| {
                serde_json::json!({"ref": name, "commit": commit, "token-type": token_type,
                                   "gated": *why != "public"})
            })
            .collect();
        let json = serde_json::json!({
            "repo": args.repo,
            "objects": stats.objects,
            "public-objects": stats.public_objects,
            "public-refs": stats.public_refs,
            "gated-refs": stats.gated_refs,
            "access-sets": stats.access_sets,
            "index-bytes": stats.bytes,
            "bytes-per-object": per_object,
            "build-seconds": stats.build_time.as_secs_f64(),
            "peak-rss-bytes": peak_rss_bytes(),
            "peak-rss-bytes-before-build": peak_before,
            "refs": refs,
        });
        print_line(&serde_json::to_string_pretty(&json)?);
    } else {
        for (name, commit, _, why) in &refs {
            print_line(&format!("{name}  {}  {why}", &commit[..12]));
        }
        print_line(&format!(
            "{} objects ({} public), {} public and {} gated refs; index {} bytes ({per_object:.1} \
             per object), built in {:.2?}",
            stats.objects,
            stats.public_objects,
            stats.public_refs,
            stats.gated_refs,
            stats.bytes,
            stats.build_time
        ));
    }
    Ok(())
}

/// The process's peak resident memory (VmHWM), or 0 where /proc does not say.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}
