//! The library's version, for C callers to report.

use std::ffi::c_char;

use crate::panic::catch_value;

/// `spike-ffi/<version>` with a trailing NUL, so C can use it directly.
const VERSION_STRING: &str = concat!("spike-ffi/", env!("CARGO_PKG_VERSION"), "\0");

/// This library's version as a static NUL-terminated string, e.g. `"spike-ffi/0.1.0"`.
/// Never NULL; never free it.
#[unsafe(no_mangle)]
pub extern "C" fn spike_version() -> *const c_char {
    catch_value(std::ptr::null(), || VERSION_STRING.as_ptr().cast::<c_char>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_a_c_string_with_the_crate_version() {
        // SAFETY: spike_version returns a static NUL-terminated string.
        let v = unsafe { std::ffi::CStr::from_ptr(spike_version()) };
        assert_eq!(v.to_str().unwrap(), concat!("spike-ffi/", env!("CARGO_PKG_VERSION")));
    }
}
