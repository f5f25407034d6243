//! [`SecretCache`]: a get-through cache of secrets that refreshes itself and says when a
//! secret changed — SPIKE's "cached secrets with refresh" pattern, built in.
//!
//! - **Get-through**: [`SecretCache::get`] answers from memory once a path was read; the first
//!   read of a path goes to Nexus, and from then on the path is kept fresh.
//! - **Refresh**: a background task re-reads every cached path each
//!   [`refresh_interval`](SecretCacheBuilder::refresh_interval). A transient failure (Nexus
//!   down, sealed, rate limiting) keeps serving the last value and reports
//!   [`CacheEvent::RefreshFailed`]; a definite "no" — the secret was deleted
//!   (`NotFound`) or access was revoked (`Forbidden`) — drops the value at once, so revoking a
//!   policy takes effect within one interval.
//! - **Change notification**: [`SecretCache::watch`] follows one path ([`SecretWatch`]);
//!   [`SecretCache::subscribe`] reports every path's changes as [`CacheEvent`]s, which carry
//!   paths, never values.
//!
//! The task lives as long as any clone of the cache; it needs a tokio runtime.
//!
//! ```no_run
//! # async fn demo() -> Result<(), spike_client::Error> {
//! use std::time::Duration;
//! use spike_client::Spike;
//! use spike_client::cache::{SecretCache, SecretState};
//!
//! let cache = SecretCache::builder(Spike::new().await?)
//!     .refresh_interval(Duration::from_secs(30))
//!     .build()?;
//! let db = cache.get("tenants/app/db").await?;
//! println!("user = {:?}", db.get("username"));
//!
//! let mut watch = cache.watch("tenants/app/db").await?;
//! while let Some(state) = watch.changed().await {
//!     match state {
//!         SecretState::Present(values) => println!("rotated; {} keys", values.len()),
//!         SecretState::Gone => println!("deleted, or access revoked"),
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use spike_core::secret::SecretValues;
use tokio::sync::{broadcast, watch};
use tokio::task::AbortHandle;

use crate::client::Spike;
use crate::error::{Error, Result};

/// How often cached paths are re-read when no interval is given.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Shortest refresh interval accepted (a cache is not a polling loop against Nexus).
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(100);
/// How many events a slow [`SecretCache::subscribe`] receiver may fall behind before it
/// misses some (it then sees `RecvError::Lagged`).
pub const EVENT_CAPACITY: usize = 256;

/// What a watched secret looks like now.
#[derive(Debug, Clone)]
pub enum SecretState {
    /// Its current values.
    Present(Arc<SecretValues>),
    /// Deleted, or this identity may no longer read it (the cache keeps checking).
    Gone,
}

impl SecretState {
    /// The values, if present.
    pub fn values(&self) -> Option<&Arc<SecretValues>> {
        match self {
            SecretState::Present(v) => Some(v),
            SecretState::Gone => None,
        }
    }
}

/// A change seen by the cache. Events name paths only; read values through the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheEvent {
    /// The secret at `path` has new values.
    Changed {
        /// The secret's path.
        path: String,
    },
    /// The secret at `path` was deleted or access to it was revoked; its values were dropped.
    Gone {
        /// The secret's path.
        path: String,
        /// Why (Nexus said "not found" or "forbidden").
        reason: String,
    },
    /// Re-reading `path` failed transiently; the last values are still served.
    RefreshFailed {
        /// The secret's path.
        path: String,
        /// The error (never contains secret values).
        error: String,
    },
}

/// Configures a [`SecretCache`].
#[derive(Debug)]
pub struct SecretCacheBuilder {
    client: Spike,
    refresh_interval: Duration,
}

impl SecretCacheBuilder {
    /// How often every cached path is re-read (default [`DEFAULT_REFRESH_INTERVAL`]).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// Starts the cache and its refresh task (inside a tokio runtime).
    pub fn build(self) -> Result<SecretCache> {
        if self.refresh_interval < MIN_REFRESH_INTERVAL {
            return Err(Error::InvalidInput {
                what: format!("refresh interval {:?}", self.refresh_interval),
                reason: format!("it must be at least {MIN_REFRESH_INTERVAL:?}"),
            });
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let inner = Arc::new(Inner {
            client: self.client,
            interval: self.refresh_interval,
            slots: Mutex::new(HashMap::new()),
            events,
            task: Mutex::new(None),
        });
        let task = runtime.spawn(refresh_loop(Arc::downgrade(&inner), self.refresh_interval));
        *lock(&inner.task) = Some(task.abort_handle());
        Ok(SecretCache { inner })
    }
}

/// A self-refreshing cache of secrets read through one [`Spike`] client. Cheap to clone;
/// clones share entries and the refresh task.
#[derive(Debug, Clone)]
pub struct SecretCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Spike,
    interval: Duration,
    slots: Mutex<HashMap<String, watch::Sender<SecretState>>>,
    events: broadcast::Sender<CacheEvent>,
    task: Mutex<Option<AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

/// Follows one cached path; see [`SecretCache::watch`].
#[derive(Debug)]
pub struct SecretWatch {
    path: String,
    rx: watch::Receiver<SecretState>,
}

impl SecretWatch {
    /// The path being followed.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The latest state, without waiting.
    pub fn current(&self) -> SecretState {
        self.rx.borrow().clone()
    }

    /// Waits for the next change and returns the new state; `None` once the cache stopped
    /// following the path ([`SecretCache::invalidate`], or every clone of the cache dropped).
    pub async fn changed(&mut self) -> Option<SecretState> {
        self.rx.changed().await.ok()?;
        Some(self.rx.borrow_and_update().clone())
    }
}

impl SecretCache {
    /// A cache over `client` with the default refresh interval.
    pub fn new(client: Spike) -> Result<Self> {
        Self::builder(client).build()
    }

    /// Configures a cache over `client`.
    pub fn builder(client: Spike) -> SecretCacheBuilder {
        SecretCacheBuilder { client, refresh_interval: DEFAULT_REFRESH_INTERVAL }
    }

    /// The refresh interval.
    pub fn refresh_interval(&self) -> Duration {
        self.inner.interval
    }

    /// The current values at `path`: from memory if cached and present, otherwise read from
    /// Nexus (and cached from then on). Errors are Nexus's (`Forbidden`, `NotFound`, ...).
    pub async fn get(&self, path: &str) -> Result<Arc<SecretValues>> {
        if let Some(SecretState::Present(values)) = self.cached(path) {
            return Ok(values);
        }
        match self.inner.client.get_secret(path).await {
            Ok(values) => Ok(self.inner.store(path, values)),
            Err(e) => {
                if matches!(e, Error::NotFound | Error::Forbidden) {
                    self.inner.mark_gone(path, &e);
                }
                Err(e)
            }
        }
    }

    /// The cached state of `path`, without asking Nexus; `None` if the path is not cached.
    pub fn cached(&self, path: &str) -> Option<SecretState> {
        lock(&self.inner.slots).get(path).map(|tx| tx.borrow().clone())
    }

    /// Follows `path`: reads it first (as [`SecretCache::get`]), then reports every change.
    pub async fn watch(&self, path: &str) -> Result<SecretWatch> {
        self.get(path).await?;
        let rx = lock(&self.inner.slots)
            .get(path)
            .map(watch::Sender::subscribe)
            // Only a concurrent `invalidate` between the two lines gets here.
            .ok_or_else(|| Error::SourceUnavailable(format!("{path} was invalidated")))?;
        Ok(SecretWatch { path: path.to_owned(), rx })
    }

    /// Every change the cache sees, for all paths.
    pub fn subscribe(&self) -> broadcast::Receiver<CacheEvent> {
        self.inner.events.subscribe()
    }

    /// Re-reads `path` now (cached or not) and notifies watchers if it changed.
    pub async fn refresh(&self, path: &str) -> Result<SecretState> {
        self.inner.refresh_one(path).await
    }

    /// Re-reads every cached path now, as the background task does each interval.
    pub async fn refresh_all(&self) {
        self.inner.refresh_all().await;
    }

    /// Forgets `path`: its values are dropped and its watchers end.
    pub fn invalidate(&self, path: &str) {
        lock(&self.inner.slots).remove(path);
    }

    /// The cached paths, sorted.
    pub fn paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = lock(&self.inner.slots).keys().cloned().collect();
        paths.sort();
        paths
    }
}

impl Inner {
    /// Stores `values` for `path`; notifies if they differ from what was cached. Returns the
    /// values now cached.
    fn store(&self, path: &str, values: SecretValues) -> Arc<SecretValues> {
        let mut slots = lock(&self.slots);
        let Some(tx) = slots.get(path) else {
            let values = Arc::new(values);
            slots.insert(path.to_owned(), watch::Sender::new(SecretState::Present(values.clone())));
            return values;
        };
        let mut now = None;
        let changed = tx.send_if_modified(|state| match state {
            SecretState::Present(old) if same(old, &values) => {
                now = Some(old.clone());
                false
            }
            _ => {
                let fresh = Arc::new(values);
                now = Some(fresh.clone());
                *state = SecretState::Present(fresh);
                true
            }
        });
        drop(slots);
        if changed {
            let _ = self.events.send(CacheEvent::Changed { path: path.to_owned() });
        }
        // `send_if_modified` always runs the closure, which always sets `now`.
        now.unwrap_or_default()
    }

    fn mark_gone(&self, path: &str, why: &Error) {
        let slots = lock(&self.slots);
        let Some(tx) = slots.get(path) else { return };
        let changed = tx.send_if_modified(|state| {
            let was_present = matches!(state, SecretState::Present(_));
            *state = SecretState::Gone;
            was_present
        });
        drop(slots);
        if changed {
            let reason = match why {
                Error::NotFound => "not found".to_owned(),
                Error::Forbidden => "forbidden".to_owned(),
                other => other.to_string(),
            };
            let _ = self.events.send(CacheEvent::Gone { path: path.to_owned(), reason });
        }
    }

    async fn refresh_one(&self, path: &str) -> Result<SecretState> {
        match self.client.get_secret(path).await {
            Ok(values) => Ok(SecretState::Present(self.store(path, values))),
            Err(e @ (Error::NotFound | Error::Forbidden)) => {
                self.mark_gone(path, &e);
                Ok(SecretState::Gone)
            }
            Err(e) => {
                let _ = self.events.send(CacheEvent::RefreshFailed {
                    path: path.to_owned(),
                    error: e.to_string(),
                });
                Err(e)
            }
        }
    }

    async fn refresh_all(&self) {
        let paths: Vec<String> = lock(&self.slots).keys().cloned().collect();
        for path in paths {
            // Failures are reported as events; the loop goes on with the other paths.
            let _ = self.refresh_one(&path).await;
        }
    }
}

/// Re-reads every cached path each interval until the last cache clone is dropped.
async fn refresh_loop(inner: Weak<Inner>, interval: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        inner.refresh_all().await;
    }
}

fn same(a: &SecretValues, b: &SecretValues) -> bool {
    a.len() == b.len() && a.iter().eq(b.iter())
}

/// Locks a mutex, recovering from poisoning: every critical section here only swaps values,
/// so a panic elsewhere cannot leave the map half-updated.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_compare_by_content() {
        let a: SecretValues = [("k", "v"), ("x", "y")].into_iter().collect();
        let b: SecretValues = [("x", "y"), ("k", "v")].into_iter().collect();
        let c: SecretValues = [("k", "v")].into_iter().collect();
        assert!(same(&a, &b));
        assert!(!same(&a, &c));
    }
}
