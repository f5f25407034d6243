//! Automatic recovery: a Nexus restart needs no human, because the Keepers hold the root key's
//! shards and Nexus asks for them.
//!
//! Started by [`super::start`] when the backend is persistent and `SPIKE_NEXUS_KEEPER_PEERS`
//! names Keepers. Two phases, one background task:
//!
//! 1. **Acquire.** Ask every Keeper for its shard in parallel (each call bounded by
//!    `SPIKE_NEXUS_KEEPER_TIMEOUT`); Keeper n's shard is share n (positional IDs). As soon as
//!    `threshold` shards have arrived, recombine and check the result against the store's key
//!    check value (cheap HMAC) before unsealing; a Keeper holding a foreign or corrupted shard
//!    only costs trying another subset. A store without a key check value is a first start:
//!    the key the Keepers were dealt by Bootstrap initialises it. Until then Nexus stays "not
//!    ready" (503) and retries with jittered exponential backoff capped at
//!    `SPIKE_NEXUS_RECOVERY_MAX_INTERVAL`: never a crash loop, never a partial key. Operator
//!    restore stays available all along and ends this phase too.
//! 2. **Keep the Keepers armed.** One loop per Keeper re-sends its shard every
//!    `SPIKE_NEXUS_KEEPER_UPDATE_INTERVAL`. Between sends it probes the Keeper's `/readyz`
//!    (which says only whether a shard is held) every [`probe_interval`] — at most half the
//!    update interval, so a restarted Keeper is re-armed well within it; a Keeper that comes
//!    back empty, or that was unreachable, is re-armed right away. Shares come from
//!    `shamir::split` of the current root key — dealing is deterministic, so every re-send is
//!    the same shard, and a changed root key would be re-split and re-sent automatically.
//!
//! Progress is visible in `/readyz` ("waiting for Keepers: 1 of 2 shards ...") and in the log
//! (on every change, never per attempt). Nothing here logs shard or key bytes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use spike_client::identity::IdentitySource;
use spike_core::error::CryptoError;
use spike_core::secret::{KeeperShare, RootKey};
use spike_core::shamir;
use spike_core::store::{pending_key_check_value, stored_key_check_value};
use tokio::task::{JoinHandle, JoinSet};

use super::config::BackendKind;
use super::state::{NexusError, NexusState};
use crate::error::ConfigError;
use crate::keeper::{KeeperClient, KeeperProbe, keeper_matchers};

/// Header on `/readyz` answers saying whether the store already has a root key (`initialised`)
/// or not (`empty`): Bootstrap reads it to refuse dealing a second root key over live data.
pub const STORE_STATE_HEADER: &str = "x-spike-store";

/// First wait between two recovery attempts; doubles up to `SPIKE_NEXUS_RECOVERY_MAX_INTERVAL`.
pub const FIRST_RETRY: Duration = Duration::from_millis(100);

/// Longest wait between attempts while the store is empty (Bootstrap is about to deal).
pub const FRESH_STORE_MAX_RETRY: Duration = Duration::from_secs(1);

/// Longest time between two checks that an armed Keeper still holds its shard (see
/// [`probe_interval`]).
pub const KEEPER_PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// First wait before re-sending a shard to a Keeper that could not take it; doubles up to the
/// probe interval.
const SEND_RETRY: Duration = Duration::from_millis(200);

/// Most threshold-sized subsets tried when the shards received contain a bad one.
const MAX_COMBINATIONS: usize = 1024;

/// Where recovery stands, in words, for `/readyz` and the log.
#[derive(Debug, Default)]
pub struct RecoveryStatus {
    summary: Mutex<Option<String>>,
}

impl RecoveryStatus {
    /// What recovery is waiting for, or `None` if it is not running (memory backend, no
    /// Keepers configured).
    pub fn summary(&self) -> Option<String> {
        self.summary.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, summary: String) {
        *self.summary.lock().unwrap_or_else(|p| p.into_inner()) = Some(summary);
    }
}

/// Whether the store already holds a key check value, i.e. was initialised under a root key.
/// `None` if the store cannot be read. Reads a network store on a blocking thread.
pub async fn store_initialised(state: &Arc<NexusState>) -> Option<bool> {
    if state.is_ready() {
        return Some(true);
    }
    let read = |state: &NexusState| {
        stored_key_check_value(state.backend().as_ref()).ok().map(|kcv| kcv.is_some())
    };
    if state.reads_block() {
        let state = state.clone();
        tokio::task::spawn_blocking(move || read(&state)).await.ok().flatten()
    } else {
        read(state)
    }
}

/// Starts recovery (and then Keeper re-arming) in the background, if this Nexus has a
/// persistent backend and Keepers; `None` otherwise.
pub fn spawn(
    state: Arc<NexusState>,
    source: IdentitySource,
) -> Result<Option<JoinHandle<()>>, NexusError> {
    let cfg = state.config();
    if cfg.backend == BackendKind::Memory || cfg.keeper_peers.is_empty() {
        return Ok(None);
    }
    if cfg.keeper_peers.len() != cfg.shamir_shares
        || cfg.shamir_threshold == 0
        || cfg.shamir_threshold > cfg.shamir_shares
    {
        return Err(ConfigError::Conflict(format!(
            "SPIKE_NEXUS_KEEPER_PEERS lists {} Keepers for SPIKE_NEXUS_SHAMIR_SHARES={} and \
             SPIKE_NEXUS_SHAMIR_THRESHOLD={}: give one Keeper URL per share and a threshold \
             between 1 and the share count",
            cfg.keeper_peers.len(),
            cfg.shamir_shares,
            cfg.shamir_threshold
        ))
        .into());
    }
    let keepers = keeper_matchers(&cfg.trust_roots).map_err(|e| NexusError::Tls(e.to_string()))?;
    let client = KeeperClient::new(source, keepers, cfg.keeper_timeout)
        .map_err(|e| NexusError::Tls(e.to_string()))?;
    state.recovery.set(format!(
        "asking {} Keepers for shards of the root key ({} needed)",
        cfg.shamir_shares, cfg.shamir_threshold
    ));
    let _ = state.keepers.set(client.clone());
    let recovery = Arc::new(Recovery { state, client });
    Ok(Some(tokio::spawn(async move {
        recovery.acquire().await;
        if recovery.state.postgres().is_some() {
            let interval = recovery.state.config().rollback_checkpoint_interval;
            let guard =
                super::rollback::guard(recovery.state.clone(), recovery.client.clone(), interval);
            tokio::join!(recovery.clone().keep_armed(), guard);
        } else {
            recovery.keep_armed().await;
        }
    })))
}

struct Recovery {
    state: Arc<NexusState>,
    client: KeeperClient,
}

/// The outcome of asking every Keeper once.
enum Round {
    Unsealed { keepers: Vec<u8>, fresh_store: bool },
    Short { received: usize, notes: Vec<String>, mismatch: bool },
}

/// The outcome of trying to unseal with the shards received so far.
enum Attempt {
    Unsealed { fresh_store: bool },
    Mismatch,
    Failed(String),
}

impl Recovery {
    fn peers(&self) -> &[String] {
        &self.state.config().keeper_peers
    }

    fn threshold(&self) -> usize {
        self.state.config().shamir_threshold
    }

    /// Phase 1: until the root key is present (from the Keepers or from operator restore).
    async fn acquire(&self) {
        let started = Instant::now();
        let max = self.state.config().recovery_max_interval.max(FIRST_RETRY);
        let mut delay = FIRST_RETRY;
        let mut last_summary = String::new();
        loop {
            if self.state.unsealed().is_some() {
                self.state.recovery.set("ready (root key restored by an operator)".into());
                tracing::info!("root key present (operator restore); recovery from Keepers ends");
                return;
            }
            match self.round().await {
                Round::Unsealed { keepers, fresh_store } => {
                    let elapsed_ms = started.elapsed().as_millis() as u64;
                    if fresh_store {
                        tracing::info!(
                            ?keepers,
                            elapsed_ms,
                            "store was empty: initialised it with the root key Bootstrap dealt \
                             to the Keepers"
                        );
                    } else {
                        tracing::info!(?keepers, elapsed_ms, "root key recovered from Keepers");
                    }
                    self.state.recovery.set("ready (root key recovered from Keepers)".into());
                    return;
                }
                Round::Short { received, notes, mismatch } => {
                    let store = store_initialised(&self.state).await;
                    let summary = self.describe(received, &notes, mismatch, delay, store);
                    self.state.recovery.set(summary.clone());
                    // Log on change, not per attempt: a long outage must not flood the log.
                    let gist = format!("{received}{mismatch}{notes:?}");
                    if gist != last_summary {
                        tracing::warn!("not ready: {summary}");
                        last_summary = gist;
                    }
                }
            }
            wait_until_ready(&self.state, jitter(delay)).await;
            // An empty store is waiting for Bootstrap, which waits for us: keep that quick.
            let cap = match store_initialised(&self.state).await {
                Some(false) => max.min(FRESH_STORE_MAX_RETRY),
                _ => max,
            };
            delay = (delay * 2).min(cap);
        }
    }

    fn describe(
        &self,
        received: usize,
        notes: &[String],
        mismatch: bool,
        retry: Duration,
        store: Option<bool>,
    ) -> String {
        let cfg = self.state.config();
        let mut text = if mismatch {
            format!(
                "the {received} shards the Keepers returned do not recombine to this store's \
                 root key (a Keeper holds a shard from another deployment or another dealing)"
            )
        } else {
            format!(
                "waiting for Keepers: {received} of {} needed shards received ({} Keepers \
                 configured)",
                cfg.shamir_threshold, cfg.shamir_shares
            )
        };
        if !notes.is_empty() {
            text.push_str("; ");
            text.push_str(&notes.join("; "));
        }
        text.push_str(&format!("; retrying within {} ms", retry.as_millis()));
        match store {
            Some(false) => text.push_str(
                ". The store is empty: run spike-bootstrap to deal a root key to the Keepers",
            ),
            _ => text.push_str(
                ". If the Keepers lost their shards, restore the root key with `spike operator \
                 restore` and the shards from `spike operator recover`",
            ),
        }
        text
    }

    /// Asks every Keeper once, in parallel, and unseals as soon as enough shards agree.
    async fn round(&self) -> Round {
        let threshold = self.threshold();
        let mut pending: FuturesUnordered<_> = self
            .peers()
            .iter()
            .enumerate()
            .map(|(position, url)| {
                // The config check bounds the peers to the share count (at most 255).
                let index = u8::try_from(position + 1).unwrap_or(u8::MAX);
                let client = self.client.clone();
                async move { (index, client.shard(url, index).await) }
            })
            .collect();
        let mut shares: Vec<KeeperShare> = Vec::new();
        let mut notes = Vec::new();
        let mut mismatch = false;
        while let Some((index, result)) = pending.next().await {
            match result {
                Ok(Some(share)) => {
                    shares.push(share);
                    if shares.len() < threshold {
                        continue;
                    }
                    match self.try_unseal(&shares).await {
                        Attempt::Unsealed { fresh_store } => {
                            let keepers = shares.iter().map(KeeperShare::index).collect();
                            return Round::Unsealed { keepers, fresh_store };
                        }
                        Attempt::Mismatch => mismatch = true,
                        Attempt::Failed(reason) => notes.push(reason),
                    }
                }
                Ok(None) => notes.push(format!("Keeper {index} holds no shard")),
                Err(e) => notes.push(format!("Keeper {index}: {}", short_reason(&e))),
            }
        }
        notes.sort();
        Round::Short { received: shares.len(), notes, mismatch }
    }

    /// Tries threshold-sized subsets of `shares` (bounded) against the store's key check
    /// value, and unseals with the first that matches. Runs on a blocking thread: the store
    /// may touch the disk.
    async fn try_unseal(&self, shares: &[KeeperShare]) -> Attempt {
        let state = self.state.clone();
        let threshold = self.threshold();
        let shares: Vec<KeeperShare> = shares.iter().map(KeeperShare::duplicate).collect();
        let joined = tokio::task::spawn_blocking(move || {
            let kcv = match stored_key_check_value(state.backend().as_ref()) {
                Ok(kcv) => kcv,
                Err(e) => return Attempt::Failed(format!("cannot read the store: {e}")),
            };
            let fresh_store = kcv.is_none();
            // Keepers holding a rotated root key's shards whose rotation did not finish.
            let pending = pending_key_check_value(state.backend().as_ref()).ok().flatten();
            let mut last_error = None;
            let unsealed = for_each_subset(shares.len(), threshold, |subset| {
                let picked: Vec<KeeperShare> =
                    subset.iter().map(|&i| shares[i].duplicate()).collect();
                let Ok(root) = shamir::combine(&picked, threshold) else {
                    return false;
                };
                // Check the cheap HMAC first: a wrong subset never touches the store.
                if let Some(kcv) = &kcv
                    && shamir::verify_key_check_value(&root, kcv).is_err()
                    && pending.is_none_or(|p| shamir::verify_key_check_value(&root, &p).is_err())
                {
                    return false;
                }
                match unseal(&state, root) {
                    Ok(()) => true,
                    Err(e) => {
                        last_error = Some(e);
                        false
                    }
                }
            });
            match (unsealed, last_error) {
                (true, _) => Attempt::Unsealed { fresh_store },
                (false, Some(reason)) => Attempt::Failed(reason),
                (false, None) => Attempt::Mismatch,
            }
        })
        .await;
        joined.unwrap_or_else(|e| Attempt::Failed(format!("unsealing panicked: {e}")))
    }

    /// Phase 2: keeps every Keeper armed with its shard, forever (until aborted).
    async fn keep_armed(self: Arc<Self>) {
        let interval = self.state.config().keeper_update_interval;
        tracing::info!(
            keepers = self.peers().len(),
            resend_every_ms = interval.as_millis() as u64,
            probe_every_ms = probe_interval(interval).as_millis() as u64,
            "keeping the Keepers armed with their shards"
        );
        let mut loops = JoinSet::new();
        for (position, url) in self.peers().iter().enumerate() {
            let index = u8::try_from(position + 1).unwrap_or(u8::MAX);
            loops.spawn(self.clone().arm_keeper(index, url.clone()));
        }
        while loops.join_next().await.is_some() {}
    }

    async fn arm_keeper(self: Arc<Self>, index: u8, url: String) {
        let interval = self.state.config().keeper_update_interval;
        let probe_every = probe_interval(interval);
        let mut next_send = Instant::now();
        let mut retry = SEND_RETRY;
        let mut failing = false;
        loop {
            if !self.state.is_leader() {
                // Another replica sharing the store re-arms the Keepers; take over as soon as
                // this one leads (the rollback guard keeps leadership current).
                next_send = Instant::now();
                tokio::time::sleep(probe_every.min(Duration::from_secs(1))).await;
                continue;
            }
            if Instant::now() >= next_send {
                match self.send_share(index, &url).await {
                    Ok(()) => {
                        if failing {
                            tracing::info!(keeper = index, %url, "Keeper re-armed with its shard");
                        } else {
                            tracing::debug!(keeper = index, %url, "Keeper sent its shard");
                        }
                        failing = false;
                        retry = SEND_RETRY;
                        next_send = Instant::now() + interval;
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(
                                keeper = index,
                                error = %e,
                                "cannot send the Keeper its shard; retrying until it is back"
                            );
                        }
                        failing = true;
                        next_send = Instant::now() + jitter(retry);
                        retry = (retry * 2).min(probe_every);
                    }
                }
            } else if !failing {
                match self.client.probe(&url).await {
                    Ok(KeeperProbe::Empty) => {
                        tracing::info!(
                            keeper = index,
                            %url,
                            "Keeper holds no shard (restarted?); re-arming it now"
                        );
                        failing = true;
                        next_send = Instant::now();
                        continue;
                    }
                    Ok(KeeperProbe::Armed | KeeperProbe::Unknown) => {}
                    // Down now: it comes back empty, so send as soon as it answers again.
                    Err(_) => next_send = Instant::now(),
                }
            }
            let wake = next_send.min(Instant::now() + probe_every);
            tokio::time::sleep_until(wake.into()).await;
        }
    }

    async fn send_share(&self, index: u8, url: &str) -> Result<(), String> {
        // Not while a root-key rotation hands out new shares (see `NexusState::keeper_shares`).
        let _shares = self.state.keeper_shares.lock().await;
        let Some(unsealed) = self.state.unsealed() else {
            return Err("Nexus holds no root key".into());
        };
        let cfg = self.state.config();
        let shares = shamir::split(unsealed.root(), cfg.shamir_threshold, cfg.shamir_shares)
            .map_err(|e| format!("splitting the root key failed: {e}"))?;
        drop(unsealed);
        let share = shares
            .into_iter()
            .find(|s| s.index() == index)
            .ok_or_else(|| format!("no share {index} in the split"))?;
        self.client.contribute(url, &share).await.map_err(|e| e.to_string())
    }
}

fn unseal(state: &NexusState, root: RootKey) -> Result<(), String> {
    match state.unseal(root) {
        Ok(()) => Ok(()),
        Err(NexusError::Core(spike_core::Error::Crypto(CryptoError::WrongRootKey))) => {
            Err("the recombined key is not this store's root key".into())
        }
        Err(e) => {
            tracing::error!(error = %e, "unsealing with the recovered root key failed");
            Err(format!("unsealing failed: {e}"))
        }
    }
}

/// How often Keepers are probed for an update interval of `update`: half of it, at most
/// [`KEEPER_PROBE_INTERVAL`], at least 10 ms. Half, so a Keeper restarted at any moment is
/// re-armed within the update interval even when a probe lands just before its restart.
pub fn probe_interval(update: Duration) -> Duration {
    (update / 2).clamp(Duration::from_millis(10), KEEPER_PROBE_INTERVAL)
}

/// Calls `try_subset` with index subsets of size `k` of `0..n` in lexicographic order (at most
/// [`MAX_COMBINATIONS`]) until it returns true. Returns whether one did.
pub(crate) fn for_each_subset(
    n: usize,
    k: usize,
    mut try_subset: impl FnMut(&[usize]) -> bool,
) -> bool {
    if k == 0 || k > n {
        return false;
    }
    let mut idx: Vec<usize> = (0..k).collect();
    for _ in 0..MAX_COMBINATIONS {
        if try_subset(&idx) {
            return true;
        }
        let Some(pos) = (0..k).rev().find(|&i| idx[i] < n - k + i) else {
            return false;
        };
        idx[pos] += 1;
        for j in pos + 1..k {
            idx[j] = idx[j - 1] + 1;
        }
    }
    false
}

/// Waits `delay`, returning early once Nexus is ready (e.g. an operator restored it).
async fn wait_until_ready(state: &NexusState, delay: Duration) {
    let deadline = Instant::now() + delay;
    while state.unsealed().is_none() {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(25))).await;
    }
}

/// `delay` ±25 %, so a fleet of restarted Nexus replicas does not hit the Keepers in lockstep.
fn jitter(delay: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let factor = match spike_core::secret::fill_random(&mut byte) {
        Ok(()) => 0.75 + f64::from(byte[0]) / 510.0,
        Err(_) => 1.0,
    };
    delay.mul_f64(factor)
}

/// The first clause of a Keeper error, for the one-line status.
fn short_reason(e: &crate::keeper::KeeperError) -> String {
    use crate::keeper::KeeperError;
    match e {
        KeeperError::Unreachable { reason, .. } => {
            let reason = reason.rsplit(": ").next().unwrap_or(reason);
            format!("unreachable ({reason})")
        }
        KeeperError::Refused { status, .. } => {
            format!("refused Nexus's identity (HTTP {status}); check SPIKE_TRUST_ROOT_NEXUS")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_are_enumerated_in_order_and_bounded() {
        let mut seen = Vec::new();
        assert!(!for_each_subset(4, 2, |s| {
            seen.push(s.to_vec());
            false
        }));
        assert_eq!(seen, vec![[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]);
        assert!(for_each_subset(3, 2, |s| s == [1, 2]));
        assert!(!for_each_subset(1, 2, |_| true));
        let mut calls = 0;
        for_each_subset(40, 5, |_| {
            calls += 1;
            false
        });
        assert_eq!(calls, MAX_COMBINATIONS);
    }

    #[test]
    fn keepers_are_probed_at_least_twice_per_update_interval() {
        assert_eq!(probe_interval(Duration::from_secs(300)), KEEPER_PROBE_INTERVAL);
        assert_eq!(probe_interval(Duration::from_secs(1)), Duration::from_millis(500));
        assert_eq!(probe_interval(Duration::from_millis(10)), Duration::from_millis(10));
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        for _ in 0..100 {
            let d = jitter(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(750) && d <= Duration::from_millis(1250), "{d:?}");
        }
    }
}
