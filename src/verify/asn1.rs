//! The DER types a verifier reads: the CMS SignedData of any time-stamp token (not only the
//! ones `tsp` writes), a TSTInfo read leniently enough that each checklist rule can be told
//! apart, and the ESS v1 signing certificate attribute.
//!
//! Every part that is signed or hashed is kept as the octets that were received
//! ([`SetValue`], [`Tlv`]), never re-encoded: a verifier must check the bytes the signer
//! signed.

use der::asn1::{AnyRef, IntRef, ObjectIdentifier, OctetString, OctetStringRef};
use der::Sequence;
use spki::AlgorithmIdentifierRef;
use x509_cert::ext::pkix::certpolicy::PolicyInformation;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::Extensions;

use crate::tsp::asn1::{AccuracyDer, IssuerSerial, MessageImprint, SetValue, Tlv};

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
    pub encap_content_info: EncapsulatedContentInfoRef<'a>,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    pub certificates: Option<SetValue<'a>>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    pub crls: Option<SetValue<'a>>,
    pub signer_infos: SetValue<'a>,
}

/// The signed content and its type (RFC 5652 §5.2).
///
/// ```text
/// EncapsulatedContentInfo ::= SEQUENCE {
///    eContentType ContentType,
///    eContent [0] EXPLICIT OCTET STRING OPTIONAL }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(super) struct EncapsulatedContentInfoRef<'a> {
    pub econtent_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub econtent: Option<OctetStringRef<'a>>,
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
