//! The checklist, applied to one time-stamp token (a ContentInfo).

use std::sync::Arc;
use std::time::SystemTime;

use const_oid::db::rfc5911::{ID_AA_SIGNING_CERTIFICATE, ID_AA_SIGNING_CERTIFICATE_V_2};
use der::asn1::{IntRef, ObjectIdentifier};
use der::{Decode, Encode, Header, Length, Reader, SliceReader, Tag, Tagged};
use sha1::Digest;
use spki::AlgorithmIdentifierRef;
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{SubjectAltName, SubjectKeyIdentifier};
use x509_cert::serial_number::SerialNumber;
use x509_cert::Certificate;

use super::asn1::{
    check_der, der_elements, ContentInfoRef, LenientTstInfo, RevocationInfoChoice, SignedDataRef,
    SignerInfoRef, SigningCertificateV1,
};
use super::cache::{CertCache, PathCache, PathInputs};
use super::path::{check_tsa_leaf, extension, search_path, CheckTime};
use super::signature::{self, Backend};
use super::{DerProblem, Rule, TokenError, TokenOptions, ValidAt, VerifiedToken};
use crate::tsp::asn1::{IssuerSerial, SigningCertificateV2};
use crate::tsp::{decode_tst_info, oid, GenTime, HashAlgorithm};

/// CMSVersion of a SignedData whose eContentType is not id-data (RFC 5652 §5.1).
const SIGNED_DATA_V3: u8 = 3;
/// CMSVersion of a SignerInfo identified by issuerAndSerialNumber (RFC 5652 §5.3).
const SIGNER_INFO_V1: u8 = 1;
/// CMSVersion of a SignerInfo identified by subjectKeyIdentifier (RFC 5652 §5.3).
const SIGNER_INFO_V3: u8 = 3;
/// The longest serial number RFC 3161 allows, in bytes (160 bits).
const MAX_SERIAL_LEN: usize = 20;

/// How the checks are carried out (never what is checked): the signature backend, and
/// the cache of verified paths, if any.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Engine<'c> {
    /// Who does the signature arithmetic.
    pub backend: Backend,
    /// Verified certification paths, reused while they provably give the same answer.
    pub paths: Option<&'c PathCache>,
    /// Certificates already decoded and found strict DER, by their DER.
    pub certs: Option<&'c CertCache>,
}

/// Runs rules 2 to 9 on `token_der`, adding each rule that holds to `passed` (so that,
/// on a failure, it holds the rules that passed before it).
pub(super) fn verify(
    token_der: &[u8],
    opts: &TokenOptions<'_>,
    passed: &mut Vec<Rule>,
    engine: Engine<'_>,
) -> Result<VerifiedToken, TokenError> {
    let token = Structure::parse(token_der, engine.certs)?;
    if !passed.contains(&Rule::Der) {
        passed.push(Rule::Der);
    }
    passed.push(Rule::CmsStructure);

    check_message_digest(&token)?;
    passed.push(Rule::MessageDigest);

    let tst = LenientTstInfo::from_der(token.econtent)
        .map_err(|_| TokenError::TstInfo("the eContent is not a DER TSTInfo"))?;
    if tst.version.as_bytes() != [1] {
        return Err(TokenError::TstInfo("the TSTInfo version is not 1"));
    }
    let gen_time = check_gen_time(&tst)?;
    check_serial(&tst.serial_number)?;
    let tst_info = decode_tst_info(token.econtent).map_err(TokenError::TstInfoDecode)?;
    check_der(token.econtent).map_err(TokenError::TstInfoNotDer)?;
    if tst.to_der().ok().as_deref() != Some(token.econtent) {
        return Err(TokenError::TstInfoNotDer(DerProblem::Rule(
            "it does not re-encode to its own bytes (a DEFAULT written out, such as an extension's critical FALSE?)",
        )));
    }
    passed.push(Rule::TstInfo);
    passed.push(Rule::GenTime);

    let signer_at = find_signer(&token, opts.untrusted)?;
    let signer = pool_certificate(&token, opts.untrusted, signer_at)?;
    let signer_der = pool_der(&token, opts.untrusted, signer_at)?;
    passed.push(Rule::SignerBySid);

    check_signing_certificate(&token, &signer, &signer_der, opts.legacy_ess_v1)?;
    passed.push(Rule::SigningCertificate);

    check_tsa_leaf(&signer)?;
    passed.push(Rule::Eku);

    let times = check_times(opts.valid_at, gen_time.to_system_time(), opts.now);
    let pool = || -> Vec<Certificate> {
        token
            .certificates
            .iter()
            .map(|c| &**c)
            .chain(opts.untrusted)
            .cloned()
            .collect()
    };
    let chain = match engine.paths {
        None => search_path(&signer, &pool(), opts.roots, &times, engine.backend).result?,
        Some(cache) => {
            let mut pool_ders: Vec<std::borrow::Cow<'_, [u8]>> = token
                .certificate_ders
                .iter()
                .map(|d| std::borrow::Cow::Borrowed(*d))
                .collect();
            for cert in opts.untrusted {
                pool_ders.push(std::borrow::Cow::Owned(
                    cert.to_der()
                        .map_err(TokenError::der("untrusted certificate"))?,
                ));
            }
            cache.verify_path(
                &PathInputs {
                    signer: &signer,
                    signer_der: &signer_der,
                    pool: &pool,
                    pool_ders: &pool_ders,
                    roots: opts.roots,
                    times: &times,
                },
                engine.backend,
            )?
        }
    };
    passed.push(Rule::Chain);

    signature::verify(
        engine.backend,
        &signer.tbs_certificate.subject_public_key_info,
        &token.signer_info.signature_algorithm,
        Some(token.digest),
        &token.signed_attrs_der,
        token.signer_info.signature.as_bytes(),
    )
    .map_err(TokenError::Signature)?;
    passed.push(Rule::Signature);

    if let Some((hash, digest)) = opts.imprint {
        if tst_info.hash_oid != hash.oid() {
            return Err(TokenError::ImprintAlgorithm {
                expected: hash,
                found: tst_info.hash_oid,
            });
        }
        if tst_info.digest != digest {
            return Err(TokenError::ImprintDigest);
        }
        passed.push(Rule::Imprint);
    }
    if let Some(sent) = opts.nonce {
        let got = tst.nonce.ok_or(TokenError::NonceMissing)?;
        if !same_unsigned(&got, sent) {
            return Err(TokenError::NonceMismatch);
        }
        passed.push(Rule::Nonce);
    }
    if let Some(accepted) = opts.policies {
        if !accepted.contains(&tst_info.policy) {
            return Err(TokenError::PolicyNotAccepted(tst_info.policy));
        }
        passed.push(Rule::Policy);
    }
    if let Some(name) = &tst_info.tsa {
        check_tsa_name(name, &signer)?;
    }
    passed.push(Rule::TsaName);
    passed.push(Rule::Serial);
    if let Some(ext) = tst_info
        .extensions
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .find(|e| e.critical)
    {
        return Err(TokenError::CriticalExtension(ext.extn_id));
    }
    passed.push(Rule::Extensions);

    let signature_algorithm = signature::describe(
        &signer.tbs_certificate.subject_public_key_info,
        &token.signer_info.signature_algorithm,
        Some(token.digest),
    );
    Ok(VerifiedToken {
        tst_info,
        signer,
        chain,
        signature_algorithm,
        passed: passed.clone(),
    })
}

/// The parts of a token's CMS structure the rules need, checked for rule 2 but the
/// messageDigest.
struct Structure<'a> {
    econtent: &'a [u8],
    certificates: Vec<Arc<Certificate>>,
    /// The certificates' DER, as received (and checked to be their own encoding).
    certificate_ders: Vec<&'a [u8]>,
    signer_info: SignerInfoRef<'a>,
    sid: cms::signed_data::SignerIdentifier,
    digest: HashAlgorithm,
    /// The signed attributes as signed: a DER SET OF (tag 0x31).
    signed_attrs_der: Vec<u8>,
    signed_attrs: Vec<Attribute>,
}

impl<'a> Structure<'a> {
    fn parse(token_der: &'a [u8], cert_cache: Option<&CertCache>) -> Result<Self, TokenError> {
        let ci = ContentInfoRef::from_der(token_der)
            .map_err(TokenError::der("TimeStampToken (ContentInfo)"))?;
        if ci.content_type != oid::ID_SIGNED_DATA {
            return Err(TokenError::Cms("the ContentInfo is not signedData"));
        }
        let sd: SignedDataRef<'a> = ci
            .content
            .decode_as()
            .map_err(TokenError::der("SignedData"))?;
        if sd.version != SIGNED_DATA_V3 {
            return Err(TokenError::Cms("the SignedData version is not 3"));
        }
        if sd.encap_content_info.econtent_type != oid::ID_CT_TST_INFO {
            return Err(TokenError::Cms("the eContentType is not id-ct-TSTInfo"));
        }
        let econtent = sd
            .encap_content_info
            .econtent
            .ok_or(TokenError::Cms("the token has no eContent"))?
            .as_bytes();

        let signer_infos = set_elements(sd.signer_infos.contents(), "SignerInfos")?;
        let [signer_info] = signer_infos[..] else {
            return Err(TokenError::SignerInfoCount(signer_infos.len()));
        };
        let signer_info =
            SignerInfoRef::from_der(signer_info).map_err(TokenError::der("SignerInfo"))?;
        if let Some(crls) = sd.crls {
            check_crls(crls.contents())?;
        }
        if let Some(attrs) = signer_info.unsigned_attrs {
            check_unsigned_attrs(attrs.contents())?;
        }

        let sid = cms::signed_data::SignerIdentifier::from_der(signer_info.sid.as_bytes())
            .map_err(TokenError::der("SignerIdentifier"))?;
        // Its names' SETs are sorted when decoded: the octets must be DER themselves.
        check_der(signer_info.sid.as_bytes()).map_err(TokenError::not_der("sid"))?;
        let expected_version = match sid {
            cms::signed_data::SignerIdentifier::IssuerAndSerialNumber(_) => SIGNER_INFO_V1,
            cms::signed_data::SignerIdentifier::SubjectKeyIdentifier(_) => SIGNER_INFO_V3,
        };
        if signer_info.version != expected_version {
            return Err(TokenError::Cms(
                "the SignerInfo version does not match its sid (1 for issuerAndSerialNumber, 3 for subjectKeyIdentifier)",
            ));
        }

        let digest_alg = &signer_info.digest_algorithm;
        let digest = HashAlgorithm::from_oid(&digest_alg.oid)
            .ok_or(TokenError::DigestAlgorithm(digest_alg.oid))?;
        if !digest_alg.parameters.is_none_or(|p| p.is_null()) {
            return Err(TokenError::Cms(
                "the digestAlgorithm has parameters other than NULL",
            ));
        }
        let mut listed = false;
        let digest_algorithms = der_elements(sd.digest_algorithms.contents())
            .map_err(TokenError::not_der("digestAlgorithms"))?;
        check_set_order(&digest_algorithms, "digestAlgorithms")?;
        for alg in digest_algorithms {
            let alg = AlgorithmIdentifierRef::from_der(alg)
                .map_err(TokenError::der("digestAlgorithms"))?;
            listed |= alg.oid == digest_alg.oid;
        }
        if !listed {
            return Err(TokenError::Cms(
                "the SignerInfo's digestAlgorithm is not among the SignedData's digestAlgorithms",
            ));
        }

        // The certificate SET is taken in any order: OpenSSL's `ts -reply` writes it
        // unsorted (TSA-PROFILE.md), and its order is neither signed nor meaningful.
        let mut certificates = Vec::new();
        let mut certificate_ders = Vec::new();
        if let Some(set) = sd.certificates {
            for element in set_elements(set.contents(), "CertificateSet")? {
                if element.first() != Some(&0x30) {
                    return Err(TokenError::Cms(
                        "a CertificateChoices other than a plain certificate",
                    ));
                }
                let cert = match cert_cache.and_then(|c| c.get(element)) {
                    Some(known) => known,
                    None => {
                        let cert = Arc::new(
                            Certificate::from_der(element)
                                .map_err(TokenError::der("certificate"))?,
                        );
                        if cert.to_der().map_err(TokenError::der("certificate"))? != element {
                            return Err(TokenError::NotStrictDer(
                                "a certificate in the token does not re-encode to its own bytes",
                            ));
                        }
                        // What its type leaves as any element (attribute values in names,
                        // algorithm parameters).
                        check_der(element).map_err(TokenError::not_der("certificate"))?;
                        if let Some(c) = cert_cache {
                            c.insert(element, &cert);
                        }
                        cert
                    }
                };
                certificates.push(cert);
                certificate_ders.push(element);
            }
        }

        let attrs = signer_info
            .signed_attrs
            .ok_or(TokenError::Cms("the SignerInfo has no signed attributes"))?;
        let contents = attrs.contents();
        let elements = set_elements(contents, "signed attributes")?;
        if elements.is_empty() {
            return Err(TokenError::Cms("the signed attributes are empty"));
        }
        if elements.windows(2).any(|w| w[0] >= w[1]) {
            return Err(TokenError::NotStrictDer(
                "the signed attributes are not in DER SET OF order",
            ));
        }
        let mut signed_attrs: Vec<Attribute> = Vec::with_capacity(elements.len());
        for element in elements {
            let attr = Attribute::from_der(element).map_err(TokenError::der("signed attribute"))?;
            check_der(element).map_err(TokenError::not_der("signed attributes"))?;
            if signed_attrs.iter().any(|a| a.oid == attr.oid) {
                return Err(TokenError::Cms("a signed attribute appears twice"));
            }
            signed_attrs.push(attr);
        }
        let length =
            Length::try_from(contents.len()).map_err(TokenError::der("signed attributes"))?;
        let mut signed_attrs_der = Header::new(Tag::Set, length)
            .and_then(|h| h.to_der())
            .map_err(TokenError::der("signed attributes"))?;
        signed_attrs_der.extend_from_slice(contents);

        let content_type = single_value(&signed_attrs, oid::ID_CONTENT_TYPE).ok_or(
            TokenError::Cms("no single-valued contentType signed attribute"),
        )?;
        let content_type = content_type
            .decode_as::<ObjectIdentifier>()
            .map_err(|_| TokenError::Cms("the contentType attribute is not an OID"))?;
        if content_type != oid::ID_CT_TST_INFO {
            return Err(TokenError::Cms(
                "the contentType attribute is not id-ct-TSTInfo",
            ));
        }

        Ok(Structure {
            econtent,
            certificates,
            certificate_ders,
            signer_info,
            sid,
            digest,
            signed_attrs_der,
            signed_attrs,
        })
    }
}

/// The elements of a SET's contents, as their DER octets.
fn set_elements<'a>(contents: &'a [u8], what: &'static str) -> Result<Vec<&'a [u8]>, TokenError> {
    let mut reader = SliceReader::new(contents).map_err(TokenError::der(what))?;
    let mut elements = Vec::new();
    while !reader.is_finished() {
        elements.push(reader.tlv_bytes().map_err(TokenError::der(what))?);
    }
    Ok(elements)
}

/// Refuses elements of a SET OF (as their octets) that are not in ascending order
/// (X.690 §11.6).
fn check_set_order(elements: &[&[u8]], what: &'static str) -> Result<(), TokenError> {
    if elements.windows(2).any(|w| w[0] > w[1]) {
        return Err(TokenError::NotDer {
            what,
            problem: DerProblem::Rule("a SET OF whose elements are not in ascending order"),
        });
    }
    Ok(())
}

/// The SignedData's `crls` (RFC 5652 §10.2.1), which nothing here uses but which a token
/// may carry: each a CRL or other revocation information, in DER, in DER order.
fn check_crls(contents: &[u8]) -> Result<(), TokenError> {
    const WHAT: &str = "crls";
    let elements = der_elements(contents).map_err(TokenError::not_der(WHAT))?;
    check_set_order(&elements, WHAT)?;
    for element in elements {
        let choice = RevocationInfoChoice::from_der(element).map_err(TokenError::der(WHAT))?;
        if choice.to_der().map_err(TokenError::der(WHAT))? != element {
            return Err(TokenError::NotDer {
                what: WHAT,
                problem: DerProblem::Rule(
                    "an element that does not re-encode to its own bytes (a DEFAULT written out, such as an extension's critical FALSE?)",
                ),
            });
        }
    }
    Ok(())
}

/// The SignerInfo's `unsignedAttrs` (RFC 5652 §5.3, `SET SIZE (1..MAX) OF Attribute`),
/// which nothing here uses but which a token may carry (RFC 3161's
/// id-aa-signatureTimeStampToken): attributes in DER, in DER order.
fn check_unsigned_attrs(contents: &[u8]) -> Result<(), TokenError> {
    const WHAT: &str = "unsignedAttrs";
    let elements = der_elements(contents).map_err(TokenError::not_der(WHAT))?;
    if elements.is_empty() {
        return Err(TokenError::Cms(
            "the unsignedAttrs are present but empty (SET SIZE (1..MAX))",
        ));
    }
    check_set_order(&elements, WHAT)?;
    for element in elements {
        Attribute::from_der(element).map_err(TokenError::der(WHAT))?;
    }
    Ok(())
}

/// The one value of the attribute of type `oid`, if it is there with exactly one value.
fn single_value(attrs: &[Attribute], oid: ObjectIdentifier) -> Option<&der::Any> {
    let attr = attrs.iter().find(|a| a.oid == oid)?;
    match attr.values.as_slice() {
        [value] => Some(value),
        _ => None,
    }
}

fn check_message_digest(token: &Structure<'_>) -> Result<(), TokenError> {
    let value = single_value(&token.signed_attrs, oid::ID_MESSAGE_DIGEST).ok_or(
        TokenError::MessageDigest("no single-valued messageDigest signed attribute"),
    )?;
    if value.tag() != Tag::OctetString {
        return Err(TokenError::MessageDigest(
            "the messageDigest is not an OCTET STRING",
        ));
    }
    if value.value() != token.digest.digest(token.econtent) {
        return Err(TokenError::MessageDigest(
            "the messageDigest is not the digest of the eContent",
        ));
    }
    Ok(())
}

/// genTime: a GeneralizedTime in the form `tsp` reads (UTC, `Z`, fraction without trailing
/// zeros).
fn check_gen_time(tst: &LenientTstInfo<'_>) -> Result<GenTime, TokenError> {
    if tst.gen_time.tag() != Tag::GeneralizedTime {
        return Err(TokenError::GenTime("genTime is not a GeneralizedTime"));
    }
    let der = tst
        .gen_time
        .to_der()
        .map_err(|_| TokenError::GenTime("genTime does not encode"))?;
    GenTime::from_der(&der).map_err(|_| {
        TokenError::GenTime("genTime is not YYYYMMDDHHMMSS[.f]Z with a valid date and time")
    })
}

fn check_serial(serial: &IntRef<'_>) -> Result<(), TokenError> {
    let bytes = serial.as_bytes();
    if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        return Err(TokenError::Serial("the serial number is negative"));
    }
    let magnitude = strip_zeros(bytes);
    if magnitude.is_empty() {
        return Err(TokenError::Serial("the serial number is zero"));
    }
    if magnitude.len() > MAX_SERIAL_LEN {
        return Err(TokenError::Serial(
            "the serial number is longer than 160 bits",
        ));
    }
    Ok(())
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().take_while(|b| **b == 0).count();
    &bytes[start..]
}

/// Whether the INTEGER `int` is the non-negative number with big-endian bytes `unsigned`.
fn same_unsigned(int: &IntRef<'_>, unsigned: &[u8]) -> bool {
    let bytes = int.as_bytes();
    if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        return false;
    }
    strip_zeros(bytes) == strip_zeros(unsigned)
}

fn check_times(valid_at: ValidAt, gen_time: SystemTime, now: SystemTime) -> Vec<CheckTime> {
    let gen = CheckTime {
        label: "genTime",
        at: gen_time,
    };
    let now = CheckTime {
        label: "now",
        at: now,
    };
    match valid_at {
        ValidAt::GenTime => vec![gen],
        ValidAt::Now => vec![now],
        ValidAt::Both => vec![gen, now],
    }
}

/// The one certificate, among the token's and the untrusted ones, that the sid names: its
/// position in that pool (the token's first).
fn find_signer(token: &Structure<'_>, untrusted: &[Certificate]) -> Result<usize, TokenError> {
    let mut found: Vec<(usize, &Certificate)> = Vec::new();
    for (at, cert) in token
        .certificates
        .iter()
        .map(|c| &**c)
        .chain(untrusted)
        .enumerate()
    {
        if sid_matches(&token.sid, cert) && !found.iter().any(|(_, c)| *c == cert) {
            found.push((at, cert));
        }
    }
    match found[..] {
        [(at, _)] => Ok(at),
        [] => Err(TokenError::SignerNotFound),
        _ => Err(TokenError::SignerAmbiguous(found.len())),
    }
}

/// Certificate `at` of the pool (the token's certificates, then the untrusted ones).
fn pool_certificate(
    token: &Structure<'_>,
    untrusted: &[Certificate],
    at: usize,
) -> Result<Certificate, TokenError> {
    token
        .certificates
        .iter()
        .map(|c| &**c)
        .chain(untrusted)
        .nth(at)
        .cloned()
        .ok_or(TokenError::SignerNotFound)
}

/// The DER of certificate `at` of the pool: as received for the token's own.
fn pool_der(
    token: &Structure<'_>,
    untrusted: &[Certificate],
    at: usize,
) -> Result<Vec<u8>, TokenError> {
    match token.certificate_ders.get(at) {
        Some(der) => Ok(der.to_vec()),
        None => untrusted
            .get(at - token.certificate_ders.len())
            .ok_or(TokenError::SignerNotFound)?
            .to_der()
            .map_err(TokenError::der("untrusted certificate")),
    }
}

fn sid_matches(sid: &cms::signed_data::SignerIdentifier, cert: &Certificate) -> bool {
    let tbs = &cert.tbs_certificate;
    match sid {
        cms::signed_data::SignerIdentifier::IssuerAndSerialNumber(ias) => {
            ias.issuer == tbs.issuer && ias.serial_number == tbs.serial_number
        }
        cms::signed_data::SignerIdentifier::SubjectKeyIdentifier(ski) => {
            matches!(tbs.get::<SubjectKeyIdentifier>(), Ok(Some((_, own))) if own == *ski)
        }
    }
}

/// Rule 4: signingCertificateV2, or signingCertificate in legacy mode when v2 is absent;
/// its first certificate identifier names `signer`.
fn check_signing_certificate(
    token: &Structure<'_>,
    signer: &Certificate,
    signer_der: &[u8],
    legacy_ess_v1: bool,
) -> Result<(), TokenError> {
    let fail = TokenError::SigningCertificate;
    let has = |oid| token.signed_attrs.iter().any(|a| a.oid == oid);
    if has(ID_AA_SIGNING_CERTIFICATE_V_2) {
        let value = single_value(&token.signed_attrs, ID_AA_SIGNING_CERTIFICATE_V_2)
            .ok_or(fail("signingCertificateV2 does not have exactly one value"))?;
        let v2: SigningCertificateV2 = value
            .decode_as()
            .map_err(|_| fail("signingCertificateV2 does not decode"))?;
        // DER omits a DEFAULT (X.690 §11.5); the type reads hashAlgorithm as OPTIONAL.
        let sha256 = HashAlgorithm::Sha256.oid();
        if v2
            .certs
            .iter()
            .any(|id| id.hash_algorithm.as_ref().is_some_and(|a| a.oid == sha256))
        {
            return Err(fail(
                "not DER: an ESSCertIDv2 writes out its hashAlgorithm DEFAULT (SHA-256), which DER omits",
            ));
        }
        if !reencodes(&v2, value) {
            return Err(fail(
                "signingCertificateV2 is not DER (it does not re-encode to its own bytes)",
            ));
        }
        let first = v2
            .certs
            .first()
            .ok_or(fail("signingCertificateV2 lists no certificate"))?;
        let hash = match &first.hash_algorithm {
            None => HashAlgorithm::Sha256,
            Some(alg) => {
                if !alg.parameters.as_ref().is_none_or(|p| p.is_null()) {
                    return Err(fail("the ESSCertIDv2 hashAlgorithm has parameters"));
                }
                HashAlgorithm::from_oid(&alg.oid).ok_or(fail(
                    "the ESSCertIDv2 hashAlgorithm is not SHA-256, SHA-384 or SHA-512",
                ))?
            }
        };
        if first.cert_hash.as_bytes() != hash.digest(signer_der) {
            return Err(fail(
                "the ESSCertIDv2 certHash is not the hash of the signer certificate",
            ));
        }
        return check_issuer_serial(first.issuer_serial.as_ref(), signer);
    }
    if has(ID_AA_SIGNING_CERTIFICATE) {
        if !legacy_ess_v1 {
            return Err(fail(
                "only a signingCertificate (ESSCertID v1, SHA-1); accepted with legacy_ess_v1",
            ));
        }
        let value = single_value(&token.signed_attrs, ID_AA_SIGNING_CERTIFICATE)
            .ok_or(fail("signingCertificate does not have exactly one value"))?;
        let v1: SigningCertificateV1 = value
            .decode_as()
            .map_err(|_| fail("signingCertificate does not decode"))?;
        if !reencodes(&v1, value) {
            return Err(fail(
                "signingCertificate is not DER (it does not re-encode to its own bytes)",
            ));
        }
        let first = v1
            .certs
            .first()
            .ok_or(fail("signingCertificate lists no certificate"))?;
        if first.cert_hash.as_bytes() != &sha1::Sha1::digest(signer_der)[..] {
            return Err(fail(
                "the ESSCertID certHash is not the SHA-1 of the signer certificate",
            ));
        }
        return check_issuer_serial(first.issuer_serial.as_ref(), signer);
    }
    Err(fail("no signingCertificateV2 signed attribute"))
}

/// Whether `decoded`, read from `value`, encodes to the same octets: what a type whose
/// SET OFs are sorted on decoding (names) needs to be known as DER.
fn reencodes(decoded: &impl Encode, value: &der::Any) -> bool {
    matches!((decoded.to_der(), value.to_der()), (Ok(a), Ok(b)) if a == b)
}

fn check_issuer_serial(
    issuer_serial: Option<&IssuerSerial>,
    signer: &Certificate,
) -> Result<(), TokenError> {
    let Some(is) = issuer_serial else {
        return Ok(());
    };
    let tbs = &signer.tbs_certificate;
    let names_issuer = is
        .issuer
        .iter()
        .any(|n| matches!(n, GeneralName::DirectoryName(name) if *name == tbs.issuer));
    if !names_issuer {
        return Err(TokenError::SigningCertificate(
            "the issuerSerial's issuer is not the signer certificate's issuer",
        ));
    }
    if !same_serial(&is.serial_number, &tbs.serial_number) {
        return Err(TokenError::SigningCertificate(
            "the issuerSerial's serial number is not the signer certificate's",
        ));
    }
    Ok(())
}

fn same_serial(a: &SerialNumber, b: &SerialNumber) -> bool {
    a.as_bytes() == b.as_bytes()
}

/// Rule 8: `name` is the signer's subject (as a directoryName) or one of its SAN entries.
fn check_tsa_name(name: &GeneralName, signer: &Certificate) -> Result<(), TokenError> {
    let tbs = &signer.tbs_certificate;
    if matches!(name, GeneralName::DirectoryName(n) if *n == tbs.subject) {
        return Ok(());
    }
    if let Some((_, san)) = extension::<SubjectAltName>(signer)? {
        if san.0.contains(name) {
            return Ok(());
        }
    }
    Err(TokenError::TsaNameMismatch)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn serial_rules() {
        let int = |b: &'static [u8]| IntRef::new(b).unwrap();
        assert!(check_serial(&int(&[1])).is_ok());
        assert!(check_serial(&int(&[0x00, 0xff])).is_ok());
        assert!(check_serial(&int(&[0])).is_err(), "zero");
        assert!(check_serial(&int(&[0xff])).is_err(), "negative");
        let mut max = vec![0x00];
        max.extend([0xff; 20]);
        assert!(
            check_serial(&IntRef::new(&max).unwrap()).is_ok(),
            "160 bits"
        );
        let mut over = vec![0x01];
        over.extend([0x00; 20]);
        assert!(
            check_serial(&IntRef::new(&over).unwrap()).is_err(),
            "161 bits"
        );
    }

    #[test]
    fn nonces_compare_as_unsigned_numbers() {
        let int = |b: &'static [u8]| IntRef::new(b).unwrap();
        assert!(same_unsigned(&int(&[0x00, 0x80]), &[0x80]));
        assert!(same_unsigned(&int(&[0x00, 0x80]), &[0x00, 0x00, 0x80]));
        assert!(same_unsigned(&int(&[0x05]), &[0x05]));
        assert!(!same_unsigned(&int(&[0x05]), &[0x06]));
        assert!(!same_unsigned(&int(&[0x80]), &[0x80]), "a negative nonce");
        assert!(same_unsigned(&int(&[0x00]), &[]));
    }

    #[test]
    fn set_elements_splits_and_refuses_garbage() {
        assert_eq!(
            set_elements(&[0x02, 0x01, 0x05, 0x04, 0x00], "x").unwrap(),
            [&[0x02, 0x01, 0x05][..], &[0x04, 0x00]]
        );
        assert!(set_elements(&[0x02, 0x02, 0x05], "x").is_err());
        assert!(set_elements(&[], "x").unwrap().is_empty());
    }
}
