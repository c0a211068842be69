//! Commands for operators: `tollgate keys ...` and `tollgate token issue`, so that keys and
//! tokens can be made and inspected without the entitlement service.

use std::path::Path;

use anyhow::{Context, bail};
use tollgate_ostree_format::{Commit, RefName, Repo, load_commit};

use crate::cli::{AuthenticatorArgs, InspectArgs, KeysCommand, TokenIssueArgs};
use crate::config::{Config, is_http_address};
use crate::index::{Access, RepoIndex};
use crate::output::print_line;
use crate::repos::is_valid_name;
use crate::serve::prepare_data_dir;
use crate::store::{Location, Store, now};
use crate::tokens::{KeyDir, issue};

/// Longest validity `token issue` accepts: a day, as for `token-ttl` and as SECURITY.md
/// promises. Download tokens are meant to live minutes.
const MAX_TTL_SECS: u64 = 24 * 3600;

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
        KeysCommand::Rotate {
            data_dir,
            database_url,
        } => {
            let data_dir = data_dir.resolve()?;
            prepare_data_dir(&data_dir)?;
            let keys = KeyDir::new(&data_dir);
            let location = Location::new(&data_dir, database_url.as_deref());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let key = runtime.block_on(async {
                // The database first: a key that cannot be published must not be made, or a
                // running server would find it and have nobody able to check what it signs.
                let store = Store::open(&location)
                    .await
                    .with_context(|| format!("opening the database {location}"))?;
                let key = keys.add()?;
                let created = i64::try_from(key.created()).unwrap_or(0);
                store
                    .key_publish(key.kid(), key.public_key(), created)
                    .await?;
                let older: Vec<String> = keys
                    .load_all()?
                    .iter()
                    .map(|k| k.kid().to_owned())
                    .filter(|kid| kid != key.kid())
                    .collect();
                store.keys_retire(&older, now()).await?;
                store.close().await;
                anyhow::Ok(key)
            })?;
            tracing::info!(
                "{} signs from now on; the previous keys stay trusted until the tokens they \
                 signed expire",
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
    let token = issue(
        &key,
        &args.subject,
        std::slice::from_ref(&args.repo),
        &args.refs,
        args.ttl,
    )?;
    print_line(&token.token);
    Ok(())
}

/// `tollgate inspect`: the refs, whether each is gated and why, and the index's cost.
pub fn inspect(args: InspectArgs) -> anyhow::Result<()> {
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

/// The bus name of tollgate's Flatpak authenticator (`tollgate-authenticator`).
pub const AUTHENTICATOR_NAME: &str = "org.tollgate.Authenticator";
/// The credential providers that come with tollgate, the keyring first: what the demo and the
/// authenticator's Flatpak app give the authenticator.
pub const SHIPPED_PROVIDERS: [&str; 2] = ["secret_service", "file"];

/// A provider's library file name, as the helper finds providers.
pub fn provider_library(name: &str) -> String {
    format!("libtollgate_provider_{name}.so")
}

/// The folder of the running `tollgate`, where a build puts the client side's binaries too.
pub fn build_folder() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe().context("finding this program")?;
    Ok(exe
        .parent()
        .context("finding this program's folder")?
        .to_owned())
}

/// Has `flatpak build-update-repo` name tollgate's authenticator and the entitlement service
/// `url` (and the repository's `name` there) in `repo`'s summary and config, and say whether
/// flatpak is to `install` the authenticator from the repository.
pub(crate) fn set_authenticator(
    repo: &Path,
    url: &str,
    name: Option<&str>,
    install: bool,
) -> anyhow::Result<()> {
    let mut command = std::process::Command::new("flatpak");
    command.args([
        "build-update-repo",
        &format!("--authenticator-name={AUTHENTICATOR_NAME}"),
        if install {
            "--authenticator-install"
        } else {
            "--no-authenticator-install"
        },
        &format!("--authenticator-option=auth-server-url={url}"),
    ]);
    if let Some(name) = name {
        command.arg(format!("--authenticator-option=repo={name}"));
    }
    command.arg(repo);
    crate::demo::run(&mut command)?;
    Ok(())
}

/// `tollgate authenticator`: the repository's clients will ask tollgate's authenticator for
/// tokens, at the entitlement service `args.url`.
pub fn authenticator(args: AuthenticatorArgs) -> anyhow::Result<()> {
    Repo::open(&args.repo).with_context(|| {
        format!(
            "{} is not an OSTree archive repository",
            args.repo.display()
        )
    })?;
    let url = args.url.trim();
    if !is_http_address(url) {
        bail!(
            "--url {url:?} is not an http or https address without user or query, such as \
             https://apps.example.com"
        );
    }
    if let Some(name) = &args.name
        && !is_valid_name(name)
    {
        bail!(
            "--name {name:?} is not a repository name tollgate serves (letters, digits, -, _, .)"
        );
    }
    if args.install {
        let binaries = match &args.binaries {
            Some(dir) => dir.clone(),
            None => build_folder()?,
        };
        let arch = match &args.arch {
            Some(arch) => arch.clone(),
            None => crate::demo::default_arch()?,
        };
        let app_ref = crate::flatpak_app::publish(
            &args.repo,
            &crate::flatpak_app::AppSpec {
                binaries: &binaries,
                runtime: &args.runtime,
                runtime_branch: &args.runtime_branch,
                arch: &arch,
            },
        )
        .context("publishing the authenticator as a Flatpak app")?;
        print_line(&format!(
            "{}: published {app_ref} (on {}/{arch}/{}), which flatpak installs by itself",
            args.repo.display(),
            args.runtime,
            args.runtime_branch
        ));
    }
    set_authenticator(&args.repo, url, args.name.as_deref(), args.install)?;
    print_line(&format!(
        "{}: flatpak clients now ask {AUTHENTICATOR_NAME} for tokens from {url}",
        args.repo.display()
    ));
    Ok(())
}
