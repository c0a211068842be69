//! Behind a reverse proxy, against the real server: the client a trusted proxy names is the
//! one the access log, the failure limiter and the audit see; a forwarding header from any
//! other peer is ignored; a request that came through a proxy never opens `/metrics` as a
//! loopback client; a trusted proxy's connections are not held to the per-address limit.
//!
//! The proxies are loopback addresses the test binds its sockets to (127.0.0.1 trusted,
//! 127.0.0.2 and 127.0.0.3 not), and IPv6 clients are forwarded ones: loopback IPv6 has only
//! `::1`, so a /64 of clients can only be shown through a proxy that names them.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixture::Fixture;
use crate::gated_repo::{GatedRepo, gated_repo};
use crate::http::{self, Response, connect_from};
use crate::service::{Service, license_for_paid};

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// `POST /api/v1/tokens` for `ask` from `127.0.0.<from>` with `headers` besides the body's.
fn tokens(
    s: &Service,
    ask: &Value,
    from: u8,
    headers: &[(&str, &str)],
    authorization: &str,
) -> Response {
    let mut all = vec![
        ("Authorization", authorization),
        ("Content-Type", "application/json"),
    ];
    all.extend_from_slice(headers);
    http::request_with_body_from(
        Some(loopback(from)),
        s.server.addr,
        "POST",
        "/api/v1/tokens",
        &all,
        ask.to_string().as_bytes(),
    )
}

fn metrics(s: &Service, from: u8, headers: &[(&str, &str)]) -> u16 {
    http::request_with_body_from(
        Some(loopback(from)),
        s.server.addr,
        "GET",
        "/metrics",
        headers,
        b"",
    )
    .status
}

/// Waits for an access log line for `/api/v1/tokens` that starts with the client `client`
/// and has `status`.
fn logged(s: &mut Service, client: &str, status: u16) {
    let needle = format!("tollgate::access: {client} \"POST /api/v1/tokens\" {status} ");
    s.server.wait_for_log(&needle, Duration::from_secs(10));
}

/// The service on `g` with the proxy settings `proxy` and a limit of three failures a minute;
/// a license key for the paid app as an Authorization value, and a token request for it.
fn behind_a_proxy(fx: &Fixture, g: &GatedRepo, proxy: &str) -> (Service, String, Value) {
    let s = Service::start_on(
        fx,
        &g.repo,
        &g.data,
        proxy,
        None,
        "max-failures = 3\nfailure-window = 60",
    );
    let key = format!("Bearer {}", license_for_paid(&s));
    (s, key, json!({ "refs": [g.app_ref] }))
}

const WRONG: &str = "Bearer tg_aaaaaaaaaaaaaaaa_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

#[test]
fn a_trusted_proxys_client_is_logged_limited_and_audited_as_itself() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let (mut s, key, ask) = behind_a_proxy(&fx, &g, "trusted-proxies = [\"127.0.0.1\"]\n");
    let xff = |client: &'static str| [("X-Forwarded-For", client)];

    // The client the proxy names is in the access log and in the audit of the token.
    assert_eq!(tokens(&s, &ask, 1, &xff("192.0.2.7"), &key).status, 200);
    logged(&mut s, "192.0.2.7", 200);
    let audit = s.wait_for_audit("tokens", "limit=10", 1);
    assert_eq!(audit[0]["client"], json!("192.0.2.7"), "{audit:?}");

    // Its failures count for it, whatever it wrote itself left of the proxy's entry: it is
    // refused, and so is its right key; another client of the same proxy is not, nor the
    // proxy itself.
    for spoofed in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        let chain = format!("{spoofed}, 192.0.2.7");
        let r = tokens(&s, &ask, 1, &[("X-Forwarded-For", &chain)], WRONG);
        assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(tokens(&s, &ask, 1, &xff("192.0.2.7"), &key).status, 429);
    logged(&mut s, "192.0.2.7", 429);
    assert_eq!(tokens(&s, &ask, 1, &xff("198.51.100.1"), &key).status, 200);
    assert_eq!(tokens(&s, &ask, 1, &xff("192.0.2.8"), &key).status, 200);
    assert_eq!(tokens(&s, &ask, 1, &[], &key).status, 200);

    // IPv6 clients count by their /64.
    for client in [
        "2001:db8:1:2::a",
        "2001:db8:1:2::b",
        "[2001:db8:1:2:ab::c]:4711",
    ] {
        assert_eq!(
            tokens(&s, &ask, 1, &[("X-Forwarded-For", client)], WRONG).status,
            401
        );
    }
    assert_eq!(
        tokens(&s, &ask, 1, &xff("2001:db8:1:2:ffff::1"), &key).status,
        429
    );
    assert_eq!(
        tokens(&s, &ask, 1, &xff("2001:db8:1:3::1"), &key).status,
        200
    );
    logged(&mut s, "2001:db8:1:3::1", 200);

    // A request through the proxy is not a loopback client, even one naming loopback.
    assert_eq!(metrics(&s, 1, &xff("192.0.2.7")), 403);
    assert_eq!(metrics(&s, 1, &xff("127.0.0.1")), 403);
    assert_eq!(metrics(&s, 1, &[("Forwarded", "for=192.0.2.7")]), 403);
    assert_eq!(metrics(&s, 1, &[]), 200, "a scrape on the machine itself");
}

#[test]
fn an_untrusted_peers_forwarding_header_is_ignored() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    // The trusted proxy speaks RFC 7239 here: its X-Forwarded-For is not read either.
    let (mut s, key, ask) = behind_a_proxy(
        &fx,
        &g,
        "trusted-proxies = [\"127.0.0.1\"]\nforwarded-header = \"forwarded\"\n",
    );
    let fwd = |client: &'static str| [("Forwarded", client)];

    assert_eq!(
        tokens(&s, &ask, 1, &fwd("for=\"[2001:db8::7]:80\""), &key).status,
        200
    );
    logged(&mut s, "2001:db8::7", 200);
    assert_eq!(
        tokens(&s, &ask, 1, &[("X-Forwarded-For", "192.0.2.50")], &key).status,
        200
    );
    logged(&mut s, "127.0.0.1", 200);

    // From 127.0.0.2, which is no trusted proxy, the header is ignored: the failures count
    // for 127.0.0.2 whatever client each names, and the clients named are not touched.
    for (n, client) in ["for=192.0.2.7", "for=192.0.2.8", "for=192.0.2.9"]
        .iter()
        .enumerate()
    {
        let header: &[(&str, &str)] = if n == 0 {
            &[("Forwarded", client), ("X-Forwarded-For", "192.0.2.7")]
        } else {
            &[("Forwarded", client)]
        };
        assert_eq!(tokens(&s, &ask, 2, header, WRONG).status, 401);
    }
    logged(&mut s, "127.0.0.2", 401);
    assert_eq!(
        tokens(&s, &ask, 2, &fwd("for=192.0.2.10"), &key).status,
        429
    );
    assert_eq!(tokens(&s, &ask, 2, &[], &key).status, 429);
    for client in ["for=192.0.2.7", "for=192.0.2.9"] {
        assert_eq!(
            tokens(&s, &ask, 1, &fwd(client), &key).status,
            200,
            "{client}"
        );
    }
    assert_eq!(tokens(&s, &ask, 3, &fwd("for=192.0.2.7"), &key).status, 200);
    logged(&mut s, "127.0.0.3", 200);
    let audit = s.wait_for_audit("tokens", "limit=100", 5);
    let clients: Vec<&str> = audit.iter().filter_map(|t| t["client"].as_str()).collect();
    assert!(clients.contains(&"127.0.0.3"), "{clients:?}");
    assert!(!clients.contains(&"192.0.2.50"), "{clients:?}");

    // Still, a request carrying a forwarding header came through some proxy: it does not
    // open /metrics, whoever sent it.
    assert_eq!(metrics(&s, 2, &fwd("for=192.0.2.7")), 403);
    assert_eq!(metrics(&s, 2, &[("X-Forwarded-For", "127.0.0.1")]), 403);
    assert_eq!(metrics(&s, 2, &[]), 200);
}

/// Opens `count` connections from `from` and sends a request on each once all are open; how
/// many were answered (the others the server closed unanswered).
fn answered_at_once(addr: SocketAddr, from: IpAddr, count: usize) -> usize {
    let mut open: Vec<_> = (0..count)
        .map(|_| connect_from(from, addr).expect("connecting"))
        .collect();
    // The server takes each connection, or closes it, as it accepts it.
    std::thread::sleep(Duration::from_millis(500));
    let mut answered = 0;
    for stream in &mut open {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        if stream
            .write_all(b"GET /config HTTP/1.1\r\nHost: t\r\n\r\n")
            .is_err()
        {
            continue;
        }
        let mut head = [0u8; 12];
        let started = Instant::now();
        if stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200") {
            answered += 1;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "an answer hung"
        );
    }
    answered
}

#[test]
fn a_trusted_proxys_connections_are_not_limited_per_address() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start_on(
        &fx,
        &g.repo,
        &g.data,
        "trusted-proxies = [\"127.0.0.1\"]\n[limits]\nmax-connections-per-address = 2\n",
        None,
        "",
    );
    let addr = s.server.addr;
    assert_eq!(
        answered_at_once(addr, loopback(2), 5),
        2,
        "an untrusted peer"
    );
    assert_eq!(
        answered_at_once(addr, loopback(1), 5),
        5,
        "the trusted proxy"
    );
}
