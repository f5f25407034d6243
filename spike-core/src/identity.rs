//! SPIKE's well-known SPIFFE IDs (DESIGN.md, "Identities"), so SPIKE deployments carry over.
//!
//! Everything here is pure string logic; verifying that a peer really holds an ID is the TLS
//! layer's job. Comparisons are exact: a role matches only its full ID, never a prefix.

/// The default trust domain, as in SPIKE (`SPIKE_TRUST_ROOT`).
pub const DEFAULT_TRUST_DOMAIN: &str = "spike.ist";

/// A SPIKE component or operator role with a fixed SPIFFE ID path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// The secret store.
    Nexus,
    /// A shard holder.
    Keeper,
    /// The one-shot bootstrapper that deals the first root key.
    Bootstrap,
    /// Pilot with every permission.
    PilotSuperuser,
    /// Pilot allowed to export shards for offline backup.
    PilotRecover,
    /// Pilot allowed to feed shards back after a total loss.
    PilotRestore,
    /// Cipher-only "lite" workloads.
    LiteWorkload,
}

impl Role {
    /// Every role, for registering defaults (e.g. in the dev agent).
    pub const ALL: [Role; 7] = [
        Role::Nexus,
        Role::Keeper,
        Role::Bootstrap,
        Role::PilotSuperuser,
        Role::PilotRecover,
        Role::PilotRestore,
        Role::LiteWorkload,
    ];

    /// The SPIFFE ID path of this role (after the trust domain).
    pub fn path(self) -> &'static str {
        match self {
            Role::Nexus => "/spike/nexus",
            Role::Keeper => "/spike/keeper",
            Role::Bootstrap => "/spike/bootstrap",
            Role::PilotSuperuser => "/spike/pilot/role/superuser",
            Role::PilotRecover => "/spike/pilot/role/recover",
            Role::PilotRestore => "/spike/pilot/role/restore",
            Role::LiteWorkload => "/spike/workload/role/lite",
        }
    }

    /// A short name ("nexus", "keeper", "pilot-superuser", ...), used for file and socket names.
    pub fn short_name(self) -> &'static str {
        match self {
            Role::Nexus => "nexus",
            Role::Keeper => "keeper",
            Role::Bootstrap => "bootstrap",
            Role::PilotSuperuser => "pilot-superuser",
            Role::PilotRecover => "pilot-recover",
            Role::PilotRestore => "pilot-restore",
            Role::LiteWorkload => "lite-workload",
        }
    }

    /// The full SPIFFE ID of this role in `trust_domain`.
    pub fn spiffe_id(self, trust_domain: &str) -> String {
        format!("spiffe://{trust_domain}{}", self.path())
    }

    /// The role whose exact SPIFFE ID is `id` in `trust_domain`, if any.
    pub fn from_spiffe_id(id: &str, trust_domain: &str) -> Option<Role> {
        let rest = id.strip_prefix("spiffe://")?.strip_prefix(trust_domain)?;
        Role::ALL.into_iter().find(|r| r.path() == rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_match_exact_ids_only() {
        let id = Role::PilotSuperuser.spiffe_id("spike.ist");
        assert_eq!(id, "spiffe://spike.ist/spike/pilot/role/superuser");
        assert_eq!(Role::from_spiffe_id(&id, "spike.ist"), Some(Role::PilotSuperuser));
        assert_eq!(Role::from_spiffe_id(&format!("{id}/x"), "spike.ist"), None);
        assert_eq!(Role::from_spiffe_id(&id, "other.org"), None);
        assert_eq!(Role::from_spiffe_id("spiffe://spike.istx/spike/nexus", "spike.ist"), None);
    }
}
