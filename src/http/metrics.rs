//! `GET /metrics`: counters and gauges in the Prometheus text exposition format (0.0.4).
//!
//! Counters are plain atomics bumped by the handlers; gauges are read when scraped.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::tsp::FailureInfo;

/// Media type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The appliance's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    tokens_issued: AtomicU64,
    tokens_refused: [AtomicU64; FailureInfo::ALL.len()],
}

/// Values read at scrape time.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    /// Whole days until the active TSA certificate expires (negative once expired).
    pub certificate_days_remaining: i64,
    /// When the active TSA certificate expires, Unix seconds.
    pub certificate_not_after_seconds: u64,
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
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP auditstamp_tokens_issued_total RFC 3161 tokens granted.\n\
             # TYPE auditstamp_tokens_issued_total counter\n\
             auditstamp_tokens_issued_total {}",
            self.tokens_issued.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP auditstamp_tokens_refused_total RFC 3161 requests refused, by failInfo.\n\
             # TYPE auditstamp_tokens_refused_total counter"
        );
        for (fail, n) in FailureInfo::ALL.iter().zip(&self.tokens_refused) {
            let _ = writeln!(
                out,
                "auditstamp_tokens_refused_total{{fail_info=\"{}\"}} {}",
                fail.name(),
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP auditstamp_certificate_days_remaining Whole days until the active TSA certificate expires.\n\
             # TYPE auditstamp_certificate_days_remaining gauge\n\
             auditstamp_certificate_days_remaining {}\n\
             # HELP auditstamp_certificate_not_after_seconds When the active TSA certificate expires (Unix time).\n\
             # TYPE auditstamp_certificate_not_after_seconds gauge\n\
             auditstamp_certificate_not_after_seconds {}",
            gauges.certificate_days_remaining, gauges.certificate_not_after_seconds
        );
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn counts_by_fail_info_and_renders_gauges() {
        let m = Metrics::default();
        m.token_issued();
        m.token_issued();
        m.token_refused(FailureInfo::BadAlg);
        let text = m.render(&Gauges {
            certificate_days_remaining: -3,
            certificate_not_after_seconds: 1_700_000_000,
        });
        assert!(
            text.contains("\nauditstamp_tokens_issued_total 2\n"),
            "{text}"
        );
        assert!(text.contains("auditstamp_tokens_refused_total{fail_info=\"badAlg\"} 1\n"));
        assert!(text.contains("auditstamp_tokens_refused_total{fail_info=\"systemFailure\"} 0\n"));
        assert!(text.contains("auditstamp_certificate_days_remaining -3\n"));
        assert!(text.contains("auditstamp_certificate_not_after_seconds 1700000000\n"));
        // Every sample line is `name{labels} value`; every metric has HELP and TYPE.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("auditstamp_"), "{line}");
            value.parse::<i64>().unwrap();
        }
        assert_eq!(text.matches("# TYPE").count(), 4);
    }
}
