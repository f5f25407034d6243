//! The audit log stays bounded (issue 13), with the real `spike-nexus` binary: a caller with a
//! valid SVID and no policy floods Nexus with the longest URLs it accepts, and the audit log
//! grows by a few lines per interval instead of one 64 KB line per request; a small
//! `SPIKE_NEXUS_AUDIT_MAX_BYTES` rotates the log into several files that `spike-nexus audit
//! verify` accepts as one chain, across a `kill -9` and restart.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use spike_core::secret::SecretValues;
use spike_e2e::{Cluster, ClusterSpec};
use spike_server::audit::MAX_LINE_BYTES;

const READY_LIMIT: Duration = Duration::from_secs(20);
const STRANGER: &str = "spiffe://spike.ist/workload/stranger";
/// What Nexus answers to an over-long URL (not hyper's own refusals, which have no audit line).
const URI_TOO_LONG_BODY: &str = r#"{"err":"uri_too_long"}"#;
/// `SPIKE_NEXUS_AUDIT_REFUSAL_INTERVAL` in these tests.
const INTERVAL: Duration = Duration::from_secs(1);

/// Starts every Keeper and Nexus, bootstraps, and waits until Nexus is ready.
async fn bootstrapped(spec: ClusterSpec) -> Cluster {
    let mut c = Cluster::new(spec).await.unwrap();
    c.start_bootstrapped(READY_LIMIT).await.unwrap();
    c
}

/// The audit log and its rotated files, oldest first.
fn audit_files(c: &Cluster) -> Vec<PathBuf> {
    spike_server::audit::log_files(&c.nexus_data_dir().join("audit.log")).unwrap()
}

fn audit_bytes(c: &Cluster) -> u64 {
    audit_files(c).iter().map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum()
}

fn audit_text(c: &Cluster) -> String {
    audit_files(c).iter().map(|f| std::fs::read_to_string(f).unwrap_or_default()).collect()
}

/// `spike-nexus audit verify <path>`, the real binary; its standard output on success.
fn verify_with_binary(path: &Path) -> String {
    let bin = &spike_e2e::binaries().unwrap().nexus;
    let out = Command::new(bin).args(["audit", "verify"]).arg(path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "audit verify failed ({}): {stdout}{stderr}", out.status);
    assert!(stdout.starts_with("ok: "), "{stdout}");
    stdout
}

/// The number right after `"key":` in a JSON line (the audit lines are flat but for `counts`).
fn number_after(line: &str, key: &str) -> u64 {
    let pattern = format!("\"{key}\":");
    let Some(at) = line.find(&pattern) else {
        return 0;
    };
    line[at + pattern.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

/// Requests of `caller` that the audit log accounts for: one per ordinary line, and the counts
/// of each summary line.
fn accounted(text: &str, caller: &str) -> u64 {
    let needle = format!("\"caller\":\"{caller}\"");
    text.lines()
        .filter(|l| l.contains(&needle))
        .map(|l| {
            if l.contains("\"kind\":\"refusals_summary\"") {
                ["rate_limited", "invalid", "denied"].iter().map(|k| number_after(l, k)).sum()
            } else {
                1
            }
        })
        .sum()
}

/// An HTTP/1.1-only mTLS client as `identity` (HTTP/1.1 so the request line carries the whole
/// URL, as the 103 MB report's pipelined requests did).
async fn http1_client(c: &Cluster, identity: &str) -> reqwest::Client {
    let source = c.identity(identity).await.unwrap();
    let nexus = "spiffe://spike.ist/spike/nexus".parse().unwrap();
    let tls = spike_client::tls::mtls_client(source, nexus)
        .alpn_protocols([b"http/1.1".to_vec()])
        .build()
        .unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .http1_only()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .unwrap()
}

/// Sends one POST; returns the status and body, or `None` if the connection was refused or
/// closed (e.g. a head larger than the listener reads).
async fn post(client: &reqwest::Client, url: &str) -> Option<(u16, String)> {
    let resp = client.post(url).body(r#"{"path":"app/db"}"#).send().await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_without_policy_flooding_maximal_urls_grows_the_audit_log_by_a_bounded_amount() {
    let spec = ClusterSpec {
        log_level: "warn".into(),
        extra_identities: vec![("stranger".into(), STRANGER.into())],
        nexus_env: [("SPIKE_NEXUS_AUDIT_REFUSAL_INTERVAL".to_owned(), "1s".to_owned())].into(),
        ..ClusterSpec::default()
    };
    let c = bootstrapped(spec).await;
    let client = http1_client(&c, "stranger").await;

    // The longest path Nexus itself answers (the listener may refuse longer heads first).
    let mut probes = 0u64;
    let mut url = None;
    for kib in [60, 32, 16, 15, 12, 8, 4, 2] {
        let candidate =
            format!("{}/v1/store/secrets/{}", c.nexus_url(), "a".repeat(kib * 1024 - 18));
        if let Some((414, body)) = post(&client, &candidate).await
            && body == URI_TOO_LONG_BODY
        {
            probes += 1;
            url = Some((kib, candidate));
            break;
        }
    }
    let (kib, url) = url.unwrap_or_else(|| panic!("no long URL reached Nexus\n{}", c.logs()));

    let before = audit_bytes(&c);
    let started = Instant::now();
    const REQUESTS: usize = 1000;
    const TASKS: usize = 8;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            let mut refused = 0u64;
            for _ in 0..REQUESTS / TASKS {
                match post(&client, &url).await {
                    Some((414, body)) if body == URI_TOO_LONG_BODY => refused += 1,
                    Some((429, _)) => refused += 1,
                    other => panic!("unexpected answer to a {kib} KiB URL: {other:?}"),
                }
            }
            refused
        });
    }
    let mut refused = 0;
    while let Some(n) = tasks.join_next().await {
        refused += n.unwrap();
    }
    let flood = started.elapsed();
    assert_eq!(refused, REQUESTS as u64);

    // Every refusal is accounted for once the last interval is summarised (by the tick).
    let deadline = Instant::now() + INTERVAL * 5;
    loop {
        let text = audit_text(&c);
        let got = accounted(&text, STRANGER);
        if got == refused + probes {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the audit log accounts for {got} of {} refusals\n{}",
            refused + probes,
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // At most: one line per kind of refusal and one summary per interval, plus the interval
    // the flood started in and the one still open.
    let grown = audit_bytes(&c) - before;
    let intervals = flood.as_millis().div_ceil(INTERVAL.as_millis()) as u64 + 2;
    let bound = MAX_LINE_BYTES as u64 * 4 * intervals;
    println!(
        "audit flood: {REQUESTS} requests with {kib} KiB URLs in {flood:?}; audit log grew by \
         {grown} bytes (bound {bound}: {intervals} intervals x 4 lines x {MAX_LINE_BYTES} B; \
         unbounded it would have been about {} bytes)",
        REQUESTS * kib * 1024
    );
    assert!(grown <= bound, "the audit log grew by {grown} bytes (bound {bound})");
    assert!(grown < (REQUESTS * 1024) as u64, "grew {grown} bytes: more than 1 KB a request");
    // Nothing of the URL beyond the route cap reached the log.
    assert!(!audit_text(&c).contains(&"a".repeat(spike_server::audit::MAX_ROUTE_BYTES)));

    let report = verify_with_binary(&c.nexus_data_dir().join("audit.log"));
    println!("spike-nexus audit verify: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_max_bytes_rotates_the_audit_log_into_files_that_verify_as_one_chain() {
    const MAX_BYTES: u64 = spike_server::audit::MIN_FILE_BYTES;
    let spec = ClusterSpec {
        log_level: "warn".into(),
        nexus_env: [("SPIKE_NEXUS_AUDIT_MAX_BYTES".to_owned(), MAX_BYTES.to_string())].into(),
        ..ClusterSpec::default()
    };
    let mut c = bootstrapped(spec).await;
    for round in 0..2 {
        let values: SecretValues = [("k", "v")].into_iter().collect();
        let pilot = c.client("pilot-superuser").await.unwrap();
        pilot.put_secret("app/rotated", values).await.unwrap();
        for _ in 0..150 {
            pilot.get_secret("app/rotated").await.unwrap();
        }
        drop(pilot);
        if round == 0 {
            // A restart (no chance to flush anything) continues the set's chain.
            c.kill_nexus();
            c.start_nexus().unwrap();
            c.wait_ready(READY_LIMIT).await.unwrap();
        }
    }

    let files = audit_files(&c);
    assert!(files.len() >= 3, "expected several audit files, got {files:?}");
    for f in &files {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= MAX_BYTES, "{} holds {len} bytes (max {MAX_BYTES})", f.display());
    }
    let lines = audit_text(&c).lines().count();
    assert!(lines >= 302, "{lines} lines");
    let report = verify_with_binary(&c.nexus_data_dir().join("audit.log"));
    println!("rotated audit log ({} files): {report}", files.len());
    assert!(report.contains(&format!("{lines} lines in {} files", files.len())), "{report}");
    assert!(report.contains("first seq 1 (the chain starts at genesis)"), "{report}");
}
