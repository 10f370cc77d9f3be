//! The witness's web console (`/ui/`) in a real headless Chromium (tests/common/browser.rs)
//! against a real `auditstamp witness serve`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::browser::{group_members, Browser};
use common::*;

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
