//! `tollgate demo`: builds a small but real Flatpak repository with the real `flatpak` tools
//! (a public runtime, and a paid app gated with `--token-type=2`), sells the app as a product,
//! makes a license for it, serves it all, and prints the commands a person runs in another
//! terminal to install the runtime and to trade the license key for a token and pull the app.
//!
//! The repository is built in a temporary folder and renamed into place only when complete,
//! so an interrupted build never leaves a half-made repository that a later run would serve.
//! Each run makes a new demo license and removes the one before, so the key printed is the one
//! that works; only its hash is stored, as for any license.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use base64::Engine as _;

use crate::cli::DemoArgs;
use crate::config::Config;
use crate::repos::{self, RepoArg, RepoLocation};
use crate::secrets::Secret;
use crate::serve;
use crate::store::{Location, NewLicense, Store, StoreError};
use crate::tokens::TrustedKeys;

/// The runtime the demo publishes.
pub const DEMO_RUNTIME: &str = "org.tollgate.Demo.Platform";
/// The paid app the demo publishes, gated.
pub const DEMO_APP: &str = "org.tollgate.Demo.App";
const REMOTE: &str = "tollgate-demo";
const PRODUCT: &str = "demo-app";
/// The note that marks the license a demo run made.
const LICENSE_NOTE: &str = "made by tollgate demo";

pub fn demo(args: DemoArgs) -> anyhow::Result<()> {
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
    let repos = repos::open_all(
        &[RepoArg {
            name: None,
            location: RepoLocation::Local(repo),
        }],
        &Default::default(),
    )?;
    let listener = serve::bind(args.listen.listen)?;
    let mut config = Config::default();
    // The admin API is open to whoever holds this run's admin token (or TOLLGATE_ADMIN_TOKEN).
    config.entitlements.admin_token = Some(Secret::new(random_token()?));
    let admin_token = config
        .admin_token()?
        .map(|t| t.expose().to_owned())
        .unwrap_or_default();
    let trusted = TrustedKeys::load(&config.tokens)?;
    let data = dir.join("data");
    serve::prepare_data_dir(&data)?;
    let database = Location::new(&data, None);
    let key = demo_license(&database, &format!("app/{DEMO_APP}/*"))
        .with_context(|| format!("making the demo license in {database}"))?;
    let exe = std::env::current_exe().context("finding the tollgate binary")?;
    let facts = Facts {
        app_ref,
        key,
        admin_token,
        admin: format!("{} admin --data-dir {}", exe.display(), data.display()),
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
    } = facts;
    let text = format!(
        r#"
tollgate demo: serving a Flatpak repository at {url}
It holds a public runtime, {DEMO_RUNTIME},
and a paid app, {DEMO_APP}, that only license holders can download.

In another terminal, install the runtime with the ordinary flatpak client:

    flatpak --user remote-add --no-gpg-verify {REMOTE} {url}
    flatpak --user install -y --noninteractive {REMOTE} {DEMO_RUNTIME}
    flatpak --user list --runtime

This run made a license for the app; its key is shown only now (only a hash of it is kept).
Trade it for a short-lived download token, as tollgate's client helper does for flatpak, and
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

    flatpak --user uninstall -y --noninteractive {DEMO_RUNTIME}
    flatpak --user remote-delete {REMOTE}
    rm -rf tollgate-demo-client

Press Ctrl-C to stop the server.
"#
    );
    #[allow(clippy::print_stdout)]
    {
        println!("{text}");
    }
}

/// flatpak's default architecture, as `build-export` uses it.
fn default_arch() -> anyhow::Result<String> {
    let out = run(Command::new("flatpak").arg("--default-arch"))?;
    Ok(out.trim().to_owned())
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
    run(Command::new("flatpak")
        .args(["build-export", "--runtime", "--files=files"])
        .arg("--subject=tollgate demo runtime")
        .arg(&staging)
        .arg(&build)
        .arg("stable"))?;

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
    run(Command::new("flatpak")
        .args(["build-finish", "--command=tollgate-demo-app"])
        .arg(&build_app))?;
    run(Command::new("flatpak")
        .args(["build-export", "--token-type=2"])
        .arg("--subject=tollgate demo app")
        .arg(&staging)
        .arg(&build_app)
        .arg("stable"))?;

    run(Command::new("flatpak")
        .args([
            "build-update-repo",
            "--title=tollgate demo",
            "--generate-static-deltas",
        ])
        .arg(&staging))?;
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

/// Writes `content` to `path`, creating its parent folders.
fn write_file(path: &Path, content: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))
}

/// Runs a command, returning its stdout, or an error carrying its stderr.
pub(crate) fn run(command: &mut Command) -> anyhow::Result<String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "`{program}` is not installed; tollgate runs the real one. Install it with \
             `apt-get install {program}` (scripts/setup does this for you)"
        ),
        Err(e) => return Err(e).with_context(|| format!("running {program}")),
    };
    if !output.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            command
                .get_args()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
