//! One supervised child process of `spike dev`: started in its own process group (so a
//! terminal's Ctrl-C reaches only `spike dev`, which then stops children in order), its
//! output prefixed line by line with its name, restarted with backoff when it dies, stopped
//! with SIGTERM then SIGKILL.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How long a child may take to stop after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// First wait before a restart; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait before a restart.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A run at least this long resets the backoff and the failure count.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// Quick deaths in a row after which `spike dev` gives up on a child.
pub const MAX_QUICK_RESTARTS: u32 = 5;

/// What to run.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// Short name, used as the log prefix (`nexus`, `keeper-1`, ...).
    pub name: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables added to (and overriding) ours.
    pub env: Vec<(String, String)>,
}

impl ChildSpec {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            // If `spike dev` itself fails hard, do not leave this child behind.
            .kill_on_drop(true);
        cmd
    }

    /// Starts the child with prefixed output.
    pub fn spawn(&self) -> std::io::Result<Child> {
        let mut child = self.command().spawn()?;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(prefix_lines(self.name.clone(), out));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(prefix_lines(self.name.clone(), err));
        }
        Ok(child)
    }
}

/// Copies `stream` to our standard error, each line prefixed with `[name]`.
async fn prefix_lines(name: String, stream: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        super::say(&format!("[{name}] {line}"));
    }
}

/// Something a supervised child reports to `spike dev`.
#[derive(Debug)]
pub enum ChildEvent {
    /// It gave up restarting the child.
    GaveUp {
        /// The child.
        name: String,
        /// Why.
        reason: String,
    },
}

/// A child under supervision.
#[derive(Debug)]
pub struct Supervised {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Supervised {
    /// Starts `spec` and keeps it running until [`Supervised::stop`]; a child that dies is
    /// announced and restarted. Fails only if the first start fails.
    pub fn start(
        spec: ChildSpec,
        events: mpsc::UnboundedSender<ChildEvent>,
    ) -> std::io::Result<Self> {
        let child = spec.spawn()?;
        announce(&spec.name, &child, false);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(spec, child, stop_rx, events));
        Ok(Self { stop, task })
    }

    /// Stops the child (SIGTERM, SIGKILL after [`STOP_GRACE`]) and waits for it.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

fn announce(name: &str, child: &Child, restarted: bool) {
    let pid = child.id().map_or_else(|| "?".to_owned(), |p| p.to_string());
    let verb = if restarted { "restarted" } else { "started" };
    super::say(&format!("[spike dev] {name} {verb} (pid {pid})"));
}

async fn supervise(
    spec: ChildSpec,
    mut child: Child,
    mut stop: watch::Receiver<bool>,
    events: mpsc::UnboundedSender<ChildEvent>,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut quick_deaths = 0u32;
    loop {
        let started = Instant::now();
        let status = tokio::select! {
            status = child.wait() => status,
            () = stopped(&mut stop) => {
                terminate(&spec.name, &mut child).await;
                return;
            }
        };
        let how = match &status {
            Ok(s) => describe(*s),
            Err(e) => format!("could not be waited for ({e})"),
        };
        if started.elapsed() >= HEALTHY_RUN {
            backoff = FIRST_BACKOFF;
            quick_deaths = 0;
        } else {
            quick_deaths += 1;
        }
        if quick_deaths >= MAX_QUICK_RESTARTS {
            let reason =
                format!("it died {quick_deaths} times in a row, last {how}; see its log above");
            super::say(&format!("[spike dev] {} {how}; giving up: {reason}", spec.name));
            let _ = events.send(ChildEvent::GaveUp { name: spec.name.clone(), reason });
            return;
        }
        super::say(&format!("[spike dev] {} {how}; restarting it in {backoff:?}", spec.name));
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        child = match spec.spawn() {
            Ok(c) => c,
            Err(e) => {
                let reason = format!("cannot start {}: {e}", spec.program.display());
                let _ = events.send(ChildEvent::GaveUp { name: spec.name.clone(), reason });
                return;
            }
        };
        announce(&spec.name, &child, true);
    }
}

/// Resolves once a stop was requested (or the requester is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// SIGTERM, then SIGKILL after [`STOP_GRACE`].
pub async fn terminate(name: &str, child: &mut Child) {
    if let Some(pid) = child.id().and_then(|id| Pid::from_raw(id as i32)) {
        let _ = rustix::process::kill_process(pid, Signal::TERM);
    }
    if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
        super::say(&format!("[spike dev] {name} did not stop within {STOP_GRACE:?}; killing it"));
        let _ = child.kill().await;
    }
}

/// "exited with code 1", "was killed by signal 9", ...
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => "stopped".to_owned(),
    }
}
