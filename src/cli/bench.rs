//! `auditstamp bench ...`: the arguments of the load generators in [`crate::bench`], which
//! measure and print figures (never pass/fail).

use clap::Subcommand;

use super::CliError;
use crate::bench::{events, tokens, verify, witness};

/// `auditstamp bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Events per second through HTTP against a running server.
    Events(events::EventsArgs),
    /// The event log in-process: append rate, proof time, bytes per event.
    Chain(events::ChainArgs),
    /// The HSM's own limit: signatures per second with N sessions, CPU per signature.
    Hsm(tokens::HsmArgs),
    /// RFC 3161 tokens per second through HTTP against a running server.
    Tokens(tokens::TokensArgs),
    /// Cosigned checkpoints per second of a running witness, playing N simulated appliances.
    Witness(witness::WitnessArgs),
    /// The `[[log]]` entries that register `bench witness`'s simulated appliances.
    WitnessConfig(witness::WitnessConfigArgs),
    /// Tokens verified per second on one thread, beside OpenSSL's raw P-256 verify rate.
    Verify(verify::VerifyBenchArgs),
    /// The event search in-process: page latency per kind of filter at 1M and 10M events,
    /// index bytes per event, append rate with the index beside without.
    Search(crate::bench::search::SearchBenchArgs),
}

/// Runs a `bench` subcommand.
pub fn run(cmd: BenchCommand) -> Result<(), CliError> {
    match cmd {
        BenchCommand::Hsm(a) => {
            let (_cfg, hsm) = super::open_hsm(&a.config)?;
            Ok(tokens::hsm(&a, &hsm)?)
        }
        BenchCommand::Tokens(a) => Ok(tokens::tokens(&a)?),
        BenchCommand::Events(a) => Ok(crate::bench::runtime()?.block_on(events::events(a))?),
        BenchCommand::Chain(a) => Ok(crate::bench::runtime()?.block_on(events::chain(a))?),
        BenchCommand::Witness(a) => Ok(crate::bench::runtime()?.block_on(witness::witness(a))?),
        BenchCommand::WitnessConfig(a) => {
            let text = witness::witness_config(&a);
            match &a.out {
                Some(path) => super::write_file(path, text.as_bytes()),
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
        BenchCommand::Verify(a) => Ok(verify::verify(&a)?),
        BenchCommand::Search(a) => {
            Ok(crate::bench::runtime()?.block_on(crate::bench::search::search(a))?)
        }
    }
}
