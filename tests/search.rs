//! The event search, end to end on a real appliance (SoftHSM): `GET /v1/events?...` with
//! each filter, pages and cursors in both orders, CSV, links to proofs, bad parameters,
//! an index lost or rebuilt, kill -9 while it follows a burst of appends, and mutual TLS
//! scoping an agency to its own events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Which posted events a search should find.
type Keep = Box<dyn Fn(&Value) -> bool>;

const ACTIONS: [&str; 4] = ["access", "export", "data_operation", "custom:review"];

/// Event `n`: 3 agencies, 11 auditors, 4 actions, 50 subjects, spread over March.
fn ev(n: u64) -> Value {
    json!({
        "agency": format!("agency-{}", 6 + n % 3),
        "auditor": format!("auditor-{}", n * 7 % 11),
        "action": ACTIONS[(n % 4) as usize],
        "subject": format!("case/2026/{:04}", n % 50),
        "data_sha256": format!("{:064x}", n + 1),
        "occurred_at": format!("2026-03-{:02}T{:02}:00:00Z", n % 28 + 1, n % 24),
        "details": {"n": n, "note": "a, \"quoted\"\nline"},
    })
}

/// Posts events `first..first+count` in one batch; returns the index of the first.
async fn post(client: &reqwest::Client, server: &Server, first: u64, count: u64) -> u64 {
    let v = post_events(client, &server.url(""), (first..first + count).map(ev)).await;
    v["first_index"].as_u64().unwrap()
}

/// Every page of a search (`query` without `cursor`): the indexes, in order.
async fn all_pages(client: &reqwest::Client, server: &Server, query: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    for _ in 0..1000 {
        let url = server.url(&format!("/v1/events?{query}{cursor}"));
        let (status, v) = get_json(client, &url).await;
        assert_eq!(status, 200, "{url}: {v}");
        for e in v["events"].as_array().unwrap() {
            let i = e["index"].as_u64().unwrap();
            assert_eq!(e["proof"], format!("/v1/events/{i}"));
            assert_eq!(e["leaf_hash"].as_str().unwrap().len(), 64);
            out.push(i);
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
    panic!("{query}: the pages never end");
}

/// The indexes of events `0..count` (posted from index `base`) that `keep` keeps, newest
/// first.
fn expected(base: u64, count: u64, keep: impl Fn(&Value) -> bool) -> Vec<u64> {
    (0..count)
        .rev()
        .filter(|&n| keep(&ev(n)))
        .map(|n| base + n)
        .collect()
}

fn field(v: &Value, f: &str) -> String {
    v[f].as_str().unwrap().to_owned()
}

#[test]
fn every_filter_pages_through_exactly_the_matching_events_and_links_their_proofs() {
    const COUNT: u64 = 1_500;
    let app = Appliance::new("ecdsa-p256");
    let server = app.start();
    let rt = rt();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut base = None;
        for first in (0..COUNT).step_by(500) {
            let at = post(&client, &server, first, 500).await;
            base.get_or_insert(at);
        }
        let base = base.unwrap();
        // Searches answer at once, indexed or not: what the index has not reached yet is
        // read from the log.
        let cases: Vec<(&str, Keep)> = vec![
            (
                "agency=agency-7",
                Box::new(|v| field(v, "agency") == "agency-7"),
            ),
            (
                "auditor=auditor-3",
                Box::new(|v| field(v, "auditor") == "auditor-3"),
            ),
            (
                "action=custom:review",
                Box::new(|v| field(v, "action") == "custom:review"),
            ),
            (
                "subject=case/2026/0042",
                Box::new(|v| field(v, "subject") == "case/2026/0042"),
            ),
            (
                "subject_prefix=case/2026/001",
                Box::new(|v| field(v, "subject").starts_with("case/2026/001")),
            ),
            (
                "agency=agency-6&action=export&from=2026-03-10T00:00:00Z&to=2026-03-20T00:00:00Z",
                Box::new(|v| {
                    let t = field(v, "occurred_at");
                    field(v, "agency") == "agency-6"
                        && field(v, "action") == "export"
                        && t.as_str() >= "2026-03-10T00:00:00Z"
                        && t.as_str() < "2026-03-20T00:00:00Z"
                }),
            ),
            (
                "from=2026-03-28T00:00:00Z",
                Box::new(|v| field(v, "occurred_at").as_str() >= "2026-03-28T00:00:00Z"),
            ),
            ("agency=agency-9", Box::new(|_| false)),
            ("agency=&auditor=&subject=", Box::new(|_| true)),
        ];
        for round in 0..2 {
            for (q, keep) in &cases {
                let want = expected(base, COUNT, keep);
                for limit in [7, 100, 1000] {
                    let got = all_pages(&client, &server, &format!("{q}&limit={limit}")).await;
                    assert_eq!(got, want, "round {round}: {q} limit {limit}");
                    let mut oldest =
                        all_pages(&client, &server, &format!("{q}&limit={limit}&order=oldest"))
                            .await;
                    oldest.reverse();
                    assert_eq!(
                        oldest, want,
                        "round {round}: {q} oldest first, limit {limit}"
                    );
                }
            }
            // The second round runs once the index holds everything.
            wait_indexed(&client, &server, base + COUNT).await;
        }

        // Received time: everything was received in the last minute.
        let now = time::OffsetDateTime::now_utc();
        let fmt = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        };
        let recent = format!("received_from={}", fmt(now - time::Duration::minutes(5)));
        assert_eq!(
            all_pages(&client, &server, &recent).await.len() as u64,
            COUNT
        );
        let future = format!("received_from={}", fmt(now + time::Duration::minutes(5)));
        assert!(all_pages(&client, &server, &future).await.is_empty());

        // Each result links to its proof, which verifies as any event's does.
        wait_sealed(&client, &server, base + COUNT).await;
        let (_, page) =
            get_json(&client, &server.url("/v1/events?auditor=auditor-5&limit=3")).await;
        for e in page["events"].as_array().unwrap() {
            let (status, proof) =
                get_json(&client, &server.url(e["proof"].as_str().unwrap())).await;
            assert_eq!(status, 200, "{proof}");
            assert_eq!(proof["leaf_hash"], e["leaf_hash"]);
            assert_eq!(proof["event"]["subject"], e["subject"]);
            assert_eq!(proof["event"]["details"], e["details"]);
        }

        // CSV: the whole result in one body, by format=csv or Accept.
        let want = expected(base, COUNT, |v| field(v, "agency") == "agency-8");
        for (url, accept) in [
            ("/v1/events?agency=agency-8&format=csv&limit=5", "*/*"),
            ("/v1/events?agency=agency-8", "text/csv"),
        ] {
            let r = client
                .get(server.url(url))
                .header("accept", accept)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert!(r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv"));
            let text = r.text().await.unwrap();
            let mut rd = csv::Reader::from_reader(text.as_bytes());
            let headers = rd.headers().unwrap().clone();
            assert_eq!(&headers[0], "index");
            assert_eq!(&headers[10], "details");
            let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
            let got: Vec<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
            assert_eq!(got, want, "{url}");
            let details: Value = serde_json::from_str(&rows[0][10]).unwrap();
            assert_eq!(details["note"], "a, \"quoted\"\nline");
        }

        // Bad parameters are 400s naming the problem, never a wider answer.
        for (q, needle) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=ten", "limit"),
            ("order=sideways", "order"),
            ("from=yesterday", "from"),
            ("received_to=2026-13-01T00:00:00Z", "received_to"),
            ("action=delete_everything", "action"),
            ("agnecy=agency-7", "agnecy"),
            ("cursor=not-a-cursor", "cursor"),
            ("format=xml", "format"),
        ] {
            let (status, v) = get_json(&client, &server.url(&format!("/v1/events?{q}"))).await;
            assert_eq!(status, 400, "{q}: {v}");
            assert!(v["error"].as_str().unwrap().contains(needle), "{q}: {v}");
        }
        // A cursor is bound to its filters.
        let (_, page) = get_json(&client, &server.url("/v1/events?agency=agency-7&limit=2")).await;
        let c = page["next_cursor"].as_str().unwrap();
        let (status, v) = get_json(
            &client,
            &server.url(&format!("/v1/events?agency=agency-8&cursor={c}")),
        )
        .await;
        assert_eq!(status, 400, "{v}");
        assert!(
            v["error"].as_str().unwrap().contains("other filters"),
            "{v}"
        );

        let metrics = metrics_text(&client, &server).await;
        assert_eq!(
            metric_value(&metrics, "auditstamp_search_index_events"),
            Some(base + COUNT)
        );
        assert_eq!(
            metric_value(&metrics, "auditstamp_search_index_mismatches_total"),
            Some(0)
        );
    });
    server.stop();

    // The index is derived data: deleted, it is built again at the next start, and
    // `chain verify --reindex` rebuilds it on a stopped appliance.
    std::fs::remove_dir_all(app.store_dir().join("search")).unwrap();
    let server = app.start();
    rt.block_on(async {
        let client = reqwest::Client::new();
        wait_indexed(&client, &server, COUNT).await;
        let got = all_pages(&client, &server, "auditor=auditor-4&limit=50").await;
        assert_eq!(
            got,
            expected(0, COUNT, |v| field(v, "auditor") == "auditor-4")
        );
    });
    server.stop();
    let out = app.cli_ok(&[
        "chain",
        "verify",
        "--state",
        app.path().to_str().unwrap(),
        "--reindex",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("search index rebuilt: {COUNT} events")),
        "{text}"
    );
}

/// Waits (60 s at most) until `/readyz` says the index holds `size` events.
async fn wait_indexed(client: &reqwest::Client, server: &Server, size: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = get_json(client, &server.url("/readyz")).await;
        if v["search_index"]["indexed"].as_u64() >= Some(size) {
            assert_eq!(v["search_index"]["lag_events"], 0, "{v}");
            return;
        }
        assert!(Instant::now() < deadline, "not indexed: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn under_mutual_tls_an_agency_finds_only_its_own_events_unless_it_audits_all() {
    let app = Appliance::new("ecdsa-p256");
    let pki = Pki::new(&app.path().join("tls"));
    app.write_config(&[
        ("plain_http = true\n", ""),
        (
            "\n[chain]\n",
            &format!(
                "\n[http.tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\nrequire_client_cert = [\"read\"]\nauditors_of_all = [\"agency-8\"]\n\n[chain]\n",
                pki.path("server.pem"),
                pki.path("server.key"),
                pki.path("agencies-ca.pem"),
            ),
        ),
    ]);
    let server = app.start();
    assert!(server.wait_for_log("TSA at https://"), "{}", server.log());
    tls_provider();
    let client_for = |name: Option<&str>| {
        let tls = auditstamp::client::ClientTls {
            trust: auditstamp::client::Trust::Only(vec![pki.dir.join("server-ca.pem")]),
            identity: name.map(|n| {
                (
                    pki.dir.join(format!("{n}.pem")),
                    pki.dir.join(format!("{n}.key")),
                )
            }),
        };
        auditstamp::client::builder(&tls, Duration::from_secs(10))
            .unwrap()
            .build()
            .unwrap()
    };
    let url = |path: &str| format!("https://localhost:{}{path}", server.addr.port());
    let rt = rt();
    rt.block_on(async {
        let agency7 = client_for(Some("agency-7"));
        let agency8 = client_for(Some("agency-8"));
        // Each agency posts its own events (its certificate must name their agency).
        for (client, agency, count) in [(&agency7, "agency-7", 10), (&agency8, "agency-8", 20)] {
            let events = (0..count).map(|i| {
                let mut e = ev(i);
                e["agency"] = json!(agency);
                e
            });
            post_events(client, &url(""), events).await;
        }
        let agencies = |v: &Value| -> Vec<String> {
            v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| field(e, "agency"))
                .collect()
        };
        // agency-7 sees its own 10 events only, with or without naming itself.
        for q in [
            "/v1/events",
            "/v1/events?agency=agency-7",
            "/v1/events?agency=",
        ] {
            let (status, v) = get_json(&agency7, &url(q)).await;
            assert_eq!(status, 200, "{q}: {v}");
            assert_eq!(agencies(&v), vec!["agency-7"; 10], "{q}");
        }
        let (status, v) = get_json(&agency7, &url("/v1/events?agency=agency-8")).await;
        assert_eq!(status, 403, "{v}");
        assert!(v["error"].as_str().unwrap().contains("agency-7"), "{v}");
        // Nor can it read another agency's event by its index.
        let (_, page) = get_json(&agency8, &url("/v1/events?agency=agency-8&limit=1")).await;
        let other = page["events"][0]["index"].as_u64().unwrap();
        let (status, _) = get_json(&agency7, &url(&format!("/v1/events/{other}"))).await;
        assert_eq!(status, 404);
        // agency-8 is listed as an auditor of all agencies: it sees all 30.
        let (status, v) = get_json(&agency8, &url("/v1/events")).await;
        assert_eq!(status, 200);
        assert_eq!(agencies(&v).len(), 30);
        // Without a certificate, the read group refuses.
        let (status, _) = get_json(&client_for(None), &url("/v1/events")).await;
        assert_eq!(status, 403);
    });
    server.stop();
}

/// kill -9 while the index follows a burst of appends (three times, so that the kills land
/// in different places: a batch, a segment being written, the manifest): after each
/// restart the index catches up and answers exactly what the log holds, in both orders,
/// with no mismatch. 75,000 events cross several segments of 16,384.
#[test]
fn kill_9_while_indexing_leaves_an_index_that_answers_exactly_the_log() {
    const PER_ROUND: u64 = 25_000;
    let app = Appliance::new("ecdsa-p256");
    let rt = rt();
    let client = reqwest::Client::new();
    let mut base = None;
    for round in 0..3u64 {
        let mut server = app.start();
        rt.block_on(async {
            for first in (round * PER_ROUND..(round + 1) * PER_ROUND).step_by(2_500) {
                let at = post(&client, &server, first, 2_500).await;
                base.get_or_insert(at);
            }
        });
        // Every event is acknowledged (durable); the index is still catching up.
        server.child.kill().unwrap();
        server.child.wait().unwrap();
    }
    let base = base.unwrap();
    let count = 3 * PER_ROUND;
    let server = app.start();
    rt.block_on(async {
        wait_indexed(&client, &server, base + count).await;
        let cases: Vec<(&str, Keep)> = vec![
            (
                "subject=case/2026/0007",
                Box::new(|v| field(v, "subject") == "case/2026/0007"),
            ),
            (
                "auditor=auditor-3&agency=agency-7",
                Box::new(|v| {
                    field(v, "auditor") == "auditor-3" && field(v, "agency") == "agency-7"
                }),
            ),
            (
                "action=export&subject_prefix=case/2026/001",
                Box::new(|v| {
                    field(v, "action") == "export"
                        && field(v, "subject").starts_with("case/2026/001")
                }),
            ),
        ];
        for (query, keep) in &cases {
            let want = expected(base, count, keep);
            assert!(want.len() > 1_000, "{query}: {} events", want.len());
            let got = all_pages(&client, &server, &format!("{query}&limit=1000")).await;
            assert_eq!(got, want, "{query}");
            let mut oldest = all_pages(
                &client,
                &server,
                &format!("{query}&limit=1000&order=oldest"),
            )
            .await;
            oldest.reverse();
            assert_eq!(oldest, want, "{query}, oldest first");
        }
        let metrics = metrics_text(&client, &server).await;
        assert!(
            metrics.contains("auditstamp_search_index_mismatches_total 0"),
            "{metrics}"
        );
    });
}
