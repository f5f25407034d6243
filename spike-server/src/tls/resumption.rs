//! TLS 1.3 session tickets for mTLS listeners (issue 15): stateless tickets that expire after a
//! short lifetime and die with the identity snapshot they were issued under.
//!
//! A resumed handshake does not run the client-certificate verifier: rustls restores the
//! client's chain from the ticket of a session whose full handshake verified it. What stands
//! in for the skipped verification:
//! - **Lifetime**: a ticket carries its issue time inside the authenticated encryption and is
//!   refused once older than the lifetime ([`DEFAULT_TICKET_LIFETIME`] unless configured);
//!   rustls itself never checks a ticket's age, only rotates the key (every 6 h).
//! - **Bundles and policy**: a ticket is refused once [`IdentitySource::current`] has returned
//!   a new snapshot since it was issued (our SVID rotated or any trust bundle changed), so a
//!   chain verified under a bundle we no longer hold — a removed federation, a rotated-out CA —
//!   needs a full handshake again. Trust-domain and expected-ID rules are fixed per listener,
//!   so a session that passed them still passes them.
//! - **Validity**: after every resumed handshake [`super::peer_spiffe_id_of`] checks that each
//!   certificate of the restored chain is still within its validity period, and the listener
//!   closes the connection otherwise: a session never outlives the client's SVID.
//! - **Identity**: the caller's SPIFFE ID is read from the restored leaf exactly as after a full
//!   handshake, so policies apply unchanged.
//!
//! A refused ticket is not an error: rustls falls back to a full handshake, which verifies the
//! client's current SVID from scratch.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::server::ProducesTickets;
use spike_client::identity::{Identity, IdentitySource};

/// How long a session ticket stays usable unless configured otherwise: long enough for a
/// client that opens a connection per call to resume nearly every one, far shorter than an
/// SVID's life (SPIRE's default is an hour, rotated at half-life).
pub const DEFAULT_TICKET_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// The longest ticket lifetime accepted: an SVID's default life in SPIRE.
pub const MAX_TICKET_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Bytes ahead of rustls' session state in a ticket's plaintext: issue time and generation.
const HEADER: usize = 16;

/// Produces tickets with rustls' ring ticketer, bound to an issue time and an identity
/// generation; see the module docs.
pub(crate) struct SvidTicketer {
    inner: Arc<dyn ProducesTickets>,
    source: IdentitySource,
    lifetime: Duration,
    generation: Mutex<Generation>,
}

struct Generation {
    /// The snapshot of this generation. Weak, to compare addresses only: holding the
    /// allocation keeps its address from being reused by a later snapshot.
    identity: Weak<Identity>,
    number: u64,
}

impl SvidTicketer {
    /// A ticketer with a fresh random key (never shared with another listener or process).
    pub(crate) fn new(
        source: IdentitySource,
        lifetime: Duration,
    ) -> Result<Self, spike_client::Error> {
        let inner = rustls::crypto::ring::Ticketer::new()?;
        let identity = source.current().map(|i| Arc::downgrade(&i)).unwrap_or_default();
        Ok(Self {
            inner,
            source,
            lifetime,
            generation: Mutex::new(Generation { identity, number: 0 }),
        })
    }

    /// The current generation; `None` when the source has no identity (issue and accept no
    /// tickets then).
    fn generation(&self) -> Option<u64> {
        let current = self.source.current().ok()?;
        let mut g = self.generation.lock().unwrap_or_else(PoisonError::into_inner);
        if g.identity.as_ptr() != Arc::as_ptr(&current) {
            g.identity = Arc::downgrade(&current);
            g.number += 1;
            tracing::debug!(
                generation = g.number,
                "identity snapshot changed; older TLS tickets are void"
            );
        }
        Some(g.number)
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl ProducesTickets for SvidTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(self.lifetime.as_secs()).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut stamped = Vec::with_capacity(HEADER + plain.len());
        stamped.extend_from_slice(&unix_now().to_be_bytes());
        stamped.extend_from_slice(&self.generation()?.to_be_bytes());
        stamped.extend_from_slice(plain);
        let ticket = self.inner.encrypt(&stamped);
        // The plaintext holds the session's resumption secret.
        zeroize::Zeroize::zeroize(&mut stamped);
        ticket
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let mut plain = self.inner.decrypt(cipher)?;
        let accepted = plain.len() >= HEADER && {
            let issued = u64::from_be_bytes(plain[..8].try_into().ok()?);
            let generation = u64::from_be_bytes(plain[8..HEADER].try_into().ok()?);
            // A clock stepped back makes every ticket look issued in the future: refuse them.
            let fresh =
                unix_now().checked_sub(issued).is_some_and(|age| age <= self.lifetime.as_secs());
            fresh && Some(generation) == self.generation()
        };
        if !accepted {
            zeroize::Zeroize::zeroize(&mut plain);
            tracing::debug!("TLS ticket expired or issued under an older identity; full handshake");
            return None;
        }
        let session = plain[HEADER..].to_vec();
        zeroize::Zeroize::zeroize(&mut plain);
        Some(session)
    }
}

impl std::fmt::Debug for SvidTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SvidTicketer").field("lifetime", &self.lifetime).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, IsCa, KeyPair, KeyUsagePurpose, SanType};
    use rustls::pki_types::PrivatePkcs8KeyDer;

    use super::*;

    fn source() -> IdentitySource {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca_der = ca.self_signed(&ca_key).unwrap().der().clone();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::default();
        leaf.subject_alt_names =
            vec![SanType::URI("spiffe://spike.ist/spike/nexus".try_into().unwrap())];
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let der = leaf.signed_by(&key, &issuer).unwrap().der().clone();
        let key = PrivatePkcs8KeyDer::from(key.serialize_der());
        IdentitySource::in_memory(Identity::from_der(&[der], &key, &[ca_der]).unwrap())
    }

    #[test]
    fn ticket_round_trips_within_its_lifetime_and_only_with_its_own_key() {
        let ticketer = SvidTicketer::new(source(), DEFAULT_TICKET_LIFETIME).unwrap();
        assert_eq!(ticketer.lifetime(), 300);
        let ticket = ticketer.encrypt(b"session state").unwrap();
        assert_eq!(ticketer.decrypt(&ticket).as_deref(), Some(&b"session state"[..]));
        let other = SvidTicketer::new(source(), DEFAULT_TICKET_LIFETIME).unwrap();
        assert_eq!(other.decrypt(&ticket), None);
        let mut tampered = ticket.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(ticketer.decrypt(&tampered), None);
    }

    #[test]
    fn ticket_older_than_its_lifetime_is_refused() {
        let ticketer = SvidTicketer::new(source(), Duration::ZERO).unwrap();
        let ticket = ticketer.encrypt(b"session state").unwrap();
        // Issue times have one-second resolution.
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(ticketer.decrypt(&ticket), None);
    }
}
