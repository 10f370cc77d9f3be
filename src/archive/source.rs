//! A bucket as a [`TileSource`]: `auditstamp chain verify --s3` audits a log from its
//! archive alone, as it audits an export directory.

use sha2::{Digest, Sha256};

use super::{block_path, Bucket, BucketSettings, CHECKPOINT};
use crate::chain::tlog::Hash;
use crate::verify::chain::tiles::{LogAuditError, TileSource};

/// The archive in a bucket, read through a runtime of its own (the audit is synchronous).
pub struct BucketSource {
    bucket: Bucket,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for BucketSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketSource")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

fn failed(e: super::ArchiveError) -> LogAuditError {
    LogAuditError::Other(e.to_string())
}

impl BucketSource {
    /// A reader of the archive `settings` names.
    pub fn new(settings: &BucketSettings) -> Result<Self, LogAuditError> {
        let bucket = Bucket::open(settings).map_err(failed)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LogAuditError::Other(format!("cannot start the async runtime: {e}")))?;
        Ok(BucketSource { bucket, runtime })
    }

    fn names(&mut self, dir: &str) -> Result<Vec<String>, LogAuditError> {
        let bucket = self.bucket.clone();
        self.runtime
            .block_on(async move { bucket.list(dir).await })
            .map_err(failed)
    }
}

impl TileSource for BucketSource {
    fn fetch(&mut self, path: &str) -> Result<Option<Vec<u8>>, LogAuditError> {
        let bucket = self.bucket.clone();
        let got = self
            .runtime
            .block_on(async move { bucket.get(path).await })
            .map_err(failed)?;
        Ok(got.map(|b| b.to_vec()))
    }

    fn describe(&self) -> String {
        format!("the archive {}", self.bucket.describe())
    }

    fn no_checkpoint(&self) -> LogAuditError {
        LogAuditError::Invalid(format!(
            "{} has no {CHECKPOINT} (nothing archived yet, or not an archive)",
            self.describe()
        ))
    }

    fn block(&mut self, height: u64) -> Result<Option<Vec<u8>>, LogAuditError> {
        self.fetch(&block_path(height))
    }

    fn block_heights(&mut self) -> Result<Option<Vec<u64>>, LogAuditError> {
        // Read from 0 until one is missing: objects a crashed round left past the
        // checkpoint (or anything else under blocks/) are not the log's.
        Ok(None)
    }

    fn recorded_keys(&mut self) -> Result<Vec<(Hash, Vec<u8>)>, LogAuditError> {
        let mut keys = Vec::new();
        for name in self.names("chain-keys")? {
            let spki = self
                .fetch(&format!("chain-keys/{name}"))?
                .unwrap_or_default();
            keys.push((Sha256::digest(&spki).into(), spki));
        }
        Ok(keys)
    }
}
