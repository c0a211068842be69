//! HEAD, Range, ETag and If-None-Match, Last-Modified and If-Modified-Since, caching headers
//! and the bytes themselves, checked against the files on disk.

use tollgate_ostree_format::{
    Checksum, ObjectName, ObjectType, Repo, client_config, commit_closure,
};

use crate::fixture::{Fixture, files_under, sample_tree};
use crate::http::{get, request};
use crate::server::Server;

#[test]
fn every_file_comes_back_byte_for_byte() {
    let fx = Fixture::new();
    let repo = fx.join("repo");
    fx.flatpak_runtime(&repo, "org.example.Platform", 1, None);
    fx.flatpak_runtime(&repo, "org.example.Platform", 2, None);
    fx.flatpak_update_repo(&repo);
    let server = Server::serve(&["--repo", repo.to_str().unwrap()], fx.env());
    let mut served = 0;
    for rel in files_under(&repo) {
        if ["tmp/", "state/", "extensions/", ".lock"]
            .iter()
            .any(|p| rel.starts_with(p))
        {
            continue;
        }
        let response = get(server.addr, &format!("/{rel}"));
        assert_eq!(response.status, 200, "{rel}");
        let mut expected = std::fs::read(repo.join(&rel)).unwrap();
        if rel == "config" {
            // Served as clients need it: the format keys and flatpak's group.
            expected = client_config(&String::from_utf8(expected).unwrap()).into_bytes();
        }
        assert_eq!(response.body, expected, "{rel}");
        assert_eq!(
            response.header("content-length"),
            Some(response.body.len().to_string().as_str())
        );
        served += 1;
    }
    assert!(served > 30, "only {served} files");
}

#[test]
fn head_range_etag_and_caching() {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let (repo, commit) = fx.archive_repo("repo", "test/a", &tree);
    let server = Server::serve(&["--repo", repo.to_str().unwrap()], fx.env());

    // The biggest content object (the 300 KiB file; big enough to be streamed) and the commit.
    let opened = Repo::open(&repo).unwrap();
    let big = commit_closure(&opened, Checksum::from_hex(&commit).unwrap())
        .unwrap()
        .into_iter()
        .filter(|o| o.kind == ObjectType::File)
        .max_by_key(|o| {
            std::fs::metadata(repo.join(o.relative_path()))
                .unwrap()
                .len()
        })
        .unwrap();
    let big_bytes = std::fs::read(repo.join(big.relative_path())).unwrap();
    assert!(big_bytes.len() > 256 * 1024, "{}", big_bytes.len());
    let big_path = format!("/{}", big.relative_path());
    let commit_path = format!(
        "/{}",
        ObjectName::new(Checksum::from_hex(&commit).unwrap(), ObjectType::Commit).relative_path()
    );

    // GET and HEAD agree on everything but the body.
    for path in [&big_path, &commit_path, &"/summary".to_owned()] {
        let full = get(server.addr, path);
        let head = request(server.addr, "HEAD", path, &[]);
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty(), "HEAD {path} sent a body");
        for name in [
            "content-length",
            "etag",
            "last-modified",
            "cache-control",
            "accept-ranges",
        ] {
            assert!(full.header(name).is_some(), "GET {path} has no {name}");
            assert_eq!(head.header(name), full.header(name), "{name} of {path}");
        }
    }

    // Objects: the checksum is the ETag, cached for a year.
    let full = get(server.addr, &big_path);
    assert_eq!(full.body, big_bytes);
    assert_eq!(
        full.header("etag"),
        Some(format!("\"{}\"", big.checksum).as_str())
    );
    assert_eq!(
        full.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let etag = full.header("etag").unwrap().to_owned();
    let revalidated = request(server.addr, "GET", &big_path, &[("If-None-Match", &etag)]);
    assert_eq!(revalidated.status, 304);
    assert!(revalidated.body.is_empty());
    assert_eq!(revalidated.header("etag"), Some(etag.as_str()));
    let other = request(
        server.addr,
        "GET",
        &big_path,
        &[("If-None-Match", "\"other\"")],
    );
    assert_eq!((other.status, other.body.len()), (200, big_bytes.len()));

    // Ranges, on the streamed object and on a small file.
    let len = big_bytes.len();
    let cases: Vec<(String, usize, usize)> = vec![
        ("bytes=0-9".into(), 0, 9),
        ("bytes=1000-".into(), 1000, len - 1),
        ("bytes=-300".into(), len - 300, len - 1),
        (
            format!("bytes={}-{}", len - 10, len + 100),
            len - 10,
            len - 1,
        ),
        ("bytes=100000-299999".into(), 100_000, 299_999),
    ];
    for (range, start, end) in cases {
        let r = request(server.addr, "GET", &big_path, &[("Range", &range)]);
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(r.body, &big_bytes[start..=end], "{range}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {start}-{end}/{len}").as_str())
        );
        assert_eq!(
            r.header("content-length"),
            Some((end - start + 1).to_string().as_str())
        );
    }
    let r = request(
        server.addr,
        "GET",
        &big_path,
        &[("Range", &format!("bytes={len}-"))],
    );
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );
    let r = request(server.addr, "GET", &commit_path, &[("Range", "bytes=-4")]);
    let commit_bytes = std::fs::read(repo.join(&commit_path[1..])).unwrap();
    assert_eq!(
        (r.status, r.body.as_slice()),
        (206, &commit_bytes[commit_bytes.len() - 4..])
    );
    let r = request(
        server.addr,
        "GET",
        &commit_path,
        &[("Range", "bytes=0-1,4-5")],
    );
    assert_eq!(
        (r.status, r.body),
        (200, commit_bytes.clone()),
        "several ranges: the whole file"
    );
    let r = request(
        server.addr,
        "GET",
        &commit_path,
        &[("Range", "bytes=0-1"), ("If-Range", "\"stale\"")],
    );
    assert_eq!(
        (r.status, r.body),
        (200, commit_bytes),
        "If-Range that no longer matches"
    );

    // The summary is revalidated, by date or by tag.
    let summary = get(server.addr, "/summary");
    assert_eq!(summary.header("cache-control"), Some("no-cache"));
    let modified = summary.header("last-modified").unwrap().to_owned();
    let r = request(
        server.addr,
        "GET",
        "/summary",
        &[("If-Modified-Since", &modified)],
    );
    assert_eq!((r.status, r.body.len()), (304, 0));
    let r = request(
        server.addr,
        "GET",
        "/summary",
        &[("If-Modified-Since", "Thu, 01 Jan 1970 00:00:01 GMT")],
    );
    assert_eq!(r.status, 200);
    let tag = summary.header("etag").unwrap().to_owned();
    assert_eq!(
        request(server.addr, "GET", "/summary", &[("If-None-Match", &tag)]).status,
        304
    );

    // Rewriting the summary changes its validators.
    std::thread::sleep(std::time::Duration::from_millis(20));
    fx.ostree(&repo)
        .args(["summary", "-u", "--add-metadata=changed='yes'"])
        .run();
    let r = request(server.addr, "GET", "/summary", &[("If-None-Match", &tag)]);
    assert_eq!(r.status, 200, "a rewritten summary is not 'not modified'");

    // Only GET and HEAD.
    let r = request(server.addr, "POST", "/config", &[("Content-Length", "0")]);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = get(server.addr, "/objects/00/nothing.filez");
    assert_eq!(r.status, 404);
    assert!(
        String::from_utf8_lossy(&r.body).contains("\"error-type\":\"not-found\""),
        "{r:?}"
    );
}

#[test]
fn detached_metadata_is_revalidated() {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let repo = fx.join("repo");
    fx.ostree(&repo).args(["init", "--mode=archive"]).run();
    let commit = fx
        .ostree(&repo)
        .args([
            "commit",
            "--branch=test/a",
            "--add-detached-metadata-string=sig=one",
        ])
        .arg(&tree)
        .run();
    let meta = ObjectName::new(
        Checksum::from_hex(commit.trim()).unwrap(),
        ObjectType::CommitMeta,
    );
    let server = Server::serve(&["--repo", repo.to_str().unwrap()], fx.env());
    let path = format!("/{}", meta.relative_path());
    let first = get(server.addr, &path);
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("cache-control"),
        Some("no-cache"),
        "signatures can be replaced"
    );
    let tag = first.header("etag").unwrap().to_owned();
    assert_ne!(
        tag,
        format!("\"{}\"", meta.checksum),
        "not the commit's checksum"
    );
    assert_eq!(
        request(server.addr, "GET", &path, &[("If-None-Match", &tag)]).status,
        304
    );

    // Signing again rewrites the file (by rename, as ostree does): the old tag no longer matches.
    let file = repo.join(meta.relative_path());
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(file.with_extension("tmp"), &bytes).unwrap();
    std::fs::rename(file.with_extension("tmp"), &file).unwrap();
    assert_eq!(
        request(server.addr, "GET", &path, &[("If-None-Match", &tag)]).status,
        200
    );
}

/// Status, headers (sorted, without `Date`) and body of one answer.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

#[test]
fn small_objects_from_memory_answer_as_from_disk() {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let (repo, commit) = fx.archive_repo("repo", "test/a", &tree);
    let server = Server::serve(&["--repo", repo.to_str().unwrap()], fx.env());
    let opened = Repo::open(&repo).unwrap();
    let small: Vec<String> = commit_closure(&opened, Checksum::from_hex(&commit).unwrap())
        .unwrap()
        .into_iter()
        .filter(|o| {
            std::fs::metadata(repo.join(o.relative_path()))
                .unwrap()
                .len()
                <= 256 * 1024
        })
        .map(|o| format!("/{}", o.relative_path()))
        .collect();
    assert!(small.len() > 10, "{small:?}");

    // Every kind of request, the GET that keeps the file in memory last: the first time all
    // from disk, the second time all from memory.
    let answers = |path: &str| -> Vec<Answer> {
        let head = request(server.addr, "HEAD", path, &[]);
        let etag = head.header("etag").unwrap().to_owned();
        let asks: [(&str, Vec<(&str, &str)>); 8] = [
            ("HEAD", vec![]),
            ("GET", vec![("Range", "bytes=0-3")]),
            ("GET", vec![("Range", "bytes=-2")]),
            ("GET", vec![("Range", "bytes=99999999-")]),
            ("HEAD", vec![("Range", "bytes=0-3")]),
            ("GET", vec![("If-None-Match", &etag)]),
            (
                "GET",
                vec![("If-None-Match", "\"other\""), ("Range", "bytes=1-1")],
            ),
            ("GET", vec![]),
        ];
        asks.iter()
            .map(|(method, headers)| {
                let r = request(server.addr, method, path, headers);
                let mut headers: Vec<(String, String)> = r
                    .headers
                    .into_iter()
                    .filter(|(k, _)| !k.eq_ignore_ascii_case("date"))
                    .collect();
                headers.sort();
                (r.status, headers, r.body)
            })
            .collect()
    };
    let hits = || -> u64 {
        let text = String::from_utf8(get(server.addr, "/metrics").body).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("tollgate_file_cache_hits_total "))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let before = hits();
    for path in &small {
        let from_disk = answers(path);
        let from_memory = answers(path);
        assert_eq!(from_disk, from_memory, "{path}");
        let on_disk = std::fs::read(repo.join(&path[1..])).unwrap();
        assert_eq!(from_memory[7].2, on_disk, "{path}");
        assert_eq!(from_memory[1].2, on_disk[..4.min(on_disk.len())], "{path}");
        assert_eq!(
            [
                from_memory[0].0,
                from_memory[1].0,
                from_memory[3].0,
                from_memory[5].0,
                from_memory[6].0
            ],
            [200, 206, 416, 304, 206],
            "{path}"
        );
    }
    // Each second round (and the HEAD before it) came from memory.
    assert_eq!(hits() - before, 9 * small.len() as u64);
}
