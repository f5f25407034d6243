//! `spike`: the Pilot CLI. Thin: parses arguments, runs one command over `spike-client`, and
//! maps the outcome to an exit code (0 ok, 1 local error, 2 Nexus said no; see `exit.rs`).
#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod exit;
mod output;
mod sandbox;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::LOCAL);
        }
    };
    match runtime.block_on(cmd::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => exit::report(&e),
    }
}
