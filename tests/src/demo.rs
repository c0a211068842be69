//! `tollgate demo` works from nothing: it builds a real Flatpak repository, serves it, and the
//! commands it prints install from it.

use std::time::Duration;

use crate::fixture::Fixture;
use crate::server::Server;

#[test]
fn the_printed_commands_install_the_demo_runtime() {
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
    server.wait_for_log("Press Ctrl-C", Duration::from_secs(30));
    let printed = server.log();
    let commands: Vec<&str> = printed
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("flatpak ") || l.starts_with("ostree "))
        .collect();
    assert!(
        commands.len() >= 8,
        "the demo prints the commands to run:\n{printed}"
    );

    // Run them in order, as a person would, in their own (isolated) home.
    for command in &commands {
        let out = fx.cmd("sh").args(["-c", command]).run();
        if command.contains("list --runtime") {
            assert!(
                out.contains("org.tollgate.Demo.Platform"),
                "{command}:\n{out}"
            );
        }
        if command.ends_with(" fsck") {
            assert!(out.contains("no errors found"), "{out}");
        }
    }
    let listed = fx.flatpak().args(["--user", "list", "--runtime"]).run();
    assert!(
        !listed.contains("org.tollgate.Demo.Platform"),
        "the printed uninstall worked"
    );
    assert_eq!(
        server.stop().code(),
        Some(0),
        "Ctrl-C/SIGTERM stops the demo cleanly"
    );

    // A second run serves the repository it built before.
    let mut again = Server::start(&args, fx.env());
    again.wait_for_log(
        "serving the demo repository built earlier",
        Duration::from_secs(10),
    );
    assert_eq!(crate::http::get(again.addr, "/summary.idx").status, 200);
}
