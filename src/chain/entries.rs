//! The event log's complete entry bundles, in one append-only file beside sled.
//!
//! A complete bundle never changes, and it is the largest thing the log stores (256
//! events, tens of kilobytes). Kept in sled, each one was a value in a node of 16 such
//! values: every new bundle made sled rewrite that node (often as a blob file of a
//! megabyte or more) and hold it in its cache, so the server's memory grew with the log.
//! Here the bundles lie back to back in the file, each exactly the bytes
//! `GET /tile/entries/<n>` serves, and the log's sled tree keeps where each one ends.
//!
//! Durability is the log's to order: [`EntryFile::append`] writes bundles after the
//! published end and syncs them, the log then commits their ends in sled, and only after
//! that flush does it [`publish`](EntryFile::publish) them. A crash in between leaves
//! bytes after the last end sled knows; [`EntryFile::open`] cuts them off. A file shorter
//! than sled's ends means lost data, and opening refuses it.
//!
//! Its one error type is [`EntryFileError`].

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// What can go wrong with the entry file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntryFileError {
    /// Reading, writing or syncing the file failed.
    #[error("entry bundle file {path}: {operation}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        operation: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file does not hold what the log's index says it does.
    #[error("entry bundle file {path} is damaged: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

impl EntryFileError {
    /// Whether this is the disk (or the file-size limit) being full.
    pub fn is_storage_full(&self) -> bool {
        match self {
            EntryFileError::Io { source, .. } => {
                matches!(
                    source.raw_os_error(),
                    Some(libc::ENOSPC) | Some(libc::EFBIG)
                ) || matches!(
                    source.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::FileTooLarge
                )
            }
            EntryFileError::Corrupt { .. } => false,
        }
    }
}

/// The append-only file of complete entry bundles, with the end offset of each.
pub struct EntryFile {
    file: File,
    path: PathBuf,
    /// `ends[n]`: where bundle `n` ends (it starts where bundle `n - 1` ends, or at 0).
    ends: RwLock<Vec<u64>>,
}

impl std::fmt::Debug for EntryFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryFile")
            .field("path", &self.path)
            .field("bundles", &self.count())
            .finish_non_exhaustive()
    }
}

impl EntryFile {
    /// Opens (or creates) the file at `path`, holding the bundles that end at `ends` (in
    /// order, as the log's index has them). Bytes after the last end (a commit that
    /// crashed before sled recorded it) are cut off; a file shorter than the last end is
    /// refused.
    pub fn open(path: &Path, ends: Vec<u64>) -> Result<EntryFile, EntryFileError> {
        let io = |operation| {
            let path = path.to_owned();
            move |source| EntryFileError::Io {
                path,
                operation,
                source,
            }
        };
        let corrupt = |detail: String| EntryFileError::Corrupt {
            path: path.to_owned(),
            detail,
        };
        if let Some(w) = ends.windows(2).find(|w| w[1] <= w[0]) {
            return Err(corrupt(format!(
                "the index's bundle ends are not increasing ({} then {})",
                w[0], w[1]
            )));
        }
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io("open"))?;
        if !existed {
            // The new file's name must be durable before anything in it is relied on.
            if let Some(dir) = path.parent() {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io("sync its directory"))?;
            }
        }
        let len = file.metadata().map_err(io("stat"))?.len();
        let end = ends.last().copied().unwrap_or(0);
        if len < end {
            return Err(corrupt(format!(
                "it holds {len} bytes, but the log's {} bundles end at byte {end}",
                ends.len()
            )));
        }
        if len > end {
            tracing::warn!(
                path = %path.display(),
                bytes = len - end,
                "cutting off entry bundles a crashed commit wrote but never recorded"
            );
            file.set_len(end).map_err(io("truncate"))?;
            file.sync_all().map_err(io("sync"))?;
        }
        Ok(EntryFile {
            file,
            path: path.to_owned(),
            ends: RwLock::new(ends),
        })
    }

    fn io(&self, operation: &'static str) -> impl FnOnce(std::io::Error) -> EntryFileError + '_ {
        move |source| EntryFileError::Io {
            path: self.path.clone(),
            operation,
            source,
        }
    }

    fn ends(&self) -> std::sync::RwLockReadGuard<'_, Vec<u64>> {
        // The lock guards plain integers: a panicked writer cannot leave them half-made.
        self.ends
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bundles published.
    pub fn count(&self) -> u64 {
        self.ends().len() as u64
    }

    /// Where the last published bundle ends: the file's length as the log knows it.
    pub fn end(&self) -> u64 {
        self.ends().last().copied().unwrap_or(0)
    }

    /// The bytes of published bundle `n`, or `None` beyond the published ones.
    pub fn read(&self, n: u64) -> Result<Option<Vec<u8>>, EntryFileError> {
        let (start, end) = {
            let ends = self.ends();
            let Some(i) = usize::try_from(n).ok().filter(|&i| i < ends.len()) else {
                return Ok(None);
            };
            let start = if i == 0 { 0 } else { ends[i - 1] };
            (start, ends[i])
        };
        let len = usize::try_from(end - start).map_err(|_| EntryFileError::Corrupt {
            path: self.path.clone(),
            detail: format!("bundle {n} is {} bytes long", end - start),
        })?;
        let mut buf = vec![0; len];
        self.file
            .read_exact_at(&mut buf, start)
            .map_err(self.io("read"))?;
        Ok(Some(buf))
    }

    /// Writes `bundles` after the published end and syncs them. Returns where each ends;
    /// they are not readable until [`publish`](Self::publish)ed. A failed or unpublished
    /// append leaves bytes after the end that the next append overwrites.
    pub fn append(&self, bundles: &[Vec<u8>]) -> Result<Vec<u64>, EntryFileError> {
        let start = self.end();
        let mut at = start;
        let mut out = Vec::with_capacity(bundles.len());
        let mut joined = Vec::with_capacity(bundles.iter().map(Vec::len).sum());
        for b in bundles {
            joined.extend_from_slice(b);
            at += b.len() as u64;
            out.push(at);
        }
        self.file
            .write_all_at(&joined, start)
            .map_err(self.io("write"))?;
        self.file.sync_data().map_err(self.io("sync"))?;
        Ok(out)
    }

    /// Makes appended bundles readable, once the log has recorded their `ends` durably.
    pub fn publish(&self, ends: &[u64]) {
        self.ends
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(ends);
    }

    /// The file's length on disk.
    pub fn disk_bytes(&self) -> Result<u64, EntryFileError> {
        Ok(self.file.metadata().map_err(self.io("stat"))?.len())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn appended_bundles_are_readable_once_published_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundles");
        let f = EntryFile::open(&path, Vec::new()).unwrap();
        let ends = f.append(&[b"one".to_vec(), b"second".to_vec()]).unwrap();
        assert_eq!(ends, vec![3, 9]);
        assert_eq!(f.read(0).unwrap(), None, "readable before it was published");
        f.publish(&ends);
        assert_eq!(f.read(1).unwrap().unwrap(), b"second");
        // An append that is never published is overwritten by the next one.
        f.append(&[b"lost".to_vec()]).unwrap();
        let more = f.append(&[b"third".to_vec()]).unwrap();
        f.publish(&more);
        assert_eq!(f.read(2).unwrap().unwrap(), b"third");
        drop(f);

        let f = EntryFile::open(&path, vec![3, 9, 14]).unwrap();
        assert_eq!(f.read(0).unwrap().unwrap(), b"one");
        assert_eq!(f.read(2).unwrap().unwrap(), b"third");
        assert_eq!(f.read(3).unwrap(), None);
        assert_eq!(f.count(), 3);
    }

    #[test]
    fn unrecorded_bytes_are_cut_off_and_missing_bytes_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundles");
        let f = EntryFile::open(&path, Vec::new()).unwrap();
        let ends = f.append(&[b"kept".to_vec(), b"crashed".to_vec()]).unwrap();
        drop(f);
        // Sled recorded only the first bundle before the crash.
        let f = EntryFile::open(&path, ends[..1].to_vec()).unwrap();
        assert_eq!(f.disk_bytes().unwrap(), 4);
        assert_eq!(f.read(0).unwrap().unwrap(), b"kept");
        drop(f);

        let err = EntryFile::open(&path, vec![4, 11]).unwrap_err();
        assert!(matches!(err, EntryFileError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("holds 4 bytes"), "{err}");
        let err = EntryFile::open(&path, vec![4, 4]).unwrap_err();
        assert!(err.to_string().contains("not increasing"), "{err}");
    }

    #[test]
    fn a_full_disk_is_told_apart() {
        let full = EntryFileError::Io {
            path: PathBuf::from("x"),
            operation: "write",
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        };
        assert!(full.is_storage_full());
        let other = EntryFileError::Io {
            path: PathBuf::from("x"),
            operation: "write",
            source: std::io::Error::from_raw_os_error(libc::EIO),
        };
        assert!(!other.is_storage_full());
    }
}
