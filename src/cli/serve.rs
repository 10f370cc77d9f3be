//! `auditstamp serve`: check everything at startup, then serve until SIGTERM or ctrl-c.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use x509_cert::Certificate;

use super::{open_hsm_with, CliError};
use crate::chain::index::SearchIndex;
use crate::chain::log::EventLog;
use crate::chain::store::Store;
use crate::clock::{Clock, ClockGuard, SystemClock};
use crate::config::{self, Validated};
use crate::http::{self, AppState, HttpSettings};
use crate::provision;
use crate::service::chain::{ChainService, ChainSettings};
use crate::service::EventWriter;
use crate::service::{SigningIdentity, TsaService, TsaSettings};
use crate::signer::pkcs11::Hsm;
use crate::signer::pool::SigningPool;
use crate::signer::{KeyAlgorithm, KeyPurpose, Signer};
use crate::tsp::{Accuracy, HashAlgorithm, RequestRules};

/// Runs the server with the configuration at `config_path`.
pub fn run(config_path: &Path) -> Result<(), CliError> {
    let cfg = config::load(config_path)?;
    super::init_logging(&cfg.raw.log.level, &cfg.raw.log.format);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if cfg.raw.http.worker_threads > 0 {
        builder.worker_threads(cfg.raw.http.worker_threads);
    }
    let runtime = builder
        .enable_all()
        .thread_name("auditstamp")
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(serve(cfg))
}

/// The listener's options from a section's limits (`[http]` or `[witness]`).
pub(super) fn listener_options(
    limits: &config::ListenerLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    drain: Duration,
    counts: Arc<http::server::ConnectionCounts>,
) -> http::server::ListenerOptions {
    http::server::ListenerOptions {
        tls,
        header_timeout: Duration::from_millis(limits.header_timeout_ms),
        idle_timeout: Duration::from_millis(limits.idle_timeout_ms),
        http2_ping_interval: Duration::from_millis(limits.http2_ping_interval_ms),
        http2_ping_timeout: Duration::from_millis(limits.http2_ping_timeout_ms),
        max_connections: limits.max_connections,
        max_connections_per_address: limits.max_connections_per_address,
        drain,
        counts,
    }
}

/// Reads the intermediates/root PEM file, if one is configured; each certificate must be
/// strict DER (tokens carry their re-encoding).
fn load_chain(cfg: &Validated) -> Result<Vec<Certificate>, CliError> {
    let Some(path) = &cfg.chain_file else {
        return Ok(Vec::new());
    };
    let mut chain = Vec::new();
    for (i, der) in super::read_certificate_file(path)?.iter().enumerate() {
        let what = format!("tsa.chain_file {} certificate {}", path.display(), i + 1);
        chain.push(provision::identity::strict_certificate(der, &what)?);
    }
    if chain.is_empty() {
        return Err(CliError::Other(format!(
            "tsa.chain_file {}: no certificate in it",
            path.display()
        )));
    }
    Ok(chain)
}

/// Finds the active key, checks its certificate and chain ([`provision::identity`]), and
/// starts signing with it. Every failure names its cause; nothing is served until all of
/// it holds.
pub(crate) fn signing_identity(
    cfg: &Validated,
    hsm: &Hsm,
    now: SystemTime,
) -> Result<SigningIdentity, CliError> {
    let id = provision::identity::tsa_identity(hsm, &cfg.raw.tsa.key_label, load_chain(cfg)?, now)?;
    let signer = SigningPool::start(
        hsm,
        &id.key.label,
        cfg.raw.hsm.sessions,
        cfg.raw.hsm.verify_after_sign,
    )?;
    Ok(SigningIdentity::new(
        Arc::new(signer),
        id.certificate,
        id.chain,
        cfg.raw.tsa.include_chain,
        id.previous,
    )?)
}

fn tsa_settings(cfg: &Validated) -> Result<TsaSettings, CliError> {
    let accepted_hashes = cfg
        .raw
        .tsa
        .hash_algorithms
        .iter()
        .map(|name| {
            name.parse::<HashAlgorithm>().map_err(|_| {
                CliError::Other(format!(
                    "config key tsa.hash_algorithms: unknown algorithm {name:?}"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let acc = cfg.raw.tsa.accuracy;
    let accuracy = Accuracy::new(acc.seconds, acc.millis, acc.micros)
        .map_err(|e| CliError::Other(format!("config key tsa.accuracy: {e}")))?;
    Ok(TsaSettings {
        node_id: cfg.raw.node.id,
        rules: RequestRules {
            accepted_hashes,
            accepted_policies: cfg.policies.clone(),
            default_policy: cfg.default_policy,
        },
        accuracy,
        include_tsa_name: cfg.raw.tsa.include_tsa_name,
        appliance_name: cfg.raw.node.name.clone(),
    })
}

/// The chain's Ed25519 key, checked, with a signing pool of its own.
fn chain_signer(cfg: &Validated, hsm: &Hsm) -> Result<Arc<dyn Signer>, CliError> {
    let label = &cfg.raw.chain.key_label;
    let key = hsm.find_key(label).map_err(|e| {
        CliError::Other(format!(
            "chain.key_label {label:?}: {e}; create it with \
             `auditstamp keys generate --label {label} --algorithm ed25519 --purpose chain`"
        ))
    })?;
    if key.algorithm != KeyAlgorithm::Ed25519 {
        return Err(CliError::Other(format!(
            "chain.key_label {label:?} is an {} key; the chain signs with Ed25519 \
             (keys generate --algorithm ed25519 --purpose chain)",
            key.algorithm
        )));
    }
    if key.purpose != Some(KeyPurpose::Chain) {
        return Err(CliError::Other(format!(
            "chain.key_label {label:?} is not a chain key (purpose {})",
            key.purpose.map_or("not recorded", |p| p.as_str())
        )));
    }
    let pool = SigningPool::start(hsm, label, 1, cfg.raw.hsm.verify_after_sign)?;
    Ok(Arc::new(pool))
}

/// The witnesses of `[[chain.witness]]`, with an HTTP client trusting their TLS CAs.
pub(crate) fn witnesses(cfg: &Validated) -> Result<crate::service::cosign::Witnesses, CliError> {
    use crate::service::cosign::{WitnessTarget, Witnesses};
    let c = &cfg.raw.chain;
    if c.witness.is_empty() {
        return Ok(Witnesses::default());
    }
    let mut ca_files = Vec::new();
    let mut targets = Vec::new();
    for (i, w) in c.witness.iter().enumerate() {
        let cosigner = crate::chain::cosignature::Cosigner::parse(&w.key)
            .map_err(|e| CliError::Other(format!("config key chain.witness[{i}].key: {e}")))?;
        if let Some(ca) = &w.ca_file {
            ca_files.push(cfg.state_dir().join(ca));
        } else if w.url.starts_with("https://") {
            return Err(CliError::Other(format!(
                "config key chain.witness[{i}].ca_file: needed for {} (the CA of the witness's TLS certificate)",
                crate::client::redact_userinfo(&w.url)
            )));
        }
        targets.push(WitnessTarget {
            url: w.url.clone(),
            cosigner,
        });
    }
    // Only the witnesses' own CAs are trusted (none: only plain-HTTP witnesses).
    let tls = crate::client::ClientTls {
        trust: crate::client::Trust::Only(ca_files),
        identity: None,
    };
    let client = crate::service::cosign::WitnessClient::new(
        &tls,
        Duration::from_millis(c.witness_timeout_ms),
    )
    .map_err(|e| CliError::caused("chain.witness: the witnesses' HTTPS client", e))?;
    tracing::info!(witnesses = targets.len(), "checkpoints go to witnesses");
    Ok(Witnesses::new(client, targets))
}

/// The bucket of `[archive]`, its credentials read from the environment variables it
/// names; `None` without an archive.
pub(crate) fn archive_bucket(
    cfg: &Validated,
) -> Result<Option<crate::archive::BucketSettings>, CliError> {
    let Some(a) = &cfg.raw.archive else {
        return Ok(None);
    };
    let read = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let id = read(&a.access_key_id_env);
    let secret = read(&a.secret_access_key_env).map(secrecy::SecretString::from);
    if id.is_some() != secret.is_some() {
        return Err(CliError::Other(format!(
            "archive: set both {} and {} (the access key id and the secret access key), or              neither for anonymous requests",
            a.access_key_id_env, a.secret_access_key_env
        )));
    }
    Ok(Some(crate::archive::BucketSettings {
        url: a.url.clone(),
        endpoint: a.endpoint.clone(),
        region: a.region.clone(),
        ca_file: a.ca_file.as_ref().map(|f| cfg.state_dir().join(f)),
        access_key_id: id,
        secret_access_key: secret,
        timeout: Duration::from_millis(a.timeout_ms),
        retries: 3,
    }))
}

fn chain_settings(cfg: &Validated) -> ChainSettings {
    let c = &cfg.raw.chain;
    ChainSettings {
        origin: c.origin_or(&cfg.raw.node.name).to_owned(),
        seal_interval: Duration::from_millis(c.seal_interval_ms),
        max_block_events: c.max_block_events,
    }
}

async fn serve(cfg: Validated) -> Result<(), CliError> {
    let settings = tsa_settings(&cfg)?;
    // The HSM handle keeps the login session open for the life of the server.
    let hsm = open_hsm_with(&cfg)?;
    // The one clock of the server: genTimes, receive times, certificate checks.
    let system: Arc<dyn Clock> = Arc::new(SystemClock);
    let identity = signing_identity(&cfg, &hsm, system.now())?;
    let chain_signer = chain_signer(&cfg, &hsm)?;
    let store_dir = cfg.state_dir().join("store");
    let store = Store::open(&store_dir)?;
    store.check_tsa_state().map_err(|e| {
        CliError::Other(format!(
            "the store at {}: {e}. The server does not start on a damaged serial counter or \
             genTime record (serial numbers must never repeat, genTime never go back): \
             restore the store directory from a backup",
            store_dir.display()
        ))
    })?;
    let log = EventLog::open_with_clock(&store, system.clone())
        .map_err(|e| CliError::Other(format!("cannot open the event log: {e}")))?;
    let floor = crate::service::gen_time::gen_time_floor(&store, &log)
        .map_err(|e| CliError::Other(format!("cannot find the last genTime issued: {e}")))?;
    // A counter is stored before the first token: without one, no token may have been issued
    // (the scan from the start runs only then, and stops at the first token's event).
    if store.serial_next()?.is_none()
        && (floor.block_ms.is_some()
            || floor.events_ms.is_some()
            || crate::service::gen_time::any_token_issued(&log)
                .map_err(|e| CliError::Other(format!("cannot read the event log: {e}")))?)
    {
        return Err(CliError::Other(format!(
            "the store at {}: the serial counter (tsa.serial.next) is missing although the \
             event log holds tokens already issued{}. The server does not start (serial \
             numbers must never repeat, and a missing counter would start again at 1): \
             restore the store directory from a backup",
            store_dir.display(),
            if floor.block_ms.is_some() {
                " and sealed blocks"
            } else {
                ""
            }
        )));
    }
    tracing::info!(
        floor_ms = floor.ms,
        mark_ms = floor.mark.map(|m| m.gen_time_ms),
        block_ms = floor.block_ms,
        events_ms = floor.events_ms,
        scanned_from = floor.scanned_from,
        scanned = floor.scanned,
        "genTime floor: no token gets an earlier genTime"
    );
    let clock = ClockGuard::new(
        system,
        cfg.raw.clock.require_sync,
        cfg.raw.tsa.accuracy.as_duration(),
        floor.ms,
    );
    if let Err(e) = clock.check() {
        tracing::warn!(error = %e, "the clock is not trustworthy now; tokens are refused (timeNotAvailable, /readyz 503) until it is");
    }
    // The log's one writer: the TSA's tsa.issued records and the chain's events.
    let writer = Arc::new(EventWriter::new(log));
    let tsa = Arc::new(TsaService::new(
        settings,
        identity,
        clock,
        store,
        writer.clone(),
    ));
    let bucket = archive_bucket(&cfg)?
        .map(|b| crate::archive::Bucket::open(&b))
        .transpose()
        .map_err(|e| CliError::Other(e.to_string()))?;
    let mut chain = ChainService::new(writer, chain_signer, chain_settings(&cfg), tsa.clone())
        .map_err(|e| CliError::Other(format!("event chain: {e}")))?
        .with_witnesses(witnesses(&cfg)?);
    if cfg.raw.chain.search_index {
        let index = SearchIndex::open(&store_dir, chain.log())
            .map_err(|e| CliError::Other(format!("search index: {e}")))?;
        let behind = chain.log().size().saturating_sub(index.indexed());
        if behind > 0 {
            tracing::info!(
                events = behind,
                "the search index catches up in the background"
            );
        }
        chain = chain
            .with_search_index(index)
            .map_err(|e| CliError::Other(format!("search index: {e}")))?;
    }
    if bucket.is_some()
        && cfg
            .raw
            .archive
            .as_ref()
            .is_some_and(|a| a.witness_after_archive)
    {
        chain = chain.witness_after_archive();
    }
    let chain = Arc::new(chain);
    tracing::info!(
        events = chain.log().size(),
        sealed = chain.sealed_size(),
        origin = %chain.settings().origin,
        verifier_key = %chain.verifier_key(),
        "event chain open"
    );
    let h = &cfg.raw.http;
    let tls = match &cfg.tls {
        None => {
            tracing::warn!("serving plain HTTP (http.plain_http = true): for development only");
            None
        }
        Some(t) => Some(
            http::tls::server_config(&http::tls::TlsFiles {
                cert: &t.cert_file,
                key: &t.key_file,
                client_ca: t.client_ca_file.as_deref(),
            })
            .map_err(|e| CliError::Other(format!("http.tls: {e}")))?,
        ),
    };
    let rate_limit =
        http::limits::RateLimiter::new(h.rate_limit.per_second, h.rate_limit.burst).map(Arc::new);
    let mut state = AppState::new(tsa.clone(), chain.clone());
    state.auditors_of_all = cfg
        .tls
        .as_ref()
        .map(|t| Arc::from(t.auditors_of_all.clone()))
        .unwrap_or_else(|| Arc::from(Vec::new()));
    let archiver = match (bucket, &cfg.raw.archive) {
        (Some(bucket), Some(a)) => {
            let status = Arc::new(crate::archive::writer::ArchiveStatus::new(a.max_lag_events));
            state.archive = Some(status.clone());
            state.archive_bucket = Some(bucket.clone());
            tracing::info!(bucket = %bucket.describe(), "sealed blocks are archived");
            Some(crate::archive::writer::Archiver::new(
                bucket,
                chain.clone(),
                crate::archive::writer::ArchiverSettings {
                    concurrency: a.concurrency,
                    retain_events: a.retain_events,
                },
                status,
            ))
        }
        _ => None,
    };
    let connections = state.connections.clone();
    let router = http::router(
        state,
        HttpSettings {
            max_body_bytes: h.max_body_bytes,
            max_event_bytes: http::chain::MAX_EVENT_BODY_BYTES,
            max_batch_bytes: cfg.raw.chain.max_batch_bytes,
            request_timeout: Duration::from_millis(h.request_timeout_ms),
            require_client_cert: cfg
                .tls
                .as_ref()
                .map(|t| t.require_client_cert.clone())
                .unwrap_or_default(),
            rate_limit: rate_limit.clone(),
            max_concurrent_requests: h.max_concurrent_requests,
        },
    );
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener_options = listener_options(
        &h.listener_limits(),
        tls,
        Duration::from_millis(h.request_timeout_ms),
        connections,
    );
    // Before anything is served: a signal from now on is handled, not fatal.
    let mut signals = super::signals::Signals::install(true)
        .map_err(|e| CliError::Other(format!("cannot listen for signals: {e}")))?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| CliError::Other(format!("cannot listen on {}: {source}", cfg.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Other(format!("cannot read the listen address: {e}")))?;
    let pid_file = PidFile::create(&cfg.state_dir().join(PID_FILE))?;
    tracing::info!(
        %addr,
        node = cfg.raw.node.id,
        name = %cfg.raw.node.name,
        "auditstamp listening; TSA at {scheme}://{addr}/tsa"
    );
    let warn_days = i64::from(cfg.raw.tsa.expiry_warning_days);
    warn_if_expiring(&tsa, warn_days);

    let persister = {
        let tsa = tsa.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            for n in 1u64.. {
                tick.tick().await;
                let tsa = tsa.clone();
                let rate_limit = rate_limit.clone();
                let result = tokio::task::spawn_blocking(move || {
                    if n % 3600 == 0 {
                        warn_if_expiring(&tsa, warn_days);
                    }
                    if n % 60 == 0 {
                        if let Some(r) = rate_limit {
                            r.prune();
                        }
                    }
                    tsa.persist_clock()
                })
                .await;
                if let Ok(Err(e)) = result {
                    tracing::error!(error = %e, "cannot record the last genTime");
                }
            }
        })
    };
    let reloader = tokio::spawn(reload_on_sighup(
        cfg.clone(),
        hsm.clone(),
        tsa.clone(),
        #[cfg(unix)]
        signals.take_hangup(),
    ));
    let (stop_sealer, sealer_stopped) = tokio::sync::oneshot::channel::<()>();
    let sealer = tokio::spawn(chain.clone().run_sealer(async move {
        let _ = sealer_stopped.await;
    }));
    let (stop_archiver, archiver_stopped) = tokio::sync::oneshot::channel::<()>();
    let archiver = archiver.map(|a| {
        tokio::spawn(a.run(async move {
            let _ = archiver_stopped.await;
        }))
    });

    let served =
        http::server::serve(listener, router, listener_options, signals.terminated()).await;
    // Requests in flight have finished: seal what they appended, then stop.
    let _ = stop_sealer.send(());
    if let Err(e) = sealer.await {
        tracing::error!(error = %e, "the sealer stopped abnormally");
    }
    // What is not archived now is archived at the next start.
    let _ = stop_archiver.send(());
    if let Some(a) = archiver {
        let _ = a.await;
    }
    if let Err(e) = chain.log().sync_derived() {
        tracing::warn!(error = %e, "cannot sync the event log's hashes; they are recomputed at the next start");
    }
    served.map_err(|e| CliError::Other(format!("server failed: {e}")))?;
    persister.abort();
    reloader.abort();
    tsa.persist_clock()?;
    drop(pid_file);
    tracing::info!("auditstamp stopped");
    drop(hsm);
    Ok(())
}

/// Name of the file, in the state directory, holding the server's process id (so that
/// `keys activate` can ask it to reload).
pub(crate) const PID_FILE: &str = "auditstamp.pid";

/// The pid file; removed when dropped.
struct PidFile(std::path::PathBuf);

impl PidFile {
    fn create(path: &Path) -> Result<PidFile, CliError> {
        super::write_file(path, format!("{}\n", std::process::id()).as_bytes())?;
        Ok(PidFile(path.to_owned()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Logs a warning when the active certificate expires within `warn_days` days.
fn warn_if_expiring(tsa: &TsaService, warn_days: i64) {
    let days = tsa.identity().days_remaining(tsa.now_ms());
    if days <= warn_days {
        tracing::warn!(
            days_remaining = days,
            "the TSA certificate expires soon; rotate the key (auditstamp keys rotate)"
        );
    }
}

/// On each SIGHUP: find the active key again (after `keys activate`) and switch to it.
/// Requests in flight finish with the key they started with; a key that does not pass the
/// startup checks is not taken, and the current one stays.
async fn reload_on_sighup(
    cfg: Validated,
    hsm: Hsm,
    tsa: Arc<TsaService>,
    #[cfg(unix)] hup: Option<tokio::signal::unix::Signal>,
) {
    #[cfg(unix)]
    {
        let Some(mut hup) = hup else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the signing key");
            let (cfg, hsm, now) = (cfg.clone(), hsm.clone(), tsa.now());
            match tokio::task::spawn_blocking(move || signing_identity(&cfg, &hsm, now)).await {
                Ok(Ok(identity)) => {
                    tsa.replace_identity(identity);
                    tracing::info!("now signing with the active key");
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "reload refused; still signing with the previous key")
                }
                Err(e) => {
                    tracing::error!(error = %e, "reload failed; still signing with the previous key")
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (cfg, hsm, tsa);
    }
}
