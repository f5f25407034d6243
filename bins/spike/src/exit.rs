//! Errors of the `spike` binary and the one table that turns them into exit codes:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | local error: bad arguments or input, files, nothing reachable, no identity |
//! | 2 | Nexus said no: permission denied, not found, conflict, invalid request, not ready, rate limited, server failure |
//!
//! `spike exec` exits with its command's code instead (128 + N when killed by signal N).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;

use spike_client::Error as ClientError;
use spike_core::error::chain;
use thiserror::Error;

/// Success.
pub const OK: u8 = 0;
/// A local error.
pub const LOCAL: u8 = 1;
/// Nexus refused or failed.
pub const SERVER_SAID_NO: u8 = 2;

/// Everything `spike` reports as a failure. Messages say what failed and what to do; none
/// carries a secret value.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CliError {
    /// The SDK failed, locally or because Nexus said no.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Arguments or input are unusable.
    #[error("{0}")]
    Usage(String),
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was tried ("read", "write", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Standard input or output failed.
    #[error("cannot {action} standard {stream}: {source}")]
    Stdio {
        /// What was tried.
        action: &'static str,
        /// "input" or "output".
        stream: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A policy of that name already exists (`policy create` does not replace).
    #[error("policy {0:?} already exists; use `spike policy apply` to replace it")]
    PolicyExists(String),
    /// Nexus refused an import as a whole (invalid items, or targets with other content);
    /// nothing was written.
    #[error("nothing was imported: {0}")]
    ImportRefused(String),
    /// Nexus found nothing at what the command named (the SDK's "not found", with the name).
    #[error("not found: {0}")]
    NotFound(String),
    /// Nexus could not open a ciphertext.
    #[error(
        "Nexus could not decrypt it: the ciphertext was altered or cut short, or it was made \
         under another key (another Nexus, or SPIKE's key after the legacy key was retired)"
    )]
    Undecryptable,
    /// The user declined a destructive operation.
    #[error("canceled; nothing was changed (pass --yes to skip the question)")]
    Canceled,
    /// A program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `spike dev` could not bring the system up or keep it running.
    #[error("spike dev: {0}")]
    Dev(String),
}

impl CliError {
    /// The exit code for this failure (see the module table).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Client(e) if server_said_no(e) => SERVER_SAID_NO,
            CliError::PolicyExists(_)
            | CliError::ImportRefused(_)
            | CliError::NotFound(_)
            | CliError::Undecryptable => SERVER_SAID_NO,
            _ => LOCAL,
        }
    }

    /// Shorthand for an I/O error on `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CliError::Io { action, path: path.into(), source }
    }
}

/// True when Nexus answered and refused or failed, as opposed to a local problem.
fn server_said_no(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Forbidden
            | ClientError::NotFound
            | ClientError::BadRequest(_)
            | ClientError::Conflict
            | ClientError::ImportRefused { .. }
            | ClientError::NotReady
            | ClientError::RateLimited { .. }
            | ClientError::Server { .. }
    )
}

/// The SPIFFE ID this process presented, once known, so a denial can say who was denied.
static CALLER: OnceLock<String> = OnceLock::new();

/// Remembers the caller's SPIFFE ID for error messages.
pub fn set_caller(id: String) {
    let _ = CALLER.set(id);
}

/// Prints `err` to standard error and returns its exit code.
pub fn report(err: &CliError) -> ExitCode {
    eprintln!("Error: {}", message(err));
    if let Some(hint) = hint(err) {
        eprintln!("hint: {hint}");
    }
    ExitCode::from(err.exit_code())
}

fn message(err: &CliError) -> String {
    match err {
        CliError::Client(ClientError::Forbidden) => {
            let who = CALLER.get().map(String::as_str).unwrap_or("this SPIFFE ID");
            format!("permission denied: no policy lets {who} do this")
        }
        other => chain(other),
    }
}

fn hint(err: &CliError) -> Option<String> {
    match err {
        CliError::Client(ClientError::Forbidden) => {
            let who = CALLER.get().map(|id| regex_escape(id)).unwrap_or_else(|| "ID".into());
            Some(format!(
                "an operator can grant it, e.g. `spike policy create --name NAME \
                 --spiffe-id-pattern '^{who}$' --path-pattern '^PATH/.*$' --permissions read`"
            ))
        }
        CliError::Client(
            ClientError::EndpointNotSet
            | ClientError::NexusUnreachable { .. }
            | ClientError::WorkloadApiUnreachable { .. },
        ) => Some("for a local system run `spike dev`, then `source .spike-dev/env`".into()),
        _ => None,
    }
}

/// Escapes regex metacharacters, so a SPIFFE ID can go into a policy pattern as a literal.
pub fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_refusals_exit_2_and_local_failures_exit_1() {
        assert_eq!(CliError::Client(ClientError::Forbidden).exit_code(), 2);
        assert_eq!(CliError::Client(ClientError::NotFound).exit_code(), 2);
        assert_eq!(CliError::Client(ClientError::NotReady).exit_code(), 2);
        assert_eq!(CliError::Client(ClientError::EndpointNotSet).exit_code(), 1);
        let unreachable = ClientError::NexusUnreachable { url: "u".into(), reason: "r".into() };
        assert_eq!(CliError::Client(unreachable).exit_code(), 1);
        assert_eq!(CliError::Usage("x".into()).exit_code(), 1);
        assert_eq!(CliError::Canceled.exit_code(), 1);
    }

    #[test]
    fn spiffe_ids_become_literal_patterns() {
        assert_eq!(regex_escape("spiffe://spike.ist/a-b"), r"spiffe://spike\.ist/a-b");
        assert_eq!(regex_escape("a+b(c)"), r"a\+b\(c\)");
    }
}
