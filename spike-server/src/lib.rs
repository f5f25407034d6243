//! `spike-server`: Nexus, Keeper, Bootstrap and the dev Workload API agent as libraries, so
//! `spike dev` can run the whole system in one process and tests can drive each piece directly.
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
pub mod shutdown;
pub mod tls;
