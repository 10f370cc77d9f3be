//! Provisioning against SoftHSM, with OpenSSL as the independent judge of the
//! certificates.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use const_oid::db::rfc5280::{ID_KP_SERVER_AUTH, ID_KP_TIME_STAMPING};
use der::{Decode, Encode, EncodePem};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::ext::pkix::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::Certificate;

use super::certs::{extension, leaf_extensions, load_dev_ca, sign_certificate, CertTemplate};
use super::*;
use crate::signer::soft_verify::SoftVerifier;
use crate::signer::testsupport;
use crate::signer::{Hsm, KeyAlgorithm, KeyInfo, KeyPurpose};

const OPENSSL: &str = "/usr/bin/openssl";
const CA_SUBJECT: &str = "CN=auditstamp development CA,O=Audit Office,C=DE";
const HOUR: Duration = Duration::from_secs(3600);

fn write_pem(dir: &Path, name: &str, cert: &Certificate) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, cert.to_pem(der::pem::LineEnding::LF).unwrap()).unwrap();
    path
}

fn openssl(args: &[&str]) -> (bool, String) {
    assert!(
        Path::new(OPENSSL).is_file(),
        "{OPENSSL} is missing: apt-get install openssl"
    );
    let out = Command::new(OPENSSL).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `openssl verify -purpose timestampsign` of `leaf` under `ca`.
fn openssl_verifies_for_timestamping(ca: &Certificate, leaf: &Certificate) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = write_pem(dir.path(), "ca.pem", ca);
    let leaf_pem = write_pem(dir.path(), "tsa.pem", leaf);
    openssl(&[
        "verify",
        "-CAfile",
        ca_pem.to_str().unwrap(),
        "-purpose",
        "timestampsign",
        leaf_pem.to_str().unwrap(),
    ])
}

fn self_signature_verifies(cert: &Certificate) {
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .unwrap();
    SoftVerifier::from_spki_der(&spki)
        .unwrap()
        .verify(
            &cert.tbs_certificate.to_der().unwrap(),
            cert.signature.raw_bytes(),
        )
        .unwrap();
}

/// A leaf for `key` from the dev CA with the given extensions and validity.
fn leaf_with(
    hsm: &Hsm,
    key: &KeyInfo,
    extensions: Vec<Extension>,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Certificate {
    let ca = load_dev_ca(hsm, "dev-ca").unwrap();
    sign_certificate(
        hsm,
        &ca.key,
        CertTemplate {
            subject: parse_subject("CN=variant,O=Audit Office,C=DE").unwrap(),
            issuer: ca.cert.tbs_certificate.subject.clone(),
            not_before,
            not_after,
            subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(&key.public_key_der)
                .unwrap(),
            extensions,
        },
    )
    .unwrap()
}

#[test]
fn dev_ca_is_idempotent_and_a_proper_root() {
    let hsm = testsupport::new_token().open();
    let first = ensure_dev_ca(&hsm, "dev-ca", CA_SUBJECT, 3650, SystemTime::now()).unwrap();
    let again = ensure_dev_ca(&hsm, "dev-ca", "CN=ignored", 1, SystemTime::now()).unwrap();
    assert_eq!(first, again);
    assert_eq!(hsm.list_keys().unwrap().len(), 1);

    let key = hsm.find_key("dev-ca").unwrap();
    assert_eq!(key.algorithm, KeyAlgorithm::EcdsaP256);
    assert_eq!(key.purpose, Some(KeyPurpose::DevCa));
    assert!(cert_matches_key(&first, &key));
    assert_eq!(
        hsm.find_certificate(&key).unwrap(),
        Some(first.to_der().unwrap())
    );

    let tbs = &first.tbs_certificate;
    assert_eq!(tbs.subject, tbs.issuer);
    assert_eq!(tbs.subject.to_string(), CA_SUBJECT);
    assert_eq!(tbs.serial_number.as_bytes().len(), 16);
    let (critical, bc) = tbs.get::<BasicConstraints>().unwrap().unwrap();
    assert!(critical && bc.ca);
    let (critical, ku) = tbs.get::<KeyUsage>().unwrap().unwrap();
    assert!(critical && ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
    assert!(tbs.get::<SubjectKeyIdentifier>().unwrap().is_some());
    self_signature_verifies(&first);

    let (ok, text) = {
        let dir = tempfile::tempdir().unwrap();
        let pem = write_pem(dir.path(), "ca.pem", &first);
        let pem = pem.to_str().unwrap();
        openssl(&["verify", "-CAfile", pem, pem])
    };
    assert!(ok, "openssl refused the dev CA: {text}");

    // A key of another purpose is never taken for the CA.
    hsm.generate_key("tsa", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
        .unwrap();
    let err = ensure_dev_ca(&hsm, "tsa", CA_SUBJECT, 10, SystemTime::now()).unwrap_err();
    assert!(matches!(err, ProvisionError::NotADevCa { .. }), "{err}");
    let err = ensure_dev_ca(&hsm, "dev-ca-2", "CN=x,Bogus=y", 10, SystemTime::now()).unwrap_err();
    assert!(err.to_string().contains("Bogus=y"), "{err}");
}

#[test]
fn issued_tsa_certificate_satisfies_openssl_and_our_checks() {
    let hsm = testsupport::new_token().open();
    let ca = ensure_dev_ca(&hsm, "dev-ca", CA_SUBJECT, 3650, SystemTime::now()).unwrap();
    let key = hsm
        .generate_key("tsa-1", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
        .unwrap();
    let cert = issue_dev_cert(
        &hsm,
        "dev-ca",
        "tsa-1",
        "CN=TSA 1,O=Audit Office,C=DE",
        365,
        SystemTime::now(),
    )
    .unwrap();

    let (ok, text) = openssl_verifies_for_timestamping(&ca, &cert);
    assert!(ok && text.contains("OK"), "openssl verify failed: {text}");

    let dir = tempfile::tempdir().unwrap();
    let pem = write_pem(dir.path(), "tsa.pem", &cert);
    let (ok, text) = openssl(&["x509", "-in", pem.to_str().unwrap(), "-noout", "-text"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("X509v3 Extended Key Usage: critical"),
        "{text}"
    );
    assert!(text.contains("Time Stamping"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(
        text.contains("Digital Signature, Non Repudiation"),
        "{text}"
    );
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");

    let now = SystemTime::now();
    check_tsa_certificate(&cert, now).unwrap();
    assert!(cert_matches_key(&cert, &key));
    assert_eq!(
        hsm.find_certificate(&key).unwrap(),
        Some(cert.to_der().unwrap())
    );
    let other = hsm
        .generate_key("tsa-2", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
        .unwrap();
    assert!(!cert_matches_key(&cert, &other));
    assert!(!cert_matches_key(&ca, &key));

    // The validity never outlives the CA's.
    let long = issue_dev_cert(
        &hsm,
        "dev-ca",
        "tsa-2",
        "CN=TSA 2",
        100_000,
        SystemTime::now(),
    )
    .unwrap();
    assert_eq!(
        long.tbs_certificate.validity.not_after,
        ca.tbs_certificate.validity.not_after
    );

    // Issuing again replaces the stored certificate.
    let renewed = issue_dev_cert(
        &hsm,
        "dev-ca",
        "tsa-1",
        "CN=TSA 1 renewed",
        30,
        SystemTime::now(),
    )
    .unwrap();
    assert_eq!(
        hsm.find_certificate(&key).unwrap(),
        Some(renewed.to_der().unwrap())
    );

    // Neither the CA key nor a missing key gets a leaf.
    assert!(matches!(
        issue_dev_cert(&hsm, "dev-ca", "dev-ca", "CN=x", 1, SystemTime::now()),
        Err(ProvisionError::InvalidRequest(_))
    ));
    assert!(matches!(
        issue_dev_cert(&hsm, "dev-ca", "absent", "CN=x", 1, SystemTime::now()),
        Err(ProvisionError::Signer(
            crate::signer::SignerError::KeyNotFound(_)
        ))
    ));
    assert!(matches!(
        issue_dev_cert(&hsm, "tsa-1", "tsa-2", "CN=x", 1, SystemTime::now()),
        Err(ProvisionError::NotADevCa { .. })
    ));
}

#[test]
fn rsa_and_ed25519_keys_get_certificates_too() {
    let hsm = testsupport::new_token().open();
    let ca = ensure_dev_ca(&hsm, "dev-ca", CA_SUBJECT, 3650, SystemTime::now()).unwrap();
    hsm.generate_key("tsa-rsa", KeyAlgorithm::Rsa(2048), KeyPurpose::Tsa)
        .unwrap();
    let cert = issue_dev_cert(
        &hsm,
        "dev-ca",
        "tsa-rsa",
        "CN=TSA RSA",
        365,
        SystemTime::now(),
    )
    .unwrap();
    let (ok, text) = openssl_verifies_for_timestamping(&ca, &cert);
    assert!(ok, "openssl verify failed: {text}");
    check_tsa_certificate(&cert, SystemTime::now()).unwrap();

    // A chain key gets no extendedKeyUsage, so it can never pass as a TSA certificate.
    hsm.generate_key("chain", KeyAlgorithm::Ed25519, KeyPurpose::Chain)
        .unwrap();
    let cert = issue_dev_cert(&hsm, "dev-ca", "chain", "CN=Chain", 365, SystemTime::now()).unwrap();
    assert!(cert
        .tbs_certificate
        .get::<ExtendedKeyUsage>()
        .unwrap()
        .is_none());
    assert!(matches!(
        check_tsa_certificate(&cert, SystemTime::now()),
        Err(ProvisionError::EkuMissing)
    ));
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = write_pem(dir.path(), "ca.pem", &ca);
    let pem = write_pem(dir.path(), "chain.pem", &cert);
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        ca_pem.to_str().unwrap(),
        pem.to_str().unwrap(),
    ]);
    assert!(ok, "openssl verify of the Ed25519 leaf failed: {text}");
}

#[test]
fn check_tsa_certificate_refuses_unfit_certificates() {
    let hsm = testsupport::new_token().open();
    let ca = ensure_dev_ca(&hsm, "dev-ca", CA_SUBJECT, 3650, SystemTime::now()).unwrap();
    let key = hsm
        .generate_key("tsa", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
        .unwrap();
    let ca_key_id = load_dev_ca(&hsm, "dev-ca").unwrap().key_id;
    let spki = SubjectPublicKeyInfoOwned::from_der(&key.public_key_der).unwrap();
    let good = leaf_extensions(&key, &spki, &ca_key_id).unwrap();
    let now = SystemTime::now();
    let (from, to) = (now - HOUR, now + 24 * HOUR);
    let eku_index = good
        .iter()
        .position(|e| e.extn_id == ID_CE_EXT_KEY_USAGE)
        .unwrap();

    // The reference certificate passes.
    let fine = leaf_with(&hsm, &key, good.clone(), from, to);
    check_tsa_certificate(&fine, now).unwrap();
    assert!(openssl_verifies_for_timestamping(&ca, &fine).0);

    // No extendedKeyUsage.
    let mut exts = good.clone();
    exts.remove(eku_index);
    let cert = leaf_with(&hsm, &key, exts, from, to);
    assert!(matches!(
        check_tsa_certificate(&cert, now),
        Err(ProvisionError::EkuMissing)
    ));
    assert!(!openssl_verifies_for_timestamping(&ca, &cert).0);

    // A non-critical extendedKeyUsage: OpenSSL refuses it as well.
    let mut exts = good.clone();
    exts[eku_index].critical = false;
    let cert = leaf_with(&hsm, &key, exts, from, to);
    let err = check_tsa_certificate(&cert, now).unwrap_err();
    assert!(matches!(err, ProvisionError::EkuNotCritical), "{err}");
    assert!(err.to_string().contains("not critical"));
    assert!(!openssl_verifies_for_timestamping(&ca, &cert).0);

    // timeStamping plus another purpose.
    let mut exts = good.clone();
    exts[eku_index] = extension(
        &ExtendedKeyUsage(vec![ID_KP_TIME_STAMPING, ID_KP_SERVER_AUTH]),
        true,
    )
    .unwrap();
    let cert = leaf_with(&hsm, &key, exts, from, to);
    assert!(matches!(
        check_tsa_certificate(&cert, now),
        Err(ProvisionError::EkuNotSoleTimeStamping { .. })
    ));

    // The extendedKeyUsage twice.
    let mut exts = good.clone();
    exts.push(good[eku_index].clone());
    let cert = leaf_with(&hsm, &key, exts, from, to);
    assert!(matches!(
        check_tsa_certificate(&cert, now),
        Err(ProvisionError::DuplicateExtension(_))
    ));

    // A keyUsage that allows certificate signing.
    let mut exts = good.clone();
    let ku_index = exts
        .iter()
        .position(|e| e.extn_id == ID_CE_KEY_USAGE)
        .unwrap();
    exts[ku_index] = extension(
        &KeyUsage(KeyUsages::DigitalSignature | KeyUsages::KeyCertSign),
        true,
    )
    .unwrap();
    let cert = leaf_with(&hsm, &key, exts, from, to);
    assert!(matches!(
        check_tsa_certificate(&cert, now),
        Err(ProvisionError::KeyUsageNotAllowed)
    ));

    // A CA certificate.
    let mut exts = good.clone();
    exts[0] = extension(
        &BasicConstraints {
            ca: true,
            path_len_constraint: None,
        },
        true,
    )
    .unwrap();
    let cert = leaf_with(&hsm, &key, exts, from, to);
    assert!(matches!(
        check_tsa_certificate(&cert, now),
        Err(ProvisionError::CertificateIsCa)
    ));

    // Expired, and not yet valid.
    let cert = leaf_with(&hsm, &key, good.clone(), now - 48 * HOUR, now - 24 * HOUR);
    let err = check_tsa_certificate(&cert, now).unwrap_err();
    assert!(matches!(err, ProvisionError::Expired(_)), "{err}");
    assert!(!openssl_verifies_for_timestamping(&ca, &cert).0);
    let err = check_tsa_certificate(&fine, now - 2 * HOUR).unwrap_err();
    assert!(matches!(err, ProvisionError::NotYetValid(_)), "{err}");

    // The CA certificate itself is no TSA certificate.
    assert!(check_tsa_certificate(&ca, now).is_err());
}

const ID_CE_EXT_KEY_USAGE: const_oid::ObjectIdentifier =
    const_oid::db::rfc5280::ID_CE_EXT_KEY_USAGE;
const ID_CE_KEY_USAGE: const_oid::ObjectIdentifier = const_oid::db::rfc5280::ID_CE_KEY_USAGE;
