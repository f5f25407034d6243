//! Opening a store with the root key, and rotating its keyring online.
//!
//! [`Vault::open`] is the one way from "a backend and a root key" to usable secret and policy
//! stores:
//!
//! 1. **Empty store**: generate a [`Keyring`], and write the keyring wrapped under the root key
//!    (`sys/keyring`) together with the root key's key check value (`sys/kcv`,
//!    [`shamir::key_check_value`]) in one atomic batch that requires both to be absent, so two
//!    Nexus replicas initialising at once cannot both win.
//! 2. **Existing store**: compare the root key's key check value with `sys/kcv` in constant
//!    time and refuse a mismatch with [`CryptoError::WrongRootKey`], *before* anything is
//!    written; then unwrap the keyring, which starts a fresh term (see
//!    [`Keyring::unwrap`]), and persist the re-wrapped keyring before sealing anything.
//!
//! A store that holds secrets or policies but no keyring, or only one of the two system
//! records, is refused: initialising over it would silently orphan the existing data.
//!
//! [`Vault::rotate`] builds a new keyring (every old term plus a fresh one), persists it and
//! only then switches the stores to it; [`Vault::reencrypt`] then re-seals every record still
//! under an older term, so online rotation completes without downtime.

use std::sync::{Arc, Mutex};

use subtle::ConstantTimeEq;

use super::backend::{Backend, Batch, Commit};
use super::policies::PolicyStore;
use super::versioned::{SecretStore, SecretStoreConfig};
use super::{SharedKeyring, keys};
use crate::crypto::keyring::wrapping_key;
use crate::crypto::{Aad, Keyring, aead};
use crate::error::{CryptoError, Error, StoreError};
use crate::secret::RootKey;
use crate::shamir;

const KCV_FORMAT: u8 = 1;
const OPEN_ATTEMPTS: u32 = 8;

/// An unsealed store: a backend, its keyring, and the secret and policy stores over them.
pub struct Vault {
    backend: Arc<dyn Backend>,
    keyring: SharedKeyring,
    secrets: SecretStore,
    policies: PolicyStore,
    /// Serialises this process's rotations (replicas coordinate through compare-and-swap).
    rotating: Mutex<()>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("backend", &self.backend.name())
            .field("keyring", &self.keyring.current())
            .finish_non_exhaustive()
    }
}

/// What [`Vault::reencrypt`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReencryptReport {
    /// Records looked at.
    pub examined: u64,
    /// Records re-sealed under the current term.
    pub resealed: u64,
    /// Records that disappeared while the pass ran (deleted concurrently).
    pub vanished: u64,
    /// The term every remaining record is now sealed under.
    pub term: u32,
}

impl Vault {
    /// Opens the store in `backend` with `root` and the default settings (see the
    /// [module docs](self)). Fails with [`CryptoError::WrongRootKey`] for a root key other than
    /// the store's.
    pub fn open(backend: Arc<dyn Backend>, root: &RootKey) -> Result<Self, Error> {
        Self::open_with(backend, root, SecretStoreConfig::default())
    }

    /// Like [`Vault::open`], with settings for the secret store.
    pub fn open_with(
        backend: Arc<dyn Backend>,
        root: &RootKey,
        config: SecretStoreConfig,
    ) -> Result<Self, Error> {
        let (keyring, _) = open_keyring(backend.as_ref(), root)?;
        let keyring =
            SharedKeyring::with_source(Arc::new(keyring), backend.clone(), wrapping_key(root));
        Ok(Self {
            secrets: SecretStore::shared(backend.clone(), keyring.clone(), config),
            policies: PolicyStore::shared(backend.clone(), keyring.clone()),
            backend,
            keyring,
            rotating: Mutex::new(()),
        })
    }

    /// The versioned secrets.
    pub fn secrets(&self) -> &SecretStore {
        &self.secrets
    }

    /// The policies.
    pub fn policies(&self) -> &PolicyStore {
        &self.policies
    }

    /// The keyring in use now (it changes on [`Vault::rotate`]).
    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring.current()
    }

    /// The backend underneath.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Adds a fresh keyring term, persists the keyring wrapped under `root`, and only then
    /// seals new records under it. Returns the new term. Run [`Vault::reencrypt`] afterwards
    /// to move existing records to it.
    ///
    /// Coordinated between replicas sharing the backend: the new keyring is built from the
    /// keyring *as stored now* (every replica's terms) plus this process's terms and a fresh
    /// one numbered above all of them, and written with a compare-and-swap on the stored bytes;
    /// a concurrent change by another replica makes it start over, so no term is lost or
    /// reused. Fails with [`CryptoError::WrongRootKey`] if `root` is not the store's root key,
    /// and with [`StoreError::Contention`] if other replicas keep changing the keyring.
    pub fn rotate(&self, root: &RootKey) -> Result<u32, Error> {
        let _one_at_a_time = self.rotating.lock().unwrap_or_else(|p| p.into_inner());
        check_root_key(self.backend.as_ref(), root)?;
        let current = self.keyring.current();
        for _ in 0..OPEN_ATTEMPTS {
            let Some(stored) = self.backend.get(keys::KEYRING)? else {
                return Err(StoreError::Corrupt(CryptoError::Malformed(
                    "sys/keyring disappeared from an open store; restore it from a backup",
                ))
                .into());
            };
            let next = Keyring::unwrap_as_stored(&wrapping_key(root), &stored)
                .map_err(StoreError::Corrupt)?;
            next.absorb(&current);
            let term = next.rotate()?;
            let wrapped = next.wrap(root)?;
            match self.backend.compare_and_swap(keys::KEYRING, Some(&stored), Some(&wrapped))? {
                Commit::Applied => {
                    self.keyring.replace(Arc::new(next));
                    return Ok(term);
                }
                Commit::Conflict => continue,
            }
        }
        Err(StoreError::Contention { attempts: OPEN_ATTEMPTS }.into())
    }

    /// Re-seals every secret and policy record that is not under the current keyring term,
    /// each with a compare-and-swap so concurrent writes are never overwritten. Safe to run
    /// while the store is in use and to re-run after an interruption.
    pub fn reencrypt(&self) -> Result<ReencryptReport, Error> {
        let ring = self.keyring.current();
        let term = ring.current_term();
        let mut report = ReencryptReport { term, ..ReencryptReport::default() };
        for prefix in [keys::SECRETS, keys::POLICIES] {
            for key in self.backend.keys_with_prefix(prefix)? {
                report.examined += 1;
                match reseal(self.backend.as_ref(), &ring, &key)? {
                    Resealed::Yes => report.resealed += 1,
                    Resealed::AlreadyCurrent => {}
                    Resealed::Vanished => report.vanished += 1,
                }
            }
        }
        Ok(report)
    }
}

enum Resealed {
    Yes,
    AlreadyCurrent,
    Vanished,
}

fn reseal(backend: &dyn Backend, ring: &Keyring, key: &str) -> Result<Resealed, StoreError> {
    let Some((kind, path, version)) = keys::record_binding(key) else {
        return Err(StoreError::Corrupt(CryptoError::Malformed(
            "the backend holds a key outside the key layout; remove it or restore a backup",
        )));
    };
    let aad = Aad::new(kind, path, version);
    for _ in 0..OPEN_ATTEMPTS {
        let Some(record) = backend.get(key)? else {
            return Ok(Resealed::Vanished);
        };
        if aead::record_term(&record)? >= ring.current_term() {
            return Ok(Resealed::AlreadyCurrent);
        }
        let plain = ring.open(&aad, &record)?;
        let sealed = ring.seal(&aad, &plain).map_err(StoreError::Seal)?;
        match backend.compare_and_swap(key, Some(&record), Some(&sealed))? {
            Commit::Applied => return Ok(Resealed::Yes),
            // Rewritten meanwhile, most likely under the current term: look again.
            Commit::Conflict => continue,
        }
    }
    Err(StoreError::Contention { attempts: OPEN_ATTEMPTS })
}

/// Opens (or, on an empty store, creates) the keyring in `backend` with `root`, returning it
/// and the wrapped bytes now persisted. See the [module docs](self) for the steps.
pub fn open_keyring(backend: &dyn Backend, root: &RootKey) -> Result<(Keyring, Vec<u8>), Error> {
    for _ in 0..OPEN_ATTEMPTS {
        let kcv = backend.get(keys::KEY_CHECK)?;
        let wrapped = backend.get(keys::KEYRING)?;
        match (kcv, wrapped) {
            (None, None) => {
                for prefix in [keys::SECRETS, keys::POLICIES] {
                    if !backend.keys_with_prefix(prefix)?.is_empty() {
                        return Err(StoreError::Corrupt(CryptoError::Malformed(
                            "the store holds secrets or policies but no keyring; refusing to \
                             initialise over existing data: restore sys/keyring and sys/kcv \
                             from a backup",
                        ))
                        .into());
                    }
                }
                let keyring = Keyring::generate()?;
                let wrapped = keyring.wrap(root)?;
                let mut batch = Batch::new();
                batch
                    .expect(keys::KEY_CHECK, None)
                    .expect(keys::KEYRING, None)
                    .put(keys::KEY_CHECK, &encode_kcv(root))
                    .put(keys::KEYRING, &wrapped);
                match backend.commit(&batch)? {
                    Commit::Applied => return Ok((keyring, wrapped)),
                    // Another opener initialised the store first: verify against its records.
                    Commit::Conflict => continue,
                }
            }
            (Some(kcv), Some(wrapped)) => {
                verify_kcv(&kcv, root)?;
                let keyring = Keyring::unwrap(root, &wrapped).map_err(StoreError::Corrupt)?;
                let rewrapped = keyring.wrap(root)?;
                match backend.compare_and_swap(keys::KEYRING, Some(&wrapped), Some(&rewrapped))? {
                    Commit::Applied => return Ok((keyring, rewrapped)),
                    Commit::Conflict => continue,
                }
            }
            _ => {
                return Err(StoreError::Corrupt(CryptoError::Malformed(
                    "the store has only one of sys/keyring and sys/kcv; restore both from a \
                     backup",
                ))
                .into());
            }
        }
    }
    Err(StoreError::Contention { attempts: OPEN_ATTEMPTS }.into())
}

/// The key check value stored in `backend`, if it has been initialised: what
/// [`shamir::combine_verified`] needs to check a recombined root key before using it.
pub fn stored_key_check_value(backend: &dyn Backend) -> Result<Option<[u8; 32]>, StoreError> {
    backend.get(keys::KEY_CHECK)?.map(|raw| decode_kcv(&raw)).transpose()
}

fn encode_kcv(root: &RootKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(33);
    out.push(KCV_FORMAT);
    out.extend_from_slice(&shamir::key_check_value(root));
    out
}

fn decode_kcv(raw: &[u8]) -> Result<[u8; 32], StoreError> {
    match raw.split_first() {
        Some((&KCV_FORMAT, rest)) => rest.try_into().map_err(|_| bad_kcv()),
        _ => Err(bad_kcv()),
    }
}

fn bad_kcv() -> StoreError {
    StoreError::Corrupt(CryptoError::Malformed(
        "sys/kcv is not a key check value record; restore it from a backup",
    ))
}

fn verify_kcv(raw: &[u8], root: &RootKey) -> Result<(), Error> {
    let expected = decode_kcv(raw)?;
    if bool::from(shamir::key_check_value(root).ct_eq(&expected)) {
        Ok(())
    } else {
        Err(CryptoError::WrongRootKey.into())
    }
}

fn check_root_key(backend: &dyn Backend, root: &RootKey) -> Result<(), Error> {
    match backend.get(keys::KEY_CHECK)? {
        Some(raw) => verify_kcv(&raw, root),
        None => Err(StoreError::Corrupt(CryptoError::Malformed(
            "sys/kcv disappeared from an open store; restore it from a backup",
        ))
        .into()),
    }
}
