//! The gated repository most end-to-end tests serve: a real Flatpak repository with a public
//! runtime and a gated app (`--token-type=2`) in two versions, static deltas and appstream,
//! built with the real `flatpak` tools; and serving it with the real `tollgate`.

use std::path::{Path, PathBuf};

use crate::bus::TEST_AUTHENTICATOR_NAME;
use crate::cmd::Cmd;
use crate::fixture::{Fixture, set_mode};
use crate::server::{Server, tollgate_bin};

pub const FLAT_MANAGER_SECRET: &[u8] = b"a flat-manager download secret for tests";

pub const RUNTIME: &str = "org.example.Platform";

pub const APP: &str = "org.example.Paid";

/// A Flatpak repository with a public runtime and a gated app in two versions, deltas,
/// appstream, and the test authenticator configured; plus the server's data directory with its
/// key, and a configuration accepting flat-manager tokens.
#[derive(Debug)]
pub struct GatedRepo {
    pub repo: PathBuf,
    pub data: PathBuf,
    pub config: PathBuf,
    pub runtime_ref: String,
    pub app_ref: String,
}

pub fn gated_repo(fx: &Fixture) -> GatedRepo {
    let repo = fx.join("repo");
    let runtime_ref = fx.flatpak_runtime(&repo, RUNTIME, 1, None);
    fx.flatpak_app(&repo, APP, RUNTIME, 1, Some(2));
    let app_ref = fx.flatpak_app(&repo, APP, RUNTIME, 2, Some(2));
    update_repo(fx, &repo);
    // A delta across refs, from the gated app to the public runtime: its patches are against
    // gated content, so it goes only to a token for the app.
    let from = fx.rev_parse(&repo, &app_ref);
    let to = fx.rev_parse(&repo, &runtime_ref);
    fx.ostree(&repo)
        .args([
            "static-delta",
            "generate",
            &format!("--from={from}"),
            &format!("--to={to}"),
        ])
        .run();
    let data = fx.join("data");
    Cmd::new(tollgate_bin())
        .args(["keys", "generate", "--data-dir"])
        .arg(&data)
        .run();
    let secret_file = fx.join("flat-manager-secret");
    use base64::Engine as _;
    std::fs::write(
        &secret_file,
        base64::engine::general_purpose::STANDARD.encode(FLAT_MANAGER_SECRET),
    )
    .unwrap();
    set_mode(&secret_file, 0o600);
    let config = fx.join("tollgate.toml");
    std::fs::write(
        &config,
        "[tokens]\nflat-manager-secret-file = \"flat-manager-secret\"\n",
    )
    .unwrap();
    GatedRepo {
        repo,
        data,
        config,
        runtime_ref,
        app_ref,
    }
}

/// `flatpak build-update-repo` with static deltas, naming the test authenticator.
pub fn update_repo(fx: &Fixture, repo: &Path) {
    fx.flatpak()
        .args([
            "build-update-repo",
            "--generate-static-deltas",
            &format!("--authenticator-name={TEST_AUTHENTICATOR_NAME}"),
            "--no-authenticator-install",
        ])
        .arg(repo)
        .run();
}

pub fn serve(fx: &Fixture, g: &GatedRepo) -> Server {
    Server::serve(
        &[
            "--repo",
            g.repo.to_str().unwrap(),
            "--data-dir",
            g.data.to_str().unwrap(),
            "--config",
            g.config.to_str().unwrap(),
        ],
        fx.env(),
    )
}
