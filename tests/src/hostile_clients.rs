//! Hostile clients against the real server: 100,000 generated requests (encoding and traversal
//! tricks on every file of a gated Flatpak repository, many tokens, malformed, huge and
//! smuggling headers, HTTP/1.1 pipelining, h2c upgrades and HTTP/2 prefaces) while slowloris
//! clients trickle headers, a flood of connections comes and goes, and a real `ostree pull` of
//! the gated app runs. No answer is 5xx, no file outside the served set comes back, nothing
//! gated goes to a request without a covering token, and every pull succeeds.
//!
//! Also the connection and header limits, each on its own.

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cmd::Cmd;
use crate::fixture::{Fixture, StopOnDrop, write_files};
use crate::gated_repo;
use crate::http::{self, Response, connect_from, read_response};
use crate::model::{Expect, Presented, wanted};
use crate::server::tollgate_bin;
use crate::tokens;

const MARKER: &str = "TOLLGATE-HOSTILE-MARKER";
const REQUESTS: usize = 100_000;
/// Hostile clients connect from these loopback addresses; the real clients from 127.0.0.1.
const HOSTILE_SOURCES: [u8; 4] = [2, 3, 4, 5];

fn source(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A small deterministic generator (xorshift), so that a failure can be run again.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A token as sent, and what it opens.
#[derive(Debug, Clone)]
struct Token {
    header: Option<String>,
    /// The ref it covers, if it is valid and covers one of this repository.
    covers: Option<String>,
    /// Valid, but for no ref of this repository.
    covers_nothing: bool,
}

impl Token {
    fn presented(&self) -> Presented<'_> {
        match (&self.covers, self.covers_nothing) {
            (Some(r), _) => Presented::Covers(r),
            (None, true) => Presented::CoversNothing,
            (None, false) => Presented::Invalid,
        }
    }
}

/// One generated request and what may come back.
#[derive(Debug)]
struct Case {
    raw: Vec<u8>,
    head: bool,
    /// The repository file it asks for, if any.
    file: Option<usize>,
    /// Every token the request carries (a request may carry two).
    tokens: Vec<usize>,
    /// The exact status it must get; else only the invariants hold.
    exact: Option<u16>,
    /// Sent on a connection of its own: the server may close the connection after it.
    alone: bool,
}

struct World {
    files: Vec<(String, Expect)>,
    contents: Vec<Option<Vec<u8>>>,
    tokens: Vec<Token>,
}

impl World {
    /// Whether `file` may go to a request carrying `tokens`.
    fn allowed(&self, file: usize, tokens: &[usize]) -> bool {
        let expect = &self.files[file].1;
        let none = Token {
            header: None,
            covers: None,
            covers_nothing: false,
        };
        let mut presented: Vec<&Token> = tokens.iter().map(|t| &self.tokens[*t]).collect();
        if presented.is_empty() {
            presented.push(&none);
        }
        presented
            .iter()
            .any(|t| wanted(expect, t.presented()) == 200)
    }
}

/// Percent-encodes each byte of `path` (but `/`) with probability `percent`.
fn encode_some(rng: &mut Rng, path: &str, percent: u64) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b != b'/' && rng.chance(percent) {
            if rng.chance(50) {
                out.push_str(&format!("%{b:02X}"));
            } else {
                out.push_str(&format!("%{b:02x}"));
            }
        } else {
            out.push(b as char);
        }
    }
    out
}

/// A path that is not the file's own spelling: traversal, doubled or encoded separators,
/// NULs, case changes, overlong UTF-8 and the like. The server may answer it as the file it
/// decodes to or refuse it; nothing else.
fn trick(rng: &mut Rng, rel: &str) -> String {
    let segments: Vec<&str> = rel.split('/').collect();
    let cut = rng.below(segments.len());
    let (a, b) = (segments[..cut].join("/"), segments[cut..].join("/"));
    let join = |sep: &str| {
        if a.is_empty() {
            format!("/{sep}{b}")
        } else {
            format!("/{a}/{sep}{b}")
        }
    };
    match rng.below(22) {
        0 => join("../"),
        1 => join("./"),
        2 => join("/"),
        3 => join("%2e%2e/"),
        4 => join("%2E%2E%2F"),
        5 => join("..%2f"),
        6 => join("%252e%252e%252f"),
        7 => join("%c0%ae%c0%ae/"),
        8 => join("..\\"),
        9 => format!("/{}", rel.replace('/', "%2f")),
        10 => format!("/{}", rel.replace('/', "%5c")),
        11 => format!("/{rel}%00"),
        12 => format!("/{rel}%00.txt"),
        13 => format!("/{rel}/"),
        14 => format!("/{rel}/.."),
        15 => format!("/{rel};x=1"),
        16 => format!("/{}", rel.to_uppercase()),
        17 => format!("/../../../../{rel}"),
        18 => format!("/{rel}/../../../../etc/passwd"),
        19 => format!("/{rel}%ff"),
        20 => format!("//{rel}"),
        _ => format!("/{rel}?../../secret.txt#frag"),
    }
}

/// A request line and headers, `Connection: close` when it goes alone.
fn request(method: &str, target: &str, headers: &[String], alone: bool) -> Vec<u8> {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: tollgate\r\n");
    for h in headers {
        raw.push_str(h);
        raw.push_str("\r\n");
    }
    if alone {
        raw.push_str("Connection: close\r\n");
    }
    raw.push_str("\r\n");
    raw.into_bytes()
}

fn generate(rng: &mut Rng, world: &World) -> Case {
    let file = rng.below(world.files.len());
    let rel = world.files[file].0.clone();
    let token = rng.below(world.tokens.len());
    let auth: Vec<String> = world.tokens[token]
        .header
        .iter()
        .map(|h| format!("Authorization: {h}"))
        .collect();
    let head = rng.chance(15);
    let method = if head { "HEAD" } else { "GET" };
    let exact = Some(wanted(
        &world.files[file].1,
        world.tokens[token].presented(),
    ));
    let base = Case {
        raw: Vec::new(),
        head,
        file: Some(file),
        tokens: vec![token],
        exact,
        alone: false,
    };
    match rng.below(100) {
        // The file's own spelling.
        0..40 => Case {
            raw: request(method, &format!("/{rel}"), &auth, false),
            ..base
        },
        // Encoded: the same file once decoded.
        40..65 => Case {
            raw: request(
                method,
                &encode_some(rng, &format!("/{rel}"), 30),
                &auth,
                false,
            ),
            ..base
        },
        // Tricks.
        65..85 => Case {
            raw: request(method, &trick(rng, &rel), &auth, false),
            exact: None,
            ..base
        },
        // Odd but well-formed headers, on a kept-alive connection.
        85..95 => {
            let mut headers = auth.clone();
            let mut tokens = vec![token];
            let mut exact = None;
            match rng.below(8) {
                0 => headers.push(format!(
                    "Range: {}",
                    rng.pick(&[
                        "bytes=0-0",
                        "bytes=-1",
                        "bytes=0-0,2-3",
                        "bytes=5-2",
                        "bytes=99999999999999999999999-",
                        "bytes=0-18446744073709551615",
                        "lines=0-1",
                        "bytes=",
                    ])
                )),
                1 => {
                    // A second Authorization header with another token.
                    let other = rng.below(world.tokens.len());
                    if let Some(h) = &world.tokens[other].header {
                        headers.push(format!("Authorization: {h}"));
                        tokens.push(other);
                    }
                }
                2 => {
                    // An h2c upgrade: the server stays on HTTP/1.1 and answers as usual.
                    headers.push("Connection: Upgrade, HTTP2-Settings".to_owned());
                    headers.push("Upgrade: h2c".to_owned());
                    headers.push("HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA".to_owned());
                    exact = base.exact;
                }
                3 => headers.push(format!(
                    "If-None-Match: {}",
                    rng.pick(&["*", "\"x\"", "W/\"x\"", "\"", "a, b, c"])
                )),
                4 => headers.push(format!("X-Filler: {}", "x".repeat(rng.below(16_384)))),
                5 => {
                    for i in 0..rng.below(60) {
                        headers.push(format!("X-Many-{i}: {i}"));
                    }
                }
                6 => headers.push(format!(
                    "Authorization: {}",
                    rng.pick(&[
                        "Bearer",
                        "Bearer ",
                        "Basic Zm9vOmJhcg==",
                        "bearer x.y.z",
                        "Token abc"
                    ])
                )),
                _ => headers.push("Accept-Encoding: gzip, br, *".to_owned()),
            }
            Case {
                raw: request(method, &format!("/{rel}"), &headers, false),
                tokens,
                exact,
                ..base
            }
        }
        // Requests after which the server may (or must) close the connection.
        _ => {
            let path = format!("/{rel}");
            let raw = match rng.below(16) {
                0 => request(method, &path, &[format!("X-Huge: {}", "h".repeat(500_000))], true),
                1 => {
                    let many: Vec<String> = (0..150).map(|i| format!("X-H{i}: v")).collect();
                    request(method, &path, &many, true)
                }
                2 => request(method, &path, &["X-Broken".to_owned()], true),
                3 => request(method, &path, &["X-Ctl: a\u{1}b".to_owned()], true),
                4 => request(method, &path, &["X-Fold: a".to_owned(), " folded".to_owned()], true),
                // Request smuggling: both framings.
                5 => format!(
                    "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /config HTTP/1.1\r\nHost: t\r\n\r\n"
                )
                .into_bytes(),
                6 => format!("GET {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello").into_bytes(),
                7 => format!("GET {path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n").into_bytes(),
                8 => b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00".to_vec(),
                9 => format!("GET {path} HTTP/2.0\r\nHost: t\r\n\r\n").into_bytes(),
                10 => format!("GET {path} HTTP/1.0\r\n\r\n").into_bytes(),
                11 => format!("get {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").into_bytes(),
                12 => format!("GET http://evil.example{path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").into_bytes(),
                13 => format!("GET {path} HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc").into_bytes(),
                14 => format!("GET {path}\r\n\r\n").into_bytes(),
                _ => format!("GET {} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "/a".repeat(20_000)).into_bytes(),
            };
            Case {
                raw,
                tokens: Vec::new(),
                exact: None,
                alone: true,
                ..base
            }
        }
    }
}

/// Checks one answer against the invariants (and the exact status, if the case has one);
/// returns what is wrong.
fn judge(world: &World, case: &Case, response: &Response) -> Option<String> {
    let shown = String::from_utf8_lossy(&case.raw[..case.raw.len().min(160)]).into_owned();
    if response.status >= 500 {
        return Some(format!("{} for {shown:?}", response.status));
    }
    if response
        .body
        .windows(MARKER.len())
        .any(|w| w == MARKER.as_bytes())
    {
        return Some(format!("a file outside the served set for {shown:?}"));
    }
    if response.status == 101 {
        return Some(format!("switched protocols for {shown:?}"));
    }
    if let Some(status) = case.exact
        && response.status != status
    {
        return Some(format!(
            "{} instead of {status} for {shown:?}",
            response.status
        ));
    }
    let success = matches!(response.status, 200 | 206 | 304);
    if !success {
        return None;
    }
    let Some(file) = case.file else {
        return Some(format!("{} for {shown:?}", response.status));
    };
    if !world.allowed(file, &case.tokens) {
        return Some(format!(
            "{} for a file its tokens do not open: {shown:?}",
            response.status
        ));
    }
    let Some(content) = &world.contents[file] else {
        return None;
    };
    if case.head || response.status == 304 {
        return None;
    }
    let expected: &[u8] = if response.status == 206 {
        let range = response.header("content-range").unwrap_or_default();
        let span = range
            .strip_prefix("bytes ")
            .and_then(|r| r.split('/').next())
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
        match span {
            Some((a, b)) if b < content.len() && a <= b => &content[a..=b],
            _ => return Some(format!("206 with Content-Range {range:?} for {shown:?}")),
        }
    } else {
        content
    };
    (response.body != expected).then(|| format!("the wrong bytes for {shown:?}"))
}

/// Sends `cases` from `from`: runs of kept-alive, pipelined requests (all written, then all
/// read), and the cases that go alone on connections of their own. Returns what went wrong.
fn send_all(
    addr: SocketAddr,
    from: IpAddr,
    world: &World,
    cases: &[Case],
) -> (Vec<String>, BTreeMap<u16, usize>) {
    let mut wrong = Vec::new();
    let mut statuses = BTreeMap::new();
    let (alone, pipelined): (Vec<&Case>, Vec<&Case>) = cases.iter().partition(|c| c.alone);
    for batch in pipelined.chunks(64) {
        let stream = connect_from(from, addr).expect("connecting");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut raw = Vec::new();
        for case in batch {
            raw.extend_from_slice(&case.raw);
        }
        let writer = {
            let mut stream = stream.try_clone().unwrap();
            std::thread::spawn(move || stream.write_all(&raw))
        };
        let mut reader = BufReader::new(stream);
        for case in batch {
            match read_response(&mut reader, case.head) {
                Ok(Some(response)) => {
                    *statuses.entry(response.status).or_default() += 1;
                    wrong.extend(judge(world, case, &response));
                }
                Ok(None) => wrong.push(format!(
                    "the server closed a kept-alive connection early, before {:?}",
                    String::from_utf8_lossy(&case.raw[..case.raw.len().min(100)])
                )),
                Err(e) => wrong.push(format!("reading a pipelined answer: {e}")),
            }
            if wrong.len() > 20 {
                return (wrong, statuses);
            }
        }
        let _ = writer.join();
    }
    for case in alone {
        let Ok(mut stream) = connect_from(from, addr) else {
            wrong.push("a connection was refused".to_owned());
            continue;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        // The server may close before reading everything (a huge head): not an error.
        let _ = stream.write_all(&case.raw);
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        if bytes.is_empty() {
            continue;
        }
        let mut reader = BufReader::new(bytes.as_slice());
        match read_response(&mut reader, case.head) {
            Ok(Some(response)) => {
                *statuses.entry(response.status).or_default() += 1;
                wrong.extend(judge(world, case, &response));
                // What a smuggled second request got, if the server answered it at all.
                while let Ok(Some(next)) = read_response(&mut reader, false) {
                    if next.status >= 500 {
                        wrong.push(format!("{} for a smuggled request", next.status));
                    }
                }
            }
            Ok(None) => {}
            Err(e) => wrong.push(format!(
                "not an answer ({e}): {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            )),
        }
        if wrong.len() > 20 {
            return (wrong, statuses);
        }
    }
    (wrong, statuses)
}

/// Clients that send a request head one byte at a time, each every `pace`, until the server
/// hangs up; returns how long each connection lasted.
fn slowloris(addr: SocketAddr, from: IpAddr, count: usize, pace: Duration) -> Vec<Duration> {
    let streams: Vec<(TcpStream, Instant)> = (0..count)
        .map(|_| (connect_from(from, addr).unwrap(), Instant::now()))
        .collect();
    let mut lasted: Vec<Option<Duration>> = vec![None; count];
    let head = b"GET /config HTTP/1.1\r\nHost: t\r\nX-Slow: ".to_vec();
    let mut sent = 0usize;
    let deadline = Instant::now() + Duration::from_secs(90);
    while lasted.iter().any(Option::is_none) && Instant::now() < deadline {
        for (i, (stream, opened)) in streams.iter().enumerate() {
            if lasted[i].is_some() {
                continue;
            }
            let byte = head.get(sent).copied().unwrap_or(b'z');
            if (&*stream).write_all(&[byte]).is_err() {
                lasted[i] = Some(opened.elapsed());
            }
        }
        sent += 1;
        std::thread::sleep(pace);
    }
    lasted
        .into_iter()
        .map(|l| l.unwrap_or(Duration::MAX))
        .collect()
}

/// Opens and drops connections as fast as it can until `stop`; returns how many it opened.
fn flood(addr: SocketAddr, from: IpAddr, stop: &AtomicBool) -> usize {
    let mut opened = 0;
    let mut held = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match connect_from(from, addr) {
            Ok(stream) => {
                opened += 1;
                held.push(stream);
                // At most about a thousand a second: a flood, but one that leaves the two
                // cores to the server and the other clients, so the test's length is steady.
                std::thread::sleep(Duration::from_millis(1));
            }
            // Out of ports or files for a moment: do not spin.
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
        // Hold up to 600 at once, past the per-address limit, then let them all go.
        if held.len() >= 600 {
            held.clear();
        }
    }
    opened
}

fn hostile_world(fx: &Fixture) -> (gated_repo::GatedRepo, World) {
    let g = gated_repo::gated_repo(fx);
    // Files that must never be served: outside the repository, and inside it but not for
    // clients.
    write_files(fx.path(), &[("secret.txt", MARKER.into())]);
    write_files(
        &g.repo,
        &[
            ("tmp/secret-in-tmp", MARKER.into()),
            (".hidden", MARKER.into()),
            ("refs/remotes/origin/x", MARKER.into()),
        ],
    );
    let files = crate::model::expectations(fx, &g.repo);
    let contents = files
        .iter()
        .map(|(rel, _)| (rel != "config").then(|| std::fs::read(g.repo.join(rel)).unwrap()))
        .collect();
    let app = g.app_ref.clone();
    let other = fx.join("other-keys");
    Cmd::new(tollgate_bin())
        .args(["keys", "generate", "--data-dir"])
        .arg(&other)
        .run();
    let good = tokens::issue(&g.data, &[&app], None, 3600);
    let fm = tokens::flat_manager(
        gated_repo::FLAT_MANAGER_SECRET,
        &serde_json::json!({"sub": "download", "exp": tokens::now() + 3600,
                            "scope": ["download"], "apps": [gated_repo::APP], "repos": [""]}),
    );
    let invalid = |t: String| Token {
        header: Some(format!("Bearer {t}")),
        covers: None,
        covers_nothing: false,
    };
    let mut all = vec![
        Token {
            header: None,
            covers: None,
            covers_nothing: false,
        },
        Token {
            header: Some(format!("Bearer {good}")),
            covers: Some(app.clone()),
            covers_nothing: false,
        },
        Token {
            header: Some(format!("Bearer {fm}")),
            covers: Some(app.clone()),
            covers_nothing: false,
        },
        Token {
            header: Some(format!(
                "Bearer {}",
                tokens::issue(
                    &g.data,
                    &["app/org.example.Other/x86_64/stable"],
                    None,
                    3600
                )
            )),
            covers: None,
            covers_nothing: true,
        },
        invalid(tokens::tampered(&good)),
        invalid(tokens::issue(&other, &[&app], None, 3600)),
        invalid(tokens::sign_native(
            &g.data,
            &tokens::native_claims(&[&app], &[""], -120),
        )),
        invalid(tokens::unsigned(&tokens::native_claims(
            &[&app],
            &[""],
            3600,
        ))),
        // Huge, yet with a filler header still under the 64 KiB head limit: these go
        // pipelined, and a 431 would close the connection under the requests after it.
        invalid("x".repeat(40_000)),
    ];
    // Many more tokens, none valid: junk shaped like JWTs, so that the verifier and its cache
    // see a stream of new strings.
    let mut rng = Rng(0x5eed_f011);
    for _ in 0..500 {
        let part = |rng: &mut Rng| {
            let len = 4 + rng.below(60);
            (0..len)
                .map(|_| {
                    *rng.pick(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
                        as char
                })
                .collect::<String>()
        };
        all.push(invalid(format!(
            "ey{}.{}.{}",
            part(&mut rng),
            part(&mut rng),
            part(&mut rng)
        )));
    }
    let world = World {
        files,
        contents,
        tokens: all,
    };
    (g, world)
}

/// A real `ostree pull` of the gated app with its token, then `ostree fsck`.
fn pull(fx: &Fixture, url: &str, app: &str, token: &str, name: &str) -> Result<(), String> {
    let client = fx.ostree_client_named(name, url);
    let out = fx.pull(&client, app, Some(token)).output();
    if !out.status.success() {
        return Err(format!(
            "ostree pull failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let fsck = fx.ostree(&client).arg("fsck").output();
    if !fsck.status.success() {
        return Err(format!("fsck: {}", String::from_utf8_lossy(&fsck.stderr)));
    }
    Ok(())
}

#[test]
fn hostile_clients_get_nothing_and_pulls_go_on() {
    // The attackers hold some 700 sockets at once, near a shell's default of 1024 open files
    // with everything else the test has open: raise the soft limit to the hard one.
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut files = getrlimit(Resource::Nofile);
    files.current = files.maximum;
    let _ = setrlimit(Resource::Nofile, files);
    let fx = Fixture::new();
    let (g, world) = hostile_world(&fx);
    let world = Arc::new(world);
    let server = gated_repo::serve(&fx, &g);
    let addr = server.addr;
    let url = server.url();
    let token = tokens::issue(&g.data, &[&g.app_ref], None, 3600);

    let mut rng = Rng(0x7011_6a7e);
    let cases: Vec<Case> = (0..REQUESTS).map(|_| generate(&mut rng, &world)).collect();
    let alone = cases.iter().filter(|c| c.alone).count();
    assert!(alone > 1000 && alone < REQUESTS / 5, "{alone} cases alone");

    let stop = Arc::new(AtomicBool::new(false));
    // The flood stops when the test ends, however it ends.
    let stopping = StopOnDrop(&stop);
    let started = Instant::now();
    // Slowloris: 100 connections trickling a head a byte every 2 s.
    let slow = std::thread::spawn(move || slowloris(addr, source(6), 100, Duration::from_secs(2)));
    // A flood of connections from one address.
    let flooded = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || flood(addr, source(7), &stop))
    };
    // The hostile requests, from four addresses at once.
    let per = cases.len().div_ceil(HOSTILE_SOURCES.len());
    let cases = Arc::new(cases);
    let senders: Vec<_> = HOSTILE_SOURCES
        .iter()
        .enumerate()
        .map(|(i, last)| {
            let (world, cases) = (Arc::clone(&world), Arc::clone(&cases));
            let from = source(*last);
            std::thread::spawn(move || {
                let end = ((i + 1) * per).min(cases.len());
                send_all(addr, from, &world, &cases[i * per..end])
            })
        })
        .collect();
    // Real pulls, one after another, while it all goes on.
    let mut pulls = 0;
    let mut pull_failures = Vec::new();
    while pulls == 0 || !senders.iter().all(|s| s.is_finished()) {
        pulls += 1;
        if let Err(e) = pull(&fx, &url, &g.app_ref, &token, &format!("during-{pulls}")) {
            pull_failures.push(e);
        }
    }
    let mut wrong = Vec::new();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for sender in senders {
        let (w, s) = sender.join().expect("a sender panicked");
        wrong.extend(w);
        for (status, n) in s {
            *statuses.entry(status).or_default() += n;
        }
    }
    let hostile_took = started.elapsed();
    drop(stopping);
    let opened = flooded.join().expect("the flood panicked");
    let lasted = slow.join().expect("slowloris panicked");

    wrong.truncate(20);
    assert!(
        wrong.is_empty(),
        "{} problems, the first:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(
        pull_failures.is_empty(),
        "pulls failed during the attack: {pull_failures:?}"
    );
    assert!(opened > 1000, "the flood opened only {opened} connections");
    // The header timeout (30 s) ends every slowloris connection: not before, not much after.
    let longest = lasted.iter().max().unwrap();
    let shortest = lasted.iter().min().unwrap();
    assert!(
        *shortest >= Duration::from_secs(25) && *longest < Duration::from_secs(45),
        "slowloris connections lasted {shortest:?} to {longest:?}"
    );

    // After it all: the server answers, a new pull works, and it never panicked.
    pull(&fx, &url, &g.app_ref, &token, "after").unwrap();
    assert_eq!(http::get(addr, "/config").status, 200);
    server.settle();
    let log = server.log();
    assert!(!log.contains("panicked"), "the server panicked");
    let refused = counter(&server, "tollgate_connections_refused_total");
    assert!(
        refused > 0,
        "the flood was never held to its address's limit"
    );
    // Every kind of answer came back: files, partial files, and each refusal.
    for status in [200, 206, 304, 400, 401, 403, 404, 416, 431] {
        assert!(
            statuses.contains_key(&status),
            "no {status} among {statuses:?}"
        );
    }
    // What SECURITY.md quotes; seen with --nocapture.
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "{REQUESTS} hostile requests in {hostile_took:?} ({statuses:?}), {pulls} pulls during, \
         {opened} flood connections ({refused} closed at the limit), slowloris ended after \
         {longest:?}"
        );
    }
}

/// Opens `count` idle connections from `from` and waits until the server has closed all but
/// `keep` of them, unanswered; returns the ones still open.
fn hold(addr: SocketAddr, from: IpAddr, count: usize, keep: usize) -> Vec<TcpStream> {
    let mut open: Vec<TcpStream> = (0..count)
        .map(|_| {
            let stream = connect_from(from, addr).unwrap();
            stream.set_nonblocking(true).unwrap();
            stream
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut settled_since = None;
    loop {
        // Closed by the server: EOF or a reset, with no answer.
        open.retain(|stream| {
            let mut byte = [0u8; 1];
            match (&*stream).read(&mut byte) {
                Ok(0) => false,
                Ok(_) => panic!("a held connection was answered"),
                Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            }
        });
        assert!(
            open.len() >= keep,
            "only {} of {count} stayed open",
            open.len()
        );
        if open.len() == keep {
            // Kept for a moment more: the server closes at once or not at all.
            let since = *settled_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_millis(500) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} still open, not {keep}",
            open.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for stream in &open {
        stream.set_nonblocking(false).unwrap();
    }
    open
}

/// A counter's value in the server's metrics.
fn counter(server: &crate::server::Server, name: &str) -> u64 {
    server
        .metrics()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
}

#[test]
fn connections_are_limited_per_address_and_in_all() {
    let fx = Fixture::new();
    let g = gated_repo::gated_repo(&fx);
    std::fs::write(
        &g.config,
        format!(
            "{}\n[limits]\nmax-connections = 24\nmax-connections-per-address = 8\n",
            std::fs::read_to_string(&g.config).unwrap()
        ),
    )
    .unwrap();
    let server = gated_repo::serve(&fx, &g);
    let addr = server.addr;

    // One address gets 8 connections; the rest are closed unanswered.
    let first = hold(addr, source(2), 20, 8);
    // Others still get in, and a real pull works.
    let token = tokens::issue(&g.data, &[&g.app_ref], None, 600);
    pull(&fx, &server.url(), &g.app_ref, &token, "beside").unwrap();
    // Two more addresses fill the server (24 in all).
    let second = hold(addr, source(3), 8, 8);
    let third = hold(addr, source(4), 8, 8);
    // Now a new client waits: its connection is not accepted until one closes.
    let mut waiting = connect_from(source(5), addr).unwrap();
    waiting
        .write_all(b"GET /config HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = waiting.read(&mut byte);
    assert!(
        early.is_err(),
        "a connection past max-connections was answered at once: {early:?}"
    );
    drop(second);
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    waiting.read_to_end(&mut answer).unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    drop((first, third));
    pull(&fx, &server.url(), &g.app_ref, &token, "after").unwrap();
    assert_eq!(counter(&server, "tollgate_connections_refused_total"), 12);
}

#[test]
fn oversized_heads_get_431_and_the_server_goes_on() {
    let fx = Fixture::new();
    let g = gated_repo::gated_repo(&fx);
    let server = gated_repo::serve(&fx, &g);
    let too_many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let header = |len: usize| format!("X-Huge: {}\r\n", "h".repeat(len));
    // Heads over the limit, each several times: hyper alone refused one only when it outgrew
    // its buffer before it was complete, so whether it did depended on how the bytes arrived
    // (about half of these got 200, and a connection kept open).
    let mut oversized = vec![too_many];
    oversized.extend(
        [70_000, 100 * 1024, 300_000, 500_000]
            .repeat(5)
            .into_iter()
            .map(header),
    );
    for extra in oversized {
        // No `Connection: close`: a refused head must close the connection all the same.
        let raw = format!("GET /config HTTP/1.1\r\nHost: t\r\n{extra}\r\n");
        let response = http::send_raw(server.addr, raw.as_bytes())
            .unwrap_or_else(|e| panic!("a head of {} bytes: {e}", raw.len()));
        assert_eq!(response.status, 431, "{}", &extra[..40]);
    }
    // Long but reasonable heads are fine: many headers, or one long one under the limit.
    let fine: String = (0..90)
        .map(|i| format!("X-H{i}: {}\r\n", "v".repeat(100)))
        .collect();
    for extra in [fine, header(60_000)] {
        let raw = format!("GET /config HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n");
        assert_eq!(
            http::send_raw(server.addr, raw.as_bytes()).unwrap().status,
            200
        );
    }
}

#[test]
fn clients_that_stop_reading_or_trickle_bodies_are_cut_off() {
    let fx = Fixture::new();
    let tree = fx.join("tree");
    let size = 24 << 20;
    write_files(&tree, &[("big", crate::fixture::pseudo_random(size, 11))]);
    let (repo, _) = fx.archive_repo("srv", "os/big", &tree);
    // The big file's object: random bytes do not compress, so it is the largest.
    let big = crate::fixture::files_under(&repo)
        .into_iter()
        .filter(|f| f.ends_with(".filez"))
        .max_by_key(|f| std::fs::metadata(repo.join(f)).unwrap().len())
        .unwrap();
    std::fs::write(fx.join("limits.toml"), "[limits]\nstall-timeout = 2\n").unwrap();
    let server = crate::server::Server::serve(
        &[
            "--repo",
            repo.to_str().unwrap(),
            "--data-dir",
            fx.join("data").to_str().unwrap(),
            "--config",
            fx.join("limits.toml").to_str().unwrap(),
        ],
        fx.env(),
    );
    let addr = server.addr;

    // A client that asks for 24 MiB and reads none of it: the kernel's buffers fill, nothing
    // moves, and the server hangs up within twice the stall timeout.
    let mut stalled = connect_from(source(9), addr).unwrap();
    stalled
        .write_all(format!("GET /{big} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_secs(7));
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut received = Vec::new();
    let ended = stalled.read_to_end(&mut received);
    assert!(
        ended.is_ok()
            || ended
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the stalled connection was not closed: {ended:?} after {} bytes",
        received.len()
    );
    assert!(received.starts_with(b"HTTP/1.1 200"));
    assert!(
        received.len() < size,
        "all {} bytes arrived: the connection was not cut",
        received.len()
    );

    // A body sent a byte a second: every byte moves in time, but the whole body does not.
    let mut trickle = connect_from(source(9), addr).unwrap();
    trickle
        .write_all(b"POST /api/v1/tokens HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    trickle
        .set_read_timeout(Some(Duration::from_millis(900)))
        .unwrap();
    while started.elapsed() < Duration::from_secs(20) {
        if trickle.write_all(b" ").is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        match trickle.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if answer.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );

    // The server goes on.
    assert_eq!(http::get(addr, "/config").status, 200);
}

/// What the server holds for each of `max-connections` hostile connections sending a head of
/// just under 64 KiB and stopping before its end, at most: the head itself, hyper's buffer
/// around it and the connection's own state. SECURITY.md states it.
const HELD_PER_CONNECTION: u64 = 192 * 1024;

/// The server's resident memory, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kb * 1024
}

#[test]
fn hostile_heads_at_max_connections_stay_within_the_stated_memory() {
    const CONNECTIONS: usize = 256;
    let fx = Fixture::new();
    let tree = fx.join("tree");
    write_files(&tree, &[("file", b"small\n".to_vec())]);
    let (repo, _) = fx.archive_repo("srv", "os/x", &tree);
    std::fs::write(
        fx.join("limits.toml"),
        format!(
            "[limits]\nmax-connections = {CONNECTIONS}\n\
             max-connections-per-address = {CONNECTIONS}\n"
        ),
    )
    .unwrap();
    let server = crate::server::Server::serve(
        &[
            "--repo",
            repo.to_str().unwrap(),
            "--data-dir",
            fx.join("data").to_str().unwrap(),
            "--config",
            fx.join("limits.toml").to_str().unwrap(),
        ],
        fx.env(),
    );
    let started = Instant::now();
    // Warm up: the connection threads, their runtimes and the allocator's first pages.
    for _ in 0..64 {
        let raw = format!(
            "GET /config HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Pad: {}\r\n\r\n",
            "w".repeat(60_000)
        );
        assert_eq!(
            http::send_raw(server.addr, raw.as_bytes()).unwrap().status,
            200
        );
    }
    let before = rss_bytes(server.pid());

    // Every connection the server will take, each sending a head of 63 KiB in four pieces a
    // moment apart (as a slow client would) and never its end.
    let mut hostile: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    let piece = "h".repeat(16 * 1024 - 200);
    for round in 0..4 {
        for stream in &mut hostile {
            let bytes = if round == 0 {
                format!("GET /config HTTP/1.1\r\nHost: t\r\nX-Pad: {piece}")
            } else {
                piece.clone()
            };
            stream.write_all(bytes.as_bytes()).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(500));
    let held = rss_bytes(server.pid()).saturating_sub(before);
    let per_connection = held / CONNECTIONS as u64;
    // The figure SECURITY.md quotes, for whoever runs this with --nocapture.
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "{CONNECTIONS} connections holding 63 KiB heads: {} KiB more resident, {} KiB each",
            held / 1024,
            per_connection / 1024
        );
    }
    assert!(
        per_connection <= HELD_PER_CONNECTION,
        "{CONNECTIONS} hostile heads took {} KiB each, over the {} KiB SECURITY.md states",
        per_connection / 1024,
        HELD_PER_CONNECTION / 1024
    );

    // Past 64 KiB each gets 431 and is closed: none can make the server hold more.
    for stream in &mut hostile {
        stream.write_all("x".repeat(40 * 1024).as_bytes()).unwrap();
    }
    for (i, stream) in hostile.iter_mut().enumerate() {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        assert!(
            answer.starts_with(b"HTTP/1.1 431"),
            "connection {i}, 103 KiB into its head, got {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(100)])
        );
    }
    drop(hostile);
    assert_eq!(http::get(server.addr, "/config").status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}
