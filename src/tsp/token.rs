//! Time-stamp tokens: the CMS SignedData around a TSTInfo, assembled around a signature
//! made elsewhere (the HSM).

use core::fmt;

use const_oid::AssociatedOid;
use der::asn1::{ObjectIdentifier, OctetString, OctetStringRef, SetOf, SetOfVec};
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, SubjectKeyIdentifier};
use x509_cert::name::Name;
use x509_cert::Certificate;

use super::asn1::{
    Attribute, EncapsulatedContentInfo, EssCertIdV2, IssuerSerial, One, PkiStatusInfo, SetValue,
    SignedContentInfo, SignedData, SignerInfo, SigningCertificateV2, TimeStampResp, Tlv,
};
use super::status::STATUS_GRANTED;
use super::{oid, HashAlgorithm, TspError};

/// CMSVersion of a SignedData whose eContentType is not id-data (RFC 5652 §5.1).
const SIGNED_DATA_V3: u8 = 3;
/// CMSVersion of a SignerInfo identified by issuerAndSerialNumber (RFC 5652 §5.3).
const SIGNER_INFO_V1: u8 = 1;
/// Room for the messageDigest attribute of the longest digest (81 bytes for SHA-512).
const MESSAGE_DIGEST_ATTR_MAX: usize = 96;

/// Everything about the signing identity that is the same for every token, encoded once at
/// startup: per token only the TSTInfo, the messageDigest attribute and the signature are
/// encoded.
///
/// A token is made in three steps, the signature in the middle made elsewhere:
/// [`encode_tst_info`](super::encode_tst_info), then [`signed_attributes`](Self::signed_attributes)
/// (the bytes to sign), then [`granted_response`](Self::granted_response).
#[derive(Clone)]
pub struct TokenTemplate {
    digest: HashAlgorithm,
    subject: Name,
    /// The signer certificate, then the chain, each once.
    certificates: Vec<Certificate>,
    /// `CertificateSet`: the signer certificate and the chain without self-signed roots,
    /// as a DER SET OF (sorted).
    certificate_set: Vec<u8>,
    /// `DigestAlgorithmIdentifiers`: a SET OF with the one digest algorithm.
    digest_algorithms: Vec<u8>,
    /// The SignerInfo's `digestAlgorithm`.
    digest_algorithm: Vec<u8>,
    /// The SignerInfo's `sid`: the signer certificate's IssuerAndSerialNumber.
    sid: Vec<u8>,
    /// The SignerInfo's `signatureAlgorithm`.
    signature_algorithm: Vec<u8>,
    /// The contentType signed attribute (id-ct-TSTInfo).
    content_type_attr: Vec<u8>,
    /// The signingCertificateV2 signed attribute.
    signing_certificate_attr: Vec<u8>,
}

impl TokenTemplate {
    /// Prepares the tokens of one signing identity.
    ///
    /// `signer_cert` is the TSA certificate. `chain` holds its intermediates and possibly
    /// the root, in any order; the signer certificate and duplicates in it are ignored.
    /// `digest` is the algorithm of the CMS messageDigest and digestAlgorithm (SHA-256 for
    /// ECDSA P-256 and RSA, SHA-384 for P-384). `signature_algorithm` is the SignerInfo's
    /// signatureAlgorithm exactly as it is to be written (e.g. ecdsa-with-SHA256 with
    /// absent parameters, sha256WithRSAEncryption with NULL parameters).
    ///
    /// A chain certificate is left out of tokens when it is self-signed: subject equal to
    /// issuer and, when it has both, subject key identifier equal to authority key
    /// identifier. The signer certificate is always in them.
    pub fn new(
        signer_cert: &Certificate,
        chain: &[Certificate],
        digest: HashAlgorithm,
        signature_algorithm: AlgorithmIdentifierOwned,
    ) -> Result<Self, TspError> {
        let tbs = &signer_cert.tbs_certificate;
        let signer_der = signer_cert.to_der()?;

        let mut certificates = vec![signer_cert.clone()];
        let mut ders = vec![signer_der.clone()];
        for cert in chain {
            let der = cert.to_der()?;
            if !ders.contains(&der) {
                ders.push(der);
                certificates.push(cert.clone());
            }
        }
        let in_tokens = ders
            .iter()
            .zip(&certificates)
            .enumerate()
            .filter(|(i, (_, cert))| *i == 0 || !is_self_signed(cert))
            .map(|(_, (der, _))| Tlv::new(der))
            .collect::<Result<Vec<_>, _>>()?;
        // SetOfVec sorts its elements by their DER octets.
        let certificate_set = SetOfVec::try_from(in_tokens)?.to_der()?;

        let digest_algorithm = digest.identifier_absent_params().to_der()?;
        let digest_algorithms = One(digest.identifier_absent_params()).to_der()?;
        let sid = cms::cert::IssuerAndSerialNumber {
            issuer: tbs.issuer.clone(),
            serial_number: tbs.serial_number.clone(),
        }
        .to_der()?;

        let content_type = oid::ID_CT_TST_INFO.to_der()?;
        let content_type_attr = encode_attribute(oid::ID_CONTENT_TYPE, &content_type)?;

        // RFC 5816: ESSCertIDv2 with the default hash (SHA-256, so hashAlgorithm is
        // omitted) over the signer certificate, and its issuer and serial number.
        let signing_certificate = SigningCertificateV2 {
            certs: vec![EssCertIdV2 {
                hash_algorithm: None,
                cert_hash: OctetString::new(HashAlgorithm::Sha256.digest(&signer_der))?,
                issuer_serial: Some(IssuerSerial {
                    issuer: vec![GeneralName::DirectoryName(tbs.issuer.clone())],
                    serial_number: tbs.serial_number.clone(),
                }),
            }],
            policies: None,
        }
        .to_der()?;
        let signing_certificate_attr =
            encode_attribute(oid::ID_AA_SIGNING_CERTIFICATE_V2, &signing_certificate)?;

        Ok(TokenTemplate {
            digest,
            subject: tbs.subject.clone(),
            certificates,
            certificate_set,
            digest_algorithms,
            digest_algorithm,
            sid,
            signature_algorithm: signature_algorithm.to_der()?,
            content_type_attr,
            signing_certificate_attr,
        })
    }

    /// The DER of the signed attributes as a SET OF Attribute (tag `0x31`), in DER order:
    /// contentType = id-ct-TSTInfo, messageDigest = the digest of `tst_info_der`, and
    /// signingCertificateV2 = one ESSCertIDv2 (SHA-256 of the signer certificate, with its
    /// issuer as a directoryName and its serial number). This is exactly what the signer
    /// signs.
    pub fn signed_attributes(&self, tst_info_der: &[u8]) -> Result<Vec<u8>, TspError> {
        let digest = self.digest.digest(tst_info_der);
        let mut value_buf = [0u8; HashAlgorithm::MAX_OUTPUT_LEN + 2];
        let value = OctetStringRef::new(&digest)?.encode_to_slice(&mut value_buf)?;
        let mut attr_buf = [0u8; MESSAGE_DIGEST_ATTR_MAX];
        let message_digest_attr = Attribute {
            attr_type: oid::ID_MESSAGE_DIGEST,
            attr_values: One(Tlv::new(value)?),
        }
        .encode_to_slice(&mut attr_buf)?;
        // SetOf sorts its elements by their DER octets.
        let set = SetOf::try_from([
            Tlv::new(&self.content_type_attr)?,
            Tlv::new(message_digest_attr)?,
            Tlv::new(&self.signing_certificate_attr)?,
        ])?;
        Ok(set.to_der()?)
    }

    /// A complete granted TimeStampResp (status granted, no statusString) whose token is a
    /// ContentInfo holding a SignedData: version 3; digestAlgorithms the one digest;
    /// encapContentInfo id-ct-TSTInfo with `tst_info_der`; certificates, only when
    /// `include_certs`, the signer certificate and the chain without self-signed roots as a
    /// DER-sorted SET OF; exactly one SignerInfo (version 1, sid issuerAndSerialNumber,
    /// signedAttrs the `[0] IMPLICIT` form of `signed_attrs_der`, the signature algorithm
    /// given at construction, `signature`).
    ///
    /// Refuses signed attributes other than those [`signed_attributes`](Self::signed_attributes)
    /// returns for `tst_info_der` (a token whose messageDigest does not match its content
    /// would never verify), a `tst_info_der` that is not one DER element and an empty
    /// signature.
    pub fn granted_response(
        &self,
        tst_info_der: &[u8],
        signed_attrs_der: &[u8],
        signature: &[u8],
        include_certs: bool,
    ) -> Result<Vec<u8>, TspError> {
        Tlv::new(tst_info_der)?;
        if self.signed_attributes(tst_info_der)? != signed_attrs_der {
            return Err(TspError::SignedAttributesMismatch);
        }
        if signature.is_empty() {
            return Err(TspError::Malformed("empty signature"));
        }
        let certificates = if include_certs {
            Some(SetValue::from_der(&self.certificate_set)?)
        } else {
            None
        };
        let response = TimeStampResp {
            status: PkiStatusInfo {
                status: STATUS_GRANTED,
                status_string: None,
                fail_info: None,
            },
            time_stamp_token: Some(SignedContentInfo {
                content_type: oid::ID_SIGNED_DATA,
                content: SignedData {
                    version: SIGNED_DATA_V3,
                    digest_algorithms: Tlv::new(&self.digest_algorithms)?,
                    encap_content_info: EncapsulatedContentInfo {
                        econtent_type: oid::ID_CT_TST_INFO,
                        econtent: Some(OctetStringRef::new(tst_info_der)?),
                    },
                    certificates,
                    signer_infos: One(SignerInfo {
                        version: SIGNER_INFO_V1,
                        sid: Tlv::new(&self.sid)?,
                        digest_algorithm: Tlv::new(&self.digest_algorithm)?,
                        signed_attrs: SetValue::from_der(signed_attrs_der)?,
                        signature_algorithm: Tlv::new(&self.signature_algorithm)?,
                        signature: OctetStringRef::new(signature)?,
                    }),
                },
            }),
        };
        Ok(response.to_der()?)
    }

    /// The signer certificate followed by the whole chain, root included, each once (for
    /// `GET /tsa/certs`).
    pub fn certificates(&self) -> &[Certificate] {
        &self.certificates
    }

    /// The signer certificate.
    pub fn signer_certificate(&self) -> &Certificate {
        // `new` always puts the signer certificate first.
        &self.certificates[0]
    }

    /// The TSA's subject name (for the TSTInfo's `tsa` field).
    pub fn subject(&self) -> &Name {
        &self.subject
    }

    /// The algorithm of the CMS messageDigest.
    pub fn digest(&self) -> HashAlgorithm {
        self.digest
    }
}

impl fmt::Debug for TokenTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenTemplate")
            .field("subject", &self.subject.to_string())
            .field("digest", &self.digest)
            .field("certificates", &self.certificates.len())
            .finish_non_exhaustive()
    }
}

/// The DER of an Attribute with one value, `value_der`.
fn encode_attribute(attr_type: ObjectIdentifier, value_der: &[u8]) -> Result<Vec<u8>, TspError> {
    Ok(Attribute {
        attr_type,
        attr_values: One(Tlv::new(value_der)?),
    }
    .to_der()?)
}

/// A root: subject equal to issuer and, when both key identifiers are present, the
/// subject key identifier equal to the authority key identifier (a self-issued certificate
/// of a key rollover is signed by another key and is not a root).
pub(crate) fn is_self_signed(cert: &Certificate) -> bool {
    let tbs = &cert.tbs_certificate;
    if tbs.subject != tbs.issuer {
        return false;
    }
    let ski = extension::<SubjectKeyIdentifier>(cert);
    let aki = extension::<AuthorityKeyIdentifier>(cert).and_then(|a| a.key_identifier);
    match (ski, aki) {
        (Some(ski), Some(aki)) => ski.0 == aki,
        _ => true,
    }
}

/// The certificate's extension of type `T`, if present and readable.
fn extension<T: AssociatedOid + for<'a> Decode<'a>>(cert: &Certificate) -> Option<T> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == T::OID)
        .and_then(|e| T::from_der(e.extn_value.as_bytes()).ok())
}
