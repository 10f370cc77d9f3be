//! The `auditstamp` binary: parses the command line and runs it.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // AWS-LC for every rustls user in the process, also one that asks for the default.
    auditstamp::client::install_default_provider();
    let cli = auditstamp::cli::Cli::parse();
    match auditstamp::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", auditstamp::cli::report(&e));
            std::process::ExitCode::from(e.exit_code())
        }
    }
}
