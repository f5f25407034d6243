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
//!
//! # Example
//!
//! A root key split across three Keepers, a secret sealed under it in an in-memory store, and
//! the secret read back after the key is restored from any two shares:
//!
//! ```
//! use std::sync::Arc;
//!
//! use spike_core::path::SecretPath;
//! use spike_core::secret::SecretValues;
//! use spike_core::shamir;
//! use spike_core::store::{MemoryBackend, PutOptions, Vault};
//!
//! let root = shamir::generate_root_key()?;
//! let shares = shamir::split(&root, 2, 3)?;
//!
//! // Everything the backend holds is an AEAD envelope under a keyring wrapped by the root key.
//! let backend = Arc::new(MemoryBackend::new());
//! let vault = Vault::open(backend.clone(), &root)?;
//! let path = SecretPath::parse("tenants/demo/db")?;
//! let values: SecretValues = [("username", "app"), ("password", "s3cr3t")].into_iter().collect();
//! assert_eq!(vault.secrets().put(&path, &values, &PutOptions::new())?, 1);
//! drop((vault, root));
//!
//! // Any two of the three shares give the root key, and with it the secrets, back.
//! let restored = shamir::combine(&shares[1..], 2)?;
//! let vault = Vault::open(backend, &restored)?;
//! let db = vault.secrets().get(&path, None)?;
//! assert_eq!(db.get("username"), Some("app"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
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
