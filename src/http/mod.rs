//! The HTTP API: the axum router, and the one place errors become statuses.
//!
//! Protocol problems in a time-stamp request are answered as RFC 3161 rejections (HTTP 200,
//! `application/timestamp-reply`, with the failInfo the profile names); only transport
//! problems get 4xx/5xx, and the event API answers its errors as JSON: both are the one
//! [`HttpError`]. Internal detail goes to the log, never to the client.
//!
//! Routes (all in [`router`]):
//! - `POST /tsa` — RFC 3161 over HTTP.
//! - `GET /tsa/certs` — the TSA certificate chain, PEM.
//! - `GET /healthz` — the process is up.
//! - `GET /readyz` — the HSM, clock and store are usable (JSON; 503 when not).
//! - `GET /metrics` — Prometheus counters, gauges and process metrics ([`metrics`]).
//! - The event chain ([`chain`]): `POST /v1/events`, `POST /v1/events/batch`,
//!   `GET /v1/events/{index}`, `GET /v1/blocks/latest`, `GET /v1/blocks/{height}`,
//!   `GET /v1/proofs/consistency`, and the C2SP tlog-tiles read API `GET /checkpoint`,
//!   `GET /tile/...`.
//! - The web console ([`ui`]): `GET /ui/` (status and event search), `GET /ui/events/{index}`
//!   (an event and its proof, checked in the browser), `GET /ui/assets/{name}`; in the
//!   "read" group, so it needs a client certificate wherever reads do.
//!
//! The data center's witness is another server with its own router: [`crate::witness::routes::router`].

pub mod chain;
pub mod limits;
pub mod metrics;
pub mod search;
pub mod server;
pub mod tls;
pub mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::service::chain::ChainService;
use crate::service::{ServiceError, TsaService};
use crate::tsp::{rejection_response, FailureInfo, Rejection};

/// Media type of a time-stamp request.
pub const TIMESTAMP_QUERY: &str = "application/timestamp-query";
/// Media type of a time-stamp reply.
pub const TIMESTAMP_REPLY: &str = "application/timestamp-reply";

/// Every error a handler answers with a non-200 status: on the time-stamp routes, the
/// transport problems (plain text; a refused request is an RFC 3161 rejection, a 200), and
/// on the API routes a JSON `{"error": "..."}` with its status ([`HttpError::Api`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The request's Content-Type is not the one the endpoint takes.
    #[error("Content-Type must be {expected}")]
    UnsupportedMediaType {
        /// The media type expected.
        expected: &'static str,
    },
    /// Something failed inside the appliance; the detail is in the log.
    #[error("internal error; see the appliance log")]
    Internal,
    /// A client error or an internal failure of the API, answered as JSON.
    #[error("{message}")]
    Api {
        /// The status.
        status: StatusCode,
        /// What to tell the client (never internal detail).
        message: String,
        /// Seconds after which a retry may succeed (`Retry-After`).
        retry_after: Option<u32>,
    },
}

impl HttpError {
    /// An API error with `status` and `message`.
    pub fn api(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError::Api {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A 404 API error.
    pub fn not_found(message: impl Into<String>) -> Self {
        HttpError::api(StatusCode::NOT_FOUND, message)
    }

    /// A 400 API error.
    pub fn bad_request(message: impl Into<String>) -> Self {
        HttpError::api(StatusCode::BAD_REQUEST, message)
    }

    /// The same error, telling the client to retry after `seconds` (API errors only).
    pub fn retry_after(mut self, seconds: u32) -> Self {
        if let HttpError::Api { retry_after, .. } = &mut self {
            *retry_after = Some(seconds);
        }
        self
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        match self {
            HttpError::Api {
                status,
                message,
                retry_after,
            } => {
                let body = axum::Json(serde_json::json!({ "error": message }));
                let mut resp = (status, body).into_response();
                if let Some(s) = retry_after {
                    resp.headers_mut().insert(
                        axum::http::header::RETRY_AFTER,
                        axum::http::HeaderValue::from(s),
                    );
                }
                resp
            }
            HttpError::UnsupportedMediaType { .. } => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("{self}\n")).into_response()
            }
            HttpError::Internal => {
                (StatusCode::INTERNAL_SERVER_ERROR, format!("{self}\n")).into_response()
            }
        }
    }
}

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The time-stamp authority.
    pub tsa: Arc<TsaService>,
    /// The event chain.
    pub chain: Arc<ChainService>,
    /// Counters for `GET /metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// The listener's connection counters, also shown by `GET /metrics`.
    pub connections: Arc<server::ConnectionCounts>,
    /// Largest time-stamp request body (set by [`router`] from its settings).
    pub tsa_max_body: usize,
    /// The archive's state, when there is an archive.
    pub archive: Option<Arc<crate::archive::writer::ArchiveStatus>>,
    /// The archive's bucket, where bundles pruned from the local disk are read back.
    pub archive_bucket: Option<crate::archive::Bucket>,
    /// Client-certificate identities that may search every agency's events
    /// (`http.tls.auditors_of_all`); any other identity sees its own agency's only.
    pub auditors_of_all: Arc<[String]>,
}

impl AppState {
    /// The state of a server in front of `tsa` and `chain`, its counters at zero.
    pub fn new(tsa: Arc<TsaService>, chain: Arc<ChainService>) -> Self {
        AppState {
            tsa,
            chain,
            metrics: Arc::default(),
            connections: Arc::default(),
            tsa_max_body: 16 * 1024,
            archive: None,
            archive_bucket: None,
            auditors_of_all: Arc::from(Vec::new()),
        }
    }
}

/// HTTP limits and access rules.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Largest time-stamp request body, bytes.
    pub max_body_bytes: usize,
    /// Largest `POST /v1/events` body, bytes.
    pub max_event_bytes: usize,
    /// Largest `POST /v1/events/batch` body, bytes.
    pub max_batch_bytes: usize,
    /// Longest time a request may take.
    pub request_timeout: Duration,
    /// Route groups that need a client certificate ("tsa", "events", "read", "ops").
    pub require_client_cert: Vec<String>,
    /// The per-client rate limit, if on.
    pub rate_limit: Option<Arc<limits::RateLimiter>>,
    /// Most requests handled at once.
    pub max_concurrent_requests: usize,
}

/// Every route of the appliance.
pub fn router(mut state: AppState, settings: HttpSettings) -> Router {
    // Each body-taking route has its own cap: the limit layer refuses an over-long
    // Content-Length before reading any of the body, and cuts off a chunked body as soon
    // as it passes the cap. The rest of such a body is never read, so the connection
    // cannot carry another request: the 413 says `Connection: close`, or a client would
    // send its next request on a connection the server is closing.
    let capped = |router: Router<AppState>, max: usize, json: bool| {
        router
            .layer(tower_http::limit::RequestBodyLimitLayer::new(max))
            .layer(axum::middleware::map_response(
                move |resp: Response| async move {
                    if resp.status() != StatusCode::PAYLOAD_TOO_LARGE {
                        return resp;
                    }
                    // The chain API answers in JSON, also when the body is too large (its
                    // handlers' own 413s already are).
                    let is_json = resp
                        .headers()
                        .get(header::CONTENT_TYPE)
                        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
                    let mut resp = if json && !is_json {
                        chain::body_too_large(max)
                    } else {
                        resp
                    };
                    resp.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    resp
                },
            ))
    };
    // Layers run outermost first: the answer counters and the per-client rate limit (one
    // layer over every route), then a group's client-certificate check, and only then the
    // global concurrency limit (one semaphore, shared by every route's layer) with the
    // request timeout. So a request refused for its rate or its missing certificate never
    // holds a slot, and its body is not read before the answer.
    let slots = Arc::new(limits::Slots {
        slots: tokio::sync::Semaphore::new(settings.max_concurrent_requests),
        timeout: settings.request_timeout,
    });
    let admit = axum::middleware::from_fn_with_state(slots, limits::admit);
    // Route groups, each behind a client-certificate check when the config asks for it.
    let group = |name: &str, router: Router<AppState>| {
        let router = router.route_layer(admit.clone());
        if settings.require_client_cert.iter().any(|g| g == name) {
            router.route_layer(axum::middleware::from_fn(limits::require_client_cert))
        } else {
            router
        }
    };
    // `POST /tsa` reads its body itself, within `max_body_bytes` (see `post_tsa`).
    let tsa = group("tsa", Router::new().route("/tsa", post(post_tsa)));
    let events = group(
        "events",
        capped(
            Router::new().route("/v1/events", post(chain::post_event)),
            settings.max_event_bytes,
            true,
        )
        .merge(capped(
            Router::new().route("/v1/events/batch", post(chain::post_batch)),
            settings.max_batch_bytes,
            true,
        ))
        // The caps above are these routes' limits, not axum's default one.
        .layer(DefaultBodyLimit::disable()),
    );
    let read = group(
        "read",
        Router::new()
            .route("/tsa/certs", get(get_certs))
            .route("/v1/events", get(search::get_events))
            .route("/v1/events/{index}", get(chain::get_event))
            .route("/v1/blocks/latest", get(chain::get_latest_block))
            .route("/v1/blocks/{height}", get(chain::get_block))
            .route("/v1/proofs/consistency", get(chain::get_consistency))
            .route("/checkpoint", get(chain::get_checkpoint))
            .route("/tile/{*path}", get(chain::get_tile))
            .route("/ui", get(ui::redirect))
            .route("/ui/", get(ui::search_page))
            .route("/ui/search", get(ui::search_page))
            .route("/ui/event", get(ui::go_to_event))
            .route("/ui/events/{index}", get(ui::event_page))
            .route("/ui/assets/{name}", get(ui::asset)),
    );
    let ops = group(
        "ops",
        Router::new()
            .route("/readyz", get(readyz))
            .route("/metrics", get(get_metrics)),
    );
    let gate = Arc::new(limits::Gate {
        rate_limit: settings.rate_limit.clone(),
        metrics: state.metrics.clone(),
    });
    let health = Router::new()
        .route("/healthz", get(healthz))
        .route_layer(admit);
    state.tsa_max_body = settings.max_body_bytes;
    Router::new()
        .merge(tsa)
        .merge(events)
        .merge(read)
        .merge(ops)
        .merge(health)
        .layer(axum::middleware::from_fn_with_state(gate, limits::gate))
        .with_state(state)
}

/// True when `headers` carry `Content-Type: expected` (parameters allowed, case ignored).
fn has_media_type(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(expected))
}

/// The RFC 3161 rejection for a failed issuance; internal detail stays in the log.
fn rejection_for(err: &ServiceError) -> Rejection {
    match err {
        ServiceError::Rejected(r) => r.clone(),
        ServiceError::Clock(e) => Rejection {
            fail: FailureInfo::TimeNotAvailable,
            text: format!("time is not available: {e}"),
        },
        ServiceError::CertificateExpired => Rejection {
            fail: FailureInfo::SystemFailure,
            text: "the TSA certificate has expired; the operator must activate a new key".into(),
        },
        ServiceError::CertificateNotYetValid { not_before } => Rejection {
            fail: FailureInfo::SystemFailure,
            text: format!("the TSA certificate is not valid before {not_before}; try again later"),
        },
        _ => Rejection {
            fail: FailureInfo::SystemFailure,
            text: "the time-stamp authority cannot sign now; try again later".into(),
        },
    }
}

fn reply(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(TIMESTAMP_REPLY),
        )],
        body,
    )
        .into_response()
}

/// 413 for a time-stamp request over `max` bytes. The rest of its body is not read, so
/// the connection cannot carry another request: `Connection: close` says so.
fn tsa_too_large(max: usize) -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(header::CONNECTION, HeaderValue::from_static("close"))],
        format!("a time-stamp request takes at most {max} bytes\n"),
    )
        .into_response()
}

/// Reads a time-stamp request's body: refused from its Content-Length when that is over
/// the cap, else as soon as what arrives passes it, without reading the rest.
async fn tsa_body(req: Request, max: usize) -> Result<Bytes, Response> {
    use http_body_util::BodyExt;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(tsa_too_large(max));
    }
    match http_body_util::Limited::new(req.into_body(), max)
        .collect()
        .await
    {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(tsa_too_large(max)),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read a time-stamp request body");
            Err((StatusCode::BAD_REQUEST, "cannot read the request body\n").into_response())
        }
    }
}

async fn post_tsa(State(state): State<AppState>, req: Request) -> Response {
    if !has_media_type(req.headers(), TIMESTAMP_QUERY) {
        return HttpError::UnsupportedMediaType {
            expected: TIMESTAMP_QUERY,
        }
        .into_response();
    }
    let client = req.extensions().get::<limits::ClientInfo>().cloned();
    let requester = client.as_ref().and_then(|c| c.identity.as_deref());
    let body = match tsa_body(req, state.tsa_max_body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    match state.tsa.issue(&body, requester).await {
        Ok(resp) => {
            state.metrics.token_issued();
            reply(resp)
        }
        Err(err) => {
            match &err {
                ServiceError::Rejected(_) => {
                    tracing::info!(error = %err, "time-stamp request refused")
                }
                ServiceError::Clock(_) => {
                    tracing::warn!(error = %err, "time-stamp request refused: clock")
                }
                _ => tracing::error!(error = %err, "time-stamp issuance failed"),
            }
            let rejection = rejection_for(&err);
            state.metrics.token_refused(rejection.fail);
            reply(rejection_response(&rejection))
        }
    }
}

async fn get_certs(State(state): State<AppState>) -> Response {
    match state.tsa.certificates_pem() {
        Ok(pem) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/pem-certificate-chain"),
            )],
            pem,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "cannot serve the certificate chain");
            HttpError::Internal.into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn get_metrics(State(state): State<AppState>) -> Response {
    let identity = state.tsa.identity();
    let now = state.tsa.now_ms();
    let published = state.chain.published();
    let gauges = metrics::Gauges {
        certificate_days_remaining: identity.days_remaining(now),
        certificate_not_after_seconds: identity.not_after_ms() / 1000,
        tsa_signer: identity.signer_counts(),
        chain_signer: state.chain.signer_counts(),
        chain_events: state.chain.log().size(),
        chain_commits: state.chain.log().commits(),
        chain_sealed: state.chain.sealed_size(),
        last_seal_age_seconds: published
            .map(|p| now.saturating_sub(p.block.header.sealed_at_ms) as f64 / 1000.0),
        witnesses: state.chain.witness_counts(),
        archive: state
            .archive
            .as_ref()
            .map(|a| a.report(state.chain.sealed_size())),
        search: search_gauges(&state),
    };
    metrics::response(
        state
            .metrics
            .render(&gauges, |r| state.connections.register(r)),
    )
}

/// The search index's figures, when search is on.
fn search_gauges(state: &AppState) -> Option<metrics::SearchGauges> {
    let index = state.chain.search_index()?;
    let indexed = index.indexed();
    Some(metrics::SearchGauges {
        indexed,
        lag: state.chain.log().size().saturating_sub(indexed),
        mismatches: index.mismatches(),
        bytes: index.disk_bytes().unwrap_or(0),
    })
}

async fn readyz(State(state): State<AppState>) -> Response {
    let r = state.tsa.readiness().await;
    let part = |p: &Result<(), String>| match p {
        Ok(()) => serde_json::json!({ "ok": true }),
        Err(e) => serde_json::json!({ "ok": false, "error": e }),
    };
    let certificate = match &r.certificate {
        Ok(days) => serde_json::json!({ "ok": true, "days_remaining": days }),
        Err(e) => serde_json::json!({ "ok": false, "error": e }),
    };
    let mut body = serde_json::json!({
        "ready": r.ready(),
        "hsm": part(&r.hsm),
        "clock": part(&r.clock),
        "store": part(&r.store),
        "certificate": certificate,
    });
    // The archive never makes the appliance unready (tokens and events do not wait for
    // it): a lag past its bound is a warning, a conflict an alarm, both named here.
    if let Some(a) = &state.archive {
        let a = a.report(state.chain.sealed_size());
        body["archive"] = serde_json::json!({
            "ok": a.alarm.is_none() && a.warning.is_none(),
            "resumed": a.resumed,
            "archived_size": a.archived_size,
            "lag_events": a.lag_events,
            "alarm": a.alarm,
            "warning": a.warning,
            "last_error": a.last_error,
        });
    }
    // Nor does the search index: while it catches up, searches read the rest from the log
    // (or, far behind, answer 503 with Retry-After).
    if let Some(s) = search_gauges(&state) {
        body["search_index"] = serde_json::json!({
            "ok": s.lag <= crate::chain::index::MAX_TAIL && s.mismatches == 0,
            "indexed": s.indexed,
            "lag_events": s.lag,
            "mismatches": s.mismatches,
        });
    }
    let status = if r.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod router_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate outside its validity is the operator's problem, not the client's:
    /// systemFailure, with the reason.
    #[test]
    fn certificate_outside_its_validity_is_a_system_failure() {
        let not_yet = rejection_for(&ServiceError::CertificateNotYetValid {
            not_before: "2031-01-01 00:00:00 UTC".into(),
        });
        assert_eq!(not_yet.fail, FailureInfo::SystemFailure);
        assert!(
            not_yet.text.contains("not valid before 2031"),
            "{}",
            not_yet.text
        );
        let expired = rejection_for(&ServiceError::CertificateExpired);
        assert_eq!(expired.fail, FailureInfo::SystemFailure);
    }

    #[test]
    fn media_type_matching() {
        let mut h = HeaderMap::new();
        assert!(!has_media_type(&h, TIMESTAMP_QUERY));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/Timestamp-Query; charset=binary"),
        );
        assert!(has_media_type(&h, TIMESTAMP_QUERY));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        assert!(!has_media_type(&h, TIMESTAMP_QUERY));
    }
}
