//! The open connections of one listener: how many, whose, and which are idle.
//!
//! Issue 13: SPIKE's Go SDK opens a new connection for every call and leaves it idle, and any
//! caller with a valid SVID could hold every connection slot without sending a byte. So the
//! listener keeps this table and enforces, in order of cost to legitimate callers:
//!
//! 1. an idle timeout: a connection with no request in flight for [`ConnectionLimits::
//!    idle_timeout`] (counted from the handshake, then from the end of each request) is closed;
//! 2. at the global cap, the *least recently used idle* connection is closed to admit a new
//!    one, instead of leaving the new handshake in the kernel backlog;
//! 3. a per-SPIFFE-ID cap: a caller over it loses its own oldest idle connection first, and
//!    only a caller whose connections are all busy is refused.
//!
//! A connection with a request in flight is never chosen: closing is always hyper's graceful
//! shutdown, which lets the current request finish (HTTP/1.1) or sends GOAWAY (HTTP/2).
//!
//! Per-request bookkeeping is two atomic updates on the connection's own entry; the table's
//! lock is taken only when a connection opens, is identified, or closes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Default for the global connection cap (`SPIKE_NEXUS_MAX_CONNECTIONS`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default per-caller connection cap (`SPIKE_NEXUS_MAX_CONNECTIONS_PER_CALLER`): far above a
/// client's pool (reqwest and Go keep at most a few dozen per host), so only a caller that
/// opens connections and abandons them ever meets it.
pub const DEFAULT_MAX_CONNECTIONS_PER_CALLER: usize = 1024;
/// Default idle timeout (`SPIKE_NEXUS_IDLE_TIMEOUT`), as long as Go's client keeps an idle
/// connection in SPIKE's SDK, so a pooled connection is rarely closed under a client.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time allowed to send a whole request body (`SPIKE_NEXUS_BODY_READ_TIMEOUT`); a 1 MiB
/// body (the default cap) at 1 Mbit/s takes about 8 s.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time allowed to send the request line and headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line plus headers) in bytes: SPIKE's requests carry a short
/// path and a few headers (the identity is in the TLS handshake, not in a header), so 16 KiB
/// leaves room for proxies' headers and still refuses 64 KB URLs before they are parsed.
pub const DEFAULT_MAX_HEAD_BYTES: usize = 16 * 1024;

/// How a listener bounds its connections; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once (handshaking, busy and idle).
    pub max_connections: usize,
    /// Connections one SPIFFE ID may hold at once.
    pub max_per_caller: usize,
    /// Longest time a connection may sit with no request in flight.
    pub idle_timeout: Duration,
    /// Time allowed to send request headers.
    pub header_read_timeout: Duration,
    /// Time allowed to send a whole request body, from the start of the request.
    pub body_read_timeout: Duration,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Largest request head in bytes (HTTP/1.1 read buffer; HTTP/2 header list).
    pub max_head_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_per_caller: DEFAULT_MAX_CONNECTIONS_PER_CALLER,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
        }
    }
}

/// Why a connection was closed by the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Idle longer than the idle timeout.
    IdleTimeout,
    /// The least recently used idle connection, closed at the global cap.
    LeastRecentlyUsed,
    /// The caller's oldest idle connection, closed at the per-caller cap.
    PerCaller,
    /// The server is shutting down.
    Shutdown,
}

/// One open connection's entry: shared by the table and the task serving it.
#[derive(Debug)]
pub struct Connection {
    id: u64,
    /// Milliseconds since the table's epoch at the last request start or end.
    last_active_ms: AtomicU64,
    in_flight: AtomicU32,
    /// Set (under the table's lock) once the connection was told to close.
    closing: AtomicBool,
    close: Notify,
    caller: OnceLock<Arc<str>>,
}

impl Connection {
    /// Resolves once the table asks this connection to close (eviction or shutdown).
    pub async fn close_requested(&self) {
        self.close.notified().await;
    }

    /// True once the table asked this connection to close.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }
}

/// Marks a request in flight on a connection until dropped.
#[derive(Debug)]
pub struct InFlight {
    table: Arc<Connections>,
    conn: Arc<Connection>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Stamp the time before the count drops, so an idle scan never sees a stale time.
        self.conn.last_active_ms.store(self.table.now_ms(), Ordering::Release);
        self.conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's place in the table; removing it (on drop) frees the slot.
#[derive(Debug)]
pub struct Registration {
    table: Arc<Connections>,
    conn: Arc<Connection>,
}

impl Registration {
    /// The connection's entry.
    pub fn connection(&self) -> &Arc<Connection> {
        &self.conn
    }

    /// Records the caller once the handshake has verified it, enforcing the per-caller cap:
    /// the caller's oldest idle connection is closed to make room; `Err` when all of them are
    /// busy (the new connection must then be dropped).
    pub fn identify(&self, caller: Arc<str>) -> Result<(), CallerAtCap> {
        self.table.identify(&self.conn, caller)
    }

    /// Marks a request in flight until the guard is dropped.
    pub fn begin_request(&self) -> InFlight {
        self.table.begin_request(&self.conn)
    }

    /// When the connection becomes (or became) idle for longer than the idle timeout; `None`
    /// while a request is in flight.
    pub fn idle_deadline(&self) -> Option<Instant> {
        if !self.conn.is_idle() {
            return None;
        }
        let last = self.conn.last_active_ms.load(Ordering::Acquire);
        Some(self.table.epoch + Duration::from_millis(last) + self.table.limits.idle_timeout)
    }

    /// Closes the connection for having been idle too long, if it still is; true if so.
    pub fn expire_if_idle(&self) -> bool {
        let Some(deadline) = self.idle_deadline() else { return false };
        if Instant::now() < deadline {
            return false;
        }
        self.table.mark_closing(&self.conn, Eviction::IdleTimeout)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.table.remove(&self.conn);
    }
}

/// A caller already holds its cap of busy connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerAtCap {
    /// The caller's SPIFFE ID.
    pub caller: Arc<str>,
    /// The cap it reached.
    pub cap: usize,
}

#[derive(Debug, Default)]
struct Inner {
    conns: HashMap<u64, Arc<Connection>>,
    /// Open connections per caller, not counting those already closing.
    per_caller: HashMap<Arc<str>, usize>,
    /// Connections told to close that have not closed yet.
    closing: usize,
    next_id: u64,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    evicted_idle: AtomicU64,
    evicted_lru: AtomicU64,
    evicted_per_caller: AtomicU64,
    refused_per_caller: AtomicU64,
    refused_handshake: AtomicU64,
    tls_resumed: AtomicU64,
}

/// What the table holds and has done, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionSnapshot {
    /// Connections open now (including handshaking and closing ones).
    pub open: usize,
    /// Identified connections with no request in flight.
    pub idle: usize,
    /// Connections told to close that have not closed yet.
    pub closing: usize,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Closed for being idle past the idle timeout.
    pub evicted_idle_timeout: u64,
    /// Closed as least recently used at the global cap.
    pub evicted_lru: u64,
    /// Closed as the caller's oldest idle one at the per-caller cap.
    pub evicted_per_caller: u64,
    /// Refused because the caller held its cap of busy connections.
    pub refused_per_caller: u64,
    /// Refused at the TLS handshake (failed, timed out, or no usable SPIFFE ID).
    pub refused_handshake: u64,
    /// Admitted on a resumed TLS session (no certificate exchange; issue 15).
    pub tls_resumed: u64,
}

impl ConnectionSnapshot {
    /// Prometheus text exposition, metric names prefixed with `prefix` (e.g. `spike_nexus`).
    pub fn render(&self, prefix: &str) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, value: usize| {
            out.push_str(&format!(
                "# HELP {prefix}_{name} {help}\n# TYPE {prefix}_{name} gauge\n\
                 {prefix}_{name} {value}\n"
            ));
        };
        gauge(&mut out, "connections_open", "Open connections.", self.open);
        gauge(
            &mut out,
            "connections_idle",
            "Open connections with no request in flight.",
            self.idle,
        );
        gauge(
            &mut out,
            "connections_closing",
            "Connections told to close, not closed yet.",
            self.closing,
        );
        out.push_str(&format!(
            "# HELP {prefix}_connections_accepted_total Connections accepted.\n\
             # TYPE {prefix}_connections_accepted_total counter\n\
             {prefix}_connections_accepted_total {}\n",
            self.accepted
        ));
        out.push_str(&format!(
            "# HELP {prefix}_connections_evicted_total Connections the server closed, by reason.\n\
             # TYPE {prefix}_connections_evicted_total counter\n\
             {prefix}_connections_evicted_total{{reason=\"idle_timeout\"}} {}\n\
             {prefix}_connections_evicted_total{{reason=\"lru\"}} {}\n\
             {prefix}_connections_evicted_total{{reason=\"per_caller\"}} {}\n",
            self.evicted_idle_timeout, self.evicted_lru, self.evicted_per_caller
        ));
        out.push_str(&format!(
            "# HELP {prefix}_connections_refused_total Connections refused, by reason.\n\
             # TYPE {prefix}_connections_refused_total counter\n\
             {prefix}_connections_refused_total{{reason=\"per_caller\"}} {}\n\
             {prefix}_connections_refused_total{{reason=\"handshake\"}} {}\n",
            self.refused_per_caller, self.refused_handshake
        ));
        out.push_str(&format!(
            "# HELP {prefix}_tls_resumed_total Connections admitted on a resumed TLS session.\n\
             # TYPE {prefix}_tls_resumed_total counter\n\
             {prefix}_tls_resumed_total {}\n",
            self.tls_resumed
        ));
        out
    }
}

/// The connection table of one listener; see the module docs.
#[derive(Debug)]
pub struct Connections {
    limits: ConnectionLimits,
    epoch: Instant,
    inner: Mutex<Inner>,
    /// Signalled whenever a connection closes or may have become evictable.
    freed: Notify,
    counters: Counters,
}

impl Connections {
    /// An empty table enforcing `limits`.
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
            freed: Notify::new(),
            counters: Counters::default(),
        })
    }

    /// The limits this table enforces.
    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a newly accepted connection: at once below the cap; at the cap by closing the
    /// least recently used idle connection; otherwise after a connection closes (the caller
    /// holds the accepted socket meanwhile, and accepts nothing else).
    pub async fn admit(self: &Arc<Self>) -> Registration {
        loop {
            if let Some(registration) = self.try_admit() {
                return registration;
            }
            // Connections may also become idle (evictable) without closing: look again soon.
            let _ = tokio::time::timeout(Duration::from_millis(50), self.freed.notified()).await;
        }
    }

    /// [`Connections::admit`] without waiting: `None` when every connection is busy.
    pub fn try_admit(self: &Arc<Self>) -> Option<Registration> {
        let mut inner = self.lock();
        let max = self.limits.max_connections.max(1);
        let live = inner.conns.len() - inner.closing;
        // Closing connections still hold descriptors; never let them pile up past twice the cap.
        let room = inner.conns.len() < max.saturating_mul(2);
        if !(room && live < max) {
            let victim = room.then(|| lru_idle(&inner, None)).flatten()?;
            self.mark_closing_locked(&mut inner, &victim, Eviction::LeastRecentlyUsed);
        }
        inner.next_id += 1;
        let conn = Arc::new(Connection {
            id: inner.next_id,
            last_active_ms: AtomicU64::new(self.now_ms()),
            in_flight: AtomicU32::new(0),
            closing: AtomicBool::new(false),
            close: Notify::new(),
            caller: OnceLock::new(),
        });
        inner.conns.insert(conn.id, conn.clone());
        drop(inner);
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        Some(Registration { table: self.clone(), conn })
    }

    fn identify(&self, conn: &Arc<Connection>, caller: Arc<str>) -> Result<(), CallerAtCap> {
        let mut inner = self.lock();
        let cap = self.limits.max_per_caller.max(1);
        // One shared string per caller: the per-caller scan then compares pointers (see
        // `lru_idle`), and every live connection of a caller holds the map's key.
        let (caller, held) = match inner.per_caller.get_key_value(&caller) {
            Some((key, held)) => (key.clone(), *held),
            None => (caller, 0),
        };
        if held >= cap {
            let Some(victim) = lru_idle(&inner, Some(&caller)) else {
                self.counters.refused_per_caller.fetch_add(1, Ordering::Relaxed);
                return Err(CallerAtCap { caller, cap });
            };
            self.mark_closing_locked(&mut inner, &victim, Eviction::PerCaller);
        }
        // The handshake happens once per connection, so the caller is set exactly once.
        let _ = conn.caller.set(caller.clone());
        conn.last_active_ms.store(self.now_ms(), Ordering::Release);
        if !conn.closing.load(Ordering::Acquire) {
            *inner.per_caller.entry(caller).or_default() += 1;
        }
        Ok(())
    }

    fn begin_request(self: &Arc<Self>, conn: &Arc<Connection>) -> InFlight {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        conn.last_active_ms.store(self.now_ms(), Ordering::Release);
        InFlight { table: self.clone(), conn: conn.clone() }
    }

    /// Counts a connection refused at the TLS handshake.
    pub fn count_handshake_refused(&self) {
        self.counters.refused_handshake.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection admitted on a resumed TLS session.
    pub fn count_tls_resumed(&self) {
        self.counters.tls_resumed.fetch_add(1, Ordering::Relaxed);
    }

    fn mark_closing(&self, conn: &Arc<Connection>, why: Eviction) -> bool {
        let mut inner = self.lock();
        self.mark_closing_locked(&mut inner, conn, why)
    }

    /// Tells `conn` to close; false if it already was told.
    fn mark_closing_locked(
        &self,
        inner: &mut Inner,
        conn: &Arc<Connection>,
        why: Eviction,
    ) -> bool {
        if conn.closing.swap(true, Ordering::AcqRel) {
            return false;
        }
        inner.closing += 1;
        if let Some(caller) = conn.caller.get() {
            release_caller(inner, caller);
        }
        let counter = match why {
            Eviction::IdleTimeout => Some(&self.counters.evicted_idle),
            Eviction::LeastRecentlyUsed => Some(&self.counters.evicted_lru),
            Eviction::PerCaller => Some(&self.counters.evicted_per_caller),
            Eviction::Shutdown => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        conn.close.notify_one();
        true
    }

    fn remove(&self, conn: &Arc<Connection>) {
        let mut inner = self.lock();
        if inner.conns.remove(&conn.id).is_some() {
            if conn.closing.load(Ordering::Acquire) {
                inner.closing -= 1;
            } else if let Some(caller) = conn.caller.get() {
                release_caller(&mut inner, caller);
            }
        }
        drop(inner);
        self.freed.notify_one();
    }

    /// Tells every open connection to close (graceful: requests in flight finish).
    pub fn close_all(&self) {
        let mut inner = self.lock();
        let all: Vec<Arc<Connection>> = inner.conns.values().cloned().collect();
        for conn in &all {
            self.mark_closing_locked(&mut inner, conn, Eviction::Shutdown);
        }
    }

    /// Waits until no connection is open.
    pub async fn closed(&self) {
        loop {
            if self.lock().conns.is_empty() {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), self.freed.notified()).await;
        }
    }

    /// Counts and gauges for `/metrics`.
    pub fn snapshot(&self) -> ConnectionSnapshot {
        let inner = self.lock();
        let idle = inner
            .conns
            .values()
            .filter(|c| c.caller.get().is_some() && c.is_idle() && !c.is_closing())
            .count();
        let c = &self.counters;
        ConnectionSnapshot {
            open: inner.conns.len(),
            idle,
            closing: inner.closing,
            accepted: c.accepted.load(Ordering::Relaxed),
            evicted_idle_timeout: c.evicted_idle.load(Ordering::Relaxed),
            evicted_lru: c.evicted_lru.load(Ordering::Relaxed),
            evicted_per_caller: c.evicted_per_caller.load(Ordering::Relaxed),
            refused_per_caller: c.refused_per_caller.load(Ordering::Relaxed),
            refused_handshake: c.refused_handshake.load(Ordering::Relaxed),
            tls_resumed: c.tls_resumed.load(Ordering::Relaxed),
        }
    }
}

fn release_caller(inner: &mut Inner, caller: &Arc<str>) {
    if let Some(n) = inner.per_caller.get_mut(caller) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            inner.per_caller.remove(caller);
        }
    }
}

/// The identified, idle, not-closing connection used least recently (of `caller` if given).
/// A linear scan: it runs only at a cap, and a few thousand entries take microseconds.
/// `caller` must be the per-caller map's key: live connections share it, so comparing
/// pointers is exact (measured: comparing the strings was 8 % of Nexus's CPU under SPIKE's
/// Go SDK, which reaches the per-caller cap on every call).
fn lru_idle(inner: &Inner, caller: Option<&Arc<str>>) -> Option<Arc<Connection>> {
    inner
        .conns
        .values()
        .filter(|c| match (c.caller.get(), caller) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(own), Some(wanted)) => Arc::ptr_eq(own, wanted),
        })
        .filter(|c| !c.is_closing() && c.is_idle())
        .min_by_key(|c| c.last_active_ms.load(Ordering::Acquire))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_caller: usize) -> ConnectionLimits {
        ConnectionLimits { max_connections: max, max_per_caller: per_caller, ..Default::default() }
    }

    fn caller(name: &str) -> Arc<str> {
        Arc::from(format!("spiffe://spike.ist/workload/{name}"))
    }

    #[tokio::test]
    async fn at_the_cap_the_least_recently_used_idle_connection_is_closed() {
        let table = Connections::new(limits(3, 10));
        let a = table.try_admit().unwrap();
        a.identify(caller("a")).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let b = table.try_admit().unwrap();
        b.identify(caller("b")).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let c = table.try_admit().unwrap();
        c.identify(caller("c")).unwrap();
        // `a` becomes the most recently used by serving a request.
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(a.begin_request());

        let d = table.try_admit().expect("admitted by evicting an idle connection");
        assert!(b.connection().is_closing(), "b was the least recently used idle connection");
        assert!(!a.connection().is_closing() && !c.connection().is_closing());
        b.connection().close_requested().await;
        assert_eq!(table.snapshot().evicted_lru, 1);
        drop(b);
        assert_eq!(table.snapshot().open, 3);
        drop(d);
    }

    #[tokio::test]
    async fn a_connection_with_a_request_in_flight_is_never_evicted() {
        let table = Connections::new(limits(2, 10));
        let a = table.try_admit().unwrap();
        a.identify(caller("a")).unwrap();
        let b = table.try_admit().unwrap();
        b.identify(caller("b")).unwrap();
        let _busy_a = a.begin_request();
        let _busy_b = b.begin_request();
        assert!(table.try_admit().is_none(), "every connection is busy: wait");
        // Handshaking (unidentified) connections are not idle either.
        drop(_busy_b);
        let c = table.try_admit().expect("b is idle now");
        assert!(b.connection().is_closing() && !a.connection().is_closing());
        drop(b);
        assert!(table.try_admit().is_none(), "a is busy and c is still handshaking");
        drop(c);
    }

    #[tokio::test]
    async fn the_per_caller_cap_closes_that_callers_oldest_idle_connection_first() {
        let table = Connections::new(limits(100, 2));
        let other = table.try_admit().unwrap();
        other.identify(caller("other")).unwrap();
        let first = table.try_admit().unwrap();
        first.identify(caller("noisy")).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = table.try_admit().unwrap();
        second.identify(caller("noisy")).unwrap();
        let third = table.try_admit().unwrap();
        third.identify(caller("noisy")).unwrap();
        assert!(first.connection().is_closing(), "the oldest idle one of the same caller");
        assert!(!other.connection().is_closing() && !second.connection().is_closing());

        // All of the caller's live connections busy: the next one is refused.
        let _b2 = second.begin_request();
        let _b3 = third.begin_request();
        let fourth = table.try_admit().unwrap();
        let err = fourth.identify(caller("noisy")).unwrap_err();
        assert_eq!(err.cap, 2);
        let snap = table.snapshot();
        assert_eq!((snap.evicted_per_caller, snap.refused_per_caller), (1, 1));
        // Another caller is unaffected.
        let fifth = table.try_admit().unwrap();
        fifth.identify(caller("other")).unwrap();
    }

    #[tokio::test]
    async fn an_idle_connection_expires_after_the_idle_timeout_and_a_busy_one_does_not() {
        let table = Connections::new(ConnectionLimits {
            idle_timeout: Duration::from_millis(30),
            ..limits(10, 10)
        });
        let idle = table.try_admit().unwrap();
        idle.identify(caller("a")).unwrap();
        let busy = table.try_admit().unwrap();
        busy.identify(caller("a")).unwrap();
        let _request = busy.begin_request();
        assert!(!idle.expire_if_idle(), "not yet");
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(busy.idle_deadline().is_none());
        assert!(!busy.expire_if_idle());
        assert!(idle.expire_if_idle());
        assert!(!idle.expire_if_idle(), "counted once");
        assert_eq!(table.snapshot().evicted_idle_timeout, 1);
    }

    #[tokio::test]
    async fn closing_all_and_dropping_leaves_an_empty_table() {
        let table = Connections::new(limits(10, 10));
        let regs: Vec<_> = (0..4).map(|_| table.try_admit().unwrap()).collect();
        table.close_all();
        assert!(regs.iter().all(|r| r.connection().is_closing()));
        assert_eq!(table.snapshot().closing, 4);
        drop(regs);
        table.closed().await;
        let snap = table.snapshot();
        assert_eq!((snap.open, snap.closing, snap.accepted), (0, 0, 4));
        assert!(snap.render("spike_nexus").contains("spike_nexus_connections_accepted_total 4"));
    }
}
