//! Public keys read from the token's objects, and the DER SubjectPublicKeyInfo built from
//! their attributes (RSA, EC P-256/P-384, Ed25519).

use super::*;

pub(super) fn read_key_type(
    session: &Session,
    object: ObjectHandle,
) -> Result<KeyType, SignerError> {
    for attr in session.get_attributes(object, &[AttributeType::KeyType])? {
        if let Attribute::KeyType(kt) = attr {
            return Ok(kt);
        }
    }
    Err(SignerError::UnsupportedKeyType(
        "the key has no CKA_KEY_TYPE".into(),
    ))
}

/// The public half of a key, as the token describes it.
pub(super) enum PublicKeyMaterial {
    Ec {
        algorithm: KeyAlgorithm,
        curve: ObjectIdentifier,
        point: Vec<u8>,
    },
    Ed25519 {
        point: Vec<u8>,
    },
    Rsa {
        modulus: Vec<u8>,
        exponent: Vec<u8>,
    },
}

impl PublicKeyMaterial {
    pub(super) fn algorithm(&self) -> Result<KeyAlgorithm, SignerError> {
        match self {
            PublicKeyMaterial::Ec { algorithm, .. } => Ok(*algorithm),
            PublicKeyMaterial::Ed25519 { .. } => Ok(KeyAlgorithm::Ed25519),
            PublicKeyMaterial::Rsa { modulus, .. } => {
                let bits = uint_bits(modulus);
                if (2048..=4096).contains(&bits) {
                    Ok(KeyAlgorithm::Rsa(bits))
                } else {
                    Err(SignerError::UnsupportedKeyType(format!(
                        "RSA key of {bits} bits (2048 to 4096 supported)"
                    )))
                }
            }
        }
    }

    /// The DER SubjectPublicKeyInfo (RFC 5480, RFC 8410, RFC 8017).
    pub(super) fn spki_der(&self) -> Result<Vec<u8>, SignerError> {
        let spki = match self {
            PublicKeyMaterial::Ec { curve, point, .. } => SubjectPublicKeyInfoOwned {
                algorithm: AlgorithmIdentifierOwned {
                    oid: oids::EC_PUBLIC_KEY,
                    parameters: Some(Any::encode_from(curve)?),
                },
                subject_public_key: BitString::from_bytes(point)?,
            },
            PublicKeyMaterial::Ed25519 { point } => SubjectPublicKeyInfoOwned {
                algorithm: AlgorithmIdentifierOwned {
                    oid: oids::ED25519,
                    parameters: None,
                },
                subject_public_key: BitString::from_bytes(point)?,
            },
            PublicKeyMaterial::Rsa { modulus, exponent } => {
                let rsa_key = rsa::pkcs1::RsaPublicKey {
                    modulus: UintRef::new(modulus)?,
                    public_exponent: UintRef::new(exponent)?,
                };
                SubjectPublicKeyInfoOwned {
                    algorithm: AlgorithmIdentifierOwned {
                        oid: oids::RSA_ENCRYPTION,
                        parameters: Some(Any::from(Null)),
                    },
                    subject_public_key: BitString::from_bytes(&rsa_key.to_der()?)?,
                }
            }
        };
        Ok(spki.to_der()?)
    }
}

/// Number of significant bits of a big-endian unsigned integer.
pub(super) fn uint_bits(bytes: &[u8]) -> u32 {
    let trimmed: &[u8] = match bytes.iter().position(|b| *b != 0) {
        Some(i) => &bytes[i..],
        None => return 0,
    };
    let len = u32::try_from(trimmed.len()).unwrap_or(u32::MAX / 8);
    len.saturating_mul(8)
        .saturating_sub(trimmed.first().map_or(0, |b| b.leading_zeros()))
}

/// CKA_EC_POINT is a DER OCTET STRING around the point (PKCS#11 2.40); a few tokens
/// return the bare point. Accept both, checking the length.
pub(super) fn unwrap_ec_point(raw: &[u8], expected_len: usize) -> Result<Vec<u8>, SignerError> {
    if let Ok(os) = OctetString::from_der(raw) {
        if os.as_bytes().len() == expected_len {
            return Ok(os.as_bytes().to_vec());
        }
    }
    if raw.len() == expected_len {
        return Ok(raw.to_vec());
    }
    Err(SignerError::UnsupportedKeyType(format!(
        "CKA_EC_POINT of {} bytes, expected a {expected_len}-byte point",
        raw.len()
    )))
}

/// CKA_EC_PARAMS of an Edwards key: the OID 1.3.101.112 or the PrintableString
/// "edwards25519" (both allowed by PKCS#11 3.0).
pub(super) fn is_ed25519_params(params: &[u8]) -> bool {
    if let Ok(oid) = ObjectIdentifier::from_der(params) {
        return oid == oids::ED25519;
    }
    PrintableStringRef::from_der(params).is_ok_and(|s| s.as_str() == "edwards25519")
}

pub(super) fn read_public_material(
    session: &Session,
    public: ObjectHandle,
    key_type: KeyType,
) -> Result<PublicKeyMaterial, SignerError> {
    let missing =
        |what: &str| SignerError::UnsupportedKeyType(format!("the public key has no {what}"));
    if key_type == KeyType::EC {
        let params = read_bytes(session, public, AttributeType::EcParams)?
            .ok_or_else(|| missing("CKA_EC_PARAMS"))?;
        let curve = ObjectIdentifier::from_der(&params).map_err(|_| {
            SignerError::UnsupportedKeyType("EC key with explicit or unknown curve".into())
        })?;
        let (algorithm, point_len) = if curve == oids::SECP256R1 {
            (KeyAlgorithm::EcdsaP256, 65)
        } else if curve == oids::SECP384R1 {
            (KeyAlgorithm::EcdsaP384, 97)
        } else {
            return Err(SignerError::UnsupportedKeyType(format!("EC curve {curve}")));
        };
        let point = read_bytes(session, public, AttributeType::EcPoint)?
            .ok_or_else(|| missing("CKA_EC_POINT"))?;
        Ok(PublicKeyMaterial::Ec {
            algorithm,
            curve,
            point: unwrap_ec_point(&point, point_len)?,
        })
    } else if key_type == KeyType::EC_EDWARDS {
        let params = read_bytes(session, public, AttributeType::EcParams)?
            .ok_or_else(|| missing("CKA_EC_PARAMS"))?;
        if !is_ed25519_params(&params) {
            return Err(SignerError::UnsupportedKeyType(
                "Edwards curve other than Ed25519".into(),
            ));
        }
        let point = read_bytes(session, public, AttributeType::EcPoint)?
            .ok_or_else(|| missing("CKA_EC_POINT"))?;
        Ok(PublicKeyMaterial::Ed25519 {
            point: unwrap_ec_point(&point, 32)?,
        })
    } else if key_type == KeyType::RSA {
        let modulus = read_bytes(session, public, AttributeType::Modulus)?
            .ok_or_else(|| missing("CKA_MODULUS"))?;
        let exponent = read_bytes(session, public, AttributeType::PublicExponent)?
            .ok_or_else(|| missing("CKA_PUBLIC_EXPONENT"))?;
        Ok(PublicKeyMaterial::Rsa { modulus, exponent })
    } else {
        Err(SignerError::UnsupportedKeyType(format!("{key_type}")))
    }
}

/// DER of a named-curve OID, as CKA_EC_PARAMS wants it.
pub(super) fn ec_params(curve: ObjectIdentifier) -> Result<Vec<u8>, SignerError> {
    Ok(curve.to_der()?)
}
