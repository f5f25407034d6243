//! What the server binaries share around their main task: the tokio runtime it runs on, and
//! how a failure reaches the operator (a line on standard error, a non-zero exit code).

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use tokio::runtime::Runtime;

/// Starts the multi-threaded tokio runtime a binary runs on. If it cannot start, says so on
/// standard error as `{program}: cannot start the async runtime: ...` and gives the exit code
/// to return.
pub fn runtime(program: &str) -> Result<Runtime, ExitCode> {
    Runtime::new().map_err(|e| {
        eprintln!("{program}: cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })
}

/// Runs a daemon's main task (`spike-nexus`, `spike-keeper`, `spike-dev-agent`) to completion
/// on a new [`runtime`]: success exits 0; a failure is printed as `{program}: {error}` and
/// exits 1.
pub fn run_main<E: Display>(program: &str, task: impl Future<Output = Result<(), E>>) -> ExitCode {
    let runtime = match runtime(program) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::FAILURE
        }
    }
}
