//! Auditor data events: what agencies post, how they are checked, and the canonical leaf
//! bytes the Merkle tree commits to.
//!
//! # Leaf bytes (version 1)
//!
//! All integers big-endian; strings UTF-8, each preceded by its length as a u32.
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version, `0x01` |
//! | 8 | index in the log |
//! | 8 | received_at, Unix milliseconds (the appliance's clock) |
//! | 16 | salt: 128 random bits, so that low-entropy events cannot be guessed from hashes |
//! | 8 | occurred_at, Unix nanoseconds (signed) |
//! | 32 | data_sha256: SHA-256 of the audited data, which stays with the agency |
//! | 4 + n | agency |
//! | 4 + n | auditor |
//! | 4 + n | action (`data_collection`, ..., `custom:<name>`, `tsa.issued`) |
//! | 4 + n | subject |
//! | 4 + n | details: compact JSON, object keys sorted, no insignificant whitespace |
//!
//! Nothing may follow. The leaf hash is `SHA-256(0x00 || leaf bytes)` (RFC 9162 §2.1.1).
//! This module is pure (no I/O); its one error type is [`EventError`].
//!
//! # Details are kept exactly as sent, or refused
//!
//! An audit record must be what the agency sent. `details` is read with
//! [`exact_json`](super::exact_json): a key repeated in any object (at any depth) is refused,
//! naming its path (`details.x.y`), and every number is stored with the text it was sent
//! with (`123456789012345678901234`, `1e2` and `0.1000000000000000055511151231257827` stay
//! as they are, where reading them as 64-bit numbers stored a nearby float such as
//! `1.2345678901234567e+23`, and `100.0` and `0.1`). Only whitespace and the order of object
//! members change (the canonical form: compact, keys sorted). Numbers beyond the range of a
//! 64-bit float (`1e400`) and nesting deeper than [`MAX_DETAILS_DEPTH`] are refused. The top
//! level of the event refuses a repeated field through serde (`duplicate field`).
//! [`StoredEvent::view`] shows the stored details back byte for byte.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Leaf encoding version.
pub const LEAF_VERSION: u8 = 1;
/// Largest `details` object, in bytes of its compact JSON.
pub const MAX_DETAILS_BYTES: usize = 8 * 1024;
/// Deepest nesting of objects and arrays in `details` (the details object is level 1).
pub const MAX_DETAILS_DEPTH: usize = 64;
/// Longest `agency` or `auditor`, bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest `subject`, bytes.
pub const MAX_SUBJECT_BYTES: usize = 1024;
/// Longest `<name>` in `custom:<name>`, bytes.
pub const MAX_CUSTOM_ACTION_BYTES: usize = 64;

/// Why an event was refused or a leaf could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// A field breaks its rule; `field` names it.
    #[error("{field}: {problem}")]
    Invalid {
        /// The JSON field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// `details` cannot be kept exactly (a repeated key, a number out of range, too deep,
    /// not an object); the error names the value's path.
    #[error(transparent)]
    Details(#[from] super::exact_json::ExactJsonError),
    /// Stored leaf bytes are not a version-1 event.
    #[error("malformed leaf: {0}")]
    MalformedLeaf(&'static str),
}

fn invalid(field: &'static str, problem: impl Into<String>) -> EventError {
    EventError::Invalid {
        field,
        problem: problem.into(),
    }
}

/// What an event says was done.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// `data_collection`
    DataCollection,
    /// `identity_management`
    IdentityManagement,
    /// `data_operation`
    DataOperation,
    /// `access`
    Access,
    /// `export`
    Export,
    /// `custom:<name>`: an agency's own kind of event.
    Custom(String),
    /// `tsa.issued`: the appliance's TSA issued a token (recorded by the appliance only).
    TsaIssued,
}

impl Action {
    /// Parses a stored or posted action name.
    pub fn parse(s: &str) -> Result<Action, EventError> {
        Ok(match s {
            "data_collection" => Action::DataCollection,
            "identity_management" => Action::IdentityManagement,
            "data_operation" => Action::DataOperation,
            "access" => Action::Access,
            "export" => Action::Export,
            "tsa.issued" => Action::TsaIssued,
            other => {
                let Some(name) = other.strip_prefix("custom:") else {
                    return Err(invalid(
                        "action",
                        format!(
                            "unknown action {other:?}; use data_collection, identity_management, \
                             data_operation, access, export or custom:<name>"
                        ),
                    ));
                };
                let ok = !name.is_empty()
                    && name.len() <= MAX_CUSTOM_ACTION_BYTES
                    && name.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b)
                    });
                if !ok {
                    return Err(invalid(
                        "action",
                        format!(
                            "custom:<name> takes 1 to {MAX_CUSTOM_ACTION_BYTES} of a-z, 0-9, '_', '.', '-'"
                        ),
                    ));
                }
                Action::Custom(name.to_owned())
            }
        })
    }

    /// The action's name, as posted and stored.
    pub fn name(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow;
        match self {
            Action::DataCollection => Cow::Borrowed("data_collection"),
            Action::IdentityManagement => Cow::Borrowed("identity_management"),
            Action::DataOperation => Cow::Borrowed("data_operation"),
            Action::Access => Cow::Borrowed("access"),
            Action::Export => Cow::Borrowed("export"),
            Action::TsaIssued => Cow::Borrowed("tsa.issued"),
            Action::Custom(n) => Cow::Owned(format!("custom:{n}")),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// An event as an agency posts it (JSON). Unknown and repeated fields are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// The accredited agency the event belongs to.
    pub agency: String,
    /// The auditor who acted.
    pub auditor: String,
    /// What was done.
    pub action: String,
    /// The resource acted on.
    pub subject: String,
    /// SHA-256 of the audited data, 64 hex digits.
    pub data_sha256: String,
    /// When it happened, RFC 3339.
    pub occurred_at: String,
    /// Anything else, a JSON object of at most 8 KiB, as sent: [`EventInput::validate`]
    /// reads it exactly (see the module documentation). `null` or absent is `{}`.
    #[serde(default)]
    pub details: Option<Box<RawValue>>,
}

/// A checked event, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The agency.
    pub agency: String,
    /// The auditor.
    pub auditor: String,
    /// The action.
    pub action: Action,
    /// The subject.
    pub subject: String,
    /// SHA-256 of the audited data.
    pub data_sha256: [u8; 32],
    /// When it happened, Unix nanoseconds.
    pub occurred_at_ns: i64,
    /// The details object in canonical form: compact, keys sorted, numbers as sent.
    pub details: String,
}

fn check_text(field: &'static str, s: &str, max: usize) -> Result<(), EventError> {
    if s.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if s.len() > max {
        return Err(invalid(field, format!("longer than {max} bytes")));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Parses RFC 3339 into Unix nanoseconds; the error names `field`.
pub fn parse_rfc3339_ns(field: &'static str, s: &str) -> Result<i64, EventError> {
    let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| {
        invalid(
            field,
            format!("not an RFC 3339 time (2026-01-31T12:00:00Z): {e}"),
        )
    })?;
    i64::try_from(t.unix_timestamp_nanos())
        .map_err(|_| invalid(field, "outside the years 1678 to 2261"))
}

/// RFC 3339 in UTC for Unix nanoseconds.
pub fn format_time_ns(ns: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ns.to_string())
}

/// The 32 bytes of 64 hex digits.
fn parse_sha256(field: &'static str, s: &str) -> Result<[u8; 32], EventError> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return Err(invalid(field, "must be 64 hex digits (a SHA-256)"));
    }
    hex::decode_to_slice(s, &mut out).map_err(|_| invalid(field, "must be 64 hex digits"))?;
    Ok(out)
}

/// Compact JSON of a `details` map built in code, checked against the size limit. (Posted
/// details are read with [`parse_details`], which keeps their numbers as sent.)
pub fn canonical_details(details: &Map<String, Value>) -> Result<String, EventError> {
    // serde_json's Map is ordered by key (no `preserve_order`), and `to_string` is compact.
    let text = serde_json::to_string(details)
        .map_err(|e| invalid("details", format!("cannot encode: {e}")))?;
    check_details_size(text)
}

/// The canonical form of posted `details` JSON (see the module documentation): each key once
/// in its object, numbers as sent, at most [`MAX_DETAILS_DEPTH`] deep and
/// [`MAX_DETAILS_BYTES`] long; errors name the value's path (`details.x.y`).
pub fn parse_details(json: &str) -> Result<String, EventError> {
    let text = super::exact_json::canonical_object(json, "details", MAX_DETAILS_DEPTH)?;
    check_details_size(text)
}

fn check_details_size(text: String) -> Result<String, EventError> {
    if text.len() > MAX_DETAILS_BYTES {
        return Err(invalid(
            "details",
            format!(
                "{} bytes; at most {MAX_DETAILS_BYTES} are accepted",
                text.len()
            ),
        ));
    }
    Ok(text)
}

impl EventInput {
    /// Checks every field; the error names the first that is wrong. `tsa.issued` is
    /// refused: only the appliance records it.
    pub fn validate(self) -> Result<Event, EventError> {
        check_text("agency", &self.agency, MAX_NAME_BYTES)?;
        check_text("auditor", &self.auditor, MAX_NAME_BYTES)?;
        let action = Action::parse(&self.action)?;
        if action == Action::TsaIssued {
            return Err(invalid(
                "action",
                "tsa.issued is recorded by the appliance itself",
            ));
        }
        check_text("subject", &self.subject, MAX_SUBJECT_BYTES)?;
        let data_sha256 = parse_sha256("data_sha256", &self.data_sha256)?;
        let occurred_at_ns = parse_rfc3339_ns("occurred_at", &self.occurred_at)?;
        let details = match &self.details {
            None => "{}".to_owned(),
            Some(raw) => parse_details(raw.get())?,
        };
        Ok(Event {
            agency: self.agency,
            auditor: self.auditor,
            action,
            subject: self.subject,
            data_sha256,
            occurred_at_ns,
            details,
        })
    }
}

/// An event as the log stores it: what the appliance added, and the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the log.
    pub index: u64,
    /// When the appliance received it, Unix milliseconds.
    pub received_at_ms: u64,
    /// 128 random bits.
    pub salt: [u8; 16],
    /// The event.
    pub event: Event,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Every field is bounded far below 4 GiB (checked at validation, or by the leaf size).
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct LeafReader<'a>(&'a [u8]);

impl<'a> LeafReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EventError> {
        if self.0.len() < n {
            return Err(EventError::MalformedLeaf("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], EventError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn str(&mut self) -> Result<&'a str, EventError> {
        let len = u32::from_be_bytes(self.array()?);
        let len = usize::try_from(len).map_err(|_| EventError::MalformedLeaf("field too long"))?;
        std::str::from_utf8(self.take(len)?).map_err(|_| EventError::MalformedLeaf("not UTF-8"))
    }
    fn string(&mut self) -> Result<String, EventError> {
        let len = u32::from_be_bytes(self.array()?);
        let len = usize::try_from(len).map_err(|_| EventError::MalformedLeaf("field too long"))?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| EventError::MalformedLeaf("not UTF-8"))
    }
}

/// The canonical leaf bytes of `event` stored at `index` (see the module documentation).
pub fn encode_leaf(index: u64, received_at_ms: u64, salt: &[u8; 16], e: &Event) -> Vec<u8> {
    let action = e.action.name();
    let mut out = Vec::with_capacity(
        73 + 20
            + e.agency.len()
            + e.auditor.len()
            + action.len()
            + e.subject.len()
            + e.details.len(),
    );
    out.push(LEAF_VERSION);
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(&received_at_ms.to_be_bytes());
    out.extend_from_slice(salt);
    out.extend_from_slice(&e.occurred_at_ns.to_be_bytes());
    out.extend_from_slice(&e.data_sha256);
    put_str(&mut out, &e.agency);
    put_str(&mut out, &e.auditor);
    put_str(&mut out, &action);
    put_str(&mut out, &e.subject);
    put_str(&mut out, &e.details);
    out
}

/// What a search index needs of a leaf, read in place (no copy): its index, time of
/// receipt, occurred_at, and the texts it is searched by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafFields<'a> {
    /// Position in the log.
    pub index: u64,
    /// When the appliance received it, Unix milliseconds.
    pub received_at_ms: u64,
    /// When it happened, Unix nanoseconds.
    pub occurred_at_ns: i64,
    /// The agency.
    pub agency: &'a str,
    /// The auditor.
    pub auditor: &'a str,
    /// The action's name, as stored.
    pub action: &'a str,
    /// The subject.
    pub subject: &'a str,
}

impl<'a> LeafFields<'a> {
    /// Reads the fields of version-1 leaf bytes; refuses anything else (as
    /// [`StoredEvent::from_leaf_bytes`] would, short of checking the action and details).
    pub fn read(bytes: &'a [u8]) -> Result<LeafFields<'a>, EventError> {
        let mut r = LeafReader(bytes);
        if r.array::<1>()?[0] != LEAF_VERSION {
            return Err(EventError::MalformedLeaf("unknown version"));
        }
        let index = u64::from_be_bytes(r.array()?);
        let received_at_ms = u64::from_be_bytes(r.array()?);
        r.take(16)?;
        let occurred_at_ns = i64::from_be_bytes(r.array()?);
        r.take(32)?;
        Ok(LeafFields {
            index,
            received_at_ms,
            occurred_at_ns,
            agency: r.str()?,
            auditor: r.str()?,
            action: r.str()?,
            subject: r.str()?,
        })
    }
}

impl StoredEvent {
    /// The canonical leaf bytes (see the module documentation).
    pub fn leaf_bytes(&self) -> Vec<u8> {
        encode_leaf(self.index, self.received_at_ms, &self.salt, &self.event)
    }

    /// Decodes leaf bytes; refuses anything that is not exactly a version-1 leaf.
    pub fn from_leaf_bytes(bytes: &[u8]) -> Result<StoredEvent, EventError> {
        let mut r = LeafReader(bytes);
        if r.array::<1>()?[0] != LEAF_VERSION {
            return Err(EventError::MalformedLeaf("unknown version"));
        }
        let index = u64::from_be_bytes(r.array()?);
        let received_at_ms = u64::from_be_bytes(r.array()?);
        let salt = r.array()?;
        let occurred_at_ns = i64::from_be_bytes(r.array()?);
        let data_sha256 = r.array()?;
        let agency = r.string()?;
        let auditor = r.string()?;
        let action =
            Action::parse(&r.string()?).map_err(|_| EventError::MalformedLeaf("unknown action"))?;
        let subject = r.string()?;
        let details = r.string()?;
        if !r.0.is_empty() {
            return Err(EventError::MalformedLeaf("bytes after the last field"));
        }
        Ok(StoredEvent {
            index,
            received_at_ms,
            salt,
            event: Event {
                agency,
                auditor,
                action,
                subject,
                data_sha256,
                occurred_at_ns,
                details,
            },
        })
    }

    /// The event as it is shown, with what the appliance added. Serialized with
    /// serde_json, `details` is written byte for byte as stored (numbers as sent).
    pub fn view(&self) -> EventView<'_> {
        let e = &self.event;
        let received_ns = i64::try_from(self.received_at_ms)
            .ok()
            .and_then(|ms| ms.checked_mul(1_000_000))
            .unwrap_or(i64::MAX);
        EventView {
            action: e.action.name(),
            agency: &e.agency,
            auditor: &e.auditor,
            data_sha256: hex::encode(e.data_sha256),
            // Stored details are JSON; a damaged leaf's are shown as null.
            details: serde_json::from_str(&e.details).unwrap_or(RawValue::NULL),
            index: self.index,
            occurred_at: format_time_ns(e.occurred_at_ns),
            received_at: format_time_ns(received_ns),
            salt: hex::encode(self.salt),
            subject: &e.subject,
        }
    }

    /// [`StoredEvent::view`] as a `serde_json::Value`. A `Value` holds numbers as 64-bit
    /// integers or floats: a number of `details` that does not fit reads as the nearest float.
    /// Use [`StoredEvent::view`] to show or compare the event exactly.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.view()).unwrap_or(Value::Null)
    }
}

/// An event as `GET /v1/events/{index}` shows it: its fields in key order, as a serde_json
/// `Map` would write them, and `details` exactly as stored.
#[derive(Debug, Clone, Serialize)]
pub struct EventView<'a> {
    /// The action's name.
    pub action: std::borrow::Cow<'a, str>,
    /// The agency.
    pub agency: &'a str,
    /// The auditor.
    pub auditor: &'a str,
    /// SHA-256 of the audited data, hex.
    pub data_sha256: String,
    /// The stored details JSON, verbatim.
    pub details: &'a RawValue,
    /// Position in the log.
    pub index: u64,
    /// When it happened, RFC 3339 UTC.
    pub occurred_at: String,
    /// When the appliance received it, RFC 3339 UTC.
    pub received_at: String,
    /// The salt, hex.
    pub salt: String,
    /// The subject.
    pub subject: &'a str,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;

    fn input(json: Value) -> Result<Event, EventError> {
        serde_json::from_value::<EventInput>(json)
            .unwrap()
            .validate()
    }

    fn good() -> Value {
        serde_json::json!({
            "agency": "tax-office-3",
            "auditor": "auditor-17",
            "action": "data_collection",
            "subject": "case/2026/0042",
            "data_sha256": "00".repeat(31) + "ab",
            "occurred_at": "2026-11-30T08:15:00.25+02:00",
            "details": {"b": 1, "a": [true, null, "x"]},
        })
    }

    fn field_of(e: EventError) -> String {
        match e {
            EventError::Invalid { field, .. } => field.to_owned(),
            EventError::Details(e) => e.path().to_owned(),
            other => panic!("{other}"),
        }
    }

    /// An event posted as `details_json` (the text of the details value, as sent).
    fn posted_with_details(details_json: &str) -> String {
        let mut text = good().to_string();
        let at = text.find("\"details\":").unwrap();
        let end = text[at..].find('}').unwrap() + at + 1;
        text.replace_range(at..end, &format!("\"details\": {details_json}"));
        text
    }

    fn posted(text: &str) -> Result<Event, EventError> {
        serde_json::from_str::<EventInput>(text).unwrap().validate()
    }

    #[test]
    fn a_good_event_is_normalised() {
        let e = input(good()).unwrap();
        assert_eq!(e.action, Action::DataCollection);
        assert_eq!(e.details, r#"{"a":[true,null,"x"],"b":1}"#);
        assert_eq!(e.data_sha256[31], 0xab);
        assert_eq!(format_time_ns(e.occurred_at_ns), "2026-11-30T06:15:00.25Z");
        let mut no_details = good();
        no_details.as_object_mut().unwrap().remove("details");
        assert_eq!(input(no_details).unwrap().details, "{}");
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases: &[(&str, Value, &str)] = &[
            ("agency", Value::from(""), "agency"),
            ("auditor", Value::from("a\u{0}b"), "auditor"),
            ("action", Value::from("delete_everything"), "action"),
            ("action", Value::from("custom:"), "action"),
            ("action", Value::from("custom:Upper"), "action"),
            ("action", Value::from("tsa.issued"), "action"),
            (
                "subject",
                Value::from("x".repeat(MAX_SUBJECT_BYTES + 1)),
                "subject",
            ),
            ("data_sha256", Value::from("abc"), "data_sha256"),
            ("data_sha256", Value::from("zz".repeat(32)), "data_sha256"),
            ("occurred_at", Value::from("yesterday"), "occurred_at"),
            (
                "occurred_at",
                Value::from("2026-11-30 08:15:00"),
                "occurred_at",
            ),
            (
                "details",
                serde_json::json!({"blob": "x".repeat(MAX_DETAILS_BYTES)}),
                "details",
            ),
            ("details", Value::from("not an object"), "details"),
            ("details", serde_json::json!([1]), "details"),
        ];
        for (key, value, field) in cases {
            let mut v = good();
            v[*key] = value.clone();
            assert_eq!(field_of(input(v).unwrap_err()), *field, "{key} = {value}");
        }
        // Wrong types and unknown or missing fields are refused by the JSON decoder.
        let mut v = good();
        v["extra"] = Value::from(1);
        assert!(serde_json::from_value::<EventInput>(v).is_err());
        let mut v = good();
        v.as_object_mut().unwrap().remove("subject");
        assert!(serde_json::from_value::<EventInput>(v).is_err());
    }

    #[test]
    fn details_are_stored_as_sent() {
        let sent = r#"{ "acct": 123456789012345678901234, "e": 1e2, "f": 0.1000000000000000055511151231257827,
            "z": -0, "one": 1.0, "neg": -9223372036854775809, "nested": {"b": [1E+300, 5e-324], "a": null} }"#;
        let e = posted(&posted_with_details(sent)).unwrap();
        assert_eq!(
            e.details,
            "{\"acct\":123456789012345678901234,\"e\":1e2,\"f\":0.1000000000000000055511151231257827,\
             \"neg\":-9223372036854775809,\"nested\":{\"a\":null,\"b\":[1E+300,5e-324]},\
             \"one\":1.0,\"z\":-0}"
        );
        // A number no 64-bit float can hold is refused, named.
        let err = posted(&posted_with_details(r#"{"n":[1,{"x":1e400}]}"#)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "details.n[1].x: the number 1e400 is beyond the range of a 64-bit float; send it as a string"
        );
        // Absent or null details are an empty object.
        assert_eq!(posted(&posted_with_details("null")).unwrap().details, "{}");
        // Shown back as stored.
        let stored = StoredEvent {
            index: 3,
            received_at_ms: 0,
            salt: [1; 16],
            event: e.clone(),
        };
        let shown = serde_json::to_string(&stored.view()).unwrap();
        assert!(
            shown.contains(&format!(",\"details\":{},", e.details)),
            "{shown}"
        );
        assert_eq!(
            super::super::exact_json::canonical(&shown, "event", 128).unwrap(),
            shown,
            "the view is itself canonical (fields in key order)"
        );
        assert_eq!(
            stored.to_json(),
            serde_json::from_str::<Value>(&shown).unwrap()
        );
    }

    #[test]
    fn repeated_keys_are_refused_at_every_level() {
        for (details, path) in [
            (r#"{"a":1,"a":2}"#, "details.a"),
            (r#"{"x":{"y":1,"y":2}}"#, "details.x.y"),
            (
                r#"{"list":[{"k":true},{"k":1,"k":1}]}"#,
                "details.list[1].k",
            ),
        ] {
            let e = posted(&posted_with_details(details)).unwrap_err();
            assert_eq!(field_of(e.clone()), path, "{details}");
            assert!(
                e.to_string().starts_with(&format!("{path}: the key ")),
                "{e}"
            );
        }
        // The event's own fields, details among them: serde refuses a repeated field.
        let good = posted_with_details(r#"{"a":1}"#);
        for (field, again) in [
            ("action", r#""action":"access","#),
            ("details", r#""details":{"a":2},"#),
        ] {
            let twice = good.replacen('{', &format!("{{{again}"), 1);
            let e = serde_json::from_str::<EventInput>(&twice).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&format!("duplicate field `{field}`")),
                "{e}"
            );
            assert_eq!(e.classify(), serde_json::error::Category::Data);
        }
    }

    #[test]
    fn details_nesting_is_limited() {
        let nested = |levels: usize| {
            format!(
                "{{\"d\":{}{}}}",
                "[".repeat(levels - 1),
                "]".repeat(levels - 1)
            )
        };
        assert!(posted(&posted_with_details(&nested(MAX_DETAILS_DEPTH))).is_ok());
        let e = posted(&posted_with_details(&nested(MAX_DETAILS_DEPTH + 1))).unwrap_err();
        assert!(e.to_string().contains("nested deeper than 64"), "{e}");
        // Far deeper than serde_json's own limit: the same clear refusal.
        let e = posted(&posted_with_details(&nested(1000))).unwrap_err();
        assert!(e.to_string().contains("nested deeper than 64"), "{e}");
    }

    #[test]
    fn custom_actions() {
        assert_eq!(
            Action::parse("custom:badge.scan-2").unwrap(),
            Action::Custom("badge.scan-2".into())
        );
        assert_eq!(Action::Custom("x".into()).name(), "custom:x");
        let long = format!("custom:{}", "a".repeat(MAX_CUSTOM_ACTION_BYTES + 1));
        assert!(Action::parse(&long).is_err());
    }

    #[test]
    fn leaf_layout_is_the_documented_one() {
        let stored = StoredEvent {
            index: 0x0102,
            received_at_ms: 7,
            salt: [0x55; 16],
            event: Event {
                agency: "A".into(),
                auditor: "B".into(),
                action: Action::Access,
                subject: "S".into(),
                data_sha256: [0xee; 32],
                occurred_at_ns: -1,
                details: "{}".into(),
            },
        };
        let leaf = stored.leaf_bytes();
        let mut expected = vec![1u8];
        expected.extend_from_slice(&0x0102u64.to_be_bytes());
        expected.extend_from_slice(&7u64.to_be_bytes());
        expected.extend_from_slice(&[0x55; 16]);
        expected.extend_from_slice(&[0xff; 8]);
        expected.extend_from_slice(&[0xee; 32]);
        for s in ["A", "B", "access", "S", "{}"] {
            expected.extend_from_slice(&(s.len() as u32).to_be_bytes());
            expected.extend_from_slice(s.as_bytes());
        }
        assert_eq!(leaf, expected);
        assert_eq!(StoredEvent::from_leaf_bytes(&leaf).unwrap(), stored);
        // Truncated or extended leaves are refused.
        for n in 0..leaf.len() {
            assert!(StoredEvent::from_leaf_bytes(&leaf[..n]).is_err(), "{n}");
        }
        let mut longer = leaf.clone();
        longer.push(0);
        assert!(StoredEvent::from_leaf_bytes(&longer).is_err());
        let json = stored.to_json();
        assert_eq!(json["action"], "access");
        assert_eq!(json["occurred_at"], "1969-12-31T23:59:59.999999999Z");
    }

    proptest! {
        #[test]
        fn leaves_round_trip(
            index in any::<u64>(),
            received in any::<u64>(),
            salt in any::<[u8; 16]>(),
            occurred in any::<i64>(),
            agency in "[a-z0-9 -]{1,40}",
            subject in "\\PC{1,60}",
            custom in "[a-z0-9_.-]{1,20}",
            n in any::<i32>(),
        ) {
            let details = canonical_details(
                serde_json::json!({"n": n, "s": subject.clone()}).as_object().unwrap(),
            ).unwrap();
            let stored = StoredEvent {
                index,
                received_at_ms: received,
                salt,
                event: Event {
                    agency: agency.clone(),
                    auditor: agency,
                    action: Action::Custom(custom),
                    subject,
                    data_sha256: salt.repeat(2).try_into().unwrap(),
                    occurred_at_ns: occurred,
                    details,
                },
            };
            let leaf = stored.leaf_bytes();
            prop_assert_eq!(StoredEvent::from_leaf_bytes(&leaf).unwrap(), stored);
        }

        /// Any details object that is accepted is stored, hashed (in the leaf) and shown
        /// exactly as sent: the canonical form of what was sent, every number's text kept.
        #[test]
        fn accepted_details_are_stored_and_shown_exactly(
            details in crate::chain::exact_json::arbitrary::object(),
            spaced in any::<bool>(),
        ) {
            use crate::chain::exact_json::arbitrary;
            let text = posted_with_details(&arbitrary::render(&details, spaced));
            let expected = arbitrary::canonical(&details);
            let event = posted(&text).unwrap();
            prop_assert_eq!(&event.details, &expected);
            let stored = StoredEvent { index: 1, received_at_ms: 2, salt: [3; 16], event };
            let leaf = stored.leaf_bytes();
            let back = StoredEvent::from_leaf_bytes(&leaf).unwrap();
            prop_assert_eq!(&back.event.details, &expected);
            #[derive(serde::Deserialize)]
            struct Shown<'a> {
                #[serde(borrow)]
                details: &'a RawValue,
            }
            let shown = serde_json::to_string(&back.view()).unwrap();
            let shown: Shown<'_> = serde_json::from_str(&shown).unwrap();
            prop_assert_eq!(shown.details.get(), expected);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = StoredEvent::from_leaf_bytes(&bytes);
        }
    }
}
