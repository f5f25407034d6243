//! Encryption as a service: the AEAD behind `/v1/cipher/encrypt|decrypt`.
//!
//! SPIKE's wire shape is a version byte, a 12-byte nonce and the ciphertext with its tag. We
//! keep that shape and seal with AES-256-GCM-SIV under a key derived from the root key for this
//! purpose only ([`super::derive_key`] with [`CIPHER_PURPOSE`]), so the service can never be
//! used to open stored records, and a caller cannot learn anything about storage keys.

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::secret::{DataKey, fill_random};

/// The `derive_key` purpose label of the cipher service key.
pub const CIPHER_PURPOSE: &str = "cipher-service/v1";
/// Nonce length (96 bits).
pub const NONCE_LEN: usize = 12;
/// Associated data: binds ciphertexts to this service and format version.
const AAD: &[u8] = b"spike-rs/cipher/v1";

/// Seals `plaintext`, returning a fresh random nonce and the ciphertext with its tag.
pub fn encrypt(key: &DataKey, plaintext: &[u8]) -> Result<([u8; NONCE_LEN], Vec<u8>), CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    let cipher = Aes256GcmSiv::new(key.expose_secret().into());
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: AAD })
        .map_err(|_| CryptoError::Malformed("plaintext too long to encrypt"))?;
    Ok((nonce, ct))
}

/// Opens a ciphertext made by [`encrypt`]; any mismatch is [`CryptoError::Integrity`].
pub fn decrypt(
    key: &DataKey,
    nonce: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if nonce.len() != NONCE_LEN {
        return Err(CryptoError::Malformed("cipher nonce must be 12 bytes"));
    }
    let cipher = Aes256GcmSiv::new(key.expose_secret().into());
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: AAD })
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Integrity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let key = DataKey::from_bytes(&mut [3u8; 32]);
        let (nonce, mut ct) = encrypt(&key, b"hello").unwrap();
        assert_eq!(&decrypt(&key, &nonce, &ct).unwrap()[..], b"hello");
        ct[0] ^= 1;
        assert_eq!(decrypt(&key, &nonce, &ct).unwrap_err(), CryptoError::Integrity);
        assert!(matches!(decrypt(&key, &nonce[..11], &ct), Err(CryptoError::Malformed(_))));
        let other = DataKey::from_bytes(&mut [4u8; 32]);
        ct[0] ^= 1;
        assert_eq!(decrypt(&other, &nonce, &ct).unwrap_err(), CryptoError::Integrity);
    }
}
