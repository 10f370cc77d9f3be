//! Software verification of the signatures the HSM returns.
//!
//! The HSM's answer is checked against the public key read from the HSM before any
//! caller sees it (SoftHSM has had intermittent bad ECDSA signatures; SignServer does
//! the same check). Verification uses RustCrypto (ECDSA P-256/P-384, RSA PKCS#1 v1.5
//! with SHA-256) and ed25519-dalek.

use der::Decode;
use rsa::pkcs8::DecodePublicKey;
use signature::Verifier;
use spki::SubjectPublicKeyInfoRef;

use super::{oids, SignatureAlgorithm, SignerError};

/// A public key parsed once, ready to verify many signatures.
#[derive(Clone, Debug)]
pub struct SoftVerifier {
    key: VerifyingKey,
}

#[derive(Clone, Debug)]
enum VerifyingKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Rsa(rsa::pkcs1v15::VerifyingKey<sha2::Sha256>),
    Ed25519(ed25519_dalek::VerifyingKey),
}

fn bad_key(what: &str) -> SignerError {
    SignerError::UnsupportedKeyType(format!("cannot use the public key: {what}"))
}

impl SoftVerifier {
    /// Parses a DER SubjectPublicKeyInfo (EC P-256/P-384, RSA, or Ed25519).
    pub fn from_spki_der(spki_der: &[u8]) -> Result<Self, SignerError> {
        let spki = SubjectPublicKeyInfoRef::from_der(spki_der)?;
        let bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| bad_key("the key BIT STRING has unused bits"))?;
        let key = if spki.algorithm.oid == oids::EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters_oid()
                .map_err(|_| bad_key("EC key without a named curve"))?;
            if curve == oids::SECP256R1 {
                VerifyingKey::P256(
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(bits)
                        .map_err(|_| bad_key("invalid P-256 point"))?,
                )
            } else if curve == oids::SECP384R1 {
                VerifyingKey::P384(
                    p384::ecdsa::VerifyingKey::from_sec1_bytes(bits)
                        .map_err(|_| bad_key("invalid P-384 point"))?,
                )
            } else {
                return Err(bad_key(&format!("EC curve {curve}")));
            }
        } else if spki.algorithm.oid == oids::RSA_ENCRYPTION {
            let public = rsa::RsaPublicKey::from_public_key_der(spki_der)
                .map_err(|e| bad_key(&format!("RSA key: {e}")))?;
            VerifyingKey::Rsa(rsa::pkcs1v15::VerifyingKey::new(public))
        } else if spki.algorithm.oid == oids::ED25519 {
            let bytes: &[u8; 32] = bits
                .try_into()
                .map_err(|_| bad_key("Ed25519 key is not 32 bytes"))?;
            VerifyingKey::Ed25519(
                ed25519_dalek::VerifyingKey::from_bytes(bytes)
                    .map_err(|_| bad_key("invalid Ed25519 point"))?,
            )
        } else {
            return Err(bad_key(&format!("algorithm {}", spki.algorithm.oid)));
        };
        Ok(SoftVerifier { key })
    }

    /// The signature scheme this key's signatures use.
    pub fn algorithm(&self) -> SignatureAlgorithm {
        match self.key {
            VerifyingKey::P256(_) => SignatureAlgorithm::EcdsaSha256,
            VerifyingKey::P384(_) => SignatureAlgorithm::EcdsaSha384,
            VerifyingKey::Rsa(_) => SignatureAlgorithm::RsaPkcs1Sha256,
            VerifyingKey::Ed25519(_) => SignatureAlgorithm::Ed25519,
        }
    }

    /// Verifies `signature` over the whole `message`, in the encoding the signer
    /// returns: DER Ecdsa-Sig-Value (ECDSA), the RSA signature block, or 64-byte R‖S
    /// (Ed25519). Returns [`SignerError::SignatureVerification`] on any mismatch.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SignerError> {
        let ok = match &self.key {
            VerifyingKey::P256(k) => p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| k.verify(message, &sig).is_ok()),
            VerifyingKey::P384(k) => p384::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| k.verify(message, &sig).is_ok()),
            VerifyingKey::Rsa(k) => rsa::pkcs1v15::Signature::try_from(signature)
                .is_ok_and(|sig| k.verify(message, &sig).is_ok()),
            VerifyingKey::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| k.verify_strict(message, &sig).is_ok()),
        };
        if ok {
            Ok(())
        } else {
            Err(SignerError::SignatureVerification)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn refuses_unknown_algorithms_and_garbage() {
        assert!(SoftVerifier::from_spki_der(b"not der").is_err());
        // An X25519 key (1.3.101.110) is not a signing key.
        let x25519 = hex::decode(
            "302a300506032b656e032100\
             0000000000000000000000000000000000000000000000000000000000000009",
        )
        .unwrap();
        assert!(matches!(
            SoftVerifier::from_spki_der(&x25519),
            Err(SignerError::UnsupportedKeyType(_))
        ));
    }

    #[test]
    fn ed25519_rfc8032_test_vector() {
        // RFC 8032 §7.1, TEST 1 (empty message).
        let spki = hex::decode(
            "302a300506032b6570032100\
             d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        )
        .unwrap();
        let sig = hex::decode(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
             5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        )
        .unwrap();
        let v = SoftVerifier::from_spki_der(&spki).unwrap();
        assert_eq!(v.algorithm(), SignatureAlgorithm::Ed25519);
        v.verify(b"", &sig).unwrap();
        assert!(v.verify(b"x", &sig).is_err());
        assert!(v.verify(b"", &sig[..63]).is_err());
    }
}
