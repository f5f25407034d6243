//! JWT-SVIDs (SPIFFE JWT-SVID spec), as SPIRE's agent serves them: an ES256 (ECDSA P-256)
//! signing key per trust domain with a random `kid`, rotated on a timer; tokens minted with the
//! current key; a JWKS bundle holding the current key and every retired key whose tokens may
//! still be valid; and verification of the agent's own tokens for `ValidateJWTSVID`.
//!
//! Signing keys live in memory only: after a restart, tokens from the previous run no longer
//! validate (they are minutes-lived, and callers fetch fresh ones).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};
use serde_json::{Map, Value, json};
use spiffe::{SpiffeId, TrustDomain};

use crate::error::DevAgentError;

/// The only algorithm the agent signs with, and so the only one it accepts.
const ALG: &str = "ES256";
/// Random bytes in a `kid` (32 base64url characters, like SPIRE's key IDs).
const KID_BYTES: usize = 24;
/// Longer tokens are refused before any decoding (ours are well under 1 KiB).
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// A P-256 coordinate, and the size of each half of an ES256 signature.
const COORD_LEN: usize = 32;

/// One ES256 signing key. The private key exists only inside ring's key pair: the PKCS#8
/// document ring generates is parsed and dropped at once (ring gives no mutable access to
/// that document, so it cannot be zeroized; no copy of it is kept).
pub(super) struct SigningKey {
    kid: String,
    key_pair: EcdsaKeyPair,
}

impl fmt::Debug for SigningKey {
    // The key pair is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKey {
    fn generate(trust_domain: &TrustDomain) -> Result<Self, DevAgentError> {
        let fail = |what: &str| DevAgentError::Issue {
            subject: format!("the JWT signing key of {trust_domain}"),
            reason: format!("ring could not {what}"),
        };
        let rng = SystemRandom::new();
        let key_pair = {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| fail("generate an ECDSA P-256 key"))?;
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .map_err(|_| fail("load the ECDSA P-256 key it generated"))?
        };
        let mut kid = [0u8; KID_BYTES];
        rng.fill(&mut kid).map_err(|_| fail("draw a random key ID"))?;
        Ok(Self { kid: URL_SAFE_NO_PAD.encode(kid), key_pair })
    }

    /// The uncompressed public point `0x04 || x || y`.
    fn public_key(&self) -> &[u8] {
        self.key_pair.public_key().as_ref()
    }

    /// The public key as a JWK (RFC 7517/7518) with the SPIFFE bundle `use`.
    fn jwk(&self) -> Value {
        let point = self.public_key();
        // ring's P-256 public keys are always the 65-byte uncompressed form.
        let (x, y) = point[1..].split_at(COORD_LEN);
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
            "kid": self.kid,
            "use": "jwt-svid",
        })
    }
}

/// A key in a [`JwtKeys`] set, with when it leaves the bundle.
#[derive(Debug, Clone)]
struct KeySlot {
    key: std::sync::Arc<SigningKey>,
    /// `None` while the key signs; once retired, when the last token it signed has expired.
    drop_after: Option<SystemTime>,
}

/// One trust domain's JWT keys at one moment: the signing key (last) and the retired keys
/// still in the bundle. Each change (rotation, a retired key leaving) is a new generation.
#[derive(Debug, Clone)]
pub(super) struct JwtKeys {
    pub(super) generation: u64,
    trust_domain: TrustDomain,
    slots: Vec<KeySlot>,
}

/// Why a token is refused; never contains the token or any part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Invalid(pub(super) &'static str);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JWT-SVID: {}", self.0)
    }
}

/// A token that verified: its SPIFFE ID and all of its claims.
#[derive(Debug)]
pub(super) struct Validated {
    pub(super) spiffe_id: SpiffeId,
    pub(super) claims: Map<String, Value>,
}

/// Seconds since the Unix epoch (0 for a clock before 1970).
pub(super) fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl JwtKeys {
    /// A first key set for `trust_domain`: one fresh signing key.
    pub(super) fn new(trust_domain: &TrustDomain) -> Result<Self, DevAgentError> {
        let key = SigningKey::generate(trust_domain)?;
        Ok(Self {
            generation: 0,
            trust_domain: trust_domain.clone(),
            slots: vec![KeySlot { key: std::sync::Arc::new(key), drop_after: None }],
        })
    }

    /// The next generation: a new signing key; the current one retires and stays in the
    /// bundle for `ttl` (the longest any token it signed can live); keys whose tokens have
    /// all expired by `now` leave.
    pub(super) fn rotated(&self, now: SystemTime, ttl: Duration) -> Result<Self, DevAgentError> {
        let key = SigningKey::generate(&self.trust_domain)?;
        let retire = now + Duration::from_secs(ttl.as_secs());
        let mut slots: Vec<KeySlot> = self
            .slots
            .iter()
            .map(|s| KeySlot {
                key: s.key.clone(),
                drop_after: Some(s.drop_after.unwrap_or(retire)),
            })
            .filter(|s| s.drop_after.is_some_and(|t| t > now))
            .collect();
        slots.push(KeySlot { key: std::sync::Arc::new(key), drop_after: None });
        Ok(Self { generation: self.generation + 1, trust_domain: self.trust_domain.clone(), slots })
    }

    /// The next generation without the retired keys whose tokens have all expired by `now`,
    /// or `None` if none has.
    pub(super) fn pruned(&self, now: SystemTime) -> Option<Self> {
        let keep = |s: &&KeySlot| s.drop_after.is_none_or(|t| t > now);
        if self.slots.iter().all(|s| keep(&s)) {
            return None;
        }
        Some(Self {
            generation: self.generation + 1,
            trust_domain: self.trust_domain.clone(),
            slots: self.slots.iter().filter(keep).cloned().collect(),
        })
    }

    /// When the next retired key leaves the bundle, if any is retired.
    pub(super) fn next_drop(&self) -> Option<SystemTime> {
        self.slots.iter().filter_map(|s| s.drop_after).min()
    }

    /// The trust domain these keys sign for.
    pub(super) fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The key IDs in the bundle, oldest first (the last one signs).
    #[cfg(test)]
    fn kids(&self) -> Vec<&str> {
        self.slots.iter().map(|s| s.key.kid.as_str()).collect()
    }

    fn signing_key(&self) -> &SigningKey {
        // Every set has exactly one key without a drop time, and it is pushed last.
        let slot = self.slots.iter().rev().find(|s| s.drop_after.is_none());
        &slot.unwrap_or_else(|| unreachable!("a JWT key set always has a signing key")).key
    }

    /// The JWKS document of the bundle: `{"keys":[...]}`.
    pub(super) fn jwks(&self) -> Vec<u8> {
        let keys: Vec<Value> = self.slots.iter().map(|s| s.key.jwk()).collect();
        json!({ "keys": keys }).to_string().into_bytes()
    }

    /// Mints a JWT-SVID for `id` and `audience`, valid for `ttl` (whole seconds) from `now`.
    pub(super) fn mint(
        &self,
        id: &SpiffeId,
        audience: &[String],
        now: SystemTime,
        ttl: Duration,
    ) -> Result<String, DevAgentError> {
        let key = self.signing_key();
        let iat = unix_seconds(now);
        let header = json!({ "alg": ALG, "kid": key.kid, "typ": "JWT" });
        let claims = json!({
            "sub": id.to_string(),
            "aud": audience,
            "exp": iat + ttl.as_secs(),
            "iat": iat,
        });
        let mut token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature =
            key.key_pair.sign(&SystemRandom::new(), token.as_bytes()).map_err(|_| {
                DevAgentError::Issue {
                    subject: format!("a JWT-SVID for {id}"),
                    reason: "ring could not sign it".into(),
                }
            })?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
        Ok(token)
    }

    /// Verifies `token` against these keys: ES256 only, a known `kid`, the signature, a
    /// `sub` in this trust domain, `audience` among `aud`, `exp` after `now` (and `nbf`, if
    /// present, not after it).
    pub(super) fn validate(
        &self,
        token: &str,
        audience: &str,
        now: SystemTime,
    ) -> Result<Validated, Invalid> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Invalid("the token is too long"));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Invalid("not a JWS compact serialization (header.claims.signature)"));
        };
        let header =
            decode_object(header_b64).ok_or(Invalid("the header is not base64url JSON"))?;
        if header.get("alg").and_then(Value::as_str) != Some(ALG) {
            return Err(Invalid("the algorithm is not ES256, the only one this agent accepts"));
        }
        match header.get("typ") {
            None => {}
            Some(Value::String(t)) if t == "JWT" || t == "JOSE" => {}
            Some(_) => return Err(Invalid("the header's typ is neither JWT nor JOSE")),
        }
        if header.contains_key("crit") {
            return Err(Invalid("the header has critical extensions this agent does not know"));
        }
        let kid = header.get("kid").and_then(Value::as_str).ok_or(Invalid("no key ID (kid)"))?;
        let key = self
            .slots
            .iter()
            .map(|s| &s.key)
            .find(|k| k.kid == kid)
            .ok_or(Invalid("signed by a key that is not in this agent's bundle"))?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| Invalid("the signature is not base64url"))?;
        let signed = &token[..header_b64.len() + 1 + claims_b64.len()];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key())
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| Invalid("the signature does not verify"))?;

        let claims =
            decode_object(claims_b64).ok_or(Invalid("the claims are not base64url JSON"))?;
        let sub = claims.get("sub").and_then(Value::as_str).ok_or(Invalid("no subject (sub)"))?;
        let spiffe_id =
            SpiffeId::new(sub).map_err(|_| Invalid("the subject is not a SPIFFE ID"))?;
        if spiffe_id.trust_domain() != &self.trust_domain {
            return Err(Invalid("the subject is outside the signing key's trust domain"));
        }
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(list)) => {
                list.iter().map(Value::as_str).collect::<Option<_>>().unwrap_or_default()
            }
            _ => Vec::new(),
        };
        if audiences.is_empty() {
            return Err(Invalid("no audience (aud)"));
        }
        if !audiences.contains(&audience) {
            return Err(Invalid("the audience does not match"));
        }
        let now_secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let exp = claims.get("exp").and_then(Value::as_f64).ok_or(Invalid("no expiry (exp)"))?;
        if now_secs >= exp {
            return Err(Invalid("the token has expired"));
        }
        match claims.get("nbf") {
            None => {}
            Some(nbf) => match nbf.as_f64() {
                Some(nbf) if nbf <= now_secs => {}
                Some(_) => return Err(Invalid("the token is not valid yet (nbf)")),
                None => return Err(Invalid("the not-before claim (nbf) is not a number")),
            },
        }
        Ok(Validated { spiffe_id, claims })
    }
}

fn decode_object(b64: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(b64).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A JSON value as a protobuf `Value` (for `ValidateJWTSVIDResponse.claims`).
fn to_proto(value: Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(prost_types::NullValue::NullValue.into()),
        Value::Bool(b) => Kind::BoolValue(b),
        // Protobuf's Struct has only doubles; JWT times fit them exactly.
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(list) => Kind::ListValue(prost_types::ListValue {
            values: list.into_iter().map(to_proto).collect(),
        }),
        Value::Object(map) => Kind::StructValue(to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A JSON object as a protobuf `Struct`.
pub(super) fn to_struct(map: Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct { fields: map.into_iter().map(|(k, v)| (k, to_proto(v))).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn td() -> TrustDomain {
        TrustDomain::new("spike.ist").unwrap()
    }

    fn id() -> SpiffeId {
        SpiffeId::new("spiffe://spike.ist/spike/nexus").unwrap()
    }

    fn aud() -> Vec<String> {
        vec!["spike-nexus".into(), "other".into()]
    }

    fn b64(json: &Value) -> String {
        URL_SAFE_NO_PAD.encode(json.to_string())
    }

    fn parts(token: &str) -> (Value, Value, String) {
        let p: Vec<&str> = token.split('.').collect();
        let decode = |s: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
        (decode(p[0]), decode(p[1]), p[2].to_owned())
    }

    #[test]
    fn minted_tokens_verify_and_carry_the_spiffe_claims() {
        let keys = JwtKeys::new(&td()).unwrap();
        let now = SystemTime::now();
        let token = keys.mint(&id(), &aud(), now, Duration::from_secs(300)).unwrap();
        let (header, claims, _) = parts(&token);
        assert_eq!(header, json!({"alg": "ES256", "kid": keys.kids()[0], "typ": "JWT"}));
        let iat = unix_seconds(now);
        assert_eq!(
            claims,
            json!({"sub": id().to_string(), "aud": aud(), "iat": iat, "exp": iat + 300})
        );
        let ok = keys.validate(&token, "other", now).unwrap();
        assert_eq!(ok.spiffe_id, id());
        assert_eq!(ok.claims.get("exp"), Some(&json!(iat + 300)));
        assert_eq!(
            keys.validate(&token, "nobody", now).unwrap_err(),
            Invalid("the audience does not match")
        );
        let later = now + Duration::from_secs(301);
        assert_eq!(
            keys.validate(&token, "other", later).unwrap_err(),
            Invalid("the token has expired")
        );
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused_without_echoing_them() {
        let keys = JwtKeys::new(&td()).unwrap();
        let now = SystemTime::now();
        let token = keys.mint(&id(), &aud(), now, HOUR).unwrap();
        let (header, claims, sig) = parts(&token);
        let forged = |h: &Value, c: &Value, s: &str| format!("{}.{}.{s}", b64(h), b64(c));

        let mut other_sub = claims.clone();
        other_sub["sub"] = json!("spiffe://spike.ist/spike/keeper");
        let mut none = header.clone();
        none["alg"] = json!("none");
        let mut hs = header.clone();
        hs["alg"] = json!("HS256");
        let other_keys = JwtKeys::new(&td()).unwrap();
        let stranger = other_keys.mint(&id(), &aud(), now, HOUR).unwrap();
        let mut crit = header.clone();
        crit["crit"] = json!(["exp"]);

        let cases = [
            (forged(&header, &other_sub, &sig), "the signature does not verify"),
            (
                forged(&none, &claims, ""),
                "the algorithm is not ES256, the only one this agent accepts",
            ),
            (
                forged(&hs, &claims, &sig),
                "the algorithm is not ES256, the only one this agent accepts",
            ),
            (
                forged(&crit, &claims, &sig),
                "the header has critical extensions this agent does not know",
            ),
            (stranger, "signed by a key that is not in this agent's bundle"),
            (format!("{token}.x"), "not a JWS compact serialization (header.claims.signature)"),
            (format!("{token}="), "the signature is not base64url"),
            ("x".repeat(MAX_TOKEN_LEN + 1), "the token is too long"),
        ];
        for (bad, why) in cases {
            let err = keys.validate(&bad, "spike-nexus", now).unwrap_err();
            assert_eq!(err, Invalid(why));
            assert!(!err.to_string().contains(&sig));
        }
        // A correctly signed token whose subject is in another trust domain.
        let evil = keys.mint(&SpiffeId::new("spiffe://evil.org/x").unwrap(), &aud(), now, HOUR);
        let err = keys.validate(&evil.unwrap(), "spike-nexus", now).unwrap_err();
        assert_eq!(err, Invalid("the subject is outside the signing key's trust domain"));
    }

    #[test]
    fn rotation_keeps_retired_keys_until_their_tokens_expire() {
        let ttl = Duration::from_secs(300);
        let t0 = SystemTime::now();
        let first = JwtKeys::new(&td()).unwrap();
        let old = first.mint(&id(), &aud(), t0, ttl).unwrap();
        let second = first.rotated(t0, ttl).unwrap();
        assert_eq!(second.generation, 1);
        assert_eq!(second.kids().len(), 2);
        assert_eq!(second.kids()[0], first.kids()[0]);
        let new = second.mint(&id(), &aud(), t0, ttl).unwrap();
        assert_eq!(parts(&new).0["kid"], json!(second.kids()[1]));
        assert!(second.validate(&old, "spike-nexus", t0).is_ok());
        assert_eq!(second.next_drop(), Some(t0 + ttl));
        assert!(second.pruned(t0 + ttl - Duration::from_secs(1)).is_none());
        let third = second.pruned(t0 + ttl).unwrap();
        assert_eq!(third.kids(), [second.kids()[1]]);
        assert_eq!(third.generation, 2);
        assert_eq!(third.next_drop(), None);
        let jwks: Value = serde_json::from_slice(&second.jwks()).unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        for (k, kid) in keys.iter().zip(second.kids()) {
            assert_eq!(k["kid"], json!(kid));
            assert_eq!((k["kty"].as_str(), k["crv"].as_str()), (Some("EC"), Some("P-256")));
            assert_eq!(URL_SAFE_NO_PAD.decode(k["x"].as_str().unwrap()).unwrap().len(), 32);
            assert_eq!(URL_SAFE_NO_PAD.decode(k["y"].as_str().unwrap()).unwrap().len(), 32);
        }
    }

    #[test]
    fn claims_become_a_protobuf_struct() {
        let map = json!({"a": [1, "x", null, true], "b": {"c": 2.5}}).as_object().cloned().unwrap();
        let s = to_struct(map);
        use prost_types::value::Kind;
        let Some(Kind::ListValue(list)) = &s.fields["a"].kind else { panic!() };
        assert_eq!(list.values[0].kind, Some(Kind::NumberValue(1.0)));
        assert_eq!(list.values[3].kind, Some(Kind::BoolValue(true)));
        let Some(Kind::StructValue(b)) = &s.fields["b"].kind else { panic!() };
        assert_eq!(b.fields["c"].kind, Some(Kind::NumberValue(2.5)));
    }
}
