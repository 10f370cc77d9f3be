//! `auditstamp bench verify`: RFC 3161 tokens verified per second on one thread (the full
//! checklist), beside `openssl speed ecdsap256`'s verify/s measured in the same run, and
//! the raw ECDSA P-256 (and RSA-2048) verify rate of each signature backend.

use std::time::{Duration, Instant};

use clap::Args;

use super::BenchError;

/// `bench verify`
#[derive(Debug, Args)]
pub struct VerifyBenchArgs {
    /// Seconds each measurement runs (OpenSSL's too).
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
}

/// The golden vectors the verify benchmark uses (made by `openssl ts -reply`, see
/// tests/vectors/verify/README.md): a P-256 TSA under an intermediate, both in the token.
const BENCH_REPLY: &[u8] = include_bytes!("../../tests/vectors/verify/reply-p256-v2-certs.tsr");
const BENCH_REQUEST: &[u8] = include_bytes!("../../tests/vectors/verify/req-cert.tsq");
const BENCH_DATA: &[u8] = include_bytes!("../../tests/vectors/verify/data.txt");
const BENCH_ROOT: &[u8] = include_bytes!("../../tests/vectors/verify/root-ca.pem");
const BENCH_RSA_REPLY: &[u8] = include_bytes!("../../tests/vectors/verify/reply-rsa-v2-certs.tsr");

/// Calls `f` for `seconds` (after a short warm-up); its rate per second. `f` returning
/// false is a failure of the benchmark itself.
fn rate(seconds: f64, what: &str, mut f: impl FnMut() -> bool) -> Result<f64, BenchError> {
    let failed = || BenchError::Other(format!("bench verify: {what} failed"));
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(200) {
        if !f() {
            return Err(failed());
        }
    }
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        for _ in 0..32 {
            if !f() {
                return Err(failed());
            }
        }
        n += 32;
        let elapsed = start.elapsed().as_secs_f64();
        if elapsed >= seconds {
            return Ok(n as f64 / elapsed);
        }
    }
}

/// `openssl speed -seconds S ecdsap256`: its verify/s, or why there is none.
fn openssl_p256_verify(seconds: u64) -> Result<f64, String> {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "ecdsap256"])
        .output()
        .map_err(|e| format!("openssl could not be run ({e}); install it to compare"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl speed failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_openssl_speed(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| "no `ecdsa (nistp256)` line with verify/s in openssl's output".into())
}

/// The verify/s of `openssl speed ecdsap256`'s result line:
/// ` 256 bits ecdsa (nistp256)   0.0000s   0.0001s  55273.0  18603.0` (the last number).
fn parse_openssl_speed(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains("ecdsa (nistp256)"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// A signature and what it covers, taken from a golden token: (SPKI, signed attributes
/// DER, signature).
fn signed_parts(
    reply: &[u8],
) -> Result<(spki::SubjectPublicKeyInfoOwned, Vec<u8>, Vec<u8>), BenchError> {
    use der::{Decode, Encode};
    let bad = |e: &dyn std::fmt::Display| BenchError::Other(format!("bench vector: {e}"));
    let token = crate::tsp::decode_response_status(reply)
        .map_err(|e| bad(&e))?
        .token
        .ok_or_else(|| bad(&"no token"))?;
    let ci = cms::content_info::ContentInfo::from_der(&token).map_err(|e| bad(&e))?;
    let sd: cms::signed_data::SignedData = ci.content.decode_as().map_err(|e| bad(&e))?;
    let si = sd
        .signer_infos
        .0
        .get(0)
        .ok_or_else(|| bad(&"no SignerInfo"))?;
    let attrs = si
        .signed_attrs
        .as_ref()
        .ok_or_else(|| bad(&"no signed attributes"))?
        .to_der()
        .map_err(|e| bad(&e))?;
    let cms::signed_data::SignerIdentifier::IssuerAndSerialNumber(ias) = &si.sid else {
        return Err(bad(&"sid is not issuerAndSerialNumber"));
    };
    let signer = sd
        .certificates
        .as_ref()
        .and_then(|set| {
            set.0.iter().find_map(|c| match c {
                cms::cert::CertificateChoices::Certificate(c)
                    if c.tbs_certificate.serial_number == ias.serial_number =>
                {
                    Some(c.tbs_certificate.subject_public_key_info.clone())
                }
                _ => None,
            })
        })
        .ok_or_else(|| bad(&"no signer certificate"))?;
    Ok((signer, attrs, si.signature.as_bytes().to_vec()))
}

/// Runs `bench verify`.
pub fn verify(a: &VerifyBenchArgs) -> Result<(), BenchError> {
    use crate::verify::{Backend, TokenOptions, TokenVerifier};
    use der::DecodePem;
    use signature::hazmat::PrehashVerifier;
    let secs = a.seconds.max(1) as f64;
    let root = x509_cert::Certificate::from_pem(BENCH_ROOT)
        .map_err(|e| BenchError::Other(format!("bench vector: {e}")))?;
    let roots = vec![root];
    let digest = crate::tsp::HashAlgorithm::Sha256.digest(BENCH_DATA);
    let request = <x509_tsp::TimeStampReq as der::Decode>::from_der(BENCH_REQUEST)
        .map_err(|e| BenchError::Other(format!("bench vector: {e}")))?;
    let nonce = request
        .nonce
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default();
    let policies: Vec<const_oid::ObjectIdentifier> = vec![const_oid::ObjectIdentifier::new_unwrap(
        "1.3.6.1.4.1.99999.1.1",
    )];
    println!(
        "auditstamp bench verify: one thread, {} s per figure; token = tests/vectors/verify/reply-p256-v2-certs.tsr \
         (ECDSA P-256, TSA certificate + intermediate in the token, pinned root), every rule checked \
         (imprint, nonce, policy; path valid at genTime)",
        a.seconds
    );

    let openssl = openssl_p256_verify(a.seconds.max(1));
    match &openssl {
        Ok(r) => println!(
            "{:<58} {r:>10.0} /s",
            "openssl speed ecdsap256 verify (raw)"
        ),
        Err(why) => println!("{:<58} {why}", "openssl speed ecdsap256 verify (raw)"),
    }

    // The raw signature check of each candidate, on the token's own signature.
    let (spki, attrs, sig) = signed_parts(BENCH_REPLY)?;
    let point = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| BenchError::Other("bench vector: key bits".into()))?
        .to_vec();
    let fast_raw = rate(secs, "aws-lc-rs P-256 verify", || {
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
            &point,
        )
        .verify(&attrs, &sig)
        .is_ok()
    })?;
    println!(
        "{:<58} {fast_raw:>10.0} /s",
        "aws-lc-rs P-256 verify (raw, key parsed each time)"
    );
    let rc_raw = rate(secs, "p256 verify", || {
        let prehash = crate::tsp::HashAlgorithm::Sha256.digest(&attrs);
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
            .ok()
            .zip(p256::ecdsa::Signature::from_der(&sig).ok())
            .is_some_and(|(k, s)| k.verify_prehash(&prehash, &s).is_ok())
    })?;
    println!(
        "{:<58} {rc_raw:>10.0} /s",
        "RustCrypto p256 0.13 verify (raw, key parsed each time)"
    );
    let (rsa_spki, rsa_attrs, rsa_sig) = signed_parts(BENCH_RSA_REPLY)?;
    let rsa_bits = rsa_spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| BenchError::Other("bench vector: RSA key bits".into()))?
        .to_vec();
    let fast_rsa = rate(secs, "aws-lc-rs RSA verify", || {
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            &rsa_bits,
        )
        .verify(&rsa_attrs, &rsa_sig)
        .is_ok()
    })?;
    println!(
        "{:<58} {fast_rsa:>10.0} /s",
        "aws-lc-rs RSA-2048 PKCS#1 verify (raw)"
    );
    let rsa_der = der::Encode::to_der(&rsa_spki).map_err(|e| BenchError::Other(e.to_string()))?;
    let rc_rsa = rate(secs, "rsa verify", || {
        let hashed = crate::tsp::HashAlgorithm::Sha256.digest(&rsa_attrs);
        <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&rsa_der).is_ok_and(
            |k| {
                k.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &hashed, &rsa_sig)
                    .is_ok()
            },
        )
    })?;
    println!(
        "{:<58} {rc_rsa:>10.0} /s",
        "RustCrypto rsa 0.9 RSA-2048 PKCS#1 verify (raw)"
    );

    // Whole tokens.
    fn strict<'a>(
        roots: &'a [x509_cert::Certificate],
        digest: &'a [u8],
        nonce: &'a [u8],
        policies: &'a [const_oid::ObjectIdentifier],
    ) -> TokenOptions<'a> {
        TokenOptions {
            imprint: Some((crate::tsp::HashAlgorithm::Sha256, digest)),
            nonce: Some(nonce),
            policies: Some(policies),
            ..TokenOptions::new(roots)
        }
    }

    let mut figures = Vec::new();
    for (name, backend) in [
        ("aws-lc-rs", Backend::AwsLc),
        ("RustCrypto", Backend::RustCrypto),
    ] {
        let verifier = TokenVerifier::with_backend(roots.clone(), backend)
            .map_err(|e| BenchError::Other(e.to_string()))?;
        let o = strict(verifier.roots(), &digest, &nonce, &policies);
        let r = rate(secs, "token verification", || {
            verifier.verify(BENCH_REPLY, &o).is_ok()
        })?;
        println!(
            "{:<58} {r:>10.0} /s",
            format!("tokens, TokenVerifier ({name}, path cache warm)")
        );
        figures.push(r);
    }
    let o = strict(&roots, &digest, &nonce, &policies);
    let uncached = rate(secs, "token verification", || {
        crate::verify::verify_any(BENCH_REPLY, &o).is_ok()
    })?;
    println!(
        "{:<58} {uncached:>10.0} /s",
        "tokens, verify_any (aws-lc-rs, no cache: 3 ECDSA checks)"
    );
    let best = figures.first().copied().unwrap_or(0.0);
    match openssl {
        Ok(o) if o > 0.0 => println!(
            "ratio: {best:.0} tokens/s / {o:.0} openssl verify/s = {:.0}% (target at least 70%)",
            100.0 * best / o
        ),
        _ => println!("ratio: no OpenSSL figure to compare with"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn openssl_speed_output_is_read() {
        let out = "Doing 256 bits verify ecdsa's for 3s: 55812 256 bits ECDSA verify in 2.99s\n\
                   version: 3.0.19\n\
                   \x20                             sign    verify    sign/s verify/s\n\
                   \x20256 bits ecdsa (nistp256)   0.0000s   0.0001s  55273.0  18603.0\n";
        assert_eq!(parse_openssl_speed(out), Some(18603.0));
        assert_eq!(parse_openssl_speed("nothing here"), None);
        assert_eq!(parse_openssl_speed(" 256 bits ecdsa (nistp256) x y"), None);
    }

    #[test]
    fn the_bench_vectors_decode() {
        let (spki, attrs, sig) = signed_parts(BENCH_REPLY).unwrap();
        assert_eq!(spki.subject_public_key.raw_bytes().len(), 65);
        assert_eq!(attrs[0], 0x31);
        assert!(!sig.is_empty());
        signed_parts(BENCH_RSA_REPLY).unwrap();
        assert!(signed_parts(b"garbage").is_err());
    }
}
