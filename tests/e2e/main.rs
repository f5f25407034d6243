//! spike-rs multi-process tests: the real `spike-nexus`, `spike-keeper` and `spike-bootstrap`
//! binaries on 127.0.0.1, killed with SIGKILL and restarted (harness: `spike_e2e`).
//!
//! One test binary, one module per concern (ripgrep's layout):
//! - `abuse`: an authenticated caller holding idle connections, stalling bodies and going past
//!   its connection cap; another caller keeps being served (issue 13).
//! - `recovery`: Keepers, Bootstrap and automatic recovery — a Nexus restart needs no human,
//!   a lost Keeper is re-armed, a total loss is undone by operator restore, and only Nexus may
//!   read a shard.
//! - `crash`: crash consistency under load — Nexus (and Keepers) killed mid-write, every
//!   acknowledged write checked after each restart.
//! - `disk`: a full disk and a read-only data directory — a clear error, no hang, no false
//!   success, and nothing acknowledged lost once the fault is gone.
//! - `pg_backend`: the PostgreSQL backend alone on a real server (CAS races, scans, schema
//!   versions, TLS verification).
//! - `replicas`: several Nexus replicas on one real PostgreSQL server — shared versions, keys
//!   and policies, a replica killed mid-write, leader failover, rollback detection.
//! - `import_spike`: SPIKE (Go) Nexus's SQLite store imported by `spike operator
//!   import-spike` on sled and PostgreSQL, compared with the fixture's `expected.json`.
//! - `jwt_svid`: JWT-SVID callers on Nexus's JWT listener: SDK and raw HTTP, forged tokens.
//! - `audit`: a bounded audit log — a flood of maximal URLs from a caller without rights adds
//!   a few lines per interval, and size-based rotation keeps one verifiable chain across files.
#![forbid(unsafe_code)]

mod abuse;
mod audit;
mod crash;
mod disk;
mod import_spike;
mod jwt_svid;
mod pg_backend;
mod recovery;
mod replicas;
