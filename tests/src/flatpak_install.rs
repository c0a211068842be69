//! `flatpak --user install` of a runtime from `tollgate serve`, in an isolated HOME.

use crate::fixture::Fixture;
use crate::server::Server;

#[test]
fn install_and_uninstall_a_runtime() {
    let fx = Fixture::new();
    let repo = fx.join("repo");
    fx.flatpak_runtime(&repo, "org.example.Platform", 1, None);
    fx.flatpak_update_repo(&repo);
    let server = Server::serve(&["--repo", repo.to_str().unwrap()], fx.env());

    fx.flatpak_remote_add("test", &server.url());
    fx.flatpak_install(&[], "test", "org.example.Platform");
    let listed = fx
        .flatpak()
        .args([
            "--user",
            "list",
            "--runtime",
            "--columns=application,origin",
        ])
        .run();
    assert!(
        listed
            .lines()
            .any(|l| l.contains("org.example.Platform") && l.contains("test")),
        "flatpak list shows the runtime:\n{listed}"
    );
    // The installed files are the ones exported.
    let arch = fx.flatpak_arch();
    let installed = fx.join(format!(
        "home/.local/share/flatpak/runtime/org.example.Platform/{arch}/stable/active/files/version"
    ));
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), "1\n");

    // flatpak's own requests went through the server, summary index first.
    let requests = server.requests_since(0);
    assert!(
        requests
            .iter()
            .any(|a| a.path == "/summary.idx" && a.status == 200),
        "{requests:?}"
    );
    assert!(requests.iter().all(|a| a.status < 500), "{requests:?}");

    fx.flatpak()
        .args([
            "--user",
            "uninstall",
            "-y",
            "--noninteractive",
            "org.example.Platform",
        ])
        .run();
    let listed = fx.flatpak().args(["--user", "list", "--runtime"]).run();
    assert!(
        !listed.contains("org.example.Platform"),
        "still installed:\n{listed}"
    );
    assert!(!installed.exists());
}
