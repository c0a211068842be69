//! `tollgate demo`: builds a small but real Flatpak repository with the real `flatpak` tools
//! (a public runtime, and a paid app gated with `--token-type=2`), sells the app as a product,
//! makes a license for it, names tollgate's authenticator in the repository, makes the
//! authenticator built beside it activatable in the user's session, serves it all, and prints
//! the commands a person runs in another terminal: `flatpak remote-add` and `flatpak install`
//! of the app (flatpak's prompt asks for the license key), and, without flatpak, trading the key
//! for a token and pulling the app with ostree.
//!
//! The repository is built in a temporary folder and renamed into place only when complete,
//! so an interrupted build never leaves a half-made repository that a later run would serve.
//! Each run makes a new demo license and removes the one before, so the key printed is the one
//! that works; only its hash is stored, as for any license.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use base64::Engine as _;
use clap::Args;

use super::ListenArg;
use crate::authenticator::{SHIPPED_PROVIDERS, build_folder, provider_library, set_authenticator};
use crate::config::Config;
use crate::datadir::data_home;
use crate::process::{self, default_arch, write_file};
use crate::repos::{self, RepoArg, RepoLocation};
use crate::secrets::Secret;
use crate::serve;
use crate::store::{Location, NewLicense, Store, StoreError};
use crate::tokens::TrustedKeys;

/// The runtime the demo publishes.
const DEMO_RUNTIME: &str = "org.tollgate.Demo.Platform";
/// The paid app the demo publishes, gated.
const DEMO_APP: &str = "org.tollgate.Demo.App";
const REMOTE: &str = "tollgate-demo";
const PRODUCT: &str = "demo-app";
/// The note that marks the license a demo run made.
const LICENSE_NOTE: &str = "made by tollgate demo";

#[derive(Debug, Args)]
pub(super) struct DemoArgs {
    /// Where the demo keeps everything: the repository in DIR/repo, the server's state in
    /// DIR/data. A demo repository already there is served again as it is.
    /// [default: $XDG_DATA_HOME/tollgate/demo, or ~/.local/share/tollgate/demo]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[command(flatten)]
    listen: ListenArg,
}

impl DemoArgs {
    fn dir(&self) -> anyhow::Result<PathBuf> {
        match &self.dir {
            Some(dir) => Ok(dir.clone()),
            None => Ok(crate::datadir::default_data_dir()?.join("demo")),
        }
    }
}

pub(super) fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = args.dir()?;
    let repo = dir.join("repo");
    let arch = default_arch()?;
    let app_ref = format!("app/{DEMO_APP}/{arch}/stable");
    if repo.join("refs/heads").join(&app_ref).is_file() {
        tracing::info!(
            "serving the demo repository built earlier in {}",
            repo.display()
        );
    } else {
        build_repo(&dir, &arch)
            .with_context(|| format!("building the demo repository in {}", dir.display()))?;
    }
    let listener = serve::bind(args.listen.listen)?;
    let addr = listener
        .local_addr()
        .context("reading the address listened on")?;
    // The service is at the address the demo serves; run again on another port, the repository
    // names the new one.
    set_authenticator(&repo, &format!("http://{addr}"), None, false)
        .context("naming tollgate's authenticator in the demo repository")?;
    let authenticator = session_authenticator(&dir);
    let repos = repos::open_all(
        &[RepoArg {
            name: None,
            location: RepoLocation::Local(repo),
        }],
        &Default::default(),
    )?;
    let mut config = Config::default();
    // The admin API is open to whoever holds this run's admin token (or TOLLGATE_ADMIN_TOKEN).
    config.entitlements.admin_token = Some(Secret::new(random_token()?));
    let admin_token = config
        .admin_token()?
        .map(|t| t.expose().to_owned())
        .unwrap_or_default();
    let trusted = TrustedKeys::load(&config.tokens)?;
    let data = dir.join("data");
    crate::datadir::prepare_data_dir(&data)?;
    let database = Location::new(&data, None);
    let key = demo_license(&database, &format!("app/{DEMO_APP}/*"))
        .with_context(|| format!("making the demo license in {database}"))?;
    let exe = std::env::current_exe().context("finding the tollgate binary")?;
    let facts = Facts {
        app_ref,
        key,
        admin_token,
        admin: format!("{} admin --data-dir {}", exe.display(), data.display()),
        authenticator,
    };
    serve::run(listener, repos, &data, &database, config, trusted, |addr| {
        print_instructions(&format!("http://{addr}/"), &facts)
    })
}

/// What the printed instructions name.
struct Facts {
    app_ref: String,
    key: String,
    admin_token: String,
    /// The admin command line for the demo's database.
    admin: String,
    authenticator: SessionAuthenticator,
}

/// How flatpak finds tollgate's authenticator for the demo's user.
enum SessionAuthenticator {
    /// The build tree's, activated by the file the demo wrote, with the build's providers
    /// (`helper` is the build's `tollgate-helper`).
    BuildTree {
        file: PathBuf,
        /// The build's helper, with the providers the authenticator uses:
        /// `TOLLGATE_PROVIDER_PATH=... .../tollgate-helper`.
        helper: String,
    },
    /// The one the `tollgate-client` package installed.
    Installed,
    /// None: why not.
    Missing(String),
}

/// Where the packaged authenticator's activation file is.
const PACKAGED_SERVICE: &str = "/usr/share/dbus-1/services/org.tollgate.Authenticator.service";

/// Makes the authenticator built beside this binary activatable in the user's session bus
/// (`$XDG_DATA_HOME/dbus-1/services`, which a session bus watches), with the providers built
/// beside it linked into `dir/providers`: no other provider of the build tree (the test
/// fixtures) is loaded. Without a built authenticator, the packaged one is used if there is one.
fn session_authenticator(dir: &Path) -> SessionAuthenticator {
    let built = build_folder().ok().and_then(|bin| {
        let found = |name: &str| Some(bin.join(name)).filter(|p| p.is_file());
        Some((
            bin.clone(),
            found("tollgate-helper")?,
            found("tollgate-authenticator")?,
        ))
    });
    let Some((bin, helper, authenticator)) = built else {
        if Path::new(PACKAGED_SERVICE).is_file() {
            return SessionAuthenticator::Installed;
        }
        return SessionAuthenticator::Missing(
            "tollgate's authenticator is neither built beside this program nor installed: \
             build it with `cargo build -p tollgate-helper -p tollgate-provider-file \
             -p tollgate-provider-secret-service` (scripts/demo does), or install the \
             tollgate-client package"
                .to_owned(),
        );
    };
    match install_build_tree_authenticator(dir, &bin, &helper, &authenticator) {
        Ok(file) => SessionAuthenticator::BuildTree {
            file,
            helper: format!(
                "TOLLGATE_PROVIDER_PATH={} {}",
                dir.join("providers").display(),
                helper.display()
            ),
        },
        Err(e) => SessionAuthenticator::Missing(format!("{e:#}")),
    }
}

fn install_build_tree_authenticator(
    dir: &Path,
    bin: &Path,
    helper: &Path,
    authenticator: &Path,
) -> anyhow::Result<PathBuf> {
    let providers = dir.join("providers");
    std::fs::create_dir_all(&providers)
        .with_context(|| format!("creating {}", providers.display()))?;
    for name in SHIPPED_PROVIDERS {
        let file = provider_library(name);
        let link = providers.join(&file);
        match std::fs::remove_file(&link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("replacing {}", link.display())),
        }
        let built = bin.join(&file);
        if built.is_file() {
            std::os::unix::fs::symlink(&built, &link)
                .with_context(|| format!("linking {} to {}", link.display(), built.display()))?;
        }
    }
    process::run(
        Command::new(helper)
            .args(["install-authenticator", "--user", "--exec"])
            .arg(authenticator)
            .arg("--provider-path")
            .arg(&providers),
    )?;
    let file = data_home()?.join("dbus-1/services/org.tollgate.Authenticator.service");
    tracing::info!(
        "flatpak in this user's session now starts {} (activation file {})",
        authenticator.display(),
        file.display()
    );
    Ok(file)
}

/// A random secret for this run's admin token.
fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Makes sure the demo product exists, replaces an earlier run's license with a new one, and
/// returns the new license's key.
fn demo_license(database: &Location, pattern: &str) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let store = Store::open(database).await?;
        let result = async {
            match store.product_get(PRODUCT).await {
                Ok(_) => {}
                Err(StoreError::NotFound(_)) => {
                    store
                        .product_add(PRODUCT, "tollgate demo app", &[pattern.to_owned()], None)
                        .await?;
                }
                Err(e) => return Err(e.into()),
            }
            for old in store.license_list().await? {
                if old.note == LICENSE_NOTE {
                    store.license_remove(&old.id).await?;
                }
            }
            let (_, key) = store
                .license_add(&NewLicense {
                    products: vec![PRODUCT.to_owned()],
                    expires: None,
                    note: LICENSE_NOTE.to_owned(),
                    account: None,
                })
                .await?;
            anyhow::Ok(key)
        }
        .await;
        store.close().await;
        result
    })
}

fn print_instructions(url: &str, facts: &Facts) {
    let Facts {
        app_ref,
        key,
        admin_token,
        admin,
        authenticator,
    } = facts;
    let service = url.trim_end_matches('/');
    let (answers, forget) = match authenticator {
        SessionAuthenticator::BuildTree { file, helper } => (
            format!(
                "This build's authenticator answers flatpak, started by the activation file\n\
                 this run wrote, {}.\n\
                 It keeps the key with the first credential provider that takes it, so later\n\
                 installs and updates ask nothing; this shows where:\n\n    {helper} status",
                file.display(),
            ),
            format!(
                "    {helper} logout {service}\n    rm -f {}\n",
                file.display()
            ),
        ),
        SessionAuthenticator::Installed => (
            "The authenticator of the tollgate-client package answers flatpak. It keeps the key\n\
             with the first credential provider that takes it, so later installs and updates ask\n\
             nothing; this shows where:\n\n    tollgate-helper status"
                .to_owned(),
            format!("    tollgate-helper logout {service}\n"),
        ),
        SessionAuthenticator::Missing(why) => (
            format!(
                "But flatpak will fail with \"No authenticator configured\" or \"not provided by\n\
                 any .service files\": {why}."
            ),
            String::new(),
        ),
    };
    let text = format!(
        r#"
tollgate demo: serving a Flatpak repository at {url}
It holds a public runtime, {DEMO_RUNTIME},
and a paid app, {DEMO_APP}, that only license holders can download.

Install the paid app as a customer would, in another terminal, with the ordinary flatpak client:

    flatpak --user remote-add {REMOTE} {url}repo.flatpakrepo
    flatpak --user install {REMOTE} {DEMO_APP}

flatpak installs the runtime the app needs too, and asks for a login for tollgate's
authenticator: give any user name, and as the password this license key, which this run made
(it is shown only now; only a hash of it is kept):

    {key}

{answers}

Without flatpak, trade the key for a short-lived download token as the authenticator does, and
pull the app with ostree (without the token, the server answers 401):

    KEY={key}
    ANSWER=$(curl -sS --fail-with-body -H "Authorization: Bearer $KEY" \
        -H 'Content-Type: application/json' -d '{{"refs": ["{app_ref}"]}}' {url}api/v1/tokens)
    echo "$ANSWER"
    TOKEN=$(echo "$ANSWER" | jq -r '.tokens | keys[] | select(. != "")')
    ostree --repo=tollgate-demo-client init --mode=bare-user
    ostree --repo=tollgate-demo-client remote add --no-gpg-verify {REMOTE} {url}
    ostree --repo=tollgate-demo-client pull --http-header="Authorization=Bearer $TOKEN" {REMOTE} {app_ref}
    ostree --repo=tollgate-demo-client fsck

Manage products, licenses and accounts, and see who downloaded what, with the admin API or
the admin commands:

    ADMIN_TOKEN={admin_token}
    curl -sS --fail-with-body -H "Authorization: Bearer $ADMIN_TOKEN" {url}api/v1/admin/licenses
    {admin} license list
    {admin} audit --downloads

Clean up with:

    flatpak --user uninstall -y --noninteractive {DEMO_APP} {DEMO_RUNTIME}
    flatpak --user remote-delete {REMOTE}
{forget}    rm -rf tollgate-demo-client

Press Ctrl-C to stop the server.
"#
    );
    #[allow(clippy::print_stdout)]
    {
        println!("{text}");
    }
}

fn build_repo(dir: &Path, arch: &str) -> anyhow::Result<()> {
    let staging = dir.join("repo.tmp");
    let build = dir.join("build");
    let build_app = dir.join("build-app");
    for stale in [&staging, &build, &build_app] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)
                .with_context(|| format!("removing the leftover {}", stale.display()))?;
        }
    }
    let files = build.join("files");
    let metadata = format!(
        "[Runtime]\nname={DEMO_RUNTIME}\nruntime={DEMO_RUNTIME}/{arch}/stable\n\
         sdk={DEMO_RUNTIME}/{arch}/stable\n"
    );
    for (path, content) in [
        (
            files.join("bin/tollgate-demo"),
            "#!/bin/sh\necho 'Installed from a tollgate server.'\n",
        ),
        (
            files.join("share/tollgate-demo/README"),
            "This runtime was built by `tollgate demo` with flatpak build-export.\n",
        ),
        (build.join("metadata"), metadata.as_str()),
    ] {
        write_file(&path, content)?;
    }
    process::run(
        Command::new("flatpak")
            .args(["build-export", "--runtime", "--files=files"])
            .arg("--subject=tollgate demo runtime")
            .arg(&staging)
            .arg(&build)
            .arg("stable"),
    )?;

    // The paid app: its commits carry xa.token-type, so flatpak asks for a token and tollgate
    // serves what only it reaches to token holders alone.
    let app_metadata = format!(
        "[Application]\nname={DEMO_APP}\nruntime={DEMO_RUNTIME}/{arch}/stable\n\
         sdk={DEMO_RUNTIME}/{arch}/stable\n"
    );
    let app_bin = build_app.join("files/bin/tollgate-demo-app");
    write_file(
        &app_bin,
        "#!/bin/sh\necho 'A paid app, installed with a license.'\n",
    )?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&app_bin, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", app_bin.display()))?;
    }
    write_file(&build_app.join("metadata"), &app_metadata)?;
    process::run(
        Command::new("flatpak")
            .args(["build-finish", "--command=tollgate-demo-app"])
            .arg(&build_app),
    )?;
    process::run(
        Command::new("flatpak")
            .args(["build-export", "--token-type=2"])
            .arg("--subject=tollgate demo app")
            .arg(&staging)
            .arg(&build_app)
            .arg("stable"),
    )?;

    process::run(
        Command::new("flatpak")
            .args([
                "build-update-repo",
                "--title=tollgate demo",
                "--generate-static-deltas",
            ])
            .arg(&staging),
    )?;
    let repo = dir.join("repo");
    if repo.exists() {
        // An earlier demo's repository, from before the demo had an app.
        std::fs::remove_dir_all(&repo)
            .with_context(|| format!("replacing the older demo repository {}", repo.display()))?;
    }
    std::fs::rename(&staging, &repo).context("moving the finished repository into place")?;
    std::fs::remove_dir_all(&build).ok();
    std::fs::remove_dir_all(&build_app).ok();
    tracing::info!(
        "built the demo repository with {DEMO_RUNTIME} and {DEMO_APP} in {}",
        dir.join("repo").display()
    );
    Ok(())
}
