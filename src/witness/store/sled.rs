//! The witness store on sled, the embedded default: the layout and the committer the
//! store's module documentation describes ([`super`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use super::{
    decode_cosigned, encode_cosigned, BoxFuture, Evidence, EvidenceCounts, EvidenceId,
    EvidenceOutcome, Expected, ExportedLog, LegacyAlerts, LogRecord, LogState, Outcome, Reader,
    StoredEvidence, WitnessStore, WitnessStoreError, COSIGNED, EVIDENCE_TREE, HISTORY,
    LEGACY_ALERTS, MAX_COMMIT_JOBS, MAX_EVIDENCE_PER_LOG, MAX_NOT_KEPT_IDS, STATE, TREE,
};
use crate::chain::store::Store;

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
pub struct SledWitnessStore {
    shared: Arc<Shared>,
    jobs: Sender<Job>,
    committer: Arc<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for SledWitnessStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledWitnessStore")
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

impl SledWitnessStore {
    /// Opens the witness's trees in `store` for the logs `origins`, loads their records
    /// into memory and starts the committer thread. Records of other origins stay in the
    /// store, untouched (a log removed from the configuration keeps its state and
    /// evidence should it return).
    pub fn open(store: &Store, origins: &[String]) -> Result<SledWitnessStore, WitnessStoreError> {
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
        Ok(SledWitnessStore {
            shared,
            jobs,
            committer: Arc::new(committer),
        })
    }

    /// Everything the store holds, every origin (registered or not), for moving it to
    /// another engine: each log's state, its history, its evidence and an older version's
    /// alerts. A damaged record stops it (nothing is moved without all of it).
    pub fn export(&self) -> Result<Vec<ExportedLog>, WitnessStoreError> {
        let mut logs: BTreeMap<String, ExportedLog> = BTreeMap::new();
        let damaged = |origin: &str, e: WitnessStoreError| {
            WitnessStoreError::Corrupt(format!("log {origin:?}: {e}"))
        };
        for kv in self.shared.tree.iter() {
            let (k, v) = kv?;
            let (kind, rest) = k.split_first().ok_or_else(|| {
                WitnessStoreError::Corrupt("an empty key in the witness tree".into())
            })?;
            let origin = match *kind {
                COSIGNED => origin_of_prefixed(rest),
                _ => Some(String::from_utf8_lossy(rest).into_owned()),
            }
            .ok_or_else(|| WitnessStoreError::Corrupt("a damaged history key".into()))?;
            let log = logs.entry(origin.clone()).or_insert_with(|| ExportedLog {
                origin: origin.clone(),
                ..ExportedLog::default()
            });
            match *kind {
                STATE => log.state = Some(LogState::decode(&v).map_err(|e| damaged(&origin, e))?),
                COSIGNED => log
                    .history
                    .push(decode_cosigned(&v, &origin).map_err(|e| damaged(&origin, e))?),
                LEGACY_ALERTS => {
                    log.legacy = Some(LegacyAlerts::decode(&v).map_err(|e| damaged(&origin, e))?)
                }
                other => {
                    return Err(WitnessStoreError::Corrupt(format!(
                        "an unknown record kind {other:#04x} in the witness tree"
                    )))
                }
            }
        }
        for kv in self.shared.evidence.iter() {
            let (k, v) = kv?;
            let origin = origin_of_prefixed(&k)
                .ok_or_else(|| WitnessStoreError::Corrupt("a damaged evidence key".into()))?;
            let evidence = Evidence::decode(&v).map_err(|e| damaged(&origin, e))?;
            logs.entry(origin.clone())
                .or_insert_with(|| ExportedLog {
                    origin,
                    ..ExportedLog::default()
                })
                .evidence
                .push(evidence);
        }
        Ok(logs.into_values().collect())
    }

    fn log(&self, origin: &str) -> Result<usize, WitnessStoreError> {
        self.shared
            .index
            .get(origin)
            .copied()
            .ok_or_else(|| WitnessStoreError::UnknownOrigin(origin.to_owned()))
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

    /// The checkpoint of `size` the witness cosigned for `origin`, if it is the latest or
    /// one of the [`HISTORY`] before it.
    #[cfg(test)]
    pub(crate) fn cosigned(
        &self,
        origin: &str,
        size: u64,
    ) -> Result<Option<LogState>, WitnessStoreError> {
        let log = self.log(origin)?;
        Ok(self.shared.lock(log).and_then(|m| {
            m.state
                .iter()
                .chain(m.history.iter())
                .find(|s| s.size == size)
                .cloned()
        }))
    }

    async fn submit(&self, op: Op) -> Result<Answer, WitnessStoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { op, reply })
            .map_err(|_| WitnessStoreError::Stopped)?;
        answer.await.map_err(|_| WitnessStoreError::Stopped)?
    }
}

impl WitnessStore for SledWitnessStore {
    /// The registered origins, in the order given to [`Self::open`].
    fn origins(&self) -> &[String] {
        &self.shared.origins
    }

    /// How many origins have records in the store without being registered.
    fn unregistered(&self) -> usize {
        self.shared.unregistered
    }

    /// The durable record of `origin` (a copy).
    fn record(&self, origin: &str) -> Result<LogRecord, WitnessStoreError> {
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
    fn latest(&self, origin: &str) -> Result<Option<LogState>, WitnessStoreError> {
        let log = self.log(origin)?;
        Ok(self.shared.lock(log).and_then(|r| r.state.clone()))
    }

    /// The evidence records of `origin`, counted.
    fn evidence_counts(&self, origin: &str) -> Result<EvidenceCounts, WitnessStoreError> {
        let log = self.log(origin)?;
        Ok(self
            .shared
            .lock(log)
            .map(|m| m.evidence)
            .unwrap_or_default())
    }

    fn current<'a>(
        &'a self,
        origin: &'a str,
    ) -> BoxFuture<'a, Result<LogRecord, WitnessStoreError>> {
        // This process is the store's one writer: its memory is what is durable.
        Box::pin(std::future::ready(self.record(origin)))
    }

    fn evidence<'a>(
        &'a self,
        origin: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Evidence>, WitnessStoreError>> {
        // Read from disk: off the runtime's threads.
        let (store, origin) = (self.clone(), origin.to_owned());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || SledWitnessStore::evidence(&store, &origin))
                .await
                .map_err(|e| WitnessStoreError::CommitFailed(format!("evidence read: {e}")))?
        })
    }

    fn legacy_alerts<'a>(
        &'a self,
        origin: &'a str,
    ) -> BoxFuture<'a, Result<Option<LegacyAlerts>, WitnessStoreError>> {
        Box::pin(std::future::ready(SledWitnessStore::legacy_alerts(
            self, origin,
        )))
    }

    /// Makes `new` the latest state of `origin` if its current state is still `expected`
    /// (compare-and-swap), durably; returns once it is on disk, or [`Outcome::Moved`]. The
    /// state it replaces joins the history (unless `new` has its size).
    fn replace<'a>(
        &'a self,
        origin: &'a str,
        expected: Expected,
        new: LogState,
    ) -> BoxFuture<'a, Result<Outcome, WitnessStoreError>> {
        Box::pin(async move {
            let log = self.log(origin)?;
            match self.submit(Op::Replace { log, expected, new }).await? {
                Answer::Replace(o) => Ok(o),
                Answer::Evidence(_) => Err(WitnessStoreError::CommitFailed(
                    "the committer answered another question".into(),
                )),
            }
        })
    }
    /// Keeps `evidence` about `origin`, durably, unless the same is kept already (answered
    /// from memory, nothing written) or the log has [`MAX_EVIDENCE_PER_LOG`] records.
    fn record_evidence<'a>(
        &'a self,
        origin: &'a str,
        evidence: Evidence,
    ) -> BoxFuture<'a, Result<EvidenceOutcome, WitnessStoreError>> {
        Box::pin(async move {
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
        })
    }
    /// Bytes the database occupies on disk (sled's own count).
    fn disk_bytes(&self) -> Result<u64, WitnessStoreError> {
        Ok(self.shared.db.size_on_disk()?)
    }

    /// Bytes of the witness's keys and values (what the state is, before sled's overhead),
    /// as of the last commit: counted at open and kept up to date by each commit, so that
    /// `/metrics`, which anyone may scrape, reads a number rather than every record.
    fn record_bytes(&self) -> u64 {
        self.shared.record_bytes.load(Ordering::Relaxed)
    }

    /// Checks that the store answers reads and the committer runs (readiness probe).
    fn health(&self) -> Result<(), WitnessStoreError> {
        if self.committer.is_finished() {
            return Err(WitnessStoreError::Stopped);
        }
        self.shared.tree.first()?;
        Ok(())
    }
}

/// The committer: takes the jobs waiting (at least one) and commits them together, until
/// every [`SledWitnessStore`] clone is gone.
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
mod tests;
