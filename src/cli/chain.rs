//! `auditstamp chain verify` and `auditstamp chain export`: the event chain, offline.
//!
//! `verify` is `verify chain` ([`super::audit`]): it re-hashes every event of a stopped
//! appliance's store (`--state DIR`), an export (`--dir DIR`) or a live appliance
//! (`--url`), compares the hashes with the stored Merkle tree (or the level-0 tiles), and
//! checks every block (link, coverage, root, Ed25519 signature, RFC 3161 token) and the
//! checkpoint; it names the first bad event index or block height.
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

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::audit;
use super::CliError;
use crate::chain::block::SealedBlock;
use crate::chain::log::EventLog;
use crate::chain::store::Store;
use crate::chain::tlog::{self, Tile};
use crate::verify::chain::ed25519_key_of;

/// `auditstamp chain ...`
#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// Re-hash and check a whole chain; names the first bad event or block (the same as
    /// `verify chain`).
    Verify(Box<super::audit::AuditArgs>),
    /// Write the chain (events, tiles, blocks, checkpoint) to a directory another machine
    /// can verify.
    Export(ExportArgs),
    /// Print the chain key's note verifier key (`origin+id+key`), read from the HSM: what a
    /// witness registers and a verifier passes as `--key`.
    VerifierKey(super::ConfigArg),
    /// Rebuild a lost appliance's store from its archive (`[archive]`), with the same HSM
    /// keys: asks the witnesses first and refuses when they have cosigned more than the
    /// bucket holds; audits everything it copies. The server must be stopped and the state
    /// directory must hold no store.
    Restore(super::ConfigArg),
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
        ChainCommand::Verify(a) => super::audit::run(&a),
        ChainCommand::Export(a) => export(&a),
        ChainCommand::VerifierKey(a) => verifier_key(&a.config),
        ChainCommand::Restore(a) => restore(&a.config),
    }
}

fn restore(config: &Path) -> Result<(), CliError> {
    let (cfg, hsm) = super::open_hsm(config)?;
    let bucket = super::serve::archive_bucket(&cfg)?.ok_or_else(|| {
        CliError::Other(format!(
            "{}: no [archive] section: nothing to restore from",
            config.display()
        ))
    })?;
    let label = &cfg.raw.chain.key_label;
    let key = hsm.find_key(label)?;
    let public = ed25519_key_of(&key.public_key_der).ok_or_else(|| {
        CliError::Other(format!("chain.key_label {label:?} is not an Ed25519 key"))
    })?;
    let origin = cfg.raw.chain.origin_or(&cfg.raw.node.name).to_owned();
    let verifier = crate::chain::note::VerifierKey {
        id: crate::chain::note::key_id(&origin, &public),
        name: origin,
        public_key: public,
    };
    let witnesses = super::serve::witnesses(&cfg)?;
    let check = witnesses
        .client()
        .map(|client| crate::archive::restore::WitnessCheck {
            client,
            links: witnesses.links(),
        });
    println!(
        "restoring {} from {}{}",
        cfg.state_dir().display(),
        bucket.url,
        if check.is_some() {
            ", after asking the witnesses what they have cosigned"
        } else {
            " (no witness configured to ask)"
        }
    );
    let restored = crate::archive::restore::restore(
        &bucket,
        cfg.state_dir(),
        &verifier,
        check,
        &mut audit::audit_progress(),
    )
    .map_err(|e| CliError::Other(e.to_string()))?;
    for (name, size) in &restored.witnesses {
        println!(
            "witness     {name}: has cosigned {size} events (the archive holds {})",
            restored.size
        );
    }
    println!(
        "restored    {} events and {} blocks into {}; every event, block and the checkpoint verified",
        restored.size,
        restored.blocks,
        restored.store.display()
    );
    println!(
        "serials     the TSA continues at counter {} (past every serial the archive records)",
        restored.serial_next
    );
    let (count, aside) = &restored.set_aside;
    if *count > 0 {
        println!(
            "set aside   {count} objects written after the archived checkpoint (never covered by \
             it) moved to {}/{aside}/",
            bucket.url
        );
    }
    println!("start the server: it continues the log from the archived checkpoint");
    Ok(())
}

fn verifier_key(config: &Path) -> Result<(), CliError> {
    let (cfg, hsm) = super::open_hsm(config)?;
    let label = &cfg.raw.chain.key_label;
    let key = hsm.find_key(label)?;
    let public = ed25519_key_of(&key.public_key_der).ok_or_else(|| {
        CliError::Other(format!("chain.key_label {label:?} is not an Ed25519 key"))
    })?;
    let origin = cfg.raw.chain.origin_or(&cfg.raw.node.name);
    println!("{}", crate::chain::note::verifier_key(origin, &public));
    Ok(())
}

/// The event log of a stopped appliance's state directory.
pub(super) fn open_log(state: &Path) -> Result<EventLog, CliError> {
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
    let bar = audit::progress(size, "export");
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
