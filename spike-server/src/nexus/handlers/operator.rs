//! `/v1/operator/recover`, `/v1/operator/restore` and the spike-rs extension
//! `/v1/operator/rotate`.
//!
//! Recover hands the recover role the root key's shards for offline backup. Restore takes
//! shards one at a time from the restore role until enough recombine to the key the store was
//! sealed with (checked against the store's key check value): a shard that conflicts with one
//! already received is refused and the first kept; a set that does not verify keeps every
//! shard and asks for more, so a single bad shard never loses the good ones.

use std::collections::BTreeMap;

use spike_core::identity::Role;
use spike_core::secret::KeeperShare;
use spike_core::shamir;
use spike_core::store::vault::RootRotation;
use spike_core::wire::operator::*;
use spike_core::wire::{ErrorCode, FallbackResponse, ShardBytes};

use super::Ctx;
use crate::keeper::KeeperClient;
use crate::nexus::config::BackendKind;
use crate::nexus::recovery::for_each_subset;
use crate::nexus::reply::Reply;
use crate::nexus::state::Unsealed;

/// Returns every shard of the root key (recover role only; persistent backends only).
pub fn recover(ctx: &Ctx<'_>) -> Reply {
    let run = || -> Result<Reply, Reply> {
        let _: RecoverRequest = ctx.decode::<_, RecoverResponse>()?;
        if !ctx.state.config().trust_roots.is(ctx.caller, Role::PilotRecover) {
            return Err(Reply::denied::<RecoverResponse>());
        }
        if ctx.state.config().backend == BackendKind::Memory {
            return Err(Reply::bad_request::<RecoverResponse>());
        }
        let unsealed = ctx.unsealed::<RecoverResponse>()?;
        let cfg = ctx.state.config();
        let shares = shamir::split(unsealed.root(), cfg.shamir_threshold, cfg.shamir_shares)
            .map_err(|e| {
                tracing::error!(error = %e, "splitting the root key failed");
                Reply::internal::<RecoverResponse>()
            })?;
        let shards: BTreeMap<u64, ShardBytes> = shares
            .iter()
            .map(|s| (u64::from(s.index()), ShardBytes::from_keeper_share(s)))
            .collect();
        Ok(Reply::ok(&RecoverResponse { shards: Some(shards), err: None }))
    };
    run().unwrap_or_else(|r| r)
}

/// Accepts one shard; unseals Nexus once enough shards recombine to the store's key.
pub fn restore(ctx: &Ctx<'_>) -> Reply {
    let run = || -> Result<Reply, Reply> {
        let req: RestoreRequest = ctx.decode::<_, RestoreResponse>()?;
        let cfg = ctx.state.config();
        if !cfg.trust_roots.is(ctx.caller, Role::PilotRestore) {
            return Err(Reply::denied::<RestoreResponse>());
        }
        if cfg.backend == BackendKind::Memory {
            return Err(Reply::bad_request::<RestoreResponse>());
        }
        req.validate(shamir::MAX_SHARES as u64).map_err(Reply::fail::<RestoreResponse>)?;
        let threshold = cfg.shamir_threshold;
        if ctx.state.unsealed().is_some() {
            let done = RestoreResponse {
                collected: threshold as i64,
                restored: true,
                ..Default::default()
            };
            return Ok(Reply::ok(&done));
        }
        let Some(shard) = req.shard.as_ref() else {
            return Err(Reply::bad_request::<RestoreResponse>());
        };
        // validate() bounds the id to 1..=255.
        let index = u8::try_from(req.id).map_err(|_| Reply::bad_request::<RestoreResponse>())?;
        let mut progress = ctx.state.restore.lock().unwrap_or_else(|p| p.into_inner());
        progress.add(shard.to_keeper_share(index)).map_err(|reason| {
            tracing::warn!(shard = index, reason, "restore shard refused");
            Reply::bad_request::<RestoreResponse>()
        })?;
        let collected = progress.collected();
        if collected < threshold {
            let resp = RestoreResponse {
                collected: collected as i64,
                remaining: (threshold - collected) as i64,
                restored: false,
                err: None,
            };
            return Ok(Reply::ok(&resp));
        }
        let shares = progress.shares();
        if try_subsets(ctx, &shares, threshold) {
            progress.clear();
            let resp = RestoreResponse {
                collected: collected as i64,
                remaining: 0,
                restored: true,
                err: None,
            };
            return Ok(Reply::ok(&resp));
        }
        tracing::warn!(
            collected,
            threshold,
            "received shards do not recombine to this store's root key; send another shard"
        );
        let resp = RestoreResponse {
            collected: collected as i64,
            remaining: 1,
            restored: false,
            err: None,
        };
        Ok(Reply::ok(&resp))
    };
    run().unwrap_or_else(|r| r)
}

/// Tries t-subsets of `shares` (bounded, in the order recovery from the Keepers tries them)
/// until one unseals the store.
fn try_subsets(ctx: &Ctx<'_>, shares: &[KeeperShare], threshold: usize) -> bool {
    for_each_subset(shares.len(), threshold, |idx| {
        let subset: Vec<KeeperShare> = idx.iter().map(|&i| shares[i].duplicate()).collect();
        let Ok(root) = shamir::combine(&subset, threshold) else {
            return false;
        };
        match ctx.state.unseal(root) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "a shard subset did not verify");
                false
            }
        }
    })
}

/// Adds a keyring term and re-encrypts older records in the background, or, with
/// `{"root_key": true}`, rotates the root key (superuser only).
pub fn rotate(ctx: &Ctx<'_>) -> Reply {
    let run = || -> Result<Reply, Reply> {
        if !ctx.state.config().trust_roots.is_superuser(ctx.caller) {
            return Err(Reply::denied::<FallbackResponse>());
        }
        let request: RotateRequest = if ctx.body.is_empty() {
            RotateRequest::default()
        } else {
            ctx.decode::<_, FallbackResponse>()?
        };
        let unsealed = ctx.unsealed::<FallbackResponse>()?;
        if request.root_key {
            return rotate_root(ctx, &unsealed);
        }
        let term = unsealed.vault().rotate(unsealed.root()).map_err(|e| {
            tracing::error!(error = %e, "keyring rotation failed");
            Reply::internal::<FallbackResponse>()
        })?;
        let background = unsealed.clone();
        std::thread::spawn(move || match background.vault().reencrypt() {
            Ok(report) => tracing::info!(?report, "re-encryption after rotation finished"),
            Err(e) => tracing::error!(error = %e, "re-encryption after rotation failed"),
        });
        let body = serde_json::json!({ "term": term });
        Ok(Reply::ok(&body))
    };
    run().unwrap_or_else(|r| r)
}

/// A new root key: recorded in the store, its shares sent to every Keeper (with the re-arm loop
/// held off), and only then made the store's (see `Vault::rotate_root`). If any Keeper misses
/// its share, the old shares are sent back and the old key stays.
fn rotate_root(ctx: &Ctx<'_>, unsealed: &Unsealed) -> Result<Reply, Reply> {
    let cfg = ctx.state.config();
    if cfg.shared_backend() {
        return Err(Reply::status_with_code::<FallbackResponse>(
            400,
            ErrorCode::Other(ROOT_ROTATION_UNSUPPORTED.into()),
        ));
    }
    let internal = |what: &str, e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "root-key rotation failed: {what}");
        Reply::internal::<FallbackResponse>()
    };
    let _shares = ctx.state.keeper_shares.blocking_lock();
    let new = shamir::generate_root_key().map_err(|e| internal("new key", &e))?;
    // A memory store is never recovered from Keepers, so they take no part in it.
    let peers: &[String] = if cfg.backend == BackendKind::Memory { &[] } else { &cfg.keeper_peers };
    let hand_out = || -> Result<(), String> {
        if peers.is_empty() {
            return Ok(());
        }
        let client = ctx.state.keepers.get().ok_or("Nexus has no Keeper client yet")?;
        let split = |key| {
            shamir::split(key, cfg.shamir_threshold, cfg.shamir_shares)
                .map_err(|e| format!("splitting the root key failed: {e}"))
        };
        let runtime = tokio::runtime::Handle::current();
        let sent = runtime.block_on(send_to_every_keeper(client, peers, &split(&new)?));
        if let Err(reason) = sent {
            // Put back what the Keepers that did take a new share held before.
            if let Err(e) =
                runtime.block_on(send_to_every_keeper(client, peers, &split(unsealed.root())?))
            {
                tracing::warn!(error = %e, "re-sending the old shares failed; re-arming will retry");
            }
            return Err(reason);
        }
        Ok(())
    };
    match unsealed.vault().rotate_root(unsealed.root(), &new, hand_out) {
        Ok(RootRotation::Rotated) => {
            ctx.state.replace_root(new);
            tracing::warn!(
                keepers = peers.len(),
                "root key rotated and re-split to the Keepers; recovery shards exported before \
                 now no longer work: export new ones with `spike operator recover`"
            );
            let body = serde_json::json!({ "root_key_rotated": true, "keepers": peers.len() });
            Ok(Reply::ok(&body))
        }
        Ok(RootRotation::Aborted(reason)) => {
            tracing::warn!(%reason, "root-key rotation aborted; the old root key stays in use");
            Err(Reply::status_with_code::<FallbackResponse>(
                502,
                ErrorCode::Other(ROOT_ROTATION_ABORTED.into()),
            ))
        }
        Err(e) => Err(internal("store", &e)),
    }
}

/// Sends share `i` to Keeper `i` (positional ids), every Keeper; the first failure is the error.
async fn send_to_every_keeper(
    client: &KeeperClient,
    peers: &[String],
    shares: &[KeeperShare],
) -> Result<(), String> {
    for (url, share) in peers.iter().zip(shares) {
        client
            .contribute(url, share)
            .await
            .map_err(|e| format!("Keeper {} did not take its new shard: {e}", share.index()))?;
    }
    Ok(())
}
