//! The key records' format on the token (see `signer/records.rs` for what they mean):
//! parsing and rendering a record exactly, reading and writing the data objects, and what
//! key generation needs of them (a record for a new key, a label free to reuse).

use std::collections::BTreeSet;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use super::*;

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

/// A record on the token that cannot be read exactly: a key's lifecycle record or the
/// active-key pointer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordDamage {
    /// CKA_LABEL of the data object: the key's label, or [`ACTIVE_TSA_LABEL`].
    pub object: String,
    /// The line at fault (counted from 1) and its text (shortened), when the problem is
    /// in one line.
    pub line: Option<(usize, String)>,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for RecordDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.object == ACTIVE_TSA_LABEL {
            "the active-key record"
        } else {
            "the key record"
        };
        write!(f, "{what} {:?} on the token is damaged: ", self.object)?;
        if let Some((n, text)) = &self.line {
            write!(f, "line {n} {text:?}: ")?;
        }
        f.write_str(&self.problem)
    }
}

/// Longest part of a damaged line quoted in an error.
pub(in crate::signer) const QUOTED_CHARS: usize = 60;

impl RecordDamage {
    pub(in crate::signer) fn new(
        object: &str,
        line: Option<(usize, &str)>,
        problem: impl Into<String>,
    ) -> Self {
        RecordDamage {
            object: object.to_owned(),
            line: line.map(|(n, text)| {
                let mut quoted: String = text.chars().take(QUOTED_CHARS).collect();
                if text.chars().nth(QUOTED_CHARS).is_some() {
                    quoted.push('…');
                }
                (n, quoted)
            }),
            problem: problem.into(),
        }
    }
}

/// Unix seconds as a record writes them: decimal digits only.
pub(in crate::signer) fn parse_secs(value: &str) -> Result<u64, String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a number of seconds since 1970".into());
    }
    value
        .parse()
        .map_err(|_| "a number of seconds beyond any date".into())
}

impl KeyRecord {
    /// Reads the record of the key labelled `label` from its data object's value; any
    /// line that cannot be read exactly is an error (see the module documentation).
    pub(in crate::signer) fn parse(label: &str, value: &[u8]) -> Result<KeyRecord, RecordDamage> {
        let text = std::str::from_utf8(value).map_err(|e| {
            RecordDamage::new(
                label,
                None,
                format!("it is not UTF-8 text (byte {})", e.valid_up_to()),
            )
        })?;
        if text.is_empty() {
            return Err(RecordDamage::new(label, None, "it is empty"));
        }
        let mut r = KeyRecord::default();
        let mut seen = BTreeSet::new();
        for (i, line) in text.split_terminator('\n').enumerate() {
            let damage = |problem: String| RecordDamage::new(label, Some((i + 1, line)), problem);
            let Some((name, value)) = line.split_once('=') else {
                return Err(damage("not a name=value line".into()));
            };
            if !seen.insert(name) {
                return Err(damage(format!("{name:?} is given a second time")));
            }
            match name {
                "purpose" => {
                    r.purpose = Some(value.parse().map_err(|_| {
                        damage(format!(
                            "unknown purpose {value:?} (expected tsa, chain, dev-ca or witness)"
                        ))
                    })?);
                }
                "id" => {
                    r.id = hex::decode(value)
                        .map_err(|_| damage("the key id is not hexadecimal".into()))?;
                }
                "activated" => r.activated_at = Some(parse_secs(value).map_err(damage)?),
                "retired" => r.retired_at = Some(parse_secs(value).map_err(damage)?),
                _ => {
                    return Err(damage(format!(
                        "unknown field {name:?} (this version knows purpose, id, activated \
                         and retired: was the record written by a newer version?)"
                    )))
                }
            }
        }
        Ok(r)
    }

    pub(in crate::signer) fn render(&self) -> String {
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

/// Seconds since the Unix epoch of `t` (0 before it), as a record stores its times.
pub(in crate::signer) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(in crate::signer) fn data_object(label: &str, value: Vec<u8>) -> Vec<Attribute> {
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
pub(in crate::signer) fn write_data(
    session: &Session,
    label: &str,
    value: Vec<u8>,
) -> Result<(), SignerError> {
    let old = find_purpose_objects(session, label)?;
    session.create_object(&data_object(label, value))?;
    for o in old {
        session.destroy_object(o)?;
    }
    Ok(())
}

/// The value of data object `object` labelled `label`; one without a value is damaged.
pub(in crate::signer) fn record_value(
    session: &Session,
    object: ObjectHandle,
    label: &str,
) -> Result<Vec<u8>, SignerError> {
    read_bytes(session, object, AttributeType::Value)?.ok_or_else(|| {
        SignerError::DamagedRecord(RecordDamage::new(label, None, "it has no value"))
    })
}

/// The record of the key labelled `label`, if there is one; a damaged one is an error
/// ([`SignerError::DamagedRecord`]). With several (a crash between create and destroy),
/// the newest wins: the one created last has the highest handle on SoftHSM, and all of
/// them are equally valid otherwise; but every one of them must read.
pub(in crate::signer) fn read_record(
    session: &Session,
    label: &str,
) -> Result<Option<KeyRecord>, SignerError> {
    let mut found = None;
    for object in find_purpose_objects(session, label)? {
        let value = record_value(session, object, label)?;
        found = Some(KeyRecord::parse(label, &value).map_err(SignerError::DamagedRecord)?);
    }
    Ok(found)
}

/// The CKA_ID an active-key pointer holds: hex, exactly as [`Hsm::set_active_tsa_key`]
/// writes it.
pub(in crate::signer) fn parse_active_pointer(value: &[u8]) -> Result<Vec<u8>, RecordDamage> {
    let damage = |problem: &str| RecordDamage::new(ACTIVE_TSA_LABEL, None, problem);
    let text = std::str::from_utf8(value).map_err(|_| damage("it is not UTF-8 text"))?;
    if text.is_empty() {
        return Err(damage("it is empty"));
    }
    hex::decode(text).map_err(|_| {
        RecordDamage::new(
            ACTIVE_TSA_LABEL,
            Some((1, text)),
            "not the hexadecimal CKA_ID of a key",
        )
    })
}

/// Records a new key's purpose and id, replacing a record left by a deleted key.
pub(in crate::signer) fn create_record(
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
pub(in crate::signer) fn ensure_label_reusable(
    session: &Session,
    label: &str,
) -> Result<(), SignerError> {
    match read_record(session, label)? {
        Some(r) if r.activated_at.is_some() => Err(SignerError::LabelUsedBefore(label.to_owned())),
        _ => Ok(()),
    }
}

/// Every key record's data object on the token, with its label (the active-key pointer
/// left out).
pub(in crate::signer) fn key_record_objects(
    session: &Session,
) -> Result<Vec<(String, ObjectHandle)>, SignerError> {
    let mut out = Vec::new();
    for o in session.find_objects(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Application(APPLICATION.to_vec()),
    ])? {
        let label = read_bytes(session, o, AttributeType::Label)?.unwrap_or_default();
        let label = String::from_utf8_lossy(&label).into_owned();
        if label != ACTIVE_TSA_LABEL {
            out.push((label, o));
        }
    }
    Ok(out)
}

pub(in crate::signer) fn certificates_with_id(
    session: &Session,
    id: &[u8],
) -> Result<Vec<ObjectHandle>, SignerError> {
    Ok(session.find_objects(&[
        Attribute::Class(ObjectClass::CERTIFICATE),
        Attribute::CertificateType(CertificateType::X_509),
        Attribute::Id(id.to_vec()),
    ])?)
}
