//! The one signing routine, shared by [`Hsm::sign`](super::Hsm::sign) and the pool's
//! workers: hash in software, sign in the HSM, encode, verify in software.

use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use der::asn1::OctetString;
use der::{Encode, Sequence};
use spki::AlgorithmIdentifierOwned;

use super::soft_verify::SoftVerifier;
use super::{DigestAlgorithm, KeyAlgorithm, SignerError};

/// RFC 8017 §9.2, the input of an RSASSA-PKCS1-v1_5 signature:
///
/// ```text
/// DigestInfo ::= SEQUENCE {
///     digestAlgorithm DigestAlgorithmIdentifier,
///     digest          Digest }
/// Digest ::= OCTET STRING
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct DigestInfo {
    digest_algorithm: AlgorithmIdentifierOwned,
    digest: OctetString,
}

/// What the HSM is asked to sign for `message`: the SHA-256/SHA-384 digest (ECDSA),
/// the DER DigestInfo of the SHA-256 digest (RSA PKCS#1 v1.5), or the message (Ed25519).
pub(crate) fn signing_input(
    algorithm: KeyAlgorithm,
    message: &[u8],
) -> Result<Vec<u8>, SignerError> {
    Ok(match algorithm {
        KeyAlgorithm::EcdsaP256 => DigestAlgorithm::Sha256.digest(message),
        KeyAlgorithm::EcdsaP384 => DigestAlgorithm::Sha384.digest(message),
        KeyAlgorithm::Rsa(_) => DigestInfo {
            // RFC 8017 Appendix A.2.4: the SHA-2 parameters are NULL in a DigestInfo.
            digest_algorithm: AlgorithmIdentifierOwned {
                oid: DigestAlgorithm::Sha256.oid(),
                parameters: Some(der::Any::from(der::asn1::Null)),
            },
            digest: OctetString::new(DigestAlgorithm::Sha256.digest(message))?,
        }
        .to_der()?,
        KeyAlgorithm::Ed25519 => message.to_vec(),
    })
}

fn mechanism(algorithm: KeyAlgorithm) -> Mechanism<'static> {
    match algorithm {
        KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => Mechanism::Ecdsa,
        KeyAlgorithm::Rsa(_) => Mechanism::RsaPkcs,
        KeyAlgorithm::Ed25519 => Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
    }
}

/// Turns the HSM's raw output into the encoding X.509/CMS carry: CKM_ECDSA returns r‖s,
/// which becomes a DER Ecdsa-Sig-Value; RSA and Ed25519 signatures are used as they are.
/// `None` when the raw ECDSA value is malformed (treated like a bad signature).
fn encode(algorithm: KeyAlgorithm, raw: Vec<u8>) -> Option<Vec<u8>> {
    match algorithm {
        KeyAlgorithm::EcdsaP256 => p256::ecdsa::Signature::from_slice(&raw)
            .ok()
            .map(|s| s.to_der().as_bytes().to_vec()),
        KeyAlgorithm::EcdsaP384 => p384::ecdsa::Signature::from_slice(&raw)
            .ok()
            .map(|s| s.to_der().as_bytes().to_vec()),
        KeyAlgorithm::Rsa(_) | KeyAlgorithm::Ed25519 => Some(raw),
    }
}

/// One signature of `input` (what [`signing_input`] made of the message) by the private
/// key `key` on `session`, in the encoding X.509/CMS carry. `Ok(None)`: the HSM answered
/// a malformed ECDSA value (treated like a bad signature).
pub(crate) fn sign_input(
    session: &Session,
    key: ObjectHandle,
    algorithm: KeyAlgorithm,
    input: &[u8],
) -> Result<Option<Vec<u8>>, SignerError> {
    let raw = session.sign(&mechanism(algorithm), key, input)?;
    let signature = encode(algorithm, raw);
    if signature.is_none() {
        tracing::warn!(%algorithm, "the HSM returned a malformed ECDSA signature");
    }
    Ok(signature)
}

/// Whether `signature` (from [`sign_input`]) may be handed out: with a `verifier`, it must
/// verify over `message` in software.
pub(crate) fn passes(
    verifier: Option<&SoftVerifier>,
    algorithm: KeyAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> bool {
    match verifier {
        None => true,
        Some(v) if v.verify(message, signature).is_ok() => true,
        Some(_) => {
            tracing::warn!(%algorithm, "the HSM's signature failed software verification");
            false
        }
    }
}

/// Signs `message` with the private key `key` on `session`.
///
/// With a `verifier`, the signature is checked in software; a signature that fails is
/// made once more, and a second failure returns [`SignerError::SignatureVerification`].
pub(crate) fn sign_message(
    session: &Session,
    key: ObjectHandle,
    algorithm: KeyAlgorithm,
    verifier: Option<&SoftVerifier>,
    message: &[u8],
) -> Result<Vec<u8>, SignerError> {
    let input = signing_input(algorithm, message)?;
    for _attempt in 1..=2 {
        if let Some(signature) = sign_input(session, key, algorithm, &input)? {
            if passes(verifier, algorithm, message, &signature) {
                return Ok(signature);
            }
        }
    }
    Err(SignerError::SignatureVerification)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn rsa_input_is_the_standard_sha256_digest_info() {
        // RFC 8017 §9.2 note 1: the DER prefix for SHA-256.
        let input = signing_input(KeyAlgorithm::Rsa(2048), b"abc").unwrap();
        let prefix = "3031300d060960864801650304020105000420";
        assert_eq!(hex::encode(&input[..19]), prefix);
        assert_eq!(
            &input[19..],
            DigestAlgorithm::Sha256.digest(b"abc").as_slice()
        );
    }

    #[test]
    fn ecdsa_raw_signature_becomes_der() {
        let mut raw = vec![0u8; 64];
        raw[31] = 1;
        raw[63] = 2;
        let der = encode(KeyAlgorithm::EcdsaP256, raw).unwrap();
        assert_eq!(hex::encode(der), "3006020101020102");
        assert!(encode(KeyAlgorithm::EcdsaP256, vec![0u8; 64]).is_none());
        assert!(encode(KeyAlgorithm::EcdsaP384, vec![1u8; 64]).is_none());
    }
}
