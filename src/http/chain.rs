//! HTTP routes of the event chain: events in; blocks, checkpoint, tiles and proofs out.
//!
//! Errors are JSON `{"error": "..."}` with a 4xx naming the problem (400 malformed JSON,
//! 413 too large, 415 wrong media type, 422 a field breaks a rule, 404 not there (yet)),
//! or 503 when the store cannot answer (the detail goes to the log).
//!
//! An event is stored as sent or refused: a repeated field, or a repeated key anywhere in
//! `details`, is a 422 naming it (`details.x.y: the key "y" appears more than once ...`), and
//! `details` keeps every number's text ([`crate::chain::event`] says why and how). The
//! event is shown back with its details byte for byte as stored.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use super::limits::ClientInfo;
use super::{has_media_type, AppState, HttpError};
use crate::chain::block::SealedBlock;
use crate::chain::event::{Event, EventInput, EventView};
use crate::chain::log::LogError;
use crate::chain::tlog;
use crate::service::chain::EventProof;
use crate::service::ServiceError;

// What the console's search page (`/ui/`) calls.
pub use super::search::{search, SearchAnswer, SearchParams};

/// Largest `POST /v1/events` body: an event with 8 KiB of details, escaped, fits.
pub const MAX_EVENT_BODY_BYTES: usize = 64 * 1024;
/// Most events in one batch request.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Media type of newline-delimited JSON batches.
pub const NDJSON: &str = "application/x-ndjson";

impl From<ServiceError> for HttpError {
    fn from(e: ServiceError) -> Self {
        tracing::error!(error = %e, "event chain request failed");
        if matches!(&e, ServiceError::Log(l) if l.is_storage_full()) {
            return HttpError::api(
                StatusCode::INSUFFICIENT_STORAGE,
                "the appliance's storage is full: nothing of this request was stored",
            )
            .retry_after(60);
        }
        HttpError::api(
            StatusCode::SERVICE_UNAVAILABLE,
            "the event store cannot answer now; try again later",
        )
        .retry_after(1)
    }
}

/// The 413 answer for a body over `max` bytes (refused by the body-limit layer).
pub fn body_too_large(max: usize) -> Response {
    HttpError::api(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than {max} bytes"),
    )
    .into_response()
}

/// The JSON decoder's error: 400 for broken syntax, 422 for a well-formed value of the
/// wrong shape (a missing or unknown field, a wrong type).
fn json_error(prefix: &str, e: &serde_json::Error) -> HttpError {
    use serde_json::error::Category;
    let status = match e.classify() {
        Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
        Category::Syntax | Category::Eof | Category::Io => StatusCode::BAD_REQUEST,
    };
    let what = if status == StatusCode::BAD_REQUEST {
        "malformed JSON: "
    } else {
        ""
    };
    HttpError::api(status, format!("{prefix}{what}{e}"))
}

/// Decodes and checks one event; errors name the field (`prefix` locates it in a batch).
fn parse_event(text: &str, prefix: &str) -> Result<Event, HttpError> {
    let input: EventInput = serde_json::from_str(text).map_err(|e| json_error(prefix, &e))?;
    input
        .validate()
        .map_err(|e| HttpError::api(StatusCode::UNPROCESSABLE_ENTITY, format!("{prefix}{e}")))
}

fn require_json(headers: &HeaderMap, ndjson_too: bool) -> Result<(), HttpError> {
    if has_media_type(headers, "application/json")
        || (ndjson_too && has_media_type(headers, NDJSON))
    {
        return Ok(());
    }
    Err(HttpError::api(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        if ndjson_too {
            format!("Content-Type must be application/json or {NDJSON}")
        } else {
            "Content-Type must be application/json".into()
        },
    ))
}

/// With a client certificate, every event's agency must be the caller's identity.
fn check_agency(client: Option<&ClientInfo>, events: &[Event]) -> Result<(), HttpError> {
    let Some(identity) = client.and_then(|c| c.identity.as_deref()) else {
        return Ok(());
    };
    match events.iter().position(|e| e.agency != identity) {
        None => Ok(()),
        Some(i) => Err(HttpError::api(
            StatusCode::FORBIDDEN,
            format!(
                "{}agency {:?} is not the caller's certificate identity {identity:?}",
                if events.len() > 1 {
                    format!("events[{i}]: ")
                } else {
                    String::new()
                },
                events[i].agency
            ),
        )),
    }
}

fn utf8(body: &[u8]) -> Result<&str, HttpError> {
    std::str::from_utf8(body).map_err(|_| HttpError::bad_request("the body is not UTF-8"))
}

/// `POST /v1/events`: one event; answers once it is durable.
pub async fn post_event(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientInfo>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, HttpError> {
    require_json(&headers, false)?;
    let event = parse_event(utf8(&body)?, "")?;
    check_agency(client.as_deref(), std::slice::from_ref(&event))?;
    let appended = state.chain.append(vec![event]).await?;
    let a = appended
        .first()
        .ok_or_else(|| HttpError::api(StatusCode::INTERNAL_SERVER_ERROR, "nothing appended"))?;
    Ok(Json(
        json!({ "index": a.index, "leaf_hash": hex::encode(a.leaf_hash) }),
    ))
}

/// `POST /v1/events/batch`: a JSON array or NDJSON of up to 10,000 events, all checked
/// before any is stored; answers once all are durable.
pub async fn post_batch(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientInfo>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, HttpError> {
    require_json(&headers, true)?;
    let text = utf8(&body)?;
    let mut events = Vec::new();
    let too_many = || {
        HttpError::api(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a batch holds at most {MAX_BATCH_EVENTS} events"),
        )
    };
    if has_media_type(&headers, NDJSON) {
        for (n, line) in text.split('\n').enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            if events.len() == MAX_BATCH_EVENTS {
                return Err(too_many());
            }
            events.push(parse_event(line, &format!("line {}: ", n + 1))?);
        }
    } else {
        let items: Vec<&serde_json::value::RawValue> =
            serde_json::from_str(text).map_err(|e| json_error("", &e))?;
        if items.len() > MAX_BATCH_EVENTS {
            return Err(too_many());
        }
        for (i, item) in items.iter().enumerate() {
            events.push(parse_event(item.get(), &format!("events[{i}]: "))?);
        }
    }
    if events.is_empty() {
        return Err(HttpError::api(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the batch holds no event",
        ));
    }
    check_agency(client.as_deref(), &events)?;
    let appended = state.chain.append(events).await?;
    Ok(Json(json!({
        "first_index": appended.first().map(|a| a.index),
        "count": appended.len(),
        "leaf_hashes": appended.iter().map(|a| hex::encode(a.leaf_hash)).collect::<Vec<_>>(),
    })))
}

/// A sealed block as JSON: its fields, and the exact header bytes, signature and token.
pub fn block_json(b: &SealedBlock) -> Value {
    let h = &b.header;
    json!({
        "height": h.height,
        "prev_hash": hex::encode(h.prev_hash),
        "tree_size": h.tree_size,
        "root_hash": hex::encode(h.root),
        "first_index": h.first_index,
        "event_count": h.event_count,
        "sealed_at_ms": h.sealed_at_ms,
        "key_id": hex::encode(h.key_id),
        "header_hash": hex::encode(h.hash()),
        "header": B64.encode(h.encode()),
        "signature": B64.encode(&b.signature),
        "token": B64.encode(&b.token),
    })
}

fn parse_u64(what: &str, s: &str) -> Result<u64, HttpError> {
    s.parse()
        .map_err(|_| HttpError::bad_request(format!("{what} must be a non-negative integer")))
}

/// `GET /v1/blocks/latest`
pub async fn get_latest_block(State(state): State<AppState>) -> Result<Json<Value>, HttpError> {
    let p = state
        .chain
        .published()
        .ok_or_else(|| HttpError::not_found("no block sealed yet"))?;
    Ok(Json(block_json(&p.block)))
}

/// `GET /v1/blocks/{height}`
pub async fn get_block(
    State(state): State<AppState>,
    Path(height): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let height = parse_u64("height", &height)?;
    let chain = state.chain.clone();
    let block = tokio::task::spawn_blocking(move || chain.block(height))
        .await
        .map_err(|e| ServiceError::Chain(format!("block task failed: {e}")))??
        .ok_or_else(|| HttpError::not_found(format!("no block {height}")))?;
    Ok(Json(block_json(&block)))
}

/// The answer of `GET /v1/events/{index}` (and the bundle the console's event page
/// embeds). A struct, not a `Value`, so that the event's details are written exactly as
/// stored; the members are in key order, as a `Value` would write them.
#[derive(serde::Serialize)]
pub struct EventBundle<'a> {
    block: Value,
    chain_key: String,
    checkpoint: &'a str,
    event: EventView<'a>,
    inclusion_proof: Vec<String>,
    leaf: String,
    leaf_hash: String,
    tlog_proof: String,
    tree_size: u64,
    verifier_key: String,
}

/// The proof bundle of `p`, as `GET /v1/events/{index}` answers it.
pub fn event_bundle<'a>(state: &AppState, p: &'a EventProof) -> EventBundle<'a> {
    EventBundle {
        block: block_json(&p.block),
        chain_key: B64.encode(state.chain.public_key_der()),
        checkpoint: &p.proof.checkpoint,
        event: p.event.view(),
        inclusion_proof: p.proof.path.iter().map(|h| B64.encode(h)).collect(),
        leaf: B64.encode(&p.leaf),
        leaf_hash: hex::encode(tlog::leaf_hash(&p.leaf)),
        tlog_proof: p.proof.format(),
        tree_size: p.block.header.tree_size,
        verifier_key: state.chain.verifier_key(),
    }
}

/// Event `index` (its text as in the path) with its proof against the last block, if
/// `client` may see it: read back from the archive when pruned locally; 400 for a bad
/// index, 404 when there is no such event, it is not sealed yet or (under mutual TLS) it
/// is another agency's, 503 when the archive cannot give it now.
pub async fn event_proof(
    state: &AppState,
    client: Option<&ClientInfo>,
    index: &str,
) -> Result<EventProof, HttpError> {
    let index = parse_u64("index", index)?;
    let chain = state.chain.clone();
    let proof = tokio::task::spawn_blocking(move || chain.event_proof(index))
        .await
        .map_err(|e| ServiceError::Chain(format!("proof task failed: {e}")))?;
    let proof = match proof {
        Err(ServiceError::Log(LogError::Pruned { bundle })) => {
            let leaves = pruned_bundle(state, bundle).await?;
            let leaf = usize::try_from(index % 256)
                .ok()
                .and_then(|i| leaves.into_iter().nth(i));
            let chain = state.chain.clone();
            tokio::task::spawn_blocking(move || chain.event_proof_with(index, leaf))
                .await
                .map_err(|e| ServiceError::Chain(format!("proof task failed: {e}")))??
        }
        other => other?,
    };
    let Some(p) = proof else {
        if index < state.chain.log().size() {
            return Err(HttpError::not_found(format!(
                "event {index} is stored but not sealed yet; retry after the next seal"
            ))
            .retry_after(1));
        }
        return Err(HttpError::not_found(format!("no event {index}")));
    };
    // Under mutual TLS an agency sees its own events only (as its searches do).
    if !super::search::may_see(state, client, &p.event.event.agency) {
        return Err(HttpError::not_found(format!(
            "no event {index} among the events this client certificate may see"
        )));
    }
    Ok(p)
}

/// `GET /v1/events/{index}`: the event with a proof bundle that verifies offline.
pub async fn get_event(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientInfo>>,
    Path(index): Path<String>,
) -> Result<Response, HttpError> {
    let p = event_proof(&state, client.as_ref().map(|c| &c.0), &index).await?;
    Ok(Json(event_bundle(&state, &p)).into_response())
}

/// Complete bundle `n`, pruned from the local disk, read back from the archive and checked
/// against the stored hashes; 503 when the archive cannot give it now.
async fn pruned_bundle(state: &AppState, n: u64) -> Result<Vec<Vec<u8>>, HttpError> {
    let unavailable = |why: String| {
        tracing::error!(bundle = n, error = %why, "a pruned bundle could not be read from the archive");
        HttpError::api(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "events {}..{} were moved to the archive, which cannot give them now; try again later",
                n * 256,
                n * 256 + 256
            ),
        )
        .retry_after(5)
    };
    let Some(bucket) = &state.archive_bucket else {
        return Err(unavailable("no archive is configured".into()));
    };
    crate::archive::pruned_bundle(bucket, state.chain.log(), n)
        .await
        .map_err(|e| unavailable(e.to_string()))
}

/// The query of `GET /v1/proofs/consistency`.
#[derive(Debug, serde::Deserialize)]
pub struct ConsistencyQuery {
    from: u64,
    to: u64,
}

/// `GET /v1/proofs/consistency?from=N&to=M`
pub async fn get_consistency(
    State(state): State<AppState>,
    query: Result<Query<ConsistencyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    let Query(q) = query.map_err(|e| {
        HttpError::bad_request(format!("need ?from=N&to=M with non-negative integers: {e}"))
    })?;
    let sealed = state.chain.sealed_size();
    if q.from > q.to || q.to > sealed {
        return Err(HttpError::bad_request(format!(
            "need 0 <= from <= to <= {sealed} (the sealed tree size)"
        )));
    }
    let chain = state.chain.clone();
    let proof = tokio::task::spawn_blocking(move || chain.consistency(q.from, q.to))
        .await
        .map_err(|e| ServiceError::Chain(format!("proof task failed: {e}")))??;
    Ok(Json(json!({
        "from": q.from,
        "to": q.to,
        "proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
    })))
}

/// `GET /checkpoint`: the latest signed checkpoint (C2SP tlog-tiles).
pub async fn get_checkpoint(State(state): State<AppState>) -> Result<Response, HttpError> {
    let p = state
        .chain
        .published()
        .ok_or_else(|| HttpError::not_found("no checkpoint yet"))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        p.checkpoint.clone(),
    )
        .into_response())
}

/// `GET /tile/...`: C2SP tlog-tiles hash tiles and entry bundles.
pub async fn get_tile(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Result<Response, HttpError> {
    let full_path = format!("tile/{path}");
    let (kind, tile) = tlog::parse_tile_path(&full_path)
        .map_err(|e| HttpError::not_found(format!("{full_path}: {e}")))?;
    let chain = state.chain.clone();
    let bytes = match tokio::task::spawn_blocking(move || chain.tile(kind, &tile))
        .await
        .map_err(|e| ServiceError::Chain(format!("tile task failed: {e}")))?
    {
        Err(ServiceError::Log(LogError::Pruned { bundle })) => {
            let leaves = pruned_bundle(&state, bundle).await?;
            let width = usize::from(tile.width());
            let refs: Vec<&[u8]> = leaves.iter().take(width).map(Vec::as_slice).collect();
            Some(tlog::encode_entry_bundle(&refs).map_err(|e| ServiceError::Chain(e.to_string()))?)
        }
        other => other?,
    }
    .ok_or_else(|| HttpError::not_found(format!("{full_path} is beyond the published tree")))?;
    let cache = if tile.is_partial() {
        "no-cache"
    } else {
        "public, max-age=31536000, immutable"
    };
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        bytes,
    )
        .into_response())
}
