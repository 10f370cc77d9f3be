//! Startup fails fast, with a message naming the cause, when the HSM setup is wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass};
use der::{Decode, DecodePem, Encode};

/// Replaces the certificate stored beside key `label` with `der`, writing the token through
/// cryptoki directly.
fn replace_certificate(app: &Appliance, label: &str, der: &[u8]) {
    let cert = x509_cert::Certificate::from_der(der).unwrap();
    let session = app.login_in_process();
    let old = session
        .find_objects(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap();
    assert_eq!(old.len(), 1);
    let id = session
        .get_attributes(old[0], &[AttributeType::Id])
        .unwrap();
    let Some(Attribute::Id(id)) = id.into_iter().next() else {
        panic!("certificate without CKA_ID")
    };
    session.destroy_object(old[0]).unwrap();
    session
        .create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Id(id),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Subject(cert.tbs_certificate.subject.to_der().unwrap()),
            Attribute::Value(der.to_vec()),
        ])
        .unwrap();
}

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

    app.write_config(&[(
        "chain_file = \"pki/ca.pem\"",
        "chain_file = \"pki/tsa.pem\"",
    )]);
    let err = app.start_fails();
    assert!(err.contains("is not in tsa.chain_file"), "{err}");

    std::fs::write(
        app.path().join("pki/junk.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    app.write_config(&[(
        "chain_file = \"pki/ca.pem\"",
        "chain_file = \"pki/junk.pem\"",
    )]);
    let err = app.start_fails();
    assert!(err.contains("junk.pem certificate 1"), "{err}");

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
    // (auditstamp's own import refuses it).
    let other = x509_cert::Certificate::from_pem(std::fs::read(&other_pem).unwrap()).unwrap();
    replace_certificate(&app, "tsa", &other.to_der().unwrap());

    let err = app.start_fails();
    assert!(err.contains("another key"), "{err}");
}

/// A certificate for the HSM key valid in 2020 only, made with openssl (test-only keys).
#[test]
fn expired_certificate_stops_startup() {
    let app = Appliance::new("ecdsa-p256");
    let ca = app.path().join("oldca");
    std::fs::create_dir_all(&ca).unwrap();
    let p = |f: &str| ca.join(f).to_str().unwrap().to_string();
    std::fs::write(ca.join("index.txt"), "").unwrap();
    std::fs::write(ca.join("serial"), "01\n").unwrap();
    std::fs::write(
        ca.join("ca.cnf"),
        format!(
            "[ca]\ndefault_ca = d\n[d]\ndatabase = {}\nserial = {}\nnew_certs_dir = {}\n\
             default_md = sha256\npolicy = p\nunique_subject = no\nx509_extensions = ext\n\
             [p]\ncommonName = supplied\n\
             [ext]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
             extendedKeyUsage = critical,timeStamping\n",
            p("index.txt"),
            p("serial"),
            ca.display()
        ),
    )
    .unwrap();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
        "-subj",
        "/CN=old test CA",
        "-days",
        "10000",
    ]);
    // A CSR signed by a throwaway key, then the HSM key forced into the certificate.
    openssl(&[
        "x509",
        "-in",
        app.tsa_pem().to_str().unwrap(),
        "-pubkey",
        "-noout",
        "-out",
        &p("hsm.pub"),
    ]);
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &p("tmp.key"),
        "-out",
        &p("tsa.csr"),
        "-subj",
        "/CN=expired TSA",
    ]);
    openssl(&[
        "ca",
        "-batch",
        "-config",
        &p("ca.cnf"),
        "-cert",
        &p("ca.pem"),
        "-keyfile",
        &p("ca.key"),
        "-in",
        &p("tsa.csr"),
        "-out",
        &p("expired.pem"),
        "-startdate",
        "20200101000000Z",
        "-enddate",
        "20201231000000Z",
        "-notext",
    ]);
    // openssl ca certified the CSR's throwaway key; re-sign with the HSM key forced in,
    // keeping the 2020 dates and the extensions (expiry is checked before the issuer is).
    openssl(&[
        "x509",
        "-in",
        &p("expired.pem"),
        "-signkey",
        &p("tmp.key"),
        "-force_pubkey",
        &p("hsm.pub"),
        "-preserve_dates",
        "-out",
        &p("expired-hsm.pem"),
    ]);
    let cert =
        x509_cert::Certificate::from_pem(std::fs::read(p("expired-hsm.pem")).unwrap()).unwrap();
    assert_eq!(
        cert.tbs_certificate.subject_public_key_info,
        x509_cert::Certificate::from_pem(std::fs::read(app.tsa_pem()).unwrap())
            .unwrap()
            .tbs_certificate
            .subject_public_key_info
    );
    replace_certificate(&app, "tsa", &cert.to_der().unwrap());
    let err = app.start_fails();
    assert!(err.contains("expired"), "{err}");
}

/// A certificate whose validity starts tomorrow (its CA in the chain file, so that this is
/// the only thing wrong with it) stops startup: the server never runs with a certificate
/// that is not valid now (and while running refuses to sign outside its validity).
#[test]
fn certificate_not_valid_yet_stops_startup() {
    let app = Appliance::new("ecdsa-p256");
    let ca = OpensslCa::new(&app.path().join("office-ca"));
    let csr = app.path().join("future.csr");
    let pem = app.path().join("future.pem");
    app.cli_ok(&[
        "keys",
        "csr",
        "--label",
        "tsa",
        "--subject",
        "CN=future TSA,O=auditstamp tests,C=EE",
        "--out",
        csr.to_str().unwrap(),
    ]);
    let format = time::macros::format_description!("[year][month][day][hour][minute][second]Z");
    let now = time::OffsetDateTime::now_utc();
    let start = (now + time::Duration::days(1)).format(&format).unwrap();
    let end = (now + time::Duration::days(60)).format(&format).unwrap();
    ca.sign(&csr, &pem, "good", Some((&start, &end)));
    let cert = x509_cert::Certificate::from_pem(std::fs::read(&pem).unwrap()).unwrap();
    replace_certificate(&app, "tsa", &cert.to_der().unwrap());
    let mut chain = std::fs::read(app.ca_pem()).unwrap();
    chain.extend(std::fs::read(ca.cert()).unwrap());
    std::fs::write(app.ca_pem(), chain).unwrap();

    let err = app.start_fails();
    assert!(
        err.contains("the certificate of key \"tsa\"") && err.contains("not valid yet"),
        "{err}"
    );
}

/// Starts `app`, has it grant one token, and stops it.
fn issue_one_token(app: &Appliance) {
    let server = app.start();
    let data = app.path().join("doc.txt");
    std::fs::write(&data, "one token\n").unwrap();
    let tsq = std::fs::read(ts_query(app.path(), &data, "-sha256", true, false, "q")).unwrap();
    let (status, _, reply) = rt().block_on(post(
        &reqwest::Client::new(),
        &server.url("/tsa"),
        "application/timestamp-query",
        tsq,
    ));
    assert_eq!(status, 200);
    assert!(auditstamp::tsp::decode_response_status(&reply)
        .unwrap()
        .token
        .is_some());
    server.stop();
}

/// A serial counter in the store that is not one stops startup with a message naming the
/// key and the problem (today's code restarted the counter at 1: serial numbers repeated).
#[test]
fn damaged_serial_counter_stops_startup() {
    let app = Appliance::new("ecdsa-p256");
    // One token, so that a counter is stored.
    issue_one_token(&app);

    app.with_store(|store| {
        let meta = store.tree("meta").unwrap();
        assert_eq!(meta.get("tsa.serial.next").unwrap().unwrap().len(), 8);
        meta.insert("tsa.serial.next", &b"\x01\x02\x03"[..])
            .unwrap();
        store.flush().unwrap();
    });
    let err = app.start_fails();
    assert!(
        err.contains("tsa.serial.next") && err.contains("3 bytes where 8"),
        "{err}"
    );
    assert!(
        err.contains(app.store_dir().to_str().unwrap()),
        "the store is named: {err}"
    );
}

/// A serial counter missing from a store whose event log holds issued tokens stops
/// startup (today's code started again at 1: the next token repeated the first's serial).
#[test]
fn missing_serial_counter_with_issued_tokens_stops_startup() {
    let app = Appliance::new("ecdsa-p256");
    issue_one_token(&app);

    app.with_store(|store| {
        let meta = store.tree("meta").unwrap();
        assert!(meta.remove("tsa.serial.next").unwrap().is_some());
        store.flush().unwrap();
    });
    let err = app.start_fails();
    assert!(
        err.contains("tsa.serial.next") && err.contains("missing"),
        "{err}"
    );
    assert!(
        err.contains(app.store_dir().to_str().unwrap()),
        "the store is named: {err}"
    );
}
