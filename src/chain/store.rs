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
/// The next unreserved serial counter (u64 BE, at least 1); absent before the first
/// reservation.
const KEY_SERIAL_NEXT: &[u8] = b"tsa.serial.next";
/// The last genTime alone (u64 BE), as versions before the genTime mark kept it. Still
/// written beside the mark, so an older version started on this store keeps its floor.
const KEY_LAST_GEN_TIME: &[u8] = b"tsa.last_gen_time_ms";
/// The genTime mark ([`GenTimeMark`]): its genTime, then its event-log size (u64 BE each).
const KEY_GEN_TIME_MARK: &[u8] = b"tsa.gen_time_mark";

/// A durable note of how far the TSA's genTimes have gone, written every second and at a
/// clean stop: `gen_time_ms` is at least every genTime handed out before it was read, and
/// `log_size` is the event log's size read just before that. So every genTime later than
/// `gen_time_ms` was handed out after `log_size` was read, and its `tsa.issued` event (if
/// it has one) is at index `log_size` or later: the startup floor only has to look at the
/// events from there on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenTimeMark {
    /// A genTime (Unix milliseconds) at least as late as every one issued before it was
    /// read.
    pub gen_time_ms: u64,
    /// The event log's size read before `gen_time_ms`; `None` when only an older version's
    /// genTime is stored (which says nothing about the log).
    pub log_size: Option<u64>,
}

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

    /// The value of `key` as `N` big-endian u64s; `None` when the key is absent, an error
    /// naming the key when it holds anything else.
    fn read_u64s<const N: usize>(&self, key: &[u8]) -> Result<Option<[u64; N]>, StoreError> {
        self.meta
            .get(key)
            .map_err(io("read"))?
            .map(|v| decode_u64s(key, &v))
            .transpose()
    }

    /// The next unreserved serial counter, `None` before the first reservation. A stored
    /// value that is not a counter is an error naming the key (never a restart at 1:
    /// serial numbers must never repeat).
    pub fn serial_next(&self) -> Result<Option<u64>, StoreError> {
        self.read_u64s::<1>(KEY_SERIAL_NEXT)?
            .map(|[next]| check_serial_next(next))
            .transpose()
    }

    /// Makes the serial counter hand out nothing below `next` (a store rebuilt from an
    /// archive: its tokens' serials must stay above every one issued before), durably. A
    /// counter already past it is kept.
    pub fn set_serial_floor(&self, next: u64) -> Result<(), StoreError> {
        let next = check_serial_next(next)?;
        let mut failed = None;
        self.meta
            .fetch_and_update(KEY_SERIAL_NEXT, |old| {
                let current = old.map(|v| decode_u64s::<1>(KEY_SERIAL_NEXT, v).map(|[n]| n));
                match current {
                    Some(Err(e)) => {
                        failed = Some(e);
                        old.map(<[u8]>::to_vec)
                    }
                    Some(Ok(n)) if n >= next => old.map(<[u8]>::to_vec),
                    _ => Some(next.to_be_bytes().to_vec()),
                }
            })
            .map_err(io("serial floor"))?;
        if let Some(e) = failed {
            return Err(e);
        }
        self.flush()
    }

    /// Reserves `count` serial counters and returns the first; the reservation is durable
    /// before this returns, so a counter is never handed out twice, even after a crash
    /// (unused counters of a reservation are skipped after a restart). Counters start at 1.
    /// A stored counter that is damaged is an error, and stays as it is.
    pub fn reserve_serials(&self, count: u64) -> Result<u64, StoreError> {
        let mut outcome: Result<u64, StoreError> = Err(StoreError::SerialsExhausted);
        self.meta
            .fetch_and_update(KEY_SERIAL_NEXT, |old| {
                let start = match old {
                    None => Ok(1),
                    Some(v) => {
                        decode_u64s::<1>(KEY_SERIAL_NEXT, v).and_then(|[n]| check_serial_next(n))
                    }
                };
                let next = start.and_then(|start| {
                    start
                        .checked_add(count)
                        .map(|next| (start, next))
                        .ok_or(StoreError::SerialsExhausted)
                });
                match next {
                    Ok((start, next)) => {
                        outcome = Ok(start);
                        Some(next.to_be_bytes().to_vec())
                    }
                    Err(e) => {
                        outcome = Err(e);
                        old.map(<[u8]>::to_vec)
                    }
                }
            })
            .map_err(io("serial reservation"))?;
        let first = outcome?;
        self.flush()?;
        Ok(first)
    }

    /// The genTime mark, `None` on a store that never recorded one. A damaged value is an
    /// error naming its key.
    pub fn gen_time_mark(&self) -> Result<Option<GenTimeMark>, StoreError> {
        let legacy = self.read_u64s::<1>(KEY_LAST_GEN_TIME)?.map(|[ms]| ms);
        let mark = self.read_u64s::<2>(KEY_GEN_TIME_MARK)?;
        Ok(match (mark, legacy) {
            (None, None) => None,
            (None, Some(ms)) => Some(GenTimeMark {
                gen_time_ms: ms,
                log_size: None,
            }),
            // An older version may have run since and moved only its own key on: any
            // mark stays valid with a later genTime.
            (Some([ms, size]), legacy) => Some(GenTimeMark {
                gen_time_ms: ms.max(legacy.unwrap_or(0)),
                log_size: Some(size),
            }),
        })
    }

    /// Records the genTime mark: `gen_time_ms` (kept if the stored one is later) with
    /// `log_size`, which the caller read before `gen_time_ms` (see [`GenTimeMark`]); and
    /// flushes. Nothing is written when the mark is unchanged.
    pub fn record_gen_time(&self, gen_time_ms: u64, log_size: u64) -> Result<(), StoreError> {
        let stored = self.gen_time_mark()?;
        let ms = stored.map_or(gen_time_ms, |m| m.gen_time_ms.max(gen_time_ms));
        if stored
            == Some(GenTimeMark {
                gen_time_ms: ms,
                log_size: Some(log_size),
            })
        {
            return Ok(());
        }
        let mut mark = [0u8; 16];
        mark[..8].copy_from_slice(&ms.to_be_bytes());
        mark[8..].copy_from_slice(&log_size.to_be_bytes());
        let mut batch = sled::Batch::default();
        batch.insert(KEY_GEN_TIME_MARK, &mark[..]);
        batch.insert(KEY_LAST_GEN_TIME, &ms.to_be_bytes()[..]);
        self.meta.apply_batch(batch).map_err(io("genTime record"))?;
        self.flush()
    }

    /// Checks the TSA's stored state (the serial counter and the genTime mark): at
    /// startup, so that a damaged value stops the server before it issues anything.
    pub fn check_tsa_state(&self) -> Result<(), StoreError> {
        self.serial_next()?;
        self.gen_time_mark()?;
        Ok(())
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
        self.serial_next().map(|_| ())
    }
}

/// `value` (of `key`) as `N` big-endian u64s, or an error naming the key and what it holds.
fn decode_u64s<const N: usize>(key: &[u8], value: &[u8]) -> Result<[u64; N], StoreError> {
    if value.len() != 8 * N {
        return Err(StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            detail: format!(
                "it holds {} bytes where {} were expected",
                value.len(),
                8 * N
            ),
        });
    }
    let mut out = [0u64; N];
    for (n, chunk) in out.iter_mut().zip(value.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        *n = u64::from_be_bytes(b);
    }
    Ok(out)
}

/// A stored next serial counter: never 0 (counters start at 1 and only grow).
fn check_serial_next(next: u64) -> Result<u64, StoreError> {
    if next == 0 {
        return Err(StoreError::Corrupt {
            key: String::from_utf8_lossy(KEY_SERIAL_NEXT).into_owned(),
            detail: "it holds 0, which no reservation ever writes (counters start at 1)".into(),
        });
    }
    Ok(next)
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
            assert_eq!(s.gen_time_mark().unwrap(), None);
            s.record_gen_time(1234, 7).unwrap();
            s.record_gen_time(1000, 9).unwrap();
        }
        assert_eq!(a, 1);
        assert_eq!(b, 101);
        let s = reopen_in_process(dir.path());
        assert_eq!(s.serial_next().unwrap(), Some(201));
        assert_eq!(s.reserve_serials(10).unwrap(), 201);
        // The later genTime is kept, with the log size read with the newer one.
        assert_eq!(
            s.gen_time_mark().unwrap(),
            Some(GenTimeMark {
                gen_time_ms: 1234,
                log_size: Some(9)
            })
        );
        s.health().unwrap();
        s.check_tsa_state().unwrap();
    }

    /// A stored serial counter that is not one (wrong length, or 0, which no reservation
    /// writes) is an error naming the key, never a silent restart at 1; it is left as it
    /// is, and the startup check and the readiness probe report it.
    #[test]
    fn a_damaged_serial_counter_is_an_error_not_a_restart() {
        for (bad, problem) in [
            (&b"12"[..], "2 bytes where 8"),
            (&[0u8; 9][..], "9 bytes where 8"),
            (&[][..], "0 bytes where 8"),
            (&0u64.to_be_bytes()[..], "holds 0"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let s = Store::open(dir.path()).unwrap();
            s.reserve_serials(100).unwrap();
            s.meta.insert(KEY_SERIAL_NEXT, bad).unwrap();
            let err = s.reserve_serials(100).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, StoreError::Corrupt { .. }), "{text}");
            assert!(
                text.contains("tsa.serial.next") && text.contains(problem),
                "{text}"
            );
            assert_eq!(s.meta.get(KEY_SERIAL_NEXT).unwrap().unwrap(), bad);
            for e in [
                s.serial_next().unwrap_err(),
                s.check_tsa_state().unwrap_err(),
                s.health().unwrap_err(),
            ] {
                assert!(e.to_string().contains("tsa.serial.next"), "{e}");
            }
        }
    }

    /// The genTime mark: an older version's genTime alone has no log size; a damaged
    /// value of either key is an error naming it; a later genTime an older version wrote
    /// beside a mark is taken.
    #[test]
    fn gen_time_mark_reads_older_stores_and_refuses_damaged_values() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.meta
            .insert(KEY_LAST_GEN_TIME, &5_000u64.to_be_bytes())
            .unwrap();
        assert_eq!(
            s.gen_time_mark().unwrap(),
            Some(GenTimeMark {
                gen_time_ms: 5_000,
                log_size: None
            })
        );
        s.record_gen_time(4_000, 12).unwrap();
        assert_eq!(
            s.gen_time_mark().unwrap(),
            Some(GenTimeMark {
                gen_time_ms: 5_000,
                log_size: Some(12)
            })
        );
        s.meta
            .insert(KEY_LAST_GEN_TIME, &6_000u64.to_be_bytes())
            .unwrap();
        assert_eq!(s.gen_time_mark().unwrap().unwrap().gen_time_ms, 6_000);
        for (key, bad, name) in [
            (KEY_LAST_GEN_TIME, &[1u8; 7][..], "tsa.last_gen_time_ms"),
            (KEY_GEN_TIME_MARK, &[1u8; 8][..], "tsa.gen_time_mark"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let s = Store::open(dir.path()).unwrap();
            s.meta.insert(key, bad).unwrap();
            for e in [
                s.gen_time_mark().unwrap_err(),
                s.check_tsa_state().unwrap_err(),
                s.record_gen_time(1, 1).unwrap_err(),
            ] {
                assert!(e.to_string().contains(name), "{e}");
            }
            assert_eq!(s.meta.get(key).unwrap().unwrap(), bad);
        }
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
