//! Versioned secrets over a [`Backend`]: SPIKE's key-value model, sealed record by record.
//!
//! A secret at a path is a metadata record plus one record per stored version, each an AEAD
//! envelope bound to (kind, path, version) (see [the key layout](super)). Every write is one
//! atomic [`Batch`] guarded by a compare-and-swap on the metadata record's ciphertext, retried
//! a bounded number of times, so concurrent writers to a path (threads, or Nexus replicas
//! sharing a backend) never reuse or lose a version. The compare-and-swap is what makes this
//! correct; in addition, writers in one process queue on a per-path lock (64 stripes, keyed by
//! a per-process random hash), so they do not burn their attempts racing each other and the
//! retry loop only has to absorb other processes.
//!
//! # Semantics (SPIKE Nexus's, with the divergences marked)
//!
//! - **put** writes version `latest + 1` and makes it current. Version numbers are never
//!   reused, even after deletes or destroys (SPIKE can re-issue the number of a deleted
//!   version; we do not, so a stale ciphertext can never pass for a newer version).
//! - **current version** is the highest version that is stored and not soft-deleted (0 if none);
//!   **oldest version** the lowest such version (0 if none); **latest version** (an
//!   extension) the highest version ever written, which is what check-and-set compares.
//! - **get** with no version (or version 0) reads the current version. A version that never
//!   existed, was pruned or destroyed, or a secret with no current version gives
//!   [`StoreError::NotFound`]; a soft-deleted version gives [`StoreError::Deleted`] (SPIKE
//!   answers "not found" for both; servers map them to the same response).
//! - **delete** soft-deletes versions (empty list or `0` = the current version), keeping the
//!   first deletion time. **undelete** restores them (empty list or `0` = the highest deleted
//!   version; SPIKE picks the current version, which is never deleted, so its empty undelete
//!   restores nothing unless every version is deleted). Both return the versions they changed;
//!   an empty result means nothing changed (SPIKE Nexus answers "not found" then).
//! - **destroy** (extension) permanently removes versions' ciphertext (empty list or `0` = the
//!   current version); **destroy_all** removes the secret entirely (SPIKE's `Destroy`).
//! - **pruning**: after a put, while more than `max_versions` versions are stored, the oldest
//!   is destroyed (deleted or not), like SPIKE Nexus. `max_versions` is the store setting at
//!   the time of the last put (default 10, `SPIKE_NEXUS_MAX_SECRET_VERSIONS`).
//! - **check-and-set** (extension): `PutOptions::cas(n)` writes only if the latest version is
//!   `n`; `cas(0)` only if the secret does not exist. Comparing the monotonic latest version
//!   rather than the current one means a delete-then-put cannot make an old `n` match again.
//! - **list** returns every path that has a metadata record, sorted, including secrets whose
//!   versions are all deleted or destroyed (as SPIKE lists every stored path). Each metadata
//!   record is authenticated first, so a backend cannot inject names.
//! - **custom metadata** (extension): a non-secret `map<string,string>` set by a put (replacing
//!   the previous map) and returned with the metadata; a put without it keeps the old map.
//!
//! Each version record also carries a random 16-byte *instance* id from the secret's metadata,
//! so after `destroy_all` and a re-create, a saved ciphertext of the old secret's version `n`
//! does not open as the new secret's version `n`.
//!
//! # Reads
//!
//! A read opens the secret's metadata record, picks the version it asks for, and opens that
//! version's record, authenticating both every time. Opening and decoding the metadata is
//! skipped when the backend returns byte-for-byte the sealed record this store last opened or
//! wrote at that path, under the same keyring (a bounded cache, `MetaCache`): bytes the keyring
//! already authenticated need no second look, and any write changes them (fresh nonce).
//!
//! Read naively, a GET is two dependent backend reads, the version's key coming from the
//! metadata; on a networked backend that is two round trips. When the cache holds the path's
//! metadata, the store *speculates*: it reads the metadata record and the record of the version
//! the cached metadata makes the answer in one [`Backend::get_many`] call. If the metadata bytes
//! are the cached ones, that version record is the one the naive path would have fetched (its
//! second read, too, comes after the metadata read); on a backend whose `get_many` is one
//! snapshot (PostgreSQL) the pair is even consistent. If they differ (a write
//! here or by another replica), the fresh bytes are opened as usual and, unless they name the
//! same version, the right version is read next: a stale guess costs one more read, never a
//! stale value. The version record is opened and checked (AAD, instance) exactly as without
//! the guess, and a cache miss, or cached metadata that already makes the answer an error, reads
//! the metadata alone first.
//!
//! [`SecretStore::get_versioned_async`] is the same read for a server's request task: the one
//! read logic (written over `super::reads`) awaits each backend read through
//! [`Backend::get_many_async`] instead of holding the thread, so on PostgreSQL a GET needs no
//! blocking thread; every check above runs exactly as in [`SecretStore::get_versioned`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::backend::{Backend, Batch, Commit};
use super::reads::{self, Reads, Wait};
use super::{SharedKeyring, keys, open_record, seal_record};
use crate::crypto::{Keyring, RecordKind};
use crate::error::{CryptoError, StoreError};
use crate::path::SecretPath;
use crate::secret::{SecretValues, fill_random};

mod import;

pub use import::{Imported, ImportedSecret, ImportedVersion};

/// SPIKE's default for `SPIKE_NEXUS_MAX_SECRET_VERSIONS`.
pub const DEFAULT_MAX_VERSIONS: NonZeroU32 = match NonZeroU32::new(10) {
    Some(n) => n,
    // 10 is not zero; this arm is never taken (and is checked at compile time).
    None => panic!("10 is not zero"),
};

/// How many times a write is attempted under contention before giving up.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 64;

const INSTANCE_LEN: usize = 16;
const LOCK_STRIPES: usize = 64;
/// Most opened metadata records a [`SecretStore`] keeps to skip re-opening them (a few hundred
/// bytes each).
pub const META_CACHE_ENTRIES: usize = 4096;
const META_FORMAT: u8 = 1;

/// A source of the current time, injectable so tests can pin timestamps.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time (UTC).
    fn now(&self) -> OffsetDateTime;
}

/// The system clock, in UTC.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to, for deterministic tests.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<OffsetDateTime>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: OffsetDateTime) -> Self {
        Self { now: Mutex::new(start) }
    }

    /// Sets the time.
    pub fn set(&self, now: OffsetDateTime) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = now;
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: time::Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        // A poisoned lock still holds a complete timestamp.
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Settings of a [`SecretStore`].
#[derive(Debug, Clone)]
pub struct SecretStoreConfig {
    max_versions: NonZeroU32,
    max_attempts: u32,
    clock: Arc<dyn Clock>,
}

impl Default for SecretStoreConfig {
    fn default() -> Self {
        Self {
            max_versions: DEFAULT_MAX_VERSIONS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            clock: Arc::new(SystemClock),
        }
    }
}

impl SecretStoreConfig {
    /// The defaults: 10 versions, 64 attempts, the system clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep at most `max` versions per secret (`SPIKE_NEXUS_MAX_SECRET_VERSIONS`).
    pub fn with_max_versions(mut self, max: NonZeroU32) -> Self {
        self.max_versions = max;
        self
    }

    /// Give up a contended write after `attempts` tries (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Take timestamps from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The version limit per secret.
    pub fn max_versions(&self) -> NonZeroU32 {
        self.max_versions
    }

    /// The attempt limit for contended writes.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
}

/// Options of [`SecretStore::put`]: check-and-set and custom metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    cas: Option<u64>,
    custom_metadata: Option<BTreeMap<String, String>>,
}

impl PutOptions {
    /// No check, custom metadata unchanged.
    pub fn new() -> Self {
        Self::default()
    }

    /// Write only if the secret's latest version is `expected` (0: only if it does not exist);
    /// otherwise fail with [`StoreError::CasMismatch`].
    pub fn cas(mut self, expected: u64) -> Self {
        self.cas = Some(expected);
        self
    }

    /// Replace the secret's custom metadata (non-secret labels) with `metadata`.
    pub fn custom_metadata(mut self, metadata: BTreeMap<String, String>) -> Self {
        self.custom_metadata = Some(metadata);
        self
    }

    /// The check-and-set expectation, if any.
    pub fn expected_version(&self) -> Option<u64> {
        self.cas
    }
}

/// What is known about one version of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VersionMetadata {
    /// The version number.
    pub version: u64,
    /// When it was written.
    pub created_time: OffsetDateTime,
    /// When it was soft-deleted, if it is.
    pub deleted_time: Option<OffsetDateTime>,
}

/// A secret's metadata: SPIKE's `metadata` plus `versions`, and our extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecretMetadata {
    /// Highest readable (stored, not deleted) version; 0 if none.
    pub current_version: u64,
    /// Lowest readable version; 0 if none.
    pub oldest_version: u64,
    /// Highest version ever written (extension; what check-and-set compares).
    pub latest_version: u64,
    /// When the secret was first written.
    pub created_time: OffsetDateTime,
    /// When its metadata last changed (put, delete, undelete, destroy).
    pub updated_time: OffsetDateTime,
    /// The version limit applied at the last put.
    pub max_versions: u32,
    /// Every stored version (deleted or not), by number.
    pub versions: BTreeMap<u64, VersionMetadata>,
    /// Non-secret labels set by puts (extension).
    pub custom_metadata: BTreeMap<String, String>,
}

/// The sealed metadata record, as stored.
#[derive(Clone, Serialize, Deserialize)]
struct Meta {
    format: u8,
    instance: [u8; INSTANCE_LEN],
    latest: u64,
    #[serde(with = "time::serde::timestamp::nanoseconds")]
    created: OffsetDateTime,
    #[serde(with = "time::serde::timestamp::nanoseconds")]
    updated: OffsetDateTime,
    max_versions: u32,
    versions: BTreeMap<u64, MetaVersion>,
    custom: BTreeMap<String, String>,
    /// Counters an import carried over verbatim where they differ from the computed ones
    /// (see [`import`]); dropped by the secret's next change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reported: Option<Reported>,
}

/// A source store's `current_version` and `oldest_version`, as it reported them.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Reported {
    current: u64,
    oldest: u64,
}

#[derive(Clone, Serialize, Deserialize)]
struct MetaVersion {
    #[serde(with = "time::serde::timestamp::nanoseconds")]
    created: OffsetDateTime,
    #[serde(with = "time::serde::timestamp::nanoseconds::option")]
    deleted: Option<OffsetDateTime>,
}

impl Meta {
    fn fresh(now: OffsetDateTime) -> Result<Self, StoreError> {
        let mut instance = [0u8; INSTANCE_LEN];
        fill_random(&mut instance).map_err(StoreError::Seal)?;
        Ok(Self {
            format: META_FORMAT,
            instance,
            latest: 0,
            created: now,
            updated: now,
            max_versions: DEFAULT_MAX_VERSIONS.get(),
            versions: BTreeMap::new(),
            custom: BTreeMap::new(),
            reported: None,
        })
    }

    fn readable(&self) -> impl DoubleEndedIterator<Item = u64> + '_ {
        self.versions.iter().filter(|(_, v)| v.deleted.is_none()).map(|(n, _)| *n)
    }

    fn current(&self) -> u64 {
        match self.reported {
            Some(r) => r.current,
            None => self.readable().next_back().unwrap_or(0),
        }
    }

    fn oldest(&self) -> u64 {
        match self.reported {
            Some(r) => r.oldest,
            None => self.readable().next().unwrap_or(0),
        }
    }

    fn to_public(&self) -> SecretMetadata {
        SecretMetadata {
            current_version: self.current(),
            oldest_version: self.oldest(),
            latest_version: self.latest,
            created_time: self.created,
            updated_time: self.updated,
            max_versions: self.max_versions,
            versions: self
                .versions
                .iter()
                .map(|(n, v)| {
                    let m = VersionMetadata {
                        version: *n,
                        created_time: v.created,
                        deleted_time: v.deleted,
                    };
                    (*n, m)
                })
                .collect(),
            custom_metadata: self.custom.clone(),
        }
    }

    /// The versions a delete or destroy request names: empty or 0 mean the current version.
    fn targets(&self, versions: &[u64]) -> Vec<u64> {
        let current = self.current();
        let mut out: Vec<u64> = if versions.is_empty() { vec![current] } else { versions.to_vec() };
        for v in &mut out {
            if *v == 0 {
                *v = current;
            }
        }
        out.retain(|v| *v != 0);
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// What an update step decided.
enum Step<T> {
    /// Nothing to write; return this.
    Done(T),
    /// Store this metadata (plus the batch's writes) and return this.
    Write(Meta, T),
    /// Remove the metadata record (plus the batch's writes) and return this.
    Remove(T),
}

/// Versioned secrets over a [`Backend`]; cheap to clone and share between threads.
#[derive(Debug, Clone)]
pub struct SecretStore {
    backend: Arc<dyn Backend>,
    keyring: SharedKeyring,
    config: SecretStoreConfig,
    locks: Arc<PathLocks>,
    opened: Arc<MetaCache>,
}

/// Opened metadata records by path, each with the exact sealed bytes it was opened from and
/// the keyring that opened them. A read that gets byte-for-byte the same record from the
/// backend, with the same keyring, reuses the opened copy instead of decrypting and decoding
/// it again (a GET's metadata read was half of its store work). Anything else — other bytes
/// (a write here or by another replica, a rollback, tampering), another keyring — opens and
/// authenticates the record as usual. Metadata holds no secret values. Bounded by
/// [`META_CACHE_ENTRIES`]; when full, an arbitrary entry makes room.
#[derive(Default)]
struct MetaCache {
    entries: Mutex<HashMap<String, OpenedMeta>>,
}

struct OpenedMeta {
    sealed: Vec<u8>,
    /// A `Weak` keeps the keyring's allocation, so its address cannot be reused by another.
    ring: Weak<Keyring>,
    meta: Arc<Meta>,
}

impl fmt::Debug for MetaCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MetaCache")
    }
}

impl MetaCache {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, OpenedMeta>> {
        // Every update is one insert or remove: consistent even after a panic elsewhere.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The opened copy of `sealed` at `path`, if it was opened by `ring`.
    fn get(&self, path: &str, ring: &Arc<Keyring>, sealed: &[u8]) -> Option<Arc<Meta>> {
        let entries = self.lock();
        let hit = entries.get(path)?;
        (hit.sealed == sealed && std::ptr::eq(hit.ring.as_ptr(), Arc::as_ptr(ring)))
            .then(|| hit.meta.clone())
    }

    /// The opened metadata at `path` if `ring` opened it, whatever the backend holds now: a
    /// guess at the current metadata, to be confirmed by comparing the bytes read.
    fn opened_by(&self, path: &str, ring: &Arc<Keyring>) -> Option<Arc<Meta>> {
        let entries = self.lock();
        let hit = entries.get(path)?;
        std::ptr::eq(hit.ring.as_ptr(), Arc::as_ptr(ring)).then(|| hit.meta.clone())
    }

    fn put(&self, path: &str, ring: &Arc<Keyring>, sealed: Vec<u8>, meta: Arc<Meta>) {
        let mut entries = self.lock();
        if entries.len() >= META_CACHE_ENTRIES && !entries.contains_key(path) {
            let victim = entries.keys().next().cloned();
            if let Some(victim) = victim {
                entries.remove(&victim);
            }
        }
        entries.insert(path.to_owned(), OpenedMeta { sealed, ring: Arc::downgrade(ring), meta });
    }

    fn forget(&self, path: &str) {
        self.lock().remove(path);
    }
}

/// Striped per-path write locks: an optimisation over the compare-and-swap, not a substitute.
struct PathLocks {
    hasher: RandomState,
    stripes: [Mutex<()>; LOCK_STRIPES],
}

impl fmt::Debug for PathLocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PathLocks")
    }
}

impl PathLocks {
    fn new() -> Self {
        Self { hasher: RandomState::new(), stripes: std::array::from_fn(|_| Mutex::new(())) }
    }

    fn lock(&self, path: &str) -> MutexGuard<'_, ()> {
        let stripe = self.hasher.hash_one(path) as usize % LOCK_STRIPES;
        // The lock guards no data; a poisoned stripe is as good as a clean one.
        self.stripes[stripe].lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SecretStore {
    /// A store over `backend` sealing with `keyring`, with the default settings.
    pub fn new(backend: Arc<dyn Backend>, keyring: Arc<Keyring>) -> Self {
        Self::with_config(backend, keyring, SecretStoreConfig::default())
    }

    /// A store over `backend` sealing with `keyring`, with `config`.
    pub fn with_config(
        backend: Arc<dyn Backend>,
        keyring: Arc<Keyring>,
        config: SecretStoreConfig,
    ) -> Self {
        Self::shared(backend, SharedKeyring::new(keyring), config)
    }

    pub(crate) fn shared(
        backend: Arc<dyn Backend>,
        keyring: SharedKeyring,
        config: SecretStoreConfig,
    ) -> Self {
        Self {
            backend,
            keyring,
            config,
            locks: Arc::new(PathLocks::new()),
            opened: Arc::new(MetaCache::default()),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &SecretStoreConfig {
        &self.config
    }

    /// Writes `values` as a new version of the secret at `path` and returns its number.
    ///
    /// Refuses empty `values` ([`StoreError::Invalid`]) and, with [`PutOptions::cas`], a
    /// latest version other than the expected one ([`StoreError::CasMismatch`]). Versions
    /// beyond the limit are destroyed, oldest first, in the same atomic write.
    pub fn put(
        &self,
        path: &SecretPath,
        values: &SecretValues,
        options: &PutOptions,
    ) -> Result<u64, StoreError> {
        if values.is_empty() {
            return Err(StoreError::Invalid(
                "a secret needs at least one key/value pair; to remove it, delete it".into(),
            ));
        }
        let path = path.as_str();
        let json = values.to_json();
        let max = self.config.max_versions.get();
        self.update(path, |ring, meta, now, batch| {
            let actual = meta.as_ref().map_or(0, |m| m.latest);
            if let Some(expected) = options.cas
                && expected != actual
            {
                return Err(StoreError::CasMismatch { expected, actual });
            }
            let mut meta = match meta {
                Some(meta) => meta,
                None => Meta::fresh(now)?,
            };
            let version = meta.latest.checked_add(1).ok_or_else(|| {
                StoreError::Invalid("this secret's version counter is exhausted".into())
            })?;
            let mut plain = Zeroizing::new(Vec::with_capacity(INSTANCE_LEN + json.len()));
            plain.extend_from_slice(&meta.instance);
            plain.extend_from_slice(&json);
            let sealed = seal_record(ring, RecordKind::SecretVersion, path, version, &plain)?;
            batch.put_owned(keys::version(path, version), sealed);
            meta.latest = version;
            meta.updated = now;
            meta.max_versions = max;
            meta.reported = None;
            meta.versions.insert(version, MetaVersion { created: now, deleted: None });
            if let Some(custom) = &options.custom_metadata {
                meta.custom = custom.clone();
            }
            while meta.versions.len() > max as usize {
                if let Some((old, _)) = meta.versions.pop_first() {
                    batch.delete(&keys::version(path, old));
                }
            }
            Ok(Step::Write(meta, version))
        })
    }

    /// The values of the secret at `path`: the current version for `None` or `Some(0)`,
    /// otherwise the version given (see the [module docs](self) for the errors).
    pub fn get(&self, path: &SecretPath, version: Option<u64>) -> Result<SecretValues, StoreError> {
        self.get_versioned(path, version).map(|(_, values)| values)
    }

    /// Like [`SecretStore::get`], also returning which version was read.
    pub fn get_versioned(
        &self,
        path: &SecretPath,
        version: Option<u64>,
    ) -> Result<(u64, SecretValues), StoreError> {
        reads::complete(self.read(path.as_str(), version, Wait::Blocking))
    }

    /// [`SecretStore::get_versioned`] for a caller on an async runtime: the same reads, checks
    /// and answers, each backend read awaited through [`Backend::get_many_async`] instead of
    /// holding the calling thread (on PostgreSQL, a GET then needs no blocking thread).
    pub async fn get_versioned_async(
        &self,
        path: &SecretPath,
        version: Option<u64>,
    ) -> Result<(u64, SecretValues), StoreError> {
        self.read(path.as_str(), version, Wait::Async).await
    }

    /// The read behind [`SecretStore::get_versioned`] and its async twin, written once (see
    /// [`super::reads`]).
    async fn read(
        &self,
        path: &str,
        version: Option<u64>,
        wait: Wait,
    ) -> Result<(u64, SecretValues), StoreError> {
        let reads = Reads::new(&*self.backend, wait);
        for _ in 0..3 {
            let ring = self.keyring.current();
            let e = match self.try_get(reads, &ring, path, version).await {
                Ok(Some(found)) => return Ok(found),
                // The record vanished between reading the metadata and reading it (a
                // concurrent destroy or prune): look at the metadata again.
                Ok(None) => continue,
                Err(e) => e,
            };
            if !self.keyring.learn(&ring, &e, wait).await {
                return Err(e);
            }
        }
        Err(StoreError::Corrupt(CryptoError::Malformed(
            "the secret's metadata lists a version whose record is missing from the backend \
             (deleted outside spike-rs?); restore it from a backup or destroy that version",
        )))
    }

    /// One attempt at a read: `Ok(None)` when the metadata names a version whose record is
    /// missing (destroyed or pruned meanwhile; the caller looks again).
    ///
    /// With the path's metadata already opened under `ring` (see [`MetaCache`]), the version
    /// it makes the answer is read in the same backend call as the metadata record (see the
    /// [module docs](self) on reads); otherwise, or when the cached metadata already makes the
    /// answer an error, the metadata record is read alone first.
    async fn try_get(
        &self,
        reads: Reads<'_>,
        ring: &Arc<Keyring>,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<(u64, SecretValues)>, StoreError> {
        let meta_key = keys::metadata(path);
        let guess = self.opened.opened_by(path, ring).and_then(|meta| {
            let v = target(&meta, version);
            meta.versions.get(&v).is_some_and(|e| e.deleted.is_none()).then_some(v)
        });
        let (raw, read_beside) = match guess {
            Some(v) => {
                let [raw, record] = reads.many(&[&meta_key, &keys::version(path, v)]).await?;
                (raw, Some((v, record)))
            }
            None => (reads.get(&meta_key).await?, None),
        };
        let raw = raw.ok_or(StoreError::NotFound)?;
        // Byte-for-byte the cached record (the usual case): no open, and the version guessed
        // above is the one this metadata names. Other bytes (a write since): opened here.
        let meta = self.open_shared(ring, path, raw)?;
        let version = target(&meta, version);
        let entry = meta.versions.get(&version).ok_or(StoreError::NotFound)?;
        if entry.deleted.is_some() {
            return Err(StoreError::Deleted);
        }
        // The record read beside this metadata, if it is the version this metadata names;
        // else (no guess, or a write moved the answer elsewhere) a second read.
        let record = match read_beside {
            Some((v, record)) if v == version => record,
            _ => reads.get(&keys::version(path, version)).await?,
        };
        let Some(record) = record else {
            return Ok(None);
        };
        let plain = open_record(ring, RecordKind::SecretVersion, path, version, &record)?;
        let (instance, json) = plain.split_at_checked(INSTANCE_LEN).ok_or(StoreError::Corrupt(
            CryptoError::Malformed("secret version record is too short"),
        ))?;
        if instance != meta.instance {
            return Err(StoreError::Corrupt(CryptoError::Malformed(
                "secret version record belongs to an earlier secret at the same path \
                 (a replayed ciphertext)",
            )));
        }
        let values = SecretValues::from_json(json).map_err(|_| {
            StoreError::Corrupt(CryptoError::Malformed("secret version record does not decode"))
        })?;
        Ok(Some((version, values)))
    }

    /// Soft-deletes `versions` of the secret at `path` (empty or `0`: the current version) and
    /// returns the versions that changed. Unknown versions are ignored; a missing secret is
    /// [`StoreError::NotFound`].
    pub fn delete(&self, path: &SecretPath, versions: &[u64]) -> Result<Vec<u64>, StoreError> {
        self.update(path.as_str(), |_, meta, now, _| {
            let mut meta = meta.ok_or(StoreError::NotFound)?;
            let mut changed = Vec::new();
            for v in meta.targets(versions) {
                if let Some(entry) = meta.versions.get_mut(&v)
                    && entry.deleted.is_none()
                {
                    entry.deleted = Some(now);
                    changed.push(v);
                }
            }
            Ok(finish(meta, now, changed))
        })
    }

    /// Restores soft-deleted `versions` (empty or `0`: the highest deleted version) and returns
    /// the versions that changed.
    pub fn undelete(&self, path: &SecretPath, versions: &[u64]) -> Result<Vec<u64>, StoreError> {
        self.update(path.as_str(), |_, meta, now, _| {
            let mut meta = meta.ok_or(StoreError::NotFound)?;
            let latest_deleted = meta
                .versions
                .iter()
                .rev()
                .find(|(_, v)| v.deleted.is_some())
                .map_or(0, |(n, _)| *n);
            let mut targets: Vec<u64> = if versions.is_empty() {
                vec![latest_deleted]
            } else {
                versions.iter().map(|v| if *v == 0 { latest_deleted } else { *v }).collect()
            };
            targets.sort_unstable();
            targets.dedup();
            let mut changed = Vec::new();
            for v in targets {
                if let Some(entry) = meta.versions.get_mut(&v)
                    && entry.deleted.take().is_some()
                {
                    changed.push(v);
                }
            }
            Ok(finish(meta, now, changed))
        })
    }

    /// Permanently removes `versions` (empty or `0`: the current version), deleted or not,
    /// and returns the versions destroyed. The secret itself, its other versions and its
    /// version counter remain.
    pub fn destroy(&self, path: &SecretPath, versions: &[u64]) -> Result<Vec<u64>, StoreError> {
        let path = path.as_str();
        self.update(path, |_, meta, now, batch| {
            let mut meta = meta.ok_or(StoreError::NotFound)?;
            let mut changed = Vec::new();
            for v in meta.targets(versions) {
                if meta.versions.remove(&v).is_some() {
                    batch.delete(&keys::version(path, v));
                    changed.push(v);
                }
            }
            Ok(finish(meta, now, changed))
        })
    }

    /// Removes the secret at `path` entirely: every version and its metadata (SPIKE's destroy).
    pub fn destroy_all(&self, path: &SecretPath) -> Result<(), StoreError> {
        let path = path.as_str();
        self.update(path, |_, meta, _, batch| {
            let meta = meta.ok_or(StoreError::NotFound)?;
            for v in meta.versions.keys() {
                batch.delete(&keys::version(path, *v));
            }
            Ok(Step::Remove(()))
        })
    }

    /// The metadata of the secret at `path`.
    pub fn metadata(&self, path: &SecretPath) -> Result<SecretMetadata, StoreError> {
        let path = path.as_str();
        for _ in 0..2 {
            let ring = self.keyring.current();
            match self.load_shared(&ring, path) {
                Ok(Some(meta)) => return Ok(meta.to_public()),
                Ok(None) => return Err(StoreError::NotFound),
                Err(e) if self.keyring_moved(&ring, &e) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Contention { attempts: 2 })
    }

    /// Every secret path in the store, sorted (see the [module docs](self) for which).
    pub fn list(&self) -> Result<Vec<SecretPath>, StoreError> {
        let ring = self.keyring.current();
        let mut paths = Vec::new();
        for key in self.backend.keys_with_prefix(keys::SECRETS)? {
            let Some(path) = keys::metadata_path(&key) else {
                continue;
            };
            // Authenticate before listing, so a hostile backend cannot add names.
            let loaded = match self.load(&ring, path) {
                Err(e) if self.keyring_moved(&ring, &e) => self.load(&self.keyring.current(), path),
                other => other,
            };
            if loaded?.is_none() {
                continue; // destroyed since the key listing
            }
            paths.push(SecretPath::parse(path).map_err(|_| {
                StoreError::Corrupt(CryptoError::Malformed(
                    "a stored secret name is not a valid secret path",
                ))
            })?);
        }
        paths.sort();
        Ok(paths)
    }

    /// Reads the metadata record at `path` for reading only: the opened copy from
    /// [`MetaCache`] when the backend's bytes are the ones it was opened from, else opened and
    /// decoded here (and remembered).
    fn load_shared(
        &self,
        ring: &Arc<Keyring>,
        path: &str,
    ) -> Result<Option<Arc<Meta>>, StoreError> {
        let Some(raw) = self.backend.get(&keys::metadata(path))? else {
            return Ok(None);
        };
        self.open_shared(ring, path, raw).map(Some)
    }

    /// The metadata record `raw` of `path`, opened: the copy from [`MetaCache`] when `ring`
    /// opened exactly these bytes, else opened and decoded here (and remembered).
    fn open_shared(
        &self,
        ring: &Arc<Keyring>,
        path: &str,
        raw: Vec<u8>,
    ) -> Result<Arc<Meta>, StoreError> {
        if let Some(meta) = self.opened.get(path, ring, &raw) {
            return Ok(meta);
        }
        let meta = Arc::new(self.open_meta(ring, path, &raw)?);
        self.opened.put(path, ring, raw, meta.clone());
        Ok(meta)
    }

    /// Reads and opens the metadata record at `path`: its raw bytes (for compare-and-swap)
    /// and its contents (from [`MetaCache`] when `ring` opened exactly these bytes before, as
    /// after this replica's own last write to `path`).
    fn load(&self, ring: &Arc<Keyring>, path: &str) -> Result<Option<(Vec<u8>, Meta)>, StoreError> {
        let Some(raw) = self.backend.get(&keys::metadata(path))? else {
            return Ok(None);
        };
        if let Some(meta) = self.opened.get(path, ring, &raw) {
            return Ok(Some((raw, Meta::clone(&meta))));
        }
        let meta = self.open_meta(ring, path, &raw)?;
        Ok(Some((raw, meta)))
    }

    /// Opens and decodes the sealed metadata record `raw` of `path`.
    fn open_meta(&self, ring: &Keyring, path: &str, raw: &[u8]) -> Result<Meta, StoreError> {
        let plain = open_record(ring, RecordKind::SecretMetadata, path, 0, raw)?;
        let meta: Meta = serde_json::from_slice(&plain).map_err(|_| {
            StoreError::Corrupt(CryptoError::Malformed("secret metadata record does not decode"))
        })?;
        if meta.format != META_FORMAT {
            return Err(StoreError::Corrupt(CryptoError::Malformed(
                "secret metadata record has an unknown format; upgrade spike-rs",
            )));
        }
        Ok(meta)
    }

    /// True when `e` is a keyring term unknown to `ring` that the keyring knows now (rotated
    /// here, or persisted by another replica): try again with the current keyring.
    fn keyring_moved(&self, ring: &Keyring, e: &StoreError) -> bool {
        self.keyring.learn_after(ring, e)
    }

    /// The optimistic write loop: read the metadata, let `step` decide the new metadata and
    /// extra writes, and commit it all atomically if the metadata record is unchanged.
    fn update<T>(
        &self,
        path: &str,
        mut step: impl FnMut(
            &Keyring,
            Option<Meta>,
            OffsetDateTime,
            &mut Batch,
        ) -> Result<Step<T>, StoreError>,
    ) -> Result<T, StoreError> {
        let meta_key = keys::metadata(path);
        let attempts = self.config.max_attempts;
        let _queue = self.locks.lock(path);
        for attempt in 0..attempts {
            let ring = self.keyring.current();
            let loaded = match self.load(&ring, path) {
                Err(e) if self.keyring_moved(&ring, &e) => continue,
                other => other?,
            };
            let (raw, meta) = match loaded {
                Some((raw, meta)) => (Some(raw), Some(meta)),
                None => (None, None),
            };
            let now = self.config.clock.now();
            let mut batch = Batch::new();
            let mut written = None;
            let out = match step(&ring, meta, now, &mut batch)? {
                Step::Done(out) => return Ok(out),
                Step::Write(meta, out) => {
                    let json = serde_json::to_vec(&meta).map_err(|_| {
                        StoreError::Invalid("secret metadata could not be encoded".into())
                    })?;
                    let sealed = seal_record(&ring, RecordKind::SecretMetadata, path, 0, &json)?;
                    batch.put_owned(meta_key.clone(), sealed.clone());
                    written = Some((sealed, meta));
                    out
                }
                Step::Remove(out) => {
                    batch.delete(&meta_key);
                    out
                }
            };
            batch.expect(&meta_key, raw.as_deref());
            match self.backend.commit(&batch) {
                Ok(Commit::Applied) => {
                    // The next read of these exact bytes needs no open (see MetaCache).
                    match written {
                        Some((sealed, meta)) => {
                            self.opened.put(path, &ring, sealed, Arc::new(meta))
                        }
                        None => self.opened.forget(path),
                    }
                    return Ok(out);
                }
                Ok(Commit::Conflict) => backoff(attempt),
                Err(e) => {
                    // Unknown whether it was applied: the next read opens whatever is there.
                    self.opened.forget(path);
                    return Err(e);
                }
            }
        }
        Err(StoreError::Contention { attempts })
    }
}

/// The version a read of `version` asks `meta` for: the current one for `None` or `Some(0)`.
fn target(meta: &Meta, version: Option<u64>) -> u64 {
    match version {
        None | Some(0) => meta.current(),
        Some(v) => v,
    }
}

/// Stores `meta` if anything `changed`.
fn finish(mut meta: Meta, now: OffsetDateTime, changed: Vec<u64>) -> Step<Vec<u64>> {
    if changed.is_empty() {
        Step::Done(changed)
    } else {
        meta.updated = now;
        meta.reported = None;
        Step::Write(meta, changed)
    }
}

/// Waits a little before retrying a contended write: yield at first, then sleep for a random
/// time in a window that doubles per attempt (up to 3.2 ms), so retries spread out.
fn backoff(attempt: u32) {
    if attempt < 3 {
        std::thread::yield_now();
        return;
    }
    let mut r = [0u8; 2];
    let jitter = match fill_random(&mut r) {
        Ok(()) => u64::from(u16::from_le_bytes(r)),
        Err(_) => 0x5555,
    };
    let window = 50u64 << attempt.min(6);
    std::thread::sleep(Duration::from_micros(1 + jitter % window));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryBackend;

    fn p(s: &str) -> SecretPath {
        SecretPath::parse(s).unwrap()
    }

    fn values(v: &str) -> SecretValues {
        [("k", v)].into_iter().collect()
    }

    #[test]
    fn metadata_record_holds_no_secret_values() {
        let backend = Arc::new(MemoryBackend::new());
        let ring = Arc::new(Keyring::generate().unwrap());
        let store = SecretStore::new(backend.clone(), ring.clone());
        store.put(&p("a"), &values("canary-123"), &PutOptions::new()).unwrap();
        let raw = backend.get(&keys::metadata("a")).unwrap().unwrap();
        let plain = open_record(&ring, RecordKind::SecretMetadata, "a", 0, &raw).unwrap();
        let text = String::from_utf8(plain.to_vec()).unwrap();
        assert!(!text.contains("canary-123"), "{text}");
    }

    /// A memory backend that counts the reads it serves (`get_many` as one call).
    #[derive(Debug, Default)]
    struct Counting {
        inner: MemoryBackend,
        gets: std::sync::atomic::AtomicUsize,
        get_manys: std::sync::atomic::AtomicUsize,
    }

    impl Counting {
        /// Reads served since the last call: (`get` calls, `get_many` calls).
        fn take(&self) -> (usize, usize) {
            use std::sync::atomic::Ordering::Relaxed;
            (self.gets.swap(0, Relaxed), self.get_manys.swap(0, Relaxed))
        }
    }

    impl Backend for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }

        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.get(key)
        }

        fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
            self.get_manys.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.get_many(keys)
        }

        fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            self.inner.scan_prefix(prefix)
        }

        fn commit(&self, batch: &Batch) -> Result<Commit, StoreError> {
            self.inner.commit(batch)
        }
    }

    /// Two stores over one counting backend, like two Nexus replicas sharing a database.
    fn two_stores() -> (Arc<Counting>, SecretStore, SecretStore) {
        let backend = Arc::new(Counting::default());
        let ring = Arc::new(Keyring::generate().unwrap());
        let here = SecretStore::new(backend.clone(), ring.clone());
        let there = SecretStore::new(backend.clone(), ring);
        (backend, here, there)
    }

    /// The version read and the value of its key `k`.
    fn read(
        store: &SecretStore,
        path: &str,
        version: Option<u64>,
    ) -> Result<(u64, String), StoreError> {
        let (v, values) = store.get_versioned(&p(path), version)?;
        Ok((v, values.get("k").unwrap_or_default().to_owned()))
    }

    #[test]
    fn a_hot_get_is_one_backend_call() {
        let (backend, here, _) = two_stores();
        here.put(&p("a"), &values("1"), &PutOptions::new()).unwrap();
        here.put(&p("a"), &values("2"), &PutOptions::new()).unwrap();
        backend.take();
        // This store wrote the metadata, so it knows which version is current: one call.
        assert_eq!(read(&here, "a", None).unwrap(), (2, "2".into()));
        assert_eq!(backend.take(), (0, 1));
        assert_eq!(read(&here, "a", Some(0)).unwrap(), (2, "2".into()));
        assert_eq!(read(&here, "a", Some(1)).unwrap(), (1, "1".into()));
        assert_eq!(backend.take(), (0, 2));
        // A store that has not seen the metadata yet reads it, then the version; then it is hot.
        let (backend, here, there) = two_stores();
        there.put(&p("b"), &values("x"), &PutOptions::new()).unwrap();
        backend.take();
        assert_eq!(read(&here, "b", None).unwrap().1, "x");
        assert_eq!(backend.take(), (2, 0));
        assert_eq!(read(&here, "b", None).unwrap().1, "x");
        assert_eq!(backend.take(), (0, 1));
    }

    #[test]
    fn a_get_after_another_writer_reads_the_new_current_version() {
        let (backend, here, there) = two_stores();
        here.put(&p("a"), &values("1"), &PutOptions::new()).unwrap();
        assert_eq!(read(&here, "a", None).unwrap().1, "1");
        there.put(&p("a"), &values("2"), &PutOptions::new()).unwrap();
        backend.take();
        // The guess (version 1) is stale: the fresh metadata is opened and version 2 read.
        assert_eq!(read(&here, "a", None).unwrap(), (2, "2".into()));
        assert_eq!(backend.take(), (1, 1));
        assert_eq!(read(&here, "a", None).unwrap(), (2, "2".into()));
        assert_eq!(backend.take(), (0, 1));
        // A write that leaves the asked-for version in place: the record read beside it holds.
        there.put(&p("a"), &values("3"), &PutOptions::new()).unwrap();
        backend.take();
        assert_eq!(read(&here, "a", Some(2)).unwrap(), (2, "2".into()));
        assert_eq!(backend.take(), (0, 1));
        assert_eq!(read(&here, "a", None).unwrap(), (3, "3".into()));
        // Destroyed and re-created elsewhere: version 1 again, of a new secret.
        there.destroy_all(&p("a")).unwrap();
        assert!(matches!(read(&here, "a", None), Err(StoreError::NotFound)));
        there.put(&p("a"), &values("new"), &PutOptions::new()).unwrap();
        assert_eq!(read(&here, "a", None).unwrap(), (1, "new".into()));
    }

    #[test]
    fn a_hot_get_of_a_deleted_or_destroyed_version_fails_as_before() {
        let (backend, here, there) = two_stores();
        for v in ["1", "2", "3"] {
            here.put(&p("a"), &values(v), &PutOptions::new()).unwrap();
        }
        assert_eq!(read(&here, "a", Some(3)).unwrap().1, "3");
        // Deleted by another writer after this store cached the metadata.
        assert_eq!(there.delete(&p("a"), &[3]).unwrap(), [3]);
        assert!(matches!(read(&here, "a", Some(3)), Err(StoreError::Deleted)));
        assert_eq!(read(&here, "a", None).unwrap(), (2, "2".into()));
        // Now cached as deleted: the metadata alone answers.
        backend.take();
        assert!(matches!(read(&here, "a", Some(3)), Err(StoreError::Deleted)));
        assert_eq!(backend.take(), (1, 0));
        // Destroyed by another writer: not found, whether asked by number or as current.
        assert_eq!(there.destroy(&p("a"), &[2]).unwrap(), [2]);
        assert!(matches!(read(&here, "a", Some(2)), Err(StoreError::NotFound)));
        assert_eq!(read(&here, "a", None).unwrap(), (1, "1".into()));
        assert_eq!(there.destroy(&p("a"), &[1]).unwrap(), [1]);
        assert!(matches!(read(&here, "a", None), Err(StoreError::NotFound)));
        assert!(matches!(read(&here, "a", Some(1)), Err(StoreError::NotFound)));
        // Deleted and destroyed here: the same answers.
        here.put(&p("b"), &values("1"), &PutOptions::new()).unwrap();
        here.delete(&p("b"), &[]).unwrap();
        assert!(matches!(read(&here, "b", None), Err(StoreError::NotFound)));
        assert!(matches!(read(&here, "b", Some(1)), Err(StoreError::Deleted)));
        here.destroy(&p("b"), &[1]).unwrap();
        assert!(matches!(read(&here, "b", Some(1)), Err(StoreError::NotFound)));
    }

    #[test]
    fn a_version_record_missing_beside_cached_metadata_is_read_again_then_reported() {
        let (backend, here, _) = two_stores();
        here.put(&p("a"), &values("1"), &PutOptions::new()).unwrap();
        // Removed behind the store's back: the metadata still names it.
        backend.inner.delete(&keys::version("a", 1)).unwrap();
        assert!(matches!(read(&here, "a", None), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn targets_resolve_zero_and_empty_to_current() {
        let mut meta = Meta::fresh(OffsetDateTime::UNIX_EPOCH).unwrap();
        let v = MetaVersion { created: OffsetDateTime::UNIX_EPOCH, deleted: None };
        for n in 1..=3 {
            meta.versions.insert(n, v.clone());
        }
        assert_eq!(meta.targets(&[]), vec![3]);
        assert_eq!(meta.targets(&[0, 1, 1]), vec![1, 3]);
        meta.versions.values_mut().for_each(|v| v.deleted = Some(OffsetDateTime::UNIX_EPOCH));
        assert_eq!(meta.targets(&[]), Vec::<u64>::new());
        assert_eq!((meta.current(), meta.oldest()), (0, 0));
    }
}
