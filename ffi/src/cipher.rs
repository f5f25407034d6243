//! Encryption as a service: Nexus encrypts and decrypts with a key only it holds. Results are
//! [`spike_bytes`], owned byte buffers zeroized when freed.
//!
//! Ciphertexts are SPIKE's framed stream format (`version ‖ nonce ‖ ciphertext`), the same
//! bytes `spike cipher encrypt` writes to a file.

use zeroize::Zeroizing;

use crate::client::spike_client;
use crate::error::spike_result;
use crate::ffi::{Castable, free_boxed, try_ref, try_slice};
use crate::panic::{catch_field, catch_new, catch_void};

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

/// Which way a cipher call goes.
#[derive(Clone, Copy)]
enum Direction {
    Encrypt,
    Decrypt,
}

/// Shared body of encrypt and decrypt: `len` bytes at `input` (named `name` in failure details)
/// go to Nexus, and what comes back is handed to the caller through `out`.
///
/// # Safety
///
/// As the entry points that call it.
unsafe fn cipher_call(
    direction: Direction,
    client: *const spike_client,
    input: *const u8,
    name: &str,
    len: usize,
    out: *mut *mut spike_bytes,
) -> spike_result {
    catch_new!(out, {
        let client = try_ref!(client);
        let input = try_slice!(input, len, name);
        match direction {
            Direction::Encrypt => Zeroizing::new(client.run(|s| s.encrypt_bytes(input))?),
            Direction::Decrypt => client.run(|s| s.decrypt_bytes(input))?,
        }
    })
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
    // SAFETY: forwarded contract.
    unsafe { cipher_call(Direction::Encrypt, client, plaintext, "plaintext", len, out) }
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
    // SAFETY: forwarded contract.
    unsafe { cipher_call(Direction::Decrypt, client, ciphertext, "ciphertext", len, out) }
}

/// The first byte of `bytes` (valid until it is freed); NULL if `bytes` is NULL. When the
/// length is 0 the pointer is not NULL but must not be read.
///
/// # Safety
///
/// `bytes` must be NULL or a live `spike_bytes`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_bytes_data(bytes: *const spike_bytes) -> *const u8 {
    // SAFETY: forwarded contract.
    unsafe { catch_field(bytes, std::ptr::null(), |b| b.as_ptr()) }
}

/// The length of `bytes` (0 if `bytes` is NULL).
///
/// # Safety
///
/// `bytes` must be NULL or a live `spike_bytes`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_bytes_len(bytes: *const spike_bytes) -> usize {
    // SAFETY: forwarded contract.
    unsafe { catch_field(bytes, 0, |b| b.len()) }
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
