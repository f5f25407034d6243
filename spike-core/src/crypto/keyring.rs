//! The keyring: data-encryption keys numbered by term, wrapped under the root key.
//!
//! New records are sealed under the newest term; a record names its term in its header, so
//! reads use whichever term wrote it. [`Keyring::rotate`] adds a term while the keyring is in
//! use (it takes `&self`), so rotation needs no downtime.
//!
//! Nonces are random 96-bit values, so each term is limited to [`TERM_ENCRYPTION_LIMIT`]
//! seals, far below the 2^32 where random-nonce collisions stop being negligible (NIST
//! SP 800-38D §8.3); [`Keyring::needs_rotation`] turns true at half that, so callers rotate
//! early. Counts are not persisted: [`Keyring::unwrap`] always starts a fresh term, so the
//! count for the term in use is exact for this process and earlier terms are read-only.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use zeroize::{Zeroize, Zeroizing};

use super::aead::{self, Aad, RecordKind};
use super::derive_key;
use crate::error::CryptoError;
use crate::secret::{DataKey, KEY_LEN, RootKey};

/// Hard limit of seals per term; [`Keyring::seal`] refuses beyond it.
pub const TERM_ENCRYPTION_LIMIT: u64 = 1 << 31;
/// Soft limit: [`Keyring::needs_rotation`] reports true from here on.
pub const TERM_ROTATION_THRESHOLD: u64 = 1 << 30;

pub(crate) const WRAP_PURPOSE: &str = "keyring-wrap";
pub(crate) const WRAP_NAME: &str = "spike/system/keyring";

struct Term {
    key: DataKey,
    seals: AtomicU64,
}

struct Terms {
    by_term: BTreeMap<u32, Term>,
    current: u32,
}

/// Data-encryption keys by term. Share it behind an `Arc`; every method takes `&self`.
pub struct Keyring {
    inner: RwLock<Terms>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let terms = self.read();
        f.debug_struct("Keyring")
            .field("current_term", &terms.current)
            .field("terms", &terms.by_term.len())
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// A keyring with one fresh data key, term 1.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut by_term = BTreeMap::new();
        by_term.insert(1, Term { key: DataKey::generate()?, seals: AtomicU64::new(0) });
        Ok(Self { inner: RwLock::new(Terms { by_term, current: 1 }) })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Terms> {
        // A poisoned lock means a panic while holding it; the map itself is still consistent
        // because every mutation is a single insert plus an integer store.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The term new records are sealed under.
    pub fn current_term(&self) -> u32 {
        self.read().current
    }

    /// Every term this keyring can open, oldest first.
    pub fn terms(&self) -> Vec<u32> {
        self.read().by_term.keys().copied().collect()
    }

    /// Seals under the current term.
    pub fn seal(&self, aad: &Aad<'_>, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let terms = self.read();
        let current = terms.current;
        let term = terms.by_term.get(&current).ok_or(CryptoError::UnknownTerm(current))?;
        if term.seals.fetch_add(1, Ordering::Relaxed) >= TERM_ENCRYPTION_LIMIT {
            return Err(CryptoError::TermExhausted { term: current });
        }
        aead::seal(&term.key, current, aad, plaintext)
    }

    /// Opens a record under the term named in its header.
    pub fn open(&self, aad: &Aad<'_>, record: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let term_no = aead::record_term(record)?;
        let terms = self.read();
        let term = terms.by_term.get(&term_no).ok_or(CryptoError::UnknownTerm(term_no))?;
        aead::open(&term.key, aad, record)
    }

    /// Adds a fresh data key as the new current term and returns its number: one above the
    /// highest term known, so a term learnt from another replica (see [`Keyring::absorb`]) is
    /// never reused. Records sealed under older terms stay readable.
    pub fn rotate(&self) -> Result<u32, CryptoError> {
        let key = DataKey::generate()?;
        let mut terms = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let highest = terms.by_term.keys().next_back().copied().unwrap_or(terms.current);
        let next = highest
            .checked_add(1)
            .ok_or(CryptoError::Malformed("keyring term counter exhausted"))?;
        terms.by_term.insert(next, Term { key, seals: AtomicU64::new(0) });
        terms.current = next;
        Ok(next)
    }

    /// True if this keyring can open records sealed under `term`.
    pub fn contains_term(&self, term: u32) -> bool {
        self.read().by_term.contains_key(&term)
    }

    /// Learns, for reading only, every term of `other` this keyring lacks (terms that other
    /// Nexus replicas sharing the store added and persisted); returns how many were added. The
    /// current term, used for sealing, does not change.
    pub fn absorb(&self, other: &Keyring) -> usize {
        let theirs = other.read();
        let mut ours = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let mut added = 0;
        for (no, term) in &theirs.by_term {
            if !ours.by_term.contains_key(no) {
                let mut bytes = *term.key.expose_secret();
                let key = DataKey::from_bytes(&mut bytes);
                ours.by_term.insert(*no, Term { key, seals: AtomicU64::new(0) });
                added += 1;
            }
        }
        added
    }

    /// True once the current term has sealed [`TERM_ROTATION_THRESHOLD`] records.
    pub fn needs_rotation(&self) -> bool {
        let terms = self.read();
        terms
            .by_term
            .get(&terms.current)
            .is_some_and(|t| t.seals.load(Ordering::Relaxed) >= TERM_ROTATION_THRESHOLD)
    }

    /// Seals every term's key under a key derived from `root`, for storage.
    pub fn wrap(&self, root: &RootKey) -> Result<Vec<u8>, CryptoError> {
        let terms = self.read();
        let mut plain = Zeroizing::new(Vec::with_capacity(8 + terms.by_term.len() * 36));
        plain.extend_from_slice(&terms.current.to_be_bytes());
        plain.extend_from_slice(&(terms.by_term.len() as u32).to_be_bytes());
        for (no, term) in &terms.by_term {
            plain.extend_from_slice(&no.to_be_bytes());
            plain.extend_from_slice(term.key.expose_secret());
        }
        aead::seal(&wrapping_key(root), 0, &Aad::new(RecordKind::Keyring, WRAP_NAME, 0), &plain)
    }

    /// Opens a keyring written by [`Keyring::wrap`] and starts a fresh term for new writes
    /// (see the module docs for why). Fails with [`CryptoError::Integrity`] under the wrong
    /// root key or if the stored bytes were altered.
    pub fn unwrap(root: &RootKey, wrapped: &[u8]) -> Result<Self, CryptoError> {
        let ring = Self::unwrap_as_stored(&wrapping_key(root), wrapped)?;
        ring.rotate()?;
        Ok(ring)
    }

    /// Opens a keyring written by [`Keyring::wrap`] exactly as stored, without a fresh term:
    /// for learning other replicas' terms, never for sealing (see [`Keyring::absorb`]).
    /// `kek` comes from [`wrapping_key`].
    pub fn unwrap_as_stored(kek: &DataKey, wrapped: &[u8]) -> Result<Self, CryptoError> {
        let plain = aead::open(kek, &Aad::new(RecordKind::Keyring, WRAP_NAME, 0), wrapped)?;
        let bad = CryptoError::Malformed("wrapped keyring has an invalid layout");
        let read_u32 = |at: usize| -> Result<u32, CryptoError> {
            let bytes = plain.get(at..at + 4).ok_or(bad.clone())?;
            Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        };
        let current = read_u32(0)?;
        let count = read_u32(4)? as usize;
        if plain.len() != 8 + count * (4 + KEY_LEN) {
            return Err(bad);
        }
        let mut by_term = BTreeMap::new();
        for i in 0..count {
            let at = 8 + i * (4 + KEY_LEN);
            let no = read_u32(at)?;
            let mut key = [0u8; KEY_LEN];
            key.copy_from_slice(&plain[at + 4..at + 4 + KEY_LEN]);
            let key = DataKey::from_bytes(&mut key);
            by_term.insert(no, Term { key, seals: AtomicU64::new(0) });
        }
        if !by_term.contains_key(&current) {
            return Err(bad);
        }
        Ok(Self { inner: RwLock::new(Terms { by_term, current }) })
    }
}

/// The key that wraps a keyring for storage, derived from the root key for that purpose only.
pub fn wrapping_key(root: &RootKey) -> DataKey {
    derive_key(root, WRAP_PURPOSE)
}

impl Drop for Terms {
    fn drop(&mut self) {
        // DataKey zeroizes itself; clearing the term numbers is just tidiness.
        self.current.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(b: u8) -> RootKey {
        RootKey::from_bytes(&mut [b; KEY_LEN])
    }

    #[test]
    fn rotation_keeps_old_records_readable_and_seals_new_ones_under_the_new_term() {
        let ring = Keyring::generate().unwrap();
        let aad = Aad::new(RecordKind::SecretVersion, "a/b", 1);
        let old = ring.seal(&aad, b"old").unwrap();
        assert_eq!(aead::record_term(&old).unwrap(), 1);
        assert_eq!(ring.rotate().unwrap(), 2);
        let new = ring.seal(&aad, b"new").unwrap();
        assert_eq!(aead::record_term(&new).unwrap(), 2);
        assert_eq!(&ring.open(&aad, &old).unwrap()[..], b"old");
        assert_eq!(&ring.open(&aad, &new).unwrap()[..], b"new");
    }

    #[test]
    fn wrap_unwrap_round_trips_and_starts_a_fresh_term() {
        let ring = Keyring::generate().unwrap();
        ring.rotate().unwrap();
        let aad = Aad::new(RecordKind::Policy, "p", 0);
        let rec = ring.seal(&aad, b"policy").unwrap();
        let wrapped = ring.wrap(&root(1)).unwrap();
        let back = Keyring::unwrap(&root(1), &wrapped).unwrap();
        assert_eq!(back.terms(), vec![1, 2, 3]);
        assert_eq!(back.current_term(), 3);
        assert_eq!(&back.open(&aad, &rec).unwrap()[..], b"policy");
    }

    #[test]
    fn wrong_root_key_or_tampering_is_an_integrity_error() {
        let ring = Keyring::generate().unwrap();
        let mut wrapped = ring.wrap(&root(1)).unwrap();
        assert_eq!(Keyring::unwrap(&root(2), &wrapped).unwrap_err(), CryptoError::Integrity);
        let last = wrapped.len() - 1;
        wrapped[last] ^= 1;
        assert_eq!(Keyring::unwrap(&root(1), &wrapped).unwrap_err(), CryptoError::Integrity);
    }

    #[test]
    fn unknown_term_is_named() {
        let ring = Keyring::generate().unwrap();
        let other = Keyring::generate().unwrap();
        other.rotate().unwrap();
        let aad = Aad::new(RecordKind::Policy, "p", 0);
        let rec = other.seal(&aad, b"x").unwrap();
        assert_eq!(ring.open(&aad, &rec).unwrap_err(), CryptoError::UnknownTerm(2));
    }

    #[test]
    fn debug_shows_terms_not_keys() {
        let ring = Keyring::generate().unwrap();
        let s = format!("{ring:?}");
        assert!(s.contains("current_term: 1"), "{s}");
    }

    #[test]
    fn absorbing_another_replicas_terms_keeps_the_sealing_term_and_never_reuses_a_number() {
        let ours = Keyring::generate().unwrap();
        let wrapped = ours.wrap(&root(1)).unwrap();
        // Another replica opened the same stored keyring and started its own term (2).
        let theirs = Keyring::unwrap(&root(1), &wrapped).unwrap();
        let aad = Aad::new(RecordKind::Policy, "p", 0);
        let rec = theirs.seal(&aad, b"x").unwrap();
        assert_eq!(ours.open(&aad, &rec).unwrap_err(), CryptoError::UnknownTerm(2));
        let stored =
            Keyring::unwrap_as_stored(&wrapping_key(&root(1)), &theirs.wrap(&root(1)).unwrap())
                .unwrap();
        assert_eq!(stored.current_term(), 2, "no fresh term when only reading");
        assert_eq!(ours.absorb(&stored), 1);
        assert_eq!(ours.absorb(&stored), 0);
        assert_eq!(&ours.open(&aad, &rec).unwrap()[..], b"x");
        assert_eq!(ours.current_term(), 1, "absorbing must not change the sealing term");
        assert_eq!(ours.rotate().unwrap(), 3, "rotation skips the absorbed term 2");
    }
}
