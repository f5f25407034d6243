//! `spike-server`: Nexus, Keeper, Bootstrap and the dev Workload API agent as libraries, so
//! `spike dev` can run the whole system in one process and tests can drive each piece directly.
//!
//! Each daemon is a `start`/`run` function over a configuration and an identity source; the
//! binaries in spike-rs's `bins/` only parse flags and call them.
//!
//! - [`nexus`]: the secret store, SPIKE's v1 REST API over SPIFFE mTLS;
//! - [`keeper`] and [`bootstrap`]: holding and first dealing the root key's Shamir shares;
//! - [`dev::agent`]: a real SPIFFE Workload API server for development and tests;
//! - [`tls`], [`listener`], [`audit`], [`limits`], [`process`]: the pieces the daemons share.
//!
//! # Example
//!
//! A dev Workload API agent and an in-memory Nexus in this process, and a client storing and
//! reading a secret over mTLS as the Pilot superuser:
//!
//! ```
//! use spike_client::Spike;
//! use spike_client::identity::IdentitySource;
//! use spike_server::dev::agent::DevAgent;
//! use spike_server::nexus::{self, BackendKind, NexusConfig};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let agent = DevAgent::builder().socket_dir(dir.path().join("sockets")).build()?.serve().await?;
//! let nexus_socket = agent.endpoint("nexus").expect("a default entry");
//! let source =
//!     IdentitySource::workload_api(&nexus_socket, std::time::Duration::from_secs(10)).await?;
//! let mut config = NexusConfig::dev(dir.path().join("nexus"));
//! config.backend = BackendKind::Memory;
//! let nexus = nexus::start(config, source).await?;
//!
//! let spike = Spike::builder()
//!     .socket(agent.endpoint("pilot-superuser").expect("a default entry"))
//!     .url(format!("https://{}", nexus.addr()))
//!     .nexus_id("spiffe://spike.ist/spike/nexus")
//!     .build()
//!     .await?;
//! spike.put_secret("tenants/demo/db", [("username", "app")].into_iter().collect()).await?;
//! let db = spike.get_secret("tenants/demo/db").await?;
//! assert_eq!(db.get("username"), Some("app"));
//!
//! drop(spike);
//! nexus.shutdown().await;
//! agent.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use spike_core;

pub mod audit;
pub mod bootstrap;
pub mod caller;
pub mod config;
pub mod connections;
pub mod error;
pub mod limits;

pub mod dev;
pub mod keeper;
pub mod listener;
pub mod logging;
pub mod nexus;
pub mod postgres;
pub mod process;
pub mod shutdown;
pub mod tls;
