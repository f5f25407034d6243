//! Crash consistency under load (issue 8): concurrent writers, Nexus killed with SIGKILL at a
//! random moment, restarted, and every write it acknowledged checked — value, version order
//! and that every stored version still decrypts.
//!
//! The kill points come from a seeded generator. The seed is printed (and is in every failure
//! message); `SPIKE_E2E_SEED=<seed>` replays the same kill points and write mix (thread
//! timing still varies, so a replay is likely, not certain, to hit the same interleaving).
//!
//! What is checked after each restart, against a ledger of every write sent:
//! - every acknowledged write is stored, once, on its path, with exactly its value;
//! - a write that was in flight at the kill is either absent or exactly right;
//! - no value that was never written appears (no torn or mixed records);
//! - each path's versions are exactly `1..=latest` and none that was seen before is lost;
//! - version order respects real time: if write X was acknowledged before write Y to the
//!   same path was sent, X has the lower version;
//! - the listing holds every acknowledged path and nothing that was never written.
//!
//! New versions are read (so decrypted) as soon as they appear; every few rounds and at the
//! end, every stored version is read again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use spike_client::{Error, Spike};
use spike_core::secret::{KeeperShare, SecretValues};
use spike_e2e::{Cluster, ClusterSpec};

const READY_LIMIT: Duration = Duration::from_secs(20);
/// Writers' tasks must all return within this after the kill.
const JOIN_LIMIT: Duration = Duration::from_secs(20);
const WRITERS: usize = 4;
/// Paths each writer alone writes to.
const OWN_PATHS: usize = 4;
/// Paths every writer writes to.
const SHARED_PATHS: usize = 3;
/// Upper bound on writes per writer per round (the kill normally ends a round long before).
const MAX_WRITES_PER_ROUND: u64 = 400;
/// Every stored version is re-read this often (in rounds), and after the last round.
const FULL_SWEEP_EVERY: usize = 25;

/// xorshift64*: small, seedable, good enough to pick kill points and write mixes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `lo..hi` (`hi > lo`).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// The seed: `SPIKE_E2E_SEED`, or the clock; printed so a failure can be replayed.
fn seed(test: &str) -> u64 {
    let seed =
        std::env::var("SPIKE_E2E_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("{test}: seed {seed} (replay with SPIKE_E2E_SEED={seed})");
    seed
}

/// One write sent to Nexus, as the ledger records it.
#[derive(Debug, Clone)]
struct Sent {
    path: String,
    /// Unique across the test; the stored `id` value.
    id: String,
    /// Length of the `pad` value (varies record sizes so sled's segments fill unevenly).
    pad: usize,
    /// Logical time just before sending.
    sent: u64,
    /// Logical time just after the acknowledgement; `None` if it failed or was cut off.
    acked: Option<u64>,
}

impl Sent {
    fn values(&self) -> SecretValues {
        [("id", self.id.clone()), ("pad", pad(&self.id, self.pad))].into_iter().collect()
    }
}

/// A deterministic filler for `id` (so a value mixed from two writes is detected).
fn pad(id: &str, len: usize) -> String {
    id.chars().cycle().take(len).collect()
}

/// Exact equality of two sets of values (`SecretValues` has no `PartialEq`, on purpose).
fn same(a: &SecretValues, b: &SecretValues) -> bool {
    a.iter().eq(b.iter())
}

/// What one writer did in one round.
#[derive(Debug, Default)]
struct WriterReport {
    sent: Vec<Sent>,
    /// The first error, when it happened, and whether it was "Nexus unreachable" (the only
    /// error a kill can cause).
    error: Option<(Instant, bool, String)>,
}

/// One writer: puts to its own and the shared paths until told to stop, its `MAX_WRITES_PER_ROUND`
/// are done, or a write fails (after the kill), recording each write in the ledger's form.
async fn writer(
    client: Spike,
    w: usize,
    round: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
    clock: Arc<AtomicU64>,
) -> WriterReport {
    let mut rng = Rng::new(seed);
    let mut report = WriterReport::default();
    for n in 0..MAX_WRITES_PER_ROUND {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let path = if rng.range(0, 3) == 0 {
            format!("crash/shared/{}", rng.range(0, SHARED_PATHS as u64))
        } else {
            format!("crash/w{w}/{}", rng.range(0, OWN_PATHS as u64))
        };
        let mut sent = Sent {
            path,
            id: format!("w{w}-r{round}-n{n}"),
            pad: rng.range(0, 3000) as usize,
            sent: clock.fetch_add(1, Ordering::SeqCst),
            acked: None,
        };
        let result = client.put_secret(&sent.path, sent.values()).await;
        match result {
            Ok(()) => {
                sent.acked = Some(clock.fetch_add(1, Ordering::SeqCst));
                report.sent.push(sent);
            }
            Err(e) => {
                let unreachable = matches!(e, Error::NexusUnreachable { .. });
                report.error = Some((Instant::now(), unreachable, e.to_string()));
                report.sent.push(sent);
                break;
            }
        }
    }
    report
}

/// The test's state: the system, every write sent, and what has been seen stored.
struct Harness {
    c: Cluster,
    rng: Rng,
    seed: u64,
    clock: Arc<AtomicU64>,
    ledger: Vec<Sent>,
    /// Path -> version -> write id, as read back so far.
    seen: BTreeMap<String, BTreeMap<u64, String>>,
    /// Time spent setting up, writing, restarting, verifying and re-arming Keepers, for the
    /// summary line.
    spent: [Duration; 5],
}

impl Harness {
    async fn new(spec: ClusterSpec, seed: u64) -> Self {
        let t0 = Instant::now();
        let mut c = Cluster::new(spec).await.unwrap();
        c.start_bootstrapped(READY_LIMIT).await.unwrap();
        let mut spent = [Duration::ZERO; 5];
        spent[0] = t0.elapsed();
        Self {
            c,
            rng: Rng::new(seed),
            seed,
            clock: Arc::new(AtomicU64::new(0)),
            ledger: Vec::new(),
            seen: BTreeMap::new(),
            spent,
        }
    }

    /// Fails the test with the seed and the processes' log tails.
    fn fail(&self, what: impl std::fmt::Display) -> ! {
        let (seed, logs) = (self.seed, self.c.logs());
        panic!("{what}\n(seed {seed}: replay with SPIKE_E2E_SEED={seed})\n{logs}")
    }

    /// Starts the writers, lets them run for a random time, then kills Nexus (running
    /// `before_kill` just before) and waits for the writers to notice. Returns how many
    /// writes were acknowledged this round.
    async fn write_then_kill(
        &mut self,
        round: usize,
        before_kill: impl FnOnce(&mut Self),
    ) -> usize {
        let t0 = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let client = self.c.client("pilot-superuser").await.unwrap();
            let seed = self.rng.next();
            tasks.push(tokio::spawn(writer(
                client,
                w,
                round,
                seed,
                stop.clone(),
                self.clock.clone(),
            )));
        }
        let run_for = Duration::from_millis(self.rng.range(20, 250));
        tokio::time::sleep(run_for).await;
        before_kill(self);
        let killed_at = Instant::now();
        self.c.kill_nexus();
        stop.store(true, Ordering::SeqCst);

        let mut acked = 0;
        for task in tasks {
            let report = match tokio::time::timeout(JOIN_LIMIT, task).await {
                Ok(Ok(report)) => report,
                Ok(Err(e)) => self.fail(format!("round {round}: a writer panicked: {e}")),
                Err(_) => self.fail(format!(
                    "round {round}: a writer still runs {JOIN_LIMIT:?} after the kill (hung \
                     request?)"
                )),
            };
            if let Some((at, unreachable, e)) = &report.error {
                if *at < killed_at {
                    self.fail(format!("round {round}: a write failed while Nexus was up: {e}"));
                }
                if !unreachable {
                    self.fail(format!("round {round}: a kill cannot cause this error: {e}"));
                }
            }
            acked += report.sent.iter().filter(|s| s.acked.is_some()).count();
            self.ledger.extend(report.sent);
        }
        self.spent[1] += t0.elapsed();
        acked
    }

    /// Starts Nexus and waits until it has its root key back from the Keepers.
    async fn restart_nexus(&mut self, round: usize) {
        let t0 = Instant::now();
        self.c.start_nexus().unwrap();
        if let Err(e) = self.c.wait_ready(READY_LIMIT).await {
            self.fail(format!("round {round}: Nexus did not recover its root key: {e}"));
        }
        self.spent[2] += t0.elapsed();
    }

    /// One line on where the time went.
    fn summary(&self) -> String {
        let [setup, write, restart, verify, rearm] = self.spent;
        format!(
            "setup {setup:.1?}, writing {write:.1?}, restarting {restart:.1?}, verifying \
             {verify:.1?}, re-arming Keepers {rearm:.1?}"
        )
    }

    /// Checks the store against the ledger (see the module docs); `full` re-reads every
    /// stored version, not only those not seen before.
    async fn verify(&mut self, round: usize, full: bool) {
        let t0 = Instant::now();
        let reader = self.c.client("pilot-superuser").await.unwrap();
        let by_id: BTreeMap<&str, &Sent> = self.ledger.iter().map(|s| (s.id.as_str(), s)).collect();
        let acked_paths: BTreeSet<&str> =
            self.ledger.iter().filter(|s| s.acked.is_some()).map(|s| s.path.as_str()).collect();
        let tried_paths: BTreeSet<&str> = self.ledger.iter().map(|s| s.path.as_str()).collect();

        let listed = match reader.list_secrets().await {
            Ok(list) => list,
            Err(e) => self.fail(format!("round {round}: list failed: {e}")),
        };
        let listed: BTreeSet<String> =
            listed.into_iter().filter(|p| p.starts_with("crash/")).collect();
        for path in &acked_paths {
            if !listed.contains(*path) {
                self.fail(format!("round {round}: acknowledged path {path} is not listed"));
            }
        }
        for path in &listed {
            if !tried_paths.contains(path.as_str()) {
                self.fail(format!("round {round}: listed path {path} was never written"));
            }
        }

        let mut seen = std::mem::take(&mut self.seen);
        // Write id -> (path, version) of everything stored now.
        let mut stored: BTreeMap<String, (String, u64)> = BTreeMap::new();
        for path in &listed {
            let meta = match reader.secret_metadata(path).await {
                Ok(meta) => meta,
                Err(e) => self.fail(format!("round {round}: metadata of {path}: {e}")),
            };
            let versions = meta.versions.unwrap_or_default();
            let latest = versions.keys().next_back().copied().unwrap_or(0);
            let numbers: Vec<u64> = versions.keys().copied().collect();
            if numbers != (1..=latest).collect::<Vec<_>>() {
                self.fail(format!(
                    "round {round}: {path} has versions {numbers:?}, not 1..={latest}"
                ));
            }
            if meta.metadata.current_version != latest {
                self.fail(format!(
                    "round {round}: {path}: current version {} but latest stored {latest}",
                    meta.metadata.current_version
                ));
            }
            let known = seen.entry(path.clone()).or_default();
            if let Some((&v, _)) = known.iter().find(|(v, _)| !versions.contains_key(v)) {
                self.fail(format!("round {round}: {path} lost version {v}, seen before"));
            }
            for &version in versions.keys() {
                let id = match known.get(&version) {
                    Some(id) if !full => id.clone(),
                    earlier => {
                        let got = match reader.get_secret_version(path, version).await {
                            Ok(values) => values,
                            Err(e) => self.fail(format!(
                                "round {round}: {path} version {version} unreadable: {e}"
                            )),
                        };
                        let Some(id) = got.get("id").map(str::to_owned) else {
                            self.fail(format!("round {round}: {path} v{version} has no id"));
                        };
                        let Some(sent) = by_id.get(id.as_str()) else {
                            self.fail(format!(
                                "round {round}: {path} v{version} holds {id:?}, never written"
                            ));
                        };
                        if sent.path != *path || !same(&got, &sent.values()) {
                            self.fail(format!(
                                "round {round}: {path} v{version} does not hold write {id} \
                                 exactly (written to {}, pad {} bytes, got {} keys)",
                                sent.path,
                                sent.pad,
                                got.len()
                            ));
                        }
                        if let Some(before) = earlier
                            && *before != id
                        {
                            self.fail(format!(
                                "round {round}: {path} v{version} held {before}, now {id}"
                            ));
                        }
                        id
                    }
                };
                known.insert(version, id.clone());
                if let Some((other, v)) = stored.insert(id.clone(), (path.clone(), version)) {
                    self.fail(format!(
                        "round {round}: write {id} stored twice ({other} v{v}, {path} v{version})"
                    ));
                }
            }
        }
        self.seen = seen;

        for sent in self.ledger.iter().filter(|s| s.acked.is_some()) {
            if !stored.contains_key(&sent.id) {
                self.fail(format!(
                    "round {round}: acknowledged write {} to {} is missing after the restart",
                    sent.id, sent.path
                ));
            }
        }
        // Real-time order: scanning each path from the highest version down, a write sent
        // after an acknowledgement seen at a higher version is a reordering.
        for (path, versions) in &self.seen {
            let mut earliest_ack_above = (u64::MAX, String::new());
            for (version, id) in versions.iter().rev() {
                let sent = by_id[id.as_str()];
                if earliest_ack_above.0 < sent.sent {
                    self.fail(format!(
                        "round {round}: {path}: write {id} (v{version}) was sent after write \
                         {} was acknowledged, yet has a lower version",
                        earliest_ack_above.1
                    ));
                }
                if let Some(acked) = sent.acked
                    && acked < earliest_ack_above.0
                {
                    earliest_ack_above = (acked, id.clone());
                }
            }
        }
        self.spent[3] += t0.elapsed();
    }
}

fn crash_spec(update_interval: Duration) -> ClusterSpec {
    let nexus_env = [
        // Keep every version, so every acknowledged write stays checkable.
        ("SPIKE_NEXUS_MAX_SECRET_VERSIONS", "10000"),
        // One identity does all the writing and checking; the limit is not under test here.
        ("SPIKE_NEXUS_RATE_LIMIT", "1000000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    ClusterSpec {
        keepers: 5,
        threshold: 3,
        update_interval,
        log_level: "warn".into(),
        nexus_env,
        ..ClusterSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexus_killed_mid_write_keeps_every_acknowledged_write_across_50_restarts() {
    const ROUNDS: usize = 50;
    let seed = seed("crash");
    let started = Instant::now();
    let mut h = Harness::new(crash_spec(Duration::from_secs(5)), seed).await;
    let mut acked = 0;
    for round in 0..ROUNDS {
        acked += h.write_then_kill(round, |_| {}).await;
        h.restart_nexus(round).await;
        h.verify(round, round % FULL_SWEEP_EVERY == FULL_SWEEP_EVERY - 1 || round == ROUNDS - 1)
            .await;
    }
    let versions: usize = h.seen.values().map(BTreeMap::len).sum();
    eprintln!(
        "crash: {ROUNDS} kills, {acked} acknowledged writes, {} sent, {versions} versions \
         stored, in {:.1?} ({})",
        h.ledger.len(),
        started.elapsed(),
        h.summary()
    );
    // A run where (almost) nothing was acknowledged would check nothing.
    assert!(
        acked >= ROUNDS * 2,
        "only {acked} writes acknowledged in {ROUNDS} rounds (seed {seed})"
    );
}

/// Waits (bounded) until every Keeper holds its shard again.
async fn wait_all_armed(h: &mut Harness, shares: &[KeeperShare], limit: Duration) {
    let t0 = Instant::now();
    let reader = h.c.keeper_client("nexus").await.unwrap();
    let started = Instant::now();
    for (i, expected) in shares.iter().enumerate() {
        let n = i + 1;
        loop {
            match reader.shard(&h.c.keeper_url(n), n as u8).await {
                Ok(Some(got)) => {
                    if got.expose_secret() != expected.expose_secret() {
                        h.fail(format!("keeper {n} was re-armed with the wrong shard"));
                    }
                    break;
                }
                Ok(None) | Err(_) if started.elapsed() < limit => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => h.fail(format!(
                    "keeper {n} not re-armed within {limit:?}: {:?}",
                    other.map(|s| s.is_some())
                )),
            }
        }
    }
    h.spent[4] += t0.elapsed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexus_and_two_of_five_keepers_killed_mid_write_lose_nothing_acknowledged() {
    const ROUNDS: usize = 12;
    let seed = seed("crash-keepers");
    let started = Instant::now();
    // Nexus re-arms an empty Keeper within a second, so the next round can kill two others.
    let mut h = Harness::new(crash_spec(Duration::from_millis(500)), seed).await;
    let shares = match h.c.client("pilot-recover").await.unwrap().recover().await {
        Ok(shares) => shares,
        Err(e) => h.fail(format!("recover: {e}")),
    };
    let mut acked = 0;
    for round in 0..ROUNDS {
        // Two distinct Keepers (1-based) die at the kill point, together with Nexus.
        let first = h.rng.range(1, 6) as usize;
        let second = (first + h.rng.range(0, 4) as usize) % 5 + 1;
        let empty_before_restart = h.rng.range(0, 2) == 0;
        acked += h
            .write_then_kill(round, |h| {
                h.c.kill_keeper(first);
                h.c.kill_keeper(second);
            })
            .await;
        // Either they come back (empty) while Nexus is down, or only after it recovered
        // from the three survivors; both times three shards are there to recover from.
        if empty_before_restart {
            h.c.start_keeper(first).await.unwrap();
            h.c.start_keeper(second).await.unwrap();
        }
        h.restart_nexus(round).await;
        h.verify(round, round == ROUNDS - 1).await;
        if !empty_before_restart {
            h.c.start_keeper(first).await.unwrap();
            h.c.start_keeper(second).await.unwrap();
        }
        wait_all_armed(&mut h, &shares, Duration::from_secs(10)).await;
    }
    eprintln!(
        "crash-keepers: {ROUNDS} rounds, {acked} acknowledged writes, {} sent, in {:.1?} ({})",
        h.ledger.len(),
        started.elapsed(),
        h.summary()
    );
    assert!(
        acked >= ROUNDS * 2,
        "only {acked} writes acknowledged in {ROUNDS} rounds (seed {seed})"
    );
}
