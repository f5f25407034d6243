//! Anchored, precompiled policy matching.
//!
//! Every pattern is compiled once, anchored as `^(?:pattern)$`, when a [`CompiledPolicy`] is
//! built; [`PolicySet::decide`] only runs the compiled automata, so evaluating a thousand
//! policies compiles nothing.

use std::sync::Arc;

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use crate::error::PolicyError;
use crate::policy::model::{Permission, Policy, truncate};

/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;

/// Most heap a compiled pattern may use (`RegexBuilder::size_limit`), so a short pattern with
/// nested counted repetitions (`(a{100}){100}`) cannot make Nexus allocate without bound.
/// Ordinary patterns fit in a few KiB; Unicode classes under counted repetition are what
/// grow (`\w{1,64}` needs about 4 MiB), and ASCII classes (`[a-z0-9_]{1,64}`) avoid that.
pub const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// Cache budget of each pattern's lazy DFA (`RegexBuilder::dfa_size_limit`); beyond it the
/// regex engine falls back to slower but bounded-memory search.
pub const PATTERN_DFA_SIZE_LIMIT: usize = 256 * 1024;

/// Cache budget of the lazy DFA of a [`PolicySet`]'s combined automata (one for SPIFFE IDs,
/// one for paths). Its states track many policies at once, so it gets more room than a single
/// pattern's.
pub const SET_DFA_SIZE_LIMIT: usize = 8 << 20;

/// The explicit "match everything" pattern. Patterns that match everything in any other
/// spelling are rejected with [`PolicyError::MatchesEverything`].
pub const MATCH_EVERYTHING: &str = ".*";

/// Spellings of [`MATCH_EVERYTHING`] that are accepted as explicit (`^.*$` is how SPIKE's
/// documentation writes it).
const EXPLICIT_MATCH_EVERYTHING: [&str; 2] = [MATCH_EVERYTHING, "^.*$"];

/// Inputs a pattern must not match all of, unless it is the explicit [`MATCH_EVERYTHING`]:
/// a pattern that accepts SPIFFE IDs, paths, single characters and non-ASCII text alike is a
/// wildcard in disguise (`.+`, `(?s).*`, `[^\n]*`, ...). Newlines are absent on purpose: `.`
/// does not match them, and neither SPIFFE IDs nor secret paths contain them.
const EVERYTHING_PROBES: [&str; 12] = [
    "a",
    "Z",
    "0",
    "/",
    "-",
    " ",
    "ü",
    "秘密",
    "spiffe://spike.ist/spike/pilot/role/superuser",
    "spiffe://example.org/ns/prod/sa/billing",
    "secrets/db/password",
    "tenants/acme/api-keys/stripe",
];

/// Which policy field a pattern belongs to, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternField {
    /// The SPIFFE ID pattern (`spiffeidPattern` on SPIKE's wire).
    SpiffeId,
    /// The path pattern (`pathPattern` on SPIKE's wire).
    Path,
}

impl PatternField {
    /// The field's name on SPIKE's wire, as used in error messages.
    pub fn wire_name(self) -> &'static str {
        match self {
            PatternField::SpiffeId => "spiffeidPattern",
            PatternField::Path => "pathPattern",
        }
    }
}

/// A policy pattern compiled to match whole strings only.
///
/// SPIKE Go matches policy patterns *unanchored* (`regexp.MatchString`), so there
/// `spiffe://spike.ist/app` also matches `spiffe://spike.ist/app/evil` and
/// `xspiffe://spike.ist/app`: a pattern written for one workload silently covers others.
/// Here a pattern must match the entire SPIFFE ID or path. Write `secrets/app/.*` for a
/// prefix and [`MATCH_EVERYTHING`] for everything.
///
/// Rejected, so a typo cannot widen access:
/// - [`PolicyError::MatchesEverything`]: the empty pattern and any pattern whose anchored
///   form matches the empty string (`|`, `(?:)`, `a*`, `.*?`, ...) — each of those matches
///   *every* string under SPIKE's unanchored semantics, so its intent is ambiguous — and any
///   other spelling of a wildcard (`.+`, `(?s).*`); only `.*` (or `^.*$`) says "everything".
/// - [`PolicyError::BadPattern`]: patterns that do not compile on their own (checked before
///   anchoring, so `a)|(b` cannot break out of the anchoring group), that exceed
///   [`MAX_PATTERN_LEN`] bytes or [`PATTERN_SIZE_LIMIT`] compiled, or that cannot be anchored
///   (a `(?x)` comment swallowing the closing anchor).
#[derive(Debug, Clone)]
pub struct AnchoredPattern {
    source: String,
    regex: Regex,
}

impl AnchoredPattern {
    /// Compiles `pattern` for `field`, anchored, rejecting the patterns listed above.
    pub fn compile(field: PatternField, pattern: &str) -> Result<Self, PolicyError> {
        let field_name = field.wire_name();
        let bad = |reason: String| PolicyError::BadPattern {
            field: field_name,
            pattern: truncate(pattern, 128),
            reason,
        };
        let everything = || PolicyError::MatchesEverything {
            field: field_name,
            pattern: truncate(pattern, 128),
        };

        if pattern.is_empty() {
            return Err(everything());
        }
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(bad(format!(
                "it is {} bytes long; the limit is {MAX_PATTERN_LEN} bytes",
                pattern.len()
            )));
        }
        // Compile the pattern on its own first: a pattern valid by itself has balanced
        // groups, so wrapping it in `(?:...)` below cannot be escaped by a stray `)`.
        build(pattern).map_err(|e| bad(explain(pattern, e)))?;
        let regex = build(&anchored(pattern)).map_err(|e| {
            bad(format!("it cannot be anchored to match whole strings ({})", first_line(&e)))
        })?;

        if !EXPLICIT_MATCH_EVERYTHING.contains(&pattern)
            && (regex.is_match("") || EVERYTHING_PROBES.iter().all(|p| regex.is_match(p)))
        {
            return Err(everything());
        }
        Ok(Self { source: pattern.to_owned(), regex })
    }

    /// True if `input` matches the whole pattern.
    pub fn is_match(&self, input: &str) -> bool {
        self.regex.is_match(input)
    }

    /// The pattern as written (without the anchoring).
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

fn build(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_DFA_SIZE_LIMIT)
        .build()
}

fn explain(pattern: &str, e: regex::Error) -> String {
    match e {
        regex::Error::CompiledTooBig(limit) => {
            format!(
                "it compiles to more than {limit} bytes; simplify it (fewer counted \
                 repetitions, or ASCII classes like [a-z0-9_] instead of \\w)"
            )
        }
        e if pattern.starts_with('*') || pattern.starts_with('+') => format!(
            "{}; patterns are regular expressions, not globs: write \".*\" for \"anything\"",
            first_line(&e)
        ),
        e => first_line(&e),
    }
}

/// The regex crate's errors are multi-line (they draw the pattern with a caret); keep the
/// message, which is the last non-empty line.
fn first_line(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("invalid pattern").trim().to_owned()
}

/// Permissions as a bit set, for allocation-free checks during evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PermissionMask(u8);

impl PermissionMask {
    fn of(permissions: &[Permission]) -> Self {
        Self(permissions.iter().fold(0, |m, p| m | Self::bit(*p)))
    }

    fn bit(p: Permission) -> u8 {
        1 << (p as u8)
    }

    /// SPIKE's rule: `super` grants everything, otherwise every wanted permission must be held.
    fn grants(self, wanted: PermissionMask) -> bool {
        self.0 & Self::bit(Permission::Super) != 0 || self.0 & wanted.0 == wanted.0
    }
}

/// A [`Policy`] with its patterns compiled, ready for evaluation.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    id: Arc<str>,
    spiffe_id: AnchoredPattern,
    path: AnchoredPattern,
    permissions: PermissionMask,
}

impl CompiledPolicy {
    /// Compiles a policy's patterns (see [`AnchoredPattern`] for what is rejected).
    pub fn compile(policy: &Policy) -> Result<Self, PolicyError> {
        Ok(Self {
            id: Arc::from(policy.id()),
            spiffe_id: AnchoredPattern::compile(
                PatternField::SpiffeId,
                policy.spiffe_id_pattern(),
            )?,
            path: AnchoredPattern::compile(PatternField::Path, policy.path_pattern())?,
            permissions: PermissionMask::of(policy.permissions()),
        })
    }

    /// The policy's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// True if this policy lets `spiffe_id` have `wanted` on `path`.
    pub fn allows(&self, spiffe_id: &str, path: &str, wanted: Permission) -> bool {
        self.allows_mask(spiffe_id, path, PermissionMask::of(&[wanted]))
    }

    fn allows_mask(&self, spiffe_id: &str, path: &str, wanted: PermissionMask) -> bool {
        // Cheapest test first; the regexes run only for policies that could grant access.
        self.permissions.grants(wanted)
            && self.spiffe_id.is_match(spiffe_id)
            && self.path.is_match(path)
    }
}

/// The outcome of evaluating a request against a [`PolicySet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A policy allows the request.
    Allow {
        /// The first policy (in set order) that allows it, for the audit log.
        policy_id: Arc<str>,
    },
    /// No policy allows the request (the default).
    Deny,
}

impl Decision {
    /// True for [`Decision::Allow`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// Every policy in force, compiled once, evaluated with default deny.
///
/// Besides each policy's own patterns, the set compiles all SPIFFE ID patterns into one
/// [`RegexSet`] and all path patterns into another, so a decision is two passes over the
/// inputs however many policies there are (about a microsecond for 1,000 policies), where
/// trying each policy's regexes in turn costs hundreds of microseconds at that size.
///
/// There are no built-in roles here: Nexus grants SPIKE Pilot's superuser identity its
/// powers before consulting policies, exactly as SPIKE does. Rebuild the set (from kept
/// [`CompiledPolicy`] values, which skips re-validating them) when policies change.
#[derive(Debug, Clone)]
pub struct PolicySet {
    policies: Vec<CompiledPolicy>,
    spiffe_ids: RegexSet,
    paths: RegexSet,
}

impl Default for PolicySet {
    fn default() -> Self {
        Self::empty()
    }
}

impl PolicySet {
    /// A set that denies everything.
    pub fn empty() -> Self {
        Self { policies: Vec::new(), spiffe_ids: RegexSet::empty(), paths: RegexSet::empty() }
    }

    /// A set of already compiled policies, evaluated in the given order.
    ///
    /// Fails only if the combined automata exceed their size limit, which is the sum of the
    /// policies' own limits, so in practice never.
    pub fn new(policies: impl IntoIterator<Item = CompiledPolicy>) -> Result<Self, PolicyError> {
        let policies: Vec<CompiledPolicy> = policies.into_iter().collect();
        let spiffe_ids = build_set(policies.iter().map(|p| &p.spiffe_id))?;
        let paths = build_set(policies.iter().map(|p| &p.path))?;
        Ok(Self { policies, spiffe_ids, paths })
    }

    /// Compiles `policies` into a set, failing on the first invalid one.
    pub fn compile<'a>(
        policies: impl IntoIterator<Item = &'a Policy>,
    ) -> Result<Self, PolicyError> {
        let compiled =
            policies.into_iter().map(CompiledPolicy::compile).collect::<Result<Vec<_>, _>>()?;
        Self::new(compiled)
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// True when the set has no policies (and so denies everything).
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The compiled policies, in evaluation order.
    pub fn policies(&self) -> &[CompiledPolicy] {
        &self.policies
    }

    /// May `spiffe_id` have `wanted` on `path`? Allowed if some policy's SPIFFE ID pattern
    /// matches the whole ID, its path pattern matches the whole path, and its permissions
    /// include `wanted` or `super`; denied otherwise. Runs precompiled automata only.
    pub fn decide(&self, spiffe_id: &str, path: &str, wanted: Permission) -> Decision {
        self.decide_mask(spiffe_id, path, PermissionMask::of(&[wanted]))
    }

    /// Like [`PolicySet::decide`] for several permissions at once, with SPIKE's semantics:
    /// one policy must grant them all. An empty `wanted` is denied, so a caller bug cannot
    /// turn into access.
    pub fn decide_all(&self, spiffe_id: &str, path: &str, wanted: &[Permission]) -> Decision {
        if wanted.is_empty() {
            return Decision::Deny;
        }
        self.decide_mask(spiffe_id, path, PermissionMask::of(wanted))
    }

    fn decide_mask(&self, spiffe_id: &str, path: &str, wanted: PermissionMask) -> Decision {
        let ids = self.spiffe_ids.matches(spiffe_id);
        if !ids.matched_any() {
            return Decision::Deny;
        }
        let paths = self.paths.matches(path);
        // `SetMatches::iter` yields indices in ascending order, so the first policy (in set
        // order) that allows the request is the one reported.
        ids.iter()
            .find(|&i| paths.matched(i) && self.policies[i].permissions.grants(wanted))
            .map_or(Decision::Deny, |i| Decision::Allow {
                policy_id: Arc::clone(&self.policies[i].id),
            })
    }
}

fn build_set<'a>(
    patterns: impl ExactSizeIterator<Item = &'a AnchoredPattern>,
) -> Result<RegexSet, PolicyError> {
    let count = patterns.len().max(1);
    RegexSetBuilder::new(patterns.map(|p| anchored(&p.source)))
        .size_limit(PATTERN_SIZE_LIMIT.saturating_mul(count))
        .dfa_size_limit(SET_DFA_SIZE_LIMIT)
        .build()
        .map_err(|e| PolicyError::Invalid {
            field: "policies",
            reason: format!(
                "the policies together are too complex to compile ({}); remove or simplify some",
                first_line(&e)
            ),
        })
}

fn anchored(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::PolicySpec;
    use Permission::*;
    use proptest::prelude::*;

    fn policy(name: &str, id_pattern: &str, path_pattern: &str, perms: &[Permission]) -> Policy {
        Policy::create(PolicySpec {
            name: name.into(),
            spiffe_id_pattern: id_pattern.into(),
            path_pattern: path_pattern.into(),
            permissions: perms.to_vec(),
        })
        .unwrap()
    }

    fn pattern(p: &str) -> Result<AnchoredPattern, PolicyError> {
        AnchoredPattern::compile(PatternField::Path, p)
    }

    #[test]
    fn patterns_match_whole_strings_only() {
        let p = AnchoredPattern::compile(PatternField::SpiffeId, "spiffe://spike.ist/app").unwrap();
        assert!(p.is_match("spiffe://spike.ist/app"));
        assert!(!p.is_match("spiffe://spike.ist/app/evil"));
        assert!(!p.is_match("xspiffe://spike.ist/app"));
        assert!(!p.is_match("spiffe://spike.ist/ap"));
        assert!(!p.is_match("spiffe://spike.ist/app\n"));
        // Alternations stay inside the anchors.
        let alt = pattern("secrets/a|secrets/b").unwrap();
        assert!(alt.is_match("secrets/a") && alt.is_match("secrets/b"));
        assert!(!alt.is_match("secrets/a/x") && !alt.is_match("x/secrets/b"));
        // SPIKE-style explicit anchors still work.
        let spike = pattern("^secrets/app/.*$").unwrap();
        assert!(spike.is_match("secrets/app/db") && !spike.is_match("other/secrets/app/db"));
        // Multi-line flags cannot weaken the outer anchors.
        let m = pattern("(?m)secrets/a$").unwrap();
        assert!(!m.is_match("secrets/a\nsecrets/evil"));
    }

    #[test]
    fn patterns_cannot_break_out_of_the_anchoring_group() {
        for p in ["a)|(b", "a)|.*|(b", r"a\", "(?x)secrets/a # )|(.*"] {
            assert!(matches!(pattern(p), Err(PolicyError::BadPattern { .. })), "{p:?}");
        }
    }

    #[test]
    fn patterns_that_match_everything_are_rejected_unless_explicit() {
        for p in
            ["", "|", "(?:)", ".*?", "a*", "(?s).*", ".+", "(?s).+", "[^\n]*", r"\PC*|.*", "(.*)"]
        {
            assert!(
                matches!(pattern(p), Err(PolicyError::MatchesEverything { .. })),
                "{p:?} must be rejected"
            );
        }
        for p in [".*", "^.*$"] {
            let everything = pattern(p).unwrap();
            assert!(EVERYTHING_PROBES.iter().all(|s| everything.is_match(s)));
        }
        let err = pattern(".+").unwrap_err().to_string();
        assert!(err.contains("\".*\""), "{err}");
    }

    #[test]
    fn bad_long_and_huge_patterns_are_rejected() {
        for p in ["(", "*", "secrets/[", "a{2,1}"] {
            assert!(matches!(pattern(p), Err(PolicyError::BadPattern { .. })), "{p:?}");
        }
        let glob = pattern("*").unwrap_err().to_string();
        assert!(glob.contains("not globs"), "{glob}");
        let long = "a".repeat(MAX_PATTERN_LEN + 1);
        assert!(matches!(pattern(&long), Err(PolicyError::BadPattern { .. })));
        assert!(pattern(&"a".repeat(MAX_PATTERN_LEN)).is_ok());
        let huge = pattern(r"(\w{100}){100}").unwrap_err().to_string();
        assert!(huge.contains("compiles to more than"), "{huge}");
        // Ordinary patterns fit, including Unicode classes without large counted repetitions.
        assert!(pattern(r"secrets/\w+/[a-z0-9-]{1,64}").is_ok());
        assert!(pattern(r"spiffe://spike\.ist/\p{L}+/.*").is_ok());
    }

    #[test]
    fn default_is_deny() {
        let set = PolicySet::empty();
        assert!(set.is_empty());
        assert_eq!(set.decide("spiffe://spike.ist/app", "secrets/x", Read), Decision::Deny);
        let set =
            PolicySet::compile(&[policy("p", "spiffe://spike\\.ist/app", "secrets/x", &[Read])])
                .unwrap();
        assert_eq!(set.decide("spiffe://spike.ist/other", "secrets/x", Read), Decision::Deny);
        assert_eq!(set.decide("spiffe://spike.ist/app", "secrets/y", Read), Decision::Deny);
        assert_eq!(set.decide("spiffe://spike.ist/app", "secrets/x", Write), Decision::Deny);
        assert!(set.decide("spiffe://spike.ist/app", "secrets/x", Read).is_allowed());
    }

    #[test]
    fn super_implies_every_permission() {
        let p = policy("root", "spiffe://spike\\.ist/ops/.*", ".*", &[Super]);
        let set = PolicySet::compile([&p]).unwrap();
        for wanted in Permission::ALL {
            assert_eq!(
                set.decide("spiffe://spike.ist/ops/a", "any/path", wanted),
                Decision::Allow { policy_id: Arc::from(p.id()) }
            );
        }
        assert!(set.decide_all("spiffe://spike.ist/ops/a", "p", &Permission::ALL).is_allowed());
        assert_eq!(set.decide("spiffe://spike.ist/dev/a", "any/path", Read), Decision::Deny);
    }

    #[test]
    fn decide_all_needs_one_policy_granting_everything() {
        let r = policy("r", ".*", "secrets/.*", &[Read]);
        let w = policy("w", ".*", "secrets/.*", &[Write]);
        let rw = PolicySet::compile([&r, &w]).unwrap();
        assert!(rw.decide("spiffe://a/b", "secrets/x", Read).is_allowed());
        assert!(rw.decide("spiffe://a/b", "secrets/x", Write).is_allowed());
        assert_eq!(rw.decide_all("spiffe://a/b", "secrets/x", &[Read, Write]), Decision::Deny);
        assert_eq!(rw.decide_all("spiffe://a/b", "secrets/x", &[]), Decision::Deny);
        let both = policy("rw", ".*", "secrets/.*", &[Write, Read]);
        let set = PolicySet::compile([&r, &both]).unwrap();
        assert_eq!(
            set.decide_all("spiffe://a/b", "secrets/x", &[Read, Write]),
            Decision::Allow { policy_id: Arc::from(both.id()) }
        );
    }

    #[test]
    fn first_matching_policy_is_reported() {
        let a = policy("a", ".*", "secrets/.*", &[Read]);
        let b = policy("b", ".*", "secrets/.*", &[Read, Write]);
        let set = PolicySet::new([&a, &b].into_iter().map(|p| CompiledPolicy::compile(p).unwrap()))
            .unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.policies()[1].id(), b.id());
        assert_eq!(
            set.decide("x", "secrets/1", Read),
            Decision::Allow { policy_id: Arc::from(a.id()) }
        );
        assert_eq!(
            set.decide("x", "secrets/1", Write),
            Decision::Allow { policy_id: Arc::from(b.id()) }
        );
    }

    /// Reference model: a literal pattern matches only the identical string; a prefix
    /// pattern `escape(prefix)/.*` matches exactly the strings starting with `prefix/`.
    #[derive(Debug, Clone)]
    enum RefPattern {
        Literal(String),
        Prefix(String),
    }

    impl RefPattern {
        fn regex(&self) -> String {
            match self {
                RefPattern::Literal(s) => regex::escape(s),
                RefPattern::Prefix(s) => format!("{}/.*", regex::escape(s)),
            }
        }

        fn matches(&self, input: &str) -> bool {
            match self {
                RefPattern::Literal(s) => input == s,
                RefPattern::Prefix(s) => {
                    input.strip_prefix(s.as_str()).is_some_and(|rest| rest.starts_with('/'))
                }
            }
        }
    }

    /// Short strings over an alphabet rich in regex metacharacters, so escaping matters.
    fn atom() -> impl Strategy<Value = String> {
        "[ab/.*+?()|\\[\\]{}^$\\\\-]{1,6}"
    }

    fn ref_pattern() -> impl Strategy<Value = RefPattern> {
        prop_oneof![atom().prop_map(RefPattern::Literal), atom().prop_map(RefPattern::Prefix)]
    }

    /// Small regular expressions built from a vocabulary of constructs, so policies overlap.
    fn regex_pattern() -> impl Strategy<Value = String> {
        let token = proptest::sample::select(vec![
            "a", "b", "/", r"\.", ".", ".*", "[ab]", "(a|b)", "b+", "a?", "x{1,2}", "(?i)A",
        ]);
        proptest::collection::vec(token, 1..5).prop_map(|t| t.concat())
    }

    /// The first policy that allows the request, trying each policy's own regexes in turn.
    fn linear(set: &PolicySet, sid: &str, path: &str, wanted: Permission) -> Option<String> {
        set.policies().iter().find(|p| p.allows(sid, path, wanted)).map(|p| p.id().to_owned())
    }

    fn permission() -> impl Strategy<Value = Permission> {
        proptest::sample::select(Permission::ALL.to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn decide_agrees_with_the_reference_model(
            rules in proptest::collection::vec(
                (ref_pattern(), ref_pattern(), proptest::collection::vec(permission(), 1..3)),
                0..6,
            ),
            ids in proptest::collection::vec(atom(), 1..4),
            paths in proptest::collection::vec(atom(), 1..4),
            suffix in atom(),
            wanted in permission(),
        ) {
            let policies: Vec<Policy> = rules
                .iter()
                .enumerate()
                .map(|(i, (id, path, perms))| policy(&format!("p{i}"), &id.regex(), &path.regex(), perms))
                .collect();
            let set = PolicySet::compile(&policies).unwrap();
            // Probe with the model's own strings, their extensions and unrelated ones.
            let mut id_inputs = ids.clone();
            let mut path_inputs = paths.clone();
            for (id, path, _) in &rules {
                for (r, inputs) in [(id, &mut id_inputs), (path, &mut path_inputs)] {
                    let (RefPattern::Literal(s) | RefPattern::Prefix(s)) = r;
                    inputs.push(s.clone());
                    inputs.push(format!("{s}/{suffix}"));
                    inputs.push(format!("{s}{suffix}"));
                    inputs.push(format!("{suffix}{s}"));
                }
            }
            for sid in &id_inputs {
                for path in &path_inputs {
                    let expected = rules
                        .iter()
                        .zip(&policies)
                        .find(|((i, p, perms), _)| {
                            i.matches(sid)
                                && p.matches(path)
                                && perms.iter().any(|h| *h == Super || *h == wanted)
                        })
                        .map(|(_, pol)| pol.id().to_owned());
                    let got = match set.decide(sid, path, wanted) {
                        Decision::Allow { policy_id } => Some(policy_id.to_string()),
                        Decision::Deny => None,
                    };
                    prop_assert_eq!(&got, &expected, "id {:?} path {:?}", sid, path);
                    prop_assert_eq!(got, linear(&set, sid, path, wanted));
                }
            }
        }

        #[test]
        fn combined_automata_agree_with_each_policy_alone(
            rules in proptest::collection::vec(
                (regex_pattern(), regex_pattern(), proptest::collection::vec(permission(), 1..3)),
                0..8,
            ),
            inputs in proptest::collection::vec(("[ab/.x]{0,8}", "[ab/.x]{0,8}"), 1..12),
            wanted in permission(),
        ) {
            let policies: Vec<Policy> = rules
                .iter()
                .enumerate()
                .filter_map(|(i, (id, path, perms))| {
                    Policy::create(PolicySpec {
                        name: format!("p{i}"),
                        spiffe_id_pattern: id.clone(),
                        path_pattern: path.clone(),
                        permissions: perms.clone(),
                    })
                    .ok()
                })
                .collect();
            let set = PolicySet::compile(&policies).unwrap();
            for (sid, path) in &inputs {
                let got = match set.decide(sid, path, wanted) {
                    Decision::Allow { policy_id } => Some(policy_id.to_string()),
                    Decision::Deny => None,
                };
                prop_assert_eq!(got, linear(&set, sid, path, wanted), "id {:?} path {:?}", sid, path);
            }
        }

        #[test]
        fn compiling_arbitrary_patterns_never_panics(p in ".{0,40}") {
            let _ = AnchoredPattern::compile(PatternField::Path, &p);
        }
    }
}
