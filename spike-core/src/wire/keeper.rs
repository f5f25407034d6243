//! Keeper routes: `/v1/store/contribute` and `/v1/store/shard`.
//!
//! Shapes follow spike-sdk-go `api/entity/v1/reqres/shamir.go` (Go names `ShardPutRequest` and
//! `ShardPutResponse` for contribute). Nexus and bootstrap may contribute; only Nexus may read.

use serde::{Deserialize, Serialize};

use super::{ErrorCode, ShardBytes, codec};

/// Keeper `POST /v1/store/contribute` (Go `ShardPutRequest`): store this Keeper's shard.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ShardContributeRequest {
    /// The shard; `None` is Go's nil (`null`).
    pub shard: Option<ShardBytes>,
}

impl ShardContributeRequest {
    /// SPIKE Keeper's checks: a missing shard is `shamir_nil_shard`, an all-zero one
    /// `shamir_empty_shard`; both answer 400 with `api_bad_request`.
    pub fn validate(&self) -> Result<(), ErrorCode> {
        match &self.shard {
            None => Err(ErrorCode::ShamirNilShard),
            Some(shard) if shard.is_zero() => Err(ErrorCode::ShamirEmptyShard),
            Some(_) => Ok(()),
        }
    }
}

/// Response to [`ShardContributeRequest`] (Go `ShardPutResponse`): `{}` on success.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShardContributeResponse {
    /// Error code, omitted on success.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "codec::err_code")]
    pub err: Option<ErrorCode>,
}

/// Keeper `POST /v1/store/shard`: the body is `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardGetRequest {}

/// Response to [`ShardGetRequest`].
///
/// Go declares its error field with no JSON tag, so it is written as `"Err"` (capitalised)
/// and *always* present: `{"shard":[...],"Err":""}` on success,
/// `{"shard":null,"Err":"api_bad_request"}` when the Keeper holds no shard yet (HTTP 400).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ShardGetResponse {
    /// The shard; `null` in error bodies.
    pub shard: Option<ShardBytes>,
    /// Error code; `""` on success. Decoding also accepts `err` (Go matches keys
    /// case-insensitively).
    #[serde(rename = "Err", alias = "err", with = "codec::err_always")]
    pub err: Option<ErrorCode>,
}

/// A rollback checkpoint (spike-rs extension): the store's write counter at some moment and a
/// MAC over it under a key derived from the root key. Keepers cannot check the MAC; Nexus
/// does, so a Keeper cannot make Nexus believe in a counter the store never reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RollbackCheckpoint {
    /// The store's write counter.
    pub counter: u64,
    /// Hex HMAC-SHA256 over the counter (see `spike_server::nexus::rollback`).
    pub mac: String,
}

/// Keeper `POST /v1/store/checkpoint` (spike-rs extension; Nexus only): offers a newer
/// checkpoint (kept only if its counter is higher than the one held) and/or asks for the one
/// held. `{}` only asks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckpointRequest {
    /// The checkpoint to keep, if newer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<RollbackCheckpoint>,
}

/// Response to [`CheckpointRequest`]: the checkpoint the Keeper holds after the request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckpointResponse {
    /// The highest checkpoint held; `null` when none was ever offered (or the Keeper
    /// restarted: Keepers keep nothing on disk).
    pub checkpoint: Option<RollbackCheckpoint>,
    /// Error code, omitted on success.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "codec::err_code")]
    pub err: Option<ErrorCode>,
}

wire_response!(ShardContributeResponse, ShardGetResponse, CheckpointResponse);
