//! Borrowed string views handed to C ([`spike_str`]), the zeroizing buffers behind them, and
//! [`spike_str_list`], an owned list of strings (secret paths, policy names).

use std::ffi::c_char;

use zeroize::Zeroizing;

use crate::error::{Fault, spike_result};
use crate::ffi::{Castable, free_boxed, try_out, try_ref};
use crate::panic::{catch_field, catch_result, catch_void};

/// A borrowed, read-only view of a UTF-8 string owned by a spike object.
///
/// `data[len]` is always a NUL byte, so `data` can be used as a C string; but a secret value
/// may itself contain NUL bytes, so use `len` when the exact value matters. The view is valid
/// until the object it came from is freed; copy it to keep it longer.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct spike_str {
    /// The first byte; never NULL in a view filled in by this library.
    pub data: *const c_char,
    /// Length in bytes, without the terminating NUL.
    pub len: usize,
}

/// An owned string with a trailing NUL, zeroized when dropped: the storage behind a
/// [`spike_str`].
pub(crate) struct CBuf(Zeroizing<Vec<u8>>);

impl CBuf {
    pub(crate) fn new(s: &str) -> Self {
        // Exact capacity: no reallocation, so no unzeroized copy is left behind.
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        Self(Zeroizing::new(v))
    }

    pub(crate) fn view(&self) -> spike_str {
        spike_str { data: self.0.as_ptr().cast::<c_char>(), len: self.0.len() - 1 }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0[..self.0.len() - 1]
    }
}

impl std::fmt::Debug for CBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CBuf({} bytes)", self.0.len() - 1)
    }
}

/// An owned list of strings (secret paths, policy names). Free with `spike_str_list_free`.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct spike_str_list {
    _private: [u8; 0],
}

/// The Rust side of [`spike_str_list`].
#[derive(Debug)]
pub(crate) struct StrList(pub(crate) Vec<CBuf>);

impl Castable for spike_str_list {
    type RustType = StrList;
}

impl StrList {
    pub(crate) fn from_strings<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Self {
        Self(items.into_iter().map(|s| CBuf::new(s.as_ref())).collect())
    }
}

/// Fails with `INVALID_ARGUMENT` unless `index < len`.
pub(crate) fn check_index(index: usize, len: usize, what: &str) -> Result<(), Fault> {
    if index < len {
        Ok(())
    } else {
        Err(Fault::new(
            spike_result::InvalidArgument,
            format!("index {index} is out of range: the {what} has {len} entries"),
        ))
    }
}

/// The number of strings in `list` (0 if `list` is NULL).
///
/// # Safety
///
/// `list` must be NULL or a live `spike_str_list` from this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_str_list_len(list: *const spike_str_list) -> usize {
    // SAFETY: forwarded contract.
    unsafe { catch_field(list, 0, |l| l.0.len()) }
}

/// Sets `*out` to a view of the string at `index` (valid until `list` is freed).
///
/// Returns `SPIKE_RESULT_INVALID_ARGUMENT` if `index >= spike_str_list_len(list)`.
///
/// # Safety
///
/// `list` must be NULL or a live `spike_str_list`; `out` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_str_list_get(
    list: *const spike_str_list,
    index: usize,
    out: *mut spike_str,
) -> spike_result {
    catch_result(|| {
        let out = try_out!(out);
        let list = try_ref!(list);
        check_index(index, list.0.len(), "list")?;
        *out = list.0[index].view();
        Ok(())
    })
}

/// Frees a list and every string in it. NULL is a no-op; views into it become invalid.
///
/// # Safety
///
/// `list` must be NULL or a `spike_str_list` from this library not yet freed; do not use it
/// afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_str_list_free(list: *mut spike_str_list) {
    catch_void(|| free_boxed!(spike_str_list, list))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi;

    #[test]
    fn views_are_nul_terminated_and_exclude_the_nul() {
        let b = CBuf::new("héllo");
        let v = b.view();
        assert_eq!(v.len, 6);
        // SAFETY: the view points into `b`, which is alive, and has len + 1 bytes.
        let bytes = unsafe { std::slice::from_raw_parts(v.data.cast::<u8>(), v.len + 1) };
        assert_eq!(bytes, b"h\xc3\xa9llo\0");
        assert_eq!(b.as_bytes(), "héllo".as_bytes());
    }

    #[test]
    fn list_accessors_check_null_and_range() {
        let list = ffi::to_boxed_ptr::<spike_str_list>(StrList::from_strings(["a/b", "c"]));
        let mut s = spike_str { data: std::ptr::null(), len: 0 };
        // SAFETY: `list` is live until freed below; `s` is writable.
        unsafe {
            assert_eq!(spike_str_list_len(list), 2);
            assert_eq!(spike_str_list_get(list, 1, &mut s), spike_result::Ok);
            assert_eq!(s.len, 1);
            assert_eq!(spike_str_list_get(list, 2, &mut s), spike_result::InvalidArgument);
            assert_eq!(
                spike_str_list_get(list, 0, std::ptr::null_mut()),
                spike_result::NullParameter
            );
            assert_eq!(spike_str_list_len(std::ptr::null()), 0);
            spike_str_list_free(list);
            spike_str_list_free(std::ptr::null_mut());
        }
    }
}
