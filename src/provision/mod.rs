//! Ops tasks on the HSM: subjects, the DEVELOPMENT certificate authority, certificate
//! issuance for HSM keys, and the startup checks on a TSA certificate.
//!
//! The development CA ([`ensure_dev_ca`], [`issue_dev_cert`]) exists for the simulator
//! and for tests only: production TSA certificates come from the audit office's CA.
//! Certificates are built with x509-cert's types (the type is the encoder) and signed
//! inside the HSM through [`Hsm::sign`](crate::signer::Hsm::sign).
//!
//! [`cert_matches_key`] and [`check_tsa_certificate`] are what the server runs at
//! startup to fail fast, with an error naming the cause, when the certificate does not
//! fit the key or RFC 3161 / ETSI EN 319 422.
//!
//! [`lifecycle`] holds the rules of a TSA key's life (which key is active, rotation,
//! activation, retirement) and [`identity`] the startup checks of the key, its certificate
//! and its chain before the server signs.
//!
//! This module imports only [`crate::signer`]. Its one error type is [`ProvisionError`].

mod certs;
mod check;
mod csr;
pub mod identity;
pub mod lifecycle;
mod subject;

pub use certs::{ensure_dev_ca, issue_dev_cert};
pub use check::{cert_matches_key, check_tsa_certificate};
pub use csr::{import_certificate, make_csr};
pub use subject::parse_subject;

use const_oid::ObjectIdentifier;

use crate::signer::{KeyPurpose, SignerError};

/// Everything that can go wrong while provisioning keys and certificates, or when a
/// certificate is unfit for the TSA.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// The HSM refused or failed an operation.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// A subject string is not a valid RFC 4514 distinguished name.
    #[error("invalid subject {subject:?}: {reason}")]
    InvalidSubject {
        /// The whole subject string as given.
        subject: String,
        /// What is wrong, naming the offending part.
        reason: String,
    },
    /// A certificate or extension could not be decoded or encoded.
    #[error("certificate encoding error: {0}")]
    Der(#[from] der::Error),
    /// An argument is out of range (e.g. a validity of zero days).
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The key named as the development CA was made for another purpose.
    #[error("key {label:?} is not a development CA key (its purpose is {})", purpose.map_or("not recorded", |p| p.as_str()))]
    NotADevCa {
        /// The key's label.
        label: String,
        /// The purpose recorded on the token.
        purpose: Option<KeyPurpose>,
    },
    /// The development CA's key has no certificate on the token.
    #[error("the development CA key {0:?} has no certificate on the token (run ensure_dev_ca)")]
    CaCertificateMissing(String),
    /// The certificate stored beside a key certifies another key.
    #[error("the certificate stored for key {0:?} does not certify that key")]
    CertificateKeyMismatch(String),
    /// The development CA's certificate is no longer valid.
    #[error("the development CA certificate expired at {0}")]
    CaExpired(String),
    /// The certificate has the same extension twice (RFC 5280 §4.2 forbids it).
    #[error("the certificate has the extension {0} more than once")]
    DuplicateExtension(ObjectIdentifier),
    /// The TSA certificate has no extendedKeyUsage extension.
    #[error("the TSA certificate has no extendedKeyUsage extension (RFC 3161 §2.3 requires a critical extendedKeyUsage with only id-kp-timeStamping)")]
    EkuMissing,
    /// The TSA certificate's extendedKeyUsage extension is not marked critical.
    #[error("the TSA certificate's extendedKeyUsage extension is not critical (RFC 3161 §2.3 requires it critical)")]
    EkuNotCritical,
    /// The TSA certificate's extendedKeyUsage is not exactly id-kp-timeStamping.
    #[error("the TSA certificate's extendedKeyUsage must be only id-kp-timeStamping (1.3.6.1.5.5.7.3.8), found [{}]", found.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    EkuNotSoleTimeStamping {
        /// The key purposes the extension lists.
        found: Vec<ObjectIdentifier>,
    },
    /// The TSA certificate's keyUsage allows more than digitalSignature/nonRepudiation
    /// (or nothing at all).
    #[error("the TSA certificate's keyUsage must be digitalSignature and/or nonRepudiation only")]
    KeyUsageNotAllowed,
    /// The TSA certificate is a CA certificate (basicConstraints cA TRUE).
    #[error("the TSA certificate is a CA certificate (basicConstraints cA is TRUE)")]
    CertificateIsCa,
    /// The certificate's validity starts in the future.
    #[error("the certificate is not valid yet (notBefore {0})")]
    NotYetValid(String),
    /// A certificate of the chain does not certify the one before it.
    #[error("certificate chain: {0}")]
    ChainBroken(String),
    /// The certificate's validity has ended.
    #[error("the certificate has expired (notAfter {0})")]
    Expired(String),
    /// A rule of the key lifecycle or of the startup checks refuses: the message names the
    /// key or certificate and what to do.
    #[error("{0}")]
    Refused(String),
}

#[cfg(test)]
mod tests;
