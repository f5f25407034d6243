//! The store, through its public API: one suite mounted for every backend (memory, sled),
//! plus sled-only durability tests and a property test of the versioned model against a
//! plain reference model.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Wake, Waker};

use spike_core::crypto::aead;
use spike_core::error::{CryptoError, Error, StoreError};
use spike_core::path::SecretPath;
use spike_core::secret::{RootKey, SecretValues};
use spike_core::store::{
    Backend, Batch, Commit, ManualClock, MemoryBackend, PutOptions, ReadFuture, SecretStore,
    SecretStoreConfig, Vault, keys, stored_key_check_value,
};
use time::OffsetDateTime;
use time::macros::datetime;

const CANARY: &str = "canary-5be1d0-never-print-me";

// ---------------------------------------------------------------------------------------------
// Fixtures: one per backend, so the same suite runs on each.

trait Fixture: Sized {
    fn new() -> Self;
    /// The backend as it is now.
    fn backend(&self) -> Arc<dyn Backend>;
    /// Simulates a restart: every other handle must have been dropped. For sled this closes
    /// the database and opens the directory again.
    fn reopen(&mut self);
}

struct MemoryFixture(Arc<MemoryBackend>);

impl Fixture for MemoryFixture {
    fn new() -> Self {
        Self(Arc::new(MemoryBackend::new()))
    }
    fn backend(&self) -> Arc<dyn Backend> {
        self.0.clone()
    }
    fn reopen(&mut self) {
        // Memory does not survive a process, but a fresh Vault over it is still a fresh open.
    }
}

#[cfg(feature = "sled")]
struct SledFixture {
    dir: tempfile::TempDir,
    backend: Option<Arc<spike_core::store::SledBackend>>,
}

#[cfg(feature = "sled")]
impl Fixture for SledFixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backend = Some(Arc::new(spike_core::store::SledBackend::open(dir.path()).unwrap()));
        Self { dir, backend }
    }
    fn backend(&self) -> Arc<dyn Backend> {
        self.backend.clone().unwrap()
    }
    fn reopen(&mut self) {
        let old = self.backend.take().unwrap();
        assert_eq!(Arc::strong_count(&old), 1, "drop every Vault before reopening");
        drop(old);
        let reopened = spike_core::store::SledBackend::open(self.dir.path()).unwrap();
        self.backend = Some(Arc::new(reopened));
    }
}

macro_rules! mount_suite {
    ($fixture:ty) => {
        mount_suite!(@ $fixture;
            put_then_get_reads_latest_and_chosen_versions,
            version_numbers_are_never_reused,
            metadata_reports_versions_times_and_custom_metadata,
            delete_and_undelete_follow_spike_semantics,
            destroy_removes_ciphertext_for_good,
            destroy_all_removes_the_secret_and_a_replayed_old_version_does_not_open,
            check_and_set_guards_against_lost_updates,
            pruning_destroys_the_oldest_versions_beyond_the_limit,
            list_returns_every_stored_path_sorted,
            missing_secrets_and_bad_requests_are_reported,
            flipped_bytes_in_any_record_are_integrity_errors,
            ciphertext_moved_to_another_path_version_or_kind_does_not_open,
            wrong_root_key_on_reopen_is_refused_without_touching_the_store,
            reopening_with_the_root_key_reads_everything_back,
            refuses_to_initialise_over_data_without_a_keyring,
            policies_round_trip_sealed,
            rotation_and_reencryption_complete_online,
            concurrent_puts_to_one_path_get_distinct_consecutive_versions,
            racing_replicas_serialise_through_compare_and_swap,
            replicas_sharing_a_backend_read_each_others_terms_and_rotate_without_losing_one,
            errors_and_debug_output_never_contain_secret_values,
            reads_see_other_writers_and_restored_records_despite_the_opened_metadata_cache,
            async_gets_wait_only_on_async_reads_and_answer_and_refuse_as_sync_gets,
        );
    };
    (@ $fixture:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                super::$name::<$fixture>();
            }
        )*
    };
}

mod memory {
    mount_suite!(super::MemoryFixture);
}

#[cfg(feature = "sled")]
mod sled {
    mount_suite!(super::SledFixture);
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn root(b: u8) -> RootKey {
    RootKey::from_bytes(&mut [b; 32])
}

fn path(s: &str) -> SecretPath {
    SecretPath::parse(s).unwrap()
}

fn vals(pairs: &[(&str, &str)]) -> SecretValues {
    pairs.iter().copied().collect()
}

fn one(v: &str) -> SecretValues {
    vals(&[("value", v)])
}

fn value_of(store: &SecretStore, p: &str, version: Option<u64>) -> Result<String, StoreError> {
    store.get(&path(p), version).map(|v| v.get("value").unwrap_or_default().to_owned())
}

const T0: OffsetDateTime = datetime!(2025-01-02 03:04:05.123456789 UTC);

fn open_with_clock(backend: Arc<dyn Backend>, max: u32) -> (Vault, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let config = SecretStoreConfig::new()
        .with_max_versions(NonZeroU32::new(max).unwrap())
        .with_clock(clock.clone());
    (Vault::open_with(backend, &root(1), config).unwrap(), clock)
}

fn open<F: Fixture>(fx: &F) -> Vault {
    Vault::open(fx.backend(), &root(1)).unwrap()
}

fn put(store: &SecretStore, p: &str, v: &str) -> u64 {
    store.put(&path(p), &one(v), &PutOptions::new()).unwrap()
}

fn flip(backend: &dyn Backend, key: &str, at: usize) -> Vec<u8> {
    let original = backend.get(key).unwrap().unwrap();
    let mut tampered = original.clone();
    tampered[at] ^= 0x01;
    backend.put(key, &tampered).unwrap();
    original
}

// ---------------------------------------------------------------------------------------------
// The suite.

fn put_then_get_reads_latest_and_chosen_versions<F: Fixture>() {
    let fx = F::new();
    let vault = open(&fx);
    let s = vault.secrets();
    assert_eq!(
        s.put(&path("app/db"), &vals(&[("user", "u1"), ("pass", "p1")]), &PutOptions::new())
            .unwrap(),
        1
    );
    assert_eq!(put(s, "app/db", "second"), 2);
    let latest = s.get(&path("app/db"), None).unwrap();
    assert_eq!(latest.get("value"), Some("second"));
    assert_eq!(latest.len(), 1);
    let first = s.get(&path("app/db"), Some(1)).unwrap();
    assert_eq!((first.get("user"), first.get("pass")), (Some("u1"), Some("p1")));
    assert_eq!(value_of(s, "app/db", Some(0)).unwrap(), "second", "0 means current, as SPIKE");
    let (version, _) = s.get_versioned(&path("app/db"), None).unwrap();
    assert_eq!(version, 2);
}

fn version_numbers_are_never_reused<F: Fixture>() {
    let fx = F::new();
    let vault = open(&fx);
    let s = vault.secrets();
    put(s, "a", "1");
    put(s, "a", "2");
    assert_eq!(s.delete(&path("a"), &[]).unwrap(), vec![2]);
    assert_eq!(s.metadata(&path("a")).unwrap().current_version, 1);
    // SPIKE Nexus would write version 2 again here; we go on to 3.
    assert_eq!(put(s, "a", "3"), 3);
    s.destroy(&path("a"), &[3]).unwrap();
    assert_eq!(put(s, "a", "4"), 4);
    assert_eq!(
        s.get(&path("a"), Some(2)).unwrap_err().to_string(),
        StoreError::Deleted.to_string()
    );
}

fn metadata_reports_versions_times_and_custom_metadata<F: Fixture>() {
    let fx = F::new();
    let (vault, clock) = open_with_clock(fx.backend(), 10);
    let s = vault.secrets();
    let labels: BTreeMap<String, String> = [("owner".to_owned(), "team-a".to_owned())].into();
    s.put(&path("svc/key"), &one("v1"), &PutOptions::new().custom_metadata(labels.clone()))
        .unwrap();
    clock.advance(time::Duration::seconds(10));
    put(s, "svc/key", "v2");
    clock.advance(time::Duration::seconds(10));
    s.delete(&path("svc/key"), &[1]).unwrap();

    let m = s.metadata(&path("svc/key")).unwrap();
    assert_eq!((m.current_version, m.oldest_version, m.latest_version), (2, 2, 2));
    assert_eq!(m.max_versions, 10);
    assert_eq!(m.created_time, T0);
    assert_eq!(m.updated_time, T0 + time::Duration::seconds(20));
    assert_eq!(m.versions.len(), 2);
    assert_eq!(m.versions[&1].created_time, T0);
    assert_eq!(m.versions[&1].deleted_time, Some(T0 + time::Duration::seconds(20)));
    assert_eq!(m.versions[&2].version, 2);
    assert_eq!(m.versions[&2].created_time, T0 + time::Duration::seconds(10));
    assert_eq!(m.versions[&2].deleted_time, None);
    assert_eq!(m.custom_metadata, labels, "a put without custom metadata keeps it");

    s.put(&path("svc/key"), &one("v3"), &PutOptions::new().custom_metadata(BTreeMap::new()))
        .unwrap();
    assert!(s.metadata(&path("svc/key")).unwrap().custom_metadata.is_empty());
}

fn delete_and_undelete_follow_spike_semantics<F: Fixture>() {
    let fx = F::new();
    let (vault, clock) = open_with_clock(fx.backend(), 10);
    let s = vault.secrets();
    let p = path("x");
    for v in ["1", "2", "3"] {
        put(s, "x", v);
    }
    // Empty list = current version; current moves down to the highest readable one.
    assert_eq!(s.delete(&p, &[]).unwrap(), vec![3]);
    assert_eq!(value_of(s, "x", None).unwrap(), "2");
    assert!(matches!(s.get(&p, Some(3)), Err(StoreError::Deleted)));
    // 0 = current; unknown versions are ignored; deleting twice changes nothing.
    assert_eq!(s.delete(&p, &[0, 99]).unwrap(), vec![2]);
    assert_eq!(s.delete(&p, &[2, 3]).unwrap(), Vec::<u64>::new());
    let deleted_at = s.metadata(&p).unwrap().versions[&3].deleted_time;
    clock.advance(time::Duration::seconds(5));
    s.delete(&p, &[3]).unwrap();
    assert_eq!(s.metadata(&p).unwrap().versions[&3].deleted_time, deleted_at, "first time kept");
    assert_eq!(s.delete(&p, &[1]).unwrap(), vec![1]);
    // Every version deleted: no current version, latest get is "not found".
    let m = s.metadata(&p).unwrap();
    assert_eq!((m.current_version, m.oldest_version, m.latest_version), (0, 0, 3));
    assert!(matches!(s.get(&p, None), Err(StoreError::NotFound)));
    // Empty undelete = highest deleted version.
    assert_eq!(s.undelete(&p, &[]).unwrap(), vec![3]);
    assert_eq!(value_of(s, "x", None).unwrap(), "3");
    assert_eq!(s.undelete(&p, &[1, 3, 42]).unwrap(), vec![1]);
    let m = s.metadata(&p).unwrap();
    assert_eq!((m.current_version, m.oldest_version), (3, 1));
    assert_eq!(value_of(s, "x", Some(1)).unwrap(), "1");
    assert!(m.versions[&1].deleted_time.is_none());
    // Nothing left to undelete.
    s.undelete(&p, &[2]).unwrap();
    assert_eq!(s.undelete(&p, &[]).unwrap(), Vec::<u64>::new());
}

fn destroy_removes_ciphertext_for_good<F: Fixture>() {
    let fx = F::new();
    let vault = open(&fx);
    let s = vault.secrets();
    let backend = fx.backend();
    for v in ["1", "2", "3"] {
        put(s, "d", v);
    }
    s.delete(&path("d"), &[2]).unwrap();
    assert_eq!(s.destroy(&path("d"), &[2, 7]).unwrap(), vec![2]);
    assert_eq!(backend.get(&keys::version("d", 2)).unwrap(), None, "ciphertext is gone");
    assert!(matches!(s.get(&path("d"), Some(2)), Err(StoreError::NotFound)));
    assert_eq!(s.undelete(&path("d"), &[2]).unwrap(), Vec::<u64>::new());
    // Empty = current.
    assert_eq!(s.destroy(&path("d"), &[]).unwrap(), vec![3]);
    assert_eq!(value_of(s, "d", None).unwrap(), "1");
    let m = s.metadata(&path("d")).unwrap();
    assert_eq!(m.versions.keys().copied().collect::<Vec<_>>(), vec![1]);
    assert_eq!((m.current_version, m.latest_version), (1, 3));
}

fn destroy_all_removes_the_secret_and_a_replayed_old_version_does_not_open<F: Fixture>() {
    let fx = F::new();
    let vault = open(&fx);
    let s = vault.secrets();
    let backend = fx.backend();
    put(s, "gone", "old");
    put(s, "keep", "k");
    let old_v1 = backend.get(&keys::version("gone", 1)).unwrap().unwrap();
    s.destroy_all(&path("gone")).unwrap();
    assert!(backend.keys_with_prefix("s/gone/").unwrap().is_empty());
    assert!(matches!(s.metadata(&path("gone")), Err(StoreError::NotFound)));
    assert!(matches!(s.destroy_all(&path("gone")), Err(StoreError::NotFound)));
    assert_eq!(s.list().unwrap(), vec![path("keep")]);
    // Re-created: numbering restarts, and the old version 1 ciphertext, put back by a hostile
    // backend, is refused rather than served as the new secret's version 1.
    assert_eq!(put(s, "gone", "new"), 1);
    backend.put(&keys::version("gone", 1), &old_v1).unwrap();
    assert!(matches!(s.get(&path("gone"), None), Err(StoreError::Corrupt(_))));
}

fn check_and_set_guards_against_lost_updates<F: Fixture>() {
    let fx = F::new();
    let vault = open(&fx);
    let s = vault.secrets();
    let p = path("cas");
    let cas = |n| PutOptions::new().cas(n);
    assert_eq!(s.put(&p, &one("a"), &cas(0)).unwrap(), 1, "cas 0 creates");
    match s.put(&p, &one("b"), &cas(0)) {
        Err(StoreError::CasMismatch { expected: 0, actual: 1 }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(s.put(&p, &one("b"), &cas(1)).unwrap(), 2);
    assert!(matches!(
        s.put(&p, &one("c"), &cas(1)),
        Err(StoreError::CasMismatch { expected: 1, actual: 2 })
    ));
    // Deleting the latest version does not make an old expectation match again.
    s.delete(&p, &[]).unwrap();
    assert!(matches!(
        s.put(&p, &one("c"), &cas(1)),
        Err(StoreError::CasMismatch { expected: 1, actual: 2 })
    ));
    assert_eq!(s.put(&p, &one("c"), &cas(2)).unwrap(), 3);
    assert_eq!(value_of(s, "cas", None).unwrap(), "c");
}

fn pruning_destroys_the_oldest_versions_beyond_the_limit<F: Fixture>() {
    let fx = F::new();
    let backend = fx.backend();
    let (vault, _) = open_with_clock(backend.clone(), 3);
    let s = vault.secrets();
    for i in 1..=5 {
        assert_eq!(put(s, "p", &i.to_string()), i);
    }
    let m = s.metadata(&path("p")).unwrap();
    assert_eq!(m.versions.keys().copied().collect::<Vec<_>>(), vec![3, 4, 5]);
    assert_eq!((m.oldest_version, m.current_version, m.max_versions), (3, 5, 3));
    for v in [1, 2] {
        assert_eq!(backend.get(&keys::version("p", v)).unwrap(), None);
        assert!(matches!(s.get(&path("p"), Some(v)), Err(StoreError::NotFound)));
    }
    assert_eq!(value_of(s, "p", Some(3)).unwrap(), "3");
    // Deleted versions count towards the limit and are pruned like the others.
    s.delete(&path("p"), &[3, 4]).unwrap();
    put(s, "p", "6");
    let m = s.metadata(&path("p")).unwrap();
    assert_eq!(m.versions.keys().copied().collect::<Vec<_>>(), vec![4, 5, 6]);
    assert_eq!(m.oldest_version, 5);
}

fn list_returns_every_stored_path_sorted<F: Fixture>() {
    let fx = F::new();
    let vault = open(&fx);
    let s = vault.secrets();
    assert!(s.list().unwrap().is_empty());
    for p in ["b", "a/m", "a", "a/v/00000000000000000001", "z/y"] {
        put(s, p, "x");
    }
    vault.policies().put("pol", b"{}").unwrap();
    s.delete(&path("z/y"), &[]).unwrap();
    let listed: Vec<String> = s.list().unwrap().iter().map(|p| p.as_str().to_owned()).collect();
    assert_eq!(listed, ["a", "a/m", "a/v/00000000000000000001", "b", "z/y"]);
}

fn missing_secrets_and_bad_requests_are_reported<F: Fixture>() {
    let fx = F::new();
    let vault = open(&fx);
    let s = vault.secrets();
    let p = path("nope");
    assert!(matches!(s.get(&p, None), Err(StoreError::NotFound)));
    assert!(matches!(s.metadata(&p), Err(StoreError::NotFound)));
    assert!(matches!(s.delete(&p, &[]), Err(StoreError::NotFound)));
    assert!(matches!(s.undelete(&p, &[]), Err(StoreError::NotFound)));
    assert!(matches!(s.destroy(&p, &[]), Err(StoreError::NotFound)));
    let err = s.put(&p, &SecretValues::new(), &PutOptions::new()).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    put(s, "nope", "x");
    assert!(matches!(s.get(&p, Some(2)), Err(StoreError::NotFound)));
    assert!(vault.policies().put("", b"x").is_err());
    assert!(vault.policies().put("a\nb", b"x").is_err());
}

fn flipped_bytes_in_any_record_are_integrity_errors<F: Fixture>() {
    let fx = F::new();
    let vault = open(&fx);
    let s = vault.secrets();
    let backend = fx.backend();
    put(s, "t", CANARY);
    vault.policies().put("pol", b"policy-bytes").unwrap();

    let key = keys::version("t", 1);
    let len = backend.get(&key).unwrap().unwrap().len();
    for at in 0..len {
        let original = flip(backend.as_ref(), &key, at);
        match s.get(&path("t"), None) {
            Err(StoreError::Corrupt(_)) => {}
            other => panic!("byte {at} flipped: expected Corrupt, got {other:?}"),
        }
        backend.put(&key, &original).unwrap();
    }
    // The middle of the ciphertext: specifically an authentication failure.
    let original = flip(backend.as_ref(), &key, len - 20);
    assert!(matches!(s.get(&path("t"), None), Err(StoreError::Corrupt(CryptoError::Integrity))));
    backend.put(&key, &original).unwrap();

    let meta = keys::metadata("t");
    let meta_len = backend.get(&meta).unwrap().unwrap().len();
    flip(backend.as_ref(), &meta, meta_len / 2);
    assert!(matches!(s.metadata(&path("t")), Err(StoreError::Corrupt(CryptoError::Integrity))));
    assert!(matches!(s.get(&path("t"), None), Err(StoreError::Corrupt(_))));
    assert!(matches!(s.list(), Err(StoreError::Corrupt(_))), "list authenticates names");
    assert!(matches!(
        s.put(&path("t"), &one("x"), &PutOptions::new()),
        Err(StoreError::Corrupt(_))
    ));

    let pol = keys::policy("pol");
    flip(backend.as_ref(), &pol, 30);
    assert!(matches!(vault.policies().get("pol"), Err(StoreError::Corrupt(_))));
    assert!(matches!(vault.policies().list(), Err(StoreError::Corrupt(_))));

    // Truncated and empty records are errors too, never panics.
    backend.put(&key, &[]).unwrap();
    backend.put(&meta, &[1, 0, 0]).unwrap();
    assert!(matches!(s.get(&path("t"), None), Err(StoreError::Corrupt(_))));
}

fn ciphertext_moved_to_another_path_version_or_kind_does_not_open<F: Fixture>() {
    let fx = F::new();
    let vault = open(&fx);
    let s = vault.secrets();
    let backend = fx.backend();
    put(s, "a", "a1");
    put(s, "a", "a2");
    put(s, "b", "b1");
    vault.policies().put("p1", b"one").unwrap();
    vault.policies().put("p2", b"two").unwrap();
    let copy = |from: &str, to: &str| {
        let record = backend.get(from).unwrap().unwrap();
        backend.put(to, &record).unwrap();
    };
    let integrity = |r: Result<SecretValues, StoreError>| {
        assert!(matches!(r, Err(StoreError::Corrupt(CryptoError::Integrity))), "{r:?}")
    };

    copy(&keys::version("a", 1), &keys::version("b", 1)); // another path
    integrity(s.get(&path("b"), Some(1)));
    copy(&keys::version("a", 1), &keys::version("a", 2)); // another version
    integrity(s.get(&path("a"), Some(2)));
    assert_eq!(value_of(s, "a", Some(1)).unwrap(), "a1", "the original is untouched");
    copy(&keys::metadata("a"), &keys::metadata("b")); // another secret's metadata
    assert!(matches!(s.metadata(&path("b")), Err(StoreError::Corrupt(CryptoError::Integrity))));
    copy(&keys::policy("p1"), &keys::policy("p2")); // another policy
    assert!(matches!(vault.policies().get("p2"), Err(StoreError::Corrupt(CryptoError::Integrity))));
    copy(&keys::version("a", 1), &keys::policy("p1")); // another kind
    assert!(matches!(vault.policies().get("p1"), Err(StoreError::Corrupt(CryptoError::Integrity))));
}

fn wrong_root_key_on_reopen_is_refused_without_touching_the_store<F: Fixture>() {
    let mut fx = F::new();
    {
        let vault = open(&fx);
        put(vault.secrets(), "k", "v");
    }
    fx.reopen();
    let backend = fx.backend();
    let before = backend.scan_prefix("").unwrap();
    match Vault::open(backend.clone(), &root(2)) {
        Err(Error::Crypto(CryptoError::WrongRootKey)) => {}
        other => panic!("expected WrongRootKey, got {other:?}"),
    }
    assert_eq!(backend.scan_prefix("").unwrap(), before, "a refused open writes nothing");
    let vault = Vault::open(backend, &root(1)).unwrap();
    assert!(matches!(vault.rotate(&root(2)), Err(Error::Crypto(CryptoError::WrongRootKey))));
    assert_eq!(value_of(vault.secrets(), "k", None).unwrap(), "v");
}

fn reopening_with_the_root_key_reads_everything_back<F: Fixture>() {
    let mut fx = F::new();
    let first_term;
    {
        let (vault, _) = open_with_clock(fx.backend(), 10);
        let s = vault.secrets();
        let labels: BTreeMap<String, String> = [("team".to_owned(), "x".to_owned())].into();
        s.put(&path("app/one"), &vals(&[("u", "1"), ("p", CANARY)]), &PutOptions::new()).unwrap();
        s.put(&path("app/one"), &one("2"), &PutOptions::new().custom_metadata(labels)).unwrap();
        s.put(&path("app/two"), &one("t"), &PutOptions::new()).unwrap();
        s.delete(&path("app/two"), &[]).unwrap();
        vault.policies().put("reader", b"{\"name\":\"reader\"}").unwrap();
        first_term = vault.keyring().current_term();
    }
    fx.reopen();
    let vault = Vault::open(fx.backend(), &root(1)).unwrap();
    assert!(vault.keyring().current_term() > first_term, "each open starts a fresh term");
    let s = vault.secrets();
    let v1 = s.get(&path("app/one"), Some(1)).unwrap();
    assert_eq!((v1.get("u"), v1.get("p")), (Some("1"), Some(CANARY)));
    assert_eq!(value_of(s, "app/one", None).unwrap(), "2");
    let m = s.metadata(&path("app/one")).unwrap();
    assert_eq!((m.current_version, m.created_time), (2, T0));
    assert_eq!(m.custom_metadata["team"], "x");
    assert!(matches!(s.get(&path("app/two"), None), Err(StoreError::NotFound)));
    assert_eq!(s.list().unwrap(), vec![path("app/one"), path("app/two")]);
    assert_eq!(&vault.policies().get("reader").unwrap().unwrap()[..], b"{\"name\":\"reader\"}");
    // New writes work after reopening, under the new term.
    assert_eq!(put(s, "app/one", "3"), 3);
    let kcv = stored_key_check_value(fx.backend().as_ref()).unwrap().unwrap();
    assert_eq!(kcv, spike_core::shamir::key_check_value(&root(1)));
}

fn refuses_to_initialise_over_data_without_a_keyring<F: Fixture>() {
    let fx = F::new();
    let backend = fx.backend();
    {
        let vault = open(&fx);
        put(vault.secrets(), "s", "v");
    }
    let kcv = backend.get(keys::KEY_CHECK).unwrap().unwrap();
    backend.delete(keys::KEY_CHECK).unwrap();
    assert!(matches!(
        Vault::open(backend.clone(), &root(1)),
        Err(Error::Store(StoreError::Corrupt(_)))
    ));
    backend.delete(keys::KEYRING).unwrap();
    // Both system records gone, data present: a fresh keyring would orphan the data.
    assert!(matches!(
        Vault::open(backend.clone(), &root(1)),
        Err(Error::Store(StoreError::Corrupt(_)))
    ));
    assert_eq!(backend.get(keys::KEYRING).unwrap(), None, "nothing was initialised");
    backend.put(keys::KEY_CHECK, &kcv).unwrap();
    assert!(Vault::open(backend, &root(1)).is_err());
}

fn policies_round_trip_sealed<F: Fixture>() {
    let fx = F::new();
    let vault = open(&fx);
    let pol = vault.policies();
    assert_eq!(pol.get("missing").unwrap(), None);
    pol.put("b-id", b"{\"b\":1}").unwrap();
    pol.put("a-id", b"{\"a\":1}").unwrap();
    pol.put("a-id", b"{\"a\":2}").unwrap();
    let listed: Vec<(String, Vec<u8>)> =
        pol.list().unwrap().into_iter().map(|(id, b)| (id, b.to_vec())).collect();
    assert_eq!(
        listed,
        vec![
            ("a-id".to_owned(), b"{\"a\":2}".to_vec()),
            ("b-id".to_owned(), b"{\"b\":1}".to_vec())
        ]
    );
    let raw = fx.backend().get(&keys::policy("a-id")).unwrap().unwrap();
    assert!(!raw.windows(5).any(|w| w == b"\"a\":2"), "stored sealed, not in clear");
    assert!(pol.delete("a-id").unwrap());
    assert!(!pol.delete("a-id").unwrap());
    assert_eq!(pol.list().unwrap().len(), 1);
}

fn rotation_and_reencryption_complete_online<F: Fixture>() {
    let mut fx = F::new();
    {
        let vault = open(&fx);
        let s = vault.secrets();
        for i in 0..5 {
            put(s, &format!("r/{i}"), &format!("old-{i}"));
        }
        vault.policies().put("pol", b"p").unwrap();
        let old_term = vault.keyring().current_term();
        let new_term = vault.rotate(&root(1)).unwrap();
        assert!(new_term > old_term);
        put(s, "r/0", "new-0");
        let raw = fx.backend().get(&keys::version("r/0", 2)).unwrap().unwrap();
        assert_eq!(aead::record_term(&raw).unwrap(), new_term, "new writes use the new term");
        let report = vault.reencrypt().unwrap();
        assert_eq!(report.term, new_term);
        // 5 versions + 4 metadata (r/0's was rewritten by the put) + 1 policy.
        assert_eq!((report.examined, report.resealed), (12, 10), "{report:?}");
        for (key, value) in fx.backend().scan_prefix("").unwrap() {
            if key.starts_with("sys/") {
                continue;
            }
            assert_eq!(aead::record_term(&value).unwrap(), new_term, "{key} not resealed");
        }
        assert_eq!(vault.reencrypt().unwrap().resealed, 0, "idempotent");
        assert_eq!(value_of(s, "r/3", None).unwrap(), "old-3");
    }
    fx.reopen();
    let vault = Vault::open(fx.backend(), &root(1)).unwrap();
    for i in 1..5 {
        assert_eq!(value_of(vault.secrets(), &format!("r/{i}"), None).unwrap(), format!("old-{i}"));
    }
    assert_eq!(value_of(vault.secrets(), "r/0", None).unwrap(), "new-0");
    assert_eq!(&vault.policies().get("pol").unwrap().unwrap()[..], b"p");
}

fn concurrent_puts_to_one_path_get_distinct_consecutive_versions<F: Fixture>() {
    const THREADS: usize = 8;
    const PUTS: usize = 50;
    let fx = F::new();
    let config = SecretStoreConfig::new().with_max_versions(NonZeroU32::new(1000).unwrap());
    let vault = Arc::new(Vault::open_with(fx.backend(), &root(1), config).unwrap());
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (vault, barrier) = (vault.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (0..PUTS)
                    .map(|i| {
                        let value = format!("{t}-{i}");
                        (put(vault.secrets(), "hot", &value), value)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut written = BTreeMap::new();
    for h in handles {
        for (version, value) in h.join().unwrap() {
            assert!(written.insert(version, value).is_none(), "version {version} given twice");
        }
    }
    let total = (THREADS * PUTS) as u64;
    assert_eq!(written.keys().copied().collect::<Vec<_>>(), (1..=total).collect::<Vec<_>>());
    let m = vault.secrets().metadata(&path("hot")).unwrap();
    assert_eq!(m.versions.len() as u64, total);
    for (version, value) in &written {
        assert_eq!(&value_of(vault.secrets(), "hot", Some(*version)).unwrap(), value);
    }
}

/// Two stores over one backend, as two Nexus replicas would be: nothing in-process orders
/// their writes, so only the backend's compare-and-swap keeps versions unique.
/// Several Nexus replicas over one backend: each opens its own Vault (and so seals under a term
/// of its own), yet each reads what the others wrote, sees their policy changes through the
/// generation token, and rotations on two replicas neither reuse nor lose a term.
fn replicas_sharing_a_backend_read_each_others_terms_and_rotate_without_losing_one<F: Fixture>() {
    let fx = F::new();
    let a = open(&fx);
    let b = open(&fx);
    assert_ne!(a.keyring().current_term(), b.keyring().current_term());
    put(a.secrets(), "shared/x", "from-a");
    put(b.secrets(), "shared/y", "from-b");
    assert_eq!(value_of(b.secrets(), "shared/x", None).unwrap(), "from-a");
    assert_eq!(value_of(a.secrets(), "shared/y", None).unwrap(), "from-b");
    // A write through b on a path a created: b must read a's metadata first.
    assert_eq!(put(b.secrets(), "shared/x", "b-on-top"), 2);
    assert_eq!(value_of(a.secrets(), "shared/x", None).unwrap(), "b-on-top");

    let before = a.policies().generation().unwrap();
    b.policies().put("p1", b"policy-bytes").unwrap();
    let after_put = a.policies().generation().unwrap();
    assert!(after_put.is_some() && after_put != before);
    assert_eq!(&a.policies().get("p1").unwrap().unwrap()[..], b"policy-bytes");
    assert!(a.policies().delete("p1").unwrap());
    assert_ne!(b.policies().generation().unwrap(), after_put);

    // Rotations on both replicas: distinct new terms, and each new term stays readable by the
    // other replica and by a replica opened afterwards.
    let ta = a.rotate(&root(1)).unwrap();
    let tb = b.rotate(&root(1)).unwrap();
    assert_ne!(ta, tb);
    put(a.secrets(), "after/a", "a2");
    put(b.secrets(), "after/b", "b2");
    assert_eq!(value_of(b.secrets(), "after/a", None).unwrap(), "a2");
    assert_eq!(value_of(a.secrets(), "after/b", None).unwrap(), "b2");
    let c = open(&fx);
    for (p, v) in [("shared/x", "b-on-top"), ("shared/y", "from-b"), ("after/a", "a2")] {
        assert_eq!(value_of(c.secrets(), p, None).unwrap(), v, "{p}");
    }
    assert_eq!(value_of(c.secrets(), "after/b", None).unwrap(), "b2");
    // Re-encryption by one replica moves everything to its term; the others still read it.
    let report = a.reencrypt().unwrap();
    assert!(report.resealed > 0);
    assert_eq!(value_of(b.secrets(), "shared/y", None).unwrap(), "from-b");
}

fn racing_replicas_serialise_through_compare_and_swap<F: Fixture>() {
    const PER_REPLICA: usize = 3;
    const PUTS: usize = 20;
    let fx = F::new();
    let ring = Arc::new(spike_core::crypto::Keyring::generate().unwrap());
    let config = || SecretStoreConfig::new().with_max_versions(NonZeroU32::new(1000).unwrap());
    let replicas = [
        SecretStore::with_config(fx.backend(), ring.clone(), config()),
        SecretStore::with_config(fx.backend(), ring.clone(), config()),
    ];
    let barrier = Arc::new(Barrier::new(2 * PER_REPLICA));
    let handles: Vec<_> = (0..2 * PER_REPLICA)
        .map(|t| {
            let (store, barrier) = (replicas[t % 2].clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (0..PUTS).map(|i| put(&store, "shared", &format!("{t}-{i}"))).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut versions: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    versions.sort_unstable();
    let total = (2 * PER_REPLICA * PUTS) as u64;
    assert_eq!(versions, (1..=total).collect::<Vec<_>>());
    assert_eq!(replicas[1].metadata(&path("shared")).unwrap().versions.len() as u64, total);
}

/// The opened-metadata cache is keyed by the exact sealed bytes: a write by another replica,
/// a record put back by whoever controls the backend, and tampering all reach the reader.
fn reads_see_other_writers_and_restored_records_despite_the_opened_metadata_cache<F: Fixture>() {
    let fx = F::new();
    let ring = Arc::new(spike_core::crypto::Keyring::generate().unwrap());
    let reader = SecretStore::new(fx.backend(), ring.clone());
    let writer = SecretStore::new(fx.backend(), ring.clone());
    put(&writer, "c", "one");
    assert_eq!(value_of(&reader, "c", None).unwrap(), "one");
    let first_meta = fx.backend().get(&keys::metadata("c")).unwrap().unwrap();
    for round in 0..3 {
        let v = format!("v{round}");
        put(&writer, "c", &v);
        assert_eq!(value_of(&reader, "c", None).unwrap(), v, "a write by another replica");
        assert_eq!(reader.metadata(&path("c")).unwrap().current_version, round + 2);
    }
    // Deleting the current version (4) makes 3 current, for the reader too.
    writer.delete(&path("c"), &[]).unwrap();
    assert_eq!(reader.metadata(&path("c")).unwrap().current_version, 3);
    assert_eq!(value_of(&reader, "c", None).unwrap(), "v1");
    assert!(matches!(reader.get(&path("c"), Some(4)), Err(StoreError::Deleted)));
    // An old metadata record put back (a restored dump): served as it says, like any read.
    fx.backend().put(&keys::metadata("c"), &first_meta).unwrap();
    assert_eq!(reader.metadata(&path("c")).unwrap().current_version, 1);
    assert_eq!(value_of(&reader, "c", None).unwrap(), "one");
    // Tampering after the record was cached is still caught.
    let len = first_meta.len();
    flip(fx.backend().as_ref(), &keys::metadata("c"), len / 2);
    assert!(matches!(reader.get(&path("c"), None), Err(StoreError::Corrupt(_))));
    // Another keyring (a different root) opens nothing, cached or not.
    fx.backend().put(&keys::metadata("c"), &first_meta).unwrap();
    let stranger =
        SecretStore::new(fx.backend(), Arc::new(spike_core::crypto::Keyring::generate().unwrap()));
    assert!(matches!(stranger.get(&path("c"), None), Err(StoreError::Corrupt(_))));
}

/// A backend whose async reads really wait (pending once, woken, then answered), counting its
/// synchronous and asynchronous reads, to show what an async GET reads through.
#[derive(Debug)]
struct Yielding {
    inner: Arc<dyn Backend>,
    sync_reads: AtomicUsize,
    async_reads: AtomicUsize,
}

impl Yielding {
    /// Reads since the last call: (synchronous, asynchronous).
    fn take(&self) -> (usize, usize) {
        (self.sync_reads.swap(0, Relaxed), self.async_reads.swap(0, Relaxed))
    }
}

impl Backend for Yielding {
    fn name(&self) -> &'static str {
        "yielding"
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.sync_reads.fetch_add(1, Relaxed);
        self.inner.get(key)
    }
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.sync_reads.fetch_add(1, Relaxed);
        self.inner.get_many(keys)
    }
    fn get_many_async<'a>(&'a self, keys: &'a [&'a str]) -> ReadFuture<'a> {
        self.async_reads.fetch_add(1, Relaxed);
        Box::pin(async move {
            let mut polled = false;
            std::future::poll_fn(|cx| {
                if std::mem::replace(&mut polled, true) {
                    Poll::Ready(())
                } else {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            })
            .await;
            self.inner.get_many(keys)
        })
    }
    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.scan_prefix(prefix)
    }
    fn commit(&self, batch: &Batch) -> Result<Commit, StoreError> {
        self.inner.commit(batch)
    }
}

/// Runs `work` on this thread to completion, parking while it is pending.
fn block_on<T>(work: impl Future<Output = T>) -> T {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut work = std::pin::pin!(work);
    loop {
        if let Poll::Ready(out) = work.as_mut().poll(&mut Context::from_waker(&waker)) {
            return out;
        }
        std::thread::park();
    }
}

/// The async GET (what Nexus runs on PostgreSQL) reads only through `get_many_async`, even
/// when it must learn another replica's keyring term or follow another replica's write, and
/// gives the sync GET's answers, refusals of tampered and moved records included.
fn async_gets_wait_only_on_async_reads_and_answer_and_refuse_as_sync_gets<F: Fixture>() {
    let fx = F::new();
    let y = Arc::new(Yielding {
        inner: fx.backend(),
        sync_reads: AtomicUsize::new(0),
        async_reads: AtomicUsize::new(0),
    });
    // Two replicas, each sealing under a term of its own; b opened first, so a's is new to it.
    let b = Vault::open(y.clone(), &root(1)).unwrap();
    let a = Vault::open(y.clone(), &root(1)).unwrap();
    let get = |p: &str, v: Option<u64>| -> Result<(u64, String), StoreError> {
        let (version, values) = block_on(b.secrets().get_versioned_async(&path(p), v))?;
        let sync = b.secrets().get_versioned(&path(p), v).unwrap();
        assert_eq!((sync.0, sync.1.get("value")), (version, values.get("value")));
        Ok((version, values.get("value").unwrap_or_default().to_owned()))
    };
    let async_only = |(sync, asynchronous): (usize, usize)| {
        assert_eq!(sync, 0, "an async GET read through a blocking read");
        assert!(asynchronous > 0);
    };
    put(a.secrets(), "x", "one");
    put(a.secrets(), "x", "two");
    y.take();
    // b reads a's metadata, learns a's term from the stored keyring, reads the metadata again
    // and then the version: four reads, all async.
    let first = block_on(b.secrets().get_versioned_async(&path("x"), None)).unwrap();
    assert_eq!((first.0, first.1.get("value")), (2, Some("two")));
    assert_eq!(y.take(), (0, 4));
    // Hot: one read for the metadata and the version beside it.
    let again = block_on(b.secrets().get_versioned_async(&path("x"), Some(1))).unwrap();
    assert_eq!(again.1.get("value"), Some("one"));
    assert_eq!(y.take(), (0, 1));
    // Another replica's write, delete and destroy are followed.
    put(a.secrets(), "x", "three");
    y.take();
    assert_eq!(block_on(b.secrets().get_versioned_async(&path("x"), None)).unwrap().0, 3);
    async_only(y.take());
    a.secrets().delete(&path("x"), &[3]).unwrap();
    a.secrets().destroy(&path("x"), &[1]).unwrap();
    assert_eq!(get("x", None).unwrap(), (2, "two".into()));
    assert!(matches!(get("x", Some(3)), Err(StoreError::Deleted)));
    assert!(matches!(get("x", Some(1)), Err(StoreError::NotFound)));
    assert!(matches!(get("missing", None), Err(StoreError::NotFound)));
    // A flipped byte in the version record, then version 2's record moved under version 4.
    put(a.secrets(), "x", "four");
    let two = flip(y.as_ref(), &keys::version("x", 2), 20);
    let corrupt = |v| block_on(b.secrets().get_versioned_async(&path("x"), v));
    assert!(matches!(corrupt(Some(2)), Err(StoreError::Corrupt(_))));
    y.put(&keys::version("x", 2), &two).unwrap();
    assert_eq!(get("x", Some(2)).unwrap(), (2, "two".into()));
    y.put(&keys::version("x", 4), &two).unwrap();
    y.take();
    assert!(matches!(corrupt(None), Err(StoreError::Corrupt(_))));
    assert!(matches!(corrupt(Some(4)), Err(StoreError::Corrupt(_))));
    async_only(y.take());
    // A flipped metadata record is refused too, though b had it opened and cached.
    flip(y.as_ref(), &keys::metadata("x"), 30);
    assert!(matches!(corrupt(Some(2)), Err(StoreError::Corrupt(_))));
}

fn errors_and_debug_output_never_contain_secret_values<F: Fixture>() {
    let fx = F::new();
    let vault = open(&fx);
    let s = vault.secrets();
    s.put(&path("c"), &vals(&[("k", CANARY)]), &PutOptions::new()).unwrap();
    let got = s.get(&path("c"), None).unwrap();
    let mut shown = format!("{got:?} {vault:?} {s:?} {:?}", vault.policies());
    shown += &format!("{:?}", s.put(&path("c"), &one(CANARY), &PutOptions::new().cas(7)));
    flip(fx.backend().as_ref(), &keys::version("c", 1), 25);
    shown += &format!("{:?}", s.get(&path("c"), Some(1)));
    shown += &format!("{:?}", fx.backend());
    assert!(!shown.contains(CANARY), "{shown}");
}

// ---------------------------------------------------------------------------------------------
// Sled only: durability across a real close and reopen, and group commit under load.

#[cfg(feature = "sled")]
#[test]
fn sled_concurrent_writers_share_flushes_and_everything_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    const THREADS: usize = 8;
    const PUTS: usize = 50;
    let stats = {
        let backend = Arc::new(spike_core::store::SledBackend::open(dir.path()).unwrap());
        let vault = Arc::new(Vault::open(backend.clone(), &root(9)).unwrap());
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (vault, barrier) = (vault.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for i in 0..PUTS {
                        // Different paths: no contention on metadata, only on the disk.
                        put(vault.secrets(), &format!("t{t}/s{i}"), &format!("{t}.{i}"));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        backend.stats()
    };
    eprintln!("sled group commit: {stats:?}");
    assert!(stats.writes >= (THREADS * PUTS) as u64);
    assert!(stats.flushes <= stats.writes);

    let backend = Arc::new(spike_core::store::SledBackend::open(dir.path()).unwrap());
    let vault = Vault::open(backend, &root(9)).unwrap();
    let listed: BTreeSet<String> =
        vault.secrets().list().unwrap().iter().map(|p| p.as_str().to_owned()).collect();
    assert_eq!(listed.len(), THREADS * PUTS);
    for t in 0..THREADS {
        for i in 0..PUTS {
            let v = value_of(vault.secrets(), &format!("t{t}/s{i}"), None).unwrap();
            assert_eq!(v, format!("{t}.{i}"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Property test: the versioned model against a plain reference model, on the memory backend.

mod model {
    use super::*;
    use proptest::prelude::*;

    const MAX_VERSIONS: u32 = 3;
    const PATHS: [&str; 3] = ["a", "a/b", "c"];

    #[derive(Debug, Clone)]
    enum Op {
        Put { p: usize, value: u8, cas: Option<u64> },
        Get { p: usize, version: Option<u64> },
        Delete { p: usize, versions: Vec<u64> },
        Undelete { p: usize, versions: Vec<u64> },
        Destroy { p: usize, versions: Vec<u64> },
        DestroyAll { p: usize },
        Metadata { p: usize },
        List,
    }

    fn op() -> impl Strategy<Value = Op> {
        let p = 0..PATHS.len();
        let versions = proptest::collection::vec(0u64..8, 0..3);
        prop_oneof![
            4 => (p.clone(), any::<u8>(), proptest::option::weighted(0.3, 0u64..6))
                .prop_map(|(p, value, cas)| Op::Put { p, value, cas }),
            3 => (p.clone(), proptest::option::of(0u64..8))
                .prop_map(|(p, version)| Op::Get { p, version }),
            2 => (p.clone(), versions.clone()).prop_map(|(p, versions)| Op::Delete { p, versions }),
            2 => (p.clone(), versions.clone())
                .prop_map(|(p, versions)| Op::Undelete { p, versions }),
            1 => (p.clone(), versions).prop_map(|(p, versions)| Op::Destroy { p, versions }),
            1 => p.clone().prop_map(|p| Op::DestroyAll { p }),
            1 => p.prop_map(|p| Op::Metadata { p }),
            1 => Just(Op::List),
        ]
    }

    /// The reference: a map of versions, written as plainly as possible.
    #[derive(Default, Clone)]
    struct RefSecret {
        latest: u64,
        /// version -> (value, deleted)
        versions: BTreeMap<u64, (String, bool)>,
    }

    impl RefSecret {
        fn current(&self) -> u64 {
            self.versions.iter().rev().find(|(_, (_, d))| !d).map_or(0, |(v, _)| *v)
        }
        fn oldest(&self) -> u64 {
            self.versions.iter().find(|(_, (_, d))| !d).map_or(0, |(v, _)| *v)
        }
        fn resolve(&self, versions: &[u64]) -> BTreeSet<u64> {
            let cur = self.current();
            let list = if versions.is_empty() { vec![0] } else { versions.to_vec() };
            list.into_iter().map(|v| if v == 0 { cur } else { v }).filter(|v| *v != 0).collect()
        }
    }

    #[derive(Debug, PartialEq)]
    enum Out {
        Version(u64),
        Value(String),
        Changed(Vec<u64>),
        Unit,
        Meta { current: u64, oldest: u64, latest: u64, versions: Vec<(u64, bool)> },
        Paths(Vec<String>),
        NotFound,
        Deleted,
        Cas { expected: u64, actual: u64 },
    }

    fn err(e: StoreError) -> Out {
        match e {
            StoreError::NotFound => Out::NotFound,
            StoreError::Deleted => Out::Deleted,
            StoreError::CasMismatch { expected, actual } => Out::Cas { expected, actual },
            other => panic!("unexpected error: {other}"),
        }
    }

    fn run_real(s: &SecretStore, op: &Op) -> Out {
        let pp = |p: usize| path(PATHS[p]);
        let r = match op {
            Op::Put { p, value, cas } => {
                let mut o = PutOptions::new();
                if let Some(c) = cas {
                    o = o.cas(*c);
                }
                s.put(&pp(*p), &one(&value.to_string()), &o).map(Out::Version)
            }
            Op::Get { p, version } => {
                s.get(&pp(*p), *version).map(|v| Out::Value(v.get("value").unwrap().to_owned()))
            }
            Op::Delete { p, versions } => s.delete(&pp(*p), versions).map(Out::Changed),
            Op::Undelete { p, versions } => s.undelete(&pp(*p), versions).map(Out::Changed),
            Op::Destroy { p, versions } => s.destroy(&pp(*p), versions).map(Out::Changed),
            Op::DestroyAll { p } => s.destroy_all(&pp(*p)).map(|()| Out::Unit),
            Op::Metadata { p } => s.metadata(&pp(*p)).map(|m| Out::Meta {
                current: m.current_version,
                oldest: m.oldest_version,
                latest: m.latest_version,
                versions: m
                    .versions
                    .values()
                    .map(|v| (v.version, v.deleted_time.is_some()))
                    .collect(),
            }),
            Op::List => {
                s.list().map(|l| Out::Paths(l.iter().map(|p| p.as_str().to_owned()).collect()))
            }
        };
        r.unwrap_or_else(err)
    }

    fn run_ref(m: &mut BTreeMap<&'static str, RefSecret>, op: &Op) -> Out {
        match op {
            Op::Put { p, value, cas } => {
                let actual = m.get(PATHS[*p]).map_or(0, |s| s.latest);
                if let Some(expected) = cas
                    && *expected != actual
                {
                    return Out::Cas { expected: *expected, actual };
                }
                let s = m.entry(PATHS[*p]).or_default();
                s.latest += 1;
                s.versions.insert(s.latest, (value.to_string(), false));
                while s.versions.len() > MAX_VERSIONS as usize {
                    s.versions.pop_first();
                }
                Out::Version(s.latest)
            }
            Op::Get { p, version } => {
                let Some(s) = m.get(PATHS[*p]) else {
                    return Out::NotFound;
                };
                let v = match version {
                    None | Some(0) => s.current(),
                    Some(v) => *v,
                };
                match s.versions.get(&v) {
                    None => Out::NotFound,
                    Some((_, true)) => Out::Deleted,
                    Some((value, false)) => Out::Value(value.clone()),
                }
            }
            Op::Delete { p, versions } => {
                let Some(s) = m.get_mut(PATHS[*p]) else {
                    return Out::NotFound;
                };
                let mut changed = vec![];
                for v in s.resolve(versions) {
                    if let Some((_, d @ false)) = s.versions.get_mut(&v) {
                        *d = true;
                        changed.push(v);
                    }
                }
                Out::Changed(changed)
            }
            Op::Undelete { p, versions } => {
                let Some(s) = m.get_mut(PATHS[*p]) else {
                    return Out::NotFound;
                };
                let last_deleted =
                    s.versions.iter().rev().find(|(_, (_, d))| *d).map_or(0, |(v, _)| *v);
                let list = if versions.is_empty() { vec![0] } else { versions.clone() };
                let targets: BTreeSet<u64> =
                    list.into_iter().map(|v| if v == 0 { last_deleted } else { v }).collect();
                let mut changed = vec![];
                for v in targets {
                    if let Some((_, d @ true)) = s.versions.get_mut(&v) {
                        *d = false;
                        changed.push(v);
                    }
                }
                Out::Changed(changed)
            }
            Op::Destroy { p, versions } => {
                let Some(s) = m.get_mut(PATHS[*p]) else {
                    return Out::NotFound;
                };
                let changed =
                    s.resolve(versions).into_iter().filter(|v| s.versions.remove(v).is_some());
                Out::Changed(changed.collect())
            }
            Op::DestroyAll { p } => match m.remove(PATHS[*p]) {
                Some(_) => Out::Unit,
                None => Out::NotFound,
            },
            Op::Metadata { p } => {
                let Some(s) = m.get(PATHS[*p]) else {
                    return Out::NotFound;
                };
                Out::Meta {
                    current: s.current(),
                    oldest: s.oldest(),
                    latest: s.latest,
                    versions: s.versions.iter().map(|(v, (_, d))| (*v, *d)).collect(),
                }
            }
            Op::List => Out::Paths(m.keys().map(|k| k.to_string()).collect()),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn versioned_store_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..40)) {
            let backend = Arc::new(MemoryBackend::new());
            let ring = Arc::new(spike_core::crypto::Keyring::generate().unwrap());
            let config = SecretStoreConfig::new()
                .with_max_versions(NonZeroU32::new(MAX_VERSIONS).unwrap());
            let store = SecretStore::with_config(backend.clone(), ring, config);
            let mut reference = BTreeMap::new();
            for (i, op) in ops.iter().enumerate() {
                let real = run_real(&store, op);
                let expected = run_ref(&mut reference, op);
                prop_assert_eq!(real, expected, "op #{}: {:?}", i, op);
            }
            // Exactly the versions the model holds have ciphertext in the backend.
            let mut expected_keys: Vec<String> = Vec::new();
            for (p, s) in &reference {
                expected_keys.push(keys::metadata(p));
                expected_keys.extend(s.versions.keys().map(|v| keys::version(p, *v)));
            }
            expected_keys.sort();
            prop_assert_eq!(backend.keys_with_prefix(keys::SECRETS).unwrap(), expected_keys);
        }
    }
}
