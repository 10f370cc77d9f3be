//! [`TokenVerifier`]: the same checklist as [`verify_any`](super::verify_any), with a cache
//! of verified certification paths, for a data center that checks many tokens of the same
//! TSAs.
//!
//! What is cached, and why it never changes an answer: the path search ([`search_path`])
//! is a pure function of the signer certificate, the pool of candidate issuers (the
//! token's certificates, then the untrusted ones, in that order), the roots, the times and
//! the signature backend. The cache key is a SHA-256 over all of them but the times (the
//! exact DER of every certificate, in order). A path is stored only when the search
//! succeeded without setting any candidate aside for its dates; such a search makes the
//! same choices, and returns the same path, at any times inside the path's common validity
//! interval (latest notBefore to earliest notAfter, both included, as the uncached check
//! compares them). So a hit is answered only when every time to check (genTime and/or now)
//! is inside that interval; anything else is searched again from scratch. Every other rule
//! (the CMS signature, the signing certificate, the leaf's EKU, ...) runs on every token.
//!
//! It also keeps the certificates it decoded, by their exact DER: decoding (and the checks
//! that a certificate re-encodes to its own bytes and is DER throughout) is a pure function
//! of those bytes.

use std::sync::atomic::Ordering;

use x509_cert::Certificate;

use super::cache::{CertCache, PathCache};
use super::signature::Backend;
use super::token::{self, Engine};
use super::{Rule, TokenError, TokenOptions, VerifiedToken};

/// Paths kept before the cache is emptied and starts again (a bound on memory when tokens
/// of many different signers pass).
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;

/// How often the cache answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Paths answered from the cache.
    pub hits: u64,
    /// Paths searched (not in the cache, or outside the cached interval).
    pub misses: u64,
    /// Paths held now.
    pub entries: usize,
}

/// The token checklist with a cache of verified certification paths: the data center's
/// fast verifier. Thread-safe (`Send + Sync`): share one behind an `Arc`.
///
/// It accepts and refuses exactly what [`verify_any`](super::verify_any) does with the
/// same options (see the module documentation of how the cache keeps to that).
///
/// ```no_run
/// # use auditstamp::verify::{TokenVerifier, TokenOptions};
/// # fn f(roots: Vec<x509_cert::Certificate>, der: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = TokenVerifier::new(roots)?;
/// let verified = verifier.verify(der, &verifier.options())?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TokenVerifier {
    roots: Vec<Certificate>,
    backend: Backend,
    cache: PathCache,
    certs: CertCache,
}

impl TokenVerifier {
    /// A verifier trusting `roots`, with the default signature backend and cache capacity.
    pub fn new(roots: Vec<Certificate>) -> Result<Self, TokenError> {
        Self::with_backend(roots, Backend::default())
    }

    /// A verifier trusting `roots` whose signatures are checked by `backend`.
    pub fn with_backend(roots: Vec<Certificate>, backend: Backend) -> Result<Self, TokenError> {
        Self::with_capacity(roots, backend, DEFAULT_CACHE_CAPACITY)
    }

    /// A verifier that keeps at most `capacity` paths (at least one).
    pub fn with_capacity(
        roots: Vec<Certificate>,
        backend: Backend,
        capacity: usize,
    ) -> Result<Self, TokenError> {
        let cache = PathCache::new(&roots, capacity)?;
        Ok(TokenVerifier {
            roots,
            backend,
            cache,
            certs: CertCache::new(capacity),
        })
    }

    /// The pinned roots.
    pub fn roots(&self) -> &[Certificate] {
        &self.roots
    }

    /// The strict defaults of [`TokenOptions::new`] with this verifier's roots.
    pub fn options(&self) -> TokenOptions<'_> {
        TokenOptions::new(&self.roots)
    }

    /// Verifies a `TimeStampResp` or a bare `TimeStampToken`, as
    /// [`verify_any`](super::verify_any). `opts.roots` are the roots trusted (usually
    /// [`Self::roots`], through [`Self::options`]); paths are cached per root set.
    pub fn verify(&self, der: &[u8], opts: &TokenOptions<'_>) -> Result<VerifiedToken, TokenError> {
        super::verify_any_with(der, opts, self.engine())
    }

    /// Verifies a `TimeStampResp`, as [`verify_response`](super::verify_response).
    pub fn verify_response(
        &self,
        der: &[u8],
        opts: &TokenOptions<'_>,
    ) -> Result<VerifiedToken, TokenError> {
        super::verify_response_with(der, opts, self.engine())
    }

    /// Verifies a bare `TimeStampToken`, as [`verify_token`](super::verify_token).
    pub fn verify_token(
        &self,
        der: &[u8],
        opts: &TokenOptions<'_>,
    ) -> Result<VerifiedToken, TokenError> {
        token::verify(der, opts, &mut Vec::<Rule>::new(), self.engine())
    }

    /// How often the cache answered so far.
    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            hits: self.cache.hits.load(Ordering::Relaxed),
            misses: self.cache.misses.load(Ordering::Relaxed),
            entries: self
                .cache
                .entries
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len(),
        }
    }

    fn engine(&self) -> Engine<'_> {
        Engine {
            backend: self.backend,
            paths: Some(&self.cache),
            certs: Some(&self.certs),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use der::DecodePem;

    use super::*;
    use crate::verify::{verify_any, ValidAt};

    macro_rules! vector {
        ($name:literal) => {
            &include_bytes!(concat!("../../tests/vectors/verify/", $name))[..]
        };
    }

    fn cert(pem: &[u8]) -> Certificate {
        Certificate::from_pem(pem).unwrap()
    }

    fn root() -> Certificate {
        cert(vector!("root-ca.pem"))
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// 2021-06-01, 2030-01-01, 2100-01-01.
    const MID_2021: u64 = 1_622_505_600;
    const Y2030: u64 = 1_893_456_000;
    const Y2100: u64 = 4_102_444_800;

    /// The outcome as something comparable: the chain, or the rule and message.
    fn outcome(r: Result<VerifiedToken, TokenError>) -> Result<Vec<Certificate>, String> {
        r.map(|v| v.chain)
            .map_err(|e| format!("[{}] {e}", e.rule()))
    }

    #[test]
    fn an_expired_at_gen_time_token_still_fails_with_the_cache_warm() {
        // tsa-expired.pem is valid 2020-01-01..2021-12-31; the token's genTime is 2026.
        let reply = vector!("reply-expired.tsr");
        let v = TokenVerifier::new(vec![root()]).unwrap();
        // Valid "now" in 2021: the path verifies and is cached.
        let in_2021 = TokenOptions {
            valid_at: ValidAt::Now,
            now: at(MID_2021),
            ..v.options()
        };
        v.verify(reply, &in_2021).unwrap();
        assert_eq!(v.cache_stats().entries, 1);
        v.verify(reply, &in_2021).unwrap();
        assert_eq!(v.cache_stats().hits, 1);
        // The same signer, pool and roots (the same cache key), but checked at genTime.
        for valid_at in [ValidAt::GenTime, ValidAt::Both] {
            let opts = TokenOptions {
                valid_at,
                ..in_2021
            };
            let e = v.verify(reply, &opts).unwrap_err();
            assert_eq!(e.rule(), Rule::Chain, "{e}");
            assert!(matches!(e, TokenError::NotValidAt { .. }), "{e}");
            assert_eq!(
                outcome(Err(e)),
                outcome(verify_any(reply, &opts)),
                "cached and uncached disagree"
            );
        }
        // And "now" after the interval fails too.
        let later = TokenOptions {
            now: at(Y2030),
            ..in_2021
        };
        assert_eq!(v.verify(reply, &later).unwrap_err().rule(), Rule::Chain);
        assert_eq!(v.cache_stats().hits, 1, "no hit outside the interval");
    }

    #[test]
    fn a_different_root_set_does_not_hit_the_cache() {
        let reply = vector!("reply-p256-v2-certs.tsr");
        let v = TokenVerifier::new(vec![root()]).unwrap();
        let opts = TokenOptions {
            now: at(Y2030),
            ..v.options()
        };
        assert_eq!(v.verify(reply, &opts).unwrap().chain.len(), 3);
        v.verify(reply, &opts).unwrap();
        let warm = v.cache_stats();
        assert_eq!((warm.hits, warm.misses), (1, 1));

        // The attacker's root (same subject as the real one): refused, from a search.
        let evil = [cert(vector!("evil-root.pem"))];
        let e = v
            .verify(
                reply,
                &TokenOptions {
                    roots: &evil,
                    ..opts
                },
            )
            .unwrap_err();
        assert_eq!(e.rule(), Rule::Chain, "{e}");
        // No root at all.
        let e = v
            .verify(reply, &TokenOptions { roots: &[], ..opts })
            .unwrap_err();
        assert_eq!(e.rule(), Rule::Chain, "{e}");
        // An equal copy of the real roots, held elsewhere: the same digest, a hit.
        let copy = [root()];
        v.verify(
            reply,
            &TokenOptions {
                roots: &copy,
                ..opts
            },
        )
        .unwrap();
        // The intermediate pinned instead: another path, searched.
        let int = [cert(vector!("int-ca.pem"))];
        let chain = v
            .verify(
                reply,
                &TokenOptions {
                    roots: &int,
                    ..opts
                },
            )
            .unwrap()
            .chain;
        assert_eq!(chain.len(), 2);
        let s = v.cache_stats();
        assert_eq!((s.hits, s.misses), (2, 4), "{s:?}");
    }

    #[test]
    fn the_cache_never_changes_an_answer() {
        // Every golden reply, at times before, inside and after the certificates'
        // validity, with each ValidAt and root set: the cached verifier (warm from all the
        // cases before) answers exactly as the uncached verify_any.
        let replies = [
            vector!("reply-p256-v2-certs.tsr"),
            vector!("reply-p256-v2-sha384.tsr"),
            vector!("reply-p256-v2-chain.tsr"),
            vector!("reply-p256-v2-nocerts.tsr"),
            vector!("reply-p256-v1-certs.tsr"),
            vector!("reply-rsa-v2-certs.tsr"),
            vector!("reply-rsa-v1-nocerts.tsr"),
            vector!("reply-rsa1024.tsr"),
            vector!("reply-evil-root.tsr"),
            vector!("reply-expired.tsr"),
            vector!("reply-rejected.tsr"),
            vector!("token-p256-v2.tst"),
            vector!("reply-cert-sigalg-mismatch.tsr"),
            vector!("reply-crls-der.tsr"),
            vector!("reply-unsigned-attrs-unsorted.tsr"),
        ];
        let root_sets = [
            vec![root()],
            vec![cert(vector!("int-ca.pem"))],
            vec![cert(vector!("evil-root.pem"))],
            vec![cert(vector!("evil-root.pem")), root()],
            vec![],
        ];
        let untrusted = [
            cert(vector!("int-ca.pem")),
            cert(vector!("tsa-p256.pem")),
            cert(vector!("tsa-rsa.pem")),
        ];
        let times = [1_500_000_000, MID_2021, Y2030, Y2100];
        for backend in [Backend::AwsLc, Backend::RustCrypto] {
            let v = TokenVerifier::with_backend(vec![root()], backend).unwrap();
            let mut compared = 0;
            for _pass in 0..2 {
                for roots in &root_sets {
                    for reply in replies {
                        for now in times {
                            for valid_at in [ValidAt::GenTime, ValidAt::Now, ValidAt::Both] {
                                for extra in [&untrusted[..], &[]] {
                                    let opts = TokenOptions {
                                        roots,
                                        untrusted: extra,
                                        valid_at,
                                        legacy_ess_v1: true,
                                        now: at(now),
                                        ..TokenOptions::new(roots)
                                    };
                                    assert_eq!(
                                        outcome(v.verify(reply, &opts)),
                                        outcome(verify_any(reply, &opts)),
                                        "{backend:?} now={now} {valid_at:?} roots={}",
                                        roots.len()
                                    );
                                    compared += 1;
                                }
                            }
                        }
                    }
                }
            }
            let s = v.cache_stats();
            assert!(s.hits > 100, "{s:?} after {compared}");
        }
    }

    /// The intermediate again, with the same subject and key but valid only 2020..2021
    /// (re-signed by the root): a look-alike issuer that the search sets aside for its
    /// dates in 2030 and takes in 2021.
    fn expired_twin_of_intermediate() -> Certificate {
        use der::Encode;
        use p256::pkcs8::DecodePrivateKey;
        use signature::Signer;
        let mut c = cert(vector!("int-ca.pem"));
        c.tbs_certificate.validity.not_after = x509_cert::time::Time::UtcTime(
            der::asn1::UtcTime::from_unix_duration(Duration::from_secs(1_640_995_199)).unwrap(),
        );
        c.tbs_certificate.serial_number =
            x509_cert::serial_number::SerialNumber::new(&[0x7f]).unwrap();
        let key = p256::ecdsa::SigningKey::from_pkcs8_pem(
            std::str::from_utf8(vector!("root-ca.key")).unwrap(),
        )
        .unwrap();
        let sig: p256::ecdsa::DerSignature = key.sign(&c.tbs_certificate.to_der().unwrap());
        c.signature = der::asn1::BitString::from_bytes(sig.as_bytes()).unwrap();
        c
    }

    #[test]
    fn a_path_chosen_after_setting_an_issuer_aside_for_its_dates_is_not_cached() {
        let twin = expired_twin_of_intermediate();
        let untrusted = [
            cert(vector!("tsa-p256.pem")),
            twin.clone(),
            cert(vector!("int-ca.pem")),
        ];
        let reply = vector!("reply-p256-v2-nocerts.tsr");
        let v = TokenVerifier::new(vec![root()]).unwrap();
        let opts = |now| TokenOptions {
            untrusted: &untrusted,
            valid_at: ValidAt::Now,
            now: at(now),
            ..v.options()
        };
        // In 2030 the twin is set aside and the real intermediate taken: not cached, as a
        // search in 2021 takes the twin.
        for _ in 0..2 {
            let got = v.verify(reply, &opts(Y2030)).unwrap();
            assert_eq!(got.chain[1], untrusted[2]);
            assert_eq!(outcome(Ok(got)), outcome(verify_any(reply, &opts(Y2030))));
        }
        assert_eq!(v.cache_stats().entries, 0);
        assert_eq!(v.cache_stats().hits, 0);
        let got = v.verify(reply, &opts(MID_2021)).unwrap();
        assert_eq!(got.chain[1], twin);
        assert_eq!(
            outcome(Ok(got)),
            outcome(verify_any(reply, &opts(MID_2021)))
        );
        // That path set nothing aside: cached, and answered while inside its interval only.
        assert_eq!(v.cache_stats().entries, 1);
        v.verify(reply, &opts(MID_2021)).unwrap();
        assert_eq!(v.cache_stats().hits, 1);
        assert_eq!(
            outcome(v.verify(reply, &opts(Y2030))),
            outcome(verify_any(reply, &opts(Y2030)))
        );
        assert_eq!(v.cache_stats().hits, 1);
    }

    #[test]
    fn a_full_cache_starts_again() {
        let v = TokenVerifier::with_capacity(vec![root()], Backend::AwsLc, 1).unwrap();
        let opts = TokenOptions {
            now: at(Y2030),
            ..v.options()
        };
        v.verify(vector!("reply-p256-v2-certs.tsr"), &opts).unwrap();
        v.verify(vector!("reply-rsa-v2-certs.tsr"), &opts).unwrap();
        assert_eq!(v.cache_stats().entries, 1);
        v.verify(vector!("reply-p256-v2-certs.tsr"), &opts).unwrap();
        assert_eq!(v.cache_stats().hits, 0);
    }

    #[test]
    fn a_verifier_is_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<TokenVerifier>();
        let v = std::sync::Arc::new(TokenVerifier::new(vec![root()]).unwrap());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let v = v.clone();
                std::thread::spawn(move || {
                    let opts = TokenOptions {
                        now: at(Y2030),
                        ..v.options()
                    };
                    for _ in 0..20 {
                        v.verify(vector!("reply-p256-v2-certs.tsr"), &opts).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(v.cache_stats().hits + v.cache_stats().misses, 80);
    }
}
