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
use crate::signer::ed25519::ed25519_key_of;
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
        let public_key = ed25519_key_of(signer.public_key_der()).ok_or_else(|| {
            WitnessError::Identity("the witness key is not an Ed25519 key".into())
        })?;
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

    /// The time of the witness's clock, Unix seconds.
    pub fn now(&self) -> u64 {
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
                // A refusal (and the evidence it may carry) is decided on what is durable
                // now: another witness server sharing the store may have moved the log on.
                let current = self.store.current(origin).await?;
                if current.state != recorded {
                    recorded = current.state;
                    continue;
                }
                if let Some(latest) = &current.state {
                    self.keep_evidence(log, latest, &current.history, &req, &kept)
                        .await?;
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
    /// cosigned (`latest`, and the `history` before it), if any.
    async fn keep_evidence(
        &self,
        log: &RegisteredLog,
        latest: &LogState,
        history: &[LogState],
        req: &AddCheckpoint,
        kept: &str,
    ) -> Result<(), WitnessError> {
        let origin = log.origin.as_str();
        let cosigned = |size: u64| {
            std::iter::once(latest)
                .chain(history)
                .find(|s| s.size == size)
                .cloned()
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
            let alerts = match self.store.legacy_alerts(&log.origin).await {
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
    pub async fn evidence_of(&self, origin: &str) -> Option<Result<Vec<Evidence>, WitnessError>> {
        self.index.get(origin)?;
        Some(
            self.store
                .evidence(origin)
                .await
                .map_err(WitnessError::from),
        )
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

// Its simulated appliances and in-process witness serve the console's tests too.
#[cfg(test)]
pub(crate) mod tests;
