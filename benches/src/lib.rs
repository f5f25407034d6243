//! Shared helpers for spike-rs benchmarks and load runners.
//!
//! - [`payload`]: deterministic payloads, so runs are comparable;
//! - [`flags`]: the few `--name value` flags the runners take (no CLI framework needed);
//! - [`latency`]: percentiles of recorded request latencies;
//! - [`procfs`]: open descriptors, RSS and limits of a process, disk use of a directory;
//! - [`cluster`]: the real system to measure — `spike-e2e`'s [`spike_e2e::Cluster`] (Nexus,
//!   Keepers and Bootstrap as processes on 127.0.0.1, the dev agent in this process), the one
//!   process harness of tests and benchmarks, set up for measuring.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cluster;
pub mod flags;
pub mod latency;
pub mod procfs;

/// Deterministic payload of `len` bytes, so runs are comparable.
pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The value the runners store as secret number `index`, `len` bytes long (at least its
/// 9-byte prefix): deterministic, so a read can be checked without keeping what was written.
pub fn secret_value(index: usize, len: usize) -> String {
    let mut v = format!("{index:08}-");
    v.extend(std::iter::repeat_n('x', len.saturating_sub(v.len())));
    v
}

/// What went wrong while setting up or running a benchmark; the message says what and, for
/// process failures, carries the tail of the process's log.
#[derive(Debug)]
pub struct BenchError(pub String);

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

impl From<spike_e2e::HarnessError> for BenchError {
    fn from(e: spike_e2e::HarnessError) -> Self {
        Self(e.0)
    }
}

/// Result of benchmark helpers.
pub type Result<T> = std::result::Result<T, BenchError>;

/// The `main` of a benchmark runner: `--help` prints `usage`; otherwise the arguments are
/// parsed as flags (`switches` take no value) by `parse`, and `run` goes on a multi-threaded
/// runtime. Exit codes: 0 when `run` returns `Ok(true)`, 1 for `Ok(false)` (a check failed) or
/// an error, 2 for bad flags.
pub fn bench_main<O, Fut>(
    name: &str,
    usage: &str,
    switches: &[&str],
    parse: impl FnOnce(flags::Flags) -> Result<O>,
    run: impl FnOnce(O) -> Fut,
) -> std::process::ExitCode
where
    Fut: std::future::Future<Output = Result<bool>>,
{
    use std::process::ExitCode;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{usage}");
        return ExitCode::SUCCESS;
    }
    let opts = match flags::Flags::parse(args, switches).and_then(parse) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{name}: {e}\n{usage}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(opts)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn fail<T>(message: impl Into<String>) -> Result<T> {
    Err(BenchError(message.into()))
}
