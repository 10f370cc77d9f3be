//! `auditstamp keys ...` and `auditstamp hsm ...`: provisioning through the HSM.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use der::{Decode, EncodePem};
use x509_cert::Certificate;

use super::{open_hsm, open_hsm_any, read_certificate_file, write_file, CliError, ConfigArg};
use crate::clock::{Clock as _, SystemClock};
use crate::config::PinSource;
use crate::provision;
use crate::provision::lifecycle;
use crate::signer::pkcs11::init_token;
use crate::signer::{KeyAlgorithm, KeyPurpose, SignerError};

/// Default label of the development root CA's key.
pub const DEV_CA_LABEL: &str = "dev-root-ca";

/// `auditstamp keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a key pair inside the HSM (sensitive, never extractable).
    Generate(GenerateArgs),
    /// List the keys on the token with their certificates.
    List(ListArgs),
    /// DEVELOPMENT ONLY: create (once) a root CA whose key is in the token, and export its
    /// certificate. Never use it for a production TSA.
    DevCa(DevCaArgs),
    /// DEVELOPMENT ONLY: certify a key with the development root CA; the certificate is
    /// stored on the token beside the key.
    IssueDevCert(IssueDevCertArgs),
    /// Write the certificate stored beside a key as PEM.
    ExportCert(ExportCertArgs),
    /// Write a PKCS#10 certificate request for a key, signed in the HSM.
    Csr(CsrArgs),
    /// Check the certificate a CA returned and store it on the token beside its key.
    ImportCert(ImportCertArgs),
    /// Generate the successor TSA key and its certificate request; the current key stays active.
    Rotate(RotateArgs),
    /// Make a certified TSA key the signing key; a running server switches without a restart.
    Activate(LabelArgs),
    /// Stop using a key for good (it can no longer be activated); --destroy erases it.
    Retire(RetireArgs),
}

/// `keys rotate`
#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The new key's label, e.g. "tsa-2027".
    #[arg(long)]
    label: String,
    /// The new certificate's subject.
    #[arg(long)]
    subject: String,
    /// The new key's algorithm; default: the active key's.
    #[arg(long)]
    algorithm: Option<String>,
    /// Where to write the certificate request (PEM).
    #[arg(long)]
    out: PathBuf,
}

/// A command that names one key.
#[derive(Debug, Args)]
pub struct LabelArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The key's label.
    #[arg(long)]
    label: String,
}

/// `keys retire`
#[derive(Debug, Args)]
pub struct RetireArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The key to retire.
    #[arg(long)]
    label: String,
    /// Also destroy the key pair in the HSM (irreversible; its certificate stays published).
    #[arg(long, requires = "confirm_destroy")]
    destroy: bool,
    /// With --destroy: the key's label again, to confirm.
    #[arg(long, value_name = "LABEL")]
    confirm_destroy: Option<String>,
}

/// `keys csr`
#[derive(Debug, Args)]
pub struct CsrArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The key to certify.
    #[arg(long)]
    label: String,
    /// The subject to ask for, e.g. "CN=Office TSA 2027,O=Audit Office,C=EE".
    #[arg(long)]
    subject: String,
    /// Where to write the request (PEM); standard output when absent.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `keys import-cert`
#[derive(Debug, Args)]
pub struct ImportCertArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The key the certificate is for.
    #[arg(long)]
    label: String,
    /// The certificate (PEM or DER).
    #[arg(long)]
    cert: PathBuf,
    /// The issuing chain (PEM: issuer first, up to the root), checked link by link.
    #[arg(long)]
    chain: Option<PathBuf>,
}

/// `keys generate`
#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The new key's label (unique on the token).
    #[arg(long)]
    label: String,
    /// ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096 or ed25519.
    #[arg(long, default_value = "ecdsa-p256")]
    algorithm: String,
    /// tsa, chain or witness (the data center witness's Ed25519 cosigning key).
    #[arg(long, default_value = "tsa")]
    purpose: String,
    /// Succeed without change when a key with this label exists already.
    #[arg(long)]
    if_missing: bool,
}

/// `keys list`
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// JSON for scripts instead of a table.
    #[arg(long)]
    json: bool,
}

/// `keys dev-ca`
#[derive(Debug, Args)]
pub struct DevCaArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The CA key's label.
    #[arg(long, default_value = DEV_CA_LABEL)]
    label: String,
    /// The CA's subject.
    #[arg(
        long,
        default_value = "CN=auditstamp DEVELOPMENT root CA,O=auditstamp development,C=EE"
    )]
    subject: String,
    /// Validity in days.
    #[arg(long, default_value_t = 3650)]
    days: u32,
    /// Where to write the CA certificate (PEM).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `keys issue-dev-cert`
#[derive(Debug, Args)]
pub struct IssueDevCertArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The key to certify.
    #[arg(long)]
    label: String,
    /// The certificate's subject, e.g. "CN=TSA,O=Office,C=EE".
    #[arg(long)]
    subject: String,
    /// The development CA key's label.
    #[arg(long, default_value = DEV_CA_LABEL)]
    ca_label: String,
    /// Validity in days.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Where to write the certificate (PEM).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep a certificate the key has already (and still export it).
    #[arg(long)]
    if_missing: bool,
}

/// `keys export-cert`
#[derive(Debug, Args)]
pub struct ExportCertArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The key whose certificate to export.
    #[arg(long)]
    label: String,
    /// Output file (PEM).
    #[arg(long)]
    out: PathBuf,
}

/// `auditstamp hsm ...`
#[derive(Debug, Subcommand)]
pub enum HsmCommand {
    /// SIMULATOR: initialise a SoftHSM2 token through PKCS#11 (PINs from files or env).
    InitToken(InitTokenArgs),
}

/// `hsm init-token`
#[derive(Debug, Args)]
pub struct InitTokenArgs {
    /// The PKCS#11 module.
    #[arg(long, default_value = "/usr/lib/softhsm/libsofthsm2.so")]
    module: PathBuf,
    /// The new token's label.
    #[arg(long)]
    label: String,
    /// File holding the security officer PIN.
    #[arg(
        long,
        conflicts_with = "so_pin_env",
        required_unless_present = "so_pin_env"
    )]
    so_pin_file: Option<PathBuf>,
    /// Environment variable holding the security officer PIN.
    #[arg(long)]
    so_pin_env: Option<String>,
    /// File holding the user PIN.
    #[arg(long, conflicts_with = "pin_env", required_unless_present = "pin_env")]
    pin_file: Option<PathBuf>,
    /// Environment variable holding the user PIN.
    #[arg(long)]
    pin_env: Option<String>,
    /// Succeed without change when a token with this label exists already.
    #[arg(long)]
    if_missing: bool,
}

fn pin_source(file: Option<PathBuf>, env: Option<String>) -> Result<PinSource, CliError> {
    match (file, env) {
        (Some(f), None) => Ok(PinSource::File(f)),
        (None, Some(e)) => Ok(PinSource::Env(e)),
        _ => Err(CliError::Other(
            "give a PIN file or a PIN environment variable".into(),
        )),
    }
}

/// Runs `hsm ...`.
pub fn run_hsm(cmd: HsmCommand) -> Result<(), CliError> {
    match cmd {
        HsmCommand::InitToken(a) => {
            let so_pin = pin_source(a.so_pin_file, a.so_pin_env)?.read()?;
            let user_pin = pin_source(a.pin_file, a.pin_env)?.read()?;
            match init_token(&a.module, &a.label, &so_pin, &user_pin) {
                Ok(()) => {
                    println!("token {:?} initialised", a.label);
                    Ok(())
                }
                Err(SignerError::TokenLabelExists(_)) if a.if_missing => {
                    println!("token {:?} exists; left as it is", a.label);
                    Ok(())
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

fn write_pem(path: &Path, cert: &Certificate) -> Result<(), CliError> {
    let pem = cert
        .to_pem(der::pem::LineEnding::LF)
        .map_err(|e| CliError::Other(format!("cannot encode the certificate as PEM: {e}")))?;
    write_file(path, pem.as_bytes())
}

/// Sends SIGHUP to the server whose pid file is in `state_dir`, if it runs. The pid is
/// only trusted when that process is an auditstamp (a stale file may name another one).
fn notify_server(state_dir: &Path) -> Result<Option<i32>, String> {
    let Ok(text) = std::fs::read_to_string(state_dir.join(super::serve::PID_FILE)) else {
        return Ok(None);
    };
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| "unreadable pid file".to_string())?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmdline).contains("auditstamp") {
        return Ok(None);
    }
    super::send_sighup(pid).map_err(|e| e.to_string())?;
    Ok(Some(pid))
}

/// Runs `keys ...`.
pub fn run(cmd: KeysCommand) -> Result<(), CliError> {
    match cmd {
        KeysCommand::Generate(a) => {
            let algorithm: KeyAlgorithm = a.algorithm.parse()?;
            let purpose: KeyPurpose = a.purpose.parse()?;
            // An appliance's or a witness's configuration.
            let (_cfg, hsm) = open_hsm_any(&a.config.config)?;
            match hsm.generate_key(&a.label, algorithm, purpose) {
                Ok(key) => {
                    println!(
                        "generated {} key {:?} (id {})",
                        a.algorithm,
                        key.label,
                        hex::encode(&key.id)
                    );
                    Ok(())
                }
                Err(SignerError::LabelExists(_)) if a.if_missing => {
                    println!("key {:?} exists; left as it is", a.label);
                    Ok(())
                }
                Err(e) => Err(e.into()),
            }
        }
        KeysCommand::List(a) => {
            let (cfg, hsm) = open_hsm_any(&a.config.config)?;
            let inventory = lifecycle::inventory(
                &hsm,
                cfg.as_ref().map(|cfg| cfg.raw.tsa.key_label.as_str()),
                SystemClock.now(),
            )?;
            let rows: Vec<serde_json::Value> = inventory
                .keys
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<_, _>>()
                .map_err(|e| CliError::Other(format!("cannot show the keys: {e}")))?;
            let damaged = inventory.damaged;
            if a.json {
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!(
                    "{:<20} {:<11} {:<7} {:<8} {:>9}  {:<16}  CERTIFICATE",
                    "LABEL", "ALGORITHM", "PURPOSE", "STATE", "DAYS LEFT", "SHA-256"
                );
                for r in &rows {
                    let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
                    let c = &r["certificate"];
                    let days = match (c["days_to_expiry"].as_i64(), c["expired"].as_bool()) {
                        (_, Some(true)) => "EXPIRED".to_string(),
                        (Some(d), _) => d.to_string(),
                        _ => "-".to_string(),
                    };
                    let fp = c["sha256_fingerprint"].as_str().map_or("-", |f| &f[..16]);
                    let subject = match c["subject"].as_str() {
                        Some(sub) => format!(
                            "{sub} (issuer {}, until {})",
                            s(&c["issuer"]),
                            s(&c["not_after"])
                        ),
                        None => "(none)".into(),
                    };
                    println!(
                        "{:<20} {:<11} {:<7} {:<8} {:>9}  {:<16}  {subject}",
                        s(&r["label"]),
                        s(&r["algorithm"]),
                        s(&r["purpose"]),
                        s(&r["state"]),
                        days,
                        fp,
                    );
                }
            }
            if !damaged.is_empty() {
                return Err(CliError::Other(format!(
                    "{} damaged record(s) on the token; nothing is done with their keys until \
                     they are restored (docs/operations.md: \"Damaged key records\"):\n  {}",
                    damaged.len(),
                    damaged.join("\n  ")
                )));
            }
            Ok(())
        }
        KeysCommand::DevCa(a) => {
            let (_cfg, hsm) = open_hsm(&a.config.config)?;
            let cert =
                provision::ensure_dev_ca(&hsm, &a.label, &a.subject, a.days, SystemClock.now())?;
            if let Some(out) = &a.out {
                write_pem(out, &cert)?;
                println!(
                    "DEVELOPMENT root CA {:?}: certificate written to {}",
                    a.label,
                    out.display()
                );
            } else {
                println!("DEVELOPMENT root CA {:?} ready", a.label);
            }
            Ok(())
        }
        KeysCommand::IssueDevCert(a) => {
            let (_cfg, hsm) = open_hsm(&a.config.config)?;
            let key = hsm.find_key(&a.label)?;
            let existing = if a.if_missing {
                lifecycle::stored_certificate(&hsm, &key)?
            } else {
                None
            };
            let cert = match existing {
                Some(c) => {
                    println!("key {:?} has a certificate already; kept", a.label);
                    c
                }
                None => {
                    let c = provision::issue_dev_cert(
                        &hsm,
                        &a.ca_label,
                        &a.label,
                        &a.subject,
                        a.days,
                        SystemClock.now(),
                    )?;
                    println!(
                        "issued a DEVELOPMENT certificate for {:?}: {}",
                        a.label, a.subject
                    );
                    c
                }
            };
            if let Some(out) = &a.out {
                write_pem(out, &cert)?;
                println!("certificate written to {}", out.display());
            }
            Ok(())
        }
        KeysCommand::Csr(a) => {
            let (_cfg, hsm) = open_hsm(&a.config.config)?;
            let csr = provision::make_csr(&hsm, &a.label, &a.subject)?;
            let pem = csr
                .to_pem(der::pem::LineEnding::LF)
                .map_err(|e| CliError::Other(format!("cannot encode the request as PEM: {e}")))?;
            match &a.out {
                Some(out) => {
                    write_file(out, pem.as_bytes())?;
                    println!(
                        "certificate request for {:?} written to {}",
                        a.label,
                        out.display()
                    );
                }
                None => print!("{pem}"),
            }
            Ok(())
        }
        KeysCommand::ImportCert(a) => {
            let certs = read_certificate_file(&a.cert)?;
            let [cert] = certs.as_slice() else {
                return Err(CliError::Other(format!(
                    "{}: expected one certificate, found {}",
                    a.cert.display(),
                    certs.len()
                )));
            };
            Certificate::from_der(cert).map_err(|e| {
                CliError::Other(format!("{}: not a certificate: {e}", a.cert.display()))
            })?;
            let chain = match &a.chain {
                Some(path) => read_certificate_file(path)?
                    .iter()
                    .map(|der| {
                        Certificate::from_der(der).map_err(|e| {
                            CliError::Other(format!("{}: not a certificate: {e}", path.display()))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                None => Vec::new(),
            };
            let (_cfg, hsm) = open_hsm(&a.config.config)?;
            let (_key, cert) =
                provision::import_certificate(&hsm, &a.label, cert, &chain, SystemClock.now())?;
            println!(
                "certificate {} (issuer {}) stored beside key {:?}",
                cert.tbs_certificate.subject, cert.tbs_certificate.issuer, a.label
            );
            Ok(())
        }
        KeysCommand::Rotate(a) => {
            let (cfg, hsm) = open_hsm(&a.config.config)?;
            let current = lifecycle::active_key(&hsm, &cfg.raw.tsa.key_label)?;
            let algorithm: Option<KeyAlgorithm> = match &a.algorithm {
                Some(name) => Some(name.parse()?),
                None => None,
            };
            let (key, csr) = lifecycle::rotate(&hsm, &current, &a.label, algorithm, &a.subject)?;
            let algorithm = key.algorithm;
            let pem = csr
                .to_pem(der::pem::LineEnding::LF)
                .map_err(|e| CliError::Other(format!("cannot encode the request as PEM: {e}")))?;
            write_file(&a.out, pem.as_bytes())?;
            println!(
                "generated {algorithm} key {:?}; {:?} stays active.\n\
                 certificate request written to {}: have the CA sign it, then\n  \
                 auditstamp keys import-cert --label {} --cert CERT.pem --chain CHAIN.pem\n  \
                 auditstamp keys activate --label {}",
                key.label,
                current.label,
                a.out.display(),
                key.label,
                key.label
            );
            Ok(())
        }
        KeysCommand::Activate(a) => {
            let (cfg, hsm) = open_hsm(&a.config.config)?;
            lifecycle::activate(&hsm, &cfg.raw.tsa.key_label, &a.label, SystemClock.now())?;
            println!("key {:?} is now the active TSA key", a.label);
            match notify_server(cfg.state_dir()) {
                Ok(Some(pid)) => {
                    println!("asked the running server (pid {pid}) to switch (SIGHUP)")
                }
                Ok(None) => {
                    println!("no running server found; the key is used from the next start")
                }
                Err(e) => {
                    println!("could not signal the server ({e}); send it SIGHUP or restart it")
                }
            }
            Ok(())
        }
        KeysCommand::Retire(a) => {
            if a.destroy && a.confirm_destroy.as_deref() != Some(a.label.as_str()) {
                return Err(CliError::Other(
                    "--destroy erases the key for good: confirm with --confirm-destroy <the same label>".into(),
                ));
            }
            let (cfg, hsm) = open_hsm(&a.config.config)?;
            lifecycle::retire(
                &hsm,
                &cfg.raw.tsa.key_label,
                &a.label,
                a.destroy,
                SystemClock.now(),
            )?;
            if a.destroy {
                println!(
                    "key {:?} retired and destroyed; its certificate stays on the token",
                    a.label
                );
            } else {
                println!("key {:?} retired; it can no longer be activated", a.label);
            }
            Ok(())
        }
        KeysCommand::ExportCert(a) => {
            let (_cfg, hsm) = open_hsm(&a.config.config)?;
            let key = hsm.find_key(&a.label)?;
            let cert = lifecycle::stored_certificate(&hsm, &key)?.ok_or_else(|| {
                CliError::Other(format!("key {:?} has no certificate on the token", a.label))
            })?;
            write_pem(&a.out, &cert)?;
            println!(
                "certificate of {:?} written to {}",
                a.label,
                a.out.display()
            );
            Ok(())
        }
    }
}
