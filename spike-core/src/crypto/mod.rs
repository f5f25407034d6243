//! Authenticated encryption for everything spike-rs stores.
//!
//! - [`aead`]: the versioned AES-256-GCM-SIV envelope and the associated data that binds a
//!   record to what it is (kind, path, version);
//! - [`keyring`]: data-encryption keys with term numbers, wrapped under the root key, rotated
//!   online;
//! - [`service`]: the AEAD behind SPIKE's encryption-as-a-service routes.
//! - [`spike_legacy`]: opening what SPIKE (Go) sealed, to import its store and ciphertexts;
//! - [`derive_key`]: purpose-separated keys derived from the root key (e.g. the cipher API key).

pub mod aead;
pub mod keyring;
pub mod service;
pub mod spike_legacy;

pub use aead::{Aad, RecordKind};
pub use keyring::Keyring;

use hkdf::Hkdf;
use sha2::Sha256;

use crate::secret::{DataKey, KEY_LEN, RootKey};

/// Derives a key for one purpose from the root key with HKDF-SHA256.
///
/// Each `purpose` label yields an independent key, so the encryption-as-a-service key never
/// equals, or reveals, the keys that protect stored records.
pub fn derive_key(root: &RootKey, purpose: &str) -> DataKey {
    let hk = Hkdf::<Sha256>::new(Some(b"spike-rs/derive/v1"), root.expose_secret());
    let mut okm = [0u8; KEY_LEN];
    // HKDF-SHA256 can emit up to 255 * 32 bytes; 32 is always within that bound.
    hk.expand(purpose.as_bytes(), &mut okm)
        .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 output length"));
    DataKey::from_bytes(&mut okm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_are_separated_by_purpose_and_stable() {
        let mut bytes = [9u8; KEY_LEN];
        let root = RootKey::from_bytes(&mut bytes);
        let a = derive_key(&root, "cipher");
        let b = derive_key(&root, "cipher");
        let c = derive_key(&root, "other");
        assert_eq!(a.expose_secret(), b.expose_secret());
        assert_ne!(a.expose_secret(), c.expose_secret());
        assert_ne!(a.expose_secret(), root.expose_secret());
    }
}
