//! `spike-bootstrap`: deals the first root key to the Keepers and proves Nexus holds it. Thin:
//! parses flags (each falling back to SPIKE's environment variable), calls
//! `spike_server::bootstrap::run_from_env`, and maps the outcome to a message and exit code.
//!
//! `-init` (SPIKE's required flag, passed by its scripts and Helm charts) is accepted and
//! ignored: bootstrapping is what this binary always does, and it refuses to run twice.
//!
//! Exit codes: 0 when bootstrapped now or already bootstrapped (the output says which), 1 on
//! failure (the message says what to do), 2 for invalid settings.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use spike_server::bootstrap::{BootstrapArgs, BootstrapConfig, BootstrapOutcome};

/// SPIKE Bootstrap: makes the root key, deals one shard to each Keeper, and verifies that
/// Nexus recovered the same key. Refuses to run twice unless forced.
#[derive(Debug, Parser)]
#[command(name = "spike-bootstrap", version, about)]
struct Cli {
    #[command(flatten)]
    bootstrap: BootstrapArgs,
    /// Log level: debug, info, warn or error.
    #[arg(long, env = "SPIKE_SYSTEM_LOG_LEVEL")]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    // SPIKE's scripts and charts pass the Go-style `-init`; accept it (a no-op).
    let cli = Cli::parse_from(spike_server::bootstrap::normalize_go_flags(std::env::args_os()));
    spike_server::logging::init(cli.log_level.as_deref());
    let config = match BootstrapConfig::try_from(cli.bootstrap) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("spike-bootstrap: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match spike_server::process::runtime("spike-bootstrap") {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(spike_server::bootstrap::run_from_env(config)) {
        Ok(BootstrapOutcome::Bootstrapped { keepers }) => {
            println!(
                "spike-bootstrap: bootstrapped: a new root key was dealt to {keepers} Keepers \
                 and Nexus verified it holds it"
            );
            ExitCode::SUCCESS
        }
        Ok(BootstrapOutcome::AlreadyBootstrapped { reason }) => {
            println!(
                "spike-bootstrap: already bootstrapped, nothing to do: {reason} (set \
                 SPIKE_BOOTSTRAP_FORCE=true to deal a new root key, which orphans existing data)"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("spike-bootstrap: failed: {e}");
            ExitCode::FAILURE
        }
    }
}
