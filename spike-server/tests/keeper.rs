//! Keepers, Bootstrap and Nexus recovery in one process, over real mTLS on 127.0.0.1 with
//! identities from a real spike-dev-agent: SPIKE's exact Keeper bodies, who may talk to a
//! Keeper, and the bootstrap → recover → re-arm cycle. Multi-process crash tests live in the
//! `spike-e2e` crate.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use spike_client::identity::IdentitySource;
use spike_core::secret::KeeperShare;
use spike_core::shamir;
use spike_server::bootstrap::{self, BootstrapConfig, BootstrapOutcome};
use spike_server::dev::agent::{DevAgent, DevAgentHandle};
use spike_server::keeper::{self, KeeperClient, KeeperConfig, KeeperError, KeeperState};
use spike_server::nexus::authz::TrustRoots;
use spike_server::nexus::{self, BackendKind, NexusConfig};

const NEXUS: &str = "spiffe://spike.ist/spike/nexus";
const BOOTSTRAP: &str = "spiffe://spike.ist/spike/bootstrap";
const PILOT: &str = "spiffe://spike.ist/spike/pilot/role/superuser";

async fn call(state: &Arc<KeeperState>, caller: &str, uri: &str, body: &str) -> (u16, String) {
    let (status, body) = support::post_as(keeper::router(state.clone()), caller, uri, body).await;
    (status.as_u16(), body)
}

fn shard_json(byte: u8) -> String {
    format!("[{}]", vec![byte.to_string(); 32].join(","))
}

#[tokio::test]
async fn keeper_routes_answer_with_spike_bodies_and_statuses() {
    let state = Arc::new(KeeperState::new(TrustRoots::single("spike.ist")));
    let shard = "/v1/store/shard";
    let contribute = "/v1/store/contribute";

    // No shard yet: SPIKE's 400 with the capitalised, always-present "Err".
    assert_eq!(
        call(&state, NEXUS, shard, "{}").await,
        (400, r#"{"shard":null,"Err":"api_bad_request"}"#.into())
    );
    // Nil and all-zero shards are refused; nothing is stored.
    assert_eq!(
        call(&state, NEXUS, contribute, "{}").await,
        (400, r#"{"err":"api_bad_request"}"#.into())
    );
    let zero = format!(r#"{{"shard":{}}}"#, shard_json(0));
    assert_eq!(call(&state, NEXUS, contribute, &zero).await.0, 400);
    assert!(state.shard.is_empty());

    // Only Nexus and Bootstrap may contribute (401 with SPIKE's body otherwise).
    let seven = format!(r#"{{"shard":{}}}"#, shard_json(7));
    assert_eq!(
        call(&state, PILOT, contribute, &seven).await,
        (401, r#"{"err":"access_unauthorized"}"#.into())
    );
    assert!(state.shard.is_empty());
    assert_eq!(call(&state, BOOTSTRAP, contribute, &seven).await, (200, "{}".into()));
    let nine = format!(r#"{{"shard":{}}}"#, shard_json(9));
    assert_eq!(call(&state, NEXUS, contribute, &nine).await, (200, "{}".into()));

    // Only Nexus may read it; it gets the latest contribution.
    assert_eq!(
        call(&state, BOOTSTRAP, shard, "{}").await,
        (401, r#"{"shard":null,"Err":"access_unauthorized"}"#.into())
    );
    assert_eq!(call(&state, PILOT, shard, "{}").await.0, 401);
    assert_eq!(
        call(&state, NEXUS, shard, "{}").await,
        (200, format!(r#"{{"shard":{},"Err":""}}"#, shard_json(9)))
    );

    // SPIKE's role rule: an ID below Nexus's (a pod-suffixed one) is Nexus; one that merely
    // shares a string prefix is not.
    assert_eq!(call(&state, &format!("{NEXUS}/nexus-0"), shard, "{}").await.0, 200);
    assert_eq!(call(&state, &format!("{NEXUS}x"), shard, "{}").await.0, 401);
    assert_eq!(call(&state, &format!("{NEXUS}x/nexus-0"), shard, "{}").await.0, 401);
    // SPIKE's fallback for anything else.
    assert_eq!(
        call(&state, NEXUS, "/v1/store/keep", "{}").await,
        (400, r#"{"err":"api_bad_request"}"#.into())
    );
    assert_eq!(call(&state, NEXUS, "/v1/store/shard?action=get", "{}").await.0, 400);
    assert_eq!(call(&state, NEXUS, contribute, "not json").await.0, 400);
}

struct System {
    agent: DevAgentHandle,
    _dir: tempfile::TempDir,
}

async fn system() -> System {
    let dir = tempfile::tempdir().unwrap();
    let agent = DevAgent::builder()
        .socket_dir(dir.path().join("s"))
        .build()
        .unwrap()
        .serve()
        .await
        .unwrap();
    System { agent, _dir: dir }
}

async fn source(sys: &System, name: &str) -> IdentitySource {
    IdentitySource::workload_api(&sys.agent.endpoint(name).unwrap(), Duration::from_secs(10))
        .await
        .unwrap()
}

async fn keeper_client(sys: &System, name: &str) -> KeeperClient {
    let ids = keeper::keeper_matchers(&TrustRoots::single("spike.ist")).unwrap();
    KeeperClient::new(source(sys, name).await, ids, Duration::from_secs(5)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nexus_reads_shards_and_only_nexus_or_bootstrap_reach_a_keeper() {
    let sys = system().await;
    let running = keeper::start(KeeperConfig::dev(), source(&sys, "keeper").await).await.unwrap();
    let url = format!("https://{}", running.addr());
    let nexus = keeper_client(&sys, "nexus").await;
    let boot = keeper_client(&sys, "bootstrap").await;
    let pilot = keeper_client(&sys, "pilot-superuser").await;

    assert!(nexus.shard(&url, 1).await.unwrap().is_none(), "a fresh Keeper holds nothing");
    let share = KeeperShare::new(2, &mut [5u8; 32]);
    boot.contribute(&url, &share).await.unwrap();
    let back = nexus.shard(&url, 2).await.unwrap().unwrap();
    assert_eq!((back.index(), back.expose_secret()), (2, &[5u8; 32]));

    // Bootstrap gets past the handshake but may not read; anyone else is refused at the
    // handshake.
    assert!(matches!(boot.shard(&url, 2).await, Err(KeeperError::Refused { status: 401, .. })));
    assert!(matches!(pilot.shard(&url, 2).await, Err(KeeperError::Unreachable { .. })));
    assert!(matches!(pilot.contribute(&url, &share).await, Err(KeeperError::Unreachable { .. })));

    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_deals_nexus_recovers_and_rearms_and_bootstrap_refuses_twice() {
    let sys = system().await;
    let mut keepers = Vec::new();
    for _ in 0..3 {
        keepers
            .push(keeper::start(KeeperConfig::dev(), source(&sys, "keeper").await).await.unwrap());
    }
    let peers: Vec<String> = keepers.iter().map(|k| format!("https://{}", k.addr())).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut config = NexusConfig::dev(dir.path().join("nexus"));
    config.backend = BackendKind::Sled;
    config.keeper_peers = peers.clone();
    config.keeper_update_interval = Duration::from_millis(300);
    let nexus = nexus::start(config.clone(), source(&sys, "nexus").await).await.unwrap();
    assert!(!nexus.state().is_ready());
    let summary = nexus.state().recovery.summary().unwrap_or_default();
    assert!(summary.contains("Keepers"), "{summary}");

    let mut boot = BootstrapConfig::new(peers.clone(), format!("https://{}", nexus.addr()));
    boot.nexus_timeout = Duration::from_secs(20);
    let outcome = bootstrap::run(boot.clone(), source(&sys, "bootstrap").await).await.unwrap();
    assert_eq!(outcome, BootstrapOutcome::Bootstrapped { keepers: 3 });
    assert!(nexus.state().is_ready());

    // Running it again changes nothing.
    let again = bootstrap::run(boot.clone(), source(&sys, "bootstrap").await).await.unwrap();
    assert!(matches!(again, BootstrapOutcome::AlreadyBootstrapped { .. }), "{again:?}");

    // Every Keeper holds the deterministic share of Nexus's root key.
    let root = nexus.state().unsealed().unwrap();
    let expected = shamir::split(root.root(), 2, 3).unwrap();
    drop(root);
    let reader = keeper_client(&sys, "nexus").await;
    for (i, url) in peers.iter().enumerate() {
        let got = reader.shard(url, (i + 1) as u8).await.unwrap().unwrap();
        assert_eq!(got.expose_secret(), expected[i].expose_secret(), "keeper {}", i + 1);
    }

    // A Keeper that loses its shard is re-armed quickly (probe or update interval).
    keepers[1].state().shard.clear();
    let started = Instant::now();
    loop {
        if let Some(got) = reader.shard(&peers[1], 2).await.unwrap() {
            assert_eq!(got.expose_secret(), expected[1].expose_secret());
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "keeper 2 was not re-armed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A restarted Nexus (same store) recovers with one Keeper gone.
    nexus.shutdown().await;
    let gone = keepers.pop().unwrap();
    gone.shutdown().await;
    let nexus = nexus::start(config, source(&sys, "nexus").await).await.unwrap();
    let started = Instant::now();
    while !nexus.state().is_ready() {
        assert!(started.elapsed() < Duration::from_secs(10), "Nexus did not recover");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    nexus.shutdown().await;
    for k in keepers {
        k.shutdown().await;
    }
}
