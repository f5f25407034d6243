//! Nexus configuration: SPIKE's environment variable names, mapped in one place.
//!
//! [`NexusArgs`] is the flag/env surface (clap: a flag wins over its environment variable);
//! [`NexusConfig`] is the validated result the server runs with. Tests and `spike dev` build
//! a `NexusConfig` directly.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use spike_core::identity::DEFAULT_TRUST_DOMAIN;
use spike_core::wire::cipher::DEFAULT_MAX_CIPHERTEXT_LEN;

use super::authz::{TrustRootArgs, TrustRoots};
use crate::config::{parse_bounded, parse_duration, parse_listen_addr};
use crate::connections::ConnectionLimits;
use crate::error::ConfigError;
use crate::limits::{DEFAULT_MAX_BODY_BYTES, RateLimit};
use crate::postgres::{PgTls, PostgresSettings};

/// Where Nexus keeps (ciphertext) data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// In memory: a root key is made at start; everything is lost at exit (development).
    Memory,
    /// Embedded sled database in the data directory (the default).
    Sled,
    /// PostgreSQL, shared by several Nexus replicas (`SPIKE_NEXUS_POSTGRES_*`).
    Postgres,
}

impl BackendKind {
    /// Parses `SPIKE_NEXUS_BACKEND_STORE`.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        match value {
            "memory" => Ok(Self::Memory),
            "sled" => Ok(Self::Sled),
            "postgres" => Ok(Self::Postgres),
            "sqlite" | "lite" => Err(ConfigError::Invalid {
                name: "SPIKE_NEXUS_BACKEND_STORE",
                value: value.to_owned(),
                expected: "\"memory\", \"sled\" or \"postgres\" (spike-rs uses sled for an \
                           embedded store; to move a SPIKE sqlite store, start Nexus on sled or \
                           postgres and run `spike operator import-spike --db spike.db --shards \
                           DIR`)",
            }),
            _ => Err(ConfigError::Invalid {
                name: "SPIKE_NEXUS_BACKEND_STORE",
                value: value.to_owned(),
                expected: "\"memory\", \"sled\" or \"postgres\"",
            }),
        }
    }
}

/// Where audit lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSink {
    /// Append to a file (the chain continues across restarts).
    File(PathBuf),
    /// Standard error (development).
    Stderr,
}

/// The validated Nexus configuration.
#[derive(Debug, Clone)]
pub struct NexusConfig {
    /// Listen address (`SPIKE_NEXUS_TLS_PORT`).
    pub listen: SocketAddr,
    /// Storage backend (`SPIKE_NEXUS_BACKEND_STORE`).
    pub backend: BackendKind,
    /// Data directory for sled and the audit log (`SPIKE_NEXUS_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Trust domains of SPIKE's roles (`SPIKE_TRUST_ROOT*`).
    pub trust_roots: TrustRoots,
    /// Versions kept per secret (`SPIKE_NEXUS_MAX_SECRET_VERSIONS`).
    pub max_secret_versions: NonZeroU32,
    /// Shamir share count (`SPIKE_NEXUS_SHAMIR_SHARES`).
    pub shamir_shares: usize,
    /// Shamir threshold (`SPIKE_NEXUS_SHAMIR_THRESHOLD`).
    pub shamir_threshold: usize,
    /// Keeper URLs, positional: the n-th holds share n (`SPIKE_NEXUS_KEEPER_PEERS`).
    pub keeper_peers: Vec<String>,
    /// Audit log destination (`SPIKE_NEXUS_AUDIT_LOG`; spike-rs extension).
    pub audit: AuditSink,
    /// Audit log bounds: file rotation and refusal summaries (`SPIKE_NEXUS_AUDIT_MAX_BYTES`,
    /// `SPIKE_NEXUS_AUDIT_KEEP_FILES`, `SPIKE_NEXUS_AUDIT_REFUSAL_INTERVAL`; extensions).
    pub audit_limits: crate::audit::AuditLimits,
    /// Largest accepted request body (`SPIKE_NEXUS_MAX_BODY_BYTES`; extension).
    pub max_body_bytes: usize,
    /// Largest cipher payload (`SPIKE_NEXUS_CRYPTO_MAX_CIPHERTEXT_SIZE`, as SPIKE).
    pub max_cipher_bytes: usize,
    /// Per-caller rate limit (`SPIKE_NEXUS_RATE_LIMIT`, requests/second; extension); `None`
    /// (the default) is no limit: connections are bounded by [`NexusConfig::connections`].
    pub rate_limit: Option<RateLimit>,
    /// Connection lifecycle: caps, idle, header, body and handshake timeouts
    /// (`SPIKE_NEXUS_MAX_CONNECTIONS`, `SPIKE_NEXUS_MAX_CONNECTIONS_PER_CALLER`,
    /// `SPIKE_NEXUS_IDLE_TIMEOUT`, `SPIKE_NEXUS_HEADER_READ_TIMEOUT`,
    /// `SPIKE_NEXUS_BODY_READ_TIMEOUT`; extensions).
    pub connections: ConnectionLimits,
    /// How often Nexus re-sends each Keeper its shard (`SPIKE_NEXUS_KEEPER_UPDATE_INTERVAL`).
    pub keeper_update_interval: Duration,
    /// Longest wait between two attempts to recover the root key from the Keepers
    /// (`SPIKE_NEXUS_RECOVERY_MAX_INTERVAL`).
    pub recovery_max_interval: Duration,
    /// Time allowed for one call to one Keeper (`SPIKE_NEXUS_KEEPER_TIMEOUT`; extension).
    pub keeper_timeout: Duration,
    /// PostgreSQL settings, for [`BackendKind::Postgres`] (`SPIKE_NEXUS_POSTGRES_*`).
    pub postgres: Option<PostgresSettings>,
    /// Limit of sled's page cache in bytes, for [`BackendKind::Sled`]
    /// (`SPIKE_NEXUS_SLED_CACHE_MIB`; extension).
    pub sled_cache_bytes: u64,
    /// With a backend shared by several replicas: the longest time a policy change made
    /// through another replica takes to apply here (`SPIKE_NEXUS_POLICY_REFRESH`; extension).
    pub policy_refresh: Duration,
    /// With a backend shared by several replicas: how often the leader checkpoints the write
    /// counter to the Keepers (`SPIKE_NEXUS_ROLLBACK_CHECKPOINT_INTERVAL`; extension).
    pub rollback_checkpoint_interval: Duration,
    /// The JWT-SVID listener (`SPIKE_NEXUS_JWT_TLS_PORT`; extension): off unless set.
    pub jwt: Option<JwtListenerConfig>,
}

/// Where Nexus takes the trust domains' JWT signing keys from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtBundleSource {
    /// Streamed live from the SPIFFE Workload API at this endpoint (`FetchJWTBundles`; the
    /// default, from `SPIFFE_ENDPOINT_SOCKET`).
    WorkloadApi(String),
    /// SPIFFE bundle (JWKS) files, one per trust domain, re-read when they change
    /// (`SPIKE_NEXUS_JWT_BUNDLE_FILES=td=path,...`).
    Files(Vec<(String, PathBuf)>),
}

/// The JWT-SVID listener: server-authenticated TLS (no client certificate), callers send
/// `Authorization: Bearer <JWT-SVID>`.
#[derive(Debug, Clone)]
pub struct JwtListenerConfig {
    /// Listen address (`SPIKE_NEXUS_JWT_TLS_PORT`).
    pub listen: SocketAddr,
    /// The audience a token must name (`SPIKE_NEXUS_JWT_AUDIENCE`, default `spike-nexus`).
    pub audience: String,
    /// Where the signing keys come from.
    pub bundles: JwtBundleSource,
}

/// Default for `SPIKE_NEXUS_JWT_AUDIENCE`.
pub const DEFAULT_JWT_AUDIENCE: &str = "spike-nexus";

/// SPIKE's default for `SPIKE_NEXUS_KEEPER_UPDATE_INTERVAL`.
pub const DEFAULT_KEEPER_UPDATE_INTERVAL: Duration = Duration::from_secs(300);
/// SPIKE's default for `SPIKE_NEXUS_RECOVERY_MAX_INTERVAL`.
pub const DEFAULT_RECOVERY_MAX_INTERVAL: Duration = Duration::from_secs(60);
/// Default for `SPIKE_NEXUS_KEEPER_TIMEOUT`.
pub const DEFAULT_KEEPER_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for `SPIKE_NEXUS_POLICY_REFRESH`.
pub const DEFAULT_POLICY_REFRESH: Duration = Duration::from_secs(1);
/// Default for `SPIKE_NEXUS_ROLLBACK_CHECKPOINT_INTERVAL`.
pub const DEFAULT_ROLLBACK_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

impl NexusConfig {
    /// Defaults for development: memory backend on `127.0.0.1:0` (an ephemeral port), audit to
    /// a file in `data_dir`.
    pub fn dev(data_dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            backend: BackendKind::Memory,
            audit: AuditSink::File(data_dir.join("audit.log")),
            audit_limits: crate::audit::AuditLimits::default(),
            data_dir,
            trust_roots: TrustRoots::single(DEFAULT_TRUST_DOMAIN),
            max_secret_versions: spike_core::store::versioned::DEFAULT_MAX_VERSIONS,
            shamir_shares: 3,
            shamir_threshold: 2,
            keeper_peers: vec![],
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_cipher_bytes: DEFAULT_MAX_CIPHERTEXT_LEN,
            rate_limit: None,
            connections: ConnectionLimits::default(),
            keeper_update_interval: DEFAULT_KEEPER_UPDATE_INTERVAL,
            recovery_max_interval: DEFAULT_RECOVERY_MAX_INTERVAL,
            keeper_timeout: DEFAULT_KEEPER_TIMEOUT,
            postgres: None,
            sled_cache_bytes: spike_core::store::sled::DEFAULT_CACHE_BYTES,
            policy_refresh: DEFAULT_POLICY_REFRESH,
            rollback_checkpoint_interval: DEFAULT_ROLLBACK_CHECKPOINT_INTERVAL,
            jwt: None,
        }
    }

    /// True when other Nexus processes may share the backend (PostgreSQL).
    pub fn shared_backend(&self) -> bool {
        self.backend == BackendKind::Postgres
    }
}

/// Nexus flags; each falls back to SPIKE's environment variable of the same meaning.
#[derive(Debug, Clone, clap::Args)]
pub struct NexusArgs {
    /// Listen address, e.g. ":8553" or "127.0.0.1:8553".
    #[arg(long, env = "SPIKE_NEXUS_TLS_PORT", default_value = ":8553")]
    pub tls_port: String,
    /// Listen address of the JWT-SVID listener (TLS without client certificates; callers send
    /// `Authorization: Bearer <JWT-SVID>`), e.g. ":8554". Off when unset.
    #[arg(long, env = "SPIKE_NEXUS_JWT_TLS_PORT")]
    pub jwt_tls_port: Option<String>,
    /// The audience JWT-SVIDs must name.
    #[arg(long, env = "SPIKE_NEXUS_JWT_AUDIENCE", default_value = DEFAULT_JWT_AUDIENCE)]
    pub jwt_audience: String,
    /// JWT bundle files instead of the Workload API: "td=path[,td=path]" (SPIFFE bundle/JWKS
    /// JSON, re-read when changed).
    #[arg(long, env = "SPIKE_NEXUS_JWT_BUNDLE_FILES")]
    pub jwt_bundle_files: Option<String>,
    /// Storage backend: memory, sled or postgres.
    #[arg(long, env = "SPIKE_NEXUS_BACKEND_STORE", default_value = "sled")]
    pub backend_store: String,
    /// Data directory (sled database, audit log).
    #[arg(long, env = "SPIKE_NEXUS_DATA_DIR", default_value = "./.spike/data")]
    pub data_dir: PathBuf,
    /// Trust domain(s) of SPIKE's components, comma-separated.
    #[arg(long, env = "SPIKE_TRUST_ROOT", default_value = DEFAULT_TRUST_DOMAIN)]
    pub trust_root: String,
    /// Trust domain(s) of Nexus, comma-separated (defaults to --trust-root).
    #[arg(long, env = "SPIKE_TRUST_ROOT_NEXUS")]
    pub trust_root_nexus: Option<String>,
    /// Trust domain(s) of Pilot, comma-separated (defaults to --trust-root).
    #[arg(long, env = "SPIKE_TRUST_ROOT_PILOT")]
    pub trust_root_pilot: Option<String>,
    /// Trust domain(s) of Bootstrap, comma-separated (defaults to --trust-root).
    #[arg(long, env = "SPIKE_TRUST_ROOT_BOOTSTRAP")]
    pub trust_root_bootstrap: Option<String>,
    /// Trust domain(s) of Keepers, comma-separated (defaults to --trust-root).
    #[arg(long, env = "SPIKE_TRUST_ROOT_KEEPER")]
    pub trust_root_keeper: Option<String>,
    /// Trust domain(s) of lite workloads, comma-separated (defaults to --trust-root).
    #[arg(long, env = "SPIKE_TRUST_ROOT_LITE_WORKLOAD")]
    pub trust_root_lite_workload: Option<String>,
    /// Versions kept per secret.
    #[arg(long, env = "SPIKE_NEXUS_MAX_SECRET_VERSIONS", default_value = "10")]
    pub max_secret_versions: String,
    /// Shamir share count.
    #[arg(long, env = "SPIKE_NEXUS_SHAMIR_SHARES", default_value = "3")]
    pub shamir_shares: String,
    /// Shamir threshold.
    #[arg(long, env = "SPIKE_NEXUS_SHAMIR_THRESHOLD", default_value = "2")]
    pub shamir_threshold: String,
    /// Comma-separated Keeper URLs (the n-th holds share n).
    #[arg(long, env = "SPIKE_NEXUS_KEEPER_PEERS", default_value = "")]
    pub keeper_peers: String,
    /// Audit log: a file path, or "-" for standard error. Default: DATA_DIR/audit.log.
    #[arg(long, env = "SPIKE_NEXUS_AUDIT_LOG")]
    pub audit_log: Option<String>,
    /// Audit log file size in bytes that triggers rotation (audit.log -> audit.log.1 ...).
    #[arg(long, env = "SPIKE_NEXUS_AUDIT_MAX_BYTES", default_value = "67108864")]
    pub audit_max_bytes: String,
    /// Audit log files kept, the current one included; older ones are deleted.
    #[arg(long, env = "SPIKE_NEXUS_AUDIT_KEEP_FILES", default_value = "8")]
    pub audit_keep_files: String,
    /// Repeated refusals from one caller within this interval share one audit line, e.g. "1s".
    #[arg(long, env = "SPIKE_NEXUS_AUDIT_REFUSAL_INTERVAL", default_value = "1s")]
    pub audit_refusal_interval: String,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "SPIKE_NEXUS_MAX_BODY_BYTES", default_value = "1048576")]
    pub max_body_bytes: String,
    /// Largest cipher payload in bytes.
    #[arg(long, env = "SPIKE_NEXUS_CRYPTO_MAX_CIPHERTEXT_SIZE", default_value = "65536")]
    pub max_cipher_bytes: String,
    /// Requests per second allowed per caller SPIFFE ID (burst: twice that), or "off".
    #[arg(long, env = "SPIKE_NEXUS_RATE_LIMIT", default_value = "off")]
    pub rate_limit: String,
    /// Time allowed for a client to send its request headers, e.g. "10s".
    #[arg(long, env = "SPIKE_NEXUS_HEADER_READ_TIMEOUT", default_value = "10s")]
    pub header_read_timeout: String,
    /// Time allowed for a client to send a whole request body, e.g. "10s".
    #[arg(long, env = "SPIKE_NEXUS_BODY_READ_TIMEOUT", default_value = "10s")]
    pub body_read_timeout: String,
    /// Time a connection may stay open with no request in flight, e.g. "30s".
    #[arg(long, env = "SPIKE_NEXUS_IDLE_TIMEOUT", default_value = "30s")]
    pub idle_timeout: String,
    /// Connections served at once; at the cap the least recently used idle one is closed.
    #[arg(long, env = "SPIKE_NEXUS_MAX_CONNECTIONS", default_value = "4096")]
    pub max_connections: String,
    /// Connections one SPIFFE ID may hold; over it, its oldest idle one is closed.
    #[arg(long, env = "SPIKE_NEXUS_MAX_CONNECTIONS_PER_CALLER", default_value = "1024")]
    pub max_connections_per_caller: String,
    /// How often each Keeper is re-sent its shard, e.g. "5m".
    #[arg(long, env = "SPIKE_NEXUS_KEEPER_UPDATE_INTERVAL", default_value = "5m")]
    pub keeper_update_interval: String,
    /// Longest wait between attempts to recover the root key from the Keepers, e.g. "60s".
    #[arg(long, env = "SPIKE_NEXUS_RECOVERY_MAX_INTERVAL", default_value = "60s")]
    pub recovery_max_interval: String,
    /// Time allowed for one call to one Keeper, e.g. "5s".
    #[arg(long, env = "SPIKE_NEXUS_KEEPER_TIMEOUT", default_value = "5s")]
    pub keeper_timeout: String,
    /// PostgreSQL connection string or URL, for --backend-store postgres (may hold a password;
    /// prefer the environment variable).
    #[arg(long, env = "SPIKE_NEXUS_POSTGRES_DSN", hide_env_values = true)]
    pub postgres_dsn: Option<String>,
    /// TLS to PostgreSQL: verify-full (needs --postgres-ca-file) or disable.
    #[arg(long, env = "SPIKE_NEXUS_POSTGRES_TLS", default_value = "verify-full")]
    pub postgres_tls: String,
    /// PEM CA bundle that signed the PostgreSQL server's certificate.
    #[arg(long, env = "SPIKE_NEXUS_POSTGRES_CA_FILE")]
    pub postgres_ca_file: Option<PathBuf>,
    /// Most PostgreSQL connections this replica opens.
    #[arg(long, env = "SPIKE_NEXUS_POSTGRES_POOL_SIZE", default_value = "16")]
    pub postgres_pool_size: String,
    /// Time allowed to connect to PostgreSQL (and to wait for a pooled connection), e.g. "5s".
    #[arg(long, env = "SPIKE_NEXUS_POSTGRES_CONNECT_TIMEOUT", default_value = "5s")]
    pub postgres_connect_timeout: String,
    /// With sled: most memory, in MiB, sled's page cache keeps (records beyond it are read
    /// from disk when needed).
    #[arg(long, env = "SPIKE_NEXUS_SLED_CACHE_MIB", default_value = "16")]
    pub sled_cache_mib: String,
    /// With postgres: longest delay before a policy changed on another replica applies here.
    #[arg(long, env = "SPIKE_NEXUS_POLICY_REFRESH", default_value = "1s")]
    pub policy_refresh: String,
    /// With postgres: how often the leader checkpoints the write counter to the Keepers.
    #[arg(long, env = "SPIKE_NEXUS_ROLLBACK_CHECKPOINT_INTERVAL", default_value = "1s")]
    pub rollback_checkpoint_interval: String,
}

/// The PostgreSQL settings from the flags; required exactly when the backend is postgres.
fn postgres_settings(
    backend: BackendKind,
    a: &NexusArgs,
) -> Result<Option<PostgresSettings>, ConfigError> {
    let dsn = a.postgres_dsn.as_deref().filter(|d| !d.trim().is_empty());
    if backend != BackendKind::Postgres {
        if dsn.is_some() {
            return Err(ConfigError::Conflict(
                "SPIKE_NEXUS_POSTGRES_DSN is set but SPIKE_NEXUS_BACKEND_STORE is not \
                 \"postgres\": set the store to postgres, or unset the DSN"
                    .into(),
            ));
        }
        return Ok(None);
    }
    let Some(dsn) = dsn else {
        return Err(ConfigError::Conflict(
            "SPIKE_NEXUS_BACKEND_STORE=postgres needs SPIKE_NEXUS_POSTGRES_DSN, e.g. \
             \"host=db.example user=spike dbname=spike\""
                .into(),
        ));
    };
    let tls = match (a.postgres_tls.as_str(), &a.postgres_ca_file) {
        ("disable", _) => PgTls::Disable,
        ("verify-full", Some(ca)) => PgTls::VerifyFull { ca_file: ca.clone() },
        ("verify-full", None) => {
            return Err(ConfigError::Conflict(
                "SPIKE_NEXUS_POSTGRES_TLS=verify-full (the default) needs \
                 SPIKE_NEXUS_POSTGRES_CA_FILE, the PEM CA that signed the server's certificate; \
                 use SPIKE_NEXUS_POSTGRES_TLS=disable only for loopback or a Unix socket"
                    .into(),
            ));
        }
        (other, _) => {
            return Err(ConfigError::Invalid {
                name: "SPIKE_NEXUS_POSTGRES_TLS",
                value: other.to_owned(),
                expected: "\"verify-full\" or \"disable\"",
            });
        }
    };
    let connect_timeout =
        parse_duration("SPIKE_NEXUS_POSTGRES_CONNECT_TIMEOUT", &a.postgres_connect_timeout)?;
    Ok(Some(PostgresSettings {
        dsn: dsn.to_owned(),
        tls,
        pool_size: parse_bounded("SPIKE_NEXUS_POSTGRES_POOL_SIZE", &a.postgres_pool_size, 1, 1024)?
            as usize,
        connect_timeout,
    }))
}

/// The audit log bounds from the flags (see [`crate::audit`]).
fn audit_limits(a: &NexusArgs) -> Result<crate::audit::AuditLimits, ConfigError> {
    let refusal_interval =
        parse_duration("SPIKE_NEXUS_AUDIT_REFUSAL_INTERVAL", &a.audit_refusal_interval)?;
    if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&refusal_interval) {
        return Err(ConfigError::Invalid {
            name: "SPIKE_NEXUS_AUDIT_REFUSAL_INTERVAL",
            value: a.audit_refusal_interval.clone(),
            expected: "a duration from 10ms to 1h, e.g. \"1s\"",
        });
    }
    Ok(crate::audit::AuditLimits {
        max_file_bytes: parse_bounded(
            "SPIKE_NEXUS_AUDIT_MAX_BYTES",
            &a.audit_max_bytes,
            crate::audit::MIN_FILE_BYTES,
            1 << 40,
        )?,
        // The bound keeps this within u32.
        keep_files: parse_bounded("SPIKE_NEXUS_AUDIT_KEEP_FILES", &a.audit_keep_files, 1, 1000)?
            as u32,
        refusal_interval,
    })
}

impl TryFrom<NexusArgs> for NexusConfig {
    type Error = ConfigError;

    fn try_from(a: NexusArgs) -> Result<Self, ConfigError> {
        let backend = BackendKind::parse(&a.backend_store)?;
        let postgres = postgres_settings(backend, &a)?;
        let audit_limits = audit_limits(&a)?;
        let trust_roots = TrustRoots::parse(&TrustRootArgs {
            trust_root: &a.trust_root,
            nexus: a.trust_root_nexus.as_deref(),
            pilot: a.trust_root_pilot.as_deref(),
            bootstrap: a.trust_root_bootstrap.as_deref(),
            keeper: a.trust_root_keeper.as_deref(),
            lite_workload: a.trust_root_lite_workload.as_deref(),
        })?;
        let max_versions =
            parse_bounded("SPIKE_NEXUS_MAX_SECRET_VERSIONS", &a.max_secret_versions, 1, 10_000)?;
        let shares = parse_bounded("SPIKE_NEXUS_SHAMIR_SHARES", &a.shamir_shares, 1, 255)?;
        let threshold =
            parse_bounded("SPIKE_NEXUS_SHAMIR_THRESHOLD", &a.shamir_threshold, 1, shares)?;
        if threshold == 1 && shares != 1 {
            return Err(ConfigError::Conflict(
                "SPIKE_NEXUS_SHAMIR_THRESHOLD=1 is only allowed with SPIKE_NEXUS_SHAMIR_SHARES=1 \
                 (a threshold of 1 hands every Keeper the whole root key)"
                    .into(),
            ));
        }
        let keeper_peers: Vec<String> = a
            .keeper_peers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(bad) = keeper_peers.iter().find(|p| !p.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                name: "SPIKE_NEXUS_KEEPER_PEERS",
                value: bad.clone(),
                expected: "comma-separated https:// URLs, e.g. https://127.0.0.1:8443",
            });
        }
        if !keeper_peers.is_empty() && keeper_peers.len() as u64 != shares {
            return Err(ConfigError::Conflict(format!(
                "SPIKE_NEXUS_KEEPER_PEERS lists {} Keepers but SPIKE_NEXUS_SHAMIR_SHARES is \
                 {shares}: Keeper n holds share n, so give exactly one URL per share",
                keeper_peers.len()
            )));
        }
        let keeper_update_interval =
            parse_duration("SPIKE_NEXUS_KEEPER_UPDATE_INTERVAL", &a.keeper_update_interval)?;
        let recovery_max_interval =
            parse_duration("SPIKE_NEXUS_RECOVERY_MAX_INTERVAL", &a.recovery_max_interval)?;
        let keeper_timeout = parse_duration("SPIKE_NEXUS_KEEPER_TIMEOUT", &a.keeper_timeout)?;
        for (name, value, d) in [
            (
                "SPIKE_NEXUS_KEEPER_UPDATE_INTERVAL",
                &a.keeper_update_interval,
                keeper_update_interval,
            ),
            ("SPIKE_NEXUS_RECOVERY_MAX_INTERVAL", &a.recovery_max_interval, recovery_max_interval),
            ("SPIKE_NEXUS_KEEPER_TIMEOUT", &a.keeper_timeout, keeper_timeout),
        ] {
            if d < Duration::from_millis(10) {
                return Err(ConfigError::Invalid {
                    name,
                    value: value.clone(),
                    expected: "a duration of at least 10ms, e.g. \"5s\"",
                });
            }
        }
        let audit = match a.audit_log.as_deref() {
            Some("-") => AuditSink::Stderr,
            Some(path) if !path.is_empty() => AuditSink::File(PathBuf::from(path)),
            _ => AuditSink::File(a.data_dir.join("audit.log")),
        };
        let rate_limit = parse_rate_limit(&a.rate_limit)?;
        let connections = parse_connection_limits([
            &a.max_connections,
            &a.max_connections_per_caller,
            &a.idle_timeout,
            &a.header_read_timeout,
            &a.body_read_timeout,
        ])?;
        let policy_refresh = parse_duration("SPIKE_NEXUS_POLICY_REFRESH", &a.policy_refresh)?;
        let rollback_checkpoint_interval = parse_duration(
            "SPIKE_NEXUS_ROLLBACK_CHECKPOINT_INTERVAL",
            &a.rollback_checkpoint_interval,
        )?;
        Ok(Self {
            listen: parse_listen_addr("SPIKE_NEXUS_TLS_PORT", &a.tls_port)?,
            backend,
            data_dir: a.data_dir,
            trust_roots,
            // The bound above keeps this within 1..=10_000.
            max_secret_versions: NonZeroU32::new(max_versions as u32)
                .unwrap_or(spike_core::store::versioned::DEFAULT_MAX_VERSIONS),
            shamir_shares: shares as usize,
            shamir_threshold: threshold as usize,
            keeper_peers,
            audit,
            audit_limits,
            max_body_bytes: parse_bounded(
                "SPIKE_NEXUS_MAX_BODY_BYTES",
                &a.max_body_bytes,
                1024,
                64 << 20,
            )? as usize,
            max_cipher_bytes: parse_bounded(
                "SPIKE_NEXUS_CRYPTO_MAX_CIPHERTEXT_SIZE",
                &a.max_cipher_bytes,
                1,
                64 << 20,
            )? as usize,
            rate_limit,
            connections,
            keeper_update_interval,
            recovery_max_interval,
            keeper_timeout,
            postgres,
            sled_cache_bytes: parse_bounded(
                "SPIKE_NEXUS_SLED_CACHE_MIB",
                &a.sled_cache_mib,
                4,
                1 << 20,
            )? << 20,
            policy_refresh,
            rollback_checkpoint_interval,
            jwt: parse_jwt_listener(
                a.jwt_tls_port.as_deref(),
                &a.jwt_audience,
                a.jwt_bundle_files.as_deref(),
            )?,
        })
    }
}

/// `SPIKE_NEXUS_JWT_*`: the JWT-SVID listener, if a port is set.
fn parse_jwt_listener(
    port: Option<&str>,
    audience: &str,
    files: Option<&str>,
) -> Result<Option<JwtListenerConfig>, ConfigError> {
    let Some(port) = port.filter(|p| !p.trim().is_empty()) else {
        return Ok(None);
    };
    let listen = parse_listen_addr("SPIKE_NEXUS_JWT_TLS_PORT", port)?;
    let audience = audience.trim();
    if audience.is_empty() || audience.len() > 256 || audience.chars().any(char::is_control) {
        return Err(ConfigError::Invalid {
            name: "SPIKE_NEXUS_JWT_AUDIENCE",
            value: audience.to_owned(),
            expected: "1 to 256 printable characters, e.g. \"spike-nexus\"",
        });
    }
    let bundles = match files.filter(|f| !f.trim().is_empty()) {
        Some(list) => {
            let mut out = Vec::new();
            for item in list.split(',') {
                let Some((td, path)) = item.split_once('=') else {
                    return Err(ConfigError::Invalid {
                        name: "SPIKE_NEXUS_JWT_BUNDLE_FILES",
                        value: list.to_owned(),
                        expected: "trust-domain=path pairs, comma-separated",
                    });
                };
                out.push((td.trim().to_owned(), PathBuf::from(path.trim())));
            }
            JwtBundleSource::Files(out)
        }
        None => match std::env::var("SPIFFE_ENDPOINT_SOCKET") {
            Ok(endpoint) if !endpoint.is_empty() => JwtBundleSource::WorkloadApi(endpoint),
            _ => {
                return Err(ConfigError::Conflict(
                    "SPIKE_NEXUS_JWT_TLS_PORT needs the trust domains' JWT keys: set \
                     SPIFFE_ENDPOINT_SOCKET (Workload API) or SPIKE_NEXUS_JWT_BUNDLE_FILES"
                        .into(),
                ));
            }
        },
    };
    Ok(Some(JwtListenerConfig { listen, audience: audience.to_owned(), bundles }))
}

/// `SPIKE_NEXUS_RATE_LIMIT`: "off" (or "0") for none, else requests/second with a burst of
/// twice that.
fn parse_rate_limit(value: &str) -> Result<Option<RateLimit>, ConfigError> {
    if matches!(value.trim(), "off" | "0") {
        return Ok(None);
    }
    let per_second = parse_bounded("SPIKE_NEXUS_RATE_LIMIT", value, 1, 10_000_000)?;
    Ok(Some(RateLimit {
        per_second: per_second as f64,
        burst: u32::try_from(per_second.saturating_mul(2)).unwrap_or(u32::MAX),
    }))
}

/// The listener's limits from, in order: `SPIKE_NEXUS_MAX_CONNECTIONS`,
/// `_MAX_CONNECTIONS_PER_CALLER`, `_IDLE_TIMEOUT`, `_HEADER_READ_TIMEOUT`, `_BODY_READ_TIMEOUT`.
fn parse_connection_limits(values: [&str; 5]) -> Result<ConnectionLimits, ConfigError> {
    let [max_connections, max_per_caller, idle, header, body] = values;
    let timeout = |name: &'static str, value: &str| -> Result<Duration, ConfigError> {
        let d = parse_duration(name, value)?;
        if d < Duration::from_millis(10) {
            return Err(ConfigError::Invalid {
                name,
                value: value.to_owned(),
                expected: "a duration of at least 10ms, e.g. \"10s\"",
            });
        }
        Ok(d)
    };
    Ok(ConnectionLimits {
        max_connections: parse_bounded("SPIKE_NEXUS_MAX_CONNECTIONS", max_connections, 1, 1 << 20)?
            as usize,
        max_per_caller: parse_bounded(
            "SPIKE_NEXUS_MAX_CONNECTIONS_PER_CALLER",
            max_per_caller,
            1,
            1 << 20,
        )? as usize,
        idle_timeout: timeout("SPIKE_NEXUS_IDLE_TIMEOUT", idle)?,
        header_read_timeout: timeout("SPIKE_NEXUS_HEADER_READ_TIMEOUT", header)?,
        body_read_timeout: timeout("SPIKE_NEXUS_BODY_READ_TIMEOUT", body)?,
        ..ConnectionLimits::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        nexus: NexusArgs,
    }

    fn parse(args: &[&str]) -> Result<NexusConfig, ConfigError> {
        let mut argv = vec!["spike-nexus"];
        argv.extend_from_slice(args);
        NexusConfig::try_from(Cli::try_parse_from(argv).unwrap().nexus)
    }

    #[test]
    fn defaults_follow_spike() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.listen.port(), 8553);
        assert_eq!(c.backend, BackendKind::Sled);
        assert_eq!((c.shamir_shares, c.shamir_threshold), (3, 2));
        assert_eq!(c.max_secret_versions.get(), 10);
        assert_eq!(c.trust_roots.pilot, ["spike.ist"]);
    }

    #[test]
    fn the_jwt_listener_is_off_by_default_and_its_settings_are_checked() {
        assert!(parse(&[]).unwrap().jwt.is_none());
        let c =
            parse(&["--jwt-tls-port", "127.0.0.1:8554", "--jwt-bundle-files", "spike.ist=/b.json"])
                .unwrap();
        let jwt = c.jwt.unwrap();
        assert_eq!((jwt.listen.port(), jwt.audience.as_str()), (8554, DEFAULT_JWT_AUDIENCE));
        assert_eq!(
            jwt.bundles,
            JwtBundleSource::Files(vec![("spike.ist".into(), PathBuf::from("/b.json"))])
        );
        let err = parse(&["--jwt-tls-port", ":8554", "--jwt-bundle-files", "no-equals-sign"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("SPIKE_NEXUS_JWT_BUNDLE_FILES"), "{err}");
        let err =
            parse(&["--jwt-tls-port", ":8554", "--jwt-audience", " ", "--jwt-bundle-files", "a=b"])
                .unwrap_err()
                .to_string();
        assert!(err.contains("SPIKE_NEXUS_JWT_AUDIENCE"), "{err}");
    }

    #[test]
    fn audit_bounds_have_defaults_and_refuse_values_that_would_not_bound_anything() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.audit_limits, crate::audit::AuditLimits::default());
        assert_eq!(c.audit_limits.max_file_bytes, 64 << 20);
        let c = parse(&[
            "--audit-max-bytes",
            "16384",
            "--audit-keep-files",
            "3",
            "--audit-refusal-interval",
            "250ms",
        ])
        .unwrap();
        assert_eq!(c.audit_limits.max_file_bytes, 16384);
        assert_eq!(c.audit_limits.keep_files, 3);
        assert_eq!(c.audit_limits.refusal_interval, Duration::from_millis(250));
        let err = parse(&["--audit-max-bytes", "100"]).unwrap_err().to_string();
        assert!(err.contains("SPIKE_NEXUS_AUDIT_MAX_BYTES") && err.contains("16384"), "{err}");
        let err = parse(&["--audit-keep-files", "0"]).unwrap_err().to_string();
        assert!(err.contains("SPIKE_NEXUS_AUDIT_KEEP_FILES"), "{err}");
        let err = parse(&["--audit-refusal-interval", "2h"]).unwrap_err().to_string();
        assert!(err.contains("SPIKE_NEXUS_AUDIT_REFUSAL_INTERVAL") && err.contains("1h"), "{err}");
    }

    #[test]
    fn postgres_needs_a_dsn_and_tls_settings_and_never_shows_the_dsn() {
        let err = parse(&["--backend-store", "postgres"]).unwrap_err().to_string();
        assert!(err.contains("SPIKE_NEXUS_POSTGRES_DSN"), "{err}");
        let dsn = "postgresql://spike:pw-canary-77@db/spike";
        let err =
            parse(&["--backend-store", "postgres", "--postgres-dsn", dsn]).unwrap_err().to_string();
        assert!(
            err.contains("SPIKE_NEXUS_POSTGRES_CA_FILE") && !err.contains("pw-canary"),
            "{err}"
        );
        let c = parse(&[
            "--backend-store",
            "postgres",
            "--postgres-dsn",
            dsn,
            "--postgres-ca-file",
            "/etc/ca.pem",
        ])
        .unwrap();
        assert!(c.shared_backend());
        let pg = c.postgres.as_ref().unwrap();
        assert_eq!(pg.tls, PgTls::VerifyFull { ca_file: "/etc/ca.pem".into() });
        assert!(!format!("{c:?}").contains("pw-canary"));
        let err = parse(&["--postgres-dsn", dsn]).unwrap_err().to_string();
        assert!(err.contains("not \"postgres\""), "{err}");
        let err =
            parse(&["--backend-store", "postgres", "--postgres-dsn", dsn, "--postgres-tls", "on"])
                .unwrap_err()
                .to_string();
        assert!(err.contains("SPIKE_NEXUS_POSTGRES_TLS") && err.contains("verify-full"), "{err}");
    }

    #[test]
    fn bad_values_name_the_setting_and_the_accepted_values() {
        let err = parse(&["--backend-store", "sqlite"]).unwrap_err().to_string();
        assert!(err.contains("SPIKE_NEXUS_BACKEND_STORE") && err.contains("sled"), "{err}");
        assert!(err.contains("spike operator import-spike"), "{err}");
        let err = parse(&["--shamir-threshold", "4"]).unwrap_err().to_string();
        assert!(err.contains("between 1 and 3"), "{err}");
        let err = parse(&["--shamir-threshold", "1"]).unwrap_err().to_string();
        assert!(err.contains("only allowed"), "{err}");
        let err = parse(&["--keeper-peers", "http://x"]).unwrap_err().to_string();
        assert!(err.contains("https://"), "{err}");
    }

    #[test]
    fn keeper_settings_follow_spike_and_match_the_share_count() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.keeper_update_interval, Duration::from_secs(300));
        assert_eq!(c.recovery_max_interval, Duration::from_secs(60));
        let c = parse(&[
            "--keeper-peers",
            "https://127.0.0.1:1, https://127.0.0.1:2,https://127.0.0.1:3",
            "--keeper-update-interval",
            "2s",
            "--recovery-max-interval",
            "500ms",
        ])
        .unwrap();
        assert_eq!(c.keeper_peers.len(), 3);
        assert_eq!(c.keeper_update_interval, Duration::from_secs(2));
        assert_eq!(c.recovery_max_interval, Duration::from_millis(500));
        let err = parse(&["--keeper-peers", "https://127.0.0.1:1,https://127.0.0.1:2"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("SPIKE_NEXUS_SHAMIR_SHARES is 3"), "{err}");
        let err = parse(&["--keeper-update-interval", "5"]).unwrap_err().to_string();
        assert!(err.contains("SPIKE_NEXUS_KEEPER_UPDATE_INTERVAL"), "{err}");
        let err = parse(&["--keeper-timeout", "0s"]).unwrap_err().to_string();
        assert!(err.contains("at least 10ms"), "{err}");
    }
}
