//! Test support: a real appliance (SoftHSM2 token, keys made with the project's own CLI,
//! `auditstamp serve` on a real socket) in a temporary directory of its own, one fixture per
//! file (appliance, server, openssl and its CA, the in-process token, the witness, the PKI,
//! chain helpers); the small helpers every fixture shares are here.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod appliance;
mod archive;
/// A headless Chromium behind its own chromedriver, for the web consoles' tests.
pub mod browser;
mod chain;
mod haproxy;
mod openssl;
mod pki;
mod server;
mod token;
mod witness;

pub use appliance::*;
pub use archive::*;
pub use chain::*;
pub use haproxy::*;
pub use openssl::*;
pub use pki::*;
pub use server::*;
pub use token::*;
pub use witness::*;

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const POLICY: &str = "1.3.6.1.5.5.7.13.1";
pub const POLICY_2: &str = "1.3.6.1.5.5.7.13.2";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_auditstamp")
}

fn module() -> String {
    let m = std::env::var("AUDITSTAMP_PKCS11_MODULE").unwrap_or_else(|_| MODULE.into());
    assert!(
        Path::new(&m).exists(),
        "the SoftHSM2 PKCS#11 module {m} is missing: install it with `apt-get install -y softhsm2` \
         (or run ./deploy/test.sh, which installs it)"
    );
    m
}

/// Makes AWS-LC the test process's default rustls provider, as the binary does at start:
/// the tests' own `reqwest::Client::new()` and `reqwest::get` ask rustls for it (reqwest is
/// built without a provider of its own). Called by [`rt`], [`Appliance::bare`] and
/// [`WitnessNode::new`]; harmless to call again.
pub fn tls_provider() {
    auditstamp::client::install_default_provider();
}

/// POSTs `body` with `content_type`; returns status, content type and body.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    let resp = client
        .post(url)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, resp.bytes().await.unwrap().to_vec())
}

/// A current-thread runtime for tests (and AWS-LC as the process's rustls provider, see
/// [`tls_provider`]).
pub fn rt() -> tokio::runtime::Runtime {
    tls_provider();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Bytes of the files under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// A TCP connection to `addr` from the local address `from` (any of 127.0.0.0/8 on
/// loopback): per-address limits count it apart from the test's other clients.
pub fn connect_from(from: &str, addr: SocketAddr) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(from.parse().unwrap(), 0))
            .unwrap();
        socket.connect(addr).await.unwrap()
    });
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// Reads from `s` (discarding) until the peer closes; how long after `since` that was,
/// or `None` if it was still open at `since + limit`.
pub fn closed_after(
    s: &mut std::net::TcpStream,
    since: std::time::Instant,
    limit: Duration,
) -> Option<Duration> {
    use std::io::Read;
    let mut buf = [0u8; 512];
    loop {
        let left = (since + limit).checked_duration_since(std::time::Instant::now())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(since.elapsed()),
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                if since.elapsed() >= limit {
                    return None;
                }
            }
            // A reset is a close too.
            Err(_) => return Some(since.elapsed()),
        }
    }
}

/// The value of the sample `name{labels}` (as written, e.g.
/// `auditstamp_connections_refused_total{reason="per_address"}`) in a Prometheus text.
pub fn metric_value(text: &str, sample: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}
