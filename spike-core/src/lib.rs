//! `spike-core`: the reusable heart of spike-rs.
//!
//! Synchronous and free of network I/O, so it can be property-tested, fuzzed and embedded:
//! - [`secret`]: zeroizing, redacted newtypes for the root key, data keys, shares and values;
//! - [`crypto`]: AES-256-GCM-SIV envelopes bound to what they protect, and a rotating keyring;
//! - [`shamir`]: splitting the root key across Keepers over the P-256 scalar field;
//! - [`path`]: the one canonical validator for secret paths and policy names;
//! - [`policy`]: SPIKE's policy model and an anchored, precompiled matcher;
//! - [`store`]: a ciphertext-only `Backend` trait (memory, sled) and the versioned secret model;
//! - [`identity`]: SPIKE's well-known SPIFFE IDs;
//! - [`jwt`]: JWT-SVID verification against SPIFFE JWT bundles (Bearer authentication).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod crypto;
pub mod error;
pub mod identity;
pub mod internal;
pub mod jwt;
pub mod path;
pub mod policy;
pub mod secret;
pub mod shamir;
pub mod store;
pub mod wire;

pub use error::Error;
