//! Accepting connections and running the routes on them, with an access log.
//!
//! Connections are accepted here rather than by `warp::serve` so that each socket gets
//! `TCP_NODELAY` (small responses must not wait on Nagle's algorithm and the client's delayed
//! ACK, the 40 ms stall measured in flat-manager), slow clients get a header timeout, clients
//! that stop reading or sending are cut off (`stall.rs`), the number of open connections is
//! bounded (in all, and per client: an IPv4 address or an IPv6 /64), and shutdown drains
//! in-flight requests for a bounded time.
//!
//! Request headers are bounded: more than 100 headers (by hyper), or a head over 64 KiB
//! (`http::MAX_HEAD`), is answered 431 and the connection closed; hyper buffers at most that
//! much of a connection's input.
//!
//! Connections are accepted on the main runtime and then each is served, for its whole life, on
//! one of a few connection threads (one per core), each with a single-threaded runtime of its
//! own ([`ConnectionThreads`]): serving a connection then never wakes another thread, as in
//! nginx's worker processes. Measured against one work-stealing runtime: 1.2× the requests
//! on random public objects, 1.03 to 1.04× on gated ones (BENCHMARKS.md).
//!
//! The per-client count is taken when a connection is accepted, before any request on it is
//! read, so it can only know the connection's address: connections from a trusted proxy
//! (`trusted-proxies`) are counted in `max-connections` but not per address, and each request
//! on them is logged and limited as the client the proxy names (`clients.rs`).

use crate::clients::{Proxies, limit_key};
use crate::config::LimitsConfig;
use crate::metrics::{METRICS, Route};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Buf;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::AppState;
use super::stall::StallLimit;

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests may take to finish once shutdown has begun.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Open connections by client address, and the number each may have.
#[derive(Debug)]
struct PerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
    max: usize,
}

/// One of an address's open connections; given back when dropped.
#[derive(Debug)]
struct AddressSlot {
    table: Arc<PerAddress>,
    /// The client it counts against; `None` for a trusted proxy's, which are not counted.
    ip: Option<IpAddr>,
}

impl PerAddress {
    /// A slot for a connection from `ip` (its IPv4 address or IPv6 /64), if it has one left;
    /// a trusted proxy always has one: it carries many clients, and limits them itself.
    fn take(table: &Arc<PerAddress>, ip: IpAddr, proxies: &Proxies) -> Option<AddressSlot> {
        let ip = if proxies.trusts(ip) {
            None
        } else {
            let ip = limit_key(ip);
            let mut open = table.open.lock().unwrap_or_else(|e| e.into_inner());
            let count = open.entry(ip).or_insert(0);
            if *count >= table.max {
                return None;
            }
            *count += 1;
            Some(ip)
        };
        METRICS.connection_opened();
        Some(AddressSlot {
            table: Arc::clone(table),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        METRICS.connection_closed();
        let Some(ip) = self.ip else { return };
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&ip);
            }
        }
    }
}

/// Threads that serve connections, each running a single-threaded runtime; a connection is
/// given to one of them, in turn, and stays there.
#[derive(Debug)]
struct ConnectionThreads {
    runtimes: Vec<tokio::runtime::Handle>,
    /// Each thread runs until its sender is dropped.
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    next: usize,
}

impl ConnectionThreads {
    /// One thread per core the process may use.
    fn start() -> std::io::Result<ConnectionThreads> {
        let count = std::thread::available_parallelism().map_or(1, usize::from);
        let mut threads = ConnectionThreads {
            runtimes: Vec::with_capacity(count),
            stops: Vec::with_capacity(count),
            next: 0,
        };
        for n in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            threads.runtimes.push(runtime.handle().clone());
            threads.stops.push(stop);
            std::thread::Builder::new()
                .name(format!("tollgate-conn-{n}"))
                .spawn(move || {
                    // Ends when the sender is dropped; what is still running is dropped with
                    // the runtime.
                    let _ = runtime.block_on(stopped);
                })?;
        }
        Ok(threads)
    }

    /// Serves `stream` with `serve` on the next thread. `stream` is moved off this runtime's
    /// reactor onto that thread's.
    fn spawn<F, Fut>(&mut self, stream: tokio::net::TcpStream, peer: SocketAddr, serve: F)
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!("handing the connection from {peer} to a thread failed: {e}");
                return;
            }
        };
        let runtime = &self.runtimes[self.next % self.runtimes.len()];
        self.next = self.next.wrapping_add(1);
        runtime.spawn(async move {
            match tokio::net::TcpStream::from_std(stream) {
                // A single-threaded runtime: the connection is polled on this thread only.
                Ok(stream) => serve(stream).await,
                Err(e) => tracing::warn!("registering the connection from {peer} failed: {e}"),
            }
        });
    }
}

/// Serves `state`'s routes on `listener` until `shutdown` completes, then drains open
/// connections.
pub(crate) async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: LimitsConfig,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_header_size(super::MAX_HEAD)
        .max_buf_size(super::MAX_HEAD)
        .keep_alive(true);
    let stall = Duration::from_secs(limits.stall_timeout);
    let total = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = Arc::new(PerAddress {
        open: Mutex::new(HashMap::new()),
        max: limits.max_connections_per_address,
    });
    tokio::pin!(shutdown);
    let mut threads = match ConnectionThreads::start() {
        Ok(threads) => Some(threads),
        Err(e) => {
            tracing::warn!(
                "starting the connection threads failed ({e}); serving on the main runtime"
            );
            None
        }
    };
    loop {
        // At the limit, stop accepting: new connections wait in the kernel's queue.
        let permit = tokio::select! {
            permit = Arc::clone(&total).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = PerAddress::take(&per_address, peer.ip(), &state.proxies) else {
            // Closed unanswered: an HTTP answer would cost the server more than the client.
            METRICS.connection_refused();
            tracing::debug!(
                "closed a connection from {peer}: it has {} open already",
                per_address.max
            );
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("setting TCP_NODELAY for {peer}: {e}");
        }
        let state = Arc::clone(&state);
        let handler = hyper::service::service_fn(move |request: Request<Incoming>| {
            // Behind a trusted proxy, the client it names; else the connection's.
            let client = state.proxies.client(peer, request.headers());
            let log = AccessLog::start(client.ip, &request);
            let state = Arc::clone(&state);
            async move {
                // Boxed: hyper's dispatcher moves the service's future by value, and `handle`'s
                // is a few kilobytes; `perf` put that memmove at 2 to 4% of small answers.
                let (route, response) = Box::pin(super::handle(&state, request, client)).await;
                Ok::<_, Infallible>(log.attach(route, response))
            }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let serve = move |stream| async move {
            let io = StallLimit::new(TokioIo::new(stream), stall);
            if let Err(e) = watcher.watch(builder.serve_connection(io, handler)).await {
                tracing::debug!("connection from {peer} ended: {e}");
            }
            drop((slot, permit));
        };
        match &mut threads {
            Some(threads) => threads.spawn(stream, peer, serve),
            None => {
                tokio::spawn(serve(stream));
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("some connections were still open after {DRAIN_TIMEOUT:?}; closing them");
        }
    }
    drop(threads);
}

/// Bytes of a request path that are percent-encoded in the access log, so that a path can
/// neither end the quoted field early nor break the line.
const LOG_ESCAPED: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'\\');

/// One access log line, written when the response body is finished or dropped, so that it
/// tells the bytes actually sent and the whole time taken.
#[derive(Debug)]
struct AccessLog {
    /// The client's address (behind a trusted proxy, the one it forwarded).
    client: IpAddr,
    method: http::Method,
    /// The request's target (cheap to keep: it shares the request's bytes); formatted only
    /// if the line is written.
    uri: http::Uri,
    user_agent: Option<http::HeaderValue>,
    /// The scheme of the request's `Authorization` header (never its value).
    auth: &'static str,
    /// What the route table took the request for (until it answers, `Other`).
    route: Route,
    start: Instant,
    status: u16,
    bytes: u64,
}

impl AccessLog {
    fn start(client: IpAddr, request: &Request<Incoming>) -> AccessLog {
        AccessLog {
            client,
            method: request.method().clone(),
            uri: request.uri().clone(),
            user_agent: request.headers().get(http::header::USER_AGENT).cloned(),
            auth: auth_scheme(request.headers().get(http::header::AUTHORIZATION)),
            route: Route::Other,
            start: Instant::now(),
            status: 0,
            bytes: 0,
        }
    }

    fn attach<B: Body + Unpin>(
        mut self,
        route: Route,
        response: http::Response<B>,
    ) -> http::Response<LoggedBody<B>> {
        self.route = route;
        self.status = response.status().as_u16();
        response.map(|inner| LoggedBody { inner, log: self })
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        let took = self.start.elapsed();
        METRICS.request(self.route, self.status, self.bytes, took);
        // Formatting costs more than the rest of a small request: only for a line written.
        if !tracing::enabled!(target: "tollgate::access", tracing::Level::INFO) {
            return;
        }
        let user_agent = self
            .user_agent
            .as_ref()
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .unwrap_or_default();
        tracing::info!(
            target: "tollgate::access",
            "{} \"{} {}\" {} {} {:.1}ms auth={} {:?}",
            self.client,
            self.method,
            utf8_percent_encode(self.uri.path(), LOG_ESCAPED),
            self.status,
            self.bytes,
            took.as_secs_f64() * 1000.0,
            self.auth,
            user_agent,
        );
    }
}

/// What the access log says of an `Authorization` header: its scheme, never the credential.
fn auth_scheme(header: Option<&http::HeaderValue>) -> &'static str {
    let Some(value) = header else { return "-" };
    let scheme = value
        .as_bytes()
        .split(|b| *b == b' ')
        .next()
        .unwrap_or_default();
    if scheme.eq_ignore_ascii_case(b"bearer") {
        "bearer"
    } else if scheme.eq_ignore_ascii_case(b"basic") {
        "basic"
    } else {
        "other"
    }
}

/// A response body that counts what it yields into its access log entry.
#[derive(Debug)]
struct LoggedBody<B> {
    inner: B,
    log: AccessLog,
}

impl<B: Body + Unpin> Body for LoggedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.log.bytes += data.remaining() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
