//! The witness's durable state: for each registered log, the latest checkpoint it
//! cosigned, the few it cosigned before, and the evidence that the log signed checkpoints
//! that cannot all be true; written with group commit and a compare-and-swap per origin.
//!
//! The service sees a store through the [`WitnessStore`] trait: an engine is one type
//! that implements it. The embedded default is [`SledWitnessStore`] (`sled.rs`, one
//! server); [`PostgresWitnessStore`] (`postgres/`) is shared by several witness servers.
//! The records' encodings below are the engines' common form (PostgreSQL keeps evidence
//! and older alerts in it). The layout below is sled's.
//!
//! Layout on sled:
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
//! memory (loaded at [`SledWitnessStore::open`]), so the checks never read sled. Writes go to
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

mod postgres;
mod sled;

pub use self::postgres::{
    all_postgres_evidence, import, migrate, PostgresSettings, PostgresWitnessStore,
};
pub use self::sled::SledWitnessStore;

use std::future::Future;
use std::pin::Pin;

use sha2::{Digest, Sha256};

use crate::chain::note::{Checkpoint, NoteSignature, SignedNote};
use crate::chain::store::StoreError;
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
    Storage(#[from] ::sled::Error),
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
    /// The database server (PostgreSQL) failed, refused or cannot be reached; what was
    /// being written was not acknowledged.
    #[error("witness database: {0}")]
    Database(String),
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
    /// (Written now only when a sled store moves into PostgreSQL, and by tests.)
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

/// Everything a store holds of one origin, as moved from one engine to another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportedLog {
    /// The checkpoint origin.
    pub origin: String,
    /// The latest cosigned checkpoint.
    pub state: Option<LogState>,
    /// The earlier ones kept, by size.
    pub history: Vec<LogState>,
    /// Its evidence records.
    pub evidence: Vec<Evidence>,
    /// An older version's alerts.
    pub legacy: Option<LegacyAlerts>,
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

/// The future of a store's write: `Send`, borrowing the store and the origin.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A witness store engine: what the witness service reads and writes. Reads answer from
/// what is durable; writes return once durable. Every origin named must be one the store
/// was opened for ([`WitnessStoreError::UnknownOrigin`] otherwise).
pub trait WitnessStore: Send + Sync + std::fmt::Debug {
    /// The registered origins, in the order the store was opened with.
    fn origins(&self) -> &[String];

    /// How many origins have records in the store without being registered.
    fn unregistered(&self) -> usize;

    /// The durable record of `origin` (a copy), as this process knows it: an engine shared
    /// by several witness servers may be behind what another one stored since it last
    /// looked ([`WitnessStore::current`] reads what is durable now).
    fn record(&self, origin: &str) -> Result<LogRecord, WitnessStoreError>;

    /// The durable record of `origin` as it is now, read again from the engine when other
    /// witness servers share it (and remembered for [`WitnessStore::record`]): what a
    /// refusal is decided on.
    fn current<'a>(
        &'a self,
        origin: &'a str,
    ) -> BoxFuture<'a, Result<LogRecord, WitnessStoreError>>;

    /// The latest durable cosigned checkpoint of `origin`.
    fn latest(&self, origin: &str) -> Result<Option<LogState>, WitnessStoreError>;

    /// The evidence records of `origin`, counted.
    fn evidence_counts(&self, origin: &str) -> Result<EvidenceCounts, WitnessStoreError>;

    /// The evidence records of `origin`, oldest first.
    fn evidence<'a>(
        &'a self,
        origin: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Evidence>, WitnessStoreError>>;

    /// The alerts an older version recorded for `origin`, if any.
    fn legacy_alerts<'a>(
        &'a self,
        origin: &'a str,
    ) -> BoxFuture<'a, Result<Option<LegacyAlerts>, WitnessStoreError>>;

    /// Makes `new` the latest state of `origin` if its current state is still `expected`
    /// (compare-and-swap), durably; returns once it is stored, or [`Outcome::Moved`]. The
    /// state it replaces joins the history (unless `new` has its size).
    fn replace<'a>(
        &'a self,
        origin: &'a str,
        expected: Expected,
        new: LogState,
    ) -> BoxFuture<'a, Result<Outcome, WitnessStoreError>>;

    /// Keeps `evidence` about `origin`, durably, unless the same is kept already or the log
    /// has [`MAX_EVIDENCE_PER_LOG`] records.
    fn record_evidence<'a>(
        &'a self,
        origin: &'a str,
        evidence: Evidence,
    ) -> BoxFuture<'a, Result<EvidenceOutcome, WitnessStoreError>>;

    /// Bytes the store occupies on disk (or in its database), as the engine counts them.
    fn disk_bytes(&self) -> Result<u64, WitnessStoreError>;

    /// Bytes of the witness's keys and values, as of the last commit (cheap: `/metrics`
    /// reads it).
    fn record_bytes(&self) -> u64;

    /// Checks that the store answers reads and accepts writes (readiness probe).
    fn health(&self) -> Result<(), WitnessStoreError>;
}
