//! Storage: a ciphertext-only [`Backend`] and the sealed records kept in it.
//!
//! ```text
//!   Vault::open(backend, &root_key)      verifies the key check, unwraps the keyring
//!     ├── SecretStore   versions, delete/undelete/destroy, CAS, metadata   (versioned.rs)
//!     ├── PolicyStore   opaque policy bytes by id                          (policies.rs)
//!     └── Arc<dyn Backend>  MemoryBackend | SledBackend | (PostgreSQL)      (backend.rs, ...)
//! ```
//!
//! Every value a backend holds is an AEAD envelope from the [`Keyring`]
//! whose associated data names the record's kind, path and version, so a backend that swaps,
//! moves, replays across paths or flips bytes produces [`StoreError::Corrupt`], never a wrong
//! secret. Key *names* are not secret: they are the secret paths and policy ids themselves.
//!
//! # Key layout
//!
//! | key | record | AAD (kind, path, version) |
//! |---|---|---|
//! | `s/<path>/m` | a secret's metadata | `SecretMetadata`, path, 0 |
//! | `s/<path>/v/<version, 20 digits>` | one version's values | `SecretVersion`, path, version |
//! | `p/<id>` | a policy | `Policy`, id, 0 |
//! | `sys/keyring` | the keyring wrapped under the root key | (see `Keyring::wrap`) |
//! | `sys/kcv` | key check value: HMAC of a label under the root key | not encrypted |
//! | `sys/policy-gen` | random token replaced on every policy change | not encrypted |
//! | `sys/cipher-key` | the cipher service's key wrapped under the root key | `Cipher`, `cipher-key`, 0 |
//! | `sys/cipher-legacy` | SPIKE's cipher key after `import-spike`, sealed under the keyring | `Cipher`, `spike-legacy-cipher-key`, 0 |
//! | `sys/root-pending` | during a root-key rotation: the new key's check value, keyring and cipher key | (see [`Vault::rotate_root`]) |
//!
//! Secret keys are parsed from the end (`/m`, or `/v/` plus exactly 20 digits), so the mapping
//! from (path, record) to key is injective even though paths contain `/`. Versions are
//! zero-padded so that keys sort in version order.
//!
//! [`Backend`]: backend::Backend

pub mod backend;
pub mod memory;
pub mod policies;
mod reads;
#[cfg(feature = "sled")]
pub mod sled;
pub mod vault;
pub mod versioned;

use std::sync::{Arc, RwLock};

pub use backend::{Backend, Batch, Commit, ReadFuture};
pub use memory::MemoryBackend;
pub use policies::PolicyStore;
#[cfg(feature = "sled")]
pub use sled::{FlushStats, SledBackend};
pub use vault::{
    ReencryptReport, Vault, open_keyring, pending_key_check_value, stored_key_check_value,
};
pub use versioned::{
    Clock, Imported, ImportedSecret, ImportedVersion, ManualClock, PutOptions, SecretMetadata,
    SecretStore, SecretStoreConfig, SystemClock, VersionMetadata,
};

use crate::crypto::{Keyring, RecordKind};
use crate::error::StoreError;
use reads::{Reads, Wait};

/// The backend key names (see the table in the [module docs](self)), public so tools and tests
/// can find a record's ciphertext.
pub mod keys {
    use crate::crypto::RecordKind;

    /// Prefix of every secret record.
    pub const SECRETS: &str = "s/";
    /// Prefix of every policy record.
    pub const POLICIES: &str = "p/";
    /// The wrapped keyring.
    pub const KEYRING: &str = "sys/keyring";
    /// The root key's key check value.
    pub const KEY_CHECK: &str = "sys/kcv";
    /// A random token replaced on every policy change, so replicas sharing the store notice
    /// changes made through another replica (see [`crate::store::PolicyStore::generation`]).
    pub const POLICY_GENERATION: &str = "sys/policy-gen";
    /// The cipher service's key, wrapped under the root key (it must outlive root rotations).
    pub const CIPHER_KEY: &str = "sys/cipher-key";
    /// A root-key rotation in progress (see [`crate::store::Vault::rotate_root`]).
    pub const ROOT_PENDING: &str = "sys/root-pending";
    /// SPIKE's cipher key after an import, sealed under the keyring (see
    /// [`crate::store::Vault::legacy_cipher_key`]).
    pub const LEGACY_CIPHER_KEY: &str = "sys/cipher-legacy";

    const META_SUFFIX: &str = "/m";
    const VERSION_INFIX: &str = "/v/";
    const VERSION_DIGITS: usize = 20;

    /// Key of the metadata record of the secret at `path`.
    pub fn metadata(path: &str) -> String {
        format!("{SECRETS}{path}{META_SUFFIX}")
    }

    /// Key of version `version` of the secret at `path`.
    pub fn version(path: &str, version: u64) -> String {
        // u64::MAX has 20 decimal digits, so every version pads to the same width.
        format!("{SECRETS}{path}{VERSION_INFIX}{version:020}")
    }

    /// Key of the policy with id `id`.
    pub fn policy(id: &str) -> String {
        format!("{POLICIES}{id}")
    }

    /// The secret path a metadata key belongs to, if `key` is one.
    pub fn metadata_path(key: &str) -> Option<&str> {
        key.strip_prefix(SECRETS)?.strip_suffix(META_SUFFIX).filter(|p| !p.is_empty())
    }

    /// What an encrypted record under `key` must authenticate as: its kind, path (or id) and
    /// version. `None` for keys outside the layout and for the keyring and key check records.
    pub fn record_binding(key: &str) -> Option<(RecordKind, &str, u64)> {
        if let Some(id) = key.strip_prefix(POLICIES) {
            return (!id.is_empty()).then_some((RecordKind::Policy, id, 0));
        }
        if let Some(path) = metadata_path(key) {
            return Some((RecordKind::SecretMetadata, path, 0));
        }
        let rest = key.strip_prefix(SECRETS)?;
        let split = rest.len().checked_sub(VERSION_DIGITS + VERSION_INFIX.len())?;
        let (path, tail) = (rest.get(..split)?, rest.get(split..)?);
        let digits = tail.strip_prefix(VERSION_INFIX)?;
        if path.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((RecordKind::SecretVersion, path, digits.parse().ok()?))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn keys_round_trip_through_their_bindings() {
            for path in ["a", "a/m", "a/v/00000000000000000001", "x/y/z"] {
                let m = metadata(path);
                assert_eq!(record_binding(&m), Some((RecordKind::SecretMetadata, path, 0)));
                for v in [1, 42, u64::MAX] {
                    let k = version(path, v);
                    assert_eq!(record_binding(&k), Some((RecordKind::SecretVersion, path, v)));
                }
            }
            assert_eq!(record_binding("p/abc"), Some((RecordKind::Policy, "abc", 0)));
            for junk in ["s/", "s//m", "s/a", "s/a/v/1", "p/", KEYRING, KEY_CHECK, "zz"] {
                assert_eq!(record_binding(junk), None, "{junk}");
            }
            assert!(version("a", 9) < version("a", 10));
        }
    }
}

/// The keyring in use, shared by the stores of one [`Vault`] and swapped whole on rotation.
///
/// Rotation builds a *new* keyring (all old terms plus a fresh one), persists it, and only then
/// swaps it in here. Rotating the live keyring in place instead would let other threads seal
/// under a term that a crash could still lose with the unpersisted keyring.
///
/// Several Nexus replicas sharing one backend each seal under a term of their own (every open
/// starts one). A record sealed by another replica names a term this one has not seen: with a
/// [source](SharedKeyring::with_source), [`SharedKeyring::learn_after`] reads the stored
/// keyring again and learns its new terms for reading.
#[derive(Debug, Clone)]
pub struct SharedKeyring {
    slot: Arc<RwLock<Arc<Keyring>>>,
    source: Option<Arc<KeyringSource>>,
}

/// Where a [`SharedKeyring`] re-reads the persisted keyring: the backend and the wrapping key.
struct KeyringSource {
    backend: Arc<dyn Backend>,
    /// Replaced when the root key is rotated.
    kek: RwLock<crate::secret::DataKey>,
}

impl std::fmt::Debug for KeyringSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyringSource").field("backend", &self.backend.name()).finish()
    }
}

impl SharedKeyring {
    /// Shares `keyring`.
    pub fn new(keyring: Arc<Keyring>) -> Self {
        Self { slot: Arc::new(RwLock::new(keyring)), source: None }
    }

    /// Shares `keyring`, able to learn terms other replicas persisted in `backend` under the
    /// keyring wrapped with `kek` ([`crate::crypto::keyring::wrapping_key`]).
    pub fn with_source(
        keyring: Arc<Keyring>,
        backend: Arc<dyn Backend>,
        kek: crate::secret::DataKey,
    ) -> Self {
        Self {
            slot: Arc::new(RwLock::new(keyring)),
            source: Some(Arc::new(KeyringSource { backend, kek: RwLock::new(kek) })),
        }
    }

    /// The keyring to use for one operation.
    pub fn current(&self) -> Arc<Keyring> {
        // The slot only ever holds a complete Arc; poisoning cannot leave it half-written.
        self.slot.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn replace(&self, keyring: Arc<Keyring>) {
        *self.slot.write().unwrap_or_else(|p| p.into_inner()) = keyring;
    }

    /// After a root-key rotation: the stored keyring is now wrapped under `kek`.
    fn replace_kek(&self, kek: crate::secret::DataKey) {
        if let Some(source) = &self.source {
            *source.kek.write().unwrap_or_else(|p| p.into_inner()) = kek;
        }
    }

    /// After `ring` failed with `e`: true if trying again can succeed because `e` names a term
    /// that the keyring now knows, either since it was rotated here or since the term was
    /// learnt from the stored keyring (written by another replica). Anything else, including
    /// a stored keyring that does not open, is false: the caller reports its error.
    pub fn learn_after(&self, ring: &Keyring, e: &StoreError) -> bool {
        reads::complete(async { Ok(self.learn(ring, e, Wait::Blocking).await) }).unwrap_or(false)
    }

    /// [`SharedKeyring::learn_after`], reading the stored keyring as `wait` says.
    pub(crate) async fn learn(&self, ring: &Keyring, e: &StoreError, wait: Wait) -> bool {
        let StoreError::Corrupt(crate::error::CryptoError::UnknownTerm(term)) = e else {
            return false;
        };
        let current = self.current();
        if !std::ptr::eq(ring, Arc::as_ptr(&current)) {
            return true;
        }
        let Some(source) = &self.source else {
            return false;
        };
        let Ok(Some(wrapped)) = Reads::new(&*source.backend, wait).get(keys::KEYRING).await else {
            return false;
        };
        let kek = source.kek.read().unwrap_or_else(|p| p.into_inner());
        match Keyring::unwrap_as_stored(&kek, &wrapped) {
            Ok(stored) => {
                current.absorb(&stored);
                current.contains_term(*term)
            }
            Err(_) => false,
        }
    }
}

/// Opens a sealed record, mapping every failure to [`StoreError::Corrupt`].
fn open_record(
    keyring: &Keyring,
    kind: RecordKind,
    path: &str,
    version: u64,
    record: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, StoreError> {
    keyring.open(&crate::crypto::Aad::new(kind, path, version), record).map_err(StoreError::Corrupt)
}

/// Seals a record for `kind`, `path`, `version`.
fn seal_record(
    keyring: &Keyring,
    kind: RecordKind,
    path: &str,
    version: u64,
    plaintext: &[u8],
) -> Result<Vec<u8>, StoreError> {
    keyring.seal(&crate::crypto::Aad::new(kind, path, version), plaintext).map_err(StoreError::Seal)
}
