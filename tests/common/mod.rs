//! Test support: a real appliance (SoftHSM2 token, keys made with the project's own CLI,
//! `auditstamp serve` on a real socket) in a temporary directory of its own.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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

/// One appliance's directory: token, keys, config.
pub struct Appliance {
    pub dir: tempfile::TempDir,
    pub algorithm: String,
    pub config: PathBuf,
}

impl Appliance {
    /// A fresh token with a TSA key of `algorithm` certified by a development CA.
    pub fn new(algorithm: &str) -> Appliance {
        let a = Appliance::bare(algorithm);
        a.provision_dev_keys(algorithm);
        a
    }

    /// A fresh, empty token and a config naming key "tsa" (not yet made).
    pub fn bare(algorithm: &str) -> Appliance {
        tls_provider();
        let dir = tempfile::tempdir().unwrap();
        let a = Appliance {
            algorithm: algorithm.into(),
            config: dir.path().join("auditstamp.toml"),
            dir,
        };
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(root.join("hsm-sim/create-token.sh"))
            .arg(a.hsm_dir())
            .arg("test-token")
            .env("AUDITSTAMP_BIN", bin())
            .env("AUDITSTAMP_PKCS11_MODULE", module())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "create-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        a.write_config(&[]);
        a.cli_ok(&[
            "keys",
            "generate",
            "--label",
            "chain",
            "--algorithm",
            "ed25519",
            "--purpose",
            "chain",
        ]);
        a
    }

    /// Key "tsa" of `algorithm`, certified by the development CA.
    pub fn provision_dev_keys(&self, algorithm: &str) {
        let a = self;
        a.cli_ok(&[
            "keys",
            "generate",
            "--label",
            "tsa",
            "--algorithm",
            algorithm,
            "--purpose",
            "tsa",
        ]);
        a.cli_ok(&["keys", "dev-ca", "--out", a.ca_pem().to_str().unwrap()]);
        a.cli_ok(&[
            "keys",
            "issue-dev-cert",
            "--label",
            "tsa",
            "--subject",
            "CN=test TSA,O=auditstamp tests,C=EE",
            "--out",
            a.tsa_pem().to_str().unwrap(),
        ]);
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn hsm_dir(&self) -> PathBuf {
        self.path().join("hsm")
    }
    pub fn ca_pem(&self) -> PathBuf {
        self.path().join("pki/ca.pem")
    }
    pub fn tsa_pem(&self) -> PathBuf {
        self.path().join("pki/tsa.pem")
    }
    pub fn softhsm_conf(&self) -> PathBuf {
        self.hsm_dir().join("softhsm2.conf")
    }

    /// Writes the config; each `(from, to)` replaces a line of the default.
    pub fn write_config(&self, replace: &[(&str, &str)]) {
        let mut text = format!(
            r#"[node]
id = 42
name = "test-appliance"
state_dir = "{state}"

[hsm]
module = "{module}"
token_label = "test-token"
pin_file = "hsm/user.pin"
sessions = 2

[tsa]
key_label = "tsa"
chain_file = "pki/ca.pem"
hash_algorithms = ["sha256", "sha384", "sha512"]
policies = ["{POLICY}", "{POLICY_2}"]
default_policy = "{POLICY}"
accuracy = {{ seconds = 1, millis = 500 }}

[http]
listen = "127.0.0.1:0"
plain_http = true
max_body_bytes = 16384
rate_limit = {{ per_second = 0 }}
# Every test client comes from 127.0.0.1 (some open 200 connections at once).
max_connections_per_address = 1024

[chain]
key_label = "chain"
origin = "test-appliance.example/chain"
seal_interval_ms = 200

[log]
level = "info"
"#,
            state = self.path().display(),
            module = module(),
        );
        for (from, to) in replace {
            assert!(text.contains(from), "config has no {from:?}");
            text = text.replace(from, to);
        }
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("SOFTHSM2_CONF", self.softhsm_conf())
            .env("AUDITSTAMP_CONFIG", &self.config)
            .env_remove("AUDITSTAMP_STATE_DIR")
            .env_remove("AUDITSTAMP_LISTEN")
            .env_remove("RUST_LOG");
        c
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub fn cli_ok(&self, args: &[&str]) -> Output {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "auditstamp {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Starts `auditstamp serve`; waits until it listens.
    pub fn start(&self) -> Server {
        self.start_command(self.command(&["serve"]))
    }

    /// Starts `auditstamp serve` with its files limited to `kib` KiB each (`ulimit -f`,
    /// SIGXFSZ ignored): writes past it fail as on a full disk.
    pub fn start_with_file_limit(&self, kib: u64) -> Server {
        let c = self.command(&[]);
        let script = format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" serve");
        let mut wrapped = Command::new("bash");
        wrapped.args(["-c", &script, bin()]);
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        self.start_command(wrapped)
    }

    /// Starts the server `cmd` runs; waits until it listens.
    pub fn start_command(&self, cmd: Command) -> Server {
        spawn_server(cmd, "TSA at ")
    }

    /// Runs `serve` expecting it to fail at startup; returns its stderr.
    pub fn start_fails(&self) -> String {
        let mut child = self
            .command(&["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        for _ in 0..300 {
            if let Some(status) = child.try_wait().unwrap() {
                let out = child.wait_with_output().unwrap();
                assert!(!status.success());
                return String::from_utf8_lossy(&out.stderr).into_owned();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        panic!("serve did not fail within 30 s");
    }
}

/// A running `auditstamp serve`.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "server exited with {status}: {}",
                    self.log.lock().unwrap()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not stop on SIGTERM");
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to 10 s for the server to log a line containing `needle`.
    pub fn wait_for_log(&self, needle: &str) -> bool {
        for _ in 0..200 {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs openssl; panics with its output on failure.
pub fn openssl(args: &[&str]) -> Output {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `openssl ts -query` for `data` (a file), returning the request DER.
pub fn ts_query(
    dir: &Path,
    data: &Path,
    hash: &str,
    nonce: bool,
    cert: bool,
    name: &str,
) -> PathBuf {
    let out = dir.join(format!("{name}.tsq"));
    let mut args = vec!["ts", "-query", "-data", data.to_str().unwrap(), hash];
    if !nonce {
        args.push("-no_nonce");
    }
    if cert {
        args.push("-cert");
    }
    args.extend(["-out", out.to_str().unwrap()]);
    openssl(&args);
    out
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

/// A certificate authority made with the openssl CLI (test-only keys in files): a root,
/// as an office's real CA would be, outside the appliance.
pub struct OpensslCa {
    pub dir: PathBuf,
}

impl OpensslCa {
    pub fn new(dir: &Path) -> OpensslCa {
        std::fs::create_dir_all(dir).unwrap();
        let ca = OpensslCa {
            dir: dir.to_owned(),
        };
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("serial"), "1000\n").unwrap();
        std::fs::write(
            dir.join("ca.cnf"),
            format!(
                "[ca]\ndefault_ca = d\n[d]\ndatabase = {db}\nserial = {serial}\nnew_certs_dir = {dir}\n\
                 default_md = sha256\npolicy = p\nunique_subject = no\ncopy_extensions = copy\n\
                 default_days = 365\n\
                 [p]\ncommonName = supplied\norganizationName = optional\ncountryName = optional\n\
                 [good]\nbasicConstraints = critical,CA:FALSE\nsubjectKeyIdentifier = hash\n\
                 authorityKeyIdentifier = keyid\n\
                 [eku_noncritical]\nbasicConstraints = critical,CA:FALSE\n\
                 keyUsage = critical,digitalSignature\nextendedKeyUsage = timeStamping\n\
                 [eku_extra]\nbasicConstraints = critical,CA:FALSE\n\
                 keyUsage = critical,digitalSignature\nextendedKeyUsage = critical,timeStamping,codeSigning\n",
                db = dir.join("index.txt").display(),
                serial = dir.join("serial").display(),
                dir = dir.display(),
            ),
        )
        .unwrap();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            ca.path("ca.key").to_str().unwrap(),
            "-out",
            ca.path("ca.pem").to_str().unwrap(),
            "-subj",
            "/CN=Audit Office Test Root CA/O=auditstamp tests",
            "-days",
            "3650",
        ]);
        ca
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn cert(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// Signs `csr` with the extension section `section`; `dates` = (start, end) as
    /// YYYYMMDDHHMMSSZ, or the default validity.
    pub fn sign(&self, csr: &Path, out: &Path, section: &str, dates: Option<(&str, &str)>) {
        let mut args = vec![
            "ca".to_string(),
            "-batch".into(),
            "-notext".into(),
            "-config".into(),
            self.path("ca.cnf").to_str().unwrap().into(),
            "-cert".into(),
            self.cert().to_str().unwrap().into(),
            "-keyfile".into(),
            self.path("ca.key").to_str().unwrap().into(),
            "-extensions".into(),
            section.into(),
            "-in".into(),
            csr.to_str().unwrap().into(),
            "-out".into(),
            out.to_str().unwrap().into(),
        ];
        if let Some((start, end)) = dates {
            args.extend([
                "-startdate".into(),
                start.into(),
                "-enddate".into(),
                end.into(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl(&args);
    }
}

impl Appliance {
    /// Opens the appliance's token in this process through cryptoki and logs in.
    /// SOFTHSM2_CONF is read at C_Initialize, and a process has one PKCS#11 context at a
    /// time: the returned guard holds a process-wide lock, and finalizes the context when
    /// dropped so that the next test can initialize it again for its own token directory.
    pub fn login_in_process(&self) -> InProcessToken {
        use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
        static ONE_CONTEXT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let lock = ONE_CONTEXT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::env::set_var("SOFTHSM2_CONF", self.softhsm_conf());
        let pin = std::fs::read_to_string(self.hsm_dir().join("user.pin")).unwrap();
        let ctx = Pkcs11::new(module()).unwrap();
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        let slot = ctx
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == "test-token")
            .unwrap();
        let session = ctx.open_rw_session(slot).unwrap();
        let pin = cryptoki::types::AuthPin::new(pin.trim().to_owned().into());
        session
            .login(cryptoki::session::UserType::User, Some(&pin))
            .unwrap();
        InProcessToken {
            session: Some(session),
            ctx: Some(ctx),
            _lock: lock,
        }
    }

    /// Generates TSA key `label`, has `ca` certify it (extension section "good") and imports
    /// the certificate with the CA as chain. Returns the certificate's path.
    pub fn certify_with(&self, ca: &OpensslCa, label: &str, subject: &str) -> PathBuf {
        self.certify_with_dates(ca, label, subject, None)
    }

    /// [`certify_with`](Self::certify_with), with the validity `dates` = (start, end) as
    /// YYYYMMDDHHMMSSZ.
    pub fn certify_with_dates(
        &self,
        ca: &OpensslCa,
        label: &str,
        subject: &str,
        dates: Option<(&str, &str)>,
    ) -> PathBuf {
        let csr = self.path().join(format!("{label}.csr"));
        let cert = self.path().join(format!("{label}.pem"));
        self.cli_ok(&[
            "keys",
            "generate",
            "--label",
            label,
            "--algorithm",
            "ecdsa-p256",
            "--purpose",
            "tsa",
        ]);
        self.cli_ok(&[
            "keys",
            "csr",
            "--label",
            label,
            "--subject",
            subject,
            "--out",
            csr.to_str().unwrap(),
        ]);
        openssl(&["req", "-in", csr.to_str().unwrap(), "-verify", "-noout"]);
        ca.sign(&csr, &cert, "good", dates);
        let chain = ca.cert();
        self.cli_ok(&[
            "keys",
            "import-cert",
            "--label",
            label,
            "--cert",
            cert.to_str().unwrap(),
            "--chain",
            chain.to_str().unwrap(),
        ]);
        cert
    }
}

/// A logged-in session on an appliance's token, opened in the test process; see
/// [`Appliance::login_in_process`].
pub struct InProcessToken {
    session: Option<cryptoki::session::Session>,
    ctx: Option<cryptoki::context::Pkcs11>,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl std::ops::Deref for InProcessToken {
    type Target = cryptoki::session::Session;
    fn deref(&self) -> &Self::Target {
        self.session.as_ref().unwrap()
    }
}

impl Drop for InProcessToken {
    fn drop(&mut self) {
        drop(self.session.take());
        if let Some(ctx) = self.ctx.take() {
            let _ = ctx.finalize();
        }
    }
}

/// The data center's witness for end-to-end tests: a SoftHSM token of its own with the
/// Ed25519 key "witness" (purpose witness, made with the project's CLI) and a witness
/// configuration, in a temporary directory.
pub struct WitnessNode {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

/// The cosigner name of the test witness.
pub const WITNESS_NAME: &str = "witness.test.example/w1";

impl WitnessNode {
    /// A fresh token and key, and a configuration registering `logs` (`[[log]]` tables).
    pub fn new(logs: &str) -> WitnessNode {
        tls_provider();
        let dir = tempfile::tempdir().unwrap();
        let w = WitnessNode {
            config: dir.path().join("witness.toml"),
            dir,
        };
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(root.join("hsm-sim/create-token.sh"))
            .arg(w.hsm_dir())
            .arg("witness-token")
            .env("AUDITSTAMP_BIN", bin())
            .env("AUDITSTAMP_PKCS11_MODULE", module())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "create-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        w.write_config(logs);
        w.cli_ok(&[
            "keys",
            "generate",
            "--label",
            "witness",
            "--algorithm",
            "ed25519",
            "--purpose",
            "witness",
        ]);
        w
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn hsm_dir(&self) -> PathBuf {
        self.path().join("hsm")
    }
    /// The sled store's directory.
    pub fn store_dir(&self) -> PathBuf {
        self.path().join("witness-store")
    }

    /// Writes the configuration with `logs` as its `[[log]]` tables.
    pub fn write_config(&self, logs: &str) {
        let text = format!(
            r#"[witness]
name = "{WITNESS_NAME}"
key_label = "witness"
state_dir = "{state}"
listen = "127.0.0.1:0"
plain_http = true
stale_after_seconds = 3600
log_level = "info"

[hsm]
module = "{module}"
token_label = "witness-token"
pin_file = "hsm/user.pin"
sessions = 2

{logs}
"#,
            state = self.path().display(),
            module = module(),
        );
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("SOFTHSM2_CONF", self.hsm_dir().join("softhsm2.conf"))
            .env("AUDITSTAMP_CONFIG", &self.config)
            .env_remove("AUDITSTAMP_STATE_DIR")
            .env_remove("AUDITSTAMP_LISTEN")
            .env_remove("RUST_LOG");
        c
    }

    pub fn cli_ok(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "auditstamp {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Starts `auditstamp witness serve`; waits until it listens.
    pub fn start(&self) -> Server {
        spawn_server(self.command(&["witness", "serve"]), "witness listening on ")
    }
}

/// Spawns the server `cmd` runs and waits (30 s at most) for the log line holding
/// `marker` followed by its `http(s)://ADDR/...` URL.
pub fn spawn_server(mut cmd: Command, marker: &'static str) -> Server {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let log2 = log.clone();
    // Dropped by the reader when the server's stderr ends.
    let (ended_tx, ended) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let _ended = ended_tx;
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let at = line.split(marker).nth(1).map(|r| {
                r.trim_start_matches("https://")
                    .trim_start_matches("http://")
            });
            if let Some(rest) = at {
                let addr = rest.split('/').next().unwrap().to_string();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr);
                }
            }
            let mut l = log2.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => Server {
            child,
            addr: addr.parse().unwrap(),
            log,
        },
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().unwrap();
            // The whole log: wait until the reader has read it to the end.
            let _ = ended.recv_timeout(Duration::from_secs(5));
            panic!("server did not start ({status}): {}", log.lock().unwrap());
        }
    }
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

/// Test-only PKI made with openssl: a server CA and a localhost certificate, an agencies'
/// CA and two agency client certificates, and a client certificate of an unknown CA.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let p = Pki {
            dir: dir.to_owned(),
        };
        p.ca("server-ca", "/CN=test server CA");
        p.ca("agencies-ca", "/CN=test agencies CA");
        p.ca("rogue-ca", "/CN=rogue CA");
        p.leaf(
            "server",
            "server-ca",
            "/CN=localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth",
        );
        p.leaf(
            "agency-7",
            "agencies-ca",
            "/CN=agency-7/O=Tax Office 7",
            "extendedKeyUsage=clientAuth",
        );
        p.leaf(
            "agency-8",
            "agencies-ca",
            "/CN=agency-8",
            "extendedKeyUsage=clientAuth",
        );
        p.leaf(
            "rogue",
            "rogue-ca",
            "/CN=agency-7",
            "extendedKeyUsage=clientAuth",
        );
        p
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    fn ca(&self, name: &str, subject: &str) {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &self.path(&format!("{name}.key")),
            "-out",
            &self.path(&format!("{name}.pem")),
            "-subj",
            subject,
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
    }

    fn leaf(&self, name: &str, ca: &str, subject: &str, ext: &str) {
        let ext_file = self.path(&format!("{name}.ext"));
        std::fs::write(&ext_file, format!("basicConstraints=CA:FALSE\n{ext}\n")).unwrap();
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &self.path(&format!("{name}.key")),
            "-out",
            &self.path(&format!("{name}.csr")),
            "-subj",
            subject,
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &self.path(&format!("{name}.csr")),
            "-CA",
            &self.path(&format!("{ca}.pem")),
            "-CAkey",
            &self.path(&format!("{ca}.key")),
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            &ext_file,
            "-out",
            &self.path(&format!("{name}.pem")),
        ]);
    }
}

impl Appliance {
    /// The appliance's store directory.
    pub fn store_dir(&self) -> PathBuf {
        self.path().join("store")
    }

    /// Opens the appliance's store in this process (no server may be running), runs `f`
    /// on it, closes it, and waits (10 s at most) until sled's file lock is released, so
    /// that a server started next can open it.
    pub fn with_store<T>(&self, f: impl FnOnce(&auditstamp::chain::store::Store) -> T) -> T {
        let out = {
            let store = auditstamp::chain::store::Store::open(&self.store_dir()).unwrap();
            f(&store)
        };
        // sled releases its lock (a flock on `db`) from a background thread after the
        // last handle drops; util-linux's flock(1) tells when it is free.
        let db = self.store_dir().join("db");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let free = Command::new("flock")
                .args(["--nonblock", "--conflict-exit-code", "75"])
                .arg(&db)
                .arg("true")
                .status()
                .unwrap();
            match free.code() {
                Some(0) => return out,
                Some(75) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the store's lock was not released"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => panic!("flock {}: {free}", db.display()),
            }
        }
    }
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
