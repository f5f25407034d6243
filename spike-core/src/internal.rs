//! Entry points for fuzzing only (`fuzz/`), in the manner of rustls' `internal` module: not
//! part of the API, hidden from the docs, and free to change without notice.
//!
//! Some decoders sit behind authenticated encryption, so a fuzzer feeding raw bytes to the
//! public API only ever reaches the tag check. These functions seal arbitrary plaintext the
//! way spike-rs seals its own records, so the decoders behind the tag can be fuzzed too.
#![doc(hidden)]

use crate::crypto::keyring::{WRAP_NAME, WRAP_PURPOSE};
use crate::crypto::{Aad, RecordKind, aead, derive_key};
use crate::error::CryptoError;
use crate::secret::RootKey;

/// Seals `layout` exactly as [`crate::crypto::Keyring::wrap`] seals a keyring's serialised
/// terms, so [`crate::crypto::Keyring::unwrap`] parses `layout` as if it had been stored.
pub fn seal_keyring_layout(root: &RootKey, layout: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let kek = derive_key(root, WRAP_PURPOSE);
    aead::seal(&kek, 0, &Aad::new(RecordKind::Keyring, WRAP_NAME, 0), layout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keyring;

    #[test]
    fn a_sealed_layout_is_what_unwrap_parses() {
        let root = RootKey::from_bytes(&mut [7; 32]);
        // current term 1, one term: number 1 and its 32-byte key.
        let mut layout = vec![0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
        layout.extend_from_slice(&[9; 32]);
        let ring = Keyring::unwrap(&root, &seal_keyring_layout(&root, &layout).unwrap()).unwrap();
        assert_eq!(ring.terms(), vec![1, 2], "unwrap starts a fresh term");
        layout.pop();
        let short = seal_keyring_layout(&root, &layout).unwrap();
        assert!(matches!(Keyring::unwrap(&root, &short), Err(CryptoError::Malformed(_))));
    }
}
