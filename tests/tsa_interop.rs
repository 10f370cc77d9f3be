//! End to end: tokens from a real server on a real socket, signed in SoftHSM, each accepted
//! by `openssl ts -verify`; for ECDSA P-256, P-384 and RSA keys, every imprint hash, with
//! and without nonce and certReq.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use auditstamp::tsp::{decode_response_status, decode_tst_info_from_token};
use common::*;

fn interop(algorithm: &str) {
    let app = Appliance::new(algorithm);
    let server = app.start();
    let rt = rt();
    let client = reqwest::Client::new();
    let work = app.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let data = work.join("doc.txt");
    let (ca_pem, tsa_pem) = (app.ca_pem(), app.tsa_pem());
    let (ca, tsa) = (ca_pem.to_str().unwrap(), tsa_pem.to_str().unwrap());
    std::fs::write(&data, format!("audit record for {algorithm}\n")).unwrap();

    for hash in ["-sha256", "-sha384", "-sha512"] {
        for nonce in [true, false] {
            for cert in [true, false] {
                let name = format!("{}-{nonce}-{cert}", &hash[1..]);
                let tsq = ts_query(&work, &data, hash, nonce, cert, &name);
                let (status, ct, body) = rt.block_on(post(
                    &client,
                    &server.url("/tsa"),
                    "application/timestamp-query",
                    std::fs::read(&tsq).unwrap(),
                ));
                assert_eq!(status, 200);
                assert_eq!(ct, "application/timestamp-reply");
                let st = decode_response_status(&body).unwrap();
                assert_eq!(st.status, 0, "{name}: not granted: {:?}", st.text);
                let token = st.token.unwrap();
                let info = decode_tst_info_from_token(&token).unwrap();
                assert_eq!(info.nonce.is_some(), nonce, "{name}: nonce echo");
                let tsr = work.join(format!("{name}.tsr"));
                std::fs::write(&tsr, &body).unwrap();

                // Against the data, with the dev root as the only trust anchor.
                let mut args = vec![
                    "ts",
                    "-verify",
                    "-data",
                    data.to_str().unwrap(),
                    "-in",
                    tsr.to_str().unwrap(),
                    "-CAfile",
                    ca,
                ];
                if !cert {
                    // No certificate in the token: the verifier is handed the TSA's own.
                    args.extend(["-untrusted", tsa]);
                }
                let out = openssl(&args);
                assert!(
                    String::from_utf8_lossy(&out.stdout).contains("Verification: OK"),
                    "{name}"
                );

                // Against the request: nonce and imprint checked by openssl too.
                let mut args = vec![
                    "ts",
                    "-verify",
                    "-queryfile",
                    tsq.to_str().unwrap(),
                    "-in",
                    tsr.to_str().unwrap(),
                    "-CAfile",
                    ca,
                ];
                if !cert {
                    args.extend(["-untrusted", tsa]);
                }
                openssl(&args);

                // A token without certReq carries no certificate: verifying it without the
                // TSA certificate must fail, which shows the flag was honoured.
                if !cert {
                    let out = std::process::Command::new("openssl")
                        .args([
                            "ts",
                            "-verify",
                            "-data",
                            data.to_str().unwrap(),
                            "-in",
                            tsr.to_str().unwrap(),
                            "-CAfile",
                            ca,
                        ])
                        .output()
                        .unwrap();
                    assert!(
                        !out.status.success(),
                        "{name}: verified without any certificate"
                    );
                }
            }
        }
    }

    // The text form shows the profile: policy, accuracy, TSA name, nonce.
    let tsr = work.join("sha256-true-true.tsr");
    let text = openssl(&["ts", "-reply", "-in", tsr.to_str().unwrap(), "-text"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("Policy OID: {POLICY}")), "{text}");
    assert!(
        text.contains("Accuracy: 0x01 seconds, 0x01F4 millis"),
        "{text}"
    );
    assert!(text.contains("TSA: DirName:"), "{text}");
    assert!(text.contains("Ordering: no"), "{text}");

    // GET /tsa/certs: leaf first, root last, as PEM.
    let (pem, ct) = rt.block_on(async {
        let r = client.get(server.url("/tsa/certs")).send().await.unwrap();
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        (r.text().await.unwrap(), ct)
    });
    assert_eq!(ct, "application/pem-certificate-chain");
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2);
    let leaf = std::fs::read_to_string(app.tsa_pem()).unwrap();
    assert!(pem.starts_with(leaf.trim()), "leaf first");
    server.stop();
}

#[test]
fn ecdsa_p256_tokens_verify_with_openssl() {
    interop("ecdsa-p256");
}

#[test]
fn ecdsa_p384_tokens_verify_with_openssl() {
    interop("ecdsa-p384");
}

#[test]
fn rsa_2048_tokens_verify_with_openssl() {
    interop("rsa-2048");
}
