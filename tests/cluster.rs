//! Three appliances behind a real HAProxy running the shipped configuration
//! (deploy/haproxy/auditstamp.cfg): clients send tokens and events through it, one node is
//! killed with kill -9 under that load and started again. No request fails but those in
//! flight at the kill, every acknowledged event is in one node's log, every node's chain
//! verifies through the balancer's `/node/<n>` routes, one CA verifies every node's tokens
//! (`openssl ts -verify`), and serial numbers are unique across the nodes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use sha2::Digest;

const NODES: usize = 3;
const TOKEN_CLIENTS: usize = 4;
const EVENT_CLIENTS: usize = 2;

/// Polls `f` every 20 ms until it is true; panics naming `what` after `limit`.
async fn wait_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One appliance of the cluster: node.id `n`, its own token, keys, chain and origin; its TSA
/// key certified by the cluster's one CA.
fn node(n: usize, ca: &OpensslCa) -> Appliance {
    let a = Appliance::bare("ecdsa-p256");
    write_node_config(&a, n, None);
    std::fs::create_dir_all(a.path().join("pki")).unwrap();
    std::fs::copy(ca.cert(), a.ca_pem()).unwrap();
    a.certify_with(
        ca,
        "tsa",
        &format!("CN=cluster node {n},O=auditstamp tests,C=EE"),
    );
    a
}

/// The replacements of node `n`'s configuration; `listen`: the address it keeps when it is
/// started again.
fn node_config(n: usize, listen: Option<SocketAddr>) -> Vec<(&'static str, String)> {
    let mut r = vec![
        ("id = 42", format!("id = {n}")),
        ("name = \"test-appliance\"", format!("name = \"node-{n}\"")),
        (
            "origin = \"test-appliance.example/chain\"",
            format!("origin = \"node-{n}.cluster.test/chain\""),
        ),
    ];
    if let Some(addr) = listen {
        r.push(("listen = \"127.0.0.1:0\"", format!("listen = \"{addr}\"")));
    }
    r
}

fn write_node_config(a: &Appliance, n: usize, listen: Option<SocketAddr>) {
    let r = node_config(n, listen);
    let r: Vec<(&str, &str)> = r.iter().map(|(f, t)| (*f, t.as_str())).collect();
    a.write_config(&r);
}

/// What one request through the balancer came to.
enum Outcome {
    /// A granted token: the digest asked for, the whole response, the serial number.
    Token {
        digest: Vec<u8>,
        response: Vec<u8>,
        serial: u128,
    },
    /// An acknowledged event: its index and leaf hash on the node that took it.
    Event {
        index: u64,
        leaf_hash: String,
    },
    Failed(String),
}

struct Done {
    client: usize,
    start: Instant,
    end: Instant,
    outcome: Outcome,
}

/// The clients' shared record: every request, and each client's count of successes.
struct Load {
    stop: AtomicBool,
    ok: Vec<AtomicU64>,
    done: Mutex<Vec<Done>>,
}

impl Load {
    fn ok_counts(&self) -> Vec<u64> {
        self.ok.iter().map(|c| c.load(Ordering::SeqCst)).collect()
    }
}

async fn token_request(client: &reqwest::Client, url: &str, digest: &[u8]) -> Outcome {
    // Positive and minimal: bit 62 set, bit 63 clear.
    let n = u64::from_be_bytes(digest[..8].try_into().unwrap()) & !(1 << 63) | 1 << 62;
    let nonce = der::asn1::Int::new(&n.to_be_bytes()).unwrap();
    let body = auditstamp::tsp::encode_request(&auditstamp::tsp::RequestParams {
        hash: auditstamp::tsp::HashAlgorithm::Sha256,
        digest,
        policy: None,
        nonce: Some(&nonce),
        cert_req: true,
    })
    .unwrap();
    let resp = match client
        .post(url)
        .header("Content-Type", "application/timestamp-query")
        .body(body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("{e:?}")),
    };
    let status = resp.status().as_u16();
    let bytes = match resp.bytes().await {
        Ok(b) => b.to_vec(),
        Err(e) => return Outcome::Failed(format!("{status}: {e:?}")),
    };
    if status != 200 {
        return Outcome::Failed(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
    }
    let Ok(token) = auditstamp::tsp::granted_token(&bytes) else {
        let status = auditstamp::tsp::decode_response_status(&bytes);
        return Outcome::Failed(format!("200, not granted: {status:?}"));
    };
    let info = auditstamp::tsp::decode_tst_info_from_token(token).unwrap();
    assert_eq!(info.digest, digest);
    Outcome::Token {
        digest: digest.to_vec(),
        serial: info.serial_u128().unwrap(),
        response: bytes,
    }
}

async fn event_request(client: &reqwest::Client, url: &str, n: u64) -> Outcome {
    let resp = match client.post(url).json(&event(n)).send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("{e:?}")),
    };
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if status != 200 {
        return Outcome::Failed(format!("{status}: {v}"));
    }
    Outcome::Event {
        index: v["index"].as_u64().unwrap(),
        leaf_hash: v["leaf_hash"].as_str().unwrap().to_owned(),
    }
}

/// Client `c`: one request after another (each answered before the next is sent) on a
/// keep-alive connection to the balancer, until told to stop.
async fn client_loop(load: Arc<Load>, c: usize, base: String) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut i = 0u64;
    while !load.stop.load(Ordering::SeqCst) {
        i += 1;
        let start = Instant::now();
        let outcome = if c < TOKEN_CLIENTS {
            let digest = sha2::Sha256::digest(format!("client {c} request {i}")).to_vec();
            token_request(&client, &format!("{base}/tsa"), &digest).await
        } else {
            event_request(
                &client,
                &format!("{base}/v1/events"),
                c as u64 * 1_000_000 + i,
            )
            .await
        };
        let end = Instant::now();
        if !matches!(outcome, Outcome::Failed(_)) {
            load.ok[c].fetch_add(1, Ordering::SeqCst);
        }
        load.done.lock().unwrap().push(Done {
            client: c,
            start,
            end,
            outcome,
        });
    }
}

/// Waits until every client has `more` successes beyond `from`.
async fn each_client_gets(load: &Load, from: &[u64], more: u64, what: &str) {
    wait_until(what, Duration::from_secs(60), || async {
        load.ok_counts()
            .iter()
            .zip(from)
            .all(|(now, then)| now >= &(then + more))
    })
    .await;
}

/// The node.id in a serial number (its high 64 bits).
fn node_of(serial: u128) -> usize {
    usize::try_from(serial >> 64).unwrap()
}

/// A request failed only if it was in flight at the kill (sent before the process was
/// reaped, answered after the signal); every request sent after it succeeded.
fn assert_only_requests_in_flight_failed(
    done: &[Done],
    kill_start: Instant,
    kill_end: Instant,
    haproxy: &Haproxy,
) {
    let in_flight = |d: &Done| d.start <= kill_end && d.end >= kill_start;
    let in_flight_count = done.iter().filter(|d| in_flight(d)).count();
    let failed: Vec<&Done> = done
        .iter()
        .filter(|d| matches!(d.outcome, Outcome::Failed(_)))
        .collect();
    for d in &failed {
        let Outcome::Failed(why) = &d.outcome else {
            unreachable!()
        };
        assert!(
            in_flight(d),
            "client {}'s request failed ({why}), {:?} after the kill, not in flight then:\n{}",
            d.client,
            d.start.saturating_duration_since(kill_end),
            haproxy.log()
        );
    }
    assert!(failed.len() <= in_flight_count);
    assert!(
        done.iter()
            .filter(|d| d.start > kill_end)
            .all(|d| !matches!(d.outcome, Outcome::Failed(_))),
        "every request sent after the kill succeeds"
    );
    eprintln!(
        "{} requests, {} failed, {} in flight at the kill (which took {:?})",
        done.len(),
        failed.len(),
        in_flight_count,
        kill_end - kill_start
    );
}

/// Serial numbers are unique across the nodes, each naming its node, and every node signed
/// tokens; one CA verifies every node's tokens (the first and the last of each, with
/// `openssl ts -verify`).
fn assert_tokens_unique_and_verified(done: &[Done], ca: &OpensslCa, dir: &Path) {
    let mut serials = HashSet::new();
    // Node id -> (digest, response) of each of its tokens.
    type Signed<'a> = Vec<(&'a [u8], &'a [u8])>;
    let mut tokens: BTreeMap<usize, Signed> = BTreeMap::new();
    for d in done {
        if let Outcome::Token {
            digest,
            response,
            serial,
        } = &d.outcome
        {
            assert!(serials.insert(*serial), "serial {serial:#x} issued twice");
            tokens
                .entry(node_of(*serial))
                .or_default()
                .push((digest, response));
        }
    }
    assert_eq!(
        tokens.keys().copied().collect::<Vec<_>>(),
        (1..=NODES).collect::<Vec<_>>(),
        "every node signed tokens, no other node.id"
    );
    for (n, list) in &tokens {
        for (i, (digest, response)) in [list[0], list[list.len() - 1]].iter().enumerate() {
            let f = dir.join(format!("node-{n}-{i}.tsr"));
            std::fs::write(&f, response).unwrap();
            let out = openssl(&[
                "ts",
                "-verify",
                "-digest",
                &hex::encode(digest),
                "-in",
                f.to_str().unwrap(),
                "-CAfile",
                ca.cert().to_str().unwrap(),
            ]);
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("Verification: OK"),
                "node {n}'s token"
            );
        }
    }
}

/// Every acknowledged event is in one node's log (the killed node's too, after its
/// restart), read through the balancer's /node/<n> routes once sealed.
async fn assert_events_stored(done: &[Done], probe: &reqwest::Client, haproxy: &Haproxy) {
    for d in done {
        let Outcome::Event { index, leaf_hash } = &d.outcome else {
            continue;
        };
        wait_until(
            &format!("acknowledged event {index} ({leaf_hash}) in a node's log"),
            Duration::from_secs(30),
            || async {
                for n in 1..=NODES {
                    let url = haproxy.url(&format!("/node/{n}/v1/events/{index}"));
                    let (status, v) = get_json(probe, &url).await;
                    if status == 200 && v["leaf_hash"] == leaf_hash.as_str() {
                        return true;
                    }
                }
                false
            },
        )
        .await;
    }
}

/// Every node's chain verifies (`verify chain --url`), read through the balancer.
fn assert_chains_verify(keys: &[String], ca: &OpensslCa, haproxy: &Haproxy) {
    for (i, key) in keys.iter().enumerate() {
        let out = Command::new(bin())
            .args(["verify", "chain", "--url"])
            .arg(haproxy.url(&format!("/node/{}", i + 1)))
            .args(["--key", key, "--ca"])
            .arg(ca.cert())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "node {}'s chain: {text}", i + 1);
        assert!(
            text.contains(&format!("node-{}.cluster.test/chain", i + 1)),
            "{text}"
        );
    }
}

#[test]
fn a_node_killed_under_load_behind_haproxy_fails_only_the_requests_in_flight() {
    haproxy_bin();
    let dir = tempfile::tempdir().unwrap();
    let ca = OpensslCa::new(&dir.path().join("ca"));
    let apps: Vec<Appliance> = (1..=NODES).map(|n| node(n, &ca)).collect();
    let mut servers: Vec<Server> = apps.iter().map(Appliance::start).collect();
    // A node started again keeps its address, which the balancer names.
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    for (i, a) in apps.iter().enumerate() {
        write_node_config(a, i + 1, Some(addrs[i]));
    }
    let keys: Vec<String> = apps.iter().map(chain_key).collect();

    let env: Vec<(String, String)> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("AUDITSTAMP_NODE{}", i + 1), a.to_string()))
        .collect();
    let mut haproxy = Haproxy::start(
        "auditstamp.cfg",
        "AUDITSTAMP_CLUSTER_LISTEN",
        "AUDITSTAMP_CLUSTER_STATS",
        &env,
    );
    let rt = rt();
    let probe = reqwest::Client::new();
    rt.block_on(async {
        for n in 1..=NODES {
            haproxy
                .wait_state("auditstamp", &format!("node{}", n), "UP")
                .await;
        }
    });

    let load = Arc::new(Load {
        stop: AtomicBool::new(false),
        ok: (0..TOKEN_CLIENTS + EVENT_CLIENTS)
            .map(|_| AtomicU64::new(0))
            .collect(),
        done: Mutex::new(Vec::new()),
    });
    let clients: Vec<_> = (0..TOKEN_CLIENTS + EVENT_CLIENTS)
        .map(|c| rt.spawn(client_loop(load.clone(), c, haproxy.url(""))))
        .collect();
    rt.block_on(each_client_gets(
        &load,
        &load.ok_counts(),
        15,
        "load through the balancer",
    ));

    // kill -9 node 2 under load. The kill lasts from the signal until the process is
    // reaped: a dying process still holds its sockets, and what reaches it meanwhile is
    // lost with it (in flight at the kill, like what it was handling).
    let killed = 1;
    let kill_start = Instant::now();
    servers[killed].child.kill().unwrap();
    servers[killed].child.wait().unwrap();
    let kill_end = Instant::now();
    rt.block_on(async {
        haproxy
            .wait_state("auditstamp", &format!("node{}", killed + 1), "DOWN")
            .await;
        for n in [1, 3] {
            assert_eq!(
                haproxy
                    .state("auditstamp", &format!("node{n}"))
                    .await
                    .as_deref(),
                Some("UP")
            );
        }
        // Its own reads answer 503 from the balancer meanwhile; the pool's /readyz 200.
        let r = probe
            .get(haproxy.url("/node/2/readyz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 503);
        let r = probe.get(haproxy.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    });
    rt.block_on(each_client_gets(
        &load,
        &load.ok_counts(),
        15,
        "load on the two nodes left",
    ));

    // Node 2 again, at its address.
    servers[killed] = apps[killed].start();
    assert_eq!(servers[killed].addr, addrs[killed]);
    let up = Instant::now();
    rt.block_on(async {
        haproxy
            .wait_state("auditstamp", &format!("node{}", killed + 1), "UP")
            .await;
        wait_until(
            "node 2 signs tokens through the balancer again",
            Duration::from_secs(30),
            || async {
                let done = load.done.lock().unwrap();
                done.iter().filter(|d| d.start > up).any(
                    |d| matches!(d.outcome, Outcome::Token { serial, .. } if node_of(serial) == 2),
                )
            },
        )
        .await;
    });
    rt.block_on(each_client_gets(
        &load,
        &load.ok_counts(),
        5,
        "load on the three nodes",
    ));
    load.stop.store(true, Ordering::SeqCst);
    rt.block_on(async {
        for c in clients {
            c.await.unwrap();
        }
    });
    let done = std::mem::take(&mut *load.done.lock().unwrap());

    assert_only_requests_in_flight_failed(&done, kill_start, kill_end, &haproxy);
    assert_tokens_unique_and_verified(&done, &ca, dir.path());
    rt.block_on(assert_events_stored(&done, &probe, &haproxy));
    assert_chains_verify(&keys, &ca, &haproxy);

    // The /node/<n> routes only read, and only name nodes that exist.
    rt.block_on(async {
        let r = probe
            .post(haproxy.url("/node/1/v1/events"))
            .json(&event(1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 405);
        let r = probe
            .get(haproxy.url("/node/9/checkpoint"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404);
        let r = probe
            .get(haproxy.url("/node/3/checkpoint"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let checkpoint = r.text().await.unwrap();
        assert!(
            checkpoint.starts_with("node-3.cluster.test/chain\n"),
            "{checkpoint}"
        );
    });
    for s in servers {
        s.stop();
    }
}
