//! TLS and agency identity, and the limits that keep clients from holding the server:
//! HTTPS with rustls checked by curl and openssl (independent clients), mutual TLS with
//! the certificate's CN as the agency identity (required per route group, checked against
//! events' agency, recorded in tsa.issued), per-client rate limits (429), the global
//! concurrency limit (503), the header timeout and the connection limit; connections that
//! say nothing (silent, a part of the HTTP/2 preface, a head dripping in, a TLS handshake
//! never finished) are closed at the deadline while others are served; idle HTTP/1.1 and
//! HTTP/2 connections are closed; refused requests take no slot; the data center's commands
//! (`verify chain --url`, `bench tokens`, `bench events`) over mutual TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The appliance's config with TLS (and mTLS for `required` groups) instead of plain HTTP.
fn tls_config(app: &Appliance, pki: &Pki, required: &[&str], extra_http: &str) {
    let groups: Vec<String> = required.iter().map(|g| format!("{g:?}")).collect();
    app.write_config(&[
        ("plain_http = true\n", extra_http),
        (
            "\n[chain]\n",
            &format!(
                "\n[http.tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\nrequire_client_cert = [{}]\n\n[chain]\n",
                pki.path("server.pem"),
                pki.path("server.key"),
                pki.path("agencies-ca.pem"),
                groups.join(", ")
            ),
        ),
    ]);
}

/// curl over HTTPS, trusting the test server CA; `client` = a client certificate name.
/// Returns (HTTP status, body); status 0 when the connection failed.
fn curl(pki: &Pki, url: &str, client: Option<&str>, post: Option<(&str, &[u8])>) -> (u16, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("body");
    let mut c = Command::new("curl");
    c.args([
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        &pki.path("server-ca.pem"),
    ])
    .args(["-o", out.to_str().unwrap(), "-w", "%{http_code}"]);
    if let Some(name) = client {
        c.args(["--cert", &pki.path(&format!("{name}.pem"))])
            .args(["--key", &pki.path(&format!("{name}.key"))]);
    }
    if let Some((ct, body)) = post {
        let f = dir.path().join("req");
        std::fs::write(&f, body).unwrap();
        c.args(["-H", &format!("Content-Type: {ct}")])
            .args(["--data-binary", &format!("@{}", f.display())]);
    }
    let o = c.arg(url).output().unwrap();
    let status = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    if status == 0 {
        eprintln!("curl {url}: {}", String::from_utf8_lossy(&o.stderr));
    }
    (status, std::fs::read(&out).unwrap_or_default())
}

fn https(server: &Server, path: &str) -> String {
    format!("https://localhost:{}{path}", server.addr.port())
}

fn event(agency: &str, n: u64) -> Value {
    json!({
        "agency": agency, "auditor": "a-1", "action": "access",
        "subject": format!("file/{n}"), "data_sha256": format!("{n:064x}"),
        "occurred_at": "2026-12-01T00:00:00Z",
    })
}

fn next_index(pki: &Pki, server: &Server) -> u64 {
    let (s, body) = curl(
        pki,
        &https(server, "/v1/events"),
        Some("agency-7"),
        Some((
            "application/json",
            event("agency-7", 0).to_string().as_bytes(),
        )),
    );
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice::<Value>(&body).unwrap()["index"]
        .as_u64()
        .unwrap()
}

#[test]
fn https_and_mutual_tls_identify_agencies() {
    let app = Appliance::new("ecdsa-p256");
    let pki = Pki::new(&app.path().join("tls"));
    tls_config(&app, &pki, &["tsa", "events"], "");
    let server = app.start();
    assert!(server.wait_for_log("TSA at https://"), "{}", server.log());

    // An independent TLS client sees our certificate and negotiates h2 or http/1.1.
    let o = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", server.addr.port()),
        ])
        .args([
            "-CAfile",
            &pki.path("server-ca.pem"),
            "-verify_return_error",
            "-alpn",
            "h2,http/1.1",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert!(text.contains("ALPN protocol: h2"), "{text}");

    // Plain HTTP on the TLS port gets no answer.
    let o = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(server.url("/healthz"))
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse::<u16>()
        .unwrap_or(0);
    assert!(s == 0 || s == 400, "plain HTTP answered {s}");

    // Open routes need no client certificate; tsa and events do.
    assert_eq!(curl(&pki, &https(&server, "/healthz"), None, None).0, 200);
    assert_eq!(curl(&pki, &https(&server, "/tsa/certs"), None, None).0, 200);
    let work = app.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let data = work.join("doc.txt");
    std::fs::write(&data, "agency data\n").unwrap();
    let tsq = ts_query(&work, &data, "-sha256", true, true, "q");
    let query = std::fs::read(&tsq).unwrap();
    let (s, body) = curl(
        &pki,
        &https(&server, "/tsa"),
        None,
        Some(("application/timestamp-query", &query)),
    );
    assert_eq!(s, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("client certificate"));
    let (s, body) = curl(
        &pki,
        &https(&server, "/v1/events"),
        None,
        Some((
            "application/json",
            event("agency-7", 1).to_string().as_bytes(),
        )),
    );
    assert_eq!(s, 403, "{}", String::from_utf8_lossy(&body));

    // With the agency's certificate: a token that openssl verifies, recorded with the
    // agency as requester.
    let first = next_index(&pki, &server);
    let (s, reply) = curl(
        &pki,
        &https(&server, "/tsa"),
        Some("agency-7"),
        Some(("application/timestamp-query", &query)),
    );
    assert_eq!(s, 200);
    let tsr = work.join("q.tsr");
    std::fs::write(&tsr, &reply).unwrap();
    openssl(&[
        "ts",
        "-verify",
        "-queryfile",
        tsq.to_str().unwrap(),
        "-in",
        tsr.to_str().unwrap(),
        "-CAfile",
        app.ca_pem().to_str().unwrap(),
    ]);
    let recorded = first + 1;
    let deadline = Instant::now() + Duration::from_secs(20);
    let ev = loop {
        let (s, body) = curl(
            &pki,
            &https(&server, &format!("/v1/events/{recorded}")),
            None,
            None,
        );
        if s == 200 {
            break serde_json::from_slice::<Value>(&body).unwrap();
        }
        assert!(Instant::now() < deadline, "tsa.issued never sealed");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(ev["event"]["action"], "tsa.issued");
    assert_eq!(ev["event"]["details"]["requester"], "agency-7");

    // An agency may only record its own events.
    let (s, body) = curl(
        &pki,
        &https(&server, "/v1/events"),
        Some("agency-7"),
        Some((
            "application/json",
            event("agency-8", 2).to_string().as_bytes(),
        )),
    );
    assert_eq!(s, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("agency-8"));
    let batch = json!([event("agency-8", 3), event("agency-8", 4)]).to_string();
    assert_eq!(
        curl(
            &pki,
            &https(&server, "/v1/events/batch"),
            Some("agency-8"),
            Some(("application/json", batch.as_bytes()))
        )
        .0,
        200
    );
    let mixed = json!([event("agency-8", 5), event("agency-7", 6)]).to_string();
    let (s, body) = curl(
        &pki,
        &https(&server, "/v1/events/batch"),
        Some("agency-8"),
        Some(("application/json", mixed.as_bytes())),
    );
    assert_eq!(s, 403);
    assert!(
        String::from_utf8_lossy(&body).contains("events[1]"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // Nothing of the refused requests was stored: 2 (token + batch of 2) after `first`.
    assert_eq!(next_index(&pki, &server), first + 4);

    // A certificate of another CA (even with the same CN) does not get through the handshake.
    let (s, _) = curl(
        &pki,
        &https(&server, "/v1/events"),
        Some("rogue"),
        Some((
            "application/json",
            event("agency-7", 7).to_string().as_bytes(),
        )),
    );
    assert_eq!(s, 0, "a rogue client certificate was accepted");
    server.stop();
}

#[test]
fn tls_setup_errors_stop_startup_and_name_the_file() {
    let app = Appliance::new("ecdsa-p256");
    let pki = Pki::new(&app.path().join("tls"));
    tls_config(&app, &pki, &[], "");
    // The key of another certificate.
    std::fs::copy(pki.path("agency-8.key"), pki.path("server.key")).unwrap();
    let err = app.start_fails();
    assert!(err.contains("http.tls"), "{err}");
    std::fs::remove_file(pki.path("server.pem")).unwrap();
    let err = app.start_fails();
    assert!(err.contains("server.pem"), "{err}");
}

#[test]
fn rate_limits_refuse_with_429_per_client() {
    let app = Appliance::new("ecdsa-p256");
    let pki = Pki::new(&app.path().join("tls"));
    tls_config(
        &app,
        &pki,
        &[],
        "rate_limit = { per_second = 1, burst = 3 }\n",
    );
    // write_config keeps the test default rate_limit line; this one replaces it.
    let text = std::fs::read_to_string(&app.config)
        .unwrap()
        .replace("rate_limit = { per_second = 0 }\n", "");
    std::fs::write(&app.config, text).unwrap();
    let server = app.start();
    let statuses: Vec<u16> = (0..6)
        .map(|_| curl(&pki, &https(&server, "/healthz"), Some("agency-7"), None).0)
        .collect();
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    // Another client has its own bucket.
    assert_eq!(
        curl(&pki, &https(&server, "/healthz"), Some("agency-8"), None).0,
        200
    );
    // The refusal says when to come back.
    let o = Command::new("curl")
        .args(["-sS", "-i", "--cacert", &pki.path("server-ca.pem")])
        .args([
            "--cert",
            &pki.path("agency-7.pem"),
            "--key",
            &pki.path("agency-7.key"),
        ])
        .arg(https(&server, "/healthz"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_ascii_lowercase();
    assert!(
        text.contains(" 429") && text.contains("retry-after:"),
        "{text}"
    );
    server.stop();
}

/// Reads from `s` until the peer closes; true if it closed within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed() <= within,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

#[test]
fn slow_and_excess_clients_cannot_hold_the_server() {
    let app = Appliance::new("ecdsa-p256");
    app.write_config(&[(
        "plain_http = true\n",
        "plain_http = true\nheader_timeout_ms = 500\nmax_connections = 8\nmax_concurrent_requests = 1\nrequest_timeout_ms = 4000\n",
    )]);
    let server = app.start();

    // Headers trickling in: the connection is closed after the header timeout.
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    assert!(
        closed_within(&mut slow, Duration::from_secs(3)),
        "a slow client held its connection"
    );

    // One request in hand (its body never completes): the next is refused at once.
    let send_hold = || {
        let mut hold = TcpStream::connect(server.addr).unwrap();
        hold.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{").unwrap();
        hold
    };
    let mut hold = send_hold();
    let rt = rt();
    // No connection pool: a kept-alive connection could be reused just as the server
    // closes it for idleness (after header_timeout_ms), and the request would fail.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let get = |path: &str| rt.block_on(client.get(server.url(path)).send());
    // Once the held request has its slot, the next is refused, at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = Instant::now();
        let r = get("/healthz").unwrap();
        if r.status().as_u16() == 503 {
            assert!(r.headers().contains_key("retry-after"));
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "the refusal waited in a queue"
            );
            break;
        }
        assert_eq!(r.status().as_u16(), 200);
        assert!(
            Instant::now() < deadline,
            "the held request never took its slot"
        );
        // Had a GET been in hand when the held request came, the held request got the
        // 503 (and its connection closed): send it again.
        hold.set_nonblocking(true).unwrap();
        let answered = !matches!(hold.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        hold.set_nonblocking(false).unwrap();
        if answered {
            hold = send_hold();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The held request times out (request_timeout_ms) and frees its slot.
    let mut answer = String::new();
    hold.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let _ = hold.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    drop(hold);
    // The server serves again once the slot is free. (Until the server has seen the
    // peers of the connections that hold the places close, a new one may still be refused:
    // closed unanswered.)
    let served_again = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(8);
        while !get("/healthz").is_ok_and(|r| r.status().as_u16() == 200) {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    served_again("the slot was never freed");

    // Connections beyond max_connections are closed at once; the server still serves.
    // (A scrape, too, may find the places still held for a moment: it is tried again.)
    let metrics = || {
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            let scraped = rt.block_on(async {
                client
                    .get(server.url("/metrics"))
                    .send()
                    .await?
                    .error_for_status()?
                    .text()
                    .await
            });
            match scraped {
                Ok(text) => return text,
                Err(e) => assert!(Instant::now() < deadline, "cannot scrape: {e}"),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Only the connection of the scrape itself is open.
    wait_for_metrics(metrics, |m| metric_value(m, OPEN) == Some(1));
    let idle: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    // Accepted in order, after the 8: the one over the cap.
    let mut extra = TcpStream::connect(server.addr).unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_secs(2)),
        "a connection over the limit stayed open"
    );
    drop(idle);
    served_again("the server never served again after the idle connections closed");
    let text = metrics();
    assert!(metric_value(&text, REFUSED_MAX).unwrap() >= 1, "{text}");

    // Every answer was counted by its class: the 503 and the 408 among them.
    let metrics = metrics();
    let count = |class: &str| -> u64 {
        let line = format!("auditstamp_http_responses_total{{class=\"{class}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {class} count in {metrics}"))
    };
    assert!(count("2xx") >= 2, "{metrics}");
    assert!(count("4xx") >= 1, "{metrics}");
    assert!(count("5xx") >= 1, "{metrics}");
    server.stop();
}

/// Runs the binary with `args` (no HSM, no configuration: the data center's side).
fn auditstamp(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_data_center_verifies_and_benchmarks_a_production_appliance_over_mutual_tls() {
    let app = Appliance::new("ecdsa-p256");
    let pki = Pki::new(&app.path().join("tls"));
    // Production: TLS only, every route group behind a client certificate.
    tls_config(&app, &pki, &["tsa", "events", "read"], "");
    let server = app.start();
    assert!(server.wait_for_log("TSA at https://"), "{}", server.log());
    let batch = json!((0..20).map(|n| event("agency-7", n)).collect::<Vec<_>>()).to_string();
    let (s, body) = curl(
        &pki,
        &https(&server, "/v1/events/batch"),
        Some("agency-7"),
        Some(("application/json", batch.as_bytes())),
    );
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let deadline = Instant::now() + Duration::from_secs(20);
    let key = loop {
        let (s, body) = curl(
            &pki,
            &https(&server, "/v1/events/19"),
            Some("agency-7"),
            None,
        );
        if s == 200 {
            let v: Value = serde_json::from_slice(&body).unwrap();
            break v["verifier_key"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "never sealed: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let url = https(&server, "");
    let (ca, cert, client_key) = (
        pki.path("server-ca.pem"),
        pki.path("agency-7.pem"),
        pki.path("agency-7.key"),
    );

    // The data center audits the live appliance over HTTPS with its client certificate.
    let o = auditstamp(&[
        "verify",
        "chain",
        "--url",
        &url,
        "--key",
        &key,
        "--tls-ca",
        &ca,
        "--tls-cert",
        &cert,
        "--tls-key",
        &client_key,
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains("OK") && out.contains("blocks"), "{out}");

    // The wrong CA: the causes name the certificate problem.
    let o = auditstamp(&[
        "verify",
        "chain",
        "--url",
        &url,
        "--key",
        &key,
        "--tls-ca",
        &pki.path("rogue-ca.pem"),
        "--tls-cert",
        &cert,
        "--tls-key",
        &client_key,
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("caused by") && e.contains("certificate"), "{e}");
    assert!(e.contains("UnknownIssuer"), "{e}");
    eprintln!("wrong CA (shown with --nocapture): {e}");
    // Without --tls-ca the system's roots are trusted, and they do not know this CA.
    let o = auditstamp(&[
        "verify",
        "chain",
        "--url",
        &url,
        "--key",
        &key,
        "--tls-cert",
        &cert,
        "--tls-key",
        &client_key,
    ]);
    assert!(stderr(&o).contains("UnknownIssuer"), "{}", stderr(&o));
    // User information in the URL never reaches the output.
    let secret_url = url.replace("https://", "https://auditor:hunter2@");
    let o = auditstamp(&[
        "verify",
        "chain",
        "--url",
        &secret_url,
        "--key",
        &key,
        "--tls-ca",
        &pki.path("rogue-ca.pem"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!stderr(&o).contains("hunter2"), "{}", stderr(&o));
    assert!(stderr(&o).contains("***@localhost"), "{}", stderr(&o));

    // No client certificate where the appliance requires one: the server's own words.
    let o = auditstamp(&[
        "verify", "chain", "--url", &url, "--key", &key, "--tls-ca", &ca,
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("403") && e.contains("client certificate"), "{e}");
    eprintln!("no client certificate: {e}");
    // A client key that is not the certificate's: named by file, never shown.
    let o = auditstamp(&[
        "verify",
        "chain",
        "--url",
        &url,
        "--key",
        &key,
        "--tls-ca",
        &ca,
        "--tls-cert",
        &cert,
        "--tls-key",
        &pki.path("agency-8.key"),
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("agency-8.key"), "{e}");
    eprintln!("mismatched client key: {e}");
    let key_text = std::fs::read_to_string(pki.path("agency-8.key")).unwrap();
    for line in key_text.lines().filter(|l| !l.starts_with("-----")) {
        assert!(
            !e.contains(line),
            "the key file's contents were printed: {e}"
        );
    }
    // --tls-cert without --tls-key is a usage error.
    let o = auditstamp(&["verify", "chain", "--url", &url, "--tls-cert", &cert]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // bench tokens speaks HTTPS with the same options (its own lean HTTP/1.1 client).
    let tls = [
        "--tls-ca",
        &ca,
        "--tls-cert",
        &cert,
        "--tls-key",
        &client_key,
    ];
    let o = auditstamp(
        &[
            &[
                "bench",
                "tokens",
                "--url",
                &url,
                "--seconds",
                "1",
                "--connections",
                "2",
            ][..],
            &tls[..],
        ]
        .concat(),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    let result = out.lines().find(|l| l.starts_with("result ")).unwrap();
    assert!(result.contains(" errors=0 "), "{out}");
    let rate: f64 = result
        .split(' ')
        .find_map(|f| f.strip_prefix("rate="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(rate > 0.0, "{out}");
    // ... and says why when it cannot get a token.
    let o = auditstamp(&[
        "bench",
        "tokens",
        "--url",
        &url,
        "--seconds",
        "1",
        "--tls-ca",
        &ca,
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("403") && e.contains("client certificate"), "{e}");
    let o = auditstamp(&[
        "bench",
        "tokens",
        "--url",
        &url,
        "--seconds",
        "1",
        "--tls-ca",
        &pki.path("rogue-ca.pem"),
    ]);
    assert!(stderr(&o).contains("UnknownIssuer"), "{}", stderr(&o));

    // bench events too (reqwest, the shared client).
    let o = auditstamp(
        &[
            &[
                "bench",
                "events",
                "--url",
                &url,
                "--seconds",
                "1",
                "--clients",
                "2",
                "--batch-clients",
                "1",
                "--batch-size",
                "10",
            ][..],
            &tls[..],
        ]
        .concat(),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains(", 0 errors)"), "{out}");
    server.stop();
}

/// A client from the local address `from` (see `connect_from`), without a connection
/// pool: every request on a connection of its own, so none is ever reused just as the
/// server closes it for idleness.
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<std::net::IpAddr>().unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// GET `url` with `client`: the status (0 when the request failed) and how long it took.
fn timed_get(rt: &tokio::runtime::Runtime, client: &reqwest::Client, url: &str) -> (u16, Duration) {
    let t = Instant::now();
    let status = rt
        .block_on(async {
            client
                .get(url)
                .send()
                .await?
                .error_for_status()?
                .text()
                .await
        })
        .map_or_else(|e| e.status().map_or(0, |s| s.as_u16()), |_| 200);
    (status, t.elapsed())
}

/// Polls `fetch` (the metrics text) until `ready` holds for it, for at most 10 s.
fn wait_for_metrics(fetch: impl Fn() -> String, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = fetch();
        if ready(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "metrics never got there: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const OPEN: &str = "auditstamp_connections_open";
const REFUSED_PER_ADDRESS: &str = "auditstamp_connections_refused_total{reason=\"per_address\"}";
const REFUSED_MAX: &str = "auditstamp_connections_refused_total{reason=\"max_connections\"}";
const CLOSED_DEADLINE: &str = "auditstamp_connections_closed_total{reason=\"deadline\"}";
const CLOSED_IDLE: &str = "auditstamp_connections_closed_total{reason=\"idle\"}";

/// Watches `s` in a thread: how long after `since` the server closed it (see `closed_after`).
fn watch_close(
    mut s: TcpStream,
    since: Instant,
    limit: Duration,
) -> std::thread::JoinHandle<Option<Duration>> {
    std::thread::spawn(move || closed_after(&mut s, since, limit))
}

#[test]
fn silent_and_slow_connections_are_closed_at_the_deadline_while_others_are_served() {
    const DEADLINE: Duration = Duration::from_millis(2000);
    const IDLE: Duration = Duration::from_millis(3000);
    // Closed by the deadline means: not before it, and not long after it.
    const SLACK: Duration = Duration::from_secs(3);
    let app = Appliance::new("ecdsa-p256");
    app.write_config(&[
        (
            "plain_http = true\n",
            "plain_http = true\nheader_timeout_ms = 2000\nidle_timeout_ms = 3000\n",
        ),
        (
            "max_connections_per_address = 1024\n",
            "max_connections_per_address = 16\n",
        ),
    ]);
    let server = app.start();
    let rt = rt();
    // The well-behaved client has an address of its own (the attacker's is 127.0.0.1).
    let good = client_from("127.0.0.2");
    let metrics = || {
        rt.block_on(async { good.get(server.url("/metrics")).send().await?.text().await })
            .unwrap()
    };
    let count = |text: &str, sample: &str| {
        metric_value(text, sample).unwrap_or_else(|| panic!("no {sample} in {text}"))
    };
    let (status, normal) = timed_get(&rt, &good, &server.url("/healthz"));
    assert_eq!(status, 200);

    let start = Instant::now();
    let limit = DEADLINE + Duration::from_secs(8);
    // 40 connections from one address that say nothing: 16 (the per-address cap) are
    // taken, the other 24 are closed at once.
    let silent: Vec<_> = (0..40)
        .map(|_| watch_close(TcpStream::connect(server.addr).unwrap(), start, limit))
        .collect();
    // Only the start of the HTTP/2 preface.
    let mut preface = connect_from("127.0.0.3", server.addr);
    preface.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
    let preface = watch_close(preface, start, limit);
    // A request head dripping in, a byte every 100 ms (5 s in all).
    let drip = connect_from("127.0.0.4", server.addr);
    let mut dripping = drip.try_clone().unwrap();
    std::thread::spawn(move || {
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: drip, drip\r\n\r\n" {
            if dripping.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let drip = watch_close(drip, start, limit);

    // Meanwhile the well-behaved client is served in its normal time.
    for _ in 0..3 {
        let (status, took) = timed_get(&rt, &good, &server.url("/healthz"));
        assert_eq!(status, 200);
        assert!(
            took < normal + Duration::from_secs(1),
            "served in {took:?} (normally {normal:?})"
        );
    }
    assert!(
        start.elapsed() < DEADLINE,
        "the good requests came after the deadline: this machine is too slow for the test"
    );

    let silent: Vec<Duration> = silent
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap()
                .expect("a silent connection was never closed")
        })
        .collect();
    let at_once = silent.iter().filter(|t| **t < DEADLINE).count();
    assert_eq!(at_once, 24, "closed after {silent:?}");
    let latest = silent.iter().max().unwrap();
    assert!(*latest < DEADLINE + SLACK, "closed after {silent:?}");
    for (what, h) in [("the HTTP/2 preface", preface), ("the dripping head", drip)] {
        let t = h
            .join()
            .unwrap()
            .unwrap_or_else(|| panic!("{what} held its connection"));
        assert!(
            t >= DEADLINE && t < DEADLINE + SLACK,
            "{what}: closed after {t:?}"
        );
    }
    let text = wait_for_metrics(metrics, |m| metric_value(m, OPEN) == Some(1));
    assert_eq!(count(&text, REFUSED_PER_ADDRESS), 24, "{text}");
    assert_eq!(count(&text, REFUSED_MAX), 0, "{text}");
    assert_eq!(count(&text, CLOSED_DEADLINE), 18, "{text}");

    // A connection whose peer closes gives its places back then, not at the deadline.
    let held: Vec<TcpStream> = (0..8)
        .map(|_| connect_from("127.0.0.5", server.addr))
        .collect();
    wait_for_metrics(metrics, |m| metric_value(m, OPEN) == Some(9));
    drop(held);
    let text = wait_for_metrics(metrics, |m| metric_value(m, OPEN) == Some(1));
    assert_eq!(count(&text, CLOSED_DEADLINE), 18, "{text}");

    // HTTP/1.1 keep-alive: the next request's head is due within the header timeout, so an
    // idle connection is closed after it.
    let mut kept = connect_from("127.0.0.2", server.addr);
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"ok\n") {
        let n = kept.read(&mut buf).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let answered = Instant::now();
    let t =
        closed_after(&mut kept, answered, limit).expect("an idle HTTP/1.1 connection stayed open");
    assert!(
        t + Duration::from_millis(500) >= DEADLINE && t < DEADLINE + SLACK,
        "closed {t:?} after the answer"
    );

    // HTTP/2 (prior knowledge): closed (GOAWAY) after the idle timeout.
    let idle_for = rt.block_on(async {
        use http_body_util::BodyExt;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let tcp = socket.connect(server.addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        let conn = tokio::spawn(conn);
        let req = hyper::Request::get(format!("http://{}/healthz", server.addr))
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok\n");
        let answered = Instant::now();
        tokio::time::timeout(IDLE + Duration::from_secs(8), conn)
            .await
            .expect("an idle HTTP/2 connection stayed open")
            .unwrap()
            .unwrap();
        answered.elapsed()
    });
    // The server's idle time starts once the answer is sent, a little before the client
    // has read it.
    assert!(
        idle_for + Duration::from_millis(500) >= IDLE && idle_for < IDLE + SLACK,
        "closed {idle_for:?} after the answer"
    );
    let text = wait_for_metrics(metrics, |m| metric_value(m, OPEN) == Some(1));
    assert_eq!(count(&text, CLOSED_IDLE), 2, "{text}");
    assert_eq!(count(&text, CLOSED_DEADLINE), 18, "{text}");
    server.stop();
}

/// `openssl s_client` to `server` offering ALPN `alpn` (with the client certificate
/// `client`), sending `input` and keeping its input open: a raw TLS connection, closed
/// when the server closes it (the process then exits).
fn s_client(
    pki: &Pki,
    addr: std::net::SocketAddr,
    alpn: &str,
    client: Option<&str>,
    input: &[u8],
) -> Child {
    let mut c = Command::new("openssl");
    c.args(["s_client", "-quiet", "-connect"])
        .arg(addr.to_string())
        .args(["-CAfile", &pki.path("server-ca.pem"), "-alpn", alpn]);
    if let Some(name) = client {
        c.args(["-cert", &pki.path(&format!("{name}.pem"))])
            .args(["-key", &pki.path(&format!("{name}.key"))]);
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.as_mut().unwrap().write_all(input).unwrap();
    child
}

/// Waits (in a thread) for `child` to exit; how long after `since` it did, or `None` if it
/// still ran at `since + limit` (then it is killed). Its output comes with it.
fn watch_exit(
    mut child: Child,
    since: Instant,
    limit: Duration,
) -> std::thread::JoinHandle<(Option<Duration>, Vec<u8>)> {
    std::thread::spawn(move || {
        let stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut stdout) = stdout {
                let _ = stdout.read_to_end(&mut out);
            }
            out
        });
        let exited = loop {
            if child.try_wait().unwrap().is_some() {
                break Some(since.elapsed());
            }
            if since.elapsed() >= limit {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (exited, reader.join().unwrap())
    })
}

#[test]
fn tls_connections_must_finish_the_handshake_and_a_first_request_by_the_deadline() {
    const DEADLINE: Duration = Duration::from_millis(2000);
    const SLACK: Duration = Duration::from_secs(3);
    let app = Appliance::new("ecdsa-p256");
    let pki = Pki::new(&app.path().join("tls"));
    tls_config(&app, &pki, &[], "header_timeout_ms = 2000\n");
    let server = app.start();
    let metrics = || {
        let (s, body) = curl(&pki, &https(&server, "/metrics"), None, None);
        assert_eq!(s, 200);
        String::from_utf8(body).unwrap()
    };
    let start = Instant::now();
    let limit = DEADLINE + Duration::from_secs(8);
    // Nothing at all: the TLS handshake never starts.
    let silent = watch_close(TcpStream::connect(server.addr).unwrap(), start, limit);
    // The start of a ClientHello record, then nothing.
    let mut partial = TcpStream::connect(server.addr).unwrap();
    partial
        .write_all(&[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ])
        .unwrap();
    let partial = watch_close(partial, start, limit);
    // A handshake that completes, then nothing (HTTP/1.1); then only the start of the
    // HTTP/2 preface (h2).
    let quiet = watch_exit(
        s_client(&pki, server.addr, "http/1.1", None, b""),
        start,
        limit,
    );
    let preface = watch_exit(
        s_client(&pki, server.addr, "h2", None, b"PRI * HTTP/2.0\r\n"),
        start,
        limit,
    );
    // Meanwhile a well-behaved client is served.
    assert_eq!(curl(&pki, &https(&server, "/healthz"), None, None).0, 200);
    for (what, h) in [
        ("a silent connection", silent),
        ("a partial ClientHello", partial),
    ] {
        let t = h
            .join()
            .unwrap()
            .unwrap_or_else(|| panic!("{what} held its connection"));
        assert!(
            t >= DEADLINE && t < DEADLINE + SLACK,
            "{what}: closed after {t:?}"
        );
    }
    for (what, h) in [
        ("a TLS connection without a request", quiet),
        (
            "a TLS connection with a part of the HTTP/2 preface",
            preface,
        ),
    ] {
        let t = h
            .join()
            .unwrap()
            .0
            .unwrap_or_else(|| panic!("{what} was held open"));
        assert!(
            t >= DEADLINE && t < DEADLINE + SLACK,
            "{what}: closed after {t:?}"
        );
    }
    let text = wait_for_metrics(metrics, |m| metric_value(m, OPEN) == Some(1));
    assert_eq!(metric_value(&text, CLOSED_DEADLINE), Some(4), "{text}");

    // A client that goes away during the handshake gives its place back then.
    let mut half: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    for s in &mut half {
        s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).unwrap();
    }
    wait_for_metrics(metrics, |m| metric_value(m, OPEN) == Some(4));
    drop(half);
    let text = wait_for_metrics(metrics, |m| metric_value(m, OPEN) == Some(1));
    assert_eq!(metric_value(&text, CLOSED_DEADLINE), Some(4), "{text}");
    server.stop();
}

/// Reads an HTTP/1.1 answer with a JSON body from `r`, up to the body's end (or EOF).
fn read_answer(r: &mut impl Read) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"}") {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer).to_lowercase()
}

/// Asserts that `answer` is an HTTP/1.1 `status` that closes its connection.
fn assert_refused(answer: &str, status: u16) {
    assert!(
        answer.starts_with(&format!("http/1.1 {status} ")),
        "expected {status}: {answer}"
    );
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
}

#[test]
fn requests_refused_for_want_of_a_certificate_take_no_slot() {
    let app = Appliance::new("ecdsa-p256");
    let pki = Pki::new(&app.path().join("tls"));
    tls_config(&app, &pki, &["events"], "max_concurrent_requests = 1\n");
    let server = app.start();
    let start = Instant::now();
    let limit = Duration::from_secs(30);
    // Requests without a client certificate on a route that needs one, whose bodies never
    // come, one after the other (each once the one before is answered).
    let refuser = {
        let pki = Pki {
            dir: pki.dir.clone(),
        };
        let addr = server.addr;
        std::thread::spawn(move || {
            (0..4)
                .map(|_| {
                    let mut child = s_client(
                        &pki,
                        addr,
                        "http/1.1",
                        None,
                        b"POST /v1/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
                    );
                    let answer = read_answer(child.stdout.as_mut().unwrap());
                    (answer, child)
                })
                .collect::<Vec<_>>()
        })
    };
    // Meanwhile a good client is served, never told that the server is full.
    let mut statuses = Vec::new();
    loop {
        let done = refuser.is_finished();
        statuses.push(curl(&pki, &https(&server, "/healthz"), Some("agency-8"), None).0);
        if done {
            break;
        }
        assert!(start.elapsed() < limit, "the refusals never came");
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    for (answer, child) in refuser.join().unwrap() {
        assert_refused(&answer, 403);
        assert!(answer.contains("client certificate"), "{answer}");
        // The server closed the connection, the body unread.
        let (exited, _) = watch_exit(child, start, limit).join().unwrap();
        assert!(exited.is_some(), "a refused connection was kept open");
    }
    server.stop();
}

#[test]
fn requests_over_the_rate_take_no_slot() {
    let app = Appliance::new("ecdsa-p256");
    app.write_config(&[
        (
            "plain_http = true\n",
            "plain_http = true\nmax_concurrent_requests = 1\n",
        ),
        (
            "rate_limit = { per_second = 0 }\n",
            "rate_limit = { per_second = 1, burst = 30 }\n",
        ),
    ]);
    let server = app.start();
    // 127.0.0.1 spends its burst on requests for nothing (404s: no route, no slot).
    let mut spend = TcpStream::connect(server.addr).unwrap();
    spend
        .write_all(&b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n".repeat(30))
        .unwrap();
    spend
        .write_all(b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answers = String::new();
    spend.read_to_string(&mut answers).unwrap();
    assert_eq!(answers.matches("HTTP/1.1 404 ").count(), 30, "{answers}");
    assert_eq!(answers.matches("HTTP/1.1 429 ").count(), 1, "{answers}");
    let start = Instant::now();
    let limit = Duration::from_secs(30);
    // Then requests over its rate whose bodies never come, one after the other. (For a
    // path without a route: were its bucket to fill again meanwhile, a request would get a
    // 404 at once, and take no slot either.)
    let addr = server.addr;
    let refuser = std::thread::spawn(move || {
        (0..4)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{").unwrap();
                (read_answer(&mut s), s)
            })
            .collect::<Vec<_>>()
    });
    // Meanwhile a good client of another address is served (within its own burst),
    // never told that the server is full.
    let rt = rt();
    let good = client_from("127.0.0.2");
    let mut statuses = Vec::new();
    loop {
        let done = refuser.is_finished();
        statuses.push(timed_get(&rt, &good, &server.url("/healthz")).0);
        if done || statuses.len() == 25 {
            break;
        }
        assert!(start.elapsed() < limit, "the refusals never came");
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let refused = refuser.join().unwrap();
    assert!(
        refused.iter().any(|(a, _)| a.starts_with("http/1.1 429 ")),
        "none refused"
    );
    for (answer, mut s) in refused {
        if answer.starts_with("http/1.1 404 ") {
            continue;
        }
        assert_refused(&answer, 429);
        assert!(answer.contains("\r\nretry-after: "), "{answer}");
        // The server closed the connection, the body unread.
        assert!(
            closed_after(&mut s, Instant::now(), Duration::from_secs(5)).is_some(),
            "a refused connection was kept open"
        );
    }
    server.stop();
}
