//! Registration entries: which SPIFFE ID a caller gets, by socket or by Unix selector, and the
//! agent's optional TOML config file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use spiffe::{SpiffeId, TrustDomain};
use spike_core::identity::Role;

use super::DevAgentBuilder;
use crate::error::DevAgentError;

/// The shared socket's stem (`agent.sock`); no entry may take this name.
pub const SHARED_SOCKET_NAME: &str = "agent";

/// A property of a caller that the agent can check (like SPIRE's `unix` workload attestor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Selector {
    /// `unix:uid:N`: the caller's user ID, read with SO_PEERCRED.
    UnixUid(u32),
}

impl FromStr for Selector {
    type Err = DevAgentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || DevAgentError::Entry {
            entry: s.to_owned(),
            reason: "selectors look like \"unix:uid:1000\"".into(),
        };
        let uid = s.strip_prefix("unix:uid:").ok_or_else(bad)?;
        uid.parse().map(Selector::UnixUid).map_err(|_| bad())
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::UnixUid(uid) => write!(f, "unix:uid:{uid}"),
        }
    }
}

/// One identity the agent hands out: on its own socket `<socket dir>/<name>.sock`, and on the
/// shared `agent.sock` to callers matching any of its selectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationEntry {
    name: String,
    spiffe_id: SpiffeId,
    selectors: Vec<Selector>,
}

impl RegistrationEntry {
    /// An entry named `name` (letters, digits, `.`, `_`, `-`; used as the socket name) for
    /// the SPIFFE ID `spiffe_id`.
    pub fn new(name: impl Into<String>, spiffe_id: &str) -> Result<Self, DevAgentError> {
        let name = name.into();
        let bad = |reason: String| DevAgentError::Entry { entry: name.clone(), reason };
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            return Err(bad(
                "a name is 1-64 letters, digits, '.', '_' or '-' and does not start with '.'"
                    .into(),
            ));
        }
        if name == SHARED_SOCKET_NAME {
            return Err(bad(format!("{SHARED_SOCKET_NAME:?} is reserved for the shared socket")));
        }
        let spiffe_id = SpiffeId::new(spiffe_id)
            .map_err(|e| bad(format!("{spiffe_id:?} is not a SPIFFE ID: {e}")))?;
        if spiffe_id.path().is_empty() {
            return Err(bad(format!("{spiffe_id} has no path; an X509-SVID names a workload")));
        }
        Ok(Self { name, spiffe_id, selectors: Vec::new() })
    }

    /// Parses the `--entry` flag form: `NAME=SPIFFE_ID[,SELECTOR...]`, e.g.
    /// `app=spiffe://spike.ist/app,unix:uid:1000`.
    pub fn parse(spec: &str) -> Result<Self, DevAgentError> {
        let (name, rest) = spec.split_once('=').ok_or_else(|| DevAgentError::Entry {
            entry: spec.to_owned(),
            reason: "expected NAME=SPIFFE_ID[,unix:uid:N...]".into(),
        })?;
        let mut parts = rest.split(',');
        let id = parts.next().unwrap_or_default();
        let mut entry = Self::new(name, id)?;
        for selector in parts {
            entry = entry.with_selector(selector.parse()?);
        }
        Ok(entry)
    }

    /// Adds a selector, so callers on the shared socket that match it get this identity.
    pub fn with_selector(mut self, selector: Selector) -> Self {
        if !self.selectors.contains(&selector) {
            self.selectors.push(selector);
        }
        self
    }

    /// The entry's name (and socket name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SPIFFE ID handed out.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The selectors that grant this identity on the shared socket.
    pub fn selectors(&self) -> &[Selector] {
        &self.selectors
    }

    /// Whether a caller with Unix user ID `uid` matches.
    pub(super) fn matches_uid(&self, uid: u32) -> bool {
        self.selectors.contains(&Selector::UnixUid(uid))
    }
}

/// SPIKE's well-known identities in `trust_domain` (nexus, keeper, bootstrap, pilot roles,
/// lite workload), one socket each (named by `Role::short_name`), no selectors.
pub fn default_entries(
    trust_domain: &TrustDomain,
) -> Result<Vec<RegistrationEntry>, DevAgentError> {
    Role::ALL
        .into_iter()
        .map(|role| {
            RegistrationEntry::new(role.short_name(), &role.spiffe_id(trust_domain.as_str()))
        })
        .collect()
}

/// The agent's TOML config file. Every field is optional; flags given on the command line win.
///
/// ```toml
/// trust_domain = "spike.ist"
/// svid_ttl = "1h"
/// jwt_svid_ttl = "5m"
/// jwt_key_rotation = "1h"
/// socket_dir = "/tmp/spike-dev-agent"
/// default_entries = true
///
/// [[entry]]
/// name = "my-app"
/// spiffe_id = "spiffe://spike.ist/my/app"
/// selectors = ["unix:uid:1000"]
///
/// [[write_svid]]
/// name = "my-app"
/// dir = "/tmp/my-app-svid"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfigFile {
    /// Trust domain of the CA and every entry.
    pub trust_domain: Option<String>,
    /// Where the CA is kept.
    pub state_dir: Option<PathBuf>,
    /// Where the sockets are made.
    pub socket_dir: Option<PathBuf>,
    /// SVID lifetime, Go style ("1h", "30s").
    pub svid_ttl: Option<String>,
    /// JWT-SVID lifetime, Go style ("5m").
    pub jwt_svid_ttl: Option<String>,
    /// How often the JWT signing key is replaced, Go style ("1h").
    pub jwt_key_rotation: Option<String>,
    /// Whether to register SPIKE's well-known identities too.
    pub default_entries: Option<bool>,
    /// Extra registration entries.
    #[serde(default, rename = "entry")]
    pub entries: Vec<EntryConfig>,
    /// Identities to keep written to disk as spiffe-helper files.
    #[serde(default)]
    pub write_svid: Vec<WriteSvidConfig>,
}

/// One `[[entry]]` of [`AgentConfigFile`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryConfig {
    /// Entry and socket name.
    pub name: String,
    /// SPIFFE ID handed out.
    pub spiffe_id: String,
    /// Selectors such as "unix:uid:1000".
    #[serde(default)]
    pub selectors: Vec<String>,
}

/// One `[[write_svid]]` of [`AgentConfigFile`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteSvidConfig {
    /// The entry whose SVID is written.
    pub name: String,
    /// The directory for svid.pem, svid_key.pem and bundle.pem.
    pub dir: PathBuf,
}

impl AgentConfigFile {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, DevAgentError> {
        let text = std::fs::read_to_string(path).map_err(|source| DevAgentError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses TOML `text`; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, DevAgentError> {
        toml::from_str(text).map_err(|e| DevAgentError::ConfigFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Applies the file's settings to `builder` (call before applying flags, so flags win).
    pub fn apply(&self, mut builder: DevAgentBuilder) -> Result<DevAgentBuilder, DevAgentError> {
        if let Some(td) = &self.trust_domain {
            builder = builder.trust_domain(td);
        }
        if let Some(dir) = &self.state_dir {
            builder = builder.state_dir(dir);
        }
        if let Some(dir) = &self.socket_dir {
            builder = builder.socket_dir(dir);
        }
        if let Some(ttl) = &self.svid_ttl {
            let ttl = crate::config::parse_duration("svid_ttl", ttl)
                .map_err(|e| DevAgentError::Option(e.to_string()))?;
            builder = builder.svid_ttl(ttl);
        }
        if let Some(ttl) = &self.jwt_svid_ttl {
            let ttl = crate::config::parse_duration("jwt_svid_ttl", ttl)
                .map_err(|e| DevAgentError::Option(e.to_string()))?;
            builder = builder.jwt_svid_ttl(ttl);
        }
        if let Some(interval) = &self.jwt_key_rotation {
            let interval = crate::config::parse_duration("jwt_key_rotation", interval)
                .map_err(|e| DevAgentError::Option(e.to_string()))?;
            builder = builder.jwt_key_rotation(interval);
        }
        if let Some(defaults) = self.default_entries {
            builder = builder.default_entries(defaults);
        }
        for e in &self.entries {
            let mut entry = RegistrationEntry::new(&e.name, &e.spiffe_id)?;
            for s in &e.selectors {
                entry = entry.with_selector(s.parse()?);
            }
            builder = builder.entry(entry);
        }
        for w in &self.write_svid {
            builder = builder.write_svid(&w.name, &w.dir);
        }
        Ok(builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_flags_parse_name_id_and_selectors() {
        let e = RegistrationEntry::parse("app=spiffe://spike.ist/app,unix:uid:1000,unix:uid:7")
            .unwrap();
        assert_eq!(e.name(), "app");
        assert_eq!(e.spiffe_id().to_string(), "spiffe://spike.ist/app");
        assert_eq!(e.selectors(), [Selector::UnixUid(1000), Selector::UnixUid(7)]);
        assert!(e.matches_uid(7) && !e.matches_uid(8));
        for bad in [
            "app",
            "=spiffe://spike.ist/app",
            "app=https://spike.ist/app",
            "app=spiffe://spike.ist",
            "app=spiffe://spike.ist/app,uid:1",
            "a/b=spiffe://spike.ist/app",
            "agent=spiffe://spike.ist/app",
        ] {
            let err = RegistrationEntry::parse(bad).unwrap_err().to_string();
            assert!(err.contains("registration entry"), "{bad}: {err}");
        }
        assert_eq!(Selector::UnixUid(42).to_string(), "unix:uid:42");
    }

    #[test]
    fn defaults_are_spikes_well_known_ids() {
        let td = TrustDomain::new("example.org").unwrap();
        let entries = default_entries(&td).unwrap();
        assert_eq!(entries.len(), Role::ALL.len());
        let nexus = entries.iter().find(|e| e.name() == "nexus").unwrap();
        assert_eq!(nexus.spiffe_id().to_string(), "spiffe://example.org/spike/nexus");
        assert!(entries.iter().all(|e| e.selectors().is_empty()));
    }

    #[test]
    fn config_file_parses_and_applies_under_flags() {
        let text = r#"
            trust_domain = "example.org"
            svid_ttl = "90s"
            jwt_svid_ttl = "2m"
            jwt_key_rotation = "30m"
            default_entries = false

            [[entry]]
            name = "app"
            spiffe_id = "spiffe://example.org/app"
            selectors = ["unix:uid:1000"]

            [[write_svid]]
            name = "app"
            dir = "/tmp/app-svid"
        "#;
        let file = AgentConfigFile::parse(text, Path::new("agent.toml")).unwrap();
        let agent = file.apply(super::super::DevAgent::builder()).unwrap().build().unwrap();
        assert_eq!(agent.entries().len(), 1);
        assert_eq!(agent.entries()[0].selectors(), [Selector::UnixUid(1000)]);

        let err = AgentConfigFile::parse("bogus = 1", Path::new("agent.toml")).unwrap_err();
        assert!(err.to_string().contains("agent.toml"), "{err}");
        let bad_ttl = AgentConfigFile::parse("svid_ttl = \"soon\"", Path::new("a.toml")).unwrap();
        assert!(bad_ttl.apply(super::super::DevAgent::builder()).is_err());
        for bad in ["jwt_svid_ttl = \"soon\"", "jwt_key_rotation = \"-\""] {
            let file = AgentConfigFile::parse(bad, Path::new("a.toml")).unwrap();
            let err = file.apply(super::super::DevAgent::builder()).unwrap_err().to_string();
            assert!(err.contains(bad.split(' ').next().unwrap()), "{err}");
        }
        let short = AgentConfigFile::parse("jwt_svid_ttl = \"1s\"", Path::new("a.toml")).unwrap();
        let err = short.apply(super::super::DevAgent::builder()).unwrap().build().unwrap_err();
        assert!(err.to_string().contains("too short"), "{err}");
    }
}
