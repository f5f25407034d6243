//! The Python package `spike_sdk` (ctypes over the shared library): its pytest suite in
//! `python/tests` runs against an in-process agent and Nexus.
//!
//! The interpreter is `$SPIKE_TEST_PYTHON` if it has pytest, else `python3`.

mod support;

use std::process::Command;

use support::{System, crate_dir, dead_url, lib_dir};

fn has_pytest(python: &str) -> bool {
    Command::new(python).args(["-c", "import pytest"]).output().is_ok_and(|o| o.status.success())
}

fn python() -> String {
    let candidates = std::env::var("SPIKE_TEST_PYTHON").into_iter().chain(["python3".to_owned()]);
    for candidate in candidates {
        if has_pytest(&candidate) {
            return candidate;
        }
    }
    panic!("no Python with pytest: install it (`pip install pytest`) or set SPIKE_TEST_PYTHON");
}

/// `python` in `ffi/python` with the package importable and a superuser identity.
fn python_command(python: &str, sys: &System) -> Command {
    let mut cmd = Command::new(python);
    cmd.current_dir(crate_dir().join("python"))
        .env("PYTHONPATH", crate_dir().join("python"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("SPIKE_FFI_LIB", lib_dir().join("libspike_ffi.so"))
        .env("SPIFFE_ENDPOINT_SOCKET", sys.endpoint("pilot-superuser"))
        .env("SPIKE_NEXUS_API_URL", sys.url())
        .env_remove("SPIKE_NEXUS_URL")
        .env_remove("SPIKE_NEXUS_JWT_API_URL")
        .env_remove("SPIKE_TRUST_ROOT");
    cmd
}

#[test]
fn pytest_suite_passes_against_a_live_nexus() {
    let python = python();
    let sys = System::start();
    let out = python_command(&python, &sys)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .env("SPIKE_TEST_APP_SOCKET", sys.endpoint("app"))
        .env("SPIKE_NEXUS_JWT_API_URL", sys.jwt_url())
        .env("SPIKE_TEST_DOWN_URL", dead_url())
        .output()
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pytest failed with {python}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("skipped"), "no test may be skipped here:\n{stdout}");
    eprintln!("{stdout}");
}

#[test]
fn readme_example_runs_as_printed() {
    let sys = System::start();
    let python = std::env::var("SPIKE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = python_command(&python, &sys).arg("examples/readme.py").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "s3cr3t\nmissing: 303\nb'attack at dawn'\n");
}
