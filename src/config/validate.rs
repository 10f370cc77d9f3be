//! The semantic checks of a configuration: every value in its range, every choice
//! consistent, each error naming its key. `[hsm]`, the listener's limits and its TLS choice
//! are checked here for the appliance's file and the witness's alike.

use super::*;

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
    if !tls.auditors_of_all.is_empty() {
        if keys.tls != "http.tls" {
            return Err(invalid(
                keys.tls,
                "auditors_of_all is a setting of the appliance's event search (http.tls), not of this listener",
            ));
        }
        if tls.client_ca_file.is_none() {
            return Err(invalid(
                "http.tls.auditors_of_all",
                "needs client_ca_file: identities come from verified client certificates",
            ));
        }
    }
    Ok(Some(TlsConfig {
        cert_file: state_dir.join(&tls.cert_file),
        key_file: state_dir.join(&tls.key_file),
        client_ca_file: tls.client_ca_file.as_ref().map(|f| state_dir.join(f)),
        require_client_cert: tls.require_client_cert.clone(),
        auditors_of_all: tls.auditors_of_all.clone(),
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
pub(super) fn validate_tls(
    http: &HttpConfig,
    state_dir: &Path,
) -> Result<Option<TlsConfig>, ConfigError> {
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

/// Checks `[hsm]` (the appliance's and the witness's alike: module, exactly one of token label and
/// serial, exactly one PIN source, never a PIN, 1..=64 sessions) and returns where the PIN
/// comes from (`pin_file` resolved against `state_dir`).
pub fn validate_hsm(hsm: &HsmConfig, state_dir: &Path) -> Result<PinSource, ConfigError> {
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
        (None, Some(file)) => PinSource::File(state_dir.join(file)),
    };
    if !(1..=64).contains(&hsm.sessions) {
        return Err(invalid("hsm.sessions", "must be between 1 and 64"));
    }
    Ok(pin)
}

/// Checks `[archive]`.
fn validate_archive(a: &ArchiveConfig) -> Result<(), ConfigError> {
    for (given, key, env) in [
        (
            a.secret_access_key.is_some(),
            "archive.secret_access_key",
            "archive.secret_access_key_env",
        ),
        (
            a.access_key_id.is_some(),
            "archive.access_key_id",
            "archive.access_key_id_env",
        ),
    ] {
        if given {
            return Err(invalid(
                key,
                format!(
                    "credentials are never written in the configuration; name the environment \
                     variable that holds it with {env}"
                ),
            ));
        }
    }
    let url = a.url.as_str();
    let bucket = url
        .strip_prefix("s3://")
        .map(|r| r.split('/').next().unwrap_or(""));
    match bucket {
        Some("") => {
            return Err(invalid(
                "archive.url",
                "names no bucket: s3://<bucket>[/<prefix>]",
            ))
        }
        Some(_) => {}
        None if url.starts_with("file:///") => {
            if a.endpoint.is_some() {
                return Err(invalid("archive.endpoint", "is for s3:// archives only"));
            }
        }
        None => {
            return Err(invalid(
                "archive.url",
                format!("{url:?}: give s3://<bucket>[/<prefix>] or file:///<directory>"),
            ))
        }
    }
    if let Some(e) = &a.endpoint {
        if !(e.starts_with("https://") || e.starts_with("http://")) {
            return Err(invalid("archive.endpoint", "give https://host[:port]"));
        }
    }
    if !(1..=256).contains(&a.concurrency) {
        return Err(invalid("archive.concurrency", "must be between 1 and 256"));
    }
    if !(1000..=600_000).contains(&a.timeout_ms) {
        return Err(invalid(
            "archive.timeout_ms",
            "must be between 1000 and 600000",
        ));
    }
    if a.retain_events == Some(0) {
        return Err(invalid(
            "archive.retain_events",
            "must be at least 1 (leave it out to keep everything)",
        ));
    }
    Ok(())
}

pub(super) fn validate(raw: Config) -> Result<Validated, ConfigError> {
    if let Some(a) = &raw.archive {
        validate_archive(a)?;
    }
    if raw.node.name.trim().is_empty() {
        return Err(invalid("node.name", "must not be empty"));
    }
    if raw.node.state_dir.as_os_str().is_empty() {
        return Err(invalid("node.state_dir", "must not be empty"));
    }
    let pin = validate_hsm(&raw.hsm, &raw.node.state_dir)?;

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
