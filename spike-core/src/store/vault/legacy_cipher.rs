//! The legacy cipher key: SPIKE's root key, kept after `spike operator import-spike` so that
//! ciphertexts SPIKE's cipher service handed out still open here.
//!
//! SPIKE's cipher service sealed with AES-256-GCM under its root key itself (see
//! [`crate::crypto::spike_legacy`]). The key is stored at `sys/cipher-legacy`, sealed under the
//! keyring like any record (so under this store's root key, never in the clear, and carried
//! through keyring and root-key rotations). It is only ever used to *open*: new encryptions
//! use this store's own cipher key. Each call reads the record, so a key imported or retired
//! through one Nexus replica is seen by every replica at once.

use subtle::ConstantTimeEq;

use super::Vault;
use crate::crypto::{Aad, RecordKind};
use crate::error::{CryptoError, StoreError};
use crate::secret::{DataKey, KEY_LEN};
use crate::store::backend::Commit;
use crate::store::{Imported, keys};

/// The name the legacy key is bound to when sealed (associated data).
const LEGACY_KEY_NAME: &str = "spike-legacy-cipher-key";

fn aad() -> Aad<'static> {
    Aad::new(RecordKind::Cipher, LEGACY_KEY_NAME, 0)
}

impl Vault {
    /// The legacy cipher key (SPIKE's root key, sealed under the keyring at
    /// `sys/cipher-legacy`), if `import-spike` stored one. Only ever used to open SPIKE-made
    /// ciphertexts.
    pub fn legacy_cipher_key(&self) -> Result<Option<DataKey>, StoreError> {
        let Some(raw) = self.backend.get(keys::LEGACY_CIPHER_KEY)? else {
            return Ok(None);
        };
        self.open_legacy(&raw).map(Some)
    }

    /// Stores `key` as the legacy cipher key. The same key again is [`Imported::Unchanged`];
    /// another key already there is [`Imported::Conflict`] unless `force`. With `check`,
    /// nothing is written.
    pub fn set_legacy_cipher_key(
        &self,
        key: &DataKey,
        force: bool,
        check: bool,
    ) -> Result<Imported, StoreError> {
        let existing = self.backend.get(keys::LEGACY_CIPHER_KEY)?;
        let outcome = match &existing {
            None => Imported::Created,
            Some(raw) => {
                let old = self.open_legacy(raw)?;
                if bool::from(old.expose_secret().ct_eq(key.expose_secret())) {
                    Imported::Unchanged
                } else if force {
                    Imported::Replaced
                } else {
                    Imported::Conflict
                }
            }
        };
        if check || matches!(outcome, Imported::Unchanged | Imported::Conflict) {
            return Ok(outcome);
        }
        let sealed =
            self.keyring.current().seal(&aad(), key.expose_secret()).map_err(StoreError::Seal)?;
        match self.backend.compare_and_swap(
            keys::LEGACY_CIPHER_KEY,
            existing.as_deref(),
            Some(&sealed),
        )? {
            Commit::Applied => Ok(outcome),
            Commit::Conflict => Err(StoreError::Contention { attempts: 1 }),
        }
    }

    /// Removes the legacy cipher key; true if there was one. SPIKE-made ciphertexts no longer
    /// open afterwards.
    pub fn retire_legacy_cipher_key(&self, check: bool) -> Result<bool, StoreError> {
        let Some(raw) = self.backend.get(keys::LEGACY_CIPHER_KEY)? else {
            return Ok(false);
        };
        if !check {
            // A conflict means another replica changed or removed it meanwhile: done either way.
            let _ = self.backend.compare_and_swap(keys::LEGACY_CIPHER_KEY, Some(&raw), None)?;
        }
        Ok(true)
    }

    fn open_legacy(&self, raw: &[u8]) -> Result<DataKey, StoreError> {
        let ring = self.keyring.current();
        let plain = match ring.open(&aad(), raw) {
            Err(e @ CryptoError::UnknownTerm(_)) => {
                let e = StoreError::Corrupt(e);
                if !self.keyring.learn_after(&ring, &e) {
                    return Err(e);
                }
                self.keyring.current().open(&aad(), raw).map_err(StoreError::Corrupt)?
            }
            other => other.map_err(StoreError::Corrupt)?,
        };
        let mut bytes: [u8; KEY_LEN] = plain.as_slice().try_into().map_err(|_| {
            StoreError::Corrupt(CryptoError::Malformed(
                "sys/cipher-legacy does not hold a 32-byte key",
            ))
        })?;
        Ok(DataKey::from_bytes(&mut bytes))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::secret::RootKey;
    use crate::store::{Backend, MemoryBackend};

    #[test]
    fn the_legacy_key_is_sealed_survives_rotations_and_retires() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let root = RootKey::generate().unwrap();
        let vault = Vault::open(backend.clone(), &root).unwrap();
        assert!(vault.legacy_cipher_key().unwrap().is_none());
        let key = DataKey::from_bytes(&mut [9u8; KEY_LEN]);
        assert_eq!(vault.set_legacy_cipher_key(&key, false, true).unwrap(), Imported::Created);
        assert!(vault.legacy_cipher_key().unwrap().is_none(), "a check writes nothing");
        assert_eq!(vault.set_legacy_cipher_key(&key, false, false).unwrap(), Imported::Created);
        let raw = backend.get(keys::LEGACY_CIPHER_KEY).unwrap().unwrap();
        assert!(!raw.windows(KEY_LEN).any(|w| w == [9u8; KEY_LEN]), "never in the clear");
        assert_eq!(vault.set_legacy_cipher_key(&key, false, false).unwrap(), Imported::Unchanged);
        let other = DataKey::from_bytes(&mut [5u8; KEY_LEN]);
        assert_eq!(vault.set_legacy_cipher_key(&other, false, false).unwrap(), Imported::Conflict);
        vault.rotate(&root).unwrap();
        let new_root = RootKey::generate().unwrap();
        vault.rotate_root(&root, &new_root, || Ok(())).unwrap();
        let reopened = Vault::open(backend.clone(), &new_root).unwrap();
        let got = reopened.legacy_cipher_key().unwrap().unwrap();
        assert_eq!(got.expose_secret(), &[9u8; KEY_LEN]);
        assert!(reopened.retire_legacy_cipher_key(false).unwrap());
        assert!(reopened.legacy_cipher_key().unwrap().is_none());
        assert!(!reopened.retire_legacy_cipher_key(false).unwrap());
    }
}
