//! `auditstamp keys ...` and `auditstamp hsm ...`: provisioning through the HSM.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use der::{Decode, EncodePem};
use x509_cert::Certificate;

use super::{open_hsm, read_certificate_file, write_file, CliError, ConfigArg};
use crate::config::PinSource;
use crate::provision;
use crate::signer::pkcs11::{init_token, KeyInfo};
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
    /// tsa or chain.
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

fn stored_certificate(
    hsm: &crate::signer::pkcs11::Hsm,
    key: &KeyInfo,
) -> Result<Option<Certificate>, CliError> {
    hsm.find_certificate(key)?
        .map(|der| {
            Certificate::from_der(&der).map_err(|e| {
                CliError::Other(format!(
                    "the certificate stored for key {:?} is not valid DER: {e}",
                    key.label
                ))
            })
        })
        .transpose()
}

/// Runs `keys ...`.
pub fn run(cmd: KeysCommand) -> Result<(), CliError> {
    match cmd {
        KeysCommand::Generate(a) => {
            let algorithm: KeyAlgorithm = a.algorithm.parse()?;
            let purpose: KeyPurpose = a.purpose.parse()?;
            let (_cfg, hsm) = open_hsm(&a.config.config)?;
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
            let (_cfg, hsm) = open_hsm(&a.config.config)?;
            let keys = hsm.list_keys()?;
            let mut rows = Vec::new();
            for key in &keys {
                let cert = stored_certificate(&hsm, key)?;
                rows.push(serde_json::json!({
                    "label": key.label,
                    "id": hex::encode(&key.id),
                    "algorithm": key.algorithm.to_string(),
                    "purpose": key.purpose.map(|p| p.to_string()),
                    "certificate": cert.as_ref().map(|c| serde_json::json!({
                        "subject": c.tbs_certificate.subject.to_string(),
                        "issuer": c.tbs_certificate.issuer.to_string(),
                        "not_after": c.tbs_certificate.validity.not_after.to_string(),
                    })),
                }));
            }
            if a.json {
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!(
                    "{:<20} {:<12} {:<8} {:<34} CERTIFICATE",
                    "LABEL", "ALGORITHM", "PURPOSE", "ID"
                );
                for r in &rows {
                    let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
                    let cert = r["certificate"]["subject"].as_str().unwrap_or("(none)");
                    println!(
                        "{:<20} {:<12} {:<8} {:<34} {cert}",
                        s(&r["label"]),
                        s(&r["algorithm"]),
                        s(&r["purpose"]),
                        s(&r["id"])
                    );
                }
            }
            Ok(())
        }
        KeysCommand::DevCa(a) => {
            let (_cfg, hsm) = open_hsm(&a.config.config)?;
            let cert = provision::ensure_dev_ca(&hsm, &a.label, &a.subject, a.days)?;
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
                stored_certificate(&hsm, &key)?
            } else {
                None
            };
            let cert = match existing {
                Some(c) => {
                    println!("key {:?} has a certificate already; kept", a.label);
                    c
                }
                None => {
                    let c =
                        provision::issue_dev_cert(&hsm, &a.ca_label, &a.label, &a.subject, a.days)?;
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
            let (_key, cert) = provision::import_certificate(
                &hsm,
                &a.label,
                cert,
                &chain,
                std::time::SystemTime::now(),
            )?;
            println!(
                "certificate {} (issuer {}) stored beside key {:?}",
                cert.tbs_certificate.subject, cert.tbs_certificate.issuer, a.label
            );
            Ok(())
        }
        KeysCommand::ExportCert(a) => {
            let (_cfg, hsm) = open_hsm(&a.config.config)?;
            let key = hsm.find_key(&a.label)?;
            let cert = stored_certificate(&hsm, &key)?.ok_or_else(|| {
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
