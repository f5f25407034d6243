//! Several Nexus replicas on one real PostgreSQL server (started by the test; see
//! `spike_e2e::postgres`): shared versions, keys and policies, concurrent writers through
//! different replicas, a replica killed mid-write, leadership failover for Keeper re-arming,
//! and storage rollback detection with a restored `pg_dump`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spike_client::{Error, Spike};
use spike_core::policy::Permission;
use spike_core::secret::SecretValues;
use spike_e2e::postgres::{PgServer, Replica, ReplicaSystem, start_replica};
use spike_e2e::{Cluster, ClusterSpec};
use tokio::sync::Mutex;

const WORKLOAD: &str = "spiffe://spike.ist/apps/billing";

fn one(v: &str) -> SecretValues {
    [("value", v)].into_iter().collect()
}

fn spec() -> ClusterSpec {
    ClusterSpec {
        keepers: 3,
        threshold: 2,
        update_interval: Duration::from_secs(2),
        extra_identities: vec![("billing".into(), WORKLOAD.into())],
        nexus_env: [("SPIKE_NEXUS_MAX_SECRET_VERSIONS".to_owned(), "1000".to_owned())]
            .into_iter()
            .collect(),
        ..ClusterSpec::default()
    }
}

/// A PostgreSQL server, Keepers and `n` replicas, bootstrapped and ready.
async fn system(n: usize) -> (PgServer, Cluster, Vec<Replica>, String) {
    let sys = ReplicaSystem::start(spec(), n).await.unwrap();
    (sys.pg, sys.cluster, sys.replicas, sys.dsn)
}

async fn clients(cluster: &Cluster, replicas: &[Replica], identity: &str) -> Vec<Spike> {
    let mut out = Vec::new();
    for r in replicas {
        out.push(r.client(cluster, identity).await.unwrap());
    }
    out
}

/// Polls `check` (bounded) until it returns true.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within {limit:?}");
}

/// Every version of `path` as (version → value), read through `client`.
async fn all_versions(client: &Spike, path: &str) -> BTreeMap<u64, String> {
    let meta = client.secret_metadata(path).await.unwrap();
    let mut out = BTreeMap::new();
    for version in meta.versions.unwrap_or_default().keys() {
        let values = client.get_secret_version(path, *version).await.unwrap();
        out.insert(*version, values.get("value").unwrap_or_default().to_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_secrets_versions_and_policies_and_survive_a_killed_replica() {
    let (_pg, cluster, mut replicas, _dsn) = system(3).await;
    let admins = clients(&cluster, &replicas, "pilot-superuser").await;

    // Written through one replica, read through the others at once.
    admins[0].put_secret("shared/greeting", one("hello")).await.unwrap();
    for admin in &admins[1..] {
        assert_eq!(admin.get_secret("shared/greeting").await.unwrap().get("value"), Some("hello"));
    }
    // The other replicas would keep the old root key: a root-key rotation is refused here.
    let refused = admins[0].rotate_root_key().await.unwrap_err();
    assert!(
        matches!(&refused, spike_client::Error::BadRequest(code) if code == "root_rotation_needs_a_single_nexus"),
        "{refused:?}"
    );
    assert_eq!(admins[1].get_secret("shared/greeting").await.unwrap().get("value"), Some("hello"));

    // Concurrent writers through all three replicas: the same path and distinct paths.
    const WRITERS_PER_REPLICA: usize = 2;
    const PUTS: usize = 12;
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let mut tasks = Vec::new();
    for (r, admin) in admins.iter().enumerate() {
        for w in 0..WRITERS_PER_REPLICA {
            let (admin, acknowledged) = (admin.clone(), acknowledged.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..PUTS {
                    let value = format!("r{r}-w{w}-{i}");
                    admin.put_secret("shared/counter", one(&value)).await.unwrap();
                    acknowledged.lock().await.insert(value.clone());
                    admin.put_secret(&format!("own/r{r}w{w}/s{i}"), one(&value)).await.unwrap();
                }
            }));
        }
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t).await.unwrap().unwrap();
    }
    let versions = all_versions(&admins[2], "shared/counter").await;
    let total = 3 * WRITERS_PER_REPLICA * PUTS;
    assert_eq!(versions.len(), total, "one version per acknowledged write");
    assert_eq!(
        versions.keys().copied().collect::<Vec<_>>(),
        (1..=total as u64).collect::<Vec<_>>()
    );
    let values: BTreeSet<String> = versions.values().cloned().collect();
    assert_eq!(values, *acknowledged.lock().await, "no write lost or applied twice");
    let listed: BTreeSet<String> = admins[1].list_secrets().await.unwrap().into_iter().collect();
    assert_eq!(listed.iter().filter(|p| p.starts_with("own/")).count(), total);

    // A policy created through one replica applies on another within the refresh interval,
    // and its deletion through a third replica takes the access away again.
    admins[0].put_secret("apps/billing/db", one("s3cr3t")).await.unwrap();
    let billing_b = replicas[1].client(&cluster, "billing").await.unwrap();
    assert!(matches!(billing_b.get_secret("apps/billing/db").await, Err(Error::Forbidden)));
    admins[0]
        .create_policy("billing-read", WORKLOAD, "^apps/billing/.*$", &[Permission::Read])
        .await
        .unwrap();
    eventually("policy created on A applies on B", Duration::from_secs(10), || async {
        billing_b.get_secret("apps/billing/db").await.is_ok()
    })
    .await;
    admins[2].delete_policy("billing-read").await.unwrap();
    eventually("policy deleted on C stops applying on B", Duration::from_secs(10), || async {
        matches!(billing_b.get_secret("apps/billing/db").await, Err(Error::Forbidden))
    })
    .await;

    // Kill one replica mid-write: writes through it fail or land whole; versions stay
    // consecutive and every acknowledged write is present exactly once.
    let attempted = Arc::new(Mutex::new(BTreeSet::new()));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut tasks = Vec::new();
    for (r, admin) in admins.iter().enumerate() {
        let (admin, attempted, acked) = (admin.clone(), attempted.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                let value = format!("k{r}-{i}");
                attempted.lock().await.insert(value.clone());
                if admin.put_secret("shared/killed", one(&value)).await.is_ok() {
                    acked.lock().await.insert(value);
                } else if r != 1 {
                    panic!("a write through a live replica failed");
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    replicas[1].proc.kill9();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t).await.unwrap().unwrap();
    }
    let versions = all_versions(&admins[0], "shared/killed").await;
    let n = versions.len() as u64;
    assert_eq!(versions.keys().copied().collect::<Vec<_>>(), (1..=n).collect::<Vec<_>>());
    let values: BTreeSet<String> = versions.values().cloned().collect();
    assert_eq!(values.len(), versions.len(), "a value was stored twice");
    let acked = acked.lock().await.clone();
    assert!(acked.is_subset(&values), "an acknowledged write is missing");
    assert!(values.is_subset(&*attempted.lock().await));
    assert!(acked.iter().any(|v| v.starts_with("k1-")), "the killed replica acked nothing");
    assert!(acked.len() >= 80, "live replicas acked {} writes", acked.len());

    // The survivors still agree, and a restarted replica catches up at once.
    let port: u16 = replicas[1].url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap();
    let dsn = _dsn;
    replicas[1] = start_replica(&cluster, "nexus-b2", port, &dsn).unwrap();
    replicas[1].wait_ready(&cluster, Duration::from_secs(30)).await.unwrap();
    let b = replicas[1].client(&cluster, "pilot-superuser").await.unwrap();
    assert_eq!(all_versions(&b, "shared/killed").await, versions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_rearms_keepers_and_another_replica_takes_over_when_it_dies() {
    let (_pg, mut cluster, mut replicas, _dsn) = system(2).await;
    let leader_of = |replicas: &[Replica]| -> Vec<usize> {
        replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                let log = std::fs::read_to_string(r.proc.log()).unwrap_or_default();
                log.lines()
                    .rev()
                    .find(|l| l.contains("leadership"))
                    .is_some_and(|l| l.contains("leading=true"))
            })
            .map(|(i, _)| i)
            .collect()
    };
    let started = Instant::now();
    while leader_of(&replicas).is_empty() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leaders = leader_of(&replicas);
    assert_eq!(leaders.len(), 1, "exactly one leader: {leaders:?}");
    let leader = leaders[0];

    // Kill the leader and empty Keeper 1: the other replica must take over and re-arm it.
    replicas[leader].proc.kill9();
    cluster.kill_keeper(1);
    cluster.start_keeper(1).await.unwrap();
    let keepers = cluster.keeper_client("nexus").await.unwrap();
    let url = cluster.keeper_url(1);
    eventually("the surviving replica re-arms Keeper 1", Duration::from_secs(30), || async {
        matches!(keepers.shard(&url, 1).await, Ok(Some(_)))
    })
    .await;
    let survivor = 1 - leader;
    assert_eq!(leader_of(&replicas[survivor..=survivor]), vec![0], "survivor now leads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restored_from_an_old_dump_is_detected_and_not_served() {
    let (pg, cluster, mut replicas, dsn) = system(1).await;
    let admin = replicas[0].client(&cluster, "pilot-superuser").await.unwrap();
    let keepers = cluster.keeper_client("nexus").await.unwrap();
    let checkpoint = |keepers: &spike_server::keeper::KeeperClient, cluster: &Cluster| {
        let (keepers, urls) = (keepers.clone(), cluster.keeper_urls());
        async move {
            let mut highest = 0;
            for url in urls {
                if let Ok(Some(cp)) = keepers.checkpoint(&url, None).await {
                    highest = highest.max(cp.counter);
                }
            }
            highest
        }
    };

    admin.put_secret("app/config", one("v1")).await.unwrap();
    let counter = |pg: &PgServer| -> u64 {
        pg.sql("spike", "SELECT writes FROM spike_write_counter").unwrap().trim().parse().unwrap()
    };
    let at_dump = counter(&pg);
    eventually("Keepers hold a checkpoint of the first write", Duration::from_secs(10), || {
        let f = checkpoint(&keepers, &cluster);
        async move { f.await >= at_dump }
    })
    .await;
    let dump = pg.dump("spike", "before-revocation").unwrap();

    // Later writes (think: a rotated password, a revoked policy) get checkpointed too.
    admin.put_secret("app/config", one("v2-rotated")).await.unwrap();
    let after = counter(&pg);
    assert!(after > at_dump);
    eventually("Keepers hold a checkpoint of the later write", Duration::from_secs(10), || {
        let f = checkpoint(&keepers, &cluster);
        async move { f.await >= after }
    })
    .await;

    // The attacker (or a careless operator) restores the old dump and restarts Nexus.
    replicas[0].proc.kill9();
    pg.restore("spike", &dump).unwrap();
    assert_eq!(counter(&pg), at_dump, "the restore really went back in time");
    let port: u16 = replicas[0].url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap();
    replicas[0] = start_replica(&cluster, "nexus-a2", port, &dsn).unwrap();
    let started = Instant::now();
    let mut last = (0, String::new());
    while started.elapsed() < Duration::from_secs(20) {
        last = replicas[0].readyz(&cluster).await.unwrap_or((0, String::new()));
        if last.1.contains("rolled back") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last.0, 503, "a rolled-back store must not be served: {last:?}");
    assert!(last.1.contains("rolled back"), "{last:?}\n{}", replicas[0].proc.log_tail(30));
    let admin = replicas[0].client(&cluster, "pilot-superuser").await.unwrap();
    let refused = admin.get_secret("app/config").await;
    assert!(matches!(refused, Err(Error::NotReady)), "{refused:?}");
    // And it stays refused: the old value is never handed out.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(matches!(admin.get_secret("app/config").await, Err(Error::NotReady)));
}
