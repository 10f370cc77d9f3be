//! `GET /metrics`: counters, gauges and latency histograms in the Prometheus text
//! exposition format (0.0.4).
//!
//! Counters and histograms are plain atomics bumped by the handlers and middleware; gauges
//! (certificate, HSM, chain) are read when scraped.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;

use crate::signer::SignerCounts;
use crate::tsp::FailureInfo;

/// Media type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
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
    const ALL: [Timed; 3] = [Timed::Tsa, Timed::Event, Timed::Batch];

    /// The timed route a request path names, if any.
    pub fn for_path(path: &str) -> Option<Timed> {
        match path {
            "/tsa" => Some(Timed::Tsa),
            "/v1/events" => Some(Timed::Event),
            "/v1/events/batch" => Some(Timed::Batch),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Timed::Tsa => "tsa",
            Timed::Event => "event",
            Timed::Batch => "batch",
        }
    }
}

/// The appliance's counters and histograms.
#[derive(Debug, Default)]
pub struct Metrics {
    tokens_issued: AtomicU64,
    tokens_refused: [AtomicU64; FailureInfo::ALL.len()],
    latency: [Histogram; 3],
    statuses: [AtomicU64; 5],
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
}

impl Metrics {
    /// Records one answer: its status class, and for a timed route how long it took.
    pub fn answered(&self, route: Option<Timed>, status: StatusCode, took: Duration) {
        if let Some(r) = route {
            self.latency[r as usize].observe(took);
        }
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.statuses[class].fetch_add(1, Ordering::Relaxed);
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn signer(out: &mut String, key: &str, c: &SignerCounts) {
    let _ = writeln!(
        out,
        "auditstamp_hsm_signatures_total{{key=\"{key}\"}} {}",
        c.signatures
    );
    let _ = writeln!(
        out,
        "auditstamp_hsm_errors_total{{key=\"{key}\"}} {}",
        c.errors
    );
    let _ = writeln!(
        out,
        "auditstamp_hsm_reconnects_total{{key=\"{key}\"}} {}",
        c.reconnects
    );
}

impl Metrics {
    /// Counts one granted token.
    pub fn token_issued(&self) {
        self.tokens_issued.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one refused request, by its failInfo.
    pub fn token_refused(&self, fail: FailureInfo) {
        if let Some(i) = FailureInfo::ALL.iter().position(|f| *f == fail) {
            self.tokens_refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The exposition text.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        family(
            &mut out,
            "auditstamp_tokens_issued_total",
            "counter",
            "RFC 3161 tokens granted.",
        );
        let _ = writeln!(
            out,
            "auditstamp_tokens_issued_total {}",
            self.tokens_issued.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "auditstamp_tokens_refused_total",
            "counter",
            "RFC 3161 requests refused, by failInfo.",
        );
        for (fail, n) in FailureInfo::ALL.iter().zip(&self.tokens_refused) {
            let _ = writeln!(
                out,
                "auditstamp_tokens_refused_total{{fail_info=\"{}\"}} {}",
                fail.name(),
                n.load(Ordering::Relaxed)
            );
        }
        family(
            &mut out,
            "auditstamp_http_responses_total",
            "counter",
            "HTTP answers, by status class.",
        );
        for (i, n) in self.statuses.iter().enumerate() {
            let _ = writeln!(
                out,
                "auditstamp_http_responses_total{{class=\"{}xx\"}} {}",
                i + 1,
                n.load(Ordering::Relaxed)
            );
        }
        family(
            &mut out,
            "auditstamp_request_duration_seconds",
            "histogram",
            "Time to answer, by route (tsa, event, batch).",
        );
        for r in Timed::ALL {
            self.latency[r as usize].render(
                &mut out,
                "auditstamp_request_duration_seconds",
                &format!("route=\"{}\"", r.label()),
            );
        }
        family(
            &mut out,
            "auditstamp_hsm_signatures_total",
            "counter",
            "Signatures made in the HSM, by key (tsa, chain).",
        );
        family(
            &mut out,
            "auditstamp_hsm_errors_total",
            "counter",
            "HSM signing requests that failed, by key.",
        );
        family(
            &mut out,
            "auditstamp_hsm_reconnects_total",
            "counter",
            "HSM sessions reopened, by key.",
        );
        signer(&mut out, "tsa", &g.tsa_signer);
        signer(&mut out, "chain", &g.chain_signer);
        family(
            &mut out,
            "auditstamp_chain_events",
            "gauge",
            "Events committed to the chain.",
        );
        let _ = writeln!(out, "auditstamp_chain_events {}", g.chain_events);
        family(
            &mut out,
            "auditstamp_chain_commits_total",
            "counter",
            "Group commits of the event log since start, one flush each.",
        );
        let _ = writeln!(out, "auditstamp_chain_commits_total {}", g.chain_commits);
        family(
            &mut out,
            "auditstamp_chain_sealed_events",
            "gauge",
            "Events sealed by the last block.",
        );
        let _ = writeln!(out, "auditstamp_chain_sealed_events {}", g.chain_sealed);
        if let Some(age) = g.last_seal_age_seconds {
            family(
                &mut out,
                "auditstamp_chain_last_seal_age_seconds",
                "gauge",
                "Seconds since the last block was sealed.",
            );
            let _ = writeln!(out, "auditstamp_chain_last_seal_age_seconds {age:.3}");
        }
        if !g.witnesses.is_empty() {
            family(
                &mut out,
                "auditstamp_witness_cosigned_total",
                "counter",
                "Checkpoints a witness cosigned, by witness.",
            );
            family(
                &mut out,
                "auditstamp_witness_failures_total",
                "counter",
                "Submissions to a witness that failed, by witness.",
            );
            family(
                &mut out,
                "auditstamp_witness_size",
                "gauge",
                "The tree size a witness last cosigned, by witness.",
            );
            for w in &g.witnesses {
                let _ = writeln!(
                    out,
                    "auditstamp_witness_cosigned_total{{witness=\"{}\"}} {}",
                    w.name, w.cosigned
                );
                let _ = writeln!(
                    out,
                    "auditstamp_witness_failures_total{{witness=\"{}\"}} {}",
                    w.name, w.failed
                );
                if let Some(size) = w.size {
                    let _ = writeln!(
                        out,
                        "auditstamp_witness_size{{witness=\"{}\"}} {size}",
                        w.name
                    );
                }
            }
        }
        family(
            &mut out,
            "auditstamp_certificate_days_remaining",
            "gauge",
            "Whole days until the active TSA certificate expires.",
        );
        let _ = writeln!(
            out,
            "auditstamp_certificate_days_remaining {}",
            g.certificate_days_remaining
        );
        family(
            &mut out,
            "auditstamp_certificate_not_after_seconds",
            "gauge",
            "When the active TSA certificate expires (Unix time).",
        );
        let _ = writeln!(
            out,
            "auditstamp_certificate_not_after_seconds {}",
            g.certificate_not_after_seconds
        );
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn counts_histograms_and_gauges_render() {
        let m = Metrics::default();
        m.token_issued();
        m.token_issued();
        m.token_refused(FailureInfo::BadAlg);
        m.latency[Timed::Tsa as usize].observe(Duration::from_micros(1500));
        m.latency[Timed::Tsa as usize].observe(Duration::from_secs(9));
        let text = m.render(&Gauges {
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
        });
        assert!(
            text.contains("\nauditstamp_tokens_issued_total 2\n"),
            "{text}"
        );
        assert!(text.contains("auditstamp_tokens_refused_total{fail_info=\"badAlg\"} 1\n"));
        assert!(text.contains("auditstamp_tokens_refused_total{fail_info=\"systemFailure\"} 0\n"));
        assert!(text.contains("auditstamp_certificate_days_remaining -3\n"));
        assert!(text.contains("auditstamp_certificate_not_after_seconds 1700000000\n"));
        assert!(text.contains("auditstamp_hsm_signatures_total{key=\"tsa\"} 7\n"));
        assert!(text.contains("auditstamp_hsm_reconnects_total{key=\"tsa\"} 2\n"));
        assert!(text.contains("auditstamp_chain_events 12\n"));
        assert!(text.contains("auditstamp_chain_commits_total 3\n"));
        assert!(text.contains("auditstamp_chain_last_seal_age_seconds 0.500\n"));
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
        // Every sample line is `name{labels} value`; every family has HELP and TYPE once.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("auditstamp_"), "{line}");
            value.parse::<f64>().unwrap();
        }
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap();
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}"
            );
        }
    }
}
