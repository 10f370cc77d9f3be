//! Signature checks in software: the CMS signature of a token and the signatures on the
//! certificates of its path.
//!
//! Allowed: ECDSA on P-256 and P-384 with SHA-256/384/512, RSA PKCS#1 v1.5 and RSA-PSS
//! (MGF1 with the same hash, trailer field 1) with SHA-256/384/512 and keys of 2048 bits
//! or more (the `rsa` crate refuses keys above 4096 bits), and Ed25519. Anything else is
//! refused. `signer::soft_verify` is not used: it knows only the one scheme the HSM signs
//! with, and this module must take the hash from the algorithm identifier.
//!
//! Two implementations do the arithmetic ([`Backend`]): AWS-LC through `aws-lc-rs` (the
//! fastest measured here, `auditstamp bench verify`) for ECDSA P-256/P-384 with SHA-256/384
//! and RSA PKCS#1 v1.5 and PSS (salt = hash length), and RustCrypto for everything else
//! and for the RustCrypto backend. Which schemes, keys and sizes are allowed is decided here,
//! before either runs, so both accept the same signatures; when AWS-LC refuses one, the
//! RustCrypto check runs too, so the error says exactly why (and if it were to disagree,
//! the signature is refused all the same).

use const_oid::db::{rfc5912, rfc8410};
use der::asn1::ObjectIdentifier;
use der::referenced::OwnedToRef;
use der::{Decode, Encode, Tag, Tagged};
use rsa::traits::PublicKeyParts;
use signature::hazmat::PrehashVerifier;
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoOwned};

use super::asn1::check_der;
use super::SignatureProblem;
use crate::tsp::HashAlgorithm;

/// The smallest RSA modulus accepted, in bits.
pub(super) const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus accepted, in bits (the `rsa` crate's limit).
const MAX_RSA_BITS: usize = 4096;

/// Which implementation checks signatures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// AWS-LC (`aws-lc-rs`) for ECDSA P-256/P-384 with SHA-256/384 and RSA with
    /// SHA-256/384/512 (PSS only with a salt as long as the hash); RustCrypto for the rest
    /// (Ed25519, ECDSA with SHA-512, other PSS salts, compressed EC points).
    #[default]
    AwsLc,
    /// RustCrypto (`p256`, `p384`, `rsa`, `ed25519-dalek`) for everything: pure Rust,
    /// slower; kept for comparison (`auditstamp bench verify`).
    RustCrypto,
}

/// A public key this module can verify with.
enum Key {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// A signature scheme, with the hash it signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Ecdsa(HashAlgorithm),
    RsaPkcs1(HashAlgorithm),
    RsaPss {
        hash: HashAlgorithm,
        salt_len: usize,
    },
    Ed25519,
}

/// Verifies `sig` over `message` with the key `spki`, under the algorithm `alg`.
///
/// `cms_digest` is the SignerInfo's digestAlgorithm when the signature is a CMS one: it
/// gives the hash of `rsaEncryption` (which OpenSSL writes as the signatureAlgorithm of RSA
/// PKCS#1 v1.5 signers), and an algorithm that names its own hash must name the same one.
/// For a certificate signature it is `None`, and the algorithm must name its hash.
pub(super) fn verify(
    backend: Backend,
    spki: &SubjectPublicKeyInfoOwned,
    alg: &AlgorithmIdentifierRef<'_>,
    cms_digest: Option<HashAlgorithm>,
    message: &[u8],
    sig: &[u8],
) -> Result<(), SignatureProblem> {
    let scheme = scheme(alg, cms_digest)?;
    if backend == Backend::AwsLc && fast_verify(scheme, spki, message, sig) == Some(true) {
        return Ok(());
    }
    let verdict = rust_crypto_verify(scheme, spki, message, sig);
    if backend == Backend::AwsLc && verdict.is_ok() && fast_handles(scheme, spki) {
        // AWS-LC refused what RustCrypto accepts: refuse (never seen; both are checked
        // against the same vectors).
        return Err(SignatureProblem::Invalid);
    }
    verdict
}

/// A AWS-LC algorithm and the key bytes it takes.
type RingCheck<'a> = (
    &'static dyn aws_lc_rs::signature::VerificationAlgorithm,
    &'a [u8],
);

/// The AWS-LC algorithm for `scheme` with the key `spki`, and the key bytes it takes;
/// `None` when AWS-LC does not do this scheme or key (RustCrypto does it then).
fn fast_algorithm(scheme: Scheme, spki: &SubjectPublicKeyInfoOwned) -> Option<RingCheck<'_>> {
    use aws_lc_rs::signature as rs;
    let bits = spki.subject_public_key.as_bytes()?;
    let oid = spki.algorithm.oid;
    match scheme {
        Scheme::Ecdsa(hash) if oid == rfc5912::ID_EC_PUBLIC_KEY => {
            let curve = spki.algorithm.owned_to_ref().parameters_oid().ok()?;
            // Uncompressed points only (AWS-LC's form); compressed ones go to RustCrypto.
            let alg: &'static rs::EcdsaVerificationAlgorithm = match (curve, hash) {
                (c, HashAlgorithm::Sha256) if c == rfc5912::SECP_256_R_1 => {
                    &rs::ECDSA_P256_SHA256_ASN1
                }
                (c, HashAlgorithm::Sha384) if c == rfc5912::SECP_256_R_1 => {
                    &rs::ECDSA_P256_SHA384_ASN1
                }
                (c, HashAlgorithm::Sha256) if c == rfc5912::SECP_384_R_1 => {
                    &rs::ECDSA_P384_SHA256_ASN1
                }
                (c, HashAlgorithm::Sha384) if c == rfc5912::SECP_384_R_1 => {
                    &rs::ECDSA_P384_SHA384_ASN1
                }
                _ => return None,
            };
            let len = if curve == rfc5912::SECP_256_R_1 {
                65
            } else {
                97
            };
            (bits.len() == len && bits[0] == 0x04).then_some((alg, bits))
        }
        Scheme::RsaPkcs1(hash) if oid == rfc5912::RSA_ENCRYPTION => {
            rsa_key_for_fast(spki, bits)?;
            let alg: &'static rs::RsaParameters = match hash {
                HashAlgorithm::Sha256 => &rs::RSA_PKCS1_2048_8192_SHA256,
                HashAlgorithm::Sha384 => &rs::RSA_PKCS1_2048_8192_SHA384,
                HashAlgorithm::Sha512 => &rs::RSA_PKCS1_2048_8192_SHA512,
            };
            Some((alg, bits))
        }
        Scheme::RsaPss { hash, salt_len }
            if oid == rfc5912::RSA_ENCRYPTION && salt_len == hash.output_len() =>
        {
            rsa_key_for_fast(spki, bits)?;
            let alg: &'static rs::RsaParameters = match hash {
                HashAlgorithm::Sha256 => &rs::RSA_PSS_2048_8192_SHA256,
                HashAlgorithm::Sha384 => &rs::RSA_PSS_2048_8192_SHA384,
                HashAlgorithm::Sha512 => &rs::RSA_PSS_2048_8192_SHA512,
            };
            Some((alg, bits))
        }
        _ => None,
    }
}

/// The modulus size in bits of the RSAPublicKey `der`.
fn rsa_bits(der: &[u8]) -> Option<usize> {
    let key = rsa::pkcs1::RsaPublicKey::from_der(der).ok()?;
    let n = key.modulus.as_bytes();
    let n = &n[n.iter().take_while(|b| **b == 0).count()..];
    let top = u32::from(*n.first()?);
    Some((n.len() - 1) * 8 + (32 - top.leading_zeros()) as usize)
}

/// `Some(())` when the RSA key `spki` (whose RSAPublicKey is `der`) is one AWS-LC may
/// check for this module: NULL or absent parameters and a modulus of 2048 to 4096 bits (the
/// sizes allowed here; AWS-LC would take up to 8192). AWS-LC's own key checks (odd modulus,
/// odd exponent of 3 to 2^33-1) are stricter than the `rsa` crate's, so it never accepts a
/// key RustCrypto refuses.
fn rsa_key_for_fast(spki: &SubjectPublicKeyInfoOwned, der: &[u8]) -> Option<()> {
    let params_ok = spki
        .algorithm
        .parameters
        .as_ref()
        .is_none_or(|p| p.is_null());
    (params_ok && (MIN_RSA_BITS..=MAX_RSA_BITS).contains(&rsa_bits(der)?)).then_some(())
}

/// The signature algorithm and key, for people: `ECDSA P-256 with SHA-256`,
/// `RSA-2048 PKCS#1 v1.5 with SHA-256`, `RSA-3072 PSS with SHA-384 (salt 48)`, `Ed25519`.
pub(super) fn describe(
    spki: &SubjectPublicKeyInfoOwned,
    alg: &AlgorithmIdentifierRef<'_>,
    cms_digest: Option<HashAlgorithm>,
) -> String {
    let Ok(scheme) = scheme(alg, cms_digest) else {
        return format!("algorithm {}", alg.oid);
    };
    let pretty = |h: HashAlgorithm| match h {
        HashAlgorithm::Sha256 => "SHA-256",
        HashAlgorithm::Sha384 => "SHA-384",
        HashAlgorithm::Sha512 => "SHA-512",
    };
    let rsa = || {
        spki.subject_public_key
            .as_bytes()
            .and_then(rsa_bits)
            .map_or_else(|| "RSA".to_owned(), |b| format!("RSA-{b}"))
    };
    match scheme {
        Scheme::Ecdsa(hash) => {
            let curve = spki.algorithm.owned_to_ref().parameters_oid().ok();
            let curve = match curve {
                Some(c) if c == rfc5912::SECP_256_R_1 => "P-256".to_owned(),
                Some(c) if c == rfc5912::SECP_384_R_1 => "P-384".to_owned(),
                Some(c) => c.to_string(),
                None => "?".to_owned(),
            };
            format!("ECDSA {curve} with {}", pretty(hash))
        }
        Scheme::RsaPkcs1(hash) => format!("{} PKCS#1 v1.5 with {}", rsa(), pretty(hash)),
        Scheme::RsaPss { hash, salt_len } => {
            format!("{} PSS with {} (salt {salt_len})", rsa(), pretty(hash))
        }
        Scheme::Ed25519 => "Ed25519".to_owned(),
    }
}

/// Whether AWS-LC does `scheme` with `spki`.
fn fast_handles(scheme: Scheme, spki: &SubjectPublicKeyInfoOwned) -> bool {
    fast_algorithm(scheme, spki).is_some()
}

/// AWS-LC's verdict, or `None` when it does not do this scheme or key.
fn fast_verify(
    scheme: Scheme,
    spki: &SubjectPublicKeyInfoOwned,
    message: &[u8],
    sig: &[u8],
) -> Option<bool> {
    let (alg, key) = fast_algorithm(scheme, spki)?;
    Some(
        aws_lc_rs::signature::UnparsedPublicKey::new(alg, key)
            .verify(message, sig)
            .is_ok(),
    )
}

/// The RustCrypto verdict.
fn rust_crypto_verify(
    scheme: Scheme,
    spki: &SubjectPublicKeyInfoOwned,
    message: &[u8],
    sig: &[u8],
) -> Result<(), SignatureProblem> {
    let key = parse_key(spki)?;
    let ok = match (scheme, &key) {
        (Scheme::Ecdsa(hash), Key::P256(k)) => {
            let prehash = hash.digest(message);
            p256::ecdsa::Signature::from_der(sig)
                .is_ok_and(|s| k.verify_prehash(&prehash, &s).is_ok())
        }
        (Scheme::Ecdsa(hash), Key::P384(k)) => {
            let prehash = hash.digest(message);
            p384::ecdsa::Signature::from_der(sig)
                .is_ok_and(|s| k.verify_prehash(&prehash, &s).is_ok())
        }
        (Scheme::RsaPkcs1(hash), Key::Rsa(k)) => {
            let hashed = hash.digest(message);
            k.verify(pkcs1v15(hash), &hashed, sig).is_ok()
        }
        (Scheme::RsaPss { hash, salt_len }, Key::Rsa(k)) => {
            let hashed = hash.digest(message);
            k.verify(pss(hash, salt_len), &hashed, sig).is_ok()
        }
        (Scheme::Ed25519, Key::Ed25519(k)) => ed25519_dalek::Signature::from_slice(sig)
            .is_ok_and(|s| k.verify_strict(message, &s).is_ok()),
        _ => return Err(SignatureProblem::KeyAlgorithmMismatch),
    };
    if ok {
        Ok(())
    } else {
        Err(SignatureProblem::Invalid)
    }
}

fn pkcs1v15(hash: HashAlgorithm) -> rsa::Pkcs1v15Sign {
    match hash {
        HashAlgorithm::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
        HashAlgorithm::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
        HashAlgorithm::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
    }
}

fn pss(hash: HashAlgorithm, salt_len: usize) -> rsa::Pss {
    match hash {
        HashAlgorithm::Sha256 => rsa::Pss::new_with_salt::<sha2::Sha256>(salt_len),
        HashAlgorithm::Sha384 => rsa::Pss::new_with_salt::<sha2::Sha384>(salt_len),
        HashAlgorithm::Sha512 => rsa::Pss::new_with_salt::<sha2::Sha512>(salt_len),
    }
}

/// Parameters absent, or NULL where the algorithm's RFC allows either (RSA).
fn params_absent(alg: &AlgorithmIdentifierRef<'_>) -> bool {
    alg.parameters.is_none()
}

fn params_absent_or_null(alg: &AlgorithmIdentifierRef<'_>) -> bool {
    alg.parameters.is_none_or(|p| p.is_null())
}

/// The scheme of `alg`, checked against the CMS digest when there is one.
fn scheme(
    alg: &AlgorithmIdentifierRef<'_>,
    cms_digest: Option<HashAlgorithm>,
) -> Result<Scheme, SignatureProblem> {
    let named = |hash: HashAlgorithm| -> Result<HashAlgorithm, SignatureProblem> {
        match cms_digest {
            Some(d) if d != hash => Err(SignatureProblem::DigestMismatch),
            _ => Ok(hash),
        }
    };
    let oid = alg.oid;
    let ecdsa = [
        (rfc5912::ECDSA_WITH_SHA_256, HashAlgorithm::Sha256),
        (rfc5912::ECDSA_WITH_SHA_384, HashAlgorithm::Sha384),
        (rfc5912::ECDSA_WITH_SHA_512, HashAlgorithm::Sha512),
    ];
    let rsa = [
        (rfc5912::SHA_256_WITH_RSA_ENCRYPTION, HashAlgorithm::Sha256),
        (rfc5912::SHA_384_WITH_RSA_ENCRYPTION, HashAlgorithm::Sha384),
        (rfc5912::SHA_512_WITH_RSA_ENCRYPTION, HashAlgorithm::Sha512),
    ];
    if let Some((_, hash)) = ecdsa.iter().find(|(o, _)| *o == oid) {
        if !params_absent(alg) {
            return Err(SignatureProblem::BadParameters(
                "ECDSA parameters must be absent",
            ));
        }
        return Ok(Scheme::Ecdsa(named(*hash)?));
    }
    if let Some((_, hash)) = rsa.iter().find(|(o, _)| *o == oid) {
        if !params_absent_or_null(alg) {
            return Err(SignatureProblem::BadParameters(
                "RSA parameters must be NULL",
            ));
        }
        return Ok(Scheme::RsaPkcs1(named(*hash)?));
    }
    if oid == rfc5912::RSA_ENCRYPTION {
        // Only in CMS (RFC 3370 §3.2): the digest is the SignerInfo's.
        let Some(hash) = cms_digest else {
            return Err(SignatureProblem::UnsupportedAlgorithm(oid));
        };
        if !params_absent_or_null(alg) {
            return Err(SignatureProblem::BadParameters(
                "RSA parameters must be NULL",
            ));
        }
        return Ok(Scheme::RsaPkcs1(hash));
    }
    if oid == rfc5912::ID_RSASSA_PSS {
        let (hash, salt_len) = pss_params(alg)?;
        return Ok(Scheme::RsaPss {
            hash: named(hash)?,
            salt_len,
        });
    }
    if oid == rfc8410::ID_ED_25519 {
        if !params_absent(alg) {
            return Err(SignatureProblem::BadParameters(
                "Ed25519 parameters must be absent",
            ));
        }
        return Ok(Scheme::Ed25519);
    }
    Err(SignatureProblem::UnsupportedAlgorithm(oid))
}

/// RSASSA-PSS-params (RFC 4055 §3.1): a SHA-2 hash, MGF1 with the same hash, trailer 1.
fn pss_params(
    alg: &AlgorithmIdentifierRef<'_>,
) -> Result<(HashAlgorithm, usize), SignatureProblem> {
    let bad = SignatureProblem::BadParameters;
    let params = alg.parameters.ok_or(bad("RSA-PSS without parameters"))?;
    if params.tag() != Tag::Sequence {
        return Err(bad("RSA-PSS parameters are not a SEQUENCE"));
    }
    let der = params.to_der().map_err(|_| bad("RSA-PSS parameters"))?;
    let p = rsa::pkcs1::RsaPssParams::from_der(&der)
        .map_err(|_| bad("RSA-PSS parameters do not decode"))?;
    // Its decoder takes DEFAULTs written out (trailerField 1, saltLength 20, ...), which
    // DER omits.
    if p.to_der().ok().as_deref() != Some(der.as_slice()) || check_der(&der).is_err() {
        return Err(bad(
            "RSA-PSS parameters are not DER (a DEFAULT written out?)",
        ));
    }
    let hash = HashAlgorithm::from_oid(&p.hash.oid)
        .ok_or(bad("RSA-PSS hash is not SHA-256, SHA-384 or SHA-512"))?;
    if p.mask_gen.oid != rfc5912::ID_MGF_1 {
        return Err(bad("RSA-PSS mask generation is not MGF1"));
    }
    let mgf_hash: Option<ObjectIdentifier> = p.mask_gen.parameters.map(|h| h.oid);
    if mgf_hash != Some(hash.oid()) {
        return Err(bad("RSA-PSS MGF1 hash is not the signature's hash"));
    }
    Ok((hash, usize::from(p.salt_len)))
}

/// The key of `spki`, if it is one this module verifies with.
fn parse_key(spki: &SubjectPublicKeyInfoOwned) -> Result<Key, SignatureProblem> {
    let unsupported = |what: &str| SignatureProblem::UnsupportedKey(what.to_owned());
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| unsupported("the key BIT STRING has unused bits"))?;
    let oid = spki.algorithm.oid;
    if oid == rfc5912::ID_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .owned_to_ref()
            .parameters_oid()
            .map_err(|_| unsupported("an EC key without a named curve"))?;
        if curve == rfc5912::SECP_256_R_1 {
            return p256::ecdsa::VerifyingKey::from_sec1_bytes(bits)
                .map(Key::P256)
                .map_err(|_| unsupported("an invalid P-256 point"));
        }
        if curve == rfc5912::SECP_384_R_1 {
            return p384::ecdsa::VerifyingKey::from_sec1_bytes(bits)
                .map(Key::P384)
                .map_err(|_| unsupported("an invalid P-384 point"));
        }
        return Err(SignatureProblem::UnsupportedKey(format!(
            "EC curve {curve}"
        )));
    }
    if oid == rfc5912::RSA_ENCRYPTION {
        let der = spki.to_der().map_err(|_| unsupported("RSA key"))?;
        let key = <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&der)
            .map_err(|e| SignatureProblem::UnsupportedKey(format!("RSA key: {e}")))?;
        let size = key.n().bits();
        if size < MIN_RSA_BITS {
            return Err(SignatureProblem::RsaKeyTooSmall(size));
        }
        return Ok(Key::Rsa(key));
    }
    if oid == rfc8410::ID_ED_25519 {
        let bytes: &[u8; 32] = bits
            .try_into()
            .map_err(|_| unsupported("an Ed25519 key that is not 32 bytes"))?;
        return ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(Key::Ed25519)
            .map_err(|_| unsupported("an invalid Ed25519 point"));
    }
    Err(SignatureProblem::UnsupportedKey(format!(
        "key algorithm {oid}"
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn alg(oid: ObjectIdentifier) -> AlgorithmIdentifierRef<'static> {
        AlgorithmIdentifierRef {
            oid,
            parameters: None,
        }
    }

    #[test]
    fn schemes() {
        assert_eq!(
            scheme(&alg(rfc5912::ECDSA_WITH_SHA_384), None),
            Ok(Scheme::Ecdsa(HashAlgorithm::Sha384))
        );
        assert_eq!(
            scheme(
                &alg(rfc5912::ECDSA_WITH_SHA_384),
                Some(HashAlgorithm::Sha256)
            ),
            Err(SignatureProblem::DigestMismatch)
        );
        assert_eq!(
            scheme(&alg(rfc5912::RSA_ENCRYPTION), Some(HashAlgorithm::Sha512)),
            Ok(Scheme::RsaPkcs1(HashAlgorithm::Sha512))
        );
        // rsaEncryption names no hash: not for certificates.
        assert!(scheme(&alg(rfc5912::RSA_ENCRYPTION), None).is_err());
        let sha1_rsa = rfc5912::SHA_1_WITH_RSA_ENCRYPTION;
        assert_eq!(
            scheme(&alg(sha1_rsa), None),
            Err(SignatureProblem::UnsupportedAlgorithm(sha1_rsa))
        );
        let with_null = AlgorithmIdentifierRef {
            oid: rfc5912::ECDSA_WITH_SHA_256,
            parameters: Some(der::asn1::AnyRef::NULL),
        };
        assert!(matches!(
            scheme(&with_null, None),
            Err(SignatureProblem::BadParameters(_))
        ));
        // PSS without parameters (SHA-1 defaults) is refused.
        assert!(scheme(&alg(rfc5912::ID_RSASSA_PSS), None).is_err());
    }

    #[test]
    fn pss_parameters() {
        let params = rsa::pkcs1::RsaPssParams::new::<sha2::Sha384>(48)
            .to_der()
            .unwrap();
        let any = der::asn1::AnyRef::from_der(&params).unwrap();
        let a = AlgorithmIdentifierRef {
            oid: rfc5912::ID_RSASSA_PSS,
            parameters: Some(any),
        };
        assert_eq!(
            scheme(&a, None),
            Ok(Scheme::RsaPss {
                hash: HashAlgorithm::Sha384,
                salt_len: 48
            })
        );
        assert_eq!(
            scheme(&a, Some(HashAlgorithm::Sha256)),
            Err(SignatureProblem::DigestMismatch)
        );
    }
}
