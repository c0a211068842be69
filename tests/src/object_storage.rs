//! Repositories in S3-compatible object storage: a real S3 server (`s3s-fs`), a real
//! PostgreSQL, and the real `ostree` and `flatpak`, against tollgate streaming from the bucket
//! and tollgate redirecting to it, both started with the configuration files in `docs/deploy`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::bus::{SessionBus, TEST_AUTHENTICATOR_NAME, test_authenticator};
use crate::cmd::{Cmd, require_tool};
use crate::fixture::{Fixture, set_mode};
use crate::gated_repo::{APP, RUNTIME, gated_repo, update_repo};
use crate::postgres::Postgres;
use crate::s3::{S3, SECRET_KEY};
use crate::service::{Service, deactivate_and_check_refused, fetch, license_for_paid, token_for};

const BUCKET: &str = "repos";
const PREFIX: &str = "shop";

/// The deployment configuration `name` from `docs/deploy`, with its placeholders filled in.
fn deploy_config(name: &str, fill: &[(&str, &str)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/deploy")
        .join(name);
    let mut text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    for (placeholder, value) in fill {
        text = text.replace(placeholder, value);
    }
    for placeholder in ["@ENDPOINT@", "@CDN@", "@TTL@"] {
        assert!(
            !text.contains(placeholder),
            "{placeholder} left in {name}:\n{text}"
        );
    }
    text
}

/// `curl URL` with nothing but the URL: the status and the body.
fn plain_get(fx: &Fixture, url: &str) -> (u16, Vec<u8>) {
    let body = fx.join("plain-get.body");
    let status = Cmd::new(require_tool("curl", "curl"))
        .args(["-s", "-o"])
        .arg(&body)
        .args(["-w", "%{http_code}", url])
        .run();
    (
        status.trim().parse().unwrap(),
        std::fs::read(&body).unwrap_or_default(),
    )
}

fn object_path(commit: &str) -> String {
    format!("objects/{}/{}.commit", &commit[..2], &commit[2..])
}

/// Installs the gated app (and its public runtime) with the real flatpak from `url`, the test
/// authenticator handing over `token`, in `fx`'s own installation, and checks that
/// installation's repository with `ostree fsck`.
fn flatpak_install(fx: &Fixture, url: &str, token: &str) {
    let bus = SessionBus::start(fx, &[(TEST_AUTHENTICATOR_NAME, test_authenticator())]);
    let env: Vec<(String, PathBuf)> = fx.env().iter().cloned().chain([bus.env()]).collect();
    std::fs::write(fx.join("run/required-token"), token).unwrap();
    fx.flatpak_remote_add("shop", url);
    fx.flatpak_install(&env, "shop", APP);
    assert_eq!(fx.installed_app(APP), format!("#!/bin/sh\necho {APP} 2\n"));
    fx.fsck(&fx.join("home/.local/share/flatpak/repo"));
}

#[test]
fn a_repository_in_a_bucket_is_served_streamed_and_redirected_by_instances_sharing_one_database() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s3 = S3::start(&fx.join("s3"));
    s3.create_bucket(BUCKET);
    let mut uploaded = s3.sync(&g.repo, BUCKET, PREFIX, &Default::default());
    let secret = fx.join("s3-secret");
    std::fs::write(&secret, SECRET_KEY).unwrap();
    set_mode(&secret, 0o600);
    let postgres = Postgres::start();
    let database = postgres.database("shared");
    let endpoint = s3.endpoint();
    let location = format!("s3://{BUCKET}/{PREFIX}");
    let start = |data: &str, config: String| {
        Service::start_on(
            &fx,
            Path::new(&location),
            &fx.join(data),
            &format!("[tokens]\nflat-manager-secret-file = \"flat-manager-secret\"\n\n{config}"),
            Some(&database),
            "",
        )
    };

    // A streams; B redirects, gated files to presigned URLs of the bucket and public ones to A,
    // its "CDN".
    let a = start(
        "data-a",
        deploy_config("streaming.toml", &[("@ENDPOINT@", &endpoint)]),
    );
    let cdn = a.server.url();
    let b = start(
        "data-b",
        deploy_config(
            "redirect.toml",
            &[("@ENDPOINT@", &endpoint), ("@CDN@", &cdn), ("@TTL@", "300")],
        ),
    );
    let key = license_for_paid(&a);
    let ask = json!({ "refs": [g.app_ref] });
    let token = token_for(&a, &key, &ask);
    let header = format!("--http-header=Authorization=Bearer {token}");

    // ostree, streaming: the app pulls whole from the bucket through A; nothing without a token.
    let cli = fx.ostree_client(&a.server.url());
    let err = fx
        .ostree(&cli)
        .args(["pull", "origin", &g.app_ref])
        .run_fail();
    assert!(err.contains("401"), "no token: {err}");
    fx.ostree(&cli)
        .args(["pull", &header, "origin", &g.app_ref])
        .run();
    fx.assert_pulled(&cli, "origin", &g.repo, &g.app_ref);

    // Validators and ranges as for a local file: a revalidation is a 304, a range is the bytes.
    let summary = std::fs::read(g.repo.join("summary")).unwrap();
    let r = fetch(&a.server, "/summary", None);
    assert_eq!((r.status, &r.body), (200, &summary));
    let etag = r.header("etag").unwrap().to_owned();
    let r = crate::http::request(
        a.server.addr,
        "GET",
        "/summary",
        &[("If-None-Match", &etag)],
    );
    assert_eq!((r.status, r.body.len()), (304, 0));
    let r = crate::http::request(a.server.addr, "GET", "/summary", &[("Range", "bytes=3-12")]);
    assert_eq!((r.status, &r.body[..]), (206, &summary[3..13]));
    let r = crate::http::request(a.server.addr, "HEAD", "/summary", &[]);
    let len = summary.len().to_string();
    assert_eq!(
        (r.status, r.header("content-length")),
        (200, Some(len.as_str()))
    );

    // ostree, redirected: A's token opens the app on B (A's key is in the shared database), and
    // B answers object requests with redirects the client follows.
    let cli_b = fx.ostree_client_named("client-b", &b.server.url());
    let mark = b.server.log().len();
    fx.ostree(&cli_b)
        .args(["pull", &header, "origin", &g.app_ref])
        .run();
    fx.assert_pulled(&cli_b, "origin", &g.repo, &g.app_ref);
    let requests = b.server.requests_since(mark);
    let redirected = requests
        .iter()
        .filter(|r| {
            r.status == 302 && (r.path.starts_with("/objects/") || r.path.starts_with("/deltas/"))
        })
        .count();
    assert!(redirected > 0, "B redirected the objects: {requests:?}");
    assert!(
        requests
            .iter()
            .all(|r| r.status != 200 || !r.path.starts_with("/objects/")),
        "B streamed no object itself: {requests:?}"
    );

    // The presigned URL: it opens that file alone, for whoever holds it, until it expires.
    let app_commit = fx.rev_parse(&g.repo, &g.app_ref);
    let runtime_commit = fx.rev_parse(&g.repo, &g.runtime_ref);
    let path = object_path(&app_commit);
    assert_eq!(fetch(&b.server, &format!("/{path}"), None).status, 401);
    let r = fetch(&b.server, &format!("/{path}"), Some(&token));
    assert_eq!(r.status, 302);
    assert_eq!(r.header("cache-control"), Some("private, no-store"));
    let url = r.header("location").unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{endpoint}/{BUCKET}/{PREFIX}/{path}?"))
            && url.contains("X-Amz-Expires=300")
            && url.contains("X-Amz-Signature="),
        "{url}"
    );
    let (status, body) = plain_get(&fx, &url);
    assert_eq!(status, 200);
    assert_eq!(body, std::fs::read(g.repo.join(&path)).unwrap());
    let other = url.replace(&path, &object_path(&runtime_commit));
    assert_eq!(
        plain_get(&fx, &other).0,
        403,
        "the signature covers the path"
    );
    let longer = url.replace("X-Amz-Expires=300", "X-Amz-Expires=900");
    assert_eq!(
        plain_get(&fx, &longer).0,
        403,
        "the signature covers the expiry"
    );
    // A public object goes to the CDN's address, which anyone may fetch.
    let public = object_path(&runtime_commit);
    let r = fetch(&b.server, &format!("/{public}"), None);
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some(format!("{cdn}{public}").as_str())
    );
    assert_eq!(
        plain_get(&fx, &format!("{cdn}{public}")),
        (200, std::fs::read(g.repo.join(&public)).unwrap())
    );
    // The CDN's origin does not hand out gated files.
    assert_eq!(plain_get(&fx, &format!("{cdn}{path}")).0, 401);

    // flatpak, redirected (B) and streaming (A, in an installation of its own).
    flatpak_install(&fx, &b.server.url(), &token);
    let fx_a = Fixture::new();
    flatpak_install(&fx_a, &a.server.url(), &token);

    // A URL presigned for one second is refused after it.
    let c = start(
        "data-c",
        deploy_config(
            "redirect.toml",
            &[("@ENDPOINT@", &endpoint), ("@CDN@", &cdn), ("@TTL@", "1")],
        ),
    );
    let r = fetch(&c.server, &format!("/{path}"), Some(&token));
    let url = r.header("location").unwrap().to_owned();
    assert!(url.contains("X-Amz-Expires=1&"), "{url}");
    std::thread::sleep(Duration::from_millis(2500));
    let (status, body) = plain_get(&fx, &url);
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("xpired"),
        "the store says why: {}",
        String::from_utf8_lossy(&body)
    );

    // A token B issues opens the app on A; a license deactivated through A gets no new token
    // from B.
    let from_b = token_for(&b, &key, &ask);
    let head = format!("/refs/heads/{}", g.app_ref);
    let deadline = Instant::now() + Duration::from_secs(30);
    while fetch(&a.server, &head, Some(&from_b)).status != 200 {
        assert!(Instant::now() < deadline, "A never trusted B's key");
        std::thread::sleep(Duration::from_millis(500));
    }
    deactivate_and_check_refused(&a, &b, &key, &ask);

    // A new version uploaded to the bucket is found by polling (a bucket sends no events),
    // and pulls through both.
    let new_ref = fx.flatpak_app(&g.repo, APP, RUNTIME, 3, Some(2));
    assert_eq!(new_ref, g.app_ref);
    update_repo(&fx, &g.repo);
    uploaded = s3.sync(&g.repo, BUCKET, PREFIX, &uploaded);
    assert!(uploaded.contains_key(&format!("refs/heads/{}", g.app_ref)));
    let new_commit = fx.rev_parse(&g.repo, &g.app_ref);
    assert_ne!(new_commit, app_commit);
    for server in [&a.server, &b.server] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = fetch(server, &head, Some(&token));
            if r.status == 200 && String::from_utf8_lossy(&r.body).trim() == new_commit {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the new commit never showed: {}",
                r.status
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    for client in [&cli, &cli_b] {
        fx.ostree(client)
            .args(["pull", &header, "origin", &g.app_ref])
            .run();
        fx.assert_pulled(client, "origin", &g.repo, &g.app_ref);
    }
}

#[test]
fn bad_storage_settings_are_named_before_anything_is_served() {
    let fx = Fixture::new();
    let s3 = S3::start(&fx.join("s3"));
    s3.create_bucket(BUCKET);
    let secret = fx.join("s3-secret");
    std::fs::write(&secret, SECRET_KEY).unwrap();
    set_mode(&secret, 0o600);
    let endpoint = s3.endpoint();
    let refused_with = |repo: &str, config: &str| {
        let file = fx.join("storage.toml");
        std::fs::write(&file, config).unwrap();
        let args = ["--repo", repo, "--listen", "127.0.0.1:0", "--config"];
        let mut args: Vec<&str> = args.to_vec();
        args.push(file.to_str().unwrap());
        crate::server::serve_refused(&fx, &args)
    };
    let streaming = deploy_config("streaming.toml", &[("@ENDPOINT@", &endpoint)]);

    let line = refused_with("s3://repos/none", &streaming);
    assert!(
        line.contains("s3://repos/none is not an OSTree repository: it has no `config` file"),
        "{line}"
    );
    let err = Cmd::new(crate::server::tollgate_bin())
        .args(["serve", "--repo", "s3://Repos/x"])
        .run_fail();
    assert!(err.contains("\"Repos\" is not an S3 bucket name"), "{err}");

    std::fs::write(&secret, "not the secret").unwrap();
    let line = refused_with("s3://repos/none", &streaming);
    assert!(
        line.contains("opening the repository s3://repos/none; check")
            && line.contains("credentials"),
        "{line}"
    );
    std::fs::write(&secret, SECRET_KEY).unwrap();

    // Nothing listening there: named within the retry bound, not minutes later.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let started = Instant::now();
    let line = refused_with(
        "s3://repos/shop",
        &deploy_config("streaming.toml", &[("@ENDPOINT@", &gone)]),
    );
    assert!(
        line.contains("opening the repository s3://repos/shop"),
        "{line}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    let redirect = |ttl: &str| {
        deploy_config(
            "redirect.toml",
            &[
                ("@ENDPOINT@", &endpoint),
                ("@CDN@", "https://cdn.example.com/"),
                ("@TTL@", ttl),
            ],
        )
    };
    let line = refused_with("s3://repos/shop", &redirect("3600"));
    assert!(
        line.contains("redirect-ttl = 3600 is out of range"),
        "{line}"
    );
    let local = fx.join("local");
    fx.ostree(&local).args(["init", "--mode=archive"]).run();
    let line = refused_with(local.to_str().unwrap(), &redirect("300"));
    assert!(
        line.contains("no repository is in object storage"),
        "{line}"
    );
}
