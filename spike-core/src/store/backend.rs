//! The storage contract: a small, synchronous, ordered key-value interface that only ever sees
//! key names and ciphertext.
//!
//! Everything a [`Backend`] holds was sealed by the [keyring](crate::crypto::Keyring) before it
//! got there, and everything it returns is authenticated again on the way out, so a backend is
//! treated as hostile: it can lose, replay or corrupt data, and the layers above turn that into
//! [`StoreError::Corrupt`] or [`StoreError::NotFound`], never into a wrong plaintext.
//!
//! The one write primitive is [`Backend::commit`]: a [`Batch`] of puts and deletes applied
//! atomically, guarded by optional preconditions on the current bytes of some keys. That is
//! enough for compare-and-swap on a record (how the versioned store serialises writers per
//! path without in-process locks, so several Nexus replicas can share a PostgreSQL backend) and
//! for writing a secret version together with its metadata. The other write helpers are
//! provided in terms of it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::error::StoreError;

/// The answer of [`Backend::get_many_async`]: a boxed future, so [`Backend`] stays usable as
/// `dyn Backend`.
pub type ReadFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Option<Vec<u8>>>, StoreError>> + Send + 'a>>;

/// A ciphertext-only key-value store under the versioned secret model.
///
/// Implementations must be safe to share between threads and must be *durable* when
/// [`Backend::commit`] returns `Ok(Commit::Applied)`: the write survives a crash from then on.
/// Keys are UTF-8 names (see [`crate::store`] for the layout); values are opaque bytes.
pub trait Backend: Send + Sync + fmt::Debug {
    /// A short name for logs and metrics, e.g. `"memory"` or `"sled"`.
    fn name(&self) -> &'static str;

    /// The value stored under `key`, if any.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// The values stored under each of `keys`, in the order of `keys` (a key given twice is
    /// answered twice).
    ///
    /// The provided implementation calls [`Backend::get`] once per key, in order, so the
    /// results are *not* a snapshot across keys: a write may land between two of the reads.
    /// A backend that can read several keys in one round trip overrides it, and says in its
    /// docs whether its answer is one consistent snapshot (PostgreSQL's is: one statement).
    /// Callers must be correct either way; the versioned store reads the metadata record
    /// first, so without a snapshot it sees what two successive `get`s would have shown.
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|key| self.get(key)).collect()
    }

    /// [`Backend::get_many`] for a caller on an async runtime: the same answer (and the same
    /// snapshot promise), as a future.
    ///
    /// The provided implementation calls [`Backend::get_many`] when first polled, on the
    /// polling thread: right for a backend whose reads never wait on the network (memory, sled:
    /// a lookup in memory or the page cache). A backend whose reads do wait (PostgreSQL)
    /// overrides it with a read that yields while the database answers, so a server can read
    /// from its request task instead of handing every read to a blocking thread and back.
    fn get_many_async<'a>(&'a self, keys: &'a [&'a str]) -> ReadFuture<'a> {
        Box::pin(async move { self.get_many(keys) })
    }

    /// Every key starting with `prefix`, with its value, in ascending byte order of the keys.
    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Applies every write in `batch` atomically if every precondition in it holds, and
    /// returns [`Commit::Conflict`] without writing anything otherwise. Applied writes are
    /// durable when this returns.
    fn commit(&self, batch: &Batch) -> Result<Commit, StoreError>;

    /// Every key starting with `prefix`, in ascending order. Override it when a backend can
    /// list keys without reading values.
    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.scan_prefix(prefix)?.into_iter().map(|(k, _)| k).collect())
    }

    /// Stores `value` under `key`, replacing any previous value.
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        batch.put(key, value);
        self.commit(&batch)?.applied_or_else(key)
    }

    /// Removes `key`; removing a missing key is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        batch.delete(key);
        self.commit(&batch)?.applied_or_else(key)
    }

    /// Replaces the value of `key` with `new` (or removes it when `new` is `None`) only if its
    /// current value is exactly `expected` (`None`: the key must be absent).
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Commit, StoreError> {
        let mut batch = Batch::new();
        batch.expect(key, expected);
        match new {
            Some(value) => batch.put(key, value),
            None => batch.delete(key),
        };
        self.commit(&batch)
    }
}

/// What [`Backend::commit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a Conflict means nothing was written"]
pub enum Commit {
    /// Every precondition held and every write was applied (durably).
    Applied,
    /// A precondition failed; nothing was written. Re-read and try again.
    Conflict,
}

impl Commit {
    /// `Ok(())` for [`Commit::Applied`]; an error naming `key` for an unconditional batch that
    /// nevertheless reported a conflict (a backend bug).
    fn applied_or_else(self, key: &str) -> Result<(), StoreError> {
        match self {
            Commit::Applied => Ok(()),
            Commit::Conflict => Err(StoreError::Backend(format!(
                "backend reported a conflict for an unconditional write to {key:?}; \
                 this is a backend bug"
            ))),
        }
    }
}

/// One write in a [`Batch`].
#[derive(Clone, PartialEq, Eq)]
pub enum Write {
    /// Store the bytes under the key.
    Put(String, Vec<u8>),
    /// Remove the key.
    Delete(String),
}

impl Write {
    /// The key this write touches.
    pub fn key(&self) -> &str {
        match self {
            Write::Put(k, _) | Write::Delete(k) => k,
        }
    }
}

impl fmt::Debug for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values are ciphertext, but a log line has no use for them: show only their size.
        match self {
            Write::Put(k, v) => write!(f, "Put({k:?}, {} bytes)", v.len()),
            Write::Delete(k) => write!(f, "Delete({k:?})"),
        }
    }
}

/// A precondition in a [`Batch`]: `key` must currently hold exactly `value` (`None`: absent).
#[derive(Clone, PartialEq, Eq)]
pub struct Precondition {
    /// The key to check.
    pub key: String,
    /// The bytes it must hold, or `None` if it must not exist.
    pub value: Option<Vec<u8>>,
}

impl fmt::Debug for Precondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "Expect({:?} = {} bytes)", self.key, v.len()),
            None => write!(f, "Expect({:?} absent)", self.key),
        }
    }
}

/// An atomic group of writes, guarded by preconditions. Build it, then pass it to
/// [`Backend::commit`]. Writes apply in order, so a later write to the same key wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    preconditions: Vec<Precondition>,
    writes: Vec<Write>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `key` to hold exactly `value` (`None`: to be absent) when the batch commits.
    pub fn expect(&mut self, key: &str, value: Option<&[u8]>) -> &mut Self {
        self.preconditions
            .push(Precondition { key: key.to_owned(), value: value.map(<[u8]>::to_vec) });
        self
    }

    /// Stores `value` under `key`.
    pub fn put(&mut self, key: &str, value: &[u8]) -> &mut Self {
        self.writes.push(Write::Put(key.to_owned(), value.to_vec()));
        self
    }

    /// Stores `value` under `key`, taking ownership of the bytes.
    pub fn put_owned(&mut self, key: String, value: Vec<u8>) -> &mut Self {
        self.writes.push(Write::Put(key, value));
        self
    }

    /// Removes `key` (a no-op if it is absent).
    pub fn delete(&mut self, key: &str) -> &mut Self {
        self.writes.push(Write::Delete(key.to_owned()));
        self
    }

    /// The preconditions, in the order they were added.
    pub fn preconditions(&self) -> &[Precondition] {
        &self.preconditions
    }

    /// The writes, in the order they apply.
    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    /// True when the batch neither checks nor writes anything.
    pub fn is_empty(&self) -> bool {
        self.preconditions.is_empty() && self.writes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryBackend;

    #[test]
    fn get_many_answers_in_key_order_repeats_and_all() {
        let b = MemoryBackend::new();
        b.put("a", b"1").unwrap();
        b.put("b", b"2").unwrap();
        let got = b.get_many(&["b", "missing", "a", "b"]).unwrap();
        assert_eq!(got, [Some(b"2".to_vec()), None, Some(b"1".to_vec()), Some(b"2".to_vec())]);
        assert_eq!(b.get_many(&[]).unwrap(), Vec::<Option<Vec<u8>>>::new());
    }
}
