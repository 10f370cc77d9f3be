//! Tests of `ui`: the console's pages through the witness's whole router, in-process
//! (`tower::ServiceExt::oneshot`), over a witness cosigning through SoftHSM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use tower::ServiceExt as _;

use super::*;
use crate::witness::protocol::add_checkpoint_body;
use crate::witness::routes::{router, WitnessHttpSettings, WitnessState};
use crate::witness::service::tests::{witness, Sim, ORIGIN};
use crate::witness::service::WitnessService;

/// An origin a browser would run if it were not escaped (a valid origin: no space).
const HOSTILE: &str = "<script>alert(1)</script>/x?a=1#b%41";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn app(service: &Arc<WitnessService>) -> Router {
    router(
        WitnessState::new(Arc::clone(service)),
        WitnessHttpSettings {
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
        },
    )
}

/// One GET: the status, the headers and the body.
async fn get(app: &Router, path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let req = Request::get(path).body(Body::empty()).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .unwrap();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

/// `s` as maud writes it in HTML text.
fn escaped(s: &str) -> String {
    maud::html! { (s) }.into_string()
}

/// The answer carries the console's security headers.
fn assert_secured(path: &str, headers: &axum::http::HeaderMap) {
    assert_eq!(
        headers
            .get(header::CONTENT_SECURITY_POLICY)
            .map(|v| v.to_str().unwrap()),
        Some(crate::ui::CONTENT_SECURITY_POLICY),
        "{path}"
    );
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
}

/// An HTML page: in the console's frame, no script, no inline style.
fn assert_page(path: &str, headers: &axum::http::HeaderMap, body: &str) {
    assert_secured(path, headers);
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "text/html; charset=utf-8",
        "{path}"
    );
    assert!(body.contains("auditstamp witness"), "{path}: {body}");
    assert!(!body.contains("<script"), "{path}: {body}");
    assert!(!body.contains("style="), "{path}: {body}");
}

/// A witness for a well-behaved appliance (cosigned at 5, 8, then 12), a hostile origin
/// (cosigned at 3) and a forked appliance (cosigned at 30, then the fork of size 30
/// submitted): what the pages show.
struct Fixture {
    _dir: tempfile::TempDir,
    _hsm: crate::signer::Hsm,
    service: Arc<WitnessService>,
    good: Sim,
    forked: Sim,
    fork: Sim,
}

fn fixture(rt: &tokio::runtime::Runtime) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut good = Sim::named("good.example/chain", 1);
    let mut hostile = Sim::named(HOSTILE, 2);
    let mut forked = Sim::named(ORIGIN, 3);
    let (service, hsm) = witness(dir.path(), &[&good, &hostile, &forked]);
    good.grow(12);
    hostile.grow(3);
    forked.grow(30);
    let mut fork = forked.forked();
    fork.grow(30);
    rt.block_on(async {
        for body in [
            good.body(0, 5),
            good.body(5, 8),
            good.body(8, 12),
            hostile.body(0, 3),
            forked.body(0, 30),
        ] {
            service.add_checkpoint(body.as_bytes()).await.unwrap();
        }
        let body = add_checkpoint_body(30, &[], &fork.note(30, fork.root(30))).unwrap();
        service.add_checkpoint(body.as_bytes()).await.unwrap_err();
    });
    Fixture {
        _dir: dir,
        _hsm: hsm,
        service,
        good,
        forked,
        fork,
    }
}

#[test]
fn the_pages_show_the_appliances_their_history_and_the_evidence_of_a_fork() {
    let rt = runtime();
    let f = fixture(&rt);
    let app = app(&f.service);
    rt.block_on(async {
        let (status, headers, body) = get(&app, "/ui/").await;
        assert_eq!(status, StatusCode::OK);
        assert_page("/ui/", &headers, &body);
        // Every appliance, its size, and its link.
        assert!(body.contains(r#"<a href="/ui/log/good.example/chain">good.example/chain</a>"#));
        assert!(body.contains(r#"<td class="num size">12</td>"#));
        assert!(body.contains(r#"<td class="num size">30</td>"#));
        // The fork is an alert; the others have none.
        assert_eq!(
            body.matches(r#"<span class="badge bad alerts">1</span>"#)
                .count(),
            1
        );
        assert_eq!(
            body.matches(r#"<span class="badge ok alerts">0</span>"#)
                .count(),
            2
        );
        // Five cosignatures, all within the last minutes.
        assert!(body.contains("<svg class=\"chart\""), "{body}");
        assert!(
            body.contains("5 cosigned checkpoints, per minute"),
            "{body}"
        );

        let (status, headers, body) = get(&app, "/ui/log/good.example/chain").await;
        assert_eq!(status, StatusCode::OK);
        assert_page("log", &headers, &body);
        assert!(body.contains(&B64.encode(f.good.root(12))));
        // The earlier cosigned checkpoints, newest first.
        let (at8, at5) = (
            body.find(&B64.encode(f.good.root(8))).unwrap(),
            body.find(&B64.encode(f.good.root(5))).unwrap(),
        );
        assert!(at8 < at5);
        assert!(body.contains("No evidence"));

        let (_, _, body) = get(&app, &format!("/ui/log/{ORIGIN}")).await;
        let link = body
            .split("href=\"")
            .find(|s| s.starts_with("/ui/evidence/"))
            .and_then(|s| s.split('"').next())
            .expect("a link to the evidence")
            .to_owned();
        let (status, headers, body) = get(&app, &link).await;
        assert_eq!(status, StatusCode::OK, "{link}: {body}");
        assert_page(&link, &headers, &body);
        assert!(body.contains(r#"<span class="badge bad" id="kind">fork</span>"#));
        // Both roots, and both notes as signed (escaped as HTML text).
        for root in [f.forked.root(30), f.fork.root(30)] {
            assert!(body.contains(&B64.encode(root)), "{body}");
        }
        for note in [
            f.forked.note(30, f.forked.root(30)),
            f.fork.note(30, f.fork.root(30)),
        ] {
            assert!(body.contains(&escaped(&note)), "{body}");
        }
    });
}

#[test]
fn a_hostile_origin_is_text_and_its_links_work() {
    let rt = runtime();
    let f = fixture(&rt);
    let app = app(&f.service);
    rt.block_on(async {
        let (_, _, body) = get(&app, "/ui/").await;
        assert!(!body.contains("<script>alert"), "{body}");
        assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;/x?a=1#b%41"));
        let href = "/ui/log/%3Cscript%3Ealert%281%29%3C/script%3E/x%3Fa%3D1%23b%2541";
        assert!(body.contains(&format!("href=\"{href}\"")), "{body}");
        let (status, headers, body) = get(&app, href).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_page(href, &headers, &body);
        assert!(!body.contains("<script>alert"), "{body}");
        assert!(body.contains(r#"<dd id="size">3</dd>"#), "{body}");
        assert!(body.contains(&escaped(HOSTILE)), "{body}");
    });
}

#[test]
fn unknown_pages_are_404_and_bad_ids_400_in_the_frame_with_the_csp() {
    let rt = runtime();
    let f = fixture(&rt);
    let app = app(&f.service);
    rt.block_on(async {
        let zeros = "0".repeat(64);
        for (path, want, says) in [
            ("/ui/log/nobody.example/chain", 404, "nobody.example/chain"),
            ("/ui/log/", 404, "no such page"),
            ("/ui/nothing", 404, "no such page"),
            ("/ui/log", 404, "no such page"),
            (
                &format!("/ui/evidence/{ORIGIN}/{zeros}"),
                404,
                "no evidence record",
            ),
            (
                &format!("/ui/evidence/nobody.example/{zeros}"),
                404,
                "nobody.example",
            ),
            (
                &format!("/ui/evidence/{ORIGIN}/xyz"),
                400,
                "not an evidence id",
            ),
            (
                "/ui/evidence/no-slash",
                404,
                "/ui/evidence/&lt;origin&gt;/&lt;id&gt;",
            ),
        ] {
            let (status, headers, body) = get(&app, path).await;
            assert_eq!(status.as_u16(), want, "{path}: {body}");
            assert_page(path, &headers, &body);
            assert!(body.contains(says), "{path}: {body}");
        }
    });
}

#[test]
fn assets_and_the_redirect_carry_the_csp() {
    let rt = runtime();
    let f = fixture(&rt);
    let app = app(&f.service);
    rt.block_on(async {
        let (status, headers, _) = get(&app, "/ui").await;
        assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(headers[header::LOCATION], "/ui/");
        assert_secured("/ui", &headers);

        let (status, headers, body) = get(&app, "/ui/assets/style.css").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
        assert_secured("style.css", &headers);
        assert!(body.contains("svg.chart"));

        let (status, headers, _) = get(&app, "/ui/assets/app.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_secured("app.js", &headers);

        // The JSON API is as it was.
        let (status, headers, _) = get(&app, "/status").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    });
}

#[test]
fn the_chart_counts_what_it_shows_in_buckets_ending_now() {
    let now = 100_000_000;
    assert!(chart(&[], now).is_none());
    // Within 24 minutes: minutes.
    let c = chart(&[now, now - 30, now - 600], now)
        .unwrap()
        .into_string();
    assert!(
        c.contains("3 cosigned checkpoints, per minute over the last 24 min"),
        "{c}"
    );
    // Within 2 hours: 5-minute buckets; all three counted, two in the last bucket.
    let c = chart(&[now, now - 10, now - 3_000], now)
        .unwrap()
        .into_string();
    assert!(c.contains("per 5 minutes over the last 2 h"), "{c}");
    assert_eq!(c.matches(r#"data-count="2""#).count(), 1, "{c}");
    assert_eq!(c.matches(r#"data-count="1""#).count(), 1, "{c}");
    assert_eq!(c.matches(r#"data-count="0""#).count(), 22, "{c}");
    // A time ahead of the clock is counted in the last bucket; one older than the widest
    // span is left out, and the note says how many are shown.
    let c = chart(&[now + 5, now - 800 * 86_400], now)
        .unwrap()
        .into_string();
    assert!(c.contains("1 cosigned checkpoints, per 30 days"), "{c}");
    assert!(!c.contains("style="));
}

#[test]
fn origins_are_percent_encoded_in_links() {
    assert_eq!(path_escape("a.example/chain-1_~"), "a.example/chain-1_~");
    assert_eq!(path_escape("a b?c#d%e<"), "a%20b%3Fc%23d%25e%3C");
    assert_eq!(path_escape("é"), "%C3%A9");
}
