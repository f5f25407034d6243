//! The path length limit of trusted roots, which webpki does not enforce (issue 13).
//!
//! RFC 5280 §4.2.1.9: a CA's basicConstraints pathLenConstraint caps how many intermediate CA
//! certificates may follow it on the way to a leaf. rustls-webpki checks it for every
//! intermediate, but reduces a trusted root to a `TrustAnchor` (subject, key, name
//! constraints) and so never sees the root's own: root (pathlen:0) → intermediate CA → leaf
//! passes webpki, while Go's `crypto/x509` (and so go-spiffe and SPIKE) and OpenSSL refuse it.
//! [`PathLenLimit`] keeps each root's limit beside its anchor; [`RootPathLenCheck`] enforces it
//! from webpki's `verify_path` callback. The SPIFFE verifier ([`super::SvidVerifier`]) and
//! Nexus's PostgreSQL server verifier both use it.
//!
//! ```no_run
//! use rustls::pki_types::{CertificateDer, UnixTime};
//! use spike_client::tls::path_len::{PathLenLimit, RootPathLenCheck};
//!
//! # fn demo(
//! #     roots: &[CertificateDer<'static>],
//! #     leaf: &CertificateDer<'_>,
//! #     intermediates: &[CertificateDer<'_>],
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! let anchors = roots
//!     .iter()
//!     .map(|root| webpki::anchor_from_trusted_cert(root))
//!     .collect::<Result<Vec<_>, _>>()?;
//! let limits = roots.iter().map(PathLenLimit::from_root).collect::<Result<Vec<_>, _>>()?;
//!
//! let check = RootPathLenCheck::new(&anchors, &limits);
//! let algorithms = spike_client::tls::crypto_provider().signature_verification_algorithms;
//! let end_entity = webpki::EndEntityCert::try_from(leaf)?;
//! let verified = end_entity.verify_for_usage(
//!     algorithms.all,
//!     &anchors,
//!     intermediates,
//!     UnixTime::now(),
//!     webpki::KeyUsage::server_auth(),
//!     None,
//!     Some(&|path: &webpki::VerifiedPath<'_>| check.verify_path(path)),
//! );
//! if let Err(e) = verified {
//!     return Err(match check.violation(&e, leaf, intermediates) {
//!         // "the CA "CN=root" allows at most 0 intermediate CA certificate(s) below it ..."
//!         Some(exceeded) => exceeded.into(),
//!         None => e.into(),
//!     });
//! }
//! # Ok(()) }
//! ```

use std::cell::Cell;
use std::fmt;

use rustls::pki_types::{CertificateDer, TrustAnchor};
use x509_parser::certificate::X509Certificate;

use crate::error::{Error, Result};

/// A trusted root's basicConstraints pathLenConstraint, kept beside the `TrustAnchor` webpki
/// makes of the root (which drops it) so that [`RootPathLenCheck`] can enforce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathLenLimit {
    subject: String,
    max: u32,
}

impl PathLenLimit {
    /// Reads a trusted root's pathLenConstraint as Go's crypto/x509 does: whatever its cA flag
    /// (Go trusts a root without cA=true but still honours its MaxPathLen); `Ok(None)` when it
    /// sets none. A basicConstraints extension that does not parse or appears twice is an
    /// error, since Go refuses such a certificate outright rather than treating it as
    /// unconstrained.
    pub fn from_root(der: &CertificateDer<'_>) -> Result<Option<Self>> {
        use x509_parser::oid_registry::OID_X509_EXT_BASIC_CONSTRAINTS;

        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| {
            Error::InvalidInput { what: "a CA certificate".into(), reason: e.to_string() }
        })?;
        let unusable = |reason: String| Error::InvalidInput {
            what: format!("CA certificate {:?}", cert.subject().to_string()),
            reason,
        };
        let constraints =
            cert.basic_constraints().map_err(|e| unusable(format!("basicConstraints: {e}")))?;
        // x509-parser reports an extension it cannot parse as absent: that must not pass as "no
        // constraint" (fail closed).
        if constraints.is_none()
            && cert.extensions().iter().any(|ext| ext.oid == OID_X509_EXT_BASIC_CONSTRAINTS)
        {
            return Err(unusable("its basicConstraints extension is malformed".into()));
        }
        Ok(constraints
            .and_then(|bc| bc.value.path_len_constraint)
            .map(|max| Self { subject: cert.subject().to_string(), max }))
    }

    /// The root's subject (RFC 4514 form), to name it in messages.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The pathLenConstraint: how many intermediate CA certificates may follow the root.
    pub fn max(&self) -> u32 {
        self.max
    }
}

/// Why a chain was refused: it puts more intermediate CA certificates below a CA than that
/// CA's basicConstraints pathLenConstraint allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the CA {ca:?} allows at most {max} intermediate CA certificate(s) below it \
     (basicConstraints pathLenConstraint); the chain has {actual}"
)]
#[non_exhaustive]
pub struct PathLenExceeded {
    /// The subject of the CA whose constraint is exceeded.
    pub ca: String,
    /// Its pathLenConstraint.
    pub max: u32,
    /// How many intermediate CA certificates sit between it and the leaf.
    pub actual: usize,
}

/// Enforces the pathLenConstraint of trusted roots from webpki's `verify_path` callback, and
/// remembers a violation so that the caller's error can name the CA.
///
/// Checking each candidate path, rather than the one `verify_for_usage` returns, lets webpki
/// go on to another path that is within limits (say, a second copy of the root whose limit
/// allows the chain), as Go would. One check serves one `verify_for_usage` call.
pub struct RootPathLenCheck<'a> {
    anchors: &'a [TrustAnchor<'a>],
    limits: &'a [Option<PathLenLimit>],
    exceeded: Cell<Option<PathLenExceeded>>,
}

impl<'a> RootPathLenCheck<'a> {
    /// A check for paths ending at `anchors`, where `limits[i]` is the limit of the root
    /// `anchors[i]` was made from (`None`: unconstrained). Give webpki this same `anchors`
    /// slice.
    pub fn new(anchors: &'a [TrustAnchor<'a>], limits: &'a [Option<PathLenLimit>]) -> Self {
        Self { anchors, limits, exceeded: Cell::new(None) }
    }

    /// The `verify_path` callback of `EndEntityCert::verify_for_usage`: refuses a candidate
    /// path with more intermediates than its root allows (webpki then tries another path) and
    /// remembers why.
    pub fn verify_path(&self, path: &webpki::VerifiedPath<'_>) -> Result<(), webpki::Error> {
        let limit = match anchor_index(self.anchors, path.anchor()).map(|i| self.limits.get(i)) {
            Some(Some(Some(limit))) => limit,
            Some(Some(None)) => return Ok(()),
            // Cannot happen when webpki was given our anchors and the slices are index-aligned;
            // should it, refuse rather than skip the check.
            _ => return Err(webpki::Error::UnknownIssuer),
        };
        let actual = path.intermediate_certificates().count();
        if usize::try_from(limit.max).is_ok_and(|max| actual > max) {
            self.exceeded.set(Some(PathLenExceeded {
                ca: limit.subject.clone(),
                max: limit.max,
                actual,
            }));
            return Err(webpki::Error::PathLenConstraintViolated);
        }
        Ok(())
    }

    /// Explains `error`, from the `verify_for_usage` call this check served, when a CA's
    /// pathLenConstraint is why the chain failed: the root this check refused, else the
    /// presented intermediate whose constraint webpki found exceeded. `None` for any other
    /// failure, or when no CA can be named.
    pub fn violation(
        &self,
        error: &webpki::Error,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Option<PathLenExceeded> {
        let ours = self.exceeded.take();
        if !matches!(error, webpki::Error::PathLenConstraintViolated) {
            return None;
        }
        ours.or_else(|| presented_path_len_violation(end_entity, intermediates))
    }
}

impl fmt::Debug for RootPathLenCheck<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootPathLenCheck")
            .field("anchors", &self.anchors.len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The index in `anchors` of `anchor`. webpki hands back a reference into the slice it was
/// given, so identity finds the exact root even when two share a subject and key; matching by
/// content is only a fallback should that ever change.
fn anchor_index(anchors: &[TrustAnchor<'_>], anchor: &TrustAnchor<'_>) -> Option<usize> {
    anchors.iter().position(|a| std::ptr::eq(a, anchor)).or_else(|| {
        anchors.iter().position(|a| {
            a.subject == anchor.subject
                && a.subject_public_key_info == anchor.subject_public_key_info
                && a.name_constraints == anchor.name_constraints
        })
    })
}

/// A certificate that parses with nothing after it.
fn parse<'a>(der: &'a CertificateDer<'_>) -> Option<X509Certificate<'a>> {
    match x509_parser::parse_x509_certificate(der.as_ref()) {
        Ok(([], cert)) => Some(cert),
        _ => None,
    }
}

/// Names the presented intermediate whose pathLenConstraint webpki found exceeded. Only for
/// the message, on the failure path: walks the chain in the order sent (the leaf's issuer
/// first, as TLS 1.2 requires and most servers send) while each certificate issues the one
/// before it, so it names a real violation or nothing.
fn presented_path_len_violation(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Option<PathLenExceeded> {
    let leaf = parse(end_entity)?;
    let mut issuer = leaf.issuer().as_raw().to_vec();
    for (below, der) in intermediates.iter().enumerate() {
        let cert = parse(der)?;
        if cert.subject().as_raw() != issuer.as_slice() {
            return None;
        }
        if let Some(max) =
            cert.basic_constraints().ok()?.and_then(|bc| bc.value.path_len_constraint)
            && usize::try_from(max).is_ok_and(|max| below > max)
        {
            return Some(PathLenExceeded { ca: cert.subject().to_string(), max, actual: below });
        }
        issuer = cert.issuer().as_raw().to_vec();
    }
    None
}
