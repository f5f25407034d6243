//! The Keeper's routes, as SPIKE's Keeper answers them (`spike-core/src/wire/PROTOCOL.md`,
//! "Routes (Keeper)"):
//!
//! - `POST /v1/store/contribute` `{"shard":[32 numbers]}` → `{}`: Nexus or Bootstrap only
//!   (SPIKE's `PeerCanTalkToKeeper`); a nil or all-zero shard is 400 `api_bad_request`;
//! - `POST /v1/store/shard` `{}` → `{"shard":[...],"Err":""}`: Nexus only; before any
//!   contribution, 400 `{"shard":null,"Err":"api_bad_request"}`;
//! - anything else: SPIKE's fallback, 400 `{"err":"api_bad_request"}`;
//! - spike-rs extensions: `GET /healthz` and `GET /readyz` (200 while a shard is held, 503
//!   before; they say only *whether* a shard is held).
//!
//! Order inside a route: decode the body (400), authorise the caller (401), validate, act. A
//! refused request changes nothing. Nothing here ever logs or echoes shard bytes.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use spike_core::identity::Role;
use spike_core::wire::keeper::*;
use spike_core::wire::{self, FallbackResponse, Route, Service};

use super::shard::ShardSlot;
use crate::caller::Caller;
use crate::limits::{RateLimit, RateLimiter};
use crate::nexus::authz::TrustRoots;
use crate::nexus::reply::Reply;

/// Largest request body a Keeper reads: a contribution is about 150 bytes of JSON.
pub const MAX_BODY_BYTES: usize = 4096;

/// Requests per caller a Keeper serves: Nexus re-sends its shard every few minutes and polls
/// while recovering, Bootstrap contributes once, so this is generous for them and still caps
/// what a misbehaving peer can make a Keeper do (DESIGN.md "unbounded endpoints").
pub const RATE_LIMIT: RateLimit = RateLimit { per_second: 50.0, burst: 200 };

/// What the Keeper's handlers share: its one shard and whom to trust.
#[derive(Debug)]
pub struct KeeperState {
    /// The shard.
    pub shard: ShardSlot,
    /// The highest rollback checkpoint Nexus offered (memory only, like the shard).
    pub checkpoint: std::sync::Mutex<Option<RollbackCheckpoint>>,
    /// Trust domains of Nexus and Bootstrap.
    pub trust_roots: TrustRoots,
    /// Per-caller rate limit ([`RATE_LIMIT`] unless set with [`KeeperState::with_rate_limit`]).
    pub limiter: RateLimiter,
}

impl KeeperState {
    /// An empty Keeper trusting `trust_roots`.
    pub fn new(trust_roots: TrustRoots) -> Self {
        Self::with_rate_limit(trust_roots, RATE_LIMIT)
    }

    /// An empty Keeper trusting `trust_roots`, limiting each caller to `limit`.
    pub fn with_rate_limit(trust_roots: TrustRoots, limit: RateLimit) -> Self {
        Self {
            shard: ShardSlot::new(),
            checkpoint: std::sync::Mutex::new(None),
            trust_roots,
            limiter: RateLimiter::new(limit),
        }
    }
}

/// Builds the Keeper's router. The mTLS listener inserts the caller's verified SPIFFE ID as a
/// [`Caller`] extension into every request.
pub fn router(state: Arc<KeeperState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(dispatch)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<KeeperState>>) -> Response {
    if state.shard.is_empty() {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: holding no shard yet\n").into_response()
    } else {
        (StatusCode::OK, "ready: holding a shard\n").into_response()
    }
}

async fn dispatch(
    State(state): State<Arc<KeeperState>>,
    caller: Option<Extension<Caller>>,
    request: Request<Body>,
) -> Response {
    let (parts, body) = request.into_parts();
    let Some(Extension(Caller(caller))) = caller else {
        // The listener always inserts the caller; without one there is no identity to trust.
        return Reply::into_response(Reply::denied::<FallbackResponse>());
    };
    // Before reading the body: a refused request costs the Keeper no more than this check.
    if let Err(wait) = state.limiter.check(&caller) {
        tracing::warn!(%caller, "rate limited");
        let mut reply = Reply::status_with_code::<FallbackResponse>(
            429,
            wire::ErrorCode::Other("rate_limited".into()),
        );
        reply.retry_after = Some(wait.as_secs().max(1));
        return Reply::into_response(reply);
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return Reply::into_response(Reply::status_with_code::<FallbackResponse>(
            413,
            wire::ErrorCode::Other("request_too_large".into()),
        ));
    };
    let query = parts.uri.query().unwrap_or("");
    let route = Route::resolve(Service::Keeper, parts.method.as_str(), parts.uri.path(), query);
    let reply = match route {
        Some(Route::KeeperContribute) => contribute(&state, &caller, &bytes),
        Some(Route::KeeperShard) => shard(&state, &caller, &bytes),
        Some(Route::KeeperCheckpoint) => checkpoint(&state, &caller, &bytes),
        _ => Reply::bad_request::<FallbackResponse>(),
    };
    Reply::into_response(reply)
}

/// `POST /v1/store/contribute`: store the shard (Nexus or Bootstrap).
fn contribute(state: &KeeperState, caller: &str, body: &[u8]) -> Reply {
    let Ok(req) = wire::decode::<ShardContributeRequest>(body) else {
        return Reply::bad_request::<ShardContributeResponse>();
    };
    let roots = &state.trust_roots;
    if !roots.is(caller, Role::Nexus) && !roots.is(caller, Role::Bootstrap) {
        tracing::warn!(%caller, "refused a shard contribution: only Nexus and Bootstrap may");
        return Reply::denied::<ShardContributeResponse>();
    }
    if let Err(code) = req.validate() {
        return Reply::fail::<ShardContributeResponse>(code);
    }
    let Some(shard) = req.shard.as_ref() else {
        // validate() refuses a missing shard.
        return Reply::bad_request::<ShardContributeResponse>();
    };
    let replaced = state.shard.replace(shard);
    tracing::info!(%caller, replaced, "shard stored");
    Reply::ok(&ShardContributeResponse::default())
}

/// `POST /v1/store/shard`: hand the shard to Nexus.
fn shard(state: &KeeperState, caller: &str, body: &[u8]) -> Reply {
    if wire::decode::<ShardGetRequest>(body).is_err() {
        return Reply::bad_request::<ShardGetResponse>();
    }
    if !state.trust_roots.is(caller, Role::Nexus) {
        tracing::warn!(%caller, "refused to hand out the shard: only Nexus may read it");
        return Reply::denied::<ShardGetResponse>();
    }
    match state.shard.get() {
        Some(shard) => {
            tracing::debug!(%caller, "shard handed to Nexus");
            Reply::ok(&ShardGetResponse { shard: Some(shard), err: None })
        }
        None => Reply::bad_request::<ShardGetResponse>(),
    }
}

/// `POST /v1/store/checkpoint` (extension; Nexus only): keep the higher rollback checkpoint and
/// answer with the one held. A checkpoint never goes down here, whatever a caller offers.
fn checkpoint(state: &KeeperState, caller: &str, body: &[u8]) -> Reply {
    let Ok(req) = wire::decode::<CheckpointRequest>(body) else {
        return Reply::bad_request::<CheckpointResponse>();
    };
    if !state.trust_roots.is(caller, Role::Nexus) {
        tracing::warn!(%caller, "refused a checkpoint request: only Nexus may");
        return Reply::denied::<CheckpointResponse>();
    }
    if let Some(offered) = &req.checkpoint
        && (offered.mac.len() != 64 || !offered.mac.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Reply::bad_request::<CheckpointResponse>();
    }
    let mut held = state.checkpoint.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(offered) = req.checkpoint
        && held.as_ref().is_none_or(|h| offered.counter > h.counter)
    {
        tracing::debug!(counter = offered.counter, "rollback checkpoint advanced");
        *held = Some(offered);
    }
    Reply::ok(&CheckpointResponse { checkpoint: held.clone(), err: None })
}
