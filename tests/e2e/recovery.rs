//! Keepers, Bootstrap and automatic recovery under faults (issue 5), with real processes.
//!
//! Every test builds its own system — a dev agent in the test process, Keeper and Nexus
//! processes on fixed loopback ports, a sled store in a temp dir — and kills with SIGKILL, so
//! nothing gets a chance to flush or hand anything over on the way down.

use std::time::{Duration, Instant};

use spike_client::{Error, Spike};
use spike_core::secret::{KeeperShare, SecretValues};
use spike_e2e::{Cluster, ClusterSpec};
use spike_server::keeper::KeeperError;

const READY_LIMIT: Duration = Duration::from_secs(20);

fn values(i: usize, round: usize) -> SecretValues {
    [("value", format!("secret-{i}-round-{round}"))].into_iter().collect()
}

/// Starts every Keeper and Nexus, bootstraps, and waits until Nexus is ready.
async fn bootstrapped(spec: ClusterSpec) -> Cluster {
    let mut c = Cluster::new(spec).await.unwrap();
    c.start_bootstrapped(READY_LIMIT).await.unwrap();
    c
}

/// Writes `n` secrets (each acknowledged by Nexus before the next is sent).
async fn write_secrets(pilot: &Spike, n: usize, round: usize) {
    for i in 0..n {
        pilot.put_secret(&format!("app/s{i}"), values(i, round)).await.unwrap();
    }
}

/// Checks that the `n` secrets of `round` read back.
async fn assert_secrets(c: &Cluster, n: usize, round: usize) {
    let pilot = c.client("pilot-superuser").await.unwrap();
    for i in 0..n {
        let got = pilot.get_secret(&format!("app/s{i}")).await.unwrap_or_else(|e| {
            panic!("secret app/s{i} unreadable after restart: {e}\n{}", c.logs())
        });
        assert_eq!(got.get("value"), Some(values(i, round).get("value").unwrap()), "app/s{i}");
    }
}

/// Fetches Keeper `n`'s shard as Nexus would.
async fn keeper_shard(c: &Cluster, n: usize) -> Option<KeeperShare> {
    let reader = c.keeper_client("nexus").await.unwrap();
    reader.shard(&c.keeper_url(n), n as u8).await.unwrap()
}

/// Waits (bounded) until Keeper `n` holds `expected`; returns how long that took.
async fn wait_armed(c: &Cluster, n: usize, expected: &KeeperShare, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if let Some(got) = keeper_shard(c, n).await {
            assert_eq!(got.expose_secret(), expected.expose_secret(), "keeper {n} wrong shard");
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "keeper {n} not re-armed in {limit:?}\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_nexus_recovers_unattended_and_keeps_every_acknowledged_secret() {
    let mut c = bootstrapped(ClusterSpec::default()).await;
    for round in 0..3 {
        let pilot = c.client("pilot-superuser").await.unwrap();
        write_secrets(&pilot, 20, round).await;
        drop(pilot);
        c.kill_nexus();
        c.start_nexus().unwrap();
        let waited = c.wait_ready(READY_LIMIT).await.unwrap();
        assert!(waited < Duration::from_secs(5), "recovery took {waited:?}");
        assert_secrets(&c, 20, round).await;
    }

    // Bootstrap refuses to deal a second root key: it changes nothing and says why.
    let before = keeper_shard(&c, 1).await.unwrap();
    let out = c.bootstrap(&[]).await.unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("already bootstrapped"), "{out:?}");
    let after = keeper_shard(&c, 1).await.unwrap();
    assert_eq!(before.expose_secret(), after.expose_secret(), "bootstrap re-dealt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_nexus_recovers_with_one_keeper_dead() {
    let mut c = bootstrapped(ClusterSpec::default()).await;
    let pilot = c.client("pilot-superuser").await.unwrap();
    write_secrets(&pilot, 10, 0).await;
    drop(pilot);
    c.kill_keeper(3);
    c.kill_nexus();
    c.start_nexus().unwrap();
    c.wait_ready(READY_LIMIT).await.unwrap();
    assert_secrets(&c, 10, 0).await;

    // The dead Keeper comes back empty and is re-armed without anyone asking.
    let expected = c.client("pilot-recover").await.unwrap().recover().await.unwrap();
    c.start_keeper(3).await.unwrap();
    wait_armed(&c, 3, &expected[2], Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexus_without_threshold_keepers_stays_not_ready_until_operator_restore() {
    let mut c = bootstrapped(ClusterSpec::default()).await;
    let pilot = c.client("pilot-superuser").await.unwrap();
    write_secrets(&pilot, 10, 0).await;
    drop(pilot);
    // Break the glass while healthy: the shards go to files, offline in real life.
    let recovery_dir = c.dir().join("recover");
    let shares = c.client("pilot-recover").await.unwrap().recover().await.unwrap();
    spike_client::recovery::write_shards(&recovery_dir, &shares).unwrap();

    // Nexus and two Keepers die; the two Keepers come back empty.
    c.kill_nexus();
    c.kill_keeper(1);
    c.kill_keeper(2);
    c.start_keeper(1).await.unwrap();
    c.start_keeper(2).await.unwrap();
    c.start_nexus().unwrap();

    // Not ready, with a status that says why, for a while; no crash, no partial key.
    let started = Instant::now();
    let mut last = (0, String::new());
    while started.elapsed() < Duration::from_millis(1500) {
        last = c.readyz().await.unwrap_or((0, String::new()));
        assert_ne!(last.0, 200, "Nexus became ready without enough shards\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last.0, 503, "{last:?}");
    assert!(
        last.1.contains("waiting for Keepers: 1 of 2 needed shards received"),
        "unclear status: {}",
        last.1
    );
    assert!(last.1.contains("Keeper 1 holds no shard"), "{}", last.1);
    assert!(last.1.contains("spike operator restore"), "{}", last.1);
    assert!(c.nexus_running(), "Nexus exited\n{}", c.logs());
    let pilot = c.client("pilot-superuser").await.unwrap();
    assert!(matches!(pilot.get_secret("app/s0").await, Err(Error::NotReady)));

    // Operator restore, one shard at a time, from the files.
    let restorer = c.client("pilot-restore").await.unwrap();
    let files = spike_client::recovery::read_shards(&recovery_dir).unwrap();
    let first = restorer.restore(&files[0]).await.unwrap();
    assert_eq!((first.collected, first.remaining, first.restored), (1, 1, false));
    let second = restorer.restore(&files[1]).await.unwrap();
    assert!(second.restored, "{second:?}");
    c.wait_ready(Duration::from_secs(2)).await.unwrap();
    assert_secrets(&c, 10, 0).await;

    // The empty Keepers are re-armed right after the key is back.
    wait_armed(&c, 1, &shares[0], Duration::from_secs(5)).await;
    wait_armed(&c, 2, &shares[1], Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_keeper_is_rearmed_within_the_update_interval() {
    let interval = Duration::from_secs(1);
    let spec = ClusterSpec { update_interval: interval, ..ClusterSpec::default() };
    let mut c = bootstrapped(spec).await;
    let shares = c.client("pilot-recover").await.unwrap().recover().await.unwrap();
    for _ in 0..2 {
        c.kill_keeper(2);
        c.start_keeper(2).await.unwrap();
        let took = wait_armed(&c, 2, &shares[1], interval * 5).await;
        assert!(took <= interval, "re-armed after {took:?}, not within {interval:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_loss_is_undone_by_operator_restore_from_recovery_files() {
    let mut c = bootstrapped(ClusterSpec::default()).await;
    let pilot = c.client("pilot-superuser").await.unwrap();
    write_secrets(&pilot, 10, 0).await;
    drop(pilot);
    let recovery_dir = c.dir().join("recover");
    let shares = c.client("pilot-recover").await.unwrap().recover().await.unwrap();
    let files = spike_client::recovery::write_shards(&recovery_dir, &shares).unwrap();
    assert_eq!(files.len(), 3);

    // Everything dies; the Keepers come back empty.
    c.kill_nexus();
    for n in 1..=3 {
        c.kill_keeper(n);
    }
    c.start_keepers().await.unwrap();
    c.start_nexus().unwrap();
    let restorer = c.client("pilot-restore").await.unwrap();
    // Nexus listens, is not ready, and says it got nothing from the Keepers.
    let started = Instant::now();
    loop {
        let answer = c.readyz().await;
        if let Ok((status, text)) = &answer {
            assert_eq!(*status, 503, "{text}");
            if text.contains("0 of 2 needed shards") {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{answer:?}\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let shards = spike_client::recovery::read_shards(&recovery_dir).unwrap();
    // "1 of 2 received"; the same shard again is not counted twice.
    let s = restorer.restore(&shards[0]).await.unwrap();
    assert_eq!((s.collected, s.remaining, s.restored), (1, 1, false));
    let s = restorer.restore(&shards[0]).await.unwrap();
    assert_eq!((s.collected, s.restored), (1, false));
    // A wrong shard does not unseal, and the good one is kept.
    let wrong = KeeperShare::new(2, &mut [7u8; 32]);
    let s = restorer.restore(&wrong).await.unwrap();
    assert!(!s.restored, "a wrong shard unsealed Nexus");
    assert_eq!(c.readyz().await.unwrap().0, 503);
    // The true shard 2 now conflicts with the wrong one received first, which is kept...
    assert!(matches!(restorer.restore(&shards[1]).await, Err(Error::BadRequest(_))));
    // ...so shard 3 completes the set with the good shard 1.
    let s = restorer.restore(&shards[2]).await.unwrap();
    assert!(s.restored, "{s:?}");
    c.wait_ready(Duration::from_secs(2)).await.unwrap();
    assert_secrets(&c, 10, 0).await;
    for n in 1..=3 {
        wait_armed(&c, n, &shares[n - 1], Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeper_refuses_its_shard_to_anyone_but_nexus() {
    let mut c = Cluster::new(ClusterSpec { keepers: 1, threshold: 1, ..ClusterSpec::default() })
        .await
        .unwrap();
    c.start_keeper(1).await.unwrap();
    let url = c.keeper_url(1);
    let share = KeeperShare::new(1, &mut [3u8; 32]);
    c.keeper_client("bootstrap").await.unwrap().contribute(&url, &share).await.unwrap();

    // Bootstrap may contribute but not read: 401.
    let bootstrap = c.keeper_client("bootstrap").await.unwrap();
    assert!(
        matches!(bootstrap.shard(&url, 1).await, Err(KeeperError::Refused { status: 401, .. })),
        "bootstrap read a shard"
    );
    // Every other identity is refused at the TLS handshake.
    for who in ["pilot-superuser", "pilot-recover", "keeper", "lite-workload"] {
        let other = c.keeper_client(who).await.unwrap();
        let got = other.shard(&url, 1).await;
        assert!(matches!(got, Err(KeeperError::Unreachable { .. })), "{who} got {got:?}");
    }
    // Nexus gets it.
    let nexus = c.keeper_client("nexus").await.unwrap();
    let got = nexus.shard(&url, 1).await.unwrap().unwrap();
    assert_eq!(got.expose_secret(), &[3u8; 32]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_reports_a_missing_keeper_and_the_system_heals_when_it_returns() {
    let mut c = Cluster::new(ClusterSpec::default()).await.unwrap();
    c.start_keeper(1).await.unwrap();
    c.start_keeper(2).await.unwrap();
    c.start_nexus().unwrap();
    let out = c.bootstrap(&[]).await.unwrap();
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("only 2 of 3 Keepers took their shard"), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("Keeper 3 ({})", c.keeper_url(3))), "{}", out.stderr);

    // Two shards meet the threshold: Nexus initialised from them, and re-arms Keeper 3 once
    // it is up; Bootstrap then sees a bootstrapped system.
    c.wait_ready(READY_LIMIT).await.unwrap();
    c.start_keeper(3).await.unwrap();
    let shares = c.client("pilot-recover").await.unwrap().recover().await.unwrap();
    wait_armed(&c, 3, &shares[2], Duration::from_secs(10)).await;
    let out = c.bootstrap(&[]).await.unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("already bootstrapped"), "{out:?}");
}

/// `spike operator rotate --root-key` (issue 5): a new root key, re-split and sent to every
/// Keeper; after a SIGKILL Nexus recovers with the new shards alone; secrets and ciphertexts
/// from before the rotation still open; recovery shards exported before it no longer unseal.
/// With a Keeper down the rotation is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_key_rotation_reaches_every_keeper_and_survives_a_kill() {
    let mut c = bootstrapped(ClusterSpec::default()).await;
    let pilot = c.client("pilot-superuser").await.unwrap();
    write_secrets(&pilot, 10, 0).await;
    let sealed = pilot.encrypt(b"issued before the rotation").await.unwrap();
    let old_shares = c.client("pilot-recover").await.unwrap().recover().await.unwrap();

    // A Keeper is down: refused, nothing changes (the others get their old shards back).
    c.kill_keeper(3);
    let refused = pilot.rotate_root_key().await.unwrap_err();
    assert!(
        matches!(&refused, Error::Server { status: 502, code } if code == "root_rotation_aborted"),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("was not rotated"), "{refused}");
    for n in 1..=2 {
        let held = keeper_shard(&c, n).await.unwrap();
        assert_eq!(held.expose_secret(), old_shares[n - 1].expose_secret(), "Keeper {n}");
    }
    c.start_keeper(3).await.unwrap();
    wait_armed(&c, 3, &old_shares[2], Duration::from_secs(10)).await;

    // Every Keeper up: rotated, and every Keeper holds a new shard at once.
    assert_eq!(pilot.rotate_root_key().await.unwrap(), 3);
    let new_shares = c.client("pilot-recover").await.unwrap().recover().await.unwrap();
    for n in 1..=3 {
        let held = keeper_shard(&c, n).await.unwrap();
        assert_eq!(held.expose_secret(), new_shares[n - 1].expose_secret(), "Keeper {n}");
        assert_ne!(held.expose_secret(), old_shares[n - 1].expose_secret(), "Keeper {n}");
    }
    // Writes go on under the new key.
    write_secrets(&pilot, 10, 1).await;
    drop(pilot);

    // SIGKILL: the Keepers' new shards alone bring Nexus back with everything.
    c.kill_nexus();
    c.start_nexus().unwrap();
    c.wait_ready(READY_LIMIT).await.unwrap();
    assert_secrets(&c, 10, 1).await;
    let pilot = c.client("pilot-superuser").await.unwrap();
    let opened = pilot.decrypt(&sealed).await.unwrap();
    assert_eq!(&opened[..], b"issued before the rotation");

    // The old recovery shards no longer unseal: a total loss needs the new ones.
    c.kill_nexus();
    for n in 1..=3 {
        c.kill_keeper(n);
    }
    c.start_keepers().await.unwrap();
    c.start_nexus().unwrap();
    wait_not_ready(&c).await;
    let restorer = c.client("pilot-restore").await.unwrap();
    let restore_all = |shares: &[spike_core::secret::KeeperShare]| {
        shares.iter().map(|s| s.duplicate()).collect::<Vec<_>>()
    };
    let mut restored = false;
    for share in restore_all(&old_shares) {
        restored |= restorer.restore(&share).await.unwrap().restored;
    }
    assert!(!restored, "recovery shards from before the rotation unsealed Nexus");
    assert_eq!(c.readyz().await.unwrap().0, 503);
    c.kill_nexus();
    c.start_nexus().unwrap();
    wait_not_ready(&c).await;
    let restorer = c.client("pilot-restore").await.unwrap();
    for share in restore_all(&new_shares) {
        restored |= restorer.restore(&share).await.unwrap().restored;
    }
    assert!(restored, "the new recovery shards did not unseal Nexus");
    c.wait_ready(Duration::from_secs(5)).await.unwrap();
    assert_secrets(&c, 10, 1).await;
}

/// Waits (bounded) until a restarted Nexus answers `/readyz` with 503 (listening, sealed).
async fn wait_not_ready(c: &Cluster) {
    let started = Instant::now();
    loop {
        if let Ok((503, _)) = c.readyz().await {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "Nexus did not listen\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
