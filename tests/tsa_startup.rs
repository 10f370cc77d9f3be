//! Startup fails fast, with a message naming the cause, when the HSM setup is wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use der::{DecodePem, Encode};

#[test]
fn wrong_pin_stops_startup_without_showing_the_pin() {
    let app = Appliance::new("ecdsa-p256");
    let wrong = "wrong-pin-7319";
    std::fs::write(app.hsm_dir().join("user.pin"), format!("{wrong}\n")).unwrap();
    let err = app.start_fails();
    assert!(err.contains("PIN"), "{err}");
    assert!(!err.contains(wrong), "the PIN leaked: {err}");
}

#[test]
fn missing_module_token_and_key_are_named() {
    let app = Appliance::new("ecdsa-p256");
    app.write_config(&[("key_label = \"tsa\"", "key_label = \"no-such-key\"")]);
    let err = app.start_fails();
    assert!(err.contains("no-such-key"), "{err}");

    app.write_config(&[(
        "token_label = \"test-token\"",
        "token_label = \"no-such-token\"",
    )]);
    let err = app.start_fails();
    assert!(err.contains("no-such-token"), "{err}");

    app.write_config(&[(MODULE, "/nonexistent/libpkcs11.so")]);
    let err = app.start_fails();
    assert!(err.contains("/nonexistent/libpkcs11.so"), "{err}");

    app.write_config(&[("max_body_bytes = 16384", "max_body_bytes = 16384\nport = 1")]);
    let err = app.start_fails();
    assert!(err.contains("port"), "unknown key named: {err}");
}

#[test]
fn certificate_of_another_key_stops_startup() {
    let app = Appliance::new("ecdsa-p256");
    app.cli_ok(&[
        "keys",
        "generate",
        "--label",
        "other",
        "--algorithm",
        "ecdsa-p256",
        "--purpose",
        "tsa",
    ]);
    let other_pem = app.path().join("pki/other.pem");
    app.cli_ok(&[
        "keys",
        "issue-dev-cert",
        "--label",
        "other",
        "--subject",
        "CN=other,C=EE",
        "--out",
        other_pem.to_str().unwrap(),
    ]);
    // Put the other key's certificate beside the TSA key, as another PKCS#11 tool could
    // (auditstamp's own import refuses it). This process talks to the token itself through
    // cryptoki; SOFTHSM2_CONF is read at C_Initialize, and this is the only test in this
    // file that does it.
    std::env::set_var("SOFTHSM2_CONF", app.softhsm_conf());
    let pin = std::fs::read_to_string(app.hsm_dir().join("user.pin")).unwrap();
    let other = x509_cert::Certificate::from_pem(std::fs::read(&other_pem).unwrap()).unwrap();
    let ctx = Pkcs11::new(MODULE).unwrap();
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == "test-token")
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    session
        .login(
            UserType::User,
            Some(&AuthPin::new(pin.trim().to_owned().into())),
        )
        .unwrap();
    let tsa_cert = session
        .find_objects(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::Label(b"tsa".to_vec()),
        ])
        .unwrap();
    assert_eq!(tsa_cert.len(), 1);
    let id = session
        .get_attributes(tsa_cert[0], &[AttributeType::Id])
        .unwrap();
    let Some(Attribute::Id(id)) = id.into_iter().next() else {
        panic!("certificate without CKA_ID")
    };
    session.destroy_object(tsa_cert[0]).unwrap();
    session
        .create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Id(id),
            Attribute::Label(b"tsa".to_vec()),
            Attribute::Subject(other.tbs_certificate.subject.to_der().unwrap()),
            Attribute::Value(other.to_der().unwrap()),
        ])
        .unwrap();
    drop(session);

    let err = app.start_fails();
    assert!(err.contains("another key"), "{err}");
}
