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
    // Usage errors exit 1 (a local error), never 2, which means "Nexus said no" (issue 18);
    // --help and --version print and exit 0.
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::LOCAL } else { exit::OK });
        }
    };
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
