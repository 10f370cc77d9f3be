//! Tests of `pkcs11`.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use crate::signer::testsupport;
use crate::signer::SignatureAlgorithm;

fn read_bool(hsm: &Hsm, label: &str, ty: AttributeType) -> bool {
    hsm.with_session(|s| {
        let private = find_private_key(s, label, None)?;
        for attr in s.get_attributes(private, &[ty])? {
            match attr {
                Attribute::Sensitive(b)
                | Attribute::Extractable(b)
                | Attribute::Decrypt(b)
                | Attribute::Unwrap(b)
                | Attribute::Sign(b)
                | Attribute::Derive(b)
                | Attribute::Token(b)
                | Attribute::Private(b)
                | Attribute::NeverExtractable(b) => return Ok(b),
                _ => {}
            }
        }
        panic!("attribute {ty:?} missing");
    })
    .unwrap()
}

#[test]
fn generate_each_algorithm_sign_and_verify() {
    let token = testsupport::new_token();
    let hsm = token.open();
    let cases = [
        (KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa),
        (KeyAlgorithm::EcdsaP384, KeyPurpose::Tsa),
        (KeyAlgorithm::Rsa(2048), KeyPurpose::Tsa),
        (KeyAlgorithm::Ed25519, KeyPurpose::Chain),
    ];
    for (algorithm, purpose) in cases {
        let label = format!("key-{algorithm}");
        let key = hsm.generate_key(&label, algorithm, purpose).unwrap();
        assert_eq!(key.algorithm, algorithm);
        assert_eq!(key.purpose, Some(purpose));
        assert_eq!(key.id.len(), 16);
        assert_eq!(hsm.find_key(&label).unwrap(), key);

        let message = b"an auditor data event";
        let sig = hsm.sign(&key, message).unwrap();
        let verifier = SoftVerifier::from_spki_der(&key.public_key_der).unwrap();
        assert_eq!(verifier.algorithm(), SignatureAlgorithm::for_key(algorithm));
        verifier.verify(message, &sig).unwrap();
        assert!(verifier.verify(b"another message", &sig).is_err());

        assert!(read_bool(&hsm, &label, AttributeType::Sensitive));
        assert!(!read_bool(&hsm, &label, AttributeType::Extractable));
        assert!(!read_bool(&hsm, &label, AttributeType::Decrypt));
        assert!(!read_bool(&hsm, &label, AttributeType::Unwrap));
        assert!(read_bool(&hsm, &label, AttributeType::Sign));
        assert!(read_bool(&hsm, &label, AttributeType::Private));
        assert!(read_bool(&hsm, &label, AttributeType::NeverExtractable));
    }
    let labels: Vec<String> = hsm
        .list_keys()
        .unwrap()
        .into_iter()
        .map(|k| k.label)
        .collect();
    assert_eq!(labels.len(), cases.len());
}

#[test]
fn ecdsa_signatures_are_der_and_spki_matches_openssl_shape() {
    let token = testsupport::new_token();
    let hsm = token.open();
    let key = hsm
        .generate_key("p256", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
        .unwrap();
    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (66 bytes) }
    assert!(hex::encode(&key.public_key_der)
        .starts_with("3059301306072a8648ce3d020106082a8648ce3d03010703420004"));
    let sig = hsm.sign(&key, b"m").unwrap();
    assert_eq!(sig[0], 0x30, "DER Ecdsa-Sig-Value");
    let ed = hsm
        .generate_key("ed", KeyAlgorithm::Ed25519, KeyPurpose::Chain)
        .unwrap();
    assert!(hex::encode(&ed.public_key_der).starts_with("302a300506032b6570032100"));
    assert_eq!(hsm.sign(&ed, b"m").unwrap().len(), 64);
}

#[test]
fn label_clash_is_refused() {
    let token = testsupport::new_token();
    let hsm = token.open();
    hsm.generate_key("dup", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
        .unwrap();
    let err = hsm
        .generate_key("dup", KeyAlgorithm::Ed25519, KeyPurpose::Chain)
        .unwrap_err();
    assert!(
        matches!(err, SignerError::LabelExists(ref l) if l == "dup"),
        "{err}"
    );
}

#[test]
fn wrong_pin_is_reported_without_the_pin() {
    let token = testsupport::new_token();
    let wrong = "9999-not-the-pin-4242";
    let err = Hsm::open(&token.selector, SecretString::from(wrong)).unwrap_err();
    assert!(matches!(err, SignerError::WrongPin), "{err:?}");
    assert_eq!(err.to_string(), "the PIN was refused by the token");
    assert!(!err.to_string().contains(wrong));
    assert!(!format!("{err:?}").contains(wrong));
    // The right PIN still works afterwards, and Debug never shows it.
    let hsm = token.open();
    assert!(!format!("{hsm:?}").contains(testsupport::USER_PIN));
}

#[test]
fn missing_key_and_token_are_named() {
    let token = testsupport::new_token();
    let hsm = token.open();
    let err = hsm.find_key("nope").unwrap_err();
    assert!(
        matches!(err, SignerError::KeyNotFound(ref l) if l == "nope"),
        "{err}"
    );

    let selector = TokenSelector::by_label(testsupport::module_path(), "no-such-token");
    let err = Hsm::open(&selector, SecretString::from("x")).unwrap_err();
    match &err {
        SignerError::TokenNotFound { wanted, seen } => {
            assert!(wanted.contains("no-such-token"));
            assert!(seen.iter().any(|s| s.contains(&token.label)), "{seen:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let both = TokenSelector {
        token_serial: Some("1".into()),
        ..selector
    };
    assert!(matches!(
        Hsm::open(&both, SecretString::from("x")),
        Err(SignerError::InvalidArgument(_))
    ));
}

#[test]
fn hsm_and_pool_can_be_shared_between_threads() {
    fn shared<T: Send + Sync + Clone>() {}
    fn send_sync<T: Send + Sync>() {}
    shared::<Hsm>();
    send_sync::<crate::signer::SigningPool>();
    send_sync::<SignerError>();
}

#[test]
fn a_missing_module_is_named() {
    let selector = TokenSelector::by_label("/nonexistent/libpkcs11.so", "t");
    let err = Hsm::open(&selector, SecretString::from("x")).unwrap_err();
    assert!(matches!(err, SignerError::ModuleLoad { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/libpkcs11.so"),
        "{err}"
    );
}

#[test]
fn open_by_serial() {
    let token = testsupport::new_token();
    let serial = {
        let live = load_module(&testsupport::module_path()).unwrap().read();
        let slot = find_slot(live.ctx(), Wanted::Label(&token.label)).unwrap();
        live.ctx()
            .get_token_info(slot)
            .unwrap()
            .serial_number()
            .trim_end()
            .to_owned()
    };
    let hsm = Hsm::open(
        &TokenSelector::by_serial(testsupport::module_path(), serial),
        SecretString::from(testsupport::USER_PIN),
    )
    .unwrap();
    assert!(hsm.list_keys().unwrap().is_empty());
}

#[test]
fn init_token_twice_is_refused() {
    let token = testsupport::new_token();
    let err = init_token(
        &testsupport::module_path(),
        &token.label,
        &SecretString::from(testsupport::SO_PIN),
        &SecretString::from(testsupport::USER_PIN),
    )
    .unwrap_err();
    assert!(matches!(err, SignerError::TokenLabelExists(_)), "{err}");
}

#[test]
fn unsupported_rsa_size_is_refused() {
    let token = testsupport::new_token();
    let hsm = token.open();
    let err = hsm
        .generate_key("small", KeyAlgorithm::Rsa(1024), KeyPurpose::Tsa)
        .unwrap_err();
    assert!(matches!(err, SignerError::UnsupportedKeyType(_)), "{err}");
}

#[test]
fn certificate_store_and_find_round_trip() {
    let token = testsupport::new_token();
    let hsm = token.open();
    let key = hsm
        .generate_key("certified", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
        .unwrap();
    let other = hsm
        .generate_key("other", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
        .unwrap();
    assert_eq!(hsm.find_certificate(&key).unwrap(), None);

    let first = testsupport::self_signed_certificate(&hsm, &key, 1);
    hsm.store_certificate(&key, &first).unwrap();
    assert_eq!(hsm.find_certificate(&key).unwrap(), Some(first.clone()));

    // A second store replaces the first.
    let second = testsupport::self_signed_certificate(&hsm, &key, 2);
    hsm.store_certificate(&key, &second).unwrap();
    assert_eq!(hsm.find_certificate(&key).unwrap(), Some(second));
    assert_eq!(hsm.find_certificate(&other).unwrap(), None);

    // A certificate of another key is refused.
    let err = hsm.store_certificate(&other, &first).unwrap_err();
    assert!(matches!(err, SignerError::CertificateMismatch(_)), "{err}");
}

#[test]
fn uint_bits_counts_significant_bits() {
    assert_eq!(uint_bits(&[0x00, 0x80, 0x00]), 16);
    assert_eq!(uint_bits(&[0x01]), 1);
    assert_eq!(uint_bits(&[0x00]), 0);
    assert_eq!(uint_bits(&[0xff; 256]), 2048);
}

#[test]
fn ec_point_unwrapping() {
    let point = [4u8; 65];
    let wrapped = OctetString::new(point.to_vec()).unwrap().to_der().unwrap();
    assert_eq!(unwrap_ec_point(&wrapped, 65).unwrap(), point.to_vec());
    assert_eq!(unwrap_ec_point(&point, 65).unwrap(), point.to_vec());
    assert!(unwrap_ec_point(&point[..10], 65).is_err());
}
