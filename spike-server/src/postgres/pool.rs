//! A small, bounded pool of asynchronous PostgreSQL connections, each with its statements
//! prepared once.
//!
//! At most `size` connections exist at once; a caller waits (up to the connect timeout) for one
//! to come back when all are in use. A connection that failed or was closed by the server is
//! dropped instead of returned, and the next caller opens a fresh one, so a database restart
//! costs the requests in flight, not the pool. Each connection's I/O task runs on the runtime
//! the backend was opened on (Nexus's own), and every statement the backend runs is prepared
//! when the connection opens (pipelined: one round trip), so afterwards each statement costs
//! one round trip, not a parse round trip plus an execute round trip.

use std::sync::Mutex;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::{Client, Statement};

use super::{PgError, Target, query};

/// Declares [`Statements`] (one field per statement) and its `prepare`, from one list, so a
/// statement's name and SQL are written once.
macro_rules! statements {
    ($($(#[$doc:meta])* $name:ident: $sql:expr,)*) => {
        /// The statements the backend runs, prepared on one connection.
        pub(super) struct Statements {
            $($(#[$doc])* pub(super) $name: Statement,)*
        }

        impl Statements {
            async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
                // Polled together, the Parse messages go out back to back: one round trip.
                let ($($name,)*) = futures::try_join!($(client.prepare($sql)),*)?;
                Ok(Self { $($name),* })
            }
        }
    };
}

statements! {
    /// `key` → `value`.
    get: "SELECT value FROM spike_kv WHERE key = $1",
    /// The keys and values of the keys in `$1` that exist, in no particular order.
    get_many: "SELECT key, value FROM spike_kv WHERE key = ANY($1::text[])",
    /// Keys and values in `[$1, $2)`.
    scan_range: "SELECT key, value FROM spike_kv WHERE key >= $1 AND key < $2 ORDER BY key",
    /// Keys and values from `$1` on.
    scan_from: "SELECT key, value FROM spike_kv WHERE key >= $1 ORDER BY key",
    /// Keys in `[$1, $2)`.
    keys_range: "SELECT key FROM spike_kv WHERE key >= $1 AND key < $2 ORDER BY key",
    /// Keys from `$1` on.
    keys_from: "SELECT key FROM spike_kv WHERE key >= $1 ORDER BY key",
    /// Starts a commit's transaction.
    begin: "BEGIN ISOLATION LEVEL READ COMMITTED",
    /// Takes the advisory locks of the keys `$1`, in the array's order, until the transaction
    /// ends (a function scan yields the array's elements in order, one lock call per row).
    lock: "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest($1::text[]) AS k",
    /// Checks the preconditions and, if they hold, applies the writes and counts them.
    apply: super::APPLY,
    /// Ends a commit's transaction.
    commit: "COMMIT",
}

/// One open connection and its prepared statements.
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) statements: Statements,
}

/// Connections to one database, shared by every thread of a Nexus replica.
pub(super) struct Pool {
    target: Target,
    /// The runtime connections are opened on and their I/O tasks run on.
    driver: Handle,
    size: usize,
    wait: Duration,
    /// One permit per connection that may exist.
    permits: Semaphore,
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    /// A pool of at most `size` connections to `target`, run on `driver`; a caller waits at
    /// most `wait` for a free one.
    pub(super) fn new(target: Target, driver: Handle, size: usize, wait: Duration) -> Self {
        let size = size.max(1);
        let (permits, idle) = (Semaphore::new(size), Mutex::new(Vec::new()));
        Self { target, driver, size, wait, permits, idle }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        // A Vec pushed and popped whole under the lock: consistent even if poisoned.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes every idle connection out of the pool (to close them).
    pub(super) fn drain(&self) -> Vec<Conn> {
        std::mem::take(&mut *self.idle())
    }

    /// A connection for one operation; it goes back to the pool when dropped.
    pub(super) async fn get(&self) -> Result<Pooled<'_>, PgError> {
        // A free connection is the common case: skip arming a timer for it.
        let free = self.permits.try_acquire().ok();
        let permit = match free {
            Some(permit) => Ok(Ok(permit)),
            None => tokio::time::timeout(self.wait, self.permits.acquire()).await,
        };
        let permit = match permit {
            Ok(Ok(permit)) => permit,
            // The semaphore is never closed; treat it like a timeout anyway.
            Ok(Err(_)) | Err(_) => {
                return Err(PgError::Unavailable(format!(
                    "all {} PostgreSQL connections stayed busy for {:?}; raise \
                     SPIKE_NEXUS_POSTGRES_POOL_SIZE or check for slow queries",
                    self.size, self.wait
                )));
            }
        };
        loop {
            let Some(conn) = self.idle().pop() else { break };
            if !conn.client.is_closed() {
                return Ok(Pooled { pool: self, conn: Some(conn), broken: false, _permit: permit });
            }
        }
        let conn = self.open().await?;
        Ok(Pooled { pool: self, conn: Some(conn), broken: false, _permit: permit })
    }

    /// A new connection to the pool's database with its statements prepared, outside the
    /// pool's count (for the pool itself, and for the shared read connections).
    pub(super) async fn open(&self) -> Result<Conn, PgError> {
        // Opened on the driver's runtime, whatever runtime the caller polls this on: the
        // socket and the I/O task must live where they keep being driven (Nexus's runtime, or
        // the backend's own), not on a caller's runtime that may stop or block.
        let target = self.target.clone();
        let opening = self.driver.spawn(async move {
            let (client, _io) = target.connect().await?;
            let statements =
                Statements::prepare(&client).await.map_err(query("preparing statements"))?;
            Ok(Conn { client, statements })
        });
        opening.await.unwrap_or_else(|e| {
            Err(PgError::Unavailable(format!("opening a PostgreSQL connection failed: {e}")))
        })
    }
}

/// A pooled connection; marks itself broken on errors that may have left it unusable.
pub(super) struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    broken: bool,
    /// Released after the connection is back in the pool (fields drop after `Drop::drop`).
    _permit: SemaphorePermit<'a>,
}

impl Pooled<'_> {
    /// Do not return this connection to the pool (its state is unknown after an error).
    pub(super) fn discard(&mut self) {
        self.broken = true;
    }

    /// The connection.
    pub(super) fn conn(&self) -> &Conn {
        self.conn.as_ref().unwrap_or_else(|| unreachable!("taken only on drop"))
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.broken && !conn.client.is_closed() {
            self.pool.idle().push(conn);
        }
    }
}
