//! `auditstamp bench search`: the event search in-process, on a log of millions of events
//! across many agencies and auditors.
//!
//! 1. **Append rate, index on beside off**: fresh logs of `--append-events` each, appended
//!    as concurrent batch requests would be, alternately without a search index and with
//!    one following the log (as the server runs it); `--rounds` of each pair, in turn off
//!    then on and on then off; the median of the pairs' ratios, and the ratio of medians.
//!    "on" counts until the appends are durable (the index follows in its own thread;
//!    how long it then needs to catch up is printed beside).
//! 2. **Search latency**: one log grown to each size of `--sizes` (with the index
//!    following), then for each kind of filter `--queries` searches with random values,
//!    each the first page of 100 newest first, read and checked as the server answers:
//!    median and p99, the index's bytes per event, and the process's resident memory.
//!
//! The population: `--agencies` agencies, `--auditors` auditors (each of one agency), six
//! actions of uneven frequency, 100,000 case subjects, occurred_at over a year in the
//! order of receipt with one event in ten backdated up to 30 days.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use super::{percentiles, BenchError};
use crate::chain::event::{Action, Event};
use crate::chain::index::{IndexError, Order, Query, SearchIndex};
use crate::chain::log::EventLog;
use crate::chain::store::Store;

/// `bench search`
#[derive(Debug, Args)]
pub struct SearchBenchArgs {
    /// Log sizes at which searches are timed (the log grows from one to the next).
    #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
    pub sizes: Vec<u64>,
    /// Searches per kind of filter at each size.
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Agencies.
    #[arg(long, default_value_t = 100)]
    pub agencies: u64,
    /// Auditors (each of one agency).
    #[arg(long, default_value_t = 1_000)]
    pub auditors: u64,
    /// Events appended per log in the append-rate comparison (0: skip it).
    #[arg(long, default_value_t = 500_000)]
    pub append_events: u64,
    /// Rounds of the append-rate comparison (each: one log without the index, one with).
    #[arg(long, default_value_t = 11)]
    pub rounds: usize,
    /// Where to put the temporary stores (default: the system's temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Unix ns of 2026-01-01T00:00:00Z.
const YEAR_START_NS: i64 = 1_767_225_600_000_000_000;
const DAY_NS: i64 = 86_400_000_000_000;
const ACTIONS: [(Action, u64); 6] = [
    (Action::Access, 40),
    (Action::DataOperation, 25),
    (Action::DataCollection, 15),
    (Action::Export, 10),
    (Action::IdentityManagement, 6),
    (Action::TsaIssued, 4),
];
const SUBJECTS: u64 = 100_000;

/// A splitmix64 step: the bench's reproducible randomness.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The generated population.
#[derive(Debug, Clone, Copy)]
struct Population {
    agencies: u64,
    auditors: u64,
    /// The events the occurred_at times spread over a year for.
    horizon: u64,
}

impl Population {
    fn action(&self, r: u64) -> Action {
        let mut x = r % 100;
        for (a, w) in &ACTIONS {
            if x < *w {
                return a.clone();
            }
            x -= w;
        }
        Action::Access
    }

    fn event(&self, n: u64) -> Event {
        let r = mix(n);
        let auditor = r % self.auditors;
        let agency = auditor % self.agencies;
        let mut occurred = YEAR_START_NS
            + i64::try_from(n.saturating_mul(365) / self.horizon.max(1)).unwrap_or(0) * DAY_NS
            + i64::try_from((r >> 20) % 86_400).unwrap_or(0) * 1_000_000_000;
        if (r >> 40).is_multiple_of(10) {
            occurred -= i64::try_from((r >> 44) % 30).unwrap_or(0) * DAY_NS;
        }
        let mut digest = [0u8; 32];
        digest[..8].copy_from_slice(&n.to_be_bytes());
        Event {
            agency: format!("agency-{agency:03}"),
            auditor: format!("auditor-{auditor:04}"),
            action: self.action(r >> 8),
            subject: format!("case/2026/{:05}", (r >> 24) % SUBJECTS),
            data_sha256: digest,
            occurred_at_ns: occurred,
            details: r#"{"rows":7,"system":"registry"}"#.into(),
        }
    }
}

/// Runs `bench search`.
pub async fn search(a: SearchBenchArgs) -> Result<(), BenchError> {
    let parent = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = parent.join(format!("auditstamp-bench-search-{}", std::process::id()));
    let result = search_in(&a, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn other(e: impl std::fmt::Display) -> BenchError {
    BenchError::Other(e.to_string())
}

/// Appends events `from..to` of `pop`, four batches of 10,000 at a time.
async fn append(log: &EventLog, pop: Population, from: u64, to: u64) -> Result<(), BenchError> {
    let mut n = from;
    while n < to {
        let mut jobs = Vec::new();
        for _ in 0..4 {
            if n >= to {
                break;
            }
            let k = 10_000.min(to - n);
            let events: Vec<Event> = (n..n + k).map(|i| pop.event(i)).collect();
            n += k;
            let log = log.clone();
            jobs.push(tokio::spawn(async move { log.append(events).await }));
        }
        for j in jobs {
            j.await.map_err(other)?.map_err(other)?;
        }
    }
    Ok(())
}

/// Waits until `index` holds `size` events.
async fn caught_up(index: &SearchIndex, size: u64) {
    while index.indexed() < size {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn search_in(a: &SearchBenchArgs, dir: &Path) -> Result<(), BenchError> {
    let biggest = a.sizes.iter().copied().max().unwrap_or(0);
    let pop = Population {
        agencies: a.agencies.max(1),
        auditors: a.auditors.max(1),
        horizon: biggest.max(1),
    };
    println!(
        "auditstamp bench search: {} agencies, {} auditors, {SUBJECTS} subjects; sizes {:?}; in {}",
        pop.agencies,
        pop.auditors,
        a.sizes,
        dir.display()
    );
    if a.append_events > 0 {
        append_rates(a, pop, dir).await?;
    }
    let store_dir = dir.join("log");
    let store = Store::open(&store_dir)?;
    let log = EventLog::open(&store).map_err(other)?;
    let index = SearchIndex::open(&store_dir, &log).map_err(other)?;
    index.follow(log.clone()).map_err(other)?;
    let mut sizes = a.sizes.clone();
    sizes.sort_unstable();
    let mut rows = Vec::new();
    for size in sizes {
        let t = Instant::now();
        append(&log, pop, log.size(), size).await?;
        let appended = t.elapsed();
        caught_up(&index, size).await;
        println!(
            "\n{size} events: appended in {:.1} s, indexed {:.1} s after the first append of this step",
            appended.as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
        let log_bytes = super::dir_bytes(&store_dir.join(crate::chain::log::LOG_DIR));
        let index_bytes = index.disk_bytes().map_err(other)?;
        let live = index.live_bytes().map_err(other)?;
        println!(
            "  index {:.1} bytes/event on disk ({index_bytes} bytes; keys and values {:.1} bytes/event), log {:.1} bytes/event, resident memory {}",
            index_bytes as f64 / size as f64,
            live as f64 / size as f64,
            log_bytes as f64 / size as f64,
            super::rss("VmRSS").unwrap_or_else(|| "?".into()),
        );
        println!(
            "  {:<44} {:>9} {:>9} {:>8} {:>10}",
            "filter (first page of 100, newest first)", "p50 ms", "p99 ms", "events", "examined"
        );
        for kind in KINDS {
            let r = time_kind(&log, &index, pop, size, kind, a.queries)?;
            println!(
                "  {:<44} {:>9.2} {:>9.2} {:>8.1} {:>10.0}",
                kind.label(),
                r.p50_ms,
                r.p99_ms,
                r.mean_hits,
                r.mean_examined
            );
            rows.push(format!(
                "{}:{}:p50={:.2}:p99={:.2}",
                size,
                kind.key(),
                r.p50_ms,
                r.p99_ms
            ));
        }
        println!(
            "result search size={size} index_bytes_per_event={:.1} worst_p99_ms={:.2}",
            index_bytes as f64 / size as f64,
            rows.iter()
                .filter(|r| r.starts_with(&format!("{size}:")))
                .filter_map(|r| r.rsplit("p99=").next()?.parse::<f64>().ok())
                .fold(0.0, f64::max)
        );
    }
    println!(
        "memory: peak RSS {} (this process)",
        super::rss("VmHWM").unwrap_or_else(|| "?".into())
    );
    Ok(())
}

/// The append-rate comparison: alternate rounds without and with the index.
async fn append_rates(a: &SearchBenchArgs, pop: Population, dir: &Path) -> Result<(), BenchError> {
    println!(
        "append rate, {} events per log, {} rounds each, alternating (off then on, then on then off, ...):",
        a.append_events, a.rounds
    );
    let mut off = Vec::new();
    let mut on = Vec::new();
    // Each round's on/off ratio, in thousandths.
    let mut paired = Vec::new();
    let mut catch_up = Vec::new();
    for round in 0..a.rounds {
        // Each round in the other order than the one before, so that neither setting
        // always runs first (after the deletion of the last round's store).
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for with_index in order {
            let d = dir.join(format!("append-{round}-{with_index}"));
            let store = Store::open(&d)?;
            let log = EventLog::open(&store).map_err(other)?;
            let index = if with_index {
                let ix = SearchIndex::open(&d, &log).map_err(other)?;
                ix.follow(log.clone()).map_err(other)?;
                Some(ix)
            } else {
                None
            };
            let t = Instant::now();
            append(&log, pop, 0, a.append_events).await?;
            let secs = t.elapsed().as_secs_f64();
            let rate = a.append_events as f64 / secs;
            if let Some(ix) = &index {
                caught_up(ix, a.append_events).await;
                let lag = t.elapsed().as_secs_f64() - secs;
                catch_up.push((lag * 1000.0) as u64);
                on.push(rate as u64);
            } else {
                off.push(rate as u64);
            }
            println!(
                "  round {round} index {:<3} {:>9.0} events/s",
                if with_index { "on" } else { "off" },
                rate
            );
            drop(index);
            drop(log);
            drop(store);
            let _ = std::fs::remove_dir_all(&d);
        }
        if let (Some(a), Some(b)) = (on.last(), off.last()) {
            paired.push(*a * 1000 / (*b).max(1));
        }
    }
    let (paired50, _) = percentiles(paired);
    let (off50, _) = percentiles(off);
    let (on50, _) = percentiles(on);
    let (lag50, _) = percentiles(catch_up);
    println!(
        "  median: off {off50} events/s, on {on50} events/s: on/off = {:.2}; median of the rounds' on/off = {:.2}; the index caught up {:.2} s after the last append (median)",
        on50 as f64 / off50.max(1) as f64,
        paired50 as f64 / 1000.0,
        lag50 as f64 / 1000.0
    );
    println!(
        "result search_append off={off50} on={on50} ratio={:.2} paired_ratio={:.2}",
        on50 as f64 / off50.max(1) as f64,
        paired50 as f64 / 1000.0
    );
    Ok(())
}

/// The kinds of search timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Agency,
    Auditor,
    Action,
    Subject,
    SubjectPrefix,
    Occurred,
    Received,
    AuditorMonth,
    AgencyActionWeek,
    Everything,
}

const KINDS: [Kind; 10] = [
    Kind::Agency,
    Kind::Auditor,
    Kind::Action,
    Kind::Subject,
    Kind::SubjectPrefix,
    Kind::Occurred,
    Kind::Received,
    Kind::AuditorMonth,
    Kind::AgencyActionWeek,
    Kind::Everything,
];

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Agency => "agency=",
            Kind::Auditor => "auditor=",
            Kind::Action => "action=",
            Kind::Subject => "subject=",
            Kind::SubjectPrefix => "subject_prefix= (100 subjects)",
            Kind::Occurred => "from=&to= (one day of occurred_at)",
            Kind::Received => "received_from=&received_to= (1% of the log)",
            Kind::AuditorMonth => "auditor= & from=&to= (one month)",
            Kind::AgencyActionWeek => "agency= & action= & from=&to= (one week)",
            Kind::Everything => "no filter",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Kind::Agency => "agency",
            Kind::Auditor => "auditor",
            Kind::Action => "action",
            Kind::Subject => "subject",
            Kind::SubjectPrefix => "subject_prefix",
            Kind::Occurred => "occurred",
            Kind::Received => "received",
            Kind::AuditorMonth => "auditor_month",
            Kind::AgencyActionWeek => "agency_action_week",
            Kind::Everything => "none",
        }
    }

    /// A random query of this kind over a log of `size` events.
    fn query(
        self,
        pop: Population,
        size: u64,
        r: u64,
        log: &EventLog,
    ) -> Result<Query, BenchError> {
        let day = |d: u64| YEAR_START_NS + i64::try_from(d).unwrap_or(0) * DAY_NS;
        // Days the log's occurred_at times cover so far.
        let days = (size.saturating_mul(365) / pop.horizon.max(1)).max(1);
        let sample = pop.event(r % size);
        let mut q = Query::default();
        match self {
            Kind::Agency => q.agency = Some(sample.agency),
            Kind::Auditor => q.auditor = Some(sample.auditor),
            Kind::Action => q.action = Some(sample.action.name().into_owned()),
            Kind::Subject => q.subject = Some(sample.subject),
            Kind::SubjectPrefix => {
                q.subject_prefix = Some(format!("case/2026/{:03}", (r >> 8) % (SUBJECTS / 100)))
            }
            Kind::Occurred => {
                let d = (r >> 8) % days;
                q.occurred_from_ns = Some(day(d));
                q.occurred_to_ns = Some(day(d + 1));
            }
            Kind::Received => {
                // A window holding about 1% of the log, found from two events' receive times.
                let first = (r >> 8) % size;
                let last = (first + size / 100).min(size - 1);
                let at = |i: u64| -> Result<u64, BenchError> {
                    let leaf = log
                        .leaf(i)
                        .map_err(other)?
                        .ok_or_else(|| other("no event"))?;
                    Ok(crate::chain::event::StoredEvent::from_leaf_bytes(&leaf)
                        .map_err(other)?
                        .received_at_ms)
                };
                q.received_from_ms = Some(at(first)?);
                q.received_to_ms = Some(at(last)? + 1);
            }
            Kind::AuditorMonth => {
                let d = (r >> 8) % days;
                q.auditor = Some(sample.auditor);
                q.occurred_from_ns = Some(day(d.saturating_sub(30)));
                q.occurred_to_ns = Some(day(d));
            }
            Kind::AgencyActionWeek => {
                let d = (r >> 8) % days;
                q.agency = Some(sample.agency);
                q.action = Some(sample.action.name().into_owned());
                q.occurred_from_ns = Some(day(d.saturating_sub(7)));
                q.occurred_to_ns = Some(day(d));
            }
            Kind::Everything => {}
        }
        Ok(q)
    }
}

struct KindResult {
    p50_ms: f64,
    p99_ms: f64,
    mean_hits: f64,
    mean_examined: f64,
}

fn time_kind(
    log: &EventLog,
    index: &SearchIndex,
    pop: Population,
    size: u64,
    kind: Kind,
    queries: usize,
) -> Result<KindResult, BenchError> {
    let no_archive = |bundle: u64| -> Result<Vec<Vec<u8>>, IndexError> {
        Err(IndexError::Archive {
            bundle,
            detail: "the bench has no archive".into(),
        })
    };
    let mut times = Vec::with_capacity(queries);
    let (mut hits, mut examined) = (0u64, 0u64);
    for q in 0..queries {
        let query = kind.query(pop, size, mix(q as u64 ^ (kind as u64) << 32), log)?;
        let t = Instant::now();
        let page = index
            .search(log, &query, Order::NewestFirst, 100, None, &no_archive)
            .map_err(other)?;
        times.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        hits += page.hits.len() as u64;
        examined += page.examined;
    }
    let (p50, p99) = percentiles(times);
    Ok(KindResult {
        p50_ms: p50 as f64 / 1e6,
        p99_ms: p99 as f64 / 1e6,
        mean_hits: hits as f64 / queries.max(1) as f64,
        mean_examined: examined as f64 / queries.max(1) as f64,
    })
}
