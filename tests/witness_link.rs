//! An appliance and its witness: every new checkpoint is submitted to the witness over
//! HTTPS, the cosignature is verified and published with the checkpoint (and in proofs);
//! a witness that is down stops nothing, and when it is back the appliance catches up;
//! `bench witness` reaches the same witness over HTTPS with `--tls-ca`. The latest
//! checkpoint always ends up cosigned, with no further events: when it was sealed while an
//! older one's submission was in flight (a TCP relay holds that one), when its submission
//! failed, and when the appliance stopped before the witness answered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use auditstamp::chain::cosignature::Cosigner;
use auditstamp::chain::note::SignedNote;
use common::*;
use serde_json::{json, Value};

const ORIGIN: &str = "test-appliance.example/chain";

/// The appliance's note verifier key, from its startup log.
fn appliance_key(server: &Server) -> String {
    assert!(server.wait_for_log("event chain open"), "{}", server.log());
    // Without the terminal colours around `=`.
    let mut log = String::new();
    let mut in_escape = false;
    for c in server.log().chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => log.push(c),
        }
    }
    let at = log.split("verifier_key=").nth(1).unwrap();
    at.split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"')
        .to_owned()
}

fn post_events(rt: &tokio::runtime::Runtime, server: &Server, n: u64) {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({"agency": "a", "auditor": "b", "action": "access", "subject": format!("s{i}"),
                   "data_sha256": format!("{i:064x}"), "occurred_at": "2026-12-01T00:00:00Z"})
        })
        .collect();
    let r = rt.block_on(
        reqwest::Client::new()
            .post(server.url("/v1/events/batch"))
            .json(&events)
            .send(),
    );
    assert_eq!(r.unwrap().status().as_u16(), 200);
}

fn checkpoint(rt: &tokio::runtime::Runtime, server: &Server) -> Option<SignedNote> {
    let r = rt
        .block_on(reqwest::get(server.url("/checkpoint")))
        .unwrap();
    if r.status() != 200 {
        return None;
    }
    Some(SignedNote::parse(&rt.block_on(r.text()).unwrap()).unwrap())
}

/// Waits for a published checkpoint of at least `size` entries.
fn wait_checkpoint(rt: &tokio::runtime::Runtime, server: &Server, size: u64) -> SignedNote {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(note) = checkpoint(rt, server) {
            let cp = auditstamp::chain::note::Checkpoint::parse(&note.text).unwrap();
            if cp.size >= size {
                return note;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of {size}: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for a published checkpoint of at least `size` entries cosigned by `witness`.
fn wait_cosigned(
    rt: &tokio::runtime::Runtime,
    server: &Server,
    witness: &Cosigner,
    size: u64,
) -> SignedNote {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(note) = checkpoint(rt, server) {
            let cp = auditstamp::chain::note::Checkpoint::parse(&note.text).unwrap();
            if cp.size >= size && witness.verify(&note).is_ok() {
                return note;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no cosigned checkpoint of {size}: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn checkpoints_are_cosigned_over_https_and_a_down_witness_stops_nothing() {
    let rt = rt();
    let app = Appliance::new("ecdsa-p256");
    let server = app.start();
    let key = appliance_key(&server);
    server.stop();
    // The operator's way to the same key: read from the HSM, no server needed.
    let out = app.cli_ok(&["chain", "verifier-key"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), key);

    // The witness, registering the appliance (and two simulated ones for `bench witness`),
    // serving TLS with a localhost certificate.
    let bench_logs = std::process::Command::new(bin())
        .args(["bench", "witness-config", "--logs", "2", "--seed", "5"])
        .output()
        .unwrap();
    assert!(bench_logs.status.success());
    let w = WitnessNode::new(&format!(
        "[[log]]\norigin = \"{ORIGIN}\"\nkey = \"{key}\"\n{}",
        String::from_utf8(bench_logs.stdout).unwrap()
    ));
    let pki = Pki::new(&w.path().join("tls"));
    let text = std::fs::read_to_string(&w.config).unwrap().replace(
        "plain_http = true\n",
        &format!(
            "\n[witness.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            pki.path("server.pem"),
            pki.path("server.key")
        ),
    );
    // [witness.tls] must come after the [witness] keys: move the remaining ones above it.
    let text = text
        .replacen("stale_after_seconds = 3600\nlog_level = \"info\"\n", "", 1)
        .replacen(
            "listen = \"127.0.0.1:0\"\n",
            "listen = \"127.0.0.1:0\"\nstale_after_seconds = 3600\nlog_level = \"info\"\n",
            1,
        );
    std::fs::write(&w.config, text).unwrap();
    let witness_key = String::from_utf8(w.cli_ok(&["witness", "verifier-key"]).stdout).unwrap();
    let witness = Cosigner::parse(witness_key.trim()).unwrap();
    let ws = w.start();
    assert!(
        ws.wait_for_log("witness listening on https://"),
        "{}",
        ws.log()
    );
    let port = ws.addr.port();

    // The data center's load generator reaches it over HTTPS too, pinning its CA.
    let bench = |ca: &str| {
        std::process::Command::new(bin())
            .args([
                "bench",
                "witness",
                "--url",
                &format!("https://localhost:{port}"),
            ])
            .args([
                "--logs",
                "2",
                "--seed",
                "5",
                "--rounds",
                "1",
                "--clients",
                "1",
                "--json",
            ])
            .args(["--tls-ca", ca])
            .output()
            .unwrap()
    };
    let o = bench(&pki.path("server-ca.pem"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let figures: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (figures["cosigned"].as_u64(), figures["errors"].as_u64()),
        (Some(2), Some(0)),
        "{figures}"
    );
    let o = bench(&pki.path("rogue-ca.pem"));
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("UnknownIssuer"), "{e}");

    // The appliance submits to it.
    app.write_config(&[(
        "seal_interval_ms = 200\n",
        &format!(
            "seal_interval_ms = 200\nwitness_timeout_ms = 2000\n[[chain.witness]]\nurl = \"https://localhost:{port}\"\nkey = \"{}\"\nca_file = {:?}\n",
            witness_key.trim(),
            pki.path("server-ca.pem")
        ),
    )]);
    let server = app.start();
    post_events(&rt, &server, 10);
    let note = wait_cosigned(&rt, &server, &witness, 10);
    // The appliance's own signature is still there, and proofs carry the cosigned note.
    assert!(note.signatures.iter().any(|s| s.name == ORIGIN));
    let proof: Value = rt
        .block_on(async {
            reqwest::get(server.url("/v1/events/3"))
                .await
                .unwrap()
                .json()
                .await
        })
        .unwrap();
    let in_proof = SignedNote::parse(proof["checkpoint"].as_str().unwrap()).unwrap();
    assert!(
        witness.verify(&in_proof).is_ok(),
        "the proof's checkpoint is not cosigned"
    );
    // The witness recorded the appliance's size (read over TLS with curl).
    let out = std::process::Command::new("curl")
        .args(["-sS", "--cacert", &pki.path("server-ca.pem")])
        .arg(format!("https://localhost:{port}/status"))
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(status.to_string().contains(ORIGIN), "{status}");

    // The witness goes away: events and tokens go on, checkpoints are published uncosigned.
    ws.stop();
    post_events(&rt, &server, 5);
    let note = wait_checkpoint(&rt, &server, 15);
    assert!(
        witness.verify(&note).is_err(),
        "cosigned while the witness was down?"
    );
    let data = app.path().join("doc.txt");
    std::fs::write(&data, "x").unwrap();
    let tsq = std::fs::read(ts_query(app.path(), &data, "-sha256", true, true, "down")).unwrap();
    let (status, _, reply) = rt.block_on(post(
        &reqwest::Client::new(),
        &server.url("/tsa"),
        "application/timestamp-query",
        tsq,
    ));
    assert_eq!(status, 200);
    assert_eq!(
        auditstamp::tsp::decode_response_status(&reply)
            .unwrap()
            .status,
        0
    );
    assert!(
        server.wait_for_log("witness did not cosign"),
        "{}",
        server.log()
    );
    let metrics = rt
        .block_on(async {
            reqwest::get(server.url("/metrics"))
                .await
                .unwrap()
                .text()
                .await
        })
        .unwrap();
    let line = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}{{witness=\"{}\"}} ", witness.name)))
            .unwrap_or_else(|| panic!("no {name}: {metrics}"))
            .parse::<u64>()
            .unwrap()
    };
    assert!(line("auditstamp_witness_cosigned_total") >= 1);
    assert!(line("auditstamp_witness_failures_total") >= 1);
    assert!(line("auditstamp_witness_size") >= 10);

    // Back again, on the same state and port: the next checkpoint is cosigned, with a
    // consistency proof from the size the witness kept.
    let text = std::fs::read_to_string(&w.config).unwrap().replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&w.config, text).unwrap();
    let ws = w.start();
    post_events(&rt, &server, 3);
    wait_cosigned(&rt, &server, &witness, 19);
    server.stop();
    ws.stop();

    // A restarted appliance publishes the cosigned checkpoint it stored.
    let server = app.start();
    let note = checkpoint(&rt, &server).unwrap();
    assert!(
        witness.verify(&note).is_ok(),
        "the stored checkpoint lost its cosignature"
    );
    server.stop();
}

/// What the relay does with the bytes the appliance sends to the witness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forwards them.
    Pass,
    /// Holds them (the connection stays open) until the mode changes.
    Hold,
    /// Closes the connection: the witness is unreachable.
    Cut,
}

#[derive(Debug)]
struct RelayState {
    mode: Mode,
    /// Connections whose bytes are being held.
    held: usize,
    /// The relay is dropped: its threads end.
    closed: bool,
}

/// A TCP relay in front of a real witness, which the test holds or cuts: a slow or broken
/// network, not a stand-in for the witness.
struct Relay {
    addr: SocketAddr,
    shared: Arc<(Mutex<RelayState>, Condvar)>,
}

impl Relay {
    /// Relays connections to `upstream`, passing bytes through.
    fn new(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new((
            Mutex::new(RelayState {
                mode: Mode::Pass,
                held: 0,
                closed: false,
            }),
            Condvar::new(),
        ));
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if s.0.lock().unwrap().closed {
                    return;
                }
                let s = s.clone();
                std::thread::spawn(move || relay_connection(client, upstream, &s));
            }
        });
        Relay { addr, shared }
    }

    fn set(&self, mode: Mode) {
        self.shared.0.lock().unwrap().mode = mode;
        self.shared.1.notify_all();
    }

    /// Waits (20 s at most) until the bytes of at least one connection are held.
    fn wait_held(&self) -> bool {
        let (state, changed) = &*self.shared;
        let (state, _) = changed
            .wait_timeout_while(state.lock().unwrap(), Duration::from_secs(20), |s| {
                s.held == 0
            })
            .unwrap();
        state.held > 0
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        {
            let mut s = self.shared.0.lock().unwrap();
            s.mode = Mode::Cut;
            s.closed = true;
        }
        self.shared.1.notify_all();
        // Wakes the accepting thread, which then sees `closed`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies the client's bytes to `upstream` as the relay's mode says, and the answers back.
fn relay_connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    shared: &(Mutex<RelayState>, Condvar),
) {
    if shared.0.lock().unwrap().mode == Mode::Cut {
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    let (mut from_server, mut to_client) =
        (server.try_clone().unwrap(), client.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Write);
    });
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = server.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        let mode = {
            let (state, changed) = shared;
            let mut s = state.lock().unwrap();
            if s.mode == Mode::Hold {
                s.held += 1;
                changed.notify_all();
                s = changed.wait_while(s, |s| s.mode == Mode::Hold).unwrap();
                s.held -= 1;
            }
            s.mode
        };
        if mode == Mode::Cut || server.write_all(&buf[..n]).is_err() {
            let _ = server.shutdown(Shutdown::Both);
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// A fresh appliance registered with a fresh (plain HTTP) witness, which it reaches
/// through a relay; the appliance is not started.
struct Linked {
    app: Appliance,
    witness: Cosigner,
    relay: Relay,
    // Kept for the life of the test.
    _ws: Server,
    _w: WitnessNode,
}

fn linked() -> Linked {
    let app = Appliance::new("ecdsa-p256");
    let (w, witness_key) = witness_of(&app, ORIGIN);
    let ws = w.start();
    let relay = Relay::new(ws.addr);
    // A timeout far above the time a submission is held: the relay, not the client's
    // timeout, decides when it returns.
    app.write_config(&[(
        "seal_interval_ms = 200\n",
        &format!(
            "seal_interval_ms = 200\nwitness_timeout_ms = 60000\n[[chain.witness]]\nurl = \"http://{}\"\nkey = \"{}\"\n",
            relay.addr,
            witness_key.trim()
        ),
    )]);
    Linked {
        app,
        witness: Cosigner::parse(witness_key.trim()).unwrap(),
        relay,
        _ws: ws,
        _w: w,
    }
}

/// The tree size of `note`.
fn size_of(note: &SignedNote) -> u64 {
    auditstamp::chain::note::Checkpoint::parse(&note.text)
        .unwrap()
        .size
}

#[test]
fn a_checkpoint_sealed_while_a_submission_is_in_flight_is_submitted_when_it_returns() {
    let rt = rt();
    let l = linked();
    let server = l.app.start();
    // The first checkpoint's submission reaches the relay and is held there...
    l.relay.set(Mode::Hold);
    post_events(&rt, &server, 4);
    assert!(
        l.relay.wait_held(),
        "no submission reached the witness: {}",
        server.log()
    );
    // ...while a newer checkpoint is sealed; then no more events.
    post_events(&rt, &server, 3);
    let note = wait_checkpoint(&rt, &server, 7);
    assert_eq!(size_of(&note), 7);
    l.relay.set(Mode::Pass);
    // The first one is cosigned, but the newest is the one that must be.
    let note = wait_cosigned(&rt, &server, &l.witness, 7);
    assert_eq!(size_of(&note), 7);
    // Without a failure and a retry: the newest was submitted as soon as the held one returned.
    assert!(
        !server.log().contains("witness did not cosign"),
        "{}",
        server.log()
    );
    server.stop();
}

#[test]
fn a_failed_submission_is_tried_again_until_the_latest_checkpoint_is_cosigned() {
    let rt = rt();
    let l = linked();
    let server = l.app.start();
    // The witness cannot be reached when the checkpoint is sealed...
    l.relay.set(Mode::Cut);
    post_events(&rt, &server, 4);
    assert!(
        server.wait_for_log("witness did not cosign"),
        "{}",
        server.log()
    );
    // ...and can again, with no more events: the same checkpoint is submitted again.
    l.relay.set(Mode::Pass);
    let note = wait_cosigned(&rt, &server, &l.witness, 4);
    assert_eq!(size_of(&note), 4);
    server.stop();
}

#[test]
fn a_restarted_appliance_submits_the_checkpoint_it_stopped_before_cosigning() {
    let rt = rt();
    let l = linked();
    let server = l.app.start();
    post_events(&rt, &server, 4);
    wait_cosigned(&rt, &server, &l.witness, 4);
    // A checkpoint is sealed and its submission held when the appliance stops.
    l.relay.set(Mode::Hold);
    post_events(&rt, &server, 3);
    assert!(l.relay.wait_held(), "{}", server.log());
    assert_eq!(size_of(&wait_checkpoint(&rt, &server, 7)), 7);
    server.stop();
    // (The held submission now reaches the witness, or not: the appliance cannot know.)
    l.relay.set(Mode::Pass);
    let server = l.app.start();
    let note = wait_cosigned(&rt, &server, &l.witness, 7);
    assert_eq!(size_of(&note), 7);
    server.stop();
}
