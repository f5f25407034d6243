//! How a secret's keys become environment variables, for `spike exec` and any launcher that
//! hands secrets to a child process through its environment.
//!
//! This module is pure: it maps names and checks them; spawning processes is the caller's job.
//!
//! The rule, in full: each character of a key that is an ASCII letter, digit or `_` is kept
//! (upper-cased unless [`EnvMapping::keep_case`] is set), every other character becomes `_`,
//! and the [prefix](EnvMapping::prefix) goes in front. The result must be a portable
//! environment variable name (`[A-Za-z_][A-Za-z0-9_]*`, POSIX.1-2017 §8.1), and two keys may
//! not map to the same name: both are errors that name the keys (never the values).
//!
//! ```
//! use spike_client::exec::EnvMapping;
//! use spike_client::spike_core::secret::SecretValues;
//!
//! let db: SecretValues = [("username", "u"), ("pass-word", "p")].into_iter().collect();
//! let env = EnvMapping::new().prefix("DB_").map(&[("tenants/app/db", &db)])?;
//! let names: Vec<&str> = env.iter().map(|(name, _)| name).collect();
//! assert_eq!(names, ["DB_PASS_WORD", "DB_USERNAME"]);
//! assert_eq!(env.get("DB_USERNAME"), Some("u"));
//! # Ok::<(), spike_client::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;

use spike_core::secret::SecretValues;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Longest variable name produced; longer keys are refused rather than truncated (a truncated
/// name could silently collide with another).
pub const MAX_NAME_LEN: usize = 255;

/// Settings that turn secret keys into environment variable names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvMapping {
    prefix: String,
    keep_case: bool,
}

impl Default for EnvMapping {
    fn default() -> Self {
        Self::new()
    }
}

impl EnvMapping {
    /// No prefix, keys upper-cased: `password` becomes `PASSWORD`.
    pub fn new() -> Self {
        Self { prefix: String::new(), keep_case: false }
    }

    /// Puts `prefix` in front of every name (e.g. `"DB_"`); it is used as given, not
    /// upper-cased, and must itself be a valid start of a variable name.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Keeps the keys' letter case instead of upper-casing them.
    pub fn keep_case(mut self, keep: bool) -> Self {
        self.keep_case = keep;
        self
    }

    /// The variable name for `key`, or why there is none.
    pub fn var_name(&self, key: &str) -> Result<String> {
        let prefix_ok = self.prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !self.prefix.starts_with(|c: char| c.is_ascii_digit());
        if !prefix_ok {
            return Err(Error::InvalidInput {
                what: format!("environment prefix {:?}", self.prefix),
                reason: "a prefix may hold only ASCII letters, digits and '_', and may not \
                         start with a digit"
                    .into(),
            });
        }
        let mut name = self.prefix.clone();
        name.extend(key.chars().map(|c| match c {
            c if c.is_ascii_alphanumeric() || c == '_' => {
                if self.keep_case {
                    c
                } else {
                    c.to_ascii_uppercase()
                }
            }
            _ => '_',
        }));
        let bad = |reason: &str| Error::InvalidInput {
            what: format!("secret key {key:?}"),
            reason: reason.to_owned(),
        };
        if name.is_empty() {
            return Err(bad("an empty key has no environment variable name"));
        }
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad(&format!(
                "it would become {name:?}, and a variable name may not start with a digit; set \
                 a prefix such as \"S_\""
            )));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(bad(&format!(
                "its variable name would be {} bytes long; the limit is {MAX_NAME_LEN}",
                name.len()
            )));
        }
        Ok(name)
    }

    /// Maps the values of each `(path, values)` pair into one environment. Keys of different
    /// secrets share one namespace, so a name made twice is an error naming both origins.
    pub fn map(&self, secrets: &[(&str, &SecretValues)]) -> Result<SecretEnv> {
        let mut env = SecretEnv::default();
        for (path, values) in secrets {
            for (key, value) in values.iter() {
                let name = self.var_name(key)?;
                let origin = format!("{path}:{key}");
                if let Some(first) = env.origins.get(&name) {
                    return Err(Error::InvalidInput {
                        what: format!("secret keys {first} and {origin}"),
                        reason: format!(
                            "both map to the environment variable {name}; rename one of the \
                             keys or run them with different prefixes"
                        ),
                    });
                }
                env.vars.insert(name.clone(), Zeroizing::new(value.to_owned()));
                env.origins.insert(name, origin);
            }
        }
        Ok(env)
    }
}

/// Environment variables made from secrets: names in order, values zeroized on drop.
///
/// `Debug` shows the names and where each came from, never a value.
#[derive(Default, Clone)]
pub struct SecretEnv {
    vars: BTreeMap<String, Zeroizing<String>>,
    origins: BTreeMap<String, String>,
}

impl fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.origins.iter().map(|(n, o)| (n, format!("<{o}>")))).finish()
    }
}

impl SecretEnv {
    /// `(name, value)` pairs in name order, for `Command::envs`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of variable `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(|v| v.as_str())
    }

    /// Where variable `name` came from, as `path:key`.
    pub fn origin(&self, name: &str) -> Option<&str> {
        self.origins.get(name).map(String::as_str)
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> SecretValues {
        pairs.iter().copied().collect()
    }

    #[test]
    fn keys_are_upper_cased_and_punctuation_becomes_underscore() {
        let m = EnvMapping::new();
        assert_eq!(m.var_name("db.pass-word/x y").unwrap(), "DB_PASS_WORD_X_Y");
        assert_eq!(m.var_name("naïve").unwrap(), "NA_VE");
        assert_eq!(EnvMapping::new().keep_case(true).var_name("apiKey").unwrap(), "apiKey");
        assert_eq!(EnvMapping::new().prefix("App_").var_name("k").unwrap(), "App_K");
    }

    #[test]
    fn names_that_cannot_be_variables_are_refused_with_a_way_out() {
        let err = EnvMapping::new().var_name("1password").unwrap_err().to_string();
        assert!(err.contains("digit") && err.contains("prefix"), "{err}");
        assert_eq!(EnvMapping::new().prefix("S_").var_name("1password").unwrap(), "S_1PASSWORD");
        let err = EnvMapping::new().prefix("9").var_name("k").unwrap_err().to_string();
        assert!(err.contains("prefix"), "{err}");
        let err = EnvMapping::new().prefix("A-").var_name("k").unwrap_err().to_string();
        assert!(err.contains("prefix"), "{err}");
        assert!(EnvMapping::new().var_name(&"k".repeat(300)).is_err());
    }

    #[test]
    fn collisions_name_both_keys_but_no_value() {
        let a = values(&[("db-user", "canary-a")]);
        let b = values(&[("db_user", "canary-b")]);
        let err = EnvMapping::new().map(&[("x/a", &a), ("x/b", &b)]).unwrap_err().to_string();
        assert!(err.contains("x/a:db-user") && err.contains("x/b:db_user"), "{err}");
        assert!(err.contains("DB_USER"), "{err}");
        assert!(!err.contains("canary"), "{err}");
        let same = values(&[("a.b", "1"), ("a-b", "2")]);
        assert!(EnvMapping::new().map(&[("p", &same)]).is_err());
    }

    #[test]
    fn several_secrets_merge_and_debug_hides_values() {
        let a = values(&[("user", "canary-u")]);
        let b = values(&[("token", "canary-t")]);
        let env = EnvMapping::new().prefix("S_").map(&[("p/a", &a), ("p/b", &b)]).unwrap();
        assert_eq!(env.len(), 2);
        assert_eq!(env.get("S_USER"), Some("canary-u"));
        assert_eq!(env.origin("S_TOKEN"), Some("p/b:token"));
        let debug = format!("{env:?}");
        assert!(debug.contains("S_USER") && !debug.contains("canary"), "{debug}");
        assert!(EnvMapping::new().map(&[]).unwrap().is_empty());
    }
}
