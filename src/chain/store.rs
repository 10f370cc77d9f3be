//! Durable appliance state in sled.
//!
//! sled flushes in the background; a write is durable only once `flush` returns. Every
//! method here that must be durable flushes before it returns. Its one error type is
//! [`StoreError`].

use std::path::{Path, PathBuf};

const META_TREE: &str = "meta";
/// sled's page cache: what the appliance keeps of the store in memory (hot tiles and the
/// tree's recent hashes); the rest is read from disk.
const CACHE_BYTES: u64 = 64 << 20;
const KEY_SERIAL_NEXT: &[u8] = b"tsa.serial.next";
const KEY_LAST_GEN_TIME: &[u8] = b"tsa.last_gen_time_ms";

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be opened.
    #[error("cannot open the store at {path}: {source}")]
    Open {
        /// The store's directory.
        path: PathBuf,
        /// sled's error.
        source: sled::Error,
    },
    /// A read, write or flush failed.
    #[error("store {operation} failed: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// sled's error.
        source: sled::Error,
    },
    /// A stored value does not have the expected form (the store is damaged).
    #[error("store value {key} is damaged: {detail}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// The serial counter would overflow.
    #[error("the serial-number counter is exhausted")]
    SerialsExhausted,
}

/// The appliance's sled database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    dir: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

fn io(operation: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    move |source| StoreError::Io { operation, source }
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: dir.to_owned(),
            source,
        };
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::LowSpace)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(open_err)?;
        let meta = db.open_tree(META_TREE).map_err(open_err)?;
        Ok(Store {
            db,
            meta,
            dir: dir.to_owned(),
        })
    }

    fn read_u64(&self, key: &[u8]) -> Result<Option<u64>, StoreError> {
        match self.meta.get(key).map_err(io("read"))? {
            None => Ok(None),
            Some(v) => {
                let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    key: String::from_utf8_lossy(key).into_owned(),
                    detail: format!("{} bytes where 8 were expected", v.len()),
                })?;
                Ok(Some(u64::from_be_bytes(bytes)))
            }
        }
    }

    /// Reserves `count` serial counters and returns the first; the reservation is durable
    /// before this returns, so a counter is never handed out twice, even after a crash
    /// (unused counters of a reservation are skipped after a restart). Counters start at 1.
    pub fn reserve_serials(&self, count: u64) -> Result<u64, StoreError> {
        let mut first = 0;
        let mut overflow = false;
        self.meta
            .fetch_and_update(KEY_SERIAL_NEXT, |old| {
                let start = old
                    .and_then(|v| <[u8; 8]>::try_from(v).ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(1);
                first = start;
                match start.checked_add(count) {
                    Some(next) => Some(next.to_be_bytes().to_vec()),
                    None => {
                        overflow = true;
                        old.map(<[u8]>::to_vec)
                    }
                }
            })
            .map_err(io("serial reservation"))?;
        if overflow {
            return Err(StoreError::SerialsExhausted);
        }
        self.flush()?;
        Ok(first)
    }

    /// The last genTime recorded (Unix milliseconds), 0 if none.
    pub fn last_gen_time(&self) -> Result<u64, StoreError> {
        Ok(self.read_u64(KEY_LAST_GEN_TIME)?.unwrap_or(0))
    }

    /// Records `ms` as the last genTime issued if it is later than the stored one, and
    /// flushes.
    pub fn record_gen_time(&self, ms: u64) -> Result<(), StoreError> {
        if self.last_gen_time()? >= ms {
            return Ok(());
        }
        self.meta
            .fetch_and_update(KEY_LAST_GEN_TIME, |old| {
                let prev = old
                    .and_then(|v| <[u8; 8]>::try_from(v).ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                Some(prev.max(ms).to_be_bytes().to_vec())
            })
            .map_err(io("genTime record"))?;
        self.flush()
    }

    /// The underlying database (for modules that keep trees of their own in it).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The store's directory: sled's files, and files kept beside them (the event log's
    /// entry bundles).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens (or creates) the named tree in the same database.
    pub fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        self.db.open_tree(name).map_err(io("open tree"))
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(io("flush"))?;
        Ok(())
    }

    /// Checks that the store answers reads (for the readiness probe).
    pub fn health(&self) -> Result<(), StoreError> {
        self.read_u64(KEY_SERIAL_NEXT).map(|_| ())
    }
}

/// Opens the store at `dir`, waiting up to 2 s for the previous handle's file lock: in one
/// process sled releases it from a background thread after the last handle drops (a
/// restarted process never waits: the lock dies with the old process).
#[cfg(test)]
pub(crate) fn reopen_in_process(dir: &Path) -> Store {
    let mut last = None;
    for _ in 0..100 {
        match Store::open(dir) {
            Ok(s) => return s,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("store did not reopen: {last:?}");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn reservations_survive_reopen_and_never_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let a;
        let b;
        {
            let s = Store::open(dir.path()).unwrap();
            a = s.reserve_serials(100).unwrap();
            b = s.reserve_serials(100).unwrap();
            s.record_gen_time(1234).unwrap();
            s.record_gen_time(1000).unwrap();
        }
        assert_eq!(a, 1);
        assert_eq!(b, 101);
        let s = reopen_in_process(dir.path());
        assert_eq!(s.reserve_serials(10).unwrap(), 201);
        assert_eq!(s.last_gen_time().unwrap(), 1234);
        s.health().unwrap();
    }

    #[test]
    fn exhaustion_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.reserve_serials(u64::MAX - 10).unwrap();
        assert!(matches!(
            s.reserve_serials(100),
            Err(StoreError::SerialsExhausted)
        ));
    }
}
