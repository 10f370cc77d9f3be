//! Event JSON as agencies post it: decoded, checked, and (when accepted) encoded as leaf
//! bytes that decode back to the same event, with details in canonical form (reading them
//! again changes nothing) and shown back byte for byte. Never a panic.
#![no_main]

use auditstamp::chain::event::{parse_details, EventInput, StoredEvent};
use auditstamp::chain::exact_json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<EventInput>(data) else {
        return;
    };
    let Ok(event) = input.validate() else {
        return;
    };
    assert_eq!(parse_details(&event.details).unwrap(), event.details);
    let stored = StoredEvent {
        index: 7,
        received_at_ms: 1,
        salt: [9; 16],
        event,
    };
    let leaf = stored.leaf_bytes();
    assert_eq!(StoredEvent::from_leaf_bytes(&leaf).unwrap(), stored);
    let shown = serde_json::to_string(&stored.view()).unwrap();
    assert_eq!(exact_json::canonical(&shown, "event", 128).unwrap(), shown);
    let _ = stored.to_json();
});
