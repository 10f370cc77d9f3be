//! Appliance configuration: one TOML file, validated at startup.
//!
//! The file is read with `serde` and `toml`; unknown keys are refused by name, and every
//! semantic check names the key it is about (`tsa.default_policy: ...`). Two environment
//! variables override the file, for the quickstart and for tests:
//! `AUDITSTAMP_STATE_DIR` (`node.state_dir`) and `AUDITSTAMP_LISTEN` (`http.listen`).
//!
//! Relative paths: `node.state_dir` is relative to the working directory; `hsm.pin_file`
//! and `tsa.chain_file` are relative to the state directory.
//!
//! This module imports nothing else of this crate: it hands out plain validated values and
//! `cli` turns them into each module's own settings. Its one error type is [`ConfigError`].
//!
//! The data center witness has a configuration file of its own: [`crate::witness::config`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use const_oid::ObjectIdentifier;
use secrecy::SecretString;
use serde::Deserialize;

mod validate;

pub use self::validate::*;

/// Environment variable that overrides `node.state_dir`.
pub const ENV_STATE_DIR: &str = "AUDITSTAMP_STATE_DIR";
/// Environment variable that overrides `http.listen`.
pub const ENV_LISTEN: &str = "AUDITSTAMP_LISTEN";

/// What can go wrong while loading the configuration. Every message names the key or file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the key and line.
        message: String,
    },
    /// A value is present and well typed but not acceptable.
    #[error("config key {key}: {message}")]
    Invalid {
        /// The dotted key path, e.g. `tsa.default_policy`.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The PIN could not be obtained from its source (the PIN itself is never shown).
    #[error("config key {key}: {message}")]
    Pin {
        /// `hsm.pin_env` or `hsm.pin_file`.
        key: &'static str,
        /// What is wrong (never the PIN).
        message: String,
    },
}

pub(crate) fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This appliance: identity and state.
    pub node: NodeConfig,
    /// The HSM and how to log in to it.
    pub hsm: HsmConfig,
    /// The time-stamp authority.
    pub tsa: TsaConfig,
    /// Clock rules.
    #[serde(default)]
    pub clock: ClockConfig,
    /// The HTTP listener.
    pub http: HttpConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The auditor event chain.
    pub chain: ChainConfig,
    /// Copies of the sealed chain in object storage; absent: no archive.
    pub archive: Option<ArchiveConfig>,
}

/// `[archive]`: the sealed chain copied to S3-compatible object storage (or a directory),
/// and how much of it stays on the local disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// `s3://<bucket>[/<prefix>]` (each appliance its own prefix), or `file:///<directory>`.
    pub url: String,
    /// An S3-compatible endpoint, `https://host[:port]` (plain `http://` only on a loopback
    /// address); default: AWS's endpoint for `region`.
    pub endpoint: Option<String>,
    /// The S3 region; default `us-east-1`.
    #[serde(default = "default_region")]
    pub region: String,
    /// PEM: the CA(s) of the endpoint's TLS certificate; default: the system's roots.
    /// Relative to the state directory.
    pub ca_file: Option<PathBuf>,
    /// The environment variable holding the access key id; default `AWS_ACCESS_KEY_ID`.
    #[serde(default = "default_access_key_env")]
    pub access_key_id_env: String,
    /// The environment variable holding the secret access key (never written in this
    /// file); default `AWS_SECRET_ACCESS_KEY`.
    #[serde(default = "default_secret_key_env")]
    pub secret_access_key_env: String,
    /// Most uploads in flight; default 16.
    #[serde(default = "default_archive_concurrency")]
    pub concurrency: usize,
    /// Longest wait for one request to the store, retries included, in milliseconds;
    /// default 30000.
    #[serde(default = "default_archive_timeout")]
    pub timeout_ms: u64,
    /// `/readyz` warns when more sealed events than this are not archived yet; default
    /// 1000000.
    #[serde(default = "default_max_lag")]
    pub max_lag_events: u64,
    /// Submit a checkpoint to the witnesses only once the archive holds it, so that a
    /// restore from the bucket can always continue the log the witnesses follow; default
    /// false.
    #[serde(default)]
    pub witness_after_archive: bool,
    /// Keep the entry bundles of this many newest events on the local disk; older ones are
    /// pruned once archived (read back from the archive when asked for). Absent: nothing is
    /// pruned.
    pub retain_events: Option<u64>,
    /// Never accepted (credentials are not written here): taken only to refuse it by name
    /// without echoing its value, as a parse error would.
    #[serde(default)]
    pub(crate) secret_access_key: Option<toml::Value>,
    /// As `secret_access_key`.
    #[serde(default)]
    pub(crate) access_key_id: Option<toml::Value>,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_access_key_env() -> String {
    "AWS_ACCESS_KEY_ID".into()
}

fn default_secret_key_env() -> String {
    "AWS_SECRET_ACCESS_KEY".into()
}

fn default_archive_concurrency() -> usize {
    16
}

fn default_archive_timeout() -> u64 {
    30_000
}

fn default_max_lag() -> u64 {
    1_000_000
}

/// `[chain]`: the auditor event chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Label of the Ed25519 key (purpose chain) that signs block headers and checkpoints.
    pub key_label: String,
    /// The checkpoint origin (a unique, URL-like log name); default: `node.name`.
    pub origin: Option<String>,
    /// Seal a block at least this often when there are new events (ms); default 1000.
    #[serde(default = "default_seal_interval")]
    pub seal_interval_ms: u64,
    /// Seal as soon as this many events wait (a block holds at most this many); default
    /// 100000.
    #[serde(default = "default_max_block_events")]
    pub max_block_events: u64,
    /// Largest body of `POST /v1/events/batch`, bytes; default 16 MiB.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Witnesses every new checkpoint is submitted to (C2SP tlog-witness).
    #[serde(default)]
    pub witness: Vec<WitnessLinkConfig>,
    /// Longest wait for one witness's answer, in milliseconds; default 5000.
    #[serde(default = "default_witness_timeout")]
    pub witness_timeout_ms: u64,
    /// Keep the search index (`GET /v1/events?...`, the console's search); default true.
    #[serde(default = "default_true")]
    pub search_index: bool,
}

/// `[[chain.witness]]`: a witness this appliance submits its checkpoints to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessLinkConfig {
    /// The witness's submission prefix, `https://...` (or `http://` for development).
    pub url: String,
    /// The witness's cosigner verifier key (`name+id+key`, `auditstamp witness verifier-key`).
    pub key: String,
    /// PEM: the CA(s) of the witness's TLS certificate (for `https://`).
    pub ca_file: Option<PathBuf>,
}

fn default_witness_timeout() -> u64 {
    5000
}

fn default_seal_interval() -> u64 {
    1000
}

fn default_max_block_events() -> u64 {
    100_000
}

fn default_max_batch_bytes() -> usize {
    16 << 20
}

impl ChainConfig {
    /// The checkpoint origin: `origin`, else the node name.
    pub fn origin_or<'a>(&'a self, node_name: &'a str) -> &'a str {
        self.origin.as_deref().unwrap_or(node_name)
    }
}

/// `[node]`: who this appliance is and where it keeps its state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Node id, unique among the office's appliances: the high bits of every serial number.
    pub id: u32,
    /// The appliance's name (used in logs and, later, as the checkpoint origin).
    pub name: String,
    /// The state directory (the store lives in `<state_dir>/store`).
    pub state_dir: PathBuf,
}

/// `[hsm]`: which PKCS#11 module and token, and where the PIN comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmConfig {
    /// Path of the vendor's PKCS#11 module (`.so`).
    pub module: PathBuf,
    /// The token, by label (exactly one of `token_label` and `token_serial`).
    pub token_label: Option<String>,
    /// The token, by serial number.
    pub token_serial: Option<String>,
    /// Name of the environment variable that holds the user PIN.
    pub pin_env: Option<String>,
    /// File that holds the user PIN (first line; relative to the state directory).
    pub pin_file: Option<PathBuf>,
    /// Refused with a clear message: PINs are never written in the configuration.
    pub(crate) pin: Option<toml::Value>,
    /// PKCS#11 sessions (signing worker threads); default 2.
    #[serde(default = "default_sessions")]
    pub sessions: usize,
    /// Verify every HSM signature in software before it is used; default true.
    #[serde(default = "default_true")]
    pub verify_after_sign: bool,
}

fn default_sessions() -> usize {
    2
}

fn default_true() -> bool {
    true
}

/// `[tsa]`: the time-stamp authority's key and token profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsaConfig {
    /// Label of the signing key on the token (its certificate is stored beside it).
    pub key_label: String,
    /// PEM file with the intermediate and root certificates (relative to the state directory).
    pub chain_file: Option<PathBuf>,
    /// Accepted message-imprint hash algorithms: any of "sha256", "sha384", "sha512".
    pub hash_algorithms: Vec<String>,
    /// Accepted policy OIDs (dotted); a request naming another policy is refused.
    pub policies: Vec<String>,
    /// The policy used when a request names none; must be one of `policies`.
    pub default_policy: String,
    /// The accuracy stated in every token (at least one part non-zero).
    pub accuracy: AccuracyConfig,
    /// Put the signer certificate and intermediates in the token when certReq is true.
    #[serde(default = "default_true")]
    pub include_chain: bool,
    /// Put the `tsa` name (the signer's subject) in every TSTInfo.
    #[serde(default = "default_true")]
    pub include_tsa_name: bool,
    /// Warn (log, readiness detail) when the active certificate has this many days or fewer left.
    #[serde(default = "default_expiry_warning_days")]
    pub expiry_warning_days: u32,
}

fn default_expiry_warning_days() -> u32 {
    30
}

/// `[tsa.accuracy]`: the accuracy of genTime, as RFC 3161 states it.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccuracyConfig {
    /// Whole seconds.
    #[serde(default)]
    pub seconds: u32,
    /// Milliseconds, 0..=999.
    #[serde(default)]
    pub millis: u16,
    /// Microseconds, 0..=999.
    #[serde(default)]
    pub micros: u16,
}

impl AccuracyConfig {
    /// The accuracy as a duration.
    pub fn as_duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.seconds))
            + std::time::Duration::from_millis(u64::from(self.millis))
            + std::time::Duration::from_micros(u64::from(self.micros))
    }
}

/// `[clock]`: when the clock is trustworthy enough to issue tokens.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockConfig {
    /// Refuse to issue (timeNotAvailable) when the kernel says the clock is not synchronised
    /// or its maximum error exceeds the stated accuracy. On in production, off in dev.
    #[serde(default)]
    pub require_sync: bool,
}

/// `[http]`: the listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port, e.g. "127.0.0.1:8318".
    pub listen: String,
    /// Largest request body accepted, in bytes; default 16384.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Longest time one request may take, in milliseconds; default 10000.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// Serve plain HTTP, without TLS: for development only; default false.
    #[serde(default)]
    pub plain_http: bool,
    /// TLS (required unless `plain_http`).
    pub tls: Option<TlsConfig>,
    /// From accept, longest time for the TLS handshake and the first request's head
    /// together; on HTTP/1.1 also for each later head; in milliseconds; default 5000.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_ms: u64,
    /// Most requests handled at once; beyond, 503 with Retry-After; default 1024.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_requests: usize,
    /// Most open connections; beyond, new ones are closed at once; default 4096.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most open connections from one IP address; beyond, new ones are closed at once;
    /// default 64.
    #[serde(default = "default_max_connections_per_address")]
    pub max_connections_per_address: usize,
    /// A connection with no request open for this long is closed, in milliseconds;
    /// default 30000.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_ms: u64,
    /// How often an HTTP/2 connection is pinged, in milliseconds; default 10000.
    #[serde(default = "default_http2_ping_interval")]
    pub http2_ping_interval_ms: u64,
    /// How long a ping may go unanswered before its HTTP/2 connection is closed, in
    /// milliseconds; default 10000.
    #[serde(default = "default_http2_ping_timeout")]
    pub http2_ping_timeout_ms: u64,
    /// Per-client rate limit (by client certificate identity, else by address).
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Threads serving requests; 0 (the default): one per CPU.
    #[serde(default)]
    pub worker_threads: usize,
}

/// `[http.tls]`: the listener's certificate, and agencies' client certificates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM: the server certificate, then its intermediates.
    pub cert_file: PathBuf,
    /// PEM: the server's private key (a TLS key, not an HSM signing key).
    pub key_file: PathBuf,
    /// PEM: the CA(s) issuing agencies' client certificates; enables mutual TLS.
    pub client_ca_file: Option<PathBuf>,
    /// Route groups that require a client certificate: "tsa" (`POST /tsa`), "events"
    /// (`POST /v1/events*`), "read" (the chain's GET routes and `/tsa/certs`), "ops"
    /// (`/metrics`, `/readyz`).
    #[serde(default)]
    pub require_client_cert: Vec<String>,
    /// Client-certificate identities (subject CN) that may search every agency's events:
    /// the audit office's own auditors. Any other identity sees only the events of the
    /// agency its certificate names.
    #[serde(default)]
    pub auditors_of_all: Vec<String>,
}

/// The route groups `http.tls.require_client_cert` may name.
pub const ROUTE_GROUPS: [&str; 4] = ["tsa", "events", "read", "ops"];

/// `[http.rate_limit]`: a token bucket per client.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained requests per second per client; 0 turns the limit off. Default 1000.
    #[serde(default = "default_rate")]
    pub per_second: u32,
    /// Requests a client may send at once above the sustained rate; default 2000.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_second: default_rate(),
            burst: default_burst(),
        }
    }
}

fn default_rate() -> u32 {
    1000
}

fn default_burst() -> u32 {
    2000
}

pub(crate) fn default_header_timeout() -> u64 {
    5000
}

pub(crate) fn default_max_connections_per_address() -> usize {
    64
}

pub(crate) fn default_idle_timeout() -> u64 {
    30_000
}

pub(crate) fn default_http2_ping_interval() -> u64 {
    10_000
}

pub(crate) fn default_http2_ping_timeout() -> u64 {
    10_000
}

fn default_max_concurrent() -> usize {
    1024
}

pub(crate) fn default_max_connections() -> usize {
    4096
}

fn default_max_body() -> usize {
    16 * 1024
}

fn default_request_timeout() -> u64 {
    10_000
}

/// `[log]`: log format and level.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// "text" (default) or "json".
    #[serde(default = "default_log_format")]
    pub format: String,
    /// A tracing filter, e.g. "info" or "auditstamp=debug"; `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: default_log_format(),
            level: default_log_level(),
        }
    }
}

fn default_log_format() -> String {
    "text".into()
}

fn default_log_level() -> String {
    "info".into()
}

/// Where the user PIN comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// An environment variable's name.
    Env(String),
    /// A file's path (already resolved against the state directory).
    File(PathBuf),
}

impl PinSource {
    /// Reads the PIN. Errors name the source, never the PIN.
    pub fn read(&self) -> Result<SecretString, ConfigError> {
        self.read_secret(["hsm.pin_env", "hsm.pin_file"], "PIN")
    }

    /// Reads a secret (its first line) from this source; `keys` are the configuration keys
    /// of the environment and file forms, `what` names the secret in errors, which never
    /// show it.
    pub fn read_secret(
        &self,
        keys: [&'static str; 2],
        what: &str,
    ) -> Result<SecretString, ConfigError> {
        let key = match self {
            PinSource::Env(_) => keys[0],
            PinSource::File(_) => keys[1],
        };
        let raw = match self {
            PinSource::Env(name) => std::env::var(name).map_err(|_| ConfigError::Pin {
                key,
                message: format!("environment variable {name} is not set (or not UTF-8)"),
            })?,
            PinSource::File(path) => {
                warn_if_readable_by_others(path);
                std::fs::read_to_string(path).map_err(|e| ConfigError::Pin {
                    key,
                    message: format!("cannot read {}: {e}", path.display()),
                })?
            }
        };
        let secret = raw.lines().next().unwrap_or("").trim_end_matches('\r');
        if secret.is_empty() {
            return Err(ConfigError::Pin {
                key,
                message: format!("the {what} is empty"),
            });
        }
        Ok(SecretString::from(secret.to_owned()))
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                "the PIN file is readable by group or others; chmod 600 it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// The configuration after every check: what the rest of the appliance is given.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The file as parsed (with environment overrides applied).
    pub raw: Config,
    /// The listen address.
    pub listen: SocketAddr,
    /// Where the PIN comes from.
    pub pin: PinSource,
    /// `tsa.chain_file` resolved against the state directory.
    pub chain_file: Option<PathBuf>,
    /// `http.tls` with its files resolved against the state directory.
    pub tls: Option<TlsConfig>,
    /// Accepted policy OIDs, in the order given.
    pub policies: Vec<ObjectIdentifier>,
    /// The default policy OID.
    pub default_policy: ObjectIdentifier,
}

impl Validated {
    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.raw.node.state_dir
    }
}

/// Names of the hash algorithms `tsa.hash_algorithms` may list.
pub const HASH_ALGORITHM_NAMES: [&str; 3] = ["sha256", "sha384", "sha512"];

/// Reads, parses and validates a configuration file, applying the environment overrides.
pub fn load(path: &Path) -> Result<Validated, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let overrides = Overrides {
        state_dir: std::env::var_os(ENV_STATE_DIR).map(PathBuf::from),
        listen: std::env::var(ENV_LISTEN).ok(),
    };
    parse(&text, &overrides).map_err(|e| match e {
        ConfigError::Parse { message, .. } => ConfigError::Parse {
            path: path.to_owned(),
            message,
        },
        other => other,
    })
}

/// Values that replace the file's (from the environment).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// Replaces `node.state_dir`.
    pub state_dir: Option<PathBuf>,
    /// Replaces `http.listen`.
    pub listen: Option<String>,
}

/// Parses and validates configuration text.
pub fn parse(text: &str, overrides: &Overrides) -> Result<Validated, ConfigError> {
    let mut raw: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: PathBuf::from("<config>"),
        message: e.to_string().trim_end().replace('\n', " "),
    })?;
    if let Some(dir) = &overrides.state_dir {
        raw.node.state_dir = dir.clone();
    }
    if let Some(listen) = &overrides.listen {
        raw.http.listen = listen.clone();
    }
    validate(raw)
}

/// Parses a dotted OID, refusing (never panicking on) arcs the DER library cannot hold
/// and OIDs it could encode but not decode again.
pub fn parse_oid(text: &str) -> Result<ObjectIdentifier, String> {
    let bad = |why: &str| format!("{text:?} is not a usable OID: {why}");
    let arcs: Vec<&str> = text.split('.').collect();
    if arcs.len() < 2 {
        return Err(bad("it needs at least two arcs"));
    }
    for arc in &arcs {
        if arc.is_empty() || !arc.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("arcs are decimal numbers separated by dots"));
        }
        if arc.parse::<u32>().is_err() {
            return Err(bad("an arc is larger than 4294967295"));
        }
    }
    let oid = ObjectIdentifier::from_str(text).map_err(|e| bad(&e.to_string()))?;
    ObjectIdentifier::from_bytes(oid.as_bytes())
        .map_err(|_| bad("too short to be decoded again; use a longer OID"))?;
    Ok(oid)
}

#[cfg(test)]
mod tests;
