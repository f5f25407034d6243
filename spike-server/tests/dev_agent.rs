//! spike-dev-agent as a real SPIFFE Workload API: real Unix sockets, real gRPC, real clients
//! (the `spiffe` crate's X509Source and WorkloadApiClient, and a raw tonic client for the
//! error cases the `spiffe` crate cannot produce). Nothing is mocked.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use spiffe::{TrustDomain, WorkloadApiClient};
use spike_client::identity::IdentitySource;
use spike_core::identity::Role;
use spike_server::dev::agent::proto::{JwtsvidRequest, X509svidRequest};
use spike_server::dev::agent::{DevAgent, DevAgentHandle, RegistrationEntry, Selector};
use x509_parser::extensions::{GeneralName, ParsedExtension};

#[path = "support/raw_workload_api.rs"]
mod raw_workload_api;
use raw_workload_api::{raw_client, with_header};

const TTL: Duration = Duration::from_secs(2);

async fn start(dir: &Path, ttl: Duration) -> DevAgentHandle {
    DevAgent::builder()
        .socket_dir(dir.join("s"))
        .svid_ttl(ttl)
        .build()
        .expect("agent config")
        .serve()
        .await
        .expect("agent starts")
}

fn my_uid(dir: &Path) -> u32 {
    std::fs::metadata(dir).expect("temp dir").uid()
}

#[tokio::test]
async fn x509_source_gets_an_svid_and_then_a_rotated_one() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(dir.path(), TTL).await;
    let endpoint = agent.endpoint("nexus").unwrap();

    let source = IdentitySource::workload_api(&endpoint, Duration::from_secs(5)).await.unwrap();
    let first = source.current().unwrap();
    assert_eq!(first.spiffe_id().to_string(), Role::Nexus.spiffe_id("spike.ist"));
    assert!(first.trust_anchors(&TrustDomain::new("spike.ist").unwrap()).is_some());

    // The agent re-issues at half-life (1 s); the X509Source must pick it up on its own.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rotated = loop {
        let now = source.current().unwrap();
        if now.cert_chain()[0] != first.cert_chain()[0] {
            break now;
        }
        assert!(Instant::now() < deadline, "no rotated SVID within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rotated.spiffe_id(), first.spiffe_id());
    let not_after = |id: &spike_client::Identity| {
        let (_, cert) = x509_parser::parse_x509_certificate(&id.cert_chain()[0]).unwrap();
        cert.validity().not_after.timestamp()
    };
    assert!(not_after(&rotated) >= not_after(&first), "a rotated SVID never expires earlier");

    source.shutdown().await;
    agent.shutdown().await;
}

#[tokio::test]
async fn each_default_socket_serves_its_spike_role() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(dir.path(), Duration::from_secs(3600)).await;
    for role in Role::ALL {
        let endpoint = agent.endpoint(role.short_name()).unwrap();
        let client = WorkloadApiClient::connect_to(&endpoint).await.unwrap();
        let svid = client.fetch_x509_svid().await.unwrap();
        assert_eq!(svid.spiffe_id().to_string(), role.spiffe_id("spike.ist"), "{endpoint}");
    }
    agent.shutdown().await;
}

#[tokio::test]
async fn issued_svids_follow_the_x509_svid_spec() {
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_secs(120);
    let agent = start(dir.path(), ttl).await;
    let client = WorkloadApiClient::connect_to(agent.endpoint("keeper").unwrap()).await.unwrap();
    let svid = client.fetch_x509_svid().await.unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(svid.leaf().as_bytes()).unwrap();

    let bc = leaf.basic_constraints().unwrap().expect("basicConstraints present");
    assert!(!bc.value.ca, "leaf must not be a CA");
    let ku = leaf.key_usage().unwrap().expect("keyUsage present");
    assert!(ku.value.digital_signature());
    assert!(!ku.value.key_cert_sign() && !ku.value.crl_sign());
    let eku = leaf.extended_key_usage().unwrap().expect("EKU present");
    assert!(eku.value.server_auth && eku.value.client_auth);
    let uris: Vec<_> = leaf
        .extensions()
        .iter()
        .filter_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => Some(san),
            _ => None,
        })
        .flat_map(|san| san.general_names.iter())
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(uris, ["spiffe://spike.ist/spike/keeper"]);
    let lifetime = leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp();
    // The TTL plus the small backdating for clock skew.
    assert!((120..=140).contains(&lifetime), "lifetime {lifetime}s");
    agent.shutdown().await;
}

#[tokio::test]
async fn call_without_security_header_is_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(dir.path(), Duration::from_secs(3600)).await;
    let mut client = raw_client(agent.socket_path("nexus").unwrap()).await;
    let status = client.fetch_x509svid(X509svidRequest {}).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("security header"), "{status:?}");

    // With the header, the same raw client gets an SVID.
    let mut stream =
        client.fetch_x509svid(with_header(X509svidRequest {})).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().expect("one message");
    assert_eq!(first.svids.len(), 1);
    assert_eq!(first.svids[0].spiffe_id, "spiffe://spike.ist/spike/nexus");
    agent.shutdown().await;
}

/// The JWT-SVID profile is served too (tested in depth in dev_agent_jwt.rs).
#[tokio::test]
async fn jwt_rpcs_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(dir.path(), Duration::from_secs(3600)).await;
    let mut client = raw_client(agent.socket_path("nexus").unwrap()).await;
    let request = JwtsvidRequest { audience: vec!["spike".into()], spiffe_id: String::new() };
    let reply = client.fetch_jwtsvid(with_header(request)).await.unwrap().into_inner();
    assert_eq!(reply.svids.len(), 1);
    assert_eq!(reply.svids[0].spiffe_id, "spiffe://spike.ist/spike/nexus");
    agent.shutdown().await;
}

#[tokio::test]
async fn caller_matching_no_entry_is_permission_denied() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(dir.path(), Duration::from_secs(3600)).await;
    // The defaults carry no selectors, so nobody is recognised on the shared socket.
    let mut client = raw_client(agent.shared_socket_path()).await;
    let status = client.fetch_x509svid(with_header(X509svidRequest {})).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("no registration entry"), "{status:?}");
    agent.shutdown().await;
}

#[tokio::test]
async fn uid_selector_grants_its_identity_on_the_shared_socket() {
    let dir = tempfile::tempdir().unwrap();
    let uid = my_uid(dir.path());
    let entry = RegistrationEntry::new("app", "spiffe://spike.ist/apps/billing")
        .unwrap()
        .with_selector(Selector::UnixUid(uid));
    let other = RegistrationEntry::new("other", "spiffe://spike.ist/apps/other")
        .unwrap()
        .with_selector(Selector::UnixUid(uid.wrapping_add(1)));
    let agent = DevAgent::builder()
        .socket_dir(dir.path().join("s"))
        .default_entries(false)
        .entries([entry, other])
        .build()
        .unwrap()
        .serve()
        .await
        .unwrap();
    let client = WorkloadApiClient::connect_to(agent.shared_endpoint()).await.unwrap();
    let svids = client.fetch_all_x509_svids().await.unwrap();
    let ids: Vec<String> = svids.iter().map(|s| s.spiffe_id().to_string()).collect();
    assert_eq!(ids, ["spiffe://spike.ist/apps/billing"]);
    let bundles = client.fetch_x509_bundles().await.unwrap();
    assert!(bundles.get(&TrustDomain::new("spike.ist").unwrap()).is_some());
    agent.shutdown().await;
}

#[tokio::test]
async fn svid_files_are_written_and_rewritten_for_the_file_source() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nexus-svid");
    let agent = DevAgent::builder()
        .socket_dir(dir.path().join("s"))
        .write_svid("nexus", &out)
        .build()
        .unwrap()
        .serve()
        .await
        .unwrap();
    let mode = std::fs::metadata(out.join("svid_key.pem")).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key file must be private");

    let source = IdentitySource::files_with_interval(&out, Duration::from_millis(50)).unwrap();
    let first = source.current().unwrap();
    assert_eq!(first.spiffe_id().to_string(), "spiffe://spike.ist/spike/nexus");

    agent.rotate_now();
    let deadline = Instant::now() + Duration::from_secs(10);
    while source.current().unwrap().cert_chain() == first.cert_chain() {
        assert!(Instant::now() < deadline, "file source did not pick up the rotated SVID");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // On-demand files for another identity, e.g. for curl or openssl.
    let keeper = dir.path().join("keeper-svid");
    agent.write_svid_files("keeper", &keeper).unwrap();
    let identity = spike_client::identity::load_svid_dir(&keeper).unwrap();
    assert_eq!(identity.spiffe_id().to_string(), "spiffe://spike.ist/spike/keeper");
    assert!(agent.write_svid_files("nope", &keeper).is_err());
    agent.shutdown().await;
}

#[tokio::test]
async fn state_dir_keeps_the_ca_across_restarts_and_refuses_another_trust_domain() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let build = |td: &str| {
        DevAgent::builder()
            .trust_domain(td)
            .state_dir(&state)
            .socket_dir(dir.path().join("s"))
            .build()
    };
    let first = build("spike.ist").unwrap().serve().await.unwrap();
    let bundle = first.bundle_pem().to_owned();
    first.shutdown().await;
    let second = build("spike.ist").unwrap().serve().await.unwrap();
    assert_eq!(second.bundle_pem(), bundle, "the CA must be reused");
    second.shutdown().await;
    let err = build("example.org").unwrap_err().to_string();
    assert!(err.contains("spiffe://spike.ist") && err.contains("delete"), "{err}");
}

#[tokio::test]
async fn bad_configurations_fail_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let base = || DevAgent::builder().socket_dir(dir.path().join("s"));
    let err = base().trust_domain("Not A Domain!").build().unwrap_err().to_string();
    assert!(err.contains("trust domain"), "{err}");
    let err = base().svid_ttl(Duration::from_millis(500)).build().unwrap_err().to_string();
    assert!(err.contains("too short"), "{err}");
    let foreign = RegistrationEntry::new("x", "spiffe://other.org/x").unwrap();
    let err = base().entry(foreign).build().unwrap_err().to_string();
    assert!(err.contains("outside the agent's trust domain"), "{err}");
    let err = base().write_svid("ghost", dir.path()).build().unwrap_err().to_string();
    assert!(err.contains("ghost"), "{err}");
    assert!(RegistrationEntry::new("agent", "spiffe://spike.ist/x").is_err());
    assert!(RegistrationEntry::new("../x", "spiffe://spike.ist/x").is_err());
    assert!(RegistrationEntry::parse("app=spiffe://spike.ist/app,unix:uid:x").is_err());
    let long = dir.path().join("s".repeat(120));
    let err = DevAgent::builder().socket_dir(long).build().unwrap().serve().await.unwrap_err();
    assert!(err.to_string().contains("shorter --socket-dir"), "{err}");

    // A second agent on the same sockets is refused while the first runs.
    let running = base().build().unwrap().serve().await.unwrap();
    let err = base().build().unwrap().serve().await.unwrap_err().to_string();
    assert!(err.contains("in use"), "{err}");
    running.shutdown().await;
}

#[tokio::test]
async fn workload_api_source_names_the_socket_when_no_agent_runs() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("unix://{}", dir.path().join("absent.sock").display());
    let started = Instant::now();
    let err =
        IdentitySource::workload_api(&endpoint, Duration::from_millis(500)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "initial sync timeout not honoured");
    let text = err.to_string();
    assert!(text.contains("absent.sock") && text.contains("does not exist"), "{text}");
    assert!(text.contains("spike dev"), "{text}");
}
