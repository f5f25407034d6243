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

mod bytes;
pub(crate) mod codec;
mod encoding;
mod errors;
mod routes;

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

pub use bytes::{SecretBytes, ShardBytes};
pub use encoding::{DecodeError, GO_ZERO_TIME, decode, encode, format_go_time, parse_go_time};
pub use errors::{ErrorCode, FallbackResponse, STORE_FULL, WireResponse};
pub use routes::{
    Action, KEY_ACTION, PATH_AUTH_INITIALIZATION, PATH_BOOTSTRAP_VERIFY, PATH_CIPHER_DECRYPT,
    PATH_CIPHER_ENCRYPT, PATH_KEEPER_CHECKPOINT, PATH_KEEPER_CONTRIBUTE, PATH_KEEPER_KEEP,
    PATH_KEEPER_SHARD, PATH_OPERATOR_RECOVER, PATH_OPERATOR_RESTORE, PATH_OPERATOR_ROTATE,
    PATH_POLICY, PATH_SECRETS, PATH_SECRETS_METADATA, Route, Service, query_action,
};
