//! Offline audit of a whole event chain: every event re-hashed, every block and the
//! checkpoint checked, in one pass and constant memory.
//!
//! The caller feeds events in index order ([`ChainAudit::event`]), and each block once the
//! events it seals have been fed ([`ChainAudit::block`]); at the end,
//! [`ChainAudit::checkpoint`] checks the signed checkpoint against the last block. The
//! audit keeps only the Merkle tree's right frontier (at most 64 hashes), so a log of any
//! size is audited in constant memory. Each [`ChainAudit::event`] returns the stored
//! hashes the event adds to the tree, in stored-hash order, so a caller holding a store's
//! hashes can compare them one by one and name the first event whose hash differs.
//!
//! Every failure is an [`AuditError`] naming the event index or block height at fault.
//!
//! [`tiles`] holds the drivers that feed an audit from where a log is (an export, a live
//! appliance, any streams of events, blocks and stored hashes), with their own error type.

pub mod tiles;

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::chain::block::SealedBlock;
use crate::chain::event::StoredEvent;
use crate::chain::note::{Checkpoint, SignedNote, VerifierKey};
use crate::chain::tlog::{self, Hash};

pub use crate::signer::ed25519::{ed25519_key_of, ed25519_spki};

/// What was found wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// An event is bad: malformed, out of place, or not the one the tree committed to.
    #[error("event {index}: {problem}")]
    Event {
        /// The event's index.
        index: u64,
        /// What is wrong.
        problem: String,
    },
    /// A block is bad: malformed, unlinked, wrongly signed or time-stamped, or its root
    /// does not match the events.
    #[error("block {height}: {problem}")]
    Block {
        /// The block's height.
        height: u64,
        /// What is wrong.
        problem: String,
    },
    /// The checkpoint is bad or does not match the last block.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

fn event_err(index: u64, problem: impl Into<String>) -> AuditError {
    AuditError::Event {
        index,
        problem: problem.into(),
    }
}

fn block_err(height: u64, problem: impl Into<String>) -> AuditError {
    AuditError::Block {
        height,
        problem: problem.into(),
    }
}

/// Checks one block's RFC 3161 token: `(token DER, header hash)`; the error says why not.
pub type TokenCheck<'a> = dyn Fn(&[u8], &Hash) -> Result<(), String> + 'a;

/// The chain keys an audit trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainKeys {
    /// The caller's note verifier keys (`--key`), each with its own name: a block's or the
    /// checkpoint's signature counts only from a key whose name is the log's origin and
    /// whose key id matches, so that one appliance's key cannot sign for another's log.
    Named(Vec<VerifierKey>),
    /// The Ed25519 keys recorded beside the log itself (they carry no name: each counts
    /// under the log's own origin). This proves integrity, not who signed.
    Recorded(Vec<[u8; 32]>),
}

impl ChainKeys {
    /// The keys that may sign for `origin` (all recorded keys; the named keys of that
    /// name), by block key id.
    fn for_origin(&self, origin: Option<&str>) -> HashMap<Hash, [u8; 32]> {
        match self {
            ChainKeys::Recorded(keys) => keys.iter().map(|k| (ed25519_key_id(k), *k)).collect(),
            ChainKeys::Named(keys) => keys
                .iter()
                .filter(|k| origin.is_none_or(|o| k.name == o))
                .map(|k| (ed25519_key_id(&k.public_key), k.public_key))
                .collect(),
        }
    }

    /// The note verifier keys that may sign a checkpoint of `origin`.
    fn note_keys(&self, origin: &str) -> Vec<VerifierKey> {
        match self {
            ChainKeys::Recorded(keys) => keys
                .iter()
                .map(|k| VerifierKey {
                    name: origin.to_owned(),
                    id: crate::chain::note::key_id(origin, k),
                    public_key: *k,
                })
                .collect(),
            ChainKeys::Named(keys) => keys.iter().filter(|k| k.name == origin).cloned().collect(),
        }
    }
}

/// What an audit trusts.
pub struct AuditOptions<'a> {
    /// The chain keys.
    pub keys: ChainKeys,
    /// The log's origin (the checkpoint's first line), when known in advance: the
    /// checkpoint must state it, and blocks count only with keys of that name. When `None`,
    /// the checkpoint's own origin is taken, and every block's key must be named so.
    pub origin: Option<String>,
    /// How to check each block's token.
    pub token_check: &'a TokenCheck<'a>,
}

impl std::fmt::Debug for AuditOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditOptions")
            .field("keys", &self.keys)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// The running audit.
#[derive(Debug)]
pub struct ChainAudit<'a> {
    opts: AuditOptions<'a>,
    /// The keys that may sign blocks, by key id (those named the origin, when it is known).
    block_keys: HashMap<Hash, [u8; 32]>,
    /// The key ids that signed the blocks checked so far.
    signed_by: Vec<Hash>,
    /// Complete subtrees of the events so far, largest (leftmost) first: (level, hash).
    frontier: Vec<(u8, Hash)>,
    events: u64,
    /// The last block checked: (height, header hash, tree size, root).
    last_block: Option<(u64, Hash, u64, Hash)>,
    /// When the last block checked was sealed (Unix milliseconds).
    last_sealed_at_ms: u64,
}

/// What an audit covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditSummary {
    /// Events re-hashed.
    pub events: u64,
    /// Blocks checked.
    pub blocks: u64,
    /// Events sealed by the last block.
    pub sealed: u64,
}

impl<'a> ChainAudit<'a> {
    /// A new audit.
    pub fn new(opts: AuditOptions<'a>) -> Self {
        ChainAudit {
            block_keys: opts.keys.for_origin(opts.origin.as_deref()),
            signed_by: Vec::new(),
            opts,
            frontier: Vec::new(),
            events: 0,
            last_block: None,
            last_sealed_at_ms: 0,
        }
    }

    /// The number of events fed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The RFC 6962 root of the events fed so far.
    pub fn root(&self) -> Hash {
        let mut it = self.frontier.iter().rev();
        let Some((_, last)) = it.next() else {
            return tlog::EMPTY_TREE_HASH;
        };
        it.fold(*last, |acc, (_, left)| tlog::node_hash(left, &acc))
    }

    /// Feeds event `index` (which must be the next one) with its leaf bytes; returns the
    /// stored hashes it adds, as (stored-hash index, hash), in order.
    pub fn event(&mut self, index: u64, leaf: &[u8]) -> Result<Vec<(u64, Hash)>, AuditError> {
        if index != self.events {
            return Err(event_err(
                self.events,
                format!("missing (the next event stored is {index})"),
            ));
        }
        let stored =
            StoredEvent::from_leaf_bytes(leaf).map_err(|e| event_err(index, e.to_string()))?;
        if stored.index != index {
            return Err(event_err(
                index,
                format!("its leaf says it is event {}", stored.index),
            ));
        }
        let mut added = vec![(tlog::stored_hash_index(0, index), tlog::leaf_hash(leaf))];
        let mut node = (0u8, added[0].1);
        while let Some(&(level, left)) = self.frontier.last() {
            if level != node.0 {
                break;
            }
            self.frontier.pop();
            let up = (level + 1, tlog::node_hash(&left, &node.1));
            added.push((tlog::stored_hash_index(up.0, index >> up.0), up.1));
            node = up;
        }
        self.frontier.push(node);
        self.events += 1;
        Ok(added)
    }

    /// Checks sealed block `height` (stored form): it decodes, links to the previous block,
    /// covers the events since it without gap, its root is the root of the events fed
    /// (which must be exactly its tree size), its Ed25519 signature verifies with the key
    /// its key id names, it was not sealed before the previous block (the appliance seals
    /// at its token's genTime, from a clock that never goes back), and its token passes the
    /// token check.
    pub fn block(&mut self, height: u64, encoded: &[u8]) -> Result<SealedBlock, AuditError> {
        let err = |p: String| block_err(height, p);
        let block = SealedBlock::decode(encoded).map_err(|e| err(e.to_string()))?;
        let h = &block.header;
        if h.height != height {
            return Err(err(format!("its header says it is block {}", h.height)));
        }
        let (want_height, want_prev, want_first) = match self.last_block {
            None => (0, [0u8; 32], 0),
            Some((ph, phash, psize, _)) => (ph + 1, phash, psize),
        };
        if height != want_height {
            return Err(block_err(
                want_height,
                format!("missing (the next block stored is {height})"),
            ));
        }
        if h.prev_hash != want_prev {
            return Err(err(
                "its previous-header hash does not link to the block before it".into(),
            ));
        }
        if h.first_index != want_first
            || h.first_index.checked_add(h.event_count) != Some(h.tree_size)
        {
            return Err(err(format!(
                "it covers events {}..+{} to tree size {}, but the previous block ended at {want_first}",
                h.first_index, h.event_count, h.tree_size
            )));
        }
        if self.events != h.tree_size {
            return Err(err(format!(
                "it seals {} events but {} were fed before it",
                h.tree_size, self.events
            )));
        }
        if self.root() != h.root {
            return Err(err(format!(
                "its root hash does not match events 0..{}: an event in {}..{} (or the header) was changed",
                h.tree_size, h.first_index, h.tree_size
            )));
        }
        let key = self.block_keys.get(&h.key_id).ok_or_else(|| {
            err(match &self.opts.origin {
                Some(origin) => format!(
                    "signed by an unknown key (key id {}): no chain key named {origin:?} has it",
                    hex::encode(h.key_id)
                ),
                None => format!(
                    "signed by an unknown key (key id {})",
                    hex::encode(h.key_id)
                ),
            })
        })?;
        let vk = ed25519_dalek::VerifyingKey::from_bytes(key)
            .map_err(|_| err("the chain key is not a valid Ed25519 key".into()))?;
        let sig = ed25519_dalek::Signature::from_slice(&block.signature)
            .map_err(|_| err("the header signature is not 64 bytes".into()))?;
        vk.verify_strict(&h.encode(), &sig)
            .map_err(|_| err("the header signature does not verify".into()))?;
        if self.last_block.is_some() && h.sealed_at_ms < self.last_sealed_at_ms {
            return Err(err(format!(
                "it was sealed at {}, before the block before it, sealed at {}: block times \
                 never go back",
                format_ms(h.sealed_at_ms),
                format_ms(self.last_sealed_at_ms)
            )));
        }
        let header_hash = h.hash();
        (self.opts.token_check)(&block.token, &header_hash)
            .map_err(|e| err(format!("its time-stamp token: {e}")))?;
        if !self.signed_by.contains(&h.key_id) {
            self.signed_by.push(h.key_id);
        }
        self.last_block = Some((height, header_hash, h.tree_size, h.root));
        self.last_sealed_at_ms = h.sealed_at_ms;
        Ok(block)
    }

    /// Checks the signed checkpoint `note`: it is signed by the origin's chain key and
    /// states the last block's tree size and root.
    pub fn checkpoint(&mut self, note: &str) -> Result<Checkpoint, AuditError> {
        let err = |p: String| AuditError::Checkpoint(p);
        let signed = SignedNote::parse(note).map_err(|e| err(e.to_string()))?;
        let cp = Checkpoint::parse(&signed.text).map_err(|e| err(e.to_string()))?;
        if let Some(origin) = &self.opts.origin {
            if &cp.origin != origin {
                return Err(err(format!(
                    "its origin is {:?}, not {origin:?}",
                    cp.origin
                )));
            }
        }
        let keys = self.opts.keys.note_keys(&cp.origin);
        if !keys.iter().any(|k| signed.verify(k).is_ok()) {
            return Err(err(format!(
                "no valid signature by a chain key named {:?}",
                cp.origin
            )));
        }
        // Blocks checked before the origin was known: each key must be the origin's too.
        let of_origin = self.opts.keys.for_origin(Some(&cp.origin));
        if let Some(id) = self
            .signed_by
            .iter()
            .find(|id| !of_origin.contains_key(*id))
        {
            return Err(err(format!(
                "blocks are signed by key id {}, which is not a chain key named {:?}",
                hex::encode(id),
                cp.origin
            )));
        }
        match self.last_block {
            Some((_, _, size, root)) if size == cp.size && root == cp.root => Ok(cp),
            Some((height, _, size, _)) => Err(err(format!(
                "it states tree size {} but the last block ({height}) seals {size}",
                cp.size
            ))),
            None => Err(err("there is a checkpoint but no block".into())),
        }
    }

    /// What was audited.
    pub fn summary(&self) -> AuditSummary {
        AuditSummary {
            events: self.events,
            blocks: self.last_block.map_or(0, |(h, ..)| h + 1),
            sealed: self.last_block.map_or(0, |(_, _, s, _)| s),
        }
    }
}

/// Unix milliseconds `ms` as RFC 3339 (UTC) with the number itself.
fn format_ms(ms: u64) -> String {
    let ns = i64::try_from(ms).map_or(i64::MAX, |ms| ms.saturating_mul(1_000_000));
    format!("{} ({ms} ms)", crate::chain::event::format_time_ns(ns))
}

/// The key id of Ed25519 key `key`: SHA-256 of its DER SubjectPublicKeyInfo.
pub fn ed25519_key_id(key: &[u8; 32]) -> Hash {
    Sha256::digest(ed25519_spki(key)).into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::chain::block::BlockHeader;
    use crate::chain::event::{Action, Event};
    use crate::chain::note::NoteSignature;
    use ed25519_dalek::Signer as _;

    fn leaf(n: u64) -> Vec<u8> {
        StoredEvent {
            index: n,
            received_at_ms: 1,
            salt: [3; 16],
            event: Event {
                agency: "a".into(),
                auditor: "b".into(),
                action: Action::Export,
                subject: format!("s{n}"),
                data_sha256: [0; 32],
                occurred_at_ns: 0,
                details: "{}".into(),
            },
        }
        .leaf_bytes()
    }

    struct Fixture {
        key: ed25519_dalek::SigningKey,
        leaves: Vec<Vec<u8>>,
        blocks: Vec<Vec<u8>>,
        checkpoint: String,
    }

    /// 300 events in blocks of sizes 1, 99, 200, signed with a test key; tokens are
    /// stand-ins checked by the test's own token check (the header hash itself).
    fn fixture() -> Fixture {
        fixture_sealed_at([5, 5, 5])
    }

    /// [`fixture`] with the blocks sealed at `sealed_at` (Unix milliseconds).
    fn fixture_sealed_at(sealed_at: [u64; 3]) -> Fixture {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let pk = key.verifying_key().to_bytes();
        let leaves: Vec<Vec<u8>> = (0..300).map(leaf).collect();
        let mut stored: Vec<Hash> = Vec::new();
        for (n, l) in leaves.iter().enumerate() {
            let add =
                tlog::stored_hashes_for_record(n as u64, tlog::leaf_hash(l), &stored).unwrap();
            stored.extend(add);
        }
        let mut blocks = Vec::new();
        let mut prev = [0u8; 32];
        let mut first = 0;
        for (height, size) in [1u64, 100, 300].into_iter().enumerate() {
            let header = BlockHeader {
                height: height as u64,
                prev_hash: prev,
                tree_size: size,
                root: tlog::tree_hash(size, &stored).unwrap(),
                first_index: first,
                event_count: size - first,
                sealed_at_ms: sealed_at[height],
                key_id: ed25519_key_id(&pk),
            };
            let block = SealedBlock {
                signature: key.sign(&header.encode()).to_bytes().to_vec(),
                token: header.hash().to_vec(),
                header,
            };
            prev = block.header.hash();
            first = size;
            blocks.push(block.encode());
        }
        let body = Checkpoint {
            origin: "o".into(),
            size: 300,
            root: tlog::tree_hash(300, &stored).unwrap(),
            extensions: vec![],
        }
        .body();
        let checkpoint = SignedNote {
            signatures: vec![NoteSignature {
                name: "o".into(),
                id: crate::chain::note::key_id("o", &pk),
                signature: key.sign(body.as_bytes()).to_bytes().to_vec(),
            }],
            text: body,
        }
        .format();
        Fixture {
            key,
            leaves,
            blocks,
            checkpoint,
        }
    }

    fn token_is_header_hash(token: &[u8], h: &Hash) -> Result<(), String> {
        if token == h {
            Ok(())
        } else {
            Err("wrong token".into())
        }
    }

    fn named(name: &str, key: &ed25519_dalek::SigningKey) -> VerifierKey {
        let public_key = key.verifying_key().to_bytes();
        VerifierKey {
            name: name.into(),
            id: crate::chain::note::key_id(name, &public_key),
            public_key,
        }
    }

    /// Runs the audit over `f` as a reader would, trusting f's key named "o".
    fn audit(f: &Fixture) -> Result<AuditSummary, AuditError> {
        audit_with(f, ChainKeys::Named(vec![named("o", &f.key)]), Some("o"))
    }

    /// Runs the audit over `f` as a reader would: events, a block once its events are in.
    fn audit_with(
        f: &Fixture,
        keys: ChainKeys,
        origin: Option<&str>,
    ) -> Result<AuditSummary, AuditError> {
        let mut a = ChainAudit::new(AuditOptions {
            keys,
            origin: origin.map(str::to_owned),
            token_check: &token_is_header_hash,
        });
        let mut blocks = f.blocks.iter().enumerate().peekable();
        let mut expected_stored: Vec<Hash> = Vec::new();
        for (n, l) in f.leaves.iter().enumerate() {
            let added = a.event(n as u64, l)?;
            let want =
                tlog::stored_hashes_for_record(n as u64, tlog::leaf_hash(l), &expected_stored)
                    .unwrap();
            for ((i, h), w) in added.iter().zip(&want) {
                assert_eq!(*i, expected_stored.len() as u64);
                assert_eq!(h, w);
                expected_stored.push(*w);
            }
            assert_eq!(added.len(), want.len());
            assert_eq!(
                a.root(),
                tlog::tree_hash(n as u64 + 1, &expected_stored).unwrap()
            );
            while let Some((height, b)) = blocks.peek() {
                let size = SealedBlock::decode(b).unwrap().header.tree_size;
                if size != a.events() {
                    break;
                }
                a.block(*height as u64, b)?;
                blocks.next();
            }
        }
        a.checkpoint(&f.checkpoint)?;
        Ok(a.summary())
    }

    #[test]
    fn a_good_chain_passes_and_matches_the_stored_tree() {
        let f = fixture();
        assert_eq!(
            audit(&f).unwrap(),
            AuditSummary {
                events: 300,
                blocks: 3,
                sealed: 300
            }
        );
    }

    #[test]
    fn every_tampering_is_named() {
        // A changed event: the root of the block sealing it no longer matches.
        let mut f = fixture();
        let mut l = f.leaves[150].clone();
        *l.last_mut().unwrap() = b']';
        f.leaves[150] = l;
        let e = audit(&f).unwrap_err();
        assert!(
            matches!(
                e,
                AuditError::Event { index: 150, .. } | AuditError::Block { height: 2, .. }
            ),
            "{e}"
        );

        // A leaf whose index field is wrong.
        let mut f = fixture();
        f.leaves[7] = leaf(8);
        assert!(matches!(
            audit(&f).unwrap_err(),
            AuditError::Event { index: 7, .. }
        ));

        // A changed header field: the signature fails.
        let mut f = fixture();
        let mut b = SealedBlock::decode(&f.blocks[1]).unwrap();
        b.header.sealed_at_ms += 1;
        f.blocks[1] = b.encode();
        let e = audit(&f).unwrap_err();
        assert!(matches!(e, AuditError::Block { height: 1, .. }), "{e}");
        assert!(e.to_string().contains("signature"), "{e}");

        // A changed signature.
        let mut f = fixture();
        let mut b = SealedBlock::decode(&f.blocks[2]).unwrap();
        b.signature[0] ^= 1;
        f.blocks[2] = b.encode();
        assert!(matches!(
            audit(&f).unwrap_err(),
            AuditError::Block { height: 2, .. }
        ));

        // A changed token.
        let mut f = fixture();
        let mut b = SealedBlock::decode(&f.blocks[0]).unwrap();
        b.token[0] ^= 1;
        f.blocks[0] = b.encode();
        let e = audit(&f).unwrap_err();
        assert!(e.to_string().contains("token"), "{e}");

        // A changed checkpoint.
        let mut f = fixture();
        f.checkpoint = f.checkpoint.replacen("300", "299", 1);
        assert!(matches!(audit(&f).unwrap_err(), AuditError::Checkpoint(_)));

        // A missing block: the next one does not link.
        let mut f = fixture();
        f.blocks.remove(1);
        assert!(audit(&f).is_err());
    }

    /// Blocks may be sealed in the same millisecond, never earlier than the one before:
    /// a block signed with the chain key but dated before its predecessor is named.
    #[test]
    fn a_block_sealed_before_the_one_before_it_is_named() {
        let t = 1_796_594_562_000;
        assert!(audit(&fixture_sealed_at([t, t, t + 1])).is_ok());
        let e = audit(&fixture_sealed_at([t, t + 1_000, t + 999])).unwrap_err();
        assert!(matches!(e, AuditError::Block { height: 2, .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(
                "sealed at 2026-12-06T22:02:42.999Z (1796594562999 ms), before the block \
                 before it, sealed at 2026-12-06T22:02:43Z (1796594563000 ms)"
            ),
            "{text}"
        );
    }

    /// `f`'s checkpoint body signed by `key` under the name `name` (and nothing else).
    fn resigned(f: &Fixture, key: &ed25519_dalek::SigningKey, name: &str) -> String {
        let text = SignedNote::parse(&f.checkpoint).unwrap().text;
        SignedNote {
            signatures: vec![NoteSignature {
                name: name.into(),
                id: crate::chain::note::key_id(name, &key.verifying_key().to_bytes()),
                signature: key.sign(text.as_bytes()).to_bytes().to_vec(),
            }],
            text,
        }
        .format()
    }

    #[test]
    fn a_key_counts_only_under_its_own_name() {
        let f = fixture();
        let other = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
        // Two logs' keys given: log "o" verifies with its own, the origin known or not.
        let both = ChainKeys::Named(vec![named("o", &f.key), named("p", &other)]);
        assert!(audit_with(&f, both.clone(), Some("o")).is_ok());
        assert!(audit_with(&f, both.clone(), None).is_ok());
        let both_reversed = ChainKeys::Named(vec![named("p", &other), named("o", &f.key)]);
        assert!(audit_with(&f, both_reversed, None).is_ok());

        // A checkpoint of "o" signed by p's key, under o's name or under p's: refused.
        for name in ["o", "p"] {
            let mut forged = fixture();
            forged.checkpoint = resigned(&f, &other, name);
            let e = audit_with(&forged, both.clone(), None).unwrap_err();
            assert!(
                e.to_string()
                    .contains("no valid signature by a chain key named \"o\""),
                "{name}: {e}"
            );
        }

        // The log's own key, but under another name: its blocks are not o's.
        let renamed = ChainKeys::Named(vec![named("p", &f.key)]);
        let e = audit_with(&f, renamed.clone(), Some("o")).unwrap_err();
        assert!(matches!(e, AuditError::Block { height: 0, .. }), "{e}");
        // ... also when the origin is learnt from the checkpoint (signed under "o" by
        // another key named "o").
        let mut f2 = fixture();
        f2.checkpoint = resigned(&f, &other, "o");
        let keys = ChainKeys::Named(vec![named("p", &f.key), named("o", &other)]);
        let e = audit_with(&f2, keys, None).unwrap_err();
        assert!(
            e.to_string().contains("which is not a chain key named"),
            "{e}"
        );

        // Recorded keys (no names) count under the log's own origin.
        let recorded = ChainKeys::Recorded(vec![f.key.verifying_key().to_bytes()]);
        assert!(audit_with(&f, recorded, None).is_ok());
    }

    #[test]
    fn spki_helpers_round_trip() {
        let k = [5u8; 32];
        assert_eq!(ed25519_key_of(&ed25519_spki(&k)), Some(k));
        assert_eq!(ed25519_key_of(&[0; 44]), None);
    }
}
