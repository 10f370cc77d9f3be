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
//! Archiving: complete bundles copied elsewhere can be pruned from the local disk
//! ([`EventLog::prune_below`]; the files record how far, see [`super::logfiles`]). The
//! stored hashes stay, so roots, proofs and hash tiles are unchanged and appends go on;
//! reads of a pruned event or bundle fail with [`LogError::Pruned`], and a bundle read
//! back from the archive is checked against the stored hashes ([`EventLog::check_bundle`]).
//! A log is restored from an archive by [`EventLog::append_leaves`]: leaf bytes as they
//! were stored, each at the index it carries, committed by the same committer (alone in
//! its commit, in order with the appends) with their stored hashes computed as for new
//! events.
//!
//! The move out of sled is in `log/migrate.rs`. Its one error type is [`LogError`].

mod migrate;

use std::borrow::Cow;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use super::event::{encode_leaf, Event, StoredEvent};
pub use super::logfiles::PruneOutcome;
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
    Files(LogFilesError),
    /// The event's bundle was pruned from the local disk ([`EventLog::prune_below`]) after
    /// it was archived: it is to be read from the archive.
    #[error(
        "event bundle {bundle} was pruned from local storage after it was archived; \
         read it from the archive"
    )]
    Pruned {
        /// The bundle (events `256·bundle ..`).
        bundle: u64,
    },
    /// The bundle is not complete (as [`EventLog::prune_below`] and
    /// [`EventLog::check_bundle`] need).
    #[error("event bundle {bundle} is not complete: the log holds {complete} complete bundles")]
    NotComplete {
        /// The bundle.
        bundle: u64,
        /// Complete bundles in the log.
        complete: u64,
    },
    /// A bundle from elsewhere (the archive) is not the one the log's stored hashes commit
    /// to ([`EventLog::check_bundle`]).
    #[error("entry bundle {bundle} does not match the log's stored hashes: {detail}")]
    BundleMismatch {
        /// The bundle.
        bundle: u64,
        /// The first event whose leaf does not match its stored hash; `None` when the
        /// bytes are not 256 records.
        index: Option<u64>,
        /// What is wrong.
        detail: String,
    },
    /// A leaf given to [`EventLog::append_leaves`] cannot be appended where it would go:
    /// it is not a stored event's leaf, or it carries another index. Nothing of the call
    /// was appended.
    #[error("the leaf for event {position} is refused: {detail}")]
    LeafRefused {
        /// The index it would have had.
        position: u64,
        /// What is wrong.
        detail: String,
    },
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

impl From<LogFilesError> for LogError {
    /// The files' errors, with a pruned or incomplete bundle told as such.
    fn from(e: LogFilesError) -> LogError {
        match e {
            LogFilesError::Pruned { bundle } => LogError::Pruned { bundle },
            LogFilesError::NotComplete { bundle, complete } => {
                LogError::NotComplete { bundle, complete }
            }
            other => LogError::Files(other),
        }
    }
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

/// Where the committer answers a job.
type Reply = oneshot::Sender<Result<Vec<Appended>, LogError>>;

/// What a job asks the committer to append.
enum Work {
    /// New events: given their indexes, salts and time of receipt, and committed together
    /// with the other events waiting.
    Events(Vec<Event>),
    /// Leaf bytes as stored elsewhere (a restore), each carrying its index: committed
    /// alone.
    Leaves(Vec<Vec<u8>>),
}

struct Job {
    work: Work,
    reply: Reply,
}

struct Shared {
    db: sled::Db,
    tree: sled::Tree,
    files: LogFiles,
    /// Group commits made (one sync of each file) since the log was opened.
    commits: AtomicU64,
    /// Told (without blocking) after each commit: see [`EventLog::commit_signal`].
    watchers: std::sync::Mutex<Vec<Sender<()>>>,
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
        if last / BUNDLE < files.pruned_below() {
            // Pruned after it was archived: its leaf is not here to check (the archive's
            // copy is checked when read back); its stored hash must still be.
            files.hash(tlog::stored_hash_index(0, last))?;
            return Ok(());
        }
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
            watchers: std::sync::Mutex::default(),
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
            .send(Job {
                work: Work::Events(events),
                reply,
            })
            .map_err(|_| LogError::Stopped)?;
        answer.await.map_err(|_| LogError::Stopped)?
    }

    /// Appends events already encoded (leaf bytes as [`encode_leaf`] makes them, read back
    /// from an archive to restore a log) as they are: not salted, timed or encoded again.
    /// Each must decode as a stored event whose index is where it goes (the log's size,
    /// then one more for each), or nothing is appended ([`LogError::LeafRefused`]). Their
    /// stored hashes and bundle ends are computed as for new events, in one durable commit
    /// of their own, in order with the appends sent before and after. Returns the log's
    /// size after them.
    pub async fn append_leaves(&self, leaves: Vec<Vec<u8>>) -> Result<u64, LogError> {
        if leaves.is_empty() {
            return Ok(self.size());
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                work: Work::Leaves(leaves),
                reply,
            })
            .map_err(|_| LogError::Stopped)?;
        let appended = answer.await.map_err(|_| LogError::Stopped)??;
        Ok(appended.last().map_or(self.size(), |a| a.index + 1))
    }

    /// Frees the local disk space of complete entry bundles `0..bundle` (events below
    /// `256·bundle`), once they are archived: their stored hashes, bundle ends, blocks and
    /// checkpoints stay, so roots, proofs and hash tiles are unchanged and appends go on;
    /// reads of their events fail with [`LogError::Pruned`] from then on, also after a
    /// reopen. Pruning only grows: a `bundle` at or below [`Self::pruned_below`] changes
    /// nothing; one beyond the complete bundles (`size / 256`) is refused
    /// ([`LogError::NotComplete`]). The prune is recorded durably before any space is
    /// freed; where the filesystem cannot free it (no hole punching), it is recorded all
    /// the same, a warning is logged and [`PruneOutcome::space_freed`] is false. Blocks on
    /// syncs (from async code, call it through `spawn_blocking`) and holds commits back
    /// meanwhile.
    pub fn prune_below(&self, bundle: u64) -> Result<PruneOutcome, LogError> {
        Ok(self.shared.files.prune_below(bundle)?)
    }

    /// Complete bundles below this are pruned from the local disk ([`Self::prune_below`]);
    /// 0 when none is.
    pub fn pruned_below(&self) -> u64 {
        self.shared.files.pruned_below()
    }

    /// Checks `bytes`, complete entry bundle `n` as read from elsewhere (the archive),
    /// against the log's stored hashes: 256 records whose leaf hashes are the stored
    /// level-0 hashes of events `256·n ..`. Returns its leaves; a bundle that does not
    /// match is [`LogError::BundleMismatch`], naming the first event that differs. Works
    /// for pruned bundles too (only the stored hashes are read): how an archived bundle is
    /// trusted.
    pub fn check_bundle(&self, n: u64, bytes: &[u8]) -> Result<Vec<Vec<u8>>, LogError> {
        let size = self.size();
        let complete = size / BUNDLE;
        if n >= complete {
            return Err(LogError::NotComplete {
                bundle: n,
                complete,
            });
        }
        let mismatch = |index: Option<u64>, detail: String| LogError::BundleMismatch {
            bundle: n,
            index,
            detail,
        };
        let leaves = split_records(bytes)
            .ok_or_else(|| mismatch(None, "its last record is cut off".into()))?;
        if leaves.len() as u64 != BUNDLE {
            return Err(mismatch(
                None,
                format!("it holds {} records, not {BUNDLE}", leaves.len()),
            ));
        }
        let first = n * BUNDLE;
        let indexes: Vec<u64> = (first..first + BUNDLE)
            .map(|i| tlog::stored_hash_index(0, i))
            .collect();
        let stored = self.hashes_at(size).read_hashes(&indexes)?;
        if stored.len() != leaves.len() {
            return Err(LogError::Tree(TlogError::ReaderMismatch {
                asked: leaves.len(),
                got: stored.len(),
            }));
        }
        for (i, (leaf, want)) in (first..).zip(leaves.iter().zip(&stored)) {
            if tlog::leaf_hash(leaf) != *want {
                return Err(mismatch(
                    Some(i),
                    format!("event {i} does not match its stored hash"),
                ));
            }
        }
        Ok(leaves.into_iter().map(<[u8]>::to_vec).collect())
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
        let at = usize::try_from(index % BUNDLE).unwrap_or(usize::MAX);
        Ok(self.bundle_leaves(index / BUNDLE)?.into_iter().nth(at))
    }

    /// The committed events of bundle `n` (events `256·n ..`), in order: 256 for a complete
    /// bundle, those committed so far of the incomplete one, none past the end.
    pub fn bundle_leaves(&self, n: u64) -> Result<Vec<Vec<u8>>, LogError> {
        match self.shared.files.bundle(n)? {
            Some(bundle) => decode_records(&bundle, n * BUNDLE, BUNDLE),
            None => {
                let (size, tail) = self.shared.files.tail()?;
                if n != size / BUNDLE {
                    return Ok(Vec::new());
                }
                decode_records(&tail, size / BUNDLE * BUNDLE, size % BUNDLE)
            }
        }
    }

    /// The stored records of bundle `n` as they are in the files (each a u16-BE length
    /// and the leaf bytes; read one with [`super::logfiles::nth_record`]): all 256 of a
    /// complete bundle, those committed so far of the incomplete one, none past the end.
    pub fn bundle_records(&self, n: u64) -> Result<Vec<u8>, LogError> {
        match self.shared.files.bundle(n)? {
            Some(bundle) => Ok(bundle),
            None => {
                let (size, tail) = self.shared.files.tail()?;
                Ok(if n == size / BUNDLE { tail } else { Vec::new() })
            }
        }
    }

    /// The leaf hash the tree stores for committed event `index` (what proofs and roots
    /// are built from).
    pub fn stored_leaf_hash(&self, index: u64) -> Result<Hash, LogError> {
        Ok(self.shared.files.hash(tlog::stored_hash_index(0, index))?)
    }

    /// A channel told after each commit (at most one signal waits; more commits meanwhile
    /// are told by that one): for a follower of the log, such as the search index, to
    /// wake up without polling. It stays connected while the log is open.
    pub fn commit_signal(&self) -> Receiver<()> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if let Ok(mut w) = self.shared.watchers.lock() {
            w.push(tx);
        }
        rx
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

    /// Bytes the database and the log's files occupy on disk (the files' allocated blocks:
    /// pruned bundles no longer count).
    pub fn disk_bytes(&self) -> Result<u64, LogError> {
        Ok(self.shared.db.size_on_disk()? + self.shared.files.disk_bytes()?)
    }
}

/// What a failed commit tells each job of it (the error is not `Clone`): the storage
/// being full, or the commit failing.
fn failed(e: &LogError) -> LogError {
    if e.is_storage_full() {
        LogError::StorageFull(e.to_string())
    } else {
        LogError::CommitFailed(e.to_string())
    }
}

impl Committer {
    /// Takes the jobs waiting (at least one) and commits them together, until every
    /// [`EventLog`] is gone. A job of leaves (a restore) is committed alone, in its turn.
    fn run(&mut self, rx: &Receiver<Job>) {
        let mut next: Option<Job> = None;
        while let Some(first) = next.take().or_else(|| rx.recv().ok()) {
            let first = match first.work {
                Work::Leaves(leaves) => {
                    let result = self.import(&leaves).map_err(|e| {
                        tracing::error!(error = %e, events = leaves.len(), "commit of restored events failed; nothing appended");
                        match e {
                            LogError::LeafRefused { .. } => e,
                            other => failed(&other),
                        }
                    });
                    let _ = first.reply.send(result);
                    self.tell_watchers();
                    continue;
                }
                Work::Events(events) => (events, first.reply),
            };
            let mut count = first.0.len();
            let mut group = vec![first];
            // Everything that is waiting joins: what arrived during the last commit (up to
            // a restore's job, which goes next, alone).
            while count < MAX_COMMIT_EVENTS {
                match rx.try_recv() {
                    Ok(Job {
                        work: Work::Events(events),
                        reply,
                    }) => {
                        count += events.len();
                        group.push((events, reply));
                    }
                    Ok(job) => {
                        next = Some(job);
                        break;
                    }
                    Err(_) => break,
                }
            }
            match self.commit(&group) {
                Ok(appended) => {
                    let mut rest = appended.as_slice();
                    for (events, reply) in group {
                        let (mine, tail) = rest.split_at(events.len().min(rest.len()));
                        rest = tail;
                        let _ = reply.send(Ok(mine.to_vec()));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, events = count, "event commit failed; nothing acknowledged");
                    for (_, reply) in group {
                        let _ = reply.send(Err(failed(&e)));
                    }
                }
            }
            self.tell_watchers();
        }
    }

    /// Signals each [`EventLog::commit_signal`] channel; one whose receiver is gone is
    /// forgotten.
    fn tell_watchers(&self) {
        if let Ok(mut w) = self.shared.watchers.lock() {
            w.retain(|tx| {
                !matches!(
                    tx.try_send(()),
                    Err(crossbeam_channel::TrySendError::Disconnected(_))
                )
            });
        }
    }

    /// Gives the group's events their indexes, salts and time of receipt, encodes them,
    /// and commits them all at once.
    fn commit(&self, group: &[(Vec<Event>, Reply)]) -> Result<Vec<Appended>, LogError> {
        let events: Vec<&Event> = group.iter().flat_map(|(events, _)| events).collect();
        let mut salts = vec![0u8; events.len() * 16];
        getrandom::getrandom(&mut salts).map_err(|e| LogError::Random(e.to_string()))?;
        let received_at_ms = unix_millis(self.clock.now()).unwrap_or(0);
        self.commit_leaves(
            events.into_iter().zip(salts.chunks_exact(16)),
            |n, (event, salt)| {
                let salt = salt.try_into().unwrap_or(&[0; 16]);
                Ok(Cow::Owned(encode_leaf(n, received_at_ms, salt, event)))
            },
        )
    }

    /// Commits restored leaves as they are, each checked to carry the index it goes to.
    fn import(&self, leaves: &[Vec<u8>]) -> Result<Vec<Appended>, LogError> {
        self.commit_leaves(leaves.iter(), |n, leaf| {
            let refused = |detail: String| LogError::LeafRefused {
                position: n,
                detail,
            };
            match StoredEvent::from_leaf_bytes(leaf) {
                Ok(stored) if stored.index == n => Ok(Cow::Borrowed(leaf.as_slice())),
                Ok(stored) => Err(refused(format!(
                    "it carries index {}, not its place in the log",
                    stored.index
                ))),
                Err(e) => Err(refused(format!("it is not a stored event's leaf: {e}"))),
            }
        })
    }

    /// Commits one event per item, in order, at the log's end: `leaf(index, item)` gives
    /// its leaf bytes. Computes their stored hashes and bundle ends and commits them all at
    /// once with one sync ([`LogFiles::commit`]); on an error nothing is committed.
    fn commit_leaves<'a, T>(
        &self,
        items: impl ExactSizeIterator<Item = T>,
        mut leaf: impl FnMut(u64, T) -> Result<Cow<'a, [u8]>, LogError>,
    ) -> Result<Vec<Appended>, LogError> {
        let files = &self.shared.files;
        let start = files.size();
        let total = items.len();
        let mem_start = tlog::stored_hash_count(start);
        let mut mem: Vec<Hash> = Vec::with_capacity(total * 2);
        let mut records = Vec::with_capacity(total * 320);
        let mut bundle_ends = Vec::new();
        let records_end = files.end();
        let mut appended = Vec::with_capacity(total);
        let mut n = start;
        for item in items {
            let leaf = leaf(n, item)?;
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
