//! Checkpoints and the texts around them: signed notes, checkpoint bodies, verifier keys,
//! cosigner keys, tile paths. Whatever parses formats back to itself. Never a panic.
#![no_main]

use auditstamp::chain::cosignature::Cosigner;
use auditstamp::chain::note::{Checkpoint, SignedNote, VerifierKey};
use auditstamp::chain::tlog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(note) = SignedNote::parse(text) {
        assert_eq!(SignedNote::parse(&note.format()).as_ref(), Ok(&note));
        if let Ok(cp) = Checkpoint::parse(&note.text) {
            assert_eq!(cp.body(), note.text);
        }
    }
    if let Ok(cp) = Checkpoint::parse(text) {
        assert_eq!(Checkpoint::parse(&cp.body()).as_ref(), Ok(&cp));
    }
    let _ = VerifierKey::parse(text);
    let _ = Cosigner::parse(text);
    if let Ok((_, tile)) = tlog::parse_tile_path(text) {
        assert!(tile.width() >= 1);
    }
});
