//! The PKCS#11 backend: loading the module, finding a token, logging in, and managing
//! keys and certificates on the token.
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
    pub fn by_label(module: impl Into<PathBuf>, label: impl Into<String>) -> Self {
        TokenSelector {
            module: module.into(),
            token_label: Some(label.into()),
            token_serial: None,
        }
    }

    /// A selector for the token with serial number `serial` on `module`.
    pub fn by_serial(module: impl Into<PathBuf>, serial: impl Into<String>) -> Self {
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

/// Process-wide PKCS#11 modules, one per module path (C_Initialize happens once, and again
/// only through [`Module::reset`]). Entries are leaked on purpose: a module lives as long
/// as the process, and sessions refer to it by a `&'static` reference.
static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, &'static Module>>> = OnceLock::new();
/// Serialises token initialisation: two callers must not pick the same free slot.
static INIT_TOKEN_LOCK: Mutex<()> = Mutex::new(());
/// At most one re-initialisation of a module per this interval, however many callers see
/// the token gone: a long outage must not spin on C_Finalize/C_Initialize.
const RESET_INTERVAL: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn initialize_args() -> CInitializeArgs {
    CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)
}

/// One loaded PKCS#11 module: its context, and the epoch (generation) of the library's
/// current initialisation.
///
/// Discipline: every PKCS#11 call made through this crate runs while holding a shared
/// guard ([`Module::read`], a [`Live`]); [`Module::reset`] takes the guard exclusively,
/// so C_Finalize never runs while another thread is inside a PKCS#11 call (PKCS#11
/// leaves that undefined). A thread never takes a second guard while it holds one (the
/// lock may prefer a waiting writer, which would deadlock); debug builds assert this.
pub(crate) struct Module {
    path: PathBuf,
    ctx: Pkcs11,
    /// How many times the library has been re-initialised. A session opened under epoch
    /// `e` is valid only while the epoch is still `e`.
    epoch: RwLock<u64>,
    /// The earliest time of the next re-initialisation (see [`RESET_INTERVAL`]).
    next_reset: Mutex<Option<Instant>>,
}

/// What [`Module::reset`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reset {
    /// This call finalised and initialised the library again.
    Done,
    /// Another caller did it already (the epoch is no longer the one seen).
    AlreadyDone,
    /// Too soon after the last attempt; nothing was done.
    Throttled,
}

#[cfg(debug_assertions)]
thread_local! {
    /// Whether this thread holds a [`Live`] guard (debug builds: nesting is a bug).
    static GUARD_HELD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Module {
    /// Takes the shared guard: PKCS#11 calls may be made while it is held, and the
    /// library is not re-initialised meanwhile. Cheap when uncontended (one atomic
    /// operation to take, one to release; no allocation, no system call).
    ///
    /// Never call this while the current thread holds a guard (nor drop a
    /// [`TokenSession`], which takes one).
    pub(crate) fn read(&'static self) -> Live {
        #[cfg(debug_assertions)]
        GUARD_HELD.with(|held| {
            assert!(
                !held.replace(true),
                "a PKCS#11 guard was taken twice on one thread"
            );
        });
        Live {
            module: self,
            epoch: self.epoch.read().unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// Whether `epoch` is the current epoch (takes and releases the shared guard).
    pub(crate) fn is_current(&'static self, epoch: u64) -> bool {
        self.read().epoch() == epoch
    }

    /// Re-initialises the library (C_Finalize, then C_Initialize) if its epoch is still
    /// `seen_epoch`, i.e. nobody reset it since the caller saw it fail; the epoch then
    /// moves on, and every session of older epochs is dead (see [`TokenSession`]).
    /// At most once per [`RESET_INTERVAL`]; blocks until PKCS#11 calls in flight have
    /// returned. Must not be called while the current thread holds a guard.
    pub(crate) fn reset(&'static self, seen_epoch: u64) -> Reset {
        if !self.is_current(seen_epoch) {
            return Reset::AlreadyDone;
        }
        {
            let mut next = lock(&self.next_reset);
            let now = Instant::now();
            if next.is_some_and(|at| now < at) {
                return Reset::Throttled;
            }
            *next = Some(now + RESET_INTERVAL);
        }
        #[cfg(debug_assertions)]
        GUARD_HELD.with(|held| {
            assert!(!held.get(), "PKCS#11 reset while holding a guard");
        });
        let mut epoch = self.epoch.write().unwrap_or_else(PoisonError::into_inner);
        if *epoch != seen_epoch {
            return Reset::AlreadyDone;
        }
        let module = self.path.display();
        tracing::warn!(%module, epoch = *epoch, "re-initialising the PKCS#11 library");
        match self.ctx.clone().finalize() {
            // NOT_INITIALIZED: the C_Initialize of the last reset failed.
            Ok(()) | Err(CryptokiError::Pkcs11(RvError::CryptokiNotInitialized, _)) => {}
            Err(e) => tracing::warn!(%module, error = %e, "C_Finalize failed"),
        }
        // Whatever C_Initialize says, C_Finalize has invalidated every session and handle:
        // the epoch moves on. A failed C_Initialize makes later calls fail with
        // CKR_CRYPTOKI_NOT_INITIALIZED, which leads to another reset after the interval.
        *epoch += 1;
        match self.ctx.initialize(initialize_args()) {
            Ok(()) | Err(CryptokiError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
                tracing::info!(%module, epoch = *epoch, "PKCS#11 library re-initialised");
            }
            Err(e) => {
                tracing::warn!(%module, epoch = *epoch, error = %e, "C_Initialize failed; will retry");
            }
        }
        Reset::Done
    }

    /// Runs `op` under a guard. If it fails in a way that says the token is gone (see
    /// [`needs_reinit`]), re-initialises the library ([`Module::reset`], throttled) and,
    /// if that happened (here or elsewhere), runs `op` once more under a fresh guard.
    /// For opening sessions; must not be called while the current thread holds a guard.
    pub(crate) fn with_recovery<T>(
        &'static self,
        mut op: impl FnMut(&Live) -> Result<T, SignerError>,
    ) -> Result<T, SignerError> {
        let (result, epoch) = {
            let live = self.read();
            (op(&live), live.epoch())
        };
        let error = match result {
            Err(e) if needs_reinit(&e) => e,
            other => return other,
        };
        match self.reset(epoch) {
            Reset::Throttled => Err(error),
            Reset::Done | Reset::AlreadyDone => {
                let live = self.read();
                op(&live)
            }
        }
    }
}

/// Whether a failure to open a session means the token (or the library's view of it) is
/// gone, so that only re-initialising the library can bring it back: the token is not
/// listed, or the library reports the device removed, broken or uninitialised. A refused
/// PIN never qualifies.
pub(crate) fn needs_reinit(error: &SignerError) -> bool {
    match error {
        SignerError::TokenNotFound { .. } => true,
        SignerError::HsmUnavailable { last: Some(f) } | SignerError::Pkcs11(f) => matches!(
            f.rv,
            RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::CryptokiNotInitialized
                | RvError::SlotIdInvalid
                | RvError::GeneralError
        ),
        _ => false,
    }
}

/// A shared guard on a [`Module`] (see [`Module::read`]): PKCS#11 calls may be made
/// while it is held.
pub(crate) struct Live {
    module: &'static Module,
    epoch: RwLockReadGuard<'static, u64>,
}

impl Live {
    /// The module's PKCS#11 context.
    pub(crate) fn ctx(&self) -> &Pkcs11 {
        &self.module.ctx
    }

    /// The library's current epoch (fixed while this guard is held).
    pub(crate) fn epoch(&self) -> u64 {
        *self.epoch
    }

    /// Tags `session`, opened under this guard, with the current epoch.
    pub(crate) fn adopt(&self, session: Session) -> TokenSession {
        TokenSession {
            session: Some(session),
            epoch: self.epoch(),
            module: self.module,
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        #[cfg(debug_assertions)]
        GUARD_HELD.with(|held| held.set(false));
    }
}

/// A session tagged with the epoch it was opened in.
///
/// Use it through [`TokenSession::get`] under a guard. Dropping it takes a guard itself
/// (so never drop one while holding a guard): a session of the current epoch is closed
/// (C_CloseSession); one of an older epoch is forgotten, never closed (see `Drop`).
pub(crate) struct TokenSession {
    /// Always `Some` until dropped.
    session: Option<Session>,
    epoch: u64,
    module: &'static Module,
}

impl TokenSession {
    /// The session, if it is still valid under `live` (same epoch); `None` once the
    /// library has been re-initialised since it was opened.
    pub(crate) fn get(&self, live: &Live) -> Option<&Session> {
        if self.epoch == live.epoch() {
            self.session.as_ref()
        } else {
            None
        }
    }

    /// The epoch this session was opened in.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl Drop for TokenSession {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let live = self.module.read();
        if live.epoch() == self.epoch {
            // Closes it (C_CloseSession) while the library cannot be re-initialised.
            drop(session);
        } else {
            // The library was finalised and initialised again since this session was
            // opened: C_Finalize already closed it, and its handle number may now belong
            // to a session opened after re-initialisation (SoftHSM numbers sessions from 1
            // again). Dropping it would call C_CloseSession with that number and could
            // close another thread's live session, so skip cryptoki's Drop. This leaks
            // only the small struct and one reference to the context.
            std::mem::forget(session);
        }
        drop(live);
    }
}

/// Loads `module` and calls C_Initialize once per process; later calls get the cached
/// module.
pub(crate) fn load_module(module: &Path) -> Result<&'static Module, SignerError> {
    let mut contexts = lock(CONTEXTS.get_or_init(Default::default));
    if let Some(loaded) = contexts.get(module) {
        return Ok(loaded);
    }
    let load_error = |source| SignerError::ModuleLoad {
        path: module.to_path_buf(),
        source,
    };
    let ctx = Pkcs11::new(module).map_err(load_error)?;
    match ctx.initialize(initialize_args()) {
        Ok(()) => {}
        Err(CryptokiError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
            tracing::debug!(module = %module.display(), "PKCS#11 module was already initialised");
        }
        Err(e) => return Err(load_error(e)),
    }
    tracing::info!(module = %module.display(), "PKCS#11 module loaded");
    let loaded: &'static Module = Box::leak(Box::new(Module {
        path: module.to_path_buf(),
        ctx,
        epoch: RwLock::new(0),
        next_reset: Mutex::new(None),
    }));
    contexts.insert(module.to_path_buf(), loaded);
    Ok(loaded)
}

/// Finds the slot holding the initialised token `wanted`.
fn find_slot(ctx: &Pkcs11, wanted: Wanted<'_>) -> Result<Slot, SignerError> {
    let mut seen = Vec::new();
    for slot in ctx.get_slots_with_token()? {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        if !info.token_initialized() {
            continue;
        }
        let label = info.label().trim_end();
        let serial = info.serial_number().trim_end();
        let hit = match wanted {
            Wanted::Label(l) => l == label,
            Wanted::Serial(s) => s == serial,
        };
        if hit {
            return Ok(slot);
        }
        seen.push(format!("{label:?} (serial {serial})"));
    }
    Err(SignerError::TokenNotFound {
        wanted: wanted.to_string(),
        seen,
    })
}

/// The user PIN, and whether the token has refused it.
///
/// Shared by an [`Hsm`] and the pools started from it: once the token refuses the PIN
/// (or reports it locked), nobody sends it again (a real HSM locks the PIN after a few
/// tries); every later login answers the same error at once.
pub(crate) struct Credentials {
    pin: SecretString,
    /// 0: not refused; [`REFUSED_WRONG`] or [`REFUSED_LOCKED`].
    refused: AtomicU8,
}

const REFUSED_WRONG: u8 = 1;
const REFUSED_LOCKED: u8 = 2;

impl Credentials {
    pub(crate) fn new(pin: SecretString) -> Self {
        Credentials {
            pin,
            refused: AtomicU8::new(0),
        }
    }

    /// The error the token gave for the PIN, if it refused it.
    pub(crate) fn refused(&self) -> Option<SignerError> {
        match self.refused.load(Ordering::Relaxed) {
            REFUSED_WRONG => Some(SignerError::WrongPin),
            REFUSED_LOCKED => Some(SignerError::PinLocked),
            _ => None,
        }
    }

    /// Logs the user in on `session` unless the token is already logged in for this
    /// process (CKR_USER_ALREADY_LOGGED_IN is success). Never sends a refused PIN again.
    fn login_if_needed(&self, session: &Session) -> Result<(), SignerError> {
        let state = session.get_session_info()?.session_state();
        if matches!(state, SessionState::RoUser | SessionState::RwUser) {
            return Ok(());
        }
        if let Some(refused) = self.refused() {
            return Err(refused);
        }
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(CryptokiError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(e) => {
                let e = SignerError::from(e);
                match e {
                    SignerError::WrongPin => self.refused.store(REFUSED_WRONG, Ordering::Relaxed),
                    SignerError::PinLocked => {
                        self.refused.store(REFUSED_LOCKED, Ordering::Relaxed);
                    }
                    _ => {}
                }
                Err(e)
            }
        }
    }
}

/// Opens a session on the selected token under `live` and makes sure the user is logged
/// in. The session is returned bare so that a caller can still use it (and drop it on an
/// error) under the same guard; [`Live::adopt`] it before letting the guard go.
pub(crate) fn open_session(
    live: &Live,
    selector: &TokenSelector,
    credentials: &Credentials,
    read_write: bool,
) -> Result<Session, SignerError> {
    let ctx = live.ctx();
    let slot = find_slot(ctx, selector.wanted()?)?;
    let session = if read_write {
        ctx.open_rw_session(slot)?
    } else {
        ctx.open_ro_session(slot)?
    };
    credentials.login_if_needed(&session)?;
    Ok(session)
}

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
pub(super) fn read_bytes(
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

fn read_key_type(session: &Session, object: ObjectHandle) -> Result<KeyType, SignerError> {
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
enum PublicKeyMaterial {
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
    fn algorithm(&self) -> Result<KeyAlgorithm, SignerError> {
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
    fn spki_der(&self) -> Result<Vec<u8>, SignerError> {
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
fn uint_bits(bytes: &[u8]) -> u32 {
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
fn unwrap_ec_point(raw: &[u8], expected_len: usize) -> Result<Vec<u8>, SignerError> {
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
fn is_ed25519_params(params: &[u8]) -> bool {
    if let Ok(oid) = ObjectIdentifier::from_der(params) {
        return oid == oids::ED25519;
    }
    PrintableStringRef::from_der(params).is_ok_and(|s| s.as_str() == "edwards25519")
}

fn read_public_material(
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

/// The data objects that record `label`'s purpose and lifecycle (see `records`).
pub(super) fn find_purpose_objects(
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
fn read_key_info(
    session: &Session,
    private: ObjectHandle,
    label: &str,
) -> Result<KeyInfo, SignerError> {
    let mut key = read_key_pair(session, private, label)?;
    if let Some(record) = super::records::read_record(session, label)? {
        key.purpose = record.purpose;
        key.activated_at = record.activated_at;
        key.retired_at = record.retired_at;
    }
    Ok(key)
}

/// What the key pair of the private key `private` says of itself, without its record:
/// purpose and lifecycle are `None`.
pub(super) fn read_key_pair(
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

/// DER of a named-curve OID, as CKA_EC_PARAMS wants it.
fn ec_params(curve: ObjectIdentifier) -> Result<Vec<u8>, SignerError> {
    Ok(curve.to_der()?)
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
            super::records::ensure_label_reusable(s, label)?;
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
            super::records::create_record(s, label, &id, purpose)?;
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

/// Certificates stored beside `key`: same CKA_ID, or same label when the key has no id.
pub(super) fn find_certificate_objects(
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::signer::testsupport;
    use crate::signer::SignatureAlgorithm;

    fn read_bool(hsm: &Hsm, label: &str, ty: AttributeType) -> bool {
        hsm.with_session(|s| {
            let private = find_private_key(s, label, None)?;
            for attr in s.get_attributes(private, &[ty])? {
                match attr {
                    Attribute::Sensitive(b)
                    | Attribute::Extractable(b)
                    | Attribute::Decrypt(b)
                    | Attribute::Unwrap(b)
                    | Attribute::Sign(b)
                    | Attribute::Derive(b)
                    | Attribute::Token(b)
                    | Attribute::Private(b)
                    | Attribute::NeverExtractable(b) => return Ok(b),
                    _ => {}
                }
            }
            panic!("attribute {ty:?} missing");
        })
        .unwrap()
    }

    #[test]
    fn generate_each_algorithm_sign_and_verify() {
        let token = testsupport::new_token();
        let hsm = token.open();
        let cases = [
            (KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa),
            (KeyAlgorithm::EcdsaP384, KeyPurpose::Tsa),
            (KeyAlgorithm::Rsa(2048), KeyPurpose::Tsa),
            (KeyAlgorithm::Ed25519, KeyPurpose::Chain),
        ];
        for (algorithm, purpose) in cases {
            let label = format!("key-{algorithm}");
            let key = hsm.generate_key(&label, algorithm, purpose).unwrap();
            assert_eq!(key.algorithm, algorithm);
            assert_eq!(key.purpose, Some(purpose));
            assert_eq!(key.id.len(), 16);
            assert_eq!(hsm.find_key(&label).unwrap(), key);

            let message = b"an auditor data event";
            let sig = hsm.sign(&key, message).unwrap();
            let verifier = SoftVerifier::from_spki_der(&key.public_key_der).unwrap();
            assert_eq!(verifier.algorithm(), SignatureAlgorithm::for_key(algorithm));
            verifier.verify(message, &sig).unwrap();
            assert!(verifier.verify(b"another message", &sig).is_err());

            assert!(read_bool(&hsm, &label, AttributeType::Sensitive));
            assert!(!read_bool(&hsm, &label, AttributeType::Extractable));
            assert!(!read_bool(&hsm, &label, AttributeType::Decrypt));
            assert!(!read_bool(&hsm, &label, AttributeType::Unwrap));
            assert!(read_bool(&hsm, &label, AttributeType::Sign));
            assert!(read_bool(&hsm, &label, AttributeType::Private));
            assert!(read_bool(&hsm, &label, AttributeType::NeverExtractable));
        }
        let labels: Vec<String> = hsm
            .list_keys()
            .unwrap()
            .into_iter()
            .map(|k| k.label)
            .collect();
        assert_eq!(labels.len(), cases.len());
    }

    #[test]
    fn ecdsa_signatures_are_der_and_spki_matches_openssl_shape() {
        let token = testsupport::new_token();
        let hsm = token.open();
        let key = hsm
            .generate_key("p256", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
            .unwrap();
        // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (66 bytes) }
        assert!(hex::encode(&key.public_key_der)
            .starts_with("3059301306072a8648ce3d020106082a8648ce3d03010703420004"));
        let sig = hsm.sign(&key, b"m").unwrap();
        assert_eq!(sig[0], 0x30, "DER Ecdsa-Sig-Value");
        let ed = hsm
            .generate_key("ed", KeyAlgorithm::Ed25519, KeyPurpose::Chain)
            .unwrap();
        assert!(hex::encode(&ed.public_key_der).starts_with("302a300506032b6570032100"));
        assert_eq!(hsm.sign(&ed, b"m").unwrap().len(), 64);
    }

    #[test]
    fn label_clash_is_refused() {
        let token = testsupport::new_token();
        let hsm = token.open();
        hsm.generate_key("dup", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
            .unwrap();
        let err = hsm
            .generate_key("dup", KeyAlgorithm::Ed25519, KeyPurpose::Chain)
            .unwrap_err();
        assert!(
            matches!(err, SignerError::LabelExists(ref l) if l == "dup"),
            "{err}"
        );
    }

    #[test]
    fn wrong_pin_is_reported_without_the_pin() {
        let token = testsupport::new_token();
        let wrong = "9999-not-the-pin-4242";
        let err = Hsm::open(&token.selector, SecretString::from(wrong)).unwrap_err();
        assert!(matches!(err, SignerError::WrongPin), "{err:?}");
        assert_eq!(err.to_string(), "the PIN was refused by the token");
        assert!(!err.to_string().contains(wrong));
        assert!(!format!("{err:?}").contains(wrong));
        // The right PIN still works afterwards, and Debug never shows it.
        let hsm = token.open();
        assert!(!format!("{hsm:?}").contains(testsupport::USER_PIN));
    }

    #[test]
    fn missing_key_and_token_are_named() {
        let token = testsupport::new_token();
        let hsm = token.open();
        let err = hsm.find_key("nope").unwrap_err();
        assert!(
            matches!(err, SignerError::KeyNotFound(ref l) if l == "nope"),
            "{err}"
        );

        let selector = TokenSelector::by_label(testsupport::module_path(), "no-such-token");
        let err = Hsm::open(&selector, SecretString::from("x")).unwrap_err();
        match &err {
            SignerError::TokenNotFound { wanted, seen } => {
                assert!(wanted.contains("no-such-token"));
                assert!(seen.iter().any(|s| s.contains(&token.label)), "{seen:?}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let both = TokenSelector {
            token_serial: Some("1".into()),
            ..selector
        };
        assert!(matches!(
            Hsm::open(&both, SecretString::from("x")),
            Err(SignerError::InvalidArgument(_))
        ));
    }

    #[test]
    fn hsm_and_pool_can_be_shared_between_threads() {
        fn shared<T: Send + Sync + Clone>() {}
        fn send_sync<T: Send + Sync>() {}
        shared::<Hsm>();
        send_sync::<crate::signer::SigningPool>();
        send_sync::<SignerError>();
    }

    #[test]
    fn a_missing_module_is_named() {
        let selector = TokenSelector::by_label("/nonexistent/libpkcs11.so", "t");
        let err = Hsm::open(&selector, SecretString::from("x")).unwrap_err();
        assert!(matches!(err, SignerError::ModuleLoad { .. }), "{err:?}");
        assert!(
            err.to_string().contains("/nonexistent/libpkcs11.so"),
            "{err}"
        );
    }

    #[test]
    fn open_by_serial() {
        let token = testsupport::new_token();
        let serial = {
            let live = load_module(&testsupport::module_path()).unwrap().read();
            let slot = find_slot(live.ctx(), Wanted::Label(&token.label)).unwrap();
            live.ctx()
                .get_token_info(slot)
                .unwrap()
                .serial_number()
                .trim_end()
                .to_owned()
        };
        let hsm = Hsm::open(
            &TokenSelector::by_serial(testsupport::module_path(), serial),
            SecretString::from(testsupport::USER_PIN),
        )
        .unwrap();
        assert!(hsm.list_keys().unwrap().is_empty());
    }

    #[test]
    fn init_token_twice_is_refused() {
        let token = testsupport::new_token();
        let err = init_token(
            &testsupport::module_path(),
            &token.label,
            &SecretString::from(testsupport::SO_PIN),
            &SecretString::from(testsupport::USER_PIN),
        )
        .unwrap_err();
        assert!(matches!(err, SignerError::TokenLabelExists(_)), "{err}");
    }

    #[test]
    fn unsupported_rsa_size_is_refused() {
        let token = testsupport::new_token();
        let hsm = token.open();
        let err = hsm
            .generate_key("small", KeyAlgorithm::Rsa(1024), KeyPurpose::Tsa)
            .unwrap_err();
        assert!(matches!(err, SignerError::UnsupportedKeyType(_)), "{err}");
    }

    #[test]
    fn certificate_store_and_find_round_trip() {
        let token = testsupport::new_token();
        let hsm = token.open();
        let key = hsm
            .generate_key("certified", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
            .unwrap();
        let other = hsm
            .generate_key("other", KeyAlgorithm::EcdsaP256, KeyPurpose::Tsa)
            .unwrap();
        assert_eq!(hsm.find_certificate(&key).unwrap(), None);

        let first = testsupport::self_signed_certificate(&hsm, &key, 1);
        hsm.store_certificate(&key, &first).unwrap();
        assert_eq!(hsm.find_certificate(&key).unwrap(), Some(first.clone()));

        // A second store replaces the first.
        let second = testsupport::self_signed_certificate(&hsm, &key, 2);
        hsm.store_certificate(&key, &second).unwrap();
        assert_eq!(hsm.find_certificate(&key).unwrap(), Some(second));
        assert_eq!(hsm.find_certificate(&other).unwrap(), None);

        // A certificate of another key is refused.
        let err = hsm.store_certificate(&other, &first).unwrap_err();
        assert!(matches!(err, SignerError::CertificateMismatch(_)), "{err}");
    }

    #[test]
    fn uint_bits_counts_significant_bits() {
        assert_eq!(uint_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(uint_bits(&[0x01]), 1);
        assert_eq!(uint_bits(&[0x00]), 0);
        assert_eq!(uint_bits(&[0xff; 256]), 2048);
    }

    #[test]
    fn ec_point_unwrapping() {
        let point = [4u8; 65];
        let wrapped = OctetString::new(point.to_vec()).unwrap().to_der().unwrap();
        assert_eq!(unwrap_ec_point(&wrapped, 65).unwrap(), point.to_vec());
        assert_eq!(unwrap_ec_point(&point, 65).unwrap(), point.to_vec());
        assert!(unwrap_ec_point(&point[..10], 65).is_err());
    }
}
