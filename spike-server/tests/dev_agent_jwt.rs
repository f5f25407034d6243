//! spike-dev-agent's JWT-SVID profile of the SPIFFE Workload API (`FetchJWTSVID`,
//! `FetchJWTBundles`, `ValidateJWTSVID`), over real Unix sockets and real gRPC. The `spiffe`
//! crate's Workload API client is the independent client; a raw tonic client covers the error
//! cases that client cannot produce; signatures are checked here with ring against the JWKS
//! the agent publishes. Nothing is mocked.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt as _;
use hmac::Mac as _;
use serde_json::{Value, json};
use spiffe::{JwtBundleSet, SpiffeId, TrustDomain, WorkloadApiClient};
use spike_server::dev::agent::proto::{JwtBundlesRequest, JwtsvidRequest, ValidateJwtsvidRequest};
use spike_server::dev::agent::{
    DevAgent, DevAgentBuilder, DevAgentHandle, RegistrationEntry, Selector,
};

#[path = "support/raw_workload_api.rs"]
mod raw_workload_api;
use raw_workload_api::{raw_client, with_header};
use spike_server::dev::agent::proto::spiffe_workload_api_client::SpiffeWorkloadApiClient;

const AUDIENCE: &str = "spike-nexus";
const NEXUS: &str = "spiffe://spike.ist/spike/nexus";

fn builder(dir: &Path) -> DevAgentBuilder {
    DevAgent::builder().socket_dir(dir.join("s"))
}

async fn start(builder: DevAgentBuilder) -> DevAgentHandle {
    builder.build().expect("agent config").serve().await.expect("agent starts")
}

async fn client(agent: &DevAgentHandle, entry: &str) -> WorkloadApiClient {
    WorkloadApiClient::connect_to(agent.endpoint(entry).unwrap()).await.expect("connect")
}

fn td() -> TrustDomain {
    TrustDomain::new("spike.ist").unwrap()
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The token's decoded header and claims, and its three base64url parts.
struct Parsed {
    header: Value,
    claims: Value,
    parts: [String; 3],
}

fn parse(token: &str) -> Parsed {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "JWS compact serialization");
    let decode = |s: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).expect("base64url, no padding"))
            .expect("JSON")
    };
    Parsed {
        header: decode(parts[0]),
        claims: decode(parts[1]),
        parts: [parts[0].to_owned(), parts[1].to_owned(), parts[2].to_owned()],
    }
}

fn encode(json: &Value) -> String {
    URL_SAFE_NO_PAD.encode(json.to_string())
}

/// The key IDs of the agent's trust domain in a bundle set.
fn kids(bundles: &JwtBundleSet) -> BTreeSet<String> {
    let bundle = bundles.get(&td()).expect("a JWT bundle for spike.ist");
    bundle.jwt_authorities().map(|a| a.key_id().to_owned()).collect()
}

/// The uncompressed P-256 point `0x04 || x || y` of the bundle key `kid`, checked to be a
/// well-formed EC P-256 JWK.
fn bundle_point(bundles: &JwtBundleSet, kid: &str) -> Vec<u8> {
    let bundle = bundles.get(&td()).expect("a JWT bundle for spike.ist");
    let authority = bundle.find_jwt_authority(kid).expect("the token's kid is in the bundle");
    let jwk: Value = serde_json::from_slice(authority.jwk_json()).unwrap();
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert_eq!(jwk["use"], "jwt-svid");
    assert_eq!(jwk["kid"], kid);
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).expect("x is base64url");
    let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).expect("y is base64url");
    assert_eq!((x.len(), y.len()), (32, 32), "P-256 coordinates are 32 bytes");
    [&[0x04][..], &x, &y].concat()
}

fn verify_es256(point: &[u8], token: &Parsed) -> bool {
    let signed = format!("{}.{}", token.parts[0], token.parts[1]);
    let Ok(signature) = URL_SAFE_NO_PAD.decode(&token.parts[2]) else { return false };
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(signed.as_bytes(), &signature)
        .is_ok()
}

/// Asks the agent to validate `token` with the raw client and returns the refusal, checking
/// it is INVALID_ARGUMENT and quotes no part of the token.
async fn refusal(
    raw: &mut SpiffeWorkloadApiClient<tonic::transport::Channel>,
    token: &str,
    audience: &str,
) -> String {
    let request = ValidateJwtsvidRequest { audience: audience.into(), svid: token.into() };
    let status = raw.validate_jwtsvid(with_header(request)).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_no_token(status.message(), token);
    status.message().to_owned()
}

fn assert_no_token(message: &str, token: &str) {
    assert!(!message.contains(token), "error message quotes the token: {message}");
    for part in token.split('.').filter(|p| p.len() >= 8) {
        assert!(!message.contains(part), "error message quotes part of the token: {message}");
    }
}

#[tokio::test]
async fn jwt_svid_names_the_entry_and_verifies_with_the_bundle_key() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(builder(dir.path())).await;
    let client = client(&agent, "nexus").await;

    let before = now_secs();
    let token = client.fetch_jwt_token([AUDIENCE], None).await.unwrap();
    let after = now_secs();
    let jwt = parse(&token);

    assert_eq!(jwt.header["alg"], "ES256");
    assert_eq!(jwt.header["typ"], "JWT");
    let kid = jwt.header["kid"].as_str().expect("a kid").to_owned();
    assert!(kid.len() >= 16, "a random kid: {kid}");
    assert_eq!(jwt.claims["sub"], NEXUS);
    assert_eq!(jwt.claims["aud"], json!([AUDIENCE]));
    let (iat, exp) = (jwt.claims["iat"].as_i64().unwrap(), jwt.claims["exp"].as_i64().unwrap());
    assert!((before..=after).contains(&iat), "iat {iat} not in {before}..={after}");
    assert_eq!(exp - iat, 300, "the default JWT-SVID TTL is 5 minutes");

    // The signature verifies with the x/y the agent publishes for that kid, and only over
    // the exact signed bytes.
    let bundles = client.fetch_jwt_bundles().await.unwrap();
    assert_eq!(kids(&bundles), BTreeSet::from([kid.clone()]));
    let point = bundle_point(&bundles, &kid);
    assert!(verify_es256(&point, &jwt), "ES256 signature verifies with the bundle key");
    let mut altered = parse(&token);
    altered.parts[1] = encode(&json!({"sub": NEXUS, "aud": [AUDIENCE], "exp": exp + 3600}));
    assert!(!verify_es256(&point, &altered));
    // On the wire: keyed by the trust domain's SPIFFE ID, the same JWKS the handle shows.
    let mut raw = raw_client(agent.socket_path("nexus").unwrap()).await;
    let mut stream =
        raw.fetch_jwt_bundles(with_header(JwtBundlesRequest {})).await.unwrap().into_inner();
    let message = stream.message().await.unwrap().expect("one message");
    assert_eq!(message.bundles.len(), 1);
    assert_eq!(message.bundles.get("spiffe://spike.ist"), Some(&agent.jwt_bundle_json()));

    // The `spiffe` crate parses it as a JWT-SVID, several audiences included.
    let svid = client.fetch_jwt_svid(["a", "b"], None).await.unwrap();
    assert_eq!(svid.spiffe_id().to_string(), NEXUS);
    assert_eq!(svid.audience(), ["a", "b"]);
    assert_eq!(svid.key_id(), kid);

    // Each socket mints for its own entry.
    let keeper = self::client(&agent, "keeper").await;
    let keeper_token = keeper.fetch_jwt_token([AUDIENCE], None).await.unwrap();
    assert_eq!(parse(&keeper_token).claims["sub"], "spiffe://spike.ist/spike/keeper");
    agent.shutdown().await;
}

#[tokio::test]
async fn validate_accepts_the_agents_tokens_and_refuses_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(builder(dir.path())).await;
    let client = client(&agent, "nexus").await;
    let mut raw = raw_client(agent.socket_path("keeper").unwrap()).await;
    let token = client.fetch_jwt_token([AUDIENCE, "other"], None).await.unwrap();
    let jwt = parse(&token);

    // Accepted, for either audience, with SPIFFE ID and claims (raw and via the crate).
    let svid = client.validate_jwt_token(AUDIENCE, &token).await.unwrap();
    assert_eq!(svid.spiffe_id().to_string(), NEXUS);
    let request = ValidateJwtsvidRequest { audience: "other".into(), svid: token.clone() };
    let reply = raw.validate_jwtsvid(with_header(request)).await.unwrap().into_inner();
    assert_eq!(reply.spiffe_id, NEXUS);
    let claims = reply.claims.expect("claims");
    use prost_types::value::Kind;
    assert_eq!(claims.fields["sub"].kind, Some(Kind::StringValue(NEXUS.into())));
    assert_eq!(
        claims.fields["exp"].kind,
        Some(Kind::NumberValue(jwt.claims["exp"].as_f64().unwrap()))
    );
    let Some(Kind::ListValue(aud)) = &claims.fields["aud"].kind else { panic!("aud list") };
    assert_eq!(aud.values.len(), 2);

    // Another audience.
    let err = client.validate_jwt_token("spike-keeper", &token).await.unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");
    assert_no_token(&format!("{err} {err:?}"), &token);
    let why = refusal(&mut raw, &token, "spike-keeper").await;
    assert!(why.contains("audience"), "{why}");

    // Tampered: another subject under the original signature.
    let mut claims = jwt.claims.clone();
    claims["sub"] = json!("spiffe://spike.ist/spike/keeper");
    let tampered = format!("{}.{}.{}", jwt.parts[0], encode(&claims), jwt.parts[2]);
    let why = refusal(&mut raw, &tampered, AUDIENCE).await;
    assert!(why.contains("signature"), "{why}");
    // Tampered signature bytes.
    let mut sig = URL_SAFE_NO_PAD.decode(&jwt.parts[2]).unwrap();
    sig[10] ^= 1;
    let flipped = format!("{}.{}.{}", jwt.parts[0], jwt.parts[1], URL_SAFE_NO_PAD.encode(&sig));
    assert!(refusal(&mut raw, &flipped, AUDIENCE).await.contains("signature"));

    // `alg: none`, with and without a signature.
    let mut none = jwt.header.clone();
    none["alg"] = json!("none");
    for unsigned in [
        format!("{}.{}.", encode(&none), jwt.parts[1]),
        format!("{}.{}.{}", encode(&none), jwt.parts[1], jwt.parts[2]),
    ] {
        assert!(refusal(&mut raw, &unsigned, AUDIENCE).await.contains("ES256"));
    }
    // HS256 keyed with the public key (the classic algorithm confusion).
    let bundles = client.fetch_jwt_bundles().await.unwrap();
    let point = bundle_point(&bundles, jwt.header["kid"].as_str().unwrap());
    let mut hs = jwt.header.clone();
    hs["alg"] = json!("HS256");
    let signed = format!("{}.{}", encode(&hs), jwt.parts[1]);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&point).unwrap();
    mac.update(signed.as_bytes());
    let hs_token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
    assert!(refusal(&mut raw, &hs_token, AUDIENCE).await.contains("ES256"));

    // An unknown kid, and things that are not JWTs at all.
    let mut unknown = jwt.header.clone();
    unknown["kid"] = json!("not-a-key-of-this-agent");
    let stranger = format!("{}.{}.{}", encode(&unknown), jwt.parts[1], jwt.parts[2]);
    assert!(refusal(&mut raw, &stranger, AUDIENCE).await.contains("bundle"));
    for junk in ["a.b", "a.b.c.d", "not-a-jwt-at-all-but-long-enough", &format!("{token}==")] {
        refusal(&mut raw, junk, AUDIENCE).await;
    }

    // The original is still fine.
    assert!(client.validate_jwt_token(AUDIENCE, &token).await.is_ok());
    agent.shutdown().await;
}

#[tokio::test]
async fn expired_jwt_svids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(builder(dir.path()).jwt_svid_ttl(Duration::from_secs(2))).await;
    let client = client(&agent, "nexus").await;
    let token = client.fetch_jwt_token([AUDIENCE], None).await.unwrap();
    let jwt = parse(&token);
    let exp = jwt.claims["exp"].as_i64().unwrap();
    assert_eq!(exp - jwt.claims["iat"].as_i64().unwrap(), 2);
    // Wait until the expiry second has passed.
    while now_secs() < exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut raw = raw_client(agent.socket_path("nexus").unwrap()).await;
    let why = refusal(&mut raw, &token, AUDIENCE).await;
    assert!(why.contains("expired"), "{why}");
    let err = client.validate_jwt_token(AUDIENCE, &token).await.unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");
    assert_no_token(&format!("{err} {err:?}"), &token);
    // A fresh one is fine.
    let fresh = client.fetch_jwt_token([AUDIENCE], None).await.unwrap();
    assert!(client.validate_jwt_token(AUDIENCE, &fresh).await.is_ok());
    agent.shutdown().await;
}

#[tokio::test]
async fn requests_missing_what_they_need_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(builder(dir.path())).await;
    let mut raw = raw_client(agent.socket_path("nexus").unwrap()).await;
    let fetch = |audience: Vec<&str>, spiffe_id: &str| JwtsvidRequest {
        audience: audience.into_iter().map(String::from).collect(),
        spiffe_id: spiffe_id.into(),
    };

    // Empty audience: INVALID_ARGUMENT, from the raw client and the `spiffe` crate alike.
    let status = raw.fetch_jwtsvid(with_header(fetch(vec![], ""))).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("audience"), "{status:?}");
    let status = raw.fetch_jwtsvid(with_header(fetch(vec![""], ""))).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let client = client(&agent, "nexus").await;
    let err = client.fetch_jwt_token(Vec::<String>::new(), None).await.unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");

    // No security header: INVALID_ARGUMENT on all three RPCs.
    let status = raw.fetch_jwtsvid(fetch(vec![AUDIENCE], "")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("security header"), "{status:?}");
    let status = raw.fetch_jwt_bundles(JwtBundlesRequest {}).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let token = client.fetch_jwt_token([AUDIENCE], None).await.unwrap();
    let request = ValidateJwtsvidRequest { audience: AUDIENCE.into(), svid: token.clone() };
    let status = raw.validate_jwtsvid(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_no_token(status.message(), &token);

    // Validation needs both an audience and a token.
    for (audience, svid, what) in [("", token.as_str(), "audience"), (AUDIENCE, "", "svid")] {
        let request = ValidateJwtsvidRequest { audience: audience.into(), svid: svid.into() };
        let status = raw.validate_jwtsvid(with_header(request)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(what), "{status:?}");
        assert_no_token(status.message(), &token);
    }

    // The request's spiffe_id: the caller's own is fine, another's is refused, junk is invalid.
    let own = SpiffeId::new(NEXUS).unwrap();
    let token = client.fetch_jwt_token([AUDIENCE], Some(&own)).await.unwrap();
    assert_eq!(parse(&token).claims["sub"], NEXUS);
    let keeper = SpiffeId::new("spiffe://spike.ist/spike/keeper").unwrap();
    let err = client.fetch_jwt_token([AUDIENCE], Some(&keeper)).await.unwrap_err();
    assert!(matches!(err, spiffe::WorkloadApiError::NoIdentityIssued), "{err:?}");
    let status = raw
        .fetch_jwtsvid(with_header(fetch(vec![AUDIENCE], "spiffe://spike.ist/spike/keeper")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    let status =
        raw.fetch_jwtsvid(with_header(fetch(vec![AUDIENCE], "not a spiffe id"))).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    // A caller matching no entry gets nothing on the shared socket.
    let mut nobody = raw_client(agent.shared_socket_path()).await;
    let status = nobody.fetch_jwtsvid(with_header(fetch(vec![AUDIENCE], ""))).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    let status = nobody.fetch_jwt_bundles(with_header(JwtBundlesRequest {})).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    agent.shutdown().await;
}

#[tokio::test]
async fn shared_socket_mints_one_jwt_svid_per_matching_entry() {
    let dir = tempfile::tempdir().unwrap();
    let uid = std::fs::metadata(dir.path()).unwrap().uid();
    let entry = |name: &str, id: &str| {
        RegistrationEntry::new(name, id).unwrap().with_selector(Selector::UnixUid(uid))
    };
    let agent = start(builder(dir.path()).default_entries(false).entries([
        entry("a", "spiffe://spike.ist/apps/a"),
        entry("b", "spiffe://spike.ist/apps/b"),
    ]))
    .await;
    let client = WorkloadApiClient::connect_to(agent.shared_endpoint()).await.unwrap();
    let all = client.fetch_all_jwt_svids([AUDIENCE], None).await.unwrap();
    let ids: Vec<String> = all.iter().map(|s| s.spiffe_id().to_string()).collect();
    assert_eq!(ids, ["spiffe://spike.ist/apps/a", "spiffe://spike.ist/apps/b"]);
    let b = SpiffeId::new("spiffe://spike.ist/apps/b").unwrap();
    let only_b = client.fetch_all_jwt_svids([AUDIENCE], Some(&b)).await.unwrap();
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0].spiffe_id(), &b);
    let validated = client.validate_jwt_token(AUDIENCE, only_b[0].token()).await.unwrap();
    assert_eq!(validated.spiffe_id(), &b);
    agent.shutdown().await;
}

/// Waits for the next bundle message on `stream`.
async fn next_bundles(
    stream: &mut (impl futures::Stream<Item = Result<JwtBundleSet, spiffe::WorkloadApiError>> + Unpin),
    within: Duration,
) -> JwtBundleSet {
    tokio::time::timeout(within, stream.next())
        .await
        .expect("a bundle message in time")
        .expect("the stream stays open")
        .expect("a valid bundle message")
}

#[tokio::test]
async fn key_rotation_streams_a_new_bundle_and_old_tokens_still_validate() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(builder(dir.path()).jwt_key_rotation(Duration::from_secs(2))).await;
    let client = client(&agent, "nexus").await;
    let mut stream = client.stream_jwt_bundles().await.unwrap();
    let first = next_bundles(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(kids(&first).len(), 1);

    let old = client.fetch_jwt_token([AUDIENCE], None).await.unwrap();
    let old_kid = parse(&old).header["kid"].as_str().unwrap().to_owned();
    // The timer replaces the key: a new message holds the new key and still the old one.
    let deadline = Instant::now() + Duration::from_secs(15);
    let rotated = loop {
        let bundles = next_bundles(&mut stream, Duration::from_secs(10)).await;
        let set = kids(&bundles);
        if set.len() >= 2 && set.contains(&old_kid) {
            break bundles;
        }
        assert!(Instant::now() < deadline, "no rotation within 15 s");
    };
    let new = client.fetch_jwt_token([AUDIENCE], None).await.unwrap();
    let new_jwt = parse(&new);
    let new_kid = new_jwt.header["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid, "new tokens use the new key");
    let current = client.fetch_jwt_bundles().await.unwrap();
    assert!(verify_es256(&bundle_point(&current, &new_kid), &new_jwt));
    // The old token verifies with the old key in the rotated bundle, and the agent still
    // accepts it: its key stays until every token it signed has expired (5 minutes).
    assert!(verify_es256(&bundle_point(&rotated, &old_kid), &parse(&old)));
    assert!(kids(&current).contains(&old_kid));
    assert_eq!(
        client.validate_jwt_token(AUDIENCE, &old).await.unwrap().spiffe_id().to_string(),
        NEXUS
    );
    assert!(client.validate_jwt_token(AUDIENCE, &new).await.is_ok());
    agent.shutdown().await;
}

#[tokio::test]
async fn retired_key_leaves_the_bundle_once_its_tokens_have_expired() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(builder(dir.path()).jwt_svid_ttl(Duration::from_secs(3))).await;
    let client = client(&agent, "nexus").await;
    let mut stream = client.stream_jwt_bundles().await.unwrap();
    let first = kids(&next_bundles(&mut stream, Duration::from_secs(5)).await);
    let old = client.fetch_jwt_token([AUDIENCE], None).await.unwrap();
    let old_kid = parse(&old).header["kid"].as_str().unwrap().to_owned();
    assert_eq!(first, BTreeSet::from([old_kid.clone()]));

    agent.rotate_jwt_key_now();
    let both = kids(&next_bundles(&mut stream, Duration::from_secs(5)).await);
    assert_eq!(both.len(), 2);
    assert!(both.contains(&old_kid));
    let new_kid = both.iter().find(|k| **k != old_kid).unwrap().clone();
    let new = client.fetch_jwt_token([AUDIENCE], None).await.unwrap();
    assert_eq!(parse(&new).header["kid"], new_kid.as_str());

    // Once the TTL has passed since the rotation, the old key goes: another message.
    let after = kids(&next_bundles(&mut stream, Duration::from_secs(10)).await);
    assert_eq!(after, BTreeSet::from([new_kid]));
    let err = client.validate_jwt_token(AUDIENCE, &old).await.unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");
    assert_no_token(&format!("{err} {err:?}"), &old);
    agent.shutdown().await;
}

#[tokio::test]
async fn jwt_settings_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = builder(dir.path()).jwt_svid_ttl(Duration::from_secs(1)).build().unwrap_err();
    assert!(err.to_string().contains("JWT-SVID TTL"), "{err}");
    let err = builder(dir.path()).jwt_key_rotation(Duration::from_millis(10)).build().unwrap_err();
    assert!(err.to_string().contains("JWT key rotation"), "{err}");
}
