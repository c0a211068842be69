//! Files deleted, replaced or rebuilt on disk under a running server: what was served from
//! memory before must not outlive the file it was read from. Driven with the real `ostree`
//! (`prune`, `static-delta generate`, `pull`) on both sides.

use std::path::Path;

use tollgate_ostree_format::{Checksum, ObjectName, ObjectType, Repo, commit_closure};

use crate::fixture::{Fixture, sample_tree, write_files};
use crate::http::{get, request};
use crate::server::Server;

fn commit_path(commit: &str) -> String {
    ObjectName::new(Checksum::from_hex(commit).unwrap(), ObjectType::Commit).relative_path()
}

/// The commits `ostree log` shows for `rev` in `repo`.
/// `ostree static-delta generate` from `from` to `to` with `extra` options, then the summary.
fn generate_delta(fx: &Fixture, repo: &Path, from: &str, to: &str, extra: &[&str]) {
    fx.ostree(repo)
        .args(["static-delta", "generate", "--from", from, "--to", to])
        .args(extra)
        .run();
    fx.ostree(repo).args(["summary", "-u"]).run();
}

fn logged_commits(fx: &Fixture, repo: &Path, rev: &str) -> Vec<String> {
    fx.ostree(repo)
        .args(["log", rev])
        .run()
        .lines()
        .filter_map(|l| l.strip_prefix("commit "))
        .map(|c| c.trim().to_owned())
        .collect()
}

#[test]
fn a_pruned_commit_is_not_served_from_memory() {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let (repo, c1) = fx.archive_repo("srv", "test/a", &tree);
    write_files(&tree, &[("added", b"new\n".to_vec())]);
    let c2 = fx.commit(&repo, "test/a", &tree, "second");
    let server = Server::serve(&["--repo", repo.to_str().unwrap()], fx.env());

    // A first client pulls the ref with its parent: both commits are served, and kept in memory.
    let first = fx.ostree_client_named("first", &server.url());
    fx.ostree(&first)
        .args(["pull", "--depth=1", "origin", "test/a"])
        .run();
    assert_eq!(
        logged_commits(&fx, &first, "origin:test/a"),
        [c2.clone(), c1.clone()]
    );
    let old = format!("/{}", commit_path(&c1));
    assert_eq!(get(server.addr, &old).status, 200, "before the prune");

    // The publisher drops the history; the server keeps running.
    fx.ostree(&repo)
        .args(["prune", "--refs-only", "--depth=0"])
        .run();
    assert!(!repo.join(&old[1..]).exists(), "ostree pruned {c1}");

    // A new client asking for one parent gets only the commit still there.
    let fresh = fx.ostree_client_named("fresh", &server.url());
    fx.ostree(&fresh)
        .args(["pull", "--depth=1", "origin", "test/a"])
        .run();
    assert_eq!(logged_commits(&fx, &fresh, "origin:test/a"), [c2]);
    fx.fsck(&fresh);
    let r = get(server.addr, &old);
    assert_eq!(r.status, 404, "the pruned commit is gone: {r:?}");
}

#[test]
fn a_repaired_object_is_served_with_its_new_bytes() {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let (repo, commit) = fx.archive_repo("srv", "test/a", &tree);
    let server = Server::serve(&["--repo", repo.to_str().unwrap()], fx.env());

    // Two small content objects of the commit (kept in memory once served), damaged on disk:
    // one rewritten in place with as many bytes, one replaced by rename.
    let opened = Repo::open(&repo).unwrap();
    let mut small: Vec<ObjectName> = commit_closure(&opened, Checksum::from_hex(&commit).unwrap())
        .unwrap()
        .into_iter()
        .filter(|o| o.kind == ObjectType::File)
        .filter(|o| {
            std::fs::metadata(repo.join(o.relative_path()))
                .unwrap()
                .len()
                < 16 * 1024
        })
        .collect();
    small.sort();
    assert!(small.len() >= 2, "{small:?}");
    let (in_place, renamed) = (small[0].relative_path(), small[1].relative_path());
    let (in_place, renamed) = (&in_place, &renamed);
    let good: Vec<Vec<u8>> = [in_place, renamed]
        .iter()
        .map(|rel| std::fs::read(repo.join(rel)).unwrap())
        .collect();
    let damaged = |bytes: &[u8]| -> Vec<u8> { bytes.iter().map(|b| b ^ 0x5a).collect() };
    let replace = |rel: &str, bytes: &[u8]| {
        let tmp = repo.join("tmp/replacement");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, repo.join(rel)).unwrap();
    };
    // Keep each file's inode when writing in place; the times move on.
    let rewrite = |rel: &str, bytes: &[u8]| {
        use std::io::Write;
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(repo.join(rel))
            .unwrap();
        file.write_all(bytes).unwrap();
    };
    rewrite(in_place, &damaged(&good[0]));
    replace(renamed, &damaged(&good[1]));

    // A pull fails on the damage, and the damaged bytes are what was served (twice: the
    // second time from memory).
    let cli = fx.ostree_client(&server.url());
    let err = fx
        .ostree(&cli)
        .args(["pull", "origin", "test/a"])
        .run_fail();
    assert!(
        small[..2]
            .iter()
            .any(|o| err.contains(&o.checksum.to_string())),
        "the error names a damaged object: {err}"
    );
    for (rel, bytes) in [(in_place, &good[0]), (renamed, &good[1])] {
        for _ in 0..2 {
            let r = get(server.addr, &format!("/{rel}"));
            assert_eq!((r.status, r.body), (200, damaged(bytes)), "{rel}");
        }
    }

    // Repaired the same two ways: the new bytes are served, and the pull succeeds.
    rewrite(in_place, &good[0]);
    replace(renamed, &good[1]);
    for (rel, bytes) in [(in_place, &good[0]), (renamed, &good[1])] {
        let r = get(server.addr, &format!("/{rel}"));
        assert_eq!((r.status, &r.body), (200, bytes), "{rel} after the repair");
    }
    fx.ostree(&cli).args(["pull", "origin", "test/a"]).run();
    fx.assert_pulled(&cli, "origin", &repo, "test/a");

    // Moved away whole, as an operator might: nothing of it is served from memory.
    std::fs::rename(repo.join("objects"), fx.join("objects-moved")).unwrap();
    for rel in [in_place, renamed] {
        assert_eq!(get(server.addr, &format!("/{rel}")).status, 404, "{rel}");
    }
}

#[test]
fn a_static_delta_generated_again_is_served_anew() {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let (repo, c1) = fx.archive_repo("srv", "test/a", &tree);
    let server = Server::serve(&["--repo", repo.to_str().unwrap()], fx.env());
    // Two clients at the first commit.
    let clients: Vec<_> = ["one", "two"]
        .iter()
        .map(|name| {
            let cli = fx.ostree_client_named(name, &server.url());
            fx.ostree(&cli).args(["pull", "origin", "test/a"]).run();
            cli
        })
        .collect();

    // A second commit and a delta to it, small enough to be kept in memory once served.
    write_files(
        &tree,
        &[
            ("usr/share/doc/README", b"changed\n".to_vec()),
            ("added", crate::fixture::pseudo_random(8 * 1024, 3)),
        ],
    );
    let c2 = fx.commit(&repo, "test/a", &tree, "second");
    let generate = |extra: &[&str]| generate_delta(&fx, &repo, &c1, &c2, extra);
    generate(&[]);
    let from = Checksum::from_hex(&c1).unwrap().to_modified_base64();
    let to = Checksum::from_hex(&c2).unwrap().to_modified_base64();
    let dir = format!("deltas/{}/{}-{to}", &from[..2], &from[2..]);
    let files = [format!("{dir}/superblock"), format!("{dir}/0")];
    for rel in &files {
        let len = std::fs::metadata(repo.join(rel)).unwrap().len();
        assert!(len <= 64 * 1024, "{rel} is {len} bytes");
    }

    // The first client updates through the delta; its files are then served from memory.
    let mark = server.log().len();
    fx.ostree(&clients[0])
        .args(["pull", "origin", "test/a"])
        .run();
    fx.assert_pulled(&clients[0], "origin", &repo, "test/a");
    let served = server.requests_since(mark);
    for rel in &files {
        assert!(
            served
                .iter()
                .any(|a| a.path == format!("/{rel}") && a.status == 200),
            "/{rel} was not served: {served:?}"
        );
    }
    let before: Vec<_> = files
        .iter()
        .map(|rel| {
            let r = get(server.addr, &format!("/{rel}"));
            assert_eq!(r.status, 200, "{rel}");
            r
        })
        .collect();

    // The same delta generated again with other options: ostree writes it under its name.
    std::thread::sleep(std::time::Duration::from_millis(20));
    generate(&["--swap-endianness"]);
    let superblock = std::fs::read(repo.join(&files[0])).unwrap();
    assert_ne!(superblock, before[0].body, "the superblock was rewritten");

    // The second client updates through the new delta.
    let mark = server.log().len();
    fx.ostree(&clients[1])
        .args(["pull", "origin", "test/a"])
        .run();
    fx.assert_pulled(&clients[1], "origin", &repo, "test/a");
    assert!(
        server
            .requests_since(mark)
            .iter()
            .any(|a| a.path == format!("/{}", files[0]) && a.status == 200),
        "the second pull went through the delta"
    );

    // Each file comes with its new bytes and validators; the old ETag no longer matches.
    for (rel, old) in files.iter().zip(&before) {
        let path = format!("/{rel}");
        let on_disk = std::fs::read(repo.join(rel)).unwrap();
        let old_tag = old.header("etag").unwrap();
        let r = request(server.addr, "GET", &path, &[("If-None-Match", old_tag)]);
        assert_eq!((r.status, &r.body), (200, &on_disk), "{rel} revalidated");
        assert_ne!(r.header("etag"), Some(old_tag), "{rel}");
        // Named by its commits, not by its bytes: any cache may keep it, but must ask again.
        assert_eq!(r.header("cache-control"), Some("public, no-cache"), "{rel}");
        let tag = r.header("etag").unwrap();
        let again = request(server.addr, "GET", &path, &[("If-None-Match", tag)]);
        assert_eq!(again.status, 304, "{rel} with its new ETag");
    }
}

#[test]
fn files_from_a_bucket_are_answered_from_memory_only_until_the_next_publish() {
    use crate::s3::{ACCESS_KEY, REGION, S3, SECRET_KEY};
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let (repo, c1) = fx.archive_repo("srv", "test/a", &tree);
    let s3 = S3::start(&fx.join("s3"));
    s3.create_bucket("repos");
    let mut uploaded = s3.sync(&repo, "repos", "shop", &Default::default());
    let secret = fx.join("s3-secret");
    std::fs::write(&secret, SECRET_KEY).unwrap();
    crate::fixture::set_mode(&secret, 0o600);
    let config = fx.join("storage.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nendpoint = \"{}\"\nregion = \"{REGION}\"\naccess-key-id = \
             \"{ACCESS_KEY}\"\nsecret-access-key-file = \"{}\"\n",
            s3.endpoint(),
            secret.display()
        ),
    )
    .unwrap();
    let server = Server::serve(
        &[
            "--repo",
            "s3://repos/shop",
            "--config",
            config.to_str().unwrap(),
        ],
        fx.env(),
    );
    let clients: Vec<_> = ["one", "two"]
        .iter()
        .map(|name| {
            let cli = fx.ostree_client_named(name, &server.url());
            fx.ostree(&cli).args(["pull", "origin", "test/a"]).run();
            cli
        })
        .collect();
    // Waits until the server's index has seen what was last uploaded (it polls the bucket).
    let published = |commit: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while String::from_utf8_lossy(&get(server.addr, "/refs/heads/test/a").body).trim() != commit
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{commit} never showed"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };

    // A second commit with a delta to it, uploaded; the first client updates through it.
    write_files(
        &tree,
        &[("added", crate::fixture::pseudo_random(8 * 1024, 4))],
    );
    let c2 = fx.commit(&repo, "test/a", &tree, "second");
    let generate = |extra: &[&str]| generate_delta(&fx, &repo, &c1, &c2, extra);
    generate(&[]);
    uploaded = s3.sync(&repo, "repos", "shop", &uploaded);
    published(&c2);
    fx.ostree(&clients[0])
        .args(["pull", "origin", "test/a"])
        .run();
    fx.assert_pulled(&clients[0], "origin", &repo, "test/a");
    let from = Checksum::from_hex(&c1).unwrap().to_modified_base64();
    let to = Checksum::from_hex(&c2).unwrap().to_modified_base64();
    let superblock = format!("deltas/{}/{}-{to}/superblock", &from[..2], &from[2..]);
    let before = get(server.addr, &format!("/{superblock}"));

    // The delta generated again and uploaded: its new bytes are served at once, before the
    // index has even seen the new summary, and the next client's pull through it succeeds.
    std::thread::sleep(std::time::Duration::from_millis(20));
    generate(&["--swap-endianness"]);
    uploaded = s3.sync(&repo, "repos", "shop", &uploaded);
    let on_disk = std::fs::read(repo.join(&superblock)).unwrap();
    assert_ne!(on_disk, before.body);
    assert_eq!(get(server.addr, &format!("/{superblock}")).body, on_disk);
    fx.ostree(&clients[1])
        .args(["pull", "origin", "test/a"])
        .run();
    fx.assert_pulled(&clients[1], "origin", &repo, "test/a");
    let r = get(server.addr, &format!("/{superblock}"));
    assert_eq!(r.header("cache-control"), Some("public, no-cache"));
    assert_ne!(
        r.header("etag"),
        before.header("etag"),
        "the bucket's new ETag"
    );

    // The history pruned and the new summary uploaded, the pruned commit deleted from the
    // bucket: once the index has seen the publish, it is no longer served from memory.
    let old = commit_path(&c1);
    assert_eq!(get(server.addr, &format!("/{old}")).status, 200);
    fx.ostree(&repo)
        .args(["prune", "--refs-only", "--depth=0"])
        .run();
    fx.ostree(&repo).args(["summary", "-u"]).run();
    std::fs::remove_file(s3.file("repos", &format!("shop/{old}"))).unwrap();
    let generation_moved = |path: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while get(server.addr, path).status != 404 {
            assert!(std::time::Instant::now() < deadline, "{path} still served");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    s3.sync(&repo, "repos", "shop", &uploaded);
    generation_moved(&format!("/{old}"));
    let fresh = fx.ostree_client_named("fresh", &server.url());
    fx.ostree(&fresh)
        .args(["pull", "--depth=1", "origin", "test/a"])
        .run();
    assert_eq!(logged_commits(&fx, &fresh, "origin:test/a"), [c2]);
}
