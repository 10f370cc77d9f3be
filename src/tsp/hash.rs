//! The hash algorithms of message imprints and of the CMS message digest.

use core::fmt;
use core::str::FromStr;

use der::asn1::ObjectIdentifier;
use sha2::Digest;
use spki::AlgorithmIdentifierRef;

use super::{oid, TspError};

/// Hash algorithms accepted for message imprints (and used for the CMS message digest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-256 (32-byte digests).
    Sha256,
    /// SHA-384 (48-byte digests).
    Sha384,
    /// SHA-512 (64-byte digests).
    Sha512,
}

impl HashAlgorithm {
    /// Every algorithm this type knows.
    pub const ALL: [HashAlgorithm; 3] = [Self::Sha256, Self::Sha384, Self::Sha512];

    /// The longest output of any of them, in bytes.
    pub const MAX_OUTPUT_LEN: usize = 64;

    /// The algorithm's object identifier (RFC 5754).
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Sha256 => oid::ID_SHA256,
            Self::Sha384 => oid::ID_SHA384,
            Self::Sha512 => oid::ID_SHA512,
        }
    }

    /// The length of a digest, in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// The algorithm with this object identifier, if it is one of ours.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.oid() == *oid)
    }

    /// The lower-case name: `sha256`, `sha384` or `sha512` (OpenSSL's spelling).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Self::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Self::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// The AlgorithmIdentifier this module writes for the algorithm in CMS: parameters
    /// absent, as RFC 5754 §2 asks of generators.
    pub(crate) fn identifier_absent_params(self) -> AlgorithmIdentifierRef<'static> {
        AlgorithmIdentifierRef {
            oid: self.oid(),
            parameters: None,
        }
    }

    /// The AlgorithmIdentifier this module writes for the algorithm in a message imprint:
    /// parameters NULL, as OpenSSL, Bouncy Castle and most clients send it in requests (a
    /// TSTInfo's imprint should repeat the request's).
    pub(crate) fn identifier_null_params(self) -> AlgorithmIdentifierRef<'static> {
        AlgorithmIdentifierRef {
            oid: self.oid(),
            parameters: Some(der::asn1::AnyRef::NULL),
        }
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlgorithm {
    type Err = TspError;

    /// Parses `sha256`, `sha384` or `sha512` (ASCII case ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|h| h.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| TspError::UnknownHashAlgorithm(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn names_oids_and_lengths_agree() {
        for h in HashAlgorithm::ALL {
            assert_eq!(HashAlgorithm::from_oid(&h.oid()), Some(h));
            assert_eq!(h.name().parse::<HashAlgorithm>().unwrap(), h);
            assert_eq!(h.to_string(), h.name());
            assert_eq!(h.digest(b"abc").len(), h.output_len());
            assert!(h.output_len() <= HashAlgorithm::MAX_OUTPUT_LEN);
        }
        assert_eq!(
            "SHA384".parse::<HashAlgorithm>().unwrap(),
            HashAlgorithm::Sha384
        );
        assert!("sha1".parse::<HashAlgorithm>().is_err());
        assert!("sha-256".parse::<HashAlgorithm>().is_err());
        let sha1 = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
        assert_eq!(HashAlgorithm::from_oid(&sha1), None);
        assert_eq!(
            HashAlgorithm::Sha256.oid(),
            const_oid::db::rfc5912::ID_SHA_256,
            "cross-check against const-oid's database"
        );
        assert_eq!(
            HashAlgorithm::Sha384.oid(),
            const_oid::db::rfc5912::ID_SHA_384
        );
        assert_eq!(
            HashAlgorithm::Sha512.oid(),
            const_oid::db::rfc5912::ID_SHA_512
        );
    }

    #[test]
    fn sha256_of_abc() {
        assert_eq!(
            hex::encode(HashAlgorithm::Sha256.digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
