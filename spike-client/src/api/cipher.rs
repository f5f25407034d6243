//! Encryption as a service: Nexus encrypts and decrypts with a key only it holds.

use spike_core::wire::cipher::*;
use spike_core::wire::{Route, SecretBytes};
use zeroize::Zeroizing;

use crate::client::{Idempotency, Spike, status_error};
use crate::error::{Error, Result};

/// A ciphertext in SPIKE's JSON form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ciphertext {
    /// Format version (1).
    pub version: u8,
    /// The 12-byte nonce.
    pub nonce: Vec<u8>,
    /// Ciphertext with its tag.
    pub ciphertext: Vec<u8>,
}

impl Spike {
    /// Encrypts `plaintext` (JSON mode).
    pub async fn encrypt(&self, plaintext: &[u8]) -> Result<Ciphertext> {
        let req = CipherEncryptRequest {
            plaintext: Some(SecretBytes::from_slice(plaintext)),
            algorithm: String::new(),
        };
        let resp: CipherEncryptResponse =
            self.call(Route::CipherEncrypt, &req, Idempotency::Idempotent).await?;
        Ok(Ciphertext {
            version: resp.version,
            nonce: resp.nonce.unwrap_or_default(),
            ciphertext: resp.ciphertext.unwrap_or_default(),
        })
    }

    /// Decrypts a [`Ciphertext`] (JSON mode).
    pub async fn decrypt(&self, c: &Ciphertext) -> Result<Zeroizing<Vec<u8>>> {
        let req = CipherDecryptRequest {
            version: c.version,
            nonce: Some(c.nonce.clone()),
            ciphertext: Some(c.ciphertext.clone()),
            algorithm: String::new(),
        };
        let resp: CipherDecryptResponse =
            self.call(Route::CipherDecrypt, &req, Idempotency::Idempotent).await?;
        Ok(resp.plaintext.map(SecretBytes::into_zeroizing).unwrap_or_default())
    }

    /// Encrypts raw bytes in streaming mode; returns SPIKE's framed ciphertext
    /// (`version ‖ nonce ‖ ciphertext`), suitable for files.
    pub async fn encrypt_bytes(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let raw = self
            .send(
                Route::CipherEncrypt,
                plaintext,
                CONTENT_TYPE_OCTET_STREAM,
                Idempotency::Idempotent,
            )
            .await?;
        if raw.status != 200 {
            return Err(status_error(raw.status, &raw.body, raw.retry_after));
        }
        Ok(raw.body.to_vec())
    }

    /// Decrypts framed bytes made by [`Spike::encrypt_bytes`].
    pub async fn decrypt_bytes(&self, framed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        CipherStream::parse(framed).map_err(|code| Error::InvalidInput {
            what: "ciphertext".into(),
            reason: format!("not a SPIKE ciphertext ({code})"),
        })?;
        let raw = self
            .send(Route::CipherDecrypt, framed, CONTENT_TYPE_OCTET_STREAM, Idempotency::Idempotent)
            .await?;
        if raw.status != 200 {
            return Err(status_error(raw.status, &raw.body, raw.retry_after));
        }
        Ok(raw.body)
    }
}
