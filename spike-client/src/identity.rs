//! Where this process's SPIFFE identity comes from: the Workload API, spiffe-helper style
//! files, or memory — behind one [`IdentitySource`] that the mTLS configs in [`crate::tls`]
//! read on every handshake, so rotated SVIDs are used without a restart.
//!
//! ```no_run
//! # async fn demo() -> Result<(), spike_client::Error> {
//! use spike_client::identity::IdentitySource;
//!
//! // SPIFFE_ENDPOINT_SOCKET=unix:///tmp/spike/agent/nexus.sock
//! let source = IdentitySource::from_env().await?;
//! println!("I am {}", source.current()?.spiffe_id());
//! # Ok(()) }
//! ```

mod files;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, TrustAnchor};
use rustls::sign::CertifiedKey;
use spiffe::{SpiffeId, TrustDomain, X509Bundle, X509BundleSet, X509Source, X509Svid};

use spike_core::error::chain;
use spike_core::identity::Role;

use crate::error::{Error, Result};
use crate::tls::path_len::PathLenLimit;

/// The environment variable naming the Workload API endpoint (SPIFFE Workload Endpoint §4);
/// unset, SPIRE's default socket is used ([`crate::config::DEFAULT_ENDPOINT_SOCKET`]).
pub const ENDPOINT_ENV: &str = crate::config::ENV_ENDPOINT_SOCKET;
/// How long [`IdentitySource::from_env`] waits for the first SVID.
pub const DEFAULT_INITIAL_SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// How often [`IdentitySource::files`] checks the SVID files for changes.
pub const DEFAULT_FILE_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// spiffe-helper's file name for the certificate chain (leaf first), PEM.
pub const SVID_FILE: &str = "svid.pem";
/// spiffe-helper's file name for the PKCS#8 private key, PEM.
pub const SVID_KEY_FILE: &str = "svid_key.pem";
/// spiffe-helper's file name for the trust bundle, PEM.
pub const BUNDLE_FILE: &str = "bundle.pem";

/// One coherent snapshot of an X509-SVID, its key and the trust bundles to verify peers with,
/// already converted for rustls.
pub struct Identity {
    svid: Arc<X509Svid>,
    bundles: Arc<X509BundleSet>,
    certified_key: Arc<CertifiedKey>,
    anchors: BTreeMap<TrustDomain, Authorities>,
}

/// A trust domain's bundle as the verifier needs it: webpki trust anchors, and beside each
/// (same index) the bundle certificate's pathLenConstraint, which a `TrustAnchor` drops.
/// Both are derived once per bundle update, never per handshake.
struct Authorities {
    anchors: Arc<[TrustAnchor<'static>]>,
    path_len: Arc<[Option<PathLenLimit>]>,
}

impl Identity {
    /// Builds a snapshot from a parsed SVID and bundle set; checks that the key matches the
    /// leaf and that the SVID's own trust domain has a bundle.
    pub fn new(svid: Arc<X509Svid>, bundles: Arc<X509BundleSet>) -> Result<Self> {
        let chain: Vec<CertificateDer<'static>> =
            svid.cert_chain().iter().map(|c| CertificateDer::from(c.as_bytes().to_vec())).collect();
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(svid.private_key().as_bytes().to_vec()));
        let certified_key = CertifiedKey::from_der(chain, key, &crate::tls::crypto_provider())
            .map_err(|e| Error::KeyMismatch(e.to_string()))?;

        let mut anchors: BTreeMap<TrustDomain, Authorities> = BTreeMap::new();
        for (td, bundle) in bundles.iter() {
            let unusable = |reason: String| Error::InvalidInput {
                what: format!("trust bundle for {td}"),
                reason: format!("a CA certificate is not usable as a trust anchor: {reason}"),
            };
            let mut list = Vec::with_capacity(bundle.authorities().len());
            let mut path_len = Vec::with_capacity(bundle.authorities().len());
            for authority in bundle.authorities() {
                let der = CertificateDer::from(authority.as_bytes());
                let anchor =
                    webpki::anchor_from_trusted_cert(&der).map_err(|e| unusable(e.to_string()))?;
                list.push(anchor.to_owned());
                path_len.push(PathLenLimit::from_root(&der).map_err(|e| Error::InvalidInput {
                    what: format!("trust bundle for {td}"),
                    reason: e.to_string(),
                })?);
            }
            anchors.insert(
                td.clone(),
                Authorities { anchors: Arc::from(list), path_len: Arc::from(path_len) },
            );
        }
        let own = svid.spiffe_id().trust_domain();
        if anchors.get(own).is_none_or(|a| a.anchors.is_empty()) {
            return Err(Error::InvalidInput {
                what: format!("identity {}", svid.spiffe_id()),
                reason: format!("there is no trust bundle for its own trust domain {own}"),
            });
        }
        Ok(Self { svid, bundles, certified_key: Arc::new(certified_key), anchors })
    }

    /// Builds a snapshot from DER: the chain (leaf first), its PKCS#8 key, and the CA
    /// certificates of the SVID's trust domain. The leaf is checked against X509-SVID §4.
    pub fn from_der(
        cert_chain: &[CertificateDer<'_>],
        key: &PrivatePkcs8KeyDer<'_>,
        bundle: &[CertificateDer<'_>],
    ) -> Result<Self> {
        let chain_der: Vec<u8> =
            cert_chain.iter().flat_map(|c| c.as_ref().iter().copied()).collect();
        let svid = X509Svid::parse_from_der(&chain_der, key.secret_pkcs8_der())
            .map_err(|e| Error::InvalidInput { what: "X509-SVID".into(), reason: e.to_string() })?;
        let td = svid.spiffe_id().trust_domain().clone();
        let authorities: Vec<&[u8]> = bundle.iter().map(|c| c.as_ref()).collect();
        let bundle = X509Bundle::from_x509_authorities(td.clone(), &authorities).map_err(|e| {
            Error::InvalidInput { what: format!("trust bundle for {td}"), reason: e.to_string() }
        })?;
        let mut set = X509BundleSet::new();
        set.add_bundle(bundle);
        Self::new(Arc::new(svid), Arc::new(set))
    }

    /// Builds a snapshot from PEM, as spiffe-helper writes it: `svid.pem` (chain, leaf first),
    /// `svid_key.pem` (PKCS#8) and `bundle.pem`.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8], bundle_pem: &[u8]) -> Result<Self> {
        Self::from_pem_named(chain_pem, key_pem, bundle_pem, ["svid PEM", "key PEM", "bundle PEM"])
    }

    fn from_pem_named(
        chain_pem: &[u8],
        key_pem: &[u8],
        bundle_pem: &[u8],
        names: [&str; 3],
    ) -> Result<Self> {
        let certs = |pem: &[u8], what: &str| -> Result<Vec<CertificateDer<'static>>> {
            let list = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::InvalidInput { what: what.into(), reason: e.to_string() })?;
            if list.is_empty() {
                return Err(Error::InvalidInput {
                    what: what.into(),
                    reason: "no CERTIFICATE block found".into(),
                });
            }
            Ok(list)
        };
        let chain = certs(chain_pem, names[0])?;
        let bundle = certs(bundle_pem, names[2])?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem).map_err(|e| Error::InvalidInput {
            what: names[1].into(),
            reason: format!(
                "expected an unencrypted PKCS#8 \"PRIVATE KEY\" block ({e}); convert other forms \
                 with `openssl pkcs8 -topk8 -nocrypt`"
            ),
        })?;
        Self::from_der(&chain, &key, &bundle)
    }

    /// The SVID's SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        self.svid.spiffe_id()
    }

    /// The SVID's trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        self.svid.spiffe_id().trust_domain()
    }

    /// The SVID as the `spiffe` crate models it (chain and key).
    pub fn svid(&self) -> &Arc<X509Svid> {
        &self.svid
    }

    /// All trust bundles, the own trust domain's and federated ones.
    pub fn bundles(&self) -> &Arc<X509BundleSet> {
        &self.bundles
    }

    /// The certificate chain, leaf first.
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.certified_key.cert
    }

    /// The chain and signing key, ready for a rustls certificate resolver.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified_key
    }

    /// The trust anchors of `trust_domain`, if this snapshot holds its bundle.
    pub fn trust_anchors(&self, trust_domain: &TrustDomain) -> Option<&[TrustAnchor<'static>]> {
        self.anchors.get(trust_domain).map(|a| &a.anchors[..])
    }

    /// The trust anchors of `trust_domain` and, at the same index, the pathLenConstraint of
    /// the bundle certificate each came from (`None`: unconstrained), for the verifier to
    /// enforce what webpki cannot.
    pub(crate) fn authorities(
        &self,
        trust_domain: &TrustDomain,
    ) -> Option<(&[TrustAnchor<'static>], &[Option<PathLenLimit>])> {
        self.anchors.get(trust_domain).map(|a| (&a.anchors[..], &a.path_len[..]))
    }
}

impl fmt::Debug for Identity {
    // Never prints the key: only what identifies the snapshot.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("spiffe_id", &self.spiffe_id().to_string())
            .field("chain_len", &self.cert_chain().len())
            .field("bundles", &self.anchors.keys().map(|t| t.to_string()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Which X509-SVID to present when the Workload API hands out several (two registration
/// entries match the process), as go-spiffe's SVID picker chooses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SvidChoice {
    /// The first SVID, the Workload API's default.
    #[default]
    First,
    /// Exactly this SPIFFE ID. While the Workload API does not offer it there is no identity
    /// (never another SVID: a client that names its ID must not act as someone else).
    Id(SpiffeId),
    /// The first SVID holding `role` (its ID or one below it) in one of `trust_domains`: how a
    /// daemon finds its own among several. If none does, the first SVID, with a warning.
    Role {
        /// The role to look for.
        role: Role,
        /// The role's trust domains (`SPIKE_TRUST_ROOT*`).
        trust_domains: Vec<String>,
    },
}

impl SvidChoice {
    /// The index of the SVID to use among `ids` (in the Workload API's order).
    fn pick(&self, ids: &[String]) -> Option<usize> {
        match self {
            SvidChoice::First => (!ids.is_empty()).then_some(0),
            SvidChoice::Id(want) => {
                let want = want.to_string();
                ids.iter().position(|id| *id == want)
            }
            SvidChoice::Role { role, trust_domains } => {
                let found = ids.iter().position(|id| role.matches(id, trust_domains));
                if found.is_none() && !ids.is_empty() {
                    tracing::warn!(
                        role = role.short_name(),
                        offered = %ids.join(", "),
                        using = %ids[0],
                        "none of the Workload API's SVIDs holds this process's role; using the \
                         first (check the SPIRE registration entries and SPIKE_TRUST_ROOT*)"
                    );
                }
                found.or((!ids.is_empty()).then_some(0))
            }
        }
    }
}

/// Adapts an [`SvidChoice`] to the `spiffe` crate's picker, remembering what was offered so a
/// failed choice can be explained.
#[derive(Debug)]
struct Picker {
    choice: SvidChoice,
    offered: Arc<Mutex<Vec<String>>>,
}

impl spiffe::x509_source::SvidPicker for Picker {
    fn pick_svid(&self, svids: &[Arc<X509Svid>]) -> Option<usize> {
        let ids: Vec<String> = svids.iter().map(|s| s.spiffe_id().to_string()).collect();
        let picked = self.choice.pick(&ids);
        *self.offered.lock().unwrap_or_else(PoisonError::into_inner) = ids;
        picked
    }
}

/// A live source of this process's [`Identity`]; cheap to clone, shared by all TLS configs
/// built from it.
#[derive(Clone)]
pub struct IdentitySource {
    inner: Arc<Kind>,
}

enum Kind {
    WorkloadApi { source: X509Source, endpoint: String, cache: Mutex<Option<Arc<Identity>>> },
    Files(files::Watched),
    Static(Arc<Identity>),
}

impl IdentitySource {
    /// Connects to the Workload API named by `SPIFFE_ENDPOINT_SOCKET` (unset: SPIRE's default
    /// socket), waiting up to [`DEFAULT_INITIAL_SYNC_TIMEOUT`] for the first SVID; presents
    /// the SVID named by `SPIKE_SVID_ID`, else the first.
    pub async fn from_env() -> Result<Self> {
        Self::from_env_choosing(SvidChoice::First).await
    }

    /// Like [`IdentitySource::from_env`], choosing among several SVIDs by `choice` (daemons
    /// pass their role) unless `SPIKE_SVID_ID` names one.
    pub async fn from_env_choosing(choice: SvidChoice) -> Result<Self> {
        let endpoint = crate::config::workload_endpoint(None)?;
        let choice = svid_choice_from_env(choice)?;
        Self::workload_api_choosing(&endpoint, DEFAULT_INITIAL_SYNC_TIMEOUT, choice).await
    }

    /// Connects to the Workload API at `endpoint` (`unix:///path`, or a bare absolute path),
    /// waiting up to `initial_sync_timeout` for the first SVID; rotations are then picked up
    /// in the background. Presents the first SVID the Workload API hands out.
    pub async fn workload_api(endpoint: &str, initial_sync_timeout: Duration) -> Result<Self> {
        Self::workload_api_choosing(endpoint, initial_sync_timeout, SvidChoice::First).await
    }

    /// Like [`IdentitySource::workload_api`], presenting the SVID `choice` picks when the
    /// Workload API hands out several.
    pub async fn workload_api_choosing(
        endpoint: &str,
        initial_sync_timeout: Duration,
        choice: SvidChoice,
    ) -> Result<Self> {
        let endpoint =
            if endpoint.starts_with('/') { format!("unix://{endpoint}") } else { endpoint.into() };
        let fail = |reason: String| Error::WorkloadApi {
            endpoint: endpoint.clone(),
            timeout: initial_sync_timeout,
            reason,
        };
        // Waiting only makes sense for an agent that is there but has no SVID for us yet: a
        // socket that does not exist or refuses connections fails at once (issue 18).
        if let Some(path) = endpoint.strip_prefix("unix://") {
            unix_socket_reachable(path).await.map_err(|reason| Error::WorkloadApiUnreachable {
                endpoint: endpoint.clone(),
                reason,
            })?;
        }
        let mut builder =
            X509Source::builder().endpoint(&endpoint).initial_sync_timeout(initial_sync_timeout);
        let offered = Arc::new(Mutex::new(Vec::new()));
        if choice != SvidChoice::First {
            let picker = Picker { choice: choice.clone(), offered: Arc::clone(&offered) };
            builder = builder.picker(picker);
        }
        let source = builder.build().await.map_err(|e| {
            let offered = offered.lock().unwrap_or_else(PoisonError::into_inner);
            match &choice {
                SvidChoice::Id(want) if !offered.is_empty() => fail(format!(
                    "it handed out {} but not {want}; register {want} for this workload or set \
                     SPIKE_SVID_ID to one of those",
                    offered.join(", ")
                )),
                _ => fail(chain(&e)),
            }
        })?;
        let this = Self::from_x509_source(source, endpoint.clone());
        // Fail now, not at the first handshake, if the SVID or bundle is unusable.
        this.current().map_err(|e| fail(e.to_string()))?;
        Ok(this)
    }

    /// Wraps an `X509Source` that is already synchronised; `endpoint` is only for messages.
    pub fn from_x509_source(source: X509Source, endpoint: impl Into<String>) -> Self {
        let kind = Kind::WorkloadApi { source, endpoint: endpoint.into(), cache: Mutex::new(None) };
        Self { inner: Arc::new(kind) }
    }

    /// Reads `svid.pem`, `svid_key.pem` and `bundle.pem` from `dir` and reloads them when they
    /// change (checked every [`DEFAULT_FILE_POLL_INTERVAL`]). Needs a tokio runtime.
    pub fn files(dir: impl Into<PathBuf>) -> Result<Self> {
        Self::files_with_interval(dir, DEFAULT_FILE_POLL_INTERVAL)
    }

    /// Like [`IdentitySource::files`], checking for changes every `poll_interval`.
    pub fn files_with_interval(dir: impl Into<PathBuf>, poll_interval: Duration) -> Result<Self> {
        let watched = files::Watched::start(dir.into(), poll_interval)?;
        Ok(Self { inner: Arc::new(Kind::Files(watched)) })
    }

    /// A fixed identity held in memory (tests, embedding); it never rotates.
    pub fn in_memory(identity: Identity) -> Self {
        Self { inner: Arc::new(Kind::Static(Arc::new(identity))) }
    }

    /// The identity to use right now.
    pub fn current(&self) -> Result<Arc<Identity>> {
        match &*self.inner {
            Kind::Static(identity) => Ok(Arc::clone(identity)),
            Kind::Files(watched) => Ok(watched.current()),
            Kind::WorkloadApi { source, cache, .. } => {
                let state = source.state();
                if state.is_closed() {
                    return Err(Error::SourceUnavailable(
                        "the Workload API source was shut down".into(),
                    ));
                }
                let unavailable = |e: spiffe::X509SourceError| Error::SourceUnavailable(chain(&e));
                let svid = state.svid().map_err(unavailable)?;
                let bundles = Arc::clone(state.context().map_err(unavailable)?.bundle_set());
                // Converting for rustls parses keys; do it once per rotation, not per handshake.
                let mut cached = cache.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(hit) = cached
                    .as_ref()
                    .filter(|c| Arc::ptr_eq(c.svid(), &svid) && Arc::ptr_eq(c.bundles(), &bundles))
                {
                    return Ok(Arc::clone(hit));
                }
                let fresh = Arc::new(Identity::new(svid, bundles)?);
                *cached = Some(Arc::clone(&fresh));
                Ok(fresh)
            }
        }
    }

    /// The underlying `X509Source`, when this source is the Workload API.
    pub fn x509_source(&self) -> Option<&X509Source> {
        match &*self.inner {
            Kind::WorkloadApi { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Stops background work (the Workload API stream or the file watcher).
    pub async fn shutdown(&self) {
        match &*self.inner {
            Kind::WorkloadApi { source, .. } => source.shutdown().await,
            Kind::Files(watched) => watched.stop(),
            Kind::Static(_) => {}
        }
    }
}

impl fmt::Debug for IdentitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.inner {
            Kind::WorkloadApi { endpoint, .. } => {
                f.debug_struct("IdentitySource::WorkloadApi").field("endpoint", endpoint).finish()
            }
            Kind::Files(w) => {
                f.debug_struct("IdentitySource::Files").field("dir", &w.dir()).finish()
            }
            Kind::Static(id) => f.debug_tuple("IdentitySource::InMemory").field(id).finish(),
        }
    }
}

/// `SPIKE_SVID_ID` if set (validated), else `default`.
fn svid_choice_from_env(default: SvidChoice) -> Result<SvidChoice> {
    match crate::config::env(crate::config::ENV_SVID_ID) {
        None => Ok(default),
        Some(id) => SpiffeId::new(&id).map(SvidChoice::Id).map_err(|e| Error::InvalidSpiffeId {
            value: id.clone(),
            reason: format!("{e} (in {})", crate::config::ENV_SVID_ID),
        }),
    }
}

/// Reads the three spiffe-helper files from `dir` into an [`Identity`].
pub fn load_svid_dir(dir: &Path) -> Result<Identity> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|source| Error::Io { path, source })
    };
    let (chain, key, bundle) = (read(SVID_FILE)?, read(SVID_KEY_FILE)?, read(BUNDLE_FILE)?);
    let name = |f: &str| dir.join(f).display().to_string();
    Identity::from_pem_named(
        &chain,
        &key,
        &bundle,
        [&name(SVID_FILE), &name(SVID_KEY_FILE), &name(BUNDLE_FILE)],
    )
}

/// Sets a shared value, ignoring poisoning (the value is replaced whole, never half-written).
fn replace<T>(lock: &RwLock<T>, value: T) {
    *lock.write().unwrap_or_else(PoisonError::into_inner) = value;
}

/// Reads a shared value, ignoring poisoning (see [`replace`]).
fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Whether a Workload API Unix socket at `path` accepts connections; the error says why not
/// and what to do.
async fn unix_socket_reachable(path: &str) -> std::result::Result<(), String> {
    if !std::path::Path::new(path).exists() {
        return Err(format!(
            "the socket {path} does not exist: is the SPIFFE agent (or `spike dev`) running, \
             and is SPIFFE_ENDPOINT_SOCKET right?"
        ));
    }
    match tokio::net::UnixStream::connect(path).await {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "the socket {path} refuses connections ({e}): the agent that made it has stopped; \
             start it again (or `spike dev`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };

    use super::*;

    struct Pem {
        chain: String,
        key: String,
        bundle: String,
    }

    fn make(spiffe_id: &str) -> Pem {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let bundle = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::default();
        leaf.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().unwrap())];
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let chain = leaf.signed_by(&key, &issuer).unwrap().pem();
        Pem { chain, key: key.serialize_pem(), bundle }
    }

    #[test]
    fn pem_identity_exposes_id_chain_and_anchors_but_never_prints_the_key() {
        let pem = make("spiffe://spike.ist/spike/nexus");
        let id =
            Identity::from_pem(pem.chain.as_bytes(), pem.key.as_bytes(), pem.bundle.as_bytes())
                .unwrap();
        assert_eq!(id.spiffe_id().to_string(), "spiffe://spike.ist/spike/nexus");
        assert_eq!(id.cert_chain().len(), 1);
        assert_eq!(id.trust_anchors(id.trust_domain()).map(<[_]>::len), Some(1));
        let debug = format!("{id:?}");
        let debug = format!("{debug} {:?}", IdentitySource::in_memory(id));
        assert!(debug.contains("spike/nexus"), "{debug}");
        assert!(!debug.to_lowercase().contains("key:") && !debug.contains("PRIVATE"), "{debug}");
    }

    #[test]
    fn mismatched_key_and_non_svid_leaf_are_refused() {
        let a = make("spiffe://spike.ist/a");
        let b = make("spiffe://spike.ist/b");
        let err = Identity::from_pem(a.chain.as_bytes(), b.key.as_bytes(), a.bundle.as_bytes())
            .unwrap_err();
        assert!(matches!(err, Error::KeyMismatch(_)), "{err}");
        let td_only = make("spiffe://spike.ist");
        let err = Identity::from_pem(
            td_only.chain.as_bytes(),
            td_only.key.as_bytes(),
            td_only.bundle.as_bytes(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("X509-SVID"), "{err}");
        let err = Identity::from_pem(a.chain.as_bytes(), b"not pem", a.bundle.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("PKCS#8") && err.contains("openssl pkcs8"), "{err}");
        let err = Identity::from_pem(a.chain.as_bytes(), a.key.as_bytes(), b"").unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
    }

    #[test]
    fn missing_svid_files_name_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_svid_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("svid.pem") && err.contains("--write-svid"), "{err}");
    }

    #[test]
    fn svid_choice_picks_by_exact_id_or_by_role_with_a_fallback_to_the_first() {
        let ids: Vec<String> = [
            "spiffe://spike.ist/app",
            "spiffe://spike.ist/spike/nexusx",
            "spiffe://spike.ist/spike/nexus/nexus-0",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(SvidChoice::First.pick(&ids), Some(0));
        assert_eq!(SvidChoice::First.pick(&[]), None);
        let want = |id: &str| SvidChoice::Id(id.parse().unwrap());
        assert_eq!(want("spiffe://spike.ist/spike/nexusx").pick(&ids), Some(1));
        assert_eq!(want("spiffe://spike.ist/spike/nexus").pick(&ids), None);
        let role = |role, td: &str| SvidChoice::Role { role, trust_domains: vec![td.into()] };
        assert_eq!(role(Role::Nexus, "spike.ist").pick(&ids), Some(2));
        // No SVID holds the role (here: not in that trust domain): the first, with a warning.
        assert_eq!(role(Role::Nexus, "other.org").pick(&ids), Some(0));
        assert_eq!(role(Role::Keeper, "spike.ist").pick(&[]), None);
    }

    #[test]
    fn watching_files_needs_a_runtime() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(IdentitySource::files(dir.path()), Err(Error::NoRuntime)));
    }

    #[tokio::test]
    async fn file_source_picks_up_rewritten_files_and_survives_half_written_ones() {
        let dir = tempfile::tempdir().unwrap();
        let write = |pem: &Pem| {
            std::fs::write(dir.path().join(SVID_FILE), &pem.chain).unwrap();
            std::fs::write(dir.path().join(SVID_KEY_FILE), &pem.key).unwrap();
            std::fs::write(dir.path().join(BUNDLE_FILE), &pem.bundle).unwrap();
        };
        write(&make("spiffe://spike.ist/one"));
        let source =
            IdentitySource::files_with_interval(dir.path(), Duration::from_millis(20)).unwrap();
        assert_eq!(source.current().unwrap().spiffe_id().to_string(), "spiffe://spike.ist/one");

        // A torn update (new chain, old key) keeps the old identity...
        let two = make("spiffe://spike.ist/two");
        std::fs::write(dir.path().join(SVID_FILE), &two.chain).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(source.current().unwrap().spiffe_id().to_string(), "spiffe://spike.ist/one");
        // ...until the set is whole again.
        write(&two);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while source.current().unwrap().spiffe_id().to_string() != "spiffe://spike.ist/two" {
            assert!(std::time::Instant::now() < deadline, "rewritten files not picked up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        source.shutdown().await;
    }
}
