//! The DER types a verifier reads: the CMS SignedData of any time-stamp token (not only the
//! ones `tsp` writes), a TSTInfo read leniently enough that each checklist rule can be told
//! apart, and the ESS v1 signing certificate attribute.
//!
//! Every part that is signed or hashed is kept as the octets that were received
//! ([`SetValue`], [`Tlv`]), never re-encoded: a verifier must check the bytes the signer
//! signed. What no type here decodes (the values of attributes, the parameters of
//! algorithms, what a CHOICE leaves open) is checked to be DER by [`check_der`].
//!
//! Why the CMS types are here a second time, beside `tsp`'s writer types: the writer's
//! `SignedData` and `SignerInfo` hold the parts encoded once at startup as finished
//! elements and have exactly the fields this appliance writes (one SignerInfo, no CRLs, no
//! unsigned attributes). A verifier must read any token: every OPTIONAL field, SETs kept as
//! received so that their elements can be counted and the signed attributes hashed as the
//! octets that were signed, and algorithm identifiers decoded. One type cannot be both
//! without making the token path re-encode or the verifier lose the received bytes. What is
//! the same on both sides (`EncapsulatedContentInfo`, `MessageImprint`, `IssuerSerial`,
//! `AccuracyDer`, [`Tlv`], [`SetValue`]) is `tsp`'s, used here.

use der::asn1::{
    AnyRef, BitStringRef, IntRef, ObjectIdentifier, OctetString, OctetStringRef, UtcTime,
};
use der::{Choice, Decode, Sequence, Tag};
use spki::{AlgorithmIdentifierOwned, AlgorithmIdentifierRef};
use x509_cert::crl::RevokedCert;
use x509_cert::ext::pkix::certpolicy::PolicyInformation;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::Extensions;
use x509_cert::name::Name;
use x509_cert::time::Time;
use x509_cert::Version;

use super::DerProblem;
use crate::tsp::asn1::{
    AccuracyDer, EncapsulatedContentInfo, IssuerSerial, MessageImprint, SetValue, Tlv,
};

/// A CMS ContentInfo with its content as any element (RFC 5652 §3).
///
/// ```text
/// ContentInfo ::= SEQUENCE {
///    contentType ContentType,
///    content [0] EXPLICIT ANY DEFINED BY contentType }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(super) struct ContentInfoRef<'a> {
    pub content_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    pub content: AnyRef<'a>,
}

/// The signed-data content type (RFC 5652 §5.1), as received.
///
/// ```text
/// SignedData ::= SEQUENCE {
///    version CMSVersion,
///    digestAlgorithms DigestAlgorithmIdentifiers,
///    encapContentInfo EncapsulatedContentInfo,
///    certificates [0] IMPLICIT CertificateSet OPTIONAL,
///    crls [1] IMPLICIT RevocationInfoChoices OPTIONAL,
///    signerInfos SignerInfos }
///
/// DigestAlgorithmIdentifiers ::= SET OF DigestAlgorithmIdentifier
/// CertificateSet ::= SET OF CertificateChoices
/// SignerInfos ::= SET OF SignerInfo
/// ```
///
/// The three SETs are kept as their contents octets so that their elements can be counted
/// and checked one by one (a token with two SignerInfos is a structure error, not a DER
/// error).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(super) struct SignedDataRef<'a> {
    pub version: u8,
    pub digest_algorithms: SetValue<'a>,
    pub encap_content_info: EncapsulatedContentInfo<'a>,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    pub certificates: Option<SetValue<'a>>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    pub crls: Option<SetValue<'a>>,
    pub signer_infos: SetValue<'a>,
}

/// One signer (RFC 5652 §5.3), as received.
///
/// ```text
/// SignerInfo ::= SEQUENCE {
///    version CMSVersion,
///    sid SignerIdentifier,
///    digestAlgorithm DigestAlgorithmIdentifier,
///    signedAttrs [0] IMPLICIT SignedAttributes OPTIONAL,
///    signatureAlgorithm SignatureAlgorithmIdentifier,
///    signature SignatureValue,
///    unsignedAttrs [1] IMPLICIT UnsignedAttributes OPTIONAL }
///
/// SignerIdentifier ::= CHOICE {
///    issuerAndSerialNumber IssuerAndSerialNumber,
///    subjectKeyIdentifier [0] SubjectKeyIdentifier }
/// ```
///
/// `sid` is kept as its element and decoded separately; `signedAttrs` as the contents
/// octets that were signed (re-tagged as a SET).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(super) struct SignerInfoRef<'a> {
    pub version: u8,
    pub sid: Tlv<'a>,
    pub digest_algorithm: AlgorithmIdentifierRef<'a>,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    pub signed_attrs: Option<SetValue<'a>>,
    pub signature_algorithm: AlgorithmIdentifierRef<'a>,
    pub signature: OctetStringRef<'a>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    pub unsigned_attrs: Option<SetValue<'a>>,
}

/// The TSTInfo (RFC 3161 §2.4.2), read so that each rule can be checked on its own.
///
/// ```text
/// TSTInfo ::= SEQUENCE  {
///    version                      INTEGER  { v1(1) },
///    policy                       TSAPolicyId,
///    messageImprint               MessageImprint,
///    serialNumber                 INTEGER,
///    genTime                      GeneralizedTime,
///    accuracy                     Accuracy                 OPTIONAL,
///    ordering                     BOOLEAN             DEFAULT FALSE,
///    nonce                        INTEGER                  OPTIONAL,
///    tsa                          [0] GeneralName          OPTIONAL,
///    extensions                   [1] IMPLICIT Extensions   OPTIONAL  }
/// ```
///
/// `version` and `serialNumber` are read as any INTEGER (a wrong version or a negative or
/// oversized serial is a rule failure, not a DER failure) and `genTime` as any element (a
/// malformed genTime is rule 9's); the strict decoding is `tsp`'s
/// [`decode_tst_info`](crate::tsp::decode_tst_info), run afterwards.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(super) struct LenientTstInfo<'a> {
    pub version: IntRef<'a>,
    pub policy: ObjectIdentifier,
    pub message_imprint: MessageImprint<'a>,
    pub serial_number: IntRef<'a>,
    pub gen_time: AnyRef<'a>,
    #[asn1(optional = "true")]
    pub accuracy: Option<AccuracyDer>,
    #[asn1(optional = "true")]
    pub ordering: Option<bool>,
    #[asn1(optional = "true")]
    pub nonce: Option<IntRef<'a>>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub tsa: Option<GeneralName>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    pub extensions: Option<Extensions>,
}

/// The signingCertificate attribute value, ESS version 1 (RFC 2634 §5.4).
///
/// ```text
/// SigningCertificate ::=  SEQUENCE {
///    certs        SEQUENCE OF ESSCertID,
///    policies     SEQUENCE OF PolicyInformation OPTIONAL }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(super) struct SigningCertificateV1 {
    pub certs: Vec<EssCertIdV1>,
    #[asn1(optional = "true")]
    pub policies: Option<Vec<PolicyInformation>>,
}

/// The identifier of one certificate, ESS version 1 (RFC 2634 §5.4.1): the SHA-1 hash of
/// the whole certificate.
///
/// ```text
/// ESSCertID ::=  SEQUENCE {
///    certHash                 Hash,
///    issuerSerial             IssuerSerial OPTIONAL }
///
/// Hash ::= OCTET STRING -- SHA1 hash of entire certificate
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(super) struct EssCertIdV1 {
    pub cert_hash: OctetString,
    #[asn1(optional = "true")]
    pub issuer_serial: Option<IssuerSerial>,
}

/// One element of a SignedData's `crls` (RFC 5652 §10.2.1).
///
/// ```text
/// RevocationInfoChoices ::= SET OF RevocationInfoChoice
///
/// RevocationInfoChoice ::= CHOICE {
///    crl CertificateList,
///    other [1] IMPLICIT OtherRevocationInfoFormat }
/// ```
///
/// (The `cms` crate's own type reads `otherRevInfoFormat` as an AlgorithmIdentifier, not
/// the OBJECT IDENTIFIER RFC 5652 has, so it cannot read RFC 5940's OCSP responses.)
#[derive(Clone, Debug, Eq, PartialEq, Choice)]
#[allow(clippy::large_enum_variant)]
pub(super) enum RevocationInfoChoice<'a> {
    /// An X.509 CRL.
    Crl(CertificateList<'a>),
    /// Revocation information of another format.
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true")]
    Other(OtherRevocationInfoFormat<'a>),
}

/// Revocation information that is not a CRL (RFC 5652 §10.2.1), e.g. an OCSP response
/// (RFC 5940).
///
/// ```text
/// OtherRevocationInfoFormat ::= SEQUENCE {
///    otherRevInfoFormat OBJECT IDENTIFIER,
///    otherRevInfo ANY DEFINED BY otherRevInfoFormat }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(super) struct OtherRevocationInfoFormat<'a> {
    pub other_rev_info_format: ObjectIdentifier,
    pub other_rev_info: AnyRef<'a>,
}

/// An X.509 CRL (RFC 5280 §5.1).
///
/// ```text
/// CertificateList  ::=  SEQUENCE  {
///    tbsCertList          TBSCertList,
///    signatureAlgorithm   AlgorithmIdentifier,
///    signatureValue       BIT STRING  }
/// ```
///
/// (`x509-cert`'s own type requires the version, which RFC 5280 makes OPTIONAL: a v1 CRL
/// has none.)
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(super) struct CertificateList<'a> {
    pub tbs_cert_list: TbsCertList,
    pub signature_algorithm: AlgorithmIdentifierRef<'a>,
    pub signature_value: BitStringRef<'a>,
}

/// The signed part of a CRL (RFC 5280 §5.1).
///
/// ```text
/// TBSCertList  ::=  SEQUENCE  {
///    version                 Version OPTIONAL, -- if present, MUST be v2
///    signature               AlgorithmIdentifier,
///    issuer                  Name,
///    thisUpdate              Time,
///    nextUpdate              Time OPTIONAL,
///    revokedCertificates     SEQUENCE OF SEQUENCE  {
///         userCertificate         CertificateSerialNumber,
///         revocationDate          Time,
///         crlEntryExtensions      Extensions OPTIONAL } OPTIONAL,
///    crlExtensions           [0] EXPLICIT Extensions OPTIONAL }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(super) struct TbsCertList {
    #[asn1(optional = "true")]
    pub version: Option<Version>,
    pub signature: AlgorithmIdentifierOwned,
    pub issuer: Name,
    pub this_update: Time,
    #[asn1(optional = "true")]
    pub next_update: Option<Time>,
    #[asn1(optional = "true")]
    pub revoked_certificates: Option<Vec<RevokedCert>>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub crl_extensions: Option<Extensions>,
}

/// The deepest nesting of constructed elements [`check_der`] follows (a time-stamp token
/// inside an unsigned attribute of another is about 20 deep).
pub(super) const MAX_DER_DEPTH: usize = 64;

/// Checks that `element` is exactly one element in DER (X.690 §10, §11), as far as that can
/// be told without knowing its ASN.1 type.
///
/// Every header must be DER (definite lengths in their shortest form, and the `der`
/// crate's tags: universal types constructed only for SEQUENCE and SET). Constructed
/// elements are checked element by element, to [`MAX_DER_DEPTH`]; the contents of
/// primitive ones by their universal type: BOOLEAN `00` or `FF`; INTEGER and ENUMERATED
/// in their shortest form; NULL empty; OBJECT IDENTIFIER subidentifiers in their shortest
/// form; BIT STRING with at most 7 unused bits, all zero; UTCTime `YYMMDDHHMMSSZ`;
/// GeneralizedTime `YYYYMMDDHHMMSS[.f]Z` without trailing zeros in the fraction; the
/// elements of a universal SET in ascending order of their octets (X.690 §11.6: a SET OF;
/// a SET whose type is not known is taken for a SET OF). Implicitly tagged SETs, OCTET
/// STRING contents and character sets are not looked into: they need the type.
pub(super) fn check_der(element: &[u8]) -> Result<(), DerProblem> {
    if check_element(element, 0)?.len() != element.len() {
        return Err(DerProblem::Rule("octets after the element"));
    }
    Ok(())
}

/// The elements of `contents` (those of a constructed element), each checked by
/// [`check_der`].
pub(super) fn der_elements(contents: &[u8]) -> Result<Vec<&[u8]>, DerProblem> {
    let mut elements = Vec::new();
    let mut rest = contents;
    while !rest.is_empty() {
        let element = check_element(rest, 0)?;
        rest = &rest[element.len()..];
        elements.push(element);
    }
    Ok(elements)
}

/// Checks the element at the start of `bytes`, at nesting `depth`; returns its octets.
fn check_element(bytes: &[u8], depth: usize) -> Result<&[u8], DerProblem> {
    let (tag, header_len, len) = read_header(bytes)?;
    let tlv = header_len
        .checked_add(len)
        .and_then(|end| bytes.get(..end))
        .ok_or(DerProblem::Rule("an element longer than what holds it"))?;
    let value = &tlv[header_len..];
    match tag {
        Tag::Boolean if value != [0x00] && value != [0xff] => {
            return Err(DerProblem::Rule("a BOOLEAN other than 00 or FF"));
        }
        Tag::Integer | Tag::Enumerated => check_integer(value)?,
        Tag::Null if !value.is_empty() => {
            return Err(DerProblem::Rule("a NULL with contents"));
        }
        Tag::ObjectIdentifier => check_oid(value)?,
        Tag::BitString => check_bit_string(value)?,
        Tag::UtcTime => {
            UtcTime::from_der(tlv)?;
        }
        Tag::GeneralizedTime => check_generalized_time(value)?,
        Tag::Set => check_contents(value, depth + 1, true)?,
        tag if tag.is_constructed() => check_contents(value, depth + 1, false)?,
        _ => {}
    }
    Ok(tlv)
}

/// Checks the elements of a constructed element's contents; in ascending order when they
/// are those of a SET OF.
fn check_contents(contents: &[u8], depth: usize, set_of: bool) -> Result<(), DerProblem> {
    if depth > MAX_DER_DEPTH {
        return Err(DerProblem::Rule("elements nested too deep"));
    }
    let mut rest = contents;
    let mut previous: Option<&[u8]> = None;
    while !rest.is_empty() {
        let element = check_element(rest, depth)?;
        rest = &rest[element.len()..];
        if set_of && previous.is_some_and(|p| p > element) {
            return Err(DerProblem::Rule(
                "a SET OF whose elements are not in ascending order",
            ));
        }
        previous = Some(element);
    }
    Ok(())
}

/// The tag, the header's length and the contents' length of the element at the start of
/// `bytes`, refused unless the header is DER (X.690 §10.1: a definite length, in as few
/// octets as possible). Tags are `der`'s: the universal types it knows (constructed only
/// SEQUENCE and SET), any other class, tag numbers up to 30. (Read here rather than by
/// `der`'s reader, which takes several times as long and calls a length that is not in its
/// shortest form an "incorrect length".)
fn read_header(bytes: &[u8]) -> Result<(Tag, usize, usize), DerProblem> {
    let missing = DerProblem::Rule("an element cut short");
    let (&first, rest) = bytes.split_first().ok_or(missing)?;
    let tag = Tag::try_from(first)?;
    let (&initial, rest) = rest.split_first().ok_or(missing)?;
    match initial {
        0x00..=0x7f => Ok((tag, 2, usize::from(initial))),
        0x80 => Err(DerProblem::Rule("an indefinite length (BER, not DER)")),
        0x81..=0x84 => {
            let digits = rest.get(..usize::from(initial & 0x7f)).ok_or(missing)?;
            if digits[0] == 0 || (digits.len() == 1 && digits[0] < 0x80) {
                return Err(DerProblem::Rule("a length not in its shortest form"));
            }
            let len = digits
                .iter()
                .fold(0usize, |len, &d| (len << 8) | usize::from(d));
            Ok((tag, 2 + digits.len(), len))
        }
        _ => Err(DerProblem::Rule("a length of more than four octets")),
    }
}

/// X.690 §8.3.2: no first nine bits all zero or all one.
fn check_integer(value: &[u8]) -> Result<(), DerProblem> {
    match value {
        [] => Err(DerProblem::Rule("an INTEGER without contents")),
        [0x00, next, ..] if next & 0x80 == 0 => {
            Err(DerProblem::Rule("an INTEGER not in its shortest form"))
        }
        [0xff, next, ..] if next & 0x80 != 0 => {
            Err(DerProblem::Rule("an INTEGER not in its shortest form"))
        }
        _ => Ok(()),
    }
}

/// X.690 §8.19.2: each subidentifier in as few octets as possible (never led by `80`),
/// the last octet of each with bit 8 clear.
fn check_oid(value: &[u8]) -> Result<(), DerProblem> {
    let bad = DerProblem::Rule("an OBJECT IDENTIFIER not in its shortest form");
    if value.last().is_none_or(|last| last & 0x80 != 0) {
        return Err(bad);
    }
    let mut starts_subidentifier = true;
    for &octet in value {
        if starts_subidentifier && octet == 0x80 {
            return Err(bad);
        }
        starts_subidentifier = octet & 0x80 == 0;
    }
    Ok(())
}

/// X.690 §8.6.2 and §11.2: at most 7 unused bits, none without content octets, all zero.
fn check_bit_string(value: &[u8]) -> Result<(), DerProblem> {
    match value {
        [] => Err(DerProblem::Rule("a BIT STRING without contents")),
        [unused, ..] if *unused > 7 => {
            Err(DerProblem::Rule("a BIT STRING with over 7 unused bits"))
        }
        [unused] if *unused != 0 => Err(DerProblem::Rule("an empty BIT STRING with unused bits")),
        [unused, .., last] if last & ((1u8 << unused) - 1) != 0 => Err(DerProblem::Rule(
            "a BIT STRING whose unused bits are not zero",
        )),
        _ => Ok(()),
    }
}

/// X.690 §11.7: `YYYYMMDDHHMMSS`, a fraction of a second only if it is not zero (without
/// trailing zeros, after a full stop), then `Z`.
fn check_generalized_time(value: &[u8]) -> Result<(), DerProblem> {
    let bad = DerProblem::Rule("a GeneralizedTime not in the DER form");
    let (Some(whole), Some(fraction), Some(b'Z')) = (
        value.get(..14),
        value.get(14..value.len().saturating_sub(1)),
        value.last(),
    ) else {
        return Err(bad);
    };
    if let Some((b'.', digits)) = fraction.split_first() {
        if digits.is_empty()
            || !digits.iter().all(u8::is_ascii_digit)
            || digits.last() == Some(&b'0')
        {
            return Err(bad);
        }
    } else if !fraction.is_empty() {
        return Err(bad);
    }
    // The date and time without the fraction, as der reads them (it checks the ranges).
    let mut plain = [0u8; 17];
    plain[..2].copy_from_slice(&[0x18, 15]);
    plain[2..16].copy_from_slice(whole);
    plain[16] = b'Z';
    der::asn1::GeneralizedTime::from_der(&plain).map_err(|_| bad)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use der::{Encode, Length};

    /// The rule `check_der` names for `der`, or "ok", or "decode" for a `der` error.
    fn verdict(der: &[u8]) -> String {
        match check_der(der) {
            Ok(()) => "ok".to_owned(),
            Err(DerProblem::Rule(rule)) => rule.to_owned(),
            Err(DerProblem::Decode(_)) => "decode".to_owned(),
        }
    }

    #[test]
    fn check_der_accepts_der() {
        for der in [
            &[0x01, 0x01, 0xff][..],
            &[0x01, 0x01, 0x00],
            &[0x02, 0x01, 0x00],
            &[0x02, 0x02, 0x00, 0x80],
            &[0x02, 0x02, 0xff, 0x7f],
            &[0x0a, 0x01, 0x05],
            &[0x05, 0x00],
            &[0x06, 0x03, 0x2a, 0x86, 0x48],
            &[0x03, 0x01, 0x00],
            &[0x03, 0x02, 0x07, 0x80],
            &[0x04, 0x03, 0x02, 0x01, 0x80],
            &[0x30, 0x00],
            &[0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02],
            &[0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01],
            &[0xa0, 0x03, 0x02, 0x01, 0x05],
            &[0x80, 0x02, 0xff, 0xff],
        ] {
            assert_eq!(verdict(der), "ok", "{der:02x?}");
        }
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([0; 0x80]);
        assert_eq!(verdict(&long), "ok");
        for time in [
            &b"\x17\x0d260601120000Z"[..],
            b"\x18\x0f20260601120000Z",
            b"\x18\x1120260601120000.5Z",
            b"\x18\x1320260601120000.125Z",
        ] {
            assert_eq!(verdict(time), "ok", "{}", String::from_utf8_lossy(time));
        }
    }

    #[test]
    fn check_der_names_what_is_not_der() {
        for (der, rule) in [
            (&[0x01, 0x01, 0x01][..], "a BOOLEAN other than 00 or FF"),
            (
                &[0x02, 0x02, 0x00, 0x01],
                "an INTEGER not in its shortest form",
            ),
            (
                &[0x02, 0x02, 0xff, 0x80],
                "an INTEGER not in its shortest form",
            ),
            (
                &[0x0a, 0x02, 0x00, 0x05],
                "an INTEGER not in its shortest form",
            ),
            (&[0x02, 0x00], "an INTEGER without contents"),
            (&[0x05, 0x01, 0x00], "a NULL with contents"),
            (
                &[0x06, 0x03, 0x2a, 0x80, 0x01],
                "an OBJECT IDENTIFIER not in its shortest form",
            ),
            (
                &[0x06, 0x02, 0x2a, 0x86],
                "an OBJECT IDENTIFIER not in its shortest form",
            ),
            (&[0x03, 0x00], "a BIT STRING without contents"),
            (
                &[0x03, 0x02, 0x08, 0x00],
                "a BIT STRING with over 7 unused bits",
            ),
            (&[0x03, 0x01, 0x01], "an empty BIT STRING with unused bits"),
            (
                &[0x03, 0x02, 0x07, 0xc0],
                "a BIT STRING whose unused bits are not zero",
            ),
            (
                &[0x31, 0x06, 0x02, 0x01, 0x02, 0x02, 0x01, 0x01],
                "a SET OF whose elements are not in ascending order",
            ),
            (
                &[0x04, 0x81, 0x01, 0x00],
                "a length not in its shortest form",
            ),
            (
                &[0x30, 0x82, 0x00, 0x02, 0x05, 0x00],
                "a length not in its shortest form",
            ),
            (
                &[0x30, 0x80, 0x05, 0x00, 0x00, 0x00],
                "an indefinite length (BER, not DER)",
            ),
            // Nested: the rule applies at any depth, under any tag.
            (
                &[0xa1, 0x05, 0x30, 0x03, 0x01, 0x01, 0x01],
                "a BOOLEAN other than 00 or FF",
            ),
            (&[0x05, 0x00, 0x00], "octets after the element"),
            (
                &[0x30, 0x03, 0x05, 0x00],
                "an element longer than what holds it",
            ),
            (&[0x30], "an element cut short"),
            (&[0x04, 0x82, 0x01], "an element cut short"),
            (
                &[0x04, 0x85, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00],
                "a length of more than four octets",
            ),
        ] {
            assert_eq!(verdict(der), rule, "{der:02x?}");
        }
        for time in [
            &b"\x18\x0d202606011200Z"[..],
            b"\x18\x0f20260601120000+",
            b"\x18\x1120260601120000.0Z",
            b"\x18\x1220260601120000.50Z",
            b"\x18\x1020260601120000.Z",
            b"\x18\x0f20261301120000Z",
            b"\x18\x0e2026060112000Z",
            b"\x18\x01Z",
            b"\x18\x00",
        ] {
            assert_eq!(
                verdict(time),
                "a GeneralizedTime not in the DER form",
                "{}",
                String::from_utf8_lossy(time)
            );
        }
        // What the der crate refuses: a constructed OCTET STRING, a tag number in the
        // high-number form, end-of-contents, a UTCTime without seconds.
        for der in [
            &[0x24, 0x03, 0x04, 0x01, 0x00][..],
            &[0x1f, 0x1f, 0x00],
            &[0x00, 0x00],
            b"\x17\x0b2606011200Z",
        ] {
            assert_eq!(verdict(der), "decode", "{der:02x?}");
        }
    }

    #[test]
    fn check_der_stops_at_its_depth() {
        let mut deep = vec![0x05, 0x00];
        for _ in 0..=MAX_DER_DEPTH + 1 {
            let len = Length::try_from(deep.len()).unwrap().to_der().unwrap();
            deep = [vec![0x30], len, deep].concat();
        }
        assert_eq!(verdict(&deep), "elements nested too deep");
        let mut fine = vec![0x05, 0x00];
        for _ in 0..MAX_DER_DEPTH {
            let len = Length::try_from(fine.len()).unwrap().to_der().unwrap();
            fine = [vec![0x30], len, fine].concat();
        }
        assert_eq!(verdict(&fine), "ok");
    }

    proptest::proptest! {
        /// Any bytes, and any bytes inside a GeneralizedTime, a BIT STRING or a SET: an
        /// answer, never a panic.
        #[test]
        fn check_der_never_panics(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            tag in proptest::sample::select(vec![0x01u8, 0x02, 0x03, 0x05, 0x06, 0x17, 0x18, 0x30, 0x31, 0xa1]),
        ) {
            let _ = check_der(&bytes);
            let _ = der_elements(&bytes);
            if let Ok(len) = u8::try_from(bytes.len()) {
                if len < 0x80 {
                    let _ = check_der(&[&[tag, len][..], &bytes].concat());
                }
            }
        }
    }
}
