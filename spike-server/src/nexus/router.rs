//! Request dispatch: one entry point for every route, in the order SPIKE applies its checks.
//!
//! 1. the caller's SPIFFE ID comes from the verified mTLS peer (inserted by the listener);
//! 2. per-caller rate limit (429; spike-rs hardening);
//! 3. route = exact path + `action` query, POST only; anything else is SPIKE's 400 fallback;
//! 4. until the root key is present, every route but recover/restore answers 503;
//! 5. the handler runs on a blocking thread (the store may wait for a disk flush);
//! 6. the audit line is written before the response leaves; if it cannot be, the answer is
//!    500 (fail-closed).

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

/// The verified SPIFFE ID of the mTLS peer, inserted into each request by the listener.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<str>);

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
        // Keeper routes are not Nexus's; resolve() never yields them for Service::Nexus.
        _ => Reply::bad_request::<FallbackResponse>(),
    }
}

async fn dispatch(
    State(state): State<Arc<NexusState>>,
    caller: Option<Extension<Caller>>,
    request: Request<Body>,
) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let route_path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let action = wire::query_action(&query);
    let Some(Extension(Caller(caller))) = caller else {
        // The listener always inserts the caller; without one there is no identity to trust.
        return Reply::into_response(Reply::denied::<FallbackResponse>());
    };

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
            Err(_) => {
                break 'reply Reply::status_with_code::<FallbackResponse>(
                    413,
                    ErrorCode::Other("request_too_large".into()),
                );
            }
        };
        let Some(route) =
            Route::resolve(Service::Nexus, parts.method.as_str(), &route_path, &query)
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

    let event = AuditEvent {
        caller: &caller,
        route: &route_path,
        action: if action.is_empty() { "default" } else { &action },
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
        state.metrics.count(known_route(&route_path), refusal.status);
        return Reply::into_response(refusal);
    }
    state.metrics.count(known_route(&route_path), reply.status);
    Reply::into_response(reply)
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
