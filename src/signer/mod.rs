//! Signing keys that live in an HSM, reached through PKCS#11.
//!
//! [`Signer`] is the small trait the rest of the appliance signs through; it never sees
//! key material. The PKCS#11 backend ([`pkcs11`]) opens a token, finds keys by label, and
//! runs a pool of worker threads ([`pool`]) that each own one session (cryptoki sessions are
//! `Send` but not `Sync`: SoftHSM crashes when one session is used from two threads).
//! Every signature the HSM returns is verified in software ([`soft_verify`]) before a
//! caller sees it.
//!
//! This module imports nothing else of this crate. Its one error type is [`SignerError`].

use std::future::Future;
use std::pin::Pin;

/// A boxed future returned by [`Signer::sign_async`].
pub type SignFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, SignerError>> + Send>>;

/// The kinds of key pair the appliance can generate and sign with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256, signing with SHA-256.
    EcdsaP256,
    /// ECDSA on NIST P-384, signing with SHA-384.
    EcdsaP384,
    /// RSA PKCS#1 v1.5 with SHA-256; the modulus size in bits (2048..=4096).
    Rsa(u32),
    /// Ed25519 (PureEdDSA, CKM_EDDSA).
    Ed25519,
}

/// The signature scheme a key signs with, as X.509/CMS names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// ecdsa-with-SHA256 (1.2.840.10045.4.3.2); signature is a DER Ecdsa-Sig-Value.
    EcdsaSha256,
    /// ecdsa-with-SHA384 (1.2.840.10045.4.3.3); signature is a DER Ecdsa-Sig-Value.
    EcdsaSha384,
    /// sha256WithRSAEncryption (1.2.840.113549.1.1.11); signature is the raw RSA block.
    RsaPkcs1Sha256,
    /// id-Ed25519 (1.3.101.112); signature is the 64-byte R || S.
    Ed25519,
}

/// The digest a [`SignatureAlgorithm`] hashes the message with before signing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// SHA-256 (2.16.840.1.101.3.4.2.1).
    Sha256,
    /// SHA-384 (2.16.840.1.101.3.4.2.2).
    Sha384,
}

/// What a key is for; recorded on the token so that `keys list` can show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyPurpose {
    /// Signs RFC 3161 time-stamp tokens.
    Tsa,
    /// Signs block headers and checkpoints of the event chain.
    Chain,
    /// A development certificate authority (simulator and tests only).
    DevCa,
    /// Cosigns other logs' checkpoints as a C2SP witness (the data center's witness key).
    Witness,
}

/// Signs messages with one private key that never leaves the HSM.
///
/// Who hashes: the caller passes the whole message; the signer hashes it with
/// [`SignatureAlgorithm`]'s digest (in software) and the HSM signs the digest
/// (Ed25519 signs the message itself). The returned bytes are already in the
/// encoding X.509 and CMS carry, and have been verified in software against the
/// key's public half.
pub trait Signer: Send + Sync {
    /// The scheme this signer's signatures are made with.
    fn algorithm(&self) -> SignatureAlgorithm;
    /// The DER SubjectPublicKeyInfo of the signing key, as read from the HSM.
    fn public_key_der(&self) -> &[u8];
    /// Signs `message`, blocking the calling thread until the HSM answers.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignerError>;
    /// Signs `message` without blocking an async runtime's worker thread.
    fn sign_async(&self, message: Vec<u8>) -> SignFuture;
    /// Checks, blocking, that the HSM answers on a session (for the readiness probe).
    fn health(&self) -> Result<(), SignerError>;
    /// What this signer has done so far (for metrics); zeros when it does not count.
    fn counts(&self) -> SignerCounts {
        SignerCounts::default()
    }
}

/// Counters of a signer, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignerCounts {
    /// Signatures made (and verified, when verify-after-sign is on).
    pub signatures: u64,
    /// Signing requests that failed (HSM unavailable, device error, bad signature).
    pub errors: u64,
    /// HSM sessions reopened after an error or a library re-initialisation.
    pub reconnects: u64,
}

pub mod ed25519;
mod error;
pub mod pkcs11;
pub mod pool;
pub mod records;
mod signing;
pub mod soft_verify;
#[cfg(test)]
pub(crate) mod testsupport;

pub use error::{Pkcs11Failure, SignerError};
pub use pkcs11::{Hsm, KeyInfo, TokenSelector};
pub use pool::SigningPool;

use std::fmt;
use std::str::FromStr;

use const_oid::ObjectIdentifier;
use der::asn1::Null;
use der::Any;
use spki::AlgorithmIdentifierOwned;

/// Object identifiers this module names (RFC 5480, RFC 8410, RFC 4055, RFC 5758, NIST CSOR).
pub mod oids {
    use const_oid::ObjectIdentifier;

    /// id-ecPublicKey (RFC 5480).
    pub const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
    /// secp256r1 / prime256v1 (RFC 5480).
    pub const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
    /// secp384r1 (RFC 5480).
    pub const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
    /// rsaEncryption (RFC 8017).
    pub const RSA_ENCRYPTION: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
    /// id-Ed25519 (RFC 8410): both the key algorithm and the signature algorithm.
    pub const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
    /// ecdsa-with-SHA256 (RFC 5758).
    pub const ECDSA_WITH_SHA256: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
    /// ecdsa-with-SHA384 (RFC 5758).
    pub const ECDSA_WITH_SHA384: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
    /// sha256WithRSAEncryption (RFC 4055).
    pub const SHA256_WITH_RSA_ENCRYPTION: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
    /// id-sha256 (NIST CSOR).
    pub const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
    /// id-sha384 (NIST CSOR).
    pub const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
}

#[cfg(test)]
impl KeyAlgorithm {
    /// Every name [`FromStr`] accepts.
    const NAMES: [&'static str; 6] = [
        "ecdsa-p256",
        "ecdsa-p384",
        "rsa-2048",
        "rsa-3072",
        "rsa-4096",
        "ed25519",
    ];
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAlgorithm::EcdsaP256 => f.write_str("ecdsa-p256"),
            KeyAlgorithm::EcdsaP384 => f.write_str("ecdsa-p384"),
            KeyAlgorithm::Rsa(bits) => write!(f, "rsa-{bits}"),
            KeyAlgorithm::Ed25519 => f.write_str("ed25519"),
        }
    }
}

impl FromStr for KeyAlgorithm {
    type Err = SignerError;

    /// Parses `ecdsa-p256`, `ecdsa-p384`, `rsa-2048`, `rsa-3072`, `rsa-4096` or `ed25519`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ecdsa-p256" => Ok(KeyAlgorithm::EcdsaP256),
            "ecdsa-p384" => Ok(KeyAlgorithm::EcdsaP384),
            "rsa-2048" => Ok(KeyAlgorithm::Rsa(2048)),
            "rsa-3072" => Ok(KeyAlgorithm::Rsa(3072)),
            "rsa-4096" => Ok(KeyAlgorithm::Rsa(4096)),
            "ed25519" => Ok(KeyAlgorithm::Ed25519),
            other => Err(SignerError::UnknownKeyAlgorithm(other.to_owned())),
        }
    }
}

impl SignatureAlgorithm {
    /// The scheme a key of `key` kind signs with.
    pub fn for_key(key: KeyAlgorithm) -> Self {
        match key {
            KeyAlgorithm::EcdsaP256 => SignatureAlgorithm::EcdsaSha256,
            KeyAlgorithm::EcdsaP384 => SignatureAlgorithm::EcdsaSha384,
            KeyAlgorithm::Rsa(_) => SignatureAlgorithm::RsaPkcs1Sha256,
            KeyAlgorithm::Ed25519 => SignatureAlgorithm::Ed25519,
        }
    }

    /// The signature algorithm's OID, as X.509 and CMS name it.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            SignatureAlgorithm::EcdsaSha256 => oids::ECDSA_WITH_SHA256,
            SignatureAlgorithm::EcdsaSha384 => oids::ECDSA_WITH_SHA384,
            SignatureAlgorithm::RsaPkcs1Sha256 => oids::SHA256_WITH_RSA_ENCRYPTION,
            SignatureAlgorithm::Ed25519 => oids::ED25519,
        }
    }

    /// The AlgorithmIdentifier X.509 and CMS carry for this scheme: parameters absent
    /// for ECDSA (RFC 5758) and Ed25519 (RFC 8410), NULL for RSA (RFC 4055).
    pub fn algorithm_identifier(self) -> AlgorithmIdentifierOwned {
        let parameters = match self {
            SignatureAlgorithm::RsaPkcs1Sha256 => Some(Any::from(Null)),
            _ => None,
        };
        AlgorithmIdentifierOwned {
            oid: self.oid(),
            parameters,
        }
    }
}

impl DigestAlgorithm {
    /// The digest algorithm's OID.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            DigestAlgorithm::Sha256 => oids::SHA256,
            DigestAlgorithm::Sha384 => oids::SHA384,
        }
    }

    /// Hashes `data` with this digest.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest as _;
        match self {
            DigestAlgorithm::Sha256 => sha2::Sha256::digest(data).to_vec(),
            DigestAlgorithm::Sha384 => sha2::Sha384::digest(data).to_vec(),
        }
    }
}

impl KeyPurpose {
    /// The name used on the command line and on the token (`tsa`, `chain`, `dev-ca`,
    /// `witness`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPurpose::Tsa => "tsa",
            KeyPurpose::Chain => "chain",
            KeyPurpose::DevCa => "dev-ca",
            KeyPurpose::Witness => "witness",
        }
    }
}

impl fmt::Display for KeyPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyPurpose {
    type Err = SignerError;

    /// Parses `tsa`, `chain`, `dev-ca` or `witness`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tsa" => Ok(KeyPurpose::Tsa),
            "chain" => Ok(KeyPurpose::Chain),
            "dev-ca" => Ok(KeyPurpose::DevCa),
            "witness" => Ok(KeyPurpose::Witness),
            other => Err(SignerError::UnknownKeyPurpose(other.to_owned())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn key_algorithm_names_round_trip() {
        for name in KeyAlgorithm::NAMES {
            let alg: KeyAlgorithm = name.parse().unwrap();
            assert_eq!(alg.to_string(), name);
        }
        assert!(matches!(
            "rsa-1024".parse::<KeyAlgorithm>(),
            Err(SignerError::UnknownKeyAlgorithm(_))
        ));
    }

    #[test]
    fn key_purpose_names_round_trip() {
        for p in [
            KeyPurpose::Tsa,
            KeyPurpose::Chain,
            KeyPurpose::DevCa,
            KeyPurpose::Witness,
        ] {
            assert_eq!(p.to_string().parse::<KeyPurpose>().unwrap(), p);
        }
        assert!("ca".parse::<KeyPurpose>().is_err());
    }

    #[test]
    fn signature_algorithm_identifiers() {
        use der::Encode;
        let rsa = SignatureAlgorithm::RsaPkcs1Sha256.algorithm_identifier();
        assert_eq!(
            hex::encode(rsa.to_der().unwrap()),
            "300d06092a864886f70d01010b0500"
        );
        let ec = SignatureAlgorithm::EcdsaSha256.algorithm_identifier();
        assert_eq!(
            hex::encode(ec.to_der().unwrap()),
            "300a06082a8648ce3d040302"
        );
    }
}
