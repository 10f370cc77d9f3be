//! `auditstamp bench events` and `auditstamp bench chain`.
//!
//! - `bench events --url URL`: durable events per second through `POST /v1/events/batch`
//!   and through single `POST /v1/events` with one and many concurrent clients, with
//!   latency percentiles, against a running server.
//! - `bench chain --events N`: in-process, on a fresh store in a temporary directory:
//!   the event log's own append rate, inclusion-proof generation time at N events (median
//!   and p99 over random indexes), storage bytes per event, and the process's peak RSS.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use super::{dir_bytes, percentiles, BenchError};
use crate::chain::event::{Action, Event};
use crate::chain::log::EventLog;
use crate::chain::store::Store;
use crate::chain::tlog;

/// `bench events`
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The server's base URL, e.g. https://appliance.example:8318
    #[arg(long)]
    pub url: String,
    /// TLS to the server (for an https:// URL).
    #[command(flatten)]
    pub tls: crate::client::TlsArgs,
    /// Seconds each phase runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent clients posting single events, one after another each: one phase per
    /// count, comma-separated (one client is an agency posting as its events happen).
    #[arg(long, default_value = "1,64", value_delimiter = ',', num_args = 1..)]
    pub clients: Vec<usize>,
    /// Concurrent clients posting batches.
    #[arg(long, default_value_t = 4)]
    pub batch_clients: usize,
    /// Events per batch.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
}

/// `bench chain`
#[derive(Debug, Args)]
pub struct ChainArgs {
    /// Events to append before measuring proofs.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Inclusion proofs to time.
    #[arg(long, default_value_t = 20_000)]
    pub proofs: usize,
    /// Where to put the temporary store (default: the system's temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// The agency `bench events` records as: the identity of its client certificate (an
/// appliance with mutual TLS accepts an agency's own events only), else `agency-bench`.
fn bench_agency(tls: &crate::client::TlsArgs) -> Result<String, BenchError> {
    let Some(cert) = &tls.tls_cert else {
        return Ok("agency-bench".into());
    };
    let first = crate::client::certificates(cert)
        .map_err(|e| BenchError::caused("--tls-cert", e))?
        .into_iter()
        .next();
    Ok(first
        .and_then(|c| crate::http::tls::identity_of(&c))
        .unwrap_or_else(|| "agency-bench".into()))
}

fn event_json(agency: &str, n: u64) -> serde_json::Value {
    serde_json::json!({
        "agency": agency,
        "auditor": format!("auditor-{}", n % 97),
        "action": "data_operation",
        "subject": format!("records/2026/{n:08}"),
        "data_sha256": format!("{:064x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15),
        "occurred_at": "2026-12-01T10:00:00.123Z",
        "details": {"operation": "update", "rows": n % 1000, "system": "registry"},
    })
}

struct Phase {
    events: u64,
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
    /// The first failure, for the report.
    first_error: Option<String>,
}

/// Runs `clients` tasks posting `bodies` (round robin) to `url` for `seconds`.
async fn phase(
    client: &reqwest::Client,
    url: String,
    bodies: Arc<Vec<String>>,
    per_request: u64,
    clients: usize,
    seconds: u64,
) -> Phase {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, url, bodies, errors, first_error) = (
            client.clone(),
            url.clone(),
            bodies.clone(),
            errors.clone(),
            first_error.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = c;
            while Instant::now() < deadline {
                let body = bodies[i % bodies.len()].clone();
                i += clients;
                let t = Instant::now();
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let failure = match sent {
                    Ok(r) => {
                        let status = r.status();
                        match r.bytes().await {
                            Ok(_) if status.is_success() => None,
                            Ok(b) => Some(format!(
                                "answered {status}: {}",
                                String::from_utf8_lossy(&b[..b.len().min(300)]).trim()
                            )),
                            Err(e) => Some(crate::client::error_chain(&e.without_url())),
                        }
                    }
                    Err(e) => Some(crate::client::error_chain(&e.without_url())),
                };
                match failure {
                    None => lat.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX)),
                    Some(why) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        let mut first = first_error.lock().unwrap_or_else(|e| e.into_inner());
                        first.get_or_insert(why);
                    }
                }
            }
            lat
        }));
    }
    let mut latencies_us = Vec::new();
    for t in tasks {
        if let Ok(l) = t.await {
            latencies_us.extend(l);
        }
    }
    let requests = latencies_us.len() as u64;
    let first_error = first_error.lock().unwrap_or_else(|e| e.into_inner()).take();
    Phase {
        events: requests * per_request,
        requests,
        errors: errors.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        latencies_us,
        first_error,
    }
}

fn report(name: &str, p: Phase) {
    let secs = p.elapsed.as_secs_f64();
    let (p50, p99) = percentiles(p.latencies_us);
    println!(
        "{name:<28} {:>10.0} events/s  {:>8.0} requests/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({} events in {secs:.1} s, {} errors)",
        p.events as f64 / secs,
        p.requests as f64 / secs,
        p50 as f64 / 1000.0,
        p99 as f64 / 1000.0,
        p.events,
        p.errors,
    );
    if let Some(e) = &p.first_error {
        println!("{:<28} first error: {e}", "");
    }
}

/// Runs `bench events`.
pub async fn events(a: EventsArgs) -> Result<(), BenchError> {
    let base = a.url.trim_end_matches('/').to_owned();
    let agency = bench_agency(&a.tls)?;
    let client = a
        .tls
        .http_client(Duration::from_secs(60))
        .map_err(|e| BenchError::caused("cannot set up the HTTPS client", e))?
        .pool_max_idle_per_host(
            a.clients
                .iter()
                .copied()
                .max()
                .unwrap_or(1)
                .max(a.batch_clients),
        )
        .build()
        .map_err(|e| BenchError::caused("cannot start the HTTP client", e))?;
    let probe = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .map_err(|e| BenchError::caused(format!("GET {base}/healthz"), e.without_url()))?;
    if !probe.status().is_success() {
        return Err(BenchError::Other(format!(
            "{base}/healthz answered {}",
            probe.status()
        )));
    }
    println!(
        "auditstamp bench events: {base}, {} s per phase; durable events (each reply comes after the flush)",
        a.seconds
    );
    let batches: Vec<String> = (0..8u64)
        .map(|b| {
            let items: Vec<_> = (0..a.batch_size as u64)
                .map(|i| event_json(&agency, b * 1_000_000 + i))
                .collect();
            serde_json::Value::Array(items).to_string()
        })
        .collect();
    let p = phase(
        &client,
        format!("{base}/v1/events/batch"),
        Arc::new(batches),
        a.batch_size as u64,
        a.batch_clients,
        a.seconds,
    )
    .await;
    report(&format!("batch {}x{}", a.batch_clients, a.batch_size), p);
    let singles: Arc<Vec<String>> = Arc::new(
        (0..4096)
            .map(|n| event_json(&agency, n).to_string())
            .collect(),
    );
    for &clients in &a.clients {
        let p = phase(
            &client,
            format!("{base}/v1/events"),
            singles.clone(),
            1,
            clients.max(1),
            a.seconds,
        )
        .await;
        report(&format!("single, {clients} client(s)"), p);
    }
    Ok(())
}

fn bench_event(n: u64) -> Event {
    Event {
        agency: "agency-bench".into(),
        auditor: format!("auditor-{}", n % 97),
        action: Action::DataOperation,
        subject: format!("records/2026/{n:08}"),
        data_sha256: {
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&n.to_be_bytes());
            d
        },
        occurred_at_ns: 1_764_583_200_123_000_000,
        details: r#"{"operation":"update","rows":7,"system":"registry"}"#.into(),
    }
}

/// Runs `bench chain`.
pub async fn chain(a: ChainArgs) -> Result<(), BenchError> {
    let parent = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = parent.join(format!("auditstamp-bench-{}", std::process::id()));
    let result = chain_in(&a, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn chain_in(a: &ChainArgs, dir: &std::path::Path) -> Result<(), BenchError> {
    let store = Store::open(dir)?;
    let log = EventLog::open(&store).map_err(|e| BenchError::Other(e.to_string()))?;
    println!(
        "auditstamp bench chain: {} events into {}",
        a.events,
        dir.display()
    );
    let sample = crate::chain::event::StoredEvent {
        index: 0,
        received_at_ms: 0,
        salt: [0; 16],
        event: bench_event(0),
    }
    .leaf_bytes()
    .len();
    let start = Instant::now();
    let batch = 10_000u64;
    let mut n = 0;
    // Four appenders at a time, as concurrent batch requests would be.
    while n < a.events {
        let mut jobs = Vec::new();
        for _ in 0..4 {
            if n >= a.events {
                break;
            }
            let k = batch.min(a.events - n);
            let events: Vec<Event> = (n..n + k).map(bench_event).collect();
            n += k;
            let log = log.clone();
            jobs.push(tokio::spawn(async move { log.append(events).await }));
        }
        for j in jobs {
            j.await
                .map_err(|e| BenchError::Other(e.to_string()))?
                .map_err(|e| BenchError::Other(e.to_string()))?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "append (in-process, durable)  {:>10.0} events/s  ({} events in {secs:.1} s)",
        a.events as f64 / secs,
        a.events
    );
    let size = log.size();
    let reader = log.hashes_at(size);
    let root = tlog::tree_hash(size, &reader).map_err(|e| BenchError::Other(e.to_string()))?;
    let mut times = Vec::with_capacity(a.proofs);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..a.proofs {
        // xorshift: indexes spread over the whole log.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let index = x % size;
        let t = Instant::now();
        let proof = tlog::prove_inclusion(size, index, &reader)
            .map_err(|e| BenchError::Other(e.to_string()))?;
        times.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        if times.len() <= 100 {
            let leaf = log
                .leaf(index)
                .map_err(|e| BenchError::Other(e.to_string()))?
                .ok_or_else(|| BenchError::Other(format!("event {index} missing")))?;
            tlog::verify_inclusion(&proof, size, index, &root, &tlog::leaf_hash(&leaf))
                .map_err(|e| BenchError::Other(format!("a proof did not verify: {e}")))?;
        }
    }
    let (p50, p99) = percentiles(times);
    println!(
        "inclusion proof at {size} events   median {:.1} µs  p99 {:.1} µs  ({} proofs, random indexes)",
        p50 as f64 / 1000.0,
        p99 as f64 / 1000.0,
        a.proofs
    );
    drop(reader);
    drop(log);
    store.flush()?;
    let on_disk = dir_bytes(dir);
    println!(
        "storage                       {:>10.0} bytes/event on disk ({} bytes for {size} events; leaf bytes {sample} each)",
        on_disk as f64 / size as f64,
        on_disk
    );
    // The store must not hold the log in memory: this stays flat as the log grows.
    if let Some(peak) = super::rss("VmHWM") {
        println!("memory                        peak RSS {peak} (this process, {size} events)");
    }
    Ok(())
}
