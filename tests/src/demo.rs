//! `tollgate demo` works from nothing: it builds a real Flatpak repository with a public
//! runtime and a gated app, makes a license, names tollgate's authenticator in the repository
//! and makes the one built beside it activatable in the user's session, serves it all, and the
//! commands it prints work as printed: `flatpak remote-add` and `flatpak install` of the paid
//! app (flatpak's own prompt answered with the printed key, on a pseudo-terminal), then, without
//! flatpak, trading the key for a token and pulling the app with ostree, and the clean-up.

use std::time::Duration;

use crate::bus::SessionBus;
use crate::cmd::require_tool;
use crate::fixture::Fixture;
use crate::keyring::Keyring;
use crate::server::{Server, workspace_bin};

const RUNTIME: &str = "org.tollgate.Demo.Platform";
const APP: &str = "org.tollgate.Demo.App";

/// What the demo printed: the indented blocks before `Clean up` (each a list of lines), and
/// the clean-up commands.
fn printed_blocks(printed: &str) -> (Vec<Vec<String>>, String) {
    let start = printed
        .find("tollgate demo: serving")
        .expect("the demo's text");
    let text = &printed[start..];
    let (main, cleanup) = text
        .split_once("Clean up with:")
        .expect("a clean-up section");
    let mut blocks: Vec<Vec<String>> = Vec::new();
    let mut open = false;
    for line in main.lines() {
        match line.strip_prefix("    ") {
            Some(l) if open => blocks.last_mut().expect("a block").push(l.to_owned()),
            Some(l) => {
                blocks.push(vec![l.to_owned()]);
                open = true;
            }
            None => open = false,
        }
    }
    let cleanup = cleanup
        .lines()
        .filter_map(|l| l.strip_prefix("    "))
        .collect::<Vec<_>>()
        .join("\n");
    (blocks, cleanup)
}

/// The line of `blocks` that starts with `start`.
fn line_starting<'a>(blocks: &'a [Vec<String>], start: &str) -> &'a str {
    blocks
        .iter()
        .flatten()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no printed line starts with {start:?}: {blocks:#?}"))
}

/// The printed block that holds a line starting with `start`, as one script.
fn block_with(blocks: &[Vec<String>], start: &str) -> String {
    blocks
        .iter()
        .find(|b| b.iter().any(|l| l.starts_with(start)))
        .unwrap_or_else(|| panic!("no printed block has {start:?}: {blocks:#?}"))
        .join("\n")
}

fn the_key(blocks: &[Vec<String>]) -> String {
    line_starting(blocks, "KEY=")
        .strip_prefix("KEY=")
        .expect("the license key")
        .to_owned()
}

#[test]
fn the_printed_commands_install_the_paid_app_with_flatpak_and_pull_it_with_ostree() {
    for tool in [("curl", "curl"), ("jq", "jq")] {
        require_tool(tool.0, tool.1);
    }
    let fx = Fixture::new();
    // A desktop user's session: their session bus as the system configures it (it activates
    // what the user's $XDG_DATA_HOME/dbus-1/services holds), with an unlocked keyring on it.
    let bus = SessionBus::start_as_installed(&fx);
    let _keyring = Keyring::start(&fx, &bus, "login-password");
    let user_env: Vec<(String, std::path::PathBuf)> =
        fx.env().iter().cloned().chain([bus.env()]).collect();
    let dir = fx.join("demo");
    let args = [
        "demo",
        "--dir",
        dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    let mut server = Server::start(&args, fx.env());
    server.wait_for_log("Press Ctrl-C", Duration::from_secs(60));
    let printed = server.log();
    let (blocks, cleanup) = printed_blocks(&printed);
    let key = the_key(&blocks);
    assert!(key.starts_with("tg_"), "{key}");
    let url = server.url();
    let service = url.trim_end_matches('/');
    let activation =
        fx.join("home/.local/share/dbus-1/services/org.tollgate.Authenticator.service");
    let written = std::fs::read_to_string(&activation).unwrap_or_else(|e| {
        panic!(
            "the demo did not write {}: {e}\n{printed}",
            activation.display()
        )
    });
    assert!(
        written.contains(workspace_bin("tollgate-authenticator").to_str().unwrap()),
        "{written}"
    );

    // The customer's flow comes first, and it is flatpak's own.
    let first = &blocks[0];
    assert_eq!(
        first.len(),
        2,
        "first: flatpak remote-add and install:\n{printed}"
    );
    assert_eq!(
        first[0],
        format!("flatpak --user remote-add tollgate-demo {url}repo.flatpakrepo")
    );
    assert_eq!(
        first[1],
        format!("flatpak --user install tollgate-demo {APP}")
    );
    assert_eq!(
        blocks[1],
        std::slice::from_ref(&key),
        "then the key to type:\n{printed}"
    );

    // Run as printed. flatpak asks about the runtime and the changes, then for the login.
    fx.cmd("sh")
        .args(["-e", "-c", &first[0]])
        .envs(&user_env)
        .run();
    let mut terminal = fx
        .cmd("sh")
        .args(["-e", "-c", &first[1]])
        .envs(&user_env)
        .timeout(Duration::from_secs(120))
        .in_terminal();
    let passwords = terminal.answer_flatpak_install("customer", &[&key]);
    let (status, output) = terminal.finish();
    assert!(
        status.success(),
        "flatpak install failed ({status}):\n{output}"
    );
    assert_eq!(passwords, 1, "one prompt for the key:\n{output}");
    assert!(!output.contains(&key), "the key was echoed: {output}");
    let arch = fx.flatpak_arch();
    let installed = fx.join(format!(
        "home/.local/share/flatpak/app/{APP}/{arch}/stable/active/files/bin/tollgate-demo-app"
    ));
    let app = std::fs::read_to_string(&installed).unwrap_or_default();
    assert!(app.contains("installed with a license"), "{output}");
    let listed = fx.flatpak().args(["--user", "list", "--runtime"]).run();
    assert!(listed.contains(RUNTIME), "the runtime came along: {listed}");
    // The key was kept, and the printed status line says where.
    let status = line_starting(&blocks, "TOLLGATE_PROVIDER_PATH=");
    let shown = fx
        .cmd("sh")
        .args(["-e", "-c", status])
        .envs(&user_env)
        .run();
    assert!(
        shown.contains(&format!("{service}: license-key in file")),
        "{shown}"
    );
    assert!(!shown.contains(&key), "{shown}");
    let helper = || {
        fx.cmd(
            workspace_bin("tollgate-helper")
                .to_str()
                .expect("UTF-8 path"),
        )
        .env("TOLLGATE_PROVIDER_PATH", dir.join("providers"))
        .envs(&user_env)
    };

    // Without a token, ostree is refused the app.
    let app_ref = format!("app/{APP}/{arch}/stable");
    let refused = fx.join("refused");
    let out = fx
        .cmd("sh")
        .args([
            "-c",
            &format!(
                "ostree --repo={0} init --mode=bare-user && \
                 ostree --repo={0} remote add --no-gpg-verify demo {url} && \
                 ostree --repo={0} pull demo {app_ref}",
                refused.display()
            ),
        ])
        .run_fail();
    assert!(out.contains("401"), "{out}");

    // The key traded for a token by hand, the pull with ostree, and the admin commands.
    let script = [
        block_with(&blocks, "KEY="),
        block_with(&blocks, "ADMIN_TOKEN="),
    ]
    .join("\n");
    let out = fx.cmd("sh").args(["-e", "-c", &script]).run();
    assert!(out.contains("\"expires_in\""), "the token answer:\n{out}");
    assert!(out.contains("no errors found"), "ostree fsck:\n{out}");
    assert!(
        out.contains("made by tollgate demo"),
        "the admin API and commands list the license:\n{out}"
    );
    fx.assert_pulled(
        &fx.join("tollgate-demo-client"),
        "tollgate-demo",
        &dir.join("repo"),
        &app_ref,
    );

    // The clean-up leaves nothing of the demo with the user.
    fx.cmd("sh")
        .args(["-e", "-c", &cleanup])
        .envs(&user_env)
        .run();
    let listed = fx.flatpak().args(["--user", "list"]).run();
    assert!(
        !listed.contains(RUNTIME) && !listed.contains(APP),
        "the printed uninstall worked: {listed}"
    );
    assert!(!fx.join("tollgate-demo-client").exists());
    assert!(!activation.exists(), "the activation file stays");
    let found = helper().args(["credential", service]).run_fail();
    assert!(found.contains("no provider has a credential"), "{found}");
    assert_eq!(
        server.stop().code(),
        Some(0),
        "Ctrl-C/SIGTERM stops the demo cleanly"
    );

    // A second run serves the repository it built before, on its new address, with a new
    // license; the old key is no longer good.
    let mut again = Server::start(&args, fx.env());
    again.wait_for_log(
        "serving the demo repository built earlier",
        Duration::from_secs(10),
    );
    again.wait_for_log("Press Ctrl-C", Duration::from_secs(30));
    let (blocks, _) = printed_blocks(&again.log());
    let new_key = the_key(&blocks);
    assert_ne!(new_key, key);
    let ask = serde_json::json!({ "refs": [app_ref] });
    let status = |key: &str| {
        crate::http::json(
            again.addr,
            "POST",
            "/api/v1/tokens",
            Some(&format!("Bearer {key}")),
            Some(&ask),
        )
        .0
    };
    assert_eq!(status(&key), 401);
    assert_eq!(status(&new_key), 200);
    let summary_names = fx
        .ostree(&dir.join("repo"))
        .args(["summary", "--view"])
        .run();
    assert!(
        summary_names.contains(&format!("http://{}", again.addr)),
        "the repository names the service where it is now:\n{summary_names}"
    );
}
