//! Errors of `spike-client`: one enum for the crate, plus [`SvidRejection`], the precise reason
//! a peer's X509-SVID was refused during an mTLS handshake.
//!
//! Messages say what failed and what to do about it; none carries key material.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

/// Everything that can go wrong in `spike-client`.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// `SPIFFE_ENDPOINT_SOCKET` is unset and SPIRE's default socket does not exist, so there
    /// is no Workload API to ask.
    #[error(
        "SPIFFE_ENDPOINT_SOCKET is not set and SPIRE agent's default socket \
         unix:///tmp/spire-agent/public/api.sock does not exist: point SPIFFE_ENDPOINT_SOCKET \
         at a SPIFFE Workload API socket, e.g. `unix:///tmp/spike/agent/nexus.sock` (start a \
         local agent with `spike-dev-agent`), or start the SPIRE agent"
    )]
    EndpointNotSet,

    /// The Workload API did not hand out an X509-SVID in time (or refused to).
    #[error(
        "no X509-SVID from the SPIFFE Workload API at {endpoint} within {timeout:?}: {reason}; \
         is the agent running and is this process registered? Start SPIRE or `spike-dev-agent` \
         and check SPIFFE_ENDPOINT_SOCKET"
    )]
    WorkloadApi {
        /// The endpoint that was tried (`unix:///...`).
        endpoint: String,
        /// How long we waited.
        timeout: Duration,
        /// What the SPIFFE client reported.
        reason: String,
    },

    /// The Workload API socket is not there or refuses connections: nothing to wait for.
    #[error("cannot reach the SPIFFE Workload API at {endpoint}: {reason}")]
    WorkloadApiUnreachable {
        /// The endpoint that was tried (`unix:///...`).
        endpoint: String,
        /// Why, and what to do.
        reason: String,
    },

    /// A running identity source has no usable SVID right now (closed, withdrawn, or expired).
    #[error("the identity source has no usable X509-SVID right now: {0}")]
    SourceUnavailable(String),

    /// A file of a spiffe-helper style SVID directory could not be read.
    #[error(
        "cannot read {path}: {source}; write the SVID files with `spike-dev-agent --write-svid \
         NAME=DIR` or spiffe-helper"
    )]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// PEM or DER input did not contain what it should.
    #[error("{what} is not usable: {reason}")]
    InvalidInput {
        /// Which input (a path or a description such as "in-memory SVID").
        what: String,
        /// Why it was refused.
        reason: String,
    },

    /// The SVID's private key does not belong to its leaf certificate.
    #[error("the private key does not match the X509-SVID's leaf certificate ({0})")]
    KeyMismatch(String),

    /// A string was not a valid SPIFFE ID or trust domain.
    #[error("{value:?} is not a valid SPIFFE ID or trust domain: {reason}")]
    InvalidSpiffeId {
        /// The rejected value.
        value: String,
        /// Why.
        reason: String,
    },

    /// A tokio runtime is needed (to watch SVID files) but none is running.
    #[error("watching SVID files needs a tokio runtime; call this from inside one")]
    NoRuntime,

    /// rustls refused a configuration.
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),

    /// A peer's certificate is not an acceptable X509-SVID.
    #[error("peer rejected: {0}")]
    PeerRejected(#[from] SvidRejection),

    /// Nexus could not be reached: connection refused, timeout, or a failed TLS handshake.
    #[error(
        "cannot reach SPIKE Nexus at {url}: {reason}; check SPIKE_NEXUS_API_URL, that Nexus is \
         running, and that it presents the expected SPIFFE ID"
    )]
    NexusUnreachable {
        /// The Nexus URL.
        url: String,
        /// What the HTTP/TLS layer reported.
        reason: String,
    },

    /// Nexus has no root key yet (HTTP 503, `state_not_ready`).
    #[error(
        "SPIKE Nexus is not ready: it has no root key yet; wait for it to recover from its \
         Keepers, or restore it with `spike operator restore`"
    )]
    NotReady,

    /// Nexus refused: this SPIFFE ID has no policy allowing the call (HTTP 401).
    #[error(
        "access denied: no policy lets this SPIFFE ID do that; ask an operator to grant it, \
         e.g. `spike policy create --name N --spiffe-id-pattern P --path-pattern P \
         --permissions read`"
    )]
    Forbidden,

    /// The secret, version or policy does not exist (HTTP 404).
    #[error("not found: no such secret, version or policy (or it was deleted)")]
    NotFound,

    /// Nexus rejected the request as malformed (HTTP 400); the code says which check failed.
    #[error("Nexus rejected the request as invalid ({0}); check the path, name and values")]
    BadRequest(String),

    /// A check-and-set write lost: the secret changed since the expected version (HTTP 409).
    #[error("check-and-set conflict: the secret changed since that version; read it and retry")]
    Conflict,

    /// Nexus asked this client to slow down (HTTP 429).
    #[error("rate limited by Nexus; retry after {retry_after:?}")]
    RateLimited {
        /// When to retry, if Nexus said.
        retry_after: Option<Duration>,
    },

    /// No JWT-SVID could be fetched from the Workload API (JWT mode, see
    /// [`crate::SpikeBuilder::jwt_audience`]).
    #[error(
        "cannot get a JWT-SVID for audience {audience:?} from the Workload API at {endpoint}: \
         {reason}; check that the agent serves JWT-SVIDs to this workload"
    )]
    JwtSvid {
        /// The endpoint that was tried.
        endpoint: String,
        /// The audience asked for.
        audience: String,
        /// What the SPIFFE client reported.
        reason: String,
    },

    /// Nexus refused an import request (`spike operator import-spike`): invalid (400) or in
    /// conflict with what is stored (409); `reason` names what, never a value.
    #[error("Nexus refused the import: {reason}")]
    ImportRefused {
        /// HTTP status (400 or 409).
        status: u16,
        /// Nexus's reason.
        reason: String,
    },

    /// Nexus failed (HTTP 5xx other than 503, or an `err` code in a 200 body).
    #[error("SPIKE Nexus failed (HTTP {status}, code {code:?}); {}", server_advice(code))]
    Server {
        /// HTTP status.
        status: u16,
        /// SPIKE error code, if any.
        code: String,
    },

    /// Nexus's answer did not have the expected shape.
    #[error("unexpected response from Nexus: {0}")]
    Protocol(String),
}

/// What the operator should do about a Nexus failure with this code.
fn server_advice(code: &str) -> &'static str {
    match code {
        spike_core::wire::STORE_FULL => {
            "Nexus's store or audit log is out of disk space, so the request was not \
             acknowledged: free space on Nexus's data volume (a sled store then needs a Nexus \
             restart) and retry"
        }
        spike_core::wire::operator::ROOT_ROTATION_ABORTED => {
            "a Keeper could not take its new shard, so the root key was not rotated and the old \
             one stays in use: check that every Keeper is up (Nexus's log names the one that \
             failed) and retry"
        }
        _ => "see Nexus's log",
    }
}

impl Error {
    /// True for failures worth retrying later (Nexus unreachable, not ready, rate limited).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::NexusUnreachable { .. } | Error::NotReady | Error::RateLimited { .. })
    }
}

/// Why a peer's certificate was refused as an X509-SVID (X509-SVID spec §4, §5).
///
/// rustls reports it inside `CertificateError::Other`; [`SvidRejection::from_rustls`] gets it
/// back out of a handshake error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SvidRejection {
    /// The certificate is not parseable DER X.509.
    #[error("peer certificate is malformed: {0}")]
    Malformed(String),
    /// No URI SAN, so no SPIFFE ID.
    #[error("peer certificate has no URI SAN, so it carries no SPIFFE ID")]
    NoUriSan,
    /// Several URI SANs; an X509-SVID has exactly one (X509-SVID §2).
    #[error("peer certificate has {0} URI SANs; an X509-SVID has exactly one")]
    MultipleUriSans(usize),
    /// The URI SAN is not a `spiffe://` URI.
    #[error("peer certificate's URI SAN {0:?} is not a spiffe:// ID")]
    NotSpiffeUri(String),
    /// The URI SAN starts with `spiffe://` but is not a valid SPIFFE ID.
    #[error("peer certificate's URI SAN {uri:?} is not a valid SPIFFE ID: {reason}")]
    InvalidSpiffeId {
        /// The URI.
        uri: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The leaf names only a trust domain (X509-SVID §3: leaf IDs have a path).
    #[error("peer SPIFFE ID {0} has no path; a leaf X509-SVID must name a workload")]
    NoPath(String),
    /// The leaf is a CA certificate (X509-SVID §4.1: leaf must set cA=false).
    #[error("peer leaf certificate is a CA (basicConstraints cA=true)")]
    LeafIsCa,
    /// The leaf has no basicConstraints extension (X509-SVID §4.1).
    #[error("peer leaf certificate has no basicConstraints extension")]
    MissingBasicConstraints,
    /// The leaf may sign certificates or CRLs (X509-SVID §4.3).
    #[error("peer leaf certificate has keyCertSign or cRLSign key usage")]
    LeafCanSign,
    /// The leaf lacks keyUsage digitalSignature (X509-SVID §4.3).
    #[error("peer leaf certificate lacks keyUsage digitalSignature")]
    NoDigitalSignature,
    /// The peer's trust domain is not one this side accepts.
    #[error("peer trust domain {0:?} is not allowed here")]
    ForeignTrustDomain(String),
    /// The trust domain is allowed but we hold no bundle for it.
    #[error("no trust bundle for peer trust domain {0:?}")]
    NoBundle(String),
    /// The leaf's notAfter has passed.
    #[error("peer certificate expired at unix time {not_after} (now {now})")]
    Expired {
        /// notAfter, seconds since the Unix epoch.
        not_after: i64,
        /// The verification time.
        now: u64,
    },
    /// The leaf's notBefore is still ahead.
    #[error("peer certificate is not valid before unix time {not_before} (now {now})")]
    NotYetValid {
        /// notBefore, seconds since the Unix epoch.
        not_before: i64,
        /// The verification time.
        now: u64,
    },
    /// The chain does not lead to the trust domain's bundle.
    #[error(
        "peer certificate chain does not verify against the bundle of {trust_domain:?}: {reason}"
    )]
    UntrustedChain {
        /// The peer's trust domain.
        trust_domain: String,
        /// webpki's reason.
        reason: String,
    },
    /// A CA in the chain, the trust bundle's own certificate included, has more intermediate
    /// CA certificates below it than its basicConstraints pathLenConstraint allows (RFC 5280
    /// §4.2.1.9; Go's crypto/x509, and so go-spiffe and SPIKE, refuse such chains).
    #[error(
        "peer certificate chain has {actual} intermediate CA certificate(s) below CA {ca:?}, \
         whose basicConstraints pathLenConstraint allows at most {max}; re-issue the peer's \
         SVID from a CA whose path length allows its intermediates, or drop the extra \
         intermediate"
    )]
    PathLenExceeded {
        /// The subject of the CA whose constraint is exceeded.
        ca: String,
        /// Its pathLenConstraint.
        max: u32,
        /// How many intermediate CA certificates sit between it and the leaf.
        actual: usize,
    },
    /// A verified peer, but not one of the SPIFFE IDs this side expects.
    #[error("peer SPIFFE ID {actual} is not the expected {expected}")]
    UnexpectedId {
        /// The peer's SPIFFE ID.
        actual: String,
        /// The accepted ID(s), comma-separated.
        expected: String,
    },
    /// The handshake finished without a peer certificate.
    #[error("peer presented no certificate")]
    NoCertificate,
}

impl SvidRejection {
    /// Finds the rejection inside a rustls error, if that is why the handshake failed.
    pub fn from_rustls(err: &rustls::Error) -> Option<&SvidRejection> {
        match err {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
                other.0.downcast_ref::<SvidRejection>()
            }
            _ => None,
        }
    }

    /// Finds the rejection inside an I/O error from tokio-rustls' `connect`/`accept`.
    pub fn from_io(err: &std::io::Error) -> Option<&SvidRejection> {
        err.get_ref()?.downcast_ref::<rustls::Error>().and_then(Self::from_rustls)
    }

    /// Wraps the rejection as the rustls error a verifier returns.
    pub fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
            std::sync::Arc::new(self),
        )))
    }
}

impl From<crate::tls::path_len::PathLenExceeded> for SvidRejection {
    fn from(e: crate::tls::path_len::PathLenExceeded) -> Self {
        Self::PathLenExceeded { ca: e.ca, max: e.max, actual: e.actual }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
