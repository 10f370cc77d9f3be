//! The data center witness's configuration: one TOML file with `[witness]`, `[hsm]` (as
//! the appliance's, with the same PIN rules) and one `[[log]]` per registered appliance.
//!
//! Unknown keys are refused by name and every semantic check names its key, as for the
//! appliance's file. The same environment variables override it: `AUDITSTAMP_STATE_DIR`
//! (`witness.state_dir`) and `AUDITSTAMP_LISTEN` (`witness.listen`). `hsm.pin_file` is
//! relative to the state directory.
//!
//! Verifier keys are checked for shape here (`name+hex id+base64`); the `cli` parses them
//! with `chain::note`. `[witness.store]` chooses the store engine: sled (the default) or
//! PostgreSQL, whose settings ([`PostgresSettings`]) are made here.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{
    invalid, validate_hsm, ConfigError, HsmConfig, PinSource, Validated, ENV_LISTEN, ENV_STATE_DIR,
};
use crate::witness::store::PostgresSettings;

/// The witness's configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// The witness itself.
    pub witness: WitnessSection,
    /// The HSM that holds the witness key, and how to log in to it.
    pub hsm: HsmConfig,
    /// The registered logs (appliances), one `[[log]]` each.
    #[serde(default)]
    pub log: Vec<WitnessLogConfig>,
}

/// `[witness]`: name, key, state and listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessSection {
    /// The cosigner name, a schema-less URL (e.g. `witness.office.example/w1`): the key name
    /// of every cosignature line.
    pub name: String,
    /// Label of the witness's Ed25519 key (purpose witness) on the token.
    pub key_label: String,
    /// The state directory (the store lives in `<state_dir>/witness-store`).
    pub state_dir: PathBuf,
    /// Address and port, e.g. "127.0.0.1:8320".
    pub listen: String,
    /// Serve plain HTTP, without TLS: for development only; default false.
    #[serde(default)]
    pub plain_http: bool,
    /// TLS (required unless `plain_http`); client certificates are not asked for (each
    /// checkpoint is authenticated by its appliance's signature).
    pub tls: Option<crate::config::TlsConfig>,
    /// An appliance whose last cosignature is older than this (or that has none) counts
    /// as stale in `/status` and `/metrics`; default 3600.
    #[serde(default = "default_stale_after")]
    pub stale_after_seconds: u64,
    /// Longest time one request may take, in milliseconds; default 10000.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// Largest `POST /add-checkpoint` body, bytes; default 65536.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// From accept, longest time for the TLS handshake and the first request's head
    /// together; on HTTP/1.1 also for each later head; in milliseconds; default 5000.
    #[serde(default = "crate::config::default_header_timeout")]
    pub header_timeout_ms: u64,
    /// Most open connections; beyond, new ones are closed at once; default 4096.
    #[serde(default = "crate::config::default_max_connections")]
    pub max_connections: usize,
    /// Most open connections from one IP address; beyond, new ones are closed at once;
    /// default 64.
    #[serde(default = "crate::config::default_max_connections_per_address")]
    pub max_connections_per_address: usize,
    /// A connection with no request open for this long is closed, in milliseconds;
    /// default 30000.
    #[serde(default = "crate::config::default_idle_timeout")]
    pub idle_timeout_ms: u64,
    /// How often an HTTP/2 connection is pinged, in milliseconds; default 10000.
    #[serde(default = "crate::config::default_http2_ping_interval")]
    pub http2_ping_interval_ms: u64,
    /// How long a ping may go unanswered before its HTTP/2 connection is closed, in
    /// milliseconds; default 10000.
    #[serde(default = "crate::config::default_http2_ping_timeout")]
    pub http2_ping_timeout_ms: u64,
    /// Log format: "text" (default) or "json".
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// A tracing filter, e.g. "info"; `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Where the witness keeps its state: `[witness.store]`; sled in the state directory
    /// when absent.
    #[serde(default)]
    pub store: StoreConfig,
}

/// `[witness.store]`: the store engine.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `"sled"` (the default: embedded, in `<state_dir>/witness-store`, one server) or
    /// `"postgres"` (one database that several witness servers share).
    #[serde(default)]
    pub kind: StoreKind,
    /// PostgreSQL: a libpq connection string or URL without a password, e.g.
    /// `host=/run/postgresql dbname=witness user=witness`.
    pub url: Option<String>,
    /// PostgreSQL: a file whose first line is the password (relative paths are relative to
    /// the state directory).
    pub password_file: Option<PathBuf>,
    /// PostgreSQL: an environment variable that holds the password.
    pub password_env: Option<String>,
    /// PostgreSQL with `sslmode=require` in the URL: the CA certificates (PEM) the
    /// database's certificate must chain to, instead of the system's roots (relative paths
    /// are relative to the state directory).
    pub ca_file: Option<PathBuf>,
    /// PostgreSQL: connections in this server's pool; default 16.
    pub pool_size: Option<usize>,
    /// PostgreSQL: how long a connection (or a free one from the pool) is waited for, in
    /// milliseconds; default 5000.
    pub connect_timeout_ms: Option<u64>,
    /// PostgreSQL: how often every log's record is read again (the other servers' writes;
    /// also the readiness probe), in milliseconds; default 2000.
    pub refresh_ms: Option<u64>,
}

/// The store engines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// sled, embedded (the default).
    #[default]
    Sled,
    /// PostgreSQL.
    Postgres,
}

/// The validated `[witness.store]`.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    /// sled in `<state_dir>/witness-store`.
    Sled,
    /// PostgreSQL: where and how (the password is read when the store is opened).
    Postgres {
        /// The connection string, without a password.
        url: String,
        /// Where the password comes from, if the server asks for one.
        password: Option<PinSource>,
        /// The CAs of a TLS connection (`None`: the system's roots).
        ca_file: Option<PathBuf>,
        /// Connections in the pool.
        pool_size: usize,
        /// How long a connection is waited for.
        connect_timeout: Duration,
        /// How often the records are read again.
        refresh: Duration,
    },
}

impl StoreChoice {
    /// The PostgreSQL store's settings, with its password read (errors name the source,
    /// never the password); `None` for sled.
    pub fn postgres_settings(&self) -> Result<Option<PostgresSettings>, ConfigError> {
        let StoreChoice::Postgres {
            url,
            password,
            ca_file,
            pool_size,
            connect_timeout,
            refresh,
        } = self
        else {
            return Ok(None);
        };
        let password = password
            .as_ref()
            .map(|p| {
                p.read_secret(
                    ["witness.store.password_env", "witness.store.password_file"],
                    "database password",
                )
            })
            .transpose()?;
        Ok(Some(PostgresSettings {
            url: url.clone(),
            password,
            ca_file: ca_file.clone(),
            pool_size: *pool_size,
            connect_timeout: *connect_timeout,
            refresh: *refresh,
        }))
    }
}

fn validate_store(c: &StoreConfig, state_dir: &Path) -> Result<StoreChoice, ConfigError> {
    if c.kind == StoreKind::Sled {
        let set = [
            ("url", c.url.is_some()),
            ("password_file", c.password_file.is_some()),
            ("password_env", c.password_env.is_some()),
            ("ca_file", c.ca_file.is_some()),
            ("pool_size", c.pool_size.is_some()),
            ("connect_timeout_ms", c.connect_timeout_ms.is_some()),
            ("refresh_ms", c.refresh_ms.is_some()),
        ];
        if let Some((name, _)) = set.iter().find(|(_, is)| *is) {
            return Err(invalid(
                "witness.store",
                format!("{name} is a setting of kind = \"postgres\"; the sled store takes none"),
            ));
        }
        return Ok(StoreChoice::Sled);
    }
    let url = c.url.clone().ok_or_else(|| {
        invalid(
            "witness.store.url",
            "kind = \"postgres\" needs the database's connection string \
             (e.g. \"host=/run/postgresql dbname=witness user=witness\")",
        )
    })?;
    let parsed: tokio_postgres::Config = url
        .parse()
        .map_err(|e| invalid("witness.store.url", format!("does not parse: {e}")))?;
    if parsed.get_password().is_some() {
        return Err(invalid(
            "witness.store.url",
            "holds a password: give it in witness.store.password_file or password_env",
        ));
    }
    if parsed.get_hosts().is_empty() {
        return Err(invalid(
            "witness.store.url",
            "names no host (host=/run/postgresql for the local socket)",
        ));
    }
    // With sslmode=require the database's certificate is checked (its chain against the
    // CAs, its name against the host); prefer and disable never check one.
    let tls = parsed.get_ssl_mode() == tokio_postgres::config::SslMode::Require;
    if c.ca_file.is_some() && !tls {
        return Err(invalid(
            "witness.store.ca_file",
            "is used with TLS only: add sslmode=require to witness.store.url",
        ));
    }
    for host in parsed.get_hosts() {
        if let tokio_postgres::config::Host::Tcp(name) = host {
            let local = name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !local && !tls {
                return Err(invalid(
                    "witness.store.url",
                    format!(
                        "host {name:?} is reached over the network: add sslmode=require (TLS, \
                         the database's certificate checked against witness.store.ca_file or \
                         the system's roots), or use a Unix socket or a loopback address"
                    ),
                ));
            }
        }
    }
    let password = match (&c.password_file, &c.password_env) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "witness.store.password_file",
                "give password_file or password_env, not both",
            ))
        }
        (Some(f), None) => Some(PinSource::File(state_dir.join(f))),
        (None, Some(e)) if e.is_empty() => {
            return Err(invalid("witness.store.password_env", "must not be empty"))
        }
        (None, Some(e)) => Some(PinSource::Env(e.clone())),
        (None, None) => None,
    };
    let pool_size = c.pool_size.unwrap_or(16);
    if !(1..=256).contains(&pool_size) {
        return Err(invalid(
            "witness.store.pool_size",
            "must be between 1 and 256",
        ));
    }
    let connect_timeout_ms = c.connect_timeout_ms.unwrap_or(5000);
    if !(100..=120_000).contains(&connect_timeout_ms) {
        return Err(invalid(
            "witness.store.connect_timeout_ms",
            "must be between 100 and 120000",
        ));
    }
    let refresh_ms = c.refresh_ms.unwrap_or(2000);
    if !(50..=600_000).contains(&refresh_ms) {
        return Err(invalid(
            "witness.store.refresh_ms",
            "must be between 50 and 600000",
        ));
    }
    Ok(StoreChoice::Postgres {
        url,
        password,
        ca_file: c.ca_file.as_ref().map(|f| state_dir.join(f)),
        pool_size,
        connect_timeout: Duration::from_millis(connect_timeout_ms),
        refresh: Duration::from_millis(refresh_ms),
    })
}

impl WitnessSection {
    /// The listener's connection limits.
    pub fn listener_limits(&self) -> crate::config::ListenerLimits {
        crate::config::ListenerLimits {
            header_timeout_ms: self.header_timeout_ms,
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            idle_timeout_ms: self.idle_timeout_ms,
            http2_ping_interval_ms: self.http2_ping_interval_ms,
            http2_ping_timeout_ms: self.http2_ping_timeout_ms,
        }
    }
}

fn default_stale_after() -> u64 {
    3600
}

fn default_request_timeout() -> u64 {
    10_000
}

fn default_max_body() -> usize {
    64 * 1024
}

fn default_log_format() -> String {
    "text".into()
}

fn default_log_level() -> String {
    "info".into()
}

/// `[[log]]`: one registered appliance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessLogConfig {
    /// The checkpoint origin line (the appliance's `chain.origin`).
    pub origin: String,
    /// The note verifier key of its checkpoints, `name+id+base64(0x01 || key)` (the
    /// appliance logs it at startup as `verifier_key`).
    pub key: String,
    /// Where the appliance serves its chain (informational: shown in `/status`).
    pub url: Option<String>,
}

/// The witness configuration after every check.
#[derive(Debug, Clone)]
pub struct ValidatedWitness {
    /// The file as parsed (with environment overrides applied).
    pub raw: WitnessConfig,
    /// The listen address.
    pub listen: SocketAddr,
    /// Where the PIN comes from.
    pub pin: PinSource,
    /// `witness.tls` with its paths resolved against the state directory.
    pub tls: Option<crate::config::TlsConfig>,
    /// `[witness.store]`.
    pub store: StoreChoice,
}

impl ValidatedWitness {
    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.raw.witness.state_dir
    }
}

/// Either kind of configuration file, told apart by a `[witness]` table.
#[derive(Debug, Clone)]
pub enum AnyConfig {
    /// An appliance's configuration.
    Appliance(Box<Validated>),
    /// A witness's configuration.
    Witness(Box<ValidatedWitness>),
}

impl AnyConfig {
    /// The `[hsm]` section and the PIN source of either.
    pub fn hsm(&self) -> (&HsmConfig, &PinSource) {
        match self {
            AnyConfig::Appliance(c) => (&c.raw.hsm, &c.pin),
            AnyConfig::Witness(c) => (&c.raw.hsm, &c.pin),
        }
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

fn with_path(path: &Path) -> impl FnOnce(ConfigError) -> ConfigError + '_ {
    move |e| match e {
        ConfigError::Parse { message, .. } => ConfigError::Parse {
            path: path.to_owned(),
            message,
        },
        other => other,
    }
}

fn env_overrides() -> crate::config::Overrides {
    crate::config::Overrides {
        state_dir: std::env::var_os(ENV_STATE_DIR).map(PathBuf::from),
        listen: std::env::var(ENV_LISTEN).ok(),
    }
}

/// Reads, parses and validates a witness configuration file, applying the environment
/// overrides.
pub fn load_witness(path: &Path) -> Result<ValidatedWitness, ConfigError> {
    parse_witness(&read(path)?, &env_overrides()).map_err(with_path(path))
}

/// Reads either kind of configuration file: a witness's when it has a `[witness]` table,
/// else an appliance's.
pub fn load_any(path: &Path) -> Result<AnyConfig, ConfigError> {
    let text = read(path)?;
    let is_witness = toml::from_str::<toml::Table>(&text)
        .map(|t| t.contains_key("witness"))
        .unwrap_or(false);
    let overrides = env_overrides();
    if is_witness {
        parse_witness(&text, &overrides)
            .map(|c| AnyConfig::Witness(Box::new(c)))
            .map_err(with_path(path))
    } else {
        crate::config::parse(&text, &overrides)
            .map(|c| AnyConfig::Appliance(Box::new(c)))
            .map_err(with_path(path))
    }
}

/// Parses and validates witness configuration text.
pub fn parse_witness(
    text: &str,
    overrides: &crate::config::Overrides,
) -> Result<ValidatedWitness, ConfigError> {
    let mut raw: WitnessConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: PathBuf::from("<config>"),
        message: e.to_string().trim_end().replace('\n', " "),
    })?;
    if let Some(dir) = &overrides.state_dir {
        raw.witness.state_dir = dir.clone();
    }
    if let Some(listen) = &overrides.listen {
        raw.witness.listen = listen.clone();
    }
    validate_witness(raw)
}

/// True for a key name or origin: non-empty, no Unicode space, no `+`, no control character.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
}

/// The shape of a note verifier key: `name+<8 hex digits>+<base64>`.
fn verifier_key_shape(key: &str) -> Result<(), String> {
    let mut parts = key.splitn(3, '+');
    let (Some(name), Some(id), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("a note verifier key is name+id+key (e.g. as the appliance logs it)".into());
    };
    if !is_name(name) {
        return Err("the key name is empty or has spaces".into());
    }
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("the key id is not 8 hex digits".into());
    }
    if rest.is_empty()
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
    {
        return Err("the key is not base64".into());
    }
    Ok(())
}

fn validate_witness(raw: WitnessConfig) -> Result<ValidatedWitness, ConfigError> {
    let w = &raw.witness;
    if !is_name(&w.name) {
        return Err(invalid(
            "witness.name",
            "the cosigner name is a non-empty schema-less URL without spaces or '+' \
             (e.g. witness.office.example/w1)",
        ));
    }
    if w.key_label.is_empty() {
        return Err(invalid("witness.key_label", "must not be empty"));
    }
    if w.state_dir.as_os_str().is_empty() {
        return Err(invalid("witness.state_dir", "must not be empty"));
    }
    let listen = SocketAddr::from_str(&w.listen).map_err(|e| {
        invalid(
            "witness.listen",
            format!("{:?} is not an address:port: {e}", w.listen),
        )
    })?;
    if w.stale_after_seconds == 0 {
        return Err(invalid("witness.stale_after_seconds", "must be at least 1"));
    }
    if !(100..=600_000).contains(&w.request_timeout_ms) {
        return Err(invalid(
            "witness.request_timeout_ms",
            "must be between 100 and 600000",
        ));
    }
    crate::config::validate_listener(
        &w.listener_limits(),
        &crate::config::ListenerKeys {
            header_timeout: "witness.header_timeout_ms",
            max_connections: "witness.max_connections",
            per_address: "witness.max_connections_per_address",
            idle_timeout: "witness.idle_timeout_ms",
            ping_interval: "witness.http2_ping_interval_ms",
            ping_timeout: "witness.http2_ping_timeout_ms",
        },
    )?;
    if !(1024..=1 << 20).contains(&w.max_body_bytes) {
        return Err(invalid(
            "witness.max_body_bytes",
            "must be between 1024 and 1048576",
        ));
    }
    if !["text", "json"].contains(&w.log_format.as_str()) {
        return Err(invalid(
            "witness.log_format",
            "must be \"text\" or \"json\"",
        ));
    }
    let pin = validate_hsm(&raw.hsm, &w.state_dir)?;
    let store = validate_store(&w.store, &w.state_dir)?;
    let tls = crate::config::validate_tls_choice(
        w.plain_http,
        w.tls.as_ref(),
        &w.state_dir,
        &crate::config::TlsKeys {
            tls: "witness.tls",
            plain: "witness.plain_http",
            require: "witness.tls.require_client_cert",
            groups: &[],
        },
    )?;
    if raw.log.is_empty() {
        return Err(invalid(
            "log",
            "register at least one appliance with a [[log]] table (origin, key)",
        ));
    }
    let mut seen = HashSet::new();
    for (i, l) in raw.log.iter().enumerate() {
        let n = i + 1;
        if !is_name(&l.origin) {
            return Err(invalid(
                "log.origin",
                format!(
                    "[[log]] #{n}: {:?} is not a checkpoint origin (non-empty, no spaces, \
                     control characters or '+')",
                    l.origin
                ),
            ));
        }
        if !seen.insert(l.origin.as_str()) {
            return Err(invalid(
                "log.origin",
                format!("[[log]] #{n}: origin {:?} is registered twice", l.origin),
            ));
        }
        verifier_key_shape(&l.key)
            .map_err(|e| invalid("log.key", format!("[[log]] #{n} ({}): {e}", l.origin)))?;
        if let Some(url) = &l.url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(invalid(
                    "log.url",
                    format!("[[log]] #{n} ({}): {url:?} is not an http(s) URL", l.origin),
                ));
            }
        }
    }
    Ok(ValidatedWitness {
        raw,
        listen,
        pin,
        tls,
        store,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::config::Overrides;

    const GOOD: &str = r#"
[witness]
plain_http = true
name = "witness.office.example/w1"
key_label = "witness"
state_dir = "/tmp/w"
listen = "127.0.0.1:8320"

[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "t"
pin_env = "PIN"

[[log]]
origin = "a1.example/chain"
key = "a1.example/chain+01234567+AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
url = "https://a1.example"

[[log]]
origin = "a2.example/chain"
key = "a2.example/chain+89abcdef+AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
"#;

    fn err(text: &str) -> String {
        parse_witness(text, &Overrides::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn good_config_parses_with_defaults_and_overrides() {
        let v = parse_witness(GOOD, &Overrides::default()).unwrap();
        assert_eq!(v.raw.log.len(), 2);
        assert_eq!(v.raw.witness.stale_after_seconds, 3600);
        let limits = v.raw.witness.listener_limits();
        assert_eq!(
            (limits.header_timeout_ms, limits.idle_timeout_ms),
            (5000, 30_000)
        );
        assert_eq!(
            (limits.max_connections, limits.max_connections_per_address),
            (4096, 64)
        );
        assert_eq!(v.raw.hsm.sessions, 2);
        assert_eq!(v.pin, PinSource::Env("PIN".into()));
        assert_eq!(v.raw.log[1].url, None);
        let o = Overrides {
            state_dir: Some("/srv/w".into()),
            listen: Some("127.0.0.1:9".into()),
        };
        let v =
            parse_witness(&GOOD.replace("pin_env = \"PIN\"", "pin_file = \"pin\""), &o).unwrap();
        assert_eq!(v.state_dir(), Path::new("/srv/w"));
        assert_eq!(v.listen.port(), 9);
        assert_eq!(v.pin, PinSource::File("/srv/w/pin".into()));
    }

    #[test]
    fn the_appliances_search_scoping_is_refused_here() {
        let text = GOOD.replace(
            "plain_http = true",
            "[witness.tls]\ncert_file = \"c\"\nkey_file = \"k\"\nauditors_of_all = [\"x\"]\n\n[witness]",
        );
        let e = err(&text.replacen("[witness]\n", "", 1));
        assert!(e.contains("auditors_of_all"), "{e}");
    }

    #[test]
    fn the_shipped_template_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-config/witness.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        parse_witness(&text, &Overrides::default()).unwrap();
    }

    /// `[witness.store]`: sled by default and without settings; PostgreSQL with a URL
    /// that holds no password, a local host, and its password from a file or the
    /// environment (read when the store opens, never shown).
    #[test]
    fn the_store_section_is_checked() {
        let with =
            |store: &str| GOOD.replace("[hsm]", &format!("[witness.store]\n{store}\n\n[hsm]"));
        let ok = |store: &str| parse_witness(&with(store), &Overrides::default()).unwrap();
        assert!(matches!(
            parse_witness(GOOD, &Overrides::default()).unwrap().store,
            StoreChoice::Sled
        ));
        assert!(matches!(ok("kind = \"sled\"").store, StoreChoice::Sled));
        let pg = ok(
            "kind = \"postgres\"\nurl = \"host=/run/postgresql dbname=w user=w\"\n\
             password_file = \"db.password\"\npool_size = 8",
        );
        let StoreChoice::Postgres {
            password,
            pool_size,
            refresh,
            ..
        } = &pg.store
        else {
            panic!("not postgres: {:?}", pg.store);
        };
        assert_eq!(*pool_size, 8);
        assert_eq!(*refresh, Duration::from_millis(2000));
        assert!(
            matches!(password, Some(PinSource::File(p)) if p == Path::new("/tmp/w/db.password"))
        );
        // The password is read when asked for; a missing file is named, not shown.
        let e = pg.store.postgres_settings().unwrap_err().to_string();
        assert!(
            e.contains("witness.store.password_file") && e.contains("db.password"),
            "{e}"
        );
        assert!(
            ok("kind = \"postgres\"\nurl = \"postgresql://w@localhost/w\"")
                .store
                .postgres_settings()
                .unwrap()
                .is_some()
        );
        let err_of = |store: &str| {
            parse_witness(&with(store), &Overrides::default())
                .unwrap_err()
                .to_string()
        };
        for (store, key) in [
            ("kind = \"sled\"\nurl = \"host=/tmp\"", "witness.store"),
            ("kind = \"postgres\"", "witness.store.url"),
            ("kind = \"mysql\"", "kind"),
            ("kind = \"postgres\"\nurl = \"host=/tmp password=hunter2\"", "witness.store.url"),
            ("kind = \"postgres\"\nurl = \"postgresql://w:hunter2@localhost/w\"", "witness.store.url"),
            ("kind = \"postgres\"\nurl = \"host=db.example.org dbname=w\"", "witness.store.url"),
            ("kind = \"postgres\"\nurl = \"dbname=w\"", "witness.store.url"),
            (
                "kind = \"postgres\"\nurl = \"host=/tmp\"\npassword_file = \"a\"\npassword_env = \"B\"",
                "witness.store.password_file",
            ),
            ("kind = \"postgres\"\nurl = \"host=/tmp\"\npool_size = 0", "witness.store.pool_size"),
            ("kind = \"postgres\"\nurl = \"host=/tmp\"\nrefresh_ms = 1", "witness.store.refresh_ms"),
            ("kind = \"postgres\"\nurl = \"host=/tmp\"\nsecret = 1", "secret"),
        ] {
            let e = err_of(store);
            assert!(e.contains(key), "{store}: {e}");
            assert!(!e.contains("hunter2"), "{store}: {e}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (GOOD.replace("[witness]", "[witness]\nport = 1"), "port"),
            (GOOD.replace("url = ", "link = "), "link"),
            (
                GOOD.replace("witness.office.example/w1", "has space"),
                "witness.name",
            ),
            (
                GOOD.replace("key_label = \"witness\"", "key_label = \"\""),
                "witness.key_label",
            ),
            (
                GOOD.replace("127.0.0.1:8320", "localhost"),
                "witness.listen",
            ),
            (GOOD.replace("[hsm]", "[hsm]\npin = \"1234\""), "hsm.pin"),
            (GOOD.replace("pin_env = \"PIN\"", ""), "hsm.pin_env"),
            (GOOD.replace("token_label = \"t\"", ""), "hsm.token_label"),
            (GOOD.replace("[hsm]", "[hsm]\nsessions = 0"), "hsm.sessions"),
            (
                GOOD.replace(
                    "origin = \"a2.example/chain\"",
                    "origin = \"a1.example/chain\"",
                ),
                "log.origin",
            ),
            (
                GOOD.replace("origin = \"a2.example/chain\"", "origin = \"a 2\""),
                "log.origin",
            ),
            (GOOD.replace("+89abcdef+", "+89abcde+"), "log.key"),
            (GOOD.replace("+89abcdef+", "+"), "log.key"),
            (GOOD.replace("https://a1.example", "ftp://a1"), "log.url"),
            (GOOD.split("[[log]]").next().unwrap().to_string(), "log"),
            (
                GOOD.replace("[witness]", "[witness]\nstale_after_seconds = 0"),
                "witness.stale_after_seconds",
            ),
            (
                GOOD.replace("[witness]", "[witness]\nmax_body_bytes = 10"),
                "witness.max_body_bytes",
            ),
            (
                GOOD.replace("[witness]", "[witness]\nlog_format = \"xml\""),
                "witness.log_format",
            ),
            (
                GOOD.replace("[witness]", "[witness]\nheader_timeout_ms = 99"),
                "witness.header_timeout_ms",
            ),
            (
                GOOD.replace("[witness]", "[witness]\nmax_connections_per_address = 0"),
                "witness.max_connections_per_address",
            ),
            (
                GOOD.replace("[witness]", "[witness]\nidle_timeout_ms = 0"),
                "witness.idle_timeout_ms",
            ),
            (
                GOOD.replace("[witness]", "[witness]\nhttp2_ping_timeout_ms = 5"),
                "witness.http2_ping_timeout_ms",
            ),
        ];
        for (text, key) in cases {
            let e = err(&text);
            assert!(e.contains(key), "expected {key} in {e}");
            assert!(!e.contains("1234"), "PIN leaked: {e}");
        }
    }

    #[test]
    fn either_kind_of_file_loads() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("w.toml");
        std::fs::write(&w, GOOD).unwrap();
        assert!(matches!(load_any(&w).unwrap(), AnyConfig::Witness(_)));
        let a = Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-config/dev.toml");
        let any = load_any(&a).unwrap();
        assert!(matches!(any, AnyConfig::Appliance(_)));
        assert_eq!(any.hsm().0.token_label.as_deref(), Some("auditstamp-dev"));
    }
}
