//! genTime with millisecond precision, and the accuracy stated beside it.

use core::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::{
    DateTime, DecodeValue, EncodeValue, FixedTag, Header, Length, Reader, Sequence, Tag, Writer,
};

use super::TspError;

/// The longest genTime this type writes: `YYYYMMDDHHMMSS.fffZ`.
const MAX_ENCODED_LEN: usize = 19;

/// genTime with millisecond precision: a GeneralizedTime `YYYYMMDDHHMMSS[.fff]Z` in UTC,
/// the fraction without trailing zeros and no fraction at all when the milliseconds are
/// zero (RFC 3161 §2.4.2, DER).
///
/// As a DER type it is a GeneralizedTime and can be a field of a derived `Sequence`.
/// Decoding accepts exactly that form (digits, optional `.` and at least one digit not
/// ending in `0`, then `Z`); digits beyond the milliseconds, which other TSAs may write,
/// are dropped (rounding down). Times before 1970 or after 9999 cannot be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GenTime {
    unix_millis: u64,
}

impl GenTime {
    /// The time `unix_millis` milliseconds after 1970-01-01T00:00:00Z.
    pub const fn from_unix_millis(unix_millis: u64) -> Self {
        GenTime { unix_millis }
    }

    /// The time `t`, truncated to the millisecond; refuses a time before 1970.
    pub fn from_system_time(t: SystemTime) -> Result<Self, TspError> {
        let since_epoch = t
            .duration_since(UNIX_EPOCH)
            .map_err(|_| TspError::TimeOutOfRange)?;
        let unix_millis =
            u64::try_from(since_epoch.as_millis()).map_err(|_| TspError::TimeOutOfRange)?;
        Ok(GenTime { unix_millis })
    }

    /// Milliseconds since 1970-01-01T00:00:00Z.
    pub const fn unix_millis(self) -> u64 {
        self.unix_millis
    }

    /// The same instant as a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.unix_millis)
    }

    /// The GeneralizedTime characters, in a buffer, and how many of them there are.
    fn format(self) -> der::Result<([u8; MAX_ENCODED_LEN], usize)> {
        let secs = self.unix_millis / 1000;
        let millis = self.unix_millis % 1000;
        let dt = DateTime::from_unix_duration(Duration::from_secs(secs))?;
        let mut out = [0u8; MAX_ENCODED_LEN];
        let year = dt.year();
        let fields: [(u32, usize); 6] = [
            (u32::from(year), 4),
            (u32::from(dt.month()), 2),
            (u32::from(dt.day()), 2),
            (u32::from(dt.hour()), 2),
            (u32::from(dt.minutes()), 2),
            (u32::from(dt.seconds()), 2),
        ];
        let mut pos = 0;
        for (value, width) in fields {
            write_decimal(&mut out[pos..pos + width], value);
            pos += width;
        }
        if millis != 0 {
            out[pos] = b'.';
            pos += 1;
            let mut digits = [0u8; 3];
            // millis < 1000, so the conversion cannot fail.
            write_decimal(&mut digits, u32::try_from(millis).unwrap_or(0));
            let used = 3 - digits.iter().rev().take_while(|d| **d == b'0').count();
            out[pos..pos + used].copy_from_slice(&digits[..used]);
            pos += used;
        }
        out[pos] = b'Z';
        Ok((out, pos + 1))
    }

    /// Parses the GeneralizedTime characters this type accepts (see the type's doc).
    fn parse(s: &[u8]) -> der::Result<Self> {
        let malformed = || Tag::GeneralizedTime.value_error();
        let (fraction, rest) = match s {
            [digits @ .., b'Z'] if digits.len() == 14 => (&[][..], digits),
            [head @ .., b'Z'] if head.len() > 15 && head[14] == b'.' => (&head[15..], &head[..14]),
            _ => return Err(malformed()),
        };
        if !rest.iter().chain(fraction).all(u8::is_ascii_digit) {
            return Err(malformed());
        }
        if fraction.last() == Some(&b'0') {
            // DER: no trailing zeros in the fraction (and `.0` would have none at all).
            return Err(malformed());
        }
        let num = |range: core::ops::Range<usize>| -> u32 {
            rest[range]
                .iter()
                .fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
        };
        let small = |range| u8::try_from(num(range)).map_err(|_| malformed());
        let year = u16::try_from(num(0..4)).map_err(|_| malformed())?;
        let dt = DateTime::new(
            year,
            small(4..6)?,
            small(6..8)?,
            small(8..10)?,
            small(10..12)?,
            small(12..14)?,
        )
        .map_err(|_| malformed())?;
        let mut millis = 0u64;
        for i in 0..3 {
            let digit = fraction.get(i).map_or(0, |d| d - b'0');
            millis = millis * 10 + u64::from(digit);
        }
        let secs = dt.unix_duration().as_secs();
        let unix_millis = secs
            .checked_mul(1000)
            .and_then(|ms| ms.checked_add(millis))
            .ok_or_else(malformed)?;
        Ok(GenTime { unix_millis })
    }
}

/// Writes `value` as `out.len()` decimal digits (the caller guarantees it fits).
fn write_decimal(out: &mut [u8], mut value: u32) {
    for slot in out.iter_mut().rev() {
        // value % 10 < 10, so the cast cannot truncate.
        *slot = b'0' + u8::try_from(value % 10).unwrap_or(0);
        value /= 10;
    }
}

impl TryFrom<SystemTime> for GenTime {
    type Error = TspError;

    fn try_from(t: SystemTime) -> Result<Self, TspError> {
        Self::from_system_time(t)
    }
}

impl fmt::Display for GenTime {
    /// The GeneralizedTime form, e.g. `20240229235959.5Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.format() {
            Ok((buf, len)) => {
                let text = core::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?;
                f.write_str(text)
            }
            Err(_) => write!(f, "<out of range: {} ms since 1970>", self.unix_millis),
        }
    }
}

impl EncodeValue for GenTime {
    fn value_len(&self) -> der::Result<Length> {
        let (_, len) = self.format()?;
        Length::try_from(len)
    }

    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        let (buf, len) = self.format()?;
        writer.write(&buf[..len])
    }
}

impl<'a> DecodeValue<'a> for GenTime {
    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        let bytes = reader.read_slice(header.length)?;
        Self::parse(bytes)
    }
}

impl FixedTag for GenTime {
    const TAG: Tag = Tag::GeneralizedTime;
}

/// The accuracy of genTime (RFC 3161 §2.4.2): genTime is within ± this of UTC.
///
/// ```text
/// Accuracy ::= SEQUENCE {
///    seconds        INTEGER           OPTIONAL,
///    millis     [0] INTEGER  (1..999) OPTIONAL,
///    micros     [1] INTEGER  (1..999) OPTIONAL  }
/// ```
///
/// Zero parts are omitted when encoded. An all-zero accuracy states nothing, so
/// [`Accuracy::new`] refuses it, as it refuses millis or micros above 999.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Accuracy {
    /// Whole seconds.
    pub seconds: u32,
    /// Milliseconds, 0..=999.
    pub millis: u16,
    /// Microseconds, 0..=999.
    pub micros: u16,
}

impl Accuracy {
    /// An accuracy of `seconds` s + `millis` ms + `micros` µs; refuses all-zero and
    /// millis or micros above 999.
    pub fn new(seconds: u32, millis: u16, micros: u16) -> Result<Self, TspError> {
        let accuracy = Accuracy {
            seconds,
            millis,
            micros,
        };
        accuracy.validate()?;
        Ok(accuracy)
    }

    /// The accuracy as a duration.
    pub fn as_duration(&self) -> Duration {
        Duration::from_secs(u64::from(self.seconds))
            + Duration::from_millis(u64::from(self.millis))
            + Duration::from_micros(u64::from(self.micros))
    }

    /// Checks what [`Accuracy::new`] checks (the fields are public, so a value may have
    /// been built without it).
    pub(crate) fn validate(&self) -> Result<(), TspError> {
        if self.millis > 999 {
            return Err(TspError::InvalidAccuracy("millis must be 0..=999"));
        }
        if self.micros > 999 {
            return Err(TspError::InvalidAccuracy("micros must be 0..=999"));
        }
        if self.seconds == 0 && self.millis == 0 && self.micros == 0 {
            return Err(TspError::InvalidAccuracy(
                "at least one part must be non-zero",
            ));
        }
        Ok(())
    }

    /// The DER form, zero parts omitted; refuses an invalid accuracy.
    pub(crate) fn to_asn1(self) -> Result<AccuracyDer, TspError> {
        self.validate()?;
        let nonzero_u16 = |v: u16| (v != 0).then_some(v);
        Ok(AccuracyDer {
            seconds: (self.seconds != 0).then_some(self.seconds),
            millis: nonzero_u16(self.millis),
            micros: nonzero_u16(self.micros),
        })
    }

    /// Reads the DER form: absent parts are zero; millis and micros, when present, must
    /// be 1..=999. An empty SEQUENCE gives an all-zero accuracy (valid DER, though it
    /// states nothing).
    pub(crate) fn from_asn1(a: AccuracyDer) -> Result<Self, TspError> {
        let in_range = |v: Option<u16>| match v {
            None => Ok(0),
            Some(v @ 1..=999) => Ok(v),
            Some(_) => Err(TspError::Malformed(
                "accuracy millis/micros outside 1..=999",
            )),
        };
        Ok(Accuracy {
            seconds: a.seconds.unwrap_or(0),
            millis: in_range(a.millis)?,
            micros: in_range(a.micros)?,
        })
    }
}

/// The accuracy of genTime (RFC 3161 §2.4.2); absent fields mean zero.
///
/// ```text
/// Accuracy ::= SEQUENCE {
///    seconds        INTEGER           OPTIONAL,
///    millis     [0] INTEGER  (1..999) OPTIONAL,
///    micros     [1] INTEGER  (1..999) OPTIONAL  }
/// ```
#[derive(Clone, Copy, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct AccuracyDer {
    #[asn1(optional = "true")]
    pub seconds: Option<u32>,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    pub millis: Option<u16>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    pub micros: Option<u16>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use der::{Decode, Encode};
    use proptest::prelude::*;

    fn encoded(ms: u64) -> String {
        let der = GenTime::from_unix_millis(ms).to_der().unwrap();
        assert_eq!(der[0], 0x18, "GeneralizedTime tag");
        assert_eq!(usize::from(der[1]), der.len() - 2);
        String::from_utf8(der[2..].to_vec()).unwrap()
    }

    fn decode_str(s: &str) -> der::Result<GenTime> {
        let mut der = vec![0x18, u8::try_from(s.len()).unwrap()];
        der.extend_from_slice(s.as_bytes());
        GenTime::from_der(&der)
    }

    #[test]
    fn known_values() {
        assert_eq!(encoded(0), "19700101000000Z");
        assert_eq!(encoded(1), "19700101000000.001Z");
        assert_eq!(encoded(7), "19700101000000.007Z");
        assert_eq!(encoded(120), "19700101000000.12Z");
        assert_eq!(encoded(500), "19700101000000.5Z");
        assert_eq!(encoded(999), "19700101000000.999Z");
        // 2024-02-29T23:59:59.010Z, a leap day.
        assert_eq!(encoded(1_709_251_199_010), "20240229235959.01Z");
        assert_eq!(encoded(1_700_000_000_000), "20231114221320Z");
        // The last millisecond of 9999.
        assert_eq!(encoded(253_402_300_799_999), "99991231235959.999Z");
        assert!(GenTime::from_unix_millis(253_402_300_800_000)
            .to_der()
            .is_err());
        assert_eq!(
            GenTime::from_unix_millis(1_709_251_199_010).to_string(),
            "20240229235959.01Z"
        );
    }

    #[test]
    fn decodes_what_it_encodes_and_other_tsas_precision() {
        assert_eq!(
            decode_str("20240229235959.01Z").unwrap().unix_millis(),
            1_709_251_199_010
        );
        assert_eq!(decode_str("19700101000000Z").unwrap().unix_millis(), 0);
        // Microseconds from another TSA: rounded down to the millisecond.
        assert_eq!(
            decode_str("19700101000001.123456Z").unwrap().unix_millis(),
            1_123
        );
        assert_eq!(
            decode_str("19700101000001.0009Z").unwrap().unix_millis(),
            1_000
        );
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "20240229235959.10Z", // trailing zero
            "20240229235959.0Z",  // zero fraction
            "20240229235959.Z",   // empty fraction
            "20240229235959",     // no zone
            "20240229235959z",    // lower-case zone
            "20240229235959+0100",
            "202402292359Z",     // no seconds
            "2024022923595900Z", // too long
            "20240230000000Z",   // 30 February
            "20230229000000Z",   // not a leap year
            "20241231235960Z",   // leap second
            "2024022923595 Z",
            "20240229235959,5Z", // comma
            "20240229235959.5aZ",
            "19691231235959Z", // before 1970
            "",
        ] {
            assert!(decode_str(bad).is_err(), "{bad:?} accepted");
        }
        // UTCTime tag instead of GeneralizedTime.
        assert!(GenTime::from_der(b"\x17\x0d240229235959Z").is_err());
    }

    #[test]
    fn system_time_conversions() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let g = GenTime::try_from(t).unwrap();
        assert_eq!(g.unix_millis(), 1_700_000_000_123);
        assert_eq!(
            g.to_system_time(),
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
        );
        assert!(GenTime::from_system_time(UNIX_EPOCH - Duration::from_secs(1)).is_err());
    }

    proptest! {
        #[test]
        fn round_trips_without_trailing_zeros(ms in 0u64..=253_402_300_799_999) {
            let g = GenTime::from_unix_millis(ms);
            let der = g.to_der().unwrap();
            prop_assert_eq!(GenTime::from_der(&der).unwrap(), g);
            let s = core::str::from_utf8(&der[2..]).unwrap();
            prop_assert!(s.ends_with('Z'));
            match s.split_once('.') {
                None => prop_assert_eq!(ms % 1000, 0),
                Some((whole, frac)) => {
                    prop_assert_eq!(whole.len(), 14);
                    prop_assert!(!frac.trim_end_matches('Z').ends_with('0'));
                    prop_assert!((2..=4).contains(&frac.len()));
                    prop_assert_ne!(ms % 1000, 0);
                }
            }
            prop_assert_eq!(g.to_string(), s);
        }
    }

    #[test]
    fn accuracy_validation_and_encoding() {
        assert!(Accuracy::new(0, 0, 0).is_err());
        assert!(Accuracy::new(0, 1000, 0).is_err());
        assert!(Accuracy::new(0, 0, 1000).is_err());
        let cases: [((u32, u16, u16), &str); 4] = [
            ((1, 0, 0), "3003020101"),
            ((0, 500, 0), "3004800201f4"),
            ((0, 0, 1), "3003810101"),
            // The same bytes OpenSSL writes for `accuracy = secs:1, millisecs:500, microsecs:100`.
            ((1, 500, 100), "300a020101800201f4810164"),
        ];
        for ((s, ms, us), hex) in cases {
            let a = Accuracy::new(s, ms, us).unwrap();
            let der = a.to_asn1().unwrap().to_der().unwrap();
            assert_eq!(hex::encode(&der), hex);
            let back = Accuracy::from_asn1(AccuracyDer::from_der(&der).unwrap()).unwrap();
            assert_eq!(back, a);
        }
        assert_eq!(
            Accuracy::new(1, 500, 100).unwrap().as_duration(),
            Duration::from_micros(1_500_100)
        );
        // Built by hand, bypassing `new`: refused at encoding.
        let bad = Accuracy {
            seconds: 0,
            millis: 0,
            micros: 0,
        };
        assert!(bad.to_asn1().is_err());
        // millis [0] 0 is outside 1..=999.
        let zero_millis = AccuracyDer::from_der(&hex::decode("3003800100").unwrap()).unwrap();
        assert!(Accuracy::from_asn1(zero_millis).is_err());
    }
}
