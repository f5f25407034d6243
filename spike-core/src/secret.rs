//! Zeroizing newtypes for every piece of secret material.
//!
//! Each type zeroizes on drop, prints `[REDACTED]` through `Debug` and `Display`, is not
//! `Clone`, and has no `Serialize`: bytes leave only through an explicit `expose_secret()` or
//! encoding function, so a secret cannot reach a log line by accident (STYLE.md §3).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use secrecy::{ExposeSecret, SecretBox};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{CryptoError, SecretValuesError};

/// Length in bytes of the root key and of data keys (AES-256).
pub const KEY_LEN: usize = 32;

macro_rules! redacted_fmt {
    ($ty:ident) => {
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($ty), "([REDACTED])"))
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[REDACTED]")
            }
        }
    };
}

/// Fills `buf` from the operating system's CSPRNG.
pub fn fill_random(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|e| CryptoError::Rng(e.to_string()))
}

static MLOCK_FAILURES: AtomicU64 = AtomicU64::new(0);
static MLOCK_SUCCESSES: AtomicU64 = AtomicU64::new(0);

/// How locking key pages into RAM has gone in this process, for a startup warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLockStatus {
    /// Keys whose pages were locked.
    pub locked: u64,
    /// Keys whose pages could not be locked (e.g. `RLIMIT_MEMLOCK` too low).
    pub failed: u64,
}

/// Counts of successful and failed `mlock` calls on key material so far.
pub fn memory_lock_status() -> MemoryLockStatus {
    MemoryLockStatus {
        locked: MLOCK_SUCCESSES.load(Ordering::Relaxed),
        failed: MLOCK_FAILURES.load(Ordering::Relaxed),
    }
}

/// Locks the page(s) holding a key so it is never written to swap. Failure is counted, not
/// fatal (DESIGN.md: warn, do not fail). The lock is deliberately never released: Linux locks
/// do not nest, so unlocking one key's page would silently unlock a neighbour on the same page;
/// the memory is zeroized on drop either way.
fn lock_in_memory(key: &SecretBox<[u8; KEY_LEN]>) {
    let ptr: *const [u8; KEY_LEN] = key.expose_secret();
    match region::lock(ptr, KEY_LEN) {
        Ok(guard) => {
            std::mem::forget(guard);
            MLOCK_SUCCESSES.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            MLOCK_FAILURES.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn random_key() -> Result<SecretBox<[u8; KEY_LEN]>, CryptoError> {
    let mut key = SecretBox::new(Box::new([0u8; KEY_LEN]));
    lock_in_memory(&key);
    fill_random(secrecy::ExposeSecretMut::expose_secret_mut(&mut key))?;
    Ok(key)
}

fn key_from(bytes: &mut [u8; KEY_LEN]) -> SecretBox<[u8; KEY_LEN]> {
    let mut key = SecretBox::new(Box::new([0u8; KEY_LEN]));
    lock_in_memory(&key);
    secrecy::ExposeSecretMut::expose_secret_mut(&mut key).copy_from_slice(bytes);
    bytes.zeroize();
    key
}

/// Declares a 256-bit key type: a page-locked, zeroizing box with a redacted `Debug` and
/// `Display`, made fresh from the CSPRNG or from the caller's bytes, and read only through
/// `expose_secret`.
macro_rules! key_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal, expose: $expose:literal) => {
        $(#[$doc])*
        pub struct $ty(SecretBox<[u8; KEY_LEN]>);
        redacted_fmt!($ty);

        impl $ty {
            #[doc = concat!("Makes a fresh ", $what, " from the OS CSPRNG.")]
            pub fn generate() -> Result<Self, CryptoError> {
                random_key().map(Self)
            }

            /// Takes ownership of key bytes, zeroizing the caller's copy.
            pub fn from_bytes(bytes: &mut [u8; KEY_LEN]) -> Self {
                Self(key_from(bytes))
            }

            #[doc = $expose]
            pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
                self.0.expose_secret()
            }
        }
    };
}

key_type!(
    /// The 256-bit root key: it wraps every data key and exists only in memory.
    RootKey,
    "root key",
    expose: "The raw key bytes, for the few functions that must compute with them."
);

impl RootKey {
    /// Constant-time equality, for checking a recombined key against an expected one.
    pub fn ct_eq(&self, other: &RootKey) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0.expose_secret()[..], &other.0.expose_secret()[..])
            .into()
    }
}

key_type!(
    /// A 256-bit data-encryption key (one keyring term), stored only wrapped by the root key.
    DataKey,
    "data key",
    expose: "The raw key bytes, for the AEAD."
);

/// One Shamir share of the root key, as a Keeper holds it: a 1-based index and a 32-byte
/// big-endian P-256 scalar (SPIKE Go's share format).
pub struct KeeperShare {
    index: u8,
    value: SecretBox<[u8; KEY_LEN]>,
}

impl fmt::Debug for KeeperShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeeperShare {{ index: {}, value: [REDACTED] }}", self.index)
    }
}

impl fmt::Display for KeeperShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "share #{} [REDACTED]", self.index)
    }
}

impl KeeperShare {
    /// Takes ownership of a share's bytes, zeroizing the caller's copy. Index 0 is never a
    /// valid share (it would be the secret itself); [`crate::shamir`] rejects it on use.
    pub fn new(index: u8, value: &mut [u8; KEY_LEN]) -> Self {
        Self { index, value: key_from(value) }
    }

    /// The 1-based share index (the x coordinate).
    pub fn index(&self) -> u8 {
        self.index
    }

    /// The share's 32 bytes (the y coordinate, big-endian).
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        self.value.expose_secret()
    }

    /// A new owned copy, for sending the same share to a Keeper again.
    pub fn duplicate(&self) -> Self {
        let mut bytes = *self.value.expose_secret();
        Self::new(self.index, &mut bytes)
    }
}

/// The key/value pairs of one secret version (SPIKE's `map[string]string`).
///
/// Keys and values are zeroized on drop. Encode and decode only through
/// [`SecretValues::to_json`] and [`SecretValues::from_json`].
#[derive(Default)]
pub struct SecretValues(BTreeMap<String, String>);
redacted_fmt!(SecretValues);

impl Drop for SecretValues {
    fn drop(&mut self) {
        for (mut k, mut v) in std::mem::take(&mut self.0) {
            k.zeroize();
            v.zeroize();
        }
    }
}

impl ZeroizeOnDrop for SecretValues {}

impl SecretValues {
    /// An empty set of values.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces `key`; the previous value, if any, is zeroized.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        if let Some(mut old) = self.0.insert(key.into(), value.into()) {
            old.zeroize();
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over key/value pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Iterates over the keys only (safe to show: keys are names, not values).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Encodes as a JSON object into a buffer that zeroizes on drop.
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        // Serialising a BTreeMap<String, String> cannot fail: every key is a string.
        Zeroizing::new(serde_json::to_vec(&self.0).unwrap_or_default())
    }

    /// Decodes a JSON object of string values (what [`SecretValues::to_json`] wrote).
    pub fn from_json(bytes: &[u8]) -> Result<Self, SecretValuesError> {
        serde_json::from_slice::<BTreeMap<String, String>>(bytes)
            .map(Self)
            .map_err(|e| SecretValuesError::Malformed { line: e.line(), column: e.column() })
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for SecretValues {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut values = Self::new();
        for (k, v) in iter {
            values.insert(k, v);
        }
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "canary-7f3a9c-do-not-print";

    #[test]
    fn debug_and_display_never_show_secret_bytes() {
        let mut bytes = [0xAB; KEY_LEN];
        let key = RootKey::from_bytes(&mut bytes);
        assert_eq!(bytes, [0u8; KEY_LEN], "caller's copy must be zeroized");
        assert_eq!(format!("{key:?}"), "RootKey([REDACTED])");
        assert_eq!(format!("{key}"), "[REDACTED]");
        let mut s = [7u8; KEY_LEN];
        let share = KeeperShare::new(3, &mut s);
        assert_eq!(format!("{share:?}"), "KeeperShare { index: 3, value: [REDACTED] }");
        let values: SecretValues = [("password", CANARY)].into_iter().collect();
        assert!(!format!("{values:?} {values}").contains(CANARY));
    }

    #[test]
    fn secret_values_round_trip_through_json() {
        let values: SecretValues = [("a", "1"), ("b", CANARY)].into_iter().collect();
        let json = values.to_json();
        let back = SecretValues::from_json(&json).unwrap();
        assert_eq!(back.get("b"), Some(CANARY));
        assert_eq!(back.len(), 2);
    }

    #[test]
    fn malformed_json_error_does_not_echo_input() {
        let err =
            SecretValues::from_json(format!("{{\"k\": 1, \"{CANARY}\"").as_bytes()).unwrap_err();
        assert!(!err.to_string().contains(CANARY));
    }

    #[test]
    fn key_pages_are_locked_or_the_failure_is_counted() {
        let before = memory_lock_status();
        let _key = RootKey::generate().unwrap();
        let after = memory_lock_status();
        assert!(after.locked + after.failed > before.locked + before.failed);
    }

    #[test]
    fn generated_keys_differ() {
        let a = RootKey::generate().unwrap();
        let b = RootKey::generate().unwrap();
        assert!(!a.ct_eq(&b));
        assert!(a.ct_eq(&a));
    }
}
