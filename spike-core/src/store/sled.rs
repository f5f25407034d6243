//! The embedded, durable [`Backend`] on [`sled`] (crate feature `sled`, on by default).
//!
//! # Durability: flush before acknowledging, one flush for many writers
//!
//! sled makes writes visible at once but persists them only when its log is flushed, by default
//! every 500 ms. A secrets manager must not acknowledge a write that a crash can still undo
//! (DESIGN.md, "Embedded store"), so [`SledBackend::commit`] returns only after a
//! [`sled::Tree::flush`] that *started after the write was applied* has completed.
//!
//! One `fsync` per write would cap throughput at the disk's sync rate, so writers share
//! flushes (group commit), without a background thread:
//!
//! 1. a writer applies its batch, then takes a ticket (a counter, under a mutex);
//! 2. if a flush that started after its ticket has already completed, it is done;
//! 3. otherwise, if no flush is running, it becomes the *leader*: it notes the highest ticket
//!    issued so far, flushes, marks every ticket up to that one durable and wakes everyone;
//! 4. otherwise it sleeps until the running flush ends and goes back to step 2.
//!
//! Writers that arrive during a flush therefore all ride on the next one, led by one of them:
//! under load the number of flushes stays near the number of flush *durations* elapsed, not the
//! number of writes ([`SledBackend::stats`] counts both; the store tests check it).
//!
//! One more step makes the grouping real with sled: a sled flush holds sled's concurrency
//! control *shared* for its whole `fsync`, and applying a batch or transaction takes it
//! *exclusively*, so no write can be applied while a flush runs. Writers that queued behind a
//! flush are applied one by one right after it, and a leader that flushed at once would cover
//! only itself (measured: 3,200 writes took 1,770 flushes with 16 writers). So a leader first
//! *gathers*: it waits until every writer already applying its batch has taken its ticket (at
//! most [`GATHER_LIMIT`]), then flushes for all of them. A lone writer never waits.
//!
//! A write is visible to readers as soon as it is applied, a little before it is durable; a
//! reader can therefore see a value whose writer has not yet been told "done". If a flush fails,
//! we cannot tell which writes reached the disk, so the backend fails closed: that write and
//! every later one report [`StoreError::Backend`] ([`StoreError::NoSpace`] when the disk was
//! full) until the process restarts and sled recovers its log.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::backend::{Backend, Batch, Commit, Write};
use crate::error::{StoreError, is_out_of_space};

/// How long [`SledBackend::open`] waits for a directory lock held by someone else.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Default limit of sled's page cache, in bytes (`SPIKE_NEXUS_SLED_CACHE_MIB` sets Nexus's).
pub const DEFAULT_CACHE_BYTES: u64 = 16 << 20;

/// Longest time a flush leader waits for writers that are applying their batches to join its
/// flush (see the module docs). Applying takes microseconds; the cap only matters when sled's
/// own background flusher holds the writers up.
pub const GATHER_LIMIT: Duration = Duration::from_millis(2);

/// When the last flush was shared, a leader also waits until no writer has joined for this
/// long (bounded by [`GATHER_LIMIT`]).
pub const GATHER_QUIET: Duration = Duration::from_micros(100);

/// A [`Backend`] on a sled database directory; every acknowledged write is on disk.
pub struct SledBackend {
    db: sled::Db,
    group: GroupCommit,
    writes: AtomicU64,
}

impl std::fmt::Debug for SledBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledBackend").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

/// Counters showing how well writers share flushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushStats {
    /// Applied write batches since the backend was opened.
    pub writes: u64,
    /// `fsync`ing flushes performed for them.
    pub flushes: u64,
}

impl SledBackend {
    /// Opens (or creates) the database in directory `path`.
    ///
    /// sled locks the directory for one open database. After a database in this process is
    /// dropped, sled's background I/O threads may hold it for a few more milliseconds, so a
    /// lock held by someone else is waited for up to ten seconds before giving up; a second
    /// process that keeps the directory open still gets a clear error.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Like [`SledBackend::open`], with sled's page cache limited to about `cache_bytes`
    /// (sled's own default is 1 GiB, which a large store fills: 861 MiB of RSS at a million
    /// secrets). Records not in the cache are read from disk (the OS page cache) when needed.
    pub fn open_with_cache(path: impl AsRef<Path>, cache_bytes: u64) -> Result<Self, StoreError> {
        Self::open_waiting(path.as_ref(), LOCK_WAIT, cache_bytes)
    }

    fn open_waiting(
        path: &Path,
        lock_wait: Duration,
        cache_bytes: u64,
    ) -> Result<Self, StoreError> {
        let deadline = Instant::now() + lock_wait;
        loop {
            match sled::Config::new().path(path).cache_capacity(cache_bytes).open() {
                Ok(db) => return Ok(Self::from_db(db)),
                Err(sled::Error::Io(e)) if is_lock_held(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(StoreError::Backend(format!(
                        "cannot open the sled database at {}: {e}; check the directory exists, \
                         is writable and is not open in another process",
                        path.display()
                    )));
                }
            }
        }
    }

    /// Wraps an already opened database (e.g. one configured with `sled::Config`).
    pub fn from_db(db: sled::Db) -> Self {
        Self { db, group: GroupCommit::default(), writes: AtomicU64::new(0) }
    }

    /// How many writes and flushes this backend has done.
    pub fn stats(&self) -> FlushStats {
        FlushStats { writes: self.writes.load(Ordering::Relaxed), flushes: self.group.flushes() }
    }

    fn apply(&self, batch: &Batch) -> Result<Commit, StoreError> {
        if batch.preconditions().is_empty() {
            let mut b = sled::Batch::default();
            for write in batch.writes() {
                match write {
                    Write::Put(k, v) => b.insert(k.as_bytes(), v.as_slice()),
                    Write::Delete(k) => b.remove(k.as_bytes()),
                }
            }
            self.db.apply_batch(b).map_err(sled_error)?;
            return Ok(Commit::Applied);
        }
        let outcome = self.db.transaction(|tx| {
            for check in batch.preconditions() {
                let current = tx.get(check.key.as_bytes())?;
                if current.as_deref() != check.value.as_deref() {
                    return Err(ConflictableTransactionError::Abort(()));
                }
            }
            for write in batch.writes() {
                match write {
                    Write::Put(k, v) => {
                        tx.insert(k.as_bytes(), v.as_slice())?;
                    }
                    Write::Delete(k) => {
                        tx.remove(k.as_bytes())?;
                    }
                }
            }
            Ok(())
        });
        match outcome {
            Ok(()) => Ok(Commit::Applied),
            Err(TransactionError::Abort(())) => Ok(Commit::Conflict),
            Err(TransactionError::Storage(e)) => Err(sled_error(e)),
        }
    }
}

/// True for sled's "could not acquire lock" error: sled wraps the `WouldBlock` from the file
/// lock in an error of kind `Other`, so the message is what tells.
fn is_lock_held(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
}

/// A key in the database that is not UTF-8: ours always are, so this is tampering or another
/// program's data.
fn non_utf8_key() -> StoreError {
    StoreError::Corrupt(crate::error::CryptoError::Malformed(
        "the database holds a key that is not UTF-8 (tampering or another program's data)",
    ))
}

fn sled_error(e: sled::Error) -> StoreError {
    match &e {
        sled::Error::Io(io) if is_out_of_space(io) => StoreError::NoSpace(format!("sled: {e}")),
        _ => StoreError::Backend(format!("sled failed: {e}")),
    }
}

/// Why a flush failed, kept for every later write (see the module docs).
#[derive(Debug, Clone)]
struct FlushError {
    message: String,
    out_of_space: bool,
}

impl FlushError {
    fn from_sled(e: &sled::Error) -> Self {
        let out_of_space = matches!(e, sled::Error::Io(io) if is_out_of_space(io));
        Self { message: e.to_string(), out_of_space }
    }

    #[cfg(test)]
    fn other(message: &str) -> Self {
        Self { message: message.to_owned(), out_of_space: false }
    }
}

impl Backend for SledBackend {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key.as_bytes()).map_err(sled_error)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.db
            .scan_prefix(prefix.as_bytes())
            .map(|item| {
                let (k, v) = item.map_err(sled_error)?;
                let k = String::from_utf8(k.to_vec()).map_err(|_| non_utf8_key())?;
                Ok((k, v.to_vec()))
            })
            .collect()
    }

    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.db
            .scan_prefix(prefix.as_bytes())
            .keys()
            .map(|k| String::from_utf8(k.map_err(sled_error)?.to_vec()).map_err(|_| non_utf8_key()))
            .collect()
    }

    fn commit(&self, batch: &Batch) -> Result<Commit, StoreError> {
        // Refuse before writing if an earlier flush failed: nothing new becomes visible.
        self.group.check_healthy()?;
        let applying = self.group.applying();
        let outcome = self.apply(batch)?;
        if outcome == Commit::Applied && !batch.writes().is_empty() {
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.group.wait_durable_after(applying, || {
                self.db.flush().map(drop).map_err(|e| FlushError::from_sled(&e))
            })?;
        }
        Ok(outcome)
    }
}

/// Group commit: makes each caller wait for a flush that started after its write, with one
/// leader flushing for everyone waiting (see the module docs).
#[derive(Debug, Default)]
struct GroupCommit {
    state: Mutex<GroupState>,
    flushed: Condvar,
    /// Signalled when a writer takes a ticket while a leader is gathering.
    ticketed: Condvar,
}

/// A writer between "about to apply its batch" and "took its ticket" (or gave up): counted so
/// a flush leader can wait for it. Dropping it without a ticket (a conflict, an error, a
/// panic) uncounts it.
struct Applying<'a> {
    group: &'a GroupCommit,
    done: bool,
}

impl Drop for Applying<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut state = self.group.lock();
            state.applying -= 1;
            drop(state);
            self.group.ticketed.notify_all();
        }
    }
}

#[derive(Debug, Default)]
struct GroupState {
    /// Highest ticket handed out; tickets are taken after a write is applied.
    issued: u64,
    /// Every ticket up to this one is covered by a completed flush.
    durable: u64,
    /// A leader is flushing right now.
    flushing: bool,
    /// The highest ticket the running (or last) flush covers: `issued` when it started.
    flush_target: u64,
    /// Completed flushes.
    flushes: u64,
    /// Set by the first failed flush; the backend refuses writes from then on.
    failed: Option<FlushError>,
    /// Writers applying a batch that have not taken a ticket yet.
    applying: u64,
    /// Tickets the last flush covered (more than one: writers are concurrent).
    last_group: u64,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, GroupState> {
        // The state is a few integers updated together under the lock, and the flush itself
        // runs outside it, so a poisoned lock still holds consistent values.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn flushes(&self) -> u64 {
        self.lock().flushes
    }

    fn check_healthy(&self) -> Result<(), StoreError> {
        match &self.lock().failed {
            Some(e) => Err(flush_failed(e)),
            None => Ok(()),
        }
    }

    /// Call before applying a write; hand the guard to [`GroupCommit::wait_durable_after`].
    fn applying(&self) -> Applying<'_> {
        self.lock().applying += 1;
        Applying { group: self, done: false }
    }

    /// Call after applying a write; returns once a flush covering it has completed.
    #[cfg(test)]
    fn wait_durable(&self, flush: impl Fn() -> Result<(), FlushError>) -> Result<(), StoreError> {
        self.wait_durable_after(self.applying(), flush)
    }

    /// Call after applying the write `applying` announced; returns once a flush covering it
    /// has completed.
    fn wait_durable_after(
        &self,
        mut applying: Applying<'_>,
        flush: impl Fn() -> Result<(), FlushError>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        applying.done = true;
        state.applying -= 1;
        state.issued += 1;
        let ticket = state.issued;
        self.ticketed.notify_all();
        loop {
            if let Some(e) = &state.failed {
                return Err(flush_failed(e));
            }
            if state.durable >= ticket {
                return Ok(());
            }
            if state.flushing {
                state = self.flushed.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Lead a flush: first gather the writers applying right now (bounded), then
            // flush for every write applied so far (all tickets up to `flush_target`).
            state.flushing = true;
            let started = Instant::now();
            let deadline = started + GATHER_LIMIT;
            // With company last time, also wait for a short quiet spell: the writers that
            // queued behind the last flush are still reading and sealing.
            let quiet = if state.last_group > 1 { GATHER_QUIET } else { Duration::ZERO };
            let mut last_arrival = started;
            let mut seen = state.issued;
            loop {
                let now = Instant::now();
                if state.issued != seen {
                    seen = state.issued;
                    last_arrival = now;
                }
                let settled = state.applying == 0 && now >= last_arrival + quiet;
                if settled || now >= deadline {
                    break;
                }
                let until = if state.applying > 0 { deadline } else { last_arrival + quiet };
                let left = until.min(deadline).saturating_duration_since(now);
                state =
                    self.ticketed.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
            }
            state.last_group = state.issued - state.durable;
            state.flush_target = state.issued;
            drop(state);
            let mut leader = LeaderGuard { group: self, result: None };
            leader.result = Some(flush());
            drop(leader);
            state = self.lock();
        }
    }
}

/// Publishes the leader's flush result and wakes the waiters, even if the flush panicked (then
/// the backend fails closed instead of leaving every writer asleep forever).
struct LeaderGuard<'a> {
    group: &'a GroupCommit,
    result: Option<Result<(), FlushError>>,
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.group.lock();
        state.flushing = false;
        state.flushes += 1;
        match self.result.take() {
            Some(Ok(())) => {
                // `issued` may have grown during the flush; only the tickets issued before it
                // started are covered, since their writes were applied before it started.
                state.durable = state.durable.max(state.flush_target);
            }
            Some(Err(e)) => {
                state.failed.get_or_insert(e);
            }
            None => {
                state.failed.get_or_insert_with(|| FlushError {
                    message: "the flush panicked".to_owned(),
                    out_of_space: false,
                });
            }
        }
        drop(state);
        self.group.flushed.notify_all();
    }
}

fn flush_failed(e: &FlushError) -> StoreError {
    let message = format!(
        "a sled flush failed ({}); writes are refused because it is unknown which of them \
         reached the disk: fix the disk problem and restart the process",
        e.message
    );
    if e.out_of_space { StoreError::NoSpace(message) } else { StoreError::Backend(message) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Barrier};

    #[test]
    fn concurrent_writers_share_flushes_and_each_waits_for_one_started_after_its_write() {
        const WRITERS: usize = 8;
        let group = Arc::new(GroupCommit::default());
        // A "disk": writes land in `applied`; a flush copies it to `durable` after a delay.
        let applied = Arc::new(AtomicUsize::new(0));
        let durable = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(WRITERS));
        let threads: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (group, applied, durable, barrier) =
                    (group.clone(), applied.clone(), durable.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..5 {
                        let mine = applied.fetch_add(1, Ordering::SeqCst) + 1;
                        group
                            .wait_durable(|| {
                                let snapshot = applied.load(Ordering::SeqCst);
                                std::thread::sleep(Duration::from_millis(5));
                                durable.fetch_max(snapshot, Ordering::SeqCst);
                                Ok(())
                            })
                            .unwrap();
                        // Acknowledged only once a flush covered this write.
                        assert!(durable.load(Ordering::SeqCst) >= mine);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let flushes = group.flushes();
        assert!(flushes >= 1);
        assert!(flushes < (WRITERS * 5) as u64, "no grouping: {flushes} flushes for 40 writes");
    }

    #[test]
    fn a_failed_flush_fails_that_write_and_every_later_one() {
        let group = GroupCommit::default();
        let err = group.wait_durable(|| Err(FlushError::other("disk full"))).unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert!(group.check_healthy().is_err());
        assert!(group.wait_durable(|| Ok(())).is_err());
    }

    #[test]
    fn a_flush_out_of_space_is_no_space_for_that_write_and_every_later_one() {
        let group = GroupCommit::default();
        let enospc = sled::Error::Io(std::io::Error::from_raw_os_error(28));
        let err = group.wait_durable(|| Err(FlushError::from_sled(&enospc))).unwrap_err();
        assert!(matches!(err, StoreError::NoSpace(_)), "{err}");
        assert!(err.to_string().contains("out of space"), "{err}");
        assert!(matches!(group.check_healthy(), Err(StoreError::NoSpace(_))));
        assert!(matches!(group.wait_durable(|| Ok(())), Err(StoreError::NoSpace(_))));
        assert!(matches!(sled_error(enospc), StoreError::NoSpace(_)));
    }

    #[test]
    fn a_panicking_flush_does_not_strand_other_writers() {
        let group = Arc::new(GroupCommit::default());
        let g = group.clone();
        let result = std::thread::spawn(move || g.wait_durable(|| panic!("boom"))).join();
        assert!(result.is_err());
        assert!(group.wait_durable(|| Ok(())).is_err());
    }

    #[test]
    fn writes_survive_reopening_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = SledBackend::open(dir.path()).unwrap();
            b.put("k", b"v").unwrap();
            let mut batch = Batch::new();
            batch.expect("k", Some(b"v")).put("k", b"w").put("j", b"x");
            assert_eq!(b.commit(&batch).unwrap(), Commit::Applied);
            assert_eq!(b.commit(&batch).unwrap(), Commit::Conflict);
            assert_eq!(b.stats(), FlushStats { writes: 2, flushes: 2 });
        }
        let b = SledBackend::open(dir.path()).unwrap();
        assert_eq!(b.get("k").unwrap().as_deref(), Some(&b"w"[..]));
        assert_eq!(b.keys_with_prefix("").unwrap(), ["j", "k"]);
    }

    #[test]
    fn a_directory_held_open_is_refused_with_a_clear_error_after_the_lock_wait() {
        let dir = tempfile::tempdir().unwrap();
        let _held = SledBackend::open(dir.path()).unwrap();
        let err =
            SledBackend::open_waiting(dir.path(), Duration::from_millis(100), DEFAULT_CACHE_BYTES)
                .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("not open in another process"), "{text}");
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
    }

    #[test]
    fn a_lock_released_while_waiting_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let held = SledBackend::open(dir.path()).unwrap();
        held.put("k", b"v").unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        // Starts while the lock is held (the first attempt fails) and succeeds once it is free.
        let reopened =
            SledBackend::open_waiting(dir.path(), Duration::from_secs(30), DEFAULT_CACHE_BYTES)
                .unwrap();
        release.join().unwrap();
        assert_eq!(reopened.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    }
}
