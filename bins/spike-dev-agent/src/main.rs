//! `spike-dev-agent`: a development SPIFFE Workload API server. Thin: parses flags, starts
//! `spike_server::dev::agent::DevAgent`, prints where to connect, and stops on Ctrl-C/SIGTERM.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use spike_server::dev::agent::{AgentConfigFile, DevAgent, DevAgentHandle, RegistrationEntry};
use spike_server::error::DevAgentError;

/// A development SPIFFE Workload API: issues short-lived X509-SVIDs and JWT-SVIDs for SPIKE's
/// well-known identities (and any you register) over Unix sockets.
#[derive(Debug, Parser)]
#[command(name = "spike-dev-agent", version)]
struct Cli {
    /// Trust domain of the CA and every SVID.
    #[arg(long, env = "SPIKE_TRUST_ROOT", value_name = "TD")]
    trust_domain: Option<String>,

    /// Directory for the sockets: `<name>.sock` per entry, plus the shared agent.sock
    /// [default: $TMPDIR/spike-dev-agent].
    #[arg(long, value_name = "DIR")]
    socket_dir: Option<PathBuf>,

    /// Keep the CA here (ca.pem, ca_key.pem) and reuse it on restart; default: in memory.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// X509-SVID lifetime, e.g. 1h, 10m, 30s; SVIDs are re-issued at half of it [default: 1h].
    #[arg(long, value_name = "DURATION")]
    svid_ttl: Option<String>,

    /// JWT-SVID lifetime (whole seconds, at least 2s), e.g. 5m, 30s [default: 5m].
    #[arg(long, value_name = "DURATION")]
    jwt_svid_ttl: Option<String>,

    /// How often a new JWT signing key (ES256) replaces the current one; a retired key stays
    /// in the JWT bundle until its tokens have expired [default: 1h].
    #[arg(long, value_name = "DURATION")]
    jwt_key_rotation: Option<String>,

    /// TOML file with settings and `[[entry]]` tables; flags win over it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Register an identity: NAME=SPIFFE_ID[,unix:uid:N...] (repeatable).
    #[arg(long = "entry", value_name = "SPEC")]
    entries: Vec<String>,

    /// Do not register SPIKE's well-known identities (nexus, keeper, pilot-*, ...).
    #[arg(long)]
    no_default_entries: bool,

    /// Keep NAME's SVID written to DIR as svid.pem, svid_key.pem, bundle.pem (repeatable).
    #[arg(long = "write-svid", value_name = "NAME=DIR")]
    write_svids: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SPIKE_SYSTEM_LOG_LEVEL")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    spike_server::process::run_main("spike-dev-agent", run(cli))
}

async fn run(cli: Cli) -> Result<(), DevAgentError> {
    let mut builder = DevAgent::builder();
    if let Some(path) = &cli.config {
        builder = AgentConfigFile::load(path)?.apply(builder)?;
    }
    if let Some(td) = cli.trust_domain {
        builder = builder.trust_domain(td);
    }
    if let Some(dir) = cli.socket_dir {
        builder = builder.socket_dir(dir);
    }
    if let Some(dir) = cli.state_dir {
        builder = builder.state_dir(dir);
    }
    if let Some(ttl) = &cli.svid_ttl {
        let ttl = spike_server::config::parse_duration("--svid-ttl", ttl)
            .map_err(|e| DevAgentError::Option(e.to_string()))?;
        builder = builder.svid_ttl(ttl);
    }
    if let Some(ttl) = &cli.jwt_svid_ttl {
        let ttl = spike_server::config::parse_duration("--jwt-svid-ttl", ttl)
            .map_err(|e| DevAgentError::Option(e.to_string()))?;
        builder = builder.jwt_svid_ttl(ttl);
    }
    if let Some(interval) = &cli.jwt_key_rotation {
        let interval = spike_server::config::parse_duration("--jwt-key-rotation", interval)
            .map_err(|e| DevAgentError::Option(e.to_string()))?;
        builder = builder.jwt_key_rotation(interval);
    }
    if cli.no_default_entries {
        builder = builder.default_entries(false);
    }
    for spec in &cli.entries {
        builder = builder.entry(RegistrationEntry::parse(spec)?);
    }
    for spec in &cli.write_svids {
        let (name, dir) = spec.split_once('=').ok_or_else(|| {
            DevAgentError::Option(format!("--write-svid {spec:?}: expected NAME=DIR"))
        })?;
        builder = builder.write_svid(name, dir);
    }
    let agent = builder.build()?.serve().await?;
    print_endpoints(&agent);
    wait_for_signal().await;
    eprintln!("spike-dev-agent: shutting down");
    agent.shutdown().await;
    Ok(())
}

fn print_endpoints(agent: &DevAgentHandle) {
    println!("spike-dev-agent: trust domain {}", agent.trust_domain());
    for (name, id, path) in agent.sockets() {
        println!("  {name:<16} {id:<48} unix://{}", path.display());
    }
    println!("  {:<16} {:<48} {}", "(by unix:uid)", "(selectors)", agent.shared_endpoint());
    if let Some((name, _, _)) = agent.sockets().next() {
        let endpoint = agent.endpoint(name).unwrap_or_default();
        println!("e.g.: export SPIFFE_ENDPOINT_SOCKET={endpoint}");
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
