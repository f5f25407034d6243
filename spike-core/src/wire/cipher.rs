//! Encryption as a service: `/v1/cipher/encrypt` and `/v1/cipher/decrypt`.
//!
//! Each route takes either JSON (spike-sdk-go `api/entity/v1/reqres/cipher.go`) or, when the
//! request's `Content-Type` is exactly `application/octet-stream`, raw bytes
//! ([`CipherStream`]); see spike-sdk-go `net/dispatch.go` and `net/cipher.go`.

use serde::{Deserialize, Serialize};

use super::{ErrorCode, SecretBytes, codec};

/// The only ciphertext format version SPIKE knows (`spikeCipherVersion`).
pub const CIPHER_VERSION: u8 = 0x01;
/// Nonce length in bytes (AES-GCM's standard 96-bit nonce).
pub const NONCE_LEN: usize = 12;
/// Authentication tag length in bytes.
pub const TAG_LEN: usize = 16;
/// SPIKE's default ciphertext size limit (`SPIKE_NEXUS_CRYPTO_MAX_CIPHERTEXT_SIZE`).
pub const DEFAULT_MAX_CIPHERTEXT_LEN: usize = 65_536;
/// The `Content-Type` that selects streaming mode.
pub const CONTENT_TYPE_OCTET_STREAM: &str = "application/octet-stream";
/// The `Content-Type` of JSON requests and responses.
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// `POST /v1/cipher/encrypt` (JSON mode).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CipherEncryptRequest {
    /// Bytes to encrypt (base64); `None` is Go's nil (`null`).
    pub plaintext: Option<SecretBytes>,
    /// Reserved algorithm name; omitted when empty. SPIKE ignores it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub algorithm: String,
}

impl CipherEncryptRequest {
    /// SPIKE's guard: the plaintext may be at most `max_ciphertext_len` bytes (it compares the
    /// plaintext with the *ciphertext* limit). Fails with `data_invalid_input` (400).
    pub fn validate(&self, max_ciphertext_len: usize) -> Result<(), ErrorCode> {
        let len = self.plaintext.as_ref().map_or(0, SecretBytes::len);
        if len > max_ciphertext_len {
            return Err(ErrorCode::DataInvalidInput);
        }
        Ok(())
    }
}

/// Response to [`CipherEncryptRequest`]. Error bodies carry `"version":0,"nonce":null,
/// "ciphertext":null`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CipherEncryptResponse {
    /// Format version ([`CIPHER_VERSION`]), a JSON number.
    pub version: u8,
    /// The nonce (base64).
    #[serde(with = "codec::bytes_opt")]
    pub nonce: Option<Vec<u8>>,
    /// Ciphertext with its tag (base64).
    #[serde(with = "codec::bytes_opt")]
    pub ciphertext: Option<Vec<u8>>,
    /// Error code, omitted on success.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "codec::err_code")]
    pub err: Option<ErrorCode>,
}

/// `POST /v1/cipher/decrypt` (JSON mode).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CipherDecryptRequest {
    /// Format version; must be [`CIPHER_VERSION`].
    pub version: u8,
    /// The nonce (base64); must be [`NONCE_LEN`] bytes.
    #[serde(with = "codec::bytes_opt")]
    pub nonce: Option<Vec<u8>>,
    /// Ciphertext with its tag (base64).
    #[serde(with = "codec::bytes_opt")]
    pub ciphertext: Option<Vec<u8>>,
    /// Reserved algorithm name; omitted when empty. SPIKE ignores it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub algorithm: String,
}

impl CipherDecryptRequest {
    /// SPIKE's guard, in its order: version (`crypto_unsupported_version`), nonce length
    /// (`data_invalid_input`), ciphertext size (`data_invalid_input`); all answer 400.
    pub fn validate(&self, max_ciphertext_len: usize) -> Result<(), ErrorCode> {
        if self.version != CIPHER_VERSION {
            return Err(ErrorCode::CryptoUnsupportedCipherVersion);
        }
        if self.nonce.as_ref().map_or(0, Vec::len) != NONCE_LEN {
            return Err(ErrorCode::DataInvalidInput);
        }
        if self.ciphertext.as_ref().map_or(0, Vec::len) > max_ciphertext_len {
            return Err(ErrorCode::DataInvalidInput);
        }
        Ok(())
    }
}

/// Response to [`CipherDecryptRequest`]: `{"plaintext":"..."}`; an empty plaintext is `null`
/// from SPIKE (Go's AEAD returns a nil slice for it).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CipherDecryptResponse {
    /// The decrypted bytes (base64).
    pub plaintext: Option<SecretBytes>,
    /// Error code, omitted on success.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "codec::err_code")]
    pub err: Option<ErrorCode>,
}

/// The streaming (`application/octet-stream`) ciphertext framing:
/// `version (1 byte) ‖ nonce (12 bytes) ‖ ciphertext-with-tag`. Encrypt answers with this
/// framing; decrypt reads it and answers with the raw plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CipherStream<'a> {
    /// Format version (always [`CIPHER_VERSION`] after [`CipherStream::parse`]).
    pub version: u8,
    /// The nonce.
    pub nonce: &'a [u8; NONCE_LEN],
    /// Ciphertext with its tag.
    pub ciphertext: &'a [u8],
}

impl<'a> CipherStream<'a> {
    /// Splits a streaming decrypt body the way SPIKE reads it. Errors carry the code SPIKE
    /// writes as a plain-text 400 body: `crypto_failed_to_read_version` (empty body),
    /// `crypto_unsupported_version`, `crypto_failed_to_read_nonce` (short body).
    pub fn parse(body: &'a [u8]) -> Result<Self, ErrorCode> {
        let (&version, rest) = body.split_first().ok_or(ErrorCode::CryptoFailedToReadVersion)?;
        if version != CIPHER_VERSION {
            return Err(ErrorCode::CryptoUnsupportedCipherVersion);
        }
        let (nonce, ciphertext) =
            rest.split_first_chunk::<NONCE_LEN>().ok_or(ErrorCode::CryptoFailedToReadNonce)?;
        Ok(CipherStream { version, nonce, ciphertext })
    }

    /// The framed bytes, as the streaming encrypt response body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + NONCE_LEN + self.ciphertext.len());
        out.push(self.version);
        out.extend_from_slice(self.nonce);
        out.extend_from_slice(self.ciphertext);
        out
    }
}

wire_response!(CipherEncryptResponse, CipherDecryptResponse);
