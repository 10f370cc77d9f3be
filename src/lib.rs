//! auditstamp: an HSM-backed RFC 3161 time-stamp authority and auditor event chain for
//! audit offices.
//!
//! The crate is mainly the `auditstamp` program ([`run_command_line`]). As a library it
//! offers what a data center, an agency's client or another witness needs, without an HSM
//! or a running appliance:
//! - **Time-stamp tokens**: build requests and read responses ([`tsp`]); verify tokens
//!   against pinned roots with the strict checklist of `TSA-PROFILE.md`
//!   ([`TokenVerifier`], [`verify_any`], [`TokenOptions`]).
//! - **Event proofs**: check one event's proof bundle or tlog-proof offline
//!   ([`ProofInput`], [`verify::proof`]).
//! - **Whole chains**: audit an appliance's log from a tile export or a live appliance
//!   ([`ChainAudit`], [`audit_tiles`], [`DirSource`], [`HttpSource`]); the formats they read
//!   (C2SP signed notes and checkpoints, tlog tiles and proofs, events, block headers) are
//!   in [`chain`].
//! - **Witnesses**: the C2SP tlog-witness `add-checkpoint` exchange, both sides
//!   ([`witness::protocol`]).
//! - **Outgoing HTTPS**: the one client configuration those use ([`client`]).
//!
//! Everything else (the HSM signer, the sled store, the services, the HTTP routers, the
//! configuration, the command line) is private to the crate.
//!
//! Modules, in the direction of their imports (a module uses only those before it):
//! `tsp` (RFC 3161 types and rules, pure DER); `signer` (the HSM through PKCS#11);
//! `client` (the one HTTP(S) client, rustls); `clock` (time and its health); `chain` (the
//! formats of the event chain, and its local storage); `verify` (software verification of
//! tokens, proofs and chains); `service` (the appliance's use cases); `ui` (what the
//! appliance's and the witness's web consoles share: page frame, stylesheet, CSP); `http` (the axum
//! router, where errors become statuses); `config`; `provision` (keys and certificates
//! through the HSM); `witness` (the data center's witness; the appliance shares only its
//! protocol); `bench` (the load generators); `cli` (parses arguments, calls the rest,
//! prints).

pub mod chain;
pub mod client;
pub mod tsp;
pub mod verify;
pub mod witness;

mod archive;
mod bench;
mod cli;
mod clock;
mod config;
mod http;
mod provision;
mod service;
mod signer;
mod testkit;
mod ui;

pub use verify::chain::tiles::{
    audit_tiles, AuditReport, DirSource, HttpSource, LogAuditError, TileSource,
};
pub use verify::chain::{AuditError, AuditOptions, AuditSummary, ChainAudit, ChainKeys};
pub use verify::proof::{Check, CheckState, ProofError, ProofInput};
pub use verify::{
    verify_any, verify_response, verify_token, TokenError, TokenOptions, TokenVerifier, ValidAt,
    VerifiedToken,
};

/// Runs the `auditstamp` command line with this process's arguments, as the binary does:
/// installs the TLS provider, parses, runs, and prints an error to standard error. The
/// exit code is 0 on success and names the kind of failure otherwise.
pub fn run_command_line() -> std::process::ExitCode {
    use clap::Parser as _;
    // AWS-LC for every rustls user in the process, also one that asks for the default.
    client::install_default_provider();
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli::report(&e));
            std::process::ExitCode::from(e.exit_code())
        }
    }
}

/// Parts this repository's own integration tests reach into: a stopped appliance's store
/// and event log, the genTime floor found in them, the clock guard, the witness store's
/// bounds, and the throw-away PostgreSQL and S3 servers they run against. Not part of the
/// library's interface: it changes without notice.
#[doc(hidden)]
pub mod internal {
    pub use crate::chain::log::EventLog;
    pub use crate::chain::store::Store;
    pub use crate::clock::{Clock, ClockError, ClockGuard, SyncStatus};
    pub use crate::service::gen_time::gen_time_floor;
    pub use crate::testkit::{
        TestPostgres, TestS3, PG_USER, S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY,
    };
    pub use crate::witness::store::HISTORY;
}
