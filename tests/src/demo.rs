//! `tollgate demo` works from nothing: it builds a real Flatpak repository with a public
//! runtime and a gated app, makes a license, serves it all, and the commands it prints install
//! the runtime, trade the license key for a token and pull the app.

use std::time::Duration;

use crate::cmd::require_tool;
use crate::fixture::Fixture;
use crate::server::Server;

const RUNTIME: &str = "org.tollgate.Demo.Platform";
const APP: &str = "org.tollgate.Demo.App";

/// The indented lines of the printed text before `Clean up`, and those after: two shell scripts.
fn scripts(printed: &str) -> (String, String) {
    let start = printed
        .find("tollgate demo: serving")
        .expect("the demo's text");
    let text = &printed[start..];
    let (main, cleanup) = text
        .split_once("Clean up with:")
        .expect("a clean-up section");
    let indented = |part: &str| -> String {
        part.lines()
            .filter_map(|l| l.strip_prefix("    "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    (indented(main), indented(cleanup))
}

fn the_key(script: &str) -> String {
    script
        .lines()
        .find_map(|l| l.strip_prefix("KEY="))
        .expect("the license key")
        .to_owned()
}

#[test]
fn the_printed_commands_install_the_runtime_and_pull_the_licensed_app() {
    for tool in [("curl", "curl"), ("jq", "jq")] {
        require_tool(tool.0, tool.1);
    }
    let fx = Fixture::new();
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
    let (script, cleanup) = scripts(&printed);
    assert!(
        script.lines().count() >= 14,
        "the demo prints the commands to run:\n{printed}"
    );
    let key = the_key(&script);
    assert!(key.starts_with("tg_"), "{key}");

    // Without a token, the app is refused.
    let url = server.url();
    let refused = fx.join("refused");
    let out = fx
        .cmd("sh")
        .args([
            "-c",
            &format!(
                "ostree --repo={0} init --mode=bare-user && \
             ostree --repo={0} remote add --no-gpg-verify demo {url} && \
             ostree --repo={0} pull demo app/{APP}/$(flatpak --default-arch)/stable",
                refused.display()
            ),
        ])
        .run_fail();
    assert!(out.contains("401"), "{out}");

    // Run them as a person would, pasted into one shell in their own (isolated) home.
    let out = fx.cmd("sh").args(["-e", "-c", &script]).run();
    assert!(out.contains(RUNTIME), "flatpak lists the runtime:\n{out}");
    assert!(out.contains("\"expires_in\""), "the token answer:\n{out}");
    assert!(out.contains("no errors found"), "ostree fsck:\n{out}");
    assert!(
        out.contains("made by tollgate demo"),
        "the admin API and commands list the license:\n{out}"
    );
    let arch = fx.flatpak().arg("--default-arch").run();
    let app_ref = format!("app/{APP}/{}/stable", arch.trim());
    fx.assert_pulled(
        &fx.join("tollgate-demo-client"),
        "tollgate-demo",
        &dir.join("repo"),
        &app_ref,
    );
    let shown = fx
        .ostree(&fx.join("tollgate-demo-client"))
        .args([
            "cat",
            &format!("tollgate-demo:{app_ref}"),
            "/files/bin/tollgate-demo-app",
        ])
        .run();
    assert!(shown.contains("installed with a license"), "{shown}");

    fx.cmd("sh").args(["-e", "-c", &cleanup]).run();
    let listed = fx.flatpak().args(["--user", "list", "--runtime"]).run();
    assert!(!listed.contains(RUNTIME), "the printed uninstall worked");
    assert!(!fx.join("tollgate-demo-client").exists());
    assert_eq!(
        server.stop().code(),
        Some(0),
        "Ctrl-C/SIGTERM stops the demo cleanly"
    );

    // A second run serves the repository it built before, with a new license; the old key is
    // no longer good.
    let mut again = Server::start(&args, fx.env());
    again.wait_for_log(
        "serving the demo repository built earlier",
        Duration::from_secs(10),
    );
    again.wait_for_log("Press Ctrl-C", Duration::from_secs(30));
    let (script, _) = scripts(&again.log());
    let new_key = the_key(&script);
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
}
