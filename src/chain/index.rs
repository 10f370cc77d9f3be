//! The search index of the event log: which events an agency, auditor, action, subject or
//! time range has, so that `GET /v1/events?...` answers without reading the whole log.
//!
//! It is derived data, kept in the store beside the log, and never trusted
//! for an answer: every event a search returns is read from the log, its leaf checked
//! against the tree's stored leaf hash, and the filters applied again to the decoded event
//! ([`SearchIndex::search`]). A follower thread indexes each commit shortly after it is
//! durable ([`SearchIndex::follow`]); events it has not reached yet are searched by reading
//! them from the log. If the index is missing, of another format, or does not match the
//! log (longer than it, its last indexed event's hash differs, or its facts are cut
//! short), it is dropped and built again from the log at open, in the background (a
//! segment missing or damaged is only written again from the facts); `chain verify --state DIR --reindex`
//! does the same at once.
//!
//! It has three parts.
//!
//! A sled database (`<store>/search/`) with one tree, so that each indexed batch is one atomic write (the indexed size moves
//! with its entries):
//! - `m` + name: the format, the events indexed (`size`), the first event indexed
//!   (`start`: events pruned before the index was built are not in it), the last indexed
//!   event's leaf hash (`last`), the next term id (`next`), the segment width
//!   (`segment_events`) and the manifest of live segments (`segments`: lo, hi and level,
//!   u64 BE each).
//! - `d` + kind + term → term id (u32 BE) and about how many events have it (u64 BE,
//!   written again at each power of two): the terms of each kind (agency, auditor,
//!   action, subject), in byte order (so a subject prefix is a range).
//! - `s` + bundle and `g` + group of 64 bundles → the least and greatest occurred_at and
//!   received_at of their events, so that a time range skips what it cannot match.
//!
//! Each event's facts in a file of their own (`<store>/search.facts`, append-only, event
//! `i` at byte `32·i`, made durable before the batch that records them as indexed):
//! agency, auditor, action and subject ids (u32 BE), occurred_at (i64 ns BE), received_at
//! (u64 ms BE): what a filter needs, without reading the event.
//!
//! The posting lists (which events have a term) in immutable segment files
//! (`<store>/search.segments/`, see the `segment` module): one per range of 16,384
//! events, written from the facts when the range is indexed, merged 16 at a time into
//! wider ones. Subjects are listed by bucket (the subject id modulo [`SUBJECT_BUCKETS`]),
//! each entry with its subject id, so that a subject's search skips the bucket's other
//! subjects without reading their facts. Events after the last segment (fewer than
//! 16,384) are searched through their facts.
//!
//! Memory stays flat: sled's cache is bounded and it holds little (terms and time spans),
//! a segment keeps one directory key in 32 in memory, the indexer keeps a bounded cache
//! of term states, and a search examines at most [`SCAN_BUDGET`] candidates per page (a
//! page may then hold fewer than `limit` events and carry a cursor to go on).
//!
//! Its one error type is [`IndexError`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::event::{LeafFields, StoredEvent};
use super::log::{EventLog, LogError};
use super::logfiles::nth_record;
use super::tlog::{self, Hash};

mod segment;
use segment::{ListCursor, Segment};

/// The index's directory, in the store's directory.
pub const INDEX_DIR: &str = "search";
/// The index's facts file, in the store's directory (beside [`INDEX_DIR`], which is
/// sled's).
pub const FACTS_FILE: &str = "search.facts";
/// The index's posting segments' directory, in the store's directory.
pub const SEGMENTS_DIR: &str = "search.segments";
/// The on-disk format; another is dropped and rebuilt.
const FORMAT: u64 = 4;
/// Events per bundle (as the log's).
const BUNDLE: u64 = 256;
/// Bundles per summary group.
const GROUP: u64 = 64;
/// Bytes of one event's facts.
const FACT: usize = 32;
/// Most events not yet indexed that a search reads from the log itself; more is a
/// [`IndexError::Behind`].
pub const MAX_TAIL: u64 = 100_000;
/// Most candidates one page examines.
pub const SCAN_BUDGET: u64 = 262_144;
/// Most events in a page.
pub const MAX_LIMIT: usize = 1_000;
/// Most subjects a `subject_prefix` is matched against through the index; a prefix of
/// more is checked on each event read.
const MAX_PREFIX_TERMS: usize = 4_096;
/// Most events indexed in one write.
const BATCH_EVENTS: u64 = 16_384;
/// The follower indexes at most this often, unless [`BATCH_EVENTS`] are waiting.
const COALESCE: Duration = Duration::from_millis(100);
/// Term states the indexer keeps in memory per kind: the ones used lately, between this
/// and twice this many. At least a batch's events: a term first seen in a batch is in no
/// store until the batch is written, so it must stay in memory until then (a generation
/// ends at most once per batch).
const TERM_CACHE: usize = 100_000;
const _: () = assert!(TERM_CACHE as u64 >= BATCH_EVENTS);
/// Subjects are many (often one per case or record): their events are listed by bucket
/// (the subject's id modulo this), so that lists are few and long; a search follows the
/// subject's bucket and keeps the subject's own events.
const SUBJECT_BUCKETS: u32 = 4_096;
/// Most buckets a subject prefix's search follows at once; a prefix of more is searched
/// by scanning.
const MAX_UNION_BUCKETS: usize = 256;
/// sled's page cache for the index.
const CACHE_BYTES: u64 = 64 << 20;

/// How posting segments are cut and merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tuning {
    /// A segment of level 0 covers the events up to the next multiple of this.
    segment_events: u64,
    /// This many segments of one level are merged into one of the next.
    fanout: usize,
    /// Segments of this level are not merged further.
    max_level: u64,
}

/// The appliance's tuning: segments of 16,384 events, merged 16 at a time up to
/// 67,108,864 events (so a log of 10 million events has at most about 30 segments).
const TUNING: Tuning = Tuning {
    segment_events: 16_384,
    fanout: 16,
    max_level: 3,
};

/// What can go wrong in the search index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The index's database failed.
    #[error("search index storage: {0}")]
    Storage(#[from] sled::Error),
    /// The index could not be opened.
    #[error("cannot open the search index at {path}: {source}")]
    Open {
        /// Its directory.
        path: PathBuf,
        /// sled's error.
        source: sled::Error,
    },
    /// The facts file failed.
    #[error("search index facts file: {0}")]
    Facts(std::io::Error),
    /// A posting segment file failed.
    #[error("search index segment files: {0}")]
    Segments(std::io::Error),
    /// A stored value does not have its form.
    #[error("search index damaged: {0}")]
    Corrupt(String),
    /// Reading the log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The index is too far behind the log for a search to read the rest itself.
    #[error(
        "the search index is catching up: {indexed} of {size} events indexed; try again shortly"
    )]
    Behind {
        /// Events indexed.
        indexed: u64,
        /// Events in the log.
        size: u64,
    },
    /// The cursor is not one this search gave.
    #[error("cursor: {0}")]
    BadCursor(&'static str),
    /// A bundle pruned from the local disk could not be read back from the archive.
    #[error("events {}..{} are in the archive, which cannot give them now: {detail}", bundle * 256, bundle * 256 + 256)]
    Archive {
        /// The bundle.
        bundle: u64,
        /// Why.
        detail: String,
    },
    /// The indexer thread could not start.
    #[error("cannot start the search indexer: {0}")]
    Thread(String),
}

/// The kinds of term the index keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Agency = 0,
    Auditor = 1,
    Action = 2,
    Subject = 3,
}

const KINDS: [Kind; 4] = [Kind::Agency, Kind::Auditor, Kind::Action, Kind::Subject];

/// What a search looks for: every filter given must match (exact text; times from
/// inclusive, to exclusive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// The agency.
    pub agency: Option<String>,
    /// The auditor.
    pub auditor: Option<String>,
    /// The action's name.
    pub action: Option<String>,
    /// The subject.
    pub subject: Option<String>,
    /// The start of the subject.
    pub subject_prefix: Option<String>,
    /// occurred_at at or after, Unix ns.
    pub occurred_from_ns: Option<i64>,
    /// occurred_at before, Unix ns.
    pub occurred_to_ns: Option<i64>,
    /// Received at or after, Unix ms.
    pub received_from_ms: Option<u64>,
    /// Received before, Unix ms.
    pub received_to_ms: Option<u64>,
}

/// The order of a search's answer, by index (which is the order of receipt).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// Highest index first.
    #[default]
    NewestFirst,
    /// Lowest index first.
    OldestFirst,
}

impl Query {
    /// Whether `e` matches every filter.
    pub fn matches(&self, e: &StoredEvent) -> bool {
        let ev = &e.event;
        let eq = |f: &Option<String>, v: &str| f.as_deref().is_none_or(|f| f == v);
        eq(&self.agency, &ev.agency)
            && eq(&self.auditor, &ev.auditor)
            && eq(&self.action, &ev.action.name())
            && eq(&self.subject, &ev.subject)
            && self
                .subject_prefix
                .as_deref()
                .is_none_or(|p| ev.subject.starts_with(p))
            && self.occurred_from_ns.is_none_or(|t| ev.occurred_at_ns >= t)
            && self.occurred_to_ns.is_none_or(|t| ev.occurred_at_ns < t)
            && self.received_from_ms.is_none_or(|t| e.received_at_ms >= t)
            && self.received_to_ms.is_none_or(|t| e.received_at_ms < t)
    }

    /// The exact filter of `kind`.
    fn term(&self, kind: Kind) -> Option<&str> {
        match kind {
            Kind::Agency => self.agency.as_deref(),
            Kind::Auditor => self.auditor.as_deref(),
            Kind::Action => self.action.as_deref(),
            Kind::Subject => self.subject.as_deref(),
        }
    }

    /// 8 bytes of SHA-256 over the filters and the order: what a cursor is bound to.
    fn fingerprint(&self, order: Order) -> [u8; 8] {
        let mut h = Sha256::new();
        let mut text = |t: &Option<String>| match t {
            Some(s) => {
                h.update([1]);
                h.update((s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
            None => h.update([0]),
        };
        text(&self.agency);
        text(&self.auditor);
        text(&self.action);
        text(&self.subject);
        text(&self.subject_prefix);
        let mut num = |t: Option<i128>| match t {
            Some(v) => {
                h.update([1]);
                h.update(v.to_be_bytes());
            }
            None => h.update([0]),
        };
        num(self.occurred_from_ns.map(i128::from));
        num(self.occurred_to_ns.map(i128::from));
        num(self.received_from_ms.map(i128::from));
        num(self.received_to_ms.map(i128::from));
        h.update([u8::from(order == Order::OldestFirst)]);
        let d = h.finalize();
        let mut out = [0u8; 8];
        out.copy_from_slice(&d[..8]);
        out
    }

    fn has_time(&self) -> bool {
        self.occurred_from_ns.is_some()
            || self.occurred_to_ns.is_some()
            || self.received_from_ms.is_some()
            || self.received_to_ms.is_some()
    }

    /// Whether a span of events with these least and greatest times can hold a match.
    fn overlaps(&self, s: &Span) -> bool {
        self.occurred_from_ns.is_none_or(|t| s.max_occ >= t)
            && self.occurred_to_ns.is_none_or(|t| s.min_occ < t)
            && self.received_from_ms.is_none_or(|t| s.max_recv >= t)
            && self.received_to_ms.is_none_or(|t| s.min_recv < t)
    }
}

/// Where a page ends: the next page starts there. Opaque to clients: base64url of a
/// version, the position, and the query's fingerprint (a cursor given with other filters
/// or another order is refused).
fn encode_cursor(position: u64, fingerprint: [u8; 8]) -> String {
    let mut b = Vec::with_capacity(17);
    b.push(1);
    b.extend_from_slice(&position.to_be_bytes());
    b.extend_from_slice(&fingerprint);
    URL_SAFE_NO_PAD.encode(b)
}

fn decode_cursor(s: &str, fingerprint: [u8; 8]) -> Result<u64, IndexError> {
    let b = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| IndexError::BadCursor("not a cursor this appliance gave"))?;
    if b.len() != 17 || b[0] != 1 {
        return Err(IndexError::BadCursor("not a cursor this appliance gave"));
    }
    if b[9..] != fingerprint {
        return Err(IndexError::BadCursor(
            "it belongs to a search with other filters or another order",
        ));
    }
    let mut p = [0u8; 8];
    p.copy_from_slice(&b[1..9]);
    Ok(u64::from_be_bytes(p))
}

/// One event of an answer, read from the log and checked.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Its index.
    pub index: u64,
    /// Its leaf hash (as the tree stores it).
    pub leaf_hash: Hash,
    /// The event.
    pub event: StoredEvent,
}

/// One page of an answer.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The events, in the order asked.
    pub hits: Vec<Hit>,
    /// Where the next page starts, when there may be more.
    pub next_cursor: Option<String>,
    /// Events below this index are not searched: they were pruned from this appliance
    /// before its index was built (0 when everything is searched).
    pub searched_from: u64,
    /// Candidates examined.
    pub examined: u64,
}

/// The least and greatest times of a span of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    min_occ: i64,
    max_occ: i64,
    min_recv: u64,
    max_recv: u64,
}

impl Span {
    fn of(occ: i64, recv: u64) -> Span {
        Span {
            min_occ: occ,
            max_occ: occ,
            min_recv: recv,
            max_recv: recv,
        }
    }
    fn widen(&mut self, o: &Span) {
        self.min_occ = self.min_occ.min(o.min_occ);
        self.max_occ = self.max_occ.max(o.max_occ);
        self.min_recv = self.min_recv.min(o.min_recv);
        self.max_recv = self.max_recv.max(o.max_recv);
    }
    fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&self.min_occ.to_be_bytes());
        b[8..16].copy_from_slice(&self.max_occ.to_be_bytes());
        b[16..24].copy_from_slice(&self.min_recv.to_be_bytes());
        b[24..].copy_from_slice(&self.max_recv.to_be_bytes());
        b
    }
    fn decode(b: &[u8]) -> Result<Span, IndexError> {
        if b.len() != 32 {
            return Err(IndexError::Corrupt(format!("a span of {} bytes", b.len())));
        }
        Ok(Span {
            min_occ: i64::from_be_bytes(arr(&b[..8])),
            max_occ: i64::from_be_bytes(arr(&b[8..16])),
            min_recv: u64::from_be_bytes(arr(&b[16..24])),
            max_recv: u64::from_be_bytes(arr(&b[24..])),
        })
    }
}

/// The first 8 bytes of `b` (callers pass slices of 8).
fn arr(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    let n = b.len().min(8);
    a[..n].copy_from_slice(&b[..n]);
    a
}

/// One event's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fact {
    ids: [u32; 4],
    occ: i64,
    recv: u64,
}

impl Fact {
    fn encode(&self, out: &mut Vec<u8>) {
        for id in self.ids {
            out.extend_from_slice(&id.to_be_bytes());
        }
        out.extend_from_slice(&self.occ.to_be_bytes());
        out.extend_from_slice(&self.recv.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Fact {
        let id = |i: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&b[i * 4..i * 4 + 4]);
            u32::from_be_bytes(a)
        };
        Fact {
            ids: [id(0), id(1), id(2), id(3)],
            occ: i64::from_be_bytes(arr(&b[16..24])),
            recv: u64::from_be_bytes(arr(&b[24..32])),
        }
    }
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn meta_key(name: &str) -> Vec<u8> {
    let mut k = b"m".to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

fn dict_key(kind: Kind, term: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + term.len());
    k.push(b'd');
    k.push(kind as u8);
    k.extend_from_slice(term.as_bytes());
    k
}

fn numbered_key(tag: u8, n: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = tag;
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

struct Shared {
    db: sled::Db,
    tree: sled::Tree,
    /// Each indexed event's facts, event `i` at byte `32·i`.
    facts: std::fs::File,
    /// The posting segments' directory.
    segments_dir: PathBuf,
    /// The live posting segments, in order: contiguous from the first event indexed.
    segments: RwLock<Arc<Vec<Arc<Segment>>>>,
    tuning: Tuning,
    /// Events indexed (all below are).
    indexed: AtomicU64,
    /// The first event indexed.
    start: AtomicU64,
    /// Tells the indexer thread to stop.
    stop: AtomicBool,
    /// Searched events whose leaf did not match what the index said (since start).
    mismatches: AtomicU64,
}

impl Shared {
    /// The live segments now (a search keeps these, and their files, for its page).
    fn segments(&self) -> Arc<Vec<Arc<Segment>>> {
        Arc::clone(
            &self
                .segments
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn set_segments(&self, list: Vec<Arc<Segment>>) {
        *self
            .segments
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(list);
    }
}

/// The search index of one event log. The indexer thread started by
/// [`SearchIndex::follow`] stops when this is dropped.
pub struct SearchIndex {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("indexed", &self.indexed())
            .finish_non_exhaustive()
    }
}

impl Drop for SearchIndex {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

fn read_u64(tree: &sled::Tree, name: &str) -> Result<Option<u64>, IndexError> {
    tree.get(meta_key(name))?
        .map(|v| {
            if v.len() == 8 {
                Ok(u64::from_be_bytes(arr(&v)))
            } else {
                Err(IndexError::Corrupt(format!(
                    "meta {name} has {} bytes",
                    v.len()
                )))
            }
        })
        .transpose()
}

impl SearchIndex {
    /// Opens the index of `log`, kept in `store_dir`/search (created when missing). An
    /// index that does not match the log (another format, longer than the log, or whose
    /// last indexed event is not the log's) is emptied, to be built again; a database
    /// that cannot be opened is removed and made anew (it is derived from the log).
    pub fn open(store_dir: &Path, log: &EventLog) -> Result<SearchIndex, IndexError> {
        SearchIndex::open_tuned(store_dir, log, TUNING)
    }

    fn open_tuned(
        store_dir: &Path,
        log: &EventLog,
        tuning: Tuning,
    ) -> Result<SearchIndex, IndexError> {
        let dir = store_dir.join(INDEX_DIR);
        let db = match open_db(&dir) {
            Ok(db) => db,
            // Held by another handle (another process on this store, or in this one a handle
            // sled has not closed yet): an error, never a reason to remove it.
            Err(e @ IndexError::Open { .. }) if is_locked(&e) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "the search index cannot be opened; it is removed and built again");
                std::fs::remove_dir_all(&dir).map_err(|io| IndexError::Open {
                    path: dir.clone(),
                    source: sled::Error::Io(io),
                })?;
                open_db(&dir)?
            }
        };
        let tree = db.open_tree("index")?;
        let facts = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(store_dir.join(FACTS_FILE))
            .map_err(IndexError::Facts)?;
        let segments_dir = store_dir.join(SEGMENTS_DIR);
        std::fs::create_dir_all(&segments_dir).map_err(IndexError::Segments)?;
        let index = SearchIndex {
            shared: Arc::new(Shared {
                db,
                tree,
                facts,
                segments_dir,
                segments: RwLock::new(Arc::new(Vec::new())),
                tuning,
                indexed: AtomicU64::new(0),
                start: AtomicU64::new(0),
                stop: AtomicBool::new(false),
                mismatches: AtomicU64::new(0),
            }),
        };
        let new = read_u64(&index.shared.tree, "format")?.is_none();
        let why = match index.mismatch(log)? {
            Some(why) => Some(why),
            None => index.load_segments()?.err(),
        };
        if let Some(why) = why {
            if new {
                tracing::info!("the search index is new; it is built from the event log");
            } else {
                tracing::warn!(reason = %why, "the search index does not match the event log; it is built again");
            }
            index.clear(log)?;
        } else {
            let t = &index.shared.tree;
            index
                .shared
                .indexed
                .store(read_u64(t, "size")?.unwrap_or(0), Ordering::SeqCst);
            index
                .shared
                .start
                .store(read_u64(t, "start")?.unwrap_or(0), Ordering::SeqCst);
        }
        index.remove_unlisted_segments()?;
        Ok(index)
    }

    /// The manifest: each live segment's range and level.
    fn manifest(&self) -> Result<Vec<(u64, u64, u64)>, IndexError> {
        let v = self
            .shared
            .tree
            .get(meta_key("segments"))?
            .unwrap_or_default();
        if v.len() % 24 != 0 {
            return Err(IndexError::Corrupt(format!(
                "a segment manifest of {} bytes",
                v.len()
            )));
        }
        Ok(v.chunks_exact(24)
            .map(|c| {
                (
                    u64::from_be_bytes(arr(&c[..8])),
                    u64::from_be_bytes(arr(&c[8..16])),
                    u64::from_be_bytes(arr(&c[16..])),
                )
            })
            .collect())
    }

    /// Loads the segments the manifest names into memory; `Err(why)` when they are not
    /// the index's (not contiguous from its start, or past its size). From one that is
    /// missing or damaged on, they are dropped from the manifest, to be written again.
    fn load_segments(&self) -> Result<Result<(), String>, IndexError> {
        let t = &self.shared.tree;
        let mut at = read_u64(t, "start")?.unwrap_or(0);
        let size = read_u64(t, "size")?.unwrap_or(0);
        let mut loaded = Vec::new();
        for (lo, hi, level) in self.manifest()? {
            if lo != at || hi <= lo || hi > size {
                return Ok(Err(format!(
                    "its segment {lo}..{hi} does not follow {at} within {size} events"
                )));
            }
            let path = self
                .shared
                .segments_dir
                .join(segment::file_name(lo, hi, level));
            match Segment::load(&path, lo, hi, level) {
                Ok(s) => loaded.push(Arc::new(s)),
                Err(e) => {
                    // Segments are made from the facts file: this one and those after it are
                    // dropped (their files removed as unlisted) and written again from it.
                    tracing::warn!(error = %e, from = lo, "a search index segment cannot be read; it and the ones after it are written again from the index's facts");
                    t.insert(meta_key("segments"), encode_manifest(&loaded))?;
                    self.shared.db.flush()?;
                    break;
                }
            }
            at = hi;
        }
        self.shared.set_segments(loaded);
        Ok(Ok(()))
    }

    /// Removes the files of the segments directory that the manifest does not name (left
    /// by a crash during a write or a merge).
    fn remove_unlisted_segments(&self) -> Result<(), IndexError> {
        let keep: HashSet<String> = self
            .manifest()?
            .into_iter()
            .map(|(lo, hi, level)| segment::file_name(lo, hi, level))
            .collect();
        let dir = std::fs::read_dir(&self.shared.segments_dir).map_err(IndexError::Segments)?;
        for entry in dir {
            let entry = entry.map_err(IndexError::Segments)?;
            if !keep.contains(entry.file_name().to_string_lossy().as_ref()) {
                std::fs::remove_file(entry.path()).map_err(IndexError::Segments)?;
            }
        }
        Ok(())
    }

    /// Why the stored index is not the log's, if it is not.
    fn mismatch(&self, log: &EventLog) -> Result<Option<String>, IndexError> {
        let t = &self.shared.tree;
        let Some(format) = read_u64(t, "format")? else {
            return Ok(Some("it is new".into()));
        };
        if format != FORMAT {
            return Ok(Some(format!(
                "format {format}, this version writes {FORMAT}"
            )));
        }
        let segment_events = read_u64(t, "segment_events")?;
        if segment_events != Some(self.shared.tuning.segment_events) {
            return Ok(Some(format!(
                "segments of {segment_events:?} events, this index cuts {}",
                self.shared.tuning.segment_events
            )));
        }
        let size = read_u64(t, "size")?.unwrap_or(0);
        if size > log.size() {
            return Ok(Some(format!(
                "it indexes {size} events, the log holds {}",
                log.size()
            )));
        }
        if let Some(last) = size.checked_sub(1) {
            let stored = t.get(meta_key("last"))?;
            if stored.as_deref() != Some(&log.stored_leaf_hash(last)?[..]) {
                return Ok(Some(format!("event {last} is not the one it indexed")));
            }
        }
        let facts = self.facts_len()?;
        if facts < size * FACT as u64 {
            return Ok(Some(format!(
                "its facts file holds {} of {size} events",
                facts / FACT as u64
            )));
        }
        Ok(None)
    }

    /// Empties the index and marks it as starting at the log's first unpruned event.
    fn clear(&self, log: &EventLog) -> Result<(), IndexError> {
        let t = &self.shared.tree;
        t.clear()?;
        self.shared.facts.set_len(0).map_err(IndexError::Facts)?;
        self.shared.set_segments(Vec::new());
        self.remove_unlisted_segments()?;
        let start = log.pruned_below() * BUNDLE;
        let mut b = sled::Batch::default();
        b.insert(meta_key("format"), &FORMAT.to_be_bytes());
        b.insert(meta_key("size"), &start.to_be_bytes());
        b.insert(meta_key("start"), &start.to_be_bytes());
        b.insert(
            meta_key("segment_events"),
            &self.shared.tuning.segment_events.to_be_bytes(),
        );
        t.apply_batch(b)?;
        if start > 0 {
            tracing::warn!(
                below = start,
                "events pruned from this appliance before its search index was built are not searched"
            );
        }
        self.shared.db.flush()?;
        self.shared.indexed.store(start, Ordering::SeqCst);
        self.shared.start.store(start, Ordering::SeqCst);
        Ok(())
    }

    /// Drops everything indexed, to build it again from the log ([`Self::catch_up`]).
    pub fn rebuild(&self, log: &EventLog) -> Result<(), IndexError> {
        self.clear(log)
    }

    /// Events indexed: every event below this is.
    pub fn indexed(&self) -> u64 {
        self.shared.indexed.load(Ordering::SeqCst)
    }

    /// Searched events whose leaf did not match what the index said, since start.
    pub fn mismatches(&self) -> u64 {
        self.shared.mismatches.load(Ordering::Relaxed)
    }

    /// Bytes the index occupies on disk: its sled database, its facts file and its
    /// posting segments.
    pub fn disk_bytes(&self) -> Result<u64, IndexError> {
        Ok(self.shared.db.size_on_disk()? + self.facts_len()? + self.segment_bytes())
    }

    fn segment_bytes(&self) -> u64 {
        self.shared.segments().iter().map(|s| s.file_bytes()).sum()
    }

    /// The length of the facts file.
    fn facts_len(&self) -> Result<u64, IndexError> {
        Ok(self
            .shared
            .facts
            .metadata()
            .map_err(IndexError::Facts)?
            .len())
    }

    /// The bytes of the index's keys and values, its facts and its segments (a full scan:
    /// for measurements); what [`Self::disk_bytes`] holds beyond this is sled's own overhead
    /// and space not reclaimed yet.
    pub fn live_bytes(&self) -> Result<u64, IndexError> {
        let mut total = self.indexed() * FACT as u64 + self.segment_bytes();
        for kv in self.shared.tree.iter() {
            let (k, v) = kv?;
            total += (k.len() + v.len()) as u64;
        }
        Ok(total)
    }

    /// Indexes every event the log holds now; `progress` is told (indexed, log size)
    /// after each batch. Returns the events indexed.
    pub fn catch_up(&self, log: &EventLog, progress: &dyn Fn(u64, u64)) -> Result<u64, IndexError> {
        let mut indexer = Indexer::new(Arc::clone(&self.shared));
        let size = log.size();
        while self.indexed() < size {
            indexer.index_next(log, size)?;
            progress(self.indexed(), size);
        }
        // Segments a crash left unwritten.
        indexer.seal()?;
        self.shared.db.flush()?;
        Ok(self.indexed())
    }

    /// Starts the thread that indexes each commit of `log` after it is durable (and first
    /// what the index lacks), in batches at most every [`COALESCE`] unless a whole batch
    /// is waiting: each batch syncs the facts and the database, and syncs many and small
    /// would slow the log's own. It stops when this index is dropped. A failed batch is
    /// logged and tried again a second later.
    pub fn follow(&self, log: EventLog) -> Result<(), IndexError> {
        let signal = log.commit_signal();
        let shared = Arc::clone(&self.shared);
        std::thread::Builder::new()
            .name("search-index".into())
            .spawn(move || {
                lower_priority();
                let mut indexer = Indexer::new(Arc::clone(&shared));
                // Segments a crash left unwritten (later ones are written as events come).
                if let Err(e) = indexer.seal() {
                    tracing::error!(error = %e, "search index segments cannot be written; retried with the next events");
                }
                let mut failing = false;
                let mut last_batch: Option<std::time::Instant> = None;
                while !shared.stop.load(Ordering::SeqCst) {
                    let size = log.size();
                    let indexed = shared.indexed.load(Ordering::SeqCst);
                    if indexed < size {
                        let wait = last_batch
                            .map_or(Duration::ZERO, |t| COALESCE.saturating_sub(t.elapsed()));
                        if size - indexed < BATCH_EVENTS && !wait.is_zero() {
                            // More commits may come meanwhile, to go in the same batch.
                            let _ = signal.recv_timeout(wait);
                            continue;
                        }
                        last_batch = Some(std::time::Instant::now());
                        match indexer.index_next(&log, size) {
                            Ok(()) => failing = false,
                            Err(e) => {
                                if !failing {
                                    tracing::error!(error = %e, "search indexing failed; retrying");
                                }
                                failing = true;
                                indexer = Indexer::new(Arc::clone(&shared));
                                std::thread::sleep(Duration::from_secs(1));
                            }
                        }
                        continue;
                    }
                    // Woken by the next commit; the timeout only checks for the stop.
                    let _ = signal.recv_timeout(Duration::from_millis(500));
                }
                let _ = shared.db.flush();
            })
            .map_err(|e| IndexError::Thread(e.to_string()))?;
        Ok(())
    }

    /// One page of the events that match `query`, in `order`, at most `limit` (1 to
    /// [`MAX_LIMIT`]), from `cursor` (a previous page's [`Page::next_cursor`]) or the
    /// start. Every event is read from the log and checked (leaf hash against the stored
    /// one, filters against the decoded event); `pruned` gives a bundle pruned from the
    /// local disk (read back from the archive and checked against the stored hashes).
    pub fn search(
        &self,
        log: &EventLog,
        query: &Query,
        order: Order,
        limit: usize,
        cursor: Option<&str>,
        pruned: &dyn Fn(u64) -> Result<Vec<Vec<u8>>, IndexError>,
    ) -> Result<Page, IndexError> {
        let limit = limit.clamp(1, MAX_LIMIT);
        // The segments before the indexed size: every segment ends at or below it.
        let segments = self.shared.segments();
        let size = log.size();
        let indexed = self.indexed().min(size);
        if size - indexed > MAX_TAIL {
            return Err(IndexError::Behind { indexed, size });
        }
        let start = self.shared.start.load(Ordering::SeqCst).min(indexed);
        let fingerprint = query.fingerprint(order);
        let position = cursor.map(|c| decode_cursor(c, fingerprint)).transpose()?;
        let plan = Plan::new(&self.shared.tree, query, indexed, &segments)?;
        let mut run = Run {
            log,
            query,
            pruned,
            bundle: None,
            hits: Vec::with_capacity(limit),
            limit,
            examined: 0,
            mismatches: 0,
        };
        // The candidates, in order: the events not indexed yet read from the log, and the
        // indexed ones through the index.
        let stopped = match order {
            Order::NewestFirst => {
                let bound = position.unwrap_or(size).min(size);
                let tail = run.scan_log((indexed.max(start)..bound).rev(), order)?;
                match tail {
                    Some(at) => Some(at),
                    None => plan.candidates(
                        &self.shared.facts,
                        &mut run,
                        start..bound.min(indexed),
                        order,
                    )?,
                }
            }
            Order::OldestFirst => {
                let from = position.unwrap_or(start).max(start);
                match plan.candidates(&self.shared.facts, &mut run, from..indexed, order)? {
                    Some(at) => Some(at),
                    None => run.scan_log(from.max(indexed)..size, order)?,
                }
            }
        };
        if run.mismatches > 0 {
            self.shared
                .mismatches
                .fetch_add(run.mismatches, Ordering::Relaxed);
            tracing::error!(
                events = run.mismatches,
                "the search index named events that do not match the log; they were left out of the answer (rebuild it with chain verify --reindex)"
            );
        }
        Ok(Page {
            next_cursor: stopped.map(|at| encode_cursor(at, fingerprint)),
            hits: run.hits,
            searched_from: start,
            examined: run.examined,
        })
    }
}

/// Lowers the calling thread's priorities to the least, so that on a busy machine appends
/// and tokens go first and the index catches up when there is time: its CPU (nice 19:
/// against threads of normal priority about 1.5% of a CPU's share) and its disk I/O (the
/// idle class: its writes and syncs wait while others' are queued, in the schedulers
/// that order by class, such as mq-deadline and BFQ). At nice 10 and normal I/O priority
/// it cost in-process appends 10-20% of their rate on two cores. Under load that never
/// pauses it falls behind, which `/readyz` and `/metrics` show. What cannot be lowered
/// stays at normal priority.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn lower_priority() {
    /// `IOPRIO_WHO_PROCESS`, `IOPRIO_CLASS_IDLE` and the class's shift (linux/ioprio.h).
    const WHO_PROCESS: libc::c_long = 1;
    const CLASS_IDLE: libc::c_long = 3;
    const CLASS_SHIFT: libc::c_long = 13;
    // SAFETY: gettid, setpriority and the ioprio_set system call take and return plain
    // integers and touch no memory of this process; with a thread id, PRIO_PROCESS and
    // IOPRIO_WHO_PROCESS change that thread only (Linux).
    let (cpu, io) = unsafe {
        let tid = libc::gettid();
        (
            libc::setpriority(libc::PRIO_PROCESS, tid.unsigned_abs(), 19),
            libc::syscall(
                libc::SYS_ioprio_set,
                WHO_PROCESS,
                libc::c_long::from(tid),
                CLASS_IDLE << CLASS_SHIFT,
            ),
        )
    };
    if cpu != 0 || io != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), cpu, io, "the search indexer runs at normal priority for CPU (cpu = -1) or disk (io = -1)");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// Whether opening failed on the database's file lock.
fn is_locked(e: &IndexError) -> bool {
    match e {
        IndexError::Open {
            source: sled::Error::Io(io),
            ..
        } => {
            io.kind() == std::io::ErrorKind::WouldBlock
                || io.raw_os_error() == Some(libc::EWOULDBLOCK)
                || io.to_string().contains("lock")
        }
        _ => false,
    }
}

fn open_db(dir: &Path) -> Result<sled::Db, IndexError> {
    sled::Config::new()
        .path(dir)
        .mode(sled::Mode::LowSpace)
        .cache_capacity(CACHE_BYTES)
        // Flushed by the indexer after each batch, in its thread of the lowest priorities,
        // rather than by sled's own thread every 500 ms at normal priority.
        .flush_every_ms(None)
        .open()
        .map_err(|source| IndexError::Open {
            path: dir.to_owned(),
            source,
        })
}

/// A bundle's events as read: the log's stored records, or leaves read back from the
/// archive.
enum Bundle {
    Records(Vec<u8>),
    Leaves(Vec<Vec<u8>>),
}

/// One search page in progress: the hits so far and the bundle last read.
struct Run<'a> {
    log: &'a EventLog,
    query: &'a Query,
    pruned: &'a dyn Fn(u64) -> Result<Vec<Vec<u8>>, IndexError>,
    /// The bundle last read: its number and events.
    bundle: Option<(u64, Bundle)>,
    hits: Vec<Hit>,
    limit: usize,
    examined: u64,
    /// Candidates the index named whose event does not match.
    mismatches: u64,
}

impl Run<'_> {
    /// The leaf of event `index`, from the bundle last read or the log (or the archive).
    fn leaf(&mut self, index: u64) -> Result<Option<&[u8]>, IndexError> {
        let n = index / BUNDLE;
        if self.bundle.as_ref().is_none_or(|(b, _)| *b != n) {
            let read = match self.log.bundle_records(n) {
                Ok(records) => Bundle::Records(records),
                Err(LogError::Pruned { bundle }) => Bundle::Leaves((self.pruned)(bundle)?),
                Err(e) => return Err(e.into()),
            };
            self.bundle = Some((n, read));
        }
        let at = usize::try_from(index % BUNDLE).unwrap_or(usize::MAX);
        Ok(match self.bundle.as_ref() {
            Some((_, Bundle::Records(r))) => nth_record(r, at),
            Some((_, Bundle::Leaves(l))) => l.get(at).map(Vec::as_slice),
            None => None,
        })
    }

    /// Reads event `index` from the log and keeps it when it is intact and matches.
    /// Returns whether it was kept.
    fn check(&mut self, index: u64, from_index: bool) -> Result<bool, IndexError> {
        let Some(leaf) = self.leaf(index)? else {
            return Err(IndexError::Corrupt(format!(
                "event {index} is indexed but not in the log"
            )));
        };
        let hash = tlog::leaf_hash(leaf);
        let event = StoredEvent::from_leaf_bytes(leaf).ok();
        let intact = event.as_ref().is_some_and(|e| e.index == index)
            && self.log.stored_leaf_hash(index)? == hash;
        if !intact {
            return Err(LogError::Corrupt(format!(
                "event {index} does not match its stored leaf hash"
            ))
            .into());
        }
        match event {
            Some(event) if self.query.matches(&event) => {
                self.hits.push(Hit {
                    index,
                    leaf_hash: hash,
                    event,
                });
                Ok(true)
            }
            _ => {
                // The index said it matched on everything it knows; only a subject prefix
                // too broad for the index is left to the event itself.
                if from_index && self.query.subject_prefix.is_none() {
                    self.mismatches += 1;
                }
                Ok(false)
            }
        }
    }

    /// Checks the events of `indexes` (not in the index) one by one, in `order`. Returns
    /// where the next page starts, if this one filled up or spent its budget.
    fn scan_log(
        &mut self,
        indexes: impl Iterator<Item = u64>,
        order: Order,
    ) -> Result<Option<u64>, IndexError> {
        for i in indexes {
            if self.full() {
                return Ok(Some(resume_at(i, order)));
            }
            self.examined += 1;
            self.check(i, false)?;
        }
        Ok(None)
    }

    /// Whether the page must end here: it is full, or its budget is spent.
    fn full(&self) -> bool {
        self.hits.len() >= self.limit || self.examined >= SCAN_BUDGET
    }
}

/// The cursor position of a page that ends before candidate `i`: newest first, the next
/// page takes the indexes below `i + 1`; oldest first, those from `i` on.
fn resume_at(i: u64, order: Order) -> u64 {
    match order {
        Order::NewestFirst => i + 1,
        Order::OldestFirst => i,
    }
}

/// How the indexed part of a query is searched.
struct Plan {
    /// The id of each exact filter's term (`Some(None)`: the term is in no event).
    ids: [Option<Option<u32>>; 4],
    /// The subject ids a prefix matches, when few enough to check in the index.
    prefix: Option<HashSet<u32>>,
    /// The posting lists whose union holds every match, when one is worth following:
    /// the exact filter with the fewest events (a subject: its bucket), or the buckets
    /// of a prefix's subjects.
    leader: Option<Vec<(Kind, u32)>>,
    query: Query,
    tree: sled::Tree,
    segments: Arc<Vec<Arc<Segment>>>,
}

impl Plan {
    fn new(
        tree: &sled::Tree,
        query: &Query,
        indexed: u64,
        segments: &Arc<Vec<Arc<Segment>>>,
    ) -> Result<Plan, IndexError> {
        let mut ids = [None; 4];
        // The leader and an estimate of how many events its lists hold.
        let mut leader: Option<(Vec<(Kind, u32)>, u64)> = None;
        let per_bucket = indexed / u64::from(SUBJECT_BUCKETS) + 1;
        for kind in KINDS {
            let Some(term) = query.term(kind) else {
                continue;
            };
            let found = tree
                .get(dict_key(kind, term))?
                .map(|v| decode_term(&v))
                .transpose()?;
            ids[kind as usize] = Some(found.map(|(id, _)| id));
            let Some((id, count)) = found else {
                continue;
            };
            let (list, estimate) = match kind {
                Kind::Subject => ((kind, subject_bucket(id)), per_bucket),
                _ => ((kind, id), count),
            };
            if leader.as_ref().is_none_or(|(_, c)| estimate < *c) {
                leader = Some((vec![list], estimate));
            }
        }
        let mut prefix = None;
        if let Some(p) = &query.subject_prefix {
            let mut set = HashSet::new();
            let mut too_many = false;
            for kv in tree.scan_prefix(dict_key(Kind::Subject, p)) {
                let (_, v) = kv?;
                if set.len() == MAX_PREFIX_TERMS {
                    too_many = true;
                    break;
                }
                set.insert(decode_term(&v)?.0);
            }
            if !too_many {
                let buckets: HashSet<u32> = set.iter().map(|&id| subject_bucket(id)).collect();
                let estimate = buckets.len() as u64 * per_bucket;
                if buckets.len() <= MAX_UNION_BUCKETS
                    && leader.as_ref().is_none_or(|(_, c)| estimate < *c)
                {
                    let mut lists: Vec<(Kind, u32)> =
                        buckets.into_iter().map(|b| (Kind::Subject, b)).collect();
                    lists.sort_unstable();
                    leader = Some((lists, estimate));
                }
                prefix = Some(set);
            }
        }
        Ok(Plan {
            ids,
            prefix,
            leader: leader.map(|(lists, _)| lists),
            query: query.clone(),
            tree: tree.clone(),
            segments: Arc::clone(segments),
        })
    }

    /// Whether an exact filter names a term no event has, or a prefix no subject has.
    fn empty(&self) -> bool {
        self.ids.iter().any(|i| matches!(i, Some(None)))
            || self.prefix.as_ref().is_some_and(HashSet::is_empty)
    }

    /// Whether an event of subject `id` may match the subject filters.
    fn subject_may_match(&self, id: u32) -> bool {
        self.ids[Kind::Subject as usize].is_none_or(|want| want == Some(id))
            && self.prefix.as_ref().is_none_or(|s| s.contains(&id))
    }

    fn fact_matches(&self, f: &Fact) -> bool {
        self.ids
            .iter()
            .zip(f.ids)
            .all(|(want, have)| want.is_none_or(|w| w == Some(have)))
            && self.prefix.as_ref().is_none_or(|s| s.contains(&f.ids[3]))
            && self.query.occurred_from_ns.is_none_or(|t| f.occ >= t)
            && self.query.occurred_to_ns.is_none_or(|t| f.occ < t)
            && self.query.received_from_ms.is_none_or(|t| f.recv >= t)
            && self.query.received_to_ms.is_none_or(|t| f.recv < t)
    }

    /// Goes through the indexed events of `range` in `order` that the index says match,
    /// checking each against the log, until the page fills or its budget is spent.
    /// Returns where the next page starts then.
    fn candidates(
        &self,
        facts_file: &std::fs::File,
        run: &mut Run<'_>,
        range: std::ops::Range<u64>,
        order: Order,
    ) -> Result<Option<u64>, IndexError> {
        if range.is_empty() || self.empty() {
            return Ok(None);
        }
        let mut facts = FactReader::new(facts_file);
        let spans = SpanReader {
            tree: &self.tree,
            query: &self.query,
            on: self.query.has_time(),
        };
        // The group last asked about, and whether its times may match.
        let mut group: Option<(u64, bool)> = None;
        // Considers candidate `i` (with its subject id when a list gave it); where the next
        // page starts if this one ends before it.
        let mut consider =
            |i: u64, subject: Option<u32>, run: &mut Run<'_>| -> Result<Option<u64>, IndexError> {
                if run.full() {
                    return Ok(Some(resume_at(i, order)));
                }
                run.examined += 1;
                if subject.is_some_and(|id| !self.subject_may_match(id)) {
                    return Ok(None);
                }
                let g = i / (BUNDLE * GROUP);
                if group.is_none_or(|(gg, _)| gg != g) {
                    group = Some((g, spans.may_match(b'g', g)?));
                }
                if group.is_some_and(|(_, ok)| !ok) {
                    return Ok(None);
                }
                if facts.get(i)?.is_some_and(|f| self.fact_matches(&f)) {
                    run.check(i, true)?;
                }
                Ok(None)
            };
        let Some(lists) = &self.leader else {
            // No list to follow: every indexed event is a candidate.
            return scan(&spans, &mut consider, run, range, order);
        };
        // The lists are in the segments; the events after the last segment (fewer than a
        // segment's) are scanned.
        let split = self
            .segments
            .last()
            .map_or(range.start, |s| s.hi)
            .clamp(range.start, range.end);
        let mut merged = Merged::new(&self.segments, lists, &(range.start..split), order)?;
        match order {
            Order::NewestFirst => {
                match scan(&spans, &mut consider, run, split..range.end, order)? {
                    Some(at) => Ok(Some(at)),
                    None => merged.follow(&mut consider, run),
                }
            }
            Order::OldestFirst => match merged.follow(&mut consider, run)? {
                Some(at) => Ok(Some(at)),
                None => scan(&spans, &mut consider, run, split..range.end, order),
            },
        }
    }
}

/// What a plan does with each candidate: see [`Plan::candidates`].
type Consider<'c, 'r> =
    dyn FnMut(u64, Option<u32>, &mut Run<'r>) -> Result<Option<u64>, IndexError> + 'c;

/// Considers every event of `range` in `order`, bundle by bundle, skipping the groups and
/// bundles whose times cannot match. Returns where the next page starts if this one ends.
fn scan<'r>(
    spans: &SpanReader<'_>,
    consider: &mut Consider<'_, 'r>,
    run: &mut Run<'r>,
    range: std::ops::Range<u64>,
    order: Order,
) -> Result<Option<u64>, IndexError> {
    if range.is_empty() {
        return Ok(None);
    }
    let first_b = range.start / BUNDLE;
    let last_b = (range.end - 1) / BUNDLE;
    let bundles: Box<dyn Iterator<Item = u64>> = match order {
        Order::NewestFirst => Box::new((first_b..=last_b).rev()),
        Order::OldestFirst => Box::new(first_b..=last_b),
    };
    let mut group_ok: Option<(u64, bool)> = None;
    for b in bundles {
        let g = b / GROUP;
        if group_ok.is_none_or(|(gg, _)| gg != g) {
            group_ok = Some((g, spans.may_match(b'g', g)?));
        }
        let skip = group_ok.is_some_and(|(_, ok)| !ok) || !spans.may_match(b's', b)?;
        let lo = (b * BUNDLE).max(range.start);
        let hi = (b * BUNDLE + BUNDLE).min(range.end);
        if skip {
            // The whole bundle is passed over: the next page starts past it.
            run.examined += 1;
            if run.full() {
                return Ok(Some(match order {
                    Order::NewestFirst => lo,
                    Order::OldestFirst => hi,
                }));
            }
            continue;
        }
        let within: Box<dyn Iterator<Item = u64>> = match order {
            Order::NewestFirst => Box::new((lo..hi).rev()),
            Order::OldestFirst => Box::new(lo..hi),
        };
        for i in within {
            if let Some(at) = consider(i, None, run)? {
                return Ok(Some(at));
            }
        }
    }
    Ok(None)
}

/// Disjoint posting lists merged into one stream, in order.
struct Merged {
    cursors: Vec<ListCursor>,
    /// Each cursor's next entry (with the subject id in a subject bucket's list).
    heads: Vec<Option<(u64, Option<u32>)>>,
    paired: Vec<bool>,
    order: Order,
}

impl Merged {
    fn new(
        segments: &[Arc<Segment>],
        lists: &[(Kind, u32)],
        range: &std::ops::Range<u64>,
        order: Order,
    ) -> Result<Merged, IndexError> {
        let mut m = Merged {
            cursors: Vec::with_capacity(lists.len()),
            heads: Vec::with_capacity(lists.len()),
            paired: Vec::with_capacity(lists.len()),
            order,
        };
        for &(kind, id) in lists {
            let mut c = ListCursor::new(segments, (kind as u8, id), range.clone(), order);
            let paired = kind == Kind::Subject;
            m.heads
                .push(c.next()?.map(|(i, s)| (i, paired.then_some(s))));
            m.cursors.push(c);
            m.paired.push(paired);
        }
        Ok(m)
    }

    /// Considers each entry in turn; where the next page starts if this one ends.
    fn follow<'r>(
        &mut self,
        consider: &mut Consider<'_, 'r>,
        run: &mut Run<'r>,
    ) -> Result<Option<u64>, IndexError> {
        while let Some((i, subject)) = self.next()? {
            if let Some(at) = consider(i, subject, run)? {
                return Ok(Some(at));
            }
        }
        Ok(None)
    }

    fn next(&mut self) -> Result<Option<(u64, Option<u32>)>, IndexError> {
        let best = self
            .heads
            .iter()
            .enumerate()
            .filter_map(|(k, h)| h.map(|e| (k, e)))
            .reduce(|a, b| match self.order {
                Order::NewestFirst if b.1 .0 > a.1 .0 => b,
                Order::OldestFirst if b.1 .0 < a.1 .0 => b,
                _ => a,
            });
        let Some((k, e)) = best else {
            return Ok(None);
        };
        let paired = self.paired[k];
        self.heads[k] = self.cursors[k]
            .next()?
            .map(|(i, s)| (i, paired.then_some(s)));
        Ok(Some(e))
    }
}

/// The manifest of `list`: each segment's lo, hi and level (u64 BE).
fn encode_manifest(list: &[Arc<Segment>]) -> Vec<u8> {
    let mut manifest = Vec::with_capacity(list.len() * 24);
    for s in list {
        for n in [s.lo, s.hi, s.level] {
            manifest.extend_from_slice(&n.to_be_bytes());
        }
    }
    manifest
}

/// The bucket of a subject's posting list: its id modulo [`SUBJECT_BUCKETS`] (ids are
/// given in order of first use, so buckets fill evenly). Part of the stored format.
fn subject_bucket(id: u32) -> u32 {
    id % SUBJECT_BUCKETS
}

fn decode_term(v: &[u8]) -> Result<(u32, u64), IndexError> {
    if v.len() != 12 {
        return Err(IndexError::Corrupt(format!("a term of {} bytes", v.len())));
    }
    let mut id = [0u8; 4];
    id.copy_from_slice(&v[..4]);
    Ok((u32::from_be_bytes(id), u64::from_be_bytes(arr(&v[4..]))))
}

fn encode_term(id: u32, count: u64) -> [u8; 12] {
    let mut v = [0u8; 12];
    v[..4].copy_from_slice(&id.to_be_bytes());
    v[4..].copy_from_slice(&count.to_be_bytes());
    v
}

/// Reads facts from the facts file, a bundle's at a time, keeping the bundle last read.
struct FactReader<'a> {
    file: &'a std::fs::File,
    bundle: Option<(u64, Vec<u8>)>,
}

impl<'a> FactReader<'a> {
    fn new(file: &'a std::fs::File) -> Self {
        FactReader { file, bundle: None }
    }
    fn get(&mut self, i: u64) -> Result<Option<Fact>, IndexError> {
        use std::os::unix::fs::FileExt;
        let n = i / BUNDLE;
        if self.bundle.as_ref().is_none_or(|(b, _)| *b != n) {
            let mut buf = vec![0u8; BUNDLE as usize * FACT];
            let mut got = 0;
            let offset = n * BUNDLE * FACT as u64;
            while got < buf.len() {
                match self.file.read_at(&mut buf[got..], offset + got as u64) {
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(IndexError::Facts(e)),
                }
            }
            buf.truncate(got);
            self.bundle = Some((n, buf));
        }
        let at = usize::try_from(i % BUNDLE).unwrap_or(usize::MAX) * FACT;
        Ok(self
            .bundle
            .as_ref()
            .and_then(|(_, v)| v.get(at..at + FACT))
            .map(Fact::decode))
    }
}

/// Reads the time spans of bundles and groups.
struct SpanReader<'a> {
    tree: &'a sled::Tree,
    query: &'a Query,
    /// Whether the query has a time filter (else everything may match).
    on: bool,
}

impl SpanReader<'_> {
    fn may_match(&self, tag: u8, n: u64) -> Result<bool, IndexError> {
        if !self.on {
            return Ok(true);
        }
        match self.tree.get(numbered_key(tag, n))? {
            Some(v) => Ok(self.query.overlaps(&Span::decode(&v)?)),
            None => Ok(true),
        }
    }
}

/// The terms of one kind used lately, with their id and count: the ones used since the
/// current generation began (at most [`TERM_CACHE`]) and those of the generation before,
/// moved to the current one when used again. Memory is bounded; terms used often stay.
#[derive(Default)]
struct TermCache {
    current: HashMap<String, (u32, u64)>,
    old: HashMap<String, (u32, u64)>,
}

impl TermCache {
    fn get(&mut self, text: &str) -> Option<&mut (u32, u64)> {
        if !self.current.contains_key(text) {
            let (k, v) = self.old.remove_entry(text)?;
            self.insert(k, v);
        }
        self.current.get_mut(text)
    }

    fn insert(&mut self, text: String, state: (u32, u64)) {
        if self.current.len() >= TERM_CACHE {
            self.old = std::mem::take(&mut self.current);
        }
        self.current.insert(text, state);
    }
}

/// The indexer: the one writer of the index.
struct Indexer {
    shared: Arc<Shared>,
    /// Each kind's terms seen lately: id and (approximate) count.
    terms: [TermCache; 4],
    next_id: Option<u32>,
}

impl Indexer {
    fn new(shared: Arc<Shared>) -> Indexer {
        Indexer {
            shared,
            terms: Default::default(),
            next_id: None,
        }
    }

    /// The id of a term, from the cache, else the store, else the next free one (then
    /// written to `batch`).
    fn term_id(
        &mut self,
        kind: Kind,
        text: &str,
        batch: &mut sled::Batch,
    ) -> Result<u32, IndexError> {
        if let Some((id, count)) = self.terms[kind as usize].get(text) {
            *count += 1;
            // Counts guide the choice of the list to follow; they are written again only
            // when they reach the next power of two.
            if count.is_power_of_two() && kind != Kind::Subject {
                batch.insert(dict_key(kind, text), &encode_term(*id, *count));
            }
            return Ok(*id);
        }
        let tree = &self.shared.tree;
        let (id, count) = match tree.get(dict_key(kind, text))? {
            Some(v) => decode_term(&v)?,
            None => {
                let next = match self.next_id {
                    Some(n) => n,
                    None => u32::try_from(read_u64(tree, "next")?.unwrap_or(1))
                        .map_err(|_| IndexError::Corrupt("the next term id".into()))?,
                };
                self.next_id = Some(
                    next.checked_add(1)
                        .ok_or_else(|| IndexError::Corrupt("term ids exhausted".into()))?,
                );
                (next, 0)
            }
        };
        let count = count + 1;
        if count == 1 || (count.is_power_of_two() && kind != Kind::Subject) {
            batch.insert(dict_key(kind, text), &encode_term(id, count));
        }
        self.terms[kind as usize].insert(text.to_owned(), (id, count));
        Ok(id)
    }

    /// Indexes the next events (at most [`BATCH_EVENTS`], below `size`) in one write.
    fn index_next(&mut self, log: &EventLog, size: u64) -> Result<(), IndexError> {
        let from = self.shared.indexed.load(Ordering::SeqCst);
        // A batch ends at the next segment's end, so that the segment can be written.
        let segment_events = self.shared.tuning.segment_events;
        let to = size
            .min(from + BATCH_EVENTS)
            .min((from / segment_events + 1) * segment_events);
        if from >= to {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        let mut facts: Vec<(u64, Fact)> = Vec::with_capacity((to - from) as usize);
        let mut last_hash = None;
        let mut n = from / BUNDLE;
        while n * BUNDLE < to {
            let leaves = log.bundle_leaves(n)?;
            for (k, leaf) in leaves.iter().enumerate() {
                let i = n * BUNDLE + k as u64;
                if i < from || i >= to {
                    continue;
                }
                let e = LeafFields::read(leaf)
                    .map_err(|err| IndexError::Corrupt(format!("event {i}: {err}")))?;
                let texts = [e.agency, e.auditor, e.action, e.subject];
                let mut ids = [0u32; 4];
                for (kind, text) in KINDS.into_iter().zip(texts) {
                    ids[kind as usize] = self.term_id(kind, text, &mut batch)?;
                }
                facts.push((
                    i,
                    Fact {
                        ids,
                        occ: e.occurred_at_ns,
                        recv: e.received_at_ms,
                    },
                ));
                if i + 1 == to {
                    last_hash = Some(tlog::leaf_hash(leaf));
                }
            }
            n += 1;
        }
        if facts.len() as u64 != to - from {
            return Err(IndexError::Corrupt(format!(
                "the log gave {} of events {from}..{to}",
                facts.len()
            )));
        }
        // Facts: appended to the facts file and made durable before the batch that
        // records them as indexed is written.
        let mut bytes = Vec::with_capacity(facts.len() * FACT);
        for (_, f) in &facts {
            f.encode(&mut bytes);
        }
        {
            use std::os::unix::fs::FileExt;
            let file = &self.shared.facts;
            file.write_all_at(&bytes, from * FACT as u64)
                .and_then(|()| file.sync_data())
                .map_err(IndexError::Facts)?;
        }
        // Spans, bundle by bundle (the first may be partly recorded already).
        let tree = &self.shared.tree;
        let mut groups: HashMap<u64, Span> = HashMap::new();
        for chunk in facts.chunk_by(|a, b| a.0 / BUNDLE == b.0 / BUNDLE) {
            let b = chunk[0].0 / BUNDLE;
            let continues = !chunk[0].0.is_multiple_of(BUNDLE);
            let mut span = match tree.get(numbered_key(b's', b))? {
                Some(v) if continues => Some(Span::decode(&v)?),
                _ => None,
            };
            for (_, f) in chunk {
                let s = Span::of(f.occ, f.recv);
                span.get_or_insert(s).widen(&s);
            }
            if let Some(span) = span {
                batch.insert(&numbered_key(b's', b), &span.encode());
                let g = b / GROUP;
                let gs = match groups.get_mut(&g) {
                    Some(gs) => gs,
                    None => {
                        // A group is new at its first event; else it has a stored span.
                        let fresh = b.is_multiple_of(GROUP) && !continues;
                        let stored = match tree.get(numbered_key(b'g', g))? {
                            Some(v) if !fresh => Span::decode(&v)?,
                            _ => span,
                        };
                        groups.entry(g).or_insert(stored)
                    }
                };
                gs.widen(&span);
            }
        }
        for (g, span) in groups {
            batch.insert(&numbered_key(b'g', g), &span.encode());
        }
        if let Some(n) = self.next_id {
            batch.insert(meta_key("next"), &u64::from(n).to_be_bytes());
        }
        batch.insert(meta_key("size"), &to.to_be_bytes());
        if let Some(h) = last_hash {
            batch.insert(meta_key("last"), &h[..]);
        }
        tree.apply_batch(batch)?;
        self.shared.db.flush()?;
        self.shared.indexed.store(to, Ordering::SeqCst);
        self.seal()
    }

    /// Writes the segments of every range of `segment_events` indexed and not in one yet
    /// (from the facts file), after each merging the last `fanout` segments of a level
    /// while there are.
    fn seal(&mut self) -> Result<(), IndexError> {
        let shared = &self.shared;
        let tuning = shared.tuning;
        let indexed = shared.indexed.load(Ordering::SeqCst);
        let mut list: Vec<Arc<Segment>> = shared.segments().as_ref().clone();
        loop {
            let lo = match list.last() {
                Some(s) => s.hi,
                None => shared.start.load(Ordering::SeqCst),
            };
            let hi = (lo / tuning.segment_events + 1) * tuning.segment_events;
            if hi > indexed {
                break;
            }
            list.push(Arc::new(self.write_segment(lo, hi)?));
            self.publish(list.clone(), &[])?;
            while let Some(inputs) = list
                .len()
                .checked_sub(tuning.fanout)
                .map(|at| list.split_off(at))
            {
                let level = inputs[0].level;
                if level >= tuning.max_level || inputs.iter().any(|s| s.level != level) {
                    list.extend(inputs);
                    break;
                }
                list.push(Arc::new(segment::merge(&shared.segments_dir, &inputs)?));
                self.publish(list.clone(), &inputs)?;
            }
        }
        Ok(())
    }

    /// The level-0 segment of events `lo..hi`, from their facts.
    fn write_segment(&self, lo: u64, hi: u64) -> Result<Segment, IndexError> {
        let mut lists: BTreeMap<segment::ListKey, Vec<(u64, u32)>> = BTreeMap::new();
        let mut facts = FactReader::new(&self.shared.facts);
        for i in lo..hi {
            let f = facts
                .get(i)?
                .ok_or_else(|| IndexError::Corrupt(format!("the facts file has no event {i}")))?;
            for kind in KINDS {
                let id = f.ids[kind as usize];
                let list = match kind {
                    Kind::Subject => subject_bucket(id),
                    _ => id,
                };
                lists.entry((kind as u8, list)).or_default().push((i, id));
            }
        }
        let mut w = segment::Writer::create(&self.shared.segments_dir, lo, hi, 0)?;
        for (key, entries) in lists {
            let mut it = entries.into_iter();
            w.list(key, key.0 == Kind::Subject as u8, &mut || Ok(it.next()))?;
        }
        // Its name need not be durable at once: lost in a crash, the segment is missing at
        // open and written again from the facts.
        w.finish(false)
    }

    /// Records `list` as the live segments, then removes the files of `gone` (after the
    /// record is durable: it must never name a removed file). A new segment's record may
    /// be lost in a crash (its file is then unlisted, removed at open and written again).
    fn publish(&self, list: Vec<Arc<Segment>>, gone: &[Arc<Segment>]) -> Result<(), IndexError> {
        self.shared
            .tree
            .insert(meta_key("segments"), encode_manifest(&list))?;
        if !gone.is_empty() {
            self.shared.db.flush()?;
        }
        self.shared.set_segments(list);
        for s in gone {
            std::fs::remove_file(s.path()).map_err(IndexError::Segments)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
