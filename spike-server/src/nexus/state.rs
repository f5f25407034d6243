//! Nexus's shared state: the backend, the root key slot, the policy cache and the counters.
//!
//! Until a root key is present the state is *sealed*: only operator restore can change that
//! (and, with the Keepers issue, recovery from Keepers). Unsealing opens the [`Vault`], which
//! checks the root key against the store's key check value and refuses a wrong one loudly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use spike_core::policy::{Policy, PolicySet};
use spike_core::secret::{DataKey, KeeperShare, RootKey};
use spike_core::shamir;
use spike_core::store::{Backend, MemoryBackend, SecretStoreConfig, SledBackend, Vault};

use super::config::{AuditSink, BackendKind, NexusConfig};
use crate::audit::AuditLog;
use crate::limits::RateLimiter;
use crate::postgres::{PgError, PostgresBackend};

/// Why Nexus could not start or unseal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NexusError {
    /// The storage layer failed or refused the key.
    #[error(transparent)]
    Core(#[from] spike_core::Error),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// A filesystem or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS or identity layer failed.
    #[error("identity/TLS: {0}")]
    Tls(String),
    /// The configuration is inconsistent.
    #[error(transparent)]
    Config(#[from] crate::error::ConfigError),
    /// The PostgreSQL backend could not be opened.
    #[error(transparent)]
    Postgres(#[from] PgError),
}

/// Everything that exists only while the root key is known.
pub struct Unsealed {
    root: RootKey,
    /// Shared with the `Unsealed` that replaces this one after a root-key rotation.
    vault: Arc<Vault>,
    policies: RwLock<Arc<PolicySet>>,
    /// With a shared backend: how stale the policy cache may get before it is checked.
    policy_refresh: Option<Duration>,
    /// When the cache was last checked, and the policy generation it was built from.
    policy_checked: Mutex<(Instant, Option<Vec<u8>>)>,
}

impl std::fmt::Debug for Unsealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsealed").field("vault", &self.vault).finish_non_exhaustive()
    }
}

impl Unsealed {
    /// The root key (for recover, bootstrap verify and rotation).
    pub fn root(&self) -> &RootKey {
        &self.root
    }

    /// The encrypted store.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The key of the cipher service (derived from the root key for that purpose only).
    pub fn cipher_key(&self) -> &DataKey {
        self.vault.cipher_key()
    }

    /// The current compiled policies. With a backend shared by several replicas, a cache
    /// older than the policy refresh interval is first checked against the stored policy
    /// generation and rebuilt if another replica changed a policy; if that check fails, no
    /// policy applies (deny) until it succeeds again.
    pub fn policies(&self) -> Arc<PolicySet> {
        if let Some(refresh) = self.policy_refresh
            && let Err(e) = self.refresh_policies_if_stale(refresh)
        {
            tracing::error!(error = %e, "cannot check for policy changes; denying by policy");
            return Arc::new(PolicySet::empty());
        }
        self.policies.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The compiled policies, if getting them needs no store read: no check against the stored
    /// policy generation is due or running (see [`Unsealed::policies`]). `None` otherwise: the
    /// caller, an async task that must not wait on the store, calls `policies` on a blocking
    /// thread instead (with a shared backend, about once per refresh interval).
    pub fn policies_if_fresh(&self) -> Option<Arc<PolicySet>> {
        if let Some(refresh) = self.policy_refresh {
            // Held by a check that is reading the store: that is not fresh yet either.
            let checked = self.policy_checked.try_lock().ok()?;
            if checked.0.elapsed() >= refresh {
                return None;
            }
        }
        Some(self.policies.read().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn refresh_policies_if_stale(&self, refresh: Duration) -> Result<(), spike_core::Error> {
        let mut checked = self.policy_checked.lock().unwrap_or_else(|p| p.into_inner());
        if checked.0.elapsed() < refresh {
            return Ok(());
        }
        let generation = self.vault.policies().generation()?;
        if generation != checked.1 {
            self.reload_policies_unlocked()?;
            checked.1 = generation;
            tracing::info!("policies changed on another replica; reloaded");
        }
        checked.0 = Instant::now();
        Ok(())
    }

    /// Every stored policy, keyed by name.
    pub fn load_policies(&self) -> Result<BTreeMap<String, Policy>, spike_core::Error> {
        let mut out = BTreeMap::new();
        for (name, bytes) in self.vault.policies().list()? {
            let policy: Policy = serde_json::from_slice(&bytes).map_err(|_| {
                spike_core::error::StoreError::Invalid(format!(
                    "stored policy {name:?} does not decode; restore it from a backup"
                ))
            })?;
            out.insert(name, policy);
        }
        Ok(out)
    }

    /// Adds a keyring term once the current one has sealed half its safe limit of records
    /// (random nonces; see `spike_core::crypto::keyring`). Called after writes, so rotation
    /// happens long before the hard limit could refuse a write.
    pub fn rotate_keyring_if_due(&self) {
        if self.vault.keyring().needs_rotation() {
            match self.vault.rotate(&self.root) {
                Ok(term) => tracing::info!(term, "keyring term reached its seal budget; rotated"),
                Err(e) => tracing::error!(error = %e, "automatic keyring rotation failed"),
            }
        }
    }

    /// Recompiles the policy cache from the store (after a policy change).
    pub fn reload_policies(&self) -> Result<(), spike_core::Error> {
        let mut checked = self.policy_checked.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.vault.policies().generation()?;
        self.reload_policies_unlocked()?;
        *checked = (Instant::now(), generation);
        Ok(())
    }

    fn reload_policies_unlocked(&self) -> Result<(), spike_core::Error> {
        let policies = self.load_policies()?;
        let set = PolicySet::compile(policies.values())?;
        *self.policies.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        Ok(())
    }
}

/// Shards received through operator restore, waiting for the threshold.
#[derive(Debug, Default)]
pub struct RestoreProgress {
    shares: BTreeMap<u8, KeeperShare>,
}

impl RestoreProgress {
    /// Shards held.
    pub fn collected(&self) -> usize {
        self.shares.len()
    }

    /// Adds a shard. The same index with the same bytes is not counted twice; the same index
    /// with different bytes is refused and the first one kept.
    pub fn add(&mut self, share: KeeperShare) -> Result<(), &'static str> {
        if let Some(existing) = self.shares.get(&share.index()) {
            let same: bool = subtle::ConstantTimeEq::ct_eq(
                &existing.expose_secret()[..],
                &share.expose_secret()[..],
            )
            .into();
            return if same {
                Ok(())
            } else {
                Err("a different shard with this id was already received; the first one is kept")
            };
        }
        self.shares.insert(share.index(), share);
        Ok(())
    }

    /// The shards, for recombination attempts.
    pub fn shares(&self) -> Vec<KeeperShare> {
        self.shares.values().map(KeeperShare::duplicate).collect()
    }

    /// Forgets every shard (after a successful restore).
    pub fn clear(&mut self) {
        self.shares.clear();
    }
}

/// Request counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    rate_limited: AtomicU64,
    /// Ciphertexts opened with the legacy (SPIKE) cipher key.
    legacy_decrypts: AtomicU64,
    /// The listener's connection table, once serving.
    connections: std::sync::OnceLock<Arc<crate::connections::Connections>>,
}

impl Metrics {
    /// Counts one request to `route` (a known route path, or "other") answered with `status`.
    pub fn count(&self, route: &'static str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((route, status)).or_default() += 1;
    }

    /// Reports the listener's connections in [`Metrics::render`].
    pub fn attach_connections(&self, connections: Arc<crate::connections::Connections>) {
        let _ = self.connections.set(connections);
    }

    /// Counts one request refused by the rate limiter.
    pub fn count_rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one ciphertext opened with the legacy (SPIKE) cipher key.
    pub fn count_legacy_decrypt(&self) {
        self.legacy_decrypts.fetch_add(1, Ordering::Relaxed);
    }

    /// Ciphertexts this process opened with the legacy (SPIKE) cipher key.
    pub fn legacy_decrypts(&self) -> u64 {
        self.legacy_decrypts.load(Ordering::Relaxed)
    }

    /// Prometheus text exposition of the counters.
    pub fn render(&self, ready: bool, audit_lines: u64) -> String {
        let mut out = String::new();
        out.push_str("# HELP spike_nexus_ready 1 when the root key is present.\n");
        out.push_str("# TYPE spike_nexus_ready gauge\n");
        out.push_str(&format!("spike_nexus_ready {}\n", u8::from(ready)));
        out.push_str("# HELP spike_nexus_requests_total Requests by route and status.\n");
        out.push_str("# TYPE spike_nexus_requests_total counter\n");
        let m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        for ((route, status), n) in m.iter() {
            out.push_str(&format!(
                "spike_nexus_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP spike_nexus_rate_limited_total Requests refused by rate limits.\n");
        out.push_str("# TYPE spike_nexus_rate_limited_total counter\n");
        out.push_str(&format!(
            "spike_nexus_rate_limited_total {}\n",
            self.rate_limited.load(Ordering::Relaxed)
        ));
        out.push_str(
            "# HELP spike_nexus_cipher_legacy_decrypts_total Ciphertexts opened with the legacy \
             (SPIKE) cipher key.\n",
        );
        out.push_str("# TYPE spike_nexus_cipher_legacy_decrypts_total counter\n");
        out.push_str(&format!(
            "spike_nexus_cipher_legacy_decrypts_total {}\n",
            self.legacy_decrypts()
        ));
        out.push_str("# HELP spike_audit_lines Audit lines in the chain.\n");
        out.push_str("# TYPE spike_audit_lines counter\n");
        out.push_str(&format!("spike_audit_lines {audit_lines}\n"));
        if let Some(connections) = self.connections.get() {
            out.push_str(&connections.snapshot().render("spike_nexus"));
        }
        out
    }
}

/// Where the storage rollback check stands (see [`super::rollback`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum RollbackCheck {
    /// Not checked yet (shared store with Keepers): do not serve.
    Pending,
    /// Checked (or nothing to check against).
    Passed,
    /// The store is behind the Keepers' checkpoint: never serve.
    Failed(String),
}

/// Nexus's shared state; handlers get it behind an `Arc`.
pub struct NexusState {
    config: NexusConfig,
    backend: Arc<dyn Backend>,
    /// The same backend when it is PostgreSQL (leadership, write counter).
    postgres: Option<Arc<PostgresBackend>>,
    /// Where the rollback check stands; Nexus serves only once it passed.
    rollback: RwLock<RollbackCheck>,
    /// Whether this replica leads the jobs that must run once (see [`NexusState::leads`]).
    leader: std::sync::atomic::AtomicBool,
    unsealed: RwLock<Option<Arc<Unsealed>>>,
    /// Shards received through operator restore.
    pub restore: Mutex<RestoreProgress>,
    /// The audit log.
    pub audit: AuditLog,
    /// Per-caller rate limits.
    pub limiter: RateLimiter,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Where recovery of the root key from the Keepers stands (for `/readyz` and logs).
    pub recovery: super::recovery::RecoveryStatus,
    /// Held while shares are sent to Keepers (re-arming, root-key rotation), so a re-arm never
    /// sends an old key's share over a new one.
    pub keeper_shares: tokio::sync::Mutex<()>,
    /// The client that talks to the Keepers, once recovery has started.
    pub keepers: std::sync::OnceLock<crate::keeper::KeeperClient>,
}

impl std::fmt::Debug for NexusState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NexusState")
            .field("backend", &self.config.backend)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl NexusState {
    /// Opens the backend and the audit log. The memory backend is unsealed at once with a
    /// fresh root key; a persistent backend starts sealed.
    pub fn open(config: NexusConfig) -> Result<Arc<Self>, NexusError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| NexusError::Io {
            what: format!("creating data directory {}", config.data_dir.display()),
            source,
        })?;
        let mut postgres = None;
        let backend: Arc<dyn Backend> = match config.backend {
            BackendKind::Memory => Arc::new(MemoryBackend::new()),
            BackendKind::Sled => Arc::new(
                SledBackend::open_with_cache(config.data_dir.join("sled"), config.sled_cache_bytes)
                    .map_err(spike_core::Error::from)?,
            ),
            BackendKind::Postgres => {
                let settings = config.postgres.as_ref().ok_or_else(|| {
                    crate::error::ConfigError::Conflict(
                        "the postgres backend needs SPIKE_NEXUS_POSTGRES_DSN".into(),
                    )
                })?;
                let pg = Arc::new(PostgresBackend::open(settings)?);
                tracing::info!(at = pg.location(), "PostgreSQL backend ready");
                postgres = Some(pg.clone());
                pg
            }
        };
        let audit = match &config.audit {
            AuditSink::File(path) => AuditLog::open_file_with(path, &config.audit_limits)?,
            AuditSink::Stderr => AuditLog::to_writer_with(
                "stderr",
                Box::new(std::io::stderr()),
                &config.audit_limits,
            ),
        };
        let state = Arc::new(Self {
            limiter: RateLimiter::optional(config.rate_limit),
            backend,
            rollback: RwLock::new(if postgres.is_some() && !config.keeper_peers.is_empty() {
                RollbackCheck::Pending
            } else {
                RollbackCheck::Passed
            }),
            leader: std::sync::atomic::AtomicBool::new(postgres.is_none()),
            postgres,
            unsealed: RwLock::new(None),
            restore: Mutex::new(RestoreProgress::default()),
            audit,
            metrics: Metrics::default(),
            recovery: super::recovery::RecoveryStatus::default(),
            keeper_shares: tokio::sync::Mutex::new(()),
            keepers: std::sync::OnceLock::new(),
            config,
        });
        if state.config.backend == BackendKind::Memory {
            state.unseal(shamir::generate_root_key().map_err(spike_core::Error::from)?)?;
        }
        Ok(state)
    }

    /// The configuration Nexus runs with.
    pub fn config(&self) -> &NexusConfig {
        &self.config
    }

    /// The storage backend (ciphertext only).
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// True once the root key is present, unless the store was found rolled back.
    pub fn is_ready(&self) -> bool {
        self.rollback_detected().is_none()
            && self.unsealed.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// True when reading the store may wait on the network (PostgreSQL), so every request
    /// runs on a blocking thread.
    pub fn reads_block(&self) -> bool {
        self.postgres.is_some()
    }

    /// The PostgreSQL backend, when that is the store.
    pub fn postgres(&self) -> Option<&Arc<PostgresBackend>> {
        self.postgres.as_ref()
    }

    /// Whether this replica runs the periodic jobs that must run once (Keeper re-arming,
    /// rollback checkpoints): always with a store of its own; with PostgreSQL, only while
    /// holding the leader lock. Blocks on the database: call it from a blocking thread.
    pub fn leads(&self) -> bool {
        match &self.postgres {
            None => true,
            Some(pg) => pg.try_lead().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot check leadership; not leading for now");
                false
            }),
        }
    }

    /// Why Nexus does not serve because of the rollback check, if it does not: the store was
    /// judged rolled back, or (shared store) the first check has not completed yet.
    pub fn rollback_detected(&self) -> Option<String> {
        match &*self.rollback.read().unwrap_or_else(|p| p.into_inner()) {
            RollbackCheck::Passed => None,
            RollbackCheck::Pending => {
                Some("checking the database against the Keepers' rollback checkpoint".to_owned())
            }
            RollbackCheck::Failed(why) => Some(why.clone()),
        }
    }

    /// Records that the store was rolled back: from now on Nexus refuses every request.
    pub fn refuse_rolled_back_store(&self, why: String) {
        tracing::error!(reason = %why, "the store was rolled back; refusing to serve");
        *self.rollback.write().unwrap_or_else(|p| p.into_inner()) = RollbackCheck::Failed(why);
    }

    /// Records a passed rollback check (a failed one is final until restart).
    pub fn rollback_checked(&self) {
        let mut check = self.rollback.write().unwrap_or_else(|p| p.into_inner());
        if matches!(*check, RollbackCheck::Pending) {
            *check = RollbackCheck::Passed;
        }
    }

    /// True while this replica leads the periodic jobs that must run once (Keeper re-arming,
    /// rollback checkpoints); always true with a store of its own.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    /// Records the outcome of the latest leadership check.
    pub fn set_leader(&self, leading: bool) {
        if self.leader.swap(leading, Ordering::Relaxed) != leading {
            tracing::info!(leading, "leadership of Keeper re-arming and checkpoints changed");
        }
    }

    /// The unsealed state, if the root key is present.
    pub fn unsealed(&self) -> Option<Arc<Unsealed>> {
        self.unsealed.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Opens the store with `root`: verifies it against the stored key check value (a wrong
    /// key is refused with `WrongRootKey`), loads policies, and starts serving. Unsealing an
    /// already unsealed Nexus with the same key is a no-op; with another key it is refused.
    pub fn unseal(&self, root: RootKey) -> Result<(), NexusError> {
        let mut slot = self.unsealed.write().unwrap_or_else(|p| p.into_inner());
        if let Some(current) = slot.as_ref() {
            return if current.root.ct_eq(&root) {
                Ok(())
            } else {
                Err(spike_core::Error::Crypto(spike_core::error::CryptoError::WrongRootKey).into())
            };
        }
        let store_config =
            SecretStoreConfig::new().with_max_versions(self.config.max_secret_versions);
        let vault = Arc::new(Vault::open_with(self.backend.clone(), &root, store_config)?);
        let unsealed = Unsealed {
            root,
            vault,
            policies: RwLock::new(Arc::new(PolicySet::empty())),
            policy_refresh: self.config.shared_backend().then_some(self.config.policy_refresh),
            policy_checked: Mutex::new((Instant::now(), None)),
        };
        unsealed.reload_policies()?;
        *slot = Some(Arc::new(unsealed));
        tracing::info!("root key accepted; Nexus is ready");
        Ok(())
    }

    /// After [`Vault::rotate_root`] made `new` the store's root key: serve with it from now on
    /// (same store and policy cache; requests already running finish with the old one).
    pub fn replace_root(&self, new: RootKey) {
        let mut slot = self.unsealed.write().unwrap_or_else(|p| p.into_inner());
        let Some(current) = slot.as_ref() else {
            return;
        };
        let checked = current.policy_checked.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let replacement = Unsealed {
            root: new,
            vault: current.vault.clone(),
            policies: RwLock::new(
                current.policies.read().unwrap_or_else(|p| p.into_inner()).clone(),
            ),
            policy_refresh: current.policy_refresh,
            policy_checked: Mutex::new(checked),
        };
        *slot = Some(Arc::new(replacement));
    }
}
