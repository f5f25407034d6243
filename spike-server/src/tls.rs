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

use std::sync::Arc;

use spiffe::{SpiffeId, TrustDomain};
use spike_client::error::{Error, SvidRejection};
use spike_client::identity::IdentitySource;
use spike_client::tls::{
    IdMatcher, PeerRole, PeerTrustDomains, SpiffeClientVerifier, SvidResolver, SvidVerifier,
    crypto_provider,
};

/// Starts a server config for `source`: clients must present an X509-SVID of our own trust
/// domain (widen with [`ServerConfigBuilder::trust_domains`] or
/// [`ServerConfigBuilder::any_trust_domain_with_bundle`]).
pub fn mtls_server(source: IdentitySource) -> ServerConfigBuilder {
    ServerConfigBuilder {
        source,
        trust_domains: PeerTrustDomains::Own,
        client_ids: None,
        alpn: Vec::new(),
    }
}

/// Builds a rustls `ServerConfig` for mTLS by SPIFFE ID; see [`mtls_server`].
#[derive(Debug, Clone)]
pub struct ServerConfigBuilder {
    source: IdentitySource,
    trust_domains: PeerTrustDomains,
    client_ids: Option<Vec<IdMatcher>>,
    alpn: Vec<Vec<u8>>,
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

    /// Builds the config; fails now if the source has no usable identity.
    pub fn build(self) -> Result<rustls::ServerConfig, Error> {
        self.source.current()?;
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
        // No resumption: every connection proves a current SVID (see spike_client::tls).
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(config)
    }
}

/// The verified SPIFFE ID of the client on an accepted connection.
pub fn peer_spiffe_id<IO>(stream: &tokio_rustls::server::TlsStream<IO>) -> Result<SpiffeId, Error> {
    peer_spiffe_id_of(stream.get_ref().1)
}

/// The verified SPIFFE ID of the client of a rustls server connection (after the handshake).
pub fn peer_spiffe_id_of(connection: &rustls::ServerConnection) -> Result<SpiffeId, Error> {
    // The verifier already checked this leaf during the handshake; re-reading it here cannot
    // disagree, and keeps the ID bound to the certificate rustls actually accepted.
    let leaf = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or(SvidRejection::NoCertificate)?;
    Ok(spike_client::tls::spiffe_id_from_leaf(leaf)?)
}
