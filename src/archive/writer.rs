//! The appliance's archiver: a background task that copies each sealed block, with the
//! bundles and tiles it covers, to the bucket, and then the checkpoint.
//!
//! It never holds anything up: tokens and events are served and sealed whatever the
//! object store does. It starts where the bucket ends (the bucket's checkpoint names the
//! tree size and so the block it holds last, which must be one of this log's), then follows
//! the seals: each round takes the newest published block and writes, create-only,
//! - the complete entry bundles and the full hash tiles (at every level) the tree gained
//!   since the archived size, 64 bundles at a time, several uploads in flight;
//! - the partial tiles and the partial bundle of the new tree size;
//! - the blocks sealed since;
//! - and last the checkpoint, replaced only if it is still the one written before.
//!
//! A failed round (the store down or slow) is tried again after a growing wait, with the
//! newest block by then; objects a failed round wrote are found present (same bytes) by
//! the next. A conflict (an object there with other bytes) or a bucket whose checkpoint
//! is not of this log stops the archive with an alarm ([`ArchiveStatus`], `/readyz`,
//! `/metrics`, the log) until an operator has looked; nothing is overwritten.
//!
//! With a retention bound, bundles older than it and already archived are pruned from the
//! local disk after each round.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::bucket::{Bucket, Written};
use super::{block_path, chain_key_path, ArchiveError, CHECKPOINT};
use crate::chain::block::SealedBlock;
use crate::chain::log::EventLog;
use crate::chain::note::{Checkpoint, SignedNote};
use crate::chain::tlog::{self, Tile};
use crate::service::chain::{ChainService, Published};
use crate::service::cosign::Backoff;

/// Complete bundles prepared and uploaded at a time.
const CHUNK_BUNDLES: u64 = 64;
/// Blocks read and uploaded at a time.
const CHUNK_BLOCKS: u64 = 1024;
/// Events per bundle.
const BUNDLE: u64 = 256;
/// Tile levels there can be (8 × 8 bits of tree size).
const LEVELS: u8 = 8;

/// The archiver's settings.
#[derive(Debug, Clone)]
pub struct ArchiverSettings {
    /// Uploads in flight at most.
    pub concurrency: usize,
    /// Keep the bundles of this many newest events on the local disk; older archived ones
    /// are pruned. `None`: nothing is pruned.
    pub retain_events: Option<u64>,
}

/// What the archive has done, shared with `/metrics` and `/readyz`.
#[derive(Debug, Default)]
pub struct ArchiveStatus {
    /// Whether the bucket's state was read (the archiver knows where it ends).
    resumed: AtomicBool,
    /// The tree size of the bucket's checkpoint.
    archived_size: AtomicU64,
    /// Objects written.
    written: AtomicU64,
    /// Objects found already there with the same bytes.
    present: AtomicU64,
    /// Bytes written.
    bytes: AtomicU64,
    /// Rounds that failed (the store down, slow or refusing).
    failures: AtomicU64,
    /// Conflicts and bucket mismatches met (each stops the archive).
    conflicts: AtomicU64,
    /// Events whose bundles were pruned from the local disk.
    pruned_events: AtomicU64,
    /// The last failure, while the archive is failing.
    last_error: Mutex<Option<String>>,
    /// Why the archive stopped (needs an operator).
    alarm: Mutex<Option<String>>,
    /// `/readyz` warns past this lag.
    max_lag_events: u64,
}

/// A reading of [`ArchiveStatus`].
#[derive(Debug, Clone, Default)]
pub struct ArchiveReport {
    /// Whether the archiver has read where the bucket ends.
    pub resumed: bool,
    /// The tree size the bucket's checkpoint covers.
    pub archived_size: u64,
    /// Sealed events not yet archived.
    pub lag_events: u64,
    /// Objects written.
    pub written: u64,
    /// Objects found already there with the same bytes.
    pub present: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Rounds that failed.
    pub failures: u64,
    /// Conflicts met.
    pub conflicts: u64,
    /// Events whose bundles were pruned locally.
    pub pruned_events: u64,
    /// The last failure, while failing.
    pub last_error: Option<String>,
    /// Why the archive stopped, if it did.
    pub alarm: Option<String>,
    /// A warning for `/readyz`: the lag is past its bound.
    pub warning: Option<String>,
}

impl ArchiveStatus {
    /// A status warning past `max_lag_events`.
    pub fn new(max_lag_events: u64) -> Self {
        ArchiveStatus {
            max_lag_events,
            ..ArchiveStatus::default()
        }
    }

    /// The figures now, against the log's sealed size.
    pub fn report(&self, sealed: u64) -> ArchiveReport {
        let archived_size = self.archived_size.load(Ordering::Relaxed);
        let lag_events = sealed.saturating_sub(archived_size);
        let resumed = self.resumed.load(Ordering::Relaxed);
        let warning = (lag_events > self.max_lag_events).then(|| {
            format!(
                "{lag_events} sealed events are not archived yet (more than archive.max_lag_events = {})",
                self.max_lag_events
            )
        });
        ArchiveReport {
            resumed,
            archived_size,
            lag_events,
            written: self.written.load(Ordering::Relaxed),
            present: self.present.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
            pruned_events: self.pruned_events.load(Ordering::Relaxed),
            last_error: lock(&self.last_error).clone(),
            alarm: lock(&self.alarm).clone(),
            warning,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where the bucket ends: its checkpoint's tree size, the block of that size, the
/// checkpoint object's ETag.
#[derive(Debug, Clone, Default)]
struct Archived {
    size: u64,
    height: Option<u64>,
    etag: Option<String>,
    /// Whether the bucket has its checkpoint object (else it is created).
    has_checkpoint: bool,
    /// Complete bundles whose objects (and the full tiles they complete) are known to be
    /// in the bucket, also beyond `size` (a failed round's progress: the next round does
    /// not send them again).
    full_done: u64,
    /// Blocks known to be in the bucket (heights below this), also beyond `height`.
    blocks_done: u64,
    /// The checkpoint last sent, when its answer never came: if the bucket holds it, that
    /// write went through (and is replaced), rather than being another writer's.
    sent: Option<Bytes>,
}

/// The background archiver of one appliance.
pub struct Archiver {
    bucket: Bucket,
    chain: Arc<ChainService>,
    settings: ArchiverSettings,
    status: Arc<ArchiveStatus>,
    /// Whether the chain keys are in the bucket (checked once per run: they are recorded
    /// at startup only).
    keys_archived: AtomicBool,
}

impl std::fmt::Debug for Archiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archiver")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// The sealed block of exactly `size` events in `log`, found by bisection over the
/// heights (tree sizes grow with the height).
fn block_of_size(log: &EventLog, size: u64) -> Result<Option<(u64, SealedBlock)>, ArchiveError> {
    let local = |e: crate::chain::log::LogError| ArchiveError::Local(e.to_string());
    let Some((last, _)) = log.latest_block().map_err(local)? else {
        return Ok(None);
    };
    let (mut lo, mut hi) = (0u64, last);
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        let bytes = log
            .block(mid)
            .map_err(local)?
            .ok_or_else(|| ArchiveError::Local(format!("block {mid} is missing")))?;
        let block = SealedBlock::decode(&bytes)
            .map_err(|e| ArchiveError::Local(format!("block {mid}: {e}")))?;
        let s = block.header.tree_size;
        if s == size {
            return Ok(Some((mid, block)));
        }
        if s < size {
            lo = mid + 1;
        } else if mid == 0 {
            break;
        } else {
            hi = mid - 1;
        }
    }
    Ok(None)
}

/// The objects of the full tiles and complete bundles the tree gains when it grows from
/// `from` to `to` complete bundles.
fn full_objects(log: &EventLog, from: u64, to: u64) -> Result<Vec<(String, Bytes)>, ArchiveError> {
    let local = |e: String| ArchiveError::Local(e);
    let (lo, hi) = (from * BUNDLE, to * BUNDLE);
    let hashes = log.hashes_at(hi);
    let mut out = Vec::new();
    for n in from..to {
        let bundle = log
            .full_bundle(n)
            .map_err(|e| local(e.to_string()))?
            .ok_or_else(|| local(format!("bundle {n} is not complete")))?;
        let tile = Tile::full(0, n).map_err(|e| local(e.to_string()))?;
        out.push((tlog::entries_path(&tile), Bytes::from(bundle)));
    }
    for level in 0..LEVELS {
        let shift = u32::from(level) * 8;
        let (first, end) = ((lo >> shift) / BUNDLE, (hi >> shift) / BUNDLE);
        for k in first..end {
            let tile = Tile::full(level, k).map_err(|e| local(e.to_string()))?;
            let data = tlog::read_tile_data(&tile, &hashes).map_err(|e| local(e.to_string()))?;
            out.push((tlog::tile_path(&tile), Bytes::from(data)));
        }
    }
    Ok(out)
}

/// The objects of the partial tiles (every level) and the partial bundle of a tree of
/// `size` events.
fn partial_objects(log: &EventLog, size: u64) -> Result<Vec<(String, Bytes)>, ArchiveError> {
    let local = |e: String| ArchiveError::Local(e);
    let hashes = log.hashes_at(size);
    let mut out = Vec::new();
    for level in 0..LEVELS {
        let width = tlog::partial_tile_width(level, size);
        if width == 0 {
            continue;
        }
        let index = (size >> (u32::from(level) * 8)) / BUNDLE;
        let tile = Tile::new(level, index, width).map_err(|e| local(e.to_string()))?;
        let data = tlog::read_tile_data(&tile, &hashes).map_err(|e| local(e.to_string()))?;
        out.push((tlog::tile_path(&tile), Bytes::from(data)));
        if level == 0 {
            let leaves = log
                .leaves(tlog::entries_tile_range(&tile))
                .map_err(|e| local(e.to_string()))?;
            let refs: Vec<&[u8]> = leaves.iter().map(Vec::as_slice).collect();
            let bundle = tlog::encode_entry_bundle(&refs).map_err(|e| local(e.to_string()))?;
            out.push((tlog::entries_path(&tile), Bytes::from(bundle)));
        }
    }
    Ok(out)
}

impl Archiver {
    /// An archiver of `chain` to `bucket`, reporting to `status`.
    pub fn new(
        bucket: Bucket,
        chain: Arc<ChainService>,
        settings: ArchiverSettings,
        status: Arc<ArchiveStatus>,
    ) -> Self {
        Archiver {
            bucket,
            chain,
            settings,
            status,
            keys_archived: AtomicBool::new(false),
        }
    }

    /// Archives until `stop` completes (a round in flight is dropped; the next start finds
    /// its objects present).
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::select! {
            () = stop => {}
            () = self.follow() => {}
        }
    }

    fn alarm(&self, e: &ArchiveError) {
        tracing::error!(error = %e, bucket = %self.bucket.describe(), "archive stopped: needs an operator");
        self.status.conflicts.fetch_add(1, Ordering::Relaxed);
        *lock(&self.status.alarm) = Some(e.to_string());
    }

    async fn follow(&self) {
        let mut sealed = self.chain.subscribe_sealed();
        let mut backoff = Backoff::default();
        let mut archived: Option<Archived> = None;
        loop {
            let outcome = match &archived {
                None => self.resume().await.map(|a| archived = Some(a)),
                Some(a) => {
                    let target = sealed.borrow_and_update().clone();
                    match target {
                        Some(t) if a.height.is_none_or(|h| t.block.header.height > h) => {
                            let mut next = a.clone();
                            let done = self.round(&mut next, &t).await;
                            // Kept also after a failure: what the round got in is not
                            // sent again.
                            archived = Some(next);
                            done
                        }
                        _ => {
                            if sealed.changed().await.is_err() {
                                // The chain service is gone.
                                std::future::pending::<()>().await;
                            }
                            continue;
                        }
                    }
                }
            };
            match outcome {
                Ok(()) => {
                    backoff.reset();
                    *lock(&self.status.last_error) = None;
                }
                Err(e) if e.is_alarm() => {
                    self.alarm(&e);
                    // Stopped until a restart, after an operator has looked.
                    std::future::pending::<()>().await;
                }
                Err(e) => {
                    let wait = backoff.next_wait();
                    self.status.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "archiving failed; trying again");
                    *lock(&self.status.last_error) = Some(e.to_string());
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Reads where the bucket ends: its checkpoint must be of this log (origin, and a
    /// block of this log with its size and root).
    async fn resume(&self) -> Result<Archived, ArchiveError> {
        let pruned = self.chain.log().pruned_below() * BUNDLE;
        let lost = |size: u64| {
            ArchiveError::Invalid(format!(
                "{} ends at {size} events, but events below {pruned} were pruned from this \
                 appliance after they were archived there: the bucket lost objects (restore \
                 them from its backup or versions)",
                self.bucket.describe()
            ))
        };
        let Some((bytes, etag)) = self.bucket.get_tagged(CHECKPOINT).await? else {
            if pruned > 0 {
                return Err(lost(0));
            }
            tracing::info!(bucket = %self.bucket.describe(), "the archive is empty; archiving from the first event");
            self.mark(0);
            return Ok(Archived::default());
        };
        let where_ = format!("{}/{CHECKPOINT}", self.bucket.describe());
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| ArchiveError::Invalid(format!("{where_} is not UTF-8")))?;
        let cp = SignedNote::parse(text)
            .ok()
            .and_then(|n| Checkpoint::parse(&n.text).ok())
            .ok_or_else(|| ArchiveError::Invalid(format!("{where_} is not a signed checkpoint")))?;
        let origin = &self.chain.settings().origin;
        if &cp.origin != origin {
            return Err(ArchiveError::Invalid(format!(
                "{where_} is of the log {:?}, not this appliance's {origin:?}: give each \
                 appliance its own prefix",
                cp.origin
            )));
        }
        let chain = self.chain.clone();
        let size = cp.size;
        let found = tokio::task::spawn_blocking(move || block_of_size(chain.log(), size))
            .await
            .map_err(|e| ArchiveError::Local(e.to_string()))??;
        let height = match found {
            Some((h, block)) if block.header.root == cp.root => h,
            Some((h, _)) => {
                return Err(ArchiveError::Invalid(format!(
                    "{where_} has another root for {size} events than this log's block {h}: \
                     the bucket is not of this log"
                )))
            }
            None if size > self.chain.sealed_size() => {
                return Err(ArchiveError::Invalid(format!(
                    "{where_} covers {size} events, more than this appliance has sealed ({}): \
                     another appliance writes to this prefix, or this store is older than the \
                     archive (restore it from the bucket: auditstamp chain restore)",
                    self.chain.sealed_size()
                )))
            }
            None => {
                return Err(ArchiveError::Invalid(format!(
                    "{where_} covers {size} events, and no block of this log has that size"
                )))
            }
        };
        if size < pruned {
            return Err(lost(size));
        }
        tracing::info!(bucket = %self.bucket.describe(), size, height, "archive resumes where the bucket ends");
        self.mark(size);
        let archived = Archived {
            size,
            height: Some(height),
            etag,
            has_checkpoint: true,
            ..Archived::default()
        };
        if let Some(p) = self.chain.published() {
            if p.block.header.height == height {
                self.chain.archived(&p);
            }
        }
        Ok(archived)
    }

    fn mark(&self, size: u64) {
        self.status.archived_size.store(size, Ordering::Relaxed);
        self.status.resumed.store(true, Ordering::Relaxed);
    }

    /// Writes `objects`, several at a time.
    async fn upload(&self, objects: Vec<(String, Bytes)>) -> Result<(), ArchiveError> {
        let status = &self.status;
        futures::stream::iter(objects)
            .map(|(path, bytes)| async move {
                let len = bytes.len() as u64;
                match self.bucket.put_new(&path, bytes).await? {
                    Written::New => {
                        status.written.fetch_add(1, Ordering::Relaxed);
                        status.bytes.fetch_add(len, Ordering::Relaxed);
                    }
                    Written::Present => {
                        status.present.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok::<(), ArchiveError>(())
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .try_collect::<()>()
            .await
    }

    /// Runs `f` on the log in a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&EventLog) -> Result<T, ArchiveError> + Send + 'static,
    ) -> Result<T, ArchiveError> {
        let chain = self.chain.clone();
        tokio::task::spawn_blocking(move || f(chain.log()))
            .await
            .map_err(|e| ArchiveError::Local(format!("a read of the log failed: {e}")))?
    }

    /// Archives everything up to `target` after `from`; where the bucket ends then.
    async fn round(
        &self,
        from: &mut Archived,
        target: &Arc<Published>,
    ) -> Result<(), ArchiveError> {
        let size = target.block.header.tree_size;
        let height = target.block.header.height;
        let local = |e: crate::chain::log::LogError| ArchiveError::Local(e.to_string());
        // The chain keys, once per run (a handful; present ones cost a read).
        if !self.keys_archived.load(Ordering::Relaxed) {
            let keys = self
                .read(move |log| log.chain_keys().map_err(local))
                .await?
                .into_iter()
                .map(|(id, spki)| (chain_key_path(&id), Bytes::from(spki)))
                .collect();
            self.upload(keys).await?;
            self.keys_archived.store(true, Ordering::Relaxed);
        }
        // Complete bundles and full tiles, a chunk at a time.
        let mut next = (from.size / BUNDLE).max(from.full_done);
        let end = size / BUNDLE;
        while next < end {
            let to = (next + CHUNK_BUNDLES).min(end);
            let objects = self.read(move |log| full_objects(log, next, to)).await?;
            self.upload(objects).await?;
            next = to;
            from.full_done = to;
        }
        // The right edge of the new tree, then the blocks, a chunk at a time.
        let objects = self.read(move |log| partial_objects(log, size)).await?;
        self.upload(objects).await?;
        let mut first = from.height.map_or(0, |h| h + 1).max(from.blocks_done);
        while first <= height {
            let last = height.min(first + CHUNK_BLOCKS - 1);
            let blocks = self
                .read(move |log| {
                    (first..=last)
                        .map(|h| {
                            log.block(h)
                                .map_err(local)?
                                .map(|b| (block_path(h), Bytes::from(b)))
                                .ok_or_else(|| ArchiveError::Local(format!("block {h} is missing")))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .await?;
            self.upload(blocks).await?;
            first = last + 1;
            from.blocks_done = first;
        }
        // Last, the checkpoint.
        let current = if from.has_checkpoint {
            from.etag.as_deref()
        } else {
            None
        };
        let checkpoint = Bytes::from(target.checkpoint.clone().into_bytes());
        let etag = match (from.has_checkpoint, current) {
            // Written before but its ETag unknown (a store that gives none): read it again.
            (true, None) => self
                .bucket
                .get_tagged(CHECKPOINT)
                .await?
                .and_then(|(_, e)| e),
            _ => None,
        };
        let earlier = from.sent.replace(checkpoint.clone());
        let etag = match self
            .bucket
            .put_checkpoint(checkpoint.clone(), current.or(etag.as_deref()))
            .await
        {
            Err(conflict @ ArchiveError::Conflict { .. }) => {
                // An earlier round's write whose answer was lost is ours, not a conflict.
                match self.bucket.get_tagged(CHECKPOINT).await? {
                    Some((there, Some(tag))) if earlier.as_ref() == Some(&there) => {
                        self.bucket.put_checkpoint(checkpoint, Some(&tag)).await?
                    }
                    _ => return Err(conflict),
                }
            }
            other => other?,
        };
        from.sent = None;
        self.status.written.fetch_add(1, Ordering::Relaxed);
        self.mark(size);
        tracing::debug!(size, height, "archived");
        self.chain.archived(target);
        self.prune(size).await;
        from.size = size;
        from.height = Some(height);
        from.etag = etag;
        from.has_checkpoint = true;
        Ok(())
    }

    /// Prunes the local bundles older than the retention bound that the bucket holds.
    async fn prune(&self, archived: u64) {
        let Some(retain) = self.settings.retain_events else {
            return;
        };
        let keep_from = self.chain.log().size().saturating_sub(retain).min(archived);
        let below = keep_from / BUNDLE;
        let chain = self.chain.clone();
        let pruned = tokio::task::spawn_blocking(move || chain.log().prune_below(below)).await;
        match pruned {
            Ok(Ok(_)) => {
                let events = self.chain.log().pruned_below() * BUNDLE;
                self.status.pruned_events.store(events, Ordering::Relaxed);
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot prune archived bundles"),
            Err(e) => tracing::error!(error = %e, "the prune task failed"),
        }
    }
}
