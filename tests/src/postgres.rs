//! A real PostgreSQL server for tests, and Nexus replicas that share it.
//!
//! [`PgServer::start`] runs `initdb` and `pg_ctl start` from the Debian `postgresql` package
//! (`.ci/run` installs it) into a temporary directory, listening on 127.0.0.1 only, on a free
//! port, with its Unix socket inside that directory. As root (CI), PostgreSQL refuses to run,
//! so every server command runs as the `postgres` user through `runuser`. The server is
//! stopped (`-m immediate`) when the value is dropped. Binaries come from
//! `SPIKE_TEST_PG_BIN_DIR`, else `PATH`, else the newest `/usr/lib/postgresql/<v>/bin`; a
//! machine without them fails the test with a message saying how to install them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use spike_client::{RetryPolicy, Spike};

use crate::{Cluster, ClusterSpec, HarnessError, Proc, Result, fail, free_port, https_client};

/// A running PostgreSQL server in a temporary directory.
#[derive(Debug)]
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_root: bool,
}

impl PgServer {
    /// Initialises and starts a server (bounded: 60 s).
    pub fn start() -> Result<Self> {
        Self::start_with_tls(None)
    }

    /// Like [`PgServer::start`]; with `tls = Some((cert_pem, key_pem))` the server also
    /// accepts TLS with that certificate (and still plain connections).
    pub fn start_with_tls(tls: Option<(&str, &str)>) -> Result<Self> {
        let bin = pg_bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("spike-pg-")
            .tempdir()
            .map_err(|e| HarnessError(format!("temp dir: {e}")))?;
        let as_root = is_root();
        if as_root {
            run(Command::new("chown").arg("postgres:postgres").arg(dir.path()), "chown")?;
        }
        let port = free_port()?;
        let server = Self { dir, bin, port, as_root };
        let data = server.data_dir();
        server.run_pg(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 \
             -c fsync=on -c synchronous_commit=on",
            server.dir.path().display()
        );
        if let Some((cert, key)) = tls {
            let (cert_file, key_file) = (data.join("server.crt"), data.join("server.key"));
            for (file, pem) in [(&cert_file, cert), (&key_file, key)] {
                std::fs::write(file, pem)
                    .map_err(|e| HarnessError(format!("writing {}: {e}", file.display())))?;
            }
            run(Command::new("chmod").arg("600").arg(&key_file), "chmod")?;
            if server.as_root {
                run(
                    Command::new("chown").arg("postgres:postgres").arg(&cert_file).arg(&key_file),
                    "chown",
                )?;
            }
            options.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        let log = server.dir.path().join("postgres.log");
        server
            .run_pg(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-l".as_ref(),
                    log.as_os_str(),
                    "-o".as_ref(),
                    options.as_ref(),
                    "-w".as_ref(),
                    "-t".as_ref(),
                    "60".as_ref(),
                    "start".as_ref(),
                ],
            )
            .map_err(|e| {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                HarnessError(format!("{e}\n--- postgres.log ---\n{text}"))
            })?;
        Ok(server)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq connection string for database `db` as the superuser `postgres`.
    pub fn dsn(&self, db: &str) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname={db} connect_timeout=5", self.port)
    }

    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        if self.as_root {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }

    fn run_pg(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Result<String> {
        run(self.command(tool).args(args).current_dir(self.dir.path()), tool)
    }

    /// Runs SQL (`psql -v ON_ERROR_STOP=1 -c`) in database `db`; returns its output.
    pub fn sql(&self, db: &str, sql: &str) -> Result<String> {
        let port = self.port.to_string();
        run(
            self.command("psql")
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
                .args(["-p", &port, "-U", "postgres", "-d", db, "-c", sql])
                .current_dir(self.dir.path()),
            "psql",
        )
    }

    /// Creates an empty database.
    pub fn create_database(&self, db: &str) -> Result<()> {
        self.sql("postgres", &format!("CREATE DATABASE {db}")).map(drop)
    }

    /// Dumps database `db` (`pg_dump`, plain SQL) to a file in the server's directory.
    pub fn dump(&self, db: &str, name: &str) -> Result<PathBuf> {
        let file = self.dir.path().join(format!("{name}.sql"));
        let port = self.port.to_string();
        let sql = run(
            self.command("pg_dump")
                .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "--clean"])
                .arg("--if-exists")
                .arg(db)
                .current_dir(self.dir.path()),
            "pg_dump",
        )?;
        std::fs::write(&file, sql).map_err(|e| HarnessError(format!("writing the dump: {e}")))?;
        Ok(file)
    }

    /// Restores a dump made by [`PgServer::dump`] into `db` (replacing its tables), in one
    /// transaction.
    pub fn restore(&self, db: &str, dump: &Path) -> Result<()> {
        let sql = std::fs::read_to_string(dump)
            .map_err(|e| HarnessError(format!("reading the dump: {e}")))?;
        let port = self.port.to_string();
        let mut child = self
            .command("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"])
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", db])
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| HarnessError(format!("cannot run psql: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin
                .write_all(sql.as_bytes())
                .map_err(|e| HarnessError(format!("feeding psql: {e}")))?;
        }
        let out = child.wait_with_output().map_err(|e| HarnessError(format!("psql: {e}")))?;
        if !out.status.success() {
            return fail(format!(
                "restoring {} failed: {}",
                dump.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .current_dir(self.dir.path())
            .output();
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().map_err(|e| HarnessError(format!("cannot run {what}: {e}")))?;
    if !out.status.success() {
        return fail(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

fn pg_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SPIKE_TEST_PG_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let has_tools =
        |dir: &Path| ["initdb", "pg_ctl", "psql", "pg_dump"].iter().all(|t| dir.join(t).exists());
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(dir) = versions.into_iter().rev().find(|d| has_tools(d)) {
        return Ok(dir);
    }
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_tools(d))
    {
        return Ok(dir);
    }
    fail(
        "PostgreSQL server binaries (initdb, pg_ctl, psql, pg_dump) not found: install the \
         Debian package (apt-get install postgresql) or set SPIKE_TEST_PG_BIN_DIR",
    )
}

/// One Nexus replica process on the shared PostgreSQL store.
#[derive(Debug)]
pub struct Replica {
    /// Its name in logs ("nexus-a", ...).
    pub name: String,
    /// The process.
    pub proc: Proc,
    /// Its URL.
    pub url: String,
}

/// The environment of a replica named `name` on port `port` over database `dsn` (plain TCP on
/// loopback), with short policy-refresh and checkpoint intervals for tests.
pub fn replica_env(
    cluster: &Cluster,
    name: &str,
    port: u16,
    dsn: &str,
) -> Result<BTreeMap<String, String>> {
    let mut env = cluster.nexus_env()?;
    let data = cluster.dir().join(format!("{name}-data"));
    for (k, v) in [
        ("SPIKE_NEXUS_TLS_PORT", format!("127.0.0.1:{port}")),
        ("SPIKE_NEXUS_BACKEND_STORE", "postgres".into()),
        ("SPIKE_NEXUS_POSTGRES_DSN", dsn.into()),
        ("SPIKE_NEXUS_POSTGRES_TLS", "disable".into()),
        ("SPIKE_NEXUS_POSTGRES_POOL_SIZE", "8".into()),
        ("SPIKE_NEXUS_DATA_DIR", data.display().to_string()),
        ("SPIKE_NEXUS_POLICY_REFRESH", "200ms".into()),
        ("SPIKE_NEXUS_ROLLBACK_CHECKPOINT_INTERVAL", "200ms".into()),
    ] {
        env.insert(k.into(), v);
    }
    Ok(env)
}

/// Starts replica `name` on `port` (use the cluster's Nexus port for the replica Bootstrap
/// talks to; [`free_port`] for the others). Does not wait for readiness.
pub fn start_replica(cluster: &Cluster, name: &str, port: u16, dsn: &str) -> Result<Replica> {
    let env = replica_env(cluster, name, port, dsn)?;
    let log = cluster.dir().join("logs").join(format!("{name}-{}.log", unique()));
    let proc = Proc::spawn(name, &cluster.binaries().nexus, &env, log)?;
    Ok(Replica { name: name.to_owned(), proc, url: format!("https://127.0.0.1:{port}") })
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

impl Replica {
    /// `/readyz` status and text (as the superuser identity).
    pub async fn readyz(&self, cluster: &Cluster) -> Result<(u16, String)> {
        let source = cluster.identity("pilot-superuser").await?;
        let http = https_client(source, "spiffe://spike.ist/spike/nexus")?;
        let r = http
            .get(format!("{}/readyz", self.url))
            .send()
            .await
            .map_err(|e| HarnessError(format!("{} readyz: {e}", self.name)))?;
        let status = r.status().as_u16();
        Ok((status, r.text().await.unwrap_or_default()))
    }

    /// Waits (bounded) until `/readyz` says 200.
    pub async fn wait_ready(&self, cluster: &Cluster, limit: Duration) -> Result<()> {
        let started = Instant::now();
        let mut last = String::from("no answer");
        while started.elapsed() < limit {
            match self.readyz(cluster).await {
                Ok((200, _)) => return Ok(()),
                Ok((status, text)) => last = format!("{status}: {}", text.trim()),
                Err(e) => last = e.0,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        fail(format!(
            "{} not ready after {limit:?}; last answer: {last}\n{}",
            self.name,
            self.proc.log_tail(30)
        ))
    }

    /// An SDK client of this replica as agent entry `identity`, without retries.
    pub async fn client(&self, cluster: &Cluster, identity: &str) -> Result<Spike> {
        Spike::builder()
            .identity(cluster.identity(identity).await?)
            .url(&self.url)
            .retry(RetryPolicy { attempts: 1, ..RetryPolicy::default() })
            .build()
            .await
            .map_err(|e| HarnessError(format!("client of {}: {e}", self.name)))
    }
}

/// A whole replicated system: a PostgreSQL server with database `spike`, the cluster's Keepers
/// and `replicas` Nexus replicas (1 to 8), bootstrapped, every replica ready.
#[derive(Debug)]
pub struct ReplicaSystem {
    /// The database server (dropped last: replicas first).
    pub replicas: Vec<Replica>,
    /// Keepers and identities.
    pub cluster: Cluster,
    /// The DSN every replica uses.
    pub dsn: String,
    /// The server.
    pub pg: PgServer,
}

impl ReplicaSystem {
    /// Starts it (bounded: bootstrap 60 s, each replica 30 s to ready). The first replica
    /// listens on the cluster's Nexus port, the one Bootstrap verifies against.
    pub async fn start(spec: ClusterSpec, replicas: usize) -> Result<Self> {
        if !(1..=8).contains(&replicas) {
            return fail(format!("1 to 8 replicas, not {replicas}"));
        }
        let pg = PgServer::start()?;
        pg.create_database("spike")?;
        let dsn = pg.dsn("spike");
        let mut cluster = Cluster::new(spec).await?;
        cluster.start_keepers().await?;
        let first_port: u16 =
            cluster
                .nexus_url()
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| HarnessError("the cluster's Nexus URL has no port".into()))?;
        let mut started = vec![start_replica(&cluster, "nexus-a", first_port, &dsn)?];
        for i in 1..replicas {
            let name = format!("nexus-{}", (b'a' + i as u8) as char);
            started.push(start_replica(&cluster, &name, free_port()?, &dsn)?);
        }
        let out = cluster.bootstrap(&[]).await?;
        if out.code != Some(0) {
            return fail(format!("bootstrap failed: {}{}", out.stdout, out.stderr));
        }
        for r in &started {
            r.wait_ready(&cluster, Duration::from_secs(30)).await?;
        }
        Ok(Self { replicas: started, cluster, dsn, pg })
    }

    /// The port replica `i` listens on.
    pub fn port(&self, i: usize) -> u16 {
        self.replicas[i].url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
    }
}
