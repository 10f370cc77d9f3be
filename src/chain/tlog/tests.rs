//! Tests of `tlog`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use proptest::prelude::*;
use std::sync::OnceLock;

const LOG_SIZE: u64 = 1000;

/// A log of `LOG_SIZE` records: leaf hashes and the stored-hash array built record by
/// record with `stored_hashes_for_record`.
struct TestLog {
    leaves: Vec<Hash>,
    stored: Vec<Hash>,
}

fn build_log(size: u64) -> TestLog {
    let mut leaves = Vec::new();
    let mut stored: Vec<Hash> = Vec::new();
    for n in 0..size {
        let leaf = leaf_hash(format!("record {n}").as_bytes());
        leaves.push(leaf);
        let add = stored_hashes_for_record(n, leaf, &stored).unwrap();
        stored.extend(add);
        assert_eq!(stored.len() as u64, stored_hash_count(n + 1));
    }
    TestLog { leaves, stored }
}

fn log() -> &'static TestLog {
    static LOG: OnceLock<TestLog> = OnceLock::new();
    LOG.get_or_init(|| build_log(LOG_SIZE))
}

/// RFC 6962 §2.1 MTH, computed directly from the leaf hashes by its recursive definition.
fn reference_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => EMPTY_TREE_HASH,
        1 => leaves[0],
        n => {
            let k = largest_power_of_two_below(n as u64) as usize;
            node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
        }
    }
}

/// The independent implementation's view of our stored hashes.
struct TheirReader<'a>(&'a [Hash]);

impl tlog_tiles::HashReader for TheirReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.0
                    .get(i as usize)
                    .map(|h| tlog_tiles::Hash(*h))
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

fn theirs(h: &Hash) -> tlog_tiles::Hash {
    tlog_tiles::Hash(*h)
}

fn their_proof(p: &[Hash]) -> Vec<tlog_tiles::Hash> {
    p.iter().map(theirs).collect()
}

/// Counts `read_hashes` calls and hashes read.
struct CountingReader<'a> {
    inner: &'a [Hash],
    calls: std::cell::Cell<usize>,
    read: std::cell::Cell<usize>,
}

impl HashReader for CountingReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        self.calls.set(self.calls.get() + 1);
        self.read.set(self.read.get() + indexes.len());
        self.inner.read_hashes(indexes)
    }
}

#[test]
fn hashing_primitives() {
    assert_eq!(EMPTY_TREE_HASH, <[u8; 32]>::from(Sha256::digest(b"")));
    assert_eq!(leaf_hash(b"abc"), tlog_tiles::record_hash(b"abc").0);
    let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
    assert_eq!(
        node_hash(&a, &b),
        tlog_tiles::node_hash(theirs(&a), theirs(&b)).0
    );
    assert_eq!(EMPTY_TREE_HASH, tlog_tiles::EMPTY_HASH.0);
}

#[test]
fn stored_hash_layout_matches_go_tlog() {
    for level in 0..20u8 {
        for n in 0..300u64 {
            let i = stored_hash_index(level, n);
            assert_eq!(i, tlog_tiles::stored_hash_index(level, n), "({level}, {n})");
            assert_eq!(split_stored_hash_index(i), (level, n));
        }
    }
    for records in 0..5000u64 {
        assert_eq!(
            stored_hash_count(records),
            tlog_tiles::stored_hash_count(records)
        );
    }
    // Large coordinates stay exact up to MAX_TREE_SIZE and saturate beyond it.
    let last = MAX_TREE_SIZE - 1;
    assert_eq!(
        split_stored_hash_index(stored_hash_index(0, last)),
        (0, last)
    );
    assert_eq!(split_stored_hash_index(stored_hash_index(63, 0)), (63, 0));
    assert_eq!(stored_hash_index(64, 0), u64::MAX);
    assert_eq!(stored_hash_index(1, u64::MAX), u64::MAX);
    assert_eq!(stored_hash_count(u64::MAX), u64::MAX);
}

#[test]
fn stored_hashes_match_the_independent_implementation() {
    let log = log();
    let mut theirs_stored: Vec<Hash> = Vec::new();
    for (n, leaf) in log.leaves.iter().enumerate() {
        let add = tlog_tiles::stored_hashes_for_record_hash(
            n as u64,
            theirs(leaf),
            &TheirReader(&theirs_stored),
        )
        .unwrap();
        theirs_stored.extend(add.iter().map(|h| h.0));
    }
    assert_eq!(theirs_stored, log.stored);
}

#[test]
fn tree_hash_matches_rfc6962_definition_and_tlog_tiles() {
    let log = log();
    assert_eq!(tree_hash(0, &log.stored).unwrap(), EMPTY_TREE_HASH);
    for size in 1..=LOG_SIZE {
        let root = tree_hash(size, &log.stored).unwrap();
        assert_eq!(
            root,
            reference_root(&log.leaves[..size as usize]),
            "size {size}"
        );
        let their = tlog_tiles::tree_hash(size, &TheirReader(&log.stored)).unwrap();
        assert_eq!(root, their.0, "size {size}");
    }
    assert!(matches!(
        tree_hash(LOG_SIZE + 1, &log.stored),
        Err(TlogError::HashNotStored(_))
    ));
    assert!(matches!(
        tree_hash(MAX_TREE_SIZE + 1, &log.stored),
        Err(TlogError::TreeTooLarge(_))
    ));
}

#[test]
fn every_inclusion_proof_verifies_here_and_in_tlog_tiles() {
    let log = log();
    for size in 1..=LOG_SIZE {
        let root = tree_hash(size, &log.stored).unwrap();
        for index in 0..size {
            let leaf = &log.leaves[index as usize];
            let proof = prove_inclusion(size, index, &log.stored).unwrap();
            verify_inclusion(&proof, size, index, &root, leaf).unwrap();
            // The RFC's audit path is unique: tlog_tiles must build the same one and
            // accept ours. Every size is checked, at its first and last index and at
            // two more spread over the tree (all pairs take minutes in a debug build).
            let sampled = index == 0
                || index == size - 1
                || index == size / 2
                || index == (size * 7 + 3) % size;
            if sampled {
                tlog_tiles::check_record(
                    &their_proof(&proof),
                    size,
                    theirs(&root),
                    index,
                    theirs(leaf),
                )
                .unwrap();
                let their =
                    tlog_tiles::prove_record(size, index, &TheirReader(&log.stored)).unwrap();
                assert_eq!(their_proof(&proof), their, "size {size}, index {index}");
            }
        }
    }
}

#[test]
fn proofs_read_few_hashes_in_one_call() {
    let log = log();
    let r = CountingReader {
        inner: &log.stored,
        calls: 0.into(),
        read: 0.into(),
    };
    for (size, index) in [(1000, 0), (1000, 999), (999, 500), (777, 776)] {
        r.calls.set(0);
        r.read.set(0);
        let proof = prove_inclusion(size, index, &r).unwrap();
        assert_eq!(r.calls.get(), 1);
        assert!(r.read.get() < 2 * 64 && r.read.get() >= proof.len());
        assert!(r.read.get() <= 20, "read {} hashes", r.read.get());
    }
    r.calls.set(0);
    prove_consistency(1000, 333, &r).unwrap();
    tree_hash(1000, &r).unwrap();
    assert_eq!(r.calls.get(), 2);
}

fn check_consistency_pair(log: &TestLog, old: u64, new: u64, with_theirs: bool) {
    let old_root = tree_hash(old, &log.stored).unwrap();
    let new_root = tree_hash(new, &log.stored).unwrap();
    let proof = prove_consistency(new, old, &log.stored).unwrap();
    verify_consistency(&proof, new, old, &new_root, &old_root).unwrap();
    if with_theirs && old > 0 {
        tlog_tiles::check_tree(
            &their_proof(&proof),
            new,
            theirs(&new_root),
            old,
            theirs(&old_root),
        )
        .unwrap();
        let their = tlog_tiles::prove_tree(new, old, &TheirReader(&log.stored)).unwrap();
        assert_eq!(their_proof(&proof), their, "{old} -> {new}");
    }
    // The roots the proof leads to, where it carries the old tree.
    let roots = consistency_proof_roots(&proof, new, old);
    if old > 0 && old < new && !old.is_power_of_two() {
        assert_eq!(roots.unwrap(), (old_root, new_root), "{old} -> {new}");
    } else {
        assert!(roots.is_err(), "{old} -> {new}");
    }
    // Any altered hash, a dropped or an added hash is refused.
    for i in 0..proof.len() {
        let mut bad = proof.clone();
        bad[i][i % 32] ^= 0x40;
        assert!(verify_consistency(&bad, new, old, &new_root, &old_root).is_err());
    }
    if !proof.is_empty() {
        let short = &proof[..proof.len() - 1];
        assert!(verify_consistency(short, new, old, &new_root, &old_root).is_err());
    }
    let mut long = proof.clone();
    long.push(new_root);
    assert!(verify_consistency(&long, new, old, &new_root, &old_root).is_err());
    if old != new && old > 0 {
        // Wrong roots and wrong sizes. (Every tree is consistent with the empty tree, so
        // only the empty-tree root matters when old is 0.)
        assert!(verify_consistency(&proof, new, old, &old_root, &old_root).is_err());
        assert!(verify_consistency(&proof, new, old, &new_root, &new_root).is_err());
        {
            let other = tree_hash(old - 1, &log.stored).unwrap();
            assert!(verify_consistency(&proof, new, old, &new_root, &other).is_err());
            assert!(verify_consistency(&proof, new, old - 1, &new_root, &other).is_err());
        }
        if new < LOG_SIZE {
            let bigger = tree_hash(new + 1, &log.stored).unwrap();
            assert!(verify_consistency(&proof, new + 1, old, &bigger, &old_root).is_err());
        }
    }
}

#[test]
fn consistency_proofs_for_all_small_pairs() {
    let log = log();
    for new in 0..=80 {
        for old in 0..=new {
            check_consistency_pair(log, old, new, true);
        }
    }
}

/// A proof made by another tree (a log that forked after 40 records)
/// leads to that tree's roots: with the new root right, the old root it gives is the
/// other tree's, which tells the two histories apart.
#[test]
fn proof_roots_show_which_tree_a_proof_comes_from() {
    let ours = log();
    let mut leaves = Vec::new();
    let mut theirs: Vec<Hash> = Vec::new();
    for n in 0..100u64 {
        // The same first 40 records, then others.
        let data = if n < 40 {
            format!("record {n}")
        } else {
            format!("forked {n}")
        };
        let leaf = leaf_hash(data.as_bytes());
        leaves.push(leaf);
        theirs.extend(stored_hashes_for_record(n, leaf, &theirs).unwrap());
    }
    for (old, new) in [(45u64, 90u64), (41, 100), (60, 61), (99, 100)] {
        let proof = prove_consistency(new, old, &theirs).unwrap();
        let (fr, sr) = consistency_proof_roots(&proof, new, old).unwrap();
        assert_eq!(sr, tree_hash(new, &theirs).unwrap());
        assert_eq!(fr, tree_hash(old, &theirs).unwrap());
        let our_old = tree_hash(old, &ours.stored).unwrap();
        assert_ne!(fr, our_old);
        assert!(verify_consistency(&proof, new, old, &sr, &our_old).is_err());
    }
    // Before the fork the histories agree.
    let proof = prove_consistency(90, 39, &theirs).unwrap();
    let (fr, _) = consistency_proof_roots(&proof, 90, 39).unwrap();
    assert_eq!(fr, tree_hash(39, &ours.stored).unwrap());
    // Sizes whose proofs do not carry the old tree.
    for (old, new) in [(0u64, 10u64), (32, 90), (10, 10), (11, 10)] {
        let proof = prove_consistency(new.max(old), old.min(new), &theirs).unwrap();
        assert!(
            consistency_proof_roots(&proof, new, old).is_err(),
            "{old} {new}"
        );
    }
}

proptest! {
    #[test]
    fn consistency_proofs_for_random_pairs(a in 0..=LOG_SIZE, b in 0..=LOG_SIZE) {
        let (old, new) = if a <= b { (a, b) } else { (b, a) };
        check_consistency_pair(log(), old, new, true);
    }

    #[test]
    fn wrong_inclusion_proofs_are_refused(size in 1..=LOG_SIZE, pick in any::<u64>(), flip in any::<u8>()) {
        let log = log();
        let index = pick % size;
        let root = tree_hash(size, &log.stored).unwrap();
        let leaf = log.leaves[index as usize];
        let proof = prove_inclusion(size, index, &log.stored).unwrap();
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i][usize::from(flip) % 32] ^= 1 << (flip % 8);
            prop_assert!(verify_inclusion(&bad, size, index, &root, &leaf).is_err());
        }
        let mut bad_root = root;
        bad_root[0] ^= 1;
        prop_assert!(verify_inclusion(&proof, size, index, &bad_root, &leaf).is_err());
        let mut bad_leaf = leaf;
        bad_leaf[31] ^= 0x80;
        prop_assert!(verify_inclusion(&proof, size, index, &root, &bad_leaf).is_err());
        if !proof.is_empty() {
            prop_assert!(verify_inclusion(&proof[1..], size, index, &root, &leaf).is_err());
            prop_assert!(
                verify_inclusion(&proof[..proof.len() - 1], size, index, &root, &leaf).is_err()
            );
        }
        let mut long = proof.clone();
        long.push(root);
        prop_assert!(verify_inclusion(&long, size, index, &root, &leaf).is_err());
        // The same proof for another index or another size.
        if size > 1 {
            let other = (index + 1) % size;
            prop_assert!(verify_inclusion(&proof, size, other, &root, &leaf).is_err());
        }
        prop_assert!(verify_inclusion(&proof, size, size, &root, &leaf).is_err());
        // A proof binds the leaf to the root through the shape of the path: sizes that give
        // the index a path of another length are refused. (Sizes with the same path shape
        // are indistinguishable here; the signed checkpoint binds the size to the root.)
        for other in [size / 2, size - 1, size + 1, 2 * size, size + 64] {
            if other > index && other <= LOG_SIZE && other != size {
                let other_len = prove_inclusion(other, index, &log.stored).unwrap().len();
                if other_len != proof.len() {
                    prop_assert!(verify_inclusion(&proof, other, index, &root, &leaf).is_err());
                }
            }
        }
        if size > 1 && index < size - 1 {
            // A smaller tree's root with this proof.
            let smaller = tree_hash(size - 1, &log.stored).unwrap();
            prop_assert!(verify_inclusion(&proof, size - 1, index, &smaller, &leaf).is_err());
        }
    }
}

#[test]
fn argument_errors() {
    let log = log();
    assert!(matches!(
        prove_inclusion(10, 10, &log.stored),
        Err(TlogError::IndexOutOfRange {
            index: 10,
            size: 10
        })
    ));
    assert!(matches!(
        prove_consistency(10, 11, &log.stored),
        Err(TlogError::SizeOrder { old: 11, new: 10 })
    ));
    assert!(matches!(
        verify_consistency(&[], 10, 11, &EMPTY_TREE_HASH, &EMPTY_TREE_HASH),
        Err(TlogError::SizeOrder { .. })
    ));
    assert!(prove_consistency(10, 0, &log.stored).unwrap().is_empty());
    assert!(prove_consistency(10, 10, &log.stored).unwrap().is_empty());
    let root = tree_hash(10, &log.stored).unwrap();
    verify_consistency(&[], 10, 0, &root, &EMPTY_TREE_HASH).unwrap();
    assert!(verify_consistency(&[], 10, 0, &root, &root).is_err());
    assert!(verify_consistency(&[root], 10, 0, &root, &EMPTY_TREE_HASH).is_err());
    assert!(verify_consistency(&[], 10, 5, &root, &root).is_err());
    // A reader that answers short is an error, not a panic.
    struct Short;
    impl HashReader for Short {
        fn read_hashes(&self, _: &[u64]) -> Result<Vec<Hash>, TlogError> {
            Ok(vec![EMPTY_TREE_HASH])
        }
    }
    assert!(matches!(
        prove_inclusion(1000, 3, &Short),
        Err(TlogError::ReaderMismatch { .. })
    ));
    assert!(stored_hashes_for_record(MAX_TREE_SIZE, EMPTY_TREE_HASH, &Short).is_err());
}

#[test]
fn tile_paths_follow_the_spec() {
    let t = |l, n, w| Tile::new(l, n, w).unwrap();
    assert_eq!(tile_path(&t(0, 1234, 256)), "tile/0/x001/234");
    assert_eq!(tile_path(&t(0, 1234, 17)), "tile/0/x001/234.p/17");
    assert_eq!(tile_path(&t(3, 1_234_067, 256)), "tile/3/x001/x234/067");
    assert_eq!(tile_path(&t(1, 0, 1)), "tile/1/000.p/1");
    assert_eq!(entries_path(&t(0, 7, 256)), "tile/entries/007");
    assert_eq!(
        entries_path(&t(0, 1000, 255)),
        "tile/entries/x001/000.p/255"
    );
    for (path, kind, tile) in [
        ("tile/0/x001/234", TileKind::Hashes, t(0, 1234, 256)),
        ("tile/2/x001/234.p/17", TileKind::Hashes, t(2, 1234, 17)),
        (
            "tile/entries/x001/x234/067.p/1",
            TileKind::Entries,
            t(0, 1_234_067, 1),
        ),
        ("tile/0/000", TileKind::Hashes, t(0, 0, 256)),
    ] {
        assert_eq!(parse_tile_path(path).unwrap(), (kind, tile), "{path}");
    }
    for bad in [
        "",
        "tile",
        "tile/0",
        "tile/0/",
        "/tile/0/000",
        "tile/00/000",
        "tile/-1/000",
        "tile/64/000",
        "tile/0/1",
        "tile/0/0001",
        "tile/0/x000/001",
        "tile/0/001/234",
        "tile/0/x001/x234",
        "tile/0/x001/234.p/0",
        "tile/0/x001/234.p/256",
        "tile/0/x001/234.p/017",
        "tile/0/x001/234.p/",
        "tile/0/x001/234.p",
        "tile/0/x001/234/",
        "tile/0/+01",
        "tile/entries/x001/234.p/1/2",
        "tile/data/000",
        "tile/8/0/000",
        "tile/0/x018/x446/x744/x073/x709/x551/616",
        "tile/7/001",
        "tile/0/x999/x999/x999/x999/x999/x999/x999/999",
        "tile/entries/０００",
    ] {
        assert!(parse_tile_path(bad).is_err(), "{bad:?} should be refused");
    }
    assert!(Tile::new(0, 0, 0).is_err());
    assert!(Tile::new(0, 0, 257).is_err());
    assert!(Tile::new(64, 0, 1).is_err());
    assert!(Tile::new(7, 0, 129).is_err());
    Tile::new(7, 0, 128).unwrap();
}

proptest! {
    #[test]
    fn tile_paths_round_trip_and_match_tlog_tiles(level in 0u8..7, index in 0u64..(1 << 40), width in 1u16..=256) {
        let Ok(tile) = Tile::new(level, index, width) else { return Ok(()); };
        let path = tile_path(&tile);
        prop_assert_eq!(parse_tile_path(&path).unwrap(), (TileKind::Hashes, tile));
        let their = tlog_tiles::Tile::new(8, level, index, u32::from(width), false);
        prop_assert_eq!(path.clone(), their.path().replacen("tile/8/", "tile/", 1));
        prop_assert_eq!(tlog_tiles::Tile::from_path(&their.path()).unwrap(), their);
        if level == 0 {
            let entries = entries_path(&tile);
            prop_assert_eq!(parse_tile_path(&entries).unwrap(), (TileKind::Entries, tile));
            let mut data = their;
            data.set_is_data();
            prop_assert_eq!(entries, data.path().replacen("tile/8/data/", "tile/entries/", 1));
        }
    }

    #[test]
    fn parse_tile_path_never_panics(s in "tile/(entries|[0-9]{1,2})/[x0-9/.p]{0,40}") {
        if let Ok((kind, tile)) = parse_tile_path(&s) {
            let again = match kind {
                TileKind::Hashes => tile_path(&tile),
                TileKind::Entries => entries_path(&tile),
            };
            prop_assert_eq!(again, s);
        }
    }
}

/// Serves our tile data to tlog_tiles' tile-based hash reader.
struct OurTiles<'a>(&'a [Hash]);

impl tlog_tiles::TileReader for OurTiles<'_> {
    fn height(&self) -> u8 {
        TILE_HEIGHT
    }

    fn read_tiles(&self, tiles: &[tlog_tiles::Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        Ok(tiles
            .iter()
            .map(|t| {
                let ours = Tile::new(t.level(), t.level_index(), t.width() as u16).unwrap();
                read_tile_data(&ours, &self.0).unwrap()
            })
            .collect())
    }

    fn save_tiles(&self, _: &[tlog_tiles::Tile], _: &[Vec<u8>]) {}
}

#[test]
fn tiles_serve_the_tree() {
    let log = log();
    // A client that only has our tiles and a root computes the same proofs.
    for size in [1, 2, 255, 256, 257, 511, 512, 513, 700, 999, 1000] {
        let root = tree_hash(size, &log.stored).unwrap();
        let tiles = OurTiles(&log.stored);
        let reader = tlog_tiles::TileHashReader::new(size, theirs(&root), &tiles);
        for index in [0, size / 3, size / 2, size - 1] {
            let from_tiles = tlog_tiles::prove_record(size, index, &reader).unwrap();
            let ours = prove_inclusion(size, index, &log.stored).unwrap();
            assert_eq!(from_tiles, their_proof(&ours), "size {size}, index {index}");
        }
        if size > 1 {
            let from_tiles = tlog_tiles::prove_tree(size, size / 2, &reader).unwrap();
            let ours = prove_consistency(size, size / 2, &log.stored).unwrap();
            assert_eq!(from_tiles, their_proof(&ours));
        }
    }
    // Tile data agrees with tlog_tiles' reading of the same stored hashes.
    for tile in new_tiles(0, LOG_SIZE).unwrap() {
        let their = tlog_tiles::Tile::new(
            8,
            tile.level(),
            tile.index(),
            u32::from(tile.width()),
            false,
        );
        assert_eq!(
            read_tile_data(&tile, &log.stored).unwrap(),
            their.read_data(&TheirReader(&log.stored)).unwrap()
        );
        assert!(tile.is_within(LOG_SIZE));
    }
    // Level 1 of a 1000-record tree: a partial tile of width floor(1000 / 256) = 3.
    assert_eq!(partial_tile_width(1, LOG_SIZE), 3);
    assert_eq!(partial_tile_width(0, LOG_SIZE), (LOG_SIZE % 256) as u16);
    let level1 = Tile::new(1, 0, 3).unwrap();
    let data = read_tile_data(&level1, &log.stored).unwrap();
    assert_eq!(data.len(), 3 * 32);
    assert_eq!(&data[32..64], &reference_root(&log.leaves[256..512])[..]);
    assert!(!Tile::new(1, 0, 4).unwrap().is_within(LOG_SIZE));
    assert!(read_tile_data(&Tile::new(1, 0, 4).unwrap(), &log.stored).is_err());
    assert_eq!(
        tile_for_record(999, LOG_SIZE).unwrap(),
        Tile::new(0, 3, 1000 - 768).unwrap()
    );
    assert_eq!(
        tile_for_record(5, LOG_SIZE).unwrap(),
        Tile::full(0, 0).unwrap()
    );
    assert!(tile_for_record(LOG_SIZE, LOG_SIZE).is_err());
    assert_eq!(
        entries_tile_range(&Tile::new(0, 3, 232).unwrap()),
        768..1000
    );
    assert_eq!(entries_tile_range(&Tile::new(1, 0, 3).unwrap()), 0..768);
}

#[test]
fn every_stored_hash_can_be_read_from_its_tile() {
    let log = log();
    for (i, want) in log.stored.iter().enumerate() {
        let i = i as u64;
        let tile = tile_for_index(i).unwrap();
        let their = tlog_tiles::Tile::from_index(8, i);
        assert_eq!(
            (tile.level(), tile.index(), u32::from(tile.width())),
            (their.level(), their.level_index(), their.width()),
            "stored index {i}"
        );
        let data = read_tile_data(&tile, &log.stored).unwrap();
        assert_eq!(
            &hash_from_tile(&tile, &data, i).unwrap(),
            want,
            "stored index {i}"
        );
        assert!(hash_from_tile(&tile, &data[32..], i).is_err());
    }
}

proptest! {
    #[test]
    fn new_tiles_match_tlog_tiles(a in 0u64..200_000, b in 0u64..200_000) {
        let (old, new) = if a <= b { (a, b) } else { (b, a) };
        let mut ours: Vec<_> = new_tiles(old, new)
            .unwrap()
            .iter()
            .map(|t| (t.level(), t.index(), u32::from(t.width())))
            .collect();
        let mut their: Vec<_> = tlog_tiles::Tile::new_tiles(8, old, new)
            .iter()
            .map(|t| (t.level(), t.level_index(), t.width()))
            .collect();
        ours.sort_unstable();
        their.sort_unstable();
        prop_assert_eq!(ours, their);
    }

    #[test]
    fn entry_bundles_round_trip(entries in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..=256)) {
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let bundle = encode_entry_bundle(&refs).unwrap();
        prop_assert_eq!(decode_entry_bundle(&bundle).unwrap(), refs);
    }
}

#[test]
fn entry_bundle_encoding() {
    let bundle = encode_entry_bundle(&[b"ab", b"", b"c"]).unwrap();
    assert_eq!(bundle, b"\x00\x02ab\x00\x00\x00\x01c");
    assert!(decode_entry_bundle(b"").is_err());
    assert!(decode_entry_bundle(b"\x00").is_err());
    assert!(decode_entry_bundle(b"\x00\x03ab").is_err());
    assert!(decode_entry_bundle(&[0u8; 2 * 257]).is_err());
    assert_eq!(decode_entry_bundle(&[0u8; 2 * 256]).unwrap().len(), 256);
    let big = vec![0u8; 65_536];
    assert!(matches!(
        encode_entry_bundle(&[&big]),
        Err(TlogError::EntryTooLarge(65_536))
    ));
    assert!(encode_entry_bundle(&[&big[..65_535]]).is_ok());
}
