//! The rules of a TSA key's life on the token: which key is active, what `keys list`
//! shows of each key, and what rotation, activation and retirement require.
//!
//! - The active key is the one `activate` recorded on the token, or, before any
//!   activation, the configuration's `tsa.key_label` ([`active_key`]).
//! - [`rotate`] makes a successor key and its certificate request; the active key stays
//!   active until the successor, certified, is activated.
//! - [`activate`] takes only a TSA key that is not retired, whose certificate fits RFC 3161
//!   now, on a token without damaged records; the key signing until then keeps its
//!   certificate published.
//! - [`retire`] refuses the active key (activate its successor first); a retired key can
//!   never be activated again, and may be destroyed (its certificate stays on the token).

use std::time::SystemTime;

use der::{Decode, Encode};
use sha2::Digest;
use x509_cert::request::CertReq;
use x509_cert::Certificate;

use super::ProvisionError;
use crate::signer::pkcs11::{Hsm, KeyInfo};
use crate::signer::{KeyAlgorithm, KeyPurpose, SignerError};

/// The key to sign with: the one `keys activate` recorded on the token, or, before any
/// activation, the configuration's `tsa.key_label` (`configured_label`).
pub fn active_key(hsm: &Hsm, configured_label: &str) -> Result<KeyInfo, ProvisionError> {
    match hsm.active_tsa_key_id()? {
        Some(id) => hsm.find_key_by_id(&id)?.ok_or_else(|| {
            ProvisionError::Refused(format!(
                "the active TSA key recorded on the token (id {}) is not there any more; \
                 make another key active with `auditstamp keys activate`",
                hex::encode(&id)
            ))
        }),
        None => Ok(hsm.find_key(configured_label)?),
    }
}

/// The certificate stored beside `key`, decoded, if there is one.
pub fn stored_certificate(hsm: &Hsm, key: &KeyInfo) -> Result<Option<Certificate>, ProvisionError> {
    hsm.find_certificate(key)?
        .map(|der| {
            Certificate::from_der(&der).map_err(|e| {
                ProvisionError::Refused(format!(
                    "the certificate stored for key {:?} is not valid DER: {e}",
                    key.label
                ))
            })
        })
        .transpose()
}

/// What `keys list` shows of a key's certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertificateSummary {
    /// Its subject (RFC 4514).
    pub subject: String,
    /// Its issuer (RFC 4514).
    pub issuer: String,
    /// Its notBefore.
    pub not_before: String,
    /// Its notAfter.
    pub not_after: String,
    /// The SHA-256 of its DER, hex.
    pub sha256_fingerprint: String,
    /// Whole days until notAfter (negative once expired).
    pub days_to_expiry: i128,
    /// Whether notAfter has passed.
    pub expired: bool,
}

/// The summary of the certificate stored beside `key` at `now`, if there is one.
pub fn certificate_summary(
    hsm: &Hsm,
    key: &KeyInfo,
    now: SystemTime,
) -> Result<Option<CertificateSummary>, ProvisionError> {
    let Some(c) = stored_certificate(hsm, key)? else {
        return Ok(None);
    };
    let v = &c.tbs_certificate.validity;
    let secs_left = v
        .not_after
        .to_system_time()
        .duration_since(now)
        .map_or_else(
            |e| -i128::from(e.duration().as_secs()),
            |d| i128::from(d.as_secs()),
        );
    let der = c.to_der()?;
    Ok(Some(CertificateSummary {
        subject: c.tbs_certificate.subject.to_string(),
        issuer: c.tbs_certificate.issuer.to_string(),
        not_before: v.not_before.to_string(),
        not_after: v.not_after.to_string(),
        sha256_fingerprint: hex::encode(sha2::Sha256::digest(&der)),
        days_to_expiry: secs_left.div_euclid(86_400),
        expired: secs_left < 0,
    }))
}

/// One key as `keys list` shows it (JSON: these fields).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyStatus {
    /// The key's label (a damaged record's object label).
    pub label: String,
    /// The key id, hex (none for a destroyed key's damaged record).
    pub id: Option<String>,
    /// The key's algorithm.
    pub algorithm: Option<String>,
    /// The purpose recorded (none when unrecorded or damaged).
    pub purpose: Option<String>,
    /// Whether `serve` signs with it.
    pub active: bool,
    /// `active`, `retired`, `previous` (once active), `standby` or `damaged`.
    pub state: &'static str,
    /// When it was activated (Unix seconds).
    pub activated_at: Option<u64>,
    /// When it was retired (Unix seconds).
    pub retired_at: Option<u64>,
    /// Its certificate.
    pub certificate: Option<CertificateSummary>,
    /// What is wrong with its record (damaged records only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damage: Option<String>,
}

/// Every key on the token with its state, by label, and every damaged record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// The keys, damaged ones included, sorted by label.
    pub keys: Vec<KeyStatus>,
    /// What is wrong with each damaged record (nothing is done with their keys until they
    /// are restored).
    pub damaged: Vec<String>,
}

/// The keys on the token and their states. `configured_label`: the appliance's
/// `tsa.key_label`, which is active before any activation (none for a witness's token).
pub fn inventory(
    hsm: &Hsm,
    configured_label: Option<&str>,
    now: SystemTime,
) -> Result<Inventory, ProvisionError> {
    let inventory = hsm.key_inventory()?;
    // Damaged records are listed, never hidden.
    let mut damaged: Vec<String> = Vec::new();
    let pointer = match hsm.active_tsa_key_id() {
        Ok(id) => id,
        Err(SignerError::DamagedRecord(d)) => {
            damaged.push(d.to_string());
            None
        }
        Err(e) => return Err(e.into()),
    };
    // The key `serve` signs with: the one activated, or before any activation the
    // configuration's; none known when the pointer is damaged.
    let active = configured_label.and_then(|configured| match &pointer {
        Some(id) => Some(id.clone()),
        None if damaged.is_empty() => inventory
            .keys
            .iter()
            .find(|k| k.label == configured)
            .map(|k| k.id.clone()),
        None => None,
    });
    let mut keys = Vec::new();
    for key in &inventory.keys {
        let is_active = active.as_ref() == Some(&key.id);
        let state = if is_active {
            "active"
        } else if key.retired_at.is_some() {
            "retired"
        } else if key.activated_at.is_some() {
            "previous"
        } else {
            "standby"
        };
        keys.push(KeyStatus {
            label: key.label.clone(),
            id: Some(hex::encode(&key.id)),
            algorithm: Some(key.algorithm.to_string()),
            purpose: key.purpose.map(|p| p.to_string()),
            active: is_active,
            state,
            activated_at: key.activated_at,
            retired_at: key.retired_at,
            certificate: certificate_summary(hsm, key, now)?,
            damage: None,
        });
    }
    for d in &inventory.damaged {
        damaged.push(d.damage.to_string());
        let key = d.key.as_ref();
        keys.push(KeyStatus {
            label: d.damage.object.clone(),
            id: key.map(|k| hex::encode(&k.id)),
            algorithm: key.map(|k| k.algorithm.to_string()),
            purpose: None,
            active: false,
            state: "damaged",
            activated_at: None,
            retired_at: None,
            certificate: match key {
                Some(k) => certificate_summary(hsm, k, now)?,
                None => None,
            },
            damage: Some(d.damage.to_string()),
        });
    }
    keys.sort_by(|a, b| a.label.cmp(&b.label));
    Ok(Inventory { keys, damaged })
}

/// Generates the successor `label` of the active key `current` (with `algorithm`, else
/// the current key's) and its certificate request for `subject`; `current` stays active.
pub fn rotate(
    hsm: &Hsm,
    current: &KeyInfo,
    label: &str,
    algorithm: Option<KeyAlgorithm>,
    subject: &str,
) -> Result<(KeyInfo, CertReq), ProvisionError> {
    let algorithm = algorithm.unwrap_or(current.algorithm);
    let key = hsm.generate_key(label, algorithm, KeyPurpose::Tsa)?;
    let csr = super::make_csr(hsm, &key.label, subject)?;
    Ok((key, csr))
}

/// Makes `label` the active TSA key, checked at `now`; `configured_label` is the key that
/// was active before any activation, which keeps its certificate published.
pub fn activate(
    hsm: &Hsm,
    configured_label: &str,
    label: &str,
    now: SystemTime,
) -> Result<KeyInfo, ProvisionError> {
    let key = hsm.find_key(label)?;
    if key.purpose != Some(KeyPurpose::Tsa) {
        return Err(ProvisionError::Refused(format!(
            "key {label:?} is not a TSA key (purpose {})",
            key.purpose.map_or("not recorded", |p| p.as_str())
        )));
    }
    if key.retired_at.is_some() {
        return Err(SignerError::KeyRetired(label.to_owned()).into());
    }
    // A damaged record anywhere on the token stops the server from loading its keys (it
    // may be a key whose certificate must stay published): not now.
    if let Some(d) = hsm.key_inventory()?.damaged.into_iter().next() {
        return Err(SignerError::DamagedRecord(d.damage).into());
    }
    let cert = stored_certificate(hsm, &key)?.ok_or_else(|| {
        ProvisionError::Refused(format!(
            "key {label:?} has no certificate; import one first (keys import-cert)"
        ))
    })?;
    super::check_tsa_certificate(&cert, now)?;
    // The key signing until now keeps its certificate published.
    if hsm.active_tsa_key_id()?.is_none() {
        match hsm.find_key(configured_label) {
            Ok(bootstrap) if bootstrap.id != key.id => {
                hsm.set_active_tsa_key(&bootstrap, now)?;
            }
            Ok(_) | Err(SignerError::KeyNotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    hsm.set_active_tsa_key(&key, now)?;
    Ok(key)
}

/// Retires `label` at `now` (and with `destroy`, erases its key pair; its certificate stays
/// on the token). The active TSA key is refused: which one is active must be known, so a
/// damaged record is an error, not "another key".
pub fn retire(
    hsm: &Hsm,
    configured_label: &str,
    label: &str,
    destroy: bool,
    now: SystemTime,
) -> Result<KeyInfo, ProvisionError> {
    let key = hsm.find_key(label)?;
    if key.purpose == Some(KeyPurpose::Tsa) {
        match active_key(hsm, configured_label) {
            Ok(active) if active.id == key.id => {
                return Err(ProvisionError::Refused(format!(
                    "key {label:?} is the active TSA key; activate its successor first"
                )));
            }
            Err(e @ ProvisionError::Signer(SignerError::DamagedRecord(_))) => return Err(e),
            Ok(_) | Err(_) => {}
        }
    }
    hsm.retire_key(&key, now)?;
    if destroy {
        hsm.destroy_key(&key)?;
    }
    Ok(key)
}
