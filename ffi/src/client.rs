//! [`spike_client`]: a blocking handle over the async `spike_client::Spike`, and
//! [`spike_client_builder`] for explicit settings.
//!
//! Each client owns a small tokio runtime (one worker thread) that keeps the Workload API
//! stream (SVID rotation) and pooled connections alive between calls; every call blocks the
//! calling thread on that runtime until Nexus answers.

use std::ffi::c_char;
use std::future::Future;
use std::time::Duration;

use ::spike_client::{RetryPolicy, Spike};
use tokio::runtime::Runtime;

use crate::error::{Fault, spike_result};
use crate::ffi::{self, Castable, free_boxed, try_mut, try_opt_str, try_out, try_str};
use crate::panic::{catch_new, catch_result, catch_void};

/// How long freeing a client waits for its runtime's background work to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A client of SPIKE Nexus: one mTLS connection pool and this process's SPIFFE identity.
///
/// Create with `spike_client_new`, `spike_client_new_from_env` or a `spike_client_builder`;
/// free with `spike_client_free`. A client may be used from several threads at once; free it
/// only after every call on it has returned. Create clients after `fork()`, not before.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct spike_client {
    _private: [u8; 0],
}

/// Settings for a new `spike_client`; anything not set falls back to SPIKE's environment
/// variables. Not thread-safe: configure it from one thread.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct spike_client_builder {
    _private: [u8; 0],
}

/// The Rust side of [`spike_client`].
#[derive(Debug)]
pub(crate) struct Client {
    rt: Runtime,
    spike: Spike,
}

impl Castable for spike_client {
    type RustType = Client;
}

// The header promises that a client may be shared between threads, and results read from
// several: keep that true at compile time.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Client>();
    shareable::<crate::secret::Secret>();
    shareable::<crate::secret::Metadata>();
    shareable::<crate::slice::StrList>();
};

impl Client {
    /// Runs one SDK call to completion on this client's runtime.
    pub(crate) fn run<'a, F: Future + 'a>(
        &'a self,
        call: impl FnOnce(&'a Spike) -> F,
    ) -> F::Output {
        self.rt.block_on(call(&self.spike))
    }

    fn close(self) {
        let Client { rt, spike } = self;
        {
            // Inside the runtime's context, in case dropping the identity stream or the pool
            // needs to reach the reactor.
            let _guard = rt.enter();
            drop(spike);
        }
        rt.shutdown_timeout(SHUTDOWN_GRACE);
    }
}

/// The Rust side of [`spike_client_builder`].
#[derive(Debug, Default)]
pub(crate) struct Builder {
    socket: Option<String>,
    url: Option<String>,
    nexus_id: Option<String>,
    timeout: Option<Duration>,
    svid_timeout: Option<Duration>,
    retry_attempts: Option<u32>,
    jwt_audience: Option<String>,
}

impl Castable for spike_client_builder {
    type RustType = Builder;
}

impl Builder {
    fn build(self) -> Result<Client, Fault> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("spike-ffi")
            .enable_all()
            .build()
            .map_err(|e| {
                Fault::new(spike_result::Runtime, format!("cannot start the client's runtime: {e}"))
            })?;
        let mut b = Spike::builder();
        if let Some(socket) = self.socket {
            b = b.socket(socket);
        }
        if let Some(url) = self.url {
            b = b.url(url);
        }
        if let Some(id) = self.nexus_id {
            b = b.nexus_id(id);
        }
        if let Some(timeout) = self.timeout {
            b = b.timeout(timeout);
        }
        if let Some(timeout) = self.svid_timeout {
            b = b.svid_timeout(timeout);
        }
        if let Some(attempts) = self.retry_attempts {
            b = b.retry(RetryPolicy { attempts, ..RetryPolicy::default() });
        }
        if let Some(audience) = self.jwt_audience {
            b = b.jwt_audience(audience);
        }
        match rt.block_on(b.build()) {
            Ok(spike) => Ok(Client { rt, spike }),
            Err(e) => {
                rt.shutdown_timeout(SHUTDOWN_GRACE);
                Err(e.into())
            }
        }
    }
}

/// Creates a client configured from the environment: `SPIFFE_ENDPOINT_SOCKET`,
/// `SPIKE_NEXUS_API_URL` (or `SPIKE_NEXUS_URL`) and `SPIKE_TRUST_ROOT`.
///
/// On success `*out` is a client the caller owns and must free with `spike_client_free`; on
/// failure `*out` is NULL. Blocks until the Workload API hands out an X509-SVID (10 s at most).
///
/// # Safety
///
/// `out` must be NULL or point to a writable `spike_client *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_new_from_env(out: *mut *mut spike_client) -> spike_result {
    catch_new!(out, { Builder::default().build()? })
}

/// Creates a client for the Workload API at `socket` (e.g. `unix:///tmp/agent.sock`) and the
/// Nexus at `url` (e.g. `https://localhost:8553`). Either may be NULL to use the environment,
/// as `spike_client_new_from_env` does.
///
/// On success `*out` is a client the caller owns and must free with `spike_client_free`; on
/// failure `*out` is NULL.
///
/// # Safety
///
/// `socket` and `url` must be NULL or NUL-terminated strings; `out` must be NULL or point to a
/// writable `spike_client *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_new(
    socket: *const c_char,
    url: *const c_char,
    out: *mut *mut spike_client,
) -> spike_result {
    catch_new!(out, {
        let builder = Builder {
            socket: try_opt_str!(socket).map(str::to_owned),
            url: try_opt_str!(url).map(str::to_owned),
            ..Builder::default()
        };
        builder.build()?
    })
}

/// Frees a client: closes its connections and stops its runtime. NULL is a no-op.
///
/// # Safety
///
/// `client` must be NULL or a client from this library not yet freed, with no call on it
/// still running; do not use it afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_free(client: *mut spike_client) {
    catch_void(|| {
        // SAFETY: per this function's contract.
        if let Some(client) = unsafe { ffi::take_boxed::<spike_client>(client) } {
            client.close();
        }
    })
}

/// Creates an empty builder. The caller owns it: pass it to `spike_client_builder_build`
/// (which frees it) or free it with `spike_client_builder_free`.
///
/// # Safety
///
/// `out` must be NULL or point to a writable `spike_client_builder *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_builder_new(
    out: *mut *mut spike_client_builder,
) -> spike_result {
    catch_result(|| {
        let out = try_out!(out);
        *out = ffi::to_boxed_ptr(Builder::default());
        Ok(())
    })
}

/// Shared body of the string setters: a copy of the string `value` (named `name` in failure
/// details) goes into the builder's field that `field` picks.
///
/// # Safety
///
/// As the entry points that call it.
unsafe fn set_string(
    builder: *mut spike_client_builder,
    value: *const c_char,
    name: &str,
    field: fn(&mut Builder) -> &mut Option<String>,
) -> spike_result {
    catch_result(|| {
        let builder = try_mut!(builder);
        *field(builder) = Some(try_str!(value, name).to_owned());
        Ok(())
    })
}

/// Shared body of the timeout setters: `timeout_ms` (0 is refused) goes into the builder's
/// field that `field` picks.
///
/// # Safety
///
/// As the entry points that call it.
unsafe fn set_timeout(
    builder: *mut spike_client_builder,
    timeout_ms: u64,
    field: fn(&mut Builder) -> &mut Option<Duration>,
) -> spike_result {
    catch_result(|| {
        let builder = try_mut!(builder);
        if timeout_ms == 0 {
            return Err(Fault::invalid("timeout_ms must be greater than 0"));
        }
        *field(builder) = Some(Duration::from_millis(timeout_ms));
        Ok(())
    })
}

/// Sets the Workload API socket (default: `SPIFFE_ENDPOINT_SOCKET`). The string is copied.
///
/// # Safety
///
/// `builder` must be NULL or a live builder; `socket` NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_builder_set_socket(
    builder: *mut spike_client_builder,
    socket: *const c_char,
) -> spike_result {
    // SAFETY: forwarded contract.
    unsafe { set_string(builder, socket, "socket", |b| &mut b.socket) }
}

/// Sets Nexus's URL (default: `SPIKE_NEXUS_API_URL`, then `SPIKE_NEXUS_URL`, then
/// `https://localhost:8553`; in JWT mode, see `spike_client_builder_set_jwt_audience`,
/// `SPIKE_NEXUS_JWT_API_URL`). The string is copied; it must start with `https://`, which is
/// checked by `spike_client_builder_build`.
///
/// # Safety
///
/// `builder` must be NULL or a live builder; `url` NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_builder_set_url(
    builder: *mut spike_client_builder,
    url: *const c_char,
) -> spike_result {
    // SAFETY: forwarded contract.
    unsafe { set_string(builder, url, "url", |b| &mut b.url) }
}

/// Sets the SPIFFE ID Nexus must present, or an ID below it (SPIKE's role rule; default:
/// `spiffe://<td>/spike/nexus` or below, for each trust domain of `SPIKE_TRUST_ROOT`).
///
/// # Safety
///
/// `builder` must be NULL or a live builder; `nexus_id` NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_builder_set_nexus_id(
    builder: *mut spike_client_builder,
    nexus_id: *const c_char,
) -> spike_result {
    // SAFETY: forwarded contract.
    unsafe { set_string(builder, nexus_id, "nexus_id", |b| &mut b.nexus_id) }
}

/// Sets the time limit of one request in milliseconds (default 30000); 0 is refused.
///
/// # Safety
///
/// `builder` must be NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_builder_set_timeout_ms(
    builder: *mut spike_client_builder,
    timeout_ms: u64,
) -> spike_result {
    // SAFETY: forwarded contract.
    unsafe { set_timeout(builder, timeout_ms, |b| &mut b.timeout) }
}

/// Sets how long building the client waits for the first X509-SVID from the Workload API, in
/// milliseconds (default 10000); 0 is refused. Past it, the build fails with
/// `SPIKE_RESULT_WORKLOAD_API`.
///
/// # Safety
///
/// `builder` must be NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_builder_set_svid_timeout_ms(
    builder: *mut spike_client_builder,
    timeout_ms: u64,
) -> spike_result {
    // SAFETY: forwarded contract.
    unsafe { set_timeout(builder, timeout_ms, |b| &mut b.svid_timeout) }
}

/// Sets how many times an idempotent call is attempted in total when Nexus is unreachable,
/// not ready or rate limiting (default 4; 1 = no retry; 0 is refused). Writes are never
/// retried.
///
/// # Safety
///
/// `builder` must be NULL or a live builder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_builder_set_retry_attempts(
    builder: *mut spike_client_builder,
    attempts: u32,
) -> spike_result {
    catch_result(|| {
        let builder = try_mut!(builder);
        if attempts == 0 {
            return Err(Fault::invalid("attempts must be at least 1"));
        }
        builder.retry_attempts = Some(attempts);
        Ok(())
    })
}

/// Switches the client to JWT-SVID mode, for Nexus's JWT listener (`SPIKE_NEXUS_JWT_TLS_PORT`):
/// instead of a client certificate, each request carries `Authorization: Bearer <JWT-SVID>`
/// for `audience` (Nexus's `SPIKE_NEXUS_JWT_AUDIENCE`, by default `spike-nexus`). JWT-SVIDs
/// come from the Workload API (the socket set with `spike_client_builder_set_socket`, else
/// `SPIFFE_ENDPOINT_SOCKET`) and are renewed before they expire; Nexus is still authenticated
/// by its X509-SVID. The URL then defaults to `SPIKE_NEXUS_JWT_API_URL` instead of
/// `SPIKE_NEXUS_API_URL`. The string is copied; an empty or blank audience is refused.
///
/// A spike-rs extension: SPIKE's own Nexus has no JWT listener.
///
/// # Safety
///
/// `builder` must be NULL or a live builder; `audience` NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_builder_set_jwt_audience(
    builder: *mut spike_client_builder,
    audience: *const c_char,
) -> spike_result {
    catch_result(|| {
        let builder = try_mut!(builder);
        let audience = try_str!(audience);
        if audience.trim().is_empty() {
            return Err(Fault::invalid("audience must not be empty"));
        }
        builder.jwt_audience = Some(audience.to_owned());
        Ok(())
    })
}

/// Creates a client from `builder`, which this call always frees (on success and on error),
/// so the caller must not use or free `builder` afterwards.
///
/// On success `*out` is a client the caller owns and must free with `spike_client_free`; on
/// failure `*out` is NULL.
///
/// # Safety
///
/// `builder` must be NULL or a live builder; `out` must be NULL or point to a writable
/// `spike_client *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_builder_build(
    builder: *mut spike_client_builder,
    out: *mut *mut spike_client,
) -> spike_result {
    catch_result(|| {
        // Taken first, so the builder is freed whatever happens next.
        // SAFETY: per this function's contract.
        let builder = unsafe { ffi::take_boxed::<spike_client_builder>(builder) };
        let out = try_out!(out);
        *out = std::ptr::null_mut();
        let builder = builder
            .ok_or_else(|| Fault::new(spike_result::NullParameter, "argument `builder` is NULL"))?;
        *out = ffi::to_boxed_ptr((*builder).build()?);
        Ok(())
    })
}

/// Frees a builder that was not passed to `spike_client_builder_build`. NULL is a no-op.
///
/// # Safety
///
/// `builder` must be NULL or a builder from this library not yet freed or built.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_builder_free(builder: *mut spike_client_builder) {
    catch_void(|| free_boxed!(spike_client_builder, builder))
}
