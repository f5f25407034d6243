//! Disaster recovery: `/v1/operator/recover` and `/v1/operator/restore`.
//!
//! Shapes follow spike-sdk-go `api/entity/v1/reqres/operator.go` and
//! `api/entity/data/operator.go`. Only `spiffe://<td>/spike/pilot/role/recover` may recover and
//! only `.../pilot/role/restore` may restore; both routes stay open while the root key is
//! unknown, and answer 400 on the in-memory backend.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ErrorCode, ShardBytes, codec};

/// SPIKE's default upper bound for a share id (`SPIKE_NEXUS_SHAMIR_MAX_SHARE_COUNT`).
pub const DEFAULT_MAX_SHARE_COUNT: u64 = 1000;

/// `POST /v1/operator/recover`: the body is `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverRequest {}

/// Response to [`RecoverRequest`]: the recovery shards keyed by 1-based share id, e.g.
/// `{"shards":{"1":[...32 numbers],"2":[...]}}` (keys in Go's string order).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RecoverResponse {
    /// Shards by share id; `null` in error bodies.
    #[serde(with = "codec::int_map")]
    pub shards: Option<BTreeMap<u64, ShardBytes>>,
    /// Error code, omitted on success.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "codec::err_code")]
    pub err: Option<ErrorCode>,
}

/// `POST /v1/operator/restore`: one recovery shard.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RestoreRequest {
    /// The shard's 1-based share id.
    pub id: u64,
    /// The shard; `None` is Go's nil (`null`).
    pub shard: Option<ShardBytes>,
}

impl RestoreRequest {
    /// SPIKE's guard: `id` in `1..=max_share_count` and a present, non-zero shard; every
    /// failure is `api_bad_request` (400).
    pub fn validate(&self, max_share_count: u64) -> Result<(), ErrorCode> {
        if !(1..=max_share_count).contains(&self.id) {
            return Err(ErrorCode::ApiBadRequest);
        }
        match &self.shard {
            Some(shard) if !shard.is_zero() => Ok(()),
            _ => Err(ErrorCode::ApiBadRequest),
        }
    }
}

/// Response to [`RestoreRequest`] (Go embeds `data.RestorationStatus`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestoreResponse {
    /// Distinct shards received so far.
    pub collected: i64,
    /// Shards still needed to reach the threshold.
    pub remaining: i64,
    /// True once the root key has been rebuilt.
    pub restored: bool,
    /// Error code, omitted on success.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "codec::err_code")]
    pub err: Option<ErrorCode>,
}

/// Body of `/v1/operator/rotate` (spike-rs extension). SPIKE has no such route; an empty
/// object rotates the keyring (data keys), as before this field existed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RotateRequest {
    /// Rotate the root key instead: a new one, re-split and sent to every Keeper.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub root_key: bool,
}

/// Error code of a root-key rotation that a Keeper refused or missed (HTTP 502): the old root
/// key stays in use.
pub const ROOT_ROTATION_ABORTED: &str = "root_rotation_aborted";

/// Error code of a root-key rotation asked of a Nexus that shares its store with other
/// replicas (HTTP 400): they would still hold the old root key.
pub const ROOT_ROTATION_UNSUPPORTED: &str = "root_rotation_needs_a_single_nexus";

wire_response!(RecoverResponse, RestoreResponse);
