//! SPIKE's policy model: who (a SPIFFE ID pattern) may do what (permissions) where (a path
//! pattern).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

use crate::error::PolicyError;
use crate::path::validate_policy_name;
use crate::policy::matcher::CompiledPolicy;
use crate::secret::fill_random;

/// Longest policy id accepted when loading a stored policy, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// One of SPIKE's five permissions, spelled on the wire in lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Read secret values and metadata (`"read"`).
    Read,
    /// Create, update, delete and undelete secrets (`"write"`).
    Write,
    /// List secret paths (`"list"`).
    List,
    /// Use the encryption-as-a-service cipher API (`"execute"`).
    Execute,
    /// Every permission, present and future (`"super"`).
    Super,
}

impl Permission {
    /// All permissions, in their canonical (sorted) order.
    pub const ALL: [Permission; 5] = [
        Permission::Read,
        Permission::Write,
        Permission::List,
        Permission::Execute,
        Permission::Super,
    ];

    /// SPIKE's wire spelling: `"read"`, `"write"`, `"list"`, `"execute"` or `"super"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::List => "list",
            Permission::Execute => "execute",
            Permission::Super => "super",
        }
    }

    /// Parses SPIKE's wire spelling. Matching is exact: `"Read"` or `" read"` are rejected,
    /// as SPIKE rejects them.
    pub fn parse(s: &str) -> Result<Self, PolicyError> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| PolicyError::UnknownPermission(truncate(s, 64)))
    }

    /// True if holding `self` grants `wanted`: equal permissions, or `self` is `super`.
    pub fn grants(self, wanted: Permission) -> bool {
        self == Permission::Super || self == wanted
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::parse(s)
    }
}

impl Serialize for Permission {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Permission::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// What a "put policy" request asks for: everything but the id and the creation time, which
/// Nexus assigns. Turn it into a [`Policy`] with [`Policy::create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    /// Human-readable, unique policy name.
    pub name: String,
    /// Regular expression the caller's SPIFFE ID must match, whole (see [`crate::policy`]).
    pub spiffe_id_pattern: String,
    /// Regular expression the secret path must match, whole (see [`crate::policy`]).
    pub path_pattern: String,
    /// Permissions granted; order and duplicates do not matter.
    pub permissions: Vec<Permission>,
}

/// A validated policy: a [`PolicySpec`] plus its id and creation time.
///
/// Fields are private so every `Policy` has passed validation: the name passes
/// [`crate::path::validate_policy_name`]; both patterns compile as anchored patterns (see
/// [`crate::policy::matcher`]); permissions are non-empty, sorted and free of duplicates.
///
/// Its serde form is the *storage* form (snake_case fields, RFC 3339 `created_at`) and
/// deserialising re-validates; SPIKE's wire JSON lives in `spike_core::wire`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PolicyRecord", into = "PolicyRecord")]
pub struct Policy {
    id: String,
    name: String,
    spiffe_id_pattern: String,
    path_pattern: String,
    permissions: Vec<Permission>,
    created_at: OffsetDateTime,
}

impl Policy {
    /// Validates `spec` and makes a new policy with a fresh random id (UUID v4 format) and
    /// the current time as its creation time.
    pub fn create(spec: PolicySpec) -> Result<Self, PolicyError> {
        let id = new_policy_id()?;
        Self::from_parts(id, spec, OffsetDateTime::now_utc())
    }

    /// Rebuilds a policy from stored parts, validating them as [`Policy::create`] does.
    ///
    /// The id must be 1 to [`MAX_ID_LEN`] printable ASCII characters without spaces (SPIKE's
    /// ids are UUIDs).
    pub fn from_parts(
        id: String,
        spec: PolicySpec,
        created_at: OffsetDateTime,
    ) -> Result<Self, PolicyError> {
        check_id(&id)?;
        validate_policy_name(&spec.name).map_err(PolicyError::Name)?;
        let mut permissions = spec.permissions;
        permissions.sort_unstable();
        permissions.dedup();
        if permissions.is_empty() {
            return Err(PolicyError::NoPermissions);
        }
        let policy = Self {
            id,
            name: spec.name,
            spiffe_id_pattern: spec.spiffe_id_pattern,
            path_pattern: spec.path_pattern,
            permissions,
            created_at,
        };
        // Compiling is the pattern check; the compiled form is rebuilt by the policy set.
        CompiledPolicy::compile(&policy)?;
        Ok(policy)
    }

    /// The policy's unique id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The policy's human-readable name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SPIFFE ID pattern, as written.
    pub fn spiffe_id_pattern(&self) -> &str {
        &self.spiffe_id_pattern
    }

    /// The path pattern, as written.
    pub fn path_pattern(&self) -> &str {
        &self.path_pattern
    }

    /// The granted permissions, sorted and without duplicates.
    pub fn permissions(&self) -> &[Permission] {
        &self.permissions
    }

    /// When the policy was created.
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }

    /// True if this policy's permissions grant `wanted` (`super` grants everything). Says
    /// nothing about whether the patterns match; see [`crate::policy::PolicySet::decide`].
    pub fn grants(&self, wanted: Permission) -> bool {
        self.permissions.iter().any(|p| p.grants(wanted))
    }

    /// The request this policy was made from (for editing and re-validation).
    pub fn to_spec(&self) -> PolicySpec {
        PolicySpec {
            name: self.name.clone(),
            spiffe_id_pattern: self.spiffe_id_pattern.clone(),
            path_pattern: self.path_pattern.clone(),
            permissions: self.permissions.clone(),
        }
    }
}

/// The storage form of a [`Policy`]; deserialised records are validated by `TryFrom`.
#[derive(Serialize, Deserialize)]
struct PolicyRecord {
    id: String,
    name: String,
    spiffe_id_pattern: String,
    path_pattern: String,
    permissions: Vec<Permission>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

impl TryFrom<PolicyRecord> for Policy {
    type Error = PolicyError;

    fn try_from(r: PolicyRecord) -> Result<Self, Self::Error> {
        let spec = PolicySpec {
            name: r.name,
            spiffe_id_pattern: r.spiffe_id_pattern,
            path_pattern: r.path_pattern,
            permissions: r.permissions,
        };
        Policy::from_parts(r.id, spec, r.created_at)
    }
}

impl From<Policy> for PolicyRecord {
    fn from(p: Policy) -> Self {
        Self {
            id: p.id,
            name: p.name,
            spiffe_id_pattern: p.spiffe_id_pattern,
            path_pattern: p.path_pattern,
            permissions: p.permissions,
            created_at: p.created_at,
        }
    }
}

/// A fresh policy id: 16 random bytes formatted as a UUID version 4
/// (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`), the shape of SPIKE's ids.
pub fn new_policy_id() -> Result<String, PolicyError> {
    let mut b = [0u8; 16];
    fill_random(&mut b).map_err(PolicyError::IdGeneration)?;
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]))
}

fn check_id(id: &str) -> Result<(), PolicyError> {
    let reason = if id.is_empty() {
        "is empty"
    } else if id.len() > MAX_ID_LEN {
        "is longer than 128 bytes"
    } else if !id.bytes().all(|b| b.is_ascii_graphic()) {
        "must be printable ASCII without spaces, like a UUID"
    } else {
        return Ok(());
    };
    Err(PolicyError::Invalid { field: "id", reason: reason.to_owned() })
}

/// At most `max` bytes of `s` (on a character boundary), for echoing input in errors.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(perms: &[Permission]) -> PolicySpec {
        PolicySpec {
            name: "billing-read".into(),
            spiffe_id_pattern: r"spiffe://spike\.ist/billing".into(),
            path_pattern: "secrets/billing/.*".into(),
            permissions: perms.to_vec(),
        }
    }

    #[test]
    fn permissions_parse_only_spikes_lowercase_spelling() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()).unwrap(), p);
            assert_eq!(p.to_string().parse::<Permission>().unwrap(), p);
        }
        for bad in ["Read", "READ", " read", "read ", "", "admin", "supe"] {
            assert!(
                matches!(Permission::parse(bad), Err(PolicyError::UnknownPermission(_))),
                "{bad:?}"
            );
        }
        let err = Permission::parse("x".repeat(1000).as_str()).unwrap_err().to_string();
        assert!(err.len() < 200, "long input is truncated in errors");
    }

    #[test]
    fn permissions_serialize_as_lowercase_strings() {
        let json = serde_json::to_string(&Permission::ALL).unwrap();
        assert_eq!(json, r#"["read","write","list","execute","super"]"#);
        let back: Vec<Permission> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Permission::ALL);
        assert!(serde_json::from_str::<Permission>(r#""Write""#).is_err());
    }

    #[test]
    fn super_grants_everything_and_others_only_themselves() {
        for wanted in Permission::ALL {
            assert!(Permission::Super.grants(wanted));
        }
        assert!(Permission::Read.grants(Permission::Read));
        assert!(!Permission::Read.grants(Permission::Write));
        assert!(!Permission::Write.grants(Permission::Super));
    }

    #[test]
    fn created_policies_have_uuid_v4_ids_and_sorted_permissions() {
        use Permission::*;
        let p = Policy::create(spec(&[Write, Read, Write, List])).unwrap();
        assert_eq!(p.permissions(), [Read, Write, List]);
        let id = p.id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
        assert!(matches!(id.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
        assert!(id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
        assert_ne!(Policy::create(spec(&[Read])).unwrap().id(), id);
        assert_eq!(p.to_spec().name, "billing-read");
        assert!(p.grants(Read) && !p.grants(Execute));
    }

    #[test]
    fn invalid_policies_are_rejected() {
        use Permission::*;
        assert_eq!(Policy::create(spec(&[])).unwrap_err(), PolicyError::NoPermissions);
        for name in ["", " x", "x ", "a\nb", "a\u{7}b", "a/b", &"n".repeat(251)] {
            let mut s = spec(&[Read]);
            s.name = name.to_owned();
            assert!(matches!(Policy::create(s), Err(PolicyError::Name(_))), "{name:?}");
        }
        let mut s = spec(&[Read]);
        s.name = "db readers".into();
        assert!(Policy::create(s).is_ok());
        let mut s = spec(&[Read]);
        s.path_pattern = "(".into();
        assert!(matches!(Policy::create(s), Err(PolicyError::BadPattern { .. })));
        let mut s = spec(&[Read]);
        s.spiffe_id_pattern = "".into();
        assert!(matches!(Policy::create(s), Err(PolicyError::MatchesEverything { .. })));
        for id in ["", "has space", "tab\t", &"a".repeat(129)] {
            assert!(
                matches!(
                    Policy::from_parts(id.to_owned(), spec(&[Read]), OffsetDateTime::UNIX_EPOCH),
                    Err(PolicyError::Invalid { field: "id", .. })
                ),
                "{id:?}"
            );
        }
    }

    #[test]
    fn storage_form_round_trips_and_revalidates() {
        let p = Policy::create(spec(&[Permission::Read, Permission::Super])).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains(r#""permissions":["read","super"]"#), "{json}");
        let back: Policy = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        let tampered = json.replace(r"secrets/billing/.*", "");
        assert!(serde_json::from_str::<Policy>(&tampered).is_err());
    }
}
