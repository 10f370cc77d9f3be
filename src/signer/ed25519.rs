//! The one reading of an Ed25519 SubjectPublicKeyInfo (RFC 8410), used wherever a chain,
//! witness or checkpoint key is taken out of its DER form: the chain service, the witness
//! service, and the offline chain audit.
//!
//! It is strict: the bytes must be exactly the 12-byte DER prefix of
//! `SEQUENCE { SEQUENCE { id-Ed25519 }, BIT STRING (0 unused bits) }` followed by the
//! 32-byte key. Parameters, a long-form length, trailing bytes or another algorithm are
//! refused, so one key has one SPKI and one key id.

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo; the key's 32 bytes follow.
pub const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The DER SubjectPublicKeyInfo of the Ed25519 public key `key`.
pub fn ed25519_spki(key: &[u8; 32]) -> Vec<u8> {
    let mut out = ED25519_SPKI_PREFIX.to_vec();
    out.extend_from_slice(key);
    out
}

/// The 32-byte Ed25519 key in `spki`, or `None` when `spki` is anything but the exact
/// DER encoding of an Ed25519 SubjectPublicKeyInfo.
pub fn ed25519_key_of(spki: &[u8]) -> Option<[u8; 32]> {
    spki.strip_prefix(&ED25519_SPKI_PREFIX[..])?.try_into().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_key_round_trips_and_nothing_else_is_read() {
        let key = [7u8; 32];
        let spki = ed25519_spki(&key);
        assert_eq!(spki.len(), 44);
        assert_eq!(ed25519_key_of(&spki), Some(key));
        assert_eq!(ed25519_key_of(&[0; 44]), None);
        // Trailing bytes, a truncated key, or another OID (X25519 1.3.101.110) are refused.
        let mut long = spki.clone();
        long.push(0);
        assert_eq!(ed25519_key_of(&long), None);
        assert_eq!(ed25519_key_of(&spki[..43]), None);
        let mut x25519 = spki.clone();
        x25519[8] = 0x6e;
        assert_eq!(ed25519_key_of(&x25519), None);
    }

    #[test]
    fn the_prefix_is_what_the_der_encoder_writes() {
        use der::Encode as _;
        let key = [9u8; 32];
        let spki = spki::SubjectPublicKeyInfoOwned {
            algorithm: spki::AlgorithmIdentifierOwned {
                oid: crate::signer::oids::ED25519,
                parameters: None,
            },
            subject_public_key: der::asn1::BitString::from_bytes(&key).unwrap(),
        };
        assert_eq!(spki.to_der().unwrap(), ed25519_spki(&key));
    }
}
