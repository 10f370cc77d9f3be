//! The archive: the sealed chain copied to object storage (S3 or an S3-compatible store,
//! or a directory), so that a log can be audited from the bucket alone, an appliance
//! whose disk is lost can be rebuilt from it, and old local data can be pruned.
//!
//! The bucket holds, under its prefix, what `auditstamp chain export` writes: a static
//! C2SP tlog-tiles log plus the blocks.
//! ```text
//! checkpoint                 the signed checkpoint of the last block archived (written last)
//! chain-keys/<key id hex>    DER SubjectPublicKeyInfo of each chain key that signed blocks
//! blocks/<height>            each sealed block, in its stored form
//! tile/<L>/<N>[.p/<W>]       hash tiles
//! tile/entries/<N>[.p/<W>]   the events' leaf bytes, in entry bundles
//! ```
//! Every object but the checkpoint is written create-only (a conditional put, S3's
//! `If-None-Match: *`): one that is already there with the same bytes was written by an
//! earlier try; one with other bytes is a conflict, never overwritten ([`ArchiveError::Conflict`]).
//! The checkpoint is replaced only if it is still the one this appliance last wrote
//! (`If-Match` its ETag), and only after every object it covers is in, so a reader never
//! sees a checkpoint whose tiles are missing.
//!
//! - [`bucket`]: the object store (object_store's S3 client on this crate's one HTTP
//!   client, or a local directory) and its create-only writes.
//! - [`writer`]: the appliance's background archiver, its lag and alarms.
//! - [`source`]: a bucket as a [`TileSource`](crate::verify::chain::tiles::TileSource) for
//!   `chain verify --s3`.
//! - [`restore`]: a state directory rebuilt from a bucket.
//!
//! Its one error type is [`ArchiveError`].

pub mod bucket;
pub mod restore;
pub mod source;
pub mod writer;

pub use bucket::{Bucket, BucketSettings};

/// Path of the checkpoint object, under the bucket's prefix.
pub const CHECKPOINT: &str = "checkpoint";

/// Path of sealed block `height`.
pub fn block_path(height: u64) -> String {
    format!("blocks/{height}")
}

/// Path of the chain key whose key id (SHA-256 of its DER SubjectPublicKeyInfo) is `id`.
pub fn chain_key_path(id: &[u8; 32]) -> String {
    format!("chain-keys/{}", hex::encode(id))
}

/// What can go wrong with the archive. Messages name the object and the bucket; they never
/// hold a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The archive's settings are not usable.
    #[error("archive settings: {0}")]
    Config(String),
    /// A request to the object store failed (it is down, refused the request, or timed out).
    #[error("archive {operation} {location}: {source}")]
    Store {
        /// What was being done (`PUT`, `GET`, `LIST`).
        operation: &'static str,
        /// The object, with the bucket (`s3://bucket/prefix/tile/0/000`).
        location: String,
        /// The object store's error.
        source: object_store::Error,
    },
    /// An object is already in the bucket with other bytes than this appliance's: it was
    /// not overwritten. Another writer uses the same prefix, or the bucket was altered.
    #[error(
        "archive conflict: {location} is already in the bucket with other bytes than this \
         appliance's; not overwritten (another appliance writes to the same prefix, or the \
         bucket was altered)"
    )]
    Conflict {
        /// The object, with the bucket.
        location: String,
    },
    /// The bucket holds something that does not fit this appliance's log.
    #[error("archive: {0}")]
    Invalid(String),
    /// The local log could not be read.
    #[error("archive: the local log: {0}")]
    Local(String),
}

impl ArchiveError {
    /// Whether this needs an operator (a conflict, or a bucket that does not fit the log),
    /// rather than another try later.
    pub fn is_alarm(&self) -> bool {
        matches!(
            self,
            ArchiveError::Conflict { .. } | ArchiveError::Invalid(_)
        )
    }
}

/// The leaves of complete bundle `n`, pruned from `log`'s disk, read back from `bucket`
/// and checked against the log's stored hashes (the archive is trusted for nothing).
pub async fn pruned_bundle(
    bucket: &Bucket,
    log: &crate::chain::log::EventLog,
    n: u64,
) -> Result<Vec<Vec<u8>>, ArchiveError> {
    let tile =
        crate::chain::tlog::Tile::full(0, n).map_err(|e| ArchiveError::Local(e.to_string()))?;
    let path = crate::chain::tlog::entries_path(&tile);
    let bytes = bucket.get(&path).await?.ok_or_else(|| {
        ArchiveError::Invalid(format!(
            "{}/{path} is missing, and bundle {n} was pruned locally",
            bucket.describe()
        ))
    })?;
    log.check_bundle(n, &bytes).map_err(|e| {
        ArchiveError::Invalid(format!(
            "{}/{path} does not match this log: {e}",
            bucket.describe()
        ))
    })
}
