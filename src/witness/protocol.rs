//! The C2SP tlog-witness `add-checkpoint` exchange ([c2sp.org/tlog-witness]), both sides,
//! as pure functions.
//!
//! Request body (`POST <prefix>/add-checkpoint`), every line ending in `\n`:
//!
//! ```text
//! old <size of the checkpoint the witness last cosigned, decimal, no leading zeroes>
//! <zero to 63 lines: one base64 hash each, the RFC 6962 consistency proof from old to new>
//!
//! <the signed checkpoint note>
//! ```
//!
//! Answers: 200 with one or more note signature lines (`— <witness> <base64>\n`, the
//! cosignatures), or 409 with `<size>\n` and `Content-Type: text/x.tlog.size` (the size the
//! witness last cosigned), or another 4xx.
//!
//! The witness side parses a body with [`AddCheckpoint::parse`] and formats its answers
//! with [`format_cosignatures`] and [`format_size_body`]; the appliance side builds a body
//! with [`add_checkpoint_body`] and reads the answers with [`parse_cosignatures`] and
//! [`parse_size_body`]. No I/O; its one error type is [`ProtocolError`].
//!
//! [c2sp.org/tlog-witness]: https://c2sp.org/tlog-witness

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::chain::note::{Checkpoint, NoteError, NoteSignature, SignedNote};
use crate::chain::tlog::Hash;

/// The path of the call, after the witness's submission prefix.
pub const ADD_CHECKPOINT_PATH: &str = "/add-checkpoint";
/// Most consistency proof lines a body may carry (the spec's limit).
pub const MAX_PROOF_LINES: usize = 63;
/// Longest checkpoint text (origin, size, root and extension lines, without signatures)
/// this witness takes: the checkpoint is kept as evidence, so its size is bounded.
pub const MAX_CHECKPOINT_TEXT_BYTES: usize = 2048;
/// Media type of a 409 answer's body.
pub const SIZE_MEDIA_TYPE: &str = "text/x.tlog.size";
/// Media type of a 200 answer's body.
pub const COSIGNATURES_MEDIA_TYPE: &str = "text/plain; charset=utf-8";

/// The signature line prefix: an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// What is wrong with a request body or a witness's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The request body does not have the add-checkpoint form.
    #[error("malformed add-checkpoint body: {0}")]
    Malformed(&'static str),
    /// The checkpoint note, or its checkpoint body, is malformed.
    #[error("malformed checkpoint note: {0}")]
    Note(#[from] NoteError),
    /// A witness's answer does not have the form the spec gives it.
    #[error("malformed witness answer: {0}")]
    MalformedAnswer(&'static str),
}

/// A parsed add-checkpoint request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size the client says the witness last cosigned.
    pub old_size: u64,
    /// The consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note as submitted (signatures unverified).
    pub note: SignedNote,
    /// The note's text, parsed as a checkpoint.
    pub checkpoint: Checkpoint,
}

/// Parses a decimal with no leading zeroes (`0` itself allowed) that fits a `u64`.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

impl AddCheckpoint {
    /// Parses a request body. Refuses anything not exactly in the spec's form: a bad old
    /// size line, a proof line that is not one base64 SHA-256 hash, more than 63 of them, no
    /// empty line, a malformed signed note or checkpoint, or a checkpoint text over
    /// [`MAX_CHECKPOINT_TEXT_BYTES`].
    pub fn parse(body: &[u8]) -> Result<AddCheckpoint, ProtocolError> {
        use ProtocolError::Malformed;
        let text = std::str::from_utf8(body).map_err(|_| Malformed("not UTF-8"))?;
        let (first, mut rest) = text.split_once('\n').ok_or(Malformed("no old size line"))?;
        let old_size = first
            .strip_prefix("old ")
            .ok_or(Malformed("the first line must be `old <size>`"))
            .and_then(|s| {
                parse_decimal(s).ok_or(Malformed(
                    "the old size is not a decimal number without leading zeroes",
                ))
            })?;
        let mut proof = Vec::new();
        loop {
            let (line, tail) = rest
                .split_once('\n')
                .ok_or(Malformed("no empty line before the checkpoint"))?;
            rest = tail;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(Malformed("more than 63 consistency proof lines"));
            }
            let hash: Hash = B64
                .decode(line)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or(Malformed(
                    "a consistency proof line is not one base64 SHA-256 hash",
                ))?;
            proof.push(hash);
        }
        let note = SignedNote::parse(rest)?;
        if note.text.len() > MAX_CHECKPOINT_TEXT_BYTES {
            return Err(Malformed("the checkpoint text is longer than 2048 bytes"));
        }
        let checkpoint = Checkpoint::parse(&note.text)?;
        Ok(AddCheckpoint {
            old_size,
            proof,
            note,
            checkpoint,
        })
    }

    /// The request body, in the form [`Self::parse`] reads.
    pub fn format(&self) -> String {
        body(self.old_size, &self.proof, &self.note.format())
    }
}

fn body(old_size: u64, proof: &[Hash], note: &str) -> String {
    let mut out = String::with_capacity(16 + proof.len() * 45 + note.len());
    out.push_str("old ");
    out.push_str(&old_size.to_string());
    out.push('\n');
    for h in proof {
        out.push_str(&B64.encode(h));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(note);
    out
}

/// The client side: the add-checkpoint body for `checkpoint_note` (a signed checkpoint, as
/// the appliance publishes it) with the consistency proof `proof` from `old_size`, the size
/// the witness last cosigned (0 the first time).
///
/// Refuses a proof of more than 63 hashes and a note that is not a signed checkpoint, so
/// that nothing the witness must refuse as malformed is sent.
pub fn add_checkpoint_body(
    old_size: u64,
    proof: &[Hash],
    checkpoint_note: &str,
) -> Result<String, ProtocolError> {
    if proof.len() > MAX_PROOF_LINES {
        return Err(ProtocolError::Malformed(
            "more than 63 consistency proof lines",
        ));
    }
    let note = SignedNote::parse(checkpoint_note)?;
    Checkpoint::parse(&note.text)?;
    Ok(body(old_size, proof, checkpoint_note))
}

/// One note signature line: `— <name> base64(key id || signature)\n`.
pub fn signature_line(signature: &NoteSignature) -> String {
    let mut raw = Vec::with_capacity(4 + signature.signature.len());
    raw.extend_from_slice(&signature.id);
    raw.extend_from_slice(&signature.signature);
    format!("{SIG_PREFIX}{} {}\n", signature.name, B64.encode(raw))
}

/// The witness side: the 200 answer's body, one signature line per cosignature.
pub fn format_cosignatures(signatures: &[NoteSignature]) -> String {
    signatures.iter().map(signature_line).collect()
}

/// The client side: reads a 200 answer's `body` (signature lines) for the checkpoint whose
/// note text is `checkpoint_text`, and returns the checkpoint with those signatures, ready
/// for [`Cosigner::verify`](crate::chain::cosignature::Cosigner::verify). As the spec suggests,
/// the lines are read as the signatures of a note made of the checkpoint text and them.
pub fn parse_cosignatures(checkpoint_text: &str, body: &str) -> Result<SignedNote, ProtocolError> {
    use ProtocolError::MalformedAnswer;
    if body.is_empty() {
        return Err(MalformedAnswer("no signature line"));
    }
    if !body.ends_with('\n') {
        return Err(MalformedAnswer("does not end in a newline"));
    }
    if body.starts_with('\n') || body.contains("\n\n") {
        return Err(MalformedAnswer("an empty line among the signature lines"));
    }
    let mut note = String::with_capacity(checkpoint_text.len() + 1 + body.len());
    note.push_str(checkpoint_text);
    note.push('\n');
    note.push_str(body);
    let parsed = SignedNote::parse(&note)
        .map_err(|_| MalformedAnswer("the lines are not note signature lines"))?;
    if parsed.text != checkpoint_text {
        return Err(MalformedAnswer("the checkpoint text is not a note text"));
    }
    Ok(parsed)
}

/// The witness side: a 409 answer's body, `<size>\n`.
pub fn format_size_body(size: u64) -> String {
    format!("{size}\n")
}

/// The client side: reads a 409 answer's body, `<size>\n` (the size the witness last
/// cosigned, to use as the next old size).
pub fn parse_size_body(body: &str) -> Result<u64, ProtocolError> {
    body.strip_suffix('\n')
        .and_then(parse_decimal)
        .ok_or(ProtocolError::MalformedAnswer(
            "a 409 body is a decimal size and a newline",
        ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::chain::cosignature::Cosigner;
    use crate::chain::note::{key_id, verifier_key, VerifierKey};
    use crate::chain::tlog;
    use ed25519_dalek::Signer as _;
    use proptest::prelude::*;

    fn signed_checkpoint(size: u64, root: Hash) -> (String, VerifierKey) {
        let k = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let pk = k.verifying_key().to_bytes();
        let cp = Checkpoint {
            origin: "example.com/behind-the-sofa".into(),
            size,
            root,
            extensions: vec![],
        };
        let text = cp.body();
        let note = SignedNote {
            signatures: vec![NoteSignature {
                name: cp.origin.clone(),
                id: key_id(&cp.origin, &pk),
                signature: k.sign(text.as_bytes()).to_bytes().to_vec(),
            }],
            text,
        };
        let vk = VerifierKey::parse(&verifier_key(&cp.origin, &pk)).unwrap();
        (note.format(), vk)
    }

    #[test]
    fn the_spec_example_parses() {
        let body = "old 20852014\n\
            PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\
            jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\
            5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n\
            /6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\
            \n\
            example.com/behind-the-sofa\n\
            20852163\n\
            CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\
            \n\
            \u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\
            \u{2014} example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n";
        let req = AddCheckpoint::parse(body.as_bytes()).unwrap();
        assert_eq!(req.old_size, 20_852_014);
        assert_eq!(req.proof.len(), 4);
        assert_eq!(req.checkpoint.origin, "example.com/behind-the-sofa");
        assert_eq!(req.checkpoint.size, 20_852_163);
        assert_eq!(req.note.signatures.len(), 2);
        assert_eq!(req.format(), body);
    }

    #[test]
    fn client_body_round_trips_and_checks_its_input() {
        let (note, vk) = signed_checkpoint(8, [5; 32]);
        let proof = vec![[1u8; 32], [2; 32]];
        let body = add_checkpoint_body(3, &proof, &note).unwrap();
        assert!(body.starts_with("old 3\nAQEB"));
        let req = AddCheckpoint::parse(body.as_bytes()).unwrap();
        assert_eq!((req.old_size, req.proof.clone()), (3, proof));
        req.note.verify(&vk).unwrap();
        assert_eq!(
            add_checkpoint_body(0, &[], &note).unwrap(),
            format!("old 0\n\n{note}")
        );
        assert!(add_checkpoint_body(0, &[[0; 32]; 64], &note).is_err());
        assert!(add_checkpoint_body(0, &[], "not a note\n").is_err());
        assert!(add_checkpoint_body(0, &[], "text\n\n\u{2014} a AAAAAAAA\n").is_err());
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let (note, _) = signed_checkpoint(8, [5; 32]);
        let h = B64.encode([7u8; 32]);
        let many = format!("{h}\n").repeat(64);
        for bad in [
            String::new(),
            "old 1".into(),
            format!("old\n\n{note}"),
            format!("old \n\n{note}"),
            format!("old 01\n\n{note}"),
            format!("old -1\n\n{note}"),
            format!("old +1\n\n{note}"),
            format!("old 1 \n\n{note}"),
            format!("old 18446744073709551616\n\n{note}"),
            format!("Old 1\n\n{note}"),
            format!("old 1\r\n\n{note}"),
            format!("old 1\n{note}"),
            format!("old 1\n{h}\n"),
            format!("old 1\n{h}x\n\n{note}"),
            format!("old 1\nAAAA\n\n{note}"),
            format!("old 1\n{many}\n{note}"),
            "old 1\n\n".into(),
            "old 1\n\nexample.com/log\n1\nAAAA\n\n\u{2014} a AAAAAAAA\n".into(),
            format!("old 1\n\n{}", note.replace('\u{2014}', "-")),
            format!(
                "old 1\n\nexample.com/log\n1\n{}\n{}\n\n\u{2014} a AAAAAAAA\n",
                B64.encode([0u8; 32]),
                "x".repeat(MAX_CHECKPOINT_TEXT_BYTES)
            ),
        ] {
            assert!(AddCheckpoint::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(AddCheckpoint::parse(&[0xff, b'\n']).is_err());
        // 63 proof lines are fine.
        let ok = format!("old 1\n{}\n{note}", format!("{h}\n").repeat(63));
        assert_eq!(AddCheckpoint::parse(ok.as_bytes()).unwrap().proof.len(), 63);
    }

    #[test]
    fn answers_round_trip_and_cosignatures_verify() {
        let (note, _) = signed_checkpoint(8, tlog::EMPTY_TREE_HASH);
        let text = SignedNote::parse(&note).unwrap().text;
        let k = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let w = Cosigner {
            name: "witness.example/w1".into(),
            public_key: k.verifying_key().to_bytes(),
        };
        let t = 1_700_000_000;
        let sig = k.sign(&crate::chain::cosignature::message(t, &text));
        let line = w.signature(t, &sig.to_bytes());
        let body = format_cosignatures(std::slice::from_ref(&line));
        assert!(body.starts_with("\u{2014} witness.example/w1 "));
        assert_eq!(body.matches('\n').count(), 1);
        let cosigned = parse_cosignatures(&text, &body).unwrap();
        assert_eq!(cosigned.signatures, vec![line]);
        assert_eq!(w.verify(&cosigned).unwrap(), t);
        for bad in [
            "",
            "\n",
            "x\n",
            "\u{2014} a AAAAAAAA",
            "\u{2014} a AAAAAAAA\n\n",
        ] {
            assert!(parse_cosignatures(&text, bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_size_body(&format_size_body(42)).unwrap(), 42);
        assert_eq!(parse_size_body("0\n").unwrap(), 0);
        for bad in ["", "42", "042\n", "4 2\n", "-1\n", "42\n\n"] {
            assert!(parse_size_body(bad).is_err(), "{bad:?}");
        }
    }

    fn arb_checkpoint() -> impl Strategy<Value = (Checkpoint, Vec<NoteSignature>)> {
        let sig = (
            "[a-z.]{1,20}/[a-z0-9]{1,8}",
            any::<[u8; 4]>(),
            proptest::collection::vec(any::<u8>(), 1..80),
        )
            .prop_map(|(name, id, signature)| NoteSignature {
                name,
                id,
                signature,
            });
        (
            "[a-z0-9.-]{1,30}(/[a-z0-9]{1,10})?",
            any::<u64>(),
            any::<[u8; 32]>(),
            proptest::collection::vec("[ -~]{1,40}", 0..3),
            proptest::collection::vec(sig, 1..4),
        )
            .prop_map(|(origin, size, root, extensions, sigs)| {
                (
                    Checkpoint {
                        origin,
                        size,
                        root,
                        extensions,
                    },
                    sigs,
                )
            })
    }

    proptest! {
        #[test]
        fn bodies_round_trip(
            old in any::<u64>(),
            proof in proptest::collection::vec(any::<[u8; 32]>(), 0..=63),
            (cp, signatures) in arb_checkpoint(),
        ) {
            let note = SignedNote { text: cp.body(), signatures };
            let body = add_checkpoint_body(old, &proof, &note.format()).unwrap();
            let req = AddCheckpoint::parse(body.as_bytes()).unwrap();
            prop_assert_eq!(req.old_size, old);
            prop_assert_eq!(&req.proof, &proof);
            prop_assert_eq!(&req.checkpoint, &cp);
            prop_assert_eq!(&req.note, &note);
            prop_assert_eq!(req.format(), body);
            let answer = format_cosignatures(&note.signatures);
            prop_assert_eq!(parse_cosignatures(&note.text, &answer).unwrap(), note);
            prop_assert_eq!(parse_size_body(&format_size_body(old)).unwrap(), old);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = AddCheckpoint::parse(&bytes);
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_cosignatures(&text, &text);
            let _ = parse_size_body(&text);
        }

        #[test]
        fn near_miss_bodies_never_panic(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("old ".to_string()),
                    Just("\n".to_string()),
                    Just("\u{2014} ".to_string()),
                    Just("0".to_string()),
                    Just("12".to_string()),
                    Just("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_string()),
                    Just("example.com/log".to_string()),
                    Just(" ".to_string()),
                    Just("\u{0}".to_string()),
                    "[ -~]{0,8}",
                ],
                0..40,
            )
        ) {
            let body = parts.concat();
            if let Ok(req) = AddCheckpoint::parse(body.as_bytes()) {
                // Whatever parses formats back to the same bytes.
                prop_assert_eq!(req.format(), body);
            }
        }
    }
}
