//! `spike-scale`: Nexus on sled from a thousand to a million secrets — the cost curve of load
//! rate, memory, restart time, GET latency and disk use, every size measured in the same run.
//!
//! Starts `spike-nexus` (sled), three `spike-keeper` processes and `spike-bootstrap` on
//! `spike-e2e`'s `Cluster` (see `spike_benches::cluster`: the dev agent runs in this process),
//! then for each size of `--sizes` in turn (default 1,000, 10,000, 100,000 and 1,000,000):
//!
//! 1. writes secrets up to that size over `--load-clients` mTLS connections (every PUT is on
//!    disk before it is acknowledged), stopping at `--load-timeout`; records the load rate;
//! 2. measures GET p50/p99 (random keys, values checked) warm, then restarts Nexus (SIGKILL,
//!    start, root key back from the Keepers, store open) and measures restart → ready, GETs
//!    again with cold caches, RSS at each step and disk use.
//!
//! The first size is the baseline the others are compared with. `--sled-cache-mib` passes
//! `SPIKE_NEXUS_SLED_CACHE_MIB` to Nexus (default: Nexus's own). Exits non-zero if a request
//! fails or a size was not reached in time (the figures are still printed, for the sizes
//! reached). Bounded in count and time.
//!
//! ```sh
//! cargo run --release -p spike-benches --bin spike-scale                   # 1k .. 1M secrets
//! cargo run --release -p spike-benches --bin spike-scale -- --quick        # 1k and 20k
//! cargo run --release -p spike-benches --bin spike-scale -- --sizes 1000,200000
//! ```
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use spike_benches::cluster::{self, nexus_pid};
use spike_benches::flags::Flags;
use spike_benches::latency::{Summary, ms};
use spike_benches::procfs;
use spike_benches::{BenchError, Result, secret_value};
use spike_client::Spike;
use spike_client::identity::IdentitySource;
use spike_core::secret::SecretValues;
use spike_e2e::{Cluster, connect};

const USAGE: &str = "usage: spike-scale [--quick] [--sizes N,N,...] [--count N] [--value-bytes N]
                   [--load-clients N] [--load-timeout S] [--get-clients N] [--get-secs S]
                   [--sled-cache-mib N]";

/// No GET client sends more than this many requests in one phase, whatever the deadline.
const MAX_GETS_PER_CLIENT: usize = 1_000_000;
/// Longest wait for a restarted Nexus to serve.
const READY_LIMIT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
struct Opts {
    sizes: Vec<u64>,
    value_bytes: usize,
    load_clients: usize,
    load_timeout: Duration,
    get_clients: usize,
    get_secs: Duration,
    sled_cache_mib: Option<u64>,
}

impl Opts {
    fn parse(mut f: Flags) -> Result<Self> {
        let quick = f.switch("quick");
        let d = |full: u64, short: u64| if quick { short } else { full };
        let default_sizes: &[u64] =
            if quick { &[1_000, 20_000] } else { &[1_000, 10_000, 100_000, 1_000_000] };
        let mut sizes = f.numbers("sizes", default_sizes, 1, 100_000_000)?;
        // `--count N`: the curve from 1,000 (or N, if smaller) up to N.
        let count = f.number("count", 0, 0, 100_000_000)?;
        if count > 0 {
            sizes = if count > 1_000 { vec![1_000, count] } else { vec![count] };
        }
        let sled_cache_mib = f.number("sled-cache-mib", 0, 0, 1 << 20)?;
        let opts = Self {
            sizes,
            value_bytes: f.number("value-bytes", 64, 9, 65_536)? as usize,
            load_clients: f.number("load-clients", 64, 1, 1000)? as usize,
            load_timeout: f.seconds("load-timeout", d(3600, 300), 1, 86_400)?,
            get_clients: f.number("get-clients", 16, 1, 1000)? as usize,
            get_secs: f.seconds("get-secs", d(10, 3), 1, 600)?,
            sled_cache_mib: (sled_cache_mib > 0).then_some(sled_cache_mib),
        };
        f.finish()?;
        Ok(opts)
    }
}

fn main() -> ExitCode {
    spike_benches::bench_main("spike-scale", USAGE, &["quick"], Opts::parse, run)
}

fn path_of(i: u64) -> String {
    format!("scale/s{i:08}")
}

/// Writes secrets `from..to` over `clients` connections until done or `deadline`; returns how
/// far it got (every secret below that index was acknowledged). Stops at the first failure.
async fn load(
    url: &str,
    source: &IdentitySource,
    range: std::ops::Range<u64>,
    clients: usize,
    value_bytes: usize,
    deadline: Instant,
    pid: u32,
) -> Result<u64> {
    let next = Arc::new(AtomicU64::new(range.start));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let client = connect(url, source).await?;
        let (next, done, failed) = (next.clone(), done.clone(), failed.clone());
        let end = range.end;
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline && !failed.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let value = secret_value(i as usize, value_bytes);
                let v: SecretValues = [("v", value.as_str())].into_iter().collect();
                if let Err(e) = client.put_secret(&path_of(i), v).await {
                    failed.store(true, Ordering::Relaxed);
                    return Err(BenchError(format!("PUT {}: {e}", path_of(i))));
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    // Progress every 10 s while the writers run (bounded by the same deadline).
    let started = Instant::now();
    let total = range.end - range.start;
    let mut last = (started, 0);
    while !tasks.iter().all(|t| t.is_finished()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if last.0.elapsed() >= Duration::from_secs(10) {
            let n = done.load(Ordering::Relaxed);
            let rate = (n - last.1) as f64 / last.0.elapsed().as_secs_f64();
            let rss = procfs::sample(pid).map(|s| s.rss_kib / 1024).unwrap_or(0);
            println!(
                "  loaded {n:>9} / {total} ({:>5.1} s): {rate:>6.0} PUT/s now, Nexus RSS {rss} MiB",
                started.elapsed().as_secs_f64()
            );
            last = (Instant::now(), n);
        }
    }
    for t in tasks {
        t.await.map_err(|e| BenchError(format!("load task: {e}")))??;
    }
    Ok(next.load(Ordering::Relaxed).min(range.end))
}

/// GETs random secrets below `size` (values checked) from `clients` connections for `secs`.
async fn gets(
    url: &str,
    source: &IdentitySource,
    size: u64,
    clients: usize,
    secs: Duration,
    value_bytes: usize,
) -> Result<(Summary, f64)> {
    let mut conns: Vec<Spike> = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(connect(url, source).await?);
    }
    let deadline = Instant::now() + secs;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for (n, client) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            // xorshift64*: a cheap, reproducible spread of keys per client.
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (n as u64 + 1);
            let mut lat = Vec::new();
            while Instant::now() < deadline && lat.len() < MAX_GETS_PER_CLIENT {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                let i = x.wrapping_mul(0x2545_F491_4F6C_DD1D) % size;
                let t = Instant::now();
                let v = client
                    .get_secret(&path_of(i))
                    .await
                    .map_err(|e| BenchError(format!("GET {}: {e}", path_of(i))))?;
                if v.get("v") != Some(secret_value(i as usize, value_bytes).as_str()) {
                    // Never print the value itself.
                    return Err(BenchError(format!("GET {}: wrong value", path_of(i))));
                }
                lat.push(t.elapsed());
            }
            Ok::<_, BenchError>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| BenchError(format!("GET task: {e}")))??);
    }
    let rps = all.len() as f64 / started.elapsed().as_secs_f64();
    Ok((Summary::of(&mut all), rps))
}

/// The figures at one store size.
#[derive(Debug, Default)]
struct AtSize {
    secrets: u64,
    load_rate: f64,
    rss_loaded_mib: u64,
    warm: Option<(Summary, f64)>,
    cold: Option<(Summary, f64)>,
    rss_before_restart_mib: u64,
    restart: Duration,
    rss_after_restart_mib: u64,
    rss_after_gets_mib: u64,
    disk_total: u64,
    disk_sled: u64,
    disk_audit: u64,
}

async fn measure(
    cluster: &mut Cluster,
    source: &IdentitySource,
    size: u64,
    o: &Opts,
) -> Result<AtSize> {
    let url = cluster.nexus_url();
    let rss =
        |pid: Option<u32>| pid.and_then(|p| procfs::sample(p).ok()).map_or(0, |s| s.rss_kib / 1024);
    let mut m = AtSize { secrets: size, ..AtSize::default() };
    m.warm = Some(gets(&url, source, size, o.get_clients, o.get_secs, o.value_bytes).await?);
    m.rss_before_restart_mib = rss(cluster.nexus_pid());
    m.restart = cluster.restart_nexus(READY_LIMIT).await?;
    m.rss_after_restart_mib = rss(cluster.nexus_pid());
    m.cold = Some(gets(&url, source, size, o.get_clients, o.get_secs, o.value_bytes).await?);
    m.rss_after_gets_mib = rss(cluster.nexus_pid());
    let data = cluster.nexus_data_dir();
    let du = |p: std::path::PathBuf| procfs::disk_usage(&p).unwrap_or(0);
    m.disk_total = du(data.clone());
    m.disk_sled = du(data.join("sled"));
    m.disk_audit = du(data.join("audit.log"));
    Ok(m)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_size(m: &AtSize) {
    let (w, wr) = m.warm.unwrap_or_default();
    let (c, cr) = m.cold.unwrap_or_default();
    println!(
        "| {:>9} | {:>6.0} | {:>7.2} / {:>7.2} ({:>6.0}/s) | {:>7.2} / {:>7.2} ({:>6.0}/s) | {:>8.0} | {:>5} / {:>5} / {:>5} | {:>7.0} / {:>7.0} / {:>6.0} |",
        m.secrets,
        m.load_rate,
        ms(w.p50),
        ms(w.p99),
        wr,
        ms(c.p50),
        ms(c.p99),
        cr,
        ms(m.restart),
        m.rss_loaded_mib,
        m.rss_after_restart_mib,
        m.rss_after_gets_mib,
        mib(m.disk_total),
        mib(m.disk_sled),
        mib(m.disk_audit),
    );
}

async fn run(o: Opts) -> Result<bool> {
    println!("spike-scale: {o:?}");
    let mut spec = cluster::spec()?;
    if let Some(mib) = o.sled_cache_mib {
        spec.nexus_env.insert("SPIKE_NEXUS_SLED_CACHE_MIB".into(), mib.to_string());
    }
    let mut cluster = cluster::start(spec).await?;
    let source = cluster.identity("pilot-superuser").await?;
    let url = cluster.nexus_url();

    let mut rows: Vec<AtSize> = Vec::new();
    let mut loaded = 0;
    let mut reached = true;
    for &target in &o.sizes {
        println!("loading secrets {loaded}..{target} ({} connections)", o.load_clients);
        let started = Instant::now();
        let deadline = started + o.load_timeout;
        let size = load(
            &url,
            &source,
            loaded..target,
            o.load_clients,
            o.value_bytes,
            deadline,
            nexus_pid(&cluster)?,
        )
        .await?;
        let took = started.elapsed();
        let rate = (size - loaded) as f64 / took.as_secs_f64();
        let rss_loaded = procfs::sample(nexus_pid(&cluster)?).map_or(0, |s| s.rss_kib / 1024);
        println!(
            "loaded {} secrets ({} bytes each) in {:.1} s: {rate:.0} PUT/s; Nexus RSS {rss_loaded} MiB",
            size - loaded,
            o.value_bytes,
            took.as_secs_f64()
        );
        loaded = size;
        let mut m = measure(&mut cluster, &source, size, &o).await?;
        m.load_rate = rate;
        m.rss_loaded_mib = rss_loaded;
        rows.push(m);
        if size < target {
            println!("INCOMPLETE: reached {size} of {target} secrets within {:?}", o.load_timeout);
            reached = false;
            break;
        }
    }

    println!(
        "\n| secrets | load PUT/s | GET p50 / p99 ms, warm (req/s) | GET p50 / p99 ms, after restart (req/s) | restart→ready ms | RSS MiB: loaded / restarted / after GETs | disk MiB: total / sled / audit |"
    );
    println!("|---|---|---|---|---|---|---|");
    for m in &rows {
        print_size(m);
    }
    if let (Some(small), Some(large)) = (rows.first(), rows.last()) {
        let ratio = |a: Duration, b: Duration| ms(a) / ms(b);
        let (sw, lw) = (small.warm.unwrap_or_default().0, large.warm.unwrap_or_default().0);
        let (sc, lc) = (small.cold.unwrap_or_default().0, large.cold.unwrap_or_default().0);
        println!(
            "\n{} vs {} secrets: GET p99 {:.2}x warm, {:.2}x after restart; restart→ready \
             {:.1}x; RSS after the GETs {:.1}x; largest RSS seen {} MiB",
            large.secrets,
            small.secrets,
            ratio(lw.p99, sw.p99),
            ratio(lc.p99, sc.p99),
            ratio(large.restart, small.restart),
            large.rss_after_gets_mib as f64 / small.rss_after_gets_mib.max(1) as f64,
            rows.iter()
                .map(|m| m.rss_loaded_mib.max(m.rss_before_restart_mib).max(m.rss_after_gets_mib))
                .max()
                .unwrap_or(0),
        );
        println!(
            "disk per secret at {}: {:.0} bytes (sled {:.0}, audit {:.0})",
            large.secrets,
            large.disk_total as f64 / large.secrets as f64,
            large.disk_sled as f64 / large.secrets as f64,
            large.disk_audit as f64 / large.secrets as f64
        );
    }
    println!("\n{}", if reached { "PASS" } else { "FAIL" });
    Ok(reached)
}
