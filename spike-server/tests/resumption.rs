//! TLS 1.3 session resumption (issue 15) over real mTLS handshakes on 127.0.0.1: a listener
//! built with `spike_server::tls::mtls_server`, clients built with `spike_client`, real
//! certificates (rcgen, and the dev agent for Nexus). A resumed connection runs no certificate
//! verifier, so each test pins one of the checks that stand in for it.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::HandshakeKind;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName};
use spiffe::{TrustDomain, X509Bundle, X509BundleSet, X509Svid};
use spike_client::identity::{BUNDLE_FILE, Identity, IdentitySource, SVID_FILE, SVID_KEY_FILE};
use spike_client::tls::mtls_client;
use spike_client::{Error, RetryPolicy, SpiffeId, Spike, SvidRejection};
use spike_server::dev::agent::DevAgent;
use spike_server::nexus::{self, NexusConfig};
use spike_server::tls::{is_resumed, mtls_server, peer_spiffe_id};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const NEXUS: &str = "spiffe://spike.ist/spike/nexus";
const PILOT: &str = "spiffe://spike.ist/spike/pilot/role/superuser";
const PARTNER: &str = "spiffe://partner.org/app";

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

// ---------------------------------------------------------------- test PKI (rcgen)

struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

fn test_ca(trust_domain: &str) -> TestCa {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, format!("test CA {trust_domain}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    TestCa { der: cert.der().clone(), pem: cert.pem(), issuer: Issuer::new(params, key) }
}

struct Leaf {
    der: CertificateDer<'static>,
    pem: String,
    key: KeyPair,
}

/// An X509-SVID for `spiffe_id` from `ca`, valid from an hour ago for `valid_for`.
fn svid(ca: &TestCa, spiffe_id: &str, valid_for: Duration) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut params = support::leaf_svid_params(spiffe_id);
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + valid_for;
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    Leaf { der: cert.der().clone(), pem: cert.pem(), key }
}

fn source_valid_for(ca: &TestCa, spiffe_id: &str, valid_for: Duration) -> IdentitySource {
    let leaf = svid(ca, spiffe_id, valid_for);
    let key = PrivatePkcs8KeyDer::from(leaf.key.serialize_der());
    let identity = Identity::from_der(&[leaf.der], &key, std::slice::from_ref(&ca.der)).unwrap();
    IdentitySource::in_memory(identity)
}

fn source(ca: &TestCa, spiffe_id: &str) -> IdentitySource {
    source_valid_for(ca, spiffe_id, Duration::from_secs(3600))
}

/// An SVID for `spiffe_id` from `issuer`, holding the bundles of every `(trust domain, CA)`.
fn federated_source(
    issuer: &TestCa,
    spiffe_id: &str,
    bundles: &[(&str, &TestCa)],
) -> IdentitySource {
    let leaf = svid(issuer, spiffe_id, Duration::from_secs(3600));
    let svid = X509Svid::parse_from_der(leaf.der.as_ref(), &leaf.key.serialize_der()).unwrap();
    let mut set = X509BundleSet::new();
    for (td, ca) in bundles {
        let td = TrustDomain::new(td).unwrap();
        set.add_bundle(X509Bundle::from_x509_authorities(td, &[ca.der.as_ref()]).unwrap());
    }
    IdentitySource::in_memory(Identity::new(Arc::new(svid), Arc::new(set)).unwrap())
}

/// Writes spiffe-helper files (`svid.pem`, `svid_key.pem`, `bundle.pem`) for a file source.
fn write_svid_files(dir: &Path, ca: &TestCa, spiffe_id: &str) {
    let leaf = svid(ca, spiffe_id, Duration::from_secs(3600));
    std::fs::write(dir.join(SVID_KEY_FILE), leaf.key.serialize_pem()).unwrap();
    std::fs::write(dir.join(BUNDLE_FILE), &ca.pem).unwrap();
    std::fs::write(dir.join(SVID_FILE), &leaf.pem).unwrap();
}

// ---------------------------------------------------------------- a listener that reports

/// What the server saw of one connection: the caller's ID, or why it was refused after the
/// handshake (`Ok(Err(_))`) or in it (`Err(_)`), and whether the session was resumed.
type Seen = (Result<Result<SpiffeId, Error>, std::io::Error>, bool);

struct Server {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts mTLS connections as `spike_server::listener` does (the caller's ID from
/// `peer_spiffe_id`, the connection closed if there is none) and answers one line with it.
async fn server(config: rustls::ServerConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (tx, seen) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let mut stream = match acceptor.accept(tcp).await {
                    Ok(stream) => stream,
                    Err(e) => {
                        let _ = tx.send((Err(e), false));
                        return;
                    }
                };
                let resumed = is_resumed(stream.get_ref().1);
                let peer = peer_spiffe_id(&stream);
                let answer = peer.as_ref().map(ToString::to_string).ok();
                let _ = tx.send((Ok(peer), resumed));
                // Refused: dropped without a word, as the listener does.
                if let Some(answer) = answer {
                    let mut byte = [0u8; 1];
                    if stream.read(&mut byte).await.is_ok() {
                        let _ = stream.write_all(format!("{answer}\n").as_bytes()).await;
                        let _ = stream.shutdown().await;
                    }
                }
            });
        }
    });
    Server { addr, seen, task }
}

impl Server {
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("a handshake within 10 s")
            .expect("server alive")
    }
}

/// Connects, sends one byte and reads the server's answer (which also delivers the session
/// tickets sent after the handshake). Returns the answer and how the client saw the handshake.
async fn call(
    config: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
) -> (std::io::Result<String>, Option<HandshakeKind>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    // For SNI and the session cache key only; identity comes from the SPIFFE ID.
    let name = ServerName::try_from("spike-nexus.test").unwrap();
    let mut stream =
        match tokio_rustls::TlsConnector::from(Arc::clone(config)).connect(name, tcp).await {
            Ok(s) => s,
            Err(e) => return (Err(e), None),
        };
    let kind = stream.get_ref().1.handshake_kind();
    let answer = async {
        stream.write_all(b"?").await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        if answer.is_empty() {
            return Err(std::io::Error::other("closed without an answer"));
        }
        Ok(answer.trim_end().to_owned())
    };
    (answer.await, kind)
}

fn client(source: IdentitySource) -> Arc<rustls::ClientConfig> {
    Arc::new(mtls_client(source, id(NEXUS)).build().unwrap())
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn second_connection_of_a_client_is_resumed_with_the_same_spiffe_id() {
    let ca = test_ca("spike.ist");
    let mut server = server(mtls_server(source(&ca, NEXUS)).build().unwrap()).await;
    let pilot = client(source(&ca, PILOT));

    let (answer, kind) = call(&pilot, server.addr).await;
    assert_eq!(answer.unwrap(), PILOT);
    assert_eq!(kind, Some(HandshakeKind::Full));
    let (peer, resumed) = server.next().await;
    assert_eq!((peer.unwrap().unwrap(), resumed), (id(PILOT), false));

    for _ in 0..3 {
        let (answer, kind) = call(&pilot, server.addr).await;
        assert_eq!(answer.unwrap(), PILOT, "the caller's ID comes back from the ticket");
        assert_eq!(kind, Some(HandshakeKind::Resumed));
        let (peer, resumed) = server.next().await;
        assert_eq!((peer.unwrap().unwrap(), resumed), (id(PILOT), true));
    }
}

#[tokio::test]
async fn resumption_is_off_when_either_side_turns_it_off_and_by_default_for_pinned_ids() {
    let ca = test_ca("spike.ist");
    let full_only = mtls_client(source(&ca, PILOT), id(NEXUS))
        .session_resumption(false)
        .build()
        .map(Arc::new)
        .unwrap();
    let no_tickets = mtls_server(source(&ca, NEXUS)).no_session_tickets().build().unwrap();
    // Keepers pin their callers at the handshake; they issue no tickets unless asked.
    let pinned = mtls_server(source(&ca, NEXUS)).authorize_ids([id(PILOT)]).build().unwrap();
    let cases = [
        ("client without resumption", full_only, mtls_server(source(&ca, NEXUS)).build().unwrap()),
        ("server without tickets", client(source(&ca, PILOT)), no_tickets),
        ("server pinning client IDs", client(source(&ca, PILOT)), pinned),
    ];
    for (what, config, server_config) in cases {
        let mut server = server(server_config).await;
        for _ in 0..2 {
            let (answer, kind) = call(&config, server.addr).await;
            assert_eq!(answer.unwrap(), PILOT, "{what}");
            assert_eq!(kind, Some(HandshakeKind::Full), "{what}");
            assert!(!server.next().await.1, "{what}");
        }
    }
    // A lifetime outside (0, 1 h] is refused at build time.
    for lifetime in [Duration::ZERO, Duration::from_secs(3601)] {
        let err = mtls_server(source(&ca, NEXUS)).session_tickets(lifetime).build().unwrap_err();
        assert!(err.to_string().contains("ticket lifetime"), "{err}");
    }
}

#[tokio::test]
async fn resumed_session_is_refused_once_the_client_svid_has_expired() {
    let ca = test_ca("spike.ist");
    let mut server = server(mtls_server(source(&ca, NEXUS)).build().unwrap()).await;
    // An SVID that expires in 2 s, which the client keeps presenting (it never rotates).
    let short = source_valid_for(&ca, PILOT, Duration::from_secs(2));
    let pilot = client(short.clone());
    assert_eq!(call(&pilot, server.addr).await.0.unwrap(), PILOT);
    assert!(!server.next().await.1);
    assert_eq!(call(&pilot, server.addr).await.1, Some(HandshakeKind::Resumed));
    assert!(server.next().await.1);

    tokio::time::sleep(Duration::from_millis(3500)).await;
    // The ticket is still within its lifetime and the server's identity unchanged, so the
    // session resumes, and the restored (expired) chain is refused after the handshake.
    let (answer, kind) = call(&pilot, server.addr).await;
    assert_eq!(kind, Some(HandshakeKind::Resumed));
    assert!(answer.is_err(), "a resumed session outlived the client's SVID: {answer:?}");
    let (peer, resumed) = server.next().await;
    assert!(resumed);
    assert!(
        matches!(peer, Ok(Err(Error::PeerRejected(SvidRejection::Expired { .. })))),
        "{peer:?}"
    );
    // A full handshake with that SVID is refused too.
    let full = mtls_client(short, id(NEXUS)).session_resumption(false).build().unwrap();
    assert!(call(&Arc::new(full), server.addr).await.0.is_err());
}

#[tokio::test]
async fn ticket_from_a_listener_that_admits_a_trust_domain_does_not_open_one_that_does_not() {
    let own = test_ca("spike.ist");
    let partner = test_ca("partner.org");
    let bundles = [("spike.ist", &own), ("partner.org", &partner)];
    // Two listeners on the same host and SNI name: one federated with partner.org, one not.
    let federated = mtls_server(federated_source(&own, NEXUS, &bundles))
        .any_trust_domain_with_bundle()
        .build()
        .unwrap();
    let mut federated = server(federated).await;
    let mut own_only = server(mtls_server(source(&own, NEXUS)).build().unwrap()).await;
    let app = client(federated_source(&partner, PARTNER, &bundles));

    assert_eq!(call(&app, federated.addr).await.0.unwrap(), PARTNER);
    assert_eq!(call(&app, federated.addr).await.1, Some(HandshakeKind::Resumed));
    let (first, second) = (federated.next().await, federated.next().await);
    assert_eq!(first.0.unwrap().unwrap(), id(PARTNER));
    assert_eq!((second.0.unwrap().unwrap(), second.1), (id(PARTNER), true));

    // The partner's client offers its ticket to the other listener: tickets are sealed with a
    // key of the listener that issued them, so this one runs a full handshake and refuses the
    // foreign trust domain.
    let (answer, kind) = call(&app, own_only.addr).await;
    assert!(answer.is_err() && kind != Some(HandshakeKind::Resumed), "{answer:?} {kind:?}");
    let (peer, resumed) = own_only.next().await;
    assert!(!resumed);
    let refused = peer.unwrap_err().to_string();
    assert!(refused.contains("partner.org"), "{refused}");
}

#[tokio::test]
async fn tickets_die_when_the_server_bundle_changes() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = test_ca("spike.ist");
    write_svid_files(dir.path(), &old_ca, NEXUS);
    let nexus = IdentitySource::files_with_interval(dir.path(), Duration::from_millis(50)).unwrap();
    let mut server = server(mtls_server(nexus.clone()).build().unwrap()).await;
    // The client trusts both CAs, so only the server's decision matters.
    let new_ca = test_ca("spike.ist");
    let pilot = {
        let leaf = svid(&old_ca, PILOT, Duration::from_secs(3600));
        let key = PrivatePkcs8KeyDer::from(leaf.key.serialize_der());
        let bundle = [old_ca.der.clone(), new_ca.der.clone()];
        client(IdentitySource::in_memory(Identity::from_der(&[leaf.der], &key, &bundle).unwrap()))
    };
    assert_eq!(call(&pilot, server.addr).await.0.unwrap(), PILOT);
    assert_eq!(call(&pilot, server.addr).await.1, Some(HandshakeKind::Resumed));
    let _ = (server.next().await, server.next().await);

    // The server's CA is rotated out: the client's chain (from the old CA) no longer verifies,
    // and its ticket must not carry it past that.
    let before = nexus.current().unwrap();
    write_svid_files(dir.path(), &new_ca, NEXUS);
    tokio::time::timeout(Duration::from_secs(10), async {
        while Arc::ptr_eq(&nexus.current().unwrap(), &before) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the file source reloads");
    let (answer, kind) = call(&pilot, server.addr).await;
    assert!(answer.is_err() && kind != Some(HandshakeKind::Resumed), "{answer:?} {kind:?}");
    let (peer, resumed) = server.next().await;
    assert!(!resumed);
    assert!(peer.is_err(), "the full handshake must refuse the old CA's chain: {peer:?}");
}

#[tokio::test]
async fn sdk_resumes_against_nexus_and_policies_still_apply_per_caller() {
    let dir = tempfile::tempdir().unwrap();
    let agent = DevAgent::builder()
        .socket_dir(dir.path().join("sockets"))
        .build()
        .unwrap()
        .serve()
        .await
        .unwrap();
    let workload = |name: &'static str| {
        let endpoint = agent.endpoint(name).unwrap();
        async move { IdentitySource::workload_api(&endpoint, Duration::from_secs(10)).await.unwrap() }
    };
    let n = nexus::start(NexusConfig::dev(dir.path().join("nexus")), workload("nexus").await)
        .await
        .unwrap();
    let url = format!("https://{}", n.addr());
    let per_call = |source: IdentitySource| {
        Spike::builder()
            .identity(source)
            .url(url.clone())
            .max_idle_connections(0)
            .retry(RetryPolicy { attempts: 1, ..RetryPolicy::default() })
            .build()
    };
    let superuser = per_call(workload("pilot-superuser").await).await.unwrap();
    let recover = per_call(workload("pilot-recover").await).await.unwrap();
    let resumed = || {
        let text = n.state().metrics.render(true, 0);
        let line = text.lines().find(|l| l.starts_with("spike_nexus_tls_resumed_total ")).unwrap();
        line.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
    };
    let values: spike_core::secret::SecretValues = [("k", "v")].into_iter().collect();
    superuser.put_secret("app/db", values).await.unwrap();
    let start = resumed();
    for _ in 0..5 {
        assert_eq!(superuser.get_secret("app/db").await.unwrap().get("k"), Some("v"));
        // The same kind of connection for a caller with no policy on the path: still denied.
        assert!(matches!(recover.get_secret("app/db").await, Err(Error::Forbidden)));
    }
    // Each client's first connection may be full; nearly all the others are resumed.
    let gained = resumed() - start;
    assert!(gained >= 8, "only {gained} of 10 connections resumed");
    n.shutdown().await;
}
