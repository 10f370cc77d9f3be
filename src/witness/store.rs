//! The witness's durable state in sled: for each registered log, the latest checkpoint it
//! cosigned, the few it cosigned before, and the evidence that the log signed checkpoints
//! that cannot all be true; written with group commit and a compare-and-swap per origin.
//!
//! Layout:
//! - tree `witness`:
//!   - `s` + origin → the latest cosigned checkpoint ([`LogState`], version 1: `0x01` · u64
//!     size · 32-byte root · u64 cosigned_at (Unix s) · u32 length + the checkpoint note:
//!     its text and the log's own signature line).
//!   - `c` + u32 origin length + origin + u64 size → an earlier cosigned checkpoint: the
//!     [`HISTORY`] most recent before the latest, replaced one by one as new ones are
//!     cosigned. Stored compactly (version 2: `0x02` · u64 size · 32-byte root · u64
//!     cosigned_at · u32 length + the checkpoint's extension lines · u32 length + the
//!     signature's key name, empty when it is the origin · 4-byte key id · u16 length +
//!     signature), the note being rebuilt from them and the origin byte for byte; or in
//!     the state's form when it could not be. They let the witness tell a replay of a checkpoint it
//!     cosigned (refused, nothing recorded) from a checkpoint of that size with another
//!     root (evidence), and prove a consistency proof from that size wrong.
//!   - `a` + origin → the alerts of versions before evidence records (counters and the
//!     last 16 refusals, some written by anyone who posted): read at start to carry the
//!     forks they prove over to evidence records, otherwise left as they are and never
//!     written.
//! - tree `witness-evidence`: u32 origin length + origin + 32-byte [`Evidence::id`] →
//!   [`Evidence`] (version 1, see [`Evidence::encode`]): two checkpoints signed by the
//!   log's key that cannot both be true, each kept as the log signed it. Never evicted
//!   nor rewritten; the same evidence submitted again is not stored again; at most
//!   [`MAX_EVIDENCE_PER_LOG`] per log (more are counted, not kept: a log whose key signs
//!   that many contradictions is proven compromised by the first).
//!
//! Nothing is written for a submission without a valid signature by the log's key: the
//! state of a log is bounded whatever anyone posts (one state, [`HISTORY`] earlier ones,
//! and evidence only the log's own key can make).
//!
//! Every log's state and history, and the ids and counts of its evidence, are kept in
//! memory (loaded at [`WitnessStore::open`]), so the checks never read sled. Writes go to
//! one committer thread. It takes every job waiting, checks each [`WitnessStore::replace`]
//! against the state it was decided on (the latest state in memory, or the one an earlier
//! job of the same batch wrote: a compare-and-swap per origin), writes what passed in one
//! batch per tree, flushes once, and only then publishes the new states in memory and
//! answers. A request that was checked against a state that changed meanwhile gets
//! [`Outcome::Moved`] with the current state, and is checked again: the check and the write
//! are one atomic step per origin, as c2sp.org/tlog-witness requires, without a lock held
//! across the flush. A failed flush answers every job of the batch with an error and
//! publishes nothing.
//!
//! Its one error type is [`WitnessStoreError`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crossbeam_channel::{Receiver, Sender};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::chain::note::{Checkpoint, NoteSignature, SignedNote};
use crate::chain::store::{Store, StoreError};
use crate::chain::tlog::Hash;

const TREE: &str = "witness";
const EVIDENCE_TREE: &str = "witness-evidence";
const STATE: u8 = b's';
const COSIGNED: u8 = b'c';
const LEGACY_ALERTS: u8 = b'a';
const VERSION: u8 = 1;
/// The compact form of an earlier cosigned checkpoint.
const COMPACT: u8 = 2;
/// Earlier cosigned checkpoints kept per log, besides the latest.
pub const HISTORY: usize = 4;
/// Evidence records kept per log (more are counted, not stored).
pub const MAX_EVIDENCE_PER_LOG: usize = 1000;
/// Evidence not kept (its log at [`MAX_EVIDENCE_PER_LOG`]) remembered per log since start,
/// so that the same submitted again is not counted again.
const MAX_NOT_KEPT_IDS: usize = 10_000;
/// Most jobs one commit takes (more wait for the next one).
const MAX_COMMIT_JOBS: usize = 10_000;
/// Domain separation of [`Evidence::id`].
const EVIDENCE_ID_CONTEXT: &[u8] = b"auditstamp witness evidence v1\n";

/// What can go wrong in the witness store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessStoreError {
    /// The database failed (a disk error, or the disk is full).
    #[error("witness storage: {0}")]
    Storage(#[from] sled::Error),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored value does not have its expected form: the store is damaged.
    #[error("witness store damaged: {0}")]
    Corrupt(String),
    /// The origin is not one of the logs the store was opened for.
    #[error("log {0:?} is not registered")]
    UnknownOrigin(String),
    /// The store was opened with an origin twice.
    #[error("log {0:?} is registered twice")]
    DuplicateOrigin(String),
    /// The committer has stopped (shutting down, or it could not start).
    #[error("the witness store is not accepting writes")]
    Stopped,
    /// A commit failed; nothing of it was acknowledged.
    #[error("not stored: {0}")]
    CommitFailed(String),
}

/// A checkpoint the witness cosigned for a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogState {
    /// Its tree size.
    pub size: u64,
    /// Its root hash.
    pub root: Hash,
    /// When it was cosigned (the cosignature's timestamp, Unix seconds).
    pub cosigned_at: u64,
    /// The checkpoint note: its text and the log's signature that verified.
    pub checkpoint: String,
}

impl LogState {
    /// The stored form (version 1; see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 8 + 32 + 8 + 4 + self.checkpoint.len());
        out.push(VERSION);
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.root);
        out.extend_from_slice(&self.cosigned_at.to_be_bytes());
        put_str(&mut out, &self.checkpoint);
        out
    }

    /// Reads [`Self::encode`]'s form.
    pub fn decode(bytes: &[u8]) -> Result<LogState, WitnessStoreError> {
        let bad = || WitnessStoreError::Corrupt("a log state record is damaged".into());
        let mut r = Reader(bytes);
        if r.u8().ok_or_else(bad)? != VERSION {
            return Err(WitnessStoreError::Corrupt(
                "a log state record has an unknown version".into(),
            ));
        }
        let state = LogState {
            size: r.u64().ok_or_else(bad)?,
            root: r.hash().ok_or_else(bad)?,
            cosigned_at: r.u64().ok_or_else(bad)?,
            checkpoint: r.string().ok_or_else(bad)?,
        };
        if !r.0.is_empty() {
            return Err(bad());
        }
        Ok(state)
    }
}

/// An earlier cosigned checkpoint's stored form: compact when the note can be rebuilt from
/// it byte for byte (see the module documentation), else [`LogState::encode`]'s.
fn encode_cosigned(state: &LogState, origin: &str) -> Vec<u8> {
    compact(state, origin).unwrap_or_else(|| state.encode())
}

fn compact(state: &LogState, origin: &str) -> Option<Vec<u8>> {
    let note = SignedNote::parse(&state.checkpoint).ok()?;
    let [sig] = note.signatures.as_slice() else {
        return None;
    };
    let head = Checkpoint {
        origin: origin.to_owned(),
        size: state.size,
        root: state.root,
        extensions: Vec::new(),
    }
    .body();
    let extensions = note.text.strip_prefix(&head)?;
    let name = if sig.name == origin { "" } else { &sig.name };
    let mut out = Vec::with_capacity(140);
    out.push(COMPACT);
    out.extend_from_slice(&state.size.to_be_bytes());
    out.extend_from_slice(&state.root);
    out.extend_from_slice(&state.cosigned_at.to_be_bytes());
    put_str(&mut out, extensions);
    put_str(&mut out, name);
    out.extend_from_slice(&sig.id);
    out.extend_from_slice(&u16::try_from(sig.signature.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&sig.signature);
    // Only what rebuilds exactly.
    (decode_cosigned(&out, origin).ok()? == *state).then_some(out)
}

/// Reads [`encode_cosigned`]'s forms.
fn decode_cosigned(bytes: &[u8], origin: &str) -> Result<LogState, WitnessStoreError> {
    if bytes.first() != Some(&COMPACT) {
        return LogState::decode(bytes);
    }
    let bad = || WitnessStoreError::Corrupt("a cosigned checkpoint record is damaged".into());
    let mut r = Reader(&bytes[1..]);
    let size = r.u64().ok_or_else(bad)?;
    let root = r.hash().ok_or_else(bad)?;
    let cosigned_at = r.u64().ok_or_else(bad)?;
    let extensions = r.string().ok_or_else(bad)?;
    let name = r.string().ok_or_else(bad)?;
    let id: [u8; 4] = r.take(4).and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
    let len = r
        .take(2)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_be_bytes)
        .ok_or_else(bad)?;
    let signature = r.take(usize::from(len)).ok_or_else(bad)?.to_vec();
    if !r.0.is_empty() {
        return Err(bad());
    }
    let mut text = Checkpoint {
        origin: origin.to_owned(),
        size,
        root,
        extensions: Vec::new(),
    }
    .body();
    text.push_str(&extensions);
    let name = if name.is_empty() {
        origin.to_owned()
    } else {
        name
    };
    let checkpoint = SignedNote {
        text,
        signatures: vec![NoteSignature {
            name,
            id,
            signature,
        }],
    }
    .format();
    Ok(LogState {
        size,
        root,
        cosigned_at,
        checkpoint,
    })
}

/// How two checkpoints signed by a log contradict each other, named after the submitted
/// one's size against the latest checkpoint the witness had cosigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvidenceKind {
    /// Smaller than the latest cosigned, and not part of the history the witness cosigned:
    /// another root than a checkpoint of its size the witness cosigned, or its consistency
    /// proof from a cosigned size leads to another root there. The log went back and grew
    /// another history.
    Rollback,
    /// The size of the latest cosigned, with another root.
    Fork,
    /// Larger than the latest cosigned, and its own consistency proof (the one submitted
    /// with it, which leads to its root) starts from another root at the cosigned size:
    /// its tree does not contain the cosigned one.
    BadProof,
}

impl EvidenceKind {
    /// Every kind, in the order of [`EvidenceCounts::counts`].
    pub const ALL: [EvidenceKind; 3] = [
        EvidenceKind::Rollback,
        EvidenceKind::Fork,
        EvidenceKind::BadProof,
    ];

    /// The kind's name: `rollback`, `fork` or `bad-proof`.
    pub fn name(self) -> &'static str {
        match self {
            EvidenceKind::Rollback => "rollback",
            EvidenceKind::Fork => "fork",
            EvidenceKind::BadProof => "bad-proof",
        }
    }

    fn index(self) -> usize {
        match self {
            EvidenceKind::Rollback => 0,
            EvidenceKind::Fork => 1,
            EvidenceKind::BadProof => 2,
        }
    }

    fn from_index(i: u8) -> Option<EvidenceKind> {
        EvidenceKind::ALL.get(usize::from(i)).copied()
    }
}

/// The id of an evidence record: SHA-256 of a context string and the two notes (each
/// u32 length-prefixed). The same two notes are the same evidence, however often, and with
/// whatever old size, they are submitted.
pub type EvidenceId = [u8; 32];

/// Two checkpoints signed by a log's key that cannot both be true: the evidence a witness
/// exists to catch. Anyone holding the log's verifier key can check it offline: both notes
/// verify; for [`EvidenceKind::Fork`] and some [`EvidenceKind::Rollback`]s the sizes are
/// equal and the roots differ; otherwise the consistency proof, from `cosigned_size` to
/// `size` (RFC 9162 §2.1.4.2, see [`crate::chain::tlog::consistency_proof_roots`]), leads to the
/// submitted root from another root than the cosigned one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// How they contradict each other.
    pub kind: EvidenceKind,
    /// When the witness first received it (Unix seconds).
    pub seen_at: u64,
    /// The size of the checkpoint the witness had cosigned.
    pub cosigned_size: u64,
    /// The checkpoint the witness had cosigned: its text and the log's signature line, as
    /// received when it was cosigned.
    pub cosigned: String,
    /// The size of the submitted checkpoint.
    pub size: u64,
    /// The submitted checkpoint: its text and the log's signature line that verified, byte
    /// for byte as received (signature lines by other keys, which anyone can add, are not
    /// kept).
    pub submitted: String,
    /// The old size of the submission.
    pub old_size: u64,
    /// The consistency proof that shows the contradiction (from `cosigned_size` to
    /// `size`); empty when the sizes are equal.
    pub proof: Vec<Hash>,
}

impl Evidence {
    /// Its id (see [`EvidenceId`]).
    pub fn id(&self) -> EvidenceId {
        let mut h = Sha256::new();
        h.update(EVIDENCE_ID_CONTEXT);
        for note in [&self.cosigned, &self.submitted] {
            h.update(u32::try_from(note.len()).unwrap_or(u32::MAX).to_be_bytes());
            h.update(note.as_bytes());
        }
        h.finalize().into()
    }

    /// The stored form (version 1): `0x01` · u8 kind · u64 seen_at · u64 cosigned size ·
    /// u64 size · u64 old size · u32 length + cosigned note · u32 length + submitted note ·
    /// u8 n · n 32-byte proof hashes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + self.cosigned.len() + self.submitted.len() + 32 * self.proof.len(),
        );
        out.push(VERSION);
        out.push(u8::try_from(self.kind.index()).unwrap_or(u8::MAX));
        for v in [self.seen_at, self.cosigned_size, self.size, self.old_size] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        put_str(&mut out, &self.cosigned);
        put_str(&mut out, &self.submitted);
        out.push(u8::try_from(self.proof.len()).unwrap_or(u8::MAX));
        for h in self.proof.iter().take(usize::from(u8::MAX)) {
            out.extend_from_slice(h);
        }
        out
    }

    /// Reads [`Self::encode`]'s form.
    pub fn decode(bytes: &[u8]) -> Result<Evidence, WitnessStoreError> {
        let bad = || WitnessStoreError::Corrupt("an evidence record is damaged".into());
        let mut r = Reader(bytes);
        if r.u8().ok_or_else(bad)? != VERSION {
            return Err(WitnessStoreError::Corrupt(
                "an evidence record has an unknown version".into(),
            ));
        }
        let kind = r.u8().and_then(EvidenceKind::from_index).ok_or_else(bad)?;
        let seen_at = r.u64().ok_or_else(bad)?;
        let cosigned_size = r.u64().ok_or_else(bad)?;
        let size = r.u64().ok_or_else(bad)?;
        let old_size = r.u64().ok_or_else(bad)?;
        let cosigned = r.string().ok_or_else(bad)?;
        let submitted = r.string().ok_or_else(bad)?;
        let n = r.u8().ok_or_else(bad)?;
        let mut proof = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            proof.push(r.hash().ok_or_else(bad)?);
        }
        if !r.0.is_empty() {
            return Err(bad());
        }
        Ok(Evidence {
            kind,
            seen_at,
            cosigned_size,
            cosigned,
            size,
            submitted,
            old_size,
            proof,
        })
    }
}

/// An evidence record as read from the store, with its origin: the record, or why it
/// cannot be read.
pub type StoredEvidence = (String, Result<Evidence, WitnessStoreError>);

/// A log's evidence records, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvidenceCounts {
    counts: [u64; 3],
    /// Evidence received since start that was not kept because the log already had
    /// [`MAX_EVIDENCE_PER_LOG`] records, each counted once however often it is submitted.
    pub not_kept: u64,
    /// Evidence records on disk that could not be read when the witness started (a damaged
    /// store): counted and reported, never silently left out.
    pub damaged: u64,
}

impl EvidenceCounts {
    /// Records of `kind` kept.
    pub fn count(&self, kind: EvidenceKind) -> u64 {
        self.counts[kind.index()]
    }

    /// Records kept.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0, |a, c| a.saturating_add(*c))
    }

    fn add(&mut self, kind: EvidenceKind) {
        let c = &mut self.counts[kind.index()];
        *c = c.saturating_add(1);
    }
}

/// What an alert of an older version was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegacyAlertKind {
    /// `rollback`.
    Rollback,
    /// `fork`.
    Fork,
    /// `bad-proof`.
    BadProof,
    /// `bad-signature`.
    BadSignature,
}

impl LegacyAlertKind {
    const ALL: [LegacyAlertKind; 4] = [
        LegacyAlertKind::Rollback,
        LegacyAlertKind::Fork,
        LegacyAlertKind::BadProof,
        LegacyAlertKind::BadSignature,
    ];

    /// The kind's name: `rollback`, `fork`, `bad-proof` or `bad-signature`.
    pub fn name(self) -> &'static str {
        match self {
            LegacyAlertKind::Rollback => "rollback",
            LegacyAlertKind::Fork => "fork",
            LegacyAlertKind::BadProof => "bad-proof",
            LegacyAlertKind::BadSignature => "bad-signature",
        }
    }
}

/// One refused submission an older version recorded as an alert. Its notes were not all
/// checked (a `bad-signature` alert was written for anyone's post), so it is only a lead:
/// what it proves is carried over as [`Evidence`] by the witness, which checks it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyAlert {
    /// What it was.
    pub kind: LegacyAlertKind,
    /// When (Unix seconds).
    pub at: u64,
    /// The old size the request named.
    pub old_size: u64,
    /// The submitted checkpoint's size.
    pub size: u64,
    /// The size the witness had recorded then, if any.
    pub recorded_size: Option<u64>,
    /// The submitted checkpoint note (its text and the signature lines in the log's name).
    pub submitted: String,
    /// The checkpoint note the witness had recorded then, if any.
    pub recorded: Option<String>,
}

/// A log's alerts as older versions stored them (`a` + origin): a counter per kind and the
/// last 16.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacyAlerts {
    /// Alerts ever recorded, by kind (rollback, fork, bad-proof, bad-signature).
    pub counts: [u64; 4],
    /// The kept alerts, oldest first.
    pub recent: Vec<LegacyAlert>,
}

impl LegacyAlerts {
    /// The form older versions wrote (version 1): `0x01` · 4 × u64 counts · u8 n · n
    /// alerts, each u8 kind · u64 at · u64 old size · u64 size · u8 has-recorded-size · u64
    /// recorded size · u32 length + submitted · u8 has-recorded · u32 length + recorded.
    /// (Only tests write it now.)
    #[cfg(test)]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        for c in self.counts {
            out.extend_from_slice(&c.to_be_bytes());
        }
        out.push(u8::try_from(self.recent.len()).unwrap_or(u8::MAX));
        for a in self.recent.iter().take(usize::from(u8::MAX)) {
            let kind = LegacyAlertKind::ALL
                .iter()
                .position(|k| *k == a.kind)
                .unwrap_or(0);
            out.push(u8::try_from(kind).unwrap_or(u8::MAX));
            for v in [a.at, a.old_size, a.size] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            out.push(u8::from(a.recorded_size.is_some()));
            out.extend_from_slice(&a.recorded_size.unwrap_or(0).to_be_bytes());
            put_str(&mut out, &a.submitted);
            out.push(u8::from(a.recorded.is_some()));
            put_str(&mut out, a.recorded.as_deref().unwrap_or(""));
        }
        out
    }

    /// Reads [`Self::encode`]'s form.
    pub fn decode(bytes: &[u8]) -> Result<LegacyAlerts, WitnessStoreError> {
        let bad = || WitnessStoreError::Corrupt("an alerts record is damaged".into());
        let mut r = Reader(bytes);
        if r.u8().ok_or_else(bad)? != VERSION {
            return Err(WitnessStoreError::Corrupt(
                "an alerts record has an unknown version".into(),
            ));
        }
        let mut counts = [0u64; 4];
        for c in &mut counts {
            *c = r.u64().ok_or_else(bad)?;
        }
        let n = r.u8().ok_or_else(bad)?;
        let mut recent = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let kind = r
                .u8()
                .and_then(|i| LegacyAlertKind::ALL.get(usize::from(i)).copied())
                .ok_or_else(bad)?;
            let (at, old_size, size) = (
                r.u64().ok_or_else(bad)?,
                r.u64().ok_or_else(bad)?,
                r.u64().ok_or_else(bad)?,
            );
            let has_size = r.u8().ok_or_else(bad)? == 1;
            let recorded_size = r.u64().ok_or_else(bad)?;
            let submitted = r.string().ok_or_else(bad)?;
            let has_recorded = r.u8().ok_or_else(bad)? == 1;
            let recorded = r.string().ok_or_else(bad)?;
            recent.push(LegacyAlert {
                kind,
                at,
                old_size,
                size,
                recorded_size: has_size.then_some(recorded_size),
                submitted,
                recorded: has_recorded.then_some(recorded),
            });
        }
        if !r.0.is_empty() {
            return Err(bad());
        }
        Ok(LegacyAlerts { counts, recent })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Reads big-endian fields off the front of a byte string.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
    }
    fn hash(&mut self) -> Option<Hash> {
        self.take(32).and_then(|b| b.try_into().ok())
    }
    fn string(&mut self) -> Option<String> {
        let len = self.u32()?;
        let bytes = self.take(usize::try_from(len).ok()?)?;
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// A log's record (a copy of what the store holds in memory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogRecord {
    /// The latest cosigned checkpoint (none before the first).
    pub state: Option<LogState>,
    /// The earlier cosigned checkpoints kept, oldest first (at most [`HISTORY`]).
    pub history: Vec<LogState>,
    /// Its evidence records, counted.
    pub evidence: EvidenceCounts,
}

/// A log's record in memory.
#[derive(Debug, Default)]
struct Memory {
    state: Option<LogState>,
    /// Oldest first, sizes increasing.
    history: VecDeque<LogState>,
    evidence_ids: HashSet<EvidenceId>,
    evidence: EvidenceCounts,
    /// Evidence not kept since start (the log at its cap), so that each is counted once.
    not_kept_ids: HashSet<EvidenceId>,
}

/// The state a caller checked a request against: the size and root of the latest
/// checkpoint, or `None` when there was none.
pub type Expected = Option<(u64, Hash)>;

/// How a [`WitnessStore::replace`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new state is durable.
    Stored,
    /// The state was not the expected one any more; nothing was written. Here is the
    /// current (durable) one, to check the request against again.
    Moved(Option<LogState>),
}

/// How a [`WitnessStore::record_evidence`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceOutcome {
    /// A new record, durable.
    Stored,
    /// The same evidence was already kept; nothing was written.
    AlreadyKept,
    /// The log already has [`MAX_EVIDENCE_PER_LOG`] records; counted, not kept.
    Full,
}

enum Op {
    Replace {
        log: usize,
        expected: Expected,
        new: LogState,
    },
    Evidence {
        log: usize,
        evidence: Box<Evidence>,
    },
}

enum Answer {
    Replace(Outcome),
    Evidence(EvidenceOutcome),
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Answer, WitnessStoreError>>,
}

struct Shared {
    db: sled::Db,
    tree: sled::Tree,
    evidence: sled::Tree,
    index: HashMap<String, usize>,
    origins: Vec<String>,
    /// Durable records, published by the committer after each flush.
    records: Vec<Mutex<Memory>>,
    /// Origins with state in the store that are not registered (kept, not served).
    unregistered: usize,
    /// Bytes of the records' keys and values ([`WitnessStore::record_bytes`]): counted
    /// at open, then kept by the committer as it writes.
    record_bytes: AtomicU64,
}

impl Shared {
    fn lock(&self, log: usize) -> Option<MutexGuard<'_, Memory>> {
        self.records
            .get(log)
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The witness's store. Cheap to clone; the committer stops when the last clone is dropped,
/// after finishing what it was given.
#[derive(Clone)]
pub struct WitnessStore {
    shared: Arc<Shared>,
    jobs: Sender<Job>,
    committer: Arc<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for WitnessStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WitnessStore")
            .field("logs", &self.shared.origins.len())
            .finish_non_exhaustive()
    }
}

fn key(prefix: u8, origin: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + origin.len());
    k.push(prefix);
    k.extend_from_slice(origin.as_bytes());
    k
}

/// u32 length + origin: the start of a history or an evidence key.
fn origin_prefix(origin: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + origin.len() + 40);
    k.extend_from_slice(
        &u32::try_from(origin.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    k.extend_from_slice(origin.as_bytes());
    k
}

fn history_prefix(origin: &str) -> Vec<u8> {
    let mut k = vec![COSIGNED];
    k.extend_from_slice(&origin_prefix(origin));
    k
}

fn history_key(origin: &str, size: u64) -> Vec<u8> {
    let mut k = history_prefix(origin);
    k.extend_from_slice(&size.to_be_bytes());
    k
}

fn evidence_key(origin: &str, id: &EvidenceId) -> Vec<u8> {
    let mut k = origin_prefix(origin);
    k.extend_from_slice(id);
    k
}

/// The origin of a `u32 length + origin + ...` key.
fn origin_of_prefixed(k: &[u8]) -> Option<String> {
    let mut r = Reader(k);
    let len = usize::try_from(r.u32()?).ok()?;
    r.take(len).map(|o| String::from_utf8_lossy(o).into_owned())
}

impl WitnessStore {
    /// Opens the witness's trees in `store` for the logs `origins`, loads their records
    /// into memory and starts the committer thread. Records of other origins stay in the
    /// store, untouched (a log removed from the configuration keeps its state and
    /// evidence should it return).
    pub fn open(store: &Store, origins: &[String]) -> Result<WitnessStore, WitnessStoreError> {
        let tree = store.tree(TREE)?;
        let evidence = store.tree(EVIDENCE_TREE)?;
        let mut index = HashMap::with_capacity(origins.len());
        for (i, o) in origins.iter().enumerate() {
            if index.insert(o.clone(), i).is_some() {
                return Err(WitnessStoreError::DuplicateOrigin(o.clone()));
            }
        }
        let mut records = Vec::with_capacity(origins.len());
        for origin in origins {
            let damaged =
                |e: WitnessStoreError| WitnessStoreError::Corrupt(format!("log {origin:?}: {e}"));
            let state = tree
                .get(key(STATE, origin))?
                .map(|v| LogState::decode(&v))
                .transpose()
                .map_err(damaged)?;
            let mut history = VecDeque::new();
            for kv in tree.scan_prefix(history_prefix(origin)) {
                let (_, v) = kv?;
                history.push_back(decode_cosigned(&v, origin).map_err(damaged)?);
            }
            let mut memory = Memory {
                state,
                history,
                ..Memory::default()
            };
            for kv in evidence.scan_prefix(origin_prefix(origin)) {
                let (k, v) = kv?;
                match Evidence::decode(&v) {
                    Ok(e) => {
                        memory.evidence.add(e.kind);
                        if let Some(id) = k.get(k.len().saturating_sub(32)..) {
                            if let Ok(id) = id.try_into() {
                                memory.evidence_ids.insert(id);
                            }
                        }
                    }
                    // Not fatal: the witness keeps watching (the same evidence submitted
                    // again is stored in its place), and reports the damage in /status
                    // and /metrics.
                    Err(e) => {
                        memory.evidence.damaged = memory.evidence.damaged.saturating_add(1);
                        tracing::error!(%origin, error = %e, "a damaged evidence record");
                    }
                }
            }
            records.push(Mutex::new(memory));
        }
        let mut others = HashSet::new();
        for kv in tree.iter() {
            let (k, _) = kv?;
            let origin = match k.first() {
                Some(&COSIGNED) => k.get(1..).and_then(origin_of_prefixed),
                Some(_) => k.get(1..).map(|o| String::from_utf8_lossy(o).into_owned()),
                None => None,
            };
            others.extend(origin.filter(|o| !index.contains_key(o)));
        }
        for kv in evidence.iter() {
            let (k, _) = kv?;
            others.extend(origin_of_prefixed(&k).filter(|o| !index.contains_key(o)));
        }
        let record_bytes = count_record_bytes(&tree, &evidence)?;
        let shared = Arc::new(Shared {
            db: store.db().clone(),
            tree,
            evidence,
            index,
            origins: origins.to_vec(),
            records,
            unregistered: others.len(),
            record_bytes: AtomicU64::new(record_bytes),
        });
        let (jobs, rx) = crossbeam_channel::unbounded();
        let for_committer = Arc::clone(&shared);
        let committer = std::thread::Builder::new()
            .name("witness-commit".into())
            .spawn(move || run(&for_committer, &rx))
            .map_err(|e| {
                WitnessStoreError::CommitFailed(format!("cannot start the committer: {e}"))
            })?;
        Ok(WitnessStore {
            shared,
            jobs,
            committer: Arc::new(committer),
        })
    }

    /// The registered origins, in the order given to [`Self::open`].
    pub fn origins(&self) -> &[String] {
        &self.shared.origins
    }

    /// How many origins have records in the store without being registered.
    pub fn unregistered(&self) -> usize {
        self.shared.unregistered
    }

    fn log(&self, origin: &str) -> Result<usize, WitnessStoreError> {
        self.shared
            .index
            .get(origin)
            .copied()
            .ok_or_else(|| WitnessStoreError::UnknownOrigin(origin.to_owned()))
    }

    /// The durable record of `origin` (a copy).
    pub fn record(&self, origin: &str) -> Result<LogRecord, WitnessStoreError> {
        let log = self.log(origin)?;
        Ok(self
            .shared
            .lock(log)
            .map(|m| LogRecord {
                state: m.state.clone(),
                history: m.history.iter().cloned().collect(),
                evidence: m.evidence,
            })
            .unwrap_or_default())
    }

    /// The latest durable cosigned checkpoint of `origin`.
    pub fn latest(&self, origin: &str) -> Result<Option<LogState>, WitnessStoreError> {
        let log = self.log(origin)?;
        Ok(self.shared.lock(log).and_then(|r| r.state.clone()))
    }

    /// The evidence records of `origin`, counted.
    pub fn evidence_counts(&self, origin: &str) -> Result<EvidenceCounts, WitnessStoreError> {
        let log = self.log(origin)?;
        Ok(self
            .shared
            .lock(log)
            .map(|m| m.evidence)
            .unwrap_or_default())
    }

    /// The checkpoint of `size` the witness cosigned for `origin`, if it is the latest or
    /// one of the [`HISTORY`] before it.
    pub fn cosigned(&self, origin: &str, size: u64) -> Result<Option<LogState>, WitnessStoreError> {
        let log = self.log(origin)?;
        Ok(self.shared.lock(log).and_then(|m| {
            m.state
                .iter()
                .chain(m.history.iter())
                .find(|s| s.size == size)
                .cloned()
        }))
    }

    /// The evidence records of `origin`, oldest first (read from disk).
    pub fn evidence(&self, origin: &str) -> Result<Vec<Evidence>, WitnessStoreError> {
        self.log(origin)?;
        let mut out = Vec::new();
        for kv in self.shared.evidence.scan_prefix(origin_prefix(origin)) {
            let (_, v) = kv?;
            match Evidence::decode(&v) {
                Ok(e) => out.push(e),
                Err(e) => tracing::error!(%origin, error = %e, "a damaged evidence record"),
            }
        }
        out.sort_by_key(|e| e.seen_at);
        Ok(out)
    }

    /// Every evidence record in the store, registered origin or not, by origin then oldest
    /// first; damaged records are reported as errors beside them.
    pub fn all_evidence(&self) -> Result<Vec<StoredEvidence>, WitnessStoreError> {
        let mut out = Vec::new();
        for kv in self.shared.evidence.iter() {
            let (k, v) = kv?;
            let origin = origin_of_prefixed(&k).unwrap_or_default();
            out.push((origin, Evidence::decode(&v)));
        }
        out.sort_by(|(a, x), (b, y)| {
            let at = |e: &Result<Evidence, _>| e.as_ref().map_or(0, |e| e.seen_at);
            a.cmp(b).then(at(x).cmp(&at(y)))
        });
        Ok(out)
    }

    /// The alerts an older version recorded for `origin`, if any (read from disk).
    pub fn legacy_alerts(&self, origin: &str) -> Result<Option<LegacyAlerts>, WitnessStoreError> {
        self.log(origin)?;
        self.shared
            .tree
            .get(key(LEGACY_ALERTS, origin))?
            .map(|v| LegacyAlerts::decode(&v))
            .transpose()
    }

    async fn submit(&self, op: Op) -> Result<Answer, WitnessStoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { op, reply })
            .map_err(|_| WitnessStoreError::Stopped)?;
        answer.await.map_err(|_| WitnessStoreError::Stopped)?
    }

    /// Makes `new` the latest state of `origin` if its current state is still `expected`
    /// (compare-and-swap), durably; returns once it is on disk, or [`Outcome::Moved`]. The
    /// state it replaces joins the history (unless `new` has its size).
    pub async fn replace(
        &self,
        origin: &str,
        expected: Expected,
        new: LogState,
    ) -> Result<Outcome, WitnessStoreError> {
        let log = self.log(origin)?;
        match self.submit(Op::Replace { log, expected, new }).await? {
            Answer::Replace(o) => Ok(o),
            Answer::Evidence(_) => Err(WitnessStoreError::CommitFailed(
                "the committer answered another question".into(),
            )),
        }
    }

    /// Keeps `evidence` about `origin`, durably, unless the same is kept already (answered
    /// from memory, nothing written) or the log has [`MAX_EVIDENCE_PER_LOG`] records.
    pub async fn record_evidence(
        &self,
        origin: &str,
        evidence: Evidence,
    ) -> Result<EvidenceOutcome, WitnessStoreError> {
        let log = self.log(origin)?;
        let id = evidence.id();
        if let Some(m) = self.shared.lock(log) {
            if m.evidence_ids.contains(&id) {
                return Ok(EvidenceOutcome::AlreadyKept);
            }
        }
        let evidence = Box::new(evidence);
        match self.submit(Op::Evidence { log, evidence }).await? {
            Answer::Evidence(o) => Ok(o),
            Answer::Replace(_) => Err(WitnessStoreError::CommitFailed(
                "the committer answered another question".into(),
            )),
        }
    }

    /// Bytes the database occupies on disk (sled's own count).
    pub fn disk_bytes(&self) -> Result<u64, WitnessStoreError> {
        Ok(self.shared.db.size_on_disk()?)
    }

    /// Bytes of the witness's keys and values (what the state is, before sled's overhead),
    /// as of the last commit: counted at open and kept up to date by each commit, so that
    /// `/metrics`, which anyone may scrape, reads a number rather than every record.
    pub fn record_bytes(&self) -> u64 {
        self.shared.record_bytes.load(Ordering::Relaxed)
    }

    /// Checks that the store answers reads and the committer runs (readiness probe).
    pub fn health(&self) -> Result<(), WitnessStoreError> {
        if self.committer.is_finished() {
            return Err(WitnessStoreError::Stopped);
        }
        self.shared.tree.first()?;
        Ok(())
    }
}

/// The committer: takes the jobs waiting (at least one) and commits them together, until
/// every [`WitnessStore`] is gone.
fn run(shared: &Shared, rx: &Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_COMMIT_JOBS {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        commit(shared, jobs);
    }
}

/// A log's changes within one batch.
struct Pending {
    /// The state as the batch leaves it (starts as the durable one), and the durable one.
    state: Option<LogState>,
    state_before: Option<LogState>,
    state_changed: bool,
    /// The history as the batch leaves it, and the durable one by size.
    history: VecDeque<LogState>,
    history_before: BTreeMap<u64, LogState>,
    evidence: Vec<(EvidenceId, Evidence)>,
    /// Evidence not kept (the log at its cap), each counted once.
    not_kept: Vec<EvidenceId>,
}

impl Pending {
    fn of(shared: &Shared, log: usize) -> Pending {
        let (state, history) = shared
            .lock(log)
            .map(|m| (m.state.clone(), m.history.clone()))
            .unwrap_or_default();
        Pending {
            history_before: history.iter().map(|s| (s.size, s.clone())).collect(),
            state_before: state.clone(),
            state,
            state_changed: false,
            history,
            evidence: Vec::new(),
            not_kept: Vec::new(),
        }
    }

    /// `new` replaces the state; the old state joins the history if `new` is larger.
    fn replace(&mut self, new: LogState) {
        if let Some(old) = self.state.take() {
            if new.size > old.size {
                self.history.push_back(old);
            }
        }
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
        self.state = Some(new);
        self.state_changed = true;
    }
}

/// Bytes of the keys and values in `trees` (the witness's records), read one by one.
fn count_record_bytes(tree: &sled::Tree, evidence: &sled::Tree) -> Result<u64, WitnessStoreError> {
    let mut total = 0u64;
    for tree in [tree, evidence] {
        for kv in tree.iter() {
            let (k, v) = kv?;
            total += (k.len() + v.len()) as u64;
        }
    }
    Ok(total)
}

/// Decides every job against the durable state and the batch's own earlier changes, writes
/// the changes in one batch per tree (evidence first: a failure between the two leaves at
/// most evidence that is written again), flushes, publishes them and answers.
fn commit(shared: &Shared, jobs: Vec<Job>) {
    let mut pending: HashMap<usize, Pending> = HashMap::new();
    let mut answers = Vec::with_capacity(jobs.len());
    for Job { op, reply } in jobs {
        let answer = match op {
            Op::Replace { log, expected, new } => {
                let p = pending
                    .entry(log)
                    .or_insert_with(|| Pending::of(shared, log));
                if p.state.as_ref().map(|s| (s.size, s.root)) == expected {
                    p.replace(new);
                    Answer::Replace(Outcome::Stored)
                } else {
                    Answer::Replace(Outcome::Moved(p.state.clone()))
                }
            }
            Op::Evidence { log, evidence } => {
                let p = pending
                    .entry(log)
                    .or_insert_with(|| Pending::of(shared, log));
                let id = evidence.id();
                let (kept, total, counted) = shared
                    .lock(log)
                    .map(|m| {
                        (
                            m.evidence_ids.contains(&id),
                            m.evidence.total(),
                            m.not_kept_ids.contains(&id),
                        )
                    })
                    .unwrap_or_default();
                if kept || p.evidence.iter().any(|(i, _)| *i == id) {
                    Answer::Evidence(EvidenceOutcome::AlreadyKept)
                } else if total + p.evidence.len() as u64 >= MAX_EVIDENCE_PER_LOG as u64 {
                    if !counted && !p.not_kept.contains(&id) {
                        p.not_kept.push(id);
                    }
                    Answer::Evidence(EvidenceOutcome::Full)
                } else {
                    p.evidence.push((id, *evidence));
                    Answer::Evidence(EvidenceOutcome::Stored)
                }
            }
        };
        answers.push((reply, answer));
    }
    let mut batch = sled::Batch::default();
    let mut evidence_batch = sled::Batch::default();
    let (mut writes, mut evidence_writes) = (0usize, 0usize);
    // Record bytes added and removed by this commit.
    let (mut added, mut removed) = (0u64, 0u64);
    let len = |k: &[u8], v: &[u8]| (k.len() + v.len()) as u64;
    for (log, p) in &pending {
        let Some(origin) = shared.origins.get(*log) else {
            continue;
        };
        if let (true, Some(s)) = (p.state_changed, &p.state) {
            let (k, v) = (key(STATE, origin), s.encode());
            added += len(&k, &v);
            if let Some(old) = &p.state_before {
                removed += len(&k, &old.encode());
            }
            batch.insert(k, v);
            writes += 1;
        }
        let after: BTreeSet<u64> = p.history.iter().map(|s| s.size).collect();
        for s in &p.history {
            if !p.history_before.contains_key(&s.size) {
                let (k, v) = (history_key(origin, s.size), encode_cosigned(s, origin));
                added += len(&k, &v);
                batch.insert(k, v);
                writes += 1;
            }
        }
        for (size, old) in &p.history_before {
            if !after.contains(size) {
                let k = history_key(origin, *size);
                removed += len(&k, &encode_cosigned(old, origin));
                batch.remove(k);
                writes += 1;
            }
        }
        for (id, e) in &p.evidence {
            let (k, v) = (evidence_key(origin, id), e.encode());
            added += len(&k, &v);
            evidence_batch.insert(k, v);
            evidence_writes += 1;
        }
    }
    if writes + evidence_writes > 0 {
        let written = (if evidence_writes > 0 {
            shared.evidence.apply_batch(evidence_batch)
        } else {
            Ok(())
        })
        .and_then(|()| shared.tree.apply_batch(batch))
        .and_then(|()| shared.db.flush().map(|_| ()));
        if let Err(e) = written {
            tracing::error!(error = %e, jobs = answers.len(), "witness commit failed; nothing acknowledged");
            let text = e.to_string();
            for (reply, _) in answers {
                let _ = reply.send(Err(WitnessStoreError::CommitFailed(text.clone())));
            }
            return;
        }
        // Only the committer writes the count.
        let bytes = &shared.record_bytes;
        let now = bytes.load(Ordering::Relaxed).saturating_add(added);
        bytes.store(now.saturating_sub(removed), Ordering::Relaxed);
    }
    for (log, p) in pending {
        if let Some(mut m) = shared.lock(log) {
            if p.state_changed {
                m.state = p.state;
                m.history = p.history;
            }
            for (id, e) in p.evidence {
                m.evidence_ids.insert(id);
                m.evidence.add(e.kind);
            }
            for id in p.not_kept {
                // The ids remembered are bounded; past that, a repeat is counted again.
                if m.not_kept_ids.len() < MAX_NOT_KEPT_IDS {
                    m.not_kept_ids.insert(id);
                }
                m.evidence.not_kept = m.evidence.not_kept.saturating_add(1);
            }
        }
    }
    for (reply, answer) in answers {
        // A caller that went away does not need its answer.
        let _ = reply.send(Ok(answer));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::chain::store::reopen_in_process;

    fn state(size: u64, root: u8) -> LogState {
        LogState {
            size,
            root: [root; 32],
            cosigned_at: 1_700_000_000 + size,
            checkpoint: format!("log\n{size}\nroot{root}\n\n\u{2014} log AAAA\n"),
        }
    }

    fn evidence(kind: EvidenceKind, n: u64) -> Evidence {
        Evidence {
            kind,
            seen_at: 1_700_000_000 + n,
            cosigned_size: n,
            cosigned: format!("cosigned {n:08}"),
            size: n + 1,
            submitted: format!("submitted {n:08}"),
            old_size: n,
            proof: (0..(n % 4)).map(|i| [i as u8; 32]).collect(),
        }
    }

    fn legacy(kind: LegacyAlertKind, n: u64) -> LegacyAlert {
        LegacyAlert {
            kind,
            at: n,
            old_size: n,
            size: n + 1,
            recorded_size: n.is_multiple_of(2).then_some(n),
            submitted: format!("submitted {n:08}"),
            recorded: n.is_multiple_of(3).then(|| format!("recorded {n:08}")),
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap()
    }

    fn origins(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("log-{i}.example/chain")).collect()
    }

    #[test]
    fn records_encode_and_decode_strictly() {
        let s = state(42, 7);
        assert_eq!(LogState::decode(&s.encode()).unwrap(), s);
        let enc = s.encode();
        for cut in 0..enc.len() {
            assert!(LogState::decode(&enc[..cut]).is_err(), "{cut}");
        }
        let mut long = enc.clone();
        long.push(0);
        assert!(LogState::decode(&long).is_err());
        let mut v2 = enc;
        v2[0] = 2;
        assert!(LogState::decode(&v2).is_err());

        for (i, kind) in EvidenceKind::ALL.into_iter().enumerate() {
            let e = evidence(kind, 3 + i as u64);
            let enc = e.encode();
            assert_eq!(Evidence::decode(&enc).unwrap(), e);
            for cut in 0..enc.len() {
                assert!(Evidence::decode(&enc[..cut]).is_err(), "{cut}");
            }
            let mut bad_kind = enc.clone();
            bad_kind[1] = 3;
            assert!(Evidence::decode(&bad_kind).is_err());
        }
        // The id is the two notes: not the kind, the time, the sizes or the proof.
        let a = evidence(EvidenceKind::Fork, 4);
        let mut b = a.clone();
        (b.kind, b.seen_at, b.old_size, b.proof) = (EvidenceKind::BadProof, 9, 0, vec![]);
        assert_eq!(a.id(), b.id());
        b.submitted.push('x');
        assert_ne!(a.id(), b.id());
        // The notes are length-prefixed: moving bytes from one to the other changes the id.
        let mut c = a.clone();
        c.cosigned.push('s');
        c.submitted.remove(0);
        assert_ne!(a.id(), c.id());

        let mut old = LegacyAlerts::default();
        for n in 0..5 {
            old.counts[n as usize % 4] += 1;
            old.recent
                .push(legacy(LegacyAlertKind::ALL[n as usize % 4], n));
        }
        assert_eq!(LegacyAlerts::decode(&old.encode()).unwrap(), old);
        let enc = old.encode();
        for cut in 0..enc.len() {
            assert!(LegacyAlerts::decode(&enc[..cut]).is_err(), "{cut}");
        }
    }

    /// The record bytes kept by the committer are those a recount finds, after states
    /// replaced past the history's length (history records written and removed), evidence
    /// added, and a reopen; concurrent replaces share commits.
    #[test]
    fn record_bytes_are_kept_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let o = origins(3);
        let recount =
            |w: &WitnessStore| count_record_bytes(&w.shared.tree, &w.shared.evidence).unwrap();
        {
            let store = reopen_in_process(dir.path());
            let w = WitnessStore::open(&store, &o).unwrap();
            assert_eq!(w.record_bytes(), 0);
            let mut previous = None;
            // Sizes with more digits as they go: the values' lengths change.
            for (i, size) in [1u64, 9, 10, 99, 100, 1000, 10_000, 100_000]
                .into_iter()
                .enumerate()
            {
                let next = state(size, i as u8);
                let r = rt
                    .block_on(w.replace(&o[0], previous, next.clone()))
                    .unwrap();
                assert_eq!(r, Outcome::Stored);
                previous = Some((next.size, next.root));
                assert_eq!(w.record_bytes(), recount(&w), "after size {size}");
            }
            rt.block_on(async {
                let tasks: Vec<_> = (1..=20u64)
                    .map(|n| {
                        let (w, o) = (w.clone(), o[1].clone());
                        tokio::spawn(async move {
                            // Each against "nothing": one is stored, the rest moved.
                            w.replace(&o, None, state(n, n as u8)).await.unwrap()
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            });
            for n in 0..3 {
                let r = rt
                    .block_on(w.record_evidence(&o[2], evidence(EvidenceKind::Rollback, n)))
                    .unwrap();
                assert_eq!(r, EvidenceOutcome::Stored);
            }
            assert_eq!(w.record_bytes(), recount(&w));
        }
        let store = reopen_in_process(dir.path());
        let w = WitnessStore::open(&store, &o[1..]).unwrap();
        let before = w.record_bytes();
        assert_eq!(
            before,
            recount(&w),
            "unregistered origins' records count too"
        );
        let r = rt.block_on(w.replace(&o[2], None, state(3, 3))).unwrap();
        assert_eq!(r, Outcome::Stored);
        assert!(w.record_bytes() > before);
        assert_eq!(w.record_bytes(), recount(&w));
    }

    #[test]
    fn replace_is_a_compare_and_swap_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let o = origins(2);
        {
            let store = reopen_in_process(dir.path());
            let w = WitnessStore::open(&store, &o).unwrap();
            assert_eq!(w.latest(&o[0]).unwrap(), None);
            assert!(matches!(
                w.latest("other"),
                Err(WitnessStoreError::UnknownOrigin(_))
            ));
            let r = rt.block_on(w.replace(&o[0], None, state(5, 1))).unwrap();
            assert_eq!(r, Outcome::Stored);
            // Checked against "nothing" again: moved, with the current state.
            let r = rt.block_on(w.replace(&o[0], None, state(6, 2))).unwrap();
            assert_eq!(r, Outcome::Moved(Some(state(5, 1))));
            // Against the right size but another root: moved.
            let r = rt
                .block_on(w.replace(&o[0], Some((5, [9; 32])), state(6, 2)))
                .unwrap();
            assert!(matches!(r, Outcome::Moved(_)));
            let r = rt
                .block_on(w.replace(&o[0], Some((5, [1; 32])), state(9, 3)))
                .unwrap();
            assert_eq!(r, Outcome::Stored);
            let r = rt
                .block_on(w.record_evidence(&o[1], evidence(EvidenceKind::Rollback, 3)))
                .unwrap();
            assert_eq!(r, EvidenceOutcome::Stored);
            assert_eq!(w.latest(&o[0]).unwrap(), Some(state(9, 3)));
            assert!(w.record_bytes() > 0);
            w.health().unwrap();
        }
        // Another registration: o[1] still there, o[0] kept on disk but not loaded.
        let store = reopen_in_process(dir.path());
        let w = WitnessStore::open(&store, &o[1..]).unwrap();
        assert_eq!(w.unregistered(), 1);
        let rec = w.record(&o[1]).unwrap();
        assert_eq!(rec.state, None);
        assert_eq!(rec.evidence.count(EvidenceKind::Rollback), 1);
        assert_eq!(w.all_evidence().unwrap().len(), 1);
        drop(w);
        drop(store);
        let store = reopen_in_process(dir.path());
        let w = WitnessStore::open(&store, &o).unwrap();
        assert_eq!(w.latest(&o[0]).unwrap(), Some(state(9, 3)));
        assert_eq!(w.cosigned(&o[0], 5).unwrap(), Some(state(5, 1)));
        assert_eq!(w.unregistered(), 0);
    }

    /// The latest state and the `HISTORY` before it are kept, on disk and in memory; a
    /// checkpoint cosigned again at the same size does not enter the history twice.
    #[test]
    fn the_history_keeps_the_last_cosigned_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let o = origins(2);
        let mut expected = None;
        {
            let store = reopen_in_process(dir.path());
            let w = WitnessStore::open(&store, &o).unwrap();
            for size in 1..=(HISTORY as u64 + 5) {
                let new = state(size * 10, size as u8);
                let r = rt
                    .block_on(w.replace(&o[0], expected, new.clone()))
                    .unwrap();
                assert_eq!(r, Outcome::Stored);
                expected = Some((new.size, new.root));
            }
            // The same checkpoint cosigned again (a later time): the state is replaced,
            // the history unchanged.
            let mut again = w.latest(&o[0]).unwrap().unwrap();
            again.cosigned_at += 5;
            let before = w.record(&o[0]).unwrap().history;
            let r = rt
                .block_on(w.replace(&o[0], expected, again.clone()))
                .unwrap();
            assert_eq!(r, Outcome::Stored);
            let rec = w.record(&o[0]).unwrap();
            assert_eq!((rec.state, &rec.history), (Some(again), &before));
            let sizes: Vec<u64> = rec.history.iter().map(|s| s.size).collect();
            let want: Vec<u64> = (5..=(HISTORY as u64 + 4)).map(|s| s * 10).collect();
            assert_eq!(sizes, want);
            assert_eq!(w.cosigned(&o[0], 50).unwrap(), Some(state(50, 5)));
            assert_eq!(w.cosigned(&o[0], 40).unwrap(), None);
            assert_eq!(w.cosigned(&o[1], 50).unwrap(), None);
        }
        let store = reopen_in_process(dir.path());
        let w = WitnessStore::open(&store, &o).unwrap();
        let rec = w.record(&o[0]).unwrap();
        assert_eq!(rec.history.len(), HISTORY);
        assert_eq!(rec.history[0], state(50, 5));
        // On disk: exactly the kept ones (the older were removed).
        let on_disk = store.tree(TREE).unwrap().scan_prefix([COSIGNED]).count();
        assert_eq!(on_disk, HISTORY);
    }

    /// A real checkpoint note of `origin`, signed under `name`, with `extensions`.
    fn signed(origin: &str, name: &str, size: u64, extensions: &[&str]) -> LogState {
        use ed25519_dalek::Signer as _;
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let root = [size as u8; 32];
        let text = Checkpoint {
            origin: origin.into(),
            size,
            root,
            extensions: extensions.iter().map(|e| e.to_string()).collect(),
        }
        .body();
        let signature = key.sign(text.as_bytes()).to_bytes().to_vec();
        let checkpoint = SignedNote {
            text,
            signatures: vec![NoteSignature {
                name: name.into(),
                id: [1, 2, 3, 4],
                signature,
            }],
        }
        .format();
        LogState {
            size,
            root,
            cosigned_at: 1_700_000_000,
            checkpoint,
        }
    }

    /// Earlier checkpoints are stored in the compact form when it rebuilds them byte for
    /// byte, else in full; both read back exactly.
    #[test]
    fn earlier_checkpoints_are_stored_compactly_and_read_back_exactly() {
        let origin = "log-0.example/chain";
        for (st, compact_form) in [
            (signed(origin, origin, 1234, &[]), true),
            (signed(origin, origin, 0, &["ext one", "ext two"]), true),
            (signed(origin, "another-name.example", 99, &[]), true),
            // Not this origin's, or not a note: kept whole.
            (signed("other.example/x", "other.example/x", 5, &[]), false),
            (state(5, 1), false),
        ] {
            let enc = encode_cosigned(&st, origin);
            assert_eq!(enc[0] == COMPACT, compact_form, "{st:?}");
            assert_eq!(decode_cosigned(&enc, origin).unwrap(), st);
            if compact_form {
                assert!(enc.len() < st.encode().len() - 60, "{} bytes", enc.len());
                for cut in 0..enc.len() {
                    assert!(decode_cosigned(&enc[..cut], origin).is_err(), "{cut}");
                }
            }
        }
        let mut two = SignedNote::parse(&signed(origin, origin, 7, &[]).checkpoint).unwrap();
        two.signatures.push(two.signatures[0].clone());
        let st = LogState {
            checkpoint: two.format(),
            ..signed(origin, origin, 7, &[])
        };
        assert_eq!(encode_cosigned(&st, origin)[0], VERSION);
    }

    /// Evidence is written once however often it comes, never evicted, survives a restart,
    /// and stops being stored (only counted) at the cap.
    #[test]
    fn evidence_is_kept_once_and_never_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let o = origins(2);
        let first = evidence(EvidenceKind::Fork, 1);
        {
            let store = reopen_in_process(dir.path());
            let w = WitnessStore::open(&store, &o).unwrap();
            let r = rt
                .block_on(w.record_evidence(&o[0], first.clone()))
                .unwrap();
            assert_eq!(r, EvidenceOutcome::Stored);
            let bytes = w.record_bytes();
            // The same again, also concurrently: nothing more written.
            let outcomes: Vec<EvidenceOutcome> = rt.block_on(async {
                let tasks: Vec<_> = (0..50)
                    .map(|i| {
                        let (w, o) = (w.clone(), o[0].clone());
                        let mut e = first.clone();
                        e.seen_at += i;
                        tokio::spawn(async move { w.record_evidence(&o, e).await.unwrap() })
                    })
                    .collect();
                let mut out = Vec::new();
                for t in tasks {
                    out.push(t.await.unwrap());
                }
                out
            });
            assert!(outcomes.iter().all(|r| *r == EvidenceOutcome::AlreadyKept));
            assert_eq!(w.record_bytes(), bytes);
            // Two new ones at once in one batch: each once.
            let second = evidence(EvidenceKind::BadProof, 2);
            let (a, b) = rt.block_on(async {
                tokio::join!(
                    w.record_evidence(&o[0], second.clone()),
                    w.record_evidence(&o[0], second.clone())
                )
            });
            let mut ab = [a.unwrap(), b.unwrap()];
            ab.sort_by_key(|r| *r == EvidenceOutcome::Stored);
            assert_eq!(ab, [EvidenceOutcome::AlreadyKept, EvidenceOutcome::Stored]);
            assert_eq!(w.evidence(&o[0]).unwrap(), vec![first.clone(), second]);
            assert_eq!(w.evidence(&o[1]).unwrap(), vec![]);
            // Up to the cap; then counted, not kept: the first ones stay.
            for n in 3..(MAX_EVIDENCE_PER_LOG as u64 + 10) {
                let r = rt
                    .block_on(w.record_evidence(&o[0], evidence(EvidenceKind::Rollback, n)))
                    .unwrap();
                let want = if n <= MAX_EVIDENCE_PER_LOG as u64 {
                    EvidenceOutcome::Stored
                } else {
                    EvidenceOutcome::Full
                };
                assert_eq!(r, want, "{n}");
            }
            let counts = w.record(&o[0]).unwrap().evidence;
            assert_eq!(counts.total(), MAX_EVIDENCE_PER_LOG as u64);
            assert_eq!(counts.not_kept, 9);
            // The same evidence not kept, submitted again: not counted again.
            for _ in 0..5 {
                let last = evidence(EvidenceKind::Rollback, MAX_EVIDENCE_PER_LOG as u64 + 9);
                let r = rt.block_on(w.record_evidence(&o[0], last)).unwrap();
                assert_eq!(r, EvidenceOutcome::Full);
            }
            assert_eq!(w.record(&o[0]).unwrap().evidence.not_kept, 9);
        }
        let store = reopen_in_process(dir.path());
        let w = WitnessStore::open(&store, &o).unwrap();
        let kept = w.evidence(&o[0]).unwrap();
        assert_eq!(kept.len(), MAX_EVIDENCE_PER_LOG);
        assert_eq!(kept[0], first);
        let counts = w.record(&o[0]).unwrap().evidence;
        assert_eq!(
            (
                counts.count(EvidenceKind::Fork),
                counts.count(EvidenceKind::BadProof),
                counts.count(EvidenceKind::Rollback),
                counts.not_kept
            ),
            (1, 1, MAX_EVIDENCE_PER_LOG as u64 - 2, 0)
        );
        assert_eq!(
            rt.block_on(w.record_evidence(&o[0], first)).unwrap(),
            EvidenceOutcome::AlreadyKept
        );
    }

    /// An evidence record damaged on disk is counted and reported, never silently left out.
    #[test]
    fn a_damaged_evidence_record_is_counted_not_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let o = origins(1);
        let (first, second) = (
            evidence(EvidenceKind::Fork, 1),
            evidence(EvidenceKind::Rollback, 2),
        );
        {
            let store = reopen_in_process(dir.path());
            let w = WitnessStore::open(&store, &o).unwrap();
            for e in [&first, &second] {
                let r = rt.block_on(w.record_evidence(&o[0], e.clone())).unwrap();
                assert_eq!(r, EvidenceOutcome::Stored);
            }
            // Damage the second record on disk.
            let tree = store.tree(EVIDENCE_TREE).unwrap();
            let (k, v) = tree
                .iter()
                .map(Result::unwrap)
                .find(|(_, v)| Evidence::decode(v).unwrap() == second)
                .unwrap();
            tree.insert(k, &v[..v.len() - 1]).unwrap();
            store.db().flush().unwrap();
        }
        let store = reopen_in_process(dir.path());
        let w = WitnessStore::open(&store, &o).unwrap();
        let counts = w.record(&o[0]).unwrap().evidence;
        assert_eq!((counts.total(), counts.damaged), (1, 1));
        assert_eq!(w.evidence(&o[0]).unwrap(), vec![first]);
        let all = w.all_evidence().unwrap();
        assert_eq!(all.iter().filter(|(_, e)| e.is_err()).count(), 1);
    }

    /// A store an older version wrote (state and alerts records): it opens, its state is
    /// served and its alerts are readable, and they are not written again.
    #[test]
    fn a_store_of_an_older_version_opens() {
        let dir = tempfile::tempdir().unwrap();
        let o = origins(1);
        let mut old = LegacyAlerts {
            counts: [0, 1, 0, 20],
            ..LegacyAlerts::default()
        };
        old.recent.push(legacy(LegacyAlertKind::Fork, 3));
        old.recent.push(legacy(LegacyAlertKind::BadSignature, 4));
        {
            let store = reopen_in_process(dir.path());
            let tree = store.tree(TREE).unwrap();
            tree.insert(key(STATE, &o[0]), state(7, 1).encode())
                .unwrap();
            tree.insert(key(LEGACY_ALERTS, &o[0]), old.encode())
                .unwrap();
            store.flush().unwrap();
        }
        let store = reopen_in_process(dir.path());
        let w = WitnessStore::open(&store, &o).unwrap();
        assert_eq!(w.unregistered(), 0);
        assert_eq!(w.latest(&o[0]).unwrap(), Some(state(7, 1)));
        assert_eq!(w.legacy_alerts(&o[0]).unwrap(), Some(old.clone()));
        let r = rt()
            .block_on(w.replace(&o[0], Some((7, [1; 32])), state(8, 2)))
            .unwrap();
        assert_eq!(r, Outcome::Stored);
        assert_eq!(w.legacy_alerts(&o[0]).unwrap(), Some(old));
        assert_eq!(w.cosigned(&o[0], 7).unwrap(), Some(state(7, 1)));
    }

    /// The race of c2sp.org/tlog-witness: many requests checked against the same state,
    /// committed concurrently: exactly one wins, the others see it.
    #[test]
    fn concurrent_replacements_from_one_state_let_exactly_one_win() {
        let dir = tempfile::tempdir().unwrap();
        let store = reopen_in_process(dir.path());
        let o = origins(3);
        let w = WitnessStore::open(&store, &o).unwrap();
        let rt = rt();
        for origin in &o {
            rt.block_on(w.replace(origin, None, state(10, 0))).unwrap();
        }
        let outcomes: Vec<(usize, u64, Outcome)> = rt.block_on(async {
            let mut tasks = Vec::new();
            for (i, origin) in o.iter().enumerate() {
                for k in 1..=30u64 {
                    let (w, origin) = (w.clone(), origin.clone());
                    tasks.push(tokio::spawn(async move {
                        let r = w
                            .replace(&origin, Some((10, [0; 32])), state(10 + k, k as u8))
                            .await
                            .unwrap();
                        (i, 10 + k, r)
                    }));
                }
            }
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        for (i, origin) in o.iter().enumerate() {
            let mine: Vec<_> = outcomes.iter().filter(|(j, _, _)| *j == i).collect();
            let winners: Vec<u64> = mine
                .iter()
                .filter(|(_, _, r)| *r == Outcome::Stored)
                .map(|(_, s, _)| *s)
                .collect();
            assert_eq!(winners.len(), 1, "{origin}: {winners:?}");
            let latest = w.latest(origin).unwrap().unwrap();
            assert_eq!(latest.size, winners[0]);
            for (_, _, r) in mine {
                if let Outcome::Moved(Some(s)) = r {
                    assert_eq!(s.size, winners[0]);
                }
            }
            // The loser's states never entered the history.
            let history = w.record(origin).unwrap().history;
            assert_eq!(history, vec![state(10, 0)]);
        }
    }
}
