//! [`spike_result`], the code every fallible entry point returns; the fixed message of each
//! code; and the thread-local detail of the last failure.
//!
//! Codes are grouped in ranges so C callers can test a class at once: 1xx the caller's
//! arguments, 2xx this process's environment (Workload API, TLS, runtime), 3xx what Nexus
//! answered, 9xx this library.

use std::cell::RefCell;
use std::ffi::{c_char, c_uint};

use ::spike_client::Error;
use ::spike_client::spike_core::error::chain;

use crate::ffi;
use crate::panic::catch_void;

/// The outcome of a call: `SPIKE_RESULT_OK` (0) or the reason it failed.
///
/// After a failure, `spike_error_message` gives this code's fixed message and
/// `spike_last_error` the detail of that failure (on the same thread).
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum spike_result {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullParameter = 100,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 101,
    /// An argument was refused: a bad secret path or policy name, an empty value set, an index
    /// out of range, a URL that is not https://, unknown permission bits.
    InvalidArgument = 102,
    /// No Workload API socket: `SPIFFE_ENDPOINT_SOCKET` is unset and none was given.
    EndpointNotSet = 200,
    /// The SPIFFE Workload API gave no usable SVID: no X509-SVID, or in JWT mode no JWT-SVID
    /// for the audience (agent down, process not registered).
    WorkloadApi = 201,
    /// The TLS configuration could not be built.
    Tls = 202,
    /// The client's internal runtime could not be started.
    Runtime = 203,
    /// Nexus could not be reached: connection refused, timeout, or a failed mTLS handshake.
    NexusUnreachable = 300,
    /// Nexus has no root key yet (HTTP 503); retry later.
    NotReady = 301,
    /// Nexus refused: no policy lets this SPIFFE ID do that (HTTP 401).
    Forbidden = 302,
    /// No such secret, version, policy, or key in a secret (HTTP 404).
    NotFound = 303,
    /// Nexus rejected the request as malformed (HTTP 400).
    BadRequest = 304,
    /// A check-and-set write lost the race (HTTP 409).
    Conflict = 305,
    /// Nexus asked this client to slow down (HTTP 429).
    RateLimited = 306,
    /// Nexus failed (other HTTP 5xx, or an error code in a 200 answer).
    Server = 307,
    /// Nexus's answer did not have the expected shape.
    Protocol = 308,
    /// A bug: Rust code panicked; the panic was stopped at the C boundary.
    Panic = 900,
    /// An error this version of the library does not classify.
    Unexpected = 999,
}

impl spike_result {
    /// Every code, for lookups and tests (private: cbindgen would export it).
    const ALL: [spike_result; 19] = [
        Self::Ok,
        Self::NullParameter,
        Self::InvalidUtf8,
        Self::InvalidArgument,
        Self::EndpointNotSet,
        Self::WorkloadApi,
        Self::Tls,
        Self::Runtime,
        Self::NexusUnreachable,
        Self::NotReady,
        Self::Forbidden,
        Self::NotFound,
        Self::BadRequest,
        Self::Conflict,
        Self::RateLimited,
        Self::Server,
        Self::Protocol,
        Self::Panic,
        Self::Unexpected,
    ];

    /// The code with this numeric value, if there is one.
    pub fn from_u32(value: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| *c as u32 == value)
    }

    /// The fixed, human-readable message for this code (no secrets, no per-call detail).
    pub fn message(self) -> &'static str {
        match self {
            Self::Ok => "success",
            Self::NullParameter => "a required pointer argument was NULL",
            Self::InvalidUtf8 => "a string argument was not valid UTF-8",
            Self::InvalidArgument => "an argument was refused (see spike_last_error for which)",
            Self::EndpointNotSet => {
                "SPIFFE_ENDPOINT_SOCKET is not set and no Workload API socket was given"
            }
            Self::WorkloadApi => {
                "no usable SVID (X509-SVID or JWT-SVID) from the SPIFFE Workload API"
            }
            Self::Tls => "the TLS configuration could not be built",
            Self::Runtime => "the client's internal runtime could not be started",
            Self::NexusUnreachable => "cannot reach SPIKE Nexus",
            Self::NotReady => "SPIKE Nexus is not ready: it has no root key yet",
            Self::Forbidden => "access denied: no policy lets this SPIFFE ID do that",
            Self::NotFound => "not found",
            Self::BadRequest => "SPIKE Nexus rejected the request as invalid",
            Self::Conflict => "check-and-set conflict: the secret changed since that version",
            Self::RateLimited => "rate limited by SPIKE Nexus",
            Self::Server => "SPIKE Nexus failed",
            Self::Protocol => "unexpected response from SPIKE Nexus",
            Self::Panic => "internal error: the library panicked (a bug; please report it)",
            Self::Unexpected => "unexpected error",
        }
    }
}

/// A failure inside an entry point: the code to return and the detail to keep for
/// `spike_last_error`.
#[derive(Debug)]
pub(crate) struct Fault {
    pub(crate) code: spike_result,
    pub(crate) detail: String,
}

impl Fault {
    pub(crate) fn new(code: spike_result, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into() }
    }

    pub(crate) fn invalid(detail: impl Into<String>) -> Self {
        Self::new(spike_result::InvalidArgument, detail)
    }
}

impl From<Error> for Fault {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::EndpointNotSet => spike_result::EndpointNotSet,
            Error::WorkloadApi { .. }
            | Error::WorkloadApiUnreachable { .. }
            | Error::JwtSvid { .. }
            | Error::SourceUnavailable(_)
            | Error::Io { .. }
            | Error::KeyMismatch(_) => spike_result::WorkloadApi,
            Error::InvalidInput { .. } | Error::InvalidSpiffeId { .. } => {
                spike_result::InvalidArgument
            }
            Error::NoRuntime => spike_result::Runtime,
            Error::Tls(_) | Error::PeerRejected(_) => spike_result::Tls,
            Error::NexusUnreachable { .. } => spike_result::NexusUnreachable,
            Error::NotReady => spike_result::NotReady,
            Error::Forbidden => spike_result::Forbidden,
            Error::NotFound => spike_result::NotFound,
            // Import refusals (400 invalid, 409 conflicting with what is stored): the C API has
            // no import call, but an error it does not know must still get a class.
            Error::BadRequest(_) | Error::ImportRefused { .. } => spike_result::BadRequest,
            Error::Conflict => spike_result::Conflict,
            Error::RateLimited { .. } => spike_result::RateLimited,
            Error::Server { .. } => spike_result::Server,
            Error::Protocol(_) => spike_result::Protocol,
            _ => spike_result::Unexpected,
        };
        Self::new(code, chain(&e))
    }
}

thread_local! {
    // Per thread, like errno: a call on another thread never overwrites this thread's detail.
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Forgets the previous failure's detail (every fallible entry point starts with this).
pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|e| e.borrow_mut().clear());
}

/// Records the detail of this thread's latest failure.
pub(crate) fn set_last_error(detail: &str) {
    LAST_ERROR.with(|e| {
        let mut e = e.borrow_mut();
        e.clear();
        e.push_str(detail);
    });
}

/// This thread's latest failure detail.
pub(crate) fn last_error() -> String {
    LAST_ERROR.with(|e| e.borrow().clone())
}

/// Writes the fixed message of `code` into `buf` as a NUL-terminated string.
///
/// At most `len - 1` bytes of message are written, cut at a UTF-8 character boundary, then a
/// NUL; `*out_n` (if `out_n` is not NULL) receives the number of message bytes written, not
/// counting the NUL. With `buf` NULL or `len` 0 nothing is written and `*out_n` is 0. Unknown
/// codes get "unknown spike_result code N". 512 bytes always hold the whole message.
///
/// # Safety
///
/// `buf` must be NULL or point to `len` writable bytes; `out_n` must be NULL or point to a
/// writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_error_message(
    code: c_uint,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) {
    catch_void(|| {
        let message = match spike_result::from_u32(code) {
            Some(c) => c.message().to_owned(),
            None => format!("unknown spike_result code {code}"),
        };
        // SAFETY: this function's contract makes the caller guarantee `buf`/`len`/`out_n`.
        unsafe { ffi::write_message(buf, len, out_n, &message) };
    })
}

/// Writes the detail of the latest failed call *on this thread* into `buf`, NUL-terminated:
/// what failed and why (e.g. which argument was NULL, the Nexus URL that refused connections).
///
/// The detail is cleared when any fallible function starts, so it is empty after a success;
/// read it right after the failing call. Truncation and `out_n` work as in
/// `spike_error_message`; details are seldom longer than 1 KiB. Details never contain secret
/// values.
///
/// # Safety
///
/// `buf` must be NULL or point to `len` writable bytes; `out_n` must be NULL or point to a
/// writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_last_error(buf: *mut c_char, len: usize, out_n: *mut usize) {
    catch_void(|| {
        let detail = last_error();
        // SAFETY: this function's contract makes the caller guarantee `buf`/`len`/`out_n`.
        unsafe { ffi::write_message(buf, len, out_n, &detail) };
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip_through_u32() {
        for code in spike_result::ALL {
            assert_eq!(spike_result::from_u32(code as u32), Some(code));
        }
        assert_eq!(spike_result::from_u32(7), None);
    }

    #[test]
    fn client_errors_map_to_their_codes_with_the_full_detail() {
        let f = Fault::from(Error::Forbidden);
        assert_eq!(f.code, spike_result::Forbidden);
        assert!(f.detail.contains("access denied"), "{}", f.detail);
        let f = Fault::from(Error::NexusUnreachable {
            url: "https://127.0.0.1:1".into(),
            reason: "connection refused".into(),
        });
        assert_eq!(f.code, spike_result::NexusUnreachable);
        assert!(f.detail.contains("https://127.0.0.1:1"), "{}", f.detail);
        assert_eq!(Fault::from(Error::EndpointNotSet).code, spike_result::EndpointNotSet);
    }

    #[test]
    fn jwt_svid_and_import_errors_have_their_classes() {
        let f = Fault::from(Error::JwtSvid {
            endpoint: "unix:///tmp/agent.sock".into(),
            audience: "spike-nexus".into(),
            reason: "no identity issued".into(),
        });
        assert_eq!(f.code, spike_result::WorkloadApi);
        assert!(f.detail.contains("spike-nexus") && f.detail.contains("unix:///tmp/agent.sock"));
        for status in [400, 409] {
            let f = Fault::from(Error::ImportRefused { status, reason: "bad bundle".into() });
            assert_eq!(f.code, spike_result::BadRequest);
            assert!(f.detail.contains("bad bundle"), "{}", f.detail);
        }
    }

    #[test]
    fn messages_fit_and_truncate_on_a_character_boundary() {
        let mut buf = [0x7f as c_char; 512];
        let mut n = 0usize;
        for code in spike_result::ALL {
            // SAFETY: `buf` has 512 writable bytes and `n` is a valid size_t.
            unsafe { spike_error_message(code as u32, buf.as_mut_ptr(), buf.len(), &mut n) };
            assert_eq!(n, code.message().len());
            assert_eq!(buf[n], 0);
        }
        let mut small = [0x7f as c_char; 8];
        // SAFETY: as above, with 8 bytes.
        unsafe { spike_error_message(302, small.as_mut_ptr(), small.len(), &mut n) };
        assert_eq!(n, 7);
        assert_eq!(small[7], 0);
        // SAFETY: NULL buffers are allowed and write nothing.
        unsafe { spike_error_message(302, std::ptr::null_mut(), 0, &mut n) };
        assert_eq!(n, 0);
    }
}
