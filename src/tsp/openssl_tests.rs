//! End to end, in software: a PKI made by the OpenSSL CLI (root, intermediate, TSA
//! certificate with extendedKeyUsage critical timeStamping), tokens built with
//! [`TokenTemplate`] around a software signature, checked by `openssl ts -verify` and
//! `openssl ts -reply -text`, and taken apart to check the DER rules of TSA-PROFILE.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef, SetOfVec};
use der::{Decode, DecodePem, Encode, Reader, SliceReader, Tag, Tagged};
use signature::{SignatureEncoding, Signer};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute as X509Attribute;
use x509_cert::Certificate;

use super::asn1::{EssCertIdV2, SignedContentInfo, SigningCertificateV2, TimeStampResp};
use super::*;

const OPENSSL: &str = "/usr/bin/openssl";
const POLICY: &str = "1.3.6.1.4.1.99999.1.1";

/// The OpenSSL configuration of the test PKI's certificate extensions.
const PKI_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[root_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[int_ext]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[tsa_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// The signing key types of the test.
#[derive(Clone, Copy, Debug)]
enum KeyKind {
    P256,
    P384,
    Rsa2048,
}

impl KeyKind {
    fn genpkey_args(self) -> &'static str {
        match self {
            KeyKind::P256 => "-algorithm EC -pkeyopt ec_paramgen_curve:P-256",
            KeyKind::P384 => "-algorithm EC -pkeyopt ec_paramgen_curve:P-384",
            KeyKind::Rsa2048 => "-algorithm RSA -pkeyopt rsa_keygen_bits:2048",
        }
    }

    /// The messageDigest algorithm and the SignerInfo signatureAlgorithm.
    fn scheme(self) -> (HashAlgorithm, AlgorithmIdentifierOwned) {
        use const_oid::db::rfc5912;
        let (digest, oid, null) = match self {
            KeyKind::P256 => (HashAlgorithm::Sha256, rfc5912::ECDSA_WITH_SHA_256, false),
            KeyKind::P384 => (HashAlgorithm::Sha384, rfc5912::ECDSA_WITH_SHA_384, false),
            KeyKind::Rsa2048 => (
                HashAlgorithm::Sha256,
                rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
                true,
            ),
        };
        let parameters = null.then(|| der::Any::from(der::asn1::Null));
        (digest, AlgorithmIdentifierOwned { oid, parameters })
    }

    /// Signs `msg` with the PKCS#8 PEM key, as the HSM would (hash, then sign).
    fn sign(self, key_pem: &str, msg: &[u8]) -> Vec<u8> {
        use p256::pkcs8::DecodePrivateKey;
        match self {
            KeyKind::P256 => {
                let key = p256::ecdsa::SigningKey::from_pkcs8_pem(key_pem).unwrap();
                let sig: p256::ecdsa::DerSignature = key.sign(msg);
                sig.to_vec()
            }
            KeyKind::P384 => {
                let key = p384::ecdsa::SigningKey::from_pkcs8_pem(key_pem).unwrap();
                let sig: p384::ecdsa::DerSignature = key.sign(msg);
                sig.to_vec()
            }
            KeyKind::Rsa2048 => {
                let key = rsa::RsaPrivateKey::from_pkcs8_pem(key_pem).unwrap();
                let key = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key);
                key.sign(msg).to_vec()
            }
        }
    }
}

/// A PKI in a temporary directory: root → intermediate → TSA certificate.
struct Pki {
    dir: tempfile::TempDir,
    kind: KeyKind,
    root: Certificate,
    intermediate: Certificate,
    tsa: Certificate,
    tsa_key: String,
}

fn run(dir: &Path, args: &str) -> String {
    let out = Command::new(OPENSSL)
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn make_pki(kind: KeyKind) -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("pki.cnf"), PKI_CNF).unwrap();
    let ec = KeyKind::P256.genpkey_args();
    run(d, &format!("genpkey {ec} -out root.key"));
    run(d, &format!("genpkey {ec} -out int.key"));
    run(d, &format!("genpkey {} -out tsa.key", kind.genpkey_args()));
    run(
        d,
        "req -x509 -new -config pki.cnf -extensions root_ext -key root.key -days 3650 \
         -subj /CN=auditstamp-test-root -out root.pem",
    );
    run(
        d,
        "req -new -config pki.cnf -key int.key -subj /CN=auditstamp-test-intermediate -out int.csr",
    );
    run(
        d,
        "x509 -req -in int.csr -CA root.pem -CAkey root.key -set_serial 2 -days 3650 \
         -extfile pki.cnf -extensions int_ext -out int.pem",
    );
    run(d, "req -new -config pki.cnf -key tsa.key -subj /C=DE/O=auditstamp/CN=auditstamp-test-TSA -out tsa.csr");
    run(
        d,
        "x509 -req -in tsa.csr -CA int.pem -CAkey int.key -set_serial 0x00c0ffee0123456789 \
         -days 3650 -extfile pki.cnf -extensions tsa_ext -out tsa.pem",
    );
    let cert = |name: &str| Certificate::from_pem(std::fs::read(d.join(name)).unwrap()).unwrap();
    Pki {
        kind,
        root: cert("root.pem"),
        intermediate: cert("int.pem"),
        tsa: cert("tsa.pem"),
        tsa_key: std::fs::read_to_string(d.join("tsa.key")).unwrap(),
        dir,
    }
}

impl Pki {
    fn template(&self) -> TokenTemplate {
        let (digest, alg) = self.kind.scheme();
        // Root first, the signer certificate and a duplicate in the chain: tolerated.
        let chain = [
            self.root.clone(),
            self.tsa.clone(),
            self.intermediate.clone(),
            self.root.clone(),
        ];
        TokenTemplate::new(&self.tsa, &chain, digest, alg).unwrap()
    }

    /// Answers `request` as the TSA would; returns the reply's DER.
    fn answer(&self, template: &TokenTemplate, request: &[u8], serial: u128) -> Vec<u8> {
        let rules = RequestRules {
            accepted_hashes: HashAlgorithm::ALL.to_vec(),
            accepted_policies: vec![],
            default_policy: POLICY.parse().unwrap(),
        };
        let req = parse_request(request, &rules).unwrap();
        let accuracy = Accuracy::new(0, 0, 500).unwrap();
        let tst_info = encode_tst_info(&TstParams {
            policy: &req.policy,
            hash: req.hash,
            hash_params_null: true,
            digest: &req.digest,
            serial,
            gen_time: GenTime::from_system_time(std::time::SystemTime::now()).unwrap(),
            accuracy: &accuracy,
            nonce: req.nonce.as_ref(),
            tsa_name: Some(template.subject()),
        })
        .unwrap();
        let signed_attrs = template.signed_attributes(&tst_info).unwrap();
        let signature = self.kind.sign(&self.tsa_key, &signed_attrs);
        template
            .granted_response(&tst_info, &signed_attrs, &signature, req.cert_req)
            .unwrap()
    }

    /// `openssl ts -verify` of `reply` against `request`, trusting only the root; the
    /// intermediate and TSA certificate are given as untrusted when the token lacks them.
    fn openssl_verify(&self, request: &[u8], reply: &[u8], with_untrusted: bool) -> String {
        let d = self.dir.path();
        std::fs::write(d.join("req.tsq"), request).unwrap();
        std::fs::write(d.join("reply.tsr"), reply).unwrap();
        let mut args = "ts -verify -in reply.tsr -queryfile req.tsq -CAfile root.pem".to_string();
        if with_untrusted {
            let chain = [
                std::fs::read(d.join("tsa.pem")).unwrap(),
                std::fs::read(d.join("int.pem")).unwrap(),
            ]
            .concat();
            std::fs::write(d.join("untrusted.pem"), chain).unwrap();
            args.push_str(" -untrusted untrusted.pem");
        }
        run(d, &args)
    }

    fn openssl_text(&self, reply: &[u8]) -> String {
        let d = self.dir.path();
        std::fs::write(d.join("text.tsr"), reply).unwrap();
        run(d, "ts -reply -in text.tsr -text")
    }
}

macro_rules! vector {
    ($name:literal) => {
        &include_bytes!(concat!("../../tests/vectors/tsp/", $name))[..]
    };
}

/// The SignedData of a reply, as this module's own types read it.
fn signed_content(reply: &[u8]) -> SignedContentInfo<'_> {
    TimeStampResp::from_der(reply)
        .unwrap()
        .time_stamp_token
        .unwrap()
}

/// The elements of a DER SET OF in the order they are written, checked to be in DER order
/// (strictly increasing octets, so no duplicates).
fn raw_set_elements(contents: &[u8]) -> Vec<Vec<u8>> {
    let mut reader = SliceReader::new(contents).unwrap();
    let mut elements: Vec<Vec<u8>> = Vec::new();
    while !reader.is_finished() {
        elements.push(reader.tlv_bytes().unwrap().to_vec());
    }
    for pair in elements.windows(2) {
        assert!(pair[0] < pair[1], "SET OF not in DER order");
    }
    elements
}

fn end_to_end(kind: KeyKind) {
    let pki = make_pki(kind);
    let template = pki.template();
    // (request, token carries certificates)
    let cases = [
        (vector!("req-sha256-cert.tsq"), true),
        (vector!("req-sha256.tsq"), false),
        (vector!("req-sha384.tsq"), false),
        (vector!("req-sha512.tsq"), false),
        (vector!("req-sha256-nononce.tsq"), false),
    ];
    for (serial, (request, cert_req)) in (1u128..).zip(cases) {
        let reply = pki.answer(&template, request, serial << 64 | 0xfeed);
        let verified = pki.openssl_verify(request, &reply, !cert_req);
        assert!(
            verified.contains("Verification: OK"),
            "{kind:?}: {verified}"
        );
        let text = pki.openssl_text(&reply);
        assert!(text.contains("Status: Granted."), "{text}");
        assert!(text.contains(&format!("Policy OID: {POLICY}")), "{text}");
        assert!(
            text.contains("Accuracy: unspecified seconds, unspecified millis, 0x01F4 micros"),
            "{text}"
        );
        assert!(
            text.contains("TSA: DirName:/C=DE/O=auditstamp/CN=auditstamp-test-TSA"),
            "{text}"
        );

        // Read back through the public API.
        let st = decode_response_status(&reply).unwrap();
        assert_eq!((st.status, st.fail_info), (0, None));
        let info = decode_tst_info_from_token(&st.token.unwrap()).unwrap();
        assert_eq!(info.serial_u128(), Some(serial << 64 | 0xfeed));
        let theirs = x509_tsp::TimeStampReq::from_der(request).unwrap();
        assert_eq!(info.nonce, theirs.nonce);
        assert_eq!(
            info.digest,
            theirs.message_imprint.hashed_message.as_bytes()
        );

        // certReq decides whether certificates are present.
        let sd = signed_content(&reply).content;
        assert_eq!(sd.certificates.is_some(), cert_req);
    }
    // Without the intermediate, a token lacking certificates does not verify: the check
    // above is not vacuous.
    let request = vector!("req-sha256.tsq");
    let reply = pki.answer(&template, request, 99);
    let d = pki.dir.path();
    std::fs::write(d.join("req.tsq"), request).unwrap();
    std::fs::write(d.join("reply.tsr"), &reply).unwrap();
    let out = Command::new(OPENSSL)
        .args([
            "ts",
            "-verify",
            "-in",
            "reply.tsr",
            "-queryfile",
            "req.tsq",
            "-CAfile",
            "root.pem",
        ])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn openssl_verifies_p256_tokens() {
    end_to_end(KeyKind::P256);
}

#[test]
fn openssl_verifies_p384_tokens() {
    end_to_end(KeyKind::P384);
}

#[test]
fn openssl_verifies_rsa_tokens() {
    end_to_end(KeyKind::Rsa2048);
}

#[test]
fn a_tampered_token_does_not_verify() {
    let pki = make_pki(KeyKind::P256);
    let template = pki.template();
    let request = vector!("req-sha256-cert.tsq");
    let reply = pki.answer(&template, request, 7);
    // Flip one bit of the signature (the last byte of the reply).
    let mut bad = reply.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let d = pki.dir.path();
    std::fs::write(d.join("req.tsq"), request).unwrap();
    std::fs::write(d.join("reply.tsr"), &bad).unwrap();
    let out = Command::new(OPENSSL)
        .args([
            "ts",
            "-verify",
            "-in",
            "reply.tsr",
            "-queryfile",
            "req.tsq",
            "-CAfile",
            "root.pem",
        ])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn token_structure_follows_the_profile() {
    let pki = make_pki(KeyKind::P256);
    let template = pki.template();
    let reply = pki.answer(&template, vector!("req-sha256-cert.tsq"), 42);

    // certificates(): signer first, then the chain with the root, each once.
    assert_eq!(
        template.certificates(),
        [pki.tsa.clone(), pki.root.clone(), pki.intermediate.clone()]
    );
    assert_eq!(template.signer_certificate(), &pki.tsa);
    assert_eq!(template.subject(), &pki.tsa.tbs_certificate.subject);
    assert!(format!("{template:?}").contains("auditstamp-test-TSA"));

    let ci = signed_content(&reply);
    assert_eq!(ci.content_type, oid::ID_SIGNED_DATA);
    let sd = ci.content;
    assert_eq!(sd.version, 3);
    assert_eq!(
        hex::encode(sd.digest_algorithms.as_bytes()),
        "310d300b0609608648016503040201",
        "SET OF {{ sha256, parameters absent }}"
    );
    assert_eq!(sd.encap_content_info.econtent_type, oid::ID_CT_TST_INFO);

    // The certificate SET: signer and intermediate, no root, in DER order.
    let certs = raw_set_elements(sd.certificates.unwrap().contents());
    let mut expected = vec![
        pki.tsa.to_der().unwrap(),
        pki.intermediate.to_der().unwrap(),
    ];
    expected.sort();
    assert_eq!(certs, expected);

    // The one SignerInfo.
    let si = sd.signer_infos.0;
    assert_eq!(si.version, 1);
    let sid = cms::cert::IssuerAndSerialNumber::from_der(si.sid.as_bytes()).unwrap();
    assert_eq!(sid.issuer, pki.tsa.tbs_certificate.issuer);
    assert_eq!(sid.serial_number, pki.tsa.tbs_certificate.serial_number);
    assert_eq!(
        hex::encode(si.signature_algorithm.as_bytes()),
        "300a06082a8648ce3d040302",
        "ecdsa-with-SHA256, parameters absent"
    );

    // Signed attributes: the three of the profile, in DER order, and exactly the bytes
    // signed_attributes() returns for this TSTInfo.
    let tst_info = sd.encap_content_info.econtent.unwrap().as_bytes();
    let signed = template.signed_attributes(tst_info).unwrap();
    assert_eq!(signed[0], 0x31);
    let attrs_contents = si.signed_attrs.contents();
    assert_eq!(
        SetOfVec::<X509Attribute>::from_der(&signed)
            .unwrap()
            .to_der()
            .unwrap(),
        signed
    );
    let attrs: Vec<X509Attribute> = raw_set_elements(attrs_contents)
        .iter()
        .map(|a| X509Attribute::from_der(a).unwrap())
        .collect();
    assert_eq!(
        &signed[signed.len() - attrs_contents.len()..],
        attrs_contents
    );
    let types: Vec<ObjectIdentifier> = attrs.iter().map(|a| a.oid).collect();
    assert_eq!(
        types,
        [
            oid::ID_CONTENT_TYPE,
            oid::ID_MESSAGE_DIGEST,
            oid::ID_AA_SIGNING_CERTIFICATE_V2
        ]
    );
    let value = |i: usize| -> Vec<u8> {
        assert_eq!(attrs[i].values.len(), 1);
        attrs[i].values.get(0).unwrap().to_der().unwrap()
    };
    assert_eq!(
        ObjectIdentifier::from_der(&value(0)).unwrap(),
        oid::ID_CT_TST_INFO
    );
    assert_eq!(
        OctetStringRef::from_der(&value(1)).unwrap().as_bytes(),
        HashAlgorithm::Sha256.digest(tst_info)
    );
    let ess = value(2);
    let ess = SigningCertificateV2::from_der(&ess).unwrap();
    assert_eq!(ess.certs.len(), 1);
    assert!(ess.policies.is_none());
    let EssCertIdV2 {
        hash_algorithm,
        cert_hash,
        issuer_serial,
    } = &ess.certs[0];
    assert!(hash_algorithm.is_none(), "SHA-256 is the default: omitted");
    assert_eq!(
        cert_hash.as_bytes(),
        HashAlgorithm::Sha256.digest(&pki.tsa.to_der().unwrap())
    );
    let issuer_serial = issuer_serial.as_ref().unwrap();
    assert_eq!(
        issuer_serial.issuer,
        vec![x509_cert::ext::pkix::name::GeneralName::DirectoryName(
            pki.tsa.tbs_certificate.issuer.clone()
        )]
    );
    assert_eq!(
        issuer_serial.serial_number,
        pki.tsa.tbs_certificate.serial_number
    );

    // The reply is strict DER all through: the cms crate re-encodes it to the same bytes.
    let token = decode_response_status(&reply).unwrap().token.unwrap();
    // The issuer's shortcut to the token finds the same bytes, and only in a grant.
    assert_eq!(crate::tsp::granted_token(&reply).unwrap(), token.as_slice());
    let refused = crate::tsp::rejection_response(&crate::tsp::Rejection {
        fail: crate::tsp::FailureInfo::BadAlg,
        text: "no".into(),
    });
    assert!(crate::tsp::granted_token(&refused).is_err());
    assert!(crate::tsp::granted_token(&[reply.as_slice(), &[0]].concat()).is_err());
    let ci = cms::content_info::ContentInfo::from_der(&token).unwrap();
    assert_eq!(ci.to_der().unwrap(), token);
    let cms_sd: cms::signed_data::SignedData = ci.content.decode_as().unwrap();
    assert_eq!(cms_sd.to_der().unwrap(), ci.content.to_der().unwrap());
    // ... and x509-tsp reads the response around it.
    x509_tsp::TimeStampResp::from_der(&reply).unwrap();
}

#[test]
fn no_certificates_when_cert_req_is_false() {
    let pki = make_pki(KeyKind::P256);
    let template = pki.template();
    let reply = pki.answer(&template, vector!("req-sha256.tsq"), 5);
    let token = decode_response_status(&reply).unwrap().token.unwrap();
    let ci = cms::content_info::ContentInfo::from_der(&token).unwrap();
    let sd: cms::signed_data::SignedData = ci.content.decode_as().unwrap();
    assert!(sd.certificates.is_none());
    assert!(sd.crls.is_none());
    // No [0] element between encapContentInfo and signerInfos at all.
    let ours = signed_content(&reply).content;
    assert!(ours.certificates.is_none());
}

#[test]
fn a_signer_alone_without_chain() {
    let pki = make_pki(KeyKind::P256);
    let (digest, alg) = KeyKind::P256.scheme();
    let template = TokenTemplate::new(&pki.tsa, &[], digest, alg).unwrap();
    assert_eq!(template.certificates(), std::slice::from_ref(&pki.tsa));
    let reply = pki.answer(&template, vector!("req-sha256-cert.tsq"), 5);
    let certs = raw_set_elements(
        signed_content(&reply)
            .content
            .certificates
            .unwrap()
            .contents(),
    );
    assert_eq!(certs, [pki.tsa.to_der().unwrap()]);
    // The intermediate is then needed from elsewhere.
    let verified = pki.openssl_verify(vector!("req-sha256-cert.tsq"), &reply, true);
    assert!(verified.contains("Verification: OK"), "{verified}");
}

#[test]
fn granted_response_refuses_mismatched_inputs() {
    let pki = make_pki(KeyKind::P256);
    let template = pki.template();
    let policy = POLICY.parse::<ObjectIdentifier>().unwrap();
    let accuracy = Accuracy::new(1, 0, 0).unwrap();
    let tst = |serial| {
        encode_tst_info(&TstParams {
            policy: &policy,
            hash: HashAlgorithm::Sha256,
            hash_params_null: true,
            digest: &[1; 32],
            serial,
            gen_time: GenTime::from_unix_millis(1_700_000_000_000),
            accuracy: &accuracy,
            nonce: None,
            tsa_name: None,
        })
        .unwrap()
    };
    let (a, b) = (tst(1), tst(2));
    let attrs_a = template.signed_attributes(&a).unwrap();
    assert!(matches!(
        template.granted_response(&b, &attrs_a, &[0x30, 0x00], true),
        Err(TspError::SignedAttributesMismatch)
    ));
    assert!(template.granted_response(&a, &attrs_a, &[], true).is_err());
    assert!(template
        .granted_response(&[a.as_slice(), &[0]].concat(), &attrs_a, &[1], true)
        .is_err());
    assert!(template.granted_response(&a, &attrs_a, &[1], true).is_ok());
    // Deterministic: the same inputs give the same bytes.
    assert_eq!(
        template
            .granted_response(&a, &attrs_a, &[1], false)
            .unwrap(),
        template
            .granted_response(&a, &attrs_a, &[1], false)
            .unwrap()
    );
}

#[test]
fn self_signed_detection() {
    let pki = make_pki(KeyKind::P256);
    assert!(super::token::is_self_signed(&pki.root));
    assert!(!super::token::is_self_signed(&pki.intermediate));
    assert!(!super::token::is_self_signed(&pki.tsa));
    // The signer certificate is in tokens even when it is self-signed.
    let (digest, alg) = KeyKind::P256.scheme();
    let template =
        TokenTemplate::new(&pki.root, std::slice::from_ref(&pki.root), digest, alg).unwrap();
    let attrs = template.signed_attributes(&[0x30, 0x00]).unwrap();
    let reply = template
        .granted_response(&[0x30, 0x00], &attrs, &[1], true)
        .unwrap();
    let certs = raw_set_elements(
        signed_content(&reply)
            .content
            .certificates
            .unwrap()
            .contents(),
    );
    assert_eq!(certs, [pki.root.to_der().unwrap()]);
}

#[test]
fn token_any_ref_is_a_sequence() {
    // decode_response_status hands back the token's exact bytes.
    let pki = make_pki(KeyKind::P256);
    let reply = pki.answer(&pki.template(), vector!("req-sha256.tsq"), 3);
    let token = decode_response_status(&reply).unwrap().token.unwrap();
    let any = AnyRef::from_der(&token).unwrap();
    assert_eq!(any.tag(), Tag::Sequence);
    assert!(reply.ends_with(&token));
}

#[test]
fn request_with_absent_hash_parameters_verifies() {
    // RFC 5754 lets clients omit the SHA-2 parameters; the TSTInfo writes NULL (see
    // encode_tst_info) and OpenSSL accepts either form on both sides.
    use super::asn1::{MessageImprint, TimeStampReq};
    let digest = HashAlgorithm::Sha256.digest(b"absent parameters");
    let request = TimeStampReq {
        version: der::asn1::IntRef::new(&[1]).unwrap(),
        message_imprint: MessageImprint {
            hash_algorithm: HashAlgorithm::Sha256.identifier_absent_params(),
            hashed_message: OctetStringRef::new(&digest).unwrap(),
        },
        req_policy: None,
        nonce: Some(der::asn1::IntRef::new(&[0x01, 0x02]).unwrap()),
        cert_req: Some(true),
        extensions: None,
    }
    .to_der()
    .unwrap();
    let pki = make_pki(KeyKind::P256);
    let reply = pki.answer(&pki.template(), &request, 11);
    let verified = pki.openssl_verify(&request, &reply, false);
    assert!(verified.contains("Verification: OK"), "{verified}");
}
