//! Moving from SPIKE (extension): `/v1/operator/import/{secret,policy,cipher-key}`.
//!
//! `spike operator import-spike` reads a SPIKE Nexus's SQLite store, decrypts it with SPIKE's
//! root key, and sends each secret (with its whole history), each policy and SPIKE's root key
//! (as a *legacy cipher key*, so ciphertexts SPIKE's cipher service made still open) through
//! these routes. Only the Pilot superuser may call them.
//!
//! Every request may say `check: true`: Nexus then validates it and answers what it *would*
//! do ([`ImportOutcome`]) without writing, so the importer can refuse a whole import before
//! anything is written. Without `check`, a path or policy that exists with other content is
//! refused with 409 [`IMPORT_CONFLICT`] unless `force` is set; identical content is
//! [`ImportOutcome::Unchanged`], so re-running an import writes nothing.
//!
//! Times are RFC 3339 (Go's `time.Time` encoding), as elsewhere in the protocol.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::codec::{self, RedactedValues};
use super::{ErrorCode, GO_ZERO_TIME, SecretBytes};
use crate::secret::SecretValues;

/// Path of the secret import route.
pub const PATH_IMPORT_SECRET: &str = "/v1/operator/import/secret";
/// Path of the policy import route.
pub const PATH_IMPORT_POLICY: &str = "/v1/operator/import/policy";
/// Path of the legacy cipher key route.
pub const PATH_IMPORT_CIPHER_KEY: &str = "/v1/operator/import/cipher-key";
/// Error code (409) of an import refused because the target exists with other content.
pub const IMPORT_CONFLICT: &str = "import_conflict";

/// What an import request did, or, with `check`, would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportOutcome {
    /// Nothing was there; it is now.
    Created,
    /// Something else was there and `force` replaced it.
    Replaced,
    /// The same content was already there; nothing was written.
    Unchanged,
    /// (`check` only) something else is there: the write would be refused without `force`.
    Conflict,
    /// (retiring the cipher key) the legacy key was removed (with `check`: one is stored);
    /// when there is none, the answer is [`ImportOutcome::Unchanged`].
    Retired,
}

impl ImportOutcome {
    /// The word the CLI prints.
    pub fn as_str(self) -> &'static str {
        match self {
            ImportOutcome::Created => "created",
            ImportOutcome::Replaced => "replaced",
            ImportOutcome::Unchanged => "unchanged",
            ImportOutcome::Conflict => "conflict",
            ImportOutcome::Retired => "retired",
        }
    }
}

/// One stored version of an imported secret.
#[derive(Serialize, Deserialize)]
#[serde(default)]
pub struct ImportVersion {
    /// Its version number (1 or more).
    pub version: u64,
    /// Its values; `None` is Go's nil map.
    #[serde(with = "codec::secret_values_opt")]
    pub data: Option<SecretValues>,
    /// When it was written.
    #[serde(rename = "createdTime", with = "codec::go_time")]
    pub created_time: OffsetDateTime,
    /// When it was soft-deleted; `None` if it is not.
    #[serde(rename = "deletedTime", with = "codec::go_time_opt")]
    pub deleted_time: Option<OffsetDateTime>,
}

impl fmt::Debug for ImportVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportVersion")
            .field("version", &self.version)
            .field("data", &RedactedValues(&self.data))
            .field("created_time", &self.created_time)
            .field("deleted_time", &self.deleted_time)
            .finish()
    }
}

/// `POST /v1/operator/import/secret`: one secret with its whole history, written atomically.
///
/// The counters are kept as the source reported them: `current_version` is what a read
/// without a version returns (0: none, though the path is still listed), `oldest_version` is
/// reported as is. Every listed version stays readable, even beyond `max_versions` (SPIKE
/// never removed pruned rows); the next put here prunes as usual.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportSecretRequest {
    /// Secret path.
    pub path: String,
    /// The version a read without a version returns; 0 for none.
    #[serde(rename = "currentVersion")]
    pub current_version: u64,
    /// The oldest version, as the source reported it.
    #[serde(rename = "oldestVersion")]
    pub oldest_version: u64,
    /// The version limit the source applied.
    #[serde(rename = "maxVersions")]
    pub max_versions: u32,
    /// When the secret was first written.
    #[serde(rename = "createdTime", with = "codec::go_time")]
    pub created_time: OffsetDateTime,
    /// When its metadata last changed.
    #[serde(rename = "updatedTime", with = "codec::go_time")]
    pub updated_time: OffsetDateTime,
    /// Every stored version, deleted or not.
    pub versions: Vec<ImportVersion>,
    /// Replace a secret that exists with other content.
    pub force: bool,
    /// Validate and report the outcome without writing.
    pub check: bool,
}

/// `POST /v1/operator/import/policy`: one policy with its times, keyed by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportPolicyRequest {
    /// The policy's name.
    pub name: String,
    /// Anchored regular expression over caller SPIFFE IDs.
    #[serde(rename = "spiffeidPattern")]
    pub spiffeid_pattern: String,
    /// Anchored regular expression over secret paths.
    #[serde(rename = "pathPattern")]
    pub path_pattern: String,
    /// Permission names (`read`, `write`, `list`, `execute`, `super`).
    pub permissions: Vec<String>,
    /// When it was created.
    #[serde(rename = "createdAt", with = "codec::go_time")]
    pub created_at: OffsetDateTime,
    /// When it was last written.
    #[serde(rename = "updatedAt", with = "codec::go_time")]
    pub updated_at: OffsetDateTime,
    /// Replace a policy that exists with other content.
    pub force: bool,
    /// Validate and report the outcome without writing.
    pub check: bool,
}

// Missing fields decode as Go's zero values, times as Go's zero time.
impl Default for ImportVersion {
    fn default() -> Self {
        Self { version: 0, data: None, created_time: GO_ZERO_TIME, deleted_time: None }
    }
}

impl Default for ImportSecretRequest {
    fn default() -> Self {
        Self {
            path: String::new(),
            current_version: 0,
            oldest_version: 0,
            max_versions: 0,
            created_time: GO_ZERO_TIME,
            updated_time: GO_ZERO_TIME,
            versions: Vec::new(),
            force: false,
            check: false,
        }
    }
}

impl Default for ImportPolicyRequest {
    fn default() -> Self {
        Self {
            name: String::new(),
            spiffeid_pattern: String::new(),
            path_pattern: String::new(),
            permissions: Vec::new(),
            created_at: GO_ZERO_TIME,
            updated_at: GO_ZERO_TIME,
            force: false,
            check: false,
        }
    }
}

/// `POST /v1/operator/import/cipher-key`: store SPIKE's root key as the legacy cipher key
/// (sealed under this Nexus's keys; only used to open ciphertexts SPIKE made), or remove it
/// with `retire`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportCipherKeyRequest {
    /// The 32-byte key (base64); `None` with `retire`.
    pub key: Option<SecretBytes>,
    /// Remove the legacy key instead.
    pub retire: bool,
    /// Replace another legacy key.
    pub force: bool,
    /// Validate and report the outcome without writing.
    pub check: bool,
}

/// Response to every import request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportResponse {
    /// What was done (or would be, with `check`); `None` in error bodies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<ImportOutcome>,
    /// Legacy ciphertexts this Nexus process opened with the legacy key so far (cipher key
    /// route only; tells an operator whether callers still use SPIKE-made ciphertexts).
    #[serde(rename = "legacyDecrypts", skip_serializing_if = "Option::is_none")]
    pub legacy_decrypts: Option<u64>,
    /// Why a request was refused (400 or 409), in words that name the field; never a value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Error code, omitted on success.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "codec::err_code")]
    pub err: Option<ErrorCode>,
}

wire_response!(ImportResponse);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;

    #[test]
    fn a_secret_import_round_trips_and_never_prints_values() {
        let t = time::macros::datetime!(2026-12-07 12:28:35.124068626 UTC);
        let req = ImportSecretRequest {
            path: "app/db".into(),
            current_version: 1,
            oldest_version: 1,
            max_versions: 10,
            created_time: t,
            updated_time: t,
            versions: vec![ImportVersion {
                version: 1,
                data: Some([("pw", "canary-xyz")].into_iter().collect()),
                created_time: t,
                deleted_time: None,
            }],
            ..Default::default()
        };
        let body = wire::encode(&req).unwrap();
        let back: ImportSecretRequest = wire::decode(&body).unwrap();
        assert_eq!(back.versions[0].data.as_ref().unwrap().get("pw"), Some("canary-xyz"));
        assert_eq!(back.versions[0].created_time, t);
        assert!(!format!("{back:?}").contains("canary-xyz"));
        let outcome = wire::encode(&ImportResponse {
            outcome: Some(ImportOutcome::Unchanged),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(&outcome[..], br#"{"outcome":"unchanged"}"#);
    }
}
