//! TSTInfo: encoding one, and decoding one back (from a token or on its own).

use der::asn1::{Int, ObjectIdentifier, OctetStringRef, UintRef};
use der::referenced::OwnedToRef;
use der::{Decode, Encode, Tag, Tagged};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::Extensions;
use x509_cert::name::Name;

use super::asn1::{MessageImprint, TstInfo};
use super::{oid, Accuracy, GenTime, HashAlgorithm, TspError};

/// TSTInfo version v1.
const TST_INFO_V1: u8 = 1;

/// Everything that goes into one TSTInfo.
#[derive(Clone, Copy, Debug)]
pub struct TstParams<'a> {
    /// The policy under which the token is issued.
    pub policy: &'a ObjectIdentifier,
    /// The imprint's hash algorithm.
    pub hash: HashAlgorithm,
    /// The imprint's digest (its length must be the algorithm's).
    pub digest: &'a [u8],
    /// Write the hash algorithm's parameters as NULL (true) or leave them absent (false),
    /// as the request did: the messageImprint is a copy of the request's.
    pub hash_params_null: bool,
    /// The serial number: positive (> 0).
    pub serial: u128,
    /// The time of the token.
    pub gen_time: GenTime,
    /// The accuracy of `gen_time`.
    pub accuracy: &'a Accuracy,
    /// The request's nonce, echoed byte for byte.
    pub nonce: Option<&'a Int>,
    /// The TSA's name, written as a GeneralName directoryName (`[4]`) inside `tsa [0]`.
    pub tsa_name: Option<&'a Name>,
}

/// Encodes a TSTInfo: version 1, the imprint as the request wrote it, ordering absent, no
/// extensions.
///
/// Refuses a digest of the wrong length, a zero serial, an invalid accuracy and a genTime
/// outside 1970..=9999.
pub fn encode_tst_info(p: &TstParams<'_>) -> Result<Vec<u8>, TspError> {
    if p.digest.len() != p.hash.output_len() {
        return Err(TspError::DigestLength {
            hash: p.hash,
            expected: p.hash.output_len(),
            actual: p.digest.len(),
        });
    }
    if p.serial == 0 {
        return Err(TspError::InvalidSerial);
    }
    let serial = p.serial.to_be_bytes();
    let tst_info = TstInfo {
        version: TST_INFO_V1,
        policy: *p.policy,
        message_imprint: MessageImprint {
            hash_algorithm: if p.hash_params_null {
                p.hash.identifier_null_params()
            } else {
                p.hash.identifier_absent_params()
            },
            hashed_message: OctetStringRef::new(p.digest)?,
        },
        serial_number: UintRef::new(&serial)?,
        gen_time: p.gen_time,
        accuracy: Some(p.accuracy.to_asn1()?),
        ordering: None,
        nonce: p.nonce.map(|n| n.owned_to_ref()),
        tsa: p.tsa_name.map(|n| GeneralName::DirectoryName(n.clone())),
        extensions: None,
    };
    Ok(tst_info.to_der()?)
}

/// A TSTInfo, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedTstInfo {
    /// The policy under which the token was issued.
    pub policy: ObjectIdentifier,
    /// The imprint's hash algorithm, if it is one [`HashAlgorithm`] knows.
    pub hash: Option<HashAlgorithm>,
    /// The imprint's hash algorithm identifier, whatever it is.
    pub hash_oid: ObjectIdentifier,
    /// The imprint's digest.
    pub digest: Vec<u8>,
    /// The serial number: big-endian, unsigned, without leading zeros (`[0]` for zero).
    pub serial: Vec<u8>,
    /// The time of the token.
    pub gen_time: GenTime,
    /// The accuracy, if stated.
    pub accuracy: Option<Accuracy>,
    /// The ordering flag.
    pub ordering: bool,
    /// The nonce, if present.
    pub nonce: Option<Int>,
    /// The `tsa` name, if present.
    pub tsa: Option<GeneralName>,
    /// The extensions, if present.
    pub extensions: Option<Extensions>,
}

impl DecodedTstInfo {
    /// The serial number as an integer, when it fits in 128 bits.
    pub fn serial_u128(&self) -> Option<u128> {
        if self.serial.len() > 16 {
            return None;
        }
        Some(
            self.serial
                .iter()
                .fold(0u128, |acc, b| acc << 8 | u128::from(*b)),
        )
    }
}

/// Decodes a DER TSTInfo. Refuses what is not DER (including an explicitly encoded
/// `ordering FALSE`), a version other than 1, a negative serial number, a malformed genTime
/// and millis or micros outside 1..=999.
pub fn decode_tst_info(der: &[u8]) -> Result<DecodedTstInfo, TspError> {
    let t = TstInfo::from_der(der)?;
    if t.version != TST_INFO_V1 {
        return Err(TspError::Malformed("TSTInfo version is not 1"));
    }
    if t.ordering == Some(false) {
        return Err(TspError::Malformed(
            "ordering FALSE is the default and must be omitted",
        ));
    }
    let accuracy = t.accuracy.map(Accuracy::from_asn1).transpose()?;
    let hash_oid = t.message_imprint.hash_algorithm.oid;
    Ok(DecodedTstInfo {
        policy: t.policy,
        hash: HashAlgorithm::from_oid(&hash_oid),
        hash_oid,
        digest: t.message_imprint.hashed_message.as_bytes().to_vec(),
        serial: t.serial_number.as_bytes().to_vec(),
        gen_time: t.gen_time,
        accuracy,
        ordering: t.ordering == Some(true),
        nonce: t.nonce.map(|n| Int::new(n.as_bytes())).transpose()?,
        tsa: t.tsa,
        extensions: t.extensions,
    })
}

/// Decodes the TSTInfo inside a time-stamp token (a ContentInfo holding a SignedData whose
/// eContentType is id-ct-TSTInfo). Checks the structure only: no signature, certificate or
/// attribute is verified here.
pub fn decode_tst_info_from_token(token_der: &[u8]) -> Result<DecodedTstInfo, TspError> {
    let content_info = cms::content_info::ContentInfo::from_der(token_der)?;
    if content_info.content_type != oid::ID_SIGNED_DATA {
        return Err(TspError::Malformed("the token is not a CMS SignedData"));
    }
    let signed_data: cms::signed_data::SignedData = content_info.content.decode_as()?;
    let encap = signed_data.encap_content_info;
    if encap.econtent_type != oid::ID_CT_TST_INFO {
        return Err(TspError::Malformed(
            "the token's eContentType is not id-ct-TSTInfo",
        ));
    }
    let econtent = encap
        .econtent
        .ok_or(TspError::Malformed("the token has no eContent"))?;
    if econtent.tag() != Tag::OctetString {
        return Err(TspError::Malformed(
            "the token's eContent is not an OCTET STRING",
        ));
    }
    decode_tst_info(econtent.value())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::tsp::asn1::AccuracyDer;
    use crate::tsp::decode_response_status;
    use std::str::FromStr;

    fn name() -> Name {
        Name::from_str("CN=auditstamp test TSA,O=auditstamp,C=DE").unwrap()
    }

    fn params<'a>(
        policy: &'a ObjectIdentifier,
        digest: &'a [u8],
        accuracy: &'a Accuracy,
    ) -> TstParams<'a> {
        TstParams {
            policy,
            hash: HashAlgorithm::Sha256,
            hash_params_null: true,
            digest,
            serial: 0x0102_0304,
            gen_time: GenTime::from_unix_millis(1_709_251_199_010),
            accuracy,
            nonce: None,
            tsa_name: None,
        }
    }

    #[test]
    fn imprint_parameters_are_copied_as_the_request_wrote_them() {
        let policy = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1.1");
        let digest = [0x11; 32];
        let accuracy = Accuracy::new(1, 0, 0).unwrap();
        // SEQUENCE { OID sha256 [, NULL] } then the OCTET STRING, as in the request.
        let absent = hex::decode("300b0609608648016503040201").unwrap();
        let null = hex::decode("300d06096086480165030402010500").unwrap();
        for (params_null, alg) in [(false, absent), (true, null)] {
            let mut p = params(&policy, &digest, &accuracy);
            p.hash_params_null = params_null;
            let der = encode_tst_info(&p).unwrap();
            let at = der.windows(alg.len()).position(|w| w == alg.as_slice());
            assert!(
                at.is_some(),
                "null={params_null}: imprint algorithm not as requested"
            );
        }
    }

    #[test]
    fn round_trip_with_every_field() {
        let policy = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1.1");
        let digest = [0x5a; 48];
        let accuracy = Accuracy::new(1, 500, 100).unwrap();
        let nonce = Int::new(&[0x00, 0x81, 0x02]).unwrap();
        let tsa = name();
        let p = TstParams {
            hash: HashAlgorithm::Sha384,
            hash_params_null: true,
            nonce: Some(&nonce),
            tsa_name: Some(&tsa),
            ..params(&policy, &digest, &accuracy)
        };
        let der = encode_tst_info(&p).unwrap();
        let d = decode_tst_info(&der).unwrap();
        assert_eq!(d.policy, policy);
        assert_eq!(d.hash, Some(HashAlgorithm::Sha384));
        assert_eq!(d.digest, digest);
        assert_eq!(d.serial, [1, 2, 3, 4]);
        assert_eq!(d.serial_u128(), Some(0x0102_0304));
        assert_eq!(d.gen_time, p.gen_time);
        assert_eq!(d.accuracy, Some(accuracy));
        assert!(!d.ordering);
        assert_eq!(d.nonce, Some(nonce));
        assert_eq!(d.tsa, Some(GeneralName::DirectoryName(tsa.clone())));
        assert_eq!(d.extensions, None);
        // tsa is [0] EXPLICIT around a directoryName [4] EXPLICIT around the Name.
        let name_der = tsa.to_der().unwrap();
        let name_at = der
            .windows(name_der.len())
            .position(|w| w == name_der)
            .unwrap();
        assert_eq!(der[name_at - 4], 0xa0);
        assert_eq!(der[name_at - 2], 0xa4);
        assert_eq!(
            &der[name_at + name_der.len()..],
            b"",
            "tsa is the last field"
        );
        // No ordering BOOLEAN anywhere between accuracy and nonce.
        let t = TstInfo::from_der(&der).unwrap();
        assert_eq!(t.ordering, None);
        assert_eq!(t.version, 1);
        assert_eq!(t.to_der().unwrap(), der);
    }

    #[test]
    fn serial_numbers_encode_as_positive_integers() {
        let policy = ObjectIdentifier::new_unwrap("1.2.3.4");
        let digest = [0; 32];
        let accuracy = Accuracy::new(1, 0, 0).unwrap();
        for (serial, content) in [
            (1u128, "01"),
            (0x7f, "7f"),
            (0x80, "0080"),
            (0xff00, "00ff00"),
            (u128::MAX, "00ffffffffffffffffffffffffffffffff"),
        ] {
            let der = encode_tst_info(&TstParams {
                serial,
                ..params(&policy, &digest, &accuracy)
            })
            .unwrap();
            let int_tlv = format!("02{:02x}{content}", content.len() / 2);
            assert!(hex::encode(&der).contains(&int_tlv), "{serial:x}");
            assert_eq!(decode_tst_info(&der).unwrap().serial_u128(), Some(serial));
        }
        let r = encode_tst_info(&TstParams {
            serial: 0,
            ..params(&policy, &digest, &accuracy)
        });
        assert!(matches!(r, Err(TspError::InvalidSerial)));
    }

    #[test]
    fn refuses_bad_params() {
        let policy = ObjectIdentifier::new_unwrap("1.2.3.4");
        let digest = [0; 32];
        let accuracy = Accuracy::new(1, 0, 0).unwrap();
        let short = [0; 20];
        assert!(matches!(
            encode_tst_info(&params(&policy, &short, &accuracy)),
            Err(TspError::DigestLength {
                expected: 32,
                actual: 20,
                ..
            })
        ));
        let zero = Accuracy {
            seconds: 0,
            millis: 0,
            micros: 0,
        };
        assert!(encode_tst_info(&params(&policy, &digest, &zero)).is_err());
        let far = TstParams {
            gen_time: GenTime::from_unix_millis(u64::MAX),
            ..params(&policy, &digest, &accuracy)
        };
        assert!(encode_tst_info(&far).is_err());
    }

    #[test]
    fn decoding_refuses_non_der_and_wrong_version() {
        let policy = ObjectIdentifier::new_unwrap("1.2.3.4");
        let digest = [0; 32];
        let accuracy = Accuracy::new(1, 0, 0).unwrap();
        let der = encode_tst_info(&params(&policy, &digest, &accuracy)).unwrap();
        let mut t = TstInfo::from_der(&der).unwrap();
        t.ordering = Some(false);
        assert!(decode_tst_info(&t.to_der().unwrap()).is_err());
        t.ordering = Some(true);
        assert!(decode_tst_info(&t.to_der().unwrap()).unwrap().ordering);
        t.ordering = None;
        t.version = 2;
        assert!(decode_tst_info(&t.to_der().unwrap()).is_err());
        t.version = 1;
        t.accuracy = Some(AccuracyDer {
            seconds: None,
            millis: Some(1000),
            micros: None,
        });
        assert!(decode_tst_info(&t.to_der().unwrap()).is_err());
        assert!(decode_tst_info(&[der.as_slice(), &[0]].concat()).is_err());
    }

    /// OpenSSL's token (tests/vectors/tsp/README.md) reads back as `openssl ts -reply -text`
    /// shows it.
    #[test]
    fn openssl_token() {
        let reply = include_bytes!("../../tests/vectors/tsp/reply-openssl-granted.tsr");
        let req = include_bytes!("../../tests/vectors/tsp/req-sha256.tsq");
        let st = decode_response_status(reply).unwrap();
        assert_eq!(st.status, 0);
        let d = decode_tst_info_from_token(&st.token.unwrap()).unwrap();
        let req = x509_tsp::TimeStampReq::from_der(req).unwrap();
        assert_eq!(d.policy.to_string(), "1.3.6.1.4.1.99999.1.1");
        assert_eq!(d.hash, Some(HashAlgorithm::Sha256));
        assert_eq!(d.digest, req.message_imprint.hashed_message.as_bytes());
        assert_eq!(d.nonce, req.nonce);
        assert_eq!(d.accuracy, Some(Accuracy::new(1, 500, 100).unwrap()));
        assert!(!d.ordering);
        assert!(matches!(d.tsa, Some(GeneralName::DirectoryName(_))));
        assert!(!d.serial.is_empty());
        // clock_precision_digits = 3: OpenSSL writes milliseconds, trailing zeros removed;
        // decoding and re-encoding gives its bytes back.
        let t = x509_tsp::TstInfo::from_der(
            cms::signed_data::SignedData::from_der(
                &x509_tsp::TimeStampResp::from_der(reply)
                    .unwrap()
                    .time_stamp_token
                    .unwrap()
                    .content
                    .to_der()
                    .unwrap(),
            )
            .unwrap()
            .encap_content_info
            .econtent
            .unwrap()
            .value(),
        );
        // x509-tsp cannot read fractional seconds at all (see FIELD-NOTES.md).
        assert!(d.gen_time.unix_millis() > 1_700_000_000_000);
        if !d.gen_time.unix_millis().is_multiple_of(1000) {
            assert!(t.is_err());
        }
    }

    #[test]
    fn token_decoding_refuses_other_content() {
        // A ContentInfo of type id-data.
        let ci = cms::content_info::ContentInfo {
            content_type: const_oid::db::rfc5911::ID_DATA,
            content: der::Any::new(Tag::OctetString, vec![1]).unwrap(),
        };
        assert!(decode_tst_info_from_token(&ci.to_der().unwrap()).is_err());
        assert!(decode_tst_info_from_token(b"\x30\x00").is_err());
    }
}
