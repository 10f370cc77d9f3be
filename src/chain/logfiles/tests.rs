//! Tests of `logfiles`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn leaf(i: u64) -> Vec<u8> {
    format!("event {i}").into_bytes()
}

/// Commits events `size..to` with their real stored hashes.
fn commit(files: &LogFiles, to: u64) {
    let from = files.size();
    let mut records = Vec::new();
    let mut mem = Vec::new();
    let mut ends = Vec::new();
    let mut at = files.end();
    for i in from..to {
        let l = leaf(i);
        records.extend_from_slice(&(l.len() as u16).to_be_bytes());
        records.extend_from_slice(&l);
        at += 2 + l.len() as u64;
        let reader = Hashes {
            files,
            count: tlog::stored_hash_count(from) + mem.len() as u64,
            mem_start: tlog::stored_hash_count(from),
            mem: &mem,
        };
        let new = tlog::stored_hashes_for_record(i, tlog::leaf_hash(&l), &reader).unwrap();
        mem.extend(new);
        if (i + 1) % BUNDLE == 0 {
            ends.push(at);
        }
    }
    let hashes: Vec<u8> = mem.iter().flatten().copied().collect();
    files
        .commit(&Batch {
            size: to,
            records: &records,
            hashes: &hashes,
            bundle_ends: &ends,
        })
        .unwrap();
}

/// The tree hash of the first `size` events, from the files and from scratch.
/// What a crash before their sync can leave of the hashes and bundle ends: nothing.
fn lose_derived_files(path: &Path) {
    for name in [HASHES, BUNDLES] {
        OpenOptions::new()
            .write(true)
            .open(path.join(name))
            .unwrap()
            .set_len(0)
            .unwrap();
    }
}

fn roots(files: &LogFiles, size: u64) -> (Hash, Hash) {
    let reader = Hashes {
        files,
        count: tlog::stored_hash_count(size),
        mem_start: u64::MAX,
        mem: &[],
    };
    let mut stored: Vec<Hash> = Vec::new();
    for i in 0..size {
        let add = tlog::stored_hashes_for_record(i, tlog::leaf_hash(&leaf(i)), &stored).unwrap();
        stored.extend(add);
    }
    (
        tlog::tree_hash(size, &reader).unwrap(),
        tlog::tree_hash(size, &stored).unwrap(),
    )
}

#[test]
fn commits_survive_a_reopen_and_bundles_are_byte_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let files = LogFiles::open_or_create(&path).unwrap();
    assert_eq!(files.size(), 0);
    commit(&files, 100);
    commit(&files, 300);
    commit(&files, 513);
    assert_eq!(files.size(), 513);
    let b1 = files.bundle(1).unwrap().unwrap();
    let decoded = tlog::decode_entry_bundle(&b1).unwrap();
    assert_eq!(decoded.len(), 256);
    assert_eq!(decoded[0], b"event 256");
    assert!(files.bundle(2).unwrap().is_none());
    let (size, tail) = files.tail().unwrap();
    assert_eq!(size, 513);
    assert_eq!(split_records(&tail).unwrap(), vec![b"event 512"]);
    let (got, want) = roots(&files, 513);
    assert_eq!(got, want);
    drop(files);

    let files = LogFiles::open_or_create(&path).unwrap();
    assert_eq!(files.size(), 513);
    assert_eq!(files.bundle(1).unwrap().unwrap(), b1);
    let (got, want) = roots(&files, 513);
    assert_eq!(got, want);
    commit(&files, 600);
    assert_eq!(files.size(), 600);
}

#[test]
fn an_interrupted_commit_falls_back_to_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let files = LogFiles::open_or_create(&path).unwrap();
    commit(&files, 10);
    let end = files.end();
    commit(&files, 20);
    // The last commit's head reached the disk, but not all of its records; then the
    // process died (no clean close).
    files.events.write_all_at(b"\x00\x05junk!", end).unwrap();
    std::mem::forget(files);
    let files = LogFiles::open(&path).unwrap();
    assert_eq!(files.size(), 10);
    assert_eq!(files.end(), end);
    commit(&files, 25);
    std::mem::forget(files);
    let files = LogFiles::open(&path).unwrap();
    assert_eq!(files.size(), 25);
    assert_eq!(roots(&files, 25).0, roots(&files, 25).1);

    // A torn head slot: the other one, the commit before, holds.
    commit(&files, 30);
    let seq = files.writer.lock().unwrap().last.seq;
    files
        .events
        .write_all_at(b"AUDLOG02garbage", (seq % 2) * SLOT_STRIDE)
        .unwrap();
    std::mem::forget(files);
    let files = LogFiles::open(&path).unwrap();
    assert_eq!(files.size(), 25);
    assert_eq!(roots(&files, 25).0, roots(&files, 25).1);
}

#[test]
fn derived_files_lost_in_a_crash_are_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let files = LogFiles::open_or_create(&path).unwrap();
    commit(&files, 300);
    commit(&files, 700);
    // A crash: the hashes and bundle ends were never synced (fewer events than a sync
    // takes, and no clean close), and the crash lost them all.
    std::mem::forget(files);
    lose_derived_files(&path);
    let files = LogFiles::open(&path).unwrap();
    assert_eq!(files.size(), 700);
    let (got, want) = roots(&files, 700);
    assert_eq!(got, want);
    assert_eq!(
        tlog::decode_entry_bundle(&files.bundle(1).unwrap().unwrap()).unwrap()[0],
        b"event 256"
    );
    commit(&files, 701);
    assert_eq!(roots(&files, 701).0, roots(&files, 701).1);
}

/// A clean close syncs the derived files and says so in the head: the next open
/// recomputes nothing, so a stored hash changed meanwhile stays changed (for the audit
/// to find), instead of being recomputed from the events. Also after an open that
/// recomputed them and no commit since.
#[test]
fn a_clean_close_leaves_nothing_to_recompute() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let files = LogFiles::open_or_create(&path).unwrap();
    commit(&files, 40);
    std::mem::forget(files);
    let files = LogFiles::open(&path).unwrap();
    assert_eq!(files.writer.lock().unwrap().last.derived_size, 0);
    drop(files);
    let hashes = OpenOptions::new()
        .write(true)
        .open(path.join(HASHES))
        .unwrap();
    hashes.write_all_at(&[9u8; 32], 0).unwrap();
    let files = LogFiles::open(&path).unwrap();
    assert_eq!(files.hash(0).unwrap(), [9u8; 32]);
    assert_eq!(files.writer.lock().unwrap().last.derived_size, 40);
}

/// The rebuild reads the records a window at a time; records split across windows
/// (here windows of 7 bytes) give the same hashes, and a record cut off at the end is
/// refused.
#[test]
fn the_rebuild_reads_records_across_windows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let files = LogFiles::open_or_create(&path).unwrap();
    commit(&files, 300);
    std::mem::forget(files);
    lose_derived_files(&path);
    // Open with the normal window (rebuilding), then rebuild again by 7 bytes.
    let files = LogFiles::open(&path).unwrap();
    let head = files.writer.lock().unwrap().last;
    let bundle = files.bundle(0).unwrap().unwrap();
    let rebuilt = LogFiles {
        committed: RwLock::new(Committed {
            size: 0,
            end: RECORDS_AT,
            bundle_ends: Vec::new(),
        }),
        size: AtomicU64::new(0),
        writer: Mutex::new(Writer {
            last: head,
            allocated: files.writer.lock().unwrap().allocated,
            derived_size: 0,
            derived_end: RECORDS_AT,
        }),
        dir: path.clone(),
        events: files.events.try_clone().unwrap(),
        hashes: files.hashes.try_clone().unwrap(),
        bundles: files.bundles.try_clone().unwrap(),
        pruned: RwLock::new(0),
    };
    let mut from_scratch = head;
    from_scratch.derived_size = 0;
    from_scratch.derived_end = RECORDS_AT;
    rebuilt.rebuild_derived_by(&from_scratch, 7).unwrap();
    assert_eq!(rebuilt.size(), 300);
    assert_eq!(rebuilt.bundle(0).unwrap().unwrap(), bundle);
    assert_eq!(roots(&rebuilt, 300).0, roots(&rebuilt, 300).1);
    // One byte short of the last record: cut off.
    let mut short = from_scratch;
    short.end -= 1;
    let err = rebuilt.rebuild_derived_by(&short, 7).unwrap_err();
    assert!(err.to_string().contains("whole records"), "{err}");
    std::mem::forget(rebuilt);
}

#[test]
fn derived_files_shorter_than_their_sync_and_no_valid_head_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let files = LogFiles::open_or_create(&path).unwrap();
    commit(&files, DERIVED_SYNC_EVENTS + 5);
    std::mem::forget(files);
    OpenOptions::new()
        .write(true)
        .open(path.join(HASHES))
        .unwrap()
        .set_len(32)
        .unwrap();
    let err = LogFiles::open(&path).unwrap_err();
    assert!(err.to_string().contains("hashes holds 32 bytes"), "{err}");

    let events = OpenOptions::new()
        .write(true)
        .open(path.join(EVENTS))
        .unwrap();
    events.write_all_at(&[0u8; SLOT_LEN], 0).unwrap();
    events.write_all_at(&[0u8; SLOT_LEN], SLOT_STRIDE).unwrap();
    let err = LogFiles::open(&path).unwrap_err();
    assert!(err.to_string().contains("holds no commit"), "{err}");
}

#[test]
fn a_commit_that_does_not_add_up_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let files = LogFiles::open_or_create(&dir.path().join("log")).unwrap();
    let err = files
        .commit(&Batch {
            size: 3,
            records: b"\x00\x01a\x00\x01b\x00\x01c",
            hashes: &[],
            bundle_ends: &[],
        })
        .unwrap_err();
    assert!(matches!(err, LogFilesError::Corrupt { .. }), "{err}");
    assert_eq!(files.size(), 0);
}

#[test]
fn a_staged_log_is_replaced_and_installed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let stale = LogFiles::create_staged(&path).unwrap();
    commit(&stale, 5);
    drop(stale);
    // An interrupted earlier attempt is started over.
    let staged = LogFiles::create_staged(&path).unwrap();
    assert_eq!(staged.size(), 0);
    commit(&staged, 7);
    let installed = staged.install().unwrap();
    assert_eq!(installed.dir(), path);
    assert!(!staging(&path).exists());
    drop(installed);
    assert_eq!(LogFiles::open(&path).unwrap().size(), 7);
}

#[test]
fn a_full_disk_is_told_apart() {
    let full = LogFilesError::Io {
        path: PathBuf::from("x"),
        operation: "write",
        source: std::io::Error::from_raw_os_error(libc::ENOSPC),
    };
    assert!(full.is_storage_full());
    let other = LogFilesError::Io {
        path: PathBuf::from("x"),
        operation: "write",
        source: std::io::Error::from_raw_os_error(libc::EIO),
    };
    assert!(!other.is_storage_full());
}

/// A head slot of a log that is not pruned is written exactly as earlier versions wrote
/// it (`AUDLOG02`, checksum at byte 60), so they still open it; a pruned one carries the
/// prune point under its own magic and checksum, and a slot torn there does not check out.
#[test]
fn head_slots_keep_the_earlier_format_until_pruned() {
    let head = Head {
        seq: 7,
        size: 600,
        end: 9000,
        commit_start: 8500,
        records_crc: 0xdead_beef,
        derived_size: 512,
        derived_end: 8800,
        pruned: 0,
    };
    let slot = head.encode();
    assert_eq!(&slot[..8], b"AUDLOG02");
    assert_eq!(slot[60..64], crc32fast::hash(&slot[..60]).to_be_bytes()[..]);
    assert!(slot[64..].iter().all(|&b| b == 0));
    assert_eq!(Head::decode(&slot), Some(head));

    let pruned = Head { pruned: 2, ..head };
    let slot = pruned.encode();
    assert_eq!(&slot[..8], b"AUDLOG03");
    assert_eq!(slot[60..68], 2u64.to_be_bytes());
    assert_eq!(Head::decode(&slot), Some(pruned));
    let mut torn = slot;
    torn[67] = 3;
    assert_eq!(Head::decode(&torn), None);
    // An earlier-format checksum does not make a pruned slot.
    let mut old = pruned.encode();
    old[..8].copy_from_slice(b"AUDLOG02");
    assert_eq!(Head::decode(&old), None);
}

/// Pruned bundles read as pruned (never as the zeros of their holes), the rest as before,
/// also after a crash and after a clean close; the stored hashes and later commits are
/// unaffected. The last commit before the prune wrote the pruned records, so the head it
/// left could no longer be checked against them: the prune's own head is what opens.
#[test]
fn pruned_bundles_read_as_pruned_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let files = LogFiles::open_or_create(&path).unwrap();
    commit(&files, 3 * BUNDLE + 10);
    let b2 = files.bundle(2).unwrap().unwrap();
    let root = roots(&files, 3 * BUNDLE + 10);
    assert_eq!(root.0, root.1);
    assert_eq!(files.pruned_below(), 0);

    let outcome = files.prune_below(2).unwrap();
    assert_eq!(
        outcome,
        PruneOutcome {
            pruned_below: 2,
            newly_pruned: 2,
            space_freed: true
        }
    );
    assert_eq!(files.pruned_below(), 2);
    for n in 0..2 {
        let err = files.bundle(n).unwrap_err();
        assert!(
            matches!(err, LogFilesError::Pruned { bundle } if bundle == n),
            "{err}"
        );
        assert!(
            err.to_string().contains("read it from the archive"),
            "{err}"
        );
    }
    assert_eq!(files.bundle(2).unwrap().unwrap(), b2);
    assert!(files.bundle(3).unwrap().is_none());
    assert_eq!(files.tail().unwrap().0, 3 * BUNDLE + 10);
    assert_eq!(roots(&files, 3 * BUNDLE + 10), root);
    // The pruned records' blocks are holes now (they read as zeros underneath).
    let mut raw = vec![0u8; 4096];
    files.events.read_exact_at(&mut raw, RECORDS_AT).unwrap();
    assert!(raw.iter().all(|&b| b == 0));

    // A crash, no clean close.
    std::mem::forget(files);
    let files = LogFiles::open(&path).unwrap();
    assert_eq!(files.pruned_below(), 2);
    assert!(matches!(
        files.bundle(1),
        Err(LogFilesError::Pruned { bundle: 1 })
    ));
    assert_eq!(files.bundle(2).unwrap().unwrap(), b2);
    assert_eq!(roots(&files, 3 * BUNDLE + 10), root);
    commit(&files, 5 * BUNDLE);
    assert_eq!(roots(&files, 5 * BUNDLE).0, roots(&files, 5 * BUNDLE).1);
    assert_eq!(files.pruned_below(), 2);
    drop(files);

    let files = LogFiles::open(&path).unwrap();
    assert_eq!(files.size(), 5 * BUNDLE);
    assert_eq!(files.pruned_below(), 2);
    assert_eq!(files.writer.lock().unwrap().last.pruned, 2);
    assert_eq!(
        tlog::decode_entry_bundle(&files.bundle(4).unwrap().unwrap()).unwrap()[0],
        b"event 1024"
    );
    // Further: the last complete bundle too.
    assert_eq!(files.prune_below(5).unwrap().newly_pruned, 3);
    drop(files);
    let files = LogFiles::open(&path).unwrap();
    assert_eq!(files.pruned_below(), 5);
    assert_eq!(roots(&files, 5 * BUNDLE).0, roots(&files, 5 * BUNDLE).1);
}

/// Only complete bundles are pruned, and pruning only grows.
#[test]
fn prunes_beyond_the_complete_bundles_are_refused_and_lower_ones_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let files = LogFiles::open_or_create(&path).unwrap();
    commit(&files, 3 * BUNDLE + 10);
    let err = files.prune_below(4).unwrap_err();
    assert!(
        matches!(
            err,
            LogFilesError::NotComplete {
                bundle: 3,
                complete: 3
            }
        ),
        "{err}"
    );
    assert_eq!(files.pruned_below(), 0);
    assert!(files.bundle(0).unwrap().is_some());
    let seq = files.writer.lock().unwrap().last.seq;
    assert_eq!(files.prune_below(0).unwrap().newly_pruned, 0);
    assert_eq!(files.writer.lock().unwrap().last.seq, seq);

    assert_eq!(files.prune_below(2).unwrap().pruned_below, 2);
    let seq = files.writer.lock().unwrap().last.seq;
    for lower in [0, 1, 2] {
        assert_eq!(
            files.prune_below(lower).unwrap(),
            PruneOutcome {
                pruned_below: 2,
                newly_pruned: 0,
                space_freed: true
            }
        );
    }
    // Nothing was written for them.
    assert_eq!(files.writer.lock().unwrap().last.seq, seq);
    assert_eq!(files.pruned_below(), 2);
}

/// A commit after a prune that a crash interrupted falls back to the prune's head: the
/// prune holds, and the records it freed are not read.
#[test]
fn an_interrupted_commit_after_a_prune_falls_back_to_the_prune() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let files = LogFiles::open_or_create(&path).unwrap();
    commit(&files, 2 * BUNDLE + 3);
    files.prune_below(2).unwrap();
    let end = files.end();
    commit(&files, 2 * BUNDLE + 9);
    files.events.write_all_at(b"\x00\x05junk!", end).unwrap();
    std::mem::forget(files);
    let files = LogFiles::open(&path).unwrap();
    assert_eq!(files.size(), 2 * BUNDLE + 3);
    assert_eq!(files.pruned_below(), 2);
    assert!(files.bundle(0).is_err());
    commit(&files, 3 * BUNDLE);
    assert_eq!(roots(&files, 3 * BUNDLE).0, roots(&files, 3 * BUNDLE).1);
}

/// The derived files are synced by the prune: a crash after it recomputes nothing from
/// the records it freed, even when the derived files had not been synced for a while.
#[test]
fn a_prune_makes_the_derived_files_durable_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let files = LogFiles::open_or_create(&path).unwrap();
    commit(&files, 2 * BUNDLE + 1);
    assert_eq!(files.writer.lock().unwrap().last.derived_size, 0);
    files.prune_below(2).unwrap();
    let last = files.writer.lock().unwrap().last;
    assert_eq!(
        (last.derived_size, last.derived_end, last.commit_start),
        (2 * BUNDLE + 1, files.end(), files.end())
    );
    commit(&files, 2 * BUNDLE + 5);
    std::mem::forget(files);
    let files = LogFiles::open(&path).unwrap();
    assert_eq!(files.size(), 2 * BUNDLE + 5);
    assert_eq!(
        roots(&files, 2 * BUNDLE + 5).0,
        roots(&files, 2 * BUNDLE + 5).1
    );
}
