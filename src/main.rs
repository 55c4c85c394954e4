//! The `jitad` command line: `demo`, `dump`, `run`, `bench`, `check`.
//!
//! Every subcommand reads `.jir` text, verifies it, and reports bad input as an error on
//! stderr with a non-zero exit status (parse errors with line:column, verifier errors
//! naming function, instruction and value).

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
