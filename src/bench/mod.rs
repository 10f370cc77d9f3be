//! The load generators behind `auditstamp bench ...`: programs that measure and print
//! figures (never pass/fail). Each prints lines for people and, where a script combines
//! them (`deploy/bench.sh`), a last `result key=value ...` line.
//!
//! - [`events`]: durable events per second through HTTP (`bench events`), and the event
//!   log in-process (`bench chain`: append rate, proof time, bytes per event, peak RSS).
//! - [`tokens`]: the HSM's own signing limit (`bench hsm`) and RFC 3161 tokens through HTTP
//!   (`bench tokens`), with the CPU each costs.
//! - [`witness`]: cosigned checkpoints per second of a running witness, playing N simulated
//!   appliances (`bench witness`, `bench witness-config`).
//! - [`verify`]: tokens verified per second on one thread beside OpenSSL (`bench verify`).
//! - [`search`]: the event search in-process: page latency by kind of filter at millions of
//!   events, index bytes per event, append rate with the index beside without
//!   (`bench search`).
//!
//! The helpers every generator shares (percentiles, directory sizes) live here, once. The
//! one error type is [`BenchError`].

pub mod events;
pub mod search;
pub mod tokens;
pub mod verify;
pub mod witness;

use std::path::Path;

/// Why a benchmark could not run (never "too slow": figures are printed, not judged).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The HSM refused or failed.
    #[error(transparent)]
    Signer(#[from] crate::signer::SignerError),
    /// The temporary store could not be opened or flushed.
    #[error(transparent)]
    Store(#[from] crate::chain::store::StoreError),
    /// Anything else, with a message that names the problem.
    #[error("{0}")]
    Other(String),
    /// A step that failed (e.g. a request to the server under test), with the error that
    /// made it fail.
    #[error("{what}")]
    Caused {
        /// What was being done, e.g. `GET https://host:8318/healthz`.
        what: String,
        /// Why it failed.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl BenchError {
    /// A [`BenchError::Caused`]: `what` failed because of `source`.
    pub(crate) fn caused(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> BenchError {
        BenchError::Caused {
            what: what.into(),
            source: Box::new(source),
        }
    }
}

/// The median and the 99th percentile of `samples` (in whatever unit they are), by the
/// nearest rank; (0, 0) when there are none.
pub(crate) fn percentiles<T: Copy + Ord + Default>(mut samples: Vec<T>) -> (T, T) {
    if samples.is_empty() {
        return (T::default(), T::default());
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

/// A memory figure of this process from `/proc/self/status` (`VmRSS`: resident now,
/// `VmHWM`: the peak), as the kernel writes it ("123456 kB").
pub(crate) fn rss(field: &str) -> Option<String> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(field)?
                    .strip_prefix(':')
                    .map(|v| v.trim().to_owned())
            })
        })
}

/// The bytes of every file under `dir`, recursively (0 for what cannot be read).
pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// A multi-threaded async runtime for a generator's clients.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, BenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::caused("cannot start the async runtime", e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        assert_eq!(percentiles(Vec::<u64>::new()), (0, 0));
        assert_eq!(percentiles(vec![7u64]), (7, 7));
        let v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentiles(v), (51, 99));
        assert_eq!(percentiles(vec![3u32, 1, 2]), (2, 3));
    }

    #[test]
    fn dir_bytes_counts_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 10]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), [0u8; 5]).unwrap();
        assert_eq!(dir_bytes(dir.path()), 15);
        assert_eq!(dir_bytes(&dir.path().join("missing")), 0);
    }
}
