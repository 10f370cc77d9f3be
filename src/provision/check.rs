//! The checks the server runs at startup on the TSA key's certificate.

use std::collections::HashSet;
use std::time::SystemTime;

use const_oid::db::rfc5280::ID_KP_TIME_STAMPING;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};
use x509_cert::Certificate;

use super::ProvisionError;
use crate::signer::KeyInfo;

/// Whether `cert` certifies `key` (same algorithm, curve and public key bits).
pub fn cert_matches_key(cert: &Certificate, key: &KeyInfo) -> bool {
    key.matches_certificate(cert)
}

/// Checks that `cert` may sign time-stamp tokens at `now` (RFC 3161 §2.3, ETSI EN
/// 319 422 §6): an extendedKeyUsage extension that is critical and lists only
/// id-kp-timeStamping; a keyUsage, if present, of only digitalSignature and/or
/// nonRepudiation; not a CA; valid at `now`; no extension twice. The error names the
/// first problem found.
pub fn check_tsa_certificate(cert: &Certificate, now: SystemTime) -> Result<(), ProvisionError> {
    let tbs = &cert.tbs_certificate;
    let mut seen = HashSet::new();
    for ext in tbs.extensions.as_deref().unwrap_or(&[]) {
        if !seen.insert(ext.extn_id) {
            return Err(ProvisionError::DuplicateExtension(ext.extn_id));
        }
    }

    match tbs.get::<ExtendedKeyUsage>()? {
        None => return Err(ProvisionError::EkuMissing),
        Some((false, _)) => return Err(ProvisionError::EkuNotCritical),
        Some((true, eku)) => {
            if eku.0 != [ID_KP_TIME_STAMPING] {
                return Err(ProvisionError::EkuNotSoleTimeStamping { found: eku.0 });
            }
        }
    }

    if let Some((_, usage)) = tbs.get::<KeyUsage>()? {
        let allowed = KeyUsages::DigitalSignature | KeyUsages::NonRepudiation;
        if usage.0.is_empty() || !(usage.0 & !allowed).is_empty() {
            return Err(ProvisionError::KeyUsageNotAllowed);
        }
    }

    if let Some((_, constraints)) = tbs.get::<BasicConstraints>()? {
        if constraints.ca {
            return Err(ProvisionError::CertificateIsCa);
        }
    }

    check_validity(cert, now)
}

/// Checks that `cert` is valid at `now`.
pub fn check_validity(cert: &Certificate, now: SystemTime) -> Result<(), ProvisionError> {
    let validity = &cert.tbs_certificate.validity;
    if now < validity.not_before.to_system_time() {
        return Err(ProvisionError::NotYetValid(validity.not_before.to_string()));
    }
    if now > validity.not_after.to_system_time() {
        return Err(ProvisionError::Expired(validity.not_after.to_string()));
    }
    Ok(())
}
