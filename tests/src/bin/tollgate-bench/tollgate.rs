//! The tollgate build under measurement (`BENCH_TOLLGATE`, by default the release build beside
//! this binary): `tollgate serve` started through the harness's [`Server`] (on 127.0.0.1, a
//! port it picks itself, killed when dropped), and its `token` and `admin` commands through
//! the harness's [`Cmd`].

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use tollgate_tests::cmd::Cmd;
use tollgate_tests::server::Server;

#[derive(Debug, Clone)]
pub(crate) struct Tollgate {
    pub(crate) bin: PathBuf,
}

impl Tollgate {
    /// `tollgate serve --repo REPO --data-dir DATA --listen 127.0.0.1:0`, with the access log
    /// off (it costs every kind of request the same). A large repository is indexed before it
    /// listens; [`Server::run`] waits for that.
    pub(crate) fn serve(&self, repo: &Path, data: &Path) -> Server {
        let mut command = Command::new(&self.bin);
        command
            .arg("serve")
            .arg("--repo")
            .arg(repo)
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info,tollgate::access=off");
        Server::run(command)
    }

    /// A token for `r`, valid for two hours, from `tollgate token issue`.
    pub(crate) fn issue_token(&self, data: &Path, r: &str) -> anyhow::Result<String> {
        let token = Cmd::new(&self.bin)
            .arg("token")
            .arg("issue")
            .arg("--data-dir")
            .arg(data)
            .args(["--ref", r, "--ttl", "7200"])
            .run();
        let token = token.trim().to_owned();
        anyhow::ensure!(
            !token.is_empty(),
            "`tollgate token issue --ref {r}` printed no token"
        );
        Ok(token)
    }

    /// A license key for the product `paid` (`app_pattern`), made with the admin commands in a
    /// new data directory `data` (what was there is removed first).
    pub(crate) fn fresh_license(&self, data: &Path, app_pattern: &str) -> anyhow::Result<String> {
        if data.exists() {
            std::fs::remove_dir_all(data)
                .with_context(|| format!("removing {}", data.display()))?;
        }
        self.admin(data)
            .args([
                "product",
                "add",
                "paid",
                "--name",
                "Paid",
                "--ref",
                app_pattern,
            ])
            .run();
        let license = self
            .admin(data)
            .args([
                "--json",
                "license",
                "add",
                "--product",
                "paid",
                "--note",
                "bench",
            ])
            .run();
        let license: serde_json::Value = serde_json::from_str(&license)
            .with_context(|| format!("`tollgate admin license add` printed {license:?}"))?;
        Ok(license["key"]
            .as_str()
            .with_context(|| format!("no key in the new license: {license}"))?
            .to_owned())
    }

    /// `tollgate admin --data-dir DATA`, to which the caller adds the command.
    pub(crate) fn admin(&self, data: &Path) -> Cmd {
        Cmd::new(&self.bin).arg("admin").arg("--data-dir").arg(data)
    }

    /// `tollgate inspect --repo REPO --json`: the index's build figures for `repo`.
    pub(crate) fn inspect(&self, repo: &Path) -> anyhow::Result<serde_json::Value> {
        let out = Cmd::new(&self.bin)
            .arg("inspect")
            .arg("--repo")
            .arg(repo)
            .arg("--json")
            .timeout(std::time::Duration::from_secs(600))
            .run();
        serde_json::from_str(&out).with_context(|| {
            format!(
                "`tollgate inspect --repo {}` printed {out:?}",
                repo.display()
            )
        })
    }
}

/// One of the index's figures from the server's `/metrics` (`objects`, `build_seconds`): the
/// value of the first `tollgate_index_NAME{...}` line.
pub(crate) fn index_figure(metrics: &str, name: &str) -> Option<f64> {
    let prefix = format!("tollgate_index_{name}{{");
    metrics
        .lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_figures_from_metrics() {
        let metrics = "# HELP tollgate_index_objects objects\n\
                       tollgate_index_objects_total{repo=\"x\"} 5\n\
                       tollgate_index_objects{repo=\"main\"} 10001\n\
                       tollgate_index_build_seconds{repo=\"main\"} 0.0099\n";
        assert_eq!(index_figure(metrics, "objects"), Some(10001.0));
        assert_eq!(index_figure(metrics, "build_seconds"), Some(0.0099));
        assert_eq!(index_figure(metrics, "missing"), None);
    }
}
