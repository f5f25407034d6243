//! `replica-throughput`: GET and PUT throughput through 1 and through 3 Nexus replicas sharing
//! one PostgreSQL server, and through one Nexus on its own sled store as the baseline, in the
//! same process run; reported as absolute figures, as the 3-replica / 1-replica ratio and as
//! the PostgreSQL / sled ratio (issue 15: a PostgreSQL GET should reach 0.6x a sled GET).
//!
//! For each replica count: a fresh PostgreSQL server (loopback), 3 Keepers, the replicas,
//! bootstrap; then `CLIENTS` SDK clients (mTLS, keep-alive), spread round-robin over the
//! replicas, each looping for `SECONDS` on GET of 100 pre-written secrets, then on PUT of
//! their own paths. The sled baseline is the same with 3 Keepers and one Nexus on sled. Every
//! error is counted and fails the run. Everything is bounded in time.
//!
//! ```sh
//! cargo run --release -p spike-e2e --bin replica-throughput             # 32 clients, 5 s
//! cargo run --release -p spike-e2e --bin replica-throughput -- 64 10    # 64 clients, 10 s
//! ```
//! All processes share this machine's cores: on a small machine the replicas compete with
//! each other, PostgreSQL and the load generator, so the ratio shows contention, not the
//! scaling a deployment with one machine per replica would see.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use spike_core::secret::SecretValues;
use spike_e2e::postgres::ReplicaSystem;
use spike_e2e::{Cluster, ClusterSpec, HarnessError};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |i: usize, default: u64, max: u64| -> Option<u64> {
        match args.get(i) {
            None => Some(default),
            Some(a) => a.parse().ok().filter(|n| (1..=max).contains(n)),
        }
    };
    let (Some(clients), Some(seconds)) = (parse(0, 32, 1000), parse(1, 5, 120)) else {
        eprintln!("usage: replica-throughput [CLIENTS (1..=1000, default 32)] [SECONDS (1..=120)]");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("replica-throughput: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(clients as usize, Duration::from_secs(seconds))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("replica-throughput: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Requests per second and latency percentiles of one phase.
#[derive(Debug, Clone, Copy)]
struct Phase {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

async fn run(clients: usize, length: Duration) -> Result<(), HarnessError> {
    let report = |what: &str, (get, put): (Phase, Phase)| {
        println!(
            "{what}, {clients} clients, {}s each: GET {:.0}/s (p50 {:?}, p99 {:?}); \
             PUT {:.0}/s (p50 {:?}, p99 {:?})",
            length.as_secs(),
            get.per_second,
            get.p50,
            get.p99,
            put.per_second,
            put.p50,
            put.p99
        );
    };
    let mut results = Vec::new();
    for replicas in [1, 3] {
        let figures = measure(replicas, clients, length).await?;
        report(&format!("{replicas} replica(s)"), figures);
        results.push(figures);
    }
    let sled = measure_sled(clients, length).await?;
    report("sled, 1 Nexus", sled);
    let (one, three) = (results[0], results[1]);
    println!(
        "ratio 3 replicas / 1 replica: GET {:.2}, PUT {:.2}",
        three.0.per_second / one.0.per_second,
        three.1.per_second / one.1.per_second
    );
    println!(
        "ratio PostgreSQL 1 replica / sled: GET {:.2}, PUT {:.2}",
        one.0.per_second / sled.0.per_second,
        one.1.per_second / sled.1.per_second
    );
    Ok(())
}

fn value(v: &str) -> SecretValues {
    [("value", v)].into_iter().collect()
}

/// One caller identity drives all the load: lift the per-caller rate limit out of the way.
fn spec() -> ClusterSpec {
    ClusterSpec {
        log_level: "warn".into(),
        nexus_env: [("SPIKE_NEXUS_RATE_LIMIT".to_owned(), "1000000".to_owned())]
            .into_iter()
            .collect(),
        ..ClusterSpec::default()
    }
}

async fn measure(
    replicas: usize,
    clients: usize,
    length: Duration,
) -> Result<(Phase, Phase), HarnessError> {
    let system = ReplicaSystem::start(spec(), replicas).await?;
    let mut sdk = Vec::new();
    for i in 0..clients {
        sdk.push(system.replicas[i % replicas].client(&system.cluster, "pilot-superuser").await?);
    }
    load(&sdk, length).await
}

/// The baseline: the same load on one Nexus with its own sled store.
async fn measure_sled(clients: usize, length: Duration) -> Result<(Phase, Phase), HarnessError> {
    let mut cluster = Cluster::new(spec()).await?;
    cluster.start_bootstrapped(Duration::from_secs(60)).await?;
    let mut sdk = Vec::new();
    for _ in 0..clients {
        sdk.push(cluster.client("pilot-superuser").await?);
    }
    load(&sdk, length).await
}

/// Seeds 100 secrets, then runs the GET phase and the PUT phase.
async fn load(
    sdk: &[spike_client::Spike],
    length: Duration,
) -> Result<(Phase, Phase), HarnessError> {
    for i in 0..100 {
        sdk[0]
            .put_secret(&format!("bench/read/{i}"), value("x".repeat(64).as_str()))
            .await
            .map_err(|e| HarnessError(format!("seeding: {e}")))?;
    }
    let get = phase(sdk, length, |client, n, i| async move {
        client.get_secret(&format!("bench/read/{}", (n * 7 + i) % 100)).await.map(drop)
    })
    .await?;
    let put = phase(sdk, length, |client, n, i| async move {
        client
            .put_secret(&format!("bench/write/{n}/{}", i % 20), value("y".repeat(64).as_str()))
            .await
    })
    .await?;
    Ok((get, put))
}

/// Runs `op` in a loop on every client for `length`; fails on the first error.
async fn phase<F, Fut>(
    sdk: &[spike_client::Spike],
    length: Duration,
    op: F,
) -> Result<Phase, HarnessError>
where
    F: Fn(spike_client::Spike, usize, usize) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = Result<(), spike_client::Error>> + Send,
{
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (n, client) in sdk.iter().enumerate() {
        let (client, errors, first_error) = (client.clone(), errors.clone(), first_error.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0;
            while started.elapsed() < length {
                let t = Instant::now();
                if let Err(e) = op(client.clone(), n, i).await {
                    errors.fetch_add(1, Ordering::Relaxed);
                    first_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e.to_string());
                }
                latencies.push(t.elapsed());
                i += 1;
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| HarnessError(format!("load task: {e}")))?);
    }
    let elapsed = started.elapsed();
    let errors = errors.load(Ordering::Relaxed);
    if errors > 0 {
        let first = first_error.lock().unwrap_or_else(|p| p.into_inner()).take();
        return Err(HarnessError(format!(
            "{errors} requests failed; the first: {}",
            first.unwrap_or_default()
        )));
    }
    all.sort();
    let at = |q: f64| all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)));
    Ok(Phase {
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50).copied().unwrap_or_default(),
        p99: at(0.99).copied().unwrap_or_default(),
    })
}
