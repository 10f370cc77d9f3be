//! The appliance's local store and, later, its auditor event chain.
//!
//! Today this holds the TSA's durable state ([`store`]): the serial-number counter and the
//! last genTime issued. Pure parts (event model, Merkle tree) will sit beside it without
//! importing sled.

pub mod store;
