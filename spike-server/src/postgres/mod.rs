//! The PostgreSQL [`Backend`]: several Nexus replicas sharing one existing, replicated
//! database instead of a home-made consensus.
//!
//! # What is stored
//! One table, `spike_kv (key text COLLATE "C" PRIMARY KEY, value bytea)`, holding exactly what
//! every backend holds: key names and AEAD ciphertext (plus the key check value). The database
//! never sees a plaintext or a key. A one-row table `spike_write_counter` counts applied
//! commits (the basis of rollback detection, see [`crate::nexus::rollback`]). The schema is
//! created and upgraded by numbered migrations recorded in `spike_schema_migrations`, applied
//! under an advisory lock so replicas starting together do not race; a database migrated by a
//! newer spike-rs is refused.
//!
//! # Serialising writers across replicas
//! [`Backend::commit`] runs one transaction that first takes a transaction-scoped advisory lock
//! on every key the batch reads or writes (sorted, so two batches cannot deadlock), then checks
//! the preconditions against the committed values and applies the writes. Two replicas writing
//! the same secret therefore run one after the other: the second sees the first's metadata and
//! reports [`Commit::Conflict`], and the versioned store re-reads and retries. Version numbers
//! are never produced twice. The commit returns only after PostgreSQL committed (durable with
//! the server's `synchronous_commit`).
//!
//! # Leadership
//! [`PostgresBackend::try_lead`] holds a session-level advisory lock on a dedicated connection:
//! the replica holding it runs the periodic Keeper re-arming and rollback checkpoints; if it
//! dies its session ends, the lock is released, and another replica takes over at its next try.

mod pool;
mod tls;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, NoTls};
use spike_core::error::StoreError;
use spike_core::store::backend::{Backend, Batch, Commit, Write};

use pool::Pool;

/// How Nexus talks TLS to PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgTls {
    /// Plain TCP or a Unix socket (only for loopback or a trusted network).
    Disable,
    /// TLS required, the server's certificate verified against this CA bundle (PEM), every
    /// CA's path length honoured (the roots' included), and its name checked against the host
    /// in the DSN.
    VerifyFull {
        /// PEM file with the CA certificates to trust.
        ca_file: PathBuf,
    },
}

/// Connection settings for the PostgreSQL backend.
#[derive(Clone)]
pub struct PostgresSettings {
    /// libpq-style connection string or URL (may hold a password: never printed).
    pub dsn: String,
    /// TLS mode.
    pub tls: PgTls,
    /// Most connections one replica opens.
    pub pool_size: usize,
    /// Time allowed to connect, and to wait for a free pooled connection.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("dsn", &"[REDACTED]")
            .field("tls", &self.tls)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// Why the PostgreSQL backend failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The settings are unusable.
    #[error("PostgreSQL settings: {0}")]
    Config(String),
    /// The database cannot be reached or refused the connection.
    #[error("PostgreSQL at {at} is unavailable: {reason}")]
    Connect {
        /// Host, port and database (never the password).
        at: String,
        /// What went wrong.
        reason: String,
    },
    /// No connection could be had in time.
    #[error("PostgreSQL is unavailable: {0}")]
    Unavailable(String),
    /// A statement failed.
    #[error("PostgreSQL {what} failed: {reason}")]
    Query {
        /// What was being done.
        what: &'static str,
        /// The server's or driver's message.
        reason: String,
    },
    /// The database server is out of disk space (SQLSTATE 53100).
    #[error("PostgreSQL {what} failed: the server's disk is full ({reason})")]
    DiskFull {
        /// What was being done.
        what: &'static str,
        /// The server's message.
        reason: String,
    },
    /// The schema is newer than this build understands.
    #[error(
        "the database schema is at version {found} but this spike-rs knows only up to \
         {known}; upgrade spike-rs on every replica"
    )]
    SchemaTooNew {
        /// Version recorded in the database.
        found: i32,
        /// Highest version this build has.
        known: i32,
    },
}

impl From<PgError> for StoreError {
    fn from(e: PgError) -> Self {
        match e {
            PgError::DiskFull { .. } => StoreError::NoSpace(e.to_string()),
            _ => StoreError::Backend(e.to_string()),
        }
    }
}

/// Where and how to connect; cheap to clone.
#[derive(Clone)]
struct Target {
    config: postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    describe: String,
}

impl Target {
    fn new(settings: &PostgresSettings) -> Result<Self, PgError> {
        let mut config: postgres::Config = settings.dsn.parse().map_err(|_| {
            // The driver's message may quote the string, which may hold a password.
            PgError::Config(
                "SPIKE_NEXUS_POSTGRES_DSN does not parse; use a libpq connection string \
                 (\"host=... user=... dbname=...\") or URL (\"postgresql://user@host/db\")"
                    .into(),
            )
        })?;
        config.connect_timeout(settings.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("spike-nexus");
        }
        let tls = match &settings.tls {
            PgTls::Disable => {
                config.ssl_mode(postgres::config::SslMode::Disable);
                None
            }
            PgTls::VerifyFull { ca_file } => {
                config.ssl_mode(postgres::config::SslMode::Require);
                Some(tokio_postgres_rustls::MakeRustlsConnect::new(tls::client_tls(ca_file)?))
            }
        };
        let describe = describe(&config);
        Ok(Self { config, tls, describe })
    }

    fn connect(&self) -> Result<Client, PgError> {
        let connected = match &self.tls {
            None => self.config.connect(NoTls),
            Some(tls) => self.config.connect(tls.clone()),
        };
        connected.map_err(|e| PgError::Connect {
            at: self.describe.clone(),
            reason: tls::connect_failure(&e),
        })
    }
}

/// `host:port/dbname`, for messages (never the user's password).
fn describe(config: &postgres::Config) -> String {
    use postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or("(default database)"))
}

/// The migrations, in order; each runs once, in a transaction, and is recorded.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    r#"
    CREATE TABLE spike_kv (
        key   text COLLATE "C" PRIMARY KEY,
        value bytea NOT NULL
    );
    CREATE TABLE spike_write_counter (
        id                 boolean PRIMARY KEY DEFAULT true CHECK (id),
        writes             bigint NOT NULL CHECK (writes >= 0),
        checkpoint_counter bigint NOT NULL DEFAULT 0,
        checkpoint         bytea
    );
    INSERT INTO spike_write_counter (id, writes) VALUES (true, 0);
    "#,
)];

/// Advisory lock ids (arbitrary constants: "spike" in ASCII, plus a role number).
const MIGRATION_LOCK: i64 = 0x7370_696b_6501;
const LEADER_LOCK: i64 = 0x7370_696b_6502;

/// The ciphertext store in PostgreSQL, shared by several Nexus replicas.
pub struct PostgresBackend {
    pool: Pool,
    target: Target,
    /// The dedicated session for the leader lock, and whether it holds the lock.
    leader: Mutex<Option<(Client, bool)>>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend").field("at", &self.target.describe).finish_non_exhaustive()
    }
}

impl PostgresBackend {
    /// Connects, applies pending migrations, and returns the backend.
    ///
    /// The synchronous driver runs its own small runtime per connection, which must never be
    /// entered from an async task: every method here blocks, so call them from blocking
    /// threads (Nexus runs requests on `spawn_blocking` with this backend). Opening is done on
    /// a thread of its own, so it is safe from anywhere.
    pub fn open(settings: &PostgresSettings) -> Result<Self, PgError> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let target = Target::new(settings)?;
                    let pool =
                        Pool::new(target.clone(), settings.pool_size, settings.connect_timeout);
                    let backend = Self { pool, target, leader: Mutex::new(None) };
                    backend.migrate()?;
                    Ok(backend)
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(PgError::Unavailable("opening the backend panicked".into()))
                })
        })
    }

    /// `host:port/dbname` of the database (for logs; no credentials).
    pub fn location(&self) -> &str {
        &self.target.describe
    }

    fn migrate(&self) -> Result<(), PgError> {
        let mut conn = self.pool.get()?;
        let mut tx = conn.transaction().map_err(query("starting the migration"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(query("locking for the migration"))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS spike_schema_migrations (
                version    integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .map_err(query("creating the migrations table"))?;
        let found: i32 = tx
            .query_one("SELECT COALESCE(max(version), 0) FROM spike_schema_migrations", &[])
            .map_err(query("reading the schema version"))?
            .get(0);
        let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
        if found > known {
            return Err(PgError::SchemaTooNew { found, known });
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
            tx.batch_execute(sql).map_err(query("applying a schema migration"))?;
            tx.execute("INSERT INTO spike_schema_migrations (version) VALUES ($1)", &[version])
                .map_err(query("recording a schema migration"))?;
            tracing::info!(version, "applied PostgreSQL schema migration");
        }
        tx.commit().map_err(query("committing the migration"))
    }

    /// The number of commits ever applied to this database, and the latest rollback
    /// checkpoint stored beside it (see [`crate::nexus::rollback`]).
    pub fn rollback_state(&self) -> Result<(u64, Option<Vec<u8>>), PgError> {
        let mut conn = self.pool.get()?;
        let row = conn
            .query_one("SELECT writes, checkpoint FROM spike_write_counter WHERE id", &[])
            .map_err(query("reading the write counter"))?;
        let writes: i64 = row.get(0);
        let writes = u64::try_from(writes).map_err(|_| PgError::Query {
            what: "reading the write counter",
            reason: "negative value".into(),
        })?;
        Ok((writes, row.get(1)))
    }

    /// Stores `checkpoint` (for write counter `counter`) unless a checkpoint for a higher or
    /// equal counter is already stored; returns whether it was stored. Not a write in the
    /// counter's sense: it does not advance the counter.
    pub fn advance_checkpoint(&self, counter: u64, checkpoint: &[u8]) -> Result<bool, PgError> {
        let counter = i64::try_from(counter).map_err(|_| PgError::Query {
            what: "storing a checkpoint",
            reason: "counter out of range".into(),
        })?;
        let mut conn = self.pool.get()?;
        let updated = conn
            .execute(
                "UPDATE spike_write_counter SET checkpoint = $1, checkpoint_counter = $2
                 WHERE id AND checkpoint_counter < $2",
                &[&checkpoint, &counter],
            )
            .map_err(query("storing a checkpoint"))?;
        Ok(updated == 1)
    }

    /// True while this replica holds the leader lock (taking it if it is free). The lock lives
    /// as long as a dedicated session, kept open between calls; a broken session loses it and
    /// the next call opens a new one and tries again.
    pub fn try_lead(&self) -> Result<bool, PgError> {
        let mut slot = self.leader.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((session, leading)) = slot.as_mut() {
            if !session.is_closed() {
                let checked = if *leading {
                    session.simple_query("SELECT 1").map(|_| true)
                } else {
                    try_advisory_lock(session)
                };
                if let Ok(now) = checked {
                    *leading = now;
                    return Ok(now);
                }
            }
            *slot = None;
        }
        let mut session = self.target.connect()?;
        let won = try_advisory_lock(&mut session).map_err(query("taking the leader lock"))?;
        *slot = Some((session, won));
        Ok(won)
    }

    /// Gives up leadership (closing the session that holds the lock).
    pub fn resign(&self) {
        self.leader.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn run_commit(&self, batch: &Batch) -> Result<Commit, PgError> {
        let mut conn = self.pool.get()?;
        let outcome = commit_on(&mut conn, batch);
        if outcome.is_err() {
            conn.discard();
        }
        outcome
    }
}

fn try_advisory_lock(session: &mut Client) -> Result<bool, postgres::Error> {
    session.query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK]).map(|row| row.get(0))
}

/// One batch in one transaction (see the module docs for the locking).
fn commit_on(conn: &mut Client, batch: &Batch) -> Result<Commit, PgError> {
    let mut tx = conn.transaction().map_err(query("starting a transaction"))?;
    let mut keys: Vec<&str> = batch
        .preconditions()
        .iter()
        .map(|p| p.key.as_str())
        .chain(batch.writes().iter().map(Write::key))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    for key in &keys {
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", &[key])
            .map_err(query("locking a key"))?;
    }
    for check in batch.preconditions() {
        let current: Option<Vec<u8>> = tx
            .query_opt("SELECT value FROM spike_kv WHERE key = $1", &[&check.key])
            .map_err(query("checking a precondition"))?
            .map(|row| row.get(0));
        if current != check.value {
            // Dropping the transaction rolls it back: nothing was written.
            return Ok(Commit::Conflict);
        }
    }
    if batch.writes().is_empty() {
        return Ok(Commit::Applied);
    }
    for write in batch.writes() {
        match write {
            Write::Put(k, v) => tx.execute(
                "INSERT INTO spike_kv (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[k, v],
            ),
            Write::Delete(k) => tx.execute("DELETE FROM spike_kv WHERE key = $1", &[k]),
        }
        .map_err(query("writing"))?;
    }
    tx.execute("UPDATE spike_write_counter SET writes = writes + 1 WHERE id", &[])
        .map_err(query("counting the write"))?;
    match tx.commit() {
        Ok(()) => Ok(Commit::Applied),
        Err(e) if is_conflict(&e) => Ok(Commit::Conflict),
        Err(e) => Err(query("committing")(e)),
    }
}

/// A serialisation failure or deadlock: nothing was written; the caller re-reads and retries.
fn is_conflict(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::UNIQUE_VIOLATION
    )
}

fn query(what: &'static str) -> impl Fn(postgres::Error) -> PgError {
    move |e| {
        let reason = e.to_string();
        if e.code() == Some(&SqlState::DISK_FULL) {
            PgError::DiskFull { what, reason }
        } else {
            PgError::Query { what, reason }
        }
    }
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        // Closing a connection enters the driver's runtime, which panics inside an async task;
        // close them on a thread of their own.
        let idle = self.pool.drain();
        let leader = self.leader.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        let _ = std::thread::spawn(move || drop((idle, leader))).join();
    }
}

/// The smallest string greater than every string starting with `prefix`, if there is one:
/// the exclusive upper bound of a prefix range scan in code point order (`COLLATE "C"`).
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

impl PostgresBackend {
    fn scan(&self, prefix: &str, with_values: bool) -> Result<Vec<(String, Vec<u8>)>, PgError> {
        let mut conn = self.pool.get()?;
        let columns = if with_values { "key, value" } else { "key, ''::bytea" };
        let rows = match prefix_upper_bound(prefix) {
            Some(upper) => conn.query(
                &format!(
                    "SELECT {columns} FROM spike_kv WHERE key >= $1 AND key < $2 ORDER BY key"
                ),
                &[&prefix, &upper],
            ),
            None => conn.query(
                &format!("SELECT {columns} FROM spike_kv WHERE key >= $1 ORDER BY key"),
                &[&prefix],
            ),
        };
        let rows = rows.map_err(|e| {
            conn.discard();
            query("scanning")(e)
        })?;
        Ok(rows.into_iter().map(|row| (row.get(0), row.get(1))).collect())
    }
}

impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.pool.get()?;
        let row = conn.query_opt("SELECT value FROM spike_kv WHERE key = $1", &[&key]);
        match row {
            Ok(row) => Ok(row.map(|r| r.get(0))),
            Err(e) => {
                conn.discard();
                Err(query("reading")(e).into())
            }
        }
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self.scan(prefix, true)?)
    }

    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.scan(prefix, false)?.into_iter().map(|(k, _)| k).collect())
    }

    fn commit(&self, batch: &Batch) -> Result<Commit, StoreError> {
        Ok(self.run_commit(batch)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bounds_cover_exactly_the_prefix() {
        assert_eq!(prefix_upper_bound("s/"), Some("s0".into()));
        assert_eq!(prefix_upper_bound("p/a"), Some("p/b".into()));
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("a\u{10FFFF}"), Some("b".into()));
        assert_eq!(prefix_upper_bound("\u{D7FF}"), Some("\u{E000}".into()));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
    }

    #[test]
    fn settings_never_print_the_dsn() {
        let s = PostgresSettings {
            dsn: "postgresql://u:hunter2-canary@localhost/db".into(),
            tls: PgTls::Disable,
            pool_size: 2,
            connect_timeout: Duration::from_secs(1),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
        let bad = PostgresSettings { dsn: "postgresql://u:hunter2@[::1".into(), ..s };
        let err = Target::new(&bad).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("does not parse") && !err.contains("hunter2"), "{err}");
    }
}
