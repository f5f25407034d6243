//! mTLS by SPIFFE ID over real TLS handshakes on 127.0.0.1: an echo server built with
//! `spike_server::tls::mtls_server` and a client built with `spike_client::tls::mtls_client`,
//! fed by spike-dev-agent identities or by in-memory SVIDs made with rcgen. Every kind of bad
//! peer certificate is presented for real, once to our client and once to our server, and must
//! be refused for the right reason.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use spike_client::identity::{Identity, IdentitySource};
use spike_client::tls::{crypto_provider, mtls_client};
use spike_client::{SpiffeId, SvidRejection};
use spike_server::dev::agent::DevAgent;
use spike_server::tls::{mtls_server, peer_spiffe_id};
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const NEXUS: &str = "spiffe://spike.ist/spike/nexus";
const PILOT: &str = "spiffe://spike.ist/spike/pilot/role/superuser";
const KEEPER: &str = "spiffe://spike.ist/spike/keeper";

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

// ---------------------------------------------------------------- test PKI (rcgen)

struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
}

fn test_ca(trust_domain: &str) -> TestCa {
    test_ca_with(trust_domain, BasicConstraints::Unconstrained)
}

fn ca_params(name: &str, trust_domain: &str, constraints: BasicConstraints) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names =
        vec![SanType::URI(format!("spiffe://{trust_domain}").as_str().try_into().unwrap())];
    params.is_ca = IsCa::Ca(constraints);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// A root CA (bundle certificate) with the given basicConstraints path length.
fn test_ca_with(trust_domain: &str, constraints: BasicConstraints) -> TestCa {
    let key = KeyPair::generate().unwrap();
    let params = ca_params(&format!("test CA {trust_domain}"), trust_domain, constraints);
    let der = params.self_signed(&key).unwrap().der().clone();
    TestCa { issuer: Issuer::new(params, key), der }
}

/// An unconstrained intermediate CA issued by `parent`.
fn intermediate_ca(parent: &TestCa, trust_domain: &str) -> TestCa {
    let key = KeyPair::generate().unwrap();
    let params = ca_params(
        &format!("test intermediate CA {trust_domain}"),
        trust_domain,
        BasicConstraints::Unconstrained,
    );
    let der = params.signed_by(&key, &parent.issuer).unwrap().der().clone();
    TestCa { issuer: Issuer::new(params, key), der }
}

#[derive(Clone)]
struct LeafSpec {
    uris: Vec<String>,
    dns: Vec<String>,
    ca: bool,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

fn svid_spec(spiffe_id: &str) -> LeafSpec {
    let now = OffsetDateTime::now_utc();
    LeafSpec {
        uris: vec![spiffe_id.into()],
        dns: vec![],
        ca: false,
        not_before: now - time::Duration::hours(1),
        not_after: now + time::Duration::hours(1),
    }
}

struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

fn leaf(ca: &TestCa, spec: &LeafSpec) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "test leaf");
    params.subject_alt_names = spec
        .uris
        .iter()
        .map(|u| SanType::URI(u.as_str().try_into().unwrap()))
        .chain(spec.dns.iter().map(|d| SanType::DnsName(d.as_str().try_into().unwrap())))
        .collect();
    if spec.ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign];
    } else {
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    }
    params.not_before = spec.not_before;
    params.not_after = spec.not_after;
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    Leaf { chain: vec![cert.der().clone()], key: PrivatePkcs8KeyDer::from(key.serialize_der()) }
}

/// An in-memory identity source holding a good SVID for `spiffe_id` from `ca`.
fn memory_source(ca: &TestCa, spiffe_id: &str) -> IdentitySource {
    let l = leaf(ca, &svid_spec(spiffe_id));
    IdentitySource::in_memory(
        Identity::from_der(&l.chain, &l.key, std::slice::from_ref(&ca.der)).unwrap(),
    )
}

/// An in-memory identity source whose SVID for `spiffe_id` is issued by `intermediate` and sent
/// with it (leaf, intermediate), trusting only `root`.
fn chained_source(root: &TestCa, intermediate: &TestCa, spiffe_id: &str) -> IdentitySource {
    let mut l = leaf(intermediate, &svid_spec(spiffe_id));
    l.chain.push(intermediate.der.clone());
    IdentitySource::in_memory(
        Identity::from_der(&l.chain, &l.key, std::slice::from_ref(&root.der)).unwrap(),
    )
}

// ---------------------------------------------------------------- our echo server

type Accepted = Result<(SpiffeId, CertificateDer<'static>), std::io::Error>;

/// Serves until dropped; each handshake's outcome goes to the returned channel, and each
/// verified connection echoes lines prefixed with the caller's SPIFFE ID.
struct EchoServer {
    addr: SocketAddr,
    accepted: mpsc::UnboundedReceiver<Accepted>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo_server(config: rustls::ServerConfig) -> EchoServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (tx, accepted) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let stream = match acceptor.accept(tcp).await {
                    Ok(stream) => stream,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let peer = peer_spiffe_id(&stream).unwrap();
                let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
                let _ = tx.send(Ok((peer.clone(), leaf)));
                let (read, mut write) = tokio::io::split(stream);
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if write.write_all(format!("{peer} {line}\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    EchoServer { addr, accepted, task }
}

async fn next_accept(server: &mut EchoServer) -> Accepted {
    tokio::time::timeout(Duration::from_secs(10), server.accepted.recv())
        .await
        .expect("server saw no handshake within 10 s")
        .expect("server task alive")
}

// ---------------------------------------------------------------- clients

type ClientStream = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect(
    config: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
) -> std::io::Result<ClientStream> {
    let tcp = TcpStream::connect(addr).await?;
    // The name is for SNI only; identity comes from the SPIFFE ID.
    let name = ServerName::try_from("spike-nexus.test").unwrap();
    tokio_rustls::TlsConnector::from(Arc::clone(config)).connect(name, tcp).await
}

async fn round_trip(stream: &mut ClientStream, line: &str) -> std::io::Result<String> {
    stream.write_all(format!("{line}\n").as_bytes()).await?;
    let mut reply = String::new();
    let mut byte = [0u8; 1];
    // Bounded: replies are short lines.
    for _ in 0..512 {
        if tokio::io::AsyncReadExt::read(stream, &mut byte).await? == 0 || byte[0] == b'\n' {
            break;
        }
        reply.push(char::from(byte[0]));
    }
    Ok(reply)
}

/// A plain rustls client presenting `leaf` and trusting any server: the misbehaving peer.
fn raw_client_config(leaf: &Leaf) -> Arc<rustls::ClientConfig> {
    let config = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TrustAnyServer))
        .with_client_auth_cert(leaf.chain.clone(), PrivateKeyDer::Pkcs8(leaf.key.clone_key()))
        .unwrap();
    Arc::new(config)
}

/// A plain rustls server presenting `leaf` and asking nothing of clients: the misbehaving peer.
fn raw_server_config(leaf: &Leaf) -> rustls::ServerConfig {
    rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain.clone(), PrivateKeyDer::Pkcs8(leaf.key.clone_key()))
        .unwrap()
}

async fn raw_server(leaf: &Leaf) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(raw_server_config(leaf)));
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    (addr, task)
}

#[derive(Debug)]
struct TrustAnyServer;

impl rustls::client::danger::ServerCertVerifier for TrustAnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algs = crypto_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(m, c, d, &algs)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algs = crypto_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(m, c, d, &algs)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        crypto_provider().signature_verification_algorithms.supported_schemes()
    }
}

// ---------------------------------------------------------------- the bad certificates

struct BadCase {
    name: &'static str,
    leaf: Leaf,
    expect: fn(&SvidRejection) -> bool,
}

fn bad_cases(ca: &TestCa, role_id: &str) -> Vec<BadCase> {
    let now = OffsetDateTime::now_utc();
    let foreign_ca = test_ca("evil.example");
    let rogue_ca = test_ca("spike.ist");
    let with = |f: &dyn Fn(&mut LeafSpec)| {
        let mut spec = svid_spec(role_id);
        f(&mut spec);
        spec
    };
    vec![
        BadCase {
            name: "no URI SAN",
            leaf: leaf(
                ca,
                &with(&|s| {
                    s.uris.clear();
                    s.dns = vec!["nexus.spike.ist".into()];
                }),
            ),
            expect: |r| matches!(r, SvidRejection::NoUriSan),
        },
        BadCase {
            name: "two URI SANs",
            leaf: leaf(ca, &with(&|s| s.uris.push(KEEPER.into()))),
            expect: |r| matches!(r, SvidRejection::MultipleUriSans(2)),
        },
        BadCase {
            name: "non-spiffe URI",
            leaf: leaf(ca, &with(&|s| s.uris = vec!["https://spike.ist/spike/nexus".into()])),
            expect: |r| matches!(r, SvidRejection::NotSpiffeUri(_)),
        },
        BadCase {
            name: "foreign trust domain",
            leaf: leaf(
                &foreign_ca,
                &with(&|s| s.uris = vec!["spiffe://evil.example/spike/nexus".into()]),
            ),
            expect: |r| matches!(r, SvidRejection::ForeignTrustDomain(td) if td == "evil.example"),
        },
        BadCase {
            name: "foreign trust domain signed by our own CA",
            leaf: leaf(ca, &with(&|s| s.uris = vec!["spiffe://evil.example/spike/nexus".into()])),
            expect: |r| matches!(r, SvidRejection::ForeignTrustDomain(_)),
        },
        BadCase {
            name: "expired",
            leaf: leaf(
                ca,
                &with(&|s| {
                    s.not_before = now - time::Duration::hours(2);
                    s.not_after = now - time::Duration::hours(1);
                }),
            ),
            expect: |r| matches!(r, SvidRejection::Expired { .. }),
        },
        BadCase {
            name: "not yet valid",
            leaf: leaf(
                ca,
                &with(&|s| {
                    s.not_before = now + time::Duration::hours(1);
                    s.not_after = now + time::Duration::hours(2);
                }),
            ),
            expect: |r| matches!(r, SvidRejection::NotYetValid { .. }),
        },
        BadCase {
            name: "CA certificate as leaf",
            leaf: leaf(ca, &with(&|s| s.ca = true)),
            expect: |r| matches!(r, SvidRejection::LeafIsCa),
        },
        BadCase {
            name: "right ID from an untrusted CA",
            leaf: leaf(&rogue_ca, &svid_spec(role_id)),
            expect: |r| matches!(r, SvidRejection::UntrustedChain { .. }),
        },
    ]
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn echo_over_mtls_between_two_dev_agent_identities() {
    let dir = tempfile::tempdir().unwrap();
    let agent = DevAgent::builder()
        .socket_dir(dir.path().join("s"))
        .build()
        .unwrap()
        .serve()
        .await
        .unwrap();
    let wait = Duration::from_secs(5);
    let nexus =
        IdentitySource::workload_api(&agent.endpoint("nexus").unwrap(), wait).await.unwrap();
    let pilot = IdentitySource::workload_api(&agent.endpoint("pilot-superuser").unwrap(), wait)
        .await
        .unwrap();

    let mut server = echo_server(mtls_server(nexus).build().unwrap()).await;
    let client = Arc::new(mtls_client(pilot, id(NEXUS)).build().unwrap());
    let mut stream = connect(&client, server.addr).await.unwrap();
    assert_eq!(round_trip(&mut stream, "ping").await.unwrap(), format!("{PILOT} ping"));
    let (peer, _) = next_accept(&mut server).await.unwrap();
    assert_eq!(peer, id(PILOT));
    agent.shutdown().await;
}

#[tokio::test]
async fn client_refuses_servers_whose_certificate_is_not_an_acceptable_svid() {
    let ca = test_ca("spike.ist");
    let client = Arc::new(mtls_client(memory_source(&ca, PILOT), id(NEXUS)).build().unwrap());
    let mut cases = bad_cases(&ca, NEXUS);
    cases.push(BadCase {
        name: "valid SVID but not the expected server",
        leaf: leaf(&ca, &svid_spec(KEEPER)),
        expect: |r| matches!(r, SvidRejection::UnexpectedId { actual, .. } if actual == KEEPER),
    });
    for case in cases {
        let (addr, task) = raw_server(&case.leaf).await;
        let err =
            connect(&client, addr).await.err().unwrap_or_else(|| panic!("{}: accepted", case.name));
        let rejection =
            SvidRejection::from_io(&err).unwrap_or_else(|| panic!("{}: {err}", case.name));
        assert!((case.expect)(rejection), "{}: wrong reason {rejection:?}", case.name);
        task.abort();
    }

    // The control: a good SVID for the expected ID passes the same client.
    let good = leaf(&ca, &svid_spec(NEXUS));
    let (addr, task) = raw_server(&good).await;
    connect(&client, addr).await.expect("a valid Nexus SVID is accepted");
    task.abort();
}

#[tokio::test]
async fn server_refuses_clients_whose_certificate_is_not_an_acceptable_svid() {
    let ca = test_ca("spike.ist");
    let mut server = echo_server(mtls_server(memory_source(&ca, NEXUS)).build().unwrap()).await;
    for case in bad_cases(&ca, PILOT) {
        let config = raw_client_config(&case.leaf);
        // TLS 1.3 lets the client finish before the server has judged its certificate; the
        // verdict is the server's.
        if let Ok(mut stream) = connect(&config, server.addr).await {
            assert!(
                round_trip(&mut stream, "ping").await.map_or(true, |r| r.is_empty()),
                "{}",
                case.name
            );
        }
        let err = next_accept(&mut server)
            .await
            .err()
            .unwrap_or_else(|| panic!("{}: accepted", case.name));
        let rejection =
            SvidRejection::from_io(&err).unwrap_or_else(|| panic!("{}: {err}", case.name));
        assert!((case.expect)(rejection), "{}: wrong reason {rejection:?}", case.name);
    }

    // A client with no certificate at all is refused by rustls itself.
    let anonymous = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TrustAnyServer))
        .with_no_client_auth();
    let _ = connect(&Arc::new(anonymous), server.addr).await;
    assert!(next_accept(&mut server).await.is_err(), "a client without a certificate got in");

    // The control: a good SVID passes and its ID reaches the application.
    let good = raw_client_config(&leaf(&ca, &svid_spec(PILOT)));
    let mut stream = connect(&good, server.addr).await.unwrap();
    assert_eq!(round_trip(&mut stream, "hi").await.unwrap(), format!("{PILOT} hi"));
    assert_eq!(next_accept(&mut server).await.unwrap().0, id(PILOT));
}

#[tokio::test]
async fn server_can_limit_clients_to_given_spiffe_ids() {
    let ca = test_ca("spike.ist");
    let config =
        mtls_server(memory_source(&ca, KEEPER)).authorize_ids([id(NEXUS)]).build().unwrap();
    let mut server = echo_server(config).await;
    let as_pilot = Arc::new(mtls_client(memory_source(&ca, PILOT), id(KEEPER)).build().unwrap());
    if let Ok(mut stream) = connect(&as_pilot, server.addr).await {
        let _ = round_trip(&mut stream, "x").await;
    }
    let err = next_accept(&mut server).await.unwrap_err();
    assert!(
        matches!(SvidRejection::from_io(&err), Some(SvidRejection::UnexpectedId { actual, .. }) if actual == PILOT),
        "{err}"
    );
    let as_nexus = Arc::new(mtls_client(memory_source(&ca, NEXUS), id(KEEPER)).build().unwrap());
    let mut stream = connect(&as_nexus, server.addr).await.unwrap();
    assert_eq!(round_trip(&mut stream, "x").await.unwrap(), format!("{NEXUS} x"));
}

#[tokio::test]
async fn federated_trust_domain_needs_opt_in_and_its_bundle() {
    let ours = test_ca("spike.ist");
    let theirs = test_ca("partner.example");
    // A server that holds the partner's bundle as well as its own.
    let l = leaf(&ours, &svid_spec(NEXUS));
    let own = Identity::from_der(&l.chain, &l.key, std::slice::from_ref(&ours.der)).unwrap();
    let mut bundles = (**own.bundles()).clone();
    let td = spike_client::TrustDomain::new("partner.example").unwrap();
    bundles.add_bundle(
        spiffe::X509Bundle::from_x509_authorities(td.clone(), &[theirs.der.as_ref()]).unwrap(),
    );
    let federated = Identity::new(Arc::clone(own.svid()), Arc::new(bundles)).unwrap();
    let partner_client =
        raw_client_config(&leaf(&theirs, &svid_spec("spiffe://partner.example/app")));

    // Default: only our own trust domain.
    let source = IdentitySource::in_memory(federated);
    let mut strict = echo_server(mtls_server(source.clone()).build().unwrap()).await;
    let _ = connect(&partner_client, strict.addr).await;
    let err = next_accept(&mut strict).await.unwrap_err();
    assert!(
        matches!(SvidRejection::from_io(&err), Some(SvidRejection::ForeignTrustDomain(_))),
        "{err}"
    );

    // Opted in: the partner's SVID verifies against the partner's bundle.
    let tds = [spike_client::TrustDomain::new("spike.ist").unwrap(), td];
    let mut open = echo_server(mtls_server(source).trust_domains(tds).build().unwrap()).await;
    let mut stream = connect(&partner_client, open.addr).await.unwrap();
    assert_eq!(round_trip(&mut stream, "x").await.unwrap(), "spiffe://partner.example/app x");
    assert_eq!(next_accept(&mut open).await.unwrap().0, id("spiffe://partner.example/app"));
}

#[tokio::test]
async fn svid_rotation_mid_traffic_drops_no_request() {
    let dir = tempfile::tempdir().unwrap();
    // 2 s SVIDs, re-issued every second: several rotations during the run below.
    let agent = DevAgent::builder()
        .socket_dir(dir.path().join("s"))
        .svid_ttl(Duration::from_secs(2))
        .build()
        .unwrap()
        .serve()
        .await
        .unwrap();
    let wait = Duration::from_secs(5);
    let nexus =
        IdentitySource::workload_api(&agent.endpoint("nexus").unwrap(), wait).await.unwrap();
    let pilot = IdentitySource::workload_api(&agent.endpoint("pilot-superuser").unwrap(), wait)
        .await
        .unwrap();
    let mut server = echo_server(mtls_server(nexus).build().unwrap()).await;
    let client = Arc::new(mtls_client(pilot, id(NEXUS)).build().unwrap());

    // One long-lived connection, plus a fresh connection per request (each new handshake
    // presents whatever SVID is current at that moment).
    let mut long_lived = connect(&client, server.addr).await.unwrap();
    let mut server_leaves = BTreeSet::new();
    let mut client_leaves = BTreeSet::new();
    let started = Instant::now();
    let mut requests = 0;
    while started.elapsed() < Duration::from_millis(3500) && requests < 400 {
        let mut stream = connect(&client, server.addr)
            .await
            .unwrap_or_else(|e| panic!("request {requests}: handshake failed: {e}"));
        server_leaves.insert(stream.get_ref().1.peer_certificates().unwrap()[0].to_vec());
        let reply = round_trip(&mut stream, &format!("req {requests}")).await.unwrap();
        assert_eq!(reply, format!("{PILOT} req {requests}"));
        let echoed = round_trip(&mut long_lived, &format!("long {requests}")).await.unwrap();
        assert_eq!(echoed, format!("{PILOT} long {requests}"));
        requests += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while let Ok(Ok((_, leaf))) = server.accepted.try_recv() {
        client_leaves.insert(leaf.to_vec());
    }
    assert!(requests >= 20, "only {requests} requests ran");
    assert!(server_leaves.len() >= 2, "the server SVID never rotated mid-traffic");
    assert!(client_leaves.len() >= 2, "the client SVID never rotated mid-traffic");
    agent.shutdown().await;
}

#[tokio::test]
async fn bundle_root_path_len_is_enforced_at_the_handshake_in_both_directions() {
    // Issue 13: root (pathlen:0) -> intermediate -> leaf got an HTTP 200 from Nexus; Go's
    // crypto/x509 refuses it, and so must both our server and our client.
    let strict = test_ca_with("spike.ist", BasicConstraints::Constrained(0));
    let strict_int = intermediate_ca(&strict, "spike.ist");
    let is_path_len = |err: &std::io::Error| {
        matches!(
            SvidRejection::from_io(err),
            Some(SvidRejection::PathLenExceeded { ca, max: 0, actual: 1 })
                if ca == "CN=test CA spike.ist"
        )
    };

    // Our server refuses such a client (the client itself is content with the server).
    let mut server = echo_server(mtls_server(memory_source(&strict, NEXUS)).build().unwrap()).await;
    let client = mtls_client(chained_source(&strict, &strict_int, PILOT), id(NEXUS));
    let client = Arc::new(client.build().unwrap());
    if let Ok(mut stream) = connect(&client, server.addr).await {
        // TLS 1.3: the client may finish first; the verdict is the server's.
        assert!(round_trip(&mut stream, "ping").await.map_or(true, |r| r.is_empty()));
    }
    let err = next_accept(&mut server).await.unwrap_err();
    assert!(is_path_len(&err), "{err}");

    // Our client refuses such a server (whose own check of the client passes).
    let server =
        echo_server(mtls_server(chained_source(&strict, &strict_int, NEXUS)).build().unwrap())
            .await;
    let client = Arc::new(mtls_client(memory_source(&strict, PILOT), id(NEXUS)).build().unwrap());
    let err = connect(&client, server.addr).await.expect_err("server chain accepted");
    assert!(is_path_len(&err), "{err}");

    // The control: the same shape of chain under a root whose path length allows one
    // intermediate passes both ways, with both sides presenting leaf + intermediate.
    let lenient = test_ca_with("spike.ist", BasicConstraints::Constrained(1));
    let lenient_int = intermediate_ca(&lenient, "spike.ist");
    let mut server =
        echo_server(mtls_server(chained_source(&lenient, &lenient_int, NEXUS)).build().unwrap())
            .await;
    let client = mtls_client(chained_source(&lenient, &lenient_int, PILOT), id(NEXUS));
    let mut stream = connect(&Arc::new(client.build().unwrap()), server.addr).await.unwrap();
    assert_eq!(round_trip(&mut stream, "ping").await.unwrap(), format!("{PILOT} ping"));
    assert_eq!(next_accept(&mut server).await.unwrap().0, id(PILOT));
}
