//! Policy routes: `/v1/acl/policy`.
//!
//! Shapes follow spike-sdk-go `api/entity/v1/reqres/policy.go` and `api/entity/data/policy.go`.
//! Since SPIKE commit 82759994 ("use name as the sole policy identifier") a policy is keyed by
//! its name: the `id` of get and delete requests carries the *name*, and SPIKE's Nexus leaves
//! `id` empty in responses. Note the response spelling `spiffiedPattern` (sic) versus the
//! request spelling `spiffeidPattern`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::codec;
use super::{ErrorCode, GO_ZERO_TIME};
use crate::policy::Permission;

/// A permission a policy grants (Go `data.PolicyPermission`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyPermission {
    /// `read`: read secrets (not list them).
    Read,
    /// `write`: create, update and delete secrets.
    Write,
    /// `list`: list secrets or policies.
    List,
    /// `execute`: run operations such as encryption as a service.
    Execute,
    /// `super`: everything.
    Super,
}

impl PolicyPermission {
    /// Every permission, in SPIKE's order.
    pub const ALL: [PolicyPermission; 5] = [
        PolicyPermission::Read,
        PolicyPermission::Write,
        PolicyPermission::List,
        PolicyPermission::Execute,
        PolicyPermission::Super,
    ];

    /// The exact wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyPermission::Read => "read",
            PolicyPermission::Write => "write",
            PolicyPermission::List => "list",
            PolicyPermission::Execute => "execute",
            PolicyPermission::Super => "super",
        }
    }
}

impl From<Permission> for PolicyPermission {
    fn from(p: Permission) -> Self {
        match p {
            Permission::Read => PolicyPermission::Read,
            Permission::Write => PolicyPermission::Write,
            Permission::List => PolicyPermission::List,
            Permission::Execute => PolicyPermission::Execute,
            Permission::Super => PolicyPermission::Super,
        }
    }
}

impl From<PolicyPermission> for Permission {
    fn from(p: PolicyPermission) -> Self {
        match p {
            PolicyPermission::Read => Permission::Read,
            PolicyPermission::Write => Permission::Write,
            PolicyPermission::List => Permission::List,
            PolicyPermission::Execute => Permission::Execute,
            PolicyPermission::Super => Permission::Super,
        }
    }
}

/// `POST /v1/acl/policy`: create or replace the policy called `name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyPutRequest {
    /// Policy name (SPIKE: `^[a-zA-Z0-9-_ ]+$`, at most 250 bytes); its identity.
    pub name: String,
    /// Regular expression over peer SPIFFE IDs.
    #[serde(rename = "spiffeidPattern")]
    pub spiffeid_pattern: String,
    /// Regular expression over secret paths.
    #[serde(rename = "pathPattern")]
    pub path_pattern: String,
    /// Granted permissions; must be non-empty. `None` is Go's nil (`null`).
    pub permissions: Option<Vec<PolicyPermission>>,
}

/// Response to [`PolicyPutRequest`]: `{}` from SPIKE today (`id` is `omitempty` and empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyPutResponse {
    /// Policy identifier; omitted when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Error code, omitted on success.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "codec::err_code")]
    pub err: Option<ErrorCode>,
}

/// `POST /v1/acl/policy?action=get` (Go `PolicyReadRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyGetRequest {
    /// The policy's name (the field is still called `id` on the wire).
    pub id: String,
}

/// A stored policy as SPIKE returns it (Go `data.Policy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    /// Identifier; empty from SPIKE since policies are keyed by name.
    pub id: String,
    /// Policy name.
    pub name: String,
    /// Regular expression over peer SPIFFE IDs (wire spelling `spiffiedPattern`, sic).
    #[serde(rename = "spiffiedPattern")]
    pub spiffeid_pattern: String,
    /// Regular expression over secret paths.
    #[serde(rename = "pathPattern")]
    pub path_pattern: String,
    /// Granted permissions.
    pub permissions: Option<Vec<PolicyPermission>>,
    /// When the policy was first written.
    #[serde(rename = "createdAt", with = "codec::go_time")]
    pub created_at: OffsetDateTime,
    /// When it was last written.
    #[serde(rename = "updatedAt", with = "codec::go_time")]
    pub updated_at: OffsetDateTime,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            id: String::new(),
            name: String::new(),
            spiffeid_pattern: String::new(),
            path_pattern: String::new(),
            permissions: None,
            created_at: GO_ZERO_TIME,
            updated_at: GO_ZERO_TIME,
        }
    }
}

/// Response to [`PolicyGetRequest`] (Go `PolicyReadResponse`, which embeds `data.Policy`: the
/// policy's fields sit at the top level, followed by `err`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyGetResponse {
    /// The policy (zero-valued in error bodies).
    #[serde(flatten)]
    pub policy: Policy,
    /// Error code, omitted on success.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "codec::err_code")]
    pub err: Option<ErrorCode>,
}

/// `POST /v1/acl/policy?action=delete`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyDeleteRequest {
    /// The policy's name (the field is still called `id` on the wire).
    pub id: String,
}

/// Response to [`PolicyDeleteRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyDeleteResponse {
    /// Error code, omitted on success.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "codec::err_code")]
    pub err: Option<ErrorCode>,
}

/// `POST /v1/acl/policy?action=list`: both filters are always sent, `""` meaning "any". A
/// non-empty `spiffeidPattern` wins over `pathPattern`; matching is string equality with the
/// stored pattern, not regex evaluation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyListRequest {
    /// Only policies whose SPIFFE ID pattern equals this.
    #[serde(rename = "spiffeidPattern")]
    pub spiffeid_pattern: String,
    /// Only policies whose path pattern equals this.
    #[serde(rename = "pathPattern")]
    pub path_pattern: String,
}

/// One entry of [`PolicyListResponse`] (Go `data.PolicyListItem`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyListItem {
    /// Identifier (empty from SPIKE).
    pub id: String,
    /// Policy name.
    pub name: String,
}

/// Response to [`PolicyListRequest`]: `[]` when nothing matches, `null` in error bodies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyListResponse {
    /// Matching policies.
    pub policies: Option<Vec<PolicyListItem>>,
    /// Error code, omitted on success.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "codec::err_code")]
    pub err: Option<ErrorCode>,
}

wire_response!(PolicyPutResponse, PolicyGetResponse, PolicyDeleteResponse, PolicyListResponse);
