//! `tollgate serve` given something it cannot serve: one clear error line, a non-zero exit,
//! and nothing written.

use std::net::TcpListener;
use std::time::Duration;

use crate::cmd::Cmd;
use crate::fixture::{Fixture, sample_tree};
use crate::server::{serve_refused, tollgate_bin};

#[test]
fn unusable_repositories_are_named() {
    let fx = Fixture::new();
    let missing = fx.join("missing");
    let line = serve_refused(
        &fx,
        &[
            "--repo",
            missing.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(
        line,
        format!("error: {}: no such directory", missing.display())
    );

    let empty = fx.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let line = serve_refused(
        &fx,
        &["--repo", empty.to_str().unwrap(), "--listen", "127.0.0.1:0"],
    );
    assert_eq!(
        line,
        format!(
            "error: {} is not an OSTree repository: it has no `config` file",
            empty.display()
        )
    );

    for mode in ["bare", "bare-user"] {
        let repo = fx.join(mode);
        fx.ostree(&repo)
            .args(["init", &format!("--mode={mode}")])
            .run();
        let line = serve_refused(
            &fx,
            &["--repo", repo.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        );
        assert!(
            line.contains(&format!("is a repository in mode `{mode}`")),
            "{line}"
        );
        assert!(line.contains("only archive repositories"), "{line}");
        assert!(
            line.contains("ostree init --mode=archive"),
            "says how to fix it: {line}"
        );
    }
}

#[test]
fn an_address_in_use_is_named() {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let (repo, _) = fx.archive_repo("repo", "test/a", &tree);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let line = serve_refused(&fx, &["--repo", repo.to_str().unwrap(), "--listen", &addr]);
    assert!(
        line.starts_with(&format!("error: cannot listen on {addr} (another program")),
        "{line}"
    );
    assert!(
        line.contains("Address in use") || line.contains("Address already in use"),
        "{line}"
    );
    assert!(line.contains("--listen"), "says what to do: {line}");
}

#[test]
fn bad_arguments_are_refused_before_anything_happens() {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let (repo, _) = fx.archive_repo("repo", "test/a", &tree);
    let repo = repo.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--repo", &format!("objects={repo}")], "reserved"),
        (&["--repo", "apps="], "gives no path"),
        (
            &["--repo", repo, "--listen", "not-an-address"],
            "invalid socket address",
        ),
        (
            &[
                "--repo",
                &format!("a={repo}"),
                "--repo",
                &format!("a={repo}"),
            ],
            "two repositories are named \"a\"",
        ),
        (
            &["--repo", repo, "--repo", repo],
            "more than one repository would be served at `/`",
        ),
    ];
    for (args, expected) in cases {
        let data = fx.join("data");
        // Never the default port, and never for long, should a regression accept the arguments.
        let listen: &[&str] = if args.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let out = Cmd::new(tollgate_bin())
            .arg("serve")
            .args(*args)
            .args(listen)
            .args(["--data-dir", data.to_str().unwrap()])
            .timeout(Duration::from_secs(20))
            .output();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in:\n{stderr}"
        );
        assert!(!data.exists(), "{args:?} created the data directory");
    }
}
