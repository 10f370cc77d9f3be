//! Software verification for the data center: no HSM, no sled, no HTTP.
//!
//! - [`chain`]: the offline audit of a whole event chain (events, blocks, checkpoint).

pub mod chain;
