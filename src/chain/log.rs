//! The event log: events and the Merkle tree's stored hashes in append-only files
//! ([`LogFiles`]), sealed blocks and the latest checkpoint in sled, written with group
//! commit.
//!
//! Layout: `<store>/log/` holds the events (each a u16-BE length and its leaf bytes
//! ([`StoredEvent::leaf_bytes`](super::event::StoredEvent::leaf_bytes)) back to back, so
//! complete bundle n is exactly what `GET /tile/entries/<n>` serves), the stored hashes,
//! where each bundle ends, and the head naming the last commit ([`super::logfiles`]). In
//! sled, tree `log`:
//! - `b` + height (u64 BE) → a sealed block ([`SealedBlock::encode`](super::block::SealedBlock::encode)).
//! - `m:checkpoint` → the latest signed checkpoint note.
//! - `k` + key id (SHA-256 of the DER SubjectPublicKeyInfo) → the DER SubjectPublicKeyInfo
//!   of every chain key that has signed blocks here, so an offline audit can name them.
//!
//! Stores written before the files kept events and hashes in sled too (`E` + n: complete
//! bundles; `e` + index: events of the incomplete one; `h` + n: 256 stored hashes;
//! `m:size`). Opening such a store moves them into the files, and only then removes them
//! from sled; an interrupted move starts over at the next open.
//!
//! Appends go to one committer thread. It takes every request waiting, gives the events
//! their indexes, salts and time of receipt, computes their stored hashes, and commits
//! them all at once with one sync ([`LogFiles::commit`]): concurrent requests share it,
//! and each reply comes only after the commit is durable. It never waits to start one: a
//! job that finds it idle is committed at once, and the jobs that arrive while a commit
//! syncs form the next group (the sync is the batch window, so groups grow with the load
//! and a lone client waits for one sync, never for a timer). A crash before the commit is
//! durable loses the batch whole and acknowledges none of it; a failed commit publishes
//! nothing, and the next one writes over its bytes.
//!
//! The move out of sled is in `log/migrate.rs`. Its one error type is [`LogError`].

mod migrate;

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use super::event::{encode_leaf, Event, StoredEvent};
use super::logfiles::{split_records, Batch, Hashes, LogFiles, LogFilesError};
use super::store::{Store, StoreError};
use super::tlog::{self, Hash, HashReader, TlogError};
use crate::clock::{unix_millis, Clock, SystemClock};

const TREE: &str = "log";
/// The directory of the log's files, in the store's directory.
pub const LOG_DIR: &str = "log";
const META_CHECKPOINT: &[u8] = b"m:checkpoint";
/// Where stores written before the log's files kept its size.
const OLD_META_SIZE: &[u8] = b"m:size";
/// Events per bundle (the C2SP entry-bundle width).
const BUNDLE: u64 = 256;
/// Most events one commit takes (more wait for the next one).
const MAX_COMMIT_EVENTS: usize = 50_000;

/// What can go wrong in the event log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The database failed (a disk error, or the disk is full).
    #[error("event log storage: {0}")]
    Storage(#[from] sled::Error),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored data does not have its expected form: the store is damaged.
    #[error("event log damaged: {0}")]
    Corrupt(String),
    /// The log's files failed (a disk error, the disk is full, or they are damaged).
    #[error(transparent)]
    Files(#[from] LogFilesError),
    /// The Merkle tree computation failed.
    #[error("merkle tree: {0}")]
    Tree(#[from] TlogError),
    /// The committer has stopped (the log is shutting down, or it could not start).
    #[error("the event log is not accepting events")]
    Stopped,
    /// A commit failed; nothing of it was acknowledged.
    #[error("events not stored: {0}")]
    CommitFailed(String),
    /// The disk is full (or the file-size limit reached): nothing of the commit was
    /// acknowledged; appends fail until space is freed.
    #[error("events not stored, the storage is full: {0}")]
    StorageFull(String),
    /// No randomness for the event salts.
    #[error("no randomness for event salts: {0}")]
    Random(String),
}

impl LogError {
    /// Whether this is the disk (or file-size limit) being full.
    pub fn is_storage_full(&self) -> bool {
        match self {
            LogError::StorageFull(_) => true,
            LogError::Files(e) => e.is_storage_full(),
            LogError::Storage(sled::Error::Io(e)) => {
                matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EFBIG))
                    || matches!(
                        e.kind(),
                        std::io::ErrorKind::StorageFull | std::io::ErrorKind::FileTooLarge
                    )
            }
            _ => false,
        }
    }
}

/// An event made durable: where it is and what its leaf hash is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The event's index in the log.
    pub index: u64,
    /// SHA-256(0x00 || leaf bytes).
    pub leaf_hash: Hash,
}

struct Job {
    events: Vec<Event>,
    reply: oneshot::Sender<Result<Vec<Appended>, LogError>>,
}

struct Shared {
    db: sled::Db,
    tree: sled::Tree,
    files: LogFiles,
    /// Group commits made (one sync of each file) since the log was opened.
    commits: AtomicU64,
}

/// The append-only event log. Cheap to clone; the committer stops when the last clone is
/// dropped, after finishing what it was given.
#[derive(Clone)]
pub struct EventLog {
    shared: Arc<Shared>,
    jobs: Sender<Job>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

fn key(prefix: u8, n: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

/// The number a 9-byte `prefix + u64 BE` key names, with its value.
fn numbered(kv: Result<(sled::IVec, sled::IVec), sled::Error>) -> Result<(u64, Vec<u8>), LogError> {
    let (k, v) = kv?;
    let n: [u8; 8] = k
        .get(1..9)
        .and_then(|s| s.try_into().ok())
        .filter(|_| k.len() == 9)
        .ok_or_else(|| {
            LogError::Corrupt(format!("a key of {} bytes where 9 were expected", k.len()))
        })?;
    Ok((u64::from_be_bytes(n), v.to_vec()))
}

/// Decodes `bytes` (records of `count` events from `first` on) into their leaves.
fn decode_records(bytes: &[u8], first: u64, count: u64) -> Result<Vec<Vec<u8>>, LogError> {
    let leaves = split_records(bytes).ok_or_else(|| {
        LogError::Corrupt(format!("events {first}..{} end cut off", first + count))
    })?;
    if leaves.len() as u64 != count {
        return Err(LogError::Corrupt(format!(
            "events {first}..{} are stored as {} records",
            first + count,
            leaves.len()
        )));
    }
    Ok(leaves.into_iter().map(<[u8]>::to_vec).collect())
}

/// Appends `leaf` to `records` as a u16-BE length and the bytes.
fn push_record(records: &mut Vec<u8>, leaf: &[u8]) -> Result<(), LogError> {
    let len = u16::try_from(leaf.len()).map_err(|_| TlogError::EntryTooLarge(leaf.len()))?;
    records.extend_from_slice(&len.to_be_bytes());
    records.extend_from_slice(leaf);
    Ok(())
}

/// Checks the last committed event against the stored hashes: its index is its place,
/// and its leaf hash is the one stored for it. Cheap, and catches files that were
/// swapped, cut or overwritten near the end (`chain verify` checks everything).
fn check_last(files: &LogFiles) -> Result<(), LogError> {
    let size = files.size();
    let Some(last) = size.checked_sub(1) else {
        return Ok(());
    };
    let (_, tail) = files.tail()?;
    let leaf = if size.is_multiple_of(BUNDLE) {
        let bundle = files.bundle(last / BUNDLE)?.unwrap_or_default();
        decode_records(&bundle, last / BUNDLE * BUNDLE, BUNDLE)?.pop()
    } else {
        decode_records(&tail, size / BUNDLE * BUNDLE, size % BUNDLE)?.pop()
    }
    .unwrap_or_default();
    let stored = files.hash(tlog::stored_hash_index(0, last))?;
    let index = StoredEvent::from_leaf_bytes(&leaf).map(|e| e.index).ok();
    if index != Some(last) || tlog::leaf_hash(&leaf) != stored {
        return Err(LogError::Corrupt(format!(
            "the last event ({last}) does not match its stored hash"
        )));
    }
    Ok(())
}

/// Checks that the log holds every event the last sealed block covers: blocks are sealed
/// over durable events only, so fewer means events were lost or damaged after they were
/// acknowledged (an interrupted commit is never sealed).
fn check_sealed(tree: &sled::Tree, files: &LogFiles) -> Result<(), LogError> {
    let Some((height, encoded)) = tree
        .range(key(b'b', 0)..=key(b'b', u64::MAX))
        .next_back()
        .map(numbered)
        .transpose()?
    else {
        return Ok(());
    };
    let sealed = super::block::SealedBlock::decode(&encoded)
        .map_err(|e| LogError::Corrupt(format!("block {height}: {e}")))?
        .header
        .tree_size;
    let size = files.size();
    if sealed > size {
        return Err(LogError::Corrupt(format!(
            "block {height} seals {sealed} events, but only {size} are stored intact: \
             events {size}..{sealed} are damaged or missing"
        )));
    }
    Ok(())
}

/// What only the committer thread touches.
struct Committer {
    shared: Arc<Shared>,
    /// Where each commit's `received_at` comes from.
    clock: Arc<dyn Clock>,
}

impl EventLog {
    /// Opens the log in `store` (moving an older store's events out of sled first),
    /// checks its last event against its hashes, and starts the committer thread; events
    /// are received at the system clock's time.
    pub fn open(store: &Store) -> Result<EventLog, LogError> {
        EventLog::open_with_clock(store, Arc::new(SystemClock))
    }

    /// [`EventLog::open`] with the clock that gives each commit its receive time.
    pub fn open_with_clock(store: &Store, clock: Arc<dyn Clock>) -> Result<EventLog, LogError> {
        let tree = store.tree(TREE)?;
        let dir = store.dir().join(LOG_DIR);
        let old = migrate::has_old_layout(&tree)?;
        let files = if dir.exists() {
            LogFiles::open(&dir)?
        } else if old {
            migrate::move_out_of_sled(&tree, &dir)?
        } else {
            LogFiles::open_or_create(&dir)?
        };
        if old {
            // In the files now (this time or before an interruption): gone from sled.
            migrate::remove_old_layout(store, &tree)?;
        }
        check_last(&files)?;
        check_sealed(&tree, &files)?;
        let shared = Arc::new(Shared {
            db: store.db().clone(),
            tree,
            files,
            commits: AtomicU64::new(0),
        });
        let (jobs, rx) = crossbeam_channel::unbounded();
        let mut committer = Committer {
            shared: Arc::clone(&shared),
            clock,
        };
        std::thread::Builder::new()
            .name("event-commit".into())
            .spawn(move || committer.run(&rx))
            .map_err(|e| LogError::CommitFailed(format!("cannot start the committer: {e}")))?;
        Ok(EventLog { shared, jobs })
    }

    /// Appends `events` and returns once they are durable, in order.
    pub async fn append(&self, events: Vec<Event>) -> Result<Vec<Appended>, LogError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { events, reply })
            .map_err(|_| LogError::Stopped)?;
        answer.await.map_err(|_| LogError::Stopped)?
    }

    /// Group commits made since the log was opened (events per commit is the group
    /// size).
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// The number of committed (durable) events.
    pub fn size(&self) -> u64 {
        self.shared.files.size()
    }

    /// The leaf bytes of committed event `index`.
    pub fn leaf(&self, index: u64) -> Result<Option<Vec<u8>>, LogError> {
        if index >= self.size() {
            return Ok(None);
        }
        let n = index / BUNDLE;
        let at = usize::try_from(index % BUNDLE).unwrap_or(usize::MAX);
        let leaves = match self.shared.files.bundle(n)? {
            Some(bundle) => decode_records(&bundle, n * BUNDLE, BUNDLE)?,
            None => {
                let (size, tail) = self.shared.files.tail()?;
                decode_records(&tail, size / BUNDLE * BUNDLE, size % BUNDLE)?
            }
        };
        Ok(leaves.into_iter().nth(at))
    }

    /// The stored entry bundle `n` (events `256·n ..`), when it is complete: the bytes
    /// `GET /tile/entries/<n>` serves.
    pub fn full_bundle(&self, n: u64) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.shared.files.bundle(n)?)
    }

    /// The leaf bytes of committed events `range`, in order.
    pub fn leaves(&self, range: Range<u64>) -> Result<Vec<Vec<u8>>, LogError> {
        let end = range.end.min(self.size());
        let mut out = Vec::new();
        for item in self.events_from(range.start) {
            let (i, leaf) = item?;
            if i >= end {
                break;
            }
            out.push(leaf);
        }
        if out.len() as u64 != end.saturating_sub(range.start) {
            return Err(LogError::Corrupt(format!(
                "events {}..{end} are not all stored",
                range.start
            )));
        }
        Ok(out)
    }

    /// Committed events from `start` on, in index order, with the index each is stored
    /// under: complete bundles first, then the incomplete one's events.
    pub fn events_from(
        &self,
        start: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), LogError>> + '_ {
        let size = self.size();
        let full = size / BUNDLE;
        let files = &self.shared.files;
        let bundles = (start / BUNDLE..=full).flat_map(move |n| {
            let decoded = if n < full {
                files
                    .bundle(n)
                    .map_err(LogError::from)
                    .and_then(|b| {
                        b.ok_or_else(|| LogError::Corrupt(format!("bundle {n} is missing")))
                    })
                    .and_then(|b| decode_records(&b, n * BUNDLE, BUNDLE))
            } else {
                // The incomplete bundle, as of the size this iteration started at (later
                // commits only add to it).
                files
                    .tail()
                    .map_err(LogError::from)
                    .and_then(|(now, tail)| {
                        let mut leaves = decode_records(&tail, n * BUNDLE, now - n * BUNDLE)?;
                        leaves.truncate(usize::try_from(size - n * BUNDLE).unwrap_or(0));
                        Ok(leaves)
                    })
            };
            match decoded {
                Ok(v) => v
                    .into_iter()
                    .enumerate()
                    .map(|(i, leaf)| Ok((n * BUNDLE + i as u64, leaf)))
                    .collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            }
        });
        bundles.filter(move |r| r.as_ref().map_or(true, |(i, _)| *i >= start))
    }

    /// A reader of the stored hashes of the first `size` events (at most the committed
    /// size).
    pub fn hashes_at(&self, size: u64) -> impl HashReader + '_ {
        Hashes {
            files: &self.shared.files,
            count: tlog::stored_hash_count(size.min(self.size())),
            mem_start: u64::MAX,
            mem: &[],
        }
    }

    /// Stores sealed block `height` (as encoded) with the checkpoint signed over it, in
    /// one durable write.
    pub fn put_block(&self, height: u64, encoded: &[u8], checkpoint: &str) -> Result<(), LogError> {
        let mut batch = sled::Batch::default();
        batch.insert(&key(b'b', height), encoded);
        batch.insert(META_CHECKPOINT, checkpoint.as_bytes());
        self.shared.tree.apply_batch(batch)?;
        self.shared.db.flush()?;
        Ok(())
    }

    /// Replaces the latest checkpoint note with `checkpoint` (the same body, cosignatures
    /// added) if the stored one is still `current`, and makes it durable; whether it was
    /// (false: another note was stored meanwhile, such as a newer block's).
    pub fn replace_checkpoint(&self, current: &str, checkpoint: &str) -> Result<bool, LogError> {
        let swapped = self.shared.tree.compare_and_swap(
            META_CHECKPOINT,
            Some(current.as_bytes()),
            Some(checkpoint.as_bytes()),
        )?;
        if swapped.is_err() {
            return Ok(false);
        }
        self.shared.db.flush()?;
        Ok(true)
    }

    /// Stores `checkpoint` as the latest checkpoint note, whatever was stored, and makes it
    /// durable (at startup, to repair a note that is not the last block's).
    pub fn put_checkpoint(&self, checkpoint: &str) -> Result<(), LogError> {
        self.shared
            .tree
            .insert(META_CHECKPOINT, checkpoint.as_bytes())?;
        self.shared.db.flush()?;
        Ok(())
    }

    /// Sealed block `height`, as stored.
    pub fn block(&self, height: u64) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.shared.tree.get(key(b'b', height))?.map(|v| v.to_vec()))
    }

    /// The last sealed block: (height, encoded), if any.
    pub fn latest_block(&self) -> Result<Option<(u64, Vec<u8>)>, LogError> {
        self.shared
            .tree
            .range(key(b'b', 0)..=key(b'b', u64::MAX))
            .next_back()
            .map(numbered)
            .transpose()
    }

    /// The latest signed checkpoint note, if one was published.
    pub fn checkpoint(&self) -> Result<Option<String>, LogError> {
        self.shared
            .tree
            .get(META_CHECKPOINT)?
            .map(|v| {
                String::from_utf8(v.to_vec())
                    .map_err(|_| LogError::Corrupt("the checkpoint is not UTF-8".into()))
            })
            .transpose()
    }

    /// Every stored block in height order, as stored: for offline verification.
    pub fn blocks(&self) -> impl Iterator<Item = Result<(u64, Vec<u8>), LogError>> + '_ {
        self.shared
            .tree
            .range(key(b'b', 0)..=key(b'b', u64::MAX))
            .map(numbered)
    }

    /// Every committed event's leaf bytes in index order, with the index it is stored
    /// under: for offline verification.
    pub fn events(&self) -> impl Iterator<Item = Result<(u64, Vec<u8>), LogError>> + '_ {
        self.events_from(0)
    }

    /// Records chain key `spki_der` (durably) under its key id, if not recorded yet.
    pub fn record_chain_key(&self, key_id: &Hash, spki_der: &[u8]) -> Result<(), LogError> {
        let mut k = vec![b'k'];
        k.extend_from_slice(key_id);
        if self.shared.tree.get(&k)?.as_deref() != Some(spki_der) {
            self.shared.tree.insert(k, spki_der)?;
            self.shared.db.flush()?;
        }
        Ok(())
    }

    /// Every chain key recorded: (key id, DER SubjectPublicKeyInfo).
    pub fn chain_keys(&self) -> Result<Vec<(Hash, Vec<u8>)>, LogError> {
        let mut out = Vec::new();
        for kv in self.shared.tree.scan_prefix(b"k") {
            let (k, v) = kv?;
            let id: Hash = k.get(1..).and_then(|s| s.try_into().ok()).ok_or_else(|| {
                LogError::Corrupt("a chain key record's key is not 33 bytes".into())
            })?;
            out.push((id, v.to_vec()));
        }
        Ok(out)
    }

    /// The stored hashes in stored-hash order, as stored (for offline audit), 256 at a
    /// time: (n, the bytes of hashes `256·n ..`, the last run possibly shorter).
    pub fn stored_hash_values(
        &self,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), LogError>> + '_ {
        let count = tlog::stored_hash_count(self.size());
        (0..count.div_ceil(256)).map(move |n| {
            let len = (count - n * 256).min(256);
            Ok((n, self.shared.files.hash_bytes(n * 256, len)?))
        })
    }

    /// Makes the tree's stored hashes durable up to the committed size (otherwise done
    /// every so many events, and recomputed from the events at the next start): for a
    /// clean stop, after the last append.
    pub fn sync_derived(&self) -> Result<(), LogError> {
        Ok(self.shared.files.sync_derived()?)
    }

    /// Bytes the database and the log's files occupy on disk.
    pub fn disk_bytes(&self) -> Result<u64, LogError> {
        Ok(self.shared.db.size_on_disk()? + self.shared.files.disk_bytes()?)
    }
}

impl Committer {
    /// Takes the jobs waiting (at least one) and commits them together, until every
    /// [`EventLog`] is gone.
    fn run(&mut self, rx: &Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut count = first.events.len();
            let mut jobs = vec![first];
            // Everything that is waiting joins: what arrived during the last commit.
            while count < MAX_COMMIT_EVENTS {
                match rx.try_recv() {
                    Ok(job) => {
                        count += job.events.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            match self.commit(&jobs) {
                Ok(appended) => {
                    let mut rest = appended.as_slice();
                    for job in jobs {
                        let (mine, tail) = rest.split_at(job.events.len().min(rest.len()));
                        rest = tail;
                        let _ = job.reply.send(Ok(mine.to_vec()));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, events = count, "event commit failed; nothing acknowledged");
                    let text = e.to_string();
                    let full = e.is_storage_full();
                    for job in jobs {
                        let err = if full {
                            LogError::StorageFull(text.clone())
                        } else {
                            LogError::CommitFailed(text.clone())
                        };
                        let _ = job.reply.send(Err(err));
                    }
                }
            }
        }
    }

    /// Gives the jobs' events their indexes, encodes them, computes their stored hashes,
    /// and commits them all at once.
    fn commit(&mut self, jobs: &[Job]) -> Result<Vec<Appended>, LogError> {
        let files = &self.shared.files;
        let start = files.size();
        let total: usize = jobs.iter().map(|j| j.events.len()).sum();
        let mut salts = vec![0u8; total * 16];
        getrandom::getrandom(&mut salts).map_err(|e| LogError::Random(e.to_string()))?;
        let mem_start = tlog::stored_hash_count(start);
        let mut mem: Vec<Hash> = Vec::with_capacity(total * 2);
        let mut records = Vec::with_capacity(total * 320);
        let mut bundle_ends = Vec::new();
        let records_end = files.end();
        let mut appended = Vec::with_capacity(total);
        let received_at_ms = unix_millis(self.clock.now()).unwrap_or(0);
        let mut n = start;
        for (event, salt) in jobs
            .iter()
            .flat_map(|j| j.events.iter())
            .zip(salts.chunks_exact(16))
        {
            let leaf = encode_leaf(
                n,
                received_at_ms,
                salt.try_into().unwrap_or(&[0; 16]),
                event,
            );
            push_record(&mut records, &leaf)?;
            let leaf_hash = tlog::leaf_hash(&leaf);
            let reader = Hashes {
                files,
                count: mem_start + mem.len() as u64,
                mem_start,
                mem: &mem,
            };
            let new_hashes = tlog::stored_hashes_for_record(n, leaf_hash, &reader)?;
            mem.extend(new_hashes);
            appended.push(Appended {
                index: n,
                leaf_hash,
            });
            n += 1;
            if n.is_multiple_of(BUNDLE) {
                bundle_ends.push(records_end + records.len() as u64);
            }
        }
        let hashes: Vec<u8> = mem.iter().flatten().copied().collect();
        files.commit(&Batch {
            size: n,
            records: &records,
            hashes: &hashes,
            bundle_ends: &bundle_ends,
        })?;
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
        Ok(appended)
    }
}

#[cfg(test)]
mod tests;
