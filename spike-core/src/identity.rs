//! SPIKE's well-known SPIFFE IDs (DESIGN.md, "Identities"), so SPIKE deployments carry over.
//!
//! Everything here is pure string logic; verifying that a peer really holds an ID is the TLS
//! layer's job.
//!
//! Matching is SPIKE's (spike-sdk-go v0.19.9 `spiffeid/auth.go`): a role accepts its base ID
//! `spiffe://<td><path>` *or any ID below it on a `/` boundary*, in any of its configured trust
//! domains. So `spiffe://spike.ist/spike/nexus/nexus-0` is Nexus (SPIKE's Helm charts issue such
//! pod-suffixed IDs) but `spiffe://spike.ist/spike/nexusx` is not. [`Role::matches`] is the one
//! place this rule lives; servers and clients call it (or [`is_at_or_below`]) everywhere.

use crate::error::IdentityError;

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

    /// True if `id` is this role's ID, or an ID below it on a `/` boundary, in any of
    /// `trust_domains` (SPIKE's `IsNexus`, `IsKeeper`, `IsPilotOperator`, ...). Runs on every
    /// request, so it does not allocate.
    pub fn matches<S: AsRef<str>>(self, id: &str, trust_domains: &[S]) -> bool {
        let Some(rest) = id.strip_prefix("spiffe://") else { return false };
        trust_domains.iter().any(|td| {
            rest.strip_prefix(td.as_ref())
                .and_then(|after_td| after_td.strip_prefix(self.path()))
                .is_some_and(below_or_equal)
        })
    }

    /// The role `id` holds in `trust_domain`, if any ([`Role::matches`]' rule: the base ID or
    /// an ID below it). Role paths never nest, so at most one role matches.
    pub fn from_spiffe_id(id: &str, trust_domain: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.matches(id, &[trust_domain]))
    }
}

/// What follows a base ID: nothing (the base itself) or a `/` and more. `/spike/nexusx` shares a
/// string prefix with `/spike/nexus` but is another ID.
fn below_or_equal(rest: &str) -> bool {
    rest.is_empty() || rest.starts_with('/')
}

/// True if SPIFFE ID `id` is `base` or below it on a `/` boundary: the rule of [`Role::matches`]
/// for an arbitrary base ID (e.g. a pinned server ID).
pub fn is_at_or_below(id: &str, base: &str) -> bool {
    id.strip_prefix(base).is_some_and(below_or_equal)
}

/// Parses a `SPIKE_TRUST_ROOT*` value: one trust domain or a comma-separated list (SPIKE splits
/// on `,` and trims spaces), each entry a valid trust domain name. Duplicates are dropped, order
/// kept.
pub fn parse_trust_domains(value: &str) -> Result<Vec<String>, IdentityError> {
    let mut list: Vec<String> = Vec::new();
    for entry in value.split(',').map(str::trim) {
        validate_trust_domain(entry)?;
        if !list.iter().any(|td| td == entry) {
            list.push(entry.to_owned());
        }
    }
    Ok(list)
}

/// SPIFFE-ID §2.1: a trust domain name is lower-case ASCII letters, digits, `.`, `-` and `_`.
/// Upper case is refused rather than folded, as go-spiffe does, so an ID matches only the
/// spelling its SVID carries.
fn validate_trust_domain(entry: &str) -> Result<(), IdentityError> {
    let bad = |reason| Err(IdentityError::InvalidTrustDomain { entry: entry.to_owned(), reason });
    if entry.is_empty() {
        return Err(IdentityError::EmptyEntry);
    }
    if entry.starts_with("spiffe:") {
        return bad("it is a SPIFFE ID or URI; give only the trust domain name");
    }
    if entry.len() > 255 {
        return bad("it is longer than 255 characters");
    }
    if entry.bytes().any(|b| b.is_ascii_uppercase()) {
        return bad("it has upper-case letters");
    }
    if !entry.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b)) {
        return bad("it has a character other than a-z, 0-9, '.', '-' or '_'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_matches_its_base_id_and_ids_below_it_on_a_slash_boundary() {
        for role in Role::ALL {
            let base = role.spiffe_id("spike.ist");
            assert!(role.matches(&base, &["spike.ist"]), "{base}");
            assert!(role.matches(&format!("{base}/pod-0"), &["spike.ist"]), "{base}/pod-0");
            assert!(role.matches(&format!("{base}/a/b"), &["spike.ist"]), "{base}/a/b");
            assert!(!role.matches(&format!("{base}x"), &["spike.ist"]), "{base}x");
            assert!(!role.matches(&format!("{base}-evil/x"), &["spike.ist"]), "{base}-evil");
            assert!(!role.matches(&base, &["other.org"]), "{base} in other.org");
            assert!(!role.matches(&base, &[] as &[&str]), "{base} with no trust domain");
            assert_eq!(Role::from_spiffe_id(&format!("{base}/pod-0"), "spike.ist"), Some(role));
        }
        let nexus = "spiffe://spike.ist/spike/nexus/nexus-0";
        assert!(Role::Nexus.matches(nexus, &["spike.ist"]));
        assert!(!Role::Nexus.matches("spiffe://spike.ist/spike/nexusx", &["spike.ist"]));
        assert!(!Role::Nexus.matches("spiffe://spike.istx/spike/nexus", &["spike.ist"]));
        assert!(!Role::Nexus.matches("spiffe://spike.ist/spike", &["spike.ist"]));
        assert!(!Role::Nexus.matches("spike.ist/spike/nexus", &["spike.ist"]));
        assert!(!Role::Keeper.matches(nexus, &["spike.ist"]));
        assert_eq!(Role::from_spiffe_id("spiffe://spike.ist/app", "spike.ist"), None);
    }

    #[test]
    fn a_role_matches_in_any_trust_domain_of_its_list() {
        let tds = ["a.org", "b.org"];
        assert!(Role::Keeper.matches("spiffe://a.org/spike/keeper/k1", &tds));
        assert!(Role::Keeper.matches("spiffe://b.org/spike/keeper", &tds));
        assert!(!Role::Keeper.matches("spiffe://c.org/spike/keeper", &tds));
        // A trust domain's name must end where the path starts.
        assert!(!Role::Keeper.matches("spiffe://a.org.evil/spike/keeper", &tds));
    }

    #[test]
    fn arbitrary_bases_follow_the_same_boundary_rule() {
        let base = "spiffe://spike.ist/spike/nexus/nexus-0";
        assert!(is_at_or_below(base, base));
        assert!(is_at_or_below(&format!("{base}/x"), base));
        assert!(!is_at_or_below("spiffe://spike.ist/spike/nexus/nexus-01", base));
        assert!(!is_at_or_below("spiffe://spike.ist/spike/nexus", base));
    }

    #[test]
    fn trust_domain_lists_are_comma_separated_validated_and_deduplicated() {
        assert_eq!(parse_trust_domains("spike.ist").unwrap(), ["spike.ist"]);
        assert_eq!(
            parse_trust_domains(" a.org , b-2_x.org,a.org").unwrap(),
            ["a.org", "b-2_x.org"]
        );
        assert_eq!(parse_trust_domains("").unwrap_err(), IdentityError::EmptyEntry);
        assert_eq!(parse_trust_domains("a.org,,b.org").unwrap_err(), IdentityError::EmptyEntry);
        assert_eq!(parse_trust_domains("a.org,").unwrap_err(), IdentityError::EmptyEntry);
        for (bad, says) in [
            ("Spike.ist", "upper-case"),
            ("spiffe://spike.ist", "SPIFFE ID"),
            ("spike.ist/spike", "other than"),
            ("spike.ist:443", "other than"),
            ("sp ike", "other than"),
        ] {
            let err = parse_trust_domains(&format!("ok.org,{bad}")).unwrap_err();
            let message = err.to_string();
            assert!(message.contains(&format!("{:?}", bad.trim())), "{message}");
            assert!(message.contains(says) && message.contains("spike.ist"), "{message}");
        }
        assert!(parse_trust_domains(&"a".repeat(256)).is_err());
    }
}
