//! The appliance's web console (`/ui/`) in a real headless Chromium (tests/common/browser.rs)
//! against a real `auditstamp serve` (SoftHSM token, real socket):
//!
//! - the event page (of an appliance whose checkpoints a real witness cosigns) checks the
//!   embedded proof bundle in the browser and says `verified`;
//!   each alteration of the bundle in the page (a proof hash, the checkpoint's root, the
//!   leaf, the event shown, the signature, a missing proof hash), checked again with the
//!   page's "check again" button, names the step that fails; restored, it verifies again; a
//!   browser without Ed25519 in WebCrypto is told so, never `verified`;
//! - the search page: an agency filter, an agency and action filter, the next-page link.
//!
//! Screenshots go to `target/screenshots/`: `appliance-event-verified`,
//! `appliance-event-tampered`, `appliance-search`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::browser::Browser;
use common::*;
use serde_json::{json, Value};

/// How long the page may take to check a proof (or a test to wait for a seal).
const WAIT: Duration = Duration::from_secs(20);

/// Posts `events` as one batch; the index of the first.
async fn post_events(client: &reqwest::Client, server: &Server, events: &[Value]) -> u64 {
    let (status, _, body) = post(
        client,
        &server.url("/v1/events/batch"),
        "application/json",
        serde_json::to_vec(events).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["first_index"].as_u64().unwrap()
}

/// The verdict once the check has ended (not "pending"): its text and class.
async fn verdict(b: &Browser) -> (String, String) {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = b.find("#verdict").await;
        let class = v.attr("class").await.unwrap().unwrap_or_default();
        if !class.contains("pending") {
            return (v.text().await.unwrap(), class);
        }
        assert!(
            Instant::now() < deadline,
            "the check did not end: {}",
            v.text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Replaces the embedded bundle with what `alter` (a function body taking the parsed
/// bundle `b` and the helpers `flip` and `b64`) makes of the original, presses "check
/// again", and returns the verdict.
async fn tamper(b: &Browser, original: &str, alter: &str) -> (String, String) {
    let script = format!(
        r#"
        const b = JSON.parse(arguments[0]);
        const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
        const b64 = (bytes) => btoa(String.fromCharCode(...bytes));
        // The base64 text `s` with byte `i` XORed with 1.
        const flip = (s, i) => {{ const x = unb64(s); x[i] ^= 1; return b64(x); }};
        {alter}
        document.getElementById('proof-bundle').textContent = JSON.stringify(b);
        document.getElementById('recheck').click();
        "#
    );
    b.execute(&script, vec![json!(original)]).await;
    verdict(b).await
}

/// The checkpoint origin (and note key name) of the test config.
const ORIGIN: &str = "test-appliance.example/chain";

/// Waits until `GET /checkpoint` is of tree size `size` and holds `lines` signature lines
/// (the appliance's and its witnesses' cosignatures).
async fn wait_cosigned(client: &reqwest::Client, server: &Server, size: u64, lines: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = client.get(server.url("/checkpoint")).send().await.unwrap();
        let text = r.text().await.unwrap_or_default();
        let of_size = text.lines().nth(1) == Some(size.to_string().as_str());
        if of_size && text.matches("\n\u{2014} ").count() == lines {
            return;
        }
        assert!(Instant::now() < deadline, "not cosigned: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn the_event_page_verifies_the_proof_in_the_browser_and_names_what_was_altered() {
    // An appliance whose checkpoints a real witness cosigns: the page's checkpoint holds
    // a cosignature line beside the appliance's signature, and the status header shows it.
    let app = Appliance::new("ecdsa-p256");
    let (w, witness_key) = witness_of(&app, ORIGIN);
    let witness_name = witness_key.split('+').next().unwrap().to_owned();
    let witness = w.start();
    app.write_config(&[(
        "seal_interval_ms = 200\n",
        &format!(
            "seal_interval_ms = 200\n[[chain.witness]]\nurl = \"http://{}\"\nkey = \"{}\"\n",
            witness.addr,
            witness_key.trim()
        ),
    )]);
    let server = app.start();
    rt().block_on(async {
        let client = reqwest::Client::new();
        // Two blocks, so that event 3's proof is against a later block than its own.
        let first: Vec<Value> = (0..5).map(event).collect();
        post_events(&client, &server, &first).await;
        wait_sealed(&client, &server, 5).await;
        let second: Vec<Value> = (5..9).map(event).collect();
        post_events(&client, &server, &second).await;
        wait_sealed(&client, &server, 9).await;
        wait_cosigned(&client, &server, 9, 2).await;

        let b = Browser::start().await;
        b.goto(&server.url("/ui/events/3")).await;
        assert_eq!(b.text("h1").await, "Event 3");
        let (text, class) = verdict(&b).await;
        assert_eq!((text.as_str(), class.as_str()), ("verified", "verdict ok"));
        for i in 1..=5 {
            let class = b.find(&format!("#step-{i}")).await.attr("class").await;
            assert_eq!(class.unwrap().as_deref(), Some("ok"), "step {i}");
        }
        assert_eq!(b.text("[data-field=subject]").await, "dataset/3");
        let key = b.text("#verifier-key").await;
        assert!(key.starts_with("test-appliance.example/chain+"), "{key}");
        let cards = b.texts(".card").await;
        assert!(
            cards.iter().any(|c| c.contains(&format!("WITNESS {}", witness_name.to_uppercase()))
                && c.contains("cosigned size 9")),
            "{cards:?}"
        );
        let block0 = b.texts("h2").await;
        assert!(
            block0.iter().any(|h| h == "Sealed in block 0"),
            "{block0:?}"
        );
        b.screenshot("appliance-event-verified").await;

        let original = b
            .execute(
                "return document.getElementById('proof-bundle').textContent;",
                vec![],
            )
            .await;
        let original = original.as_str().unwrap().to_owned();
        let bundle: Value = serde_json::from_str(&original).unwrap();
        assert!(bundle["inclusion_proof"].as_array().unwrap().len() >= 2);
        let checkpoint = bundle["checkpoint"].as_str().unwrap();
        assert_eq!(checkpoint.matches("\n\u{2014} ").count(), 2, "{checkpoint}");

        // Each alteration, and the step (with a word of its message) that must fail first.
        let cases = [
            (
                "one byte of a proof hash",
                "b.inclusion_proof[0] = flip(b.inclusion_proof[0], 5);",
                "failed at step 4 (checkpoint)",
                "the inclusion proof leads to",
            ),
            (
                "a proof hash taken away",
                "b.inclusion_proof.pop();",
                "failed at step 3 (inclusion proof)",
                "too short",
            ),
            (
                "the checkpoint's root",
                r"const lines = b.checkpoint.split('\n');
                  lines[2] = flip(lines[2], 0);
                  b.checkpoint = lines.join('\n');",
                "failed at step 4 (checkpoint)",
                "the checkpoint's root is",
            ),
            (
                "a byte of the leaf's salt",
                "b.leaf = flip(b.leaf, 20);",
                "failed at step 2 (leaf hash)",
                "the leaf hashes to",
            ),
            (
                "the leaf's agency (the event shown is unchanged)",
                // Offset of the agency's first byte: 1+8+8+16+8+32 fixed bytes, a u32 length.
                "b.leaf = flip(b.leaf, 77);",
                "failed at step 1 (leaf)",
                "the leaf says agency",
            ),
            (
                "the signature",
                // The appliance's line (the witness's cosignature is another).
                r"const lines = b.checkpoint.split('\n');
                  const i = lines.findIndex((l) => l.startsWith('\u2014 test-appliance.example/chain '));
                  const at = lines[i].lastIndexOf(' ') + 1;
                  lines[i] = lines[i].slice(0, at) + flip(lines[i].slice(at), 30);
                  b.checkpoint = lines.join('\n');",
                "failed at step 5 (signature)",
                "does not verify",
            ),
            (
                "the verifier key (another key)",
                // name+id+key, where the base64 key may hold a '+' too.
                r"const k = b.verifier_key;
                  const at = k.indexOf('+', k.indexOf('+') + 1) + 1;
                  b.verifier_key = k.slice(0, at) + flip(k.slice(at), 3);",
                "failed at step 5 (signature)",
                "id does not match",
            ),
        ];
        for (what, alter, step, detail) in cases {
            let (text, class) = tamper(&b, &original, alter).await;
            assert!(text.starts_with(step), "{what}: {text}");
            assert!(text.contains(detail), "{what}: {text}");
            assert_eq!(class, "verdict bad", "{what}");
            if what == "one byte of a proof hash" {
                b.screenshot("appliance-event-tampered").await;
            }
        }

        // The original bundle verifies again: nothing of a failed run stays.
        let (text, class) = tamper(&b, &original, "").await;
        assert_eq!((text.as_str(), class.as_str()), ("verified", "verdict ok"));

        // A browser without Ed25519 in WebCrypto is told so, never "verified".
        b.execute(
            "crypto.subtle.importKey = () => \
               Promise.reject(new DOMException('no Ed25519', 'NotSupportedError'));",
            vec![],
        )
        .await;
        let (text, class) = tamper(&b, &original, "").await;
        assert!(
            text.starts_with("not verified:") && text.contains("no Ed25519"),
            "{text}"
        );
        assert_eq!(class, "verdict bad");
        b.close().await;
    });
}

/// The indexes in the results table of the search page shown, in order.
async fn result_indexes(b: &Browser) -> Vec<u64> {
    b.texts("#results tbody td.num")
        .await
        .iter()
        .map(|t| t.parse().unwrap())
        .collect()
}

/// Fills the search form (`fields`: name and text; the other text fields emptied), picks
/// `order`, submits it, and waits for the answer's page.
async fn search(b: &Browser, fields: &[(&str, &str)], order: &str) {
    for name in ["agency", "auditor", "action", "subject", "limit"] {
        b.find(&format!("form#search input[name={name}]"))
            .await
            .clear()
            .await
            .unwrap();
    }
    for (name, text) in fields {
        b.find(&format!("form#search input[name={name}]"))
            .await
            .send_keys(text)
            .await
            .unwrap();
    }
    b.find(&format!(
        "form#search select[name=order] option[value={order}]"
    ))
    .await
    .click()
    .await
    .unwrap();
    let before = b.url().await;
    b.find("form#search button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    wait_for_url_change(b, &before).await;
}

/// Waits until the page shown is another than `before`.
async fn wait_for_url_change(b: &Browser, before: &str) {
    let deadline = Instant::now() + WAIT;
    while b.url().await == before {
        assert!(Instant::now() < deadline, "still on {before}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn the_search_page_filters_and_pages_through_events() {
    let app = Appliance::new("ecdsa-p256");
    let server = app.start();
    rt().block_on(async {
        let client = reqwest::Client::new();
        // 12 events: agency-north every third, the rest agency-south; access and export
        // in turn.
        let events: Vec<Value> = (0..12u64)
            .map(|n| {
                let mut e = event(n);
                e["agency"] = json!(if n % 3 == 0 {
                    "agency-north"
                } else {
                    "agency-south"
                });
                e["action"] = json!(if n % 2 == 0 { "access" } else { "export" });
                e
            })
            .collect();
        let first = post_events(&client, &server, &events).await;
        // Sealed, so that an event's page opens from the results.
        wait_sealed(&client, &server, first + 12).await;
        let expect = |f: &dyn Fn(u64) -> bool| -> Vec<u64> {
            (0..12u64).filter(|n| f(*n)).map(|n| first + n).collect()
        };
        let north = expect(&|n| n % 3 == 0);
        let south_export = expect(&|n| n % 3 != 0 && n % 2 == 1);
        assert_eq!(north.len(), 4);
        assert_eq!(south_export.len(), 4);

        let b = Browser::start().await;
        b.goto(&server.url("/ui")).await;
        assert_eq!(b.url().await, server.url("/ui/"));
        assert_eq!(b.text("h1").await, "Events");
        let stored = b.texts(".card .value").await;
        assert_eq!(stored.first().map(String::as_str), Some("12"), "{stored:?}");

        // An agency, newest first.
        search(&b, &[("agency", "agency-north")], "newest").await;
        assert!(
            b.url().await.contains("agency=agency-north"),
            "{}",
            b.url().await
        );
        let newest_first: Vec<u64> = north.iter().rev().copied().collect();
        assert_eq!(result_indexes(&b).await, newest_first);
        let agencies = b.texts("#results tbody td:nth-child(4)").await;
        assert!(agencies.iter().all(|a| a == "agency-north"), "{agencies:?}");

        // An agency and an action, oldest first, two a page: the next-page links walk
        // through all of them, and the last page has none.
        search(
            &b,
            &[
                ("agency", "agency-south"),
                ("action", "export"),
                ("limit", "2"),
            ],
            "oldest",
        )
        .await;
        b.screenshot("appliance-search").await;
        let mut seen = result_indexes(&b).await;
        assert_eq!(seen, south_export[..2]);
        let actions = b.texts("#results tbody td:nth-child(6)").await;
        assert_eq!(actions, ["export", "export"]);
        let csv = b.find("#csv").await.attr("href").await.unwrap().unwrap();
        while let Some(next) = b.find_all("#next-page").await.first() {
            let before = b.url().await;
            next.clone().click().await.unwrap();
            wait_for_url_change(&b, &before).await;
            assert!(b.url().await.contains("cursor="), "{}", b.url().await);
            seen.extend(result_indexes(&b).await);
            assert!(seen.len() <= south_export.len(), "{seen:?}");
        }
        assert_eq!(seen, south_export);

        // The CSV link: the same query, every page.
        let r = client.get(server.url(&csv)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let rows: Vec<u64> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(rows, south_export, "{csv}: {text}");

        // An event's link opens its page.
        let link = b.find("#results tbody td.num a").await;
        let index = link.text().await.unwrap();
        link.click().await.unwrap();
        b.wait_for_text("h1", &format!("Event {index}"), WAIT).await;
        b.close().await;
    });
}
