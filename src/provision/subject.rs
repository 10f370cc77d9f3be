//! Subject names from RFC 4514 strings such as `CN=Audit TSA 1,O=Audit Office,C=DE`.

use std::str::FromStr;

use const_oid::db::rfc4519::COUNTRY_NAME;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::name::Name;

use super::ProvisionError;

/// Splits `s` at every `sep` that is not escaped with a backslash (RFC 4514 §2.4).
fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Trims blanks around `part`, keeping a trailing blank that is escaped (`\ `).
fn trim_part(part: &str) -> &str {
    let part = part.trim_start();
    let mut end = part.len();
    while end > 0 && part[..end].ends_with(' ') && !part[..end - 1].ends_with('\\') {
        end -= 1;
    }
    &part[..end]
}

/// Parses an RFC 4514 distinguished name, written most specific first
/// (`CN=...,O=...,C=...`), into an X.509 [`Name`].
///
/// Blanks after the commas are allowed. Attribute types are the RFC 4519 names (CN, O,
/// OU, C, L, ST, serialNumber, ...) or dotted OIDs; a country is two letters. The error
/// names the part that is wrong.
pub fn parse_subject(subject: &str) -> Result<Name, ProvisionError> {
    let invalid = |reason: String| ProvisionError::InvalidSubject {
        subject: subject.to_owned(),
        reason,
    };
    if subject.trim().is_empty() {
        return Err(invalid("the subject is empty".into()));
    }
    let mut rdns = Vec::new();
    for (position, rdn) in split_unescaped(subject, ',').into_iter().enumerate() {
        let rdn = trim_part(rdn);
        if rdn.is_empty() {
            return Err(invalid(format!(
                "empty component at position {}",
                position + 1
            )));
        }
        let mut atvs = Vec::new();
        for atv in split_unescaped(rdn, '+') {
            let atv = trim_part(atv);
            let Some((key, value)) = atv.split_once('=') else {
                return Err(invalid(format!("{atv:?} is not TYPE=value")));
            };
            let (key, value) = (key.trim(), value.trim_start());
            if key.is_empty() || value.is_empty() {
                return Err(invalid(format!("{atv:?} has an empty type or value")));
            }
            let normalised = format!("{key}={value}");
            let parsed = AttributeTypeAndValue::from_str(&normalised).map_err(|_| {
                invalid(format!(
                    "{atv:?}: unknown attribute type {key:?} or badly escaped value"
                ))
            })?;
            if parsed.oid == COUNTRY_NAME
                && !(value.len() == 2 && value.bytes().all(|b| b.is_ascii_alphabetic()))
            {
                return Err(invalid(format!(
                    "{atv:?}: a country is a two-letter ISO 3166 code"
                )));
            }
            atvs.push(normalised);
        }
        rdns.push(atvs.join("+"));
    }
    Name::from_str(&rdns.join(",")).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use der::Encode;

    #[test]
    fn parses_a_typical_subject() {
        let name = parse_subject("CN=Audit TSA 1, O=Audit Office,C=DE").unwrap();
        assert_eq!(name.to_string(), "CN=Audit TSA 1,O=Audit Office,C=DE");
        // Encoded least specific first: C, O, CN; C as a PrintableString.
        let der = name.to_der().unwrap();
        let c = hex::encode(&der).find("0603550406130244").is_some();
        assert!(c, "country is a PrintableString: {}", hex::encode(&der));
        assert_eq!(name.0.len(), 3);
    }

    #[test]
    fn escaped_commas_stay_in_the_value() {
        let name = parse_subject(r"CN=Office\, North,C=FR").unwrap();
        assert_eq!(name.0.len(), 2);
        assert!(name.to_string().contains("North"));
    }

    #[test]
    fn errors_name_the_bad_part() {
        let err = parse_subject("CN=x,XX=y").unwrap_err().to_string();
        assert!(err.contains("\"XX=y\""), "{err}");
        let err = parse_subject("CN=x,,O=y").unwrap_err().to_string();
        assert!(err.contains("position 2"), "{err}");
        let err = parse_subject("CN=x,C=DEU").unwrap_err().to_string();
        assert!(err.contains("C=DEU"), "{err}");
        let err = parse_subject("CN=x,O").unwrap_err().to_string();
        assert!(err.contains("\"O\""), "{err}");
        let err = parse_subject("CN=").unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        assert!(parse_subject("  ").is_err());
    }
}
