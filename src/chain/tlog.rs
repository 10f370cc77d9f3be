//! The RFC 6962 / RFC 9162 Merkle tree over *stored hashes*, and the C2SP tlog-tiles layout.
//!
//! Hashing follows RFC 9162 §2.1.1: a leaf hash is `SHA-256(0x00 || leaf bytes)`, an interior
//! node is `SHA-256(0x01 || left || right)`, the empty tree hashes to `SHA-256("")`.
//!
//! # Stored hashes
//!
//! Every *complete* subtree hash of the log is stored exactly once, in the order in which the
//! subtrees become complete. Appending record `n` appends its leaf hash and then the hash of
//! every subtree that record completes (as many as `n` has trailing one bits), so the log's
//! hashes form one append-only array of 32-byte values: [`stored_hashes_for_record`] gives what
//! to append, [`stored_hash_index`] where a given subtree hash sits. This is the layout of Go's
//! `golang.org/x/mod/sumdb/tlog`, so stored indexes agree with tools built on it.
//!
//! Roots ([`tree_hash`]), inclusion proofs ([`prove_inclusion`], RFC 9162 §2.1.3) and
//! consistency proofs ([`prove_consistency`], RFC 9162 §2.1.4) read `O(log n)` stored hashes in
//! one [`HashReader::read_hashes`] call each. The verifiers ([`verify_inclusion`],
//! [`verify_consistency`]) are the RFC 9162 §2.1.3.2 and §2.1.4.2 algorithms.
//!
//! # Tiles
//!
//! [c2sp.org/tlog-tiles](https://c2sp.org/tlog-tiles) serves the tree as tiles of height 8:
//! tile `N` at level `L` holds up to 256 consecutive hashes of the tree's level `8·L`, at
//! `tile/<L>/<N>[.p/<W>]`; entries are served in bundles at `tile/entries/<N>[.p/<W>]`.
//! See [`Tile`], [`tile_path`], [`parse_tile_path`], [`read_tile_data`] and
//! [`encode_entry_bundle`]. The formats are described in docs/formats.md ("Event chain formats").
//!
//! This module is pure: no I/O, no storage; storage plugs in through [`HashReader`]. Its one
//! error type is [`TlogError`].

use std::fmt::Write as _;
use std::ops::Range;

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// The root of the empty tree: `SHA-256("")` (RFC 9162 §2.1.1).
pub const EMPTY_TREE_HASH: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The largest tree size (number of records) this module works with: 2^63.
///
/// Stored-hash indexes of a tree this size still fit a `u64`; larger sizes are refused with
/// [`TlogError::TreeTooLarge`].
pub const MAX_TREE_SIZE: u64 = 1 << 63;

/// The height of a C2SP tile: each tile spans 8 levels of the tree.
pub const TILE_HEIGHT: u8 = 8;

/// The number of hashes in a full tile (2^[`TILE_HEIGHT`]).
pub const TILE_WIDTH: u16 = 256;

/// The largest entry an entry bundle can hold (its length prefix is a `u16`).
pub const MAX_BUNDLE_ENTRY_LEN: usize = u16::MAX as usize;

/// Longest tile path [`parse_tile_path`] looks at; a canonical path for a tile of a tree of at
/// most [`MAX_TREE_SIZE`] records is shorter.
const MAX_TILE_PATH_LEN: usize = 64;

/// What can go wrong computing or checking hashes, proofs and tiles.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlogError {
    /// A record index is not inside the tree.
    #[error("record index {index} is not below the tree size {size}")]
    IndexOutOfRange {
        /// The record index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The old tree of a consistency proof is larger than the new one.
    #[error("the old tree size {old} is larger than the new tree size {new}")]
    SizeOrder {
        /// The old tree size.
        old: u64,
        /// The new tree size.
        new: u64,
    },
    /// The tree size is larger than [`MAX_TREE_SIZE`].
    #[error("the tree size {0} is larger than the largest supported ({MAX_TREE_SIZE})")]
    TreeTooLarge(u64),
    /// A proof does not prove what it was checked against (wrong hashes, length, root or size).
    #[error("the proof does not verify: {0}")]
    InvalidProof(&'static str),
    /// A stored hash the computation needs is not in the store.
    #[error("stored hash {0} is not available")]
    HashNotStored(u64),
    /// A [`HashReader`] answered with a different number of hashes than it was asked for.
    #[error("the hash reader returned {got} hashes for {asked} indexes")]
    ReaderMismatch {
        /// How many hashes were asked for.
        asked: usize,
        /// How many came back.
        got: usize,
    },
    /// The storage behind a [`HashReader`] failed.
    #[error("reading stored hashes failed: {0}")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A tile path is not a canonical C2SP tile or entry-bundle path.
    #[error("malformed tile path: {0}")]
    BadTilePath(&'static str),
    /// Tile coordinates are out of range (level, width, or beyond [`MAX_TREE_SIZE`]).
    #[error("invalid tile: {0}")]
    InvalidTile(&'static str),
    /// Tile data does not have the length its tile needs.
    #[error("tile data has {got} bytes, the tile needs {need}")]
    TileDataLength {
        /// Bytes the tile needs (32 per hash).
        need: usize,
        /// Bytes given.
        got: usize,
    },
    /// An entry is too long for an entry bundle's 16-bit length prefix.
    #[error("an entry of {0} bytes does not fit an entry bundle (at most 65535)")]
    EntryTooLarge(usize),
    /// An entry bundle is malformed.
    #[error("malformed entry bundle: {0}")]
    BadEntryBundle(&'static str),
}

/// The leaf hash of a record: `SHA-256(0x00 || leaf_bytes)` (RFC 9162 §2.1.1).
pub fn leaf_hash(leaf_bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(leaf_bytes);
    h.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)` (RFC 9162 §2.1.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Reads stored hashes by their index in the stored-hash array.
///
/// Implementations return the hashes in the order asked (the indexes may come in any order and
/// may repeat), exactly one per index, or an error: [`TlogError::HashNotStored`] for an index
/// beyond what is stored, [`TlogError::Read`] when the storage fails. The functions of this
/// module batch their reads: each makes at most one call per computation.
pub trait HashReader {
    /// Returns the stored hashes at `indexes`, in that order.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError>;
}

impl HashReader for [Hash] {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.get(i))
                    .copied()
                    .ok_or(TlogError::HashNotStored(i))
            })
            .collect()
    }
}

impl HashReader for Vec<Hash> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        self.as_slice().read_hashes(indexes)
    }
}

impl<R: HashReader + ?Sized> HashReader for &R {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        (**self).read_hashes(indexes)
    }
}

/// The index in the stored-hash array of the hash of subtree `n` at level `level`, that is of
/// the records `n·2^level .. (n+1)·2^level`.
///
/// That hash is stored while record `m = (n+1)·2^level − 1` (the subtree's last record) is
/// appended, as the `level`-th hash appended for it, after the [`stored_hash_count`]`(m)`
/// hashes of the earlier records. Defined for subtrees inside a tree of at most
/// [`MAX_TREE_SIZE`] records; beyond that it saturates to `u64::MAX`, which no store holds.
pub fn stored_hash_index(level: u8, n: u64) -> u64 {
    let last_record = match n.checked_add(1) {
        Some(end) if level < 64 && end <= (u64::MAX >> level) => (end << level) - 1,
        _ => return u64::MAX,
    };
    stored_hash_count(last_record).saturating_add(u64::from(level))
}

/// The inverse of [`stored_hash_index`]: the `(level, n)` of the subtree hash stored at
/// `index`.
pub fn split_stored_hash_index(index: u64) -> (u8, u64) {
    // stored_hash_count(m) = 2m − popcount(m) lies in [2m − 64, 2m], so the record whose hashes
    // include `index` is at most 32 above index / 2.
    let mut m = index / 2;
    while m < u64::MAX && stored_hash_count(m + 1) <= index {
        m += 1;
    }
    let offset = index - stored_hash_count(m);
    // offset ≤ trailing ones of m < 64, so it fits a u8.
    let level = u8::try_from(offset).unwrap_or(u8::MAX).min(63);
    // m = (n + 1)·2^level − 1 = n·2^level + (2^level − 1), so n = m >> level.
    (level, m >> level)
}

/// The number of stored hashes of a log of `records` records: `2·records − popcount(records)`
/// (each record's leaf, plus one hash per complete subtree of two or more records). Saturates
/// beyond [`MAX_TREE_SIZE`].
pub fn stored_hash_count(records: u64) -> u64 {
    records
        .checked_mul(2)
        .map_or(u64::MAX, |twice| twice - u64::from(records.count_ones()))
}

/// The hashes to append to the stored array when record `n` (0-based, the next record: the
/// array holds exactly [`stored_hash_count`]`(n)` hashes) with leaf hash `leaf` is added: the
/// leaf hash, then the hash of every subtree the record completes, lowest first. Reads the
/// left siblings it needs through `r`, in one call.
pub fn stored_hashes_for_record(
    n: u64,
    leaf: Hash,
    r: &impl HashReader,
) -> Result<Vec<Hash>, TlogError> {
    if n >= MAX_TREE_SIZE {
        return Err(TlogError::TreeTooLarge(n.saturating_add(1)));
    }
    // Record n completes one subtree per trailing one bit of n: at level l+1 it joins the
    // complete level-l subtree (n >> l) − 1 on its left.
    let completes = n.trailing_ones();
    let indexes: Vec<u64> = (0..completes)
        .map(|l| stored_hash_index(level_u8(l), (n >> l) - 1))
        .collect();
    let left = read_exact(r, &indexes)?;
    let mut out = Vec::with_capacity(left.len() + 1);
    let mut h = leaf;
    out.push(h);
    for sibling in &left {
        h = node_hash(sibling, &h);
        out.push(h);
    }
    Ok(out)
}

/// The RFC 6962 root hash of the first `size` records (the Merkle Tree Hash `MTH(D[0:size])`).
/// Reads at most `log2(size) + 1` stored hashes, in one call.
pub fn tree_hash(size: u64, r: &impl HashReader) -> Result<Hash, TlogError> {
    check_size(size)?;
    if size == 0 {
        return Ok(EMPTY_TREE_HASH);
    }
    let mut indexes = Vec::with_capacity(64);
    push_subtree_indexes(0, size, &mut indexes);
    let hashes = read_exact(r, &indexes)?;
    Ok(fold_right(&hashes))
}

/// The RFC 9162 §2.1.3.1 inclusion proof (audit path) of record `index` in the tree of the
/// first `size` records, leaf side first. Reads `O(log size)` stored hashes, in one call.
pub fn prove_inclusion(size: u64, index: u64, r: &impl HashReader) -> Result<Vec<Hash>, TlogError> {
    check_size(size)?;
    if index >= size {
        return Err(TlogError::IndexOutOfRange { index, size });
    }
    // Walk from the root to the leaf; at each split the sibling range joins the path.
    let mut siblings = Vec::with_capacity(64);
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let mid = lo + largest_power_of_two_below(hi - lo);
        if index < mid {
            siblings.push((mid, hi));
            hi = mid;
        } else {
            siblings.push((lo, mid));
            lo = mid;
        }
    }
    // The path lists the deepest sibling first.
    siblings.reverse();
    hash_ranges(&siblings, r)
}

/// Checks an RFC 9162 inclusion proof (§2.1.3.2): that `leaf` is the leaf hash of record
/// `index` in the tree of `size` records whose root is `root`.
pub fn verify_inclusion(
    proof: &[Hash],
    size: u64,
    index: u64,
    root: &Hash,
    leaf: &Hash,
) -> Result<(), TlogError> {
    if index >= size {
        return Err(TlogError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(TlogError::InvalidProof("inclusion proof too long"));
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(TlogError::InvalidProof("inclusion proof too short"));
    }
    if r != *root {
        return Err(TlogError::InvalidProof("root hash mismatch"));
    }
    Ok(())
}

/// The RFC 9162 §2.1.4.1 consistency proof between the tree of the first `old_size` records
/// and the tree of the first `new_size`. Empty when `old_size` is 0 or equals `new_size`.
/// Reads `O(log new_size)` stored hashes, in one call.
pub fn prove_consistency(
    new_size: u64,
    old_size: u64,
    r: &impl HashReader,
) -> Result<Vec<Hash>, TlogError> {
    check_size(new_size)?;
    if old_size > new_size {
        return Err(TlogError::SizeOrder {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[lo:hi], b), unrolled: `tail` collects the hashes appended after each
    // recursive call, in descent order; `head` is the result of the innermost call.
    let mut tail = Vec::with_capacity(64);
    let mut head = None;
    let (mut lo, mut hi, mut m, mut complete) = (0u64, new_size, old_size, true);
    loop {
        let n = hi - lo;
        if m == n {
            if !complete {
                head = Some((lo, hi));
            }
            break;
        }
        let k = largest_power_of_two_below(n);
        if m <= k {
            tail.push((lo + k, hi));
            hi = lo + k;
        } else {
            tail.push((lo, lo + k));
            lo += k;
            m -= k;
            complete = false;
        }
    }
    let mut ranges = Vec::with_capacity(tail.len() + 1);
    ranges.extend(head);
    ranges.extend(tail.iter().rev());
    hash_ranges(&ranges, r)
}

/// Checks an RFC 9162 consistency proof (§2.1.4.2): that the tree of `old_size` records with
/// root `old_root` is a prefix of the tree of `new_size` records with root `new_root`.
///
/// Equal sizes need an empty proof and equal roots; an old size of 0 needs an empty proof and
/// `old_root` = [`EMPTY_TREE_HASH`].
pub fn verify_consistency(
    proof: &[Hash],
    new_size: u64,
    old_size: u64,
    new_root: &Hash,
    old_root: &Hash,
) -> Result<(), TlogError> {
    if old_size > new_size {
        return Err(TlogError::SizeOrder {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(TlogError::InvalidProof(
                "proof between equal sizes must be empty",
            ));
        }
        if new_root != old_root {
            return Err(TlogError::InvalidProof("equal sizes with different roots"));
        }
        return Ok(());
    }
    if old_size == 0 {
        if !proof.is_empty() {
            return Err(TlogError::InvalidProof(
                "proof from the empty tree must be empty",
            ));
        }
        if *old_root != EMPTY_TREE_HASH {
            return Err(TlogError::InvalidProof(
                "old root is not the empty-tree hash",
            ));
        }
        return Ok(());
    }
    // When the old tree is a complete subtree, its root is the proof's implicit first node.
    let (fr, sr) = if old_size.is_power_of_two() {
        roots_from_nodes(old_root, proof, new_size, old_size)?
    } else {
        consistency_proof_roots(proof, new_size, old_size)?
    };
    if fr != *old_root {
        return Err(TlogError::InvalidProof("old root hash mismatch"));
    }
    if sr != *new_root {
        return Err(TlogError::InvalidProof("new root hash mismatch"));
    }
    Ok(())
}

/// The two roots an RFC 9162 consistency proof from `old_size` to `new_size` leads to,
/// computed from the proof alone (§2.1.4.2 without the final comparisons): `(old root, new
/// root)`.
///
/// Only for `0 < old_size < new_size` with `old_size` not a power of two: otherwise the
/// proof does not carry the old tree (it is empty, or the old root is its implicit first
/// node) and this refuses. When the new root it gives is a checkpoint's root, the proof's
/// nodes are that tree's own (anything else would be a SHA-256 collision), so the old
/// root it gives is the root of that tree's first `old_size` records: a checkpoint of
/// `old_size` with another root cannot be a prefix of it.
pub fn consistency_proof_roots(
    proof: &[Hash],
    new_size: u64,
    old_size: u64,
) -> Result<(Hash, Hash), TlogError> {
    if old_size >= new_size {
        return Err(TlogError::SizeOrder {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == 0 || old_size.is_power_of_two() {
        return Err(TlogError::InvalidProof(
            "the proof does not carry the old tree's root",
        ));
    }
    match proof.split_first() {
        Some((first, rest)) => roots_from_nodes(first, rest, new_size, old_size),
        None => Err(TlogError::InvalidProof("consistency proof is empty")),
    }
}

/// §2.1.4.2 steps 3 to 6: the old and new roots from the first node and the rest of the
/// proof (`0 < old_size < new_size`).
fn roots_from_nodes(
    first: &Hash,
    rest: &[Hash],
    new_size: u64,
    old_size: u64,
) -> Result<(Hash, Hash), TlogError> {
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return Err(TlogError::InvalidProof("consistency proof too long"));
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(TlogError::InvalidProof("consistency proof too short"));
    }
    Ok((fr, sr))
}

/// `l` (a level below 64) as a `u8`.
fn level_u8(l: u32) -> u8 {
    u8::try_from(l).unwrap_or(u8::MAX)
}

fn check_size(size: u64) -> Result<(), TlogError> {
    if size > MAX_TREE_SIZE {
        return Err(TlogError::TreeTooLarge(size));
    }
    Ok(())
}

/// The largest power of two strictly below `n` (`n ≥ 2`): RFC 9162's split point `k`.
fn largest_power_of_two_below(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Appends the stored indexes of the maximal complete subtrees that make up `lo..hi`, left to
/// right. For the ranges of RFC 6962's recursion (`lo` a multiple of a power of two at least
/// `hi − lo`), these are one per set bit of `hi − lo`, largest first.
fn push_subtree_indexes(mut lo: u64, hi: u64, out: &mut Vec<u64>) {
    while lo < hi {
        let mut k = 63 - (hi - lo).leading_zeros();
        if lo != 0 {
            k = k.min(lo.trailing_zeros());
        }
        out.push(stored_hash_index(level_u8(k), lo >> k));
        lo += 1 << k;
    }
}

/// The Merkle Tree Hash of consecutive complete subtrees of decreasing sizes:
/// `node(h0, node(h1, … node(hk−1, hk)))`.
fn fold_right(hashes: &[Hash]) -> Hash {
    let Some((last, rest)) = hashes.split_last() else {
        return EMPTY_TREE_HASH;
    };
    rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc))
}

/// The Merkle Tree Hashes of the record ranges, reading every stored hash they need at once.
fn hash_ranges(ranges: &[(u64, u64)], r: &impl HashReader) -> Result<Vec<Hash>, TlogError> {
    let mut indexes = Vec::with_capacity(ranges.len() * 2);
    let mut ends = Vec::with_capacity(ranges.len());
    for &(lo, hi) in ranges {
        push_subtree_indexes(lo, hi, &mut indexes);
        ends.push(indexes.len());
    }
    let hashes = read_exact(r, &indexes)?;
    let mut start = 0;
    let mut out = Vec::with_capacity(ranges.len());
    for end in ends {
        out.push(fold_right(hashes.get(start..end).unwrap_or_default()));
        start = end;
    }
    Ok(out)
}

/// Reads `indexes` through `r`, checking the reader answered one hash per index.
fn read_exact(r: &impl HashReader, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = r.read_hashes(indexes)?;
    if hashes.len() != indexes.len() {
        return Err(TlogError::ReaderMismatch {
            asked: indexes.len(),
            got: hashes.len(),
        });
    }
    Ok(hashes)
}

// ---------------------------------------------------------------------------------------------
// Tiles (c2sp.org/tlog-tiles)
// ---------------------------------------------------------------------------------------------

/// A C2SP tile: up to 256 consecutive hashes of the tree's level `8·level`, starting at hash
/// `256·index` of that level. A full tile has width 256; a partial one 1 to 255.
///
/// Hash `i` of the tile is the Merkle Tree Hash of records
/// `(256·index + i)·256^level .. (256·index + i + 1)·256^level`. The same coordinates (at level
/// 0) name an entry bundle: the records `256·index .. 256·index + width`.
///
/// Constructed with [`Tile::new`], which refuses tiles that reach beyond [`MAX_TREE_SIZE`]
/// records, so the record ranges of a `Tile` always fit a `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tile {
    level: u8,
    index: u64,
    width: u16,
}

/// What a tile path names: a tile of hashes, or an entry bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TileKind {
    /// `tile/<L>/<N>[.p/<W>]`: Merkle tree hashes.
    Hashes,
    /// `tile/entries/<N>[.p/<W>]`: the records themselves (the tile's level is 0).
    Entries,
}

impl Tile {
    /// The tile `index` at `level` with `width` hashes (1 to 256). Refuses levels above 63
    /// (the spec's limit), widths outside 1..=256, and tiles whose records would reach beyond
    /// [`MAX_TREE_SIZE`].
    pub fn new(level: u8, index: u64, width: u16) -> Result<Tile, TlogError> {
        if level > 63 {
            return Err(TlogError::InvalidTile("level above 63"));
        }
        if width == 0 || width > TILE_WIDTH {
            return Err(TlogError::InvalidTile("width must be 1 to 256"));
        }
        let end_hashes = u128::from(index) * u128::from(TILE_WIDTH) + u128::from(width);
        let shift = u32::from(level) * u32::from(TILE_HEIGHT);
        if shift >= 64 || end_hashes > u128::from(MAX_TREE_SIZE >> shift) {
            return Err(TlogError::InvalidTile(
                "beyond the largest supported tree size",
            ));
        }
        Ok(Tile {
            level,
            index,
            width,
        })
    }

    /// The full tile `index` at `level` (width 256).
    pub fn full(level: u8, index: u64) -> Result<Tile, TlogError> {
        Tile::new(level, index, TILE_WIDTH)
    }

    /// The tile's level `L`: its hashes are the tree's level `8·L`.
    pub fn level(&self) -> u8 {
        self.level
    }

    /// The tile's index `N` within its level.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The number of hashes in the tile (256 when full).
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Whether the tile has fewer than 256 hashes.
    pub fn is_partial(&self) -> bool {
        self.width < TILE_WIDTH
    }

    /// The level of the tree its hashes are at: `8·level`.
    pub fn hash_level(&self) -> u8 {
        self.level.saturating_mul(TILE_HEIGHT)
    }

    /// Whether every hash of the tile exists in a tree of `tree_size` records, i.e. whether the
    /// tile can be served for that tree.
    pub fn is_within(&self, tree_size: u64) -> bool {
        entries_tile_range(self).end <= tree_size
    }
}

/// The width of the rightmost (partial) tile at `level` of a tree of `tree_size` records:
/// `floor(tree_size / 256^level) mod 256`; 0 when that level has no partial tile.
pub fn partial_tile_width(level: u8, tree_size: u64) -> u16 {
    let shift = u32::from(level) * u32::from(TILE_HEIGHT);
    if shift >= 64 {
        return 0;
    }
    u16::try_from((tree_size >> shift) % u64::from(TILE_WIDTH)).unwrap_or(0)
}

/// The level-0 tile (and entry bundle) that holds record `record` in a tree of `tree_size`
/// records: full if the tree has the whole tile, otherwise the partial tile as wide as the
/// tree is.
pub fn tile_for_record(record: u64, tree_size: u64) -> Result<Tile, TlogError> {
    check_size(tree_size)?;
    if record >= tree_size {
        return Err(TlogError::IndexOutOfRange {
            index: record,
            size: tree_size,
        });
    }
    let index = record / u64::from(TILE_WIDTH);
    let start = index * u64::from(TILE_WIDTH);
    let width = (tree_size - start).min(u64::from(TILE_WIDTH));
    Tile::new(0, index, u16::try_from(width).unwrap_or(TILE_WIDTH))
}

/// The smallest tile from which the stored hash at `stored_index` can be computed: the tile at
/// level `floor(l / 8)` for a hash of tree level `l`, just wide enough to cover the hash's
/// subtree (hashes between tile levels are recomputed from the tile's hashes, see
/// [`hash_from_tile`]).
pub fn tile_for_index(stored_index: u64) -> Result<Tile, TlogError> {
    let (level, n) = split_stored_hash_index(stored_index);
    let tile_level = level / TILE_HEIGHT;
    let within = level % TILE_HEIGHT;
    // The hash covers tile-level hashes n·2^within .. (n+1)·2^within.
    let first = u128::from(n) << within;
    let end = (u128::from(n) + 1) << within;
    let index = first / u128::from(TILE_WIDTH);
    let width = end - index * u128::from(TILE_WIDTH);
    let index = u64::try_from(index).map_err(|_| TlogError::InvalidTile("index overflow"))?;
    let width = u16::try_from(width).map_err(|_| TlogError::InvalidTile("width overflow"))?;
    Tile::new(tile_level, index, width)
}

/// Computes the stored hash at `stored_index` from the data of `tile` (as returned by
/// [`read_tile_data`]); the tile must be [`tile_for_index`]`(stored_index)` or a wider tile of
/// the same coordinates.
pub fn hash_from_tile(tile: &Tile, data: &[u8], stored_index: u64) -> Result<Hash, TlogError> {
    let need = tile_for_index(stored_index)?;
    if need.level != tile.level || need.index != tile.index || need.width > tile.width {
        return Err(TlogError::InvalidTile("the tile does not hold that hash"));
    }
    let want = usize::from(tile.width) * 32;
    if data.len() != want {
        return Err(TlogError::TileDataLength {
            need: want,
            got: data.len(),
        });
    }
    let (level, n) = split_stored_hash_index(stored_index);
    let within = level % TILE_HEIGHT;
    // Tile-level hashes of the subtree: positions n·2^within .. (n+1)·2^within, relative to
    // the tile's first hash.
    let span = 1usize << within;
    let start = usize::try_from((u128::from(n) << within) % u128::from(TILE_WIDTH))
        .map_err(|_| TlogError::InvalidTile("index overflow"))?;
    let mut level_hashes: Vec<Hash> = data
        .chunks_exact(32)
        .skip(start)
        .take(span)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect();
    while level_hashes.len() > 1 {
        level_hashes = level_hashes
            .chunks_exact(2)
            .map(|pair| node_hash(&pair[0], &pair[1]))
            .collect();
    }
    level_hashes
        .first()
        .copied()
        .ok_or(TlogError::InvalidTile("the tile does not hold that hash"))
}

/// The records a tile spans: `256·index·256^level .. (256·index + width)·256^level`. For an
/// entry bundle (a level-0 tile) these are the records the bundle holds.
pub fn entries_tile_range(tile: &Tile) -> Range<u64> {
    // Tile::new guarantees the end fits MAX_TREE_SIZE.
    let shift = u32::from(tile.level) * u32::from(TILE_HEIGHT);
    let start = (tile.index * u64::from(TILE_WIDTH)) << shift;
    let end = (tile.index * u64::from(TILE_WIDTH) + u64::from(tile.width)) << shift;
    start..end
}

/// The tiles that change when the tree grows from `old_size` to `new_size` records: at every
/// level, each tile whose width in the new tree is larger than in the old one (full tiles that
/// became complete and the new partial tiles), lowest level first.
pub fn new_tiles(old_size: u64, new_size: u64) -> Result<Vec<Tile>, TlogError> {
    check_size(new_size)?;
    if old_size > new_size {
        return Err(TlogError::SizeOrder {
            old: old_size,
            new: new_size,
        });
    }
    let w = u64::from(TILE_WIDTH);
    let mut out = Vec::new();
    for level in 0..8u8 {
        let shift = u32::from(level) * u32::from(TILE_HEIGHT);
        let (old_n, new_n) = (old_size >> shift, new_size >> shift);
        if new_n == 0 {
            break;
        }
        for index in old_n / w..new_n.div_ceil(w) {
            let width = (new_n - index * w).min(w);
            let old_width = old_n.saturating_sub(index * w).min(w);
            if width > old_width {
                out.push(Tile::new(
                    level,
                    index,
                    u16::try_from(width).unwrap_or(TILE_WIDTH),
                )?);
            }
        }
    }
    Ok(out)
}

/// The path of a tile of hashes: `tile/<L>/<N>[.p/<W>]`, with `N` in 3-digit groups, all but
/// the last prefixed by `x` (`tile/0/x001/234`, `tile/0/x001/234.p/17`).
pub fn tile_path(tile: &Tile) -> String {
    let mut s = String::with_capacity(32);
    let _ = write!(s, "tile/{}/", tile.level);
    push_tile_coords(&mut s, tile);
    s
}

/// The path of the entry bundle with `tile`'s index and width: `tile/entries/<N>[.p/<W>]`.
/// Entry bundles correspond to level-0 tiles; the level is not part of the path.
pub fn entries_path(tile: &Tile) -> String {
    let mut s = String::with_capacity(32);
    s.push_str("tile/entries/");
    push_tile_coords(&mut s, tile);
    s
}

fn push_tile_coords(s: &mut String, tile: &Tile) {
    let mut groups = [0u64; 7];
    let mut count = 0;
    let mut n = tile.index;
    loop {
        groups[count] = n % 1000;
        count += 1;
        n /= 1000;
        if n == 0 || count == groups.len() {
            break;
        }
    }
    for (i, g) in groups[..count].iter().rev().enumerate() {
        if i + 1 < count {
            let _ = write!(s, "x{g:03}/");
        } else {
            let _ = write!(s, "{g:03}");
        }
    }
    if tile.is_partial() {
        let _ = write!(s, ".p/{}", tile.width);
    }
}

/// Parses a canonical tile path, `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]` (no
/// prefix, no leading slash), into what it names. Refuses anything [`tile_path`] /
/// [`entries_path`] would not produce: leading zeros, `x000` groups, `.p/256`, widths of 0,
/// missing `x` prefixes, levels above 63 and tiles beyond [`MAX_TREE_SIZE`].
pub fn parse_tile_path(path: &str) -> Result<(TileKind, Tile), TlogError> {
    if path.len() > MAX_TILE_PATH_LEN {
        return Err(TlogError::BadTilePath("too long"));
    }
    let rest = path
        .strip_prefix("tile/")
        .ok_or(TlogError::BadTilePath("must start with tile/"))?;
    let (first, mut rest) = rest
        .split_once('/')
        .ok_or(TlogError::BadTilePath("missing tile index"))?;
    let (kind, level) = if first == "entries" {
        (TileKind::Entries, 0u8)
    } else {
        let level = parse_decimal(first).ok_or(TlogError::BadTilePath("bad level"))?;
        let level = u8::try_from(level).map_err(|_| TlogError::BadTilePath("bad level"))?;
        (TileKind::Hashes, level)
    };
    let mut width = TILE_WIDTH;
    if let Some((coords, w)) = rest.rsplit_once(".p/") {
        let w = parse_decimal(w).ok_or(TlogError::BadTilePath("bad partial width"))?;
        if w == 0 || w >= u64::from(TILE_WIDTH) {
            return Err(TlogError::BadTilePath("partial width must be 1 to 255"));
        }
        width = u16::try_from(w).map_err(|_| TlogError::BadTilePath("bad partial width"))?;
        rest = coords;
    }
    let mut index: u64 = 0;
    let mut groups = rest.split('/').peekable();
    while let Some(group) = groups.next() {
        let digits = if groups.peek().is_some() {
            group.strip_prefix('x').ok_or(TlogError::BadTilePath(
                "index groups but the last start with x",
            ))?
        } else {
            group
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TlogError::BadTilePath("index groups must have 3 digits"));
        }
        let g = parse_decimal_digits(digits);
        index = index
            .checked_mul(1000)
            .and_then(|i| i.checked_add(g))
            .ok_or(TlogError::BadTilePath("index too large"))?;
    }
    let tile =
        Tile::new(level, index, width).map_err(|_| TlogError::BadTilePath("tile out of range"))?;
    let canonical = match kind {
        TileKind::Hashes => tile_path(&tile),
        TileKind::Entries => entries_path(&tile),
    };
    if canonical != path {
        return Err(TlogError::BadTilePath("not in canonical form"));
    }
    Ok((kind, tile))
}

/// A decimal number with no sign and no leading zeros (except `0` itself), up to 19 digits.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    Some(parse_decimal_digits(s))
}

/// The value of a string of at most 19 ASCII digits.
fn parse_decimal_digits(s: &str) -> u64 {
    s.bytes()
        .fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0'))
}

/// The data of a tile of hashes: its `width` hashes of tree level `8·level`, concatenated
/// (32 bytes each), read through `r` in one call.
pub fn read_tile_data(tile: &Tile, r: &impl HashReader) -> Result<Vec<u8>, TlogError> {
    let level = tile.hash_level();
    let first = tile.index * u64::from(TILE_WIDTH);
    let indexes: Vec<u64> = (0..u64::from(tile.width))
        .map(|i| stored_hash_index(level, first + i))
        .collect();
    let hashes = read_exact(r, &indexes)?;
    Ok(hashes.concat())
}

/// Encodes an entry bundle: each entry as a 2-byte big-endian length and its bytes. Refuses
/// entries longer than 65535 bytes.
pub fn encode_entry_bundle(entries: &[&[u8]]) -> Result<Vec<u8>, TlogError> {
    let len = entries.iter().map(|e| e.len() + 2).sum();
    let mut out = Vec::with_capacity(len);
    for e in entries {
        let n = u16::try_from(e.len()).map_err(|_| TlogError::EntryTooLarge(e.len()))?;
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Decodes an entry bundle into its entries. Refuses empty bundles, bundles of more than 256
/// entries, and truncated entries. (Callers check the count against the bundle's width.)
pub fn decode_entry_bundle(data: &[u8]) -> Result<Vec<&[u8]>, TlogError> {
    if data.is_empty() {
        return Err(TlogError::BadEntryBundle("empty"));
    }
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if out.len() == usize::from(TILE_WIDTH) {
            return Err(TlogError::BadEntryBundle("more than 256 entries"));
        }
        let (len, tail) = rest
            .split_first_chunk::<2>()
            .ok_or(TlogError::BadEntryBundle("truncated length"))?;
        let len = usize::from(u16::from_be_bytes(*len));
        if tail.len() < len {
            return Err(TlogError::BadEntryBundle("truncated entry"));
        }
        let (entry, tail) = tail.split_at(len);
        out.push(entry);
        rest = tail;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
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

        fn read_tiles(
            &self,
            tiles: &[tlog_tiles::Tile],
        ) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
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
}
