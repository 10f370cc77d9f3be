//! Posting segments: the index's posting lists, in immutable files of their own.
//!
//! A segment holds, for one range of events `[lo, hi)`, every posting list's entries in
//! that range. The indexer writes one when the events of a range of
//! [`super::Tuning::segment_events`] are indexed (from the facts file), and merges the
//! last `fanout` segments of one level into one of the next level, so that a log of `n`
//! events has about `fanout · log(n)` segments and a list is read from each in one
//! lookup. Files are written whole under a temporary name, synced and renamed (a merge's
//! name synced too); which are live is recorded in the index's database (the manifest),
//! so a file it does not name is left over from a crash and removed at open, and one it
//! names that is missing or damaged is written again from the facts.
//!
//! A file:
//! - a header of 64 bytes: `AUDSEG01`, lo, hi, level, directory entries, the directory's
//!   offset (u64 BE each), 16 bytes zero;
//! - the runs: each list's entries, in blocks of [`BLOCK`] entries. In a block the first
//!   index is written less `lo`, each next as the difference from the one before
//!   (LEB128); a paired list (a subject bucket's) writes each entry's subject id after
//!   it. A run of more than one block ends with its block table: per block, its first
//!   index less `lo` and its offset in the run (u32 BE each);
//! - the directory, sorted by list: kind (u8), flags (u8: 1 = paired), 0 (u16), id, the
//!   run's offset (u64), bytes (u32) and entries (u32), BE;
//! - SHA-256 of the directory, checked when the segment is loaded.
//!
//! Memory: a loaded segment keeps an open file and one directory key in every
//! [`SPARSE`]; a lookup reads at most [`SPARSE`] entries, a cursor one block at a time.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{push_varint, IndexError, Order};

/// Entries per block of a run.
const BLOCK: usize = 128;
/// A search reads a run of at most this many bytes at once (else a block at a time: a
/// page often needs only the blocks at one end of a long list).
const SEARCH_READ_WHOLE: u32 = 16 << 10;
/// A merge reads each run of at most this many bytes at once.
const MERGE_READ_WHOLE: u32 = 4 << 20;
/// One directory key kept in memory per this many entries.
const SPARSE: usize = 32;
/// Bytes of the header.
const HEADER: u64 = 64;
/// Bytes of a directory entry.
const ENTRY: usize = 24;
const MAGIC: &[u8; 8] = b"AUDSEG01";

/// A posting list: its kind and its id.
pub(super) type ListKey = (u8, u32);

/// Where a list's run is in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirEntry {
    key: ListKey,
    paired: bool,
    offset: u64,
    bytes: u32,
    count: u32,
}

impl DirEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.key.0);
        out.push(u8::from(self.paired));
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.key.1.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.bytes.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
    }

    fn decode(b: &[u8]) -> DirEntry {
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        DirEntry {
            key: (b[0], u32_at(4)),
            paired: b[1] & 1 == 1,
            offset: u64::from(u32_at(8)) << 32 | u64::from(u32_at(12)),
            bytes: u32_at(16),
            count: u32_at(20),
        }
    }

    /// Blocks in the run.
    fn blocks(&self) -> usize {
        (self.count as usize).div_ceil(BLOCK)
    }
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> IndexError {
    IndexError::Corrupt(format!("segment {}: {what}", path.display()))
}

fn io(e: std::io::Error) -> IndexError {
    IndexError::Segments(e)
}

/// Reads exactly `buf.len()` bytes at `offset`.
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> Result<(), IndexError> {
    file.read_exact_at(buf, offset).map_err(io)
}

/// One segment file, loaded: its range, level, and a sparse copy of its directory.
#[derive(Debug)]
pub(super) struct Segment {
    /// The first event it covers.
    pub lo: u64,
    /// The event after the last it covers.
    pub hi: u64,
    /// 0 for a segment written from facts; one more than its inputs' for a merge.
    pub level: u64,
    path: PathBuf,
    file: File,
    entries: usize,
    dir_at: u64,
    /// The key of directory entry `SPARSE · k`, for each k.
    sparse: Vec<ListKey>,
}

/// A segment's file name: its range and level.
pub(super) fn file_name(lo: u64, hi: u64, level: u64) -> String {
    format!("{lo:016x}-{hi:016x}-{level}.seg")
}

impl Segment {
    /// Loads the segment at `path` (of range `lo..hi` and `level`, as the manifest says),
    /// checking its header and its directory's digest and order.
    pub fn load(path: &Path, lo: u64, hi: u64, level: u64) -> Result<Segment, IndexError> {
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut h = [0u8; HEADER as usize];
        if len < HEADER + 32 {
            return Err(corrupt(path, format!("{len} bytes")));
        }
        read_exact_at(&file, &mut h, 0)?;
        let num = |i: usize| u64::from_be_bytes(super::arr(&h[8 + i * 8..16 + i * 8]));
        if &h[..8] != MAGIC || (num(0), num(1), num(2)) != (lo, hi, level) {
            return Err(corrupt(path, "not the segment the manifest names"));
        }
        let (entries, dir_at) = (num(3), num(4));
        let dir_bytes = entries
            .checked_mul(ENTRY as u64)
            .filter(|b| {
                dir_at >= HEADER
                    && b.checked_add(32).and_then(|b| b.checked_add(dir_at)) == Some(len)
            })
            .ok_or_else(|| corrupt(path, "its directory is not where its header says"))?;
        let mut dir = vec![0u8; usize::try_from(dir_bytes).map_err(|_| corrupt(path, "size"))?];
        read_exact_at(&file, &mut dir, dir_at)?;
        let mut digest = [0u8; 32];
        read_exact_at(&file, &mut digest, dir_at + dir_bytes)?;
        if Sha256::digest(&dir)[..] != digest {
            return Err(corrupt(path, "its directory does not match its digest"));
        }
        let mut sparse = Vec::with_capacity(dir.len() / ENTRY / SPARSE + 1);
        let mut last: Option<ListKey> = None;
        for (k, b) in dir.chunks_exact(ENTRY).enumerate() {
            let e = DirEntry::decode(b);
            let table = if e.count as usize > BLOCK {
                e.blocks() as u64 * 8
            } else {
                0
            };
            if last.is_some_and(|l| l >= e.key)
                || e.count == 0
                || e.offset < HEADER
                || e.offset + u64::from(e.bytes) > dir_at
                || u64::from(e.bytes) < table
            {
                return Err(corrupt(path, format!("directory entry {k}")));
            }
            last = Some(e.key);
            if k % SPARSE == 0 {
                sparse.push(e.key);
            }
        }
        Ok(Segment {
            lo,
            hi,
            level,
            path: path.to_owned(),
            file,
            entries: dir.len() / ENTRY,
            dir_at,
            sparse,
        })
    }

    /// Its file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bytes of its file.
    pub fn file_bytes(&self) -> u64 {
        self.dir_at + (self.entries * ENTRY) as u64 + 32
    }

    /// The directory entry of `key`, if the segment has the list.
    fn find(&self, key: ListKey) -> Result<Option<DirEntry>, IndexError> {
        let at = self.sparse.partition_point(|k| *k <= key);
        let Some(block) = at.checked_sub(1) else {
            return Ok(None);
        };
        let first = block * SPARSE;
        let n = SPARSE.min(self.entries - first);
        let mut b = vec![0u8; n * ENTRY];
        read_exact_at(&self.file, &mut b, self.dir_at + (first * ENTRY) as u64)?;
        Ok(b.chunks_exact(ENTRY)
            .map(DirEntry::decode)
            .find(|e| e.key == key))
    }

    /// Every directory entry, in order (for a merge).
    fn directory(&self) -> Result<Vec<DirEntry>, IndexError> {
        let mut b = vec![0u8; self.entries * ENTRY];
        read_exact_at(&self.file, &mut b, self.dir_at)?;
        Ok(b.chunks_exact(ENTRY).map(DirEntry::decode).collect())
    }
}

/// One list's run in one segment, read a block at a time.
struct Run {
    segment: Arc<Segment>,
    entry: DirEntry,
    /// Each block's first index and its byte range in the file.
    blocks: Vec<(u64, std::ops::Range<u64>)>,
    /// The whole run, when read at once.
    whole: Option<Vec<u8>>,
}

impl Run {
    /// Opens `entry`'s run, reading it whole when it has at most `read_whole` bytes (else
    /// a block at a time).
    fn open(segment: Arc<Segment>, entry: DirEntry, read_whole: u32) -> Result<Run, IndexError> {
        let n = entry.blocks();
        let start = entry.offset;
        let end = start + u64::from(entry.bytes);
        let whole = if entry.bytes <= read_whole {
            let mut b = vec![0u8; entry.bytes as usize];
            read_exact_at(&segment.file, &mut b, start)?;
            Some(b)
        } else {
            None
        };
        let blocks = if n <= 1 {
            // The first index is the block's first number; it is found when decoded.
            vec![(segment.lo, start..end)]
        } else {
            let table_at = end - n as u64 * 8;
            let t = match &whole {
                Some(w) => w[(table_at - start) as usize..].to_vec(),
                None => {
                    let mut t = vec![0u8; n * 8];
                    read_exact_at(&segment.file, &mut t, table_at)?;
                    t
                }
            };
            let mut blocks = Vec::with_capacity(n);
            for (k, b) in t.chunks_exact(8).enumerate() {
                let first = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                let off = u64::from(u32::from_be_bytes([b[4], b[5], b[6], b[7]]));
                let next_off = t.get(k * 8 + 12..k * 8 + 16).map_or(table_at - start, |n| {
                    u64::from(u32::from_be_bytes([n[0], n[1], n[2], n[3]]))
                });
                if off > next_off || start + next_off > table_at {
                    return Err(corrupt(&segment.path, "a block table out of order"));
                }
                blocks.push((segment.lo + first, start + off..start + next_off));
            }
            blocks
        };
        Ok(Run {
            segment,
            entry,
            blocks,
            whole,
        })
    }

    /// The entries of block `k`: each index and its subject id (0 in a list not paired).
    fn block(&self, k: usize) -> Result<Vec<(u64, u32)>, IndexError> {
        let r = &self.blocks[k].1;
        let read;
        let b = match &self.whole {
            Some(w) => {
                let at = (r.start - self.entry.offset) as usize;
                &w[at..at + (r.end - r.start) as usize]
            }
            None => {
                let mut v = vec![0u8; (r.end - r.start) as usize];
                read_exact_at(&self.segment.file, &mut v, r.start)?;
                read = v;
                &read[..]
            }
        };
        let out = decode_block(self.segment.lo, b, self.entry.paired)?;
        let expected = if k + 1 == self.blocks.len() {
            self.entry.count as usize - k * BLOCK
        } else {
            BLOCK
        };
        if out.len() != expected || out.last().is_some_and(|e| e.0 >= self.segment.hi) {
            return Err(corrupt(&self.segment.path, "a block of another length"));
        }
        Ok(out)
    }
}

/// The entries of a block of a segment starting at `lo`: each index, with the subject id
/// written after each difference in a paired list (else 0).
pub(super) fn decode_block(lo: u64, b: &[u8], paired: bool) -> Result<Vec<(u64, u32)>, IndexError> {
    let mut out = Vec::with_capacity(BLOCK);
    let (mut v, mut shift, mut at) = (0u64, 0u32, lo);
    let mut delta: Option<u64> = None;
    for &byte in b {
        if shift > 63 {
            return Err(IndexError::Corrupt("a posting number is too long".into()));
        }
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 != 0 {
            shift += 7;
            continue;
        }
        let step = match delta.take() {
            None if paired => {
                delta = Some(v);
                None
            }
            None => Some((v, 0)),
            Some(d) => Some((
                d,
                u32::try_from(v)
                    .map_err(|_| IndexError::Corrupt("a posting subject id overflows".into()))?,
            )),
        };
        if let Some((d, id)) = step {
            at = at
                .checked_add(d)
                .ok_or_else(|| IndexError::Corrupt("a posting index overflows".into()))?;
            out.push((at, id));
        }
        v = 0;
        shift = 0;
    }
    if shift != 0 || delta.is_some() {
        return Err(IndexError::Corrupt("a posting block ends mid-entry".into()));
    }
    Ok(out)
}

/// One posting list read in order within a range, across segments, a block at a time.
pub(super) struct ListCursor {
    /// The segments still to read, in the order read (last first when newest first).
    segments: Vec<Arc<Segment>>,
    key: ListKey,
    range: std::ops::Range<u64>,
    order: Order,
    /// Runs of at most this many bytes are read whole.
    read_whole: u32,
    run: Option<Run>,
    /// The next block of the run to read (counting in the order read).
    next_block: usize,
    /// The current block's entries, in the order read, and where the next one is.
    current: Vec<(u64, u32)>,
    at: usize,
}

impl ListCursor {
    /// A cursor over `key`'s entries within `range` in `segments` (ascending, contiguous),
    /// reading a block at a time (runs of at most [`SEARCH_READ_WHOLE`] bytes at once).
    pub fn new(
        segments: &[Arc<Segment>],
        key: ListKey,
        range: std::ops::Range<u64>,
        order: Order,
    ) -> ListCursor {
        ListCursor::reading(segments, key, range, order, SEARCH_READ_WHOLE)
    }

    /// A cursor that reads runs of at most `read_whole` bytes at once.
    pub fn reading(
        segments: &[Arc<Segment>],
        key: ListKey,
        range: std::ops::Range<u64>,
        order: Order,
        read_whole: u32,
    ) -> ListCursor {
        let mut segments: Vec<Arc<Segment>> = segments
            .iter()
            .filter(|s| s.lo < range.end && s.hi > range.start)
            .cloned()
            .collect();
        // Popped from the end: the first to read goes last.
        if order == Order::OldestFirst {
            segments.reverse();
        }
        ListCursor {
            segments,
            key,
            range,
            order,
            read_whole,
            run: None,
            next_block: 0,
            current: Vec::new(),
            at: 0,
        }
    }

    /// The next entry within the range, in order: the index and its subject id.
    pub fn next(&mut self) -> Result<Option<(u64, u32)>, IndexError> {
        loop {
            if let Some(&(i, id)) = self.current.get(self.at) {
                self.at += 1;
                match self.order {
                    Order::NewestFirst if i >= self.range.end => continue,
                    Order::NewestFirst if i < self.range.start => return self.finish(),
                    Order::OldestFirst if i < self.range.start => continue,
                    Order::OldestFirst if i >= self.range.end => return self.finish(),
                    _ => return Ok(Some((i, id))),
                }
            }
            if let Some(run) = &self.run {
                if self.next_block < run.blocks.len() {
                    let k = match self.order {
                        Order::OldestFirst => self.next_block,
                        Order::NewestFirst => run.blocks.len() - 1 - self.next_block,
                    };
                    self.next_block += 1;
                    self.current = run.block(k)?;
                    if self.order == Order::NewestFirst {
                        self.current.reverse();
                    }
                    self.at = 0;
                    continue;
                }
                self.run = None;
            }
            let Some(segment) = self.segments.pop() else {
                return Ok(None);
            };
            if let Some(entry) = segment.find(self.key)? {
                let run = Run::open(segment, entry, self.read_whole)?;
                // Skip the blocks wholly outside the range on the side read first.
                self.next_block = match self.order {
                    Order::OldestFirst => run
                        .blocks
                        .partition_point(|b| b.0 <= self.range.start)
                        .saturating_sub(1),
                    Order::NewestFirst => {
                        run.blocks.len() - run.blocks.partition_point(|b| b.0 < self.range.end)
                    }
                };
                self.run = Some(run);
            }
        }
    }

    fn finish(&mut self) -> Result<Option<(u64, u32)>, IndexError> {
        self.segments.clear();
        self.run = None;
        self.current.clear();
        Ok(None)
    }
}

/// Writes a segment file: lists in key order, then [`Writer::finish`].
pub(super) struct Writer {
    out: BufWriter<File>,
    tmp: PathBuf,
    lo: u64,
    hi: u64,
    level: u64,
    /// Bytes written so far.
    at: u64,
    dir: Vec<DirEntry>,
}

impl Writer {
    /// Starts the segment of `lo..hi` at `level` in `dir` (under a temporary name).
    pub fn create(dir: &Path, lo: u64, hi: u64, level: u64) -> Result<Writer, IndexError> {
        if hi - lo > u64::from(u32::MAX) {
            return Err(IndexError::Corrupt(format!(
                "a segment of {} events is too wide",
                hi - lo
            )));
        }
        let tmp = dir.join(format!("{}.tmp", file_name(lo, hi, level)));
        let file = File::create(&tmp).map_err(io)?;
        let mut out = BufWriter::with_capacity(256 << 10, file);
        out.write_all(&[0u8; HEADER as usize]).map_err(io)?;
        Ok(Writer {
            out,
            tmp,
            lo,
            hi,
            level,
            at: HEADER,
            dir: Vec::new(),
        })
    }

    /// Writes the run of `key` from its entries (ascending, within the range).
    pub fn list(
        &mut self,
        key: ListKey,
        paired: bool,
        entries: &mut dyn FnMut() -> Result<Option<(u64, u32)>, IndexError>,
    ) -> Result<(), IndexError> {
        if self.dir.last().is_some_and(|e| e.key >= key) {
            return Err(IndexError::Corrupt("segment lists out of order".into()));
        }
        let offset = self.at;
        let mut table: Vec<u8> = Vec::new();
        let mut buf = Vec::with_capacity(BLOCK * 8);
        let mut count: u32 = 0;
        let mut prev = self.lo;
        while let Some((i, id)) = entries()? {
            if i < prev || i >= self.hi || (count > 0 && i == prev) {
                return Err(IndexError::Corrupt(format!(
                    "posting {i} out of order in a segment of {}..{}",
                    self.lo, self.hi
                )));
            }
            if (count as usize).is_multiple_of(BLOCK) {
                // A block starts: its first index is written less lo.
                self.out.write_all(&buf).map_err(io)?;
                self.at += buf.len() as u64;
                buf.clear();
                let rel = (i - self.lo) as u32;
                table.extend_from_slice(&rel.to_be_bytes());
                table.extend_from_slice(&((self.at - offset) as u32).to_be_bytes());
                prev = self.lo;
            }
            push_varint(&mut buf, i - prev);
            if paired {
                push_varint(&mut buf, u64::from(id));
            }
            prev = i;
            count = count
                .checked_add(1)
                .ok_or_else(|| IndexError::Corrupt("a posting list too long".into()))?;
        }
        if count == 0 {
            return Ok(());
        }
        self.out.write_all(&buf).map_err(io)?;
        self.at += buf.len() as u64;
        if count as usize > BLOCK {
            self.out.write_all(&table).map_err(io)?;
            self.at += table.len() as u64;
        }
        let bytes = u32::try_from(self.at - offset)
            .map_err(|_| IndexError::Corrupt("a posting run too long".into()))?;
        self.dir.push(DirEntry {
            key,
            paired,
            offset,
            bytes,
            count,
        });
        Ok(())
    }

    /// Writes the directory and header, syncs the file and gives it its name (made
    /// durable at once when `sync_name`; else with the file system's next commit).
    pub fn finish(mut self, sync_name: bool) -> Result<Segment, IndexError> {
        let mut dir = Vec::with_capacity(self.dir.len() * ENTRY);
        for e in &self.dir {
            e.encode(&mut dir);
        }
        self.out.write_all(&dir).map_err(io)?;
        self.out.write_all(&Sha256::digest(&dir)).map_err(io)?;
        self.out.flush().map_err(io)?;
        let file = self.out.get_ref();
        let mut h = Vec::with_capacity(HEADER as usize);
        h.extend_from_slice(MAGIC);
        for n in [self.lo, self.hi, self.level, self.dir.len() as u64, self.at] {
            h.extend_from_slice(&n.to_be_bytes());
        }
        h.resize(HEADER as usize, 0);
        file.write_all_at(&h, 0).map_err(io)?;
        file.sync_data().map_err(io)?;
        let parent = self.tmp.parent().unwrap_or(Path::new("."));
        let path = parent.join(file_name(self.lo, self.hi, self.level));
        std::fs::rename(&self.tmp, &path).map_err(io)?;
        if sync_name {
            File::open(parent).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Segment::load(&path, self.lo, self.hi, self.level)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A writer not finished leaves no file behind (after finish it is renamed away).
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Writes one segment of the next level holding every list of `inputs` (contiguous, in
/// order), read a block at a time.
pub(super) fn merge(dir: &Path, inputs: &[Arc<Segment>]) -> Result<Segment, IndexError> {
    let (Some(first), Some(last)) = (inputs.first(), inputs.last()) else {
        return Err(IndexError::Corrupt("a merge of no segments".into()));
    };
    let level = inputs.iter().map(|s| s.level).max().unwrap_or(0) + 1;
    let mut w = Writer::create(dir, first.lo, last.hi, level)?;
    let mut keys: Vec<(ListKey, bool)> = Vec::new();
    for s in inputs {
        keys.extend(s.directory()?.into_iter().map(|e| (e.key, e.paired)));
    }
    keys.sort_unstable();
    keys.dedup_by_key(|k| k.0);
    for (key, paired) in keys {
        let mut cursor = ListCursor::reading(
            inputs,
            key,
            first.lo..last.hi,
            Order::OldestFirst,
            MERGE_READ_WHOLE,
        );
        w.list(key, paired, &mut || cursor.next())?;
    }
    // Durable before the manifest names it and its inputs are removed.
    w.finish(true)
}
