//! The signer module's one error type.

use std::fmt;
use std::path::PathBuf;

use cryptoki::context::Function;
use cryptoki::error::{Error as CryptokiError, RvError};

/// A PKCS#11 call that returned an error: the C function and its return value.
///
/// Displays as `C_Sign: CKR_DEVICE_ERROR`.
#[derive(Clone, Copy, Debug)]
pub struct Pkcs11Failure {
    /// The PKCS#11 function that failed.
    pub function: Function,
    /// The `CK_RV` it returned.
    pub rv: RvError,
}

impl Pkcs11Failure {
    /// The C name of the function, e.g. `C_Sign`.
    pub fn function_name(&self) -> String {
        format!("C_{:?}", self.function)
    }

    /// The return value's `CKR_` name, e.g. `CKR_PIN_INCORRECT`.
    pub fn rv_name(&self) -> String {
        rv_name(self.rv)
    }

    /// Whether this return value means the device or the session is gone (the caller
    /// should drop the session, reopen one and look its keys up again).
    pub fn is_device_or_session_error(&self) -> bool {
        matches!(
            self.rv,
            RvError::DeviceError
                | RvError::DeviceRemoved
                | RvError::DeviceMemory
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid
                | RvError::GeneralError
                | RvError::CryptokiNotInitialized
                | RvError::SlotIdInvalid
        )
    }
}

impl fmt::Display for Pkcs11Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.function_name(), self.rv_name())
    }
}

/// `PinIncorrect` → `CKR_PIN_INCORRECT`.
fn rv_name(rv: RvError) -> String {
    match rv {
        RvError::VendorDefined(code) => format!("CKR_VENDOR_DEFINED(0x{code:08x})"),
        RvError::UnknownErrorCode(code) => format!("CKR_UNKNOWN(0x{code:08x})"),
        other => {
            let camel = format!("{other:?}");
            let mut out = String::from("CKR");
            for c in camel.chars() {
                if c.is_ascii_uppercase() {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
            }
            out
        }
    }
}

/// Everything that can go wrong in the signer module.
///
/// No variant ever carries a PIN.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// The PKCS#11 module could not be loaded or initialised.
    #[error("cannot load the PKCS#11 module {}: {source}", path.display())]
    ModuleLoad {
        /// The module path that was given.
        path: PathBuf,
        /// What the loader or C_Initialize said.
        #[source]
        source: CryptokiError,
    },
    /// A token selector must name exactly one of a token label or a serial number; or
    /// another argument was out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// No token matched the selector.
    #[error("no token with {wanted} found; tokens present: [{}]", seen.join(", "))]
    TokenNotFound {
        /// What was looked for, e.g. `label "tsa-1"`.
        wanted: String,
        /// The labels (and serials) of the tokens that were present.
        seen: Vec<String>,
    },
    /// A token with this label already exists (initialising the simulator twice).
    #[error("a token labelled {0:?} already exists")]
    TokenLabelExists(String),
    /// There is no slot with an uninitialised token to initialise.
    #[error("no slot with an uninitialised token is free")]
    NoFreeSlot,
    /// CKR_PIN_INCORRECT: the PIN was refused.
    #[error("the PIN was refused by the token")]
    WrongPin,
    /// CKR_PIN_LOCKED: too many wrong PINs; the security officer must unlock it.
    #[error("the user PIN is locked on the token")]
    PinLocked,
    /// No private key with this label is on the token.
    #[error("no key labelled {0:?} on the token")]
    KeyNotFound(String),
    /// The private key exists but its public half (same CKA_ID) is missing.
    #[error("the public half of key {0:?} is missing on the token")]
    PublicKeyMissing(String),
    /// A key with this label already exists; labels are unique.
    #[error("a key labelled {0:?} already exists on the token")]
    LabelExists(String),
    /// The label belonged to a destroyed key that once signed; its record keeps that key's
    /// certificate published, so the label is not reused.
    #[error("label {0:?} belonged to a key that signed tokens; choose another label")]
    LabelUsedBefore(String),
    /// A key record (or the active-key pointer) on the token cannot be read exactly:
    /// nothing is done with the key until it is repaired.
    #[error(
        "{0}; nothing is done with a key whose record cannot be read: restore the record \
         from a backup of the token (docs/operations.md: \"Damaged key records\")"
    )]
    DamagedRecord(super::records::RecordDamage),
    /// The key was retired and can no longer be activated.
    #[error("key {0:?} is retired and can no longer be activated")]
    KeyRetired(String),
    /// Several private keys carry this label; refuse to guess.
    #[error("more than one key is labelled {0:?} on the token")]
    AmbiguousLabel(String),
    /// The key type, curve or size is not one this appliance signs with.
    #[error("unsupported key type: {0}")]
    UnsupportedKeyType(String),
    /// Not one of the key algorithm names (`ecdsa-p256`, `ecdsa-p384`, `rsa-2048`,
    /// `rsa-3072`, `rsa-4096`, `ed25519`).
    #[error("unknown key algorithm {0:?} (expected one of ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096, ed25519)")]
    UnknownKeyAlgorithm(String),
    /// Not one of the key purpose names (`tsa`, `chain`, `dev-ca`).
    #[error("unknown key purpose {0:?} (expected tsa, chain or dev-ca)")]
    UnknownKeyPurpose(String),
    /// A PKCS#11 call failed (not a device or session failure).
    #[error("PKCS#11 error: {0}")]
    Pkcs11(Pkcs11Failure),
    /// The HSM cannot be reached now: device or session errors, or a pool worker that
    /// is reconnecting. Retrying later may succeed.
    #[error("HSM unavailable{}", match last { Some(f) => format!(" ({f})"), None => String::from(" (reconnecting)") })]
    HsmUnavailable {
        /// The PKCS#11 failure that made it unavailable, if one was seen.
        last: Option<Pkcs11Failure>,
    },
    /// The cryptoki wrapper failed outside a PKCS#11 call (a conversion, a missing symbol).
    #[error("PKCS#11 wrapper error: {0}")]
    Wrapper(#[source] CryptokiError),
    /// The HSM returned a signature that did not verify against the key's public half,
    /// twice in a row.
    #[error("the HSM's signature failed software verification")]
    SignatureVerification,
    /// A public key, certificate or signature could not be decoded or encoded.
    #[error("encoding error: {0}")]
    Encoding(#[from] der::Error),
    /// The certificate's public key is not the key it was to be stored beside.
    #[error("the certificate does not certify key {0:?}")]
    CertificateMismatch(String),
    /// A signing worker thread could not be started.
    #[error("cannot start a signing worker thread: {0}")]
    WorkerSpawn(#[source] std::io::Error),
    /// The signing pool has been stopped (dropped).
    #[error("the signing pool has stopped")]
    PoolStopped,
}

impl SignerError {
    /// Whether the error means "the HSM is not reachable now" (worth a retry later).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, SignerError::HsmUnavailable { .. })
    }
}

impl From<CryptokiError> for SignerError {
    fn from(e: CryptokiError) -> Self {
        match e {
            CryptokiError::Pkcs11(RvError::PinIncorrect, _) => SignerError::WrongPin,
            CryptokiError::Pkcs11(RvError::PinLocked, _) => SignerError::PinLocked,
            CryptokiError::Pkcs11(rv, function) => {
                let failure = Pkcs11Failure { function, rv };
                if failure.is_device_or_session_error() {
                    SignerError::HsmUnavailable {
                        last: Some(failure),
                    }
                } else {
                    SignerError::Pkcs11(failure)
                }
            }
            other => SignerError::Wrapper(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs11_failure_names_the_c_function_and_rv() {
        let e = SignerError::from(CryptokiError::Pkcs11(
            RvError::MechanismInvalid,
            Function::SignInit,
        ));
        assert_eq!(
            e.to_string(),
            "PKCS#11 error: C_SignInit: CKR_MECHANISM_INVALID"
        );
        let e = SignerError::from(CryptokiError::Pkcs11(RvError::DeviceError, Function::Sign));
        assert!(e.is_unavailable());
        assert_eq!(e.to_string(), "HSM unavailable (C_Sign: CKR_DEVICE_ERROR)");
        let e = SignerError::from(CryptokiError::Pkcs11(
            RvError::CryptokiAlreadyInitialized,
            Function::Initialize,
        ));
        assert!(e.to_string().contains("CKR_CRYPTOKI_ALREADY_INITIALIZED"));
        assert!(e.to_string().contains("C_Initialize"));
    }

    #[test]
    fn wrong_pin_message_is_fixed() {
        let e = SignerError::from(CryptokiError::Pkcs11(
            RvError::PinIncorrect,
            Function::Login,
        ));
        assert!(matches!(e, SignerError::WrongPin));
        assert_eq!(e.to_string(), "the PIN was refused by the token");
    }
}
