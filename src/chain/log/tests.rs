//! Tests of `log`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::migrate::has_old_layout;
use super::*;
use crate::chain::event::{Action, StoredEvent};

fn event(n: u64) -> Event {
    Event {
        agency: "agency".into(),
        auditor: format!("auditor-{n}"),
        action: Action::Access,
        subject: format!("record/{n}"),
        data_sha256: [n as u8; 32],
        occurred_at_ns: 1_700_000_000_000_000_000,
        details: "{}".into(),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Appends in uneven batches (so hash values fill, split and carry over), then checks
/// every root and proof against a tree built in memory, across a reopen.
#[test]
fn appends_persist_and_match_an_in_memory_tree() {
    let dir = tempfile::tempdir().unwrap();
    let mut leaves = Vec::new();
    let mut stored: Vec<Hash> = Vec::new();
    let rt = rt();
    let mut next = 0u64;
    let batches = [1u64, 2, 255, 1, 300, 7, 513, 3];
    for _round in 0..2 {
        let store = crate::chain::store::reopen_in_process(dir.path());
        let log = EventLog::open(&store).unwrap();
        assert_eq!(log.size(), next);
        for batch in batches {
            let events: Vec<Event> = (next..next + batch).map(event).collect();
            let appended = rt.block_on(log.append(events)).unwrap();
            assert_eq!(appended.len() as u64, batch);
            for a in appended {
                assert_eq!(a.index, next);
                let leaf = log.leaf(a.index).unwrap().unwrap();
                assert_eq!(tlog::leaf_hash(&leaf), a.leaf_hash);
                let decoded = StoredEvent::from_leaf_bytes(&leaf).unwrap();
                assert_eq!(decoded.index, a.index);
                assert_eq!(decoded.event, event(a.index));
                let add = tlog::stored_hashes_for_record(next, a.leaf_hash, &stored).unwrap();
                stored.extend(add);
                leaves.push(a.leaf_hash);
                next += 1;
            }
            let size = log.size();
            assert_eq!(size, next);
            let r = log.hashes_at(size);
            assert_eq!(
                tlog::tree_hash(size, &r).unwrap(),
                tlog::tree_hash(size, &stored).unwrap()
            );
            let i = size / 3;
            let proof = tlog::prove_inclusion(size, i, &r).unwrap();
            tlog::verify_inclusion(
                &proof,
                size,
                i,
                &tlog::tree_hash(size, &stored).unwrap(),
                &leaves[i as usize],
            )
            .unwrap();
        }
        // Every event reads back in order; complete bundles left no single events.
        let all: Vec<(u64, Vec<u8>)> = log.events().map(Result::unwrap).collect();
        assert_eq!(all.len() as u64, next);
        for (i, (index, leaf)) in all.iter().enumerate() {
            assert_eq!(*index, i as u64);
            assert_eq!(tlog::leaf_hash(leaf), leaves[i]);
        }
        assert_eq!(log.leaves(250..600).unwrap().len(), 350);
        // Events live in the files only.
        assert!(!has_old_layout(&log.shared.tree).unwrap());
        let (size, tail) = log.shared.files.tail().unwrap();
        assert_eq!(size, next);
        assert_eq!(
            decode_records(&tail, next / BUNDLE * BUNDLE, next % BUNDLE)
                .unwrap()
                .len() as u64,
            next % BUNDLE
        );
        drop(log);
    }
    assert_eq!(next, 2 * batches.iter().sum::<u64>());
}

/// A store written before the log's files kept events and hashes in sled (`E` + n,
/// `e` + index, `h` + n, `m:size`): opening it moves them to the files, removes them
/// from sled, and every event, hash and later append is as before.
#[test]
fn events_kept_in_sled_by_an_older_store_move_to_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let events = 2 * BUNDLE + 40;
    let (root, leaves) = {
        let store = crate::chain::store::reopen_in_process(dir.path());
        let log = EventLog::open(&store).unwrap();
        rt.block_on(log.append((0..events).map(event).collect()))
            .unwrap();
        let leaves: Vec<Vec<u8>> = log.leaves(0..events).unwrap();
        let root = tlog::tree_hash(events, &log.hashes_at(events)).unwrap();
        // Write it the old way into sled.
        let tree = &log.shared.tree;
        for n in 0..2 {
            tree.insert(key(b'E', n), log.full_bundle(n).unwrap().unwrap())
                .unwrap();
        }
        for i in 2 * BUNDLE..events {
            tree.insert(key(b'e', i), leaves[i as usize].clone())
                .unwrap();
        }
        for kv in log.stored_hash_values() {
            let (n, bytes) = kv.unwrap();
            tree.insert(key(b'h', n), bytes).unwrap();
        }
        tree.insert(OLD_META_SIZE, &events.to_be_bytes()).unwrap();
        store.db().flush().unwrap();
        drop(log);
        (root, leaves)
    };
    std::fs::remove_dir_all(dir.path().join(LOG_DIR)).unwrap();

    let store = crate::chain::store::reopen_in_process(dir.path());
    let log = EventLog::open(&store).unwrap();
    assert!(!has_old_layout(&log.shared.tree).unwrap());
    assert_eq!(log.size(), events);
    assert_eq!(log.leaves(0..events).unwrap(), leaves);
    assert_eq!(
        tlog::tree_hash(events, &log.hashes_at(events)).unwrap(),
        root
    );
    // Appends go on from there, completing the third bundle.
    rt.block_on(log.append((events..3 * BUNDLE).map(event).collect()))
        .unwrap();
    assert!(log.full_bundle(2).unwrap().is_some());
    assert_eq!(log.events().count() as u64, 3 * BUNDLE);
    drop((log, store));

    // A move interrupted after the files were put in place (sled not yet cleaned):
    // the files win, and sled is cleaned.
    let store = crate::chain::store::reopen_in_process(dir.path());
    store
        .tree(TREE)
        .unwrap()
        .insert(key(b'E', 0), &b"stale"[..])
        .unwrap();
    let log = EventLog::open(&store).unwrap();
    assert!(!has_old_layout(&log.shared.tree).unwrap());
    assert_eq!(log.size(), 3 * BUNDLE);
    drop((log, store));

    // A store whose sled says more events than it holds is refused, naming what is
    // missing.
    let other = tempfile::tempdir().unwrap();
    let store = crate::chain::store::reopen_in_process(other.path());
    let tree = store.tree(TREE).unwrap();
    tree.insert(OLD_META_SIZE, &300u64.to_be_bytes()).unwrap();
    let err = EventLog::open(&store).unwrap_err();
    assert!(err.to_string().contains("bundle 0"), "{err}");
    assert!(!other.path().join(LOG_DIR).exists());
}

/// The files are checked at open: a last event that does not match its stored hash
/// (here: the synced hash of the last event overwritten) is refused.
#[test]
fn a_last_event_that_does_not_match_its_hash_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let events = crate::chain::logfiles::DERIVED_SYNC_EVENTS + 3;
    {
        let store = crate::chain::store::reopen_in_process(dir.path());
        let log = EventLog::open(&store).unwrap();
        rt().block_on(log.append((0..events).map(event).collect()))
            .unwrap();
    }
    let hashes = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join(LOG_DIR).join("hashes"))
        .unwrap();
    use std::os::unix::fs::FileExt;
    hashes
        .write_all_at(&[7u8; 32], tlog::stored_hash_index(0, events - 1) * 32)
        .unwrap();
    let store = crate::chain::store::reopen_in_process(dir.path());
    let err = EventLog::open(&store).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn concurrent_appends_share_commits_and_get_distinct_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::chain::store::reopen_in_process(dir.path());
    let log = EventLog::open(&store).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let mut indexes: Vec<u64> = rt.block_on(async {
        let tasks: Vec<_> = (0..200)
            .map(|n| {
                let log = log.clone();
                tokio::spawn(async move { log.append(vec![event(n)]).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap().unwrap()[0].index);
        }
        out
    });
    indexes.sort_unstable();
    assert_eq!(indexes, (0..200).collect::<Vec<_>>());
    assert_eq!(log.events().count(), 200);
}

#[test]
fn blocks_and_checkpoint_are_stored_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::chain::store::reopen_in_process(dir.path());
    let log = EventLog::open(&store).unwrap();
    assert!(log.latest_block().unwrap().is_none());
    assert!(log.checkpoint().unwrap().is_none());
    log.put_block(0, b"zero", "cp0").unwrap();
    log.put_block(1, b"one", "cp1").unwrap();
    assert_eq!(log.latest_block().unwrap(), Some((1, b"one".to_vec())));
    assert_eq!(log.block(0).unwrap(), Some(b"zero".to_vec()));
    assert_eq!(log.checkpoint().unwrap().as_deref(), Some("cp1"));
    assert_eq!(log.blocks().count(), 2);
}

#[test]
fn reads_beyond_the_committed_size_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::chain::store::reopen_in_process(dir.path());
    let log = EventLog::open(&store).unwrap();
    rt().block_on(log.append((0..5).map(event).collect()))
        .unwrap();
    assert!(log.leaf(5).unwrap().is_none());
    assert_eq!(log.leaves(3..99).unwrap().len(), 2);
    assert!(tlog::tree_hash(6, &log.hashes_at(6)).is_err());
    assert!(tlog::tree_hash(5, &log.hashes_at(5)).is_ok());
}

/// Each commit's receive time is read from the log's clock (the server's one clock), not
/// from the system clock: a test drives it.
#[test]
fn events_are_received_at_the_clock_s_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::chain::store::reopen_in_process(dir.path());
    let clock = crate::clock::ManualClock::at(1_234_567);
    let log = EventLog::open_with_clock(&store, clock.clone()).unwrap();
    let rt = rt();
    rt.block_on(log.append(vec![event(0)])).unwrap();
    clock.set(2_000_000);
    rt.block_on(log.append(vec![event(1), event(2)])).unwrap();
    let received: Vec<u64> = (0..3)
        .map(|i| {
            StoredEvent::from_leaf_bytes(&log.leaf(i).unwrap().unwrap())
                .unwrap()
                .received_at_ms
        })
        .collect();
    assert_eq!(received, [1_234_567, 2_000_000, 2_000_000]);
}
