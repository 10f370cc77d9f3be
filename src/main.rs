//! The `auditstamp` binary: runs the command line.

fn main() -> std::process::ExitCode {
    auditstamp::run_command_line()
}
