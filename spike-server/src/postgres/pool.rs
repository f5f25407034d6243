//! A small, bounded pool of synchronous PostgreSQL connections.
//!
//! At most `size` connections exist at once; a caller waits (up to the connect timeout) for one
//! to come back when all are in use. A connection that failed or was closed by the server is
//! dropped instead of returned, and the next caller opens a fresh one, so a database restart
//! costs the requests in flight, not the pool.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use postgres::Client;

use super::{PgError, Target};

/// Connections to one database, shared by every thread of a Nexus replica.
pub(super) struct Pool {
    target: Target,
    size: usize,
    wait: Duration,
    state: Mutex<PoolState>,
    returned: Condvar,
}

struct PoolState {
    idle: Vec<Client>,
    /// Connections handed out plus idle ones.
    open: usize,
}

impl Pool {
    pub(super) fn new(target: Target, size: usize, wait: Duration) -> Self {
        Self {
            target,
            size: size.max(1),
            wait,
            state: Mutex::new(PoolState { idle: Vec::new(), open: 0 }),
            returned: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // Two integers and a Vec updated together under the lock: consistent even if poisoned.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes every idle connection out of the pool (to close them somewhere safe).
    pub(super) fn drain(&self) -> Vec<Client> {
        let mut state = self.lock();
        state.open -= state.idle.len();
        std::mem::take(&mut state.idle)
    }

    /// A connection for one operation; it goes back to the pool when dropped.
    pub(super) fn get(&self) -> Result<Pooled<'_>, PgError> {
        let deadline = Instant::now() + self.wait;
        let mut state = self.lock();
        loop {
            while let Some(client) = state.idle.pop() {
                if client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(Pooled { pool: self, client: Some(client), broken: false });
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return match self.target.connect() {
                    Ok(client) => Ok(Pooled { pool: self, client: Some(client), broken: false }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.returned.notify_one();
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(PgError::Unavailable(format!(
                    "all {} PostgreSQL connections stayed busy for {:?}; raise \
                     SPIKE_NEXUS_POSTGRES_POOL_SIZE or check for slow queries",
                    self.size, self.wait
                )));
            }
            state = self
                .returned
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// A pooled connection; marks itself broken on errors that may have left it unusable.
pub(super) struct Pooled<'a> {
    pool: &'a Pool,
    client: Option<Client>,
    broken: bool,
}

impl Pooled<'_> {
    /// Do not return this connection to the pool (its state is unknown after an error).
    pub(super) fn discard(&mut self) {
        self.broken = true;
    }
}

impl Deref for Pooled<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().unwrap_or_else(|| unreachable!("taken only on drop"))
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().unwrap_or_else(|| unreachable!("taken only on drop"))
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        let mut state = self.pool.lock();
        if self.broken || client.is_closed() {
            state.open -= 1;
        } else {
            state.idle.push(client);
        }
        drop(state);
        self.pool.returned.notify_one();
    }
}
