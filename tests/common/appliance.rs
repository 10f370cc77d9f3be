//! The appliance fixture: a SoftHSM2 token, keys made with the project's own CLI, a
//! configuration, and `auditstamp serve` on a real socket, in a temporary directory.
#![allow(unused_imports)]

use super::*;

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

impl Appliance {
    /// The appliance's store directory.
    pub fn store_dir(&self) -> PathBuf {
        self.path().join("store")
    }

    /// Opens the appliance's store in this process (no server may be running), runs `f`
    /// on it, closes it, and waits (10 s at most) until sled's file lock is released, so
    /// that a server started next can open it.
    pub fn with_store<T>(&self, f: impl FnOnce(&auditstamp::internal::Store) -> T) -> T {
        let out = {
            let store = auditstamp::internal::Store::open(&self.store_dir()).unwrap();
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
