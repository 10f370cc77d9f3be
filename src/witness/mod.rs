//! The data center's witness: a second program in the same binary (`auditstamp witness
//! serve`) that follows many appliances' logs, cosigns their checkpoints in its own HSM
//! (C2SP tlog-witness, tlog-cosignature) and keeps the evidence when an appliance's own
//! signatures show it forked or rolled back.
//!
//! - [`protocol`] (public): the tlog-witness bodies (add-checkpoint, its answers), pure; the
//!   appliance's own witness client (`service::cosign`) shares these types and nothing
//!   else of this module.
//! - `store`: what the witness keeps per log (the latest cosigned checkpoint, a short
//!   history, alerts and their evidence), in sled.
//! - `service`: the rules: verify a submission, check consistency, cosign, refuse.
//! - `routes`: its HTTP router.
//! - `ui`: its web console (`/ui/`), pages of what `/status` tells.
//! - `startup`: the checks and the store `witness serve` opens before serving.
//! - `config`: its own TOML file (`[witness]`, `[hsm]`, `[[log]]`).
//!
//! It uses `chain`'s tlog and note code, `signer` for the cosigner key, and `http`'s
//! listener and metrics; nothing on the appliance's side imports it except [`protocol`].

pub(crate) mod config;
pub mod protocol;
pub(crate) mod routes;
pub(crate) mod service;
pub(crate) mod startup;
pub(crate) mod store;
pub(crate) mod ui;
