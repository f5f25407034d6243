//! JWT-SVID verification (`spike_core::jwt::verify`, Nexus's Bearer authentication): arbitrary
//! input never panics; a token that verifies names the one trust domain that has a key, the
//! expected audience, and had not expired at the fixed time; no refusal shows the input back.
//!
//! The authority is the P-256 key of RFC 7515 appendix A.3 (kid "fuzz-p256", trust domain
//! example.org); the seed corpus holds tokens signed with its private half (valid, expired,
//! bad subject, unknown kid) next to `none`, HS256 and malformed ones.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use spike_core::jwt::{JwtAuthorities, Validation, verify};
use time::OffsetDateTime;

const TRUST_DOMAIN: &str = "example.org";
const AUDIENCE: &str = "spike-nexus";
/// 2025-01-01T00:00:00Z: the seeds are valid for an hour from then.
const NOW: i64 = 1_735_689_600;
const JWK: &str = r#"{"kty":"EC","crv":"P-256","kid":"fuzz-p256","use":"jwt-svid",
    "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

static AUTHORITIES: LazyLock<JwtAuthorities> = LazyLock::new(|| {
    let mut authorities = JwtAuthorities::new();
    authorities.add_jwk(TRUST_DOMAIN, JWK.as_bytes()).expect("the fixed JWK is usable");
    authorities
});

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let trust_domains = [TRUST_DOMAIN.to_owned()];
    let now = OffsetDateTime::from_unix_timestamp(NOW).expect("a valid time");
    let leeway = Duration::from_secs(30);
    let v = Validation { audience: AUDIENCE, now, leeway, trust_domains: Some(&trust_domains) };
    match verify(&input, &AUTHORITIES, &v) {
        Ok(jwt) => {
            assert_eq!(jwt.trust_domain, TRUST_DOMAIN);
            assert!(jwt.spiffe_id.starts_with("spiffe://example.org/"), "{:?}", jwt.spiffe_id);
            assert!(jwt.audience.iter().any(|a| a == AUDIENCE));
            assert!(now - leeway <= jwt.expires_at, "an expired token verified");
        }
        Err(err) => {
            // Error messages have no '.', and the only value echoed after a '.'-bearing token
            // is a verified trust domain: a token (which has two dots) is never shown back.
            if input.len() >= 16 && input.contains('.') {
                for shown in [err.to_string(), format!("{err:?}")] {
                    assert!(!shown.contains(&*input), "{shown:?} shows the token");
                }
            }
        }
    }
});
