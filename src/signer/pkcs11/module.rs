//! The PKCS#11 module: loaded once per process and path, re-initialised (C_Finalize,
//! C_Initialize) only when reopening a session says the token is gone; every call runs
//! under a shared guard, a reset under the exclusive one, and sessions carry the epoch
//! they were opened in.

use super::*;

/// Process-wide PKCS#11 modules, one per module path (C_Initialize happens once, and again
/// only through [`Module::reset`]). Entries are leaked on purpose: a module lives as long
/// as the process, and sessions refer to it by a `&'static` reference.
pub(super) static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, &'static Module>>> = OnceLock::new();
/// Serialises token initialisation: two callers must not pick the same free slot.
pub(super) static INIT_TOKEN_LOCK: Mutex<()> = Mutex::new(());
/// At most one re-initialisation of a module per this interval, however many callers see
/// the token gone: a long outage must not spin on C_Finalize/C_Initialize.
pub(super) const RESET_INTERVAL: Duration = Duration::from_secs(1);

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn initialize_args() -> CInitializeArgs {
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
