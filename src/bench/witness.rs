//! `auditstamp bench witness` and `auditstamp bench witness-config`: a load generator that
//! plays N appliances against a running witness, and the `[[log]]` entries that register
//! them with it.
//!
//! Simulated appliance `i` (0-based) of seed `S` has the origin
//! `bench-<i, 5 digits>.appliances.example/<S>`, an Ed25519 key whose secret is
//! `SHA-256("auditstamp bench witness\n" || S || i)` (u64s big-endian; software keys: these
//! are simulated appliances; the witness's own key stays in its HSM), and a tree whose leaf
//! `j` has the leaf bytes `S || i || j`. Trees follow from those rules, so a second run with
//! the same seed continues where the witness is: each appliance starts from the size the
//! witness's `/status` shows for it; should a submission still meet a 409, the size in it
//! is taken as the new old size (a "resync", not counted as an error).
//!
//! Each connection plays a fixed share of the appliances, one request at a time each, so an
//! appliance's submissions never race each other. Between two checkpoints an appliance adds
//! 1 to `--max-step` leaves. A sample of cosignatures (each appliance's first, then one in
//! 32) is verified against the witness's verifier key from `/status`.
//!
//! Printed: cosigned checkpoints per second (the median of one-second samples, the first
//! and the last partial second left out), latency p50/p99, and the witness store's bytes per
//! appliance (from its `/metrics`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use ed25519_dalek::Signer as _;
use sha2::{Digest, Sha256};

use super::BenchError;
use crate::chain::cosignature::Cosigner;
use crate::chain::note::{self, Checkpoint, NoteSignature, SignedNote};
use crate::chain::tlog::{self, Hash};
use crate::witness::protocol::{
    add_checkpoint_body, parse_cosignatures, parse_size_body, ADD_CHECKPOINT_PATH,
};

/// `bench witness`
#[derive(Debug, Args)]
pub struct WitnessArgs {
    /// The witness's base URL, e.g. https://witness.example:8320; repeat it for several
    /// witness servers sharing one store (connections are spread over them, each
    /// appliance stays with one).
    #[arg(long, required = true)]
    pub url: Vec<String>,
    /// TLS to the witness (for an https:// URL).
    #[command(flatten)]
    pub tls: crate::client::TlsArgs,
    /// Simulated appliances (registered with `bench witness-config` and the same seed).
    #[arg(long, default_value_t = 1000)]
    pub logs: u64,
    /// The seed the appliances' keys and trees derive from.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Instead of running for --seconds: every appliance submits this many checkpoints.
    #[arg(long)]
    pub rounds: Option<u64>,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Most leaves an appliance adds between two checkpoints.
    #[arg(long, default_value_t = 16)]
    pub max_step: u64,
    /// Print the figures as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `bench witness-config`
#[derive(Debug, Args)]
pub struct WitnessConfigArgs {
    /// Simulated appliances.
    #[arg(long, default_value_t = 1000)]
    pub logs: u64,
    /// The seed their keys derive from.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write the `[[log]]` entries; standard output when absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Simulated appliance `index` of `seed`'s origin.
pub fn origin(seed: u64, index: u64) -> String {
    format!("bench-{index:05}.appliances.example/{seed}")
}

/// Simulated appliance `index` of `seed`'s (software) signing key.
pub fn signing_key(seed: u64, index: u64) -> ed25519_dalek::SigningKey {
    let mut h = Sha256::new();
    h.update(b"auditstamp bench witness\n");
    h.update(seed.to_be_bytes());
    h.update(index.to_be_bytes());
    ed25519_dalek::SigningKey::from_bytes(&h.finalize().into())
}

/// The `[[log]]` entries of `bench witness-config` (the caller writes them to `a.out`).
pub fn witness_config(a: &WitnessConfigArgs) -> String {
    let mut out = format!(
        "# {} simulated appliances of `auditstamp bench witness --seed {}` (software keys:\n\
         # for benchmarks only). Append to a witness configuration.\n",
        a.logs, a.seed
    );
    for i in 0..a.logs {
        let key = signing_key(a.seed, i);
        let o = origin(a.seed, i);
        out.push_str(&format!(
            "\n[[log]]\norigin = \"{o}\"\nkey = \"{}\"\n",
            note::verifier_key(&o, &key.verifying_key().to_bytes())
        ));
    }
    out
}

/// One simulated appliance: its key, its tree, and what the witness last cosigned.
struct SimLog {
    seed: u64,
    index: u64,
    origin: String,
    key: ed25519_dalek::SigningKey,
    key_id: [u8; 4],
    hashes: Vec<Hash>,
    size: u64,
    cosigned: u64,
    /// Successful submissions in this run.
    done: u64,
    rng: u64,
}

impl SimLog {
    fn new(seed: u64, index: u64) -> SimLog {
        let key = signing_key(seed, index);
        let origin = origin(seed, index);
        SimLog {
            key_id: note::key_id(&origin, &key.verifying_key().to_bytes()),
            seed,
            index,
            origin,
            key,
            hashes: Vec::new(),
            size: 0,
            cosigned: 0,
            done: 0,
            rng: seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
        }
    }

    fn grow_to(&mut self, size: u64) -> Result<(), BenchError> {
        while self.size < size {
            let mut leaf = [0u8; 24];
            leaf[..8].copy_from_slice(&self.seed.to_be_bytes());
            leaf[8..16].copy_from_slice(&self.index.to_be_bytes());
            leaf[16..].copy_from_slice(&self.size.to_be_bytes());
            let add =
                tlog::stored_hashes_for_record(self.size, tlog::leaf_hash(&leaf), &self.hashes)
                    .map_err(|e| BenchError::Other(e.to_string()))?;
            self.hashes.extend(add);
            self.size += 1;
        }
        Ok(())
    }

    fn step(&mut self, max: u64) -> u64 {
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        1 + self.rng % max.max(1)
    }

    /// The request body for the current tree from the last cosigned size, and the
    /// checkpoint's note text.
    fn request(&self) -> Result<(String, String), BenchError> {
        let err = |e: tlog::TlogError| BenchError::Other(e.to_string());
        let root = tlog::tree_hash(self.size, &self.hashes).map_err(err)?;
        let text = Checkpoint {
            origin: self.origin.clone(),
            size: self.size,
            root,
            extensions: Vec::new(),
        }
        .body();
        let note = SignedNote {
            signatures: vec![NoteSignature {
                name: self.origin.clone(),
                id: self.key_id,
                signature: self.key.sign(text.as_bytes()).to_bytes().to_vec(),
            }],
            text,
        };
        let proof = tlog::prove_consistency(self.size, self.cosigned, &self.hashes).map_err(err)?;
        let body = add_checkpoint_body(self.cosigned, &proof, &note.format())
            .map_err(|e| BenchError::Other(e.to_string()))?;
        Ok((body, note.text))
    }
}

/// What all connections count together.
#[derive(Default)]
struct Counters {
    cosigned: AtomicU64,
    errors: AtomicU64,
    resyncs: AtomicU64,
    verified: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Counters {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(what);
        }
    }
}

/// Most consecutive failures of one appliance before its connection gives up.
const MAX_FAILURES: u32 = 5;

/// What every connection of a run shares.
struct Run {
    client: reqwest::Client,
    rounds: Option<u64>,
    deadline: Instant,
    max_step: u64,
    counters: Counters,
    cosigner: Option<Cosigner>,
}

/// One connection: plays `logs` until the deadline or until each did `run.rounds`.
async fn connection(run: Arc<Run>, url: String, mut logs: Vec<SimLog>) -> Vec<u32> {
    let (rounds, deadline, max_step) = (run.rounds, run.deadline, run.max_step);
    let counters = &run.counters;
    let mut latencies = Vec::new();
    let mut failures = vec![0u32; logs.len()];
    let mut turn = 0usize;
    loop {
        // Stop at the deadline, or when every appliance is done or has given up.
        if rounds.is_none() && Instant::now() >= deadline {
            break;
        }
        let finished =
            |l: &SimLog, f: u32| f >= MAX_FAILURES || rounds.is_some_and(|r| l.done >= r);
        if logs.iter().zip(&failures).all(|(l, f)| finished(l, *f)) {
            break;
        }
        let i = turn % logs.len();
        turn += 1;
        if finished(&logs[i], failures[i]) {
            continue;
        }
        let log = &mut logs[i];
        if log.size == log.cosigned {
            let step = log.step(max_step);
            if let Err(e) = log.grow_to(log.size + step) {
                counters.error(e.to_string());
                failures[i] = MAX_FAILURES;
                continue;
            }
        }
        let (body, text) = match log.request() {
            Ok(r) => r,
            Err(e) => {
                counters.error(e.to_string());
                failures[i] = MAX_FAILURES;
                continue;
            }
        };
        let started = Instant::now();
        let answer = match run.client.post(&url).body(body).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                r.text().await.map(|t| (status, t))
            }
            Err(e) => Err(e),
        };
        let elapsed = started.elapsed();
        match answer {
            Ok((200, lines)) => {
                latencies.push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
                counters.cosigned.fetch_add(1, Ordering::Relaxed);
                if let Some(c) = &run.cosigner {
                    if log.done == 0 || log.done.is_multiple_of(32) {
                        let ok = parse_cosignatures(&text, &lines)
                            .ok()
                            .is_some_and(|n| c.verify(&n).is_ok());
                        if ok {
                            counters.verified.fetch_add(1, Ordering::Relaxed);
                        } else {
                            counters.error(format!(
                                "{}: a cosignature does not verify: {lines:?}",
                                log.origin
                            ));
                        }
                    }
                }
                log.cosigned = log.size;
                log.done += 1;
                failures[i] = 0;
            }
            Ok((409, size)) => match parse_size_body(&size) {
                Ok(s) => {
                    counters.resyncs.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = log.grow_to(s) {
                        counters.error(e.to_string());
                        failures[i] = MAX_FAILURES;
                        continue;
                    }
                    log.cosigned = s;
                    failures[i] += 1;
                }
                Err(e) => {
                    counters.error(format!("{}: 409 with {size:?}: {e}", log.origin));
                    failures[i] += 1;
                }
            },
            Ok((status, text)) => {
                counters.error(format!("{}: {status} {}", log.origin, text.trim_end()));
                failures[i] += 1;
            }
            Err(e) => {
                let e = e.without_url();
                counters.error(format!(
                    "{}: {}",
                    log.origin,
                    crate::client::error_chain(&e)
                ));
                failures[i] += 1;
            }
        }
    }
    latencies
}

/// A sample's value from Prometheus text.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Runs `bench witness`.
pub async fn witness(a: WitnessArgs) -> Result<(), BenchError> {
    let bases: Vec<String> = a
        .url
        .iter()
        .map(|u| u.trim_end_matches('/').to_owned())
        .collect();
    let base = bases.first().cloned().unwrap_or_default();
    let clients = a.clients.max(1);
    let client = a
        .tls
        .http_client(Duration::from_secs(60))
        .map_err(|e| BenchError::caused("cannot set up the HTTPS client", e))?
        .pool_max_idle_per_host(clients)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| BenchError::caused("cannot start the HTTP client", e))?;
    let status_url = format!("{base}/status");
    let status: serde_json::Value = client
        .get(&status_url)
        .send()
        .await
        .map_err(|e| BenchError::caused(format!("GET {status_url}"), e.without_url()))?
        .json()
        .await
        .map_err(|e| BenchError::caused(format!("GET {status_url}"), e.without_url()))?;
    let cosigner = status["witness"]["verifier_key"]
        .as_str()
        .and_then(|k| Cosigner::parse(k).ok());
    if cosigner.is_none() {
        return Err(BenchError::Other(format!(
            "{base}/status does not name the witness's verifier key"
        )));
    }
    if !a.json {
        let mode = match a.rounds {
            Some(r) => format!("{r} checkpoints per appliance"),
            None => format!("{} s", a.seconds),
        };
        println!(
            "auditstamp bench witness: {}, {} appliances (seed {}), {clients} connections, {mode}; \
             each 200 comes after the witness's commit",
            bases.join(" + "),
            a.logs,
            a.seed
        );
    }
    // Where the witness is for each appliance (a previous run with the same seed).
    let recorded: std::collections::HashMap<String, u64> = status["appliances"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|s| Some((s["origin"].as_str()?.to_owned(), s["size"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    let mut shares: Vec<Vec<SimLog>> = (0..clients).map(|_| Vec::new()).collect();
    for i in 0..a.logs {
        let c = usize::try_from(i % clients as u64).unwrap_or(0);
        let mut log = SimLog::new(a.seed, i);
        if let Some(&size) = recorded.get(&log.origin) {
            log.grow_to(size)?;
            log.cosigned = size;
        }
        shares[c].push(log);
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.seconds);
    let run = Arc::new(Run {
        client: client.clone(),
        rounds: a.rounds,
        deadline,
        max_step: a.max_step,
        counters: Counters::default(),
        cosigner,
    });
    let mut tasks = Vec::new();
    for (c, logs) in shares.into_iter().enumerate() {
        let url = format!("{}{ADD_CHECKPOINT_PATH}", bases[c % bases.len()]);
        tasks.push(tokio::spawn(connection(Arc::clone(&run), url, logs)));
    }
    // Cosigned checkpoints per second, sampled about every second until the connections are
    // done; each sample divides by the time that really passed (a busy runtime delays ticks).
    let samples_handle = Arc::new(Mutex::new(Vec::<u64>::new()));
    let sampler = {
        let run = Arc::clone(&run);
        let samples = Arc::clone(&samples_handle);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let (mut last, mut at) = (0, Instant::now());
            loop {
                tick.tick().await;
                let (now, when) = (
                    run.counters.cosigned.load(Ordering::Relaxed),
                    Instant::now(),
                );
                let secs = when.duration_since(at).as_secs_f64().max(1e-3);
                let rate = ((now - last) as f64 / secs).round() as u64;
                samples.lock().unwrap_or_else(|e| e.into_inner()).push(rate);
                (last, at) = (now, when);
            }
        })
    };
    let mut latencies = Vec::new();
    for t in tasks {
        if let Ok(l) = t.await {
            latencies.extend(l);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    sampler.abort();
    let mut samples = samples_handle
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    // The first second warms up (connections, resyncs); the last is partial.
    if samples.len() > 2 {
        samples.remove(0);
    }
    let counters = &run.counters;
    let cosigned = counters.cosigned.load(Ordering::Relaxed);
    let errors = counters.errors.load(Ordering::Relaxed);
    let resyncs = counters.resyncs.load(Ordering::Relaxed);
    let verified = counters.verified.load(Ordering::Relaxed);
    let per_second = if samples.is_empty() {
        (cosigned as f64 / elapsed.max(1e-9)).round() as u64
    } else {
        super::percentiles(samples.clone()).0
    };
    let (p50, p99) = super::percentiles(latencies);
    let (p50, p99) = (f64::from(p50) / 1000.0, f64::from(p99) / 1000.0);
    let metrics = match client.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let registered = metric(&metrics, "auditstamp_witness_appliances").unwrap_or(a.logs);
    let disk = metric(&metrics, "auditstamp_witness_store_disk_bytes");
    let records = metric(&metrics, "auditstamp_witness_store_record_bytes");
    let per = |b: Option<u64>| b.map(|b| b as f64 / registered.max(1) as f64);
    let first_error = counters
        .first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "cosigned": cosigned,
                "errors": errors,
                "resyncs": resyncs,
                "verified": verified,
                "seconds": elapsed,
                "cosigned_per_second_median": per_second,
                "cosigned_per_second_samples": samples,
                "latency_ms_p50": p50,
                "latency_ms_p99": p99,
                "appliances_registered": registered,
                "store_disk_bytes": disk,
                "store_record_bytes": records,
                "store_disk_bytes_per_appliance": per(disk),
                "store_record_bytes_per_appliance": per(records),
                "first_error": first_error,
            })
        );
    } else {
        println!(
            "cosigned   {per_second:>7} checkpoints/s (median of {} one-second samples; {:.0}/s over the whole run)",
            samples.len(),
            cosigned as f64 / elapsed.max(1e-9)
        );
        println!(
            "latency    p50 {p50:.2} ms  p99 {p99:.2} ms  ({cosigned} cosigned in {elapsed:.1} s, {errors} errors, {resyncs} resyncs, {verified} cosignatures verified)"
        );
        match (disk, records) {
            (Some(d), Some(r)) => println!(
                "store      {:.0} bytes/appliance on disk, {:.0} bytes/appliance of records ({d} and {r} bytes for {registered} appliances)",
                d as f64 / registered.max(1) as f64,
                r as f64 / registered.max(1) as f64,
            ),
            _ => println!("store      (the witness's /metrics gave no store figures)"),
        }
        if let Some(e) = &first_error {
            println!("first error: {e}");
        }
    }
    Ok(())
}
