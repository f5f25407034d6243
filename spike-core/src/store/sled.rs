//! The embedded, durable [`Backend`] on [`sled`] (crate feature `sled`, on by default).
//!
//! # Durability and atomicity: our own write-ahead log in front of sled
//!
//! A secrets manager must not acknowledge a write that a crash can still undo (DESIGN.md,
//! "Embedded store"). [`SledBackend::commit`] returns only once the batch is in our own
//! [write-ahead log](wal), that log is synced (`fdatasync`), and the batch is applied to sled.
//! Concurrent writers share those syncs (group commit); sled itself is flushed only at
//! checkpoints, once per log segment.
//!
//! sled's own atomic writes are not used. Each sled batch or transaction seals sled's I/O
//! buffer twice and hands it to an I/O thread (about twenty context switches per write,
//! measured), and a sled flush blocks every writer for its whole `fsync`: together they capped
//! durable writes near 4,500/s on a disk whose `fdatasync` takes 0.2 ms. Instead:
//!
//! 1. a writer takes the order lock, checks its batch's preconditions against what readers
//!    see, gives it the next sequence number, queues its record in the log, and makes its
//!    writes visible to readers at once, as a whole, through the *pending* overlay (the newest
//!    logged value of each key not yet in sled);
//! 2. outside the lock, it waits for a sync covering its record; the writer that syncs applies
//!    every record it synced to sled with plain inserts, in log order, then the last record's
//!    number under [`APPLIED_KEY`], and drops them from the overlay. The next group's sync
//!    runs meanwhile; groups are applied one at a time, in order.
//!
//! So sled only ever receives logged writes, in log order. After a crash, sled recovers a
//! prefix of its own writes; the number under [`APPLIED_KEY`] says which log records it holds
//! whole, and every later record is applied again (a record sled holds in part is simply
//! completed). The [`wal`] module has the record format, recovery and checkpoints.
//!
//! A write is visible to readers as soon as it is queued, a little before it is durable; a
//! reader can therefore see a value whose writer has not yet been told "done". If writing or
//! syncing the log fails, we cannot tell which writes reached the disk, so the backend fails
//! closed: that write and every later one report [`StoreError::Backend`]
//! ([`StoreError::NoSpace`] when the disk was full) until the process restarts and recovers.

pub mod wal;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use super::backend::{Backend, Batch, Commit, Write};
use crate::error::{CryptoError, StoreError, is_out_of_space};
use wal::{Record, Wal};

/// How long [`SledBackend::open`] waits for a directory lock held by someone else.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Default limit of sled's page cache, in bytes (`SPIKE_NEXUS_SLED_CACHE_MIB` sets Nexus's).
pub const DEFAULT_CACHE_BYTES: u64 = 16 << 20;

/// The sled key holding the sequence number of the last log record applied whole (8 bytes, big
/// endian). `0xFF` never occurs in UTF-8, so no key of ours can collide with it or list it.
pub const APPLIED_KEY: &[u8] = b"\xffspike-wal-applied";

/// The write-ahead log's directory inside the sled directory (sled ignores other files).
pub const WAL_DIR: &str = "spike-wal";

/// How a [`SledBackend`] is opened; tests change what production never does.
#[derive(Debug, Clone, Copy)]
struct Tuning {
    cache_bytes: u64,
    /// A log segment is checkpointed and replaced once it is this long.
    segment_bytes: u64,
    /// How often sled persists by itself (`None`: only when flushed, as at our checkpoints).
    sled_flush_every_ms: Option<u64>,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            cache_bytes: DEFAULT_CACHE_BYTES,
            segment_bytes: wal::SEGMENT_BYTES,
            sled_flush_every_ms: Some(500),
        }
    }
}

/// A [`Backend`] on a sled database directory; every acknowledged write is on disk.
pub struct SledBackend {
    db: sled::Db,
    wal: Wal,
    /// Held while a batch is checked, numbered, queued and made visible (module docs, step 1).
    order: Mutex<()>,
    pending: Pending,
    writes: AtomicU64,
    replayed: u64,
}

impl std::fmt::Debug for SledBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledBackend").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

/// Counters showing how well writers share syncs of the write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushStats {
    /// Applied write batches since the backend was opened.
    pub writes: u64,
    /// `fdatasync`s of the write-ahead log performed for them.
    pub flushes: u64,
    /// Log records applied again when the backend was opened (writes sled had not persisted).
    pub replayed: u64,
}

/// Key -> (the number of the newest record writing it, its value or `None` for a delete).
type PendingMap = HashMap<String, (u64, Option<Vec<u8>>)>;

/// Logged writes not yet applied to sled: the newest of each key, with its record's number.
/// Readers look here first, so a batch becomes visible as a whole when it is queued.
#[derive(Default)]
struct Pending {
    entries: RwLock<PendingMap>,
    /// `entries.len()`, readable without the lock (most reads find nothing pending).
    len: AtomicUsize,
}

impl Pending {
    fn read(&self) -> RwLockReadGuard<'_, PendingMap> {
        // Entries change in whole steps under the write lock; a poisoned lock is consistent.
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, PendingMap> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    /// `Some(value)` when `key` has a logged write sled does not hold yet (`Some(None)`: a
    /// delete); `None` when sled has the latest.
    fn get(&self, key: &str) -> Option<Option<Vec<u8>>> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.read().get(key).map(|(_, value)| value.clone())
    }

    /// Every pending write whose key starts with `prefix`.
    fn with_prefix(&self, prefix: &str) -> Vec<(String, Option<Vec<u8>>)> {
        if self.len.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        let entries = self.read();
        entries
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, (_, v))| (k.clone(), v.clone()))
            .collect()
    }

    /// Makes the writes of record `seq` visible, all at once.
    fn queue(&self, seq: u64, writes: &[Write]) {
        let mut entries = self.write();
        for write in writes {
            let value = match write {
                Write::Put(_, v) => Some(v.clone()),
                Write::Delete(_) => None,
            };
            entries.insert(write.key().to_owned(), (seq, value));
        }
        self.len.store(entries.len(), Ordering::Release);
    }

    /// Forgets what `records` wrote, now that sled holds it (unless a later record rewrote it).
    fn applied(&self, records: &[Record]) {
        let mut entries = self.write();
        for record in records {
            for write in &record.writes {
                if entries.get(write.key()).is_some_and(|(seq, _)| *seq == record.seq) {
                    entries.remove(write.key());
                }
            }
        }
        self.len.store(entries.len(), Ordering::Release);
    }
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
        Self::open_tuned(path, lock_wait, Tuning { cache_bytes, ..Tuning::default() })
    }

    fn open_tuned(path: &Path, lock_wait: Duration, tuning: Tuning) -> Result<Self, StoreError> {
        let deadline = Instant::now() + lock_wait;
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(tuning.cache_bytes)
            .flush_every_ms(tuning.sled_flush_every_ms);
        loop {
            match config.open() {
                Ok(db) => return Self::recover(db, path, tuning.segment_bytes),
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

    /// Applies the log records sled does not hold whole, makes sled durable, and starts a
    /// fresh log (see the module docs).
    fn recover(db: sled::Db, path: &Path, segment_bytes: u64) -> Result<Self, StoreError> {
        let dir = path.join(WAL_DIR);
        let held = applied_seq(&db)?;
        let mut applied = held;
        let mut replayed = 0;
        let log = wal::read_log_each(&dir, |record| {
            if record.seq <= held {
                return Ok(());
            }
            if record.seq != applied + 1 {
                return Err(StoreError::Corrupt(CryptoError::Malformed(
                    "the write-ahead log misses records between what sled holds and what it \
                     holds: both lost writes (a damaged disk or files changed by hand)",
                )));
            }
            apply_to_sled(&db, std::slice::from_ref(&record))?;
            applied = record.seq;
            replayed += 1;
            Ok(())
        })?;
        if replayed > 0 || log.torn_bytes > 0 {
            db.flush().map_err(sled_error)?;
        }
        let wal = Wal::start(&dir, applied + 1, &log.segments, segment_bytes)?;
        Ok(Self {
            db,
            wal,
            order: Mutex::new(()),
            pending: Pending::default(),
            writes: AtomicU64::new(0),
            replayed,
        })
    }

    /// How many writes and log syncs this backend has done.
    pub fn stats(&self) -> FlushStats {
        FlushStats {
            writes: self.writes.load(Ordering::Relaxed),
            flushes: self.wal.syncs(),
            replayed: self.replayed,
        }
    }

    fn order(&self) -> MutexGuard<'_, ()> {
        // Guards no data: a poisoned lock is as good as a healthy one.
        self.order.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when every precondition of `batch` holds in what readers see now. Call under
    /// [`SledBackend::order`], so no other writer changes it meanwhile.
    fn preconditions_hold(&self, batch: &Batch) -> Result<bool, StoreError> {
        for check in batch.preconditions() {
            if self.get(&check.key)?.as_deref() != check.value.as_deref() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Applies `records` to sled in order, then the last one's number under [`APPLIED_KEY`] (plain
/// inserts: the log, not sled, makes a record atomic after a crash; sled recovers a prefix, so
/// the number says every record up to it is whole).
fn apply_to_sled(db: &sled::Db, records: &[Record]) -> Result<(), StoreError> {
    for record in records {
        for write in &record.writes {
            match write {
                Write::Put(k, v) => db.insert(k.as_bytes(), v.as_slice()).map(drop),
                Write::Delete(k) => db.remove(k.as_bytes()).map(drop),
            }
            .map_err(sled_error)?;
        }
    }
    if let Some(last) = records.last() {
        db.insert(APPLIED_KEY, &last.seq.to_be_bytes()).map_err(sled_error)?;
    }
    Ok(())
}

/// The sequence number of the last log record sled holds whole (0: none yet).
fn applied_seq(db: &sled::Db) -> Result<u64, StoreError> {
    match db.get(APPLIED_KEY).map_err(sled_error)? {
        None => Ok(0),
        Some(bytes) => <[u8; 8]>::try_from(bytes.as_ref()).map(u64::from_be_bytes).map_err(|_| {
            StoreError::Corrupt(CryptoError::Malformed(
                "sled's record of the last applied log record is not 8 bytes",
            ))
        }),
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
    StoreError::Corrupt(CryptoError::Malformed(
        "the database holds a key that is not UTF-8 (tampering or another program's data)",
    ))
}

fn sled_error(e: sled::Error) -> StoreError {
    match &e {
        sled::Error::Io(io) if is_out_of_space(io) => StoreError::NoSpace(format!("sled: {e}")),
        _ => StoreError::Backend(format!("sled failed: {e}")),
    }
}

impl Backend for SledBackend {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        // The overlay first: an entry leaves it only once sled holds that value.
        if let Some(pending) = self.pending.get(key) {
            return Ok(pending);
        }
        Ok(self.db.get(key.as_bytes()).map_err(sled_error)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        // sled first, then the overlay: an entry still pending after the scan is at least as
        // new as what the scan saw for its key.
        let mut found = BTreeMap::new();
        for item in self.db.scan_prefix(prefix.as_bytes()) {
            let (k, v) = item.map_err(sled_error)?;
            if k.as_ref() == APPLIED_KEY {
                continue;
            }
            let k = String::from_utf8(k.to_vec()).map_err(|_| non_utf8_key())?;
            found.insert(k, v.to_vec());
        }
        for (k, v) in self.pending.with_prefix(prefix) {
            match v {
                Some(v) => found.insert(k, v),
                None => found.remove(&k),
            };
        }
        Ok(found.into_iter().collect())
    }

    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut found = std::collections::BTreeSet::new();
        for k in self.db.scan_prefix(prefix.as_bytes()).keys() {
            let k = k.map_err(sled_error)?;
            if k.as_ref() == APPLIED_KEY {
                continue;
            }
            found.insert(String::from_utf8(k.to_vec()).map_err(|_| non_utf8_key())?);
        }
        for (k, v) in self.pending.with_prefix(prefix) {
            if v.is_some() {
                found.insert(k);
            } else {
                found.remove(&k);
            }
        }
        Ok(found.into_iter().collect())
    }

    fn commit(&self, batch: &Batch) -> Result<Commit, StoreError> {
        // Refuse before anything becomes visible if the log failed.
        self.wal.check_healthy()?;
        let seq = {
            let _order = self.order();
            if !self.preconditions_hold(batch)? {
                return Ok(Commit::Conflict);
            }
            if batch.writes().is_empty() {
                return Ok(Commit::Applied);
            }
            let seq = self.wal.next_seq();
            self.wal.append(seq, batch.writes().to_vec());
            self.pending.queue(seq, batch.writes());
            seq
        };
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.wal.wait_durable(
            seq,
            |records| {
                apply_to_sled(&self.db, records)?;
                self.pending.applied(records);
                Ok(())
            },
            || self.db.flush().map(drop).map_err(sled_error),
        )?;
        Ok(Commit::Applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set by a crash test for its child process, which writes and then aborts.
    const CHILD_DIR: &str = "SPIKE_SLED_TEST_CRASH_CHILD_DIR";

    /// sled persisting nothing by itself: what it holds after a crash is what our checkpoints
    /// flushed, so the log must bring back every acknowledged write.
    fn without_sled_flushes(dir: &Path, segment_bytes: u64) -> SledBackend {
        let tuning = Tuning { segment_bytes, sled_flush_every_ms: None, ..Tuning::default() };
        SledBackend::open_tuned(dir, LOCK_WAIT, tuning).unwrap()
    }

    /// In the child (`CHILD_DIR` set): `BATCHES` acknowledged batches (puts, a delete and a
    /// compare-and-swap each), then `abort` (no destructor, no flush). In the parent: runs the
    /// child, returns its directory.
    const BATCHES: usize = 120;

    fn crashed_child(test: &str) -> Option<tempfile::TempDir> {
        if let Some(dir) = std::env::var_os(CHILD_DIR) {
            let b = without_sled_flushes(Path::new(&dir), wal::SEGMENT_BYTES);
            for i in 0..BATCHES {
                let mut batch = Batch::new();
                batch.put(&format!("k{i:03}"), format!("v{i}").as_bytes()).put("gone", b"x");
                batch.delete("gone");
                assert_eq!(b.commit(&batch).unwrap(), Commit::Applied);
                let previous = (i > 0).then(|| format!("n{}", i - 1));
                let cas = b.compare_and_swap(
                    "counter",
                    previous.as_deref().map(str::as_bytes),
                    Some(format!("n{i}").as_bytes()),
                );
                assert_eq!(cas.unwrap(), Commit::Applied);
            }
            std::process::abort();
        }
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .status()
            .unwrap();
        assert!(!status.success(), "the child was meant to abort after its writes: {status}");
        Some(dir)
    }

    fn assert_every_batch_is_there(b: &SledBackend, others: usize) {
        for i in 0..BATCHES {
            let key = format!("k{i:03}");
            assert_eq!(b.get(&key).unwrap(), Some(format!("v{i}").into_bytes()), "{key}");
        }
        assert_eq!(b.get("gone").unwrap(), None);
        assert_eq!(b.get("counter").unwrap(), Some(format!("n{}", BATCHES - 1).into_bytes()));
        let keys = b.keys_with_prefix("").unwrap();
        assert_eq!(keys.len(), BATCHES + 1 + others, "the applied key is hidden: {keys:?}");
    }

    #[test]
    fn acknowledged_writes_sled_had_not_persisted_are_replayed_after_a_crash() {
        let test = "store::sled::tests::acknowledged_writes_sled_had_not_persisted_are_replayed_after_a_crash";
        let Some(dir) = crashed_child(test) else { return };
        let segments = std::fs::read_dir(dir.path().join(WAL_DIR)).unwrap().count();
        assert!(segments >= 1, "the log holds the writes sled did not flush");
        {
            let b = SledBackend::open(dir.path()).unwrap();
            // How many records sled lacked varies with its buffering (typically the last one);
            // every acknowledged write must be there either way.
            eprintln!("after the crash: {:?}", b.stats());
            assert_every_batch_is_there(&b, 0);
            // Later writes continue the sequence.
            b.put("after", b"1").unwrap();
        }
        let b = SledBackend::open(dir.path()).unwrap();
        assert_eq!(b.stats().replayed, 0, "recovery made sled durable and started a fresh log");
        assert_every_batch_is_there(&b, 1);
        assert_eq!(b.get("after").unwrap().as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn a_torn_record_at_the_end_of_the_log_is_dropped_and_the_rest_recovered() {
        let test = "store::sled::tests::a_torn_record_at_the_end_of_the_log_is_dropped_and_the_rest_recovered";
        let Some(dir) = crashed_child(test) else { return };
        let log = wal::read_log(&dir.path().join(WAL_DIR)).unwrap();
        let last = log.segments.last().unwrap();
        // Where the last intact record ends: the log is one segment (no rotation happened).
        assert_eq!(log.segments.len(), 1);
        let mut intact = Vec::new();
        for record in &log.records {
            wal::encode(&mut intact, record.seq, &record.writes);
        }
        let mut torn = Vec::new();
        let seq = log.records.last().unwrap().seq + 1;
        wal::encode(&mut torn, seq, &[Write::Put("k000".into(), b"never acknowledged".to_vec())]);
        torn.truncate(torn.len() - 3);
        let file = std::fs::OpenOptions::new().write(true).open(last).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &torn, intact.len() as u64).unwrap();
        let file_len = file.metadata().unwrap().len();
        drop(file);
        let reread = wal::read_log(&dir.path().join(WAL_DIR)).unwrap();
        assert_eq!(reread.records.len(), log.records.len());
        assert_eq!(reread.torn_bytes, file_len - intact.len() as u64);
        let b = SledBackend::open(dir.path()).unwrap();
        assert_every_batch_is_there(&b, 0);
    }

    #[test]
    fn a_log_that_skips_records_sled_lacks_is_refused_as_corrupt() {
        let test = "store::sled::tests::a_log_that_skips_records_sled_lacks_is_refused_as_corrupt";
        let Some(dir) = crashed_child(test) else { return };
        let wal_dir = dir.path().join(WAL_DIR);
        let log = wal::read_log(&wal_dir).unwrap();
        // The only record left comes long after the last one sled holds: what lay between is
        // lost from both.
        let last = log.records.last().unwrap();
        let mut kept = Vec::new();
        wal::encode(&mut kept, last.seq + 1_000, &last.writes);
        for path in &log.segments {
            std::fs::remove_file(path).unwrap();
        }
        std::fs::write(wal_dir.join(format!("{:020}.log", last.seq + 1_000)), kept).unwrap();
        let err = SledBackend::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        assert!(err.to_string().contains("write-ahead log misses records"), "{err}");
    }

    #[test]
    fn full_segments_are_checkpointed_away_and_nothing_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let value = vec![7u8; 300];
        {
            let b = without_sled_flushes(dir.path(), 4 << 10);
            for i in 0..200 {
                b.put(&format!("k{i:03}"), &value).unwrap();
            }
            // 200 records of ~330 bytes in 4 KiB segments: many rotations, each checkpointed.
            let segments = std::fs::read_dir(dir.path().join(WAL_DIR)).unwrap().count();
            assert!(segments <= 2, "{segments} segments left after checkpoints");
        }
        let b = SledBackend::open(dir.path()).unwrap();
        for i in 0..200 {
            assert_eq!(b.get(&format!("k{i:03}")).unwrap().as_deref(), Some(&value[..]));
        }
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
            assert_eq!(b.stats(), FlushStats { writes: 2, flushes: 2, replayed: 0 });
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
