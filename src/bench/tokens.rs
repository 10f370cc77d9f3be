//! `auditstamp bench hsm` and `auditstamp bench tokens`: the HSM's own signing limit, and
//! RFC 3161 tokens through HTTP against a running server, with the CPU each costs.
//!
//! Both print figures for people and a last `result ...` line of `key=value` pairs for
//! scripts (`deploy/bench.sh` combines them into ratios).

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use super::BenchError;
use crate::signer::pkcs11::Hsm;
use crate::signer::pool::SigningPool;
use crate::signer::soft_verify::SoftVerifier;
use crate::signer::Signer;

/// `bench hsm`
#[derive(Debug, Args)]
pub struct HsmArgs {
    /// The configuration naming the HSM (module, token, PIN source).
    #[arg(long, env = "AUDITSTAMP_CONFIG")]
    pub config: std::path::PathBuf,
    /// The key to sign with.
    #[arg(long)]
    pub label: String,
    /// Session counts to measure, comma-separated.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    pub sessions: Vec<usize>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
}

/// `bench tokens`
#[derive(Debug, Args)]
pub struct TokensArgs {
    /// The server's base URL (`https://host:port`, or `http://` for a plain listener).
    #[arg(long)]
    pub url: String,
    /// TLS to the server (for an https:// URL).
    #[command(flatten)]
    pub tls: crate::client::TlsArgs,
    /// Concurrent keep-alive connections: one measurement per count, comma-separated,
    /// printed side by side (one connection is what an agency's client sending one request
    /// after another sees; many, what a busy data center sees).
    #[arg(long, default_value = "1,16,64", value_delimiter = ',', num_args = 1..)]
    pub connections: Vec<usize>,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Requests per second to send (spread over the connections); 0: as fast as it answers.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// The server's process id, to read its CPU time per token from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Send `GET /healthz` instead of time-stamp requests: what the same server and client
    /// spend on an HTTP exchange that does no work (the floor under every token's cost).
    #[arg(long)]
    pub floor: bool,
    /// The HSM's raw signing rate measured in the same run (`bench hsm`, signatures/s): each
    /// row is also given as a share of it.
    #[arg(long)]
    pub hsm_rate: Option<f64>,
    /// The HSM's raw CPU per signature measured in the same run (`bench hsm`, µs): with
    /// `--server-pid`, each row also gives the server's CPU per token outside the signature
    /// (and outside the verification, with `--verify-us`).
    #[arg(long)]
    pub hsm_cpu_us: Option<f64>,
    /// The CPU of one verify-after-sign verification (`bench hsm`, µs), when the server
    /// verifies.
    #[arg(long)]
    pub verify_us: Option<f64>,
}

/// One measurement of `bench tokens`.
struct Row {
    connections: usize,
    rate: f64,
    p50: f64,
    p99: f64,
    errors: u64,
    tokens: u64,
    client_us: f64,
    server_us: Option<f64>,
}

/// CPU time (user + system) of this process.
fn own_cpu() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a rusage into the pointer it is given, nothing else.
    #[allow(unsafe_code)]
    let ru = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) != 0 {
            return Duration::ZERO;
        }
        ru.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time of process `pid` from /proc/PID/stat (utime + stime).
fn process_cpu(pid: u32) -> Result<Duration, BenchError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| BenchError::Other(format!("/proc/{pid}/stat: {e}")))?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| BenchError::Other(format!("/proc/{pid}/stat: unexpected format")))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name and state.
    #[allow(unsafe_code)]
    // SAFETY: sysconf only reads a system constant.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    Ok(Duration::from_micros(
        (ticks(11) + ticks(12)) * 1_000_000 / hz.max(1),
    ))
}

/// Runs `bench hsm`.
pub fn hsm(a: &HsmArgs, hsm: &Hsm) -> Result<(), BenchError> {
    let runtime = super::runtime()?;
    let message = vec![0x5au8; 200];
    println!(
        "auditstamp bench hsm: key {:?}, {} s per run",
        a.label, a.seconds
    );
    let key = hsm.find_key(&a.label)?;
    let mut results = Vec::new();
    let mut pool_results = Vec::new();
    for &sessions in &a.sessions {
        // The token's own limit: a thread per session signing in a loop.
        let cpu0 = own_cpu();
        let start = Instant::now();
        let count = hsm.sign_flat_out(&key, sessions, &message, Duration::from_secs(a.seconds))?;
        let secs = start.elapsed().as_secs_f64();
        let rate = count as f64 / secs;
        let cpu_us = own_cpu().saturating_sub(cpu0).as_secs_f64() * 1e6 / count.max(1) as f64;
        let algorithm = crate::signer::SignatureAlgorithm::for_key(key.algorithm);
        println!(
            "sign {algorithm:?}, {sessions} session(s), raw      {rate:>9.0} signatures/s   {cpu_us:>7.1} µs CPU each (a thread per session in a loop, SoftHSM included)"
        );
        // The same through the signing pool, as the server signs (queue, worker threads).
        let pool = Arc::new(SigningPool::start(hsm, &a.label, sessions, false)?);
        let cpu0 = own_cpu();
        let start = Instant::now();
        let deadline = start + Duration::from_secs(a.seconds);
        let count: u64 = runtime.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..sessions * 4 {
                let (pool, message) = (pool.clone(), message.clone());
                tasks.push(tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        if pool.sign_async(message.clone()).await.is_ok() {
                            n += 1;
                        }
                    }
                    n
                }));
            }
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap_or(0);
            }
            total
        });
        let secs = start.elapsed().as_secs_f64();
        let pool_rate = count as f64 / secs;
        let pool_cpu = own_cpu().saturating_sub(cpu0).as_secs_f64() * 1e6 / count.max(1) as f64;
        println!(
            "sign {algorithm:?}, {sessions} session(s), pool     {pool_rate:>9.0} signatures/s   {pool_cpu:>7.1} µs CPU each (async callers through the signing pool)"
        );
        pool_results.push((sessions, pool_rate, pool_cpu));
        results.push((sessions, rate, cpu_us));
        // The software check verify-after-sign adds, per signature.
        if sessions == a.sessions[0] {
            let sig = pool.sign(&message)?;
            let verifier = SoftVerifier::from_spki_der(pool.public_key_der())?;
            let n = 2000u32;
            let t = Instant::now();
            for _ in 0..n {
                verifier.verify(&message, &sig)?;
            }
            let us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
            println!("verify {algorithm:?} in software (aws-lc-rs, as verify-after-sign does)   {us:>7.1} µs each");
            results.push((0, 0.0, us));
            // The candidate it was chosen over, side by side.
            if algorithm == crate::signer::SignatureAlgorithm::EcdsaSha256 {
                use p256::pkcs8::DecodePublicKey;
                use signature::Verifier as _;
                let key = p256::ecdsa::VerifyingKey::from_public_key_der(pool.public_key_der())
                    .map_err(|e| BenchError::Other(e.to_string()))?;
                let der = p256::ecdsa::DerSignature::try_from(sig.as_slice())
                    .map_err(|e| BenchError::Other(e.to_string()))?;
                let t = Instant::now();
                for _ in 0..n {
                    key.verify(&message, &der)
                        .map_err(|e| BenchError::Other(e.to_string()))?;
                }
                let rc = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
                println!("verify {algorithm:?} in software (RustCrypto p256, not used)   {rc:>7.1} µs each");
            }
        }
    }
    let mut line = String::from("result");
    for (sessions, rate, cpu) in &pool_results {
        line.push_str(&format!(
            " pool_rate_{sessions}={rate:.0} pool_cpu_us_{sessions}={cpu:.1}"
        ));
    }
    for (sessions, rate, cpu) in &results {
        if *sessions == 0 {
            line.push_str(&format!(" verify_us={cpu:.1}"));
        } else {
            line.push_str(&format!(
                " rate_{sessions}={rate:.0} cpu_us_{sessions}={cpu:.1}"
            ));
        }
    }
    println!("{line}");
    Ok(())
}

/// A time-stamp request for a digest made from `n`, with a nonce and certReq.
fn request(n: u64) -> Result<Vec<u8>, BenchError> {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(n.to_be_bytes());
    let nonce = der::asn1::Int::new(&(n | 1 << 62).to_be_bytes())
        .map_err(|e| BenchError::Other(e.to_string()))?;
    crate::tsp::encode_request(&crate::tsp::RequestParams {
        hash: crate::tsp::HashAlgorithm::Sha256,
        digest: &digest,
        policy: None,
        nonce: Some(&nonce),
        cert_req: true,
    })
    .map_err(|e| BenchError::Other(e.to_string()))
}

/// The whole HTTP/1.1 request `bench tokens` sends: `GET /healthz` for the floor, else a
/// time-stamp request for a digest made from `n`.
fn http_request(target: &Target, n: u64) -> Result<Vec<u8>, BenchError> {
    if target.floor {
        return Ok(format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
            target.path, target.host
        )
        .into_bytes());
    }
    let body = request(n)?;
    let mut out = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/timestamp-query\r\nContent-Length: {}\r\n\r\n",
        target.path,
        target.host,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Ok(out)
}

/// Where `bench tokens` sends its requests: `host:port`, the path (`/tsa`, or `/healthz`
/// for the floor), and for `https://` the TLS connector and the server's name.
struct Target {
    addr: String,
    host: String,
    path: String,
    floor: bool,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
}

/// The target of `url`; `tls` (the rustls client configuration) is used for `https://`.
fn target(
    url: &str,
    floor: bool,
    tls: impl FnOnce() -> Result<rustls::ClientConfig, BenchError>,
) -> Result<Target, BenchError> {
    let (rest, https) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (rest, false),
        (None, Some(rest)) => (rest, true),
        (None, None) => {
            return Err(BenchError::Other(format!(
                "bench tokens: {}: give an https:// (or http://) URL",
                crate::client::redact_userinfo(url)
            )))
        }
    };
    let (host, base) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() || host.contains('@') {
        return Err(BenchError::Other(format!(
            "bench tokens: {}: give host[:port], without user information",
            crate::client::redact_userinfo(url)
        )));
    }
    // The host name without its port (an IPv6 literal without its brackets).
    let (name, has_port) = match host.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((ip, port)) => (ip, port.starts_with(':')),
            None => {
                return Err(BenchError::Other(format!(
                    "bench tokens: {url}: unclosed [ in the host"
                )))
            }
        },
        None => match host.rsplit_once(':') {
            Some((name, _)) => (name, true),
            None => (host, false),
        },
    };
    let addr = if has_port {
        host.to_owned()
    } else {
        format!("{host}:{}", if https { 443 } else { 80 })
    };
    let base = base.trim_end_matches('/');
    let leaf = if floor { "healthz" } else { "tsa" };
    let path = if base.is_empty() {
        format!("/{leaf}")
    } else {
        format!("/{base}/{leaf}")
    };
    let tls = if https {
        let server = rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(|e| {
            BenchError::Other(format!(
                "bench tokens: {url}: {name:?} is not a server name: {e}"
            ))
        })?;
        let mut config = tls()?;
        // The load generator speaks HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some((tokio_rustls::TlsConnector::from(Arc::new(config)), server))
    } else {
        None
    };
    Ok(Target {
        addr,
        host: host.to_owned(),
        path,
        floor,
        tls,
    })
}

/// One keep-alive connection's requests until `deadline`: the latencies (µs) of granted
/// tokens (or, for the floor, of 2xx answers) and the number of failures. A broken
/// connection is opened again.
async fn load_connection(
    target: Arc<Target>,
    requests: Arc<Vec<Vec<u8>>>,
    deadline: Instant,
    schedule: Option<(Instant, Duration)>,
    first: usize,
    step: usize,
) -> (Vec<u64>, u64) {
    let mut latencies = Vec::new();
    let mut errors = 0u64;
    let mut conn: Option<Connection> = None;
    let mut next = schedule.map(|(start, _)| start);
    let mut i = first;
    while Instant::now() < deadline {
        if let (Some(at), Some((_, interval))) = (next.as_mut(), schedule) {
            tokio::time::sleep_until((*at).into()).await;
            *at += interval;
        }
        if conn.is_none() {
            conn = Connection::open(&target).await.ok();
            if conn.is_none() {
                errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let request = &requests[i % requests.len()];
        i += step;
        let t = Instant::now();
        let granted = match c.exchange(request).await {
            Ok((status, body)) if (200..300).contains(&status) => {
                target.floor || crate::tsp::granted_token(body).is_ok()
            }
            Ok(_) => false,
            Err(_) => {
                conn = None;
                false
            }
        };
        if granted {
            latencies.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
        } else {
            errors += 1;
        }
    }
    (latencies, errors)
}

/// A keep-alive HTTP/1.1 connection of the load generator: it writes whole requests made
/// beforehand and reads answers framed by Content-Length, nothing more (so that the
/// machine's CPU goes to the server, as with `wrk`).
struct Connection {
    stream: Stream,
    buf: Vec<u8>,
}

/// A connection's stream: plain TCP, or TLS over it.
enum Stream {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

impl Stream {
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        match self {
            Stream::Plain(s) => s.write_all(bytes).await,
            Stream::Tls(s) => {
                s.write_all(bytes).await?;
                // rustls may hold the last record until flushed.
                s.flush().await
            }
        }
    }

    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use tokio::io::AsyncReadExt;
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }
}

/// Where an answer's head ends, its status and its Content-Length.
fn parse_head(buf: &[u8]) -> Option<Result<(usize, u16, usize), ()>> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok();
    let parsed = head.and_then(|head| {
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let length = lines.find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })?;
        Some((end, status, length))
    });
    Some(parsed.ok_or(()))
}

impl Connection {
    async fn open(target: &Target) -> std::io::Result<Connection> {
        let tcp = tokio::net::TcpStream::connect(&target.addr).await?;
        tcp.set_nodelay(true)?;
        let stream = match &target.tls {
            None => Stream::Plain(tcp),
            Some((connector, name)) => {
                Stream::Tls(Box::new(connector.connect(name.clone(), tcp).await?))
            }
        };
        Ok(Connection {
            stream,
            buf: Vec::with_capacity(8192),
        })
    }

    /// Sends `request` and reads the answer: its status and body.
    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<(u16, &[u8])> {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        self.stream.send(request).await?;
        self.buf.clear();
        let mut chunk = [0u8; 8192];
        let (head, status, length) = loop {
            if let Some(parsed) = parse_head(&self.buf) {
                break parsed.map_err(|()| bad("an answer without status or Content-Length"))?;
            }
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(bad("the server closed the connection"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        while self.buf.len() < head + length {
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(bad("the server closed the connection"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        Ok((status, &self.buf[head..head + length]))
    }
}

/// One exchange before the run, so that a server that cannot be reached (refused, a TLS
/// handshake that fails, a client certificate it requires) is a clear error, not a count.
async fn probe(target: &Target, request: &[u8], url: &str) -> Result<(), BenchError> {
    let url = crate::client::redact_userinfo(url);
    let mut conn = Connection::open(target)
        .await
        .map_err(|e| BenchError::caused(format!("bench tokens: cannot connect to {url}"), e))?;
    let (status, body) = conn
        .exchange(request)
        .await
        .map_err(|e| BenchError::caused(format!("bench tokens: {url}"), e))?;
    if !(200..300).contains(&status) {
        let said = String::from_utf8_lossy(&body[..body.len().min(300)])
            .trim()
            .to_owned();
        return Err(BenchError::Other(format!(
            "bench tokens: {url}{}: answered {status}: {said}",
            target.path
        )));
    }
    Ok(())
}

/// Runs `bench tokens`: for each count of connections, that many keep-alive HTTP/1.1
/// connections on one thread (a lean client, so that the machine's cores go to the server),
/// each sending its next request when the last is answered, or on its own schedule with
/// `--rate`; then the rows side by side.
pub fn tokens(a: &TokensArgs) -> Result<(), BenchError> {
    let target = Arc::new(target(&a.url, a.floor, || {
        crate::client::rustls_config(&a.tls.client_tls())
            .map_err(|e| BenchError::caused("cannot set up TLS", e))
    })?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Other(e.to_string()))?;
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..1024)
            .map(|n| http_request(&target, n))
            .collect::<Result<_, _>>()?,
    );
    runtime.block_on(probe(&target, &requests[0], &a.url))?;
    let what = if a.floor { "GET /healthz" } else { "tokens" };
    let unit = if a.floor { "request" } else { "token" };
    let mut rows = Vec::new();
    for &connections in &a.connections {
        let row = measure(&runtime, &target, &requests, connections.max(1), a)?;
        println!(
            "{what}, {} connection(s){}   {:>8.0} {unit}s/s   p50 {:.2} ms   p99 {:.2} ms   {}client CPU {:.1} µs/{unit}   ({} {unit}s, {} errors)",
            row.connections,
            if a.rate > 0 { format!(" at {} req/s", a.rate) } else { String::new() },
            row.rate,
            row.p50,
            row.p99,
            row.server_us.map_or(String::new(), |c| format!("server CPU {c:.1} µs/{unit}   ")),
            row.client_us,
            row.tokens,
            row.errors,
        );
        rows.push(row);
    }
    print!("{}", side_by_side(&rows, a, unit));
    let mut line = String::from("result");
    for (i, row) in rows.iter().enumerate() {
        let c = row.connections;
        let mut fields = vec![
            ("rate", format!("{:.0}", row.rate)),
            ("p50_ms", format!("{:.3}", row.p50)),
            ("p99_ms", format!("{:.3}", row.p99)),
            ("errors", row.errors.to_string()),
            ("client_cpu_us", format!("{:.1}", row.client_us)),
        ];
        if let Some(server) = row.server_us {
            fields.push(("server_cpu_us", format!("{server:.1}")));
        }
        if let Some(outside) = outside_us(row, a) {
            fields.push(("outside_us", format!("{outside:.1}")));
        }
        for (k, v) in &fields {
            line.push_str(&format!(" {k}_{c}={v}"));
        }
        // The last row also without its count, for scripts that ask for one.
        if i + 1 == rows.len() {
            for (k, v) in &fields {
                line.push_str(&format!(" {k}={v}"));
            }
        }
    }
    println!("{line}");
    Ok(())
}

/// The server's CPU per token outside the HSM's signature (and the verification, when
/// given), when the server's CPU and the HSM's were measured.
fn outside_us(row: &Row, a: &TokensArgs) -> Option<f64> {
    Some(row.server_us? - a.hsm_cpu_us? - a.verify_us.unwrap_or(0.0))
}

/// The rows as a table: rate, share of the HSM's raw rate, latencies, CPU.
fn side_by_side(rows: &[Row], a: &TokensArgs, unit: &str) -> String {
    let rate = format!("{unit}s/s");
    let server = format!("server µs/{unit}");
    let outside = format!(
        "outside HSM{} µs",
        if a.verify_us.is_some() { "+verify" } else { "" }
    );
    let client = format!("client µs/{unit}");
    let width = |label: &str| label.chars().count();
    let mut out = format!(
        "connections   {rate}   of raw HSM   p50 ms   p99 ms   {server}   {outside}   {client}\n"
    );
    let or_dash = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.1}"));
    for row in rows {
        out.push_str(&format!(
            "{:>11}   {:>rw$.0}   {:>10}   {:>6.2}   {:>6.2}   {:>sw$}   {:>ow$}   {:>cw$.1}\n",
            row.connections,
            row.rate,
            a.hsm_rate
                .filter(|r| *r > 0.0)
                .map_or("–".to_owned(), |r| format!(
                    "{:.0}%",
                    100.0 * row.rate / r
                )),
            row.p50,
            row.p99,
            or_dash(row.server_us),
            or_dash(outside_us(row, a)),
            row.client_us,
            rw = width(&rate),
            sw = width(&server),
            ow = width(&outside),
            cw = width(&client),
        ));
    }
    if let Some(r) = a.hsm_rate {
        out.push_str(&format!(
            "raw HSM rate (bench hsm, same run): {r:.0} signatures/s{}\n",
            a.hsm_cpu_us
                .map_or(String::new(), |c| format!(", {c:.1} µs CPU each"))
        ));
    }
    out
}

/// One measurement: `connections` connections for `a.seconds`.
fn measure(
    runtime: &tokio::runtime::Runtime,
    target: &Arc<Target>,
    requests: &Arc<Vec<Vec<u8>>>,
    connections: usize,
    a: &TokensArgs,
) -> Result<Row, BenchError> {
    let cpu0 = a.server_pid.map(process_cpu).transpose()?;
    let own0 = own_cpu();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(a.seconds);
    // With a rate: each connection sends on its own schedule, rate / connections per second,
    // the connections' schedules spread evenly over one interval.
    let interval =
        (a.rate > 0).then(|| Duration::from_secs_f64(connections as f64 / a.rate as f64));
    let (latencies, errors) = runtime.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..connections {
            let schedule =
                interval.map(|iv| (start + iv.mul_f64(c as f64 / connections as f64), iv));
            tasks.push(tokio::spawn(load_connection(
                target.clone(),
                requests.clone(),
                deadline,
                schedule,
                c,
                connections,
            )));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            match t.await {
                Ok((l, e)) => {
                    all.extend(l);
                    errors += e;
                }
                Err(_) => errors += 1,
            }
        }
        (all, errors)
    });
    let secs = start.elapsed().as_secs_f64();
    let tokens = latencies.len() as u64;
    let (p50, p99) = super::percentiles(latencies);
    let (p50, p99) = (p50 as f64 / 1000.0, p99 as f64 / 1000.0);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / tokens.max(1) as f64;
    let server_us = match (a.server_pid, cpu0) {
        (Some(pid), Some(c0)) => Some(per(process_cpu(pid)?.saturating_sub(c0))),
        _ => None,
    };
    Ok(Row {
        connections,
        rate: tokens as f64 / secs,
        p50,
        p99,
        errors,
        tokens,
        client_us: per(own_cpu().saturating_sub(own0)),
        server_us,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::BenchError;

    fn no_tls() -> Result<rustls::ClientConfig, BenchError> {
        crate::client::rustls_config(&crate::client::ClientTls::default())
            .map_err(|e| BenchError::Other(e.to_string()))
    }

    fn target(url: &str, floor: bool) -> Result<super::Target, BenchError> {
        super::target(url, floor, no_tls)
    }

    #[test]
    fn targets_name_the_tsa_or_the_health_path_under_the_base() {
        let t = target("http://127.0.0.1:8318", false).unwrap();
        assert_eq!(
            (t.addr.as_str(), t.path.as_str()),
            ("127.0.0.1:8318", "/tsa")
        );
        let t = target("http://localhost/appliance/", true).unwrap();
        assert_eq!(
            (t.addr.as_str(), t.path.as_str(), t.floor),
            ("localhost:80", "/appliance/healthz", true)
        );
    }

    /// The rows are given side by side under their headings, each as a share of the HSM's
    /// raw rate, with the CPU outside the signature and the verification.
    #[test]
    fn rows_are_side_by_side_with_the_raw_rate_as_base() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: super::TokensArgs,
        }
        let a = Cli::parse_from([
            "x",
            "--url",
            "http://h:1",
            "--hsm-rate",
            "8000",
            "--hsm-cpu-us",
            "100",
            "--verify-us",
            "50",
        ])
        .a;
        assert_eq!(a.connections, [1, 16, 64], "the default counts");
        let row = |connections, rate, server_us| super::Row {
            connections,
            rate,
            p50: 0.5,
            p99: 1.0,
            errors: 0,
            tokens: 10,
            client_us: 20.0,
            server_us,
        };
        let table = super::side_by_side(
            &[row(1, 800.0, Some(400.0)), row(64, 4000.0, None)],
            &a,
            "token",
        );
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("outside HSM+verify µs"), "{table}");
        assert!(
            lines[1].contains("10%") && lines[1].contains("250.0"),
            "{table}"
        );
        assert!(
            lines[2].contains("50%") && lines[2].contains('–'),
            "{table}"
        );
        let width = |l: &str| l.chars().count();
        assert!(
            lines[..3].iter().all(|l| width(l) == width(lines[0])),
            "columns line up:\n{table}"
        );
        assert!(lines[3].contains("8000 signatures/s, 100.0 µs CPU each"));
    }

    #[test]
    fn answers_are_framed_by_their_content_length() {
        use super::parse_head;
        let answer = b"HTTP/1.1 200 OK\r\ncontent-type: x\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(parse_head(answer), Some(Ok((answer.len() - 3, 200, 3))));
        // Not all of the head yet.
        assert_eq!(parse_head(&answer[..20]), None);
        // A head without a length, or without a status, cannot be read.
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n"), Some(Err(())));
        assert_eq!(
            parse_head(b"garbage\r\ncontent-length: 1\r\n\r\n"),
            Some(Err(()))
        );
    }

    #[test]
    fn requests_are_whole_http_messages() {
        let t = target("http://127.0.0.1:8318", false).unwrap();
        let r = super::http_request(&t, 7).unwrap();
        let text = String::from_utf8_lossy(&r);
        assert!(
            text.starts_with("POST /tsa HTTP/1.1\r\nHost: 127.0.0.1:8318\r\n"),
            "{text}"
        );
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", r.len() - head.len() - 4)));
        assert!(!body.is_empty());
        let floor = super::http_request(&target("http://h:1", true).unwrap(), 0).unwrap();
        assert_eq!(floor, b"GET /healthz HTTP/1.1\r\nHost: h:1\r\n\r\n");
    }

    #[test]
    fn https_targets_speak_tls_to_the_named_server() {
        let t = target("https://localhost:8443/x", false).unwrap();
        assert_eq!(
            (t.addr.as_str(), t.path.as_str()),
            ("localhost:8443", "/x/tsa")
        );
        assert_eq!(t.tls.as_ref().unwrap().1.to_str(), "localhost");
        let t = target("https://[::1]/", true).unwrap();
        assert_eq!(t.addr, "[::1]:443");
        assert_eq!(t.tls.as_ref().unwrap().1.to_str(), "::1");
        assert!(target("http://h:1", false).unwrap().tls.is_none());
    }

    #[test]
    fn targets_refuse_what_the_client_cannot_speak() {
        let e = target("ftp://127.0.0.1:8318", false).err().unwrap();
        assert!(e.to_string().contains("give an https://"), "{e}");
        assert!(target("http:///tsa", true).is_err());
        let e = target("https://user:pw@h/", true).err().unwrap();
        assert!(!e.to_string().contains("pw"), "{e}");
    }
}
