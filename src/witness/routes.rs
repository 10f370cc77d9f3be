//! The witness's HTTP API ([`router`]): c2sp.org/tlog-witness `add-checkpoint`, and what
//! the data center reads about the appliances it follows.
//!
//! - `POST /add-checkpoint` — 200 with the cosignature line(s) (`text/plain`); refusals
//!   with the spec's statuses (400, 403, 404, 409 with `<size>\n` as `text/x.tlog.size`,
//!   422) and a one-line `text/plain` reason; 413 over the body cap; 503 when the HSM or
//!   the store fails (the detail goes to the log).
//! - `GET /status` — JSON: the witness (name, verifier key) and, per appliance, origin,
//!   last size, root, cosigned time, age, staleness, evidence counts by kind (`alerts`) and
//!   posts without a valid signature since start.
//! - `GET /status/{origin}` — one appliance (the origin may contain `/`), with the earlier
//!   cosigned checkpoints kept and its evidence records in full; 404 if unknown.
//! - `GET /metrics` — Prometheus text (0.0.4): cosigned checkpoints, refusals by reason,
//!   posts without a valid signature per appliance, appliances registered and stale,
//!   evidence by kind, store bytes, the listener's connections, process metrics.
//! - `GET /ui/` and below — the web console ([`crate::witness::ui`]): the same, as pages.
//! - `GET /healthz` (the process is up), `GET /readyz` (HSM and store; 503 when not).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use crate::witness::protocol::{
    format_size_body, ADD_CHECKPOINT_PATH, COSIGNATURES_MEDIA_TYPE, SIZE_MEDIA_TYPE,
};
use crate::witness::service::{LogStatus, Refusal, WitnessError, WitnessService};
use crate::witness::store::{Evidence, EvidenceKind, LogState};
use crate::witness::ui;

use crate::http::metrics::{self, Counter, Registry};

/// The witness's counters (since start; alert counts come from the store), and the
/// registry they are exposed from.
#[derive(Debug)]
pub struct WitnessMetrics {
    registry: Registry,
    cosigned: Counter,
    refused: [Counter; Refusal::REASONS.len()],
    failed: Counter,
}

impl Default for WitnessMetrics {
    fn default() -> Self {
        let mut r = Registry::default();
        WitnessMetrics {
            cosigned: metrics::counter(
                &mut r,
                "auditstamp_witness_cosigned_total",
                "Checkpoints cosigned (since start).",
            ),
            refused: metrics::counters_by(
                &mut r,
                "auditstamp_witness_refused_total",
                "Submissions refused, by reason (since start).",
                "reason",
                Refusal::REASONS,
            ),
            failed: metrics::counter(
                &mut r,
                "auditstamp_witness_failed_total",
                "Submissions not handled: HSM or store failure (since start).",
            ),
            registry: r,
        }
    }
}

impl WitnessMetrics {
    /// Counts one cosigned checkpoint.
    pub fn cosigned(&self) {
        self.cosigned.inc();
    }

    /// Counts one refusal by its reason.
    pub fn refused(&self, reason: &str) {
        if let Some(i) = Refusal::REASONS.iter().position(|r| *r == reason) {
            self.refused[i].inc();
        }
    }

    /// Checkpoints cosigned since start.
    pub fn cosigned_count(&self) -> u64 {
        self.cosigned.get()
    }

    /// Counts one request the witness could not handle (HSM or store failure).
    pub fn failed(&self) {
        self.failed.inc();
    }
}

/// What the witness's handlers share.
#[derive(Debug, Clone)]
pub struct WitnessState {
    /// The witness.
    pub service: Arc<WitnessService>,
    /// Its counters.
    pub metrics: Arc<WitnessMetrics>,
    /// The listener's connection counters, also shown by `GET /metrics`.
    pub connections: Arc<crate::http::server::ConnectionCounts>,
}

impl WitnessState {
    /// The state of a server in front of `service`, its counters at zero.
    pub fn new(service: Arc<WitnessService>) -> Self {
        WitnessState {
            service,
            metrics: Arc::default(),
            connections: Arc::default(),
        }
    }
}

/// HTTP limits of the witness.
#[derive(Debug, Clone, Copy)]
pub struct WitnessHttpSettings {
    /// Largest `POST /add-checkpoint` body, bytes.
    pub max_body_bytes: usize,
    /// Longest time a request may take.
    pub request_timeout: Duration,
}

/// Every route of the witness.
pub fn router(state: WitnessState, settings: WitnessHttpSettings) -> Router {
    let add = Router::new()
        .route(ADD_CHECKPOINT_PATH, post(post_add_checkpoint))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            settings.max_body_bytes,
        ))
        .layer(axum::middleware::map_response(
            |mut resp: Response| async move {
                // The rest of an over-long body is never read: the connection cannot carry
                // another request.
                if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    resp.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                resp
            },
        ));
    Router::new()
        .merge(add)
        .route("/status", get(get_status))
        .route("/status/{*origin}", get(get_status_of))
        .route("/metrics", get(get_metrics))
        .route("/ui", get(ui::redirect))
        .route("/ui/", get(ui::overview))
        .route("/ui/log/{*origin}", get(ui::log_page))
        .route("/ui/evidence/{*rest}", get(ui::evidence_page))
        .route("/ui/assets/{name}", get(ui::asset))
        .route("/ui/{*rest}", get(ui::not_found))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::disable())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            settings.request_timeout,
        ))
        .with_state(state)
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// The answer to a refusal: the spec's status, and for a 409 the size last cosigned.
fn refusal_response(r: &Refusal) -> Response {
    let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
    match r.conflict_size() {
        Some(size) => text(status, SIZE_MEDIA_TYPE, format_size_body(size)),
        None => text(status, "text/plain; charset=utf-8", format!("{r}\n")),
    }
}

async fn post_add_checkpoint(State(state): State<WitnessState>, body: Bytes) -> Response {
    match state.service.add_checkpoint(&body).await {
        Ok(lines) => {
            state.metrics.cosigned();
            text(StatusCode::OK, COSIGNATURES_MEDIA_TYPE, lines)
        }
        Err(WitnessError::Refused(r)) => {
            tracing::debug!(reason = r.reason(), error = %r, "checkpoint refused");
            state.metrics.refused(r.reason());
            refusal_response(&r)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot cosign");
            state.metrics.failed();
            let mut resp = text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                "the witness cannot cosign now; try again later\n".into(),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1));
            resp
        }
    }
}

fn status_json(s: &LogStatus) -> Value {
    let alerts: serde_json::Map<String, Value> = EvidenceKind::ALL
        .iter()
        .map(|k| (k.name().to_owned(), json!(s.evidence.count(*k))))
        .collect();
    json!({
        "origin": s.log.origin,
        "url": s.log.url,
        "size": s.state.as_ref().map(|st| st.size),
        "root_hash": s.state.as_ref().map(|st| B64.encode(st.root)),
        "cosigned_at": s.state.as_ref().map(|st| st.cosigned_at),
        "age_seconds": s.age_secs,
        "stale": s.stale,
        "checkpoint": s.state.as_ref().map(|st| st.checkpoint.clone()),
        "alerts": alerts,
        "evidence_damaged": s.evidence.damaged,
        "unsigned_since_start": s.unsigned,
    })
}

fn cosigned_json(st: &LogState) -> Value {
    json!({
        "size": st.size,
        "root_hash": B64.encode(st.root),
        "cosigned_at": st.cosigned_at,
        "checkpoint": st.checkpoint,
    })
}

/// An evidence record as JSON (`/status/{origin}` and `auditstamp witness evidence`): its
/// kind, when it was first seen, both checkpoint notes as signed, the sizes and the proof
/// (base64 hashes).
pub fn evidence_json(e: &Evidence) -> Value {
    json!({
        "kind": e.kind.name(),
        "seen_at": e.seen_at,
        "cosigned_size": e.cosigned_size,
        "cosigned": e.cosigned,
        "size": e.size,
        "submitted": e.submitted,
        "old_size": e.old_size,
        "proof": e.proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
    })
}

fn witness_json(service: &WitnessService) -> Value {
    json!({
        "name": service.cosigner().name,
        "verifier_key": service.verifier_key(),
        "stale_after_seconds": service.settings().stale_after_secs,
    })
}

async fn get_status(State(state): State<WitnessState>) -> Response {
    let appliances: Vec<Value> = state.service.status().iter().map(status_json).collect();
    Json(json!({
        "witness": witness_json(&state.service),
        "appliances": appliances,
    }))
    .into_response()
}

async fn get_status_of(State(state): State<WitnessState>, Path(origin): Path<String>) -> Response {
    let found = match state.service.status_of(&origin) {
        None => None,
        Some(status) => state
            .service
            .evidence_of(&origin)
            .await
            .map(|evidence| (status, evidence)),
    };
    match found {
        Some((s, Ok(evidence))) => {
            let mut body = status_json(&s);
            body["history"] = s.history.iter().map(cosigned_json).collect();
            body["evidence"] = evidence.iter().map(evidence_json).collect();
            Json(body).into_response()
        }
        Some((_, Err(e))) => {
            tracing::error!(error = %e, "cannot read evidence records");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": "the evidence records cannot be read now" })),
            )
                .into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no appliance with origin {origin:?} is registered") })),
        )
            .into_response(),
    }
}

/// The exposition text: the counters, the service's figures and the process metrics.
fn render_metrics(
    state: &WitnessState,
    disk_bytes: Option<u64>,
    record_bytes: Option<u64>,
) -> Result<String, metrics::MetricsError> {
    let summary = state.service.summary();
    let mut r = Registry::default();
    metrics::gauge_value(
        &mut r,
        "auditstamp_witness_appliances",
        "Appliances registered.",
        metrics::int(summary.registered),
    );
    metrics::gauge_value(
        &mut r,
        "auditstamp_witness_appliances_stale",
        "Appliances without a cosignature within witness.stale_after_seconds.",
        metrics::int(summary.stale),
    );
    metrics::gauge_value(
        &mut r,
        "auditstamp_witness_appliances_with_evidence",
        "Appliances with at least one evidence record.",
        metrics::int(summary.logs_with_evidence),
    );
    metrics::gauge_value(
        &mut r,
        "auditstamp_witness_evidence_damaged",
        "Evidence records found damaged (unreadable) when the witness started: restore the store from a backup.",
        metrics::int(summary.evidence_damaged),
    );
    metrics::counter_value(
        &mut r,
        "auditstamp_witness_evidence_not_kept_total",
        "Evidence not kept: its appliance had the most records kept (since start).",
        summary.evidence_not_kept,
    );
    metrics::counter_values(
        &mut r,
        "auditstamp_witness_alerts_total",
        "Evidence records kept (two checkpoints signed by an appliance that cannot both be true), by kind; never evicted.",
        "kind",
        EvidenceKind::ALL.iter().map(|k| k.name()).zip(summary.evidence),
    );
    metrics::counter_values(
        &mut r,
        "auditstamp_witness_unsigned_total",
        "Posts naming an appliance that no signature by its key verifies: refused, never stored (since start; appliances with any).",
        "origin",
        state
            .service
            .unsigned()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(log, n)| (log.origin.clone(), n)),
    );
    if let Some(b) = disk_bytes {
        metrics::gauge_value(
            &mut r,
            "auditstamp_witness_store_disk_bytes",
            "Bytes the witness store occupies on disk.",
            metrics::int(b),
        );
    }
    if let Some(b) = record_bytes {
        metrics::gauge_value(
            &mut r,
            "auditstamp_witness_store_record_bytes",
            "Bytes of the witness's stored keys and values.",
            metrics::int(b),
        );
    }
    state.connections.register(&mut r);
    metrics::process_metrics(&mut r);
    metrics::encode(&[&state.metrics.registry, &r])
}

async fn get_metrics(State(state): State<WitnessState>) -> Response {
    let service = Arc::clone(&state.service);
    let bytes = tokio::task::spawn_blocking(move || {
        let store = service.store();
        (store.disk_bytes().ok(), Some(store.record_bytes()))
    })
    .await
    .unwrap_or((None, None));
    metrics::response(render_metrics(&state, bytes.0, bytes.1))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<WitnessState>) -> Response {
    let (hsm, store) = state.service.readiness().await;
    let part = |p: &Result<(), String>| match p {
        Ok(()) => json!({ "ok": true }),
        Err(e) => json!({ "ok": false, "error": e }),
    };
    let ready = hsm.is_ok() && store.is_ok();
    let body = json!({ "ready": ready, "hsm": part(&hsm), "store": part(&store) });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
