//! The appliance's local store and its auditor event chain.
//!
//! Pure parts, without I/O: the event model and its leaf bytes ([`event`]), JSON read exactly
//! and written canonically for event details ([`exact_json`]), the RFC 6962
//! Merkle tree and C2SP tiles ([`tlog`]), block headers ([`block`]), C2SP signed notes and
//! checkpoints ([`note`]), witness cosignatures ([`cosignature`]) and tlog-proofs ([`proof`]):
//! public, for verifiers. Storage, private to the crate: the TSA's state in sled (`store`),
//! the event log with group commit (`log`: events and hashes in append-only files
//! (`logfiles`), blocks and checkpoints in sled).

pub mod block;
pub mod cosignature;
pub mod event;
pub mod exact_json;
pub(crate) mod index;
pub(crate) mod log;
pub(crate) mod logfiles;
pub mod note;
pub mod proof;
pub(crate) mod store;
pub mod tlog;
