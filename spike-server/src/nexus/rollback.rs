//! Storage rollback detection, for a store shared by several replicas (PostgreSQL).
//!
//! Whoever controls the database could restore an old dump: every record in it still
//! authenticates (it was sealed under the same keys), so AEAD alone cannot notice that an
//! acknowledged write or a policy revocation was undone. Nexus notices with a checkpoint of
//! the database's monotonic write counter (`spike_write_counter.writes`, advanced inside every
//! committing transaction):
//!
//! 1. Every [`DEFAULT_ROLLBACK_CHECKPOINT_INTERVAL`](super::config::DEFAULT_ROLLBACK_CHECKPOINT_INTERVAL)
//!    the leader replica (see [`NexusState::leads`]) signs the current counter with an HMAC
//!    under a key derived from the root key, stores that checkpoint in the database, and *then*
//!    offers it to every Keeper. Keepers keep only the highest one (in memory, like shards).
//! 2. Every replica, at the same interval and before it first serves, asks the Keepers for
//!    their checkpoints *first* and reads the database's *second*, verifying every MAC. A
//!    verified Keeper checkpoint higher than the database's means the database went back in
//!    time: the replica refuses to serve (`/readyz` and every API answer "not ready") until
//!    it is restarted against a database that is not behind.
//!
//! Reading the Keepers before the database, and the leader writing the database before the
//! Keepers, means a checkpoint racing the check can never look like a rollback. The MACs mean
//! neither a Keeper nor the database can invent a counter the store never reached.
//!
//! Limits, stated: a dump taken less than one checkpoint interval before the restore is not
//! detected (no checkpoint separates it from the present); if every Keeper restarts, the
//! checkpoint they held is gone and the leader re-arms them from the database as it stands.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use spike_core::crypto::derive_key;
use spike_core::secret::RootKey;
use spike_core::wire::keeper::RollbackCheckpoint;
use subtle::ConstantTimeEq;

use super::state::NexusState;
use crate::keeper::KeeperClient;

const PURPOSE: &str = "rollback-checkpoint";
const LABEL: &[u8] = b"spike-rs/rollback-checkpoint/v1";

fn mac_of(root: &RootKey, counter: u64) -> [u8; 32] {
    let key = derive_key(root, PURPOSE);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose_secret())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(LABEL);
    mac.update(&counter.to_be_bytes());
    mac.finalize().into_bytes().into()
}

/// A checkpoint for `counter`, signed under `root`.
pub fn sign(root: &RootKey, counter: u64) -> RollbackCheckpoint {
    RollbackCheckpoint { counter, mac: hex::encode(mac_of(root, counter)) }
}

/// True if `checkpoint` was signed under `root` (compared in constant time).
pub fn verify(root: &RootKey, checkpoint: &RollbackCheckpoint) -> bool {
    let Ok(given) = hex::decode(&checkpoint.mac) else { return false };
    given.len() == 32 && bool::from(mac_of(root, checkpoint.counter).ct_eq(&given))
}

/// The database's stored form of a checkpoint (JSON of the wire type).
pub fn encode(checkpoint: &RollbackCheckpoint) -> Vec<u8> {
    serde_json::to_vec(checkpoint).unwrap_or_default()
}

/// Parses and verifies a checkpoint stored in the database.
pub fn decode_verified(root: &RootKey, raw: &[u8]) -> Result<RollbackCheckpoint, String> {
    let cp: RollbackCheckpoint = serde_json::from_slice(raw)
        .map_err(|_| "the database's rollback checkpoint does not decode (tampering?)")?;
    if verify(root, &cp) {
        Ok(cp)
    } else {
        Err("the database's rollback checkpoint fails its MAC (tampering, or another \
             deployment's database)"
            .into())
    }
}

/// The verdict on a database holding checkpoint `stored` (verified; `None`: none yet) while
/// the Keepers' highest verified checkpoint is `keepers`.
pub fn judge(stored: Option<u64>, keepers: Option<u64>) -> Result<(), String> {
    match (stored, keepers) {
        (_, None) => Ok(()),
        (Some(s), Some(k)) if s >= k => Ok(()),
        (s, Some(k)) => Err(format!(
            "the database was rolled back: the Keepers hold a checkpoint of write {k}, the \
             database only {}; restore the latest database state (or, to accept this restore \
             deliberately, restart every Keeper so they forget the checkpoint) and restart Nexus",
            s.map_or_else(|| "none".to_owned(), |s| format!("one of write {s}"))
        )),
    }
}

/// Runs forever (until aborted): the check and, on the leader, the checkpoint, every
/// `interval`. Also keeps [`NexusState::is_leader`] current for the Keeper re-arming loops.
pub async fn guard(state: Arc<NexusState>, client: KeeperClient, interval: Duration) {
    let peers = state.config().keeper_peers.clone();
    loop {
        if let Some(root) = state.unsealed() {
            // 1. The Keepers first (see the module docs for why the order matters).
            let mut highest: Option<u64> = None;
            let asks = peers.iter().map(|url| client.checkpoint(url, None));
            for answer in futures::future::join_all(asks).await {
                match answer {
                    Ok(Some(cp)) if verify(root.root(), &cp) => {
                        highest = highest.max(Some(cp.counter));
                    }
                    Ok(Some(_)) => tracing::warn!("a Keeper holds a checkpoint that fails its MAC"),
                    Ok(None) | Err(_) => {}
                }
            }
            // 2. The database, leadership and (leader only) a new checkpoint.
            let st = state.clone();
            let outcome = tokio::task::spawn_blocking(move || check_and_checkpoint(&st, highest))
                .await
                .unwrap_or_else(|e| Err(format!("the rollback check panicked: {e}")));
            match outcome {
                Ok(Some(offer)) => {
                    let offers =
                        peers.iter().map(|url| client.checkpoint(url, Some(offer.clone())));
                    futures::future::join_all(offers).await;
                }
                Ok(None) => {}
                Err(why) => {
                    state.refuse_rolled_back_store(why);
                    // Let a healthy replica (if any) lead; this one serves nothing any more.
                    state.set_leader(false);
                    let st = state.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        if let Some(pg) = st.postgres() {
                            pg.resign();
                        }
                    })
                    .await;
                    return;
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// The blocking half of one round: judge the database against the Keepers' highest
/// checkpoint; on the leader, store a newer checkpoint and return it for the Keepers.
/// `Err` means the store is rolled back (or its checkpoint forged).
fn check_and_checkpoint(
    state: &NexusState,
    keepers: Option<u64>,
) -> Result<Option<RollbackCheckpoint>, String> {
    let (Some(pg), Some(unsealed)) = (state.postgres(), state.unsealed()) else {
        return Ok(None);
    };
    let (writes, raw) = match pg.rollback_state() {
        Ok(found) => found,
        Err(e) => {
            // The database is unreachable: requests fail anyway; judge again next round.
            tracing::warn!(error = %e, "cannot read the write counter for the rollback check");
            return Ok(None);
        }
    };
    let stored = raw.as_deref().map(|raw| decode_verified(unsealed.root(), raw)).transpose()?;
    judge(stored.as_ref().map(|c| c.counter), keepers)?;
    state.rollback_checked();
    let leading = state.leads();
    state.set_leader(leading);
    if !leading {
        return Ok(None);
    }
    let stored_counter = stored.as_ref().map_or(0, |c| c.counter);
    if writes > stored_counter {
        let next = sign(unsealed.root(), writes);
        match pg.advance_checkpoint(writes, &encode(&next)) {
            Ok(true) => return Ok(Some(next)),
            Ok(false) => return Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "cannot store a rollback checkpoint; retrying later");
                return Ok(None);
            }
        }
    }
    // Nothing new: re-arm Keepers that lost the checkpoint (restarted).
    Ok(stored.filter(|c| keepers.is_none_or(|k| k < c.counter)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(b: u8) -> RootKey {
        RootKey::from_bytes(&mut [b; 32])
    }

    #[test]
    fn checkpoints_verify_only_under_their_root_key_and_counter() {
        let cp = sign(&root(1), 42);
        assert!(verify(&root(1), &cp));
        assert!(!verify(&root(2), &cp));
        assert!(!verify(&root(1), &RollbackCheckpoint { counter: 43, ..cp.clone() }));
        assert!(!verify(&root(1), &RollbackCheckpoint { mac: "zz".into(), ..cp.clone() }));
        assert_eq!(decode_verified(&root(1), &encode(&cp)).unwrap(), cp);
        assert!(decode_verified(&root(2), &encode(&cp)).is_err());
        assert!(decode_verified(&root(1), b"{").is_err());
    }

    #[test]
    fn a_database_behind_the_keepers_is_judged_rolled_back() {
        assert!(judge(None, None).is_ok());
        assert!(judge(Some(5), None).is_ok());
        assert!(judge(Some(5), Some(5)).is_ok());
        assert!(judge(Some(6), Some(5)).is_ok());
        let err = judge(Some(4), Some(5)).unwrap_err();
        assert!(err.contains("rolled back") && err.contains("write 5"), "{err}");
        assert!(judge(None, Some(1)).is_err());
    }
}
