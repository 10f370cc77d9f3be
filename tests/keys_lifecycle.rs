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

    // activate refuses a key without certificate and a key that is not a TSA key.
    let out = app.cli(&["keys", "activate", "--label", "tsa"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no certificate"));
    app.cli_ok(&[
        "keys",
        "generate",
        "--label",
        "ch",
        "--algorithm",
        "ed25519",
        "--purpose",
        "chain",
    ]);
    let out = app.cli(&["keys", "activate", "--label", "ch"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a TSA key"));
    let out = app.cli(&["keys", "retire", "--label", "missing"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"));

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

/// A DER TimeStampReq for `digest` (SHA-256) with a nonce and the given certReq.
fn request_der(digest: [u8; 32], nonce: u64, cert_req: bool) -> Vec<u8> {
    use der::Encode;
    x509_tsp::TimeStampReq {
        version: x509_tsp::TspVersion::V1,
        message_imprint: x509_tsp::MessageImprint {
            hash_algorithm: spki::AlgorithmIdentifier {
                oid: "2.16.840.1.101.3.4.2.1".parse().unwrap(),
                parameters: None,
            },
            hashed_message: der::asn1::OctetString::new(digest.to_vec()).unwrap(),
        },
        req_policy: None,
        nonce: Some(der::asn1::Int::new(&(nonce | 1 << 62).to_be_bytes()).unwrap()),
        cert_req,
        extensions: None,
    }
    .to_der()
    .unwrap()
}

/// Whether the token in `reply` verifies against `req` with `signer` as the only
/// certificate the verifier is given (besides the root).
fn verifies_with(
    dir: &std::path::Path,
    n: usize,
    req: &[u8],
    reply: &[u8],
    ca: &std::path::Path,
    signer: &std::path::Path,
) -> bool {
    let (q, r) = (dir.join(format!("{n}.tsq")), dir.join(format!("{n}.tsr")));
    std::fs::write(&q, req).unwrap();
    std::fs::write(&r, reply).unwrap();
    std::process::Command::new("openssl")
        .args([
            "ts",
            "-verify",
            "-queryfile",
            q.to_str().unwrap(),
            "-in",
            r.to_str().unwrap(),
        ])
        .args([
            "-CAfile",
            ca.to_str().unwrap(),
            "-untrusted",
            signer.to_str().unwrap(),
        ])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn rotate_activate_under_load_then_retire() {
    let app = Appliance::bare("ecdsa-p256");
    let ca = OpensslCa::new(&app.path().join("office-ca"));
    let p = |n: &str| app.path().join(n);
    let s = |path: &std::path::Path| path.to_str().unwrap().to_string();
    let tsa1 = app.certify_with(&ca, "tsa", "CN=Office TSA 1,C=EE");
    // The chain now comes from the token (import-cert kept it): no chain file.
    app.write_config(&[("chain_file = \"pki/ca.pem\"\n", "")]);
    let server = app.start();

    // Rotation: the successor is generated and certified; the current key stays active.
    app.cli_ok(&[
        "keys",
        "rotate",
        "--label",
        "tsa-2",
        "--subject",
        "CN=Office TSA 2,C=EE",
        "--out",
        &s(&p("2.csr")),
    ]);
    openssl(&["req", "-in", &s(&p("2.csr")), "-verify", "-noout"]);
    ca.sign(&p("2.csr"), &p("tsa2.pem"), "good", None);
    app.cli_ok(&[
        "keys",
        "import-cert",
        "--label",
        "tsa-2",
        "--cert",
        &s(&p("tsa2.pem")),
        "--chain",
        &s(&ca.cert()),
    ]);
    let list: serde_json::Value =
        serde_json::from_slice(&app.cli_ok(&["keys", "list", "--json"]).stdout).unwrap();
    let state = |list: &serde_json::Value, label: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|k| k["label"] == label)
            .map(|k| k["state"].as_str().unwrap().to_string())
    };
    assert_eq!(state(&list, "tsa").as_deref(), Some("active"));
    assert_eq!(state(&list, "tsa-2").as_deref(), Some("standby"));

    // Activate while 6 clients keep requesting: no request may fail.
    let rt = rt();
    let url = server.url("/tsa");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Requests granted so far, per client: the switch waits for conditions, not for time.
    let granted: std::sync::Arc<Vec<std::sync::atomic::AtomicUsize>> =
        std::sync::Arc::new((0..6).map(|_| Default::default()).collect());
    let load: Vec<_> = (0..6u64)
        .map(|c| {
            let (url, stop, granted) = (url.clone(), stop.clone(), granted.clone());
            rt.spawn(async move {
                let client = reqwest::Client::new();
                let mut done = Vec::new();
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let mut digest = [0u8; 32];
                    digest[..8].copy_from_slice(&(c << 32 | i).to_be_bytes());
                    let req = request_der(digest, c << 32 | i, false);
                    let (status, _, reply) =
                        post(&client, &url, "application/timestamp-query", req.clone()).await;
                    assert_eq!(status, 200);
                    let st = auditstamp::tsp::decode_response_status(&reply).unwrap();
                    assert_eq!(
                        st.status, 0,
                        "request failed during the key switch: {:?}",
                        st.text
                    );
                    done.push((req, reply));
                    granted[c as usize].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    i += 1;
                }
                done
            })
        })
        .collect();
    // Every client has at least `n` more grants than in `since`, within a minute.
    let wait_for_grants = |since: &[usize], n: usize, what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let now: Vec<usize> = granted
                .iter()
                .map(|g| g.load(std::sync::atomic::Ordering::SeqCst))
                .collect();
            if now.iter().zip(since).all(|(a, b)| *a >= b + n) {
                return now;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {now:?}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    wait_for_grants(&[0; 6], 10, "10 tokens per client before the switch");
    let out = app.cli_ok(&["keys", "activate", "--label", "tsa-2"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SIGHUP"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !server.log().contains("now signing with the active key") {
        assert!(
            std::time::Instant::now() < deadline,
            "the switch was never made: {}",
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Requests sent once the switch was made: at least 10 per client, so the last ten of
    // the last client were all sent after it.
    let at_switch: Vec<usize> = granted
        .iter()
        .map(|g| g.load(std::sync::atomic::Ordering::SeqCst))
        .collect();
    wait_for_grants(&at_switch, 11, "10 tokens per client after the switch");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut all = Vec::new();
    for t in load {
        all.extend(rt.block_on(t).unwrap());
    }
    assert!(all.len() > 50, "only {} requests", all.len());
    assert!(
        server.log().contains("now signing with the active key"),
        "{}",
        server.log()
    );

    // Tokens before the switch verify with the first certificate only, those after with
    // the second only (certReq was false: the verifier is handed one certificate).
    let work = p("work");
    std::fs::create_dir_all(&work).unwrap();
    let (first, last) = (&all[..10], &all[all.len() - 10..]);
    for (n, (req, reply)) in first.iter().enumerate() {
        assert!(
            verifies_with(&work, n, req, reply, &ca.cert(), &tsa1),
            "early token {n}"
        );
        assert!(!verifies_with(
            &work,
            n,
            req,
            reply,
            &ca.cert(),
            &p("tsa2.pem")
        ));
    }
    // Clients started by the same moment finish in order per client; the last ten
    // requests overall were all sent well after the switch.
    let mut by_key = (0, 0);
    for (n, (req, reply)) in last.iter().enumerate() {
        if verifies_with(&work, 100 + n, req, reply, &ca.cert(), &p("tsa2.pem")) {
            by_key.1 += 1;
        } else {
            assert!(verifies_with(&work, 100 + n, req, reply, &ca.cert(), &tsa1));
            by_key.0 += 1;
        }
    }
    assert_eq!(
        by_key,
        (0, 10),
        "tokens after the switch must come from the new key"
    );

    // Both certificates stay published, the new one first.
    let pem = rt.block_on(async {
        reqwest::get(server.url("/tsa/certs"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let cert_pem = |f: &std::path::Path| std::fs::read_to_string(f).unwrap().trim().to_string();
    assert!(pem.starts_with(&cert_pem(&p("tsa2.pem"))), "{pem}");
    assert!(pem.contains(&cert_pem(&tsa1)));
    assert!(pem.contains(&cert_pem(&ca.cert())));

    // Retire: never the active key; --destroy needs confirmation; a retired key cannot return.
    let out = app.cli(&["keys", "retire", "--label", "tsa-2"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("active TSA key"));
    let out = app.cli(&[
        "keys",
        "retire",
        "--label",
        "tsa",
        "--destroy",
        "--confirm-destroy",
        "other",
    ]);
    assert!(!out.status.success());
    app.cli_ok(&["keys", "retire", "--label", "tsa"]);
    let out = app.cli(&["keys", "activate", "--label", "tsa"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("retired"));
    app.cli_ok(&[
        "keys",
        "retire",
        "--label",
        "tsa",
        "--destroy",
        "--confirm-destroy",
        "tsa",
    ]);
    let list: serde_json::Value =
        serde_json::from_slice(&app.cli_ok(&["keys", "list", "--json"]).stdout).unwrap();
    assert_eq!(state(&list, "tsa"), None, "destroyed key still listed");
    // The label of a key that signed is not reused; the old certificate is still published.
    let out = app.cli(&["keys", "generate", "--label", "tsa", "--purpose", "tsa"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("signed tokens"));
    server.stop();
    let server = app.start();
    let pem = rt.block_on(async {
        reqwest::get(server.url("/tsa/certs"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(
        pem.contains(&cert_pem(&tsa1)),
        "retired certificate no longer published"
    );
    verify_token(&app, &server, &ca.cert(), "after-restart");
    server.stop();

    // No private key on the token can be extracted.
    no_private_key_is_extractable(&app);
}

/// Reads every private key's attributes through cryptoki in this process.
fn no_private_key_is_extractable(app: &Appliance) {
    use cryptoki::object::{Attribute, AttributeType, ObjectClass};
    let session = app.login_in_process();
    let keys = session
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .unwrap();
    assert!(!keys.is_empty(), "the lifecycle left the active key");
    for k in keys {
        let attrs = session
            .get_attributes(
                k,
                &[
                    AttributeType::Extractable,
                    AttributeType::Sensitive,
                    AttributeType::NeverExtractable,
                ],
            )
            .unwrap();
        for a in attrs {
            match a {
                Attribute::Extractable(x) => assert!(!x, "an extractable private key"),
                Attribute::Sensitive(x) => assert!(x, "a non-sensitive private key"),
                Attribute::NeverExtractable(x) => assert!(x, "a key that was once extractable"),
                _ => {}
            }
        }
    }
}

/// `YYYYMMDDHHMMSSZ` for `t`, as `openssl ca -startdate/-enddate` take it.
fn openssl_date(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year][month][day][hour][minute][second]Z");
    t.format(&f).unwrap()
}

fn metric(server: &Server, name: &str) -> i64 {
    let text = rt().block_on(async {
        reqwest::get(server.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

/// A certificate that expires while the server runs: a warning and the days left at start
/// (log, `/readyz`, `/metrics`), tokens until the end of its validity, then systemFailure
/// refusals, `/readyz` 503, and `keys list` showing it expired.
#[test]
fn a_certificate_expiring_while_serving_is_warned_about_then_refused() {
    let app = Appliance::bare("ecdsa-p256");
    let ca = OpensslCa::new(&app.path().join("office-ca"));
    let now = time::OffsetDateTime::now_utc();
    let end = now + time::Duration::seconds(12);
    let (start, stop) = (
        openssl_date(now - time::Duration::minutes(1)),
        openssl_date(end),
    );
    app.certify_with_dates(
        &ca,
        "tsa",
        "CN=Short-lived TSA,O=Audit Office,C=EE",
        Some((&start, &stop)),
    );
    std::fs::create_dir_all(app.ca_pem().parent().unwrap()).unwrap();
    std::fs::copy(ca.cert(), app.ca_pem()).unwrap();
    let server = app.start();
    assert!(
        server.wait_for_log("expires soon"),
        "no expiry warning: {}",
        server.log()
    );
    assert_eq!(metric(&server, "auditstamp_certificate_days_remaining"), 0);
    assert_eq!(
        metric(&server, "auditstamp_certificate_not_after_seconds"),
        end.unix_timestamp()
    );
    let ready = rt().block_on(async {
        let r = reqwest::get(server.url("/readyz")).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(ready.0, 200, "{}", ready.1);
    assert!(ready.1.contains("\"days_remaining\":0"), "{}", ready.1);
    verify_token(&app, &server, &ca.cert(), "before-expiry");
    assert_eq!(metric(&server, "auditstamp_tokens_issued_total"), 1);

    // Past notAfter: refused, not signed with an expired certificate.
    let wait = end - time::OffsetDateTime::now_utc() + time::Duration::milliseconds(1500);
    if wait.is_positive() {
        std::thread::sleep(wait.unsigned_abs());
    }
    let (status, ct, body) = rt().block_on(post(
        &reqwest::Client::new(),
        &server.url("/tsa"),
        "application/timestamp-query",
        request_der([7; 32], 1, true),
    ));
    assert_eq!((status, ct.as_str()), (200, "application/timestamp-reply"));
    let st = auditstamp::tsp::decode_response_status(&body).unwrap();
    assert_eq!(st.status, 2, "not a rejection");
    assert_eq!(
        st.fail_info,
        Some(auditstamp::tsp::FailureInfo::SystemFailure)
    );
    assert!(st.token.is_none());
    assert_eq!(
        metric(
            &server,
            "auditstamp_tokens_refused_total{fail_info=\"systemFailure\"}"
        ),
        1
    );
    let ready = rt().block_on(async {
        let r = reqwest::get(server.url("/readyz")).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(ready.0, 503, "{}", ready.1);
    assert!(ready.1.contains("expired"), "{}", ready.1);
    server.stop();

    let out = app.cli_ok(&["keys", "list", "--json"]);
    let keys: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = keys.to_string();
    assert!(text.contains("\"expired\":true"), "{text}");
}

/// Rewrites the lifecycle record (CKO_DATA, CKA_APPLICATION "auditstamp") labelled `label`
/// on the appliance's token with `change` of its value, through cryptoki directly, as a
/// damaged token would hold it; returns the value it had.
fn rewrite_record(app: &Appliance, label: &str, change: impl FnOnce(&[u8]) -> Vec<u8>) -> Vec<u8> {
    use cryptoki::object::{Attribute, AttributeType, ObjectClass};
    let session = app.login_in_process();
    let template = [
        Attribute::Class(ObjectClass::DATA),
        Attribute::Application(b"auditstamp".to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let objects = session.find_objects(&template).unwrap();
    assert_eq!(objects.len(), 1, "records labelled {label:?}");
    let old = match session
        .get_attributes(objects[0], &[AttributeType::Value])
        .unwrap()
        .pop()
    {
        Some(Attribute::Value(v)) => v,
        other => panic!("record {label:?} without a value: {other:?}"),
    };
    session.destroy_object(objects[0]).unwrap();
    let mut attributes = template.to_vec();
    attributes.extend([
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Value(change(&old)),
    ]);
    session.create_object(&attributes).unwrap();
    old
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A key record on the token that cannot be read exactly (here a retired key's `retired=`
/// line) is never read as "not retired": `keys list` shows the key as damaged and then
/// fails, `keys activate` (of it or of another key) and `keys retire` refuse, and `serve`
/// does not start, each naming the record, the line and the problem. A damaged active-key
/// pointer likewise stops `serve` rather than letting it fall back to `tsa.key_label`.
/// With the records restored, everything works again.
#[test]
fn a_damaged_key_record_is_listed_and_refused_never_read_as_not_retired() {
    let app = Appliance::new("ecdsa-p256");
    app.cli_ok(&[
        "keys",
        "generate",
        "--label",
        "tsa-2",
        "--algorithm",
        "ecdsa-p256",
        "--purpose",
        "tsa",
    ]);
    app.cli_ok(&[
        "keys",
        "issue-dev-cert",
        "--label",
        "tsa-2",
        "--subject",
        "CN=test TSA 2,O=auditstamp tests,C=EE",
    ]);
    app.cli_ok(&["keys", "activate", "--label", "tsa-2"]);
    app.cli_ok(&["keys", "retire", "--label", "tsa"]);

    // Line 4, "retired=<seconds>", becomes "retired=x<seconds>".
    let original = rewrite_record(&app, "tsa", |v| {
        let text = String::from_utf8(v.to_vec()).unwrap();
        assert!(
            text.lines().nth(3).unwrap().starts_with("retired="),
            "{text}"
        );
        text.replacen("\nretired=", "\nretired=x", 1).into_bytes()
    });
    let names_the_damage = |text: &str| {
        assert!(
            text.contains("key record \"tsa\"")
                && text.contains("line 4")
                && text.contains("not a number of seconds"),
            "{text}"
        );
    };

    let out = app.cli(&["keys", "list", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    names_the_damage(&stderr_of(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = |label: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|k| k["label"] == label)
            .unwrap_or_else(|| panic!("{label} not listed: {list}"))
            .clone()
    };
    let tsa = row("tsa");
    assert_eq!(tsa["state"], "damaged", "{tsa}");
    assert_eq!(tsa["algorithm"], "ecdsa-p256", "{tsa}");
    assert!(tsa["retired_at"].is_null(), "{tsa}");
    names_the_damage(tsa["damage"].as_str().unwrap());
    assert_eq!(row("tsa-2")["state"], "active");
    let out = app.cli(&["keys", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("tsa ") && l.contains("damaged")),
        "{table}"
    );

    for args in [
        &["keys", "activate", "--label", "tsa"][..],
        &["keys", "activate", "--label", "tsa-2"],
        &["keys", "retire", "--label", "tsa"],
    ] {
        let out = app.cli(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        names_the_damage(&stderr_of(&out));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("now the active"));
    }
    names_the_damage(&app.start_fails());

    // Restored: the key is retired, as it always was.
    rewrite_record(&app, "tsa", |_| original.clone());
    let out = app.cli(&["keys", "activate", "--label", "tsa"]);
    assert!(
        stderr_of(&out).contains("is retired"),
        "{}",
        stderr_of(&out)
    );
    app.start().stop();

    // The active-key pointer.
    let pointer = rewrite_record(&app, "auditstamp:active-tsa", |_| b"not hex".to_vec());
    let text = app.start_fails();
    assert!(
        text.contains("active-key record \"auditstamp:active-tsa\"")
            && text.contains("not the hexadecimal CKA_ID"),
        "{text}"
    );
    let out = app.cli(&["keys", "list", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("active-key record"));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|k| k["active"] == false),
        "no key is shown active when the pointer cannot be read: {list}"
    );
    rewrite_record(&app, "auditstamp:active-tsa", |_| pointer.clone());
    app.cli_ok(&["keys", "list"]);
    app.start().stop();
}
