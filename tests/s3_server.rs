//! The throw-away S3 server of the test suite (`auditstamp::internal::TestS3`, moto's S3
//! server): conditional create, and objects kept across a crash (`kill -9`) and restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use auditstamp::internal::TestS3;

fn client() -> reqwest::Client {
    auditstamp::client::builder(
        &auditstamp::client::ClientTls::default(),
        Duration::from_secs(30),
    )
    .unwrap()
    .build()
    .unwrap()
}

/// A signed request to `s3`: status, ETag and body.
async fn send(
    s3: &TestS3,
    http: &reqwest::Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, Option<String>, Vec<u8>), reqwest::Error> {
    let mut req = http.request(method.parse().unwrap(), format!("{}{path}", s3.endpoint()));
    for (n, v) in s3.sign(method, path, headers, body).unwrap() {
        req = req.header(n, v);
    }
    let resp = req.body(body.to_vec()).send().await?;
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    Ok((status, etag, resp.bytes().await?.to_vec()))
}

fn start() -> TestS3 {
    TestS3::start().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn conditional_create_and_objects_survive_a_kill() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = client();
    let mut s3 = start();
    s3.create_bucket("archive").unwrap();
    let path = "/archive/tiles/x000/001";
    let bytes: Vec<u8> = (0..=255u8).chain([0, 0xff, b'\n']).collect();

    let (status, etag, _) = rt
        .block_on(send(
            &s3,
            &http,
            "PUT",
            path,
            &[("If-None-Match", "*")],
            &bytes,
        ))
        .unwrap();
    assert_eq!(status, 200);
    let etag = etag.expect("an ETag");
    let (status, _, body) = rt
        .block_on(send(
            &s3,
            &http,
            "PUT",
            path,
            &[("If-None-Match", "*")],
            b"other",
        ))
        .unwrap();
    assert_eq!(status, 412, "{}", String::from_utf8_lossy(&body));

    s3.stop();
    assert!(
        rt.block_on(send(&s3, &http, "GET", path, &[], b""))
            .is_err(),
        "a stopped server answers"
    );
    s3.start_again().unwrap();

    let (status, after, body) = rt
        .block_on(send(&s3, &http, "GET", path, &[], b""))
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, bytes);
    assert_eq!(after.as_deref(), Some(etag.as_str()));
    // Still there for a conditional create, too; and a new object can be written.
    let (status, _, _) = rt
        .block_on(send(
            &s3,
            &http,
            "PUT",
            path,
            &[("If-None-Match", "*")],
            b"other",
        ))
        .unwrap();
    assert_eq!(status, 412);
    let (status, _, _) = rt
        .block_on(send(
            &s3,
            &http,
            "PUT",
            "/archive/tiles/x000/002",
            &[("If-None-Match", "*")],
            b"two",
        ))
        .unwrap();
    assert_eq!(status, 200);

    // A second crash keeps both.
    s3.stop();
    s3.start_again().unwrap();
    for (path, want) in [
        (path, bytes.as_slice()),
        ("/archive/tiles/x000/002", b"two"),
    ] {
        let (status, _, body) = rt
            .block_on(send(&s3, &http, "GET", path, &[], b""))
            .unwrap();
        assert_eq!((status, body.as_slice()), (200, want), "{path}");
    }
}

/// Racing conditional creates of one key: one wins, and after a crash the object is the
/// winner's (the launcher handles writes in the order it journals them).
#[test]
fn one_winner_of_racing_creates_also_after_a_kill() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = client();
    let mut s3 = start();
    s3.create_bucket("race").unwrap();
    let mut winners = Vec::new();
    for key in 0..5 {
        let path = format!("/race/k{key}");
        let results = rt.block_on(futures::future::join_all((0..12).map(|writer| {
            let (s3, http, path) = (&s3, &http, path.clone());
            async move {
                let body = format!("writer {writer}");
                let (status, _, _) = send(
                    s3,
                    http,
                    "PUT",
                    &path,
                    &[("If-None-Match", "*")],
                    body.as_bytes(),
                )
                .await
                .unwrap();
                (status, body)
            }
        })));
        let won: Vec<_> = results.iter().filter(|(s, _)| *s == 200).collect();
        assert_eq!(won.len(), 1, "{results:?}");
        assert!(
            results.iter().all(|(s, _)| *s == 200 || *s == 412),
            "{results:?}"
        );
        winners.push((path, won[0].1.clone()));
    }
    s3.stop();
    s3.start_again().unwrap();
    for (path, winner) in winners {
        let (status, _, body) = rt
            .block_on(send(&s3, &http, "GET", &path, &[], b""))
            .unwrap();
        assert_eq!((status, String::from_utf8(body).unwrap()), (200, winner));
    }
}

/// moto's answers the archive may rely on: `If-Match` on PUT, and listing by pages.
#[test]
fn if_match_and_list_pages() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = client();
    let s3 = start();
    s3.create_bucket("bkt").unwrap();
    let put = |path: &str, headers: &[(&str, &str)], body: &[u8]| {
        rt.block_on(send(&s3, &http, "PUT", path, headers, body))
            .unwrap()
    };
    let (_, etag, _) = put("/bkt/a", &[], b"one");
    let etag = etag.unwrap();
    // The ETag of a single PUT is the quoted MD5 of the bytes.
    assert_eq!(etag, "\"f97c5d29941bfb1b2fdab0874906ab82\"");
    assert_eq!(put("/bkt/a", &[("If-Match", "\"0000\"")], b"two").0, 412);
    assert_eq!(put("/bkt/missing", &[("If-Match", &etag)], b"two").0, 404);
    assert_eq!(put("/bkt/a", &[("If-Match", &etag)], b"two").0, 200);

    for i in 0..5 {
        put(&format!("/bkt/p/{i}"), &[], b"x");
    }
    let (status, _, page) = rt
        .block_on(send(
            &s3,
            &http,
            "GET",
            "/bkt?list-type=2&max-keys=2&prefix=p%2F",
            &[],
            b"",
        ))
        .unwrap();
    let page = String::from_utf8(page).unwrap();
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<IsTruncated>true</IsTruncated>"), "{page}");
    assert!(
        page.contains("<Key>p/0</Key><") && page.contains("<Key>p/1</Key><"),
        "{page}"
    );
    assert!(page.contains("<NextContinuationToken>"), "{page}");
}

/// A paused server (SIGSTOP) answers nothing until resumed.
#[test]
fn paused_server_hangs_until_resumed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = start();
    s3.create_bucket("hang").unwrap();
    let quick = auditstamp::client::builder(
        &auditstamp::client::ClientTls::default(),
        Duration::from_millis(500),
    )
    .unwrap()
    .build()
    .unwrap();
    s3.pause().unwrap();
    let err = rt
        .block_on(send(&s3, &quick, "GET", "/hang?list-type=2", &[], b""))
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    s3.resume().unwrap();
    let (status, _, _) = rt
        .block_on(send(&s3, &quick, "GET", "/hang?list-type=2", &[], b""))
        .unwrap();
    assert_eq!(status, 200);
}
