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
        let raw = match self {
            PinSource::Env(name) => std::env::var(name).map_err(|_| ConfigError::Pin {
                key: "hsm.pin_env",
                message: format!("environment variable {name} is not set (or not UTF-8)"),
            })?,
            PinSource::File(path) => {
                warn_if_readable_by_others(path);
                std::fs::read_to_string(path).map_err(|e| ConfigError::Pin {
                    key: "hsm.pin_file",
                    message: format!("cannot read {}: {e}", path.display()),
                })?
            }
        };
        let pin = raw.lines().next().unwrap_or("").trim_end_matches('\r');
        if pin.is_empty() {
            let key = match self {
                PinSource::Env(_) => "hsm.pin_env",
                PinSource::File(_) => "hsm.pin_file",
            };
            return Err(ConfigError::Pin {
                key,
                message: "the PIN is empty".into(),
            });
        }
        Ok(SecretString::from(pin.to_owned()))
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

/// The keys a TLS section's errors name.
pub(crate) struct TlsKeys {
    /// The TLS table, e.g. `http.tls`.
    pub tls: &'static str,
    /// The plain-HTTP switch, e.g. `http.plain_http`.
    pub plain: &'static str,
    /// The client-certificate list, e.g. `http.tls.require_client_cert`.
    pub require: &'static str,
    /// The route groups the list may name.
    pub groups: &'static [&'static str],
}

/// Checks a listener's TLS choice: TLS unless plain HTTP is asked for, not both; returns
/// the TLS section with its paths resolved against `state_dir`.
pub(crate) fn validate_tls_choice(
    plain_http: bool,
    tls: Option<&TlsConfig>,
    state_dir: &Path,
    keys: &TlsKeys,
) -> Result<Option<TlsConfig>, ConfigError> {
    let tls = match (tls, plain_http) {
        (None, false) => {
            return Err(invalid(
                keys.tls,
                format!(
                    "TLS is required: give {0}.cert_file and {0}.key_file, or, for \
                     development only, set {1} = true",
                    keys.tls, keys.plain
                ),
            ))
        }
        (Some(_), true) => {
            return Err(invalid(
                keys.plain,
                format!("plain HTTP and {} exclude each other; remove one", keys.tls),
            ))
        }
        (None, true) => return Ok(None),
        (Some(t), false) => t,
    };
    for g in &tls.require_client_cert {
        if !keys.groups.contains(&g.as_str()) {
            return Err(invalid(
                keys.require,
                format!("unknown route group {g:?}; use {:?}", keys.groups),
            ));
        }
    }
    if !tls.require_client_cert.is_empty() && tls.client_ca_file.is_none() {
        return Err(invalid(
            keys.require,
            "needs client_ca_file (the CA of the clients' certificates)",
        ));
    }
    Ok(Some(TlsConfig {
        cert_file: state_dir.join(&tls.cert_file),
        key_file: state_dir.join(&tls.key_file),
        client_ca_file: tls.client_ca_file.as_ref().map(|f| state_dir.join(f)),
        require_client_cert: tls.require_client_cert.clone(),
    }))
}

/// A listener's connection limits, as `[http]` and `[witness]` both give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// From accept, longest time for the TLS handshake and the first request's head
    /// (HTTP/1.1: also each later head), milliseconds.
    pub header_timeout_ms: u64,
    /// Most open connections.
    pub max_connections: usize,
    /// Most open connections from one IP address.
    pub max_connections_per_address: usize,
    /// A connection with no request open for this long is closed, milliseconds.
    pub idle_timeout_ms: u64,
    /// How often an HTTP/2 connection is pinged, milliseconds.
    pub http2_ping_interval_ms: u64,
    /// How long a ping may go unanswered, milliseconds.
    pub http2_ping_timeout_ms: u64,
}

/// The keys of one section's [`ListenerLimits`], for its errors.
pub(crate) struct ListenerKeys {
    pub header_timeout: &'static str,
    pub max_connections: &'static str,
    pub per_address: &'static str,
    pub idle_timeout: &'static str,
    pub ping_interval: &'static str,
    pub ping_timeout: &'static str,
}

/// Checks a listener's limits, naming the key of the first one out of its range.
pub(crate) fn validate_listener(
    limits: &ListenerLimits,
    keys: &ListenerKeys,
) -> Result<(), ConfigError> {
    let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let checks = [
        (limits.header_timeout_ms, keys.header_timeout, 100, 60_000),
        (
            as_u64(limits.max_connections),
            keys.max_connections,
            1,
            1_000_000,
        ),
        (
            as_u64(limits.max_connections_per_address),
            keys.per_address,
            1,
            1_000_000,
        ),
        (limits.idle_timeout_ms, keys.idle_timeout, 1000, 3_600_000),
        (
            limits.http2_ping_interval_ms,
            keys.ping_interval,
            1000,
            600_000,
        ),
        (
            limits.http2_ping_timeout_ms,
            keys.ping_timeout,
            1000,
            600_000,
        ),
    ];
    for (value, key, min, max) in checks {
        if !(min..=max).contains(&value) {
            return Err(invalid(key, format!("must be between {min} and {max}")));
        }
    }
    Ok(())
}

impl HttpConfig {
    /// The listener's connection limits.
    pub fn listener_limits(&self) -> ListenerLimits {
        ListenerLimits {
            header_timeout_ms: self.header_timeout_ms,
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            idle_timeout_ms: self.idle_timeout_ms,
            http2_ping_interval_ms: self.http2_ping_interval_ms,
            http2_ping_timeout_ms: self.http2_ping_timeout_ms,
        }
    }
}

/// Checks `[http]`'s TLS and limits; returns `http.tls` with its paths resolved.
fn validate_tls(http: &HttpConfig, state_dir: &Path) -> Result<Option<TlsConfig>, ConfigError> {
    validate_listener(
        &http.listener_limits(),
        &ListenerKeys {
            header_timeout: "http.header_timeout_ms",
            max_connections: "http.max_connections",
            per_address: "http.max_connections_per_address",
            idle_timeout: "http.idle_timeout_ms",
            ping_interval: "http.http2_ping_interval_ms",
            ping_timeout: "http.http2_ping_timeout_ms",
        },
    )?;
    if !(1..=1_000_000).contains(&http.max_concurrent_requests) {
        return Err(invalid(
            "http.max_concurrent_requests",
            "must be between 1 and 1000000",
        ));
    }
    if http.worker_threads > 1024 {
        return Err(invalid(
            "http.worker_threads",
            "must be between 0 (one per CPU) and 1024",
        ));
    }
    if http.rate_limit.per_second > 0 && http.rate_limit.burst == 0 {
        return Err(invalid(
            "http.rate_limit.burst",
            "must be at least 1 when a rate is set",
        ));
    }
    validate_tls_choice(
        http.plain_http,
        http.tls.as_ref(),
        state_dir,
        &TlsKeys {
            tls: "http.tls",
            plain: "http.plain_http",
            require: "http.tls.require_client_cert",
            groups: &ROUTE_GROUPS,
        },
    )
}

fn validate(raw: Config) -> Result<Validated, ConfigError> {
    if raw.node.name.trim().is_empty() {
        return Err(invalid("node.name", "must not be empty"));
    }
    if raw.node.state_dir.as_os_str().is_empty() {
        return Err(invalid("node.state_dir", "must not be empty"));
    }
    let hsm = &raw.hsm;
    if hsm.pin.is_some() {
        return Err(invalid(
            "hsm.pin",
            "PINs are never written in the configuration; name an environment variable \
             with hsm.pin_env or a file with hsm.pin_file",
        ));
    }
    if hsm.module.as_os_str().is_empty() {
        return Err(invalid("hsm.module", "must name the PKCS#11 module file"));
    }
    match (&hsm.token_label, &hsm.token_serial) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "hsm.token_label",
                "give either hsm.token_label or hsm.token_serial, not both",
            ))
        }
        (None, None) => {
            return Err(invalid(
                "hsm.token_label",
                "name the token with hsm.token_label or hsm.token_serial",
            ))
        }
        (Some(l), None) if l.is_empty() => return Err(invalid("hsm.token_label", "is empty")),
        (None, Some(s)) if s.is_empty() => return Err(invalid("hsm.token_serial", "is empty")),
        _ => {}
    }
    let pin = match (&hsm.pin_env, &hsm.pin_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "hsm.pin_env",
                "give either hsm.pin_env or hsm.pin_file, not both",
            ))
        }
        (None, None) => {
            return Err(invalid(
                "hsm.pin_env",
                "say where the PIN comes from: hsm.pin_env or hsm.pin_file",
            ))
        }
        (Some(name), None) => {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(invalid(
                    "hsm.pin_env",
                    "not a valid environment variable name",
                ));
            }
            PinSource::Env(name.clone())
        }
        (None, Some(file)) => PinSource::File(raw.node.state_dir.join(file)),
    };
    if !(1..=64).contains(&hsm.sessions) {
        return Err(invalid("hsm.sessions", "must be between 1 and 64"));
    }

    let tsa = &raw.tsa;
    if tsa.key_label.is_empty() {
        return Err(invalid("tsa.key_label", "must not be empty"));
    }
    if tsa.hash_algorithms.is_empty() {
        return Err(invalid(
            "tsa.hash_algorithms",
            "must list at least one algorithm",
        ));
    }
    let mut seen = BTreeSet::new();
    for name in &tsa.hash_algorithms {
        if !HASH_ALGORITHM_NAMES.contains(&name.as_str()) {
            return Err(invalid(
                "tsa.hash_algorithms",
                format!(
                    "unknown or refused algorithm {name:?}; accepted: {}",
                    HASH_ALGORITHM_NAMES.join(", ")
                ),
            ));
        }
        if !seen.insert(name) {
            return Err(invalid(
                "tsa.hash_algorithms",
                format!("{name:?} listed twice"),
            ));
        }
    }
    if tsa.policies.is_empty() {
        return Err(invalid("tsa.policies", "must list at least one policy OID"));
    }
    let mut policies = Vec::new();
    for p in &tsa.policies {
        let oid = parse_oid(p).map_err(|e| invalid("tsa.policies", e))?;
        if policies.contains(&oid) {
            return Err(invalid("tsa.policies", format!("{p:?} listed twice")));
        }
        policies.push(oid);
    }
    let default_policy =
        parse_oid(&tsa.default_policy).map_err(|e| invalid("tsa.default_policy", e))?;
    if !policies.contains(&default_policy) {
        return Err(invalid("tsa.default_policy", "must be one of tsa.policies"));
    }
    let acc = tsa.accuracy;
    if acc.millis > 999 {
        return Err(invalid("tsa.accuracy.millis", "must be 0..=999"));
    }
    if acc.micros > 999 {
        return Err(invalid("tsa.accuracy.micros", "must be 0..=999"));
    }
    if acc.seconds == 0 && acc.millis == 0 && acc.micros == 0 {
        return Err(invalid(
            "tsa.accuracy",
            "must be non-zero (ETSI EN 319 422 requires a stated accuracy)",
        ));
    }
    let chain_file = tsa.chain_file.as_ref().map(|f| raw.node.state_dir.join(f));

    let listen = SocketAddr::from_str(&raw.http.listen).map_err(|e| {
        invalid(
            "http.listen",
            format!("{:?} is not an address:port: {e}", raw.http.listen),
        )
    })?;
    if !(256..=1 << 20).contains(&raw.http.max_body_bytes) {
        return Err(invalid(
            "http.max_body_bytes",
            "must be between 256 and 1048576",
        ));
    }
    if !(100..=600_000).contains(&raw.http.request_timeout_ms) {
        return Err(invalid(
            "http.request_timeout_ms",
            "must be between 100 and 600000",
        ));
    }
    let tls = validate_tls(&raw.http, &raw.node.state_dir)?;
    {
        let chain = &raw.chain;
        if chain.key_label.is_empty() {
            return Err(invalid("chain.key_label", "must not be empty"));
        }
        let origin = chain.origin_or(&raw.node.name);
        if origin.is_empty()
            || origin
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '+')
        {
            return Err(invalid(
                "chain.origin",
                "a checkpoint origin is a non-empty name without spaces, control characters or '+'",
            ));
        }
        if !(50..=3_600_000).contains(&chain.seal_interval_ms) {
            return Err(invalid(
                "chain.seal_interval_ms",
                "must be between 50 and 3600000",
            ));
        }
        if chain.max_block_events == 0 {
            return Err(invalid("chain.max_block_events", "must be at least 1"));
        }
        for w in &chain.witness {
            if !(w.url.starts_with("https://") || w.url.starts_with("http://")) {
                return Err(invalid(
                    "chain.witness.url",
                    format!("{:?} is not an http:// or https:// URL", w.url),
                ));
            }
            if w.url.starts_with("http://") && !raw.http.plain_http {
                return Err(invalid(
                    "chain.witness.url",
                    format!(
                        "{:?}: plain HTTP to a witness only with http.plain_http (development)",
                        w.url
                    ),
                ));
            }
        }
        if !(100..=600_000).contains(&chain.witness_timeout_ms) {
            return Err(invalid(
                "chain.witness_timeout_ms",
                "must be between 100 and 600000",
            ));
        }
        if !(1024..=1 << 30).contains(&chain.max_batch_bytes) {
            return Err(invalid(
                "chain.max_batch_bytes",
                "must be between 1024 and 1073741824",
            ));
        }
    }
    if !["text", "json"].contains(&raw.log.format.as_str()) {
        return Err(invalid("log.format", "must be \"text\" or \"json\""));
    }
    Ok(Validated {
        raw,
        listen,
        pin,
        chain_file,
        tls,
        policies,
        default_policy,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const GOOD: &str = r#"
[node]
id = 7
name = "test"
state_dir = "/tmp/x"

[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "t"
pin_env = "PIN"

[tsa]
key_label = "tsa"
hash_algorithms = ["sha256", "sha512"]
policies = ["1.2.3.4", "1.2.3.5"]
default_policy = "1.2.3.4"
accuracy = { seconds = 1 }

[http]
listen = "127.0.0.1:8318"
plain_http = true

[chain]
key_label = "chain"
"#;

    fn err(text: &str) -> String {
        parse(text, &Overrides::default()).unwrap_err().to_string()
    }

    #[test]
    fn good_config_parses() {
        let v = parse(GOOD, &Overrides::default()).unwrap();
        assert_eq!(
            v.raw.http.listener_limits(),
            ListenerLimits {
                header_timeout_ms: 5000,
                max_connections: 4096,
                max_connections_per_address: 64,
                idle_timeout_ms: 30_000,
                http2_ping_interval_ms: 10_000,
                http2_ping_timeout_ms: 10_000,
            }
        );
        assert_eq!(v.raw.node.id, 7);
        assert_eq!(v.policies.len(), 2);
        assert_eq!(v.pin, PinSource::Env("PIN".into()));
        assert_eq!(v.raw.hsm.sessions, 2);
        assert!(v.raw.tsa.include_chain);
        assert!(!v.raw.clock.require_sync);
    }

    #[test]
    fn shipped_configs_parse() {
        for f in ["firmware-config/dev.toml", "firmware-config/appliance.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
            let text = std::fs::read_to_string(&path).unwrap();
            parse(&text, &Overrides::default()).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn overrides_apply() {
        let o = Overrides {
            state_dir: Some("/srv/a".into()),
            listen: Some("127.0.0.1:9".into()),
        };
        let v = parse(GOOD, &o).unwrap();
        assert_eq!(v.state_dir(), Path::new("/srv/a"));
        assert_eq!(v.listen.port(), 9);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err(&GOOD.replace("[http]", "[http]\nlisten_port = 5"));
        assert!(e.contains("listen_port"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (
                GOOD.replace("\"sha512\"", "\"sha1\""),
                "tsa.hash_algorithms",
            ),
            (GOOD.replace("\"1.2.3.5\"", "\"nope\""), "tsa.policies"),
            (
                GOOD.replace(
                    "\"1.2.3.5\"",
                    "\"2.25.176516865631286782691444617091934544541\"",
                ),
                "tsa.policies",
            ),
            (GOOD.replace("\"1.2.3.5\"", "\"1.2\""), "tsa.policies"),
            (
                GOOD.replace("default_policy = \"1.2.3.4\"", "default_policy = \"1.9\""),
                "tsa.default_policy",
            ),
            (GOOD.replace("seconds = 1", "seconds = 0"), "tsa.accuracy"),
            (
                GOOD.replace("seconds = 1", "millis = 1000"),
                "tsa.accuracy.millis",
            ),
            (GOOD.replace("127.0.0.1:8318", "localhost"), "http.listen"),
            (
                GOOD.replace(
                    "listen = \"127.0.0.1:8318\"",
                    "listen = \"127.0.0.1:8318\"\nworker_threads = 5000",
                ),
                "http.worker_threads",
            ),
            (
                GOOD.replace("pin_env = \"PIN\"", "pin = \"1234\""),
                "hsm.pin",
            ),
            (GOOD.replace("pin_env = \"PIN\"", ""), "hsm.pin_env"),
            (GOOD.replace("token_label = \"t\"", ""), "hsm.token_label"),
            (
                GOOD.replace("key_label = \"chain\"", "key_label = \"\""),
                "chain.key_label",
            ),
            (
                GOOD.replace(
                    "key_label = \"chain\"",
                    "key_label = \"c\"\norigin = \"a b\"",
                ),
                "chain.origin",
            ),
            (
                GOOD.replace(
                    "key_label = \"chain\"",
                    "key_label = \"c\"\nseal_interval_ms = 1",
                ),
                "chain.seal_interval_ms",
            ),
            (
                GOOD.replace(
                    "key_label = \"chain\"",
                    "key_label = \"c\"\nmax_block_events = 0",
                ),
                "chain.max_block_events",
            ),
            (
                GOOD.replace(
                    "key_label = \"chain\"",
                    "key_label = \"c\"\nmax_batch_bytes = 10",
                ),
                "chain.max_batch_bytes",
            ),
            (GOOD.replace("[chain]\nkey_label = \"chain\"", ""), "chain"),
            (GOOD.replace("plain_http = true", ""), "http.tls"),
            (
                GOOD.replace(
                    "plain_http = true",
                    "plain_http = true\n[http.tls]\ncert_file = \"c\"\nkey_file = \"k\"",
                ),
                "http.plain_http",
            ),
            (
                GOOD.replace(
                    "plain_http = true",
                    "[http.tls]\ncert_file = \"c\"\nkey_file = \"k\"\nrequire_client_cert = [\"tsa\"]",
                ),
                "http.tls.require_client_cert",
            ),
            (
                GOOD.replace(
                    "plain_http = true",
                    "[http.tls]\ncert_file = \"c\"\nkey_file = \"k\"\nclient_ca_file = \"ca\"\nrequire_client_cert = [\"all\"]",
                ),
                "http.tls.require_client_cert",
            ),
            (
                GOOD.replace("plain_http = true", "plain_http = true\nheader_timeout_ms = 5"),
                "http.header_timeout_ms",
            ),
            (
                GOOD.replace("plain_http = true", "plain_http = true\nmax_connections = 0"),
                "http.max_connections",
            ),
            (
                GOOD.replace(
                    "plain_http = true",
                    "plain_http = true\nmax_connections_per_address = 0",
                ),
                "http.max_connections_per_address",
            ),
            (
                GOOD.replace("plain_http = true", "plain_http = true\nidle_timeout_ms = 10"),
                "http.idle_timeout_ms",
            ),
            (
                GOOD.replace(
                    "plain_http = true",
                    "plain_http = true\nhttp2_ping_interval_ms = 0",
                ),
                "http.http2_ping_interval_ms",
            ),
            (
                GOOD.replace(
                    "plain_http = true",
                    "plain_http = true\nhttp2_ping_timeout_ms = 9999999",
                ),
                "http.http2_ping_timeout_ms",
            ),
        ];
        for (text, key) in cases {
            let e = err(&text);
            assert!(e.contains(key), "expected {key} in {e}");
            assert!(!e.contains("1234"), "PIN leaked: {e}");
        }
    }

    #[test]
    fn pin_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pin"), "s3cret\n").unwrap();
        let text = GOOD
            .replace("pin_env = \"PIN\"", "pin_file = \"pin\"")
            .replace("/tmp/x", dir.path().to_str().unwrap());
        let v = parse(&text, &Overrides::default()).unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(v.pin.read().unwrap().expose_secret(), "s3cret");
        let missing = PinSource::File(dir.path().join("nope")).read().unwrap_err();
        assert!(missing.to_string().contains("hsm.pin_file"));
    }
}
