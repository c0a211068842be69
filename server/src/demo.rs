//! `tollgate demo`: builds a small but real Flatpak repository with the real `flatpak` tools,
//! serves it, and prints the commands a person runs in another terminal to install from it.
//!
//! The repository is built in a temporary folder and renamed into place only when complete,
//! so an interrupted build never leaves a half-made repository that a later run would serve.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::cli::DemoArgs;
use crate::config::Config;
use crate::repos::{self, RepoArg};
use crate::serve;
use crate::store::Location;
use crate::tokens::TrustedKeys;

/// The runtime the demo publishes.
pub const DEMO_RUNTIME: &str = "org.tollgate.Demo.Platform";
const REMOTE: &str = "tollgate-demo";

pub fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let dir = args.dir()?;
    let repo = dir.join("repo");
    if repo.join("config").is_file() {
        tracing::info!(
            "serving the demo repository built earlier in {}",
            repo.display()
        );
    } else {
        build_repo(&dir)
            .with_context(|| format!("building the demo repository in {}", dir.display()))?;
    }
    let repos = repos::open_all(&[RepoArg {
        name: None,
        path: repo,
    }])?;
    let listener = serve::bind(args.listen.listen)?;
    let arch = default_arch()?;
    let config = Config::default();
    let trusted = TrustedKeys::load(&config.tokens)?;
    let data = dir.join("data");
    let database = Location::new(&data, None);
    serve::run(listener, repos, &data, &database, config, trusted, |addr| {
        print_instructions(&format!("http://{addr}/"), &arch)
    })
}

fn print_instructions(url: &str, arch: &str) {
    let runtime_ref = format!("runtime/{DEMO_RUNTIME}/{arch}/stable");
    let text = format!(
        "
tollgate demo: serving a Flatpak repository at {url}

In another terminal, install its runtime with the ordinary flatpak client:

    flatpak --user remote-add --no-gpg-verify {REMOTE} {url}
    flatpak --user install -y --noninteractive {REMOTE} {DEMO_RUNTIME}
    flatpak --user list --runtime

and remove it again with:

    flatpak --user uninstall -y --noninteractive {DEMO_RUNTIME}
    flatpak --user remote-delete {REMOTE}

Or pull it with ostree into a repository of your own:

    ostree --repo=tollgate-demo-client init --mode=bare-user
    ostree --repo=tollgate-demo-client remote add --no-gpg-verify {REMOTE} {url}
    ostree --repo=tollgate-demo-client pull {REMOTE} {runtime_ref}
    ostree --repo=tollgate-demo-client fsck

Press Ctrl-C to stop the server.
"
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

fn build_repo(dir: &Path) -> anyhow::Result<()> {
    let arch = default_arch()?;
    let staging = dir.join("repo.tmp");
    let build = dir.join("build");
    for stale in [&staging, &build] {
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
    run(Command::new("flatpak")
        .args([
            "build-update-repo",
            "--title=tollgate demo",
            "--generate-static-deltas",
        ])
        .arg(&staging))?;
    std::fs::rename(&staging, dir.join("repo"))
        .context("moving the finished repository into place")?;
    std::fs::remove_dir_all(&build).ok();
    tracing::info!(
        "built the demo repository with {DEMO_RUNTIME} in {}",
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
fn run(command: &mut Command) -> anyhow::Result<String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "`{program}` is not installed; the demo builds its repository with the real one. \
             Install it with `apt-get install {program}` (scripts/demo does this for you)"
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
