//! The appliance's use cases: issue an RFC 3161 time-stamp token ([`tsa`]); append
//! auditor events, seal blocks and prove them ([`chain`]). Both append to the event log
//! only through its one writer ([`writer`]), which wakes the sealer when a block is full. The data center's witness,
//! which cosigns appliances' checkpoints, is [`crate::witness`].
//!
//! Uses `tsp` (DER), `signer` (the HSM), `clock` (trusted time) and `chain` (the store).
//! Its one error type is [`ServiceError`]; only the HTTP layer turns it into a status or
//! an RFC 3161 failInfo.

pub mod chain;
pub mod cosign;
pub mod gen_time;
pub mod serial;
pub mod tsa;
pub mod writer;

pub use tsa::{SigningIdentity, TsaService, TsaSettings};
pub use writer::EventWriter;

use crate::chain::index::IndexError;
use crate::chain::log::LogError;
use crate::chain::store::StoreError;
use crate::clock::ClockError;
use crate::signer::SignerError;
use crate::tsp::{Rejection, TspError};

/// Why a use case did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The request breaks a rule of the profile; the rejection says which.
    #[error("request refused ({}): {}", .0.fail.name(), .0.text)]
    Rejected(Rejection),
    /// The clock cannot be trusted now.
    #[error(transparent)]
    Clock(#[from] ClockError),
    /// The HSM did not sign.
    #[error("HSM: {0}")]
    Signer(#[from] SignerError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The event log did not take or give events.
    #[error("event log: {0}")]
    Log(#[from] LogError),
    /// The chain's stored data or a computation over it is not what it must be.
    #[error("event chain: {0}")]
    Chain(String),
    /// A token could not be encoded.
    #[error("token encoding: {0}")]
    Encoding(#[from] TspError),
    /// The signer certificate has expired: no token is issued with it.
    #[error("the TSA certificate has expired")]
    CertificateExpired,
    /// The signer certificate is not valid yet (the clock reads before its notBefore): no
    /// token is issued with it.
    #[error("the TSA certificate is not valid yet (notBefore {not_before})")]
    CertificateNotYetValid {
        /// The certificate's notBefore.
        not_before: String,
    },
    /// The certificate, chain and key do not fit together (found at startup or reload).
    #[error("signing identity: {0}")]
    Identity(String),
    /// The search index failed or refused the search.
    #[error(transparent)]
    Search(#[from] IndexError),
    /// Search is turned off on this appliance.
    #[error("search is turned off on this appliance ([chain] search_index = false)")]
    SearchOff,
}
