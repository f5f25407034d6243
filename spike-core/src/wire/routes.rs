//! Routes: the fixed paths, the `action` query parameter ([`Action`]) and the operations they
//! name together ([`Route`]), dispatched the way SPIKE's `net.RouteFactory` does.

use super::import;
// Named only by the doc links of [`Route`]'s variants.
#[cfg(doc)]
use super::{
    BootstrapVerifyRequest, BootstrapVerifyResponse, CipherDecryptRequest, CipherEncryptRequest,
    FallbackResponse, PolicyDeleteRequest, PolicyDeleteResponse, PolicyGetRequest,
    PolicyGetResponse, PolicyListRequest, PolicyListResponse, PolicyPutRequest, PolicyPutResponse,
    RecoverRequest, RecoverResponse, RestoreRequest, RestoreResponse, SecretDeleteRequest,
    SecretDeleteResponse, SecretDestroyRequest, SecretDestroyResponse, SecretGetRequest,
    SecretGetResponse, SecretListRequest, SecretListResponse, SecretMetadataRequest,
    SecretMetadataResponse, SecretPutRequest, SecretPutResponse, SecretUndeleteRequest,
    SecretUndeleteResponse, ShardContributeRequest, ShardContributeResponse, ShardGetRequest,
    ShardGetResponse, keeper,
};

/// The query parameter that selects an operation.
pub const KEY_ACTION: &str = "action";
/// Nexus: secrets (put, get, delete, undelete, list; our `destroy`).
pub const PATH_SECRETS: &str = "/v1/store/secrets";
/// Nexus: secret metadata (get).
pub const PATH_SECRETS_METADATA: &str = "/v1/store/secrets/metadata";
/// Nexus: policies (put, get, delete, list).
pub const PATH_POLICY: &str = "/v1/acl/policy";
/// Nexus: hand the recovery shards to a `pilot/role/recover` operator.
pub const PATH_OPERATOR_RECOVER: &str = "/v1/operator/recover";
/// Nexus: accept one recovery shard from a `pilot/role/restore` operator.
pub const PATH_OPERATOR_RESTORE: &str = "/v1/operator/restore";
/// Nexus (spike-rs extension): rotate the data-key keyring.
pub const PATH_OPERATOR_ROTATE: &str = "/v1/operator/rotate";
/// Nexus: encryption as a service.
pub const PATH_CIPHER_ENCRYPT: &str = "/v1/cipher/encrypt";
/// Nexus: decryption as a service.
pub const PATH_CIPHER_DECRYPT: &str = "/v1/cipher/decrypt";
/// Nexus: bootstrap proves the Nexus holds the root key it dealt.
pub const PATH_BOOTSTRAP_VERIFY: &str = "/v1/bootstrap/verify";
/// Keeper: store this Keeper's shard (from Nexus or bootstrap).
pub const PATH_KEEPER_CONTRIBUTE: &str = "/v1/store/contribute";
/// Keeper: return this Keeper's shard (to Nexus).
pub const PATH_KEEPER_SHARD: &str = "/v1/store/shard";
/// Keeper: rollback checkpoints (spike-rs extension).
pub const PATH_KEEPER_CHECKPOINT: &str = "/v1/store/checkpoint";
/// Keeper: declared by the SDK (`KeeperKeep`) but served by no SPIKE component.
pub const PATH_KEEPER_KEEP: &str = "/v1/store/keep";
/// Nexus: declared by the SDK (`NexusInit`) but no longer routed by SPIKE's Nexus.
pub const PATH_AUTH_INITIALIZATION: &str = "/v1/auth/initialization";

/// The value of the `action` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// No `action` (or an empty one): put, or the path's only operation.
    Default,
    /// `get`.
    Get,
    /// `delete` (soft delete).
    Delete,
    /// `undelete`.
    Undelete,
    /// `list`.
    List,
    /// `destroy` (spike-rs extension: erase versions for good).
    Destroy,
    /// `check`: declared by the SDK, routed by no SPIKE component.
    Check,
    /// `read`: declared by the SDK, routed by no SPIKE component.
    Read,
}

impl Action {
    /// The exact query value (`""` for [`Action::Default`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Default => "",
            Action::Get => "get",
            Action::Delete => "delete",
            Action::Undelete => "undelete",
            Action::List => "list",
            Action::Destroy => "destroy",
            Action::Check => "check",
            Action::Read => "read",
        }
    }

    /// The action named by an (already unescaped) query value; `None` if unknown. Matching is
    /// exact and case-sensitive, as in SPIKE.
    pub fn from_query_value(value: &str) -> Option<Action> {
        Some(match value {
            "" => Action::Default,
            "get" => Action::Get,
            "delete" => Action::Delete,
            "undelete" => Action::Undelete,
            "list" => Action::List,
            "destroy" => Action::Destroy,
            "check" => Action::Check,
            "read" => Action::Read,
            _ => return None,
        })
    }
}

/// Which server a route belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// SPIKE Nexus.
    Nexus,
    /// SPIKE Keeper.
    Keeper,
}

/// One operation of the v1 protocol: a path plus an [`Action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Route {
    /// `POST /v1/store/secrets` — [`SecretPutRequest`] → [`SecretPutResponse`].
    SecretPut,
    /// `POST /v1/store/secrets?action=get` — [`SecretGetRequest`] → [`SecretGetResponse`].
    SecretGet,
    /// `POST /v1/store/secrets?action=delete` — [`SecretDeleteRequest`] →
    /// [`SecretDeleteResponse`].
    SecretDelete,
    /// `POST /v1/store/secrets?action=undelete` — [`SecretUndeleteRequest`] →
    /// [`SecretUndeleteResponse`].
    SecretUndelete,
    /// `POST /v1/store/secrets?action=list` — [`SecretListRequest`] → [`SecretListResponse`].
    SecretList,
    /// `POST /v1/store/secrets?action=destroy` (extension) — [`SecretDestroyRequest`] →
    /// [`SecretDestroyResponse`].
    SecretDestroy,
    /// `POST /v1/store/secrets/metadata?action=get` — [`SecretMetadataRequest`] →
    /// [`SecretMetadataResponse`].
    SecretMetadataGet,
    /// `POST /v1/acl/policy` — [`PolicyPutRequest`] → [`PolicyPutResponse`].
    PolicyPut,
    /// `POST /v1/acl/policy?action=get` — [`PolicyGetRequest`] → [`PolicyGetResponse`].
    PolicyGet,
    /// `POST /v1/acl/policy?action=delete` — [`PolicyDeleteRequest`] →
    /// [`PolicyDeleteResponse`].
    PolicyDelete,
    /// `POST /v1/acl/policy?action=list` — [`PolicyListRequest`] → [`PolicyListResponse`].
    PolicyList,
    /// `POST /v1/cipher/encrypt` — [`CipherEncryptRequest`] or an octet stream.
    CipherEncrypt,
    /// `POST /v1/cipher/decrypt` — [`CipherDecryptRequest`] or an octet stream.
    CipherDecrypt,
    /// `POST /v1/operator/recover` — [`RecoverRequest`] → [`RecoverResponse`].
    OperatorRecover,
    /// `POST /v1/operator/restore` — [`RestoreRequest`] → [`RestoreResponse`].
    OperatorRestore,
    /// `POST /v1/operator/rotate` (extension): rotate the keyring.
    OperatorRotate,
    /// `POST /v1/bootstrap/verify` — [`BootstrapVerifyRequest`] → [`BootstrapVerifyResponse`].
    BootstrapVerify,
    /// Keeper `POST /v1/store/contribute` — [`ShardContributeRequest`] →
    /// [`ShardContributeResponse`].
    KeeperContribute,
    /// Keeper `POST /v1/store/shard` — [`ShardGetRequest`] → [`ShardGetResponse`].
    KeeperShard,
    /// `POST /v1/operator/import/secret` (extension) — [`import::ImportSecretRequest`] →
    /// [`import::ImportResponse`].
    ImportSecret,
    /// `POST /v1/operator/import/policy` (extension) — [`import::ImportPolicyRequest`] →
    /// [`import::ImportResponse`].
    ImportPolicy,
    /// `POST /v1/operator/import/cipher-key` (extension) — [`import::ImportCipherKeyRequest`]
    /// → [`import::ImportResponse`].
    ImportCipherKey,
    /// Keeper `POST /v1/store/checkpoint` (extension) — [`CheckpointRequest`](keeper::CheckpointRequest) →
    /// [`CheckpointResponse`](keeper::CheckpointResponse).
    KeeperCheckpoint,
}

impl Route {
    /// Every route, SPIKE's first, then our extensions.
    pub const ALL: &'static [Route] = &[
        Route::SecretPut,
        Route::SecretGet,
        Route::SecretDelete,
        Route::SecretUndelete,
        Route::SecretList,
        Route::SecretMetadataGet,
        Route::PolicyPut,
        Route::PolicyGet,
        Route::PolicyDelete,
        Route::PolicyList,
        Route::CipherEncrypt,
        Route::CipherDecrypt,
        Route::OperatorRecover,
        Route::OperatorRestore,
        Route::BootstrapVerify,
        Route::KeeperContribute,
        Route::KeeperShard,
        Route::SecretDestroy,
        Route::OperatorRotate,
        Route::KeeperCheckpoint,
        Route::ImportSecret,
        Route::ImportPolicy,
        Route::ImportCipherKey,
    ];

    /// The URL path.
    pub fn path(self) -> &'static str {
        match self {
            Route::SecretPut
            | Route::SecretGet
            | Route::SecretDelete
            | Route::SecretUndelete
            | Route::SecretList
            | Route::SecretDestroy => PATH_SECRETS,
            Route::SecretMetadataGet => PATH_SECRETS_METADATA,
            Route::PolicyPut | Route::PolicyGet | Route::PolicyDelete | Route::PolicyList => {
                PATH_POLICY
            }
            Route::CipherEncrypt => PATH_CIPHER_ENCRYPT,
            Route::CipherDecrypt => PATH_CIPHER_DECRYPT,
            Route::OperatorRecover => PATH_OPERATOR_RECOVER,
            Route::OperatorRestore => PATH_OPERATOR_RESTORE,
            Route::OperatorRotate => PATH_OPERATOR_ROTATE,
            Route::BootstrapVerify => PATH_BOOTSTRAP_VERIFY,
            Route::KeeperContribute => PATH_KEEPER_CONTRIBUTE,
            Route::KeeperShard => PATH_KEEPER_SHARD,
            Route::KeeperCheckpoint => PATH_KEEPER_CHECKPOINT,
            Route::ImportSecret => import::PATH_IMPORT_SECRET,
            Route::ImportPolicy => import::PATH_IMPORT_POLICY,
            Route::ImportCipherKey => import::PATH_IMPORT_CIPHER_KEY,
        }
    }

    /// The `action` query value.
    pub fn action(self) -> Action {
        match self {
            Route::SecretGet | Route::SecretMetadataGet | Route::PolicyGet => Action::Get,
            Route::SecretDelete | Route::PolicyDelete => Action::Delete,
            Route::SecretUndelete => Action::Undelete,
            Route::SecretList | Route::PolicyList => Action::List,
            Route::SecretDestroy => Action::Destroy,
            _ => Action::Default,
        }
    }

    /// The server that serves the route.
    pub fn service(self) -> Service {
        match self {
            Route::KeeperContribute | Route::KeeperShard | Route::KeeperCheckpoint => {
                Service::Keeper
            }
            _ => Service::Nexus,
        }
    }

    /// True for spike-rs additions that SPIKE's Nexus does not serve.
    pub fn is_extension(self) -> bool {
        matches!(
            self,
            Route::SecretDestroy
                | Route::OperatorRotate
                | Route::KeeperCheckpoint
                | Route::ImportSecret
                | Route::ImportPolicy
                | Route::ImportCipherKey
        )
    }

    /// Path plus query exactly as spike-sdk-go builds it: `/v1/store/secrets?action=get`, or the
    /// bare path for [`Action::Default`].
    pub fn path_and_query(self) -> String {
        match self.action() {
            Action::Default => self.path().to_owned(),
            action => format!("{}?{}={}", self.path(), KEY_ACTION, action.as_str()),
        }
    }

    /// Dispatches a request the way SPIKE's `net.RouteFactory` does: only `POST`, exact path
    /// (already percent-decoded, as Go's `URL.Path`), action from the raw query string. `None`
    /// means SPIKE's fallback: 400 with [`FallbackResponse`] `api_bad_request`.
    pub fn resolve(service: Service, method: &str, path: &str, raw_query: &str) -> Option<Route> {
        if method != "POST" {
            return None;
        }
        let action = Action::from_query_value(&query_action(raw_query))?;
        Route::ALL
            .iter()
            .copied()
            .find(|r| r.service() == service && r.path() == path && r.action() == action)
    }
}

/// The first `action` value in a raw query string, unescaped, as Go's
/// `URL.Query().Get("action")` returns it: `""` when absent. Like Go, segments containing `;`
/// or a bad `%` escape are skipped, and `+` means a space.
pub fn query_action(raw_query: &str) -> String {
    for segment in raw_query.split('&') {
        if segment.is_empty() || segment.contains(';') {
            continue;
        }
        let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
        let (Some(key), Some(value)) = (query_unescape(key), query_unescape(value)) else {
            continue;
        };
        if key == KEY_ACTION.as_bytes() {
            return String::from_utf8_lossy(&value).into_owned();
        }
    }
    String::new()
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` must be two hex digits.
fn query_unescape(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16))?;
                let lo = bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16))?;
                // Both digits are < 16, so the byte fits.
                out.push(u8::try_from(hi * 16 + lo).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}
