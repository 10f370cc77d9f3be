//! The event log's files: every event's leaf bytes with the head that says how many are
//! committed, and, derived from them, the Merkle tree's stored hashes and where each
//! entry bundle ends.
//!
//! A directory holds three files:
//! - `events`: two head slots (at bytes 0 and 4096), then from byte 8192 each event as a
//!   u16-BE length and its leaf bytes, back to back in index order. That is the C2SP
//!   entry-bundle encoding, so complete bundle n (events `256·n .. 256·n+255`) is one byte
//!   range, exactly what `GET /tile/entries/<n>` serves. The file is grown ahead in steps
//!   of 1 MiB, so that a commit's sync writes data, not file metadata.
//! - `hashes`: the stored hashes ([`tlog::stored_hash_index`] order), 32 bytes each.
//! - `bundles`: where each complete bundle ends in `events` (u64 BE each).
//!
//! A commit writes its records after the committed end, its hashes and bundle ends, and
//! the head slot of its sequence number (the two alternate); then one sync of `events`
//! makes it durable. A head slot carries a checksum of itself and of the records its
//! commit wrote, so a crash during the sync (which may have written the head but not all
//! the records, or half a slot) leaves a slot that does not check out: opening takes the
//! newest slot that does, and the commit before is intact because commits only append.
//! The hashes and bundle ends follow from the records; they are synced every
//! [`DERIVED_SYNC_EVENTS`] events, and the head records up to where. Opening recomputes
//! them from the records beyond that point. Nothing committed is ever rewritten; a failed
//! commit publishes nothing, and the next one writes over its bytes.
//!
//! Complete bundles never change: keeping them in plain files (read through the page
//! cache, not the process's heap) is what keeps the server's memory flat as the log grows.
//!
//! Pruning ([`LogFiles::prune_below`]): once complete bundles are archived elsewhere, the
//! disk space of bundles `0..p` is freed by punching holes in `events` over their byte
//! range (whole filesystem blocks only; the file keeps its length, so every offset stays
//! valid), while the stored hashes and bundle ends stay. How far it is pruned, `p`, is part
//! of the head: a prune syncs the derived files, then commits a head that adds no records,
//! says the derived files are durable up to the committed size, and carries `p`; only then
//! are the holes punched. So a crash never leaves a pruned range that the head does not
//! name, opening never reads a pruned record (no head after that one checks or recomputes
//! records before its end), and every later head carries `p` on. Reads of a pruned bundle
//! fail with [`LogFilesError::Pruned`]; they and the punching exclude each other, so a read
//! never returns the zeros of a hole. A head slot whose log is not pruned is written in the
//! format every earlier version reads (magic `AUDLOG02`); once pruned, in `AUDLOG03` (the
//! same fields, then `p`, then the checksum), which earlier versions refuse rather than
//! read holes as events. Where the filesystem cannot punch holes, the prune is recorded
//! all the same and the space stays in use.
//!
//! Its one error type is [`LogFilesError`].

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard};

use super::tlog::{self, Hash, HashReader, TlogError};

const EVENTS: &str = "events";
const HASHES: &str = "hashes";
const BUNDLES: &str = "bundles";
/// Events per entry bundle (the C2SP width).
const BUNDLE: u64 = 256;
/// What a head slot starts with while nothing is pruned: the format of every earlier
/// version, checksum at byte 60.
const MAGIC: &[u8; 8] = b"AUDLOG02";
/// What a head slot starts with once bundles are pruned: the same fields, the number of
/// pruned bundles at byte 60, the checksum at byte 68.
const MAGIC_PRUNED: &[u8; 8] = b"AUDLOG03";
/// Bytes of a head slot.
const SLOT_LEN: usize = 72;
/// Where the second head slot begins (its own 4 KiB page).
const SLOT_STRIDE: u64 = 4096;
/// Where the records begin in the events file.
pub const RECORDS_AT: u64 = 8192;
/// How far ahead of the records the events file is grown (zeros, written once).
const GROW: u64 = 1 << 20;
/// Bytes of records read at a time when the derived files are rebuilt.
const REBUILD_WINDOW: u64 = 4 << 20;
/// The smallest unit holes are punched in (a filesystem block; larger when the filesystem
/// says its blocks are).
const PUNCH_BLOCK: u64 = 4096;
/// Events between syncs of the derived files (hashes, bundle ends): at most this many
/// are recomputed when the log is opened after a crash.
pub const DERIVED_SYNC_EVENTS: u64 = 1 << 16;

/// What can go wrong with the log's files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogFilesError {
    /// Reading, writing or syncing a file failed.
    #[error("event log file {path}: {operation}: {source}")]
    Io {
        /// The file (or directory).
        path: PathBuf,
        /// What was being done.
        operation: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The files do not hold what their head says: the log is damaged.
    #[error("event log files in {dir} are damaged: {detail}")]
    Corrupt {
        /// The log's directory.
        dir: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The bundle was pruned ([`LogFiles::prune_below`]): its events are no longer here.
    #[error(
        "event bundle {bundle} was pruned from local storage after it was archived; \
         read it from the archive"
    )]
    Pruned {
        /// The bundle asked for.
        bundle: u64,
    },
    /// The bundle is not complete, so it cannot be pruned.
    #[error("event bundle {bundle} is not complete: the log holds {complete} complete bundles")]
    NotComplete {
        /// The bundle.
        bundle: u64,
        /// Complete bundles in the log.
        complete: u64,
    },
}

impl LogFilesError {
    /// Whether this is the disk (or the file-size limit) being full.
    pub fn is_storage_full(&self) -> bool {
        match self {
            LogFilesError::Io { source, .. } => {
                matches!(
                    source.raw_os_error(),
                    Some(libc::ENOSPC) | Some(libc::EFBIG)
                ) || matches!(
                    source.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::FileTooLarge
                )
            }
            LogFilesError::Corrupt { .. }
            | LogFilesError::Pruned { .. }
            | LogFilesError::NotComplete { .. } => false,
        }
    }
}

/// What one commit adds.
#[derive(Debug)]
pub struct Batch<'a> {
    /// The number of events once it is committed.
    pub size: u64,
    /// The new events, each a u16-BE length and the leaf bytes, in index order.
    pub records: &'a [u8],
    /// The stored hashes the new events add, 32 bytes each, in stored-hash order.
    pub hashes: &'a [u8],
    /// Where each bundle the new events complete ends in the events file.
    pub bundle_ends: &'a [u64],
}

/// What [`LogFiles::prune_below`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneOutcome {
    /// Complete bundles below this are pruned now.
    pub pruned_below: u64,
    /// Bundles this call pruned (0 when they all were already).
    pub newly_pruned: u64,
    /// Whether their disk space is freed: false when the filesystem cannot punch holes
    /// (the prune is recorded all the same, and reads of those bundles fail all the same).
    pub space_freed: bool,
}

/// What is committed, as readers see it.
#[derive(Debug, Clone, Default)]
struct Committed {
    size: u64,
    /// Where the committed records end in the events file.
    end: u64,
    /// `bundle_ends[n]`: where complete bundle n ends (it starts where n - 1 ends, or at
    /// [`RECORDS_AT`]).
    bundle_ends: Vec<u64>,
}

/// One head slot: a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    seq: u64,
    size: u64,
    /// Where the records end.
    end: u64,
    /// Where this commit's records begin.
    commit_start: u64,
    /// CRC-32 (IEEE) of this commit's records.
    records_crc: u32,
    /// Events whose hashes and bundle ends are durable in the derived files.
    derived_size: u64,
    /// Where the records of those events end.
    derived_end: u64,
    /// Complete bundles below this are pruned.
    pruned: u64,
}

impl Head {
    /// The slot: [`MAGIC`] while nothing is pruned (what earlier versions read), else
    /// [`MAGIC_PRUNED`] with the pruned bundles before the checksum.
    fn encode(&self) -> [u8; SLOT_LEN] {
        let mut out = [0u8; SLOT_LEN];
        out[..8].copy_from_slice(if self.pruned == 0 {
            MAGIC
        } else {
            MAGIC_PRUNED
        });
        for (i, v) in [
            self.seq,
            self.size,
            self.end,
            self.commit_start,
            self.derived_size,
            self.derived_end,
        ]
        .iter()
        .enumerate()
        {
            out[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_be_bytes());
        }
        out[56..60].copy_from_slice(&self.records_crc.to_be_bytes());
        let sum_at = if self.pruned == 0 {
            60
        } else {
            out[60..68].copy_from_slice(&self.pruned.to_be_bytes());
            68
        };
        let sum = crc32fast::hash(&out[..sum_at]);
        out[sum_at..sum_at + 4].copy_from_slice(&sum.to_be_bytes());
        out
    }

    /// The slot's commit, if it is one (right magic and checksum).
    fn decode(slot: &[u8]) -> Option<Head> {
        let slot = slot.get(..SLOT_LEN)?;
        let word = |at: usize| -> Option<u64> {
            Some(u64::from_be_bytes(slot.get(at..at + 8)?.try_into().ok()?))
        };
        let half = |at: usize| -> Option<u32> {
            Some(u32::from_be_bytes(slot.get(at..at + 4)?.try_into().ok()?))
        };
        let magic = slot.get(..8)?;
        let (sum_at, pruned) = if magic == MAGIC {
            (60, 0)
        } else if magic == MAGIC_PRUNED {
            (68, word(60)?)
        } else {
            return None;
        };
        if crc32fast::hash(slot.get(..sum_at)?) != half(sum_at)? {
            return None;
        }
        Some(Head {
            seq: word(8)?,
            size: word(16)?,
            end: word(24)?,
            commit_start: word(32)?,
            derived_size: word(40)?,
            derived_end: word(48)?,
            records_crc: half(56)?,
            pruned,
        })
    }
}

/// What only a commit (one at a time) changes.
#[derive(Debug)]
struct Writer {
    /// The head of the last commit.
    last: Head,
    /// The events file's length (the records area is grown ahead in [`GROW`] steps).
    allocated: u64,
    derived_size: u64,
    derived_end: u64,
}

/// The open files of one event log directory.
pub struct LogFiles {
    dir: PathBuf,
    events: File,
    hashes: File,
    bundles: File,
    committed: RwLock<Committed>,
    /// `committed.size`, for readers that need nothing else.
    size: AtomicU64,
    writer: Mutex<Writer>,
    /// Complete bundles below this are pruned. Reads of bundle bytes hold it shared while
    /// they read; a prune holds it exclusively while it punches, so no read sees a hole.
    pruned: RwLock<u64>,
}

impl std::fmt::Debug for LogFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFiles")
            .field("dir", &self.dir)
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path, operation: &'static str) -> impl FnOnce(std::io::Error) -> LogFilesError {
    let path = path.to_owned();
    move |source| LogFilesError::Io {
        path,
        operation,
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), LogFilesError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "sync the directory"))
}

fn open_file(dir: &Path, name: &str, create: bool) -> Result<File, LogFilesError> {
    let path = dir.join(name);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(&path)
        .map_err(io_err(&path, "open"))
}

/// The staging directory a new log is built in before it is put in place.
/// Bundle ends as the bundles file stores them: 8 bytes each, big-endian.
fn ends_bytes(ends: &[u64]) -> Vec<u8> {
    ends.iter().flat_map(|e| e.to_be_bytes()).collect()
}

fn staging(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_owned();
    name.push(".new");
    dir.with_file_name(name)
}

/// Splits records (u16-BE length and bytes, each) into their leaves; `None` when they
/// are cut off.
pub fn split_records(mut bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < len {
            return None;
        }
        let (leaf, rest) = rest.split_at(len);
        out.push(leaf);
        bytes = rest;
    }
    Some(out)
}

/// Record `at` of `bytes` (records as [`split_records`] reads them), found by walking
/// the lengths without copying any; `None` when there are fewer or they are cut off.
pub fn nth_record(mut bytes: &[u8], at: usize) -> Option<&[u8]> {
    for k in 0..=at {
        let (len, rest) = bytes.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < len {
            return None;
        }
        let (leaf, rest) = rest.split_at(len);
        if k == at {
            return Some(leaf);
        }
        bytes = rest;
    }
    None
}

/// Reads stored hashes: those below `mem_start` from the files, those from `mem_start` on
/// from `mem` (a batch being built); none at or beyond `count`.
pub struct Hashes<'a> {
    /// The log's files.
    pub files: &'a LogFiles,
    /// Stored hashes that exist (reads at or beyond fail).
    pub count: u64,
    /// The first stored hash held in `mem`.
    pub mem_start: u64,
    /// Stored hashes `mem_start ..` not in the files yet.
    pub mem: &'a [Hash],
}

impl HashReader for Hashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        indexes
            .iter()
            .map(|&i| {
                if i >= self.count {
                    return Err(TlogError::HashNotStored(i));
                }
                if i >= self.mem_start {
                    let at = usize::try_from(i - self.mem_start)
                        .map_err(|_| TlogError::HashNotStored(i))?;
                    return self.mem.get(at).copied().ok_or(TlogError::HashNotStored(i));
                }
                self.files.hash(i).map_err(|e| TlogError::Read(Box::new(e)))
            })
            .collect()
    }
}

impl LogFiles {
    /// Opens the log in `dir`, creating an empty one if there is none.
    pub fn open_or_create(dir: &Path) -> Result<LogFiles, LogFilesError> {
        if dir.exists() {
            Self::open(dir)
        } else {
            Self::create_staged(dir)?.install()
        }
    }

    /// Creates an empty log in the staging directory beside `dir` (replacing what an
    /// interrupted earlier attempt left there); [`Self::install`] puts it in place.
    pub fn create_staged(dir: &Path) -> Result<LogFiles, LogFilesError> {
        let stage = staging(dir);
        if stage.exists() {
            std::fs::remove_dir_all(&stage).map_err(io_err(&stage, "remove"))?;
        }
        std::fs::create_dir_all(&stage).map_err(io_err(&stage, "create"))?;
        for name in [HASHES, BUNDLES] {
            open_file(&stage, name, true)?
                .sync_all()
                .map_err(io_err(&stage.join(name), "sync"))?;
        }
        let events = open_file(&stage, EVENTS, true)?;
        let empty = Head {
            seq: 0,
            size: 0,
            end: RECORDS_AT,
            commit_start: RECORDS_AT,
            records_crc: crc32fast::hash(&[]),
            derived_size: 0,
            derived_end: RECORDS_AT,
            pruned: 0,
        };
        events
            .set_len(RECORDS_AT)
            .and_then(|()| events.write_all_at(&empty.encode(), 0))
            .and_then(|()| events.sync_all())
            .map_err(io_err(&stage.join(EVENTS), "write"))?;
        drop(events);
        sync_dir(&stage)?;
        Self::open(&stage)
    }

    /// Moves a log made with [`Self::create_staged`] to its place (a rename, made durable).
    pub fn install(mut self) -> Result<LogFiles, LogFilesError> {
        let stage = self.dir.clone();
        let Some(dir) = stage
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".new"))
            .map(|n| stage.with_file_name(n))
        else {
            return Err(self.corrupt("not a staging directory".into()));
        };
        std::fs::rename(&stage, &dir).map_err(io_err(&dir, "rename into place"))?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        self.dir = dir;
        Ok(self)
    }

    /// Opens the log in `dir`: the newest head slot whose commit checks out says what is
    /// committed (and how far it is pruned); the hashes and bundle ends of events after the
    /// last sync of the derived files are recomputed. A log without such a slot, or whose
    /// derived files are shorter than their last sync, is refused.
    pub fn open(dir: &Path) -> Result<LogFiles, LogFilesError> {
        let events = open_file(dir, EVENTS, false)?;
        let hashes = open_file(dir, HASHES, false)?;
        let bundles = open_file(dir, BUNDLES, false)?;
        let corrupt = |detail: String| LogFilesError::Corrupt {
            dir: dir.to_owned(),
            detail,
        };
        let events_path = dir.join(EVENTS);
        let allocated = events
            .metadata()
            .map_err(io_err(&events_path, "stat"))?
            .len();
        if allocated < RECORDS_AT {
            return Err(corrupt(format!(
                "events holds {allocated} bytes, less than its head"
            )));
        }
        let mut slots = vec![0u8; SLOT_STRIDE as usize + SLOT_LEN];
        events
            .read_exact_at(&mut slots, 0)
            .map_err(io_err(&events_path, "read"))?;
        let mut heads: Vec<Head> = [0, SLOT_STRIDE as usize]
            .iter()
            .filter_map(|&at| Head::decode(&slots[at..]))
            .collect();
        heads.sort_by_key(|h| std::cmp::Reverse(h.seq));
        let newest = heads.first().copied();
        let mut chosen = None;
        for head in heads {
            let sane = head.commit_start >= RECORDS_AT
                && head.commit_start <= head.end
                && head.end <= allocated
                && head.derived_end <= head.end
                && head.derived_size <= head.size
                // Pruned bundles are within the derived files' last sync.
                && head.pruned <= head.derived_size / BUNDLE;
            let crc = if sane {
                // In pieces: a commit can be large (moving an older store's events).
                let mut hasher = crc32fast::Hasher::new();
                let mut buf = vec![0u8; 1 << 20];
                let mut at = head.commit_start;
                while at < head.end {
                    let n = usize::try_from((head.end - at).min(1 << 20)).unwrap_or(1 << 20);
                    events
                        .read_exact_at(&mut buf[..n], at)
                        .map_err(io_err(&events_path, "read"))?;
                    hasher.update(&buf[..n]);
                    at += n as u64;
                }
                Some(hasher.finalize())
            } else {
                None
            };
            if crc == Some(head.records_crc) {
                chosen = Some(head);
                break;
            }
            tracing::warn!(
                dir = %dir.display(),
                seq = head.seq,
                events = head.size,
                "a commit whose events do not check out was interrupted; taking the one before"
            );
        }
        let head = chosen.ok_or_else(|| {
            corrupt(match newest {
                Some(h) => format!(
                    "no commit in the head checks out: the records of the last commit (to \
                     {} events) do not match their checksum",
                    h.size
                ),
                None => "the head holds no commit".into(),
            })
        })?;

        // The derived files: durable up to `derived_size`, recomputed beyond.
        let derived_hashes = tlog::stored_hash_count(head.derived_size) * 32;
        let derived_bundles = head.derived_size / BUNDLE;
        for (file, name, need) in [
            (&hashes, HASHES, derived_hashes),
            (&bundles, BUNDLES, derived_bundles * 8),
        ] {
            let len = file
                .metadata()
                .map_err(io_err(&dir.join(name), "stat"))?
                .len();
            if len < need {
                return Err(corrupt(format!(
                    "{name} holds {len} bytes, but its last sync ({} events) wrote {need}",
                    head.derived_size
                )));
            }
        }
        let mut raw = vec![
            0u8;
            usize::try_from(derived_bundles * 8)
                .map_err(|_| corrupt("too many bundles".into()))?
        ];
        bundles
            .read_exact_at(&mut raw, 0)
            .map_err(io_err(&dir.join(BUNDLES), "read"))?;
        let bundle_ends: Vec<u64> = raw
            .chunks_exact(8)
            .filter_map(|c| c.try_into().ok().map(u64::from_be_bytes))
            .collect();
        let mut last = RECORDS_AT;
        for (n, &end) in bundle_ends.iter().enumerate() {
            if end <= last || end > head.derived_end {
                return Err(corrupt(format!(
                    "bundle {n} ends at byte {end}, not after {last} and within {}",
                    head.derived_end
                )));
            }
            last = end;
        }
        let files = LogFiles {
            dir: dir.to_owned(),
            events,
            hashes,
            bundles,
            committed: RwLock::new(Committed {
                size: head.derived_size,
                end: head.derived_end,
                bundle_ends,
            }),
            size: AtomicU64::new(head.derived_size),
            writer: Mutex::new(Writer {
                last: head,
                allocated,
                derived_size: head.derived_size,
                derived_end: head.derived_end,
            }),
            pruned: RwLock::new(head.pruned),
        };
        files.rebuild_derived(&head)?;
        Ok(files)
    }

    /// Recomputes the hashes and bundle ends of the events after the derived files' last
    /// sync (from the records) and syncs them.
    fn rebuild_derived(&self, head: &Head) -> Result<(), LogFilesError> {
        self.rebuild_derived_by(head, REBUILD_WINDOW)
    }

    /// [`Self::rebuild_derived`], reading the records `window` bytes at a time.
    fn rebuild_derived_by(&self, head: &Head, window: u64) -> Result<(), LogFilesError> {
        let from = head.derived_size;
        let cut = || {
            self.corrupt(format!(
                "events {from}..{} are not {} whole records",
                head.size,
                head.size - from
            ))
        };
        let mem_start = tlog::stored_hash_count(from);
        let mut mem: Vec<Hash> = Vec::new();
        let mut ends = Vec::new();
        let mut n = from;
        let mut at = head.derived_end;
        // The records are read a window at a time: there may be many.
        let mut pending: Vec<u8> = Vec::new();
        let mut read_to = head.derived_end;
        while read_to < head.end || !pending.is_empty() {
            if read_to < head.end {
                let take = (head.end - read_to).min(window);
                pending.extend_from_slice(&self.read_at(
                    &self.events,
                    EVENTS,
                    read_to,
                    read_to + take,
                )?);
                read_to += take;
            }
            let mut used = 0;
            while let Some((len, rest)) = pending[used..].split_first_chunk::<2>() {
                let len = usize::from(u16::from_be_bytes(*len));
                let Some(leaf) = rest.get(..len) else { break };
                let reader = Hashes {
                    files: self,
                    count: mem_start + mem.len() as u64,
                    mem_start,
                    mem: &mem,
                };
                let new = tlog::stored_hashes_for_record(n, tlog::leaf_hash(leaf), &reader)
                    .map_err(|e| {
                        self.corrupt(format!("rebuilding the hashes of event {n}: {e}"))
                    })?;
                mem.extend(new);
                n += 1;
                used += 2 + len;
                at += 2 + len as u64;
                if n.is_multiple_of(BUNDLE) {
                    ends.push(at);
                }
            }
            if used == 0 && read_to >= head.end {
                // A record cut off at the end.
                return Err(cut());
            }
            pending.drain(..used);
        }
        if n != head.size {
            return Err(cut());
        }
        if n > from {
            tracing::info!(
                dir = %self.dir.display(),
                events = n - from,
                "recomputed the hashes of events committed after the last sync of the derived files"
            );
        }
        let hashes: Vec<u8> = mem.iter().flatten().copied().collect();
        let bundles = from / BUNDLE;
        let end_bytes = ends_bytes(&ends);
        for (file, name, bytes, at) in [
            (&self.hashes, HASHES, &hashes, mem_start * 32),
            (&self.bundles, BUNDLES, &end_bytes, bundles * 8),
        ] {
            let path = self.dir.join(name);
            file.write_all_at(bytes, at)
                .and_then(|()| file.set_len(at + bytes.len() as u64))
                .and_then(|()| file.sync_all())
                .map_err(io_err(&path, "rewrite"))?;
        }
        // Durable now; the next commit's head says so (the two slots stay the last two
        // commits, so an interrupted one still has the one before to fall back on).
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        w.derived_size = head.size;
        w.derived_end = head.end;
        drop(w);
        let mut c = self
            .committed
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        c.size = head.size;
        c.end = head.end;
        c.bundle_ends.extend_from_slice(&ends);
        drop(c);
        self.size.store(head.size, Ordering::Release);
        Ok(())
    }

    /// Writes the next head slot and syncs the events file: what commits.
    fn write_head(
        &self,
        w: &mut Writer,
        size: u64,
        commit_start: u64,
        end: u64,
        records_crc: u32,
    ) -> Result<(), LogFilesError> {
        let head = Head {
            seq: w.last.seq + 1,
            size,
            end,
            commit_start,
            records_crc,
            derived_size: w.derived_size,
            derived_end: w.derived_end,
            pruned: w.last.pruned,
        };
        self.put_head(w, head)
    }

    /// Writes `head` to its slot and syncs the events file.
    fn put_head(&self, w: &mut Writer, head: Head) -> Result<(), LogFilesError> {
        self.events
            .write_all_at(&head.encode(), (head.seq % 2) * SLOT_STRIDE)
            .and_then(|()| self.events.sync_data())
            .map_err(io_err(&self.dir.join(EVENTS), "commit"))?;
        w.last = head;
        Ok(())
    }

    /// Syncs the hashes and bundle ends of every committed event and writes a head that
    /// says so, so that the next open recomputes nothing (and finds each stored hash as
    /// the commit wrote it, to check the events against). For a clean stop; also done
    /// when the files are dropped.
    pub fn sync_derived(&self) -> Result<(), LogFilesError> {
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let last = w.last;
        if last.derived_size == last.size {
            // The head on disk says so already.
            return Ok(());
        }
        // (After an open that recomputed them, they are durable already, but the head
        // does not say so yet.)
        self.sync_derived_files()?;
        let before = (w.derived_size, w.derived_end);
        (w.derived_size, w.derived_end) = (last.size, last.end);
        let written = self.write_head(
            &mut w,
            last.size,
            last.commit_start,
            last.end,
            last.records_crc,
        );
        if written.is_err() {
            (w.derived_size, w.derived_end) = before;
        }
        written
    }

    /// Syncs the hashes and bundle ends files (not the head).
    fn sync_derived_files(&self) -> Result<(), LogFilesError> {
        for (file, name) in [(&self.hashes, HASHES), (&self.bundles, BUNDLES)] {
            file.sync_data()
                .map_err(io_err(&self.dir.join(name), "sync"))?;
        }
        Ok(())
    }

    fn corrupt(&self, detail: String) -> LogFilesError {
        LogFilesError::Corrupt {
            dir: self.dir.clone(),
            detail,
        }
    }

    fn committed(&self) -> RwLockReadGuard<'_, Committed> {
        // Plain numbers, replaced only after a commit is durable: a panicked writer cannot
        // leave them half-made.
        self.committed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Committed events.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Where the committed records end in the events file.
    pub fn end(&self) -> u64 {
        self.committed().end
    }

    /// Writes `batch` after what is committed and commits it with one sync; then shows it
    /// to readers. On an error nothing is committed.
    pub fn commit(&self, batch: &Batch<'_>) -> Result<(), LogFilesError> {
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let (size, end, bundles) = {
            let c = self.committed();
            (c.size, c.end, c.bundle_ends.len() as u64)
        };
        if batch.size == size && batch.records.is_empty() {
            return Ok(());
        }
        let new_hashes = tlog::stored_hash_count(batch.size)
            .checked_sub(tlog::stored_hash_count(size))
            .ok_or_else(|| {
                self.corrupt(format!("a commit to {} events after {size}", batch.size))
            })?;
        let new_bundles = batch.size / BUNDLE - size / BUNDLE;
        if batch.hashes.len() as u64 != new_hashes * 32
            || batch.bundle_ends.len() as u64 != new_bundles
        {
            return Err(self.corrupt(format!(
                "a commit from {size} to {} events brings {} hash bytes and {} bundle ends",
                batch.size,
                batch.hashes.len(),
                batch.bundle_ends.len()
            )));
        }
        let new_end = end + batch.records.len() as u64;
        self.grow(&mut w, new_end)?;
        let ends = ends_bytes(batch.bundle_ends);
        for (file, name, bytes, at) in [
            (&self.events, EVENTS, batch.records, end),
            (
                &self.hashes,
                HASHES,
                batch.hashes,
                tlog::stored_hash_count(size) * 32,
            ),
            (&self.bundles, BUNDLES, ends.as_slice(), bundles * 8),
        ] {
            if !bytes.is_empty() {
                file.write_all_at(bytes, at)
                    .map_err(io_err(&self.dir.join(name), "write"))?;
            }
        }
        let derived_before = (w.derived_size, w.derived_end);
        if batch.size - w.derived_size >= DERIVED_SYNC_EVENTS {
            // The derived files are durable up to here before a head says so.
            self.sync_derived_files()?;
            w.derived_size = batch.size;
            w.derived_end = new_end;
        }
        let crc = crc32fast::hash(batch.records);
        if let Err(e) = self.write_head(&mut w, batch.size, end, new_end, crc) {
            // The derived files' sync point is the committed head's.
            (w.derived_size, w.derived_end) = derived_before;
            return Err(e);
        }
        drop(w);
        {
            let mut c = self
                .committed
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            c.size = batch.size;
            c.end = new_end;
            c.bundle_ends.extend_from_slice(batch.bundle_ends);
        }
        self.size.store(batch.size, Ordering::Release);
        Ok(())
    }

    /// Grows the events file with zeros so that it holds `end` bytes, in [`GROW`] steps.
    fn grow(&self, w: &mut Writer, end: u64) -> Result<(), LogFilesError> {
        if end <= w.allocated {
            return Ok(());
        }
        let target = end.div_ceil(GROW) * GROW;
        let zeros = vec![0u8; usize::try_from(GROW).unwrap_or(1 << 20)];
        let mut at = w.allocated;
        while at < target {
            let n = (target - at).min(GROW);
            self.events
                .write_all_at(&zeros[..usize::try_from(n).unwrap_or(0)], at)
                .map_err(io_err(&self.dir.join(EVENTS), "grow"))?;
            at += n;
        }
        w.allocated = target;
        Ok(())
    }

    fn read_at(
        &self,
        file: &File,
        name: &str,
        start: u64,
        end: u64,
    ) -> Result<Vec<u8>, LogFilesError> {
        let len = usize::try_from(end.saturating_sub(start))
            .map_err(|_| self.corrupt(format!("a read of {} bytes from {name}", end - start)))?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, start)
            .map_err(io_err(&self.dir.join(name), "read"))?;
        Ok(buf)
    }

    /// Stored hash `i` (which must be committed).
    pub fn hash(&self, i: u64) -> Result<Hash, LogFilesError> {
        let mut h = [0u8; 32];
        self.hashes
            .read_exact_at(&mut h, i * 32)
            .map_err(io_err(&self.dir.join(HASHES), "read"))?;
        Ok(h)
    }

    /// Committed stored hashes `start .. start + count`, 32 bytes each.
    pub fn hash_bytes(&self, start: u64, count: u64) -> Result<Vec<u8>, LogFilesError> {
        self.read_at(&self.hashes, HASHES, start * 32, (start + count) * 32)
    }

    /// Complete bundle `n`: its records, back to back (an entry bundle); `None` when it is
    /// not complete; [`LogFilesError::Pruned`] when it was pruned.
    pub fn bundle(&self, n: u64) -> Result<Option<Vec<u8>>, LogFilesError> {
        let (start, end) = {
            let c = self.committed();
            let Some(i) = usize::try_from(n).ok().filter(|&i| i < c.bundle_ends.len()) else {
                return Ok(None);
            };
            let start = if i == 0 {
                RECORDS_AT
            } else {
                c.bundle_ends[i - 1]
            };
            (start, c.bundle_ends[i])
        };
        // Held while reading: a prune punches only once no read is under way.
        let pruned = self.pruned.read().unwrap_or_else(PoisonError::into_inner);
        if n < *pruned {
            return Err(LogFilesError::Pruned { bundle: n });
        }
        let bytes = self.read_at(&self.events, EVENTS, start, end)?;
        drop(pruned);
        Ok(Some(bytes))
    }

    /// Complete bundles below this are pruned ([`Self::prune_below`]); 0 when none is.
    pub fn pruned_below(&self) -> u64 {
        *self.pruned.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Frees the disk space of complete bundles `0..bundle` (their records), keeping the
    /// stored hashes and bundle ends; reads of them fail with [`LogFilesError::Pruned`]
    /// from then on. Pruning only grows: a `bundle` at or below what is pruned changes
    /// nothing; one above the complete bundles is refused ([`LogFilesError::NotComplete`]).
    ///
    /// The derived files are synced and a head carrying the new prune point is committed
    /// first; then holes are punched over the whole filesystem blocks of the records of
    /// every pruned bundle (so also what an interrupted earlier prune recorded but did not
    /// free). Where the filesystem cannot punch holes, the prune stays recorded, a warning
    /// is logged and the outcome says the space is not freed. An error after the head was
    /// committed leaves the prune recorded ([`Self::pruned_below`]), the space not freed.
    /// Blocks (syncs), and holds commits back meanwhile.
    pub fn prune_below(&self, bundle: u64) -> Result<PruneOutcome, LogFilesError> {
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let before = w.last.pruned;
        if bundle <= before {
            return Ok(PruneOutcome {
                pruned_below: before,
                newly_pruned: 0,
                space_freed: true,
            });
        }
        let prune_end = {
            let c = self.committed();
            let complete = c.bundle_ends.len() as u64;
            usize::try_from(bundle - 1)
                .ok()
                .and_then(|i| c.bundle_ends.get(i))
                .copied()
                .ok_or(LogFilesError::NotComplete {
                    bundle: bundle - 1,
                    complete,
                })?
        };
        // No open after this recomputes hashes from the records that go: the derived files
        // are durable up to the committed size, and the head says so. It adds no records,
        // so no open checks a checksum over pruned ones either.
        self.sync_derived_files()?;
        let last = w.last;
        self.put_head(
            &mut w,
            Head {
                seq: last.seq + 1,
                size: last.size,
                end: last.end,
                commit_start: last.end,
                records_crc: crc32fast::hash(&[]),
                derived_size: last.size,
                derived_end: last.end,
                pruned: bundle,
            },
        )?;
        (w.derived_size, w.derived_end) = (last.size, last.end);
        // Recorded; now readers are told, and the holes punched while none reads.
        let mut pruned = self.pruned.write().unwrap_or_else(PoisonError::into_inner);
        *pruned = bundle;
        drop(w);
        let freed = self.punch(RECORDS_AT, prune_end);
        drop(pruned);
        let space_freed = freed?;
        if !space_freed {
            tracing::warn!(
                dir = %self.dir.display(),
                pruned_below = bundle,
                "the filesystem cannot punch holes: the pruned event bundles are recorded as \
                 pruned, but their disk space is not freed"
            );
        }
        Ok(PruneOutcome {
            pruned_below: bundle,
            newly_pruned: bundle - before,
            space_freed,
        })
    }

    /// Punches holes over the whole filesystem blocks within bytes `start..end` of the
    /// events file, keeping its length; false when the filesystem cannot.
    fn punch(&self, start: u64, end: u64) -> Result<bool, LogFilesError> {
        let path = self.dir.join(EVENTS);
        let block = self
            .events
            .metadata()
            .map_err(io_err(&path, "stat"))?
            .blksize()
            .max(PUNCH_BLOCK);
        let block = if block.is_power_of_two() {
            block
        } else {
            PUNCH_BLOCK
        };
        let from = start.div_ceil(block) * block;
        let to = end / block * block;
        if to <= from {
            return Ok(true);
        }
        match punch_hole(&self.events, from, to - from) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS)) => {
                Ok(false)
            }
            Err(e) => Err(io_err(&path, "punch holes")(e)),
        }
    }

    /// The incomplete bundle's records (the events from `256·(size/256)` to `size`), with
    /// the size they belong to.
    pub fn tail(&self) -> Result<(u64, Vec<u8>), LogFilesError> {
        let (size, start, end) = {
            let c = self.committed();
            (
                c.size,
                c.bundle_ends.last().copied().unwrap_or(RECORDS_AT),
                c.end,
            )
        };
        Ok((size, self.read_at(&self.events, EVENTS, start, end)?))
    }

    /// Bytes the files occupy on disk: their allocated blocks (the events file with what
    /// it was grown ahead, without the holes of pruned bundles).
    pub fn disk_bytes(&self) -> Result<u64, LogFilesError> {
        let mut total = 0;
        for (file, name) in [
            (&self.events, EVENTS),
            (&self.hashes, HASHES),
            (&self.bundles, BUNDLES),
        ] {
            total += file
                .metadata()
                .map_err(io_err(&self.dir.join(name), "stat"))?
                .blocks()
                * 512;
        }
        Ok(total)
    }
}

/// Frees the disk space of bytes `offset .. offset + len` of `file` (they read as zeros
/// after), keeping its length: `fallocate(PUNCH_HOLE | KEEP_SIZE)`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn punch_hole(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let too_large = |_| std::io::Error::from(std::io::ErrorKind::InvalidInput);
    let offset = libc::off_t::try_from(offset).map_err(too_large)?;
    let len = libc::off_t::try_from(len).map_err(too_large)?;
    loop {
        // SAFETY: fallocate takes plain integers and touches no memory of this process;
        // the descriptor is `file`'s, borrowed (so open) for the whole call.
        let done = unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            )
        };
        if done == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Elsewhere, holes are not punched: the space stays in use.
#[cfg(not(target_os = "linux"))]
fn punch_hole(_file: &File, _offset: u64, _len: u64) -> std::io::Result<()> {
    Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}

impl Drop for LogFiles {
    fn drop(&mut self) {
        if let Err(e) = self.sync_derived() {
            tracing::warn!(error = %e, "could not sync the event log's hashes on close; they are recomputed at the next start");
        }
    }
}

#[cfg(test)]
mod tests;
