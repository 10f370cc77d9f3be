//! Faults: the disk fills while events arrive (507, nothing acknowledged is lost, the store
//! reopens cleanly), and kill -9 under mixed load of tokens and events (no serial number
//! reused, no acknowledged event lost, `chain verify` passes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn event(n: u64, pad: usize) -> Value {
    json!({
        "agency": "agency-3", "auditor": "auditor-1", "action": "data_collection",
        "subject": format!("record/{n}"), "data_sha256": format!("{n:064x}"),
        "occurred_at": "2026-12-01T12:00:00Z",
        "details": {"pad": "x".repeat(pad)},
    })
}

/// Posts a batch; Ok(acknowledged (index, leaf hash)) or Err(status).
async fn post_batch(
    client: &reqwest::Client,
    url: &str,
    events: &[Value],
) -> Result<Vec<(u64, String)>, u16> {
    let r = client
        .post(format!("{url}/v1/events/batch"))
        .json(&events)
        .send()
        .await
        .map_err(|_| 0u16)?;
    let status = r.status().as_u16();
    let v: Value = r.json().await.map_err(|_| status)?;
    if status != 200 {
        return Err(status);
    }
    let first = v["first_index"].as_u64().unwrap();
    Ok(v["leaf_hashes"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, h)| (first + i as u64, h.as_str().unwrap().to_owned()))
        .collect())
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = client.get(url).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Waits until every index in `acked` is sealed, then checks each is there unchanged.
async fn all_there(client: &reqwest::Client, server: &Server, acked: &BTreeMap<u64, String>) {
    let last = *acked.keys().last().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, b) = get(client, &server.url("/v1/blocks/latest")).await;
        if s == 200 && b["tree_size"].as_u64().unwrap() > last {
            break;
        }
        assert!(Instant::now() < deadline, "never sealed: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (i, h) in acked {
        let (s, v) = get(client, &server.url(&format!("/v1/events/{i}"))).await;
        assert_eq!(s, 200, "acknowledged event {i} lost: {v}");
        assert_eq!(v["leaf_hash"].as_str().unwrap(), h, "event {i} changed");
    }
}

fn verify_chain(app: &Appliance, key: &str) {
    let ca = app.ca_pem();
    let out = app.cli(&[
        "chain",
        "verify",
        "--state",
        app.path().to_str().unwrap(),
        "--key",
        key,
        "--ca",
        ca.to_str().unwrap(),
    ]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chain verify: {text}");
}

#[test]
fn a_full_disk_refuses_with_507_and_loses_nothing_acknowledged() {
    let app = Appliance::new("ecdsa-p256");
    let rt = rt();
    let client = reqwest::Client::new();
    let mut acked = BTreeMap::new();
    // A first run without a limit, to know what the store takes.
    let server = app.start();
    let url = server.url("");
    rt.block_on(async {
        let batch: Vec<Value> = (0..50).map(|n| event(n, 100)).collect();
        acked.extend(post_batch(&client, &url, &batch).await.unwrap());
    });
    server.stop();
    let biggest = std::fs::read_dir(app.path().join("store"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .max()
        .unwrap();
    // Now every store file may grow by at most 2 MiB more.
    let server = app.start_with_file_limit(biggest / 1024 + 2048);
    let url = server.url("");
    let mut refused = None;
    rt.block_on(async {
        for round in 0..200u64 {
            let batch: Vec<Value> = (0..100)
                .map(|n| event(1000 + round * 100 + n, 2000))
                .collect();
            match post_batch(&client, &url, &batch).await {
                Ok(a) => acked.extend(a),
                Err(status) => {
                    refused = Some(status);
                    break;
                }
            }
        }
    });
    assert_eq!(refused, Some(507), "the full disk was not reported as 507");
    // Smaller events may still fit; once even one small event does not, it is refused
    // the same way, and a token (which must be recorded) is refused too.
    let mut small_refused = None;
    rt.block_on(async {
        for n in 0..20_000u64 {
            match post_batch(&client, &url, &[event(100_000 + n, 10)]).await {
                Ok(a) => acked.extend(a),
                Err(status) => {
                    small_refused = Some(status);
                    break;
                }
            }
        }
    });
    assert!(
        matches!(small_refused, Some(503) | Some(507)),
        "{small_refused:?}"
    );
    let data = app.path().join("doc.txt");
    std::fs::write(&data, "x").unwrap();
    let tsq = std::fs::read(ts_query(app.path(), &data, "-sha256", true, true, "full")).unwrap();
    let (status, _, reply) = rt.block_on(post(
        &client,
        &server.url("/tsa"),
        "application/timestamp-query",
        tsq,
    ));
    assert_eq!(status, 200);
    let st = auditstamp::tsp::decode_response_status(&reply).unwrap();
    assert_eq!(
        st.fail_info,
        Some(auditstamp::tsp::FailureInfo::SystemFailure),
        "a token was issued but not recorded"
    );
    let mut server = server;
    let _ = server.child.kill();
    let _ = server.child.wait();

    // Space again: the store reopens, every acknowledged event is there, the chain verifies.
    let server = app.start();
    rt.block_on(all_there(&client, &server, &acked));
    let key = rt.block_on(async {
        get(&client, &server.url("/v1/events/0")).await.1["verifier_key"]
            .as_str()
            .unwrap()
            .to_owned()
    });
    let more = rt
        .block_on(post_batch(&client, &server.url(""), &[event(7, 10)]))
        .unwrap();
    assert_eq!(
        more[0].0,
        *acked.keys().last().unwrap() + 1,
        "indexes do not continue"
    );
    server.stop();
    verify_chain(&app, &key);
    assert!(dir_bytes(&app.path().join("store")) > 0);
}

#[test]
fn kill_9_under_tokens_and_events_reuses_no_serial_and_loses_no_event() {
    let app = Appliance::new("ecdsa-p256");
    let rt = rt();
    let client = reqwest::Client::new();
    let data = app.path().join("doc.txt");
    std::fs::write(&data, "mixed load\n").unwrap();
    let tsq = std::fs::read(ts_query(app.path(), &data, "-sha256", true, false, "q")).unwrap();
    let serials: Arc<Mutex<Vec<u128>>> = Arc::default();
    let acked: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
    for run in 0..2u64 {
        let server = app.start();
        let url = server.url("");
        rt.block_on(async {
            let mut tasks = Vec::new();
            for c in 0..6u64 {
                let (client, url, tsq) = (client.clone(), url.clone(), tsq.clone());
                let (serials, acked) = (serials.clone(), acked.clone());
                tasks.push(tokio::spawn(async move {
                    for k in 0u64.. {
                        if c % 2 == 0 {
                            let Ok(r) = client
                                .post(format!("{url}/tsa"))
                                .header("Content-Type", "application/timestamp-query")
                                .body(tsq.clone())
                                .send()
                                .await
                            else {
                                break;
                            };
                            let Ok(reply) = r.bytes().await else { break };
                            let st = auditstamp::tsp::decode_response_status(&reply).unwrap();
                            if let Some(token) = st.token {
                                let info =
                                    auditstamp::tsp::decode_tst_info_from_token(&token).unwrap();
                                serials.lock().unwrap().push(info.serial_u128().unwrap());
                            }
                        } else {
                            let batch: Vec<Value> = (0..10)
                                .map(|i| event(run * 10_000_000 + c * 100_000 + k * 10 + i, 50))
                                .collect();
                            match post_batch(&client, &url, &batch).await {
                                Ok(a) => acked.lock().unwrap().extend(a),
                                Err(_) => break,
                            }
                        }
                    }
                }));
            }
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let mut server = server;
            server.child.kill().unwrap();
            server.child.wait().unwrap();
            for t in tasks {
                t.await.unwrap();
            }
        });
    }
    let serials = serials.lock().unwrap().clone();
    let acked = acked.lock().unwrap().clone();
    assert!(
        serials.len() > 20 && acked.len() > 100,
        "{} tokens, {} events",
        serials.len(),
        acked.len()
    );
    let distinct: HashSet<u128> = serials.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        serials.len(),
        "a serial number was reused across kill -9"
    );

    let server = app.start();
    rt.block_on(all_there(&client, &server, &acked));
    let key = rt.block_on(async {
        get(&client, &server.url("/v1/events/0")).await.1["verifier_key"]
            .as_str()
            .unwrap()
            .to_owned()
    });
    server.stop();
    verify_chain(&app, &key);
}

/// The clock a test sets by hand (synchronised), for the appliance's clock guard.
struct ManualClock(std::sync::atomic::AtomicU64);

impl auditstamp::internal::Clock for ManualClock {
    fn now(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH
            + Duration::from_millis(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
    fn sync_status(&self) -> auditstamp::internal::SyncStatus {
        auditstamp::internal::SyncStatus::Synchronised { max_error_us: 10 }
    }
}

/// The value of `field=` in the last log line holding `message` (colours stripped).
fn log_field(log: &str, message: &str, field: &str) -> Option<u64> {
    let line = log.lines().rev().find(|l| l.contains(message))?;
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{field}=")))
        .and_then(|v| v.parse().ok())
}

/// genTime never goes back across kill -9: tokens are issued from several clients (and
/// blocks sealed, each with its own token) until the server is killed mid-load, twice.
/// The floor the appliance computes from its store afterwards is at least every genTime
/// it answered, although the stored genTime mark is written only once a second: a clock
/// guard over that store, with a clock set back, refuses until the clock passes the
/// floor. The restarted server starts from the same floor.
#[test]
fn gen_time_never_goes_back_across_kill_9() {
    let app = Appliance::new("ecdsa-p256");
    let rt = rt();
    let client = reqwest::Client::new();
    let data = app.path().join("doc.txt");
    std::fs::write(&data, "genTime\n").unwrap();
    let tsq = std::fs::read(ts_query(app.path(), &data, "-sha256", false, false, "q")).unwrap();
    let gen_times: Arc<Mutex<Vec<u64>>> = Arc::default();
    for _run in 0..2 {
        let server = app.start();
        let url = server.url("/tsa");
        let before = gen_times.lock().unwrap().len();
        rt.block_on(async {
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let (client, url, tsq) = (client.clone(), url.clone(), tsq.clone());
                    let gen_times = gen_times.clone();
                    tokio::spawn(async move {
                        loop {
                            let Ok(r) = client
                                .post(&url)
                                .header("Content-Type", "application/timestamp-query")
                                .body(tsq.clone())
                                .send()
                                .await
                            else {
                                break;
                            };
                            let Ok(reply) = r.bytes().await else { break };
                            let st = auditstamp::tsp::decode_response_status(&reply).unwrap();
                            let token = st.token.expect("a token");
                            let info = auditstamp::tsp::decode_tst_info_from_token(&token).unwrap();
                            gen_times.lock().unwrap().push(info.gen_time.unix_millis());
                        }
                    })
                })
                .collect();
            // Load for a while (past a few one-second marks and 200 ms seals), then the
            // crash, with requests in flight.
            let start = Instant::now();
            let deadline = start + Duration::from_secs(60);
            while gen_times.lock().unwrap().len() < before + 200
                || start.elapsed() < Duration::from_millis(2_500)
            {
                assert!(Instant::now() < deadline, "tokens are not being issued");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let mut server = server;
            server.child.kill().unwrap();
            server.child.wait().unwrap();
            for t in tasks {
                t.await.unwrap();
            }
        });
    }
    let answered = *gen_times.lock().unwrap().iter().max().unwrap();

    // The floor the server starts from, computed over the store the killed server left.
    let floor = app.with_store(|store| {
        let log = auditstamp::internal::EventLog::open(store).unwrap();
        auditstamp::internal::gen_time_floor(store, &log).unwrap()
    });
    assert!(
        floor.ms >= answered,
        "genTime floor {} ms is before the answered genTime {answered} ms: {floor:?}",
        floor.ms
    );
    assert!(
        floor.events_ms.is_some() && floor.block_ms.is_some(),
        "{floor:?}"
    );
    // With the clock set back below the floor, nothing is issued until it passes it.
    let clock = Arc::new(ManualClock(answered.saturating_sub(1_000).into()));
    let guard = auditstamp::internal::ClockGuard::new(
        clock.clone(),
        true,
        Duration::from_secs(1),
        floor.ms,
    );
    for behind in [answered.saturating_sub(1_000), answered - 1, floor.ms - 1] {
        clock.0.store(behind, std::sync::atomic::Ordering::SeqCst);
        assert!(
            matches!(
                guard.gen_time(),
                Err(auditstamp::internal::ClockError::SteppedBack { .. })
            ),
            "a genTime at {behind} ms, before the floor {} ms",
            floor.ms
        );
        assert!(guard.check().is_err());
    }
    clock.0.store(floor.ms, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(guard.gen_time().unwrap(), floor.ms);

    // The restarted server logs the same floor, and issues later genTimes.
    let server = app.start();
    assert!(server.wait_for_log("genTime floor"), "{}", server.log());
    assert_eq!(
        log_field(&server.log(), "genTime floor", "floor_ms"),
        Some(floor.ms),
        "{}",
        server.log()
    );
    let (status, _, reply) = rt.block_on(post(
        &client,
        &server.url("/tsa"),
        "application/timestamp-query",
        tsq,
    ));
    assert_eq!(status, 200);
    let token = auditstamp::tsp::decode_response_status(&reply)
        .unwrap()
        .token
        .unwrap();
    let info = auditstamp::tsp::decode_tst_info_from_token(&token).unwrap();
    assert!(info.gen_time.unix_millis() >= floor.ms);
    server.stop();
}
