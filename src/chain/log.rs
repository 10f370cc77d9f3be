//! The event log in sled: events, the Merkle tree's stored hashes, sealed blocks and the
//! latest checkpoint, written with group commit.
//!
//! Layout: complete entry bundles in the store's [`ENTRY_FILE`] ([`EntryFile`]); the rest
//! in one sled tree, `log`, so that one batch writes it atomically:
//! - `F` + n (u64 BE) → where entry bundle n ends in the entry file (u64 BE). Bundle n holds
//!   events `256·n .. 256·n+255`: their leaf bytes ([`StoredEvent::leaf_bytes`]) as one
//!   C2SP entry bundle (each a u16-BE length and the bytes), exactly what
//!   `GET /tile/entries/<n>` serves. Stores written before the entry file kept each bundle
//!   in sled under `E` + n; opening such a store moves them to the file.
//! - `e` + index (u64 BE) → the leaf bytes of an event of the last, incomplete bundle; the
//!   commit that completes the bundle writes it to the entry file and removes these.
//! - `h` + n (u64 BE) → stored hashes `256·n .. 256·n+255` ([`tlog::stored_hash_index`]
//!   order), 32 bytes each; only the last, partial value is ever rewritten.
//! - `b` + height (u64 BE) → a sealed block ([`SealedBlock::encode`](super::block::SealedBlock::encode)).
//! - `m:size` → the number of committed events (u64 BE); `m:checkpoint` → the latest
//!   signed checkpoint note.
//! - `k` + key id (SHA-256 of the DER SubjectPublicKeyInfo) → the DER SubjectPublicKeyInfo
//!   of every chain key that has signed blocks here, so an offline audit can name them.
//!
//! Appends go to one committer thread. It takes every request waiting, gives the events
//! their indexes, salts and time of receipt, writes events, hashes and the new size in one
//! batch, and flushes once: concurrent requests share one fsync, and each reply comes only
//! after the flush. A commit that completes bundles first appends and syncs them to the
//! entry file, so the ends sled records always point at durable bytes. A crash before the flush loses the batch whole and acknowledges none
//! of it. The committer keeps the last, partial hash value and the incomplete bundle's
//! leaves in memory, so a failed flush never leaves it reading data of events it did not
//! acknowledge. Grouping 256 events per value keeps sled's per-key cost off the hot path.
//!
//! Its one error type is [`LogError`].

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use super::entries::{EntryFile, EntryFileError};
use super::event::{encode_leaf, Event};
use super::store::{Store, StoreError};
use super::tlog::{self, Hash, HashReader, TlogError};

const TREE: &str = "log";
/// The entry file's name in the store's directory.
pub const ENTRY_FILE: &str = "entry-bundles";
const META_SIZE: &[u8] = b"m:size";
const META_CHECKPOINT: &[u8] = b"m:checkpoint";
/// Stored hashes per sled value.
const HASHES_PER_VALUE: u64 = 256;
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
    /// The entry file failed (a disk error, the disk is full, or it is damaged).
    #[error(transparent)]
    Entries(#[from] EntryFileError),
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
    /// acknowledged; appends fail until space is freed and the server restarted.
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
            LogError::Entries(e) => e.is_storage_full(),
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
    entries: EntryFile,
    /// Committed (durable) events.
    size: AtomicU64,
    /// Group commits made (one flush each) since the log was opened.
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

fn read_u64(tree: &sled::Tree, k: &[u8]) -> Result<Option<u64>, LogError> {
    match tree.get(k)? {
        None => Ok(None),
        Some(v) => <[u8; 8]>::try_from(v.as_ref())
            .map(|b| Some(u64::from_be_bytes(b)))
            .map_err(|_| {
                LogError::Corrupt(format!(
                    "{} holds {} bytes, not 8",
                    String::from_utf8_lossy(k),
                    v.len()
                ))
            }),
    }
}

fn hashes_of(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(32)
        .filter_map(|c| c.try_into().ok())
        .collect()
}

/// Reads stored hashes: those below `mem_start` from sled, those from `mem_start` on from
/// memory (the committer's tail and the batch it is building).
struct Reader<'a> {
    tree: &'a sled::Tree,
    /// Stored hashes that exist (reads at or beyond fail).
    count: u64,
    mem_start: u64,
    mem: &'a [Hash],
}

impl HashReader for Reader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        let mut out = Vec::with_capacity(indexes.len());
        let mut cached: Option<(u64, sled::IVec)> = None;
        for &i in indexes {
            if i >= self.count {
                return Err(TlogError::HashNotStored(i));
            }
            if i >= self.mem_start {
                let at =
                    usize::try_from(i - self.mem_start).map_err(|_| TlogError::HashNotStored(i))?;
                out.push(*self.mem.get(at).ok_or(TlogError::HashNotStored(i))?);
                continue;
            }
            let value = i / HASHES_PER_VALUE;
            let bytes = match &cached {
                Some((v, bytes)) if *v == value => bytes.clone(),
                _ => {
                    let bytes = self
                        .tree
                        .get(key(b'h', value))
                        .map_err(|e| TlogError::Read(Box::new(e)))?
                        .ok_or(TlogError::HashNotStored(i))?;
                    cached = Some((value, bytes.clone()));
                    bytes
                }
            };
            let at = usize::try_from((i % HASHES_PER_VALUE) * 32)
                .map_err(|_| TlogError::HashNotStored(i))?;
            let h: Hash = bytes
                .get(at..at + 32)
                .and_then(|s| s.try_into().ok())
                .ok_or(TlogError::HashNotStored(i))?;
            out.push(h);
        }
        Ok(out)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What only the committer thread touches.
struct Committer {
    shared: Arc<Shared>,
    /// The stored hashes of the last, partial sled value (index `tail_value`).
    tail: Vec<Hash>,
    tail_value: u64,
    /// The leaves of the incomplete bundle (events `256·(size/256) .. size`).
    tail_leaves: Vec<Vec<u8>>,
}

/// Reads entry `i` of an entry bundle.
fn bundle_entry(bundle: &[u8], i: u64) -> Option<&[u8]> {
    let mut rest = bundle;
    for k in 0..=i {
        let (len, tail) = rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        if tail.len() < len {
            return None;
        }
        let (entry, tail) = tail.split_at(len);
        if k == i {
            return Some(entry);
        }
        rest = tail;
    }
    None
}

/// Opens the entry file with the ends of the complete bundles of `size` events, as sled
/// records them; first moves into it the bundles a store written before the file kept in
/// sled.
fn open_entries(store: &Store, tree: &sled::Tree, size: u64) -> Result<EntryFile, LogError> {
    let path = store.dir().join(ENTRY_FILE);
    if tree.scan_prefix([b'E']).next().is_some() {
        move_bundles_out_of_sled(store, tree, &path)?;
    }
    let full = size / BUNDLE;
    let mut ends = Vec::new();
    for kv in tree.range(key(b'F', 0)..key(b'F', full)) {
        let (n, v) = numbered(kv)?;
        let missing = ends.len() as u64;
        if n != missing {
            return Err(LogError::Corrupt(format!(
                "the log says {size} events, but where bundle {missing} (events {}..{}) ends is not recorded",
                missing * BUNDLE,
                (missing + 1) * BUNDLE
            )));
        }
        let end: [u8; 8] = v.as_slice().try_into().map_err(|_| {
            LogError::Corrupt(format!("the end of bundle {n} is {} bytes, not 8", v.len()))
        })?;
        ends.push(u64::from_be_bytes(end));
    }
    let missing = ends.len() as u64;
    if missing != full {
        return Err(LogError::Corrupt(format!(
            "the log says {size} events, but bundle {missing} (events {}..{}) is not recorded",
            missing * BUNDLE,
            (missing + 1) * BUNDLE
        )));
    }
    Ok(EntryFile::open(&path, ends)?)
}

/// Bundles written to the entry file per sync while moving them out of sled.
const MOVE_CHUNK: usize = 64;

/// Moves the bundles a store written before the entry file kept in sled (`E` + n) into the
/// file, then records their ends and removes them in one sled batch. Interrupted, it
/// leaves sled as it was, and the next open starts over.
fn move_bundles_out_of_sled(
    store: &Store,
    tree: &sled::Tree,
    path: &std::path::Path,
) -> Result<(), LogError> {
    if tree.scan_prefix([b'F']).next().is_some() {
        return Err(LogError::Corrupt(
            "the log holds entry bundles both in sled and in the entry file".into(),
        ));
    }
    // No end is recorded: whatever an interrupted earlier move wrote is cut off.
    let file = EntryFile::open(path, Vec::new())?;
    let mut batch = sled::Batch::default();
    let mut chunk = Vec::with_capacity(MOVE_CHUNK);
    let flush_chunk = |chunk: &mut Vec<Vec<u8>>, batch: &mut sled::Batch| {
        let first = file.count();
        let ends = file.append(chunk)?;
        for (n, end) in (first..).zip(&ends) {
            batch.insert(&key(b'F', n), &end.to_be_bytes());
            batch.remove(&key(b'E', n));
        }
        file.publish(&ends);
        chunk.clear();
        Ok::<_, LogError>(())
    };
    for kv in tree.range(key(b'E', 0)..=key(b'E', u64::MAX)) {
        let (n, bundle) = numbered(kv)?;
        let expected = file.count() + chunk.len() as u64;
        if n != expected {
            return Err(LogError::Corrupt(format!(
                "bundle {expected} (events {}..{}) is missing",
                expected * BUNDLE,
                (expected + 1) * BUNDLE
            )));
        }
        chunk.push(bundle);
        if chunk.len() == MOVE_CHUNK {
            flush_chunk(&mut chunk, &mut batch)?;
        }
    }
    if !chunk.is_empty() {
        flush_chunk(&mut chunk, &mut batch)?;
    }
    tree.apply_batch(batch)?;
    store.db().flush()?;
    tracing::info!(
        bundles = file.count(),
        file = %path.display(),
        "moved the event log's entry bundles out of sled into the entry file"
    );
    Ok(())
}

impl EventLog {
    /// Opens the log in `store`, checks that its hashes match its size, and starts the
    /// committer thread.
    pub fn open(store: &Store) -> Result<EventLog, LogError> {
        let tree = store.tree(TREE)?;
        let size = read_u64(&tree, META_SIZE)?.unwrap_or(0);
        let count = tlog::stored_hash_count(size);
        let tail_value = count / HASHES_PER_VALUE;
        let in_tail = count % HASHES_PER_VALUE;
        let tail = if in_tail == 0 {
            Vec::new()
        } else {
            let bytes = tree
                .get(key(b'h', tail_value))?
                .ok_or_else(|| LogError::Corrupt(format!("hash value {tail_value} is missing")))?;
            // A failed flush may have left hashes of unacknowledged events after the tail.
            let need = usize::try_from(in_tail * 32).unwrap_or(usize::MAX);
            let kept = bytes.get(..need).ok_or_else(|| {
                LogError::Corrupt(format!(
                    "{size} events need {count} stored hashes; value {tail_value} holds {} bytes",
                    bytes.len()
                ))
            })?;
            hashes_of(kept)
        };
        if count > 0 && tail_value > 0 && in_tail == 0 {
            let last = tree
                .get(key(b'h', tail_value - 1))?
                .map_or(0, |v| v.len() / 32);
            if last as u64 != HASHES_PER_VALUE {
                return Err(LogError::Corrupt(format!(
                    "{size} events need {count} stored hashes; value {} holds {last}",
                    tail_value - 1
                )));
            }
        }
        let full = size / BUNDLE;
        let entries = open_entries(store, &tree, size)?;
        let mut tail_leaves = Vec::new();
        for i in full * BUNDLE..size {
            let leaf = tree.get(key(b'e', i))?.ok_or_else(|| {
                LogError::Corrupt(format!(
                    "the log says {size} events, but event {i} is missing"
                ))
            })?;
            tail_leaves.push(leaf.to_vec());
        }
        let shared = Arc::new(Shared {
            db: store.db().clone(),
            tree,
            entries,
            size: AtomicU64::new(size),
            commits: AtomicU64::new(0),
        });
        let (jobs, rx) = crossbeam_channel::unbounded();
        let mut committer = Committer {
            shared: Arc::clone(&shared),
            tail,
            tail_value,
            tail_leaves,
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

    /// Group commits made since the log was opened (each is one flush; events per commit
    /// is the group size).
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// The number of committed (durable) events.
    pub fn size(&self) -> u64 {
        self.shared.size.load(Ordering::Acquire)
    }

    /// The leaf bytes of committed event `index`.
    pub fn leaf(&self, index: u64) -> Result<Option<Vec<u8>>, LogError> {
        let size = self.size();
        if index >= size {
            return Ok(None);
        }
        if index < size / BUNDLE * BUNDLE {
            let n = index / BUNDLE;
            let bundle = self.stored_bundle(n)?;
            return bundle_entry(&bundle, index % BUNDLE)
                .map(|e| Some(e.to_vec()))
                .ok_or_else(|| LogError::Corrupt(format!("bundle {n} is damaged")));
        }
        Ok(self.shared.tree.get(key(b'e', index))?.map(|v| v.to_vec()))
    }

    /// The stored entry bundle `n` (events `256·n ..`), when it is complete: the bytes
    /// `GET /tile/entries/<n>` serves.
    pub fn full_bundle(&self, n: u64) -> Result<Option<Vec<u8>>, LogError> {
        if n >= self.size() / BUNDLE {
            return Ok(None);
        }
        self.stored_bundle(n).map(Some)
    }

    /// Complete bundle `n`, which the committed size says is there.
    fn stored_bundle(&self, n: u64) -> Result<Vec<u8>, LogError> {
        self.shared.entries.read(n)?.ok_or_else(|| {
            LogError::Corrupt(format!(
                "bundle {n} (events {}..{}) is missing from the entry file",
                n * BUNDLE,
                (n + 1) * BUNDLE
            ))
        })
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
    fn events_from(
        &self,
        start: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), LogError>> + '_ {
        let size = self.size();
        let full = size / BUNDLE;
        let tree = &self.shared.tree;
        let bundles = (start / BUNDLE..full)
            .flat_map(move |n| {
                let decoded = self.stored_bundle(n).and_then(|v| {
                    let entries = tlog::decode_entry_bundle(&v).map_err(|e| {
                        LogError::Corrupt(format!(
                            "bundle {n} (events {}..{}) is damaged: {e}",
                            n * BUNDLE,
                            (n + 1) * BUNDLE
                        ))
                    })?;
                    if entries.len() as u64 != BUNDLE {
                        return Err(LogError::Corrupt(format!(
                            "bundle {n} (events {}..{}) holds {} events",
                            n * BUNDLE,
                            (n + 1) * BUNDLE,
                            entries.len()
                        )));
                    }
                    Ok(entries
                        .into_iter()
                        .enumerate()
                        .map(|(i, e)| (n * BUNDLE + i as u64, e.to_vec()))
                        .collect::<Vec<_>>())
                });
                match decoded {
                    Ok(v) => v.into_iter().map(Ok).collect::<Vec<_>>(),
                    Err(e) => vec![Err(e)],
                }
            })
            .filter(move |r| r.as_ref().map_or(true, |(i, _)| *i >= start));
        let singles = tree
            .range(key(b'e', (full * BUNDLE).max(start))..key(b'e', size))
            .map(numbered);
        bundles.chain(singles)
    }

    /// A reader of the stored hashes of the first `size` events (at most the committed
    /// size).
    pub fn hashes_at(&self, size: u64) -> impl HashReader + '_ {
        Reader {
            tree: &self.shared.tree,
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

    /// Replaces the latest checkpoint note (with the same body: cosignatures added).
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

    /// The stored hashes in stored-hash order, as sled holds them (for offline audit):
    /// (value number, bytes: up to 256 hashes).
    pub fn stored_hash_values(
        &self,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), LogError>> + '_ {
        self.shared
            .tree
            .range(key(b'h', 0)..=key(b'h', u64::MAX))
            .map(numbered)
    }

    /// Bytes the database occupies on disk.
    pub fn disk_bytes(&self) -> Result<u64, LogError> {
        Ok(self.shared.db.size_on_disk()? + self.shared.entries.disk_bytes()?)
    }
}

impl Committer {
    /// Takes the jobs waiting (at least one) and commits them together, until every
    /// [`EventLog`] is gone.
    fn run(&mut self, rx: &Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut count = first.events.len();
            let mut jobs = vec![first];
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

    /// Writes the jobs' events, their stored hashes and the new size in one batch,
    /// flushes, and only then publishes the new size and keeps the new tail.
    fn commit(&mut self, jobs: &[Job]) -> Result<Vec<Appended>, LogError> {
        let shared = &self.shared;
        let start = shared.size.load(Ordering::Acquire);
        let total: usize = jobs.iter().map(|j| j.events.len()).sum();
        let mut salts = vec![0u8; total * 16];
        getrandom::getrandom(&mut salts).map_err(|e| LogError::Random(e.to_string()))?;
        let mem_start = self.tail_value * HASHES_PER_VALUE;
        let mut mem: Vec<Hash> = self.tail.clone();
        // This commit's leaves. The incomplete bundle's earlier leaves stay in
        // `self.tail_leaves`, untouched until the flush succeeds: cloning them (up to 255
        // allocations) on every commit cost more than the rest of the commit's bookkeeping.
        let mut leaves: Vec<Vec<u8>> = Vec::with_capacity(total);
        // Bundles this commit completes, numbered from `first_completed`.
        let mut completed: Vec<Vec<u8>> = Vec::new();
        let first_completed = start / BUNDLE;
        let mut batch = sled::Batch::default();
        let mut appended = Vec::with_capacity(total);
        let received_at_ms = now_ms();
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
            let leaf_hash = tlog::leaf_hash(&leaf);
            let reader = Reader {
                tree: &shared.tree,
                count: mem_start + mem.len() as u64,
                mem_start,
                mem: &mem,
            };
            let new_hashes = tlog::stored_hashes_for_record(n, leaf_hash, &reader)?;
            mem.extend(new_hashes);
            leaves.push(leaf);
            appended.push(Appended {
                index: n,
                leaf_hash,
            });
            n += 1;
            if n % BUNDLE == 0 {
                // The bundle is complete: one value; the events of it that earlier commits
                // wrote one by one go.
                let first = n - BUNDLE;
                let earlier: &[Vec<u8>] = if first < start {
                    &self.tail_leaves
                } else {
                    &[]
                };
                // This commit's part of the bundle: its last 256 leaves, or all of them when
                // the bundle began in an earlier commit.
                let mine = &leaves[leaves.len().saturating_sub(BUNDLE as usize)..];
                let refs: Vec<&[u8]> = earlier.iter().chain(mine).map(Vec::as_slice).collect();
                completed.push(tlog::encode_entry_bundle(&refs)?);
                for i in first..start.max(first) {
                    batch.remove(&key(b'e', i));
                }
            }
        }
        // The incomplete bundle's new events, one by one.
        let new_in_tail = ((n % BUNDLE) as usize).min(leaves.len());
        // This commit's leaves before `skip` went into completed bundles.
        let skip = leaves.len() - new_in_tail;
        for (i, leaf) in (n - new_in_tail as u64..n).zip(&leaves[skip..]) {
            batch.insert(&key(b'e', i), leaf.as_slice());
        }
        // Write whole values from the tail's value on; the last may be partial.
        let mut value = self.tail_value;
        let mut new_tail = Vec::new();
        for chunk in mem.chunks(HASHES_PER_VALUE as usize) {
            let bytes: Vec<u8> = chunk.iter().flatten().copied().collect();
            batch.insert(&key(b'h', value), bytes);
            if chunk.len() as u64 == HASHES_PER_VALUE {
                value += 1;
            } else {
                new_tail = chunk.to_vec();
            }
        }
        // The completed bundles are durable in the entry file before sled records them.
        let ends = if completed.is_empty() {
            Vec::new()
        } else {
            shared.entries.append(&completed)?
        };
        for (b, end) in (first_completed..).zip(&ends) {
            batch.insert(&key(b'F', b), &end.to_be_bytes());
        }
        batch.insert(META_SIZE, &n.to_be_bytes());
        shared.tree.apply_batch(batch)?;
        shared.db.flush()?;
        shared.entries.publish(&ends);
        self.tail = new_tail;
        self.tail_value = value;
        if skip > 0 {
            // A bundle was completed: the incomplete one holds only this commit's leaves.
            self.tail_leaves.clear();
        }
        self.tail_leaves.extend(leaves.drain(skip..));
        shared.size.store(n, Ordering::Release);
        shared.commits.fetch_add(1, Ordering::Relaxed);
        Ok(appended)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::chain::event::{Action, StoredEvent};

    fn event(n: u64) -> Event {
        Event {
            agency: "agency".into(),
            auditor: format!("auditor-{n}"),
            action: Action::Access,
            subject: format!("record/{n}"),
            data_sha256: [n as u8; 32],
            occurred_at_ns: 1_700_000_000_000_000_000,
            details: "{}".into(),
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    /// Appends in uneven batches (so hash values fill, split and carry over), then checks
    /// every root and proof against a tree built in memory, across a reopen.
    #[test]
    fn appends_persist_and_match_an_in_memory_tree() {
        let dir = tempfile::tempdir().unwrap();
        let mut leaves = Vec::new();
        let mut stored: Vec<Hash> = Vec::new();
        let rt = rt();
        let mut next = 0u64;
        let batches = [1u64, 2, 255, 1, 300, 7, 513, 3];
        for _round in 0..2 {
            let store = crate::chain::store::reopen_in_process(dir.path());
            let log = EventLog::open(&store).unwrap();
            assert_eq!(log.size(), next);
            for batch in batches {
                let events: Vec<Event> = (next..next + batch).map(event).collect();
                let appended = rt.block_on(log.append(events)).unwrap();
                assert_eq!(appended.len() as u64, batch);
                for a in appended {
                    assert_eq!(a.index, next);
                    let leaf = log.leaf(a.index).unwrap().unwrap();
                    assert_eq!(tlog::leaf_hash(&leaf), a.leaf_hash);
                    let decoded = StoredEvent::from_leaf_bytes(&leaf).unwrap();
                    assert_eq!(decoded.index, a.index);
                    assert_eq!(decoded.event, event(a.index));
                    let add = tlog::stored_hashes_for_record(next, a.leaf_hash, &stored).unwrap();
                    stored.extend(add);
                    leaves.push(a.leaf_hash);
                    next += 1;
                }
                let size = log.size();
                assert_eq!(size, next);
                let r = log.hashes_at(size);
                assert_eq!(
                    tlog::tree_hash(size, &r).unwrap(),
                    tlog::tree_hash(size, &stored).unwrap()
                );
                let i = size / 3;
                let proof = tlog::prove_inclusion(size, i, &r).unwrap();
                tlog::verify_inclusion(
                    &proof,
                    size,
                    i,
                    &tlog::tree_hash(size, &stored).unwrap(),
                    &leaves[i as usize],
                )
                .unwrap();
            }
            // Every event reads back in order; complete bundles left no single events.
            let all: Vec<(u64, Vec<u8>)> = log.events().map(Result::unwrap).collect();
            assert_eq!(all.len() as u64, next);
            for (i, (index, leaf)) in all.iter().enumerate() {
                assert_eq!(*index, i as u64);
                assert_eq!(tlog::leaf_hash(leaf), leaves[i]);
            }
            assert_eq!(log.leaves(250..600).unwrap().len(), 350);
            let singles = log.shared.tree.scan_prefix(b"e").count() as u64;
            assert_eq!(singles, next % BUNDLE);
            drop(log);
        }
        assert_eq!(next, 2 * batches.iter().sum::<u64>());
    }

    /// A store written before the entry file kept complete bundles in sled (`E` + n):
    /// opening it moves them to the file, and every event, hash and later append is as
    /// before.
    #[test]
    fn bundles_kept_in_sled_by_an_older_store_move_to_the_entry_file() {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let events = 2 * BUNDLE + 40;
        let (root, leaves) = {
            let store = crate::chain::store::reopen_in_process(dir.path());
            let log = EventLog::open(&store).unwrap();
            rt.block_on(log.append((0..events).map(event).collect()))
                .unwrap();
            let leaves: Vec<Vec<u8>> = log.leaves(0..events).unwrap();
            let root = tlog::tree_hash(events, &log.hashes_at(events)).unwrap();
            // Rewrite it the old way: bundles in sled, no ends, no file.
            for n in 0..2 {
                let bundle = log.full_bundle(n).unwrap().unwrap();
                log.shared.tree.insert(key(b'E', n), bundle).unwrap();
                log.shared.tree.remove(key(b'F', n)).unwrap();
            }
            store.db().flush().unwrap();
            (root, leaves)
        };
        std::fs::remove_file(dir.path().join(ENTRY_FILE)).unwrap();

        let store = crate::chain::store::reopen_in_process(dir.path());
        let log = EventLog::open(&store).unwrap();
        assert_eq!(log.shared.tree.scan_prefix(b"E").count(), 0);
        assert_eq!(log.shared.tree.scan_prefix(b"F").count(), 2);
        assert_eq!(log.size(), events);
        assert_eq!(log.leaves(0..events).unwrap(), leaves);
        assert_eq!(
            tlog::tree_hash(events, &log.hashes_at(events)).unwrap(),
            root
        );
        // Appends go on from there, completing the third bundle in the file.
        rt.block_on(log.append((events..3 * BUNDLE).map(event).collect()))
            .unwrap();
        assert_eq!(
            log.full_bundle(2).unwrap().map(|b| b.is_empty()),
            Some(false)
        );
        assert_eq!(log.events().count() as u64, 3 * BUNDLE);

        // Both layouts at once is damage, not something to guess about.
        log.shared.tree.insert(key(b'E', 0), &b"x"[..]).unwrap();
        store.db().flush().unwrap();
        drop((log, store));
        let store = crate::chain::store::reopen_in_process(dir.path());
        let err = EventLog::open(&store).unwrap_err();
        assert!(
            err.to_string()
                .contains("both in sled and in the entry file"),
            "{err}"
        );
    }

    #[test]
    fn concurrent_appends_share_commits_and_get_distinct_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::chain::store::reopen_in_process(dir.path());
        let log = EventLog::open(&store).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let mut indexes: Vec<u64> = rt.block_on(async {
            let tasks: Vec<_> = (0..200)
                .map(|n| {
                    let log = log.clone();
                    tokio::spawn(async move { log.append(vec![event(n)]).await })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap().unwrap()[0].index);
            }
            out
        });
        indexes.sort_unstable();
        assert_eq!(indexes, (0..200).collect::<Vec<_>>());
        assert_eq!(log.events().count(), 200);
    }

    #[test]
    fn blocks_and_checkpoint_are_stored_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::chain::store::reopen_in_process(dir.path());
        let log = EventLog::open(&store).unwrap();
        assert!(log.latest_block().unwrap().is_none());
        assert!(log.checkpoint().unwrap().is_none());
        log.put_block(0, b"zero", "cp0").unwrap();
        log.put_block(1, b"one", "cp1").unwrap();
        assert_eq!(log.latest_block().unwrap(), Some((1, b"one".to_vec())));
        assert_eq!(log.block(0).unwrap(), Some(b"zero".to_vec()));
        assert_eq!(log.checkpoint().unwrap().as_deref(), Some("cp1"));
        assert_eq!(log.blocks().count(), 2);
    }

    #[test]
    fn reads_beyond_the_committed_size_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::chain::store::reopen_in_process(dir.path());
        let log = EventLog::open(&store).unwrap();
        rt().block_on(log.append((0..5).map(event).collect()))
            .unwrap();
        assert!(log.leaf(5).unwrap().is_none());
        assert_eq!(log.leaves(3..99).unwrap().len(), 2);
        assert!(tlog::tree_hash(6, &log.hashes_at(6)).is_err());
        assert!(tlog::tree_hash(5, &log.hashes_at(5)).is_ok());
    }
}
