//! Software verification for the data center (no HSM, no sled, no HTTP): RFC 3161
//! time-stamp tokens with the strict checklist it runs (`TSA-PROFILE.md`, "Verifying"),
//! and, in [`chain`], the offline audit of a whole event chain, and in [`proof`], the
//! checks of one event's proof (a bundle or a bare tlog-proof).
//!
//! [`verify_response`] takes a `TimeStampResp`, [`verify_token`] a bare `TimeStampToken`
//! (a CMS ContentInfo) and [`verify_any`] either; all three check every [`Rule`] against
//! the [`TokenOptions`] and return the [`VerifiedToken`] or the [`TokenError`] of the first
//! rule that failed. Trust comes only from [`TokenOptions::roots`]: the certificates a
//! token carries help to find the signer and its path, and are never trust anchors.
//!
//! What is checked, rule by rule:
//! 1. DER and status: the input decodes as strict DER with nothing after it; the status
//!    is granted (grantedWithMods only with [`TokenOptions::allow_granted_with_mods`]),
//!    with a token exactly when granted. Strict DER holds for every part, used or not:
//!    what has a type is decoded and must re-encode to its own octets (certificates, CRLs,
//!    the signing certificate attributes, the TSTInfo, certificate extensions, RSA-PSS
//!    parameters: no DEFAULT written out, no SET OF out of order); what has none (the
//!    values of attributes, algorithm parameters, the sid, other revocation information)
//!    is read element by element for the rules of DER. A token may carry `crls` and
//!    `unsignedAttrs` (e.g. id-aa-signatureTimeStampToken); they are not used, but they
//!    must be DER too. The certificate SET alone may be in any order (OpenSSL writes it
//!    unsorted; `TSA-PROFILE.md`).
//! 2. CMS structure: signedData, version 3, eContentType id-ct-TSTInfo, exactly one
//!    SignerInfo (version matching its sid), a SHA-256/384/512 digestAlgorithm listed in
//!    digestAlgorithms, signed attributes present, in DER order, each type once,
//!    contentType = id-ct-TSTInfo and messageDigest = the digest of the eContent.
//! 3. The signer certificate is the one certificate, among the token's and
//!    [`TokenOptions::untrusted`], that the sid (issuerAndSerialNumber or
//!    subjectKeyIdentifier) names; none or several is a failure.
//! 4. signingCertificateV2 (signingCertificate, ESS v1 with SHA-1, only with
//!    [`TokenOptions::legacy_ess_v1`] and when v2 is absent): its first certificate hash is
//!    that of the signer certificate; its issuerSerial, if present, is the signer's; it is
//!    DER (an ESSCertIDv2 that writes out its DEFAULT hashAlgorithm, SHA-256, is refused).
//! 5. The signer certificate's extendedKeyUsage is critical and solely timeStamping, it is
//!    not a CA, and its keyUsage is at most digitalSignature and nonRepudiation
//!    ([`check_tsa_leaf`]); a path to a pinned root exists in which names chain, every
//!    signature verifies, every certificate is valid at genTime and/or now
//!    ([`ValidAt`]), issuers are CAs with keyCertSign and their pathLenConstraint holds,
//!    every certificate's signatureAlgorithm is its tbsCertificate's signature field
//!    (RFC 5280 §4.1.1.2, the pinned root's too), and no certificate has a critical
//!    extension that is not understood ([`verify_path`]).
//! 6. The signature over the DER of the signed attributes (tag 0x31) verifies: ECDSA
//!    P-256/P-384, RSA PKCS#1 v1.5 or PSS of at least 2048 bits, Ed25519, with
//!    SHA-256/384/512.
//! 7. TSTInfo version 1; the imprint, nonce and policy as the options ask.
//! 8. The `tsa` name, if present, is the signer's subject or one of its SAN entries.
//! 9. genTime well formed, serial positive and at most 160 bits, no critical extension.
//!
//! The free functions do no I/O and hold no state. [`TokenVerifier`] runs the same
//! checklist with a cache of verified certification paths, which never changes an answer
//! (its module documentation says why); that is what a data center checking many tokens
//! uses. It uses `tsp` for the RFC 3161 DER types and decoders, and `aws-lc-rs` and RustCrypto
//! for the signature math ([`Backend`]).
//!
//! Errors: every failure is a [`TokenError`], whose [`TokenError::rule`] says which rule
//! failed.

mod asn1;
mod cache;
pub mod chain;
mod error;
mod path;
pub mod proof;
mod signature;
mod token;
mod verifier;

use std::time::SystemTime;

use const_oid::ObjectIdentifier;
use der::{Decode, Reader, SliceReader, Tag, Tagged};
use x509_cert::Certificate;

pub use error::{DerProblem, Rule, SignatureProblem, TokenError};
pub use path::{check_tsa_leaf, verify_path, CheckTime, MAX_PATH_LEN};
pub use signature::Backend;
pub use verifier::{CacheStats, TokenVerifier, DEFAULT_CACHE_CAPACITY};

use crate::tsp::{decode_response_status, DecodedTstInfo, HashAlgorithm};

/// PKIStatus granted.
const STATUS_GRANTED: u8 = 0;
/// PKIStatus grantedWithMods.
const STATUS_GRANTED_WITH_MODS: u8 = 1;

/// When the certificate path must be valid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ValidAt {
    /// At the token's genTime (the time the TSA vouches for).
    #[default]
    GenTime,
    /// At [`TokenOptions::now`].
    Now,
    /// At both.
    Both,
}

/// What a token is checked against.
#[derive(Clone, Copy, Debug)]
pub struct TokenOptions<'a> {
    /// The pinned trust anchors; never taken from the token.
    pub roots: &'a [Certificate],
    /// Extra intermediates and signer certificates (as `openssl ts -verify -untrusted`),
    /// for tokens that do not carry them. Not trusted either.
    pub untrusted: &'a [Certificate],
    /// The data's hash algorithm and digest; `None`: the imprint is not checked.
    pub imprint: Option<(HashAlgorithm, &'a [u8])>,
    /// The nonce sent, as big-endian unsigned bytes; `None`: none was sent (a token with a
    /// nonce is then fine).
    pub nonce: Option<&'a [u8]>,
    /// The accepted policies; `None`: any.
    pub policies: Option<&'a [ObjectIdentifier]>,
    /// When the certificate path must be valid.
    pub valid_at: ValidAt,
    /// Accept a response whose status is grantedWithMods.
    pub allow_granted_with_mods: bool,
    /// Accept a signingCertificate attribute (ESSCertID v1, SHA-1) when
    /// signingCertificateV2 is absent.
    pub legacy_ess_v1: bool,
    /// The current time (injected, for tests).
    pub now: SystemTime,
}

impl<'a> TokenOptions<'a> {
    /// The strict defaults, trusting `roots`: no untrusted certificates, imprint, nonce and
    /// policy not checked, path valid at genTime, grantedWithMods and ESS v1 refused, now
    /// the system clock's.
    pub fn new(roots: &'a [Certificate]) -> Self {
        TokenOptions {
            roots,
            untrusted: &[],
            imprint: None,
            nonce: None,
            policies: None,
            valid_at: ValidAt::GenTime,
            allow_granted_with_mods: false,
            legacy_ess_v1: false,
            now: crate::clock::Clock::now(&crate::clock::SystemClock),
        }
    }
}

/// A token that passed every rule.
#[derive(Clone, Debug)]
pub struct VerifiedToken {
    /// The TSTInfo.
    pub tst_info: DecodedTstInfo,
    /// The signer (TSA) certificate.
    pub signer: Certificate,
    /// The certification path, the signer certificate first and the pinned root last (one
    /// certificate when the signer certificate is itself pinned).
    pub chain: Vec<Certificate>,
    /// The CMS signature's algorithm and key, for people (`ECDSA P-256 with SHA-256`).
    pub signature_algorithm: String,
    /// The rules checked, in the order they were; rules the options skip (imprint, nonce,
    /// policy when `None`, status for a bare token) are absent.
    pub passed: Vec<Rule>,
}

/// The outcome of [`verify_any_detailed`]: what [`verify_any`] returns, and the rules that
/// passed before the one that failed.
#[derive(Debug)]
pub struct Report {
    /// The rules that held, in the order they were checked (on success, every rule
    /// checked, as [`VerifiedToken::passed`]).
    pub passed: Vec<Rule>,
    /// The verified token, or the first failure.
    pub result: Result<VerifiedToken, TokenError>,
    /// Whether the input was a `TimeStampResp` (`false`: a bare token, which has no status;
    /// `None`: neither could be told).
    pub is_response: Option<bool>,
}

/// [`verify_any`], also saying which rules passed before a failure (what `auditstamp verify
/// token` prints, one line per rule).
pub fn verify_any_detailed(der: &[u8], opts: &TokenOptions<'_>) -> Report {
    let mut passed = Vec::new();
    let form = form_of(der);
    let is_response = form.as_ref().ok().copied();
    let result = match form {
        Ok(true) => verify_response_into(der, opts, token::Engine::default(), &mut passed),
        Ok(false) => token::verify(der, opts, &mut passed, token::Engine::default()),
        Err(e) => Err(e),
    };
    Report {
        passed,
        result,
        is_response,
    }
}

/// Verifies a DER `TimeStampResp`: its status (rule 1), then its token (rules 2 to 9).
pub fn verify_response(
    resp_der: &[u8],
    opts: &TokenOptions<'_>,
) -> Result<VerifiedToken, TokenError> {
    verify_response_with(resp_der, opts, token::Engine::default())
}

fn verify_response_with(
    resp_der: &[u8],
    opts: &TokenOptions<'_>,
    engine: token::Engine<'_>,
) -> Result<VerifiedToken, TokenError> {
    verify_response_into(resp_der, opts, engine, &mut Vec::new())
}

fn verify_response_into(
    resp_der: &[u8],
    opts: &TokenOptions<'_>,
    engine: token::Engine<'_>,
    passed: &mut Vec<Rule>,
) -> Result<VerifiedToken, TokenError> {
    let status = decode_response_status(resp_der).map_err(TokenError::Response)?;
    passed.push(Rule::Der);
    let granted = match status.status {
        STATUS_GRANTED => true,
        STATUS_GRANTED_WITH_MODS if opts.allow_granted_with_mods => true,
        STATUS_GRANTED_WITH_MODS => return Err(TokenError::GrantedWithMods),
        _ => false,
    };
    let token = match (granted, status.token) {
        (true, Some(token)) => token,
        (true, None) => return Err(TokenError::TokenMissing),
        (false, Some(_)) => {
            return Err(TokenError::UnexpectedToken {
                status: status.status,
            })
        }
        (false, None) => {
            return Err(TokenError::NotGranted {
                status: status.status,
                fail_info: status.fail_info,
                text: status.text,
            })
        }
    };
    passed.push(Rule::Status);
    token::verify(&token, opts, passed, engine)
}

/// Verifies a DER `TimeStampToken` (a CMS ContentInfo): rules 2 to 9, and rule 1's DER.
pub fn verify_token(
    token_der: &[u8],
    opts: &TokenOptions<'_>,
) -> Result<VerifiedToken, TokenError> {
    token::verify(token_der, opts, &mut Vec::new(), token::Engine::default())
}

/// Verifies either form: a `TimeStampResp` (a SEQUENCE starting with the PKIStatusInfo
/// SEQUENCE) or a `TimeStampToken` (a SEQUENCE starting with the contentType OID).
pub fn verify_any(der: &[u8], opts: &TokenOptions<'_>) -> Result<VerifiedToken, TokenError> {
    verify_any_with(der, opts, token::Engine::default())
}

fn verify_any_with(
    der: &[u8],
    opts: &TokenOptions<'_>,
    engine: token::Engine<'_>,
) -> Result<VerifiedToken, TokenError> {
    if form_of(der)? {
        verify_response_with(der, opts, engine)
    } else {
        token::verify(der, opts, &mut Vec::new(), engine)
    }
}

/// Whether `der` is a `TimeStampResp` (`true`) or a `TimeStampToken` (`false`).
fn form_of(der: &[u8]) -> Result<bool, TokenError> {
    let outer = der::asn1::AnyRef::from_der(der)
        .map_err(TokenError::der("TimeStampResp or TimeStampToken"))?;
    if outer.tag() != Tag::Sequence {
        return Err(TokenError::UnknownForm);
    }
    let first = SliceReader::new(outer.value())
        .and_then(|r| r.peek_tag())
        .map_err(|_| TokenError::UnknownForm)?;
    match first {
        Tag::Sequence => Ok(true),
        Tag::ObjectIdentifier => Ok(false),
        _ => Err(TokenError::UnknownForm),
    }
}
