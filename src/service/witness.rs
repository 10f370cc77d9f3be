//! The data center's witness: cosigns the checkpoints of registered appliances
//! (c2sp.org/tlog-witness `add-checkpoint`) when they extend, consistently, the last one it
//! cosigned for them; refuses and records rollbacks, forks, bad proofs and bad signatures.
//!
//! A request is handled in this order, with the spec's status for each refusal
//! ([`Refusal::status`]):
//! 1. parse the body (400) and find the log by the checkpoint's origin (404);
//! 2. verify the log's signature in software, ignoring signatures by other keys (403,
//!    recorded as a `bad-signature` alert);
//! 3. against the latest cosigned checkpoint, from memory ([`evaluate`]): the old size must
//!    not exceed the checkpoint's (400) and must equal the size last cosigned (409 with that
//!    size); the same size must have the same root (409, a `fork`); the consistency proof
//!    must verify (422, `bad-proof`). A signed checkpoint smaller than the one last
//!    cosigned is recorded as a `rollback` (the log shows a shorter history than it did); a
//!    merely stale old size (a client that restarted and asks with old size 0, as the spec
//!    allows, or the loser of two concurrent submissions) gets its 409 without an alert;
//! 4. sign the cosignature (`cosignature/v1`, the current Unix time) with the witness key in
//!    the HSM, then store the new checkpoint with a compare-and-swap against the state step 3
//!    checked ([`WitnessStore::replace`]): it is durable before the answer. If another
//!    request changed the state meanwhile, step 3 runs again on the new state.
//!
//! Its one error type is [`WitnessError`]; the HTTP layer maps it to statuses.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::chain::cosignature::{self, Cosigner};
use crate::chain::note::{NoteSignature, SignedNote, VerifierKey};
use crate::chain::tlog::{self, EMPTY_TREE_HASH};
use crate::chain::witness_protocol::{format_cosignatures, AddCheckpoint, ProtocolError};
use crate::chain::witness_store::{
    Alert, AlertKind, Alerts, LogState, Outcome, WitnessStore, WitnessStoreError,
};
use crate::clock::Clock;
use crate::signer::{SignatureAlgorithm, Signer, SignerError};

/// How often a request is checked again when its state keeps changing under it.
const MAX_ATTEMPTS: usize = 8;
/// Signature lines by the log's key name kept with an alert's submitted checkpoint.
const MAX_ALERT_SIGNATURES: usize = 2;
/// Longest signature kept with an alert (bytes after the key id).
const MAX_ALERT_SIGNATURE_BYTES: usize = 256;

/// A registered log: an appliance whose checkpoints this witness cosigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredLog {
    /// Its checkpoint origin.
    pub origin: String,
    /// The key its checkpoints are signed with.
    pub key: VerifierKey,
    /// Where it serves its chain (informational).
    pub url: Option<String>,
}

/// The witness's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessSettings {
    /// The cosigner name (key name of the cosignature lines).
    pub name: String,
    /// A log whose last cosignature is older than this many seconds (or that has none) is
    /// stale.
    pub stale_after_secs: u64,
}

/// Why a submission is not cosigned: the protocol's refusals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The body is not an add-checkpoint body (400).
    #[error(transparent)]
    Malformed(#[from] ProtocolError),
    /// No log with this origin is registered (404).
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    /// No signature by the log's key verifies (403).
    #[error("no valid signature by the log's key")]
    BadSignature,
    /// The old size is larger than the checkpoint's size (400).
    #[error("the old size {old} is larger than the checkpoint size {size}")]
    OldSizeAboveSize {
        /// The old size named.
        old: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// The old size is not the size last cosigned (409; the answer says that size).
    #[error("the old size {old} is not the size last cosigned, {recorded}")]
    OldSizeMismatch {
        /// The old size named.
        old: u64,
        /// The size last cosigned (0 if none).
        recorded: u64,
    },
    /// A checkpoint of the size last cosigned with another root (409).
    #[error("a checkpoint of size {recorded} with another root than the one cosigned")]
    Fork {
        /// The size last cosigned.
        recorded: u64,
    },
    /// The consistency proof does not verify (422).
    #[error("the consistency proof does not verify: {0}")]
    BadProof(String),
}

impl Refusal {
    /// Every [`Self::reason`], in a fixed order (for metrics).
    pub const REASONS: [&'static str; 7] = [
        "malformed",
        "unknown_origin",
        "bad_signature",
        "old_size_above_size",
        "old_size_mismatch",
        "fork",
        "bad_proof",
    ];

    /// A short name for counting refusals.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed",
            Refusal::UnknownOrigin(_) => "unknown_origin",
            Refusal::BadSignature => "bad_signature",
            Refusal::OldSizeAboveSize { .. } => "old_size_above_size",
            Refusal::OldSizeMismatch { .. } => "old_size_mismatch",
            Refusal::Fork { .. } => "fork",
            Refusal::BadProof(_) => "bad_proof",
        }
    }

    /// The HTTP status c2sp.org/tlog-witness gives this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Malformed(_) | Refusal::OldSizeAboveSize { .. } => 400,
            Refusal::BadSignature => 403,
            Refusal::UnknownOrigin(_) => 404,
            Refusal::OldSizeMismatch { .. } | Refusal::Fork { .. } => 409,
            Refusal::BadProof(_) => 422,
        }
    }

    /// For a 409: the size last cosigned, which the answer's body must carry.
    pub fn conflict_size(&self) -> Option<u64> {
        match self {
            Refusal::OldSizeMismatch { recorded, .. } | Refusal::Fork { recorded } => {
                Some(*recorded)
            }
            _ => None,
        }
    }
}

/// Why the witness did not cosign.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    /// The submission breaks a rule of the protocol.
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    /// The HSM did not sign.
    #[error("HSM: {0}")]
    Signer(#[from] SignerError),
    /// The store did not take the new state.
    #[error("{0}")]
    Store(#[from] WitnessStoreError),
    /// The witness key is unusable (found at startup).
    #[error("witness key: {0}")]
    Identity(String),
    /// The log's state kept changing under the request; the client may try again.
    #[error("the log's state changed {MAX_ATTEMPTS} times while the request was checked")]
    Contention,
}

/// What [`evaluate`] refuses, with the alert to record, if any.
pub type Verdict = Result<(), (Refusal, Option<AlertKind>)>;

/// The state checks of a submission whose signature verified, against the latest checkpoint
/// the witness cosigned for the log (`recorded`, none before the first): old size, fork,
/// consistency proof. Pure; no alert without a recorded state to compare with, except a
/// bad proof.
pub fn evaluate(recorded: Option<&LogState>, req: &AddCheckpoint) -> Verdict {
    let (old, size, root) = (req.old_size, req.checkpoint.size, req.checkpoint.root);
    let (rec_size, rec_root) = recorded.map_or((0, EMPTY_TREE_HASH), |s| (s.size, s.root));
    // Evidence: the log signed a tree smaller than one it had shown. A stale old size alone
    // is not (a restarted client, or one that lost a race, asks again from the 409's size).
    let rollback = recorded.is_some() && size < rec_size;
    let rollback = rollback.then_some(AlertKind::Rollback);
    if old > size {
        return Err((Refusal::OldSizeAboveSize { old, size }, rollback));
    }
    if old != rec_size {
        return Err((
            Refusal::OldSizeMismatch {
                old,
                recorded: rec_size,
            },
            rollback,
        ));
    }
    if size == old && recorded.is_some() && root != rec_root {
        return Err((Refusal::Fork { recorded: rec_size }, Some(AlertKind::Fork)));
    }
    tlog::verify_consistency(&req.proof, size, old, &root, &rec_root)
        .map_err(|e| (Refusal::BadProof(e.to_string()), Some(AlertKind::BadProof)))
}

/// One log's view for `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStatus {
    /// The registration.
    pub log: RegisteredLog,
    /// The latest cosigned checkpoint.
    pub state: Option<LogState>,
    /// Seconds since it was cosigned.
    pub age_secs: Option<u64>,
    /// No cosignature within the stale limit (or none at all).
    pub stale: bool,
    /// Its alerts.
    pub alerts: Alerts,
}

/// Figures over every registered log (for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Logs registered.
    pub registered: u64,
    /// Logs that are stale.
    pub stale: u64,
    /// Alerts ever recorded, by kind (the order of [`AlertKind::ALL`]).
    pub alerts: [u64; 4],
}

/// The witness.
pub struct WitnessService {
    settings: WitnessSettings,
    logs: Vec<RegisteredLog>,
    index: HashMap<String, usize>,
    store: WitnessStore,
    signer: Arc<dyn Signer>,
    cosigner: Cosigner,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for WitnessService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WitnessService")
            .field("name", &self.settings.name)
            .field("logs", &self.logs.len())
            .finish_non_exhaustive()
    }
}

/// The 32-byte Ed25519 key inside an Ed25519 SubjectPublicKeyInfo.
fn ed25519_key_of_spki(spki_der: &[u8]) -> Result<[u8; 32], WitnessError> {
    use der::Decode as _;
    let spki = spki::SubjectPublicKeyInfoOwned::from_der(spki_der)
        .map_err(|e| WitnessError::Identity(format!("cannot read the witness key: {e}")))?;
    if spki.algorithm.oid != crate::signer::oids::ED25519 {
        return Err(WitnessError::Identity(
            "the witness key is not an Ed25519 key".into(),
        ));
    }
    spki.subject_public_key
        .raw_bytes()
        .try_into()
        .map_err(|_| WitnessError::Identity("the witness key is not 32 bytes".into()))
}

/// The submitted note reduced to its text and the signature that verified with `key`: what
/// is kept as the log's checkpoint.
fn kept_note(note: &SignedNote, key: &VerifierKey) -> String {
    SignedNote {
        text: note.text.clone(),
        signatures: note
            .signatures
            .iter()
            .find(|s| s.name == key.name && s.id == key.id)
            .cloned()
            .into_iter()
            .collect(),
    }
    .format()
}

/// The submitted note for an alert: its text and at most two (short) signature lines in the
/// log's key name; without any, the text alone.
fn alert_note(note: &SignedNote, key: &VerifierKey) -> String {
    let signatures: Vec<NoteSignature> = note
        .signatures
        .iter()
        .filter(|s| s.name == key.name && s.signature.len() <= MAX_ALERT_SIGNATURE_BYTES)
        .take(MAX_ALERT_SIGNATURES)
        .cloned()
        .collect();
    if signatures.is_empty() {
        return note.text.clone();
    }
    SignedNote {
        text: note.text.clone(),
        signatures,
    }
    .format()
}

impl WitnessService {
    /// A witness for `logs`, keeping its state in `store` (opened for exactly these
    /// origins), cosigning with `signer` (Ed25519, in the HSM) under `settings.name`.
    pub fn new(
        settings: WitnessSettings,
        logs: Vec<RegisteredLog>,
        store: WitnessStore,
        signer: Arc<dyn Signer>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, WitnessError> {
        if signer.algorithm() != SignatureAlgorithm::Ed25519 {
            return Err(WitnessError::Identity(
                "the witness key must be an Ed25519 key \
                 (auditstamp keys generate --algorithm ed25519 --purpose witness)"
                    .into(),
            ));
        }
        if !crate::chain::note::is_key_name_valid(&settings.name) {
            return Err(WitnessError::Identity(format!(
                "{:?} is not a valid cosigner name",
                settings.name
            )));
        }
        let public_key = ed25519_key_of_spki(signer.public_key_der())?;
        let index: HashMap<String, usize> = logs
            .iter()
            .enumerate()
            .map(|(i, l)| (l.origin.clone(), i))
            .collect();
        if index.len() != logs.len() || store.origins().len() != logs.len() {
            return Err(WitnessError::Identity(
                "the store must be opened for exactly the registered logs, each once".into(),
            ));
        }
        for l in &logs {
            store.latest(&l.origin)?;
        }
        Ok(WitnessService {
            cosigner: Cosigner {
                name: settings.name.clone(),
                public_key,
            },
            settings,
            logs,
            index,
            store,
            signer,
            clock,
        })
    }

    /// The witness's name and public key.
    pub fn cosigner(&self) -> &Cosigner {
        &self.cosigner
    }

    /// The witness's cosigner verifier key (`name+id+base64(0x04 || key)`), for appliances.
    pub fn verifier_key(&self) -> String {
        self.cosigner.verifier_key()
    }

    /// The settings.
    pub fn settings(&self) -> &WitnessSettings {
        &self.settings
    }

    /// The store.
    pub fn store(&self) -> &WitnessStore {
        &self.store
    }

    /// The registered logs, in configuration order.
    pub fn logs(&self) -> &[RegisteredLog] {
        &self.logs
    }

    fn now(&self) -> u64 {
        self.clock
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// Handles an add-checkpoint body: the cosignature lines when cosigned (and durable),
    /// else why not.
    pub async fn add_checkpoint(&self, body: &[u8]) -> Result<String, WitnessError> {
        let req = AddCheckpoint::parse(body).map_err(Refusal::Malformed)?;
        let origin = req.checkpoint.origin.as_str();
        let log = self
            .index
            .get(origin)
            .and_then(|&i| self.logs.get(i))
            .ok_or_else(|| Refusal::UnknownOrigin(origin.to_owned()))?;
        let mut recorded = self.store.latest(origin)?;
        if req.note.verify(&log.key).is_err() {
            self.alert(log, AlertKind::BadSignature, &req, recorded.as_ref())
                .await;
            return Err(Refusal::BadSignature.into());
        }
        let kept = kept_note(&req.note, &log.key);
        for _ in 0..MAX_ATTEMPTS {
            if let Err((refusal, alert)) = evaluate(recorded.as_ref(), &req) {
                if let Some(kind) = alert {
                    self.alert(log, kind, &req, recorded.as_ref()).await;
                }
                return Err(refusal.into());
            }
            let now = self.now();
            let signature = self
                .signer
                .sign_async(cosignature::message(now, &req.note.text))
                .await?;
            let expected = recorded.as_ref().map(|s| (s.size, s.root));
            let new = LogState {
                size: req.checkpoint.size,
                root: req.checkpoint.root,
                cosigned_at: now,
                checkpoint: kept.clone(),
            };
            match self.store.replace(origin, expected, new).await? {
                Outcome::Stored => {
                    let line = self.cosigner.signature(now, &signature);
                    return Ok(format_cosignatures(&[line]));
                }
                Outcome::Moved(current) => recorded = current,
            }
        }
        Err(WitnessError::Contention)
    }

    /// Records an alert, durably. A store failure is logged, not answered: the refusal
    /// still goes to the client.
    async fn alert(
        &self,
        log: &RegisteredLog,
        kind: AlertKind,
        req: &AddCheckpoint,
        recorded: Option<&LogState>,
    ) {
        let alert = Alert {
            kind,
            at: self.now(),
            old_size: req.old_size,
            size: req.checkpoint.size,
            recorded_size: recorded.map(|s| s.size),
            submitted: alert_note(&req.note, &log.key),
            // With the submitted checkpoint, the evidence of a fork or a rollback.
            recorded: recorded
                .filter(|_| kind != AlertKind::BadSignature)
                .map(|s| s.checkpoint.clone()),
        };
        tracing::warn!(
            origin = %log.origin,
            kind = kind.name(),
            old_size = req.old_size,
            size = req.checkpoint.size,
            recorded_size = ?recorded.map(|s| s.size),
            "witness alert"
        );
        if let Err(e) = self.store.record_alert(&log.origin, alert).await {
            tracing::error!(origin = %log.origin, error = %e, "cannot record a witness alert");
        }
    }

    fn status_at(&self, log: &RegisteredLog, now: u64) -> LogStatus {
        let record = self.store.record(&log.origin).unwrap_or_default();
        let age_secs = record
            .state
            .as_ref()
            .map(|s| now.saturating_sub(s.cosigned_at));
        LogStatus {
            log: log.clone(),
            stale: age_secs.is_none_or(|a| a > self.settings.stale_after_secs),
            age_secs,
            state: record.state,
            alerts: record.alerts,
        }
    }

    /// Every registered log's status, in configuration order.
    pub fn status(&self) -> Vec<LogStatus> {
        let now = self.now();
        self.logs.iter().map(|l| self.status_at(l, now)).collect()
    }

    /// One log's status, if it is registered.
    pub fn status_of(&self, origin: &str) -> Option<LogStatus> {
        let log = self.index.get(origin).and_then(|&i| self.logs.get(i))?;
        Some(self.status_at(log, self.now()))
    }

    /// Figures over every registered log.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            registered: self.logs.len() as u64,
            ..Summary::default()
        };
        for st in self.status() {
            s.stale += u64::from(st.stale);
            for (n, kind) in s.alerts.iter_mut().zip(AlertKind::ALL) {
                *n = n.saturating_add(st.alerts.count(kind));
            }
        }
        s
    }

    /// Readiness: the HSM answers on a session, and the store reads and commits.
    pub async fn readiness(&self) -> (Result<(), String>, Result<(), String>) {
        let signer = Arc::clone(&self.signer);
        let hsm = tokio::task::spawn_blocking(move || signer.health())
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let store = self.store.health().map_err(|e| e.to_string());
        (hsm, store)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::chain::note::{key_id, verifier_key, Checkpoint};
    use crate::chain::tlog::Hash;
    use crate::chain::witness_protocol::add_checkpoint_body;
    use ed25519_dalek::Signer as _;

    /// A simulated appliance: its tree and key.
    struct Sim {
        origin: String,
        key: ed25519_dalek::SigningKey,
        hashes: Vec<Hash>,
        size: u64,
    }

    const ORIGIN: &str = "sim.example/chain";

    impl Sim {
        fn new() -> Sim {
            Sim::named(ORIGIN, 1)
        }
        fn named(origin: &str, seed: u8) -> Sim {
            Sim {
                origin: origin.into(),
                key: ed25519_dalek::SigningKey::from_bytes(&[seed; 32]),
                hashes: Vec::new(),
                size: 0,
            }
        }
        fn verifier(&self) -> VerifierKey {
            VerifierKey::parse(&verifier_key(
                &self.origin,
                &self.key.verifying_key().to_bytes(),
            ))
            .unwrap()
        }
        fn grow(&mut self, n: u64) {
            for _ in 0..n {
                let leaf = tlog::leaf_hash(&self.size.to_be_bytes());
                let add = tlog::stored_hashes_for_record(self.size, leaf, &self.hashes).unwrap();
                self.hashes.extend(add);
                self.size += 1;
            }
        }
        fn root(&self, size: u64) -> Hash {
            tlog::tree_hash(size, &self.hashes).unwrap()
        }
        fn note(&self, size: u64, root: Hash) -> String {
            let text = Checkpoint {
                origin: self.origin.clone(),
                size,
                root,
                extensions: vec![],
            }
            .body();
            let pk = self.key.verifying_key().to_bytes();
            SignedNote {
                signatures: vec![NoteSignature {
                    name: self.origin.clone(),
                    id: key_id(&self.origin, &pk),
                    signature: self.key.sign(text.as_bytes()).to_bytes().to_vec(),
                }],
                text,
            }
            .format()
        }
        fn body(&self, old: u64, size: u64) -> String {
            let proof = tlog::prove_consistency(size, old, &self.hashes).unwrap();
            add_checkpoint_body(old, &proof, &self.note(size, self.root(size))).unwrap()
        }
        fn request(&self, old: u64, size: u64) -> AddCheckpoint {
            AddCheckpoint::parse(self.body(old, size).as_bytes()).unwrap()
        }
    }

    fn state_of(req: &AddCheckpoint) -> LogState {
        LogState {
            size: req.checkpoint.size,
            root: req.checkpoint.root,
            cosigned_at: 1,
            checkpoint: req.note.format(),
        }
    }

    #[test]
    fn evaluate_follows_the_spec() {
        let mut sim = Sim::new();
        sim.grow(20);
        // First contact: old 0, any size, empty proof.
        assert_eq!(evaluate(None, &sim.request(0, 10)), Ok(()));
        assert_eq!(evaluate(None, &sim.request(0, 0)), Ok(()));
        // Old size the witness never cosigned.
        assert_eq!(
            evaluate(None, &sim.request(5, 10)),
            Err((
                Refusal::OldSizeMismatch {
                    old: 5,
                    recorded: 0
                },
                None
            ))
        );
        let rec = state_of(&sim.request(0, 10));
        // The next one, with a proof from 10.
        assert_eq!(evaluate(Some(&rec), &sim.request(10, 15)), Ok(()));
        // The same checkpoint again is fine.
        assert_eq!(evaluate(Some(&rec), &sim.request(10, 10)), Ok(()));
        // A stale old size: 409, but nothing the log signed is wrong: no alert.
        assert_eq!(
            evaluate(Some(&rec), &sim.request(5, 15)),
            Err((
                Refusal::OldSizeMismatch {
                    old: 5,
                    recorded: 10
                },
                None
            ))
        );
        assert_eq!(
            evaluate(Some(&rec), &sim.request(0, 15)).unwrap_err().1,
            None
        );
        // A checkpoint smaller than the recorded one: 400 or 409, a rollback.
        assert_eq!(
            evaluate(Some(&rec), &sim.request(5, 5)).unwrap_err().1,
            Some(AlertKind::Rollback)
        );
        let mut smaller = sim.request(0, 5);
        smaller.old_size = 10;
        assert_eq!(
            evaluate(Some(&rec), &smaller),
            Err((
                Refusal::OldSizeAboveSize { old: 10, size: 5 },
                Some(AlertKind::Rollback)
            ))
        );
        // An old size above the recorded: 409 without an alert.
        assert_eq!(
            evaluate(Some(&rec), &sim.request(12, 15)),
            Err((
                Refusal::OldSizeMismatch {
                    old: 12,
                    recorded: 10
                },
                None
            ))
        );
        // Same size, another root: a fork.
        let mut fork = sim.request(10, 10);
        fork.checkpoint.root = [7; 32];
        assert_eq!(
            evaluate(Some(&rec), &fork),
            Err((Refusal::Fork { recorded: 10 }, Some(AlertKind::Fork)))
        );
        // A larger tree that does not extend the recorded one: a bad proof.
        let mut other = sim.request(10, 15);
        other.checkpoint.root = [8; 32];
        assert!(matches!(
            evaluate(Some(&rec), &other),
            Err((Refusal::BadProof(_), Some(AlertKind::BadProof)))
        ));
        let mut cut = sim.request(10, 15);
        cut.proof.pop();
        assert!(matches!(
            evaluate(Some(&rec), &cut),
            Err((Refusal::BadProof(_), Some(AlertKind::BadProof)))
        ));
        // A proof from old size 0 must be empty.
        let mut padded = sim.request(0, 10);
        padded.proof.push([1; 32]);
        assert!(matches!(
            evaluate(None, &padded),
            Err((Refusal::BadProof(_), _))
        ));
        for r in [
            Refusal::OldSizeMismatch {
                old: 1,
                recorded: 2,
            },
            Refusal::Fork { recorded: 2 },
        ] {
            assert_eq!((r.status(), r.conflict_size()), (409, Some(2)));
        }
        assert_eq!(Refusal::BadSignature.status(), 403);
        assert!(Refusal::REASONS.contains(&Refusal::BadProof(String::new()).reason()));
    }

    #[test]
    fn kept_and_alert_notes_keep_only_the_logs_signatures() {
        let mut sim = Sim::new();
        sim.grow(3);
        let mut req = sim.request(0, 3);
        let vk = sim.verifier();
        req.note.signatures.insert(
            0,
            NoteSignature {
                name: "witness.other/w".into(),
                id: [1, 2, 3, 4],
                signature: vec![0; 72],
            },
        );
        let kept = SignedNote::parse(&kept_note(&req.note, &vk)).unwrap();
        assert_eq!(kept.signatures.len(), 1);
        kept.verify(&vk).unwrap();
        let alert = SignedNote::parse(&alert_note(&req.note, &vk)).unwrap();
        assert_eq!(alert.signatures.len(), 1);
        req.note.signatures.retain(|s| s.name != ORIGIN);
        assert_eq!(alert_note(&req.note, &vk), req.note.text);
    }

    /// The use case in-process, against SoftHSM: a sequence is cosigned (each cosignature
    /// verifies), of many concurrent requests from one state exactly one wins, refusals
    /// are recorded.
    #[test]
    fn cosigns_through_the_hsm_and_lets_one_concurrent_request_win() {
        use crate::chain::store::Store;
        use crate::chain::witness_protocol::parse_cosignatures;
        use crate::signer::{testsupport, KeyAlgorithm, KeyPurpose, SigningPool};

        let token = testsupport::new_token();
        let hsm = token.open();
        hsm.generate_key("witness", KeyAlgorithm::Ed25519, KeyPurpose::Witness)
            .unwrap();
        let pool = SigningPool::start(&hsm, "witness", 2, true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut a = Sim::named("a.example/chain", 1);
        let b = Sim::named("b.example/chain", 2);
        let wstore = WitnessStore::open(&store, &[a.origin.clone(), b.origin.clone()]).unwrap();
        let logs = vec![
            RegisteredLog {
                origin: a.origin.clone(),
                key: a.verifier(),
                url: None,
            },
            RegisteredLog {
                origin: b.origin.clone(),
                key: b.verifier(),
                url: Some("https://b.example".into()),
            },
        ];
        let service = Arc::new(
            WitnessService::new(
                WitnessSettings {
                    name: "witness.test/w1".into(),
                    stale_after_secs: 60,
                },
                logs,
                wstore,
                Arc::new(pool),
                Arc::new(crate::clock::SystemClock),
            )
            .unwrap(),
        );
        let cosigner = Cosigner::parse(&service.verifier_key()).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        rt.block_on(async {
            let mut old = 0;
            for step in [1u64, 4, 11, 1, 40] {
                a.grow(step);
                let lines = service
                    .add_checkpoint(a.body(old, a.size).as_bytes())
                    .await
                    .unwrap();
                let text = SignedNote::parse(&a.note(a.size, a.root(a.size)))
                    .unwrap()
                    .text;
                let t = cosigner
                    .verify(&parse_cosignatures(&text, &lines).unwrap())
                    .unwrap();
                assert!(t > 1_700_000_000);
                old = a.size;
            }
            // Twenty requests for the same checkpoint checked against the same state: one
            // wins, the others get the new size in a 409. (All the same size: a loser
            // smaller than the winner would be a signed rollback, and alert.)
            a.grow(20);
            let tasks: Vec<_> = (1..=20)
                .map(|_| {
                    let (service, body) = (Arc::clone(&service), a.body(old, old + 20));
                    tokio::spawn(async move { (20, service.add_checkpoint(body.as_bytes()).await) })
                })
                .collect();
            let mut winners = Vec::new();
            let mut conflicts = Vec::new();
            for t in tasks {
                match t.await.unwrap() {
                    (k, Ok(_)) => winners.push(old + k),
                    (_, Err(WitnessError::Refused(Refusal::OldSizeMismatch { recorded, .. }))) => {
                        conflicts.push(recorded)
                    }
                    (_, Err(e)) => panic!("{e}"),
                }
            }
            assert_eq!(winners.len(), 1, "{winners:?}");
            assert!(conflicts.iter().all(|r| *r == winners[0]), "{conflicts:?}");
            let st = service.status_of(&a.origin).unwrap();
            assert_eq!(st.state.as_ref().unwrap().size, winners[0]);
            assert!(!st.stale);
            // A refusal with an alert; another log untouched.
            let e = service
                .add_checkpoint(a.body(0, 3).as_bytes())
                .await
                .unwrap_err();
            assert!(matches!(
                e,
                WitnessError::Refused(Refusal::OldSizeMismatch { .. })
            ));
            let forged = b.body(0, 0).replace(&b.origin, &a.origin);
            let e = service.add_checkpoint(forged.as_bytes()).await.unwrap_err();
            assert!(
                matches!(e, WitnessError::Refused(Refusal::BadSignature)),
                "{e}"
            );
            // The 19 requests that lost the race had stale old sizes: refused, not
            // alerts; the checkpoint of 3 after a larger one is a rollback.
            let st = service.status_of(&a.origin).unwrap();
            assert_eq!(st.alerts.count(AlertKind::Rollback), 1);
            assert_eq!(st.alerts.count(AlertKind::BadSignature), 1);
            assert_eq!(st.alerts.recent().len(), 2);
            let summary = service.summary();
            assert_eq!((summary.registered, summary.stale), (2, 1));
            assert_eq!(summary.alerts, [1, 0, 0, 1]);
            let e = service
                .add_checkpoint(Sim::named("c.example/chain", 3).body(0, 0).as_bytes())
                .await
                .unwrap_err();
            assert!(matches!(
                e,
                WitnessError::Refused(Refusal::UnknownOrigin(_))
            ));
            let (h, s) = service.readiness().await;
            assert_eq!((h, s), (Ok(()), Ok(())));
        });
    }
}
