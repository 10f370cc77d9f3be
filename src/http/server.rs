//! The listener: accepts connections (TLS with rustls, or plain HTTP where the
//! configuration allows it), serves HTTP/1.1 and HTTP/2 on them with hyper, and tells every
//! request who its caller is ([`ClientInfo`]).
//!
//! Bounds, so that no client can hold the server: at most `max_connections` open (beyond,
//! a new connection is closed at once), a TLS handshake within the header timeout,
//! request headers within `header_timeout`. Graceful shutdown: no new connections, requests
//! in flight finish (for at most `drain`), then the function returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::limits::ClientInfo;
use super::tls::identity_of;

/// How the listener treats connections.
#[derive(Clone)]
pub struct ListenerOptions {
    /// TLS; `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Longest wait for a TLS handshake and for a request's headers.
    pub header_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest wait, at shutdown, for requests in flight.
    pub drain: Duration,
}

impl std::fmt::Debug for ListenerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerOptions")
            .field("tls", &self.tls.is_some())
            .field("header_timeout", &self.header_timeout)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
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
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(options.max_connections));
    let acceptor = options.tls.clone().map(tokio_rustls::TlsAcceptor::from);
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many connections: closing a new one");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (router, builder, acceptor) = (router.clone(), builder.clone(), acceptor.clone());
        let watcher = graceful.watcher();
        let header_timeout = options.header_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            match acceptor {
                None => {
                    let info = ClientInfo {
                        peer,
                        identity: None,
                    };
                    let conn = builder
                        .serve_connection(TokioIo::new(tcp), service(router, info))
                        .into_owned();
                    let _ = watcher.watch(conn).await;
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let identity = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| identity_of(c.as_ref()));
                    let info = ClientInfo { peer, identity };
                    let conn = builder
                        .serve_connection(TokioIo::new(stream), service(router, info))
                        .into_owned();
                    let _ = watcher.watch(conn).await;
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(options.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the drain time; stopping anyway");
    }
    Ok(())
}

/// The hyper service of one connection: the router, with the caller set on each request.
fn service(
    router: Router,
    info: ClientInfo,
) -> hyper_util::service::TowerToHyperService<
    impl tower::Service<
            axum::http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future = impl Send,
        > + Clone
        + Send,
> {
    let svc = router.map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(info.clone());
        req.map(axum::body::Body::new)
    });
    hyper_util::service::TowerToHyperService::new(svc)
}
