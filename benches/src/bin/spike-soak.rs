//! `spike-soak`: a thousand concurrent mTLS clients against one `spike-nexus` process while
//! every SVID rotates every few seconds.
//!
//! Starts `spike-nexus` (sled), three `spike-keeper` processes and `spike-bootstrap` on
//! `spike-e2e`'s `Cluster` (see `spike_benches::cluster`), its dev agent (in this process)
//! issuing short-lived SVIDs (`--svid-ttl`, re-issued at half-life) to all of them. Each
//! client is a separate SDK client, so a separate TLS connection; clients reconnect (a full
//! handshake with the then-current SVIDs) every `--reconnect-secs`, staggered. The mix is GETs
//! of `--secrets` seeded secrets (values checked) and every `--put-every`-th request a PUT.
//!
//! First a baseline of 16 clients on the same Nexus, then the soak. Reports requests, errors,
//! p50/p99/max latency and throughput of both (the soak as a ratio of the baseline), SVID
//! rotations seen by the agent and by the clients, and Nexus's open descriptors and RSS read
//! from `/proc/<pid>` every second, middle third (after warm-up) against last third.
//!
//! Exits non-zero on any failed request, or when descriptors or RSS grow beyond
//! `--max-fd-growth-pct` / `--max-rss-growth-pct`. Bounded: every loop stops at a deadline and
//! at a per-client request cap.
//!
//! ```sh
//! cargo run --release -p spike-benches --bin spike-soak                # 1,000 clients, 60 s
//! cargo run --release -p spike-benches --bin spike-soak -- --quick     # 100 clients, 10 s
//! cargo run --release -p spike-benches --bin spike-soak -- --clients 500 --secs 300
//! ```
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use spike_benches::cluster::{self, nexus_pid};
use spike_benches::flags::Flags;
use spike_benches::latency::{Summary, ms};
use spike_benches::procfs::{self, ProcSample};
use spike_benches::{BenchError, Result, secret_value};
use spike_client::Spike;
use spike_client::identity::IdentitySource;
use spike_core::secret::SecretValues;
use spike_e2e::connect;

const USAGE: &str = "usage: spike-soak [--quick] [--clients N] [--secs S] [--baseline-secs S]
                  [--svid-ttl S] [--reconnect-secs S] [--put-every N] [--secrets N]
                  [--value-bytes N] [--max-fd-growth-pct P] [--max-rss-growth-pct P]";

/// Clients of the baseline phase (as `spike-load`'s default).
const BASELINE_CLIENTS: usize = 16;
/// No client sends more than this many requests in one phase, whatever the deadline.
const MAX_REQUESTS_PER_CLIENT: usize = 1_000_000;
/// Failure messages kept for the report.
const MAX_ERROR_MESSAGES: usize = 10;

#[derive(Debug, Clone)]
struct Opts {
    clients: usize,
    run: Duration,
    baseline: Duration,
    svid_ttl: Duration,
    reconnect: Option<Duration>,
    put_every: u64,
    secrets: usize,
    value_bytes: usize,
    max_fd_growth_pct: u64,
    max_rss_growth_pct: u64,
}

impl Opts {
    fn parse(mut f: Flags) -> Result<Self> {
        let quick = f.switch("quick");
        let d = |full: u64, short: u64| if quick { short } else { full };
        let reconnect = f.number("reconnect-secs", d(10, 3), 0, 3600)?;
        let opts = Self {
            clients: f.number("clients", d(1000, 100), 1, 4000)? as usize,
            run: f.seconds("secs", d(60, 10), 1, 3600)?,
            baseline: f.seconds("baseline-secs", d(5, 2), 1, 600)?,
            svid_ttl: f.seconds("svid-ttl", d(10, 4), 2, 86_400)?,
            reconnect: (reconnect > 0).then(|| Duration::from_secs(reconnect)),
            put_every: f.number("put-every", 10, 0, 1_000_000)?,
            secrets: f.number("secrets", 100, 1, 100_000)? as usize,
            value_bytes: f.number("value-bytes", 1024, 8, 65_536)? as usize,
            max_fd_growth_pct: f.number("max-fd-growth-pct", 5, 0, 1000)?,
            max_rss_growth_pct: f.number("max-rss-growth-pct", 25, 0, 1000)?,
        };
        f.finish()?;
        Ok(opts)
    }
}

fn main() -> ExitCode {
    spike_benches::bench_main("spike-soak", USAGE, &["quick"], Opts::parse, run)
}

/// What the client tasks share during a phase.
#[derive(Debug, Default)]
struct Shared {
    completed: AtomicU64,
    errors: AtomicU64,
    messages: Mutex<Vec<String>>,
}

impl Shared {
    fn failed(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut m = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() < MAX_ERROR_MESSAGES {
            m.push(message);
        }
    }
}

/// What one phase measured.
#[derive(Debug)]
struct Phase {
    label: String,
    clients: usize,
    elapsed: Duration,
    latency: Summary,
    errors: u64,
    reconnects: u64,
    reconnects_after_first_expiry: u64,
    messages: Vec<String>,
}

impl Phase {
    fn rps(&self) -> f64 {
        self.latency.count as f64 / self.elapsed.as_secs_f64()
    }
}

struct ClientRun {
    latencies: Vec<Duration>,
    reconnects: u64,
    reconnects_after_first_expiry: u64,
}

#[derive(Debug, Clone)]
struct PhaseConfig {
    url: String,
    source: IdentitySource,
    deadline: Instant,
    reconnect: Option<Duration>,
    put_every: u64,
    secrets: usize,
    value_bytes: usize,
    first_expiry: Option<SystemTime>,
    clients: usize,
}

async fn client_loop(
    i: usize,
    mut client: Spike,
    cfg: PhaseConfig,
    shared: Arc<Shared>,
) -> ClientRun {
    let started = Instant::now();
    let mut run =
        ClientRun { latencies: Vec::new(), reconnects: 0, reconnects_after_first_expiry: 0 };
    // Stagger reconnects evenly over one period, so handshakes are spread over the run.
    let mut next_reconnect = cfg
        .reconnect
        .map(|p| started + p.mul_f64(i as f64 / cfg.clients as f64) + Duration::from_millis(200));
    let put_value = secret_value(i, cfg.value_bytes);
    let mut n: u64 = 0;
    while Instant::now() < cfg.deadline && run.latencies.len() < MAX_REQUESTS_PER_CLIENT {
        if let (Some(at), Some(period)) = (next_reconnect, cfg.reconnect)
            && Instant::now() >= at
        {
            match connect(&cfg.url, &cfg.source).await {
                Ok(c) => client = c,
                Err(e) => shared.failed(format!("reconnect: {e}")),
            }
            run.reconnects += 1;
            if cfg.first_expiry.is_some_and(|t| SystemTime::now() > t) {
                run.reconnects_after_first_expiry += 1;
            }
            next_reconnect = Some(at + period);
        }
        n += 1;
        let t = Instant::now();
        let outcome = if cfg.put_every > 0 && n.is_multiple_of(cfg.put_every) {
            let v: SecretValues = [("v", put_value.as_str())].into_iter().collect();
            client.put_secret(&format!("soak/w/{i}"), v).await
        } else {
            let k = (i + n as usize) % cfg.secrets;
            match client.get_secret(&format!("soak/r/{k}")).await {
                Ok(v) if v.get("v") == Some(secret_value(k, cfg.value_bytes).as_str()) => Ok(()),
                // Never print the value itself.
                Ok(_) => {
                    shared.failed(format!("GET soak/r/{k}: wrong value"));
                    continue;
                }
                Err(e) => Err(e),
            }
        };
        match outcome {
            Ok(()) => {
                run.latencies.push(t.elapsed());
                shared.completed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => shared.failed(format!("request: {e}")),
        }
    }
    run
}

async fn run_phase(
    label: &str,
    clients: Vec<Spike>,
    cfg: PhaseConfig,
    shared: Arc<Shared>,
) -> Result<Phase> {
    let n = clients.len();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for (i, c) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(client_loop(i, c, cfg.clone(), shared.clone())));
    }
    let mut latencies = Vec::new();
    let (mut reconnects, mut after_expiry) = (0, 0);
    for t in tasks {
        let r = t.await.map_err(|e| BenchError(format!("client task: {e}")))?;
        latencies.extend(r.latencies);
        reconnects += r.reconnects;
        after_expiry += r.reconnects_after_first_expiry;
    }
    let elapsed = started.elapsed();
    let messages = shared.messages.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(Phase {
        label: label.to_owned(),
        clients: n,
        elapsed,
        latency: Summary::of(&mut latencies),
        errors: shared.errors.load(Ordering::Relaxed),
        reconnects,
        reconnects_after_first_expiry: after_expiry,
        messages,
    })
}

/// Builds `n` clients and has each make one request, so each holds an open TLS connection.
async fn connected_clients(
    url: &str,
    source: &IdentitySource,
    n: usize,
    secrets: usize,
) -> Result<Vec<Spike>> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(connect(url, source).await?);
    }
    // In batches, so the handshakes do not all land in Nexus's accept backlog at once.
    for (b, batch) in clients.chunks(100).enumerate() {
        let mut tasks = Vec::with_capacity(batch.len());
        for (j, c) in batch.iter().enumerate() {
            let c = c.clone();
            let k = (b * 100 + j) % secrets;
            tasks.push(tokio::spawn(async move { c.get_secret(&format!("soak/r/{k}")).await }));
        }
        for t in tasks {
            t.await
                .map_err(|e| BenchError(format!("connect task: {e}")))?
                .map_err(|e| BenchError(format!("first request of a client: {e}")))?;
        }
    }
    Ok(clients)
}

/// Counts SVID changes until `deadline`: new SVIDs issued by the agent (Nexus's entry) and new
/// SVIDs the clients' shared identity source received over its Workload API stream.
async fn watch_rotations(
    agent_not_after: impl Fn() -> Option<SystemTime>,
    source: IdentitySource,
    deadline: Instant,
) -> (u64, u64) {
    let leaf = |s: &IdentitySource| s.current().ok().and_then(|i| i.cert_chain().first().cloned());
    let (mut issued, mut received) = (0, 0);
    let mut last_not_after = agent_not_after();
    let mut last_leaf = leaf(&source);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let not_after = agent_not_after();
        if not_after != last_not_after {
            issued += 1;
            last_not_after = not_after;
        }
        let l = leaf(&source);
        if l != last_leaf {
            received += 1;
            last_leaf = l;
        }
    }
    (issued, received)
}

/// Samples Nexus every second until `deadline`: descriptors, RSS, requests completed.
async fn sample_nexus(
    pid: u32,
    shared_completed: impl Fn() -> u64,
    deadline: Instant,
) -> Vec<(ProcSample, u64)> {
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = shared_completed();
    while Instant::now() < deadline {
        tick.tick().await;
        let now = shared_completed();
        if let Ok(s) = procfs::sample(pid) {
            out.push((s, now - last));
        }
        last = now;
    }
    out
}

fn print_phase(p: &Phase) {
    println!(
        "| {:<34} | {:>5} | {:>9} | {:>6} | {:>8.0} | {:>8.2} | {:>8.2} | {:>8.1} |",
        p.label,
        p.clients,
        p.latency.count,
        p.errors,
        p.rps(),
        ms(p.latency.p50),
        ms(p.latency.p99),
        ms(p.latency.max),
    );
}

async fn run(opts: Opts) -> Result<bool> {
    let needed = opts.clients as u64 + 256;
    if let Some(limit) = procfs::open_files_limit(None)
        .map_err(|e| BenchError(format!("reading this process's limits: {e}")))?
        && limit < needed
    {
        return Err(BenchError(format!(
            "RLIMIT_NOFILE is {limit}, {needed} descriptors are needed for {} clients; raise it \
             (`ulimit -n {}`) and run again",
            opts.clients,
            needed * 2
        )));
    }
    println!("spike-soak: {opts:?}");
    let spec = spike_e2e::ClusterSpec { svid_ttl: opts.svid_ttl, ..cluster::spec()? };
    let cluster = cluster::start(spec).await?;
    let pid = nexus_pid(&cluster)?;
    if let Some(limit) = procfs::open_files_limit(Some(pid))
        .map_err(|e| BenchError(format!("reading Nexus's limits: {e}")))?
        && limit < needed
    {
        return Err(BenchError(format!(
            "spike-nexus may open only {limit} files; {needed} are needed (raise `ulimit -n`)"
        )));
    }
    let url = cluster.nexus_url();
    let source = cluster.identity("pilot-superuser").await?;
    let seeder = connect(&url, &source).await?;
    for k in 0..opts.secrets {
        let v: SecretValues = [("v", secret_value(k, opts.value_bytes))].into_iter().collect();
        seeder
            .put_secret(&format!("soak/r/{k}"), v)
            .await
            .map_err(|e| BenchError(format!("seeding: {e}")))?;
    }
    let first_expiry = cluster.agent().svid_not_after("nexus");
    let phase = |deadline: Instant, reconnect: Option<Duration>, clients: usize| PhaseConfig {
        url: url.clone(),
        source: source.clone(),
        deadline,
        reconnect,
        put_every: opts.put_every,
        secrets: opts.secrets,
        value_bytes: opts.value_bytes,
        first_expiry,
        clients,
    };

    // Baseline: few steady connections, same Nexus, same mix, no reconnects.
    let clients = connected_clients(&url, &source, BASELINE_CLIENTS, opts.secrets).await?;
    let base_cfg = phase(Instant::now() + opts.baseline, None, BASELINE_CLIENTS);
    let baseline =
        run_phase("baseline (steady connections)", clients, base_cfg, Arc::default()).await?;

    // Soak.
    let connect_started = Instant::now();
    let clients = connected_clients(&url, &source, opts.clients, opts.secrets).await?;
    let connect_took = connect_started.elapsed();
    let at_start = procfs::sample(pid).map_err(|e| BenchError(format!("sampling Nexus: {e}")))?;
    println!(
        "{} clients connected in {:.1} s; Nexus holds {} descriptors, RSS {} MiB",
        opts.clients,
        connect_took.as_secs_f64(),
        at_start.fds,
        at_start.rss_kib / 1024
    );
    let deadline = Instant::now() + opts.run;
    let cfg = phase(deadline, opts.reconnect, opts.clients);
    let shared = Arc::new(Shared::default());
    let (soak, (issued, received), samples) = tokio::join!(
        run_phase("soak (reconnecting, rotating SVIDs)", clients, cfg, shared.clone()),
        watch_rotations(|| cluster.agent().svid_not_after("nexus"), source.clone(), deadline),
        sample_nexus(pid, || shared.completed.load(Ordering::Relaxed), deadline),
    );
    let soak = soak?;
    let nexus_alive = procfs::sample(pid).is_ok();

    println!(
        "\n| phase                              | conns | requests | errors |    req/s | p50 (ms) | p99 (ms) | max (ms) |"
    );
    println!(
        "|------------------------------------|-------|----------|--------|----------|----------|----------|----------|"
    );
    print_phase(&baseline);
    print_phase(&soak);
    println!(
        "\nsoak/baseline: throughput {:.2}, p50 {:.1}x, p99 {:.1}x",
        soak.rps() / baseline.rps(),
        ms(soak.latency.p50) / ms(baseline.latency.p50),
        ms(soak.latency.p99) / ms(baseline.latency.p99),
    );
    println!(
        "SVID TTL {:?}: {issued} rotations issued by the agent, {received} received by the \
         clients' identity source; {} reconnects (full handshakes), {} after the first SVIDs \
         expired",
        opts.svid_ttl, soak.reconnects, soak.reconnects_after_first_expiry
    );

    let fds: Vec<f64> = samples.iter().map(|(s, _)| s.fds as f64).collect();
    let rss: Vec<f64> = samples.iter().map(|(s, _)| s.rss_kib as f64 / 1024.0).collect();
    let rps: Vec<f64> = samples.iter().map(|(_, n)| *n as f64).collect();
    let mut ok = true;
    println!("\nNexus (pid {pid}), sampled every second ({} samples):", samples.len());
    // Growth is judged after warm-up: the middle third against the last one (the first third
    // is shown too; caches and connection state fill during it).
    println!(
        "| metric | min | max | first third (mean) | middle third (mean) | last third (mean) | \
         last/middle |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, series, limit_pct) in [
        ("open fds", &fds, Some(opts.max_fd_growth_pct)),
        ("RSS (MiB)", &rss, Some(opts.max_rss_growth_pct)),
        ("requests/s", &rps, None),
    ] {
        let min = series.iter().copied().fold(f64::INFINITY, f64::min);
        let max = series.iter().copied().fold(0.0, f64::max);
        match (procfs::first_and_last_third(series), procfs::middle_and_last_third(series)) {
            (Some((first, last)), Some((middle, _))) => {
                let ratio = last / middle;
                println!(
                    "| {name} | {min:.0} | {max:.0} | {first:.1} | {middle:.1} | {last:.1} | \
                     {ratio:.3} |"
                );
                if let Some(pct) = limit_pct
                    && ratio > 1.0 + pct as f64 / 100.0
                {
                    println!("GROWTH: {name} grew by more than {pct} % (last/middle {ratio:.3})");
                    ok = false;
                }
            }
            _ => println!("| {name} | too few samples | | | | | |"),
        }
    }
    // The series itself, every 5 s: a plateau and a slope look alike in two means.
    let every_5s = |v: &[f64]| v.iter().step_by(5).map(|x| format!("{x:.0}")).collect::<Vec<_>>();
    println!("open fds every 5 s: {}", every_5s(&fds).join(" "));
    println!("RSS MiB every 5 s:  {}", every_5s(&rss).join(" "));
    for p in [&baseline, &soak] {
        if p.errors > 0 {
            ok = false;
            println!("\n{}: {} failed requests; first messages:", p.label, p.errors);
            for m in &p.messages {
                println!("  {m}");
            }
        }
    }
    if !nexus_alive {
        ok = false;
        println!("spike-nexus is gone\n{}", cluster.logs());
    }
    if issued == 0 || received == 0 {
        println!("note: no SVID rotation happened during the run; shorten --svid-ttl");
    }
    println!("\n{}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}
