//! The Debian packages `scripts/package` builds (scripts/test builds them before the tests):
//! what each holds, where, and with which relations; `lintian` finds no error in any, and
//! `systemd-analyze verify` accepts every unit; and installed with `apt-get` on this machine (as
//! root), they serve a gated repository and install its paid app through the packaged
//! authenticator with nothing else set up, then purge without a trace.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::bus::SessionBus;
use crate::cmd::{Cmd, require_tool};
use crate::fixture::Fixture;
use crate::gated_repo::{APP, gated_repo};
use crate::keyring::Keyring;
use crate::server::Server;

/// The packages, by name.
pub const PACKAGES: [&str; 5] = [
    "tollgate",
    "tollgate-client",
    "tollgate-provider-secret-service",
    "tollgate-provider-file",
    "libtollgate-provider-dev",
];

/// The `.deb` of `name` in target/debian/.
pub fn deb(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debian");
    let found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with(&format!("{name}_")) && f.ends_with(".deb"))
        })
        .collect();
    match found.as_slice() {
        [one] => one.clone(),
        [] => panic!(
            "no package {name} in {}: run scripts/package (scripts/test does) before the tests",
            dir.display()
        ),
        more => panic!("more than one package {name}: {more:?}; remove target/debian"),
    }
}

/// The multiarch triplet Debian names this machine's architecture by.
pub fn multiarch() -> String {
    require_tool("dpkg-architecture", "dpkg-dev");
    Cmd::new("dpkg-architecture")
        .arg("-qDEB_HOST_MULTIARCH")
        .run()
        .trim()
        .to_owned()
}

/// The provider ABI's major version, as the C header says it.
fn abi_major() -> String {
    let header = include_str!("../../plugin-api/include/tollgate_provider.h");
    header
        .lines()
        .find_map(|l| l.strip_prefix("#define TOLLGATE_PROVIDER_ABI_MAJOR "))
        .expect("TOLLGATE_PROVIDER_ABI_MAJOR in the header")
        .trim()
        .to_owned()
}

/// The paths a package installs (files and symlinks, not folders), as `/usr/bin/x`.
fn contents(deb: &Path) -> BTreeSet<String> {
    Cmd::new("dpkg-deb")
        .arg("-c")
        .arg(deb)
        .run()
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_owned())
        .collect()
}

/// The paths package `name` installs, checked to hold every one of `paths`.
fn holding(name: &str, paths: &[&str]) -> BTreeSet<String> {
    let files = contents(&deb(name));
    for path in paths {
        assert!(files.contains(*path), "{name} lacks {path}: {files:?}");
    }
    files
}

/// A control field of a package.
fn field(deb: &Path, name: &str) -> String {
    Cmd::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg(name)
        .run()
        .trim()
        .to_owned()
}

#[test]
fn each_package_holds_its_files_with_its_relations() {
    let triplet = multiarch();
    let abi = format!("tollgate-provider-abi-{}", abi_major());
    let providers = format!("/usr/lib/{triplet}/tollgate/providers");

    holding(
        "tollgate",
        &[
            "/usr/bin/tollgate",
            "/usr/lib/systemd/system/tollgate.service",
            "/usr/lib/systemd/system/tollgate@.service",
            "/usr/lib/sysusers.d/tollgate.conf",
            "/usr/lib/tmpfiles.d/tollgate.conf",
            "/etc/tollgate/tollgate.toml",
            "/usr/share/doc/tollgate/copyright",
        ],
    );
    let conffiles = Cmd::new("dpkg-deb")
        .arg("--info")
        .arg(deb("tollgate"))
        .arg("conffiles")
        .run();
    assert_eq!(conffiles.trim(), "/etc/tollgate/tollgate.toml");

    let client = holding(
        "tollgate-client",
        &[
            "/usr/bin/tollgate-helper",
            "/usr/libexec/tollgate-authenticator",
            "/usr/share/dbus-1/services/org.tollgate.Authenticator.service",
            "/usr/lib/systemd/user/tollgate-authenticator.service",
            "/usr/share/man/man1/tollgate-helper.1.gz",
            "/usr/share/man/man1/tollgate-helper-login.1.gz",
            "/usr/share/man/man1/tollgate-helper-trust.1.gz",
            "/usr/share/bash-completion/completions/tollgate-helper",
            "/usr/share/zsh/vendor-completions/_tollgate-helper",
            "/usr/share/fish/vendor_completions.d/tollgate-helper.fish",
        ],
    );
    assert!(
        !client.iter().any(|p| p.contains("package-files")),
        "the hidden packaging command has a man page: {client:?}"
    );
    assert_eq!(field(&deb("tollgate-client"), "Provides"), abi);

    for (name, lib) in [
        ("tollgate-provider-secret-service", "secret_service"),
        ("tollgate-provider-file", "file"),
    ] {
        holding(
            name,
            &[&format!("{providers}/libtollgate_provider_{lib}.so")],
        );
        let depends = field(&deb(name), "Depends");
        assert!(
            depends.split(", ").any(|d| d == abi),
            "{name} does not depend on {abi}: {depends}"
        );
        assert_eq!(field(&deb(name), "Multi-Arch"), "same", "{name}");
    }

    let pc = format!("/usr/lib/{triplet}/pkgconfig/tollgate-provider.pc");
    holding(
        "libtollgate-provider-dev",
        &["/usr/include/tollgate_provider.h", &pc],
    );
    // The pkg-config file names the folder the helper searches first.
    let fx = Fixture::new();
    let tree = fx.join("dev");
    Cmd::new("dpkg-deb")
        .arg("-x")
        .arg(deb("libtollgate-provider-dev"))
        .arg(&tree)
        .run();
    let text = std::fs::read_to_string(tree.join(&pc[1..])).unwrap();
    assert!(
        text.lines()
            .any(|l| l == format!("providersdir={providers}")),
        "{text}"
    );

    // The test fixtures' providers are not shipped.
    for name in PACKAGES {
        let files = contents(&deb(name));
        assert!(
            !files
                .iter()
                .any(|f| f.contains("panicking") || f.contains("probe")),
            "{name} ships a test fixture: {files:?}"
        );
    }
}

/// The lintian tags the README accepts: the list under "Accepted lintian warnings".
fn accepted_tags() -> BTreeSet<String> {
    let readme = include_str!("../../README.md");
    let list = readme
        .split("Accepted lintian warnings")
        .nth(1)
        .expect("the README lists the accepted lintian warnings");
    list.lines()
        .skip(1)
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.strip_prefix("- `")?.split('`').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn lintian_finds_no_error_and_only_the_warnings_the_readme_accepts() {
    require_tool("lintian", "lintian");
    let accepted = accepted_tags();
    for name in PACKAGES {
        let out = Cmd::new("lintian")
            .args(["--tag-display-limit", "0"])
            .arg(deb(name))
            .output();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E:")).collect();
        assert!(errors.is_empty(), "lintian on {name}:\n{text}");
        for line in text.lines().filter(|l| l.starts_with("W:")) {
            let tag = line.split_whitespace().nth(2).unwrap_or_default();
            assert!(
                accepted.contains(tag),
                "lintian on {name} warns {tag}, which the README does not accept:\n{text}"
            );
        }
    }
}

#[test]
fn systemd_analyze_verifies_every_unit() {
    require_tool("systemd-analyze", "systemd");
    let fx = Fixture::new();
    for (name, units, user) in [
        (
            "tollgate",
            &[
                "usr/lib/systemd/system/tollgate.service",
                "usr/lib/systemd/system/tollgate@.service",
            ][..],
            false,
        ),
        (
            "tollgate-client",
            &["usr/lib/systemd/user/tollgate-authenticator.service"][..],
            true,
        ),
    ] {
        let tree = fx.join(name);
        Cmd::new("dpkg-deb")
            .arg("-x")
            .arg(deb(name))
            .arg(&tree)
            .run();
        for unit in units {
            // A copy whose programs point into the extracted tree: verify checks they exist.
            let text = std::fs::read_to_string(tree.join(unit)).unwrap();
            let text = text
                .replace("=/usr/bin/", &format!("={}/usr/bin/", tree.display()))
                .replace(
                    "=/usr/libexec/",
                    &format!("={}/usr/libexec/", tree.display()),
                );
            let file_name = Path::new(unit).file_name().unwrap();
            let copy = fx.join(format!("verify-{name}")).join(file_name);
            std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
            std::fs::write(&copy, text).unwrap();
            // A template is verified as an instance of it.
            let target = match file_name.to_str().unwrap() {
                t if t.ends_with("@.service") => {
                    let instance = copy.with_file_name(t.replace("@.", "@1."));
                    std::fs::copy(&copy, &instance).unwrap();
                    instance
                }
                _ => copy,
            };
            let mut verify = Cmd::new("systemd-analyze");
            if user {
                // A user manager needs its runtime folder.
                verify = verify.arg("--user").envs(fx.env());
            }
            let out = verify.arg("verify").arg(&target).output();
            let said = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "systemd-analyze verify {unit}: {said}"
            );
            assert!(
                !said.lines().any(|l| l.contains(&*target.to_string_lossy())),
                "systemd-analyze verify {unit} complains: {said}"
            );
        }
    }
    // The D-Bus activation file starts the packaged authenticator, through that user unit.
    let tree = fx.join("tollgate-client");
    let service = std::fs::read_to_string(
        tree.join("usr/share/dbus-1/services/org.tollgate.Authenticator.service"),
    )
    .unwrap();
    for line in [
        "Name=org.tollgate.Authenticator",
        "Exec=/usr/libexec/tollgate-authenticator",
        "SystemdService=tollgate-authenticator.service",
    ] {
        assert!(service.lines().any(|l| l == line), "{service}");
    }
    assert!(tree.join("usr/libexec/tollgate-authenticator").is_file());
}

/// Whether the package `name` is installed.
fn installed(name: &str) -> bool {
    Cmd::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .output()
        .stdout
        .starts_with(b"install ok installed")
}

/// Every installed package, by name.
fn installed_packages() -> BTreeSet<String> {
    Cmd::new("dpkg-query")
        .args(["-W", "-f=${Package} ${Status}\\n"])
        .run()
        .lines()
        .filter(|l| l.ends_with(" installed"))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The packages installed with `apt-get install ./...deb` (as root), removed again when
/// dropped, with what the install added: the `tollgate` user (Debian packages leave system
/// users behind on purge), `/etc/default/tollgate`, and any package apt-get pulled in.
struct Installation {
    before: BTreeSet<String>,
    user_existed: bool,
}

const DEFAULTS: &str = "/etc/default/tollgate";

impl Installation {
    fn install() -> Installation {
        assert!(
            rustix::process::geteuid().is_root(),
            "installing the packages needs root (CI runs the tests as root)"
        );
        require_tool("apt-get", "apt");
        for name in PACKAGES {
            assert!(
                !installed(name),
                "{name} is already installed on this machine; this test installs and purges the \
                 packages, so remove them first: apt-get purge {}",
                PACKAGES.join(" ")
            );
        }
        assert!(
            !Path::new(DEFAULTS).exists(),
            "{DEFAULTS} exists; this test writes and removes it"
        );
        let installation = Installation {
            before: installed_packages(),
            user_existed: Cmd::new("getent")
                .args(["passwd", "tollgate"])
                .output()
                .status
                .success(),
        };
        Cmd::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(PACKAGES.map(deb))
            .env("DEBIAN_FRONTEND", "noninteractive")
            .run();
        installation
    }

    fn remove(&self) {
        let _ = Cmd::new("apt-get")
            .args(["purge", "-y", "-q"])
            .args(PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output();
        let added: Vec<String> = installed_packages()
            .difference(&self.before)
            .cloned()
            .collect();
        if !added.is_empty() {
            let _ = Cmd::new("apt-get")
                .args(["purge", "-y", "-q"])
                .args(&added)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output();
        }
        let _ = std::fs::remove_file(DEFAULTS);
        if !self.user_existed {
            let _ = Cmd::new("userdel").arg("tollgate").output();
            let _ = Cmd::new("groupdel").arg("tollgate").output();
        }
    }
}

impl Drop for Installation {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The files (not folders) the installed package `name` holds.
fn files_of(name: &str) -> Vec<PathBuf> {
    Cmd::new("dpkg")
        .args(["-L", name])
        .run()
        .lines()
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .collect()
}

/// The unit's `ExecStart=` command line, with `${VAR}` taken from its `Environment=` lines and
/// its `EnvironmentFile=`, as systemd does (no quoting in these units); and the environment.
fn exec_start(unit: &str) -> (Vec<String>, Vec<(String, String)>) {
    let text = std::fs::read_to_string(unit).unwrap();
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |line: &str, env: &mut Vec<(String, String)>| {
        if let Some((k, v)) = line.split_once('=') {
            env.retain(|(key, _)| key != k);
            env.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    };
    let mut exec = None;
    for line in text.lines() {
        if let Some(assignment) = line.strip_prefix("Environment=") {
            set(assignment, &mut env);
        } else if let Some(file) = line.strip_prefix("EnvironmentFile=") {
            let file = file.trim_start_matches('-');
            for l in std::fs::read_to_string(file).unwrap_or_default().lines() {
                if !l.starts_with('#') {
                    set(l, &mut env);
                }
            }
        } else if let Some(command) = line.strip_prefix("ExecStart=") {
            exec = Some(command.to_owned());
        }
    }
    let exec = exec.expect("ExecStart= in the unit");
    let argv = exec
        .split_whitespace()
        .map(|word| {
            let mut word = word.to_owned();
            for (k, v) in &env {
                word = word.replace(&format!("${{{k}}}"), v);
            }
            assert!(
                !word.contains("${"),
                "{word}: a variable the unit does not set"
            );
            word
        })
        .collect();
    (argv, env)
}

/// `command` run as the `tollgate` user, as the unit's `User=` says, with only `env`.
fn as_tollgate(argv: &[String], env: &[(String, String)]) -> std::process::Command {
    require_tool("setpriv", "util-linux");
    let mut command = std::process::Command::new("setpriv");
    command
        .args([
            "--reuid=tollgate",
            "--regid=tollgate",
            "--init-groups",
            "--",
        ])
        .args(argv)
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

// While the packages are installed, every tollgate-helper on the machine finds their providers
// first: the other tests must not run beside this one.
#[test]
#[ignore = "installs packages on the machine: scripts/test runs it alone, after the others"]
fn installed_packages_serve_and_install_a_paid_app_with_nothing_else_set_up() {
    let fx = Fixture::new();
    // The tollgate user reads the repository, as it would under /srv.
    crate::fixture::set_mode(fx.path(), 0o755);
    let g = gated_repo(&fx);
    let installation = Installation::install();

    // The user and the data directory, made by the maintainer scripts.
    let uid: u32 = Cmd::new("id")
        .args(["-u", "tollgate"])
        .run()
        .trim()
        .parse()
        .unwrap();
    let data = std::fs::metadata("/var/lib/tollgate").expect("/var/lib/tollgate");
    use std::os::unix::fs::MetadataExt;
    assert_eq!((data.mode() & 0o7777, data.uid()), (0o700, uid));

    // The server, started as its unit says, with the repository and address in /etc/default.
    std::fs::write(
        DEFAULTS,
        format!(
            "TOLLGATE_REPO={}\nTOLLGATE_LISTEN=127.0.0.1:0\n",
            g.repo.display()
        ),
    )
    .unwrap();
    let (argv, env) = exec_start("/usr/lib/systemd/system/tollgate.service");
    assert_eq!(argv[0], "/usr/bin/tollgate", "{argv:?}");
    let server = Server::run(as_tollgate(&argv, &env));
    let url = server.url();
    let service = url.trim_end_matches('/');
    let admin = |args: &[&str]| {
        let mut argv: Vec<String> = [
            "/usr/bin/tollgate",
            "admin",
            "--data-dir",
            "/var/lib/tollgate",
            "--json",
        ]
        .map(str::to_owned)
        .to_vec();
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        let out = as_tollgate(&argv, &[]).output().unwrap();
        assert!(out.status.success(), "tollgate admin {args:?}: {out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let pattern = format!("app/{APP}/*");
    admin(&[
        "product", "add", "paid", "--name", "Paid", "--ref", &pattern,
    ]);
    let key = admin(&["license", "add", "--product", "paid"])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    Cmd::new("/usr/bin/tollgate")
        .args(["authenticator", "--repo"])
        .arg(&g.repo)
        .args(["--url", &url])
        .run();

    // A fresh user: the system's own session bus configuration, a keyring holding the key
    // (stored with secret-tool), and nothing of tollgate's set up by hand.
    let bus = SessionBus::start_as_installed(&fx);
    let _keyring = Keyring::start(&fx, &bus, "login-password");
    let user_env: Vec<(String, PathBuf)> = fx.env().iter().cloned().chain([bus.env()]).collect();
    require_tool("secret-tool", "libsecret-tools");
    fx.cmd("secret-tool")
        .args([
            "store",
            "--label=tollgate license",
            "service",
            "tollgate",
            "url",
            service,
        ])
        .args(["kind", "license-key"])
        .envs(&user_env)
        .stdin(key.clone())
        .run();
    let helper = |args: &[&str]| {
        fx.cmd("/usr/bin/tollgate-helper")
            .args(args)
            .envs(&user_env)
            .timeout(std::time::Duration::from_secs(60))
    };
    let listed: serde_json::Value =
        serde_json::from_str(&helper(&["providers", "--json"]).run()).unwrap();
    let packaged = format!("/usr/lib/{}/tollgate/providers", multiarch());
    assert_eq!(
        listed["search-path"][0],
        serde_json::json!(packaged),
        "{listed}"
    );
    let paths: Vec<&str> = listed["providers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["path"].as_str())
        .collect();
    for lib in ["file", "secret_service"] {
        let path = format!("{packaged}/libtollgate_provider_{lib}.so");
        assert!(paths.contains(&path.as_str()), "{path} not found: {listed}");
    }
    let found: serde_json::Value =
        serde_json::from_str(&helper(&["credential", service, "--json"]).run()).unwrap();
    assert_eq!(found["found"]["provider"], "secret-service", "{found}");

    fx.flatpak_remote_add("shop", &url);
    fx.flatpak_install(&user_env, "shop", APP);
    assert_eq!(fx.installed_app(APP), format!("#!/bin/sh\necho {APP} 2\n"));
    // The key secret-tool stored is listed once the install used it.
    let status = helper(&["status"]).run();
    assert!(
        status.contains(&format!("{service}: license-key in secret-service")),
        "{status}"
    );

    // A distribution's own provider in C, built and installed with pkg-config alone.
    require_tool("pkg-config", "pkg-config");
    let pkg = |var: &str| {
        Cmd::new("pkg-config")
            .args([var, "tollgate-provider"])
            .run()
    };
    let dir = pkg("--variable=providersdir").trim().to_owned();
    assert_eq!(dir, packaged);
    let c_provider = Path::new(&dir).join("libtollgate_provider_c.so");
    let built = Cmd::new("cc")
        .args(["-std=c11", "-Wall", "-Werror", "-shared", "-fPIC"])
        .args(pkg("--cflags").split_whitespace())
        .arg("-o")
        .arg(&c_provider)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/c/provider.c"))
        .output();
    let listed = helper(&["providers"]).output();
    let _ = std::fs::remove_file(&c_provider);
    assert!(built.status.success(), "cc: {built:?}");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains(&*c_provider.to_string_lossy()), "{listed}");

    // Purged, nothing the packages installed is left.
    drop(server);
    let files: Vec<PathBuf> = PACKAGES.iter().flat_map(|p| files_of(p)).collect();
    assert!(
        files.iter().any(|f| f.ends_with("tollgate-helper")),
        "{files:?}"
    );
    installation.remove();
    let left: Vec<&PathBuf> = files.iter().filter(|f| f.exists()).collect();
    assert!(left.is_empty(), "left after apt-get purge: {left:?}");
    assert!(!Path::new("/var/lib/tollgate").exists());
    assert!(!Path::new("/etc/tollgate").exists());
    for name in PACKAGES {
        assert!(!installed(name), "{name} still installed");
    }
}
