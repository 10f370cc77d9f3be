//! An appliance rebuilt from its archive: a new store, in the state directory of a machine
//! with the same HSM keys, holding the archived log up to the bucket's checkpoint.
//!
//! In order:
//! 1. The bucket's checkpoint must be signed by this appliance's chain key (from the HSM).
//! 2. Every configured witness is asked what it has cosigned of this log. One that has
//!    cosigned more than the bucket holds means events were acknowledged and witnessed
//!    but never archived: continuing from the bucket would fork the log, so the restore
//!    refuses and names the missing range. A witness that cannot be asked is a refusal
//!    too (the restore does not guess).
//! 3. The log is audited from the bucket (every event re-hashed into the tree, every block
//!    and token checked, the checkpoint's signature), and each entry bundle read is
//!    appended, as stored, to a new log in `store.restoring/`.
//! 4. The blocks, chain keys and checkpoint are stored; the TSA's serial counter is set
//!    past every serial the archive records (by [`SERIAL_GAP`], for tokens issued after the
//!    last archived event); then `store.restoring/` becomes `store/`.
//!
//! Nothing is written to `store/` unless all of it passed.

use std::path::{Path, PathBuf};

use super::source::BucketSource;
use super::{ArchiveError, BucketSettings, CHECKPOINT};
use crate::chain::event::{Action, StoredEvent};
use crate::chain::log::EventLog;
use crate::chain::note::{Checkpoint, SignedNote, VerifierKey};
use crate::chain::store::Store;
use crate::chain::tlog::{self, Hash};
use crate::service::cosign::{WitnessClient, WitnessLink};
use crate::verify::chain::tiles::{self, LogAuditError, TileSource};

/// How far past the highest serial counter the archive records a restored TSA starts:
/// room for 2^40 (about 10^12) tokens issued after the last archived event.
pub const SERIAL_GAP: u64 = 1 << 40;

/// Bundles appended to the new log per commit.
const BUNDLES_PER_COMMIT: usize = 64;

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    /// Events restored (the bucket's checkpoint size).
    pub size: u64,
    /// Blocks restored.
    pub blocks: u64,
    /// Each witness asked, with the size it has cosigned.
    pub witnesses: Vec<(String, u64)>,
    /// The first serial counter the restored TSA hands out.
    pub serial_next: u64,
    /// Objects beyond the checkpoint (written by a round whose checkpoint never followed)
    /// moved out of the log's layout, and where to.
    pub set_aside: (usize, String),
    /// The new store.
    pub store: PathBuf,
}

/// The witnesses to ask, with their client.
pub struct WitnessCheck<'a> {
    /// The client (TLS roots, timeout).
    pub client: &'a WitnessClient,
    /// The links.
    pub links: &'a [std::sync::Arc<WitnessLink>],
}

fn local(e: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Local(e.to_string())
}

/// A [`TileSource`] that hands every entry bundle the audit reads to the new log, and keeps
/// the blocks it reads.
struct Tee<'a> {
    inner: BucketSource,
    log: &'a EventLog,
    /// Leaves read but not appended yet.
    pending: Vec<Vec<u8>>,
    pending_bundles: usize,
    /// The index the next bundle read must start at.
    next_index: u64,
    blocks: Vec<(u64, Vec<u8>)>,
    /// The highest serial counter of a `tsa.issued` event read.
    max_serial: u64,
}

impl Tee<'_> {
    fn flush(&mut self) -> Result<(), LogAuditError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let leaves = std::mem::take(&mut self.pending);
        self.pending_bundles = 0;
        // The committer answers through a oneshot channel, which needs no runtime.
        futures::executor::block_on(self.log.append_leaves(leaves))
            .map_err(|e| LogAuditError::Other(format!("the new log: {e}")))?;
        Ok(())
    }

    fn take_bundle(&mut self, path: &str, data: &[u8]) -> Result<(), LogAuditError> {
        let Ok((tlog::TileKind::Entries, tile)) = tlog::parse_tile_path(path) else {
            return Ok(());
        };
        let first = tlog::entries_tile_range(&tile).start;
        if first != self.next_index {
            // Read again by the audit (or out of order): only the log's next one is taken.
            return Ok(());
        }
        let leaves = tlog::decode_entry_bundle(data)
            .map_err(|e| LogAuditError::Invalid(format!("{path}: {e}")))?;
        for leaf in leaves {
            if let Ok(stored) = StoredEvent::from_leaf_bytes(leaf) {
                if stored.event.action == Action::TsaIssued {
                    let counter = stored
                        .event
                        .subject
                        .strip_prefix("serial:")
                        .and_then(|hex| u128::from_str_radix(hex, 16).ok())
                        .map_or(0, |s| s as u64);
                    self.max_serial = self.max_serial.max(counter);
                }
            }
            self.pending.push(leaf.to_vec());
            self.next_index += 1;
        }
        self.pending_bundles += 1;
        if self.pending_bundles >= BUNDLES_PER_COMMIT {
            self.flush()?;
        }
        Ok(())
    }
}

impl TileSource for Tee<'_> {
    fn fetch(&mut self, path: &str) -> Result<Option<Vec<u8>>, LogAuditError> {
        let got = self.inner.fetch(path)?;
        if let Some(data) = &got {
            if path.starts_with("tile/entries/") {
                self.take_bundle(path, data)?;
            }
        }
        Ok(got)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn no_checkpoint(&self) -> LogAuditError {
        self.inner.no_checkpoint()
    }

    fn block(&mut self, height: u64) -> Result<Option<Vec<u8>>, LogAuditError> {
        let got = self.inner.block(height)?;
        if let Some(b) = &got {
            self.blocks.push((height, b.clone()));
        }
        Ok(got)
    }

    fn block_heights(&mut self) -> Result<Option<Vec<u64>>, LogAuditError> {
        self.inner.block_heights()
    }

    fn recorded_keys(&mut self) -> Result<Vec<(Hash, Vec<u8>)>, LogAuditError> {
        self.inner.recorded_keys()
    }
}

/// The bucket's checkpoint, checked against `key` (this appliance's chain key).
fn bucket_checkpoint(
    source: &mut BucketSource,
    key: &VerifierKey,
) -> Result<(String, Checkpoint), ArchiveError> {
    let bytes = source
        .fetch(CHECKPOINT)
        .map_err(|e| ArchiveError::Invalid(e.to_string()))?
        .ok_or_else(|| {
            ArchiveError::Invalid(format!(
                "{} has no checkpoint: nothing was archived there",
                source.describe()
            ))
        })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ArchiveError::Invalid("the archived checkpoint is not UTF-8".into()))?;
    let note = SignedNote::parse(&text)
        .map_err(|e| ArchiveError::Invalid(format!("the archived checkpoint: {e}")))?;
    note.verify(key).map_err(|e| {
        ArchiveError::Invalid(format!(
            "the archived checkpoint is not signed by this appliance's chain key ({}): {e}",
            key.name
        ))
    })?;
    let cp = Checkpoint::parse(&note.text)
        .map_err(|e| ArchiveError::Invalid(format!("the archived checkpoint: {e}")))?;
    Ok((text, cp))
}

/// Asks each witness what it has cosigned of this log; refuses when one has cosigned more
/// than the archive holds, or cannot be asked.
async fn check_witnesses(
    check: &WitnessCheck<'_>,
    note: &str,
    size: u64,
) -> Result<Vec<(String, u64)>, ArchiveError> {
    let mut seen = Vec::new();
    let mut refusals = Vec::new();
    for link in check.links {
        match link.probe(check.client, note, size).await {
            Ok(cosigned) if cosigned > size => refusals.push(format!(
                "witness {} has cosigned {cosigned} events of this log, but the archive ends at \
                 {size}: events {size}..{cosigned} are missing from the bucket",
                link.name()
            )),
            Ok(cosigned) => seen.push((link.name().to_owned(), cosigned)),
            Err(why) => refusals.push(format!(
                "witness {} could not tell what it has cosigned: {why}",
                link.name()
            )),
        }
    }
    if refusals.is_empty() {
        return Ok(seen);
    }
    Err(ArchiveError::Invalid(format!(
        "refusing to restore: {}. Continuing from the archive would fork the log the \
         witnesses follow. Find the missing events (the lost disk, a backup) or, if a witness \
         is only unreachable, try again when it answers",
        refusals.join("; ")
    )))
}

/// Rebuilds `state_dir/store` from the archive `settings` names, for the chain key `key`,
/// after asking `witnesses` (see the module's description). `progress(done, total)` is
/// called as events are audited.
pub fn restore(
    settings: &BucketSettings,
    state_dir: &Path,
    key: &VerifierKey,
    witnesses: Option<WitnessCheck<'_>>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Restored, ArchiveError> {
    let store_dir = state_dir.join("store");
    if store_dir.exists() {
        return Err(ArchiveError::Config(format!(
            "{} exists: a restore builds a new store; move the old one away first",
            store_dir.display()
        )));
    }
    let mut source =
        BucketSource::new(settings).map_err(|e| ArchiveError::Config(e.to_string()))?;
    let (note, cp) = bucket_checkpoint(&mut source, key)?;
    let witnessed = match &witnesses {
        None => Vec::new(),
        Some(w) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(local)?;
            runtime.block_on(check_witnesses(w, &note, cp.size))?
        }
    };
    let building = state_dir.join("store.restoring");
    if building.exists() {
        // Left by a restore that did not finish.
        std::fs::remove_dir_all(&building)
            .map_err(|e| local(format!("{}: {e}", building.display())))?;
    }
    let result = build(source, &building, &note, &cp, key, progress);
    let (blocks, serial_next) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&building);
            return Err(e);
        }
    };
    let aside = set_aside_beyond(settings, &cp, blocks)?;
    std::fs::rename(&building, &store_dir).map_err(|e| {
        local(format!(
            "{} -> {}: {e}",
            building.display(),
            store_dir.display()
        ))
    })?;
    if let Ok(dir) = std::fs::File::open(state_dir) {
        let _ = dir.sync_all();
    }
    Ok(Restored {
        size: cp.size,
        blocks,
        set_aside: aside,
        witnesses: witnessed,
        serial_next,
        store: store_dir,
    })
}

/// Moves the objects a lost appliance wrote beyond the bucket's checkpoint (tiles and
/// bundles past its size, blocks past its last one: written by a round whose checkpoint
/// never followed) to `orphaned/<unix seconds>/`: the restored appliance continues the log
/// with other events, and its own objects must not meet them as conflicts. No reader
/// trusts them (nothing covers them); they are kept as evidence. Returns how many, and
/// where.
fn set_aside_beyond(
    settings: &BucketSettings,
    cp: &Checkpoint,
    blocks: u64,
) -> Result<(usize, String), ArchiveError> {
    let bucket = super::Bucket::open(settings)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = format!("orphaned/{now}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(local)?;
    runtime.block_on(async {
        let mut beyond = Vec::new();
        for path in bucket.list_all("tile").await? {
            let past = match tlog::parse_tile_path(&path) {
                Ok((_, tile)) => tlog::entries_tile_range(&tile).end > cp.size,
                // Not a tile: not the log's, left alone.
                Err(_) => false,
            };
            if past {
                beyond.push(path);
            }
        }
        for name in bucket.list("blocks").await? {
            match name.parse::<u64>() {
                Ok(h) if h >= blocks => beyond.push(super::block_path(h)),
                _ => {}
            }
        }
        for path in &beyond {
            bucket.set_aside(path, &aside).await?;
        }
        Ok((beyond.len(), aside))
    })
}

/// Audits the archive while copying it into a new store at `dir`; (blocks, serial next).
fn build(
    source: BucketSource,
    dir: &Path,
    note: &str,
    cp: &Checkpoint,
    key: &VerifierKey,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(u64, u64), ArchiveError> {
    let store = Store::open(dir).map_err(local)?;
    let log = EventLog::open(&store).map_err(local)?;
    let mut tee = Tee {
        inner: source,
        log: &log,
        pending: Vec::new(),
        pending_bundles: 0,
        next_index: 0,
        blocks: Vec::new(),
        max_serial: 0,
    };
    let checker = tiles::token_check(None).map_err(|e| local(e.to_string()))?;
    let keys = [crate::chain::note::verifier_key(&key.name, &key.public_key)];
    let audited = tiles::audit_tiles(&mut tee, &keys, checker.as_ref(), false, progress);
    match audited {
        Ok(report) if report.summary.sealed == cp.size => {}
        Ok(report) => {
            return Err(ArchiveError::Invalid(format!(
                "the archive's audit covered {} events, its checkpoint {}",
                report.summary.sealed, cp.size
            )))
        }
        Err(LogAuditError::Invalid(why)) => {
            return Err(ArchiveError::Invalid(format!(
                "the archive does not verify: {why}"
            )))
        }
        Err(e) => return Err(ArchiveError::Local(e.to_string())),
    }
    tee.flush().map_err(|e| local(e.to_string()))?;
    if log.size() != cp.size {
        return Err(ArchiveError::Invalid(format!(
            "restored {} events, the checkpoint covers {}",
            log.size(),
            cp.size
        )));
    }
    let root = tlog::tree_hash(cp.size, &log.hashes_at(cp.size)).map_err(local)?;
    if root != cp.root {
        return Err(ArchiveError::Invalid(
            "the restored tree's root is not the checkpoint's".into(),
        ));
    }
    let blocks = tee.blocks.len() as u64;
    for (height, bytes) in &tee.blocks {
        log.put_block(*height, bytes, note).map_err(local)?;
    }
    let mut keys_source = tee.inner;
    for (id, spki) in keys_source
        .recorded_keys()
        .map_err(|e| local(e.to_string()))?
    {
        log.record_chain_key(&id, &spki).map_err(local)?;
    }
    log.put_checkpoint(note).map_err(local)?;
    log.sync_derived().map_err(local)?;
    let serial_next = tee.max_serial.checked_add(SERIAL_GAP).ok_or_else(|| {
        ArchiveError::Invalid("the archived serial counters are exhausted".into())
    })?;
    store.set_serial_floor(serial_next).map_err(local)?;
    store.flush().map_err(local)?;
    Ok((blocks, serial_next))
}
