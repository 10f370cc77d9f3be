//! The `auditstamp` command line: the only place that reads the whole configuration and
//! wires the modules together.
//!
//! Subcommands: `serve`, `keys ...` (provisioning), `chain verify|export` (the event chain,
//! offline), `verify token|proof|chain` (the data center's checks), `bench ...` (figures),
//! `hsm init-token` (the simulator), `witness serve` (the data center's witness), `listener`
//! (where the configured listener answers, for health checks).
//! Its one error type is [`CliError`]; `main` prints it and exits with
//! [`CliError::exit_code`]: 1 when what was verified is invalid, 2 for any other error.

mod audit;
mod bench;
mod chain;
mod keys;
mod listener;
mod serve;
mod signals;
mod verify;
mod witness;

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use secrecy::SecretString;

use crate::config::{self, ConfigError, HsmConfig, PinSource, Validated};
use crate::signer::pkcs11::{Hsm, TokenSelector};
use crate::signer::SignerError;

/// Everything a command can fail with; each message names the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HSM refused or failed.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// Provisioning failed.
    #[error(transparent)]
    Provision(#[from] crate::provision::ProvisionError),
    /// The service could not start.
    #[error(transparent)]
    Service(#[from] crate::service::ServiceError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::chain::store::StoreError),
    /// A benchmark could not run.
    #[error(transparent)]
    Bench(#[from] crate::bench::BenchError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// What was verified (a token, a proof, a chain) is invalid: the message names the
    /// check that failed. Exit code 1.
    #[error("FAILED: {0}")]
    Invalid(String),
    /// Anything else, with a message that names the problem.
    #[error("{0}")]
    Other(String),
    /// A step that failed (e.g. a request to a server), with the error that made it fail:
    /// [`report`] prints its whole chain of causes.
    #[error("{what}")]
    Caused {
        /// What was being done, e.g. `GET https://host:8318/checkpoint`.
        what: String,
        /// Why it failed.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl CliError {
    /// A [`CliError::Caused`]: `what` failed because of `source`.
    pub(crate) fn caused(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> CliError {
        CliError::Caused {
            what: what.into(),
            source: Box::new(source),
        }
    }
}

/// The line `main` prints for a failed command (after `error: `): the error and its whole
/// chain of causes (`...: caused by: ...`), URLs' user information redacted.
pub fn report(e: &CliError) -> String {
    crate::client::error_chain(e)
}

impl CliError {
    /// The process exit code: 1 when what was verified is invalid ([`CliError::Invalid`]),
    /// 2 for every other error (bad arguments, unreadable files, unreachable servers, a
    /// failing HSM): so a script can tell "checked and refused" from "could not check".
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Invalid(_) => 1,
            _ => 2,
        }
    }
}

/// `auditstamp`: an HSM-backed RFC 3161 time-stamp authority.
#[derive(Debug, Parser)]
#[command(name = "auditstamp", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the time-stamp authority over HTTP.
    Serve(ConfigArg),
    /// Provision keys and certificates in the HSM.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The event chain, offline: verify it, or export it for another machine.
    #[command(subcommand)]
    Chain(chain::ChainCommand),
    /// The data center's checks, offline: a token, an event's proof, a whole chain.
    #[command(subcommand)]
    Verify(verify::VerifyCommand),
    /// Measure and print figures (events per second, proof time, bytes per event).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Simulator tools (SoftHSM2): create a token without PINs on the command line.
    #[command(subcommand)]
    Hsm(keys::HsmCommand),
    /// The data center's witness: cosign registered appliances' checkpoints (C2SP
    /// tlog-witness).
    #[command(subcommand)]
    Witness(witness::WitnessCommand),
    /// Print where the configuration's listener answers on this host (scheme, address,
    /// TLS certificate file) as key=value lines, for health checks.
    Listener(ConfigArg),
}

/// The configuration file option every HSM-using command takes.
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// The configuration file (TOML).
    #[arg(long, env = "AUDITSTAMP_CONFIG")]
    pub config: PathBuf,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => serve::run(&args.config),
        Command::Keys(cmd) => {
            init_logging("warn", "text");
            keys::run(cmd)
        }
        Command::Chain(cmd) => {
            init_logging("warn", "text");
            chain::run(cmd)
        }
        Command::Verify(cmd) => {
            init_logging("warn", "text");
            verify::run(cmd)
        }
        Command::Bench(cmd) => {
            init_logging("warn", "text");
            bench::run(cmd)
        }
        Command::Hsm(cmd) => {
            init_logging("warn", "text");
            keys::run_hsm(cmd)
        }
        Command::Witness(cmd) => witness::run(cmd),
        Command::Listener(args) => listener::run(&args.config),
    }
}

/// Starts the log subscriber: `level` unless `RUST_LOG` is set; "text" or "json".
pub(crate) fn init_logging(level: &str, format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) is harmless: try_init's error is ignored.
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Loads the configuration and opens (and logs in to) its HSM token.
pub(crate) fn open_hsm(config_path: &Path) -> Result<(Validated, Hsm), CliError> {
    let cfg = config::load(config_path)?;
    let hsm = open_hsm_with(&cfg)?;
    Ok((cfg, hsm))
}

/// Opens the token `cfg` names with the PIN from its source.
pub(crate) fn open_hsm_with(cfg: &Validated) -> Result<Hsm, CliError> {
    let pin: SecretString = cfg.pin.read()?;
    let selector = TokenSelector {
        module: cfg.raw.hsm.module.clone(),
        token_label: cfg.raw.hsm.token_label.clone(),
        token_serial: cfg.raw.hsm.token_serial.clone(),
    };
    Ok(Hsm::open(&selector, pin)?)
}

/// Opens the token an `[hsm]` section names, with the PIN from `pin`.
pub(crate) fn open_hsm_from(hsm: &HsmConfig, pin: &PinSource) -> Result<Hsm, CliError> {
    let pin: SecretString = pin.read()?;
    let selector = TokenSelector {
        module: hsm.module.clone(),
        token_label: hsm.token_label.clone(),
        token_serial: hsm.token_serial.clone(),
    };
    Ok(Hsm::open(&selector, pin)?)
}

/// Loads an appliance's or a witness's configuration (one with a `[witness]` table) and
/// opens its token; the appliance's configuration is returned when it is one.
pub(crate) fn open_hsm_any(config_path: &Path) -> Result<(Option<Validated>, Hsm), CliError> {
    let any = crate::witness::config::load_any(config_path)?;
    let (hsm, pin) = any.hsm();
    let opened = open_hsm_from(hsm, pin)?;
    match any {
        crate::witness::config::AnyConfig::Appliance(cfg) => Ok((Some(*cfg), opened)),
        crate::witness::config::AnyConfig::Witness(_) => Ok((None, opened)),
    }
}

/// The DER of every certificate in `path`: PEM (one or more blocks) or one DER certificate.
pub(crate) fn read_certificate_file(path: &Path) -> Result<Vec<Vec<u8>>, CliError> {
    let bytes = std::fs::read(path).map_err(|source| CliError::File {
        path: path.to_owned(),
        source,
    })?;
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Ok(vec![bytes]);
    };
    if !text.contains("-----BEGIN") {
        return Ok(vec![bytes]);
    }
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    for (i, block) in text.split_inclusive(END).enumerate() {
        let Some(start) = block.find("-----BEGIN") else {
            continue;
        };
        let (label, der) = der::pem::decode_vec(&block.as_bytes()[start..]).map_err(|e| {
            CliError::Other(format!("{} block {}: not PEM: {e}", path.display(), i + 1))
        })?;
        if label != "CERTIFICATE" {
            return Err(CliError::Other(format!(
                "{} block {}: a {label}, not a CERTIFICATE",
                path.display(),
                i + 1
            )));
        }
        out.push(der);
    }
    Ok(out)
}

/// Sends SIGHUP to process `pid`.
#[cfg(unix)]
#[allow(unsafe_code)]
pub(crate) fn send_sighup(pid: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, libc::SIGHUP) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sends SIGHUP to process `pid` (not supported off Unix).
#[cfg(not(unix))]
pub(crate) fn send_sighup(_pid: i32) -> std::io::Result<()> {
    Err(std::io::Error::other("signals need Unix"))
}

/// Writes `contents` to `path`, creating its directory.
pub(crate) fn write_file(path: &Path, contents: &[u8]) -> Result<(), CliError> {
    let file_err = |source| CliError::File {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(file_err)?;
    }
    std::fs::write(path, contents).map_err(file_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
