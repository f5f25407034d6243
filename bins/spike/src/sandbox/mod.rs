//! `spike dev`: a complete local system from our own binaries, as supervised child processes.
//!
//! Start order: `spike-dev-agent` (the SPIFFE Workload API: one socket per identity under
//! `DIR/agent/`), then — with the sled backend — three `spike-keeper`s, `spike-nexus`, and a
//! one-shot `spike-bootstrap` that deals the first root key to the Keepers (it does nothing
//! when the store already has one). Nexus recovers its root key from the Keepers by itself,
//! also after `kill -9`.
//!
//! Keepers hold shards in memory only, so after *everything* stopped (Ctrl-C) no Keeper has
//! a shard. To let a second `spike dev` on the same `--dir` read the same secrets, `spike dev`
//! does what an operator would: once Nexus is ready it saves the recovery shards (`spike
//! operator recover`, SPIKE's file format) to `DIR/recover/`, and on the next start, if Nexus
//! waits for a key nobody holds, feeds them back (`spike operator restore`). That file copy
//! of the root key is a development convenience only; a real deployment keeps shards offline.
//!
//! With `--backend memory` only the agent and Nexus run; the data dies with Nexus.
//!
//! This module only orchestrates processes; every component's logic lives in its own crate.

pub mod child;

use std::io::{IsTerminal, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use spike_client::spike_core::identity::Role;
use spike_client::{Error as ClientError, RetryPolicy, Spike, recovery};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use self::child::{ChildEvent, ChildSpec, Supervised};
use crate::cli::DevBackend;
use crate::exit::CliError;

/// Keepers run with the sled backend.
pub const KEEPERS: usize = 3;
/// Shards needed to rebuild the root key.
pub const THRESHOLD: usize = 2;
/// The extra agent entry for the Pilot superuser that `DIR/env` points at.
pub const PILOT_ENTRY: &str = "pilot";
/// How long the agent may take to open its sockets.
const AGENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long Nexus may take to become ready (Bootstrap included).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for an operator to restore a root key that nobody holds.
const MANUAL_RESTORE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long Bootstrap may run.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(180);

/// Writes a line to standard error, ignoring failure (a closed terminal must not crash the
/// supervisor of every other process).
pub fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// What `spike dev` runs.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Absolute directory for everything.
    pub dir: PathBuf,
    /// Nexus's backend.
    pub backend: DevBackend,
    /// Extra workload identities: (entry name, SPIFFE ID).
    pub workloads: Vec<(String, String)>,
    /// Nexus's port on 127.0.0.1 (0: any free one).
    pub port: u16,
    /// Trust domain of every identity.
    pub trust_domain: String,
    /// `SPIKE_SYSTEM_LOG_LEVEL` of the children.
    pub log_level: String,
    /// Where our binaries are.
    pub bin_dir: PathBuf,
}

impl SandboxConfig {
    fn agent_dir(&self) -> PathBuf {
        self.dir.join("agent")
    }

    /// `SPIFFE_ENDPOINT_SOCKET` for agent entry `name`.
    pub fn endpoint(&self, name: &str) -> String {
        format!("unix://{}", self.agent_dir().join(format!("{name}.sock")).display())
    }

    /// Where recovery shards are kept between runs (sled backend).
    pub fn recover_dir(&self) -> PathBuf {
        self.dir.join("recover")
    }

    /// The file with the `export` lines.
    pub fn env_file(&self) -> PathBuf {
        self.dir.join("env")
    }

    fn bin(&self, name: &str) -> Result<PathBuf, CliError> {
        let path = self.bin_dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(CliError::Dev(format!(
                "{name} is not next to this spike binary (looked in {}): build them with \
                 `cargo build --bins` (or `cargo build --workspace`)",
                self.bin_dir.display()
            )))
        }
    }

    fn sled(&self) -> bool {
        self.backend == DevBackend::Sled
    }
}

/// A running local system.
#[derive(Debug)]
pub struct Sandbox {
    config: SandboxConfig,
    agent: Option<Supervised>,
    keepers: Vec<Supervised>,
    nexus: Option<Supervised>,
    nexus_url: String,
    /// The URL of Nexus's JWT-SVID listener.
    jwt_url: String,
    events: mpsc::UnboundedReceiver<ChildEvent>,
}

impl Sandbox {
    /// Starts everything and waits until Nexus serves requests; on failure, or on a signal
    /// in `signals` during start-up, stops whatever was started.
    pub async fn start(config: SandboxConfig, signals: &mut Signals) -> Result<Self, CliError> {
        let (tx, events) = mpsc::unbounded_channel();
        let mut sandbox = Sandbox {
            config,
            agent: None,
            keepers: Vec::new(),
            nexus: None,
            nexus_url: String::new(),
            jwt_url: String::new(),
            events,
        };
        let result = tokio::select! {
            r = sandbox.bring_up(tx) => r,
            () = signals.recv() => Err(CliError::Dev("interrupted during start-up".into())),
        };
        match result {
            Ok(()) => Ok(sandbox),
            Err(e) => {
                sandbox.shutdown().await;
                Err(e)
            }
        }
    }

    async fn bring_up(
        &mut self,
        events: mpsc::UnboundedSender<ChildEvent>,
    ) -> Result<(), CliError> {
        let c = self.config.clone();
        let agent_bin = c.bin("spike-dev-agent")?;
        let nexus_bin = c.bin("spike-nexus")?;
        let (keeper_bin, bootstrap_bin) = if c.sled() {
            (Some(c.bin("spike-keeper")?), Some(c.bin("spike-bootstrap")?))
        } else {
            (None, None)
        };
        let probe = c.agent_dir().join(format!("{}.sock", Role::Nexus.short_name()));
        if std::os::unix::net::UnixStream::connect(&probe).is_ok() {
            return Err(CliError::Dev(format!(
                "another `spike dev` is running on {} (its agent answers on {}); stop it first \
                 (or, if `spike dev` itself was killed with -9, its left-over children), or use \
                 another --dir",
                c.dir.display(),
                probe.display()
            )));
        }
        for dir in [&c.dir, &c.dir.join("data")] {
            create_private_dir(dir)?;
        }
        let nexus_port = match c.port {
            0 => free_port()?,
            port => {
                TcpListener::bind(("127.0.0.1", port)).map_err(|e| {
                    CliError::Dev(format!(
                        "port {port} on 127.0.0.1 is not free ({e}); is another `spike dev` \
                         running? Stop it, or pass --port 0 for any free port"
                    ))
                })?;
                port
            }
        };
        self.nexus_url = format!("https://127.0.0.1:{nexus_port}");
        let jwt_port = free_port()?;
        self.jwt_url = format!("https://127.0.0.1:{jwt_port}");
        let mut common = vec![
            ("SPIKE_TRUST_ROOT".to_owned(), c.trust_domain.clone()),
            ("SPIKE_SYSTEM_LOG_LEVEL".to_owned(), c.log_level.clone()),
        ];
        if !std::io::stderr().is_terminal() {
            // Their logs end up in our (redirected) stderr: no colour codes in files.
            common.push(("NO_COLOR".to_owned(), "1".to_owned()));
        }

        // 1. The Workload API.
        let superuser = Role::PilotSuperuser.spiffe_id(&c.trust_domain);
        let mut args = vec![
            "--trust-domain".to_owned(),
            c.trust_domain.clone(),
            "--socket-dir".to_owned(),
            c.agent_dir().display().to_string(),
            "--state-dir".to_owned(),
            c.dir.join("ca").display().to_string(),
            "--entry".to_owned(),
            format!("{PILOT_ENTRY}={superuser}"),
        ];
        for (name, id) in &c.workloads {
            args.push("--entry".to_owned());
            args.push(format!("{name}={id}"));
        }
        let agent =
            ChildSpec { name: "agent".into(), program: agent_bin, args, env: common.clone() };
        self.agent = Some(start(agent, &events)?);
        let mut names: Vec<String> = Role::ALL.iter().map(|r| r.short_name().to_owned()).collect();
        names.push(PILOT_ENTRY.to_owned());
        names.extend(c.workloads.iter().map(|(n, _)| n.clone()));
        wait_for_sockets(&c.agent_dir(), &names).await?;

        // 2. Keepers (sled only).
        let mut peers = Vec::new();
        if let Some(keeper_bin) = &keeper_bin {
            for n in 1..=KEEPERS {
                let port = free_port()?;
                peers.push(format!("https://127.0.0.1:{port}"));
                let mut env = common.clone();
                env.push(("SPIFFE_ENDPOINT_SOCKET".into(), c.endpoint(Role::Keeper.short_name())));
                env.push(("SPIKE_KEEPER_TLS_PORT".into(), format!("127.0.0.1:{port}")));
                let spec = ChildSpec {
                    name: format!("keeper-{n}"),
                    program: keeper_bin.clone(),
                    args: vec![],
                    env,
                };
                self.keepers.push(start(spec, &events)?);
            }
        }
        let peers = peers.join(",");

        // 3. Nexus.
        let mut env = common.clone();
        env.extend([
            ("SPIFFE_ENDPOINT_SOCKET".to_owned(), c.endpoint(Role::Nexus.short_name())),
            ("SPIKE_NEXUS_TLS_PORT".to_owned(), format!("127.0.0.1:{nexus_port}")),
            // The JWT-SVID listener (keys from the same Workload API), for trying bearer tokens.
            ("SPIKE_NEXUS_JWT_TLS_PORT".to_owned(), format!("127.0.0.1:{jwt_port}")),
            (
                "SPIKE_NEXUS_BACKEND_STORE".to_owned(),
                if c.sled() { "sled" } else { "memory" }.to_owned(),
            ),
            ("SPIKE_NEXUS_DATA_DIR".to_owned(), c.dir.join("data").display().to_string()),
            ("SPIKE_NEXUS_KEEPER_PEERS".to_owned(), peers.clone()),
            ("SPIKE_NEXUS_SHAMIR_SHARES".to_owned(), KEEPERS.to_string()),
            ("SPIKE_NEXUS_SHAMIR_THRESHOLD".to_owned(), THRESHOLD.to_string()),
        ]);
        let nexus = ChildSpec { name: "nexus".into(), program: nexus_bin, args: vec![], env };
        self.nexus = Some(start(nexus, &events)?);

        // 4. Bootstrap (sled only): deals a root key to an empty system, else does nothing.
        if let Some(bootstrap_bin) = bootstrap_bin {
            let mut env = common;
            env.extend([
                ("SPIFFE_ENDPOINT_SOCKET".to_owned(), c.endpoint(Role::Bootstrap.short_name())),
                ("SPIKE_NEXUS_KEEPER_PEERS".to_owned(), peers),
                ("SPIKE_NEXUS_API_URL".to_owned(), self.nexus_url.clone()),
                ("SPIKE_NEXUS_SHAMIR_SHARES".to_owned(), KEEPERS.to_string()),
                ("SPIKE_NEXUS_SHAMIR_THRESHOLD".to_owned(), THRESHOLD.to_string()),
            ]);
            let spec =
                ChildSpec { name: "bootstrap".into(), program: bootstrap_bin, args: vec![], env };
            run_once(&spec, BOOTSTRAP_TIMEOUT).await?;
        }

        // 5. Ready: Nexus answers the superuser.
        self.wait_ready().await?;
        if c.sled() {
            self.save_shards().await?;
        }
        Ok(())
    }

    async fn client(&self, entry: &str) -> Result<Spike, CliError> {
        Ok(Spike::builder()
            .socket(self.config.endpoint(entry))
            .url(&self.nexus_url)
            .nexus_id(Role::Nexus.spiffe_id(&self.config.trust_domain))
            .retry(RetryPolicy { attempts: 1, ..RetryPolicy::default() })
            .timeout(Duration::from_secs(10))
            .build()
            .await?)
    }

    /// Polls until Nexus answers the superuser; restores saved shards if Nexus waits for a
    /// root key that no Keeper holds.
    async fn wait_ready(&mut self) -> Result<(), CliError> {
        let pilot = self.client(Role::PilotSuperuser.short_name()).await?;
        let mut deadline = Instant::now() + READY_TIMEOUT;
        let mut restore_tried = false;
        let mut sealed_since: Option<Instant> = None;
        loop {
            if let Ok(ChildEvent::GaveUp { name, reason }) = self.events.try_recv() {
                return Err(CliError::Dev(format!("{name} cannot be kept running: {reason}")));
            }
            match pilot.list_secrets().await {
                Ok(_) => return Ok(()),
                Err(ClientError::NotReady) => {
                    let since = *sealed_since.get_or_insert_with(Instant::now);
                    // Give Nexus a moment to collect shards from live Keepers first.
                    if self.config.sled()
                        && !restore_tried
                        && since.elapsed() > Duration::from_secs(2)
                    {
                        restore_tried = true;
                        if !self.restore_saved_shards().await? {
                            say(&self.manual_restore_help());
                            deadline = Instant::now() + MANUAL_RESTORE_TIMEOUT;
                        }
                    }
                }
                Err(ClientError::NexusUnreachable { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            if Instant::now() >= deadline {
                return Err(CliError::Dev(format!(
                    "Nexus at {} did not become ready in time; see its log above",
                    self.nexus_url
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn manual_restore_help(&self) -> String {
        let c = &self.config;
        format!(
            "[spike dev] Nexus holds data in {data} sealed under a root key that no Keeper holds \
             and no file in {recover} has.\n\
             [spike dev] Restore it from your recovery shards (one per command, until it says \
             restored) in another shell:\n\
             [spike dev]   SPIFFE_ENDPOINT_SOCKET={endpoint} SPIKE_NEXUS_API_URL={url} \
             {spike} operator restore < spike.recovery.N.txt\n\
             [spike dev] or stop here (Ctrl-C) and remove {data} to start afresh. Waiting up to \
             {MANUAL_RESTORE_TIMEOUT:?}.",
            data = c.dir.join("data").display(),
            recover = c.recover_dir().display(),
            endpoint = c.endpoint(Role::PilotRestore.short_name()),
            url = self.nexus_url,
            spike = c.bin_dir.join("spike").display(),
        )
    }

    /// Feeds the shards saved by an earlier run to Nexus; false if there are none.
    async fn restore_saved_shards(&self) -> Result<bool, CliError> {
        let dir = self.config.recover_dir();
        let Ok(shares) = recovery::read_shards(&dir) else { return Ok(false) };
        say(&format!(
            "[spike dev] Nexus has data but no Keeper holds its root key (all were stopped); \
             restoring it from {}",
            dir.display()
        ));
        let restorer = self.client(Role::PilotRestore.short_name()).await?;
        for share in &shares {
            if restorer.restore(share).await?.restored {
                say("[spike dev] root key restored");
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn save_shards(&self) -> Result<(), CliError> {
        let recoverer = self.client(Role::PilotRecover.short_name()).await?;
        let shares = recoverer.recover().await?;
        let dir = self.config.recover_dir();
        recovery::write_shards(&dir, &shares)?;
        say(&format!(
            "[spike dev] saved the root key's recovery shards to {} so the next `spike dev` \
             here can restore it (development only: in production they go offline)",
            dir.display()
        ));
        Ok(())
    }

    /// Writes `DIR/env` and returns its text.
    pub fn write_env_file(&self) -> Result<String, CliError> {
        let c = &self.config;
        let mut text = String::from("# Written by `spike dev`; use it with: source <this file>\n");
        text.push_str(&format!(
            "export SPIFFE_ENDPOINT_SOCKET={}\n",
            shell_quote(&c.endpoint(PILOT_ENTRY))
        ));
        text.push_str(&format!("export SPIKE_NEXUS_API_URL={}\n", shell_quote(&self.nexus_url)));
        text.push_str(&format!("export SPIKE_NEXUS_JWT_API_URL={}\n", shell_quote(&self.jwt_url)));
        text.push_str(&format!("export SPIKE_TRUST_ROOT={}\n", shell_quote(&c.trust_domain)));
        text.push_str(&format!(
            "export PATH={}:\"$PATH\"\n",
            shell_quote(&c.bin_dir.display().to_string())
        ));
        let path = c.env_file();
        std::fs::write(&path, &text).map_err(|e| CliError::io("write", &path, e))?;
        Ok(text)
    }

    /// The ready banner.
    pub fn banner(&self) -> String {
        let c = &self.config;
        let store = if c.sled() {
            format!(
                "sled store in {}; root key shards held by {KEEPERS} Keepers",
                c.dir.join("data").display()
            )
        } else {
            "memory store: everything is lost when Nexus stops".to_owned()
        };
        let mut ids = vec![
            (PILOT_ENTRY.to_owned(), Role::PilotSuperuser.spiffe_id(&c.trust_domain)),
            (
                Role::PilotRecover.short_name().to_owned(),
                Role::PilotRecover.spiffe_id(&c.trust_domain),
            ),
            (
                Role::PilotRestore.short_name().to_owned(),
                Role::PilotRestore.spiffe_id(&c.trust_domain),
            ),
            (
                Role::LiteWorkload.short_name().to_owned(),
                Role::LiteWorkload.spiffe_id(&c.trust_domain),
            ),
        ];
        ids.extend(c.workloads.iter().cloned());
        let id_lines: String = ids
            .iter()
            .map(|(name, id)| format!("  {:<20} {id}\n", format!("{name}.sock")))
            .collect();
        let recover = if c.sled() {
            "Kill -9 the Nexus (its pid is in the log) to watch it recover its key from the \
             Keepers.\n"
        } else {
            ""
        };
        format!(
            "\nspike dev is ready: Nexus at {url} ({store}), JWT-SVID callers at {jwt_url}.\n\n\
             In another shell:\n\
             \x20 source {env}\n\
             \x20 spike secret put tenants/demo/db username=u password=p\n\
             \x20 spike secret get tenants/demo/db --format json\n\n\
             Identities (SPIFFE_ENDPOINT_SOCKET=unix://{agent}/NAME.sock):\n{id_lines}\
             {recover}Ctrl-C stops everything; `spike dev --dir {dir}` again brings the same \
             system back.\n",
            url = self.nexus_url,
            jwt_url = self.jwt_url,
            env = shell_quote(&c.env_file().display().to_string()),
            agent = c.agent_dir().display(),
            dir = shell_quote(&c.dir.display().to_string()),
        )
    }

    /// Runs until a signal in `signals` (then stops everything and returns `Ok`), or until a
    /// child cannot be kept running (then stops everything and returns the error).
    pub async fn run(mut self, signals: &mut Signals) -> Result<(), CliError> {
        let outcome = tokio::select! {
            () = signals.recv() => Ok(()),
            Some(ChildEvent::GaveUp { name, reason }) = self.events.recv() => {
                Err(CliError::Dev(format!("{name} cannot be kept running: {reason}")))
            }
        };
        say("[spike dev] stopping");
        self.shutdown().await;
        say("[spike dev] stopped");
        outcome
    }

    /// Stops Nexus, then the Keepers, then the agent.
    pub async fn shutdown(&mut self) {
        if let Some(nexus) = self.nexus.take() {
            nexus.stop().await;
        }
        let keepers = std::mem::take(&mut self.keepers);
        futures::future::join_all(keepers.into_iter().map(Supervised::stop)).await;
        if let Some(agent) = self.agent.take() {
            agent.stop().await;
        }
    }
}

/// The signals that stop `spike dev`: Ctrl-C (SIGINT), SIGTERM and SIGHUP. Installed before
/// the first child starts, so no signal can end `spike dev` without stopping its children.
#[derive(Debug)]
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> Result<Self, CliError> {
        let sig = |kind| {
            signal(kind).map_err(|e| CliError::Dev(format!("cannot install a signal handler: {e}")))
        };
        Ok(Self {
            int: sig(SignalKind::interrupt())?,
            term: sig(SignalKind::terminate())?,
            hup: sig(SignalKind::hangup())?,
        })
    }

    /// Waits for any of them.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
        }
    }
}

fn start(
    spec: ChildSpec,
    events: &mpsc::UnboundedSender<ChildEvent>,
) -> Result<Supervised, CliError> {
    let program = spec.program.display().to_string();
    Supervised::start(spec, events.clone()).map_err(|source| CliError::Spawn { program, source })
}

/// Runs a one-shot child to completion; non-zero exit is an error.
async fn run_once(spec: &ChildSpec, timeout: Duration) -> Result<(), CliError> {
    let program = spec.program.display().to_string();
    let mut child = spec.spawn().map_err(|source| CliError::Spawn { program, source })?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => {
            say(&format!("[spike dev] {} finished", spec.name));
            Ok(())
        }
        Ok(Ok(status)) => Err(CliError::Dev(format!(
            "{} {}; see its log above",
            spec.name,
            child::describe(status)
        ))),
        Ok(Err(e)) => Err(CliError::Dev(format!("cannot wait for {}: {e}", spec.name))),
        Err(_) => {
            child::terminate(&spec.name, &mut child).await;
            Err(CliError::Dev(format!("{} did not finish within {timeout:?}", spec.name)))
        }
    }
}

/// Waits until every named socket in `dir` accepts connections.
async fn wait_for_sockets(dir: &Path, names: &[String]) -> Result<(), CliError> {
    let deadline = Instant::now() + AGENT_TIMEOUT;
    loop {
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| {
                std::os::unix::net::UnixStream::connect(dir.join(format!("{n}.sock"))).is_err()
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CliError::Dev(format!(
                "the agent did not open {} in {} within {AGENT_TIMEOUT:?}; see its log above",
                missing.iter().map(|n| format!("{n}.sock")).collect::<Vec<_>>().join(", "),
                dir.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_port() -> Result<u16, CliError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| CliError::Dev(format!("cannot find a free port on 127.0.0.1: {e}")))
}

fn create_private_dir(dir: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| CliError::io("create directory", dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| CliError::io("restrict permissions of", dir, e))
}

/// Quotes `s` for a POSIX shell when it holds anything but plain characters.
pub fn shell_quote(s: &str) -> String {
    let plain =
        !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:+,=@%".contains(c));
    if plain { s.to_owned() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_leaves_plain_paths_and_quotes_the_rest() {
        assert_eq!(shell_quote("/tmp/a.b/c-d"), "/tmp/a.b/c-d");
        assert_eq!(shell_quote("unix:///x/y.sock"), "unix:///x/y.sock");
        assert_eq!(shell_quote("/my dir/it's"), r"'/my dir/it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
