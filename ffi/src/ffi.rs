//! The unsafe primitives, all in one place: turning C pointers into Rust references and back.
//!
//! Opaque C types (`spike_client`, `spike_secret`, ...) are zero-sized Rust structs that only
//! name a type for the header; [`Castable`] ties each one to the Rust type really behind the
//! pointer, which is always a `Box` handed to C with [`to_boxed_ptr`] and taken back exactly
//! once by [`drop_boxed`].
//!
//! Entry points use the `try_*!` macros, which name the argument in the failure detail and
//! return early with `SPIKE_RESULT_NULL_PARAMETER` or `SPIKE_RESULT_INVALID_UTF8`.
//!
//! ## Unsafety
//!
//! Every function here trusts the C caller's side of the contract documented on the entry
//! point (in the header): a non-NULL pointer points to a live object of the right type,
//! created by this library and not yet freed, or to as many readable elements as the length
//! says; C strings are NUL-terminated. NULL is always checked here, never assumed.

use std::ffi::{CStr, c_char};

use crate::error::{Fault, spike_result};

/// Ties an opaque C handle type to the Rust type a pointer to it really points to.
pub(crate) trait Castable {
    /// What is really behind the pointer (in a `Box`).
    type RustType;
}

/// Moves `value` to the heap and hands C an owning pointer; C must return it to
/// [`drop_boxed`] (through the type's `spike_*_free`).
pub(crate) fn to_boxed_ptr<C: Castable>(value: C::RustType) -> *mut C {
    Box::into_raw(Box::new(value)).cast::<C>()
}

/// Borrows the object behind a handle, or fails with `NULL_PARAMETER` naming `name`.
///
/// # Safety
///
/// `ptr` is NULL or came from [`to_boxed_ptr::<C>`] and has not been freed; the borrow must
/// not outlive the C call.
pub(crate) unsafe fn ref_from_ptr<'a, C: Castable>(
    ptr: *const C,
    name: &str,
) -> Result<&'a C::RustType, Fault> {
    // SAFETY: per this function's contract, a non-NULL `ptr` points to a live `C::RustType`
    // (the opaque `C` is only ever a cast of that Box pointer).
    unsafe { ptr.cast::<C::RustType>().as_ref() }.ok_or_else(|| null(name))
}

/// Mutably borrows the object behind a handle, or fails with `NULL_PARAMETER`.
///
/// # Safety
///
/// As [`ref_from_ptr`], and no other reference to the object exists during the call (C callers
/// are told not to share builders between threads).
pub(crate) unsafe fn mut_from_ptr<'a, C: Castable>(
    ptr: *mut C,
    name: &str,
) -> Result<&'a mut C::RustType, Fault> {
    // SAFETY: per this function's contract, a non-NULL `ptr` points to a live, unaliased
    // `C::RustType`.
    unsafe { ptr.cast::<C::RustType>().as_mut() }.ok_or_else(|| null(name))
}

/// Takes ownership back from C; `None` for NULL.
///
/// # Safety
///
/// `ptr` is NULL or came from [`to_boxed_ptr::<C>`] and has not been freed; C must not use it
/// afterwards.
pub(crate) unsafe fn take_boxed<C: Castable>(ptr: *mut C) -> Option<Box<C::RustType>> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: per this function's contract, `ptr` is a `Box<C::RustType>` given to C by
    // `to_boxed_ptr` and returned to us exactly once.
    Some(unsafe { Box::from_raw(ptr.cast::<C::RustType>()) })
}

/// Drops an object C hands back (its `Drop` zeroizes secrets); NULL is a no-op.
///
/// # Safety
///
/// As [`take_boxed`].
pub(crate) unsafe fn drop_boxed<C: Castable>(ptr: *mut C) {
    // SAFETY: forwarded contract.
    drop(unsafe { take_boxed::<C>(ptr) });
}

/// The place an out-parameter points to, or `NULL_PARAMETER`.
///
/// # Safety
///
/// `ptr` is NULL or points to a writable, properly aligned `T`.
pub(crate) unsafe fn out_from_ptr<'a, T>(ptr: *mut T, name: &str) -> Result<&'a mut T, Fault> {
    // SAFETY: per this function's contract.
    unsafe { ptr.as_mut() }.ok_or_else(|| null(name))
}

/// A C string argument as `&str`: `NULL_PARAMETER` for NULL, `INVALID_UTF8` for bad bytes.
///
/// # Safety
///
/// `ptr` is NULL or points to a NUL-terminated string that stays valid during the call.
pub(crate) unsafe fn str_from_ptr<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, Fault> {
    if ptr.is_null() {
        return Err(null(name));
    }
    // SAFETY: non-NULL and NUL-terminated per this function's contract.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|e| {
        Fault::new(
            spike_result::InvalidUtf8,
            format!(
                "argument `{name}` is not valid UTF-8 (bad byte at offset {})",
                e.valid_up_to()
            ),
        )
    })
}

/// An optional C string argument: NULL means "not given".
///
/// # Safety
///
/// As [`str_from_ptr`].
pub(crate) unsafe fn opt_str_from_ptr<'a>(
    ptr: *const c_char,
    name: &str,
) -> Result<Option<&'a str>, Fault> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { str_from_ptr(ptr, name) }.map(Some)
}

/// A C array argument as a slice. NULL is accepted only together with `len == 0`.
///
/// # Safety
///
/// `ptr` is NULL or points to `len` initialised, aligned `T`s that stay valid and unmodified
/// during the call.
pub(crate) unsafe fn slice_from_ptr<'a, T>(
    ptr: *const T,
    len: usize,
    name: &str,
) -> Result<&'a [T], Fault> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Fault::new(
            spike_result::NullParameter,
            format!("argument `{name}` is NULL but its length is {len}"),
        ));
    }
    // SAFETY: non-NULL and `len` readable elements per this function's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Writes `msg` into a caller's buffer, NUL-terminated, cut at a character boundary, and the
/// number of bytes written (without the NUL) into `*out_n`.
///
/// # Safety
///
/// `buf` is NULL or points to `len` writable bytes; `out_n` is NULL or points to a writable
/// `usize`.
pub(crate) unsafe fn write_message(buf: *mut c_char, len: usize, out_n: *mut usize, msg: &str) {
    let mut n = 0;
    if !buf.is_null() && len > 0 {
        n = msg.len().min(len - 1);
        while !msg.is_char_boundary(n) {
            n -= 1;
        }
        // SAFETY: `buf` has `len` writable bytes and `n < len`; the source is a live &str
        // that cannot overlap a buffer C owns.
        unsafe {
            std::ptr::copy_nonoverlapping(msg.as_ptr().cast::<c_char>(), buf, n);
            *buf.add(n) = 0;
        }
    }
    if !out_n.is_null() {
        // SAFETY: non-NULL and writable per this function's contract.
        unsafe { *out_n = n };
    }
}

fn null(name: &str) -> Fault {
    Fault::new(spike_result::NullParameter, format!("argument `{name}` is NULL"))
}

/// Borrows a handle argument, returning `NULL_PARAMETER` from the entry point if it is NULL.
macro_rules! try_ref {
    ($ptr:ident) => {
        // SAFETY: every entry point's `# Safety` section requires handle arguments to be NULL
        // or live handles of this type from this library.
        unsafe { $crate::ffi::ref_from_ptr($ptr, stringify!($ptr)) }?
    };
}

/// Mutably borrows a handle argument (builders), or returns `NULL_PARAMETER`.
macro_rules! try_mut {
    ($ptr:ident) => {
        // SAFETY: as `try_ref!`, and builders are documented as not shareable across threads.
        unsafe { $crate::ffi::mut_from_ptr($ptr, stringify!($ptr)) }?
    };
}

/// The target of an out-parameter, or returns `NULL_PARAMETER`.
macro_rules! try_out {
    ($ptr:ident) => {
        // SAFETY: every entry point's `# Safety` section requires out-parameters to be NULL or
        // writable.
        unsafe { $crate::ffi::out_from_ptr($ptr, stringify!($ptr)) }?
    };
}

/// A required string argument, or returns `NULL_PARAMETER` / `INVALID_UTF8`.
macro_rules! try_str {
    ($ptr:expr, $name:expr) => {
        // SAFETY: every entry point's `# Safety` section requires string arguments to be NULL
        // or NUL-terminated.
        unsafe { $crate::ffi::str_from_ptr($ptr, $name) }?
    };
    ($ptr:ident) => {
        try_str!($ptr, stringify!($ptr))
    };
}

/// An optional string argument (NULL = not given), or returns `INVALID_UTF8`.
macro_rules! try_opt_str {
    ($ptr:ident) => {
        // SAFETY: as `try_str!`.
        unsafe { $crate::ffi::opt_str_from_ptr($ptr, stringify!($ptr)) }?
    };
}

/// An array argument with its length, or returns `NULL_PARAMETER`.
macro_rules! try_slice {
    ($ptr:expr, $len:expr, $name:expr) => {
        // SAFETY: every entry point's `# Safety` section requires arrays to hold as many
        // elements as the length argument says.
        unsafe { $crate::ffi::slice_from_ptr($ptr, $len, $name) }?
    };
    ($ptr:ident, $len:expr) => {
        try_slice!($ptr, $len, stringify!($ptr))
    };
}

/// Drops an object handed back by C (NULL is a no-op).
macro_rules! free_boxed {
    ($ty:ty, $ptr:ident) => {
        // SAFETY: every `*_free` function's `# Safety` section requires a pointer from this
        // library, not yet freed, and not used afterwards.
        unsafe { $crate::ffi::drop_boxed::<$ty>($ptr) }
    };
}

pub(crate) use {free_boxed, try_mut, try_opt_str, try_out, try_ref, try_slice, try_str};
