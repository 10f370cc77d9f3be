//! C2SP signed notes ([c2sp.org/signed-note]) and checkpoints ([c2sp.org/tlog-checkpoint]).
//!
//! A checkpoint body is `<origin>\n<tree size>\n<base64 root hash>\n` followed by optional
//! extension lines. A signed note is the body, a blank line, and one line per signature:
//! `— <key name> <base64(key id || signature)>\n`, where the key id is the first four bytes
//! of `SHA-256(key name || 0x0A || 0x01 || Ed25519 public key)`. Verifier keys are written
//! `<name>+<key id hex>+<base64(0x01 || public key)>`, as Go's `sumdb/note` reads them.
//!
//! Only Ed25519 (signature type 0x01) is produced or checked here. Pure code; its one error
//! type is [`NoteError`].
//!
//! [c2sp.org/signed-note]: https://c2sp.org/signed-note
//! [c2sp.org/tlog-checkpoint]: https://c2sp.org/tlog-checkpoint

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::tlog::Hash;

/// The signature type byte of Ed25519 note keys.
pub const ED25519_TYPE: u8 = 0x01;
/// Most signatures read from one note.
pub const MAX_SIGNATURES: usize = 100;
/// The signature line prefix: an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// What is wrong with a note, a checkpoint or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The text is not a well-formed signed note.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// The body is not a well-formed checkpoint.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
    /// A key name or verifier key is not well formed.
    #[error("bad key: {0}")]
    BadKey(&'static str),
    /// No signature by the expected key, or it does not verify.
    #[error("no valid signature by {0}")]
    NotSigned(String),
}

/// True for a valid key name: non-empty, no Unicode space, no `+`, no control character.
pub fn is_key_name_valid(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// The 4-byte key id of Ed25519 key `public_key` named `name`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519_TYPE]);
    h.update(public_key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The verifier key text `name+id+base64(0x01 || key)`.
pub fn verifier_key(name: &str, public_key: &[u8; 32]) -> String {
    let mut key = vec![ED25519_TYPE];
    key.extend_from_slice(public_key);
    format!(
        "{name}+{}+{}",
        hex::encode(key_id(name, public_key)),
        B64.encode(key)
    )
}

/// A parsed verifier key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    /// The key name.
    pub name: String,
    /// The key id.
    pub id: [u8; 4],
    /// The Ed25519 public key.
    pub public_key: [u8; 32],
}

impl VerifierKey {
    /// Parses `name+hexid+base64key`; refuses a key id that does not match the key.
    pub fn parse(text: &str) -> Result<VerifierKey, NoteError> {
        let text = text.trim();
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey("expected name+id+key"));
        };
        if !is_key_name_valid(name) {
            return Err(NoteError::BadKey("invalid key name"));
        }
        let mut idb = [0u8; 4];
        hex::decode_to_slice(id, &mut idb)
            .map_err(|_| NoteError::BadKey("the key id is not 8 hex digits"))?;
        let key = B64
            .decode(key)
            .map_err(|_| NoteError::BadKey("the key is not base64"))?;
        let Some((&ED25519_TYPE, rest)) = key.split_first() else {
            return Err(NoteError::BadKey("not an Ed25519 key"));
        };
        let public_key: [u8; 32] = rest
            .try_into()
            .map_err(|_| NoteError::BadKey("an Ed25519 key has 32 bytes"))?;
        if key_id(name, &public_key) != idb {
            return Err(NoteError::BadKey("the key id does not match the key"));
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            id: idb,
            public_key,
        })
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key id.
    pub id: [u8; 4],
    /// The signature bytes (after the key id).
    pub signature: Vec<u8>,
}

/// A signed note: its text (ending in a newline) and its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// The signed text.
    pub text: String,
    /// Its signatures, in the order they appear.
    pub signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// Parses the signed-note format.
    pub fn parse(note: &str) -> Result<SignedNote, NoteError> {
        if note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(NoteError::Malformed("control character"));
        }
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let (text, sigs) = (&note[..=split], &note[split + 2..]);
        if !sigs.ends_with('\n') {
            return Err(NoteError::Malformed("does not end in a newline"));
        }
        let mut signatures = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::Malformed("too many signatures"));
            }
            let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
                "a signature line must start with '— '",
            ))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or(NoteError::Malformed("signature line without a signature"))?;
            if !is_key_name_valid(name) {
                return Err(NoteError::Malformed("invalid key name"));
            }
            let raw = B64
                .decode(b64)
                .map_err(|_| NoteError::Malformed("signature is not base64"))?;
            if raw.len() < 5 {
                return Err(NoteError::Malformed("signature too short"));
            }
            signatures.push(NoteSignature {
                name: name.to_owned(),
                id: [raw[0], raw[1], raw[2], raw[3]],
                signature: raw[4..].to_vec(),
            });
        }
        if signatures.is_empty() {
            return Err(NoteError::Malformed("no signature"));
        }
        Ok(SignedNote {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note text with its signature lines.
    pub fn format(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            let mut raw = s.id.to_vec();
            raw.extend_from_slice(&s.signature);
            out.push_str(SIG_PREFIX);
            out.push_str(&s.name);
            out.push(' ');
            out.push_str(&B64.encode(raw));
            out.push('\n');
        }
        out
    }

    /// Checks that `key` signed the text (Ed25519, strict verification).
    pub fn verify(&self, key: &VerifierKey) -> Result<(), NoteError> {
        self.verified_by(key).map(|_| ())
    }

    /// [`Self::verify`], answering the signature line that verified (the first with the
    /// key's name and id), so that a caller keeping the note keeps exactly that line.
    pub fn verified_by(&self, key: &VerifierKey) -> Result<&NoteSignature, NoteError> {
        let not_signed = || NoteError::NotSigned(format!("{}+{}", key.name, hex::encode(key.id)));
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&key.public_key)
            .map_err(|_| NoteError::BadKey("invalid Ed25519 point"))?;
        let line = self
            .signatures
            .iter()
            .find(|s| s.name == key.name && s.id == key.id)
            .ok_or_else(not_signed)?;
        let sig =
            ed25519_dalek::Signature::from_slice(&line.signature).map_err(|_| not_signed())?;
        vk.verify_strict(self.text.as_bytes(), &sig)
            .map_err(|_| not_signed())?;
        Ok(line)
    }
}

/// A tlog checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// The tree size.
    pub size: u64,
    /// The RFC 6962 root hash.
    pub root: Hash,
    /// Extension lines (without their newlines).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The body text, newline-terminated.
    pub fn body(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint body.
    pub fn parse(body: &str) -> Result<Checkpoint, NoteError> {
        let bad = NoteError::MalformedCheckpoint;
        let lines = body
            .strip_suffix('\n')
            .ok_or(bad("does not end in a newline"))?;
        let mut it = lines.split('\n');
        let origin = it
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(bad("no origin"))?;
        let size = it.next().ok_or(bad("no tree size"))?;
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(bad("the tree size is not a decimal number"));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| bad("the tree size is too large"))?;
        let root: Hash = B64
            .decode(it.next().ok_or(bad("no root hash"))?)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(bad("the root hash is not 32 bytes of base64"))?;
        let extensions: Vec<String> = it.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use ed25519_dalek::Signer as _;

    fn key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[7; 32])
    }

    fn signed(name: &str, text: &str) -> SignedNote {
        let k = key();
        SignedNote {
            text: text.to_owned(),
            signatures: vec![NoteSignature {
                name: name.to_owned(),
                id: key_id(name, &k.verifying_key().to_bytes()),
                signature: k.sign(text.as_bytes()).to_bytes().to_vec(),
            }],
        }
    }

    #[test]
    fn keys_and_notes_agree_with_signed_note_crate() {
        let k = key();
        let pk = k.verifying_key().to_bytes();
        let vkey = verifier_key("example.org/log", &pk);
        // The independent implementation builds the same verifier key text.
        assert_eq!(
            vkey,
            signed_note::new_ed25519_verifier_key("example.org/log", &k.verifying_key())
        );
        assert_eq!(
            u32::from_be_bytes(key_id("example.org/log", &pk)),
            signed_note::key_id("example.org/log", &[&[ED25519_TYPE][..], &pk[..]].concat())
        );
        let parsed = VerifierKey::parse(&vkey).unwrap();
        assert_eq!(parsed.public_key, pk);

        let cp = Checkpoint {
            origin: "example.org/log".into(),
            size: 12345,
            root: [9; 32],
            extensions: vec![],
        };
        let note = signed("example.org/log", &cp.body());
        let text = note.format();
        note.verify(&parsed).unwrap();
        // signed_note parses and verifies what we wrote.
        let theirs = signed_note::Note::from_bytes(text.as_bytes()).unwrap();
        let verifier = signed_note::StandardVerifier::new(&vkey).unwrap();
        let (verified, unverified) = theirs
            .verify(&signed_note::VerifierList::new(vec![Box::new(verifier)]))
            .unwrap();
        assert_eq!((verified.len(), unverified.len()), (1, 0));
        assert_eq!(SignedNote::parse(&text).unwrap(), note);
        assert_eq!(Checkpoint::parse(&note.text).unwrap(), cp);
    }

    #[test]
    fn forged_or_foreign_notes_are_refused() {
        let k = key();
        let vk = VerifierKey::parse(&verifier_key("a", &k.verifying_key().to_bytes())).unwrap();
        let mut note = signed("a", "a\n1\nAAAA\n");
        note.text = "a\n2\nAAAA\n".into();
        assert!(matches!(note.verify(&vk), Err(NoteError::NotSigned(_))));
        let other = signed("b", "a\n1\nAAAA\n");
        assert!(other.verify(&vk).is_err());
    }

    #[test]
    fn malformed_inputs_are_refused() {
        for bad in [
            "",
            "text\n",
            "text\n\n",
            "text\n\n\u{2014} name\n",
            "text\n\n- name AAAAAAAA\n",
            "text\n\n\u{2014} name !!!\n",
            "text\n\n\u{2014} name AAAA\n",
            "te\u{7}xt\n\n\u{2014} name AAAAAAAA\n",
            "text\n\n\u{2014} name AAAAAAAA",
        ] {
            assert!(SignedNote::parse(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "",
            "origin\n",
            "origin\n12\n",
            "origin\n012\nAAAA\n",
            "origin\n-1\nAAAA\n",
            "origin\n1\nAAAA\n",
            "origin\n99999999999999999999\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
            "origin\n1\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n\n",
            "origin\n1\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=",
        ] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "a+b",
            "a+0000000+AQ==",
            "a b+00000000+AQ==",
            "a+00000000+AQ==",
        ] {
            assert!(VerifierKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(!is_key_name_valid("has space"));
        assert!(!is_key_name_valid("a+b"));
        assert!(is_key_name_valid("example.org/log"));
    }
}
