//! The system the load runners measure: `spike-e2e`'s [`Cluster`] — the harness the
//! multi-process tests use, so tests and benchmarks share one — set up for measuring.
//!
//! Everything runs as in production: `spike-nexus` (sled store) and three `spike-keeper`
//! processes on 127.0.0.1, `spike-bootstrap` run once, and Nexus taking its root key back from
//! the Keepers after Bootstrap and after every restart, with no human action. Only the dev
//! Workload API agent runs inside the load generator.
//!
//! **Measurement boundary.** Nexus's RSS and descriptors are read from `/proc/<nexus pid>`
//! ([`Cluster::nexus_pid`]), so they hold Nexus alone. The Keepers are processes of their own,
//! so the load generator's own CPU and memory no longer include them (they are idle during a
//! run but for Nexus's periodic shard pushes, every `SPIKE_NEXUS_KEEPER_UPDATE_INTERVAL`,
//! Nexus's default of 5 minutes here).
//!
//! **Binaries.** `SPIKE_BENCH_BIN_DIR` wins: `spike-nexus` must be in it, and `spike-keeper`
//! and `spike-bootstrap` are taken from it when they are there (so a directory holding only a
//! wrapper script named `spike-nexus`, e.g. one that runs Nexus under heaptrack, works).
//! Anything not found there — or everything, without `SPIKE_BENCH_BIN_DIR` — comes from
//! [`spike_e2e::binaries`]: `SPIKE_E2E_BIN_DIR`, or else built in the profile and target
//! directory of the running benchmark, so it is never stale.
//!
//! **Environment of Nexus.** As the harness sets it (nothing inherited), plus
//! `SPIKE_NEXUS_RATE_LIMIT` lifted (the whole load generator is one SPIFFE ID, and the runners
//! measure Nexus, not its per-caller limiter: a 429 would count as an error) and glibc's
//! allocator tuning (`MALLOC_*`, e.g. `MALLOC_ARENA_MAX`) passed through from the runner's
//! environment, for memory experiments.

use std::path::PathBuf;
use std::time::Duration;

use spike_e2e::{Binaries, Cluster, ClusterSpec, executable};

use crate::{BenchError, Result};

/// `SPIKE_NEXUS_RATE_LIMIT` for the runs (see the module docs).
const NEXUS_RATE_LIMIT: &str = "1000000";
/// Longest wait for a freshly bootstrapped Nexus to be ready.
const FIRST_READY_LIMIT: Duration = Duration::from_secs(60);

/// The spec the runners start from: 3 Keepers (threshold 2), processes logging warnings only,
/// Nexus's default shard-push interval, the rate limit lifted, `MALLOC_*` passed through, and
/// the binaries of the module docs. Runners change what they measure (e.g. `svid_ttl`).
pub fn spec() -> Result<ClusterSpec> {
    let mut nexus_env = std::collections::BTreeMap::new();
    nexus_env.insert("SPIKE_NEXUS_RATE_LIMIT".to_owned(), NEXUS_RATE_LIMIT.to_owned());
    nexus_env.extend(std::env::vars().filter(|(k, _)| k.starts_with("MALLOC_")));
    Ok(ClusterSpec {
        log_level: "warn".into(),
        update_interval: spike_server::nexus::config::DEFAULT_KEEPER_UPDATE_INTERVAL,
        nexus_env,
        binaries: Some(binaries()?),
        ..ClusterSpec::default()
    })
}

/// Starts the Keepers and Nexus, bootstraps, and waits until Nexus is ready.
pub async fn start(spec: ClusterSpec) -> Result<Cluster> {
    let mut cluster = Cluster::new(spec).await?;
    cluster.start_bootstrapped(FIRST_READY_LIMIT).await?;
    Ok(cluster)
}

/// The process ID of the running Nexus, or an error saying it is gone.
pub fn nexus_pid(cluster: &Cluster) -> Result<u32> {
    cluster.nexus_pid().ok_or_else(|| BenchError("spike-nexus is not running".into()))
}

/// The binaries to run (see the module docs for which directory wins).
pub fn binaries() -> Result<Binaries> {
    let Some(dir) = std::env::var_os("SPIKE_BENCH_BIN_DIR").map(PathBuf::from) else {
        return Ok(spike_e2e::binaries()?.clone());
    };
    let nexus = executable(&dir, "spike-nexus");
    if !nexus.is_file() {
        return Err(BenchError(format!(
            "{} is missing (SPIKE_BENCH_BIN_DIR must hold spike-nexus)",
            nexus.display()
        )));
    }
    let own = |name: &str| Some(executable(&dir, name)).filter(|p| p.is_file());
    let (keeper, bootstrap) = match (own("spike-keeper"), own("spike-bootstrap")) {
        (Some(keeper), Some(bootstrap)) => (keeper, bootstrap),
        (keeper, bootstrap) => {
            let other = spike_e2e::binaries()?;
            (
                keeper.unwrap_or_else(|| other.keeper.clone()),
                bootstrap.unwrap_or_else(|| other.bootstrap.clone()),
            )
        }
    };
    Ok(Binaries { nexus, keeper, bootstrap })
}
