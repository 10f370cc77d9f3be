//! `auditstamp verify token|proof|chain`, run as the real binary: the golden vectors of
//! tests/vectors/verify/ verify and each broken one names its rule (exit 1); `--json` has
//! its documented shape; errors reading input exit 2; against a real appliance, an event's
//! proof bundle and its bare tlog-proof verify and every tampering is named; a whole chain
//! verifies by URL and by export, and a changed export names the event; with several
//! appliances' keys given, each keeps its own name (a checkpoint signed by another
//! appliance's key is refused).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::*;
use serde_json::{json, Value};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/verify")
}

fn v(name: &str) -> String {
    vectors().join(name).to_str().unwrap().to_owned()
}

fn run(args: &[&str]) -> Output {
    std::process::Command::new(bin())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[track_caller]
fn assert_valid(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
}

/// Asserts exit 1 with the check `name` failed (its FAIL line and the error naming it).
#[track_caller]
fn assert_fails(out: &Output, name: &str) {
    let t = text(out);
    assert_eq!(out.status.code(), Some(1), "expected {name} to fail: {t}");
    assert!(
        t.contains(&format!("FAIL {name} ")),
        "no FAIL line for {name}: {t}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("FAILED: {name}: ")),
        "the error does not name {name}: {t}"
    );
}

/// The nonce of an `openssl ts -query` request, as 0xHEX.
fn nonce_of(request: &str) -> String {
    use der::Decode;
    let req = x509_tsp::TimeStampReq::from_der(&std::fs::read(v(request)).unwrap()).unwrap();
    format!("0x{}", hex::encode(req.nonce.unwrap().as_bytes()))
}

const POLICY: &str = "1.3.6.1.4.1.99999.1.1";

/// `verify token` of a golden reply with the data, the root and `extra`.
fn verify_token(reply: &str, extra: &[&str]) -> Output {
    let (input, data, ca) = (v(reply), v("data.txt"), v("root-ca.pem"));
    let mut args = vec![
        "verify", "token", "--in", &input, "--data", &data, "--ca", &ca,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn golden_tokens_verify() {
    let nonce = nonce_of("req-cert.tsq");
    let strict = ["--nonce", &nonce, "--policy", POLICY, "--at", "both"];
    for reply in [
        "reply-p256-v2-certs.tsr",
        "reply-p256-v2-sha384.tsr",
        "reply-p256-v2-chain.tsr",
        "reply-rsa-v2-certs.tsr",
        "token-p256-v2.tst",
    ] {
        let out = verify_token(reply, &strict);
        assert_valid(&out);
        let t = text(&out);
        for rule in [
            "der",
            "cms-structure",
            "chain",
            "signature",
            "imprint",
            "nonce",
            "policy",
        ] {
            assert!(t.contains(&format!("ok   {rule} ")), "{reply}: {t}");
        }
        assert!(t.contains("VALID"), "{t}");
    }
    let t = text(&verify_token("reply-p256-v2-certs.tsr", &strict));
    assert!(
        t.contains("ok   signature           ECDSA P-256 with SHA-256"),
        "{t}"
    );
    let t = text(&verify_token("reply-rsa-v2-certs.tsr", &strict));
    assert!(t.contains("RSA-2048 PKCS#1 v1.5 with SHA-256"), "{t}");
    // A bare token has no status: it says so.
    let t = text(&verify_token("token-p256-v2.tst", &strict));
    assert!(t.contains("skip status"), "{t}");

    // Without certificates in the token: given with --untrusted.
    let nonce = nonce_of("req-nocert.tsq");
    let (tsa, int) = (v("tsa-p256.pem"), v("int-ca.pem"));
    let out = verify_token(
        "reply-p256-v2-nocerts.tsr",
        &["--nonce", &nonce, "--untrusted", &tsa, "--untrusted", &int],
    );
    assert_valid(&out);
    let rsa = v("tsa-rsa.pem");
    let out = verify_token(
        "reply-rsa-v1-nocerts.tsr",
        &["--nonce", &nonce, "--untrusted", &rsa, "--legacy-ess-v1"],
    );
    assert_valid(&out);

    // By digest, the algorithm from its length; skipped rules say why.
    let digest = hex::encode(
        auditstamp::tsp::HashAlgorithm::Sha256.digest(&std::fs::read(v("data.txt")).unwrap()),
    );
    let (input, ca) = (v("reply-p256-v2-certs.tsr"), v("root-ca.pem"));
    let out = run(&[
        "verify", "token", "--in", &input, "--digest", &digest, "--ca", &ca,
    ]);
    assert_valid(&out);
    let t = text(&out);
    assert!(
        t.contains("skip nonce") && t.contains("no --nonce given"),
        "{t}"
    );
    assert!(t.contains("skip policy"), "{t}");
    // Decimal nonces are read too.
    let hex_nonce = nonce_of("req-cert.tsq");
    let decimal = u64::from_str_radix(&hex_nonce[2..], 16)
        .unwrap()
        .to_string();
    assert_valid(&verify_token(
        "reply-p256-v2-certs.tsr",
        &["--nonce", &decimal],
    ));
}

#[test]
fn each_negative_vector_names_its_rule() {
    let nonce = nonce_of("req-cert.tsq");
    let cases: &[(&str, &[&str], &str)] = &[
        ("reply-expired.tsr", &[], "chain"),
        ("reply-evil-root.tsr", &[], "chain"),
        ("reply-rsa1024.tsr", &[], "signature"),
        ("reply-rejected.tsr", &[], "status"),
        ("reply-p256-v1-certs.tsr", &[], "signing-certificate"),
        ("reply-p256-v2-nononce.tsr", &["--nonce", &nonce], "nonce"),
        ("reply-p256-v2-certs.tsr", &["--nonce", "0x01"], "nonce"),
        (
            "reply-p256-v2-certs.tsr",
            &["--policy", "1.2.3.4"],
            "policy",
        ),
        ("reply-p256-v2-nocerts.tsr", &[], "signer-by-sid"),
        (
            "reply-p256-v2-certs.tsr",
            &["--at", "now", "--hash", "sha512"],
            "imprint",
        ),
        // Not a token at all.
        ("data.txt", &[], "der"),
        ("root-ca.pem", &[], "der"),
    ];
    for (reply, extra, rule) in cases {
        let out = verify_token(reply, extra);
        assert_fails(&out, rule);
        assert!(text(&out).contains("INVALID"));
    }
    // The wrong data.
    let other = v("ca.cnf");
    let (input, ca) = (v("reply-p256-v2-certs.tsr"), v("root-ca.pem"));
    let out = run(&[
        "verify", "token", "--in", &input, "--data", &other, "--ca", &ca,
    ]);
    assert_fails(&out, "imprint");
    // The wrong root: the token's own certificates are never trusted.
    let evil = v("evil-root.pem");
    let out = run(&[
        "verify",
        "token",
        "--in",
        &input,
        "--data",
        &v("data.txt"),
        "--ca",
        &evil,
    ]);
    assert_fails(&out, "chain");
    // Truncated at every length: never a panic, always a named rule and exit 1.
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(&input).unwrap();
    for cut in [0, 1, 2, 10, 100, full.len() / 2, full.len() - 1] {
        let path = dir.path().join("cut.tsr");
        std::fs::write(&path, &full[..cut]).unwrap();
        let out = run(&[
            "verify",
            "token",
            "--in",
            path.to_str().unwrap(),
            "--data",
            &v("data.txt"),
            "--ca",
            &ca,
        ]);
        assert_eq!(out.status.code(), Some(1), "cut at {cut}: {}", text(&out));
        assert!(text(&out).contains("FAIL "), "{}", text(&out));
    }
}

#[test]
fn json_output_has_its_shape() {
    let nonce = nonce_of("req-cert.tsq");
    let out = verify_token("reply-p256-v2-certs.tsr", &["--nonce", &nonce, "--json"]);
    assert_valid(&out);
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["valid"], true);
    assert_eq!(j["form"], "TimeStampResp");
    assert_eq!(j["failed"], Value::Null);
    let checks = j["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 17);
    for c in checks {
        assert!(c["rule"].is_string() && c["detail"].is_string(), "{c}");
        assert!(c["ok"].is_boolean() || c["ok"].is_null(), "{c}");
    }
    let by_rule = |name: &str| checks.iter().find(|c| c["rule"] == name).unwrap().clone();
    assert_eq!(by_rule("signature")["ok"], true);
    assert_eq!(by_rule("policy")["status"], "skipped");
    let t = &j["tst_info"];
    for key in [
        "serial",
        "gen_time",
        "policy",
        "hash_algorithm",
        "digest",
        "nonce",
        "signer",
        "chain",
    ] {
        assert!(!t[key].is_null(), "tst_info has no {key}: {t}");
    }
    assert_eq!(t["policy"], POLICY);
    assert_eq!(t["nonce"], nonce.trim_start_matches("0x").to_lowercase());

    let out = verify_token("reply-expired.tsr", &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["valid"], false);
    assert_eq!(j["failed"], "chain");
    assert_eq!(j["tst_info"], Value::Null);
    let checks = j["checks"].as_array().unwrap();
    let chain = checks.iter().find(|c| c["rule"] == "chain").unwrap();
    assert_eq!(chain["ok"], false);
    assert!(chain["detail"]
        .as_str()
        .unwrap()
        .contains("not valid at genTime"));
    let sig = checks.iter().find(|c| c["rule"] == "signature").unwrap();
    assert_eq!(sig["status"], "not-checked");
}

#[test]
fn errors_reading_the_input_exit_2() {
    let (input, data, ca) = (
        v("reply-p256-v2-certs.tsr"),
        v("data.txt"),
        v("root-ca.pem"),
    );
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "verify",
            "token",
            "--in",
            "/nonexistent.tsr",
            "--data",
            &data,
            "--ca",
            &ca,
        ],
        vec![
            "verify",
            "token",
            "--in",
            &input,
            "--data",
            "/nonexistent",
            "--ca",
            &ca,
        ],
        vec![
            "verify",
            "token",
            "--in",
            &input,
            "--data",
            &data,
            "--ca",
            "/nonexistent.pem",
        ],
        vec![
            "verify",
            "token",
            "--in",
            &input,
            "--data",
            &data,
            "--ca",
            garbage.to_str().unwrap(),
        ],
        vec![
            "verify",
            "token",
            "--in",
            &input,
            "--data",
            &data,
            "--ca",
            empty.to_str().unwrap(),
        ],
        vec![
            "verify", "token", "--in", &input, "--data", &data, "--ca", &ca, "--nonce", "12x",
        ],
        vec![
            "verify",
            "token",
            "--in",
            &input,
            "--data",
            &data,
            "--ca",
            &ca,
            "--policy",
            "not-an-oid",
        ],
        vec![
            "verify", "token", "--in", &input, "--digest", "abcd", "--ca", &ca,
        ],
        vec![
            "verify", "token", "--in", &input, "--digest", "zz", "--ca", &ca,
        ],
        // No imprint at all: a usage error (clap's exit 2).
        vec!["verify", "token", "--in", &input, "--ca", &ca],
        vec!["verify", "proof", "--in", &data, "--key", "x+00000000+AQ=="],
        vec!["verify", "chain", "--dir", "/nonexistent-export"],
        vec!["verify", "chain", "--url", "not-a-url"],
    ];
    for args in cases {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert!(err.contains("error"), "{args:?}: {err}");
    }
}

// ---------------------------------------------------------------------------------------
// Against a running appliance
// ---------------------------------------------------------------------------------------

fn write_json(dir: &Path, name: &str, v: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Re-encodes the base64 field `field` of `v` after `change` edits its bytes.
fn edit_b64(v: &mut Value, pointer: &str, change: impl FnOnce(&mut Vec<u8>)) {
    let slot = v.pointer_mut(pointer).unwrap();
    let mut bytes = B64.decode(slot.as_str().unwrap()).unwrap();
    change(&mut bytes);
    *slot = Value::String(B64.encode(bytes));
}

#[test]
fn proofs_and_chains_of_a_running_appliance() {
    let app = Appliance::new("ecdsa-p256");
    let server = app.start();
    let rt = rt();
    let client = reqwest::Client::new();
    let (bundle, later) = rt.block_on(async {
        let batch: Vec<Value> = (0..40).map(event).collect();
        let r = client
            .post(server.url("/v1/events/batch"))
            .json(&Value::from(batch))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        wait_sealed(&client, &server, 40).await;
        // More events after the first seal: several blocks.
        let batch: Vec<Value> = (40..300).map(event).collect();
        client
            .post(server.url("/v1/events/batch"))
            .json(&Value::from(batch))
            .send()
            .await
            .unwrap();
        wait_sealed(&client, &server, 300).await;
        let (status, bundle) = get_json(&client, &server.url("/v1/events/17")).await;
        assert_eq!(status, 200, "{bundle}");
        let (_, later) = get_json(&client, &server.url("/v1/events/299")).await;
        (bundle, later)
    });
    let key = bundle["verifier_key"].as_str().unwrap().to_owned();
    let ca = app.ca_pem().to_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // The bundle verifies, every check on its own line.
    let good = write_json(d, "bundle.json", &bundle);
    let out = run(&["verify", "proof", "--in", &good, "--key", &key, "--ca", &ca]);
    assert_valid(&out);
    let t = text(&out);
    eprintln!("verify proof of a bundle (shown with --nocapture):\n{t}");
    for check in [
        "leaf",
        "inclusion",
        "checkpoint",
        "tlog-proof",
        "header",
        "header-tree",
        "header-signature",
        "token",
    ] {
        assert!(t.contains(&format!("ok   {check} ")), "{check}: {t}");
    }
    let out = run(&[
        "verify",
        "proof",
        "--in",
        &write_json(d, "later.json", &later),
        "--key",
        &key,
        "--ca",
        &ca,
        "--json",
    ]);
    assert_valid(&out);
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["valid"], true);
    assert_eq!(j["form"], "bundle");
    // The key may be given as a file (verifier-key.txt).
    let key_file = d.join("verifier-key.txt");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    assert_valid(&run(&[
        "verify",
        "proof",
        "--in",
        &good,
        "--key",
        key_file.to_str().unwrap(),
        "--ca",
        &ca,
    ]));

    // The bare tlog-proof: leaf, inclusion and checkpoint only, and it says so.
    let tlog = d.join("event17.tlog-proof");
    std::fs::write(&tlog, bundle["tlog_proof"].as_str().unwrap()).unwrap();
    let out = run(&[
        "verify",
        "proof",
        "--in",
        tlog.to_str().unwrap(),
        "--key",
        &key,
    ]);
    assert_valid(&out);
    let t = text(&out);
    eprintln!("verify proof of a tlog-proof:\n{t}");
    assert!(
        t.contains("ok   inclusion") && t.contains("ok   checkpoint"),
        "{t}"
    );
    assert!(
        t.contains("skip token") && t.contains("a bare tlog-proof has no block"),
        "{t}"
    );

    // Every tampering is named.
    let mut cases: Vec<(&str, Value)> = Vec::new();
    let mut b = bundle.clone();
    edit_b64(&mut b, "/leaf", |l| {
        let at = l.len() - 3;
        l[at] ^= 1;
    });
    cases.push(("leaf", b));
    let mut b = bundle.clone();
    edit_b64(&mut b, "/inclusion_proof/0", |h| h[0] ^= 1);
    cases.push(("inclusion", b));
    let mut b = bundle.clone();
    let cp = b["checkpoint"].as_str().unwrap().to_owned();
    // The signature line's last base64 character before the newline.
    let mut chars: Vec<char> = cp.chars().collect();
    let at = chars.len() - 12;
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    b["checkpoint"] = Value::String(chars.into_iter().collect());
    cases.push(("checkpoint", b));
    let mut b = bundle.clone();
    edit_b64(&mut b, "/block/header", |h| {
        h[1 + 8 + 32 + 8 + 32 + 8 + 8 + 7] ^= 1
    }); // sealed_at
    cases.push(("header", b));
    let mut b = bundle.clone();
    // The header changed consistently with its fields: its signature no longer verifies.
    edit_b64(&mut b, "/block/header", |h| {
        h[1 + 8 + 32 + 8 + 32 + 8 + 8 + 7] ^= 1
    });
    let sealed = b["block"]["sealed_at_ms"].as_u64().unwrap() ^ 1;
    b["block"]["sealed_at_ms"] = json!(sealed);
    b["block"].as_object_mut().unwrap().remove("header_hash");
    cases.push(("header-signature", b));
    let mut b = bundle.clone();
    edit_b64(&mut b, "/block/signature", |s| s[5] ^= 1);
    cases.push(("header-signature", b));
    let mut b = bundle.clone();
    edit_b64(&mut b, "/block/token", |t| {
        let at = t.len() - 10;
        t[at] ^= 1;
    });
    cases.push(("token", b));
    let mut b = bundle.clone();
    b["tree_size"] = json!(3);
    cases.push(("inclusion", b));
    for (i, (check, b)) in cases.into_iter().enumerate() {
        let path = write_json(d, &format!("tampered-{i}.json"), &b);
        let out = run(&["verify", "proof", "--in", &path, "--key", &key, "--ca", &ca]);
        assert_fails(&out, check);
    }
    // The event shown must be the leaf's exactly: a repeated key, which a JSON reader
    // that keeps the last value would not see, is named (in details and at the top).
    let pretty = String::from_utf8(serde_json::to_vec_pretty(&bundle).unwrap()).unwrap();
    assert_eq!(pretty.matches("\"n\": 17").count(), 1, "{pretty}");
    assert_eq!(pretty.matches("\"agency\": ").count(), 1, "{pretty}");
    for (i, shown) in [
        pretty.replace("\"n\": 17", "\"n\": 16, \"n\": 17"),
        pretty.replace("\"agency\": ", "\"agency\": \"agency-9\", \"agency\": "),
    ]
    .into_iter()
    .enumerate()
    {
        let path = d.join(format!("shown-twice-{i}.json"));
        std::fs::write(&path, shown).unwrap();
        let out = run(&[
            "verify",
            "proof",
            "--in",
            path.to_str().unwrap(),
            "--key",
            &key,
            "--ca",
            &ca,
        ]);
        assert_fails(&out, "leaf");
        assert!(
            text(&out).contains("appears more than once"),
            "{}",
            text(&out)
        );
    }
    // Another appliance's key, and the wrong CA.
    let other = "someone+00000000+AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let out = run(&[
        "verify", "proof", "--in", &good, "--key", other, "--ca", &ca,
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a malformed key is a usage error: {}",
        text(&out)
    );
    let wrong_ca = vectors().join("root-ca.pem");
    let out = run(&[
        "verify",
        "proof",
        "--in",
        &good,
        "--key",
        &key,
        "--ca",
        wrong_ca.to_str().unwrap(),
    ]);
    assert_fails(&out, "token");
    // Garbage and truncated bundles are clear errors, not panics.
    for (name, body) in [
        ("garbage.json", "{\"leaf\": 12"),
        ("empty.json", ""),
        ("array.json", "[1,2]"),
    ] {
        let path = d.join(name);
        std::fs::write(&path, body).unwrap();
        let out = run(&[
            "verify",
            "proof",
            "--in",
            path.to_str().unwrap(),
            "--key",
            &key,
            "--ca",
            &ca,
        ]);
        assert!(
            matches!(out.status.code(), Some(1 | 2)),
            "{name}: {}",
            text(&out)
        );
        assert!(!text(&out).contains("panicked"), "{}", text(&out));
    }
    let out = run(&[
        "verify",
        "proof",
        "--in",
        &write_json(d, "obj.json", &json!({})),
        "--key",
        &key,
        "--ca",
        &ca,
    ]);
    assert_fails(&out, "leaf");

    // The whole chain by URL.
    let url = server.url("");
    let out = run(&["verify", "chain", "--url", &url, "--key", &key, "--ca", &ca]);
    assert_valid(&out);
    let t = text(&out);
    eprintln!("verify chain --url:\n{t}");
    assert!(t.contains("events      ") && t.contains("OK"), "{t}");
    let out = run(&[
        "verify", "chain", "--url", &url, "--key", &key, "--ca", &ca, "--json",
    ]);
    assert_valid(&out);
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["ok"], true);
    assert!(j["events"].as_u64().unwrap() >= 300, "{j}");
    assert!(j["blocks"].as_u64().unwrap() >= 2, "{j}");
    // Without --key: the published key, and it says what that proves.
    let out = run(&["verify", "chain", "--url", &url]);
    assert_valid(&out);
    assert!(text(&out).contains("pass --key"), "{}", text(&out));
    // The wrong key is refused.
    let out = run(&["verify", "chain", "--url", &url, "--key", other]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // A well-formed key of the same name that is not the appliance's: invalid (exit 1).
    let stranger = auditstamp::chain::note::verifier_key(
        "test-appliance.example/chain",
        &ed25519_dalek::SigningKey::from_bytes(&[7; 32])
            .verifying_key()
            .to_bytes(),
    );
    let out = run(&["verify", "chain", "--url", &url, "--key", &stranger]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("unknown key"), "{}", text(&out));
    let out = run(&[
        "verify", "proof", "--in", &good, "--key", &stranger, "--ca", &ca,
    ]);
    assert_fails(&out, "checkpoint");
    server.stop();

    // By export, with the same driver as `chain verify --dir`.
    let export = d.join("export");
    let st = app.path().to_str().unwrap().to_owned();
    app.cli_ok(&[
        "chain",
        "export",
        "--state",
        &st,
        "--out",
        export.to_str().unwrap(),
    ]);
    let ex = export.to_str().unwrap();
    let out = run(&["verify", "chain", "--dir", ex, "--key", &key, "--ca", &ca]);
    assert_valid(&out);
    let out = app.cli(&["chain", "verify", "--dir", ex, "--key", &key, "--ca", &ca]);
    assert_valid(&out);
    // A changed event in the export is named.
    let bundle_file = export.join("tile/entries/000");
    let mut data = std::fs::read(&bundle_file).unwrap();
    let at = data
        .windows(12)
        .position(|w| w == b"dataset/23\0\0")
        .unwrap();
    data[at + 9] = b'4';
    std::fs::write(&bundle_file, &data).unwrap();
    let out = run(&["verify", "chain", "--dir", ex, "--key", &key, "--ca", &ca]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("event 23"), "{}", text(&out));
    let out = run(&["verify", "chain", "--dir", ex, "--key", &key, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["ok"], false);
    assert!(j["error"].as_str().unwrap().contains("event 23"), "{j}");
    // A removed block is named too.
    std::fs::write(&bundle_file, {
        data[at + 9] = b'3';
        &data
    })
    .unwrap();
    assert_valid(&run(&["verify", "chain", "--dir", ex, "--key", &key]));
    std::fs::remove_file(export.join("blocks/0")).unwrap();
    let out = run(&["verify", "chain", "--dir", ex, "--key", &key]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("block 0: missing"), "{}", text(&out));
}

/// Seals 30 events on `app` (whose server runs only meanwhile) and exports its chain to
/// `out`; returns its chain verifier key.
fn sealed_export(app: &Appliance, out: &Path) -> String {
    let server = app.start();
    let rt = rt();
    let client = reqwest::Client::new();
    let key = rt.block_on(async {
        let batch: Vec<Value> = (0..30).map(event).collect();
        let r = client
            .post(server.url("/v1/events/batch"))
            .json(&Value::from(batch))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        wait_sealed(&client, &server, 30).await;
        let (status, bundle) = get_json(&client, &server.url("/v1/events/0")).await;
        assert_eq!(status, 200, "{bundle}");
        bundle["verifier_key"].as_str().unwrap().to_owned()
    });
    server.stop();
    app.cli_ok(&[
        "chain",
        "export",
        "--state",
        app.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    key
}

#[test]
fn several_keys_each_keep_their_own_name() {
    // Two appliances, two logs: each verifies with both appliances' keys given, in
    // either order, from an export and from the stopped appliance's store.
    let a = Appliance::new("ecdsa-p256");
    let b = Appliance::new("ecdsa-p256");
    let origin_a = "test-appliance.example/chain";
    let origin_b = "second-appliance.example/chain";
    b.write_config(&[(
        &format!("origin = \"{origin_a}\""),
        &format!("origin = \"{origin_b}\""),
    )]);
    let dir = tempfile::tempdir().unwrap();
    let (ex_a, ex_b) = (dir.path().join("a"), dir.path().join("b"));
    let key_a = sealed_export(&a, &ex_a);
    let key_b = sealed_export(&b, &ex_b);
    assert!(key_a.starts_with(origin_a) && key_b.starts_with(origin_b));
    for (app, ex) in [(&a, &ex_a), (&b, &ex_b)] {
        let ex = ex.to_str().unwrap();
        let state = app.path().to_str().unwrap();
        for (k1, k2) in [(&key_a, &key_b), (&key_b, &key_a)] {
            let out = run(&["verify", "chain", "--dir", ex, "--key", k1, "--key", k2]);
            assert_valid(&out);
            let out = app.cli(&[
                "chain", "verify", "--state", state, "--key", k1, "--key", k2,
            ]);
            assert_valid(&out);
            assert!(text(&out).contains("OK"), "{}", text(&out));
        }
    }
    // One appliance's key alone does not verify the other's log.
    let out = run(&[
        "verify",
        "chain",
        "--dir",
        ex_a.to_str().unwrap(),
        "--key",
        &key_b,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(origin_a), "{}", text(&out));

    // A checkpoint of log A signed by another appliance's key, under A's origin or under
    // its own name: refused whichever order the keys come in.
    let rogue = ed25519_dalek::SigningKey::from_bytes(&[11; 32]);
    let rogue_pk = rogue.verifying_key().to_bytes();
    let rogue_name = "rogue-appliance.example/chain";
    let rogue_key = auditstamp::chain::note::verifier_key(rogue_name, &rogue_pk);
    let forged = dir.path().join("forged");
    let cp = ex_a.join("checkpoint");
    let text_a = auditstamp::chain::note::SignedNote::parse(&std::fs::read_to_string(&cp).unwrap())
        .unwrap()
        .text;
    for name in [origin_a, rogue_name] {
        let _ = std::fs::remove_dir_all(&forged);
        let o = std::process::Command::new("cp")
            .arg("-r")
            .arg(&ex_a)
            .arg(&forged)
            .output()
            .unwrap();
        assert!(o.status.success());
        use ed25519_dalek::Signer as _;
        let note = auditstamp::chain::note::SignedNote {
            signatures: vec![auditstamp::chain::note::NoteSignature {
                name: name.into(),
                id: auditstamp::chain::note::key_id(name, &rogue_pk),
                signature: rogue.sign(text_a.as_bytes()).to_bytes().to_vec(),
            }],
            text: text_a.clone(),
        };
        std::fs::write(forged.join("checkpoint"), note.format()).unwrap();
        let f = forged.to_str().unwrap();
        for (k1, k2) in [(&key_a, &rogue_key), (&rogue_key, &key_a)] {
            let out = run(&["verify", "chain", "--dir", f, "--key", k1, "--key", k2]);
            assert_eq!(
                out.status.code(),
                Some(1),
                "a checkpoint of {origin_a} signed by {rogue_name}'s key as {name} was accepted: {}",
                text(&out)
            );
            assert!(
                text(&out).contains(&format!(
                    "no valid signature by a chain key named \"{origin_a}\""
                )),
                "{}",
                text(&out)
            );
        }
    }
}

#[test]
fn bench_verify_prints_both_figures() {
    let out = run(&["bench", "verify", "--seconds", "1"]);
    assert_valid(&out);
    let t = text(&out);
    assert!(t.contains("openssl speed ecdsap256 verify"), "{t}");
    assert!(t.contains("tokens, TokenVerifier (aws-lc-rs"), "{t}");
    assert!(t.contains("ratio: "), "{t}");
}
