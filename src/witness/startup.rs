//! What `witness serve` checks and opens before it serves: the witness key on the token,
//! the registered logs' verifier keys, and the store `[witness.store]` names. Every failure
//! names its cause; the command line only prints it.

use std::path::Path;
use std::sync::Arc;

use super::config::ValidatedWitness;
use super::service::{RegisteredLog, WitnessError};
use super::store::{PostgresWitnessStore, SledWitnessStore, WitnessStore, WitnessStoreError};
use crate::chain::note::VerifierKey;
use crate::chain::store::Store;
use crate::config::ConfigError;
use crate::signer::pkcs11::{Hsm, KeyInfo};
use crate::signer::{KeyAlgorithm, KeyPurpose};

/// The sled store's directory inside `witness.state_dir`.
pub const STORE_DIR: &str = "witness-store";

/// The witness key named by `witness.key_label`: on the token, Ed25519, purpose witness.
pub fn witness_key(cfg: &ValidatedWitness, hsm: &Hsm) -> Result<KeyInfo, WitnessError> {
    let label = &cfg.raw.witness.key_label;
    let how = format!(
        "auditstamp keys generate --config FILE --label {label} --algorithm ed25519 --purpose witness"
    );
    let key = hsm.find_key(label).map_err(|e| {
        WitnessError::Identity(format!(
            "witness.key_label {label:?}: {e}; create it with `{how}`"
        ))
    })?;
    if key.algorithm != KeyAlgorithm::Ed25519 {
        return Err(WitnessError::Identity(format!(
            "witness.key_label {label:?} is an {} key; a witness cosigns with Ed25519 (`{how}`)",
            key.algorithm
        )));
    }
    if key.purpose != Some(KeyPurpose::Witness) {
        return Err(WitnessError::Identity(format!(
            "witness.key_label {label:?} is not a witness key (purpose {}); a cosigner needs \
             a key of its own (`{how}`)",
            key.purpose.map_or("not recorded", |p| p.as_str())
        )));
    }
    Ok(key)
}

/// The `[[log]]` entries with their verifier keys parsed; an error names the entry.
pub fn registered_logs(cfg: &ValidatedWitness) -> Result<Vec<RegisteredLog>, ConfigError> {
    let mut logs = Vec::with_capacity(cfg.raw.log.len());
    for (i, l) in cfg.raw.log.iter().enumerate() {
        let key = VerifierKey::parse(&l.key).map_err(|e| ConfigError::Invalid {
            key: "log.key",
            message: format!("[[log]] #{} ({}): {e}", i + 1, l.origin),
        })?;
        if key.name != l.origin {
            tracing::warn!(
                origin = %l.origin,
                key_name = %key.name,
                "the log's key name is not its origin (allowed, but unusual)"
            );
        }
        logs.push(RegisteredLog {
            origin: l.origin.clone(),
            key,
            url: l.url.clone(),
        });
    }
    Ok(logs)
}

/// A store opened for serving; with sled, also its database (flushed at the end).
pub struct OpenedStore {
    /// The store the service uses.
    pub store: Arc<dyn WitnessStore>,
    /// sled's database, when the store is sled.
    pub sled: Option<Store>,
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configuration (the database password's source).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store itself.
    #[error("cannot open the witness store: {0}")]
    Store(#[from] WitnessStoreError),
    /// sled's database.
    #[error("cannot open the witness store: {0}")]
    Database(#[from] crate::chain::store::StoreError),
}

/// The store `[witness.store]` names, opened for `origins`.
pub async fn open_store(
    cfg: &ValidatedWitness,
    origins: &[String],
) -> Result<OpenedStore, OpenError> {
    match cfg.store.postgres_settings()? {
        None => {
            let sled = Store::open(&cfg.state_dir().join(STORE_DIR))?;
            let store = Arc::new(SledWitnessStore::open(&sled, origins)?);
            Ok(OpenedStore {
                store,
                sled: Some(sled),
            })
        }
        Some(settings) => {
            let store = Arc::new(PostgresWitnessStore::open(&settings, origins).await?);
            tracing::info!(pool = settings.pool_size, "the witness store is PostgreSQL");
            Ok(OpenedStore { store, sled: None })
        }
    }
}

/// The sled store at `dir`, opened to be read while no witness serves from it (`busy`
/// says what to do instead when one does).
pub fn stopped_sled(dir: &Path, busy: &str) -> Result<SledWitnessStore, String> {
    if !dir.is_dir() {
        return Err(format!("no sled witness store at {}", dir.display()));
    }
    let store =
        Store::open(dir).map_err(|e| format!("{e}; is a witness serving from it? {busy}"))?;
    SledWitnessStore::open(&store, &[]).map_err(|e| format!("cannot open the witness store: {e}"))
}
