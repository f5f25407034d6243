//! SPIKE's own record and cipher encryption, for moving data out of a SPIKE Nexus.
//!
//! SPIKE (Go) seals every SQLite column and every encryption-as-a-service ciphertext with
//! plain AES-256-GCM under its root key itself: no key derivation, no associated data, 12-byte
//! random nonces (`app/nexus/internal/state/backend/sqlite/persist/crypto.go`). A secret's
//! metadata row has one stored nonce for five fields; each field is sealed under that nonce
//! XOR a 12-byte salt naming the field (`persist/field_nonce.go`). A policy row's three fields
//! share its one nonce as is.
//!
//! Only opening is offered: spike-rs never writes in SPIKE's format.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::secret::KEY_LEN;

/// Nonce length of SPIKE's AES-GCM (96 bits).
pub const NONCE_LEN: usize = 12;

/// A field of SPIKE's `secret_metadata` row, each sealed under its own derived nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataField {
    /// `encrypted_current_version`.
    CurrentVersion,
    /// `encrypted_oldest_version`.
    OldestVersion,
    /// `encrypted_created_time`.
    CreatedTime,
    /// `encrypted_updated_time`.
    UpdatedTime,
    /// `encrypted_max_versions`.
    MaxVersions,
}

impl MetadataField {
    /// The 12-byte salt SPIKE XORs into the row's nonce for this field.
    fn salt(self) -> &'static [u8; NONCE_LEN] {
        match self {
            MetadataField::CurrentVersion => b"current_ver_",
            MetadataField::OldestVersion => b"oldest_ver__",
            MetadataField::CreatedTime => b"created_tim_",
            MetadataField::UpdatedTime => b"updated_tim_",
            MetadataField::MaxVersions => b"max_versions",
        }
    }

    /// The column that holds the field.
    pub fn column(self) -> &'static str {
        match self {
            MetadataField::CurrentVersion => "encrypted_current_version",
            MetadataField::OldestVersion => "encrypted_oldest_version",
            MetadataField::CreatedTime => "encrypted_created_time",
            MetadataField::UpdatedTime => "encrypted_updated_time",
            MetadataField::MaxVersions => "encrypted_max_versions",
        }
    }
}

/// The nonce SPIKE sealed `field` under, given the metadata row's stored nonce.
pub fn field_nonce(row_nonce: &[u8], field: MetadataField) -> Result<[u8; NONCE_LEN], CryptoError> {
    let row: &[u8; NONCE_LEN] = row_nonce
        .try_into()
        .map_err(|_| CryptoError::Malformed("a SPIKE nonce must be 12 bytes"))?;
    let mut out = [0u8; NONCE_LEN];
    for ((o, n), s) in out.iter_mut().zip(row).zip(field.salt()) {
        *o = n ^ s;
    }
    Ok(out)
}

/// Opens `ciphertext` (with its 16-byte tag) sealed by SPIKE under `key` with `nonce`; any
/// mismatch is [`CryptoError::Integrity`].
pub fn open(
    key: &[u8; KEY_LEN],
    nonce: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if nonce.len() != NONCE_LEN {
        return Err(CryptoError::Malformed("a SPIKE nonce must be 12 bytes"));
    }
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &[] })
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Integrity)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN], plain: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new(key.into());
        cipher.encrypt(Nonce::from_slice(nonce), plain).unwrap()
    }

    #[test]
    fn opens_what_plain_aes_gcm_sealed_and_nothing_else() {
        let key = [7u8; KEY_LEN];
        let nonce = [1u8; NONCE_LEN];
        let mut ct = seal(&key, &nonce, b"{\"k\":\"v\"}");
        assert_eq!(&open(&key, &nonce, &ct).unwrap()[..], b"{\"k\":\"v\"}");
        assert_eq!(open(&[8u8; KEY_LEN], &nonce, &ct).unwrap_err(), CryptoError::Integrity);
        ct[0] ^= 1;
        assert_eq!(open(&key, &nonce, &ct).unwrap_err(), CryptoError::Integrity);
        assert!(matches!(open(&key, &nonce[..11], &ct), Err(CryptoError::Malformed(_))));
    }

    #[test]
    fn field_nonces_xor_the_salt_into_the_row_nonce() {
        let zero = [0u8; NONCE_LEN];
        assert_eq!(&field_nonce(&zero, MetadataField::MaxVersions).unwrap(), b"max_versions");
        let n = field_nonce(&[0xff; NONCE_LEN], MetadataField::CurrentVersion).unwrap();
        assert_eq!(n[0], b'c' ^ 0xff);
        assert!(field_nonce(&zero[..11], MetadataField::OldestVersion).is_err());
    }
}
