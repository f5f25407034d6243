//! `spike-dev-agent`: a development SPIFFE Workload API server (gRPC over Unix sockets).
//!
//! It is a real, standard Workload API — SPIRE-compatible clients (the `spiffe` crate,
//! go-spiffe, py-spiffe) fetch X509-SVIDs from it — so production code never special-cases it
//! (DESIGN.md, "Dev identity"). It keeps a CA for one trust domain, issues short-lived
//! X509-SVIDs, re-issues them at half-life and pushes them on open `FetchX509SVID` streams.
//!
//! It serves JWT-SVIDs too, as SPIRE's agent does: `FetchJWTSVID` mints ES256 tokens
//! (`sub`, `aud`, `exp`, `iat`; lifetime [`DEFAULT_JWT_SVID_TTL`]) with the trust domain's
//! current signing key; the key rotates every [`DEFAULT_JWT_KEY_ROTATION`], and a retired key
//! stays in the `FetchJWTBundles` JWKS until every token it signed has expired (each change is
//! a new message on open streams); `ValidateJWTSVID` verifies tokens against those keys.
//!
//! Callers are attested two ways: each registration entry has its own socket
//! `<socket dir>/<name>.sock` (mode 0600, so the file's permissions are the attestation), and
//! the shared `<socket dir>/agent.sock` hands out the entries whose `unix:uid:N` selector
//! matches the caller's SO_PEERCRED user ID. A caller matching nothing gets
//! `PERMISSION_DENIED`; a call without the `workload.spiffe.io: true` header gets
//! `INVALID_ARGUMENT`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), spike_server::error::DevAgentError> {
//! use std::time::Duration;
//! use spike_server::dev::agent::DevAgent;
//!
//! let agent = DevAgent::builder()
//!     .trust_domain("spike.ist")
//!     .socket_dir("/tmp/spike-dev-agent")
//!     .svid_ttl(Duration::from_secs(3600))
//!     .jwt_svid_ttl(Duration::from_secs(300))
//!     .jwt_key_rotation(Duration::from_secs(3600))
//!     .build()?
//!     .serve()
//!     .await?;
//! println!("SPIFFE_ENDPOINT_SOCKET={}", agent.endpoint("nexus").expect("default entry"));
//! agent.shutdown().await;
//! # Ok(()) }
//! ```

mod authority;
mod ca;
mod entries;
mod jwt;
mod service;

pub use entries::{
    AgentConfigFile, EntryConfig, RegistrationEntry, SHARED_SOCKET_NAME, Selector, WriteSvidConfig,
    default_entries,
};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spiffe::{SpiffeId, TrustDomain};
use tokio::net::UnixListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;

use self::ca::{Ca, Issued, write_file};
use self::jwt::JwtKeys;
use self::service::{Attestor, WorkloadApi};
use crate::error::DevAgentError;

/// The Workload API messages and service, generated from `proto/workload.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic, unreachable_pub)]
pub mod proto {
    tonic::include_proto!("_");
}

/// Default SVID lifetime.
pub const DEFAULT_SVID_TTL: Duration = Duration::from_secs(3600);
/// Shortest SVID lifetime accepted (tests use a few seconds).
pub const MIN_SVID_TTL: Duration = Duration::from_secs(2);
/// Default JWT-SVID lifetime (SPIRE's default too).
pub const DEFAULT_JWT_SVID_TTL: Duration = Duration::from_secs(300);
/// Shortest JWT-SVID lifetime accepted; JWT times are whole seconds.
pub const MIN_JWT_SVID_TTL: Duration = Duration::from_secs(2);
/// Default interval between JWT signing keys.
pub const DEFAULT_JWT_KEY_ROTATION: Duration = Duration::from_secs(3600);
/// Shortest JWT key rotation interval accepted (tests use a few seconds).
pub const MIN_JWT_KEY_ROTATION: Duration = Duration::from_secs(1);
/// How long [`DevAgentHandle::shutdown`] waits for connections to close before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// The socket directory used when none is given: `$TMPDIR/spike-dev-agent`.
pub fn default_socket_dir() -> PathBuf {
    std::env::temp_dir().join("spike-dev-agent")
}

/// Configures a [`DevAgent`]; start with [`DevAgent::builder`].
#[derive(Debug, Clone)]
pub struct DevAgentBuilder {
    trust_domain: String,
    state_dir: Option<PathBuf>,
    socket_dir: PathBuf,
    svid_ttl: Duration,
    jwt_svid_ttl: Duration,
    jwt_key_rotation: Duration,
    default_entries: bool,
    entries: Vec<RegistrationEntry>,
    write_svids: Vec<(String, PathBuf)>,
}

impl DevAgentBuilder {
    /// The trust domain of the CA and of every entry (default `spike.ist`).
    pub fn trust_domain(mut self, trust_domain: impl Into<String>) -> Self {
        self.trust_domain = trust_domain.into();
        self
    }

    /// Keeps the CA in `dir` (`ca.pem`, `ca_key.pem`), reusing it on the next start; without
    /// a state dir the CA lives in memory only.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Where sockets are made (default [`default_socket_dir`]).
    pub fn socket_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.socket_dir = dir.into();
        self
    }

    /// SVID lifetime (default [`DEFAULT_SVID_TTL`]); SVIDs are re-issued at half of it.
    pub fn svid_ttl(mut self, ttl: Duration) -> Self {
        self.svid_ttl = ttl;
        self
    }

    /// JWT-SVID lifetime, whole seconds (default [`DEFAULT_JWT_SVID_TTL`]): a token's `exp`
    /// is its `iat` plus this, and a retired signing key stays in the bundle this long.
    pub fn jwt_svid_ttl(mut self, ttl: Duration) -> Self {
        self.jwt_svid_ttl = ttl;
        self
    }

    /// How often a new JWT signing key replaces the current one (default
    /// [`DEFAULT_JWT_KEY_ROTATION`]).
    pub fn jwt_key_rotation(mut self, interval: Duration) -> Self {
        self.jwt_key_rotation = interval;
        self
    }

    /// Whether to register SPIKE's well-known identities (default true); see
    /// [`default_entries`]. An explicit entry of the same name replaces a default one.
    pub fn default_entries(mut self, enabled: bool) -> Self {
        self.default_entries = enabled;
        self
    }

    /// Adds a registration entry.
    pub fn entry(mut self, entry: RegistrationEntry) -> Self {
        self.entries.push(entry);
        self
    }

    /// Adds registration entries.
    pub fn entries(mut self, entries: impl IntoIterator<Item = RegistrationEntry>) -> Self {
        self.entries.extend(entries);
        self
    }

    /// Keeps entry `name`'s SVID written to `dir` as spiffe-helper files (`svid.pem`,
    /// `svid_key.pem`, `bundle.pem`), rewritten on every rotation.
    pub fn write_svid(mut self, name: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        self.write_svids.push((name.into(), dir.into()));
        self
    }

    /// Checks the configuration and loads (or makes) the CA.
    pub fn build(self) -> Result<DevAgent, DevAgentError> {
        let trust_domain = TrustDomain::new(&self.trust_domain).map_err(|e| {
            DevAgentError::TrustDomain { value: self.trust_domain.clone(), reason: e.to_string() }
        })?;
        if self.svid_ttl < MIN_SVID_TTL {
            return Err(DevAgentError::Option(format!(
                "SVID TTL {:?} is too short: the minimum is {MIN_SVID_TTL:?}",
                self.svid_ttl
            )));
        }
        if self.jwt_svid_ttl < MIN_JWT_SVID_TTL {
            return Err(DevAgentError::Option(format!(
                "JWT-SVID TTL {:?} is too short: the minimum is {MIN_JWT_SVID_TTL:?}",
                self.jwt_svid_ttl
            )));
        }
        if self.jwt_key_rotation < MIN_JWT_KEY_ROTATION {
            return Err(DevAgentError::Option(format!(
                "JWT key rotation interval {:?} is too short: the minimum is \
                 {MIN_JWT_KEY_ROTATION:?}",
                self.jwt_key_rotation
            )));
        }
        let mut entries =
            if self.default_entries { default_entries(&trust_domain)? } else { Vec::new() };
        let mut default_replaced = vec![false; entries.len()];
        for entry in self.entries {
            if entry.spiffe_id().trust_domain() != &trust_domain {
                return Err(DevAgentError::Entry {
                    entry: entry.name().to_owned(),
                    reason: format!(
                        "{} is outside the agent's trust domain {trust_domain}",
                        entry.spiffe_id()
                    ),
                });
            }
            match entries.iter().position(|e| e.name() == entry.name()) {
                // An explicit entry replaces a default of the same name, once.
                Some(i) if default_replaced.get(i) == Some(&false) => {
                    entries[i] = entry;
                    default_replaced[i] = true;
                }
                Some(_) => {
                    return Err(DevAgentError::Entry {
                        entry: entry.name().to_owned(),
                        reason: "another entry already has this name".into(),
                    });
                }
                None => entries.push(entry),
            }
        }
        if entries.is_empty() {
            return Err(DevAgentError::Option(
                "no registration entries: keep the defaults or add --entry NAME=SPIFFE_ID".into(),
            ));
        }
        for (name, _) in &self.write_svids {
            if !entries.iter().any(|e| e.name() == name) {
                return Err(DevAgentError::UnknownEntry(name.clone()));
            }
        }
        let ca = Ca::load_or_create(&trust_domain, self.state_dir.as_deref())?;
        Ok(DevAgent {
            trust_domain,
            socket_dir: self.socket_dir,
            svid_ttl: self.svid_ttl,
            jwt_svid_ttl: self.jwt_svid_ttl,
            jwt_key_rotation: self.jwt_key_rotation,
            entries,
            write_svids: self.write_svids,
            ca: Arc::new(ca),
        })
    }
}

/// A configured dev agent with its CA, ready to [`serve`](DevAgent::serve).
#[derive(Debug)]
pub struct DevAgent {
    trust_domain: TrustDomain,
    socket_dir: PathBuf,
    svid_ttl: Duration,
    jwt_svid_ttl: Duration,
    jwt_key_rotation: Duration,
    entries: Vec<RegistrationEntry>,
    write_svids: Vec<(String, PathBuf)>,
    ca: Arc<Ca>,
}

/// What every socket's service reads: the CA, the entries, the current SVIDs and JWT keys.
pub(crate) struct Shared {
    trust_domain: TrustDomain,
    ca: Arc<Ca>,
    entries: Vec<RegistrationEntry>,
    state: watch::Receiver<Arc<Snapshot>>,
    jwt: watch::Receiver<Arc<JwtKeys>>,
    jwt_svid_ttl: Duration,
    shutdown: watch::Receiver<bool>,
}

/// The SVIDs of one issuance round, one per entry (same order as the entries).
pub(crate) struct Snapshot {
    generation: u64,
    svids: Vec<Arc<Issued>>,
}

impl DevAgent {
    /// Starts configuring an agent (trust domain `spike.ist`, X509-SVID TTL 1h, JWT-SVID TTL
    /// 5m, a new JWT key every hour, SPIKE's default entries).
    pub fn builder() -> DevAgentBuilder {
        DevAgentBuilder {
            trust_domain: spike_core::identity::DEFAULT_TRUST_DOMAIN.to_owned(),
            state_dir: None,
            socket_dir: default_socket_dir(),
            svid_ttl: DEFAULT_SVID_TTL,
            jwt_svid_ttl: DEFAULT_JWT_SVID_TTL,
            jwt_key_rotation: DEFAULT_JWT_KEY_ROTATION,
            default_entries: true,
            entries: Vec::new(),
            write_svids: Vec::new(),
        }
    }

    /// The registration entries, in order.
    pub fn entries(&self) -> &[RegistrationEntry] {
        &self.entries
    }

    /// Binds the sockets, issues the first SVIDs and serves until
    /// [`DevAgentHandle::shutdown`]. Must run inside a tokio runtime.
    pub async fn serve(self) -> Result<DevAgentHandle, DevAgentError> {
        prepare_socket_dir(&self.socket_dir)?;
        let first = Arc::new(issue_all(&self.ca, &self.entries, self.svid_ttl, 0)?);
        write_svid_files_for(&self.ca, &self.entries, &first, &self.write_svids)?;

        let (state_tx, state_rx) = watch::channel(Arc::clone(&first));
        let (jwt_tx, jwt_rx) = watch::channel(Arc::new(JwtKeys::new(&self.trust_domain)?));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            trust_domain: self.trust_domain.clone(),
            ca: Arc::clone(&self.ca),
            entries: self.entries.clone(),
            state: state_rx,
            jwt: jwt_rx,
            jwt_svid_ttl: self.jwt_svid_ttl,
            shutdown: shutdown_rx.clone(),
        });

        // Bind everything before spawning anything, so a bad path fails the whole start.
        let mut listeners = Vec::new();
        let mut sockets = Vec::new();
        for (index, entry) in self.entries.iter().enumerate() {
            let path = self.socket_dir.join(format!("{}.sock", entry.name()));
            listeners.push((bind(&path, 0o600)?, Attestor::Entry(index), path.clone()));
            sockets.push((entry.name().to_owned(), path));
        }
        let shared_path = self.socket_dir.join(format!("{SHARED_SOCKET_NAME}.sock"));
        // Anyone may ask on the shared socket; SO_PEERCRED decides what they get.
        listeners.push((bind(&shared_path, 0o666)?, Attestor::PeerUid, shared_path.clone()));

        let mut tasks = Vec::new();
        for (listener, attestor, path) in listeners {
            let service = WorkloadApi { shared: Arc::clone(&shared), attestor };
            tasks.push(tokio::spawn(serve_socket(listener, service, path, shutdown_rx.clone())));
        }
        let rotate = Arc::new(Notify::new());
        tasks.push(tokio::spawn(rotate_loop(RotateLoop {
            ca: Arc::clone(&self.ca),
            entries: self.entries.clone(),
            ttl: self.svid_ttl,
            write_svids: self.write_svids.clone(),
            state: state_tx,
            rotate: Arc::clone(&rotate),
            shutdown: shutdown_rx.clone(),
        })));
        let rotate_jwt = Arc::new(Notify::new());
        tasks.push(tokio::spawn(jwt_rotate_loop(JwtRotateLoop {
            keys: jwt_tx,
            interval: self.jwt_key_rotation,
            ttl: self.jwt_svid_ttl,
            rotate: Arc::clone(&rotate_jwt),
            shutdown: shutdown_rx,
        })));

        tracing::info!(
            trust_domain = %self.trust_domain,
            socket_dir = %self.socket_dir.display(),
            svid_ttl = ?self.svid_ttl,
            jwt_svid_ttl = ?self.jwt_svid_ttl,
            jwt_key_rotation = ?self.jwt_key_rotation,
            entries = self.entries.len(),
            "spike-dev-agent serving the SPIFFE Workload API"
        );
        Ok(DevAgentHandle {
            shared,
            socket_dir: self.socket_dir,
            sockets,
            shared_socket: shared_path,
            shutdown: shutdown_tx,
            rotate,
            rotate_jwt,
            tasks,
        })
    }
}

/// A running dev agent: its socket paths, on-demand SVID files, and shutdown.
#[derive(Debug)]
pub struct DevAgentHandle {
    shared: Arc<Shared>,
    socket_dir: PathBuf,
    sockets: Vec<(String, PathBuf)>,
    shared_socket: PathBuf,
    shutdown: watch::Sender<bool>,
    rotate: Arc<Notify>,
    rotate_jwt: Arc<Notify>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("trust_domain", &self.trust_domain.to_string())
            .finish_non_exhaustive()
    }
}

impl DevAgentHandle {
    /// The agent's trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.shared.trust_domain
    }

    /// The directory holding the sockets.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// Entry names with their SPIFFE IDs and socket paths, in registration order.
    pub fn sockets(&self) -> impl Iterator<Item = (&str, &SpiffeId, &Path)> {
        self.sockets
            .iter()
            .zip(&self.shared.entries)
            .map(|((name, path), entry)| (name.as_str(), entry.spiffe_id(), path.as_path()))
    }

    /// The socket path of entry `name`.
    pub fn socket_path(&self, name: &str) -> Option<&Path> {
        self.sockets.iter().find(|(n, _)| n == name).map(|(_, p)| p.as_path())
    }

    /// The `SPIFFE_ENDPOINT_SOCKET` value for entry `name` (`unix:///...`).
    pub fn endpoint(&self, name: &str) -> Option<String> {
        self.socket_path(name).map(unix_endpoint)
    }

    /// The shared socket, attested by `unix:uid:N` selectors.
    pub fn shared_socket_path(&self) -> &Path {
        &self.shared_socket
    }

    /// The `SPIFFE_ENDPOINT_SOCKET` value for the shared socket.
    pub fn shared_endpoint(&self) -> String {
        unix_endpoint(&self.shared_socket)
    }

    /// The trust bundle (the CA certificate), PEM.
    pub fn bundle_pem(&self) -> &str {
        self.shared.ca.cert_pem()
    }

    /// When the current SVID of entry `name` expires.
    pub fn svid_not_after(&self, name: &str) -> Option<SystemTime> {
        let index = self.shared.entries.iter().position(|e| e.name() == name)?;
        self.shared.state.borrow().svids.get(index).map(|s| s.not_after)
    }

    /// Writes entry `name`'s current SVID to `dir` as `svid.pem`, `svid_key.pem` (0600) and
    /// `bundle.pem`, for tools such as curl and openssl.
    pub fn write_svid_files(&self, name: &str, dir: &Path) -> Result<(), DevAgentError> {
        let snapshot = Arc::clone(&self.shared.state.borrow());
        let target = [(name.to_owned(), dir.to_path_buf())];
        write_svid_files_for(&self.shared.ca, &self.shared.entries, &snapshot, &target)
    }

    /// Re-issues every SVID now (as at half-life) and pushes them to open streams.
    pub fn rotate_now(&self) {
        self.rotate.notify_one();
    }

    /// Replaces the JWT signing key now (as at the rotation interval); the retired key stays
    /// in the bundle until its tokens have expired, and open `FetchJWTBundles` streams get
    /// the new bundle.
    pub fn rotate_jwt_key_now(&self) {
        self.rotate_jwt.notify_one();
    }

    /// The current JWT bundle of the agent's trust domain: a JWKS document, as
    /// `FetchJWTBundles` sends it.
    pub fn jwt_bundle_json(&self) -> Vec<u8> {
        self.shared.jwt.borrow().jwks()
    }

    /// Stops serving: ends open streams, waits briefly for connections, removes the sockets.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    async fn stop(&mut self) {
        self.shutdown.send_replace(true);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        for task in self.tasks.drain(..) {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
            }
        }
        for path in self.sockets.iter().map(|(_, p)| p).chain([&self.shared_socket]) {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for DevAgentHandle {
    fn drop(&mut self) {
        // Without an explicit shutdown, still stop the tasks (they hold the sockets).
        self.shutdown.send_replace(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn unix_endpoint(path: &Path) -> String {
    format!("unix://{}", path.display())
}

fn issue_all(
    ca: &Ca,
    entries: &[RegistrationEntry],
    ttl: Duration,
    generation: u64,
) -> Result<Snapshot, DevAgentError> {
    let svids = entries
        .iter()
        .map(|e| ca.issue(e.spiffe_id(), ttl).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Snapshot { generation, svids })
}

fn write_svid_files_for(
    ca: &Ca,
    entries: &[RegistrationEntry],
    snapshot: &Snapshot,
    targets: &[(String, PathBuf)],
) -> Result<(), DevAgentError> {
    for (name, dir) in targets {
        let index = entries
            .iter()
            .position(|e| e.name() == name)
            .ok_or_else(|| DevAgentError::UnknownEntry(name.clone()))?;
        let issued =
            snapshot.svids.get(index).ok_or_else(|| DevAgentError::UnknownEntry(name.clone()))?;
        ca::create_private_dir(dir)?;
        // Key first: a reader that sees the new svid.pem with the old key rejects the pair
        // and retries, but never pairs a new key with nothing.
        write_file(
            &dir.join(spike_client::identity::SVID_KEY_FILE),
            issued.key_pem.as_bytes(),
            true,
        )?;
        write_file(
            &dir.join(spike_client::identity::SVID_FILE),
            issued.cert_pem.as_bytes(),
            false,
        )?;
        write_file(
            &dir.join(spike_client::identity::BUNDLE_FILE),
            ca.cert_pem().as_bytes(),
            false,
        )?;
    }
    Ok(())
}

fn prepare_socket_dir(dir: &Path) -> Result<(), DevAgentError> {
    if !dir.is_dir() {
        std::fs::create_dir_all(dir).map_err(|source| DevAgentError::Io {
            action: "create directory",
            path: dir.to_path_buf(),
            source,
        })?;
        // Others must reach agent.sock; the per-entry sockets are 0600 themselves.
        ca::set_mode(dir, 0o755)?;
    }
    Ok(())
}

/// Binds a Unix socket at `path`, replacing a stale socket file but never a live agent's.
fn bind(path: &Path, mode: u32) -> Result<UnixListener, DevAgentError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(DevAgentError::Option(format!(
            "socket path {} is {len} bytes; Unix sockets allow {MAX_SOCKET_PATH}: use a shorter \
             --socket-dir",
            path.display()
        )));
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(DevAgentError::Option(format!(
                "{} is in use by a running agent; stop it or use another --socket-dir",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(|source| DevAgentError::Io {
            action: "remove stale socket",
            path: path.to_path_buf(),
            source,
        })?;
    }
    let listener = UnixListener::bind(path).map_err(|source| DevAgentError::Io {
        action: "bind",
        path: path.to_path_buf(),
        source,
    })?;
    ca::set_mode(path, mode)?;
    Ok(listener)
}

async fn serve_socket(
    listener: UnixListener,
    service: WorkloadApi,
    path: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    let server = proto::spiffe_workload_api_server::SpiffeWorkloadApiServer::new(service);
    let incoming = futures::StreamExt::map(UnixListenerStream::new(listener), |conn| {
        conn.map(authority::AuthorityFix::new)
    });
    let result = tonic::transport::Server::builder()
        .add_service(server)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!(socket = %path.display(), error = %e, "Workload API socket stopped");
    }
}

struct RotateLoop {
    ca: Arc<Ca>,
    entries: Vec<RegistrationEntry>,
    ttl: Duration,
    write_svids: Vec<(String, PathBuf)>,
    state: watch::Sender<Arc<Snapshot>>,
    rotate: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
}

/// Re-issues every SVID at half its lifetime (or on demand) until shutdown.
async fn rotate_loop(mut r: RotateLoop) {
    let mut generation = 0u64;
    loop {
        tokio::select! {
            () = tokio::time::sleep(r.ttl / 2) => {}
            () = r.rotate.notified() => {}
            _ = r.shutdown.wait_for(|stop| *stop) => return,
        }
        generation += 1;
        match issue_all(&r.ca, &r.entries, r.ttl, generation) {
            Ok(snapshot) => {
                let snapshot = Arc::new(snapshot);
                if let Err(e) = write_svid_files_for(&r.ca, &r.entries, &snapshot, &r.write_svids) {
                    tracing::error!(error = %e, "could not rewrite SVID files");
                }
                r.state.send_replace(snapshot);
                tracing::debug!(generation, "rotated X509-SVIDs");
            }
            // Keep serving the previous SVIDs and try again at the next tick.
            Err(e) => tracing::error!(error = %e, "could not re-issue X509-SVIDs"),
        }
    }
}

struct JwtRotateLoop {
    keys: watch::Sender<Arc<JwtKeys>>,
    interval: Duration,
    ttl: Duration,
    rotate: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
}

/// Replaces the JWT signing key every `interval` (or on demand), and drops each retired key
/// from the bundle once every token it signed has expired, until shutdown. Every change is a
/// new generation, so open `FetchJWTBundles` streams send it.
async fn jwt_rotate_loop(mut r: JwtRotateLoop) {
    let mut next_rotation = tokio::time::Instant::now() + r.interval;
    loop {
        let current = Arc::clone(&r.keys.borrow());
        // Retired keys leave by wall-clock time, as token expiry is wall-clock time.
        let mut wake = next_rotation;
        if let Some(drop_at) = current.next_drop() {
            let wait = drop_at.duration_since(SystemTime::now()).unwrap_or_default();
            wake = wake.min(tokio::time::Instant::now() + wait);
        }
        let forced = tokio::select! {
            () = tokio::time::sleep_until(wake) => false,
            () = r.rotate.notified() => true,
            _ = r.shutdown.wait_for(|stop| *stop) => return,
        };
        let now = SystemTime::now();
        if forced || tokio::time::Instant::now() >= next_rotation {
            next_rotation = tokio::time::Instant::now() + r.interval;
            match current.rotated(now, r.ttl) {
                Ok(keys) => {
                    tracing::debug!(generation = keys.generation, "rotated the JWT signing key");
                    r.keys.send_replace(Arc::new(keys));
                }
                // Keep signing with the current key and try again at the next interval.
                Err(e) => tracing::error!(error = %e, "could not make a new JWT signing key"),
            }
        } else if let Some(keys) = current.pruned(now) {
            tracing::debug!(
                generation = keys.generation,
                "retired JWT signing key left the bundle"
            );
            r.keys.send_replace(Arc::new(keys));
        }
    }
}
