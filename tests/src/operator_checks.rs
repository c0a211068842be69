//! What `tollgate` refuses or warns about in the operator's own settings, against the real
//! binary: a flat-manager secret short enough to guess, database URLs whose password would be
//! shown, PostgreSQL reached without TLS off this machine, and hand-made tokens that would
//! live longer than SECURITY.md says tokens do.

use std::io::Read as _;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::cmd::Cmd;
use crate::fixture::{Fixture, sample_tree, set_mode};
use crate::gated_repo::{APP, FLAT_MANAGER_SECRET, gated_repo};
use crate::http;
use crate::server::{Server, tollgate_bin};
use crate::tokens;

/// `tollgate serve` with `args` on a free port, expected to stop at start: its stderr.
fn serve_fails(fx: &Fixture, args: &[&str]) -> String {
    Cmd::new(tollgate_bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .envs(fx.env())
        .timeout(Duration::from_secs(20))
        .run_fail()
}

#[test]
fn short_flat_manager_secrets_stop_the_server_and_empty_key_tokens_open_nothing() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let repo = g.repo.to_str().unwrap();
    let data = g.data.to_str().unwrap();
    let short = fx.join("short-secret");
    let config = fx.join("short.toml");
    for (what, secret, inline) in [
        ("an empty secret file", String::new(), false),
        ("a secret file of spaces", "   \n".to_owned(), false),
        ("a secret of 31 bytes", STANDARD.encode([7u8; 31]), false),
        ("an empty inline secret", String::new(), true),
    ] {
        let (text, setting) = if inline {
            (
                format!("[tokens]\nflat-manager-secret = {secret:?}\n"),
                "flat-manager-secret",
            )
        } else {
            std::fs::write(&short, &secret).unwrap();
            set_mode(&short, 0o600);
            (
                "[tokens]\nflat-manager-secret-file = \"short-secret\"\n".to_owned(),
                "flat-manager-secret-file",
            )
        };
        std::fs::write(&config, text).unwrap();
        set_mode(&config, 0o600);
        let err = serve_fails(
            &fx,
            &[
                "--repo",
                repo,
                "--data-dir",
                data,
                "--config",
                config.to_str().unwrap(),
            ],
        );
        assert!(
            err.contains(&format!("[tokens] {setting}")) && err.contains("at least 32 bytes"),
            "{what}: the error names neither the setting nor what it needs:\n{err}"
        );
    }

    // A flat-manager token signed with the empty key, for every app under `org` and `com`:
    // refused by a server with a real secret, and by one with none.
    let app = fx.rev_parse(&g.repo, &g.app_ref);
    let commit = format!("/objects/{}/{}.commit", &app[..2], &app[2..]);
    let claims = |prefixes: &[&str]| {
        json!({"sub": "download", "exp": tokens::now() + 600, "scope": ["download"],
               "prefixes": prefixes, "repos": [""]})
    };
    let empty_key = format!(
        "Bearer {}",
        tokens::flat_manager(b"", &claims(&["org", "com"]))
    );
    let none = fx.join("none.toml");
    std::fs::write(&none, "").unwrap();
    for (config, what) in [(&g.config, "a real secret"), (&none, "no secret")] {
        let server = Server::serve(
            &[
                "--repo",
                repo,
                "--data-dir",
                data,
                "--config",
                config.to_str().unwrap(),
            ],
            fx.env(),
        );
        let r = http::request(
            server.addr,
            "GET",
            &commit,
            &[("Authorization", &empty_key)],
        );
        assert_eq!(
            r.status, 401,
            "with {what}, the empty-key token got {}",
            r.status
        );
        if config == &g.config {
            let real = tokens::flat_manager(FLAT_MANAGER_SECRET, &claims(&[APP]));
            let r = http::request(
                server.addr,
                "GET",
                &commit,
                &[("Authorization", &format!("Bearer {real}"))],
            );
            assert_eq!(r.status, 200, "the real secret's token");
        }
    }
}

/// A TCP server that takes each connection and closes it at once: a PostgreSQL that fails
/// without a wait (a refused connection is retried for half a minute). Stops when dropped.
struct Closer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Closer {
    fn start(ip: IpAddr) -> Closer {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
                        let _ = stream.read(&mut [0u8; 64]);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Closer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An address of this machine that is not loopback: the one a packet to TEST-NET-3 would
/// leave from (connecting a UDP socket sends nothing).
fn non_loopback_address() -> IpAddr {
    let probe = UdpSocket::bind("0.0.0.0:0").unwrap();
    probe.connect("203.0.113.1:9").expect(
        "this test needs an address other than loopback (a route to 203.0.113.1); the machine \
         has none",
    );
    let ip = probe.local_addr().unwrap().ip();
    assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
    ip
}

/// A small archive repository and a data directory with its key, for commands that fail at
/// the database.
fn repo_and_data(fx: &Fixture) -> (PathBuf, PathBuf) {
    let (repo, _) = fx.archive_repo("repo", "os/x", &sample_tree(&fx.join("tree")));
    let data = fx.join("data");
    Cmd::new(tollgate_bin())
        .args(["keys", "generate", "--data-dir"])
        .arg(&data)
        .run();
    (repo, data)
}

fn tollgate(fx: &Fixture) -> Cmd {
    Cmd::new(tollgate_bin())
        .envs(fx.env())
        .env("RUST_LOG", "debug")
        .timeout(Duration::from_secs(20))
}

#[test]
fn database_urls_never_show_their_password() {
    let fx = Fixture::new();
    let (repo, data) = repo_and_data(&fx);
    let (repo, data) = (repo.to_str().unwrap(), data.to_str().unwrap());
    let pg = Closer::start([127, 0, 0, 1].into());
    let at = pg.addr.to_string();
    // Every password starts with "hunter", which nothing else here contains.
    let urls = [
        (format!("postgres://tollgate:hunter2-plain@{at}/db"), true),
        (format!("postgres://tollgate:hunter@2-at@{at}/db"), true),
        (
            format!("postgres://tollgate:hunter%402-encoded@{at}/db"),
            true,
        ),
        (
            format!("postgres://tollgate@{at}/db?sslmode=disable&password=hunter2-query"),
            true,
        ),
        (
            format!("postgresql://tollgate:hunter2/slash@{at}/db"),
            false,
        ),
    ];
    for (url, parses) in &urls {
        let runs: Vec<(&str, Cmd)> = vec![
            (
                "serve --database-url",
                tollgate(&fx)
                    .args(["serve", "--listen", "127.0.0.1:0", "--repo", repo])
                    .args(["--data-dir", data, "--database-url", url]),
            ),
            (
                "serve with TOLLGATE_DATABASE_URL",
                tollgate(&fx)
                    .args(["serve", "--listen", "127.0.0.1:0", "--repo", repo])
                    .args(["--data-dir", data])
                    .env("TOLLGATE_DATABASE_URL", url),
            ),
            (
                "admin product list",
                tollgate(&fx)
                    .args(["admin", "--data-dir", data, "--database-url", url])
                    .args(["product", "list"]),
            ),
            (
                "keys rotate",
                tollgate(&fx).args(["keys", "rotate", "--data-dir", data, "--database-url", url]),
            ),
        ];
        for (what, cmd) in runs {
            let output = cmd.output();
            assert!(!output.status.success(), "{what} with {url} succeeded");
            let shown = crate::cmd::describe(&output);
            assert!(
                !shown.contains("hunter"),
                "{what} showed the password of {url}:\n{shown}"
            );
            if *parses {
                assert!(shown.contains(&at), "{what} did not say where:\n{shown}");
            }
        }
        for help in [
            &["serve", "--help"][..],
            &["admin", "--help"],
            &["keys", "rotate", "--help"],
        ] {
            let shown = tollgate(&fx)
                .args(help)
                .env("TOLLGATE_DATABASE_URL", url)
                .run();
            assert!(
                !shown.contains("hunter") && shown.contains("TOLLGATE_DATABASE_URL"),
                "tollgate {} with TOLLGATE_DATABASE_URL={url}:\n{shown}",
                help.join(" ")
            );
        }
    }
}

#[test]
fn postgresql_without_tls_off_loopback_is_warned_about() {
    let fx = Fixture::new();
    let (repo, data) = repo_and_data(&fx);
    let (repo, data) = (repo.to_str().unwrap(), data.to_str().unwrap());
    let far = Closer::start(non_loopback_address());
    let near = Closer::start([127, 0, 0, 1].into());
    let warning = "TLS is not required";
    for (pg, query, mode) in [
        (&far, "", Some("prefer")),
        (&far, "?sslmode=disable", Some("disable")),
        (&far, "?sslmode=allow", Some("allow")),
        (&far, "?sslmode=require", None),
        (&far, "?sslmode=verify-full", None),
        (&near, "", None),
        (&near, "?sslmode=disable", None),
    ] {
        let url = format!("postgres://tollgate@{}/db{query}", pg.addr);
        let err = serve_fails(
            &fx,
            &["--repo", repo, "--data-dir", data, "--database-url", &url],
        );
        match mode {
            Some(mode) => assert!(
                err.contains(warning) && err.contains(&format!("{} with sslmode={mode}", pg.addr)),
                "no warning for {url}:\n{err}"
            ),
            None => assert!(!err.contains(warning), "a warning for {url}:\n{err}"),
        }
    }
}

/// The claims of a JWT, unverified.
fn claims(token: &str) -> serde_json::Value {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let body = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap()
}

#[test]
fn hand_made_tokens_live_at_most_a_day_as_security_md_says() {
    let fx = Fixture::new();
    let data = fx.join("data");
    Cmd::new(tollgate_bin())
        .args(["keys", "generate", "--data-dir"])
        .arg(&data)
        .run();
    let day = tokens::issue(&data, &["app/org.example.App/x86_64/stable"], None, 86_400);
    let c = claims(&day);
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        86_400
    );
    for ttl in ["0", "86401", "31536000"] {
        let err = issue_fails(&data, ttl);
        assert!(err.contains("1 to 86400 seconds"), "--ttl {ttl}: {err}");
    }
    // The promise the limit keeps.
    let security =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../SECURITY.md"))
            .unwrap();
    assert!(
        security.contains("at most a day") && security.contains("`tollgate token issue --ttl`"),
        "SECURITY.md no longer says how long tokens made by hand may live"
    );
}

fn issue_fails(data: &Path, ttl: &str) -> String {
    Cmd::new(tollgate_bin())
        .args([
            "token",
            "issue",
            "--ref",
            "app/org.example.App/x86_64/stable",
            "--data-dir",
        ])
        .arg(data)
        .args(["--ttl", ttl])
        .run_fail()
}
