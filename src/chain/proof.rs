//! C2SP tlog-proof ([c2sp.org/tlog-proof]): an offline-verifiable inclusion proof.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 leaf bytes>          (optional)
//! index <decimal>
//! <base64 hash>                      (the RFC 6962 audit path, leaf's sibling first)
//! ...
//!
//! <signed checkpoint note, verbatim>
//! ```
//!
//! The appliance puts the event's leaf bytes in `extra`, so the proof alone lets a verifier
//! recompute the leaf hash; `extra` is not trusted by itself, the proof and the checkpoint
//! signature are. Pure code; its one error type is [`ProofError`].
//!
//! [c2sp.org/tlog-proof]: https://c2sp.org/tlog-proof

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::tlog::Hash;

/// The first line of a proof.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";
/// Longest audit path read (a tree of at most 2^63 entries needs 63).
const MAX_PATH: usize = 64;

/// What is wrong with a proof's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The text does not follow the format.
    #[error("malformed tlog-proof: {0}")]
    Malformed(&'static str),
}

/// A parsed tlog-proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// The opaque extra data (the leaf bytes, for this appliance's proofs).
    pub extra: Option<Vec<u8>>,
    /// The entry's index.
    pub index: u64,
    /// The inclusion proof.
    pub path: Vec<Hash>,
    /// The signed checkpoint note.
    pub checkpoint: String,
}

impl TlogProof {
    /// The proof's text.
    pub fn format(&self) -> String {
        let mut out = String::from(HEADER);
        out.push('\n');
        if let Some(extra) = &self.extra {
            out.push_str("extra ");
            out.push_str(&B64.encode(extra));
            out.push('\n');
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.path {
            out.push_str(&B64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses a proof's text.
    pub fn parse(text: &str) -> Result<TlogProof, ProofError> {
        let bad = ProofError::Malformed;
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or(bad("no blank line before the checkpoint"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(bad("the first line must be c2sp.org/tlog-proof@v1"));
        }
        let mut line = lines.next().ok_or(bad("no index line"))?;
        let extra = match line.strip_prefix("extra ") {
            Some(b) => {
                let e = B64.decode(b).map_err(|_| bad("extra is not base64"))?;
                line = lines.next().ok_or(bad("no index line"))?;
                Some(e)
            }
            None => None,
        };
        let index = line
            .strip_prefix("index ")
            .filter(|d| {
                !d.is_empty()
                    && d.bytes().all(|b| b.is_ascii_digit())
                    && (d.len() == 1 || !d.starts_with('0'))
            })
            .and_then(|d| d.parse::<u64>().ok())
            .ok_or(bad("the index line must be 'index <decimal>'"))?;
        let mut path = Vec::new();
        for l in lines {
            if path.len() == MAX_PATH {
                return Err(bad("the inclusion proof is too long"));
            }
            let h: Hash = B64
                .decode(l)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or(bad("a proof line is not a base64 SHA-256 hash"))?;
            path.push(h);
        }
        if checkpoint.is_empty() {
            return Err(bad("no checkpoint"));
        }
        Ok(TlogProof {
            extra,
            index,
            path,
            checkpoint: checkpoint.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let p = TlogProof {
            extra: Some(b"leaf".to_vec()),
            index: 73894,
            path: vec![[1; 32], [2; 32]],
            checkpoint: "origin\n5\nAAAA\n\n\u{2014} origin sig\n".into(),
        };
        let text = p.format();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra bGVhZg==\nindex 73894\n"));
        assert!(text.contains("\n\norigin\n5\n"));
        assert_eq!(TlogProof::parse(&text).unwrap(), p);
        let bare = TlogProof {
            extra: None,
            index: 0,
            path: vec![],
            checkpoint: "c\n".into(),
        };
        assert_eq!(bare.format(), "c2sp.org/tlog-proof@v1\nindex 0\n\nc\n");
        assert_eq!(TlogProof::parse(&bare.format()).unwrap(), bare);
    }

    #[test]
    fn malformed_proofs_are_refused() {
        for bad in [
            "",
            "c2sp.org/tlog-proof@v1\nindex 1\n",
            "c2sp.org/tlog-proof@v2\nindex 1\n\ncp\n",
            "c2sp.org/tlog-proof@v1\nindex 01\n\ncp\n",
            "c2sp.org/tlog-proof@v1\nindex -1\n\ncp\n",
            "c2sp.org/tlog-proof@v1\nextra !!\nindex 1\n\ncp\n",
            "c2sp.org/tlog-proof@v1\nindex 1\nAAAA\n\ncp\n",
            "c2sp.org/tlog-proof@v1\nindex 1\n\n",
        ] {
            assert!(TlogProof::parse(bad).is_err(), "{bad:?}");
        }
    }
}
