//! spike-nexus: the secret store, speaking SPIKE's v1 REST protocol over SPIFFE mTLS.
//!
//! - [`config`]: SPIKE's environment variables → [`NexusConfig`];
//! - [`state`]: backend, root key slot, policy cache, restore progress, counters;
//! - [`authz`]: SPIKE's roles and policy checks;
//! - [`router`](mod@router): dispatch in SPIKE's order, audit before response;
//! - [`handlers`]: one module per route family.

pub mod authz;
pub mod config;
pub mod handlers;
pub mod jwt;
pub mod recovery;
pub mod reply;
pub mod rollback;
pub mod router;
pub mod state;

pub use crate::caller::Caller;
pub use config::{AuditSink, BackendKind, NexusArgs, NexusConfig};
pub use router::router;
pub use state::{NexusError, NexusState};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use spike_client::identity::IdentitySource;
use spike_core::identity::Role;
use tokio::task::JoinHandle;

use crate::listener::TlsListener;

/// A running Nexus: its address, its state, and a way to stop it.
#[derive(Debug)]
pub struct RunningNexus {
    addr: SocketAddr,
    state: Arc<NexusState>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    task: JoinHandle<()>,
    /// Recovery from (and re-arming of) the Keepers, when configured.
    recovery: Option<JoinHandle<()>>,
    /// The periodic writer of audit refusal summaries.
    audit_flusher: JoinHandle<()>,
    /// The JWT-SVID listener, when configured: its address and its serving task.
    jwt: Option<(SocketAddr, JoinHandle<()>)>,
}

impl RunningNexus {
    /// The address it listens on (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the JWT-SVID listener, if it is on.
    pub fn jwt_addr(&self) -> Option<SocketAddr> {
        self.jwt.as_ref().map(|(addr, _)| *addr)
    }

    /// Its shared state (readiness, unsealing).
    pub fn state(&self) -> &Arc<NexusState> {
        &self.state
    }

    /// Stops accepting, lets in-flight requests finish, and returns when done.
    pub async fn shutdown(mut self) {
        if let Some(recovery) = self.recovery.take() {
            recovery.abort();
            // Wait until it has let go of the state (and so of the store).
            let _ = recovery.await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        let _ = (&mut self.task).await;
        if let Some((_, jwt)) = self.jwt.take() {
            let _ = jwt.await;
        }
        // No request is in flight any more: summarise the refusals still being counted.
        self.audit_flusher.abort();
        let _ = (&mut self.audit_flusher).await;
        if let Err(e) = self.state.audit.flush_all() {
            tracing::error!(error = %e, "cannot write the last audit refusal summaries");
        }
    }

    /// Waits until the server stops by itself (it does not, unless it fails).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

/// Opens the store, binds the listener and serves SPIKE's v1 API over mTLS with the SVID from
/// `source`. Returns once listening.
pub async fn start(
    config: NexusConfig,
    source: IdentitySource,
) -> Result<RunningNexus, NexusError> {
    let keeper_source = source.clone();
    let jwt_source = source.clone();
    // SPIKE's Nexus admits any SVID its X.509 source trusts — its own trust domain and every
    // federated bundle the Workload API hands out — and lets roles and policies decide per
    // request. Roles still match only in their SPIKE_TRUST_ROOT* trust domains.
    let tls = crate::tls::mtls_server(source)
        .any_trust_domain_with_bundle()
        .alpn_protocols([b"h2".to_vec(), b"http/1.1".to_vec()])
        .build()
        .map_err(|e| NexusError::Tls(e.to_string()))?;
    let connections = crate::connections::Connections::new(config.connections);
    let listen = config.listen;
    let state = NexusState::open(config)?;
    let locks = spike_core::secret::memory_lock_status();
    if locks.failed > 0 {
        tracing::warn!(
            failed = locks.failed,
            "could not mlock key material (raise RLIMIT_MEMLOCK, e.g. `ulimit -l`); keys may be \
             swapped to disk"
        );
    }
    let listener = crate::listener::bind(listen)
        .await
        .map_err(|source| NexusError::Io { what: "binding the Nexus listener".into(), source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| NexusError::Io { what: "reading the listen address".into(), source })?;
    state.metrics.attach_connections(connections.clone());
    let app = router(state.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut stopped_jwt = stopped.clone();
    let mut stopped = stopped;
    let listener = TlsListener::new(listener, Arc::new(tls), connections, Duration::from_secs(10));
    let task = tokio::spawn(listener.serve_mtls(
        move |peer| app.clone().layer(Extension(Caller(Arc::from(peer.to_string())))),
        async move {
            let _ = stopped.changed().await;
        },
    ));
    let jwt = match state.config().jwt.clone() {
        Some(jwt) => {
            let until = async move {
                let _ = stopped_jwt.changed().await;
            };
            Some(start_jwt_listener(state.clone(), jwt, jwt_source, until).await?)
        }
        None => None,
    };
    let recovery = recovery::spawn(state.clone(), keeper_source)?;
    let audit_flusher = router::spawn_audit_flusher(state.clone());
    tracing::info!(%addr, ready = state.is_ready(), "spike-nexus listening");
    Ok(RunningNexus { addr, state, stop: Some(stop), task, recovery, audit_flusher, jwt })
}

/// Starts the JWT-SVID listener (see [`jwt`]): server-authenticated TLS with Nexus's SVID, the
/// same router behind the bearer-token check, its own connection limits.
async fn start_jwt_listener(
    state: Arc<NexusState>,
    config: config::JwtListenerConfig,
    source: IdentitySource,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, JoinHandle<()>), NexusError> {
    let tls = crate::tls::server_auth_only(source, [b"h2".to_vec(), b"http/1.1".to_vec()])
        .map_err(|e| NexusError::Tls(e.to_string()))?;
    let keys = Arc::new(jwt::JwtKeys::default());
    jwt::spawn_key_updates(config.bundles.clone(), keys.clone()).await;
    let listener = crate::listener::bind(config.listen).await.map_err(|source| NexusError::Io {
        what: "binding the JWT-SVID listener".into(),
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| NexusError::Io {
        what: "reading the JWT-SVID listen address".into(),
        source,
    })?;
    let connections = crate::connections::Connections::new(state.config().connections);
    let config = Arc::new(config);
    let (mw_state, mw_config) = (state.clone(), config.clone());
    let app = router(state.clone()).layer(axum::middleware::from_fn(move |request, next| {
        jwt::authenticate(mw_state.clone(), mw_config.clone(), keys.clone(), request, next)
    }));
    let listener = TlsListener::new(listener, Arc::new(tls), connections, Duration::from_secs(10));
    let task = tokio::spawn(listener.serve_bearer(move || app.clone(), shutdown));
    tracing::info!(%addr, audience = %config.audience, "JWT-SVID listener on");
    Ok((addr, task))
}

/// Runs Nexus until SIGINT or SIGTERM: the body of the `spike-nexus` binary.
pub async fn run(config: NexusConfig) -> Result<(), NexusError> {
    let choice = config.trust_roots.svid_choice(Role::Nexus);
    let source = IdentitySource::from_env_choosing(choice)
        .await
        .map_err(|e| NexusError::Tls(e.to_string()))?;
    let nexus = start(config, source).await?;
    crate::shutdown::signal().await;
    tracing::info!("shutting down");
    nexus.shutdown().await;
    Ok(())
}
