//! `auditstamp witness ...`: the data center's witness.
//!
//! - `witness serve --config FILE`: checks everything at startup (the registered logs'
//!   keys, the token, the witness key: Ed25519 with purpose witness, the store), then
//!   serves c2sp.org/tlog-witness `add-checkpoint` and the status, metrics and health
//!   endpoints until SIGTERM or ctrl-c (requests in flight finish, the store is flushed).
//! - `witness verifier-key --config FILE`: prints the witness's cosigner verifier key, read
//!   from the HSM, for the appliances that submit to it.
//! - `witness evidence --config FILE [--origin ORIGIN]`: prints the evidence records the
//!   store keeps (JSON); with sled, while the witness is stopped (a running witness serves
//!   them at `GET /status/{origin}`).
//! - `witness migrate --config FILE`: creates or moves on the PostgreSQL schema of
//!   `[witness.store] kind = "postgres"`; `witness import-sled --config FILE [--from DIR]`
//!   moves a sled store into it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;

use super::{open_hsm_from, CliError, ConfigArg};
use crate::chain::cosignature::Cosigner;
use crate::clock::SystemClock;
use crate::signer::pkcs11::KeyInfo;
use crate::signer::SigningPool;
use crate::witness::config::{self as witness_config, ValidatedWitness};
use crate::witness::routes::{self as http_witness, WitnessHttpSettings, WitnessState};
use crate::witness::service::{WitnessService, WitnessSettings};
use crate::witness::startup::{
    open_store, registered_logs, stopped_sled, witness_key, OpenedStore, STORE_DIR,
};
use crate::witness::store::StoredEvidence;

/// `auditstamp witness ...`
#[derive(Debug, Subcommand)]
pub enum WitnessCommand {
    /// Serve the C2SP tlog-witness API (POST /add-checkpoint) and /status, /metrics,
    /// /healthz, /readyz.
    Serve(ConfigArg),
    /// Print the witness's cosigner verifier key (name+id+base64(0x04 || key)), read from
    /// the HSM: what appliances are configured with.
    VerifierKey(ConfigArg),
    /// Print the evidence the witness keeps (JSON): pairs of checkpoints signed by an
    /// appliance that cannot both be true, with both notes as signed. Reads the store: a
    /// sled store only while the witness is stopped (a running one serves them at
    /// GET /status/{origin}), a PostgreSQL one at any time.
    Evidence(EvidenceArgs),
    /// Create the witness's PostgreSQL schema, or move it on to this version's
    /// (`[witness.store] kind = "postgres"`); safe to run again, and from several hosts at
    /// once (they wait for each other). Servers refuse to start on an older schema.
    Migrate(ConfigArg),
    /// Move a sled witness store (every log's state, history and evidence) into the
    /// PostgreSQL store of the configuration, in one transaction; run `witness migrate`
    /// first, with the sled witness stopped. Safe to run again; refused, with nothing
    /// moved, where the database already holds another state of a log.
    ImportSled(ImportArgs),
}

/// `witness import-sled` arguments.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The sled store's directory; by default `<witness.state_dir>/witness-store`.
    #[arg(long)]
    from: Option<std::path::PathBuf>,
}

/// `witness evidence` arguments.
#[derive(Debug, clap::Args)]
pub struct EvidenceArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Only this appliance's (its checkpoint origin); by default every one in the store,
    /// registered or not.
    #[arg(long)]
    origin: Option<String>,
}

/// Runs a `witness` subcommand.
pub fn run(cmd: WitnessCommand) -> Result<(), CliError> {
    match cmd {
        WitnessCommand::Serve(a) => serve(&a.config),
        WitnessCommand::VerifierKey(a) => {
            super::init_logging("warn", "text");
            let cfg = witness_config::load_witness(&a.config)?;
            let hsm = open_hsm_from(&cfg.raw.hsm, &cfg.pin)?;
            let key = witness_key(&cfg, &hsm).map_err(|e| CliError::Other(e.to_string()))?;
            println!("{}", cosigner(&cfg, &key)?.verifier_key());
            Ok(())
        }
        WitnessCommand::ImportSled(a) => {
            super::init_logging("warn", "text");
            import_sled(&a.config.config, a.from.as_deref())
        }
        WitnessCommand::Migrate(a) => {
            super::init_logging("warn", "text");
            migrate_store(&a.config)
        }
        WitnessCommand::Evidence(a) => {
            super::init_logging("warn", "text");
            let cfg = witness_config::load_witness(&a.config.config)?;
            print_evidence(&cfg, a.origin.as_deref())
        }
    }
}

/// Prints the store's evidence records (of `origin`, or all) as a JSON array.
fn print_evidence(cfg: &ValidatedWitness, origin: Option<&str>) -> Result<(), CliError> {
    let all = match cfg.store.postgres_settings()? {
        None => sled_evidence(cfg)?,
        Some(settings) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))?
            .block_on(crate::witness::store::all_postgres_evidence(&settings))
            .map_err(|e| CliError::Other(format!("cannot read the evidence: {e}")))?,
    };
    let mut out = Vec::new();
    for (o, e) in all {
        if origin.is_some_and(|wanted| wanted != o) {
            continue;
        }
        match e {
            Ok(e) => {
                let mut v = http_witness::evidence_json(&e);
                v["origin"] = o.into();
                out.push(v);
            }
            Err(e) => eprintln!("warning: a damaged evidence record of {o:?}: {e}"),
        }
    }
    let text = serde_json::to_string_pretty(&out)
        .map_err(|e| CliError::Other(format!("cannot format the evidence: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Every evidence record of the (stopped) witness's sled store.
fn sled_evidence(cfg: &ValidatedWitness) -> Result<Vec<StoredEvidence>, CliError> {
    let busy = "A running witness serves its evidence at GET /status/{origin}";
    stopped_sled(&cfg.state_dir().join(STORE_DIR), busy)
        .map_err(CliError::Other)?
        .all_evidence()
        .map_err(|e| CliError::Other(format!("cannot read the evidence: {e}")))
}

fn cosigner(cfg: &ValidatedWitness, key: &KeyInfo) -> Result<Cosigner, CliError> {
    let public_key = crate::signer::ed25519::ed25519_key_of(&key.public_key_der)
        .ok_or_else(|| CliError::Other("the witness key is not an Ed25519 key".into()))?;
    Ok(Cosigner {
        name: cfg.raw.witness.name.clone(),
        public_key,
    })
}

/// `witness import-sled`: moves a sled store into the configured PostgreSQL store.
fn import_sled(config_path: &Path, from: Option<&Path>) -> Result<(), CliError> {
    let cfg = witness_config::load_witness(config_path)?;
    let Some(settings) = cfg.store.postgres_settings()? else {
        return Err(CliError::Other(
            "witness.store is sled: set kind = \"postgres\" (and its url) to move a sled store \
             into PostgreSQL"
                .into(),
        ));
    };
    let dir = from.map_or_else(|| cfg.state_dir().join(STORE_DIR), Path::to_owned);
    let logs = stopped_sled(&dir, "Stop it first")
        .map_err(CliError::Other)?
        .export()
        .map_err(|e| CliError::Other(format!("cannot read the sled store: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))?;
    let done = runtime
        .block_on(crate::witness::store::import(&settings, &logs))
        .map_err(|e| CliError::Other(format!("witness import-sled: {e}")))?;
    println!(
        "moved {} logs from {}: {} latest states, {} earlier checkpoints, {} evidence records \
         written (what the database held already was left as it was)",
        done.logs,
        dir.display(),
        done.states,
        done.history,
        done.evidence
    );
    Ok(())
}

/// `witness migrate`: creates or moves on the PostgreSQL schema.
fn migrate_store(config_path: &Path) -> Result<(), CliError> {
    let cfg = witness_config::load_witness(config_path)?;
    let Some(settings) = cfg.store.postgres_settings()? else {
        return Err(CliError::Other(
            "witness.store is sled, which needs no migration (kind = \"postgres\" does)".into(),
        ));
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))?;
    let (before, after) = runtime
        .block_on(crate::witness::store::migrate(&settings))
        .map_err(|e| CliError::Other(format!("witness migrate: {e}")))?;
    if before == after {
        println!("the witness schema is at version {after}: nothing to do");
    } else {
        println!("the witness schema moved from version {before} to {after}");
    }
    Ok(())
}

fn serve(config_path: &Path) -> Result<(), CliError> {
    let cfg = witness_config::load_witness(config_path)?;
    super::init_logging(&cfg.raw.witness.log_level, &cfg.raw.witness.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("auditstamp-witness")
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(serve_with(cfg))
}

async fn serve_with(cfg: ValidatedWitness) -> Result<(), CliError> {
    let logs = registered_logs(&cfg)?;
    // The HSM handle keeps the login session open for the life of the server.
    let hsm = open_hsm_from(&cfg.raw.hsm, &cfg.pin)?;
    let key = witness_key(&cfg, &hsm).map_err(|e| CliError::Other(e.to_string()))?;
    let pool = SigningPool::start(
        &hsm,
        &key.label,
        cfg.raw.hsm.sessions,
        cfg.raw.hsm.verify_after_sign,
    )?;
    let origins: Vec<String> = logs.iter().map(|l| l.origin.clone()).collect();
    let OpenedStore {
        store: wstore,
        sled: store,
    } = open_store(&cfg, &origins)
        .await
        .map_err(|e| CliError::Other(e.to_string()))?;
    if wstore.unregistered() > 0 {
        tracing::warn!(
            logs = wstore.unregistered(),
            "the store holds state of logs that are not registered any more; kept, not served"
        );
    }
    let settings = WitnessSettings {
        name: cfg.raw.witness.name.clone(),
        stale_after_secs: cfg.raw.witness.stale_after_seconds,
    };
    let service = Arc::new(
        WitnessService::new(
            settings,
            logs,
            wstore,
            Arc::new(pool),
            Arc::new(SystemClock),
        )
        .map_err(|e| CliError::Other(format!("witness: {e}")))?,
    );
    let carried = service
        .carry_over_legacy_alerts()
        .await
        .map_err(|e| CliError::Other(format!("witness: {e}")))?;
    if carried.alerts > 0 {
        tracing::info!(
            alerts = carried.alerts,
            evidence = carried.evidence,
            "alerts of an older version: the forks they prove are evidence records; the rest \
             (posts anyone could make, claims without their proof) stay in the store, not shown"
        );
    }
    let followed = service
        .status()
        .iter()
        .filter(|s| s.state.is_some())
        .count();
    tracing::info!(
        name = %service.cosigner().name,
        verifier_key = %service.verifier_key(),
        appliances = service.logs().len(),
        with_state = followed,
        "witness ready"
    );
    let state = WitnessState::new(service.clone());
    let connections = state.connections.clone();
    let router = http_witness::router(
        state,
        WitnessHttpSettings {
            max_body_bytes: cfg.raw.witness.max_body_bytes,
            request_timeout: Duration::from_millis(cfg.raw.witness.request_timeout_ms),
        },
    );
    // Before anything is served: a signal from now on is handled, not fatal.
    let signals = super::signals::Signals::install(false)
        .map_err(|e| CliError::Other(format!("cannot listen for signals: {e}")))?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| CliError::Other(format!("cannot listen on {}: {source}", cfg.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Other(format!("cannot read the listen address: {e}")))?;
    let tls = match &cfg.tls {
        None => {
            tracing::warn!("serving plain HTTP (witness.plain_http = true): for development only");
            None
        }
        Some(t) => Some(
            crate::http::tls::server_config(&crate::http::tls::TlsFiles {
                cert: &t.cert_file,
                key: &t.key_file,
                client_ca: None,
            })
            .map_err(|e| CliError::Other(format!("witness.tls: {e}")))?,
        ),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, "witness listening on {scheme}://{addr}/add-checkpoint");
    let options = super::serve::listener_options(
        &cfg.raw.witness.listener_limits(),
        tls,
        Duration::from_millis(cfg.raw.witness.request_timeout_ms),
        connections,
    );
    let served = crate::http::server::serve(listener, router, options, signals.terminated()).await;
    // Every acknowledged write was flushed (or committed) before its answer; this is for
    // the rest of sled's.
    if let Some(store) = &store {
        store.flush()?;
    }
    served.map_err(|e| CliError::Other(format!("server failed: {e}")))?;
    tracing::info!("witness stopped");
    drop(service);
    drop(hsm);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_template_registers_its_example_log() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-config/witness.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let cfg =
            witness_config::parse_witness(&text, &crate::config::Overrides::default()).unwrap();
        let logs = registered_logs(&cfg).unwrap();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].key.name, logs[0].origin);
        // A key whose id does not match is refused, naming the entry.
        let bad = text.replace("+0a4998e1+", "+0a4998e2+");
        let cfg =
            witness_config::parse_witness(&bad, &crate::config::Overrides::default()).unwrap();
        let e = registered_logs(&cfg).unwrap_err().to_string();
        assert!(e.contains("log.key") && e.contains("#1"), "{e}");
    }
}
