//! Time source and its health.
//!
//! The appliance never issues a token whose time it cannot vouch for (ETSI EN 319 421):
//! [`ClockGuard`] hands out genTimes that never go backwards, refuses while the clock is
//! behind the last genTime it issued (a step back, also across restarts), and, when
//! configured, refuses while the kernel reports the clock unsynchronised or its maximum
//! error above the stated accuracy. The [`Clock`] is injected so tests are deterministic.
//!
//! Its one error type is [`ClockError`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why the clock cannot be trusted now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClockError {
    /// The clock reads earlier than a genTime already issued.
    #[error(
        "clock stepped back: it reads {now_ms} ms but genTime {last_ms} ms was already issued"
    )]
    SteppedBack {
        /// The clock now (Unix milliseconds).
        now_ms: u64,
        /// The last genTime issued (Unix milliseconds).
        last_ms: u64,
    },
    /// The kernel reports the clock unsynchronised, or its error is above the accuracy.
    #[error("clock not synchronised: {0}")]
    Unsynchronised(String),
    /// The clock reads before 1970 or beyond what a u64 of milliseconds holds.
    #[error("clock reads an impossible time")]
    OutOfRange,
}

/// What the kernel says about clock synchronisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStatus {
    /// Synchronised, with the kernel's estimate of the maximum error.
    Synchronised {
        /// Maximum error in microseconds.
        max_error_us: u64,
    },
    /// Not synchronised; the reason.
    Unsynchronised(String),
}

/// A time source.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> SystemTime;
    /// Whether the clock is synchronised, as far as the platform can tell.
    fn sync_status(&self) -> SyncStatus;
}

/// The operating system's clock; synchronisation read with `adjtimex(2)` on Linux.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sync_status(&self) -> SyncStatus {
        kernel_sync_status()
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn kernel_sync_status() -> SyncStatus {
    // SAFETY: adjtimex with modes = 0 only reads the kernel's clock state into the
    // zero-initialised struct we own; it has no other effect.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = 0;
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state == -1 {
        return SyncStatus::Unsynchronised(format!(
            "adjtimex failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    if state == libc::TIME_ERROR || tx.status & libc::STA_UNSYNC != 0 {
        return SyncStatus::Unsynchronised(
            "the kernel reports STA_UNSYNC (is NTP/PTP running?)".into(),
        );
    }
    SyncStatus::Synchronised {
        max_error_us: u64::try_from(tx.maxerror).unwrap_or(u64::MAX),
    }
}

#[cfg(not(target_os = "linux"))]
fn kernel_sync_status() -> SyncStatus {
    SyncStatus::Unsynchronised("synchronisation status is only read on Linux".into())
}

/// Milliseconds since the Unix epoch, or an error for impossible times.
pub fn unix_millis(t: SystemTime) -> Result<u64, ClockError> {
    let d = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| ClockError::OutOfRange)?;
    u64::try_from(d.as_millis()).map_err(|_| ClockError::OutOfRange)
}

/// Hands out genTimes and refuses when the clock is not trustworthy.
pub struct ClockGuard {
    clock: Arc<dyn Clock>,
    require_sync: bool,
    accuracy: Duration,
    last_issued_ms: Mutex<u64>,
}

impl std::fmt::Debug for ClockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClockGuard")
            .field("require_sync", &self.require_sync)
            .field("accuracy", &self.accuracy)
            .field("last_issued_ms", &self.last_issued())
            .finish()
    }
}

impl ClockGuard {
    /// A guard over `clock`. `last_issued_ms` is the floor: no genTime issued before this
    /// start is later (0 if none; see `service::gen_time`); `require_sync` also refuses
    /// while the kernel reports the clock unsynchronised or its maximum error above
    /// `accuracy`.
    pub fn new(
        clock: Arc<dyn Clock>,
        require_sync: bool,
        accuracy: Duration,
        last_issued_ms: u64,
    ) -> Self {
        ClockGuard {
            clock,
            require_sync,
            accuracy,
            last_issued_ms: Mutex::new(last_issued_ms),
        }
    }

    /// The genTime for a token being issued now, in Unix milliseconds. Never smaller than
    /// a genTime handed out before.
    pub fn gen_time(&self) -> Result<u64, ClockError> {
        self.check_sync()?;
        // The clock is read under the lock so that two concurrent callers cannot see
        // each other's later time and mistake it for a step back.
        let mut last = self
            .last_issued_ms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = unix_millis(self.clock.now())?;
        if now < *last {
            return Err(ClockError::SteppedBack {
                now_ms: now,
                last_ms: *last,
            });
        }
        *last = now;
        Ok(now)
    }

    /// Whether a token could be issued now (for the readiness probe); issues nothing.
    pub fn check(&self) -> Result<(), ClockError> {
        self.check_sync()?;
        let now = unix_millis(self.clock.now())?;
        let last = self.last_issued();
        if now < last {
            return Err(ClockError::SteppedBack {
                now_ms: now,
                last_ms: last,
            });
        }
        Ok(())
    }

    /// What the clock reads now (Unix milliseconds), whether or not it can be trusted:
    /// for checks that compare with the time tokens would carry (a certificate's validity).
    pub fn now_ms(&self) -> Result<u64, ClockError> {
        unix_millis(self.clock.now())
    }

    /// What the clock reads now, whether or not it can be trusted.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// The last genTime issued (Unix milliseconds); before the first one, the floor the
    /// guard was started with.
    pub fn last_issued(&self) -> u64 {
        *self
            .last_issued_ms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn check_sync(&self) -> Result<(), ClockError> {
        if !self.require_sync {
            return Ok(());
        }
        match self.clock.sync_status() {
            SyncStatus::Unsynchronised(why) => Err(ClockError::Unsynchronised(why)),
            SyncStatus::Synchronised { max_error_us } => {
                let accuracy_us = u64::try_from(self.accuracy.as_micros()).unwrap_or(u64::MAX);
                if max_error_us > accuracy_us {
                    Err(ClockError::Unsynchronised(format!(
                        "the kernel's maximum error {max_error_us} µs exceeds the stated accuracy {accuracy_us} µs"
                    )))
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// A clock a test sets by hand (Unix milliseconds), synchronised unless told otherwise.
#[cfg(test)]
pub(crate) struct ManualClock {
    ms: std::sync::atomic::AtomicU64,
    /// What [`Clock::sync_status`] answers.
    pub(crate) status: Mutex<SyncStatus>,
}

#[cfg(test)]
impl ManualClock {
    /// A clock reading `ms`.
    pub(crate) fn at(ms: u64) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            ms: ms.into(),
            status: Mutex::new(SyncStatus::Synchronised { max_error_us: 10 }),
        })
    }

    /// Sets the clock to `ms`.
    pub(crate) fn set(&self, ms: u64) {
        self.ms.store(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.ms.load(std::sync::atomic::Ordering::SeqCst))
    }
    fn sync_status(&self) -> SyncStatus {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn refuses_until_clock_passes_last_issued() {
        let c = ManualClock::at(5_000);
        let g = ClockGuard::new(c.clone(), false, Duration::from_secs(1), 4_000);
        assert_eq!(g.gen_time().unwrap(), 5_000);
        c.set(4_999);
        assert!(matches!(g.gen_time(), Err(ClockError::SteppedBack { .. })));
        assert!(g.check().is_err());
        c.set(5_000);
        assert_eq!(g.gen_time().unwrap(), 5_000);
        assert!(g.check().is_ok());
    }

    #[test]
    fn last_issued_from_before_restart_counts() {
        let c = ManualClock::at(1_000);
        let g = ClockGuard::new(c, false, Duration::from_secs(1), 2_000);
        assert!(g.gen_time().is_err());
    }

    #[test]
    fn sync_required_only_when_configured() {
        let c = ManualClock::at(10_000);
        *c.status.lock().unwrap() = SyncStatus::Unsynchronised("test".into());
        assert!(ClockGuard::new(c.clone(), false, Duration::from_secs(1), 0)
            .gen_time()
            .is_ok());
        let strict = ClockGuard::new(c.clone(), true, Duration::from_secs(1), 0);
        assert!(matches!(
            strict.gen_time(),
            Err(ClockError::Unsynchronised(_))
        ));
        *c.status.lock().unwrap() = SyncStatus::Synchronised {
            max_error_us: 2_000_000,
        };
        assert!(strict.gen_time().is_err(), "error above accuracy");
        *c.status.lock().unwrap() = SyncStatus::Synchronised { max_error_us: 500 };
        assert!(strict.gen_time().is_ok());
    }

    #[test]
    fn concurrent_callers_never_see_a_step_back() {
        let g = Arc::new(ClockGuard::new(
            Arc::new(SystemClock),
            false,
            Duration::from_secs(1),
            0,
        ));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || (0..20_000).all(|_| g.gen_time().is_ok()))
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap());
        }
    }

    #[test]
    fn system_clock_reports_something() {
        // Either answer is fine on a test machine; the call must not fail or panic.
        let _ = SystemClock.sync_status();
    }
}
