//! Who may do what (SPIKE's rules, DESIGN.md "Identities").
//!
//! Every role — Nexus, Keeper, Bootstrap, Pilot's superuser, recover and restore, the lite
//! workload — is recognised as spike-sdk-go `spiffeid/auth.go` does: its base ID or any ID
//! below it on a `/` boundary, in any trust domain of its `SPIKE_TRUST_ROOT*` list
//! ([`Role::matches`]). So `.../superuser/alice` is a superuser and `.../superuser-evil` is
//! not. Everyone else is a workload, authorised only by policies (default deny). A lite
//! workload may use the cipher without a policy but never secrets or policies, whatever a
//! policy says (SPIKE's guards refuse it before reading any policy).

use spike_core::identity::Role;
use spike_core::policy::{Permission, PolicySet};

use crate::config::parse_trust_roots;
use crate::error::ConfigError;

/// The system path a policy must grant `list` on to list every secret (SPIKE).
pub const SYSTEM_SECRET_PATH: &str = "spike/system/secret";
/// The system path for policy administration (SPIKE).
pub const SYSTEM_ACL_PATH: &str = "spike/system/acl";
/// The system path granting the cipher service with `execute` (SPIKE).
pub const SYSTEM_CIPHER_PATH: &str = "spike/system/cipher/exec";

/// The trust domains each SPIKE role lives in (`SPIKE_TRUST_ROOT` and its per-role
/// overrides), each a non-empty list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustRoots {
    /// Trust domains of Nexus (`SPIKE_TRUST_ROOT_NEXUS`).
    pub nexus: Vec<String>,
    /// Trust domains of Pilot roles (`SPIKE_TRUST_ROOT_PILOT`).
    pub pilot: Vec<String>,
    /// Trust domains of Bootstrap (`SPIKE_TRUST_ROOT_BOOTSTRAP`).
    pub bootstrap: Vec<String>,
    /// Trust domains of Keepers (`SPIKE_TRUST_ROOT_KEEPER`).
    pub keeper: Vec<String>,
    /// Trust domains of lite workloads (`SPIKE_TRUST_ROOT_LITE_WORKLOAD`).
    pub lite_workload: Vec<String>,
}

/// The raw `SPIKE_TRUST_ROOT*` values, as flags or environment variables give them; each
/// per-role value falls back to `trust_root`.
#[derive(Debug, Clone, Default)]
pub struct TrustRootArgs<'a> {
    /// `SPIKE_TRUST_ROOT`.
    pub trust_root: &'a str,
    /// `SPIKE_TRUST_ROOT_NEXUS`.
    pub nexus: Option<&'a str>,
    /// `SPIKE_TRUST_ROOT_PILOT`.
    pub pilot: Option<&'a str>,
    /// `SPIKE_TRUST_ROOT_BOOTSTRAP`.
    pub bootstrap: Option<&'a str>,
    /// `SPIKE_TRUST_ROOT_KEEPER`.
    pub keeper: Option<&'a str>,
    /// `SPIKE_TRUST_ROOT_LITE_WORKLOAD`.
    pub lite_workload: Option<&'a str>,
}

impl TrustRoots {
    /// Every role in one trust domain.
    pub fn single(trust_domain: &str) -> Self {
        let one = || vec![trust_domain.to_owned()];
        Self { nexus: one(), pilot: one(), bootstrap: one(), keeper: one(), lite_workload: one() }
    }

    /// Parses the `SPIKE_TRUST_ROOT*` values, each a comma-separated list; an error names the
    /// variable and the bad entry.
    pub fn parse(args: &TrustRootArgs<'_>) -> Result<Self, ConfigError> {
        let default = parse_trust_roots("SPIKE_TRUST_ROOT", args.trust_root)?;
        let role = |name: &'static str, value: Option<&str>| match value {
            Some(v) if !v.trim().is_empty() => parse_trust_roots(name, v),
            _ => Ok(default.clone()),
        };
        Ok(Self {
            nexus: role("SPIKE_TRUST_ROOT_NEXUS", args.nexus)?,
            pilot: role("SPIKE_TRUST_ROOT_PILOT", args.pilot)?,
            bootstrap: role("SPIKE_TRUST_ROOT_BOOTSTRAP", args.bootstrap)?,
            keeper: role("SPIKE_TRUST_ROOT_KEEPER", args.keeper)?,
            lite_workload: role("SPIKE_TRUST_ROOT_LITE_WORKLOAD", args.lite_workload)?,
        })
    }

    /// The trust domains configured for `role`.
    pub fn of(&self, role: Role) -> &[String] {
        match role {
            Role::Nexus => &self.nexus,
            Role::Keeper => &self.keeper,
            Role::Bootstrap => &self.bootstrap,
            Role::LiteWorkload => &self.lite_workload,
            _ => &self.pilot,
        }
    }

    /// True if `caller` holds `role`: its ID or one below it, in one of the role's trust
    /// domains.
    pub fn is(&self, caller: &str, role: Role) -> bool {
        role.matches(caller, self.of(role))
    }

    /// The SPIKE role `caller` holds, if any (Nexus, Keeper, Bootstrap, a Pilot role, lite).
    pub fn role_of(&self, caller: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| self.is(caller, *role))
    }

    /// True for Pilot's superuser ID or an ID below it (SPIKE's `IsPilotOperator`).
    pub fn is_superuser(&self, caller: &str) -> bool {
        self.is(caller, Role::PilotSuperuser)
    }

    /// How a daemon playing `role` picks its SVID when the Workload API hands out several: the
    /// one holding `role` in its trust domains, else the first with a warning.
    pub fn svid_choice(&self, role: Role) -> spike_client::identity::SvidChoice {
        spike_client::identity::SvidChoice::Role { role, trust_domains: self.of(role).to_vec() }
    }

    /// Matchers accepting `role` as a TLS peer: its ID or below it in each of its trust
    /// domains.
    pub fn matchers(
        &self,
        role: Role,
    ) -> Result<Vec<spike_client::tls::IdMatcher>, spike_client::Error> {
        spike_client::tls::IdMatcher::role(role, self.of(role))
    }
}

/// Superuser, or a policy granting `wanted` on `path`.
/// Used for every secret, policy and cipher check; never true for a lite workload (see
/// [`may_use_store`]), which the cipher admits by its role before asking this.
pub fn allowed(
    roots: &TrustRoots,
    policies: &PolicySet,
    caller: &str,
    path: &str,
    wanted: Permission,
) -> bool {
    may_use_store(roots, caller)
        && (roots.is_superuser(caller) || policies.decide(caller, path, wanted).is_allowed())
}

/// False for a lite workload: SPIKE refuses it every secret and policy route before any
/// policy is read, so no policy can grant it the store (a policy naming it is inert).
pub fn may_use_store(roots: &TrustRoots, caller: &str) -> bool {
    !roots.is(caller, Role::LiteWorkload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superuser_prefix_respects_segment_boundaries() {
        let roots = TrustRoots::single("spike.ist");
        assert!(roots.is_superuser("spiffe://spike.ist/spike/pilot/role/superuser"));
        assert!(roots.is_superuser("spiffe://spike.ist/spike/pilot/role/superuser/alice"));
        assert!(!roots.is_superuser("spiffe://spike.ist/spike/pilot/role/superuser-evil"));
        assert!(!roots.is_superuser("spiffe://evil.org/spike/pilot/role/superuser"));
        assert!(!roots.is_superuser("spiffe://spike.ist/spike/pilot/role/recover"));
    }

    #[test]
    fn every_role_accepts_ids_below_it_in_any_listed_trust_domain() {
        let roots = TrustRoots::parse(&TrustRootArgs {
            trust_root: "spike.ist",
            keeper: Some("spike.ist, keepers.org"),
            ..TrustRootArgs::default()
        })
        .unwrap();
        assert!(roots.is("spiffe://spike.ist/spike/bootstrap", Role::Bootstrap));
        assert!(roots.is("spiffe://spike.ist/spike/bootstrap/job-1", Role::Bootstrap));
        assert!(roots.is("spiffe://spike.ist/spike/nexus/nexus-0", Role::Nexus));
        assert!(!roots.is("spiffe://spike.ist/spike/nexusx", Role::Nexus));
        assert!(roots.is("spiffe://keepers.org/spike/keeper/keeper-2", Role::Keeper));
        assert!(!roots.is("spiffe://keepers.org/spike/nexus", Role::Nexus));
        assert!(roots.is("spiffe://spike.ist/spike/pilot/role/recover/ops", Role::PilotRecover));
        assert!(roots.is("spiffe://spike.ist/spike/workload/role/lite/app", Role::LiteWorkload));
    }

    #[test]
    fn trust_root_overrides_fall_back_to_spike_trust_root_and_name_the_bad_variable() {
        let roots = TrustRoots::parse(&TrustRootArgs {
            trust_root: "a.org,b.org",
            pilot: Some("ops.org"),
            nexus: Some(" "),
            ..TrustRootArgs::default()
        })
        .unwrap();
        assert_eq!(roots.nexus, ["a.org", "b.org"]);
        assert_eq!(roots.pilot, ["ops.org"]);
        let err = TrustRoots::parse(&TrustRootArgs {
            trust_root: "a.org",
            lite_workload: Some("a.org,spiffe://b.org"),
            ..TrustRootArgs::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("SPIKE_TRUST_ROOT_LITE_WORKLOAD="), "{err}");
        assert!(err.contains("\"spiffe://b.org\""), "{err}");
    }

    #[test]
    fn lite_workloads_are_never_allowed_the_store_whatever_a_policy_grants() {
        let roots = TrustRoots::single("spike.ist");
        let lite = "spiffe://spike.ist/spike/workload/role/lite/app";
        let everything = spike_core::policy::Policy::create(spike_core::policy::PolicySpec {
            name: "lite-everything".into(),
            spiffe_id_pattern: ".*".into(),
            path_pattern: ".*".into(),
            permissions: vec![Permission::Super, Permission::Read, Permission::Write],
        })
        .unwrap();
        let policies = PolicySet::compile([&everything]).unwrap();
        assert!(policies.decide(lite, "app/db", Permission::Read).is_allowed());
        for path in ["app/db", SYSTEM_SECRET_PATH, SYSTEM_ACL_PATH] {
            for wanted in [Permission::Read, Permission::Write, Permission::List] {
                assert!(!allowed(&roots, &policies, lite, path, wanted), "{path} {wanted:?}");
            }
        }
        assert!(!may_use_store(&roots, lite));
        assert!(may_use_store(&roots, "spiffe://spike.ist/app"));
    }
}
