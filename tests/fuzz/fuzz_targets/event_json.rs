//! Event JSON as agencies post it: decoded, checked, and (when accepted) encoded as leaf
//! bytes that decode back to the same event. Never a panic.
#![no_main]

use auditstamp::chain::event::{EventInput, StoredEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<EventInput>(data) else {
        return;
    };
    let Ok(event) = input.validate() else {
        return;
    };
    let stored = StoredEvent {
        index: 7,
        received_at_ms: 1,
        salt: [9; 16],
        event,
    };
    let leaf = stored.leaf_bytes();
    assert_eq!(StoredEvent::from_leaf_bytes(&leaf).unwrap(), stored);
    let _ = stored.to_json();
});
