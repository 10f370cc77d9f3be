//! The archive: an appliance copies what it seals to a real S3-compatible server (moto's,
//! started by the test), create-only and checkpoint last; the bucket alone verifies; an
//! object already there with other bytes is an alarm and stays as it is; a restart
//! resumes where the bucket ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

/// The bucket every test makes on its own server (`archiving_appliance` writes to it).
const BUCKET: &str = "archive";

/// Events and tokens are sealed and archived; `verify chain --s3` audits the bucket alone;
/// the bucket's checkpoint is the appliance's; after a restart the archive resumes where
/// the bucket ends (the objects already there are not written again).
#[test]
fn sealed_blocks_go_to_the_bucket_which_alone_verifies_and_a_restart_resumes() {
    let rt = rt();
    let client = reqwest::Client::new();
    let s3 = s3_with_bucket(BUCKET);
    let app = archiving_appliance(&s3, "app1", "concurrency = 4");
    let key = chain_key(&app);
    let server = app.start_with_s3(&s3);
    rt.block_on(async {
        // 700 events: two complete bundles and a partial one, over several blocks.
        for first in [0, 300, 600] {
            post_batch(
                &client,
                &server,
                first,
                if first == 600 { 100 } else { 300 },
            )
            .await;
        }
        let block = wait_sealed(&client, &server, 700).await;
        let a = wait_archived(&client, &server, 700).await;
        assert_eq!(a["ok"], true, "{a}");
        assert_eq!(a["lag_events"], 0, "{a}");
        assert_eq!(a["alarm"], serde_json::Value::Null);
        // The bucket's checkpoint is the one the appliance published for that block.
        let cp = s3_get(&s3, &format!("/{BUCKET}/app1/checkpoint"))
            .await
            .unwrap();
        let cp = String::from_utf8(cp).unwrap();
        assert!(
            cp.starts_with(&format!(
                "test-appliance.example/chain\n{}\n",
                block["tree_size"]
            )),
            "{cp}"
        );
        // Complete bundles are byte for byte what the appliance serves.
        let served = client
            .get(server.url("/tile/entries/001"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let archived = s3_get(&s3, &format!("/{BUCKET}/app1/tile/entries/001"))
            .await
            .unwrap();
        assert_eq!(served.to_vec(), archived);
        let text = metrics_text(&client, &server).await;
        assert!(text.contains("auditstamp_archive_lag_events 0"), "{text}");
        assert!(
            text.contains("auditstamp_archive_conflicts_total 0"),
            "{text}"
        );
    });
    let said = verify_archive(&app, &s3, BUCKET, "app1", &key);
    assert!(said.contains("events      700 re-hashed"), "{said}");
    server.stop();

    // A restart resumes where the bucket ends, and goes on.
    let server = app.start_with_s3(&s3);
    assert!(
        server.wait_for_log("archive resumes where the bucket ends"),
        "{}",
        server.log()
    );
    rt.block_on(async {
        post_batch(&client, &server, 700, 100).await;
        wait_sealed(&client, &server, 800).await;
        wait_archived(&client, &server, 800).await;
        let text = metrics_text(&client, &server).await;
        // Nothing of the first 700 events was written again: at most the partial tile
        // objects of the new size, the blocks and the checkpoint.
        let written: u64 = metric(&text, "auditstamp_archive_objects_total").unwrap();
        assert!(
            written < 12,
            "{written} objects written after the restart:\n{text}"
        );
    });
    let said = verify_archive(&app, &s3, BUCKET, "app1", &key);
    assert!(said.contains("events      800 re-hashed"), "{said}");
    server.stop();
}

/// An object already in the bucket with other bytes than the appliance's is never
/// overwritten: the archive stops with an alarm that `/readyz` and `/metrics` name, and
/// tokens and events go on.
#[test]
fn an_object_there_with_other_bytes_is_an_alarm_and_is_never_overwritten() {
    let rt = rt();
    let client = reqwest::Client::new();
    let s3 = s3_with_bucket(BUCKET);
    let app = archiving_appliance(&s3, "app2", "");
    let server = app.start_with_s3(&s3);
    let planted = b"not this appliance's bundle".to_vec();
    rt.block_on(async {
        post_batch(&client, &server, 0, 10).await;
        wait_sealed(&client, &server, 10).await;
        wait_archived(&client, &server, 10).await;
        // Someone writes bundle 1 before the appliance does.
        let path = format!("/{BUCKET}/app2/tile/entries/001");
        let (status, _) = s3_request(&s3, "PUT", &path, &[], &planted).await;
        assert_eq!(status, 200);
        post_batch(&client, &server, 10, 600).await;
        wait_sealed(&client, &server, 610).await;
        let a = wait_alarm(&client, &server).await;
        let alarm = a["alarm"].as_str().unwrap();
        assert!(
            alarm.contains("s3://archive/app2/tile/entries/001"),
            "{alarm}"
        );
        assert!(alarm.contains("not overwritten"), "{alarm}");
        assert_eq!(a["ok"], false);
        // Still ready: tokens and events do not wait for the archive.
        let (status, ready) = get_json(&client, &server.url("/readyz")).await;
        assert_eq!(status, 200, "{ready}");
        assert_eq!(ready["ready"], true);
        assert_eq!(s3_get(&s3, &path).await.unwrap(), planted);
        // The checkpoint stayed at what was archived before the conflict.
        let cp = String::from_utf8(
            s3_get(&s3, &format!("/{BUCKET}/app2/checkpoint"))
                .await
                .unwrap(),
        )
        .unwrap();
        assert!(cp.starts_with("test-appliance.example/chain\n10\n"), "{cp}");
        let text = metrics_text(&client, &server).await;
        assert!(
            text.contains("auditstamp_archive_conflicts_total 1"),
            "{text}"
        );
        post_batch(&client, &server, 610, 5).await;
    });
    assert!(
        server.log().contains("archive stopped: needs an operator"),
        "{}",
        server.log()
    );
    server.stop();
}

/// The S3 server is killed in the middle of archiving and started again: tokens and events
/// are served throughout, the archive says it is failing, then catches up by itself; the
/// bucket's log verifies and nothing in it was overwritten.
#[test]
fn tokens_and_events_go_on_while_the_store_is_down_and_the_archive_catches_up() {
    let rt = rt();
    let client = reqwest::Client::new();
    let mut s3 = s3_with_bucket(BUCKET);
    let app = archiving_appliance(&s3, "app3", "timeout_ms = 2000\nmax_lag_events = 1000");
    let key = chain_key(&app);
    let server = app.start_with_s3(&s3);
    let data = app.path().join("doc.txt");
    std::fs::write(&data, "x").unwrap();
    let request = std::fs::read(ts_query(app.path(), &data, "-sha256", true, true, "q")).unwrap();
    rt.block_on(async {
        post_batch(&client, &server, 0, 2000).await;
        wait_sealed(&client, &server, 2000).await;
    });
    // Down while the next events are archived.
    s3.stop();
    rt.block_on(async {
        for round in 0..10u64 {
            post_batch(&client, &server, 2000 + round * 300, 300).await;
            let (status, _, body) = post(
                &client,
                &server.url("/tsa"),
                "application/timestamp-query",
                request.clone(),
            )
            .await;
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        }
        let block = wait_sealed(&client, &server, 5000).await;
        let size = block["tree_size"].as_u64().unwrap();
        let a = wait_failing(&client, &server).await;
        assert!(a["archived_size"].as_u64().unwrap() < size, "{a}");
        // Past max_lag_events: a warning, and still ready.
        let (status, ready) = get_json(&client, &server.url("/readyz")).await;
        assert_eq!(
            (status, &ready["ready"]),
            (200, &serde_json::json!(true)),
            "{ready}"
        );
        let warning = ready["archive"]["warning"].as_str().unwrap_or_default();
        assert!(warning.contains("archive.max_lag_events = 1000"), "{ready}");
    });
    s3.start_again().unwrap();
    rt.block_on(async {
        let block = wait_sealed(&client, &server, 5000).await;
        let a = wait_archived(&client, &server, block["tree_size"].as_u64().unwrap()).await;
        assert_eq!(a["alarm"], serde_json::Value::Null, "{a}");
        let text = metrics_text(&client, &server).await;
        assert!(
            text.contains("auditstamp_archive_conflicts_total 0"),
            "{text}"
        );
        assert!(
            !text.contains("auditstamp_archive_failures_total 0\n"),
            "{text}"
        );
    });
    server.stop();
    verify_archive(&app, &s3, BUCKET, "app3", &key);
}

/// The appliance is killed (-9) while objects are in flight, many times: each restart
/// resumes where the bucket ends, no object is missing or overwritten, and the bucket's log
/// verifies.
#[test]
fn an_appliance_killed_while_archiving_resumes_with_nothing_missing_or_overwritten() {
    let rt = rt();
    let client = reqwest::Client::new();
    let s3 = s3_with_bucket(BUCKET);
    let app = Appliance::new("ecdsa-p256");
    app.write_config_with(
        &[("seal_interval_ms = 200", "seal_interval_ms = 50")],
        &archive_section(&s3, BUCKET, "app4", "concurrency = 8"),
    );
    let key = chain_key(&app);
    let mut next = 0u64;
    for _ in 0..4 {
        let mut server = app.start_with_s3(&s3);
        rt.block_on(async {
            post_batch(&client, &server, next, 3000).await;
            next += 3000;
            // Killed as soon as this round's objects are on their way.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                let text = metrics_text(&client, &server).await;
                let written = metric(&text, "auditstamp_archive_objects_total").unwrap_or(0);
                if written > 0 {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "{text}");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        });
        server.child.kill().unwrap();
        server.child.wait().unwrap();
    }
    let server = app.start_with_s3(&s3);
    rt.block_on(async {
        let block = wait_sealed(&client, &server, next).await;
        let a = wait_archived(&client, &server, block["tree_size"].as_u64().unwrap()).await;
        assert_eq!(a["alarm"], serde_json::Value::Null, "{a}");
    });
    server.stop();
    let said = verify_archive(&app, &s3, BUCKET, "app4", &key);
    assert!(
        said.contains(&format!("events      {next} re-hashed")),
        "{said}"
    );
}

/// An appliance with a witness, its checkpoints archived (and, with
/// `witness_after_archive`, submitted only once archived).
fn witnessed(
    s3: &auditstamp::internal::TestS3,
    prefix: &str,
    after_archive: bool,
) -> (
    Appliance,
    auditstamp::chain::cosignature::Cosigner,
    Server,
    WitnessNode,
) {
    let app = Appliance::new("ecdsa-p256");
    let key = chain_key(&app);
    let w = WitnessNode::new(&format!(
        "[[log]]\norigin = \"test-appliance.example/chain\"\nkey = \"{key}\"\n"
    ));
    let witness_key = String::from_utf8(w.cli_ok(&["witness", "verifier-key"]).stdout).unwrap();
    let ws = w.start();
    app.write_config_with(
        &[(
            "seal_interval_ms = 200\n",
            &format!(
                "seal_interval_ms = 200\nwitness_timeout_ms = 5000\n[[chain.witness]]\nurl = \"http://{}\"\nkey = \"{}\"\n",
                ws.addr,
                witness_key.trim()
            ),
        )],
        &archive_section(
            s3,
            BUCKET,
            prefix,
            &format!("timeout_ms = 2000\nwitness_after_archive = {after_archive}"),
        ),
    );
    let witness = auditstamp::chain::cosignature::Cosigner::parse(witness_key.trim()).unwrap();
    (app, witness, ws, w)
}

/// The published checkpoint's size, and whether `witness` cosigned it.
async fn published(
    client: &reqwest::Client,
    server: &Server,
    witness: &auditstamp::chain::cosignature::Cosigner,
) -> (u64, bool) {
    let r = client.get(server.url("/checkpoint")).send().await.unwrap();
    if r.status() != 200 {
        return (0, false);
    }
    let text = r.text().await.unwrap();
    let note = auditstamp::chain::note::SignedNote::parse(&text).unwrap();
    let size = auditstamp::chain::note::Checkpoint::parse(&note.text)
        .unwrap()
        .size;
    (size, witness.verify(&note).is_ok())
}

/// Waits (60 s at most) for a published checkpoint of at least `size` cosigned by `witness`.
async fn wait_cosigned(
    client: &reqwest::Client,
    server: &Server,
    witness: &auditstamp::chain::cosignature::Cosigner,
    size: u64,
) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (s, cosigned) = published(client, server, witness).await;
        if s >= size && cosigned {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not cosigned at {size}: {}",
            server.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// With `witness_after_archive`, the witness cosigns only what the bucket holds: an
/// appliance whose disk is lost while the archive is behind is rebuilt from the bucket
/// alone (`chain restore`, same HSM keys), continues the same log, and the witness cosigns
/// its next checkpoint; serials continue past every archived one.
#[test]
fn a_lost_appliance_is_restored_from_the_bucket_and_the_witness_cosigns_its_next_checkpoint() {
    let rt = rt();
    let client = reqwest::Client::new();
    let mut s3 = s3_with_bucket(BUCKET);
    let (app, witness, _ws, _w) = witnessed(&s3, "app5", true);
    let key = chain_key(&app);
    let mut server = app.start_with_s3(&s3);
    let archived = rt.block_on(async {
        post_batch(&client, &server, 0, 600).await;
        wait_cosigned(&client, &server, &witness, 600).await;
        let archived = wait_archived(&client, &server, 600).await["archived_size"]
            .as_u64()
            .unwrap();
        // The archive goes down: the next checkpoints are sealed, but not witnessed.
        s3.stop();
        post_batch(&client, &server, 600, 300).await;
        wait_sealed(&client, &server, 900).await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let (size, cosigned) = published(&client, &server, &witness).await;
        assert!(size >= 900 && !cosigned, "cosigned before it was archived");
        archived
    });
    // The disk is lost.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    std::fs::remove_dir_all(app.store_dir()).unwrap();
    s3.start_again().unwrap();
    // Objects a round wrote before its checkpoint (as a crash between them leaves): the
    // restored log continues with other events, so they must not stay in its way.
    let beyond = format!("/{BUCKET}/app5/tile/entries/{:03}", archived / 256 + 1);
    rt.block_on(async {
        for path in [beyond.as_str(), &format!("/{BUCKET}/app5/blocks/999")] {
            assert_eq!(s3_request(&s3, "PUT", path, &[], b"lost").await.0, 200);
        }
    });

    let out = app
        .command_with_s3(&["chain", "restore"], &s3)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("set aside   2 objects"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains(&format!("restored    {archived} events")),
        "{said}"
    );
    assert!(
        said.contains(&format!("has cosigned {archived} events")),
        "{said}"
    );
    // The restored TSA's serials continue 2^40 past the archived ones.
    let counter: u64 = said
        .split("continues at counter ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(counter >= 1 << 40, "{said}");
    // A second restore refuses to touch the store it made.
    let again = app
        .command_with_s3(&["chain", "restore"], &s3)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let server = app.start_with_s3(&s3);
    rt.block_on(async {
        post_batch(&client, &server, 10_000, 20).await;
        let size = wait_cosigned(&client, &server, &witness, archived + 20).await;
        assert_eq!(size, archived + 20);
        // Past the bundle set aside, without a conflict.
        post_batch(&client, &server, 20_000, 600).await;
        let block = wait_sealed(&client, &server, archived + 620).await;
        let a = wait_archived(&client, &server, block["tree_size"].as_u64().unwrap()).await;
        assert_eq!(a["alarm"], serde_json::Value::Null, "{a}");
        assert!(s3_get(&s3, &beyond).await.unwrap() != b"lost");
        let (status, event) =
            get_json(&client, &server.url(&format!("/v1/events/{archived}"))).await;
        assert_eq!(status, 200, "{event}");
    });
    server.stop();
    verify_archive(&app, &s3, BUCKET, "app5", &key);
}

/// Without `witness_after_archive`, a witness can cosign more than the bucket holds: a
/// restore then names the missing events and refuses to start a fork, leaving no store.
#[test]
fn a_restore_refuses_when_the_witness_has_cosigned_more_than_the_bucket_holds() {
    let rt = rt();
    let client = reqwest::Client::new();
    let mut s3 = s3_with_bucket(BUCKET);
    let (app, witness, _ws, _w) = witnessed(&s3, "app6", false);
    let mut server = app.start_with_s3(&s3);
    let (archived, cosigned) = rt.block_on(async {
        post_batch(&client, &server, 0, 300).await;
        wait_cosigned(&client, &server, &witness, 300).await;
        let archived = wait_archived(&client, &server, 300).await["archived_size"]
            .as_u64()
            .unwrap();
        s3.stop();
        post_batch(&client, &server, 300, 300).await;
        let cosigned = wait_cosigned(&client, &server, &witness, 600).await;
        (archived, cosigned)
    });
    assert!(cosigned > archived);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    std::fs::remove_dir_all(app.store_dir()).unwrap();
    s3.start_again().unwrap();

    let out = app
        .command_with_s3(&["chain", "restore"], &s3)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.contains(&format!("has cosigned {cosigned} events"))
            && err.contains(&format!("events {archived}..{cosigned} are missing")),
        "{err}"
    );
    assert!(err.contains("fork"), "{err}");
    assert!(!app.store_dir().exists());
    assert!(!app.path().join("store.restoring").exists());
}

/// With `retain_events`, old bundles are pruned from the local disk once archived: they are
/// still served (read back from the bucket and checked against the local tree), a whole-log
/// audit through the appliance and one of the bucket both pass, and while the bucket cannot
/// answer the appliance says so with a 503 instead of guessing.
#[test]
fn old_bundles_are_pruned_once_archived_and_still_served_from_the_bucket() {
    let rt = rt();
    let client = reqwest::Client::new();
    let mut s3 = s3_with_bucket(BUCKET);
    let app = archiving_appliance(&s3, "app7", "timeout_ms = 2000\nretain_events = 300");
    let key = chain_key(&app);
    let server = app.start_with_s3(&s3);
    rt.block_on(async {
        post_batch(&client, &server, 0, 2100).await;
        wait_sealed(&client, &server, 2100).await;
        wait_archived(&client, &server, 2100).await;
        // Bundles 0..7 (events below 1792 = 2100 - 300, rounded down to a bundle) go.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let text = metrics_text(&client, &server).await;
            if text.contains("auditstamp_archive_pruned_events 1792") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{text}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let served = client
            .get(server.url("/tile/entries/000"))
            .send()
            .await
            .unwrap();
        assert_eq!(served.status(), 200);
        let served = served.bytes().await.unwrap().to_vec();
        assert_eq!(
            Some(served),
            s3_get(&s3, &format!("/{BUCKET}/app7/tile/entries/000")).await
        );
        let (status, event) = get_json(&client, &server.url("/v1/events/5")).await;
        assert_eq!(status, 200, "{event}");
        assert_eq!(event["event"]["index"], 5, "{event}");
    });
    let out = app.cli(&["verify", "chain", "--url", &server.url(""), "--key", &key]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("events      2100 re-hashed"), "{said}");
    // The bucket down: pruned events cannot be served now, and the answer says so.
    s3.stop();
    rt.block_on(async {
        let (status, body) = get_json(&client, &server.url("/v1/events/5")).await;
        assert_eq!(status, 503, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("archive"),
            "{body}"
        );
        // Recent events are still served from the local disk.
        let (status, body) = get_json(&client, &server.url("/v1/events/2050")).await;
        assert_eq!(status, 200, "{body}");
    });
    s3.start_again().unwrap();
    server.stop();
    // A stopped appliance's store no longer holds the pruned events: the audit says where
    // they are.
    let out = app.cli(&[
        "verify",
        "chain",
        "--state",
        app.path().to_str().unwrap(),
        "--key",
        &key,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("pruned") && err.contains("--s3"), "{err}");
    verify_archive(&app, &s3, BUCKET, "app7", &key);
    // The bucket loses its objects: what was pruned here exists nowhere else, and the
    // archive says so instead of starting again from the first event.
    let (status, _) = rt.block_on(s3_request(
        &s3,
        "DELETE",
        &format!("/{BUCKET}/app7/checkpoint"),
        &[],
        b"",
    ));
    assert_eq!(status, 204);
    let server = app.start_with_s3(&s3);
    rt.block_on(async {
        let a = wait_alarm(&client, &server).await;
        assert!(
            a["alarm"]
                .as_str()
                .unwrap()
                .contains("the bucket lost objects"),
            "{a}"
        );
    });
    server.stop();
}

/// A second appliance given the same prefix finds a checkpoint that is not of its log: the
/// archive stops with an alarm at once and writes nothing over the first one's objects.
#[test]
fn a_prefix_that_holds_another_log_is_an_alarm_at_start() {
    let rt = rt();
    let client = reqwest::Client::new();
    let s3 = s3_with_bucket(BUCKET);
    let first = archiving_appliance(&s3, "shared", "");
    let server = first.start_with_s3(&s3);
    rt.block_on(async {
        post_batch(&client, &server, 0, 300).await;
        wait_sealed(&client, &server, 300).await;
        wait_archived(&client, &server, 300).await;
    });
    server.stop();
    let before = rt.block_on(s3_get(&s3, &format!("/{BUCKET}/shared/checkpoint")));

    let second = archiving_appliance(&s3, "shared", "");
    let server = second.start_with_s3(&s3);
    rt.block_on(async {
        post_batch(&client, &server, 0, 10).await;
        wait_sealed(&client, &server, 10).await;
        let a = wait_alarm(&client, &server).await;
        let alarm = a["alarm"].as_str().unwrap();
        assert!(
            alarm.contains("covers 300 events, more than this appliance has sealed"),
            "{alarm}"
        );
        assert_eq!(
            s3_get(&s3, &format!("/{BUCKET}/shared/checkpoint")).await,
            before
        );
    });
    server.stop();
}

/// A store that hangs (stopped with SIGSTOP: connections open, nothing answered) delays no
/// token and no event; the archive reports the failure, and catches up once it answers.
#[test]
fn a_hung_store_delays_no_token_and_no_event() {
    let rt = rt();
    let client = reqwest::Client::new();
    let s3 = s3_with_bucket(BUCKET);
    let app = archiving_appliance(&s3, "app8", "timeout_ms = 10000");
    let server = app.start_with_s3(&s3);
    let data = app.path().join("doc.txt");
    std::fs::write(&data, "x").unwrap();
    let request = std::fs::read(ts_query(app.path(), &data, "-sha256", true, true, "q")).unwrap();
    rt.block_on(async {
        post_batch(&client, &server, 0, 10).await;
        wait_archived(&client, &server, 10).await;
    });
    s3.pause().unwrap();
    rt.block_on(async {
        for round in 0..20u64 {
            let started = std::time::Instant::now();
            post_batch(&client, &server, 10 + round * 50, 50).await;
            let (status, _, _) = post(
                &client,
                &server.url("/tsa"),
                "application/timestamp-query",
                request.clone(),
            )
            .await;
            assert_eq!(status, 200);
            // Far below the store's timeout (10 s): nothing waited for it.
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "{:?}",
                started.elapsed()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        wait_failing(&client, &server).await;
    });
    s3.resume().unwrap();
    rt.block_on(async {
        let block = wait_sealed(&client, &server, 1030).await;
        let a = wait_archived(&client, &server, block["tree_size"].as_u64().unwrap()).await;
        assert_eq!(a["alarm"], serde_json::Value::Null, "{a}");
    });
    server.stop();
}

/// A directory archive (`file://`, e.g. a mounted NAS) works the same way, and verifies
/// alone.
#[test]
fn a_directory_archive_verifies_alone() {
    let rt = rt();
    let client = reqwest::Client::new();
    let app = Appliance::new("ecdsa-p256");
    let dir = app.path().join("nas/archive");
    app.write_config_with(
        &[],
        &format!("[archive]\nurl = \"file://{}\"\n", dir.display()),
    );
    let key = chain_key(&app);
    let server = app.start();
    rt.block_on(async {
        post_batch(&client, &server, 0, 600).await;
        wait_sealed(&client, &server, 600).await;
        wait_archived(&client, &server, 600).await;
        post_batch(&client, &server, 600, 10).await;
        wait_sealed(&client, &server, 610).await;
        wait_archived(&client, &server, 610).await;
    });
    server.stop();
    assert!(dir.join("tile/entries/001").is_file());
    let url = format!("file://{}", dir.display());
    let out = app.cli(&["verify", "chain", "--s3", &url, "--key", &key]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("events      610 re-hashed"), "{said}");
}
