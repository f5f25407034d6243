//! A few connections shared by every key read, each read pipelined behind the others.
//!
//! A key read is one statement outside any transaction, so it needs no connection of its own:
//! `tokio-postgres` queues the requests of concurrent callers of one client, its I/O task
//! writes whatever is queued in one go and hands the answers back in order, and PostgreSQL
//! answers each statement on its own (one `Sync` each, so one failing read fails nothing else).
//! Under load one wake-up of the I/O task, and of the PostgreSQL backend process, then serves
//! several GETs instead of one each; with a connection checked out per read, every GET paid
//! both wake-ups and their system calls (measured: the README's "Replicas on PostgreSQL").
//! Reads go round robin over the connections, so PostgreSQL can still use several cores.
//!
//! A connection found closed (a server restart, a broken network) is replaced by the read that
//! finds it so; the reads in flight on it fail, as they would on a pooled connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::PgError;
use super::pool::{Conn, Pool};

/// The shared read connections of one backend.
pub(super) struct Readers {
    /// Where connections come from (opened outside the pool's count).
    pool: Arc<Pool>,
    slots: Vec<Slot>,
    next: AtomicUsize,
}

/// One shared connection, once opened.
struct Slot {
    conn: Mutex<Option<Arc<Conn>>>,
    /// Held while (re)opening, so concurrent readers wait for one new connection instead of
    /// each opening their own.
    opening: tokio::sync::Mutex<()>,
}

impl Slot {
    /// The connection, unless there is none yet or it was closed.
    fn live(&self) -> Option<Arc<Conn>> {
        // An Option replaced whole under the lock: consistent even if poisoned.
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.as_ref().filter(|c| !c.client.is_closed()).cloned()
    }
}

impl Readers {
    /// `count` (at least one) shared connections from `pool`'s database, opened when first
    /// used.
    pub(super) fn new(pool: Arc<Pool>, count: usize) -> Self {
        let slots = (0..count.max(1))
            .map(|_| Slot { conn: Mutex::new(None), opening: tokio::sync::Mutex::new(()) })
            .collect();
        Self { pool, slots, next: AtomicUsize::new(0) }
    }

    /// A connection to send one read on (the next in turn), opened or replaced if needed.
    pub(super) async fn conn(&self) -> Result<Arc<Conn>, PgError> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        if let Some(conn) = slot.live() {
            return Ok(conn);
        }
        let _opening = slot.opening.lock().await;
        if let Some(conn) = slot.live() {
            return Ok(conn);
        }
        let conn = Arc::new(self.pool.open().await?);
        *slot.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    /// Takes every connection out (to close them).
    pub(super) fn drain(&self) -> Vec<Arc<Conn>> {
        let take = |s: &Slot| s.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.slots.iter().filter_map(take).collect()
    }
}
