//! spike-keeper: holds one shard of Nexus's root key, in memory only, and hands it back to
//! Nexus after a restart, so Nexus never needs a human to unseal it.
//!
//! - [`shard`]: the one shard (page-locked, zeroized on replace and on exit);
//! - [`router`](mod@router): SPIKE's `/v1/store/contribute` and `/v1/store/shard`, authorised
//!   by SPIFFE ID;
//! - [`client`]: the mTLS client Nexus and Bootstrap use to talk to Keepers.
//!
//! A Keeper has no configuration beyond its listen address (`SPIKE_KEEPER_TLS_PORT`) and its
//! identity (the Workload API), writes nothing to disk, and never talks to other Keepers.
//! Only Nexus's and Bootstrap's SPIFFE IDs get past the TLS handshake (defence in depth; SPIKE's
//! Go Keeper lets any peer in and answers 401); inside, Bootstrap may only contribute.
//!
//! ```no_run
//! # async fn demo() -> Result<(), spike_server::keeper::KeeperError> {
//! use spike_server::keeper::{self, KeeperConfig};
//!
//! let source = spike_client::IdentitySource::from_env()
//!     .await
//!     .map_err(|e| keeper::KeeperError::Tls(e.to_string()))?;
//! let keeper = keeper::start(KeeperConfig::dev(), source).await?;
//! println!("keeper listening on https://{}", keeper.addr());
//! keeper.shutdown().await;
//! # Ok(()) }
//! ```

pub mod client;
pub mod router;
pub mod shard;

pub use client::{KeeperClient, KeeperProbe};
pub use router::{KeeperState, router};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use spike_client::identity::IdentitySource;
use spike_client::tls::IdMatcher;
use spike_core::identity::{DEFAULT_TRUST_DOMAIN, Role};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::caller::Caller;
use crate::config::{parse_duration, parse_listen_addr};
use crate::connections::ConnectionLimits;
use crate::error::ConfigError;
use crate::listener::TlsListener;
use crate::nexus::authz::{TrustRootArgs, TrustRoots};

/// Why a Keeper could not start, or why a call to a Keeper failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeeperError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The identity or TLS layer failed.
    #[error("identity/TLS: {0}")]
    Tls(String),
    /// A socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The Keeper could not be reached (refused, timed out, or the TLS handshake failed).
    #[error(
        "cannot reach the Keeper at {url}: {reason}; check that it runs, that the URL in \
         SPIKE_NEXUS_KEEPER_PEERS is right, and that it presents the Keeper SPIFFE ID"
    )]
    Unreachable {
        /// The Keeper's URL.
        url: String,
        /// What the HTTP/TLS layer reported.
        reason: String,
    },
    /// The Keeper refused our SPIFFE ID (HTTP 401/403).
    #[error(
        "the Keeper at {url} refused this identity (HTTP {status}); only Nexus may read shards \
         and only Nexus or Bootstrap may contribute them"
    )]
    Refused {
        /// The Keeper's URL.
        url: String,
        /// HTTP status.
        status: u16,
    },
    /// The Keeper answered with an error.
    #[error("the Keeper at {url} answered HTTP {status} ({code:?})")]
    Rejected {
        /// The Keeper's URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// SPIKE error code, if any.
        code: String,
    },
    /// The Keeper's answer did not have the expected shape.
    #[error("unexpected answer from the Keeper at {url}: {reason}")]
    Protocol {
        /// The Keeper's URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

/// The validated Keeper configuration.
#[derive(Debug, Clone)]
pub struct KeeperConfig {
    /// Listen address (`SPIKE_KEEPER_TLS_PORT`).
    pub listen: SocketAddr,
    /// Trust domains of Nexus and Bootstrap (`SPIKE_TRUST_ROOT_NEXUS`, `_BOOTSTRAP`).
    pub trust_roots: TrustRoots,
    /// Connection lifecycle (only Nexus and Bootstrap get past the handshake, so the caps are
    /// lower than Nexus's); `SPIKE_KEEPER_IDLE_TIMEOUT` sets the idle timeout.
    pub connections: ConnectionLimits,
}

/// A Keeper's connection limits by default: a Keeper has one or two callers with small pools.
pub fn keeper_connection_limits() -> ConnectionLimits {
    ConnectionLimits { max_connections: 256, max_per_caller: 128, ..ConnectionLimits::default() }
}

impl KeeperConfig {
    /// Defaults for development and tests: `127.0.0.1:0` (an ephemeral port), trust domain
    /// `spike.ist`.
    pub fn dev() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            trust_roots: TrustRoots::single(DEFAULT_TRUST_DOMAIN),
            connections: keeper_connection_limits(),
        }
    }
}

/// Keeper flags; each falls back to SPIKE's environment variable of the same meaning.
#[derive(Debug, Clone, clap::Args)]
pub struct KeeperArgs {
    /// Listen address, e.g. ":8443" or "127.0.0.1:8443".
    #[arg(long, env = "SPIKE_KEEPER_TLS_PORT", default_value = ":8443")]
    pub tls_port: String,
    /// Trust domain(s) of SPIKE's components, comma-separated.
    #[arg(long, env = "SPIKE_TRUST_ROOT", default_value = DEFAULT_TRUST_DOMAIN)]
    pub trust_root: String,
    /// Trust domain(s) of Nexus, comma-separated (defaults to --trust-root).
    #[arg(long, env = "SPIKE_TRUST_ROOT_NEXUS")]
    pub trust_root_nexus: Option<String>,
    /// Trust domain(s) of Bootstrap, comma-separated (defaults to --trust-root).
    #[arg(long, env = "SPIKE_TRUST_ROOT_BOOTSTRAP")]
    pub trust_root_bootstrap: Option<String>,
    /// Trust domain(s) of Keepers, comma-separated (defaults to --trust-root): picks this
    /// Keeper's SVID when the Workload API hands out several.
    #[arg(long, env = "SPIKE_TRUST_ROOT_KEEPER")]
    pub trust_root_keeper: Option<String>,
    /// Time a connection may stay open with no request in flight, e.g. "30s".
    #[arg(long, env = "SPIKE_KEEPER_IDLE_TIMEOUT", default_value = "30s")]
    pub idle_timeout: String,
}

impl TryFrom<KeeperArgs> for KeeperConfig {
    type Error = ConfigError;

    fn try_from(a: KeeperArgs) -> Result<Self, ConfigError> {
        let trust_roots = TrustRoots::parse(&TrustRootArgs {
            trust_root: &a.trust_root,
            nexus: a.trust_root_nexus.as_deref(),
            bootstrap: a.trust_root_bootstrap.as_deref(),
            keeper: a.trust_root_keeper.as_deref(),
            ..TrustRootArgs::default()
        })?;
        Ok(Self {
            listen: parse_listen_addr("SPIKE_KEEPER_TLS_PORT", &a.tls_port)?,
            trust_roots,
            connections: ConnectionLimits {
                idle_timeout: parse_duration("SPIKE_KEEPER_IDLE_TIMEOUT", &a.idle_timeout)?,
                ..keeper_connection_limits()
            },
        })
    }
}

/// A running Keeper: its address, its state, and a way to stop it.
#[derive(Debug)]
pub struct RunningKeeper {
    addr: SocketAddr,
    state: Arc<KeeperState>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningKeeper {
    /// The address it listens on (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its state (the shard slot).
    pub fn state(&self) -> &Arc<KeeperState> {
        &self.state
    }

    /// Stops accepting, lets in-flight requests finish, zeroizes the shard and returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        self.state.shard.clear();
    }
}

/// What Nexus and Bootstrap accept as a Keeper: `spiffe://<td>/spike/keeper` or an ID below
/// it (`.../spike/keeper/keeper-0`), in every trust domain of `SPIKE_TRUST_ROOT_KEEPER`.
pub fn keeper_matchers(roots: &TrustRoots) -> Result<Vec<IdMatcher>, KeeperError> {
    roots.matchers(Role::Keeper).map_err(|e| KeeperError::Tls(e.to_string()))
}

/// The base SPIFFE ID of Keepers in `trust_domain` (a Keeper may present it or an ID below
/// it).
pub fn keeper_id(trust_domain: &str) -> Result<spiffe::SpiffeId, KeeperError> {
    let id = Role::Keeper.spiffe_id(trust_domain);
    spiffe::SpiffeId::new(&id).map_err(|e| {
        KeeperError::Tls(format!("{id:?} is not a valid SPIFFE ID (check SPIKE_TRUST_ROOT*): {e}"))
    })
}

/// Binds the listener and serves SPIKE's Keeper API over mTLS with the SVID from `source`.
/// Returns once listening.
pub async fn start(
    config: KeeperConfig,
    source: IdentitySource,
) -> Result<RunningKeeper, KeeperError> {
    // Only Nexus and Bootstrap get past the handshake (SPIKE's `PeerCanTalkToKeeper`): each
    // role's ID or one below it, in any of its trust domains.
    let roots = &config.trust_roots;
    let tls_error = |e: spike_client::Error| KeeperError::Tls(e.to_string());
    let mut allowed = roots.matchers(Role::Nexus).map_err(tls_error)?;
    allowed.extend(roots.matchers(Role::Bootstrap).map_err(tls_error)?);
    let mut trust_domains: Vec<spiffe::TrustDomain> = Vec::new();
    for matcher in &allowed {
        if !trust_domains.contains(matcher.id().trust_domain()) {
            trust_domains.push(matcher.id().trust_domain().clone());
        }
    }
    let tls = crate::tls::mtls_server(source)
        .trust_domains(trust_domains)
        .authorize(allowed)
        .alpn_protocols([b"h2".to_vec(), b"http/1.1".to_vec()])
        .build()
        .map_err(|e| KeeperError::Tls(e.to_string()))?;
    let listener = crate::listener::bind(config.listen)
        .await
        .map_err(|source| KeeperError::Io { what: "binding the Keeper listener".into(), source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| KeeperError::Io { what: "reading the listen address".into(), source })?;
    let state = Arc::new(KeeperState::new(config.trust_roots.clone()));
    let app = router(state.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let connections = crate::connections::Connections::new(config.connections);
    let listener = TlsListener::new(listener, Arc::new(tls), connections, Duration::from_secs(5));
    let task = tokio::spawn(listener.serve_mtls(
        move |peer| app.clone().layer(Extension(Caller(Arc::from(peer.to_string())))),
        async move {
            let _ = stopped.await;
        },
    ));
    tracing::info!(%addr, "spike-keeper listening");
    Ok(RunningKeeper { addr, state, stop: Some(stop), task })
}

/// Runs a Keeper until SIGINT or SIGTERM: the body of the `spike-keeper` binary.
pub async fn run(config: KeeperConfig) -> Result<(), KeeperError> {
    let choice = config.trust_roots.svid_choice(Role::Keeper);
    let source = IdentitySource::from_env_choosing(choice)
        .await
        .map_err(|e| KeeperError::Tls(e.to_string()))?;
    let keeper = start(config, source).await?;
    crate::shutdown::signal().await;
    tracing::info!("shutting down; the shard is zeroized");
    keeper.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        keeper: KeeperArgs,
    }

    #[test]
    fn flags_map_to_config() {
        let cli = Cli::parse_from([
            "k",
            "--tls-port",
            "127.0.0.1:9443",
            "--trust-root",
            "a.org",
            "--trust-root-bootstrap",
            "b.org",
        ]);
        let config = KeeperConfig::try_from(cli.keeper).unwrap();
        assert_eq!(config.listen.port(), 9443);
        assert_eq!(config.trust_roots.nexus, ["a.org"]);
        assert_eq!(config.trust_roots.bootstrap, ["b.org"]);
        let lists = Cli::parse_from(["k", "--trust-root-nexus", "a.org,b.org"]);
        let config = KeeperConfig::try_from(lists.keeper).unwrap();
        assert_eq!(config.trust_roots.nexus, ["a.org", "b.org"]);
        let bad = Cli::parse_from(["k", "--trust-root-bootstrap", "a.org,"]);
        let err = KeeperConfig::try_from(bad.keeper).unwrap_err().to_string();
        assert!(err.contains("SPIKE_TRUST_ROOT_BOOTSTRAP") && err.contains("empty"), "{err}");
        let bad = Cli::parse_from(["k", "--tls-port", "8443"]);
        let err = KeeperConfig::try_from(bad.keeper).unwrap_err().to_string();
        assert!(err.contains("SPIKE_KEEPER_TLS_PORT"), "{err}");
    }
}
