//! The PostgreSQL [`Backend`]: several Nexus replicas sharing one existing, replicated
//! database instead of a home-made consensus.
//!
//! # What is stored
//! One table, `spike_kv (key text COLLATE "C" PRIMARY KEY, value bytea)`, holding exactly what
//! every backend holds: key names and AEAD ciphertext (plus the key check value). The database
//! never sees a plaintext or a key. The number of applied commits (the basis of rollback
//! detection, see [`crate::nexus::rollback`]) is the sum of the 64 rows of
//! `spike_write_shards`; the view `spike_write_counter` shows it (`writes`) beside the latest
//! rollback checkpoint, stored in the one-row table `spike_rollback_checkpoint`. The schema is
//! created and upgraded by numbered migrations recorded in `spike_schema_migrations`, applied
//! under an advisory lock so replicas starting together do not race; a database migrated by a
//! newer spike-rs is refused.
//!
//! # Serialising writers across replicas
//! [`Backend::commit`] runs in a `READ COMMITTED` transaction that first takes a
//! transaction-scoped advisory lock on every key the batch reads or writes (sorted, so two
//! transactions cannot deadlock), then, in one statement whose snapshot is taken after the locks
//! were granted, checks the preconditions against the committed values and, only if they all
//! hold, applies the writes and adds one to a row of the write counter. Two replicas writing
//! the same secret therefore run one after the other: the second sees the first's metadata and
//! reports [`Commit::Conflict`], and the versioned store re-reads and retries. Version numbers
//! are never produced twice. The commit returns only after PostgreSQL committed (durable with
//! the server's `synchronous_commit`); any failure writes nothing and is reported.
//!
//! Batches committed at the same moment on one replica share a transaction (group commit, see
//! `writer.rs`): they are checked and applied one after the other in it, each seeing the
//! writes of those before it, so the outcome is the same as committing them in that order, and
//! one WAL flush makes them all durable. One failing statement fails the whole group, and each
//! of its callers gets the error (nothing of the group was written).
//!
//! # Driver, runtime and round trips
//! The asynchronous driver (`tokio-postgres`) runs each connection's I/O as a task on Nexus's
//! own runtime; the synchronous [`Backend`] methods, which Nexus calls on blocking threads,
//! wait for it there. [`Backend::get_many_async`] is the same read awaited on the caller's
//! task, so a secret GET (see `SecretStore::get_versioned_async`) goes from its request task
//! to the connection's I/O task and back, without a blocking thread in between. Key reads
//! share a quarter of the connections, concurrent reads pipelined on each (`readers.rs`);
//! commits, scans and the rest check a connection out of the pool. Every statement is prepared once per connection (pipelined, when the
//! connection opens), so a [`Backend::get`] is one round trip, and so is a
//! [`Backend::get_many`] (one `key = ANY($1)` statement, hence one snapshot: the versioned store
//! reads a secret's metadata and the version it expects in one go), and a commit group is one
//! round trip too: `BEGIN`, the locks, the writes and `COMMIT` are sent back to back and their
//! answers read afterwards (an error aborts the transaction and turns the `COMMIT` into a
//! rollback). The write counter is spread over rows because one row that every commit updates
//! serialises all commits on its row lock until each is flushed. Measured effect, same command
//! before and after: the README's "Replicas on PostgreSQL" section.
//!
//! # Leadership
//! [`PostgresBackend::try_lead`] holds a session-level advisory lock on a dedicated connection:
//! the replica holding it runs the periodic Keeper re-arming and rollback checkpoints; if it
//! dies its session ends, the lock is released, and another replica takes over at its next try.

mod pool;
mod readers;
mod tls;
mod writer;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spike_core::error::StoreError;
use spike_core::store::backend::{Backend, Batch, Commit, ReadFuture};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Row};

use pool::{Conn, Pool};
use readers::Readers;

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
    /// Most connections one replica opens (besides the leader's session): a quarter of them
    /// (at least one) shared by key reads, the rest pooled (at least one).
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
#[derive(Debug, Clone, thiserror::Error)]
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
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    connect_timeout: Duration,
    describe: String,
}

impl Target {
    fn new(settings: &PostgresSettings) -> Result<Self, PgError> {
        let mut config: tokio_postgres::Config = settings.dsn.parse().map_err(|_| {
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
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                None
            }
            PgTls::VerifyFull { ca_file } => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Some(tokio_postgres_rustls::MakeRustlsConnect::new(tls::client_tls(ca_file)?))
            }
        };
        let describe = describe(&config);
        Ok(Self { config, tls, connect_timeout: settings.connect_timeout, describe })
    }

    /// Opens a session whose I/O task runs on the current runtime; the task ends when the
    /// client is dropped (after telling the server) or the connection breaks.
    async fn connect(&self) -> Result<(Client, tokio::task::JoinHandle<()>), PgError> {
        let failed = |reason: String| PgError::Connect { at: self.describe.clone(), reason };
        let connecting = async {
            match &self.tls {
                None => {
                    let (client, connection) = self.config.connect(NoTls).await?;
                    Ok((client, tokio::spawn(drive(connection))))
                }
                Some(tls) => {
                    let (client, connection) = self.config.connect(tls.clone()).await?;
                    Ok((client, tokio::spawn(drive(connection))))
                }
            }
        };
        // The driver's own timeout covers the TCP connect only; this one the TLS handshake and
        // the start-up exchange too.
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(session)) => Ok(session),
            Ok(Err(e)) => Err(failed(tls::connect_failure(&e))),
            Err(_) => Err(failed(format!("no session within {:?}", self.connect_timeout))),
        }
    }
}

/// Runs one connection's I/O until its client is dropped or the connection breaks (then every
/// pending and later request on that client fails, and the pool drops it).
async fn drive<F: Future<Output = Result<(), tokio_postgres::Error>>>(connection: F) {
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "PostgreSQL connection ended");
    }
}

/// `host:port/dbname`, for messages (never the user's password).
fn describe(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or("(default database)"))
}

/// The migrations, in order; each runs once, in a transaction, and is recorded.
const MIGRATIONS: &[(i32, &str)] = &[
    (
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
    ),
    (
        // The write counter spread over WRITE_SHARDS rows: one row that every commit updates
        // serialises all commits on its row lock, held until the commit is flushed, so no two
        // commits could share a WAL flush (measured: PUT throughput capped at one commit per
        // flush). The count so far moves to shard 0; `spike_write_counter` stays readable as a
        // view with the total.
        2,
        r#"
    CREATE TABLE spike_write_shards (
        shard  integer PRIMARY KEY CHECK (shard >= 0 AND shard < 64),
        writes bigint NOT NULL CHECK (writes >= 0)
    );
    INSERT INTO spike_write_shards (shard, writes)
        SELECT g, CASE WHEN g = 0 THEN (SELECT writes FROM spike_write_counter) ELSE 0 END
        FROM generate_series(0, 63) AS g;
    ALTER TABLE spike_write_counter RENAME TO spike_rollback_checkpoint;
    ALTER TABLE spike_rollback_checkpoint DROP COLUMN writes;
    CREATE VIEW spike_write_counter AS
        SELECT c.id,
               (SELECT COALESCE(sum(s.writes), 0) FROM spike_write_shards s)::bigint AS writes,
               c.checkpoint_counter,
               c.checkpoint
        FROM spike_rollback_checkpoint c;
    "#,
    ),
];

/// Rows of `spike_write_shards` (fixed by migration 2).
const WRITE_SHARDS: u32 = 64;

/// Advisory lock ids (arbitrary constants: "spike" in ASCII, plus a role number).
const MIGRATION_LOCK: i64 = 0x7370_696b_6501;
const LEADER_LOCK: i64 = 0x7370_696b_6502;

/// The write half of a commit, run once the batch's keys are locked: checks every
/// precondition against the committed values and, only if all hold, upserts the puts, deletes
/// the deletes and counts the commit; returns whether the preconditions held. One statement, so
/// every part sees one snapshot, taken after the locks were granted (READ COMMITTED takes a
/// snapshot per statement). The writes are disjoint (the batch's last write per key), as one
/// statement cannot touch a row twice.
///
/// `$1`/`$2`: expected keys and values (NULL: must be absent); `$3`/`$4`: keys and values to
/// put; `$5`: keys to delete; `$6`: whether the batch writes (a batch of checks only is not
/// counted); `$7`: the write counter shard to count it in.
const APPLY: &str = r#"
    WITH ok AS (
        SELECT NOT EXISTS (
            SELECT 1 FROM unnest($1::text[], $2::bytea[]) AS e(key, value)
            LEFT JOIN spike_kv s ON s.key = e.key
            WHERE s.value IS DISTINCT FROM e.value
        ) AS ok
    ), put AS (
        INSERT INTO spike_kv (key, value)
        SELECT p.key, p.value FROM unnest($3::text[], $4::bytea[]) AS p(key, value)
        WHERE (SELECT ok FROM ok)
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
    ), del AS (
        DELETE FROM spike_kv WHERE key = ANY($5::text[]) AND (SELECT ok FROM ok)
    ), counted AS (
        UPDATE spike_write_shards SET writes = writes + 1
        WHERE shard = $7::integer AND $6::boolean AND (SELECT ok FROM ok)
    )
    SELECT ok FROM ok
"#;

/// The runtime the driver's connection tasks run on.
struct DriverRuntime {
    handle: tokio::runtime::Handle,
    /// A one-worker runtime of the backend's own, when it was opened outside any runtime (a
    /// tool, a test); `None` inside Nexus, whose runtime drives the connections.
    own: Option<tokio::runtime::Runtime>,
}

impl DriverRuntime {
    fn current_or_own() -> Result<Self, PgError> {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            return Ok(Self { handle, own: None });
        }
        let own = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("spike-postgres")
            .enable_all()
            .build()
            .map_err(|e| PgError::Unavailable(format!("cannot start the driver's runtime: {e}")))?;
        Ok(Self { handle: own.handle().clone(), own: Some(own) })
    }
}

/// The ciphertext store in PostgreSQL, shared by several Nexus replicas.
pub struct PostgresBackend {
    pool: Arc<Pool>,
    /// The connections key reads share (see readers.rs).
    readers: Readers,
    target: Target,
    /// The dedicated session for the leader lock, and whether it holds the lock.
    leader: Mutex<Option<(Client, bool)>>,
    runtime: DriverRuntime,
    /// The queue of the group-commit writer tasks.
    jobs: tokio::sync::mpsc::UnboundedSender<writer::Job>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend").field("at", &self.target.describe).finish_non_exhaustive()
    }
}

impl PostgresBackend {
    /// Connects, applies pending migrations, and returns the backend.
    ///
    /// The connections run on the tokio runtime this is called in (Nexus's), or on a small
    /// runtime of the backend's own when called outside any runtime. Every other method but
    /// [`Backend::get_many_async`] waits for the database: call them from blocking threads
    /// (`spawn_blocking`, as Nexus does with this backend) or plain threads, never from an
    /// async task; `get_many_async` is for async tasks on a tokio runtime (any runtime: new
    /// connections are still opened on the driver's). Opening itself is done on a thread and
    /// runtime of its own, so it is safe from anywhere.
    pub fn open(settings: &PostgresSettings) -> Result<Self, PgError> {
        let target = Target::new(settings)?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| {
                            PgError::Unavailable(format!("cannot start a runtime: {e}"))
                        })?;
                    runtime.block_on(async {
                        let (mut client, io) = target.connect().await?;
                        let migrated = migrate(&mut client).await;
                        // Close the session cleanly before this runtime goes away.
                        drop(client);
                        let _ = io.await;
                        migrated
                    })
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(PgError::Unavailable("opening the backend panicked".into()))
                })
        })?;
        let runtime = DriverRuntime::current_or_own()?;
        // A quarter of the connections are shared by all key reads (pipelined, see readers.rs);
        // the pool has the rest, for commits, scans and the rollback checkpoint.
        let shared = (settings.pool_size / 4).max(1);
        let pooled = settings.pool_size.saturating_sub(shared).max(1);
        let driver = runtime.handle.clone();
        let pool = Pool::new(target.clone(), driver, pooled, settings.connect_timeout);
        let pool = Arc::new(pool);
        let readers = Readers::new(pool.clone(), shared);
        // Any start will do; a random one keeps replicas off each other's counter rows.
        let start = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u8) as u32;
        let next_shard = Arc::new(AtomicU32::new(start));
        let (jobs, queue) = tokio::sync::mpsc::unbounded_channel();
        let queue: writer::Jobs = Arc::new(tokio::sync::Mutex::new(queue));
        // A quarter of the connections for writers: two groups in flight already overlap one
        // group's WAL flush with the next group's statements, fewer writers make bigger groups
        // (fewer flushes and statements per commit), and scans keep the rest of the pool.
        for _ in 0..settings.pool_size.div_ceil(4).max(1) {
            runtime.handle.spawn(writer::run(pool.clone(), queue.clone(), next_shard.clone()));
        }
        Ok(Self { pool, readers, target, leader: Mutex::new(None), runtime, jobs })
    }

    /// `host:port/dbname` of the database (for logs; no credentials).
    pub fn location(&self) -> &str {
        &self.target.describe
    }

    /// Runs `work` on the driver's runtime and waits for it (see [`PostgresBackend::open`]).
    fn wait<T>(&self, work: impl Future<Output = Result<T, PgError>>) -> Result<T, PgError> {
        self.runtime.handle.block_on(work)
    }

    /// Runs `work` on a pooled connection; an error leaves the connection out of the pool.
    fn on_conn<T>(
        &self,
        work: impl AsyncFnOnce(&Conn) -> Result<T, PgError>,
    ) -> Result<T, PgError> {
        self.wait(async {
            let mut pooled = self.pool.get().await?;
            let outcome = work(pooled.conn()).await;
            if outcome.is_err() {
                pooled.discard();
            }
            outcome
        })
    }

    /// The values of `keys`, in their order: one statement on a shared read connection, so
    /// one round trip and one snapshot (READ COMMITTED takes a snapshot per statement).
    async fn read_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, PgError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.readers.conn().await?;
        let rows = conn
            .client
            .query(&conn.statements.get_many, &[&keys])
            .await
            .map_err(query("reading"))?;
        let found = rows
            .iter()
            .map(|row| Ok((column(row, 0, "reading")?, column(row, 1, "reading")?)))
            .collect::<Result<Vec<_>, PgError>>()?;
        Ok(in_key_order(keys, found))
    }

    /// The number of commits ever applied to this database, and the latest rollback
    /// checkpoint stored beside it (see [`crate::nexus::rollback`]).
    pub fn rollback_state(&self) -> Result<(u64, Option<Vec<u8>>), PgError> {
        self.on_conn(async move |conn| {
            let row = conn
                .client
                .query_one("SELECT writes, checkpoint FROM spike_write_counter WHERE id", &[])
                .await
                .map_err(query("reading the write counter"))?;
            let writes: i64 = column(&row, 0, "reading the write counter")?;
            let writes = u64::try_from(writes).map_err(|_| PgError::Query {
                what: "reading the write counter",
                reason: "negative value".into(),
            })?;
            Ok((writes, column(&row, 1, "reading the checkpoint")?))
        })
    }

    /// Stores `checkpoint` (for write counter `counter`) unless a checkpoint for a higher or
    /// equal counter is already stored; returns whether it was stored. Not a write in the
    /// counter's sense: it does not advance the counter.
    pub fn advance_checkpoint(&self, counter: u64, checkpoint: &[u8]) -> Result<bool, PgError> {
        let counter = i64::try_from(counter).map_err(|_| PgError::Query {
            what: "storing a checkpoint",
            reason: "counter out of range".into(),
        })?;
        self.on_conn(async move |conn| {
            let updated = conn
                .client
                .execute(
                    "UPDATE spike_rollback_checkpoint SET checkpoint = $1, checkpoint_counter = $2
                     WHERE id AND checkpoint_counter < $2",
                    &[&checkpoint, &counter],
                )
                .await
                .map_err(query("storing a checkpoint"))?;
            Ok(updated == 1)
        })
    }

    /// True while this replica holds the leader lock (taking it if it is free). The lock lives
    /// as long as a dedicated session, kept open between calls; a broken session loses it and
    /// the next call opens a new one and tries again.
    pub fn try_lead(&self) -> Result<bool, PgError> {
        let mut slot = self.leader.lock().unwrap_or_else(|p| p.into_inner());
        self.wait(async {
            if let Some((session, leading)) = slot.as_mut() {
                if !session.is_closed() {
                    let checked = if *leading {
                        session.simple_query("SELECT 1").await.map(|_| true)
                    } else {
                        try_advisory_lock(session).await
                    };
                    if let Ok(now) = checked {
                        *leading = now;
                        return Ok(now);
                    }
                }
                *slot = None;
            }
            let (session, _) = self.target.connect().await?;
            let won = try_advisory_lock(&session).await.map_err(query("taking the leader lock"))?;
            *slot = Some((session, won));
            Ok(won)
        })
    }

    /// Gives up leadership (closing the session that holds the lock).
    pub fn resign(&self) {
        self.leader.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn scan(&self, prefix: &str, with_values: bool) -> Result<Vec<(String, Vec<u8>)>, PgError> {
        let upper = prefix_upper_bound(prefix);
        self.on_conn(async move |conn| {
            let s = &conn.statements;
            let rows = match (&upper, with_values) {
                (Some(upper), true) => conn.client.query(&s.scan_range, &[&prefix, upper]).await,
                (Some(upper), false) => conn.client.query(&s.keys_range, &[&prefix, upper]).await,
                (None, true) => conn.client.query(&s.scan_from, &[&prefix]).await,
                (None, false) => conn.client.query(&s.keys_from, &[&prefix]).await,
            }
            .map_err(query("scanning"))?;
            rows.iter()
                .map(|row| {
                    let key = column(row, 0, "scanning")?;
                    let value = if with_values { column(row, 1, "scanning")? } else { Vec::new() };
                    Ok((key, value))
                })
                .collect()
        })
    }
}

async fn try_advisory_lock(session: &Client) -> Result<bool, tokio_postgres::Error> {
    session.query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK]).await?.try_get(0)
}

/// Column `i` of `row`, or an error (never a panic) if the schema holds something else.
fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    i: usize,
    what: &'static str,
) -> Result<T, PgError> {
    row.try_get(i).map_err(query(what))
}

async fn migrate(client: &mut Client) -> Result<(), PgError> {
    let tx = client.transaction().await.map_err(query("starting the migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(query("locking for the migration"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS spike_schema_migrations (
            version    integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(query("creating the migrations table"))?;
    let row = tx
        .query_one("SELECT COALESCE(max(version), 0) FROM spike_schema_migrations", &[])
        .await
        .map_err(query("reading the schema version"))?;
    let found: i32 = column(&row, 0, "reading the schema version")?;
    let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if found > known {
        return Err(PgError::SchemaTooNew { found, known });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.batch_execute(sql).await.map_err(query("applying a schema migration"))?;
        tx.execute("INSERT INTO spike_schema_migrations (version) VALUES ($1)", &[version])
            .await
            .map_err(query("recording a schema migration"))?;
        tracing::info!(version, "applied PostgreSQL schema migration");
    }
    tx.commit().await.map_err(query("committing the migration"))
}

/// A serialisation failure or deadlock: nothing was written; the caller re-reads and retries.
fn is_conflict(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::UNIQUE_VIOLATION
    )
}

fn query(what: &'static str) -> impl Fn(tokio_postgres::Error) -> PgError {
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
        // Dropped clients tell their I/O tasks to close the sessions; a runtime of our own
        // must not be dropped inside an async context, so let it finish in the background.
        drop(self.pool.drain());
        drop(self.readers.drain());
        self.leader.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(own) = self.runtime.own.take() {
            own.shutdown_background();
        }
    }
}

/// The values of `keys`, in their order (`None`: absent), from the rows `found` of a lookup of
/// them, which come in any order and once per distinct key.
fn in_key_order(keys: &[&str], found: Vec<(String, Vec<u8>)>) -> Vec<Option<Vec<u8>>> {
    let mut found: std::collections::HashMap<String, Vec<u8>> = found.into_iter().collect();
    let mut values: Vec<Option<Vec<u8>>> = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let value = match found.remove(*key) {
            Some(value) => Some(value),
            // Asked for twice: the same answer as the first time.
            None => keys[..i].iter().position(|k| k == key).and_then(|j| values[j].clone()),
        };
        values.push(value);
    }
    values
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

impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        // One round trip on a shared read connection: the statement is prepared there already.
        Ok(self.wait(async {
            let conn = self.readers.conn().await?;
            let row = conn
                .client
                .query_opt(&conn.statements.get, &[&key])
                .await
                .map_err(query("reading"))?;
            row.map(|row| column(&row, 0, "reading")).transpose()
        })?)
    }

    /// One statement, so one round trip and one snapshot: the values show the database as of
    /// one moment, never half of a commit (READ COMMITTED takes a snapshot per statement).
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        Ok(self.wait(self.read_many(keys))?)
    }

    /// The same statement as [`Backend::get_many`], awaited on the caller's runtime: a GET
    /// goes from its request task to the connection's I/O task and back, with no blocking
    /// thread in between.
    fn get_many_async<'a>(&'a self, keys: &'a [&'a str]) -> ReadFuture<'a> {
        Box::pin(async move { Ok(self.read_many(keys).await?) })
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self.scan(prefix, true)?)
    }

    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.scan(prefix, false)?.into_iter().map(|(k, _)| k).collect())
    }

    fn commit(&self, batch: &Batch) -> Result<Commit, StoreError> {
        // Group commit (see the writer module): queued, committed by a writer task together
        // with the batches queued beside it, answered once PostgreSQL committed.
        let stopped = || PgError::Unavailable("the PostgreSQL commit writers stopped".into());
        let (job, outcome) = writer::Job::new(batch);
        self.jobs.send(job).map_err(|_| stopped())?;
        Ok(outcome.blocking_recv().unwrap_or_else(|_| Err(stopped()))?)
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
    fn many_keys_are_answered_in_their_order() {
        let found = vec![("b".to_owned(), b"2".to_vec()), ("a".to_owned(), b"1".to_vec())];
        let (one, two) = (Some(b"1".to_vec()), Some(b"2".to_vec()));
        assert_eq!(in_key_order(&["a", "missing", "b", "a"], found), [one.clone(), None, two, one]);
        assert_eq!(in_key_order(&["x", "x"], Vec::new()), [None, None]);
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
