//! `spike policy create|apply|get|list|delete`.

use serde::Deserialize;
use spike_client::spike_core::policy::Permission;

use super::{client, confirm, read_file, read_stdin};
use crate::cli::{Connection, Format, PolicyCmd, PolicyFlags};
use crate::exit::CliError;
use crate::output;

/// A policy as `apply --file` reads it (SPIKE's YAML field names; snake_case also accepted).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Policy name.
    pub name: String,
    /// SPIFFE ID pattern.
    #[serde(
        rename = "spiffeidPattern",
        alias = "spiffeIdPattern",
        alias = "spiffe_id_pattern",
        alias = "spiffiedPattern"
    )]
    pub spiffe_id_pattern: String,
    /// Path pattern.
    #[serde(rename = "pathPattern", alias = "path_pattern")]
    pub path_pattern: String,
    /// Permissions.
    pub permissions: Vec<String>,
}

/// A complete, checked policy.
#[derive(Debug)]
struct Spec {
    name: String,
    spiffe_id_pattern: String,
    path_pattern: String,
    permissions: Vec<Permission>,
}

/// Runs one `spike policy` subcommand.
pub async fn run(conn: &Connection, cmd: PolicyCmd) -> Result<(), CliError> {
    match cmd {
        PolicyCmd::Create { policy } => {
            let spec = from_flags(&policy)?;
            let spike = client(conn).await?;
            // Through list, as SPIKE's CLI checks: a SPIKE Nexus answers `get` of a missing
            // policy with 500, and `create` then needs no `read` that `apply` does not.
            let existing = spike.list_policies(None, None).await?;
            if existing.iter().any(|p| p.name == spec.name) {
                return Err(CliError::PolicyExists(spec.name));
            }
            put(&spike, &spec).await?;
            output::line(&format!("Policy '{}' created.", spec.name))
        }
        PolicyCmd::Apply { file, policy } => {
            let spec = match &file {
                Some(path) => {
                    if policy.name.is_some()
                        || policy.spiffe_id_pattern.is_some()
                        || policy.path_pattern.is_some()
                        || policy.permissions.is_some()
                    {
                        return Err(CliError::Usage(
                            "give either --file or the policy flags, not both".into(),
                        ));
                    }
                    let bytes =
                        if path.as_os_str() == "-" { read_stdin()? } else { read_file(path)? };
                    from_file(&bytes, &path.display().to_string())?
                }
                None => from_flags(&policy)?,
            };
            let spike = client(conn).await?;
            put(&spike, &spec).await?;
            output::line(&format!("Policy '{}' applied.", spec.name))
        }
        PolicyCmd::Get { name, name_flag, format } => {
            let name = one_name(name, name_flag)?;
            let policy = client(conn)
                .await?
                .get_policy(&name)
                .await
                .map_err(super::not_found(format!("no policy named {name:?}")))?;
            match format.format {
                Format::Table => {
                    let perms: Vec<&str> =
                        policy.permissions.iter().flatten().map(|p| p.as_str()).collect();
                    let mut text = format!(
                        "Name: {}\nSPIFFE ID Pattern: {}\nPath Pattern: {}\nPermissions: {}\n",
                        policy.name,
                        policy.spiffeid_pattern,
                        policy.path_pattern,
                        perms.join(", ")
                    );
                    text.push_str(&format!(
                        "Created At: {}\n",
                        output::human_time(&policy.created_at)
                    ));
                    text.push_str(&format!(
                        "Updated At: {}\n",
                        output::human_time(&policy.updated_at)
                    ));
                    output::stdout(text.as_bytes())
                }
                f => output::print_structured(f, &policy),
            }
        }
        PolicyCmd::List { spiffe_id_pattern, path_pattern, format } => {
            let spike = client(conn).await?;
            let mut policies =
                spike.list_policies(spiffe_id_pattern.as_deref(), path_pattern.as_deref()).await?;
            policies.sort_by(|a, b| a.name.cmp(&b.name));
            match format.format {
                Format::Table => {
                    if policies.is_empty() {
                        eprintln!("No policies found.");
                    }
                    let text: String = policies.iter().map(|p| format!("{}\n", p.name)).collect();
                    output::stdout(text.as_bytes())
                }
                f => output::print_structured(f, &policies),
            }
        }
        PolicyCmd::Delete { name, name_flag, yes } => {
            let name = one_name(name, name_flag)?;
            if !yes {
                confirm(&format!("Delete policy '{name}'?"))?;
            }
            client(conn)
                .await?
                .delete_policy(&name)
                .await
                .map_err(super::not_found(format!("no policy named {name:?}")))?;
            output::line(&format!("Policy '{name}' deleted."))
        }
    }
}

async fn put(spike: &spike_client::Spike, spec: &Spec) -> Result<(), CliError> {
    spike
        .create_policy(&spec.name, &spec.spiffe_id_pattern, &spec.path_pattern, &spec.permissions)
        .await?;
    Ok(())
}

fn one_name(arg: Option<String>, flag: Option<String>) -> Result<String, CliError> {
    match (arg, flag) {
        (Some(a), Some(f)) if a != f => {
            Err(CliError::Usage(format!("two names given ({a:?} and --name {f:?}); use one")))
        }
        (Some(n), _) | (None, Some(n)) => Ok(n),
        (None, None) => Err(CliError::Usage("give the policy name (or --name NAME)".into())),
    }
}

fn from_flags(f: &PolicyFlags) -> Result<Spec, CliError> {
    let mut missing = Vec::new();
    if f.name.is_none() {
        missing.push("--name");
    }
    if f.spiffe_id_pattern.is_none() {
        missing.push("--spiffe-id-pattern");
    }
    if f.path_pattern.is_none() {
        missing.push("--path-pattern");
    }
    if f.permissions.is_none() {
        missing.push("--permissions");
    }
    if !missing.is_empty() {
        return Err(CliError::Usage(format!("missing {}", missing.join(", "))));
    }
    let perms: Vec<String> = f
        .permissions
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    spec(
        f.name.clone().unwrap_or_default(),
        f.spiffe_id_pattern.clone().unwrap_or_default(),
        f.path_pattern.clone().unwrap_or_default(),
        &perms,
    )
}

fn from_file(bytes: &[u8], what: &str) -> Result<Spec, CliError> {
    // YAML is a superset of JSON, so one parser reads both.
    let file: PolicyFile = serde_norway::from_slice(bytes)
        .map_err(|e| CliError::Usage(format!("policy file {what} is not a valid policy: {e}")))?;
    spec(file.name, file.spiffe_id_pattern, file.path_pattern, &file.permissions)
}

fn spec(
    name: String,
    spiffe_id_pattern: String,
    path_pattern: String,
    permissions: &[String],
) -> Result<Spec, CliError> {
    if name.trim().is_empty() || spiffe_id_pattern.is_empty() || path_pattern.is_empty() {
        return Err(CliError::Usage(
            "a policy needs a name, a SPIFFE ID pattern and a path pattern".into(),
        ));
    }
    if permissions.is_empty() {
        return Err(CliError::Usage(
            "a policy needs at least one permission: read, write, list, execute or super".into(),
        ));
    }
    let permissions = permissions
        .iter()
        .map(|p| {
            Permission::parse(p).map_err(|_| {
                CliError::Usage(format!(
                    "unknown permission {p:?}; use read, write, list, execute or super"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Check it here as Nexus will (name, both patterns), so a bad regex is named before
    // anything is sent (issue 18).
    let check = spike_core::policy::PolicySpec {
        name: name.clone(),
        spiffe_id_pattern: spiffe_id_pattern.clone(),
        path_pattern: path_pattern.clone(),
        permissions: permissions.clone(),
    };
    spike_core::policy::Policy::from_parts("check".into(), check, time::OffsetDateTime::now_utc())
        .map_err(|e| CliError::Usage(format!("policy {name:?}: {e}")))?;
    Ok(Spec { name, spiffe_id_pattern, path_pattern, permissions })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spike_yaml_policy_files_parse() {
        let yaml = b"name: db-access\nspiffeidPattern: ^spiffe://example\\.org/service/.*$\n\
                     pathPattern: ^secrets/db/.*$\npermissions:\n  - read\n  - write\n";
        let s = from_file(yaml, "p.yaml").unwrap();
        assert_eq!(s.name, "db-access");
        assert_eq!(s.spiffe_id_pattern, r"^spiffe://example\.org/service/.*$");
        assert_eq!(s.permissions, vec![Permission::Read, Permission::Write]);
        let json =
            br#"{"name":"n","spiffeidPattern":"a","pathPattern":"b","permissions":["list"]}"#;
        assert_eq!(from_file(json, "p.json").unwrap().permissions, vec![Permission::List]);
    }

    #[test]
    fn bad_policies_say_what_is_wrong() {
        let err =
            from_file(b"name: n\nspiffeidPattern: a\npathPattern: b\npermissions: [fly]\n", "f")
                .unwrap_err()
                .to_string();
        assert!(err.contains("\"fly\"") && err.contains("read, write"), "{err}");
        let err = from_file(b"name: n\ntypo: 1\n", "f").unwrap_err().to_string();
        assert!(err.contains("policy file f"), "{err}");
        let flags = PolicyFlags {
            name: Some("n".into()),
            spiffe_id_pattern: None,
            path_pattern: Some("p".into()),
            permissions: None,
        };
        let err = from_flags(&flags).unwrap_err().to_string();
        assert_eq!(err, "missing --spiffe-id-pattern, --permissions");
    }
}
