//! The request rules of TSA-PROFILE.md, each checked by decoding the reply's status and
//! failInfo; transport errors; hostile input; concurrency; serial numbers across restarts;
//! the clock guard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use auditstamp::tsp::{decode_response_status, decode_tst_info_from_token, FailureInfo};
use common::*;
use der::asn1::{Int, OctetString};
use der::{Any, Encode};
use spki::AlgorithmIdentifier;
use x509_tsp::{MessageImprint, TimeStampReq, TspVersion};

const SHA256: &str = "2.16.840.1.101.3.4.2.1";

fn request(oid: &str, params: Option<Any>, digest_len: usize) -> TimeStampReq {
    TimeStampReq {
        version: TspVersion::V1,
        message_imprint: MessageImprint {
            hash_algorithm: AlgorithmIdentifier {
                oid: oid.parse().unwrap(),
                parameters: params,
            },
            hashed_message: OctetString::new(vec![0xab; digest_len]).unwrap(),
        },
        req_policy: None,
        nonce: Some(Int::new(&[0x01, 0x02, 0x03]).unwrap()),
        cert_req: true,
        extensions: None,
    }
}

fn good() -> Vec<u8> {
    request(SHA256, None, 32).to_der().unwrap()
}

/// Posts `body` as a time-stamp query; returns (status, failInfo) of the RFC 3161 reply.
fn ask(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    server: &Server,
    body: Vec<u8>,
) -> (u8, Option<FailureInfo>) {
    let (status, ct, reply) = rt.block_on(post(
        client,
        &server.url("/tsa"),
        "application/timestamp-query",
        body,
    ));
    assert_eq!(status, 200, "protocol errors are answered with HTTP 200");
    assert_eq!(ct, "application/timestamp-reply");
    let st = decode_response_status(&reply).unwrap();
    assert_eq!(
        st.token.is_some(),
        st.status == 0,
        "token present iff granted"
    );
    (st.status, st.fail_info)
}

#[test]
fn every_rejection_row_and_transport_error() {
    let app = Appliance::new("ecdsa-p256");
    let server = app.start();
    let rt = rt();
    let client = reqwest::Client::new();
    let rejected = |fail| (2u8, Some(fail));

    assert_eq!(ask(&rt, &client, &server, good()), (0, None));

    // Not DER, or bytes after the DER.
    assert_eq!(
        ask(&rt, &client, &server, b"hello".to_vec()),
        rejected(FailureInfo::BadDataFormat)
    );
    let mut trailing = good();
    trailing.push(0);
    assert_eq!(
        ask(&rt, &client, &server, trailing),
        rejected(FailureInfo::BadDataFormat)
    );
    assert_eq!(
        ask(&rt, &client, &server, Vec::new()),
        rejected(FailureInfo::BadDataFormat)
    );

    // version != 1 (the INTEGER right after the outer SEQUENCE header).
    let mut v2 = good();
    assert_eq!(&v2[2..5], &[0x02, 0x01, 0x01]);
    v2[4] = 2;
    assert_eq!(
        ask(&rt, &client, &server, v2),
        rejected(FailureInfo::BadRequest)
    );

    // Hash algorithms: SHA-1, MD5, unknown OID; non-NULL parameters.
    for (oid, len) in [
        ("1.3.14.3.2.26", 20),
        ("1.2.840.113549.2.5", 16),
        ("1.2.3.4.5", 32),
    ] {
        let body = request(oid, None, len).to_der().unwrap();
        assert_eq!(
            ask(&rt, &client, &server, body),
            rejected(FailureInfo::BadAlg),
            "{oid}"
        );
    }
    let null = Any::from(der::asn1::Null);
    assert_eq!(
        ask(
            &rt,
            &client,
            &server,
            request(SHA256, Some(null), 32).to_der().unwrap()
        ),
        (0, None)
    );
    let params = Any::encode_from(&Int::new(&[5]).unwrap()).unwrap();
    let body = request(SHA256, Some(params), 32).to_der().unwrap();
    assert_eq!(
        ask(&rt, &client, &server, body),
        rejected(FailureInfo::BadAlg)
    );

    // Imprint length wrong for the algorithm.
    for len in [0, 31, 33, 64] {
        let body = request(SHA256, None, len).to_der().unwrap();
        assert_eq!(
            ask(&rt, &client, &server, body),
            rejected(FailureInfo::BadDataFormat),
            "len {len}"
        );
    }

    // Policy: an accepted one is used, another is refused.
    let mut r = request(SHA256, None, 32);
    r.req_policy = Some(POLICY_2.parse().unwrap());
    let (_, _, reply) = rt.block_on(post(
        &client,
        &server.url("/tsa"),
        "application/timestamp-query",
        r.to_der().unwrap(),
    ));
    let info = decode_tst_info_from_token(&decode_response_status(&reply).unwrap().token.unwrap())
        .unwrap();
    assert_eq!(info.policy.to_string(), POLICY_2);
    r.req_policy = Some("1.2.3.4".parse().unwrap());
    assert_eq!(
        ask(&rt, &client, &server, r.to_der().unwrap()),
        rejected(FailureInfo::UnacceptedPolicy)
    );

    // Any extension.
    let mut r = request(SHA256, None, 32);
    r.extensions = Some(vec![x509_cert::ext::Extension {
        extn_id: "1.2.3.4".parse().unwrap(),
        critical: false,
        extn_value: OctetString::new(vec![5, 0]).unwrap(),
    }]);
    assert_eq!(
        ask(&rt, &client, &server, r.to_der().unwrap()),
        rejected(FailureInfo::UnacceptedExtension)
    );

    // Transport: wrong media type 415; media-type parameters accepted; oversized body 413.
    let (status, _, _) = rt.block_on(post(
        &client,
        &server.url("/tsa"),
        "application/octet-stream",
        good(),
    ));
    assert_eq!(status, 415);
    let (status, _, _) = rt.block_on(post(
        &client,
        &server.url("/tsa"),
        "application/timestamp-query; charset=binary",
        good(),
    ));
    assert_eq!(status, 200);
    // 10 MB announced: refused from the Content-Length alone, before any body is sent.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        write!(
            s,
            "POST /tsa HTTP/1.1\r\nHost: x\r\nContent-Type: application/timestamp-query\r\nContent-Length: {}\r\n\r\n",
            10 << 20
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 413"), "{head}");
        // The body is never read, so the connection is not kept for another request.
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    }

    // Health and readiness.
    let (h, r) = rt.block_on(async {
        let h = client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        let r = client.get(server.url("/readyz")).send().await.unwrap();
        (h, (r.status().as_u16(), r.text().await.unwrap()))
    });
    assert_eq!(h, 200);
    assert_eq!(r.0, 200, "{}", r.1);
    assert!(r.1.contains("\"ready\":true"));
    server.stop();
}

#[test]
fn hostile_input_never_panics_or_hangs() {
    let app = Appliance::new("ecdsa-p256");
    let server = app.start();
    let rt = rt();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let valid = good();
    // Every truncation of a valid request.
    for n in 0..valid.len() {
        let (status, _) = ask(&rt, &client, &server, valid[..n].to_vec());
        assert_eq!(status, 2);
    }
    // Random bytes, and random corruptions of a valid request (deterministic seed).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..300 {
        let body: Vec<u8> = if i % 2 == 0 {
            (0..(next() % 200)).map(|_| next() as u8).collect()
        } else {
            let mut b = valid.clone();
            let at = (next() as usize) % b.len();
            b[at] = next() as u8;
            b
        };
        let (status, fail) = ask(&rt, &client, &server, body);
        assert!(status == 0 || status == 2, "status {status} {fail:?}");
    }
    // A 10 MB body without Content-Length (chunked) is cut off too.
    let status = rt.block_on(async {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            (0..160).map(|_| Ok(vec![0x30u8; 64 << 10])).collect();
        let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
        client
            .post(server.url("/tsa"))
            .header("Content-Type", "application/timestamp-query")
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    // Either a 413 or a connection the server closed: never a hang, never a token.
    if let Ok(s) = status {
        assert_eq!(s, 413);
    }
    // Still serving.
    assert_eq!(ask(&rt, &client, &server, good()), (0, None));
    assert!(!server.log().contains("panicked"), "{}", server.log());
    server.stop();
}

/// Issues `n` tokens concurrently; returns their serial numbers (checked distinct, nonces echoed).
fn issue_concurrently(rt: &tokio::runtime::Runtime, server: &Server, n: u32) -> Vec<Vec<u8>> {
    let client = reqwest::Client::new();
    let url = server.url("/tsa");
    rt.block_on(async {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let client = client.clone();
                let url = url.clone();
                tokio::spawn(async move {
                    let mut r = request(SHA256, None, 32);
                    let nonce = [0x5a, (i >> 8) as u8, i as u8, 0x77];
                    r.nonce = Some(Int::new(&nonce).unwrap());
                    let (status, _, reply) = post(
                        &client,
                        &url,
                        "application/timestamp-query",
                        r.to_der().unwrap(),
                    )
                    .await;
                    assert_eq!(status, 200);
                    let st = decode_response_status(&reply).unwrap();
                    assert_eq!(st.status, 0, "{:?}", st.text);
                    let info = decode_tst_info_from_token(&st.token.unwrap()).unwrap();
                    assert_eq!(
                        info.nonce.unwrap(),
                        Int::new(&nonce).unwrap(),
                        "nonce echoed"
                    );
                    info.serial
                })
            })
            .collect();
        let mut serials = Vec::new();
        for t in tasks {
            serials.push(t.await.unwrap());
        }
        serials
    })
}

#[test]
fn concurrent_requests_and_restarts_never_reuse_a_serial() {
    let app = Appliance::new("ecdsa-p256");
    let rt = rt();
    let mut seen = HashSet::new();
    for round in 0..3 {
        let server = app.start();
        let serials = issue_concurrently(&rt, &server, 200);
        for s in serials {
            assert!(
                seen.insert(s.clone()),
                "round {round}: serial {} reused",
                hex::encode(&s)
            );
        }
        if round == 1 {
            // A crash, not a clean stop: reservations must still hold.
            drop(server);
        } else {
            server.stop();
        }
    }
    assert_eq!(seen.len(), 600);
}

fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The store says a token was issued a few seconds from now (the clock was stepped back):
/// requests are refused with timeNotAvailable and `/readyz` answers 503 while the clock
/// reads earlier; once it passes that genTime, tokens are issued again, no restart, each
/// with a genTime at or after it. The test polls until then, with a deadline.
#[test]
fn clock_behind_last_gen_time_refuses_until_it_passes() {
    /// How far ahead the stored genTime is: room for the server to start and answer the
    /// first request and `/readyz` before the clock gets there.
    const AHEAD_MS: u64 = 5_000;
    let app = Appliance::new("ecdsa-p256");
    let ahead = unix_ms_now() + AHEAD_MS;
    app.with_store(|store| store.record_gen_time(ahead, 0).unwrap());
    let server = app.start();
    let rt = rt();
    let client = reqwest::Client::new();
    assert_eq!(
        ask(&rt, &client, &server, good()),
        (2, Some(FailureInfo::TimeNotAvailable))
    );
    let ready = rt.block_on(async {
        client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(ready, 503);
    assert!(
        unix_ms_now() < ahead,
        "the server took longer than {AHEAD_MS} ms to start and answer: the refusals above \
         were not checked against a clock behind the stored genTime"
    );

    // Polls until a token is issued: every refusal is timeNotAvailable and was asked before
    // the stored genTime; the token's genTime is not before it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(AHEAD_MS + 30_000);
    let gen_time = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "still refused 30 s after the clock passed the stored genTime"
        );
        let asked_at = unix_ms_now();
        let (status, _, reply) = rt.block_on(post(
            &client,
            &server.url("/tsa"),
            "application/timestamp-query",
            good(),
        ));
        assert_eq!(status, 200);
        let st = decode_response_status(&reply).unwrap();
        match st.token {
            Some(token) => break decode_tst_info_from_token(&token).unwrap().gen_time,
            None => {
                assert_eq!(
                    (st.status, st.fail_info),
                    (2, Some(FailureInfo::TimeNotAvailable))
                );
                assert!(
                    asked_at < ahead,
                    "refused although asked at {asked_at} ms, not before the stored genTime \
                     {ahead} ms"
                );
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        gen_time.unix_millis() >= ahead,
        "genTime {} ms before the stored one {ahead} ms",
        gen_time.unix_millis()
    );
    let ready = rt.block_on(async {
        client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(ready, 200);
    server.stop();
}

/// `bench tokens` (the load generator, with its own small HTTP/1.1 client) against a
/// running server: every request gets a granted token, counted; the floor too.
#[test]
fn bench_tokens_counts_the_tokens_a_server_grants() {
    let app = Appliance::new("ecdsa-p256");
    let server = app.start();
    let url = server.url("");
    let pid = server.child.id().to_string();
    for floor in [false, true] {
        let mut args = vec![
            "bench",
            "tokens",
            "--url",
            url.as_str(),
            "--connections",
            "4",
            "--seconds",
            "1",
            "--server-pid",
            pid.as_str(),
        ];
        if floor {
            args.push("--floor");
        }
        let out = app.cli_ok(&args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let result = text.lines().find(|l| l.starts_with("result ")).unwrap();
        let field = |k: &str| -> f64 {
            result
                .split(' ')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {k} in {result}"))
        };
        assert!(field("rate") > 0.0, "{text}");
        assert_eq!(field("errors"), 0.0, "{text}");
        assert!(field("server_cpu_us") > 0.0, "{text}");
    }
    server.stop();
}
