//! SPIKE's access policies: the model and an anchored, precompiled matcher.
//!
//! A [`Policy`] says that workloads whose SPIFFE ID matches `spiffe_id_pattern` may use the
//! listed [`Permission`]s on secret paths matching `path_pattern`. Nexus keeps a [`PolicySet`]
//! and asks it for a [`Decision`] on each request:
//!
//! ```
//! use spike_core::policy::{Decision, Permission, Policy, PolicySet, PolicySpec};
//!
//! let billing = Policy::create(PolicySpec {
//!     name: "billing-read".into(),
//!     spiffe_id_pattern: r"spiffe://spike\.ist/billing".into(),
//!     path_pattern: "secrets/billing/.*".into(),
//!     permissions: vec![Permission::Read],
//! })?;
//! let set = PolicySet::compile([&billing])?;
//! let me = "spiffe://spike.ist/billing";
//! assert!(set.decide(me, "secrets/billing/db", Permission::Read).is_allowed());
//! // Patterns match whole strings: another workload or path is not covered...
//! assert_eq!(set.decide("spiffe://spike.ist/billing/evil", "secrets/billing/db", Permission::Read), Decision::Deny);
//! // ...and nothing is granted that no policy grants.
//! assert_eq!(set.decide(me, "secrets/billing/db", Permission::Write), Decision::Deny);
//! # Ok::<(), spike_core::error::PolicyError>(())
//! ```
//!
//! Semantics follow SPIKE (`super` grants every permission; a request is allowed if any one
//! policy grants it; otherwise denied) with one deliberate difference: patterns are anchored
//! and must match the *whole* SPIFFE ID or path, where SPIKE Go searches for them anywhere
//! in the string. A SPIKE policy written as `secrets/app` therefore covers only
//! `secrets/app` here; write `secrets/app/.*` for everything under it. See
//! [`AnchoredPattern`] for which patterns are refused and why.

pub mod matcher;
pub mod model;

pub use matcher::*;
pub use model::*;
