//! The token verifier (`auditstamp::verify`) against golden tokens of `openssl ts -reply`
//! (tests/vectors/verify/, see its README), against tokens built in-process the way the
//! appliance builds them (`tsp::TokenTemplate` around a software signature), and against
//! one broken token per checklist rule, each asserting the rule that failed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auditstamp::tsp::{
    decode_response_status, encode_tst_info, Accuracy, FailureInfo, GenTime, HashAlgorithm,
    TokenTemplate, TstParams,
};
use auditstamp::verify::{
    verify_any, verify_response, verify_token, Rule, SignatureProblem, TokenError, TokenOptions,
    ValidAt, VerifiedToken,
};
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo, SignerInfos};
use const_oid::ObjectIdentifier;
use der::asn1::{AnyRef, Int, OctetString, SetOfVec};
use der::{Any, Decode, DecodePem, Encode, EncodePem, Header, Length, Reader, SliceReader, Tag};
use signature::{SignatureEncoding, Signer};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::name::Name;
use x509_cert::Certificate;

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

macro_rules! vector {
    ($name:literal) => {
        &include_bytes!(concat!("vectors/verify/", $name))[..]
    };
}

macro_rules! cert {
    ($name:literal) => {
        Certificate::from_pem(include_bytes!(concat!("vectors/verify/", $name))).unwrap()
    };
}

const POLICY: &str = "1.3.6.1.4.1.99999.1.1";
const OTHER_POLICY: &str = "1.3.6.1.4.1.99999.1.2";

/// 2030-01-01T00:00:00Z: every test certificate but the expired one is valid then.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_893_456_000)
}

fn roots() -> Vec<Certificate> {
    vec![cert!("root-ca.pem")]
}

fn policies() -> Vec<ObjectIdentifier> {
    vec![POLICY.parse().unwrap(), OTHER_POLICY.parse().unwrap()]
}

fn data_digest() -> Vec<u8> {
    HashAlgorithm::Sha256.digest(vector!("data.txt"))
}

/// The nonce of an `openssl ts -query` request, as unsigned big-endian bytes.
fn nonce_of(request: &[u8]) -> Vec<u8> {
    let req = x509_tsp::TimeStampReq::from_der(request).unwrap();
    let bytes = req.nonce.unwrap().as_bytes().to_vec();
    bytes.into_iter().skip_while(|b| *b == 0).collect()
}

/// Everything the data center knows, strict: imprint, nonce, policy, path valid at genTime
/// and now.
struct Expect {
    roots: Vec<Certificate>,
    untrusted: Vec<Certificate>,
    digest: Vec<u8>,
    nonce: Option<Vec<u8>>,
    policies: Vec<ObjectIdentifier>,
}

impl Expect {
    fn for_request(request: &[u8]) -> Self {
        Expect {
            roots: roots(),
            untrusted: Vec::new(),
            digest: data_digest(),
            nonce: Some(nonce_of(request)),
            policies: policies(),
        }
    }

    fn without_nonce() -> Self {
        Expect {
            nonce: None,
            ..Expect::for_request(vector!("req-cert.tsq"))
        }
    }

    fn opts(&self) -> TokenOptions<'_> {
        TokenOptions {
            roots: &self.roots,
            untrusted: &self.untrusted,
            imprint: Some((HashAlgorithm::Sha256, &self.digest)),
            nonce: self.nonce.as_deref(),
            policies: Some(&self.policies),
            valid_at: ValidAt::Both,
            allow_granted_with_mods: false,
            legacy_ess_v1: false,
            now: now(),
        }
    }
}

fn ok(r: Result<VerifiedToken, TokenError>) -> VerifiedToken {
    match r {
        Ok(v) => v,
        Err(e) => panic!("expected a verified token, got [{}] {e}", e.rule()),
    }
}

/// Asserts that `r` failed on `rule`; returns the error.
#[track_caller]
fn fails(r: Result<VerifiedToken, TokenError>, rule: Rule) -> TokenError {
    match r {
        Ok(_) => panic!("expected a failure of {rule}, but the token verified"),
        Err(e) => {
            // Shown with --nocapture: what each refusal says.
            eprintln!("refused as expected: {e}");
            assert_eq!(e.rule(), rule, "{e}");
            e
        }
    }
}

fn every_rule() -> Vec<Rule> {
    Rule::ALL.to_vec()
}

// ---------------------------------------------------------------------------------------
// DER helpers for building and breaking tokens
// ---------------------------------------------------------------------------------------

/// A DER SEQUENCE around the given elements.
fn sequence(elements: &[Vec<u8>]) -> Vec<u8> {
    let body = elements.concat();
    let mut out = Header::new(Tag::Sequence, Length::try_from(body.len()).unwrap())
        .unwrap()
        .to_der()
        .unwrap();
    out.extend(body);
    out
}

/// The elements of a DER SEQUENCE.
fn elements(der: &[u8]) -> Vec<Vec<u8>> {
    let any = AnyRef::from_der(der).unwrap();
    let mut reader = SliceReader::new(any.value()).unwrap();
    let mut out = Vec::new();
    while !reader.is_finished() {
        out.push(reader.tlv_bytes().unwrap().to_vec());
    }
    out
}

/// A TimeStampResp with PKIStatus `status` and the token, if any.
fn response(status: u8, token: Option<&[u8]>) -> Vec<u8> {
    let mut parts = vec![vec![0x30, 0x03, 0x02, 0x01, status]];
    parts.extend(token.map(<[u8]>::to_vec));
    sequence(&parts)
}

fn token_of(reply: &[u8]) -> Vec<u8> {
    decode_response_status(reply).unwrap().token.unwrap()
}

/// Decodes the reply's SignedData with the `cms` crate, lets `edit` change it, and
/// re-encodes it into a granted reply.
fn edit(reply: &[u8], edit: impl FnOnce(&mut SignedData)) -> Vec<u8> {
    let ci = ContentInfo::from_der(&token_of(reply)).unwrap();
    let mut sd: SignedData = ci.content.decode_as().unwrap();
    edit(&mut sd);
    let ci = ContentInfo {
        content_type: ci.content_type,
        content: Any::encode_from(&sd).unwrap(),
    };
    response(0, Some(&ci.to_der().unwrap()))
}

fn edit_signer_info(sd: &mut SignedData, edit: impl FnOnce(&mut SignerInfo)) {
    let mut infos = sd.signer_infos.0.clone().into_vec();
    edit(&mut infos[0]);
    sd.signer_infos = SignerInfos(SetOfVec::try_from(infos).unwrap());
}

/// Replaces the value of the signed attribute `oid`.
fn set_signed_attr(sd: &mut SignedData, oid: ObjectIdentifier, value: Any) {
    edit_signer_info(sd, |si| {
        let mut attrs = si.signed_attrs.clone().unwrap().into_vec();
        let attr = attrs.iter_mut().find(|a| a.oid == oid).unwrap();
        attr.values = SetOfVec::try_from(vec![value]).unwrap();
        si.signed_attrs = Some(SetOfVec::try_from(attrs).unwrap());
    });
}

fn signed_attr(sd: &SignedData, oid: ObjectIdentifier) -> Any {
    let si = sd.signer_infos.0.get(0).unwrap();
    let attrs = si.signed_attrs.as_ref().unwrap();
    let attr = attrs.iter().find(|a| a.oid == oid).unwrap();
    attr.values.get(0).unwrap().clone()
}

fn p256_key(pem: &[u8]) -> p256::ecdsa::SigningKey {
    use p256::pkcs8::DecodePrivateKey;
    p256::ecdsa::SigningKey::from_pkcs8_pem(std::str::from_utf8(pem).unwrap()).unwrap()
}

fn tsa_p256_key() -> p256::ecdsa::SigningKey {
    p256_key(vector!("tsa-p256.key"))
}

/// Signs the SignerInfo's signed attributes again with the P-256 TSA key (for tests whose
/// rule under test is not the signature).
fn resign(sd: &mut SignedData) {
    let key = tsa_p256_key();
    edit_signer_info(sd, |si| {
        let attrs = si.signed_attrs.as_ref().unwrap().to_der().unwrap();
        let sig: p256::ecdsa::DerSignature = key.sign(&attrs);
        si.signature = OctetString::new(sig.to_vec()).unwrap();
    });
}

// ---------------------------------------------------------------------------------------
// Tokens the way the appliance makes them: TokenTemplate around a software signature
// ---------------------------------------------------------------------------------------

/// A test signing key and the SignerInfo algorithms that go with it.
enum Key {
    P256(p256::ecdsa::SigningKey),
    RsaPss(rsa::RsaPrivateKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl Key {
    fn p256() -> Self {
        Key::P256(tsa_p256_key())
    }

    fn scheme(&self) -> (HashAlgorithm, AlgorithmIdentifierOwned) {
        use const_oid::db::{rfc5912, rfc8410};
        match self {
            Key::P256(_) => (
                HashAlgorithm::Sha256,
                AlgorithmIdentifierOwned {
                    oid: rfc5912::ECDSA_WITH_SHA_256,
                    parameters: None,
                },
            ),
            Key::RsaPss(_) => {
                let params = rsa::pkcs1::RsaPssParams::new::<sha2::Sha256>(32)
                    .to_der()
                    .unwrap();
                (
                    HashAlgorithm::Sha256,
                    AlgorithmIdentifierOwned {
                        oid: rfc5912::ID_RSASSA_PSS,
                        parameters: Some(Any::from_der(&params).unwrap()),
                    },
                )
            }
            Key::Ed25519(_) => (
                HashAlgorithm::Sha512,
                AlgorithmIdentifierOwned {
                    oid: rfc8410::ID_ED_25519,
                    parameters: None,
                },
            ),
        }
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match self {
            Key::P256(k) => {
                let sig: p256::ecdsa::DerSignature = k.sign(msg);
                sig.to_vec()
            }
            Key::RsaPss(k) => {
                use signature::RandomizedSigner;
                let k = rsa::pss::SigningKey::<sha2::Sha256>::new_with_salt_len(k.clone(), 32);
                k.sign_with_rng(&mut rsa::rand_core::OsRng, msg).to_vec()
            }
            Key::Ed25519(k) => k.sign(msg).to_vec(),
        }
    }
}

/// The TSTInfo fields of an in-process token.
struct Tst {
    policy: ObjectIdentifier,
    digest: Vec<u8>,
    serial: u128,
    gen_time: GenTime,
    nonce: Option<Int>,
    tsa: Option<Name>,
}

impl Tst {
    /// The request `req-cert.tsq` answered at 2026-06-01T12:00:00.5Z by `signer`.
    fn new(signer: &Certificate) -> Self {
        let nonce = x509_tsp::TimeStampReq::from_der(vector!("req-cert.tsq"))
            .unwrap()
            .nonce
            .unwrap();
        Tst {
            policy: POLICY.parse().unwrap(),
            digest: data_digest(),
            serial: 0x00c0_ffee_0000_0001,
            gen_time: GenTime::from_unix_millis(1_780_315_200_500),
            nonce: Some(nonce),
            tsa: Some(signer.tbs_certificate.subject.clone()),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let accuracy = Accuracy::new(0, 0, 500).unwrap();
        encode_tst_info(&TstParams {
            policy: &self.policy,
            hash: HashAlgorithm::Sha256,
            hash_params_null: true,
            digest: &self.digest,
            serial: self.serial,
            gen_time: self.gen_time,
            accuracy: &accuracy,
            nonce: self.nonce.as_ref(),
            tsa_name: self.tsa.as_ref(),
        })
        .unwrap()
    }
}

/// A granted reply as the appliance builds it, with the given TSTInfo bytes.
fn appliance_reply(
    signer: &Certificate,
    chain: &[Certificate],
    key: &Key,
    tst_info: &[u8],
    include_certs: bool,
) -> Vec<u8> {
    let (digest, alg) = key.scheme();
    let template = TokenTemplate::new(signer, chain, digest, alg).unwrap();
    let attrs = template.signed_attributes(tst_info).unwrap();
    let signature = key.sign(&attrs);
    template
        .granted_response(tst_info, &attrs, &signature, include_certs)
        .unwrap()
}

/// A P-256 appliance reply for `signer` (a certificate of the P-256 TSA key, issued by the
/// intermediate), the chain in the token.
fn p256_reply_for(signer: &Certificate, tst_info: &[u8]) -> Vec<u8> {
    appliance_reply(signer, &[cert!("int-ca.pem")], &Key::p256(), tst_info, true)
}

fn default_p256_reply() -> Vec<u8> {
    let signer = cert!("tsa-p256.pem");
    p256_reply_for(&signer, &Tst::new(&signer).encode())
}

/// Replaces element `index` of the TSTInfo SEQUENCE (0 version, 1 policy, 2 imprint,
/// 3 serial, 4 genTime, 5 accuracy, 6 nonce, 7 tsa).
fn with_field(tst_info: &[u8], index: usize, element: Vec<u8>) -> Vec<u8> {
    let mut fields = elements(tst_info);
    fields[index] = element;
    sequence(&fields)
}

// ---------------------------------------------------------------------------------------
// Golden tokens from `openssl ts -reply`
// ---------------------------------------------------------------------------------------

#[test]
fn openssl_p256_essv2_with_certs_verifies() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let v = ok(verify_response(
        vector!("reply-p256-v2-certs.tsr"),
        &expect.opts(),
    ));
    assert_eq!(v.passed, every_rule());
    assert_eq!(v.signer, cert!("tsa-p256.pem"));
    assert_eq!(
        v.chain,
        [
            cert!("tsa-p256.pem"),
            cert!("int-ca.pem"),
            cert!("root-ca.pem")
        ]
    );
    assert_eq!(v.tst_info.policy.to_string(), POLICY);
    assert_eq!(v.tst_info.digest, data_digest());
    assert!(matches!(
        v.tst_info.tsa,
        Some(GeneralName::DirectoryName(_))
    ));
}

#[test]
fn openssl_p256_other_variants_verify() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    // CMS digest SHA-384 over a P-256 key, and ESSCertIDv2 over the whole chain.
    for reply in [
        vector!("reply-p256-v2-sha384.tsr"),
        vector!("reply-p256-v2-chain.tsr"),
    ] {
        let v = ok(verify_response(reply, &expect.opts()));
        assert_eq!(v.passed, every_rule());
        assert_eq!(v.chain.len(), 3);
    }
}

#[test]
fn openssl_p256_without_certs_needs_untrusted() {
    let mut expect = Expect::for_request(vector!("req-nocert.tsq"));
    let reply = vector!("reply-p256-v2-nocerts.tsr");
    fails(verify_response(reply, &expect.opts()), Rule::SignerBySid);
    // The signer certificate alone: its issuer is still missing.
    expect.untrusted = vec![cert!("tsa-p256.pem")];
    let e = fails(verify_response(reply, &expect.opts()), Rule::Chain);
    assert!(matches!(e, TokenError::NoIssuer { .. }), "{e}");
    expect.untrusted = vec![cert!("int-ca.pem"), cert!("tsa-p256.pem")];
    let v = ok(verify_response(reply, &expect.opts()));
    assert_eq!(v.passed, every_rule());
    assert_eq!(v.chain.len(), 3);
}

#[test]
fn openssl_rsa_essv2_with_certs_verifies() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let v = ok(verify_response(
        vector!("reply-rsa-v2-certs.tsr"),
        &expect.opts(),
    ));
    assert_eq!(v.passed, every_rule());
    // Issued by the root directly.
    assert_eq!(v.chain, [cert!("tsa-rsa.pem"), cert!("root-ca.pem")]);
}

#[test]
fn openssl_essv1_verifies_only_in_legacy_mode() {
    // P-256, ESSCertID v1, with certificates.
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let reply = vector!("reply-p256-v1-certs.tsr");
    let e = fails(
        verify_response(reply, &expect.opts()),
        Rule::SigningCertificate,
    );
    assert!(e.to_string().contains("legacy_ess_v1"), "{e}");
    let legacy = TokenOptions {
        legacy_ess_v1: true,
        ..expect.opts()
    };
    assert_eq!(ok(verify_response(reply, &legacy)).passed, every_rule());

    // RSA, ESSCertID v1, without certificates.
    let mut expect = Expect::for_request(vector!("req-nocert.tsq"));
    expect.untrusted = vec![cert!("tsa-rsa.pem")];
    let reply = vector!("reply-rsa-v1-nocerts.tsr");
    fails(
        verify_response(reply, &expect.opts()),
        Rule::SigningCertificate,
    );
    let legacy = TokenOptions {
        legacy_ess_v1: true,
        ..expect.opts()
    };
    ok(verify_response(reply, &legacy));
}

#[test]
fn bare_tokens_and_either_form() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let token = vector!("token-p256-v2.tst");
    let v = ok(verify_token(token, &expect.opts()));
    assert!(
        !v.passed.contains(&Rule::Status),
        "no status in a bare token"
    );
    assert_eq!(v.passed.len(), Rule::ALL.len() - 1);
    ok(verify_any(token, &expect.opts()));
    let reply = vector!("reply-p256-v2-certs.tsr");
    assert_eq!(ok(verify_any(reply, &expect.opts())).passed, every_rule());
    // The token inside a reply verifies alone too.
    ok(verify_token(&token_of(reply), &expect.opts()));
    // A reply is not a token, nor the other way round.
    fails(verify_token(reply, &expect.opts()), Rule::Der);
    fails(verify_response(token, &expect.opts()), Rule::Der);
    fails(verify_any(&[0x02, 0x01, 0x00], &expect.opts()), Rule::Der);
    fails(
        verify_any(&[0x30, 0x03, 0x02, 0x01, 0x00], &expect.opts()),
        Rule::Der,
    );
}

#[test]
fn a_token_without_nonce_is_fine_when_none_was_sent() {
    let expect = Expect::without_nonce();
    let v = ok(verify_response(
        vector!("reply-p256-v2-nononce.tsr"),
        &expect.opts(),
    ));
    assert!(!v.passed.contains(&Rule::Nonce));
    // And a token with a nonce is fine too when none was sent.
    ok(verify_response(
        vector!("reply-p256-v2-certs.tsr"),
        &expect.opts(),
    ));
}

#[test]
fn minimal_options_check_the_rest() {
    let roots = roots();
    let opts = TokenOptions {
        now: now(),
        ..TokenOptions::new(&roots)
    };
    let v = ok(verify_response(vector!("reply-p256-v2-certs.tsr"), &opts));
    for skipped in [Rule::Imprint, Rule::Nonce, Rule::Policy] {
        assert!(!v.passed.contains(&skipped));
    }
    assert_eq!(opts.valid_at, ValidAt::GenTime);
    assert!(!opts.legacy_ess_v1 && !opts.allow_granted_with_mods);
}

// ---------------------------------------------------------------------------------------
// Tokens built in-process, as the appliance builds them
// ---------------------------------------------------------------------------------------

#[test]
fn appliance_p256_token_verifies() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let v = ok(verify_response(&default_p256_reply(), &expect.opts()));
    assert_eq!(v.passed, every_rule());
    assert_eq!(v.tst_info.serial_u128(), Some(0x00c0_ffee_0000_0001));
    assert_eq!(v.chain.len(), 3);

    // certReq false: no certificates in the token, so they come from untrusted.
    let signer = cert!("tsa-p256.pem");
    let reply = appliance_reply(
        &signer,
        &[cert!("int-ca.pem")],
        &Key::p256(),
        &Tst::new(&signer).encode(),
        false,
    );
    fails(verify_response(&reply, &expect.opts()), Rule::SignerBySid);
    let mut expect = expect;
    expect.untrusted = vec![signer, cert!("int-ca.pem")];
    ok(verify_response(&reply, &expect.opts()));
}

#[test]
fn appliance_rsa_pss_and_ed25519_tokens_verify() {
    use rsa::pkcs8::DecodePrivateKey;
    let expect = Expect::for_request(vector!("req-cert.tsq"));

    let rsa_cert = cert!("tsa-rsa.pem");
    let rsa_key =
        rsa::RsaPrivateKey::from_pkcs8_pem(std::str::from_utf8(vector!("tsa-rsa.key")).unwrap())
            .unwrap();
    let reply = appliance_reply(
        &rsa_cert,
        &[],
        &Key::RsaPss(rsa_key),
        &Tst::new(&rsa_cert).encode(),
        true,
    );
    assert_eq!(
        ok(verify_response(&reply, &expect.opts())).passed,
        every_rule()
    );

    // Ed25519: the PKCS#8 key's last 32 bytes are the seed (RFC 8410).
    let ed_cert = cert!("tsa-ed25519.pem");
    let (_, der) = der::pem::decode_vec(vector!("tsa-ed25519.key")).unwrap();
    let seed: [u8; 32] = der[der.len() - 32..].try_into().unwrap();
    let ed_key = Key::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed));
    let reply = appliance_reply(
        &ed_cert,
        &[cert!("int-ca.pem")],
        &ed_key,
        &Tst::new(&ed_cert).encode(),
        true,
    );
    assert_eq!(
        ok(verify_response(&reply, &expect.opts())).passed,
        every_rule()
    );
}

#[test]
fn signer_identified_by_subject_key_identifier() {
    use x509_cert::ext::pkix::SubjectKeyIdentifier;
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let signer = cert!("tsa-p256.pem");
    let (_, ski) = signer
        .tbs_certificate
        .get::<SubjectKeyIdentifier>()
        .unwrap()
        .unwrap();
    // The sid is not signed: no new signature needed.
    let by_ski = |version| {
        edit(vector!("reply-p256-v2-certs.tsr"), |sd| {
            edit_signer_info(sd, |si| {
                si.sid = SignerIdentifier::SubjectKeyIdentifier(ski.clone());
                si.version = version;
            })
        })
    };
    ok(verify_response(
        &by_ski(cms::content_info::CmsVersion::V3),
        &expect.opts(),
    ));
    fails(
        verify_response(&by_ski(cms::content_info::CmsVersion::V1), &expect.opts()),
        Rule::CmsStructure,
    );
}

// ---------------------------------------------------------------------------------------
// One broken token per rule
// ---------------------------------------------------------------------------------------

#[test]
fn rule_der_trailing_garbage() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let reply = [vector!("reply-p256-v2-certs.tsr"), &[0x00]].concat();
    fails(verify_response(&reply, &expect.opts()), Rule::Der);
    fails(verify_any(&reply, &expect.opts()), Rule::Der);
    let token = [vector!("token-p256-v2.tst"), &[0x00]].concat();
    fails(verify_token(&token, &expect.opts()), Rule::Der);
    fails(verify_response(&[], &expect.opts()), Rule::Der);
}

#[test]
fn rule_status_rejection() {
    let expect = Expect::for_request(vector!("req-sha1.tsq"));
    let e = fails(
        verify_response(vector!("reply-rejected.tsr"), &expect.opts()),
        Rule::Status,
    );
    match e {
        TokenError::NotGranted {
            status, fail_info, ..
        } => {
            assert_eq!(status, 2);
            assert_eq!(fail_info, Some(FailureInfo::BadAlg));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn rule_status_granted_with_mods_needs_opt_in() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let token = token_of(vector!("reply-p256-v2-certs.tsr"));
    let with_mods = response(1, Some(&token));
    let e = fails(verify_response(&with_mods, &expect.opts()), Rule::Status);
    assert!(matches!(e, TokenError::GrantedWithMods), "{e}");
    let opt_in = TokenOptions {
        allow_granted_with_mods: true,
        ..expect.opts()
    };
    ok(verify_response(&with_mods, &opt_in));
}

#[test]
fn rule_status_token_present_iff_granted() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let e = fails(
        verify_response(&response(0, None), &expect.opts()),
        Rule::Status,
    );
    assert!(matches!(e, TokenError::TokenMissing), "{e}");
    let token = token_of(vector!("reply-p256-v2-certs.tsr"));
    let e = fails(
        verify_response(&response(2, Some(&token)), &expect.opts()),
        Rule::Status,
    );
    assert!(
        matches!(e, TokenError::UnexpectedToken { status: 2 }),
        "{e}"
    );
}

#[test]
fn rule_cms_structure_signer_info_count() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let reply = vector!("reply-p256-v2-certs.tsr");
    let two = edit(reply, |sd| {
        let first = sd.signer_infos.0.get(0).unwrap().clone();
        let mut second = first.clone();
        second.signature = OctetString::new(vec![0x30, 0x00]).unwrap();
        sd.signer_infos = SignerInfos(SetOfVec::try_from(vec![first, second]).unwrap());
    });
    let e = fails(verify_response(&two, &expect.opts()), Rule::CmsStructure);
    assert!(matches!(e, TokenError::SignerInfoCount(2)), "{e}");
    let none = edit(reply, |sd| sd.signer_infos = SignerInfos(SetOfVec::new()));
    let e = fails(verify_response(&none, &expect.opts()), Rule::CmsStructure);
    assert!(matches!(e, TokenError::SignerInfoCount(0)), "{e}");
}

#[test]
fn rule_cms_structure_other_breaks() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let reply = vector!("reply-p256-v2-certs.tsr");
    // eContentType id-data.
    let data = edit(reply, |sd| {
        sd.encap_content_info.econtent_type = const_oid::db::rfc5911::ID_DATA;
    });
    fails(verify_response(&data, &expect.opts()), Rule::CmsStructure);
    // A SHA-1 digestAlgorithm.
    let sha1 = edit(reply, |sd| {
        edit_signer_info(sd, |si| {
            si.digest_alg = AlgorithmIdentifierOwned {
                oid: ObjectIdentifier::new_unwrap("1.3.14.3.2.26"),
                parameters: None,
            }
        })
    });
    let e = fails(verify_response(&sha1, &expect.opts()), Rule::CmsStructure);
    assert!(matches!(e, TokenError::DigestAlgorithm(_)), "{e}");
    // No signed attributes.
    let bare = edit(reply, |sd| {
        edit_signer_info(sd, |si| si.signed_attrs = None)
    });
    fails(verify_response(&bare, &expect.opts()), Rule::CmsStructure);
    // contentType attribute naming id-data.
    let content_type = edit(reply, |sd| {
        let value = Any::encode_from(&const_oid::db::rfc5911::ID_DATA).unwrap();
        set_signed_attr(sd, const_oid::db::rfc5911::ID_CONTENT_TYPE, value);
        resign(sd);
    });
    fails(
        verify_response(&content_type, &expect.opts()),
        Rule::CmsStructure,
    );
    // A ContentInfo that is not signedData.
    let not_signed = {
        let ci = ContentInfo {
            content_type: const_oid::db::rfc5911::ID_DATA,
            content: Any::new(Tag::OctetString, vec![1]).unwrap(),
        };
        response(0, Some(&ci.to_der().unwrap()))
    };
    fails(
        verify_response(&not_signed, &expect.opts()),
        Rule::CmsStructure,
    );
}

#[test]
fn rule_message_digest_of_another_content() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    // The eContent replaced by another TSTInfo (another serial): the signed messageDigest
    // no longer matches.
    let signer = cert!("tsa-p256.pem");
    let other = Tst {
        serial: 99,
        ..Tst::new(&signer)
    }
    .encode();
    let swapped = edit(vector!("reply-p256-v2-certs.tsr"), |sd| {
        sd.encap_content_info.econtent =
            Some(Any::encode_from(&OctetString::new(other).unwrap()).unwrap());
    });
    fails(
        verify_response(&swapped, &expect.opts()),
        Rule::MessageDigest,
    );
}

#[test]
fn rule_signer_by_sid_swapped_certificate() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    // The signer certificate replaced by another certificate of the same CA.
    let swapped = edit(vector!("reply-p256-v2-certs.tsr"), |sd| {
        let set = vec![
            cms::cert::CertificateChoices::Certificate(cert!("tsa-other.pem")),
            cms::cert::CertificateChoices::Certificate(cert!("int-ca.pem")),
        ];
        sd.certificates = Some(cms::signed_data::CertificateSet(
            SetOfVec::try_from(set).unwrap(),
        ));
    });
    let e = fails(verify_response(&swapped, &expect.opts()), Rule::SignerBySid);
    assert!(matches!(e, TokenError::SignerNotFound), "{e}");
    // Two different certificates the sid names: refused, not guessed.
    let mut expect = expect;
    expect.untrusted = vec![cert!("tsa-twin.pem")];
    let e = fails(
        verify_response(vector!("reply-p256-v2-certs.tsr"), &expect.opts()),
        Rule::SignerBySid,
    );
    assert!(matches!(e, TokenError::SignerAmbiguous(2)), "{e}");
}

#[test]
fn rule_signing_certificate_twin_certificate() {
    // A twin: same issuer and serial number as the signer certificate, another key. The
    // sid names it; signingCertificateV2's hash does not.
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let twin = edit(vector!("reply-p256-v2-certs.tsr"), |sd| {
        let set = vec![
            cms::cert::CertificateChoices::Certificate(cert!("tsa-twin.pem")),
            cms::cert::CertificateChoices::Certificate(cert!("int-ca.pem")),
        ];
        sd.certificates = Some(cms::signed_data::CertificateSet(
            SetOfVec::try_from(set).unwrap(),
        ));
    });
    let e = fails(
        verify_response(&twin, &expect.opts()),
        Rule::SigningCertificate,
    );
    assert!(e.to_string().contains("certHash"), "{e}");
}

#[test]
fn rule_signing_certificate_hash_and_issuer_serial_mismatch() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let reply = vector!("reply-p256-v2-certs.tsr");
    let v2 = const_oid::db::rfc5911::ID_AA_SIGNING_CERTIFICATE_V_2;
    let cert_hash = HashAlgorithm::Sha256.digest(&cert!("tsa-p256.pem").to_der().unwrap());
    let patched = |reply: &[u8], patch: &dyn Fn(&mut Vec<u8>)| {
        edit(reply, |sd| {
            let mut value = signed_attr(sd, v2).to_der().unwrap();
            patch(&mut value);
            set_signed_attr(sd, v2, Any::from_der(&value).unwrap());
            resign(sd);
        })
    };
    // Flip a byte of the certHash.
    let bad_hash = patched(reply, &|value| {
        let at = value
            .windows(cert_hash.len())
            .position(|w| w == cert_hash.as_slice())
            .unwrap();
        value[at] ^= 1;
    });
    let e = fails(
        verify_response(&bad_hash, &expect.opts()),
        Rule::SigningCertificate,
    );
    assert!(e.to_string().contains("certHash"), "{e}");
    // OpenSSL writes no issuerSerial; the appliance does, and its serial number is the
    // value's last INTEGER (0x1001).
    let bad_serial = patched(&default_p256_reply(), &|value| {
        assert_eq!(value[value.len() - 4..], [0x02, 0x02, 0x10, 0x01]);
        *value.last_mut().unwrap() = 0x02;
    });
    let e = fails(
        verify_response(&bad_serial, &expect.opts()),
        Rule::SigningCertificate,
    );
    assert!(e.to_string().contains("serial"), "{e}");
    // The attribute removed altogether.
    let removed = edit(reply, |sd| {
        edit_signer_info(sd, |si| {
            let attrs: Vec<_> = si
                .signed_attrs
                .clone()
                .unwrap()
                .into_vec()
                .into_iter()
                .filter(|a| a.oid != v2)
                .collect();
            si.signed_attrs = Some(SetOfVec::try_from(attrs).unwrap());
        });
        resign(sd);
    });
    fails(
        verify_response(&removed, &expect.opts()),
        Rule::SigningCertificate,
    );
}

#[test]
fn rule_chain_token_carrying_its_own_root() {
    // The attacker's root has the real root's name and is inside the token.
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let reply = vector!("reply-evil-root.tsr");
    let e = fails(verify_response(reply, &expect.opts()), Rule::Chain);
    assert!(matches!(e, TokenError::UntrustedRoot { .. }), "{e}");
    // Pinned, it is trusted: what the token carries makes no difference.
    let mut pinned = Expect::for_request(vector!("req-cert.tsq"));
    pinned.roots = vec![cert!("evil-root.pem")];
    ok(verify_response(reply, &pinned.opts()));
    // And the good token does not verify under the attacker's root.
    let e = fails(
        verify_response(vector!("reply-p256-v2-certs.tsr"), &pinned.opts()),
        Rule::Chain,
    );
    assert!(matches!(e, TokenError::CertificateSignature { .. }), "{e}");
}

#[test]
fn rule_chain_expired_at_gen_time() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let reply = vector!("reply-expired.tsr");
    let e = fails(verify_response(reply, &expect.opts()), Rule::Chain);
    assert!(
        matches!(e, TokenError::NotValidAt { at: "genTime", .. }),
        "{e}"
    );
    // Valid now (in 2021) is not enough when genTime is asked for...
    let in_2021 = UNIX_EPOCH + Duration::from_secs(1_623_000_000);
    let now_only = TokenOptions {
        valid_at: ValidAt::Now,
        now: in_2021,
        ..expect.opts()
    };
    ok(verify_response(reply, &now_only));
    let gen_only = TokenOptions {
        valid_at: ValidAt::GenTime,
        now: in_2021,
        ..expect.opts()
    };
    fails(verify_response(reply, &gen_only), Rule::Chain);
}

#[test]
fn rule_chain_valid_at_gen_time_but_not_now() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let reply = vector!("reply-p256-v2-certs.tsr");
    let in_2100 = UNIX_EPOCH + Duration::from_secs(4_102_444_800);
    let both = TokenOptions {
        now: in_2100,
        ..expect.opts()
    };
    let e = fails(verify_response(reply, &both), Rule::Chain);
    assert!(matches!(e, TokenError::NotValidAt { at: "now", .. }), "{e}");
    let gen_only = TokenOptions {
        valid_at: ValidAt::GenTime,
        ..both
    };
    ok(verify_response(reply, &gen_only));
}

#[test]
fn rule_chain_issuers_must_be_cas_within_path_length() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    // Issued by the RSA TSA certificate, which is not a CA.
    let under_leaf = cert!("tsa-under-leaf.pem");
    let reply = appliance_reply(
        &under_leaf,
        &[cert!("tsa-rsa.pem")],
        &Key::p256(),
        &Tst::new(&under_leaf).encode(),
        true,
    );
    let e = fails(verify_response(&reply, &expect.opts()), Rule::Chain);
    assert!(matches!(e, TokenError::IssuerNotCa { .. }), "{e}");
    // Under a second intermediate: the first one's pathlen:0 forbids it.
    let deep = cert!("tsa-deep.pem");
    let reply = appliance_reply(
        &deep,
        &[cert!("int2-ca.pem"), cert!("int-ca.pem")],
        &Key::p256(),
        &Tst::new(&deep).encode(),
        true,
    );
    let e = fails(verify_response(&reply, &expect.opts()), Rule::Chain);
    assert!(matches!(e, TokenError::PathLength { .. }), "{e}");
}

#[test]
fn rule_eku_not_critical_not_sole_or_a_ca() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    for (cert, want) in [
        (cert!("tsa-eku-noncritical.pem"), "not critical"),
        (cert!("tsa-eku-multi.pem"), "not solely"),
        (cert!("tsa-is-ca.pem"), "is a CA"),
    ] {
        let reply = p256_reply_for(&cert, &Tst::new(&cert).encode());
        let e = fails(verify_response(&reply, &expect.opts()), Rule::Eku);
        assert!(e.to_string().contains(want), "{e}");
    }
}

#[test]
fn rule_signature_forged() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    for reply in [
        vector!("reply-p256-v2-certs.tsr"),
        vector!("reply-rsa-v2-certs.tsr"),
    ] {
        let forged = edit(reply, |sd| {
            edit_signer_info(sd, |si| {
                let mut sig = si.signature.as_bytes().to_vec();
                let last = sig.len() - 1;
                sig[last] ^= 0x01;
                si.signature = OctetString::new(sig).unwrap();
            })
        });
        let e = fails(verify_response(&forged, &expect.opts()), Rule::Signature);
        assert!(
            matches!(e, TokenError::Signature(SignatureProblem::Invalid)),
            "{e}"
        );
    }
    // A signed attribute changed after signing (here the signingTime OpenSSL adds).
    let tampered = edit(vector!("reply-p256-v2-certs.tsr"), |sd| {
        let signing_time = const_oid::db::rfc5911::ID_SIGNING_TIME;
        let time = x509_cert::time::Time::UtcTime(
            der::asn1::UtcTime::from_unix_duration(Duration::from_secs(1_700_000_000)).unwrap(),
        );
        set_signed_attr(sd, signing_time, Any::encode_from(&time).unwrap());
    });
    fails(verify_response(&tampered, &expect.opts()), Rule::Signature);
}

#[test]
fn rule_signature_small_rsa_key_and_unknown_algorithm() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let e = fails(
        verify_response(vector!("reply-rsa1024.tsr"), &expect.opts()),
        Rule::Signature,
    );
    assert!(
        matches!(
            e,
            TokenError::Signature(SignatureProblem::RsaKeyTooSmall(1024))
        ),
        "{e}"
    );
    // ecdsa-with-SHA1.
    let sha1 = edit(vector!("reply-p256-v2-certs.tsr"), |sd| {
        edit_signer_info(sd, |si| {
            si.signature_algorithm = AlgorithmIdentifierOwned {
                oid: ObjectIdentifier::new_unwrap("1.2.840.10045.4.1"),
                parameters: None,
            }
        })
    });
    let e = fails(verify_response(&sha1, &expect.opts()), Rule::Signature);
    assert!(
        matches!(
            e,
            TokenError::Signature(SignatureProblem::UnsupportedAlgorithm(_))
        ),
        "{e}"
    );
}

#[test]
fn rule_tst_info_version() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let signer = cert!("tsa-p256.pem");
    let v2 = with_field(&Tst::new(&signer).encode(), 0, vec![0x02, 0x01, 0x02]);
    fails(
        verify_response(&p256_reply_for(&signer, &v2), &expect.opts()),
        Rule::TstInfo,
    );
    // Not a TSTInfo at all.
    let junk = sequence(&[vec![0x05, 0x00]]);
    fails(
        verify_response(&p256_reply_for(&signer, &junk), &expect.opts()),
        Rule::TstInfo,
    );
}

#[test]
fn rule_imprint_wrong_data_or_algorithm() {
    let mut expect = Expect::for_request(vector!("req-cert.tsq"));
    let reply = vector!("reply-p256-v2-certs.tsr");
    expect.digest = HashAlgorithm::Sha256.digest(b"other data");
    let e = fails(verify_response(reply, &expect.opts()), Rule::Imprint);
    assert!(matches!(e, TokenError::ImprintDigest), "{e}");
    let sha512 = HashAlgorithm::Sha512.digest(vector!("data.txt"));
    let other_alg = TokenOptions {
        imprint: Some((HashAlgorithm::Sha512, &sha512)),
        ..expect.opts()
    };
    let e = fails(verify_response(reply, &other_alg), Rule::Imprint);
    assert!(matches!(e, TokenError::ImprintAlgorithm { .. }), "{e}");
}

#[test]
fn rule_nonce_wrong_or_missing() {
    let mut expect = Expect::for_request(vector!("req-cert.tsq"));
    expect.nonce = Some(nonce_of(vector!("req-nocert.tsq")));
    let e = fails(
        verify_response(vector!("reply-p256-v2-certs.tsr"), &expect.opts()),
        Rule::Nonce,
    );
    assert!(matches!(e, TokenError::NonceMismatch), "{e}");
    // A nonce sent, a token without one.
    let e = fails(
        verify_response(vector!("reply-p256-v2-nononce.tsr"), &expect.opts()),
        Rule::Nonce,
    );
    assert!(matches!(e, TokenError::NonceMissing), "{e}");
    // Leading zero bytes do not change the number.
    let mut padded = vec![0, 0];
    padded.extend(nonce_of(vector!("req-cert.tsq")));
    expect.nonce = Some(padded);
    ok(verify_response(
        vector!("reply-p256-v2-certs.tsr"),
        &expect.opts(),
    ));
}

#[test]
fn rule_policy_not_accepted() {
    let mut expect = Expect::for_request(vector!("req-cert.tsq"));
    expect.policies = vec![OTHER_POLICY.parse().unwrap()];
    let e = fails(
        verify_response(vector!("reply-p256-v2-certs.tsr"), &expect.opts()),
        Rule::Policy,
    );
    assert!(
        matches!(e, TokenError::PolicyNotAccepted(p) if p.to_string() == POLICY),
        "{e}"
    );
}

#[test]
fn rule_tsa_name_subject_or_san() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let signer = cert!("tsa-p256.pem");
    let other = Tst {
        tsa: Some(Name::from_str("CN=somebody else,O=auditstamp").unwrap()),
        ..Tst::new(&signer)
    };
    let reply = p256_reply_for(&signer, &other.encode());
    fails(verify_response(&reply, &expect.opts()), Rule::TsaName);
    // Absent is fine.
    let none = Tst {
        tsa: None,
        ..Tst::new(&signer)
    };
    ok(verify_response(
        &p256_reply_for(&signer, &none.encode()),
        &expect.opts(),
    ));
    // A certificate's subjectAltName directoryName is accepted as the tsa name.
    let san = cert!("tsa-san.pem");
    let alias = Tst {
        tsa: Some(Name::from_str("CN=auditstamp TSA alias,O=auditstamp").unwrap()),
        ..Tst::new(&san)
    };
    ok(verify_response(
        &p256_reply_for(&san, &alias.encode()),
        &expect.opts(),
    ));
    fails(
        verify_response(&p256_reply_for(&signer, &alias.encode()), &expect.opts()),
        Rule::TsaName,
    );
}

#[test]
fn rule_gen_time_malformed() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let signer = cert!("tsa-p256.pem");
    let tst = Tst::new(&signer).encode();
    let gen_time = |text: &str| {
        let mut tlv = vec![0x18, u8::try_from(text.len()).unwrap()];
        tlv.extend(text.as_bytes());
        tlv
    };
    // The well-formed one, re-encoded by hand: still verifies.
    let good = with_field(&tst, 4, gen_time("20260601120000.5Z"));
    assert_eq!(good, tst);
    for bad in [
        gen_time("20260601120000.50Z"),
        gen_time("20260601120000"),
        gen_time("202606011200Z"),
        gen_time("20261301120000Z"),
        gen_time("20260601120000+0100"),
        // A UTCTime instead.
        [&[0x17, 0x0d][..], b"260601120000Z"].concat(),
    ] {
        let reply = p256_reply_for(&signer, &with_field(&tst, 4, bad.clone()));
        fails(verify_response(&reply, &expect.opts()), Rule::GenTime);
    }
}

#[test]
fn rule_serial_positive_and_at_most_160_bits() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let signer = cert!("tsa-p256.pem");
    let tst = Tst::new(&signer).encode();
    let mut max = vec![0x02, 21, 0x00];
    max.extend([0xff; 20]);
    ok(verify_response(
        &p256_reply_for(&signer, &with_field(&tst, 3, max)),
        &expect.opts(),
    ));
    let mut too_long = vec![0x02, 21, 0x01];
    too_long.extend([0x00; 20]);
    for bad in [vec![0x02, 0x01, 0x00], vec![0x02, 0x01, 0xff], too_long] {
        let reply = p256_reply_for(&signer, &with_field(&tst, 3, bad));
        fails(verify_response(&reply, &expect.opts()), Rule::Serial);
    }
}

#[test]
fn rule_extensions_none_critical() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let signer = cert!("tsa-p256.pem");
    let tst = Tst::new(&signer).encode();
    let with_extension = |critical: bool| {
        let ext = x509_cert::ext::Extension {
            extn_id: ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.7"),
            critical,
            extn_value: OctetString::new(vec![0x05, 0x00]).unwrap(),
        };
        // [1] IMPLICIT Extensions: the SEQUENCE OF re-tagged.
        let mut field = vec![ext].to_der().unwrap();
        field[0] = 0xa1;
        let mut fields = elements(&tst);
        fields.push(field);
        sequence(&fields)
    };
    ok(verify_response(
        &p256_reply_for(&signer, &with_extension(false)),
        &expect.opts(),
    ));
    let e = fails(
        verify_response(
            &p256_reply_for(&signer, &with_extension(true)),
            &expect.opts(),
        ),
        Rule::Extensions,
    );
    assert!(matches!(e, TokenError::CriticalExtension(_)), "{e}");
}

// ---------------------------------------------------------------------------------------
// Strict DER where no other rule looks: golden negative vectors (tests/vectors/verify/
// README.md, "Strictness vectors"), made by the generators below from the golden replies
// and the test keys. ECDSA signatures here are RFC 6979 (deterministic), so a generator
// makes the same bytes at every run: `strict_vectors_are_what_their_generators_make`
// checks the committed files against them (AUDITSTAMP_WRITE_VECTORS=1 writes them).
// ---------------------------------------------------------------------------------------

/// The path of a file of tests/vectors/verify/.
fn vector_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/verify")
        .join(name)
}

/// A vector read at run time (the strict vectors are made by this file's generators).
fn read_vector(name: &str) -> Vec<u8> {
    std::fs::read(vector_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A DER element: the tag octet `tag`, the DER length of `contents`, then `contents`.
fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(Length::try_from(contents.len()).unwrap().to_der().unwrap());
    out.extend(contents);
    out
}

/// The header length and contents length of a DER element.
fn header_and_contents(element: &[u8]) -> (usize, usize) {
    let mut reader = SliceReader::new(element).unwrap();
    let header = Header::decode(&mut reader).unwrap();
    let contents = usize::try_from(header.length).unwrap();
    (element.len() - contents, contents)
}

/// `element` with its length in one octet more than DER allows (`30 81 05` for `30 05`,
/// `30 82 00 c8` for `30 81 c8`).
fn long_length(element: &[u8]) -> Vec<u8> {
    let (header, len) = header_and_contents(element);
    let digits: Vec<u8> = len
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![element[0]];
    if len < 0x80 {
        out.extend([0x81, u8::try_from(len).unwrap()]);
    } else {
        out.push(0x80 | u8::try_from(digits.len() + 1).unwrap());
        out.push(0x00);
        out.extend(digits);
    }
    out.extend(&element[header..]);
    out
}

/// `element` (a constructed one) with BER's indefinite length (X.690 §8.1.3.6): `30 80`,
/// the contents, `00 00`. DER forbids it.
fn indefinite_length(element: &[u8]) -> Vec<u8> {
    let (header, _) = header_and_contents(element);
    [&[element[0], 0x80], &element[header..], &[0x00, 0x00][..]].concat()
}

/// Rebuilds a granted reply after `edit` changed the elements of its SignedData (0
/// version, 1 digestAlgorithms, 2 encapContentInfo, certificates `[0]`, crls `[1]`,
/// signerInfos last); every other octet stays as it was, the lengths around are redone.
fn with_signed_data(reply: &[u8], edit: impl FnOnce(&mut Vec<Vec<u8>>)) -> Vec<u8> {
    let resp = elements(reply);
    let ci = elements(&resp[1]);
    let explicit = elements(&ci[1]);
    let mut sd = elements(&explicit[0]);
    edit(&mut sd);
    let ci = sequence(&[ci[0].clone(), tlv(0xa0, &sequence(&sd))]);
    sequence(&[resp[0].clone(), ci])
}

/// [`with_signed_data`] for the elements of the one SignerInfo (0 version, 1 sid,
/// 2 digestAlgorithm, 3 signedAttrs `[0]`, 4 signatureAlgorithm, 5 signature,
/// unsignedAttrs `[1]`).
fn with_signer_info(reply: &[u8], edit: impl FnOnce(&mut Vec<Vec<u8>>)) -> Vec<u8> {
    with_signed_data(reply, |sd| {
        let infos = sd.last_mut().unwrap();
        let [info] = &elements(infos)[..] else {
            panic!("one SignerInfo")
        };
        let mut si = elements(info);
        edit(&mut si);
        *infos = tlv(0x31, &sequence(&si));
    })
}

fn ecdsa_with(oid: ObjectIdentifier) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid,
        parameters: None,
    }
}

fn int_ca_key() -> p256::ecdsa::SigningKey {
    p256_key(vector!("int-ca.key"))
}

/// A v2 CRL of the intermediate that revokes tsa-other.pem, signed with int-ca.key.
fn int_ca_crl() -> Vec<u8> {
    use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
    use x509_cert::time::Time;
    let utc = |secs| {
        Time::UtcTime(der::asn1::UtcTime::from_unix_duration(Duration::from_secs(secs)).unwrap())
    };
    let tbs = TbsCertList {
        version: x509_cert::Version::V2,
        signature: ecdsa_with(const_oid::db::rfc5912::ECDSA_WITH_SHA_256),
        issuer: cert!("int-ca.pem").tbs_certificate.subject,
        // 2026-05-28T20:26:40Z and 2036-01-01T00:00:00Z.
        this_update: utc(1_780_000_000),
        next_update: Some(utc(2_082_758_400)),
        revoked_certificates: Some(vec![RevokedCert {
            serial_number: cert!("tsa-other.pem").tbs_certificate.serial_number,
            revocation_date: utc(1_780_000_000),
            crl_entry_extensions: None,
        }]),
        crl_extensions: None,
    };
    let sig: p256::ecdsa::DerSignature = int_ca_key().sign(&tbs.to_der().unwrap());
    CertificateList {
        tbs_cert_list: tbs,
        signature_algorithm: ecdsa_with(const_oid::db::rfc5912::ECDSA_WITH_SHA_256),
        signature: der::asn1::BitString::from_bytes(&sig.to_vec()).unwrap(),
    }
    .to_der()
    .unwrap()
}

/// reply-p256-v2-certs.tsr with a `crls` field (`[1] IMPLICIT SET OF`) holding `crls`,
/// element octets as given.
fn with_crls(crls: &[Vec<u8>]) -> Vec<u8> {
    with_signed_data(vector!("reply-p256-v2-certs.tsr"), |sd| {
        let signer_infos = sd.len() - 1;
        sd.insert(signer_infos, tlv(0xa1, &crls.concat()));
    })
}

/// An Attribute with the given value elements (octets as given).
fn attribute(oid: &str, values: &[Vec<u8>]) -> Vec<u8> {
    sequence(&[
        ObjectIdentifier::new_unwrap(oid).to_der().unwrap(),
        tlv(0x31, &values.concat()),
    ])
}

/// id-aa-signatureTimeStampToken (RFC 3161 appendix A) around token-p256-v2.tst.
fn signature_time_stamp_attr() -> Vec<u8> {
    attribute(
        "1.2.840.113549.1.9.16.2.14",
        &[vector!("token-p256-v2.tst").to_vec()],
    )
}

/// An attribute of a private type: a UTF8String.
fn private_attr() -> Vec<u8> {
    let value = der::asn1::Utf8StringRef::new("auditstamp verify test attribute")
        .unwrap()
        .to_der()
        .unwrap();
    attribute("1.3.6.1.4.1.99999.3.1", &[value])
}

/// reply-p256-v2-certs.tsr with `unsignedAttrs` (`[1] IMPLICIT SET OF Attribute`)
/// holding `attrs`, octets and order as given.
fn with_unsigned_attrs(attrs: &[Vec<u8>]) -> Vec<u8> {
    with_signer_info(vector!("reply-p256-v2-certs.tsr"), |si| {
        si.push(tlv(0xa1, &attrs.concat()));
    })
}

/// reply-p256-v2-certs.tsr with its ESSCertIDv2 given `hashAlgorithm` = SHA-256 (the
/// DEFAULT, which OpenSSL omits), with NULL parameters or none, signed again.
fn with_explicit_ess_hash(null_params: bool) -> Vec<u8> {
    let v2 = const_oid::db::rfc5911::ID_AA_SIGNING_CERTIFICATE_V_2;
    edit(vector!("reply-p256-v2-certs.tsr"), |sd| {
        let value = signed_attr(sd, v2).to_der().unwrap();
        let outer = elements(&value);
        let certs = elements(&outer[0]);
        let ess = elements(&certs[0]);
        assert_eq!(
            ess[0][0], 0x04,
            "the hashAlgorithm is omitted: certHash first"
        );
        let alg = AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::ID_SHA_256,
            parameters: null_params.then_some(Any::from(der::asn1::Null)),
        }
        .to_der()
        .unwrap();
        let ess = sequence(&[vec![alg], ess].concat());
        let certs = sequence(&[vec![ess], certs[1..].to_vec()].concat());
        let value = sequence(&[vec![certs], outer[1..].to_vec()].concat());
        set_signed_attr(sd, v2, Any::from_der(&value).unwrap());
        resign(sd);
    })
}

/// `cert` with its tbsCertificate.signature set to `tbs_alg`, signed again by `key` with
/// ECDSA SHA-256, which its signatureAlgorithm (unchanged, ecdsa-with-SHA256) says.
fn with_tbs_signature(
    cert: &Certificate,
    tbs_alg: ObjectIdentifier,
    key: &p256::ecdsa::SigningKey,
) -> Certificate {
    let mut cert = cert.clone();
    assert_eq!(
        cert.signature_algorithm,
        ecdsa_with(const_oid::db::rfc5912::ECDSA_WITH_SHA_256)
    );
    cert.tbs_certificate.signature = ecdsa_with(tbs_alg);
    let sig: p256::ecdsa::DerSignature = key.sign(&cert.tbs_certificate.to_der().unwrap());
    cert.signature = der::asn1::BitString::from_bytes(&sig.to_vec()).unwrap();
    cert
}

/// tsa-p256.pem whose tbsCertificate says ecdsa-with-SHA384 and whose signatureAlgorithm
/// says ecdsa-with-SHA256 (the intermediate signed it with SHA-256).
fn sigalg_mismatch_cert() -> Certificate {
    with_tbs_signature(
        &cert!("tsa-p256.pem"),
        const_oid::db::rfc5912::ECDSA_WITH_SHA_384,
        &int_ca_key(),
    )
}

/// reply-p256-v2-certs.tsr with `signer` in place of tsa-p256.pem (same key, issuer and
/// serial): the signingCertificateV2 hash made its, the signed attributes signed again.
fn with_signer_certificate(signer: &Certificate) -> Vec<u8> {
    let v2 = const_oid::db::rfc5911::ID_AA_SIGNING_CERTIFICATE_V_2;
    let old_hash = HashAlgorithm::Sha256.digest(&cert!("tsa-p256.pem").to_der().unwrap());
    let new_hash = HashAlgorithm::Sha256.digest(&signer.to_der().unwrap());
    edit(vector!("reply-p256-v2-certs.tsr"), |sd| {
        let set = vec![
            cms::cert::CertificateChoices::Certificate(signer.clone()),
            cms::cert::CertificateChoices::Certificate(cert!("int-ca.pem")),
        ];
        sd.certificates = Some(cms::signed_data::CertificateSet(
            SetOfVec::try_from(set).unwrap(),
        ));
        let mut value = signed_attr(sd, v2).to_der().unwrap();
        let at = value
            .windows(old_hash.len())
            .position(|w| w == old_hash.as_slice())
            .unwrap();
        value[at..at + new_hash.len()].copy_from_slice(&new_hash);
        set_signed_attr(sd, v2, Any::from_der(&value).unwrap());
        resign(sd);
    })
}

/// Every strictness vector: its file name and what its generator makes now.
fn strict_vectors() -> Vec<(&'static str, Vec<u8>)> {
    let crl = int_ca_crl();
    let [first, second] = [private_attr(), signature_time_stamp_attr()];
    assert!(first < second, "the DER order of the two attributes");
    let mismatch = sigalg_mismatch_cert();
    vec![
        ("reply-crls-der.tsr", with_crls(std::slice::from_ref(&crl))),
        (
            "reply-crls-long-length.tsr",
            with_crls(&[long_length(&crl)]),
        ),
        (
            "reply-crls-indefinite-length.tsr",
            with_crls(&[indefinite_length(&crl)]),
        ),
        (
            "reply-unsigned-attrs-der.tsr",
            with_unsigned_attrs(&[first.clone(), second.clone()]),
        ),
        (
            "reply-unsigned-attrs-unsorted.tsr",
            with_unsigned_attrs(&[second.clone(), first.clone()]),
        ),
        (
            "reply-unsigned-attrs-long-length.tsr",
            with_unsigned_attrs(&[long_length(&first), second]),
        ),
        (
            "tsa-sigalg-mismatch.pem",
            mismatch
                .to_pem(der::pem::LineEnding::LF)
                .unwrap()
                .into_bytes(),
        ),
        (
            "reply-cert-sigalg-mismatch.tsr",
            with_signer_certificate(&mismatch),
        ),
        (
            "reply-essv2-explicit-sha256.tsr",
            with_explicit_ess_hash(false),
        ),
        (
            "reply-essv2-explicit-sha256-null.tsr",
            with_explicit_ess_hash(true),
        ),
    ]
}

#[test]
fn strict_vectors_are_what_their_generators_make() {
    let write = std::env::var_os("AUDITSTAMP_WRITE_VECTORS").is_some();
    for (name, made) in strict_vectors() {
        if write {
            std::fs::write(vector_path(name), &made).unwrap();
        } else {
            assert!(
                read_vector(name) == made,
                "{name} is not what its generator makes (after make-vectors.sh, run \
                 AUDITSTAMP_WRITE_VECTORS=1 cargo test --test verify_token strict_vectors)"
            );
        }
    }
}

/// What `openssl ts -verify` says of each strictness vector (README.md there): it reads
/// BER, so it takes every one but the certificate whose two algorithms differ; that it
/// does shows each vector is otherwise a good token.
#[test]
fn strict_vectors_openssl_verdicts() {
    for (name, _) in strict_vectors() {
        if !name.ends_with(".tsr") {
            continue;
        }
        let out = std::process::Command::new("openssl")
            .args(["ts", "-verify", "-in", name, "-queryfile", "req-cert.tsq"])
            .args(["-CAfile", "root-ca.pem"])
            .current_dir(vector_path(""))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        let expect_ok = name != "reply-cert-sigalg-mismatch.tsr";
        assert_eq!(
            said.contains("Verification: OK"),
            expect_ok,
            "{name}: {said} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn crls_are_accepted_only_in_der() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    // A token may carry CRLs (nothing in RFC 3161 or the profile forbids it).
    ok(verify_response(
        &read_vector("reply-crls-der.tsr"),
        &expect.opts(),
    ));
    // Golden: a length in more octets than needed, and an indefinite length.
    for (name, defect) in [
        (
            "reply-crls-long-length.tsr",
            "a length not in its shortest form",
        ),
        ("reply-crls-indefinite-length.tsr", "an indefinite length"),
    ] {
        let e = fails(
            verify_response(&read_vector(name), &expect.opts()),
            Rule::Der,
        );
        assert!(
            matches!(e, TokenError::NotDer { what: "crls", .. }),
            "{name}: {e}"
        );
        assert!(e.to_string().contains(defect), "{name}: {e}");
    }
    // In-process: two CRLs out of DER order; a v1 CRL (no version) is fine, ...
    let crl = int_ca_crl();
    let mut fields = elements(&elements(&crl)[0]);
    assert_eq!(fields[0], [0x02, 0x01, 0x01], "v2");
    fields.remove(0);
    let tbs_v1 = sequence(&fields);
    let sig: p256::ecdsa::DerSignature = int_ca_key().sign(&tbs_v1);
    let crl_v1 = sequence(&[
        tbs_v1.clone(),
        elements(&crl)[1].clone(),
        der::asn1::BitString::from_bytes(&sig.to_vec())
            .unwrap()
            .to_der()
            .unwrap(),
    ]);
    ok(verify_response(
        &with_crls(std::slice::from_ref(&crl_v1)),
        &expect.opts(),
    ));
    let mut two = [crl.clone(), crl_v1];
    two.sort();
    ok(verify_response(&with_crls(&two), &expect.opts()));
    two.reverse();
    let e = fails(verify_response(&with_crls(&two), &expect.opts()), Rule::Der);
    assert!(e.to_string().contains("crls"), "{e}");
    // ... an explicit DEFAULT (a CRL entry extension with critical FALSE written out), ...
    let reason = sequence(&[
        ObjectIdentifier::new_unwrap("2.5.29.21").to_der().unwrap(),
        vec![0x01, 0x01, 0x00],
        tlv(0x04, &[0x0a, 0x01, 0x01]),
    ]);
    let mut fields = elements(&elements(&crl)[0]);
    let mut revoked = elements(&fields[5]);
    let mut entry = elements(&revoked[0]);
    entry.push(sequence(&[reason]));
    revoked[0] = sequence(&entry);
    fields[5] = sequence(&revoked);
    let crl_default = sequence(&[
        sequence(&fields),
        elements(&crl)[1].clone(),
        elements(&crl)[2].clone(),
    ]);
    let e = fails(
        verify_response(&with_crls(&[crl_default]), &expect.opts()),
        Rule::Der,
    );
    assert!(e.to_string().contains("crls"), "{e}");
    // ... other revocation information (RFC 5940's OCSP response format) in DER, and with
    // a BOOLEAN that is not 00 or FF inside; and something that is no RevocationInfoChoice.
    let ocsp_format = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.16.2")
        .to_der()
        .unwrap();
    let other = |inner: Vec<u8>| tlv(0xa1, &[ocsp_format.clone(), sequence(&[inner])].concat());
    ok(verify_response(
        &with_crls(&[other(vec![0x01, 0x01, 0xff])]),
        &expect.opts(),
    ));
    let e = fails(
        verify_response(&with_crls(&[other(vec![0x01, 0x01, 0x01])]), &expect.opts()),
        Rule::Der,
    );
    assert!(e.to_string().contains("BOOLEAN"), "{e}");
    fails(
        verify_response(&with_crls(&[vec![0x04, 0x00]]), &expect.opts()),
        Rule::Der,
    );
}

#[test]
fn unsigned_attrs_are_accepted_only_in_der() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    // A token may carry unsigned attributes (a signatureTimeStampToken among them).
    ok(verify_response(
        &read_vector("reply-unsigned-attrs-der.tsr"),
        &expect.opts(),
    ));
    // Golden: the two attributes out of DER order, and a length in more octets than needed.
    for (name, defect) in [
        (
            "reply-unsigned-attrs-unsorted.tsr",
            "not in ascending order",
        ),
        (
            "reply-unsigned-attrs-long-length.tsr",
            "a length not in its shortest form",
        ),
    ] {
        let e = fails(
            verify_response(&read_vector(name), &expect.opts()),
            Rule::Der,
        );
        assert!(
            matches!(
                e,
                TokenError::NotDer {
                    what: "unsignedAttrs",
                    ..
                }
            ),
            "{name}: {e}"
        );
        assert!(e.to_string().contains(defect), "{name}: {e}");
    }
    // In-process: no attribute at all (UnsignedAttributes is SET SIZE (1..MAX)), ...
    fails(
        verify_response(&with_unsigned_attrs(&[]), &expect.opts()),
        Rule::CmsStructure,
    );
    // ... two values out of order, ...
    let value = |text: &str| {
        der::asn1::Utf8StringRef::new(text)
            .unwrap()
            .to_der()
            .unwrap()
    };
    let sorted = attribute("1.3.6.1.4.1.99999.3.1", &[value("a"), value("b")]);
    ok(verify_response(
        &with_unsigned_attrs(&[sorted]),
        &expect.opts(),
    ));
    let unsorted = attribute("1.3.6.1.4.1.99999.3.1", &[value("b"), value("a")]);
    let e = fails(
        verify_response(&with_unsigned_attrs(&[unsorted]), &expect.opts()),
        Rule::Der,
    );
    assert!(e.to_string().contains("ascending order"), "{e}");
    // ... and a token inside whose serial number is not in its shortest form.
    // (Its SignedData version, `02 01 03`, becomes `02 02 00 03`.)
    let token = vector!("token-p256-v2.tst");
    let padded = with_signed_data(&response(0, Some(token)), |sd| {
        assert_eq!(sd[0], [0x02, 0x01, 0x03]);
        sd[0] = vec![0x02, 0x02, 0x00, 0x03];
    });
    let nested = token_of(&padded);
    let attr = attribute("1.2.840.113549.1.9.16.2.14", &[nested]);
    let e = fails(
        verify_response(&with_unsigned_attrs(&[attr]), &expect.opts()),
        Rule::Der,
    );
    assert!(e.to_string().contains("INTEGER"), "{e}");
}

#[test]
fn certificate_signature_algorithms_must_agree() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    // Golden: the TSA certificate's tbsCertificate says ecdsa-with-SHA384, its
    // signatureAlgorithm ecdsa-with-SHA256 (with which the intermediate did sign it).
    let cert = Certificate::from_pem(read_vector("tsa-sigalg-mismatch.pem")).unwrap();
    assert_ne!(cert.signature_algorithm, cert.tbs_certificate.signature);
    let e = fails(
        verify_response(
            &read_vector("reply-cert-sigalg-mismatch.tsr"),
            &expect.opts(),
        ),
        Rule::Chain,
    );
    assert!(
        matches!(&e, TokenError::SignatureAlgorithmMismatch { subject } if subject.contains("TSA P-256")),
        "{e}"
    );
    // The same for the intermediate, and for the pinned root: every certificate of the
    // path is checked.
    let int = with_tbs_signature(
        &cert!("int-ca.pem"),
        const_oid::db::rfc5912::ECDSA_WITH_SHA_384,
        &p256_key(vector!("root-ca.key")),
    );
    let signer = cert!("tsa-p256.pem");
    let reply = appliance_reply(
        &signer,
        &[int],
        &Key::p256(),
        &Tst::new(&signer).encode(),
        true,
    );
    let e = fails(verify_response(&reply, &expect.opts()), Rule::Chain);
    assert!(
        matches!(&e, TokenError::SignatureAlgorithmMismatch { subject } if subject.contains("intermediate")),
        "{e}"
    );
    let root = with_tbs_signature(
        &cert!("root-ca.pem"),
        const_oid::db::rfc5912::ECDSA_WITH_SHA_384,
        &p256_key(vector!("root-ca.key")),
    );
    let mut pinned = Expect::for_request(vector!("req-cert.tsq"));
    pinned.roots = vec![root];
    let e = fails(
        verify_response(vector!("reply-p256-v2-certs.tsr"), &pinned.opts()),
        Rule::Chain,
    );
    assert!(
        matches!(&e, TokenError::SignatureAlgorithmMismatch { subject } if subject.contains("root")),
        "{e}"
    );
}

#[test]
fn ess_cert_id_v2_with_the_default_hash_written_out_is_refused() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    for name in [
        "reply-essv2-explicit-sha256.tsr",
        "reply-essv2-explicit-sha256-null.tsr",
    ] {
        let e = fails(
            verify_response(&read_vector(name), &expect.opts()),
            Rule::SigningCertificate,
        );
        assert!(e.to_string().contains("DEFAULT"), "{name}: {e}");
    }
}

#[test]
fn tst_info_extension_with_critical_false_written_out() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let signer = cert!("tsa-p256.pem");
    // critical is BOOLEAN DEFAULT FALSE: DER omits it.
    let tst = Tst::new(&signer).encode();
    let extension = sequence(&[
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.7")
            .to_der()
            .unwrap(),
        vec![0x01, 0x01, 0x00],
        tlv(0x04, &[0x05, 0x00]),
    ]);
    let mut fields = elements(&tst);
    // [1] IMPLICIT Extensions: the SEQUENCE OF re-tagged.
    fields.push(tlv(0xa1, &extension));
    let e = fails(
        verify_response(&p256_reply_for(&signer, &sequence(&fields)), &expect.opts()),
        Rule::TstInfo,
    );
    assert!(matches!(e, TokenError::TstInfoNotDer(_)), "{e}");
}

#[test]
fn certificate_extension_values_must_be_der() {
    // A signer certificate whose extension values are not DER: basicConstraints with cA
    // FALSE written out, a keyUsage with a trailing zero bit. Each signed again by the
    // intermediate.
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let signer = cert!("tsa-p256.pem");
    let with_extension_value = |oid: ObjectIdentifier, value: &[u8]| {
        let mut cert = signer.clone();
        let exts = cert.tbs_certificate.extensions.as_mut().unwrap();
        let ext = exts.iter_mut().find(|e| e.extn_id == oid).unwrap();
        ext.extn_value = OctetString::new(value).unwrap();
        let sig: p256::ecdsa::DerSignature =
            int_ca_key().sign(&cert.tbs_certificate.to_der().unwrap());
        cert.signature = der::asn1::BitString::from_bytes(&sig.to_vec()).unwrap();
        cert
    };
    let basic = const_oid::db::rfc5912::ID_CE_BASIC_CONSTRAINTS;
    let usage = const_oid::db::rfc5912::ID_CE_KEY_USAGE;
    let ext_value = |oid| {
        let exts = signer.tbs_certificate.extensions.as_ref().unwrap();
        let ext = exts.iter().find(|e| e.extn_id == oid).unwrap();
        ext.extn_value.as_bytes().to_vec()
    };
    assert_eq!(ext_value(basic), [0x30, 0x00], "cA FALSE omitted");
    assert_eq!(
        ext_value(usage),
        [0x03, 0x02, 0x07, 0x80],
        "digitalSignature"
    );
    for (oid, value) in [
        (basic, vec![0x30, 0x03, 0x01, 0x01, 0x00]),
        (usage, vec![0x03, 0x02, 0x00, 0x80]),
    ] {
        // The same certificate with the DER value verifies: only the encoding differs.
        let same = with_extension_value(oid, &ext_value(oid));
        ok(verify_response(
            &p256_reply_for(&same, &Tst::new(&same).encode()),
            &expect.opts(),
        ));
        let cert = with_extension_value(oid, &value);
        let e = fails(
            verify_response(
                &p256_reply_for(&cert, &Tst::new(&cert).encode()),
                &expect.opts(),
            ),
            Rule::Chain,
        );
        assert!(
            matches!(&e, TokenError::ExtensionNotDer { oid: o, .. } if *o == oid),
            "{e}"
        );
    }
}

#[test]
fn rsa_pss_parameters_with_a_default_written_out() {
    // RSA-PSS parameters with trailerField 1 (the DEFAULT) written out.
    use rsa::pkcs8::DecodePrivateKey;
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let rsa_cert = cert!("tsa-rsa.pem");
    let rsa_key =
        rsa::RsaPrivateKey::from_pkcs8_pem(std::str::from_utf8(vector!("tsa-rsa.key")).unwrap())
            .unwrap();
    let key = Key::RsaPss(rsa_key);
    let (digest, mut alg) = key.scheme();
    let params = alg.parameters.unwrap().to_der().unwrap();
    let mut fields = elements(&params);
    assert!(fields.iter().all(|f| f[0] != 0xa3), "trailerField omitted");
    fields.push(tlv(0xa3, &[0x02, 0x01, 0x01]));
    alg.parameters = Some(Any::from_der(&sequence(&fields)).unwrap());
    let tst = Tst::new(&rsa_cert).encode();
    let template = TokenTemplate::new(&rsa_cert, &[], digest, alg).unwrap();
    let attrs = template.signed_attributes(&tst).unwrap();
    let reply = template
        .granted_response(&tst, &attrs, &key.sign(&attrs), true)
        .unwrap();
    let e = fails(verify_response(&reply, &expect.opts()), Rule::Signature);
    assert!(
        matches!(e, TokenError::Signature(SignatureProblem::BadParameters(_))),
        "{e}"
    );
}

#[test]
fn signed_attribute_values_must_be_der() {
    // A further signed attribute whose two values are out of DER order, signed.
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let value = |text: &str| Any::new(Tag::Utf8String, text.as_bytes()).unwrap();
    let with_values = |values: Vec<Any>| {
        edit(vector!("reply-p256-v2-certs.tsr"), |sd| {
            edit_signer_info(sd, |si| {
                let mut attrs = si.signed_attrs.clone().unwrap().into_vec();
                attrs.push(x509_cert::attr::Attribute {
                    oid: ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.3.2"),
                    values: SetOfVec::try_from(values).unwrap(),
                });
                si.signed_attrs = Some(SetOfVec::try_from(attrs).unwrap());
            });
            resign(sd);
        })
    };
    let sorted = with_values(vec![value("a"), value("b")]);
    ok(verify_response(&sorted, &expect.opts()));
    // SetOfVec sorts: swap the two values' octets in the encoding and sign again.
    let (a, b) = (value("a").to_der().unwrap(), value("b").to_der().unwrap());
    let swapped = |der: &[u8]| {
        let at = der
            .windows(a.len() + b.len())
            .position(|w| w == [a.as_slice(), b.as_slice()].concat())
            .unwrap();
        let mut out = der.to_vec();
        out[at..at + b.len()].copy_from_slice(&b);
        out[at + b.len()..at + a.len() + b.len()].copy_from_slice(&a);
        out
    };
    let unsorted = with_signer_info(&sorted, |si| {
        si[3] = swapped(&si[3]);
        let mut signed = si[3].clone();
        signed[0] = 0x31;
        let sig: p256::ecdsa::DerSignature = tsa_p256_key().sign(&signed);
        si[5] = OctetString::new(sig.to_vec()).unwrap().to_der().unwrap();
    });
    let e = fails(verify_response(&unsorted, &expect.opts()), Rule::Der);
    assert!(
        matches!(
            e,
            TokenError::NotDer {
                what: "signed attributes",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn what_no_type_reads_must_be_der_too() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let reply = vector!("reply-p256-v2-certs.tsr");
    // digestAlgorithms with SHA-384 before SHA-256: a SET OF out of order (neither is
    // signed, both are listed).
    let digest = |oid| {
        AlgorithmIdentifierOwned {
            oid,
            parameters: None,
        }
        .to_der()
        .unwrap()
    };
    let (sha256, sha384) = (
        digest(const_oid::db::rfc5912::ID_SHA_256),
        digest(const_oid::db::rfc5912::ID_SHA_384),
    );
    let with_digests = |algs: &[&Vec<u8>]| {
        with_signed_data(reply, |sd| {
            let contents: Vec<u8> = algs.iter().flat_map(|a| a.iter().copied()).collect();
            sd[1] = tlv(0x31, &contents);
        })
    };
    ok(verify_response(
        &with_digests(&[&sha256, &sha384]),
        &expect.opts(),
    ));
    let e = fails(
        verify_response(&with_digests(&[&sha384, &sha256]), &expect.opts()),
        Rule::Der,
    );
    assert!(
        matches!(
            e,
            TokenError::NotDer {
                what: "digestAlgorithms",
                ..
            }
        ),
        "{e}"
    );
    // A sid whose issuer name holds a BOOLEAN that is not DER (01 for TRUE): refused as
    // not DER before any certificate is looked for.
    let sid = with_signer_info(reply, |si| {
        let sid = elements(&si[1]);
        let mut rdns = elements(&sid[0]);
        let atv = sequence(&[
            ObjectIdentifier::new_unwrap("2.5.4.3").to_der().unwrap(),
            vec![0x01, 0x01, 0x01],
        ]);
        rdns.push(tlv(0x31, &atv));
        si[1] = sequence(&[sequence(&rdns), sid[1].clone()]);
    });
    let e = fails(verify_response(&sid, &expect.opts()), Rule::Der);
    assert!(matches!(e, TokenError::NotDer { what: "sid", .. }), "{e}");
    // A certificate the token carries (not on the path) whose subject holds the same
    // BOOLEAN: its type reads the value as any element, and re-encodes it as it came.
    let mut other = cert!("tsa-other.pem");
    let mut rdns = other.tbs_certificate.subject.0.clone();
    let atv = sequence(&[
        ObjectIdentifier::new_unwrap("2.5.4.3").to_der().unwrap(),
        vec![0x01, 0x01, 0x01],
    ]);
    rdns.push(x509_cert::name::RelativeDistinguishedName::from_der(&tlv(0x31, &atv)).unwrap());
    other.tbs_certificate.subject = x509_cert::name::RdnSequence(rdns);
    let carried = edit(reply, |sd| {
        let mut set = sd.certificates.clone().unwrap().0.into_vec();
        set.push(cms::cert::CertificateChoices::Certificate(other));
        sd.certificates = Some(cms::signed_data::CertificateSet(
            SetOfVec::try_from(set).unwrap(),
        ));
    });
    let e = fails(verify_response(&carried, &expect.opts()), Rule::Der);
    assert!(
        matches!(
            e,
            TokenError::NotDer {
                what: "certificate",
                ..
            }
        ),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------------------

/// Every truncation and a mutation of every byte of a reply and of a bare token: errors,
/// never panics (and a truncated input never verifies).
#[test]
fn truncated_and_mutated_der_never_panics() {
    let expect = Expect::for_request(vector!("req-cert.tsq"));
    let opts = TokenOptions {
        legacy_ess_v1: true,
        ..expect.opts()
    };
    for input in [
        vector!("reply-p256-v2-certs.tsr"),
        vector!("reply-p256-v1-certs.tsr"),
        vector!("token-p256-v2.tst"),
    ] {
        for len in 0..input.len() {
            assert!(verify_any(&input[..len], &opts).is_err(), "prefix {len}");
        }
        for at in 0..input.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = input.to_vec();
                bad[at] ^= flip;
                let _ = verify_any(&bad, &opts);
            }
        }
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Random edits (overwrite, insert, delete) of a good reply never panic.
        #[test]
        fn random_edits_never_panic(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6)
        ) {
            let expect = Expect::for_request(vector!("req-cert.tsq"));
            let mut der = vector!("reply-p256-v2-certs.tsr").to_vec();
            for (at, byte, kind) in edits {
                let at = at % (der.len() + 1);
                match kind {
                    0 if at < der.len() => der[at] = byte,
                    1 => der.insert(at, byte),
                    _ if at < der.len() => { der.remove(at); }
                    _ => {}
                }
            }
            let _ = verify_response(&der, &expect.opts());
            let _ = verify_any(&der, &expect.opts());
        }

        /// Arbitrary bytes never panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let expect = Expect::for_request(vector!("req-cert.tsq"));
            prop_assert!(verify_any(&bytes, &expect.opts()).is_err());
        }
    }
}
