//! The witness's web console (`/ui/`): what `/status` tells, as pages for people, rendered
//! on the server with the shared frame of [`crate::ui`] (every value escaped, no script at
//! all, the strict Content-Security-Policy on every answer).
//!
//! - `GET /ui/` — the overview: appliances registered, stale, evidence records,
//!   cosignatures since start; a chart of the cosigned times the store keeps (each
//!   appliance's latest checkpoint and the [`HISTORY`] before it), bucketed, drawn as an
//!   inline SVG; and a table of every appliance (origin, tree size, age of its last
//!   cosignature, stale, last cosigned, alerts).
//! - `GET /ui/log/{*origin}` — one appliance: its fields and checkpoint, the earlier
//!   cosigned checkpoints kept, and its evidence records, each linking to
//! - `GET /ui/evidence/{*origin}/{id}` — one evidence record in full: its kind, when it was
//!   seen, and both checkpoints the appliance signed (the one cosigned and the one
//!   submitted) side by side with their sizes and root hashes, and the proof.
//! - `GET /ui/assets/{name}` — the stylesheet; `/ui` redirects to `/ui/`; any other path
//!   under `/ui/` is a 404 page in the console's frame.
//!
//! Served on the witness's listener like `/status`, which they show.
//!
//! Its one error type is [`PageError`], answered as an error page.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use maud::{html, Markup};

use crate::chain::note::{Checkpoint, SignedNote};
use crate::ui::{age, error_page, html_response, page, time_ms, NavLink};
use crate::witness::routes::WitnessState;
use crate::witness::service::LogStatus;
use crate::witness::store::{Evidence, EvidenceKind, LogState, HISTORY};

/// The console's name in the page frame.
const CONSOLE: &str = "auditstamp witness";

/// The navigation bar of every page.
const NAV: &[NavLink<'static>] = &[
    NavLink {
        label: "Overview",
        href: "/ui/",
    },
    NavLink {
        label: "Status (JSON)",
        href: "/status",
    },
    NavLink {
        label: "Metrics",
        href: "/metrics",
    },
];

/// Bars of the cosignature chart.
const BUCKETS: u64 = 24;
/// The bucket widths the chart chooses from (seconds): the smallest whose [`BUCKETS`]
/// cover every time shown.
const BUCKET_WIDTHS: [u64; 8] = [
    60,
    5 * 60,
    15 * 60,
    3_600,
    6 * 3_600,
    86_400,
    7 * 86_400,
    30 * 86_400,
];

/// Why a page cannot be shown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PageError {
    /// No such appliance, evidence record or page (404).
    #[error("{0}")]
    NotFound(String),
    /// The request names something in a form that cannot be (400).
    #[error("{0}")]
    BadRequest(String),
    /// The store could not be read (503; the detail goes to the log).
    #[error("the witness store cannot be read now; try again later")]
    Unavailable,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = match self {
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        error_page(CONSOLE, NAV, status, &self.to_string())
    }
}

/// `/ui` → `/ui/`.
pub async fn redirect() -> Response {
    (
        StatusCode::PERMANENT_REDIRECT,
        crate::ui::security_headers(),
        [(header::LOCATION, HeaderValue::from_static("/ui/"))],
    )
        .into_response()
}

/// `/ui/assets/{name}`: the shared stylesheet (the console has no file of its own).
pub async fn asset(name: Path<String>) -> Response {
    crate::ui::asset(name, &[])
}

/// Any other path under `/ui/`.
pub async fn not_found() -> Response {
    PageError::NotFound("there is no such page in the witness console".into()).into_response()
}

/// A path segment or path with every byte but unreserved characters and `/`
/// percent-encoded, for links (an origin may hold `?`, `#`, `%` or `<`).
fn path_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The link to an appliance's page.
fn log_href(origin: &str) -> String {
    format!("/ui/log/{}", path_escape(origin))
}

/// The link to an evidence record's page.
fn evidence_href(origin: &str, e: &Evidence) -> String {
    format!(
        "/ui/evidence/{}/{}",
        path_escape(origin),
        hex::encode(e.id())
    )
}

/// The checkpoint a note carries, if it is one.
fn checkpoint_of(note: &str) -> Option<Checkpoint> {
    SignedNote::parse(note)
        .ok()
        .and_then(|n| Checkpoint::parse(&n.text).ok())
}

fn secs_ms(secs: u64) -> Option<u64> {
    secs.checked_mul(1_000)
}

fn alerts_badge(n: u64) -> Markup {
    html! {
        @if n > 0 { span.badge.bad.alerts { (n) } } @else { span.badge.ok.alerts { "0" } }
    }
}

fn stale_badge(stale: bool) -> Markup {
    html! {
        @if stale { span.badge.warn.stale { "stale" } } @else { span.badge.ok.stale { "fresh" } }
    }
}

/// What a kind of evidence means, for the auditor reading it.
fn kind_meaning(kind: EvidenceKind) -> &'static str {
    match kind {
        EvidenceKind::Fork => {
            "The appliance signed two checkpoints of the same size with different root \
             hashes: two versions of its log exist."
        }
        EvidenceKind::Rollback => {
            "The appliance signed a checkpoint smaller than the latest one this witness \
             cosigned, of another history: it went back and grew another tree."
        }
        EvidenceKind::BadProof => {
            "The appliance signed a larger checkpoint whose own consistency proof starts \
             from another root at the cosigned size: its tree does not contain the one \
             cosigned."
        }
    }
}

/// The cosignature chart: the cosigned times kept (`times`, Unix seconds), counted in
/// [`BUCKETS`] buckets ending at `now`; `None` when there are none.
fn chart(times: &[u64], now: u64) -> Option<Markup> {
    let oldest = *times.iter().min()?;
    let span = now.saturating_sub(oldest).saturating_add(1);
    let width = BUCKET_WIDTHS
        .iter()
        .copied()
        .find(|w| w.saturating_mul(BUCKETS) >= span)
        .unwrap_or(BUCKET_WIDTHS[BUCKET_WIDTHS.len() - 1]);
    let end = now.saturating_add(1);
    let start = end.saturating_sub(width.saturating_mul(BUCKETS));
    let mut counts = [0u64; BUCKETS as usize];
    let mut shown = 0u64;
    for &t in times {
        if t < start {
            continue;
        }
        // A time ahead of this server's clock (another server's) goes in the last bucket.
        let i = usize::try_from(((t - start) / width).min(BUCKETS - 1)).unwrap_or(0);
        if let Some(c) = counts.get_mut(i) {
            *c += 1;
            shown += 1;
        }
    }
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    // Drawing units: 30 per bar, 120 high for the bars, room for labels below.
    let (bar_w, plot_h, top) = (30u64, 120u64, 14u64);
    let total_w = bar_w * BUCKETS;
    let unit = bucket_name(width);
    let bars = counts.iter().enumerate().map(|(i, &n)| {
        let i = i as u64;
        let h = n * plot_h / max;
        let from = start + i * width;
        (i * bar_w + 3, top + plot_h - h, h, n, from)
    });
    Some(html! {
        svg.chart role="img" width=(total_w + 20) height=(top + plot_h + 30)
            viewBox={ "0 0 " (total_w + 20) " " (top + plot_h + 30) } {
            title { "Cosignatures kept, per " (unit) ", over the last " (age(width * BUCKETS)) }
            text.max x="0" y="11" { (max) " max" }
            line.axis x1="0" y1=(top + plot_h) x2=(total_w) y2=(top + plot_h) {}
            @for (x, y, h, n, from) in bars {
                rect.bar x=(x) y=(y) width=(bar_w - 6) height=(h) data-count=(n) {
                    title { (n) " from " (time_ms(secs_ms(from))) }
                }
            }
            text x="0" y=(top + plot_h + 16) { (time_ms(secs_ms(start))) }
            text.end x=(total_w) y=(top + plot_h + 16) { "now" }
        }
        p.muted.chart-note {
            (shown) " cosigned checkpoints, per " (unit) " over the last " (age(width * BUCKETS))
            ": the ones the witness keeps (each appliance's latest and up to " (HISTORY)
            " before it), so an appliance that submits often shows only its most recent ones."
        }
    })
}

/// A bucket width as people say it: "minute", "15 minutes", "hour", "day".
fn bucket_name(width: u64) -> String {
    match width {
        60 => "minute".into(),
        3_600 => "hour".into(),
        86_400 => "day".into(),
        604_800 => "week".into(),
        w if w % 86_400 == 0 => format!("{} days", w / 86_400),
        w if w % 3_600 == 0 => format!("{} hours", w / 3_600),
        w => format!("{} minutes", w / 60),
    }
}

/// `GET /ui/`.
pub async fn overview(State(state): State<WitnessState>) -> Response {
    let logs = state.service.status();
    let now = state.service.now();
    let stale = logs.iter().filter(|s| s.stale).count();
    let evidence: u64 = logs.iter().map(|s| s.evidence.total()).sum();
    let with_evidence = logs.iter().filter(|s| s.evidence.total() > 0).count();
    let damaged: u64 = logs.iter().map(|s| s.evidence.damaged).sum();
    let times: Vec<u64> = logs
        .iter()
        .flat_map(|s| s.state.iter().chain(s.history.iter()))
        .map(|st| st.cosigned_at)
        .collect();
    let name = &state.service.cosigner().name;
    let body = html! {
        h1 { "Witness " (name) }
        div.cards {
            div.card #registered { div.label { "Appliances" } div.value { (logs.len()) } }
            div.card #stale { div.label { "Stale" } div.value { (stale) } }
            div.card.(if evidence > 0 { "bad" } else { "ok" }) #evidence {
                div.label { "Evidence records" } div.value { (evidence) }
            }
            div.card #with-evidence {
                div.label { "Appliances with evidence" } div.value { (with_evidence) }
            }
            div.card #cosigned {
                div.label { "Cosigned since start (this server)" }
                div.value { (state.metrics.cosigned_count()) }
            }
        }
        @if damaged > 0 {
            p.error {
                (damaged) " evidence records were found damaged when the witness started: \
                 restore the store from a backup."
            }
        }
        h2 { "Cosignatures" }
        @match chart(&times, now) {
            Some(c) => (c),
            None => p.muted { "No checkpoint has been cosigned yet." },
        }
        h2 { "Appliances" }
        table.logs {
            thead { tr {
                th { "Origin" } th.num { "Tree size" } th.num { "Age" } th { "Stale" }
                th { "Last cosigned" } th.num { "Alerts" }
            } }
            tbody {
                @for s in &logs {
                    tr data-origin=(s.log.origin) {
                        td.origin { a href=(log_href(&s.log.origin)) { (s.log.origin) } }
                        td.num.size { (s.state.as_ref().map_or("—".to_owned(), |st| st.size.to_string())) }
                        td.num.age { (s.age_secs.map_or("never".to_owned(), age)) }
                        td { (stale_badge(s.stale)) }
                        td.cosigned { (time_ms(s.state.as_ref().and_then(|st| secs_ms(st.cosigned_at)))) }
                        td.num { (alerts_badge(s.evidence.total())) }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, page(CONSOLE, "Overview", NAV, &[], body))
}

/// The fields of a cosigned checkpoint, as a table row.
fn history_row(st: &LogState) -> Markup {
    html! {
        tr {
            td.num.size { (st.size) }
            td.mono { (B64.encode(st.root)) }
            td { (time_ms(secs_ms(st.cosigned_at))) }
        }
    }
}

/// The status and evidence of `origin`, or why not.
async fn log_of(
    state: &WitnessState,
    origin: &str,
) -> Result<(LogStatus, Vec<Evidence>), PageError> {
    let unknown =
        || PageError::NotFound(format!("no appliance with origin {origin:?} is registered"));
    let status = state.service.status_of(origin).ok_or_else(unknown)?;
    match state.service.evidence_of(origin).await {
        None => Err(unknown()),
        Some(Ok(evidence)) => Ok((status, evidence)),
        Some(Err(e)) => {
            tracing::error!(error = %e, %origin, "cannot read evidence records");
            Err(PageError::Unavailable)
        }
    }
}

/// `GET /ui/log/{*origin}`.
pub async fn log_page(State(state): State<WitnessState>, Path(origin): Path<String>) -> Response {
    match log_of(&state, &origin).await {
        Ok((s, evidence)) => html_response(StatusCode::OK, log_body(&s, &evidence)),
        Err(e) => e.into_response(),
    }
}

fn log_body(s: &LogStatus, evidence: &[Evidence]) -> Markup {
    let origin = &s.log.origin;
    let body = html! {
        h1 { "Appliance " span.mono { (origin) } }
        dl.fields {
            dt { "Origin" } dd.mono #origin { (origin) }
            dt { "URL" } dd { (s.log.url.as_deref().unwrap_or("—")) }
            dt { "Tree size" } dd #size { (s.state.as_ref().map_or("—".to_owned(), |st| st.size.to_string())) }
            dt { "Root hash" } dd.mono #root { (s.state.as_ref().map_or("—".to_owned(), |st| B64.encode(st.root))) }
            dt { "Last cosigned" } dd { (time_ms(s.state.as_ref().and_then(|st| secs_ms(st.cosigned_at)))) }
            dt { "Age" } dd { (s.age_secs.map_or("never cosigned".to_owned(), age)) " " (stale_badge(s.stale)) }
            dt { "Alerts" } dd #alerts {
                (alerts_badge(s.evidence.total()))
                @for k in EvidenceKind::ALL {
                    " " span.muted { (k.name()) ": " (s.evidence.count(k)) }
                }
            }
            @if s.evidence.not_kept > 0 {
                dt { "Evidence not kept" } dd { (s.evidence.not_kept) " (the appliance has the most records kept)" }
            }
            @if s.evidence.damaged > 0 {
                dt { "Damaged records" } dd.error { (s.evidence.damaged) }
            }
            dt { "Posts without a valid signature" } dd { (s.unsigned) " since start" }
        }
        h2 { "Latest cosigned checkpoint" }
        @match &s.state {
            Some(st) => pre.note #checkpoint { (st.checkpoint) },
            None => p.muted { "None yet." },
        }
        h2 { "Earlier cosigned checkpoints kept" }
        @if s.history.is_empty() {
            p.muted { "None." }
        } @else {
            table.history {
                thead { tr { th.num { "Tree size" } th { "Root hash" } th { "Cosigned" } } }
                tbody { @for st in s.history.iter().rev() { (history_row(st)) } }
            }
            p.muted { "Newest first; the witness keeps the " (HISTORY) " before the latest." }
        }
        h2 { "Evidence" }
        @if evidence.is_empty() {
            p.muted { "No evidence: every checkpoint this appliance signed that the witness saw is consistent." }
        } @else {
            table.evidence {
                thead { tr {
                    th { "Kind" } th { "Seen" } th.num { "Cosigned size" } th.num { "Submitted size" } th { "" }
                } }
                tbody {
                    @for e in evidence {
                        tr {
                            td { span.badge.bad { (e.kind.name()) } }
                            td { (time_ms(secs_ms(e.seen_at))) }
                            td.num { (e.cosigned_size) }
                            td.num { (e.size) }
                            td { a.evidence-link href=(evidence_href(origin, e)) { "both checkpoints" } }
                        }
                    }
                }
            }
        }
    };
    page(CONSOLE, origin, NAV, &[], body)
}

/// One side of an evidence record: a checkpoint the appliance signed.
fn evidence_side(id: &str, heading: &str, size: u64, note: &str) -> Markup {
    let root = checkpoint_of(note).map_or("(the note does not parse)".to_owned(), |c| {
        B64.encode(c.root)
    });
    html! {
        section.side #(id) {
            h2 { (heading) }
            dl.fields {
                dt { "Tree size" } dd.size { (size) }
                dt { "Root hash" } dd.mono.root { (root) }
            }
            pre.note { (note) }
        }
    }
}

/// `GET /ui/evidence/{*origin}/{id}` (the id as 64 hex digits).
pub async fn evidence_page(
    State(state): State<WitnessState>,
    Path(rest): Path<String>,
) -> Response {
    match evidence_of(&state, &rest).await {
        Ok((origin, e)) => html_response(StatusCode::OK, evidence_body(&origin, &e)),
        Err(e) => e.into_response(),
    }
}

async fn evidence_of(state: &WitnessState, rest: &str) -> Result<(String, Evidence), PageError> {
    let Some((origin, id)) = rest.rsplit_once('/') else {
        return Err(PageError::NotFound(
            "an evidence page is /ui/evidence/<origin>/<id>".into(),
        ));
    };
    let id: [u8; 32] = hex::decode(id)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            PageError::BadRequest(format!(
                "{id:?} is not an evidence id (64 hexadecimal digits)"
            ))
        })?;
    let (_, evidence) = log_of(state, origin).await?;
    evidence
        .into_iter()
        .find(|e| e.id() == id)
        .map(|e| (origin.to_owned(), e))
        .ok_or_else(|| {
            PageError::NotFound(format!(
                "no evidence record {} for the appliance {origin:?}",
                hex::encode(id)
            ))
        })
}

fn evidence_body(origin: &str, e: &Evidence) -> Markup {
    let body = html! {
        h1 { "Evidence: " span.badge.bad #kind { (e.kind.name()) } }
        p.verdict.bad { (kind_meaning(e.kind)) }
        dl.fields {
            dt { "Appliance" } dd { a.mono href=(log_href(origin)) { (origin) } }
            dt { "Kind" } dd { (e.kind.name()) }
            dt { "First seen" } dd #seen { (time_ms(secs_ms(e.seen_at))) }
            dt { "Old size of the submission" } dd { (e.old_size) }
            dt { "Id" } dd.mono { (hex::encode(e.id())) }
        }
        div.compare {
            (evidence_side("cosigned", "Cosigned by this witness", e.cosigned_size, &e.cosigned))
            (evidence_side("submitted", "Submitted to this witness", e.size, &e.submitted))
        }
        h2 { "Consistency proof" }
        @if e.proof.is_empty() {
            p.muted { "None: the sizes are equal, the roots differ." }
        } @else {
            p.muted {
                "From size " (e.cosigned_size) " to " (e.size)
                " (RFC 9162 §2.1.4): it leads to the submitted root from another root than the cosigned one."
            }
            ol.proof { @for h in &e.proof { li.mono { (B64.encode(h)) } } }
        }
        p.muted {
            "Both notes are as the appliance signed them: anyone with its verifier key can \
             check them offline (auditstamp witness evidence prints them too)."
        }
    };
    page(
        CONSOLE,
        &format!("Evidence {}", e.kind.name()),
        NAV,
        &[],
        body,
    )
}

#[cfg(test)]
mod tests;
