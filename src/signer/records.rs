//! What the token remembers about each key besides the key itself: its purpose and its
//! lifecycle (activated, retired), and which key is the active TSA key.
//!
//! Each key has one CKO_DATA object (CKA_APPLICATION "auditstamp", CKA_LABEL = the key's
//! label) whose CKA_VALUE is text, one `name=value` per line:
//!
//! ```text
//! purpose=tsa
//! id=<the key's CKA_ID, hex>
//! activated=<Unix seconds when first made the active key>
//! retired=<Unix seconds when retired>
//! ```
//!
//! The active TSA key is named by one more data object, labelled [`ACTIVE_TSA_LABEL`],
//! whose value is the key's CKA_ID in hex: switching keys is one write, never a state in
//! which two keys are active. Records outlive a destroyed key, so the certificates of keys
//! that once signed stay on the token and stay published.

use std::time::{SystemTime, UNIX_EPOCH};

use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use der::{Decode, Encode};

use super::pkcs11::{find_purpose_objects, read_bytes, Hsm, KeyInfo, APPLICATION};
use super::{KeyPurpose, SignerError};

/// Label of the data object that names the active TSA key.
pub const ACTIVE_TSA_LABEL: &str = "auditstamp:active-tsa";

/// The lifecycle record of one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRecord {
    /// What the key is for.
    pub purpose: Option<KeyPurpose>,
    /// The key's CKA_ID (kept so its certificate is found after the key is destroyed).
    pub id: Vec<u8>,
    /// When the key was first activated (Unix seconds).
    pub activated_at: Option<u64>,
    /// When the key was retired (Unix seconds).
    pub retired_at: Option<u64>,
}

impl KeyRecord {
    fn parse(label: &str, text: &str) -> KeyRecord {
        let mut r = KeyRecord::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once('=').unwrap_or((line, ""));
            let ok = match name {
                "purpose" => value.parse().map(|p| r.purpose = Some(p)).is_ok(),
                "id" => hex::decode(value).map(|id| r.id = id).is_ok(),
                "activated" => value.parse().map(|t| r.activated_at = Some(t)).is_ok(),
                "retired" => value.parse().map(|t| r.retired_at = Some(t)).is_ok(),
                _ => false,
            };
            if !ok {
                tracing::warn!(label, line, "unreadable line in a key record on the token");
            }
        }
        r
    }

    fn render(&self) -> String {
        let mut out = String::new();
        if let Some(p) = self.purpose {
            out.push_str(&format!("purpose={p}\n"));
        }
        out.push_str(&format!("id={}\n", hex::encode(&self.id)));
        if let Some(t) = self.activated_at {
            out.push_str(&format!("activated={t}\n"));
        }
        if let Some(t) = self.retired_at {
            out.push_str(&format!("retired={t}\n"));
        }
        out
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn data_object(label: &str, value: Vec<u8>) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Application(APPLICATION.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Value(value),
    ]
}

/// Replaces the data objects labelled `label` with one holding `value`: the new object is
/// created before the old ones are destroyed, so a crash leaves at least one.
fn write_data(session: &Session, label: &str, value: Vec<u8>) -> Result<(), SignerError> {
    let old = find_purpose_objects(session, label)?;
    session.create_object(&data_object(label, value))?;
    for o in old {
        session.destroy_object(o)?;
    }
    Ok(())
}

/// The record of the key labelled `label`, if there is one. With several (a crash between
/// create and destroy), the newest wins: the one created last has the highest handle on
/// SoftHSM, and all of them are equally valid otherwise.
pub(super) fn read_record(
    session: &Session,
    label: &str,
) -> Result<Option<KeyRecord>, SignerError> {
    let mut found = None;
    for object in find_purpose_objects(session, label)? {
        if let Some(value) = read_bytes(session, object, AttributeType::Value)? {
            found = Some(KeyRecord::parse(label, &String::from_utf8_lossy(&value)));
        }
    }
    Ok(found)
}

/// Records a new key's purpose and id, replacing a record left by a deleted key.
pub(super) fn create_record(
    session: &Session,
    label: &str,
    id: &[u8],
    purpose: KeyPurpose,
) -> Result<(), SignerError> {
    let record = KeyRecord {
        purpose: Some(purpose),
        id: id.to_vec(),
        ..KeyRecord::default()
    };
    write_data(session, label, record.render().into_bytes())
}

/// Refuses to reuse the label of a destroyed key that once signed: its record keeps its
/// certificate published.
pub(super) fn ensure_label_reusable(session: &Session, label: &str) -> Result<(), SignerError> {
    match read_record(session, label)? {
        Some(r) if r.activated_at.is_some() => Err(SignerError::LabelUsedBefore(label.to_owned())),
        _ => Ok(()),
    }
}

fn certificates_with_id(session: &Session, id: &[u8]) -> Result<Vec<ObjectHandle>, SignerError> {
    Ok(session.find_objects(&[
        Attribute::Class(ObjectClass::CERTIFICATE),
        Attribute::CertificateType(CertificateType::X_509),
        Attribute::Id(id.to_vec()),
    ])?)
}

impl Hsm {
    /// The CKA_ID of the active TSA key, if one was ever activated on this token.
    pub fn active_tsa_key_id(&self) -> Result<Option<Vec<u8>>, SignerError> {
        self.with_session(|s| {
            let mut id = None;
            for o in find_purpose_objects(s, ACTIVE_TSA_LABEL)? {
                if let Some(v) = read_bytes(s, o, AttributeType::Value)? {
                    id = hex::decode(String::from_utf8_lossy(&v).trim()).ok();
                }
            }
            Ok(id)
        })
    }

    /// The key with CKA_ID `id`, if it is on the token.
    pub fn find_key_by_id(&self, id: &[u8]) -> Result<Option<KeyInfo>, SignerError> {
        Ok(self.list_keys()?.into_iter().find(|k| k.id == id))
    }

    /// Makes `key` the active TSA key (one write on the token) and records when it was
    /// first activated. The caller checks the key is fit (certificate, not retired).
    pub fn set_active_tsa_key(&self, key: &KeyInfo) -> Result<(), SignerError> {
        self.with_session(|s| {
            let mut record = read_record(s, &key.label)?.unwrap_or_default();
            if record.retired_at.is_some() {
                return Err(SignerError::KeyRetired(key.label.clone()));
            }
            if record.activated_at.is_none() {
                record.activated_at = Some(now_secs());
                record.id = key.id.clone();
                record.purpose = record.purpose.or(key.purpose);
                write_data(s, &key.label, record.render().into_bytes())?;
            }
            write_data(s, ACTIVE_TSA_LABEL, hex::encode(&key.id).into_bytes())
        })?;
        tracing::info!(label = %key.label, "made the key the active TSA key");
        Ok(())
    }

    /// Marks `key` retired: it can never be activated again. Its certificate stays.
    pub fn retire_key(&self, key: &KeyInfo) -> Result<(), SignerError> {
        self.with_session(|s| {
            let mut record = read_record(s, &key.label)?.unwrap_or_default();
            record.id = key.id.clone();
            record.purpose = record.purpose.or(key.purpose);
            record.retired_at.get_or_insert_with(now_secs);
            write_data(s, &key.label, record.render().into_bytes())
        })?;
        tracing::info!(label = %key.label, "retired the key");
        Ok(())
    }

    /// Destroys both halves of `key` in the HSM. Irreversible. Its certificate and record
    /// stay, so tokens it signed remain verifiable against the published certificate.
    pub fn destroy_key(&self, key: &KeyInfo) -> Result<(), SignerError> {
        self.with_session(|s| {
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                for o in
                    s.find_objects(&[Attribute::Class(class), Attribute::Id(key.id.clone())])?
                {
                    s.destroy_object(o)?;
                }
            }
            Ok(())
        })?;
        tracing::warn!(label = %key.label, "destroyed the key pair in the HSM");
        Ok(())
    }

    /// The certificates (DER) of every TSA key that was ever activated, destroyed keys
    /// included: what verifiers need for tokens signed before the current key.
    pub fn once_active_certificates(&self) -> Result<Vec<Vec<u8>>, SignerError> {
        self.with_session(|s| {
            let records = s.find_objects(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Application(APPLICATION.to_vec()),
            ])?;
            let mut out = Vec::new();
            for o in records {
                let Some(label) = read_bytes(s, o, AttributeType::Label)? else {
                    continue;
                };
                let label = String::from_utf8_lossy(&label).into_owned();
                if label == ACTIVE_TSA_LABEL {
                    continue;
                }
                let Some(value) = read_bytes(s, o, AttributeType::Value)? else {
                    continue;
                };
                let r = KeyRecord::parse(&label, &String::from_utf8_lossy(&value));
                if r.purpose != Some(KeyPurpose::Tsa) || r.activated_at.is_none() || r.id.is_empty()
                {
                    continue;
                }
                for c in certificates_with_id(s, &r.id)? {
                    if let Some(der) = read_bytes(s, c, AttributeType::Value)? {
                        out.push(der);
                    }
                }
            }
            Ok(out)
        })
    }
}

/// CKA_LABEL of the CA certificates kept on the token for building the TSA chain.
const AUTHORITY_LABEL: &[u8] = b"auditstamp:chain";

impl Hsm {
    /// Keeps a CA certificate (an intermediate or root of a TSA certificate) on the token,
    /// once; the server builds the chain it publishes from these and `tsa.chain_file`.
    pub fn store_authority_certificate(&self, cert_der: &[u8]) -> Result<(), SignerError> {
        let cert = x509_cert::Certificate::from_der(cert_der)?;
        let tbs = &cert.tbs_certificate;
        let (subject, issuer, serial) = (
            tbs.subject.to_der()?,
            tbs.issuer.to_der()?,
            tbs.serial_number.to_der()?,
        );
        self.with_session(|s| {
            let existing = s.find_objects(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::Label(AUTHORITY_LABEL.to_vec()),
                Attribute::Value(cert_der.to_vec()),
            ])?;
            if existing.is_empty() {
                s.create_object(&[
                    Attribute::Class(ObjectClass::CERTIFICATE),
                    Attribute::CertificateType(CertificateType::X_509),
                    Attribute::Token(true),
                    Attribute::Private(false),
                    Attribute::Label(AUTHORITY_LABEL.to_vec()),
                    Attribute::Subject(subject),
                    Attribute::Issuer(issuer),
                    Attribute::SerialNumber(serial),
                    Attribute::Value(cert_der.to_vec()),
                ])?;
            }
            Ok(())
        })
    }

    /// The CA certificates (DER) kept on the token by [`Hsm::store_authority_certificate`].
    pub fn authority_certificates(&self) -> Result<Vec<Vec<u8>>, SignerError> {
        self.with_session(|s| {
            let mut out = Vec::new();
            for o in s.find_objects(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::Label(AUTHORITY_LABEL.to_vec()),
            ])? {
                if let Some(der) = read_bytes(s, o, AttributeType::Value)? {
                    out.push(der);
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn records_round_trip_and_tolerate_unknown_lines() {
        let r = KeyRecord {
            purpose: Some(KeyPurpose::Tsa),
            id: vec![1, 2, 0xff],
            activated_at: Some(1_700_000_000),
            retired_at: None,
        };
        assert_eq!(KeyRecord::parse("k", &r.render()), r);
        let legacy = KeyRecord::parse("k", "purpose=chain");
        assert_eq!(legacy.purpose, Some(KeyPurpose::Chain));
        assert!(legacy.activated_at.is_none());
        let odd = KeyRecord::parse("k", "purpose=tsa\nfuture=1\nretired=x\n");
        assert_eq!(odd.purpose, Some(KeyPurpose::Tsa));
        assert_eq!(odd.retired_at, None);
    }
}
