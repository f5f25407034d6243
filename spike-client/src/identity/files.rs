//! spiffe-helper style SVID files, polled for changes.
//!
//! Polling the modification time and length is enough: helpers rewrite the files at most a few
//! times per SVID lifetime, and polling works on every filesystem (inotify does not on NFS).
//! A half-written set (new chain, old key) fails the key check and is retried on the next
//! tick, so readers never see a mismatched pair.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use super::{BUNDLE_FILE, Identity, SVID_FILE, SVID_KEY_FILE, load_svid_dir, read, replace};
use crate::error::{Error, Result};

type Stamp = [Option<(SystemTime, u64)>; 3];

pub(super) struct Watched {
    dir: PathBuf,
    current: Arc<RwLock<Arc<Identity>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watched {
    pub(super) fn start(dir: PathBuf, interval: Duration) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let stamp = stamp(&dir);
        let current = Arc::new(RwLock::new(Arc::new(load_svid_dir(&dir)?)));
        let task = runtime.spawn(poll(dir.clone(), interval, stamp, Arc::downgrade(&current)));
        Ok(Self { dir, current, task })
    }

    pub(super) fn current(&self) -> Arc<Identity> {
        read(&self.current)
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn stamp(dir: &Path) -> Stamp {
    [SVID_FILE, SVID_KEY_FILE, BUNDLE_FILE].map(|name| {
        let meta = std::fs::metadata(dir.join(name)).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    })
}

async fn poll(
    dir: PathBuf,
    interval: Duration,
    mut seen: Stamp,
    target: Weak<RwLock<Arc<Identity>>>,
) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    // Ends when the source is dropped (the Weak no longer upgrades) or the task is aborted.
    loop {
        ticker.tick().await;
        let Some(target) = target.upgrade() else { return };
        let now = stamp(&dir);
        if now == seen {
            continue;
        }
        match load_svid_dir(&dir) {
            Ok(identity) => {
                tracing::info!(dir = %dir.display(), spiffe_id = %identity.spiffe_id(),
                    "reloaded X509-SVID files");
                replace(&target, Arc::new(identity));
                seen = now;
            }
            // Likely mid-rewrite; keep the previous identity and look again next tick.
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "SVID files not usable yet")
            }
        }
    }
}
