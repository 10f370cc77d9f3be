//! The DER types of RFC 3161, RFC 5652 and RFC 5035 that this module reads and writes.
//!
//! Each type opens with its ASN.1 and is its own encoder (derived with `der`). Three small
//! building blocks let the token path reuse what was encoded once at startup instead of
//! encoding it again for every token: [`Tlv`] (a complete element encoded earlier),
//! [`SetValue`] (the contents of a SET encoded and sorted earlier) and [`One`] (a SET OF with
//! exactly one element).

use core::cmp::Ordering;

use der::asn1::{
    AnyRef, BitStringRef, IntRef, ObjectIdentifier, OctetString, OctetStringRef, UintRef,
    Utf8StringRef,
};
use der::{
    Decode, DecodeValue, DerOrd, Encode, EncodeValue, FixedTag, Header, Length, Reader, Sequence,
    SliceReader, Tag, Writer,
};
use spki::{AlgorithmIdentifierOwned, AlgorithmIdentifierRef};
use x509_cert::ext::pkix::certpolicy::PolicyInformation;
use x509_cert::ext::pkix::name::{GeneralName, GeneralNames};
use x509_cert::ext::Extensions;
use x509_cert::serial_number::SerialNumber;

pub(crate) use super::time::AccuracyDer;
use super::time::GenTime;

// ---------------------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------------------

/// A complete DER element (tag, length and value) that one of this module's types encoded
/// earlier, written out verbatim.
///
/// Elements are ordered by their octets, which is the order X.690 §11.6 prescribes for the
/// elements of a `SET OF` (two distinct DER elements are never a prefix of one another, so
/// plain lexicographic order equals the standard's zero-padded comparison).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tlv<'a>(&'a [u8]);

impl<'a> Tlv<'a> {
    /// Checks that `bytes` is exactly one DER element: a valid header whose length covers
    /// the rest, and nothing after it.
    pub(crate) fn new(bytes: &'a [u8]) -> der::Result<Self> {
        let mut reader = SliceReader::new(bytes)?;
        let tlv = reader.tlv_bytes()?;
        reader.finish(Tlv(tlv))
    }

    /// The element's octets.
    pub(crate) fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

impl Encode for Tlv<'_> {
    fn encoded_len(&self) -> der::Result<Length> {
        Length::try_from(self.0.len())
    }

    fn encode(&self, writer: &mut impl Writer) -> der::Result<()> {
        writer.write(self.0)
    }
}

impl<'a> Decode<'a> for Tlv<'a> {
    fn decode<R: Reader<'a>>(reader: &mut R) -> der::Result<Self> {
        reader.tlv_bytes().map(Tlv)
    }
}

impl DerOrd for Tlv<'_> {
    fn der_cmp(&self, other: &Self) -> der::Result<Ordering> {
        Ok(self.0.cmp(other.0))
    }
}

/// The contents octets of a `SET` whose elements were encoded, and sorted, earlier.
///
/// Its tag is `SET`; as an `[n] IMPLICIT` field it is written as `[n]` constructed with the
/// same contents, which is how CMS carries `certificates` and `signedAttrs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SetValue<'a>(&'a [u8]);

impl<'a> SetValue<'a> {
    /// The contents octets.
    pub(crate) fn contents(&self) -> &'a [u8] {
        self.0
    }
}

impl EncodeValue for SetValue<'_> {
    fn value_len(&self) -> der::Result<Length> {
        Length::try_from(self.0.len())
    }

    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        writer.write(self.0)
    }
}

impl<'a> DecodeValue<'a> for SetValue<'a> {
    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        reader.read_slice(header.length).map(SetValue)
    }
}

impl FixedTag for SetValue<'_> {
    const TAG: Tag = Tag::Set;
}

/// A `SET OF` with exactly one element (trivially in DER order). Decoding refuses a set
/// with no element or with more than one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct One<T>(pub T);

impl<T: Encode> EncodeValue for One<T> {
    fn value_len(&self) -> der::Result<Length> {
        self.0.encoded_len()
    }

    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        self.0.encode(writer)
    }
}

impl<'a, T: Decode<'a>> DecodeValue<'a> for One<T> {
    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        reader.read_nested(header.length, |r| T::decode(r)).map(One)
    }
}

impl<T> FixedTag for One<T> {
    const TAG: Tag = Tag::Set;
}

// ---------------------------------------------------------------------------------------
// RFC 3161: requests
// ---------------------------------------------------------------------------------------

/// The time-stamp request (RFC 3161 §2.4.1).
///
/// ```text
/// TimeStampReq ::= SEQUENCE  {
///    version                  INTEGER  { v1(1) },
///    messageImprint           MessageImprint,
///    reqPolicy                TSAPolicyId              OPTIONAL,
///    nonce                    INTEGER                  OPTIONAL,
///    certReq                  BOOLEAN                  DEFAULT FALSE,
///    extensions               [0] IMPLICIT Extensions  OPTIONAL  }
///
/// TSAPolicyId ::= OBJECT IDENTIFIER
/// ```
///
/// `version` is read as any INTEGER so that a wrong version is told apart (badRequest) from
/// a body that is not a request at all (badDataFormat). `certReq` is read as OPTIONAL so
/// that an explicitly encoded FALSE, which DER forbids, can be refused.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct TimeStampReq<'a> {
    pub version: IntRef<'a>,
    pub message_imprint: MessageImprint<'a>,
    #[asn1(optional = "true")]
    pub req_policy: Option<ObjectIdentifier>,
    #[asn1(optional = "true")]
    pub nonce: Option<IntRef<'a>>,
    #[asn1(optional = "true")]
    pub cert_req: Option<bool>,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    pub extensions: Option<Extensions>,
}

/// The hash of the time-stamped data (RFC 3161 §2.4.1).
///
/// ```text
/// MessageImprint ::= SEQUENCE  {
///    hashAlgorithm                AlgorithmIdentifier,
///    hashedMessage                OCTET STRING  }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct MessageImprint<'a> {
    pub hash_algorithm: AlgorithmIdentifierRef<'a>,
    pub hashed_message: OctetStringRef<'a>,
}

// ---------------------------------------------------------------------------------------
// RFC 3161: TSTInfo
// ---------------------------------------------------------------------------------------

/// The time-stamped content (RFC 3161 §2.4.2).
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
/// `serialNumber` is read as a non-negative INTEGER of any size (RFC 3161: up to 160 bits);
/// `genTime` with millisecond precision ([`GenTime`]); `ordering` as OPTIONAL so that an
/// explicit FALSE can be refused; `tsa` is `[0] EXPLICIT` because GeneralName is a CHOICE.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct TstInfo<'a> {
    pub version: u8,
    pub policy: ObjectIdentifier,
    pub message_imprint: MessageImprint<'a>,
    pub serial_number: UintRef<'a>,
    pub gen_time: GenTime,
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

// ---------------------------------------------------------------------------------------
// RFC 3161: responses
// ---------------------------------------------------------------------------------------

/// The response to a time-stamp request (RFC 3161 §2.4.2), as this module writes it: the
/// token, when present, is the SignedData built from a [`TokenTemplate`](super::TokenTemplate).
///
/// ```text
/// TimeStampResp ::= SEQUENCE  {
///    status                  PKIStatusInfo,
///    timeStampToken          TimeStampToken     OPTIONAL  }
///
/// TimeStampToken ::= ContentInfo
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct TimeStampResp<'a> {
    pub status: PkiStatusInfo<'a>,
    #[asn1(optional = "true")]
    pub time_stamp_token: Option<SignedContentInfo<'a>>,
}

/// [`TimeStampResp`] as this module reads any response: the token is kept as an element of
/// any kind, to be checked and decoded separately.
///
/// ```text
/// TimeStampResp ::= SEQUENCE  {
///    status                  PKIStatusInfo,
///    timeStampToken          TimeStampToken     OPTIONAL  }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct AnyTimeStampResp<'a> {
    pub status: PkiStatusInfo<'a>,
    #[asn1(optional = "true")]
    pub time_stamp_token: Option<AnyRef<'a>>,
}

/// The status of a response (RFC 3161 §2.4.2, from RFC 4210).
///
/// ```text
/// PKIStatusInfo ::= SEQUENCE {
///    status        PKIStatus,
///    statusString  PKIFreeText     OPTIONAL,
///    failInfo      PKIFailureInfo  OPTIONAL  }
///
/// PKIStatus ::= INTEGER {
///    granted                (0),
///    grantedWithMods        (1),
///    rejection              (2),
///    waiting                (3),
///    revocationWarning      (4),
///    revocationNotification (5) }
///
/// PKIFreeText ::= SEQUENCE SIZE (1..MAX) OF UTF8String
///
/// PKIFailureInfo ::= BIT STRING {
///    badAlg               (0),
///    badRequest           (2),
///    badDataFormat        (5),
///    timeNotAvailable     (14),
///    unacceptedPolicy     (15),
///    unacceptedExtension  (16),
///    addInfoNotAvailable  (17),
///    systemFailure        (25) }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct PkiStatusInfo<'a> {
    pub status: u8,
    #[asn1(optional = "true")]
    pub status_string: Option<Vec<Utf8StringRef<'a>>>,
    #[asn1(optional = "true")]
    pub fail_info: Option<BitStringRef<'a>>,
}

// ---------------------------------------------------------------------------------------
// RFC 5652: the CMS SignedData of a token, as this module writes it
//
// The verifier reads tokens with its own `SignedDataRef` and `SignerInfoRef`
// (verify/asn1.rs): these writer types carry the startup-encoded parts as finished elements
// and only the fields written here, while a reader must accept every OPTIONAL field and keep
// what was signed as the received octets. The module doc of verify/asn1.rs says more.
// ---------------------------------------------------------------------------------------

/// A CMS ContentInfo holding a SignedData (RFC 5652 §3).
///
/// ```text
/// ContentInfo ::= SEQUENCE {
///    contentType ContentType,
///    content [0] EXPLICIT ANY DEFINED BY contentType }
///
/// ContentType ::= OBJECT IDENTIFIER
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct SignedContentInfo<'a> {
    pub content_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    pub content: SignedData<'a>,
}

/// The signed-data content type (RFC 5652 §5.1), with the parts that are the same for every
/// token encoded once, at startup.
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
/// `crls` is never written; `certificates` is the DER-sorted set encoded at startup;
/// `signerInfos` has exactly one element.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct SignedData<'a> {
    pub version: u8,
    /// A `DigestAlgorithmIdentifiers` SET, encoded at startup.
    pub digest_algorithms: Tlv<'a>,
    pub encap_content_info: EncapsulatedContentInfo<'a>,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    pub certificates: Option<SetValue<'a>>,
    pub signer_infos: One<SignerInfo<'a>>,
}

/// The signed content and its type (RFC 5652 §5.2).
///
/// ```text
/// EncapsulatedContentInfo ::= SEQUENCE {
///    eContentType ContentType,
///    eContent [0] EXPLICIT OCTET STRING OPTIONAL }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct EncapsulatedContentInfo<'a> {
    pub econtent_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub econtent: Option<OctetStringRef<'a>>,
}

/// One signer (RFC 5652 §5.3), with the parts that are the same for every token encoded
/// once, at startup.
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
///
/// SignedAttributes ::= SET SIZE (1..MAX) OF Attribute
/// SignatureValue ::= OCTET STRING
/// ```
///
/// `signedAttrs` is always present (a token needs them); `unsignedAttrs` is never written.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct SignerInfo<'a> {
    pub version: u8,
    /// An `IssuerAndSerialNumber`, encoded at startup.
    pub sid: Tlv<'a>,
    /// An `AlgorithmIdentifier`, encoded at startup.
    pub digest_algorithm: Tlv<'a>,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    pub signed_attrs: SetValue<'a>,
    /// An `AlgorithmIdentifier`, encoded at startup.
    pub signature_algorithm: Tlv<'a>,
    pub signature: OctetStringRef<'a>,
}

/// A signed attribute with its single value (RFC 5652 §5.3; contentType, messageDigest and
/// signingCertificateV2 each have exactly one value).
///
/// ```text
/// Attribute ::= SEQUENCE {
///    attrType OBJECT IDENTIFIER,
///    attrValues SET OF AttributeValue }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct Attribute<'a> {
    pub attr_type: ObjectIdentifier,
    /// The one value, encoded beforehand.
    pub attr_values: One<Tlv<'a>>,
}

// ---------------------------------------------------------------------------------------
// RFC 5035 / RFC 5816: the signing certificate attribute
// ---------------------------------------------------------------------------------------

/// The signingCertificateV2 attribute value (RFC 5035 §3; RFC 5816 for time-stamp tokens).
///
/// ```text
/// SigningCertificateV2 ::=  SEQUENCE {
///    certs        SEQUENCE OF ESSCertIDv2,
///    policies     SEQUENCE OF PolicyInformation OPTIONAL }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct SigningCertificateV2 {
    pub certs: Vec<EssCertIdV2>,
    #[asn1(optional = "true")]
    pub policies: Option<Vec<PolicyInformation>>,
}

/// The identifier of one certificate (RFC 5035 §4).
///
/// ```text
/// ESSCertIDv2 ::=  SEQUENCE {
///    hashAlgorithm           AlgorithmIdentifier
///                            DEFAULT {algorithm id-sha256},
///    certHash                Hash,
///    issuerSerial            IssuerSerial OPTIONAL }
///
/// Hash ::= OCTET STRING
/// ```
///
/// `hashAlgorithm` is read as OPTIONAL: absent means SHA-256, and this module always omits
/// it (the DER form of the default).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct EssCertIdV2 {
    #[asn1(optional = "true")]
    pub hash_algorithm: Option<AlgorithmIdentifierOwned>,
    pub cert_hash: OctetString,
    #[asn1(optional = "true")]
    pub issuer_serial: Option<IssuerSerial>,
}

/// The issuer and serial number of a certificate (RFC 5035 §4).
///
/// ```text
/// IssuerSerial ::= SEQUENCE {
///    issuer                   GeneralNames,
///    serialNumber             CertificateSerialNumber }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct IssuerSerial {
    pub issuer: GeneralNames,
    pub serial_number: SerialNumber,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use der::asn1::SetOfVec;

    #[test]
    fn tlv_accepts_exactly_one_element() {
        assert!(Tlv::new(&[0x02, 0x01, 0x05]).is_ok());
        assert!(
            Tlv::new(&[0x02, 0x01, 0x05, 0x00]).is_err(),
            "trailing byte"
        );
        assert!(Tlv::new(&[0x02, 0x02, 0x05]).is_err(), "short");
        assert!(
            Tlv::new(&[0x02, 0x81, 0x01, 0x05]).is_err(),
            "non-minimal length"
        );
        assert!(Tlv::new(&[]).is_err());
    }

    #[test]
    fn set_of_tlv_sorts_by_octets_and_refuses_duplicates() {
        // Longer first by value but shorter by header: X.690 compares the octets.
        let a = [0x04, 0x02, 0x00, 0x01];
        let b = [0x04, 0x01, 0xff];
        let c = [0x02, 0x01, 0x7f];
        let set = SetOfVec::try_from(vec![
            Tlv::new(&a).unwrap(),
            Tlv::new(&b).unwrap(),
            Tlv::new(&c).unwrap(),
        ])
        .unwrap();
        assert_eq!(
            set.to_der().unwrap(),
            [0x31, 0x0a, 0x02, 0x01, 0x7f, 0x04, 0x01, 0xff, 0x04, 0x02, 0x00, 0x01]
        );
        assert!(SetOfVec::try_from(vec![Tlv::new(&a).unwrap(), Tlv::new(&a).unwrap()]).is_err());
    }

    #[test]
    fn one_is_a_set_of_exactly_one() {
        let one = One(5u8);
        let der = one.to_der().unwrap();
        assert_eq!(der, [0x31, 0x03, 0x02, 0x01, 0x05]);
        assert_eq!(One::<u8>::from_der(&der).unwrap(), one);
        assert!(One::<u8>::from_der(&[0x31, 0x00]).is_err());
        assert!(One::<u8>::from_der(&[0x31, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x06]).is_err());
    }

    #[test]
    fn set_value_as_implicit_field_becomes_constructed_context_tag() {
        let contents = [0x02, 0x01, 0x05];
        let set = SetValue(&contents);
        let der = der::asn1::ContextSpecificRef {
            tag_number: der::TagNumber::N0,
            tag_mode: der::TagMode::Implicit,
            value: &set,
        }
        .to_der()
        .unwrap();
        assert_eq!(der, [0xa0, 0x03, 0x02, 0x01, 0x05]);
        assert_eq!(
            SetValue::from_der(&[0x31, 0x03, 0x02, 0x01, 0x05]).unwrap(),
            set
        );
        assert_eq!(set.contents(), contents);
    }
}
