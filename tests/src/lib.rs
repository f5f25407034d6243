//! `spike-e2e`: a harness for tests that run the real binaries — `spike-nexus`,
//! `spike-keeper`, `spike-bootstrap` — as separate processes on 127.0.0.1, kill them with
//! SIGKILL and start them again.
//!
//! - **Binaries**: [`binaries`] runs `cargo build -p spike-nexus -p spike-keeper -p
//!   spike-bootstrap` once per test process, in the profile and target directory of the
//!   running test, so the processes under test are never stale. Set `SPIKE_E2E_BIN_DIR` to use
//!   prebuilt binaries instead, or give a [`ClusterSpec`] its own [`Binaries`].
//! - **Identity**: a real `spike-dev-agent` (the library, in the test process) serves the
//!   SPIFFE Workload API on Unix sockets; each process gets its role's socket.
//! - **Logs**: every process writes to `<temp dir>/logs/<name>.<start>.log`; failures print
//!   their tails ([`Cluster::logs`]).
//! - **Bounds**: every wait has a deadline; a [`Cluster`] kills what it started when dropped.
//!
//! The load runners of `spike-benches` (`spike-scale`, `spike-soak`) measure Nexus on the same
//! [`Cluster`]: one process harness for tests and benchmarks.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod postgres;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use spike_client::identity::IdentitySource;
use spike_client::{RetryPolicy, Spike};
use spike_server::dev::agent::{DEFAULT_SVID_TTL, DevAgent, DevAgentHandle, RegistrationEntry};
use spike_server::keeper::{self, KeeperClient};

/// What went wrong in the harness, or what the system under test did wrong; the message
/// carries the processes' log tails. `Debug` prints it raw, so `unwrap()` in a test shows
/// readable logs.
pub struct HarnessError(pub String);

impl std::fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HarnessError {}

/// Harness result.
pub type Result<T> = std::result::Result<T, HarnessError>;

fn fail<T>(message: impl Into<String>) -> Result<T> {
    Err(HarnessError(message.into()))
}

/// Paths of the binaries under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `spike-nexus`.
    pub nexus: PathBuf,
    /// `spike-keeper`.
    pub keeper: PathBuf,
    /// `spike-bootstrap`.
    pub bootstrap: PathBuf,
}

impl Binaries {
    /// The three binaries in `dir`; fails naming the first one missing.
    pub fn in_dir(dir: &Path) -> Result<Self> {
        let bins = Self {
            nexus: executable(dir, "spike-nexus"),
            keeper: executable(dir, "spike-keeper"),
            bootstrap: executable(dir, "spike-bootstrap"),
        };
        for path in [&bins.nexus, &bins.keeper, &bins.bootstrap] {
            if !path.is_file() {
                return fail(format!(
                    "{} is missing; build it with `cargo build -p spike-nexus -p spike-keeper -p \
                     spike-bootstrap` (or point SPIKE_E2E_BIN_DIR at it)",
                    path.display()
                ));
            }
        }
        Ok(bins)
    }
}

/// The path of executable `name` in `dir` (with the platform's suffix).
pub fn executable(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// The binaries, built once per process (see the crate docs).
pub fn binaries() -> Result<&'static Binaries> {
    static BINS: OnceLock<std::result::Result<Binaries, String>> = OnceLock::new();
    BINS.get_or_init(|| locate_and_build().map_err(|e| e.0))
        .as_ref()
        .map_err(|e| HarnessError(e.clone()))
}

fn locate_and_build() -> Result<Binaries> {
    let dir = match std::env::var_os("SPIKE_E2E_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => build_in_current_target(&[
            "-p",
            "spike-nexus",
            "-p",
            "spike-keeper",
            "-p",
            "spike-bootstrap",
        ])
        .map_err(|e| HarnessError(format!("{e}, or set SPIKE_E2E_BIN_DIR to prebuilt binaries")))?,
    };
    Binaries::in_dir(&dir)
}

/// Runs `cargo build --quiet <args>` for this workspace into the target directory and profile
/// of the running executable (a test, a benchmark, a load runner), so the processes it then
/// starts are never stale; returns the directory the binaries land in (`target/<profile>`).
/// Cheap when nothing changed. Tests and runners that take prebuilt binaries from an
/// environment variable skip this.
pub fn build_in_current_target(args: &[&str]) -> Result<PathBuf> {
    let current = std::env::current_exe()
        .map_err(|e| HarnessError(format!("cannot find the running executable: {e}")))?;
    let mut dir = current.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps" || n == "examples") {
        dir.pop();
    }
    let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug").to_owned();
    let Some(target_dir) = dir.parent() else {
        return fail(format!("{} is not inside a cargo target directory", dir.display()));
    };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .args(args);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let what = format!("cargo build {}", args.join(" "));
    let status = cmd.status().map_err(|e| HarnessError(format!("cannot run `{what}`: {e}")))?;
    if !status.success() {
        return fail(format!("`{what}` failed ({status}); fix the build"));
    }
    Ok(dir)
}

/// A free TCP port on 127.0.0.1 (bound and released; reused for every restart of a process).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| HarnessError(format!("cannot find a free port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| HarnessError(format!("cannot read a local address: {e}")))
}

/// A child process with its log file; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Proc {
    name: String,
    pid: u32,
    // Behind a lock so that whether it still runs can be asked through a shared reference
    // (`Cluster::wait_ready_since` watches Nexus while it polls).
    child: Mutex<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `bin` with exactly `env` (nothing inherited), output to `log`.
    pub fn spawn(
        name: &str,
        bin: &Path,
        env: &BTreeMap<String, String>,
        log: PathBuf,
    ) -> Result<Self> {
        Self::spawn_args(name, bin.as_os_str(), &[], env, log)
    }

    /// Like [`Proc::spawn`], running `program` with `args` (e.g. a wrapper that sets a
    /// resource limit and then `exec`s the binary under test).
    pub fn spawn_args(
        name: &str,
        program: &std::ffi::OsStr,
        args: &[std::ffi::OsString],
        env: &BTreeMap<String, String>,
        log: PathBuf,
    ) -> Result<Self> {
        let file = std::fs::File::create(&log)
            .map_err(|e| HarnessError(format!("cannot create {}: {e}", log.display())))?;
        let err = file
            .try_clone()
            .map_err(|e| HarnessError(format!("cannot duplicate a log handle: {e}")))?;
        let child = Command::new(program)
            .args(args)
            .env_clear()
            .envs(env)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                HarnessError(format!("cannot start {}: {e}", Path::new(program).display()))
            })?;
        Ok(Self { name: name.to_owned(), pid: child.id(), child: Mutex::new(child), log })
    }

    fn child(&mut self) -> &mut Child {
        self.child.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Kills it with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill9(&mut self) {
        let child = self.child();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// True while it has not exited.
    pub fn is_running(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        matches!(child.try_wait(), Ok(None))
    }

    /// Waits (bounded, polling) until it exits; `None` if it still runs after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child().try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!("--- {} ({}) ---\n{}\n", self.name, self.log.display(), all[from..].join("\n"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The shape of a test system.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Keepers (= Shamir shares).
    pub keepers: usize,
    /// Shamir threshold.
    pub threshold: usize,
    /// `SPIKE_NEXUS_KEEPER_UPDATE_INTERVAL`.
    pub update_interval: Duration,
    /// `SPIKE_NEXUS_RECOVERY_MAX_INTERVAL`.
    pub recovery_max_interval: Duration,
    /// `SPIKE_SYSTEM_LOG_LEVEL` of every process.
    pub log_level: String,
    /// More environment for Nexus, overriding the harness's (e.g.
    /// `SPIKE_NEXUS_MAX_SECRET_VERSIONS`).
    pub nexus_env: BTreeMap<String, String>,
    /// More dev agent identities: (entry name, SPIFFE ID), e.g. a workload for policy tests.
    pub extra_identities: Vec<(String, String)>,
    /// Lifetime of every X509-SVID the dev agent issues; it re-issues them at half of it.
    pub svid_ttl: Duration,
    /// The binaries to run; `None` takes [`binaries`] (built, or `SPIKE_E2E_BIN_DIR`).
    pub binaries: Option<Binaries>,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            keepers: 3,
            threshold: 2,
            update_interval: Duration::from_secs(5),
            recovery_max_interval: Duration::from_millis(500),
            log_level: "info".into(),
            nexus_env: BTreeMap::new(),
            extra_identities: Vec::new(),
            svid_ttl: DEFAULT_SVID_TTL,
            binaries: None,
        }
    }
}

/// What a finished `spike-bootstrap` run printed.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// A dev agent plus Keeper and Nexus processes, on fixed ports so restarts keep their URLs.
#[derive(Debug)]
pub struct Cluster {
    spec: ClusterSpec,
    dir: tempfile::TempDir,
    agent: DevAgentHandle,
    bins: Binaries,
    keeper_ports: Vec<u16>,
    nexus_port: u16,
    keepers: Vec<Option<Proc>>,
    nexus: Option<Proc>,
    nexus_launcher: Vec<std::ffi::OsString>,
    starts: usize,
    retired: Vec<PathBuf>,
    probe: reqwest::Client,
}

fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

impl Cluster {
    /// Starts the dev agent (no processes yet).
    pub async fn new(spec: ClusterSpec) -> Result<Self> {
        let bins = match &spec.binaries {
            Some(bins) => bins.clone(),
            None => binaries()?.clone(),
        };
        let dir = tempfile::tempdir().map_err(|e| HarnessError(format!("temp dir: {e}")))?;
        std::fs::create_dir_all(dir.path().join("logs"))
            .map_err(|e| HarnessError(format!("logs dir: {e}")))?;
        let extra = spec
            .extra_identities
            .iter()
            .map(|(name, id)| RegistrationEntry::new(name, id))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| HarnessError(format!("extra identity: {e}")))?;
        let agent = DevAgent::builder()
            .socket_dir(dir.path().join("sockets"))
            .entries(extra)
            .svid_ttl(spec.svid_ttl)
            .build()
            .map_err(|e| HarnessError(format!("dev agent: {e}")))?
            .serve()
            .await
            .map_err(|e| HarnessError(format!("dev agent: {e}")))?;
        let keeper_ports = (0..spec.keepers).map(|_| free_port()).collect::<Result<Vec<_>>>()?;
        let nexus_port = free_port()?;
        let source = identity(&agent, "pilot-superuser").await?;
        let probe = https_client(source, "spiffe://spike.ist/spike/nexus")?;
        Ok(Self {
            keepers: (0..spec.keepers).map(|_| None).collect(),
            spec,
            dir,
            agent,
            bins,
            keeper_ports,
            nexus_port,
            nexus: None,
            nexus_launcher: Vec::new(),
            starts: 0,
            retired: Vec::new(),
            probe,
        })
    }

    /// The dev agent (e.g. for the expiry of the SVIDs it issued, to watch them rotate).
    pub fn agent(&self) -> &DevAgentHandle {
        &self.agent
    }

    /// The binaries it runs.
    pub fn binaries(&self) -> &Binaries {
        &self.bins
    }

    /// The spec it runs with.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// The temp directory everything lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `unix://` endpoint of the Workload API socket for identity `name` (e.g. "nexus").
    pub fn endpoint(&self, name: &str) -> Result<String> {
        self.agent().endpoint(name).ok_or_else(|| HarnessError(format!("no agent entry {name:?}")))
    }

    /// URL of Keeper `n` (1-based).
    pub fn keeper_url(&self, n: usize) -> String {
        format!("https://127.0.0.1:{}", self.keeper_ports[n - 1])
    }

    /// Every Keeper URL, in order (Keeper n holds share n).
    pub fn keeper_urls(&self) -> Vec<String> {
        (1..=self.spec.keepers).map(|n| self.keeper_url(n)).collect()
    }

    /// Nexus's URL.
    pub fn nexus_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.nexus_port)
    }

    fn log_path(&mut self, name: &str) -> PathBuf {
        self.starts += 1;
        self.dir.path().join("logs").join(format!("{:02}-{name}.log", self.starts))
    }

    fn base_env(&self, identity: &str) -> Result<BTreeMap<String, String>> {
        let mut env = BTreeMap::new();
        env.insert("SPIFFE_ENDPOINT_SOCKET".into(), self.endpoint(identity)?);
        env.insert("SPIKE_SYSTEM_LOG_LEVEL".into(), self.spec.log_level.clone());
        Ok(env)
    }

    /// Starts Keeper `n` (1-based), empty, and waits until it accepts connections.
    pub async fn start_keeper(&mut self, n: usize) -> Result<()> {
        if self.keepers[n - 1].is_some() {
            return fail(format!("keeper {n} is already running"));
        }
        let mut env = self.base_env("keeper")?;
        env.insert(
            "SPIKE_KEEPER_TLS_PORT".into(),
            format!("127.0.0.1:{}", self.keeper_ports[n - 1]),
        );
        let log = self.log_path(&format!("keeper-{n}"));
        let proc = Proc::spawn(&format!("keeper-{n}"), &self.bins.keeper, &env, log)?;
        self.keepers[n - 1] = Some(proc);
        let port = self.keeper_ports[n - 1];
        self.wait_listening(port, Duration::from_secs(10))
            .await
            .map_err(|e| HarnessError(format!("keeper {n}: {e}\n{}", self.logs())))
    }

    /// Starts every Keeper.
    pub async fn start_keepers(&mut self) -> Result<()> {
        for n in 1..=self.spec.keepers {
            self.start_keeper(n).await?;
        }
        Ok(())
    }

    /// Kills Keeper `n` with SIGKILL (its shard is gone with it).
    pub fn kill_keeper(&mut self, n: usize) {
        if let Some(mut proc) = self.keepers[n - 1].take() {
            proc.kill9();
            self.retired.push(proc.log().to_path_buf());
        }
    }

    /// Nexus's data directory (`SPIKE_NEXUS_DATA_DIR`: the sled database and the audit log).
    pub fn nexus_data_dir(&self) -> PathBuf {
        self.dir.path().join("nexus-data")
    }

    /// The environment `spike-nexus` runs with.
    pub fn nexus_env(&self) -> Result<BTreeMap<String, String>> {
        let mut env = self.base_env("nexus")?;
        let data = self.nexus_data_dir();
        for (k, v) in [
            ("SPIKE_NEXUS_TLS_PORT", format!("127.0.0.1:{}", self.nexus_port)),
            ("SPIKE_NEXUS_BACKEND_STORE", "sled".into()),
            ("SPIKE_NEXUS_DATA_DIR", data.display().to_string()),
            ("SPIKE_NEXUS_KEEPER_PEERS", self.keeper_urls().join(",")),
            ("SPIKE_NEXUS_SHAMIR_SHARES", self.spec.keepers.to_string()),
            ("SPIKE_NEXUS_SHAMIR_THRESHOLD", self.spec.threshold.to_string()),
            ("SPIKE_NEXUS_KEEPER_UPDATE_INTERVAL", go_duration(self.spec.update_interval)),
            ("SPIKE_NEXUS_RECOVERY_MAX_INTERVAL", go_duration(self.spec.recovery_max_interval)),
        ] {
            env.insert(k.into(), v);
        }
        env.extend(self.spec.nexus_env.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(env)
    }

    /// Makes later [`Cluster::start_nexus`] calls run `launcher... <spike-nexus>` (a wrapper
    /// that sets up a fault and then `exec`s its last argument); empty runs Nexus directly.
    pub fn set_nexus_launcher(&mut self, launcher: Vec<std::ffi::OsString>) {
        self.nexus_launcher = launcher;
    }

    /// Starts Nexus (not waiting for readiness); returns the instant just before the spawn.
    pub fn start_nexus(&mut self) -> Result<Instant> {
        if self.nexus.is_some() {
            return fail("nexus is already running");
        }
        let env = self.nexus_env()?;
        let log = self.log_path("nexus");
        let started = Instant::now();
        let proc = match self.nexus_launcher.split_first() {
            None => Proc::spawn("nexus", &self.bins.nexus, &env, log)?,
            Some((program, rest)) => {
                let mut args = rest.to_vec();
                args.push(self.bins.nexus.clone().into_os_string());
                Proc::spawn_args("nexus", program, &args, &env, log)?
            }
        };
        self.nexus = Some(proc);
        Ok(started)
    }

    /// Waits (bounded) for the running Nexus to exit by itself, e.g. because it refused to
    /// start; `None` if it still runs after `limit` (or none was started).
    pub async fn wait_nexus_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        self.nexus.as_mut()?.wait_exit(limit).await
    }

    /// The whole log of the current (or last started) Nexus process.
    pub fn nexus_log(&self) -> String {
        let path = match &self.nexus {
            Some(proc) => Some(proc.log().to_path_buf()),
            None => self
                .retired
                .iter()
                .rev()
                .find(|p| {
                    p.file_name().is_some_and(|n| n.to_string_lossy().ends_with("-nexus.log"))
                })
                .cloned(),
        };
        path.and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default()
    }

    /// Kills Nexus with SIGKILL.
    pub fn kill_nexus(&mut self) {
        if let Some(mut proc) = self.nexus.take() {
            proc.kill9();
            self.retired.push(proc.log().to_path_buf());
        }
    }

    /// True while the Nexus process has not exited.
    pub fn nexus_running(&mut self) -> bool {
        self.nexus.as_ref().is_some_and(Proc::is_running)
    }

    /// The process ID of the running Nexus (to read its `/proc` entries).
    pub fn nexus_pid(&self) -> Option<u32> {
        self.nexus.as_ref().map(Proc::pid)
    }

    /// Kills Nexus with SIGKILL, starts it again and waits (up to `limit`) until it is ready
    /// (root key back from the Keepers, store open); returns the time from just before the
    /// spawn to ready.
    pub async fn restart_nexus(&mut self, limit: Duration) -> Result<Duration> {
        self.kill_nexus();
        let spawned = self.start_nexus()?;
        self.wait_ready_since(spawned, limit).await
    }

    /// Starts every Keeper and Nexus, runs `spike-bootstrap` (it must succeed and deal a new
    /// root key) and waits until Nexus is ready: the start of most system tests.
    pub async fn start_bootstrapped(&mut self, ready_limit: Duration) -> Result<RunOutput> {
        self.start_keepers().await?;
        self.start_nexus()?;
        let out = self.bootstrap(&[]).await?;
        if out.code != Some(0) || !out.stdout.contains("bootstrapped: a new root key") {
            return fail(format!("bootstrap failed: {out:?}\n{}", self.logs()));
        }
        self.wait_ready(ready_limit).await?;
        Ok(out)
    }

    /// Runs `spike-bootstrap` to completion (bounded) with `extra` environment variables.
    pub async fn bootstrap(&mut self, extra: &[(&str, &str)]) -> Result<RunOutput> {
        let mut env = self.base_env("bootstrap")?;
        env.insert("SPIKE_NEXUS_KEEPER_PEERS".into(), self.keeper_urls().join(","));
        env.insert("SPIKE_NEXUS_SHAMIR_SHARES".into(), self.spec.keepers.to_string());
        env.insert("SPIKE_NEXUS_SHAMIR_THRESHOLD".into(), self.spec.threshold.to_string());
        env.insert("SPIKE_NEXUS_API_URL".into(), self.nexus_url());
        env.insert("SPIKE_BOOTSTRAP_NEXUS_TIMEOUT".into(), "20s".into());
        env.insert("SPIKE_BOOTSTRAP_KEEPER_ATTEMPTS".into(), "4".into());
        for (k, v) in extra {
            env.insert((*k).into(), (*v).into());
        }
        let log = self.log_path("bootstrap");
        let mut cmd = tokio::process::Command::new(&self.bins.bootstrap);
        cmd.env_clear().envs(&env).stdin(Stdio::null()).kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .map_err(|_| HarnessError("spike-bootstrap did not finish within 60s".into()))?
            .map_err(|e| HarnessError(format!("cannot run spike-bootstrap: {e}")))?;
        let output = RunOutput {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        let _ = std::fs::write(&log, format!("{}{}", output.stdout, output.stderr));
        self.retired.push(log);
        Ok(output)
    }

    /// Nexus's `/readyz`: status and text.
    pub async fn readyz(&self) -> Result<(u16, String)> {
        let r = self
            .probe
            .get(format!("{}/readyz", self.nexus_url()))
            .send()
            .await
            .map_err(|e| HarnessError(format!("readyz: {e}")))?;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        Ok((status, text))
    }

    /// Polls `/readyz` every `every` until 200; returns the time waited. Fails after `limit`
    /// with Nexus's last answer and the logs.
    pub async fn wait_ready_every(&self, limit: Duration, every: Duration) -> Result<Duration> {
        self.poll_ready(Instant::now(), limit, every, false).await
    }

    /// Polls `/readyz` every 2 ms until 200; returns the time since `since` (e.g. the instant
    /// [`Cluster::start_nexus`] returned). Fails once `limit` has passed since `since`, or as
    /// soon as the Nexus process exits, with Nexus's last answer and the logs.
    pub async fn wait_ready_since(&self, since: Instant, limit: Duration) -> Result<Duration> {
        self.poll_ready(since, limit, Duration::from_millis(2), true).await
    }

    async fn poll_ready(
        &self,
        since: Instant,
        limit: Duration,
        every: Duration,
        fail_on_exit: bool,
    ) -> Result<Duration> {
        let mut last = String::from("no answer");
        while since.elapsed() < limit {
            if fail_on_exit && !self.nexus.as_ref().is_some_and(Proc::is_running) {
                return fail(format!("Nexus exited (or was not started)\n{}", self.logs()));
            }
            match self.readyz().await {
                Ok((200, _)) => return Ok(since.elapsed()),
                Ok((status, text)) => last = format!("{status}: {}", text.trim()),
                Err(e) => last = e.0,
            }
            tokio::time::sleep(every).await;
        }
        fail(format!("Nexus not ready after {limit:?}; last answer: {last}\n{}", self.logs()))
    }

    /// [`Cluster::wait_ready_every`] polling every 5 ms.
    pub async fn wait_ready(&self, limit: Duration) -> Result<Duration> {
        self.wait_ready_every(limit, Duration::from_millis(5)).await
    }

    async fn wait_listening(&self, port: u16, limit: Duration) -> Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while started.elapsed() < limit {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        fail(format!("nothing listens on {addr} after {limit:?}"))
    }

    /// An identity source for agent entry `name` (e.g. "pilot-superuser", "nexus").
    pub async fn identity(&self, name: &str) -> Result<IdentitySource> {
        identity(self.agent(), name).await
    }

    /// An SDK client of Nexus as agent entry `name`, without retries.
    pub async fn client(&self, name: &str) -> Result<Spike> {
        connect(&self.nexus_url(), &self.identity(name).await?)
            .await
            .map_err(|e| HarnessError(format!("client {name}: {e}")))
    }

    /// A Keeper client as agent entry `name` (only "nexus" may read shards).
    pub async fn keeper_client(&self, name: &str) -> Result<KeeperClient> {
        let roots = spike_server::nexus::authz::TrustRoots::single("spike.ist");
        let ids = keeper::keeper_matchers(&roots).map_err(|e| HarnessError(e.to_string()))?;
        KeeperClient::new(self.identity(name).await?, ids, Duration::from_secs(5))
            .map_err(|e| HarnessError(e.to_string()))
    }

    /// The tails of every process log so far, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let tail = |path: &Path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let from = all.len().saturating_sub(15);
            format!("--- {} ---\n{}\n", path.display(), all[from..].join("\n"))
        };
        for path in &self.retired {
            out.push_str(&tail(path));
        }
        for proc in self.keepers.iter().flatten().chain(self.nexus.iter()) {
            out.push_str(&proc.log_tail(15));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_nexus();
        for n in 1..=self.keepers.len() {
            self.kill_keeper(n);
        }
        if std::env::var_os("SPIKE_E2E_KEEP").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("SPIKE_E2E_KEEP: logs kept in {}", self.dir.path().display());
        }
    }
}

async fn identity(agent: &DevAgentHandle, name: &str) -> Result<IdentitySource> {
    let endpoint =
        agent.endpoint(name).ok_or_else(|| HarnessError(format!("no agent entry {name:?}")))?;
    IdentitySource::workload_api(&endpoint, Duration::from_secs(10))
        .await
        .map_err(|e| HarnessError(format!("identity {name}: {e}")))
}

/// A new SDK client of the Nexus at `url` presenting `source`'s SVID, without retries (a test
/// or a load runner sees, and counts, every failure): its own connection pool, so its own TLS
/// connection, opened on first use. Many clients can share one `source`.
pub async fn connect(url: &str, source: &IdentitySource) -> Result<Spike> {
    Spike::builder()
        .identity(source.clone())
        .url(url)
        .retry(RetryPolicy { attempts: 1, ..RetryPolicy::default() })
        .build()
        .await
        .map_err(|e| HarnessError(format!("SDK client: {e}")))
}

/// An mTLS HTTP client presenting `source`'s SVID to a server with SPIFFE ID `server_id`.
pub fn https_client(source: IdentitySource, server_id: &str) -> Result<reqwest::Client> {
    let id: spike_client::SpiffeId =
        server_id.parse().map_err(|e| HarnessError(format!("{server_id}: {e}")))?;
    let tls = spike_client::tls::mtls_client(source, id)
        .alpn_protocols([b"h2".to_vec(), b"http/1.1".to_vec()])
        .build()
        .map_err(|e| HarnessError(format!("TLS: {e}")))?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .map_err(|e| HarnessError(format!("HTTP client: {e}")))
}

/// Median and maximum of `samples` (sorted in place).
pub fn median_and_max(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let n = samples.len();
    if n == 0 {
        return (Duration::ZERO, Duration::ZERO);
    }
    let median =
        if n % 2 == 1 { samples[n / 2] } else { (samples[n / 2 - 1] + samples[n / 2]) / 2 };
    (median, samples[n - 1])
}
