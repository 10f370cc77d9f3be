//! `auditstamp chain verify` and `auditstamp chain export`: the event chain, offline.
//!
//! `verify` re-hashes every event of a stopped appliance's store (`--state DIR`) or of an
//! export (`--dir DIR`), compares the hashes with the stored Merkle tree (or the export's
//! level-0 tiles), and checks every block (link, coverage, root, Ed25519 signature, RFC
//! 3161 token) and the checkpoint; it names the first bad event index or block height.
//!
//! An export is a static C2SP tlog-tiles log plus the blocks:
//! ```text
//! checkpoint                 the signed checkpoint of the last block
//! verifier-key.txt           the checkpoint note key (name+id+key), for convenience only
//! chain-keys/<key id hex>    DER SubjectPublicKeyInfo of each chain key that signed blocks
//! blocks/<height>            each sealed block, in its stored form
//! tile/<L>/<N>[.p/<W>]       hash tiles of the checkpoint's tree
//! tile/entries/<N>[.p/<W>]   the events' leaf bytes, in entry bundles
//! ```
//! Any tlog-tiles client can read it from a static web server; a verifier trusts the keys
//! it is given (`--key`), not the ones in the export.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use der::Decode;
use sha2::{Digest, Sha256};

use super::CliError;
use crate::chain::block::SealedBlock;
use crate::chain::log::EventLog;
use crate::chain::note::VerifierKey;
use crate::chain::store::Store;
use crate::chain::tlog::{self, Hash, Tile};
use crate::verify::chain::{ed25519_key_id, ed25519_key_of, AuditOptions, ChainAudit};

/// `auditstamp chain ...`
#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// Re-hash and check a whole chain offline; names the first bad event or block.
    Verify(VerifyArgs),
    /// Write the chain (events, tiles, blocks, checkpoint) to a directory another machine
    /// can verify.
    Export(ExportArgs),
}

/// Where a chain is read from.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Source {
    /// The appliance's state directory (`node.state_dir`); the server must be stopped.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// A directory written by `auditstamp chain export`.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `chain verify`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Where the chain is.
    #[command(flatten)]
    pub source: Source,
    /// A trusted chain key, as a note verifier key (`name+id+key`, `GET /v1/events/{i}`
    /// shows it). May be given more than once. Without it, the keys recorded beside the
    /// chain are used, which proves integrity but not who signed.
    #[arg(long = "key")]
    pub keys: Vec<String>,
    /// Root CA certificates (PEM) to check each block's time-stamp token against.
    /// Without it, only each token's imprint is checked.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Print one JSON object instead of lines for people.
    #[arg(long)]
    pub json: bool,
}

/// `chain export`
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The appliance's state directory (`node.state_dir`); the server must be stopped.
    #[arg(long)]
    pub state: PathBuf,
    /// The directory to write (must not exist, or be empty).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs a `chain` subcommand.
pub fn run(cmd: ChainCommand) -> Result<(), CliError> {
    match cmd {
        ChainCommand::Verify(a) => verify(&a),
        ChainCommand::Export(a) => export(&a),
    }
}

fn open_log(state: &Path) -> Result<EventLog, CliError> {
    let dir = state.join("store");
    if !dir.is_dir() {
        return Err(CliError::Other(format!(
            "{}: no store here (is --state the appliance's node.state_dir?)",
            dir.display()
        )));
    }
    let store = Store::open(&dir).map_err(|e| {
        let text = e.to_string();
        if text.contains("lock")
            || text.contains("WouldBlock")
            || text.contains("temporarily unavailable")
        {
            CliError::Other(format!(
                "{}: the store is in use (is `auditstamp serve` running?); stop the server, \
                 or verify an export",
                dir.display()
            ))
        } else {
            CliError::Store(e)
        }
    })?;
    EventLog::open(&store).map_err(|e| CliError::Other(format!("{}: {e}", dir.display())))
}

fn progress(len: u64, what: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{prefix:>8} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what);
    bar
}

/// The keys an audit trusts, the origin they name (from `--key`), and whether they came
/// from the command line.
struct Trusted {
    keys: HashMap<Hash, [u8; 32]>,
    origin: Option<String>,
    from_args: bool,
}

/// The keys an audit trusts: `--key` arguments, else the ones recorded with the chain.
fn trusted_keys(args: &[String], recorded: Vec<(Hash, Vec<u8>)>) -> Result<Trusted, CliError> {
    if args.is_empty() {
        let mut keys = HashMap::new();
        for (id, spki) in recorded {
            let key = ed25519_key_of(&spki).ok_or_else(|| {
                CliError::Other(format!(
                    "recorded chain key {} is not Ed25519",
                    hex::encode(id)
                ))
            })?;
            keys.insert(ed25519_key_id(&key), key);
        }
        return Ok(Trusted {
            keys,
            origin: None,
            from_args: false,
        });
    }
    let mut keys = HashMap::new();
    let mut origin = None;
    for a in args {
        let vk = VerifierKey::parse(a).map_err(|e| CliError::Other(format!("--key {a:?}: {e}")))?;
        keys.insert(ed25519_key_id(&vk.public_key), vk.public_key);
        origin = Some(vk.name);
    }
    Ok(Trusted {
        keys,
        origin,
        from_args: true,
    })
}

/// The token check: the whole RFC 3161 checklist against the `--ca` roots when given
/// (imprint = SHA-256 of the header, path valid at genTime), else the imprint alone.
fn token_check(
    ca: Option<&Path>,
) -> Result<Box<crate::verify::chain::TokenCheck<'static>>, CliError> {
    let Some(path) = ca else {
        return Ok(Box::new(|token: &[u8], header_hash: &Hash| {
            let info = crate::tsp::decode_tst_info_from_token(token).map_err(|e| e.to_string())?;
            if info.hash != Some(crate::tsp::HashAlgorithm::Sha256) || info.digest != header_hash {
                return Err("its imprint is not the SHA-256 of the header".into());
            }
            Ok(())
        }));
    };
    let mut roots = Vec::new();
    for (i, der) in super::read_certificate_file(path)?.iter().enumerate() {
        roots.push(x509_cert::Certificate::from_der(der).map_err(|e| {
            CliError::Other(format!("{} certificate {}: {e}", path.display(), i + 1))
        })?);
    }
    if roots.is_empty() {
        return Err(CliError::Other(format!(
            "{}: no certificate in it",
            path.display()
        )));
    }
    Ok(Box::new(move |token: &[u8], header_hash: &Hash| {
        let opts = crate::verify::TokenOptions {
            imprint: Some((crate::tsp::HashAlgorithm::Sha256, header_hash.as_slice())),
            ..crate::verify::TokenOptions::new(&roots)
        };
        crate::verify::verify_token(token, &opts)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }))
}

/// A source of stored hashes to compare the recomputed ones with, one by one.
trait HashStream {
    /// The stored hash at `index` (called with increasing indexes, each once).
    fn next_hash(&mut self, index: u64) -> Result<Option<Hash>, CliError>;
}

/// The store's stored hashes, all levels, in order.
struct StoreHashes<I> {
    values: I,
    current: Vec<u8>,
    base: u64,
}

impl<I: Iterator<Item = Result<(u64, Vec<u8>), crate::chain::log::LogError>>> HashStream
    for StoreHashes<I>
{
    fn next_hash(&mut self, index: u64) -> Result<Option<Hash>, CliError> {
        while index >= self.base + (self.current.len() / 32) as u64 {
            match self.values.next() {
                None => return Ok(None),
                Some(v) => {
                    let (n, bytes) = v.map_err(|e| CliError::Other(e.to_string()))?;
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

/// An export's level-0 hash tiles: only leaf hashes are compared.
struct TileHashes<'a> {
    dir: &'a Path,
    size: u64,
    tile: Option<(u64, Vec<u8>)>,
}

impl HashStream for TileHashes<'_> {
    fn next_hash(&mut self, index: u64) -> Result<Option<Hash>, CliError> {
        let (level, n) = tlog::split_stored_hash_index(index);
        if level != 0 || n >= self.size {
            return Ok(None);
        }
        let t = n / 256;
        if self.tile.as_ref().map(|(i, _)| *i) != Some(t) {
            let tile =
                tlog::tile_for_record(n, self.size).map_err(|e| CliError::Other(e.to_string()))?;
            let path = self.dir.join(tlog::tile_path(&tile));
            let bytes = std::fs::read(&path).map_err(|source| CliError::File { path, source })?;
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

/// What an audit found, for printing.
struct Outcome {
    summary: crate::verify::chain::AuditSummary,
    unsealed: u64,
    keys_trusted: bool,
    tokens_chained: bool,
    origin: Option<String>,
}

/// Feeds `events` and `blocks` (both in order) to the audit, comparing hashes with
/// `stored`; then the checkpoint.
fn run_audit(
    audit: &mut ChainAudit<'_>,
    events: impl Iterator<Item = Result<(u64, Vec<u8>), CliError>>,
    total: u64,
    blocks: impl Iterator<Item = Result<(u64, Vec<u8>), CliError>>,
    stored: &mut dyn HashStream,
    checkpoint: Option<&str>,
) -> Result<Option<String>, CliError> {
    let bar = progress(total, "events");
    let fail = |e: crate::verify::chain::AuditError| CliError::Other(format!("FAILED: {e}"));
    let mut blocks = blocks.peekable();
    for (n, item) in events.enumerate() {
        // Blocks sealing exactly the events fed so far are checked before the next event.
        check_due_blocks(audit, &mut blocks, false)?;
        let (index, leaf) = item?;
        let added = audit.event(index, &leaf).map_err(fail)?;
        for (i, h) in added {
            match stored.next_hash(i)? {
                Some(s) if s == h => {}
                Some(_) => {
                    return Err(CliError::Other(format!(
                        "FAILED: event {index}: its hash does not match the stored Merkle tree \
                         (stored hash {i}): the event or the stored tree was changed"
                    )))
                }
                None if tlog::split_stored_hash_index(i).0 > 0 => {}
                None => {
                    return Err(CliError::Other(format!(
                        "FAILED: event {index}: no stored hash for it"
                    )))
                }
            }
        }
        if n % 4096 == 0 {
            bar.set_position(n as u64);
        }
    }
    check_due_blocks(audit, &mut blocks, true)?;
    bar.finish_and_clear();
    let origin = match checkpoint {
        Some(cp) => Some(audit.checkpoint(cp).map_err(fail)?.origin),
        None if audit.summary().blocks > 0 => {
            return Err(CliError::Other(
                "FAILED: checkpoint: blocks exist but there is no checkpoint".into(),
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
    blocks: &mut std::iter::Peekable<impl Iterator<Item = Result<(u64, Vec<u8>), CliError>>>,
    last: bool,
) -> Result<(), CliError> {
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
        audit
            .block(height, &bytes)
            .map_err(|e| CliError::Other(format!("FAILED: {e}")))?;
    }
    Ok(())
}

fn verify(a: &VerifyArgs) -> Result<(), CliError> {
    let checker = token_check(a.ca.as_deref())?;
    let outcome = if let Some(state) = &a.source.state {
        let log = open_log(state)?;
        let Trusted {
            keys,
            origin,
            from_args: keys_trusted,
        } = trusted_keys(
            &a.keys,
            log.chain_keys()
                .map_err(|e| CliError::Other(e.to_string()))?,
        )?;
        let mut audit = ChainAudit::new(AuditOptions {
            keys,
            origin: origin.clone(),
            token_check: checker.as_ref(),
        });
        let err = |e: crate::chain::log::LogError| CliError::Other(e.to_string());
        let mut stored = StoreHashes {
            values: log.stored_hash_values(),
            current: Vec::new(),
            base: 0,
        };
        let checkpoint = log.checkpoint().map_err(err)?;
        let origin = run_audit(
            &mut audit,
            log.events().map(|r| r.map_err(err)),
            log.size(),
            log.blocks().map(|r| r.map_err(err)),
            &mut stored,
            checkpoint.as_deref(),
        )?
        .or(origin);
        let summary = audit.summary();
        Outcome {
            summary,
            unsealed: log.size() - summary.sealed,
            keys_trusted,
            tokens_chained: a.ca.is_some(),
            origin,
        }
    } else if let Some(dir) = &a.source.dir {
        verify_export(dir, a, checker.as_ref())?
    } else {
        return Err(CliError::Other("give --state DIR or --dir EXPORT".into()));
    };
    print_outcome(&outcome, a.json);
    Ok(())
}

fn print_outcome(o: &Outcome, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": true,
                "events": o.summary.events,
                "blocks": o.summary.blocks,
                "sealed": o.summary.sealed,
                "unsealed": o.unsealed,
                "origin": o.origin,
                "keys_trusted": o.keys_trusted,
                "token_chains_checked": o.tokens_chained,
            })
        );
        return;
    }
    println!(
        "events      {} re-hashed; every hash matches the stored Merkle tree",
        o.summary.events
    );
    println!(
        "blocks      {} checked: links, coverage, roots, Ed25519 signatures, token imprints{}",
        o.summary.blocks,
        if o.tokens_chained {
            " and token signatures"
        } else {
            " (give --ca to check the tokens' signatures and chain)"
        }
    );
    match &o.origin {
        Some(origin) => println!(
            "checkpoint  {origin}: size {} signed by the chain key",
            o.summary.sealed
        ),
        None => println!("checkpoint  none yet (no block sealed)"),
    }
    if o.unsealed > 0 {
        println!(
            "unsealed    {} events after the last block (sealed at the next start)",
            o.unsealed
        );
    }
    if !o.keys_trusted {
        println!(
            "note        the chain keys were read from beside the chain itself: this proves the \
             chain is intact, not who signed it; pass --key to pin the appliance's key"
        );
    }
    println!("OK");
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::File {
        path: path.to_owned(),
        source,
    })
}

/// Blocks of an export, in height order.
fn export_blocks(dir: &Path) -> Result<Vec<(u64, Vec<u8>)>, CliError> {
    let bdir = dir.join("blocks");
    let mut heights = Vec::new();
    if bdir.is_dir() {
        for entry in std::fs::read_dir(&bdir).map_err(|source| CliError::File {
            path: bdir.clone(),
            source,
        })? {
            let entry = entry.map_err(|source| CliError::File {
                path: bdir.clone(),
                source,
            })?;
            let name = entry.file_name();
            let h: u64 = name.to_str().and_then(|n| n.parse().ok()).ok_or_else(|| {
                CliError::Other(format!("{}: not a block file name", entry.path().display()))
            })?;
            heights.push(h);
        }
    }
    heights.sort_unstable();
    heights
        .into_iter()
        .map(|h| Ok((h, read(&bdir.join(h.to_string()))?)))
        .collect()
}

fn verify_export(
    dir: &Path,
    a: &VerifyArgs,
    checker: &crate::verify::chain::TokenCheck<'_>,
) -> Result<Outcome, CliError> {
    let checkpoint = String::from_utf8(read(&dir.join("checkpoint"))?)
        .map_err(|_| CliError::Other("the export's checkpoint is not UTF-8".into()))?;
    let signed = crate::chain::note::SignedNote::parse(&checkpoint)
        .map_err(|e| CliError::Other(format!("FAILED: checkpoint: {e}")))?;
    let cp = crate::chain::note::Checkpoint::parse(&signed.text)
        .map_err(|e| CliError::Other(format!("FAILED: checkpoint: {e}")))?;
    let mut recorded = Vec::new();
    let kdir = dir.join("chain-keys");
    if a.keys.is_empty() && kdir.is_dir() {
        for entry in std::fs::read_dir(&kdir).map_err(|source| CliError::File {
            path: kdir.clone(),
            source,
        })? {
            let path = entry
                .map_err(|source| CliError::File {
                    path: kdir.clone(),
                    source,
                })?
                .path();
            let spki = read(&path)?;
            recorded.push((Sha256::digest(&spki).into(), spki));
        }
    }
    let Trusted {
        keys,
        origin,
        from_args: keys_trusted,
    } = trusted_keys(&a.keys, recorded)?;
    let mut audit = ChainAudit::new(AuditOptions {
        keys,
        origin,
        token_check: checker,
    });
    let size = cp.size;
    let events = (0..size.div_ceil(256)).flat_map(move |t| {
        let result = (|| {
            let tile =
                tlog::tile_for_record(t * 256, size).map_err(|e| CliError::Other(e.to_string()))?;
            let path = dir.join(tlog::entries_path(&tile));
            let data = read(&path)?;
            let entries = tlog::decode_entry_bundle(&data)
                .map_err(|e| CliError::Other(format!("FAILED: {}: {e}", path.display())))?;
            if entries.len() != usize::from(tile.width()) {
                return Err(CliError::Other(format!(
                    "FAILED: {}: {} entries where the tile needs {}",
                    path.display(),
                    entries.len(),
                    tile.width()
                )));
            }
            Ok(entries
                .into_iter()
                .enumerate()
                .map(|(i, e)| (t * 256 + i as u64, e.to_vec()))
                .collect::<Vec<_>>())
        })();
        match result {
            Ok(v) => v.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        }
    });
    let blocks = export_blocks(dir)?;
    let mut stored = TileHashes {
        dir,
        size,
        tile: None,
    };
    let origin = run_audit(
        &mut audit,
        events,
        size,
        blocks.into_iter().map(Ok),
        &mut stored,
        Some(&checkpoint),
    )?;
    Ok(Outcome {
        summary: audit.summary(),
        unsealed: 0,
        keys_trusted,
        tokens_chained: a.ca.is_some(),
        origin,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    super::write_file(path, bytes)
}

fn export(a: &ExportArgs) -> Result<(), CliError> {
    if a.out.exists()
        && std::fs::read_dir(&a.out)
            .map_err(|source| CliError::File {
                path: a.out.clone(),
                source,
            })?
            .next()
            .is_some()
    {
        return Err(CliError::Other(format!(
            "{}: exists and is not empty; export into a new directory",
            a.out.display()
        )));
    }
    let log = open_log(&a.state)?;
    let err = |e: crate::chain::log::LogError| CliError::Other(e.to_string());
    let checkpoint = log
        .checkpoint()
        .map_err(err)?
        .ok_or_else(|| CliError::Other("no block sealed yet: nothing to export".into()))?;
    let signed = crate::chain::note::SignedNote::parse(&checkpoint)
        .map_err(|e| CliError::Other(format!("the stored checkpoint: {e}")))?;
    let cp = crate::chain::note::Checkpoint::parse(&signed.text)
        .map_err(|e| CliError::Other(format!("the stored checkpoint: {e}")))?;
    let size = cp.size;
    let mut blocks = 0u64;
    for b in log.blocks() {
        let (height, bytes) = b.map_err(err)?;
        let tree_size = SealedBlock::decode(&bytes)
            .map(|b| b.header.tree_size)
            .unwrap_or(u64::MAX);
        if tree_size <= size {
            write(&a.out.join("blocks").join(height.to_string()), &bytes)?;
            blocks += 1;
        }
    }
    for (id, spki) in log.chain_keys().map_err(err)? {
        write(&a.out.join("chain-keys").join(hex::encode(id)), &spki)?;
        if let Some(key) = ed25519_key_of(&spki) {
            write(
                &a.out.join("verifier-key.txt"),
                format!("{}\n", crate::chain::note::verifier_key(&cp.origin, &key)).as_bytes(),
            )?;
        }
    }
    let bar = progress(size, "export");
    let hashes = log.hashes_at(size);
    for t in tlog::new_tiles(0, size).map_err(|e| CliError::Other(e.to_string()))? {
        let data = tlog::read_tile_data(&t, &hashes).map_err(|e| CliError::Other(e.to_string()))?;
        write(&a.out.join(tlog::tile_path(&t)), &data)?;
        if t.level() == 0 {
            write_entries(&log, &t, &a.out)?;
            bar.inc(u64::from(t.width()));
        }
    }
    bar.finish_and_clear();
    write(&a.out.join("checkpoint"), checkpoint.as_bytes())?;
    println!(
        "exported {size} sealed events and {blocks} blocks to {} (checkpoint origin {})",
        a.out.display(),
        cp.origin
    );
    if log.size() > size {
        println!(
            "{} events after the last block are not exported (they are sealed at the next start)",
            log.size() - size
        );
    }
    Ok(())
}

fn write_entries(log: &EventLog, tile: &Tile, out: &Path) -> Result<(), CliError> {
    let leaves = log
        .leaves(tlog::entries_tile_range(tile))
        .map_err(|e| CliError::Other(e.to_string()))?;
    let refs: Vec<&[u8]> = leaves.iter().map(Vec::as_slice).collect();
    let bundle = tlog::encode_entry_bundle(&refs).map_err(|e| CliError::Other(e.to_string()))?;
    write(&out.join(tlog::entries_path(tile)), &bundle)
}
