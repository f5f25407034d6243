//! Sealed policy records, stored as opaque bytes by id.
//!
//! The store does not interpret a policy: the caller serialises it (the policy model lives in
//! [`crate::policy`]) and gets the same bytes back, authenticated as "the policy with this id",
//! so a backend cannot swap two policies or plant one of its own.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::backend::{Backend, Batch, Commit};
use super::{SharedKeyring, keys, open_record, seal_record};
use crate::crypto::{Keyring, RecordKind};
use crate::error::{CryptoError, StoreError};
use crate::secret::fill_random;

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

    /// Stores `bytes` as the policy `id`, replacing any previous one, and replaces the
    /// [generation](PolicyStore::generation) in the same atomic write.
    pub fn put(&self, id: &str, bytes: &[u8]) -> Result<(), StoreError> {
        check_id(id)?;
        let ring = self.keyring.current();
        let sealed = seal_record(&ring, RecordKind::Policy, id, 0, bytes)?;
        let key = keys::policy(id);
        let mut batch = Batch::new();
        batch.put(&key, &sealed).put(keys::POLICY_GENERATION, &new_generation()?);
        applied(self.backend.commit(&batch)?, &key)
    }

    /// A token that changes whenever any policy is stored or deleted (by this process or by
    /// another replica sharing the backend); `None` before the first change. Compare it with
    /// an earlier value to know whether cached policies are stale.
    pub fn generation(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.backend.get(keys::POLICY_GENERATION)
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
            let mut batch = Batch::new();
            batch.delete(&key).put(keys::POLICY_GENERATION, &new_generation()?);
            applied(self.backend.commit(&batch)?, &key)?;
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

    /// Runs `f` with the current keyring, once more if `f` met a record sealed under a term
    /// the keyring has learnt since (a rotation, or another replica's term).
    fn with_current_keyring<T>(
        &self,
        f: impl Fn(&Keyring) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let ring = self.keyring.current();
        match f(&ring) {
            Err(e) if self.keyring.learn_after(&ring, &e) => f(&self.keyring.current()),
            other => other,
        }
    }
}

/// A fresh random policy generation token.
fn new_generation() -> Result<Vec<u8>, StoreError> {
    let mut token = vec![0u8; 16];
    fill_random(&mut token).map_err(StoreError::Seal)?;
    Ok(token)
}

/// An unconditional batch must apply; a conflict would be a backend bug.
fn applied(outcome: Commit, key: &str) -> Result<(), StoreError> {
    match outcome {
        Commit::Applied => Ok(()),
        Commit::Conflict => Err(StoreError::Backend(format!(
            "backend reported a conflict for an unconditional write to {key:?}; this is a \
             backend bug"
        ))),
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
