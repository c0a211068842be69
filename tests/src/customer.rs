//! The customer's machine as tests set it up: the helper with chosen providers, and (`Setup`) a
//! gated app served with the entitlement service, the repository pointed at tollgate's
//! authenticator, the Secret Service provider installed, and a private bus with gnome-keyring.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bus::SessionBus;
use crate::cmd::Cmd;
use crate::fixture::Fixture;
use crate::gated_repo::{APP, GatedRepo, gated_repo};
use crate::keyring::Keyring;
use crate::server::{tollgate_bin, workspace_bin};
use crate::service::{Service, license_for_paid};

/// The bus name of tollgate's authenticator.
pub const AUTHENTICATOR: &str = "org.tollgate.Authenticator";

/// A gated app and its public runtime served with the entitlement service, the repository
/// pointed at tollgate's authenticator, the Secret Service provider installed for the user, and
/// a private bus with gnome-keyring on it where flatpak can activate the authenticator.
#[derive(Debug)]
pub struct Setup {
    pub fx: Fixture,
    pub g: GatedRepo,
    pub s: Service,
    bus: SessionBus,
    _keyring: Keyring,
    pub key: String,
}

impl Setup {
    pub fn start() -> Setup {
        Setup::serving_as(None)
    }

    /// As [`Setup::start`], with the repository served as `--repo NAME=PATH` (at `/NAME/`) when
    /// `name` is given.
    pub fn serving_as(name: Option<&str>) -> Setup {
        Setup::build(name, &[], None)
    }

    /// As [`Setup::start`], with `authenticator_env` set for the authenticator D-Bus starts.
    pub fn with_authenticator_env(authenticator_env: &[(&str, &str)]) -> Setup {
        Setup::build(None, authenticator_env, None)
    }

    /// As [`Setup::start`], with `config` added to the server's configuration and `prepare`
    /// run in the fixture before the server starts (to write a file the configuration names).
    pub fn with_config(config: &str, prepare: impl FnOnce(&Fixture)) -> Setup {
        Setup::build(None, &[], Some((config, Box::new(prepare))))
    }

    #[allow(clippy::type_complexity)]
    fn build(
        name: Option<&str>,
        authenticator_env: &[(&str, &str)],
        config: Option<(&str, Box<dyn FnOnce(&Fixture) + '_>)>,
    ) -> Setup {
        let fx = Fixture::new();
        let g = gated_repo(&fx);
        let s = match (name, config) {
            (None, Some((config, prepare))) => {
                prepare(&fx);
                Service::start_on(
                    &fx,
                    &g.repo,
                    &g.data,
                    &format!(
                        "[tokens]\nflat-manager-secret-file = \"flat-manager-secret\"\n{config}\n"
                    ),
                    None,
                    "",
                )
            }
            (None, None) => Service::start(&fx, &g, None, ""),
            (Some(name), _) => Service::start_on(
                &fx,
                Path::new(&format!("{name}={}", g.repo.display())),
                &g.data,
                "[tokens]\nflat-manager-secret-file = \"flat-manager-secret\"\n",
                None,
                "",
            ),
        };
        let key = license_for_paid(&s);
        let mut authenticator = fx
            .cmd(tollgate_bin().to_str().expect("UTF-8"))
            .args(["authenticator", "--repo"])
            .arg(&g.repo)
            .args(["--url", &s.server.url()]);
        if let Some(name) = name {
            authenticator = authenticator.args(["--name", name]);
        }
        let said = authenticator.run();
        assert!(
            said.contains(&format!("flatpak clients now ask {AUTHENTICATOR}")),
            "{said}"
        );
        // What flatpak remote-add will copy: the repository's config says it.
        let config = std::fs::read_to_string(g.repo.join("config")).expect("config");
        assert!(
            config.contains(&format!("authenticator-name={AUTHENTICATOR}")),
            "{config}"
        );
        assert!(
            config.contains(&format!(
                "authenticator-options.auth-server-url={}",
                s.server.url()
            )),
            "{config}"
        );
        let providers = fx.join("home/.local/share/tollgate/providers");
        std::fs::create_dir_all(&providers).expect("mkdir providers");
        let library = "libtollgate_provider_secret_service.so";
        std::os::unix::fs::symlink(workspace_bin(library), providers.join(library))
            .expect("installing the provider");
        let mut authenticator = workspace_bin("tollgate-authenticator");
        if !authenticator_env.is_empty() {
            // D-Bus starts it with the bus's environment: a wrapper adds to it.
            let exports: String = authenticator_env
                .iter()
                .map(|(k, v)| format!("export {k}='{v}'\n"))
                .collect();
            let wrapper = fx.join("tollgate-authenticator-with-env");
            std::fs::write(
                &wrapper,
                format!(
                    "#!/bin/sh\n{exports}exec '{}' \"$@\"\n",
                    authenticator.display()
                ),
            )
            .expect("writing the wrapper");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
                .expect("chmod the wrapper");
            authenticator = wrapper;
        }
        let bus = SessionBus::start(&fx, &[(AUTHENTICATOR, authenticator.as_path())]);
        let keyring = Keyring::start(&fx, &bus, "login-password");
        Setup {
            fx,
            g,
            s,
            bus,
            _keyring: keyring,
            key,
        }
    }

    pub fn env(&self) -> Vec<(String, PathBuf)> {
        self.fx
            .env()
            .iter()
            .cloned()
            .chain([self.bus.env()])
            .collect()
    }

    pub fn flatpak(&self) -> Cmd {
        self.fx
            .flatpak()
            .envs(&self.env())
            .timeout(Duration::from_secs(120))
    }

    pub fn helper(&self) -> Cmd {
        let bin = workspace_bin("tollgate-helper");
        self.fx
            .cmd(bin.to_str().expect("UTF-8"))
            .envs(&self.env())
            .timeout(Duration::from_secs(60))
    }

    /// Token issuance records so far.
    pub fn issued(&self) -> usize {
        let page = self.s.admin_ok(200, "GET", "audit/tokens?limit=1000", None);
        page["items"].as_array().map_or(0, Vec::len)
    }

    pub fn installed_app(&self) -> String {
        self.fx.installed_app(APP)
    }

    /// `tollgate-helper login URL --key-stdin` with `key` on stdin, to run.
    pub fn login(&self, url: &str, key: &str) -> Cmd {
        self.helper()
            .args(["login", url, "--key-stdin"])
            .stdin(format!("{key}\n"))
    }
}

/// A provider directory for one test, with the workspace's providers `names` linked into it.
pub fn provider_dir(fx: &Fixture, names: &[&str]) -> PathBuf {
    let dir = fx.join("providers");
    std::fs::create_dir_all(&dir).expect("mkdir providers");
    for name in names {
        let file = format!("libtollgate_provider_{name}.so");
        std::os::unix::fs::symlink(workspace_bin(&file), dir.join(&file))
            .expect("linking a provider");
    }
    dir
}

/// `tollgate-helper` with providers from `dir` only.
pub fn helper(fx: &Fixture, dir: &Path) -> Cmd {
    let bin = workspace_bin("tollgate-helper");
    fx.cmd(bin.to_str().expect("UTF-8 path"))
        .env("TOLLGATE_PROVIDER_PATH", dir)
        .timeout(Duration::from_secs(60))
}
