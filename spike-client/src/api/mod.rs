//! Typed calls to Nexus, one module per route family, all as methods of [`crate::Spike`].

pub mod cipher;
pub mod import;
pub mod operator;
pub mod policy;
pub mod secrets;
