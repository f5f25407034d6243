//! The SDK against a real Nexus over real mTLS: identities come from a real spike-dev-agent
//! over its Unix sockets, Nexus listens on 127.0.0.1, and every call goes through the SDK's
//! connection pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use spike_client::identity::IdentitySource;
use spike_client::{Error, RetryPolicy, Spike};
use spike_core::policy::Permission;
use spike_core::secret::SecretValues;
use spike_core::shamir;
use spike_server::dev::agent::{DevAgent, DevAgentHandle, RegistrationEntry};
use spike_server::nexus::{self, BackendKind, NexusConfig, RunningNexus};

const APP_ID: &str = "spiffe://spike.ist/workload/app";

struct System {
    agent: DevAgentHandle,
    nexus: RunningNexus,
    _dir: tempfile::TempDir,
}

async fn start(backend: BackendKind, svid_ttl: Duration) -> System {
    let dir = tempfile::tempdir().unwrap();
    let agent = DevAgent::builder()
        .socket_dir(dir.path().join("sockets"))
        .svid_ttl(svid_ttl)
        .entry(RegistrationEntry::new("app", APP_ID).unwrap())
        .build()
        .unwrap()
        .serve()
        .await
        .unwrap();
    let source = source(&agent, "nexus").await;
    let mut config = NexusConfig::dev(dir.path().join("nexus"));
    config.backend = backend;
    let nexus = nexus::start(config, source).await.unwrap();
    System { agent, nexus, _dir: dir }
}

async fn source(agent: &DevAgentHandle, name: &str) -> IdentitySource {
    IdentitySource::workload_api(&agent.endpoint(name).unwrap(), Duration::from_secs(10))
        .await
        .unwrap()
}

async fn client(sys: &System, name: &str) -> Spike {
    Spike::builder()
        .identity(source(&sys.agent, name).await)
        .url(format!("https://{}", sys.nexus.addr()))
        .retry(RetryPolicy { attempts: 1, ..RetryPolicy::default() })
        .build()
        .await
        .unwrap()
}

fn values(pairs: &[(&str, &str)]) -> SecretValues {
    pairs.iter().copied().collect()
}

#[tokio::test]
async fn superuser_manages_versioned_secrets_through_the_sdk() {
    let sys = start(BackendKind::Memory, Duration::from_secs(3600)).await;
    let pilot = client(&sys, "pilot-superuser").await;
    pilot.put_secret("app/db", values(&[("user", "admin"), ("pass", "one")])).await.unwrap();
    pilot.put_secret("app/db", values(&[("pass", "two")])).await.unwrap();
    assert_eq!(pilot.get_secret("app/db").await.unwrap().get("pass"), Some("two"));
    assert_eq!(pilot.get_secret_version("app/db", 1).await.unwrap().get("user"), Some("admin"));
    assert_eq!(pilot.list_secrets().await.unwrap(), vec!["app/db".to_owned()]);

    pilot.delete_secret("app/db", &[2]).await.unwrap();
    assert!(matches!(pilot.get_secret_version("app/db", 2).await, Err(Error::NotFound)));
    pilot.undelete_secret("app/db", &[2]).await.unwrap();
    let meta = pilot.secret_metadata("app/db").await.unwrap();
    assert_eq!(meta.metadata.current_version, 2);
    assert_eq!(meta.versions.unwrap().len(), 2);

    // Check-and-set: a stale writer loses and changes nothing.
    assert!(matches!(
        pilot.put_secret_cas("app/db", values(&[("pass", "stale")]), 1).await,
        Err(Error::Conflict)
    ));
    pilot.put_secret_cas("app/db", values(&[("pass", "three")]), 2).await.unwrap();
    assert_eq!(pilot.get_secret("app/db").await.unwrap().get("pass"), Some("three"));

    pilot.destroy_secret("app/db", &[1]).await.unwrap();
    assert!(matches!(pilot.get_secret_version("app/db", 1).await, Err(Error::NotFound)));

    // Bad input is refused locally, with the reason.
    let err = pilot.put_secret("../x", values(&[("k", "v")])).await.unwrap_err().to_string();
    assert!(err.contains("secret path"), "{err}");
}

#[tokio::test]
async fn workloads_are_denied_until_a_policy_grants_them() {
    let sys = start(BackendKind::Memory, Duration::from_secs(3600)).await;
    let pilot = client(&sys, "pilot-superuser").await;
    let app = client(&sys, "app").await;
    pilot.put_secret("app/db", values(&[("k", "v")])).await.unwrap();

    assert!(matches!(app.get_secret("app/db").await, Err(Error::Forbidden)));
    assert!(matches!(app.get_secret("app/missing").await, Err(Error::Forbidden)));
    let grab = app.create_policy("mine", ".*", ".*", &[Permission::Super]).await;
    assert!(matches!(grab, Err(Error::Forbidden)));

    pilot
        .create_policy(
            "app-read",
            r"spiffe://spike\.ist/workload/app",
            "app/.*",
            &[Permission::Read],
        )
        .await
        .unwrap();
    assert_eq!(app.get_secret("app/db").await.unwrap().get("k"), Some("v"));
    assert!(matches!(app.put_secret("app/db", values(&[("k", "x")])).await, Err(Error::Forbidden)));
    assert!(matches!(app.get_secret("app/missing").await, Err(Error::NotFound)));

    let names: Vec<String> =
        pilot.list_policies(None, None).await.unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, vec!["app-read".to_owned()]);
    assert_eq!(pilot.get_policy("app-read").await.unwrap().path_pattern, "app/.*");
    pilot.delete_policy("app-read").await.unwrap();
    assert!(matches!(app.get_secret("app/db").await, Err(Error::Forbidden)));
}

#[tokio::test]
async fn cipher_round_trips_in_json_and_streaming_mode() {
    let sys = start(BackendKind::Memory, Duration::from_secs(3600)).await;
    let pilot = client(&sys, "pilot-superuser").await;
    let sealed = pilot.encrypt(b"attack at dawn").await.unwrap();
    assert_eq!(sealed.version, 1);
    assert_eq!(&pilot.decrypt(&sealed).await.unwrap()[..], b"attack at dawn");
    let framed = pilot.encrypt_bytes(&[0u8, 1, 2, 255]).await.unwrap();
    assert_eq!(&pilot.decrypt_bytes(&framed).await.unwrap()[..], &[0u8, 1, 2, 255]);
    let lite = client(&sys, "lite-workload").await;
    assert!(lite.encrypt(b"x").await.is_ok());
    let app = client(&sys, "app").await;
    assert!(matches!(app.encrypt(b"x").await, Err(Error::Forbidden)));
}

#[tokio::test]
async fn a_sealed_nexus_is_not_ready_until_the_restore_role_feeds_shards() {
    let sys = start(BackendKind::Sled, Duration::from_secs(3600)).await;
    let pilot = client(&sys, "pilot-superuser").await;
    assert!(matches!(pilot.get_secret("a").await, Err(Error::NotReady)));
    let root = shamir::generate_root_key().unwrap();
    let shares = shamir::split(&root, 2, 3).unwrap();
    let restorer = client(&sys, "pilot-restore").await;
    assert!(matches!(pilot.restore(&shares[0]).await, Err(Error::Forbidden)));
    let first = restorer.restore(&shares[0]).await.unwrap();
    assert_eq!((first.collected, first.remaining, first.restored), (1, 1, false));
    let second = restorer.restore(&shares[2]).await.unwrap();
    assert!(second.restored);
    pilot.put_secret("a", values(&[("k", "v")])).await.unwrap();

    let recoverer = client(&sys, "pilot-recover").await;
    let recovered = recoverer.recover().await.unwrap();
    assert_eq!(recovered.len(), 3);
    assert!(shamir::combine(&recovered[..2], 2).unwrap().ct_eq(&root));
}

#[tokio::test]
async fn clients_refuse_a_server_with_the_wrong_spiffe_id_and_foreign_domains_are_refused() {
    let sys = start(BackendKind::Memory, Duration::from_secs(3600)).await;
    // Expecting a keeper where Nexus answers: the handshake fails, no request is sent.
    let wrong = Spike::builder()
        .identity(source(&sys.agent, "pilot-superuser").await)
        .url(format!("https://{}", sys.nexus.addr()))
        .nexus_id("spiffe://spike.ist/spike/keeper")
        .retry(RetryPolicy { attempts: 1, ..RetryPolicy::default() })
        .build()
        .await
        .unwrap();
    let err = wrong.list_secrets().await.unwrap_err();
    assert!(matches!(err, Error::NexusUnreachable { .. }), "{err}");

    // A superuser path in another trust domain, from another CA: refused at the handshake.
    let dir = tempfile::tempdir().unwrap();
    let evil = DevAgent::builder()
        .trust_domain("evil.org")
        .socket_dir(dir.path().join("s"))
        .default_entries(false)
        .entry(
            RegistrationEntry::new("fake-pilot", "spiffe://evil.org/spike/pilot/role/superuser")
                .unwrap(),
        )
        .build()
        .unwrap()
        .serve()
        .await
        .unwrap();
    let forged = Spike::builder()
        .identity(source(&evil, "fake-pilot").await)
        .url(format!("https://{}", sys.nexus.addr()))
        .nexus_id("spiffe://spike.ist/spike/nexus")
        .retry(RetryPolicy { attempts: 1, ..RetryPolicy::default() })
        .build()
        .await
        .unwrap();
    assert!(forged.list_secrets().await.is_err());
}

#[tokio::test]
async fn svid_rotation_during_traffic_drops_no_request() {
    // Two-second SVIDs: both sides rotate several times during the run.
    let sys = start(BackendKind::Memory, Duration::from_secs(2)).await;
    let pilot = client(&sys, "pilot-superuser").await;
    pilot.put_secret("r/s", values(&[("k", "v")])).await.unwrap();
    let first_expiry = sys.agent.svid_not_after("nexus").unwrap();
    let ok = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = vec![];
    for _ in 0..4 {
        let pilot = pilot.clone();
        let ok = ok.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            // Bounded in count and time.
            while n < 400 && started.elapsed() < Duration::from_secs(6) {
                let v = pilot.get_secret("r/s").await.expect("no request may fail during rotation");
                assert_eq!(v.get("k"), Some("v"));
                ok.fetch_add(1, Ordering::Relaxed);
                n += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(sys.agent.svid_not_after("nexus").unwrap() > first_expiry, "Nexus's SVID rotated");
    assert!(ok.load(Ordering::Relaxed) > 100);
    // New connections after rotation work too.
    let fresh = client(&sys, "pilot-superuser").await;
    assert_eq!(fresh.get_secret("r/s").await.unwrap().get("k"), Some("v"));
}

#[tokio::test]
async fn a_client_that_stalls_mid_headers_is_disconnected_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let agent = DevAgent::builder()
        .socket_dir(dir.path().join("sockets"))
        .build()
        .unwrap()
        .serve()
        .await
        .unwrap();
    let mut config = NexusConfig::dev(dir.path().join("nexus"));
    config.connections.header_read_timeout = Duration::from_secs(1);
    let nexus = nexus::start(config, source(&agent, "nexus").await).await.unwrap();

    // A genuine mTLS client (a valid SVID) that sends half a request line and then stalls.
    let tls = spike_client::tls::mtls_client(
        source(&agent, "pilot-superuser").await,
        "spiffe://spike.ist/spike/nexus".parse().unwrap(),
    )
    .alpn_protocols([b"http/1.1".to_vec()])
    .build()
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(nexus.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("nexus").unwrap();
    let mut stream =
        tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(name, tcp).await.unwrap();
    stream.write_all(b"POST /v1/store/secrets?action=list HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    stream.flush().await.unwrap();

    // The server must close the connection (EOF or an error) on its own, well before our bound.
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let outcome = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // e.g. a 408 response; keep reading until the close
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "Nexus kept a stalled connection open past 15 s");
    assert!(started.elapsed() >= Duration::from_millis(900), "closed before the timeout");
}
