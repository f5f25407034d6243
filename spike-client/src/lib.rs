//! `spike-client`: the SDK applications embed to talk to SPIKE Nexus over SPIFFE mTLS.
//!
//! No tokens, no passwords: the process proves who it is with the X509-SVID its SPIFFE
//! Workload API hands out, and Nexus decides by policy what that SPIFFE ID may do.
//!
//! # Quick start
//!
//! [`Spike::new`] reads SPIKE's environment: `SPIFFE_ENDPOINT_SOCKET` (the Workload API) and
//! `SPIKE_NEXUS_API_URL` (Nexus). Against a local system, `spike dev` prints both.
//!
//! ```no_run
//! use std::time::Duration;
//! use spike_client::cache::SecretCache;
//! use spike_client::spike_core::secret::SecretValues;
//! use spike_client::{Error, Spike};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Error> {
//!     let spike = Spike::new().await?;
//!
//!     let values: SecretValues =
//!         [("username", "app"), ("password", "s3cr3t")].into_iter().collect();
//!     spike.put_secret("tenants/demo/db", values).await?;
//!
//!     let db = spike.get_secret("tenants/demo/db").await?;
//!     assert_eq!(db.get("username"), Some("app"));
//!
//!     // Reads served from memory, re-read from Nexus every 30 s, changes announced.
//!     let cache = SecretCache::builder(spike.clone())
//!         .refresh_interval(Duration::from_secs(30))
//!         .build()?;
//!     let db = cache.get("tenants/demo/db").await?;
//!     println!("{} keys, values never printed by Debug: {db:?}", db.len());
//!
//!     match spike.get_secret("tenants/other/db").await {
//!         Err(Error::Forbidden) => println!("no policy grants this identity that path"),
//!         other => println!("{:?}", other.map(|v| v.len())),
//!     }
//!     Ok(())
//! }
//! ```
//!
//! Runnable programs for each pattern live in `examples/` (`put_get`, `cached_refresh`,
//! `cipher`, `policy_admin`); run them against `spike dev` after
//! `source .spike-dev/env`, e.g. `cargo run -p spike-client --example put_get`.
//!
//! # Modules
//!
//! - [`client`] and [`api`]: [`Spike`], one mTLS connection pool with typed calls for secrets,
//!   policies, encryption as a service and operator tasks;
//! - [`cache`]: [`cache::SecretCache`], a get-through cache with refresh and change
//!   notification;
//! - [`exec`]: how secret keys become environment variables (`spike exec`);
//! - [`recovery`]: break-the-glass shard files (`spike operator recover` / `restore`);
//! - [`identity`]: where this process's X509-SVID comes from — the SPIFFE Workload API
//!   (`SPIFFE_ENDPOINT_SOCKET`), spiffe-helper style files, or memory — with live rotation;
//! - [`tls`]: rustls configs that authenticate peers by SPIFFE ID (never by DNS name);
//! - [`config`]: SPIKE's environment variable names, in one place;
//! - [`error`]: one error enum, plus the precise reason a peer's SVID was refused.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use spike_core;

pub mod api;
pub mod cache;
pub mod client;
pub mod config;
pub mod error;
pub mod exec;
pub mod identity;
pub mod jwt;
pub mod recovery;
pub mod tls;
mod verified_chains;

pub use client::{RetryPolicy, Spike, SpikeBuilder};
pub use error::{Error, SvidRejection};
pub use identity::{Identity, IdentitySource};
pub use spiffe::{SpiffeId, TrustDomain};
