//! `GET /metrics` and `GET /healthz` of the real server: after real traffic (public and gated
//! files, token issuance, refused credentials up to the rate limit), the counters agree with the
//! access log line for line, the index figures with the repository on disk; a configured scrape
//! token is required.

use std::collections::BTreeMap;

use serde_json::json;

use crate::fixture::{Fixture, set_mode};
use crate::gated_repo::gated_repo;
use crate::http::{Response, get, request};
use crate::service::{Service, license_for_paid, signed_token};

/// Series → value, from a scrape in Prometheus' text format.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("series value");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

fn text(response: &Response) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

/// A path that looks like an object's and is none: its name is not a checksum.
const NOT_AN_OBJECT: &str = "/objects/00/nothing.commit";

/// The route class `/metrics` counts a path under.
fn route_of(path: &str) -> &'static str {
    if path == NOT_AN_OBJECT {
        // Counted by what the grammar of repository paths makes of a path, not by its look.
        "other"
    } else if path.contains("/objects/") {
        "object"
    } else if path.contains("/deltas/") || path.contains("/delta-indexes/") {
        "delta"
    } else if path.starts_with("/summar") {
        "summary"
    } else if path == "/config" {
        "config"
    } else if path == "/api/v1/tokens" {
        "tokens"
    } else {
        panic!("no route class expected for {path}")
    }
}

#[test]
fn metrics_agree_with_the_access_log_and_the_repository() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start(&fx, &g, None, "max-failures = 2\nfailure-window = 600");
    let addr = s.server.addr;
    let key = license_for_paid(&s);
    let app_commit = fx.rev_parse(&g.repo, &g.app_ref);
    let commit_path = format!("/objects/{}/{}.commit", &app_commit[..2], &app_commit[2..]);

    // Traffic: public files, a gated one without and with a token (twice: the second check
    // comes from the cache), a token, and wrong keys until the limiter refuses.
    assert_eq!(get(addr, "/summary").status, 200);
    assert_eq!(get(addr, "/config").status, 200);
    assert_eq!(get(addr, NOT_AN_OBJECT).status, 404);
    let absent = format!("/objects/00/{}.commit", "0".repeat(62));
    assert_eq!(get(addr, &absent).status, 404);
    assert_eq!(get(addr, &commit_path).status, 401);
    let (status, answer) = s.tokens(
        Some(&format!("Bearer {key}")),
        &json!({"refs": [g.app_ref, g.runtime_ref]}),
    );
    assert_eq!(status, 200, "{answer}");
    let (jwt, _) = signed_token(&answer).expect("a token");
    let auth = format!("Bearer {jwt}");
    for _ in 0..2 {
        let r = request(addr, "GET", &commit_path, &[("Authorization", &auth)]);
        assert_eq!(r.status, 200);
    }
    let wrong = "Bearer tg_0000000000000000_notakeyatall";
    let mut refused = Vec::new();
    for _ in 0..3 {
        refused.push(s.tokens(Some(wrong), &json!({"refs": [g.app_ref]})).0);
    }
    assert_eq!(refused, [401, 401, 429]);

    let logged = s.server.requests_since(0);
    let scrape = get(addr, "/metrics");
    assert_eq!(scrape.status, 200, "{}", text(&scrape));
    assert!(
        scrape
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("content-type")
                && v.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        scrape.headers
    );
    let m = parse(&text(&scrape));

    // Requests, bytes and the histogram: exactly what the access log says (the admin requests
    // that made the product and license included).
    let mut requests: BTreeMap<String, f64> = BTreeMap::new();
    let mut bytes: BTreeMap<&str, f64> = BTreeMap::new();
    for a in &logged {
        let route = if a.path.starts_with("/api/v1/admin/") {
            "admin"
        } else {
            route_of(&a.path)
        };
        *requests
            .entry(format!(
                "tollgate_http_requests_total{{route=\"{route}\",status=\"{}\"}}",
                a.status
            ))
            .or_default() += 1.0;
        *bytes.entry(route).or_default() += a.bytes as f64;
    }
    let counted: BTreeMap<String, f64> = m
        .iter()
        .filter(|(k, _)| k.starts_with("tollgate_http_requests_total"))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(counted, requests);
    for (route, sent) in &bytes {
        assert_eq!(
            m[&format!("tollgate_http_response_bytes_total{{route=\"{route}\"}}")],
            *sent,
            "{route}"
        );
        let count =
            m[&format!("tollgate_http_request_duration_seconds_count{{route=\"{route}\"}}")];
        let answered: f64 = requests
            .iter()
            .filter(|(k, _)| k.contains(&format!("route=\"{route}\"")))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(count, answered, "{route}");
        assert_eq!(
            m[&format!(
                "tollgate_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}}"
            )],
            count
        );
    }

    // Tokens, the verification cache and the limiter.
    assert_eq!(m["tollgate_tokens_issued_total"], 1.0);
    assert_eq!(m["tollgate_token_cache_misses_total"], 1.0);
    assert_eq!(m["tollgate_token_cache_hits_total"], 1.0);
    assert_eq!(m["tollgate_rate_limited_total"], 1.0);

    // The index: every metadata and content object on disk, the one gated ref (the app) and
    // the public one (the runtime).
    let on_disk = crate::fixture::files_under(&g.repo.join("objects"))
        .iter()
        .filter(|f| {
            [".commit", ".dirtree", ".dirmeta", ".filez"]
                .iter()
                .any(|ext| f.ends_with(ext))
        })
        .count();
    assert_eq!(m["tollgate_index_objects{repo=\"\"}"], on_disk as f64);
    assert_eq!(m["tollgate_index_gated_refs{repo=\"\"}"], 1.0);
    assert!(m["tollgate_index_public_refs{repo=\"\"}"] >= 1.0);
    assert!(m["tollgate_index_age_seconds{repo=\"\"}"] > 0.0);

    // The scrape itself is counted once it is done.
    s.server.settle();
    let again = parse(&text(&get(addr, "/metrics")));
    assert_eq!(
        again["tollgate_http_requests_total{route=\"metrics\",status=\"200\"}"],
        1.0
    );
    let health = get(addr, "/healthz");
    assert_eq!((health.status, text(&health).as_str()), (200, "ok\n"));
}

#[test]
fn metrics_need_the_scrape_token_when_one_is_configured() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let token = "a scrape token for the metrics test";
    let file = fx.join("metrics-token");
    std::fs::write(&file, format!("{token}\n")).expect("token file");
    set_mode(&file, 0o600);
    let s = Service::start_on(
        &fx,
        &g.repo,
        &g.data,
        "[metrics]\ntoken-file = \"metrics-token\"\n",
        None,
        "",
    );
    let addr = s.server.addr;
    for auth in [None, Some("Bearer not the token at all"), Some(token)] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let r = request(addr, "GET", "/metrics", &headers);
        assert_eq!(r.status, 401, "{auth:?}: {}", text(&r));
        assert!(
            text(&r).contains(
                "/metrics needs Authorization: Bearer <the [metrics] token-file's token>"
            ),
            "{}",
            text(&r)
        );
    }
    let right = format!("Bearer {token}");
    let r = request(addr, "GET", "/metrics", &[("Authorization", &right)]);
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(text(&r).contains("# TYPE tollgate_http_requests_total counter"));
    let r = request(addr, "POST", "/metrics", &[("Authorization", &right)]);
    assert_eq!(r.status, 405);

    // A token file others may read is refused at start, with what to do.
    set_mode(&file, 0o644);
    let err = crate::cmd::Cmd::new(crate::server::tollgate_bin())
        .args(["serve", "--repo"])
        .arg(&g.repo)
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(fx.join("entitlements.toml"))
        .arg("--data-dir")
        .arg(&g.data)
        .run_fail();
    assert!(
        err.contains("it must be readable by its owner only: chmod 600"),
        "{err}"
    );
}
