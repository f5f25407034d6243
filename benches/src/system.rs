//! A real spike-rs system to measure: the dev Workload API agent, Keepers and Bootstrap run in
//! this process (as the libraries `spike dev` runs), and `spike-nexus` runs as a separate
//! process on 127.0.0.1 with a sled store, so its descriptors and memory can be read from
//! `/proc/<pid>` without the load generator's mixed in, and so it can be killed and restarted.
//!
//! Nexus takes its root key from the Keepers after Bootstrap, and again after every restart,
//! with no human action — the same path production takes. Every wait has a deadline.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spike_client::identity::IdentitySource;
use spike_client::{RetryPolicy, Spike};
use spike_server::bootstrap::{self, BootstrapConfig, BootstrapOutcome};
use spike_server::dev::agent::{DevAgent, DevAgentHandle};
use spike_server::keeper::{self, KeeperConfig, RunningKeeper};

use crate::{BenchError, Result, fail};

/// How a [`System`] is started.
#[derive(Debug, Clone)]
pub struct SystemSpec {
    /// Lifetime of every X509-SVID the dev agent issues; it re-issues them at half of it.
    pub svid_ttl: Duration,
    /// Keepers (= Shamir shares).
    pub keepers: usize,
    /// Shamir threshold.
    pub threshold: usize,
    /// More environment for `spike-nexus` (overrides the defaults of [`System::nexus_env`]).
    pub nexus_env: Vec<(String, String)>,
}

impl Default for SystemSpec {
    fn default() -> Self {
        Self {
            svid_ttl: spike_server::dev::agent::DEFAULT_SVID_TTL,
            keepers: 3,
            threshold: 2,
            nexus_env: Vec::new(),
        }
    }
}

/// The running system; `spike-nexus` is killed when this is dropped.
#[derive(Debug)]
pub struct System {
    spec: SystemSpec,
    dir: tempfile::TempDir,
    agent: DevAgentHandle,
    keepers: Vec<RunningKeeper>,
    nexus_bin: PathBuf,
    nexus_port: u16,
    nexus: Option<Child>,
    nexus_log: PathBuf,
    starts: usize,
}

/// `SPIKE_NEXUS_RATE_LIMIT` for the runs: the whole load generator is one SPIFFE ID, and the
/// runners measure Nexus, not its per-caller limiter (429s would count as errors).
const NEXUS_RATE_LIMIT: &str = "1000000";

impl System {
    /// Starts the agent, the Keepers and Nexus, bootstraps, and waits until Nexus is ready.
    pub async fn start(spec: SystemSpec) -> Result<Self> {
        let nexus_bin = nexus_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("spike-bench-")
            .tempdir()
            .map_err(|e| BenchError(format!("cannot create a temp dir: {e}")))?;
        let agent = DevAgent::builder()
            .socket_dir(dir.path().join("sockets"))
            .svid_ttl(spec.svid_ttl)
            .build()
            .map_err(|e| BenchError(format!("dev agent: {e}")))?
            .serve()
            .await
            .map_err(|e| BenchError(format!("dev agent: {e}")))?;
        let keeper_source = identity(&agent, "keeper").await?;
        let mut keepers = Vec::with_capacity(spec.keepers);
        for _ in 0..spec.keepers {
            let k = keeper::start(KeeperConfig::dev(), keeper_source.clone())
                .await
                .map_err(|e| BenchError(format!("keeper: {e}")))?;
            keepers.push(k);
        }
        let nexus_port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| BenchError(format!("cannot find a free port: {e}")))?;
        let nexus_log = dir.path().join("nexus.log");
        let mut system = Self {
            spec,
            dir,
            agent,
            keepers,
            nexus_bin,
            nexus_port,
            nexus: None,
            nexus_log,
            starts: 0,
        };
        system.spawn_nexus()?;
        let mut config = BootstrapConfig::new(system.keeper_urls(), system.nexus_url());
        config.shamir_threshold = system.spec.threshold;
        let outcome = bootstrap::run(config, system.identity("bootstrap").await?)
            .await
            .map_err(|e| BenchError(format!("bootstrap: {e}\n{}", system.nexus_log_tail(20))))?;
        if !matches!(outcome, BootstrapOutcome::Bootstrapped { .. }) {
            return fail(format!("bootstrap did not deal a root key: {outcome:?}"));
        }
        system.wait_ready(Instant::now(), Duration::from_secs(60)).await?;
        Ok(system)
    }

    /// The dev agent (for SVID expiry times and rotation).
    pub fn agent(&self) -> &DevAgentHandle {
        &self.agent
    }

    /// Nexus's URL.
    pub fn nexus_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.nexus_port)
    }

    /// Every Keeper URL, in order (Keeper n holds share n).
    pub fn keeper_urls(&self) -> Vec<String> {
        self.keepers.iter().map(|k| format!("https://{}", k.addr())).collect()
    }

    /// Nexus's data directory (sled database and audit log).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("nexus-data")
    }

    /// The process ID of the running `spike-nexus`.
    pub fn nexus_pid(&self) -> Option<u32> {
        self.nexus.as_ref().map(Child::id)
    }

    /// An identity source for agent entry `name` (e.g. "pilot-superuser").
    pub async fn identity(&self, name: &str) -> Result<IdentitySource> {
        identity(&self.agent, name).await
    }

    /// A new SDK client of Nexus (its own connection pool, so its own TLS connection), with no
    /// retries: the runners count every failure.
    pub async fn client(&self, source: &IdentitySource) -> Result<Spike> {
        connect(&self.nexus_url(), source).await
    }

    /// The environment `spike-nexus` runs with (nothing else is inherited).
    pub fn nexus_env(&self) -> Result<BTreeMap<String, String>> {
        let endpoint = self
            .agent
            .endpoint("nexus")
            .ok_or_else(|| BenchError("the dev agent has no nexus entry".into()))?;
        let mut env = BTreeMap::new();
        for (k, v) in [
            ("SPIFFE_ENDPOINT_SOCKET", endpoint),
            ("SPIKE_SYSTEM_LOG_LEVEL", "warn".into()),
            ("SPIKE_NEXUS_TLS_PORT", format!("127.0.0.1:{}", self.nexus_port)),
            ("SPIKE_NEXUS_BACKEND_STORE", "sled".into()),
            ("SPIKE_NEXUS_DATA_DIR", self.data_dir().display().to_string()),
            ("SPIKE_NEXUS_KEEPER_PEERS", self.keeper_urls().join(",")),
            ("SPIKE_NEXUS_SHAMIR_SHARES", self.spec.keepers.to_string()),
            ("SPIKE_NEXUS_SHAMIR_THRESHOLD", self.spec.threshold.to_string()),
            ("SPIKE_NEXUS_RECOVERY_MAX_INTERVAL", "500ms".into()),
            ("SPIKE_NEXUS_RATE_LIMIT", NEXUS_RATE_LIMIT.into()),
        ] {
            env.insert(k.to_owned(), v);
        }
        for (k, v) in &self.spec.nexus_env {
            env.insert(k.clone(), v.clone());
        }
        Ok(env)
    }

    /// Starts `spike-nexus` (not waiting for readiness); its log goes to `nexus.log`.
    pub fn spawn_nexus(&mut self) -> Result<Instant> {
        if self.nexus.is_some() {
            return fail("spike-nexus is already running");
        }
        let env = self.nexus_env()?;
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.nexus_log).map_err(
                |e| BenchError(format!("cannot open {}: {e}", self.nexus_log.display())),
            )?;
        let err = log.try_clone().map_err(|e| BenchError(format!("log handle: {e}")))?;
        self.starts += 1;
        let started = Instant::now();
        // glibc allocator tuning (e.g. MALLOC_ARENA_MAX) passes through, for memory experiments.
        let malloc_tuning = std::env::vars().filter(|(k, _)| k.starts_with("MALLOC_"));
        let child = Command::new(&self.nexus_bin)
            .env_clear()
            .envs(&env)
            .envs(malloc_tuning)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| BenchError(format!("cannot start {}: {e}", self.nexus_bin.display())))?;
        self.nexus = Some(child);
        Ok(started)
    }

    /// Kills `spike-nexus` with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill_nexus(&mut self) {
        if let Some(mut child) = self.nexus.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills Nexus with SIGKILL, starts it again and waits until it serves (root key back from
    /// the Keepers, store open); returns the time from spawn to ready.
    pub async fn restart_nexus(&mut self, limit: Duration) -> Result<Duration> {
        self.kill_nexus();
        let started = self.spawn_nexus()?;
        self.wait_ready(started, limit).await
    }

    /// Polls Nexus every 2 ms with a fresh client until it answers a read as a ready Nexus
    /// does; returns the time since `since`. Fails after `limit`, or when the process exits,
    /// with its log.
    pub async fn wait_ready(&mut self, since: Instant, limit: Duration) -> Result<Duration> {
        let probe = self.client(&self.identity("pilot-superuser").await?).await?;
        let mut last = String::from("no answer");
        while since.elapsed() < limit {
            if let Some(child) = self.nexus.as_mut()
                && !matches!(child.try_wait(), Ok(None))
            {
                return fail(format!("spike-nexus exited\n{}", self.nexus_log_tail(30)));
            }
            // A missing secret is NotFound only from a ready Nexus (503 before the root key).
            match probe.get_secret("bench/readiness-probe").await {
                Err(spike_client::Error::NotFound) => return Ok(since.elapsed()),
                Ok(_) => return Ok(since.elapsed()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        fail(format!(
            "Nexus not ready after {limit:?}; last answer: {last}\n{}",
            self.nexus_log_tail(30)
        ))
    }

    /// The last `lines` lines of Nexus's log (every start appends to it).
    pub fn nexus_log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.nexus_log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!("--- {} ---\n{}", self.nexus_log.display(), all[from..].join("\n"))
    }

    /// Stops everything: Nexus (SIGKILL), the Keepers (shards zeroized) and the agent.
    pub async fn shutdown(mut self) {
        self.kill_nexus();
        for k in self.keepers.drain(..) {
            k.shutdown().await;
        }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        self.kill_nexus();
    }
}

/// A new SDK client of the Nexus at `url` presenting `source`'s SVID: its own connection pool
/// (so its own TLS connection, opened on first use), no retries.
pub async fn connect(url: &str, source: &IdentitySource) -> Result<Spike> {
    Spike::builder()
        .identity(source.clone())
        .url(url)
        .retry(RetryPolicy { attempts: 1, ..RetryPolicy::default() })
        .build()
        .await
        .map_err(|e| BenchError(format!("SDK client: {e}")))
}

async fn identity(agent: &DevAgentHandle, name: &str) -> Result<IdentitySource> {
    let endpoint =
        agent.endpoint(name).ok_or_else(|| BenchError(format!("no agent entry {name:?}")))?;
    IdentitySource::workload_api(&endpoint, Duration::from_secs(10))
        .await
        .map_err(|e| BenchError(format!("identity {name}: {e}")))
}

/// `spike-nexus` from `SPIKE_BENCH_BIN_DIR`, or built (`cargo build -p spike-nexus`) in the
/// profile and target directory of the running benchmark, so it is never stale.
pub fn nexus_binary() -> Result<PathBuf> {
    let name = format!("spike-nexus{}", std::env::consts::EXE_SUFFIX);
    let dir = match std::env::var_os("SPIKE_BENCH_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => spike_e2e::build_in_current_target(&["-p", "spike-nexus"]).map_err(|e| {
            BenchError(format!("{e}, or set SPIKE_BENCH_BIN_DIR to a prebuilt spike-nexus"))
        })?,
    };
    let bin = dir.join(name);
    if !bin.is_file() {
        return fail(format!(
            "{} is missing (build it, or set SPIKE_BENCH_BIN_DIR)",
            bin.display()
        ));
    }
    Ok(bin)
}
