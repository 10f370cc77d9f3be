//! `auditstamp bench ...`: programs that measure and print figures (never pass/fail).
//!
//! - `bench events --url URL`: durable events per second through `POST /v1/events/batch`
//!   and through single `POST /v1/events` with many concurrent clients, with latency
//!   percentiles, against a running server.
//! - `bench chain --events N`: in-process, on a fresh store in a temporary directory:
//!   the event log's own append rate, inclusion-proof generation time at N events (median
//!   and p99 over random indexes), storage bytes per event, and the process's peak RSS.
//! - `bench witness --url URL --logs N --seed S`: cosigned checkpoints per second, latency
//!   and store bytes per appliance of a running witness, playing N simulated appliances
//!   (registered with `bench witness-config --logs N --seed S`); see [`super::bench_witness`].
//! - `bench verify`: RFC 3161 tokens verified per second on one thread (the full
//!   checklist), beside `openssl speed ecdsap256`'s verify/s measured in the same run, and
//!   the raw ECDSA P-256 (and RSA-2048) verify rate of each signature backend.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use super::CliError;
use crate::chain::event::{Action, Event};
use crate::chain::log::EventLog;
use crate::chain::store::Store;
use crate::chain::tlog;

/// `auditstamp bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Events per second through HTTP against a running server.
    Events(EventsArgs),
    /// The event log in-process: append rate, proof time, bytes per event.
    Chain(ChainArgs),
    /// The HSM's own limit: signatures per second with N sessions, CPU per signature.
    Hsm(super::bench_tsa::HsmArgs),
    /// RFC 3161 tokens per second through HTTP against a running server.
    Tokens(super::bench_tsa::TokensArgs),
    /// Cosigned checkpoints per second of a running witness, playing N simulated appliances.
    Witness(super::bench_witness::WitnessArgs),
    /// The `[[log]]` entries that register `bench witness`'s simulated appliances.
    WitnessConfig(super::bench_witness::WitnessConfigArgs),
    /// Tokens verified per second on one thread, beside OpenSSL's raw P-256 verify rate.
    Verify(VerifyBenchArgs),
}

/// `bench verify`
#[derive(Debug, Args)]
pub struct VerifyBenchArgs {
    /// Seconds each measurement runs (OpenSSL's too).
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
}

/// `bench events`
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The server's base URL, e.g. https://appliance.example:8318
    #[arg(long)]
    pub url: String,
    /// TLS to the server (for an https:// URL).
    #[command(flatten)]
    pub tls: super::TlsArgs,
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

/// Runs a `bench` subcommand.
pub fn run(cmd: BenchCommand) -> Result<(), CliError> {
    let cmd = match cmd {
        BenchCommand::Hsm(a) => return super::bench_tsa::hsm(&a),
        BenchCommand::Tokens(a) => return super::bench_tsa::tokens(&a),
        other => other,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))?;
    match cmd {
        BenchCommand::Events(a) => runtime.block_on(events(a)),
        BenchCommand::Chain(a) => runtime.block_on(chain(a)),
        BenchCommand::Hsm(_) | BenchCommand::Tokens(_) => Ok(()),
        BenchCommand::Witness(a) => runtime.block_on(super::bench_witness::witness(a)),
        BenchCommand::WitnessConfig(a) => super::bench_witness::witness_config(&a),
        BenchCommand::Verify(a) => verify(&a),
    }
}

/// The agency `bench events` records as: the identity of its client certificate (an
/// appliance with mutual TLS accepts an agency's own events only), else `agency-bench`.
fn bench_agency(tls: &super::TlsArgs) -> Result<String, CliError> {
    let Some(cert) = &tls.tls_cert else {
        return Ok("agency-bench".into());
    };
    let first = crate::client::certificates(cert)
        .map_err(|e| CliError::caused("--tls-cert", e))?
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

/// Latencies in microseconds: (p50, p99).
fn percentiles(mut v: Vec<u64>) -> (u64, u64) {
    if v.is_empty() {
        return (0, 0);
    }
    v.sort_unstable();
    let at = |q: f64| {
        let i = ((v.len() - 1) as f64 * q).round();
        v[i as usize]
    };
    (at(0.50), at(0.99))
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

async fn events(a: EventsArgs) -> Result<(), CliError> {
    let base = a.url.trim_end_matches('/').to_owned();
    let agency = bench_agency(&a.tls)?;
    let client = a
        .tls
        .http_client(Duration::from_secs(60))?
        .pool_max_idle_per_host(
            a.clients
                .iter()
                .copied()
                .max()
                .unwrap_or(1)
                .max(a.batch_clients),
        )
        .build()
        .map_err(|e| CliError::caused("cannot start the HTTP client", e))?;
    let probe = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .map_err(|e| CliError::caused(format!("GET {base}/healthz"), e.without_url()))?;
    if !probe.status().is_success() {
        return Err(CliError::Other(format!(
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

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

async fn chain(a: ChainArgs) -> Result<(), CliError> {
    let parent = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = parent.join(format!("auditstamp-bench-{}", std::process::id()));
    let result = chain_in(&a, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn chain_in(a: &ChainArgs, dir: &std::path::Path) -> Result<(), CliError> {
    let store = Store::open(dir)?;
    let log = EventLog::open(&store).map_err(|e| CliError::Other(e.to_string()))?;
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
                .map_err(|e| CliError::Other(e.to_string()))?
                .map_err(|e| CliError::Other(e.to_string()))?;
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
    let root = tlog::tree_hash(size, &reader).map_err(|e| CliError::Other(e.to_string()))?;
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
            .map_err(|e| CliError::Other(e.to_string()))?;
        times.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        if times.len() <= 100 {
            let leaf = log
                .leaf(index)
                .map_err(|e| CliError::Other(e.to_string()))?
                .ok_or_else(|| CliError::Other(format!("event {index} missing")))?;
            tlog::verify_inclusion(&proof, size, index, &root, &tlog::leaf_hash(&leaf))
                .map_err(|e| CliError::Other(format!("a proof did not verify: {e}")))?;
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
    if let Some(peak) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_owned()))
        })
    {
        println!("memory                        peak RSS {peak} (this process, {size} events)");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// bench verify
// ---------------------------------------------------------------------------------------

/// The golden vectors the verify benchmark uses (made by `openssl ts -reply`, see
/// tests/vectors/verify/README.md): a P-256 TSA under an intermediate, both in the token.
const BENCH_REPLY: &[u8] = include_bytes!("../../tests/vectors/verify/reply-p256-v2-certs.tsr");
const BENCH_REQUEST: &[u8] = include_bytes!("../../tests/vectors/verify/req-cert.tsq");
const BENCH_DATA: &[u8] = include_bytes!("../../tests/vectors/verify/data.txt");
const BENCH_ROOT: &[u8] = include_bytes!("../../tests/vectors/verify/root-ca.pem");
const BENCH_RSA_REPLY: &[u8] = include_bytes!("../../tests/vectors/verify/reply-rsa-v2-certs.tsr");

/// Calls `f` for `seconds` (after a short warm-up); its rate per second. `f` returning
/// false is a failure of the benchmark itself.
fn rate(seconds: f64, what: &str, mut f: impl FnMut() -> bool) -> Result<f64, CliError> {
    let failed = || CliError::Other(format!("bench verify: {what} failed"));
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(200) {
        if !f() {
            return Err(failed());
        }
    }
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        for _ in 0..32 {
            if !f() {
                return Err(failed());
            }
        }
        n += 32;
        let elapsed = start.elapsed().as_secs_f64();
        if elapsed >= seconds {
            return Ok(n as f64 / elapsed);
        }
    }
}

/// `openssl speed -seconds S ecdsap256`: its verify/s, or why there is none.
fn openssl_p256_verify(seconds: u64) -> Result<f64, String> {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "ecdsap256"])
        .output()
        .map_err(|e| format!("openssl could not be run ({e}); install it to compare"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl speed failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_openssl_speed(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| "no `ecdsa (nistp256)` line with verify/s in openssl's output".into())
}

/// The verify/s of `openssl speed ecdsap256`'s result line:
/// ` 256 bits ecdsa (nistp256)   0.0000s   0.0001s  55273.0  18603.0` (the last number).
fn parse_openssl_speed(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains("ecdsa (nistp256)"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// A signature and what it covers, taken from a golden token: (SPKI, signed attributes
/// DER, signature).
fn signed_parts(
    reply: &[u8],
) -> Result<(spki::SubjectPublicKeyInfoOwned, Vec<u8>, Vec<u8>), CliError> {
    use der::{Decode, Encode};
    let bad = |e: &dyn std::fmt::Display| CliError::Other(format!("bench vector: {e}"));
    let token = crate::tsp::decode_response_status(reply)
        .map_err(|e| bad(&e))?
        .token
        .ok_or_else(|| bad(&"no token"))?;
    let ci = cms::content_info::ContentInfo::from_der(&token).map_err(|e| bad(&e))?;
    let sd: cms::signed_data::SignedData = ci.content.decode_as().map_err(|e| bad(&e))?;
    let si = sd
        .signer_infos
        .0
        .get(0)
        .ok_or_else(|| bad(&"no SignerInfo"))?;
    let attrs = si
        .signed_attrs
        .as_ref()
        .ok_or_else(|| bad(&"no signed attributes"))?
        .to_der()
        .map_err(|e| bad(&e))?;
    let cms::signed_data::SignerIdentifier::IssuerAndSerialNumber(ias) = &si.sid else {
        return Err(bad(&"sid is not issuerAndSerialNumber"));
    };
    let signer = sd
        .certificates
        .as_ref()
        .and_then(|set| {
            set.0.iter().find_map(|c| match c {
                cms::cert::CertificateChoices::Certificate(c)
                    if c.tbs_certificate.serial_number == ias.serial_number =>
                {
                    Some(c.tbs_certificate.subject_public_key_info.clone())
                }
                _ => None,
            })
        })
        .ok_or_else(|| bad(&"no signer certificate"))?;
    Ok((signer, attrs, si.signature.as_bytes().to_vec()))
}

fn verify(a: &VerifyBenchArgs) -> Result<(), CliError> {
    use crate::verify::{Backend, TokenOptions, TokenVerifier};
    use der::DecodePem;
    use signature::hazmat::PrehashVerifier;
    let secs = a.seconds.max(1) as f64;
    let root = x509_cert::Certificate::from_pem(BENCH_ROOT)
        .map_err(|e| CliError::Other(format!("bench vector: {e}")))?;
    let roots = vec![root];
    let digest = crate::tsp::HashAlgorithm::Sha256.digest(BENCH_DATA);
    let request = <x509_tsp::TimeStampReq as der::Decode>::from_der(BENCH_REQUEST)
        .map_err(|e| CliError::Other(format!("bench vector: {e}")))?;
    let nonce = request
        .nonce
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default();
    let policies: Vec<const_oid::ObjectIdentifier> = vec![const_oid::ObjectIdentifier::new_unwrap(
        "1.3.6.1.4.1.99999.1.1",
    )];
    println!(
        "auditstamp bench verify: one thread, {} s per figure; token = tests/vectors/verify/reply-p256-v2-certs.tsr \
         (ECDSA P-256, TSA certificate + intermediate in the token, pinned root), every rule checked \
         (imprint, nonce, policy; path valid at genTime)",
        a.seconds
    );

    let openssl = openssl_p256_verify(a.seconds.max(1));
    match &openssl {
        Ok(r) => println!(
            "{:<58} {r:>10.0} /s",
            "openssl speed ecdsap256 verify (raw)"
        ),
        Err(why) => println!("{:<58} {why}", "openssl speed ecdsap256 verify (raw)"),
    }

    // The raw signature check of each candidate, on the token's own signature.
    let (spki, attrs, sig) = signed_parts(BENCH_REPLY)?;
    let point = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| CliError::Other("bench vector: key bits".into()))?
        .to_vec();
    let fast_raw = rate(secs, "aws-lc-rs P-256 verify", || {
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
            &point,
        )
        .verify(&attrs, &sig)
        .is_ok()
    })?;
    println!(
        "{:<58} {fast_raw:>10.0} /s",
        "aws-lc-rs P-256 verify (raw, key parsed each time)"
    );
    let rc_raw = rate(secs, "p256 verify", || {
        let prehash = crate::tsp::HashAlgorithm::Sha256.digest(&attrs);
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
            .ok()
            .zip(p256::ecdsa::Signature::from_der(&sig).ok())
            .is_some_and(|(k, s)| k.verify_prehash(&prehash, &s).is_ok())
    })?;
    println!(
        "{:<58} {rc_raw:>10.0} /s",
        "RustCrypto p256 0.13 verify (raw, key parsed each time)"
    );
    let (rsa_spki, rsa_attrs, rsa_sig) = signed_parts(BENCH_RSA_REPLY)?;
    let rsa_bits = rsa_spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| CliError::Other("bench vector: RSA key bits".into()))?
        .to_vec();
    let fast_rsa = rate(secs, "aws-lc-rs RSA verify", || {
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            &rsa_bits,
        )
        .verify(&rsa_attrs, &rsa_sig)
        .is_ok()
    })?;
    println!(
        "{:<58} {fast_rsa:>10.0} /s",
        "aws-lc-rs RSA-2048 PKCS#1 verify (raw)"
    );
    let rsa_der = der::Encode::to_der(&rsa_spki).map_err(|e| CliError::Other(e.to_string()))?;
    let rc_rsa = rate(secs, "rsa verify", || {
        let hashed = crate::tsp::HashAlgorithm::Sha256.digest(&rsa_attrs);
        <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&rsa_der).is_ok_and(
            |k| {
                k.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &hashed, &rsa_sig)
                    .is_ok()
            },
        )
    })?;
    println!(
        "{:<58} {rc_rsa:>10.0} /s",
        "RustCrypto rsa 0.9 RSA-2048 PKCS#1 verify (raw)"
    );

    // Whole tokens.
    fn strict<'a>(
        roots: &'a [x509_cert::Certificate],
        digest: &'a [u8],
        nonce: &'a [u8],
        policies: &'a [const_oid::ObjectIdentifier],
    ) -> TokenOptions<'a> {
        TokenOptions {
            imprint: Some((crate::tsp::HashAlgorithm::Sha256, digest)),
            nonce: Some(nonce),
            policies: Some(policies),
            ..TokenOptions::new(roots)
        }
    }

    let mut figures = Vec::new();
    for (name, backend) in [
        ("aws-lc-rs", Backend::AwsLc),
        ("RustCrypto", Backend::RustCrypto),
    ] {
        let verifier = TokenVerifier::with_backend(roots.clone(), backend)
            .map_err(|e| CliError::Other(e.to_string()))?;
        let o = strict(verifier.roots(), &digest, &nonce, &policies);
        let r = rate(secs, "token verification", || {
            verifier.verify(BENCH_REPLY, &o).is_ok()
        })?;
        println!(
            "{:<58} {r:>10.0} /s",
            format!("tokens, TokenVerifier ({name}, path cache warm)")
        );
        figures.push(r);
    }
    let o = strict(&roots, &digest, &nonce, &policies);
    let uncached = rate(secs, "token verification", || {
        crate::verify::verify_any(BENCH_REPLY, &o).is_ok()
    })?;
    println!(
        "{:<58} {uncached:>10.0} /s",
        "tokens, verify_any (aws-lc-rs, no cache: 3 ECDSA checks)"
    );
    let best = figures.first().copied().unwrap_or(0.0);
    match openssl {
        Ok(o) if o > 0.0 => println!(
            "ratio: {best:.0} tokens/s / {o:.0} openssl verify/s = {:.0}% (target at least 70%)",
            100.0 * best / o
        ),
        _ => println!("ratio: no OpenSSL figure to compare with"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn openssl_speed_output_is_read() {
        let out = "Doing 256 bits verify ecdsa's for 3s: 55812 256 bits ECDSA verify in 2.99s\n\
                   version: 3.0.19\n\
                   \x20                             sign    verify    sign/s verify/s\n\
                   \x20256 bits ecdsa (nistp256)   0.0000s   0.0001s  55273.0  18603.0\n";
        assert_eq!(parse_openssl_speed(out), Some(18603.0));
        assert_eq!(parse_openssl_speed("nothing here"), None);
        assert_eq!(parse_openssl_speed(" 256 bits ecdsa (nistp256) x y"), None);
    }

    #[test]
    fn the_bench_vectors_decode() {
        let (spki, attrs, sig) = signed_parts(BENCH_REPLY).unwrap();
        assert_eq!(spki.subject_public_key.raw_bytes().len(), 65);
        assert_eq!(attrs[0], 0x31);
        assert!(!sig.is_empty());
        signed_parts(BENCH_RSA_REPLY).unwrap();
        assert!(signed_parts(b"garbage").is_err());
    }
}
