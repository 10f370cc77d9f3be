//! The rules of the checklist, and the one error type of this module, which names the rule
//! that failed and why.

use core::fmt;

use const_oid::ObjectIdentifier;

use crate::tsp::{FailureInfo, HashAlgorithm, TspError};

/// One rule of the verification checklist (`TSA-PROFILE.md`, "Verifying"), in the order
/// they are checked. The number in each description is the checklist item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// 1. The input is strict DER of the expected type, with nothing after it, in every
    ///    part (the crls and unsigned attributes too).
    Der,
    /// 1. The response's status is granted (grantedWithMods only by opt-in), and it carries
    ///    a token exactly when it is granted.
    Status,
    /// 2. The ContentInfo is signedData with eContentType id-ct-TSTInfo, exactly one
    ///    SignerInfo, an allowed digest algorithm, and signed attributes whose contentType
    ///    is id-ct-TSTInfo.
    CmsStructure,
    /// 2. The messageDigest signed attribute equals the digest of the eContent.
    MessageDigest,
    /// 7. The TSTInfo decodes and its version is 1.
    TstInfo,
    /// 9. genTime is a well-formed GeneralizedTime.
    GenTime,
    /// 3. The signer certificate is the one, among the token's certificates and the
    ///    untrusted ones, that the SignerInfo's sid names.
    SignerBySid,
    /// 4. signingCertificateV2 (or, in legacy mode, signingCertificate) names the signer
    ///    certificate by its hash, and by its issuer and serial if given.
    SigningCertificate,
    /// 5. The signer certificate may sign time stamps: extendedKeyUsage critical and solely
    ///    id-kp-timeStamping, not a CA, keyUsage (if present) only digitalSignature and
    ///    nonRepudiation.
    Eku,
    /// 5. A path from the signer certificate to a pinned root, valid at genTime and/or now.
    Chain,
    /// 6. The CMS signature over the signed attributes verifies, with an allowed algorithm
    ///    and key size.
    Signature,
    /// 7. The message imprint is the data's.
    Imprint,
    /// 7. The nonce is the one sent.
    Nonce,
    /// 7. The policy is an accepted one.
    Policy,
    /// 8. The `tsa` name, if present, is the signer's subject or one of its SAN entries.
    TsaName,
    /// 9. The serial number is positive and at most 160 bits.
    Serial,
    /// 9. The TSTInfo has no critical extension.
    Extensions,
}

impl Rule {
    /// Every rule, in the order they are checked.
    pub const ALL: [Rule; 17] = [
        Rule::Der,
        Rule::Status,
        Rule::CmsStructure,
        Rule::MessageDigest,
        Rule::TstInfo,
        Rule::GenTime,
        Rule::SignerBySid,
        Rule::SigningCertificate,
        Rule::Eku,
        Rule::Chain,
        Rule::Signature,
        Rule::Imprint,
        Rule::Nonce,
        Rule::Policy,
        Rule::TsaName,
        Rule::Serial,
        Rule::Extensions,
    ];

    /// A short, stable name: `der`, `status`, `cms-structure`, ...
    pub fn name(self) -> &'static str {
        match self {
            Rule::Der => "der",
            Rule::Status => "status",
            Rule::CmsStructure => "cms-structure",
            Rule::MessageDigest => "message-digest",
            Rule::TstInfo => "tst-info",
            Rule::GenTime => "gen-time",
            Rule::SignerBySid => "signer-by-sid",
            Rule::SigningCertificate => "signing-certificate",
            Rule::Eku => "eku",
            Rule::Chain => "chain",
            Rule::Signature => "signature",
            Rule::Imprint => "imprint",
            Rule::Nonce => "nonce",
            Rule::Policy => "policy",
            Rule::TsaName => "tsa-name",
            Rule::Serial => "serial",
            Rule::Extensions => "extensions",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a signature, of the token or of a certificate, was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureProblem {
    /// The signature does not verify with the key.
    Invalid,
    /// A signature algorithm that is not allowed (allowed: ECDSA with SHA-256/384/512,
    /// RSA PKCS#1 v1.5 and RSA-PSS with SHA-256/384/512, Ed25519).
    UnsupportedAlgorithm(ObjectIdentifier),
    /// The algorithm's parameters are not the allowed ones.
    BadParameters(&'static str),
    /// A public key that is not ECDSA P-256/P-384, RSA or Ed25519, or is malformed.
    UnsupportedKey(String),
    /// An RSA key of fewer than 2048 bits.
    RsaKeyTooSmall(usize),
    /// The key does not belong to the signature algorithm (an EC key for an RSA signature).
    KeyAlgorithmMismatch,
    /// The signature algorithm hashes with another digest than the SignerInfo's
    /// digestAlgorithm.
    DigestMismatch,
}

impl fmt::Display for SignatureProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid => f.write_str("the signature does not verify"),
            Self::UnsupportedAlgorithm(oid) => {
                write!(f, "signature algorithm {oid} is not allowed")
            }
            Self::BadParameters(what) => write!(f, "bad algorithm parameters: {what}"),
            Self::UnsupportedKey(what) => write!(f, "unusable public key: {what}"),
            Self::RsaKeyTooSmall(bits) => {
                write!(f, "an RSA key of {bits} bits (at least 2048 are required)")
            }
            Self::KeyAlgorithmMismatch => {
                f.write_str("the public key is not of the signature algorithm's type")
            }
            Self::DigestMismatch => f.write_str(
                "the signature algorithm's digest is not the SignerInfo's digestAlgorithm",
            ),
        }
    }
}

/// Why a part of a token is not DER (X.690 §10 and §11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DerProblem {
    /// The DER library refused it: a tag it does not know (a constructed string, a tag
    /// number above 30, end-of-contents), a UTCTime not in the DER form.
    Decode(der::Error),
    /// It decodes, but breaks the rule of DER named here.
    Rule(&'static str),
}

impl fmt::Display for DerProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(e) => e.fmt(f),
            Self::Rule(rule) => f.write_str(rule),
        }
    }
}

impl From<der::Error> for DerProblem {
    fn from(e: der::Error) -> Self {
        DerProblem::Decode(e)
    }
}

/// Why a time-stamp token was refused. Every variant belongs to one checklist [`Rule`]
/// ([`TokenError::rule`]), named first in its message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The input, or a structure inside it, is not DER of the expected type (or has bytes
    /// after it).
    #[error("der: not a DER {what}: {source}")]
    Der {
        /// What was being decoded.
        what: &'static str,
        /// The DER library's reason.
        #[source]
        source: der::Error,
    },
    /// The TimeStampResp is not DER (as `tsp` decodes responses).
    #[error("der: not a DER TimeStampResp: {0}")]
    Response(#[source] TspError),
    /// Decodable, but not in the one DER encoding (an out-of-order SET, a certificate
    /// that does not re-encode to its bytes).
    #[error("der: {0}")]
    NotStrictDer(&'static str),
    /// A part of the token that no other check decodes (the crls, the unsigned attributes,
    /// the values of attributes, the parameters of algorithms, ...) is not DER.
    #[error("der: not DER in the {what}: {problem}")]
    NotDer {
        /// Where.
        what: &'static str,
        /// Why.
        problem: DerProblem,
    },
    /// [`verify_any`](super::verify_any) was given neither a TimeStampResp nor a
    /// TimeStampToken.
    #[error("der: neither a TimeStampResp nor a TimeStampToken")]
    UnknownForm,

    /// The response's status is not granted.
    #[error("status: the response is not granted (PKIStatus {status}, failInfo {fail_info:?}, {text:?})")]
    NotGranted {
        /// PKIStatus (2 rejection, 3 waiting, ...).
        status: u8,
        /// The failInfo, if it names one.
        fail_info: Option<FailureInfo>,
        /// The statusString texts.
        text: Vec<String>,
    },
    /// grantedWithMods, and the options do not accept it.
    #[error("status: grantedWithMods is accepted only with allow_granted_with_mods")]
    GrantedWithMods,
    /// A granted response without a token.
    #[error("status: a granted response without a time-stamp token")]
    TokenMissing,
    /// A response that is not granted but carries a token.
    #[error("status: a response with PKIStatus {status} carries a time-stamp token")]
    UnexpectedToken {
        /// The PKIStatus.
        status: u8,
    },

    /// The CMS structure is not that of a time-stamp token.
    #[error("cms-structure: {0}")]
    Cms(&'static str),
    /// Not exactly one SignerInfo.
    #[error("cms-structure: {0} SignerInfos (a token has exactly one)")]
    SignerInfoCount(usize),
    /// The SignerInfo's digestAlgorithm is not SHA-256, SHA-384 or SHA-512.
    #[error("cms-structure: digest algorithm {0} is not SHA-256, SHA-384 or SHA-512")]
    DigestAlgorithm(ObjectIdentifier),

    /// The messageDigest attribute is missing, malformed or not the eContent's digest.
    #[error("message-digest: {0}")]
    MessageDigest(&'static str),

    /// No certificate matches the SignerInfo's sid.
    #[error("signer-by-sid: no certificate in the token or the untrusted set matches the SignerInfo's sid")]
    SignerNotFound,
    /// Several different certificates match the SignerInfo's sid.
    #[error("signer-by-sid: {0} different certificates match the SignerInfo's sid")]
    SignerAmbiguous(usize),

    /// The signing certificate attribute is missing, of the wrong version, or does not
    /// name the signer certificate.
    #[error("signing-certificate: {0}")]
    SigningCertificate(&'static str),

    /// The signer certificate has no extendedKeyUsage.
    #[error("eku: the TSA certificate has no extendedKeyUsage")]
    EkuMissing,
    /// The signer certificate's extendedKeyUsage is not critical.
    #[error("eku: the TSA certificate's extendedKeyUsage is not critical")]
    EkuNotCritical,
    /// The signer certificate's extendedKeyUsage lists more or other than timeStamping.
    #[error(
        "eku: the TSA certificate's extendedKeyUsage is not solely id-kp-timeStamping: {found:?}"
    )]
    EkuNotSoleTimeStamping {
        /// The key purposes listed.
        found: Vec<ObjectIdentifier>,
    },
    /// The signer certificate is a CA.
    #[error("eku: the TSA certificate is a CA (basicConstraints cA true)")]
    LeafIsCa,
    /// The signer certificate's keyUsage allows more than digitalSignature and
    /// nonRepudiation, or nothing.
    #[error(
        "eku: the TSA certificate's keyUsage is not digitalSignature and/or nonRepudiation only"
    )]
    LeafKeyUsage,

    /// No issuer of a certificate of the path was found.
    #[error("chain: no issuer of {subject:?} among the pinned roots, the token's certificates and the untrusted ones")]
    NoIssuer {
        /// The subject of the certificate whose issuer is missing.
        subject: String,
    },
    /// The path leads to a self-signed certificate that is not a pinned root (a token's
    /// own root is never trusted).
    #[error("chain: {subject:?} is self-signed and not one of the pinned roots")]
    UntrustedRoot {
        /// The self-signed certificate's subject.
        subject: String,
    },
    /// The signature on a certificate does not verify with its issuer's key.
    #[error(
        "chain: the signature on {subject:?} does not verify with its issuer's key: {problem}"
    )]
    CertificateSignature {
        /// The certificate's subject.
        subject: String,
        /// Why.
        problem: SignatureProblem,
    },
    /// A certificate of the path is not valid at genTime or now.
    #[error("chain: {subject:?} is not valid at {at} (valid {not_before} to {not_after})")]
    NotValidAt {
        /// The certificate's subject.
        subject: String,
        /// `genTime` or `now`.
        at: &'static str,
        /// Its notBefore.
        not_before: String,
        /// Its notAfter.
        not_after: String,
    },
    /// An issuing certificate is not a CA.
    #[error("chain: the issuer {subject:?} is not a CA (basicConstraints cA)")]
    IssuerNotCa {
        /// The issuer's subject.
        subject: String,
    },
    /// An issuing certificate has a keyUsage without keyCertSign.
    #[error("chain: the issuer {subject:?} has a keyUsage without keyCertSign")]
    IssuerKeyUsage {
        /// The issuer's subject.
        subject: String,
    },
    /// More CAs below an issuer than its pathLenConstraint allows.
    #[error("chain: the path exceeds the pathLenConstraint of {subject:?}")]
    PathLength {
        /// The constraining CA's subject.
        subject: String,
    },
    /// A certificate has a critical extension this verifier does not process.
    #[error("chain: {subject:?} has a critical extension {oid} that is not understood")]
    UnknownCriticalExtension {
        /// The certificate's subject.
        subject: String,
        /// The extension.
        oid: ObjectIdentifier,
    },
    /// A certificate's signatureAlgorithm is not the signature field of its
    /// tbsCertificate (RFC 5280 §4.1.1.2: they MUST be the same).
    #[error("chain: the signatureAlgorithm of {subject:?} is not the signature field of its tbsCertificate (RFC 5280 4.1.1.2)")]
    SignatureAlgorithmMismatch {
        /// The certificate's subject.
        subject: String,
    },
    /// A certificate's extension decodes, but is not DER (an explicitly encoded DEFAULT,
    /// such as basicConstraints' cA FALSE, or bits or elements out of their DER form).
    #[error("chain: the extension {oid} of {subject:?} is not DER (it does not re-encode to its own bytes)")]
    ExtensionNotDer {
        /// The certificate's subject.
        subject: String,
        /// The extension.
        oid: ObjectIdentifier,
    },
    /// A certificate has an extension that does not decode, or one twice.
    #[error("chain: {subject:?} has a malformed or repeated extension")]
    BadExtension {
        /// The certificate's subject.
        subject: String,
    },
    /// No path within the length or work limits.
    #[error("chain: no path of at most {0} certificates was found")]
    PathTooLong(usize),

    /// The CMS signature does not verify or is not allowed.
    #[error("signature: {0}")]
    Signature(SignatureProblem),

    /// The TSTInfo does not decode, or its version is not 1.
    #[error("tst-info: {0}")]
    TstInfo(&'static str),
    /// The TSTInfo decodes, but is not DER.
    #[error("tst-info: the TSTInfo is not DER: {0}")]
    TstInfoNotDer(DerProblem),
    /// The TSTInfo is not strict DER (as `tsp` decodes it).
    #[error("tst-info: {0}")]
    TstInfoDecode(#[source] TspError),
    /// The imprint's algorithm is not the data's.
    #[error("imprint: the token's imprint algorithm is {found}, not {expected}")]
    ImprintAlgorithm {
        /// The data's hash algorithm.
        expected: HashAlgorithm,
        /// The token's.
        found: ObjectIdentifier,
    },
    /// The imprint's digest is not the data's.
    #[error("imprint: the token's imprint is not the data's digest")]
    ImprintDigest,
    /// The nonce is not the one sent.
    #[error("nonce: the token's nonce is not the one sent")]
    NonceMismatch,
    /// A nonce was sent and the token has none.
    #[error("nonce: a nonce was sent and the token has none")]
    NonceMissing,
    /// The policy is not accepted.
    #[error("policy: policy {0} is not accepted")]
    PolicyNotAccepted(ObjectIdentifier),
    /// The `tsa` name is neither the signer's subject nor one of its SAN entries.
    #[error(
        "tsa-name: the tsa name is neither the signer's subject nor one of its subjectAltNames"
    )]
    TsaNameMismatch,
    /// genTime is not a well-formed GeneralizedTime.
    #[error("gen-time: {0}")]
    GenTime(&'static str),
    /// The serial number is not positive or longer than 160 bits.
    #[error("serial: {0}")]
    Serial(&'static str),
    /// The TSTInfo has a critical extension.
    #[error("extensions: the TSTInfo has a critical extension {0}")]
    CriticalExtension(ObjectIdentifier),
}

impl TokenError {
    /// The rule that failed.
    pub fn rule(&self) -> Rule {
        match self {
            Self::Der { .. }
            | Self::Response(_)
            | Self::NotStrictDer(_)
            | Self::NotDer { .. }
            | Self::UnknownForm => Rule::Der,
            Self::NotGranted { .. }
            | Self::GrantedWithMods
            | Self::TokenMissing
            | Self::UnexpectedToken { .. } => Rule::Status,
            Self::Cms(_) | Self::SignerInfoCount(_) | Self::DigestAlgorithm(_) => {
                Rule::CmsStructure
            }
            Self::MessageDigest(_) => Rule::MessageDigest,
            Self::SignerNotFound | Self::SignerAmbiguous(_) => Rule::SignerBySid,
            Self::SigningCertificate(_) => Rule::SigningCertificate,
            Self::EkuMissing
            | Self::EkuNotCritical
            | Self::EkuNotSoleTimeStamping { .. }
            | Self::LeafIsCa
            | Self::LeafKeyUsage => Rule::Eku,
            Self::NoIssuer { .. }
            | Self::UntrustedRoot { .. }
            | Self::CertificateSignature { .. }
            | Self::NotValidAt { .. }
            | Self::IssuerNotCa { .. }
            | Self::IssuerKeyUsage { .. }
            | Self::PathLength { .. }
            | Self::UnknownCriticalExtension { .. }
            | Self::BadExtension { .. }
            | Self::SignatureAlgorithmMismatch { .. }
            | Self::ExtensionNotDer { .. }
            | Self::PathTooLong(_) => Rule::Chain,
            Self::Signature(_) => Rule::Signature,
            Self::TstInfo(_) | Self::TstInfoNotDer(_) | Self::TstInfoDecode(_) => Rule::TstInfo,
            Self::ImprintAlgorithm { .. } | Self::ImprintDigest => Rule::Imprint,
            Self::NonceMismatch | Self::NonceMissing => Rule::Nonce,
            Self::PolicyNotAccepted(_) => Rule::Policy,
            Self::TsaNameMismatch => Rule::TsaName,
            Self::GenTime(_) => Rule::GenTime,
            Self::Serial(_) => Rule::Serial,
            Self::CriticalExtension(_) => Rule::Extensions,
        }
    }

    /// A [`TokenError::Der`] for `what`.
    pub(super) fn der(what: &'static str) -> impl FnOnce(der::Error) -> TokenError {
        move |source| TokenError::Der { what, source }
    }

    /// A [`TokenError::NotDer`] for `what`.
    pub(super) fn not_der(what: &'static str) -> impl FnOnce(DerProblem) -> TokenError {
        move |problem| TokenError::NotDer { what, problem }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_messages_start_with_them() {
        let mut names: Vec<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Rule::ALL.len());
        let samples = [
            TokenError::UnknownForm,
            TokenError::TokenMissing,
            TokenError::SignerInfoCount(2),
            TokenError::MessageDigest("x"),
            TokenError::SignerNotFound,
            TokenError::SigningCertificate("x"),
            TokenError::EkuNotCritical,
            TokenError::PathTooLong(8),
            TokenError::Signature(SignatureProblem::Invalid),
            TokenError::TstInfo("x"),
            TokenError::ImprintDigest,
            TokenError::NonceMissing,
            TokenError::TsaNameMismatch,
            TokenError::GenTime("x"),
            TokenError::Serial("x"),
        ];
        for e in samples {
            let message = e.to_string();
            assert!(
                message.starts_with(&format!("{}: ", e.rule().name())),
                "{message}"
            );
        }
    }
}
