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

/// An event with a subject of `len` bytes (for logs of a few MB).
fn big_event(n: u64, len: usize) -> Event {
    Event {
        subject: format!("record/{n}/{}", "x".repeat(len)),
        ..event(n)
    }
}

fn root(log: &EventLog) -> Hash {
    tlog::tree_hash(log.size(), &log.hashes_at(log.size())).unwrap()
}

fn is_pruned(err: &LogError, n: u64) -> bool {
    matches!(err, LogError::Pruned { bundle } if *bundle == n)
}

/// Pruned events and bundles read as pruned through every read, never as zeros; the tree
/// (roots, proofs) is unchanged; appends go on; a reopen keeps the prune, also when the
/// last complete bundle is pruned and the log ends with it (the check at open skips the
/// leaf it cannot read).
#[test]
fn pruned_bundles_are_refused_on_read_and_the_tree_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = crate::chain::store::reopen_in_process(dir.path());
    let log = EventLog::open(&store).unwrap();
    rt.block_on(log.append((0..3 * BUNDLE).map(event).collect()))
        .unwrap();
    let before = root(&log);
    let b2 = log.full_bundle(2).unwrap().unwrap();
    let proof = tlog::prove_inclusion(3 * BUNDLE, 5, &log.hashes_at(3 * BUNDLE)).unwrap();

    let outcome = log.prune_below(2).unwrap();
    assert_eq!(outcome.pruned_below, 2);
    assert_eq!(log.pruned_below(), 2);
    assert!(is_pruned(&log.leaf(5).unwrap_err(), 0));
    assert!(is_pruned(&log.leaf(511).unwrap_err(), 1));
    assert!(is_pruned(&log.full_bundle(1).unwrap_err(), 1));
    let err = log.leaves(300..600).unwrap_err();
    assert!(is_pruned(&err, 1), "{err}");
    assert!(
        err.to_string().contains("pruned from local storage"),
        "{err}"
    );
    assert!(is_pruned(&log.events().next().unwrap().unwrap_err(), 0));
    assert!(is_pruned(
        &log.events_from(300).next().unwrap().unwrap_err(),
        1
    ));
    // What is not pruned reads as before.
    assert_eq!(log.full_bundle(2).unwrap().unwrap(), b2);
    assert_eq!(log.leaves(512..768).unwrap().len(), 256);
    assert_eq!(log.events_from(512).count(), 256);
    assert_eq!(
        StoredEvent::from_leaf_bytes(&log.leaf(600).unwrap().unwrap())
            .unwrap()
            .index,
        600
    );
    assert_eq!(root(&log), before);
    assert_eq!(
        tlog::prove_inclusion(3 * BUNDLE, 5, &log.hashes_at(3 * BUNDLE)).unwrap(),
        proof
    );
    drop(log);

    // The log ends with a complete bundle: prune it too, then reopen.
    let log = EventLog::open(&store).unwrap();
    assert_eq!(log.pruned_below(), 2);
    log.prune_below(3).unwrap();
    drop(log);
    let log = EventLog::open(&store).unwrap();
    assert_eq!(log.pruned_below(), 3);
    assert_eq!(log.size(), 3 * BUNDLE);
    assert_eq!(root(&log), before);
    assert!(is_pruned(&log.leaf(3 * BUNDLE - 1).unwrap_err(), 2));

    // Appends go on, and the tree grows from the same hashes.
    let mut stored: Vec<Hash> = Vec::new();
    for i in 0..3 * BUNDLE {
        stored.extend(
            tlog::stored_hashes_for_record(
                i,
                log.hashes_at(i + 1)
                    .read_hashes(&[tlog::stored_hash_index(0, i)])
                    .unwrap()[0],
                &stored,
            )
            .unwrap(),
        );
    }
    let appended = rt
        .block_on(log.append((3 * BUNDLE..3 * BUNDLE + 300).map(event).collect()))
        .unwrap();
    assert_eq!(appended[0].index, 3 * BUNDLE);
    for a in &appended {
        stored.extend(tlog::stored_hashes_for_record(a.index, a.leaf_hash, &stored).unwrap());
    }
    let size = 3 * BUNDLE + 300;
    assert_eq!(log.size(), size);
    assert_eq!(root(&log), tlog::tree_hash(size, &stored).unwrap());
    assert_eq!(
        tlog::tree_hash(3 * BUNDLE, &log.hashes_at(3 * BUNDLE)).unwrap(),
        before
    );
    assert_eq!(log.leaves(3 * BUNDLE..size).unwrap().len(), 300);
    assert!(is_pruned(&log.leaf(0).unwrap_err(), 0));
    drop(log);
    let log = EventLog::open(&store).unwrap();
    assert_eq!(log.size(), size);
    assert_eq!(log.pruned_below(), 3);
}

/// Only complete bundles are pruned; lower prunes than what is pruned change nothing.
#[test]
fn prunes_beyond_the_complete_bundles_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::chain::store::reopen_in_process(dir.path());
    let log = EventLog::open(&store).unwrap();
    rt().block_on(log.append((0..BUNDLE + 10).map(event).collect()))
        .unwrap();
    let err = log.prune_below(2).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::NotComplete {
                bundle: 1,
                complete: 1
            }
        ),
        "{err}"
    );
    assert_eq!(log.pruned_below(), 0);
    assert!(log.leaf(0).unwrap().is_some());
    assert_eq!(log.prune_below(1).unwrap().newly_pruned, 1);
    assert_eq!(log.prune_below(0).unwrap().newly_pruned, 0);
    assert_eq!(log.pruned_below(), 1);
}

/// Pruning frees the disk space of the pruned events (here some 4 MB).
#[test]
fn pruning_frees_disk_space() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::chain::store::reopen_in_process(dir.path());
    let log = EventLog::open(&store).unwrap();
    let rt = rt();
    for round in 0..4 {
        let from = round * 1024;
        rt.block_on(log.append((from..from + 1024).map(|n| big_event(n, 1000)).collect()))
            .unwrap();
    }
    assert_eq!(log.size(), 16 * BUNDLE);
    let events_len = std::fs::metadata(dir.path().join(LOG_DIR).join("events"))
        .unwrap()
        .len();
    assert!(events_len > 4_000_000, "{events_len}");
    let before = log.disk_bytes().unwrap();
    let files_before = log.shared.files.disk_bytes().unwrap();
    let root_before = root(&log);
    let outcome = log.prune_below(16).unwrap();
    assert!(outcome.space_freed, "{outcome:?}");
    let after = log.disk_bytes().unwrap();
    let files_after = log.shared.files.disk_bytes().unwrap();
    assert!(
        files_before - files_after > 4_000_000,
        "{files_before} -> {files_after}"
    );
    assert!(before - after > 4_000_000, "{before} -> {after}");
    // The file keeps its length: offsets stay valid.
    assert_eq!(
        std::fs::metadata(dir.path().join(LOG_DIR).join("events"))
            .unwrap()
            .len(),
        events_len
    );
    assert_eq!(root(&log), root_before);
    rt.block_on(log.append(vec![event(16 * BUNDLE)])).unwrap();
    assert_eq!(
        log.leaf(16 * BUNDLE).unwrap().map(|l| l.is_empty()),
        Some(false)
    );
}

/// A bundle read back from elsewhere is trusted when its leaves are the stored ones:
/// the true bundle is, also once pruned locally; one changed in one event is not, and
/// the error names that event.
#[test]
fn check_bundle_accepts_the_true_bundle_and_names_a_tampered_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::chain::store::reopen_in_process(dir.path());
    let log = EventLog::open(&store).unwrap();
    rt().block_on(log.append((0..2 * BUNDLE + 7).map(event).collect()))
        .unwrap();
    let bundle = log.full_bundle(1).unwrap().unwrap();
    let leaves = log.leaves(BUNDLE..2 * BUNDLE).unwrap();
    assert_eq!(log.check_bundle(1, &bundle).unwrap(), leaves);
    log.prune_below(2).unwrap();
    assert_eq!(log.check_bundle(1, &bundle).unwrap(), leaves);

    let mut tampered = leaves.clone();
    let last = tampered[37].len() - 1;
    tampered[37][last] ^= 1;
    let refs: Vec<&[u8]> = tampered.iter().map(Vec::as_slice).collect();
    let bad = tlog::encode_entry_bundle(&refs).unwrap();
    let err = log.check_bundle(1, &bad).unwrap_err();
    assert!(
        matches!(err, LogError::BundleMismatch { bundle: 1, index: Some(i), .. } if i == BUNDLE + 37),
        "{err}"
    );
    assert!(err.to_string().contains("event 293"), "{err}");
    // Another bundle's bytes: its first event already differs.
    let err = log.check_bundle(0, &bundle).unwrap_err();
    assert!(
        matches!(err, LogError::BundleMismatch { index: Some(0), .. }),
        "{err}"
    );
    // Cut off, or short of a record.
    let err = log
        .check_bundle(1, &bundle[..bundle.len() - 1])
        .unwrap_err();
    assert!(
        matches!(err, LogError::BundleMismatch { index: None, .. }),
        "{err}"
    );
    let err = log
        .check_bundle(1, &tlog::encode_entry_bundle(&refs[..255]).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("255 records"), "{err}");
    // The incomplete bundle has nothing to be checked against yet.
    assert!(matches!(
        log.check_bundle(2, &bundle),
        Err(LogError::NotComplete {
            bundle: 2,
            complete: 2
        })
    ));
}

/// A log restored from another's leaves, a bundle at a time, is the same log: the same
/// tree hash, bundle bytes and leaves, across a reopen, and appends go on after them.
#[test]
fn appending_another_log_s_leaves_restores_the_same_log() {
    let rt = rt();
    let a_dir = tempfile::tempdir().unwrap();
    let a_store = crate::chain::store::reopen_in_process(a_dir.path());
    let a = EventLog::open(&a_store).unwrap();
    for batch in [(0, 100), (100, 400), (400, 700)] {
        rt.block_on(a.append((batch.0..batch.1).map(event).collect()))
            .unwrap();
    }
    let size = a.size();

    let b_dir = tempfile::tempdir().unwrap();
    let b_store = crate::chain::store::reopen_in_process(b_dir.path());
    let b = EventLog::open(&b_store).unwrap();
    let commits = b.commits();
    for range in [0..BUNDLE, BUNDLE..2 * BUNDLE, 2 * BUNDLE..size] {
        let end = range.end;
        let leaves = a.leaves(range).unwrap();
        assert_eq!(rt.block_on(b.append_leaves(leaves)).unwrap(), end);
    }
    // One commit per call.
    assert_eq!(b.commits() - commits, 3);
    assert_eq!(rt.block_on(b.append_leaves(Vec::new())).unwrap(), size);
    assert_eq!(b.size(), size);
    assert_eq!(root(&b), root(&a));
    for n in 0..2 {
        assert_eq!(b.full_bundle(n).unwrap(), a.full_bundle(n).unwrap());
    }
    assert_eq!(b.leaves(0..size).unwrap(), a.leaves(0..size).unwrap());
    assert_eq!(
        b.stored_hash_values()
            .map(Result::unwrap)
            .collect::<Vec<_>>(),
        a.stored_hash_values()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    );
    drop(b);
    let b = EventLog::open(&b_store).unwrap();
    assert_eq!(root(&b), root(&a));
    let appended = rt.block_on(b.append(vec![event(size)])).unwrap();
    assert_eq!(appended[0].index, size);
}

/// A leaf that does not carry the index of its place, or is not a stored event's leaf,
/// is refused, and nothing of its call is appended.
#[test]
fn append_leaves_refuses_a_leaf_out_of_place() {
    let rt = rt();
    let a_dir = tempfile::tempdir().unwrap();
    let a_store = crate::chain::store::reopen_in_process(a_dir.path());
    let a = EventLog::open(&a_store).unwrap();
    rt.block_on(a.append((0..4).map(event).collect())).unwrap();
    let leaves = a.leaves(0..4).unwrap();

    let b_dir = tempfile::tempdir().unwrap();
    let b_store = crate::chain::store::reopen_in_process(b_dir.path());
    let b = EventLog::open(&b_store).unwrap();
    let err = rt
        .block_on(b.append_leaves(vec![leaves[1].clone()]))
        .unwrap_err();
    assert!(
        matches!(&err, LogError::LeafRefused { position: 0, detail } if detail.contains("index 1")),
        "{err}"
    );
    // The second is out of place: the first is not appended either.
    let err = rt
        .block_on(b.append_leaves(vec![leaves[0].clone(), leaves[2].clone()]))
        .unwrap_err();
    assert!(
        matches!(err, LogError::LeafRefused { position: 1, .. }),
        "{err}"
    );
    let err = rt
        .block_on(b.append_leaves(vec![b"not a leaf".to_vec()]))
        .unwrap_err();
    assert!(
        matches!(err, LogError::LeafRefused { position: 0, .. }),
        "{err}"
    );
    assert_eq!(b.size(), 0);
    // In their places they go.
    assert_eq!(
        rt.block_on(b.append_leaves(leaves[..2].to_vec())).unwrap(),
        2
    );
    let err = rt
        .block_on(b.append_leaves(vec![leaves[3].clone()]))
        .unwrap_err();
    assert!(
        matches!(err, LogError::LeafRefused { position: 2, .. }),
        "{err}"
    );
    assert_eq!(
        rt.block_on(b.append_leaves(leaves[2..].to_vec())).unwrap(),
        4
    );
    assert_eq!(root(&b), root(&a));
}

/// Restored leaves and new events sent at the same time are committed in the order they
/// were sent: a restore job is never merged into a group of new events.
#[test]
fn restored_leaves_and_appends_keep_their_order() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let a_dir = tempfile::tempdir().unwrap();
    let a_store = crate::chain::store::reopen_in_process(a_dir.path());
    let a = EventLog::open(&a_store).unwrap();
    rt.block_on(a.append((0..BUNDLE).map(event).collect()))
        .unwrap();
    let leaves = a.leaves(0..BUNDLE).unwrap();

    let b_dir = tempfile::tempdir().unwrap();
    let b_store = crate::chain::store::reopen_in_process(b_dir.path());
    let b = EventLog::open(&b_store).unwrap();
    let (restored, appended) = rt.block_on(async {
        let first = b.append_leaves(leaves);
        let second = b.append((0..10).map(event).collect());
        tokio::join!(first, second)
    });
    assert_eq!(restored.unwrap(), BUNDLE);
    let appended = appended.unwrap();
    assert_eq!(appended[0].index, BUNDLE);
    assert_eq!(b.leaves(0..BUNDLE).unwrap(), a.leaves(0..BUNDLE).unwrap());
}
