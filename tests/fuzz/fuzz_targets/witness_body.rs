//! The witness's add-checkpoint request body, and the answers an appliance reads back
//! (cosignature lines, a 409 size). What parses formats back to itself. Never a panic.
#![no_main]

use auditstamp::witness::protocol::{parse_cosignatures, parse_size_body, AddCheckpoint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = AddCheckpoint::parse(data) {
        assert_eq!(
            AddCheckpoint::parse(req.format().as_bytes()).as_ref(),
            Ok(&req)
        );
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_size_body(text);
        let _ = parse_cosignatures(
            "example.org/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
            text,
        );
    }
});
