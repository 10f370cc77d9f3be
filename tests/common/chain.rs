//! Helpers of the event-chain tests: an event, a JSON GET, waiting for a seal.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

use super::Server;

/// A good event, different for each `n`.
pub fn event(n: u64) -> Value {
    json!({
        "agency": "agency-7",
        "auditor": format!("auditor-{}", n % 5),
        "action": "data_operation",
        "subject": format!("dataset/{n}"),
        "data_sha256": format!("{:064x}", n),
        "occurred_at": "2026-12-01T10:00:00Z",
        "details": {"n": n},
    })
}

/// POSTs `events` as one NDJSON batch to `base` + `/v1/events/batch` (200 asserted); the
/// answer (`first_index`, `count`, `leaf_hashes`).
pub async fn post_events(
    client: &reqwest::Client,
    base: &str,
    events: impl IntoIterator<Item = Value>,
) -> Value {
    let body: String = events.into_iter().map(|e| format!("{e}\n")).collect();
    let r = client
        .post(format!("{base}/v1/events/batch"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// GETs `url`: the status and the JSON body (null when it is not JSON).
pub async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = client.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits (20 s at most) until the last block seals at least `size` events; returns it.
pub async fn wait_sealed(client: &reqwest::Client, server: &Server, size: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, block) = get_json(client, &server.url("/v1/blocks/latest")).await;
        if status == 200 && block["tree_size"].as_u64().unwrap() >= size {
            return block;
        }
        assert!(Instant::now() < deadline, "not sealed: {block}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
