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
//! Versions before these lifecycle records wrote `purpose=<purpose>` alone; such records
//! still read.
//!
//! The active TSA key is named by one more data object, labelled [`ACTIVE_TSA_LABEL`],
//! whose value is the key's CKA_ID in hex: switching keys is one write, never a state in
//! which two keys are active. Records outlive a destroyed key, so the certificates of keys
//! that once signed stay on the token and stay published.
//!
//! A record is read exactly or not at all: a line that is not `name=value`, a name this
//! version does not know, a name given twice, a value that does not parse, an empty or
//! non-UTF-8 record, or an active-key pointer that is not hex is a [`RecordDamage`]
//! naming the object, the line and the problem ([`SignerError::DamagedRecord`]). Nothing
//! is done with a key whose record is damaged: a `retired=` line that cannot be read must
//! never make a retired key look activatable, nor a damaged pointer make the server fall
//! back to another key. [`Hsm::key_inventory`] lists damaged records beside the keys.

use std::collections::BTreeSet;
use std::time::SystemTime;

use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass};
use der::{Decode, Encode};

use super::pkcs11::*;
pub use super::pkcs11::{KeyRecord, RecordDamage, ACTIVE_TSA_LABEL};
use super::{KeyPurpose, SignerError};

impl Hsm {
    /// The CKA_ID of the active TSA key, if one was ever activated on this token. A
    /// pointer that cannot be read is an error ([`SignerError::DamagedRecord`]), never
    /// "no key was activated" (which would fall back to the configuration's key).
    pub fn active_tsa_key_id(&self) -> Result<Option<Vec<u8>>, SignerError> {
        self.with_session(|s| {
            let mut id = None;
            for o in find_purpose_objects(s, ACTIVE_TSA_LABEL)? {
                let value = record_value(s, o, ACTIVE_TSA_LABEL)?;
                id = Some(parse_active_pointer(&value).map_err(SignerError::DamagedRecord)?);
            }
            Ok(id)
        })
    }

    /// The key with CKA_ID `id`, if it is on the token.
    pub fn find_key_by_id(&self, id: &[u8]) -> Result<Option<KeyInfo>, SignerError> {
        Ok(self.list_keys()?.into_iter().find(|k| k.id == id))
    }

    /// Makes `key` the active TSA key (one write on the token) and records `at` as when it
    /// was first activated. The caller checks the key is fit (certificate, not retired).
    pub fn set_active_tsa_key(&self, key: &KeyInfo, at: SystemTime) -> Result<(), SignerError> {
        self.with_session(|s| {
            let mut record = read_record(s, &key.label)?.unwrap_or_default();
            if record.retired_at.is_some() {
                return Err(SignerError::KeyRetired(key.label.clone()));
            }
            if record.activated_at.is_none() {
                record.activated_at = Some(unix_secs(at));
                record.id = key.id.clone();
                record.purpose = record.purpose.or(key.purpose);
                write_data(s, &key.label, record.render().into_bytes())?;
            }
            write_data(s, ACTIVE_TSA_LABEL, hex::encode(&key.id).into_bytes())
        })?;
        tracing::info!(label = %key.label, "made the key the active TSA key");
        Ok(())
    }

    /// Marks `key` retired at `at`: it can never be activated again. Its certificate stays.
    pub fn retire_key(&self, key: &KeyInfo, at: SystemTime) -> Result<(), SignerError> {
        self.with_session(|s| {
            let mut record = read_record(s, &key.label)?.unwrap_or_default();
            record.id = key.id.clone();
            record.purpose = record.purpose.or(key.purpose);
            record.retired_at.get_or_insert(unix_secs(at));
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
    /// included: what verifiers need for tokens signed before the current key. Any
    /// damaged record is an error: it may be one of those keys.
    pub fn once_active_certificates(&self) -> Result<Vec<Vec<u8>>, SignerError> {
        self.with_session(|s| {
            let mut out = Vec::new();
            for (label, o) in key_record_objects(s)? {
                let value = record_value(s, o, &label)?;
                let r = KeyRecord::parse(&label, &value).map_err(SignerError::DamagedRecord)?;
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

/// The keys on a token and the records that cannot be read: what `keys list` shows.
#[derive(Clone, Debug, Default)]
pub struct KeyInventory {
    /// The key pairs whose record reads exactly (or that have none), by label.
    pub keys: Vec<KeyInfo>,
    /// The records that cannot be read, of keys on the token and of destroyed ones, by
    /// label.
    pub damaged: Vec<DamagedKey>,
}

/// A key record that cannot be read, with the key pair it belongs to.
#[derive(Clone, Debug)]
pub struct DamagedKey {
    /// The key pair, if it is on the token (a destroyed key's record outlives it). Its
    /// purpose and lifecycle are `None`: they are what the record cannot tell.
    pub key: Option<KeyInfo>,
    /// What is wrong with the record.
    pub damage: RecordDamage,
}

impl Hsm {
    /// Every key pair on the token whose type this module supports, and every key record
    /// that cannot be read (of a key on the token or of a destroyed one), each by label.
    /// The active-key pointer is read by [`Hsm::active_tsa_key_id`].
    pub fn key_inventory(&self) -> Result<KeyInventory, SignerError> {
        self.with_session(|s| {
            let mut inventory = KeyInventory::default();
            let mut listed = BTreeSet::new();
            for private in s.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])? {
                let label = read_bytes(s, private, AttributeType::Label)?.unwrap_or_default();
                let label = String::from_utf8_lossy(&label).into_owned();
                let mut key = match read_key_pair(s, private, &label) {
                    Ok(key) => key,
                    Err(SignerError::UnsupportedKeyType(why)) => {
                        tracing::warn!(label, reason = %why, "skipping a key of unsupported type");
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                listed.insert(label.clone());
                match read_record(s, &label) {
                    Ok(record) => {
                        let record = record.unwrap_or_default();
                        key.purpose = record.purpose;
                        key.activated_at = record.activated_at;
                        key.retired_at = record.retired_at;
                        inventory.keys.push(key);
                    }
                    Err(SignerError::DamagedRecord(damage)) => {
                        inventory.damaged.push(DamagedKey {
                            key: Some(key),
                            damage,
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
            let orphans: BTreeSet<String> = key_record_objects(s)?
                .into_iter()
                .map(|(label, _)| label)
                .filter(|label| !listed.contains(label))
                .collect();
            for label in orphans {
                match read_record(s, &label) {
                    Ok(_) => {}
                    Err(SignerError::DamagedRecord(damage)) => {
                        inventory.damaged.push(DamagedKey { key: None, damage });
                    }
                    Err(e) => return Err(e),
                }
            }
            inventory.keys.sort_by(|a, b| a.label.cmp(&b.label));
            inventory
                .damaged
                .sort_by(|a, b| a.damage.object.cmp(&b.damage.object));
            Ok(inventory)
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
    use crate::signer::{testsupport, KeyAlgorithm};

    #[test]
    fn records_round_trip_and_older_records_read() {
        let r = KeyRecord {
            purpose: Some(KeyPurpose::Tsa),
            id: vec![1, 2, 0xff],
            activated_at: Some(1_700_000_000),
            retired_at: Some(1_800_000_000),
        };
        assert_eq!(KeyRecord::parse("k", r.render().as_bytes()).unwrap(), r);
        // What versions before the lifecycle records wrote.
        let legacy = KeyRecord::parse("k", b"purpose=chain").unwrap();
        assert_eq!(legacy.purpose, Some(KeyPurpose::Chain));
        assert!(legacy.activated_at.is_none());
        // A key without a recorded purpose, retired.
        let bare = KeyRecord::parse("k", b"id=\nretired=5\n").unwrap();
        assert_eq!((bare.purpose, bare.retired_at), (None, Some(5)));
    }

    /// A record is read exactly or not at all: every kind of damage is an error naming
    /// the object, the line and the problem, never a line dropped (a `retired=` line
    /// dropped would make a retired key activatable again).
    #[test]
    fn a_record_that_cannot_be_read_exactly_is_damaged() {
        let cases: [(&[u8], Option<usize>, &str); 13] = [
            (
                b"purpose=tsa\nid=01\nretired=17x\n",
                Some(3),
                "not a number of seconds",
            ),
            (
                b"purpose=tsa\nretired=\n",
                Some(2),
                "not a number of seconds",
            ),
            (b"retired= 5\n", Some(1), "not a number of seconds"),
            (b"retired=+5\n", Some(1), "not a number of seconds"),
            (
                b"activated=99999999999999999999\n",
                Some(1),
                "beyond any date",
            ),
            (
                b"purpose=tsa\nretired=5\nretired=6\n",
                Some(3),
                "second time",
            ),
            (
                b"purpose=tsa\nfuture=1\nretired=5\n",
                Some(2),
                "unknown field \"future\"",
            ),
            (b"purpose=tsa\nretired\n", Some(2), "not a name=value line"),
            (
                b"purpose=tsa\n\nretired=5\n",
                Some(2),
                "not a name=value line",
            ),
            (b"purpose=ca\n", Some(1), "unknown purpose \"ca\""),
            (b"id=zz\n", Some(1), "not hexadecimal"),
            (b"", None, "it is empty"),
            (b"purpose=tsa\nretired=1\xff\n", None, "not UTF-8"),
        ];
        for (value, line, problem) in cases {
            let damage = KeyRecord::parse("tsa-1", value).unwrap_err();
            assert_eq!(damage.object, "tsa-1");
            assert_eq!(damage.line.as_ref().map(|l| l.0), line, "{damage}");
            let text = SignerError::DamagedRecord(damage).to_string();
            assert!(
                text.contains("key record \"tsa-1\"") && text.contains(problem),
                "{text}"
            );
        }
        let long = format!("retired={}", "9x".repeat(100));
        let damage = KeyRecord::parse("k", long.as_bytes()).unwrap_err();
        assert!(damage.to_string().len() < 200, "{damage}");
        for bad in [&b""[..], b"zz", b"01\n", b"\xff"] {
            let damage = parse_active_pointer(bad).unwrap_err();
            assert_eq!(damage.object, ACTIVE_TSA_LABEL);
            assert!(damage.to_string().contains("active-key record"), "{damage}");
        }
        assert_eq!(parse_active_pointer(b"0aff").unwrap(), vec![0x0a, 0xff]);
    }

    /// Overwrites the record of `label` (or the active-key pointer) with `value`.
    fn damage(hsm: &Hsm, label: &str, value: &[u8]) {
        hsm.with_session(|s| write_data(s, label, value.to_vec()))
            .unwrap();
    }

    /// On a token: a retired key whose `retired=` line is damaged is refused by every
    /// reader (never shown as an activatable key), and so is an activated key's record
    /// (its certificate must stay published) and a damaged active-key pointer (never
    /// "no key activated", which would fall back to the configuration's key).
    #[test]
    fn damaged_records_on_the_token_are_refused_by_every_reader() {
        let token = testsupport::new_token();
        let hsm = token.open();
        let old = hsm
            .generate_key("tsa-old", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
            .unwrap();
        let new = hsm
            .generate_key("tsa-new", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
            .unwrap();
        hsm.set_active_tsa_key(&old, SystemTime::now()).unwrap();
        hsm.set_active_tsa_key(&new, SystemTime::now()).unwrap();
        hsm.retire_key(&old, SystemTime::now()).unwrap();
        let id = hex::encode(&old.id);
        damage(
            &hsm,
            "tsa-old",
            format!("purpose=tsa\nid={id}\nactivated=1700000000\nretired=17OO000000\n").as_bytes(),
        );
        let named = |e: SignerError| {
            let text = e.to_string();
            assert!(
                text.contains("\"tsa-old\"")
                    && text.contains("line 4")
                    && text.contains("retired=17OO000000")
                    && text.contains("not a number of seconds"),
                "{text}"
            );
        };
        named(hsm.find_key("tsa-old").unwrap_err());
        named(hsm.list_keys().unwrap_err());
        named(hsm.find_key_by_id(&old.id).unwrap_err());
        named(hsm.once_active_certificates().unwrap_err());
        named(hsm.set_active_tsa_key(&old, SystemTime::now()).unwrap_err());
        named(hsm.retire_key(&old, SystemTime::now()).unwrap_err());
        // The record is left as it was: nothing rewrote it without the retirement.
        named(hsm.find_key("tsa-old").unwrap_err());
        // A key whose record reads is still found.
        assert_eq!(hsm.find_key("tsa-new").unwrap().id, new.id);

        // The active-key pointer.
        damage(&hsm, ACTIVE_TSA_LABEL, b"not hex");
        let text = hsm.active_tsa_key_id().unwrap_err().to_string();
        assert!(
            text.contains(ACTIVE_TSA_LABEL) && text.contains("not hex"),
            "{text}"
        );
    }

    /// `keys list`'s view: damaged records are listed beside the keys, of keys on the
    /// token and of destroyed ones, never hidden; a damaged record of a destroyed key
    /// also keeps its label from being reused.
    #[test]
    fn the_inventory_lists_damaged_records_beside_the_keys() {
        let token = testsupport::new_token();
        let hsm = token.open();
        let good = hsm
            .generate_key("good", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
            .unwrap();
        let bad = hsm
            .generate_key("bad", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
            .unwrap();
        let gone = hsm
            .generate_key("gone", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
            .unwrap();
        hsm.set_active_tsa_key(&gone, SystemTime::now()).unwrap();
        hsm.set_active_tsa_key(&good, SystemTime::now()).unwrap();
        hsm.retire_key(&gone, SystemTime::now()).unwrap();
        hsm.destroy_key(&gone).unwrap();
        damage(&hsm, "bad", b"purpose=tsa\nretired=x\n");
        damage(
            &hsm,
            "gone",
            b"purpose=tsa\nactivated=1\nretired=2\nnext=3\n",
        );
        let inventory = hsm.key_inventory().unwrap();
        assert_eq!(
            inventory
                .keys
                .iter()
                .map(|k| k.label.as_str())
                .collect::<Vec<_>>(),
            ["good"]
        );
        let damaged: Vec<_> = inventory
            .damaged
            .iter()
            .map(|d| {
                (
                    d.damage.object.as_str(),
                    d.key.as_ref().map(|k| k.id.clone()),
                    d.damage.line.as_ref().map(|l| l.0),
                )
            })
            .collect();
        assert_eq!(
            damaged,
            [
                ("bad", Some(bad.id.clone()), Some(2)),
                ("gone", None, Some(4))
            ]
        );
        let bad_key = inventory.damaged[0].key.as_ref().unwrap();
        assert_eq!((bad_key.purpose, bad_key.retired_at), (None, None));
        let e = hsm
            .generate_key("gone", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
            .unwrap_err();
        assert!(matches!(e, SignerError::DamagedRecord(_)), "{e}");
    }
}
