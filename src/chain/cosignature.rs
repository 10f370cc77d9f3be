//! C2SP tlog-cosignature v1 ([c2sp.org/tlog-cosignature]) with Ed25519: a witness's
//! statement that, at a time, the checkpoint is the largest consistent tree it has seen.
//!
//! The signed message is `cosignature/v1\ntime <unix seconds>\n` followed by the whole
//! checkpoint body. The note signature line is `— <witness name> base64(key id ||
//! timestamp (u64 BE) || Ed25519 signature)`, where the key id is the first four bytes of
//! `SHA-256(name || 0x0A || 0x04 || public key)`. Verifier keys use signature type 0x04:
//! `name+id+base64(0x04 || key)`.
//!
//! Pure code; its one error type is [`CosignatureError`].
//!
//! [c2sp.org/tlog-cosignature]: https://c2sp.org/tlog-cosignature

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::note::{is_key_name_valid, NoteSignature, SignedNote};

/// The signature type byte of Ed25519 cosigner keys.
pub const COSIGNATURE_TYPE: u8 = 0x04;
/// Largest timestamp a cosignature may carry (2^63 - 1).
pub const MAX_TIMESTAMP: u64 = (1 << 63) - 1;

/// What is wrong with a cosignature or a cosigner key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CosignatureError {
    /// A key name or verifier key is not well formed.
    #[error("bad cosigner key: {0}")]
    BadKey(&'static str),
    /// The note has no cosignature by this cosigner, or it does not verify.
    #[error("no valid cosignature by {0}")]
    NotCosigned(String),
}

/// The 4-byte key id of cosigner key `public_key` named `name`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', COSIGNATURE_TYPE]);
    h.update(public_key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The message a cosigner signs for `checkpoint_body` at `timestamp`.
pub fn message(timestamp: u64, checkpoint_body: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_body}").into_bytes()
}

/// A cosigner: its name and Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigner {
    /// The cosigner (witness) name.
    pub name: String,
    /// Its Ed25519 public key.
    pub public_key: [u8; 32],
}

impl Cosigner {
    /// The verifier key text `name+id+base64(0x04 || key)`.
    pub fn verifier_key(&self) -> String {
        let mut key = vec![COSIGNATURE_TYPE];
        key.extend_from_slice(&self.public_key);
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(key_id(&self.name, &self.public_key)),
            B64.encode(key)
        )
    }

    /// Parses a cosigner verifier key; refuses a key id that does not match.
    pub fn parse(text: &str) -> Result<Cosigner, CosignatureError> {
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CosignatureError::BadKey("expected name+id+key"));
        };
        if !is_key_name_valid(name) {
            return Err(CosignatureError::BadKey("invalid key name"));
        }
        let mut idb = [0u8; 4];
        hex::decode_to_slice(id, &mut idb)
            .map_err(|_| CosignatureError::BadKey("the key id is not 8 hex digits"))?;
        let key = B64
            .decode(key)
            .map_err(|_| CosignatureError::BadKey("the key is not base64"))?;
        let Some((&COSIGNATURE_TYPE, rest)) = key.split_first() else {
            return Err(CosignatureError::BadKey(
                "not an Ed25519 cosigner key (type 0x04)",
            ));
        };
        let public_key: [u8; 32] = rest
            .try_into()
            .map_err(|_| CosignatureError::BadKey("an Ed25519 key has 32 bytes"))?;
        if key_id(name, &public_key) != idb {
            return Err(CosignatureError::BadKey(
                "the key id does not match the key",
            ));
        }
        Ok(Cosigner {
            name: name.to_owned(),
            public_key,
        })
    }

    /// The note signature line for `signature` (Ed25519 over [`message`]) at `timestamp`.
    pub fn signature(&self, timestamp: u64, signature: &[u8]) -> NoteSignature {
        let mut sig = timestamp.to_be_bytes().to_vec();
        sig.extend_from_slice(signature);
        NoteSignature {
            name: self.name.clone(),
            id: key_id(&self.name, &self.public_key),
            signature: sig,
        }
    }

    /// Finds this cosigner's signature on `note` and verifies it; returns its timestamp.
    pub fn verify(&self, note: &SignedNote) -> Result<u64, CosignatureError> {
        let not = || CosignatureError::NotCosigned(self.name.clone());
        let id = key_id(&self.name, &self.public_key);
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&self.public_key)
            .map_err(|_| CosignatureError::BadKey("invalid Ed25519 point"))?;
        let s = note
            .signatures
            .iter()
            .find(|s| s.name == self.name && s.id == id)
            .ok_or_else(not)?;
        if s.signature.len() != 8 + 64 {
            return Err(not());
        }
        let (ts, sig) = s.signature.split_at(8);
        let timestamp = u64::from_be_bytes(ts.try_into().map_err(|_| not())?);
        if timestamp > MAX_TIMESTAMP {
            return Err(not());
        }
        let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| not())?;
        vk.verify_strict(&message(timestamp, &note.text), &sig)
            .map_err(|_| not())?;
        Ok(timestamp)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use ed25519_dalek::Signer as _;

    #[test]
    fn sign_format_parse_verify() {
        let k = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
        let c = Cosigner {
            name: "witness.example/w1".into(),
            public_key: k.verifying_key().to_bytes(),
        };
        assert_eq!(Cosigner::parse(&c.verifier_key()).unwrap(), c);
        let body = "example.com/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let msg = message(1_679_315_147, body);
        assert!(msg.starts_with(b"cosignature/v1\ntime 1679315147\nexample.com/log\n"));
        let line = c.signature(1_679_315_147, &k.sign(&msg).to_bytes());
        let note = SignedNote {
            text: body.into(),
            signatures: vec![line],
        };
        let text = note.format();
        let parsed = SignedNote::parse(&text).unwrap();
        assert_eq!(c.verify(&parsed).unwrap(), 1_679_315_147);
        // Another body, another key or a checkpoint (0x01) key id: refused.
        let mut other = parsed.clone();
        other.text = body.replace('5', "6");
        assert!(c.verify(&other).is_err());
        let k2 = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let c2 = Cosigner {
            name: c.name.clone(),
            public_key: k2.verifying_key().to_bytes(),
        };
        assert!(c2.verify(&parsed).is_err());
        assert_ne!(
            key_id(&c.name, &c.public_key),
            crate::chain::note::key_id(&c.name, &c.public_key)
        );
        assert!(
            Cosigner::parse(&crate::chain::note::verifier_key(&c.name, &c.public_key)).is_err()
        );
    }
}
