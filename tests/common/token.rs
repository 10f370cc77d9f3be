//! A logged-in session on an appliance's token, opened in the test process.
#![allow(unused_imports)]

use super::*;

/// A logged-in session on an appliance's token, opened in the test process; see
/// [`Appliance::login_in_process`].
pub struct InProcessToken {
    pub(super) session: Option<cryptoki::session::Session>,
    pub(super) ctx: Option<cryptoki::context::Pkcs11>,
    pub(super) _lock: std::sync::MutexGuard<'static, ()>,
}

impl std::ops::Deref for InProcessToken {
    type Target = cryptoki::session::Session;
    fn deref(&self) -> &Self::Target {
        self.session.as_ref().unwrap()
    }
}

impl Drop for InProcessToken {
    fn drop(&mut self) {
        drop(self.session.take());
        if let Some(ctx) = self.ctx.take() {
            let _ = ctx.finalize();
        }
    }
}
