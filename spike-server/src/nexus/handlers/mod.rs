//! Route handlers. Each takes the request [`Ctx`] and returns a [`Reply`]; they run on a
//! blocking thread because the store may wait for a disk flush.
//!
//! Order inside every handler: decode and validate the body (400), authorise (401), then act.
//! A rejected request changes no state.

pub mod bootstrap;
pub mod cipher;
pub mod import;
pub mod operator;
pub mod policy;
pub mod secrets;

use std::sync::Arc;

use serde::Serialize;
use spike_core::error::StoreError;
use spike_core::wire::{self, WireResponse};

use super::reply::Reply;
use super::state::{NexusState, Unsealed};

/// One request, as a handler sees it.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// Shared Nexus state.
    pub state: &'a NexusState,
    /// The caller's verified SPIFFE ID.
    pub caller: &'a str,
    /// The raw request body.
    pub body: &'a [u8],
    /// True when `Content-Type` is exactly `application/octet-stream` (SPIKE's rule).
    pub octet_stream: bool,
}

impl Ctx<'_> {
    /// Decodes the body as `Req`, or the 400 reply of route `Resp`.
    pub fn decode<'b, Req: serde::Deserialize<'b>, Resp: WireResponse + Serialize>(
        &'b self,
    ) -> Result<Req, Reply> {
        wire::decode(self.body).map_err(|_| Reply::bad_request::<Resp>())
    }

    /// The unsealed state, or the 503 reply of route `Resp`.
    pub fn unsealed<Resp: WireResponse + Serialize>(&self) -> Result<Arc<Unsealed>, Reply> {
        self.state.unsealed().ok_or_else(Reply::not_ready::<Resp>)
    }
}

/// Maps a store failure to SPIKE's reply for route `Resp`; logs what the caller is not told.
pub fn store_failure<Resp: WireResponse + Serialize>(err: &StoreError) -> Reply {
    match err {
        StoreError::NotFound | StoreError::Deleted => Reply::not_found::<Resp>(),
        StoreError::Invalid(_) => Reply::bad_request::<Resp>(),
        StoreError::CasMismatch { .. } => {
            Reply::status_with_code::<Resp>(409, wire::ErrorCode::Other("api_conflict".into()))
        }
        StoreError::NoSpace(_) => {
            tracing::error!(error = %err, "store write refused: out of space");
            Reply::out_of_space::<Resp>()
        }
        other => {
            tracing::error!(error = %other, "store operation failed");
            Reply::internal::<Resp>()
        }
    }
}
