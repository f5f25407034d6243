//! `SecretCache` against a real Nexus over real mTLS (in-process dev agent and Nexus on
//! 127.0.0.1): get-through, refresh, change notification, revocation, and serving the last
//! value while Nexus is away.

use std::sync::Arc;
use std::time::Duration;

use spike_client::cache::{CacheEvent, SecretCache, SecretState};
use spike_client::identity::IdentitySource;
use spike_client::{Error, RetryPolicy, Spike};
use spike_core::policy::Permission;
use spike_core::secret::SecretValues;
use spike_server::dev::agent::{DevAgent, DevAgentHandle, RegistrationEntry};
use spike_server::nexus::{self, NexusConfig, RunningNexus};
use tokio::sync::broadcast;

const APP_ID: &str = "spiffe://spike.ist/workload/app";
const REFRESH: Duration = Duration::from_millis(200);
/// Bound on every wait for the background refresh (many intervals).
const WAIT: Duration = Duration::from_secs(10);

struct System {
    agent: DevAgentHandle,
    nexus: RunningNexus,
    _dir: tempfile::TempDir,
}

async fn start() -> System {
    let dir = tempfile::tempdir().unwrap();
    let agent = DevAgent::builder()
        .socket_dir(dir.path().join("sockets"))
        .entry(RegistrationEntry::new("app", APP_ID).unwrap())
        .build()
        .unwrap()
        .serve()
        .await
        .unwrap();
    let source = source(&agent, "nexus").await;
    let nexus = nexus::start(NexusConfig::dev(dir.path().join("nexus")), source).await.unwrap();
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
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap()
}

fn values(pairs: &[(&str, &str)]) -> SecretValues {
    pairs.iter().copied().collect()
}

async fn next_event(events: &mut broadcast::Receiver<CacheEvent>) -> CacheEvent {
    tokio::time::timeout(WAIT, events.recv()).await.expect("an event in time").unwrap()
}

#[tokio::test]
async fn reads_go_through_once_then_refresh_and_announce_changes() {
    let sys = start().await;
    let pilot = client(&sys, "pilot-superuser").await;
    pilot.put_secret("app/db", values(&[("pass", "one")])).await.unwrap();

    let cache = SecretCache::builder(pilot.clone()).refresh_interval(REFRESH).build().unwrap();
    assert!(cache.cached("app/db").is_none());
    let first = cache.get("app/db").await.unwrap();
    assert_eq!(first.get("pass"), Some("one"));
    // The second read is the same allocation: served from memory, not re-fetched.
    assert!(Arc::ptr_eq(&first, &cache.get("app/db").await.unwrap()));
    assert_eq!(cache.paths(), vec!["app/db".to_owned()]);

    let mut events = cache.subscribe();
    let mut watch = cache.watch("app/db").await.unwrap();
    assert_eq!(watch.path(), "app/db");
    assert_eq!(watch.current().values().unwrap().get("pass"), Some("one"));

    pilot.put_secret("app/db", values(&[("pass", "two")])).await.unwrap();
    let state = tokio::time::timeout(WAIT, watch.changed()).await.unwrap().unwrap();
    assert_eq!(state.values().unwrap().get("pass"), Some("two"));
    assert_eq!(next_event(&mut events).await, CacheEvent::Changed { path: "app/db".into() });
    assert_eq!(cache.get("app/db").await.unwrap().get("pass"), Some("two"));

    // An unchanged secret is re-read but announces nothing.
    cache.refresh_all().await;
    assert!(events.try_recv().is_err());

    // Deleting it: watchers see Gone, the cache stops serving it, and a re-read is NotFound.
    pilot.delete_secret("app/db", &[1, 2]).await.unwrap();
    let state = tokio::time::timeout(WAIT, watch.changed()).await.unwrap().unwrap();
    assert!(matches!(state, SecretState::Gone));
    assert!(matches!(
        next_event(&mut events).await,
        CacheEvent::Gone { path, reason } if path == "app/db" && reason == "not found"
    ));
    assert!(matches!(cache.get("app/db").await, Err(Error::NotFound)));

    // It comes back when the secret does.
    pilot.put_secret("app/db", values(&[("pass", "three")])).await.unwrap();
    let state = tokio::time::timeout(WAIT, watch.changed()).await.unwrap().unwrap();
    assert_eq!(state.values().unwrap().get("pass"), Some("three"));

    // Invalidation ends the watch.
    cache.invalidate("app/db");
    assert!(tokio::time::timeout(WAIT, watch.changed()).await.unwrap().is_none());
    assert!(cache.paths().is_empty());
}

#[tokio::test]
async fn revoking_a_policy_drops_the_cached_values_within_one_interval() {
    let sys = start().await;
    let pilot = client(&sys, "pilot-superuser").await;
    pilot.put_secret("app/key", values(&[("k", "v")])).await.unwrap();
    pilot
        .create_policy(
            "app",
            r"^spiffe://spike\.ist/workload/app$",
            "^app/.*$",
            &[Permission::Read],
        )
        .await
        .unwrap();
    let app = client(&sys, "app").await;
    let cache = SecretCache::builder(app).refresh_interval(REFRESH).build().unwrap();
    assert_eq!(cache.get("app/key").await.unwrap().get("k"), Some("v"));
    let mut events = cache.subscribe();

    pilot.delete_policy("app").await.unwrap();
    assert!(matches!(
        next_event(&mut events).await,
        CacheEvent::Gone { reason, .. } if reason == "forbidden"
    ));
    assert!(matches!(cache.cached("app/key"), Some(SecretState::Gone)));
    assert!(matches!(cache.get("app/key").await, Err(Error::Forbidden)));
}

#[tokio::test]
async fn while_nexus_is_away_the_last_values_are_served_and_failures_reported() {
    let sys = start().await;
    let pilot = client(&sys, "pilot-superuser").await;
    pilot.put_secret("app/db", values(&[("pass", "kept")])).await.unwrap();
    let cache = SecretCache::builder(pilot).refresh_interval(REFRESH).build().unwrap();
    cache.get("app/db").await.unwrap();
    let mut events = cache.subscribe();

    let System { agent, nexus, _dir } = sys;
    nexus.shutdown().await;
    match next_event(&mut events).await {
        CacheEvent::RefreshFailed { path, error } => {
            assert_eq!(path, "app/db");
            assert!(error.contains("cannot reach"), "{error}");
            assert!(!error.contains("kept"), "values never in events: {error}");
        }
        other => panic!("expected RefreshFailed, got {other:?}"),
    }
    assert_eq!(cache.get("app/db").await.unwrap().get("pass"), Some("kept"));
    assert!(cache.refresh("app/db").await.is_err());
    drop(agent);
}

#[tokio::test]
async fn settings_are_checked_and_the_task_ends_with_the_last_clone() {
    let sys = start().await;
    let pilot = client(&sys, "pilot-superuser").await;
    let err = SecretCache::builder(pilot.clone()).refresh_interval(Duration::ZERO).build();
    assert!(err.unwrap_err().to_string().contains("at least"));

    let cache = SecretCache::new(pilot.clone()).unwrap();
    assert_eq!(cache.refresh_interval(), spike_client::cache::DEFAULT_REFRESH_INTERVAL);
    pilot.put_secret("a/b", values(&[("k", "v")])).await.unwrap();
    let mut watch = cache.watch("a/b").await.unwrap();
    let clone = cache.clone();
    drop(cache);
    // A clone keeps it alive...
    assert_eq!(clone.get("a/b").await.unwrap().get("k"), Some("v"));
    drop(clone);
    // ...and dropping the last one ends every watch.
    assert!(tokio::time::timeout(WAIT, watch.changed()).await.unwrap().is_none());

    // Outside a runtime there is no refresh task to start.
    let err = std::thread::spawn(move || SecretCache::new(pilot).map(|_| ()))
        .join()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::NoRuntime), "{err}");
}
