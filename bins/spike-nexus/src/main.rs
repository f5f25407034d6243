//! `spike-nexus`: the secret store. Thin: parses flags (each falling back to SPIKE's
//! environment variable) and calls `spike_server::nexus::run`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use spike_server::nexus::{NexusArgs, NexusConfig};
use spike_server::process::run_main;

/// SPIKE Nexus: secrets, policies and encryption as a service over SPIFFE mTLS.
#[derive(Debug, Parser)]
#[command(name = "spike-nexus", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    nexus: NexusArgs,
    /// Log level: debug, info, warn or error.
    #[arg(long, env = "SPIKE_SYSTEM_LOG_LEVEL", global = true)]
    log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Checks that no line of an audit log — the file and its rotated predecessors FILE.1,
    /// FILE.2, ... read oldest first — was removed, reordered or edited; prints the lines,
    /// files, first sequence number and chain head, or the file and line of the first break.
    Verify {
        /// The audit log file (e.g. DATA_DIR/audit.log).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    spike_server::logging::init(cli.log_level.as_deref());
    match cli.command {
        Some(Command::Audit { command: AuditCommand::Verify { file } }) => {
            match spike_server::audit::verify_file(&file) {
                Ok(report) => {
                    println!("ok: {report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("spike-nexus: {e}");
                    ExitCode::from(2)
                }
            }
        }
        None => match NexusConfig::try_from(cli.nexus) {
            Ok(config) => run_main("spike-nexus", spike_server::nexus::run(config)),
            Err(e) => {
                eprintln!("spike-nexus: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
