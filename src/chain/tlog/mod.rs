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
//! This module is pure: no I/O, no storage; storage plugs in through [`HashReader`]. Its
//! parts: hashing and the stored-hash layout here, roots and proofs in `proof.rs`, tiles and
//! entry bundles in `tiles.rs` (all re-exported here). Its one error type is [`TlogError`].

mod proof;
mod tiles;

pub use proof::*;
pub use tiles::*;

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

#[cfg(test)]
mod tests;
