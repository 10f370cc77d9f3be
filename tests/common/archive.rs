//! Helpers of the archive tests: a real S3-compatible server (moto's, [`TestS3`]), an
//! appliance archiving to it, and reads and writes of its objects done by the test itself.
#![allow(unused_imports)]

use super::*;
use auditstamp::internal::TestS3;
use serde_json::Value;
use std::time::Instant;

/// A moto S3 server with bucket `bucket`, started for one test.
pub fn s3_with_bucket(bucket: &str) -> TestS3 {
    let s3 = TestS3::start().unwrap_or_else(|e| panic!("{e}"));
    s3.create_bucket(bucket).unwrap();
    s3
}

/// The `[archive]` section for `s3://<bucket>/<prefix>` on `s3`, with `extra` lines.
pub fn archive_section(s3: &TestS3, bucket: &str, prefix: &str, extra: &str) -> String {
    format!(
        "[archive]\nurl = \"s3://{bucket}/{prefix}\"\nendpoint = \"{}\"\n{extra}\n",
        s3.endpoint()
    )
}

impl Appliance {
    /// Writes the default config with `section` (an `[archive]` section and any other
    /// lines) before `[log]`.
    pub fn write_config_with(&self, replace: &[(&str, &str)], section: &str) {
        let mut all: Vec<(&str, &str)> = replace.to_vec();
        let log = format!("{section}\n[log]\n");
        all.push(("[log]\n", &log));
        self.write_config(&all);
    }

    /// A command with the archive's credentials in its environment.
    pub fn command_with_s3(&self, args: &[&str], s3: &TestS3) -> Command {
        let mut c = self.command(args);
        c.env("AWS_ACCESS_KEY_ID", s3.access_key())
            .env("AWS_SECRET_ACCESS_KEY", s3.secret_key());
        c
    }

    /// Starts `serve` with the archive's credentials.
    pub fn start_with_s3(&self, s3: &TestS3) -> Server {
        self.start_command(self.command_with_s3(&["serve"], s3))
    }
}

/// `GET /readyz`'s `archive` part.
pub async fn archive_status(client: &reqwest::Client, server: &Server) -> Value {
    let (_, body) = get_json(client, &server.url("/readyz")).await;
    body["archive"].clone()
}

/// Waits (60 s at most) until the archive holds at least `size` events; returns the
/// `/readyz` archive part.
pub async fn wait_archived(client: &reqwest::Client, server: &Server, size: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = archive_status(client, server).await;
        if a["archived_size"].as_u64().unwrap_or(0) >= size {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "not archived up to {size}: {a}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts `n` events from `first` on in one batch; their indexes.
pub async fn post_batch(client: &reqwest::Client, server: &Server, first: u64, n: u64) -> Value {
    post_events(client, &server.url(""), (first..first + n).map(event)).await
}

/// A signed request to `s3`: status and body.
pub async fn s3_request(
    s3: &TestS3,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let http = reqwest::Client::new();
    let mut req = http.request(method.parse().unwrap(), format!("{}{path}", s3.endpoint()));
    for (n, v) in s3.sign(method, path, headers, body).unwrap() {
        req = req.header(n, v);
    }
    let resp = req.body(body.to_vec()).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap().to_vec())
}

/// The object at `/<bucket>/<key>`, if there is one.
pub async fn s3_get(s3: &TestS3, path: &str) -> Option<Vec<u8>> {
    let (status, body) = s3_request(s3, "GET", path, &[], b"").await;
    match status {
        200 => Some(body),
        404 => None,
        s => panic!("GET {path}: {s} {}", String::from_utf8_lossy(&body)),
    }
}

/// `auditstamp verify chain --s3 s3://<bucket>/<prefix>` against `s3`, trusting `key`,
/// which must pass; what it printed.
pub fn verify_archive(
    app: &Appliance,
    s3: &TestS3,
    bucket: &str,
    prefix: &str,
    key: &str,
) -> String {
    let out = app
        .command_with_s3(
            &[
                "verify",
                "chain",
                "--s3",
                &format!("s3://{bucket}/{prefix}"),
                "--s3-endpoint",
                &s3.endpoint(),
                "--key",
                key,
            ],
            s3,
        )
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    said
}

/// Waits (60 s at most) for the archive's alarm; returns `/readyz`'s archive part.
pub async fn wait_alarm(client: &reqwest::Client, server: &Server) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = archive_status(client, server).await;
        if !a["alarm"].is_null() {
            return a;
        }
        assert!(Instant::now() < deadline, "no alarm: {a}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (90 s at most: past the store's timeout and retries) until the archive reports a
/// failure; returns `/readyz`'s archive part.
pub async fn wait_failing(client: &reqwest::Client, server: &Server) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let a = archive_status(client, server).await;
        if !a["last_error"].is_null() {
            return a;
        }
        assert!(Instant::now() < deadline, "no failure shown: {a}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `GET /metrics` scrape.
pub async fn metrics_text(client: &reqwest::Client, server: &Server) -> String {
    client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the unlabelled metric `name` in a scrape.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The appliance's note verifier key (`chain verifier-key`, from the HSM).
pub fn chain_key(app: &Appliance) -> String {
    let out = app.cli_ok(&["chain", "verifier-key"]);
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// An appliance (ECDSA P-256 TSA key) whose config archives to `s3://archive/<prefix>` on
/// `s3`, with `extra` lines in `[archive]`; not started.
pub fn archiving_appliance(s3: &TestS3, prefix: &str, extra: &str) -> Appliance {
    let app = Appliance::new("ecdsa-p256");
    app.write_config_with(&[], &archive_section(s3, "archive", prefix, extra));
    app
}
