//! Finding the token's slot, opening sessions and logging in (once per token and
//! process; a refused PIN is remembered so that it is never retried into a lockout).

use super::*;

/// Finds the slot holding the initialised token `wanted`.
pub(super) fn find_slot(ctx: &Pkcs11, wanted: Wanted<'_>) -> Result<Slot, SignerError> {
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

pub(super) const REFUSED_WRONG: u8 = 1;
pub(super) const REFUSED_LOCKED: u8 = 2;

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
    pub(super) fn login_if_needed(&self, session: &Session) -> Result<(), SignerError> {
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
