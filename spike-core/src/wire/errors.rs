//! Error codes: SPIKE's `err` strings ([`ErrorCode`]), how they map to HTTP statuses, and the
//! bodies that carry them ([`WireResponse`], [`FallbackResponse`]).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::codec;

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

/// Error code (spike-rs extension) of Nexus's HTTP 507: the store or the audit log has no
/// space left, so the request was not acknowledged. SPIKE's SDK reads only the status.
pub const STORE_FULL: &str = "store_full";

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
