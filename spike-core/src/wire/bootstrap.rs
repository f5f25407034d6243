//! Bootstrap verification: `/v1/bootstrap/verify`.
//!
//! Shapes follow spike-sdk-go `api/entity/v1/reqres/bootstrap.go`. SPIKE's bootstrap encrypts
//! a random text with plain AES-256-GCM under the root key it dealt (12-byte nonce, no AAD) and
//! expects the Nexus to answer with the lowercase hex SHA-256 of the plaintext. Only
//! `spiffe://<td>/spike/bootstrap` may call it.

use serde::{Deserialize, Serialize};

use super::cipher::NONCE_LEN;
use super::{ErrorCode, codec};

/// `POST /v1/bootstrap/verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BootstrapVerifyRequest {
    /// AES-GCM nonce (base64), [`NONCE_LEN`] bytes.
    #[serde(with = "codec::bytes_opt")]
    pub nonce: Option<Vec<u8>>,
    /// AES-GCM ciphertext with tag (base64).
    #[serde(with = "codec::bytes_opt")]
    pub ciphertext: Option<Vec<u8>>,
}

impl BootstrapVerifyRequest {
    /// SPIKE's guard: a [`NONCE_LEN`]-byte nonce and a ciphertext of at most
    /// `max_ciphertext_len` bytes; either failure is `data_invalid_input` (400).
    pub fn validate(&self, max_ciphertext_len: usize) -> Result<(), ErrorCode> {
        if self.nonce.as_ref().map_or(0, Vec::len) != NONCE_LEN
            || self.ciphertext.as_ref().map_or(0, Vec::len) > max_ciphertext_len
        {
            return Err(ErrorCode::DataInvalidInput);
        }
        Ok(())
    }
}

/// Response to [`BootstrapVerifyRequest`]. `hash` has no `omitempty`, so error bodies read
/// `{"hash":"","err":"..."}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BootstrapVerifyResponse {
    /// Lowercase hex SHA-256 of the decrypted text.
    pub hash: String,
    /// Error code, omitted on success.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "codec::err_code")]
    pub err: Option<ErrorCode>,
}

wire_response!(BootstrapVerifyResponse);
