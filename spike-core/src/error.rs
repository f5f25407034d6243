//! The crate's error type: one `Error` with a sub-enum per concern, each variant saying what
//! failed and what to do. No variant ever carries secret material.

use thiserror::Error;

/// Any error from `spike-core`.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A secret path or policy name was rejected.
    #[error(transparent)]
    Path(#[from] PathError),
    /// Encryption, decryption or key handling failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Splitting or recombining the root key failed.
    #[error(transparent)]
    Shamir(#[from] ShamirError),
    /// A policy was invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The storage layer failed or refused an operation.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Secret values could not be decoded.
    #[error(transparent)]
    SecretValues(#[from] SecretValuesError),
    /// A trust domain list (`SPIKE_TRUST_ROOT*`) was rejected.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// Why a trust domain (an entry of a `SPIKE_TRUST_ROOT*` list) was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// The list had no trust domain at all, or an empty entry (e.g. `a.org,,b.org`).
    #[error(
        "the list has an empty entry; give trust domains separated by commas, e.g. \"spike.ist,example.org\""
    )]
    EmptyEntry,
    /// An entry is not a SPIFFE trust domain name.
    #[error(
        "{entry:?} is not a trust domain name: {reason} (a trust domain is lower-case letters, \
         digits, '.', '-' and '_', without \"spiffe://\" or a path, e.g. \"spike.ist\")"
    )]
    InvalidTrustDomain {
        /// The rejected entry.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Why a secret path or policy name was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// The input was empty.
    #[error("{what} is empty; give a name like \"app/db/password\"")]
    Empty {
        /// "secret path" or "policy name".
        what: &'static str,
    },
    /// The input was longer than allowed.
    #[error("{what} is {len} bytes long; the limit is {max} bytes")]
    TooLong {
        /// "secret path" or "policy name".
        what: &'static str,
        /// Actual length.
        len: usize,
        /// Maximum length.
        max: usize,
    },
    /// The input had a structural problem (leading `/`, `//`, `.`, `..`, control characters...).
    #[error("{what} {input:?} is invalid: {reason}")]
    Invalid {
        /// "secret path" or "policy name".
        what: &'static str,
        /// The rejected input (a name, never a secret value), truncated for display.
        input: String,
        /// What is wrong and how to fix it.
        reason: &'static str,
    },
    /// The path lies under a prefix reserved for spike-rs itself.
    #[error("secret path {input:?} is under the reserved prefix {prefix:?}; choose another path")]
    Reserved {
        /// The rejected path.
        input: String,
        /// The reserved prefix it starts with.
        prefix: &'static str,
    },
}

/// Why an encryption, decryption or key operation failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// The OS random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Rng(String),
    /// A record did not authenticate: wrong key, wrong path/version binding, or tampering.
    #[error(
        "record failed authentication: it was tampered with, moved to another path or version, \
         or sealed under a different key"
    )]
    Integrity,
    /// A record was structurally malformed (too short, unknown format byte, ...).
    #[error("record is malformed: {0}")]
    Malformed(&'static str),
    /// A record names a keyring term this keyring does not hold.
    #[error("record was sealed under keyring term {0}, which this keyring does not hold")]
    UnknownTerm(u32),
    /// A keyring term has sealed as many records as is safe with random nonces.
    #[error("keyring term {term} reached its encryption limit; rotate the keyring")]
    TermExhausted {
        /// The exhausted term.
        term: u32,
    },
    /// The root key does not match the key check value stored with the data.
    #[error(
        "the root key does not match this data store's key check value; \
         refusing to use it (wrong shards or a different deployment's key?)"
    )]
    WrongRootKey,
}

/// Why a Shamir split or recombination failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShamirError {
    /// The threshold/share-count combination is not allowed.
    #[error("invalid Shamir parameters (threshold {threshold}, shares {shares}): {reason}")]
    InvalidParameters {
        /// Requested threshold `t`.
        threshold: usize,
        /// Requested share count `n`.
        shares: usize,
        /// What is wrong and what is allowed.
        reason: &'static str,
    },
    /// A share had index 0, which would be the secret itself.
    #[error("share index 0 is invalid; share indices are 1-based")]
    ZeroIndex,
    /// Two shares had the same index.
    #[error("share index {0} was given twice; each share must come from a different Keeper")]
    DuplicateIndex(u8),
    /// Shares had different lengths.
    #[error("shares have mixed lengths ({first} and {other} bytes); all shares must be 32 bytes")]
    MixedLength {
        /// Length of the first share.
        first: usize,
        /// Length of a differing share.
        other: usize,
    },
    /// Shares all had the same length, but not 32 bytes.
    #[error("share {index} is {len} bytes long; Keeper shares are exactly 32 bytes")]
    BadLength {
        /// Index of the first share.
        index: u8,
        /// Its length in bytes.
        len: usize,
    },
    /// A share's bytes are not a valid P-256 scalar.
    #[error(
        "share {0} is not a valid P-256 scalar (it is not below the group order); \
         the share is corrupted or not a spike Keeper share"
    )]
    InvalidShare(u8),
    /// The root key is not a non-zero P-256 scalar, so it cannot be split.
    #[error(
        "the root key is not a valid P-256 scalar (it is zero or not below the group order) \
         and cannot be split; make root keys with shamir::generate_root_key"
    )]
    KeyOutOfRange,
    /// Fewer shares than the threshold were given.
    #[error("need {threshold} shares to recover the root key, got {got}")]
    NotEnoughShares {
        /// Shares required.
        threshold: usize,
        /// Shares given.
        got: usize,
    },
    /// The shares recombined to a key that fails the key check value.
    #[error(
        "the shares do not recombine to the expected root key (key check value mismatch); \
         at least one share is wrong or from another deployment"
    )]
    CheckFailed,
    /// The underlying secret-sharing library failed.
    #[error("secret sharing failed: {0}")]
    Library(String),
}

/// Why a policy was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// A pattern failed to compile as a regular expression.
    #[error("{field} {pattern:?} is not a valid regular expression: {reason}")]
    BadPattern {
        /// "spiffeidPattern" or "pathPattern".
        field: &'static str,
        /// The rejected pattern.
        pattern: String,
        /// The compiler's explanation.
        reason: String,
    },
    /// A pattern would match everything without saying so explicitly.
    #[error("{field} {pattern:?} matches everything; write \".*\" explicitly if that is intended")]
    MatchesEverything {
        /// "spiffeidPattern" or "pathPattern".
        field: &'static str,
        /// The rejected pattern.
        pattern: String,
    },
    /// A permission name was not one of SPIKE's.
    #[error("unknown permission {0:?}; use read, write, list, execute or super")]
    UnknownPermission(String),
    /// The policy grants no permissions.
    #[error("a policy needs at least one permission (read, write, list, execute, super)")]
    NoPermissions,
    /// The policy name was rejected by [`crate::path::validate_policy_name`].
    #[error(transparent)]
    Name(PathError),
    /// A fresh policy id could not be generated (the OS random number generator failed).
    #[error("could not generate a policy id: {0}")]
    IdGeneration(CryptoError),
    /// A field was invalid for another reason.
    #[error("policy field {field} is invalid: {reason}")]
    Invalid {
        /// The field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Why a storage operation failed or was refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed (I/O, corruption, closed database).
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// No secret exists at the path (or the chosen version does not exist / was destroyed).
    #[error("no secret at that path and version")]
    NotFound,
    /// The chosen version is soft-deleted; undelete it first.
    #[error("that version is deleted; undelete it first")]
    Deleted,
    /// A check-and-set write saw a different current version.
    #[error("check-and-set failed: expected current version {expected}, found {actual}")]
    CasMismatch {
        /// The version the caller expected.
        expected: u64,
        /// The version actually current (0 if the secret does not exist).
        actual: u64,
    },
    /// A stored record could not be decrypted or decoded.
    #[error("stored record is unreadable: {0}")]
    Corrupt(#[from] CryptoError),
    /// The request was invalid (e.g. empty values, version 0).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A record could not be encrypted for storage (RNG failure, or the keyring term is used
    /// up); nothing was written.
    #[error("could not encrypt a record for storage: {0}")]
    Seal(CryptoError),
    /// The disk under the store is full, or a quota or file-size limit was reached; the write
    /// was refused. The text is the backend's own account (e.g. the OS error).
    #[error(
        "the store is out of space ({0}); free space on the store's disk or raise its quota \
         (a sled store then needs a restart of the process)"
    )]
    NoSpace(String),
    /// Concurrent writers kept changing the same record; nothing was written.
    #[error(
        "the record kept changing under concurrent writers ({attempts} attempts); nothing was \
         written, retry the request"
    )]
    Contention {
        /// How many times the write was attempted.
        attempts: u32,
    },
}

/// Why secret values could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretValuesError {
    /// The bytes were not a JSON object of strings. The position is given; the input is not
    /// echoed, since it may be a secret.
    #[error("secret values are not a JSON object of strings (line {line}, column {column})")]
    Malformed {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
}

/// Causes [`chain`] follows at most (a guard against pathological `source` chains).
const MAX_CAUSES: usize = 16;

/// `e` and its causes ([`std::error::Error::source`]) joined with `": "` for a message, each
/// text once: a cause whose text the message already contains (because a wrapper printed it
/// with `{0}`) is not repeated. Keeps the root cause (e.g. "connection refused") in messages.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    let mut depth = 0;
    while let Some(c) = cause {
        depth += 1;
        if depth > MAX_CAUSES {
            break;
        }
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// True for the I/O errors that mean "no room to write": a full disk (`ENOSPC`), an exhausted
/// quota (`EDQUOT`) or a file-size limit (`EFBIG`). Stores report these as
/// [`StoreError::NoSpace`] so that callers can be told what to fix.
pub fn is_out_of_space(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Error)]
    #[error("cannot reach Nexus")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, Error)]
    #[error("store failed: {0}")]
    struct Echoing(#[source] std::io::Error);

    #[test]
    fn out_of_space_is_recognised_from_the_os_error_codes() {
        for (code, full) in [(28, true), (122, true), (27, true), (5, false), (13, false)] {
            let e = std::io::Error::from_raw_os_error(code);
            assert_eq!(is_out_of_space(&e), full, "errno {code}: {e}");
        }
    }

    #[test]
    fn chain_joins_causes_once_each() {
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(chain(&Outer(refused())), "cannot reach Nexus: refused");
        assert_eq!(chain(&Echoing(refused())), "store failed: refused");
        assert_eq!(chain(&refused()), "refused");
    }
}
