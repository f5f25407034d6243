//! The panic boundary: every entry point runs its body inside one of these functions, so a
//! Rust panic becomes `SPIKE_RESULT_PANIC` (or a harmless default) instead of unwinding into C,
//! which is undefined behaviour.
//!
//! This only works because panics unwind: the workspace never sets `panic = "abort"` for the
//! profiles that build the C library (STYLE.md §13).

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::{Fault, clear_last_error, set_last_error, spike_result};
use crate::ffi::{self, Castable};

/// Runs a fallible entry point: clears the thread's last error, returns `SPIKE_RESULT_OK` on
/// success, or the fault's code (keeping its detail) on failure or panic.
pub(crate) fn catch_result(body: impl FnOnce() -> Result<(), Fault>) -> spike_result {
    clear_last_error();
    // AssertUnwindSafe: after a panic the call fails with SPIKE_RESULT_PANIC; handles touched
    // by the panicking call hold no locks or half-written invariants that later calls trust
    // (client state is immutable after construction; results are built before they are
    // handed out).
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => spike_result::Ok,
        Ok(Err(fault)) => {
            set_last_error(&fault.detail);
            fault.code
        }
        Err(payload) => {
            set_last_error(&panic_detail(payload));
            spike_result::Panic
        }
    }
}

/// Runs a fallible entry point that hands the caller a new object through the out-parameter
/// `$out` (a `*mut *mut C` argument of the entry point): `*$out` is set to NULL, then `$body`,
/// a block that may return early with `?`, makes the object, which goes to the caller boxed.
/// A NULL `$out` fails with `NULL_PARAMETER` before the body runs.
macro_rules! catch_new {
    ($out:ident, $body:block) => {
        $crate::panic::catch_result(|| {
            let $out = $crate::ffi::try_out!($out);
            *$out = std::ptr::null_mut();
            *$out = $crate::ffi::to_boxed_ptr($body);
            Ok(())
        })
    };
}

pub(crate) use catch_new;

/// Runs an accessor that cannot fail: `field` of the object behind the handle `ptr`, or
/// `none` (0, NULL) when `ptr` is NULL or the accessor panics.
///
/// # Safety
///
/// `ptr` is NULL or a live handle of type `C` from this library.
pub(crate) unsafe fn catch_field<C: Castable, T: Copy>(
    ptr: *const C,
    none: T,
    field: impl FnOnce(&C::RustType) -> T,
) -> T {
    catch_value(none, || {
        // SAFETY: per this function's contract.
        unsafe { ffi::ref_from_ptr(ptr, "handle") }.map_or(none, field)
    })
}

/// Runs an infallible accessor; a panic yields `fallback`.
pub(crate) fn catch_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(payload) => {
            set_last_error(&panic_detail(payload));
            fallback
        }
    }
}

/// Runs a `void` entry point (the `*_free` functions); a panic is recorded and swallowed.
pub(crate) fn catch_void(body: impl FnOnce()) {
    catch_value((), body)
}

fn panic_detail(payload: Box<dyn Any + Send>) -> String {
    let what = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    };
    // Dropping a payload can itself panic (a payload type with a panicking Drop); that must
    // not escape either.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
    format!("internal error: panic in spike-ffi: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::last_error;

    #[test]
    fn a_panic_becomes_a_code_and_a_detail() {
        let code = catch_result(|| panic!("boom"));
        assert_eq!(code, spike_result::Panic);
        assert!(last_error().contains("boom"));
        assert_eq!(catch_value(7usize, || panic!("again")), 7);
    }

    #[test]
    fn success_clears_the_previous_detail() {
        let code = catch_result(|| Err(Fault::invalid("first")));
        assert_eq!(code, spike_result::InvalidArgument);
        assert_eq!(last_error(), "first");
        assert_eq!(catch_result(|| Ok(())), spike_result::Ok);
        assert_eq!(last_error(), "");
    }
}
