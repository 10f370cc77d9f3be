//! Offline checks of one event's proof: a proof bundle (`GET /v1/events/{i}`: the event,
//! its leaf bytes, the inclusion proof, the signed checkpoint and the block that seals it)
//! or a bare C2SP tlog-proof, against a chain key (a note verifier key) and, for a
//! bundle's block token, trusted roots.
//!
//! [`ProofInput::parse`] reads the input (what cannot be read at all is a [`ProofError`]);
//! [`ProofInput::check`] runs every check and returns them in order, each [`Check`] with
//! its [`CheckState`] and a detail for people: `leaf`, `checkpoint`, `inclusion`, then
//! (a bundle) `tlog-proof`, `header`, `header-tree`, `header-signature` and `token`. A
//! check that cannot run because an earlier one failed is [`CheckState::NotChecked`];
//! one the input cannot have (a bare tlog-proof has no block) is [`CheckState::Skipped`].
//! The proof is valid when no check failed.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::Value;

use super::chain::{ed25519_key_id, tiles};
use super::TokenOptions;
use crate::chain::block::SealedBlock;
use crate::chain::event::StoredEvent;
use crate::chain::note::{Checkpoint, SignedNote, VerifierKey};
use crate::chain::proof::TlogProof;
use crate::chain::tlog::{self, Hash};
use crate::tsp::HashAlgorithm;

/// Why a proof could not be checked at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// A tlog-proof (by its header line) that does not parse: an invalid proof.
    #[error("{0}")]
    Malformed(String),
    /// It looks like a bundle but is not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// Neither a proof bundle (JSON) nor a tlog-proof.
    #[error(
        "neither a proof bundle (JSON) nor a tlog-proof ({})",
        crate::chain::proof::HEADER
    )]
    Unrecognised,
}

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckState {
    /// It passed.
    Ok,
    /// It failed: the proof is invalid.
    Fail,
    /// Not asked for by the options, or not possible for this input.
    Skipped,
    /// Not reached: an earlier check failed.
    NotChecked,
}

/// One check, with what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The check's name (`leaf`, `inclusion`, ..., or a token rule's).
    pub name: &'static str,
    /// How it ended.
    pub state: CheckState,
    /// What it found, or why it failed, for people.
    pub detail: String,
}

impl Check {
    /// A check named `name`.
    pub fn new(name: &'static str, state: CheckState, detail: impl Into<String>) -> Check {
        Check {
            name,
            state,
            detail: detail.into(),
        }
    }
}

/// A proof as read: a bare tlog-proof, or a bundle (its text and JSON).
#[derive(Debug)]
pub enum ProofInput<'a> {
    /// A bare C2SP tlog-proof: no block.
    TlogProof(TlogProof),
    /// A proof bundle.
    Bundle {
        /// The bundle as sent (its event is compared exactly, as written).
        text: &'a str,
        /// The bundle, parsed.
        json: Value,
    },
}

impl<'a> ProofInput<'a> {
    /// Reads `text`: a tlog-proof (by its header line) or a JSON bundle.
    pub fn parse(text: &'a str) -> Result<ProofInput<'a>, ProofError> {
        let trimmed = text.trim_start();
        if trimmed.starts_with(crate::chain::proof::HEADER) {
            return TlogProof::parse(trimmed)
                .map(ProofInput::TlogProof)
                .map_err(|e| ProofError::Malformed(e.to_string()));
        }
        if !trimmed.starts_with('{') {
            return Err(ProofError::Unrecognised);
        }
        let json = serde_json::from_str(text).map_err(|e| ProofError::NotJson(e.to_string()))?;
        Ok(ProofInput::Bundle { text, json })
    }

    /// `tlog-proof` or `bundle`.
    pub fn form(&self) -> &'static str {
        match self {
            ProofInput::TlogProof(_) => "tlog-proof",
            ProofInput::Bundle { .. } => "bundle",
        }
    }

    /// Whether checking needs trusted roots (a bundle's block token does).
    pub fn needs_roots(&self) -> bool {
        matches!(self, ProofInput::Bundle { .. })
    }

    /// Every check, in order, against the chain key `key` and (for a bundle's block
    /// token) `roots`.
    pub fn check(&self, key: &VerifierKey, roots: &[x509_cert::Certificate]) -> Vec<Check> {
        let mut checks = Vec::new();
        match self {
            ProofInput::TlogProof(p) => {
                proof_core(
                    &mut checks,
                    key,
                    ProofParts {
                        index: Some(p.index),
                        leaf: p.extra.as_deref().ok_or_else(|| {
                            "the tlog-proof has no extra (the leaf bytes)".to_owned()
                        }),
                        claimed_leaf_hash: None,
                        claimed_event: None,
                        tree_size: None,
                        path: Ok(&p.path),
                        checkpoint: Some(&p.checkpoint),
                    },
                );
                let why = "not checked: a bare tlog-proof has no block (only leaf, inclusion and checkpoint can be checked)";
                for name in ["header", "header-tree", "header-signature", "token"] {
                    checks.push(Check::new(name, CheckState::Skipped, why));
                }
            }
            ProofInput::Bundle { text, json } => check_bundle(&mut checks, key, roots, text, json),
        }
        checks
    }
}

/// RFC 3339, for details.
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "?".into())
}

/// A certificate's subject, for details.
pub(crate) fn subject_of(cert: &x509_cert::Certificate) -> String {
    cert.tbs_certificate.subject.to_string()
}

/// A proof bundle's parts, as found (each may be missing or malformed: the check that
/// needs it says so).
struct Bundle {
    index: Option<u64>,
    leaf: Result<Vec<u8>, String>,
    leaf_hash: Option<String>,
    tree_size: Option<u64>,
    path: Result<Vec<Hash>, String>,
    checkpoint: Option<String>,
    tlog_proof: Option<String>,
    block: Option<Value>,
}

fn parse_bundle(v: &Value) -> Bundle {
    let b64 = |name: &str| -> Result<Vec<u8>, String> {
        let text = v
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the bundle has no {name}"))?;
        B64.decode(text)
            .map_err(|_| format!("{name} is not base64"))
    };
    let path = match v.get("inclusion_proof").and_then(Value::as_array) {
        None => Err("the bundle has no inclusion_proof list".to_owned()),
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, h)| {
                h.as_str()
                    .and_then(|s| B64.decode(s).ok())
                    .and_then(|b| Hash::try_from(b).ok())
                    .ok_or_else(|| format!("inclusion_proof[{i}] is not a base64 SHA-256 hash"))
            })
            .collect(),
    };
    Bundle {
        index: v
            .get("event")
            .and_then(|e| e.get("index"))
            .and_then(Value::as_u64),
        leaf: b64("leaf"),
        leaf_hash: v
            .get("leaf_hash")
            .and_then(Value::as_str)
            .map(str::to_owned),
        tree_size: v.get("tree_size").and_then(Value::as_u64),
        path,
        checkpoint: v
            .get("checkpoint")
            .and_then(Value::as_str)
            .map(str::to_owned),
        tlog_proof: v
            .get("tlog_proof")
            .and_then(Value::as_str)
            .map(str::to_owned),
        block: v.get("block").cloned(),
    }
}

/// What a proof says, bundle or tlog-proof (each part may be missing: the check that needs
/// it says so).
struct ProofParts<'a> {
    /// The event's index.
    index: Option<u64>,
    /// The leaf bytes.
    leaf: Result<&'a [u8], String>,
    /// The leaf hash shown beside them (hex).
    claimed_leaf_hash: Option<&'a str>,
    /// The event shown beside them: its JSON text as found, or why it could not be found.
    claimed_event: Option<Result<&'a str, String>>,
    /// The tree size the proof is for.
    tree_size: Option<u64>,
    /// The inclusion proof.
    path: Result<&'a [Hash], String>,
    /// The signed checkpoint note.
    checkpoint: Option<&'a str>,
}

/// The checks every proof has: leaf, checkpoint, inclusion. Returns the checkpoint when
/// its signature verified.
fn proof_core(
    checks: &mut Vec<Check>,
    key: &VerifierKey,
    parts: ProofParts<'_>,
) -> Option<Checkpoint> {
    let ProofParts {
        index,
        leaf,
        claimed_leaf_hash,
        claimed_event,
        tree_size,
        path,
        checkpoint,
    } = parts;
    // The leaf.
    let mut leaf_hash = None;
    let leaf_check = (|| -> Result<String, String> {
        let leaf = leaf?;
        let h = tlog::leaf_hash(leaf);
        leaf_hash = Some(h);
        if let Some(claimed) = claimed_leaf_hash {
            if claimed != hex::encode(h) {
                return Err(format!(
                    "the leaf bytes hash to {}, not to the leaf_hash {claimed}",
                    hex::encode(h)
                ));
            }
        }
        let event = StoredEvent::from_leaf_bytes(leaf)
            .map_err(|e| format!("the leaf bytes are not an event: {e}"))?;
        let index = index.ok_or("no event index in the proof")?;
        if event.index != index {
            return Err(format!(
                "the leaf is event {}, but the proof is for event {index}",
                event.index
            ));
        }
        if let Some(claimed) = claimed_event {
            // Compared exactly, in canonical form: a repeated key or a number written
            // otherwise than in the leaf is a difference, though a JSON `Value` would hide it.
            let exact = |text: &str| crate::chain::exact_json::canonical(text, "event", 128);
            let claimed = claimed
                .and_then(|text| exact(text).map_err(|e| e.to_string()))
                .map_err(|e| format!("the event shown cannot be read exactly: {e}"))?;
            let stored = serde_json::to_string(&event.view())
                .map_err(|e| e.to_string())
                .and_then(|text| exact(&text).map_err(|e| e.to_string()))
                .map_err(|e| format!("the leaf's event cannot be shown: {e}"))?;
            if claimed != stored {
                return Err("the event shown is not what the leaf bytes say".into());
            }
        }
        Ok(format!(
            "event {index} ({} by {}), leaf hash {}",
            event.event.action.name(),
            event.event.auditor,
            hex::encode(h)
        ))
    })();
    checks.push(match leaf_check {
        Ok(d) => Check::new("leaf", CheckState::Ok, d),
        Err(e) => Check::new("leaf", CheckState::Fail, e),
    });

    // The checkpoint's signature.
    let cp = (|| -> Result<(Checkpoint, String), String> {
        let text = checkpoint.ok_or("the proof has no checkpoint")?;
        let signed = SignedNote::parse(text).map_err(|e| format!("not a signed note: {e}"))?;
        let cp = Checkpoint::parse(&signed.text).map_err(|e| format!("not a checkpoint: {e}"))?;
        if cp.origin != key.name {
            return Err(format!(
                "its origin is {:?}, but --key names {:?}",
                cp.origin, key.name
            ));
        }
        signed
            .verify(key)
            .map_err(|e| format!("the signature does not verify with --key: {e}"))?;
        let detail = format!(
            "{} size {} signed by {}+{}",
            cp.origin,
            cp.size,
            key.name,
            hex::encode(key.id)
        );
        Ok((cp, detail))
    })();

    let verified = match cp {
        Ok((cp, d)) => {
            checks.push(Check::new("checkpoint", CheckState::Ok, d));
            Some(cp)
        }
        Err(e) => {
            checks.push(Check::new("checkpoint", CheckState::Fail, e));
            None
        }
    };
    // The inclusion proof against the checkpoint's root (checked even when the signature
    // is not, to say which is wrong).
    let parsed_cp = checkpoint
        .and_then(|t| SignedNote::parse(t).ok())
        .and_then(|s| Checkpoint::parse(&s.text).ok());
    let inclusion = (|| -> Result<String, String> {
        let path = path?;
        let cp = parsed_cp
            .as_ref()
            .ok_or("no readable checkpoint to check against")?;
        let index = index.ok_or("no event index")?;
        let leaf_hash = leaf_hash.ok_or("no leaf to check")?;
        if let Some(size) = tree_size {
            if size != cp.size {
                return Err(format!(
                    "the proof is for tree size {size}, the checkpoint's is {}",
                    cp.size
                ));
            }
        }
        tlog::verify_inclusion(path, cp.size, index, &cp.root, &leaf_hash).map_err(|e| {
            format!("the inclusion proof does not lead to the checkpoint's root: {e}")
        })?;
        Ok(format!(
            "{} hashes from event {index} to the root of tree size {}",
            path.len(),
            cp.size
        ))
    })();
    checks.push(match inclusion {
        Ok(d) => Check::new("inclusion", CheckState::Ok, d),
        Err(e) => Check::new("inclusion", CheckState::Fail, e),
    });
    verified
}

/// The checks of a bundle: leaf, checkpoint, inclusion, its tlog_proof, the block.
fn check_bundle(
    checks: &mut Vec<Check>,
    key: &VerifierKey,
    roots: &[x509_cert::Certificate],
    text: &str,
    json: &Value,
) {
    let b = parse_bundle(json);
    /// The event of a bundle, as its text.
    #[derive(serde::Deserialize)]
    struct Shown<'a> {
        #[serde(borrow)]
        event: Option<&'a serde_json::value::RawValue>,
    }
    let shown = match serde_json::from_str::<Shown<'_>>(text) {
        // `Option` reads an `"event": null` as None: it is an event shown all the same.
        Ok(Shown { event }) => event
            .map(|e| Ok(e.get()))
            .or_else(|| json.get("event").map(|_| Ok("null"))),
        Err(e) => Some(Err(e.to_string())),
    };
    let cp = proof_core(
        checks,
        key,
        ProofParts {
            index: b.index,
            leaf: b.leaf.as_deref().map_err(Clone::clone),
            claimed_leaf_hash: b.leaf_hash.as_deref(),
            claimed_event: shown,
            tree_size: b.tree_size,
            path: b.path.as_deref().map_err(Clone::clone),
            checkpoint: b.checkpoint.as_deref(),
        },
    );
    // The bundle's tlog_proof must say the same.
    if let Some(tp) = &b.tlog_proof {
        let same = TlogProof::parse(tp).ok().is_some_and(|p| {
            Some(p.index) == b.index
                && p.extra.as_deref() == b.leaf.as_deref().ok()
                && Ok(p.path.as_slice()) == b.path.as_deref().map_err(|_| ())
                && Some(p.checkpoint.as_str()) == b.checkpoint.as_deref()
        });
        checks.push(if same {
            Check::new(
                "tlog-proof",
                CheckState::Ok,
                "says the same index, leaf, proof and checkpoint",
            )
        } else {
            Check::new(
                "tlog-proof",
                CheckState::Fail,
                "the bundle's tlog_proof does not say the same as its other fields",
            )
        });
    }
    // The block.
    let block = b
        .block
        .as_ref()
        .ok_or_else(|| "the bundle has no block".to_owned())
        .and_then(tiles::block_from_json);
    let block = match block {
        Ok(block) => {
            checks.push(Check::new(
                "header",
                CheckState::Ok,
                format!(
                    "block {}: header bytes decode and match the block's fields",
                    block.header.height
                ),
            ));
            Some(block)
        }
        Err(e) => {
            checks.push(Check::new("header", CheckState::Fail, e));
            None
        }
    };
    check_block(checks, block.as_ref(), cp.as_ref(), key, roots);
}

/// The header's tree against the checkpoint, its signature, its token.
fn check_block(
    checks: &mut Vec<Check>,
    block: Option<&SealedBlock>,
    cp: Option<&Checkpoint>,
    key: &VerifierKey,
    roots: &[x509_cert::Certificate],
) {
    let Some(block) = block else {
        for name in ["header-tree", "header-signature", "token"] {
            checks.push(Check::new(
                name,
                CheckState::NotChecked,
                "not checked: no readable header",
            ));
        }
        return;
    };
    let h = &block.header;
    checks.push(match cp {
        None => Check::new(
            "header-tree",
            CheckState::NotChecked,
            "not checked: no verified checkpoint to compare with",
        ),
        Some(cp) if cp.size == h.tree_size && cp.root == h.root => Check::new(
            "header-tree",
            CheckState::Ok,
            format!("tree size {} and root are the checkpoint's", h.tree_size),
        ),
        Some(cp) => Check::new(
            "header-tree",
            CheckState::Fail,
            format!(
                "the header seals tree size {} (root {}), the checkpoint states {} (root {})",
                h.tree_size,
                hex::encode(h.root),
                cp.size,
                hex::encode(cp.root)
            ),
        ),
    });
    let signature = (|| -> Result<String, String> {
        let id = ed25519_key_id(&key.public_key);
        if h.key_id != id {
            return Err(format!(
                "the header's key id {} is not --key's ({})",
                hex::encode(h.key_id),
                hex::encode(id)
            ));
        }
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&key.public_key)
            .map_err(|_| "--key is not a valid Ed25519 key".to_owned())?;
        let sig = ed25519_dalek::Signature::from_slice(&block.signature)
            .map_err(|_| "the signature is not 64 bytes".to_owned())?;
        vk.verify_strict(&h.encode(), &sig).map_err(|_| {
            "the Ed25519 signature over the header does not verify with --key".to_owned()
        })?;
        Ok(format!("Ed25519 by key id {}", hex::encode(id)))
    })();
    checks.push(match signature {
        Ok(d) => Check::new("header-signature", CheckState::Ok, d),
        Err(e) => Check::new("header-signature", CheckState::Fail, e),
    });
    let header_hash = h.hash();
    let opts = TokenOptions {
        imprint: Some((HashAlgorithm::Sha256, &header_hash)),
        ..TokenOptions::new(roots)
    };
    checks.push(match crate::verify::verify_token(&block.token, &opts) {
        Ok(v) => Check::new(
            "token",
            CheckState::Ok,
            format!(
                "RFC 3161 over SHA-256(header) {}, genTime {}, by {} ({})",
                hex::encode(header_hash),
                rfc3339(v.tst_info.gen_time.to_system_time()),
                subject_of(&v.signer),
                v.signature_algorithm
            ),
        ),
        Err(e) => Check::new("token", CheckState::Fail, format!("[{}] {e}", e.rule())),
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn inputs_are_told_apart() {
        assert_eq!(
            ProofInput::parse("hello").unwrap_err(),
            ProofError::Unrecognised
        );
        assert!(matches!(
            ProofInput::parse("{not json").unwrap_err(),
            ProofError::NotJson(_)
        ));
        let header = crate::chain::proof::HEADER;
        assert!(matches!(
            ProofInput::parse(&format!("{header}\nnonsense\n")).unwrap_err(),
            ProofError::Malformed(_)
        ));
        let bundle = ProofInput::parse("  {\"event\": null}").unwrap();
        assert_eq!(bundle.form(), "bundle");
        assert!(bundle.needs_roots());
    }

    #[test]
    fn an_empty_bundle_fails_every_check_it_reaches() {
        let key = VerifierKey {
            name: "example.org/log".into(),
            id: [0; 4],
            public_key: [0; 32],
        };
        let checks = ProofInput::parse("{}").unwrap().check(&key, &[]);
        let states: Vec<_> = checks.iter().map(|c| (c.name, c.state)).collect();
        assert_eq!(
            states,
            [
                ("leaf", CheckState::Fail),
                ("checkpoint", CheckState::Fail),
                ("inclusion", CheckState::Fail),
                ("header", CheckState::Fail),
                ("header-tree", CheckState::NotChecked),
                ("header-signature", CheckState::NotChecked),
                ("token", CheckState::NotChecked),
            ]
        );
    }
}
