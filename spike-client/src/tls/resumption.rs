//! TLS 1.3 session resumption for clients (issue 15): a session store bound to one identity
//! snapshot, so a resumed connection never carries a session set up under an SVID or trust
//! bundle this process has since replaced.
//!
//! Why resume at all: a full mTLS handshake costs each side a signature and a signature check
//! on top of the key exchange; a resumed one (PSK with (EC)DHE, RFC 8446 §2.2, the only mode
//! rustls offers) costs the key exchange alone, and keeps forward secrecy.
//!
//! What a resumed handshake skips, and what stands in for it:
//! - The server's certificate is neither sent nor verified: rustls restores it from the ticket
//!   of a session whose full handshake verified it. Only the server that ran that handshake
//!   (the holder of the ticket key) can complete a resumption, tickets expire after the
//!   lifetime the server sets (rustls checks it before offering one), and this store forgets
//!   every ticket as soon as [`IdentitySource::current`] returns a new snapshot (a rotated SVID
//!   or a changed bundle), so trust decisions made under an old bundle are not carried over.
//! - Our own certificate is not sent either; the server restores it from its ticket and checks
//!   it is still within its validity period (`spike_server::tls`). Forgetting tickets at
//!   rotation makes the next connection present the new SVID.
//! - TLS 1.2 resumption is never offered.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use rustls::NamedGroup;
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Tls12ClientSessionValue};
use rustls::client::{Resumption, Tls12Resumption, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;

use crate::identity::{Identity, IdentitySource};

/// Servers whose sessions one store keeps (rustls keeps up to 8 tickets per server).
const SESSIONS: usize = 256;

/// The client `Resumption` setting of spike-rs: TLS 1.3 tickets in a [`SvidSessionStore`],
/// never TLS 1.2.
pub fn resumption(source: IdentitySource) -> Resumption {
    Resumption::store(Arc::new(SvidSessionStore::new(source)))
        .tls12_resumption(Tls12Resumption::Disabled)
}

/// A client session store that starts empty whenever the identity snapshot changes; see the
/// module docs. Shared by every connection of one `ClientConfig`.
pub struct SvidSessionStore {
    source: IdentitySource,
    state: Mutex<Generation>,
}

struct Generation {
    /// The snapshot the sessions were set up under. Weak, to compare addresses only: holding
    /// the allocation keeps its address from being reused by a later snapshot.
    identity: Weak<Identity>,
    sessions: Arc<ClientSessionMemoryCache>,
}

impl SvidSessionStore {
    /// An empty store for connections made with `source`'s identity.
    pub fn new(source: IdentitySource) -> Self {
        let identity = source.current().map(|i| Arc::downgrade(&i)).unwrap_or_default();
        let sessions = Arc::new(ClientSessionMemoryCache::new(SESSIONS));
        Self { source, state: Mutex::new(Generation { identity, sessions }) }
    }

    /// The sessions of the current snapshot; `None` (store nothing, resume nothing) when the
    /// source has no identity.
    fn sessions(&self) -> Option<Arc<ClientSessionMemoryCache>> {
        let current = self.source.current().ok()?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.identity.as_ptr() != Arc::as_ptr(&current) {
            tracing::debug!("identity snapshot changed; forgetting TLS sessions");
            state.identity = Arc::downgrade(&current);
            state.sessions = Arc::new(ClientSessionMemoryCache::new(SESSIONS));
        }
        Some(Arc::clone(&state.sessions))
    }
}

impl std::fmt::Debug for SvidSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SvidSessionStore").finish_non_exhaustive()
    }
}

impl ClientSessionStore for SvidSessionStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        if let Some(s) = self.sessions() {
            s.set_kx_hint(server_name, group);
        }
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.sessions()?.kx_hint(server_name)
    }

    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {
        // TLS 1.2 resumption is disabled (see `resumption`).
    }

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        if let Some(s) = self.sessions() {
            s.insert_tls13_ticket(server_name, value);
        }
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.sessions()?.take_tls13_ticket(server_name)
    }
}
