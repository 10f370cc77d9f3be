//! Whole-log audits: the drivers that feed a [`ChainAudit`] from where a log is, shared
//! by `auditstamp chain verify` and `auditstamp verify chain`, and callable by any library
//! user.
//!
//! - [`audit_tiles`] reads a C2SP tlog-tiles log through a [`TileSource`]: an export
//!   directory ([`DirSource`]) or a live appliance's public read API ([`HttpSource`]):
//!   the checkpoint, the entry bundles of its tree (`tile/entries/<N>[.p/<W>]`), the
//!   level-0 hash tiles (`tile/0/<N>[.p/<W>]`) to compare each recomputed leaf hash with,
//!   and the blocks, in height order, up to the checkpoint's tree size.
//! - [`run_audit`] takes any streams of events, blocks and stored hashes (a stopped
//!   appliance's store, through [`StoredHashValues`]).
//!
//! Every inconsistency is a [`LogAuditError::Invalid`] naming the first bad event index,
//! block height, or the checkpoint; what could not be read or set up is one of the other
//! variants (a caller tells "checked and refused" from "could not check" by them).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::{
    ed25519_key_of, AuditError, AuditOptions, AuditSummary, ChainAudit, ChainKeys, TokenCheck,
};
use crate::chain::block::{BlockHeader, SealedBlock};
use crate::chain::note::{Checkpoint, SignedNote, VerifierKey};
use crate::chain::tlog::{self, Hash};

/// Why a whole-log audit did not pass.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogAuditError {
    /// The log is not valid: the message names the first bad event, block or the
    /// checkpoint.
    #[error("FAILED: {0}")]
    Invalid(String),
    /// The audit could not be set up or run (bad keys given, no checkpoint yet, a server's
    /// refusal), with a message that names the problem.
    #[error("{0}")]
    Other(String),
    /// A file could not be read.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A step that failed (e.g. a request to the appliance), with the error that made it
    /// fail.
    #[error("{what}")]
    Caused {
        /// What was being done, e.g. `GET https://host:8318/checkpoint`.
        what: String,
        /// Why it failed.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl LogAuditError {
    fn caused(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> LogAuditError {
        LogAuditError::Caused {
            what: what.into(),
            source: Box::new(source),
        }
    }
}

impl From<AuditError> for LogAuditError {
    fn from(e: AuditError) -> Self {
        LogAuditError::Invalid(e.to_string())
    }
}

/// The keys an audit trusts, and whether they came from the command line.
pub struct Trusted {
    /// The chain keys: `--key`s each with its own name, or the chain's recorded ones.
    pub keys: ChainKeys,
    /// Whether the keys are the caller's (`--key`), not the chain's own.
    pub from_args: bool,
}

/// The keys an audit of the log of `origin` (its checkpoint's first line, when there is
/// one) trusts: the `--key` arguments, each keeping its own name, else the keys recorded
/// with the chain. With `--key`s, one must be named `origin`.
pub fn trusted_keys(
    args: &[String],
    recorded: Vec<(Hash, Vec<u8>)>,
    origin: Option<&str>,
) -> Result<Trusted, LogAuditError> {
    if args.is_empty() {
        let mut keys = Vec::new();
        for (id, spki) in recorded {
            let key = ed25519_key_of(&spki).ok_or_else(|| {
                LogAuditError::Other(format!(
                    "recorded chain key {} is not Ed25519",
                    hex::encode(id)
                ))
            })?;
            keys.push(key);
        }
        return Ok(Trusted {
            keys: ChainKeys::Recorded(keys),
            from_args: false,
        });
    }
    let mut keys: Vec<VerifierKey> = Vec::new();
    for a in args {
        let vk =
            VerifierKey::parse(a).map_err(|e| LogAuditError::Other(format!("--key {a:?}: {e}")))?;
        if !keys.contains(&vk) {
            keys.push(vk);
        }
    }
    if let Some(origin) = origin {
        if !keys.iter().any(|k| k.name == origin) {
            let names: Vec<String> = keys.iter().map(|k| format!("{:?}", k.name)).collect();
            return Err(LogAuditError::Invalid(format!(
                "checkpoint: its origin is {origin:?}, but no --key has that name (they name {})",
                names.join(", ")
            )));
        }
    }
    Ok(Trusted {
        keys: ChainKeys::Named(keys),
        from_args: true,
    })
}

/// The token check: the whole RFC 3161 checklist against `roots` when given (imprint =
/// SHA-256 of the header, path valid at genTime; a [`TokenVerifier`] so that the TSA's
/// path is verified once), else the imprint alone.
///
/// [`TokenVerifier`]: crate::verify::TokenVerifier
pub fn token_check(
    roots: Option<Vec<x509_cert::Certificate>>,
) -> Result<Box<TokenCheck<'static>>, LogAuditError> {
    let Some(roots) = roots else {
        return Ok(Box::new(|token: &[u8], header_hash: &Hash| {
            let info = crate::tsp::decode_tst_info_from_token(token).map_err(|e| e.to_string())?;
            if info.hash != Some(crate::tsp::HashAlgorithm::Sha256) || info.digest != header_hash {
                return Err("its imprint is not the SHA-256 of the header".into());
            }
            Ok(())
        }));
    };
    let verifier = crate::verify::TokenVerifier::new(roots)
        .map_err(|e| LogAuditError::Other(e.to_string()))?;
    Ok(Box::new(move |token: &[u8], header_hash: &Hash| {
        let opts = crate::verify::TokenOptions {
            imprint: Some((crate::tsp::HashAlgorithm::Sha256, header_hash.as_slice())),
            ..verifier.options()
        };
        verifier
            .verify_token(token, &opts)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }))
}

/// A source of stored hashes to compare the recomputed ones with, one by one.
pub trait HashStream {
    /// The stored hash at `index` (called with increasing indexes, each once).
    fn next_hash(&mut self, index: u64) -> Result<Option<Hash>, LogAuditError>;
}

/// A store's stored hashes, all levels, in stored-hash order, from its values of 256
/// hashes each (`(value number, bytes)`, in order, as `EventLog::stored_hash_values`
/// gives them): the [`HashStream`] of an audit of a stopped appliance's store.
pub struct StoredHashValues<I> {
    values: I,
    current: Vec<u8>,
    base: u64,
}

impl<I> StoredHashValues<I> {
    /// A stream over `values`.
    pub fn new(values: I) -> Self {
        StoredHashValues {
            values,
            current: Vec::new(),
            base: 0,
        }
    }
}

impl<I, E> HashStream for StoredHashValues<I>
where
    I: Iterator<Item = Result<(u64, Vec<u8>), E>>,
    E: std::fmt::Display,
{
    fn next_hash(&mut self, index: u64) -> Result<Option<Hash>, LogAuditError> {
        while index >= self.base + (self.current.len() / 32) as u64 {
            match self.values.next() {
                None => return Ok(None),
                Some(v) => {
                    let (n, bytes) = v.map_err(|e| LogAuditError::Other(e.to_string()))?;
                    self.base = n * 256;
                    self.current = bytes;
                }
            }
        }
        let at = usize::try_from(index - self.base).unwrap_or(usize::MAX) * 32;
        Ok(self
            .current
            .get(at..at + 32)
            .and_then(|s| s.try_into().ok()))
    }
}

/// Where a tlog-tiles log is read from: an export directory or a live appliance.
pub trait TileSource {
    /// The bytes at `path` (`checkpoint`, `tile/0/000`, ...), or `None` when it is not
    /// there.
    fn fetch(&mut self, path: &str) -> Result<Option<Vec<u8>>, LogAuditError>;

    /// The bytes at `path`, which must be there.
    fn require(&mut self, path: &str) -> Result<Vec<u8>, LogAuditError> {
        self.fetch(path)?
            .ok_or_else(|| LogAuditError::Invalid(format!("{} has no {path}", self.describe())))
    }

    /// What this source is, for messages.
    fn describe(&self) -> String;

    /// The error for a log without a checkpoint: a broken export, but an appliance that
    /// has not sealed a block yet.
    fn no_checkpoint(&self) -> LogAuditError {
        LogAuditError::Invalid(format!("{} has no checkpoint", self.describe()))
    }

    /// Sealed block `height` in its stored form, or `None` past the last one.
    fn block(&mut self, height: u64) -> Result<Option<Vec<u8>>, LogAuditError>;

    /// The heights of the blocks there are, in order, when the source can list them
    /// (a directory); `None`: read from 0 until one is missing.
    fn block_heights(&mut self) -> Result<Option<Vec<u64>>, LogAuditError>;

    /// The chain keys recorded beside the log: (key id, DER SubjectPublicKeyInfo).
    fn recorded_keys(&mut self) -> Result<Vec<(Hash, Vec<u8>)>, LogAuditError>;
}

/// An export directory (`chain export`).
pub struct DirSource<'a> {
    /// The directory.
    pub dir: &'a Path,
}

impl TileSource for DirSource<'_> {
    fn fetch(&mut self, path: &str) -> Result<Option<Vec<u8>>, LogAuditError> {
        let full = self.dir.join(path);
        match std::fs::read(&full) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(LogAuditError::File { path: full, source }),
        }
    }

    fn describe(&self) -> String {
        format!("the export {}", self.dir.display())
    }

    fn block(&mut self, height: u64) -> Result<Option<Vec<u8>>, LogAuditError> {
        self.fetch(&format!("blocks/{height}"))
    }

    fn block_heights(&mut self) -> Result<Option<Vec<u64>>, LogAuditError> {
        let bdir = self.dir.join("blocks");
        let mut heights = Vec::new();
        if bdir.is_dir() {
            let dir_err = |source| LogAuditError::File {
                path: bdir.clone(),
                source,
            };
            for entry in std::fs::read_dir(&bdir).map_err(dir_err)? {
                let entry = entry.map_err(dir_err)?;
                let name = entry.file_name();
                let h: u64 = name.to_str().and_then(|n| n.parse().ok()).ok_or_else(|| {
                    LogAuditError::Invalid(format!(
                        "{}: not a block file name",
                        entry.path().display()
                    ))
                })?;
                heights.push(h);
            }
        }
        heights.sort_unstable();
        Ok(Some(heights))
    }

    fn recorded_keys(&mut self) -> Result<Vec<(Hash, Vec<u8>)>, LogAuditError> {
        let kdir = self.dir.join("chain-keys");
        let mut recorded = Vec::new();
        if !kdir.is_dir() {
            return Ok(recorded);
        }
        let dir_err = |source| LogAuditError::File {
            path: kdir.clone(),
            source,
        };
        for entry in std::fs::read_dir(&kdir).map_err(dir_err)? {
            let path = entry.map_err(dir_err)?.path();
            let spki = std::fs::read(&path).map_err(|source| LogAuditError::File {
                path: path.clone(),
                source,
            })?;
            recorded.push((Sha256::digest(&spki).into(), spki));
        }
        Ok(recorded)
    }
}

/// A live appliance, through its public read API (`/checkpoint`, `/tile/...`,
/// `/v1/blocks/{height}`, and `/v1/events/0` for the chain key when none is given).
pub struct HttpSource {
    base: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

/// Most bytes read from one response (an entry bundle of 256 events of at most 64 KiB
/// each, with room to spare).
const MAX_RESPONSE_BYTES: usize = 32 << 20;

impl HttpSource {
    /// A reader of the appliance at `url` (`https://host:port`, or `http://` for
    /// development), through a client with the TLS options `tls`.
    pub fn new(url: &str, tls: &crate::client::ClientTls) -> Result<Self, LogAuditError> {
        let base = url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(LogAuditError::Other(format!(
                "--url {url:?}: give the appliance's base URL, e.g. https://appliance.example:8318"
            )));
        }
        let client = crate::client::builder(tls, std::time::Duration::from_secs(60))
            .map_err(|e| LogAuditError::caused("cannot set up the HTTPS client", e))?
            .build()
            .map_err(|e| LogAuditError::caused("cannot start the HTTP client", e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LogAuditError::Other(format!("cannot start the async runtime: {e}")))?;
        Ok(HttpSource {
            base,
            client,
            runtime,
        })
    }

    fn get(&mut self, path: &str) -> Result<Option<Vec<u8>>, LogAuditError> {
        let url = format!("{}/{}", self.base, path.trim_start_matches('/'));
        let what = format!("GET {}", crate::client::redact_userinfo(&url));
        let client = self.client.clone();
        self.runtime.block_on(async move {
            let failed = |e: reqwest::Error| LogAuditError::caused(what.clone(), e.without_url());
            let mut resp = client.get(&url).send().await.map_err(failed)?;
            let status = resp.status();
            if status == reqwest::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !status.is_success() {
                // The server's own words (e.g. that a client certificate is required).
                let said = match resp.chunk().await {
                    Ok(Some(c)) => String::from_utf8_lossy(&c[..c.len().min(300)])
                        .trim()
                        .to_owned(),
                    _ => String::new(),
                };
                return Err(LogAuditError::Other(if said.is_empty() {
                    format!("{what}: answered {status}")
                } else {
                    format!("{what}: answered {status}: {said}")
                }));
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(failed)? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(LogAuditError::Other(format!(
                        "{what}: more than {MAX_RESPONSE_BYTES} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Some(body))
        })
    }

    fn get_json(&mut self, path: &str) -> Result<Option<serde_json::Value>, LogAuditError> {
        let Some(body) = self.get(path)? else {
            return Ok(None);
        };
        serde_json::from_slice(&body).map(Some).map_err(|e| {
            LogAuditError::Invalid(format!(
                "{}/{path}: not JSON: {e}",
                crate::client::redact_userinfo(&self.base)
            ))
        })
    }
}

impl TileSource for HttpSource {
    fn fetch(&mut self, path: &str) -> Result<Option<Vec<u8>>, LogAuditError> {
        self.get(path)
    }

    fn describe(&self) -> String {
        format!(
            "the appliance at {}",
            crate::client::redact_userinfo(&self.base)
        )
    }

    fn no_checkpoint(&self) -> LogAuditError {
        LogAuditError::Other(format!(
            "{} has no checkpoint yet (no block sealed): nothing to audit",
            self.describe()
        ))
    }

    fn block(&mut self, height: u64) -> Result<Option<Vec<u8>>, LogAuditError> {
        let Some(json) = self.get_json(&format!("v1/blocks/{height}"))? else {
            return Ok(None);
        };
        block_from_json(&json)
            .map(|b| Some(b.encode()))
            .map_err(|e| LogAuditError::Invalid(format!("block {height}: {e}")))
    }

    fn block_heights(&mut self) -> Result<Option<Vec<u64>>, LogAuditError> {
        Ok(None)
    }

    fn recorded_keys(&mut self) -> Result<Vec<(Hash, Vec<u8>)>, LogAuditError> {
        let Some(json) = self.get_json("v1/events/0")? else {
            return Ok(Vec::new());
        };
        let spki = json
            .get("chain_key")
            .and_then(|k| k.as_str())
            .and_then(|k| B64.decode(k).ok())
            .ok_or_else(|| LogAuditError::Invalid("/v1/events/0 has no base64 chain_key".into()))?;
        Ok(vec![(Sha256::digest(&spki).into(), spki)])
    }
}

/// A block from its JSON (`GET /v1/blocks/{h}`, or a proof bundle's `block`): the header
/// bytes, signature and token; every field shown beside them must be the header's.
pub fn block_from_json(json: &serde_json::Value) -> Result<SealedBlock, String> {
    let b64 = |name: &str| -> Result<Vec<u8>, String> {
        let text = json
            .get(name)
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("no {name} (base64)"))?;
        B64.decode(text)
            .map_err(|_| format!("{name} is not base64"))
    };
    let header_bytes = b64("header")?;
    let header = BlockHeader::decode(&header_bytes).map_err(|e| format!("header: {e}"))?;
    let mismatch = header_field_mismatch(json, &header);
    if let Some(field) = mismatch {
        return Err(format!(
            "its field {field} is not what its header bytes say"
        ));
    }
    Ok(SealedBlock {
        header,
        signature: b64("signature")?,
        token: b64("token")?,
    })
}

/// The first JSON field of a block that differs from `header` (absent fields are not
/// compared).
pub fn header_field_mismatch(
    json: &serde_json::Value,
    header: &BlockHeader,
) -> Option<&'static str> {
    let numbers = [
        ("height", header.height),
        ("tree_size", header.tree_size),
        ("first_index", header.first_index),
        ("event_count", header.event_count),
        ("sealed_at_ms", header.sealed_at_ms),
    ];
    for (name, value) in numbers {
        if let Some(v) = json.get(name) {
            if v.as_u64() != Some(value) {
                return Some(name);
            }
        }
    }
    let hashes = [
        ("prev_hash", header.prev_hash),
        ("root_hash", header.root),
        ("key_id", header.key_id),
        ("header_hash", header.hash()),
    ];
    for (name, value) in hashes {
        if let Some(v) = json.get(name) {
            if v.as_str() != Some(hex::encode(value).as_str()) {
                return Some(name);
            }
        }
    }
    None
}

/// What an audit covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// What was covered.
    pub summary: AuditSummary,
    /// Events after the last block.
    pub unsealed: u64,
    /// Whether the keys were the caller's (`--key`), not the ones recorded beside the log.
    pub keys_trusted: bool,
    /// Whether each token was checked against trusted roots (not its imprint alone).
    pub tokens_chained: bool,
    /// The checkpoint's origin.
    pub origin: Option<String>,
}

/// Feeds `events` and `blocks` (both in order) to the audit, comparing hashes with
/// `stored`; then the checkpoint. `progress(done, total)` is called now and then with the
/// events fed so far (for a progress bar), and once at the end.
pub fn run_audit(
    audit: &mut ChainAudit<'_>,
    events: impl Iterator<Item = Result<(u64, Vec<u8>), LogAuditError>>,
    total: u64,
    blocks: impl Iterator<Item = Result<(u64, Vec<u8>), LogAuditError>>,
    stored: &mut dyn HashStream,
    checkpoint: Option<&str>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Option<String>, LogAuditError> {
    let mut blocks = blocks.peekable();
    for (n, item) in events.enumerate() {
        // Blocks sealing exactly the events fed so far are checked before the next event.
        check_due_blocks(audit, &mut blocks, false)?;
        let (index, leaf) = item?;
        let added = audit.event(index, &leaf).map_err(LogAuditError::from)?;
        for (i, h) in added {
            match stored.next_hash(i)? {
                Some(s) if s == h => {}
                Some(_) => {
                    return Err(LogAuditError::Invalid(format!(
                        "event {index}: its hash does not match the stored Merkle tree \
                         (stored hash {i}): the event or the stored tree was changed"
                    )))
                }
                None if tlog::split_stored_hash_index(i).0 > 0 => {}
                None => {
                    return Err(LogAuditError::Invalid(format!(
                        "event {index}: no stored hash for it"
                    )))
                }
            }
        }
        if n % 4096 == 0 {
            progress(n as u64, total);
        }
    }
    check_due_blocks(audit, &mut blocks, true)?;
    progress(total, total);
    let origin = match checkpoint {
        Some(cp) => Some(audit.checkpoint(cp).map_err(LogAuditError::from)?.origin),
        None if audit.summary().blocks > 0 => {
            return Err(LogAuditError::Invalid(
                "checkpoint: blocks exist but there is no checkpoint".into(),
            ))
        }
        None => None,
    };
    Ok(origin)
}

/// Checks the blocks whose tree size has been reached; at the end (`last`), every block
/// left must be one the events already reached, or it is reported.
fn check_due_blocks(
    audit: &mut ChainAudit<'_>,
    blocks: &mut std::iter::Peekable<impl Iterator<Item = Result<(u64, Vec<u8>), LogAuditError>>>,
    last: bool,
) -> Result<(), LogAuditError> {
    while let Some(peeked) = blocks.peek() {
        let due = match peeked {
            Err(_) => true,
            Ok((_, bytes)) => match SealedBlock::decode(bytes) {
                Ok(b) => b.header.tree_size <= audit.events() || last,
                Err(_) => true,
            },
        };
        if !due {
            return Ok(());
        }
        let Some(item) = blocks.next() else {
            return Ok(());
        };
        let (height, bytes) = item?;
        audit.block(height, &bytes).map_err(LogAuditError::from)?;
    }
    Ok(())
}

/// A [`TileSource`] that the event, hash and block readers of one audit take turns with.
type Shared<'r, 's> = &'r RefCell<&'s mut dyn TileSource>;

/// A log's level-0 hash tiles: only leaf hashes are compared.
struct TileHashes<'r, 's> {
    source: Shared<'r, 's>,
    size: u64,
    tile: Option<(u64, Vec<u8>)>,
}

impl HashStream for TileHashes<'_, '_> {
    fn next_hash(&mut self, index: u64) -> Result<Option<Hash>, LogAuditError> {
        let (level, n) = tlog::split_stored_hash_index(index);
        if level != 0 || n >= self.size {
            return Ok(None);
        }
        let t = n / 256;
        if self.tile.as_ref().map(|(i, _)| *i) != Some(t) {
            let tile = tlog::tile_for_record(n, self.size)
                .map_err(|e| LogAuditError::Other(e.to_string()))?;
            let bytes = self.source.borrow_mut().require(&tlog::tile_path(&tile))?;
            self.tile = Some((t, bytes));
        }
        let at = usize::try_from(n % 256).unwrap_or(0) * 32;
        Ok(self
            .tile
            .as_ref()
            .and_then(|(_, b)| b.get(at..at + 32))
            .and_then(|s| s.try_into().ok()))
    }
}

/// The events of a log's entry bundles, one bundle in memory at a time.
struct EntryEvents<'r, 's> {
    source: Shared<'r, 's>,
    size: u64,
    next_tile: u64,
    pending: std::vec::IntoIter<(u64, Vec<u8>)>,
    failed: bool,
}

impl EntryEvents<'_, '_> {
    fn load(&mut self, t: u64) -> Result<Vec<(u64, Vec<u8>)>, LogAuditError> {
        let tile = tlog::tile_for_record(t * 256, self.size)
            .map_err(|e| LogAuditError::Other(e.to_string()))?;
        let path = tlog::entries_path(&tile);
        let data = self.source.borrow_mut().require(&path)?;
        let entries = tlog::decode_entry_bundle(&data)
            .map_err(|e| LogAuditError::Invalid(format!("{path}: {e}")))?;
        if entries.len() != usize::from(tile.width()) {
            return Err(LogAuditError::Invalid(format!(
                "{path}: {} entries where the tile needs {}",
                entries.len(),
                tile.width()
            )));
        }
        Ok(entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| (t * 256 + i as u64, e.to_vec()))
            .collect())
    }
}

impl Iterator for EntryEvents<'_, '_> {
    type Item = Result<(u64, Vec<u8>), LogAuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(event) = self.pending.next() {
                return Some(Ok(event));
            }
            if self.failed || self.next_tile.saturating_mul(256) >= self.size {
                return None;
            }
            let t = self.next_tile;
            self.next_tile += 1;
            match self.load(t) {
                Ok(v) => self.pending = v.into_iter(),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// The blocks of a source up to tree size `size`, in height order, read one at a time.
struct Blocks<'r, 's> {
    source: Shared<'r, 's>,
    /// The heights listed, when the source lists them (else 0, 1, ... until one is
    /// missing).
    listed: Option<std::vec::IntoIter<u64>>,
    next: u64,
    size: u64,
    done: bool,
}

impl Iterator for Blocks<'_, '_> {
    type Item = Result<(u64, Vec<u8>), LogAuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let height = match &mut self.listed {
            Some(heights) => heights.next()?,
            None => self.next,
        };
        let read = self.source.borrow_mut().block(height);
        match read {
            Ok(Some(bytes)) => {
                // A block sealed after the checkpoint was read is not part of this audit.
                if let Ok(b) = SealedBlock::decode(&bytes) {
                    if b.header.tree_size > self.size {
                        self.done = true;
                        return None;
                    }
                }
                self.next += 1;
                Some(Ok((height, bytes)))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Audits a log given as streams (a stopped appliance's store): its events and blocks in
/// order, its `size`, its stored hashes, its signed checkpoint (none before the first
/// block) and the chain keys recorded with it; trusting `keys` (note verifier keys; when
/// empty, the recorded ones) and checking tokens with `checker` (`tokens_chained` as in
/// [`audit_tiles`]). Events after the last block are counted as unsealed.
#[allow(clippy::too_many_arguments)]
pub fn audit_log(
    events: impl Iterator<Item = Result<(u64, Vec<u8>), LogAuditError>>,
    size: u64,
    blocks: impl Iterator<Item = Result<(u64, Vec<u8>), LogAuditError>>,
    stored: &mut dyn HashStream,
    checkpoint: Option<&str>,
    recorded: Vec<(Hash, Vec<u8>)>,
    keys: &[String],
    checker: &TokenCheck<'_>,
    tokens_chained: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<AuditReport, LogAuditError> {
    // The log's origin is its checkpoint's first line (a checkpoint that does not parse
    // is reported by the audit).
    let origin = checkpoint
        .and_then(|c| SignedNote::parse(c).ok())
        .and_then(|n| Checkpoint::parse(&n.text).ok())
        .map(|c| c.origin);
    let Trusted {
        keys,
        from_args: keys_trusted,
    } = trusted_keys(keys, recorded, origin.as_deref())?;
    let mut audit = ChainAudit::new(AuditOptions {
        keys,
        origin,
        token_check: checker,
    });
    let origin = run_audit(
        &mut audit, events, size, blocks, stored, checkpoint, progress,
    )?;
    let summary = audit.summary();
    Ok(AuditReport {
        summary,
        unsealed: size.saturating_sub(summary.sealed),
        keys_trusted,
        tokens_chained,
        origin,
    })
}

/// Audits the tlog-tiles log of `source` with its blocks, trusting `keys` (note verifier
/// keys, `--key`; when empty, the keys recorded beside the log) and checking tokens with
/// `checker` (`tokens_chained`: whether it checks them against trusted roots, for the
/// report); `progress` as in [`run_audit`].
pub fn audit_tiles(
    source: &mut dyn TileSource,
    keys: &[String],
    checker: &TokenCheck<'_>,
    tokens_chained: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<AuditReport, LogAuditError> {
    let checkpoint = source
        .fetch("checkpoint")?
        .ok_or_else(|| source.no_checkpoint())?;
    let checkpoint = String::from_utf8(checkpoint)
        .map_err(|_| LogAuditError::Invalid("checkpoint: not UTF-8".into()))?;
    let signed = SignedNote::parse(&checkpoint)
        .map_err(|e| LogAuditError::Invalid(format!("checkpoint: {e}")))?;
    let cp = Checkpoint::parse(&signed.text)
        .map_err(|e| LogAuditError::Invalid(format!("checkpoint: {e}")))?;
    let recorded = if keys.is_empty() {
        source.recorded_keys()?
    } else {
        Vec::new()
    };
    let Trusted {
        keys,
        from_args: keys_trusted,
    } = trusted_keys(keys, recorded, Some(&cp.origin))?;
    let mut audit = ChainAudit::new(AuditOptions {
        keys,
        origin: Some(cp.origin.clone()),
        token_check: checker,
    });
    let size = cp.size;
    let listed = source.block_heights()?.map(Vec::into_iter);
    let shared = RefCell::new(source);
    let events = EntryEvents {
        source: &shared,
        size,
        next_tile: 0,
        pending: Vec::new().into_iter(),
        failed: false,
    };
    let blocks = Blocks {
        source: &shared,
        listed,
        next: 0,
        size,
        done: false,
    };
    let mut stored = TileHashes {
        source: &shared,
        size,
        tile: None,
    };
    let origin = run_audit(
        &mut audit,
        events,
        size,
        blocks,
        &mut stored,
        Some(&checkpoint),
        progress,
    )?;
    Ok(AuditReport {
        summary: audit.summary(),
        unsealed: 0,
        keys_trusted,
        tokens_chained,
        origin,
    })
}
