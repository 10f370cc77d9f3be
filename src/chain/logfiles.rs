//! The event log's files: every event's leaf bytes, the Merkle tree's stored hashes, where
//! each entry bundle ends, and the head that says how much of them is committed.
//!
//! A directory holds four append-only files:
//! - `entries`: each event as a u16-BE length and its leaf bytes, back to back in index
//!   order. That is the C2SP entry-bundle encoding, so complete bundle n (events
//!   `256·n .. 256·n+255`) is one byte range, exactly what `GET /tile/entries/<n>` serves.
//! - `hashes`: the stored hashes ([`tlog::stored_hash_index`] order), 32 bytes each.
//! - `bundles`: where each complete bundle ends in `entries` (u64 BE each).
//! - `head`: two slots, 4 KiB apart, each naming a commit: its sequence number, the
//!   number of events and the end of `entries`, with a checksum.
//!
//! A commit writes its bytes after the committed ends of the three data files, syncs
//! them, and only then writes the head slot of its sequence number (alternating) and
//! syncs it: so the newest valid slot never names bytes that are not durable, and a torn
//! head write leaves the other slot, the commit before. Opening takes the newest valid
//! slot and cuts off what a crashed commit wrote after it. Nothing committed is ever
//! rewritten. A failed commit publishes nothing; the next one writes over its bytes.
//!
//! Complete bundles never change: keeping them in plain files (read through the page
//! cache, not the process's heap) is what keeps the server's memory flat as the log grows.
//!
//! Its one error type is [`LogFilesError`].

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use sha2::Digest;

use super::tlog::{self, Hash};

const ENTRIES: &str = "entries";
const HASHES: &str = "hashes";
const BUNDLES: &str = "bundles";
const HEAD: &str = "head";
/// Events per entry bundle (the C2SP width).
const BUNDLE: u64 = 256;
/// What a head slot starts with.
const MAGIC: &[u8; 8] = b"AUDLOG01";
/// Bytes of a head slot: magic, sequence, size, entries end, checksum.
const SLOT_LEN: usize = 40;
/// Where the second head slot begins (its own 4 KiB page).
const SLOT_STRIDE: u64 = 4096;

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
            LogFilesError::Corrupt { .. } => false,
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
    /// Where each bundle the new events complete ends in the entries file.
    pub bundle_ends: &'a [u64],
}

/// What is committed, as readers see it.
#[derive(Debug, Clone, Default)]
struct Committed {
    size: u64,
    entries_end: u64,
    /// `bundle_ends[n]`: where complete bundle n ends (it starts where n - 1 ends, or at 0).
    bundle_ends: Vec<u64>,
}

/// One valid head slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    seq: u64,
    size: u64,
    entries_end: u64,
}

impl Head {
    fn encode(&self) -> [u8; SLOT_LEN] {
        let mut out = [0u8; SLOT_LEN];
        out[..8].copy_from_slice(MAGIC);
        out[8..16].copy_from_slice(&self.seq.to_be_bytes());
        out[16..24].copy_from_slice(&self.size.to_be_bytes());
        out[24..32].copy_from_slice(&self.entries_end.to_be_bytes());
        let sum = sha2::Sha256::digest(&out[..32]);
        out[32..].copy_from_slice(&sum[..8]);
        out
    }

    /// The slot's commit, if it is one (right magic and checksum).
    fn decode(slot: &[u8]) -> Option<Head> {
        let slot: &[u8; SLOT_LEN] = slot.get(..SLOT_LEN)?.try_into().ok()?;
        if &slot[..8] != MAGIC || sha2::Sha256::digest(&slot[..32])[..8] != slot[32..] {
            return None;
        }
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&slot[at..at + 8]);
            u64::from_be_bytes(b)
        };
        Some(Head {
            seq: word(8),
            size: word(16),
            entries_end: word(24),
        })
    }
}

/// The open files of one event log directory.
pub struct LogFiles {
    dir: PathBuf,
    entries: File,
    hashes: File,
    bundles: File,
    head: File,
    committed: RwLock<Committed>,
    /// `committed.size`, for readers that need nothing else.
    size: AtomicU64,
    /// The sequence number of the last commit (only the committer advances it).
    seq: AtomicU64,
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
fn staging(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_owned();
    name.push(".new");
    dir.with_file_name(name)
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
        for name in [ENTRIES, HASHES, BUNDLES] {
            open_file(&stage, name, true)?
                .sync_all()
                .map_err(io_err(&stage.join(name), "sync"))?;
        }
        let head = open_file(&stage, HEAD, true)?;
        let empty = Head {
            seq: 0,
            size: 0,
            entries_end: 0,
        };
        head.write_all_at(&empty.encode(), 0)
            .and_then(|()| head.sync_all())
            .map_err(io_err(&stage.join(HEAD), "write"))?;
        drop(head);
        sync_dir(&stage)?;
        Self::open(&stage)
    }

    /// Moves a log made with [`Self::create_staged`] to its place (a rename, made durable).
    pub fn install(mut self) -> Result<LogFiles, LogFilesError> {
        let stage = self.dir.clone();
        let Some(name) = stage.file_name().and_then(|n| n.to_str()) else {
            return Err(self.corrupt("not a staging directory".into()));
        };
        let Some(final_name) = name.strip_suffix(".new") else {
            return Err(self.corrupt("not a staging directory".into()));
        };
        let dir = stage.with_file_name(final_name);
        std::fs::rename(&stage, &dir).map_err(io_err(&dir, "rename into place"))?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        self.dir = dir;
        Ok(self)
    }

    /// Opens the log in `dir`: the newest valid head slot says what is committed; bytes a
    /// crashed commit wrote after it are cut off. Files shorter than the head says mean
    /// lost data, and are refused.
    pub fn open(dir: &Path) -> Result<LogFiles, LogFilesError> {
        let entries = open_file(dir, ENTRIES, false)?;
        let hashes = open_file(dir, HASHES, false)?;
        let bundles = open_file(dir, BUNDLES, false)?;
        let head_file = open_file(dir, HEAD, false)?;
        let corrupt = |detail: String| LogFilesError::Corrupt {
            dir: dir.to_owned(),
            detail,
        };
        let mut slots = vec![0u8; SLOT_STRIDE as usize + SLOT_LEN];
        let head_len = head_file
            .metadata()
            .map_err(io_err(&dir.join(HEAD), "stat"))?
            .len();
        let readable = usize::try_from(head_len)
            .unwrap_or(usize::MAX)
            .min(slots.len());
        head_file
            .read_exact_at(&mut slots[..readable], 0)
            .map_err(io_err(&dir.join(HEAD), "read"))?;
        let head = [0, SLOT_STRIDE as usize]
            .iter()
            .filter_map(|&at| Head::decode(&slots[at..]))
            .max_by_key(|h| h.seq)
            .ok_or_else(|| corrupt("the head file holds no valid commit".into()))?;

        let hash_bytes = tlog::stored_hash_count(head.size) * 32;
        let full = head.size / BUNDLE;
        let bundle_bytes = full * 8;
        for (file, name, need) in [
            (&entries, ENTRIES, head.entries_end),
            (&hashes, HASHES, hash_bytes),
            (&bundles, BUNDLES, bundle_bytes),
        ] {
            let path = dir.join(name);
            let len = file.metadata().map_err(io_err(&path, "stat"))?.len();
            if len < need {
                return Err(corrupt(format!(
                    "{name} holds {len} bytes, but the last commit ({} events) needs {need}",
                    head.size
                )));
            }
            if len > need {
                tracing::warn!(
                    file = %path.display(),
                    bytes = len - need,
                    "cutting off what an interrupted commit wrote"
                );
                file.set_len(need)
                    .and_then(|()| file.sync_all())
                    .map_err(io_err(&path, "truncate"))?;
            }
        }
        let mut raw = vec![
            0u8;
            usize::try_from(bundle_bytes)
                .map_err(|_| corrupt("too many bundles".into()))?
        ];
        bundles
            .read_exact_at(&mut raw, 0)
            .map_err(io_err(&dir.join(BUNDLES), "read"))?;
        let bundle_ends: Vec<u64> = raw
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                u64::from_be_bytes(b)
            })
            .collect();
        let mut last = 0;
        for (n, &end) in bundle_ends.iter().enumerate() {
            if end <= last || end > head.entries_end {
                return Err(corrupt(format!(
                    "bundle {n} ends at byte {end}, after {last} and within {} expected",
                    head.entries_end
                )));
            }
            last = end;
        }
        Ok(LogFiles {
            dir: dir.to_owned(),
            entries,
            hashes,
            bundles,
            head: head_file,
            committed: RwLock::new(Committed {
                size: head.size,
                entries_end: head.entries_end,
                bundle_ends,
            }),
            size: AtomicU64::new(head.size),
            seq: AtomicU64::new(head.seq),
        })
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

    /// Where the committed events end in the entries file.
    pub fn entries_end(&self) -> u64 {
        self.committed().entries_end
    }

    /// Writes `batch` after what is committed, makes it durable, then commits it (the
    /// head) and shows it to readers. On an error nothing is committed.
    pub fn commit(&self, batch: &Batch<'_>) -> Result<(), LogFilesError> {
        let (size, entries_end, bundles) = {
            let c = self.committed();
            (c.size, c.entries_end, c.bundle_ends.len() as u64)
        };
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
        let mut ends = Vec::with_capacity(batch.bundle_ends.len() * 8);
        for e in batch.bundle_ends {
            ends.extend_from_slice(&e.to_be_bytes());
        }
        for (file, name, bytes, at) in [
            (&self.entries, ENTRIES, batch.records, entries_end),
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
        for (file, name, bytes) in [
            (&self.entries, ENTRIES, batch.records),
            (&self.hashes, HASHES, batch.hashes),
            (&self.bundles, BUNDLES, ends.as_slice()),
        ] {
            if !bytes.is_empty() {
                file.sync_data()
                    .map_err(io_err(&self.dir.join(name), "sync"))?;
            }
        }
        let entries_end = entries_end + batch.records.len() as u64;
        let seq = self.seq.load(Ordering::Relaxed) + 1;
        let head = Head {
            seq,
            size: batch.size,
            entries_end,
        };
        self.head
            .write_all_at(&head.encode(), (seq % 2) * SLOT_STRIDE)
            .and_then(|()| self.head.sync_data())
            .map_err(io_err(&self.dir.join(HEAD), "write"))?;
        self.seq.store(seq, Ordering::Relaxed);
        {
            let mut c = self
                .committed
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            c.size = batch.size;
            c.entries_end = entries_end;
            c.bundle_ends.extend_from_slice(batch.bundle_ends);
        }
        self.size.store(batch.size, Ordering::Release);
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
    /// not complete.
    pub fn bundle(&self, n: u64) -> Result<Option<Vec<u8>>, LogFilesError> {
        let (start, end) = {
            let c = self.committed();
            let Some(i) = usize::try_from(n).ok().filter(|&i| i < c.bundle_ends.len()) else {
                return Ok(None);
            };
            let start = if i == 0 { 0 } else { c.bundle_ends[i - 1] };
            (start, c.bundle_ends[i])
        };
        self.read_at(&self.entries, ENTRIES, start, end).map(Some)
    }

    /// The incomplete bundle's records (the events from `256·(size/256)` to `size`), with
    /// the size they belong to.
    pub fn tail(&self) -> Result<(u64, Vec<u8>), LogFilesError> {
        let (size, start, end) = {
            let c = self.committed();
            (
                c.size,
                c.bundle_ends.last().copied().unwrap_or(0),
                c.entries_end,
            )
        };
        Ok((size, self.read_at(&self.entries, ENTRIES, start, end)?))
    }

    /// Bytes the files occupy.
    pub fn disk_bytes(&self) -> Result<u64, LogFilesError> {
        let mut total = 0;
        for (file, name) in [
            (&self.entries, ENTRIES),
            (&self.hashes, HASHES),
            (&self.bundles, BUNDLES),
            (&self.head, HEAD),
        ] {
            total += file
                .metadata()
                .map_err(io_err(&self.dir.join(name), "stat"))?
                .len();
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Records of `leaves` (u16-BE length and bytes each).
    fn records(leaves: &[&[u8]]) -> Vec<u8> {
        tlog::encode_entry_bundle(leaves).unwrap()
    }

    /// A commit of events `from..to` with made-up hashes: enough to test the files.
    fn batch_bytes(from: u64, to: u64) -> (Vec<u8>, Vec<u8>) {
        let leaves: Vec<Vec<u8>> = (from..to)
            .map(|i| format!("event {i}").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = leaves.iter().map(Vec::as_slice).collect();
        let hashes = (tlog::stored_hash_count(from)..tlog::stored_hash_count(to))
            .flat_map(|h| [h as u8; 32])
            .collect();
        (records(&refs), hashes)
    }

    fn commit(files: &LogFiles, to: u64) {
        let from = files.size();
        let (recs, hashes) = batch_bytes(from, to);
        // Bundle ends: the end of each record whose index + 1 is a multiple of 256.
        let mut ends = Vec::new();
        let mut at = files.entries_end();
        for i in from..to {
            at += 2 + format!("event {i}").len() as u64;
            if (i + 1) % BUNDLE == 0 {
                ends.push(at);
            }
        }
        files
            .commit(&Batch {
                size: to,
                records: &recs,
                hashes: &hashes,
                bundle_ends: &ends,
            })
            .unwrap();
    }

    #[test]
    fn commits_survive_a_reopen_and_bundles_are_byte_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let files = LogFiles::open_or_create(&path).unwrap();
        assert_eq!(files.size(), 0);
        commit(&files, 100);
        commit(&files, 300);
        commit(&files, 513);
        assert_eq!(files.size(), 513);
        let b1 = files.bundle(1).unwrap().unwrap();
        let decoded = tlog::decode_entry_bundle(&b1).unwrap();
        assert_eq!(decoded.len(), 256);
        assert_eq!(decoded[0], b"event 256");
        assert!(files.bundle(2).unwrap().is_none());
        let (size, tail) = files.tail().unwrap();
        assert_eq!(size, 513);
        assert_eq!(
            tlog::decode_entry_bundle(&tail).unwrap(),
            vec![b"event 512"]
        );
        assert_eq!(files.hash(3).unwrap(), [3u8; 32]);
        drop(files);

        let files = LogFiles::open_or_create(&path).unwrap();
        assert_eq!(files.size(), 513);
        assert_eq!(files.bundle(1).unwrap().unwrap(), b1);
        assert_eq!(
            files
                .hash_bytes(0, tlog::stored_hash_count(513))
                .unwrap()
                .len() as u64,
            tlog::stored_hash_count(513) * 32
        );
        commit(&files, 600);
        assert_eq!(files.size(), 600);
    }

    #[test]
    fn what_a_crashed_commit_wrote_is_cut_off_and_a_torn_head_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let files = LogFiles::open_or_create(&path).unwrap();
        commit(&files, 10);
        let end = files.entries_end();
        // A commit that wrote its data but crashed before its head.
        files.entries.write_all_at(b"\x00\x05junk!", end).unwrap();
        files
            .hashes
            .write_all_at(&[9u8; 64], tlog::stored_hash_count(10) * 32)
            .unwrap();
        // ... and a torn write of the next head slot.
        files.head.write_all_at(b"AUDLOG01garbage", 0).unwrap();
        drop(files);

        let files = LogFiles::open(&path).unwrap();
        assert_eq!(files.size(), 10);
        assert_eq!(files.entries_end(), end);
        assert_eq!(files.disk_bytes().unwrap(), {
            end + tlog::stored_hash_count(10) * 32
                + std::fs::metadata(path.join(HEAD)).unwrap().len()
        });
        commit(&files, 20);
        drop(files);
        assert_eq!(LogFiles::open(&path).unwrap().size(), 20);
    }

    #[test]
    fn lost_bytes_and_a_missing_head_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let files = LogFiles::open_or_create(&path).unwrap();
        commit(&files, 300);
        drop(files);
        let len = std::fs::metadata(path.join(ENTRIES)).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(path.join(ENTRIES))
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let err = LogFiles::open(&path).unwrap_err();
        assert!(err.to_string().contains("entries holds"), "{err}");

        std::fs::write(path.join(HEAD), b"nothing").unwrap();
        let err = LogFiles::open(&path).unwrap_err();
        assert!(err.to_string().contains("no valid commit"), "{err}");
    }

    #[test]
    fn a_commit_that_does_not_add_up_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let files = LogFiles::open_or_create(&dir.path().join("log")).unwrap();
        let (recs, _) = batch_bytes(0, 3);
        let err = files
            .commit(&Batch {
                size: 3,
                records: &recs,
                hashes: &[],
                bundle_ends: &[],
            })
            .unwrap_err();
        assert!(matches!(err, LogFilesError::Corrupt { .. }), "{err}");
        assert_eq!(files.size(), 0);
    }

    #[test]
    fn a_staged_log_is_replaced_and_installed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let stale = LogFiles::create_staged(&path).unwrap();
        commit(&stale, 5);
        drop(stale);
        // An interrupted earlier attempt is started over.
        let staged = LogFiles::create_staged(&path).unwrap();
        assert_eq!(staged.size(), 0);
        commit(&staged, 7);
        let installed = staged.install().unwrap();
        assert_eq!(installed.dir(), path);
        assert!(!staging(&path).exists());
        drop(installed);
        assert_eq!(LogFiles::open(&path).unwrap().size(), 7);
    }

    #[test]
    fn a_full_disk_is_told_apart() {
        let full = LogFilesError::Io {
            path: PathBuf::from("x"),
            operation: "write",
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        };
        assert!(full.is_storage_full());
        let other = LogFilesError::Io {
            path: PathBuf::from("x"),
            operation: "write",
            source: std::io::Error::from_raw_os_error(libc::EIO),
        };
        assert!(!other.is_storage_full());
    }
}
