//! JWT-SVID callers (issue 17) through real processes: a real Nexus with its JWT listener,
//! keys streamed from the dev agent's Workload API, tokens fetched from it by the SDK and by
//! the spiffe crate's independent Workload API client, and forged tokens sent as raw HTTP.

use std::time::Duration;

use base64::Engine as _;
use spike_client::{Error, Spike};
use spike_core::policy::Permission;
use spike_e2e::{Cluster, ClusterSpec, free_port};

const APP: &str = "spiffe://spike.ist/apps/billing";
const AUDIENCE: &str = "spike-nexus";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token signed by a key Nexus does not know (ES256 with a fresh key), with these claims.
fn forged_es256(kid: &str, claims: &serde_json::Value) -> String {
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let header = serde_json::json!({"alg": "ES256", "kid": kid, "typ": "JWT"});
    let input =
        format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let sig = key.sign(&rng, input.as_bytes()).unwrap();
    format!("{input}.{}", b64(sig.as_ref()))
}

fn claims(sub: &str, aud: &str, exp_in: i64) -> serde_json::Value {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    serde_json::json!({"sub": sub, "aud": [aud], "exp": now + exp_in, "iat": now})
}

/// The kid and JWK of the agent's current signing key for spike.ist.
async fn agent_key(cluster: &Cluster) -> (String, serde_json::Value) {
    let client =
        spiffe::WorkloadApiClient::connect_to(cluster.endpoint("billing").unwrap()).await.unwrap();
    let set = client.fetch_jwt_bundles().await.unwrap();
    let td = spiffe::TrustDomain::new("spike.ist").unwrap();
    let bundle = set.get(&td).expect("the agent serves spike.ist's JWT bundle");
    let authority = bundle.jwt_authorities().next().expect("one key at least");
    let jwk: serde_json::Value = serde_json::from_slice(authority.jwk_json()).unwrap();
    (authority.key_id().to_owned(), jwk)
}

async fn token_for(cluster: &Cluster, entry: &str, audience: &str) -> String {
    let client =
        spiffe::WorkloadApiClient::connect_to(cluster.endpoint(entry).unwrap()).await.unwrap();
    client.fetch_jwt_token([audience], None).await.unwrap()
}

/// An HTTPS client that checks Nexus's X509-SVID and presents no client certificate.
async fn certless_http(cluster: &Cluster) -> reqwest::Client {
    let source = cluster.identity("billing").await.unwrap();
    let tls = spike_client::tls::mtls_client(
        source,
        spike_client::SpiffeId::new("spiffe://spike.ist/spike/nexus").unwrap(),
    )
    .without_client_certificate()
    .build()
    .unwrap();
    reqwest::Client::builder().tls_backend_preconfigured(tls).build().unwrap()
}

/// POSTs a secret read with `token` as raw HTTP over server-authenticated TLS (no client
/// certificate), as a workload behind a proxy would; returns the status.
async fn raw_get(cluster: &Cluster, url: &str, token: Option<&str>) -> u16 {
    let http = certless_http(cluster).await;
    let mut req = http
        .post(format!("{url}/v1/store/secrets?action=get"))
        .body(r#"{"path":"apps/billing/db"}"#);
    if let Some(token) = token {
        req = req.header("Authorization", format!("Bearer {token}"));
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_svid_callers_read_what_their_policy_grants_and_forged_tokens_are_refused() {
    let jwt_port = free_port().unwrap();
    let spec = ClusterSpec {
        extra_identities: vec![("billing".into(), APP.into())],
        nexus_env: [("SPIKE_NEXUS_JWT_TLS_PORT".to_owned(), format!("127.0.0.1:{jwt_port}"))]
            .into_iter()
            .collect(),
        log_level: "debug".into(),
        ..ClusterSpec::default()
    };
    let mut cluster = Cluster::new(spec).await.unwrap();
    cluster.start_bootstrapped(Duration::from_secs(60)).await.unwrap();
    let jwt_url = format!("https://127.0.0.1:{jwt_port}");
    let admin = cluster.client("pilot-superuser").await.unwrap();
    admin
        .put_secret("apps/billing/db", [("password", "jwt-canary-7781")].into_iter().collect())
        .await
        .unwrap();
    admin
        .put_secret("apps/payroll/db", [("password", "other")].into_iter().collect())
        .await
        .unwrap();
    admin
        .create_policy(
            "billing",
            &format!("^{}$", APP.replace('.', "\\.")),
            "^apps/billing/.*$",
            &[Permission::Read],
        )
        .await
        .unwrap();

    // The SDK in JWT mode: reads what the policy grants, nothing else.
    let app = Spike::builder()
        .socket(cluster.endpoint("billing").unwrap())
        .url(&jwt_url)
        .jwt_audience(AUDIENCE)
        .build()
        .await
        .unwrap();
    let got = app.get_secret("apps/billing/db").await.unwrap();
    assert_eq!(got.get("password"), Some("jwt-canary-7781"));
    assert!(matches!(app.get_secret("apps/payroll/db").await, Err(Error::Forbidden)));
    assert!(matches!(
        app.put_secret("apps/billing/db", [("password", "x")].into_iter().collect()).await,
        Err(Error::Forbidden)
    ));

    // Raw HTTP with a token from the spiffe crate's own Workload API client.
    let valid = token_for(&cluster, "billing", AUDIENCE).await;
    assert_eq!(raw_get(&cluster, &jwt_url, Some(&valid)).await, 200);
    assert_eq!(raw_get(&cluster, &jwt_url, None).await, 401, "no token");

    // Refused, all with 401: wrong audience, a SPIKE role's token, unknown key, wrong trust
    // domain, alg none, HS256 keyed with the public key, a tampered sub, expired.
    let (kid, jwk) = agent_key(&cluster).await;
    let wrong_aud = token_for(&cluster, "billing", "someone-else").await;
    let superuser = token_for(&cluster, "pilot-superuser", AUDIENCE).await;
    let unknown_key = forged_es256(&kid, &claims(APP, AUDIENCE, 300));
    let other_td = forged_es256(&kid, &claims("spiffe://evil.example/apps/billing", AUDIENCE, 300));
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims(APP, AUDIENCE, 300).to_string().as_bytes())
    );
    let hs256 = {
        use hmac::{Hmac, Mac};
        let header = serde_json::json!({"alg": "HS256", "kid": kid, "typ": "JWT"});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims(APP, AUDIENCE, 300).to_string().as_bytes())
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(jwk.to_string().as_bytes()).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(&mac.finalize().into_bytes()))
    };
    let tampered = {
        let parts: Vec<&str> = valid.split('.').collect();
        let mut c: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap(),
        )
        .unwrap();
        c["sub"] = "spiffe://spike.ist/apps/payroll".into();
        format!("{}.{}.{}", parts[0], b64(c.to_string().as_bytes()), parts[2])
    };
    let expired = forged_es256(&kid, &claims(APP, AUDIENCE, -3600));
    let refused = [
        ("wrong audience", &wrong_aud),
        ("a SPIKE role", &superuser),
        ("unknown key", &unknown_key),
        ("other trust domain", &other_td),
        ("alg none", &none),
        ("HS256 with the public key", &hs256),
        ("tampered sub", &tampered),
        ("expired (and unknown key)", &expired),
    ];
    for (what, token) in refused {
        assert_eq!(raw_get(&cluster, &jwt_url, Some(token)).await, 401, "{what}");
    }

    // The mTLS port still refuses a handshake without a client certificate.
    let status = {
        let http = certless_http(&cluster).await;
        http.post(format!("{}/v1/store/secrets?action=list", cluster.nexus_url()))
            .header("Authorization", format!("Bearer {valid}"))
            .body("{}")
            .send()
            .await
    };
    assert!(status.is_err(), "the mTLS port served a caller without a certificate");

    // No token, nor any part of one, in Nexus's log or the audit log; the audit says jwt-svid.
    let audit = std::fs::read_to_string(cluster.nexus_data_dir().join("audit.log")).unwrap();
    assert!(audit.contains(r#""auth":"jwt-svid""#), "{audit}");
    assert!(audit.contains(APP));
    let logs = format!("{}\n{audit}", cluster.nexus_log());
    for token in [&valid, &wrong_aud, &superuser, &unknown_key, &tampered, &hs256, &none] {
        for part in token.split('.').filter(|p| p.len() >= 16) {
            assert!(!logs.contains(part), "a token part reached the logs");
        }
    }
    assert!(!logs.contains("jwt-canary-7781"));
}
