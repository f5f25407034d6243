//! The one canonical validator for secret paths and policy names.
//!
//! A secret path is a `/`-separated list of segments, e.g. `app/db/password`. Validation is
//! strict rather than normalising: `a//b`, `./a`, `a/../b` and `/a` are *rejected*, never
//! rewritten, so two spellings can never reach the same secret and a policy written for one
//! spelling cannot be bypassed with another (DESIGN.md, "path normalisation and traversal").
//!
//! Limits (stated so clients can check before sending):
//! - paths: at most [`MAX_PATH_LEN`] bytes, [`MAX_SEGMENTS`] segments, [`MAX_SEGMENT_LEN`]
//!   bytes per segment; characters `A-Z a-z 0-9 - _ . ~ @ : + = ,` and `/` between segments.
//!   ASCII only, so Unicode look-alikes cannot impersonate another tenant's path; `%` is
//!   refused, so encoded forms (`%2e%2e`) cannot smuggle traversal past a proxy.
//! - policy names: at most [`MAX_POLICY_NAME_LEN`] bytes of `A-Z a-z 0-9 - _ .` and inner
//!   spaces.

use std::fmt;

use crate::error::PathError;

/// Maximum length of a secret path in bytes.
pub const MAX_PATH_LEN: usize = 1024;
/// Maximum length of one path segment in bytes.
pub const MAX_SEGMENT_LEN: usize = 255;
/// Maximum number of segments in a path.
pub const MAX_SEGMENTS: usize = 64;
/// Maximum length of a policy name in bytes.
pub const MAX_POLICY_NAME_LEN: usize = 250;
/// Prefixes reserved for spike-rs itself; ordinary writes under them are refused.
pub const RESERVED_PREFIXES: &[&str] = &["spike/system/"];

const PATH: &str = "secret path";
const NAME: &str = "policy name";

fn shown(input: &str) -> String {
    // Names are not secrets, but an error line should stay short and printable.
    input.chars().take(80).flat_map(char::escape_default).collect()
}

fn invalid(what: &'static str, input: &str, reason: &'static str) -> PathError {
    PathError::Invalid { what, input: shown(input), reason }
}

/// A validated secret path. Constructing one is the only way to pass a path to the store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretPath(String);

impl SecretPath {
    /// Validates `input` as a secret path (see the module docs for the rules).
    pub fn parse(input: &str) -> Result<Self, PathError> {
        if input.is_empty() {
            return Err(PathError::Empty { what: PATH });
        }
        if input.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong { what: PATH, len: input.len(), max: MAX_PATH_LEN });
        }
        if input.starts_with('/') {
            return Err(invalid(PATH, input, "it starts with '/'; write \"a/b\", not \"/a/b\""));
        }
        if input.ends_with('/') {
            return Err(invalid(PATH, input, "it ends with '/'; remove the trailing slash"));
        }
        if let Some(c) = input.chars().find(|c| !is_path_char(*c) && *c != '/') {
            return Err(invalid(
                PATH,
                input,
                if c.is_control() {
                    "it contains a control character"
                } else if c == '%' {
                    "it contains '%'; percent-encoded forms are not accepted, send the plain path"
                } else if c.is_whitespace() {
                    "it contains whitespace"
                } else if !c.is_ascii() {
                    "it contains a non-ASCII character; use A-Z a-z 0-9 - _ . ~ @ : + = ,"
                } else {
                    "it contains a character outside A-Z a-z 0-9 - _ . ~ @ : + = , and '/'"
                },
            ));
        }
        let mut segments = 0;
        for segment in input.split('/') {
            segments += 1;
            match segment {
                "" => return Err(invalid(PATH, input, "it has an empty segment ('//')")),
                "." | ".." => {
                    return Err(invalid(PATH, input, "it has a '.' or '..' segment"));
                }
                s if s.len() > MAX_SEGMENT_LEN => {
                    return Err(invalid(PATH, input, "a segment is longer than 255 bytes"));
                }
                _ => {}
            }
        }
        if segments > MAX_SEGMENTS {
            return Err(invalid(PATH, input, "it has more than 64 segments"));
        }
        Ok(Self(input.to_owned()))
    }

    /// Like [`SecretPath::parse`], and also refuses the [`RESERVED_PREFIXES`]: use this for
    /// paths that come from callers who want to write.
    pub fn parse_for_write(input: &str) -> Result<Self, PathError> {
        let path = Self::parse(input)?;
        if let Some(prefix) = RESERVED_PREFIXES.iter().find(|p| path.0.starts_with(**p)) {
            return Err(PathError::Reserved { input: shown(input), prefix });
        }
        Ok(path)
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True if this path equals `prefix` or lies below it (segment-wise, so `app` is a prefix
    /// of `app/db` but not of `application`). An empty prefix contains everything.
    pub fn starts_with_segments(&self, prefix: &str) -> bool {
        let prefix = prefix.trim_end_matches('/');
        prefix.is_empty()
            || self.0 == prefix
            || (self.0.starts_with(prefix) && self.0.as_bytes().get(prefix.len()) == Some(&b'/'))
    }
}

impl fmt::Display for SecretPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SecretPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '@' | ':' | '+' | '=' | ',')
}

/// Validates a policy name: non-empty, at most [`MAX_POLICY_NAME_LEN`] bytes of
/// `A-Z a-z 0-9 - _ .` and spaces that are neither leading nor trailing.
pub fn validate_policy_name(input: &str) -> Result<(), PathError> {
    if input.is_empty() {
        return Err(PathError::Empty { what: NAME });
    }
    if input.len() > MAX_POLICY_NAME_LEN {
        return Err(PathError::TooLong { what: NAME, len: input.len(), max: MAX_POLICY_NAME_LEN });
    }
    if input.starts_with(' ') || input.ends_with(' ') {
        return Err(invalid(NAME, input, "it starts or ends with a space"));
    }
    if !input.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ')) {
        return Err(invalid(NAME, input, "use only A-Z a-z 0-9 - _ . and inner spaces"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_paths() {
        for p in ["a", "app/db/password", "tenants/acme-1/db.creds", "x/y~z@w:1+2=3,4"] {
            assert_eq!(SecretPath::parse(p).unwrap().as_str(), p);
        }
    }

    #[test]
    fn rejects_traversal_and_ambiguous_spellings() {
        for p in [
            "",
            "/a",
            "a/",
            "a//b",
            ".",
            "..",
            "a/./b",
            "a/../b",
            "../a",
            "a/..",
            "a b",
            "a\tb",
            "a\0b",
            "a\nb",
            "a/%2e%2e/b",
            "a\u{2215}b",
            "аpp",
            "a\\b",
            "a/b ",
            " a",
        ] {
            assert!(SecretPath::parse(p).is_err(), "{p:?} should be rejected");
        }
    }

    #[test]
    fn limits_are_enforced_and_named() {
        let long = "a".repeat(MAX_PATH_LEN + 1);
        assert!(matches!(SecretPath::parse(&long), Err(PathError::TooLong { .. })));
        let seg = "a".repeat(MAX_SEGMENT_LEN + 1);
        let err = SecretPath::parse(&seg).unwrap_err().to_string();
        assert!(err.contains("255"), "{err}");
        let deep = vec!["a"; MAX_SEGMENTS + 1].join("/");
        assert!(SecretPath::parse(&deep).unwrap_err().to_string().contains("64 segments"));
        assert!(SecretPath::parse(&vec!["a"; MAX_SEGMENTS].join("/")).is_ok());
    }

    #[test]
    fn reserved_prefixes_are_refused_for_writes_only() {
        assert!(SecretPath::parse("spike/system/x").is_ok());
        let err = SecretPath::parse_for_write("spike/system/x").unwrap_err();
        assert!(matches!(err, PathError::Reserved { .. }));
        assert!(SecretPath::parse_for_write("spike/systemx").is_ok());
    }

    #[test]
    fn segment_prefixes_respect_boundaries() {
        let p = SecretPath::parse("app/db").unwrap();
        assert!(p.starts_with_segments("app"));
        assert!(p.starts_with_segments("app/"));
        assert!(p.starts_with_segments("app/db"));
        assert!(p.starts_with_segments(""));
        assert!(!p.starts_with_segments("ap"));
        assert!(!p.starts_with_segments("app/d"));
    }

    #[test]
    fn policy_names() {
        assert!(validate_policy_name("db readers").is_ok());
        for bad in ["", " x", "x ", "a/b", "a\nb", &"n".repeat(251)] {
            assert!(validate_policy_name(bad).is_err(), "{bad:?}");
        }
    }

    /// Reference model: a path is valid iff splitting on '/' gives 1..=64 segments, each
    /// 1..=255 allowed characters and not "." or "..", within 1024 bytes in total.
    fn reference_valid(p: &str) -> bool {
        let segs: Vec<&str> = p.split('/').collect();
        !p.is_empty()
            && p.len() <= MAX_PATH_LEN
            && segs.len() <= MAX_SEGMENTS
            && segs.iter().all(|s| {
                !s.is_empty()
                    && s.len() <= MAX_SEGMENT_LEN
                    && *s != "."
                    && *s != ".."
                    && s.chars().all(is_path_char)
            })
    }

    proptest! {
        #[test]
        fn parse_agrees_with_the_reference_model(p in "[a-c./%\\- ~\u{0}\u{e9}]{0,12}") {
            prop_assert_eq!(SecretPath::parse(&p).is_ok(), reference_valid(&p));
        }

        #[test]
        fn valid_paths_round_trip_unchanged(p in "[a-z0-9_-]{1,8}(/[a-z0-9_.-]{1,8}){0,6}") {
            prop_assume!(reference_valid(&p));
            let parsed = SecretPath::parse(&p).unwrap();
            prop_assert_eq!(parsed.as_str(), p.as_str());
        }
    }
}
