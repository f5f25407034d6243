//! Operator calls: recover shards for offline backup, restore after a total loss, rotate.

use spike_core::secret::KeeperShare;
use spike_core::wire::operator::*;
use spike_core::wire::{Route, ShardBytes};

use crate::client::{Idempotency, Spike, status_error};
use crate::error::{Error, Result};

/// Where a restore stands after a shard was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreStatus {
    /// Shards Nexus holds.
    pub collected: u64,
    /// Shards still needed (at least).
    pub remaining: u64,
    /// True once the root key is rebuilt and Nexus is ready.
    pub restored: bool,
}

impl Spike {
    /// Fetches every shard of the root key (recover role only). Keep them offline.
    pub async fn recover(&self) -> Result<Vec<KeeperShare>> {
        let resp: RecoverResponse =
            self.call(Route::OperatorRecover, &RecoverRequest {}, Idempotency::Idempotent).await?;
        let shards =
            resp.shards.ok_or_else(|| Error::Protocol("recover answered no shards".into()))?;
        shards
            .iter()
            .map(|(id, shard)| {
                let index = u8::try_from(*id)
                    .map_err(|_| Error::Protocol(format!("shard id {id} is out of range")))?;
                Ok(shard.to_keeper_share(index))
            })
            .collect()
    }

    /// Sends one shard (restore role only).
    pub async fn restore(&self, share: &KeeperShare) -> Result<RestoreStatus> {
        let req = RestoreRequest {
            id: u64::from(share.index()),
            shard: Some(ShardBytes::from_keeper_share(share)),
        };
        let resp: RestoreResponse =
            self.call(Route::OperatorRestore, &req, Idempotency::Idempotent).await?;
        Ok(RestoreStatus {
            collected: u64::try_from(resp.collected).unwrap_or(0),
            remaining: u64::try_from(resp.remaining).unwrap_or(0),
            restored: resp.restored,
        })
    }

    /// Adds a keyring term; Nexus re-encrypts older records in the background (superuser).
    /// Returns the new term.
    pub async fn rotate(&self) -> Result<u32> {
        #[derive(serde::Deserialize)]
        struct Rotated {
            term: u32,
        }
        let rotated: Rotated = self.post_rotate(&RotateRequest::default()).await?;
        Ok(rotated.term)
    }

    /// Replaces the root key: Nexus makes a new one, sends its shards to every Keeper and only
    /// then switches the store to it (superuser). Returns how many Keepers hold the new shards.
    /// If a Keeper cannot take its shard nothing changes ([`Error::Server`] with code
    /// `root_rotation_aborted`). Recovery shards exported earlier stop working: export new
    /// ones with [`Spike::recover`].
    pub async fn rotate_root_key(&self) -> Result<usize> {
        #[derive(serde::Deserialize)]
        struct Rotated {
            keepers: usize,
        }
        let rotated: Rotated = self.post_rotate(&RotateRequest { root_key: true }).await?;
        Ok(rotated.keepers)
    }

    /// Sends `request` to `/v1/operator/rotate` once (rotations are not idempotent) and decodes
    /// the 200 answer as `T`.
    async fn post_rotate<T: serde::de::DeserializeOwned>(
        &self,
        request: &RotateRequest,
    ) -> Result<T> {
        let body = serde_json::to_vec(request)
            .map_err(|e| Error::Protocol(format!("cannot encode the rotate request: {e}")))?;
        let raw =
            self.send(Route::OperatorRotate, &body, "application/json", Idempotency::Once).await?;
        if raw.status != 200 {
            return Err(status_error(raw.status, &raw.body, raw.retry_after));
        }
        serde_json::from_slice(&raw.body)
            .map_err(|e| Error::Protocol(format!("rotate answer does not decode: {e}")))
    }
}
