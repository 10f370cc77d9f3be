//! The witness's durable state in sled: for each registered log, the latest checkpoint it
//! cosigned and the last alerts about the log; written with group commit and a
//! compare-and-swap per origin.
//!
//! Layout (one sled tree, `witness`):
//! - `s` + origin → the latest cosigned checkpoint ([`LogState`], version 1: `0x01` · u64
//!   size · 32-byte root · u64 cosigned_at (Unix s) · u32 length + the checkpoint note: its
//!   text and the log's own signature line).
//! - `a` + origin → alert counters (one u64 per [`AlertKind`]) and the last
//!   [`MAX_RECENT_ALERTS`] alerts ([`Alerts`]).
//!
//! So the state of a log is constant in size: one value replaced at every cosignature, and
//! one value of bounded size rewritten only when something is refused and recorded.
//!
//! Every log's record is also kept in memory (loaded at [`WitnessStore::open`]), so reads
//! never touch sled. Writes go to one committer thread. It takes every job waiting, checks
//! each [`WitnessStore::replace`] against the state it was decided on (the latest state in
//! memory, or the one an earlier job of the same batch wrote: a compare-and-swap per
//! origin), writes what passed in one batch, flushes once, and only then publishes the new
//! states in memory and answers. A request that was checked against a state that changed
//! meanwhile gets [`Outcome::Moved`] with the current state, and is checked again: the
//! check and the write are one atomic step per origin, as c2sp.org/tlog-witness requires,
//! without a lock held across the flush. A failed flush answers every job of the batch with
//! an error and publishes nothing.
//!
//! Its one error type is [`WitnessStoreError`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use super::store::{Store, StoreError};
use super::tlog::Hash;

const TREE: &str = "witness";
const STATE: u8 = b's';
const ALERTS: u8 = b'a';
const VERSION: u8 = 1;
/// Alerts kept per log (older ones are only counted).
pub const MAX_RECENT_ALERTS: usize = 16;
/// Most jobs one commit takes (more wait for the next one).
const MAX_COMMIT_JOBS: usize = 10_000;

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

/// The latest checkpoint the witness cosigned for a log.
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

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// The log claimed an old size below the one recorded, or signed a checkpoint smaller
    /// than the one recorded.
    Rollback,
    /// The log signed a checkpoint of the recorded size with another root.
    Fork,
    /// The consistency proof from the recorded checkpoint does not verify.
    BadProof,
    /// No signature by the log's key verifies.
    BadSignature,
}

impl AlertKind {
    /// Every kind, in the order of [`Alerts::counts`].
    pub const ALL: [AlertKind; 4] = [
        AlertKind::Rollback,
        AlertKind::Fork,
        AlertKind::BadProof,
        AlertKind::BadSignature,
    ];

    /// The kind's name: `rollback`, `fork`, `bad-proof` or `bad-signature`.
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::Rollback => "rollback",
            AlertKind::Fork => "fork",
            AlertKind::BadProof => "bad-proof",
            AlertKind::BadSignature => "bad-signature",
        }
    }

    fn index(self) -> usize {
        match self {
            AlertKind::Rollback => 0,
            AlertKind::Fork => 1,
            AlertKind::BadProof => 2,
            AlertKind::BadSignature => 3,
        }
    }

    fn from_index(i: u8) -> Option<AlertKind> {
        AlertKind::ALL.get(usize::from(i)).copied()
    }
}

/// One refused submission the witness recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// What it was.
    pub kind: AlertKind,
    /// When (Unix seconds).
    pub at: u64,
    /// The old size the request named.
    pub old_size: u64,
    /// The submitted checkpoint's size.
    pub size: u64,
    /// The size the witness had recorded then, if any.
    pub recorded_size: Option<u64>,
    /// The submitted checkpoint note (its text and the signature lines by the log's key).
    pub submitted: String,
    /// The checkpoint note the witness had recorded then, if any: with `submitted`, the
    /// evidence of a fork or a rollback (both signed by the log).
    pub recorded: Option<String>,
}

/// A log's alerts: a counter per kind, and the most recent ones (at most
/// [`MAX_RECENT_ALERTS`], oldest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alerts {
    counts: [u64; 4],
    recent: VecDeque<Alert>,
}

impl Alerts {
    /// Counts `alert` and keeps it, dropping the oldest kept one beyond
    /// [`MAX_RECENT_ALERTS`].
    pub fn record(&mut self, alert: Alert) {
        let c = &mut self.counts[alert.kind.index()];
        *c = c.saturating_add(1);
        if self.recent.len() == MAX_RECENT_ALERTS {
            self.recent.pop_front();
        }
        self.recent.push_back(alert);
    }

    /// How many alerts of `kind` were ever recorded.
    pub fn count(&self, kind: AlertKind) -> u64 {
        self.counts[kind.index()]
    }

    /// How many alerts were ever recorded.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0, |a, c| a.saturating_add(*c))
    }

    /// The kept alerts, oldest first.
    pub fn recent(&self) -> impl DoubleEndedIterator<Item = &Alert> + ExactSizeIterator {
        self.recent.iter()
    }

    /// The stored form (version 1): `0x01` · 4 × u64 counts · u8 n · n alerts, each u8 kind ·
    /// u64 at · u64 old size · u64 size · u8 has-recorded-size · u64 recorded size ·
    /// u32 length + submitted · u8 has-recorded · u32 length + recorded.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        for c in self.counts {
            out.extend_from_slice(&c.to_be_bytes());
        }
        out.push(u8::try_from(self.recent.len()).unwrap_or(u8::MAX));
        for a in self.recent.iter().take(usize::from(u8::MAX)) {
            out.push(u8::try_from(a.kind.index()).unwrap_or(u8::MAX));
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
    pub fn decode(bytes: &[u8]) -> Result<Alerts, WitnessStoreError> {
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
        let mut recent = VecDeque::with_capacity(usize::from(n));
        for _ in 0..n {
            let kind = r.u8().and_then(AlertKind::from_index).ok_or_else(bad)?;
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
            recent.push_back(Alert {
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
        Ok(Alerts { counts, recent })
    }
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
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
    }
    fn hash(&mut self) -> Option<Hash> {
        self.take(32).and_then(|b| b.try_into().ok())
    }
    fn string(&mut self) -> Option<String> {
        let len = self
            .take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)?;
        let bytes = self.take(usize::try_from(len).ok()?)?;
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// A log's record: its latest cosigned checkpoint (none before the first) and its alerts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogRecord {
    /// The latest cosigned checkpoint.
    pub state: Option<LogState>,
    /// Its alerts.
    pub alerts: Alerts,
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

enum Op {
    Replace {
        log: usize,
        expected: Expected,
        new: LogState,
    },
    Alert {
        log: usize,
        alert: Alert,
    },
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Outcome, WitnessStoreError>>,
}

struct Shared {
    db: sled::Db,
    tree: sled::Tree,
    index: HashMap<String, usize>,
    origins: Vec<String>,
    /// Durable records, published by the committer after each flush.
    records: Vec<Mutex<LogRecord>>,
    /// Origins with state in the store that are not registered (kept, not served).
    unregistered: usize,
}

impl Shared {
    fn lock(&self, log: usize) -> Option<MutexGuard<'_, LogRecord>> {
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

impl WitnessStore {
    /// Opens the witness's tree in `store` for the logs `origins`, loads their records into
    /// memory and starts the committer thread. Records of other origins stay in the store,
    /// untouched (a log removed from the configuration keeps its state should it return).
    pub fn open(store: &Store, origins: &[String]) -> Result<WitnessStore, WitnessStoreError> {
        let tree = store.tree(TREE)?;
        let mut index = HashMap::with_capacity(origins.len());
        for (i, o) in origins.iter().enumerate() {
            if index.insert(o.clone(), i).is_some() {
                return Err(WitnessStoreError::DuplicateOrigin(o.clone()));
            }
        }
        let mut records = Vec::with_capacity(origins.len());
        for origin in origins {
            let state = tree
                .get(key(STATE, origin))?
                .map(|v| LogState::decode(&v))
                .transpose()
                .map_err(|e| WitnessStoreError::Corrupt(format!("log {origin:?}: {e}")))?;
            let alerts = tree
                .get(key(ALERTS, origin))?
                .map(|v| Alerts::decode(&v))
                .transpose()
                .map_err(|e| WitnessStoreError::Corrupt(format!("log {origin:?}: {e}")))?
                .unwrap_or_default();
            records.push(Mutex::new(LogRecord { state, alerts }));
        }
        let mut others = HashSet::new();
        for kv in tree.iter() {
            let (k, _) = kv?;
            let origin = k.get(1..).map(String::from_utf8_lossy).unwrap_or_default();
            if !index.contains_key(origin.as_ref()) {
                others.insert(origin.into_owned());
            }
        }
        let shared = Arc::new(Shared {
            db: store.db().clone(),
            tree,
            index,
            origins: origins.to_vec(),
            records,
            unregistered: others.len(),
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
        Ok(self.shared.lock(log).map(|r| r.clone()).unwrap_or_default())
    }

    /// The latest durable cosigned checkpoint of `origin`.
    pub fn latest(&self, origin: &str) -> Result<Option<LogState>, WitnessStoreError> {
        let log = self.log(origin)?;
        Ok(self.shared.lock(log).and_then(|r| r.state.clone()))
    }

    async fn submit(&self, op: Op) -> Result<Outcome, WitnessStoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { op, reply })
            .map_err(|_| WitnessStoreError::Stopped)?;
        answer.await.map_err(|_| WitnessStoreError::Stopped)?
    }

    /// Makes `new` the latest state of `origin` if its current state is still `expected`
    /// (compare-and-swap), durably; returns once it is on disk, or [`Outcome::Moved`].
    pub async fn replace(
        &self,
        origin: &str,
        expected: Expected,
        new: LogState,
    ) -> Result<Outcome, WitnessStoreError> {
        let log = self.log(origin)?;
        self.submit(Op::Replace { log, expected, new }).await
    }

    /// Records `alert` about `origin`, durably.
    pub async fn record_alert(&self, origin: &str, alert: Alert) -> Result<(), WitnessStoreError> {
        let log = self.log(origin)?;
        self.submit(Op::Alert { log, alert }).await.map(|_| ())
    }

    /// Bytes the database occupies on disk (sled's own count).
    pub fn disk_bytes(&self) -> Result<u64, WitnessStoreError> {
        Ok(self.shared.db.size_on_disk()?)
    }

    /// Bytes of the witness's keys and values (what the state is, before sled's overhead).
    pub fn record_bytes(&self) -> Result<u64, WitnessStoreError> {
        let mut total = 0u64;
        for kv in self.shared.tree.iter() {
            let (k, v) = kv?;
            total += (k.len() + v.len()) as u64;
        }
        Ok(total)
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
#[derive(Default)]
struct Pending {
    state: Option<LogState>,
    alerts: Option<Alerts>,
}

/// Decides every job against the durable state and the batch's own earlier changes, writes
/// the changes in one batch, flushes, publishes them and answers.
fn commit(shared: &Shared, jobs: Vec<Job>) {
    let mut pending: HashMap<usize, Pending> = HashMap::new();
    let mut answers = Vec::with_capacity(jobs.len());
    for Job { op, reply } in jobs {
        let outcome = match op {
            Op::Replace { log, expected, new } => {
                let p = pending.entry(log).or_default();
                let current = match &p.state {
                    Some(s) => Some(s.clone()),
                    None => shared.lock(log).and_then(|r| r.state.clone()),
                };
                if current.as_ref().map(|s| (s.size, s.root)) == expected {
                    p.state = Some(new);
                    Outcome::Stored
                } else {
                    Outcome::Moved(current)
                }
            }
            Op::Alert { log, alert } => {
                let p = pending.entry(log).or_default();
                let alerts = p.alerts.get_or_insert_with(|| {
                    shared
                        .lock(log)
                        .map(|r| r.alerts.clone())
                        .unwrap_or_default()
                });
                alerts.record(alert);
                Outcome::Stored
            }
        };
        answers.push((reply, outcome));
    }
    let mut batch = sled::Batch::default();
    let mut writes = 0usize;
    for (log, p) in &pending {
        let Some(origin) = shared.origins.get(*log) else {
            continue;
        };
        if let Some(s) = &p.state {
            batch.insert(key(STATE, origin), s.encode());
            writes += 1;
        }
        if let Some(a) = &p.alerts {
            batch.insert(key(ALERTS, origin), a.encode());
            writes += 1;
        }
    }
    if writes > 0 {
        let written = shared
            .tree
            .apply_batch(batch)
            .and_then(|()| shared.db.flush().map(|_| ()));
        if let Err(e) = written {
            tracing::error!(error = %e, jobs = answers.len(), "witness commit failed; nothing acknowledged");
            let text = e.to_string();
            for (reply, _) in answers {
                let _ = reply.send(Err(WitnessStoreError::CommitFailed(text.clone())));
            }
            return;
        }
    }
    for (log, p) in pending {
        if let Some(mut record) = shared.lock(log) {
            if let Some(s) = p.state {
                record.state = Some(s);
            }
            if let Some(a) = p.alerts {
                record.alerts = a;
            }
        }
    }
    for (reply, outcome) in answers {
        // A caller that went away does not need its answer.
        let _ = reply.send(Ok(outcome));
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
            checkpoint: format!("log\n{size}\nroot\n\n\u{2014} log AAAA\n"),
        }
    }

    fn alert(kind: AlertKind, n: u64) -> Alert {
        Alert {
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
        let mut a = Alerts::default();
        for n in 0..5 {
            a.record(alert(AlertKind::ALL[n as usize % 4], n));
        }
        assert_eq!(Alerts::decode(&a.encode()).unwrap(), a);
        assert_eq!(
            Alerts::decode(&Alerts::default().encode()).unwrap(),
            Alerts::default()
        );
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
        let enc = a.encode();
        for cut in 0..enc.len() {
            assert!(Alerts::decode(&enc[..cut]).is_err(), "{cut}");
        }
    }

    #[test]
    fn alerts_are_bounded_and_counted() {
        let mut a = Alerts::default();
        let size_at = |a: &Alerts| a.encode().len();
        for n in 0..(MAX_RECENT_ALERTS as u64) {
            a.record(alert(AlertKind::Fork, n * 6));
        }
        let full = size_at(&a);
        for n in 0..1000u64 {
            a.record(alert(AlertKind::ALL[(n % 4) as usize], n * 6));
        }
        assert_eq!(a.recent().len(), MAX_RECENT_ALERTS);
        assert_eq!(a.total(), 1000 + MAX_RECENT_ALERTS as u64);
        assert_eq!(a.count(AlertKind::Fork), 250 + MAX_RECENT_ALERTS as u64);
        assert_eq!(a.count(AlertKind::Rollback), 250);
        // The newest are kept, oldest first; the record does not grow.
        let kept: Vec<u64> = a.recent().map(|x| x.at).collect();
        let want: Vec<u64> = (1000 - MAX_RECENT_ALERTS as u64..1000)
            .map(|n| n * 6)
            .collect();
        assert_eq!(kept, want);
        assert_eq!(size_at(&a), full);
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
            rt.block_on(w.record_alert(&o[1], alert(AlertKind::Rollback, 3)))
                .unwrap();
            assert_eq!(w.latest(&o[0]).unwrap(), Some(state(9, 3)));
            assert!(w.record_bytes().unwrap() > 0);
            w.health().unwrap();
        }
        // Another registration: o[1] still there, o[0] kept on disk but not loaded.
        let store = reopen_in_process(dir.path());
        let w = WitnessStore::open(&store, &o[1..]).unwrap();
        assert_eq!(w.unregistered(), 1);
        let rec = w.record(&o[1]).unwrap();
        assert_eq!(rec.state, None);
        assert_eq!(rec.alerts.count(AlertKind::Rollback), 1);
        drop(w);
        drop(store);
        let store = reopen_in_process(dir.path());
        let w = WitnessStore::open(&store, &o).unwrap();
        assert_eq!(w.latest(&o[0]).unwrap(), Some(state(9, 3)));
        assert_eq!(w.unregistered(), 0);
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
        }
    }
}
