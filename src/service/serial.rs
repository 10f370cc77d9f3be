//! Token serial numbers: unique forever on this appliance and across appliances.
//!
//! A serial number is `node_id << 64 | counter`: at most 96 bits, always positive. The
//! counter is reserved from the store in blocks (one durable write per block, not per
//! token); after a restart the unused rest of a block is skipped, never reused.

use std::sync::Mutex;

use crate::chain::store::{Store, StoreError};

/// Counters reserved per durable write.
pub const DEFAULT_BLOCK: u64 = 4096;

/// Hands out serial numbers.
#[derive(Debug)]
pub struct SerialAllocator {
    node_id: u32,
    block: u64,
    store: Store,
    range: Mutex<(u64, u64)>,
}

impl SerialAllocator {
    /// An allocator for `node_id` drawing blocks of `block` counters from `store`.
    pub fn new(node_id: u32, store: Store, block: u64) -> Self {
        SerialAllocator {
            node_id,
            block: block.max(1),
            store,
            range: Mutex::new((0, 0)),
        }
    }

    /// The next serial number.
    pub fn next(&self) -> Result<u128, StoreError> {
        let mut range = self
            .range
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if range.0 >= range.1 {
            let first = self.store.reserve_serials(self.block)?;
            *range = (first, first.saturating_add(self.block));
        }
        let counter = range.0;
        range.0 += 1;
        Ok(compose(self.node_id, counter))
    }
}

/// The serial number for `counter` on node `node_id`.
pub fn compose(node_id: u32, counter: u64) -> u128 {
    (u128::from(node_id) << 64) | u128::from(counter)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn unique_across_restarts_and_threads() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = HashSet::new();
        for _restart in 0..3 {
            let store = crate::chain::store::reopen_in_process(dir.path());
            let alloc = std::sync::Arc::new(SerialAllocator::new(9, store, 16));
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let a = alloc.clone();
                    std::thread::spawn(move || {
                        (0..50).map(|_| a.next().unwrap()).collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                for s in h.join().unwrap() {
                    assert!(s > 0 && s >> 64 == 9);
                    assert!(seen.insert(s), "serial {s} reused");
                }
            }
        }
        assert_eq!(seen.len(), 600);
    }

    proptest! {
        #[test]
        fn compose_is_injective_and_fits_160_bits(a in any::<u32>(), b in 1..u64::MAX, c in any::<u32>(), d in 1..u64::MAX) {
            prop_assert!(compose(a, b) > 0);
            prop_assert!(compose(a, b) < (1u128 << 96));
            prop_assert_eq!(compose(a, b) == compose(c, d), a == c && b == d);
        }
    }
}
