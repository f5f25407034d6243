//! Errors of `spike-server`. Configuration errors name the setting, the bad value and what is
//! accepted; nothing here ever carries secret material.

use thiserror::Error;

/// A configuration setting was invalid.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The value has the wrong form.
    #[error("{name}={value:?} is invalid: expected {expected}")]
    Invalid {
        /// The environment variable (or flag) name.
        name: &'static str,
        /// The rejected value.
        value: String,
        /// What would be accepted.
        expected: &'static str,
    },
    /// A number is outside its allowed range.
    #[error("{name}={value:?} is invalid: expected a whole number between {min} and {max}")]
    OutOfRange {
        /// The environment variable (or flag) name.
        name: &'static str,
        /// The rejected value.
        value: String,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// Settings conflict with each other.
    #[error("{0}")]
    Conflict(String),
    /// A `SPIKE_TRUST_ROOT*` list has an entry that is not a trust domain.
    #[error("{name}={value:?} is invalid: {reason}")]
    TrustRoot {
        /// The environment variable (or flag) name.
        name: &'static str,
        /// The rejected value, whole.
        value: String,
        /// Which entry is wrong and what is accepted.
        reason: spike_core::error::IdentityError,
    },
}

/// The dev Workload API agent (`spike-dev-agent`) could not start or do what was asked.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DevAgentError {
    /// The trust domain is not a valid SPIFFE trust domain name.
    #[error("trust domain {value:?} is invalid: {reason}; use a name like \"spike.ist\"")]
    TrustDomain {
        /// The rejected value.
        value: String,
        /// Why.
        reason: String,
    },
    /// A registration entry is malformed or conflicts with another.
    #[error("registration entry {entry:?} is invalid: {reason}")]
    Entry {
        /// The entry as written (flag value or name).
        entry: String,
        /// Why, and what is accepted.
        reason: String,
    },
    /// An option is out of range or contradicts another.
    #[error("{0}")]
    Option(String),
    /// A file or socket operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What we tried ("create", "read", "bind", ...).
        action: &'static str,
        /// The file, directory or socket.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The CA in the state directory cannot be used.
    #[error("the dev CA in {dir} cannot be used: {reason}")]
    Ca {
        /// The state directory.
        dir: std::path::PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// Certificate generation failed.
    #[error("cannot issue a certificate for {subject}: {reason}")]
    Issue {
        /// The SPIFFE ID (or "CA").
        subject: String,
        /// rcgen's reason.
        reason: String,
    },
    /// The agent's config file is unreadable or malformed.
    #[error("config file {path}: {reason}")]
    ConfigFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No registration entry has this name.
    #[error("no registration entry is named {0:?}; see the names the agent printed at start-up")]
    UnknownEntry(String),
}
