//! The write-ahead log in front of sled: what makes an acknowledged write durable.
//!
//! # Why a log of our own
//!
//! sled's atomic writes (batches, transactions) seal its I/O buffer and hand it to an I/O
//! thread, twice per write, and a sled flush holds sled's concurrency control for its whole
//! `fsync` while every write needs it: durable writes were capped near 4,500/s on a disk whose
//! `fdatasync` takes 0.2 ms. This log is an append-only file. A writer queues its batch's record
//! here and is acknowledged once a `write` + `fdatasync` covering that record has completed and
//! the record has been applied to sled (plain inserts, see [`super`]). Writers share those
//! syncs (group commit): whoever finds no sync running writes *everything* queued so far,
//! syncs it and applies it; the others wait for it, and whatever arrives meanwhile rides on the
//! next one. No timer, no background thread, and a lone writer never waits for company.
//!
//! # Records and ordering
//!
//! Every batch gets the next sequence number under the backend's order lock, so records queue
//! in sequence order, and only the writer holding the sync applies them, so sled receives them
//! in that order too. After each record, sled stores its number under a reserved key
//! ([`super::APPLIED_KEY`]). sled recovers a prefix of its own writes after a crash, so the
//! number it recovered says which records it holds whole; a later record it holds in part is
//! completed by applying it again (its writes are final values, so applying twice is harmless).
//!
//! A record on disk is `len: u32 LE | crc32: u32 LE | seq: u64 LE | body` where the CRC covers
//! `seq` and `body`, and `body` is `count: u32` then per write `0 | key_len: u32 | key |
//! value_len: u32 | value` (put) or `1 | key_len: u32 | key` (delete). Values are ciphertext:
//! the log holds nothing that sled does not. Files are created `0600` in a `0700` directory.
//!
//! # Recovery
//!
//! On open, every record numbered above the one sled holds is applied, in order, and must
//! follow it without a gap (a gap means both sled and the log lost something: refused as
//! corrupt). A crash can only tear the last write of the last segment, whose records nobody was
//! told were written; reading stops at the first record that is incomplete or fails its CRC.
//! sled is then flushed, a fresh segment is started and the old ones are deleted.
//!
//! # Checkpoints
//!
//! Segments are rotated at [`SEGMENT_BYTES`], after their records were applied, so once a sled
//! flush that started after the rotation completes, sled holds them durably and the segment
//! is deleted. The writer that rotated does that flush after waking
//! the others (one flush per segment, not per write).
//!
//! # Failures
//!
//! If a write or sync of the log fails, it is unknown what reached the disk, so the log fails
//! closed: that write and every later one are refused ([`StoreError::NoSpace`] when the disk is
//! full) until the process restarts and recovery reads what is there.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::error::{CryptoError, StoreError, is_out_of_space};
use crate::store::backend::Write;

/// A segment is rotated (and a checkpoint frees the old one) once it holds this many bytes: at
/// 8,000 writes/s of 1 KiB secrets, about one checkpoint a second; replaying a whole segment at
/// start-up takes well under a second.
pub const SEGMENT_BYTES: u64 = 16 << 20;

/// Bytes before a record's body: length, CRC and sequence number.
const HEADER_BYTES: usize = 16;

/// Larger records are taken for garbage in a torn tail (a batch is far smaller).
const MAX_RECORD_BYTES: usize = 1 << 30;

const PUT: u8 = 0;
const DELETE: u8 = 1;

/// One record read back from the log.
#[derive(Debug, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number.
    pub seq: u64,
    /// The batch's writes, in the order they applied.
    pub writes: Vec<Write>,
}

/// What [`read_log`] found in a log directory.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Every intact record, in sequence order.
    pub records: Vec<Record>,
    /// The segment files read, oldest first.
    pub segments: Vec<PathBuf>,
    /// Bytes after the last intact record of the last segment (a torn, unacknowledged tail).
    pub torn_bytes: u64,
}

/// The log of a running backend (see the module docs).
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    /// A segment is rotated once it holds this many bytes ([`SEGMENT_BYTES`]).
    segment_bytes: u64,
    state: Mutex<State>,
    synced: Condvar,
    /// Held while a checkpoint runs, so two never overlap.
    checkpointing: Mutex<()>,
}

#[derive(Debug)]
struct State {
    /// Encoded records not yet handed to a sync, in sequence order.
    pending: Vec<u8>,
    /// The same records' writes, for the syncing writer to apply once they are durable.
    batches: Vec<Record>,
    /// The sequence number of the last record appended.
    appended: u64,
    /// Every record up to this one is written and synced.
    durable: u64,
    /// A writer is writing and syncing right now (it holds `segment`).
    syncing: bool,
    /// The segment being appended to; `None` while the syncing writer holds it.
    segment: Option<Segment>,
    /// Rotated segments waiting for a checkpoint, oldest first.
    sealed: Vec<PathBuf>,
    /// Completed syncs.
    syncs: u64,
    /// Set by the first failed write or sync; the log refuses every append from then on.
    failed: Option<Failure>,
}

#[derive(Debug)]
struct Segment {
    file: File,
    path: PathBuf,
    len: u64,
}

/// Why the log stopped, kept for every later write.
#[derive(Debug, Clone)]
struct Failure {
    message: String,
    out_of_space: bool,
}

impl Failure {
    fn io(what: &str, path: &Path, e: &io::Error) -> Self {
        Self {
            message: format!("{what} {}: {e}", path.display()),
            out_of_space: is_out_of_space(e),
        }
    }

    fn to_error(&self) -> StoreError {
        let message = format!(
            "the write-ahead log failed ({}); writes are refused because it is unknown which of \
             them reached the disk: fix the disk problem and restart the process",
            self.message
        );
        if self.out_of_space { StoreError::NoSpace(message) } else { StoreError::Backend(message) }
    }
}

/// Appends the record `seq` of `writes` to `out`.
pub fn encode(out: &mut Vec<u8>, seq: u64, writes: &[Write]) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_BYTES]);
    out.extend_from_slice(&(writes.len() as u32).to_le_bytes());
    for write in writes {
        match write {
            Write::Put(key, value) => {
                out.push(PUT);
                put_bytes(out, key.as_bytes());
                put_bytes(out, value);
            }
            Write::Delete(key) => {
                out.push(DELETE);
                put_bytes(out, key.as_bytes());
            }
        }
    }
    let body_len = (out.len() - start - HEADER_BYTES) as u32;
    out[start + 8..start + 16].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Reads one record from the front of `bytes`: the record and its length on disk, or `None`
/// when what is there is not a whole, intact record.
fn decode(bytes: &[u8]) -> Option<(Record, usize)> {
    let header = bytes.get(..HEADER_BYTES)?;
    let body_len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if body_len > MAX_RECORD_BYTES {
        return None;
    }
    let end = HEADER_BYTES + body_len;
    let checked = bytes.get(8..end)?;
    if crc32fast::hash(checked) != crc {
        return None;
    }
    let seq = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let mut body = Cursor(&bytes[HEADER_BYTES..end]);
    let count = body.u32()? as usize;
    let mut writes = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let tag = body.take(1)?[0];
        let key = String::from_utf8(body.bytes()?.to_vec()).ok()?;
        writes.push(match tag {
            PUT => Write::Put(key, body.bytes()?.to_vec()),
            DELETE => Write::Delete(key),
            _ => return None,
        });
    }
    body.0.is_empty().then_some((Record { seq, writes }, end))
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// The file name of the segment whose first record is `first_seq`: names sort by number.
fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.log")
}

/// Reads every segment in `dir` (a missing directory is an empty log).
///
/// Only the last segment may end in a torn record; one anywhere else is corruption.
pub fn read_log(dir: &Path) -> Result<Recovered, StoreError> {
    let unreadable = |e: io::Error| {
        StoreError::Backend(format!("cannot read the write-ahead log in {}: {e}", dir.display()))
    };
    let mut segments: Vec<(u64, PathBuf)> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let first = path.file_name()?.to_str()?.strip_suffix(".log")?.parse().ok()?;
                Some((first, path))
            })
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(unreadable(e)),
    };
    segments.sort();
    let mut recovered = Recovered::default();
    let last = segments.len().saturating_sub(1);
    for (i, (_, path)) in segments.into_iter().enumerate() {
        let mut bytes = Vec::new();
        File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(unreadable)?;
        let mut at = 0;
        while at < bytes.len() {
            let Some((record, len)) = decode(&bytes[at..]) else { break };
            recovered.records.push(record);
            at += len;
        }
        let rest = (bytes.len() - at) as u64;
        if rest > 0 && i != last {
            return Err(StoreError::Corrupt(CryptoError::Malformed(
                "a write-ahead log segment other than the last one holds a damaged record",
            )));
        }
        recovered.torn_bytes += rest;
        recovered.segments.push(path);
    }
    Ok(recovered)
}

/// `fsync`s a directory, so a file created or removed in it stays so after a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn create_segment(dir: &Path, first_seq: u64) -> Result<Segment, Failure> {
    let path = dir.join(segment_name(first_seq));
    let file = open_new(&path).map_err(|e| Failure::io("cannot create", &path, &e))?;
    sync_dir(dir).map_err(|e| Failure::io("cannot sync the directory", dir, &e))?;
    Ok(Segment { file, path, len: 0 })
}

fn open_new(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).truncate(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

impl Wal {
    /// Starts a fresh segment in `dir` whose first record will be `next_seq`, then deletes
    /// `old` (segments whose records the caller has made durable in sled).
    pub fn start(
        dir: &Path,
        next_seq: u64,
        old: &[PathBuf],
        segment_bytes: u64,
    ) -> Result<Self, StoreError> {
        let failed = |what: &str, e: io::Error| {
            let failure = Failure::io(what, dir, &e);
            if failure.out_of_space {
                StoreError::NoSpace(failure.message)
            } else {
                StoreError::Backend(failure.message)
            }
        };
        fs::create_dir_all(dir)
            .map_err(|e| failed("cannot create the write-ahead log directory", e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| failed("cannot restrict the write-ahead log directory", e))?;
        }
        let fresh = dir.join(segment_name(next_seq));
        let old: Vec<&PathBuf> = old.iter().filter(|p| **p != fresh).collect();
        let segment = create_segment(dir, next_seq).map_err(|f| f.to_error())?;
        for path in &old {
            fs::remove_file(path).map_err(|e| failed("cannot remove an old segment in", e))?;
        }
        sync_dir(dir).map_err(|e| failed("cannot sync", e))?;
        Ok(Self {
            dir: dir.to_owned(),
            segment_bytes,
            state: Mutex::new(State {
                pending: Vec::new(),
                batches: Vec::new(),
                appended: next_seq - 1,
                durable: next_seq - 1,
                syncing: false,
                segment: Some(segment),
                sealed: Vec::new(),
                syncs: 0,
                failed: None,
            }),
            synced: Condvar::new(),
            checkpointing: Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is updated in whole steps under the lock, and file I/O runs outside it, so
        // a poisoned lock still holds consistent values.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err` once the log has failed: nothing new may be applied.
    pub fn check_healthy(&self) -> Result<(), StoreError> {
        match &self.lock().failed {
            Some(failure) => Err(failure.to_error()),
            None => Ok(()),
        }
    }

    /// The sequence number the next appended record must carry.
    pub fn next_seq(&self) -> u64 {
        self.lock().appended + 1
    }

    /// Completed `write` + `fdatasync`s of the log.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// Queues the record `seq` of `writes`. Call under the lock that orders writers (so records
    /// queue in sequence order); then [`Wal::wait_durable`] outside it.
    pub fn append(&self, seq: u64, writes: Vec<Write>) {
        let mut state = self.lock();
        debug_assert_eq!(seq, state.appended + 1, "records must be appended in order");
        encode(&mut state.pending, seq, &writes);
        state.batches.push(Record { seq, writes });
        state.appended = seq;
    }

    /// Returns once the record `seq` is written, synced and applied.
    ///
    /// The writer that finds no sync running writes and syncs every record queued so far, then
    /// calls `apply` with them, in sequence order (one writer at a time, so applies happen in
    /// log order). `checkpoint` makes what was applied durable in sled; the writer whose sync
    /// filled a segment calls it after waking the others.
    pub fn wait_durable(
        &self,
        seq: u64,
        apply: impl Fn(&[Record]) -> Result<(), StoreError>,
        checkpoint: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        loop {
            if let Some(failure) = &state.failed {
                return Err(failure.to_error());
            }
            if state.durable >= seq {
                return Ok(());
            }
            if state.syncing {
                state = self.synced.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Lead: write, sync and apply everything queued so far.
            let Some(segment) = state.segment.take() else {
                // Only a leader that panicked leaves no segment behind, and it failed the log.
                return Err(StoreError::Backend("the write-ahead log has no open segment".into()));
            };
            state.syncing = true;
            let target = state.appended;
            let buffer = std::mem::take(&mut state.pending);
            let batches = std::mem::take(&mut state.batches);
            drop(state);
            let mut leader = Leader { wal: self, segment: Some(segment), outcome: None };
            let rotated = leader.write_sync_apply(&buffer, target, || apply(&batches));
            drop(leader);
            if rotated {
                self.checkpoint(checkpoint)?;
                return self.check_healthy();
            }
            state = self.lock();
        }
    }

    /// Makes sled durable (`flush`), then deletes every segment sealed before it started.
    fn checkpoint(&self, flush: impl FnOnce() -> Result<(), StoreError>) -> Result<(), StoreError> {
        // Another checkpoint running will cover what is sealed now, or the next one will.
        let Ok(_one) = self.checkpointing.try_lock() else { return Ok(()) };
        let sealed = self.lock().sealed.clone();
        if let Err(e) = flush() {
            let mut state = self.lock();
            let message = format!("sled could not be flushed for a checkpoint: {e}");
            let out_of_space = matches!(e, StoreError::NoSpace(_));
            state.failed.get_or_insert(Failure { message, out_of_space });
            return Err(e);
        }
        for path in &sealed {
            if let Err(e) = fs::remove_file(path)
                && e.kind() != io::ErrorKind::NotFound
            {
                // A segment left behind only costs replay time; the next checkpoint retries.
                return Err(StoreError::Backend(format!(
                    "cannot remove the checkpointed log segment {}: {e}",
                    path.display()
                )));
            }
        }
        self.lock().sealed.retain(|p| !sealed.contains(p));
        // Best effort: a removal lost in a crash leaves a segment whose records are all at or
        // below what sled holds, which recovery skips.
        let _ = sync_dir(&self.dir);
        Ok(())
    }
}

/// The writer that syncs for everyone. Dropping it publishes the outcome and wakes the others,
/// even if it panicked (then the log fails closed instead of leaving writers asleep).
struct Leader<'a> {
    wal: &'a Wal,
    segment: Option<Segment>,
    /// What the sync did: records up to `.0` are durable, `.1` the segment rotated out, if any.
    outcome: Option<Result<(u64, Option<PathBuf>), Failure>>,
}

impl Leader<'_> {
    /// Writes `buffer` (records up to `target`), syncs, `apply`s; rotates the segment when it
    /// is full. True when it rotated (the caller then runs a checkpoint).
    fn write_sync_apply(
        &mut self,
        buffer: &[u8],
        target: u64,
        apply: impl FnOnce() -> Result<(), StoreError>,
    ) -> bool {
        let dir = &self.wal.dir;
        let segment = self.segment.as_mut().expect("the leader holds the segment");
        let written = segment.file.write_all(buffer).and_then(|()| segment.file.sync_data());
        self.outcome = Some(match written {
            Err(e) => Err(Failure::io("cannot write the log", &segment.path, &e)),
            Ok(()) => {
                segment.len += buffer.len() as u64;
                match apply() {
                    Err(e) => Err(Failure {
                        out_of_space: matches!(e, StoreError::NoSpace(_)),
                        message: format!("logged writes could not be applied to sled: {e}"),
                    }),
                    Ok(()) if segment.len < self.wal.segment_bytes => Ok((target, None)),
                    Ok(()) => create_segment(dir, target + 1).map(|fresh| {
                        let old = self.segment.replace(fresh).map(|old| old.path);
                        (target, old)
                    }),
                }
            }
        });
        matches!(self.outcome, Some(Ok((_, Some(_)))))
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut state = self.wal.lock();
        state.syncing = false;
        state.segment = self.segment.take();
        match self.outcome.take() {
            Some(Ok((target, sealed))) => {
                state.syncs += 1;
                state.durable = state.durable.max(target);
                state.sealed.extend(sealed);
            }
            Some(Err(failure)) => {
                state.failed.get_or_insert(failure);
            }
            None => {
                state.failed.get_or_insert_with(|| Failure {
                    message: "the writer syncing the log panicked".to_owned(),
                    out_of_space: false,
                });
            }
        }
        drop(state);
        self.wal.synced.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Write> {
        vec![
            Write::Put("secrets/a/meta".into(), vec![1, 2, 3]),
            Write::Delete("secrets/a/v1".into()),
            Write::Put("é".into(), Vec::new()),
        ]
    }

    #[test]
    fn records_round_trip_in_order() {
        let mut bytes = Vec::new();
        encode(&mut bytes, 7, &sample());
        encode(&mut bytes, 8, &[]);
        let (first, len) = decode(&bytes).unwrap();
        assert_eq!(first, Record { seq: 7, writes: sample() });
        let (second, rest) = decode(&bytes[len..]).unwrap();
        assert_eq!(second, Record { seq: 8, writes: Vec::new() });
        assert_eq!(len + rest, bytes.len());
    }

    #[test]
    fn every_cut_and_every_flipped_bit_of_a_record_is_refused() {
        let mut bytes = Vec::new();
        encode(&mut bytes, 1, &sample());
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[i] ^= 1 << bit;
                assert!(decode(&flipped).is_none(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn only_the_last_segment_may_end_torn() {
        let dir = tempfile::tempdir().unwrap();
        let mut one = Vec::new();
        encode(&mut one, 1, &sample());
        let mut two = Vec::new();
        encode(&mut two, 2, &sample());
        let torn = &two[..two.len() - 1];
        fs::write(dir.path().join(segment_name(1)), [&one[..], torn].concat()).unwrap();
        let log = read_log(dir.path()).unwrap();
        assert_eq!(log.records.len(), 1);
        assert_eq!(log.torn_bytes, torn.len() as u64);

        fs::write(dir.path().join(segment_name(3)), &two).unwrap();
        let err = read_log(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    }

    #[test]
    fn a_missing_directory_is_an_empty_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = read_log(&dir.path().join("absent")).unwrap();
        assert!(log.records.is_empty() && log.segments.is_empty());
    }

    #[test]
    fn a_failed_sync_fails_that_write_and_every_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::start(dir.path(), 1, &[], SEGMENT_BYTES).unwrap();
        wal.append(1, sample());
        wal.wait_durable(1, |_| Ok(()), || Ok(())).unwrap();
        // Swap the open segment for a read-only handle: the next write fails like a bad disk.
        let path = dir.path().join(segment_name(1));
        wal.lock().segment.as_mut().unwrap().file = File::open(&path).unwrap();
        wal.append(2, sample());
        let err = wal.wait_durable(2, |_| Ok(()), || Ok(())).unwrap_err();
        assert!(err.to_string().contains("write-ahead log failed"), "{err}");
        assert!(wal.check_healthy().is_err());
        wal.append(3, sample());
        assert!(wal.wait_durable(3, |_| Ok(()), || Ok(())).is_err());
    }
}
