//! Key management on the token: finding, listing and generating key pairs, storing and
//! finding their certificates, and initialising a simulator token.

use super::*;

/// Finds the private key labelled `label` (and with CKA_ID `id`, when given).
pub(crate) fn find_private_key(
    session: &Session,
    label: &str,
    id: Option<&[u8]>,
) -> Result<ObjectHandle, SignerError> {
    let mut template = vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    if let Some(id) = id.filter(|id| !id.is_empty()) {
        template.push(Attribute::Id(id.to_vec()));
    }
    let handles = session.find_objects(&template)?;
    match handles.as_slice() {
        [] => Err(SignerError::KeyNotFound(label.to_owned())),
        [one] => Ok(*one),
        _ => Err(SignerError::AmbiguousLabel(label.to_owned())),
    }
}

/// Reads one variable-length attribute; `None` when the object does not have it.
pub(in crate::signer) fn read_bytes(
    session: &Session,
    object: ObjectHandle,
    ty: AttributeType,
) -> Result<Option<Vec<u8>>, SignerError> {
    for attr in session.get_attributes(object, &[ty])? {
        match attr {
            Attribute::Label(v)
            | Attribute::Id(v)
            | Attribute::EcParams(v)
            | Attribute::EcPoint(v)
            | Attribute::Modulus(v)
            | Attribute::PublicExponent(v)
            | Attribute::Value(v)
            | Attribute::Application(v) => return Ok(Some(v)),
            _ => {}
        }
    }
    Ok(None)
}

/// The data objects that record `label`'s purpose and lifecycle (see `records`).
pub(in crate::signer) fn find_purpose_objects(
    session: &Session,
    label: &str,
) -> Result<Vec<ObjectHandle>, SignerError> {
    Ok(session.find_objects(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Application(APPLICATION.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ])?)
}

/// Reads everything [`KeyInfo`] holds about the private key `private`; a damaged
/// record is an error ([`SignerError::DamagedRecord`]).
pub(super) fn read_key_info(
    session: &Session,
    private: ObjectHandle,
    label: &str,
) -> Result<KeyInfo, SignerError> {
    let mut key = read_key_pair(session, private, label)?;
    if let Some(record) = super::record::read_record(session, label)? {
        key.purpose = record.purpose;
        key.activated_at = record.activated_at;
        key.retired_at = record.retired_at;
    }
    Ok(key)
}

/// What the key pair of the private key `private` says of itself, without its record:
/// purpose and lifecycle are `None`.
pub(in crate::signer) fn read_key_pair(
    session: &Session,
    private: ObjectHandle,
    label: &str,
) -> Result<KeyInfo, SignerError> {
    let id = read_bytes(session, private, AttributeType::Id)?.unwrap_or_default();
    let key_type = read_key_type(session, private)?;
    let mut publics = Vec::new();
    if !id.is_empty() {
        publics = session.find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Id(id.clone()),
        ])?;
    }
    if publics.is_empty() {
        publics = session.find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])?;
    }
    let public = *publics
        .first()
        .ok_or_else(|| SignerError::PublicKeyMissing(label.to_owned()))?;
    let material = read_public_material(session, public, key_type)?;
    Ok(KeyInfo {
        label: label.to_owned(),
        id,
        algorithm: material.algorithm()?,
        purpose: None,
        activated_at: None,
        retired_at: None,
        public_key_der: material.spki_der()?,
    })
}

/// Certificates stored beside `key`: same CKA_ID, or same label when the key has no id.
pub(in crate::signer) fn find_certificate_objects(
    session: &Session,
    key: &KeyInfo,
) -> Result<Vec<ObjectHandle>, SignerError> {
    let selector = if key.id.is_empty() {
        Attribute::Label(key.label.as_bytes().to_vec())
    } else {
        Attribute::Id(key.id.clone())
    };
    Ok(session.find_objects(&[
        Attribute::Class(ObjectClass::CERTIFICATE),
        Attribute::CertificateType(CertificateType::X_509),
        selector,
    ])?)
}

/// Initialises a token for the simulator: the first slot with an uninitialised token
/// gets `label` (C_InitToken with the SO PIN), then the SO logs in and sets the user
/// PIN (C_InitPIN). PINs travel only through PKCS#11, never on a command line.
///
/// Returns [`SignerError::TokenLabelExists`] if a token with that label is already
/// there, and [`SignerError::NoFreeSlot`] if no slot is free (SoftHSM always offers one).
pub fn init_token(
    module: &Path,
    label: &str,
    so_pin: &SecretString,
    user_pin: &SecretString,
) -> Result<(), SignerError> {
    if label.is_empty() || label.len() > 32 {
        return Err(SignerError::InvalidArgument(
            "a token label is 1 to 32 bytes long",
        ));
    }
    let _serialised = lock(&INIT_TOKEN_LOCK);
    let live = load_module(module)?.read();
    let ctx = live.ctx();
    let mut free = None;
    for slot in ctx.get_slots_with_token()? {
        let info = ctx.get_token_info(slot)?;
        if info.token_initialized() {
            if info.label().trim_end() == label {
                return Err(SignerError::TokenLabelExists(label.to_owned()));
            }
        } else if free.is_none() {
            free = Some(slot);
        }
    }
    let free = free.ok_or(SignerError::NoFreeSlot)?;
    ctx.init_token(free, so_pin, label)?;
    // The slot id may change once the token is initialised: look it up again by label.
    let slot = find_slot(ctx, Wanted::Label(label))?;
    // Closed when it goes out of scope, before the guard is released.
    let session = ctx.open_rw_session(slot)?;
    session.login(UserType::So, Some(so_pin))?;
    session.init_pin(user_pin)?;
    session.logout()?;
    tracing::info!(label, "initialised a token");
    Ok(())
}

impl Hsm {
    /// Finds the key pair labelled `label`.
    pub fn find_key(&self, label: &str) -> Result<KeyInfo, SignerError> {
        self.with_session(|s| {
            let private = find_private_key(s, label, None)?;
            read_key_info(s, private, label)
        })
    }

    /// Lists the key pairs on the token whose type this module supports, by label. A
    /// damaged record of one of them is an error ([`SignerError::DamagedRecord`]);
    /// [`Hsm::key_inventory`] lists damaged records beside the keys instead.
    pub fn list_keys(&self) -> Result<Vec<KeyInfo>, SignerError> {
        self.with_session(|s| {
            let mut keys = Vec::new();
            for private in s.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])? {
                let label = read_bytes(s, private, AttributeType::Label)?.unwrap_or_default();
                let label = String::from_utf8_lossy(&label).into_owned();
                match read_key_info(s, private, &label) {
                    Ok(info) => keys.push(info),
                    Err(SignerError::UnsupportedKeyType(why)) => {
                        tracing::warn!(label, reason = %why, "skipping a key of unsupported type");
                    }
                    Err(e) => return Err(e),
                }
            }
            keys.sort_by(|a, b| a.label.cmp(&b.label));
            Ok(keys)
        })
    }

    /// Generates a key pair inside the HSM: the private key is a sensitive,
    /// non-extractable, sign-only token object; both halves get `label` and a random
    /// 16-byte CKA_ID. The purpose is recorded on the token beside the key.
    ///
    /// Refuses a label that is already used by a key ([`SignerError::LabelExists`]).
    pub fn generate_key(
        &self,
        label: &str,
        algorithm: KeyAlgorithm,
        purpose: KeyPurpose,
    ) -> Result<KeyInfo, SignerError> {
        if label.is_empty() {
            return Err(SignerError::InvalidArgument(
                "a key label must not be empty",
            ));
        }
        let (mechanism, algorithm_attrs) = match algorithm {
            KeyAlgorithm::EcdsaP256 => (
                Mechanism::EccKeyPairGen,
                vec![Attribute::EcParams(ec_params(oids::SECP256R1)?)],
            ),
            KeyAlgorithm::EcdsaP384 => (
                Mechanism::EccKeyPairGen,
                vec![Attribute::EcParams(ec_params(oids::SECP384R1)?)],
            ),
            KeyAlgorithm::Ed25519 => (
                Mechanism::EccEdwardsKeyPairGen,
                vec![Attribute::EcParams(ec_params(oids::ED25519)?)],
            ),
            KeyAlgorithm::Rsa(bits) => {
                if !(2048..=4096).contains(&bits) {
                    return Err(SignerError::UnsupportedKeyType(format!(
                        "RSA key of {bits} bits (2048 to 4096 supported)"
                    )));
                }
                let bits = usize::try_from(bits)
                    .ok()
                    .and_then(|b| Ulong::try_from(b).ok())
                    .ok_or(SignerError::InvalidArgument("RSA key size out of range"))?;
                (
                    Mechanism::RsaPkcsKeyPairGen,
                    vec![
                        Attribute::ModulusBits(bits),
                        Attribute::PublicExponent(RSA_PUBLIC_EXPONENT.to_vec()),
                    ],
                )
            }
        };
        let info = self.with_session(|s| {
            let label_attr = Attribute::Label(label.as_bytes().to_vec());
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                if !s
                    .find_objects(&[Attribute::Class(class), label_attr.clone()])?
                    .is_empty()
                {
                    return Err(SignerError::LabelExists(label.to_owned()));
                }
            }
            super::record::ensure_label_reusable(s, label)?;
            let id = s.generate_random_vec(KEY_ID_LEN)?;
            let mut public_template = vec![
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Verify(true),
                Attribute::Encrypt(false),
                Attribute::Wrap(false),
                label_attr.clone(),
                Attribute::Id(id.clone()),
            ];
            public_template.extend(algorithm_attrs);
            let private_template = [
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::Decrypt(false),
                Attribute::Unwrap(false),
                Attribute::Derive(false),
                label_attr,
                Attribute::Id(id.clone()),
            ];
            let (_public, private) =
                s.generate_key_pair(&mechanism, &public_template, &private_template)?;
            super::record::create_record(s, label, &id, purpose)?;
            read_key_info(s, private, label)
        })?;
        tracing::info!(label, %algorithm, %purpose, "generated a key pair in the HSM");
        Ok(info)
    }

    /// Stores `cert_der` (an X.509 certificate of `key`) on the token as a CKO_CERTIFICATE
    /// with the key's CKA_ID and CKA_LABEL, replacing any certificate with that CKA_ID.
    ///
    /// Refuses a certificate whose public key is not `key`'s
    /// ([`SignerError::CertificateMismatch`]).
    pub fn store_certificate(&self, key: &KeyInfo, cert_der: &[u8]) -> Result<(), SignerError> {
        let cert = Certificate::from_der(cert_der)?;
        if !key.matches_certificate(&cert) {
            return Err(SignerError::CertificateMismatch(key.label.clone()));
        }
        let tbs = &cert.tbs_certificate;
        let subject = tbs.subject.to_der()?;
        let issuer = tbs.issuer.to_der()?;
        let serial = tbs.serial_number.to_der()?;
        self.with_session(|s| {
            let old = find_certificate_objects(s, key)?;
            s.create_object(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(CertificateType::X_509),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Label(key.label.as_bytes().to_vec()),
                Attribute::Id(key.id.clone()),
                Attribute::Subject(subject),
                Attribute::Issuer(issuer),
                Attribute::SerialNumber(serial),
                Attribute::Value(cert_der.to_vec()),
            ])?;
            for object in old {
                s.destroy_object(object)?;
            }
            Ok(())
        })?;
        tracing::info!(label = %key.label, "stored the key's certificate on the token");
        Ok(())
    }

    /// The DER certificate stored beside `key` (same CKA_ID), if any.
    pub fn find_certificate(&self, key: &KeyInfo) -> Result<Option<Vec<u8>>, SignerError> {
        self.with_session(|s| {
            for object in find_certificate_objects(s, key)? {
                if let Some(value) = read_bytes(s, object, AttributeType::Value)? {
                    return Ok(Some(value));
                }
            }
            Ok(None)
        })
    }
}
