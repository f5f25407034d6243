//! `nexus-startup`: how long a restarted Nexus takes to serve again, with no human involved.
//!
//! Starts 5 `spike-keeper` processes (threshold 3) and a `spike-nexus` with a sled store,
//! bootstraps once and writes a few secrets, then restarts Nexus 20 times (SIGKILL, start
//! again) and measures, each time, from just before the process is spawned until `/readyz`
//! first answers 200 (polled every millisecond over mTLS). Prints every sample, the median
//! and the maximum.
//!
//! ```sh
//! cargo run --release -p spike-e2e --bin nexus-startup            # 20 restarts
//! cargo run --release -p spike-e2e --bin nexus-startup -- 50      # 50 restarts
//! ```
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use spike_core::secret::SecretValues;
use spike_e2e::{Cluster, ClusterSpec, HarnessError, median_and_max};

fn main() -> ExitCode {
    let restarts = match std::env::args().nth(1).map(|a| a.parse::<usize>()) {
        None => 20,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            eprintln!("usage: nexus-startup [RESTARTS (1..=1000, default 20)]");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nexus-startup: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(restarts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nexus-startup: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(restarts: usize) -> Result<(), HarnessError> {
    let spec = ClusterSpec {
        keepers: 5,
        threshold: 3,
        log_level: "warn".into(),
        ..ClusterSpec::default()
    };
    let mut c = Cluster::new(spec).await?;
    c.start_keepers().await?;
    c.start_nexus()?;
    let out = c.bootstrap(&[]).await?;
    if out.code != Some(0) {
        return Err(HarnessError(format!("bootstrap failed: {out:?}\n{}", c.logs())));
    }
    c.wait_ready(Duration::from_secs(20)).await?;
    let pilot = c.client("pilot-superuser").await?;
    for i in 0..10 {
        let values: SecretValues = [("v", format!("{i}"))].into_iter().collect();
        pilot
            .put_secret(&format!("bench/s{i}"), values)
            .await
            .map_err(|e| HarnessError(format!("writing a secret: {e}")))?;
    }

    let mut samples = Vec::with_capacity(restarts);
    for i in 1..=restarts {
        c.kill_nexus();
        let spawned = c.start_nexus()?;
        c.wait_ready_every(Duration::from_secs(20), Duration::from_millis(1)).await?;
        let took = spawned.elapsed();
        println!("restart {i:>3}: {:>7.1} ms", took.as_secs_f64() * 1e3);
        samples.push(took);
    }
    let (median, max) = median_and_max(&mut samples);
    println!(
        "Nexus process start -> ready, 5 Keepers (t=3), {restarts} restarts: median {:.1} ms, \
         max {:.1} ms",
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    Ok(())
}
