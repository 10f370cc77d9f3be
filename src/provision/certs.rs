//! The DEVELOPMENT certificate authority (simulator and tests only) and the
//! certificates it issues for HSM keys.

use std::time::{Duration, SystemTime};

use const_oid::db::rfc5280::ID_KP_TIME_STAMPING;
use const_oid::AssociatedOid;
use der::asn1::{BitString, GeneralizedTime, OctetString, UtcTime};
use der::{Decode, Encode};
use sha2::{Digest, Sha256};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

use super::{parse_subject, ProvisionError};
use crate::signer::{Hsm, KeyAlgorithm, KeyInfo, KeyPurpose, SignerError};

/// Certificates start one hour in the past, so that a verifier whose clock is slightly
/// behind accepts them at once.
const BACKDATE: Duration = Duration::from_secs(3600);
const DAY: u64 = 86_400;

/// An X.509 extension holding `value`, DER-encoded.
pub(super) fn extension<E: Encode + AssociatedOid>(
    value: &E,
    critical: bool,
) -> Result<Extension, ProvisionError> {
    Ok(Extension {
        extn_id: E::OID,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

/// RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds.
pub(super) fn x509_time(t: SystemTime) -> Result<Time, ProvisionError> {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| ProvisionError::InvalidRequest("a time before 1970"))?
        .as_secs();
    let since_epoch = Duration::from_secs(secs);
    Ok(match UtcTime::from_unix_duration(since_epoch) {
        Ok(utc) => Time::UtcTime(utc),
        Err(_) => Time::GeneralTime(GeneralizedTime::from_unix_duration(since_epoch)?),
    })
}

/// A key identifier per RFC 7093 §2 method 1: the leftmost 160 bits of the SHA-256 of
/// the subjectPublicKey bits.
pub(super) fn key_identifier(
    spki: &SubjectPublicKeyInfoOwned,
) -> Result<OctetString, ProvisionError> {
    let digest = Sha256::digest(spki.subject_public_key.raw_bytes());
    Ok(OctetString::new(&digest[..20])?)
}

/// A positive 16-byte serial number from the HSM's random number generator.
fn random_serial(hsm: &Hsm) -> Result<SerialNumber, ProvisionError> {
    let mut bytes = hsm.generate_random(16)?;
    if let Some(first) = bytes.first_mut() {
        // Top bit clear (positive), next bit set (exactly 16 bytes, never zero).
        *first = (*first & 0x7f) | 0x40;
    }
    Ok(SerialNumber::new(&bytes)?)
}

fn days(days: u32) -> Result<Duration, ProvisionError> {
    if days == 0 {
        return Err(ProvisionError::InvalidRequest(
            "a certificate must be valid for at least one day",
        ));
    }
    Ok(Duration::from_secs(u64::from(days) * DAY))
}

/// What differs between the certificates this module makes.
pub(super) struct CertTemplate {
    pub(super) subject: Name,
    pub(super) issuer: Name,
    pub(super) not_before: SystemTime,
    pub(super) not_after: SystemTime,
    pub(super) subject_public_key_info: SubjectPublicKeyInfoOwned,
    pub(super) extensions: Vec<Extension>,
}

/// Builds the TBSCertificate from `template` and signs it with `issuer_key` in the HSM.
pub(super) fn sign_certificate(
    hsm: &Hsm,
    issuer_key: &KeyInfo,
    template: CertTemplate,
) -> Result<Certificate, ProvisionError> {
    let algorithm = issuer_key.signature_algorithm().algorithm_identifier();
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: random_serial(hsm)?,
        signature: algorithm.clone(),
        issuer: template.issuer,
        validity: Validity {
            not_before: x509_time(template.not_before)?,
            not_after: x509_time(template.not_after)?,
        },
        subject: template.subject,
        subject_public_key_info: template.subject_public_key_info,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(template.extensions),
    };
    let signature = hsm.sign(issuer_key, &tbs.to_der()?)?;
    Ok(Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(&signature)?,
    })
}

/// The certificate stored beside `key`, checked to certify it.
fn stored_certificate(hsm: &Hsm, key: &KeyInfo) -> Result<Option<Certificate>, ProvisionError> {
    let Some(der) = hsm.find_certificate(key)? else {
        return Ok(None);
    };
    let cert = Certificate::from_der(&der)?;
    if !key.matches_certificate(&cert) {
        return Err(ProvisionError::CertificateKeyMismatch(key.label.clone()));
    }
    Ok(Some(cert))
}

fn require_dev_ca(key: &KeyInfo) -> Result<(), ProvisionError> {
    if key.purpose == Some(KeyPurpose::DevCa) {
        Ok(())
    } else {
        Err(ProvisionError::NotADevCa {
            label: key.label.clone(),
            purpose: key.purpose,
        })
    }
}

/// Makes sure a DEVELOPMENT root CA exists on the token, for the simulator and tests
/// only (never for production: its key is on the same token as the keys it certifies).
///
/// If the key `label` exists and has a certificate, that certificate is returned as it
/// is (idempotent: `subject` and `days` are then ignored). Otherwise an ECDSA P-256 key
/// (purpose dev-ca) is generated, or an existing dev-ca key without certificate is
/// used, and a self-signed v3 certificate is made: random positive 16-byte serial,
/// valid from one hour before `now` for `days` days, basicConstraints cA TRUE (critical),
/// keyUsage keyCertSign + cRLSign (critical), subjectKeyIdentifier. It is signed by
/// the HSM and stored on the token beside the key.
pub fn ensure_dev_ca(
    hsm: &Hsm,
    label: &str,
    subject: &str,
    days_valid: u32,
    now: SystemTime,
) -> Result<Certificate, ProvisionError> {
    let subject = parse_subject(subject)?;
    let validity = days(days_valid)?;
    let key = match hsm.find_key(label) {
        Ok(key) => {
            require_dev_ca(&key)?;
            if let Some(cert) = stored_certificate(hsm, &key)? {
                return Ok(cert);
            }
            tracing::info!(label, "the development CA key has no certificate yet");
            key
        }
        Err(SignerError::KeyNotFound(_)) => {
            hsm.generate_key(label, KeyAlgorithm::EcdsaP256, KeyPurpose::DevCa)?
        }
        Err(e) => return Err(e.into()),
    };
    let spki = SubjectPublicKeyInfoOwned::from_der(&key.public_key_der)?;
    let ski = key_identifier(&spki)?;
    let cert = sign_certificate(
        hsm,
        &key,
        CertTemplate {
            issuer: subject.clone(),
            subject,
            not_before: now - BACKDATE,
            not_after: now + validity,
            subject_public_key_info: spki,
            extensions: vec![
                extension(
                    &BasicConstraints {
                        ca: true,
                        path_len_constraint: None,
                    },
                    true,
                )?,
                extension(&KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign), true)?,
                extension(&SubjectKeyIdentifier(ski), false)?,
            ],
        },
    )?;
    hsm.store_certificate(&key, &cert.to_der()?)?;
    tracing::info!(label, subject = %cert.tbs_certificate.subject, "made a development CA certificate");
    Ok(cert)
}

/// The development CA's key, its certificate, and its key identifier.
pub(super) struct DevCa {
    pub(super) key: KeyInfo,
    pub(super) cert: Certificate,
    pub(super) key_id: OctetString,
}

pub(super) fn load_dev_ca(hsm: &Hsm, ca_label: &str) -> Result<DevCa, ProvisionError> {
    let key = hsm.find_key(ca_label)?;
    require_dev_ca(&key)?;
    let cert = stored_certificate(hsm, &key)?
        .ok_or_else(|| ProvisionError::CaCertificateMissing(ca_label.to_owned()))?;
    let key_id = match cert.tbs_certificate.get::<SubjectKeyIdentifier>()? {
        Some((_, ski)) => ski.0,
        None => key_identifier(&cert.tbs_certificate.subject_public_key_info)?,
    };
    Ok(DevCa { key, cert, key_id })
}

/// The extensions of a leaf certificate for `key`, issued by the CA with `ca_key_id`.
pub(super) fn leaf_extensions(
    key: &KeyInfo,
    spki: &SubjectPublicKeyInfoOwned,
    ca_key_id: &OctetString,
) -> Result<Vec<Extension>, ProvisionError> {
    let mut extensions = vec![
        extension(
            &BasicConstraints {
                ca: false,
                path_len_constraint: None,
            },
            true,
        )?,
        extension(
            &KeyUsage(KeyUsages::DigitalSignature | KeyUsages::NonRepudiation),
            true,
        )?,
    ];
    if key.purpose == Some(KeyPurpose::Tsa) {
        // RFC 3161 §2.3 and ETSI EN 319 422: only id-kp-timeStamping, critical.
        extensions.push(extension(
            &ExtendedKeyUsage(vec![ID_KP_TIME_STAMPING]),
            true,
        )?);
    }
    extensions.push(extension(
        &SubjectKeyIdentifier(key_identifier(spki)?),
        false,
    )?);
    extensions.push(extension(
        &AuthorityKeyIdentifier {
            key_identifier: Some(ca_key_id.clone()),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        },
        false,
    )?);
    Ok(extensions)
}

/// Certifies the public key of `key_label` with the DEVELOPMENT CA `ca_label`
/// (simulator and tests only), stores the certificate on the token beside the key and
/// returns it.
///
/// The certificate: v3, random serial, issuer = the CA's subject, valid from one hour
/// before `now` until `days` days after it or the CA's notAfter, whichever is first;
/// basicConstraints cA FALSE (critical), keyUsage digitalSignature + nonRepudiation
/// (critical), for a key of purpose tsa an extendedKeyUsage of only
/// id-kp-timeStamping (critical), subjectKeyIdentifier, and authorityKeyIdentifier =
/// the CA's subjectKeyIdentifier. The signature algorithm follows the CA's key.
pub fn issue_dev_cert(
    hsm: &Hsm,
    ca_label: &str,
    key_label: &str,
    subject: &str,
    days_valid: u32,
    now: SystemTime,
) -> Result<Certificate, ProvisionError> {
    let subject = parse_subject(subject)?;
    let validity = days(days_valid)?;
    let ca = load_dev_ca(hsm, ca_label)?;
    let key = hsm.find_key(key_label)?;
    if key.purpose == Some(KeyPurpose::DevCa) {
        return Err(ProvisionError::InvalidRequest(
            "a development CA key cannot get a leaf certificate",
        ));
    }
    let ca_not_after = ca.cert.tbs_certificate.validity.not_after.to_system_time();
    if ca_not_after <= now {
        return Err(ProvisionError::CaExpired(
            ca.cert.tbs_certificate.validity.not_after.to_string(),
        ));
    }
    let spki = SubjectPublicKeyInfoOwned::from_der(&key.public_key_der)?;
    let extensions = leaf_extensions(&key, &spki, &ca.key_id)?;
    let cert = sign_certificate(
        hsm,
        &ca.key,
        CertTemplate {
            subject,
            issuer: ca.cert.tbs_certificate.subject.clone(),
            not_before: now - BACKDATE,
            not_after: (now + validity).min(ca_not_after),
            subject_public_key_info: spki,
            extensions,
        },
    )?;
    hsm.store_certificate(&key, &cert.to_der()?)?;
    tracing::info!(
        key = key_label,
        ca = ca_label,
        subject = %cert.tbs_certificate.subject,
        "issued a development certificate"
    );
    Ok(cert)
}
