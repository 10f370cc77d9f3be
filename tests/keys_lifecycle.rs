//! Operators' key lifecycle on a fresh token, with an openssl-made CA standing in for the
//! audit office's: generate → csr → CA signs → import-cert → serve → tokens verify; and
//! every refusal of import-cert.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

fn verify_token(app: &Appliance, server: &Server, ca: &std::path::Path, name: &str) {
    let work = app.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let data = work.join(format!("{name}.txt"));
    std::fs::write(&data, format!("record {name}\n")).unwrap();
    let tsq = ts_query(&work, &data, "-sha256", true, true, name);
    let rt = rt();
    let (status, _, body) = rt.block_on(post(
        &reqwest::Client::new(),
        &server.url("/tsa"),
        "application/timestamp-query",
        std::fs::read(&tsq).unwrap(),
    ));
    assert_eq!(status, 200);
    let tsr = work.join(format!("{name}.tsr"));
    std::fs::write(&tsr, body).unwrap();
    openssl(&[
        "ts",
        "-verify",
        "-queryfile",
        tsq.to_str().unwrap(),
        "-in",
        tsr.to_str().unwrap(),
        "-CAfile",
        ca.to_str().unwrap(),
    ]);
}

#[test]
fn first_provisioning_with_an_external_ca() {
    let app = Appliance::bare("ecdsa-p256");
    let ca = OpensslCa::new(&app.path().join("office-ca"));
    let csr = app.path().join("tsa.csr");
    app.cli_ok(&[
        "keys",
        "generate",
        "--label",
        "tsa",
        "--algorithm",
        "ecdsa-p256",
        "--purpose",
        "tsa",
    ]);
    app.cli_ok(&[
        "keys",
        "csr",
        "--label",
        "tsa",
        "--subject",
        "CN=Office TSA 1,O=Audit Office,C=EE",
        "--out",
        csr.to_str().unwrap(),
    ]);
    // An independent implementation checks the HSM's signature on the request.
    let out = openssl(&[
        "req",
        "-in",
        csr.to_str().unwrap(),
        "-verify",
        "-noout",
        "-text",
    ]);
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("verify OK") || text.contains("Certificate request self-signature verify OK"),
        "{text}"
    );
    assert!(
        text.contains("X509v3 Extended Key Usage: critical"),
        "{text}"
    );

    let cert = app.path().join("tsa.pem");
    ca.sign(&csr, &cert, "good", None);
    app.cli_ok(&[
        "keys",
        "import-cert",
        "--label",
        "tsa",
        "--cert",
        cert.to_str().unwrap(),
        "--chain",
        ca.cert().to_str().unwrap(),
    ]);
    std::fs::create_dir_all(app.ca_pem().parent().unwrap()).unwrap();
    std::fs::copy(ca.cert(), app.ca_pem()).unwrap();
    let server = app.start();
    verify_token(&app, &server, &ca.cert(), "first");
    server.stop();

    // keys list shows it, as a table and as JSON.
    let out = app.cli_ok(&["keys", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tsa = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["label"] == "tsa")
        .unwrap();
    assert_eq!(tsa["algorithm"], "ecdsa-p256");
    assert_eq!(tsa["purpose"], "tsa");
    assert!(tsa["certificate"]["subject"]
        .as_str()
        .unwrap()
        .contains("Office TSA 1"));
    let out = app.cli_ok(&["keys", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("tsa"));
}

#[test]
fn csr_for_every_algorithm_verifies_with_openssl() {
    let app = Appliance::bare("ecdsa-p256");
    for (label, alg, purpose) in [
        ("p384", "ecdsa-p384", "tsa"),
        ("rsa", "rsa-3072", "tsa"),
        ("ed", "ed25519", "chain"),
    ] {
        app.cli_ok(&[
            "keys",
            "generate",
            "--label",
            label,
            "--algorithm",
            alg,
            "--purpose",
            purpose,
        ]);
        let csr = app.path().join(format!("{label}.csr"));
        app.cli_ok(&[
            "keys",
            "csr",
            "--label",
            label,
            "--subject",
            "CN=x,C=EE",
            "--out",
            csr.to_str().unwrap(),
        ]);
        openssl(&["req", "-in", csr.to_str().unwrap(), "-verify", "-noout"]);
    }
}

#[test]
fn import_cert_refuses_unfit_certificates() {
    let app = Appliance::bare("ecdsa-p256");
    let ca = OpensslCa::new(&app.path().join("office-ca"));
    app.cli_ok(&[
        "keys",
        "generate",
        "--label",
        "tsa",
        "--algorithm",
        "ecdsa-p256",
        "--purpose",
        "tsa",
    ]);
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
    let csr = |label: &str| {
        let p = app.path().join(format!("{label}.csr"));
        app.cli_ok(&[
            "keys",
            "csr",
            "--label",
            label,
            "--subject",
            "CN=Office TSA,C=EE",
            "--out",
            p.to_str().unwrap(),
        ]);
        p
    };
    let (tsa_csr, other_csr) = (csr("tsa"), csr("other"));
    let import = |cert: &std::path::Path, chain: Option<&std::path::Path>| {
        let mut args = vec![
            "keys",
            "import-cert",
            "--label",
            "tsa",
            "--cert",
            cert.to_str().unwrap(),
        ];
        if let Some(c) = chain {
            args.extend(["--chain", c.to_str().unwrap()]);
        }
        let out = app.cli(&args);
        assert!(
            !out.status.success(),
            "import of {} succeeded",
            cert.display()
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let p = |n: &str| app.path().join(n);

    ca.sign(&other_csr, &p("other.pem"), "good", None);
    assert!(import(&p("other.pem"), None).contains("does not certify"));

    ca.sign(
        &tsa_csr,
        &p("expired.pem"),
        "good",
        Some(("20200101000000Z", "20201231000000Z")),
    );
    assert!(import(&p("expired.pem"), None).contains("expired"));

    ca.sign(
        &tsa_csr,
        &p("future.pem"),
        "good",
        Some(("20400101000000Z", "20401231000000Z")),
    );
    assert!(import(&p("future.pem"), None).contains("not valid yet"));

    ca.sign(&tsa_csr, &p("noncrit.pem"), "eku_noncritical", None);
    assert!(import(&p("noncrit.pem"), None).contains("not critical"));

    ca.sign(&tsa_csr, &p("extra.pem"), "eku_extra", None);
    assert!(import(&p("extra.pem"), None).contains("only id-kp-timeStamping"));

    // A good certificate with a chain that is not its issuer.
    ca.sign(&tsa_csr, &p("good.pem"), "good", None);
    let stranger = OpensslCa::new(&p("stranger-ca"));
    assert!(import(&p("good.pem"), Some(&stranger.cert())).contains("chain"));

    // Garbage and a missing file name the file.
    std::fs::write(p("junk.pem"), "not a certificate").unwrap();
    assert!(import(&p("junk.pem"), None).contains("junk.pem"));
    assert!(import(&p("missing.pem"), None).contains("missing.pem"));

    // Unknown key; and after all that, the good one is accepted.
    let out = app.cli(&[
        "keys",
        "import-cert",
        "--label",
        "nope",
        "--cert",
        p("good.pem").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    app.cli_ok(&[
        "keys",
        "import-cert",
        "--label",
        "tsa",
        "--cert",
        p("good.pem").to_str().unwrap(),
        "--chain",
        ca.cert().to_str().unwrap(),
    ]);
}

#[test]
fn every_command_names_a_wrong_pin_missing_token_and_label_clash() {
    let app = Appliance::bare("ecdsa-p256");
    app.cli_ok(&[
        "keys",
        "generate",
        "--label",
        "tsa",
        "--algorithm",
        "ecdsa-p256",
        "--purpose",
        "tsa",
    ]);
    let out = app.cli(&[
        "keys",
        "generate",
        "--label",
        "tsa",
        "--algorithm",
        "ecdsa-p256",
        "--purpose",
        "tsa",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = app.cli(&[
        "keys",
        "generate",
        "--label",
        "x",
        "--algorithm",
        "dsa-1024",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("dsa-1024"));
    let out = app.cli(&["keys", "csr", "--label", "tsa", "--subject", "CN=ok,XX=bad"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("XX"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let pin = std::fs::read_to_string(app.hsm_dir().join("user.pin")).unwrap();
    std::fs::write(app.hsm_dir().join("user.pin"), "0000-wrong\n").unwrap();
    for args in [
        &["keys", "list"][..],
        &["keys", "generate", "--label", "y"],
        &["keys", "csr", "--label", "tsa", "--subject", "CN=x"],
        &[
            "keys",
            "export-cert",
            "--label",
            "tsa",
            "--out",
            "/tmp/x.pem",
        ],
    ] {
        let out = app.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("PIN was refused"), "{args:?}: {err}");
        assert!(
            !err.contains("0000-wrong") && !err.contains(pin.trim()),
            "PIN shown: {err}"
        );
    }
    std::fs::write(app.hsm_dir().join("user.pin"), pin).unwrap();
    app.write_config(&[("token_label = \"test-token\"", "token_label = \"gone\"")]);
    let out = app.cli(&["keys", "list"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("gone"));
}
