//! C2SP tlog-tiles: tile coordinates and paths, tile data from stored hashes, and entry
//! bundles.

use std::fmt::Write as _;
use std::ops::Range;

use super::*;

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
