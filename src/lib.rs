//! auditstamp: an HSM-backed RFC 3161 time-stamp authority and auditor event chain for
//! audit offices.
//!
//! Modules, in the direction of their imports (a module uses only those before it):
//! - [`tsp`]: RFC 3161 types and rules, pure DER.
//! - [`signer`]: the [`signer::Signer`] trait and the PKCS#11 backend.
//! - [`client`]: the one HTTP(S) client of every outgoing call (rustls, AWS-LC) and the PEM
//!   loading the listeners share; imports nothing of ours.
//! - [`clock`]: time source and its health.
//! - [`chain`]: the local store and the auditor event chain (pure parts and sled storage).
//! - [`verify`]: software verification of time-stamp tokens (the data center's checklist)
//!   and of whole event chains.
//! - [`service`]: the appliance's use cases (issue a token, append events, seal blocks).
//! - [`http`]: the axum router; the one place errors become HTTP statuses or failInfos.
//! - [`config`]: the TOML configuration, validated at startup.
//! - [`provision`]: key generation, certificates and their checks, through the HSM.
//! - [`witness`]: the data center's witness (protocol, store, service, routes, its
//!   configuration); the appliance shares only its protocol types.
//! - [`mod@bench`]: the load generators behind `auditstamp bench` (figures, never pass/fail).
//! - [`cli`]: the command line: parses arguments, calls the library, prints.

pub mod bench;
pub mod chain;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod http;
pub mod provision;
pub mod service;
pub mod signer;
pub mod tsp;
pub mod verify;
pub mod witness;
