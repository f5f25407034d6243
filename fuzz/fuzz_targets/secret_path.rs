//! Secret-path and policy-name canonicalisation (DESIGN.md "path normalisation and
//! traversal"): `SecretPath::parse` must agree with an independent reference model of the
//! rules, never rewrite what it accepts, and never accept a spelling that could alias another
//! path (`.`, `..`, `//`, `%2e`, whitespace, Unicode look-alikes).
//!
//! Input: `path` or `path\nprefix` (the prefix exercises `starts_with_segments`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spike_core::crypto::RecordKind;
use spike_core::path::{
    MAX_PATH_LEN, MAX_POLICY_NAME_LEN, MAX_SEGMENT_LEN, MAX_SEGMENTS, RESERVED_PREFIXES,
    SecretPath, validate_policy_name,
};
use spike_core::store::keys;

/// The rules, restated from the module docs without looking at the implementation.
fn reference_path(p: &str) -> bool {
    let allowed = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, '-' | '_' | '.' | '~' | '@' | ':' | '+' | '=' | ',')
    };
    let segments: Vec<&str> = p.split('/').collect();
    !p.is_empty()
        && p.len() <= MAX_PATH_LEN
        && segments.len() <= MAX_SEGMENTS
        && segments.iter().all(|s| {
            !s.is_empty()
                && s.len() <= MAX_SEGMENT_LEN
                && *s != "."
                && *s != ".."
                && s.chars().all(allowed)
        })
}

fn reference_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_POLICY_NAME_LEN
        && !n.starts_with(' ')
        && !n.ends_with(' ')
        && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (input, prefix) = text.split_once('\n').unwrap_or((&text, ""));

    let parsed = SecretPath::parse(input);
    assert_eq!(parsed.is_ok(), reference_path(input), "parse disagrees with the model: {input:?}");
    match &parsed {
        Ok(path) => {
            // Validated, never rewritten: one spelling per secret.
            assert_eq!(path.as_str(), input);
            assert!(input.is_ascii() && !input.contains('%') && !input.contains("//"));
            // Writes additionally refuse the reserved prefixes, and nothing else.
            let reserved = RESERVED_PREFIXES.iter().any(|r| input.starts_with(r));
            assert_eq!(SecretPath::parse_for_write(input).is_ok(), !reserved);
            // Storage keys map back to exactly this path: no two paths share a record.
            let version = u64::from_le_bytes(
                prefix
                    .as_bytes()
                    .get(..8)
                    .map_or([7; 8], |b| <[u8; 8]>::try_from(b).unwrap_or([7; 8])),
            );
            let meta = keys::metadata(input);
            assert_eq!(keys::record_binding(&meta), Some((RecordKind::SecretMetadata, input, 0)));
            assert_eq!(keys::metadata_path(&meta), Some(input));
            let ver = keys::version(input, version);
            let bound = keys::record_binding(&ver);
            assert_eq!(bound, Some((RecordKind::SecretVersion, input, version)));
            assert_eq!(keys::metadata_path(&ver), None);
            // Segment-wise prefix: `app` covers `app/db`, never `application`.
            if path.starts_with_segments(prefix) {
                let p = prefix.trim_end_matches('/');
                assert!(
                    p.is_empty() || input == p || input.starts_with(&format!("{p}/")),
                    "{input:?} claimed to lie under {prefix:?}"
                );
            }
        }
        Err(e) => {
            // Errors name the input, but bounded and escaped: no log or body flooding.
            let msg = e.to_string();
            assert!(msg.len() < 1200, "error message is {} bytes", msg.len());
            assert!(!msg.contains('\n') && !msg.contains('\r'), "unescaped newline: {msg:?}");
            assert!(SecretPath::parse_for_write(input).is_err());
        }
    }

    let named = validate_policy_name(input);
    assert_eq!(named.is_ok(), reference_name(input), "policy name disagrees: {input:?}");
    if let Err(e) = named {
        let msg = e.to_string();
        assert!(msg.len() < 1200 && !msg.contains('\n'), "{msg:?}");
    }
});
