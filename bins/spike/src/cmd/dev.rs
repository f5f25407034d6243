//! `spike dev`: flags to a [`SandboxConfig`], then start, print the banner, run until Ctrl-C.

use std::path::PathBuf;

use crate::cli::DevArgs;
use crate::exit::CliError;
use crate::output;
use crate::sandbox::{Sandbox, SandboxConfig, Signals, say};

/// Overrides where the child binaries are looked up (default: next to `spike`).
pub const ENV_BIN_DIR: &str = "SPIKE_DEV_BIN_DIR";

/// Runs `spike dev` until Ctrl-C.
pub async fn run(args: DevArgs) -> Result<(), CliError> {
    if let Some(flag) = args.not_for_dev.given() {
        return Err(CliError::Usage(format!(
            "spike dev does not take {flag}: it starts its own agent and Nexus; use {flag} with \
             the other commands (after `source .spike-dev/env`)"
        )));
    }
    let config = config(args)?;
    let mut signals = Signals::install()?;
    say(&format!("[spike dev] starting in {}", config.dir.display()));
    let sandbox = Sandbox::start(config, &mut signals).await?;
    let env = sandbox.write_env_file()?;
    output::stdout(sandbox.banner().as_bytes())?;
    output::stdout(format!("\n{env}").as_bytes())?;
    sandbox.run(&mut signals).await
}

fn config(args: DevArgs) -> Result<SandboxConfig, CliError> {
    let cwd = std::env::current_dir().map_err(|e| CliError::io("read", ".", e))?;
    let dir = if args.dir.is_absolute() { args.dir } else { cwd.join(args.dir) };
    // Tidy `./.spike-dev` into `/abs/.spike-dev` without requiring it to exist.
    let dir: PathBuf =
        dir.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect();
    let bin_dir = match std::env::var_os(ENV_BIN_DIR).filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => std::env::current_exe()
            .map_err(|e| CliError::Dev(format!("cannot find the spike binary's directory: {e}")))?
            .parent()
            .map(PathBuf::from)
            .ok_or_else(|| CliError::Dev("the spike binary has no parent directory".into()))?,
    };
    let prefix = format!("spiffe://{}/", args.trust_domain);
    let mut workloads = Vec::new();
    for spec in &args.workloads {
        let (name, id) = spec.split_once('=').ok_or_else(|| {
            CliError::Usage(format!("--workload {spec:?}: expected NAME=SPIFFE_ID"))
        })?;
        if !id.starts_with(&prefix) {
            return Err(CliError::Usage(format!(
                "--workload {spec:?}: the SPIFFE ID must be in the trust domain {}, i.e. start \
                 with {prefix}",
                args.trust_domain
            )));
        }
        workloads.push((name.to_owned(), id.to_owned()));
    }
    Ok(SandboxConfig {
        dir,
        backend: args.backend,
        workloads,
        port: args.port,
        trust_domain: args.trust_domain,
        log_level: args.log_level,
        bin_dir,
    })
}
