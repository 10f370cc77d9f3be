//! The event chain's HTTP API end to end, against a real `auditstamp serve` (SoftHSM token,
//! sled store, real socket), with every answer checked by code independent of the
//! appliance's own: the documented leaf and header layouts decoded here, Ed25519 with
//! ed25519-dalek, checkpoints with the `signed_note` crate, Merkle proofs and tiles with
//! the `tlog_tiles` crate, block tokens with `openssl ts -verify`.
//!
//! - Events in: `POST /v1/events` and `POST /v1/events/batch` (JSON array and NDJSON),
//!   consecutive indexes, leaf hashes, every action, and the event read back.
//! - Bad input: each refusal is a 4xx with a JSON `{"error": ...}` naming the problem, and
//!   nothing of it is stored (the next good event's index is one past the last good one);
//!   bodies over the byte caps (with a Content-Length and chunked) likewise.
//! - Details exactly as sent: numbers keep their text in the leaf and when shown back;
//!   repeated keys (top level, in details, nested) are refused naming the key, in a batch
//!   naming the event too.
//! - Blocks: header bytes, header hash, Ed25519 signature by the chain key, the hash chain
//!   (across a restart), events tiled without gaps and at most `max_block_events` a block,
//!   the RFC 3161 token over the header hash.
//! - Proof bundles `GET /v1/events/{i}`: leaf, signed checkpoint, inclusion proof, the C2SP
//!   tlog-proof text; consistency proofs between published checkpoints.
//! - The C2SP tlog-tiles read API: `/checkpoint`, hash tiles and entry bundles rebuild the
//!   checkpoint's tree.
//! - Transparency of the TSA: every token `POST /tsa` issues is a `tsa.issued` event.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The checkpoint origin (and note key name) of the test config.
const ORIGIN: &str = "test-appliance.example/chain";
const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";
/// Every action a client may post.
const ACTIONS: [&str; 6] = [
    "data_collection",
    "identity_management",
    "data_operation",
    "access",
    "export",
    "custom:badge.scan-2",
];
/// How long a test waits for the sealer (the test config seals every 200 ms).
const SEAL_DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// HTTP

/// One HTTP answer.
struct Reply {
    status: u16,
    content_type: String,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// Asserts a `status` answer with a JSON `{"error": "..."}` body; returns the message.
    fn error(&self, status: u16) -> String {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        assert!(
            self.content_type.starts_with(JSON),
            "a {} error must be JSON {{\"error\": ...}}, got Content-Type {:?} and body {:?}",
            self.status,
            self.content_type,
            self.text()
        );
        let v = self.json();
        let obj = v.as_object().expect("the error is a JSON object");
        assert_eq!(obj.len(), 1, "only an error member: {v}");
        let message = obj["error"].as_str().expect("error is a string").to_owned();
        assert!(!message.is_empty());
        message
    }

    /// Asserts a 200 JSON answer and returns it.
    fn ok_json(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.text());
        assert!(self.content_type.starts_with(JSON), "{}", self.content_type);
        self.json()
    }
}

/// A running appliance and a client.
struct Api {
    client: reqwest::Client,
    server: Server,
}

impl Api {
    fn start(app: &Appliance) -> Api {
        Api {
            client: reqwest::Client::new(),
            server: app.start(),
        }
    }

    async fn reply(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let content_type = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = resp.bytes().await.unwrap().to_vec();
        Reply {
            status,
            content_type,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        let resp = self.client.get(self.server.url(path)).send().await.unwrap();
        Api::reply(resp).await
    }

    /// POSTs `body`; no Content-Type header when `content_type` is empty.
    async fn post(&self, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> Reply {
        let mut req = self.client.post(self.server.url(path)).body(body);
        if !content_type.is_empty() {
            req = req.header("Content-Type", content_type);
        }
        Api::reply(req.send().await.unwrap()).await
    }

    /// Posts one event; returns its index and leaf hash (hex).
    async fn post_event(&self, event: &Value) -> (u64, String) {
        let v = self
            .post("/v1/events", JSON, event.to_string())
            .await
            .ok_json();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 2, "index and leaf_hash: {v}");
        let leaf_hash = v["leaf_hash"].as_str().unwrap().to_owned();
        assert_hex32(&leaf_hash);
        (v["index"].as_u64().unwrap(), leaf_hash)
    }

    /// Posts a batch body; returns its first index and leaf hashes, checking `count`.
    async fn post_batch_body(
        &self,
        content_type: &str,
        body: String,
        count: usize,
    ) -> (u64, Vec<String>) {
        let v = self
            .post("/v1/events/batch", content_type, body)
            .await
            .ok_json();
        assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
        assert_eq!(v["count"].as_u64().unwrap(), count as u64, "{v}");
        let hashes: Vec<String> = v["leaf_hashes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(hashes.len(), count);
        hashes.iter().for_each(|h| assert_hex32(h));
        (v["first_index"].as_u64().unwrap(), hashes)
    }

    /// Posts `events` as a JSON array.
    async fn post_batch(&self, events: &[Value]) -> (u64, Vec<String>) {
        self.post_batch_body(JSON, Value::from(events.to_vec()).to_string(), events.len())
            .await
    }

    /// Posts `events` as NDJSON.
    async fn post_ndjson(&self, events: &[Value]) -> (u64, Vec<String>) {
        self.post_batch_body(NDJSON, ndjson(events), events.len())
            .await
    }

    /// Polls `GET /v1/blocks/latest` until a block seals at least `size` events.
    async fn wait_sealed(&self, size: u64) -> Value {
        let start = Instant::now();
        loop {
            let r = self.get("/v1/blocks/latest").await;
            if r.status == 200 {
                let b = r.json();
                if b["tree_size"].as_u64().unwrap() >= size {
                    return b;
                }
            } else {
                assert!(
                    r.error(404).contains("no block"),
                    "before the first seal: {}",
                    r.text()
                );
            }
            assert!(
                start.elapsed() < SEAL_DEADLINE,
                "no block seals {size} events after {SEAL_DEADLINE:?}; server log:\n{}",
                self.server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn block(&self, height: u64) -> Value {
        self.get(&format!("/v1/blocks/{height}")).await.ok_json()
    }

    async fn bundle(&self, index: u64) -> Value {
        self.get(&format!("/v1/events/{index}")).await.ok_json()
    }
}

// ---------------------------------------------------------------------------------------
// Events

/// A good event, different for each `n`; its action cycles through [`ACTIONS`].
fn event(n: usize) -> Value {
    json!({
        "agency": "tax-office-3",
        "auditor": format!("auditor-{}", n % 7),
        "action": ACTIONS[n % ACTIONS.len()],
        "subject": format!("case/2026/{n:05}/dossier-ü"),
        "data_sha256": hex::encode(Sha256::digest(n.to_be_bytes())),
        "occurred_at": "2026-11-30T08:15:00.25+02:00",
        "details": {"n": n, "b": [true, null, "x"], "a": {"nested": n % 3}},
    })
}

fn ndjson(events: &[Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

fn assert_hex32(s: &str) {
    assert_eq!(s.len(), 64, "{s:?}");
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{s:?}"
    );
}

fn b64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().expect("a base64 string")).unwrap()
}

/// RFC 6962 leaf hash, written out here: SHA-256(0x00 || leaf).
fn leaf_hash(leaf: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

/// An event's leaf bytes, decoded by the layout documented in src/chain/event.rs.
#[derive(Debug)]
struct Leaf {
    index: u64,
    received_at_ms: u64,
    salt: [u8; 16],
    occurred_at_ns: i64,
    data_sha256: [u8; 32],
    agency: String,
    auditor: String,
    action: String,
    subject: String,
    details: String,
}

fn decode_leaf(mut b: &[u8]) -> Leaf {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> &'a [u8] {
        assert!(b.len() >= n, "leaf truncated");
        let (head, tail) = b.split_at(n);
        *b = tail;
        head
    }
    fn u64_of(b: &mut &[u8]) -> u64 {
        u64::from_be_bytes(take(b, 8).try_into().unwrap())
    }
    fn string(b: &mut &[u8]) -> String {
        let len = u32::from_be_bytes(take(b, 4).try_into().unwrap()) as usize;
        String::from_utf8(take(b, len).to_vec()).unwrap()
    }
    assert_eq!(take(&mut b, 1), [1], "leaf version 1");
    let leaf = Leaf {
        index: u64_of(&mut b),
        received_at_ms: u64_of(&mut b),
        salt: take(&mut b, 16).try_into().unwrap(),
        occurred_at_ns: u64_of(&mut b) as i64,
        data_sha256: take(&mut b, 32).try_into().unwrap(),
        agency: string(&mut b),
        auditor: string(&mut b),
        action: string(&mut b),
        subject: string(&mut b),
        details: string(&mut b),
    };
    assert!(b.is_empty(), "bytes after the last field");
    leaf
}

/// Checks that the stored event `got` (as `GET /v1/events/{i}` shows it) is `posted`.
fn assert_same_event(got: &Value, posted: &Value, index: u64) {
    assert_eq!(got["index"], index);
    for field in [
        "agency",
        "auditor",
        "action",
        "subject",
        "data_sha256",
        "details",
    ] {
        assert_eq!(got[field], posted[field], "{field} of event {index}");
    }
    // RFC 3339 normalised to UTC.
    assert_eq!(got["occurred_at"], "2026-11-30T06:15:00.25Z");
    assert_eq!(got["salt"].as_str().unwrap().len(), 32);
    assert!(got["received_at"].as_str().unwrap().ends_with('Z'));
}

/// Checks the leaf bytes against the event JSON of the same bundle.
fn assert_leaf_is_event(leaf: &[u8], event: &Value) {
    let l = decode_leaf(leaf);
    assert_eq!(l.index, event["index"].as_u64().unwrap());
    assert_eq!(hex::encode(l.salt), event["salt"].as_str().unwrap());
    assert_eq!(
        hex::encode(l.data_sha256),
        event["data_sha256"].as_str().unwrap()
    );
    assert_eq!(l.agency, event["agency"].as_str().unwrap());
    assert_eq!(l.auditor, event["auditor"].as_str().unwrap());
    assert_eq!(l.action, event["action"].as_str().unwrap());
    assert_eq!(l.subject, event["subject"].as_str().unwrap());
    let details: Value = serde_json::from_str(&l.details).unwrap();
    assert_eq!(details, event["details"]);
    assert_eq!(
        l.details,
        serde_json::to_string(&details).unwrap(),
        "compact, key-sorted details JSON"
    );
    let occurred = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(l.occurred_at_ns))
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert_eq!(occurred, event["occurred_at"].as_str().unwrap());
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        l.received_at_ms <= now_ms && now_ms - l.received_at_ms < 10 * 60 * 1000,
        "received_at {} is the appliance's recent clock",
        l.received_at_ms
    );
}

// ---------------------------------------------------------------------------------------
// Blocks, checkpoints and proofs

/// A block header, decoded by the layout documented in src/chain/block.rs.
#[derive(Debug, PartialEq)]
struct Header {
    height: u64,
    prev_hash: [u8; 32],
    tree_size: u64,
    root: [u8; 32],
    first_index: u64,
    event_count: u64,
    sealed_at_ms: u64,
    key_id: [u8; 32],
}

fn decode_header(b: &[u8]) -> Header {
    assert_eq!(
        b.len(),
        1 + 8 + 32 + 8 + 32 + 8 + 8 + 8 + 32,
        "header length"
    );
    assert_eq!(b[0], 1, "header version");
    let u = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
    let h = |at: usize| -> [u8; 32] { b[at..at + 32].try_into().unwrap() };
    Header {
        height: u(1),
        prev_hash: h(9),
        tree_size: u(41),
        root: h(49),
        first_index: u(81),
        event_count: u(89),
        sealed_at_ms: u(97),
        key_id: h(105),
    }
}

/// The raw Ed25519 key of a DER SubjectPublicKeyInfo (checking that it is one).
fn ed25519_of_spki(spki: &[u8]) -> ed25519_dalek::VerifyingKey {
    use der::Decode;
    let info = spki::SubjectPublicKeyInfoRef::from_der(spki).unwrap();
    assert_eq!(info.algorithm.oid.to_string(), "1.3.101.112", "Ed25519");
    assert_eq!(spki.len(), 44);
    ed25519_dalek::VerifyingKey::from_bytes(&spki[spki.len() - 32..].try_into().unwrap()).unwrap()
}

/// `openssl ts -verify -digest` of a DER token; whether it succeeded, and its output.
fn openssl_verifies_token(
    app: &Appliance,
    token: &[u8],
    digest_hex: &str,
    name: &str,
) -> (bool, String) {
    let work = app.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let path = work.join(format!("{name}.der"));
    std::fs::write(&path, token).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["ts", "-verify", "-digest", digest_hex, "-in"])
        .arg(&path)
        .args(["-token_in", "-CAfile"])
        .arg(app.ca_pem())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Checks one block's JSON: header bytes and fields, hash, signature, key id and token.
fn check_block(app: &Appliance, b: &Value, chain_spki: &[u8]) -> Header {
    let header_bytes = b64(&b["header"]);
    let h = decode_header(&header_bytes);
    assert_eq!(b["height"], h.height);
    assert_eq!(b["prev_hash"], hex::encode(h.prev_hash));
    assert_eq!(b["tree_size"], h.tree_size);
    assert_eq!(b["root_hash"], hex::encode(h.root));
    assert_eq!(b["first_index"], h.first_index);
    assert_eq!(b["event_count"], h.event_count);
    assert_eq!(b["sealed_at_ms"], h.sealed_at_ms);
    assert_eq!(b["key_id"], hex::encode(h.key_id));
    let header_hash = hex::encode(Sha256::digest(&header_bytes));
    assert_eq!(b["header_hash"], header_hash);
    assert_eq!(h.key_id, <[u8; 32]>::from(Sha256::digest(chain_spki)));
    assert_eq!(h.first_index + h.event_count, h.tree_size);
    assert!(h.event_count >= 1, "no empty blocks");

    let key = ed25519_of_spki(chain_spki);
    let sig = ed25519_dalek::Signature::from_slice(&b64(&b["signature"])).unwrap();
    key.verify_strict(&header_bytes, &sig)
        .expect("the header signature verifies with the chain key");
    let mut other = header_bytes.clone();
    other[100] ^= 1;
    assert!(key.verify_strict(&other, &sig).is_err());

    let token = b64(&b["token"]);
    let name = format!("block-{}", h.height);
    let (ok, out) = openssl_verifies_token(app, &token, &header_hash, &name);
    assert!(ok, "block {} token: {out}", h.height);
    assert!(out.contains("Verification: OK"), "{out}");
    h
}

/// Verifies a signed checkpoint note with the signed_note crate and parses it with
/// tlog_tiles.
fn verify_checkpoint(note: &str, verifier_key: &str) -> tlog_tiles::Checkpoint {
    let n = signed_note::Note::from_bytes(note.as_bytes()).unwrap();
    let v = signed_note::StandardVerifier::new(verifier_key).unwrap();
    let (verified, unverified) = n
        .verify(&signed_note::VerifierList::new(vec![Box::new(v)]))
        .expect("the checkpoint verifies with the verifier key");
    assert_eq!((verified.len(), unverified.len()), (1, 0));
    let cp = tlog_tiles::Checkpoint::from_bytes(n.text()).unwrap();
    assert_eq!(cp.origin(), ORIGIN);
    assert_eq!(cp.extension(), "");
    // A changed body no longer verifies.
    let forged = note.replacen(&format!("\n{}\n", cp.size()), "\n999999\n", 1);
    let forged = signed_note::Note::from_bytes(forged.as_bytes()).unwrap();
    let v = signed_note::StandardVerifier::new(verifier_key).unwrap();
    assert!(forged
        .verify(&signed_note::VerifierList::new(vec![Box::new(v)]))
        .is_err());
    cp
}

fn their_hash(h: [u8; 32]) -> tlog_tiles::Hash {
    tlog_tiles::Hash(h)
}

fn their_proof(v: &Value) -> Vec<tlog_tiles::Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| their_hash(b64(h).try_into().unwrap()))
        .collect()
}

/// What a verified proof bundle says.
struct Bundle {
    leaf: Vec<u8>,
    tree_size: u64,
    root: [u8; 32],
    checkpoint: String,
    verifier_key: String,
    chain_key: Vec<u8>,
    proof: Vec<tlog_tiles::Hash>,
}

/// Checks everything in the proof bundle of event `index` with independent code.
fn check_bundle(b: &Value, index: u64) -> Bundle {
    let event = &b["event"];
    assert_eq!(event["index"], index);
    let leaf = b64(&b["leaf"]);
    assert_leaf_is_event(&leaf, event);
    let lh = leaf_hash(&leaf);
    assert_eq!(b["leaf_hash"], hex::encode(lh));

    // The chain key, the verifier key and the block agree.
    let chain_key = b64(&b["chain_key"]);
    let key = ed25519_of_spki(&chain_key);
    let verifier_key = b["verifier_key"].as_str().unwrap().to_owned();
    assert_eq!(
        verifier_key,
        signed_note::new_ed25519_verifier_key(ORIGIN, &key)
    );
    let checkpoint = b["checkpoint"].as_str().unwrap().to_owned();
    let cp = verify_checkpoint(&checkpoint, &verifier_key);
    let block = &b["block"];
    let tree_size = b["tree_size"].as_u64().unwrap();
    assert_eq!(block["tree_size"], tree_size);
    assert_eq!(cp.size(), tree_size);
    let root = cp.hash().0;
    assert_eq!(block["root_hash"], hex::encode(root));
    assert!(index < tree_size);

    // The inclusion proof, with tlog_tiles.
    let proof = their_proof(&b["inclusion_proof"]);
    tlog_tiles::check_record(&proof, tree_size, their_hash(root), index, their_hash(lh))
        .unwrap_or_else(|e| panic!("inclusion proof of {index} in {tree_size}: {e}"));
    let mut other = leaf.clone();
    *other.last_mut().unwrap() ^= 1;
    assert!(tlog_tiles::check_record(
        &proof,
        tree_size,
        their_hash(root),
        index,
        their_hash(leaf_hash(&other))
    )
    .is_err());

    // The C2SP tlog-proof text carries the same index, path, leaf and checkpoint.
    let text = b["tlog_proof"].as_str().unwrap();
    let (head, cp_text) = text.split_once("\n\n").expect("blank line before the note");
    assert_eq!(cp_text, checkpoint, "the checkpoint, verbatim");
    let lines: Vec<&str> = head.split('\n').collect();
    assert_eq!(lines[0], "c2sp.org/tlog-proof@v1");
    assert_eq!(lines[1], format!("extra {}", B64.encode(&leaf)));
    assert_eq!(lines[2], format!("index {index}"));
    let path: Vec<&str> = b["inclusion_proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert_eq!(&lines[3..], &path[..]);

    Bundle {
        leaf,
        tree_size,
        root,
        checkpoint,
        verifier_key,
        chain_key,
        proof,
    }
}

/// The length of the RFC 9162 inclusion proof of leaf `index` in a tree of `size` leaves.
fn path_len(index: u64, size: u64) -> usize {
    if size <= 1 {
        return 0;
    }
    let k = 1u64 << (63 - (size - 1).leading_zeros());
    if index < k {
        1 + path_len(index, k)
    } else {
        1 + path_len(index - k, size - k)
    }
}

/// Fetches `GET /v1/proofs/consistency` and checks it with tlog_tiles against the roots.
async fn check_consistency(api: &Api, old: (u64, [u8; 32]), new: (u64, [u8; 32])) {
    let v = api
        .get(&format!(
            "/v1/proofs/consistency?from={}&to={}",
            old.0, new.0
        ))
        .await
        .ok_json();
    assert_eq!(
        (v["from"].as_u64(), v["to"].as_u64()),
        (Some(old.0), Some(new.0))
    );
    let proof = their_proof(&v["proof"]);
    if old.0 == 0 || old.0 == new.0 {
        assert!(proof.is_empty(), "{v}");
    }
    if old.0 == 0 {
        return; // tlog_tiles checks proofs from a non-empty tree only
    }
    tlog_tiles::check_tree(&proof, new.0, their_hash(new.1), old.0, their_hash(old.1))
        .unwrap_or_else(|e| panic!("consistency {} -> {}: {e}", old.0, new.0));
    let mut wrong = old.1;
    wrong[0] ^= 1;
    assert!(
        tlog_tiles::check_tree(&proof, new.0, their_hash(new.1), old.0, their_hash(wrong)).is_err()
    );
}

// ---------------------------------------------------------------------------------------
// Tiles

/// The C2SP tlog-tiles path of a tlog_tiles tile (whose own paths carry the height).
fn c2sp_path(t: &tlog_tiles::Tile) -> String {
    let p = t.path();
    if t.is_data() {
        p.replacen("tile/8/data/", "tile/entries/", 1)
    } else {
        p.replacen("tile/8/", "tile/", 1)
    }
}

/// Tiles as served, keyed by tlog_tiles' tile.
struct ServedTiles(HashMap<tlog_tiles::Tile, Vec<u8>>);

impl tlog_tiles::TileReader for ServedTiles {
    fn height(&self) -> u8 {
        8
    }

    fn read_tiles(&self, tiles: &[tlog_tiles::Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        tiles
            .iter()
            .map(|t| self.0.get(t).cloned().ok_or(tlog_tiles::Error::InvalidTile))
            .collect()
    }

    fn save_tiles(&self, _: &[tlog_tiles::Tile], _: &[Vec<u8>]) {}
}

/// Straight from the served tiles, not authenticated: what the tree hash is computed from.
impl tlog_tiles::HashReader for ServedTiles {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                let need = tlog_tiles::Tile::from_index(8, i);
                let (tile, data) = self
                    .0
                    .iter()
                    .find(|(t, _)| {
                        t.level() == need.level()
                            && t.level_index() == need.level_index()
                            && t.width() >= need.width()
                    })
                    .ok_or(tlog_tiles::Error::InvalidTile)?;
                tile.hash_at_index(data, i)
            })
            .collect()
    }
}

/// Fetches a tile or entry bundle that must be served; checks its headers.
async fn fetch_tile(api: &Api, path: &str, full: bool) -> Vec<u8> {
    let r = api.get(&format!("/{path}")).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    assert_eq!(r.content_type, "application/octet-stream", "{path}");
    let cache = r.header("cache-control").unwrap_or_default();
    if full {
        assert!(cache.contains("immutable"), "{path}: {cache}");
    } else {
        assert_eq!(cache, "no-cache", "{path}");
    }
    r.body
}

/// Decodes a C2SP entry bundle: each entry a big-endian u16 length and its bytes.
fn decode_entry_bundle(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= 2, "truncated length");
        let len = usize::from(u16::from_be_bytes([b[0], b[1]]));
        assert!(b.len() >= 2 + len, "truncated entry");
        out.push(b[2..2 + len].to_vec());
        b = &b[2 + len..];
    }
    out
}

/// Fetches what a tlog client needs for a tree of `size` (every tile of the tree, as
/// tlog_tiles lists them, and the entry bundles), and checks that they rebuild `root`.
async fn check_tiles(api: &Api, size: u64, root: [u8; 32]) -> ServedTiles {
    let mut served = HashMap::new();
    for t in tlog_tiles::Tile::new_tiles(8, 0, size) {
        let path = c2sp_path(&t);
        let data = fetch_tile(api, &path, t.width() == 256).await;
        assert_eq!(data.len(), t.width() as usize * 32, "{path}");
        served.insert(t, data);
    }
    let served = ServedTiles(served);

    // The tree hash from the tiles alone is the checkpoint's root.
    let from_tiles = tlog_tiles::tree_hash(size, &served).unwrap();
    assert_eq!(
        from_tiles,
        their_hash(root),
        "tree hash of the served tiles"
    );
    // And tlog_tiles' authenticating reader accepts them for that root.
    let reader = tlog_tiles::TileHashReader::new(size, their_hash(root), &served);
    assert_eq!(
        tlog_tiles::tree_hash(size, &reader).unwrap(),
        their_hash(root)
    );

    // Entry bundles: their entries are the leaves whose hashes the level-0 tiles hold.
    for (t, data) in served.0.iter().filter(|(t, _)| t.level() == 0) {
        let mut d = *t;
        d.set_is_data();
        let path = c2sp_path(&d);
        assert!(path.starts_with("tile/entries/"), "{path}");
        let entries = decode_entry_bundle(&fetch_tile(api, &path, t.width() == 256).await);
        assert_eq!(entries.len(), t.width() as usize, "{path}");
        for (k, entry) in entries.iter().enumerate() {
            assert_eq!(
                &tlog_tiles::record_hash(entry).0[..],
                &data[k * 32..(k + 1) * 32],
                "{path} entry {k}"
            );
            assert_eq!(&leaf_hash(entry)[..], &data[k * 32..(k + 1) * 32]);
            assert_eq!(decode_leaf(entry).index, t.level_index() * 256 + k as u64);
        }
    }
    served
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn events_are_stored_with_consecutive_indexes_and_read_back() {
    let app = Appliance::new("ecdsa-p256");
    let api = Api::start(&app);
    rt().block_on(async {
        let mut posted: Vec<(Value, String)> = Vec::new();

        // One event at a time, every action.
        for n in 0..ACTIONS.len() {
            let e = event(n);
            let (index, hash) = api.post_event(&e).await;
            assert_eq!(index, posted.len() as u64);
            posted.push((e, hash));
        }
        // Parameters on the media type are fine; a missing `details` is an empty object.
        let mut bare = event(100);
        bare.as_object_mut().unwrap().remove("details");
        let v = api
            .post(
                "/v1/events",
                "Application/JSON; charset=utf-8",
                bare.to_string(),
            )
            .await
            .ok_json();
        assert_eq!(v["index"], posted.len());
        bare["details"] = json!({});
        posted.push((bare, v["leaf_hash"].as_str().unwrap().to_owned()));

        // A JSON array batch.
        let batch: Vec<Value> = (200..217).map(event).collect();
        let (first, hashes) = api.post_batch(&batch).await;
        assert_eq!(first, posted.len() as u64);
        posted.extend(batch.into_iter().zip(hashes));

        // An NDJSON batch, with a blank line, CRLF line ends and no final newline.
        let batch: Vec<Value> = (300..311).map(event).collect();
        let mut body = ndjson(&batch[..5]);
        body.push('\n');
        for e in &batch[5..10] {
            body.push_str(&format!("{e}\r\n"));
        }
        body.push_str(&batch[10].to_string());
        let (first, hashes) = api.post_batch_body(NDJSON, body, batch.len()).await;
        assert_eq!(first, posted.len() as u64);
        posted.extend(batch.into_iter().zip(hashes));

        // A batch of one, as NDJSON and as JSON.
        for as_ndjson in [true, false] {
            let e = event(400 + usize::from(as_ndjson));
            let (first, hashes) = if as_ndjson {
                api.post_ndjson(std::slice::from_ref(&e)).await
            } else {
                api.post_batch(std::slice::from_ref(&e)).await
            };
            assert_eq!(first, posted.len() as u64);
            posted.push((e, hashes[0].clone()));
        }

        // Concurrent posts get distinct, gap-free indexes.
        let concurrent: Vec<Value> = (500..520).map(event).collect();
        let replies = futures::future::join_all(concurrent.iter().map(|e| api.post_event(e))).await;
        let mut indexes: Vec<u64> = replies.iter().map(|(i, _)| *i).collect();
        indexes.sort_unstable();
        let start = posted.len() as u64;
        assert_eq!(indexes, (start..start + 20).collect::<Vec<_>>());
        let mut by_index: Vec<(u64, Value, String)> = replies
            .into_iter()
            .zip(concurrent)
            .map(|((i, h), e)| (i, e, h))
            .collect();
        by_index.sort_by_key(|(i, _, _)| *i);
        posted.extend(by_index.into_iter().map(|(_, e, h)| (e, h)));

        // Once sealed, each event reads back as posted, with the leaf hash it was
        // acknowledged with.
        let total = posted.len() as u64;
        let block = api.wait_sealed(total).await;
        assert_eq!(block["tree_size"], total, "only our events are in the log");
        let mut salts = std::collections::HashSet::new();
        for (i, (e, hash)) in posted.iter().enumerate() {
            let b = api.bundle(i as u64).await;
            assert_same_event(&b["event"], e, i as u64);
            assert_eq!(&b["leaf_hash"], hash, "event {i}");
            assert_eq!(hex::encode(leaf_hash(&b64(&b["leaf"]))), *hash);
            assert_leaf_is_event(&b64(&b["leaf"]), &b["event"]);
            assert!(salts.insert(b["event"]["salt"].as_str().unwrap().to_owned()));
        }
        let r = api.get(&format!("/v1/events/{total}")).await;
        assert!(r.error(404).contains(&format!("no event {total}")));
    });
}

/// What is posted, where, with which Content-Type and body; the status expected, and what
/// the error message must name.
type BadRequest = (
    &'static str,
    &'static str,
    &'static str,
    Vec<u8>,
    u16,
    &'static str,
);

#[test]
fn bad_input_is_refused_with_a_json_error_and_nothing_is_stored() {
    let app = Appliance::new("ecdsa-p256");
    // No seal while this test runs, so that "stored but not sealed yet" can be seen.
    app.write_config(&[("seal_interval_ms = 200", "seal_interval_ms = 600000")]);
    let api = Api::start(&app);
    rt().block_on(async {
        let (mut last, _) = api.post_event(&event(0)).await;
        assert_eq!(last, 0);

        let with = |key: &str, value: Value| {
            let mut e = event(1);
            e[key] = value;
            e.to_string()
        };
        let without = |key: &str| {
            let mut e = event(1);
            e.as_object_mut().unwrap().remove(key);
            e.to_string()
        };
        let good = event(1).to_string();
        let details_of = |len: usize| json!({ "blob": "x".repeat(len) });
        // Compact `{"blob":"..."}` is 11 bytes plus the string.
        let at_limit = with("details", details_of(8 * 1024 - 11));
        let over_limit = with("details", details_of(8 * 1024 - 10));
        let deep = good.replacen(
            "\"details\":{",
            &format!(
                "\"details\":{{\"deep\":{}1{},",
                "[".repeat(200),
                "]".repeat(200)
            ),
            1,
        );
        assert_ne!(deep, good);
        let batch_with_bad_5 = {
            let mut events: Vec<Value> = (0..8).map(event).collect();
            events[5]["data_sha256"] = json!("abc");
            events
        };
        let too_many: Vec<Value> = (0..10_001).map(event).collect();

        let cases: Vec<BadRequest> = vec![
            (
                "malformed JSON",
                "/v1/events",
                JSON,
                b"{\"agency\": ".to_vec(),
                400,
                "malformed JSON",
            ),
            (
                "not JSON",
                "/v1/events",
                JSON,
                b"hello".to_vec(),
                400,
                "malformed JSON",
            ),
            (
                "trailing bytes",
                "/v1/events",
                JSON,
                format!("{good} {good}").into_bytes(),
                400,
                "malformed JSON",
            ),
            (
                "not UTF-8",
                "/v1/events",
                JSON,
                vec![b'{', 0xff, 0xfe, b'}'],
                400,
                "UTF-8",
            ),
            (
                "nesting too deep",
                "/v1/events",
                JSON,
                deep.into_bytes(),
                422,
                "details.deep[0][0]",
            ),
            (
                "oversized details",
                "/v1/events",
                JSON,
                over_limit.into_bytes(),
                422,
                "details",
            ),
            (
                "details not an object",
                "/v1/events",
                JSON,
                with("details", json!([1])).into_bytes(),
                422,
                "details: must be a JSON object",
            ),
            (
                "unknown action",
                "/v1/events",
                JSON,
                with("action", json!("delete_everything")).into_bytes(),
                422,
                "action",
            ),
            (
                "empty custom action",
                "/v1/events",
                JSON,
                with("action", json!("custom:")).into_bytes(),
                422,
                "action",
            ),
            (
                "upper-case custom action",
                "/v1/events",
                JSON,
                with("action", json!("custom:Upper")).into_bytes(),
                422,
                "action",
            ),
            (
                "tsa.issued by a client",
                "/v1/events",
                JSON,
                with("action", json!("tsa.issued")).into_bytes(),
                422,
                "tsa.issued",
            ),
            (
                "missing subject",
                "/v1/events",
                JSON,
                without("subject").into_bytes(),
                422,
                "subject",
            ),
            (
                "missing data_sha256",
                "/v1/events",
                JSON,
                without("data_sha256").into_bytes(),
                422,
                "data_sha256",
            ),
            (
                "unknown field",
                "/v1/events",
                JSON,
                with("colour", json!("red")).into_bytes(),
                422,
                "colour",
            ),
            (
                "wrong type",
                "/v1/events",
                JSON,
                with("agency", json!(7)).into_bytes(),
                422,
                "invalid type",
            ),
            (
                "empty agency",
                "/v1/events",
                JSON,
                with("agency", json!("")).into_bytes(),
                422,
                "agency",
            ),
            (
                "control character",
                "/v1/events",
                JSON,
                with("auditor", json!("a\u{7}b")).into_bytes(),
                422,
                "auditor",
            ),
            (
                "short data_sha256",
                "/v1/events",
                JSON,
                with("data_sha256", json!("abcd")).into_bytes(),
                422,
                "data_sha256",
            ),
            (
                "non-hex data_sha256",
                "/v1/events",
                JSON,
                with("data_sha256", json!("zz".repeat(32))).into_bytes(),
                422,
                "data_sha256",
            ),
            (
                "bad occurred_at",
                "/v1/events",
                JSON,
                with("occurred_at", json!("yesterday")).into_bytes(),
                422,
                "occurred_at",
            ),
            (
                "a JSON array to /v1/events",
                "/v1/events",
                JSON,
                format!("[{good}]").into_bytes(),
                422,
                "invalid type",
            ),
            (
                "text/plain",
                "/v1/events",
                "text/plain",
                good.clone().into_bytes(),
                415,
                "application/json",
            ),
            (
                "no Content-Type",
                "/v1/events",
                "",
                good.clone().into_bytes(),
                415,
                "application/json",
            ),
            (
                "NDJSON to /v1/events",
                "/v1/events",
                NDJSON,
                good.clone().into_bytes(),
                415,
                "application/json",
            ),
            (
                "batch: 10,001 events",
                "/v1/events/batch",
                JSON,
                Value::from(too_many.clone()).to_string().into_bytes(),
                413,
                "10000",
            ),
            (
                "batch: 10,001 NDJSON events",
                "/v1/events/batch",
                NDJSON,
                ndjson(&too_many).into_bytes(),
                413,
                "10000",
            ),
            (
                "batch: event 5 is bad",
                "/v1/events/batch",
                JSON,
                Value::from(batch_with_bad_5.clone())
                    .to_string()
                    .into_bytes(),
                422,
                "events[5]: data_sha256",
            ),
            (
                "batch: NDJSON line 6 is bad",
                "/v1/events/batch",
                NDJSON,
                ndjson(&batch_with_bad_5).into_bytes(),
                422,
                "line 6: data_sha256",
            ),
            (
                "batch: NDJSON line 3 is not JSON",
                "/v1/events/batch",
                NDJSON,
                format!("{good}\n{good}\n{{\n").into_bytes(),
                400,
                "line 3: malformed JSON",
            ),
            (
                "batch: unknown field in event 1",
                "/v1/events/batch",
                JSON,
                format!("[{good},{}]", with("extra", json!(1))).into_bytes(),
                422,
                "events[1]: unknown field",
            ),
            (
                "batch: tsa.issued in event 0",
                "/v1/events/batch",
                JSON,
                format!("[{},{good}]", with("action", json!("tsa.issued"))).into_bytes(),
                422,
                "events[0]: action",
            ),
            (
                "batch: empty array",
                "/v1/events/batch",
                JSON,
                b"[]".to_vec(),
                422,
                "no event",
            ),
            (
                "batch: empty NDJSON",
                "/v1/events/batch",
                NDJSON,
                b"\n\n".to_vec(),
                422,
                "no event",
            ),
            (
                "batch: malformed JSON",
                "/v1/events/batch",
                JSON,
                format!("[{good},").into_bytes(),
                400,
                "malformed JSON",
            ),
            (
                "batch: an object, not an array",
                "/v1/events/batch",
                JSON,
                good.clone().into_bytes(),
                422,
                "sequence",
            ),
            (
                "batch: text/plain",
                "/v1/events/batch",
                "text/plain",
                format!("[{good}]").into_bytes(),
                415,
                "application/x-ndjson",
            ),
        ];
        for (what, path, ct, body, status, names) in cases {
            let r = api.post(path, ct, body).await;
            let message = r.error(status);
            assert!(
                message.contains(names),
                "{what}: the message {message:?} should name {names:?}"
            );
            // Nothing of it was stored.
            let (index, _) = api.post_event(&event(2)).await;
            assert_eq!(index, last + 1, "{what}: something was stored");
            last = index;
        }

        // The limits themselves are accepted: details of exactly 8 KiB, 10,000 events.
        let v = api.post("/v1/events", JSON, at_limit).await.ok_json();
        assert_eq!(v["index"], last + 1);
        last += 1;
        let (first, hashes) = api.post_batch(&too_many[..10_000]).await;
        assert_eq!((first, hashes.len()), (last + 1, 10_000));
        last += 10_000;
        let (index, _) = api.post_event(&event(3)).await;
        assert_eq!(index, last + 1);
        last = index;

        // Reading: events stored but not sealed, unknown events, bad indexes; nothing
        // published yet.
        let r = api.get("/v1/events/0").await;
        assert!(r.error(404).contains("not sealed yet"), "{}", r.text());
        assert_eq!(r.header("retry-after").as_deref(), Some("1"));
        let r = api.get(&format!("/v1/events/{last}")).await;
        assert!(r.error(404).contains("not sealed yet"));
        for missing in [last + 1, 1 << 40, u64::MAX] {
            let r = api.get(&format!("/v1/events/{missing}")).await;
            assert!(
                r.error(404).contains(&format!("no event {missing}")),
                "{}",
                r.text()
            );
        }
        for bad in ["abc", "-1", "1.5", "0x10", "18446744073709551616", "%20"] {
            let r = api.get(&format!("/v1/events/{bad}")).await;
            assert!(r.error(400).contains("index"), "{bad}: {}", r.text());
            let r = api.get(&format!("/v1/blocks/{bad}")).await;
            assert!(r.error(400).contains("height"), "{bad}: {}", r.text());
        }
        assert!(api
            .get("/v1/blocks/latest")
            .await
            .error(404)
            .contains("no block"));
        assert!(api
            .get("/v1/blocks/0")
            .await
            .error(404)
            .contains("no block 0"));
        api.get("/checkpoint").await.error(404);
        api.get("/tile/0/000.p/1").await.error(404);
        api.get("/tile/entries/000.p/1").await.error(404);
        let r = api.get("/v1/proofs/consistency?from=0&to=1").await;
        assert!(r.error(400).contains("sealed"));
    });
}

/// `event(n)` with the details value written as `details` (raw JSON text).
fn event_with_details(n: usize, details: &str) -> String {
    let mut e = event(n);
    e.as_object_mut().unwrap().remove("details");
    let text = e.to_string();
    format!("{},\"details\":{details}}}", &text[..text.len() - 1])
}

/// The details of a `GET /v1/events/{i}` answer as the body's text, not re-read as numbers.
fn shown_details(r: &Reply) -> String {
    #[derive(serde::Deserialize)]
    struct Bundle<'a> {
        #[serde(borrow)]
        event: Shown<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Shown<'a> {
        #[serde(borrow)]
        details: &'a serde_json::value::RawValue,
    }
    assert_eq!(r.status, 200, "{}", r.text());
    let b: Bundle<'_> = serde_json::from_slice(&r.body).unwrap();
    b.event.details.get().to_owned()
}

#[test]
fn details_are_stored_exactly_as_sent_or_refused() {
    let app = Appliance::new("ecdsa-p256");
    let api = Api::start(&app);
    rt().block_on(async {
        // (as sent, as stored): whitespace and member order aside, the same text; numbers
        // that a reader of 64-bit numbers would change (to 1.2345678901234568e+23, 100.0,
        // 0.1, -0.0, -9.223372036854776e+18, ...) keep their text.
        let cases = [
            (
                r#"{ "acct" : 123456789012345678901234 }"#,
                r#"{"acct":123456789012345678901234}"#,
            ),
            (
                r#"{"f": 0.1000000000000000055511151231257827, "e": 1e2, "one": 1.0, "z": -0}"#,
                r#"{"e":1e2,"f":0.1000000000000000055511151231257827,"one":1.0,"z":-0}"#,
            ),
            (
                r#"{"n": {"b": [1E+300, 0.013000000000000001, 2.50], "a": "x"},
                    "neg": -9223372036854775809, "max": 18446744073709551615}"#,
                r#"{"max":18446744073709551615,"n":{"a":"x","b":[1E+300,0.013000000000000001,2.50]},"neg":-9223372036854775809}"#,
            ),
        ];
        let mut expected = Vec::new();
        // Each one alone, then all as a JSON array batch, then as NDJSON.
        for (i, (sent, stored)) in cases.iter().enumerate() {
            let r = api
                .post("/v1/events", JSON, event_with_details(i, sent))
                .await;
            assert_eq!(r.ok_json()["index"], expected.len(), "{sent}");
            expected.push(*stored);
        }
        let events: Vec<String> = cases
            .iter()
            .enumerate()
            .map(|(i, (sent, _))| event_with_details(10 + i, sent))
            .collect();
        let (first, _) = api
            .post_batch_body(JSON, format!("[{}]", events.join(",")), cases.len())
            .await;
        assert_eq!(first, expected.len() as u64);
        expected.extend(cases.iter().map(|(_, stored)| *stored));
        // NDJSON: one event a line.
        let lines: Vec<String> = events.iter().map(|e| e.replace('\n', " ")).collect();
        let (first, _) = api
            .post_batch_body(NDJSON, lines.join("\n"), cases.len())
            .await;
        assert_eq!(first, expected.len() as u64);
        expected.extend(cases.iter().map(|(_, stored)| *stored));

        // Refused, naming the key or the number (and, in a batch, the event); nothing of it
        // is stored.
        let good = event_with_details(50, r#"{"a":1}"#);
        let twice_action = good.replacen('{', r#"{"action":"access","#, 1);
        let bad: Vec<(&str, &str, &str, String, &str)> = vec![
            (
                "a repeated top-level field",
                "/v1/events",
                JSON,
                twice_action.clone(),
                "duplicate field `action`",
            ),
            (
                "a repeated key in details",
                "/v1/events",
                JSON,
                event_with_details(51, r#"{"a":1,"a":2}"#),
                r#"details.a: the key "a" appears more than once"#,
            ),
            (
                "a repeated nested key",
                "/v1/events",
                JSON,
                event_with_details(52, r#"{"x":{"y":1,"z":[],"y":1}}"#),
                r#"details.x.y: the key "y" appears more than once"#,
            ),
            (
                "a repeated key in an array's object",
                "/v1/events",
                JSON,
                event_with_details(53, r#"{"l":[{"k":1},{"k":2,"k":3}]}"#),
                "details.l[1].k: the key",
            ),
            (
                "a number no float can hold",
                "/v1/events",
                JSON,
                event_with_details(54, r#"{"huge":1e400}"#),
                "details.huge: the number 1e400 is beyond the range of a 64-bit float",
            ),
            (
                "batch: a repeated key in event 2's details",
                "/v1/events/batch",
                JSON,
                format!(
                    "[{good},{good},{}]",
                    event_with_details(55, r#"{"m":{"a":1,"a":2}}"#)
                ),
                "events[2]: details.m.a: the key",
            ),
            (
                "batch: a repeated top-level field in event 1",
                "/v1/events/batch",
                JSON,
                format!("[{good},{twice_action}]"),
                "events[1]: duplicate field `action`",
            ),
            (
                "batch: NDJSON line 3 repeats a nested key",
                "/v1/events/batch",
                NDJSON,
                format!(
                    "{good}\n{good}\n{}\n",
                    event_with_details(56, r#"{"x":{"y":1,"y":2}}"#)
                ),
                "line 3: details.x.y: the key",
            ),
        ];
        for (what, path, ct, body, names) in bad {
            let message = api.post(path, ct, body).await.error(422);
            assert!(
                message.contains(names),
                "{what}: the message {message:?} should name {names:?}"
            );
        }
        let (index, _) = api.post_event(&event(60)).await;
        assert_eq!(index, expected.len() as u64, "something refused was stored");

        // Stored (the leaf that is hashed), and shown back, byte for byte.
        api.wait_sealed(index + 1).await;
        for (i, stored) in expected.iter().enumerate() {
            let r = api.get(&format!("/v1/events/{i}")).await;
            let leaf = decode_leaf(&b64(&r.json()["leaf"]));
            assert_eq!(leaf.details, *stored, "the leaf of event {i}");
            assert_eq!(shown_details(&r), *stored, "event {i} as shown");
        }
    });
}

#[test]
fn bodies_over_the_byte_caps_are_refused_and_nothing_is_stored() {
    let app = Appliance::new("ecdsa-p256");
    app.write_config(&[(
        "seal_interval_ms = 200",
        "seal_interval_ms = 200\nmax_batch_bytes = 4096",
    )]);
    let api = Api::start(&app);
    rt().block_on(async {
        let (first, _) = api.post_batch(&[event(0), event(1)]).await;
        assert_eq!(first, 0);
        let mut last = 1;

        let events: Vec<Value> = (0..30).map(event).collect();
        let batch = Value::from(events.clone()).to_string();
        assert!(batch.len() > 4096);
        let mut big_event = event(5);
        big_event["subject"] = json!("s".repeat(70_000));
        let big_event = big_event.to_string();
        assert!(big_event.len() > 64 * 1024);
        let chunked = |body: String| {
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body
                .into_bytes()
                .chunks(1000)
                .map(|c| Ok(c.to_vec()))
                .collect();
            reqwest::Body::wrap_stream(futures::stream::iter(chunks))
        };
        let cases: Vec<(&str, &str, &str, reqwest::Body)> = vec![
            (
                "batch over 4096 bytes, with Content-Length",
                "/v1/events/batch",
                JSON,
                batch.clone().into(),
            ),
            (
                "batch over 4096 bytes, chunked",
                "/v1/events/batch",
                NDJSON,
                chunked(ndjson(&events)),
            ),
            (
                "event over 64 KiB, with Content-Length",
                "/v1/events",
                JSON,
                big_event.clone().into(),
            ),
            (
                "event over 64 KiB, chunked",
                "/v1/events",
                JSON,
                chunked(big_event),
            ),
        ];
        // The status and "nothing stored" are checked at once; a body that is not the
        // API's JSON error is collected and reported at the end, after every other check.
        let mut not_json = Vec::new();
        for (what, path, ct, body) in cases {
            let r = api.post(path, ct, body).await;
            assert_eq!(r.status, 413, "{what}: {}", r.text());
            // The rest of the body is never read: the connection must not be reused.
            assert_eq!(
                r.headers.get("connection").and_then(|v| v.to_str().ok()),
                Some("close"),
                "{what}: a 413 must close the connection"
            );
            let is_api_error = r.content_type.starts_with(JSON)
                && serde_json::from_slice::<Value>(&r.body)
                    .is_ok_and(|v| v["error"].as_str().is_some_and(|m| !m.is_empty()));
            if !is_api_error {
                not_json.push(format!(
                    "{what}: 413 with Content-Type {:?} and body {:?}",
                    r.content_type,
                    r.text()
                ));
            }
            let (index, _) = api.post_event(&event(2)).await;
            assert_eq!(index, last + 1, "{what}: something was stored");
            last = index;
        }

        // A batch just under the cap is taken whole; a single event has its own, larger cap.
        let mut n = 1;
        while ndjson(&events[..n + 1]).len() <= 4096 {
            n += 1;
        }
        let (first, hashes) = api.post_ndjson(&events[..n]).await;
        assert_eq!((first, hashes.len()), (last + 1, n));
        last += n as u64;
        let mut big = event(4);
        big["details"] = json!({"blob": "x".repeat(8000)});
        let (index, _) = api.post_event(&big).await;
        assert_eq!(index, last + 1);
        let block = api.wait_sealed(index + 1).await;
        assert_eq!(block["tree_size"], index + 1);

        assert!(
            not_json.is_empty(),
            "every refusal of the chain API must be a JSON {{\"error\": ...}} \
             (src/http/chain.rs module doc); the body caps answer otherwise:\n{}",
            not_json.join("\n")
        );
    });
}

#[test]
fn blocks_are_signed_linked_time_stamped_and_consistent() {
    let app = Appliance::new("ecdsa-p256");
    // At most 8 events a block, so that a larger batch is sealed in several blocks.
    app.write_config(&[(
        "seal_interval_ms = 200",
        "seal_interval_ms = 200\nmax_block_events = 8",
    )]);
    let mut api = Api::start(&app);
    let app = &app;
    rt().block_on(async move {
        // Rounds, each sealed before the next: 5 events (a JSON batch), 1 event, 20 events
        // (NDJSON: blocks of 8, 8 and 4); then a restart, and 3 more events.
        let mut checkpoints = Vec::new();
        let mut n = 0;
        for (round, count) in [5usize, 1, 20, 3].into_iter().enumerate() {
            let events: Vec<Value> = (n..n + count).map(event).collect();
            match round {
                0 | 3 => {
                    api.post_batch(&events).await;
                }
                1 => {
                    api.post_event(&events[0]).await;
                }
                _ => {
                    api.post_ndjson(&events).await;
                }
            }
            n += count;
            let latest = api.wait_sealed(n as u64).await;
            assert_eq!(latest["tree_size"], n);
            let r = api.get("/checkpoint").await;
            assert_eq!(r.status, 200);
            assert!(
                r.content_type.starts_with("text/plain"),
                "{}",
                r.content_type
            );
            assert_eq!(r.header("cache-control").as_deref(), Some("no-cache"));
            let note = r.text();
            if round == 2 {
                // The chain survives a restart: the same block and checkpoint are
                // published, and new blocks go on from them.
                let Api { server, client } = api;
                server.stop();
                api = Api {
                    server: app.start(),
                    client,
                };
                assert_eq!(api.get("/v1/blocks/latest").await.ok_json(), latest);
                assert_eq!(api.get("/checkpoint").await.text(), note);
            }
            checkpoints.push((latest, note));
        }
        let bundle = api.bundle(0).await;
        let chain_spki = b64(&bundle["chain_key"]);
        let verifier_key = bundle["verifier_key"].as_str().unwrap().to_owned();
        assert_eq!(bundle["checkpoint"].as_str().unwrap(), checkpoints[3].1);

        // Every block, from the first: checked alone and linked to the one before.
        let latest = api.get("/v1/blocks/latest").await.ok_json();
        let top = latest["height"].as_u64().unwrap();
        assert_eq!(top, 5, "one block per round, three for the 20 events");
        let mut prev: Option<Header> = None;
        let mut published = Vec::new();
        for height in 0..=top {
            let b = api.block(height).await;
            let h = check_block(app, &b, &chain_spki);
            assert_eq!(h.height, height);
            match &prev {
                None => {
                    assert_eq!(h.prev_hash, [0; 32]);
                    assert_eq!(h.first_index, 0);
                }
                Some(p) => {
                    let p_bytes = b64(&api.block(height - 1).await["header"]);
                    assert_eq!(h.prev_hash, <[u8; 32]>::from(Sha256::digest(p_bytes)));
                    assert_eq!(h.first_index, p.tree_size, "no gap, no overlap");
                    assert!(h.sealed_at_ms >= p.sealed_at_ms);
                }
            }
            published.push((h.tree_size, h.root));
            prev = Some(h);
        }
        assert_eq!(latest, api.block(top).await);
        assert_eq!(
            published.iter().map(|p| p.0).collect::<Vec<_>>(),
            [5, 6, 14, 22, 26, 29]
        );
        let r = api.get(&format!("/v1/blocks/{}", top + 1)).await;
        assert!(r.error(404).contains(&format!("no block {}", top + 1)));

        // A token over another digest is refused by openssl.
        let token = b64(&latest["token"]);
        let (ok, _) = openssl_verifies_token(app, &token, &"00".repeat(32), "wrong-digest");
        assert!(!ok, "openssl must refuse a token for another digest");

        // Each checkpoint seen at /checkpoint is signed over its block's tree.
        for (block, note) in &checkpoints {
            let cp = verify_checkpoint(note, &verifier_key);
            assert_eq!(block["tree_size"], cp.size());
            assert_eq!(block["root_hash"], hex::encode(cp.hash().0));
        }

        // Consistency proofs between every pair of published trees.
        for (i, old) in published.iter().enumerate() {
            for new in &published[i..] {
                check_consistency(&api, *old, *new).await;
            }
            check_consistency(&api, (0, [0; 32]), *old).await;
        }
        // Bad queries.
        for (query, names) in [
            ("from=6&to=5", "from <= to"),
            ("from=5&to=30", "29"),
            ("from=0&to=1000", "29"),
            ("from=5", "from=N&to=M"),
            ("to=5", "from=N&to=M"),
            ("", "from=N&to=M"),
            ("from=a&to=5", "from=N&to=M"),
            ("from=-1&to=5", "from=N&to=M"),
            ("from=1.0&to=5", "from=N&to=M"),
        ] {
            let r = api.get(&format!("/v1/proofs/consistency?{query}")).await;
            let message = r.error(400);
            assert!(message.contains(names), "{query}: {message}");
        }
    });
}

#[test]
fn proof_bundles_verify_with_independent_implementations() {
    let app = Appliance::new("ecdsa-p256");
    let api = Api::start(&app);
    rt().block_on(async {
        let mut posted = Vec::new();
        for n in 0..3 {
            posted.push(event(n));
            api.post_event(&event(n)).await;
        }
        let batch: Vec<Value> = (3..37).map(event).collect();
        api.post_batch(&batch).await;
        posted.extend(batch);
        let total = posted.len() as u64;
        let block = api.wait_sealed(total).await;
        assert_eq!(block["tree_size"], total);
        let checkpoint = api.get("/checkpoint").await.text();

        let mut chain_key = None;
        for index in [0, 1, 2, 3, 15, 16, 31, 32, 35, total - 1] {
            let b = api.bundle(index).await;
            assert_same_event(&b["event"], &posted[index as usize], index);
            let bundle = check_bundle(&b, index);
            assert_eq!(bundle.tree_size, total);
            assert_eq!(b["block"], block, "the latest block");
            assert_eq!(bundle.checkpoint, checkpoint, "the latest checkpoint");
            assert_eq!(
                hex::encode(bundle.root),
                block["root_hash"].as_str().unwrap()
            );
            assert!(!bundle.verifier_key.is_empty());
            assert_eq!(bundle.proof.len(), path_len(index, total), "index {index}");
            assert_eq!(decode_leaf(&bundle.leaf).index, index);
            match &chain_key {
                None => chain_key = Some(bundle.chain_key.clone()),
                Some(k) => assert_eq!(k, &bundle.chain_key),
            }
            // A proof for one index does not prove another.
            let other = (index + 1) % total;
            assert!(tlog_tiles::check_record(
                &bundle.proof,
                total,
                their_hash(bundle.root),
                other,
                their_hash(leaf_hash(&bundle.leaf)),
            )
            .is_err());
        }
        check_block(&app, &block, chain_key.as_ref().unwrap());

        // Events posted later get bundles against the newer checkpoint; old ones too.
        let (index, _) = api.post_event(&event(99)).await;
        assert_eq!(index, total);
        api.wait_sealed(total + 1).await;
        for i in [0, total - 1, total] {
            let b = api.bundle(i).await;
            assert_eq!(check_bundle(&b, i).tree_size, total + 1);
        }
    });
}

#[test]
fn tiles_and_entry_bundles_rebuild_the_checkpoint_tree() {
    let app = Appliance::new("ecdsa-p256");
    let api = Api::start(&app);
    rt().block_on(async {
        // 300, 512, then 600 events: full and partial tiles at level 0 (none partial at
        // 512), a partial tile at level 1.
        let mut old: Option<(u64, ServedTiles)> = None;
        for size in [300u64, 512, 600] {
            let start = old.as_ref().map_or(0, |o| o.0) as usize;
            let events: Vec<Value> = (start..size as usize).map(event).collect();
            api.post_batch(&events).await;
            assert_eq!(api.wait_sealed(size).await["tree_size"], size);

            let r = api.get("/checkpoint").await;
            assert_eq!(r.status, 200);
            assert!(r.content_type.starts_with("text/plain"));
            let note = r.text();
            let bundle = api.bundle(size - 1).await;
            assert_eq!(bundle["checkpoint"].as_str().unwrap(), note);
            let cp = verify_checkpoint(&note, bundle["verifier_key"].as_str().unwrap());
            assert_eq!(cp.size(), size);
            let root = cp.hash().0;
            let served = check_tiles(&api, size, root).await;
            let widths = |level: u8| -> Vec<u32> {
                let mut w: Vec<u32> = served
                    .0
                    .keys()
                    .filter(|t| t.level() == level)
                    .map(|t| t.width())
                    .collect();
                w.sort_unstable();
                w
            };
            assert_eq!(
                (widths(0), widths(1)),
                match size {
                    300 => (vec![44, 256], vec![1]),
                    512 => (vec![256, 256], vec![2]),
                    _ => (vec![88, 256, 256], vec![2]),
                },
                "tiles of a tree of {size}"
            );

            // A client holding only the tiles computes the bundles' inclusion proofs.
            let reader = tlog_tiles::TileHashReader::new(size, their_hash(root), &served);
            for index in [0, 1, 255, 256, 299, size / 2, size - 1] {
                let b = api.bundle(index).await;
                let checked = check_bundle(&b, index);
                let from_tiles = tlog_tiles::prove_record(size, index, &reader).unwrap();
                assert_eq!(from_tiles, checked.proof, "index {index}");
                // The entry bundle holds the same leaf.
                let width = (size - index / 256 * 256).min(256) as u32;
                let t = tlog_tiles::Tile::new(8, 0, index / 256, width, true);
                let entries =
                    decode_entry_bundle(&fetch_tile(&api, &c2sp_path(&t), width == 256).await);
                assert_eq!(entries[(index % 256) as usize], checked.leaf);
            }
            // A client at the previous checkpoint can follow: consistency from the tiles
            // equals the server's proof, and the old partial tiles are prefixes of today's.
            if let Some((old_size, old_tiles)) = &old {
                let v = api
                    .get(&format!("/v1/proofs/consistency?from={old_size}&to={size}"))
                    .await
                    .ok_json();
                let from_tiles = tlog_tiles::prove_tree(size, *old_size, &reader).unwrap();
                assert_eq!(from_tiles, their_proof(&v["proof"]));
                for (t, data) in &old_tiles.0 {
                    let r = api.get(&format!("/{}", c2sp_path(t))).await;
                    if r.status == 200 {
                        assert_eq!(&r.body, data, "{} changed", c2sp_path(t));
                    } else {
                        r.error(404);
                    }
                    let now = served
                        .0
                        .iter()
                        .find(|(n, _)| n.level() == t.level() && n.level_index() == t.level_index())
                        .unwrap();
                    assert_eq!(&now.1[..data.len()], &data[..], "{} grew", c2sp_path(t));
                }
            }
            old = Some((size, served));
        }

        // Tiles beyond the published tree (600 events) and malformed paths: 404.
        for path in [
            "tile/0/002",      // records 512..768
            "tile/0/002.p/89", // records 512..601
            "tile/0/003.p/1",  // records 768..769
            "tile/1/000",      // 65536 records
            "tile/1/000.p/3",  // 768 records
            "tile/2/000.p/1",  // 65536 records
            "tile/entries/002",
            "tile/entries/002.p/89",
            "tile/entries/x001/000",
            "tile/0/2", // not three digits
            "tile/0/0002",
            "tile/0/x000/002", // x000 group
            "tile/00/000",
            "tile/0/001.p/0",
            "tile/0/001.p/256",
            "tile/0/001.p/017",
            "tile/0/001.p/",
            "tile/0/001/",
            "tile/8/0/000", // tlog_tiles' own path with the height
            "tile/8/data/000",
            "tile/data/000",
            "tile/entries/abc",
            "tile/64/000",
            "tile/0/x999/x999/x999/x999/x999/x999/x999/999",
            "tile/",
        ] {
            let r = api.get(&format!("/{path}")).await;
            assert_eq!(r.status, 404, "{path}: {}", r.text());
            if path != "tile/" {
                assert!(r.error(404).contains("tile/"), "{path}");
            }
        }
    });
}

#[test]
fn every_issued_token_is_a_tsa_issued_event_in_the_chain() {
    let app = Appliance::new("ecdsa-p256");
    let api = Api::start(&app);
    let work = app.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    rt().block_on(async {
        let (mut last, _) = api.post_event(&event(0)).await;
        let mut issued = Vec::new();
        for n in 0..3 {
            let data = work.join(format!("record-{n}.txt"));
            std::fs::write(&data, format!("audited record {n}\n")).unwrap();
            let digest = hex::encode(Sha256::digest(std::fs::read(&data).unwrap()));
            let tsq = ts_query(&work, &data, "-sha256", n != 1, n != 2, &format!("q{n}"));
            let r = api
                .post(
                    "/tsa",
                    "application/timestamp-query",
                    std::fs::read(&tsq).unwrap(),
                )
                .await;
            assert_eq!(r.status, 200);
            let status = auditstamp::tsp::decode_response_status(&r.body).unwrap();
            assert_eq!(status.status, 0, "granted");
            let token = status.token.unwrap();
            let serial = auditstamp::tsp::decode_tst_info_from_token(&token)
                .unwrap()
                .serial;
            // The token's event is durable before the reply: it takes the next index.
            let (index, _) = api.post_event(&event(n + 1)).await;
            assert_eq!(index, last + 2, "one tsa.issued event between");
            issued.push((last + 1, token, serial, digest));
            last = index;
        }
        // A refused request is no event.
        let r = api
            .post("/tsa", "application/timestamp-query", b"not DER".to_vec())
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            auditstamp::tsp::decode_response_status(&r.body)
                .unwrap()
                .status,
            2
        );
        let (index, _) = api.post_event(&event(9)).await;
        assert_eq!(index, last + 1);
        last = index;

        let block = api.wait_sealed(last + 1).await;
        assert_eq!(block["tree_size"], last + 1, "block tokens are not events");
        let mut found = 0;
        for i in 0..=last {
            let b = api.bundle(i).await;
            let e = &b["event"];
            let Some((_, token, serial, digest)) = issued.iter().find(|(at, ..)| *at == i) else {
                assert_ne!(e["action"], "tsa.issued", "event {i}");
                continue;
            };
            check_bundle(&b, i);
            assert_eq!(e["action"], "tsa.issued", "event {i}");
            assert_eq!(
                e["data_sha256"].as_str().unwrap(),
                hex::encode(Sha256::digest(token)),
                "the event's data hash is SHA-256 of the token"
            );
            let serial_hex = hex::encode(serial);
            let serial_hex = serial_hex.trim_start_matches('0');
            assert!(!serial_hex.is_empty());
            assert_eq!(e["details"]["serial"], serial_hex, "event {i}");
            assert_eq!(e["subject"], format!("serial:{serial_hex}"));
            assert_eq!(e["details"]["digest"].as_str().unwrap(), digest);
            assert_eq!(e["details"]["hash_algorithm"], "sha256");
            assert_eq!(e["details"]["policy"], POLICY);
            assert_eq!(e["agency"], "test-appliance");
            assert_eq!(e["auditor"], "tsa");
            found += 1;
        }
        assert_eq!(found, issued.len());
        // Clients cannot forge one.
        let mut forged = event(10);
        forged["action"] = json!("tsa.issued");
        let r = api.post("/v1/events", JSON, forged.to_string()).await;
        assert!(r.error(422).contains("tsa.issued"));
    });
}
