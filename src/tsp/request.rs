//! Reading (and, for clients and tests, writing) time-stamp requests.

use der::asn1::{AnyRef, Int, IntRef, ObjectIdentifier, OctetStringRef};
use der::referenced::OwnedToRef;
use der::{Decode, Encode, Tag, Tagged};

use super::asn1::{MessageImprint, TimeStampReq};
use super::{FailureInfo, HashAlgorithm, Rejection, TspError};

/// What the TSA accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRules {
    /// Hash algorithms accepted for message imprints.
    pub accepted_hashes: Vec<HashAlgorithm>,
    /// Policies a request may ask for. The default policy is always accepted, listed here
    /// or not.
    pub accepted_policies: Vec<ObjectIdentifier>,
    /// The policy of tokens whose request names none.
    pub default_policy: ObjectIdentifier,
}

/// A request that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidRequest {
    /// The imprint's hash algorithm.
    pub hash: HashAlgorithm,
    /// The imprint's digest (its length checked against `hash`).
    pub digest: Vec<u8>,
    /// Whether the request wrote the hash algorithm's parameters as NULL (else absent);
    /// the token's messageImprint copies the request's exactly.
    pub hash_params_null: bool,
    /// The policy of the token: the requested one if accepted, else the default.
    pub policy: ObjectIdentifier,
    /// The request's nonce, to be echoed byte for byte.
    pub nonce: Option<Int>,
    /// Whether the client asked for the signer certificate in the token.
    pub cert_req: bool,
}

/// Checks a DER TimeStampReq against `rules`, in this order, each refusal with the
/// failInfo of TSA-PROFILE.md:
///
/// | problem | failInfo |
/// |---|---|
/// | not a DER TimeStampReq, trailing bytes, certReq FALSE encoded | badDataFormat |
/// | version other than 1 | badRequest |
/// | hash algorithm unknown or not accepted; parameters neither absent nor NULL | badAlg |
/// | imprint length not the algorithm's | badDataFormat |
/// | reqPolicy neither the default nor accepted | unacceptedPolicy |
/// | extensions present (none is supported) | unacceptedExtension |
pub fn parse_request(der: &[u8], rules: &RequestRules) -> Result<ValidRequest, Rejection> {
    let req = TimeStampReq::from_der(der).map_err(|e| {
        Rejection::new(
            FailureInfo::BadDataFormat,
            format!("the request is not a DER-encoded TimeStampReq ({e})"),
        )
    })?;
    if req.cert_req == Some(false) {
        return Err(Rejection::new(
            FailureInfo::BadDataFormat,
            "the request is not DER: certReq FALSE is the default and must be omitted",
        ));
    }
    if req.version.as_bytes() != [1] {
        return Err(Rejection::new(
            FailureInfo::BadRequest,
            "unsupported TimeStampReq version: only version 1 is accepted",
        ));
    }

    let imprint = &req.message_imprint;
    let alg_oid = imprint.hash_algorithm.oid;
    let hash = HashAlgorithm::from_oid(&alg_oid)
        .filter(|h| rules.accepted_hashes.contains(h))
        .ok_or_else(|| {
            let accepted: Vec<&str> = rules.accepted_hashes.iter().map(|h| h.name()).collect();
            Rejection::new(
                FailureInfo::BadAlg,
                format!(
                    "hash algorithm {alg_oid} is not accepted (accepted: {})",
                    accepted.join(", ")
                ),
            )
        })?;
    if !params_absent_or_null(imprint.hash_algorithm.parameters) {
        return Err(Rejection::new(
            FailureInfo::BadAlg,
            format!("{hash} parameters must be absent or NULL"),
        ));
    }
    let digest = imprint.hashed_message.as_bytes();
    if digest.len() != hash.output_len() {
        return Err(Rejection::new(
            FailureInfo::BadDataFormat,
            format!(
                "a {hash} message imprint is {} bytes, this one is {}",
                hash.output_len(),
                digest.len()
            ),
        ));
    }

    let policy = match req.req_policy {
        None => rules.default_policy,
        Some(p) if p == rules.default_policy || rules.accepted_policies.contains(&p) => p,
        Some(p) => {
            return Err(Rejection::new(
                FailureInfo::UnacceptedPolicy,
                format!("policy {p} is not accepted"),
            ))
        }
    };
    if req.extensions.is_some() {
        return Err(Rejection::new(
            FailureInfo::UnacceptedExtension,
            "request extensions are not supported",
        ));
    }

    let nonce = match req.nonce {
        None => None,
        Some(n) => Some(Int::new(n.as_bytes()).map_err(|e| {
            Rejection::new(
                FailureInfo::BadDataFormat,
                format!("unreadable nonce ({e})"),
            )
        })?),
    };
    Ok(ValidRequest {
        hash,
        digest: digest.to_vec(),
        hash_params_null: imprint.hash_algorithm.parameters.is_some(),
        policy,
        nonce,
        cert_req: req.cert_req == Some(true),
    })
}

/// True when AlgorithmIdentifier parameters are absent or an (empty) NULL.
fn params_absent_or_null(params: Option<AnyRef<'_>>) -> bool {
    match params {
        None => true,
        Some(any) => any.tag() == Tag::Null && any.value().is_empty(),
    }
}

/// What goes into a time-stamp request (for clients and tests).
#[derive(Clone, Copy, Debug)]
pub struct RequestParams<'a> {
    /// The imprint's hash algorithm (written with NULL parameters, as OpenSSL does).
    pub hash: HashAlgorithm,
    /// The digest of the data to time-stamp.
    pub digest: &'a [u8],
    /// The policy asked for, if any.
    pub policy: Option<&'a ObjectIdentifier>,
    /// The nonce, if any.
    pub nonce: Option<&'a Int>,
    /// Ask for the signer certificate in the token.
    pub cert_req: bool,
}

/// Encodes a DER TimeStampReq (version 1, no extensions; certReq omitted when false).
/// Refuses a digest whose length is not the algorithm's.
pub fn encode_request(p: &RequestParams<'_>) -> Result<Vec<u8>, TspError> {
    if p.digest.len() != p.hash.output_len() {
        return Err(TspError::DigestLength {
            hash: p.hash,
            expected: p.hash.output_len(),
            actual: p.digest.len(),
        });
    }
    let req = TimeStampReq {
        version: IntRef::new(&[1])?,
        message_imprint: MessageImprint {
            hash_algorithm: p.hash.identifier_null_params(),
            hashed_message: OctetStringRef::new(p.digest)?,
        },
        req_policy: p.policy.copied(),
        nonce: p.nonce.map(|n| n.owned_to_ref()),
        cert_req: p.cert_req.then_some(true),
        extensions: None,
    };
    Ok(req.to_der()?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use der::asn1::{OctetString, Utf8StringRef};
    use x509_cert::ext::Extension;

    const POLICY_DEFAULT: &str = "1.3.6.1.4.1.99999.1.1";
    const POLICY_OTHER: &str = "1.3.6.1.4.1.99999.1.2";
    const SHA1: &str = "1.3.14.3.2.26";
    const MD5: &str = "1.2.840.113549.2.5";

    macro_rules! vector {
        ($name:literal) => {
            &include_bytes!(concat!("../../tests/vectors/tsp/", $name))[..]
        };
    }

    fn rules() -> RequestRules {
        RequestRules {
            accepted_hashes: HashAlgorithm::ALL.to_vec(),
            accepted_policies: vec![POLICY_OTHER.parse().unwrap()],
            default_policy: POLICY_DEFAULT.parse().unwrap(),
        }
    }

    /// A well-formed request to start from; each refusal test changes one thing.
    fn good() -> TimeStampReq<'static> {
        TimeStampReq {
            version: IntRef::new(&[1]).unwrap(),
            message_imprint: MessageImprint {
                hash_algorithm: HashAlgorithm::Sha256.identifier_null_params(),
                hashed_message: OctetStringRef::new(&[0xab; 32]).unwrap(),
            },
            req_policy: None,
            nonce: Some(IntRef::new(&[0x00, 0x80, 0x01]).unwrap()),
            cert_req: Some(true),
            extensions: None,
        }
    }

    fn refusal(der: &[u8]) -> FailureInfo {
        parse_request(der, &rules()).unwrap_err().fail
    }

    fn refusal_of(req: &TimeStampReq<'_>) -> FailureInfo {
        refusal(&req.to_der().unwrap())
    }

    #[test]
    fn good_request_is_accepted() {
        let v = parse_request(&good().to_der().unwrap(), &rules()).unwrap();
        assert_eq!(v.hash, HashAlgorithm::Sha256);
        assert_eq!(v.digest, vec![0xab; 32]);
        assert_eq!(v.policy.to_string(), POLICY_DEFAULT);
        assert_eq!(v.nonce.unwrap().as_bytes(), [0x00, 0x80, 0x01]);
        assert!(v.cert_req);
    }

    #[test]
    fn openssl_requests() {
        // (file, hash, nonce present, certReq, policy)
        let cases = [
            (
                vector!("req-sha256.tsq"),
                HashAlgorithm::Sha256,
                true,
                false,
                POLICY_DEFAULT,
            ),
            (
                vector!("req-sha384.tsq"),
                HashAlgorithm::Sha384,
                true,
                false,
                POLICY_DEFAULT,
            ),
            (
                vector!("req-sha512.tsq"),
                HashAlgorithm::Sha512,
                true,
                false,
                POLICY_DEFAULT,
            ),
            (
                vector!("req-sha256-nononce.tsq"),
                HashAlgorithm::Sha256,
                false,
                false,
                POLICY_DEFAULT,
            ),
            (
                vector!("req-sha256-cert.tsq"),
                HashAlgorithm::Sha256,
                true,
                true,
                POLICY_DEFAULT,
            ),
            (
                vector!("req-sha256-policy.tsq"),
                HashAlgorithm::Sha256,
                true,
                false,
                POLICY_OTHER,
            ),
        ];
        let data = vector!("data.txt");
        for (der, hash, has_nonce, cert_req, policy) in cases {
            let v = parse_request(der, &rules()).unwrap();
            assert_eq!(v.hash, hash);
            assert_eq!(v.digest, hash.digest(data), "the digest of data.txt");
            assert_eq!(v.cert_req, cert_req);
            assert_eq!(v.policy.to_string(), policy);
            // The nonce, byte for byte, as x509-tsp reads it.
            let theirs = x509_tsp::TimeStampReq::from_der(der).unwrap();
            assert_eq!(v.nonce.is_some(), has_nonce);
            assert_eq!(v.nonce, theirs.nonce);
            // Golden round trip: our type re-encodes OpenSSL's bytes exactly.
            assert_eq!(TimeStampReq::from_der(der).unwrap().to_der().unwrap(), der);
            // And our encoder writes what OpenSSL wrote.
            let policy_oid: ObjectIdentifier = policy.parse().unwrap();
            let ours = encode_request(&RequestParams {
                hash,
                digest: &v.digest,
                policy: (policy != POLICY_DEFAULT).then_some(&policy_oid),
                nonce: v.nonce.as_ref(),
                cert_req,
            })
            .unwrap();
            assert_eq!(ours, der);
        }
    }

    #[test]
    fn refused_not_der_or_trailing_bytes_bad_data_format() {
        let der = vector!("req-sha256.tsq");
        assert_eq!(refusal(b""), FailureInfo::BadDataFormat);
        assert_eq!(refusal(b"hello"), FailureInfo::BadDataFormat);
        assert_eq!(refusal(&der[..der.len() - 1]), FailureInfo::BadDataFormat);
        assert_eq!(
            refusal(&[der, &[0][..]].concat()),
            FailureInfo::BadDataFormat
        );
        // BER long-form length for the outer SEQUENCE.
        let mut ber = vec![0x30, 0x81, der[1]];
        ber.extend_from_slice(&der[2..]);
        assert_eq!(refusal(&ber), FailureInfo::BadDataFormat);
        // certReq FALSE encoded explicitly (DER omits DEFAULT values).
        let mut req = good();
        req.cert_req = Some(false);
        assert_eq!(refusal_of(&req), FailureInfo::BadDataFormat);
        // A BOOLEAN TRUE that is not 0xFF.
        let mut der = good().to_der().unwrap();
        let at = der
            .windows(3)
            .position(|w| w == [0x01, 0x01, 0xff])
            .unwrap();
        der[at + 2] = 0x01;
        assert_eq!(refusal(&der), FailureInfo::BadDataFormat);
        // A TimeStampResp is not a TimeStampReq.
        assert_eq!(
            refusal(&crate::tsp::rejection_response(&Rejection::new(
                FailureInfo::BadAlg,
                "x"
            ))),
            FailureInfo::BadDataFormat
        );
    }

    #[test]
    fn refused_version_bad_request() {
        for v in [&[0x02][..], &[0x00], &[0xff], &[0x01, 0x00]] {
            let mut req = good();
            req.version = IntRef::new(v).unwrap();
            assert_eq!(
                refusal_of(&req),
                FailureInfo::BadRequest,
                "version {v:02x?}"
            );
        }
    }

    #[test]
    fn refused_hash_algorithm_bad_alg() {
        for oid in [SHA1, MD5, "1.2.3.4"] {
            let mut req = good();
            req.message_imprint.hash_algorithm.oid = oid.parse().unwrap();
            assert_eq!(refusal_of(&req), FailureInfo::BadAlg, "{oid}");
        }
        assert_eq!(refusal(vector!("req-sha1.tsq")), FailureInfo::BadAlg);
        // Known but not accepted by these rules.
        let only_384 = RequestRules {
            accepted_hashes: vec![HashAlgorithm::Sha384],
            ..rules()
        };
        let r = parse_request(&good().to_der().unwrap(), &only_384).unwrap_err();
        assert_eq!(r.fail, FailureInfo::BadAlg);
        assert!(r.text.contains("sha384"), "{}", r.text);
        // Parameters other than NULL.
        let octets = [0x04, 0x00];
        let utf8 = Utf8StringRef::new("x").unwrap().to_der().unwrap();
        for params in [&octets[..], &utf8] {
            let mut req = good();
            req.message_imprint.hash_algorithm.parameters = Some(AnyRef::from_der(params).unwrap());
            assert_eq!(refusal_of(&req), FailureInfo::BadAlg);
        }
    }

    #[test]
    fn absent_or_null_parameters_are_both_accepted() {
        let mut req = good();
        req.message_imprint.hash_algorithm.parameters = None;
        assert!(parse_request(&req.to_der().unwrap(), &rules()).is_ok());
        req.message_imprint.hash_algorithm.parameters = Some(AnyRef::NULL);
        assert!(parse_request(&req.to_der().unwrap(), &rules()).is_ok());
    }

    #[test]
    fn refused_imprint_length_bad_data_format() {
        for len in [0, 20, 31, 33, 48, 64] {
            let digest = vec![0xab; len];
            let mut req = good();
            req.message_imprint.hashed_message = OctetStringRef::new(&digest).unwrap();
            assert_eq!(refusal_of(&req), FailureInfo::BadDataFormat, "{len} bytes");
        }
        let digest = [0xab; 48];
        let mut req = good();
        req.message_imprint.hash_algorithm = HashAlgorithm::Sha384.identifier_absent_params();
        req.message_imprint.hashed_message = OctetStringRef::new(&digest).unwrap();
        assert!(parse_request(&req.to_der().unwrap(), &rules()).is_ok());
    }

    #[test]
    fn refused_policy_unaccepted_policy() {
        let mut req = good();
        req.req_policy = Some("1.3.6.1.4.1.99999.9".parse().unwrap());
        assert_eq!(refusal_of(&req), FailureInfo::UnacceptedPolicy);
        assert_eq!(
            refusal(vector!("req-sha256-otherpolicy.tsq")),
            FailureInfo::UnacceptedPolicy
        );
        // The default policy is accepted even when not listed.
        req.req_policy = Some(POLICY_DEFAULT.parse().unwrap());
        let v = parse_request(&req.to_der().unwrap(), &rules()).unwrap();
        assert_eq!(v.policy.to_string(), POLICY_DEFAULT);
        req.req_policy = Some(POLICY_OTHER.parse().unwrap());
        let v = parse_request(&req.to_der().unwrap(), &rules()).unwrap();
        assert_eq!(v.policy.to_string(), POLICY_OTHER);
    }

    #[test]
    fn refused_extensions_unaccepted_extension() {
        for critical in [false, true] {
            let mut req = good();
            req.extensions = Some(vec![Extension {
                extn_id: "1.3.6.1.4.1.99999.7".parse().unwrap(),
                critical,
                extn_value: OctetString::new(vec![0x05, 0x00]).unwrap(),
            }]);
            assert_eq!(refusal_of(&req), FailureInfo::UnacceptedExtension);
        }
    }

    #[test]
    fn nonce_is_kept_byte_for_byte() {
        for nonce in [
            &[0x00][..],
            &[0x7f],
            &[0x00, 0xff],
            &[0x80],
            &[0xff, 0x7f, 0x01],
        ] {
            let mut req = good();
            req.nonce = Some(IntRef::new(nonce).unwrap());
            let v = parse_request(&req.to_der().unwrap(), &rules()).unwrap();
            assert_eq!(v.nonce.unwrap().as_bytes(), nonce);
        }
        let mut req = good();
        req.nonce = None;
        req.cert_req = None;
        let v = parse_request(&req.to_der().unwrap(), &rules()).unwrap();
        assert_eq!(v.nonce, None);
        assert!(!v.cert_req);
    }

    #[test]
    fn encode_request_refuses_wrong_digest_length() {
        let r = encode_request(&RequestParams {
            hash: HashAlgorithm::Sha512,
            digest: &[0; 32],
            policy: None,
            nonce: None,
            cert_req: false,
        });
        assert!(matches!(
            r,
            Err(TspError::DigestLength {
                expected: 64,
                actual: 32,
                ..
            })
        ));
    }
}
