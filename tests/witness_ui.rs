//! The witness's web console (`/ui/`) in a real headless Chromium (tests/common/browser.rs)
//! against a real `auditstamp witness serve` (sled), with simulated appliances
//! (tests/common/witness.rs): the overview lists every appliance with its size and alerts,
//! a forked appliance's page lists its evidence, and the evidence page shows both
//! checkpoints the appliance signed; a hostile origin is shown as text and its link works.
//! Screenshots of each page go to `target/screenshots/witness-*.png`.
//!
//! The harness is checked here too: scripts' later results are awaited, and no process of
//! a browser is left behind, also when a test panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use auditstamp::witness::protocol::add_checkpoint_body;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::browser::{group_members, Browser};
use common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// The harness itself: Chromium runs in chromedriver's process group, renders what a script
/// writes later (awaited by polling), takes a screenshot, and leaves no process behind.
#[test]
fn the_browser_runs_scripts_takes_screenshots_and_leaves_nothing_behind() {
    rt().block_on(async {
        let b = Browser::start().await;
        let pgid = b.process_group();
        b.goto(
            "data:text/html,<title>t</title><p id=x>before</p>\
             <script>setTimeout(()=>{document.getElementById('x').textContent='after'},300)</script>",
        )
        .await;
        assert_eq!(b.text("#x").await, "before");
        assert_eq!(b.wait_for_text("#x", "after", WAIT).await, "after");
        let v = b
            .execute("return arguments[0] + 1;", vec![serde_json::json!(41)])
            .await;
        assert_eq!(v, serde_json::json!(42));
        let png = std::fs::read(b.screenshot("harness").await).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        // chromedriver and Chromium's processes (browser, zygotes, renderer, ...).
        let members = group_members(pgid);
        assert!(members.len() > 2, "the group holds {members:?}");
        drop(b);
        let left = group_members(pgid);
        assert!(left.is_empty(), "left behind in group {pgid}: {left:?}");
    });
}

/// A panicking test leaves nothing behind either: the Browser is dropped while unwinding.
#[test]
fn a_panic_leaves_no_browser_behind() {
    let rt = rt();
    let pgid = std::sync::Mutex::new(None);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            let b = Browser::start().await;
            *pgid.lock().unwrap() = Some(b.process_group());
            b.goto("data:text/html,<p>nothing</p>").await;
            b.wait_for_text("p", "never there", Duration::from_millis(300))
                .await;
        })
    }));
    assert!(caught.is_err(), "wait_for_text should have panicked");
    let pgid = pgid.lock().unwrap().expect("the browser started");
    let left = group_members(pgid);
    assert!(left.is_empty(), "left behind in group {pgid}: {left:?}");
}

/// An origin that is markup, a query and a fragment if not escaped (valid: no space).
const HOSTILE: &str = "evil.example/<script>alert(1)</script>?x=1#y%41";

async fn submit(http: &reqwest::Client, server: &Server, body: String) -> u16 {
    http.post(server.url("/add-checkpoint"))
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The text of the cell `cell` in the overview's row of `origin`.
async fn cell(b: &Browser, origin: &str, cell: &str) -> String {
    b.text(&format!("table.logs tr[data-origin=\"{origin}\"] {cell}"))
        .await
}

#[test]
fn the_console_shows_every_appliance_and_both_checkpoints_of_a_fork() {
    let mut a = Sim::new("appliance-a.example/chain", 1);
    let mut b = Sim::new("appliance-b.example/chain", 2);
    let mut h = Sim::new(HOSTILE, 3);
    let w = WitnessNode::new(&format!(
        "{}\n{}\n{}",
        a.log_entry(),
        b.log_entry(),
        h.log_entry()
    ));
    let server = w.start();
    rt().block_on(async {
        let http = reqwest::Client::new();
        for body in [a.body(0, 6), a.body(6, 20), b.body(0, 9), h.body(0, 4)] {
            assert_eq!(submit(&http, &server, body).await, 200);
        }
        // Appliance a's key signs another tree of size 20: a fork, kept as evidence.
        let mut f = a.fork();
        f.grow_to(20);
        let fork = add_checkpoint_body(20, &[], &f.note(20)).unwrap();
        assert_eq!(submit(&http, &server, fork).await, 409);

        let br = Browser::start().await;
        br.goto(&server.url("/ui")).await;
        // `/ui` went to `/ui/`, whose stylesheet the CSP let in.
        assert_eq!(br.url().await, server.url("/ui/"));
        assert_eq!(br.title().await, "Overview · auditstamp witness");
        let header = br
            .execute(
                "return getComputedStyle(document.querySelector('header.top')).backgroundColor;",
                vec![],
            )
            .await;
        assert_eq!(header, json!("rgb(29, 35, 48)"));
        assert_eq!(br.text("#registered .value").await, "3");
        assert_eq!(br.text("#evidence .value").await, "1");
        assert_eq!(br.text("#cosigned .value").await, "4");
        assert_eq!(cell(&br, &a.origin, ".size").await, "20");
        assert_eq!(cell(&br, &b.origin, ".size").await, "9");
        assert_eq!(cell(&br, &a.origin, ".alerts").await, "1");
        assert_eq!(cell(&br, &b.origin, ".alerts").await, "0");
        assert_eq!(cell(&br, &a.origin, ".stale").await, "fresh");
        let alert_class = br
            .find(&format!("tr[data-origin=\"{}\"] .alerts", a.origin))
            .await
            .attr("class")
            .await
            .unwrap();
        assert_eq!(alert_class.as_deref(), Some("badge bad alerts"));
        // The chart: the four cosigned checkpoints kept (a's 6 and 20, b's 9, h's 4).
        let bars: u64 = br
            .find_all("svg.chart rect.bar")
            .await
            .len()
            .try_into()
            .unwrap();
        assert_eq!(bars, 24);
        assert!(br
            .text("p.chart-note")
            .await
            .starts_with("4 cosigned checkpoints"));
        // The hostile origin is text: nothing ran, nothing was injected.
        let origins = br.texts("table.logs td.origin").await;
        assert_eq!(origins, [a.origin.as_str(), &b.origin, HOSTILE]);
        let scripts = br.execute("return document.scripts.length;", vec![]).await;
        assert_eq!(scripts, json!(0));
        br.screenshot("witness-overview").await;

        // Its link, percent-encoded, leads to its page.
        br.find("table.logs tr:nth-child(3) td.origin a")
            .await
            .click()
            .await
            .unwrap();
        br.wait_for_text("#origin", HOSTILE, WAIT).await;
        assert_eq!(br.text("#size").await, "4");

        // Appliance a's page: its fields, its history, its evidence.
        br.goto(&server.url("/ui/")).await;
        br.find("table.logs tr:nth-child(1) td.origin a")
            .await
            .click()
            .await
            .unwrap();
        br.wait_for_text("#origin", &a.origin, WAIT).await;
        assert_eq!(br.text("#size").await, "20");
        assert_eq!(br.text("#root").await, B64.encode(a.root(20)));
        assert_eq!(br.texts("table.history tbody td.size").await, ["6"]);
        assert_eq!(br.texts("table.evidence tbody tr").await.len(), 1);
        br.screenshot("witness-log").await;

        // The evidence: both checkpoints, side by side.
        br.find("a.evidence-link").await.click().await.unwrap();
        br.wait_for_text("h1", "fork", WAIT).await;
        assert_eq!(br.text("#cosigned .size").await, "20");
        assert_eq!(br.text("#submitted .size").await, "20");
        assert_eq!(br.text("#cosigned .root").await, B64.encode(a.root(20)));
        assert_eq!(br.text("#submitted .root").await, B64.encode(f.root(20)));
        assert_ne!(a.root(20), f.root(20));
        assert_eq!(br.text("#cosigned pre").await, a.note(20).trim_end());
        assert_eq!(br.text("#submitted pre").await, f.note(20).trim_end());
        // Side by side: the submitted one to the right of the cosigned one, same height.
        let (cx, cy, _, _) = br.find("#cosigned").await.rectangle().await.unwrap();
        let (sx, sy, _, _) = br.find("#submitted").await.rectangle().await.unwrap();
        assert!(sx > cx && (sy - cy).abs() < 1.0, "({cx},{cy}) ({sx},{sy})");
        br.screenshot("witness-evidence").await;

        // An unknown appliance: the 404 page in the console's frame.
        br.goto(&server.url("/ui/log/nobody.example/chain")).await;
        br.wait_for_text("h1", "Not Found", WAIT).await;
        assert!(br.text("p.error").await.contains("nobody.example/chain"));
        br.close().await;
    });
    server.stop();
}
