//! `ostree pull` from `tollgate serve`, into a bare-user repository, checked with `ostree fsck`.

use std::collections::BTreeSet;
use std::path::Path;

use tollgate_ostree_format::{Checksum, ObjectName, Repo, RepoPath, commit_closure};

use crate::fixture::{Fixture, sample_tree, write_files};
use crate::server::{Access, Server};

/// Objects served with 200 in `requests`.
fn served_objects(requests: &[Access]) -> BTreeSet<ObjectName> {
    requests
        .iter()
        .filter(|a| a.status == 200)
        .filter_map(|a| match RepoPath::parse(a.path.trim_start_matches('/')) {
            Some(RepoPath::Object(o)) => Some(o),
            _ => None,
        })
        .collect()
}

fn closure(repo: &Path, commit: &str) -> BTreeSet<ObjectName> {
    let repo = Repo::open(repo).unwrap();
    commit_closure(&repo, Checksum::from_hex(commit).unwrap())
        .unwrap()
        .into_iter()
        .collect()
}

#[test]
fn fresh_pull_and_update_fetch_exactly_the_missing_objects() {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let (repo, c1) = fx.archive_repo("srv", "test/a", &tree);
    let server = Server::serve(&["--repo", repo.to_str().unwrap()], fx.env());
    let cli = fx.ostree_client(&server.url());

    let mark = server.log().len();
    fx.ostree(&cli).args(["pull", "origin", "test/a"]).run();
    assert_eq!(fx.rev_parse(&cli, "origin:test/a"), c1);
    fx.fsck(&cli);
    let fetched = served_objects(&server.requests_since(mark));
    assert_eq!(
        fetched,
        closure(&repo, &c1),
        "a fresh pull fetches the commit's whole closure"
    );

    // A new commit that changes one file and adds one: the update fetches only what is new.
    write_files(
        &tree,
        &[
            ("usr/share/doc/README", b"changed\n".to_vec()),
            ("added", b"new\n".to_vec()),
        ],
    );
    let c2 = fx.commit(&repo, "test/a", &tree, "second");
    let mark = server.log().len();
    fx.ostree(&cli).args(["pull", "origin", "test/a"]).run();
    assert_eq!(fx.rev_parse(&cli, "origin:test/a"), c2);
    fx.fsck(&cli);
    let fetched = served_objects(&server.requests_since(mark));
    let new: BTreeSet<_> = closure(&repo, &c2)
        .difference(&closure(&repo, &c1))
        .copied()
        .collect();
    assert_eq!(
        fetched, new,
        "the update fetches exactly the objects the client lacks"
    );
    assert!(
        new.len() < closure(&repo, &c2).len() / 2,
        "most objects were shared: {new:?}"
    );
}

/// Checks that the delta whose superblock is at `superblock` was served, part 0 included.
/// (Whether ostree then also fetches some objects loose is its own affair: 2022.7 scans the
/// commit while delta parts are still in flight, and fetches whatever it finds missing first.)
fn assert_delta_served(requests: &[Access], superblock: &str) {
    let part = superblock.replace("/superblock", "/0");
    for path in [superblock, &part] {
        assert!(
            requests.iter().any(|a| a.path == path && a.status == 200),
            "{path} was not served: {requests:?}"
        );
    }
}

#[test]
fn pulls_use_static_deltas() {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let (repo, c1) = fx.archive_repo("srv", "test/a", &tree);
    fx.ostree(&repo)
        .args(["static-delta", "generate", "--empty", "test/a"])
        .run();
    fx.ostree(&repo).args(["summary", "-u"]).run();
    let server = Server::serve(&["--repo", repo.to_str().unwrap()], fx.env());
    let cli = fx.ostree_client(&server.url());

    let mark = server.log().len();
    fx.ostree(&cli).args(["pull", "origin", "test/a"]).run();
    fx.fsck(&cli);
    let scratch = Checksum::from_hex(&c1).unwrap().to_modified_base64();
    let superblock = format!("/deltas/{}/{}/superblock", &scratch[..2], &scratch[2..]);
    assert_delta_served(&server.requests_since(mark), &superblock);

    // An update through a from-to delta.
    write_files(
        &tree,
        &[(
            "usr/lib/more.bin",
            crate::fixture::pseudo_random(300 * 1024, 8),
        )],
    );
    let c2 = fx.commit(&repo, "test/a", &tree, "second");
    fx.ostree(&repo)
        .args(["static-delta", "generate", "test/a"])
        .run();
    fx.ostree(&repo).args(["summary", "-u"]).run();
    let mark = server.log().len();
    fx.ostree(&cli).args(["pull", "origin", "test/a"]).run();
    assert_eq!(fx.rev_parse(&cli, "origin:test/a"), c2);
    fx.fsck(&cli);
    let from = Checksum::from_hex(&c1).unwrap().to_modified_base64();
    let to = Checksum::from_hex(&c2).unwrap().to_modified_base64();
    let superblock = format!("/deltas/{}/{}-{to}/superblock", &from[..2], &from[2..]);
    assert_delta_served(&server.requests_since(mark), &superblock);
}

#[test]
fn several_repositories_by_name() {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let (apps, apps_commit) = fx.archive_repo("apps", "apps/x", &tree);
    write_files(&tree, &[("os-release", b"ID=example\n".to_vec())]);
    let (os, os_commit) = fx.archive_repo("os", "os/x86_64", &tree);
    let server = Server::serve(
        &[
            "--repo",
            &format!("apps={}", apps.display()),
            "--repo",
            &format!("os={}", os.display()),
        ],
        fx.env(),
    );
    let cli = fx.join("client");
    fx.ostree(&cli).args(["init", "--mode=bare-user"]).run();
    for (name, branch, commit) in [
        ("apps", "apps/x", &apps_commit),
        ("os", "os/x86_64", &os_commit),
    ] {
        let url = format!("{}{name}/", server.url());
        fx.ostree(&cli)
            .args(["remote", "add", "--no-gpg-verify", name, &url])
            .run();
        fx.ostree(&cli).args(["pull", name, branch]).run();
        assert_eq!(&fx.rev_parse(&cli, &format!("{name}:{branch}")), commit);
    }
    fx.fsck(&cli);
    // Nothing is served at `/` when every repository has a name.
    assert_eq!(crate::http::get(server.addr, "/config").status, 404);
    assert_eq!(crate::http::get(server.addr, "/apps/config").status, 200);
}

#[test]
fn refs_are_served_for_clients_without_a_summary() {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let (repo, commit) = fx.archive_repo("srv", "os/x86_64/stable", &tree);
    // Without a summary, ostree reads refs/heads/<ref> itself.
    std::fs::remove_file(repo.join("summary")).unwrap();
    let server = Server::serve(&["--repo", repo.to_str().unwrap()], fx.env());
    let cli = fx.ostree_client(&server.url());
    let mark = server.log().len();
    fx.ostree(&cli)
        .args(["pull", "origin", "os/x86_64/stable"])
        .run();
    assert_eq!(fx.rev_parse(&cli, "origin:os/x86_64/stable"), commit);
    fx.fsck(&cli);
    let requests = server.requests_since(mark);
    assert!(
        requests
            .iter()
            .any(|a| a.path == "/refs/heads/os/x86_64/stable" && a.status == 200),
        "{requests:?}"
    );

    // Mirrored refs of another collection, as `ostree pull --mirror` writes them.
    let (mirror, src_commit) = fx.mirror_repo("os/x86_64", &tree);
    let server = Server::serve(&["--repo", mirror.to_str().unwrap()], fx.env());
    let response = crate::http::get(server.addr, "/refs/mirrors/org.example.Src/os/x86_64");
    assert_eq!(response.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&response.body),
        format!("{src_commit}\n")
    );
    assert_eq!(
        crate::http::get(server.addr, "/refs/mirrors/org.example.Src/os").status,
        404
    );
}
