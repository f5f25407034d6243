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
//!
//! [`Vault::rotate_root`] replaces the root key itself. The data keys stay; what changes is the
//! key that wraps them (and the cipher service's key, `sys/cipher-key`, which is stored wrapped
//! for exactly this reason). It runs in three phases so that a crash at any point leaves a
//! store that one of the two keys opens: (1) `sys/root-pending` records the new key's check
//! value with the keyring and cipher key wrapped under it; (2) the caller hands the new key's
//! shares out (to the Keepers); (3) one atomic batch makes the new key the store's and drops
//! the pending record. Opening with the key that matches a pending record finishes phase 3;
//! opening with the current key drops a pending record left over from an interrupted rotation.

use std::sync::{Arc, Mutex};

use subtle::ConstantTimeEq;

use super::backend::{Backend, Batch, Commit};
use super::policies::PolicyStore;
use super::versioned::{SecretStore, SecretStoreConfig};
use super::{SharedKeyring, keys};
use crate::crypto::keyring::wrapping_key;
use crate::crypto::service::CIPHER_PURPOSE;
use crate::crypto::{Aad, Keyring, RecordKind, aead, derive_key};
use crate::error::{CryptoError, Error, StoreError};
use crate::secret::{DataKey, KEY_LEN, RootKey};
use crate::shamir;

mod legacy_cipher;

const KCV_FORMAT: u8 = 1;
const PENDING_FORMAT: u8 = 1;
/// The name the cipher key is bound to when wrapped (associated data).
const CIPHER_KEY_NAME: &str = "cipher-key";
const OPEN_ATTEMPTS: u32 = 8;

/// An unsealed store: a backend, its keyring, and the secret and policy stores over them.
pub struct Vault {
    backend: Arc<dyn Backend>,
    keyring: SharedKeyring,
    secrets: SecretStore,
    policies: PolicyStore,
    /// The cipher service's key (stored wrapped, so it survives root-key rotations).
    cipher_key: DataKey,
    /// Serialises this process's rotations (replicas coordinate through compare-and-swap).
    rotating: Mutex<()>,
}

/// The outcome of [`Vault::rotate_root`] when the store itself did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootRotation {
    /// The new root key is the store's now.
    Rotated,
    /// Handing out the new key's shares failed (the reason); the old key stays the store's.
    Aborted(String),
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
        let cipher_key = open_cipher_key(backend.as_ref(), root)?;
        let keyring =
            SharedKeyring::with_source(Arc::new(keyring), backend.clone(), wrapping_key(root));
        Ok(Self {
            secrets: SecretStore::shared(backend.clone(), keyring.clone(), config),
            policies: PolicyStore::shared(backend.clone(), keyring.clone()),
            backend,
            keyring,
            cipher_key,
            rotating: Mutex::new(()),
        })
    }

    /// The cipher service's key (encryption as a service).
    pub fn cipher_key(&self) -> &DataKey {
        &self.cipher_key
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

    /// Makes `new` the store's root key in place of `old` (see the [module docs](self)):
    /// records the rotation, calls `distribute` to hand out `new`'s shares, and commits only if
    /// that succeeded. On `Err(reason)` from `distribute` the record is removed and
    /// [`RootRotation::Aborted`] returned; `distribute` should then have put the old shares
    /// back. Keyring rotations wait while this runs. For a store used by one process: replicas
    /// sharing the backend would still hold the old key.
    ///
    /// Fails with [`CryptoError::WrongRootKey`] if `old` is not the store's root key.
    pub fn rotate_root(
        &self,
        old: &RootKey,
        new: &RootKey,
        distribute: impl FnOnce() -> Result<(), String>,
    ) -> Result<RootRotation, Error> {
        let _one_at_a_time = self.rotating.lock().unwrap_or_else(|p| p.into_inner());
        check_root_key(self.backend.as_ref(), old)?;
        let Some(stored_keyring) = self.backend.get(keys::KEYRING)? else {
            return Err(StoreError::Corrupt(CryptoError::Malformed(
                "sys/keyring disappeared from an open store; restore it from a backup",
            ))
            .into());
        };
        let ring = Keyring::unwrap_as_stored(&wrapping_key(old), &stored_keyring)
            .map_err(StoreError::Corrupt)?;
        ring.absorb(&self.keyring.current());
        let new_keyring = ring.wrap(new)?;
        let new_cipher_key = wrap_cipher_key(new, &self.cipher_key)?;
        let pending = encode_pending(new, &new_keyring, &new_cipher_key);

        // Phase 1: record the rotation (and that the keyring is the one it wraps).
        let mut record = Batch::new();
        record.expect(keys::KEYRING, Some(&stored_keyring)).put(keys::ROOT_PENDING, &pending);
        if self.backend.commit(&record)? == Commit::Conflict {
            return Err(StoreError::Contention { attempts: 1 }.into());
        }

        // Phase 2: the caller hands out the new key's shares.
        if let Err(reason) = distribute() {
            let mut undo = Batch::new();
            undo.expect(keys::ROOT_PENDING, Some(&pending)).delete(keys::ROOT_PENDING);
            // Under `rotating` nothing else changes the record, so a conflict cannot happen.
            let _ = self.backend.commit(&undo)?;
            return Ok(RootRotation::Aborted(reason));
        }

        // Phase 3: one atomic switch to the new key.
        let mut switch = Batch::new();
        switch
            .expect(keys::ROOT_PENDING, Some(&pending))
            .expect(keys::KEYRING, Some(&stored_keyring))
            .put(keys::KEY_CHECK, &encode_kcv(new))
            .put(keys::KEYRING, &new_keyring)
            .put(keys::CIPHER_KEY, &new_cipher_key)
            .delete(keys::ROOT_PENDING);
        match self.backend.commit(&switch)? {
            Commit::Applied => {
                self.keyring.replace_kek(wrapping_key(new));
                Ok(RootRotation::Rotated)
            }
            Commit::Conflict => Err(StoreError::Contention { attempts: 1 }.into()),
        }
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
                match verify_kcv(&kcv, root) {
                    Ok(()) => drop_stale_pending(backend)?,
                    Err(e) => {
                        if finish_pending_rotation(backend, root, &kcv, &wrapped)? {
                            continue;
                        }
                        return Err(e);
                    }
                }
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

/// A rotation that did not finish, opened with its *new* key: completes phase 3 and returns
/// true (the caller then opens the store normally). False if there is no pending rotation or
/// `root` is not its key.
fn finish_pending_rotation(
    backend: &dyn Backend,
    root: &RootKey,
    kcv: &[u8],
    keyring: &[u8],
) -> Result<bool, Error> {
    let Some(raw) = backend.get(keys::ROOT_PENDING)? else {
        return Ok(false);
    };
    let pending = decode_pending(&raw)?;
    if !bool::from(shamir::key_check_value(root).ct_eq(&pending.kcv)) {
        return Ok(false);
    }
    let mut switch = Batch::new();
    switch
        .expect(keys::ROOT_PENDING, Some(&raw))
        .expect(keys::KEY_CHECK, Some(kcv))
        .expect(keys::KEYRING, Some(keyring))
        .put(keys::KEY_CHECK, &encode_kcv(root))
        .put(keys::KEYRING, &pending.keyring)
        .put(keys::CIPHER_KEY, &pending.cipher_key)
        .delete(keys::ROOT_PENDING);
    // On a conflict another opener finished it: the caller re-reads either way.
    let _ = backend.commit(&switch)?;
    Ok(true)
}

/// Opened with the current key: a pending rotation never finished (its shares may have reached
/// some Keepers, which are re-armed with the current key's shares), so its record goes.
fn drop_stale_pending(backend: &dyn Backend) -> Result<(), Error> {
    if let Some(raw) = backend.get(keys::ROOT_PENDING)? {
        // A conflict means someone else removed or replaced it: nothing left to do here.
        let _ = backend.compare_and_swap(keys::ROOT_PENDING, Some(&raw), None)?;
    }
    Ok(())
}

/// The cipher service's key: unwrapped from `sys/cipher-key`, or, for a store that has none
/// yet, the key earlier versions derived from the root key, which is then stored.
fn open_cipher_key(backend: &dyn Backend, root: &RootKey) -> Result<DataKey, Error> {
    for _ in 0..OPEN_ATTEMPTS {
        if let Some(wrapped) = backend.get(keys::CIPHER_KEY)? {
            return unwrap_cipher_key(root, &wrapped).map_err(|e| StoreError::Corrupt(e).into());
        }
        let key = derive_key(root, CIPHER_PURPOSE);
        let wrapped = wrap_cipher_key(root, &key)?;
        match backend.compare_and_swap(keys::CIPHER_KEY, None, Some(&wrapped))? {
            Commit::Applied => return Ok(key),
            Commit::Conflict => continue,
        }
    }
    Err(StoreError::Contention { attempts: OPEN_ATTEMPTS }.into())
}

fn cipher_key_aad() -> Aad<'static> {
    Aad::new(RecordKind::Cipher, CIPHER_KEY_NAME, 0)
}

fn wrap_cipher_key(root: &RootKey, key: &DataKey) -> Result<Vec<u8>, CryptoError> {
    aead::seal(&wrapping_key(root), 0, &cipher_key_aad(), key.expose_secret())
}

fn unwrap_cipher_key(root: &RootKey, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
    let plain = aead::open(&wrapping_key(root), &cipher_key_aad(), wrapped)?;
    let mut bytes: [u8; KEY_LEN] = plain
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::Malformed("sys/cipher-key does not hold a 32-byte key"))?;
    Ok(DataKey::from_bytes(&mut bytes))
}

/// `sys/root-pending`, decoded.
struct Pending {
    kcv: [u8; 32],
    keyring: Vec<u8>,
    cipher_key: Vec<u8>,
}

/// Format byte, the new key's check value, the keyring's length (u32, big-endian), the
/// keyring wrapped under the new key, then the cipher key wrapped under it.
fn encode_pending(new: &RootKey, keyring: &[u8], cipher_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(37 + keyring.len() + cipher_key.len());
    out.push(PENDING_FORMAT);
    out.extend_from_slice(&shamir::key_check_value(new));
    out.extend_from_slice(&(keyring.len() as u32).to_be_bytes());
    out.extend_from_slice(keyring);
    out.extend_from_slice(cipher_key);
    out
}

fn decode_pending(raw: &[u8]) -> Result<Pending, StoreError> {
    let bad = || {
        StoreError::Corrupt(CryptoError::Malformed(
            "sys/root-pending has an invalid layout; delete it to abandon that rotation",
        ))
    };
    let (&format, rest) = raw.split_first().ok_or_else(bad)?;
    if format != PENDING_FORMAT || rest.len() < 36 {
        return Err(bad());
    }
    let (kcv, rest) = rest.split_at(32);
    let (len, rest) = rest.split_at(4);
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if rest.len() < len {
        return Err(bad());
    }
    let (keyring, cipher_key) = rest.split_at(len);
    Ok(Pending {
        kcv: kcv.try_into().map_err(|_| bad())?,
        keyring: keyring.to_vec(),
        cipher_key: cipher_key.to_vec(),
    })
}

/// The key check value of the root key a rotation in progress would switch to, if one is
/// pending: a recombined key that matches it opens the store too (and finishes the rotation).
pub fn pending_key_check_value(backend: &dyn Backend) -> Result<Option<[u8; 32]>, StoreError> {
    backend.get(keys::ROOT_PENDING)?.map(|raw| decode_pending(&raw).map(|p| p.kcv)).transpose()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::service;
    use crate::path::SecretPath;
    use crate::secret::SecretValues;
    use crate::store::{MemoryBackend, PutOptions};

    fn root() -> RootKey {
        shamir::generate_root_key().unwrap()
    }

    fn values(v: &str) -> SecretValues {
        [("k", v)].into_iter().collect()
    }

    fn path() -> SecretPath {
        SecretPath::parse("app/db").unwrap()
    }

    /// A store with one secret and one cipher-service ciphertext, opened with `old`.
    fn populated(old: &RootKey) -> (Arc<dyn Backend>, Vec<u8>, Vec<u8>) {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let vault = Vault::open(backend.clone(), old).unwrap();
        vault.secrets().put(&path(), &values("s3cret"), &PutOptions::default()).unwrap();
        let (nonce, ct) = service::encrypt(vault.cipher_key(), b"payload").unwrap();
        (backend, nonce.to_vec(), ct)
    }

    fn assert_opens_with(backend: &Arc<dyn Backend>, key: &RootKey, nonce: &[u8], ct: &[u8]) {
        let vault = Vault::open(backend.clone(), key).unwrap();
        let got = vault.secrets().get(&path(), None).unwrap();
        assert_eq!(got.get("k"), Some("s3cret"));
        assert_eq!(&service::decrypt(vault.cipher_key(), nonce, ct).unwrap()[..], b"payload");
        assert!(backend.get(keys::ROOT_PENDING).unwrap().is_none());
    }

    fn assert_refused(backend: &Arc<dyn Backend>, key: &RootKey) {
        let err = Vault::open(backend.clone(), key).unwrap_err();
        assert!(matches!(err, Error::Crypto(CryptoError::WrongRootKey)), "{err}");
    }

    #[test]
    fn a_rotated_root_key_opens_everything_and_the_old_one_nothing() {
        let (old, new) = (root(), root());
        let (backend, nonce, ct) = populated(&old);
        let vault = Vault::open(backend.clone(), &old).unwrap();
        let mut handed_out = false;
        let outcome = vault
            .rotate_root(&old, &new, || {
                // The pending record is there while the shares go out.
                assert_eq!(
                    pending_key_check_value(backend.as_ref()).unwrap(),
                    Some(shamir::key_check_value(&new))
                );
                handed_out = true;
                Ok(())
            })
            .unwrap();
        assert_eq!(outcome, RootRotation::Rotated);
        assert!(handed_out);
        // The open vault keeps working, and rotates its keyring under the new key.
        assert_eq!(vault.secrets().get(&path(), None).unwrap().get("k"), Some("s3cret"));
        vault.rotate(&new).unwrap();
        assert_opens_with(&backend, &new, &nonce, &ct);
        assert_refused(&backend, &old);
    }

    #[test]
    fn a_failed_hand_out_leaves_the_old_key_in_place() {
        let (old, new) = (root(), root());
        let (backend, nonce, ct) = populated(&old);
        let vault = Vault::open(backend.clone(), &old).unwrap();
        let outcome = vault.rotate_root(&old, &new, || Err("Keeper 2 unreachable".into())).unwrap();
        assert_eq!(outcome, RootRotation::Aborted("Keeper 2 unreachable".into()));
        assert_opens_with(&backend, &old, &nonce, &ct);
        assert_refused(&backend, &new);
    }

    /// A store whose rotation from `old` to `new` crashed while the shares were handed out
    /// (the closure never returns), so `sys/root-pending` is left behind.
    fn crashed_mid_rotation(old: &RootKey, new: &RootKey) -> (Arc<dyn Backend>, Vec<u8>, Vec<u8>) {
        let (backend, nonce, ct) = populated(old);
        let vault = Vault::open(backend.clone(), old).unwrap();
        let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            vault.rotate_root(old, new, || panic!("power cut"))
        }));
        assert!(crashed.is_err());
        assert!(backend.get(keys::ROOT_PENDING).unwrap().is_some());
        (backend, nonce, ct)
    }

    #[test]
    fn a_rotation_interrupted_after_the_hand_out_is_finished_by_the_new_key() {
        let (old, new) = (root(), root());
        let (backend, nonce, ct) = crashed_mid_rotation(&old, &new);
        // The Keepers got the new shares: the new key opens and finishes phase 3.
        assert_opens_with(&backend, &new, &nonce, &ct);
        assert_refused(&backend, &old);
    }

    #[test]
    fn a_rotation_interrupted_before_the_hand_out_finished_keeps_the_old_key() {
        let (old, new) = (root(), root());
        let (backend, nonce, ct) = crashed_mid_rotation(&old, &new);
        // Enough Keepers still hold the old key's shares: it opens and drops the record.
        assert_opens_with(&backend, &old, &nonce, &ct);
        assert_refused(&backend, &new);
    }

    #[test]
    fn rotating_with_a_key_that_is_not_the_stores_changes_nothing() {
        let (old, new, stranger) = (root(), root(), root());
        let (backend, nonce, ct) = populated(&old);
        let vault = Vault::open(backend.clone(), &old).unwrap();
        let err = vault.rotate_root(&stranger, &new, || panic!("must not hand out")).unwrap_err();
        assert!(matches!(err, Error::Crypto(CryptoError::WrongRootKey)), "{err}");
        assert_opens_with(&backend, &old, &nonce, &ct);
    }

    #[test]
    fn a_store_without_a_cipher_key_record_keeps_the_derived_key() {
        let old = root();
        let (backend, nonce, ct) = populated(&old);
        // As a store written before the record existed.
        let stored = backend.get(keys::CIPHER_KEY).unwrap();
        let removed = backend.compare_and_swap(keys::CIPHER_KEY, stored.as_deref(), None).unwrap();
        assert_eq!(removed, Commit::Applied);
        let derived = derive_key(&old, CIPHER_PURPOSE);
        assert!(service::decrypt(&derived, &nonce, &ct).is_ok());
        assert_opens_with(&backend, &old, &nonce, &ct);
        assert!(backend.get(keys::CIPHER_KEY).unwrap().is_some());
    }
}
