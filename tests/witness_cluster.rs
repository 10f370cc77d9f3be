//! The witness tier behind a real HAProxy running the shipped configuration
//! (deploy/haproxy/witness.cfg): two `witness serve` processes on one throw-away PostgreSQL,
//! one cosigner key (the same SoftHSM token), and two appliances, each its own origin and
//! chain key, registered as two logs and submitting through the balancer's frontend. Each
//! appliance's published checkpoint is cosigned by the witness key, the witness's state
//! holds the two logs apart (each at its own appliance's size and checkpoint, on both
//! servers), and after kill -9 of one witness server the appliances' later checkpoints are
//! still cosigned through the balancer, by the other one, without a failed submission.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use auditstamp::chain::cosignature::Cosigner;
use auditstamp::chain::note::{Checkpoint, SignedNote};
use common::*;
use serde_json::{json, Value};

fn origin(n: usize) -> String {
    format!("node-{n}.witness-cluster.test/chain")
}

/// Appliance `n`'s configuration: its own origin, and with `witness` (its URL and verifier
/// key) a `[[chain.witness]]` table.
fn write_appliance_config(a: &Appliance, n: usize, witness: Option<(&str, &str)>) {
    let chain = match witness {
        None => "seal_interval_ms = 200\n".to_owned(),
        Some((url, key)) => format!(
            "seal_interval_ms = 200\nwitness_timeout_ms = 5000\n\
             [[chain.witness]]\nurl = \"{url}\"\nkey = \"{key}\"\n"
        ),
    };
    a.write_config(&[
        ("id = 42", &format!("id = {n}")),
        ("name = \"test-appliance\"", &format!("name = \"node-{n}\"")),
        (
            "origin = \"test-appliance.example/chain\"",
            &format!("origin = \"{}\"", origin(n)),
        ),
        ("seal_interval_ms = 200\n", &chain),
    ]);
}

fn post_events(rt: &tokio::runtime::Runtime, server: &Server, n: u64) {
    rt.block_on(post_batch(&reqwest::Client::new(), server, 0, n));
}

fn size_of(note: &SignedNote) -> u64 {
    Checkpoint::parse(&note.text).unwrap().size
}

/// Waits for appliance `server`'s published checkpoint of exactly `size` entries cosigned
/// by `witness`.
fn wait_cosigned(
    rt: &tokio::runtime::Runtime,
    server: &Server,
    witness: &Cosigner,
    size: u64,
) -> SignedNote {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = rt
            .block_on(reqwest::get(server.url("/checkpoint")))
            .unwrap();
        if r.status() == 200 {
            let note = SignedNote::parse(&rt.block_on(r.text()).unwrap()).unwrap();
            if size_of(&note) == size && witness.verify(&note).is_ok() {
                return note;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of {size} cosigned through the balancer: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET url` as JSON, if it answers 200.
fn get_json(rt: &tokio::runtime::Runtime, url: &str) -> Option<Value> {
    rt.block_on(async {
        let r = reqwest::get(url).await.ok()?;
        if r.status() != 200 {
            return None;
        }
        r.json().await.ok()
    })
}

/// Waits until the witness state at `base` (a server or the balancer) records appliance
/// `n` at `note`: its size and its checkpoint text.
fn wait_witness_holds(rt: &tokio::runtime::Runtime, base: &str, n: usize, note: &SignedNote) {
    let url = format!("{base}/status/{}", origin(n));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = get_json(rt, &url);
        if let Some(s) = &status {
            if s["size"].as_u64() == Some(size_of(note))
                && s["checkpoint"]
                    .as_str()
                    .is_some_and(|c| c.starts_with(&note.text))
            {
                assert_eq!(s["origin"], origin(n), "{s}");
                assert_eq!(s["evidence"], json!([]), "{s}");
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{url} does not hold the checkpoint of {}: {status:?}",
            size_of(note)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many submissions `server` logged as failed.
fn failures(server: &Server) -> usize {
    server.log().matches("witness did not cosign").count()
}

#[test]
fn a_witness_tier_behind_haproxy_cosigns_each_appliance_as_its_own_log_and_survives_a_kill_9() {
    haproxy_bin();
    let rt = rt();
    let backend = Backend::postgres();

    // Two appliances, each with its own origin and chain key.
    let apps: Vec<Appliance> = (1..=2)
        .map(|n| {
            let a = Appliance::new("ecdsa-p256");
            write_appliance_config(&a, n, None);
            a
        })
        .collect();
    let keys: Vec<String> = apps.iter().map(chain_key).collect();
    assert_ne!(keys[0], keys[1]);

    // The witness tier: one configuration registering both as their own [[log]], one
    // token (one cosigner key), one database, two servers.
    let logs: String = (1..=2)
        .map(|n| {
            format!(
                "[[log]]\norigin = \"{}\"\nkey = \"{}\"\n",
                origin(n),
                keys[n - 1]
            )
        })
        .collect();
    let w = WitnessNode::on(&backend, &logs);
    let witness_key = String::from_utf8(w.cli_ok(&["witness", "verifier-key"]).stdout)
        .unwrap()
        .trim()
        .to_owned();
    let witness = Cosigner::parse(&witness_key).unwrap();
    let mut servers = [Some(w.start()), Some(w.start())];
    let addrs = [
        servers[0].as_ref().unwrap().addr,
        servers[1].as_ref().unwrap().addr,
    ];
    let direct: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();

    let env = [
        ("AUDITSTAMP_WITNESS1".to_owned(), addrs[0].to_string()),
        ("AUDITSTAMP_WITNESS2".to_owned(), addrs[1].to_string()),
    ];
    let mut haproxy = Haproxy::start(
        "witness.cfg",
        "AUDITSTAMP_WITNESS_LISTEN",
        "AUDITSTAMP_WITNESS_STATS",
        &env,
    );
    for n in 1..=2 {
        rt.block_on(haproxy.wait_state("witness", &format!("witness{n}"), "UP"));
    }

    // Each appliance submits to the balancer's frontend.
    let nodes: Vec<Server> = apps
        .iter()
        .enumerate()
        .map(|(i, a)| {
            write_appliance_config(a, i + 1, Some((&haproxy.url(""), &witness_key)));
            a.start()
        })
        .collect();

    // Different sizes, so that a log mixed up with the other one would show.
    let mut sizes = [6u64, 11u64];
    for (node, size) in nodes.iter().zip(sizes) {
        post_events(&rt, node, size);
    }
    for n in 1..=2 {
        let note = wait_cosigned(&rt, &nodes[n - 1], &witness, sizes[n - 1]);
        assert!(
            note.signatures.iter().any(|s| s.name == origin(n)),
            "{}",
            note.text
        );
        assert!(note.text.starts_with(&format!("{}\n", origin(n))));
        // The witness keeps it as that appliance's log: through the balancer and on each
        // server (the database's state, whichever server cosigned it).
        wait_witness_holds(&rt, &haproxy.url(""), n, &note);
        for base in &direct {
            wait_witness_holds(&rt, base, n, &note);
        }
    }
    // Two logs, registered and recorded apart.
    let status = get_json(&rt, &haproxy.url("/status")).unwrap();
    let recorded: Vec<(String, u64)> = status["appliances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["origin"].as_str().unwrap().to_owned(),
                a["size"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut want = vec![(origin(1), sizes[0]), (origin(2), sizes[1])];
    let mut got = recorded.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{status}");
    assert_eq!(status["witness"]["verifier_key"], witness_key, "{status}");

    // kill -9 witness server 1, the appliances idle (nothing in flight). Their next
    // checkpoints go out at once, before HAProxy's checks see it: one sent to the dead
    // server is refused there and sent again to the other (retry-on conn-failure), so no
    // submission fails.
    let failed_before: Vec<usize> = nodes.iter().map(failures).collect();
    let mut dead = servers[0].take().unwrap();
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    for (i, node) in nodes.iter().enumerate() {
        post_events(&rt, node, 3 + i as u64);
        sizes[i] += 3 + i as u64;
    }
    for n in 1..=2 {
        let note = wait_cosigned(&rt, &nodes[n - 1], &witness, sizes[n - 1]);
        wait_witness_holds(&rt, &direct[1], n, &note);
    }
    rt.block_on(haproxy.wait_state("witness", "witness1", "DOWN"));
    assert_eq!(
        rt.block_on(haproxy.state("witness", "witness2")).as_deref(),
        Some("UP")
    );
    // And again, with the pool down to one server.
    for (i, node) in nodes.iter().enumerate() {
        post_events(&rt, node, 2);
        sizes[i] += 2;
    }
    for n in 1..=2 {
        let note = wait_cosigned(&rt, &nodes[n - 1], &witness, sizes[n - 1]);
        wait_witness_holds(&rt, &haproxy.url(""), n, &note);
    }
    let failed_after: Vec<usize> = nodes.iter().map(failures).collect();
    assert_eq!(
        failed_after,
        failed_before,
        "a submission failed across the kill:\n{}\n{}\nHAProxy:\n{}",
        nodes[0].log(),
        nodes[1].log(),
        haproxy.log()
    );
    drop(dead);

    for node in nodes {
        node.stop();
    }
    if let Some(s) = servers[1].take() {
        s.stop();
    }
}
