//! The counters behind `GET /metrics`, in Prometheus' text format (version 0.0.4).
//!
//! Every request is counted by route class and status, with the bytes sent and how long it took
//! (a histogram), when its access log entry is written. The label sets are fixed (route classes
//! and status codes), so every counter is a plain atomic in one static table: the hot path takes
//! no lock and allocates nothing. Index figures are read from the live indexes when scraped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// What a request was for, as counted: the route table (`http::route`) tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Object,
    Delta,
    Summary,
    Config,
    Refs,
    Flatpakrepo,
    Tokens,
    Api,
    Admin,
    Metrics,
    Health,
    Pages,
    Other,
}

const ROUTES: [Route; 13] = [
    Route::Object,
    Route::Delta,
    Route::Summary,
    Route::Config,
    Route::Refs,
    Route::Flatpakrepo,
    Route::Tokens,
    Route::Api,
    Route::Admin,
    Route::Metrics,
    Route::Health,
    Route::Pages,
    Route::Other,
];

impl Route {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Route::Object => "object",
            Route::Delta => "delta",
            Route::Summary => "summary",
            Route::Config => "config",
            Route::Refs => "refs",
            Route::Flatpakrepo => "flatpakrepo",
            Route::Tokens => "tokens",
            Route::Api => "api",
            Route::Admin => "admin",
            Route::Metrics => "metrics",
            Route::Health => "health",
            Route::Pages => "pages",
            Route::Other => "other",
        }
    }
}

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Status codes counted one by one; anything else counts as 599.
const STATUSES: usize = 600;

struct PerRoute {
    by_status: [AtomicU64; STATUSES],
    bytes: AtomicU64,
    /// Requests whose time was at most `BUCKETS[i]` and above the bucket before (the one past
    /// the end: slower than every bound).
    buckets: [AtomicU64; BUCKETS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl PerRoute {
    const fn new() -> PerRoute {
        PerRoute {
            by_status: [const { AtomicU64::new(0) }; STATUSES],
            bytes: AtomicU64::new(0),
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len() + 1],
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

/// Every counter of the process.
pub(crate) struct Metrics {
    routes: [PerRoute; ROUTES.len()],
    token_cache_hits: AtomicU64,
    token_cache_misses: AtomicU64,
    tokens_issued: AtomicU64,
    rate_limited: AtomicU64,
    connections_refused: AtomicU64,
    connections_open: AtomicU64,
    file_cache_hits: AtomicU64,
    file_cache_misses: AtomicU64,
}

/// The process's counters.
pub(crate) static METRICS: Metrics = Metrics {
    routes: [const { PerRoute::new() }; ROUTES.len()],
    token_cache_hits: AtomicU64::new(0),
    token_cache_misses: AtomicU64::new(0),
    tokens_issued: AtomicU64::new(0),
    rate_limited: AtomicU64::new(0),
    connections_refused: AtomicU64::new(0),
    connections_open: AtomicU64::new(0),
    file_cache_hits: AtomicU64::new(0),
    file_cache_misses: AtomicU64::new(0),
};

impl Metrics {
    /// Counts one answered request.
    pub(crate) fn request(&self, route: Route, status: u16, bytes: u64, took: Duration) {
        let r = &self.routes[route as usize];
        r.by_status[usize::from(status).min(STATUSES - 1)].fetch_add(1, Relaxed);
        r.bytes.fetch_add(bytes, Relaxed);
        let secs = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(BUCKETS.len());
        r.buckets[bucket].fetch_add(1, Relaxed);
        r.count.fetch_add(1, Relaxed);
        r.sum_micros
            .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// A token check answered from the verification cache (`hit`), or by verifying.
    pub(crate) fn token_check(&self, hit: bool) {
        count_hit(&self.token_cache_hits, &self.token_cache_misses, hit);
    }

    /// A content-addressed file answered from memory (`hit`), or read from disk.
    pub(crate) fn file_cache(&self, hit: bool) {
        count_hit(&self.file_cache_hits, &self.file_cache_misses, hit);
    }

    pub(crate) fn tokens_issued(&self, n: u64) {
        self.tokens_issued.fetch_add(n, Relaxed);
    }

    /// A request refused with 429 because its client or credential failed too often.
    pub(crate) fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Relaxed);
    }

    /// A connection closed unanswered: its address already had as many open as it may.
    pub(crate) fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }

    /// A connection taken in, and one ended.
    pub(crate) fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    /// Everything, in Prometheus' text format; `indexes` are each served repository's name
    /// (`""` for the one at `/`) and figures.
    pub(crate) fn render(&self, indexes: &[IndexFigures]) -> String {
        let mut out = String::with_capacity(8192);
        let used: Vec<(Route, &PerRoute)> = ROUTES
            .iter()
            .map(|r| (*r, &self.routes[*r as usize]))
            .filter(|(_, m)| m.count.load(Relaxed) > 0)
            .collect();

        head(
            &mut out,
            "tollgate_http_requests_total",
            "counter",
            "Requests answered, by route class and status.",
        );
        for (route, m) in &used {
            for (status, n) in m.by_status.iter().enumerate() {
                let n = n.load(Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "tollgate_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                        route.name()
                    );
                }
            }
        }
        head(
            &mut out,
            "tollgate_http_response_bytes_total",
            "counter",
            "Response body bytes sent, by route class.",
        );
        for (route, m) in &used {
            let _ = writeln!(
                out,
                "tollgate_http_response_bytes_total{{route=\"{}\"}} {}",
                route.name(),
                m.bytes.load(Relaxed)
            );
        }
        head(
            &mut out,
            "tollgate_http_request_duration_seconds",
            "histogram",
            "Time from a request's arrival to the end of its response body, by route class.",
        );
        for (route, m) in &used {
            let name = route.name();
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += m.buckets[i].load(Relaxed);
                let _ = writeln!(
                    out,
                    "tollgate_http_request_duration_seconds_bucket{{route=\"{name}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            cumulative += m.buckets[BUCKETS.len()].load(Relaxed);
            let _ = writeln!(
                out,
                "tollgate_http_request_duration_seconds_bucket{{route=\"{name}\",le=\"+Inf\"}} {cumulative}"
            );
            let sum = m.sum_micros.load(Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "tollgate_http_request_duration_seconds_sum{{route=\"{name}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "tollgate_http_request_duration_seconds_count{{route=\"{name}\"}} {cumulative}"
            );
        }
        let counters = [
            (
                "tollgate_token_cache_hits_total",
                "Bearer tokens answered from the verification cache.",
                &self.token_cache_hits,
            ),
            (
                "tollgate_token_cache_misses_total",
                "Bearer tokens verified (signature, claims), not found in the cache.",
                &self.token_cache_misses,
            ),
            (
                "tollgate_file_cache_hits_total",
                "Content-addressed files answered from memory.",
                &self.file_cache_hits,
            ),
            (
                "tollgate_file_cache_misses_total",
                "Content-addressed files read from disk.",
                &self.file_cache_misses,
            ),
            (
                "tollgate_tokens_issued_total",
                "Download tokens issued by the entitlement service.",
                &self.tokens_issued,
            ),
            (
                "tollgate_rate_limited_total",
                "Requests refused with 429 after too many failed credential checks.",
                &self.rate_limited,
            ),
            (
                "tollgate_connections_refused_total",
                "Connections closed unanswered: their address had max-connections-per-address open.",
                &self.connections_refused,
            ),
        ];
        for (name, help, counter) in counters {
            head(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", counter.load(Relaxed));
        }
        let name = "tollgate_connections_open";
        head(
            &mut out,
            name,
            "gauge",
            "Connections open now (at max-connections, new ones wait).",
        );
        let _ = writeln!(out, "{name} {}", self.connections_open.load(Relaxed));
        let gauges: [Gauge; 8] = [
            (
                "tollgate_index_objects",
                "Objects in a repository's reachability index.",
                |f| f.objects as f64,
            ),
            (
                "tollgate_index_public_objects",
                "Objects reachable from a public ref.",
                |f| f.public_objects as f64,
            ),
            ("tollgate_index_gated_refs", "Gated refs.", |f| {
                f.gated_refs as f64
            }),
            ("tollgate_index_public_refs", "Public refs.", |f| {
                f.public_refs as f64
            }),
            (
                "tollgate_index_refs_left_out",
                "Refs left out of the index because their tip could not be walked (missing, \
                 corrupt or unreadable objects): their files are refused.",
                |f| f.left_out_refs as f64,
            ),
            (
                "tollgate_index_bytes",
                "Bytes held by a repository's index.",
                |f| f.bytes as f64,
            ),
            (
                "tollgate_index_build_seconds",
                "How long the last build of the index took.",
                |f| f.build_time.as_secs_f64(),
            ),
            (
                "tollgate_index_age_seconds",
                "Time since the index in use was built.",
                |f| f.age.as_secs_f64(),
            ),
        ];
        for (name, help, value) in gauges {
            head(&mut out, name, "gauge", help);
            for figures in indexes {
                let _ = writeln!(
                    out,
                    "{name}{{repo=\"{}\"}} {}",
                    escape(&figures.repo),
                    value(figures)
                );
            }
        }
        out
    }
}

/// A gauge of the indexes: name, help, and its value for one index.
type Gauge = (&'static str, &'static str, fn(&IndexFigures) -> f64);

/// What `/metrics` says of one repository's index.
#[derive(Debug, Clone)]
pub(crate) struct IndexFigures {
    pub repo: String,
    pub objects: usize,
    pub public_objects: usize,
    pub gated_refs: usize,
    pub public_refs: usize,
    pub left_out_refs: usize,
    pub bytes: usize,
    pub build_time: Duration,
    pub age: Duration,
}

fn count_hit(hits: &AtomicU64, misses: &AtomicU64, hit: bool) {
    if hit { hits } else { misses }.fetch_add(1, Relaxed);
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped, as the text format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_buckets_and_labels() {
        let m = Metrics {
            routes: [const { PerRoute::new() }; ROUTES.len()],
            token_cache_hits: AtomicU64::new(3),
            token_cache_misses: AtomicU64::new(1),
            tokens_issued: AtomicU64::new(2),
            rate_limited: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            file_cache_hits: AtomicU64::new(0),
            file_cache_misses: AtomicU64::new(0),
        };
        m.request(Route::Object, 200, 100, Duration::from_micros(80));
        m.request(Route::Object, 200, 50, Duration::from_millis(3));
        m.request(Route::Object, 401, 10, Duration::from_secs(9));
        m.request(Route::Other, 1000, 0, Duration::ZERO);
        let text = m.render(&[IndexFigures {
            repo: "a\"b".to_owned(),
            objects: 7,
            public_objects: 5,
            gated_refs: 1,
            public_refs: 2,
            left_out_refs: 1,
            bytes: 300,
            build_time: Duration::from_millis(1500),
            age: Duration::from_secs(60),
        }]);
        for line in [
            "tollgate_http_requests_total{route=\"object\",status=\"200\"} 2",
            "tollgate_http_requests_total{route=\"object\",status=\"401\"} 1",
            "tollgate_http_requests_total{route=\"other\",status=\"599\"} 1",
            "tollgate_http_response_bytes_total{route=\"object\"} 160",
            "tollgate_http_request_duration_seconds_bucket{route=\"object\",le=\"0.0001\"} 1",
            "tollgate_http_request_duration_seconds_bucket{route=\"object\",le=\"0.0025\"} 1",
            "tollgate_http_request_duration_seconds_bucket{route=\"object\",le=\"0.005\"} 2",
            "tollgate_http_request_duration_seconds_bucket{route=\"object\",le=\"5\"} 2",
            "tollgate_http_request_duration_seconds_bucket{route=\"object\",le=\"+Inf\"} 3",
            "tollgate_http_request_duration_seconds_count{route=\"object\"} 3",
            "tollgate_http_request_duration_seconds_sum{route=\"object\"} 9.00308",
            "tollgate_token_cache_hits_total 3",
            "tollgate_tokens_issued_total 2",
            "tollgate_index_objects{repo=\"a\\\"b\"} 7",
            "tollgate_index_build_seconds{repo=\"a\\\"b\"} 1.5",
            "# TYPE tollgate_http_request_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        assert!(!text.contains("route=\"delta\""), "{text}");
    }
}
