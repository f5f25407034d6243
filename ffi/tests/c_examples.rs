//! The C API from C: `examples/put_get.c` and the programs in `tests/c/` are compiled with
//! `cc` against `include/spike.h` and the built library, then run against an in-process agent
//! and Nexus. `put_get.c` links the shared library (`-lspike_ffi`), the test programs the static
//! one with the documented native libraries, so both link lines stay true. The put/get/free
//! loop and the JWT-SVID mode case also run under valgrind, which must report no leak and no
//! memory error.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

use support::{System, crate_dir, dead_url, lib_dir};

/// What a static link needs besides `libspike_ffi.a` on Linux (from
/// `cargo rustc -p spike-ffi --crate-type staticlib -- --print native-static-libs`).
const NATIVE_STATIC_LIBS: &[&str] =
    &["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"];

/// Iterations of the put/get/free loop under valgrind: bounded, since every TLS operation is
/// some fifty times slower there.
const VALGRIND_ITERATIONS: &str = "12";

enum Link {
    Shared,
    Static,
}

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("spike-ffi-c");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compiles `source` into an executable named `name`, once per test run.
fn compile(
    cell: &'static OnceLock<PathBuf>,
    source: &str,
    name: &str,
    link: Link,
) -> &'static Path {
    cell.get_or_init(|| {
        let lib = lib_dir();
        let exe = out_dir().join(name);
        let mut cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
        cc.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-O0"])
            .arg("-I")
            .arg(crate_dir().join("include"))
            .arg(crate_dir().join(source))
            .arg("-o")
            .arg(&exe);
        match link {
            Link::Shared => {
                cc.arg("-L")
                    .arg(lib)
                    .arg("-lspike_ffi")
                    .arg(format!("-Wl,-rpath,{}", lib.display()));
            }
            Link::Static => {
                cc.arg(lib.join("libspike_ffi.a")).args(NATIVE_STATIC_LIBS);
            }
        }
        let out = cc.output().expect("run cc");
        assert!(
            out.status.success(),
            "cc {source} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        exe
    })
}

fn put_get() -> &'static Path {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    compile(&CELL, "examples/put_get.c", "put_get", Link::Shared)
}

fn readme() -> &'static Path {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    compile(&CELL, "examples/readme.c", "readme", Link::Shared)
}

fn errors() -> &'static Path {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    compile(&CELL, "tests/c/errors.c", "errors", Link::Static)
}

fn api_loop() -> &'static Path {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    compile(&CELL, "tests/c/api_loop.c", "api_loop", Link::Static)
}

/// A command with a clean SPIKE environment: only what the test sets.
fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for var in [
        "SPIFFE_ENDPOINT_SOCKET",
        "SPIKE_NEXUS_API_URL",
        "SPIKE_NEXUS_URL",
        "SPIKE_NEXUS_JWT_API_URL",
        "SPIKE_TRUST_ROOT",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn as_identity(cmd: &mut Command, sys: &System, identity: &str) {
    cmd.env("SPIFFE_ENDPOINT_SOCKET", sys.endpoint(identity)).env("SPIKE_NEXUS_API_URL", sys.url());
}

fn check(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn put_get_example_prints_the_value_it_wrote() {
    let exe = put_get();
    let sys = System::start();
    let mut cmd = command(exe);
    as_identity(&mut cmd, &sys, "pilot-superuser");
    let out = cmd.args(["examples/c/greeting", "hello from C via spike-ffi"]).output().unwrap();
    let stdout = check(&out, "put_get");
    assert_eq!(stdout, "greeting = hello from C via spike-ffi\n");

    // Without an identity it fails with the code's message and the detail, and exits 1.
    let out = command(exe).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("connecting failed (200)"), "{stderr}");
    assert!(stderr.contains("SPIFFE_ENDPOINT_SOCKET is not set"), "{stderr}");
}

#[test]
fn readme_example_runs_as_printed() {
    let sys = System::start();
    let mut cmd = command(readme());
    as_identity(&mut cmd, &sys, "pilot-superuser");
    let out = cmd.output().unwrap();
    assert_eq!(check(&out, "readme.c"), "pass = s3cr3t\n");
    let mut cmd = command(readme());
    as_identity(&mut cmd, &sys, "app");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("spike: access denied"));
}

#[test]
fn bad_arguments_and_a_missing_workload_api_fail_with_their_codes() {
    let out = command(errors()).arg("args").output().unwrap();
    assert_eq!(check(&out, "errors args"), "ok args\n");
    for case in ["endpoint_not_set", "workload_api_down"] {
        let out = command(errors()).arg(case).output().unwrap();
        assert_eq!(check(&out, case), format!("ok {case}\n"));
    }
}

#[test]
fn server_side_errors_map_to_forbidden_not_found_and_unreachable() {
    let exe = errors();
    let sys = System::start();
    for (case, identity) in
        [("client_args", "pilot-superuser"), ("not_found", "pilot-superuser"), ("forbidden", "app")]
    {
        let mut cmd = command(exe);
        as_identity(&mut cmd, &sys, identity);
        let out = cmd.arg(case).output().unwrap();
        assert_eq!(check(&out, case), format!("ok {case}\n"));
    }
    let mut cmd = command(exe);
    as_identity(&mut cmd, &sys, "pilot-superuser");
    let out = cmd.env("SPIKE_TEST_DOWN_URL", dead_url()).arg("nexus_down").output().unwrap();
    assert_eq!(check(&out, "nexus_down"), "ok nexus_down\n");
}

#[test]
fn jwt_mode_reads_what_the_policy_grants_and_nothing_else() {
    let exe = errors();
    let sys = System::start();
    let mut cmd = command(exe);
    as_identity(&mut cmd, &sys, "app");
    let out = cmd
        .env("SPIKE_NEXUS_JWT_API_URL", sys.jwt_url())
        .env("SPIKE_TEST_ADMIN_SOCKET", sys.endpoint("pilot-superuser"))
        .arg("jwt")
        .output()
        .unwrap();
    assert_eq!(check(&out, "jwt"), "ok jwt\n");
    // JWT mode with no URL: SPIKE_NEXUS_API_URL (the mTLS listener) is not a fallback.
    let mut cmd = command(exe);
    as_identity(&mut cmd, &sys, "app");
    let out = cmd.arg("jwt_no_url").output().unwrap();
    assert_eq!(check(&out, "jwt_no_url"), "ok jwt_no_url\n");
}

#[test]
fn the_whole_api_round_trips_from_c() {
    let exe = api_loop();
    let sys = System::start();
    let mut cmd = command(exe);
    as_identity(&mut cmd, &sys, "pilot-superuser");
    let out = cmd.arg("3").output().unwrap();
    assert_eq!(check(&out, "api_loop"), "ok 3\n");
}

/// Runs `cmd` (a `valgrind` command with the environment set) on `exe` with `args`; fails on
/// any leak or memory error not in `tests/valgrind.supp`. Returns stdout; `None` when
/// `SPIKE_SKIP_VALGRIND` is set.
fn under_valgrind(mut cmd: Command, exe: &Path, args: &[&str], log_name: &str) -> Option<String> {
    if std::env::var_os("SPIKE_SKIP_VALGRIND").is_some() {
        eprintln!("SPIKE_SKIP_VALGRIND is set: not running valgrind");
        return None;
    }
    let started = Instant::now();
    let log = out_dir().join(log_name);
    let out = cmd
        .arg(format!("--log-file={}", log.display()))
        .args(std::env::var("SPIKE_VALGRIND_ARGS").unwrap_or_default().split_whitespace())
        .args([
            "--leak-check=full",
            // Deep enough that a suppression's frame (e.g. lazy_static's) is always recorded.
            "--num-callers=50",
            "--show-leak-kinds=definite,indirect,possible",
            "--errors-for-leak-kinds=definite,indirect,possible",
            "--error-exitcode=99",
            &format!("--suppressions={}", crate_dir().join("tests/valgrind.supp").display()),
            "--quiet",
        ])
        .arg(exe)
        .args(args)
        .output()
        .expect("valgrind is installed (or set SPIKE_SKIP_VALGRIND=1)");
    let report = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        out.status.success(),
        "valgrind reported problems ({}); full log in {}:\n{report}\nstdout: {}\nstderr: {}",
        out.status,
        log.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("valgrind: {} {args:?} clean in {:?}", exe.display(), started.elapsed());
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn put_get_free_loop_leaks_nothing_under_valgrind() {
    let sys = System::start();
    let mut cmd = command("valgrind");
    as_identity(&mut cmd, &sys, "pilot-superuser");
    if let Some(stdout) = under_valgrind(cmd, api_loop(), &[VALGRIND_ITERATIONS], "valgrind.log") {
        assert_eq!(stdout, format!("ok {VALGRIND_ITERATIONS}\n"));
    }
}

#[test]
fn jwt_mode_leaks_nothing_under_valgrind() {
    let sys = System::start();
    let mut cmd = command("valgrind");
    as_identity(&mut cmd, &sys, "app");
    cmd.env("SPIKE_NEXUS_JWT_API_URL", sys.jwt_url())
        .env("SPIKE_TEST_ADMIN_SOCKET", sys.endpoint("pilot-superuser"));
    if let Some(stdout) = under_valgrind(cmd, errors(), &["jwt"], "valgrind-jwt.log") {
        assert_eq!(stdout, "ok jwt\n");
    }
}
