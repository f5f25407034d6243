//! The record envelope: AES-256-GCM-SIV with a versioned binary header.
//!
//! ```text
//! +--------+-----------------+--------------+----------------------------+
//! | format |  term (u32 BE)  | nonce (12 B) | ciphertext ‖ tag (16 B)    |
//! +--------+-----------------+--------------+----------------------------+
//! ```
//! The associated data is the header plus an [`Aad`] naming the record's kind, path and
//! version, so a ciphertext copied to another path, version or kind fails to open (DESIGN.md,
//! "Decisions": AAD = kind ‖ path ‖ version). GCM-SIV keeps a repeated nonce from revealing
//! plaintext XORs (RFC 8452 §9), which matters because nonces are random, not counters.

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::secret::{DataKey, fill_random};

/// The only envelope format written today.
pub const FORMAT_V1: u8 = 1;
/// Bytes before the ciphertext: format, term, nonce.
pub const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
/// AES-GCM-SIV nonce length (96 bits).
pub const NONCE_LEN: usize = 12;
/// AES-GCM-SIV tag length.
pub const TAG_LEN: usize = 16;

/// What a record is. Part of the associated data, so records cannot change kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum RecordKind {
    /// One version of a secret's values.
    SecretVersion = 1,
    /// A secret's metadata (versions, times, deletions).
    SecretMetadata = 2,
    /// A policy.
    Policy = 3,
    /// The keyring's data keys, wrapped under the root key.
    Keyring = 4,
    /// The key check value record.
    KeyCheck = 5,
    /// Encryption-as-a-service payloads.
    Cipher = 6,
    /// Internal bookkeeping (counters and the like).
    System = 7,
}

/// Associated data binding a record to its kind, path and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aad<'a> {
    /// What the record is.
    pub kind: RecordKind,
    /// The secret path, policy id or other name the record lives under.
    pub path: &'a str,
    /// The secret version (0 where versions do not apply).
    pub version: u64,
}

impl<'a> Aad<'a> {
    /// Associated data for `kind` at `path`, `version`.
    pub fn new(kind: RecordKind, path: &'a str, version: u64) -> Self {
        Self { kind, path, version }
    }

    /// The exact bytes authenticated with the record: a domain label, the envelope header,
    /// then kind, length-prefixed path and version (length prefixes keep the encoding
    /// injective, so no two distinct bindings share bytes).
    fn encode(&self, header: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + header.len() + 13 + self.path.len());
        out.extend_from_slice(b"spike-rs/record");
        out.extend_from_slice(header);
        out.push(self.kind as u8);
        out.extend_from_slice(&(self.path.len() as u32).to_be_bytes());
        out.extend_from_slice(self.path.as_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out
    }
}

/// Seals `plaintext` under `key` (keyring term `term`) with a fresh random nonce.
pub fn seal(
    key: &DataKey,
    term: u32,
    aad: &Aad<'_>,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut header = [0u8; HEADER_LEN];
    header[0] = FORMAT_V1;
    header[1..5].copy_from_slice(&term.to_be_bytes());
    fill_random(&mut header[5..])?;
    let cipher = Aes256GcmSiv::new(key.expose_secret().into());
    let nonce = Nonce::from_slice(&header[5..]);
    let ad = aad.encode(&header);
    let ct = cipher
        .encrypt(nonce, Payload { msg: plaintext, aad: &ad })
        // Encryption fails only for inputs beyond 2^36 bytes, far above our body caps.
        .map_err(|_| CryptoError::Malformed("plaintext too long to encrypt"))?;
    let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Reads the keyring term from a record's header without decrypting it.
pub fn record_term(record: &[u8]) -> Result<u32, CryptoError> {
    if record.len() < HEADER_LEN + TAG_LEN {
        return Err(CryptoError::Malformed("shorter than an envelope header and tag"));
    }
    if record[0] != FORMAT_V1 {
        return Err(CryptoError::Malformed("unknown envelope format byte"));
    }
    Ok(u32::from_be_bytes([record[1], record[2], record[3], record[4]]))
}

/// Opens a record sealed by [`seal`] under `key`, checking it is bound to `aad`.
pub fn open(
    key: &DataKey,
    aad: &Aad<'_>,
    record: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    record_term(record)?;
    let (header, ct) = record.split_at(HEADER_LEN);
    let cipher = Aes256GcmSiv::new(key.expose_secret().into());
    let ad = aad.encode(header);
    cipher
        .decrypt(Nonce::from_slice(&header[5..]), Payload { msg: ct, aad: &ad })
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Integrity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> DataKey {
        DataKey::from_bytes(&mut [b; 32])
    }

    #[test]
    fn header_layout_is_pinned() {
        let rec = seal(&key(1), 0x0102_0304, &Aad::new(RecordKind::Policy, "p", 0), b"x").unwrap();
        assert_eq!(rec[0], FORMAT_V1);
        assert_eq!(&rec[1..5], &[1, 2, 3, 4]);
        assert_eq!(rec.len(), HEADER_LEN + 1 + TAG_LEN);
        assert_eq!(record_term(&rec).unwrap(), 0x0102_0304);
    }

    #[test]
    fn nonces_are_fresh() {
        let aad = Aad::new(RecordKind::SecretVersion, "a", 1);
        let a = seal(&key(1), 1, &aad, b"same").unwrap();
        let b = seal(&key(1), 1, &aad, b"same").unwrap();
        assert_ne!(a[5..HEADER_LEN], b[5..HEADER_LEN]);
        assert_ne!(a, b);
    }

    #[test]
    fn malformed_records_are_rejected_without_panicking() {
        let k = key(1);
        let aad = Aad::new(RecordKind::SecretVersion, "a", 1);
        for len in 0..HEADER_LEN + TAG_LEN {
            assert!(matches!(open(&k, &aad, &vec![1u8; len]), Err(CryptoError::Malformed(_))));
        }
        let mut rec = seal(&k, 1, &aad, b"v").unwrap();
        rec[0] = 2;
        assert!(matches!(open(&k, &aad, &rec), Err(CryptoError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn round_trip_and_binding(
            plaintext in proptest::collection::vec(any::<u8>(), 0..2048),
            path in "[a-z/]{1,40}",
            other_path in "[a-z/]{1,40}",
            version in 0u64..1000,
            flip in any::<prop::sample::Index>(),
        ) {
            let k = key(7);
            let aad = Aad::new(RecordKind::SecretVersion, &path, version);
            let rec = seal(&k, 3, &aad, &plaintext).unwrap();
            prop_assert_eq!(&open(&k, &aad, &rec).unwrap()[..], &plaintext[..]);
            // Moved to another path, version or kind: fails.
            if other_path != path {
                let moved = Aad::new(RecordKind::SecretVersion, &other_path, version);
                prop_assert_eq!(open(&k, &moved, &rec).unwrap_err(), CryptoError::Integrity);
            }
            let bumped = Aad::new(RecordKind::SecretVersion, &path, version + 1);
            prop_assert_eq!(open(&k, &bumped, &rec).unwrap_err(), CryptoError::Integrity);
            let rekinded = Aad::new(RecordKind::SecretMetadata, &path, version);
            prop_assert_eq!(open(&k, &rekinded, &rec).unwrap_err(), CryptoError::Integrity);
            // Any flipped byte after the format byte: fails (term bytes are authenticated too).
            let mut tampered = rec.clone();
            let i = 1 + flip.index(tampered.len() - 1);
            tampered[i] ^= 0x01;
            prop_assert!(open(&k, &aad, &tampered).is_err());
            // Wrong key: fails.
            prop_assert_eq!(open(&key(8), &aad, &rec).unwrap_err(), CryptoError::Integrity);
        }
    }
}
