//! The genTime floor at startup: no token issued after a (re)start has a genTime earlier
//! than a token answered before it, whatever the wall clock did meanwhile, also after a
//! crash (kill -9, power loss).
//!
//! What is durable before a token is answered:
//! - a token of `POST /tsa`: its `tsa.issued` event. [`TsaService::issue`] takes the
//!   genTime, has the HSM sign (the signer verifies the signature before it returns it),
//!   appends the event and waits for the event log's group commit, which answers only
//!   once the commit is synced; only then is the token answered. A token whose event
//!   is not durable is never answered (systemFailure).
//! - a block's own token: the block. The sealer reads the tree size, then takes the
//!   token's genTime (also the header's sealed time) and the token, then stores block and
//!   checkpoint with a flush; nothing of a block is served before that.
//! - the genTime mark ([`GenTimeMark`]): written every second and at a clean stop, so it
//!   may lag the last answered token by up to a second after a crash. Its genTime alone
//!   is not a floor.
//!
//! So the floor is the latest of the mark's genTime, the last block's token genTime, and
//! the genTime of every `tsa.issued` event from index `start` on, where `start` is the
//! later of the mark's log size and the last block's tree size. Why those events are
//! enough: the clock guard hands out genTimes in order, so one later than the mark's (or
//! the block token's) was handed out after it, that is after the log size was read (the
//! mark and the sealer read the size first); its event was appended after its genTime was
//! taken, so it was committed at an index at or beyond that size. Why every event from
//! `start` and not only the last: events are committed in the order they arrive, not in
//! genTime order (a request that took its genTime first may wait longer for the HSM or
//! for a verify-after-sign retry). `tsa.issued` is refused from clients, so only the
//! TSA's own events carry it. The events scanned are those of about the last second
//! (the mark is written every second), so this costs nothing on the signing path and
//! little at startup; a store whose mark an older version wrote (no log size) scans from
//! the last block, or from the start of a log without blocks.
//!
//! The floor is exact: no refusal window after a restart. When the clock at startup
//! reads earlier than the floor (it was stepped back), the server starts but refuses
//! tokens with timeNotAvailable, and `/readyz` answers 503 naming the step back, until
//! the clock passes the floor ([`ClockGuard`](crate::clock::ClockGuard)); the event
//! chain's routes work meanwhile.

use super::ServiceError;
use crate::chain::block::SealedBlock;
use crate::chain::event::{Action, StoredEvent};
use crate::chain::log::EventLog;
use crate::chain::store::{GenTimeMark, Store};

/// The floor and what it was made of (for the startup log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenTimeFloor {
    /// No token answered before has a later genTime (Unix milliseconds; 0 on a new store).
    pub ms: u64,
    /// The stored genTime mark, if any.
    pub mark: Option<GenTimeMark>,
    /// The genTime of the last block's token, if a block was sealed.
    pub block_ms: Option<u64>,
    /// The latest genTime of the `tsa.issued` events scanned, if any was found.
    pub events_ms: Option<u64>,
    /// The first event index scanned.
    pub scanned_from: u64,
    /// Events scanned.
    pub scanned: u64,
}

/// The genTime floor of the TSA whose state is in `store` and `log` (see the module
/// documentation). A damaged mark, last block or scanned event is an error.
pub fn gen_time_floor(store: &Store, log: &EventLog) -> Result<GenTimeFloor, ServiceError> {
    let mark = store.gen_time_mark()?;
    let block = match log.latest_block()? {
        None => None,
        Some((height, bytes)) => {
            let block = SealedBlock::decode(&bytes)
                .map_err(|e| ServiceError::Chain(format!("block {height} is damaged: {e}")))?;
            let info = crate::tsp::decode_tst_info_from_token(&block.token).map_err(|e| {
                ServiceError::Chain(format!("the token of block {height} is damaged: {e}"))
            })?;
            Some((info.gen_time.unix_millis(), block.header.tree_size))
        }
    };
    let start = mark
        .and_then(|m| m.log_size)
        .unwrap_or(0)
        .max(block.map_or(0, |(_, size)| size));
    let mut events_ms = None;
    let mut scanned = 0u64;
    for item in log.events_from(start) {
        let (index, leaf) = item?;
        scanned += 1;
        let stored = StoredEvent::from_leaf_bytes(&leaf)
            .map_err(|e| ServiceError::Chain(format!("event {index} is damaged: {e}")))?;
        if stored.event.action == Action::TsaIssued {
            // The TSA writes the token's genTime (whole milliseconds) as the event's time;
            // one before 1970 was not written by it.
            let ns = u64::try_from(stored.event.occurred_at_ns).map_err(|_| {
                ServiceError::Chain(format!(
                    "event {index} is damaged: a tsa.issued event with a time before 1970 ({} ns)",
                    stored.event.occurred_at_ns
                ))
            })?;
            let ms = ns / 1_000_000;
            events_ms = Some(events_ms.map_or(ms, |m: u64| m.max(ms)));
        }
    }
    let ms = [
        mark.map(|m| m.gen_time_ms),
        block.map(|(ms, _)| ms),
        events_ms,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0);
    Ok(GenTimeFloor {
        ms,
        mark,
        block_ms: block.map(|(ms, _)| ms),
        events_ms,
        scanned_from: start,
        scanned,
    })
}

/// Whether any event of `log` is a `tsa.issued` one (read from the start, stopping at the
/// first): whether this TSA ever answered a token through `POST /tsa`.
pub fn any_token_issued(log: &EventLog) -> Result<bool, ServiceError> {
    for item in log.events_from(0) {
        let (index, leaf) = item?;
        let stored = StoredEvent::from_leaf_bytes(&leaf)
            .map_err(|e| ServiceError::Chain(format!("event {index} is damaged: {e}")))?;
        if stored.event.action == Action::TsaIssued {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::chain::event::Event;

    fn issued(occurred_at_ns: i64) -> Event {
        Event {
            agency: "appliance".into(),
            auditor: "tsa".into(),
            action: Action::TsaIssued,
            subject: "token".into(),
            data_sha256: [7; 32],
            occurred_at_ns,
            details: "{}".into(),
        }
    }

    /// A runtime, and an empty store with its event log (in a directory removed on drop).
    fn new_log() -> (tokio::runtime::Runtime, tempfile::TempDir, Store, EventLog) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = EventLog::open(&store).unwrap();
        (rt, dir, store, log)
    }

    /// The floor is the latest `tsa.issued` genTime; an event whose time is not one the
    /// TSA writes (before 1970) is an error naming it, never a genTime of 0.
    #[test]
    fn a_tsa_issued_event_before_1970_is_damage_not_a_zero_floor() {
        let (rt, _dir, store, log) = new_log();
        rt.block_on(log.append(vec![issued(5_000_000_000), issued(9_000_000_000)]))
            .unwrap();
        assert_eq!(gen_time_floor(&store, &log).unwrap().ms, 9_000);
        rt.block_on(log.append(vec![issued(-1)])).unwrap();
        let e = gen_time_floor(&store, &log).unwrap_err().to_string();
        assert!(e.contains("event 2") && e.contains("before 1970"), "{e}");
    }

    /// A log of events that are not tokens has issued none; one `tsa.issued` among them,
    /// however far back, is found.
    #[test]
    fn any_token_issued_finds_a_token_among_other_events() {
        let (rt, _dir, _store, log) = new_log();
        assert!(!any_token_issued(&log).unwrap());
        let other = Event {
            action: Action::Access,
            auditor: "auditor".into(),
            ..issued(5_000_000_000)
        };
        rt.block_on(log.append(vec![other.clone(); 300])).unwrap();
        assert!(!any_token_issued(&log).unwrap());
        rt.block_on(log.append(vec![issued(6_000_000_000)]))
            .unwrap();
        rt.block_on(log.append(vec![other; 10])).unwrap();
        assert!(any_token_issued(&log).unwrap());
    }
}
