//! Tests of `index`: every answer is compared with a plain filter over the whole log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;

use super::*;
use crate::chain::event::{Action, Event};
use crate::chain::store::Store;

const ACTIONS: [Action; 3] = [Action::Access, Action::Export, Action::DataOperation];

/// Event `n` of a small, skewed population: 3 agencies, 7 auditors, 3 actions, 40
/// subjects in two families, occurred_at going back and forth.
fn event(n: u64, seed: u64) -> Event {
    let h = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed;
    Event {
        agency: format!("agency-{}", h % 3),
        auditor: format!("auditor-{}", (h >> 8) % 7),
        action: ACTIONS[((h >> 16) % 3) as usize].clone(),
        subject: format!(
            "{}/{}",
            if h >> 24 & 1 == 0 { "case" } else { "file" },
            (h >> 32) % 20
        ),
        data_sha256: [n as u8; 32],
        occurred_at_ns: 1_700_000_000_000_000_000 + ((h >> 40) % 1000) as i64 * 1_000_000_000,
        details: "{}".into(),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    store_dir: PathBuf,
    log: EventLog,
    all: Vec<StoredEvent>,
}

fn fixture(count: u64, seed: u64, batches: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir).unwrap();
    let log = EventLog::open(&store).unwrap();
    let rt = rt();
    let per = count.div_ceil(batches.max(1)).max(1);
    let mut n = 0;
    while n < count {
        let end = (n + per).min(count);
        rt.block_on(log.append((n..end).map(|i| event(i, seed)).collect()))
            .unwrap();
        n = end;
    }
    let all = (0..count)
        .map(|i| StoredEvent::from_leaf_bytes(&log.leaf(i).unwrap().unwrap()).unwrap())
        .collect();
    Fixture {
        _dir: dir,
        store_dir,
        log,
        all,
    }
}

/// Small segments, so that tests of a few hundred events write and merge several levels.
const SMALL: Tuning = Tuning {
    segment_events: 64,
    fanout: 3,
    max_level: 2,
};

/// Opens the index of `log` (with [`SMALL`] segments), waiting up to 2 s for the previous
/// handle's file lock (in one process sled releases it from a background thread after the
/// last handle drops).
fn reopen(store_dir: &Path, log: &EventLog) -> SearchIndex {
    let mut last = None;
    for _ in 0..100 {
        match SearchIndex::open_tuned(store_dir, log, SMALL) {
            Ok(ix) => return ix,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the index did not reopen: {last:?}");
}

fn no_pruned(bundle: u64) -> Result<Vec<Vec<u8>>, IndexError> {
    Err(IndexError::Archive {
        bundle,
        detail: "no archive in this test".into(),
    })
}

/// Every page of `q` in `order`, concatenated.
fn all_pages(ix: &SearchIndex, log: &EventLog, q: &Query, order: Order, limit: usize) -> Vec<u64> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let page = ix
            .search(log, q, order, limit, cursor.as_deref(), &no_pruned)
            .unwrap();
        assert!(page.hits.len() <= limit);
        for h in &page.hits {
            assert_eq!(h.index, h.event.index);
            assert_eq!(h.leaf_hash, log.stored_leaf_hash(h.index).unwrap());
            assert!(q.matches(&h.event));
        }
        out.extend(page.hits.iter().map(|h| h.index));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
    panic!("the pages never end");
}

fn expected(all: &[StoredEvent], q: &Query, order: Order) -> Vec<u64> {
    let mut v: Vec<u64> = all
        .iter()
        .filter(|e| q.matches(e))
        .map(|e| e.index)
        .collect();
    if order == Order::NewestFirst {
        v.reverse();
    }
    v
}

fn query_strategy() -> impl Strategy<Value = Query> {
    (
        proptest::option::weighted(0.4, 0..4u64),
        proptest::option::weighted(0.4, 0..8u64),
        proptest::option::weighted(0.3, 0..4usize),
        proptest::option::weighted(0.2, 0..21u64),
        proptest::option::weighted(
            0.2,
            prop_oneof![Just("case"), Just("file/1"), Just("x"), Just("")],
        ),
        proptest::option::weighted(0.3, 0..1000i64),
        proptest::option::weighted(0.3, 0..1000i64),
    )
        .prop_map(|(ag, au, ac, su, pre, from, to)| Query {
            agency: ag.map(|a| format!("agency-{a}")),
            auditor: au.map(|a| format!("auditor-{a}")),
            action: ac.map(|a| ["access", "export", "data_operation", "custom:none"][a].to_owned()),
            subject: su.map(|s| format!("case/{s}")),
            subject_prefix: pre.map(str::to_owned),
            occurred_from_ns: from.map(|f| 1_700_000_000_000_000_000 + f * 1_000_000_000),
            occurred_to_ns: to.map(|t| 1_700_000_000_000_000_000 + t * 1_000_000_000),
            ..Query::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any filters, either order, any page size, with part of the log not indexed yet:
    /// the pages together are exactly the plain filter's answer.
    #[test]
    fn pages_are_exactly_the_matching_events(
        seed in any::<u64>(),
        count in 1u64..1_400,
        batches in 1u64..9,
        unindexed in 0u64..600,
        limit in 1usize..40,
        queries in proptest::collection::vec(query_strategy(), 6),
    ) {
        let f = fixture(count, seed, batches);
        let ix = reopen(&f.store_dir, &f.log);
        // Index all but the last `unindexed` events, in uneven batches (writing and merging
        // segments on the way).
        let mut indexer = Indexer::new(Arc::clone(&ix.shared));
        let target = count.saturating_sub(unindexed);
        let mut step = 1 + seed % 300;
        while ix.indexed() < target {
            indexer.index_next(&f.log, (ix.indexed() + step).min(target)).unwrap();
            step = step * 3 % 517 + 1;
        }
        for q in &queries {
            for order in [Order::NewestFirst, Order::OldestFirst] {
                prop_assert_eq!(all_pages(&ix, &f.log, q, order, limit), expected(&f.all, q, order));
            }
        }
        // Received-time filters (all events of a batch share one time).
        let t = f.all[f.all.len() / 2].received_at_ms;
        let q = Query { received_from_ms: Some(t), received_to_ms: Some(t + 1), ..Query::default() };
        prop_assert_eq!(all_pages(&ix, &f.log, &q, Order::NewestFirst, limit), expected(&f.all, &q, Order::NewestFirst));
    }
}

#[test]
fn the_index_survives_a_reopen_and_is_rebuilt_when_it_does_not_match_the_log() {
    let f = fixture(700, 7, 3);
    let q = Query {
        auditor: Some("auditor-3".into()),
        ..Query::default()
    };
    {
        let ix = reopen(&f.store_dir, &f.log);
        assert_eq!(ix.catch_up(&f.log, &|_, _| {}).unwrap(), 700);
    }
    let ix = reopen(&f.store_dir, &f.log);
    assert_eq!(ix.indexed(), 700, "kept across a reopen");
    assert_eq!(
        all_pages(&ix, &f.log, &q, Order::NewestFirst, 50),
        expected(&f.all, &q, Order::NewestFirst)
    );
    drop(ix);

    // An index of another log (longer than this one) is dropped and built again.
    let other = fixture(300, 7, 1);
    std::fs::remove_dir_all(other.store_dir.join(INDEX_DIR)).ok();
    copy_dir(
        &f.store_dir.join(INDEX_DIR),
        &other.store_dir.join(INDEX_DIR),
    );
    let ix = reopen(&other.store_dir, &other.log);
    assert_eq!(ix.indexed(), 0);
    ix.catch_up(&other.log, &|_, _| {}).unwrap();
    assert_eq!(
        all_pages(&ix, &other.log, &q, Order::OldestFirst, 7),
        expected(&other.all, &q, Order::OldestFirst)
    );
    drop(ix);

    // The same length but other events: caught by the last event's hash.
    let third = fixture(700, 8, 2);
    copy_dir(
        &f.store_dir.join(INDEX_DIR),
        &third.store_dir.join(INDEX_DIR),
    );
    let ix = reopen(&third.store_dir, &third.log);
    assert_eq!(ix.indexed(), 0);

    // A damaged database is removed and made anew.
    drop(ix);
    let dir = third.store_dir.join(INDEX_DIR);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("conf"), b"\xff\xfe not sled").unwrap();
    std::fs::write(dir.join("db"), b"garbage").unwrap();
    let ix = reopen(&third.store_dir, &third.log);
    ix.catch_up(&third.log, &|_, _| {}).unwrap();
    assert_eq!(
        all_pages(&ix, &third.log, &q, Order::NewestFirst, 100),
        expected(&third.all, &q, Order::NewestFirst)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn the_follower_indexes_each_commit_and_stops_with_the_index() {
    let f = fixture(10, 1, 1);
    let ix = reopen(&f.store_dir, &f.log);
    ix.follow(f.log.clone()).unwrap();
    let rt = rt();
    for round in 0..20u64 {
        rt.block_on(f.log.append(vec![event(1000 + round, 1)]))
            .unwrap();
        let want = f.log.size();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while ix.indexed() < want {
            assert!(std::time::Instant::now() < deadline, "not indexed");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    assert_eq!(ix.indexed(), 30);
}

#[test]
fn a_cursor_is_bound_to_its_filters_and_order_and_junk_is_refused() {
    let f = fixture(300, 3, 1);
    let ix = reopen(&f.store_dir, &f.log);
    ix.catch_up(&f.log, &|_, _| {}).unwrap();
    let q = Query {
        agency: Some("agency-1".into()),
        ..Query::default()
    };
    let page = ix
        .search(&f.log, &q, Order::NewestFirst, 5, None, &no_pruned)
        .unwrap();
    let c = page.next_cursor.unwrap();
    let other = Query {
        agency: Some("agency-2".into()),
        ..Query::default()
    };
    for (q, order, cursor) in [
        (&other, Order::NewestFirst, c.as_str()),
        (&q, Order::OldestFirst, c.as_str()),
        (&q, Order::NewestFirst, "junk!"),
        (&q, Order::NewestFirst, ""),
        (&q, Order::NewestFirst, "AQAAAAAAAAAAAAAAAAAAAAAA"),
    ] {
        let e = ix
            .search(&f.log, q, order, 5, Some(cursor), &no_pruned)
            .unwrap_err();
        assert!(matches!(e, IndexError::BadCursor(_)), "{e}");
    }
}

#[test]
fn a_search_far_behind_the_log_says_so_and_a_sparse_one_ends_pages_at_its_budget() {
    let f = fixture(300, 3, 1);
    let ix = reopen(&f.store_dir, &f.log);
    // Not indexed at all: 300 events are few enough to read.
    let q = Query::default();
    let page = ix
        .search(&f.log, &q, Order::NewestFirst, 10, None, &no_pruned)
        .unwrap();
    assert_eq!(page.hits.len(), 10);
    assert_eq!(page.hits[0].index, 299);
    // A posting block is plain LEB128 differences, the first from the segment's start.
    let mut b = Vec::new();
    for d in [0u64, 1, 127, 128, 300_000] {
        push_varint(&mut b, d);
    }
    assert_eq!(
        segment::decode_block(10, &b, false).unwrap(),
        vec![(10, 0), (11, 0), (138, 0), (266, 0), (300_266, 0)]
    );
    // A subject bucket's entries: difference, then the subject id.
    assert_eq!(
        segment::decode_block(10, &[0x00, 0x01, 0x7f, 0x00], true).unwrap(),
        vec![(10, 1), (137, 0)]
    );
    assert!(segment::decode_block(0, &[0x80], false).is_err());
    assert!(segment::decode_block(0, &[5], true).is_err());
}

#[test]
fn one_record_is_read_in_place_as_the_log_stores_it() {
    let mut bytes = Vec::new();
    for leaf in [&b"a"[..], b"", b"xyz"] {
        bytes.extend_from_slice(&(leaf.len() as u16).to_be_bytes());
        bytes.extend_from_slice(leaf);
    }
    let all = crate::chain::logfiles::split_records(&bytes).unwrap();
    for (at, leaf) in all.iter().enumerate() {
        assert_eq!(nth_record(&bytes, at), Some(*leaf));
    }
    assert_eq!(nth_record(&bytes, 3), None);
    assert_eq!(nth_record(&bytes[..bytes.len() - 1], 2), None, "cut off");
}

#[test]
fn facts_cut_short_are_found_at_open_and_the_index_is_built_again() {
    let f = fixture(600, 5, 2);
    let q = Query {
        agency: Some("agency-2".into()),
        ..Query::default()
    };
    {
        let ix = reopen(&f.store_dir, &f.log);
        ix.catch_up(&f.log, &|_, _| {}).unwrap();
    }
    let facts = std::fs::OpenOptions::new()
        .write(true)
        .open(f.store_dir.join(FACTS_FILE))
        .unwrap();
    facts.set_len(100 * FACT as u64).unwrap();
    drop(facts);
    let ix = reopen(&f.store_dir, &f.log);
    assert_eq!(ix.indexed(), 0, "facts for 100 of 600 events: built again");
    ix.catch_up(&f.log, &|_, _| {}).unwrap();
    assert_eq!(
        all_pages(&ix, &f.log, &q, Order::OldestFirst, 33),
        expected(&f.all, &q, Order::OldestFirst)
    );
}

#[test]
fn an_index_held_open_is_refused_never_removed() {
    let f = fixture(300, 9, 1);
    let ix = reopen(&f.store_dir, &f.log);
    ix.catch_up(&f.log, &|_, _| {}).unwrap();
    let e = SearchIndex::open(&f.store_dir, &f.log).unwrap_err();
    assert!(is_locked(&e), "{e}");
    // The first handle's index is whole.
    assert_eq!(ix.indexed(), 300);
    assert_eq!(
        all_pages(&ix, &f.log, &Query::default(), Order::NewestFirst, 100).len(),
        300
    );
}

/// The segment levels of the index now.
fn levels(ix: &SearchIndex) -> Vec<u64> {
    ix.shared.segments().iter().map(|s| s.level).collect()
}

#[test]
fn segments_are_written_merged_and_kept_across_a_reopen() {
    let f = fixture(1_000, 11, 4);
    let q = Query {
        auditor: Some("auditor-5".into()),
        ..Query::default()
    };
    {
        let ix = reopen(&f.store_dir, &f.log);
        ix.catch_up(&f.log, &|_, _| {}).unwrap();
        // 15 segments of 64 events: the first 9 merged into one of level 2 (through 3 of
        // level 1), the next 6 into two of level 1; the last 40 events in none yet.
        assert_eq!(levels(&ix), vec![2, 1, 1]);
        assert_eq!(ix.shared.segments().last().unwrap().hi, 960);
        let names: Vec<_> = std::fs::read_dir(f.store_dir.join(SEGMENTS_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 3, "merged inputs are removed: {names:?}");
    }
    // A file left by a crash (a merge not recorded) is removed at open.
    let stray = f
        .store_dir
        .join(SEGMENTS_DIR)
        .join(segment::file_name(0, 192, 1));
    std::fs::write(&stray, b"left over").unwrap();
    let ix = reopen(&f.store_dir, &f.log);
    assert!(!stray.exists());
    assert_eq!(ix.indexed(), 1_000);
    assert_eq!(levels(&ix), vec![2, 1, 1]);
    for order in [Order::NewestFirst, Order::OldestFirst] {
        assert_eq!(
            all_pages(&ix, &f.log, &q, order, 9),
            expected(&f.all, &q, order)
        );
    }
    drop(ix);
    // A crash after the events of the last segment were indexed, before it was recorded:
    // its file is unlisted (removed at open), the events after the others are searched
    // through their facts, and the segment is written again when indexing goes on.
    {
        let ix = reopen(&f.store_dir, &f.log);
        let mut m = ix
            .shared
            .tree
            .get(meta_key("segments"))
            .unwrap()
            .unwrap()
            .to_vec();
        m.truncate(m.len() - 24);
        ix.shared.tree.insert(meta_key("segments"), m).unwrap();
        ix.shared.db.flush().unwrap();
    }
    let ix = reopen(&f.store_dir, &f.log);
    assert_eq!(levels(&ix), vec![2, 1]);
    assert_eq!(
        std::fs::read_dir(f.store_dir.join(SEGMENTS_DIR))
            .unwrap()
            .count(),
        2
    );
    assert_eq!(
        all_pages(&ix, &f.log, &q, Order::NewestFirst, 7),
        expected(&f.all, &q, Order::NewestFirst)
    );
    ix.catch_up(&f.log, &|_, _| {}).unwrap();
    assert_eq!(levels(&ix), vec![2, 1, 1], "written again");
    drop(ix);
    // A segment the manifest names that is damaged: it and those after it are written
    // again from the facts.
    let seg = std::fs::read_dir(f.store_dir.join(SEGMENTS_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-2.seg"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 40] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    let ix = reopen(&f.store_dir, &f.log);
    assert_eq!(ix.indexed(), 1_000, "the facts are kept");
    assert!(levels(&ix).is_empty(), "the first segment is damaged");
    assert_eq!(
        all_pages(&ix, &f.log, &q, Order::OldestFirst, 100),
        expected(&f.all, &q, Order::OldestFirst),
        "answered through the facts meanwhile"
    );
    ix.catch_up(&f.log, &|_, _| {}).unwrap();
    assert_eq!(levels(&ix), vec![2, 1, 1], "written again");
    assert_eq!(
        all_pages(&ix, &f.log, &q, Order::NewestFirst, 100),
        expected(&f.all, &q, Order::NewestFirst)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Lists of any length (several blocks) written into segments and merged read back
    /// the same, within any range, in either order.
    #[test]
    fn segment_lists_read_back_within_any_range(
        lists in proptest::collection::vec(
            proptest::collection::btree_set(0u64..3_000, 0..400), 1..5),
        from in 0u64..3_000,
        len in 0u64..3_000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        // Three segments of 1,000 events, then one merge of them.
        let mut segs = Vec::new();
        for k in 0..3u64 {
            let (lo, hi) = (k * 1_000, k * 1_000 + 1_000);
            let mut w = segment::Writer::create(dir.path(), lo, hi, 0).unwrap();
            for (n, l) in lists.iter().enumerate() {
                let mut it = l.iter().filter(|&&i| i >= lo && i < hi).map(|&i| (i, i as u32 % 7));
                w.list((3, n as u32), true, &mut || Ok(it.next())).unwrap();
            }
            segs.push(Arc::new(w.finish(true).unwrap()));
        }
        let merged = vec![Arc::new(segment::merge(dir.path(), &segs).unwrap())];
        let range = from..(from + len).min(3_000);
        for set in [&segs, &merged] {
            for (n, l) in lists.iter().enumerate() {
                // Runs read a block at a time, and whole.
                for (order, read_whole) in [
                    (Order::OldestFirst, 0),
                    (Order::NewestFirst, 0),
                    (Order::OldestFirst, u32::MAX),
                    (Order::NewestFirst, u32::MAX),
                ] {
                    let mut c = ListCursor::reading(set, (3, n as u32), range.clone(), order, read_whole);
                    let mut got = Vec::new();
                    while let Some(e) = c.next().unwrap() {
                        got.push(e);
                    }
                    let mut want: Vec<(u64, u32)> =
                        l.range(range.clone()).map(|&i| (i, i as u32 % 7)).collect();
                    if order == Order::NewestFirst {
                        want.reverse();
                    }
                    prop_assert_eq!(got, want);
                }
            }
            // A list no segment has.
            let mut c = ListCursor::new(set, (1, 99), 0..3_000, Order::OldestFirst);
            prop_assert_eq!(c.next().unwrap(), None);
        }
    }
}

#[test]
fn a_segment_refuses_entries_out_of_order_and_loads_only_as_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = segment::Writer::create(dir.path(), 100, 200, 0).unwrap();
    let mut it = [(150u64, 0u32), (120, 0)].into_iter();
    assert!(w.list((0, 1), false, &mut || Ok(it.next())).is_err());
    drop(w);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "an unfinished segment leaves no file"
    );
    let mut w = segment::Writer::create(dir.path(), 100, 200, 0).unwrap();
    let mut it = [(250u64, 0u32)].into_iter();
    assert!(
        w.list((0, 1), false, &mut || Ok(it.next())).is_err(),
        "past hi"
    );
    let mut w = segment::Writer::create(dir.path(), 100, 200, 0).unwrap();
    let mut it = [(150u64, 0u32)].into_iter();
    w.list((0, 2), false, &mut || Ok(it.next())).unwrap();
    let mut it = [(160u64, 0u32)].into_iter();
    assert!(
        w.list((0, 1), false, &mut || Ok(it.next())).is_err(),
        "lists out of order"
    );
    let s = w.finish(true).unwrap();
    assert!(Segment::load(s.path(), 100, 200, 0).is_ok());
    assert!(
        Segment::load(s.path(), 100, 200, 1).is_err(),
        "another level"
    );
    assert!(Segment::load(s.path(), 0, 200, 0).is_err(), "another range");
    // A header naming a directory bigger than any file is refused, not trusted.
    let mut bytes = std::fs::read(s.path()).unwrap();
    for entries in [u64::MAX / 24, u64::MAX / 48, 1 << 40] {
        bytes[32..40].copy_from_slice(&entries.to_be_bytes());
        std::fs::write(s.path(), &bytes).unwrap();
        assert!(Segment::load(s.path(), 100, 200, 0).is_err(), "{entries}");
    }
}
