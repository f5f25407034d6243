//! A bounded memo of peer certificate chains that verified, so a peer that reconnects with the
//! same SVID skips re-parsing it and re-checking the chain's signatures.
//!
//! Why: SPIKE's Go SDK opens a new connection for every call (issue 13), so Nexus verified the
//! same client chain over and over: an X.509 parse, a webpki parse and an ECDSA verification
//! per connection, about a tenth of Nexus's CPU under that load.
//!
//! What is kept is only the *outcome* of a full verification of identical bytes under the
//! identical bundle snapshot: the entry holds the exact DER of the leaf and the intermediates
//! (compared byte for byte, no hash), a weak reference to the [`Identity`] whose bundles
//! anchored it (a rotated bundle is a new `Identity`, so the entry no longer applies; holding
//! the allocation keeps its address from being reused), and the chain's validity window, which
//! is checked again on every use. Possession of the key is not memoised: rustls checks the
//! peer's handshake signature on every connection. The verifier re-runs its (cheap) trust
//! domain and expected-ID checks on a hit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use rustls::pki_types::{CertificateDer, UnixTime};
use spiffe::SpiffeId;

use crate::error::SvidRejection;
use crate::identity::Identity;

/// Chains remembered at most; a full memo is emptied (a flood of distinct valid SVIDs then
/// costs what it cost without the memo).
pub(crate) const MAX_VERIFIED_CHAINS: usize = 1024;

struct Verified {
    intermediates: Vec<Vec<u8>>,
    identity: Weak<Identity>,
    id: SpiffeId,
    /// The latest notBefore and the earliest notAfter of the chain's certificates.
    not_before: i64,
    not_after: i64,
}

/// See the module docs.
#[derive(Default)]
pub(crate) struct VerifiedChains {
    entries: Mutex<HashMap<Vec<u8>, Verified>>,
}

impl std::fmt::Debug for VerifiedChains {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedChains").finish_non_exhaustive()
    }
}

impl VerifiedChains {
    /// The SPIFFE ID of an identical chain that verified under `identity`, re-checked against
    /// `now`; `None` when there is no such entry (verify in full).
    pub(crate) fn lookup(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        identity: &Arc<Identity>,
        now: UnixTime,
    ) -> Option<Result<SpiffeId, SvidRejection>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let hit = entries.get(end_entity.as_ref())?;
        let same_chain = hit.intermediates.len() == intermediates.len()
            && hit.intermediates.iter().zip(intermediates).all(|(a, b)| a[..] == b[..]);
        if !same_chain || hit.identity.as_ptr() != Arc::as_ptr(identity) {
            return None;
        }
        let now = now.as_secs();
        Some(if i128::from(now) < i128::from(hit.not_before) {
            Err(SvidRejection::NotYetValid { not_before: hit.not_before, now })
        } else if i128::from(now) > i128::from(hit.not_after) {
            Err(SvidRejection::Expired { not_after: hit.not_after, now })
        } else {
            Ok(hit.id.clone())
        })
    }

    /// Remembers a chain that has just verified in full under `identity`. `leaf_window` is the
    /// leaf's validity; the intermediates' windows are read here (a chain whose intermediates
    /// do not parse is simply not remembered).
    pub(crate) fn insert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        identity: &Arc<Identity>,
        id: SpiffeId,
        leaf_window: (i64, i64),
    ) {
        let (mut not_before, mut not_after) = leaf_window;
        for der in intermediates {
            let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { return };
            let validity = cert.validity();
            not_before = not_before.max(validity.not_before.timestamp());
            not_after = not_after.min(validity.not_after.timestamp());
        }
        let entry = Verified {
            intermediates: intermediates.iter().map(|c| c.as_ref().to_vec()).collect(),
            identity: Arc::downgrade(identity),
            id,
            not_before,
            not_after,
        };
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_VERIFIED_CHAINS && !entries.contains_key(end_entity.as_ref()) {
            entries.clear();
        }
        entries.insert(end_entity.as_ref().to_vec(), entry);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}
