//! The data center's witness: cosigns the checkpoints of registered appliances
//! (c2sp.org/tlog-witness `add-checkpoint`) when they extend, consistently, the last one it
//! cosigned for them; refuses the others, and keeps the evidence when the appliance's own
//! signed checkpoints prove that it forked or rolled back.
//!
//! A request is handled in this order, with the spec's status for each refusal
//! ([`Refusal::status`]):
//! 1. parse the body (400) and find the log by the checkpoint's origin (404);
//! 2. verify the log's signature in software, ignoring signatures by other keys (403). Such
//!    a post, like a malformed one or one for an unknown origin, is junk anyone can send:
//!    counted (per log, [`WitnessService::unsigned`]), logged at a rate-limited level, never
//!    stored;
//! 3. against the latest cosigned checkpoint, from memory ([`evaluate`]): the old size must
//!    not exceed the checkpoint's (400) and must equal the size last cosigned (409 with that
//!    size); the same size must have the same root (409); the consistency proof must verify
//!    (422);
//! 4. sign the cosignature (`cosignature/v1`, the current Unix time) with the witness key in
//!    the HSM, then store the new checkpoint with a compare-and-swap against the state step 3
//!    checked ([`WitnessStore::replace`]): it is durable before the answer. If another
//!    request changed the state meanwhile, step 3 runs again on the new state.
//!
//! The latest cosigned checkpoint submitted again (old size = its size) changes nothing:
//! checkpoints are public, so anyone can replay it. Nothing is stored for it (its cosigned
//! time, and with it staleness, stays that of the cosignature that stored it); the latest
//! cosignature made for it is answered again for [`RECOSIGN_AFTER_SECS`], then one new one
//! is made: a replay costs at most one HSM signature per log in that time.
//!
//! **Evidence.** A refusal in step 3 is only a refusal: a replayed checkpoint the witness
//! cosigned before, a stale old size, a proof the submitter broke, or an older checkpoint
//! of the log the witness cannot compare with anything it holds. Anyone can send those
//! (checkpoints are public), so nothing is recorded for them. Only when the log's own
//! signed checkpoints contradict each other does the witness keep evidence
//! ([`find_inconsistency`], [`WitnessStore::record_evidence`]): the submitted checkpoint
//! (signed by the log) and one the witness cosigned (the latest, or one of the
//! [`HISTORY`](crate::witness::store::HISTORY) before it) when
//! - they have the same size and different roots; or
//! - the submission's consistency proof, from the cosigned one's size, leads to the
//!   submitted root (so its nodes are the log's own tree, short of a SHA-256 collision) from
//!   another root than the cosigned one: the log's tree does not contain what it showed
//!   before ([`tlog::consistency_proof_roots`]).
//!
//! The witness can prove nothing else: a checkpoint smaller than the latest, of a size it
//! did not keep, comes with no proof that relates it to what the witness cosigned; and when
//! the cosigned size is a power of two a consistency proof does not carry the old root, so
//! a larger checkpoint of another history is told from a broken proof only once the log
//! signs a size the witness cosigned. Those are refused without evidence.
//!
//! Its one error type is [`WitnessError`]; the HTTP layer maps it to statuses.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use crate::chain::cosignature::{self, Cosigner};
use crate::chain::note::{Checkpoint, NoteSignature, SignedNote, VerifierKey};
use crate::chain::tlog::{self, Hash, EMPTY_TREE_HASH};
use crate::clock::Clock;
use crate::signer::{SignatureAlgorithm, Signer, SignerError};
use crate::witness::protocol::{format_cosignatures, AddCheckpoint, ProtocolError};
use crate::witness::store::{
    Evidence, EvidenceCounts, EvidenceKind, EvidenceOutcome, LegacyAlert, LogState, Outcome,
    WitnessStore, WitnessStoreError,
};

/// How often a request is checked again when its state keeps changing under it.
const MAX_ATTEMPTS: usize = 8;
/// Warnings about junk (posts without a valid signature) logged per minute at most; the
/// rest are counted, and logged at debug level.
const JUNK_WARNINGS_PER_MINUTE: u32 = 6;
/// How long the latest cosignature of a log's latest checkpoint is answered again to a
/// submission of that same checkpoint, before a new one is made.
pub const RECOSIGN_AFTER_SECS: u64 = 60;

/// The latest cosignature made for a log's latest checkpoint.
#[derive(Debug, Clone)]
struct Recent {
    size: u64,
    root: Hash,
    at: u64,
    line: NoteSignature,
}

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
    /// The store did not take the new state, or the evidence.
    #[error("{0}")]
    Store(#[from] WitnessStoreError),
    /// The witness key is unusable (found at startup).
    #[error("witness key: {0}")]
    Identity(String),
    /// The log's state kept changing under the request; the client may try again.
    #[error("the log's state changed {MAX_ATTEMPTS} times while the request was checked")]
    Contention,
}

/// The state checks of a submission whose signature verified, against the latest checkpoint
/// the witness cosigned for the log (`recorded`, none before the first): old size, same
/// root at the same size, consistency proof, in the spec's order. Pure.
pub fn evaluate(recorded: Option<&LogState>, req: &AddCheckpoint) -> Result<(), Refusal> {
    let (old, size, root) = (req.old_size, req.checkpoint.size, req.checkpoint.root);
    let (rec_size, rec_root) = recorded.map_or((0, EMPTY_TREE_HASH), |s| (s.size, s.root));
    if old > size {
        return Err(Refusal::OldSizeAboveSize { old, size });
    }
    if old != rec_size {
        return Err(Refusal::OldSizeMismatch {
            old,
            recorded: rec_size,
        });
    }
    if size == old && recorded.is_some() && root != rec_root {
        return Err(Refusal::Fork { recorded: rec_size });
    }
    tlog::verify_consistency(&req.proof, size, old, &root, &rec_root)
        .map_err(|e| Refusal::BadProof(e.to_string()))
}

/// What a signed submission and a checkpoint the witness cosigned prove together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inconsistency {
    /// The submitted size against the latest cosigned one.
    pub kind: EvidenceKind,
    /// The cosigned checkpoint it contradicts.
    pub cosigned: LogState,
    /// Whether the submission's consistency proof is what shows it (else the sizes are
    /// equal and the roots differ).
    pub by_proof: bool,
}

/// Whether `req` (whose signature by the log's key verified) contradicts a checkpoint the
/// witness cosigned for the log: `latest_size` is the latest one's size, `cosigned(size)`
/// the cosigned checkpoint of that size, if the witness holds it. Pure; see the module
/// documentation for what counts.
pub fn find_inconsistency(
    latest_size: u64,
    cosigned: impl Fn(u64) -> Option<LogState>,
    req: &AddCheckpoint,
) -> Option<Inconsistency> {
    let (old, size, root) = (req.old_size, req.checkpoint.size, req.checkpoint.root);
    let kind = match size.cmp(&latest_size) {
        std::cmp::Ordering::Less => EvidenceKind::Rollback,
        std::cmp::Ordering::Equal => EvidenceKind::Fork,
        std::cmp::Ordering::Greater => EvidenceKind::BadProof,
    };
    if let Some(a) = cosigned(size) {
        // The same checkpoint is a replay; another root at that size, a contradiction.
        return (a.root != root).then_some(Inconsistency {
            kind,
            cosigned: a,
            by_proof: false,
        });
    }
    let a = cosigned(old).filter(|_| old < size)?;
    let (old_root, new_root) = tlog::consistency_proof_roots(&req.proof, size, old).ok()?;
    (new_root == root && old_root != a.root).then_some(Inconsistency {
        kind,
        cosigned: a,
        by_proof: true,
    })
}

/// One log's view for `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStatus {
    /// The registration.
    pub log: RegisteredLog,
    /// The latest cosigned checkpoint.
    pub state: Option<LogState>,
    /// The earlier cosigned checkpoints kept, oldest first.
    pub history: Vec<LogState>,
    /// Seconds since it was cosigned.
    pub age_secs: Option<u64>,
    /// No cosignature within the stale limit (or none at all).
    pub stale: bool,
    /// Its evidence records, counted.
    pub evidence: EvidenceCounts,
    /// Posts naming it without a valid signature by its key, since start.
    pub unsigned: u64,
}

/// Figures over every registered log (for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Logs registered.
    pub registered: u64,
    /// Logs that are stale.
    pub stale: u64,
    /// Evidence records kept, by kind (the order of [`EvidenceKind::ALL`]).
    pub evidence: [u64; 3],
    /// Evidence received since start and not kept (a log at its cap).
    pub evidence_not_kept: u64,
    /// Logs with at least one evidence record.
    pub logs_with_evidence: u64,
    /// Evidence records found damaged when the witness started.
    pub evidence_damaged: u64,
}

/// What [`WitnessService::carry_over_legacy_alerts`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CarriedOver {
    /// Alerts of an older version found.
    pub alerts: u64,
    /// Evidence records they proved (new or already kept).
    pub evidence: u64,
}

/// The witness.
pub struct WitnessService {
    settings: WitnessSettings,
    logs: Vec<RegisteredLog>,
    index: HashMap<String, usize>,
    /// Per log: posts without a valid signature by its key, since start.
    unsigned: Vec<AtomicU64>,
    /// Per log: the latest cosignature of its latest checkpoint (answered again to replays).
    recent: Vec<Mutex<Option<Recent>>>,
    junk_warnings: governor::DefaultDirectRateLimiter,
    /// Errors about evidence not kept (a log at its cap), apart from junk's so that junk
    /// cannot hide them.
    full_warnings: governor::DefaultDirectRateLimiter,
    store: Arc<dyn WitnessStore>,
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

/// The submitted note reduced to its text and `verified`, the signature line that verified
/// with the log's key ([`SignedNote::verified_by`]): what is kept as the log's checkpoint,
/// and in evidence. Both are byte for byte as received
/// (base64 decodes canonically, so the line formats back the same).
fn kept_note(text: &str, verified: &NoteSignature) -> String {
    SignedNote {
        text: text.to_owned(),
        signatures: vec![verified.clone()],
    }
    .format()
}

/// A note an older version kept, as a checkpoint signed by `key`: `None` unless it parses
/// and verifies, reduced like [`kept_note`].
fn verified_checkpoint(note: &str, key: &VerifierKey) -> Option<(Checkpoint, String)> {
    let note = SignedNote::parse(note).ok()?;
    let verified = note.verified_by(key).ok()?;
    let checkpoint = Checkpoint::parse(&note.text).ok()?;
    Some((checkpoint, kept_note(&note.text, verified)))
}

/// The evidence an older version's alert proves: a fork (the same size, another root)
/// between two notes that both verify with the log's key.
fn legacy_evidence(log: &RegisteredLog, alert: &LegacyAlert) -> Option<Evidence> {
    let (a, cosigned) = verified_checkpoint(alert.recorded.as_deref()?, &log.key)?;
    let (b, submitted) = verified_checkpoint(&alert.submitted, &log.key)?;
    let same_log = a.origin == log.origin && b.origin == log.origin;
    (same_log && a.size == b.size && a.root != b.root).then(|| Evidence {
        kind: EvidenceKind::Fork,
        seen_at: alert.at,
        cosigned_size: a.size,
        cosigned,
        size: b.size,
        submitted,
        old_size: alert.old_size,
        proof: Vec::new(),
    })
}

impl WitnessService {
    /// A witness for `logs`, keeping its state in `store` (opened for exactly these
    /// origins), cosigning with `signer` (Ed25519, in the HSM) under `settings.name`.
    pub fn new(
        settings: WitnessSettings,
        logs: Vec<RegisteredLog>,
        store: Arc<dyn WitnessStore>,
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
        let quota = governor::Quota::per_minute(
            NonZeroU32::MIN.saturating_add(JUNK_WARNINGS_PER_MINUTE - 1),
        );
        Ok(WitnessService {
            cosigner: Cosigner {
                name: settings.name.clone(),
                public_key,
            },
            settings,
            unsigned: logs.iter().map(|_| AtomicU64::new(0)).collect(),
            recent: logs.iter().map(|_| Mutex::new(None)).collect(),
            junk_warnings: governor::RateLimiter::direct(quota),
            full_warnings: governor::RateLimiter::direct(quota),
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
    pub fn store(&self) -> &dyn WitnessStore {
        self.store.as_ref()
    }

    /// The registered logs, in configuration order.
    pub fn logs(&self) -> &[RegisteredLog] {
        &self.logs
    }

    /// Posts naming each log without a valid signature by its key, since start, in
    /// configuration order.
    pub fn unsigned(&self) -> Vec<(&RegisteredLog, u64)> {
        self.logs
            .iter()
            .zip(&self.unsigned)
            .map(|(l, n)| (l, n.load(Ordering::Relaxed)))
            .collect()
    }

    fn now(&self) -> u64 {
        self.clock
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// Handles an add-checkpoint body: the cosignature lines when cosigned (and durable),
    /// else why not. Evidence a refused submission carries is durable before the refusal
    /// is returned (a store failure is answered as such, so the submitter tries again).
    pub async fn add_checkpoint(&self, body: &[u8]) -> Result<String, WitnessError> {
        let req = AddCheckpoint::parse(body).map_err(Refusal::Malformed)?;
        let origin = req.checkpoint.origin.as_str();
        let (i, log) = self
            .index
            .get(origin)
            .and_then(|&i| Some((i, self.logs.get(i)?)))
            .ok_or_else(|| Refusal::UnknownOrigin(origin.to_owned()))?;
        let Ok(verified) = req.note.verified_by(&log.key) else {
            self.count_unsigned(i, log);
            return Err(Refusal::BadSignature.into());
        };
        let kept = kept_note(&req.note.text, verified);
        let mut recorded = self.store.latest(origin)?;
        for _ in 0..MAX_ATTEMPTS {
            if let Err(refusal) = evaluate(recorded.as_ref(), &req) {
                if let Some(latest) = &recorded {
                    self.keep_evidence(log, latest, &req, &kept).await?;
                }
                return Err(refusal.into());
            }
            let (size, root) = (req.checkpoint.size, req.checkpoint.root);
            if recorded
                .as_ref()
                .is_some_and(|s| (s.size, s.root) == (size, root))
            {
                return self.cosign_again(i, &req).await;
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
                    self.remember(
                        i,
                        Recent {
                            size,
                            root,
                            at: now,
                            line: line.clone(),
                        },
                    );
                    return Ok(format_cosignatures(&[line]));
                }
                Outcome::Moved(current) => recorded = current,
            }
        }
        Err(WitnessError::Contention)
    }

    /// The answer to the latest cosigned checkpoint of log `i` submitted again: its latest
    /// cosignature while it is recent, else a new one; nothing is stored either way.
    async fn cosign_again(&self, i: usize, req: &AddCheckpoint) -> Result<String, WitnessError> {
        let (size, root) = (req.checkpoint.size, req.checkpoint.root);
        let now = self.now();
        let cached = self.recent.get(i).and_then(|r| {
            let r = r.lock().unwrap_or_else(PoisonError::into_inner);
            r.as_ref()
                .filter(|r| (r.size, r.root) == (size, root))
                .filter(|r| now.saturating_sub(r.at) < RECOSIGN_AFTER_SECS)
                .map(|r| r.line.clone())
        });
        let line = match cached {
            Some(line) => line,
            None => {
                let signature = self
                    .signer
                    .sign_async(cosignature::message(now, &req.note.text))
                    .await?;
                let line = self.cosigner.signature(now, &signature);
                self.remember(
                    i,
                    Recent {
                        size,
                        root,
                        at: now,
                        line: line.clone(),
                    },
                );
                line
            }
        };
        Ok(format_cosignatures(&[line]))
    }

    /// Keeps `recent` as log `i`'s latest cosignature, unless a later one is kept already.
    fn remember(&self, i: usize, recent: Recent) {
        if let Some(slot) = self.recent.get(i) {
            let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
            let newer = slot
                .as_ref()
                .is_some_and(|r| (r.size, r.at) > (recent.size, recent.at));
            if !newer {
                *slot = Some(recent);
            }
        }
    }

    /// Counts a post naming `log` that no signature by its key verifies, and says so in the
    /// log now and then (anyone can send any number of them).
    fn count_unsigned(&self, i: usize, log: &RegisteredLog) {
        let n = self
            .unsigned
            .get(i)
            .map_or(0, |c| c.fetch_add(1, Ordering::Relaxed) + 1);
        if self.junk_warnings.check().is_ok() {
            tracing::warn!(
                origin = %log.origin,
                unsigned_since_start = n,
                "a checkpoint without a valid signature by the log's key: refused, not stored \
                 (warnings about them are limited; all are counted)"
            );
        } else {
            tracing::debug!(origin = %log.origin, "a checkpoint without a valid signature");
        }
    }

    /// Keeps the evidence a refused signed submission carries against what the witness
    /// cosigned, if any.
    async fn keep_evidence(
        &self,
        log: &RegisteredLog,
        latest: &LogState,
        req: &AddCheckpoint,
        kept: &str,
    ) -> Result<(), WitnessError> {
        let origin = log.origin.as_str();
        let cosigned = |size: u64| {
            if size == latest.size {
                Some(latest.clone())
            } else {
                self.store.cosigned(origin, size).ok().flatten()
            }
        };
        let Some(found) = find_inconsistency(latest.size, cosigned, req) else {
            return Ok(());
        };
        let (kind, cosigned_size, size) = (found.kind, found.cosigned.size, req.checkpoint.size);
        let evidence = Evidence {
            kind,
            seen_at: self.now(),
            cosigned_size,
            cosigned: found.cosigned.checkpoint,
            size,
            submitted: kept.to_owned(),
            old_size: req.old_size,
            proof: if found.by_proof {
                req.proof.clone()
            } else {
                Vec::new()
            },
        };
        match self.store.record_evidence(origin, evidence).await? {
            EvidenceOutcome::Stored => tracing::error!(
                %origin,
                kind = kind.name(),
                cosigned_size,
                size,
                by_proof = found.by_proof,
                "the log signed two checkpoints that cannot both be true: evidence kept"
            ),
            EvidenceOutcome::AlreadyKept => {
                tracing::debug!(%origin, kind = kind.name(), "evidence already kept")
            }
            EvidenceOutcome::Full => {
                if self.full_warnings.check().is_ok() {
                    tracing::error!(
                        %origin,
                        kind = kind.name(),
                        "more evidence against a log that has the most kept: counted, not kept"
                    );
                }
            }
        }
        Ok(())
    }

    /// Carries the forks that alerts of an older version prove (both notes verify with the
    /// log's key: the same size, another root) over to evidence records; the rest of those
    /// alerts (posts anyone could make, or claims without their proof) stay on disk as
    /// they are and are no longer shown. Idempotent: run at every start.
    pub async fn carry_over_legacy_alerts(&self) -> Result<CarriedOver, WitnessError> {
        let mut done = CarriedOver::default();
        for log in &self.logs {
            let alerts = match self.store.legacy_alerts(&log.origin) {
                Ok(Some(a)) => a,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(origin = %log.origin, error = %e, "cannot read the alerts of an older version; left as they are");
                    continue;
                }
            };
            for alert in &alerts.recent {
                done.alerts += 1;
                if let Some(evidence) = legacy_evidence(log, alert) {
                    self.store.record_evidence(&log.origin, evidence).await?;
                    done.evidence += 1;
                }
            }
        }
        Ok(done)
    }

    /// Whether a log whose latest cosignature is `age_secs` old (`None`: never cosigned)
    /// is stale.
    fn is_stale(&self, age_secs: Option<u64>) -> bool {
        age_secs.is_none_or(|a| a > self.settings.stale_after_secs)
    }

    fn status_at(&self, i: usize, log: &RegisteredLog, now: u64) -> LogStatus {
        let record = self.store.record(&log.origin).unwrap_or_default();
        let age_secs = record
            .state
            .as_ref()
            .map(|s| now.saturating_sub(s.cosigned_at));
        LogStatus {
            log: log.clone(),
            stale: self.is_stale(age_secs),
            age_secs,
            state: record.state,
            history: record.history,
            evidence: record.evidence,
            unsigned: self
                .unsigned
                .get(i)
                .map_or(0, |c| c.load(Ordering::Relaxed)),
        }
    }

    /// Every registered log's status, in configuration order.
    pub fn status(&self) -> Vec<LogStatus> {
        let now = self.now();
        self.logs
            .iter()
            .enumerate()
            .map(|(i, l)| self.status_at(i, l, now))
            .collect()
    }

    /// One log's status, if it is registered.
    pub fn status_of(&self, origin: &str) -> Option<LogStatus> {
        let i = *self.index.get(origin)?;
        let log = self.logs.get(i)?;
        Some(self.status_at(i, log, self.now()))
    }

    /// One log's evidence records, oldest first, if it is registered.
    pub fn evidence_of(&self, origin: &str) -> Option<Result<Vec<Evidence>, WitnessError>> {
        self.index.get(origin)?;
        Some(self.store.evidence(origin).map_err(WitnessError::from))
    }

    /// Figures over every registered log.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            registered: self.logs.len() as u64,
            ..Summary::default()
        };
        let now = self.now();
        for log in &self.logs {
            let age = self
                .store
                .latest(&log.origin)
                .ok()
                .flatten()
                .map(|st| now.saturating_sub(st.cosigned_at));
            s.stale += u64::from(self.is_stale(age));
            let evidence = self.store.evidence_counts(&log.origin).unwrap_or_default();
            for (n, kind) in s.evidence.iter_mut().zip(EvidenceKind::ALL) {
                *n = n.saturating_add(evidence.count(kind));
            }
            s.evidence_not_kept = s.evidence_not_kept.saturating_add(evidence.not_kept);
            s.logs_with_evidence += u64::from(evidence.total() > 0);
            s.evidence_damaged = s.evidence_damaged.saturating_add(evidence.damaged);
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
    use crate::chain::note::{key_id, verifier_key};
    use crate::witness::protocol::add_checkpoint_body;
    use crate::witness::store::{SledWitnessStore, HISTORY};
    use ed25519_dalek::Signer as _;

    /// A simulated appliance: its tree and key.
    struct Sim {
        origin: String,
        key: ed25519_dalek::SigningKey,
        hashes: Vec<Hash>,
        size: u64,
        /// Leaves get this prefix: a sim with another salt has another history.
        salt: u8,
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
                salt: 0,
            }
        }
        /// The same log (origin and key) with another history from its first record.
        fn forked(&self) -> Sim {
            Sim {
                origin: self.origin.clone(),
                key: self.key.clone(),
                hashes: Vec::new(),
                size: 0,
                salt: self.salt + 1,
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
                let mut data = vec![self.salt];
                data.extend_from_slice(&self.size.to_be_bytes());
                let leaf = tlog::leaf_hash(&data);
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
            Err(Refusal::OldSizeMismatch {
                old: 5,
                recorded: 0
            })
        );
        let rec = state_of(&sim.request(0, 10));
        // The next one, with a proof from 10.
        assert_eq!(evaluate(Some(&rec), &sim.request(10, 15)), Ok(()));
        // The same checkpoint again is fine.
        assert_eq!(evaluate(Some(&rec), &sim.request(10, 10)), Ok(()));
        // A stale old size: 409.
        assert_eq!(
            evaluate(Some(&rec), &sim.request(5, 15)),
            Err(Refusal::OldSizeMismatch {
                old: 5,
                recorded: 10
            })
        );
        // A checkpoint smaller than the recorded one: 409, or 400 with an old size above it.
        assert_eq!(
            evaluate(Some(&rec), &sim.request(5, 5))
                .unwrap_err()
                .status(),
            409
        );
        let mut smaller = sim.request(0, 5);
        smaller.old_size = 10;
        assert_eq!(
            evaluate(Some(&rec), &smaller),
            Err(Refusal::OldSizeAboveSize { old: 10, size: 5 })
        );
        // An old size above the recorded: 409.
        assert_eq!(
            evaluate(Some(&rec), &sim.request(12, 15)),
            Err(Refusal::OldSizeMismatch {
                old: 12,
                recorded: 10
            })
        );
        // Same size, another root.
        let mut fork = sim.request(10, 10);
        fork.checkpoint.root = [7; 32];
        assert_eq!(
            evaluate(Some(&rec), &fork),
            Err(Refusal::Fork { recorded: 10 })
        );
        // A larger tree that does not extend the recorded one, or a cut proof: 422.
        let mut other = sim.request(10, 15);
        other.checkpoint.root = [8; 32];
        assert!(matches!(
            evaluate(Some(&rec), &other),
            Err(Refusal::BadProof(_))
        ));
        let mut cut = sim.request(10, 15);
        cut.proof.pop();
        assert!(matches!(
            evaluate(Some(&rec), &cut),
            Err(Refusal::BadProof(_))
        ));
        // A proof from old size 0 must be empty.
        let mut padded = sim.request(0, 10);
        padded.proof.push([1; 32]);
        assert!(matches!(evaluate(None, &padded), Err(Refusal::BadProof(_))));
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

    /// What counts as evidence: only two signed checkpoints that contradict each other;
    /// never a replay, a stale old size, a broken proof, or what the witness cannot compare.
    #[test]
    fn only_contradicting_signed_checkpoints_are_evidence() {
        let mut a = Sim::new();
        a.grow(60);
        let mut f = a.forked();
        f.grow(60);
        // The witness cosigned 6, 12, 20 and, last, 40.
        let cosigned: Vec<LogState> = [6u64, 12, 20, 40]
            .iter()
            .map(|&s| state_of(&a.request(0, s)))
            .collect();
        let lookup = |size: u64| cosigned.iter().find(|s| s.size == size).cloned();
        let find = |req: &AddCheckpoint| find_inconsistency(40, lookup, req);

        // Replays of what it cosigned, with any old size: nothing.
        for (old, size) in [
            (0, 40),
            (20, 40),
            (40, 40),
            (6, 12),
            (0, 6),
            (12, 20),
            (40, 12),
        ] {
            let mut req = a.request(old.min(size), size);
            req.old_size = old;
            assert_eq!(find(&req), None, "{old} -> {size}");
        }
        // Genuine checkpoints it never cosigned, smaller or larger, with their right proofs,
        // with a stale old size, or with a proof the submitter broke: nothing.
        for (old, size) in [(0, 15), (6, 15), (40, 50), (20, 50), (13, 50), (0, 59)] {
            assert_eq!(find(&a.request(old, size)), None, "{old} -> {size}");
        }
        for i in 0..a.request(40, 50).proof.len() {
            let mut broken = a.request(40, 50);
            broken.proof[i][3] ^= 1;
            assert_eq!(find(&broken), None, "{i}");
        }
        let mut short = a.request(40, 50);
        short.proof.pop();
        assert_eq!(find(&short), None);
        // Another history at a size it cosigned: the latest (a fork), or an earlier one (a
        // rollback), whatever the old size and proof.
        let fork = find(&f.request(40, 40)).unwrap();
        assert_eq!(
            (fork.kind, fork.cosigned.size, fork.by_proof),
            (EvidenceKind::Fork, 40, false)
        );
        assert_eq!(find(&f.request(0, 40)).unwrap().kind, EvidenceKind::Fork);
        let back = find(&f.request(6, 12)).unwrap();
        assert_eq!(
            (back.kind, back.cosigned, back.by_proof),
            (EvidenceKind::Rollback, cosigned[1].clone(), false)
        );
        // Another history larger than the latest, whose own proof from a cosigned size
        // leads to its root from another root there.
        let ext = find(&f.request(40, 50)).unwrap();
        assert_eq!(
            (ext.kind, ext.cosigned.size, ext.by_proof),
            (EvidenceKind::BadProof, 40, true)
        );
        assert_eq!(
            find(&f.request(20, 59)).unwrap().cosigned.size,
            20,
            "from an earlier cosigned size"
        );
        // Smaller than the latest, of a size it did not cosign, by proof from one it did.
        let smaller = find(&f.request(12, 15)).unwrap();
        assert_eq!(
            (smaller.kind, smaller.cosigned.size, smaller.by_proof),
            (EvidenceKind::Rollback, 12, true)
        );
        // ... but its proof altered: nothing (the new root no longer follows).
        let mut altered = f.request(40, 50);
        altered.proof[0][0] ^= 1;
        assert_eq!(find(&altered), None);
        // From a size whose proof does not carry the old root (6 is not a power of two, but
        // 32 is, were it cosigned), or from a size it does not hold: nothing to prove with.
        let cosigned_32: Vec<LogState> = vec![state_of(&a.request(0, 32))];
        let lookup_32 = |size: u64| cosigned_32.iter().find(|s| s.size == size).cloned();
        assert_eq!(find_inconsistency(32, lookup_32, &f.request(32, 50)), None);
        assert_eq!(find(&f.request(30, 50)), None);
        // Another history below every cosigned size: nothing to compare with.
        assert_eq!(find(&f.request(0, 5)), None);
    }

    #[test]
    fn kept_notes_keep_only_the_logs_signature() {
        let mut sim = Sim::new();
        sim.grow(3);
        let mut req = sim.request(0, 3);
        let vk = sim.verifier();
        let keep =
            |req: &AddCheckpoint| kept_note(&req.note.text, req.note.verified_by(&vk).unwrap());
        let alone = keep(&req);
        assert_eq!(alone, sim.note(3, sim.root(3)), "byte for byte as signed");
        req.note.signatures.insert(
            0,
            NoteSignature {
                name: "witness.other/w".into(),
                id: [1, 2, 3, 4],
                signature: vec![0; 72],
            },
        );
        let kept = SignedNote::parse(&keep(&req)).unwrap();
        assert_eq!(kept.signatures.len(), 1);
        kept.verify(&vk).unwrap();
        assert_eq!(keep(&req), alone);
    }

    /// A witness in-process over SoftHSM, for `sims`, its store in `dir`; with the HSM
    /// handle that keeps its login.
    fn witness(dir: &std::path::Path, sims: &[&Sim]) -> (Arc<WitnessService>, crate::signer::Hsm) {
        witness_with_clock(dir, sims, Arc::new(crate::clock::SystemClock))
    }

    fn witness_with_clock(
        dir: &std::path::Path,
        sims: &[&Sim],
        clock: Arc<dyn Clock>,
    ) -> (Arc<WitnessService>, crate::signer::Hsm) {
        use crate::chain::store::reopen_in_process;
        use crate::signer::{testsupport, KeyAlgorithm, KeyPurpose, SigningPool};

        let token = testsupport::new_token();
        let hsm = token.open();
        hsm.generate_key("witness", KeyAlgorithm::Ed25519, KeyPurpose::Witness)
            .unwrap();
        let pool = SigningPool::start(&hsm, "witness", 2, true).unwrap();
        let store = reopen_in_process(dir);
        let origins: Vec<String> = sims.iter().map(|s| s.origin.clone()).collect();
        let wstore: Arc<dyn WitnessStore> =
            Arc::new(SledWitnessStore::open(&store, &origins).unwrap());
        let logs = sims
            .iter()
            .map(|s| RegisteredLog {
                origin: s.origin.clone(),
                key: s.verifier(),
                url: None,
            })
            .collect();
        let service = Arc::new(
            WitnessService::new(
                WitnessSettings {
                    name: "witness.test/w1".into(),
                    stale_after_secs: 60,
                },
                logs,
                wstore,
                Arc::new(pool),
                clock,
            )
            .unwrap(),
        );
        (service, hsm)
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap()
    }

    /// The use case in-process, against SoftHSM: a sequence is cosigned (each cosignature
    /// verifies), of many concurrent requests from one state exactly one wins, refusals
    /// without evidence leave nothing behind.
    #[test]
    fn cosigns_through_the_hsm_and_lets_one_concurrent_request_win() {
        use crate::witness::protocol::parse_cosignatures;

        let dir = tempfile::tempdir().unwrap();
        let mut a = Sim::named("a.example/chain", 1);
        let b = Sim::named("b.example/chain", 2);
        let (service, _hsm) = witness(dir.path(), &[&a, &b]);
        let cosigner = Cosigner::parse(&service.verifier_key()).unwrap();
        let rt = rt();
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
            // wins, the others get the new size in a 409.
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
            let sizes: Vec<u64> = st.history.iter().map(|s| s.size).collect();
            assert_eq!(sizes, [1, 5, 16, 17, 57][5 - HISTORY..]);
            // An old checkpoint replayed, and a forged one: refused, nothing kept; another
            // log untouched.
            let bytes = service.store().record_bytes();
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
            assert_eq!(service.store().record_bytes(), bytes);
            let st = service.status_of(&a.origin).unwrap();
            assert_eq!((st.evidence.total(), st.unsigned), (0, 1));
            let summary = service.summary();
            assert_eq!((summary.registered, summary.stale), (2, 1));
            assert_eq!(summary.evidence, [0, 0, 0]);
            assert_eq!(service.unsigned()[1].1, 0);
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

    /// The latest cosigned checkpoint submitted again (anyone can: checkpoints are public)
    /// stores nothing and keeps its cosigned time (so replays do not keep a silent log from
    /// going stale); the HSM signs again only once the last cosignature is a minute old.
    #[test]
    fn replays_of_the_latest_checkpoint_store_nothing_and_sign_once_a_minute() {
        use crate::service::tsa::tests::ManualClock;
        use crate::witness::protocol::parse_cosignatures;

        const T0: u64 = 1_800_000_000_000;
        let dir = tempfile::tempdir().unwrap();
        let mut a = Sim::new();
        let clock = Arc::new(ManualClock(AtomicU64::new(T0)));
        let (service, _hsm) = witness_with_clock(dir.path(), &[&a], clock.clone());
        let cosigner = Cosigner::parse(&service.verifier_key()).unwrap();
        let time_of = |a: &Sim, lines: &str| {
            let text = SignedNote::parse(&a.note(a.size, a.root(a.size)))
                .unwrap()
                .text;
            cosigner
                .verify(&parse_cosignatures(&text, lines).unwrap())
                .unwrap()
        };
        rt().block_on(async {
            a.grow(5);
            let first = service
                .add_checkpoint(a.body(0, 5).as_bytes())
                .await
                .unwrap();
            let stored = service.store().latest(&a.origin).unwrap().unwrap();
            assert_eq!(stored.cosigned_at, T0 / 1000);
            for k in 1..=200u64 {
                clock.0.store(T0 + k * 295, Ordering::SeqCst);
                let again = service
                    .add_checkpoint(a.body(5, 5).as_bytes())
                    .await
                    .unwrap();
                assert_eq!(again, first, "replay {k}");
            }
            assert_eq!(service.store().latest(&a.origin).unwrap().unwrap(), stored);
            // A minute later: one new cosignature, of the new time; still nothing stored.
            clock.0.store(T0 + 61_000, Ordering::SeqCst);
            let fresh = service
                .add_checkpoint(a.body(5, 5).as_bytes())
                .await
                .unwrap();
            assert_eq!(time_of(&a, &fresh), T0 / 1000 + 61);
            let again = service
                .add_checkpoint(a.body(5, 5).as_bytes())
                .await
                .unwrap();
            assert_eq!(again, fresh);
            assert_eq!(service.store().latest(&a.origin).unwrap().unwrap(), stored);
            // Replays do not keep a log that stopped growing from going stale.
            clock.0.store(T0 + 120_000, Ordering::SeqCst);
            service
                .add_checkpoint(a.body(5, 5).as_bytes())
                .await
                .unwrap();
            assert!(service.status_of(&a.origin).unwrap().stale);
            // The log moving on is cosigned and stored as before.
            a.grow(3);
            let next = service
                .add_checkpoint(a.body(5, 8).as_bytes())
                .await
                .unwrap();
            assert_eq!(time_of(&a, &next), T0 / 1000 + 120);
            let st = service.status_of(&a.origin).unwrap();
            assert_eq!((st.state.unwrap().size, st.stale), (8, false));
        });
    }

    /// A fork, then 10,000 posts anyone can make naming the log (bad signatures, a key it
    /// does not know, malformed bodies, replays of its public checkpoints): the fork's
    /// evidence is kept with both notes as signed, the junk is counted and not stored.
    #[test]
    fn ten_thousand_junk_posts_after_a_fork_leave_its_evidence() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Sim::new();
        let (service, _hsm) = witness(dir.path(), &[&a]);
        let rt = rt();
        a.grow(30);
        let mut f = a.forked();
        f.grow(30);
        let (cosigned, forked) = (a.note(30, a.root(30)), f.note(30, f.root(30)));
        let stranger = Sim::named(ORIGIN, 9);
        let mut bad = SignedNote::parse(&a.note(31, [3; 32])).unwrap();
        bad.signatures[0].signature[7] ^= 1;
        let junk: Vec<String> = vec![
            add_checkpoint_body(30, &[], &bad.format()).unwrap(),
            add_checkpoint_body(30, &[], &stranger.note(30, [4; 32])).unwrap(),
            "old 30\n\nnot a note\n".into(),
            a.body(0, 12),
        ];
        rt.block_on(async {
            service
                .add_checkpoint(a.body(0, 30).as_bytes())
                .await
                .unwrap();
            let body = add_checkpoint_body(30, &[], &forked).unwrap();
            let e = service.add_checkpoint(body.as_bytes()).await.unwrap_err();
            assert!(matches!(
                e,
                WitnessError::Refused(Refusal::Fork { recorded: 30 })
            ));
            let bytes = service.store().record_bytes();
            let tasks: Vec<_> = (0..4)
                .map(|t| {
                    let (service, junk) = (Arc::clone(&service), junk.clone());
                    tokio::spawn(async move {
                        for n in 0..2500 {
                            let body = &junk[(n + t) % junk.len()];
                            let e = service.add_checkpoint(body.as_bytes()).await.unwrap_err();
                            assert!(matches!(e, WitnessError::Refused(_)), "{e}");
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            assert_eq!(service.store().record_bytes(), bytes);
            assert_eq!(service.unsigned()[0].1, 5000);
        });
        let kept = service.evidence_of(ORIGIN).unwrap().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].kind, EvidenceKind::Fork);
        assert_eq!(kept[0].cosigned, cosigned);
        assert_eq!(kept[0].submitted, forked);
        assert_eq!(service.summary().evidence, [0, 1, 0]);
    }

    /// A store of an older version with alerts: the fork they prove becomes evidence (once,
    /// however often the witness starts); the rest is not carried over.
    #[test]
    fn forks_an_older_version_recorded_are_carried_over() {
        use crate::witness::store::{LegacyAlertKind, LegacyAlerts};

        let dir = tempfile::tempdir().unwrap();
        let mut a = Sim::new();
        a.grow(10);
        let mut f = a.forked();
        f.grow(10);
        let alert = |kind, size, submitted: String, recorded: Option<String>| LegacyAlert {
            kind,
            at: 1_700_000_000 + size,
            old_size: 10,
            size,
            recorded_size: Some(10),
            submitted,
            recorded,
        };
        let mut forged = SignedNote::parse(&f.note(10, f.root(10))).unwrap();
        forged.signatures[0].signature[0] ^= 1;
        let old = LegacyAlerts {
            counts: [1, 3, 0, 1],
            recent: vec![
                // A rollback (not provable without a proof), a fork, a "fork" whose
                // submitted note does not verify, the same fork again, a bad signature.
                alert(
                    LegacyAlertKind::Rollback,
                    5,
                    a.note(5, a.root(5)),
                    Some(a.note(10, a.root(10))),
                ),
                alert(
                    LegacyAlertKind::Fork,
                    10,
                    f.note(10, f.root(10)),
                    Some(a.note(10, a.root(10))),
                ),
                alert(
                    LegacyAlertKind::Fork,
                    10,
                    forged.format(),
                    Some(a.note(10, a.root(10))),
                ),
                alert(
                    LegacyAlertKind::Fork,
                    10,
                    f.note(10, f.root(10)),
                    Some(a.note(10, a.root(10))),
                ),
                alert(LegacyAlertKind::BadSignature, 10, forged.text.clone(), None),
            ],
        };
        {
            let store = crate::chain::store::Store::open(dir.path()).unwrap();
            let tree = store.tree("witness").unwrap();
            let mut k = vec![b's'];
            k.extend_from_slice(ORIGIN.as_bytes());
            tree.insert(k, state_of(&a.request(0, 10)).encode())
                .unwrap();
            let mut k = vec![b'a'];
            k.extend_from_slice(ORIGIN.as_bytes());
            tree.insert(k, old.encode()).unwrap();
            store.flush().unwrap();
        }
        let rt = rt();
        for _ in 0..2 {
            let (service, _hsm) = witness(dir.path(), &[&a]);
            let done = rt.block_on(service.carry_over_legacy_alerts()).unwrap();
            assert_eq!(
                done,
                CarriedOver {
                    alerts: 5,
                    evidence: 2
                }
            );
            let kept = service.evidence_of(ORIGIN).unwrap().unwrap();
            assert_eq!(kept.len(), 1);
            assert_eq!(kept[0].kind, EvidenceKind::Fork);
            assert_eq!(kept[0].seen_at, 1_700_000_010);
            assert_eq!(kept[0].submitted, f.note(10, f.root(10)));
            assert_eq!(kept[0].cosigned, a.note(10, a.root(10)));
            // It still cosigns from its state.
            a.grow(1);
            rt.block_on(service.add_checkpoint(a.body(a.size - 1, a.size).as_bytes()))
                .unwrap();
        }
    }
}
