//! The real `spike` binary against a real system started by `spike dev` (itself a child
//! process running `spike-dev-agent`, three `spike-keeper`s, `spike-bootstrap` and
//! `spike-nexus`, all on 127.0.0.1). These pin the CLI's output and exit codes (0 ok, 1 local
//! error, 2 Nexus said no), the README's acceptance flow, and the SDK examples.
//!
//! The sibling binaries and the SDK examples are built once per run with the same cargo and
//! target directory (fast when fresh), unless `SPIKE_DEV_BIN_DIR` points at prebuilt ones.
//! With prebuilt binaries the whole file runs in about 12 s on 2 cores.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

const SPIKE: &str = env!("CARGO_BIN_EXE_spike");
const DEMO_ID: &str = "spiffe://spike.ist/demo";

fn bin_dir() -> PathBuf {
    Path::new(SPIKE).parent().unwrap().to_path_buf()
}

/// Where `spike dev` finds its children and where the SDK examples are: `SPIKE_DEV_BIN_DIR`
/// (prebuilt; nothing is built), else next to `spike`.
fn sibling_dir() -> PathBuf {
    std::env::var_os("SPIKE_DEV_BIN_DIR").map(PathBuf::from).unwrap_or_else(bin_dir)
}

/// Builds what `spike dev` runs and the SDK examples, once (unless `SPIKE_DEV_BIN_DIR` points
/// at prebuilt ones).
fn build_siblings() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if std::env::var_os("SPIKE_DEV_BIN_DIR").is_some() {
            return;
        }
        for packages in [
            &[
                "-p",
                "spike-nexus",
                "-p",
                "spike-keeper",
                "-p",
                "spike-bootstrap",
                "-p",
                "spike-dev-agent",
            ][..],
            &["-p", "spike-client", "--examples"],
        ] {
            spike_e2e::build_in_current_target(packages).unwrap();
        }
    });
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn alive(pid: i32) -> bool {
    // Signal 0 only checks that the process exists (a zombie counts until reaped by its
    // parent, which `spike dev` does before it exits).
    Pid::from_raw(pid).is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

/// What a finished command left behind.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    raw: Vec<u8>,
    stderr: String,
}

/// Runs `cmd` to completion within `timeout`, feeding `stdin`.
fn run(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Run {
    let mut child = cmd
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).unwrap();
    }
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let raw = out_t.join().unwrap();
    Run {
        code,
        stdout: String::from_utf8_lossy(&raw).into_owned(),
        raw,
        stderr: err_t.join().unwrap(),
    }
}

/// A `spike dev` child process.
struct Dev {
    child: Child,
    dir: PathBuf,
    home: PathBuf,
    url: Option<String>,
    stdout: mpsc::Receiver<String>,
    log: Arc<Mutex<String>>,
}

impl Dev {
    /// Starts `spike dev --dir DIR ARGS...` without waiting.
    fn spawn(dir: &Path, args: &[&str]) -> Dev {
        build_siblings();
        let home = dir.parent().unwrap().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut child = Command::new(SPIKE)
            .arg("dev")
            .arg("--dir")
            .arg(dir)
            .args(args)
            .env("HOME", &home)
            .env_remove("SPIFFE_ENDPOINT_SOCKET")
            .env_remove("SPIKE_NEXUS_API_URL")
            .env_remove("SPIKE_TRUST_ROOT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn spike dev");
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let log = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Dev { child, dir: dir.to_path_buf(), home, url: None, stdout, log }
    }

    /// Starts `spike dev` and waits for its ready banner.
    fn start(dir: &Path, args: &[&str]) -> Dev {
        let mut dev = Dev::spawn(dir, args);
        dev.wait_ready();
        dev
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            match self.stdout.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.contains("spike dev is ready") => break,
                Ok(_) => {}
                Err(_) => {
                    if let Some(status) = self.child.try_wait().unwrap() {
                        panic!("spike dev exited ({status}) before ready:\n{}", self.log());
                    }
                    assert!(Instant::now() < deadline, "spike dev not ready:\n{}", self.log());
                }
            }
        }
        let env = std::fs::read_to_string(self.dir.join("env")).unwrap();
        let url = env
            .lines()
            .find_map(|l| l.strip_prefix("export SPIKE_NEXUS_API_URL="))
            .expect("the env file sets SPIKE_NEXUS_API_URL");
        self.url = Some(url.to_owned());
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle` (bounded).
    fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            assert!(Instant::now() < deadline, "no {needle:?} in the log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn endpoint(&self, entry: &str) -> String {
        format!("unix://{}/agent/{entry}.sock", self.dir.display())
    }

    /// A `spike` command with the identity of agent entry `entry`.
    fn command_as(&self, entry: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(SPIKE);
        cmd.args(args)
            .env("HOME", &self.home)
            .env("SPIFFE_ENDPOINT_SOCKET", self.endpoint(entry))
            .env("SPIKE_NEXUS_API_URL", self.url.as_deref().expect("ready"))
            .env_remove("SPIKE_TRUST_ROOT")
            .env_remove("SPIKE_PILOT_RECOVERY_DIR");
        cmd
    }

    fn spike_as(&self, entry: &str, args: &[&str], stdin: Option<&[u8]>) -> Run {
        run(self.command_as(entry, args), stdin, Duration::from_secs(60))
    }

    /// As the Pilot superuser (what `DIR/env` selects).
    fn spike(&self, args: &[&str]) -> Run {
        self.spike_as("pilot", args, None)
    }

    fn spike_in(&self, args: &[&str], stdin: &[u8]) -> Run {
        self.spike_as("pilot", args, Some(stdin))
    }

    /// PIDs of every child `spike dev` announced.
    fn child_pids(&self) -> Vec<i32> {
        self.log()
            .lines()
            .filter(|l| l.starts_with("[spike dev]") && l.contains("(pid "))
            .filter_map(|l| l.rsplit("(pid ").next()?.trim_end_matches(')').parse().ok())
            .collect()
    }

    fn nexus_pid(&self) -> i32 {
        self.log()
            .lines()
            .filter(|l| l.starts_with("[spike dev] nexus ") && l.contains("(pid "))
            .rev()
            .find_map(|l| l.rsplit("(pid ").next()?.trim_end_matches(')').parse().ok())
            .expect("nexus pid in the log")
    }

    /// Ctrl-C, then waits (bounded); returns the exit code.
    fn interrupt(mut self) -> i32 {
        let pid = Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, Signal::INT).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "spike dev did not stop:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // Graceful first, so the children are stopped too.
        if let Some(pid) = Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The README's flow on the default (sled) backend: bring-up, put/get, a denied workload,
/// a policy grant, `spike exec`, the SDK examples, `kill -9` of Nexus, Ctrl-C, and two
/// restarts on the same directory (automatic restore, then a manual `operator restore`).
#[test]
fn readme_flow_survives_kill_9_restarts_and_a_lost_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".spike-dev");
    let port = free_port().to_string();
    let started = Instant::now();
    let dev = Dev::start(&dir, &["--port", &port, "--workload", &format!("demo={DEMO_ID}")]);
    eprintln!("spike dev (sled) ready in {:?}", started.elapsed());

    // The second shell, as the README says it.
    let mut shell = Command::new("bash");
    shell
        .arg("-c")
        .arg(format!(
            "source {}/env && spike secret put tenants/demo/db username=u password=p && \
             spike secret get tenants/demo/db --format json",
            dir.display()
        ))
        .current_dir(tmp.path())
        .env("HOME", &dev.home)
        .env_remove("SPIFFE_ENDPOINT_SOCKET")
        .env_remove("SPIKE_NEXUS_API_URL");
    let r = run(shell, None, Duration::from_secs(60));
    assert_eq!(r.code, 0, "{r:?}");
    let (ok, values) = r.stdout.split_once('\n').unwrap();
    assert_eq!(ok, "OK");
    assert_eq!(json(values), serde_json::json!({"username": "u", "password": "p"}));

    // A workload without a policy: exit 2, "permission denied", nothing on stdout.
    let r = dev.spike_as("demo", &["secret", "get", "tenants/demo/db"], None);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("permission denied") && r.stderr.contains(DEMO_ID), "{r:?}");
    assert_eq!(r.stdout, "");

    // "Not found" names what was not found (issue 18).
    let r = dev.spike(&["secret", "get", "tenants/none", "-v", "7"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("no version 7 of \"tenants/none\""), "{r:?}");

    // Granting read on tenants/demo/.* lets it read, and only read.
    let r = dev.spike(&[
        "policy",
        "create",
        "--name",
        "demo-read",
        "--spiffe-id-pattern",
        r"^spiffe://spike\.ist/demo$",
        "--path-pattern",
        "tenants/demo/.*",
        "--permissions",
        "read",
    ]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "Policy 'demo-read' created.\n"), "{r:?}");
    let r = dev.spike_as("demo", &["secret", "get", "tenants/demo/db"], None);
    assert_eq!((r.code, r.stdout.as_str()), (0, "password: p\nusername: u\n"), "{r:?}");
    let r = dev.spike_as("demo", &["secret", "put", "tenants/demo/db", "k=v"], None);
    assert_eq!(r.code, 2, "{r:?}");

    // The same workload with a JWT-SVID on the JWT listener `spike dev` runs (issue 17): the
    // same policy applies; a SPIKE role's token is refused there (roles are mTLS-only).
    let env_file = std::fs::read_to_string(dir.join("env")).unwrap();
    let jwt_url = env_file
        .lines()
        .find_map(|l| l.strip_prefix("export SPIKE_NEXUS_JWT_API_URL="))
        .expect("spike dev writes the JWT listener's URL")
        .trim_matches('\'')
        .to_owned();
    let jwt = |entry: &str, args: &[&str]| {
        let mut cmd = dev.command_as(entry, &[&["--jwt-audience", "spike-nexus"], args].concat());
        cmd.env("SPIKE_NEXUS_JWT_API_URL", &jwt_url);
        run(cmd, None, Duration::from_secs(60))
    };
    let r = jwt("demo", &["secret", "get", "tenants/demo/db", "--field", "password"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "p\n"), "{r:?}");
    let r = jwt("demo", &["secret", "put", "tenants/demo/db", "k=v"]);
    assert_eq!(r.code, 2, "{r:?}");
    let r = jwt("pilot", &["secret", "list"]);
    assert_eq!(r.code, 2, "a Pilot role over JWT: {r:?}");

    // spike exec hands the values to a child and returns its exit code.
    let r = dev.spike(&[
        "exec",
        "--secret",
        "tenants/demo/db",
        "--",
        "sh",
        "-c",
        "printf '%s/%s' \"$USERNAME\" \"$PASSWORD\"; exit 3",
    ]);
    assert_eq!((r.code, r.stdout.as_str()), (3, "u/p"), "{r:?}");

    // A second `spike dev` on a directory in use refuses before starting anything.
    let mut again = Command::new(SPIKE);
    again.args(["dev", "--port", "0", "--dir"]).arg(&dir).env("HOME", &dev.home);
    let r = run(again, None, Duration::from_secs(30));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("another `spike dev` is running"), "{r:?}");

    // The SDK examples, as an application would run them.
    for example in ["put_get", "cached_refresh", "cipher", "policy_admin"] {
        let mut cmd = Command::new(sibling_dir().join("examples").join(example));
        cmd.env("SPIFFE_ENDPOINT_SOCKET", dev.endpoint("pilot"))
            .env("SPIKE_NEXUS_API_URL", dev.url.as_deref().unwrap())
            .env_remove("SPIKE_TRUST_ROOT");
        let r = run(cmd, None, Duration::from_secs(60));
        assert_eq!(r.code, 0, "example {example}: {r:?}");
        assert!(r.stdout.contains(&format!("{example}: ok")), "{example}: {r:?}");
    }

    // kill -9 Nexus: spike dev says so, restarts it, and it takes its key back from the Keepers.
    let old = dev.nexus_pid();
    rustix::process::kill_process(Pid::from_raw(old).unwrap(), Signal::KILL).unwrap();
    dev.wait_log("nexus was killed by signal 9; restarting", Duration::from_secs(15));
    dev.wait_log("nexus restarted (pid", Duration::from_secs(15));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = dev.spike(&["secret", "get", "tenants/demo/db", "--field", "password"]);
        if r.code == 0 {
            assert_eq!(r.stdout, "p\n");
            break;
        }
        assert!(Instant::now() < deadline, "Nexus did not recover: {r:?}\n{}", dev.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_ne!(dev.nexus_pid(), old);

    // The recover role saves shards in SPIKE's format, mode 0600.
    let shards = tmp.path().join("shards");
    let r = dev.spike_as(
        "pilot-recover",
        &["operator", "recover", "--dir", shards.to_str().unwrap()],
        None,
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Saved 3 recovery shards") && r.stdout.contains("WARNING"), "{r:?}");
    for n in 1..=3 {
        let file = shards.join(format!("spike.recovery.{n}.txt"));
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with(&format!("spike:{n}:")) && text.len() == 8 + 64, "{text:?}");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // With SPIKE_PILOT_RECOVERY_DIR=X and no --dir they go to X/recover, as SPIKE's Pilot.
    let base = tmp.path().join("recovery-base");
    let mut cmd = dev.command_as("pilot-recover", &["operator", "recover"]);
    cmd.env("SPIKE_PILOT_RECOVERY_DIR", &base);
    let r = run(cmd, None, Duration::from_secs(60));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(base.join("recover").join("spike.recovery.1.txt").is_file(), "{r:?}");
    assert!(!base.join("spike.recovery.1.txt").exists());
    // The superuser may not export shards.
    let r = dev.spike(&["operator", "recover", "--dir", shards.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{r:?}");

    // Ctrl-C stops everything.
    let pids = dev.child_pids();
    assert!(pids.len() >= 6, "{pids:?}");
    let log = dev.log.clone();
    assert_eq!(dev.interrupt(), 0, "{}", log.lock().unwrap());
    for pid in pids {
        assert!(!alive(pid), "child {pid} still runs after Ctrl-C");
    }

    // A second spike dev on the same directory restores the key and serves the same secrets.
    let dev = Dev::start(&dir, &["--port", &port]);
    let r = dev.spike(&["secret", "get", "tenants/demo/db", "password"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "p\n"), "{r:?}\n{}", dev.log());
    assert!(dev.log().contains("restoring it from"), "{}", dev.log());
    assert_eq!(dev.interrupt(), 0);

    // Without the saved shards nobody holds the key: spike dev says how to restore it, and
    // `spike operator restore` (restore role) does, one shard at a time.
    std::fs::rename(dir.join("recover"), tmp.path().join("moved-away")).unwrap();
    let mut dev = Dev::spawn(&dir, &["--port", &port]);
    dev.wait_log("operator restore", Duration::from_secs(120));
    dev.url = Some(format!("https://127.0.0.1:{port}"));
    let first = std::fs::read(shards.join("spike.recovery.1.txt")).unwrap();
    let r = dev.spike_as("pilot-restore", &["operator", "restore"], Some(&first));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Shards collected: 1") && r.stdout.contains("Shards remaining: 1"));
    let third = shards.join("spike.recovery.3.txt");
    let r = dev.spike_as(
        "pilot-restore",
        &["operator", "restore", "--file", third.to_str().unwrap()],
        None,
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, "SPIKE Nexus is restored and ready to use.\n"));
    dev.wait_ready();
    let r = dev.spike(&["secret", "get", "tenants/demo/db", "--field", "username"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "u\n"), "{r:?}");
    assert_eq!(dev.interrupt(), 0);
}

/// Output formats, stdin input, versions, exit codes and every command family, on a memory
/// backend (fast: no Keepers).
#[test]
fn commands_print_stable_output_and_exit_0_1_or_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = Dev::start(&tmp.path().join("dev"), &["--backend", "memory", "--port", "0"]);

    // put: KEY=- reads one value from stdin, `-` reads pairs (lines or JSON).
    let r = dev.spike_in(&["secret", "put", "app/db", "user=u", "pass=-"], b"s3cret\n");
    assert_eq!((r.code, r.stdout.as_str()), (0, "OK\n"), "{r:?}");
    let r = dev.spike_in(&["secret", "put", "app/db", "-"], b"user=u\npass=second\n");
    assert_eq!(r.code, 0, "{r:?}");
    let r = dev.spike_in(&["secret", "put", "app/cfg", "-"], br#"{"a": "1", "b": "two"}"#);
    assert_eq!(r.code, 0, "{r:?}");

    // get: whole secret, one field (flag or argument), a version, three formats.
    assert_eq!(dev.spike(&["secret", "get", "app/db", "--field", "pass"]).stdout, "second\n");
    assert_eq!(dev.spike(&["secret", "get", "app/db", "pass", "-v", "1"]).stdout, "s3cret\n");
    assert_eq!(
        json(&dev.spike(&["secret", "get", "app/db", "--format", "json"]).stdout),
        serde_json::json!({"user": "u", "pass": "second"})
    );
    assert_eq!(json(&dev.spike(&["secret", "get", "app/db", "pass", "-f", "j"]).stdout), "second");
    let yaml = dev.spike(&["secret", "get", "app/cfg", "-f", "yaml"]).stdout;
    assert_eq!(yaml, "a: '1'\nb: two\n");
    let r = dev.spike(&["secret", "get", "app/db", "--field", "nope"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no key \"nope\"") && r.stderr.contains("pass, user"), "{r:?}");
    assert!(!r.stderr.contains("second"), "values never in errors: {r:?}");

    // list, filtered by prefix; json.
    assert_eq!(dev.spike(&["secret", "list"]).stdout, "app/cfg\napp/db\n");
    assert_eq!(dev.spike(&["secret", "list", "app/d"]).stdout, "app/db\n");
    assert_eq!(
        json(&dev.spike(&["secret", "list", "-f", "json"]).stdout),
        serde_json::json!(["app/cfg", "app/db"])
    );

    // metadata, in our form and in SPIKE's `metadata get` form.
    let meta = json(&dev.spike(&["secret", "metadata", "app/db", "-f", "json"]).stdout);
    assert_eq!(meta["metadata"]["currentVersion"], 2);
    assert_eq!(meta["versions"]["1"]["version"], 1);
    let r = dev.spike(&["secret", "metadata", "get", "app/db"]);
    assert!(r.stdout.contains("Current Version : 2") && r.stdout.contains("Version 1:"), "{r:?}");

    // delete / undelete / destroy by version.
    assert_eq!(dev.spike(&["secret", "delete", "app/db", "-v", "2"]).stdout, "OK\n");
    let r = dev.spike(&["secret", "get", "app/db", "-v", "2"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not found"), "{r:?}");
    assert_eq!(dev.spike(&["secret", "undelete", "app/db", "--versions", "2"]).stdout, "OK\n");
    assert_eq!(dev.spike(&["secret", "get", "app/db", "pass"]).stdout, "second\n");
    let r = dev.spike_in(&["secret", "destroy", "app/db", "-v", "1"], b"n\n");
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("canceled"), "{r:?}");
    assert_eq!(dev.spike(&["secret", "destroy", "app/db", "-v", "1", "--yes"]).stdout, "OK\n");
    assert_eq!(dev.spike(&["secret", "get", "app/db", "-v", "1"]).code, 2);

    // Local mistakes exit 1 and say what to do.
    let r = dev.spike(&["secret", "get", "../x"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("secret path"), "{r:?}");
    let r = dev.spike(&["secret", "put", "app/x", "novalue-canary"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("KEY=VALUE") && !r.stderr.contains("canary"), "{r:?}");
    let mut cmd = dev.command_as("pilot", &["secret", "list"]);
    cmd.env_remove("SPIFFE_ENDPOINT_SOCKET");
    let r = run(cmd, None, Duration::from_secs(30));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("SPIFFE_ENDPOINT_SOCKET is not set") && r.stderr.contains("spike dev")
    );
    let closed = format!("https://127.0.0.1:{}", free_port());
    let r = dev.spike(&["--nexus-url", &closed, "--timeout", "5s", "secret", "list"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("cannot reach SPIKE Nexus"), "{r:?}");

    // Policies: apply a SPIKE YAML file, read it back, refuse a duplicate create, delete.
    let file = tmp.path().join("policy.yaml");
    std::fs::write(
        &file,
        "name: ops\nspiffeidPattern: ^spiffe://spike\\.ist/ops/.*$\npathPattern: ^app/.*$\n\
         permissions:\n  - read\n  - list\n",
    )
    .unwrap();
    let r = dev.spike(&["policy", "apply", "--file", file.to_str().unwrap()]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "Policy 'ops' applied.\n"), "{r:?}");
    let p = json(&dev.spike(&["policy", "get", "ops", "--format", "json"]).stdout);
    assert_eq!(p["name"], "ops");
    assert_eq!(p["spiffiedPattern"], r"^spiffe://spike\.ist/ops/.*$");
    assert_eq!(p["pathPattern"], "^app/.*$");
    let r = dev.spike(&["policy", "get", "--name", "ops"]);
    assert!(r.stdout.contains("Path Pattern: ^app/.*$"), "{r:?}");
    assert_eq!(dev.spike(&["policy", "list"]).stdout, "ops\n");
    let list = json(&dev.spike(&["policy", "list", "-f", "json"]).stdout);
    assert_eq!(list[0]["name"], "ops");
    let r = dev.spike(&[
        "policy",
        "create",
        "--name",
        "ops",
        "--spiffeid-pattern",
        "x",
        "--path-pattern",
        "y",
        "--permissions",
        "read",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("already exists") && r.stderr.contains("apply"), "{r:?}");
    let r = dev.spike(&["policy", "create", "--name", "z"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("missing --spiffe-id-pattern, --path-pattern, --permissions"));
    let r = dev.spike_in(&["policy", "delete", "ops"], b"y\n");
    assert_eq!((r.code, r.stdout.as_str()), (0, "Policy 'ops' deleted.\n"), "{r:?}");
    let r = dev.spike(&["policy", "list"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""));
    assert!(r.stderr.contains("No policies found."));
    assert_eq!(dev.spike(&["policy", "get", "ops"]).code, 2);

    // Cipher: files (output 0600), pipes, and SPIKE's JSON mode.
    let plain = tmp.path().join("plain.bin");
    let sealed = tmp.path().join("sealed.bin");
    std::fs::write(&plain, b"\x00binary\xffdata").unwrap();
    let r = dev.spike(&[
        "cipher",
        "encrypt",
        "-f",
        plain.to_str().unwrap(),
        "-o",
        sealed.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(std::fs::metadata(&sealed).unwrap().permissions().mode() & 0o777, 0o600);
    let back = run(
        dev.command_as("pilot", &["cipher", "decrypt", "-f", sealed.to_str().unwrap()]),
        None,
        Duration::from_secs(30),
    );
    assert_eq!(back.code, 0);
    assert_eq!(back.raw, b"\x00binary\xffdata");
    let r = dev.spike_in(&["cipher", "decrypt"], &std::fs::read(&sealed).unwrap());
    assert_eq!(r.code, 0);
    let r = dev.spike(&["cipher", "encrypt", "--plaintext", "aGVsbG8="]);
    let j = json(&r.stdout);
    assert_eq!(j["version"], 1);
    let decrypt_json = || {
        dev.spike(&[
            "cipher",
            "decrypt",
            "--version",
            "1",
            "--nonce",
            j["nonce"].as_str().unwrap(),
            "--ciphertext",
            j["ciphertext"].as_str().unwrap(),
        ])
    };
    let r = decrypt_json();
    assert_eq!((r.code, r.stdout.as_str()), (0, "hello"), "{r:?}");
    let r = dev.spike(&["cipher", "decrypt", "--nonce", "AAAA"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("--version"), "{r:?}");

    // Operator: rotate (superuser); recover needs a persistent store; bad shards are local.
    let r = dev.spike(&["operator", "rotate"]);
    assert!(
        r.code == 0 && r.stdout.starts_with("Rotated: new writes use data-key term 2"),
        "{r:?}"
    );
    // The root key too; what the old one protected still opens.
    let r = dev.spike(&["operator", "rotate", "--root-key"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("Root key rotated: no Keepers take part."), "{r:?}");
    assert!(r.stdout.contains("run `spike operator recover`"), "{r:?}");
    let r = decrypt_json();
    assert_eq!((r.code, r.stdout.as_str()), (0, "hello"), "after the root-key rotation: {r:?}");
    let r =
        dev.spike_as("pilot-recover", &["operator", "recover", "--dir", "/nonexistent/x"], None);
    assert_eq!(r.code, 2, "memory stores have no shards to export: {r:?}");
    let r = dev.spike_as("pilot-restore", &["operator", "restore"], Some(b"spike:1:zz"));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("recovery shard") && !r.stderr.contains("zz"), "{r:?}");

    // exec: prefix and case, a missing program, an exit code.
    dev.spike(&["secret", "put", "app/w", "v=1", "api-key=k"]);
    let r = dev.spike(&[
        "exec",
        "--secret",
        "app/w",
        "--prefix",
        "S_",
        "--keep-case",
        "--",
        "sh",
        "-c",
        "printf '%s %s' \"$S_v\" \"$S_api_key\"",
    ]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "1 k"), "{r:?}");
    let r = dev.spike(&["exec", "--secret", "app/w", "--", "/nonexistent/program"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("cannot run /nonexistent/program"), "{r:?}");
    let r = dev.spike(&["exec", "--secret", "app/none", "--", "true"]);
    assert_eq!(r.code, 2, "{r:?}");

    // exec --watch: restarted when the secret changes; SIGTERM is forwarded; 128+15 back.
    let mut child = dev
        .command_as(
            "pilot",
            &[
                "exec",
                "--watch",
                "--interval",
                "200ms",
                "--grace",
                "5s",
                "--secret",
                "app/w",
                "--",
                "sh",
                "-c",
                "echo \"v=$V\"; exec sleep 30",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    assert_eq!(lines.recv_timeout(Duration::from_secs(20)).unwrap(), "v=1");
    dev.spike(&["secret", "put", "app/w", "v=2", "api-key=k"]);
    assert_eq!(lines.recv_timeout(Duration::from_secs(20)).unwrap(), "v=2");
    rustix::process::kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::TERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "spike exec --watch did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(128 + 15));

    // Completions.
    let r = dev.spike(&["completions", "bash"]);
    assert!(r.code == 0 && r.stdout.contains("_spike()"), "{r:?}");
    assert_eq!(dev.interrupt(), 0);
}

/// `spike dev` refuses clearly when it cannot run, before starting anything.
#[test]
fn spike_dev_explains_missing_binaries_and_bad_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(SPIKE);
    cmd.args(["dev", "--dir"]).arg(tmp.path().join("d")).env("SPIKE_DEV_BIN_DIR", tmp.path());
    let r = run(cmd, None, Duration::from_secs(30));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("spike-dev-agent is not next to") && r.stderr.contains("cargo build")
    );
    let mut cmd = Command::new(SPIKE);
    cmd.args(["dev", "--workload", "demo=spiffe://other.org/x", "--dir"]).arg(tmp.path());
    let r = run(cmd, None, Duration::from_secs(30));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("trust domain spike.ist"), "{r:?}");

    // A child that keeps dying is announced, restarted with backoff, then given up on.
    build_siblings();
    let fake = tmp.path().join("bin");
    std::fs::create_dir_all(&fake).unwrap();
    std::os::unix::fs::symlink(sibling_dir().join("spike-dev-agent"), fake.join("spike-dev-agent"))
        .unwrap();
    std::fs::write(fake.join("spike-nexus"), "#!/bin/sh\necho boom >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(fake.join("spike-nexus"), std::fs::Permissions::from_mode(0o755))
        .unwrap();
    let mut cmd = Command::new(SPIKE);
    cmd.args(["dev", "--backend", "memory", "--port", "0", "--dir"])
        .arg(tmp.path().join("failing"))
        .env("SPIKE_DEV_BIN_DIR", &fake);
    let r = run(cmd, None, Duration::from_secs(120));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("[nexus] boom"), "{}", r.stderr);
    assert!(r.stderr.contains("nexus exited with code 1; restarting it in"), "{}", r.stderr);
    assert!(r.stderr.contains("nexus cannot be kept running"), "{}", r.stderr);
    assert!(r.stderr.contains("[spike dev] agent started"), "{}", r.stderr);
    assert!(!tmp.path().join("failing/agent/agent.sock").exists(), "the agent was stopped");

    let r = run(
        {
            let mut c = Command::new(SPIKE);
            c.arg("--help");
            c
        },
        None,
        Duration::from_secs(30),
    );
    for word in ["secret", "policy", "cipher", "operator", "dev", "exec", "completions"] {
        assert!(r.stdout.contains(word), "--help lacks {word}: {}", r.stdout);
    }
}

/// Usage errors are local errors (exit 1), as in the vault/bao CLIs; 2 is kept for "Nexus said
/// no" (issue 18). Help and version exit 0.
#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    for args in [
        &["--format", "xml", "secret", "list"][..],
        &["secret", "get"],
        &["no-such-command"],
        &["secret", "list", "--no-such-flag"],
        &["policy"],
    ] {
        let mut cmd = Command::new(SPIKE);
        cmd.args(args).env_remove("SPIFFE_ENDPOINT_SOCKET");
        let r = run(cmd, None, Duration::from_secs(30));
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        assert!(!r.stderr.is_empty(), "{args:?} says what is wrong");
    }
    // A bad policy pattern is named before anything is sent (no Nexus is needed to see it).
    let mut cmd = Command::new(SPIKE);
    cmd.args(["policy", "create", "--name", "bad", "--spiffe-id-pattern", "(", "--path-pattern"])
        .args(["^a/.*$", "--permissions", "read"])
        .env_remove("SPIFFE_ENDPOINT_SOCKET");
    let r = run(cmd, None, Duration::from_secs(30));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("spiffeidPattern") && r.stderr.contains("\"(\""), "{r:?}");
    // `spike dev --help` lists only what applies to it; the other commands' connection flags
    // are refused there with a message.
    let mut cmd = Command::new(SPIKE);
    cmd.args(["dev", "--help"]);
    let r = run(cmd, None, Duration::from_secs(30));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("--workload") && !r.stdout.contains("--nexus-url"), "{r:?}");
    assert!(!r.stdout.contains("--socket") && !r.stdout.contains("--jwt-audience"), "{r:?}");
    let mut cmd = Command::new(SPIKE);
    cmd.args(["dev", "--socket", "unix:///x", "--dir"]).arg(std::env::temp_dir().join("unused"));
    let r = run(cmd, None, Duration::from_secs(30));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("spike dev does not take --socket"), "{r:?}");
    for args in [&["--help"][..], &["secret", "--help"], &["--version"]] {
        let mut cmd = Command::new(SPIKE);
        cmd.args(args);
        let r = run(cmd, None, Duration::from_secs(30));
        assert_eq!(r.code, 0, "{args:?}: {r:?}");
        assert!(!r.stdout.is_empty());
    }
}

/// A Workload API socket that is gone (every time `spike dev` was stopped) or refuses
/// connections fails at once with what to do, instead of waiting for an SVID (issue 18).
#[test]
fn a_missing_or_dead_agent_socket_fails_at_once_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("gone.sock");
    let dead = tmp.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    for (socket, says) in [(&missing, "does not exist"), (&dead, "refuses connections")] {
        let mut cmd = Command::new(SPIKE);
        cmd.args(["secret", "list"])
            .env("SPIFFE_ENDPOINT_SOCKET", format!("unix://{}", socket.display()))
            .env("SPIKE_NEXUS_API_URL", "https://127.0.0.1:1");
        let r = run(cmd, None, Duration::from_secs(30));
        assert_eq!(r.code, 1, "{r:?}");
        assert!(r.stderr.contains(says) && r.stderr.contains("spike dev"), "{r:?}");
    }
}
