//! The data center's witness fixture.
#![allow(unused_imports)]

use super::*;

use auditstamp::chain::note::{key_id, verifier_key, Checkpoint, NoteSignature, SignedNote};
use auditstamp::chain::tlog::{self, Hash};
use auditstamp::witness::protocol::add_checkpoint_body;
use ed25519_dalek::Signer as _;

/// The data center's witness for end-to-end tests: a SoftHSM token of its own with the
/// Ed25519 key "witness" (purpose witness, made with the project's CLI) and a witness
/// configuration, in a temporary directory.
pub struct WitnessNode {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// The `[witness.store]` table written into the configuration (empty for sled).
    store: String,
}

/// Where a test witness keeps its state: sled in its directory, or a throw-away PostgreSQL
/// (stopped when the backend is dropped, after the servers of the test).
pub enum Backend {
    Sled,
    /// On the cluster's Unix socket.
    Postgres(auditstamp::internal::TestPostgres),
    /// Over TCP at `url` (with `sslmode=require`), the database's certificate checked
    /// against the CA file `ca`.
    PostgresTls {
        pg: auditstamp::internal::TestPostgres,
        url: String,
        ca: PathBuf,
    },
}

impl Backend {
    /// A fresh PostgreSQL cluster.
    pub fn postgres() -> Backend {
        Backend::Postgres(
            auditstamp::internal::TestPostgres::start().unwrap_or_else(|e| panic!("{e}")),
        )
    }
}

/// The cosigner name of the test witness.
pub const WITNESS_NAME: &str = "witness.test.example/w1";

/// A witness that registers `app`'s chain under `origin` (its key read with `chain
/// verifier-key`), with its own verifier key (`name+id+key`).
pub fn witness_of(app: &Appliance, origin: &str) -> (WitnessNode, String) {
    let key = String::from_utf8(app.cli_ok(&["chain", "verifier-key"]).stdout).unwrap();
    let w = WitnessNode::new(&format!(
        "[[log]]\norigin = \"{origin}\"\nkey = \"{}\"\n",
        key.trim()
    ));
    let witness_key = String::from_utf8(w.cli_ok(&["witness", "verifier-key"]).stdout).unwrap();
    (w, witness_key)
}

impl WitnessNode {
    /// A fresh token and key, and a configuration registering `logs` (`[[log]]` tables),
    /// on sled.
    pub fn new(logs: &str) -> WitnessNode {
        WitnessNode::on(&Backend::Sled, logs)
    }

    /// [`WitnessNode::new`] on `backend` (for PostgreSQL: its password in a file of the
    /// node, and the schema made with `auditstamp witness migrate`).
    pub fn on(backend: &Backend, logs: &str) -> WitnessNode {
        tls_provider();
        let dir = tempfile::tempdir().unwrap();
        let store = store_section(dir.path(), backend);
        let w = WitnessNode {
            config: dir.path().join("witness.toml"),
            dir,
            store,
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
        if !matches!(backend, Backend::Sled) {
            w.cli_ok(&["witness", "migrate"]);
        }
        w
    }

    /// Moves the configuration to `backend` (the store itself is moved by the test).
    pub fn switch_to(&mut self, backend: &Backend, logs: &str) {
        self.store = store_section(self.dir.path(), backend);
        self.write_config(logs);
    }

    /// Writes the configuration with `store` as its `[witness.store]` table.
    pub fn set_store(&mut self, store: String, logs: &str) {
        self.store = store;
        self.write_config(logs);
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

{store}
[hsm]
module = "{module}"
token_label = "witness-token"
pin_file = "hsm/user.pin"
sessions = 2

{logs}
"#,
            state = self.path().display(),
            module = module(),
            store = self.store,
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

/// The `[witness.store]` table of `backend` for a node in `dir` (for PostgreSQL, its
/// password written to `dir/db.password`, mode 0600).
fn store_section(dir: &Path, backend: &Backend) -> String {
    match backend {
        Backend::Sled => String::new(),
        Backend::Postgres(pg) => postgres_store(dir, pg, &pg.url("postgres"), None),
        Backend::PostgresTls { pg, url, ca } => postgres_store(dir, pg, url, Some(ca)),
    }
}

/// The `[witness.store]` table of `pg` at `url`, with `ca_file = ca` if given, for a node
/// in `dir` (the password written to `dir/db.password`, mode 0600).
pub fn postgres_store(
    dir: &Path,
    pg: &auditstamp::internal::TestPostgres,
    url: &str,
    ca: Option<&Path>,
) -> String {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dir.join("db.password"))
        .unwrap();
    std::io::Write::write_all(&mut f, format!("{}\n", pg.password()).as_bytes()).unwrap();
    let ca = ca
        .map(|c| format!("ca_file = \"{}\"\n", c.display()))
        .unwrap_or_default();
    format!(
        "[witness.store]\nkind = \"postgres\"\nurl = \"{url}\"\n\
         password_file = \"db.password\"\nrefresh_ms = 200\n{ca}"
    )
}

/// A simulated appliance for the witness tests: its tree (built with `chain::tlog`) and
/// its software key, registered in the witness's configuration with [`Sim::log_entry`].
pub struct Sim {
    pub origin: String,
    pub key: ed25519_dalek::SigningKey,
    pub hashes: Vec<Hash>,
    pub size: u64,
    /// Leaves get this prefix: two sims with another salt have other trees.
    pub salt: u8,
}

impl Sim {
    pub fn new(origin: &str, seed: u8) -> Sim {
        Sim {
            origin: origin.into(),
            key: ed25519_dalek::SigningKey::from_bytes(&[seed; 32]),
            hashes: Vec::new(),
            size: 0,
            salt: 0,
        }
    }

    /// The same appliance (origin and key) with another history: a tampered appliance.
    pub fn fork(&self) -> Sim {
        Sim {
            origin: self.origin.clone(),
            key: self.key.clone(),
            hashes: Vec::new(),
            size: 0,
            salt: self.salt.wrapping_add(1),
        }
    }

    pub fn log_entry(&self) -> String {
        format!(
            "[[log]]\norigin = \"{}\"\nkey = \"{}\"\nurl = \"https://{}\"\n",
            self.origin,
            verifier_key(&self.origin, &self.key.verifying_key().to_bytes()),
            self.origin.split('/').next().unwrap()
        )
    }

    pub fn grow_to(&mut self, size: u64) {
        while self.size < size {
            let leaf =
                tlog::leaf_hash(format!("{} {} {}", self.salt, self.origin, self.size).as_bytes());
            let add = tlog::stored_hashes_for_record(self.size, leaf, &self.hashes).unwrap();
            self.hashes.extend(add);
            self.size += 1;
        }
    }

    pub fn root(&self, size: u64) -> Hash {
        tlog::tree_hash(size, &self.hashes).unwrap()
    }

    pub fn text(&self, size: u64, root: Hash) -> String {
        Checkpoint {
            origin: self.origin.clone(),
            size,
            root,
            extensions: vec![],
        }
        .body()
    }

    /// The checkpoint note of `size` with `root`, signed by `key`.
    pub fn note_with(&self, size: u64, root: Hash, key: &ed25519_dalek::SigningKey) -> String {
        let text = self.text(size, root);
        SignedNote {
            signatures: vec![NoteSignature {
                name: self.origin.clone(),
                id: key_id(&self.origin, &key.verifying_key().to_bytes()),
                signature: key.sign(text.as_bytes()).to_bytes().to_vec(),
            }],
            text,
        }
        .format()
    }

    pub fn note(&self, size: u64) -> String {
        self.note_with(size, self.root(size), &self.key)
    }

    pub fn proof(&self, old: u64, size: u64) -> Vec<Hash> {
        tlog::prove_consistency(size, old, &self.hashes).unwrap()
    }

    /// The add-checkpoint body from `old` to `size` (growing the tree if need be).
    pub fn body(&mut self, old: u64, size: u64) -> String {
        self.grow_to(size);
        add_checkpoint_body(old, &self.proof(old, size), &self.note(size)).unwrap()
    }
}
