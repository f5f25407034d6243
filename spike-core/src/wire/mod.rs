//! SPIKE v1 wire types: the JSON bodies, routes and error codes that SPIKE's Go SDK
//! (spike-sdk-go v0.19.9) and SPIKE's Nexus and Keeper exchange, encoded byte for byte as Go's
//! `encoding/json` encodes them.
//!
//! Every call is an HTTP `POST` of a JSON body to a fixed path; the `action` query parameter
//! picks the operation ([`Route`], [`Action`]). Responses carry an optional `err` code
//! ([`ErrorCode`]) next to an HTTP status. `PROTOCOL.md` beside this file records the facts and
//! where in SPIKE's source each comes from.
//!
//! Go's encodings, reproduced by the types and [`encode`]:
//! - `[]byte` is a standard, padded base64 string; a nil slice is `null` (`Option::None`);
//! - `*[32]byte` (shares) is an array of exactly 32 numbers ([`ShardBytes`]); nil is `null`;
//! - `time.Time` is RFC 3339 with the fraction trimmed of trailing zeros ([`format_go_time`]);
//! - `map[int]T` has decimal string keys, emitted in *string* order (`"1"`, `"10"`, `"2"`);
//! - nil maps and slices are `null`, empty ones `{}` / `[]`; `omitempty` fields vanish exactly
//!   when Go's would;
//! - `<`, `>`, `&`, U+2028 and U+2029 inside strings are escaped as `\u003c` and so on.
//!
//! ```
//! use spike_core::secret::SecretValues;
//! use spike_core::wire::{self, SecretPutRequest};
//!
//! let req = SecretPutRequest {
//!     path: "app/db".into(),
//!     values: Some([("user", "admin")].into_iter().collect::<SecretValues>()),
//!     ..Default::default()
//! };
//! let body = wire::encode(&req).expect("encodes");
//! assert_eq!(&body[..], br#"{"path":"app/db","values":{"user":"admin"}}"#);
//! let back: SecretPutRequest = wire::decode(&body).expect("decodes");
//! assert_eq!(back.path, "app/db");
//! ```
//!
//! Decoding follows Go's leniency where it is harmless (unknown fields are ignored, missing
//! fields take Go's zero value, `null` means nil) and is stricter where Go is sloppy (exact key
//! case, exactly 32 bytes per share, canonical base64, strict RFC 3339).

use std::fmt;
use std::io;

use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::macros::datetime;
use zeroize::{Zeroize, Zeroizing};

use crate::secret::{KEY_LEN, KeeperShare};

/// Implements [`WireResponse`] for response structs that have an `err` field and `Default`.
macro_rules! wire_response {
    ($($ty:ty),* $(,)?) => {
        $(
            impl $crate::wire::WireResponse for $ty {
                fn error(code: $crate::wire::ErrorCode) -> Self {
                    let mut response = Self::default();
                    response.err = Some(code);
                    response
                }
                fn error_code(&self) -> Option<&$crate::wire::ErrorCode> {
                    self.err.as_ref()
                }
            }
        )*
    };
}

pub mod bootstrap;
pub mod cipher;
pub mod import;
pub mod keeper;
pub mod operator;
pub mod policy;
pub mod secrets;

pub use bootstrap::{BootstrapVerifyRequest, BootstrapVerifyResponse};
pub use cipher::{
    CipherDecryptRequest, CipherDecryptResponse, CipherEncryptRequest, CipherEncryptResponse,
    CipherStream,
};
pub use keeper::{
    ShardContributeRequest, ShardContributeResponse, ShardGetRequest, ShardGetResponse,
};
pub use operator::{RecoverRequest, RecoverResponse, RestoreRequest, RestoreResponse};
pub use policy::{
    Policy, PolicyDeleteRequest, PolicyDeleteResponse, PolicyGetRequest, PolicyGetResponse,
    PolicyListItem, PolicyListRequest, PolicyListResponse, PolicyPermission, PolicyPutRequest,
    PolicyPutResponse,
};
pub use secrets::{
    SecretDeleteRequest, SecretDeleteResponse, SecretDestroyRequest, SecretDestroyResponse,
    SecretGetRequest, SecretGetResponse, SecretListRequest, SecretListResponse,
    SecretMetadataContent, SecretMetadataRequest, SecretMetadataResponse, SecretPutRequest,
    SecretPutResponse, SecretUndeleteRequest, SecretUndeleteResponse, SecretVersionInfo,
};

// ---------------------------------------------------------------------------------------------
// Error codes
// ---------------------------------------------------------------------------------------------

macro_rules! error_codes {
    ($( ($variant:ident, $code:literal, $msg:literal) ),* $(,)?) => {
        /// One of SPIKE's error code strings (spike-sdk-go `errors/sentinel.go`), as carried in
        /// a response's `err` field or, for streaming cipher calls, as a plain-text body.
        ///
        /// SPIKE's Nexus and Keeper only ever put five codes into JSON bodies:
        /// `api_bad_request`, `access_unauthorized`, `api_not_found`, `api_internal_error` and
        /// `state_not_ready`; the rest name internal failures. [`ErrorCode::http_status`] and
        /// [`ErrorCode::wire_code`] map any code to what goes on the wire.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $(
                #[doc = concat!("`", $code, "`: ", $msg, ".")]
                $variant,
            )*
            /// A code this version does not know, kept verbatim (Go's SDK reads unknown codes
            /// as `gen_general_failure`).
            Other(String),
        }

        impl ErrorCode {
            /// Every code SPIKE's SDK registers, in `sentinel.go` order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The exact code string.
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                    ErrorCode::Other(code) => code,
                }
            }

            /// The code for `code`; unknown strings become [`ErrorCode::Other`].
            pub fn from_code(code: &str) -> Self {
                match code {
                    $($code => ErrorCode::$variant,)*
                    other => ErrorCode::Other(other.to_owned()),
                }
            }

            /// SPIKE's default human-readable message for the code.
            pub fn message(&self) -> &str {
                match self {
                    $(ErrorCode::$variant => $msg,)*
                    ErrorCode::Other(_) => "unknown error",
                }
            }
        }
    };
}

error_codes! {
    (GeneralFailure, "gen_general_failure", "general failure"),
    (NilContext, "gen_nil_context", "nil context"),
    (K8sReconciliationFailed, "k8s_reconciliation_failed", "reconciliation failed"),
    (K8sClientFailed, "k8s_client_failed", "failed to create Kubernetes client"),
    (K8sResourceLookupFailed, "k8s_lookup_failed", "failed to lookup Kubernetes resource"),
    (ApiBadRequest, "api_bad_request", "bad request"),
    (ApiEmptyPayload, "api_empty_payload", "empty payload"),
    (ApiFound, "api_found", "found"),
    (ApiInternal, "api_internal_error", "internal error"),
    (ApiNotFound, "api_not_found", "not found"),
    (ApiPostFailed, "api_post_failed", "post failed"),
    (ApiResponseCodeInvalid, "api_response_code_invalid", "invalid API response code"),
    (ApiServerFault, "api_server_fault", "server fault"),
    (EntityCreationFailed, "object_creation_failed", "creation failed"),
    (EntityDeleted, "entity_deleted", "entity marked as deleted"),
    (EntityDeletionFailed, "object_deletion_failed", "deletion failed"),
    (EntityExists, "entity_exists", "entity already exists"),
    (EntityInvalid, "entity_invalid", "entity is invalid"),
    (EntityLoadFailed, "entity_load_failed", "failed to load entity"),
    (EntityNotFound, "entity_not_found", "entity not found"),
    (EntityQueryFailed, "entity_query_failed", "failed to query entities"),
    (EntitySaveFailed, "entity_save_failed", "failed to save entity"),
    (EntityVersionInvalid, "entity_version_invalid", "invalid version"),
    (EntityVersionNotFound, "entity_version_not_found", "version not found"),
    (EntityUndeletionFailed, "object_undeletion_failed", "undeletion failed"),
    (StateAlreadyInitialized, "state_already_initialized", "already initialized"),
    (StateInitializationFailed, "state_initialization_failed", "initialization failed"),
    (StateNotAlive, "state_not_alive", "not alive"),
    (StateNotReady, "state_not_ready", "not ready"),
    (StateIntegrityCheck, "state_integrity_check", "state integrity check failed"),
    (AccessInvalidPermission, "access_invalid_permission", "invalid permission"),
    (AccessUnauthorized, "access_unauthorized", "unauthorized"),
    (RootKeyEmpty, "root_key_empty", "root key empty"),
    (RootKeyMissing, "root_key_missing", "root key missing"),
    (RootKeyNotEmpty, "root_key_not_empty", "root key not empty"),
    (RootKeySkipCreationForInMemoryMode, "root_key_skip_creation_for_in_memory_mode",
        "root key skip creation for in memory mode"),
    (RootKeyUpdateSkippedKeyEmpty, "root_key_update_skipped_key_empty",
        "root key update skipped key empty"),
    (ShamirDuplicateIndex, "shamir_duplicate_index", "shamir duplicate index"),
    (ShamirEmptyShard, "shamir_empty_shard", "shamir empty shard"),
    (ShamirInvalidIndex, "shamir_invalid_index", "shamir invalid index"),
    (ShamirNilShard, "shamir_nil_shard", "shamir nil shard"),
    (ShamirNotEnoughShards, "shamir_not_enough_shards", "shamir not enough shards"),
    (ShamirReconstructionFailed, "shamir_reconstruction_failed", "shamir reconstruction failed"),
    (ShamirNotEnoughKeepers, "shamir_not_enough_keepers", "not enough keepers for shamir shares"),
    (CryptoCipherNotAvailable, "crypto_cipher_not_available", "cipher not available"),
    (CryptoCipherVerificationFailed, "crypto_cipher_verification_failed",
        "cipher verification failed"),
    (CryptoDecryptionFailed, "crypto_decryption_failed", "decryption failed"),
    (CryptoEncryptionFailed, "crypto_encryption_failed", "encryption failed"),
    (CryptoFailedToCreateCipher, "crypto_failed_to_create_cipher", "failed to create cipher"),
    (CryptoFailedToCreateGcm, "crypto_failed_to_create_gcm", "failed to create GCM"),
    (CryptoFailedToReadNonce, "crypto_failed_to_read_nonce", "failed to read nonce"),
    (CryptoFailedToReadVersion, "crypto_failed_to_read_version", "failed to read version"),
    (CryptoInvalidEncryptionKeyLength, "crypto_invalid_encryption_key_length",
        "invalid encryption key length"),
    (CryptoLowEntropy, "crypto_low_entropy", "low entropy"),
    (CryptoNonceGenerationFailed, "crypto_nonce_generation_failed", "nonce generation failed"),
    (CryptoNonceSizeMismatch, "crypto_nonce_size_mismatch", "nonce size mismatch"),
    (CryptoRandomGenerationFailed, "crypto_random_generation_failed", "random generation failed"),
    (CryptoUnsupportedCipherVersion, "crypto_unsupported_version", "unsupported crypto version"),
    (StoreCloseFailed, "store_close_failed", "backing store close failed"),
    (StoreInvalidConfiguration, "store_invalid_configuration", "invalid store configuration"),
    (StoreInvalidEncryptionKey, "store_invalid_encryption_key", "invalid store encryption key"),
    (FsDirectoryCreationFailed, "fs_directory_creation_failed", "directory creation failed"),
    (FsDirectoryDoesNotExist, "fs_directory_does_not_exist", "directory does not exist"),
    (FsFailedToCheckDirectory, "fs_failed_to_check_directory", "failed to check directory"),
    (FsFailedToCreateDirectory, "fs_failed_to_create_directory", "failed to create directory"),
    (FsFailedToResolvePath, "fs_failed_to_resolve_path", "failed to resolve filesystem path"),
    (FsFileCloseFailed, "fs_file_close_failed", "file close failed"),
    (FsFileIsNotADirectory, "fs_file_is_not_a_directory", "file is not a directory"),
    (FsFileOpenFailed, "fs_file_open_failed", "file open failed"),
    (FsInvalidDirectory, "fs_invalid_directory", "invalid directory"),
    (FsParentDirectoryDoesNotExist, "fs_parent_directory_does_not_exist",
        "parent directory does not exist"),
    (FsPathCannotBeEmpty, "fs_path_cannot_be_empty", "filesystem path cannot be empty"),
    (FsPathRestricted, "fs_path_restricted", "filesystem path is restricted for security reasons"),
    (FsStreamCloseFailed, "fs_stream_close_failed", "stream close failed"),
    (FsStreamReadFailed, "fs_stream_read_failed", "stream read failed"),
    // SPIKE spells this one without the `fs_` prefix.
    (FsStreamWriteFailed, "stream_write_failed", "stream write failed"),
    (FsStreamOpenFailed, "fs_stream_open_failed", "stream open failed"),
    (DataInvalidInput, "data_invalid_input", "invalid input"),
    (DataMarshalFailure, "data_marshal_failure", "failed to marshal response body"),
    (DataParseFailure, "data_parse_failure", "failed to parse request body"),
    (DataReadFailure, "data_read_failure", "failed to read request body"),
    (DataUnmarshalFailure, "data_unmarshal_failure", "failed to unmarshal request body"),
    (StringEmptyCharacterClass, "string_empty_character_class", "empty character class"),
    (StringEmptyCharacterSet, "string_empty_character_set",
        "character class resulted in empty set"),
    (StringInvalidLength, "string_invalid_length", "invalid length specification"),
    (StringInvalidRange, "string_invalid_range", "invalid character range"),
    (StringNegativeLength, "string_negative_length", "length cannot be negative"),
    (NetPeerConnection, "net_peer_connection", "problem connecting to peer"),
    (NetReadingRequestBody, "net_reading_request_body", "problem reading request body"),
    (NetReadingResponseBody, "net_reading_response_body", "problem reading response body"),
    (NetUrlJoinPathFailed, "net_url_join_path_failed", "failed to join URL path"),
    (TransactionBeginFailed, "transaction_begin_failed", "failed to begin transaction"),
    (TransactionCommitFailed, "transaction_commit_failed", "failed to commit transaction"),
    (TransactionFailed, "transaction_failed", "transaction failed"),
    (TransactionRollbackFailed, "transaction_rollback_failed", "failed to rollback transaction"),
    (RecoveryFailed, "recovery_failed", "recovery failed"),
    (RecoveryRetryFailed, "recovery_retry_failed", "recovery retry failed"),
    (RecoveryRetryLimitReached, "recovery_retry_limit_reached", "recovery retry limit reached"),
    (RetryContextCanceled, "retry_context_canceled", "retry canceled due to context cancellation"),
    (RetryMaxElapsedTimeReached, "retry_max_elapsed_time_reached",
        "maximum elapsed time for retries reached"),
    (RetryOperationFailed, "retry_operation_failed", "retry operation failed"),
    (RetryMaximumAttemptsReached, "retry_maximum_attempts_reached",
        "maximum retry attempts reached"),
    (BootstrapKeeperUnreachable, "bootstrap_keeper_unreachable", "keeper unreachable"),
    (SpiffeEmptyTrustDomain, "spiffe_empty_trust_domain", "empty trust domain"),
    (SpiffeFailedToCloseX509Source, "spiffe_failed_to_close_source", "failed to close X509Source"),
    (SpiffeFailedToExtractX509Svid, "spiffe_failed_to_extract_x509_svid",
        "failed to extract X509 SVID"),
    (SpiffeInvalidSpiffeId, "spiffe_invalid_spiffe_id", "invalid SPIFFE ID"),
    (SpiffeInvalidTrustDomain, "spiffe_invalid_trust_domain", "invalid trust domain"),
    (SpiffeMultipleTrustDomains, "spiffe_multiple_trust_domains", "provide a single trust domain"),
    (SpiffeNilX509Source, "spiffe_nil_x509_source", "nil X509Source"),
    (SpiffeNoPeerCertificates, "spiffe_no_peer_certificates", "no peer certificates"),
    (SpiffeUnableToFetchX509Source, "spiffe_unable_to_fetch_x509_source",
        "unable to fetch X509Source"),
    (SystemMemLockFailed, "system_mem_lock_failed", "failed to lock memory"),
}

impl ErrorCode {
    /// The HTTP status SPIKE's Nexus (or Keeper) sends when it fails for this reason.
    ///
    /// The five codes that appear in JSON bodies map as SPIKE sends them: `api_bad_request`
    /// 400, `access_unauthorized` 401, `api_not_found` 404, `api_internal_error` 500,
    /// `state_not_ready` 503. Internal codes map the way SPIKE's handlers react to them:
    /// input-validation and stream-framing failures 400, peer-identity failures 401,
    /// `entity_not_found` 404 (`net.RespondWithHTTPError`), anything else 500.
    pub fn http_status(&self) -> u16 {
        match self {
            ErrorCode::ApiBadRequest
            | ErrorCode::DataInvalidInput
            | ErrorCode::DataParseFailure
            | ErrorCode::DataUnmarshalFailure
            | ErrorCode::DataReadFailure
            | ErrorCode::NetReadingRequestBody
            | ErrorCode::CryptoUnsupportedCipherVersion
            | ErrorCode::CryptoFailedToReadVersion
            | ErrorCode::CryptoFailedToReadNonce
            | ErrorCode::ShamirNilShard
            | ErrorCode::ShamirEmptyShard => 400,
            ErrorCode::AccessUnauthorized
            | ErrorCode::SpiffeFailedToExtractX509Svid
            | ErrorCode::SpiffeInvalidSpiffeId => 401,
            ErrorCode::ApiNotFound | ErrorCode::EntityNotFound => 404,
            ErrorCode::StateNotReady => 503,
            _ => 500,
        }
    }

    /// The code SPIKE puts in a JSON body's `err` for this failure: one of the five wire
    /// codes, chosen by [`ErrorCode::http_status`].
    pub fn wire_code(&self) -> ErrorCode {
        match self.http_status() {
            400 => ErrorCode::ApiBadRequest,
            401 => ErrorCode::AccessUnauthorized,
            404 => ErrorCode::ApiNotFound,
            503 => ErrorCode::StateNotReady,
            _ => ErrorCode::ApiInternal,
        }
    }

    /// How spike-sdk-go reads a non-200 status (`net/post.go`, `net/stream.go`): it never looks
    /// at the body then. `None` for 200.
    pub fn from_http_status(status: u16) -> Option<ErrorCode> {
        match status {
            200 => None,
            404 => Some(ErrorCode::ApiNotFound),
            401 => Some(ErrorCode::AccessUnauthorized),
            400 => Some(ErrorCode::ApiBadRequest),
            503 => Some(ErrorCode::StateNotReady),
            _ => Some(ErrorCode::NetPeerConnection),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for ErrorCode {
    fn from(code: &str) -> Self {
        ErrorCode::from_code(code)
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Ok(ErrorCode::from_code(&code))
    }
}

/// Behaviour shared by every response body: an optional `err` code.
pub trait WireResponse: Sized {
    /// The body SPIKE sends with `code`: every other field at Go's zero value (so `null` for
    /// nil slices, maps and pointers, `""` and `0` for scalars).
    fn error(code: ErrorCode) -> Self;

    /// The code the peer reported, or `None` on success (Go's empty `err`).
    fn error_code(&self) -> Option<&ErrorCode>;
}

/// The body SPIKE sends for unknown routes, non-POST methods (400, `api_bad_request`) and,
/// before the root key is known, for every route but recover and restore (503,
/// `state_not_ready`): `{"err":"..."}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FallbackResponse {
    /// The error code.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "codec::err_code")]
    pub err: Option<ErrorCode>,
}
wire_response!(FallbackResponse);

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

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
/// Error code (spike-rs extension) of Nexus's HTTP 507: the store or the audit log has no
/// space left, so the request was not acknowledged. SPIKE's SDK reads only the status.
pub const STORE_FULL: &str = "store_full";
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

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Why a body could not be decoded. Carries only a position, never input bytes, so it is safe
/// to log even when the body held secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("body is not valid SPIKE v1 JSON ({category} error at line {line}, column {column})")]
pub struct DecodeError {
    /// 1-based line of the failure.
    pub line: usize,
    /// 1-based column of the failure.
    pub column: usize,
    /// `syntax`, `data` (wrong shape or type), `eof` or `io`.
    pub category: &'static str,
}

impl From<serde_json::Error> for DecodeError {
    fn from(e: serde_json::Error) -> Self {
        let category = match e.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "eof",
        };
        DecodeError { line: e.line(), column: e.column(), category }
    }
}

/// Decodes a request or response body. Errors never echo the input (serde's own messages
/// may quote a misplaced secret), so they are safe to log.
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(body).map_err(DecodeError::from)
}

/// Encodes a body exactly as Go's `json.Marshal` would (compact, HTML-escaped), into a buffer
/// that is zeroized on drop, and whose earlier, smaller allocations were zeroized before they
/// were freed (no reallocation leaves copies of a secret behind).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Zeroizing<Vec<u8>>, serde_json::Error> {
    let mut out = ZeroizingWriter(Zeroizing::new(Vec::with_capacity(ENCODE_START)));
    value.serialize(&mut serde_json::Serializer::with_formatter(&mut out, GoFormatter))?;
    Ok(out.0)
}

/// First capacity of an [`encode`] buffer: most bodies fit, larger ones grow by doubling.
const ENCODE_START: usize = 2048;

/// A growable buffer that moves to a larger allocation by itself, zeroizing the old one, so
/// no copy of what it held is left in freed memory.
struct ZeroizingWriter(Zeroizing<Vec<u8>>);

impl io::Write for ZeroizingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let needed = self.0.len() + buf.len();
        if needed > self.0.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(needed.max(2 * self.0.capacity())));
            bigger.extend_from_slice(&self.0);
            // The old allocation is zeroized when it drops here.
            self.0 = bigger;
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// serde_json's compact output plus Go's `escapeHTML`: Go's `json.Marshal` escapes `<`, `>`,
/// `&`, U+2028 and U+2029 (encoding/json `appendString`). Control characters already match
/// (Go ≥ 1.22 writes `\b` and `\f` like serde_json, others as lowercase `\u00XX`).
struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let bytes = fragment.as_bytes();
        // Fast path: most strings hold none of the bytes that can start an escape (`<`, `>`,
        // `&`, and 0xE2, the lead byte of U+2028 and U+2029); checked 16 bytes at a time so
        // the compiler can vectorise it.
        if !bytes.chunks(16).any(|chunk| chunk.iter().fold(false, |hit, &b| hit | may_escape(b))) {
            return writer.write_all(bytes);
        }
        let mut start = 0;
        for (i, ch) in fragment.char_indices() {
            let escaped: &[u8] = match ch {
                '<' => b"\\u003c",
                '>' => b"\\u003e",
                '&' => b"\\u0026",
                '\u{2028}' => b"\\u2028",
                '\u{2029}' => b"\\u2029",
                _ => continue,
            };
            writer.write_all(&bytes[start..i])?;
            writer.write_all(escaped)?;
            start = i + ch.len_utf8();
        }
        writer.write_all(&bytes[start..])
    }
}

/// True for a byte that starts a character Go escapes in strings: `<`, `>`, `&`, or 0xE2 (the
/// first byte of U+2028 and U+2029, and of other characters, which the slow path tells apart).
fn may_escape(b: u8) -> bool {
    b == b'<' || b == b'>' || b == b'&' || b == 0xE2
}

/// Go's zero `time.Time`, which zero-valued structs marshal as `"0001-01-01T00:00:00Z"`.
pub const GO_ZERO_TIME: OffsetDateTime = datetime!(0001-01-01 00:00:00 UTC);

/// Formats a time as Go's `time.Time.MarshalJSON` does (layout RFC3339Nano): fraction trimmed
/// of trailing zeros and dropped when zero, `Z` for a zero offset, else `±hh:mm`. `None` when
/// the year is outside 0..=9999 or the offset is 24 hours or more, which Go refuses to marshal.
pub fn format_go_time(t: &OffsetDateTime) -> Option<String> {
    let year = t.year();
    // Go's appendStrictRFC3339 refuses years outside 0..=9999 and zone hours above 23.
    if !(0..=9999).contains(&year) || t.offset().whole_hours().unsigned_abs() > 23 {
        return None;
    }
    let mut s = format!(
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    let offset_seconds = t.offset().whole_seconds();
    if offset_seconds == 0 {
        s.push('Z');
    } else {
        // Go divides to whole minutes first and takes the sign from that (time/format.go).
        let mut zone = offset_seconds / 60;
        if zone < 0 {
            s.push('-');
            zone = -zone;
        } else {
            s.push('+');
        }
        s.push_str(&format!("{:02}:{:02}", zone / 60, zone % 60));
    }
    Some(s)
}

/// Parses a time as Go's `time.Time.UnmarshalJSON` does (strict RFC 3339): a `T` separator,
/// seconds 00..59, any number of fraction digits, `Z` or `±hh:mm`.
pub fn parse_go_time(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    // The `time` crate also takes a space or lowercase `z`, and leap seconds; Go does not.
    if b.len() < 20 || b[10] != b'T' || b.get(17..19) == Some(b"60".as_slice()) || s.ends_with('z')
    {
        return None;
    }
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// Serde adapters that give fields Go's encodings.
pub(crate) mod codec {
    use std::collections::BTreeMap;
    use std::fmt;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::de::{self, Deserializer, MapAccess, Visitor};
    use serde::ser::{Error as _, SerializeMap, Serializer};
    use serde::{Deserialize, Serialize};
    use time::OffsetDateTime;

    use super::ErrorCode;
    use crate::secret::SecretValues;

    /// `err,omitempty`: absent, `null` and `""` all mean success.
    pub(crate) fn err_code<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ErrorCode>, D::Error> {
        let code: Option<String> = Option::deserialize(d)?;
        Ok(code.filter(|c| !c.is_empty()).map(|c| ErrorCode::from_code(&c)))
    }

    /// An `err` field without `omitempty`: success is written as `""`.
    pub(crate) mod err_always {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            err: &Option<ErrorCode>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            s.serialize_str(err.as_ref().map_or("", ErrorCode::as_str))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<ErrorCode>, D::Error> {
            super::err_code(d)
        }
    }

    /// `time.Time` (never `null`; Go's zero time is a real value).
    pub(crate) mod go_time {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            t: &OffsetDateTime,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            let text = crate::wire::format_go_time(t)
                .ok_or_else(|| S::Error::custom("time year outside Go's range 0..=9999"))?;
            s.serialize_str(&text)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<OffsetDateTime, D::Error> {
            // Go leaves the zero time in place for `null`.
            match Option::<String>::deserialize(d)? {
                None => Ok(crate::wire::GO_ZERO_TIME),
                Some(text) => crate::wire::parse_go_time(&text)
                    .ok_or_else(|| de::Error::custom("time is not RFC 3339 as Go writes it")),
            }
        }
    }

    /// `*time.Time`: nil is `null`.
    pub(crate) mod go_time_opt {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            t: &Option<OffsetDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                None => s.serialize_none(),
                Some(t) => go_time::serialize(t, s),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<OffsetDateTime>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(text) => crate::wire::parse_go_time(&text)
                    .map(Some)
                    .ok_or_else(|| de::Error::custom("time is not RFC 3339 as Go writes it")),
            }
        }
    }

    /// `[]byte`: standard padded base64, nil is `null`.
    pub(crate) mod bytes_opt {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            b: &Option<Vec<u8>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match b {
                None => s.serialize_none(),
                Some(b) => s.serialize_str(&STANDARD.encode(b)),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Vec<u8>>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(text) => STANDARD
                    .decode(text)
                    .map(Some)
                    .map_err(|_| de::Error::custom("bytes are not standard padded base64")),
            }
        }
    }

    /// `map[int]V`: decimal string keys, written in Go's order (sorted as strings).
    pub(crate) mod int_map {
        use super::*;

        pub(crate) fn serialize<S: Serializer, V: Serialize>(
            map: &Option<BTreeMap<u64, V>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            let Some(map) = map else {
                return s.serialize_none();
            };
            // encoding/json sorts map keys by their string form, so 10 comes before 2.
            let mut entries: Vec<(String, &V)> =
                map.iter().map(|(k, v)| (k.to_string(), v)).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out = s.serialize_map(Some(entries.len()))?;
            for (k, v) in entries {
                out.serialize_entry(&k, v)?;
            }
            out.end()
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
            d: D,
        ) -> Result<Option<BTreeMap<u64, V>>, D::Error> {
            d.deserialize_option(OptionVisitor(std::marker::PhantomData))
        }

        struct OptionVisitor<V>(std::marker::PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for OptionVisitor<V> {
            type Value = Option<BTreeMap<u64, V>>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with decimal integer keys, or null")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_map(MapVisitor(std::marker::PhantomData)).map(Some)
            }
        }

        struct MapVisitor<V>(std::marker::PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = BTreeMap<u64, V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with decimal integer keys")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                // Go parses keys with strconv.ParseInt(key, 10, 64); negative keys have no
                // meaning here (versions and share ids start at 1), so they are rejected.
                // Document order decides duplicates ("1" then "01"): the last one wins, as in Go.
                while let Some(key) = map.next_key::<String>()? {
                    let key: u64 = key
                        .parse()
                        .map_err(|_| de::Error::custom("map key is not a decimal integer"))?;
                    let value = map.next_value::<V>()?;
                    out.insert(key, value);
                }
                Ok(out)
            }
        }
    }

    /// `map[string]string` of secret values, built straight into [`SecretValues`] so partial
    /// input is zeroized if decoding fails; nil is `null`.
    pub(crate) mod secret_values_opt {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            values: &Option<SecretValues>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            let Some(values) = values else {
                return s.serialize_none();
            };
            let mut out = s.serialize_map(Some(values.len()))?;
            for (k, v) in values.iter() {
                out.serialize_entry(k, v)?;
            }
            out.end()
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<SecretValues>, D::Error> {
            d.deserialize_option(OptionVisitor)
        }

        struct OptionVisitor;

        impl<'de> Visitor<'de> for OptionVisitor {
            type Value = Option<SecretValues>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string values or null")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_map(ValuesVisitor).map(Some)
            }
        }

        struct ValuesVisitor;

        impl<'de> Visitor<'de> for ValuesVisitor {
            type Value = SecretValues;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretValues, A::Error> {
                let mut values = SecretValues::new();
                // Go keeps the last of duplicate keys; `insert` does too and zeroizes the first.
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    values.insert(k, v);
                }
                Ok(values)
            }
        }
    }

    /// Debug helper that shows a secret map's keys but never its values.
    pub(crate) struct RedactedValues<'a>(pub(crate) &'a Option<SecretValues>);

    impl fmt::Debug for RedactedValues<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.0 {
                None => f.write_str("None"),
                Some(values) => {
                    f.write_str("Some(")?;
                    f.debug_map().entries(values.keys().map(|k| (k, Redacted))).finish()?;
                    f.write_str(")")
                }
            }
        }
    }

    struct Redacted;

    impl fmt::Debug for Redacted {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("[REDACTED]")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Secret byte fields
// ---------------------------------------------------------------------------------------------

/// One 32-byte Shamir share on the wire (Go `*[32]byte`, an array of exactly 32 numbers).
///
/// Zeroized on drop; `Debug` prints `ShardBytes([REDACTED])`; not `Clone`. Decoding fills the
/// buffer in place, so a half-read share is zeroized too. Go would zero-fill a shorter array
/// and drop extra elements; we reject both.
pub struct ShardBytes(SecretBox<[u8; KEY_LEN]>);

impl ShardBytes {
    /// Takes ownership of share bytes, zeroizing the caller's copy.
    pub fn from_bytes(bytes: &mut [u8; KEY_LEN]) -> Self {
        let shard = ShardBytes(SecretBox::new(Box::new(*bytes)));
        bytes.zeroize();
        shard
    }

    /// The share's bytes (big-endian P-256 scalar), for the few places that compute with them.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        self.0.expose_secret()
    }

    /// True when every byte is zero: SPIKE rejects such shares (`shamir_empty_shard`). Runs in
    /// constant time.
    pub fn is_zero(&self) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.expose_secret()[..], &[0u8; KEY_LEN][..]).into()
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &ShardBytes) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.expose_secret()[..], &other.expose_secret()[..]).into()
    }

    /// The share as a Keeper holds it, with its 1-based index.
    pub fn to_keeper_share(&self, index: u8) -> KeeperShare {
        let mut bytes = *self.expose_secret();
        KeeperShare::new(index, &mut bytes)
    }

    /// The wire form of a Keeper's share (its index travels separately, if at all).
    pub fn from_keeper_share(share: &KeeperShare) -> Self {
        let mut bytes = *share.expose_secret();
        ShardBytes::from_bytes(&mut bytes)
    }
}

impl fmt::Debug for ShardBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShardBytes([REDACTED])")
    }
}

impl Serialize for ShardBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut seq = serializer.serialize_tuple(KEY_LEN)?;
        for b in self.expose_secret() {
            seq.serialize_element(b)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for ShardBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ShardVisitor;

        impl<'de> serde::de::Visitor<'de> for ShardVisitor {
            type Value = ShardBytes;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of exactly 32 numbers 0..=255")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ShardBytes, A::Error> {
                let mut shard = ShardBytes(SecretBox::new(Box::new([0u8; KEY_LEN])));
                let buf = shard.0.expose_secret_mut();
                for (i, slot) in buf.iter_mut().enumerate() {
                    *slot = seq
                        .next_element::<u8>()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(serde::de::Error::invalid_length(KEY_LEN + 1, &self));
                }
                Ok(shard)
            }
        }

        deserializer.deserialize_tuple(KEY_LEN, ShardVisitor)
    }
}

/// Secret bytes on the wire (Go `[]byte` holding a plaintext): standard padded base64.
///
/// Zeroized on drop; `Debug` prints `SecretBytes([REDACTED])`; not `Clone`. Encoding and
/// decoding go through zeroizing buffers sized once.
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }

    /// Copies `bytes` into a zeroizing buffer.
    pub fn from_slice(bytes: &[u8]) -> Self {
        SecretBytes(Zeroizing::new(bytes.to_vec()))
    }

    /// The bytes, for the AEAD or the caller that asked for them.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// Hands the zeroizing buffer over.
    pub fn into_zeroizing(self) -> Zeroizing<Vec<u8>> {
        self.0
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        SecretBytes::new(bytes)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes([REDACTED])")
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        let text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*self.0));
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretBytesVisitor;

        impl serde::de::Visitor<'_> for SecretBytesVisitor {
            type Value = SecretBytes;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("standard padded base64")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SecretBytes, E> {
                use base64::Engine;
                let mut buf = Zeroizing::new(vec![0u8; base64::decoded_len_estimate(text.len())]);
                let n = base64::engine::general_purpose::STANDARD
                    .decode_slice(text, &mut buf[..])
                    .map_err(|_| E::custom("bytes are not standard padded base64"))?;
                buf.truncate(n);
                Ok(SecretBytes(buf))
            }
        }

        deserializer.deserialize_str(SecretBytesVisitor)
    }
}
