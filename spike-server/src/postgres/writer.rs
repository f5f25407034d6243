//! Group commit: the batches that arrive while earlier ones wait for their WAL flush are
//! committed together, in one transaction and one round trip, so one flush acknowledges many
//! commits.
//!
//! Why: PostgreSQL makes a commit durable with one WAL flush (about 3 ms on the test machine's
//! disk), during which the connection that sent it waits. With one commit per connection,
//! throughput is capped at connections ÷ flush time (measured: every pooled connection waiting
//! on `WALWrite` under PUT load). A few writer tasks take the queued batches instead, each
//! group in one transaction:
//!
//! 1. `BEGIN ISOLATION LEVEL READ COMMITTED`;
//! 2. the advisory locks of every key of every batch in the group, in sorted key order (so
//!    groups on other connections and other replicas can never deadlock with this one);
//! 3. one [`super::APPLY`] per batch, in arrival order: each checks its batch's preconditions
//!    in a snapshot that includes the writes of the batches before it, and writes and counts
//!    only if they hold;
//! 4. `COMMIT`.
//!
//! A batch is acknowledged (`Applied` or `Conflict`) only after the `COMMIT` succeeded. If any
//! statement fails, PostgreSQL aborts the transaction: nothing of the group is written and
//! every batch in it gets the error (fail-closed; the caller's retry is a fresh commit).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use spike_core::store::backend::{Batch, Commit, Write};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;

use super::pool::Pool;
use super::{PgError, WRITE_SHARDS, column, is_conflict, query};

/// Most batches one transaction carries.
const MAX_GROUP: usize = 64;

/// One batch, owned (it crosses to a writer task), in the shape [`super::APPLY`] takes.
pub(super) struct Job {
    /// Every key the batch reads or writes.
    keys: Vec<String>,
    expected_keys: Vec<String>,
    expected_values: Vec<Option<Vec<u8>>>,
    put_keys: Vec<String>,
    put_values: Vec<Vec<u8>>,
    delete_keys: Vec<String>,
    /// Whether the batch writes (a batch of checks only is not counted).
    counts: bool,
    reply: oneshot::Sender<Result<Commit, PgError>>,
}

impl Job {
    /// The job for `batch`, and where its outcome will arrive.
    pub(super) fn new(batch: &Batch) -> (Self, oneshot::Receiver<Result<Commit, PgError>>) {
        let mut keys: Vec<String> = batch
            .preconditions()
            .iter()
            .map(|p| p.key.clone())
            .chain(batch.writes().iter().map(|w| w.key().to_owned()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        // The batch's writes apply in order: only the last one per key counts (and one
        // statement may not touch a row twice).
        let mut last: BTreeMap<&str, Option<&[u8]>> = BTreeMap::new();
        for write in batch.writes() {
            match write {
                Write::Put(k, v) => last.insert(k, Some(v)),
                Write::Delete(k) => last.insert(k, None),
            };
        }
        let (mut put_keys, mut put_values, mut delete_keys) = (Vec::new(), Vec::new(), Vec::new());
        for (key, value) in last {
            match value {
                Some(v) => {
                    put_keys.push(key.to_owned());
                    put_values.push(v.to_vec());
                }
                None => delete_keys.push(key.to_owned()),
            }
        }
        let (reply, outcome) = oneshot::channel();
        let job = Self {
            keys,
            expected_keys: batch.preconditions().iter().map(|p| p.key.clone()).collect(),
            expected_values: batch.preconditions().iter().map(|p| p.value.clone()).collect(),
            put_keys,
            put_values,
            delete_keys,
            counts: !batch.writes().is_empty(),
            reply,
        };
        (job, outcome)
    }
}

/// The queue the writer tasks share.
pub(super) type Jobs = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Job>>>;

/// One writer task: takes every queued job (up to [`MAX_GROUP`]) once at least one is there,
/// commits them as a group, answers each; ends when the backend (the sender) is gone.
pub(super) async fn run(pool: Arc<Pool>, jobs: Jobs, next_shard: Arc<AtomicU32>) {
    loop {
        let mut group = Vec::new();
        {
            let mut queue = jobs.lock().await;
            let Some(first) = queue.recv().await else { return };
            group.push(first);
            while group.len() < MAX_GROUP {
                match queue.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
        }
        // Round robin over the write counter's rows from a random start: groups in flight
        // on this replica never wait on each other's row, and replicas rarely.
        let shard = next_shard.fetch_add(1, Ordering::Relaxed) % WRITE_SHARDS;
        let shard = i32::try_from(shard).unwrap_or(0); // < WRITE_SHARDS = 64: always fits
        let outcomes = commit_group(&pool, &group, shard).await;
        for (job, outcome) in group.into_iter().zip(outcomes) {
            // The caller may be gone (its thread ended): nothing to tell.
            let _ = job.reply.send(outcome);
        }
    }
}

/// Commits `group` in one transaction (see the module docs); one outcome per job, in order.
async fn commit_group(pool: &Pool, group: &[Job], shard: i32) -> Vec<Result<Commit, PgError>> {
    let all = |outcome: Result<Commit, PgError>| vec![outcome; group.len()];
    let mut pooled = match pool.get().await {
        Ok(pooled) => pooled,
        Err(e) => return all(Err(e)),
    };
    let outcomes = match run_group(pooled.conn(), group, shard).await {
        Ok(held) => held
            .into_iter()
            .map(|held| Ok(if held { Commit::Applied } else { Commit::Conflict }))
            .collect(),
        Err(outcome) => all(outcome),
    };
    if outcomes.iter().any(Result::is_err) {
        pooled.discard();
    }
    outcomes
}

/// Which batches' preconditions held, once committed; `Err` with the outcome of every batch
/// when the transaction as a whole did not commit.
async fn run_group(
    conn: &super::pool::Conn,
    group: &[Job],
    shard: i32,
) -> Result<Vec<bool>, Result<Commit, PgError>> {
    let (client, s) = (&conn.client, &conn.statements);
    let mut keys: Vec<&str> =
        group.iter().flat_map(|j| j.keys.iter().map(String::as_str)).collect();
    keys.sort_unstable();
    keys.dedup();
    let applies: Vec<[&(dyn ToSql + Sync); 7]> = group
        .iter()
        .map(|j| -> [&(dyn ToSql + Sync); 7] {
            [
                &j.expected_keys,
                &j.expected_values,
                &j.put_keys,
                &j.put_values,
                &j.delete_keys,
                &j.counts,
                &shard,
            ]
        })
        .collect();
    let lock: [&(dyn ToSql + Sync); 1] = [&keys];
    // Polled in this order, each request is sent on its first poll: one round trip in all.
    let (begun, locked, applied, committed) = futures::join!(
        client.execute(&s.begin, &[]),
        client.execute(&s.lock, &lock),
        futures::future::join_all(applies.iter().map(|p| client.query_one(&s.apply, p))),
        client.execute(&s.commit, &[]),
    );
    // The first failure explains the rest (an aborted transaction fails every later
    // statement and turns the COMMIT into a rollback).
    let failed = |what: &'static str| {
        move |e: tokio_postgres::Error| {
            if is_conflict(&e) { Ok(Commit::Conflict) } else { Err(query(what)(e)) }
        }
    };
    begun.map_err(failed("starting a transaction"))?;
    locked.map_err(failed("locking the keys"))?;
    let rows = applied.into_iter().collect::<Result<Vec<_>, _>>().map_err(failed("writing"))?;
    committed.map_err(failed("committing"))?;
    rows.iter()
        .map(|row| column::<bool>(row, 0, "reading the outcome of a write").map_err(Err))
        .collect()
}
