//! `GET /metrics`: counters, gauges and latency histograms in the Prometheus text
//! exposition format (0.0.4), written by `prometheus-client`, the Prometheus project's own
//! Rust client, which escapes label values and help texts as the format requires (a
//! witness named `a"b` cannot break a scrape).
//!
//! Two kinds of figures:
//! - Counted as things happen ([`Metrics`], the witness's `WitnessMetrics`): registered
//!   once; a labelled family's children are created up front (each shows, at 0, from the
//!   first scrape) and kept as handles, so counting is never a lookup: a counter is one
//!   atomic add, a histogram observation takes the histogram's own short lock
//!   (prometheus-client keeps a histogram's buckets behind a mutex).
//! - Read when scraped ([`Gauges`], the store's figures, [`process_metrics`]): registered
//!   in a [`Registry`] made for that one scrape.
//!
//! Either way a new family is one line with the helpers below: a field set by
//! [`counter`], [`counters_by`], [`gauge`] or [`histograms_by`] in a constructor (they
//! return the handles to count with), or a call to [`counter_value`], [`counter_values`],
//! [`gauge_value`], [`gauge_f64_value`] or [`gauge_values`] while scraping. Names are
//! given as exposed: counters end in `_total`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::{counter::Counter, gauge::Gauge, histogram::Histogram};
pub use prometheus_client::registry::Registry;

use crate::signer::SignerCounts;
use crate::tsp::FailureInfo;

/// Media type of the Prometheus text format (0.0.4), what every scraper reads.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// What can go wrong rendering the metrics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// The encoder failed to write the text.
    #[error("cannot encode the metrics")]
    Encode(#[from] std::fmt::Error),
}

/// A label set of one label, name and value fixed in the code.
pub type Label = [(&'static str, &'static str); 1];

/// A label set of one label whose value is known only at run time (a configured name).
pub type NamedLabel = [(&'static str, String); 1];

/// The name prometheus-client registers a counter under: the exposed name without the
/// `_total` it appends.
fn counter_name(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

/// The help text as prometheus-client takes it: it appends the final full stop.
fn help_text(help: &str) -> &str {
    help.strip_suffix('.').unwrap_or(help)
}

/// Registers counter `name` (exposed name, ending in `_total`); returns its handle.
pub fn counter(r: &mut Registry, name: &str, help: &str) -> Counter {
    let c = Counter::default();
    r.register(counter_name(name), help_text(help), c.clone());
    c
}

/// Registers counter family `name` with one label, its children `label="value"` for
/// each of `values` created at 0; returns their handles in the order of `values`.
pub fn counters_by<const N: usize>(
    r: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: [&'static str; N],
) -> [Counter; N] {
    let family = Family::<Label, Counter>::default();
    let handles = values.map(|v| family.get_or_create(&[(label, v)]).clone());
    r.register(counter_name(name), help_text(help), family);
    handles
}

/// Registers histogram family `name` with one label, a child made by `new` for each of
/// `values`; returns their handles in the order of `values`.
pub fn histograms_by<const N: usize>(
    r: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: [&'static str; N],
    new: fn() -> Histogram,
) -> [Histogram; N] {
    let family = Family::<Label, Histogram, fn() -> Histogram>::new_with_constructor(new);
    let handles = values.map(|v| family.get_or_create(&[(label, v)]).clone());
    r.register(name, help_text(help), family);
    handles
}

/// Registers counter `name` (ending in `_total`) with the value `v` read now.
pub fn counter_value(r: &mut Registry, name: &str, help: &str, v: u64) {
    counter(r, name, help).inc_by(v);
}

/// Registers counter family `name` (ending in `_total`) with one label: a child
/// `label="value"` per `(value, count)` of `values`, read now.
pub fn counter_values<S: Into<String>>(
    r: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl IntoIterator<Item = (S, u64)>,
) {
    let family = Family::<NamedLabel, Counter>::default();
    for (value, n) in values {
        family.get_or_create(&[(label, value.into())]).inc_by(n);
    }
    r.register(counter_name(name), help_text(help), family);
}

/// Registers gauge `name`; returns its handle (to set, or to raise and lower).
pub fn gauge(r: &mut Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::default();
    r.register(name, help_text(help), g.clone());
    g
}

/// Registers gauge `name` with the value `v` read now.
pub fn gauge_value(r: &mut Registry, name: &str, help: &str, v: i64) {
    gauge(r, name, help).set(v);
}

/// Registers gauge `name` with the fractional value `v` read now.
pub fn gauge_f64_value(r: &mut Registry, name: &str, help: &str, v: f64) {
    let g = Gauge::<f64, AtomicU64>::default();
    g.set(v);
    r.register(name, help_text(help), g);
}

/// Registers gauge family `name` with one label: a child `label="value"` per
/// `(value, v)` of `values`, read now.
pub fn gauge_values<S: Into<String>>(
    r: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl IntoIterator<Item = (S, i64)>,
) {
    let family = Family::<NamedLabel, Gauge>::default();
    for (value, v) in values {
        family.get_or_create(&[(label, value.into())]).set(v);
    }
    r.register(name, help_text(help), family);
}

/// `v` as a gauge value (the text format's integers are signed).
pub fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Registers the standard process metrics of this process, named as every Prometheus
/// client names them: `process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
/// `process_start_time_seconds` and `process_threads`, read from `/proc/self` now. A
/// figure that cannot be read is left out.
pub fn process_metrics(r: &mut Registry) {
    #[cfg(target_os = "linux")]
    linux_process_metrics(r);
    #[cfg(not(target_os = "linux"))]
    let _ = r;
}

#[cfg(target_os = "linux")]
fn linux_process_metrics(r: &mut Registry) {
    let Ok(me) = procfs::process::Process::myself() else {
        return;
    };
    if let Ok(stat) = me.stat() {
        // Clock ticks and pages: the units of /proc/self/stat.
        let ticks = procfs::ticks_per_second().max(1) as f64;
        let cpu = Counter::<f64, AtomicU64>::default();
        cpu.inc_by(stat.utime.saturating_add(stat.stime) as f64 / ticks);
        r.register(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            cpu,
        );
        gauge_value(
            r,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            int(stat.rss.saturating_mul(procfs::page_size())),
        );
        gauge_value(
            r,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            int(stat.vsize),
        );
        if let Ok(boot) = procfs::boot_time_secs() {
            gauge_f64_value(
                r,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                boot as f64 + stat.starttime as f64 / ticks,
            );
        }
        gauge_value(
            r,
            "process_threads",
            "Number of OS threads in the process.",
            stat.num_threads,
        );
    }
    if let Ok(n) = me.fd_count() {
        gauge_value(
            r,
            "process_open_fds",
            "Number of open file descriptors.",
            i64::try_from(n).unwrap_or(i64::MAX),
        );
    }
    if let Ok(limits) = me.limits() {
        if let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit {
            gauge_value(
                r,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                int(max),
            );
        }
    }
}

/// The exposition text of `registries`, one after the other (their names are distinct).
pub fn encode(registries: &[&Registry]) -> Result<String, MetricsError> {
    let mut out = String::new();
    for r in registries {
        prometheus_client::encoding::prometheus_text::encode(&mut out, r)?;
    }
    Ok(out)
}

/// The answer to `GET /metrics`: the text, or a 500 (the detail goes to the log).
pub fn response(text: Result<String, MetricsError>) -> Response {
    match text {
        Ok(text) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render /metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot render the metrics; see the log\n",
            )
                .into_response()
        }
    }
}

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The routes whose latency is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timed {
    /// `POST /tsa`
    Tsa,
    /// `POST /v1/events`
    Event,
    /// `POST /v1/events/batch`
    Batch,
}

impl Timed {
    /// Each route's label, in the order of the enum.
    const LABELS: [&'static str; 3] = ["tsa", "event", "batch"];

    /// The timed route a request path names, if any.
    pub fn for_path(path: &str) -> Option<Timed> {
        match path {
            "/tsa" => Some(Timed::Tsa),
            "/v1/events" => Some(Timed::Event),
            "/v1/events/batch" => Some(Timed::Batch),
            _ => None,
        }
    }
}

/// The appliance's counters and histograms, and the registry they are exposed from.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    tokens_issued: Counter,
    tokens_refused: [Counter; FailureInfo::ALL.len()],
    statuses: [Counter; 5],
    latency: [Histogram; Timed::LABELS.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Values read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Whole days until the active TSA certificate expires (negative once expired).
    pub certificate_days_remaining: i64,
    /// When the active TSA certificate expires, Unix seconds.
    pub certificate_not_after_seconds: u64,
    /// The TSA key's HSM signer.
    pub tsa_signer: SignerCounts,
    /// The chain key's HSM signer.
    pub chain_signer: SignerCounts,
    /// Events committed.
    pub chain_events: u64,
    /// Group commits of the event log since start (one flush each).
    pub chain_commits: u64,
    /// Events sealed by the last block.
    pub chain_sealed: u64,
    /// Seconds since the last block was sealed, if one was.
    pub last_seal_age_seconds: Option<f64>,
    /// Each witness the checkpoints go to.
    pub witnesses: Vec<crate::service::cosign::LinkCounts>,
    /// The archive's figures, when there is an archive.
    pub archive: Option<crate::archive::writer::ArchiveReport>,
    /// The search index's figures, when search is on.
    pub search: Option<SearchGauges>,
}

/// The search index's figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchGauges {
    /// Events indexed.
    pub indexed: u64,
    /// Committed events not indexed yet.
    pub lag: u64,
    /// Searched events whose leaf did not match what the index said, since start.
    pub mismatches: u64,
    /// Bytes the index occupies on disk.
    pub bytes: u64,
}

impl Gauges {
    /// Registers these values in `r` (a registry made for one scrape).
    pub fn register(&self, r: &mut Registry) {
        let keys = [("tsa", &self.tsa_signer), ("chain", &self.chain_signer)];
        counter_values(
            r,
            "auditstamp_hsm_signatures_total",
            "Signatures made in the HSM, by key (tsa, chain).",
            "key",
            keys.map(|(k, c)| (k, c.signatures)),
        );
        counter_values(
            r,
            "auditstamp_hsm_errors_total",
            "HSM signing requests that failed, by key.",
            "key",
            keys.map(|(k, c)| (k, c.errors)),
        );
        counter_values(
            r,
            "auditstamp_hsm_reconnects_total",
            "HSM sessions reopened, by key.",
            "key",
            keys.map(|(k, c)| (k, c.reconnects)),
        );
        gauge_value(
            r,
            "auditstamp_chain_events",
            "Events committed to the chain.",
            int(self.chain_events),
        );
        counter_value(
            r,
            "auditstamp_chain_commits_total",
            "Group commits of the event log since start, one flush each.",
            self.chain_commits,
        );
        gauge_value(
            r,
            "auditstamp_chain_sealed_events",
            "Events sealed by the last block.",
            int(self.chain_sealed),
        );
        if let Some(age) = self.last_seal_age_seconds {
            gauge_f64_value(
                r,
                "auditstamp_chain_last_seal_age_seconds",
                "Seconds since the last block was sealed.",
                age,
            );
        }
        if !self.witnesses.is_empty() {
            let w = &self.witnesses;
            counter_values(
                r,
                "auditstamp_witness_cosigned_total",
                "Checkpoints a witness cosigned, by witness.",
                "witness",
                w.iter().map(|w| (w.name.as_str(), w.cosigned)),
            );
            counter_values(
                r,
                "auditstamp_witness_failures_total",
                "Submissions to a witness that failed, by witness.",
                "witness",
                w.iter().map(|w| (w.name.as_str(), w.failed)),
            );
            gauge_values(
                r,
                "auditstamp_witness_size",
                "The tree size a witness last cosigned, by witness.",
                "witness",
                w.iter()
                    .filter_map(|w| Some((w.name.as_str(), int(w.size?)))),
            );
        }
        if let Some(s) = &self.search {
            gauge_value(
                r,
                "auditstamp_search_index_events",
                "Events the search index holds.",
                int(s.indexed),
            );
            gauge_value(
                r,
                "auditstamp_search_index_lag_events",
                "Committed events the search index has not reached yet (searches read them from the log).",
                int(s.lag),
            );
            counter_value(
                r,
                "auditstamp_search_index_mismatches_total",
                "Events the search index named that did not match the log, left out of answers (rebuild it with chain verify --reindex).",
                s.mismatches,
            );
            gauge_value(
                r,
                "auditstamp_search_index_bytes",
                "Bytes the search index occupies on disk.",
                int(s.bytes),
            );
        }
        if let Some(a) = &self.archive {
            gauge_value(
                r,
                "auditstamp_archive_archived_events",
                "Events the archive's checkpoint covers.",
                int(a.archived_size),
            );
            gauge_value(
                r,
                "auditstamp_archive_lag_events",
                "Sealed events not archived yet.",
                int(a.lag_events),
            );
            counter_value(
                r,
                "auditstamp_archive_objects_total",
                "Objects written to the archive.",
                a.written,
            );
            counter_value(
                r,
                "auditstamp_archive_present_total",
                "Objects found already archived with the same bytes (written by an earlier try).",
                a.present,
            );
            counter_value(
                r,
                "auditstamp_archive_bytes_total",
                "Bytes written to the archive.",
                a.bytes,
            );
            counter_value(
                r,
                "auditstamp_archive_failures_total",
                "Archive rounds that failed and were tried again (the store down, slow or refusing).",
                a.failures,
            );
            counter_value(
                r,
                "auditstamp_archive_conflicts_total",
                "Objects found in the archive with other bytes, or a bucket not of this log (each stops the archive).",
                a.conflicts,
            );
            gauge_value(
                r,
                "auditstamp_archive_pruned_events",
                "Events whose bundles were pruned from the local disk after they were archived.",
                int(a.pruned_events),
            );
        }
        gauge_value(
            r,
            "auditstamp_certificate_days_remaining",
            "Whole days until the active TSA certificate expires.",
            self.certificate_days_remaining,
        );
        gauge_value(
            r,
            "auditstamp_certificate_not_after_seconds",
            "When the active TSA certificate expires (Unix time).",
            int(self.certificate_not_after_seconds),
        );
    }
}

impl Metrics {
    /// Every counter and histogram at zero.
    pub fn new() -> Self {
        let mut r = Registry::default();
        Metrics {
            tokens_issued: counter(
                &mut r,
                "auditstamp_tokens_issued_total",
                "RFC 3161 tokens granted.",
            ),
            tokens_refused: counters_by(
                &mut r,
                "auditstamp_tokens_refused_total",
                "RFC 3161 requests refused, by failInfo.",
                "fail_info",
                FailureInfo::ALL.map(FailureInfo::name),
            ),
            statuses: counters_by(
                &mut r,
                "auditstamp_http_responses_total",
                "HTTP answers, by status class.",
                "class",
                ["1xx", "2xx", "3xx", "4xx", "5xx"],
            ),
            latency: histograms_by(
                &mut r,
                "auditstamp_request_duration_seconds",
                "Time to answer, by route (tsa, event, batch).",
                "route",
                Timed::LABELS,
                latency_histogram,
            ),
            registry: r,
        }
    }

    /// Records one answer: its status class, and for a timed route how long it took.
    pub fn answered(&self, route: Option<Timed>, status: StatusCode, took: Duration) {
        if let Some(r) = route {
            self.latency[r as usize].observe(took.as_secs_f64());
        }
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.statuses[class].inc();
    }

    /// Counts one granted token.
    pub fn token_issued(&self) {
        self.tokens_issued.inc();
    }

    /// Counts one refused request, by its failInfo.
    pub fn token_refused(&self, fail: FailureInfo) {
        if let Some(i) = FailureInfo::ALL.iter().position(|f| *f == fail) {
            self.tokens_refused[i].inc();
        }
    }

    /// The exposition text: these counters, `g`, what `more` registers (figures owned
    /// elsewhere, such as the listener's connection counts), and the process metrics.
    pub fn render(
        &self,
        g: &Gauges,
        more: impl FnOnce(&mut Registry),
    ) -> Result<String, MetricsError> {
        let mut scrape = Registry::default();
        g.register(&mut scrape);
        more(&mut scrape);
        process_metrics(&mut scrape);
        encode(&[&self.registry, &scrape])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::service::cosign::LinkCounts;

    fn gauges() -> Gauges {
        Gauges {
            certificate_days_remaining: -3,
            certificate_not_after_seconds: 1_700_000_000,
            tsa_signer: SignerCounts {
                signatures: 7,
                errors: 1,
                reconnects: 2,
            },
            chain_events: 12,
            chain_commits: 3,
            last_seal_age_seconds: Some(0.5),
            ..Gauges::default()
        }
    }

    #[test]
    fn counts_histograms_and_gauges_render() {
        let m = Metrics::new();
        m.token_issued();
        m.token_issued();
        m.token_refused(FailureInfo::BadAlg);
        m.answered(
            Some(Timed::Tsa),
            StatusCode::OK,
            Duration::from_micros(1500),
        );
        m.answered(
            Some(Timed::Tsa),
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(9),
        );
        let text = m.render(&gauges(), |_| ()).unwrap();
        assert!(
            text.contains("\nauditstamp_tokens_issued_total 2\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE auditstamp_tokens_issued_total counter\n"));
        assert!(text.contains("# HELP auditstamp_tokens_issued_total RFC 3161 tokens granted.\n"));
        assert!(text.contains("auditstamp_tokens_refused_total{fail_info=\"badAlg\"} 1\n"));
        assert!(text.contains("auditstamp_tokens_refused_total{fail_info=\"systemFailure\"} 0\n"));
        assert!(text.contains("auditstamp_http_responses_total{class=\"2xx\"} 1\n"));
        assert!(text.contains("auditstamp_http_responses_total{class=\"5xx\"} 1\n"));
        assert!(text.contains("auditstamp_http_responses_total{class=\"4xx\"} 0\n"));
        assert!(text.contains("auditstamp_certificate_days_remaining -3\n"));
        assert!(text.contains("auditstamp_certificate_not_after_seconds 1700000000\n"));
        assert!(text.contains("auditstamp_hsm_signatures_total{key=\"tsa\"} 7\n"));
        assert!(text.contains("auditstamp_hsm_reconnects_total{key=\"tsa\"} 2\n"));
        assert!(text.contains("auditstamp_hsm_errors_total{key=\"chain\"} 0\n"));
        assert!(text.contains("auditstamp_chain_events 12\n"));
        assert!(text.contains("auditstamp_chain_commits_total 3\n"));
        assert!(text.contains("auditstamp_chain_last_seal_age_seconds 0.5\n"));
        // Buckets are cumulative; +Inf holds everything.
        assert!(text.contains(
            "auditstamp_request_duration_seconds_bucket{route=\"tsa\",le=\"0.001\"} 0\n"
        ));
        assert!(text.contains(
            "auditstamp_request_duration_seconds_bucket{route=\"tsa\",le=\"0.002\"} 1\n"
        ));
        assert!(
            text.contains("auditstamp_request_duration_seconds_bucket{route=\"tsa\",le=\"5\"} 1\n")
        );
        assert!(text
            .contains("auditstamp_request_duration_seconds_bucket{route=\"tsa\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("auditstamp_request_duration_seconds_count{route=\"tsa\"} 2\n"));
        assert!(text.contains("auditstamp_request_duration_seconds_count{route=\"batch\"} 0\n"));
        // No witness configured: no witness families.
        assert!(!text.contains("auditstamp_witness_"), "{text}");
        // Every sample line is `name{labels} value`; every family has HELP and TYPE once;
        // every counter's samples end in _total.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(
                name.starts_with("auditstamp_") || name.starts_with("process_"),
                "{line}"
            );
            value.parse::<f64>().unwrap();
        }
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut words = line.split(' ').skip(2);
            let (name, kind) = (words.next().unwrap(), words.next().unwrap());
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}"
            );
            assert_eq!(
                text.matches(&format!("# HELP {name} ")).count(),
                1,
                "{name}"
            );
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let name = "w\"1\\x\ny";
        let g = Gauges {
            witnesses: vec![LinkCounts {
                name: name.into(),
                cosigned: 4,
                failed: 1,
                size: Some(9),
            }],
            ..gauges()
        };
        let text = Metrics::new().render(&g, |_| ()).unwrap();
        // The text format's three escapes: \\ for \, \" for ", \n for a line feed.
        let escaped = "w\\\"1\\\\x\\ny";
        for line in [
            format!("auditstamp_witness_cosigned_total{{witness=\"{escaped}\"}} 4\n"),
            format!("auditstamp_witness_failures_total{{witness=\"{escaped}\"}} 1\n"),
            format!("auditstamp_witness_size{{witness=\"{escaped}\"}} 9\n"),
        ] {
            assert!(text.contains(&line), "no {line:?} in\n{text}");
        }
        // The name's line feed never starts a line of its own.
        assert!(!text.lines().any(|l| l.starts_with('y')), "{text}");
    }

    #[test]
    fn process_metrics_are_read() {
        let mut r = Registry::default();
        process_metrics(&mut r);
        let text = encode(&[&r]).unwrap();
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
                .parse()
                .unwrap()
        };
        assert!(value("process_resident_memory_bytes") > 0.0);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_threads") >= 1.0);
        assert!(value("process_cpu_seconds_total") >= 0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value("process_start_time_seconds");
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "{start} vs {now}"
        );
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
    }
}
