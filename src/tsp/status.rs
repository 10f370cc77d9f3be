//! PKIStatusInfo: rejections, and the status of any response read back.

use core::fmt;

use der::asn1::{BitStringRef, Utf8StringRef};
use der::{Decode, Encode, Tag, Tagged};

use super::asn1::{AnyTimeStampResp, PkiStatusInfo, TimeStampResp};
use super::TspError;

/// PKIStatus `granted` (RFC 3161 §2.4.2).
pub(crate) const STATUS_GRANTED: u8 = 0;
/// PKIStatus `rejection` (RFC 3161 §2.4.2).
pub(crate) const STATUS_REJECTION: u8 = 2;

/// PKIFailureInfo bits (RFC 3161 §2.4.2): why a request was refused. The discriminant is
/// the bit number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureInfo {
    /// Unrecognized or unsupported algorithm identifier.
    BadAlg = 0,
    /// Transaction not permitted or supported.
    BadRequest = 2,
    /// The data submitted has the wrong format.
    BadDataFormat = 5,
    /// The TSA's time source is not available.
    TimeNotAvailable = 14,
    /// The requested TSA policy is not supported by the TSA.
    UnacceptedPolicy = 15,
    /// The requested extension is not supported by the TSA.
    UnacceptedExtension = 16,
    /// The additional information requested could not be understood or is not available.
    AddInfoNotAvailable = 17,
    /// The request cannot be handled due to system failure.
    SystemFailure = 25,
}

impl FailureInfo {
    /// Every failure this type knows.
    pub const ALL: [FailureInfo; 8] = [
        Self::BadAlg,
        Self::BadRequest,
        Self::BadDataFormat,
        Self::TimeNotAvailable,
        Self::UnacceptedPolicy,
        Self::UnacceptedExtension,
        Self::AddInfoNotAvailable,
        Self::SystemFailure,
    ];

    /// The RFC's name: `badAlg`, `badRequest`, ...
    pub fn name(self) -> &'static str {
        match self {
            Self::BadAlg => "badAlg",
            Self::BadRequest => "badRequest",
            Self::BadDataFormat => "badDataFormat",
            Self::TimeNotAvailable => "timeNotAvailable",
            Self::UnacceptedPolicy => "unacceptedPolicy",
            Self::UnacceptedExtension => "unacceptedExtension",
            Self::AddInfoNotAvailable => "addInfoNotAvailable",
            Self::SystemFailure => "systemFailure",
        }
    }

    /// The bit number in the PKIFailureInfo BIT STRING.
    pub fn bit(self) -> u32 {
        self as u32
    }

    /// The failure with bit number `bit`, if it is one RFC 3161 names.
    pub fn from_bit(bit: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.bit() == bit)
    }

    /// The failInfo BIT STRING contents with only this bit set, in DER's named-bit form
    /// (trailing zero bits removed): the unused-bits count, the bytes and their number.
    fn named_bit(self) -> (u8, [u8; 4], usize) {
        let bit = self as usize;
        let len = bit / 8 + 1;
        let mut bytes = [0u8; 4];
        bytes[len - 1] = 0x80 >> (bit % 8);
        // bit % 8 < 8, so the conversion cannot fail.
        let unused = u8::try_from(7 - bit % 8).unwrap_or(0);
        (unused, bytes, len)
    }
}

impl fmt::Display for FailureInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A request refused: the failInfo, and a short human text put in statusString.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Why, for programs.
    pub fail: FailureInfo,
    /// Why, for people (sent to the client as the statusString).
    pub text: String,
}

impl Rejection {
    /// A rejection for `fail` with `text`.
    pub fn new(fail: FailureInfo, text: impl Into<String>) -> Self {
        Rejection {
            fail,
            text: text.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.fail.name(), self.text)
    }
}

impl std::error::Error for Rejection {}

/// The reply used when a rejection cannot be encoded otherwise: rejection(2), no text,
/// failInfo systemFailure. `fallback_is_the_typed_encoding` checks these bytes against the
/// encoder.
const MINIMAL_SYSTEM_FAILURE: [u8; 14] = [
    0x30, 0x0c, 0x30, 0x0a, 0x02, 0x01, 0x02, 0x03, 0x05, 0x06, 0x00, 0x00, 0x00, 0x40,
];

/// A rejection TimeStampResp: status rejection(2), the text as statusString, and failInfo
/// a DER BIT STRING with exactly the one bit set (named-bit form: trailing zero bits
/// removed, unused-bits count to match; badAlg is `03 02 07 80`).
///
/// Infallible: should the encoding fail (say, for a text too long for DER), the reply is a
/// fixed minimal rejection with failInfo systemFailure.
pub fn rejection_response(r: &Rejection) -> Vec<u8> {
    encode_rejection(r.fail, Some(&r.text)).unwrap_or_else(|_| MINIMAL_SYSTEM_FAILURE.to_vec())
}

fn encode_rejection(fail: FailureInfo, text: Option<&str>) -> Result<Vec<u8>, TspError> {
    let (unused, bytes, len) = fail.named_bit();
    let status_string = match text {
        Some(t) => Some(vec![Utf8StringRef::new(t)?]),
        None => None,
    };
    let resp = TimeStampResp {
        status: PkiStatusInfo {
            status: STATUS_REJECTION,
            status_string,
            fail_info: Some(BitStringRef::new(unused, &bytes[..len])?),
        },
        time_stamp_token: None,
    };
    Ok(resp.to_der()?)
}

/// The status of a TimeStampResp, decoded (for tests and verifiers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseStatus {
    /// PKIStatus: 0 granted, 1 grantedWithMods, 2 rejection, 3 waiting,
    /// 4 revocationWarning, 5 revocationNotification.
    pub status: u8,
    /// The lowest failInfo bit set that RFC 3161 names, if any.
    pub fail_info: Option<FailureInfo>,
    /// Every failInfo bit set, named or not, in increasing order.
    pub fail_bits: Vec<u32>,
    /// The statusString texts.
    pub text: Vec<String>,
    /// The DER of the time-stamp token (a ContentInfo), if present.
    pub token: Option<Vec<u8>>,
}

/// Decodes the status of any TimeStampResp. Refuses what is not DER (including trailing
/// bytes, a failInfo whose unused or trailing bits are not DER's, an explicitly empty
/// statusString) and a token that is not a SEQUENCE. The token itself is not checked here:
/// see [`decode_tst_info_from_token`](super::decode_tst_info_from_token).
pub fn decode_response_status(der: &[u8]) -> Result<ResponseStatus, TspError> {
    let resp = AnyTimeStampResp::from_der(der)?;
    let status = resp.status;
    let text = match status.status_string {
        None => Vec::new(),
        Some(texts) if texts.is_empty() => {
            return Err(TspError::Malformed("empty statusString"));
        }
        Some(texts) => texts.iter().map(|t| t.as_str().to_owned()).collect(),
    };
    let fail_bits = match status.fail_info {
        None => Vec::new(),
        Some(bits) => named_bits(&bits)?,
    };
    let fail_info = fail_bits.iter().find_map(|b| FailureInfo::from_bit(*b));
    let token = match resp.time_stamp_token {
        None => None,
        Some(any) if any.tag() == Tag::Sequence => Some(any.to_der()?),
        Some(_) => return Err(TspError::Malformed("the timeStampToken is not a SEQUENCE")),
    };
    Ok(ResponseStatus {
        status: status.status,
        fail_info,
        fail_bits,
        text,
        token,
    })
}

/// The timeStampToken of a granted TimeStampResp, borrowed from `der`: for the issuer,
/// which records the token it just encoded without decoding all of it again. Refuses
/// anything but one TimeStampResp whose status is granted, with a token.
pub fn granted_token(der: &[u8]) -> Result<&[u8], TspError> {
    use der::Reader;
    let mut reader = der::SliceReader::new(der)?;
    let token = reader.sequence(|body| {
        let status = PkiStatusInfo::decode(body)?;
        if status.status != STATUS_GRANTED {
            return Ok(None);
        }
        body.tlv_bytes().map(Some)
    })?;
    let token = reader.finish(token)?;
    token.ok_or(TspError::Malformed("the response does not grant a token"))
}

/// The bit numbers set in a named-bit BIT STRING; refuses non-zero unused bits and
/// trailing zero bits (X.690 §11.2).
fn named_bits(bits: &BitStringRef<'_>) -> Result<Vec<u32>, TspError> {
    let raw = bits.raw_bytes();
    let unused = bits.unused_bits();
    if let Some(last) = raw.last() {
        let unused_mask = (1u16 << unused) - 1;
        if u16::from(*last) & unused_mask != 0 {
            return Err(TspError::Malformed("failInfo has non-zero unused bits"));
        }
        if (last >> unused) & 1 == 0 {
            return Err(TspError::Malformed("failInfo has trailing zero bits"));
        }
    }
    Ok(bits
        .bits()
        .zip(0u32..)
        .filter_map(|(set, n)| set.then_some(n))
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::tsp::asn1::Tlv;

    /// The failInfo element of a response, as its DER bytes.
    fn fail_info_tlv(resp: &[u8]) -> Vec<u8> {
        let resp = AnyTimeStampResp::from_der(resp).unwrap();
        resp.status.fail_info.unwrap().to_der().unwrap()
    }

    #[test]
    fn fail_info_bit_strings_are_named_bit_der() {
        let expected = [
            (FailureInfo::BadAlg, "03020780"),
            (FailureInfo::BadRequest, "03020520"),
            (FailureInfo::BadDataFormat, "03020204"),
            (FailureInfo::TimeNotAvailable, "0303010002"),
            (FailureInfo::UnacceptedPolicy, "0303000001"),
            (FailureInfo::UnacceptedExtension, "030407000080"),
            (FailureInfo::AddInfoNotAvailable, "030406000040"),
            (FailureInfo::SystemFailure, "03050600000040"),
        ];
        for (fail, hex) in expected {
            let der = rejection_response(&Rejection::new(fail, "no"));
            assert_eq!(hex::encode(fail_info_tlv(&der)), hex, "{fail}");
            let st = decode_response_status(&der).unwrap();
            assert_eq!(st.status, 2);
            assert_eq!(st.fail_info, Some(fail));
            assert_eq!(st.fail_bits, vec![fail.bit()]);
            assert_eq!(st.text, vec!["no".to_string()]);
            assert_eq!(st.token, None);
            assert_eq!(FailureInfo::from_bit(fail.bit()), Some(fail));
        }
        assert_eq!(FailureInfo::from_bit(1), None);
    }

    /// OpenSSL's own rejections (see tests/vectors/tsp/README.md): the same failInfo bytes.
    #[test]
    fn fail_info_matches_openssl() {
        for (file, fail, text) in [
            (
                &include_bytes!("../../tests/vectors/tsp/reply-openssl-badalg.tsr")[..],
                FailureInfo::BadAlg,
                "Message digest algorithm is not supported.",
            ),
            (
                &include_bytes!("../../tests/vectors/tsp/reply-openssl-unacceptedpolicy.tsr")[..],
                FailureInfo::UnacceptedPolicy,
                "Requested policy is not supported.",
            ),
        ] {
            let st = decode_response_status(file).unwrap();
            assert_eq!(st.status, 2);
            assert_eq!(st.fail_info, Some(fail));
            assert_eq!(st.text, vec![text.to_string()]);
            let ours = rejection_response(&Rejection::new(fail, text));
            assert_eq!(fail_info_tlv(&ours), fail_info_tlv(file), "{fail}");
            // Same text, same everything: byte-identical to OpenSSL's reply.
            assert_eq!(ours, file);
        }
        assert_eq!(
            fail_info_tlv(include_bytes!(
                "../../tests/vectors/tsp/reply-openssl-badalg.tsr"
            )),
            [0x03, 0x02, 0x07, 0x80]
        );
    }

    #[test]
    fn fallback_is_the_typed_encoding() {
        assert_eq!(
            encode_rejection(FailureInfo::SystemFailure, None).unwrap(),
            MINIMAL_SYSTEM_FAILURE
        );
        let st = decode_response_status(&MINIMAL_SYSTEM_FAILURE).unwrap();
        assert_eq!(st.fail_info, Some(FailureInfo::SystemFailure));
        assert!(st.text.is_empty());
    }

    #[test]
    fn refuses_trailing_bytes_and_non_der_bits() {
        let mut der = rejection_response(&Rejection::new(FailureInfo::BadAlg, "x"));
        der.push(0);
        assert!(decode_response_status(&der).is_err());
        // badAlg with a trailing zero byte: 03 03 07 80 00 is not DER's named-bit form.
        for bits in [
            &[0x03, 0x03, 0x00, 0x80, 0x00][..],
            &[0x03, 0x02, 0x06, 0x81],
        ] {
            let status = [&[0x02, 0x01, 0x02][..], bits].concat();
            let info = [&[0x30, u8::try_from(status.len()).unwrap()][..], &status].concat();
            let resp = [&[0x30, u8::try_from(info.len()).unwrap()][..], &info].concat();
            Tlv::new(&resp).unwrap();
            assert!(
                decode_response_status(&resp).is_err(),
                "{}",
                hex::encode(&resp)
            );
        }
    }

    #[test]
    fn granted_status_without_token_is_reported_as_is() {
        let resp = TimeStampResp {
            status: PkiStatusInfo {
                status: STATUS_GRANTED,
                status_string: None,
                fail_info: None,
            },
            time_stamp_token: None,
        };
        let st = decode_response_status(&resp.to_der().unwrap()).unwrap();
        assert_eq!(st.status, 0);
        assert_eq!(st.fail_info, None);
        assert!(st.fail_bits.is_empty() && st.text.is_empty() && st.token.is_none());
    }

    #[test]
    fn rejection_display() {
        let r = Rejection::new(
            FailureInfo::UnacceptedPolicy,
            "policy 1.2.3 is not accepted",
        );
        assert_eq!(
            r.to_string(),
            "unacceptedPolicy: policy 1.2.3 is not accepted"
        );
    }
}
