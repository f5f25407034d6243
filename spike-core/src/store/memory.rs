//! An in-memory [`Backend`]: for tests, `spike dev` and SPIKE's `memory` store.
//!
//! Nothing survives the process, which is the point: "durable on return" holds trivially for
//! the lifetime of the map. The map is behind one `RwLock`, so a commit (checks plus writes) is
//! atomic with respect to every other call.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::backend::{Backend, Batch, Commit, Write};
use crate::error::StoreError;

/// A [`Backend`] holding everything in a sorted map in memory.
#[derive(Default)]
pub struct MemoryBackend {
    map: RwLock<BTreeMap<String, Vec<u8>>>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend").field("keys", &self.read().len()).finish()
    }
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, Vec<u8>>> {
        // Poisoning means a panic while holding the lock; every mutation below is applied only
        // after all checks passed, through infallible map operations, so the map is consistent.
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read().get(key).cloned())
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let map = self.read();
        Ok(map
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let map = self.read();
        Ok(map
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }

    fn commit(&self, batch: &Batch) -> Result<Commit, StoreError> {
        let mut map = self.write();
        for check in batch.preconditions() {
            if map.get(&check.key).map(Vec::as_slice) != check.value.as_deref() {
                return Ok(Commit::Conflict);
            }
        }
        for write in batch.writes() {
            match write {
                Write::Put(k, v) => {
                    map.insert(k.clone(), v.clone());
                }
                Write::Delete(k) => {
                    map.remove(k);
                }
            }
        }
        Ok(Commit::Applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_prefix_is_ordered_and_bounded() {
        let b = MemoryBackend::new();
        for k in ["a/2", "a/1", "b/1", "a", "a0"] {
            b.put(k, k.as_bytes()).unwrap();
        }
        let keys: Vec<_> = b.scan_prefix("a/").unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a/1", "a/2"]);
        assert_eq!(b.keys_with_prefix("a").unwrap(), ["a", "a/1", "a/2", "a0"]);
    }

    #[test]
    fn failed_precondition_writes_nothing() {
        let b = MemoryBackend::new();
        b.put("k", b"1").unwrap();
        let mut batch = Batch::new();
        batch.expect("k", Some(b"2")).put("k", b"3").put("other", b"x");
        assert_eq!(b.commit(&batch).unwrap(), Commit::Conflict);
        assert_eq!(b.get("k").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(b.get("other").unwrap(), None);
        assert_eq!(b.compare_and_swap("k", Some(b"1"), None).unwrap(), Commit::Applied);
        assert_eq!(b.compare_and_swap("k", None, Some(b"n")).unwrap(), Commit::Applied);
        assert_eq!(b.compare_and_swap("k", None, Some(b"m")).unwrap(), Commit::Conflict);
    }
}
