//! The data center's witness end to end: `auditstamp witness serve` on a real socket, its
//! key in a SoftHSM token of its own, its state in sled, against simulated appliances whose
//! trees are built here with `chain::tlog` and whose checkpoints are signed here with
//! software Ed25519 keys registered in the witness's configuration.
//!
//! - A growing sequence is cosigned; every cosignature verifies with
//!   `Cosigner::verify` against the witness key (read from the HSM by
//!   `auditstamp witness verifier-key`, the same one `/status` and the startup log show).
//! - Forks, rollbacks and bad proofs are refused with the spec's statuses (409 bodies are
//!   `text/x.tlog.size`) and recorded as alerts in `/status` and `/metrics`; unknown
//!   origins get 404, bad signatures 403 (recorded), malformed bodies 400.
//! - Of concurrent submissions from one state exactly one is cosigned.
//! - The state survives SIGTERM and kill -9 right after a 200.
//! - 1,000 appliances (configuration from `bench witness-config`, load from `bench witness`)
//!   keep a constant state per appliance over five rounds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use auditstamp::chain::cosignature::Cosigner;
use auditstamp::chain::note::{key_id, verifier_key, Checkpoint, NoteSignature, SignedNote};
use auditstamp::chain::tlog::{self, Hash};
use auditstamp::chain::witness_protocol::{add_checkpoint_body, parse_cosignatures};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::*;
use ed25519_dalek::Signer as _;
use serde_json::Value;

const SIZE_TYPE: &str = "text/x.tlog.size";

/// A simulated appliance: its tree (built with `chain::tlog`) and its software key.
struct Sim {
    origin: String,
    key: ed25519_dalek::SigningKey,
    hashes: Vec<Hash>,
    size: u64,
    /// Leaves get this prefix: two sims with another salt have other trees.
    salt: u8,
}

impl Sim {
    fn new(origin: &str, seed: u8) -> Sim {
        Sim {
            origin: origin.into(),
            key: ed25519_dalek::SigningKey::from_bytes(&[seed; 32]),
            hashes: Vec::new(),
            size: 0,
            salt: 0,
        }
    }

    /// The same appliance (origin and key) with another history: a tampered appliance.
    fn fork(&self) -> Sim {
        Sim {
            origin: self.origin.clone(),
            key: self.key.clone(),
            hashes: Vec::new(),
            size: 0,
            salt: self.salt.wrapping_add(1),
        }
    }

    fn log_entry(&self) -> String {
        format!(
            "[[log]]\norigin = \"{}\"\nkey = \"{}\"\nurl = \"https://{}\"\n",
            self.origin,
            verifier_key(&self.origin, &self.key.verifying_key().to_bytes()),
            self.origin.split('/').next().unwrap()
        )
    }

    fn grow_to(&mut self, size: u64) {
        while self.size < size {
            let leaf =
                tlog::leaf_hash(format!("{} {} {}", self.salt, self.origin, self.size).as_bytes());
            let add = tlog::stored_hashes_for_record(self.size, leaf, &self.hashes).unwrap();
            self.hashes.extend(add);
            self.size += 1;
        }
    }

    fn root(&self, size: u64) -> Hash {
        tlog::tree_hash(size, &self.hashes).unwrap()
    }

    fn text(&self, size: u64, root: Hash) -> String {
        Checkpoint {
            origin: self.origin.clone(),
            size,
            root,
            extensions: vec![],
        }
        .body()
    }

    /// The checkpoint note of `size` with `root`, signed by `key`.
    fn note_with(&self, size: u64, root: Hash, key: &ed25519_dalek::SigningKey) -> String {
        let text = self.text(size, root);
        SignedNote {
            signatures: vec![NoteSignature {
                name: self.origin.clone(),
                id: key_id(&self.origin, &key.verifying_key().to_bytes()),
                signature: key.sign(text.as_bytes()).to_bytes().to_vec(),
            }],
            text,
        }
        .format()
    }

    fn note(&self, size: u64) -> String {
        self.note_with(size, self.root(size), &self.key)
    }

    fn proof(&self, old: u64, size: u64) -> Vec<Hash> {
        tlog::prove_consistency(size, old, &self.hashes).unwrap()
    }

    /// The add-checkpoint body from `old` to `size` (growing the tree if need be).
    fn body(&mut self, old: u64, size: u64) -> String {
        self.grow_to(size);
        add_checkpoint_body(old, &self.proof(old, size), &self.note(size)).unwrap()
    }
}

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
    let mut a = Sim::new("appliance-a.example/chain", 1);
    let b = Sim::new("appliance-b.example/chain", 2);
    let w = WitnessNode::new(&format!("{}\n{}", a.log_entry(), b.log_entry()));
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

#[test]
fn forks_rollbacks_and_bad_proofs_are_refused_and_recorded() {
    let mut a = Sim::new("appliance-a.example/chain", 1);
    let w = WitnessNode::new(&a.log_entry());
    let witness = witness_key(&w);
    let c = Client::new(w.start());
    let r = c.add(a.body(0, 10));
    assert_cosigned(&r, &a.text(10, a.root(10)), &witness);

    // A fork: the appliance's key signed another tree of the recorded size.
    let mut tampered = a.fork();
    tampered.grow_to(20);
    assert_ne!(tampered.root(10), a.root(10));
    let fork = add_checkpoint_body(10, &[], &tampered.note(10)).unwrap();
    assert_conflict(&c.add(fork), 10);
    // A larger tree of that other history: its proof does not start at the recorded root.
    let other = add_checkpoint_body(10, &tampered.proof(10, 20), &tampered.note(20)).unwrap();
    let r = c.add(other);
    assert_eq!(r.status, 422, "{}", r.body);
    // A proof that was tampered with.
    a.grow_to(40);
    let mut proof = a.proof(10, 40);
    proof[1][0] ^= 1;
    let r = c.add(add_checkpoint_body(10, &proof, &a.note(40)).unwrap());
    assert_eq!(r.status, 422, "{}", r.body);
    let mut short = a.proof(10, 40);
    short.pop();
    assert_eq!(
        c.add(add_checkpoint_body(10, &short, &a.note(40)).unwrap())
            .status,
        422
    );
    // A stale old size: a 409 (no alert: a restarted or racing client does this).
    assert_conflict(&c.add(a.body(5, 40)), 10);
    // Rollbacks: signed checkpoints smaller than the recorded one.
    assert_conflict(&c.add(a.body(5, 5)), 10);
    let smaller = add_checkpoint_body(10, &[], &a.note(5)).unwrap();
    let r = c.add(smaller);
    assert_eq!(r.status, 400, "{}", r.body);
    // An old size above the recorded one: a 409, but nothing the appliance signed is wrong.
    assert_conflict(&c.add(a.body(20, 40)), 10);

    // Nothing of it changed the state; the next good checkpoint is cosigned.
    let s = c.status_of("appliance-a.example/chain");
    assert_eq!(s["size"], 10);
    assert_eq!(s["root_hash"], B64.encode(a.root(10)));
    assert_eq!(s["alerts"]["fork"], 1);
    assert_eq!(s["alerts"]["bad-proof"], 3);
    assert_eq!(s["alerts"]["rollback"], 2);
    assert_eq!(s["alerts"]["bad-signature"], 0);
    let recent = s["recent_alerts"].as_array().unwrap();
    assert_eq!(recent.len(), 6);
    // Newest first; each with the sizes and both checkpoints signed by the appliance.
    assert_eq!(recent[0]["kind"], "rollback");
    assert_eq!(recent[0]["old_size"], 10);
    assert_eq!(recent[0]["size"], 5);
    assert_eq!(recent[0]["recorded_size"], 10);
    let forked = recent.iter().find(|x| x["kind"] == "fork").unwrap();
    assert_eq!(
        (forked["old_size"].as_u64(), forked["size"].as_u64()),
        (Some(10), Some(10))
    );
    let submitted = SignedNote::parse(forked["submitted"].as_str().unwrap()).unwrap();
    let recorded = SignedNote::parse(forked["recorded"].as_str().unwrap()).unwrap();
    assert_eq!(submitted.text, tampered.text(10, tampered.root(10)));
    assert_eq!(recorded.text, a.text(10, a.root(10)));
    let vk = auditstamp::chain::note::VerifierKey::parse(&verifier_key(
        &a.origin,
        &a.key.verifying_key().to_bytes(),
    ))
    .unwrap();
    submitted.verify(&vk).unwrap();
    recorded.verify(&vk).unwrap();
    assert!(recent
        .iter()
        .all(|x| x["at"].as_u64().unwrap() >= now() - 60));

    assert_eq!(
        c.metric("auditstamp_witness_alerts_total{kind=\"fork\"}"),
        1
    );
    assert_eq!(
        c.metric("auditstamp_witness_alerts_total{kind=\"bad-proof\"}"),
        3
    );
    assert_eq!(
        c.metric("auditstamp_witness_alerts_total{kind=\"rollback\"}"),
        2
    );
    assert_eq!(
        c.metric("auditstamp_witness_refused_total{reason=\"fork\"}"),
        1
    );
    assert_eq!(
        c.metric("auditstamp_witness_refused_total{reason=\"bad_proof\"}"),
        3
    );
    assert_eq!(
        c.metric("auditstamp_witness_refused_total{reason=\"old_size_mismatch\"}"),
        3
    );
    assert_eq!(
        c.metric("auditstamp_witness_refused_total{reason=\"old_size_above_size\"}"),
        1
    );

    let r = c.add(a.body(10, 40));
    assert_cosigned(&r, &a.text(40, a.root(40)), &witness);
    assert_eq!(c.status_of("appliance-a.example/chain")["size"], 40);
    c.server.stop();
}

#[test]
fn unknown_origins_bad_signatures_and_malformed_bodies_are_refused() {
    let mut a = Sim::new("appliance-a.example/chain", 1);
    let w = WitnessNode::new(&a.log_entry());
    let witness = witness_key(&w);
    let c = Client::new(w.start());
    assert_cosigned(&c.add(a.body(0, 3)), &a.text(3, a.root(3)), &witness);

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

    let s = c.status_of("appliance-a.example/chain");
    assert_eq!(s["size"], 3, "the state did not move");
    assert_eq!(s["alerts"]["bad-signature"], 3);
    let recent = s["recent_alerts"].as_array().unwrap();
    assert_eq!(recent[0]["kind"], "bad-signature");
    assert_eq!(recent[0]["recorded"], Value::Null);
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
    let mut a = Sim::new("appliance-a.example/chain", 1);
    let w = WitnessNode::new(&a.log_entry());
    let witness = witness_key(&w);
    let c = Client::new(w.start());
    assert_cosigned(&c.add(a.body(0, 50)), &a.text(50, a.root(50)), &witness);
    a.grow_to(100);
    let bodies: Vec<(u64, String)> = (51..=82).map(|s| (s, a.body(50, s))).collect();
    let url = c.server.url("/add-checkpoint");
    let answers: Vec<(u64, u16, String)> = c.rt.block_on(async {
        let tasks: Vec<_> = bodies
            .into_iter()
            .map(|(size, body)| {
                let (http, url) = (c.http.clone(), url.clone());
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
    assert_eq!(c.status_of("appliance-a.example/chain")["size"], winners[0]);
    c.server.stop();
}

#[test]
fn state_survives_sigterm_and_kill_9_after_a_200() {
    let mut a = Sim::new("appliance-a.example/chain", 1);
    let w = WitnessNode::new(&a.log_entry());
    let witness = witness_key(&w);
    let c = Client::new(w.start());
    assert_cosigned(&c.add(a.body(0, 7)), &a.text(7, a.root(7)), &witness);
    c.server.stop();

    // After SIGTERM: the next submission must name 7.
    let c = Client::new(w.start());
    assert_conflict(&c.add(a.body(0, 12)), 7);
    assert_cosigned(&c.add(a.body(7, 12)), &a.text(12, a.root(12)), &witness);
    // A rollback (a signed checkpoint of 5 after 12): refused and recorded.
    assert_conflict(&c.add(a.body(5, 5)), 12);
    // kill -9 right after it.
    let Client { server, .. } = c;
    drop(server);

    let c = Client::new(w.start());
    assert_conflict(&c.add(a.body(7, 20)), 12);
    let s = c.status_of("appliance-a.example/chain");
    assert_eq!(s["size"], 12);
    assert_eq!(s["root_hash"], B64.encode(a.root(12)));
    // The alert survives too.
    assert_eq!(s["alerts"]["rollback"], 1);
    assert_cosigned(&c.add(a.body(12, 20)), &a.text(20, a.root(20)), &witness);
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
fn a_thousand_appliances_keep_a_constant_state_each() {
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
    assert_eq!(s["recent_alerts"], serde_json::json!([]));
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
    // The records: one state per appliance, replaced at each checkpoint; only the digits
    // of the tree size may grow.
    assert!(
        records_5 <= records_1 + 1000 * 4 && records_10 <= records_5 + 1000 * 4,
        "records grew: {records_1}, {records_5}, {records_10}"
    );
    // On disk sled's log takes a few segments at first, then reclaims replaced values:
    // bounded per appliance, and no growth from 5 to 10 checkpoints beyond one segment.
    assert!(
        disk_5 <= 1000 * 4096,
        "{disk_5} bytes on disk for 1000 appliances"
    );
    assert!(
        disk_10 <= disk_5 + 512 * 1024,
        "the store grew on disk from {disk_5} to {disk_10} bytes"
    );
    c.server.stop();
}
