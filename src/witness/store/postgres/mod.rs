//! The witness store on PostgreSQL: any number of `auditstamp witness serve` processes
//! share one database.
//!
//! Tables (schema version [`SCHEMA_VERSION`], created and moved on by [`migrate`], never by
//! a server):
//! - `witness_log`: per origin, the latest cosigned checkpoint (size, root, cosigned_at, the
//!   checkpoint note as kept) and, in arrays beside it (`h_size`, `h_root`,
//!   `h_cosigned_at`, `h_checkpoint`, oldest first), the [`HISTORY`] checkpoints cosigned
//!   before it: one row written per cosignature.
//! - `witness_evidence`: per origin and [`Evidence::id`], the evidence record
//!   ([`Evidence::encode`]'s form), its kind and when it was seen. Never evicted nor
//!   rewritten; at most [`MAX_EVIDENCE_PER_LOG`] per origin.
//! - `witness_legacy_alerts`: alerts of older versions' sled stores, read at start so that
//!   the forks they prove become evidence (for a sled store moved into the database).
//! - `auditstamp_schema`: the schema version (component `witness`).
//!
//! The tlog-witness rule that checking the old size and storing the new checkpoint are one
//! atomic step holds across processes: [`WitnessStore::replace`] is a compare-and-swap in
//! the function `witness_replace_all`: `UPDATE witness_log ... WHERE origin = $1 AND size =
//! $2 AND root = $3` (a row another transaction is changing is waited for and compared
//! again after its commit), which writes the new state and the history in one row; the
//! answer is given only after its commit. Two servers replacing the same state at once:
//! one stores, the other gets [`Outcome::Moved`] with the state now recorded. Evidence is
//! kept by `witness_keep_evidence`, which counts and inserts under a per-origin lock.
//! Group commit: one committer per process takes every compare-and-swap waiting and runs
//! them in one statement, `witness_replace_all` (one round trip, one transaction, one WAL
//! flush), in the order of their origins, so that two
//! servers' transactions take row locks in the same order and never deadlock.
//!
//! Each process keeps every registered log's record in memory, as the sled store does, so
//! that the checks and the status pages never wait for the database; it is updated by the
//! process's own writes and re-read every `refresh` (the writes of the other servers).
//! Whatever is decided on it is safe: a replacement is a compare-and-swap in the database,
//! and a refusal is decided on the state read again ([`WitnessStore::current`]). The same
//! re-read is the readiness probe: [`WitnessStore::health`] fails while the last one did.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use super::{
    BoxFuture, Evidence, EvidenceCounts, EvidenceId, EvidenceKind, EvidenceOutcome, Expected,
    LegacyAlerts, LogRecord, LogState, Outcome, WitnessStore, WitnessStoreError, HISTORY,
    MAX_EVIDENCE_PER_LOG, MAX_NOT_KEPT_IDS,
};

mod import;
mod schema;
mod settings;

pub use import::{all_postgres_evidence, import};
pub use schema::{migrate, SCHEMA_VERSION};
pub use settings::PostgresSettings;

use schema::{newer, schema_version};
use settings::{db, pool_error, record_of, state_of, to_i64, StateArrays, RECORD_COLUMNS};

/// What this process knows of one log.
#[derive(Debug, Default)]
struct Memory {
    record: LogRecord,
    /// Evidence not kept since start (the log at its cap), each counted once.
    not_kept_ids: HashSet<EvidenceId>,
}

impl Memory {
    /// Takes `read` (the database's record) unless this process already knows a later
    /// state (written after `read` was read); the counts of evidence only grow.
    fn update(&mut self, read: LogRecord) {
        let size = |r: &LogRecord| r.state.as_ref().map(|s| s.size);
        if size(&read) >= size(&self.record) {
            self.record.state = read.state;
            self.record.history = read.history;
        }
        let (not_kept, damaged) = (self.record.evidence.not_kept, self.record.evidence.damaged);
        let mut counts = read.evidence;
        for kind in EvidenceKind::ALL {
            let i = kind.index();
            counts.counts[i] = counts.counts[i].max(self.record.evidence.counts[i]);
        }
        counts.not_kept = not_kept;
        counts.damaged = damaged;
        self.record.evidence = counts;
    }
}

struct Inner {
    pool: Pool,
    /// The compare-and-swaps, to the committer.
    swaps: tokio::sync::mpsc::UnboundedSender<SwapJob>,
    origins: Vec<String>,
    index: HashMap<String, usize>,
    memory: Vec<Mutex<Memory>>,
    unregistered: AtomicUsize,
    /// The records' bytes as the re-read counts them, moved on by this process's writes in
    /// between.
    record_bytes: AtomicU64,
    /// Writes this process made: a re-read during which some were made does not set
    /// `record_bytes` exactly (its count may or may not include them).
    writes: AtomicU64,
    /// Bytes this process's writes added and removed since the last re-read began.
    added_since: AtomicU64,
    removed_since: AtomicU64,
    /// Re-reads in a row that could not set `record_bytes` exactly.
    inexact: AtomicU64,
    disk_bytes: AtomicU64,
    /// The last re-read's failure (`None`: it succeeded).
    failure: Mutex<Option<String>>,
}

impl Inner {
    fn memory(&self, log: usize) -> Option<std::sync::MutexGuard<'_, Memory>> {
        self.memory
            .get(log)
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn log(&self, origin: &str) -> Result<usize, WitnessStoreError> {
        self.index
            .get(origin)
            .copied()
            .ok_or_else(|| WitnessStoreError::UnknownOrigin(origin.to_owned()))
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, WitnessStoreError> {
        self.pool.get().await.map_err(|e| pool_error(&e))
    }

    /// Reads every log's record, the figures and the unregistered origins again.
    async fn refresh(&self) -> Result<(), WitnessStoreError> {
        let writes = self.writes.load(Ordering::SeqCst);
        self.added_since.store(0, Ordering::SeqCst);
        self.removed_since.store(0, Ordering::SeqCst);
        let client = self.client().await?;
        let mut read: HashMap<String, LogRecord> = HashMap::new();
        let mut unregistered = 0;
        for row in client
            .query(
                &format!("SELECT origin, {RECORD_COLUMNS} FROM witness_log"),
                &[],
            )
            .await
            .map_err(|e| db(&e))?
        {
            let origin: String = row.get(0);
            if !self.index.contains_key(&origin) {
                unregistered += 1;
                continue;
            }
            let (state, history) = record_of(&row, 1)?;
            let r = read.entry(origin).or_default();
            r.state = Some(state);
            r.history = history;
        }
        for row in client
            .query(
                "SELECT origin, kind, count(*) FROM witness_evidence GROUP BY origin, kind",
                &[],
            )
            .await
            .map_err(|e| db(&e))?
        {
            let origin: String = row.get(0);
            let kind: i16 = row.get(1);
            let n: i64 = row.get(2);
            let kind = u8::try_from(kind).ok().and_then(EvidenceKind::from_index);
            if let (Some(kind), true) = (kind, self.index.contains_key(&origin)) {
                let counts = &mut read.entry(origin).or_default().evidence;
                counts.counts[kind.index()] = u64::try_from(n).unwrap_or(0);
            }
        }
        let bytes = client
            .query_one(
                "SELECT
                   (SELECT coalesce(sum(octet_length(origin) + octet_length(checkpoint) + 56), 0)
                      FROM witness_log)
                 + (SELECT coalesce(sum(octet_length(l.origin) + octet_length(h) + 56), 0)
                      FROM witness_log l, unnest(l.h_checkpoint) h)
                 + (SELECT coalesce(sum(octet_length(origin) + octet_length(record) + 50), 0)
                      FROM witness_evidence),
                 (SELECT sum(pg_total_relation_size(c))::bigint
                    FROM unnest(ARRAY['witness_log', 'witness_evidence',
                                      'witness_legacy_alerts']::regclass[]) c)",
                &[],
            )
            .await
            .map_err(|e| db(&e))?;
        let record_bytes: i64 = bytes.try_get(0).map_err(|e| db(&e))?;
        let disk_bytes: Option<i64> = bytes.try_get(1).map_err(|e| db(&e))?;
        let record_bytes = u64::try_from(record_bytes).unwrap_or(0);
        if self.writes.load(Ordering::SeqCst) == writes {
            self.record_bytes.store(record_bytes, Ordering::SeqCst);
            self.inexact.store(0, Ordering::SeqCst);
        } else if self.inexact.fetch_add(1, Ordering::SeqCst) >= 4 {
            // Busy: the count read, with this process's writes since it began (some of
            // which it may hold already: off by at most those, until a quiet moment).
            let now = record_bytes
                .saturating_add(self.added_since.load(Ordering::SeqCst))
                .saturating_sub(self.removed_since.load(Ordering::SeqCst));
            self.record_bytes.store(now, Ordering::SeqCst);
            self.inexact.store(0, Ordering::SeqCst);
        }
        let disk_bytes = disk_bytes.unwrap_or(0);
        self.disk_bytes
            .store(u64::try_from(disk_bytes).unwrap_or(0), Ordering::Relaxed);
        for (origin, record) in read {
            if let Some(mut m) = self.log(&origin).ok().and_then(|i| self.memory(i)) {
                m.update(record);
            }
        }
        self.unregistered.store(unregistered, Ordering::Relaxed);
        Ok(())
    }

    /// Runs `batch`'s compare-and-swaps in one statement (one transaction, one round trip:
    /// `witness_replace_all`); their outcomes, in order, once it has committed.
    async fn swap_all(&self, batch: &[SwapJob]) -> Result<Vec<Swapped>, WitnessStoreError> {
        let n = batch.len();
        let mut origin = Vec::with_capacity(n);
        let mut expected = Vec::with_capacity(n);
        let mut expected_size = Vec::with_capacity(n);
        let mut expected_root = Vec::with_capacity(n);
        let mut new = StateArrays::default();
        for job in batch {
            let (s, r) = match job.expected {
                Some((s, r)) => (to_i64(s, "size")?, r.to_vec()),
                None => (0, Vec::new()),
            };
            origin.push(job.origin.as_str());
            expected.push(job.expected.is_some());
            expected_size.push(s);
            expected_root.push(r);
            new.push(&job.new)?;
        }
        let history = i32::try_from(HISTORY).unwrap_or(i32::MAX);
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT o_index, o_stored, o_size, o_root, o_cosigned_at, o_checkpoint
                 FROM witness_replace_all($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ORDER BY o_index",
            )
            .await
            .map_err(|e| db(&e))?;
        let rows = client
            .query(
                &statement,
                &[
                    &origin,
                    &expected,
                    &expected_size,
                    &expected_root,
                    &new.size,
                    &new.root,
                    &new.cosigned_at,
                    &new.checkpoint,
                    &history,
                ],
            )
            .await
            .map_err(|e| db(&e))?;
        if rows.len() != n {
            return Err(WitnessStoreError::Database(format!(
                "witness_replace_all answered {} of {n} compare-and-swaps",
                rows.len()
            )));
        }
        let mut outcomes = Vec::with_capacity(n);
        for row in &rows {
            let stored: bool = row.try_get(1).map_err(|e| db(&e))?;
            outcomes.push(if stored {
                Swapped::Stored
            } else {
                let size: Option<i64> = row.try_get(2).map_err(|e| db(&e))?;
                Swapped::Moved(match size {
                    None => None,
                    Some(_) => Some(state_of(row, 2)?),
                })
            });
        }
        Ok(outcomes)
    }

    /// Counts a write of this process: `added` bytes of records stored, `removed` gone.
    fn wrote(&self, added: u64, removed: u64) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.added_since.fetch_add(added, Ordering::SeqCst);
        self.removed_since.fetch_add(removed, Ordering::SeqCst);
        let _ = self
            .record_bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                Some(b.saturating_add(added).saturating_sub(removed))
            });
    }

    /// Reads one log's record again.
    async fn read_record(&self, origin: &str) -> Result<LogRecord, WitnessStoreError> {
        let client = self.client().await?;
        let mut record = LogRecord::default();
        if let Some(row) = client
            .query_opt(
                &format!("SELECT {RECORD_COLUMNS} FROM witness_log WHERE origin = $1"),
                &[&origin],
            )
            .await
            .map_err(|e| db(&e))?
        {
            let (state, history) = record_of(&row, 0)?;
            record.state = Some(state);
            record.history = history;
        }
        for row in client
            .query(
                "SELECT kind, count(*) FROM witness_evidence WHERE origin = $1 GROUP BY kind",
                &[&origin],
            )
            .await
            .map_err(|e| db(&e))?
        {
            let kind: i16 = row.get(0);
            let n: i64 = row.get(1);
            if let Some(kind) = u8::try_from(kind).ok().and_then(EvidenceKind::from_index) {
                record.evidence.counts[kind.index()] = u64::try_from(n).unwrap_or(0);
            }
        }
        Ok(record)
    }
}

/// The bytes of a state or history row, as the re-read counts them (origin, checkpoint,
/// and 56 for size, root, cosigned_at).
fn row_bytes(origin: &str, checkpoint: &str) -> u64 {
    (origin.len() + checkpoint.len() + 56) as u64
}

/// The witness store on PostgreSQL. Cheap to clone; the re-reading task stops with the
/// last clone.
#[derive(Clone)]
pub struct PostgresWitnessStore {
    inner: Arc<Inner>,
    _refresher: Arc<AbortOnDrop>,
    _committer: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for PostgresWitnessStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresWitnessStore")
            .field("logs", &self.inner.origins.len())
            .finish_non_exhaustive()
    }
}

impl PostgresWitnessStore {
    /// Connects to the database, checks its schema is [`SCHEMA_VERSION`] (`auditstamp
    /// witness migrate` makes it so), reads the records of the logs `origins` and starts
    /// re-reading them every `settings.refresh`. Records of other origins stay untouched.
    pub async fn open(
        settings: &PostgresSettings,
        origins: &[String],
    ) -> Result<PostgresWitnessStore, WitnessStoreError> {
        let mut index = HashMap::new();
        for (i, o) in origins.iter().enumerate() {
            if index.insert(o.clone(), i).is_some() {
                return Err(WitnessStoreError::DuplicateOrigin(o.clone()));
            }
        }
        let pool = settings.pool()?;
        {
            let client = pool.get().await.map_err(|e| pool_error(&e))?;
            let client: &tokio_postgres::Client = &client;
            match schema_version(client).await? {
                Some(SCHEMA_VERSION) => {}
                Some(v) if v > SCHEMA_VERSION => return Err(newer(v)),
                found => {
                    return Err(WitnessStoreError::Database(format!(
                        "the witness schema is at version {}, this binary needs {SCHEMA_VERSION}: \
                         run `auditstamp witness migrate --config <witness.toml>`",
                        found.unwrap_or(0)
                    )))
                }
            }
        }
        let (swaps, jobs) = tokio::sync::mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            pool,
            swaps,
            origins: origins.to_vec(),
            index,
            memory: origins.iter().map(|_| Mutex::default()).collect(),
            unregistered: AtomicUsize::new(0),
            record_bytes: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            added_since: AtomicU64::new(0),
            removed_since: AtomicU64::new(0),
            inexact: AtomicU64::new(0),
            disk_bytes: AtomicU64::new(0),
            failure: Mutex::new(None),
        });
        inner.refresh().await?;
        let every = settings.refresh.max(Duration::from_millis(50));
        let committer = tokio::spawn(commit_swaps(Arc::downgrade(&inner), jobs));
        let limit = (every + settings.connect_timeout) * 2;
        let refresher = tokio::spawn(refresh_every(Arc::downgrade(&inner), every, limit));
        Ok(PostgresWitnessStore {
            inner,
            _refresher: Arc::new(AbortOnDrop(refresher)),
            _committer: Arc::new(AbortOnDrop(committer)),
        })
    }
}

/// Most compare-and-swaps one transaction takes (more wait for the next one).
const MAX_SWAPS_PER_COMMIT: usize = 512;

/// A compare-and-swap waiting for the committer.
struct SwapJob {
    origin: String,
    expected: Expected,
    new: LogState,
    reply: tokio::sync::oneshot::Sender<Result<Swapped, WitnessStoreError>>,
}

/// How one compare-and-swap ended.
enum Swapped {
    Stored,
    /// Not stored; the state recorded now.
    Moved(Option<LogState>),
}

/// The committer (group commit): takes every compare-and-swap waiting (at least one) and
/// runs them in one transaction, in the order of their origins (so that two servers' batches
/// lock rows in the same order and never deadlock) and, for one origin, in arrival order;
/// answers them after its commit, or all with the error when it fails. Stops with the store.
async fn commit_swaps(
    inner: std::sync::Weak<Inner>,
    mut jobs: tokio::sync::mpsc::UnboundedReceiver<SwapJob>,
) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_SWAPS_PER_COMMIT {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        batch.sort_by(|a, b| a.origin.cmp(&b.origin));
        match inner.swap_all(&batch).await {
            Ok(outcomes) => {
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                let text = e.to_string();
                for job in batch {
                    let _ = job
                        .reply
                        .send(Err(WitnessStoreError::Database(text.clone())));
                }
            }
        }
    }
}

/// Re-reads every `every` until the store is gone, giving up on a re-read after `limit`;
/// keeps the last failure for `health`.
async fn refresh_every(inner: std::sync::Weak<Inner>, every: Duration, limit: Duration) {
    let mut next = Instant::now() + every;
    loop {
        tokio::time::sleep_until(next.into()).await;
        next = Instant::now() + every;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let result = match tokio::time::timeout(limit, inner.refresh()).await {
            Ok(r) => r,
            Err(_) => Err(WitnessStoreError::Database(format!(
                "no answer within {} ms",
                limit.as_millis()
            ))),
        };
        let mut failure = inner.failure.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(()) => {
                if failure.take().is_some() {
                    tracing::info!("the witness database answers again");
                }
            }
            Err(e) => {
                if failure.is_none() {
                    tracing::warn!(error = %e, "the witness database does not answer");
                }
                *failure = Some(e.to_string());
            }
        }
    }
}

impl WitnessStore for PostgresWitnessStore {
    fn origins(&self) -> &[String] {
        &self.inner.origins
    }

    fn unregistered(&self) -> usize {
        self.inner.unregistered.load(Ordering::Relaxed)
    }

    fn record(&self, origin: &str) -> Result<LogRecord, WitnessStoreError> {
        let log = self.inner.log(origin)?;
        Ok(self
            .inner
            .memory(log)
            .map(|m| m.record.clone())
            .unwrap_or_default())
    }

    fn current<'a>(
        &'a self,
        origin: &'a str,
    ) -> BoxFuture<'a, Result<LogRecord, WitnessStoreError>> {
        Box::pin(async move {
            let log = self.inner.log(origin)?;
            let read = self.inner.read_record(origin).await?;
            let mut m = self
                .inner
                .memory(log)
                .ok_or_else(|| WitnessStoreError::UnknownOrigin(origin.to_owned()))?;
            m.update(read.clone());
            // What is durable now, with this process's own counts beside it.
            Ok(LogRecord {
                evidence: m.record.evidence,
                ..read
            })
        })
    }

    fn latest(&self, origin: &str) -> Result<Option<LogState>, WitnessStoreError> {
        Ok(self.record(origin)?.state)
    }

    fn evidence_counts(&self, origin: &str) -> Result<EvidenceCounts, WitnessStoreError> {
        Ok(self.record(origin)?.evidence)
    }

    fn evidence<'a>(
        &'a self,
        origin: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Evidence>, WitnessStoreError>> {
        Box::pin(async move {
            self.inner.log(origin)?;
            let client = self.inner.client().await?;
            let rows = client
                .query(
                    "SELECT record FROM witness_evidence WHERE origin = $1 ORDER BY seen_at, id",
                    &[&origin],
                )
                .await
                .map_err(|e| db(&e))?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let bytes: Vec<u8> = row.get(0);
                match Evidence::decode(&bytes) {
                    Ok(e) => out.push(e),
                    Err(e) => tracing::error!(%origin, error = %e, "a damaged evidence record"),
                }
            }
            Ok(out)
        })
    }

    fn legacy_alerts<'a>(
        &'a self,
        origin: &'a str,
    ) -> BoxFuture<'a, Result<Option<LegacyAlerts>, WitnessStoreError>> {
        Box::pin(async move {
            self.inner.log(origin)?;
            let client = self.inner.client().await?;
            let row = client
                .query_opt(
                    "SELECT record FROM witness_legacy_alerts WHERE origin = $1",
                    &[&origin],
                )
                .await
                .map_err(|e| db(&e))?;
            row.map(|r| LegacyAlerts::decode(&r.get::<_, Vec<u8>>(0)))
                .transpose()
        })
    }

    fn replace<'a>(
        &'a self,
        origin: &'a str,
        expected: Expected,
        new: LogState,
    ) -> BoxFuture<'a, Result<Outcome, WitnessStoreError>> {
        Box::pin(async move {
            let log = self.inner.log(origin)?;
            let (reply, answer) = tokio::sync::oneshot::channel();
            self.inner
                .swaps
                .send(SwapJob {
                    origin: origin.to_owned(),
                    expected,
                    new: new.clone(),
                    reply,
                })
                .map_err(|_| WitnessStoreError::Stopped)?;
            let swapped = answer.await.map_err(|_| WitnessStoreError::Stopped)??;
            let Some(mut m) = self.inner.memory(log) else {
                return Err(WitnessStoreError::UnknownOrigin(origin.to_owned()));
            };
            match swapped {
                Swapped::Stored => {
                    // Unless a re-read already brought a later state (another server's).
                    if m.record.state.as_ref().is_none_or(|s| s.size <= new.size) {
                        let record = &mut m.record;
                        let added = row_bytes(origin, &new.checkpoint);
                        let mut removed = 0;
                        if let Some(old) = record.state.take() {
                            if new.size > old.size {
                                record.history.push(old);
                            } else {
                                removed += row_bytes(origin, &old.checkpoint);
                            }
                        }
                        let keep_from = record.history.len().saturating_sub(HISTORY);
                        for evicted in record.history.drain(..keep_from) {
                            removed += row_bytes(origin, &evicted.checkpoint);
                        }
                        record.state = Some(new);
                        self.inner.wrote(added, removed);
                    }
                    Ok(Outcome::Stored)
                }
                // Moved on by another server (or the expected state was never there): the
                // state recorded now, which this process also remembers (its history comes
                // with the next re-read, or with `current`).
                Swapped::Moved(now) => {
                    if let Some(now) = &now {
                        if m.record.state.as_ref().is_none_or(|s| now.size > s.size) {
                            m.record.state = Some(now.clone());
                        }
                    }
                    Ok(Outcome::Moved(now))
                }
            }
        })
    }

    fn record_evidence<'a>(
        &'a self,
        origin: &'a str,
        evidence: Evidence,
    ) -> BoxFuture<'a, Result<EvidenceOutcome, WitnessStoreError>> {
        Box::pin(async move {
            let log = self.inner.log(origin)?;
            let id = evidence.id();
            let kind = i16::try_from(evidence.kind.index()).unwrap_or(i16::MAX);
            let encoded = evidence.encode();
            let encoded_len = encoded.len();
            let client = self.inner.client().await?;
            let answer: String = client
                .query_one(
                    "SELECT witness_keep_evidence($1, $2, $3, $4, $5, $6)",
                    &[
                        &origin,
                        &id.to_vec(),
                        &kind,
                        &to_i64(evidence.seen_at, "seen_at")?,
                        &encoded,
                        &i32::try_from(MAX_EVIDENCE_PER_LOG).unwrap_or(i32::MAX),
                    ],
                )
                .await
                .map_err(|e| db(&e))?
                .get(0);
            let mut m = self
                .inner
                .memory(log)
                .ok_or_else(|| WitnessStoreError::UnknownOrigin(origin.to_owned()))?;
            Ok(match answer.as_str() {
                "stored" => {
                    m.record.evidence.add(evidence.kind);
                    self.inner
                        .wrote(origin.len() as u64 + encoded_len as u64 + 50, 0);
                    EvidenceOutcome::Stored
                }
                "kept" => EvidenceOutcome::AlreadyKept,
                _ => {
                    if m.not_kept_ids.len() < MAX_NOT_KEPT_IDS && m.not_kept_ids.insert(id) {
                        m.record.evidence.not_kept = m.record.evidence.not_kept.saturating_add(1);
                    }
                    EvidenceOutcome::Full
                }
            })
        })
    }

    /// Bytes of the witness's tables and their indexes, as of the last re-read.
    fn disk_bytes(&self) -> Result<u64, WitnessStoreError> {
        Ok(self.inner.disk_bytes.load(Ordering::Relaxed))
    }

    /// Bytes of the records (keys and values), as of the last re-read.
    fn record_bytes(&self) -> u64 {
        self.inner.record_bytes.load(Ordering::Relaxed)
    }

    /// Fails while the last re-read of the database failed.
    fn health(&self) -> Result<(), WitnessStoreError> {
        match self
            .inner
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            None => Ok(()),
            Some(e) => Err(WitnessStoreError::Database(e.clone())),
        }
    }
}

#[cfg(test)]
mod tests;
