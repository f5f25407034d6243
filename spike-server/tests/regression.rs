//! Security regression tests: one per class of flaw that has hit HashiCorp Vault or OpenBao
//! (DESIGN.md "Threats we test for"), each driven against the real Nexus — over real mTLS
//! handshakes on 127.0.0.1 where the class is about identity, through the router (`oneshot`,
//! with the caller the mTLS listener would insert) where it is about what a verified caller
//! may reach. Each test plants a canary secret and checks it never comes back to the wrong
//! caller, in any body, log line or audit record.
//!
//! The timing class (constant-time comparisons and Shamir) is in `spike-core/tests/timing.rs`;
//! the fuzz targets for the same parsers are in `fuzz/`.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::http::StatusCode;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use spike_client::SvidRejection;
use spike_client::identity::{Identity, IdentitySource};
use spike_client::tls::crypto_provider;
use spike_server::keeper::{self, KeeperState};
use spike_server::limits::RateLimit;
use spike_server::nexus::authz::TrustRoots;
use spike_server::nexus::{self, AuditSink, BackendKind, NexusConfig, NexusState, router};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TD: &str = "spike.ist";
const SUPER: &str = "spiffe://spike.ist/spike/pilot/role/superuser";
const RESTORE: &str = "spiffe://spike.ist/spike/pilot/role/restore";
const NEXUS_ID: &str = "spiffe://spike.ist/spike/nexus";
const TENANT_A: &str = "spiffe://spike.ist/tenant/a";
const TENANT_B: &str = "spiffe://spike.ist/tenant/b";
/// Tenant B's secret value: must reach nobody but B and the superuser.
const CANARY: &str = "canary-b-7d41e9-never-leak";

// ------------------------------------------------------------------ log capture

/// Every tracing event of this test binary, at TRACE level: what the Nexus binary would write
/// to stderr. Installed once, globally, so handler threads (spawn_blocking) are captured too.
fn captured_logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(logs))
            .finish();
        // Fails only if another subscriber is already global; then this binary's logs go there.
        let _ = tracing::subscriber::set_global_default(subscriber);
        logs
    })
}

struct LogWriter(&'static Mutex<Vec<u8>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs_contain(needle: &str) -> bool {
    let logs = captured_logs().lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&logs).contains(needle)
}

// ------------------------------------------------------------------ in-process Nexus (oneshot)

struct Fixture {
    state: Arc<NexusState>,
    dir: tempfile::TempDir,
}

fn fixture_with(edit: impl FnOnce(&mut NexusConfig)) -> Fixture {
    captured_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = NexusConfig::dev(dir.path().to_path_buf());
    config.audit = AuditSink::File(dir.path().join("audit.log"));
    edit(&mut config);
    Fixture { state: NexusState::open(config).unwrap(), dir }
}

fn fixture() -> Fixture {
    fixture_with(|_| {})
}

impl Fixture {
    fn audit_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("audit.log")).unwrap_or_default()
    }
}

async fn call_bytes(f: &Fixture, caller: &str, uri: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    support::post_bytes_as(router(f.state.clone()), caller, uri, body).await
}

async fn call(f: &Fixture, caller: &str, uri: &str, body: &str) -> (StatusCode, String) {
    support::post_as(router(f.state.clone()), caller, uri, body).await
}

async fn put_secret(f: &Fixture, caller: &str, path: &str, value: &str) -> StatusCode {
    let body = serde_json::json!({"path": path, "values": {"v": value}}).to_string();
    call(f, caller, "/v1/store/secrets", &body).await.0
}

async fn get_secret(f: &Fixture, caller: &str, path: &str) -> (StatusCode, String) {
    let body = serde_json::json!({"path": path}).to_string();
    call(f, caller, "/v1/store/secrets?action=get", &body).await
}

async fn put_policy(f: &Fixture, name: &str, id: &str, path: &str, perms: &[&str]) -> StatusCode {
    let body = serde_json::json!({
        "name": name, "spiffeidPattern": id, "pathPattern": path, "permissions": perms
    })
    .to_string();
    call(f, SUPER, "/v1/acl/policy", &body).await.0
}

/// Two tenants: B's secret holds the canary; A may read, write and list under `tenants/a/`.
async fn two_tenants() -> Fixture {
    let f = fixture();
    assert_eq!(put_secret(&f, SUPER, "tenants/b/db", CANARY).await, StatusCode::OK);
    assert_eq!(put_secret(&f, SUPER, "tenants/a/db", "a-value").await, StatusCode::OK);
    let a = r"spiffe://spike\.ist/tenant/a";
    let b = r"spiffe://spike\.ist/tenant/b";
    assert_eq!(put_policy(&f, "a", a, "tenants/a/.*", &["read", "write", "list"]).await, 200);
    assert_eq!(put_policy(&f, "b", b, "tenants/b/.*", &["read", "write", "list"]).await, 200);
    f
}

/// B's canary is intact and was only ever shown to B or the superuser.
async fn assert_canary_intact(f: &Fixture) {
    let (s, b) = get_secret(f, TENANT_B, "tenants/b/db").await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::OK, format!(r#"{{"data":{{"v":"{CANARY}"}}}}"#).as_str())
    );
    assert!(!f.audit_log().contains(CANARY), "the canary reached the audit log");
    assert!(!logs_contain(CANARY), "the canary reached the logs");
}

// ------------------------------------------------------------------ identity binding (mTLS)

struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
}

fn ca_named(trust_domain: &str, common_name: &str) -> TestCa {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.subject_alt_names =
        vec![SanType::URI(format!("spiffe://{trust_domain}").as_str().try_into().unwrap())];
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let der = params.self_signed(&key).unwrap().der().clone();
    TestCa { issuer: Issuer::new(params, key), der }
}

struct Leaf {
    der: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

/// SVID-shaped leaf parameters: the given URI SANs, the superuser's subject, valid now.
fn leaf_params(uris: &[&str]) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "spike pilot superuser");
    params.distinguished_name.push(DnType::OrganizationName, "SPIRE");
    params.subject_alt_names =
        uris.iter().map(|u| SanType::URI((*u).try_into().unwrap())).collect();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::hours(1);
    params
}

fn signed(params: CertificateParams, ca: &TestCa) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    Leaf { der: cert.der().clone(), key: PrivatePkcs8KeyDer::from(key.serialize_der()) }
}

fn self_signed(params: CertificateParams) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Leaf { der: cert.der().clone(), key: PrivatePkcs8KeyDer::from(key.serialize_der()) }
}

/// Trusts any server: these clients are the attackers; only the server's verdict matters.
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

/// One HTTP/1.1 request over mTLS presenting `chain`; the status and body, or why it failed.
async fn https_post(
    addr: SocketAddr,
    chain: Vec<CertificateDer<'static>>,
    key: &PrivatePkcs8KeyDer<'static>,
    uri: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let config = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TrustAnyServer))
        .with_client_auth_cert(chain, PrivateKeyDer::Pkcs8(key.clone_key()))
        .unwrap();
    let exchange = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from("spike-nexus.test").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let request = format!(
            "POST {uri} HTTP/1.1\r\nhost: nexus\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        let mut response = Vec::new();
        tls.read_to_end(&mut response).await.map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no HTTP response: {text:?}"))?;
        Ok((status, text))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// X509-SVID §4 / SPIFFE-ID §2: identity comes only from a chain to the trust domain's bundle
/// and exactly one canonical `spiffe://` URI SAN. Every forged or ambiguous client certificate
/// below asks a real Nexus for the canary; none may get it, and a genuine superuser SVID from
/// the same CA (the control) must.
///
/// See: CVE-2020-16250 and CVE-2020-16251 (Vault's AWS and GCP IAM auth methods accepted
/// identity claims the caller controlled), and the HashiCorp Vault TLS certificate auth
/// method advisories about pinned non-CA certificates matched on attacker-chosen fields
/// (class: identity taken from a certificate field without binding it to a verified chain).
#[tokio::test]
async fn identity_binding_forged_or_ambiguous_client_certificates_never_reach_a_secret() {
    captured_logs();
    let ca = ca_named(TD, "spike.ist test CA");
    let dir = tempfile::tempdir().unwrap();
    let nexus_leaf = signed(leaf_params(&[NEXUS_ID]), &ca);
    let source = IdentitySource::in_memory(
        Identity::from_der(
            std::slice::from_ref(&nexus_leaf.der),
            &nexus_leaf.key,
            std::slice::from_ref(&ca.der),
        )
        .unwrap(),
    );
    let mut config = NexusConfig::dev(dir.path().join("nexus"));
    config.audit = AuditSink::File(dir.path().join("audit.log"));
    let running = nexus::start(config, source).await.unwrap();
    let addr = running.addr();
    let get = r#"{"path":"tenants/b/db"}"#;

    // The control: a genuine superuser SVID stores and reads the canary over the same path.
    let good = signed(leaf_params(&[SUPER]), &ca);
    let put = format!(r#"{{"path":"tenants/b/db","values":{{"v":"{CANARY}"}}}}"#);
    let chain = vec![good.der.clone()];
    let (s, _) =
        https_post(addr, chain.clone(), &good.key, "/v1/store/secrets", &put).await.unwrap();
    assert_eq!(s, 200);
    let (s, body) =
        https_post(addr, chain, &good.key, "/v1/store/secrets?action=get", get).await.unwrap();
    assert!(s == 200 && body.contains(CANARY), "control failed: {s} {body}");

    let now = OffsetDateTime::now_utc();
    let rogue_same_name = ca_named(TD, "spike.ist test CA");
    let foreign = ca_named("evil.example", "evil CA");
    let mut expired = leaf_params(&[SUPER]);
    expired.not_before = now - time::Duration::hours(3);
    expired.not_after = now - time::Duration::hours(1);
    let mut as_ca = leaf_params(&[SUPER]);
    as_ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    as_ca.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign];
    let mut dns_only = leaf_params(&[]);
    dns_only.subject_alt_names = vec![SanType::DnsName("spike.ist".try_into().unwrap())];
    dns_only.distinguished_name.push(DnType::CommonName, SUPER);

    let attacks: Vec<(&str, Vec<CertificateDer<'static>>, PrivatePkcs8KeyDer<'static>)> = vec![
        // Same subject and SAN as the real superuser, but signed by its own key.
        ("self-signed leaf with a copied subject", self_signed(leaf_params(&[SUPER]))),
        // A CA with the real CA's name: chains by name, not by signature.
        (
            "leaf from a rogue CA with a copied name",
            signed(leaf_params(&[SUPER]), &rogue_same_name),
        ),
        ("two URI SANs (superuser first)", signed(leaf_params(&[SUPER, TENANT_A]), &ca)),
        ("two URI SANs (superuser second)", signed(leaf_params(&[TENANT_A, SUPER]), &ca)),
        (
            "foreign trust domain",
            signed(leaf_params(&["spiffe://evil.example/spike/pilot/role/superuser"]), &foreign),
        ),
        (
            "foreign trust domain signed by our CA",
            signed(leaf_params(&["spiffe://evil.example/spike/pilot/role/superuser"]), &ca),
        ),
        ("expired superuser SVID", signed(expired, &ca)),
        ("CA certificate as the leaf", signed(as_ca, &ca)),
        ("no URI SAN, ID in the CN", signed(dns_only, &ca)),
        // Non-canonical spellings of the superuser ID that a lower-casing parser would accept.
        (
            "upper-case scheme",
            signed(leaf_params(&["SPIFFE://spike.ist/spike/pilot/role/superuser"]), &ca),
        ),
        (
            "upper-case trust domain",
            signed(leaf_params(&["spiffe://SPIKE.IST/spike/pilot/role/superuser"]), &ca),
        ),
    ]
    .into_iter()
    .map(|(name, leaf)| (name, vec![leaf.der], leaf.key))
    .chain(std::iter::once({
        // A genuine SVID for someone else, followed by a forged superuser "intermediate".
        let forged = self_signed(leaf_params(&[SUPER]));
        let other = signed(leaf_params(&[TENANT_A]), &ca);
        (
            "genuine leaf with a forged superuser cert appended",
            vec![other.der, forged.der],
            other.key,
        )
    }))
    .collect();

    for (name, chain, key) in attacks {
        let outcome =
            https_post(addr, chain.clone(), &key, "/v1/store/secrets?action=get", get).await;
        match &outcome {
            Err(_) => {} // refused at the handshake: the right outcome for everything but one
            Ok((status, body)) => {
                assert!(!body.contains(CANARY), "{name}: the canary leaked: {body}");
                assert_ne!(*status, 200, "{name}: got 200");
                // Only the last case has a genuine SVID (tenant A's); it gets A's rights.
                assert_eq!(
                    name, "genuine leaf with a forged superuser cert appended",
                    "{name}: a request got through ({status})"
                );
            }
        }
        // The same verdict from the extraction the listener uses, where the reason is exact.
        let extracted = spike_client::tls::spiffe_id_from_leaf(&chain[0]);
        if name.starts_with("upper-case") || name.starts_with("two URI") {
            assert!(
                matches!(
                    extracted,
                    Err(SvidRejection::NotSpiffeUri(_)
                        | SvidRejection::InvalidSpiffeId { .. }
                        | SvidRejection::MultipleUriSans(2))
                ),
                "{name}: {extracted:?}"
            );
        }
    }
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(!audit.contains(CANARY));
    assert!(!audit.contains("evil.example"), "a foreign identity reached the router");
    assert!(!audit.contains("SPIKE.IST") && !audit.contains("SPIFFE://"));
    running.shutdown().await;
}

/// The fix pinned at the unit level: the identity is the URI SAN exactly as signed. The
/// `spiffe` crate lower-cases the scheme and trust domain; go-spiffe (which SPIKE and SPIRE
/// use) refuses both, so such a SAN is not an SVID and must not alias the canonical ID.
#[test]
fn identity_binding_non_canonical_spiffe_uris_are_not_identities() {
    let ca = ca_named(TD, "spike.ist test CA");
    for uri in [
        "SPIFFE://spike.ist/spike/pilot/role/superuser",
        "Spiffe://spike.ist/spike/pilot/role/superuser",
        "spiffe://SPIKE.IST/spike/pilot/role/superuser",
        "spiffe://Spike.ist/spike/nexus",
    ] {
        let leaf = signed(leaf_params(&[uri]), &ca);
        let got = spike_client::tls::spiffe_id_from_leaf(&leaf.der);
        assert!(got.is_err(), "{uri} was accepted as {got:?}");
    }
    let leaf = signed(leaf_params(&[SUPER]), &ca);
    assert_eq!(spike_client::tls::spiffe_id_from_leaf(&leaf.der).unwrap().to_string(), SUPER);
}

// ------------------------------------------------------------------ path normalisation

/// Every spelling that some normaliser (a proxy, a client library, a file system) might turn
/// into `tenants/b/db` is refused outright, so tenant A can neither read nor overwrite B's
/// secret through it, and no look-alike path is ever created beside it.
///
/// See: the path-traversal and path-normalisation class of Vault/OpenBao advisories (policy
/// checked on one spelling, storage reached through another; lockout and policy bypasses
/// through case and whitespace permutations of names).
#[tokio::test]
async fn path_normalisation_cannot_reach_another_tenants_secret() {
    let f = two_tenants().await;
    let spellings = [
        "tenants/a/../b/db",
        "tenants/a/./../b/db",
        "tenants/a//../b/db",
        "tenants/a/../../tenants/b/db",
        "tenants/a/%2e%2e/b/db",
        "tenants/a/%2E%2E/b/db",
        "tenants/a/..%2fb/db",
        "tenants/a/%2e%2e%2fb%2fdb",
        "tenants/a/%252e%252e/b/db",
        "tenants/a/..;/b/db",
        "tenants/a/..\\b\\db",
        "tenants/a/.%00./b/db",
        "/tenants/b/db",
        "./tenants/b/db",
        "tenants//b/db",
        "tenants/b/db/",
        "tenants/b/db ",
        " tenants/b/db",
        "tenants/b/db\t",
        "tenants/b/db\n",
        "tenants/b/db\r\n",
        "tenants/b/db\u{0}",
        "tenants/b/db\u{200b}",
        "tenants/a/\u{2024}\u{2024}/b/db",
        "tenants/a/\u{ff0e}\u{ff0e}/b/db",
        "tenants\u{2215}b\u{2215}db",
        "tenants\u{ff0f}b\u{ff0f}db",
        "tenаnts/b/db", // Cyrillic а
        "ｔenants/b/db",
        "tenants/b/dｂ",
        "tenants/b/db\u{301}",
    ];
    for path in spellings {
        for (uri, body) in [
            ("/v1/store/secrets?action=get", serde_json::json!({"path": path})),
            ("/v1/store/secrets/metadata?action=get", serde_json::json!({"path": path})),
            ("/v1/store/secrets", serde_json::json!({"path": path, "values": {"v": "pwned"}})),
            ("/v1/store/secrets?action=delete", serde_json::json!({"path": path, "versions": []})),
            ("/v1/store/secrets?action=destroy", serde_json::json!({"path": path, "versions": []})),
        ] {
            let (s, b) = call(&f, TENANT_A, uri, &body.to_string()).await;
            assert!(
                s == StatusCode::BAD_REQUEST || s == StatusCode::UNAUTHORIZED,
                "{path:?} {uri}: {s} {b}"
            );
            assert!(!b.contains(CANARY), "{path:?} {uri}: {b}");
        }
    }
    // JSON escapes decode before validation, so they are the same refused strings.
    for raw in [
        r#"{"path":"tenants/a/\u002e\u002e/b/db"}"#,
        r#"{"path":"tenants\u002fa\u002f..\u002fb\u002fdb"}"#,
        r#"{"path":"tenants/b/db\u0000"}"#,
        r#"{"path":"tenants/a/../b/db","path":"tenants/a/db"}"#,
    ] {
        let (s, b) = call(&f, TENANT_A, "/v1/store/secrets?action=get", raw).await;
        assert!(s == StatusCode::BAD_REQUEST || s == StatusCode::UNAUTHORIZED, "{raw}: {s} {b}");
        assert!(!b.contains(CANARY), "{raw}: {b}");
    }
    // The route itself is not normalised either: only the exact path dispatches.
    for uri in [
        "/v1/store/secrets/../secrets?action=get",
        "/v1//store/secrets?action=get",
        "/v1/store/secrets/?action=get",
        "/v1/store/secrets%2f?action=get",
        "/v1/store/Secrets?action=get",
        "/v1/store/secrets?action=GET",
    ] {
        let (s, b) = call(&f, TENANT_A, uri, r#"{"path":"tenants/b/db"}"#).await;
        assert_eq!(
            (s, b.as_str()),
            (StatusCode::BAD_REQUEST, r#"{"err":"api_bad_request"}"#),
            "{uri}"
        );
    }

    // Nothing was written beside or over B's secret.
    let (_, listing) = call(&f, SUPER, "/v1/store/secrets?action=list", "{}").await;
    assert_eq!(listing, r#"{"keys":["tenants/a/db","tenants/b/db"]}"#);
    assert_canary_intact(&f).await;
}

// ------------------------------------------------------------------ policy patterns

/// Policy patterns match whole SPIFFE IDs and paths (SPIKE Go matches them anywhere in the
/// string), and patterns that match everything by accident are refused, so neither a pattern
/// written with unanchored intent nor one smuggling an alternation or `.*` widens access.
///
/// See: the policy-pattern class of Vault/OpenBao advisories (glob and template policies that
/// matched more than their authors meant); SPIKE's own unanchored `regexp.MatchString`.
#[tokio::test]
async fn regex_policy_edge_cases_cannot_widen_access() {
    let f = two_tenants().await;
    let narrow = r"spiffe://spike\.ist/tenant/c";
    assert_eq!(put_policy(&f, "c", narrow, "tenants/c/db", &["read"]).await, StatusCode::OK);
    assert_eq!(put_secret(&f, SUPER, "tenants/c/db", "c-value").await, StatusCode::OK);
    // Unanchored intent: longer IDs, prefixed IDs and longer paths are not covered.
    for caller in [
        "spiffe://spike.ist/tenant/c/evil",
        "spiffe://spike.ist/tenant/cc",
        "xspiffe://spike.ist/tenant/c",
        "spiffe://spike.ist/tenant/c\n",
        "spiffe://evil.example/x/spiffe://spike.ist/tenant/c",
    ] {
        let (s, _) = get_secret(&f, caller, "tenants/c/db").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{caller:?}");
    }
    let c = "spiffe://spike.ist/tenant/c";
    assert_eq!(get_secret(&f, c, "tenants/c/db").await.0, StatusCode::OK, "control");
    for path in ["tenants/c/db/x", "tenants/c/dbx", "x/tenants/c/db", "tenants/b/db"] {
        assert_eq!(get_secret(&f, c, path).await.0, StatusCode::UNAUTHORIZED, "{path}");
    }

    // `.*` as the SPIFFE ID pattern grants exactly the path pattern's paths, to everyone.
    assert_eq!(put_policy(&f, "shared", ".*", "shared/.*", &["read"]).await, StatusCode::OK);
    assert_eq!(put_secret(&f, SUPER, "shared/motd", "hello").await, StatusCode::OK);
    assert_eq!(get_secret(&f, TENANT_A, "shared/motd").await.0, StatusCode::OK);
    let (s, b) = get_secret(&f, TENANT_A, "tenants/b/db").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(!b.contains(CANARY));
    let write = serde_json::json!({"path": "shared/motd", "values": {"v": "x"}}).to_string();
    assert_eq!(call(&f, TENANT_A, "/v1/store/secrets", &write).await.0, StatusCode::UNAUTHORIZED);

    // Wildcards in disguise and patterns that try to escape the anchoring are refused.
    let tenant_a = r"spiffe://spike\.ist/tenant/a";
    for (id, path) in [
        (tenant_a, "tenants/a/.*|.*"),
        (tenant_a, "tenants/a/.*)|(.*"),
        (tenant_a, "(?x)tenants/a/ # )|(.*"),
        (tenant_a, ".+"),
        (tenant_a, "(?s).*"),
        (tenant_a, "(.*)"),
        (tenant_a, ".{0,}"),
        (tenant_a, "|"),
        (tenant_a, "tenants/a/.*|"),
        (tenant_a, ""),
        (tenant_a, "*"),
        (".+", "tenants/b/.*"),
        ("(?s).*|x", "tenants/b/.*"),
        ("", "tenants/b/.*"),
        (r"spiffe://spike\.ist/tenant/a|", "tenants/b/.*"),
    ] {
        let s = put_policy(&f, "widen", id, path, &["read", "list"]).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{id:?} / {path:?} was accepted");
    }
    // Workloads cannot write policies at all, whatever they ask for.
    let grab = serde_json::json!({
        "name": "grab", "spiffeidPattern": ".*", "pathPattern": ".*", "permissions": ["super"]
    });
    let (s, _) = call(&f, TENANT_A, "/v1/acl/policy", &grab.to_string()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let (s, b) = get_secret(&f, TENANT_A, "tenants/b/db").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert_canary_intact(&f).await;
}

// ------------------------------------------------------------------ LIST

/// A listing shows only paths the caller holds `list` on; names under other tenants never
/// appear, a denial reveals nothing, and a missing secret is indistinguishable from a
/// forbidden one.
///
/// See: the LIST-reveals-names class of Vault/OpenBao advisories (key names returned to
/// callers whose policies did not cover them).
#[tokio::test]
async fn list_never_reveals_paths_the_caller_cannot_read() {
    let f = two_tenants().await;
    assert_eq!(put_secret(&f, SUPER, "tenants/a/api", "x").await, StatusCode::OK);
    let hidden = "tenants/b/merger-with-acme-canary-name";
    assert_eq!(put_secret(&f, SUPER, hidden, "x").await, StatusCode::OK);
    let c = "spiffe://spike.ist/tenant/c";
    let d = "spiffe://spike.ist/tenant/d";
    assert_eq!(put_policy(&f, "c", r"spiffe://spike\.ist/tenant/c", hidden, &["read"]).await, 200);
    assert_eq!(
        put_policy(&f, "d", r"spiffe://spike\.ist/tenant/d", "tenants/a/db", &["list"]).await,
        200
    );

    let list = |caller: &'static str| {
        let f = &f;
        async move { call(f, caller, "/v1/store/secrets?action=list", "{}").await }
    };
    assert_eq!(
        list(TENANT_A).await,
        (StatusCode::OK, r#"{"keys":["tenants/a/api","tenants/a/db"]}"#.into())
    );
    assert_eq!(list(d).await, (StatusCode::OK, r#"{"keys":["tenants/a/db"]}"#.into()));
    // Read without list: no listing, and the denial names nothing.
    let (s, b) = list(c).await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::UNAUTHORIZED, r#"{"keys":null,"err":"access_unauthorized"}"#)
    );
    let (s, b) = list("spiffe://spike.ist/nobody").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(!b.contains("tenants"), "{b}");
    // The superuser sees everything (the control).
    let (_, all) = list(SUPER).await;
    assert!(all.contains(hidden) && all.contains("tenants/a/db"), "{all}");

    // Existence is not revealed by get or metadata either.
    for uri in ["/v1/store/secrets?action=get", "/v1/store/secrets/metadata?action=get"] {
        let exists =
            call(&f, TENANT_A, uri, &serde_json::json!({"path": hidden}).to_string()).await;
        let missing =
            call(&f, TENANT_A, uri, &serde_json::json!({"path": "tenants/b/nope"}).to_string())
                .await;
        assert_eq!(exists, missing, "{uri}");
    }
    assert!(!f.audit_log().contains(CANARY));
}

// ------------------------------------------------------------------ size caps and rate limits

/// What works before the root key is back (operator restore and recover: the "pre-unseal"
/// surface) and the Keeper's routes are bounded: bodies past the cap are refused before they
/// are parsed, deeply nested JSON is an error rather than a stack overflow, and each caller is
/// rate-limited before its body is even read.
///
/// See: the unauthenticated/unbounded-endpoint class of Vault/OpenBao advisories
/// (unseal/init and other pre-auth endpoints without size or rate limits; request-body and
/// JSON-nesting denials of service).
#[tokio::test]
async fn pre_unseal_and_keeper_endpoints_are_size_capped_and_rate_limited() {
    // A sealed Nexus (sled backend, no root key yet), with a small cap and a small burst.
    let f = fixture_with(|c| {
        c.backend = BackendKind::Sled;
        c.max_body_bytes = 4096;
        c.rate_limit = Some(RateLimit { per_second: 0.5, burst: 8 });
    });
    assert!(!f.state.is_ready());
    let big = format!(r#"{{"id":1,"shard":[{}1]}}"#, "1,".repeat(4096));
    let (s, _) = call(&f, RESTORE, "/v1/operator/restore", &big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // Deep nesting within the cap: a 400, not a crash (serde_json's recursion limit).
    let deep = format!(r#"{{"id":1,"shard":{}{}}}"#, "[".repeat(2000), "]".repeat(2000));
    assert_eq!(call(&f, RESTORE, "/v1/operator/restore", &deep).await.0, StatusCode::BAD_REQUEST);
    let deep_obj = format!("{}{}", r#"{"a":"#.repeat(600), "}".repeat(600));
    assert_eq!(
        call(&f, RESTORE, "/v1/operator/restore", &deep_obj).await.0,
        StatusCode::BAD_REQUEST
    );
    // The burst is spent (3 so far); the rest of it, then 429 with Retry-After, per caller.
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(call(&f, RESTORE, "/v1/operator/recover", "{}").await.0);
    }
    assert!(statuses[..5].iter().all(|s| *s != StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    // An oversized body from a limited caller is refused without being read.
    assert_eq!(
        call(&f, RESTORE, "/v1/operator/restore", &big).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another caller still has its own budget.
    assert_eq!(call(&f, SUPER, "/v1/operator/recover", "{}").await.0, StatusCode::UNAUTHORIZED);

    // The Keeper: its cap and its rate limit.
    let keeper_state = Arc::new(KeeperState::with_rate_limit(
        TrustRoots::single(TD),
        RateLimit { per_second: 0.5, burst: 4 },
    ));
    let keeper_call = |caller: &'static str, body: String| {
        let state = keeper_state.clone();
        async move {
            let app = keeper::router(state);
            let uri = "/v1/store/contribute";
            let resp =
                support::request_as(app, caller, "POST", uri, "application/json", body.into())
                    .await;
            let retry = resp.headers().get("retry-after").is_some();
            (resp.status(), retry)
        }
    };
    let huge = format!(r#"{{"shard":[{}1]}}"#, "1,".repeat(keeper::router::MAX_BODY_BYTES));
    assert_eq!(keeper_call(NEXUS_ID, huge.clone()).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    let deep = format!(r#"{{"shard":{}{}}}"#, "[".repeat(1500), "]".repeat(1500));
    assert_eq!(keeper_call(NEXUS_ID, deep).await.0, StatusCode::BAD_REQUEST);
    let shard = format!(r#"{{"shard":[{}]}}"#, vec!["7"; 32].join(","));
    assert_eq!(keeper_call(NEXUS_ID, shard.clone()).await.0, StatusCode::OK);
    assert_eq!(keeper_call(NEXUS_ID, shard.clone()).await.0, StatusCode::OK);
    let (s, retry) = keeper_call(NEXUS_ID, shard.clone()).await;
    assert_eq!((s, retry), (StatusCode::TOO_MANY_REQUESTS, true));
    assert_eq!(keeper_call(NEXUS_ID, huge).await.0, StatusCode::TOO_MANY_REQUESTS);
    // A second caller has its own bucket (Bootstrap may contribute).
    let bootstrap = "spiffe://spike.ist/spike/bootstrap";
    assert_eq!(keeper_call(bootstrap, shard).await.0, StatusCode::OK);
}

// ------------------------------------------------------------------ canaries under fuzzed input

/// A tiny deterministic generator (xorshift64*): reproducible fuzzing, no extra dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four structure-aware mutations: JSON punctuation inserted or overwritten, ranges
/// deleted or duplicated, truncation.
fn mutate(rng: &mut Rng, template: &[u8]) -> Vec<u8> {
    const PUNCT: &[u8] = b"\"{}[],:\\0-1e. nxtf\x00\xff";
    let mut out = template.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if at < out.len() => out[at] = PUNCT[rng.below(PUNCT.len())],
            1 => out.insert(at, PUNCT[rng.below(PUNCT.len())]),
            2 => {
                let end = (at + 1 + rng.below(8)).min(out.len());
                out.drain(at.min(end)..end);
            }
            3 => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                let piece = out[at.min(end)..end].to_vec();
                let to = rng.below(out.len() + 1);
                out.splice(to..to, piece);
            }
            _ => out.truncate(at),
        }
    }
    out
}

/// Secret canaries — a secret value, a cipher plaintext (and its base64), Shamir shard bytes
/// (and their JSON number form) — are sent inside hundreds of mutated request bodies to every
/// route, as the superuser, as a workload without rights and as the restore role, to a ready
/// and to a sealed Nexus. None may appear in an error body, a log line (TRACE level: all of
/// what the binary prints) or the audit log; only a successful get or decrypt may return a
/// value, to the caller entitled to it.
///
/// See: the secrets-in-logs class of Vault/OpenBao advisories (request bodies with secrets
/// echoed into audit, server logs or error messages, e.g. on parse errors).
#[tokio::test]
async fn secret_canaries_never_reach_error_bodies_logs_or_audit_under_fuzzed_input() {
    const VALUE: &str = "canary-value-91c3a7-do-not-leak";
    const PLAIN: &str = "canary-plaintext-5e0f2b";
    const PLAIN_B64: &str = "Y2FuYXJ5LXBsYWludGV4dC01ZTBmMmI=";
    const SHARD: &[u8; 32] = b"canary-shard-bytes-0123456789abc";
    let shard_json = SHARD.iter().map(u8::to_string).collect::<Vec<_>>().join(",");
    // The number form a careless log line would print (any run of 8 of them is damning).
    let shard_numbers = SHARD[..8].iter().map(u8::to_string).collect::<Vec<_>>().join(",");
    let needles = [VALUE, PLAIN, PLAIN_B64, std::str::from_utf8(SHARD).unwrap()];

    let templates: Vec<(&str, String)> = vec![
        ("/v1/store/secrets", format!(r#"{{"path":"fz/a","values":{{"k":"{VALUE}"}},"cas":1}}"#)),
        ("/v1/store/secrets", format!(r#"{{"path":"fz/b","values":{{"{VALUE}":"x"}}}}"#)),
        ("/v1/store/secrets?action=get", r#"{"path":"fz/a","version":1}"#.into()),
        ("/v1/store/secrets?action=delete", r#"{"path":"fz/a","versions":[1]}"#.into()),
        ("/v1/store/secrets?action=undelete", r#"{"path":"fz/a","versions":[1]}"#.into()),
        ("/v1/store/secrets?action=destroy", r#"{"path":"fz/a","versions":[1]}"#.into()),
        ("/v1/store/secrets/metadata?action=get", r#"{"path":"fz/a"}"#.into()),
        ("/v1/store/secrets?action=list", "{}".into()),
        (
            "/v1/acl/policy",
            r#"{"name":"fz","spiffeidPattern":"spiffe://spike\\.ist/fz","pathPattern":"fz/.*","permissions":["read"]}"#.into(),
        ),
        ("/v1/acl/policy?action=list", r#"{"spiffeidPattern":"","pathPattern":""}"#.into()),
        ("/v1/cipher/encrypt", format!(r#"{{"plaintext":"{PLAIN_B64}"}}"#)),
        (
            "/v1/cipher/decrypt",
            format!(r#"{{"version":1,"nonce":"AAAAAAAAAAAAAAAA","ciphertext":"{PLAIN_B64}"}}"#),
        ),
        ("/v1/operator/restore", format!(r#"{{"id":2,"shard":[{shard_json}]}}"#)),
        ("/v1/operator/recover", "{}".into()),
        ("/v1/bootstrap/verify", format!(r#"{{"nonce":"AAAAAAAAAAAAAAAA","ciphertext":"{PLAIN_B64}"}}"#)),
    ];
    let callers = [
        SUPER,
        TENANT_A,
        RESTORE,
        "spiffe://spike.ist/spike/pilot/role/recover",
        "spiffe://spike.ist/spike/bootstrap",
    ];

    let ready = fixture();
    let sealed = fixture_with(|c| c.backend = BackendKind::Sled);
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let mut requests = 0;
    for round in 0..14 {
        for (uri, template) in &templates {
            for f in [&ready, &sealed] {
                let caller = callers[rng.below(callers.len())];
                // Round 0 sends the templates unmutated, so the happy paths run too.
                let body = if round == 0 {
                    template.clone().into_bytes()
                } else {
                    mutate(&mut rng, template.as_bytes())
                };
                let (status, resp) = call_bytes(f, caller, uri, body).await;
                requests += 1;
                let text = String::from_utf8_lossy(&resp);
                let may_return_secrets = status == StatusCode::OK
                    && (uri.contains("action=get") || uri.ends_with("/decrypt"));
                if !may_return_secrets {
                    for needle in needles {
                        assert!(!text.contains(needle), "{uri} as {caller} ({status}): {text}");
                    }
                    assert!(!text.contains(&shard_numbers), "{uri} ({status}): {text}");
                }
            }
        }
    }
    assert_eq!(requests, 14 * templates.len() * 2);
    for f in [&ready, &sealed] {
        // Repeated refusals are summarised per caller and interval (issue 13): write the open
        // summaries, then every request must be accounted for, by its line or in a summary.
        f.state.audit.flush_all().unwrap();
        let audit = f.audit_log();
        let accounted: u64 = audit
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                match v.get("counts") {
                    Some(c) => c.as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum(),
                    None => 1,
                }
            })
            .sum();
        assert_eq!(accounted, 14 * templates.len() as u64, "the audit log is missing requests");
        for needle in needles {
            assert!(!audit.contains(needle), "audit log holds {needle:?}");
        }
        assert!(!audit.contains(&shard_numbers), "audit log holds shard bytes");
    }
    for needle in needles {
        assert!(!logs_contain(needle), "logs hold {needle:?}");
    }
    assert!(!logs_contain(&shard_numbers), "logs hold shard bytes");
}
