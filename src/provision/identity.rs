//! The startup checks of the TSA's signing identity: the active key, its certificate
//! (strict DER, certifying that key, fit for RFC 3161 now) and the chain above it, built
//! from the configured chain file and the CA certificates on the token. Nothing is served
//! until all of it holds; every refusal names its cause.

use std::time::SystemTime;

use der::{Decode, Encode};
use x509_cert::Certificate;

use super::ProvisionError;
use crate::signer::pkcs11::{Hsm, KeyInfo};

/// Decodes `der` (named `what` in errors), refusing anything that is not strict DER:
/// tokens carry the re-encoding and hash it (signingCertificateV2), so a verifier holding
/// the original bytes would see a different certificate.
pub fn strict_certificate(der: &[u8], what: &str) -> Result<Certificate, ProvisionError> {
    let cert = Certificate::from_der(der)
        .map_err(|e| ProvisionError::Refused(format!("{what}: not a certificate: {e}")))?;
    let reencoded = cert
        .to_der()
        .map_err(|e| ProvisionError::Refused(format!("{what} cannot be re-encoded: {e}")))?;
    if reencoded != der {
        return Err(ProvisionError::Refused(format!(
            "{what} is not strict DER; re-issue it with a conforming CA"
        )));
    }
    Ok(cert)
}

/// The chain above `leaf`, issuer first, from the certificates in `pool` (matched by
/// name, up to a self-signed root or the last one found).
pub fn build_chain(leaf: &Certificate, pool: &[Certificate]) -> Vec<Certificate> {
    let mut chain: Vec<Certificate> = Vec::new();
    let mut current = leaf;
    while current.tbs_certificate.issuer != current.tbs_certificate.subject {
        let next = pool.iter().find(|c| {
            c.tbs_certificate.subject == current.tbs_certificate.issuer && !chain.contains(c)
        });
        let Some(next) = next else { break };
        chain.push(next.clone());
        current = next;
    }
    chain
}

/// The TSA's signing identity as checked at startup.
#[derive(Debug, Clone)]
pub struct TsaIdentity {
    /// The active key.
    pub key: KeyInfo,
    /// Its certificate.
    pub certificate: Certificate,
    /// The chain above it, issuer first (empty when no CA certificate is known).
    pub chain: Vec<Certificate>,
    /// The certificates of keys active before, still published.
    pub previous: Vec<Certificate>,
}

/// Finds the active key ([`super::lifecycle::active_key`]), checks its certificate at
/// `now`, and builds its chain from `chain_file` (the configured intermediates and root,
/// already strict DER) and the CA certificates on the token.
pub fn tsa_identity(
    hsm: &Hsm,
    configured_label: &str,
    chain_file: Vec<Certificate>,
    now: SystemTime,
) -> Result<TsaIdentity, ProvisionError> {
    let key = super::lifecycle::active_key(hsm, configured_label)?;
    let label = &key.label;
    tracing::info!(key = %label, "signing key chosen");
    let cert_der = hsm.find_certificate(&key)?.ok_or_else(|| {
        ProvisionError::Refused(format!(
            "key {label:?} has no certificate on the token; import one with `auditstamp keys import-cert` \
             (or, for development, `auditstamp keys issue-dev-cert`)"
        ))
    })?;
    let cert = strict_certificate(&cert_der, &format!("the certificate of key {label:?}"))?;
    if !super::cert_matches_key(&cert, &key) {
        return Err(ProvisionError::Refused(format!(
            "the certificate stored for key {label:?} is for another key: its public key is not the HSM key's"
        )));
    }
    super::check_tsa_certificate(&cert, now)
        .map_err(|e| ProvisionError::Refused(format!("the certificate of key {label:?}: {e}")))?;
    let mut pool = chain_file;
    for (i, der) in hsm.authority_certificates()?.iter().enumerate() {
        pool.push(strict_certificate(
            der,
            &format!("CA certificate {} on the token", i + 1),
        )?);
    }
    let chain = build_chain(&cert, &pool);
    if !pool.is_empty() && chain.is_empty() {
        return Err(ProvisionError::Refused(format!(
            "the issuer of key {label:?}'s certificate ({}) is not in tsa.chain_file nor on the token",
            cert.tbs_certificate.issuer
        )));
    }
    let mut previous = Vec::new();
    for der in hsm.once_active_certificates()? {
        if der != cert_der {
            previous.push(strict_certificate(&der, "a previously active certificate")?);
        }
    }
    Ok(TsaIdentity {
        key,
        certificate: cert,
        chain,
        previous,
    })
}
