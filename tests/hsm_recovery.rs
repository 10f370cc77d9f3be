//! End to end: the HSM goes away under a running server and comes back.
//!
//! The SoftHSM token directory is moved away (the token vanishes, as a network HSM does
//! in an outage) and back. While it is away, requests are rejected with systemFailure
//! and `/readyz` is 503; once it is back the server recovers without a restart (it
//! re-initialises the PKCS#11 library in-process, because SoftHSM never rediscovers a
//! token that vanished), and its tokens verify with `openssl ts -verify`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditstamp::tsp::{decode_response_status, FailureInfo};
use common::*;

/// How often the test polls while waiting for a state change.
const POLL: Duration = Duration::from_millis(200);
/// How long the server may take to notice that the token is gone.
const OUTAGE_NOTICED_WITHIN: Duration = Duration::from_secs(5);
/// How long the server may take to recover once the token is back.
const RECOVERY_WITHIN: Duration = Duration::from_secs(15);
/// A reply slower than this counts as a hang.
const HANG: Duration = Duration::from_secs(10);

/// What one time-stamp request came back with.
#[derive(Debug)]
enum Outcome {
    /// Granted: the DER TimeStampResp.
    Granted(Vec<u8>),
    /// Rejected with failInfo systemFailure.
    SystemFailure,
    /// Anything else: transport error, timeout, other HTTP status, other rejection.
    Bad(String),
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(HANG).build().unwrap()
}

/// POSTs one request and classifies the reply; never panics on the server's behaviour.
async fn ask(client: &reqwest::Client, server_url: &str, tsq: Vec<u8>) -> Outcome {
    let resp = match client
        .post(server_url)
        .header("Content-Type", "application/timestamp-query")
        .body(tsq)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Outcome::Bad(format!("transport error: {e}")),
    };
    let status = resp.status().as_u16();
    let body = match resp.bytes().await {
        Ok(b) => b.to_vec(),
        Err(e) => return Outcome::Bad(format!("transport error reading the body: {e}")),
    };
    if status != 200 {
        return Outcome::Bad(format!("HTTP {status}"));
    }
    let st = match decode_response_status(&body) {
        Ok(st) => st,
        Err(e) => return Outcome::Bad(format!("undecodable reply: {e}")),
    };
    match (st.status, st.fail_info, st.token.is_some()) {
        (0, None, true) => Outcome::Granted(body),
        (2, Some(FailureInfo::SystemFailure), false) => Outcome::SystemFailure,
        (status, fail, token) => Outcome::Bad(format!(
            "status {status}, failInfo {fail:?}, token present {token}, text {:?}",
            st.text
        )),
    }
}

async fn readyz(client: &reqwest::Client, url: &str) -> Option<u16> {
    client
        .get(url)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// A data file and an `openssl ts -query` request for it (SHA-256, nonce, certReq).
struct Query {
    data: PathBuf,
    tsq: PathBuf,
    der: Vec<u8>,
}

fn queries(dir: &Path, n: usize) -> Vec<Query> {
    (0..n)
        .map(|i| {
            let data = dir.join(format!("doc-{i}.txt"));
            std::fs::write(
                &data,
                format!("audit record {i} for the HSM recovery test\n"),
            )
            .unwrap();
            let tsq = ts_query(dir, &data, "-sha256", true, true, &format!("q{i}"));
            let der = std::fs::read(&tsq).unwrap();
            Query { data, tsq, der }
        })
        .collect()
}

/// `openssl ts -verify` of `reply` against the data and against the request (imprint and
/// nonce), with the development CA as the only trust anchor.
fn verify_with_openssl(app: &Appliance, q: &Query, reply: &[u8], name: &str) {
    let tsr = app.path().join("work").join(format!("{name}.tsr"));
    std::fs::write(&tsr, reply).unwrap();
    let (tsr, ca) = (tsr.to_str().unwrap(), app.ca_pem());
    let ca = ca.to_str().unwrap();
    let out = openssl(&[
        "ts",
        "-verify",
        "-data",
        q.data.to_str().unwrap(),
        "-in",
        tsr,
        "-CAfile",
        ca,
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Verification: OK"),
        "{name}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    openssl(&[
        "ts",
        "-verify",
        "-queryfile",
        q.tsq.to_str().unwrap(),
        "-in",
        tsr,
        "-CAfile",
        ca,
    ]);
}

/// Moves the token directory away and back.
struct TokenDir {
    here: PathBuf,
    away: PathBuf,
}

impl TokenDir {
    fn new(app: &Appliance) -> TokenDir {
        let here = app.hsm_dir().join("tokens");
        assert!(here.is_dir(), "{} is missing", here.display());
        TokenDir {
            away: app.hsm_dir().join("tokens.away"),
            here,
        }
    }
    fn take_away(&self) {
        std::fs::rename(&self.here, &self.away).unwrap();
    }
    fn bring_back(&self) {
        std::fs::rename(&self.away, &self.here).unwrap();
    }
}

fn assert_clean_log(server: &Server) {
    let log = server.log();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}

#[test]
fn the_server_recovers_when_the_token_comes_back() {
    let app = Appliance::new("ecdsa-p256");
    let work = app.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let qs = queries(&work, 3);
    let server = app.start();
    let rt = rt();
    let client = client();
    let (tsa_url, ready_url) = (server.url("/tsa"), server.url("/readyz"));
    let tokens = TokenDir::new(&app);

    // Healthy.
    assert_eq!(rt.block_on(readyz(&client, &ready_url)), Some(200));
    match rt.block_on(ask(&client, &tsa_url, qs[0].der.clone())) {
        Outcome::Granted(reply) => verify_with_openssl(&app, &qs[0], &reply, "before"),
        other => panic!("before the outage: {other:?}"),
    }

    // The token goes away. The readiness probe notices by itself (no request first).
    tokens.take_away();
    let deadline = Instant::now() + OUTAGE_NOTICED_WITHIN;
    loop {
        let status = rt.block_on(readyz(&client, &ready_url));
        if status == Some(503) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {status:?} {OUTAGE_NOTICED_WITHIN:?} after the token went away"
        );
        std::thread::sleep(POLL);
    }
    // Requests are rejected with systemFailure (after at most a short transition), and
    // keep being rejected, promptly, while the token stays away.
    let deadline = Instant::now() + OUTAGE_NOTICED_WITHIN;
    loop {
        match rt.block_on(ask(&client, &tsa_url, qs[1].der.clone())) {
            Outcome::SystemFailure => break,
            Outcome::Granted(_) => {}
            Outcome::Bad(why) => panic!("during the outage: {why}"),
        }
        assert!(Instant::now() < deadline, "requests still granted");
        std::thread::sleep(POLL);
    }
    for i in 0..10 {
        let started = Instant::now();
        match rt.block_on(ask(&client, &tsa_url, qs[1].der.clone())) {
            Outcome::SystemFailure => {}
            other => panic!("outage request {i}: {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a rejection took {:?}",
            started.elapsed()
        );
        assert_eq!(rt.block_on(readyz(&client, &ready_url)), Some(503));
        std::thread::sleep(POLL);
    }

    // The token comes back: the server recovers without a restart.
    tokens.bring_back();
    let back = Instant::now();
    let (mut ready, mut granted) = (false, None);
    while !(ready && granted.is_some()) {
        assert!(
            back.elapsed() < RECOVERY_WITHIN,
            "no recovery {RECOVERY_WITHIN:?} after the token came back (ready {ready}, \
             granted {}):\n{}",
            granted.is_some(),
            server.log()
        );
        std::thread::sleep(POLL);
        ready = ready || rt.block_on(readyz(&client, &ready_url)) == Some(200);
        if granted.is_none() {
            match rt.block_on(ask(&client, &tsa_url, qs[2].der.clone())) {
                Outcome::Granted(reply) => granted = Some(reply),
                Outcome::SystemFailure => {}
                Outcome::Bad(why) => panic!("during recovery: {why}"),
            }
        }
    }
    eprintln!("recovered {:?} after the token came back", back.elapsed());
    verify_with_openssl(&app, &qs[2], &granted.unwrap(), "after");

    // And stays recovered: within a second of the first, every signing session is back,
    // and every request is granted.
    std::thread::sleep(Duration::from_secs(1));
    for i in 0..20 {
        match rt.block_on(ask(&client, &tsa_url, qs[i % 3].der.clone())) {
            Outcome::Granted(reply) if i % 5 == 0 => {
                verify_with_openssl(&app, &qs[i % 3], &reply, &format!("steady-{i}"));
            }
            Outcome::Granted(_) => {}
            other => panic!("after recovery, request {i}: {other:?}"),
        }
    }
    assert_eq!(rt.block_on(readyz(&client, &ready_url)), Some(200));
    // The outage shows in the metrics: failed signing requests, sessions reopened.
    let text = rt.block_on(async {
        client
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .parse()
            .unwrap()
    };
    assert!(
        value("auditstamp_hsm_reconnects_total{key=\"tsa\"}") >= 1,
        "{text}"
    );
    assert!(
        value("auditstamp_hsm_signatures_total{key=\"tsa\"}") >= 21,
        "{text}"
    );
    assert!(
        value("auditstamp_tokens_refused_total{fail_info=\"systemFailure\"}") >= 1,
        "{text}"
    );
    assert_clean_log(&server);
    server.stop();
}

/// One reply seen by a load client: when it came back, for which query, and what it was.
struct Seen {
    at: Instant,
    query: usize,
    outcome: Outcome,
}

#[test]
fn under_load_every_reply_is_a_good_token_or_a_system_failure() {
    const CLIENTS: usize = 8;
    let app = Appliance::new("ecdsa-p256");
    let work = app.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let qs = Arc::new(queries(&work, 16));
    let server = app.start();
    let rt = rt();
    let client = client();
    let (tsa_url, ready_url) = (server.url("/tsa"), server.url("/readyz"));
    let tokens = TokenDir::new(&app);

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (client, url, qs) = (client.clone(), tsa_url.clone(), Arc::clone(&qs));
            let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
            rt.spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let query = (c + n * CLIENTS) % qs.len();
                    let outcome = ask(&client, &url, qs[query].der.clone()).await;
                    seen.lock().unwrap().push(Seen {
                        at: Instant::now(),
                        query,
                        outcome,
                    });
                    n += 1;
                }
            })
        })
        .collect();

    // One second of normal load, two seconds of outage, then recovery under load.
    std::thread::sleep(Duration::from_secs(1));
    tokens.take_away();
    let away = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let ready_during_outage = rt.block_on(readyz(&client, &ready_url));
    tokens.bring_back();
    let back = Instant::now();
    // Run until grants have been flowing again for a second, at most RECOVERY_WITHIN.
    let recovered_at = loop {
        let first_grant_after = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.at > back && matches!(s.outcome, Outcome::Granted(_)))
            .map(|s| s.at)
            .min();
        if let Some(at) = first_grant_after {
            if at.elapsed() >= Duration::from_secs(1) {
                break at;
            }
        }
        assert!(
            back.elapsed() < RECOVERY_WITHIN,
            "no grant {RECOVERY_WITHIN:?} after the token came back:\n{}",
            server.log()
        );
        std::thread::sleep(POLL);
    };
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for t in tasks {
            tokio::time::timeout(HANG + Duration::from_secs(5), t)
                .await
                .expect("a client hung")
                .expect("a client task failed");
        }
    });
    let ready_after = rt.block_on(readyz(&client, &ready_url));

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let bad: Vec<_> = seen
        .iter()
        .filter_map(|s| match &s.outcome {
            Outcome::Bad(why) => Some(why.as_str()),
            _ => None,
        })
        .collect();
    let granted = |from: Instant, to: Instant| {
        seen.iter()
            .filter(|s| s.at >= from && s.at < to && matches!(s.outcome, Outcome::Granted(_)))
            .count()
    };
    let failures = seen
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::SystemFailure))
        .count();
    let end = Instant::now();
    eprintln!(
        "{} replies: {} granted before the outage, {} while away, {} after; {failures} \
         systemFailure; recovered {:?} after the token came back",
        seen.len(),
        granted(away - Duration::from_secs(3600), away),
        granted(away, back),
        granted(back, end),
        recovered_at - back,
    );
    assert!(
        bad.is_empty(),
        "{} bad replies, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert!(
        granted(away - Duration::from_secs(3600), away) > 0,
        "nothing granted before"
    );
    assert!(failures > 0, "the outage went unnoticed");
    assert!(granted(back, end) > 0, "nothing granted after recovery");
    assert_eq!(ready_during_outage, Some(503));
    assert_eq!(ready_after, Some(200));

    // Sample granted tokens (before, around and after the outage) and verify each against
    // its request with openssl.
    let grants: Vec<&Seen> = seen
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Granted(_)))
        .collect();
    let mut sample: Vec<&Seen> = Vec::new();
    sample.extend(grants.iter().take(2));
    sample.extend(grants.iter().filter(|s| s.at < back).rev().take(3));
    sample.extend(grants.iter().filter(|s| s.at >= back).take(5));
    sample.extend(grants.iter().rev().take(2));
    for (i, s) in sample.iter().enumerate() {
        let Outcome::Granted(reply) = &s.outcome else {
            unreachable!()
        };
        verify_with_openssl(&app, &qs[s.query], reply, &format!("load-{i}"));
    }
    assert_clean_log(&server);
    server.stop();
}
