//! Development helpers: the dev Workload API agent.

pub mod agent;
