//! Who may do what (SPIKE's rules, DESIGN.md "Identities").
//!
//! Roles are recognised by exact SPIFFE ID in their configured trust domain. The one SPIKE rule
//! that is a prefix — Pilot's superuser ID "or anything under it" (spike-sdk-go
//! `spiffeid/auth.go`) — is matched on a `/` boundary, so `.../superuser-evil` is *not* a
//! superuser. Everyone else is a workload, authorised only by policies (default deny).

use spike_core::identity::Role;
use spike_core::policy::{Permission, PolicySet};

/// The system path a policy must grant `list` on to list every secret (SPIKE).
pub const SYSTEM_SECRET_PATH: &str = "spike/system/secret";
/// The system path for policy administration (SPIKE).
pub const SYSTEM_ACL_PATH: &str = "spike/system/acl";
/// The system path granting the cipher service with `execute` (SPIKE).
pub const SYSTEM_CIPHER_PATH: &str = "spike/system/cipher/exec";

/// The trust domain each SPIKE role lives in (`SPIKE_TRUST_ROOT` and its per-role overrides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustRoots {
    /// Trust domain of Nexus itself (`SPIKE_TRUST_ROOT_NEXUS`).
    pub nexus: String,
    /// Trust domain of Pilot roles (`SPIKE_TRUST_ROOT_PILOT`).
    pub pilot: String,
    /// Trust domain of Bootstrap (`SPIKE_TRUST_ROOT_BOOTSTRAP`).
    pub bootstrap: String,
    /// Trust domain of Keepers (`SPIKE_TRUST_ROOT_KEEPER`).
    pub keeper: String,
    /// Trust domain of lite workloads (`SPIKE_TRUST_ROOT_LITE_WORKLOAD`).
    pub lite_workload: String,
    /// Further trust domains whose workloads may call Nexus (policies still decide).
    pub workloads: Vec<String>,
}

impl TrustRoots {
    /// Every role in one trust domain.
    pub fn single(trust_domain: &str) -> Self {
        Self {
            nexus: trust_domain.to_owned(),
            pilot: trust_domain.to_owned(),
            bootstrap: trust_domain.to_owned(),
            keeper: trust_domain.to_owned(),
            lite_workload: trust_domain.to_owned(),
            workloads: vec![],
        }
    }

    /// The trust domain configured for `role`.
    pub fn of(&self, role: Role) -> &str {
        match role {
            Role::Nexus => &self.nexus,
            Role::Keeper => &self.keeper,
            Role::Bootstrap => &self.bootstrap,
            Role::LiteWorkload => &self.lite_workload,
            _ => &self.pilot,
        }
    }

    /// Every trust domain whose peers may connect at all, without duplicates.
    pub fn accepted(&self) -> Vec<String> {
        let mut all = vec![
            self.nexus.clone(),
            self.pilot.clone(),
            self.bootstrap.clone(),
            self.keeper.clone(),
            self.lite_workload.clone(),
        ];
        all.extend(self.workloads.iter().cloned());
        all.sort();
        all.dedup();
        all
    }

    /// What follows `role`'s SPIFFE ID in `caller`, if `caller` starts with it (no allocation:
    /// this runs on every request).
    fn after_role<'a>(&self, caller: &'a str, role: Role) -> Option<&'a str> {
        caller.strip_prefix("spiffe://")?.strip_prefix(self.of(role))?.strip_prefix(role.path())
    }

    /// True if `caller` is exactly `role`'s SPIFFE ID.
    pub fn is(&self, caller: &str, role: Role) -> bool {
        self.after_role(caller, role) == Some("")
    }

    /// True for Pilot's superuser ID or an ID below it (SPIKE's `IsPilotOperator`).
    pub fn is_superuser(&self, caller: &str) -> bool {
        self.after_role(caller, Role::PilotSuperuser)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// Superuser, or a policy granting `wanted` on `path`.
pub fn allowed(
    roots: &TrustRoots,
    policies: &PolicySet,
    caller: &str,
    path: &str,
    wanted: Permission,
) -> bool {
    roots.is_superuser(caller) || policies.decide(caller, path, wanted).is_allowed()
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
    fn roles_are_exact() {
        let roots = TrustRoots::single("spike.ist");
        assert!(roots.is("spiffe://spike.ist/spike/bootstrap", Role::Bootstrap));
        assert!(!roots.is("spiffe://spike.ist/spike/bootstrap/x", Role::Bootstrap));
    }
}
