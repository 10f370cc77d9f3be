//! The one writer of the event log.
//!
//! Every event enters the log through [`EventWriter::append`]: auditors' events through
//! [`ChainService::append`](super::chain::ChainService::append) and the TSA's own
//! `tsa.issued` records through [`TsaService::issue`](super::tsa::TsaService::issue). It
//! wakes the sealer as soon as a block's worth of events waits unsealed, whoever appended
//! them; before a sealer is attached it wakes nobody. Reads go to [`EventWriter::log`].

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

use crate::chain::event::Event;
use crate::chain::log::{Appended, EventLog, LogError};

/// The event log's one way in, with the sealer's "a block is full" wake-up.
#[derive(Debug)]
pub struct EventWriter {
    log: EventLog,
    /// The tree size of the last sealed block.
    sealed: AtomicU64,
    /// How many unsealed events wake the sealer (`u64::MAX`: no sealer yet).
    block_events: AtomicU64,
    full: Notify,
}

impl EventWriter {
    /// The writer of `log`.
    pub fn new(log: EventLog) -> EventWriter {
        EventWriter {
            log,
            sealed: AtomicU64::new(0),
            block_events: AtomicU64::new(u64::MAX),
            full: Notify::new(),
        }
    }

    /// The log, for reading (and for the sealer's blocks and checkpoints).
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Appends `events` and returns once they are durable, in order; wakes the sealer if a
    /// block's worth now waits.
    pub async fn append(&self, events: Vec<Event>) -> Result<Vec<Appended>, LogError> {
        let appended = self.log.append(events).await?;
        self.wake_if_full();
        Ok(appended)
    }

    /// Called by the sealer: blocks hold at most `block_events` events, and the last one
    /// seals the tree of `sealed_size` events.
    pub(super) fn attach_sealer(&self, sealed_size: u64, block_events: u64) {
        self.sealed.store(sealed_size, Ordering::SeqCst);
        self.block_events
            .store(block_events.max(1), Ordering::SeqCst);
        self.wake_if_full();
    }

    /// Called by the sealer after each block: the tree of `size` events is sealed. Wakes it
    /// again at once if another block's worth already waits.
    pub(super) fn sealed_up_to(&self, size: u64) {
        self.sealed.fetch_max(size, Ordering::SeqCst);
        self.wake_if_full();
    }

    /// Completes when a block's worth of events waits unsealed (or did since the last
    /// call: a wake-up is never lost between two waits).
    pub(super) async fn block_full(&self) {
        self.full.notified().await;
    }

    fn wake_if_full(&self) {
        let waiting = self
            .log
            .size()
            .saturating_sub(self.sealed.load(Ordering::SeqCst));
        if waiting >= self.block_events.load(Ordering::SeqCst) {
            self.full.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::chain::event::Action;
    use std::time::Duration;

    fn event(n: u64) -> Event {
        Event {
            agency: "agency".into(),
            auditor: format!("auditor-{n}"),
            action: Action::Access,
            subject: format!("record/{n}"),
            data_sha256: [1; 32],
            occurred_at_ns: 1_700_000_000_000_000_000,
            details: "{}".into(),
        }
    }

    /// Whether `block_full` has completed, or would at once.
    async fn woken(w: &EventWriter) -> bool {
        tokio::time::timeout(Duration::from_millis(50), w.block_full())
            .await
            .is_ok()
    }

    /// The wake-up follows the count of unsealed events, not who appended them, and only
    /// once a sealer is attached.
    #[test]
    fn a_full_block_wakes_the_sealer_whoever_appended() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::chain::store::Store::open(dir.path()).unwrap();
        let w = EventWriter::new(EventLog::open(&store).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            w.append(vec![event(0), event(1), event(2)]).await.unwrap();
            assert!(!woken(&w).await, "woken with no sealer attached");
            w.attach_sealer(0, 4);
            assert!(!woken(&w).await, "woken with 3 of 4 events");
            w.append(vec![event(3)]).await.unwrap();
            assert!(woken(&w).await, "not woken with a full block");
            w.sealed_up_to(4);
            w.append(vec![event(4), event(5), event(6)]).await.unwrap();
            assert!(!woken(&w).await, "woken with 3 unsealed");
            w.append(vec![event(7), event(8), event(9), event(10), event(11)])
                .await
                .unwrap();
            // 8 unsealed: the wake-up after sealing one block finds the next one full.
            assert!(woken(&w).await);
            w.sealed_up_to(8);
            assert!(woken(&w).await, "a second full block did not wake again");
            w.sealed_up_to(12);
            assert!(!woken(&w).await);
        });
    }
}
