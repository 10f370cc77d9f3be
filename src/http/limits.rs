//! Who is calling, and how much they may ask: client identity, client-certificate
//! requirements per route group, per-client rate limits and the global concurrency limit.
//!
//! Excess is answered at once (429 with Retry-After for a client over its rate, 503 with
//! Retry-After when the server has as many requests in hand as it takes), never queued.
//! The rate limit and the client-certificate check come before a request takes one of the
//! global slots, and a refused request's body is never read before its answer
//! ([`refuse`]).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode, Version};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use http_body_util::BodyExt;

/// The caller of one request, set by the listener on every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The peer's address.
    pub peer: SocketAddr,
    /// The agency identity of a verified client certificate (its subject CN), if any.
    pub identity: Option<String>,
}

impl ClientInfo {
    /// The key a rate limit counts under: the identity, else the peer's IP address.
    fn limit_key(&self) -> String {
        match &self.identity {
            Some(id) => format!("id:{id}"),
            None => format!("ip:{}", self.peer.ip()),
        }
    }
}

/// Refuses `req` at once with a JSON error `{"error": ...}`, `status`, and `Retry-After`
/// when given; the caller holds no slot. The body is never read before the answer:
/// - HTTP/1.1: the answer says `Connection: close`, and the connection ends with it.
/// - HTTP/2: the answer goes out at once; then what the client still sends of a small body
///   is thrown away in the background (at most 64 KiB, for at most a second), so that a
///   client still sending receives the refusal rather than a reset stream (curl reports an
///   early reset as a framing error and drops the answer); past that the stream is reset.
pub(crate) fn refuse(
    req: Request,
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
) -> Response {
    if req.version() == Version::HTTP_2 {
        tokio::spawn(discard(req.into_body()));
    }
    let mut resp = (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
    if let Some(s) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Throws away up to 64 KiB of a refused request's body, for at most a second.
async fn discard(body: Body) {
    let mut body = body;
    let mut left: usize = 64 * 1024;
    let _ = tokio::time::timeout(Duration::from_secs(1), async move {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len());
            if n >= left {
                break;
            }
            left -= n;
        }
    })
    .await;
}

/// Requests per client: a token bucket per key (GCRA, `governor`).
pub struct RateLimiter {
    limiter: governor::DefaultKeyedRateLimiter<String>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// `per_second` sustained with bursts of `burst`; `None` when `per_second` is 0 (off).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        let quota = governor::Quota::per_second(rate).allow_burst(burst);
        Some(RateLimiter {
            limiter: governor::RateLimiter::keyed(quota),
        })
    }

    /// Ok, or how long the client must wait.
    fn check(&self, key: &String) -> Result<(), Duration> {
        self.limiter.check_key(key).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::DefaultClock::default().now())
        })
    }

    /// Forgets clients whose buckets are full again (keeps memory bounded by recent clients).
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// What every request passes through first ([`gate`]).
#[derive(Debug)]
pub struct Gate {
    /// The per-client rate limit, if on.
    pub rate_limit: Option<Arc<RateLimiter>>,
    /// Where answers are counted and timed.
    pub metrics: Arc<super::metrics::Metrics>,
}

/// Middleware, the outermost layer of every route: refuses a client over its rate at once
/// with 429 and Retry-After (without reading its body, before the request takes one of
/// the [`Slots`]); counts every answer by status class, and times the timed routes.
pub async fn gate(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = super::metrics::Timed::for_path(req.uri().path());
    let resp = rate_limited(&gate, req, next).await;
    gate.metrics.answered(route, resp.status(), start.elapsed());
    resp
}

async fn rate_limited(gate: &Gate, req: Request, next: Next) -> Response {
    if let Some(limiter) = &gate.rate_limit {
        let key = req
            .extensions()
            .get::<ClientInfo>()
            .map_or_else(|| "unknown".to_owned(), ClientInfo::limit_key);
        if let Err(wait) = limiter.check(&key) {
            return refuse(
                req,
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests from this client; slow down".into(),
                Some(wait.as_secs().max(1)),
            );
        }
    }
    next.run(req).await
}

/// The global concurrency limit and the request timeout ([`admit`]).
#[derive(Debug)]
pub struct Slots {
    /// At most this many requests in hand at once, across every route.
    pub slots: tokio::sync::Semaphore,
    /// Longest time a request may take (then 408).
    pub timeout: Duration,
}

/// Middleware, the innermost layer before each handler (after the rate limit and the
/// client-certificate check): refuses a request at once with 503 and Retry-After when the
/// server has as many in hand as it takes; answers 408 when a request takes longer than
/// the timeout.
pub async fn admit(State(slots): State<Arc<Slots>>, req: Request, next: Next) -> Response {
    let Ok(_permit) = slots.slots.try_acquire() else {
        return refuse(
            req,
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is at capacity; retry shortly".into(),
            Some(1),
        );
    };
    match tokio::time::timeout(slots.timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            // What was read of the body is lost: the connection cannot carry another request.
            [(header::CONNECTION, HeaderValue::from_static("close"))],
            "the request took too long; it was abandoned\n",
        )
            .into_response(),
    }
}

/// Middleware for a route group that requires a client certificate: 403 without one,
/// at once and without reading the body (it runs before the request takes a slot).
pub async fn require_client_cert(req: Request, next: Next) -> Response {
    let has_identity = req
        .extensions()
        .get::<ClientInfo>()
        .is_some_and(|c| c.identity.is_some());
    if has_identity {
        next.run(req).await
    } else {
        refuse(
            req,
            StatusCode::FORBIDDEN,
            "this endpoint requires a client certificate issued by the agencies' CA".into(),
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn buckets_are_per_client() {
        let l = RateLimiter::new(1, 2).unwrap();
        let a = "id:a".to_string();
        let b = "id:b".to_string();
        assert!(l.check(&a).is_ok());
        assert!(l.check(&a).is_ok());
        let wait = l.check(&a).unwrap_err();
        assert!(wait <= Duration::from_secs(1));
        assert!(l.check(&b).is_ok());
        assert!(RateLimiter::new(0, 5).is_none());
        let c = ClientInfo {
            peer: "10.0.0.1:5".parse().unwrap(),
            identity: None,
        };
        assert_eq!(c.limit_key(), "ip:10.0.0.1");
    }
}
