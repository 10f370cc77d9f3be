//! The PKCS#11 backend: loading the module, finding a token, logging in, and managing
//! keys and certificates on the token.
//!
//! Parts: `module.rs` (loading the module and re-initialising it), `session.rs` (the slot,
//! sessions and login), `public_key.rs` (public keys and their SubjectPublicKeyInfo),
//! `keys.rs` (key management and certificates), `record.rs` (the key records' format on
//! the token, which key generation writes); here, the token selector, [`KeyInfo`] and
//! [`Hsm`] itself.
//!
//! Facts this code relies on (see `shared/FIELD-NOTES.md`):
//! - `C_Initialize` happens once per process and module; a second one returns
//!   `CKR_CRYPTOKI_ALREADY_INITIALIZED`, which is tolerated. The context is cached here
//!   (`Module`), and re-initialised (C_Finalize, C_Initialize) only by
//!   `Module::reset`, when reopening a session says the token is gone: SoftHSM (and
//!   some network HSM clients) never rediscover a token that vanished until then.
//!   Every PKCS#11 call runs under a shared guard on the module, a reset under the
//!   exclusive one; sessions carry the epoch they were opened in (`TokenSession`).
//! - Login is per token per process and is lost when the token's last session closes,
//!   so [`Hsm`] keeps one session (the "anchor") open for its whole life.
//! - A session must never be used from two threads at once: the anchor sits behind a
//!   mutex, and the [`SigningPool`](super::SigningPool) gives each worker its own session.
//! - Tokens are found by label or serial number, never by slot number (SoftHSM changes
//!   the slot id when a token is initialised).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use const_oid::ObjectIdentifier;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CryptokiError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::Ulong;
use der::asn1::{BitString, Null, OctetString, PrintableStringRef, UintRef};
use der::{Any, Decode, Encode};
use secrecy::SecretString;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;

mod keys;
mod module;
mod public_key;
mod record;
mod session;

pub use self::keys::*;
pub(crate) use self::module::*;
use self::public_key::*;
pub use self::record::*;
pub(crate) use self::session::*;

use super::signing::sign_message;
use super::soft_verify::SoftVerifier;
use super::{oids, KeyAlgorithm, KeyPurpose, SignerError};

/// The CKA_APPLICATION of the data objects that record a key's purpose.
pub(super) const APPLICATION: &[u8] = b"auditstamp";
/// Length of the random CKA_ID given to both halves of a generated key pair.
const KEY_ID_LEN: u32 = 16;
/// RSA public exponent 65537, big-endian.
const RSA_PUBLIC_EXPONENT: [u8; 3] = [0x01, 0x00, 0x01];

/// Which PKCS#11 module and which token on it to use.
///
/// Exactly one of `token_label` and `token_serial` must be set: tokens are found by
/// label or serial number, never by slot number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSelector {
    /// Path of the PKCS#11 module (shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token's label (CK_TOKEN_INFO.label, without its blank padding).
    pub token_label: Option<String>,
    /// The token's serial number (CK_TOKEN_INFO.serialNumber, without its blank padding).
    pub token_serial: Option<String>,
}

impl TokenSelector {
    /// A selector for the token labelled `label` on `module`.
    #[cfg(test)]
    pub(crate) fn by_label(module: impl Into<PathBuf>, label: impl Into<String>) -> Self {
        TokenSelector {
            module: module.into(),
            token_label: Some(label.into()),
            token_serial: None,
        }
    }

    /// A selector for the token with serial number `serial` on `module`.
    #[cfg(test)]
    pub(crate) fn by_serial(module: impl Into<PathBuf>, serial: impl Into<String>) -> Self {
        TokenSelector {
            module: module.into(),
            token_label: None,
            token_serial: Some(serial.into()),
        }
    }

    fn wanted(&self) -> Result<Wanted<'_>, SignerError> {
        match (&self.token_label, &self.token_serial) {
            (Some(label), None) => Ok(Wanted::Label(label)),
            (None, Some(serial)) => Ok(Wanted::Serial(serial)),
            _ => Err(SignerError::InvalidArgument(
                "a token selector names exactly one of a token label or a token serial",
            )),
        }
    }
}

/// The token a selector asks for.
#[derive(Clone, Copy)]
enum Wanted<'a> {
    Label(&'a str),
    Serial(&'a str),
}

impl fmt::Display for Wanted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wanted::Label(l) => write!(f, "label {l:?}"),
            Wanted::Serial(s) => write!(f, "serial {s:?}"),
        }
    }
}

/// A key pair on the token, as read back from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// CKA_LABEL of both halves.
    pub label: String,
    /// CKA_ID of both halves (16 random bytes for keys this module generated).
    pub id: Vec<u8>,
    /// Key type and size.
    pub algorithm: KeyAlgorithm,
    /// What the key is for, if it was recorded on the token.
    pub purpose: Option<KeyPurpose>,
    /// When the key was first made the active signing key (Unix seconds), if ever.
    pub activated_at: Option<u64>,
    /// When the key was retired (Unix seconds): it can no longer be activated.
    pub retired_at: Option<u64>,
    /// DER SubjectPublicKeyInfo built from the public key object's attributes.
    pub public_key_der: Vec<u8>,
}

impl KeyInfo {
    /// The signature scheme this key signs with.
    pub fn signature_algorithm(&self) -> super::SignatureAlgorithm {
        super::SignatureAlgorithm::for_key(self.algorithm)
    }

    /// Whether `spki` is this key's public key (same algorithm, same key bits, and for
    /// EC keys the same curve).
    pub fn matches_spki(&self, spki: &SubjectPublicKeyInfoOwned) -> bool {
        let Ok(mine) = SubjectPublicKeyInfoOwned::from_der(&self.public_key_der) else {
            return false;
        };
        if mine.algorithm.oid != spki.algorithm.oid
            || mine.subject_public_key != spki.subject_public_key
        {
            return false;
        }
        if mine.algorithm.oid == oids::EC_PUBLIC_KEY {
            return mine.algorithm.parameters == spki.algorithm.parameters;
        }
        true
    }

    /// Whether `cert` certifies this key.
    pub fn matches_certificate(&self, cert: &Certificate) -> bool {
        self.matches_spki(&cert.tbs_certificate.subject_public_key_info)
    }
}

/// An open, logged-in token: key management, certificates, and low-rate signing.
///
/// Cheap to clone (an `Arc` inside) and `Send + Sync`. It keeps one read-write session
/// open for its whole life (the login anchor: the token stays logged in while any
/// session is open) and serialises its own operations on that session. For high-rate
/// signing use a [`SigningPool`](super::SigningPool), which opens its own sessions.
///
/// If the token goes away, the anchor is reopened at the next call; when reopening says
/// the token is gone, the PKCS#11 library is re-initialised (`Module::reset`), so the
/// token is found again once it is back, without a restart.
#[derive(Clone)]
pub struct Hsm {
    inner: Arc<HsmInner>,
}

struct HsmInner {
    module: &'static Module,
    selector: TokenSelector,
    credentials: Arc<Credentials>,
    /// The anchor session; `None` after a device or session error until the next call
    /// reopens it. Replaced as well when the library was re-initialised since it was
    /// opened (its epoch is old).
    anchor: Mutex<Option<TokenSession>>,
}

impl fmt::Debug for Hsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hsm")
            .field("selector", &self.inner.selector)
            .finish_non_exhaustive()
    }
}

impl Hsm {
    /// Loads the module (once per process), finds the token by label or serial, opens
    /// the anchor session and logs in as the user.
    ///
    /// Errors: [`SignerError::ModuleLoad`], [`SignerError::TokenNotFound`] (listing the
    /// tokens present), [`SignerError::WrongPin`], [`SignerError::PinLocked`].
    pub fn open(selector: &TokenSelector, pin: SecretString) -> Result<Hsm, SignerError> {
        selector.wanted()?;
        let module = load_module(&selector.module)?;
        let credentials = Arc::new(Credentials::new(pin));
        let anchor = {
            let live = module.read();
            let session = open_session(&live, selector, &credentials, true)?;
            live.adopt(session)
        };
        tracing::info!(
            token = %selector.wanted()?,
            module = %selector.module.display(),
            "logged in to the HSM token"
        );
        Ok(Hsm {
            inner: Arc::new(HsmInner {
                module,
                selector: selector.clone(),
                credentials,
                anchor: Mutex::new(Some(anchor)),
            }),
        })
    }

    /// The selector this token was opened with.
    pub fn selector(&self) -> &TokenSelector {
        &self.inner.selector
    }

    pub(crate) fn module(&self) -> &'static Module {
        self.inner.module
    }

    pub(crate) fn credentials(&self) -> &Arc<Credentials> {
        &self.inner.credentials
    }

    /// Runs `f` on the anchor session under a shared guard: reopens the session first if
    /// an earlier device or session error dropped it or the library was re-initialised
    /// since it was opened (re-initialising the library when the token is gone), logs in
    /// again if the token lost its login, and drops the session when `f` reports a
    /// device or session error. `f` must not call back into this `Hsm`.
    pub(super) fn with_session<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, SignerError>,
    ) -> Result<T, SignerError> {
        let inner = &*self.inner;
        let mut anchor = lock(&inner.anchor);
        let mut f = Some(f);
        // A session found stale is replaced once; a second stale one (another reset in
        // between) is reported as unavailable rather than looping.
        for _ in 0..2 {
            if anchor.is_none() {
                tracing::info!("reopening the HSM anchor session");
                let session = inner.module.with_recovery(|live| {
                    open_session(live, &inner.selector, &inner.credentials, true)
                        .map(|s| live.adopt(s))
                })?;
                *anchor = Some(session);
            }
            let outcome = {
                let live = inner.module.read();
                match anchor.as_ref().and_then(|s| s.get(&live)) {
                    Some(session) => f.take().map(|f| {
                        inner
                            .credentials
                            .login_if_needed(session)
                            .and_then(|()| f(session))
                    }),
                    None => None,
                }
            };
            // The guard is released: replacing the session may drop the old one.
            match outcome {
                Some(result) => {
                    if let Err(e @ SignerError::HsmUnavailable { .. }) = &result {
                        tracing::warn!(error = %e, "dropping the HSM anchor session");
                        *anchor = None;
                    }
                    return result;
                }
                None => {
                    tracing::info!(
                        "the PKCS#11 library was re-initialised; replacing the HSM anchor session"
                    );
                    *anchor = None;
                }
            }
        }
        Err(SignerError::HsmUnavailable { last: None })
    }

    /// Logs the token out (every session of this process), as a device reset would.
    #[cfg(test)]
    pub(crate) fn logout_for_test(&self) -> Result<(), SignerError> {
        let anchor = lock(&self.inner.anchor);
        let live = self.inner.module.read();
        match anchor.as_ref().and_then(|s| s.get(&live)) {
            Some(session) => Ok(session.logout()?),
            None => Ok(()),
        }
    }

    /// The epoch of the anchor session, if one is open.
    #[cfg(test)]
    pub(crate) fn anchor_epoch_for_test(&self) -> Option<u64> {
        lock(&self.inner.anchor).as_ref().map(TokenSession::epoch)
    }

    /// The handle number of the anchor session, if one is open and current.
    #[cfg(test)]
    pub(crate) fn anchor_handle_for_test(&self, live: &Live) -> Option<std::ffi::c_ulong> {
        let anchor = lock(&self.inner.anchor);
        anchor
            .as_ref()
            .and_then(|s| s.get(live))
            .map(Session::handle)
    }

    /// Signs `message` with `key` on the anchor session, blocking. Hashing, encoding and
    /// software verification are the same as the [`SigningPool`](super::SigningPool)'s
    /// (verification is always on here). Meant for low rates (certificates, setup).
    pub fn sign(&self, key: &KeyInfo, message: &[u8]) -> Result<Vec<u8>, SignerError> {
        let verifier = SoftVerifier::from_spki_der(&key.public_key_der)?;
        self.with_session(|s| {
            let private = find_private_key(s, &key.label, Some(&key.id))?;
            sign_message(s, private, key.algorithm, Some(&verifier), message)
        })
    }

    /// The token's own signing limit: `sessions` threads, each on a session of its own,
    /// sign `message` with `key` in a loop for `duration`, with nothing in between (no
    /// queue, no software verification). Returns the signatures made. This is what
    /// `bench hsm` compares the service against; the service signs through a
    /// [`SigningPool`](super::SigningPool) instead.
    pub fn sign_flat_out(
        &self,
        key: &KeyInfo,
        sessions: usize,
        message: &[u8],
        duration: Duration,
    ) -> Result<u64, SignerError> {
        let deadline = Instant::now() + duration;
        let inner = &*self.inner;
        std::thread::scope(|scope| {
            let threads: Vec<_> = (0..sessions.max(1))
                .map(|_| {
                    scope.spawn(|| -> Result<u64, SignerError> {
                        let live = inner.module.read();
                        let session =
                            open_session(&live, &inner.selector, &inner.credentials, false)?;
                        let private = find_private_key(&session, &key.label, Some(&key.id))?;
                        let mut count = 0u64;
                        while Instant::now() < deadline {
                            sign_message(&session, private, key.algorithm, None, message)?;
                            count += 1;
                        }
                        drop(session);
                        drop(live);
                        Ok(count)
                    })
                })
                .collect();
            let mut total = 0;
            for t in threads {
                total += t
                    .join()
                    .map_err(|_| SignerError::InvalidArgument("a signing thread panicked"))??;
            }
            Ok(total)
        })
    }

    /// `len` random bytes from the token's random number generator.
    pub fn generate_random(&self, len: usize) -> Result<Vec<u8>, SignerError> {
        let len = u32::try_from(len)
            .map_err(|_| SignerError::InvalidArgument("too many random bytes asked for"))?;
        self.with_session(|s| Ok(s.generate_random_vec(len)?))
    }
}

#[cfg(test)]
mod tests;
