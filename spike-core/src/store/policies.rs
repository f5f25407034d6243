//! Sealed policy records, stored as opaque bytes by id.
//!
//! The store does not interpret a policy: the caller serialises it (the policy model lives in
//! [`crate::policy`]) and gets the same bytes back, authenticated as "the policy with this id",
//! so a backend cannot swap two policies or plant one of its own.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::backend::Backend;
use super::{SharedKeyring, keys, open_record, seal_record};
use crate::crypto::{Keyring, RecordKind};
use crate::error::{CryptoError, StoreError};

/// Longest accepted policy id, in bytes.
pub const MAX_POLICY_ID_LEN: usize = 256;

/// A stored policy: its id and its bytes (zeroized on drop).
pub type PolicyRecord = (String, Zeroizing<Vec<u8>>);

/// Policies as sealed, opaque byte strings keyed by id; cheap to clone and share.
#[derive(Debug, Clone)]
pub struct PolicyStore {
    backend: Arc<dyn Backend>,
    keyring: SharedKeyring,
}

impl PolicyStore {
    /// A policy store over `backend`, sealing with `keyring`.
    pub fn new(backend: Arc<dyn Backend>, keyring: Arc<Keyring>) -> Self {
        Self::shared(backend, SharedKeyring::new(keyring))
    }

    pub(crate) fn shared(backend: Arc<dyn Backend>, keyring: SharedKeyring) -> Self {
        Self { backend, keyring }
    }

    /// Stores `bytes` as the policy `id`, replacing any previous one.
    pub fn put(&self, id: &str, bytes: &[u8]) -> Result<(), StoreError> {
        check_id(id)?;
        let ring = self.keyring.current();
        let sealed = seal_record(&ring, RecordKind::Policy, id, 0, bytes)?;
        self.backend.put(&keys::policy(id), &sealed)
    }

    /// The policy `id`, if it exists.
    pub fn get(&self, id: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        check_id(id)?;
        let key = keys::policy(id);
        self.with_current_keyring(|ring| match self.backend.get(&key)? {
            Some(record) => open_record(ring, RecordKind::Policy, id, 0, &record).map(Some),
            None => Ok(None),
        })
    }

    /// Removes the policy `id`; returns whether it existed.
    pub fn delete(&self, id: &str) -> Result<bool, StoreError> {
        check_id(id)?;
        let key = keys::policy(id);
        let existed = self.backend.get(&key)?.is_some();
        if existed {
            self.backend.delete(&key)?;
        }
        Ok(existed)
    }

    /// Every policy as `(id, bytes)`, sorted by id. Fails if any record does not authenticate.
    pub fn list(&self) -> Result<Vec<PolicyRecord>, StoreError> {
        self.with_current_keyring(|ring| {
            let mut out = Vec::new();
            for (key, record) in self.backend.scan_prefix(keys::POLICIES)? {
                let Some((RecordKind::Policy, id, 0)) = keys::record_binding(&key) else {
                    return Err(StoreError::Corrupt(CryptoError::Malformed(
                        "the backend holds a policy key outside the key layout",
                    )));
                };
                let bytes = open_record(ring, RecordKind::Policy, id, 0, &record)?;
                out.push((id.to_owned(), bytes));
            }
            Ok(out)
        })
    }

    /// Runs `f` with the current keyring, once more if the keyring was rotated meanwhile and
    /// `f` met a record sealed under the new keyring's term.
    fn with_current_keyring<T>(
        &self,
        f: impl Fn(&Keyring) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let ring = self.keyring.current();
        match f(&ring) {
            Err(StoreError::Corrupt(CryptoError::UnknownTerm(_)))
                if !Arc::ptr_eq(&ring, &self.keyring.current()) =>
            {
                f(&self.keyring.current())
            }
            other => other,
        }
    }
}

fn check_id(id: &str) -> Result<(), StoreError> {
    if id.is_empty() || id.len() > MAX_POLICY_ID_LEN || id.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "a policy id must be 1 to {MAX_POLICY_ID_LEN} bytes without control characters"
        )));
    }
    Ok(())
}
