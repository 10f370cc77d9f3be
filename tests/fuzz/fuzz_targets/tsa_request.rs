//! The RFC 3161 request parser: any bytes give a request or a rejection, never a panic.
#![no_main]

use auditstamp::tsp::{parse_request, HashAlgorithm, RequestRules};
use const_oid::ObjectIdentifier;
use libfuzzer_sys::fuzz_target;

const POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.13.1");

fuzz_target!(|data: &[u8]| {
    let rules = RequestRules {
        accepted_hashes: HashAlgorithm::ALL.to_vec(),
        accepted_policies: vec![POLICY],
        default_policy: POLICY,
    };
    if let Ok(req) = parse_request(data, &rules) {
        assert_eq!(req.digest.len(), req.hash.output_len());
    }
});
