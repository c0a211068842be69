//! Malformed and hostile request paths: nothing outside the served set comes back, and nothing
//! makes the server answer 5xx or stop answering.

use std::os::unix::fs::symlink;

use crate::cmd::Cmd;
use crate::fixture::{Fixture, sample_tree, write_files};
use crate::http::{self, send_raw};
use crate::server::Server;

const MARKER: &str = "TOLLGATE-SECRET-MARKER";

#[test]
fn nothing_outside_the_repository_is_served() {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let (repo, _) = fx.archive_repo("srv", "test/a", &tree);
    write_files(
        fx.path(),
        &[
            ("secret.txt", MARKER.into()),
            (
                "outside/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.filez",
                MARKER.into(),
            ),
        ],
    );
    // Files in the repository that are not for clients.
    write_files(
        &repo,
        &[
            ("tmp/secret-in-tmp", MARKER.into()),
            ("state/x.commitpartial", MARKER.into()),
            ("extensions/x", MARKER.into()),
            (".hidden", MARKER.into()),
            ("refs/remotes/origin/x", MARKER.into()),
        ],
    );
    // Symlinks that lead out of the repository, each at a path the grammar accepts.
    let secret = fx.join("secret.txt");
    let a62 = "a".repeat(62);
    std::fs::create_dir_all(repo.join("objects/aa")).unwrap();
    symlink(&secret, repo.join(format!("objects/aa/{a62}.filez"))).unwrap();
    symlink(&secret, repo.join("refs/heads/evil")).unwrap();
    std::fs::create_dir_all(repo.join("summaries")).unwrap();
    let digest = "c".repeat(64);
    symlink(
        "../../secret.txt",
        repo.join(format!("summaries/{digest}.gz")),
    )
    .unwrap();
    symlink(fx.join("outside"), repo.join("objects/bb")).unwrap();
    // A symlink that stays inside the repository but leads to a file that is not for clients.
    std::fs::create_dir_all(repo.join("objects/ee")).unwrap();
    let e62 = "e".repeat(62);
    symlink(
        "../../tmp/secret-in-tmp",
        repo.join(format!("objects/ee/{e62}.filez")),
    )
    .unwrap();
    // A socket where an object should be (bound at a short path, then moved: socket paths are
    // limited to 108 bytes).
    let f62 = "f".repeat(62);
    let short = std::env::temp_dir().join(format!("tg-{}.sock", std::process::id()));
    let _socket = std::os::unix::net::UnixListener::bind(&short).unwrap();
    std::fs::rename(&short, repo.join(format!("objects/ee/{f62}.filez"))).unwrap();
    // A remote with credentials in the server's own config.
    let mut config = std::fs::read_to_string(repo.join("config")).unwrap();
    config.push_str(&format!(
        "\n[remote \"upstream\"]\nurl=https://user:{MARKER}@example.com/\n"
    ));
    std::fs::write(repo.join("config"), config).unwrap();
    // A FIFO where an object should be: opening it must not hang the server.
    std::fs::create_dir_all(repo.join("objects/dd")).unwrap();
    let fifo = repo.join(format!("objects/dd/{}.filez", "d".repeat(62)));
    Cmd::new("mkfifo").arg(&fifo).run();

    let server = Server::serve(&["--repo", repo.to_str().unwrap()], fx.env());
    // Over the longest path a file can have (414), within the 64 KiB head limit (else 431).
    let long = format!("/{}", "a/".repeat(20_000));
    let paths: Vec<String> = [
        "/../secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/%252e%252e/secret.txt",
        "/objects/../../secret.txt",
        "/objects/%2e%2e/%2e%2e/secret.txt",
        "/refs/heads/../../../secret.txt",
        "/refs/heads/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        "/refs/heads/evil",
        &format!("/objects/aa/{a62}.filez"),
        &format!("/objects/bb/{}.filez", "b".repeat(62)),
        &format!("/summaries/{digest}.gz"),
        &format!("/objects/dd/{}.filez", "d".repeat(62)),
        &format!("/objects/ee/{e62}.filez"),
        &format!("/objects/ee/{f62}.filez"),
        "/tmp/secret-in-tmp",
        "/state/x.commitpartial",
        "/extensions/x",
        "/.hidden",
        "/refs/remotes/origin/x",
        "/.lock",
        "/%00",
        "/config%00",
        "/config%00.txt",
        "/summary%00/../config",
        "/%ff%fe",
        "//etc/passwd",
        "/etc/passwd",
        "/%2fetc%2fpasswd",
        &format!("/{}", secret.display()),
        "/objects/",
        "/objects",
        "/refs/heads/",
        "/",
        "/config/",
        "/config/..",
        "/config;x=1",
        "/config?../../secret.txt",
        "/..\\secret.txt",
        "/objects\\..\\..\\secret.txt",
        &long,
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();

    for path in &paths {
        for method in ["GET", "HEAD"] {
            let raw = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let response = send_raw(server.addr, raw.as_bytes())
                .unwrap_or_else(|e| panic!("{method} {:.80}: {e}", path));
            let shown = &path[..path.len().min(80)];
            assert!(
                response.status < 500,
                "{method} {shown} gave {}",
                response.status
            );
            assert!(
                !String::from_utf8_lossy(&response.body).contains(MARKER),
                "{method} {shown} leaked a file from outside the served set"
            );
            // Only the query-string case names a real file (`/config`); everything else is refused.
            if !path.starts_with("/config?") {
                assert!(
                    matches!(response.status, 400 | 404 | 414),
                    "{method} {shown} gave {}",
                    response.status
                );
            }
        }
    }

    // Request lines no client would send.
    for raw in [
        "GET ../secret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET http://x/../secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /config HTTP/1.1\r\nHost: x\r\nX-Broken\r\n\r\n",
        "BREW /config HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /config HTTP/9.9\r\nHost: x\r\n\r\n",
    ] {
        let response =
            send_raw(server.addr, raw.as_bytes()).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
        assert!(
            (400..500).contains(&response.status),
            "{raw:?} gave {}",
            response.status
        );
        assert!(
            !String::from_utf8_lossy(&response.body).contains(MARKER),
            "{raw:?}"
        );
    }

    // A quote in a path cannot end the access log's quoted field early.
    let forged = "GET /con\"fig\"_200_999 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let response = send_raw(server.addr, forged.as_bytes()).unwrap();
    assert_eq!(response.status, 404);
    let logged = server.requests_since(0);
    assert!(
        logged
            .iter()
            .any(|a| a.path == "/con%22fig%22_200_999" && a.status == 404),
        "the forged path is logged escaped: {logged:?}"
    );

    // The server is still up and serving; its config without the remote.
    let config = http::get(server.addr, "/config");
    assert_eq!(config.status, 200);
    let config = String::from_utf8_lossy(&config.body);
    assert!(
        config.contains("mode=archive-z2") && !config.contains("upstream"),
        "{config}"
    );
    server.settle();
    let log = server.log();
    assert!(
        log.contains("passes through a symlink"),
        "refusals are logged:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}
