//! Several publishers in one repository: what one publisher writes never opens another's gated
//! content, and one publisher's broken or hostile ref does not take the repository down. Each
//! hostile object is written as any publisher can write it (libostree's `write_metadata` takes
//! whatever variant it is given); the clients are the real `ostree`.

use std::path::{Path, PathBuf};

use crate::cmd::Cmd;
use crate::fixture::{Fixture, write_files};
use crate::http::{Response, request};
use crate::server::{Server, tollgate_bin};
use crate::synth::Objects;
use crate::tokens;

const PAID: &str = "app/org.example.Paid/x86_64/stable";

/// An archive repository with the gated ref [`PAID`] (`xa.token-type` 1), and a data directory
/// with a signing key. Returns (repo, data, the gated commit).
fn paid_repo(fx: &Fixture, files: &[(&str, &[u8])]) -> (PathBuf, PathBuf, String) {
    let repo = fx.join("repo");
    fx.ostree(&repo).args(["init", "--mode=archive"]).run();
    let commit = commit_tree(
        fx,
        &repo,
        PAID,
        "paid",
        files,
        &["--add-metadata=xa.token-type=1"],
    );
    let data = fx.join("data");
    Cmd::new(tollgate_bin())
        .args(["keys", "generate", "--data-dir"])
        .arg(&data)
        .run();
    (repo, data, commit)
}

/// Commits a tree of `files` to `branch` with the real ostree, with `extra` arguments; updates
/// the summary. Returns the commit.
fn commit_tree(
    fx: &Fixture,
    repo: &Path,
    branch: &str,
    name: &str,
    files: &[(&str, &[u8])],
    extra: &[&str],
) -> String {
    let tree = fx.join(format!("tree-{name}"));
    let _ = std::fs::remove_dir_all(&tree);
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (*n, b.to_vec())).collect();
    write_files(&tree, &files);
    let out = fx
        .ostree(repo)
        .args([
            "commit",
            &format!("--branch={branch}"),
            &format!("--subject={name}"),
        ])
        .args(extra)
        .arg(&tree)
        .run();
    fx.ostree(repo).args(["summary", "-u"]).run();
    out.trim().to_owned()
}

fn serve(fx: &Fixture, repo: &Path, data: &Path) -> Server {
    Server::serve(
        &[
            "--repo",
            repo.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        fx.env(),
    )
}

fn object_path(checksum: &str, ext: &str) -> String {
    format!("/objects/{}/{}.{ext}", &checksum[..2], &checksum[2..])
}

fn get(server: &Server, path: &str, token: Option<&str>) -> Response {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("Authorization", b.as_str()))
        .collect();
    request(server.addr, "GET", path, &headers)
}

/// The content checksum of `file` in `rev`, as the real ostree lists it.
fn file_checksum(fx: &Fixture, repo: &Path, rev: &str, file: &str) -> String {
    let line = fx.ostree(repo).args(["ls", "-C", rev, file]).run();
    line.split_whitespace()
        .nth(4)
        .expect("a checksum")
        .to_owned()
}

fn write_ref(repo: &Path, name: &str, commit: &str) {
    let path = repo.join("refs/heads").join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("{commit}\n")).unwrap();
}

#[test]
fn a_checksum_reached_as_a_dirmeta_opens_only_the_dirmeta() {
    let fx = Fixture::new();
    let (repo, data, paid) = paid_repo(&fx, &[("paid.txt", b"what customers pay for")]);
    fx.ostree(&repo)
        .args([
            "static-delta",
            "generate",
            "--empty",
            &format!("--to={paid}"),
        ])
        .run();
    // Another publisher's public commit whose root dirmeta is named after the gated commit
    // (the summary lists it); a real dirmeta under that name, so that the tree reads as one.
    let mut objects = Objects::open(&repo);
    let file = objects.file(b"free\n");
    let tree = objects.dirtree(&[("free.txt", &file)], &[]);
    objects.dirmeta_named(&paid);
    let hostile = objects.commit("free", None, None, &tree, &paid);
    write_ref(&repo, "free/x", &hostile);
    fx.ostree(&repo).args(["summary", "-u"]).run();

    let server = serve(&fx, &repo, &data);
    // The dirmeta of that name is the public commit's, and open; the gated commit is not.
    assert_eq!(
        get(&server, &object_path(&paid, "dirmeta"), None).status,
        200
    );
    assert_eq!(
        get(&server, &object_path(&paid, "commit"), None).status,
        401
    );
    assert_eq!(
        get(&server, &object_path(&hostile, "commit"), None).status,
        200
    );
    let delta = tollgate_ostree_format::Checksum::from_hex(&paid)
        .unwrap()
        .to_modified_base64();
    let superblock = format!("/deltas/{}/{}/superblock", &delta[..2], &delta[2..]);
    assert_eq!(get(&server, &superblock, None).status, 401, "{superblock}");

    // Nobody pulls the gated ref without a token; a customer does.
    let client = fx.ostree_client(&server.url());
    let refused = fx.pull(&client, PAID, None).run_fail();
    assert!(
        refused.contains("401") || refused.contains("Unauthorized") || refused.contains("403"),
        "{refused}"
    );
    let token = tokens::issue(&data, &[PAID], None, 600);
    fx.pull(&client, PAID, Some(&token)).run();
    fx.fsck(&client);
}

#[test]
fn a_public_history_through_a_gated_commit_opens_none_of_it() {
    let fx = Fixture::new();
    let (repo, data, paid) = paid_repo(
        &fx,
        &[("shared.txt", b"in both trees"), ("paid.txt", b"paid only")],
    );
    let paid_file = file_checksum(&fx, &repo, PAID, "/paid.txt");
    let shared_file = file_checksum(&fx, &repo, PAID, "/shared.txt");
    // Another publisher's public ref whose parent is the gated commit, and one pointed at it.
    let free = commit_tree(
        &fx,
        &repo,
        "free/x",
        "free",
        &[("shared.txt", b"in both trees"), ("free.txt", b"free")],
        &[&format!("--parent={paid}")],
    );
    fx.ostree(&repo)
        .args(["refs", "--create=free/y", &paid])
        .run();
    // A ref that turns public opens its own old versions.
    let was_paid = commit_tree(
        &fx,
        &repo,
        "app/org.example.Trial/x86_64/stable",
        "trial-1",
        &[("trial.txt", b"version 1")],
        &["--add-metadata=xa.token-type=1"],
    );
    commit_tree(
        &fx,
        &repo,
        "app/org.example.Trial/x86_64/stable",
        "trial-2",
        &[("trial.txt", b"version 2")],
        &[],
    );
    fx.ostree(&repo).args(["summary", "-u"]).run();

    let server = serve(&fx, &repo, &data);
    assert_eq!(
        get(&server, &object_path(&paid, "commit"), None).status,
        401
    );
    assert_eq!(
        get(&server, &object_path(&paid_file, "filez"), None).status,
        401
    );
    assert_eq!(
        get(&server, &object_path(&shared_file, "filez"), None).status,
        200
    );
    assert_eq!(
        get(&server, &object_path(&free, "commit"), None).status,
        200
    );
    assert_eq!(
        get(&server, &object_path(&was_paid, "commit"), None).status,
        200
    );
    // free/y's commit says `xa.token-type` itself: the ref is gated.
    assert_eq!(get(&server, "/refs/heads/free/y", None).status, 401);

    let client = fx.ostree_client(&server.url());
    fx.pull(&client, "free/x", None).run();
    fx.fsck(&client);
    for r in [PAID, "free/y"] {
        let refused = fx.pull(&client, r, None).run_fail();
        assert!(
            refused.contains("401") || refused.contains("Unauthorized"),
            "{r}: {refused}"
        );
    }
    let token = tokens::issue(&data, &[PAID], None, 600);
    fx.pull(&client, PAID, Some(&token)).run();
    fx.fsck(&client);
}

#[test]
fn broken_and_hostile_refs_are_left_out_and_the_others_serve() {
    let fx = Fixture::new();
    let (repo, data, _) = paid_repo(&fx, &[("paid.txt", b"paid")]);
    commit_tree(
        &fx,
        &repo,
        "runtime/ok",
        "runtime",
        &[("lib.so", b"runtime")],
        &[],
    );
    let mut objects = Objects::open(&repo);
    // Any real dirmeta: the runtime's root one.
    let root = fx
        .ostree(&repo)
        .args(["ls", "-C", "-d", "runtime/ok", "/"])
        .run();
    let meta = root.split_whitespace().nth(5).unwrap().to_owned();
    let file = objects.file(b"only the broken ref has this\n");
    let missing = "ab".repeat(32);
    // A tree whose subdirectory is missing: the file beside it is reached by this ref alone.
    let half = objects.dirtree(&[("alone.txt", &file)], &[("gone", &missing, &meta)]);
    let broken = objects.commit("missing", None, None, &half, &meta);
    write_ref(&repo, "broken/missing", &broken);
    // A commit that is not a commit.
    let garbage = "cd".repeat(32);
    objects.raw(&garbage, "commit", b"not a variant at all");
    write_ref(&repo, "broken/corrupt", &garbage);
    // Dirtrees that are a FIFO, a directory, and a sparse file of 2 GiB.
    for (name, kind) in [
        ("broken/fifo", "fifo"),
        ("broken/dir", "dir"),
        ("broken/huge", "huge"),
    ] {
        let tree = format!("{:02x}", 0x10 + kind.as_bytes()[0]).repeat(32);
        let path = repo.join(&object_path(&tree, "dirtree")[1..]);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        match kind {
            "fifo" => {
                Cmd::new("mkfifo").arg(&path).run();
            }
            "dir" => std::fs::create_dir(&path).unwrap(),
            _ => std::fs::File::create(&path)
                .unwrap()
                .set_len(2 << 30)
                .unwrap(),
        }
        let commit = objects.commit(kind, None, None, &tree, &meta);
        write_ref(&repo, name, &commit);
    }
    // Dirtrees that name each other in a loop: walked once, not forever.
    let looped = "ef".repeat(32);
    let looping = objects.dirtree(&[("f", &file)], &[("again", &looped, &meta)]);
    let inner = objects.dirtree(&[], &[("back", &looping, &meta)]);
    let bytes = std::fs::read(repo.join(&object_path(&inner, "dirtree")[1..])).unwrap();
    objects.raw(&looped, "dirtree", &bytes);
    let loop_commit = objects.commit("loop", None, None, &looping, &meta);
    write_ref(&repo, "hostile/loop", &loop_commit);
    // A tree of more objects than the configured limit of a ref (100 here; every other ref has
    // fewer than 20).
    let many: Vec<(String, String)> = (0..300)
        .map(|i| (format!("f{i:03}"), format!("{:064x}", i + 1)))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, c)| (n.as_str(), c.as_str())).collect();
    let wide = objects.dirtree(&many, &[]);
    let wide_commit = objects.commit("wide", None, None, &wide, &meta);
    write_ref(&repo, "hostile/wide", &wide_commit);
    let config = fx.join("tollgate.toml");
    std::fs::write(&config, "[limits]\nmax-ref-objects = 100\n").unwrap();

    let mut server = Server::serve(
        &[
            "--repo",
            repo.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        fx.env(),
    );
    server.wait_for_log(
        "leaving the ref out of the index",
        std::time::Duration::from_secs(10),
    );
    let log = server.log();
    for name in [
        "broken/missing",
        "broken/corrupt",
        "broken/fifo",
        "broken/dir",
        "broken/huge",
        "hostile/wide",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("ref {name},")) && l.contains("leaving the ref out")),
            "{name}: {log}"
        );
        assert_eq!(
            get(&server, &format!("/refs/heads/{name}"), None).status,
            404,
            "{name}"
        );
    }
    // What only the broken ref reaches is refused; the loop is indexed.
    assert_eq!(
        get(&server, &object_path(&file, "filez"), None).status,
        200,
        "the loop reaches it too"
    );
    assert_eq!(
        get(&server, &object_path(&half, "dirtree"), None).status,
        404
    );
    assert_eq!(get(&server, "/refs/heads/hostile/loop", None).status, 200);
    assert!(
        log.contains("it reaches more than 100 objects (raise [limits] max-ref-objects"),
        "{log}"
    );
    assert_eq!(
        get(&server, &object_path(&wide, "dirtree"), None).status,
        404
    );
    let metrics = server.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l == "tollgate_index_refs_left_out{repo=\"\"} 6"),
        "{metrics}"
    );

    // The other refs serve as before, to the real ostree.
    let client = fx.ostree_client(&server.url());
    fx.pull(&client, "runtime/ok", None).run();
    let token = tokens::issue(&data, &[PAID], None, 600);
    fx.pull(&client, PAID, Some(&token)).run();
    fx.fsck(&client);
}
