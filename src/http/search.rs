//! `GET /v1/events?...`: the event search ([`crate::chain::index`]), in JSON pages or as
//! one CSV stream.
//!
//! Filters (each optional, all must match, exact text): `agency`, `auditor`, `action`,
//! `subject`, `subject_prefix`; `from`/`to` on occurred_at and `received_from`/
//! `received_to` on the appliance's receive time (RFC 3339; from inclusive, to
//! exclusive). `order=newest` (default) or `oldest`; `limit` 1 to 1,000 (default 100);
//! `cursor` from the previous page. An empty parameter is no filter (as an HTML form sends
//! it); an unknown parameter is refused, so a misspelt filter never widens an answer.
//!
//! JSON: `{"events": [{index, leaf_hash, proof, the event's fields}], "next_cursor"}`;
//! `next_cursor` is present while there may be more (a page may hold fewer than `limit`
//! events when the search examined its budget of candidates: go on with the cursor).
//! `Accept: text/csv` or `format=csv` streams every page of the result as CSV.
//!
//! Under mutual TLS, a client whose certificate names an agency sees only that agency's
//! events, unless its identity is listed in `http.tls.auditors_of_all`.

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::value::RawValue;

use super::limits::ClientInfo;
use super::{AppState, HttpError};
use crate::chain::event::{parse_rfc3339_ns, Action, StoredEvent};
use crate::chain::index::{self, IndexError, Order, Page};
use crate::service::ServiceError;

/// The default page size.
pub const DEFAULT_LIMIT: usize = 100;

/// The query parameters of `GET /v1/events` (and of the console's search form), as sent.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// The agency.
    pub agency: Option<String>,
    /// The auditor.
    pub auditor: Option<String>,
    /// The action.
    pub action: Option<String>,
    /// The subject.
    pub subject: Option<String>,
    /// The start of the subject.
    pub subject_prefix: Option<String>,
    /// occurred_at at or after (RFC 3339).
    pub from: Option<String>,
    /// occurred_at before (RFC 3339).
    pub to: Option<String>,
    /// Received at or after (RFC 3339).
    pub received_from: Option<String>,
    /// Received before (RFC 3339).
    pub received_to: Option<String>,
    /// `newest` (default) or `oldest`.
    pub order: Option<String>,
    /// Events per page, 1 to 1,000; default 100.
    pub limit: Option<String>,
    /// Where to go on (a previous page's `next_cursor`).
    pub cursor: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// One event of an answer.
#[derive(Debug, Clone)]
pub struct SearchHit {
    /// Its index.
    pub index: u64,
    /// Its leaf hash, hex.
    pub leaf_hash: String,
    /// The event as stored.
    pub event: StoredEvent,
}

/// One page of an answer.
#[derive(Debug, Clone, Default)]
pub struct SearchAnswer {
    /// The events, in the order asked.
    pub events: Vec<SearchHit>,
    /// Where the next page starts, while there may be more.
    pub next_cursor: Option<String>,
    /// Events below this index were pruned before the index was built and are not
    /// searched (0: all are).
    pub searched_from: u64,
}

/// A parsed search: filters, order, page size, cursor.
#[derive(Debug, Clone)]
struct Search {
    query: index::Query,
    order: Order,
    limit: usize,
    cursor: Option<String>,
    csv: bool,
}

/// The text of a parameter, `None` when absent or empty.
fn given(p: &Option<String>) -> Option<String> {
    p.as_deref().filter(|s| !s.is_empty()).map(str::to_owned)
}

fn time_ns(name: &'static str, p: &Option<String>) -> Result<Option<i64>, HttpError> {
    given(p)
        .map(|s| parse_rfc3339_ns(name, &s).map_err(|e| HttpError::bad_request(e.to_string())))
        .transpose()
}

/// Unix ms from Unix ns, rounded up: a receive time (whole ms) is at or after `ns`
/// exactly when it is at or after this.
fn ceil_ms(ns: i64) -> u64 {
    u64::try_from(ns.div_euclid(1_000_000) + i64::from(ns.rem_euclid(1_000_000) != 0)).unwrap_or(0)
}

fn parse(p: &SearchParams, headers: &HeaderMap) -> Result<Search, HttpError> {
    let action = given(&p.action);
    if let Some(a) = &action {
        Action::parse(a).map_err(|e| HttpError::bad_request(e.to_string()))?;
    }
    let order = match given(&p.order).as_deref() {
        None | Some("newest") => Order::NewestFirst,
        Some("oldest") => Order::OldestFirst,
        Some(other) => {
            return Err(HttpError::bad_request(format!(
                "order: {other:?} is neither newest nor oldest"
            )))
        }
    };
    let limit = match given(&p.limit) {
        None => DEFAULT_LIMIT,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=index::MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                HttpError::bad_request(format!(
                    "limit: {s:?} is not a whole number from 1 to {}",
                    index::MAX_LIMIT
                ))
            })?,
    };
    let csv = match given(&p.format).as_deref() {
        Some("csv") => true,
        Some("json") => false,
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',').any(|t| {
                    t.split(';')
                        .next()
                        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/csv"))
                })
            }),
        Some(other) => {
            return Err(HttpError::bad_request(format!(
                "format: {other:?} is neither json nor csv"
            )))
        }
    };
    let query = index::Query {
        agency: given(&p.agency),
        auditor: given(&p.auditor),
        action,
        subject: given(&p.subject),
        subject_prefix: given(&p.subject_prefix),
        occurred_from_ns: time_ns("from", &p.from)?,
        occurred_to_ns: time_ns("to", &p.to)?,
        received_from_ms: time_ns("received_from", &p.received_from)?.map(ceil_ms),
        received_to_ms: time_ns("received_to", &p.received_to)?.map(ceil_ms),
    };
    Ok(Search {
        query,
        order,
        limit,
        cursor: given(&p.cursor),
        csv,
    })
}

/// Limits `search` to what `client` may see: under mutual TLS, an identity not listed in
/// `auditors_of_all` sees only its own agency's events.
fn scope(
    state: &AppState,
    search: &mut Search,
    client: Option<&ClientInfo>,
) -> Result<(), HttpError> {
    let Some(id) = client.and_then(|c| c.identity.as_deref()) else {
        return Ok(());
    };
    if state.auditors_of_all.iter().any(|a| a == id) {
        return Ok(());
    }
    match &search.query.agency {
        Some(a) if a != id => Err(HttpError::api(
            StatusCode::FORBIDDEN,
            format!(
                "the client certificate of {id:?} may search only agency {id:?}'s events \
                 (an auditor of all agencies is listed in http.tls.auditors_of_all)"
            ),
        )),
        _ => {
            search.query.agency = Some(id.to_owned());
            Ok(())
        }
    }
}

/// Whether `client` may see events of `agency` (the scoping of [`scope`], for one event).
pub fn may_see(state: &AppState, client: Option<&ClientInfo>, agency: &str) -> bool {
    match client.and_then(|c| c.identity.as_deref()) {
        None => true,
        Some(id) => id == agency || state.auditors_of_all.iter().any(|a| a == id),
    }
}

/// The HTTP answer for a search that failed.
fn search_error(e: ServiceError) -> HttpError {
    match e {
        ServiceError::Search(IndexError::BadCursor(why)) => {
            HttpError::bad_request(format!("cursor: {why}"))
        }
        ServiceError::SearchOff => HttpError::not_found(ServiceError::SearchOff.to_string()),
        ServiceError::Search(e @ IndexError::Behind { .. }) => {
            HttpError::api(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).retry_after(5)
        }
        ServiceError::Search(e @ IndexError::Archive { .. }) => {
            tracing::error!(error = %e, "a search needed events the archive cannot give now");
            HttpError::api(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).retry_after(5)
        }
        other => other.into(),
    }
}

/// Runs one page of `search` on a blocking thread; pruned bundles are read back from the
/// archive.
async fn run_page(
    state: &AppState,
    search: &Search,
    cursor: Option<String>,
) -> Result<Page, HttpError> {
    let chain = state.chain.clone();
    let bucket = state.archive_bucket.clone();
    let handle = tokio::runtime::Handle::current();
    let (query, order, limit) = (search.query.clone(), search.order, search.limit);
    tokio::task::spawn_blocking(move || {
        let log = chain.log().clone();
        let pruned = |bundle: u64| -> Result<Vec<Vec<u8>>, IndexError> {
            let archive = |detail: String| IndexError::Archive { bundle, detail };
            let bucket = bucket
                .as_ref()
                .ok_or_else(|| archive("no archive is configured".into()))?;
            handle
                .block_on(crate::archive::pruned_bundle(bucket, &log, bundle))
                .map_err(|e| archive(e.to_string()))
        };
        chain.search(&query, order, limit, cursor.as_deref(), &pruned)
    })
    .await
    .map_err(|e| HttpError::from(ServiceError::Chain(format!("search task failed: {e}"))))?
    .map_err(search_error)
    .inspect(|page| {
        tracing::debug!(
            events = page.hits.len(),
            examined = page.examined,
            more = page.next_cursor.is_some(),
            "search page"
        );
    })
}

/// Runs one page of a search as `GET /v1/events` does, scoped to `client`'s identity under
/// mutual TLS.
pub async fn search(
    state: &AppState,
    params: &SearchParams,
    client: Option<&ClientInfo>,
) -> Result<SearchAnswer, HttpError> {
    let mut s = parse(params, &HeaderMap::new())?;
    scope(state, &mut s, client)?;
    let page = run_page(state, &s, s.cursor.clone()).await?;
    Ok(answer(page))
}

fn answer(page: Page) -> SearchAnswer {
    SearchAnswer {
        events: page
            .hits
            .into_iter()
            .map(|h| SearchHit {
                index: h.index,
                leaf_hash: hex::encode(h.leaf_hash),
                event: h.event,
            })
            .collect(),
        next_cursor: page.next_cursor,
        searched_from: page.searched_from,
    }
}

/// An event of a JSON answer: where its proof is, and its fields as `GET /v1/events/{i}`
/// shows them.
#[derive(Serialize)]
struct Item<'a> {
    index: u64,
    leaf_hash: &'a str,
    proof: String,
    action: std::borrow::Cow<'a, str>,
    agency: &'a str,
    auditor: &'a str,
    subject: &'a str,
    occurred_at: String,
    received_at: String,
    data_sha256: String,
    salt: String,
    details: &'a RawValue,
}

fn item(h: &SearchHit) -> Item<'_> {
    let v = h.event.view();
    Item {
        index: h.index,
        leaf_hash: &h.leaf_hash,
        proof: format!("/v1/events/{}", h.index),
        action: v.action,
        agency: v.agency,
        auditor: v.auditor,
        subject: v.subject,
        occurred_at: v.occurred_at,
        received_at: v.received_at,
        data_sha256: v.data_sha256,
        salt: v.salt,
        details: v.details,
    }
}

#[derive(Serialize)]
struct JsonAnswer<'a> {
    events: Vec<Item<'a>>,
    next_cursor: Option<&'a str>,
    #[serde(skip_serializing_if = "is_zero")]
    searched_from: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `GET /v1/events?...`
pub async fn get_events(
    State(state): State<AppState>,
    client: Option<Extension<ClientInfo>>,
    headers: HeaderMap,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, HttpError> {
    let Query(params) = params.map_err(|e| HttpError::bad_request(e.body_text()))?;
    let mut s = parse(&params, &headers)?;
    scope(&state, &mut s, client.as_ref().map(|c| &c.0))?;
    if s.csv {
        return csv_stream(state, s).await;
    }
    let a = answer(run_page(&state, &s, s.cursor.clone()).await?);
    Ok(Json(JsonAnswer {
        events: a.events.iter().map(item).collect(),
        next_cursor: a.next_cursor.as_deref(),
        searched_from: a.searched_from,
    })
    .into_response())
}

/// The CSV header row.
const CSV_COLUMNS: [&str; 12] = [
    "index",
    "leaf_hash",
    "received_at",
    "occurred_at",
    "agency",
    "auditor",
    "action",
    "subject",
    "data_sha256",
    "salt",
    "details",
    "proof",
];

fn csv_rows(hits: &[SearchHit], header: bool) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(hits.len() * 300 + 128));
    if header {
        w.write_record(CSV_COLUMNS)?;
    }
    for h in hits {
        let i = item(h);
        w.write_record([
            i.index.to_string().as_str(),
            i.leaf_hash,
            &i.received_at,
            &i.occurred_at,
            i.agency,
            i.auditor,
            &i.action,
            i.subject,
            &i.data_sha256,
            &i.salt,
            i.details.get(),
            &i.proof,
        ])?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// Every page of `s` as one CSV body, page after page as the client reads. The first page
/// is run before the answer starts, so that a bad cursor or an unavailable index is a
/// proper error status; a failure after that cuts the body off (the client sees an
/// incomplete transfer, never a short file that looks whole).
async fn csv_stream(state: AppState, s: Search) -> Result<Response, HttpError> {
    let mut search = s;
    search.limit = index::MAX_LIMIT;
    let first = run_page(&state, &search, search.cursor.clone()).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut page = first;
        let mut header = true;
        loop {
            let rows = answer(std::mem::take(&mut page));
            let bytes = csv_rows(&rows.events, header).map_err(std::io::Error::other);
            header = false;
            let failed = bytes.is_err();
            if tx.send(bytes.map(Bytes::from)).await.is_err() || failed {
                return;
            }
            let Some(cursor) = rows.next_cursor else {
                return;
            };
            match run_page(&state, &search, Some(cursor)).await {
                Ok(p) => page = p,
                Err(e) => {
                    tracing::error!(error = ?e, "a CSV search stopped part way; the body is cut off");
                    let _ = tx
                        .send(Err(std::io::Error::other("the search failed part way")))
                        .await;
                    return;
                }
            }
        }
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8; header=present"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"events.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}
