//! JWT-SVID verification (SPIFFE JWT-SVID specification): pure, synchronous, no I/O.
//!
//! Nexus authenticates callers that present `Authorization: Bearer <JWT-SVID>` with [`verify`],
//! and the dev agent's `ValidateJWTSVID` uses the same function. The signing keys come from
//! SPIFFE JWT bundles (JWKS documents) collected in [`JwtAuthorities`].
//!
//! What is accepted, in the order it is checked:
//! - a compact JWS of at most [`MAX_TOKEN_LEN`] bytes: exactly three base64url parts without
//!   padding, the header and the claims each one JSON object (a repeated member that this
//!   module reads is an error, not "last one wins");
//! - header `alg` one of ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512 (`none` and
//!   every HMAC algorithm are refused, so a public key can never serve as an HMAC secret);
//!   `kid` present; `typ`, if present, `JWT` or `JOSE`; no `crit`;
//! - claim `sub` a SPIFFE ID with a path (`spiffe://<trust domain>/<path>`); the key is looked
//!   up by `kid` among the authorities of *that* trust domain only, and its type must match
//!   `alg` (EC P-256 for ES256, EC P-384 for ES384, RSA of 2048 to 8192 bits for RS* and PS*);
//! - the signature over `<header>.<claims>` as sent, checked with *ring*;
//! - only then the claims: `exp` required and not passed (beyond the leeway), `nbf` if present
//!   reached (within the leeway), `aud` (a string or an array of strings) containing the
//!   expected audience exactly, and the trust domain among the accepted ones.
//!
//! No error carries the token or any part of it; the only values echoed are the name of a
//! refused algorithm (short and printable only) and, after the signature has verified, the
//! trust domain of the subject.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer};
use serde_json::Number;
use thiserror::Error;
use time::OffsetDateTime;

use crate::error::IdentityError;
use crate::identity::parse_trust_domains;

/// The longest token [`verify`] reads, in bytes; longer ones are refused unread.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The largest clock-skew allowance [`verify`] applies; a larger [`Validation::leeway`] is
/// reduced to this.
pub const MAX_LEEWAY: Duration = Duration::from_secs(5 * 60);

/// The longest SPIFFE ID accepted as a subject, in bytes (SPIFFE-ID §2.3).
const MAX_SPIFFE_ID_LEN: usize = 2048;

/// The `use` of a JWK meant for JWT-SVIDs in a SPIFFE bundle.
const USE_JWT_SVID: &str = "jwt-svid";

/// Why a JWT-SVID, a JWKS document or a JWK was refused.
///
/// Messages never contain the token or a part of it. [`JwtError::UnsupportedAlgorithm`]
/// carries the refused `alg` only if it is short and printable, and
/// [`JwtError::UntrustedDomain`] is reported only once the signature has verified.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwtError {
    /// The token is longer than [`MAX_TOKEN_LEN`].
    #[error("the token is longer than 8192 bytes (MAX_TOKEN_LEN)")]
    TooLarge,
    /// The token is not a compact JWS with JSON header and claims of the expected shape.
    #[error("the token is not a well-formed JWT-SVID: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm outside the allow-list (e.g. `none` or `HS256`).
    #[error(
        "the token's algorithm {0:?} is not accepted (only ES256, ES384, RS256, RS384, RS512, \
         PS256, PS384 and PS512)"
    )]
    UnsupportedAlgorithm(String),
    /// The `sub` claim is missing or not a SPIFFE ID with a path.
    #[error("the token's subject is not a SPIFFE ID: {0}")]
    BadSubject(&'static str),
    /// No authority of the subject's trust domain has the token's `kid`.
    #[error("the token was signed with a key (\"kid\") unknown in its subject's trust domain")]
    UnknownKey,
    /// The key named by `kid` is of another type than `alg` needs (or pinned to another `alg`).
    #[error("the token's algorithm does not fit the key it names")]
    KeyMismatch,
    /// The signature does not verify with the key named by `kid`.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// The token has no `exp` claim (JWT-SVIDs must expire).
    #[error("the token has no expiry (\"exp\")")]
    NoExpiry,
    /// The token's `exp` has passed, beyond the leeway.
    #[error("the token has expired")]
    Expired,
    /// The token's `nbf` lies in the future, beyond the leeway.
    #[error("the token is not valid yet (\"nbf\")")]
    NotYetValid,
    /// The token's `aud` does not contain the expected audience.
    #[error("the token is not meant for this audience (\"aud\")")]
    WrongAudience,
    /// The subject's trust domain is not among [`Validation::trust_domains`].
    #[error("the token's trust domain {0:?} is not accepted here")]
    UntrustedDomain(String),
    /// A JWKS document or JWK is not JSON of the expected shape.
    #[error("the JWT bundle is not valid JWKS: {0}")]
    BadJwks(&'static str),
    /// A JWK cannot verify JWT-SVIDs (from [`JwtAuthorities::add_jwk`]; `add_jwks` skips such
    /// keys).
    #[error("the JWK cannot verify JWT-SVIDs: {0}")]
    UnusableKey(&'static str),
    /// The trust domain given for a bundle is not a trust domain name.
    #[error(transparent)]
    InvalidTrustDomain(#[from] IdentityError),
}

/// The signing algorithms accepted for JWT-SVIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Es256,
    Es384,
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
}

impl Alg {
    /// The algorithm named `name` (case-sensitive, RFC 7518), if it is on the allow-list.
    fn from_name(name: &str) -> Option<Alg> {
        Some(match name {
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            _ => return None,
        })
    }

    /// True if a key of this kind can verify this algorithm.
    fn fits(self, key: &PublicKey) -> bool {
        matches!(
            (self, key),
            (Alg::Es256, PublicKey::P256(_))
                | (Alg::Es384, PublicKey::P384(_))
                | (
                    Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512,
                    PublicKey::Rsa { .. }
                )
        )
    }
}

/// A public key from a JWK, in the form *ring* takes it.
#[derive(Clone)]
enum PublicKey {
    /// Uncompressed P-256 point: `0x04 || x || y` (65 bytes).
    P256(Vec<u8>),
    /// Uncompressed P-384 point: `0x04 || x || y` (97 bytes).
    P384(Vec<u8>),
    /// RSA modulus and public exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// One signing key of a trust domain.
#[derive(Clone)]
struct Authority {
    key: PublicKey,
    /// The JWK's `alg`, if it pins one.
    alg: Option<Alg>,
}

/// Signing keys of trust domains, from JWKS documents (SPIFFE JWT bundles).
///
/// Keys are kept per trust domain and looked up by `kid` within the trust domain of a token's
/// subject only, so one trust domain's key can never vouch for another's workloads. A key
/// added under a `kid` the trust domain already has replaces the earlier one (as go-spiffe's
/// bundles do). Public keys only: nothing here is secret.
#[derive(Clone, Default)]
pub struct JwtAuthorities {
    by_trust_domain: BTreeMap<String, BTreeMap<String, Authority>>,
}

impl fmt::Debug for JwtAuthorities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.by_trust_domain.iter().map(|(td, keys)| (td, keys.keys().collect::<Vec<_>>())),
            )
            .finish()
    }
}

impl JwtAuthorities {
    /// No authorities: every token is refused with [`JwtError::UnknownKey`] until keys are added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every usable key of a JWKS document (`{"keys":[...]}`) for `trust_domain` and
    /// returns how many were added. Keys whose `use` is neither absent nor `"jwt-svid"`, of an
    /// unknown `kty` or `crv`, without a `kid`, with malformed or too weak key material, or
    /// whose `alg` does not fit their type are skipped. Other members of the document (e.g.
    /// `spiffe_refresh_hint`) are ignored.
    ///
    /// # Errors
    /// [`JwtError::BadJwks`] if the document is not a JSON object with a `keys` array;
    /// [`JwtError::InvalidTrustDomain`] if `trust_domain` is not one trust domain name.
    pub fn add_jwks(&mut self, trust_domain: &str, jwks_json: &[u8]) -> Result<usize, JwtError> {
        #[derive(Deserialize)]
        struct Jwks {
            keys: Vec<serde_json::Value>,
        }
        check_trust_domain(trust_domain)?;
        let jwks: Jwks = parse_object(jwks_json)
            .map_err(|_| JwtError::BadJwks("not a JSON object with a \"keys\" array"))?;
        let mut added = 0;
        for value in jwks.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else { continue };
            if let Ok((kid, authority)) = jwk.into_authority() {
                self.insert(trust_domain, kid, authority);
                added += 1;
            }
        }
        Ok(added)
    }

    /// Adds one JWK (a JSON object) for `trust_domain`: the spiffe crate hands a bundle's
    /// authorities out one JWK at a time (`JwtAuthority::jwk_json`).
    ///
    /// # Errors
    /// [`JwtError::BadJwks`] if `jwk_json` is not a JSON object with string members;
    /// [`JwtError::UnusableKey`] for a key that [`JwtAuthorities::add_jwks`] would skip;
    /// [`JwtError::InvalidTrustDomain`] if `trust_domain` is not one trust domain name.
    pub fn add_jwk(&mut self, trust_domain: &str, jwk_json: &[u8]) -> Result<(), JwtError> {
        check_trust_domain(trust_domain)?;
        let jwk: Jwk = parse_object(jwk_json).map_err(|_| {
            JwtError::BadJwks("a JWK must be a JSON object whose members are strings")
        })?;
        let (kid, authority) = jwk.into_authority().map_err(JwtError::UnusableKey)?;
        self.insert(trust_domain, kid, authority);
        Ok(())
    }

    /// True if no key has been added for any trust domain.
    pub fn is_empty(&self) -> bool {
        self.by_trust_domain.values().all(BTreeMap::is_empty)
    }

    fn insert(&mut self, trust_domain: &str, kid: String, authority: Authority) {
        self.by_trust_domain.entry(trust_domain.to_owned()).or_default().insert(kid, authority);
    }

    fn find(&self, trust_domain: &str, kid: &str) -> Option<&Authority> {
        self.by_trust_domain.get(trust_domain)?.get(kid)
    }
}

/// A JWK as found in a SPIFFE JWT bundle; members this module does not use are ignored.
#[derive(Deserialize)]
struct Jwk {
    kty: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

impl Jwk {
    /// The key and its `kid`, or why the key cannot verify JWT-SVIDs.
    fn into_authority(self) -> Result<(String, Authority), &'static str> {
        if self.use_.as_deref().is_some_and(|u| u != USE_JWT_SVID) {
            return Err("its \"use\" is not \"jwt-svid\"");
        }
        let kid = self.kid.filter(|k| !k.is_empty()).ok_or("it has no \"kid\"")?;
        let key = match self.kty.as_deref() {
            Some("EC") => {
                let (len, p384) = match self.crv.as_deref() {
                    Some("P-256") => (32, false),
                    Some("P-384") => (48, true),
                    _ => return Err("its curve (\"crv\") is not P-256 or P-384"),
                };
                let coordinate = |c: Option<String>| {
                    c.and_then(|c| URL_SAFE_NO_PAD.decode(c).ok()).filter(|c| c.len() == len)
                };
                let (Some(x), Some(y)) = (coordinate(self.x), coordinate(self.y)) else {
                    return Err(
                        "its \"x\" or \"y\" is not a base64url coordinate of the curve's size",
                    );
                };
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                if p384 { PublicKey::P384(point) } else { PublicKey::P256(point) }
            }
            Some("RSA") => {
                let integer = |v: Option<String>| {
                    v.and_then(|v| URL_SAFE_NO_PAD.decode(v).ok()).map(|mut bytes| {
                        let zeros = bytes.iter().take_while(|b| **b == 0).count();
                        bytes.drain(..zeros);
                        bytes
                    })
                };
                let (Some(n), Some(e)) = (integer(self.n), integer(self.e)) else {
                    return Err("its \"n\" or \"e\" is not a base64url integer");
                };
                let bits = n
                    .first()
                    .map_or(0, |top| (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize));
                if !(2048..=8192).contains(&bits) {
                    return Err("its modulus is not 2048 to 8192 bits long");
                }
                // What ring accepts: odd, at least 3, below 2^33.
                let exponent = (e.len() <= 5)
                    .then(|| e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
                    .filter(|e| *e >= 3 && e % 2 == 1 && *e < 1 << 33);
                if exponent.is_none() {
                    return Err("its public exponent is not an odd number from 3 to 2^33");
                }
                PublicKey::Rsa { n, e }
            }
            _ => return Err("its key type (\"kty\") is not EC or RSA"),
        };
        let alg = match self.alg.as_deref() {
            None => None,
            Some(name) => match Alg::from_name(name) {
                Some(alg) if alg.fits(&key) => Some(alg),
                _ => return Err("its \"alg\" is not an accepted algorithm for its key type"),
            },
        };
        Ok((kid, Authority { key, alg }))
    }
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone, Copy)]
pub struct Validation<'a> {
    /// The audience the token must name in its `aud` claim, exactly. An empty audience
    /// matches no token.
    pub audience: &'a str,
    /// The current time.
    pub now: OffsetDateTime,
    /// Allowance for clock skew on `exp` and `nbf`; at most [`MAX_LEEWAY`] is applied.
    pub leeway: Duration,
    /// The trust domains whose workloads are accepted; `None` accepts any trust domain that
    /// has authorities.
    pub trust_domains: Option<&'a [String]>,
}

/// What a verified JWT-SVID says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedJwt {
    /// The subject (`sub`): the caller's SPIFFE ID.
    pub spiffe_id: String,
    /// The trust domain of [`VerifiedJwt::spiffe_id`].
    pub trust_domain: String,
    /// When the token expires (`exp`).
    pub expires_at: OffsetDateTime,
    /// Every audience the token names (`aud`).
    pub audience: Vec<String>,
}

/// The JOSE header members this module reads.
#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
    typ: Option<String>,
    /// Any `crit` member, even `null`: this module understands no extension.
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

/// The claims this module reads.
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<Number>,
    nbf: Option<Number>,
    iat: Option<Number>,
}

/// `aud`: one string or an array of strings (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Deserializes any value (including `null`) as "the member is present".
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// Verifies JWT-SVID `token` against `authorities` and `v` (see the module docs for the rules
/// and their order) and returns what it says.
///
/// # Errors
/// A [`JwtError`] saying why the token was refused; it never contains the token.
pub fn verify(
    token: &str,
    authorities: &JwtAuthorities,
    v: &Validation<'_>,
) -> Result<VerifiedJwt, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("it does not have exactly three dot-separated parts"));
    };

    let header: Header = parse_object(&decode(header_b64, "the header is not base64url")?)
        .map_err(|_| {
            JwtError::Malformed("the header is not a JSON object of the expected shape")
        })?;
    let alg_name = header.alg.ok_or(JwtError::Malformed("the header has no \"alg\""))?;
    let alg = Alg::from_name(&alg_name)
        .ok_or_else(|| JwtError::UnsupportedAlgorithm(printable_alg(&alg_name)))?;
    if header.typ.as_deref().is_some_and(|t| t != "JWT" && t != "JOSE") {
        return Err(JwtError::Malformed("the header's \"typ\" is neither JWT nor JOSE"));
    }
    if header.crit {
        return Err(JwtError::Malformed(
            "the header has a \"crit\" member (no extension is understood)",
        ));
    }
    let kid = header.kid.ok_or(JwtError::Malformed("the header has no \"kid\""))?;

    let claims: Claims = parse_object(&decode(claims_b64, "the claims are not base64url")?)
        .map_err(|_| {
            JwtError::Malformed("the claims are not a JSON object of the expected shape")
        })?;
    let signature = decode(signature_b64, "the signature is not base64url")?;

    let spiffe_id = claims.sub.ok_or(JwtError::BadSubject("the token has no \"sub\""))?;
    let trust_domain = trust_domain_of(&spiffe_id)?;
    let authority = authorities.find(trust_domain, &kid).ok_or(JwtError::UnknownKey)?;
    if authority.alg.is_some_and(|pinned| pinned != alg) {
        return Err(JwtError::KeyMismatch);
    }
    let signed = &token[..header_b64.len() + 1 + claims_b64.len()];
    verify_signature(&authority.key, alg, signed.as_bytes(), &signature)?;

    // Signed by the subject's trust domain: now the claims.
    let leeway = time::Duration::try_from(v.leeway.min(MAX_LEEWAY)).unwrap_or(time::Duration::ZERO);
    let exp = claims.exp.ok_or(JwtError::NoExpiry)?;
    let expires_at = numeric_date(&exp, "\"exp\" is not a NumericDate within years -9999 to 9999")?;
    if v.now.saturating_sub(leeway) > expires_at {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = &claims.nbf {
        let not_before =
            numeric_date(nbf, "\"nbf\" is not a NumericDate within years -9999 to 9999")?;
        if not_before.saturating_sub(leeway) > v.now {
            return Err(JwtError::NotYetValid);
        }
    }
    if let Some(iat) = &claims.iat {
        numeric_date(iat, "\"iat\" is not a NumericDate within years -9999 to 9999")?;
    }
    let audience = match claims.aud {
        Some(Audience::One(one)) => vec![one],
        Some(Audience::Many(many)) => many,
        None => Vec::new(),
    };
    if v.audience.is_empty() || !audience.iter().any(|a| a == v.audience) {
        return Err(JwtError::WrongAudience);
    }
    if v.trust_domains.is_some_and(|accepted| !accepted.iter().any(|td| td == trust_domain)) {
        return Err(JwtError::UntrustedDomain(trust_domain.to_owned()));
    }
    Ok(VerifiedJwt { trust_domain: trust_domain.to_owned(), spiffe_id, expires_at, audience })
}

/// Checks `signature` over `message` with `key` under `alg`: the one place *ring* is called.
fn verify_signature(
    key: &PublicKey,
    alg: Alg,
    message: &[u8],
    signature: &[u8],
) -> Result<(), JwtError> {
    let rsa = |params: &'static signature::RsaParameters, n: &[u8], e: &[u8]| {
        RsaPublicKeyComponents { n, e }.verify(params, message, signature)
    };
    let verified = match (alg, key) {
        (Alg::Es256, PublicKey::P256(point)) => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(message, signature)
        }
        (Alg::Es384, PublicKey::P384(point)) => {
            UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                .verify(message, signature)
        }
        (Alg::Rs256, PublicKey::Rsa { n, e }) => rsa(&signature::RSA_PKCS1_2048_8192_SHA256, n, e),
        (Alg::Rs384, PublicKey::Rsa { n, e }) => rsa(&signature::RSA_PKCS1_2048_8192_SHA384, n, e),
        (Alg::Rs512, PublicKey::Rsa { n, e }) => rsa(&signature::RSA_PKCS1_2048_8192_SHA512, n, e),
        (Alg::Ps256, PublicKey::Rsa { n, e }) => rsa(&signature::RSA_PSS_2048_8192_SHA256, n, e),
        (Alg::Ps384, PublicKey::Rsa { n, e }) => rsa(&signature::RSA_PSS_2048_8192_SHA384, n, e),
        (Alg::Ps512, PublicKey::Rsa { n, e }) => rsa(&signature::RSA_PSS_2048_8192_SHA512, n, e),
        _ => return Err(JwtError::KeyMismatch),
    };
    verified.map_err(|_| JwtError::BadSignature)
}

/// The trust domain of SPIFFE ID `id`, which must have a path: `spiffe://<td>/<segment>...`,
/// the trust domain a valid name ([`parse_trust_domains`]' rule: lower case, no port or
/// userinfo), each segment non-empty, not `.` or `..`, of letters, digits, `.`, `-` and `_`
/// (so no query, fragment or percent-encoding).
fn trust_domain_of(id: &str) -> Result<&str, JwtError> {
    if id.len() > MAX_SPIFFE_ID_LEN {
        return Err(JwtError::BadSubject("it is longer than 2048 bytes"));
    }
    let rest = id
        .strip_prefix("spiffe://")
        .ok_or(JwtError::BadSubject("it does not start with spiffe://"))?;
    let (trust_domain, path) =
        rest.split_once('/').ok_or(JwtError::BadSubject("it has no path"))?;
    if check_trust_domain(trust_domain).is_err() {
        return Err(JwtError::BadSubject(
            "its trust domain is not a name of lower-case letters, digits, '-', '_' and dots",
        ));
    }
    for segment in path.split('/') {
        if segment.is_empty() {
            return Err(JwtError::BadSubject("its path has an empty segment"));
        }
        if segment == "." || segment == ".." {
            return Err(JwtError::BadSubject("its path has a dot segment"));
        }
        if !segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(JwtError::BadSubject(
                "its path has a character other than letters, digits, '-', '_' and dots",
            ));
        }
    }
    Ok(trust_domain)
}

/// `trust_domain` is exactly one valid trust domain name (identity's rule, reused).
fn check_trust_domain(trust_domain: &str) -> Result<(), IdentityError> {
    match parse_trust_domains(trust_domain)? {
        list if list == [trust_domain] => Ok(()),
        _ => Err(IdentityError::InvalidTrustDomain {
            entry: trust_domain.to_owned(),
            reason: "it is not exactly one trust domain name",
        }),
    }
}

/// base64url without padding (and with canonical trailing bits).
fn decode(part: &str, what: &'static str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| JwtError::Malformed(what))
}

/// Parses `json` as `T` only if it is a JSON object (serde would also take an array for a
/// struct); a repeated member that `T` reads is an error.
fn parse_object<T: DeserializeOwned>(json: &[u8]) -> Result<T, ()> {
    if json.trim_ascii_start().first() != Some(&b'{') {
        return Err(());
    }
    serde_json::from_slice(json).map_err(|_| ())
}

/// A NumericDate (seconds since the epoch, possibly fractional: rounded down).
fn numeric_date(n: &Number, what: &'static str) -> Result<OffsetDateTime, JwtError> {
    let seconds = match n.as_i64() {
        Some(s) => Some(s),
        None => n.as_f64().filter(|f| f.is_finite() && f.abs() < 1e15).map(|f| f.floor() as i64),
    };
    seconds
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or(JwtError::Malformed(what))
}

/// A refused `alg` as it may appear in an error: short names of JWA characters as they are,
/// anything else replaced.
fn printable_alg(name: &str) -> String {
    if !name.is_empty()
        && name.len() <= 16
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'+')
    {
        name.to_owned()
    } else {
        "(not shown)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use proptest::prelude::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair as _, RsaKeyPair};
    use serde_json::json;

    const TD: &str = "example.org";
    const ID: &str = "spiffe://example.org/ns/app/sa/web";
    const AUD: &str = "spike-nexus";
    /// 2025-01-01T00:00:00Z.
    const NOW: i64 = 1_735_689_600;

    fn b64(bytes: impl AsRef<[u8]>) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW).unwrap()
    }

    fn validation() -> Validation<'static> {
        Validation {
            audience: AUD,
            now: now(),
            leeway: Duration::from_secs(30),
            trust_domains: None,
        }
    }

    /// Claims of a valid token: ours, valid for another hour.
    fn claims() -> serde_json::Value {
        json!({"sub": ID, "aud": [AUD], "exp": NOW + 3600, "iat": NOW - 60})
    }

    /// `<header>.<claims>` with raw JSON texts (so tests can send duplicates), signed by `sign`.
    fn token_raw(header: &str, claims: &str, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
        let signed = format!("{}.{}", b64(header), b64(claims));
        let signature = sign(signed.as_bytes());
        format!("{signed}.{}", b64(signature))
    }

    /// Test-only signer: an ECDSA key pair (ES256 or ES384) and its JWK.
    struct EcSigner {
        pair: EcdsaKeyPair,
        alg: &'static str,
        crv: &'static str,
        kid: String,
    }

    impl EcSigner {
        fn new(alg: &'static str, kid: &str) -> Self {
            let (signing, crv) = match alg {
                "ES256" => (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256"),
                "ES384" => (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384"),
                _ => unreachable!(),
            };
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).unwrap();
            EcSigner { pair, alg, crv, kid: kid.to_owned() }
        }

        fn point(&self) -> &[u8] {
            self.pair.public_key().as_ref()
        }

        fn jwk(&self) -> serde_json::Value {
            let coordinates = &self.point()[1..];
            let (x, y) = coordinates.split_at(coordinates.len() / 2);
            json!({"kty": "EC", "crv": self.crv, "x": b64(x), "y": b64(y), "kid": self.kid, "use": "jwt-svid"})
        }

        fn authorities(&self, td: &str) -> JwtAuthorities {
            let mut authorities = JwtAuthorities::new();
            authorities.add_jwk(td, self.jwk().to_string().as_bytes()).unwrap();
            authorities
        }

        fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
            self.pair.sign(&SystemRandom::new(), message).unwrap().as_ref().to_vec()
        }

        fn token(&self, claims: &serde_json::Value) -> String {
            let header = json!({"alg": self.alg, "kid": self.kid, "typ": "JWT"});
            token_raw(&header.to_string(), &claims.to_string(), |m| self.sign_bytes(m))
        }
    }

    /// RFC 7515 appendix A.2: the RSA key (n, e and the private components) and a valid
    /// RS256 JWS by it.
    mod rfc7515_a2 {
        pub const N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
        pub const E: &str = "AQAB";
        pub const D: &str = "Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97IjlA7_GQ5sLKMgvfTeXZx9SE-7YwVol2NXOoAJe46sui395IW_GO-pWJ1O0BkTGoVEn2bKVRUCgu-GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn439X0M_V51gfpRLI9JYanrC4D4qAdGcopV_0ZHHzQlBjudU2QvXt4ehNYTCBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_jTj3ccPDVZFD9pIuhLhBOneufuBiB4cS98l2SR_RQyGWSeWjnczT0QU91p1DhOVRuOopznQ";
        pub const P: &str = "4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdiYrqBdss1l58BQ3KhooKeQTa9AB0Hw_Py5PJdTJNPY8cQn7ouZ2KKDcmnPGBY5t7yLc1QlQ5xHdwW1VhvKn-nXqhJTBgIPgtldC-KDV5z-y2XDwGUc";
        pub const Q: &str = "uQPEfgmVtjL0Uyyx88GZFF1fOunH3-7cepKmtH4pxhtCoHqpWmT8YAmZxaewHgHAjLYsp1ZSe7zFYHj7C6ul7TjeLQeZD_YwD66t62wDmpe_HlB-TnBA-njbglfIsRLtXlnDzQkv5dTltRJ11BKBBypeeF6689rjcJIDEz9RWdc";
        pub const DP: &str = "BwKfV3Akq5_MFZDFZCnW-wzl-CCo83WoZvnLQwCTeDv8uzluRSnm71I3QCLdhrqE2e9YkxvuxdBfpT_PI7Yz-FOKnu1R6HsJeDCjn12Sk3vmAktV2zb34MCdy7cpdTh_YVr7tss2u6vneTwrA86rZtu5Mbr1C1XsmvkxHQAdYo0";
        pub const DQ: &str = "h_96-mK1R_7glhsum81dZxjTnYynPbZpHziZjeeHcXYsXaaMwkOlODsWa7I9xXDoRwbKgB719rrmI2oKr6N3Do9U0ajaHF-NKJnwgjMd2w9cjz3_-kyNlxAr2v4IKhGNpmM5iIgOS1VZnOZ68m6_pbLBSp3nssTdlqvd0tIiTHU";
        pub const QI: &str = "IYd7DHOhrWvxkwPQsRM2tOgrjbcrfvtQJipd-DlcxyVuuM9sQLdgjVk2oy26F0EmpScGLq2MowX7fhd_QJQ3ydy5cY7YIBi87w93IKLEdfnbJtoOPLUW0ITrJReOgo1cq9SbsxYawBgfp_gh6A5603k2-ZQwVK0JKSHuLFkuQ3U";
        pub const JWS: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
    }

    /// RFC 7515 appendix A.3: a P-256 public key and a valid ES256 JWS by it.
    mod rfc7515_a3 {
        pub const X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
        pub const Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
        pub const JWS: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
    }

    fn rfc_rsa_jwk(kid: &str) -> serde_json::Value {
        json!({"kty": "RSA", "n": rfc7515_a2::N, "e": rfc7515_a2::E, "kid": kid})
    }

    /// Test-only RSA signer over the RFC 7515 A.2 key.
    fn rfc_rsa_pair() -> RsaKeyPair {
        use rfc7515_a2::*;
        let d = |s: &str| URL_SAFE_NO_PAD.decode(s).unwrap();
        RsaKeyPair::from_components(&ring::rsa::KeyPairComponents {
            public_key: ring::rsa::PublicKeyComponents { n: d(N), e: d(E) },
            d: d(D),
            p: d(P),
            q: d(Q),
            dP: d(DP),
            dQ: d(DQ),
            qInv: d(QI),
        })
        .unwrap()
    }

    fn rsa_token(alg: &str, kid: &str, claims: &serde_json::Value) -> String {
        let pair = rfc_rsa_pair();
        let padding: &'static dyn signature::RsaEncoding = match alg {
            "RS256" => &signature::RSA_PKCS1_SHA256,
            "RS384" => &signature::RSA_PKCS1_SHA384,
            "RS512" => &signature::RSA_PKCS1_SHA512,
            "PS256" => &signature::RSA_PSS_SHA256,
            "PS384" => &signature::RSA_PSS_SHA384,
            "PS512" => &signature::RSA_PSS_SHA512,
            _ => unreachable!(),
        };
        let header = json!({"alg": alg, "kid": kid});
        token_raw(&header.to_string(), &claims.to_string(), |m| {
            let mut sig = vec![0; pair.public().modulus_len()];
            pair.sign(padding, &SystemRandom::new(), m, &mut sig).unwrap();
            sig
        })
    }

    /// Verifies and expects a refusal whose message shows no part of the token.
    fn refused(token: &str, authorities: &JwtAuthorities, v: &Validation<'_>) -> JwtError {
        let err = verify(token, authorities, v).expect_err("the token must be refused");
        assert_no_token_text(&err, token);
        err
    }

    /// Neither the message nor the debug form shows the token or one of its parts (parts of
    /// fewer than 8 characters are too short to tell apart from ordinary words).
    fn assert_no_token_text(err: &JwtError, token: &str) {
        for shown in [err.to_string(), format!("{err:?}")] {
            for piece in std::iter::once(token).chain(token.split('.')).filter(|p| p.len() >= 8) {
                assert!(!shown.contains(piece), "{shown:?} shows {piece:?}");
            }
        }
    }

    #[test]
    fn es256_and_es384_tokens_verify_and_say_who_for_whom_until_when() {
        for alg in ["ES256", "ES384"] {
            let signer = EcSigner::new(alg, "k1");
            let authorities = signer.authorities(TD);
            let verified = verify(&signer.token(&claims()), &authorities, &validation()).unwrap();
            assert_eq!(verified.spiffe_id, ID);
            assert_eq!(verified.trust_domain, TD);
            assert_eq!(verified.expires_at.unix_timestamp(), NOW + 3600);
            assert_eq!(verified.audience, [AUD]);
        }
    }

    #[test]
    fn rsa_signatures_verify_the_rfc7515_a2_known_answer() {
        let key = PublicKey::Rsa {
            n: URL_SAFE_NO_PAD.decode(rfc7515_a2::N).unwrap(),
            e: URL_SAFE_NO_PAD.decode(rfc7515_a2::E).unwrap(),
        };
        let (signed, sig) = rfc7515_a2::JWS.rsplit_once('.').unwrap();
        let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        verify_signature(&key, Alg::Rs256, signed.as_bytes(), &sig).unwrap();
        assert_eq!(
            verify_signature(&key, Alg::Rs384, signed.as_bytes(), &sig),
            Err(JwtError::BadSignature)
        );
        assert_eq!(
            verify_signature(&key, Alg::Ps256, signed.as_bytes(), &sig),
            Err(JwtError::BadSignature)
        );
        assert_eq!(
            verify_signature(&key, Alg::Es256, signed.as_bytes(), &sig),
            Err(JwtError::KeyMismatch)
        );
        sig[10] ^= 1;
        assert_eq!(
            verify_signature(&key, Alg::Rs256, signed.as_bytes(), &sig),
            Err(JwtError::BadSignature)
        );
        // The same key through a JWK: the parsed key equals the one above.
        let (_, authority) =
            serde_json::from_value::<Jwk>(rfc_rsa_jwk("r")).unwrap().into_authority().unwrap();
        let PublicKey::Rsa { n, e } = authority.key else { panic!("an RSA key") };
        assert_eq!((n.len(), e.as_slice()), (256, &[1, 0, 1][..]));
    }

    #[test]
    fn ec_signatures_verify_the_rfc7515_a3_known_answer() {
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": rfc7515_a3::X, "y": rfc7515_a3::Y, "kid": "a3"});
        let (_, authority) = serde_json::from_value::<Jwk>(jwk).unwrap().into_authority().unwrap();
        let (signed, sig) = rfc7515_a3::JWS.rsplit_once('.').unwrap();
        let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        verify_signature(&authority.key, Alg::Es256, signed.as_bytes(), &sig).unwrap();
        sig[0] ^= 1;
        assert_eq!(
            verify_signature(&authority.key, Alg::Es256, signed.as_bytes(), &sig),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn rsa_tokens_verify_with_every_rsa_algorithm() {
        let mut authorities = JwtAuthorities::new();
        authorities.add_jwk(TD, rfc_rsa_jwk("rsa").to_string().as_bytes()).unwrap();
        for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
            let verified = verify(&rsa_token(alg, "rsa", &claims()), &authorities, &validation())
                .unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(verified.spiffe_id, ID, "{alg}");
        }
        // A JWK pinned to RS256 takes nothing else.
        let mut pinned = JwtAuthorities::new();
        let mut jwk = rfc_rsa_jwk("rsa");
        jwk["alg"] = json!("RS256");
        pinned.add_jwk(TD, jwk.to_string().as_bytes()).unwrap();
        verify(&rsa_token("RS256", "rsa", &claims()), &pinned, &validation()).unwrap();
        let token = rsa_token("PS256", "rsa", &claims());
        assert_eq!(refused(&token, &pinned, &validation()), JwtError::KeyMismatch);
    }

    #[test]
    fn expiry_is_required_and_honoured_within_the_leeway_only() {
        let signer = EcSigner::new("ES256", "k1");
        let authorities = signer.authorities(TD);
        let v = validation();
        let with_exp = |exp: serde_json::Value| {
            let mut c = claims();
            c["exp"] = exp;
            signer.token(&c)
        };
        // now <= exp + leeway.
        verify(&with_exp(json!(NOW - 30)), &authorities, &v).unwrap();
        verify(&with_exp(json!(NOW)), &authorities, &v).unwrap();
        verify(&with_exp(json!(NOW as f64 - 29.5)), &authorities, &v).unwrap();
        assert_eq!(refused(&with_exp(json!(NOW - 31)), &authorities, &v), JwtError::Expired);
        assert_eq!(refused(&with_exp(json!(0)), &authorities, &v), JwtError::Expired);
        assert_eq!(refused(&with_exp(json!(-5)), &authorities, &v), JwtError::Expired);
        // No leeway: exp == now is still valid, a second earlier is not.
        let strict = Validation { leeway: Duration::ZERO, ..v };
        verify(&with_exp(json!(NOW)), &authorities, &strict).unwrap();
        assert_eq!(refused(&with_exp(json!(NOW - 1)), &authorities, &strict), JwtError::Expired);
        // The leeway is capped at MAX_LEEWAY.
        let lax = Validation { leeway: Duration::from_secs(3600), ..v };
        verify(&with_exp(json!(NOW - 300)), &authorities, &lax).unwrap();
        assert_eq!(refused(&with_exp(json!(NOW - 301)), &authorities, &lax), JwtError::Expired);
        // Missing, null or nonsense.
        let mut no_exp = claims();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(refused(&signer.token(&no_exp), &authorities, &v), JwtError::NoExpiry);
        assert_eq!(refused(&with_exp(json!(null)), &authorities, &v), JwtError::NoExpiry);
        assert!(matches!(
            refused(&with_exp(json!("2030")), &authorities, &v),
            JwtError::Malformed(_)
        ));
        assert!(matches!(
            refused(&with_exp(json!(1e300)), &authorities, &v),
            JwtError::Malformed(_)
        ));
        assert!(matches!(
            refused(&with_exp(json!(u64::MAX)), &authorities, &v),
            JwtError::Malformed(_)
        ));
    }

    #[test]
    fn not_before_in_the_future_is_refused_beyond_the_leeway() {
        let signer = EcSigner::new("ES256", "k1");
        let authorities = signer.authorities(TD);
        let with_nbf = |nbf: i64| {
            let mut c = claims();
            c["nbf"] = json!(nbf);
            signer.token(&c)
        };
        verify(&with_nbf(NOW - 100), &authorities, &validation()).unwrap();
        verify(&with_nbf(NOW + 30), &authorities, &validation()).unwrap();
        assert_eq!(
            refused(&with_nbf(NOW + 31), &authorities, &validation()),
            JwtError::NotYetValid
        );
        assert_eq!(
            refused(&with_nbf(NOW + 3000), &authorities, &validation()),
            JwtError::NotYetValid
        );
    }

    #[test]
    fn the_audience_must_be_named_exactly() {
        let signer = EcSigner::new("ES256", "k1");
        let authorities = signer.authorities(TD);
        let with_aud = |aud: serde_json::Value| {
            let mut c = claims();
            c["aud"] = aud;
            signer.token(&c)
        };
        let v = validation();
        assert_eq!(verify(&with_aud(json!(AUD)), &authorities, &v).unwrap().audience, [AUD]);
        let both = verify(&with_aud(json!(["other", AUD])), &authorities, &v).unwrap();
        assert_eq!(both.audience, ["other", AUD]);
        for wrong in [
            json!("other"),
            json!(["other", "spike-nexus2"]),
            json!([]),
            json!("SPIKE-NEXUS"),
            json!("spike-nexus "),
            json!(null),
        ] {
            assert_eq!(
                refused(&with_aud(wrong.clone()), &authorities, &v),
                JwtError::WrongAudience,
                "{wrong}"
            );
        }
        let mut no_aud = claims();
        no_aud.as_object_mut().unwrap().remove("aud");
        assert_eq!(refused(&signer.token(&no_aud), &authorities, &v), JwtError::WrongAudience);
        assert!(matches!(
            refused(&with_aud(json!([AUD, 1])), &authorities, &v),
            JwtError::Malformed(_)
        ));
        // An empty expected audience matches nothing, not even an empty `aud`.
        let empty = Validation { audience: "", ..v };
        assert_eq!(refused(&with_aud(json!("")), &authorities, &empty), JwtError::WrongAudience);
    }

    #[test]
    fn keys_are_found_by_kid_in_the_subjects_trust_domain_only() {
        let a = EcSigner::new("ES256", "ka");
        let b = EcSigner::new("ES256", "kb");
        let mut authorities = JwtAuthorities::new();
        authorities.add_jwk("a.org", a.jwk().to_string().as_bytes()).unwrap();
        authorities.add_jwk("b.org", b.jwk().to_string().as_bytes()).unwrap();
        let v = validation();
        let in_b = |c: &mut serde_json::Value| c["sub"] = json!("spiffe://b.org/workload");
        let mut claims_b = claims();
        in_b(&mut claims_b);
        assert_eq!(verify(&b.token(&claims_b), &authorities, &v).unwrap().trust_domain, "b.org");
        // td A's key (and kid) for a td B subject: not found in B.
        assert_eq!(refused(&a.token(&claims_b), &authorities, &v), JwtError::UnknownKey);
        // Even when B has a key under the same kid, only B's key counts.
        let a_as_kb = EcSigner { kid: "kb".into(), ..EcSigner::new("ES256", "x") };
        assert_eq!(refused(&a_as_kb.token(&claims_b), &authorities, &v), JwtError::BadSignature);
        // Unknown kid, unknown trust domain, no authorities at all.
        let stranger = EcSigner::new("ES256", "kz");
        assert_eq!(refused(&stranger.token(&claims_b), &authorities, &v), JwtError::UnknownKey);
        let mut claims_c = claims();
        claims_c["sub"] = json!("spiffe://c.org/workload");
        assert_eq!(refused(&a.token(&claims_c), &authorities, &v), JwtError::UnknownKey);
        assert_eq!(refused(&a.token(&claims()), &JwtAuthorities::new(), &v), JwtError::UnknownKey);
        // A kid naming a key of another type.
        let p384_as_ka = EcSigner { kid: "ka".into(), ..EcSigner::new("ES384", "x") };
        let mut claims_a = claims();
        claims_a["sub"] = json!("spiffe://a.org/workload");
        assert_eq!(refused(&p384_as_ka.token(&claims_a), &authorities, &v), JwtError::KeyMismatch);
        assert_eq!(
            refused(&rsa_token("RS256", "ka", &claims_a), &authorities, &v),
            JwtError::KeyMismatch
        );
    }

    #[test]
    fn the_trust_domain_must_be_accepted() {
        let signer = EcSigner::new("ES256", "k1");
        let authorities = signer.authorities(TD);
        let token = signer.token(&claims());
        let others = ["other.org".to_owned()];
        let v = Validation { trust_domains: Some(&others), ..validation() };
        assert_eq!(refused(&token, &authorities, &v), JwtError::UntrustedDomain(TD.into()));
        let none: [String; 0] = [];
        let v = Validation { trust_domains: Some(&none), ..validation() };
        assert_eq!(refused(&token, &authorities, &v), JwtError::UntrustedDomain(TD.into()));
        let listed = ["other.org".to_owned(), TD.to_owned()];
        let v = Validation { trust_domains: Some(&listed), ..validation() };
        verify(&token, &authorities, &v).unwrap();
    }

    #[test]
    fn alg_none_and_hmac_are_refused_whatever_the_signature() {
        let signer = EcSigner::new("ES256", "k1");
        let authorities = signer.authorities(TD);
        let claims = claims().to_string();
        let none = token_raw(r#"{"alg":"none","kid":"k1"}"#, &claims, |_| Vec::new());
        assert!(none.ends_with('.'));
        assert_eq!(
            refused(&none, &authorities, &validation()),
            JwtError::UnsupportedAlgorithm("none".into())
        );
        // HS256 keyed with the public key (the point, and the JWK text): the classic confusion.
        let jwk_text = signer.jwk().to_string();
        for secret in [signer.point(), jwk_text.as_bytes()] {
            for alg in ["HS256", "HS384", "HS512"] {
                let header = format!(r#"{{"alg":"{alg}","kid":"k1"}}"#);
                let token = token_raw(&header, &claims, |m| {
                    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
                    mac.update(m);
                    mac.finalize().into_bytes().to_vec()
                });
                assert_eq!(
                    refused(&token, &authorities, &validation()),
                    JwtError::UnsupportedAlgorithm(alg.into())
                );
            }
        }
        for alg in ["es256", "EdDSA", "ES512", "RS1", ""] {
            let token = token_raw(&format!(r#"{{"alg":"{alg}","kid":"k1"}}"#), &claims, |m| {
                signer.sign_bytes(m)
            });
            assert!(
                matches!(
                    refused(&token, &authorities, &validation()),
                    JwtError::UnsupportedAlgorithm(_)
                ),
                "{alg}"
            );
        }
        // An unprintable or long alg is not echoed.
        let long = "A".repeat(200);
        let token = token_raw(&format!(r#"{{"alg":"{long}","kid":"k1"}}"#), &claims, |_| vec![1]);
        assert_eq!(
            refused(&token, &authorities, &validation()),
            JwtError::UnsupportedAlgorithm("(not shown)".into())
        );
        let token = token_raw(r#"{"kid":"k1"}"#, &claims, |_| vec![1]);
        assert!(matches!(refused(&token, &authorities, &validation()), JwtError::Malformed(_)));
    }

    #[test]
    fn a_tampered_token_does_not_verify() {
        let signer = EcSigner::new("ES256", "k1");
        let authorities = signer.authorities(TD);
        let token = signer.token(&claims());
        let (header, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let mut evil = claims();
        evil["sub"] = json!("spiffe://example.org/spike/pilot/role/superuser");
        let tampered = format!("{header}.{}.{sig}", b64(evil.to_string()));
        assert_eq!(refused(&tampered, &authorities, &validation()), JwtError::BadSignature);
        // Another kid in the header, or another typ: the header is signed too.
        let other_header = b64(json!({"alg": "ES256", "kid": "k1", "typ": "JOSE"}).to_string());
        let (_, claims_sig) = token.split_once('.').unwrap();
        assert_eq!(
            refused(&format!("{other_header}.{claims_sig}"), &authorities, &validation()),
            JwtError::BadSignature
        );
        // Empty, truncated or extended signatures.
        let signed = token.rsplit_once('.').unwrap().0;
        for bad in [String::new(), sig[..sig.len() - 6].to_owned(), format!("{sig}AAAA")] {
            assert_eq!(
                refused(&format!("{signed}.{bad}"), &authorities, &validation()),
                JwtError::BadSignature
            );
        }
    }

    #[test]
    fn malformed_tokens_are_refused_before_any_key_is_used() {
        let signer = EcSigner::new("ES256", "k1");
        let authorities = signer.authorities(TD);
        let token = signer.token(&claims());
        let v = validation();
        let malformed = |t: &str| matches!(refused(t, &authorities, &v), JwtError::Malformed(_));
        let (header, rest) = token.split_once('.').unwrap();
        let (claims_b64, sig) = rest.split_once('.').unwrap();
        assert!(malformed(""));
        assert!(malformed("."));
        assert!(malformed(".."));
        assert!(malformed(&format!("{header}.{claims_b64}")));
        assert!(malformed(&format!("{token}.")));
        assert!(malformed(&format!("{token}.{sig}")));
        assert!(malformed(&format!("{header}.{claims_b64}.{sig}.{sig}")));
        assert!(malformed(&format!("{header}=.{claims_b64}.{sig}")));
        assert!(malformed(&format!("{header}.{claims_b64}.{sig}=")));
        assert!(malformed(&format!("{header}.{claims_b64}*.{sig}")));
        assert!(malformed(&format!("{header}.{}.{sig}", claims_b64.replace('e', "+"))));
        assert!(malformed(&format!(" {token}")));
        assert!(malformed(&format!("{token}\n")));
        // Standard-alphabet base64 of the signature (`+`, `/`) is not base64url. The
        // signature is random, so put a `+` in for certain rather than hoping for a `-`.
        let mut standard: String = sig.replace('-', "+").replace('_', "/");
        standard.replace_range(0..1, "+");
        assert!(malformed(&format!("{header}.{claims_b64}.{standard}")));
        let sign = |m: &[u8]| signer.sign_bytes(m);
        let c = claims().to_string();
        for header in [
            "[\"ES256\",\"k1\"]",
            "\"ES256\"",
            "null",
            "{",
            r#"{"alg":"ES256","alg":"ES256","kid":"k1"}"#,
            r#"{"alg":"ES256","kid":"k1","kid":"k1"}"#,
            r#"{"alg":"ES256","kid":"k1","typ":"at+jwt"}"#,
            r#"{"alg":"ES256","kid":"k1","crit":["exp"]}"#,
            r#"{"alg":"ES256","kid":"k1","crit":null}"#,
            r#"{"alg":"ES256","kid":7}"#,
            r#"{"alg":"ES256"}"#,
            r#"{"alg":"ES256","kid":"k1"} {}"#,
        ] {
            assert!(malformed(&token_raw(header, &c, sign)), "{header}");
        }
        for ok_typ in ["JWT", "JOSE"] {
            let header =
                format!(r#"{{"alg":"ES256","kid":"k1","typ":"{ok_typ}","x5u":"https://evil"}}"#);
            verify(&token_raw(&header, &c, sign), &authorities, &v).unwrap();
        }
        let h = r#"{"alg":"ES256","kid":"k1"}"#;
        for claims in [
            format!(
                r#"{{"sub":"{ID}","sub":"spiffe://example.org/other","aud":"{AUD}","exp":{}}}"#,
                NOW + 60
            ),
            format!(r#"{{"sub":"{ID}","aud":"{AUD}","exp":{},"exp":{}}}"#, NOW - 9999, NOW + 60),
            format!(r#"[{{"sub":"{ID}","aud":"{AUD}","exp":{}}}]"#, NOW + 60),
            format!(r#"{{"sub":"{ID}","aud":"{AUD}","exp":{},"nbf":"soon"}}"#, NOW + 60),
            format!(r#"{{"sub":["{ID}"],"aud":"{AUD}","exp":{}}}"#, NOW + 60),
            "not json".to_owned(),
        ] {
            assert!(malformed(&token_raw(h, &claims, sign)), "{claims}");
        }
        // Unknown claims are ignored.
        let extra = format!(r#"{{"sub":"{ID}","aud":"{AUD}","exp":{},"x":1,"x":2}}"#, NOW + 60);
        verify(&token_raw(h, &extra, sign), &authorities, &v).unwrap();
    }

    #[test]
    fn oversized_tokens_are_refused_unread() {
        let signer = EcSigner::new("ES256", "k1");
        let authorities = signer.authorities(TD);
        let mut big = claims();
        big["pad"] = json!("x".repeat(MAX_TOKEN_LEN));
        assert_eq!(refused(&signer.token(&big), &authorities, &validation()), JwtError::TooLarge);
        assert_eq!(
            refused(&"a".repeat(MAX_TOKEN_LEN + 1), &authorities, &validation()),
            JwtError::TooLarge
        );
        // Just under the limit is read.
        let mut fits = claims();
        fits["pad"] = json!("");
        let room = MAX_TOKEN_LEN - signer.token(&fits).len();
        fits["pad"] = json!("x".repeat(room * 3 / 4 - 2));
        let token = signer.token(&fits);
        assert!(token.len() <= MAX_TOKEN_LEN && token.len() > MAX_TOKEN_LEN - 8, "{}", token.len());
        verify(&token, &authorities, &validation()).unwrap();
    }

    #[test]
    fn the_subject_must_be_a_spiffe_id_with_a_path() {
        let signer = EcSigner::new("ES256", "k1");
        let authorities = signer.authorities(TD);
        let with_sub = |sub: serde_json::Value| {
            let mut c = claims();
            c["sub"] = sub;
            signer.token(&c)
        };
        let long = format!("spiffe://example.org/{}", "a".repeat(2048));
        for bad in [
            "",
            "example.org/app",
            "https://example.org/app",
            "SPIFFE://example.org/app",
            "spiffe://example.org",
            "spiffe://example.org/",
            "spiffe://example.org/app/",
            "spiffe:///app",
            "spiffe://Example.org/app",
            "spiffe://example.org:8443/app",
            "spiffe://user@example.org/app",
            "spiffe://example.org/app?x=1",
            "spiffe://example.org/app#frag",
            "spiffe://example.org//app",
            "spiffe://example.org/./app",
            "spiffe://example.org/app/..",
            "spiffe://example.org/a%2fb",
            "spiffe://example.org/a b",
            "spiffe://example.org/é",
            "spiffe://exa,mple.org/app",
            long.as_str(),
        ] {
            let err = refused(&with_sub(json!(bad)), &authorities, &validation());
            assert!(matches!(err, JwtError::BadSubject(_)), "{bad:?}: {err}");
        }
        let mut no_sub = claims();
        no_sub.as_object_mut().unwrap().remove("sub");
        assert!(matches!(
            refused(&signer.token(&no_sub), &authorities, &validation()),
            JwtError::BadSubject(_)
        ));
        // Allowed characters, and dots inside segments.
        for good in ["spiffe://example.org/a", "spiffe://example.org/A-Z_0.9/..x/.y"] {
            assert_eq!(
                verify(&with_sub(json!(good)), &authorities, &validation()).unwrap().spiffe_id,
                good
            );
        }
    }

    #[test]
    fn jwks_documents_keep_usable_keys_and_skip_the_rest() {
        let p256 = EcSigner::new("ES256", "p256");
        let p384 = EcSigner::new("ES384", "p384");
        let mut x509 = p256.jwk();
        x509["use"] = json!("x509-svid");
        x509["kid"] = json!("x509");
        let mut no_kid = p256.jwk();
        no_kid.as_object_mut().unwrap().remove("kid");
        let mut no_use = p384.jwk();
        no_use.as_object_mut().unwrap().remove("use");
        let mut short_x = p256.jwk();
        short_x["x"] = json!("AAAA");
        short_x["kid"] = json!("short");
        let mut wrong_alg = p256.jwk();
        wrong_alg["alg"] = json!("RS256");
        wrong_alg["kid"] = json!("wrong-alg");
        let small_rsa = json!({"kty": "RSA", "kid": "small", "e": "AQAB", "n": b64([0xff; 128])});
        let even_e = json!({"kty": "RSA", "kid": "even", "e": "AQAA", "n": rfc7515_a2::N});
        let jwks = json!({
            "keys": [
                p256.jwk(),
                no_use,
                rfc_rsa_jwk("rsa"),
                x509,
                no_kid,
                short_x,
                wrong_alg,
                small_rsa,
                even_e,
                {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed"},
                {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"},
                {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
                {"kty": "EC", "crv": "P-256", "x": 1, "y": 2, "kid": "types"},
                "not a key",
            ],
            "spiffe_refresh_hint": 300,
            "spiffe_sequence": 1,
        });
        let mut authorities = JwtAuthorities::new();
        assert!(authorities.is_empty());
        assert_eq!(authorities.add_jwks(TD, jwks.to_string().as_bytes()).unwrap(), 3);
        assert!(!authorities.is_empty());
        let debug = format!("{authorities:?}");
        assert!(
            debug.contains("p256") && debug.contains("rsa") && !debug.contains("x509"),
            "{debug}"
        );
        verify(&p256.token(&claims()), &authorities, &validation()).unwrap();
        verify(&p384.token(&claims()), &authorities, &validation()).unwrap();
        verify(&rsa_token("PS256", "rsa", &claims()), &authorities, &validation()).unwrap();
        // Keys of an empty document: none, and still empty.
        let mut empty = JwtAuthorities::new();
        assert_eq!(empty.add_jwks(TD, br#"{"keys":[]}"#).unwrap(), 0);
        assert!(empty.is_empty());
        // Malformed documents and trust domain names are errors.
        for bad in [&b"not json"[..], b"[]", br#"{"keys":{}}"#, b"{}", br#"{"keys":[],"keys":[]}"#]
        {
            assert!(matches!(authorities.add_jwks(TD, bad), Err(JwtError::BadJwks(_))));
        }
        for td in ["", "Example.org", "a.org,b.org", " a.org", "spiffe://a.org"] {
            assert!(
                matches!(
                    authorities.add_jwks(td, br#"{"keys":[]}"#),
                    Err(JwtError::InvalidTrustDomain(_))
                ),
                "{td:?}"
            );
        }
    }

    #[test]
    fn a_single_jwk_is_added_or_refused_with_a_reason() {
        let signer = EcSigner::new("ES256", "k1");
        let mut authorities = JwtAuthorities::new();
        authorities.add_jwk(TD, signer.jwk().to_string().as_bytes()).unwrap();
        let mut x509 = signer.jwk();
        x509["use"] = json!("x509-svid");
        assert!(matches!(
            authorities.add_jwk(TD, x509.to_string().as_bytes()),
            Err(JwtError::UnusableKey(_))
        ));
        assert!(matches!(authorities.add_jwk(TD, b"{\"kty\":1}"), Err(JwtError::BadJwks(_))));
        assert!(matches!(
            authorities.add_jwk(TD, br#"{"keys":[]}"#),
            Err(JwtError::UnusableKey(_))
        ));
        assert!(matches!(authorities.add_jwk(TD, b"[]"), Err(JwtError::BadJwks(_))));
        assert!(matches!(
            authorities.add_jwk("A.org", signer.jwk().to_string().as_bytes()),
            Err(JwtError::InvalidTrustDomain(_))
        ));
        // A later key under the same kid replaces the earlier one.
        let successor = EcSigner { kid: "k1".into(), ..EcSigner::new("ES256", "x") };
        authorities.add_jwk(TD, successor.jwk().to_string().as_bytes()).unwrap();
        verify(&successor.token(&claims()), &authorities, &validation()).unwrap();
        assert_eq!(
            refused(&signer.token(&claims()), &authorities, &validation()),
            JwtError::BadSignature
        );
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,400}") {
            let signer_free = JwtAuthorities::new();
            if let Err(err) = verify(&s, &signer_free, &validation()) {
                assert_no_token_text(&err, &s);
            }
        }

        #[test]
        fn arbitrary_three_part_tokens_never_panic_nor_verify(
            header in "[A-Za-z0-9_-]{0,80}",
            claims in "[A-Za-z0-9_-]{0,200}",
            sig in "[A-Za-z0-9_-]{0,120}",
        ) {
            let mut authorities = JwtAuthorities::new();
            authorities.add_jwk(TD, &serde_json::to_vec(&json!({"kty": "EC", "crv": "P-256", "x": rfc7515_a3::X, "y": rfc7515_a3::Y, "kid": "k1"})).unwrap()).unwrap();
            let token = format!("{header}.{claims}.{sig}");
            let err = verify(&token, &authorities, &validation()).unwrap_err();
            assert_no_token_text(&err, &token);
        }

        #[test]
        fn arbitrary_json_headers_and_claims_never_panic(
            header in proptest::collection::btree_map("alg|kid|typ|crit|x", "[A-Za-z0-9]{0,8}", 0..4),
            claims in proptest::collection::btree_map("sub|aud|exp|nbf|iat", any::<i64>(), 0..5),
        ) {
            let signer = EcSigner::new("ES256", "k1");
            let authorities = signer.authorities(TD);
            let token = token_raw(&serde_json::to_string(&header).unwrap(), &serde_json::to_string(&claims).unwrap(), |m| signer.sign_bytes(m));
            let err = verify(&token, &authorities, &validation()).unwrap_err();
            assert_no_token_text(&err, &token);
        }
    }
}
