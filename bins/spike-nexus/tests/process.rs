//! The real `spike-nexus` process: configuration errors, secrets never reaching its logs, and
//! durability under `kill -9` with the sled backend. Identities come from a real dev agent.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use spike_client::identity::IdentitySource;
use spike_client::{Error, RetryPolicy, Spike};
use spike_core::secret::{KeeperShare, SecretValues};
use spike_core::shamir;
use spike_server::dev::agent::{DevAgent, DevAgentHandle};
use tokio::sync::Mutex;

const CANARY: &str = "canary-2b7e151628aed2a6";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct NexusProcess {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for NexusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_nexus(
    agent: &DevAgentHandle,
    data: &Path,
    backend: &str,
    port: u16,
    n: u32,
) -> NexusProcess {
    std::fs::create_dir_all(data).unwrap();
    let log = data.join(format!("nexus-{n}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_spike-nexus"))
        .env("SPIFFE_ENDPOINT_SOCKET", agent.endpoint("nexus").unwrap())
        .env("SPIKE_NEXUS_BACKEND_STORE", backend)
        .env("SPIKE_NEXUS_DATA_DIR", data)
        .env("SPIKE_NEXUS_TLS_PORT", format!("127.0.0.1:{port}"))
        .env("SPIKE_SYSTEM_LOG_LEVEL", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    NexusProcess { child, url: format!("https://127.0.0.1:{port}"), log }
}

async fn agent(dir: &Path) -> DevAgentHandle {
    DevAgent::builder().socket_dir(dir.join("sockets")).build().unwrap().serve().await.unwrap()
}

async fn client(agent: &DevAgentHandle, name: &str, url: &str) -> Spike {
    let source =
        IdentitySource::workload_api(&agent.endpoint(name).unwrap(), Duration::from_secs(10))
            .await
            .unwrap();
    Spike::builder()
        .identity(source)
        .url(url)
        .retry(RetryPolicy { attempts: 1, ..RetryPolicy::default() })
        .timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap()
}

/// Polls until Nexus answers (any HTTP answer, e.g. 503 while sealed), bounded.
async fn wait_listening(c: &Spike) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.list_secrets().await {
            Err(Error::NexusUnreachable { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(Error::NexusUnreachable { reason, .. }) => panic!("Nexus never came up: {reason}"),
            _ => return,
        }
    }
}

async fn restore(restorer: &Spike, shares: &[KeeperShare]) {
    for share in shares {
        let status = restorer.restore(share).await.unwrap();
        if status.restored {
            return;
        }
    }
    panic!("restore did not complete");
}

#[test]
fn invalid_configuration_is_refused_with_the_setting_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_spike-nexus"))
        .env("SPIKE_NEXUS_BACKEND_STORE", "sqlite")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SPIKE_NEXUS_BACKEND_STORE") && err.contains("sled"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_spike-nexus"))
        .env_remove("SPIFFE_ENDPOINT_SOCKET")
        .env("SPIKE_NEXUS_BACKEND_STORE", "memory")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SPIFFE_ENDPOINT_SOCKET"), "{err}");
}

#[test]
fn audit_verify_walks_rotated_files_and_names_the_file_and_line_of_a_break() {
    use spike_server::audit::{AuditEvent, AuditLimits, AuditLog, AuthForm, Decision};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let limits = AuditLimits { max_file_bytes: 1000, ..AuditLimits::default() };
    let log = AuditLog::open_file_with(&path, &limits).unwrap();
    for i in 0..12 {
        let path = format!("app/{i}");
        log.record(&AuditEvent {
            caller: "spiffe://spike.ist/spike/pilot/role/superuser",
            auth: AuthForm::X509Svid,
            route: "/v1/store/secrets",
            action: "get",
            path: Some(&path),
            decision: Decision::Allow,
            status: 200,
            code: None,
            duration: Duration::from_micros(5),
        })
        .unwrap();
    }
    drop(log);
    let files = spike_server::audit::log_files(&path).unwrap();
    assert!(files.len() >= 3, "{files:?}");
    let verify = || {
        Command::new(env!("CARGO_BIN_EXE_spike-nexus"))
            .arg("audit")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap()
    };
    let out = verify();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let expected = format!(
        "ok: 12 lines in {} files, first seq 1 (the chain starts at genesis), chain head ",
        files.len()
    );
    assert!(stdout.starts_with(&expected), "{stdout}");

    // An edited first line of the second-oldest file: its second line no longer links.
    let victim = &files[1];
    let text = std::fs::read_to_string(victim).unwrap();
    std::fs::write(victim, text.replacen("app/", "app-", 1)).unwrap();
    let out = verify();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let expected = format!("spike-nexus: audit chain broken at {} line 2: ", victim.display());
    assert!(stderr.starts_with(&expected), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_values_never_reach_logs_audit_or_error_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(dir.path()).await;
    let nexus = spawn_nexus(&agent, dir.path(), "memory", free_port(), 0);
    let pilot = client(&agent, "pilot-superuser", &nexus.url).await;
    wait_listening(&pilot).await;

    let values: SecretValues = [("password", CANARY)].into_iter().collect();
    pilot.put_secret("app/db", values).await.unwrap();
    assert_eq!(pilot.get_secret("app/db").await.unwrap().get("password"), Some(CANARY));
    let sealed = pilot.encrypt(CANARY.as_bytes()).await.unwrap();
    assert_eq!(&pilot.decrypt(&sealed).await.unwrap()[..], CANARY.as_bytes());
    // Rejected requests that carry the canary: their errors must not echo it.
    let bad: SecretValues = [("k", CANARY)].into_iter().collect();
    let err = pilot.put_secret_cas("app/db", bad, 7).await.unwrap_err();
    assert!(!err.to_string().contains(CANARY));
    let other = client(&agent, "lite-workload", &nexus.url).await;
    let denied = other.get_secret("app/db").await.unwrap_err();
    assert!(matches!(denied, Error::Forbidden));

    let log = std::fs::read_to_string(&nexus.log).unwrap();
    assert!(log.contains("spike-nexus listening"), "the log is being written: {log}");
    assert!(!log.contains(CANARY), "canary leaked into the Nexus log");
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(audit.lines().count() >= 6);
    assert!(!audit.contains(CANARY), "canary leaked into the audit log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_kill_9_during_concurrent_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let agent = agent(dir.path()).await;
    let port = free_port();
    let root = shamir::generate_root_key().unwrap();
    let shares = shamir::split(&root, 2, 3).unwrap();
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::default();

    for round in 0..3u32 {
        let mut nexus = spawn_nexus(&agent, &data, "sled", port, round);
        let pilot = client(&agent, "pilot-superuser", &nexus.url).await;
        let restorer = client(&agent, "pilot-restore", &nexus.url).await;
        wait_listening(&pilot).await;
        assert!(matches!(pilot.get_secret("x").await, Err(Error::NotReady)));
        restore(&restorer, &shares).await;

        // Everything acknowledged before any earlier kill is still there.
        for (path, value) in acknowledged.lock().await.iter() {
            let got = pilot.get_secret(path).await.unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(got.get("v"), Some(value.as_str()), "{path}");
        }

        // Concurrent writers; kill -9 lands while they are mid-flight.
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = vec![];
        for w in 0..4 {
            let pilot = pilot.clone();
            let stop = stop.clone();
            let acknowledged = acknowledged.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..10_000u32 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let path = format!("r{round}/w{w}/s{i}");
                    let value = format!("value-{round}-{w}-{i}");
                    let v: SecretValues = [("v", value.as_str())].into_iter().collect();
                    match pilot.put_secret(&path, v).await {
                        Ok(()) => acknowledged.lock().await.push((path, value)),
                        Err(_) => break,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(700 + 300 * u64::from(round))).await;
        nexus.child.kill().unwrap(); // SIGKILL
        let _ = nexus.child.wait();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
    }

    // Final restart: every acknowledged write, from every round, reads back.
    let nexus = spawn_nexus(&agent, &data, "sled", port, 99);
    let pilot = client(&agent, "pilot-superuser", &nexus.url).await;
    let restorer = client(&agent, "pilot-restore", &nexus.url).await;
    wait_listening(&pilot).await;
    restore(&restorer, &shares).await;
    let acknowledged = acknowledged.lock().await;
    eprintln!("acknowledged writes across 3 kill -9 rounds: {}", acknowledged.len());
    assert!(acknowledged.len() > 20, "writers made progress: {}", acknowledged.len());
    for (path, value) in acknowledged.iter() {
        let got = pilot.get_secret(path).await.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(got.get("v"), Some(value.as_str()), "{path}");
    }
}
