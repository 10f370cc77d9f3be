//! RFC 3161 time-stamp protocol messages, in DER.
//!
//! This module reads time-stamp requests, writes TSTInfo and time-stamp responses (granted
//! and rejected), and decodes them back for tests and verifiers. It does no I/O and signs
//! nothing: a token is built in three steps so that the HSM signature happens in between,
//! outside this module:
//!
//! 1. [`encode_tst_info`] encodes the TSTInfo of one token;
//! 2. [`TokenTemplate::signed_attributes`] gives the DER of the signed attributes, which is
//!    exactly what the signer signs;
//! 3. [`TokenTemplate::granted_response`] assembles the `TimeStampResp` around the signature.
//!
//! What is accepted and what is issued follows `TSA-PROFILE.md`. Every message is strict DER,
//! including the order of every `SET OF`. Each DER type is defined in the private `asn1`
//! module, RFC ASN.1 first, and is its own encoder.
//!
//! Errors: a refused request is a [`Rejection`] (a failInfo and a text for the client, sent
//! with [`rejection_response`]); anything else that goes wrong here (an encoding failure, a
//! malformed structure given to a decoder, a value out of range) is a [`TspError`].

// The DER types, and the self-signed test in `token`, are shared with `verify`, which
// reads what this module writes.
pub(crate) mod asn1;
mod hash;
mod request;
mod status;
mod time;
pub(crate) mod token;
mod tst_info;

#[cfg(test)]
mod openssl_tests;

pub use hash::HashAlgorithm;
pub use request::{encode_request, parse_request, RequestParams, RequestRules, ValidRequest};
pub use status::{
    decode_response_status, granted_token, rejection_response, FailureInfo, Rejection,
    ResponseStatus,
};
pub use time::{Accuracy, GenTime};
pub use token::TokenTemplate;
pub use tst_info::{
    decode_tst_info, decode_tst_info_from_token, encode_tst_info, DecodedTstInfo, TstParams,
};

/// Object identifiers of the time-stamp protocol and of the CMS structures around it.
pub mod oid {
    use der::asn1::ObjectIdentifier;

    /// id-ct-TSTInfo (RFC 3161): the eContentType of a time-stamp token.
    pub const ID_CT_TST_INFO: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
    /// id-signedData (RFC 5652): the contentType of a time-stamp token.
    pub const ID_SIGNED_DATA: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
    /// id-contentType (RFC 5652): the signed attribute naming the signed content's type.
    pub const ID_CONTENT_TYPE: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
    /// id-messageDigest (RFC 5652): the signed attribute holding the content's digest.
    pub const ID_MESSAGE_DIGEST: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
    /// id-aa-signingCertificateV2 (RFC 5035): the signed attribute binding the signer
    /// certificate.
    pub const ID_AA_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
    /// id-sha256 (RFC 5754).
    pub const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
    /// id-sha384 (RFC 5754).
    pub const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
    /// id-sha512 (RFC 5754).
    pub const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
}

/// Why an encoding or decoding in this module failed. Refused requests are not errors of
/// this kind: they are [`Rejection`]s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TspError {
    /// The DER library refused to encode or decode a value.
    #[error("DER: {0}")]
    Der(#[from] der::Error),
    /// An accuracy that is all zero, or with millis or micros outside 1..=999.
    #[error("invalid accuracy: {0}")]
    InvalidAccuracy(&'static str),
    /// A serial number of zero (serial numbers are positive).
    #[error("the serial number must be positive")]
    InvalidSerial,
    /// A digest whose length does not match its hash algorithm.
    #[error("a {hash} digest is {expected} bytes, not {actual}")]
    DigestLength {
        /// The hash algorithm.
        hash: HashAlgorithm,
        /// Its output length.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// A time that a GeneralizedTime cannot hold (before 1970 or after 9999).
    #[error("time outside the range 1970..=9999")]
    TimeOutOfRange,
    /// A hash algorithm name that is not one of `sha256`, `sha384`, `sha512`.
    #[error("unknown hash algorithm {0:?} (known: sha256, sha384, sha512)")]
    UnknownHashAlgorithm(String),
    /// [`TokenTemplate::granted_response`] was given signed attributes that are not those
    /// [`TokenTemplate::signed_attributes`] returns for the same TSTInfo.
    #[error("the signed attributes do not belong to this TSTInfo and signing identity")]
    SignedAttributesMismatch,
    /// A structure that is valid DER but not a valid time-stamp message (wrong content
    /// type, missing content, an explicitly encoded DEFAULT value, ...).
    #[error("malformed time-stamp message: {0}")]
    Malformed(&'static str),
}
