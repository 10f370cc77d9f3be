//! The router's answers in-process (`tower::ServiceExt::oneshot`, no socket): statuses,
//! content types and error bodies of each route kind, over a real SoftHSM key and a real
//! store. The end-to-end tests (tests/) run the binary for what needs a real server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::Request as HttpRequest;
use tower::ServiceExt;

use super::*;
use crate::service::chain::{ChainService, ChainSettings};
use crate::service::tsa::tests::{tsa_on, ManualClock};
use crate::signer::{testsupport, KeyAlgorithm, KeyPurpose, SigningPool};

/// A router over a TSA and an event chain, its clock inside the certificate's validity.
fn app() -> (Router, tempfile::TempDir) {
    let (app, _, dir) = app_with_state();
    (app, dir)
}

/// [`app`], with the state it serves (to append and seal events directly).
pub(super) fn app_with_state() -> (Router, AppState, tempfile::TempDir) {
    app_with_search(true)
}

/// [`app_with_state`], with or without a search index.
pub(super) fn app_with_search(search: bool) -> (Router, AppState, tempfile::TempDir) {
    let hsm = testsupport::new_token().open();
    let clock = ManualClock::at(0);
    let (tsa, (not_before_ms, _), dir, log) = tsa_on(&hsm, clock.clone());
    clock.set(not_before_ms + 1_000);
    hsm.generate_key("chain", KeyAlgorithm::Ed25519, KeyPurpose::Chain)
        .unwrap();
    let signer = SigningPool::start(&hsm, "chain", 1, true).unwrap();
    let tsa = Arc::new(tsa);
    let chain = ChainService::new(
        log,
        Arc::new(signer),
        ChainSettings {
            origin: "test/log".into(),
            seal_interval: Duration::from_secs(3600),
            max_block_events: 1000,
        },
        Arc::clone(&tsa),
    )
    .unwrap();
    let chain = if search {
        let index = crate::chain::index::SearchIndex::open(dir.path(), chain.log()).unwrap();
        chain.with_search_index(index).unwrap()
    } else {
        chain
    };
    let settings = HttpSettings {
        max_body_bytes: 16 * 1024,
        max_event_bytes: 64 * 1024,
        max_batch_bytes: 1 << 20,
        request_timeout: Duration::from_secs(10),
        require_client_cert: Vec::new(),
        rate_limit: None,
        max_concurrent_requests: 16,
    };
    let state = AppState::new(tsa, Arc::new(chain));
    (router(state.clone(), settings), state, dir)
}

/// Sends one request; the status, the Content-Type and the body.
pub(super) async fn send(app: &Router, req: HttpRequest<Body>) -> (StatusCode, String, Vec<u8>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap()
        .to_vec();
    (status, ctype, body)
}

pub(super) fn get(path: &str) -> HttpRequest<Body> {
    HttpRequest::get(path).body(Body::empty()).unwrap()
}

fn post(path: &str, ctype: &str, body: impl Into<Body>) -> HttpRequest<Body> {
    HttpRequest::post(path)
        .header(header::CONTENT_TYPE, ctype)
        .body(body.into())
        .unwrap()
}

/// The `error` of a JSON error body.
fn error_of(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["error"].as_str().unwrap().to_owned()
}

#[test]
fn time_stamp_route_answers_tokens_rejections_and_transport_errors() {
    let (app, _dir) = app();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let request = crate::tsp::encode_request(&crate::tsp::RequestParams {
            hash: crate::tsp::HashAlgorithm::Sha256,
            digest: &[7u8; 32],
            policy: None,
            nonce: None,
            cert_req: true,
        })
        .unwrap();
        let (status, ctype, body) = send(&app, post("/tsa", TIMESTAMP_QUERY, request)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ctype, TIMESTAMP_REPLY);
        assert!(crate::tsp::granted_token(&body).is_ok(), "no token granted");

        // Junk in the right media type is an RFC 3161 rejection, still a 200.
        let (status, ctype, body) = send(&app, post("/tsa", TIMESTAMP_QUERY, "junk")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ctype, TIMESTAMP_REPLY);
        assert!(crate::tsp::granted_token(&body).is_err());

        // Another media type is a transport error, in plain text.
        let (status, ctype, body) = send(&app, post("/tsa", "text/plain", "x")).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(ctype.starts_with("text/plain"), "{ctype}");
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "Content-Type must be application/timestamp-query\n"
        );

        let (status, _, _) = send(&app, get("/healthz")).await;
        assert_eq!(status, StatusCode::OK);
    });
}

#[test]
fn api_errors_are_json_with_their_status() {
    let (app, _dir) = app();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cases: Vec<(HttpRequest<Body>, StatusCode, &str)> = vec![
            (get("/v1/events/7"), StatusCode::NOT_FOUND, "no event 7"),
            (
                get("/v1/events/x"),
                StatusCode::BAD_REQUEST,
                "index must be a non-negative integer",
            ),
            (
                get("/v1/blocks/latest"),
                StatusCode::NOT_FOUND,
                "no block sealed yet",
            ),
            (
                get("/checkpoint"),
                StatusCode::NOT_FOUND,
                "no checkpoint yet",
            ),
            (
                post("/v1/events", "application/json", "{not json"),
                StatusCode::BAD_REQUEST,
                "",
            ),
            (
                post("/v1/events", "text/plain", "{}"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "",
            ),
        ];
        for (req, want, says) in cases {
            let what = format!("{} {}", req.method(), req.uri());
            let (status, ctype, body) = send(&app, req).await;
            assert_eq!(status, want, "{what}");
            assert!(ctype.starts_with("application/json"), "{what}: {ctype}");
            let error = error_of(&body);
            assert!(error.contains(says), "{what}: {error}");
        }
        // A good event is appended and read back.
        let event = serde_json::json!({
            "agency": "agency-1", "auditor": "auditor-1", "action": "access",
            "subject": "s", "data_sha256": "00".repeat(32),
            "occurred_at": "2026-12-01T10:00:00Z", "details": {}
        });
        let (status, ctype, body) = send(
            &app,
            post("/v1/events", "application/json", event.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert!(ctype.starts_with("application/json"), "{ctype}");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["index"], 0, "{v}");
    });
}
