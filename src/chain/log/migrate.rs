//! The move of a store written before the log's files: its events and hashes, kept in
//! sled (`E` + n: complete bundles; `e` + index: events of the incomplete one; `h` + n:
//! 256 stored hashes; `m:size`), go into new files built beside the store and put in place
//! when complete; only then are they removed from sled. An interrupted move starts over
//! at the next open.

use super::*;

/// Whether sled still holds events of a store written before the log's files.
pub(super) fn has_old_layout(tree: &sled::Tree) -> Result<bool, LogError> {
    for prefix in [&b"m:size"[..], b"E", b"e", b"h", b"F"] {
        if tree.scan_prefix(prefix).next().is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Removes what a store written before the log's files kept in sled, in one batch.
pub(super) fn remove_old_layout(store: &Store, tree: &sled::Tree) -> Result<(), LogError> {
    let mut batch = sled::Batch::default();
    for prefix in [&b"E"[..], b"e", b"h", b"F"] {
        for kv in tree.scan_prefix(prefix) {
            let (k, _) = kv?;
            if k.len() == 9 {
                batch.remove(k);
            }
        }
    }
    batch.remove(OLD_META_SIZE);
    tree.apply_batch(batch)?;
    store.db().flush()?;
    // The entry file of a short-lived intermediate layout, if any.
    let stale = store.dir().join("entry-bundles");
    if stale.exists() {
        std::fs::remove_file(&stale).map_err(|e| {
            LogError::CommitFailed(format!("cannot remove {}: {e}", stale.display()))
        })?;
    }
    Ok(())
}

/// Bundles moved per commit when moving an older store's events into the files.
const MOVE_BUNDLES: u64 = 16;

/// Moves the events and hashes a store written before the log's files kept in sled
/// into new files in `dir` (built beside it and put in place when complete).
pub(super) fn move_out_of_sled(
    tree: &sled::Tree,
    dir: &std::path::Path,
) -> Result<LogFiles, LogError> {
    if tree.scan_prefix(b"F").next().is_some() {
        return Err(LogError::Corrupt(
            "the store has an unsupported layout (entry-bundle ends in sled, key F); \
             restore it from a backup taken before this version"
                .into(),
        ));
    }
    let size = match tree.get(OLD_META_SIZE)? {
        None => 0,
        Some(v) => u64::from_be_bytes(
            <[u8; 8]>::try_from(v.as_ref())
                .map_err(|_| LogError::Corrupt(format!("m:size holds {} bytes, not 8", v.len())))?,
        ),
    };
    let files = LogFiles::create_staged(dir)?;
    let count = tlog::stored_hash_count(size);
    let mut hashes = tree.range(key(b'h', 0)..=key(b'h', u64::MAX)).map(numbered);
    let mut pending: Vec<u8> = Vec::new();
    let mut pending_base = 0u64;
    // The next `n` stored hashes, from the old 256-hash values in order.
    let mut take_hashes = |n: u64| -> Result<Vec<u8>, LogError> {
        let need =
            usize::try_from(n * 32).map_err(|_| LogError::Corrupt("too many hashes".into()))?;
        while pending.len() < need {
            let (v, bytes) = hashes.next().transpose()?.ok_or_else(|| {
                LogError::Corrupt(format!(
                    "{size} events need {count} stored hashes; fewer are stored"
                ))
            })?;
            if v * 256 != pending_base + (pending.len() / 32) as u64 {
                return Err(LogError::Corrupt(format!(
                    "stored hash value {v} is out of place"
                )));
            }
            pending.extend_from_slice(&bytes);
        }
        let rest = pending.split_off(need);
        pending_base += n;
        Ok(std::mem::replace(&mut pending, rest))
    };
    let full = size / BUNDLE;
    let mut n = 0;
    while n < full {
        let upto = (n + MOVE_BUNDLES).min(full);
        let mut records = Vec::new();
        let mut ends = Vec::new();
        let mut end = files.end();
        for b in n..upto {
            let bundle = tree.get(key(b'E', b))?.ok_or_else(|| {
                LogError::Corrupt(format!(
                    "the log says {size} events, but bundle {b} (events {}..{}) is missing",
                    b * BUNDLE,
                    (b + 1) * BUNDLE
                ))
            })?;
            decode_records(&bundle, b * BUNDLE, BUNDLE)?;
            end += bundle.len() as u64;
            ends.push(end);
            records.extend_from_slice(&bundle);
        }
        let new = tlog::stored_hash_count(upto * BUNDLE) - tlog::stored_hash_count(n * BUNDLE);
        files.commit(&Batch {
            size: upto * BUNDLE,
            records: &records,
            hashes: &take_hashes(new)?,
            bundle_ends: &ends,
        })?;
        n = upto;
    }
    let mut records = Vec::new();
    for i in full * BUNDLE..size {
        let leaf = tree.get(key(b'e', i))?.ok_or_else(|| {
            LogError::Corrupt(format!(
                "the log says {size} events, but event {i} is missing"
            ))
        })?;
        push_record(&mut records, &leaf)?;
    }
    let new = count - tlog::stored_hash_count(full * BUNDLE);
    files.commit(&Batch {
        size,
        records: &records,
        hashes: &take_hashes(new)?,
        bundle_ends: &[],
    })?;
    let files = files.install()?;
    tracing::info!(
        events = size,
        dir = %files.dir().display(),
        "moved the event log's events and hashes out of sled into its files"
    );
    Ok(files)
}
