//! Proof bundles: the C2SP tlog-proof text, the leaf bytes it carries, its checkpoint, and
//! an inclusion check against it. Never a panic.
#![no_main]

use auditstamp::chain::event::StoredEvent;
use auditstamp::chain::note::{Checkpoint, SignedNote};
use auditstamp::chain::proof::TlogProof;
use auditstamp::chain::tlog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        let _ = StoredEvent::from_leaf_bytes(data);
        return;
    };
    let Ok(proof) = TlogProof::parse(text) else {
        return;
    };
    assert_eq!(TlogProof::parse(&proof.format()).as_ref(), Ok(&proof));
    let leaf = proof.extra.clone().unwrap_or_default();
    let _ = StoredEvent::from_leaf_bytes(&leaf);
    if let Ok(note) = SignedNote::parse(&proof.checkpoint) {
        if let Ok(cp) = Checkpoint::parse(&note.text) {
            let _ = tlog::verify_inclusion(
                &proof.path,
                cp.size,
                proof.index,
                &cp.root,
                &tlog::leaf_hash(&leaf),
            );
        }
    }
});
