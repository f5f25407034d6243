//! One copy of the read logic for the synchronous API and for async callers.
//!
//! The store's read paths that a server runs per request (a secret GET, and learning the
//! keyring terms another replica added when a record names one) are written once, as async
//! code reading through [`Reads`]. The synchronous API drives them on the caller's thread with
//! [`Wait::Blocking`]: every read is the backend's synchronous call, so the whole read is
//! ready the first time it is polled ([`complete`]). An async caller awaits them with
//! [`Wait::Async`]: every read is the backend's [`Backend::get_many_async`], which on
//! PostgreSQL yields while the database answers instead of holding a thread. Either way the
//! same records are read and the same checks run in the same order; only the way a read waits
//! differs. No runtime is involved: this crate stays free of I/O policy.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use super::backend::Backend;
use crate::error::StoreError;

/// How a read waits for the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The calling thread waits ([`Backend::get`], [`Backend::get_many`]).
    Blocking,
    /// The calling task yields ([`Backend::get_many_async`]).
    Async,
}

/// Reads from one backend, waiting as [`Wait`] says.
#[derive(Clone, Copy)]
pub(crate) struct Reads<'b> {
    backend: &'b dyn Backend,
    wait: Wait,
}

impl<'b> Reads<'b> {
    /// Reads from `backend`, waiting as `wait` says.
    pub(crate) fn new(backend: &'b dyn Backend, wait: Wait) -> Self {
        Self { backend, wait }
    }

    /// The value under `key` ([`Backend::get`]).
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.wait {
            Wait::Blocking => self.backend.get(key),
            Wait::Async => {
                let [value] = self.many::<1>(&[key]).await?;
                Ok(value)
            }
        }
    }

    /// The values under `keys`, in their order ([`Backend::get_many`]): exactly `N`, or an
    /// error naming the backend's bug.
    pub(crate) async fn many<const N: usize>(
        &self,
        keys: &[&str; N],
    ) -> Result<[Option<Vec<u8>>; N], StoreError> {
        let values = match self.wait {
            Wait::Blocking => self.backend.get_many(keys)?,
            Wait::Async => self.backend.get_many_async(keys).await?,
        };
        values.try_into().map_err(|got: Vec<_>| {
            StoreError::Backend(format!(
                "the {} backend answered {} values for {N} keys; this is a backend bug",
                self.backend.name(),
                got.len()
            ))
        })
    }
}

/// Runs a read written over [`Reads`] with [`Wait::Blocking`] on this thread. Every await in
/// it is then ready at once, so one poll completes it; a read still pending after that (a
/// future awaited in it that is not a blocking read) is reported as a bug, never waited for.
pub(crate) fn complete<T>(
    read: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match pin!(read).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => Err(StoreError::Backend(
            "a blocking store read did not complete when polled; this is a bug in spike-core"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryBackend;

    #[test]
    fn blocking_reads_complete_in_one_poll_and_a_pending_future_is_refused() {
        let b = MemoryBackend::new();
        b.put("a", b"1").unwrap();
        let reads = Reads::new(&b, Wait::Blocking);
        let got = complete(async { reads.many(&["a", "b"]).await }).unwrap();
        assert_eq!(got, [Some(b"1".to_vec()), None]);
        assert_eq!(complete(reads.get("a")).unwrap(), Some(b"1".to_vec()));
        let never = complete(std::future::pending::<Result<(), StoreError>>());
        assert!(matches!(never, Err(StoreError::Backend(m)) if m.contains("bug")));
    }
}
