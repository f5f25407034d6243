//! mTLS listeners by SPIFFE ID: a rustls `ServerConfig` that presents our X509-SVID, requires
//! a client X509-SVID from an allowed trust domain, and hands the verified peer SPIFFE ID to
//! the application.
//!
//! Verification is `spike_client::tls::SvidVerifier`, the same code clients use for servers
//! (X509-SVID spec §5): exactly one `spiffe://` URI SAN, a non-CA leaf that may sign
//! handshakes, a valid period, and a chain to the peer trust domain's bundle.
//!
//! ```no_run
//! # async fn demo(socket: tokio::net::TcpStream) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use spike_client::identity::IdentitySource;
//! use spike_server::tls::{mtls_server, peer_spiffe_id};
//!
//! let source = IdentitySource::from_env().await?;
//! let config = mtls_server(source).build()?;
//! let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
//! let stream = acceptor.accept(socket).await?;
//! println!("caller is {}", peer_spiffe_id(&stream)?);
//! # Ok(()) }
//! ```
//!
//! Session resumption (issue 15): listeners that leave authorisation to the application
//! (Nexus) issue TLS 1.3 tickets valid for [`DEFAULT_TICKET_LIFETIME`]; listeners that pin
//! client IDs at the handshake (Keepers) do not, unless asked
//! ([`ServerConfigBuilder::session_tickets`]). A resumed handshake skips the client-certificate
//! verifier, so tickets die with their lifetime and with the identity snapshot they were issued
//! under, and [`peer_spiffe_id_of`] re-checks the validity of the restored chain on every
//! resumed connection; [`resumption`] has the whole argument. TLS 1.2 session IDs stay off.

pub mod resumption;

use std::sync::Arc;
use std::time::Duration;

use spiffe::{SpiffeId, TrustDomain};
use spike_client::error::{Error, SvidRejection};
use spike_client::identity::IdentitySource;
use spike_client::tls::{
    IdMatcher, PeerRole, PeerTrustDomains, SpiffeClientVerifier, SvidResolver, SvidVerifier,
    crypto_provider,
};

pub use resumption::{DEFAULT_TICKET_LIFETIME, MAX_TICKET_LIFETIME};

/// Starts a server config for `source`: clients must present an X509-SVID of our own trust
/// domain (widen with [`ServerConfigBuilder::trust_domains`] or
/// [`ServerConfigBuilder::any_trust_domain_with_bundle`]).
pub fn mtls_server(source: IdentitySource) -> ServerConfigBuilder {
    ServerConfigBuilder {
        source,
        trust_domains: PeerTrustDomains::Own,
        client_ids: None,
        alpn: Vec::new(),
        tickets: Tickets::Default,
    }
}

/// A server config that presents `source`'s X509-SVID and asks for no client certificate: the
/// JWT-SVID listener, whose callers authenticate per request with a bearer token. No session
/// tickets (they would carry nothing a bearer caller needs).
pub fn server_auth_only(
    source: IdentitySource,
    alpn: impl IntoIterator<Item = Vec<u8>>,
) -> Result<rustls::ServerConfig, Error> {
    source.current()?;
    let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SvidResolver(source)));
    config.alpn_protocols = alpn.into_iter().collect();
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// Whether a listener issues session tickets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tickets {
    /// On with [`DEFAULT_TICKET_LIFETIME`], unless client IDs are pinned at the handshake.
    Default,
    On(Duration),
    Off,
}

/// Builds a rustls `ServerConfig` for mTLS by SPIFFE ID; see [`mtls_server`].
#[derive(Debug, Clone)]
pub struct ServerConfigBuilder {
    source: IdentitySource,
    trust_domains: PeerTrustDomains,
    client_ids: Option<Vec<IdMatcher>>,
    alpn: Vec<Vec<u8>>,
    tickets: Tickets,
}

impl ServerConfigBuilder {
    /// Accepts clients of these trust domains (whose bundles the source must hold) instead of
    /// only our own.
    pub fn trust_domains(mut self, trust_domains: impl IntoIterator<Item = TrustDomain>) -> Self {
        self.trust_domains = PeerTrustDomains::Listed(trust_domains.into_iter().collect());
        self
    }

    /// Accepts clients of any trust domain the source holds a bundle for — our own and every
    /// federated one the Workload API hands out — leaving the decision to the application
    /// (Nexus: roles and policies, as SPIKE does).
    pub fn any_trust_domain_with_bundle(mut self) -> Self {
        self.trust_domains = PeerTrustDomains::AnyWithBundle;
        self
    }

    /// Accepts only these client SPIFFE IDs, exactly, at the handshake. Without it (or
    /// [`ServerConfigBuilder::authorize`]), any verified ID is let in and authorised per
    /// request by the application.
    pub fn authorize_ids(self, ids: impl IntoIterator<Item = SpiffeId>) -> Self {
        self.authorize(ids.into_iter().map(IdMatcher::Exact))
    }

    /// Accepts only client SPIFFE IDs one of `matchers` accepts at the handshake (e.g. Keepers
    /// accept only Nexus and Bootstrap, each role's ID or below it).
    pub fn authorize(mut self, matchers: impl IntoIterator<Item = IdMatcher>) -> Self {
        self.client_ids = Some(matchers.into_iter().collect());
        self
    }

    /// ALPN protocols to accept, most preferred first (e.g. `h2`, `http/1.1`).
    pub fn alpn_protocols(mut self, protocols: impl IntoIterator<Item = Vec<u8>>) -> Self {
        self.alpn = protocols.into_iter().collect();
        self
    }

    /// Issues TLS 1.3 session tickets usable for `lifetime` (at most [`MAX_TICKET_LIFETIME`]),
    /// so returning clients skip the certificate exchange; see [`resumption`] for the checks
    /// that stand in for it.
    pub fn session_tickets(mut self, lifetime: Duration) -> Self {
        self.tickets = Tickets::On(lifetime);
        self
    }

    /// Issues no session tickets: every connection runs a full handshake.
    pub fn no_session_tickets(mut self) -> Self {
        self.tickets = Tickets::Off;
        self
    }

    /// Builds the config; fails now if the source has no usable identity or the ticket
    /// lifetime is out of range.
    pub fn build(self) -> Result<rustls::ServerConfig, Error> {
        self.source.current()?;
        let ticket_lifetime = match self.tickets {
            // Keepers pin Nexus and Bootstrap at the handshake and see few connections: there
            // is nothing to win, so keep them on full handshakes only.
            Tickets::Default if self.client_ids.is_some() => None,
            Tickets::Default => Some(DEFAULT_TICKET_LIFETIME),
            Tickets::On(lifetime) if lifetime.is_zero() || lifetime > MAX_TICKET_LIFETIME => {
                return Err(Error::InvalidInput {
                    what: format!("TLS session ticket lifetime {lifetime:?}"),
                    reason: format!("it must be between 1 s and {MAX_TICKET_LIFETIME:?}"),
                });
            }
            Tickets::On(lifetime) => Some(lifetime),
            Tickets::Off => None,
        };
        let ticketer = ticket_lifetime
            .map(|lifetime| resumption::SvidTicketer::new(self.source.clone(), lifetime))
            .transpose()?;
        let mut verifier = SvidVerifier::new(self.source.clone(), PeerRole::Client)
            .with_peer_trust_domains(self.trust_domains);
        if let Some(matchers) = self.client_ids {
            verifier = verifier.with_expected(matchers);
        }
        let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(Arc::new(SpiffeClientVerifier(verifier)))
            .with_cert_resolver(Arc::new(SvidResolver(self.source)));
        config.alpn_protocols = self.alpn;
        // Never stateful sessions (TLS 1.2 session IDs): only the tickets below, whose checks
        // are in `resumption`.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        match ticketer {
            Some(ticketer) => {
                config.ticketer = Arc::new(ticketer);
                // One per connection replaces the one a resuming client spends (RFC 8446
                // §C.4: tickets are single-use); a client short of tickets runs a full
                // handshake and gets one. rustls' default of 2 only overfilled client stores
                // (8 tickets per server) at ~2 % of a new connection's CPU.
                config.send_tls13_tickets = 1;
            }
            None => config.send_tls13_tickets = 0,
        }
        Ok(config)
    }
}

/// The verified SPIFFE ID of the client on an accepted connection.
pub fn peer_spiffe_id<IO>(stream: &tokio_rustls::server::TlsStream<IO>) -> Result<SpiffeId, Error> {
    peer_spiffe_id_of(stream.get_ref().1)
}

/// The verified SPIFFE ID of the client of a rustls server connection (after the handshake).
/// On a resumed session it also refuses a restored chain that is no longer valid.
pub fn peer_spiffe_id_of(connection: &rustls::ServerConnection) -> Result<SpiffeId, Error> {
    let chain = connection.peer_certificates().ok_or(SvidRejection::NoCertificate)?;
    if is_resumed(connection) {
        // rustls restored this chain from the ticket without running the verifier: the
        // session must not outlive the client's SVID (or an intermediate); see `resumption`.
        let now = rustls::pki_types::UnixTime::now();
        return Ok(spike_client::tls::spiffe_id_from_restored_chain(chain, now)?);
    }
    // The verifier checked this leaf during the handshake; re-reading it here cannot disagree,
    // and keeps the ID bound to the certificate rustls actually accepted.
    let leaf = chain.first().ok_or(SvidRejection::NoCertificate)?;
    Ok(spike_client::tls::spiffe_id_from_leaf(leaf)?)
}

/// True when the connection's handshake resumed an earlier session (no certificates were
/// exchanged).
pub fn is_resumed(connection: &rustls::ServerConnection) -> bool {
    connection.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
}
