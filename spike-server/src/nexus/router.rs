//! Request dispatch: one entry point for every route, in the order SPIKE applies its checks.
//!
//! 1. the caller's SPIFFE ID comes from the verified mTLS peer (inserted by the listener);
//! 2. a request target (path and query) longer than [`MAX_URI_BYTES`] is refused with 414
//!    before anything parses it (issue 13; its audit line holds the cut, hashed form);
//! 3. per-caller rate limit (429; spike-rs hardening);
//! 4. route = exact path + `action` query, POST only; anything else is SPIKE's 400 fallback;
//! 5. until the root key is present, every route but recover/restore answers 503;
//! 6. a handler that may wait (a write's disk flush, recombining shards, any store access on
//!    PostgreSQL) runs on a blocking thread, the rest inline; a secret GET on PostgreSQL awaits
//!    its one database read on the request's own task instead (no thread hand-off);
//! 7. the audit line is written before the response leaves; if it cannot be, the answer is
//!    500 (fail-closed). Repeated refusals from one caller are summarised per interval (see
//!    [`crate::audit`]); a periodic tick ([`spawn_audit_flusher`]) writes the summaries.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use spike_core::wire::{self, ErrorCode, FallbackResponse, Route, Service};

use super::handlers::{self, Ctx};
use super::reply::Reply;
use super::state::NexusState;
use crate::audit::AuditEvent;
pub use crate::caller::{AuthForm, Caller};

/// Longest request target (path and query, plus the authority of an absolute-form target)
/// Nexus reads; longer ones get 414 `uri_too_long` before anything parses them. SPIKE's longest
/// target is 42 bytes (`/v1/store/secrets/metadata?action=get` and
/// `/v1/store/secrets?action=undelete`); 1 KiB leaves room for parameters a proxy or a future
/// SDK may add, yet no caller can make Nexus parse, copy or log more.
pub const MAX_URI_BYTES: usize = 1024;
/// Error code of the 414 answer (a spike-rs extension; SPIKE's SDK reads only the status).
pub const URI_TOO_LONG: &str = "uri_too_long";

/// Builds Nexus's router over `state`.
pub fn router(state: Arc<NexusState>) -> Router {
    let limit = state.config().max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(dispatch)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<NexusState>>) -> Response {
    // Bootstrap reads the store state to refuse dealing a second root key over live data.
    let store = match super::recovery::store_initialised(&state).await {
        Some(true) => "initialised",
        Some(false) => "empty",
        None => "unknown",
    };
    let store = [(super::recovery::STORE_STATE_HEADER, store)];
    if state.is_ready() {
        (StatusCode::OK, store, "ready\n").into_response()
    } else {
        let why = state
            .rollback_detected()
            .or_else(|| state.recovery.summary())
            .unwrap_or_else(|| "waiting for the root key".into());
        (StatusCode::SERVICE_UNAVAILABLE, store, format!("not ready: {why}\n")).into_response()
    }
}

async fn metrics(State(state): State<Arc<NexusState>>) -> Response {
    let text = state.metrics.render(state.is_ready(), state.audit.lines());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

fn run_handler(route: Route, ctx: &Ctx<'_>) -> Reply {
    match route {
        Route::SecretPut => handlers::secrets::put(ctx),
        Route::SecretGet => handlers::secrets::get(ctx),
        Route::SecretDelete => handlers::secrets::delete(ctx),
        Route::SecretUndelete => handlers::secrets::undelete(ctx),
        Route::SecretDestroy => handlers::secrets::destroy(ctx),
        Route::SecretList => handlers::secrets::list(ctx),
        Route::SecretMetadataGet => handlers::secrets::metadata(ctx),
        Route::PolicyPut => handlers::policy::put(ctx),
        Route::PolicyGet => handlers::policy::get(ctx),
        Route::PolicyDelete => handlers::policy::delete(ctx),
        Route::PolicyList => handlers::policy::list(ctx),
        Route::CipherEncrypt => handlers::cipher::encrypt(ctx),
        Route::CipherDecrypt => handlers::cipher::decrypt(ctx),
        Route::OperatorRecover => handlers::operator::recover(ctx),
        Route::OperatorRestore => handlers::operator::restore(ctx),
        Route::OperatorRotate => handlers::operator::rotate(ctx),
        Route::BootstrapVerify => handlers::bootstrap::verify(ctx),
        Route::ImportSecret => handlers::import::secret(ctx),
        Route::ImportPolicy => handlers::import::policy(ctx),
        Route::ImportCipherKey => handlers::import::cipher_key(ctx),
        // Keeper routes are not Nexus's; resolve() never yields them for Service::Nexus.
        _ => Reply::bad_request::<FallbackResponse>(),
    }
}

async fn dispatch(
    State(state): State<Arc<NexusState>>,
    caller: Option<Extension<Caller>>,
    auth: Option<Extension<AuthForm>>,
    request: Request<Body>,
) -> Response {
    let started = Instant::now();
    let auth = auth.map_or(AuthForm::X509Svid, |Extension(a)| a);
    let (parts, body) = request.into_parts();
    let Some(Extension(Caller(caller))) = caller else {
        // The listener always inserts the caller; without one there is no identity to trust.
        return Reply::into_response(Reply::denied::<FallbackResponse>());
    };
    // Issue 13: a 64 KB URL is refused before it is parsed or copied; the audit line holds the
    // whole target cut to its cap, with its length and hash, and no action (none was parsed).
    if target_len(&parts.uri) > MAX_URI_BYTES {
        let target = parts.uri.path_and_query().map_or(parts.uri.path(), |pq| pq.as_str());
        let reply =
            Reply::status_with_code::<FallbackResponse>(414, ErrorCode::Other(URI_TOO_LONG.into()));
        return audited(&state, &caller, auth, target, "-", reply, started);
    }
    let route_path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    let action = wire::query_action(query);

    let reply = 'reply: {
        if let Err(wait) = state.limiter.check(&caller) {
            state.metrics.count_rate_limited();
            let mut r = Reply::status_with_code::<FallbackResponse>(
                429,
                ErrorCode::Other("rate_limited".into()),
            );
            r.retry_after = Some(wait.as_secs().max(1));
            break 'reply r;
        }
        let bytes: Bytes = match axum::body::to_bytes(body, state.config().max_body_bytes).await {
            Ok(b) => b,
            Err(e) if crate::listener::is_body_read_timeout(&e) => {
                // hyper closes the connection after this answer: the rest of the body is unread.
                break 'reply Reply::status_with_code::<FallbackResponse>(
                    408,
                    ErrorCode::Other("request_timeout".into()),
                );
            }
            Err(_) => {
                break 'reply Reply::status_with_code::<FallbackResponse>(
                    413,
                    ErrorCode::Other("request_too_large".into()),
                );
            }
        };
        let Some(route) = Route::resolve(Service::Nexus, parts.method.as_str(), route_path, query)
        else {
            break 'reply Reply::bad_request::<FallbackResponse>();
        };
        let sealed_ok = matches!(route, Route::OperatorRecover | Route::OperatorRestore);
        if !sealed_ok && !state.is_ready() {
            break 'reply Reply::not_ready::<FallbackResponse>();
        }
        let octet_stream = parts
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == b"application/octet-stream");
        if matches!(route, Route::SecretGet) && state.reads_block() {
            // Issue 15: a GET on PostgreSQL went request task -> blocking thread -> the
            // driver's connection task and back; most of Nexus's time was those hand-offs.
            let ctx = Ctx { state: &state, caller: &caller, body: &bytes, octet_stream };
            if let Some(reply) = handlers::secrets::get_async(&ctx).await {
                break 'reply reply;
            }
        }
        if state.reads_block() || may_block(route) {
            let state2 = state.clone();
            let caller2 = caller.clone();
            let joined = tokio::task::spawn_blocking(move || {
                let ctx = Ctx { state: &state2, caller: &caller2, body: &bytes, octet_stream };
                run_handler(route, &ctx)
            })
            .await;
            match joined {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "handler panicked");
                    Reply::internal::<FallbackResponse>()
                }
            }
        } else {
            // Reads and crypto never wait on a disk flush: run them inline and skip the
            // thread hand-off (measured: a large share of a GET's cost under load).
            let ctx = Ctx { state: &state, caller: &caller, body: &bytes, octet_stream };
            run_handler(route, &ctx)
        }
    };

    let action = if action.is_empty() { "default" } else { &action };
    audited(&state, &caller, auth, route_path, action, reply, started)
}

/// Audits and answers a request refused before it reached a route: a JWT-SVID caller whose
/// token did not verify (`caller` "-": an unverified `sub` is not written), or one that may
/// not use this listener. 401 `access_unauthorized`, as SPIKE answers unauthorised callers.
pub fn audit_refusal(
    state: &NexusState,
    caller: &str,
    auth: AuthForm,
    route: &str,
    started: Instant,
) -> Response {
    let reply = Reply::denied::<FallbackResponse>();
    audited(state, caller, auth, route, "-", reply, started)
}

/// The length of a request target as the client sent it, without copying it.
fn target_len(uri: &axum::http::Uri) -> usize {
    uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(uri.path().len(), |pq| pq.as_str().len())
}

/// Records `reply` in the audit log, then answers with it; if it cannot be recorded, answers
/// 507 (no space) or 500 instead (fail-closed).
fn audited(
    state: &NexusState,
    caller: &str,
    auth: AuthForm,
    route: &str,
    action: &str,
    reply: Reply,
    started: Instant,
) -> Response {
    let event = AuditEvent {
        caller,
        auth,
        route,
        action,
        path: reply.path.as_deref(),
        decision: reply.decision,
        status: reply.status,
        code: reply.code.as_ref().map(ErrorCode::as_str),
        duration: started.elapsed(),
    };
    if let Err(e) = state.audit.record(&event) {
        tracing::error!(error = %e, "audit log write failed; refusing the response");
        let refusal = if e.is_out_of_space() {
            Reply::out_of_space::<FallbackResponse>()
        } else {
            Reply::internal::<FallbackResponse>()
        };
        state.metrics.count(known_route(route), refusal.status);
        return Reply::into_response(refusal);
    }
    state.metrics.count(known_route(route), reply.status);
    Reply::into_response(reply)
}

/// Writes the audit summaries of refusal intervals that have ended, once per interval, until
/// the task is aborted (at shutdown, after which [`crate::audit::AuditLog::flush_all`] writes
/// the rest). A failed write is logged and retried at the next tick; meanwhile the callers
/// concerned are refused (their next request tries to write the summary first).
pub fn spawn_audit_flusher(state: Arc<NexusState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.audit.refusal_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = state.audit.flush_due() {
                tracing::error!(error = %e, "cannot write audit refusal summaries; retrying");
            }
        }
    })
}

/// Routes that write to the store (and so may wait for a durable flush) or that do heavy
/// work such as recombining shards; they run on the blocking pool.
fn may_block(route: Route) -> bool {
    !matches!(
        route,
        Route::SecretGet
            | Route::SecretList
            | Route::SecretMetadataGet
            | Route::PolicyGet
            | Route::PolicyList
            | Route::CipherEncrypt
            | Route::CipherDecrypt
            | Route::BootstrapVerify
    )
}

/// Bounds metric label values to known routes, so callers cannot grow the metrics map.
fn known_route(path: &str) -> &'static str {
    Route::ALL.iter().map(|r| r.path()).find(|p| *p == path).unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nexus::{AuditSink, NexusConfig};
    use sha2::Digest;
    use tower::ServiceExt;

    const NOBODY: &str = "spiffe://spike.ist/workload/no-policy";

    fn state(dir: &std::path::Path) -> Arc<NexusState> {
        let mut config = NexusConfig::dev(dir.to_path_buf());
        config.audit = AuditSink::File(dir.join("audit.log"));
        NexusState::open(config).unwrap()
    }

    async fn post(state: &Arc<NexusState>, uri: &str) -> (u16, String) {
        let body = Body::from(r#"{"path":"app/db"}"#);
        let mut req = Request::builder().method("POST").uri(uri).body(body).unwrap();
        req.extensions_mut().insert(Caller(Arc::from(NOBODY)));
        let resp = router(state.clone()).oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn audit_lines(dir: &std::path::Path) -> Vec<String> {
        let text = std::fs::read_to_string(dir.join("audit.log")).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[tokio::test]
    async fn a_uri_longer_than_the_limit_gets_414_and_only_its_hash_reaches_the_audit_log() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path());
        // http::Uri holds at most 64 KiB - 2: the longest target that can reach dispatch.
        let long = format!("/v1/store/secrets/{}?action=get", "x".repeat(60 * 1024));
        let (status, body) = post(&s, &long).await;
        assert_eq!((status, body.as_str()), (414, r#"{"err":"uri_too_long"}"#));

        // At the limit exactly: parsed as usual (an unknown route: SPIKE's 400 fallback).
        let at_limit = format!("/v1/store/{}", "y".repeat(MAX_URI_BYTES - 10));
        assert_eq!(at_limit.len(), MAX_URI_BYTES);
        assert_eq!(post(&s, &at_limit).await.0, 400);

        // The 400 is the same kind of refusal (invalid) in the same interval: counted only.
        let lines = audit_lines(dir.path());
        assert_eq!(lines.len(), 1);
        let refused: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(refused["status"], 414);
        assert_eq!(refused["code"], URI_TOO_LONG);
        assert_eq!(refused["action"], "-");
        assert_eq!(refused["route_len"], long.len());
        assert_eq!(refused["route_sha256"], hex::encode(sha2::Sha256::digest(long.as_bytes())));
        assert!(lines[0].len() < crate::audit::MAX_LINE_BYTES);
        assert!(!lines[0].contains(&"x".repeat(crate::audit::MAX_ROUTE_BYTES)));
    }

    #[tokio::test]
    async fn a_flood_of_refusals_from_one_caller_writes_one_line_per_kind_and_a_summary() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path());
        let long = format!("/v1/store/secrets/{}", "z".repeat(16 * 1024));
        for _ in 0..200 {
            assert_eq!(post(&s, &long).await.0, 414);
        }
        for _ in 0..50 {
            assert_eq!(post(&s, "/v1/store/secrets?action=get").await.0, 401);
        }
        assert_eq!(audit_lines(dir.path()).len(), 2, "one line per kind until the interval ends");
        s.audit.flush_all().unwrap();
        let lines = audit_lines(dir.path());
        assert_eq!(lines.len(), 3);
        let summary: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
        assert_eq!(summary["kind"], crate::audit::SUMMARY_KIND);
        assert_eq!(summary["caller"], NOBODY);
        assert_eq!(
            summary["counts"],
            serde_json::json!({"rate_limited":0,"invalid":199,"denied":49})
        );
        crate::audit::verify_file(&dir.path().join("audit.log")).unwrap();
    }
}
