//! Signal handling for the servers: installed before anything is served, so that a SIGTERM
//! or SIGHUP arriving right after startup is handled instead of ending the process with the
//! signal's default action.

/// The signals a server listens for, registered with the kernel when created.
#[derive(Debug)]
pub(crate) struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Registers SIGTERM (and SIGHUP when `reload`); call from within the runtime, before
    /// the listener is bound.
    pub(crate) fn install(reload: bool) -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                hup: if reload {
                    Some(signal(SignalKind::hangup())?)
                } else {
                    None
                },
            })
        }
        #[cfg(not(unix))]
        {
            let _ = reload;
            Ok(Signals {})
        }
    }

    /// The SIGHUP stream, taken out (for the reloader task).
    #[cfg(unix)]
    pub(crate) fn take_hangup(&mut self) -> Option<tokio::signal::unix::Signal> {
        self.hup.take()
    }

    /// Completes on SIGTERM or ctrl-c.
    pub(crate) async fn terminated(mut self) {
        let ctrl_c = async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %e, "cannot listen for ctrl-c");
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        let term = async {
            self.term.recv().await;
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {},
            () = term => {},
        }
        tracing::info!("shutting down: finishing requests in flight");
    }
}
