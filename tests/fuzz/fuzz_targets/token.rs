//! The strict token verifier on arbitrary bytes (as a TimeStampResp or a bare token), and
//! the response and TSTInfo decoders it builds on. Never a panic.
#![no_main]

use auditstamp::tsp::{decode_response_status, decode_tst_info_from_token};
use auditstamp::verify::{verify_any, TokenOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = verify_any(data, &TokenOptions::new(&[]));
    if let Ok(st) = decode_response_status(data) {
        if let Some(token) = st.token {
            let _ = decode_tst_info_from_token(&token);
        }
    }
    let _ = decode_tst_info_from_token(data);
});
