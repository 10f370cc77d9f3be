//! JSON read exactly and written in one canonical form, for audit records: every key once in
//! its object, every number kept as it was written; only whitespace and the order of an
//! object's members change.
//!
//! serde_json's `Value` keeps the last of a repeated key and turns every number into a
//! `u64`, `i64` or `f64`, so `{"a":1,"a":2}` would be recorded as `{"a":2}`,
//! `123456789012345678901234` as a float near it and `1e2` as `100.0`. An audit
//! record must be what was sent, or refused. serde_json's `arbitrary_precision` feature
//! would keep number texts, but it is crate-wide: it changes numbers for every user of
//! serde_json in the binary (axum, reqwest, serde's untagged and flattened types). So this
//! module lets serde_json check the syntax, and takes each number's text from the input
//! itself (serde_json hands the numbers over in document order, and a small scanner over
//! the same text finds their texts in the same order).
//!
//! # Canonical form
//! No whitespace; the members of every object sorted by key (by the bytes of its UTF-8, the
//! order of serde_json's `Map`); strings escaped as serde_json escapes them; `true`,
//! `false`, `null`; numbers exactly as written. For JSON whose numbers serde_json would
//! write back unchanged, this is byte for byte `serde_json::to_string` of the `Value`, the
//! form events were stored in before numbers were kept as written.
//!
//! Refused, each with the path of the value (`details.x.list[2]`): a key repeated in an
//! object, a number beyond the range of a 64-bit float (`1e400`: serde_json cannot read
//! it), nesting deeper than the caller's limit, anything that is not JSON.
//!
//! Pure (no I/O); its one error type is [`ExactJsonError`].

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Why a JSON text cannot be kept exactly. Each names the value by its path from the root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExactJsonError {
    /// An object holds the same key twice; `path` ends with that key.
    #[error(
        "{path}: the key {} appears more than once in its object; send each key once",
        json_string(.key)
    )]
    DuplicateKey {
        /// Where: the path of the repeated key (`details.x.y`).
        path: String,
        /// The key.
        key: String,
    },
    /// A number too large for a 64-bit float, which the JSON reader cannot hold.
    #[error(
        "{path}: the number {number} is beyond the range of a 64-bit float; send it as a string"
    )]
    NumberOutOfRange {
        /// Where.
        path: String,
        /// The number as written.
        number: String,
    },
    /// Objects and arrays nested deeper than allowed.
    #[error("{path}: nested deeper than {max} levels of objects and arrays")]
    TooDeep {
        /// Where: the first value past the limit.
        path: String,
        /// The limit.
        max: usize,
    },
    /// The value must be an object.
    #[error("{path}: must be a JSON object")]
    NotAnObject {
        /// Where.
        path: String,
    },
    /// Not JSON (a lone surrogate in a string, trailing characters, broken syntax).
    #[error("{path}: {reason}")]
    Malformed {
        /// Where, as far as known.
        path: String,
        /// What the JSON reader said.
        reason: String,
    },
}

impl ExactJsonError {
    /// The path of the value the error is about (`details.x.y`).
    pub fn path(&self) -> &str {
        match self {
            ExactJsonError::DuplicateKey { path, .. }
            | ExactJsonError::NumberOutOfRange { path, .. }
            | ExactJsonError::TooDeep { path, .. }
            | ExactJsonError::NotAnObject { path }
            | ExactJsonError::Malformed { path, .. } => path,
        }
    }
}

/// `s` as a JSON string, as messages quote keys.
fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

/// The canonical form of the JSON `text` (see the module documentation); `root` names the
/// whole value in error paths; objects and arrays may nest `max_depth` deep.
pub fn canonical(text: &str, root: &str, max_depth: usize) -> Result<String, ExactJsonError> {
    let node = read(text, root, max_depth)?;
    write(&node, root)
}

/// [`canonical`] of a text that must be a JSON object.
pub fn canonical_object(
    text: &str,
    root: &str,
    max_depth: usize,
) -> Result<String, ExactJsonError> {
    let node = read(text, root, max_depth)?;
    if !matches!(node, Node::Object(_)) {
        return Err(ExactJsonError::NotAnObject { path: root.into() });
    }
    write(&node, root)
}

/// A JSON value as read: numbers keep their text.
enum Node<'t> {
    Null,
    Bool(bool),
    Number(&'t str),
    String(String),
    Array(Vec<Node<'t>>),
    Object(BTreeMap<String, Node<'t>>),
}

/// Where a value is: `root`, `root.key`, `root["odd key"]`, `root[3]`.
#[derive(Clone, Copy)]
enum Path<'p> {
    Root(&'p str),
    Key(&'p Path<'p>, &'p str),
    Index(&'p Path<'p>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root(r) => f.write_str(r),
            Path::Key(parent, key) => {
                let plain = !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if plain {
                    write!(f, "{parent}.{key}")
                } else {
                    write!(f, "{parent}[{}]", json_string(key))
                }
            }
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// The texts of the numbers of a JSON text, in document order. The text must be JSON
/// (serde_json has read it up to the number asked for): outside strings, a number is the
/// only token that starts with `-` or a digit, and it runs until a character that no number
/// contains.
struct NumberTexts<'t> {
    rest: &'t str,
}

impl<'t> Iterator for NumberTexts<'t> {
    type Item = &'t str;

    fn next(&mut self) -> Option<&'t str> {
        let bytes = self.rest.as_bytes();
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            match b {
                b'"' => {
                    // Skip the string; a backslash escapes the byte after it.
                    i += 1;
                    while let Some(&c) = bytes.get(i) {
                        match c {
                            b'"' => break,
                            b'\\' => i += 2,
                            _ => i += 1,
                        }
                    }
                    i += 1;
                }
                b'-' | b'0'..=b'9' => {
                    let start = i;
                    while bytes.get(i).is_some_and(|c| {
                        matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                    }) {
                        i += 1;
                    }
                    let number = self.rest.get(start..i);
                    self.rest = self.rest.get(i..).unwrap_or("");
                    return number;
                }
                _ => i += 1,
            }
        }
        self.rest = "";
        None
    }
}

/// What one reading shares: the number texts still to come, the first error found.
struct Walk<'t> {
    numbers: NumberTexts<'t>,
    error: Option<ExactJsonError>,
    max_depth: usize,
}

impl Walk<'_> {
    /// Records `e` (unless an error was recorded already, deeper down) and returns the
    /// error that stops serde_json.
    fn fail<E: de::Error>(&mut self, e: ExactJsonError) -> E {
        let message = e.to_string();
        self.error.get_or_insert(e);
        E::custom(message)
    }
}

/// Reads the value at `path`, `depth` objects and arrays down.
struct Seed<'w, 't, 'p> {
    walk: &'w mut Walk<'t>,
    path: &'p Path<'p>,
    depth: usize,
}

impl<'t> DeserializeSeed<'t> for Seed<'_, 't, '_> {
    type Value = Node<'t>;

    fn deserialize<D: Deserializer<'t>>(self, d: D) -> Result<Node<'t>, D::Error> {
        let Seed { walk, path, depth } = self;
        let result = d.deserialize_any(Seed {
            walk: &mut *walk,
            path,
            depth,
        });
        if let Err(e) = &result {
            if walk.error.is_none() {
                // serde_json refused this value itself (the innermost value that failed
                // records first).
                let text = e.to_string();
                let reason = text
                    .rsplit_once(" at line ")
                    .map_or(text.as_str(), |(r, _)| r);
                walk.error = Some(if reason == "number out of range" {
                    ExactJsonError::NumberOutOfRange {
                        path: path.to_string(),
                        number: walk.numbers.next().unwrap_or_default().to_owned(),
                    }
                } else {
                    ExactJsonError::Malformed {
                        path: path.to_string(),
                        reason: reason.to_owned(),
                    }
                });
            }
        }
        result
    }
}

impl<'t> Seed<'_, 't, '_> {
    /// The next number's text; for an integer serde_json read as one, checks that it is the
    /// text of the value read (the number texts and the values are in step).
    fn number<E: de::Error>(self, read_as: Option<String>) -> Result<Node<'t>, E> {
        match self.walk.numbers.next() {
            Some(text) if read_as.as_deref().is_none_or(|v| v == text) => Ok(Node::Number(text)),
            _ => Err(self.walk.fail(ExactJsonError::Malformed {
                path: self.path.to_string(),
                reason: "the number's text could not be found".into(),
            })),
        }
    }

    /// The depth of the children of an object or array here, or the error if too deep.
    fn enter<E: de::Error>(&mut self) -> Result<usize, E> {
        let depth = self.depth + 1;
        if depth > self.walk.max_depth {
            let max = self.walk.max_depth;
            return Err(self.walk.fail(ExactJsonError::TooDeep {
                path: self.path.to_string(),
                max,
            }));
        }
        Ok(depth)
    }
}

impl<'t> Visitor<'t> for Seed<'_, 't, '_> {
    type Value = Node<'t>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node<'t>, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node<'t>, E> {
        Ok(Node::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node<'t>, E> {
        self.number(Some(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node<'t>, E> {
        self.number(Some(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node<'t>, E> {
        self.number(None)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node<'t>, E> {
        Ok(Node::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node<'t>, E> {
        Ok(Node::String(v))
    }

    fn visit_seq<A: SeqAccess<'t>>(mut self, mut seq: A) -> Result<Node<'t>, A::Error> {
        let depth = self.enter()?;
        let mut items = Vec::new();
        loop {
            let at = Path::Index(self.path, items.len());
            let seed = Seed {
                walk: &mut *self.walk,
                path: &at,
                depth,
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(Node::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'t>>(mut self, mut map: A) -> Result<Node<'t>, A::Error> {
        let depth = self.enter()?;
        let mut members = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let at = Path::Key(self.path, &key);
            if members.contains_key(&key) {
                return Err(self.walk.fail(ExactJsonError::DuplicateKey {
                    path: at.to_string(),
                    key: key.clone(),
                }));
            }
            let value = map.next_value_seed(Seed {
                walk: &mut *self.walk,
                path: &at,
                depth,
            })?;
            members.insert(key, value);
        }
        Ok(Node::Object(members))
    }
}

fn read<'t>(text: &'t str, root: &str, max_depth: usize) -> Result<Node<'t>, ExactJsonError> {
    let mut walk = Walk {
        numbers: NumberTexts { rest: text },
        error: None,
        max_depth,
    };
    let path = Path::Root(root);
    let mut de = serde_json::Deserializer::from_str(text);
    let result = Seed {
        walk: &mut walk,
        path: &path,
        depth: 0,
    }
    .deserialize(&mut de)
    .and_then(|node| de.end().map(|()| node));
    result.map_err(|e| {
        walk.error.take().unwrap_or_else(|| {
            let text = e.to_string();
            ExactJsonError::Malformed {
                path: root.into(),
                reason: text
                    .rsplit_once(" at line ")
                    .map_or(text.as_str(), |(r, _)| r)
                    .to_owned(),
            }
        })
    })
}

fn write(node: &Node<'_>, root: &str) -> Result<String, ExactJsonError> {
    fn string(out: &mut Vec<u8>, s: &str) -> serde_json::Result<()> {
        serde_json::to_writer(out, s)
    }
    fn value(out: &mut Vec<u8>, node: &Node<'_>) -> serde_json::Result<()> {
        match node {
            Node::Null => out.extend_from_slice(b"null"),
            Node::Bool(true) => out.extend_from_slice(b"true"),
            Node::Bool(false) => out.extend_from_slice(b"false"),
            Node::Number(text) => out.extend_from_slice(text.as_bytes()),
            Node::String(s) => string(out, s)?,
            Node::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    value(out, item)?;
                }
                out.push(b']');
            }
            Node::Object(members) => {
                out.push(b'{');
                for (i, (key, item)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    string(out, key)?;
                    out.push(b':');
                    value(out, item)?;
                }
                out.push(b'}');
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    let written = value(&mut out, node).map_err(|e| e.to_string());
    written
        .and_then(|()| String::from_utf8(out).map_err(|e| e.to_string()))
        .map_err(|reason| ExactJsonError::Malformed {
            path: root.into(),
            reason,
        })
}

/// Generated JSON for property tests: trees with numbers written in every way the JSON
/// grammar allows, their text with random whitespace and member order, and the canonical
/// form written independently of this module.
#[cfg(test)]
pub(crate) mod arbitrary {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    /// A JSON value with its numbers as text and its object members in sending order.
    #[derive(Debug, Clone)]
    pub(crate) enum Json {
        Null,
        Bool(bool),
        Number(String),
        String(String),
        Array(Vec<Json>),
        Object(Vec<(String, Json)>),
    }

    /// Any number the JSON grammar allows, within the range of a 64-bit float.
    pub(crate) fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| serde_json::to_string(&f).unwrap()),
            "-?(0|[1-9][0-9]{0,30})(\\.[0-9]{1,30})?([eE][+-]?[0-9]{1,2})?",
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9_.\\- ]{0,6}",
            "\\PC{0,6}",
            any::<String>().prop_map(|s| s.chars().take(6).collect()),
            Just("\"\\/\u{0}\u{1f}\u{7f}\u{2028}".to_owned()),
        ]
    }

    /// A JSON value, at most a few levels deep.
    pub(crate) fn value() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            number().prop_map(Json::Number),
            text().prop_map(Json::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
                object_of(inner),
            ]
        })
    }

    /// An object of `inner` values, each key once, in any order.
    pub(crate) fn object_of(inner: impl Strategy<Value = Json>) -> impl Strategy<Value = Json> {
        proptest::collection::btree_map(text(), inner, 0..6)
            .prop_map(|m| m.into_iter().collect::<Vec<_>>())
            .prop_shuffle()
            .prop_map(Json::Object)
    }

    /// A JSON object, at most a few levels deep.
    pub(crate) fn object() -> impl Strategy<Value = Json> {
        object_of(value())
    }

    /// The JSON text, with whitespace between tokens when `spaced`.
    pub(crate) fn render(v: &Json, spaced: bool) -> String {
        let gap = if spaced { " \n\t" } else { "" };
        match v {
            Json::Null => "null".into(),
            Json::Bool(b) => b.to_string(),
            Json::Number(n) => n.clone(),
            // Escaped in a way of its own (every non-ASCII character as \u), so the
            // canonical form's escaping is not this one.
            Json::String(s) => quote(s),
            Json::Array(items) => format!(
                "[{gap}{}{gap}]",
                items
                    .iter()
                    .map(|i| render(i, spaced))
                    .collect::<Vec<_>>()
                    .join(&format!("{gap},{gap}"))
            ),
            Json::Object(members) => format!(
                "{{{gap}{}{gap}}}",
                members
                    .iter()
                    .map(|(k, v)| format!("{}{gap}:{gap}{}", quote(k), render(v, spaced)))
                    .collect::<Vec<_>>()
                    .join(&format!("{gap},{gap}"))
            ),
        }
    }

    fn quote(s: &str) -> String {
        let mut out = String::from("\"");
        for unit in s.encode_utf16() {
            match unit {
                0x22 => out.push_str("\\\""),
                0x5c => out.push_str("\\\\"),
                0x20..=0x7e => out.push(char::from(u8::try_from(unit).unwrap())),
                _ => out.push_str(&format!("\\u{unit:04x}")),
            }
        }
        out.push('"');
        out
    }

    /// The canonical form: compact, keys sorted by their bytes, strings as serde_json
    /// writes them, numbers as they are.
    pub(crate) fn canonical(v: &Json) -> String {
        match v {
            Json::Null | Json::Bool(_) | Json::Number(_) => render(v, false),
            Json::String(s) => serde_json::to_string(s).unwrap(),
            Json::Array(items) => format!(
                "[{}]",
                items.iter().map(canonical).collect::<Vec<_>>().join(",")
            ),
            Json::Object(members) => {
                let mut sorted: Vec<&(String, Json)> = members.iter().collect();
                sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                format!(
                    "{{{}}}",
                    sorted
                        .iter()
                        .map(|(k, v)| format!(
                            "{}:{}",
                            serde_json::to_string(k).unwrap(),
                            canonical(v)
                        ))
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;

    fn details(text: &str) -> Result<String, ExactJsonError> {
        canonical_object(text, "details", 64)
    }

    #[test]
    fn numbers_keep_their_text_and_members_are_sorted() {
        let sent = r#" { "b" : 1e2, "a": [1.0, -0, 123456789012345678901234,
            0.1000000000000000055511151231257827, -9223372036854775809, 1E+300, 5e-324,
            "s\u00e9\"\/", true, null, {}, []],
            "c": {"y": 18446744073709551615, "x": -1.50e-7} } "#;
        assert_eq!(
            details(sent).unwrap(),
            "{\"a\":[1.0,-0,123456789012345678901234,0.1000000000000000055511151231257827,\
             -9223372036854775809,1E+300,5e-324,\"s\u{e9}\\\"/\",true,null,{},[]],\
             \"b\":1e2,\"c\":{\"x\":-1.50e-7,\"y\":18446744073709551615}}"
        );
    }

    #[test]
    fn numbers_in_strings_and_escapes_do_not_shift_the_number_texts() {
        let sent = r#"{"s":"12\"34 -5 \\","n":7,"t":"\\\"","u":"\u0031","m":-8.25e1,"e":"e-1"}"#;
        assert_eq!(
            details(sent).unwrap(),
            r#"{"e":"e-1","m":-8.25e1,"n":7,"s":"12\"34 -5 \\","t":"\\\"","u":"1"}"#
        );
    }

    #[test]
    fn a_repeated_key_is_refused_with_its_path() {
        let cases = [
            (r#"{"a":1,"a":2}"#, "details.a", "a"),
            (r#"{"a":1,"a":1}"#, "details.a", "a"),
            (r#"{"x":{"y":1,"z":0,"y":2}}"#, "details.x.y", "y"),
            (r#"{"l":[0,{"k":[],"k":null}]}"#, "details.l[1].k", "k"),
            (
                r#"{"a b":{"c.d":1,"c.d":2}}"#,
                r#"details["a b"]["c.d"]"#,
                "c.d",
            ),
            // The same key spelt with an escape is the same key.
            (r#"{"a":1,"\u0061":2}"#, "details.a", "a"),
            (r#"{"":1,"":2}"#, r#"details[""]"#, ""),
        ];
        for (text, path, key) in cases {
            let e = details(text).unwrap_err();
            assert_eq!(
                e,
                ExactJsonError::DuplicateKey {
                    path: path.into(),
                    key: key.into()
                },
                "{text}"
            );
            assert!(
                e.to_string().starts_with(&format!("{path}: the key ")),
                "{e}"
            );
        }
    }

    #[test]
    fn other_refusals_name_the_value() {
        assert_eq!(
            details(r#"{"n":[0,-1e400]}"#).unwrap_err(),
            ExactJsonError::NumberOutOfRange {
                path: "details.n[1]".into(),
                number: "-1e400".into()
            }
        );
        assert_eq!(
            details(&format!("{{\"d\":{}{}}}", "[".repeat(64), "]".repeat(64))).unwrap_err(),
            ExactJsonError::TooDeep {
                path: format!("details.d{}", "[0]".repeat(63)),
                max: 64
            }
        );
        assert!(details(&format!("{{\"d\":{}{}}}", "[".repeat(63), "]".repeat(63))).is_ok());
        for text in ["[1]", "\"x\"", "1", "null"] {
            assert_eq!(
                details(text).unwrap_err(),
                ExactJsonError::NotAnObject {
                    path: "details".into()
                }
            );
        }
        let e = details(r#"{"ok":1,"s":"\ud800"}"#).unwrap_err();
        assert!(
            matches!(&e, ExactJsonError::Malformed { path, .. } if path == "details.s"),
            "{e:?}"
        );
        assert!(!e.to_string().contains(" at line "), "{e}");
        for text in ["{} x", "{", "", "{\"a\":01}", "{\"a\":1.}", "{'a':1}"] {
            assert!(
                matches!(details(text), Err(ExactJsonError::Malformed { .. })),
                "{text}"
            );
        }
        // Any value at the root, for callers that need no object.
        assert_eq!(canonical(" [1e2, 2] ", "x", 4).unwrap(), "[1e2,2]");
    }

    proptest! {
        /// Any JSON object is kept: its canonical form has every number's text as sent, and
        /// reading the canonical form again gives it back unchanged.
        #[test]
        fn any_object_is_kept_exactly(v in arbitrary::object(), spaced in any::<bool>()) {
            let text = arbitrary::render(&v, spaced);
            let got = details(&text).unwrap();
            prop_assert_eq!(&got, &arbitrary::canonical(&v));
            prop_assert_eq!(details(&got).unwrap(), got.clone());
            // serde_json reads the same values from both.
            let sent: serde_json::Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(serde_json::from_str::<serde_json::Value>(&got).unwrap(), sent);
        }

        /// Texts one character away from JSON: refused, or kept with every value in place
        /// (serde_json reads the same values from the text and from its canonical form).
        #[test]
        fn near_json_is_refused_or_kept_in_step(
            v in arbitrary::object(),
            at in any::<prop::sample::Index>(),
            with in prop::sample::select(&b"\"\\{}[],:-+.0123456789eE tfnu/"[..]),
        ) {
            let mut text = arbitrary::render(&v, false).into_bytes();
            let i = at.index(text.len());
            text[i] = with;
            let Ok(text) = String::from_utf8(text) else { return Ok(()) };
            if let Ok(got) = details(&text) {
                let sent: serde_json::Value = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(serde_json::from_str::<serde_json::Value>(&got).unwrap(), sent);
                prop_assert_eq!(details(&got).unwrap(), got);
            }
        }

        /// Where serde_json would keep every number, the canonical form is serde_json's own
        /// compact, key-sorted text: the form earlier events were stored in.
        #[test]
        fn serde_json_values_keep_their_serde_json_form(
            m in proptest::collection::btree_map(
                "\\PC{0,6}",
                prop_oneof![
                    any::<i64>().prop_map(serde_json::Value::from),
                    any::<u64>().prop_map(serde_json::Value::from),
                    any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
                    "\\PC{0,6}".prop_map(serde_json::Value::from),
                ],
                0..8,
            )
        ) {
            let map: serde_json::Map<String, serde_json::Value> = m.into_iter().collect();
            let pretty = serde_json::to_string_pretty(&map).unwrap();
            prop_assert_eq!(details(&pretty).unwrap(), serde_json::to_string(&map).unwrap());
        }

        /// A repeated key anywhere is found.
        #[test]
        fn a_repeated_key_anywhere_is_found(v in arbitrary::object(), key in "[a-z]{1,3}") {
            // Wrap the object so that the repeated key is one level down.
            let dup = format!(
                "{{\"w\":{{{k}:1,\"inner\":{},{k}:2}}}}",
                arbitrary::render(&v, false),
                k = serde_json::to_string(&key).unwrap()
            );
            let e = details(&dup).unwrap_err();
            prop_assert_eq!(e.path(), format!("details.w.{key}"));
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
            let _ = canonical(&text, "x", 8);
        }
    }
}
