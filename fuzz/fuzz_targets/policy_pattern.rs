//! Policy pattern compile + match (DESIGN.md "pattern injection into policies"): a pattern
//! must match whole strings only, whatever it contains (`)|(`, flags, comments), patterns that
//! match everything by accident are refused, and a `PolicySet`'s combined automata must decide
//! exactly as its policies do one by one.
//!
//! Input, line by line: permissions of policies A and B (`rwlxs` letters, `A|B`), A's SPIFFE ID
//! pattern, A's path pattern, B's SPIFFE ID pattern, B's path pattern, then subjects as
//! alternating SPIFFE ID and path lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regex::RegexBuilder;
use spike_core::policy::{
    AnchoredPattern, CompiledPolicy, Decision, MATCH_EVERYTHING, PATTERN_SIZE_LIMIT, PatternField,
    Permission, Policy, PolicySet, PolicySpec,
};
use time::OffsetDateTime;

fn permissions(letters: &str) -> Vec<Permission> {
    letters
        .chars()
        .filter_map(|c| match c {
            'r' => Some(Permission::Read),
            'w' => Some(Permission::Write),
            'l' => Some(Permission::List),
            'x' => Some(Permission::Execute),
            's' => Some(Permission::Super),
            _ => None,
        })
        .collect()
}

/// What "matches the whole string" means, built independently with `\A` and `\z`.
fn reference(pattern: &str) -> Option<regex::Regex> {
    RegexBuilder::new(&format!(r"\A(?:{pattern})\z")).size_limit(PATTERN_SIZE_LIMIT).build().ok()
}

fn check_pattern(pattern: &str, subjects: &[&str]) {
    let Ok(compiled) = AnchoredPattern::compile(PatternField::Path, pattern) else { return };
    assert_eq!(compiled.as_str(), pattern);
    let explicit = pattern == MATCH_EVERYTHING || pattern == "^.*$";
    if !explicit {
        // Matching the empty string means "matches everything" under SPIKE's unanchored
        // semantics: such patterns must have been refused.
        assert!(!compiled.is_match(""), "{pattern:?} accepted yet matches the empty string");
    }
    if let Some(reference) = reference(pattern) {
        for s in subjects {
            assert_eq!(
                compiled.is_match(s),
                reference.is_match(s),
                "{pattern:?} on {s:?}: anchoring differs from \\A(?:...)\\z"
            );
        }
    }
}

fn policy(id: &str, perms: &[Permission], id_pattern: &str, path_pattern: &str) -> Option<Policy> {
    let spec = PolicySpec {
        name: id.into(),
        spiffe_id_pattern: id_pattern.into(),
        path_pattern: path_pattern.into(),
        permissions: perms.to_vec(),
    };
    Policy::from_parts(id.into(), spec, OffsetDateTime::UNIX_EPOCH).ok()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let perms = lines.next().unwrap_or("");
    let (perms_a, perms_b) = perms.split_once('|').unwrap_or((perms, ""));
    let patterns: Vec<&str> = lines.by_ref().take(4).collect();
    let subjects: Vec<&str> = lines.take(16).collect();
    for p in &patterns {
        check_pattern(p, &subjects);
    }
    let [id_a, path_a, id_b, path_b] = patterns[..] else { return };
    let a = policy("a", &permissions(perms_a), id_a, path_a);
    let b = policy("b", &permissions(perms_b), id_b, path_b);
    let policies: Vec<Policy> = [a, b].into_iter().flatten().collect();
    let compiled: Vec<CompiledPolicy> =
        policies.iter().map(|p| CompiledPolicy::compile(p).expect("validated policy")).collect();
    let Ok(set) = PolicySet::new(compiled.iter().cloned()) else { return };
    assert_eq!(set.len(), policies.len());

    for pair in subjects.chunks(2) {
        let [spiffe_id, path] = pair else { continue };
        for wanted in Permission::ALL {
            // The combined automata must agree with the policies evaluated one by one, in
            // order (first allowing policy wins), with default deny.
            let expected = compiled
                .iter()
                .find(|c| c.allows(spiffe_id, path, wanted))
                .map_or(Decision::Deny, |c| Decision::Allow { policy_id: c.id().into() });
            assert_eq!(set.decide(spiffe_id, path, wanted), expected, "{spiffe_id:?} {path:?}");
        }
        assert_eq!(set.decide_all(spiffe_id, path, &[]), Decision::Deny);
        let both = [Permission::Read, Permission::Write];
        let all_in_one =
            compiled.iter().any(|c| both.iter().all(|w| c.allows(spiffe_id, path, *w)));
        assert_eq!(set.decide_all(spiffe_id, path, &both).is_allowed(), all_in_one);
    }
});
