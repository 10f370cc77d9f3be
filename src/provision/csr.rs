//! Certificate signing requests (PKCS#10, RFC 2986) signed inside the HSM, and the
//! import of the certificate a CA returns.

use std::time::SystemTime;

use const_oid::db::rfc5280::ID_KP_TIME_STAMPING;
use der::asn1::BitString;
use der::{Decode, Encode};
use x509_cert::attr::Attributes;
use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage, KeyUsages};
use x509_cert::request::{CertReq, CertReqInfo, ExtensionReq, Version};
use x509_cert::Certificate;

use super::certs::extension;
use super::{check_tsa_certificate, parse_subject, ProvisionError};
use crate::signer::soft_verify::SoftVerifier;
use crate::signer::{Hsm, KeyInfo, KeyPurpose};

/// The extensions a key of `purpose` asks its CA for: keyUsage digitalSignature (critical)
/// and, for TSA keys, extendedKeyUsage id-kp-timeStamping alone (critical).
fn requested_extensions(
    purpose: Option<KeyPurpose>,
) -> Result<Vec<x509_cert::ext::Extension>, ProvisionError> {
    let mut exts = vec![extension(
        &KeyUsage(KeyUsages::DigitalSignature.into()),
        true,
    )?];
    if purpose == Some(KeyPurpose::Tsa) {
        exts.push(extension(
            &ExtendedKeyUsage(vec![ID_KP_TIME_STAMPING]),
            true,
        )?);
    }
    Ok(exts)
}

/// A PKCS#10 request for key `label` with `subject` ("CN=...,O=...,C=..."), signed in the
/// HSM. TSA keys request the timeStamping extended key usage, critical and sole.
/// Refuses development CA keys (their certificate is self-made).
pub fn make_csr(hsm: &Hsm, label: &str, subject: &str) -> Result<CertReq, ProvisionError> {
    let key = hsm.find_key(label)?;
    if key.purpose == Some(KeyPurpose::DevCa) {
        return Err(ProvisionError::InvalidRequest(
            "a development CA key needs no certificate request",
        ));
    }
    let subject = parse_subject(subject)?;
    let ext_req = ExtensionReq(requested_extensions(key.purpose)?);
    let mut attributes = Attributes::new();
    attributes
        .insert(ext_req.try_into()?)
        .map_err(|_| ProvisionError::InvalidRequest("duplicate request attribute"))?;
    let info = CertReqInfo {
        version: Version::V1,
        subject,
        public_key: spki::SubjectPublicKeyInfoOwned::from_der(&key.public_key_der)?,
        attributes,
    };
    let signature = hsm.sign(&key, &info.to_der()?)?;
    Ok(CertReq {
        info,
        algorithm: key.signature_algorithm().algorithm_identifier(),
        signature: BitString::from_bytes(&signature)?,
    })
}

/// Checks that `issuer` signed `cert` (names chain and the signature verifies), when the
/// issuer's key signs with the scheme the certificate names.
fn check_issued_by(cert: &Certificate, issuer: &Certificate) -> Result<(), ProvisionError> {
    if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return Err(ProvisionError::ChainBroken(format!(
            "certificate {} was issued by {}, not by the next chain certificate {}",
            cert.tbs_certificate.subject,
            cert.tbs_certificate.issuer,
            issuer.tbs_certificate.subject
        )));
    }
    let verifier =
        SoftVerifier::from_spki_der(&issuer.tbs_certificate.subject_public_key_info.to_der()?)?;
    if verifier.algorithm().algorithm_identifier().oid != cert.signature_algorithm.oid {
        // Another hash with the same key type (e.g. a P-384 CA signing with SHA-256):
        // the names chain; the data center's verifier checks the signature.
        return Ok(());
    }
    let signature = cert
        .signature
        .as_bytes()
        .ok_or(ProvisionError::InvalidRequest(
            "a certificate signature with unused bits",
        ))?;
    verifier
        .verify(&cert.tbs_certificate.to_der()?, signature)
        .map_err(|_| {
            ProvisionError::ChainBroken(format!(
                "the signature on {} does not verify with the key of {}",
                cert.tbs_certificate.subject, issuer.tbs_certificate.subject
            ))
        })
}

/// Checks the certificate `der` a CA returned for key `label`, and stores it on the token
/// beside the key. Refused: bytes that are not strict DER, a certificate for another key,
/// one not valid at `now`, one whose `chain` (issuer first, up to the root) does not link,
/// and, for TSA keys, one whose extended key usage is not critical and solely timeStamping.
/// The chain's certificates are kept on the token too, for the chain the server publishes.
pub fn import_certificate(
    hsm: &Hsm,
    label: &str,
    der: &[u8],
    chain: &[Certificate],
    now: SystemTime,
) -> Result<(KeyInfo, Certificate), ProvisionError> {
    let key = hsm.find_key(label)?;
    let cert = Certificate::from_der(der)?;
    if cert.to_der()? != der {
        return Err(ProvisionError::InvalidRequest(
            "the certificate is not strict DER; ask the CA for a conforming one",
        ));
    }
    if !key.matches_certificate(&cert) {
        return Err(ProvisionError::CertificateKeyMismatch(label.to_owned()));
    }
    if key.purpose == Some(KeyPurpose::Tsa) {
        check_tsa_certificate(&cert, now)?;
    } else {
        super::check::check_validity(&cert, now)?;
    }
    let mut child = &cert;
    for issuer in chain {
        check_issued_by(child, issuer)?;
        child = issuer;
    }
    hsm.store_certificate(&key, der)?;
    for c in chain {
        hsm.store_authority_certificate(&c.to_der()?)?;
    }
    Ok((key, cert))
}
