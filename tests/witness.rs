//! The data center's witness end to end: `auditstamp witness serve` on a real socket, its
//! key in a SoftHSM token of its own, its state in sled or (each test again, `_on_postgres`)
//! in a throw-away PostgreSQL, against simulated appliances whose
//! trees are built here with `chain::tlog` and whose checkpoints are signed here with
//! software Ed25519 keys registered in the witness's configuration.
//!
//! - A growing sequence is cosigned; every cosignature verifies with
//!   `Cosigner::verify` against the witness key (read from the HSM by
//!   `auditstamp witness verifier-key`, the same one `/status` and the startup log show).
//! - Refusals that prove nothing about the appliance (replays of what the witness
//!   cosigned, its genuine older checkpoints, stale old sizes, proofs the submitter broke)
//!   get the spec's statuses (409 bodies are `text/x.tlog.size`) and leave nothing behind.
//! - Forks and rollbacks the appliance's key signed are refused and kept as evidence, both
//!   notes byte for byte, checkable offline with the appliance's key; the same evidence
//!   posted 1,000 times is stored once; `auditstamp witness evidence` prints it.
//! - Unknown origins get 404, bad signatures 403, malformed bodies 400: counted, never
//!   stored; 10,000 of them after a fork leave its evidence where it was.
//! - Of concurrent submissions from one state exactly one is cosigned.
//! - The state and the evidence survive SIGTERM and kill -9 right after an answer.
//! - Connections that say nothing are closed after the deadline (header_timeout_ms), and
//!   those over the per-address cap at once.
//! - 1,000 appliances (configuration from `bench witness-config`, load from `bench witness`)
//!   keep a bounded state per appliance over ten rounds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use auditstamp::chain::cosignature::Cosigner;
use auditstamp::chain::note::{verifier_key, Checkpoint, NoteSignature, SignedNote};
use auditstamp::chain::tlog::{self, Hash};
use auditstamp::internal::HISTORY;
use auditstamp::witness::protocol::{add_checkpoint_body, parse_cosignatures};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::*;
use serde_json::Value;

const SIZE_TYPE: &str = "text/x.tlog.size";

/// One answer.
struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

/// A client of one running witness.
struct Client {
    http: reqwest::Client,
    server: Server,
    rt: tokio::runtime::Runtime,
}

impl Client {
    fn new(server: Server) -> Client {
        Client {
            http: reqwest::Client::new(),
            server,
            rt: rt(),
        }
    }

    fn add(&self, body: impl Into<Vec<u8>>) -> Reply {
        let url = self.server.url("/add-checkpoint");
        let body = body.into();
        self.rt.block_on(async {
            let resp = self.http.post(&url).body(body).send().await.unwrap();
            Reply {
                status: resp.status().as_u16(),
                content_type: resp
                    .headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default(),
                body: resp.text().await.unwrap(),
            }
        })
    }

    fn get(&self, path: &str) -> (u16, String) {
        let url = self.server.url(path);
        self.rt.block_on(async {
            let resp = self.http.get(&url).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
    }

    fn status(&self) -> Value {
        let (code, text) = self.get("/status");
        assert_eq!(code, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    fn status_of(&self, origin: &str) -> Value {
        let (code, text) = self.get(&format!("/status/{origin}"));
        assert_eq!(code, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    fn metric(&self, sample: &str) -> u64 {
        let (code, text) = self.get("/metrics");
        assert_eq!(code, 200);
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Asserts a 200 whose cosignature of `text` verifies with `witness`; returns its timestamp.
fn assert_cosigned(r: &Reply, text: &str, witness: &Cosigner) -> u64 {
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.content_type.starts_with("text/plain"),
        "{}",
        r.content_type
    );
    assert!(
        r.body.starts_with(&format!("\u{2014} {} ", witness.name)),
        "{}",
        r.body
    );
    let note = parse_cosignatures(text, &r.body).unwrap();
    witness.verify(&note).unwrap()
}

/// Asserts a 409 answering `size`.
fn assert_conflict(r: &Reply, size: u64) {
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.content_type, SIZE_TYPE);
    assert_eq!(r.body, format!("{size}\n"));
}

/// The witness's key, read from its HSM by the CLI.
fn witness_key(w: &WitnessNode) -> Cosigner {
    let out = w.cli_ok(&["witness", "verifier-key"]);
    let text = String::from_utf8(out.stdout).unwrap();
    Cosigner::parse(text.trim()).unwrap()
}

#[test]
fn a_growing_sequence_is_cosigned_and_every_cosignature_verifies() {
    a_growing_sequence_is_cosigned_and_every_cosignature_verifies_on(&Backend::Sled);
}

#[test]
fn a_growing_sequence_is_cosigned_and_every_cosignature_verifies_on_postgres() {
    a_growing_sequence_is_cosigned_and_every_cosignature_verifies_on(&Backend::postgres());
}

fn a_growing_sequence_is_cosigned_and_every_cosignature_verifies_on(backend: &Backend) {
    let mut a = Sim::new("appliance-a.example/chain", 1);
    let b = Sim::new("appliance-b.example/chain", 2);
    let w = WitnessNode::on(backend, &format!("{}\n{}", a.log_entry(), b.log_entry()));
    let witness = witness_key(&w);
    assert_eq!(witness.name, WITNESS_NAME);
    // The key is a witness key on the token.
    let keys: Value =
        serde_json::from_slice(&w.cli_ok(&["keys", "list", "--json"]).stdout).unwrap();
    assert_eq!(keys[0]["label"], "witness");
    assert_eq!(keys[0]["purpose"], "witness");
    assert_eq!(keys[0]["algorithm"], "ed25519");
    let c = Client::new(w.start());
    assert!(c.server.log().contains(&witness.verifier_key()));
    let status = c.status();
    assert_eq!(status["witness"]["verifier_key"], witness.verifier_key());
    assert_eq!(status["witness"]["name"], WITNESS_NAME);

    let mut old = 0;
    let mut proofs = 0;
    for size in [1u64, 2, 3, 7, 8, 64, 65, 100, 1000, 1001, 4096] {
        let before = now();
        let body = a.body(old, size);
        proofs += a.proof(old, size).len();
        let r = c.add(body);
        let t = assert_cosigned(&r, &a.text(size, a.root(size)), &witness);
        assert!((before..=now()).contains(&t), "timestamp {t}");
        old = size;
    }
    assert!(
        proofs > 20,
        "the proofs were not exercised: {proofs} hashes"
    );
    // The same checkpoint again: cosigned again.
    let r = c.add(a.body(old, old));
    assert_cosigned(&r, &a.text(old, a.root(old)), &witness);
    // Signatures by unknown keys (another witness's cosignature) are ignored.
    a.grow_to(5000);
    let mut note = SignedNote::parse(&a.note(5000)).unwrap();
    note.signatures.insert(
        0,
        NoteSignature {
            name: "witness.other.example/w9".into(),
            id: [1, 2, 3, 4],
            signature: vec![7; 72],
        },
    );
    let body = add_checkpoint_body(old, &a.proof(old, 5000), &note.format()).unwrap();
    assert_cosigned(&c.add(body), &note.text, &witness);

    let s = c.status_of("appliance-a.example/chain");
    assert_eq!(s["size"], 5000);
    assert_eq!(s["root_hash"], B64.encode(a.root(5000)));
    assert_eq!(s["url"], "https://appliance-a.example");
    assert!(s["age_seconds"].as_u64().unwrap() <= 5);
    assert!(s["cosigned_at"].as_u64().unwrap() >= now() - 5);
    assert_eq!(s["stale"], false);
    assert_eq!(s["alerts"]["fork"], 0);
    // The kept checkpoint is the text and the appliance's own signature only.
    let kept = SignedNote::parse(s["checkpoint"].as_str().unwrap()).unwrap();
    assert_eq!(kept.text, note.text);
    assert_eq!(kept.signatures.len(), 1);
    let status = c.status();
    let all = status["appliances"].as_array().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1]["origin"], "appliance-b.example/chain");
    assert_eq!(all[1]["size"], Value::Null);
    assert_eq!(all[1]["stale"], true);
    assert_eq!(c.get("/status/nobody.example/chain").0, 404);

    assert_eq!(c.metric("auditstamp_witness_cosigned_total"), 13);
    assert_eq!(c.metric("auditstamp_witness_appliances"), 2);
    assert_eq!(c.metric("auditstamp_witness_appliances_stale"), 1);
    assert!(c.metric("auditstamp_witness_store_disk_bytes") > 0);
    assert_eq!(c.get("/healthz"), (200, "ok\n".into()));
    let (code, ready) = c.get("/readyz");
    assert_eq!(code, 200, "{ready}");
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["hsm"]["ok"], true);
    assert_eq!(ready["store"]["ok"], true);
    c.server.stop();
}

/// Every string anywhere in `v`.
fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        Value::Object(o) => o.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// Whether `/status/{origin}` shows each of `notes` byte for byte (wherever it puts them).
fn shows_notes(c: &Client, origin: &str, notes: &[&str]) -> bool {
    let s = c.status_of(origin);
    let all = strings(&s);
    notes.iter().all(|n| all.contains(n))
}

/// The appliance's note verifier key.
fn log_key(a: &Sim) -> auditstamp::chain::note::VerifierKey {
    auditstamp::chain::note::VerifierKey::parse(&verifier_key(
        &a.origin,
        &a.key.verifying_key().to_bytes(),
    ))
    .unwrap()
}

/// Checks an evidence record as a third party would, with the log's key only: both notes
/// verify, and either they have the same size and other roots, or the proof leads to the
/// submitted root from another root than the cosigned one.
fn check_evidence(e: &Value, vk: &auditstamp::chain::note::VerifierKey) {
    let cosigned = SignedNote::parse(e["cosigned"].as_str().unwrap()).unwrap();
    let submitted = SignedNote::parse(e["submitted"].as_str().unwrap()).unwrap();
    cosigned.verify(vk).unwrap();
    submitted.verify(vk).unwrap();
    let a = Checkpoint::parse(&cosigned.text).unwrap();
    let b = Checkpoint::parse(&submitted.text).unwrap();
    assert_eq!(
        (a.size, b.size),
        (
            e["cosigned_size"].as_u64().unwrap(),
            e["size"].as_u64().unwrap()
        )
    );
    let proof: Vec<Hash> = e["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect();
    if a.size == b.size {
        assert!(proof.is_empty());
        assert_ne!(a.root, b.root, "{e}");
    } else {
        let (old_root, new_root) = tlog::consistency_proof_roots(&proof, b.size, a.size).unwrap();
        assert_eq!(new_root, b.root, "{e}");
        assert_ne!(old_root, a.root, "{e}");
    }
}

/// Refusals that prove nothing about the appliance: replays of checkpoints the witness
/// cosigned, its genuine older checkpoints, stale old sizes, proofs the submitter broke.
/// Each gets the spec's status, and nothing is recorded: no alert, no evidence, not a byte.
#[test]
fn refusals_that_prove_nothing_leave_nothing_behind() {
    refusals_that_prove_nothing_leave_nothing_behind_on(&Backend::Sled);
}

#[test]
fn refusals_that_prove_nothing_leave_nothing_behind_on_postgres() {
    refusals_that_prove_nothing_leave_nothing_behind_on(&Backend::postgres());
}

fn refusals_that_prove_nothing_leave_nothing_behind_on(backend: &Backend) {
    let mut a = Sim::new("appliance-a.example/chain", 1);
    let w = WitnessNode::on(backend, &a.log_entry());
    let witness = witness_key(&w);
    let c = Client::new(w.start());
    let origin = a.origin.clone();
    let mut old = 0;
    for size in [6, 12, 20, 40] {
        assert_cosigned(
            &c.add(a.body(old, size)),
            &a.text(size, a.root(size)),
            &witness,
        );
        old = size;
    }
    let bytes = c.metric("auditstamp_witness_store_record_bytes");

    // Replays of bodies it cosigned (a network retry, or anyone: checkpoints are public).
    assert_conflict(&c.add(a.body(0, 6)), 40);
    assert_conflict(&c.add(a.body(6, 12)), 40);
    assert_conflict(&c.add(a.body(20, 40)), 40);
    // A cosigned checkpoint with an old size above it.
    let r = c.add(add_checkpoint_body(40, &[], &a.note(12)).unwrap());
    assert_eq!(r.status, 400, "{}", r.body);
    // Genuine checkpoints smaller than the latest that it never cosigned.
    assert_conflict(&c.add(a.body(0, 15)), 40);
    assert_conflict(&c.add(a.body(12, 33)), 40);
    let r = c.add(add_checkpoint_body(40, &[], &a.note(15)).unwrap());
    assert_eq!(r.status, 400, "{}", r.body);
    // A stale old size for a genuine newer checkpoint; an old size above the latest.
    assert_conflict(&c.add(a.body(5, 50)), 40);
    assert_conflict(&c.add(a.body(45, 50)), 40);
    // A genuine newer checkpoint with a proof the submitter broke: altered, cut, padded.
    a.grow_to(50);
    for i in 0..a.proof(40, 50).len() {
        let mut proof = a.proof(40, 50);
        proof[i][i] ^= 1;
        let r = c.add(add_checkpoint_body(40, &proof, &a.note(50)).unwrap());
        assert_eq!(r.status, 422, "{}", r.body);
    }
    let mut short = a.proof(40, 50);
    short.pop();
    let mut long = a.proof(40, 50);
    long.push([1; 32]);
    for proof in [short, long, vec![]] {
        let r = c.add(add_checkpoint_body(40, &proof, &a.note(50)).unwrap());
        assert_eq!(r.status, 422, "{}", r.body);
    }

    let s = c.status_of(&origin);
    for kind in ["rollback", "fork", "bad-proof"] {
        assert_eq!(s["alerts"][kind], 0, "{kind}: {s}");
        assert_eq!(
            c.metric(&format!(
                "auditstamp_witness_alerts_total{{kind=\"{kind}\"}}"
            )),
            0
        );
    }
    assert_eq!(s["evidence"], serde_json::json!([]));
    assert_eq!(s["size"], 40);
    assert_eq!(c.metric("auditstamp_witness_store_record_bytes"), bytes);
    assert_eq!(
        c.metric("auditstamp_witness_refused_total{reason=\"old_size_mismatch\"}"),
        7
    );
    assert_eq!(
        c.metric("auditstamp_witness_refused_total{reason=\"old_size_above_size\"}"),
        2
    );
    assert!(c.metric("auditstamp_witness_refused_total{reason=\"bad_proof\"}") >= 4);
    // The witness keeps the earlier checkpoints it cosigned, for monitors to prove from.
    let history: Vec<u64> = s["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["size"].as_u64().unwrap())
        .collect();
    assert_eq!(history, [6, 12, 20]);
    assert_cosigned(&c.add(a.body(40, 50)), &a.text(50, a.root(50)), &witness);
    c.server.stop();
}

/// Checkpoints the appliance signed that contradict ones the witness cosigned: a fork at
/// the latest size, another root at an earlier cosigned size, and trees whose own proofs
/// show they do not contain a cosigned one. Each is refused with the spec's status and kept
/// as evidence with both notes byte for byte; the same evidence posted 1,000 times is
/// stored once; it survives kill -9 and is printed by `auditstamp witness evidence`.
#[test]
fn forks_and_rollbacks_the_appliance_signed_are_kept_as_evidence() {
    forks_and_rollbacks_the_appliance_signed_are_kept_as_evidence_on(&Backend::Sled);
}

#[test]
fn forks_and_rollbacks_the_appliance_signed_are_kept_as_evidence_on_postgres() {
    forks_and_rollbacks_the_appliance_signed_are_kept_as_evidence_on(&Backend::postgres());
}

fn forks_and_rollbacks_the_appliance_signed_are_kept_as_evidence_on(backend: &Backend) {
    let mut a = Sim::new("appliance-a.example/chain", 1);
    let w = WitnessNode::on(backend, &a.log_entry());
    let witness = witness_key(&w);
    let c = Client::new(w.start());
    let origin = a.origin.clone();
    let vk = log_key(&a);
    let mut old = 0;
    for size in [6, 12, 20, 40] {
        assert_cosigned(
            &c.add(a.body(old, size)),
            &a.text(size, a.root(size)),
            &witness,
        );
        old = size;
    }
    // The appliance's key signs another history.
    let mut f = a.fork();
    f.grow_to(60);
    // Another root at the size of the latest: a fork.
    assert_conflict(
        &c.add(add_checkpoint_body(40, &[], &f.note(40)).unwrap()),
        40,
    );
    // Another root at an earlier cosigned size: a rollback.
    assert_conflict(&c.add(f.body(6, 12)), 40);
    // A size it never cosigned, whose own proof from a cosigned size (12) shows it does
    // not contain that checkpoint: a rollback too.
    assert_conflict(
        &c.add(add_checkpoint_body(12, &f.proof(12, 15), &f.note(15)).unwrap()),
        40,
    );
    // Larger than the latest, its own proof from it: its tree does not contain the cosigned
    // one (the proof is refused, and it proves the appliance inconsistent).
    let r = c.add(add_checkpoint_body(40, &f.proof(40, 50), &f.note(50)).unwrap());
    assert_eq!(r.status, 422, "{}", r.body);

    // Both notes of each pair, byte for byte as the appliance signed them.
    let pairs = [
        (a.note(40), f.note(40), "fork"),
        (a.note(12), f.note(12), "rollback"),
        (a.note(12), f.note(15), "rollback"),
        (a.note(40), f.note(50), "bad-proof"),
    ];
    for (cosigned, submitted, _) in &pairs {
        assert!(
            shows_notes(&c, &origin, &[cosigned, submitted]),
            "{}",
            c.status_of(&origin)
        );
    }
    let s = c.status_of(&origin);
    let evidence = s["evidence"].as_array().unwrap().clone();
    assert_eq!(evidence.len(), 4, "{s}");
    for (cosigned, submitted, kind) in &pairs {
        let e = evidence
            .iter()
            .find(|e| e["cosigned"] == *cosigned && e["submitted"] == *submitted)
            .unwrap();
        assert_eq!(e["kind"], *kind);
        assert!(e["seen_at"].as_u64().unwrap() >= now() - 60);
        check_evidence(e, &vk);
    }
    assert_eq!(
        (
            s["alerts"]["fork"].as_u64(),
            s["alerts"]["rollback"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(s["alerts"]["bad-proof"], 1);
    assert_eq!(
        c.metric("auditstamp_witness_alerts_total{kind=\"fork\"}"),
        1
    );
    assert_eq!(
        c.metric("auditstamp_witness_alerts_total{kind=\"rollback\"}"),
        2
    );
    assert_eq!(
        c.metric("auditstamp_witness_alerts_total{kind=\"bad-proof\"}"),
        1
    );
    assert_eq!(c.metric("auditstamp_witness_appliances_with_evidence"), 1);

    // The same evidence again and again (with any old size, extra signature lines by other
    // keys): refused the same way, stored once.
    let bytes = c.metric("auditstamp_witness_store_record_bytes");
    let mut noisy = SignedNote::parse(&f.note(40)).unwrap();
    noisy.signatures.push(NoteSignature {
        name: "witness.other.example/w9".into(),
        id: [9, 9, 9, 9],
        signature: vec![1; 72],
    });
    let repeats = [
        add_checkpoint_body(40, &[], &f.note(40)).unwrap(),
        add_checkpoint_body(12, &[], &noisy.format()).unwrap(),
        f.body(0, 40),
        add_checkpoint_body(40, &f.proof(40, 50), &f.note(50)).unwrap(),
    ];
    let url = c.server.url("/add-checkpoint");
    let statuses: Vec<u16> = c.rt.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let (http, url, repeats) = (c.http.clone(), url.clone(), repeats.clone());
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    for n in 0..125 {
                        let body = repeats[(n + t) % repeats.len()].clone();
                        out.push(
                            http.post(&url)
                                .body(body)
                                .send()
                                .await
                                .unwrap()
                                .status()
                                .as_u16(),
                        );
                    }
                    out
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.extend(t.await.unwrap());
        }
        out
    });
    assert_eq!(statuses.len(), 1000);
    assert!(
        statuses.iter().all(|s| *s == 409 || *s == 422),
        "{statuses:?}"
    );
    assert_eq!(c.metric("auditstamp_witness_store_record_bytes"), bytes);
    assert_eq!(
        c.status_of(&origin)["evidence"].as_array().unwrap().len(),
        4
    );
    // The appliance's real history goes on being cosigned.
    assert_cosigned(&c.add(a.body(40, 50)), &a.text(50, a.root(50)), &witness);

    // kill -9: the evidence was durable before the refusals were answered.
    let Client { server, .. } = c;
    drop(server);
    let printed = w.cli_ok(&["witness", "evidence", "--origin", &origin]);
    let printed: Value = serde_json::from_slice(&printed.stdout).unwrap();
    let printed = printed.as_array().unwrap();
    assert_eq!(printed.len(), 4);
    for e in printed {
        assert_eq!(e["origin"], origin.as_str());
        check_evidence(e, &vk);
    }
    assert_eq!(
        w.cli_ok(&["witness", "evidence", "--origin", "nobody.example/x"])
            .stdout,
        b"[]\n"
    );
    let c = Client::new(w.start());
    let s = c.status_of(&origin);
    assert_eq!(s["evidence"].as_array().unwrap().len(), 4);
    assert_eq!(s["size"], 50);
    let out = w.command(&["witness", "evidence"]).output().unwrap();
    match backend {
        // sled is the running witness's alone: the CLI says where to read them instead.
        Backend::Sled => {
            assert!(!out.status.success());
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("GET /status/"), "{err}");
        }
        // The database is shared: the CLI reads it while witnesses run.
        Backend::Postgres(_) | Backend::PostgresTls { .. } => {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let again: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(again.as_array().unwrap(), printed);
        }
    }
    c.server.stop();
}

/// A witness reaches a database on another host over TCP with TLS only (here on 127.0.0.1,
/// where the database refuses TCP without TLS): `sslmode=require`, the database's
/// certificate checked against `ca_file` and its name against the host. Another CA is
/// refused by the witness, a connection without TLS by the database; `ca_file` without
/// `sslmode=require`, and a remote host without TLS, are configuration errors.
#[test]
fn the_database_is_reached_over_tls_with_its_certificate_checked() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(pki_dir.path());
    let pg = auditstamp::internal::TestPostgres::start_tls(
        Path::new(&pki.path("server.pem")),
        Path::new(&pki.path("server.key")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let url = pg.tcp_url("localhost", "postgres");
    let backend = Backend::PostgresTls {
        url: url.clone(),
        ca: pki.path("server-ca.pem").into(),
        pg,
    };
    let Backend::PostgresTls { pg, .. } = &backend else {
        unreachable!()
    };
    let mut a = Sim::new("appliance-tls.example/chain", 1);
    let logs = a.log_entry();
    // `witness migrate` made the schema over TLS; the server cosigns over it.
    let mut w = WitnessNode::on(&backend, &logs);
    let witness = witness_key(&w);
    let c = Client::new(w.start());
    let r = c.add(a.body(0, 5));
    assert_cosigned(&r, &a.text(5, a.root(5)), &witness);
    c.server.stop();
    let refused = |w: &WitnessNode, wanted: &[&str]| {
        let out = w.command(&["witness", "migrate"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(wanted.iter().any(|x| err.contains(x)), "{err}");
        assert!(!err.contains(pg.password()), "{err}");
    };
    let rogue = PathBuf::from(pki.path("rogue-ca.pem"));
    let dir = w.path().to_owned();
    w.set_store(postgres_store(&dir, pg, &url, Some(&rogue)), &logs);
    refused(&w, &["certificate", "UnknownIssuer"]);
    let plain = url.replace("sslmode=require", "sslmode=disable");
    w.set_store(postgres_store(&dir, pg, &plain, None), &logs);
    refused(&w, &["no encryption"]);
    let ca = PathBuf::from(pki.path("server-ca.pem"));
    w.set_store(postgres_store(&dir, pg, &plain, Some(&ca)), &logs);
    refused(&w, &["sslmode=require"]);
    let remote = "host=db.example port=5432 user=witness dbname=witness";
    w.set_store(postgres_store(&dir, pg, remote, None), &logs);
    refused(&w, &["reached over the network"]);
}

/// 10,000 posts anyone can make, after a fork: bad signatures, a key the witness does not
/// know, malformed bodies. They are refused and counted, nothing of them is stored, and the
/// fork's evidence is still there, both notes byte for byte.
#[test]
fn ten_thousand_junk_posts_never_crowd_out_a_fork() {
    ten_thousand_junk_posts_never_crowd_out_a_fork_on(&Backend::Sled);
}

#[test]
fn ten_thousand_junk_posts_never_crowd_out_a_fork_on_postgres() {
    ten_thousand_junk_posts_never_crowd_out_a_fork_on(&Backend::postgres());
}

fn ten_thousand_junk_posts_never_crowd_out_a_fork_on(backend: &Backend) {
    let mut a = Sim::new("appliance-a.example/chain", 1);
    let w = WitnessNode::on(backend, &a.log_entry());
    let witness = witness_key(&w);
    let c = Client::new(w.start());
    let origin = a.origin.clone();
    assert_cosigned(&c.add(a.body(0, 10)), &a.text(10, a.root(10)), &witness);
    let mut f = a.fork();
    f.grow_to(10);
    assert_conflict(
        &c.add(add_checkpoint_body(10, &[], &f.note(10)).unwrap()),
        10,
    );
    let (cosigned, forked) = (a.note(10), f.note(10));
    assert!(shows_notes(&c, &origin, &[&cosigned, &forked]));
    let bytes = c.metric("auditstamp_witness_store_record_bytes");

    let stranger = Sim::new("stranger.example/chain", 3);
    a.grow_to(11);
    let mut wrong = SignedNote::parse(&a.note(11)).unwrap();
    wrong.signatures[0].signature[5] ^= 1;
    let mut unknown = SignedNote::parse(&a.note(11)).unwrap();
    unknown.signatures[0].name = "someone.else.example".into();
    let junk: Vec<String> = vec![
        add_checkpoint_body(10, &a.proof(10, 11), &wrong.format()).unwrap(),
        add_checkpoint_body(10, &[], &a.note_with(10, [7; 32], &stranger.key)).unwrap(),
        add_checkpoint_body(10, &[], &unknown.format()).unwrap(),
        format!("old 10\n\n{origin}\n10\n{}\n", B64.encode([7u8; 32])),
    ];
    let url = c.server.url("/add-checkpoint");
    let started = std::time::Instant::now();
    let statuses: Vec<u16> = c.rt.block_on(async {
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let (http, url, junk) = (c.http.clone(), url.clone(), junk.clone());
                tokio::spawn(async move {
                    let mut out = Vec::with_capacity(625);
                    for n in 0..625 {
                        let body = junk[(n + t) % junk.len()].clone();
                        out.push(
                            http.post(&url)
                                .body(body)
                                .send()
                                .await
                                .unwrap()
                                .status()
                                .as_u16(),
                        );
                    }
                    out
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.extend(t.await.unwrap());
        }
        out
    });
    println!("10,000 junk posts in {:?}", started.elapsed());
    assert_eq!(statuses.iter().filter(|s| **s == 403).count(), 7500);
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 2500);

    assert!(
        shows_notes(&c, &origin, &[&cosigned, &forked]),
        "the fork's evidence is gone: {}",
        c.status_of(&origin)
    );
    let s = c.status_of(&origin);
    assert_eq!(s["alerts"]["fork"], 1);
    assert_eq!(s["evidence"].as_array().unwrap().len(), 1);
    assert_eq!(s["evidence"][0]["cosigned"], cosigned.as_str());
    assert_eq!(s["evidence"][0]["submitted"], forked.as_str());
    assert_eq!(s["unsigned_since_start"], 7500);
    assert_eq!(
        c.metric(&format!(
            "auditstamp_witness_unsigned_total{{origin=\"{origin}\"}}"
        )),
        7500
    );
    assert_eq!(
        c.metric("auditstamp_witness_refused_total{reason=\"bad_signature\"}"),
        7500
    );
    assert_eq!(
        c.metric("auditstamp_witness_refused_total{reason=\"malformed\"}"),
        2500
    );
    assert_eq!(c.metric("auditstamp_witness_store_record_bytes"), bytes);
    // Warnings about junk are rate-limited: a handful of lines, not thousands.
    assert!(c
        .server
        .wait_for_log("without a valid signature by the log's key"));
    let warned = c
        .server
        .log()
        .matches("without a valid signature by the log's key")
        .count();
    assert!((1..=20).contains(&warned), "{warned} warnings");
    c.server.stop();
}

#[test]
fn unknown_origins_bad_signatures_and_malformed_bodies_are_refused() {
    unknown_origins_bad_signatures_and_malformed_bodies_are_refused_on(&Backend::Sled);
}

#[test]
fn unknown_origins_bad_signatures_and_malformed_bodies_are_refused_on_postgres() {
    unknown_origins_bad_signatures_and_malformed_bodies_are_refused_on(&Backend::postgres());
}

fn unknown_origins_bad_signatures_and_malformed_bodies_are_refused_on(backend: &Backend) {
    let mut a = Sim::new("appliance-a.example/chain", 1);
    let w = WitnessNode::on(backend, &a.log_entry());
    let witness = witness_key(&w);
    let c = Client::new(w.start());
    assert_cosigned(&c.add(a.body(0, 3)), &a.text(3, a.root(3)), &witness);
    let bytes = c.metric("auditstamp_witness_store_record_bytes");

    // Unknown origin.
    let mut stranger = Sim::new("stranger.example/chain", 3);
    let r = c.add(stranger.body(0, 4));
    assert_eq!(r.status, 404, "{}", r.body);
    // Signed with another key under the appliance's name; or only by unknown keys.
    a.grow_to(8);
    let forged = a.note_with(8, a.root(8), &stranger.key);
    let r = c.add(add_checkpoint_body(3, &a.proof(3, 8), &forged).unwrap());
    assert_eq!(r.status, 403, "{}", r.body);
    let mut wrong = SignedNote::parse(&a.note(8)).unwrap();
    wrong.signatures[0].signature[5] ^= 1;
    let r = c.add(add_checkpoint_body(3, &a.proof(3, 8), &wrong.format()).unwrap());
    assert_eq!(r.status, 403, "{}", r.body);
    let mut unknown = SignedNote::parse(&a.note(8)).unwrap();
    unknown.signatures[0].name = "someone.else.example".into();
    let r = c.add(add_checkpoint_body(3, &a.proof(3, 8), &unknown.format()).unwrap());
    assert_eq!(r.status, 403, "{}", r.body);

    // Malformed bodies.
    let good = a.body(3, 8);
    let note = a.note(8);
    let h = B64.encode([9u8; 32]);
    let malformed: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"old 3".to_vec(),
        format!("old x\n\n{note}").into(),
        format!("old 03\n\n{note}").into(),
        format!("new 3\n\n{note}").into(),
        format!("old 3\n{note}").into(),
        format!("old 3\n{h}x\n\n{note}").into(),
        format!("old 3\n{}\n{note}", format!("{h}\n").repeat(64)).into(),
        format!("old 3\n\n{}", a.text(8, a.root(8))).into(),
        format!("old 3\n\n{}", note.replace('\u{2014}', "--")).into(),
        format!(
            "old 3\n\nappliance-a.example/chain\nx\n{h}\n\n{}",
            note.lines().last().unwrap()
        )
        .into(),
        [&good.as_bytes()[..good.len() - 3], &[0xff, 0xfe, b'\n']].concat(),
        good.replace('\n', "\r\n").into(),
    ];
    for body in malformed {
        let r = c.add(body.clone());
        assert_eq!(
            r.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(&body),
            r.body
        );
        assert!(
            r.content_type.starts_with("text/plain"),
            "{}",
            r.content_type
        );
    }
    // Old size above the checkpoint's size.
    let r = c.add(add_checkpoint_body(9, &[], &note).unwrap());
    assert_eq!(r.status, 400, "{}", r.body);
    // A body over the cap is refused unread.
    let huge = format!("old 3\n\n{}", "x".repeat(70_000));
    assert_eq!(c.add(huge).status, 413);

    // Refused, counted, and nothing of it stored.
    let s = c.status_of("appliance-a.example/chain");
    assert_eq!(s["size"], 3, "the state did not move");
    assert_eq!(c.metric("auditstamp_witness_store_record_bytes"), bytes);
    assert_eq!(s["unsigned_since_start"], 3);
    assert_eq!(s["evidence"], serde_json::json!([]));
    assert_eq!(
        c.metric("auditstamp_witness_unsigned_total{origin=\"appliance-a.example/chain\"}"),
        3
    );
    assert_eq!(
        c.metric("auditstamp_witness_refused_total{reason=\"unknown_origin\"}"),
        1
    );
    assert_eq!(
        c.metric("auditstamp_witness_refused_total{reason=\"bad_signature\"}"),
        3
    );
    assert!(c.metric("auditstamp_witness_refused_total{reason=\"malformed\"}") >= 13);
    // And the good body still works.
    assert_cosigned(&c.add(good), &a.text(8, a.root(8)), &witness);
    c.server.stop();
}

#[test]
fn concurrent_submissions_from_one_state_cosign_exactly_one() {
    concurrent_submissions_from_one_state_cosign_exactly_one_on(&Backend::Sled);
}

#[test]
fn concurrent_submissions_from_one_state_cosign_exactly_one_on_postgres() {
    concurrent_submissions_from_one_state_cosign_exactly_one_on(&Backend::postgres());
}

fn concurrent_submissions_from_one_state_cosign_exactly_one_on(backend: &Backend) {
    let mut a = Sim::new("appliance-a.example/chain", 1);
    let w = WitnessNode::on(backend, &a.log_entry());
    let witness = witness_key(&w);
    let c = Client::new(w.start());
    assert_cosigned(&c.add(a.body(0, 50)), &a.text(50, a.root(50)), &witness);
    a.grow_to(100);
    let bodies: Vec<(u64, String)> = (51..=82).map(|s| (s, a.body(50, s))).collect();
    let winner = exactly_one_cosigned(&c, bodies, &[c.server.url("/add-checkpoint")]);
    let winners = [winner];
    assert_eq!(c.status_of("appliance-a.example/chain")["size"], winners[0]);
    c.server.stop();
}

/// Posts every `(size, body)` at once, spread over `urls` by size; checks that exactly one
/// is cosigned and every other one gets 409 naming its size, which it returns.
fn exactly_one_cosigned(c: &Client, bodies: Vec<(u64, String)>, urls: &[String]) -> u64 {
    let answers: Vec<(u64, u16, String)> = c.rt.block_on(async {
        let tasks: Vec<_> = bodies
            .into_iter()
            .map(|(size, body)| {
                let (http, url) = (c.http.clone(), urls[size as usize % urls.len()].clone());
                tokio::spawn(async move {
                    let r = http.post(&url).body(body).send().await.unwrap();
                    (size, r.status().as_u16(), r.text().await.unwrap())
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let winners: Vec<u64> = answers.iter().filter(|a| a.1 == 200).map(|a| a.0).collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    for (size, status, body) in &answers {
        if *status != 200 {
            assert_eq!(
                (*status, body.clone()),
                (409, format!("{}\n", winners[0])),
                "size {size}"
            );
        }
    }
    winners[0]
}

#[test]
fn state_survives_sigterm_and_kill_9_after_a_200() {
    state_survives_sigterm_and_kill_9_after_a_200_on(&Backend::Sled);
}

#[test]
fn state_survives_sigterm_and_kill_9_after_a_200_on_postgres() {
    state_survives_sigterm_and_kill_9_after_a_200_on(&Backend::postgres());
}

fn state_survives_sigterm_and_kill_9_after_a_200_on(backend: &Backend) {
    let mut a = Sim::new("appliance-a.example/chain", 1);
    let w = WitnessNode::on(backend, &a.log_entry());
    let witness = witness_key(&w);
    let c = Client::new(w.start());
    assert_cosigned(&c.add(a.body(0, 7)), &a.text(7, a.root(7)), &witness);
    c.server.stop();

    // After SIGTERM: the next submission must name 7.
    let c = Client::new(w.start());
    assert_conflict(&c.add(a.body(0, 12)), 7);
    assert_cosigned(&c.add(a.body(7, 12)), &a.text(12, a.root(12)), &witness);
    // A fork (the appliance's key signed another tree of 12): refused and kept.
    let mut f = a.fork();
    f.grow_to(12);
    assert_conflict(
        &c.add(add_checkpoint_body(12, &[], &f.note(12)).unwrap()),
        12,
    );
    // kill -9 right after it.
    let Client { server, .. } = c;
    drop(server);

    let c = Client::new(w.start());
    assert_conflict(&c.add(a.body(7, 20)), 12);
    let s = c.status_of("appliance-a.example/chain");
    assert_eq!(s["size"], 12);
    assert_eq!(s["root_hash"], B64.encode(a.root(12)));
    // The evidence survives too.
    assert_eq!(s["alerts"]["fork"], 1);
    assert_eq!(s["evidence"][0]["submitted"], f.note(12).as_str());
    assert_cosigned(&c.add(a.body(12, 20)), &a.text(20, a.root(20)), &witness);
    c.server.stop();
}

#[test]
fn silent_connections_are_closed_after_the_deadline() {
    const DEADLINE: Duration = Duration::from_millis(1000);
    const SLACK: Duration = Duration::from_secs(3);
    let a = Sim::new("appliance-a.example/chain", 1);
    let w = WitnessNode::new(&a.log_entry());
    let text = std::fs::read_to_string(&w.config).unwrap().replace(
        "plain_http = true\n",
        "plain_http = true\nheader_timeout_ms = 1000\nmax_connections_per_address = 4\n",
    );
    std::fs::write(&w.config, text).unwrap();
    // No connection pool: none is reused just as the witness closes it for idleness.
    let c = Client {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
        server: w.start(),
        rt: rt(),
    };
    let addr = c.server.addr;
    let start = Instant::now();
    let watch = |mut s: TcpStream| {
        std::thread::spawn(move || closed_after(&mut s, start, DEADLINE + Duration::from_secs(8)))
    };
    // Six connections from one address that say nothing: four (the per-address cap) are
    // taken, two closed at once.
    let silent: Vec<_> = (0..6)
        .map(|_| watch(connect_from("127.0.0.2", addr)))
        .collect();
    // Only the start of the HTTP/2 preface, from another address.
    let mut preface = connect_from("127.0.0.3", addr);
    preface.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
    let preface = watch(preface);
    // Meanwhile the witness serves.
    assert_eq!(c.get("/healthz").0, 200);
    let silent: Vec<Duration> = silent
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap()
                .expect("a silent connection was never closed")
        })
        .collect();
    assert_eq!(
        silent.iter().filter(|t| **t < DEADLINE).count(),
        2,
        "closed after {silent:?}"
    );
    assert!(
        silent.iter().all(|t| *t < DEADLINE + SLACK),
        "closed after {silent:?}"
    );
    let t = preface
        .join()
        .unwrap()
        .expect("the HTTP/2 preface held its connection");
    assert!(t >= DEADLINE && t < DEADLINE + SLACK, "closed after {t:?}");
    // The counts, once only the scrape's own connection is open.
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.metric("auditstamp_connections_open") != 1 {
        assert!(Instant::now() < deadline, "connections stayed open");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        c.metric("auditstamp_connections_refused_total{reason=\"per_address\"}"),
        2
    );
    assert_eq!(
        c.metric("auditstamp_connections_closed_total{reason=\"deadline\"}"),
        5
    );
    c.server.stop();
}

/// Runs `auditstamp bench witness` against `c`; returns its JSON figures.
fn bench(w: &WitnessNode, c: &Client, rounds: u64) -> Value {
    let url = c.server.url("");
    let out = w.cli_ok(&[
        "bench",
        "witness",
        "--url",
        &url,
        "--logs",
        "1000",
        "--seed",
        "7",
        "--clients",
        "16",
        "--rounds",
        &rounds.to_string(),
        "--json",
    ]);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_thousand_appliances_keep_a_bounded_state_each() {
    let w = WitnessNode::new(&Sim::new("placeholder.example/chain", 9).log_entry());
    let logs = w.path().join("logs.toml");
    w.cli_ok(&[
        "bench",
        "witness-config",
        "--logs",
        "1000",
        "--seed",
        "7",
        "--out",
        logs.to_str().unwrap(),
    ]);
    w.write_config(&std::fs::read_to_string(&logs).unwrap());
    let c = Client::new(w.start());
    assert_eq!(c.metric("auditstamp_witness_appliances"), 1000);

    let first = bench(&w, &c, 1);
    assert_eq!(first["errors"], 0, "{first}");
    assert_eq!(first["cosigned"], 1000, "{first}");
    assert_eq!(first["resyncs"], 0, "{first}");
    assert!(first["verified"].as_u64().unwrap() >= 1000);
    let records_1 = c.metric("auditstamp_witness_store_record_bytes");
    let disk_1 = c.metric("auditstamp_witness_store_disk_bytes");
    let files_1 = dir_bytes(&w.store_dir());

    // Four more rounds, from a new process (which starts where /status says).
    let more = bench(&w, &c, 4);
    assert_eq!(more["errors"], 0, "{more}");
    assert_eq!(more["cosigned"], 4000, "{more}");
    assert_eq!(more["resyncs"], 0, "{more}");
    let records_5 = c.metric("auditstamp_witness_store_record_bytes");
    let disk_5 = c.metric("auditstamp_witness_store_disk_bytes");
    let files_5 = dir_bytes(&w.store_dir());
    assert_eq!(c.metric("auditstamp_witness_appliances_stale"), 0);
    assert_eq!(c.metric("auditstamp_witness_cosigned_total"), 5000);
    let s = c.status_of("bench-00042.appliances.example/7");
    assert!(s["size"].as_u64().unwrap() >= 5);
    assert_eq!(s["evidence"], serde_json::json!([]));
    // Five more, to see whether the store keeps growing on disk.
    assert_eq!(bench(&w, &c, 5)["cosigned"], 5000);
    let records_10 = c.metric("auditstamp_witness_store_record_bytes");
    let disk_10 = c.metric("auditstamp_witness_store_disk_bytes");

    let per = |b: u64| b as f64 / 1000.0;
    println!(
        "witness state per appliance after 1, 5 and 10 checkpoints each: records {:.1}, {:.1}, {:.1} \
         bytes; sled on disk {:.1}, {:.1}, {:.1} bytes (store files {:.1}, {:.1})",
        per(records_1),
        per(records_5),
        per(records_10),
        per(disk_1),
        per(disk_5),
        per(disk_10),
        per(files_1),
        per(files_5),
    );
    // The records: per appliance the latest state, replaced at each checkpoint, and the
    // `HISTORY` before it (compact, under 200 bytes each), full after 1 + HISTORY
    // checkpoints; from then on only the digits of the tree size may grow.
    const { assert!(HISTORY < 5) };
    assert!(
        records_1 >= 1000 * 100 && records_5 > records_1,
        "the metric counts what was written: {records_1}, {records_5}"
    );
    assert!(
        records_5 <= records_1 + 1000 * 200 * HISTORY as u64 && records_10 <= records_5 + 1000 * 4,
        "records grew: {records_1}, {records_5}, {records_10}"
    );
    // On disk sled's log takes a few segments at first, then reclaims replaced values as
    // it goes (between 3.7 and 5.8 KB per appliance were measured up to 30 checkpoints
    // each, going up and down by a few 512 KiB segments): bounded per appliance.
    for (n, disk) in [(5, disk_5), (10, disk_10)] {
        assert!(
            disk <= 1000 * 8192,
            "{disk} bytes on disk for 1000 appliances after {n} checkpoints each"
        );
    }
    c.server.stop();
}

/// Two witness servers on one PostgreSQL database, each with its own HSM session on the same
/// cosigner key: of simultaneous submissions from one state, spread over both, exactly one
/// is cosigned and every other one gets 409 with the size now recorded; a submission that
/// names a state the other server stored is cosigned by either; both say 503 on /readyz
/// while the database is down, and serve again by themselves when it is back.
#[test]
fn two_servers_on_one_database_cosign_exactly_one_of_simultaneous_submissions() {
    let backend = Backend::postgres();
    let mut a = Sim::new("appliance-a.example/chain", 1);
    let w = WitnessNode::on(&backend, &a.log_entry());
    let witness = witness_key(&w);
    let one = Client::new(w.start());
    let two = Client::new(w.start());
    assert_cosigned(&one.add(a.body(0, 50)), &a.text(50, a.root(50)), &witness);
    // The second server decides on the database's state, not on what it had read.
    assert_cosigned(&two.add(a.body(50, 60)), &a.text(60, a.root(60)), &witness);
    assert_conflict(&one.add(a.body(50, 70)), 60);
    a.grow_to(100);
    let bodies: Vec<(u64, String)> = (61..=92).map(|s| (s, a.body(60, s))).collect();
    let urls = [
        one.server.url("/add-checkpoint"),
        two.server.url("/add-checkpoint"),
    ];
    let winners = [exactly_one_cosigned(&one, bodies, &urls)];
    // Both servers show the winner (the other one within its refresh).
    let deadline = Instant::now() + Duration::from_secs(60);
    for c in [&one, &two] {
        while c.status_of("appliance-a.example/chain")["size"] != winners[0] {
            assert!(
                Instant::now() < deadline,
                "a server does not show the new state"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // The database goes away: both servers say so, and come back by themselves.
    let Backend::Postgres(pg) = &backend else {
        unreachable!()
    };
    pg.stop_now().unwrap();
    for c in [&one, &two] {
        while c.get("/readyz").0 != 503 {
            assert!(Instant::now() < deadline, "/readyz does not say 503");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(c.add(a.body(winners[0], 100)).status, 503);
    }
    pg.start_again().unwrap();
    for c in [&one, &two] {
        while c.get("/readyz").0 != 200 {
            assert!(Instant::now() < deadline, "/readyz does not come back");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut cosigned = None;
    while cosigned.is_none() {
        assert!(
            Instant::now() < deadline,
            "no cosignature after the database came back"
        );
        let r = two.add(a.body(winners[0], 100));
        if r.status == 200 {
            cosigned = Some(r);
        }
    }
    assert_cosigned(&cosigned.unwrap(), &a.text(100, a.root(100)), &witness);
    one.server.stop();
    two.server.stop();
}

/// A sled witness moves into PostgreSQL with `witness migrate` and `witness import-sled`
/// (again: nothing changes), and goes on where it stopped: its state, history and evidence
/// are there. Once the database has moved on, importing the old sled store is refused.
#[test]
fn a_sled_witness_moves_into_postgres_and_goes_on() {
    let mut a = Sim::new("appliance-a.example/chain", 1);
    let logs = a.log_entry();
    let mut w = WitnessNode::new(&logs);
    let witness = witness_key(&w);
    let c = Client::new(w.start());
    assert_cosigned(&c.add(a.body(0, 10)), &a.text(10, a.root(10)), &witness);
    assert_cosigned(&c.add(a.body(10, 20)), &a.text(20, a.root(20)), &witness);
    let mut f = a.fork();
    f.grow_to(20);
    assert_conflict(
        &c.add(add_checkpoint_body(20, &[], &f.note(20)).unwrap()),
        20,
    );
    c.server.stop();

    let pg = Backend::postgres();
    w.switch_to(&pg, &logs);
    // Before the schema exists, the move says what to run.
    let out = w.command(&["witness", "import-sled"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("witness migrate"));
    w.cli_ok(&["witness", "migrate"]);
    let moved = w.cli_ok(&["witness", "import-sled"]);
    let text = String::from_utf8_lossy(&moved.stdout);
    assert!(
        text.contains("1 latest states, 1 earlier checkpoints, 1 evidence records"),
        "{text}"
    );
    let again = w.cli_ok(&["witness", "import-sled"]);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(
        text.contains("0 latest states, 0 earlier checkpoints, 0 evidence records"),
        "{text}"
    );

    let c = Client::new(w.start());
    let s = c.status_of(&a.origin);
    assert_eq!(s["size"], 20);
    assert_eq!(s["history"][0]["size"], 10);
    assert_eq!(s["evidence"][0]["submitted"], f.note(20).as_str());
    assert_conflict(&c.add(a.body(10, 30)), 20);
    assert_cosigned(&c.add(a.body(20, 30)), &a.text(30, a.root(30)), &witness);
    c.server.stop();
    // The sled store is behind the database now: moving it again is refused, nothing moved.
    let out = w.command(&["witness", "import-sled"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already holds another state"), "{err}");
    let c = Client::new(w.start());
    assert_eq!(c.status_of(&a.origin)["size"], 30);
    c.server.stop();
}

/// What one simulated appliance saw while submitting under faults.
struct Driven {
    origin: String,
    /// The largest size a witness acknowledged with a cosignature.
    acked: u64,
    /// The state the appliance ended believing the witnesses hold.
    recorded: u64,
    sim: Sim,
}

/// An appliance submitting growing checkpoints, alternating between the servers at `urls`,
/// as the appliance's submitter does: on 409 it takes the size the witness names, on a
/// failure it tries again (the other server). Checks every answer: a 409 never names a size
/// below one acknowledged, nor one this appliance did not submit (no acknowledged state is
/// lost, nothing foreign accepted).
async fn drive(
    mut sim: Sim,
    urls: std::sync::Arc<std::sync::Mutex<[String; 2]>>,
    http: reqwest::Client,
    acks: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Driven {
    use std::sync::atomic::Ordering;
    let (mut recorded, mut acked, mut k) = (0u64, 0u64, 0usize);
    let mut submitted = std::collections::BTreeSet::new();
    while !stop.load(Ordering::SeqCst) {
        let size = recorded + 1 + (k as u64 % 3);
        let body = sim.body(recorded, size);
        submitted.insert(size);
        let url = urls.lock().unwrap()[k % 2].clone();
        k += 1;
        let sent = http
            .post(&url)
            .timeout(Duration::from_secs(10))
            .body(body)
            .send()
            .await;
        let Ok(resp) = sent else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        match status {
            200 => {
                acked = acked.max(size);
                recorded = size;
                acks.fetch_add(1, Ordering::SeqCst);
            }
            409 => {
                let now: u64 = text.trim().parse().unwrap();
                assert!(
                    now >= acked,
                    "{}: 409 names {now}, below the acknowledged {acked}",
                    sim.origin
                );
                assert!(
                    now == 0 || submitted.contains(&now),
                    "{}: 409 names {now}, which it never submitted",
                    sim.origin
                );
                recorded = now;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    Driven {
        origin: sim.origin.clone(),
        acked,
        recorded,
        sim,
    }
}

/// Two witness servers on one PostgreSQL under the load of eight appliances: one server is
/// killed with -9 and started again, then the database is stopped at once (as a crash) and
/// started again. No acknowledged cosignature's state is lost, the servers recover by
/// themselves (every appliance is cosigned again after each fault), and a fork submitted
/// afterwards to either server is refused with the recorded size.
#[test]
fn kill_9_of_a_server_and_a_database_restart_under_load_lose_nothing() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    let backend = Backend::postgres();
    let Backend::Postgres(pg) = &backend else {
        unreachable!()
    };
    let sims: Vec<Sim> = (0..8)
        .map(|i| Sim::new(&format!("appliance-{i}.example/chain"), 10 + i))
        .collect();
    let logs: Vec<String> = sims.iter().map(Sim::log_entry).collect();
    let w = WitnessNode::on(&backend, &logs.join("\n"));
    let witness = witness_key(&w);
    let one = Client::new(w.start());
    let mut two = Some(w.start());
    let urls = Arc::new(Mutex::new([
        one.server.url("/add-checkpoint"),
        two.as_ref().unwrap().url("/add-checkpoint"),
    ]));
    let acks = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let drivers: Vec<_> = sims
        .into_iter()
        .map(|sim| {
            one.rt.spawn(drive(
                sim,
                urls.clone(),
                one.http.clone(),
                acks.clone(),
                stop.clone(),
            ))
        })
        .collect();
    // Waits until `n` more cosignatures were acknowledged.
    let progress = |n: u64| {
        let from = acks.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(120);
        while acks.load(Ordering::SeqCst) < from + n {
            assert!(
                Instant::now() < deadline,
                "no progress: {} acks",
                acks.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    progress(200);
    // kill -9 of the second server in the middle of the load, then it starts again.
    drop(two.take());
    progress(100);
    let restarted = w.start();
    urls.lock().unwrap()[1] = restarted.url("/add-checkpoint");
    progress(100);
    // The database crashes and comes back.
    pg.stop_now().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while one.get("/readyz").0 != 503 {
        assert!(Instant::now() < deadline, "/readyz never said 503");
        std::thread::sleep(Duration::from_millis(20));
    }
    pg.start_again().unwrap();
    progress(200);
    stop.store(true, Ordering::SeqCst);
    let driven: Vec<Driven> = drivers
        .into_iter()
        .map(|d| one.rt.block_on(d).unwrap())
        .collect();

    let restarted = Client::new(restarted);
    for d in &driven {
        assert!(d.acked > 0, "{} was never cosigned", d.origin);
        let mut sizes = Vec::new();
        for c in [&one, &restarted] {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let size = c.status_of(&d.origin)["size"].as_u64().unwrap();
                if size == d.recorded || Instant::now() > deadline {
                    sizes.push(size);
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // What the appliance last recorded is what both servers hold, and never below
        // what was acknowledged.
        assert_eq!(sizes, [d.recorded, d.recorded], "{}", d.origin);
        assert!(d.recorded >= d.acked, "{}", d.origin);
    }
    // A fork of an acknowledged size is refused by either server, and kept as evidence.
    let mut d = driven.into_iter().next().unwrap();
    let mut f = d.sim.fork();
    f.grow_to(d.recorded);
    let fork = add_checkpoint_body(d.recorded, &[], &f.note(d.recorded)).unwrap();
    assert_conflict(&one.add(fork.clone()), d.recorded);
    assert_conflict(&restarted.add(fork), d.recorded);
    assert_eq!(one.status_of(&d.origin)["alerts"]["fork"], 1);
    // And the appliance goes on.
    let next = d.recorded + 5;
    assert_cosigned(
        &restarted.add(d.sim.body(d.recorded, next)),
        &d.sim.text(next, d.sim.root(next)),
        &witness,
    );
    one.server.stop();
    restarted.server.stop();
}
