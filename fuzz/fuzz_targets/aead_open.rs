//! Envelope and record decoding (DESIGN.md "storage rollback", "nonce reuse"; the backend is
//! hostile): arbitrary bytes never open; a sealed record opens only under the exact kind, path
//! and version it was sealed for, and any single flipped byte is an integrity error; the
//! decoders behind the tag (wrapped keyring layout, secret metadata records, key check value,
//! secret values) never panic on what they are given.
//!
//! Input: byte 0 picks the mode, the rest is the record, plaintext or layout.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use spike_core::crypto::aead::{self, FORMAT_V1, HEADER_LEN, TAG_LEN};
use spike_core::crypto::{Aad, Keyring, RecordKind};
use spike_core::error::{CryptoError, StoreError};
use spike_core::path::SecretPath;
use spike_core::secret::{DataKey, RootKey, SecretValues};
use spike_core::store::backend::Backend;
use spike_core::store::{MemoryBackend, PutOptions, SecretStore, keys, stored_key_check_value};

const KINDS: [RecordKind; 7] = [
    RecordKind::SecretVersion,
    RecordKind::SecretMetadata,
    RecordKind::Policy,
    RecordKind::Keyring,
    RecordKind::KeyCheck,
    RecordKind::Cipher,
    RecordKind::System,
];

fn data_key() -> DataKey {
    DataKey::from_bytes(&mut [0x5a; 32])
}

fn root() -> &'static RootKey {
    static ROOT: OnceLock<RootKey> = OnceLock::new();
    ROOT.get_or_init(|| RootKey::from_bytes(&mut [0x17; 32]))
}

/// Raw bytes as a stored record: the header parse is exact and nothing forged opens.
fn open_raw(record: &[u8]) {
    let term = aead::record_term(record);
    assert_eq!(term.is_ok(), record.len() >= HEADER_LEN + TAG_LEN && record[0] == FORMAT_V1);
    for kind in KINDS {
        let aad = Aad::new(kind, "fz/path", 1);
        assert!(aead::open(&data_key(), &aad, record).is_err(), "a forged record opened");
    }
    let _ = Keyring::unwrap(root(), record).map(|_| panic!("a forged keyring unwrapped"));
}

/// Seal, open, then tamper: every single-byte change must fail, and so must every other binding.
fn seal_and_tamper(data: &[u8]) {
    let (selector, plain) = data.split_first().map_or((0, data), |(s, p)| (*s, p));
    let kind = KINDS[usize::from(selector) % KINDS.len()];
    let version = u64::from(selector >> 3);
    let aad = Aad::new(kind, "fz/path", version);
    let key = data_key();
    let sealed = aead::seal(&key, u32::from(selector), &aad, plain).expect("seal");
    assert_eq!(&aead::open(&key, &aad, &sealed).expect("own record opens")[..], plain);
    assert_eq!(aead::record_term(&sealed), Ok(u32::from(selector)));
    for other in [
        Aad::new(kind, "fz/path", version.wrapping_add(1)),
        Aad::new(kind, "fz/pat", version),
        Aad::new(kind, "fz/path/", version),
        Aad::new(KINDS[(usize::from(selector) + 1) % KINDS.len()], "fz/path", version),
    ] {
        assert_eq!(aead::open(&key, &other, &sealed), Err(CryptoError::Integrity));
    }
    // Flip one byte at a position chosen by the plaintext, and one bit of the tag.
    let at = plain.first().map_or(0, |b| usize::from(*b)) % sealed.len();
    let mut bad = sealed.clone();
    bad[at] ^= 0x80;
    assert!(aead::open(&key, &aad, &bad).is_err(), "a flipped byte at {at} still opened");
    let last = sealed.len() - 1;
    let mut bad = sealed;
    bad[last] ^= 1;
    assert!(aead::open(&key, &aad, &bad).is_err());
}

/// Arbitrary layouts behind a valid wrap.
fn keyring_layout(layout: &[u8]) {
    let sealed = spike_core::internal::seal_keyring_layout(root(), layout).expect("seal");
    if let Ok(ring) = Keyring::unwrap(root(), &sealed) {
        let terms = ring.terms();
        assert!(terms.contains(&ring.current_term()));
        assert_eq!(layout.len() % 36, 8, "a layout of the wrong length was accepted");
    }
}

/// Arbitrary metadata plaintext behind a valid seal, then every store operation on it.
fn metadata_record(plain: &[u8]) {
    let backend = Arc::new(MemoryBackend::new());
    let ring = Arc::new(Keyring::generate().expect("keyring"));
    let path = SecretPath::parse("fz/secret").expect("valid path");
    let meta =
        ring.seal(&Aad::new(RecordKind::SecretMetadata, path.as_str(), 0), plain).expect("seal");
    backend.put(&keys::metadata(path.as_str()), &meta).expect("put");
    // Version 1's record, with an instance id the fuzzer can match or not.
    let mut version = plain.get(..16).unwrap_or(&[0; 16]).to_vec();
    version.extend_from_slice(br#"{"k":"v"}"#);
    let v1 = ring.seal(&Aad::new(RecordKind::SecretVersion, path.as_str(), 1), &version);
    backend.put(&keys::version(path.as_str(), 1), &v1.expect("seal")).expect("put");

    let store = SecretStore::new(backend, ring);
    let decoded = store.metadata(&path);
    if let Err(e) = &decoded {
        assert!(matches!(e, StoreError::Corrupt(_)), "unexpected error {e:?}");
    }
    let _ = store.get(&path, None);
    let _ = store.get(&path, Some(1));
    let listed = store.list();
    assert_eq!(listed.is_ok(), decoded.is_ok());
    let _ = store.delete(&path, &[]);
    let _ = store.undelete(&path, &[0, 1, u64::MAX]);
    let values: SecretValues = [("k", "v2")].into_iter().collect();
    let _ = store.put(&path, &values, &PutOptions::new().cas(1));
    let _ = store.destroy(&path, &[0]);
    let _ = store.metadata(&path);
}

fn kcv_record(raw: &[u8]) {
    let backend = MemoryBackend::new();
    backend.put(keys::KEY_CHECK, raw).expect("put");
    let kcv = stored_key_check_value(&backend);
    assert_eq!(kcv.is_ok(), raw.len() == 33 && raw[0] == 1, "{raw:?}");
}

fn secret_values(json: &[u8]) {
    if let Ok(values) = SecretValues::from_json(json) {
        let again = SecretValues::from_json(&values.to_json()).expect("own encoding decodes");
        assert_eq!(values.iter().collect::<Vec<_>>(), again.iter().collect::<Vec<_>>());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 6 {
        0 => open_raw(rest),
        1 => seal_and_tamper(rest),
        2 => keyring_layout(rest),
        3 => metadata_record(rest),
        4 => kcv_record(rest),
        _ => secret_values(rest),
    }
});
