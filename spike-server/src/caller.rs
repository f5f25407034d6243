//! Who is calling: the verified identity the listeners attach to each request, shared by
//! Nexus and the Keeper.
//!
//! The mTLS listener inserts a [`Caller`] holding the peer's verified SPIFFE ID into every
//! request it serves; Nexus's JWT-SVID listener does the same with the token's SPIFFE ID and
//! adds an [`AuthForm`] saying how the caller authenticated (absent means an X509-SVID).
//! Routers read both as axum extensions.

use std::sync::Arc;

pub use crate::audit::AuthForm;

/// The verified SPIFFE ID of the mTLS peer, inserted into each request by the listener.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<str>);
