//! mTLS by SPIFFE ID (X509-SVID spec §5): peers are authenticated by a chain to their trust
//! domain's bundle and identified by the one `spiffe://` URI SAN of their leaf — never by DNS
//! names. The same [`SvidVerifier`] checks servers (in [`mtls_client`] configs) and clients
//! (in `spike_server::tls` configs), so both directions enforce identical rules.
//!
//! ```no_run
//! # async fn demo() -> Result<(), spike_client::Error> {
//! use spike_client::identity::IdentitySource;
//! use spike_client::tls::mtls_client;
//!
//! let source = IdentitySource::from_env().await?;
//! let nexus = "spiffe://spike.ist/spike/nexus".parse().expect("valid SPIFFE ID");
//! let config = mtls_client(source, nexus).alpn_protocols([b"h2".to_vec()]).build()?;
//! # let _ = config; Ok(()) }
//! ```
//!
//! Session resumption (issue 15): TLS 1.3 only, in a store that forgets every session when the
//! SVID or the bundles change ([`resumption`] says what a resumed handshake skips and what
//! stands in for it); [`ClientConfigBuilder::session_resumption`] turns it off.
//!
//! [`path_len`] enforces the trusted roots' path length limit, which webpki leaves unchecked;
//! Nexus's PostgreSQL server verifier shares it.

pub mod path_len;
pub mod resumption;

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::DigitallySignedStruct;
use rustls::SignatureScheme;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use spiffe::{SpiffeId, TrustDomain};
use spike_core::identity::Role;
use x509_parser::extensions::GeneralName;

use crate::error::{Error, Result, SvidRejection};
use crate::identity::{Identity, IdentitySource};
use crate::verified_chains::VerifiedChains;
use path_len::RootPathLenCheck;

/// The one crypto provider spike-rs uses: rustls' ring provider (never aws-lc-rs).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

/// [`crypto_provider`] with TLS13_CHACHA20_POLY1305_SHA256 offered first, for client configs
/// (a TLS 1.3 server follows the client's order unless told otherwise). Issue 15: its key
/// schedule runs on SHA-256, which has hardware support on common CPUs, where SHA-384's does
/// not; that was ~7 % of a new connection's CPU. Traffic keys stay 256-bit. The same suites
/// are offered, only the order differs.
fn client_crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| {
        let mut provider = rustls::crypto::ring::default_provider();
        let first = rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256;
        provider.cipher_suites.retain(|s| s.suite() != first.suite());
        provider.cipher_suites.insert(0, first);
        Arc::new(provider)
    }))
}

/// Checks a TLS 1.2 handshake signature made with `cert`'s key, with the algorithms of
/// [`crypto_provider`]: what every certificate verifier of spike-rs answers to rustls.
pub fn verify_tls12_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
    let algorithms = &crypto_provider().signature_verification_algorithms;
    rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
}

/// Checks a TLS 1.3 handshake signature made with `cert`'s key, with the algorithms of
/// [`crypto_provider`].
pub fn verify_tls13_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
    let algorithms = &crypto_provider().signature_verification_algorithms;
    rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
}

/// The signature schemes [`verify_tls12_signature`] and [`verify_tls13_signature`] accept.
pub fn supported_verify_schemes() -> Vec<SignatureScheme> {
    crypto_provider().signature_verification_algorithms.supported_schemes()
}

/// Writes the three handshake-signature methods of a rustls `ServerCertVerifier` or
/// `ClientCertVerifier` (`verify_tls12_signature`, `verify_tls13_signature`,
/// `supported_verify_schemes`) as calls to [`verify_tls12_signature`],
/// [`verify_tls13_signature`] and [`supported_verify_schemes`], so that every certificate
/// verifier of spike-rs checks signatures alike. Use it inside the trait's `impl` block; the
/// crate using it must depend on `rustls`.
///
/// ```
/// use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
/// use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
///
/// #[derive(Debug)]
/// struct Refuser;
///
/// impl ServerCertVerifier for Refuser {
///     fn verify_server_cert(
///         &self,
///         _end_entity: &CertificateDer<'_>,
///         _intermediates: &[CertificateDer<'_>],
///         _server_name: &ServerName<'_>,
///         _ocsp_response: &[u8],
///         _now: UnixTime,
///     ) -> Result<ServerCertVerified, rustls::Error> {
///         Err(rustls::Error::General("no server is trusted".into()))
///     }
///
///     spike_client::impl_signature_checks!();
/// }
/// ```
#[macro_export]
macro_rules! impl_signature_checks {
    () => {
        $crate::impl_signature_checks!(@checks verify_tls12_signature verify_tls13_signature);

        fn supported_verify_schemes(&self) -> ::std::vec::Vec<::rustls::SignatureScheme> {
            $crate::tls::supported_verify_schemes()
        }
    };
    (@checks $($check:ident)*) => {$(
        fn $check(
            &self,
            message: &[u8],
            cert: &::rustls::pki_types::CertificateDer<'_>,
            dss: &::rustls::DigitallySignedStruct,
        ) -> ::std::result::Result<
            ::rustls::client::danger::HandshakeSignatureValid,
            ::rustls::Error,
        > {
            $crate::tls::$check(message, cert, dss)
        }
    )*};
}

/// Which side of the handshake the verified peer is, selecting the extended key usage its
/// leaf must allow (when it lists any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// The peer is a TLS server (EKU serverAuth).
    Server,
    /// The peer is a TLS client (EKU clientAuth).
    Client,
}

/// Reads the SPIFFE ID of an X509-SVID leaf: exactly one URI SAN, a valid `spiffe://` ID with
/// a path. Does not verify the chain — use [`SvidVerifier`] for that.
pub fn spiffe_id_from_leaf(leaf: &CertificateDer<'_>) -> Result<SpiffeId, SvidRejection> {
    let cert = parse(leaf)?;
    spiffe_id_of(&cert)
}

/// Reads the SPIFFE ID of a peer chain that rustls restored from a session ticket (a resumed
/// handshake, where no verifier runs) after checking that every certificate of it is still
/// within its validity period at `now`: a session must not outlive the SVID it was set up with.
/// Everything else was verified by the full handshake that issued the ticket.
pub fn spiffe_id_from_restored_chain(
    chain: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<SpiffeId, SvidRejection> {
    let (leaf, intermediates) = chain.split_first().ok_or(SvidRejection::NoCertificate)?;
    let leaf = parse(leaf)?;
    check_validity(&leaf, now)?;
    for der in intermediates {
        check_validity(&parse(der)?, now)?;
    }
    spiffe_id_of(&leaf)
}

fn check_validity(
    cert: &x509_parser::certificate::X509Certificate<'_>,
    now: UnixTime,
) -> Result<(), SvidRejection> {
    let validity = cert.validity();
    let now = now.as_secs();
    let (not_before, not_after) = (validity.not_before.timestamp(), validity.not_after.timestamp());
    if i128::from(now) < i128::from(not_before) {
        return Err(SvidRejection::NotYetValid { not_before, now });
    }
    if i128::from(now) > i128::from(not_after) {
        return Err(SvidRejection::Expired { not_after, now });
    }
    Ok(())
}

fn parse<'a>(
    der: &'a CertificateDer<'_>,
) -> Result<x509_parser::certificate::X509Certificate<'a>, SvidRejection> {
    match x509_parser::parse_x509_certificate(der.as_ref()) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(SvidRejection::Malformed("trailing bytes after the certificate".into())),
        Err(e) => Err(SvidRejection::Malformed(e.to_string())),
    }
}

fn spiffe_id_of(
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<SpiffeId, SvidRejection> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| SvidRejection::Malformed(format!("subjectAltName: {e}")))?;
    let uris: Vec<&str> = san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::URI(uri) => Some(*uri),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let uri = match uris.as_slice() {
        [] => return Err(SvidRejection::NoUriSan),
        [one] => *one,
        many => return Err(SvidRejection::MultipleUriSans(many.len())),
    };
    // The scheme is case-insensitive in URIs but SPIFFE IDs must use lower case (SPIFFE-ID §2;
    // go-spiffe's `FromString` compares the prefix exactly), so `SPIFFE://` is not an SVID.
    if !uri.starts_with("spiffe://") {
        return Err(SvidRejection::NotSpiffeUri(uri.into()));
    }
    let id = SpiffeId::new(uri)
        .map_err(|e| SvidRejection::InvalidSpiffeId { uri: uri.into(), reason: e.to_string() })?;
    // The identity is the SAN exactly as signed: the spiffe crate lower-cases the trust domain,
    // which go-spiffe refuses, so `spiffe://SPIKE.IST/...` must not pass as spike.ist (found by
    // fuzz/fuzz_targets/spiffe_authz.rs).
    if id.to_string() != uri {
        return Err(SvidRejection::InvalidSpiffeId {
            uri: uri.into(),
            reason: "not in canonical form (the trust domain must be lower case)".into(),
        });
    }
    if id.path().is_empty() {
        return Err(SvidRejection::NoPath(id.to_string()));
    }
    Ok(id)
}

/// X509-SVID §4.1 and §4.3: a leaf is not a CA, cannot sign certificates or CRLs, and can sign
/// handshakes.
fn check_leaf_constraints(
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<(), SvidRejection> {
    let bad = |e: x509_parser::error::X509Error| SvidRejection::Malformed(e.to_string());
    match cert.basic_constraints().map_err(bad)? {
        None => return Err(SvidRejection::MissingBasicConstraints),
        Some(bc) if bc.value.ca => return Err(SvidRejection::LeafIsCa),
        Some(_) => {}
    }
    match cert.key_usage().map_err(bad)? {
        None => Err(SvidRejection::NoDigitalSignature),
        Some(ku) if ku.value.key_cert_sign() || ku.value.crl_sign() => {
            Err(SvidRejection::LeafCanSign)
        }
        Some(ku) if !ku.value.digital_signature() => Err(SvidRejection::NoDigitalSignature),
        Some(_) => Ok(()),
    }
}

/// Which SPIFFE IDs a verifier accepts once the chain verifies: one ID exactly, or a base ID
/// and everything below it on a `/` boundary (SPIKE's role rule, spike-sdk-go `spiffeid`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdMatcher {
    /// This ID only.
    Exact(SpiffeId),
    /// This ID or any ID below it: `spiffe://td/spike/nexus` accepts
    /// `spiffe://td/spike/nexus/nexus-0` but not `spiffe://td/spike/nexusx`.
    OrBelow(SpiffeId),
}

impl IdMatcher {
    /// `role`'s base ID in each of `trust_domains`, each accepting IDs below it (how SPIKE
    /// recognises Nexus, Keepers and the other roles).
    pub fn role(role: Role, trust_domains: &[impl AsRef<str>]) -> Result<Vec<Self>> {
        trust_domains
            .iter()
            .map(|td| {
                let id = role.spiffe_id(td.as_ref());
                SpiffeId::new(&id).map(Self::OrBelow).map_err(|e| Error::InvalidSpiffeId {
                    value: id.clone(),
                    reason: format!("{e} (check the SPIKE_TRUST_ROOT* settings)"),
                })
            })
            .collect()
    }

    /// True if `id` is accepted.
    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            Self::Exact(want) => want == id,
            Self::OrBelow(base) => {
                id.trust_domain() == base.trust_domain()
                    && spike_core::identity::is_at_or_below(id.path(), base.path())
            }
        }
    }

    /// The ID (exact or base) this matcher is built on.
    pub fn id(&self) -> &SpiffeId {
        match self {
            Self::Exact(id) | Self::OrBelow(id) => id,
        }
    }
}

impl From<SpiffeId> for IdMatcher {
    fn from(id: SpiffeId) -> Self {
        Self::Exact(id)
    }
}

impl fmt::Display for IdMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(id) => write!(f, "{id}"),
            Self::OrBelow(id) => write!(f, "{id} (or an ID below it)"),
        }
    }
}

/// Which trust domains a peer may belong to (its chain must still verify against that trust
/// domain's bundle in the source).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerTrustDomains {
    /// Only our own SVID's trust domain.
    Own,
    /// Exactly these (each needs a bundle in the source).
    Listed(Vec<TrustDomain>),
    /// Any trust domain the source holds a bundle for: our own and every federated bundle the
    /// Workload API hands out. For servers that leave the decision to per-request policy.
    AnyWithBundle,
}

/// Verifies a peer's X509-SVID against the bundles of an [`IdentitySource`] and decides
/// whether its SPIFFE ID is acceptable.
#[derive(Clone)]
pub struct SvidVerifier {
    source: IdentitySource,
    peer: PeerRole,
    trust_domains: PeerTrustDomains,
    expected_ids: Option<Vec<IdMatcher>>,
    provider: Arc<CryptoProvider>,
    /// Chains that verified (shared by clones; see [`crate::verified_chains`]).
    verified: Arc<VerifiedChains>,
}

impl SvidVerifier {
    /// A verifier for peers playing `peer`, accepting any SPIFFE ID of our own trust domain.
    pub fn new(source: IdentitySource, peer: PeerRole) -> Self {
        Self {
            source,
            peer,
            trust_domains: PeerTrustDomains::Own,
            expected_ids: None,
            provider: crypto_provider(),
            verified: Arc::default(),
        }
    }

    /// Accepts peers of these trust domains instead of only our own (federation); each still
    /// needs a bundle in the source.
    pub fn with_trust_domains(
        mut self,
        trust_domains: impl IntoIterator<Item = TrustDomain>,
    ) -> Self {
        self.trust_domains = PeerTrustDomains::Listed(trust_domains.into_iter().collect());
        self
    }

    /// Sets which trust domains peers may belong to (see [`PeerTrustDomains`]).
    pub fn with_peer_trust_domains(mut self, trust_domains: PeerTrustDomains) -> Self {
        self.trust_domains = trust_domains;
        self
    }

    /// Accepts only these SPIFFE IDs (exact match, after the chain verifies).
    pub fn with_expected_ids(self, ids: impl IntoIterator<Item = SpiffeId>) -> Self {
        self.with_expected(ids.into_iter().map(IdMatcher::Exact))
    }

    /// Accepts only IDs one of these matchers accepts (after the chain verifies).
    pub fn with_expected(mut self, matchers: impl IntoIterator<Item = IdMatcher>) -> Self {
        self.expected_ids = Some(matchers.into_iter().collect());
        self
    }

    /// The identity source whose bundles anchor verification.
    pub fn source(&self) -> &IdentitySource {
        &self.source
    }

    /// Checks `end_entity` (+ `intermediates`) at time `now` and returns the peer's SPIFFE ID.
    /// Every CA's pathLenConstraint holds, the bundle certificate's included, as in Go.
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<SpiffeId> {
        let identity = self.source.current()?;
        if let Some(memo) = self.verified.lookup(end_entity, intermediates, &identity, now) {
            let id = memo?;
            self.check_trust_domain(&id, &identity)?;
            self.check_expected(&id)?;
            return Ok(id);
        }
        let cert = parse(end_entity)?;
        let id = spiffe_id_of(&cert)?;
        check_leaf_constraints(&cert)?;

        let validity = cert.validity();
        let (not_before, not_after) =
            (validity.not_before.timestamp(), validity.not_after.timestamp());
        check_validity(&cert, now)?;

        self.check_trust_domain(&id, &identity)?;
        let td = id.trust_domain();
        let (anchors, limits) =
            identity.authorities(td).ok_or_else(|| SvidRejection::NoBundle(td.to_string()))?;

        let untrusted =
            |reason: String| SvidRejection::UntrustedChain { trust_domain: td.to_string(), reason };
        let ee =
            webpki::EndEntityCert::try_from(end_entity).map_err(|e| untrusted(e.to_string()))?;
        let usage = match self.peer {
            PeerRole::Server => webpki::KeyUsage::server_auth(),
            PeerRole::Client => webpki::KeyUsage::client_auth(),
        };
        // Issue 13: webpki enforces the pathLenConstraint of every intermediate, but reduces a
        // bundle certificate to a TrustAnchor and so never sees the root's; Go's crypto/x509
        // enforces it for roots too (MaxPathLen against the intermediates below).
        let root_path_len = RootPathLenCheck::new(anchors, limits);
        ee.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            anchors,
            intermediates,
            now,
            usage,
            None,
            Some(&|path: &webpki::VerifiedPath<'_>| root_path_len.verify_path(path)),
        )
        .map_err(|e| match root_path_len.violation(&e, end_entity, intermediates) {
            Some(exceeded) => SvidRejection::from(exceeded),
            None => untrusted(e.to_string()),
        })?;

        self.check_expected(&id)?;
        self.verified.insert(
            end_entity,
            intermediates,
            &identity,
            id.clone(),
            (not_before, not_after),
        );
        Ok(id)
    }

    /// The peer's trust domain is one this verifier accepts.
    fn check_trust_domain(&self, id: &SpiffeId, identity: &Identity) -> Result<()> {
        let td = id.trust_domain();
        let allowed = match &self.trust_domains {
            PeerTrustDomains::Listed(list) => list.contains(td),
            PeerTrustDomains::Own => td == identity.trust_domain(),
            // Verification refuses a trust domain the source holds no bundle for.
            PeerTrustDomains::AnyWithBundle => true,
        };
        if !allowed {
            return Err(SvidRejection::ForeignTrustDomain(td.to_string()).into());
        }
        Ok(())
    }

    /// The peer's ID is one this verifier expects, if it expects particular ones.
    fn check_expected(&self, id: &SpiffeId) -> Result<()> {
        if let Some(expected) = &self.expected_ids
            && !expected.iter().any(|m| m.matches(id))
        {
            let expected = expected.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ");
            return Err(SvidRejection::UnexpectedId { actual: id.to_string(), expected }.into());
        }
        Ok(())
    }

    fn verify_for_rustls(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<SpiffeId, rustls::Error> {
        self.verify(end_entity, intermediates, now).map_err(|e| match e {
            Error::PeerRejected(rejection) => {
                tracing::debug!(error = %rejection, "rejected peer X509-SVID");
                rejection.into_rustls()
            }
            other => rustls::Error::General(other.to_string()),
        })
    }
}

impl fmt::Debug for SvidVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvidVerifier")
            .field("source", &self.source)
            .field("peer", &self.peer)
            .field("trust_domains", &self.trust_domains)
            .field("expected_ids", &self.expected_ids)
            .finish_non_exhaustive()
    }
}

/// A rustls server-certificate verifier (for clients) that authenticates by SPIFFE ID; the
/// TLS server name is used for SNI only and never for authentication.
#[derive(Debug, Clone)]
pub struct SpiffeServerVerifier(pub SvidVerifier);

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.verify_for_rustls(end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    crate::impl_signature_checks!();
}

/// A rustls client-certificate verifier (for servers) that requires an X509-SVID.
#[derive(Debug, Clone)]
pub struct SpiffeClientVerifier(pub SvidVerifier);

impl ClientCertVerifier for SpiffeClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        // No hints: a workload holds exactly one SVID to offer.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.verify_for_rustls(end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    crate::impl_signature_checks!();
}

/// Presents the source's current SVID in every handshake, as client or server.
#[derive(Debug, Clone)]
pub struct SvidResolver(pub IdentitySource);

impl SvidResolver {
    fn certified_key(&self) -> Option<Arc<CertifiedKey>> {
        match self.0.current() {
            Ok(identity) => Some(Arc::clone(identity.certified_key())),
            Err(e) => {
                tracing::warn!(error = %e, "no X509-SVID to present in a TLS handshake");
                None
            }
        }
    }
}

impl rustls::client::ResolvesClientCert for SvidResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.certified_key()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl rustls::server::ResolvesServerCert for SvidResolver {
    fn resolve(&self, _client_hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.certified_key()
    }
}

/// Starts a client config that presents the source's SVID and accepts only a server whose
/// SPIFFE ID is exactly `server_id`. To accept a SPIKE role the way SPIKE does (its ID or one
/// below it, e.g. `spiffe://spike.ist/spike/nexus/nexus-0`), use [`mtls_client_matching`]
/// with [`IdMatcher::role`].
pub fn mtls_client(source: IdentitySource, server_id: SpiffeId) -> ClientConfigBuilder {
    mtls_client_matching(source, IdMatcher::Exact(server_id))
}

/// Starts a client config that presents the source's SVID and accepts only a server whose
/// SPIFFE ID `server` accepts.
pub fn mtls_client_matching(source: IdentitySource, server: IdMatcher) -> ClientConfigBuilder {
    ClientConfigBuilder {
        source,
        expected: vec![server],
        alpn: Vec::new(),
        resumption: true,
        client_certificate: true,
    }
}

/// Builds a rustls `ClientConfig` for mTLS by SPIFFE ID; see [`mtls_client`].
#[derive(Debug, Clone)]
pub struct ClientConfigBuilder {
    source: IdentitySource,
    expected: Vec<IdMatcher>,
    alpn: Vec<Vec<u8>>,
    resumption: bool,
    client_certificate: bool,
}

impl ClientConfigBuilder {
    /// Presents no client certificate: the server is still authenticated by its SPIFFE ID,
    /// and the caller authenticates per request instead (a JWT-SVID bearer token).
    pub fn without_client_certificate(mut self) -> Self {
        self.client_certificate = false;
        self
    }

    /// Also accepts a server with exactly this SPIFFE ID (e.g. during a migration).
    pub fn also_accept(self, server_id: SpiffeId) -> Self {
        self.also_accept_matching(IdMatcher::Exact(server_id))
    }

    /// Also accepts a server whose SPIFFE ID `server` accepts (e.g. a role in a second trust
    /// domain).
    pub fn also_accept_matching(mut self, server: IdMatcher) -> Self {
        if !self.expected.contains(&server) {
            self.expected.push(server);
        }
        self
    }

    /// ALPN protocols to offer, most preferred first (e.g. `h2`, `http/1.1`).
    pub fn alpn_protocols(mut self, protocols: impl IntoIterator<Item = Vec<u8>>) -> Self {
        self.alpn = protocols.into_iter().collect();
        self
    }

    /// Resumes TLS 1.3 sessions the server offers tickets for (default: on; see
    /// [`resumption`]). Off, every connection runs a full handshake.
    pub fn session_resumption(mut self, on: bool) -> Self {
        self.resumption = on;
        self
    }

    /// Builds the config; fails now if the source has no usable identity.
    pub fn build(self) -> Result<rustls::ClientConfig> {
        self.source.current()?;
        // Trust exactly the trust domains of the servers we expect, whose bundles the source
        // must hold (its own, or federated ones).
        let mut tds: Vec<TrustDomain> = Vec::new();
        for matcher in &self.expected {
            let td = matcher.id().trust_domain();
            if !tds.contains(td) {
                tds.push(td.clone());
            }
        }
        let verifier = SvidVerifier::new(self.source.clone(), PeerRole::Server)
            .with_trust_domains(tds)
            .with_expected(self.expected);
        let verified = rustls::ClientConfig::builder_with_provider(client_crypto_provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier(verifier)));
        let mut config = if self.client_certificate {
            verified.with_client_cert_resolver(Arc::new(SvidResolver(self.source.clone())))
        } else {
            verified.with_no_client_auth()
        };
        config.alpn_protocols = self.alpn;
        // One store per config: every connection made with it (a `Spike`'s whole pool) shares
        // it, and an SVID rotation needs no new config (the store follows the source).
        config.resumption = if self.resumption {
            resumption::resumption(self.source)
        } else {
            rustls::client::Resumption::disabled()
        };
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };
    use rustls::pki_types::PrivatePkcs8KeyDer;

    use spiffe::{X509Bundle, X509BundleSet, X509Svid};

    use super::*;
    use crate::identity::Identity;

    const PEER: &str = "spiffe://spike.ist/spike/pilot/role/superuser";
    const OWN: &str = "spiffe://spike.ist/spike/nexus";
    /// basicConstraints, RFC 5280 §4.2.1.9.
    const BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];

    struct Ca {
        issuer: Issuer<'static, KeyPair>,
        der: CertificateDer<'static>,
    }

    fn ca_params(name: &str, is_ca: IsCa) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = is_ca;
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
    }

    fn self_signed(params: CertificateParams, key: KeyPair) -> Ca {
        let der = params.self_signed(&key).unwrap().der().clone();
        Ca { issuer: Issuer::new(params, key), der }
    }

    fn root(name: &str, is_ca: IsCa) -> Ca {
        self_signed(ca_params(name, is_ca), KeyPair::generate().unwrap())
    }

    /// A root whose basicConstraints is `content` exactly (DER), whatever rcgen would write.
    fn root_with_basic_constraints(name: &str, content: Vec<u8>) -> Ca {
        let mut params = ca_params(name, IsCa::NoCa);
        params.custom_extensions =
            vec![CustomExtension::from_oid_content(BASIC_CONSTRAINTS, content)];
        self_signed(params, KeyPair::generate().unwrap())
    }

    fn constrained(max: u8) -> IsCa {
        IsCa::Ca(BasicConstraints::Constrained(max))
    }

    fn unconstrained() -> IsCa {
        IsCa::Ca(BasicConstraints::Unconstrained)
    }

    fn intermediate(parent: &Ca, name: &str, is_ca: IsCa) -> Ca {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(name, is_ca);
        let der = params.signed_by(&key, &parent.issuer).unwrap().der().clone();
        Ca { issuer: Issuer::new(params, key), der }
    }

    fn leaf(issuer: &Ca, spiffe_id: &str) -> (CertificateDer<'static>, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "leaf");
        params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().unwrap())];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let der = params.signed_by(&key, &issuer.issuer).unwrap().der().clone();
        (der, key)
    }

    /// A verifier of client SVIDs trusting exactly `bundle`; its own SVID comes from `bundle[0]`.
    fn verifier(bundle: &[&Ca]) -> SvidVerifier {
        let (own, key) = leaf(bundle[0], OWN);
        let ders: Vec<_> = bundle.iter().map(|ca| ca.der.clone()).collect();
        let key = PrivatePkcs8KeyDer::from(key.serialize_der());
        let identity = Identity::from_der(&[own], &key, &ders).unwrap();
        SvidVerifier::new(IdentitySource::in_memory(identity), PeerRole::Client)
    }

    /// Verifies a peer SVID from `issuer`, presenting `chain` (leaf's issuer first) with it.
    fn verify(
        bundle: &[&Ca],
        issuer: &Ca,
        chain: &[&Ca],
    ) -> std::result::Result<SpiffeId, SvidRejection> {
        let (peer, _) = leaf(issuer, PEER);
        let intermediates: Vec<_> = chain.iter().map(|ca| ca.der.clone()).collect();
        match verifier(bundle).verify(&peer, &intermediates, UnixTime::now()) {
            Ok(id) => Ok(id),
            Err(Error::PeerRejected(rejection)) => Err(rejection),
            Err(other) => panic!("not a rejection: {other}"),
        }
    }

    /// Verifies an SVID for `peer_id`, issued by `issuer`, with `verifier`.
    fn verify_id(
        verifier: &SvidVerifier,
        issuer: &Ca,
        peer_id: &str,
    ) -> std::result::Result<SpiffeId, SvidRejection> {
        let (peer, _) = leaf(issuer, peer_id);
        match verifier.verify(&peer, &[], UnixTime::now()) {
            Ok(id) => Ok(id),
            Err(Error::PeerRejected(rejection)) => Err(rejection),
            Err(other) => panic!("not a rejection: {other}"),
        }
    }

    #[test]
    fn a_verified_chain_is_remembered_but_time_expected_ids_and_bundles_still_apply() {
        let ca = root("root", unconstrained());
        let other = root("other", unconstrained());
        let v = verifier(&[&ca]);
        let (peer, _) = leaf(&ca, PEER);
        assert_eq!(v.verify(&peer, &[], UnixTime::now()).unwrap().to_string(), PEER);
        assert_eq!(v.verified.len(), 1);
        // A remembered chain is still checked against the clock...
        let far = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1 << 40));
        let err = v.verify(&peer, &[], far).unwrap_err();
        assert!(matches!(err, Error::PeerRejected(SvidRejection::Expired { .. })), "{err}");
        // ...and against what a verifier sharing the memo expects.
        let pinned = v.clone().with_expected_ids([OWN.parse().unwrap()]);
        let err = pinned.verify(&peer, &[], UnixTime::now()).unwrap_err();
        assert!(matches!(err, Error::PeerRejected(SvidRejection::UnexpectedId { .. })), "{err}");

        // It applies only to the same bytes under the same bundle snapshot.
        let identity = v.source().current().unwrap();
        let now = UnixTime::now();
        assert!(v.verified.lookup(&peer, &[], &identity, now).is_some());
        assert!(
            v.verified.lookup(&peer, std::slice::from_ref(&other.der), &identity, now).is_none()
        );
        let (stranger, _) = leaf(&ca, PEER);
        assert!(v.verified.lookup(&stranger, &[], &identity, now).is_none());
        let rotated = verifier(&[&other]).source().current().unwrap();
        assert!(v.verified.lookup(&peer, &[], &rotated, now).is_none());
        // A verifier whose bundle does not hold the CA refuses the chain, memo or not.
        assert!(verifier(&[&other]).verify(&peer, &[], now).is_err());
    }

    #[test]
    fn or_below_matcher_accepts_ids_below_the_base_and_exact_pins_one_id() {
        let ca = root("root", unconstrained());
        let nexus = IdMatcher::role(Role::Nexus, &["spike.ist"]).unwrap();
        assert_eq!(nexus, [IdMatcher::OrBelow(OWN.parse().unwrap())]);
        let below = verifier(&[&ca]).with_expected(nexus);
        for ok in [OWN, "spiffe://spike.ist/spike/nexus/nexus-0"] {
            assert_eq!(verify_id(&below, &ca, ok).unwrap().to_string(), ok);
        }
        for bad in ["spiffe://spike.ist/spike/nexusx", "spiffe://spike.ist/spike/keeper"] {
            let rejection = verify_id(&below, &ca, bad).unwrap_err();
            assert!(matches!(rejection, SvidRejection::UnexpectedId { .. }), "{bad}");
            assert!(rejection.to_string().contains("or an ID below it"), "{rejection}");
        }
        let exact = verifier(&[&ca]).with_expected_ids([OWN.parse().unwrap()]);
        assert!(verify_id(&exact, &ca, OWN).is_ok());
        assert!(verify_id(&exact, &ca, "spiffe://spike.ist/spike/nexus/nexus-0").is_err());
    }

    /// A verifier whose source holds our bundle (spike.ist, `own`) and a federated one
    /// (`other_td`, `other`).
    fn federated_verifier(own: &Ca, other_td: &str, other: &Ca) -> SvidVerifier {
        let (svid, key) = leaf(own, OWN);
        let svid = X509Svid::parse_from_der(svid.as_ref(), &key.serialize_der()).unwrap();
        let mut set = X509BundleSet::new();
        for (td, ca) in [("spike.ist", own), (other_td, other)] {
            let td = TrustDomain::new(td).unwrap();
            set.add_bundle(X509Bundle::from_x509_authorities(td, &[ca.der.as_ref()]).unwrap());
        }
        let identity = Identity::new(Arc::new(svid), Arc::new(set)).unwrap();
        SvidVerifier::new(IdentitySource::in_memory(identity), PeerRole::Client)
    }

    #[test]
    fn any_bundled_trust_domain_admits_federated_peers_and_still_needs_a_chain_to_their_bundle() {
        let own = root("own", unconstrained());
        let partner = root("partner", unconstrained());
        let stranger = root("stranger", unconstrained());
        const FEDERATED: &str = "spiffe://partner.org/app";
        let only_own = federated_verifier(&own, "partner.org", &partner);
        assert_eq!(
            verify_id(&only_own, &partner, FEDERATED).unwrap_err(),
            SvidRejection::ForeignTrustDomain("partner.org".into())
        );
        let any = only_own.with_peer_trust_domains(PeerTrustDomains::AnyWithBundle);
        assert_eq!(verify_id(&any, &partner, FEDERATED).unwrap().to_string(), FEDERATED);
        assert_eq!(verify_id(&any, &own, PEER).unwrap().to_string(), PEER);
        // A trust domain without a bundle, and a partner ID signed by the wrong CA, are refused.
        assert_eq!(
            verify_id(&any, &stranger, "spiffe://stranger.org/app").unwrap_err(),
            SvidRejection::NoBundle("stranger.org".into())
        );
        assert!(matches!(
            verify_id(&any, &stranger, FEDERATED).unwrap_err(),
            SvidRejection::UntrustedChain { .. }
        ));
        assert!(matches!(
            verify_id(&any, &partner, PEER).unwrap_err(),
            SvidRejection::UntrustedChain { .. }
        ));
    }

    #[test]
    fn root_with_path_len_zero_refuses_an_intermediate_below_it() {
        let root = root("root pathlen 0", constrained(0));
        let int = intermediate(&root, "intermediate", unconstrained());
        let rejection = verify(&[&root], &int, &[&int]).unwrap_err();
        assert_eq!(
            rejection,
            SvidRejection::PathLenExceeded { ca: "CN=root pathlen 0".into(), max: 0, actual: 1 }
        );
        let message = rejection.to_string();
        assert!(message.contains("pathLenConstraint") && message.contains("re-issue"), "{message}");
    }

    #[test]
    fn root_with_path_len_one_allows_one_intermediate_but_not_two() {
        let root = root("root pathlen 1", constrained(1));
        let int = intermediate(&root, "intermediate", unconstrained());
        assert_eq!(verify(&[&root], &int, &[&int]).unwrap().to_string(), PEER);

        let int2 = intermediate(&int, "intermediate 2", unconstrained());
        assert_eq!(
            verify(&[&root], &int2, &[&int2, &int]).unwrap_err(),
            SvidRejection::PathLenExceeded { ca: "CN=root pathlen 1".into(), max: 1, actual: 2 }
        );
    }

    #[test]
    fn unconstrained_root_allows_intermediates() {
        let root = root("root", unconstrained());
        let int = intermediate(&root, "intermediate", unconstrained());
        assert_eq!(verify(&[&root], &int, &[&int]).unwrap().to_string(), PEER);
        let int2 = intermediate(&int, "intermediate 2", unconstrained());
        assert_eq!(verify(&[&root], &int2, &[&int2, &int]).unwrap().to_string(), PEER);
    }

    #[test]
    fn intermediate_with_path_len_zero_refuses_a_second_intermediate_below_it() {
        let root = root("root", unconstrained());
        let int = intermediate(&root, "intermediate pathlen 0", constrained(0));
        let int2 = intermediate(&int, "intermediate 2", unconstrained());
        // webpki refuses this one itself; the message still names the CA.
        assert_eq!(
            verify(&[&root], &int2, &[&int2, &int]).unwrap_err(),
            SvidRejection::PathLenExceeded {
                ca: "CN=intermediate pathlen 0".into(),
                max: 0,
                actual: 1,
            }
        );
        // Sent out of order, the chain is still refused, just less precisely.
        assert!(matches!(
            verify(&[&root], &int2, &[&int, &int2]).unwrap_err(),
            SvidRejection::UntrustedChain { .. } | SvidRejection::PathLenExceeded { .. }
        ));
        // It may still sign leaves directly.
        assert_eq!(verify(&[&root], &int, &[&int]).unwrap().to_string(), PEER);
    }

    #[test]
    fn root_with_path_len_zero_allows_a_leaf_it_signs_directly() {
        let root = root("root pathlen 0", constrained(0));
        assert_eq!(verify(&[&root], &root, &[]).unwrap().to_string(), PEER);
    }

    #[test]
    fn root_in_the_chain_as_well_as_the_bundle_does_not_escape_its_path_len() {
        let root = root("root pathlen 0", constrained(0));
        let int = intermediate(&root, "intermediate", unconstrained());
        // The self-signed root sent along is tried as one more intermediate (where webpki
        // reads its constraint itself); every path is refused.
        assert!(matches!(
            verify(&[&root], &int, &[&int, &root]).unwrap_err(),
            SvidRejection::PathLenExceeded { max: 0, .. }
        ));
    }

    #[test]
    fn same_root_key_twice_in_the_bundle_uses_the_copy_whose_path_len_allows_the_chain() {
        // Go tries every root and accepts the chain if any root allows it; so must we, even
        // when the refusing copy comes first and shares subject and key with the other.
        let pkcs8 = KeyPair::generate().unwrap().serialize_der();
        let same_key = || KeyPair::try_from(pkcs8.as_slice()).unwrap();
        let strict = self_signed(ca_params("root", constrained(0)), same_key());
        let lenient = self_signed(ca_params("root", constrained(1)), same_key());
        let int = intermediate(&strict, "intermediate", unconstrained());
        assert_eq!(verify(&[&strict, &lenient], &int, &[&int]).unwrap().to_string(), PEER);
        assert!(matches!(
            verify(&[&strict], &int, &[&int]).unwrap_err(),
            SvidRejection::PathLenExceeded { .. }
        ));
    }

    #[test]
    fn root_without_the_ca_flag_is_trusted_as_go_trusts_it_and_keeps_its_path_len() {
        // Go requires cA=true of intermediates only: a bundle certificate is trusted because it
        // is in the bundle. It still honours a pathLenConstraint there, whatever the cA flag.
        let not_ca = root("root cA=false", IsCa::ExplicitNoCa);
        assert_eq!(verify(&[&not_ca], &not_ca, &[]).unwrap().to_string(), PEER);
        let int = intermediate(&not_ca, "intermediate", unconstrained());
        assert_eq!(verify(&[&not_ca], &int, &[&int]).unwrap().to_string(), PEER);

        // SEQUENCE { pathLenConstraint INTEGER 0 }, cA absent (DEFAULT FALSE).
        let limited = root_with_basic_constraints(
            "root cA=false pathlen 0",
            vec![0x30, 0x03, 0x02, 0x01, 0x00],
        );
        assert_eq!(verify(&[&limited], &limited, &[]).unwrap().to_string(), PEER);
        let int = intermediate(&limited, "intermediate", unconstrained());
        assert_eq!(
            verify(&[&limited], &int, &[&int]).unwrap_err(),
            SvidRejection::PathLenExceeded {
                ca: "CN=root cA=false pathlen 0".into(),
                max: 0,
                actual: 1,
            }
        );
    }

    #[test]
    fn bundle_certificate_with_unreadable_basic_constraints_is_refused_not_unconstrained() {
        // pathLenConstraint -1: Go refuses to parse the certificate; x509-parser would report
        // the extension as absent, which must not read as "no limit".
        let bad = root_with_basic_constraints(
            "root",
            vec![0x30, 0x06, 0x01, 0x01, 0xff, 0x02, 0x01, 0xff],
        );
        let (own, key) = leaf(&bad, OWN);
        let key = PrivatePkcs8KeyDer::from(key.serialize_der());
        let err = Identity::from_der(&[own], &key, std::slice::from_ref(&bad.der))
            .unwrap_err()
            .to_string();
        assert!(err.contains("trust bundle") && err.contains("basicConstraints"), "{err}");
    }
}
