//! The listener: accepts connections (TLS with rustls, or plain HTTP where the
//! configuration allows it), serves HTTP/1.1 and HTTP/2 on them with hyper, and tells every
//! request who its caller is ([`ClientInfo`]).
//!
//! Bounds, so that no client can hold the server:
//! - At most `max_connections` open, and at most `max_connections_per_address` from one IP
//!   address (an IPv4 address, or an IPv6 /64: one host is usually given a whole /64, so
//!   counting single IPv6 addresses would let it open as many as it likes): a new
//!   connection over either is closed at once.
//! - One deadline per connection, `header_timeout` from accept: the TLS handshake, the
//!   protocol detection (HTTP/1.1 or the HTTP/2 preface) and the first request's head must
//!   all be done by then, or the connection is closed. A connection whose peer closes is
//!   ended (and its slots freed) at once, whatever it was waiting for.
//! - Later requests: on HTTP/1.1 the next request's head must come within `header_timeout`
//!   of the previous answer (hyper's header read timeout, which also runs while a kept-alive
//!   connection is idle); on HTTP/2 the server pings the client (`http2_ping_interval`, the
//!   connection is closed when a ping is not answered within `http2_ping_timeout`).
//! - A connection with no request open for `idle_timeout` is closed gracefully (HTTP/2:
//!   GOAWAY), and for good if it is still there `header_timeout` later.
//!
//! Each connection is counted in [`ConnectionCounts`] (open, refused, closed by a deadline).
//! Graceful shutdown: no new connections, requests in flight finish (for at most `drain`),
//! then the function returns.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

use super::limits::ClientInfo;
use super::tls::identity_of;

/// How the listener treats connections.
#[derive(Clone)]
pub struct ListenerOptions {
    /// TLS; `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// From accept, the longest wait for the TLS handshake, the protocol and the first
    /// request's head together; on HTTP/1.1 also for each later request's head.
    pub header_timeout: Duration,
    /// A connection with no request open for this long is closed.
    pub idle_timeout: Duration,
    /// How often an HTTP/2 connection is pinged.
    pub http2_ping_interval: Duration,
    /// How long a ping may go unanswered before its HTTP/2 connection is closed.
    pub http2_ping_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one IP address.
    pub max_connections_per_address: usize,
    /// Longest wait, at shutdown, for requests in flight.
    pub drain: Duration,
    /// Where connections are counted (shown by `/metrics`).
    pub counts: Arc<ConnectionCounts>,
}

impl std::fmt::Debug for ListenerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerOptions")
            .field("tls", &self.tls.is_some())
            .field("header_timeout", &self.header_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("http2_ping_interval", &self.http2_ping_interval)
            .field("http2_ping_timeout", &self.http2_ping_timeout)
            .field("max_connections", &self.max_connections)
            .field(
                "max_connections_per_address",
                &self.max_connections_per_address,
            )
            .finish_non_exhaustive()
    }
}

/// The listener's connection counters, since start.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    open: AtomicU64,
    refused_max_connections: AtomicU64,
    refused_per_address: AtomicU64,
    closed_deadline: AtomicU64,
    closed_idle: AtomicU64,
}

impl ConnectionCounts {
    /// Connections open now.
    #[cfg(test)]
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Adds the counts, as they are now, to a registry being encoded for `/metrics`.
    pub fn register(&self, r: &mut super::metrics::Registry) {
        use super::metrics::{counter_values, gauge_value, int};
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        gauge_value(
            r,
            "auditstamp_connections_open",
            "Connections open now.",
            int(n(&self.open)),
        );
        counter_values(
            r,
            "auditstamp_connections_refused_total",
            "Connections closed at accept, by the cap they were over.",
            "reason",
            [
                ("max_connections", n(&self.refused_max_connections)),
                ("per_address", n(&self.refused_per_address)),
            ],
        );
        counter_values(
            r,
            "auditstamp_connections_closed_total",
            "Connections closed by the server for want of a request: deadline = no first request within the header timeout, idle = no request for the idle timeout (HTTP/1.1: the header timeout).",
            "reason",
            [
                ("deadline", n(&self.closed_deadline)),
                ("idle", n(&self.closed_idle)),
            ],
        );
    }
}

/// One open connection in [`ConnectionCounts`], for as long as it lives.
struct Counted(Arc<ConnectionCounts>);

impl Counted {
    fn new(counts: &Arc<ConnectionCounts>) -> Self {
        counts.open.fetch_add(1, Ordering::Relaxed);
        Counted(counts.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Connections open per IP address (per IPv6 /64, see [`address_group`]).
#[derive(Debug)]
struct PerAddress {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in [`PerAddress`], given back on drop.
struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    /// A place for a connection from `ip`, unless it has `max` open already.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let ip = address_group(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: self.clone(),
            ip,
        })
    }
}

/// The address that `ip`'s connections are counted under: an IPv4 address as it is (also
/// when it comes IPv4-mapped), an IPv6 address with its last 64 bits cleared.
fn address_group(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self
            .table
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// What every connection task shares.
struct Shared {
    builder: Builder<TokioExecutor>,
    router: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    header_timeout: Duration,
    idle_timeout: Duration,
    drain: Duration,
    counts: Arc<ConnectionCounts>,
}

/// Serves `router` on `listener` until `shutdown` completes; then lets requests in flight
/// finish (up to `options.drain`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ListenerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(options.http2_ping_interval)
        .keep_alive_timeout(options.http2_ping_timeout);
    let shared = Arc::new(Shared {
        builder,
        router,
        acceptor: options.tls.clone().map(tokio_rustls::TlsAcceptor::from),
        header_timeout: options.header_timeout,
        idle_timeout: options.idle_timeout,
        drain: options.drain,
        counts: options.counts.clone(),
    });
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let per_address = Arc::new(PerAddress {
        max: options.max_connections_per_address,
        open: Mutex::default(),
    });
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let accepted = Instant::now();
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused(
                &shared.counts.refused_max_connections,
                peer,
                "max_connections",
            );
            continue;
        };
        let Some(address_slot) = per_address.take(peer.ip()) else {
            refused(
                &shared.counts.refused_per_address,
                peer,
                "max_connections_per_address",
            );
            continue;
        };
        let held = Held {
            _slot: slot,
            _address: address_slot,
            _counted: Counted::new(&shared.counts),
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection(
            shared.clone(),
            tcp,
            peer,
            accepted + shared.header_timeout,
            stopping.clone(),
            held,
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds one permit until it ends: all of them back means all ended.
    let all = u32::try_from(options.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(options.drain, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the drain time; stopping anyway");
    }
    Ok(())
}

/// Counts a connection closed at accept; logs the first and every 1000th.
fn refused(counter: &AtomicU64, peer: SocketAddr, cap: &str) {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    if n.is_multiple_of(1000) {
        tracing::warn!(%peer, cap, refused = n + 1, "too many connections: closing a new one");
    }
}

/// What a connection holds while it lives: its places under both caps, and its count.
struct Held {
    _slot: OwnedSemaphorePermit,
    _address: AddressSlot,
    _counted: Counted,
}

/// One connection, from accept to close: TLS (if any) and HTTP, by `deadline`.
async fn connection(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    deadline: Instant,
    mut stopping: watch::Receiver<bool>,
    held: Held,
) {
    let _held = held;
    let Some(acceptor) = shared.acceptor.clone() else {
        let info = ClientInfo {
            peer,
            identity: None,
        };
        return serve_http(&shared, TokioIo::new(tcp), info, deadline, stopping).await;
    };
    let stream = tokio::select! {
        handshake = tokio::time::timeout_at(deadline, acceptor.accept(tcp)) => match handshake {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                shared.counts.closed_deadline.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "TLS handshake not done by the deadline: closed");
                return;
            }
        },
        _ = stopping.wait_for(|s| *s) => return,
    };
    let identity = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| identity_of(c.as_ref()));
    let info = ClientInfo { peer, identity };
    serve_http(&shared, TokioIo::new(stream), info, deadline, stopping).await;
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request yet: the first one's head is due by the deadline.
    Opening,
    /// A request came; idle connections are closed after the idle timeout.
    Serving,
    /// Told to close (idle, or shutdown): the requests open finish, then it closes.
    Closing,
}

/// Serves HTTP on `io` and watches it: closed if no request has come by `deadline`,
/// gracefully when no request is open for the idle timeout, and at shutdown.
async fn serve_http<I>(
    shared: &Shared,
    io: I,
    info: ClientInfo,
    deadline: Instant,
    mut stopping: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let peer = info.peer;
    let activity = Arc::new(Activity::new());
    let conn = shared
        .builder
        .serve_connection(io, service(shared.router.clone(), info, activity.clone()));
    tokio::pin!(conn);
    let mut phase = Phase::Opening;
    let mut closing_since = Instant::now();
    let mut stop_seen = false;
    loop {
        let idle = activity.open.load(Ordering::SeqCst) == 0;
        if phase == Phase::Opening && activity.seen.load(Ordering::SeqCst) {
            phase = Phase::Serving;
        }
        let wake = match phase {
            Phase::Opening => Some(deadline),
            Phase::Serving if idle => Some(activity.idle_since() + shared.idle_timeout),
            Phase::Closing if idle => {
                Some(activity.idle_since().max(closing_since) + shared.header_timeout)
            }
            _ => None,
        };
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    let timed_out = e
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_timeout);
                    if timed_out {
                        // HTTP/1.1: no complete head within the header timeout.
                        let counter = if phase == Phase::Opening {
                            &shared.counts.closed_deadline
                        } else {
                            &shared.counts.closed_idle
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
                return;
            }
            () = activity.changed.notified() => {}
            () = tokio::time::sleep_until(wake.unwrap_or(deadline)), if wake.is_some() => {
                match phase {
                    Phase::Opening if activity.seen.load(Ordering::SeqCst) => {}
                    Phase::Opening => {
                        shared.counts.closed_deadline.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, "no request by the deadline: closed");
                        return;
                    }
                    Phase::Serving => {
                        if activity.open.load(Ordering::SeqCst) == 0 {
                            shared.counts.closed_idle.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%peer, "idle: closing");
                            conn.as_mut().graceful_shutdown();
                            phase = Phase::Closing;
                            closing_since = Instant::now();
                        }
                    }
                    Phase::Closing => return,
                }
            }
            _ = stopping.wait_for(|s| *s), if !stop_seen => {
                stop_seen = true;
                match phase {
                    Phase::Opening => return,
                    Phase::Serving => {
                        conn.as_mut().graceful_shutdown();
                        phase = Phase::Closing;
                        // At shutdown, requests may take the whole drain time.
                        closing_since = Instant::now() + shared.drain;
                    }
                    Phase::Closing => {}
                }
            }
        }
    }
}

/// What one connection's requests are doing, as its service sees them.
struct Activity {
    start: Instant,
    /// Requests open: received, and their answer not yet sent in full.
    open: AtomicUsize,
    /// A request came.
    seen: AtomicBool,
    /// When the last request ended, milliseconds after `start`.
    idle_since_ms: AtomicU64,
    /// Woken when a first request opens or the last one ends.
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            open: AtomicUsize::new(0),
            seen: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    /// A request opens; it is open until the returned guard is dropped.
    fn begin(self: &Arc<Self>) -> Open {
        if self.open.fetch_add(1, Ordering::SeqCst) == 0 {
            self.seen.store(true, Ordering::SeqCst);
            self.changed.notify_one();
        }
        Open(self.clone())
    }

    /// Since when no request has been open (when `open` is 0).
    fn idle_since(&self) -> Instant {
        self.start + Duration::from_millis(self.idle_since_ms.load(Ordering::SeqCst))
    }
}

/// One open request of a connection ([`Activity::begin`]).
struct Open(Arc<Activity>);

impl Drop for Open {
    fn drop(&mut self) {
        let a = &self.0;
        let now = u64::try_from(a.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        // Before the count: whoever sees no request open sees this time.
        a.idle_since_ms.fetch_max(now, Ordering::SeqCst);
        if a.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            a.changed.notify_one();
        }
    }
}

/// A response body that keeps its request open until it is sent in full (or dropped).
struct Tracked {
    body: Body,
    _open: Open,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The hyper service of one connection: the router, with the caller set on each request,
/// and each request open in `activity` until its answer is sent.
fn service(
    router: Router,
    info: ClientInfo,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    axum::http::Request<Incoming>,
    Response = axum::http::Response<Tracked>,
    Error = Infallible,
    Future = impl Future<Output = Result<axum::http::Response<Tracked>, Infallible>> + Send,
> + Clone
       + Send {
    let service = move |mut req: axum::http::Request<Incoming>| {
        let open = activity.begin();
        req.extensions_mut().insert(info.clone());
        let answer = router.clone().oneshot(req.map(Body::new));
        async move {
            let resp = answer.await?;
            Ok(resp.map(|body| Tracked { body, _open: open }))
        }
    };
    hyper::service::service_fn(service)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn per_address_places_are_given_back() {
        let table = Arc::new(PerAddress {
            max: 2,
            open: Mutex::default(),
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let one = table.take(a).unwrap();
        let two = table.take(mapped).unwrap();
        assert!(
            table.take(a).is_none(),
            "an IPv4-mapped address is the same address"
        );
        let other = table.take(b).unwrap();
        drop(one);
        let three = table.take(a).unwrap();
        drop((two, three, other));
        assert!(table.open.lock().unwrap().is_empty());

        // IPv6: one /64 is one address; the next /64 is another.
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let first = table.take(v6("2001:db8:0:1::1")).unwrap();
        let second = table.take(v6("2001:db8:0:1:ffff:ffff:ffff:fffe")).unwrap();
        assert!(
            table.take(v6("2001:db8:0:1:1234::9")).is_none(),
            "addresses of one /64 share its places"
        );
        let next = table.take(v6("2001:db8:0:2::1")).unwrap();
        drop((first, second, next));
        assert!(table.open.lock().unwrap().is_empty());
    }

    #[test]
    fn counts_render() {
        let c = Arc::new(ConnectionCounts::default());
        let open = Counted::new(&c);
        c.refused_per_address.fetch_add(3, Ordering::Relaxed);
        c.closed_idle.fetch_add(2, Ordering::Relaxed);
        let mut r = super::super::metrics::Registry::default();
        c.register(&mut r);
        let text = super::super::metrics::encode(&[&r]).unwrap();
        assert!(text.contains("\nauditstamp_connections_open 1\n"), "{text}");
        assert!(text.contains("auditstamp_connections_refused_total{reason=\"per_address\"} 3\n"));
        assert!(
            text.contains("auditstamp_connections_refused_total{reason=\"max_connections\"} 0\n")
        );
        assert!(text.contains("auditstamp_connections_closed_total{reason=\"idle\"} 2\n"));
        drop(open);
        assert_eq!(c.open(), 0);
    }
}
