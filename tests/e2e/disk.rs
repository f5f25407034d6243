//! Disk faults (issue 8): a full disk under a running Nexus, and a data directory that has
//! become read-only across a restart. Either way a client must get a clear error — never a
//! hang, never a false success — and once the fault is gone and Nexus restarts, every write
//! it acknowledged must be intact and the audit chain unbroken.
//!
//! The faults are real kernel conditions, produced by whichever of these mechanisms this
//! machine allows; each test runs every mechanism available and fails if none is:
//! - full disk: a size-limited tmpfs mounted on the data directory, filled up (needs
//!   `CAP_SYS_ADMIN`: root in CI); and always `RLIMIT_FSIZE` on the Nexus process (`ulimit -f`
//!   in a wrapper shell, with `SIGXFSZ` ignored so the write fails with `EFBIG` instead of
//!   killing the process) — unprivileged.
//! - read-only: a read-only bind mount over the data directory (needs `CAP_SYS_ADMIN`); the
//!   same inside a user and mount namespace of the Nexus process alone (`unshare -rm`, where
//!   unprivileged user namespaces are allowed); or, for a non-root user, removing write
//!   permission (which root would ignore, so it is never used as root).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use spike_client::{Error, Spike};
use spike_core::secret::SecretValues;
use spike_e2e::{Cluster, ClusterSpec};

const READY_LIMIT: Duration = Duration::from_secs(20);
/// A single request must be answered within this, fault or not.
const REQUEST_LIMIT: Duration = Duration::from_secs(15);

/// Runs a command; `Err` carries its output when it fails or cannot start.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run {program}: {e}")),
    }
}

/// A mount on `path`, lazily unmounted when dropped (even while Nexus still has files open).
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

async fn bootstrapped() -> Cluster {
    let spec = ClusterSpec { log_level: "warn".into(), ..ClusterSpec::default() };
    let mut c = Cluster::new(spec).await.unwrap();
    std::fs::create_dir_all(c.nexus_data_dir()).unwrap();
    c.start_keepers().await.unwrap();
    c
}

async fn start_and_bootstrap(c: &mut Cluster) {
    c.start_nexus().unwrap();
    let out = c.bootstrap(&[]).await.unwrap();
    assert_eq!(out.code, Some(0), "bootstrap failed: {out:?}\n{}", c.logs());
    c.wait_ready(READY_LIMIT).await.unwrap();
}

fn value(tag: &str, i: usize, len: usize) -> SecretValues {
    let id = format!("{tag}-{i}");
    let pad: String = id.chars().cycle().take(len).collect();
    [("id", id), ("pad", pad)].into_iter().collect()
}

/// What `disk/<tag>/<i>` was written with (`len`: the pad length).
fn expected(path: &str, len: usize) -> SecretValues {
    let mut parts = path.split('/').skip(1);
    let tag = parts.next().unwrap_or_default();
    let index = parts.next().and_then(|i| i.parse().ok()).unwrap_or(usize::MAX);
    value(tag, index, len)
}

/// Writes `n` secrets, every one of which must be acknowledged; returns their paths.
async fn write_ok(c: &Cluster, pilot: &Spike, tag: &str, n: usize) -> Vec<(String, usize)> {
    let mut done = Vec::new();
    for i in 0..n {
        let path = format!("disk/{tag}/{i}");
        if let Err(e) = pilot.put_secret(&path, value(tag, i, 512)).await {
            panic!("write {path} failed with no fault: {e}\n{}", c.logs());
        }
        done.push((path, 512));
    }
    done
}

/// Checks that every acknowledged write reads back exactly, and that the audit chain holds.
async fn assert_intact(c: &Cluster, acked: &[(String, usize)], what: &str) {
    let pilot = c.client("pilot-superuser").await.unwrap();
    let listed = pilot.list_secrets().await.unwrap();
    for (path, len) in acked {
        assert!(listed.contains(path), "{what}: {path} not listed\n{}", c.logs());
        let got = match pilot.get_secret(path).await {
            Ok(got) => got,
            Err(e) => panic!("{what}: acknowledged {path} unreadable: {e}\n{}", c.logs()),
        };
        assert!(
            got.iter().eq(expected(path, *len).iter()),
            "{what}: {path} does not hold what was acknowledged"
        );
    }
    let audit = c.nexus_data_dir().join("audit.log");
    if let Err(e) = spike_server::audit::verify_file(&audit) {
        panic!("{what}: the audit chain is broken: {e}");
    }
}

/// Writes until Nexus refuses (bounded in count, each call bounded in time); returns what was
/// acknowledged and the refusal. Panics on a hang or if nothing is ever refused.
async fn write_until_refused(
    c: &Cluster,
    pilot: &Spike,
    tag: &str,
    max: usize,
) -> (Vec<(String, usize)>, Error) {
    let mut acked = Vec::new();
    for i in 0..max {
        let path = format!("disk/{tag}/{i}");
        let len = 8192;
        match tokio::time::timeout(REQUEST_LIMIT, pilot.put_secret(&path, value(tag, i, len))).await
        {
            Err(_) => panic!("{tag}: write {i} hung for {REQUEST_LIMIT:?}\n{}", c.logs()),
            Ok(Ok(())) => acked.push((path, len)),
            Ok(Err(e)) => return (acked, e),
        }
    }
    panic!("{tag}: {max} writes of 8 KiB all succeeded on a full disk\n{}", c.logs())
}

/// The refusal a client gets on a full disk: HTTP 507 `store_full`, and a message that says
/// what to do (not "HTTP 500, see the log").
fn assert_out_of_space(e: &Error, tag: &str) {
    assert!(
        matches!(e, Error::Server { status: 507, code } if code == "store_full"),
        "{tag}: refused with {e:?}, not Nexus's 507 store_full"
    );
    let text = e.to_string();
    assert!(text.contains("out of disk space") && text.contains("free space"), "{tag}: {text}");
}

/// After the first refusal: more writes are refused too (fail closed, not a success that a
/// restart would undo), and reads of acknowledged secrets are right or refused, never wrong.
async fn assert_fails_closed(c: &Cluster, pilot: &Spike, tag: &str, acked: &[(String, usize)]) {
    for i in 0..3 {
        let path = format!("disk/{tag}/after-{i}");
        let put = tokio::time::timeout(REQUEST_LIMIT, pilot.put_secret(&path, value(tag, i, 16)));
        match put.await {
            Err(_) => panic!("{tag}: a write after the fault hung\n{}", c.logs()),
            Ok(Ok(())) => panic!("{tag}: a write after a failed flush succeeded\n{}", c.logs()),
            Ok(Err(e)) => assert_out_of_space(&e, tag),
        }
    }
    if let Some((path, len)) = acked.first() {
        let get = tokio::time::timeout(REQUEST_LIMIT, pilot.get_secret(path)).await;
        match get {
            Err(_) => panic!("{tag}: a read on the faulty disk hung\n{}", c.logs()),
            Ok(Ok(got)) => assert!(got.iter().eq(expected(path, *len).iter()), "{tag}: {path}"),
            // The audit log is on the same disk and fails closed: a refused read is right.
            Ok(Err(e)) => assert_out_of_space(&e, tag),
        }
    }
}

/// How the data directory is filled up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FullDisk {
    /// A 32 MiB tmpfs on the data directory, filled with a filler file.
    Tmpfs,
    /// `RLIMIT_FSIZE` on Nexus, a little above what its files hold.
    FileSizeLimit,
}

impl FullDisk {
    /// `Err` says why this mechanism is not available here (tried on a scratch directory).
    fn probe(self) -> Result<(), String> {
        let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = arg(scratch.path());
        match self {
            FullDisk::Tmpfs => {
                run("mount", &["-t", "tmpfs", "-o", "size=1m", "spike-e2e", dir])?;
                drop(Mounted(scratch.path().to_path_buf()));
                Ok(())
            }
            FullDisk::FileSizeLimit => {
                // 1 block of 512 bytes; a 1 KiB write must fail with EFBIG, not kill the shell.
                let file = format!("{dir}/big");
                let script = "trap '' XFSZ; ulimit -f 1 && ! head -c 1024 /dev/zero > \"$0\"";
                run("sh", &["-c", script, &file])
            }
        }
    }
}

/// Fills a tmpfs up to the last byte; bounded by the file system's size.
fn fill(path: &Path) -> std::io::Result<u64> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    let mut written = 0u64;
    for chunk in [1 << 20, 4096, 1] {
        let buf = vec![0u8; chunk];
        // 64 MiB at most: twice the file system's size.
        for _ in 0..(64 << 20) / chunk {
            match file.write(&buf) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => return Err(e),
            }
        }
    }
    file.sync_all()?;
    Ok(written)
}

fn largest_file(dir: &Path) -> u64 {
    let mut max = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                max = max.max(meta.len());
            }
        }
    }
    max
}

/// One full-disk run; `None` if `mechanism` is not available here (with why, printed).
async fn full_disk(mechanism: FullDisk) -> Option<()> {
    let tag = format!("{mechanism:?}").to_lowercase();
    if let Err(e) = mechanism.probe() {
        eprintln!("disk: {tag} not available here ({e}); using the other mechanisms");
        return None;
    }
    let mut c = bootstrapped().await;
    let data = c.nexus_data_dir();
    let mut _mount = None;
    if mechanism == FullDisk::Tmpfs {
        let opts = "size=32m,mode=0700";
        run("mount", &["-t", "tmpfs", "-o", opts, "spike-e2e", arg(&data)]).unwrap();
        _mount = Some(Mounted(data.clone()));
    }
    start_and_bootstrap(&mut c).await;
    let pilot = c.client("pilot-superuser").await.unwrap();
    let mut acked = write_ok(&c, &pilot, &tag, 20).await;

    // The fault.
    let filler = data.join("filler");
    match mechanism {
        FullDisk::Tmpfs => {
            let bytes = fill(&filler).unwrap();
            eprintln!("disk: tmpfs filled with {bytes} bytes");
        }
        FullDisk::FileSizeLimit => {
            c.kill_nexus();
            // Room for Nexus to start (sled may begin a new 512 KiB segment on open) and for
            // some writes, not for the 8 MiB that `write_until_refused` tries.
            let limit = largest_file(&data) + (3 << 19);
            let blocks = limit.div_ceil(512).to_string();
            let script = "trap '' XFSZ; ulimit -f \"$0\" && exec \"$1\"";
            c.set_nexus_launcher(["sh", "-c", script, &blocks].map(OsString::from).to_vec());
            c.start_nexus().unwrap();
            c.wait_ready(READY_LIMIT).await.unwrap();
        }
    }
    let pilot = c.client("pilot-superuser").await.unwrap();
    let full_tag = format!("{tag}-full");
    let (more, refusal) = write_until_refused(&c, &pilot, &full_tag, 1000).await;
    eprintln!("disk: {tag}: {} more writes acknowledged, then: {refusal}", more.len());
    acked.extend(more);
    assert_out_of_space(&refusal, &tag);
    assert_fails_closed(&c, &pilot, &full_tag, &acked).await;
    assert!(c.nexus_running(), "{tag}: Nexus died on a full disk\n{}", c.logs());
    // The operator's side of "clear": Nexus's log names the OS error.
    let os_error = match mechanism {
        FullDisk::Tmpfs => "No space left on device",
        FullDisk::FileSizeLimit => "File too large",
    };
    let log = c.nexus_log();
    assert!(log.contains(os_error), "{tag}: Nexus's log does not say {os_error:?}\n{log}");

    // The fault goes; Nexus restarts (its store refuses writes until then) with everything.
    c.kill_nexus();
    match mechanism {
        FullDisk::Tmpfs => std::fs::remove_file(&filler).unwrap(),
        FullDisk::FileSizeLimit => c.set_nexus_launcher(Vec::new()),
    }
    c.start_nexus().unwrap();
    c.wait_ready(READY_LIMIT).await.unwrap();
    assert_intact(&c, &acked, &tag).await;
    let pilot = c.client("pilot-superuser").await.unwrap();
    acked.extend(write_ok(&c, &pilot, &format!("{tag}-healed"), 3).await);
    assert_intact(&c, &acked, &tag).await;
    drop(_mount);
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_writes_clearly_and_loses_nothing_acknowledged() {
    let mut ran = Vec::new();
    for mechanism in [FullDisk::Tmpfs, FullDisk::FileSizeLimit] {
        if full_disk(mechanism).await.is_some() {
            ran.push(mechanism);
        }
    }
    eprintln!("disk: full disk checked with {ran:?}");
    assert!(!ran.is_empty(), "no full-disk mechanism works on this machine");
}

/// How the data directory is made read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadOnly {
    /// A read-only bind mount of the directory over itself.
    BindMount,
    /// The same, inside a user and mount namespace that only Nexus runs in.
    UserNamespace,
    /// No write permission (only for a non-root user: root ignores it).
    Permissions,
}

const RO_SCRIPT: &str =
    "mount --bind \"$0\" \"$0\" && mount -o remount,bind,ro \"$0\" && exec \"$1\"";

impl ReadOnly {
    /// `Err` says why this mechanism is not available here (tried on a scratch directory).
    fn probe(self) -> Result<(), String> {
        let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = scratch.path();
        let mut c = None;
        let mount = self.apply(&mut c, dir)?;
        let writable = match self {
            // Only the namespace sees that mount; applying it checked it inside.
            ReadOnly::UserNamespace => false,
            _ => std::fs::write(dir.join("probe"), b"x").is_ok(),
        };
        drop(mount);
        let _ = run("chmod", &["-R", "u+w", arg(dir)]);
        if writable {
            return Err("the directory is still writable (root ignores permissions)".into());
        }
        Ok(())
    }

    /// Makes `dir` read-only (for the Nexus that `c` starts next, if given).
    fn apply(self, c: &mut Option<&mut Cluster>, dir: &Path) -> Result<Option<Mounted>, String> {
        match self {
            ReadOnly::BindMount => {
                run("mount", &["--bind", arg(dir), arg(dir)])?;
                let mounted = Mounted(dir.to_path_buf());
                run("mount", &["-o", "remount,bind,ro", arg(dir)])?;
                Ok(Some(mounted))
            }
            ReadOnly::UserNamespace => {
                // `unshare -r` maps this user to root in a new user namespace, in which a
                // mount namespace may be changed without privileges.
                match c {
                    Some(c) => {
                        let launcher = ["unshare", "-rm", "sh", "-c", RO_SCRIPT, arg(dir)];
                        c.set_nexus_launcher(launcher.map(OsString::from).to_vec());
                    }
                    None => {
                        let probe = RO_SCRIPT.replace("exec \"$1\"", "! touch \"$0/probe\"");
                        run("unshare", &["-rm", "sh", "-c", &probe, arg(dir)])?;
                    }
                }
                Ok(None)
            }
            ReadOnly::Permissions => {
                run("chmod", &["-R", "a-w", arg(dir)])?;
                Ok(None)
            }
        }
    }
}

/// One read-only run; `None` if `mechanism` is not available here (with why, printed).
async fn read_only(mechanism: ReadOnly) -> Option<()> {
    let tag = format!("{mechanism:?}").to_lowercase();
    if let Err(e) = mechanism.probe() {
        eprintln!("disk: {tag} not available here ({e}); using the other mechanisms");
        return None;
    }
    let mut c = bootstrapped().await;
    start_and_bootstrap(&mut c).await;
    let pilot = c.client("pilot-superuser").await.unwrap();
    let acked = write_ok(&c, &pilot, &tag, 20).await;
    c.kill_nexus();
    let data = c.nexus_data_dir();
    let mount = match mechanism.apply(&mut Some(&mut c), &data) {
        Ok(mount) => mount,
        Err(e) => panic!("{tag}: worked on a scratch directory, not on Nexus's: {e}"),
    };

    // Nexus must refuse to start, saying why, rather than run without a store or hang.
    c.start_nexus().unwrap();
    let Some(status) = c.wait_nexus_exit(Duration::from_secs(20)).await else {
        panic!("{tag}: Nexus still runs on a read-only data directory\n{}", c.logs());
    };
    assert!(!status.success(), "{tag}: Nexus exited with {status} on a read-only directory");
    let log = c.nexus_log();
    let os_error = match mechanism {
        ReadOnly::Permissions => "Permission denied",
        _ => "Read-only file system",
    };
    assert!(log.contains(os_error), "{tag}: Nexus's log does not say {os_error:?}\n{log}");
    assert!(log.contains(arg(&data)), "{tag}: Nexus's log does not name {}\n{log}", data.display());
    c.kill_nexus();

    // The fault goes; everything is there.
    match mechanism {
        ReadOnly::BindMount => drop(mount),
        ReadOnly::UserNamespace => c.set_nexus_launcher(Vec::new()),
        ReadOnly::Permissions => run("chmod", &["-R", "u+w", arg(&data)]).unwrap(),
    }
    c.start_nexus().unwrap();
    c.wait_ready(READY_LIMIT).await.unwrap();
    assert_intact(&c, &acked, &tag).await;
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_data_dir_stops_nexus_with_a_clear_error_and_loses_nothing() {
    let mut ran = Vec::new();
    for mechanism in [ReadOnly::BindMount, ReadOnly::UserNamespace, ReadOnly::Permissions] {
        if read_only(mechanism).await.is_some() {
            ran.push(mechanism);
        }
    }
    eprintln!("disk: read-only checked with {ran:?}");
    assert!(!ran.is_empty(), "no read-only mechanism works on this machine");
}
