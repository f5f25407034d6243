//! `spike-keeper`: holds one shard of Nexus's root key in memory. Thin: parses flags (each
//! falling back to SPIKE's environment variable) and calls `spike_server::keeper::run`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use spike_server::keeper::{KeeperArgs, KeeperConfig};
use spike_server::process::run_main;

/// SPIKE Keeper: keeps one shard of Nexus's root key in memory, so Nexus restarts unattended.
#[derive(Debug, Parser)]
#[command(name = "spike-keeper", version, about)]
struct Cli {
    #[command(flatten)]
    keeper: KeeperArgs,
    /// Log level: debug, info, warn or error.
    #[arg(long, env = "SPIKE_SYSTEM_LOG_LEVEL")]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    spike_server::logging::init(cli.log_level.as_deref());
    match KeeperConfig::try_from(cli.keeper) {
        Ok(config) => run_main("spike-keeper", spike_server::keeper::run(config)),
        Err(e) => {
            eprintln!("spike-keeper: {e}");
            ExitCode::FAILURE
        }
    }
}
