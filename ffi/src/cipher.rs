//! Encryption as a service: Nexus encrypts and decrypts with a key only it holds. Results are
//! [`spike_bytes`], owned byte buffers zeroized when freed.
//!
//! Ciphertexts are SPIKE's framed stream format (`version ‖ nonce ‖ ciphertext`), the same
//! bytes `spike cipher encrypt` writes to a file.

use zeroize::Zeroizing;

use crate::client::spike_client;
use crate::error::spike_result;
use crate::ffi::{self, Castable, free_boxed, try_out, try_ref, try_slice};
use crate::panic::{catch_result, catch_value, catch_void};

/// An owned byte buffer (a plaintext or a ciphertext). Read with `spike_bytes_data` and
/// `spike_bytes_len`; free with `spike_bytes_free`, which zeroizes it.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct spike_bytes {
    _private: [u8; 0],
}

impl Castable for spike_bytes {
    type RustType = Zeroizing<Vec<u8>>;
}

/// Encrypts `len` bytes at `plaintext` with Nexus's key.
///
/// On success `*out` holds the framed ciphertext; the caller owns it and must free it with
/// `spike_bytes_free`. Needs the `execute` permission (or the lite-workload role).
///
/// # Safety
///
/// `client` must be NULL or a live client; `plaintext` NULL (only with `len == 0`) or `len`
/// readable bytes; `out` NULL or a writable `spike_bytes *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_encrypt(
    client: *const spike_client,
    plaintext: *const u8,
    len: usize,
    out: *mut *mut spike_bytes,
) -> spike_result {
    catch_result(|| {
        let out = try_out!(out);
        *out = std::ptr::null_mut();
        let client = try_ref!(client);
        let plaintext = try_slice!(plaintext, len);
        let sealed = client.run(|s| s.encrypt_bytes(plaintext))?;
        *out = ffi::to_boxed_ptr::<spike_bytes>(Zeroizing::new(sealed));
        Ok(())
    })
}

/// Decrypts a framed ciphertext made by `spike_client_encrypt` (or `spike cipher`).
///
/// On success `*out` holds the plaintext; the caller owns it and must free it with
/// `spike_bytes_free`, which zeroizes it. `SPIKE_RESULT_INVALID_ARGUMENT` if the bytes are
/// not a SPIKE ciphertext.
///
/// # Safety
///
/// As `spike_client_encrypt`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_decrypt(
    client: *const spike_client,
    ciphertext: *const u8,
    len: usize,
    out: *mut *mut spike_bytes,
) -> spike_result {
    catch_result(|| {
        let out = try_out!(out);
        *out = std::ptr::null_mut();
        let client = try_ref!(client);
        let ciphertext = try_slice!(ciphertext, len);
        let plain = client.run(|s| s.decrypt_bytes(ciphertext))?;
        *out = ffi::to_boxed_ptr::<spike_bytes>(plain);
        Ok(())
    })
}

/// The first byte of `bytes` (valid until it is freed); NULL if `bytes` is NULL. When the
/// length is 0 the pointer is not NULL but must not be read.
///
/// # Safety
///
/// `bytes` must be NULL or a live `spike_bytes`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_bytes_data(bytes: *const spike_bytes) -> *const u8 {
    catch_value(std::ptr::null(), || {
        // SAFETY: per this function's contract.
        unsafe { ffi::ref_from_ptr(bytes, "bytes") }.map_or(std::ptr::null(), |b| b.as_ptr())
    })
}

/// The length of `bytes` (0 if `bytes` is NULL).
///
/// # Safety
///
/// `bytes` must be NULL or a live `spike_bytes`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_bytes_len(bytes: *const spike_bytes) -> usize {
    catch_value(0, || {
        // SAFETY: per this function's contract.
        unsafe { ffi::ref_from_ptr(bytes, "bytes") }.map_or(0, |b| b.len())
    })
}

/// Zeroizes and frees a byte buffer. NULL is a no-op.
///
/// # Safety
///
/// `bytes` must be NULL or a `spike_bytes` from this library not yet freed; do not use it
/// afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_bytes_free(bytes: *mut spike_bytes) {
    catch_void(|| free_boxed!(spike_bytes, bytes))
}
