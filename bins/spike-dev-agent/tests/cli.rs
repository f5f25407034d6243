//! The `spike-dev-agent` binary as users run it: it prints where to connect, serves real
//! clients (the Rust `spiffe` crate and, when `SPIKE_TEST_PYTHON` names an interpreter with
//! py-spiffe installed, the Python one), and exits cleanly on SIGTERM, removing its sockets.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the agent if a test fails half-way, so no process outlives the test run.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(socket_dir: &Path, extra: &[&str]) -> (Agent, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spike-dev-agent"))
        .arg("--socket-dir")
        .arg(socket_dir)
        .args(extra)
        .env("SPIKE_SYSTEM_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn spike-dev-agent");
    let stdout = child.stdout.take().expect("piped stdout");
    let agent = Agent(child);
    // The banner ends with the `export` hint; bounded by line count (the reader blocks only
    // until the agent prints or dies).
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines().take(64) {
        let line = line.expect("agent stdout");
        let done = line.starts_with("e.g.: export SPIFFE_ENDPOINT_SOCKET=");
        lines.push(line);
        if done {
            break;
        }
    }
    (agent, lines)
}

fn uid_of(path: &Path) -> u32 {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(path).expect("temp dir"))
}

#[test]
fn agent_binary_serves_rust_and_python_clients_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let sockets = dir.path().join("s");
    let uid = uid_of(dir.path());
    let entry = format!("py=spiffe://spike.ist/interop/python,unix:uid:{uid}");
    let (mut agent, banner) = start(&sockets, &["--svid-ttl", "1m", "--entry", &entry]);
    let text = banner.join("\n");
    let nexus = format!("unix://{}", sockets.join("nexus.sock").display());
    assert!(text.contains("spiffe://spike.ist/spike/nexus") && text.contains(&nexus), "{text}");
    assert!(text.contains(&format!("export SPIFFE_ENDPOINT_SOCKET={nexus}")), "{text}");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = spiffe::WorkloadApiClient::connect_to(&nexus).await.unwrap();
        let svid = client.fetch_x509_svid().await.unwrap();
        assert_eq!(svid.spiffe_id().to_string(), "spiffe://spike.ist/spike/nexus");
    });
    // Dropping the runtime closes the client's connection; an idle client that stays
    // connected would hold the agent's graceful shutdown for its full grace period.
    drop(runtime);

    match std::env::var_os("SPIKE_TEST_PYTHON") {
        Some(python) => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/interop/python/fetch_svid.py");
            let shared = format!("unix://{}", sockets.join("agent.sock").display());
            for (socket, id) in [
                (nexus.as_str(), "spiffe://spike.ist/spike/nexus"),
                (shared.as_str(), "spiffe://spike.ist/interop/python"),
            ] {
                let out = Command::new(&python)
                    .arg(&script)
                    .args(["--socket", socket, "--expect-id", id, "--timeout", "10"])
                    .output()
                    .expect("run py-spiffe interop script");
                assert!(
                    out.status.success(),
                    "py-spiffe against {socket}: {}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        None => eprintln!("SPIKE_TEST_PYTHON unset: skipping the py-spiffe interop check"),
    }

    let pid = agent.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = agent.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "agent did not stop within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(!sockets.join("nexus.sock").exists(), "sockets are removed on shutdown");
}

#[test]
fn bad_flags_exit_non_zero_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spike-dev-agent"))
        .arg("--socket-dir")
        .arg(dir.path())
        .args(["--entry", "bad"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NAME=SPIFFE_ID"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_spike-dev-agent"))
        .args(["--svid-ttl", "forever"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--svid-ttl"));
}
