//! Secrets: put, get (as [`spike_secret`], an iterable of key/value pairs), list, delete,
//! undelete, destroy and metadata ([`spike_secret_metadata`]).
//!
//! Secret values handed to C live in zeroizing buffers: `spike_secret_free` overwrites them
//! before the memory is released.

use std::ffi::c_char;

use ::spike_client::spike_core::secret::SecretValues;

use crate::client::spike_client;
use crate::error::{Fault, spike_result};
use crate::ffi::{Castable, free_boxed, try_out, try_ref, try_slice, try_str};
use crate::panic::{catch_field, catch_new, catch_result, catch_void};
use crate::slice::{CBuf, StrList, check_index, spike_str, spike_str_list};

/// One version of a secret: key/value pairs in key order. Read with `spike_secret_len` and
/// `spike_secret_get` (or `spike_secret_lookup`); free with `spike_secret_free`, which
/// zeroizes every key and value. Immutable, so it may be read from several threads.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct spike_secret {
    _private: [u8; 0],
}

/// The Rust side of [`spike_secret`].
#[derive(Debug)]
pub(crate) struct Secret {
    pairs: Vec<(CBuf, CBuf)>,
}

impl Castable for spike_secret {
    type RustType = Secret;
}

impl Secret {
    fn from_values(values: &SecretValues) -> Self {
        // `values` zeroizes its own copy when the caller drops it.
        Self { pairs: values.iter().map(|(k, v)| (CBuf::new(k), CBuf::new(v))).collect() }
    }
}

/// A secret's metadata: current, oldest and maximum version numbers, times, and one
/// `spike_secret_version` per kept version. Free with `spike_secret_metadata_free`.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct spike_secret_metadata {
    _private: [u8; 0],
}

/// One kept version of a secret, as `spike_secret_metadata_version` reports it.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct spike_secret_version {
    /// The version number (1, 2, ...).
    pub version: u64,
    /// When it was written, in seconds since the Unix epoch (UTC).
    pub created_time: i64,
    /// When it was soft-deleted, in seconds since the Unix epoch; 0 while `deleted` is false.
    pub deleted_time: i64,
    /// True if this version is soft-deleted (`spike_client_undelete_secret` restores it).
    pub deleted: bool,
}

/// The Rust side of [`spike_secret_metadata`].
#[derive(Debug)]
pub(crate) struct Metadata {
    current_version: u64,
    oldest_version: u64,
    max_versions: u64,
    created_time: i64,
    updated_time: i64,
    versions: Vec<spike_secret_version>,
}

impl Castable for spike_secret_metadata {
    type RustType = Metadata;
}

/// The C strings of a key/value array argument.
fn pairs<'a>(
    keys: &'a [*const c_char],
    values: &'a [*const c_char],
) -> Result<SecretValues, Fault> {
    let mut out = SecretValues::new();
    for (i, (k, v)) in keys.iter().zip(values).enumerate() {
        let k = try_str!(*k, &format!("keys[{i}]"));
        let v = try_str!(*v, &format!("values[{i}]"));
        out.insert(k, v);
    }
    Ok(out)
}

/// Writes a new version of the secret at `path` with `count` key/value pairs: `keys[i]` maps
/// to `values[i]` (a repeated key keeps its last value). Nothing is retained: the strings are
/// copied, and the copies are zeroized once sent.
///
/// Returns `SPIKE_RESULT_INVALID_ARGUMENT` for an invalid path or `count == 0`,
/// `SPIKE_RESULT_FORBIDDEN` without write permission. Writes are never retried.
///
/// # Safety
///
/// `client` must be NULL or a live client; `path` NULL or a NUL-terminated string; `keys` and
/// `values` NULL (only with `count == 0`) or arrays of `count` pointers, each NULL or a
/// NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_put_secret(
    client: *const spike_client,
    path: *const c_char,
    keys: *const *const c_char,
    values: *const *const c_char,
    count: usize,
) -> spike_result {
    catch_result(|| {
        let client = try_ref!(client);
        let path = try_str!(path);
        let keys = try_slice!(keys, count);
        let values = try_slice!(values, count);
        let secret = pairs(keys, values)?;
        client.run(|s| s.put_secret(path, secret))?;
        Ok(())
    })
}

/// Reads version `version` of the secret at `path` (0: the current version).
///
/// On success `*out` is a secret the caller owns and must free with `spike_secret_free`; on
/// failure it is NULL. `SPIKE_RESULT_NOT_FOUND` if the secret or version does not exist or is
/// deleted; `SPIKE_RESULT_FORBIDDEN` without read permission.
///
/// # Safety
///
/// `client` must be NULL or a live client; `path` NULL or a NUL-terminated string; `out` NULL
/// or a writable `spike_secret *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_get_secret(
    client: *const spike_client,
    path: *const c_char,
    version: u64,
    out: *mut *mut spike_secret,
) -> spike_result {
    catch_new!(out, {
        let client = try_ref!(client);
        let path = try_str!(path);
        let values = client.run(|s| s.get_secret_version(path, version))?;
        Secret::from_values(&values)
    })
}

/// The number of key/value pairs in `secret` (0 if `secret` is NULL).
///
/// # Safety
///
/// `secret` must be NULL or a live `spike_secret`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_secret_len(secret: *const spike_secret) -> usize {
    // SAFETY: forwarded contract.
    unsafe { catch_field(secret, 0, |s| s.pairs.len()) }
}

/// Sets `*key` and `*value` to views of the pair at `index` (pairs are in key order). The
/// views stay valid until `secret` is freed.
///
/// `SPIKE_RESULT_INVALID_ARGUMENT` if `index >= spike_secret_len(secret)`.
///
/// # Safety
///
/// `secret` must be NULL or a live `spike_secret`; `key` and `value` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_secret_get(
    secret: *const spike_secret,
    index: usize,
    key: *mut spike_str,
    value: *mut spike_str,
) -> spike_result {
    catch_result(|| {
        let key = try_out!(key);
        let value = try_out!(value);
        let secret = try_ref!(secret);
        check_index(index, secret.pairs.len(), "secret")?;
        let (k, v) = &secret.pairs[index];
        *key = k.view();
        *value = v.view();
        Ok(())
    })
}

/// Sets `*value` to a view of the value under `key` (valid until `secret` is freed).
///
/// `SPIKE_RESULT_NOT_FOUND` if the secret has no such key.
///
/// # Safety
///
/// `secret` must be NULL or a live `spike_secret`; `key` NULL or a NUL-terminated string;
/// `value` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_secret_lookup(
    secret: *const spike_secret,
    key: *const c_char,
    value: *mut spike_str,
) -> spike_result {
    catch_result(|| {
        let value = try_out!(value);
        let secret = try_ref!(secret);
        let key = try_str!(key);
        let found = secret.pairs.iter().find(|(k, _)| k.as_bytes() == key.as_bytes());
        match found {
            Some((_, v)) => {
                *value = v.view();
                Ok(())
            }
            None => {
                Err(Fault::new(spike_result::NotFound, format!("the secret has no key {key:?}")))
            }
        }
    })
}

/// Zeroizes and frees a secret. NULL is a no-op; views into it become invalid.
///
/// # Safety
///
/// `secret` must be NULL or a `spike_secret` from this library not yet freed; do not use it
/// afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_secret_free(secret: *mut spike_secret) {
    catch_void(|| free_boxed!(spike_secret, secret))
}

/// Lists the secret paths this identity may see (empty when there are none).
///
/// On success `*out` is a list the caller owns and must free with `spike_str_list_free`.
///
/// # Safety
///
/// `client` must be NULL or a live client; `out` NULL or a writable `spike_str_list *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_list_secrets(
    client: *const spike_client,
    out: *mut *mut spike_str_list,
) -> spike_result {
    catch_new!(out, {
        let client = try_ref!(client);
        StrList::from_strings(&client.run(|s| s.list_secrets())?)
    })
}

/// Which versions-taking call to make.
#[derive(Clone, Copy)]
enum VersionsOp {
    Delete,
    Undelete,
    Destroy,
}

/// Shared body of delete, undelete and destroy.
///
/// # Safety
///
/// As the entry points that call it.
unsafe fn versions_call(
    op: VersionsOp,
    client: *const spike_client,
    path: *const c_char,
    versions: *const u64,
    count: usize,
) -> spike_result {
    catch_result(|| {
        let client = try_ref!(client);
        let path = try_str!(path);
        let versions = try_slice!(versions, count);
        match op {
            VersionsOp::Delete => client.run(|s| s.delete_secret(path, versions))?,
            VersionsOp::Undelete => client.run(|s| s.undelete_secret(path, versions))?,
            VersionsOp::Destroy => client.run(|s| s.destroy_secret(path, versions))?,
        }
        Ok(())
    })
}

/// Soft-deletes `count` versions of the secret at `path` (`count == 0`: the current version).
/// Deleted versions can be restored with `spike_client_undelete_secret`.
///
/// # Safety
///
/// `client` must be NULL or a live client; `path` NULL or a NUL-terminated string; `versions`
/// NULL (only with `count == 0`) or an array of `count` numbers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_delete_secret(
    client: *const spike_client,
    path: *const c_char,
    versions: *const u64,
    count: usize,
) -> spike_result {
    // SAFETY: forwarded contract.
    unsafe { versions_call(VersionsOp::Delete, client, path, versions, count) }
}

/// Restores soft-deleted versions (`count == 0`: the latest deleted version).
///
/// # Safety
///
/// As `spike_client_delete_secret`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_undelete_secret(
    client: *const spike_client,
    path: *const c_char,
    versions: *const u64,
    count: usize,
) -> spike_result {
    // SAFETY: forwarded contract.
    unsafe { versions_call(VersionsOp::Undelete, client, path, versions, count) }
}

/// Permanently removes versions (`count == 0`: the current version). Cannot be undone.
///
/// # Safety
///
/// As `spike_client_delete_secret`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_destroy_secret(
    client: *const spike_client,
    path: *const c_char,
    versions: *const u64,
    count: usize,
) -> spike_result {
    // SAFETY: forwarded contract.
    unsafe { versions_call(VersionsOp::Destroy, client, path, versions, count) }
}

/// Reads the metadata of the secret at `path` (no values).
///
/// On success `*out` is metadata the caller owns and must free with
/// `spike_secret_metadata_free`.
///
/// # Safety
///
/// `client` must be NULL or a live client; `path` NULL or a NUL-terminated string; `out` NULL
/// or a writable `spike_secret_metadata *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_secret_metadata(
    client: *const spike_client,
    path: *const c_char,
    out: *mut *mut spike_secret_metadata,
) -> spike_result {
    catch_new!(out, {
        let client = try_ref!(client);
        let path = try_str!(path);
        let m = client.run(|s| s.secret_metadata(path))?;
        let versions = m
            .versions
            .unwrap_or_default()
            .into_values()
            .map(|v| spike_secret_version {
                version: v.version,
                created_time: v.created_time.unix_timestamp(),
                deleted_time: v.deleted_time.map_or(0, |t| t.unix_timestamp()),
                deleted: v.deleted_time.is_some(),
            })
            .collect();
        Metadata {
            current_version: m.metadata.current_version,
            oldest_version: m.metadata.oldest_version,
            max_versions: m.metadata.max_versions,
            created_time: m.metadata.created_time.unix_timestamp(),
            updated_time: m.metadata.updated_time.unix_timestamp(),
            versions,
        }
    })
}

/// The current version number (0 when every version is deleted; 0 if `metadata` is NULL).
///
/// # Safety
///
/// `metadata` must be NULL or live `spike_secret_metadata`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_secret_metadata_current_version(
    metadata: *const spike_secret_metadata,
) -> u64 {
    // SAFETY: forwarded contract.
    unsafe { catch_field(metadata, 0, |m| m.current_version) }
}

/// The oldest kept version number (0 when none; 0 if `metadata` is NULL).
///
/// # Safety
///
/// `metadata` must be NULL or live `spike_secret_metadata`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_secret_metadata_oldest_version(
    metadata: *const spike_secret_metadata,
) -> u64 {
    // SAFETY: forwarded contract.
    unsafe { catch_field(metadata, 0, |m| m.oldest_version) }
}

/// How many versions Nexus keeps of this secret (0 if `metadata` is NULL).
///
/// # Safety
///
/// `metadata` must be NULL or live `spike_secret_metadata`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_secret_metadata_max_versions(
    metadata: *const spike_secret_metadata,
) -> u64 {
    // SAFETY: forwarded contract.
    unsafe { catch_field(metadata, 0, |m| m.max_versions) }
}

/// When the secret was first written, in seconds since the Unix epoch (0 if NULL).
///
/// # Safety
///
/// `metadata` must be NULL or live `spike_secret_metadata`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_secret_metadata_created_time(
    metadata: *const spike_secret_metadata,
) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { catch_field(metadata, 0, |m| m.created_time) }
}

/// When the secret last changed, in seconds since the Unix epoch (0 if NULL).
///
/// # Safety
///
/// `metadata` must be NULL or live `spike_secret_metadata`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_secret_metadata_updated_time(
    metadata: *const spike_secret_metadata,
) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { catch_field(metadata, 0, |m| m.updated_time) }
}

/// The number of kept versions described (0 if `metadata` is NULL).
///
/// # Safety
///
/// `metadata` must be NULL or live `spike_secret_metadata`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_secret_metadata_versions_len(
    metadata: *const spike_secret_metadata,
) -> usize {
    // SAFETY: forwarded contract.
    unsafe { catch_field(metadata, 0, |m| m.versions.len()) }
}

/// Copies the description of the `index`-th kept version (in version order) into `*out`.
///
/// `SPIKE_RESULT_INVALID_ARGUMENT` if `index >= spike_secret_metadata_versions_len(metadata)`.
///
/// # Safety
///
/// `metadata` must be NULL or live `spike_secret_metadata`; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_secret_metadata_version(
    metadata: *const spike_secret_metadata,
    index: usize,
    out: *mut spike_secret_version,
) -> spike_result {
    catch_result(|| {
        let out = try_out!(out);
        let metadata = try_ref!(metadata);
        check_index(index, metadata.versions.len(), "version list")?;
        *out = metadata.versions[index];
        Ok(())
    })
}

/// Frees metadata. NULL is a no-op.
///
/// # Safety
///
/// `metadata` must be NULL or metadata from this library not yet freed; do not use it
/// afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_secret_metadata_free(metadata: *mut spike_secret_metadata) {
    catch_void(|| free_boxed!(spike_secret_metadata, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi;

    #[test]
    fn secret_pairs_are_in_key_order_and_looked_up_by_key() {
        let values: SecretValues = [("user", "admin"), ("pass", "p\0w")].into_iter().collect();
        let secret = ffi::to_boxed_ptr::<spike_secret>(Secret::from_values(&values));
        let empty = spike_str { data: std::ptr::null(), len: 0 };
        let (mut k, mut v) = (empty, empty);
        // SAFETY: `secret` is live until freed at the end; the out-parameters are writable.
        unsafe {
            assert_eq!(spike_secret_len(secret), 2);
            assert_eq!(spike_secret_get(secret, 0, &mut k, &mut v), spike_result::Ok);
            assert_eq!((k.len, v.len), (4, 3), "interior NUL kept, length exact");
            assert_eq!(spike_secret_lookup(secret, c"user".as_ptr(), &mut v), spike_result::Ok);
            assert_eq!(v.len, 5);
            assert_eq!(
                spike_secret_lookup(secret, c"nope".as_ptr(), &mut v),
                spike_result::NotFound
            );
            assert_eq!(spike_secret_get(secret, 2, &mut k, &mut v), spike_result::InvalidArgument);
            spike_secret_free(secret);
        }
    }

    #[test]
    fn key_value_arrays_name_the_bad_element() {
        let keys = [c"a".as_ptr(), std::ptr::null()];
        let values = [c"1".as_ptr(), c"2".as_ptr()];
        let err = pairs(&keys, &values).unwrap_err();
        assert_eq!(err.code, spike_result::NullParameter);
        assert!(err.detail.contains("keys[1]"), "{}", err.detail);
        let bad = [0xffu8, 0];
        let keys = [c"a".as_ptr(), bad.as_ptr().cast::<c_char>()];
        let err = pairs(&keys, &values).unwrap_err();
        assert_eq!(err.code, spike_result::InvalidUtf8);
    }
}
