//! `auditstamp verify chain` (and its alias `chain verify`): a whole-chain audit
//! ([`crate::verify::chain::tiles`]) of a stopped appliance's store, an export, or a live
//! appliance. What the CLI adds: the arguments, the `--ca` file read, a progress bar, and
//! the printed outcome.

use std::path::{Path, PathBuf};

use clap::Args;
use der::Decode;
use serde_json::json;

use super::CliError;
use crate::verify::chain::tiles::{self, AuditReport, LogAuditError};
use crate::verify::chain::TokenCheck;

/// Where a chain is read from: exactly one.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct AuditSource {
    /// The appliance's state directory (`node.state_dir`); the server must be stopped.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// A live appliance's base URL (`https://host:port`; see --tls-ca, --tls-cert): read
    /// through `/checkpoint`, `/tile/...` and `/v1/blocks/{h}`.
    #[arg(long)]
    pub url: Option<String>,
    /// A directory written by `auditstamp chain export`.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// An archive (`s3://bucket/prefix`, or `file:///dir`), read alone; see --s3-endpoint.
    /// Credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, when set.
    #[arg(long)]
    pub s3: Option<String>,
}

/// Where an `--s3` archive is served.
#[derive(Debug, Args)]
pub struct S3Args {
    /// The S3-compatible endpoint of --s3 (`https://host:port`); default: AWS's.
    #[arg(long, requires = "s3")]
    pub s3_endpoint: Option<String>,
    /// The S3 region of --s3.
    #[arg(long, requires = "s3", default_value = "us-east-1")]
    pub s3_region: String,
    /// PEM: the CA(s) of the --s3-endpoint's TLS certificate; default: the system's roots.
    #[arg(long, requires = "s3")]
    pub s3_ca: Option<PathBuf>,
}

/// `verify chain` and `chain verify`
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Where the chain is.
    #[command(flatten)]
    pub source: AuditSource,
    /// A trusted chain key, as a note verifier key (`name+id+key`, `GET /v1/events/{i}`
    /// shows it). May be given more than once (e.g. every appliance's): each keeps its own
    /// name, and only a key named the chain's origin counts. Without it, the keys recorded
    /// beside the chain are used, which proves integrity but not who signed.
    #[arg(long = "key")]
    pub keys: Vec<String>,
    /// Root CA certificates (PEM) to check each block's time-stamp token against.
    /// Without it, only each token's imprint is checked.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Print one JSON object instead of lines for people.
    #[arg(long)]
    pub json: bool,
    /// TLS to the appliance (with --url).
    #[command(flatten)]
    pub tls: crate::client::TlsArgs,
    /// The archive's endpoint (with --s3).
    #[command(flatten)]
    pub s3: S3Args,
    /// With --state: first drop the event search index and build it again from the log
    /// (the server also does this at start when the index is missing or does not match).
    #[arg(long, requires = "state")]
    pub reindex: bool,
}

/// Drops the search index of the store in `state` and builds it again from `log`, with a
/// progress bar.
fn reindex(state: &Path, log: &crate::chain::log::EventLog) -> Result<(), CliError> {
    use crate::chain::index::SearchIndex;
    let err = |e: crate::chain::index::IndexError| CliError::Other(format!("search index: {e}"));
    let index = SearchIndex::open(&state.join("store"), log).map_err(err)?;
    index.rebuild(log).map_err(err)?;
    let bar = indicatif::ProgressBar::new(log.size());
    bar.set_style(
        indicatif::ProgressStyle::with_template("indexing {bar:40} {pos}/{len} events ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let done = index
        .catch_up(log, &|indexed, _| bar.set_position(indexed))
        .map_err(err)?;
    bar.finish_and_clear();
    println!(
        "search index rebuilt: {done} events in {:.1} s, {} bytes on disk",
        started.elapsed().as_secs_f64(),
        index.disk_bytes().map_err(err)?
    );
    Ok(())
}

/// Runs the audit `a` asks for and prints what it covered; an invalid chain is a
/// [`CliError::Invalid`] (exit 1) naming the first bad event, block or the checkpoint.
pub(super) fn run(a: &AuditArgs) -> Result<(), CliError> {
    let checker = token_check(a.ca.as_deref())?;
    let tokens_chained = a.ca.is_some();
    let result = if let Some(state) = &a.source.state {
        let log = super::chain::open_log(state)?;
        if a.reindex {
            reindex(state, &log)?;
        }
        if log.pruned_below() > 0 {
            return Err(CliError::Other(format!(
                "{}: events below {} were pruned from this store after they were archived;                  audit the archive (--s3 s3://bucket/prefix) or the running appliance (--url),                  which reads them back from it",
                state.display(),
                log.pruned_below() * 256
            )));
        }
        let err = |e: crate::chain::log::LogError| LogAuditError::Other(e.to_string());
        let checkpoint = log.checkpoint().map_err(err)?;
        let recorded = log.chain_keys().map_err(err)?;
        let mut stored = tiles::StoredHashValues::new(log.stored_hash_values());
        let report = tiles::audit_log(
            log.events().map(|r| r.map_err(err)),
            log.size(),
            log.blocks().map(|r| r.map_err(err)),
            &mut stored,
            checkpoint.as_deref(),
            recorded,
            &a.keys,
            checker.as_ref(),
            tokens_chained,
            &mut audit_progress(),
        );
        report
    } else if let Some(url) = &a.source.url {
        tiles::audit_tiles(
            &mut tiles::HttpSource::new(url, &a.tls.client_tls())?,
            &a.keys,
            checker.as_ref(),
            tokens_chained,
            &mut audit_progress(),
        )
    } else if let Some(dir) = &a.source.dir {
        if !dir.is_dir() {
            return Err(CliError::Other(format!(
                "{}: not a directory (give an export written by `auditstamp chain export`)",
                dir.display()
            )));
        }
        tiles::audit_tiles(
            &mut tiles::DirSource { dir },
            &a.keys,
            checker.as_ref(),
            tokens_chained,
            &mut audit_progress(),
        )
    } else if let Some(url) = &a.source.s3 {
        let settings = crate::archive::BucketSettings {
            endpoint: a.s3.s3_endpoint.clone(),
            region: a.s3.s3_region.clone(),
            ca_file: a.s3.s3_ca.clone(),
            ..crate::archive::BucketSettings::new(url)
        };
        tiles::audit_tiles(
            &mut crate::archive::source::BucketSource::new(&settings)?,
            &a.keys,
            checker.as_ref(),
            tokens_chained,
            &mut audit_progress(),
        )
    } else {
        return Err(CliError::Other(
            "give --state DIR, --url URL, --dir EXPORT or --s3 ARCHIVE".into(),
        ));
    };
    match result.map_err(CliError::from) {
        Ok(outcome) => {
            print_outcome(&outcome, a.json);
            Ok(())
        }
        Err(CliError::Invalid(why)) => {
            if a.json {
                println!("{}", json!({ "ok": false, "error": why }));
            }
            Err(CliError::Invalid(why))
        }
        Err(e) => Err(e),
    }
}

impl From<LogAuditError> for CliError {
    fn from(e: LogAuditError) -> Self {
        match e {
            LogAuditError::Invalid(why) => CliError::Invalid(why),
            LogAuditError::Other(why) => CliError::Other(why),
            LogAuditError::File { path, source } => CliError::File { path, source },
            LogAuditError::Caused { what, source } => CliError::Caused { what, source },
        }
    }
}

/// The token check of `--ca` ([`tiles::token_check`]): the whole checklist against its
/// roots, else the imprint alone.
pub(super) fn token_check(ca: Option<&Path>) -> Result<Box<TokenCheck<'static>>, CliError> {
    let Some(path) = ca else {
        return Ok(tiles::token_check(None)?);
    };
    tiles::token_check(Some(read_roots(path)?)).map_err(|e| match e {
        LogAuditError::Other(why) => CliError::Other(format!("{}: {why}", path.display())),
        other => other.into(),
    })
}

/// A progress callback for an audit of events, drawn as a bar on stderr (hidden when
/// stderr is not a terminal); the bar is cleared when the audit reports its end.
pub(super) fn audit_progress() -> impl FnMut(u64, u64) {
    let bar = progress(0, "events");
    move |done, total| {
        bar.set_length(total);
        bar.set_position(done);
        if done >= total {
            bar.finish_and_clear();
        }
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub(super) fn progress(len: u64, what: &'static str) -> indicatif::ProgressBar {
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

/// The certificates of a `--ca` file, decoded; at least one.
pub(super) fn read_roots(path: &Path) -> Result<Vec<x509_cert::Certificate>, CliError> {
    let mut roots = Vec::new();
    for (i, der) in super::read_certificate_file(path)?.iter().enumerate() {
        roots.push(x509_cert::Certificate::from_der(der).map_err(|e| {
            CliError::Other(format!(
                "{} certificate {}: not a DER certificate: {e}",
                path.display(),
                i + 1
            ))
        })?);
    }
    if roots.is_empty() {
        return Err(CliError::Other(format!(
            "{}: no certificate in it",
            path.display()
        )));
    }
    Ok(roots)
}

/// Reads `path`; the error names it.
pub(super) fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::File {
        path: path.to_owned(),
        source,
    })
}

/// Prints what an audit covered: lines for people, or one JSON object.
pub(super) fn print_outcome(o: &AuditReport, json: bool) {
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
