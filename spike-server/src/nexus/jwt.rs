//! JWT-SVID callers (extension): Nexus's second listener, for workloads that can only carry a
//! JWT-SVID (behind a TLS-terminating proxy, serverless functions).
//!
//! The listener is server-authenticated TLS without client certificates
//! (`SPIKE_NEXUS_JWT_TLS_PORT`, off by default); every request carries
//! `Authorization: Bearer <JWT-SVID>`. The token is verified against the trust domains' JWT
//! signing keys ([`JwtKeys`]: streamed live from the Workload API's `FetchJWTBundles`, or read
//! from bundle files), with `spike_core::jwt::verify`'s rules: an algorithm allow-list (no
//! `none`, no HMAC), the configured audience, a required `exp` with bounded clock skew, and a
//! `sub` that is a SPIFFE ID of a trust domain with keys. The caller is then the `sub`, and the
//! request goes through the same router as an mTLS request — policies, limits and audit treat
//! it the same, and the audit line says `auth: jwt-svid`.
//!
//! What stays mTLS-only: every SPIKE role (Pilot roles, Nexus, Keeper, Bootstrap, lite
//! workloads) and the operator routes. A refused token is answered 401
//! `access_unauthorized`; neither the token nor any part of it is logged.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderMap, Request, header};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use spike_core::jwt::{JwtAuthorities, Validation};

use super::config::{JwtBundleSource, JwtListenerConfig};
use super::router::{AuthForm, Caller};
use super::state::NexusState;

/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(30);

/// The trust domains' JWT signing keys, replaced whole when a new bundle set arrives.
#[derive(Debug, Default)]
pub struct JwtKeys {
    current: RwLock<Arc<JwtAuthorities>>,
}

impl JwtKeys {
    /// The keys in use now.
    pub fn current(&self) -> Arc<JwtAuthorities> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn replace(&self, keys: JwtAuthorities) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
    }
}

/// Keeps `keys` up to date from `source` until the process ends: the Workload API's bundle
/// stream (reconnecting with a bounded back-off), or the bundle files (re-read when they
/// change). Returns after the first load was tried.
pub async fn spawn_key_updates(source: JwtBundleSource, keys: Arc<JwtKeys>) {
    match source {
        JwtBundleSource::WorkloadApi(endpoint) => {
            let (first, loaded) = tokio::sync::oneshot::channel();
            tokio::spawn(stream_from_workload_api(endpoint, keys, first));
            let _ = tokio::time::timeout(Duration::from_secs(3), loaded).await;
        }
        JwtBundleSource::Files(files) => {
            // Stamps first: a change while loading is then seen by the next look.
            let mut seen = stamps(&files);
            load_files(&files, &keys);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let now = stamps(&files);
                    if now != seen {
                        load_files(&files, &keys);
                        seen = now;
                    }
                }
            });
        }
    }
}

async fn stream_from_workload_api(
    endpoint: String,
    keys: Arc<JwtKeys>,
    first: tokio::sync::oneshot::Sender<()>,
) {
    let mut first = Some(first);
    let mut backoff = Duration::from_millis(200);
    loop {
        match spiffe::WorkloadApiClient::connect_to(&endpoint).await {
            Ok(client) => match client.stream_jwt_bundles().await {
                Ok(mut stream) => {
                    while let Some(message) = stream.next().await {
                        match message {
                            Ok(set) => {
                                let mut authorities = JwtAuthorities::new();
                                for (td, bundle) in set.iter() {
                                    for authority in bundle.jwt_authorities() {
                                        if let Err(e) =
                                            authorities.add_jwk(td.as_str(), authority.jwk_json())
                                        {
                                            tracing::warn!(trust_domain = %td, error = %e, "skipping a JWT authority");
                                        }
                                    }
                                }
                                tracing::info!(trust_domains = set.len(), "JWT bundles updated");
                                keys.replace(authorities);
                                backoff = Duration::from_millis(200);
                                if let Some(tx) = first.take() {
                                    let _ = tx.send(());
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "JWT bundle stream failed");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot stream JWT bundles"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot reach the Workload API for JWT bundles"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

fn stamps(files: &[(String, PathBuf)]) -> Vec<Option<SystemTime>> {
    files.iter().map(|(_, p)| std::fs::metadata(p).and_then(|m| m.modified()).ok()).collect()
}

fn load_files(files: &[(String, PathBuf)], keys: &JwtKeys) {
    let mut authorities = JwtAuthorities::new();
    for (td, path) in files {
        match std::fs::read(path) {
            Ok(json) => match authorities.add_jwks(td, &json) {
                Ok(n) => {
                    tracing::info!(trust_domain = %td, keys = n, file = %path.display(), "JWT bundle loaded")
                }
                Err(e) => {
                    tracing::error!(trust_domain = %td, file = %path.display(), error = %e, "JWT bundle file is not usable")
                }
            },
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "cannot read a JWT bundle file")
            }
        }
    }
    keys.replace(authorities);
}

/// The bearer token of a request, if it has exactly one well-formed `Authorization: Bearer`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?.to_str().ok()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token.trim())
}

/// Routes a JWT-SVID caller may never use (they stay mTLS-only).
fn mtls_only(path: &str) -> bool {
    path.starts_with("/v1/operator/") || path.starts_with("/v1/bootstrap/")
}

/// The middleware of the JWT listener: verifies the bearer token and hands the request on as
/// the token's `sub`, or answers 401 (audited, without the token).
pub async fn authenticate(
    state: Arc<NexusState>,
    config: Arc<JwtListenerConfig>,
    keys: Arc<JwtKeys>,
    mut request: Request<Body>,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let verified = bearer(request.headers()).ok_or("no bearer token").and_then(|token| {
        let authorities = keys.current();
        let validation = Validation {
            audience: &config.audience,
            now: time::OffsetDateTime::now_utc(),
            leeway: LEEWAY,
            trust_domains: None,
        };
        spike_core::jwt::verify(token, &authorities, &validation).map_err(|e| {
            tracing::debug!(reason = %e, "JWT-SVID refused");
            "invalid token"
        })
    });
    let refuse = |state: &NexusState, caller: &str, why: &'static str| {
        tracing::debug!(why, "request on the JWT listener refused");
        let path = request.uri().path().to_owned();
        super::router::audit_refusal(state, caller, AuthForm::JwtSvid, &path, started)
    };
    let verified = match verified {
        Ok(v) => v,
        Err(why) => return refuse(&state, "-", why),
    };
    let roots = &state.config().trust_roots;
    if roots.role_of(&verified.spiffe_id).is_some() {
        return refuse(&state, &verified.spiffe_id, "SPIKE roles authenticate with mTLS only");
    }
    if mtls_only(request.uri().path()) {
        return refuse(&state, &verified.spiffe_id, "operator routes are mTLS-only");
    }
    let extensions = request.extensions_mut();
    extensions.insert(Caller(Arc::from(verified.spiffe_id.as_str())));
    extensions.insert(AuthForm::JwtSvid);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use spike_core::wire::import;

    use super::*;

    #[test]
    fn only_one_well_formed_bearer_header_counts() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc.def.ghi".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc.def.ghi"));
        h.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer a".parse().unwrap());
        h.append(header::AUTHORIZATION, "Bearer b".parse().unwrap());
        assert_eq!(bearer(&h), None, "two tokens are refused, not chosen between");
    }

    /// A JWKS file with one fresh ES256 key, and a token for `sub` signed by it.
    fn key_file_and_token(path: &std::path::Path, kid: &str, sub: &str) -> String {
        use base64::Engine as _;
        use ring::rand::SystemRandom;
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = key.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "jwt-svid",
            "x": b64.encode(&point[1..33]), "y": b64.encode(&point[33..65]),
        }]});
        std::fs::write(path, jwks.to_string()).unwrap();
        let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 300;
        let header = serde_json::json!({"alg": "ES256", "kid": kid, "typ": "JWT"});
        let claims = serde_json::json!({"sub": sub, "aud": ["spike-nexus"], "exp": exp});
        let input =
            format!("{}.{}", b64.encode(header.to_string()), b64.encode(claims.to_string()));
        let sig = key.sign(&rng, input.as_bytes()).unwrap();
        format!("{input}.{}", b64.encode(sig.as_ref()))
    }

    #[tokio::test]
    async fn bundle_files_are_loaded_and_reloaded_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("spike.ist.json");
        let first = key_file_and_token(&file, "k1", "spiffe://spike.ist/apps/a");
        let keys = Arc::new(JwtKeys::default());
        let source = JwtBundleSource::Files(vec![("spike.ist".into(), file.clone())]);
        spawn_key_updates(source, keys.clone()).await;
        let v = Validation {
            audience: "spike-nexus",
            now: time::OffsetDateTime::now_utc(),
            leeway: LEEWAY,
            trust_domains: None,
        };
        let ok = spike_core::jwt::verify(&first, &keys.current(), &v).unwrap();
        assert_eq!(ok.spiffe_id, "spiffe://spike.ist/apps/a");
        // A new key replaces the file: the old token stops verifying, the new one verifies.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let second = key_file_and_token(&file, "k2", "spiffe://spike.ist/apps/b");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while spike_core::jwt::verify(&second, &keys.current(), &v).is_err() {
            assert!(std::time::Instant::now() < deadline, "the changed file was not re-read");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(spike_core::jwt::verify(&first, &keys.current(), &v).is_err());
    }

    #[test]
    fn operator_and_bootstrap_routes_are_mtls_only() {
        assert!(mtls_only("/v1/operator/recover"));
        assert!(mtls_only(import::PATH_IMPORT_SECRET));
        assert!(mtls_only("/v1/bootstrap/verify"));
        assert!(!mtls_only("/v1/store/secrets"));
        assert!(!mtls_only("/v1/cipher/decrypt"));
    }
}
