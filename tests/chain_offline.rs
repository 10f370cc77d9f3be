//! The event chain survives kill -9 and is verified offline: every acknowledged event is
//! there after a crash and sealing goes on; `chain verify` passes on a good store and an
//! export, and names the event or block that was changed in the sled files or the export.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;

async fn post_events(
    client: &reqwest::Client,
    server: &Server,
    events: &[Value],
) -> Vec<(u64, String)> {
    let body = Value::from(events.to_vec());
    acknowledged(client, &server.url("/v1/events/batch"), &body)
        .await
        .expect("the batch was refused")
}

/// Posts one event or a batch; the (index, leaf hash) of each event acknowledged, or None
/// when the request or its reply failed.
async fn acknowledged(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
) -> Option<Vec<(u64, String)>> {
    let r = client.post(url).json(body).send().await.ok()?;
    if r.status() != 200 {
        return None;
    }
    let v: Value = r.json().await.ok()?;
    let hashes: Vec<&Value> = match v.get("leaf_hashes") {
        Some(list) => list.as_array()?.iter().collect(),
        None => vec![v.get("leaf_hash")?],
    };
    let first = v.get("first_index").or_else(|| v.get("index"))?.as_u64()?;
    Some(
        hashes
            .into_iter()
            .enumerate()
            .map(|(i, h)| (first + i as u64, h.as_str().unwrap_or_default().to_string()))
            .collect(),
    )
}

/// The note verifier key the appliance publishes with every proof.
async fn verifier_key(client: &reqwest::Client, server: &Server) -> String {
    let (status, v) = get_json(client, &server.url("/v1/events/0")).await;
    assert_eq!(status, 200, "{v}");
    v["verifier_key"].as_str().unwrap().to_string()
}

fn chain_verify(app: &Appliance, source: &[&str], key: &str) -> (bool, String) {
    let mut args = vec!["chain", "verify"];
    args.extend_from_slice(source);
    let ca = app.ca_pem();
    args.extend(["--key", key, "--ca", ca.to_str().unwrap()]);
    let out = app.cli(&args);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn state(app: &Appliance) -> String {
    app.path().to_str().unwrap().to_string()
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_event_and_sealing_continues() {
    let app = Appliance::new("ecdsa-p256");
    let server = app.start();
    let rt = rt();
    let client = reqwest::Client::new();
    let acked: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
    let url = server.url("");
    // Eight clients: single events and batches of 20, until the server dies under them.
    rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..8u64 {
            let (client, acked, url) = (client.clone(), acked.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                for k in 0u64.. {
                    let n = c * 1_000_000 + k;
                    let (path, body) = if c % 2 == 0 {
                        ("/v1/events", event(n))
                    } else {
                        let batch: Vec<Value> = (0..20).map(|i| event(n * 100 + i)).collect();
                        ("/v1/events/batch", Value::from(batch))
                    };
                    // Until the server dies: then the request fails, or its reply is cut.
                    let Some(got) = acknowledged(&client, &format!("{url}{path}"), &body).await
                    else {
                        break;
                    };
                    acked.lock().unwrap().extend(got);
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut server = server;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "only {} events acknowledged before the kill",
        acked.len()
    );

    // Restart on the same state: every acknowledged event is there, with its index.
    let server = app.start();
    rt.block_on(async {
        let before = wait_sealed(&client, &server, *acked.keys().last().unwrap() + 1).await;
        for (index, leaf_hash) in &acked {
            let (status, v) = get_json(&client, &server.url(&format!("/v1/events/{index}"))).await;
            assert_eq!(status, 200, "acknowledged event {index} lost: {v}");
            assert_eq!(
                v["leaf_hash"].as_str().unwrap(),
                leaf_hash,
                "event {index} changed"
            );
        }
        // Sealing goes on from where it was: the next block links to the last one.
        let size = before["tree_size"].as_u64().unwrap();
        let more = post_events(&client, &server, &[event(1), event(2)]).await;
        assert_eq!(more[0].0, size, "indexes do not continue after the restart");
        let next = wait_sealed(&client, &server, size + 2).await;
        assert!(next["height"].as_u64() > before["height"].as_u64());
        let (_, after_before) = get_json(
            &client,
            &server.url(&format!(
                "/v1/blocks/{}",
                before["height"].as_u64().unwrap() + 1
            )),
        )
        .await;
        assert_eq!(after_before["prev_hash"], before["header_hash"]);
        assert_eq!(after_before["first_index"], before["tree_size"]);
    });
    let key = rt.block_on(verifier_key(&client, &server));
    server.stop();
    let (ok, text) = chain_verify(&app, &["--state", &state(&app)], &key);
    assert!(ok, "{text}");
    assert!(text.contains("OK"), "{text}");
}

/// Opens the stopped appliance's sled database directly, as someone with the disk would.
fn with_sled<T>(app: &Appliance, f: impl FnOnce(&sled::Tree) -> T) -> T {
    let db = sled::open(app.path().join("store")).unwrap();
    let tree = db.open_tree("log").unwrap();
    let out = f(&tree);
    db.flush().unwrap();
    out
}

fn key9(prefix: u8, n: u64) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(&n.to_be_bytes());
    k
}

#[test]
fn chain_verify_names_what_was_changed_in_the_store_and_in_an_export() {
    let app = Appliance::new("ecdsa-p256");
    let server = app.start();
    let rt = rt();
    let client = reqwest::Client::new();
    let key = rt.block_on(async {
        for chunk in 0..3u64 {
            let batch: Vec<Value> = (0..100).map(|i| event(chunk * 100 + i)).collect();
            post_events(&client, &server, &batch).await;
            wait_sealed(&client, &server, (chunk + 1) * 100).await;
        }
        verifier_key(&client, &server).await
    });
    server.stop();
    let st = state(&app);
    let (ok, text) = chain_verify(&app, &["--state", &st], &key);
    assert!(ok, "{text}");
    assert!(text.contains("300 re-hashed"), "{text}");

    // An export verifies on its own, and is a tlog-tiles layout.
    let export = app.path().join("export");
    let out = app.cli_ok(&[
        "chain",
        "export",
        "--state",
        &st,
        "--out",
        export.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("exported 300 sealed events"));
    for f in [
        "checkpoint",
        "tile/0/001.p/44",
        "tile/0/000",
        "tile/1/000.p/1",
        "tile/entries/000",
        "tile/entries/001.p/44",
        "blocks/0",
    ] {
        assert!(export.join(f).is_file(), "export has no {f}");
    }
    let ex = export.to_str().unwrap();
    let (ok, text) = chain_verify(&app, &["--dir", ex], &key);
    assert!(ok, "{text}");
    // ... and refuses a wrong key.
    let other = "someone+00000000+AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let (ok, _) = chain_verify(&app, &["--dir", ex], other);
    assert!(!ok);
    // A changed entry in the export is named.
    let bundle = export.join("tile/entries/000");
    let mut data = std::fs::read(&bundle).unwrap();
    // Event 17's subject, followed by the length of its details (not event 170's).
    let at = data
        .windows(12)
        .position(|w| w == b"dataset/17\0\0")
        .unwrap();
    data[at + 9] = b'8';
    std::fs::write(&bundle, &data).unwrap();
    let (ok, text) = chain_verify(&app, &["--dir", ex], &key);
    assert!(!ok);
    assert!(text.contains("event 17"), "{text}");

    // One changed event in the store is named: event 123 is in the first complete bundle
    // of 256, event 290 in the incomplete one; both in the log's events file. Event 290 is
    // in the last commit, whose checksum then fails: the store refuses to open, saying so.
    let entries = app.path().join("store").join("log").join("events");
    for (needle, named) in [
        (&b"dataset/123"[..], "event 123"),
        (&b"dataset/290"[..], "do not match their checksum"),
    ] {
        let original = std::fs::read(&entries).unwrap();
        let mut changed = original.clone();
        let pos = changed
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap();
        changed[pos + 8] = b'9';
        std::fs::write(&entries, &changed).unwrap();
        let (ok, text) = chain_verify(&app, &["--state", &st], &key);
        assert!(!ok);
        assert!(text.contains(named), "{text}");
        std::fs::write(&entries, &original).unwrap();
        let (ok, text) = chain_verify(&app, &["--state", &st], &key);
        assert!(ok, "restored: {text}");
    }

    // A changed header field, and a changed signature, are named by block height.
    let block1 = with_sled(&app, |t| t.get(key9(b'b', 1)).unwrap().unwrap().to_vec());
    let mut changed = block1.clone();
    changed[4 + 1 + 8 + 32 + 7] ^= 1; // the tree size's last byte
    with_sled(&app, |t| t.insert(key9(b'b', 1), changed).unwrap());
    let (ok, text) = chain_verify(&app, &["--state", &st], &key);
    assert!(!ok);
    assert!(text.contains("block 1"), "{text}");
    let mut changed = block1.clone();
    let sig_at = 4 + 137 + 4;
    changed[sig_at + 10] ^= 1;
    with_sled(&app, |t| t.insert(key9(b'b', 1), changed).unwrap());
    let (ok, text) = chain_verify(&app, &["--state", &st], &key);
    assert!(!ok);
    assert!(
        text.contains("block 1") && text.contains("signature"),
        "{text}"
    );
    with_sled(&app, |t| t.insert(key9(b'b', 1), block1).unwrap());

    // A changed token is named too.
    let block2 = with_sled(&app, |t| t.get(key9(b'b', 2)).unwrap().unwrap().to_vec());
    let mut changed = block2.clone();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    with_sled(&app, |t| t.insert(key9(b'b', 2), changed).unwrap());
    let (ok, text) = chain_verify(&app, &["--state", &st], &key);
    assert!(!ok);
    assert!(text.contains("block 2") && text.contains("token"), "{text}");
    with_sled(&app, |t| t.insert(key9(b'b', 2), block2).unwrap());
    let (ok, text) = chain_verify(&app, &["--state", &st], &key);
    assert!(ok, "restored: {text}");

    // While the server runs the store is locked, and chain verify says so.
    let server = app.start();
    let (ok, text) = chain_verify(&app, &["--state", &st], &key);
    assert!(!ok);
    assert!(text.contains("in use"), "{text}");
    server.stop();
}
