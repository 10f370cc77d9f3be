//! The appliance's web console (`/ui/`): pages rendered here with [`maud`], in the shared
//! frame of [`crate::ui`] (strict CSP, no inline script or style).
//!
//! - `GET /ui` redirects to `/ui/`.
//! - `GET /ui/` (and `/ui/search`): the event search, a plain GET form whose fields are the
//!   query parameters of `GET /v1/events` ([`chain::search`], scoped to the client
//!   certificate as the API is), one page of results in a table (the newest events when
//!   nothing is asked), the next page, and the same query as CSV (every page).
//! - `GET /ui/event?index=N` redirects to `/ui/events/N` (the "go to event" form).
//! - `GET /ui/events/{index}`: one event, the block that sealed it with its token's genTime
//!   and serial number, the block and checkpoint its proof is against, the inclusion proof;
//!   it embeds the proof bundle `GET /v1/events/{index}` answers (as data) and `verify.js`
//!   checks it in the browser.
//! - `GET /ui/assets/{name}`: the stylesheet and `verify.js`, embedded in the binary.
//!
//! Every page opens with the appliance's status (tree size, last block, seal age, TSA
//! certificate, witnesses, archive). Errors are pages with their status and the message
//! the API would give, never JSON.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, PreEscaped};

use super::limits::ClientInfo;
use super::{chain, AppState, HttpError};
use crate::chain::block::SealedBlock;
use crate::ui::{age, html_response, page, security_headers, time_ms, NavLink};

/// The console's name, shown in every page's header.
const CONSOLE: &str = "auditstamp appliance";

/// The navigation bar of every page.
const NAV: &[NavLink<'static>] = &[
    NavLink {
        label: "Search",
        href: "/ui/",
    },
    NavLink {
        label: "Checkpoint",
        href: "/checkpoint",
    },
    NavLink {
        label: "Latest block (JSON)",
        href: "/v1/blocks/latest",
    },
    NavLink {
        label: "TSA certificates",
        href: "/tsa/certs",
    },
];

/// The in-browser proof check of the event page.
const VERIFY_JS: &str = include_str!("../../assets/ui/verify.js");

/// This console's own assets (the stylesheet is shared).
const ASSETS: &[(&str, &str, &str)] = &[("verify.js", "text/javascript; charset=utf-8", VERIFY_JS)];

/// A TSA certificate expiring within this many days is flagged.
const CERT_WARN_DAYS: i64 = 30;

/// `GET /ui`: to `/ui/`.
pub async fn redirect() -> Response {
    redirect_to("/ui/")
}

/// A 303 to `location` (a path on this server), with the console's headers.
fn redirect_to(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (
            StatusCode::SEE_OTHER,
            security_headers(),
            [(header::LOCATION, v)],
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, security_headers()).into_response(),
    }
}

/// `GET /ui/assets/{name}`: the stylesheet or `verify.js`.
pub async fn asset(name: Path<String>) -> Response {
    crate::ui::asset(name, ASSETS)
}

/// The status and message of an API error, as a page shows them.
fn error_parts(e: &HttpError) -> (StatusCode, String, Option<u32>) {
    match e {
        HttpError::Api {
            status,
            message,
            retry_after,
        } => (*status, message.clone(), *retry_after),
        HttpError::UnsupportedMediaType { .. } => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string(), None)
        }
        HttpError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None),
    }
}

/// The page of an API error: the status header, the status and the message.
fn error_response(state: &AppState, e: &HttpError) -> Response {
    let (status, message, retry_after) = error_parts(e);
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let mut resp = html_response(
        status,
        page(
            CONSOLE,
            &title,
            NAV,
            &[],
            html! {
                (status_header(state))
                h1 { (title) }
                p.error { (message) }
                p { a href="/ui/" { "Back to the search" } }
            },
        ),
    );
    if let Some(s) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

/// One card of the status header.
fn card(label: &str, value: &str, sub: Option<&str>, flag: Option<(&str, &str)>) -> Markup {
    html! {
        div.card {
            div.label { (label) }
            div.value { (value) }
            @if let Some(sub) = sub {
                div.sub { (sub) }
            }
            @if let Some((class, text)) = flag {
                span class={ "badge " (class) } { (text) }
            }
        }
    }
}

/// The appliance's status, at the top of every page: what `/readyz` and `/metrics` tell,
/// for people.
fn status_header(state: &AppState) -> Markup {
    let now = state.tsa.now_ms();
    let stored = state.chain.log().size();
    let sealed = state.chain.sealed_size();
    let published = state.chain.published();
    let identity = state.tsa.identity();
    let days = identity.days_remaining(now);
    let cert_flag = if days < 0 {
        Some(("bad", "expired"))
    } else if days < CERT_WARN_DAYS {
        Some(("warn", "renew soon"))
    } else {
        None
    };
    let witnesses = state.chain.witness_counts();
    let archive = state.archive.as_ref().map(|a| a.report(sealed));
    html! {
        section.cards aria-label="appliance status" {
            (card("Events stored", &stored.to_string(), None, None))
            (card("Events sealed", &sealed.to_string(),
                (stored > sealed).then(|| format!("{} waiting for the next seal", stored - sealed)).as_deref(),
                None))
            @match &published {
                Some(p) => {
                    (card("Last block", &format!("#{}", p.block.header.height),
                        Some(&format!("sealed {}", time_ms(Some(p.block.header.sealed_at_ms)))), None))
                    (card("Seal age",
                        &if now == 0 { "—".to_owned() } else { age(now.saturating_sub(p.block.header.sealed_at_ms) / 1000) },
                        None, None))
                }
                None => {
                    (card("Last block", "none yet", None, None))
                    (card("Seal age", "—", None, None))
                }
            }
            @if now == 0 {
                (card("TSA certificate", "—",
                    Some(&format!("until {}", time_ms(Some(identity.not_after_ms())))),
                    Some(("bad", "the clock cannot be read"))))
            } @else {
                (card("TSA certificate", &format!("{days} days left"),
                    Some(&format!("until {}", time_ms(Some(identity.not_after_ms())))), cert_flag))
            }
            @if witnesses.is_empty() {
                (card("Witnesses", "none configured", None, None))
            }
            @for w in &witnesses {
                (card(&format!("Witness {}", w.name),
                    &w.size.map_or_else(|| "not cosigned yet".to_owned(), |s| format!("cosigned size {s}")),
                    Some(&format!("{} cosignatures, {} failed submissions", w.cosigned, w.failed)),
                    (w.failed > 0).then_some(("warn", "failures"))))
            }
            @if let Some(a) = &archive {
                (card("Archive lag", &format!("{} events", a.lag_events),
                    Some(&format!("archived size {}", a.archived_size)),
                    if a.alarm.is_some() { Some(("bad", "alarm")) }
                    else if a.warning.is_some() || a.last_error.is_some() { Some(("warn", "warning")) }
                    else { None }))
            }
        }
        @if let Some(a) = &archive {
            @if let Some(alarm) = &a.alarm { p.error { "Archive: " (alarm) } }
            @if let Some(w) = &a.warning { p.error { "Archive: " (w) } }
        }
    }
}

/// The "go to event" form's query.
#[derive(Debug, serde::Deserialize)]
pub struct GoTo {
    index: Option<String>,
}

/// `GET /ui/event?index=N`: to the page of event `N`; 400 for anything but an index.
pub async fn go_to_event(
    State(state): State<AppState>,
    query: Result<Query<GoTo>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let index = query
        .ok()
        .and_then(|Query(q)| q.index)
        .and_then(|i| i.trim().parse::<u64>().ok());
    match index {
        Some(i) => redirect_to(&format!("/ui/events/{i}")),
        None => error_response(
            &state,
            &HttpError::bad_request("index must be a non-negative integer"),
        ),
    }
}

/// The "go to event" form.
fn go_to_form() -> Markup {
    html! {
        form.goto action="/ui/event" method="get" {
            label { "Event index " input type="text" name="index" inputmode="numeric" size="12"; }
            button type="submit" { "Go to event" }
        }
    }
}

/// JSON text safe inside a `<script type="application/json">` element: no `<` (so no
/// `</script>` or `<!--` can end or change the element), `>` and `&` escaped likewise, and
/// the line separators JavaScript treats as newlines escaped. Each is replaced by its
/// `\uXXXX` escape, which JSON reads back as the same character (none of them can be part
/// of an escape sequence, so the replacement never splits one).
pub fn script_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Compact JSON text (as the log stores details) indented for reading; strings and
/// numbers are kept exactly as written.
pub fn pretty_json(compact: &str) -> String {
    let mut out = String::with_capacity(compact.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = compact.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    if let Some(close) = chars.next() {
                        out.push(close);
                    }
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// The block that sealed event `index`: `latest` or, found by bisection over the heights
/// before it (each block's first event and count), an earlier one; `None` when a block
/// cannot be read (the detail goes to the log).
async fn sealing_block(state: &AppState, index: u64, latest: &SealedBlock) -> Option<SealedBlock> {
    if latest.header.first_index <= index {
        return Some(latest.clone());
    }
    let chain = state.chain.clone();
    let (mut lo, mut hi) = (0u64, latest.header.height);
    let found = tokio::task::spawn_blocking(move || {
        // Invariant: block `lo` starts at or before `index`, block `hi` after it.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let b = chain.block(mid)?.ok_or_else(|| {
                crate::service::ServiceError::Chain(format!("block {mid} is missing"))
            })?;
            if b.header.first_index <= index {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        chain.block(lo)
    })
    .await;
    match found {
        Ok(Ok(Some(b))) if b.header.first_index <= index => Some(b),
        Ok(Ok(_)) => None,
        Ok(Err(e)) => {
            tracing::error!(error = %e, index, "cannot find the block that sealed an event");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "block search task failed");
            None
        }
    }
}

/// A block's fields and its time-stamp token's genTime, serial number and policy (the
/// token is read, not verified: `auditstamp verify` does that).
fn block_fields(b: &SealedBlock) -> Markup {
    let h = &b.header;
    let token = crate::tsp::decode_tst_info_from_token(&b.token);
    html! {
        dl.fields {
            dt { "height" } dd { (h.height) " " a href={ "/v1/blocks/" (h.height) } { "(JSON)" } }
            dt { "header hash" } dd.mono { (hex::encode(h.hash())) }
            dt { "sealed" } dd { (time_ms(Some(h.sealed_at_ms))) }
            dt { "tree size" } dd { (h.tree_size) }
            dt { "root hash" } dd.mono { (hex::encode(h.root)) }
            dt { "events" } dd {
                @if h.event_count == 0 { "none" }
                @else { (h.first_index) " to " (h.first_index + h.event_count - 1) " (" (h.event_count) ")" }
            }
            @match &token {
                Ok(t) => {
                    dt { "token genTime" } dd { (time_ms(Some(t.gen_time.unix_millis()))) " (" (t.gen_time) ")" }
                    dt { "token serial number" } dd.mono {
                        (hex::encode(&t.serial))
                        @if let Some(n) = t.serial_u128() { " (" (n) ")" }
                    }
                    dt { "token policy" } dd.mono { (t.policy) }
                }
                Err(err) => {
                    dt { "token" } dd.error { "cannot be read: " (err) }
                }
            }
        }
    }
}

/// `GET /ui/events/{index}`: the event, its proof, and the in-browser check (under mutual
/// TLS, only an event the client may see, as with `GET /v1/events/{index}`).
pub async fn event_page(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientInfo>>,
    Path(index): Path<String>,
) -> Response {
    let p = match chain::event_proof(&state, client.as_ref().map(|c| &c.0), &index).await {
        Ok(p) => p,
        Err(e) => return error_response(&state, &e),
    };
    let bundle = match serde_json::to_string(&chain::event_bundle(&state, &p)) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot write a proof bundle");
            return error_response(&state, &HttpError::Internal);
        }
    };
    let ev = &p.event;
    let e = &ev.event;
    let h = &p.block.header;
    let sealed_in = sealing_block(&state, p.event.index, &p.block).await;
    let index = ev.index;
    let action = e.action.name();
    let data_sha256 = hex::encode(e.data_sha256);
    let leaf_hash = hex::encode(crate::chain::tlog::leaf_hash(&p.leaf));
    let verifier_key = state.chain.verifier_key();
    let received = time_ms(Some(ev.received_at_ms));
    let occurred = crate::chain::event::format_time_ns(e.occurred_at_ns);
    let body = html! {
        (status_header(&state))
        h1 { "Event " (index) }
        p {
            a href={ "/v1/events/" (index) } { "This event's proof bundle (JSON)" }
        }
        section.check {
            h2 { "Proof check in this browser" }
            div #verdict .verdict.pending role="status" { "not checked: this check needs JavaScript" }
            ol.steps #steps {
                li #step-1 { "The leaf bytes decode, and their fields match the event shown" span.detail {} }
                li #step-2 { "SHA-256(0x00 ‖ leaf) is the leaf hash" span.detail {} }
                li #step-3 { "The inclusion proof leads from the leaf hash to a root of the tree size" span.detail {} }
                li #step-4 { "The checkpoint parses, and its size and root are the computed ones" span.detail {} }
                li #step-5 { "The checkpoint's signature verifies with the verifier key (Ed25519)" span.detail {} }
            }
            p {
                "Verifier key used: " code #verifier-key { (verifier_key) }
                br;
                span.muted { "Compare it with the key you pinned for this appliance: a check against a key the page itself gives proves only that the page is consistent." }
            }
            button #recheck type="button" { "Check again" }
        }
        h2 { "Event" }
        dl.fields #event {
            dt { "index" } dd data-field="index" { (index) }
            dt { "received" } dd data-field="received_at" { (received) }
            dt { "occurred" } dd data-field="occurred_at" { (occurred) }
            dt { "agency" } dd data-field="agency" { (e.agency) }
            dt { "auditor" } dd data-field="auditor" { (e.auditor) }
            dt { "action" } dd data-field="action" { (action) }
            dt { "subject" } dd data-field="subject" { (e.subject) }
            dt { "data sha256" } dd.mono data-field="data_sha256" { (data_sha256) }
            dt { "salt" } dd.mono data-field="salt" { (hex::encode(ev.salt)) }
            dt { "details" } dd { pre.mono { (pretty_json(&e.details)) } }
        }
        @match &sealed_in {
            Some(b) => {
                h2 { "Sealed in block " (b.header.height) }
                (block_fields(b))
            }
            None => {
                h2 { "Sealed in block" }
                p.error { "the block that sealed this event cannot be read now; the proof below is against block " (h.height) }
            }
        }
        @if sealed_in.as_ref().is_none_or(|b| b.header.height != h.height) {
            h2 { "Block the proof is against (the last one sealed)" }
            (block_fields(&p.block))
        }
        h2 { "Inclusion proof" }
        dl.fields {
            dt { "leaf hash" } dd.mono { (leaf_hash) }
            dt { "tree size" } dd { (h.tree_size) }
            dt { "path" } dd {
                @if p.proof.path.is_empty() { span.muted { "empty (the tree holds this event only)" } }
                ol.mono.path {
                    @for node in &p.proof.path { li { (hex::encode(node)) } }
                }
            }
        }
        h2 { "Checkpoint" }
        pre.mono.note { (p.proof.checkpoint) }
        script #proof-bundle type="application/json" { (PreEscaped(script_json(&bundle))) }
    };
    html_response(
        StatusCode::OK,
        page(
            CONSOLE,
            &format!("Event {index}"),
            NAV,
            &["verify.js"],
            body,
        ),
    )
}

/// The search form's fields, in the order of `GET /v1/events`'s query parameters: name,
/// label, placeholder.
const SEARCH_FIELDS: &[(&str, &str, &str)] = &[
    ("agency", "Agency", ""),
    ("auditor", "Auditor", ""),
    ("action", "Action", "data_collection, custom:…"),
    ("subject", "Subject (exact)", ""),
    ("subject_prefix", "Subject starts with", ""),
    ("from", "Occurred from", "2026-12-01T00:00:00Z"),
    ("to", "Occurred before", "2026-12-02T00:00:00Z"),
    ("received_from", "Received from", "2026-12-01T00:00:00Z"),
    ("received_to", "Received before", "2026-12-02T00:00:00Z"),
];

/// The value of field `name` of `q`.
fn field<'a>(q: &'a chain::SearchParams, name: &str) -> Option<&'a str> {
    match name {
        "agency" => q.agency.as_deref(),
        "auditor" => q.auditor.as_deref(),
        "action" => q.action.as_deref(),
        "subject" => q.subject.as_deref(),
        "subject_prefix" => q.subject_prefix.as_deref(),
        "from" => q.from.as_deref(),
        "to" => q.to.as_deref(),
        "received_from" => q.received_from.as_deref(),
        "received_to" => q.received_to.as_deref(),
        "order" => q.order.as_deref(),
        "limit" => q.limit.as_deref(),
        "cursor" => q.cursor.as_deref(),
        "format" => q.format.as_deref(),
        _ => None,
    }
}

/// Percent-encodes a query component: everything but RFC 3986's unreserved characters.
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The query string of `q`'s non-empty parameters but `skip`, then `extra`.
fn query_string(q: &chain::SearchParams, skip: &str, extra: &[(&str, &str)]) -> String {
    let names = SEARCH_FIELDS
        .iter()
        .map(|(n, _, _)| *n)
        .chain(["order", "limit", "cursor"])
        .filter(|n| *n != skip);
    names
        .filter_map(|n| field(q, n).filter(|v| !v.is_empty()).map(|v| (n, v)))
        .chain(extra.iter().copied())
        .map(|(n, v)| format!("{n}={}", encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The search form, filled with `q`.
fn search_form(q: &chain::SearchParams) -> Markup {
    let order = q.order.as_deref().unwrap_or("newest");
    html! {
        form.search #search action="/ui/" method="get" {
            @for (name, label, placeholder) in SEARCH_FIELDS {
                label {
                    (label)
                    input type="text" name=(name) value=[field(q, name)]
                        placeholder=[(!placeholder.is_empty()).then_some(*placeholder)];
                }
            }
            label {
                "Order"
                select name="order" {
                    option value="newest" selected[order != "oldest"] { "newest first" }
                    option value="oldest" selected[order == "oldest"] { "oldest first" }
                }
            }
            label {
                "Rows per page"
                input type="number" name="limit" min="1" max="1000"
                    placeholder=(super::search::DEFAULT_LIMIT) value=[q.limit.as_deref()];
            }
            div.actions {
                button type="submit" { "Search" }
                a href="/ui/" { "Clear" }
            }
        }
    }
}

/// The first 12 hex digits of a SHA-256, for a table cell.
fn short_hash(full: &str) -> String {
    match full.get(..12) {
        Some(head) if full.len() > 12 => format!("{head}…"),
        _ => full.to_owned(),
    }
}

/// The results table of one page.
fn results(q: &chain::SearchParams, answer: &chain::SearchAnswer) -> Markup {
    html! {
        @if answer.events.is_empty() {
            p.muted #no-results { "No event matches." }
        } @else {
            table #results {
                thead {
                    tr {
                        th.num { "index" } th { "received" } th { "occurred" } th { "agency" }
                        th { "auditor" } th { "action" } th { "subject" } th { "data sha256" }
                    }
                }
                tbody {
                    @for hit in &answer.events {
                        @let ev = &hit.event;
                        @let e = &ev.event;
                        @let data = hex::encode(e.data_sha256);
                        tr {
                            td.num { a href={ "/ui/events/" (hit.index) } { (hit.index) } }
                            td { (time_ms(Some(ev.received_at_ms))) }
                            td { (crate::chain::event::format_time_ns(e.occurred_at_ns)) }
                            td { (e.agency) }
                            td { (e.auditor) }
                            td { (e.action.name()) }
                            td { (e.subject) }
                            td.mono title=(data) { (short_hash(&data)) }
                        }
                    }
                }
            }
        }
        @if answer.searched_from > 0 {
            p.muted {
                "Events below " (answer.searched_from)
                " were pruned before the search index was built and are not searched."
            }
        }
        div.pager {
            @if let Some(next) = &answer.next_cursor {
                a #next-page href={ "/ui/?" (query_string(q, "cursor", &[("cursor", next)])) } { "Next page →" }
            }
            // Every page of the result, from the first.
            a #csv href={ "/v1/events?" (query_string(q, "cursor", &[("format", "csv")])) } { "Download CSV (all pages)" }
        }
    }
}

/// `GET /ui/` and `GET /ui/search`: the status, the search form and one page of results
/// (the newest events when nothing is asked). A refused query is shown above the form with
/// its status, and the page has that status.
pub async fn search_page(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientInfo>>,
    uri: axum::http::Uri,
) -> Response {
    if state.chain.search_index().is_none() {
        return html_response(
            StatusCode::OK,
            page(
                CONSOLE,
                "Events",
                NAV,
                &[],
                html! {
                    (status_header(&state))
                    h1 { "Events" }
                    p.muted #search-off {
                        "Search is turned off on this appliance ([chain] search_index = false): \
                         open an event by its index."
                    }
                    (go_to_form())
                },
            ),
        );
    }
    let (q, answer) = match Query::<chain::SearchParams>::try_from_uri(&uri) {
        Ok(Query(q)) => {
            let answer = chain::search(&state, &q, client.as_ref().map(|c| &c.0)).await;
            (q, answer)
        }
        Err(e) => (
            chain::SearchParams::default(),
            Err(HttpError::bad_request(e.body_text())),
        ),
    };
    let (status, shown) = match &answer {
        Ok(a) => (StatusCode::OK, results(&q, a)),
        Err(e) => {
            let (status, message, _) = error_parts(e);
            let shown = html! {
                div.verdict.bad #search-error role="alert" {
                    (status.as_u16()) " " (status.canonical_reason().unwrap_or("Error")) ": " (message)
                }
            };
            (status, shown)
        }
    };
    let (error, table) = if answer.is_ok() {
        (html! {}, shown)
    } else {
        (shown, html! {})
    };
    html_response(
        status,
        page(
            CONSOLE,
            "Search",
            NAV,
            &[],
            html! {
                (status_header(&state))
                h1 { "Events" }
                (error)
                (search_form(&q))
                (table)
                (go_to_form())
            },
        ),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::http::router_tests::{app_with_state, get, send};
    use crate::ui::CONTENT_SECURITY_POLICY;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Status, headers and body text of `GET path`.
    async fn fetch(app: &axum::Router, path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let resp = app.clone().oneshot(get(path)).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
            .await
            .unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    /// Posts `event` through the API; its index.
    async fn post_event(app: &axum::Router, event: &serde_json::Value) -> u64 {
        let req = Request::post("/v1/events")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(event.to_string()))
            .unwrap();
        let (status, _, body) = send(app, req).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["index"].as_u64().unwrap()
    }

    fn event(subject: &str, details: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "agency": "agency-1", "auditor": "auditor-1", "action": "access",
            "subject": subject, "data_sha256": "ab".repeat(32),
            "occurred_at": "2026-12-01T10:00:00Z", "details": details,
        })
    }

    /// The text of the page's `<script id="proof-bundle">` element.
    fn embedded_bundle(page: &str) -> &str {
        let at = page.find(r#"<script id="proof-bundle""#).unwrap();
        let start = at + page[at..].find('>').unwrap() + 1;
        let end = start + page[start..].find("</script>").unwrap();
        &page[start..end]
    }

    /// Every script element of `page` loads a file from this server or holds JSON data:
    /// none holds code, and no element has a style attribute.
    fn assert_no_inline_code(page: &str) {
        for (at, _) in page.match_indices("<script") {
            let tag = &page[at..at + page[at..].find('>').unwrap()];
            assert!(
                tag.contains(r#"src="/ui/assets/"#) || tag.contains(r#"type="application/json""#),
                "inline script: {tag}"
            );
        }
        assert!(!page.contains("style="), "a style attribute");
        assert!(!page.contains("<style"), "a style element");
    }

    #[test]
    fn every_page_and_asset_carries_the_csp_and_no_inline_code() {
        let (app, state, _dir) = app_with_state();
        rt().block_on(async {
            post_event(&app, &event("s", serde_json::json!({}))).await;
            state.chain.seal().await.unwrap().unwrap();
            post_event(&app, &event("unsealed", serde_json::json!({}))).await;
            for (path, want) in [
                ("/ui/", StatusCode::OK),
                ("/ui/search", StatusCode::OK),
                ("/ui/events/0", StatusCode::OK),
                ("/ui/events/1", StatusCode::NOT_FOUND),
                ("/ui/events/7", StatusCode::NOT_FOUND),
                ("/ui/events/x", StatusCode::BAD_REQUEST),
                ("/ui/event?index=x", StatusCode::BAD_REQUEST),
                ("/ui/event?index=0", StatusCode::SEE_OTHER),
                ("/ui", StatusCode::SEE_OTHER),
                ("/ui/assets/style.css", StatusCode::OK),
                ("/ui/assets/verify.js", StatusCode::OK),
                ("/ui/assets/nothing.js", StatusCode::NOT_FOUND),
            ] {
                let (status, headers, body) = fetch(&app, path).await;
                assert_eq!(status, want, "{path}: {body}");
                assert_eq!(
                    headers[header::CONTENT_SECURITY_POLICY],
                    CONTENT_SECURITY_POLICY,
                    "{path}"
                );
                assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
                let ctype = headers
                    .get(header::CONTENT_TYPE)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                if path.starts_with("/ui/assets/") || status == StatusCode::SEE_OTHER {
                    continue;
                }
                assert_eq!(ctype, "text/html; charset=utf-8", "{path}");
                assert_no_inline_code(&body);
                // The status header is on every page, errors included.
                assert!(body.contains("Events stored"), "{path}: {body}");
            }
            let (_, headers, js) = fetch(&app, "/ui/assets/verify.js").await;
            assert_eq!(
                headers[header::CONTENT_TYPE],
                "text/javascript; charset=utf-8"
            );
            assert_eq!(js, VERIFY_JS);
        });
    }

    #[test]
    fn redirects_go_to_the_console_and_the_event() {
        let (app, _state, _dir) = app_with_state();
        rt().block_on(async {
            let (_, headers, _) = fetch(&app, "/ui").await;
            assert_eq!(headers[header::LOCATION], "/ui/");
            let (_, headers, _) = fetch(&app, "/ui/event?index=%2042%20").await;
            assert_eq!(headers[header::LOCATION], "/ui/events/42");
        });
    }

    #[test]
    fn errors_are_pages_with_the_status_and_the_apis_message() {
        let (app, state, _dir) = app_with_state();
        rt().block_on(async {
            let (status, _, body) = fetch(&app, "/ui/events/7").await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert!(body.contains("404 Not Found"), "{body}");
            assert!(body.contains("no event 7"), "{body}");
            let (status, _, body) = fetch(&app, "/ui/events/-1").await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(
                body.contains("index must be a non-negative integer"),
                "{body}"
            );
            // Stored but not sealed: the API's 404, its message and Retry-After.
            post_event(&app, &event("s", serde_json::json!({}))).await;
            let (status, headers, body) = fetch(&app, "/ui/events/0").await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert!(body.contains("stored but not sealed yet"), "{body}");
            assert_eq!(headers[header::RETRY_AFTER], "1");
            state.chain.seal().await.unwrap().unwrap();
            let (status, _, _) = fetch(&app, "/ui/events/0").await;
            assert_eq!(status, StatusCode::OK);
        });
    }

    #[test]
    fn hostile_event_fields_are_escaped_and_the_bundle_cannot_close_its_script() {
        let (app, state, _dir) = app_with_state();
        rt().block_on(async {
            let hostile = "<script>alert(1)</script>";
            let index = post_event(
                &app,
                &event(
                    hostile,
                    serde_json::json!({
                        "note": "</script><script>alert(2)</script><!--",
                        "amp": "a & b > c",
                        "ls": "\u{2028}",
                        "big": serde_json::from_str::<serde_json::Value>("1").unwrap(),
                    }),
                ),
            )
            .await;
            state.chain.seal().await.unwrap().unwrap();
            let (status, _, page) = fetch(&app, &format!("/ui/events/{index}")).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            assert!(!page.contains("alert(1)</script>"), "{page}");
            assert!(!page.contains("<script>alert"), "{page}");
            assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
            // Two script elements, both closed once: verify.js and the bundle.
            assert_eq!(page.matches("<script").count(), 2);
            assert_eq!(page.matches("</script>").count(), 2);
            assert_no_inline_code(&page);
            let embedded = embedded_bundle(&page);
            assert!(!embedded.contains('<') && !embedded.contains('>'));
            assert!(!embedded.contains('&') && !embedded.contains('\u{2028}'));
            // The embedded JSON is the API's answer, byte for byte once unescaped.
            let api = app
                .clone()
                .oneshot(get(&format!("/v1/events/{index}")))
                .await
                .unwrap();
            let api = axum::body::to_bytes(api.into_body(), 1 << 22)
                .await
                .unwrap();
            let api = String::from_utf8(api.to_vec()).unwrap();
            assert_eq!(embedded, script_json(&api));
            let a: serde_json::Value = serde_json::from_str(embedded).unwrap();
            let b: serde_json::Value = serde_json::from_str(&api).unwrap();
            assert_eq!(a, b);
            assert_eq!(a["event"]["subject"], hostile);
        });
    }

    #[test]
    fn the_status_header_tells_sizes_block_and_certificate() {
        let (app, state, _dir) = app_with_state();
        rt().block_on(async {
            let (_, _, page) = fetch(&app, "/ui/").await;
            assert!(page.contains("none yet"), "{page}");
            assert!(page.contains("none configured"), "{page}");
            for _ in 0..3 {
                post_event(&app, &event("s", serde_json::json!({}))).await;
            }
            state.chain.seal().await.unwrap().unwrap();
            post_event(&app, &event("s", serde_json::json!({}))).await;
            let (_, _, page) = fetch(&app, "/ui/").await;
            let value = |label: &str| {
                let at = page
                    .find(&format!(r#"<div class="label">{label}</div>"#))
                    .unwrap();
                let rest = &page[at..];
                let start = rest.find(r#"<div class="value">"#).unwrap() + 19;
                rest[start..start + rest[start..].find('<').unwrap()].to_owned()
            };
            assert_eq!(value("Events stored"), "4");
            assert_eq!(value("Events sealed"), "3");
            assert_eq!(value("Last block"), "#0");
            assert!(page.contains("1 waiting for the next seal"), "{page}");
            let days = state.tsa.identity().days_remaining(state.tsa.now_ms());
            assert_eq!(value("TSA certificate"), format!("{days} days left"));
            assert!(!page.contains("Archive lag"), "no archive, no archive card");
            // With an archive that has copied nothing yet, past its lag bound of 2 events.
            let mut archived = state.clone();
            archived.archive = Some(std::sync::Arc::new(
                crate::archive::writer::ArchiveStatus::new(2),
            ));
            let header = status_header(&archived).into_string();
            assert!(
                header.contains(
                    r#"<div class="label">Archive lag</div><div class="value">3 events</div>"#
                ),
                "{header}"
            );
            assert!(
                header.contains("3 sealed events are not archived yet"),
                "{header}"
            );
        });
    }

    #[test]
    fn the_event_page_names_the_block_that_sealed_it_and_the_one_the_proof_is_against() {
        let (app, state, _dir) = app_with_state();
        rt().block_on(async {
            // Blocks 0 (events 0-1), 1 (event 2), 2 (events 3-4), 3 (event 5).
            for batch in [2, 1, 2, 1] {
                for _ in 0..batch {
                    post_event(&app, &event("s", serde_json::json!({}))).await;
                }
                state.chain.seal().await.unwrap().unwrap();
            }
            for (index, block) in [(0, 0), (1, 0), (2, 1), (3, 2), (4, 2), (5, 3)] {
                let (status, _, page) = fetch(&app, &format!("/ui/events/{index}")).await;
                assert_eq!(status, StatusCode::OK);
                assert!(
                    page.contains(&format!("<h2>Sealed in block {block}</h2>")),
                    "{index}: {page}"
                );
                assert_eq!(
                    page.contains("<h2>Block the proof is against (the last one sealed)</h2>"),
                    block != 3,
                    "{index}"
                );
                assert!(page.contains("token serial number"), "{index}");
            }
        });
    }

    /// The indexes in the results table of a search page, in order.
    fn result_indexes(page: &str) -> Vec<u64> {
        page.match_indices(r#"<td class="num"><a href="/ui/events/"#)
            .map(|(at, m)| {
                let rest = &page[at + m.len()..];
                rest[..rest.find('"').unwrap()].parse().unwrap()
            })
            .collect()
    }

    /// The `href` of the element with id `id`, unescaped.
    fn href_of(page: &str, id: &str) -> Option<String> {
        let needle = format!(r#"id="{id}" href=""#);
        let start = page.find(&needle)? + needle.len();
        Some(page[start..start + page[start..].find('"')?].replace("&amp;", "&"))
    }

    #[test]
    fn the_search_page_lists_pages_of_matching_events_and_shows_refused_queries() {
        let (app, _state, _dir) = app_with_state();
        rt().block_on(async {
            for n in 0..7u64 {
                let mut e = event(if n == 3 { "<b>x</b>" } else { "s" }, serde_json::json!({}));
                e["agency"] = serde_json::json!(if n % 2 == 0 { "even" } else { "odd" });
                e["action"] = serde_json::json!(if n < 4 { "access" } else { "export" });
                post_event(&app, &e).await;
            }
            // No query: the newest events first.
            let (status, headers, page) = fetch(&app, "/ui/").await;
            assert_eq!(status, StatusCode::OK, "{page}");
            assert_eq!(
                headers[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(result_indexes(&page), [6, 5, 4, 3, 2, 1, 0]);
            assert!(page.contains("&lt;b&gt;x&lt;/b&gt;") && !page.contains("<b>x</b>"));
            assert_no_inline_code(&page);
            // A filled-in form sends its empty fields too: they filter nothing.
            let form = "/ui/?agency=odd&auditor=&action=&subject=&subject_prefix=&from=&to=\
                        &received_from=&received_to=&order=oldest&limit=";
            let (_, _, page) = fetch(&app, form).await;
            assert_eq!(result_indexes(&page), [1, 3, 5]);
            assert!(
                page.contains(r#"<option value="oldest" selected>"#),
                "{page}"
            );
            assert!(page.contains(r#"name="agency" value="odd""#), "{page}");
            let (_, _, page) = fetch(&app, "/ui/search?agency=even&action=export").await;
            assert_eq!(result_indexes(&page), [6, 4]);
            assert_eq!(
                href_of(&page, "csv").unwrap(),
                "/v1/events?agency=even&action=export&format=csv"
            );
            // Pages: the next-page link carries the query and the cursor.
            let (_, _, page) = fetch(&app, "/ui/?action=access&order=oldest&limit=3").await;
            assert_eq!(result_indexes(&page), [0, 1, 2]);
            let next = href_of(&page, "next-page").unwrap();
            assert!(
                next.starts_with("/ui/?action=access&order=oldest&limit=3&cursor="),
                "{next}"
            );
            let (_, _, page) = fetch(&app, &next).await;
            assert_eq!(result_indexes(&page), [3]);
            assert!(href_of(&page, "csv")
                .unwrap()
                .ends_with("limit=3&format=csv"));
            // Refused queries: the status and the API's message above the form.
            for (query, status, says) in [
                ("/ui/?order=sideways", StatusCode::BAD_REQUEST, "order"),
                ("/ui/?from=yesterday", StatusCode::BAD_REQUEST, "from"),
                ("/ui/?limit=0", StatusCode::BAD_REQUEST, "limit"),
                ("/ui/?cursor=junk", StatusCode::BAD_REQUEST, "cursor"),
                ("/ui/?agnecy=odd", StatusCode::BAD_REQUEST, "agnecy"),
            ] {
                let (got, headers, page) = fetch(&app, query).await;
                assert_eq!(got, status, "{query}: {page}");
                assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
                let at = page.find(r#"id="search-error""#).expect(query);
                let error = &page[at..at + page[at..].find("</div>").unwrap()];
                assert!(error.contains("400 Bad Request: "), "{query}: {error}");
                assert!(error.contains(says), "{query}: {error}");
                assert!(
                    at < page.find("<form").unwrap(),
                    "{query}: the error is above the form"
                );
                assert!(result_indexes(&page).is_empty());
            }
        });
    }

    /// Under mutual TLS, an agency's certificate shows its own events only: on the search
    /// page and on event pages, as in the API.
    #[test]
    fn a_client_certificate_sees_its_own_agencys_events_only() {
        let (app, state, _dir) = app_with_state();
        rt().block_on(async {
            for agency in ["agency-a", "agency-b", "agency-a"] {
                let mut e = event("s", serde_json::json!({}));
                e["agency"] = serde_json::json!(agency);
                post_event(&app, &e).await;
            }
            state.chain.seal().await.unwrap().unwrap();
            let as_a = |path: &str| {
                let mut req = get(path);
                req.extensions_mut()
                    .insert(crate::http::limits::ClientInfo {
                        peer: "127.0.0.1:1".parse().unwrap(),
                        identity: Some("agency-a".into()),
                    });
                req
            };
            let (status, _, body) = send(&app, as_a("/ui/")).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(result_indexes(&String::from_utf8(body).unwrap()), [2, 0]);
            let (status, _, _) = send(&app, as_a("/ui/events/0")).await;
            assert_eq!(status, StatusCode::OK);
            let (status, _, body) = send(&app, as_a("/ui/events/1")).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            let body = String::from_utf8(body).unwrap();
            assert!(body.contains("may see"), "{body}");
            assert!(!body.contains("agency-b"), "{body}");
            let (status, _, body) = send(&app, as_a("/ui/?agency=agency-b")).await;
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert!(!result_indexes(&String::from_utf8(body).unwrap()).contains(&1));
        });
    }

    #[test]
    fn without_a_search_index_the_console_opens_events_by_index() {
        let (app, _state, _dir) = crate::http::router_tests::app_with_search(false);
        rt().block_on(async {
            let (status, _, page) = fetch(&app, "/ui/?agency=x").await;
            assert_eq!(status, StatusCode::OK);
            assert!(page.contains(r#"id="search-off""#), "{page}");
            assert!(page.contains(r#"action="/ui/event""#), "{page}");
            assert!(!page.contains(r#"id="search""#), "{page}");
            assert!(page.contains("Events stored"), "{page}");
        });
    }

    #[test]
    fn details_are_indented_with_their_text_kept() {
        assert_eq!(pretty_json("{}"), "{}");
        assert_eq!(
            pretty_json(r#"{"a":[1,{}],"b":"x,{\"}:","n":1e400}"#),
            "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": \"x,{\\\"}:\",\n  \"n\": 1e400\n}"
        );
        assert_eq!(
            script_json(r#"{"a":"</script>&"}"#),
            r#"{"a":"\u003c/script\u003e\u0026"}"#
        );
    }
}
