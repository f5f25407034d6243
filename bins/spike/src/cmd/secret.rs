//! `spike secret put|get|list|delete|undelete|destroy|metadata`.

use std::collections::BTreeMap;

use spike_client::spike_core::secret::SecretValues;
use zeroize::Zeroizing;

use super::{client, confirm, read_stdin};
use crate::cli::{Connection, Format, SecretCmd};
use crate::exit::CliError;
use crate::output;

/// Runs one `spike secret` subcommand.
pub async fn run(conn: &Connection, cmd: SecretCmd) -> Result<(), CliError> {
    match cmd {
        SecretCmd::Put { path, pairs, cas } => {
            let values = parse_pairs(&pairs, read_stdin)?;
            let spike = client(conn).await?;
            match cas {
                Some(expected) => spike.put_secret_cas(&path, values, expected).await?,
                None => spike.put_secret(&path, values).await?,
            }
            output::line("OK")
        }
        SecretCmd::Get { path, key, version, field, format } => {
            let field = match (key, field) {
                (Some(k), Some(f)) if k != f => {
                    return Err(CliError::Usage(format!(
                        "both KEY {k:?} and --field {f:?} given; use one"
                    )));
                }
                (k, f) => k.or(f),
            };
            let spike = client(conn).await?;
            let which = match version {
                Some(v) if v > 0 => format!("no version {v} of {path:?}"),
                _ => format!("no current version of {path:?}"),
            };
            let values = spike.get_secret_version(&path, version.unwrap_or(0)).await.map_err(
                super::not_found(format!(
                    "{which}: it never existed, or was deleted, destroyed or pruned"
                )),
            )?;
            print_values(&path, &values, field.as_deref(), format.format)
        }
        SecretCmd::List { prefix, format } => {
            let spike = client(conn).await?;
            let mut keys = spike.list_secrets().await?;
            if let Some(prefix) = &prefix {
                keys.retain(|k| k.starts_with(prefix.as_str()));
            }
            keys.sort();
            match format.format {
                Format::Table => {
                    if keys.is_empty() {
                        eprintln!("No secrets found.");
                    }
                    output::stdout(
                        keys.iter().map(|k| format!("{k}\n")).collect::<String>().as_bytes(),
                    )
                }
                f => output::print_structured(f, &keys),
            }
        }
        SecretCmd::Delete { path, versions } => {
            client(conn)
                .await?
                .delete_secret(&path, &versions)
                .await
                .map_err(super::not_found(format!("no secret at {path:?} to delete")))?;
            output::line("OK")
        }
        SecretCmd::Undelete { path, versions } => {
            client(conn)
                .await?
                .undelete_secret(&path, &versions)
                .await
                .map_err(super::not_found(format!("nothing to undelete at {path:?}")))?;
            output::line("OK")
        }
        SecretCmd::Destroy { path, versions, yes } => {
            if !yes {
                let which = if versions.is_empty() {
                    "the current version".to_owned()
                } else {
                    format!("versions {versions:?}")
                };
                confirm(&format!("Permanently destroy {which} of {path}? This cannot be undone."))?;
            }
            client(conn).await?.destroy_secret(&path, &versions).await?;
            output::line("OK")
        }
        SecretCmd::Metadata { args, version, format } => {
            let path = match args.as_slice() {
                [path] => path,
                [get, path] if get == "get" => path,
                _ => {
                    return Err(CliError::Usage(
                        "usage: spike secret metadata PATH (or SPIKE's `metadata get PATH`)".into(),
                    ));
                }
            };
            let meta =
                client(conn).await?.secret_metadata_at(path, version.unwrap_or(0)).await.map_err(
                    super::not_found(format!(
                        "no metadata for {path:?}: no such secret, or every version is deleted"
                    )),
                )?;
            match format.format {
                Format::Table => output::stdout(metadata_table(&meta).as_bytes()),
                f => output::print_structured(f, &meta),
            }
        }
    }
}

/// Parses `put`'s arguments: `k=v`, `k=-` (value from `stdin`, once), or a lone `-` (all
/// pairs from `stdin`: a JSON object or `k=v` lines). Errors never echo a value.
pub fn parse_pairs(
    args: &[String],
    stdin: impl FnOnce() -> Result<Zeroizing<Vec<u8>>, CliError>,
) -> Result<SecretValues, CliError> {
    if let [only] = args
        && only == "-"
    {
        return parse_stdin_pairs(&stdin()?);
    }
    let mut stdin = Some(stdin);
    let mut values = SecretValues::new();
    for (i, arg) in args.iter().enumerate() {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(CliError::Usage(format!(
                "argument {} is not KEY=VALUE (no '='); use KEY=-, or `-` alone, to read from \
                 standard input",
                i + 2
            )));
        };
        check_key(key, values.get(key).is_some())?;
        if value == "-" {
            let read = stdin.take().ok_or_else(|| {
                CliError::Usage("only one KEY=- may read its value from standard input".into())
            })?;
            let bytes = read()?;
            let text = std::str::from_utf8(&bytes).map_err(|_| {
                CliError::Usage(format!("the value of {key:?} on standard input is not UTF-8"))
            })?;
            // `echo secret | spike secret put p k=-` should not store the newline.
            let text = text.strip_suffix('\n').unwrap_or(text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            values.insert(key, text);
        } else {
            values.insert(key, value);
        }
    }
    Ok(values)
}

fn parse_stdin_pairs(bytes: &[u8]) -> Result<SecretValues, CliError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| CliError::Usage("standard input is not UTF-8".into()))?;
    if text.trim_start().starts_with('{') {
        return SecretValues::from_json(text.as_bytes()).map_err(|e| {
            CliError::Usage(format!("standard input is not a JSON object of strings: {e}"))
        });
    }
    let mut values = SecretValues::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| {
            CliError::Usage(format!("line {} of standard input is not KEY=VALUE", n + 1))
        })?;
        check_key(key, values.get(key).is_some())?;
        values.insert(key, value);
    }
    if values.is_empty() {
        return Err(CliError::Usage("standard input holds no KEY=VALUE pairs".into()));
    }
    Ok(values)
}

fn check_key(key: &str, duplicate: bool) -> Result<(), CliError> {
    if key.is_empty() {
        return Err(CliError::Usage("a KEY=VALUE pair has an empty key".into()));
    }
    if duplicate {
        return Err(CliError::Usage(format!("key {key:?} is given twice")));
    }
    Ok(())
}

/// Prints values (or one field) in `format`.
fn print_values(
    path: &str,
    values: &SecretValues,
    field: Option<&str>,
    format: Format,
) -> Result<(), CliError> {
    if let Some(field) = field {
        let value = values.get(field).ok_or_else(|| {
            let keys: Vec<&str> = values.keys().collect();
            CliError::Usage(format!(
                "secret {path} has no key {field:?}; its keys are: {}",
                keys.join(", ")
            ))
        })?;
        return match format {
            Format::Table => output::line(value),
            f => output::print_structured(f, value),
        };
    }
    match format {
        Format::Table => {
            let mut text = Zeroizing::new(String::new());
            for (k, v) in values.iter() {
                text.push_str(k);
                text.push_str(": ");
                text.push_str(v);
                text.push('\n');
            }
            output::stdout(text.as_bytes())
        }
        f => {
            // Borrowed strings: the values are not copied into non-zeroizing memory.
            let map: BTreeMap<&str, &str> = values.iter().collect();
            output::print_structured(f, &map)
        }
    }
}

fn metadata_table(meta: &spike_client::api::secrets::SecretMetadata) -> String {
    let m = &meta.metadata;
    let rule = "-".repeat(50);
    let mut out = format!(
        "Metadata:\n{rule}\nCurrent Version : {}\nOldest Version  : {}\nCreated Time    : {}\n\
         Last Updated    : {}\nMax Versions    : {}\n{rule}\n",
        m.current_version,
        m.oldest_version,
        output::human_time(&m.created_time),
        output::human_time(&m.updated_time),
        m.max_versions,
    );
    if let Some(versions) = meta.versions.as_ref().filter(|v| !v.is_empty()) {
        out.push_str(&format!("\nSecret Versions:\n{rule}\n"));
        for (n, info) in versions {
            out.push_str(&format!(
                "Version {n}:\n  Created: {}\n",
                output::human_time(&info.created_time)
            ));
            if let Some(deleted) = &info.deleted_time {
                out.push_str(&format!("  Deleted: {}\n", output::human_time(deleted)));
            }
            out.push_str(&rule);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn no_stdin() -> Result<Zeroizing<Vec<u8>>, CliError> {
        panic!("stdin must not be read")
    }

    #[test]
    fn pairs_split_at_the_first_equals_sign() {
        let v = parse_pairs(&args(&["user=u", "url=a=b", "empty="]), no_stdin).unwrap();
        assert_eq!(v.get("user"), Some("u"));
        assert_eq!(v.get("url"), Some("a=b"));
        assert_eq!(v.get("empty"), Some(""));
    }

    #[test]
    fn a_dash_value_comes_from_stdin_without_its_newline() {
        let stdin = || Ok(Zeroizing::new(b"s3cret\n".to_vec()));
        let v = parse_pairs(&args(&["user=u", "pass=-"]), stdin).unwrap();
        assert_eq!(v.get("pass"), Some("s3cret"));
        let twice = parse_pairs(&args(&["a=-", "b=-"]), || Ok(Zeroizing::new(b"x".to_vec())));
        assert!(twice.unwrap_err().to_string().contains("only one"));
    }

    #[test]
    fn a_lone_dash_reads_lines_or_json() {
        let lines = || Ok(Zeroizing::new(b"# comment\nuser=u\n\npass=p=q\n".to_vec()));
        let v = parse_pairs(&args(&["-"]), lines).unwrap();
        assert_eq!((v.get("user"), v.get("pass")), (Some("u"), Some("p=q")));
        let json = || Ok(Zeroizing::new(br#"{"a": "1", "b": "2"}"#.to_vec()));
        assert_eq!(parse_pairs(&args(&["-"]), json).unwrap().len(), 2);
        let bad = || Ok(Zeroizing::new(b"novalue-canary\n".to_vec()));
        let err = parse_pairs(&args(&["-"]), bad).unwrap_err().to_string();
        assert!(err.contains("line 1") && !err.contains("canary"), "{err}");
    }

    #[test]
    fn errors_never_echo_values() {
        let err = parse_pairs(&args(&["k=v", "canary-value"]), no_stdin).unwrap_err().to_string();
        assert!(err.contains("argument 3") && !err.contains("canary"), "{err}");
        let err = parse_pairs(&args(&["k=1", "k=2"]), no_stdin).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
        assert!(parse_pairs(&args(&["=v"]), no_stdin).is_err());
    }
}
