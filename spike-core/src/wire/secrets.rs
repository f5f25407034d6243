//! Secret routes: `/v1/store/secrets` and `/v1/store/secrets/metadata`.
//!
//! Shapes follow spike-sdk-go `api/entity/v1/reqres/secret.go` and
//! `api/entity/data/{secret,metadata}.go`, in Go's field order.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::codec::{self, RedactedValues};
use super::{ErrorCode, GO_ZERO_TIME};
use crate::secret::SecretValues;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `POST /v1/store/secrets`: create a new version of the secret at `path`.
///
/// Go's struct also declares an `err,omitempty` field that clients never set; it is ignored
/// here like any unknown field. `cas` and `metadata` are spike-rs extensions: SPIKE's Nexus
/// ignores them (so it does not enforce `cas`), and they are omitted when `None`.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretPutRequest {
    /// Secret path, e.g. `app/db/creds`.
    pub path: String,
    /// The key/value pairs of the new version; `None` is Go's nil map (`null`).
    #[serde(with = "codec::secret_values_opt")]
    pub values: Option<SecretValues>,
    /// Extension: write only if the current version equals this (0: only if absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cas: Option<u64>,
    /// Extension: custom, non-secret metadata stored with the secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Longest key of a secret's values, in bytes (spike-sdk-go `validation.ValidateName`,
/// `maxNameLength`).
pub const MAX_VALUE_KEY_LEN: usize = 250;

/// True if `key` may name a value of a [`SecretPutRequest`]: SPIKE checks every key with its
/// name rule, `^[a-zA-Z0-9-_ ]+$` and at most [`MAX_VALUE_KEY_LEN`] bytes (spike-sdk-go
/// `net.RespondErrOnBadValues`), and its Nexus answers any other key with 400. So `.`, `/`,
/// non-ASCII and the empty key are refused; a lone space is accepted, as in Go.
pub fn is_valid_value_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_VALUE_KEY_LEN
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b' '))
}

impl fmt::Debug for SecretPutRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretPutRequest")
            .field("path", &self.path)
            .field("values", &RedactedValues(&self.values))
            .field("cas", &self.cas)
            .field("metadata", &self.metadata)
            .finish()
    }
}

/// Response to [`SecretPutRequest`]: `{}` on success.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretPutResponse {
    /// Error code, omitted on success.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "codec::err_code")]
    pub err: Option<ErrorCode>,
}

/// `POST /v1/store/secrets?action=get`: read one version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretGetRequest {
    /// Secret path.
    pub path: String,
    /// Version to read; 0 (omitted on the wire) means the current one.
    #[serde(skip_serializing_if = "is_zero")]
    pub version: u64,
}

/// Response to [`SecretGetRequest`] (Go embeds `data.Secret`): `{"data":{...}}`.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretGetResponse {
    /// The version's key/value pairs; `null` in error bodies.
    #[serde(with = "codec::secret_values_opt")]
    pub data: Option<SecretValues>,
    /// Error code, omitted on success.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "codec::err_code")]
    pub err: Option<ErrorCode>,
}

impl fmt::Debug for SecretGetResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretGetResponse")
            .field("data", &RedactedValues(&self.data))
            .field("err", &self.err)
            .finish()
    }
}

/// `POST /v1/store/secrets?action=delete`: soft-delete versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretDeleteRequest {
    /// Secret path.
    pub path: String,
    /// Versions to delete; empty or `None` (`null`) means the current one, and 0 inside the
    /// list also means the current one. The SDK sends `[]` for "current".
    pub versions: Option<Vec<u64>>,
}

/// Response to [`SecretDeleteRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretDeleteResponse {
    /// Error code, omitted on success.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "codec::err_code")]
    pub err: Option<ErrorCode>,
}

/// `POST /v1/store/secrets?action=undelete`: restore soft-deleted versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretUndeleteRequest {
    /// Secret path.
    pub path: String,
    /// Versions to undelete; empty means the current one (or, if none is current, the
    /// highest deleted one). The SDK always sends `[]` rather than `null`.
    pub versions: Option<Vec<u64>>,
}

/// Response to [`SecretUndeleteRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretUndeleteResponse {
    /// Error code, omitted on success.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "codec::err_code")]
    pub err: Option<ErrorCode>,
}

/// Extension `POST /v1/store/secrets?action=destroy`: erase versions for good (same shape
/// as delete).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretDestroyRequest {
    /// Secret path.
    pub path: String,
    /// Versions to destroy; empty or `None` means the current one.
    pub versions: Option<Vec<u64>>,
}

/// Response to [`SecretDestroyRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretDestroyResponse {
    /// Error code, omitted on success.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "codec::err_code")]
    pub err: Option<ErrorCode>,
}

/// `POST /v1/store/secrets?action=list`: the body is `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretListRequest {}

/// Response to [`SecretListRequest`]: every secret path, sorted; `[]` when there are none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretListResponse {
    /// Secret paths; `null` in error bodies.
    pub keys: Option<Vec<String>>,
    /// Error code, omitted on success.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "codec::err_code")]
    pub err: Option<ErrorCode>,
}

/// `POST /v1/store/secrets/metadata?action=get`: read a secret's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretMetadataRequest {
    /// Secret path.
    pub path: String,
    /// Version that must exist and not be deleted; 0 (omitted) means the current one.
    #[serde(skip_serializing_if = "is_zero")]
    pub version: u64,
}

/// One version's metadata (Go `data.SecretVersionInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretVersionInfo {
    /// When the version was written.
    #[serde(rename = "createdTime", with = "codec::go_time")]
    pub created_time: OffsetDateTime,
    /// The version number.
    pub version: u64,
    /// When it was soft-deleted; `null` while live.
    #[serde(rename = "deletedTime", with = "codec::go_time_opt")]
    pub deleted_time: Option<OffsetDateTime>,
}

impl Default for SecretVersionInfo {
    fn default() -> Self {
        SecretVersionInfo { created_time: GO_ZERO_TIME, version: 0, deleted_time: None }
    }
}

/// A secret's own metadata (Go `data.SecretMetaDataContent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretMetadataContent {
    /// The current version; 0 when every version is deleted.
    #[serde(rename = "currentVersion")]
    pub current_version: u64,
    /// The oldest live version; 0 when none.
    #[serde(rename = "oldestVersion")]
    pub oldest_version: u64,
    /// When the secret was first written.
    #[serde(rename = "createdTime", with = "codec::go_time")]
    pub created_time: OffsetDateTime,
    /// When the secret last changed.
    #[serde(rename = "updatedTime", with = "codec::go_time")]
    pub updated_time: OffsetDateTime,
    /// How many versions are kept.
    #[serde(rename = "maxVersions")]
    pub max_versions: u64,
}

impl Default for SecretMetadataContent {
    fn default() -> Self {
        SecretMetadataContent {
            current_version: 0,
            oldest_version: 0,
            created_time: GO_ZERO_TIME,
            updated_time: GO_ZERO_TIME,
            max_versions: 0,
        }
    }
}

/// Response to [`SecretMetadataRequest`] (Go embeds `data.SecretMetadata`).
///
/// `versions` is `omitempty` in Go, so it vanishes when empty; `metadata` is also tagged
/// `omitempty`, which Go ignores for structs, so it is always present (zero-valued in errors).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretMetadataResponse {
    /// Every retained version, keyed by number (decimal string keys on the wire).
    #[serde(skip_serializing_if = "no_versions", with = "codec::int_map")]
    pub versions: Option<BTreeMap<u64, SecretVersionInfo>>,
    /// The secret's own metadata.
    pub metadata: SecretMetadataContent,
    /// Error code, omitted on success.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "codec::err_code")]
    pub err: Option<ErrorCode>,
}

fn no_versions(v: &Option<BTreeMap<u64, SecretVersionInfo>>) -> bool {
    v.as_ref().is_none_or(BTreeMap::is_empty)
}

wire_response!(
    SecretPutResponse,
    SecretGetResponse,
    SecretDeleteResponse,
    SecretUndeleteResponse,
    SecretDestroyResponse,
    SecretListResponse,
    SecretMetadataResponse,
);
