//! Nexus's router driven in-process (`oneshot`) with the caller identity the mTLS listener
//! would insert: every route, the authorisation matrix, SPIKE's status codes and exact bodies.
//! The mTLS path itself is covered by `nexus_mtls.rs`.

mod support;

use std::sync::Arc;

use axum::http::StatusCode;
use spike_core::shamir;
use spike_server::nexus::{AuditSink, BackendKind, NexusConfig, NexusState, router};

const TD: &str = "spike.ist";
const SUPER: &str = "spiffe://spike.ist/spike/pilot/role/superuser";
const RECOVER: &str = "spiffe://spike.ist/spike/pilot/role/recover";
const RESTORE: &str = "spiffe://spike.ist/spike/pilot/role/restore";
const APP: &str = "spiffe://spike.ist/workload/app";
const OTHER: &str = "spiffe://spike.ist/workload/other";
const CANARY: &str = "canary-value-4f1c0d";

struct Fixture {
    state: Arc<NexusState>,
    dir: tempfile::TempDir,
}

fn fixture(backend: BackendKind) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NexusConfig::dev(dir.path().to_path_buf());
    config.backend = backend;
    config.audit = AuditSink::File(dir.path().join("audit.log"));
    let state = NexusState::open(config).unwrap();
    Fixture { state, dir }
}

async fn call_raw(
    f: &Fixture,
    caller: &str,
    method: &str,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let app = router(f.state.clone());
    let resp = support::request_as(app, caller, method, uri, content_type, body).await;
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, bytes.to_vec())
}

async fn call(f: &Fixture, caller: &str, uri: &str, body: &str) -> (StatusCode, String) {
    let (s, b) = call_raw(f, caller, "POST", uri, "application/json", body.into()).await;
    (s, String::from_utf8(b).unwrap())
}

#[tokio::test]
async fn secrets_lifecycle_through_spike_routes() {
    let f = fixture(BackendKind::Memory);
    let put = r#"{"path":"app/db","values":{"user":"admin","pass":"v1"}}"#;
    assert_eq!(call(&f, SUPER, "/v1/store/secrets", put).await, (StatusCode::OK, "{}".into()));
    let put2 = r#"{"path":"app/db","values":{"pass":"v2"}}"#;
    assert_eq!(call(&f, SUPER, "/v1/store/secrets", put2).await.0, StatusCode::OK);

    let (s, b) = call(&f, SUPER, "/v1/store/secrets?action=get", r#"{"path":"app/db"}"#).await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, r#"{"data":{"pass":"v2"}}"#));
    let (s, b) =
        call(&f, SUPER, "/v1/store/secrets?action=get", r#"{"path":"app/db","version":1}"#).await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, r#"{"data":{"pass":"v1","user":"admin"}}"#));

    let (s, b) = call(&f, SUPER, "/v1/store/secrets?action=list", "{}").await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, r#"{"keys":["app/db"]}"#));

    let del = r#"{"path":"app/db","versions":[]}"#;
    assert_eq!(call(&f, SUPER, "/v1/store/secrets?action=delete", del).await.0, StatusCode::OK);
    let (s, b) = call(&f, SUPER, "/v1/store/secrets?action=get", r#"{"path":"app/db"}"#).await;
    // Version 1 is still live, so "current" is 1 after deleting 2.
    assert_eq!((s, b.as_str()), (StatusCode::OK, r#"{"data":{"pass":"v1","user":"admin"}}"#));
    let (s, b) =
        call(&f, SUPER, "/v1/store/secrets?action=get", r#"{"path":"app/db","version":2}"#).await;
    assert_eq!((s, b.as_str()), (StatusCode::NOT_FOUND, r#"{"data":null,"err":"api_not_found"}"#));

    let und = r#"{"path":"app/db","versions":[2]}"#;
    assert_eq!(call(&f, SUPER, "/v1/store/secrets?action=undelete", und).await.0, StatusCode::OK);
    let (s, b) =
        call(&f, SUPER, "/v1/store/secrets/metadata?action=get", r#"{"path":"app/db"}"#).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let meta: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(meta["metadata"]["currentVersion"], 2);
    assert_eq!(meta["metadata"]["oldestVersion"], 1);
    assert_eq!(meta["metadata"]["maxVersions"], 10);
    assert!(meta["versions"]["1"]["createdTime"].is_string());
    assert!(meta["versions"]["2"]["deletedTime"].is_null());

    // Extension: destroy removes for good.
    let des = r#"{"path":"app/db","versions":[1]}"#;
    assert_eq!(call(&f, SUPER, "/v1/store/secrets?action=destroy", des).await.0, StatusCode::OK);
    let (s, _) =
        call(&f, SUPER, "/v1/store/secrets?action=get", r#"{"path":"app/db","version":1}"#).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn check_and_set_is_enforced_and_a_conflict_changes_nothing() {
    let f = fixture(BackendKind::Memory);
    let first = r#"{"path":"a","values":{"k":"1"},"cas":0}"#;
    assert_eq!(call(&f, SUPER, "/v1/store/secrets", first).await.0, StatusCode::OK);
    let stale = r#"{"path":"a","values":{"k":"2"},"cas":0}"#;
    let (s, b) = call(&f, SUPER, "/v1/store/secrets", stale).await;
    assert_eq!((s, b.as_str()), (StatusCode::CONFLICT, r#"{"err":"api_conflict"}"#));
    let (_, b) = call(&f, SUPER, "/v1/store/secrets?action=get", r#"{"path":"a"}"#).await;
    assert_eq!(b, r#"{"data":{"k":"1"}}"#);
    let ok = r#"{"path":"a","values":{"k":"2"},"cas":1}"#;
    assert_eq!(call(&f, SUPER, "/v1/store/secrets", ok).await.0, StatusCode::OK);
}

#[tokio::test]
async fn bad_input_is_400_names_nothing_secret_and_changes_nothing() {
    let f = fixture(BackendKind::Memory);
    for (uri, body) in [
        ("/v1/store/secrets", r#"{"path":"../etc","values":{"k":"v"}}"#),
        ("/v1/store/secrets", r#"{"path":"/abs","values":{"k":"v"}}"#),
        ("/v1/store/secrets", r#"{"path":"a//b","values":{"k":"v"}}"#),
        ("/v1/store/secrets", r#"{"path":"spike/system/x","values":{"k":"v"}}"#),
        ("/v1/store/secrets", r#"{"path":"ok","values":{}}"#),
        ("/v1/store/secrets", r#"{"path":"ok","values":{"k":"canary-value-4f1c0d"}"#),
        ("/v1/store/secrets", "not json"),
        ("/v1/store/secrets?action=get", r#"{"path":"a","version":-1}"#),
        (
            "/v1/acl/policy",
            r#"{"name":"p","spiffeidPattern":"(","pathPattern":"a","permissions":["read"]}"#,
        ),
        (
            "/v1/acl/policy",
            r#"{"name":"p","spiffeidPattern":"a","pathPattern":"a","permissions":["fly"]}"#,
        ),
        (
            "/v1/acl/policy",
            r#"{"name":"p","spiffeidPattern":"","pathPattern":"a","permissions":["read"]}"#,
        ),
        (
            "/v1/acl/policy",
            r#"{"name":"","spiffeidPattern":"a","pathPattern":"a","permissions":["read"]}"#,
        ),
    ] {
        let (s, b) = call(&f, SUPER, uri, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri} {body} -> {b}");
        assert!(!b.contains(CANARY));
    }
    // A bad pattern is named, with why, beside SPIKE's code (issue 18).
    let bad = r#"{"name":"p","spiffeidPattern":"(","pathPattern":"a","permissions":["read"]}"#;
    let (_, b) = call(&f, SUPER, "/v1/acl/policy", bad).await;
    assert!(b.contains(r#""err":"api_bad_request""#) && b.contains("spiffeidPattern"), "{b}");
    let (_, b) = call(&f, SUPER, "/v1/store/secrets?action=list", "{}").await;
    assert_eq!(b, r#"{"keys":[]}"#);
    let (_, b) =
        call(&f, SUPER, "/v1/acl/policy?action=list", r#"{"spiffeidPattern":"","pathPattern":""}"#)
            .await;
    assert_eq!(b, r#"{"policies":[]}"#);
}

#[tokio::test]
async fn unknown_routes_actions_and_methods_get_spikes_400_fallback() {
    let f = fixture(BackendKind::Memory);
    for (method, uri) in [
        ("POST", "/v1/nope"),
        ("POST", "/v1/store/secrets?action=fly"),
        ("GET", "/v1/store/secrets?action=get"),
        ("POST", "/v1/store/secrets/"),
    ] {
        let (s, b) = call_raw(&f, SUPER, method, uri, "application/json", b"{}".to_vec()).await;
        assert_eq!(
            (s, b.as_slice()),
            (StatusCode::BAD_REQUEST, &br#"{"err":"api_bad_request"}"#[..]),
            "{method} {uri}"
        );
    }
}

#[tokio::test]
async fn workloads_need_policies_and_denials_do_not_reveal_existence() {
    let f = fixture(BackendKind::Memory);
    call(&f, SUPER, "/v1/store/secrets", r#"{"path":"app/db","values":{"k":"v"}}"#).await;
    call(&f, SUPER, "/v1/store/secrets", r#"{"path":"other/db","values":{"k":"v"}}"#).await;

    // No policy: the existing and the missing secret look the same.
    let exists = call(&f, APP, "/v1/store/secrets?action=get", r#"{"path":"app/db"}"#).await;
    let missing = call(&f, APP, "/v1/store/secrets?action=get", r#"{"path":"app/nope"}"#).await;
    assert_eq!(
        exists,
        (StatusCode::UNAUTHORIZED, r#"{"data":null,"err":"access_unauthorized"}"#.into())
    );
    assert_eq!(exists, missing);
    assert_eq!(
        call(&f, APP, "/v1/store/secrets?action=list", "{}").await.0,
        StatusCode::UNAUTHORIZED
    );

    // Workloads cannot write policies for themselves.
    let grant = r#"{"name":"app-read","spiffeidPattern":"spiffe://spike\\.ist/workload/app","pathPattern":"app/.*","permissions":["read","list"]}"#;
    assert_eq!(call(&f, APP, "/v1/acl/policy", grant).await.0, StatusCode::UNAUTHORIZED);
    let (s, b) = call(&f, SUPER, "/v1/acl/policy", grant).await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, r#"{"id":"app-read"}"#));

    let (s, b) = call(&f, APP, "/v1/store/secrets?action=get", r#"{"path":"app/db"}"#).await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, r#"{"data":{"k":"v"}}"#));
    // Read does not grant write; anchoring keeps other paths and other IDs out.
    let (s, _) =
        call(&f, APP, "/v1/store/secrets", r#"{"path":"app/db","values":{"k":"x"}}"#).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(&f, APP, "/v1/store/secrets?action=get", r#"{"path":"other/db"}"#).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(&f, OTHER, "/v1/store/secrets?action=get", r#"{"path":"app/db"}"#).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let evil = "spiffe://spike.ist/workload/app/evil";
    assert_eq!(
        call(&f, evil, "/v1/store/secrets?action=get", r#"{"path":"app/db"}"#).await.0,
        StatusCode::UNAUTHORIZED
    );
    let foreign = "spiffe://evil.org/workload/app";
    assert_eq!(
        call(&f, foreign, "/v1/store/secrets?action=get", r#"{"path":"app/db"}"#).await.0,
        StatusCode::UNAUTHORIZED
    );

    // List shows only what the policy grants `list` on.
    let (s, b) = call(&f, APP, "/v1/store/secrets?action=list", "{}").await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, r#"{"keys":["app/db"]}"#));

    // Roles are exact: recover/restore/bootstrap are not superusers.
    for role in [
        RECOVER,
        RESTORE,
        "spiffe://spike.ist/spike/bootstrap",
        "spiffe://spike.ist/spike/pilot/role/superuser-x",
    ] {
        let (s, _) = call(&f, role, "/v1/store/secrets?action=get", r#"{"path":"app/db"}"#).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{role}");
    }
}

#[tokio::test]
async fn policy_crud_is_keyed_by_name() {
    let f = fixture(BackendKind::Memory);
    let p = r#"{"name":"readers","spiffeidPattern":"spiffe://spike\\.ist/x","pathPattern":"x/.*","permissions":["read"]}"#;
    assert_eq!(call(&f, SUPER, "/v1/acl/policy", p).await.0, StatusCode::OK);
    let (s, b) = call(&f, SUPER, "/v1/acl/policy?action=get", r#"{"id":"readers"}"#).await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["name"], "readers");
    assert_eq!(v["spiffiedPattern"], "spiffe://spike\\.ist/x");
    assert_eq!(v["permissions"], serde_json::json!(["read"]));
    let (s, b) = call(
        &f,
        SUPER,
        "/v1/acl/policy?action=list",
        r#"{"spiffeidPattern":"","pathPattern":"x/.*"}"#,
    )
    .await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::OK, r#"{"policies":[{"id":"readers","name":"readers"}]}"#)
    );
    assert_eq!(
        call(&f, SUPER, "/v1/acl/policy?action=delete", r#"{"id":"readers"}"#).await.0,
        StatusCode::OK
    );
    let (s, b) = call(&f, SUPER, "/v1/acl/policy?action=get", r#"{"id":"readers"}"#).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(
        call(&f, SUPER, "/v1/acl/policy?action=delete", r#"{"id":"readers"}"#).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn cipher_json_and_streaming_round_trip_and_need_execute() {
    let f = fixture(BackendKind::Memory);
    let (s, b) = call(&f, SUPER, "/v1/cipher/encrypt", r#"{"plaintext":"aGVsbG8="}"#).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let enc: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(enc["version"], 1);
    let dec = serde_json::json!({"version":1,"nonce":enc["nonce"],"ciphertext":enc["ciphertext"]});
    let (s, b) = call(&f, SUPER, "/v1/cipher/decrypt", &dec.to_string()).await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, r#"{"plaintext":"aGVsbG8="}"#));

    let (s, frame) = call_raw(
        &f,
        SUPER,
        "POST",
        "/v1/cipher/encrypt",
        "application/octet-stream",
        b"raw bytes".to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(frame[0], 1);
    let (s, plain) = call_raw(
        &f,
        SUPER,
        "POST",
        "/v1/cipher/decrypt",
        "application/octet-stream",
        frame.clone(),
    )
    .await;
    assert_eq!((s, plain.as_slice()), (StatusCode::OK, &b"raw bytes"[..]));
    let mut tampered = frame;
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let (s, body) =
        call_raw(&f, SUPER, "POST", "/v1/cipher/decrypt", "application/octet-stream", tampered)
            .await;
    assert_eq!((s, body.as_slice()), (StatusCode::BAD_REQUEST, &b"decryption failed\n"[..]));

    assert_eq!(
        call(&f, APP, "/v1/cipher/encrypt", r#"{"plaintext":"aGk="}"#).await.0,
        StatusCode::UNAUTHORIZED
    );
    let lite = format!("spiffe://{TD}/spike/workload/role/lite");
    assert_eq!(
        call(&f, &lite, "/v1/cipher/encrypt", r#"{"plaintext":"aGk="}"#).await.0,
        StatusCode::OK
    );
    let grant = r#"{"name":"exec","spiffeidPattern":"spiffe://spike\\.ist/workload/app","pathPattern":"spike/system/cipher/exec","permissions":["execute"]}"#;
    call(&f, SUPER, "/v1/acl/policy", grant).await;
    assert_eq!(
        call(&f, APP, "/v1/cipher/encrypt", r#"{"plaintext":"aGk="}"#).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn sealed_nexus_answers_not_ready_until_restore_completes() {
    let f = fixture(BackendKind::Sled);
    assert!(!f.state.is_ready());
    let (s, b) = call(&f, SUPER, "/v1/store/secrets?action=get", r#"{"path":"a"}"#).await;
    assert_eq!((s, b.as_str()), (StatusCode::SERVICE_UNAVAILABLE, r#"{"err":"state_not_ready"}"#));

    // A deployment's key and its shards (as recover would have exported them).
    let root = shamir::generate_root_key().unwrap();
    let shares = shamir::split(&root, 2, 3).unwrap();
    let shard_json = |i: usize| {
        let bytes: Vec<u8> = shares[i].expose_secret().to_vec();
        serde_json::json!({"id": shares[i].index(), "shard": bytes}).to_string()
    };
    // Only the restore role may restore.
    assert_eq!(
        call(&f, SUPER, "/v1/operator/restore", &shard_json(0)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, b) = call(&f, RESTORE, "/v1/operator/restore", &shard_json(0)).await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::OK, r#"{"collected":1,"remaining":1,"restored":false}"#)
    );
    // The same shard again is not counted twice; a conflicting one is refused, the good kept.
    let (_, b) = call(&f, RESTORE, "/v1/operator/restore", &shard_json(0)).await;
    assert_eq!(b, r#"{"collected":1,"remaining":1,"restored":false}"#);
    let conflicting = serde_json::json!({"id": 1, "shard": vec![7u8; 32]}).to_string();
    assert_eq!(
        call(&f, RESTORE, "/v1/operator/restore", &conflicting).await.0,
        StatusCode::BAD_REQUEST
    );
    let zero = serde_json::json!({"id": 2, "shard": vec![0u8; 32]}).to_string();
    assert_eq!(call(&f, RESTORE, "/v1/operator/restore", &zero).await.0, StatusCode::BAD_REQUEST);
    let (s, b) = call(&f, RESTORE, "/v1/operator/restore", &shard_json(2)).await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::OK, r#"{"collected":2,"remaining":0,"restored":true}"#)
    );
    assert!(f.state.is_ready());

    call(&f, SUPER, "/v1/store/secrets", r#"{"path":"a","values":{"k":"v"}}"#).await;
    // Recover (recover role only) returns shards that recombine to the same key.
    assert_eq!(call(&f, SUPER, "/v1/operator/recover", "{}").await.0, StatusCode::UNAUTHORIZED);
    let (s, b) = call(&f, RECOVER, "/v1/operator/recover", "{}").await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["shards"].as_object().unwrap().len(), 3);
    let two: Vec<spike_core::secret::KeeperShare> = ["1", "3"]
        .iter()
        .map(|k| {
            let mut bytes = [0u8; 32];
            for (i, n) in v["shards"][k].as_array().unwrap().iter().enumerate() {
                bytes[i] = n.as_u64().unwrap() as u8;
            }
            spike_core::secret::KeeperShare::new(k.parse().unwrap(), &mut bytes)
        })
        .collect();
    assert!(shamir::combine(&two, 2).unwrap().ct_eq(&root));
}

#[tokio::test]
async fn a_wrong_key_cannot_unseal_a_sealed_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NexusConfig::dev(dir.path().to_path_buf());
    config.backend = BackendKind::Sled;
    let root = shamir::generate_root_key().unwrap();
    {
        let state = NexusState::open(config.clone()).unwrap();
        let mut bytes = *root.expose_secret();
        state.unseal(spike_core::secret::RootKey::from_bytes(&mut bytes)).unwrap();
    }
    let state = NexusState::open(config).unwrap();
    let other = shamir::generate_root_key().unwrap();
    let err = state.unseal(other).unwrap_err().to_string();
    assert!(err.contains("does not match"), "{err}");
    assert!(!state.is_ready());
}

#[tokio::test]
async fn every_request_is_audited_in_a_verifiable_chain_without_values() {
    let f = fixture(BackendKind::Memory);
    call(&f, SUPER, "/v1/store/secrets", &format!(r#"{{"path":"a","values":{{"k":"{CANARY}"}}}}"#))
        .await;
    call(&f, SUPER, "/v1/store/secrets?action=get", r#"{"path":"a"}"#).await;
    call(&f, APP, "/v1/store/secrets?action=get", r#"{"path":"a"}"#).await;
    let log = std::fs::read_to_string(f.dir.path().join("audit.log")).unwrap();
    assert!(!log.contains(CANARY));
    let report = spike_server::audit::verify_file(&f.dir.path().join("audit.log")).unwrap();
    assert_eq!(report.lines, 3);
    assert!(log.lines().nth(2).unwrap().contains(r#""decision":"deny""#));
    assert!(log.lines().nth(2).unwrap().contains(APP));
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NexusConfig::dev(dir.path().to_path_buf());
    config.max_body_bytes = 4096;
    let f = Fixture { state: NexusState::open(config).unwrap(), dir };
    let big = format!(r#"{{"path":"a","values":{{"k":"{}"}}}}"#, "x".repeat(8192));
    let (s, _) = call(&f, SUPER, "/v1/store/secrets", &big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let (_, b) = call(&f, SUPER, "/v1/store/secrets?action=list", "{}").await;
    assert_eq!(b, r#"{"keys":[]}"#);
}

#[tokio::test]
async fn callers_are_rate_limited_separately() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NexusConfig::dev(dir.path().to_path_buf());
    config.rate_limit = Some(spike_server::limits::RateLimit { per_second: 1.0, burst: 3 });
    let f = Fixture { state: NexusState::open(config).unwrap(), dir };
    for _ in 0..3 {
        assert_eq!(call(&f, SUPER, "/v1/store/secrets?action=list", "{}").await.0, StatusCode::OK);
    }
    assert_eq!(
        call(&f, SUPER, "/v1/store/secrets?action=list", "{}").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        call(&f, APP, "/v1/store/secrets?action=list", "{}").await.0,
        StatusCode::UNAUTHORIZED
    );
}

/// Interop with spike-sdk-go `data.Policy` (found by `tests/interop/go`,
/// `TestSDKPolicyAndForbiddenCalls`): putting a policy again under the same name keeps
/// `createdAt` and moves `updatedAt` to the time of that put, as SPIKE's `UpsertPolicy` does.
/// Before the fix `updatedAt` always repeated `createdAt`.
#[tokio::test]
async fn interop_policy_upsert_keeps_created_at_and_moves_updated_at() {
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    let f = fixture(BackendKind::Memory);
    let put = |perms: &str| {
        format!(
            r#"{{"name":"ops","spiffeidPattern":"^spiffe://spike\\.ist/workload/ops$","pathPattern":"^ops/.*$","permissions":{perms}}}"#
        )
    };
    let get = r#"{"id":"ops"}"#;
    let first_put = call(&f, SUPER, "/v1/acl/policy", &put(r#"["read"]"#)).await;
    assert_eq!(first_put, (StatusCode::OK, r#"{"id":"ops"}"#.to_owned()));
    let (s, first) = call(&f, SUPER, "/v1/acl/policy?action=get", get).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let v1: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v1["createdAt"], v1["updatedAt"], "a new policy: updatedAt = createdAt");

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second_put = call(&f, SUPER, "/v1/acl/policy", &put(r#"["read","write"]"#)).await;
    assert_eq!(second_put.0, StatusCode::OK);
    let (s, second) = call(&f, SUPER, "/v1/acl/policy?action=get", get).await;
    assert_eq!(s, StatusCode::OK, "{second}");
    let v2: serde_json::Value = serde_json::from_str(&second).unwrap();
    let created = v1["createdAt"].as_str().unwrap();
    let updated = v2["updatedAt"].as_str().unwrap();
    assert_eq!(v2["createdAt"].as_str(), Some(created), "upsert keeps createdAt");
    let parse = |t: &str| OffsetDateTime::parse(t, &Rfc3339).unwrap();
    assert!(parse(updated) > parse(created), "upsert moves updatedAt: {created} → {updated}");
    // Exact bytes: Go's field order of the embedded data.Policy, `spiffiedPattern` (sic), no
    // `err` on success.
    let expected = format!(
        r#"{{"id":"ops","name":"ops","spiffiedPattern":"^spiffe://spike\\.ist/workload/ops$","pathPattern":"^ops/.*$","permissions":["read","write"],"createdAt":"{created}","updatedAt":"{updated}"}}"#
    );
    assert_eq!(second, expected);
    // The list does not carry times and is unchanged by an upsert.
    let (s, b) =
        call(&f, SUPER, "/v1/acl/policy?action=list", r#"{"spiffeidPattern":"","pathPattern":""}"#)
            .await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, r#"{"policies":[{"id":"ops","name":"ops"}]}"#));
}

/// Interop with spike-sdk-go `UndeleteSecret` (found by `tests/interop/go`,
/// `TestSDKSecretLifecycle`): an undelete that restores nothing — every named version is live
/// or absent — is 404 `{"err":"api_not_found"}`, as SPIKE's `UndeleteSecret` reports
/// `entity_not_found`. Before the fix it was 200 `{}`.
#[tokio::test]
async fn interop_undelete_that_restores_nothing_is_404() {
    let f = fixture(BackendKind::Memory);
    let undelete = "/v1/store/secrets?action=undelete";
    let not_found = (StatusCode::NOT_FOUND, r#"{"err":"api_not_found"}"#.to_owned());
    for put in [r#"{"path":"u/x","values":{"k":"1"}}"#, r#"{"path":"u/x","values":{"k":"2"}}"#] {
        assert_eq!(call(&f, SUPER, "/v1/store/secrets", put).await.0, StatusCode::OK);
    }
    // Live versions, absent versions, and "the latest deleted" when none is deleted.
    for body in [
        r#"{"path":"u/x","versions":[1]}"#,
        r#"{"path":"u/x","versions":[1,2]}"#,
        r#"{"path":"u/x","versions":[7]}"#,
        r#"{"path":"u/x","versions":[]}"#,
        r#"{"path":"u/x","versions":null}"#,
        r#"{"path":"u/missing","versions":[]}"#,
    ] {
        assert_eq!(call(&f, SUPER, undelete, body).await, not_found, "{body}");
    }
    let del = r#"{"path":"u/x","versions":[2]}"#;
    assert_eq!(call(&f, SUPER, "/v1/store/secrets?action=delete", del).await.0, StatusCode::OK);
    let und = r#"{"path":"u/x","versions":[2,7]}"#;
    assert_eq!(call(&f, SUPER, undelete, und).await, (StatusCode::OK, "{}".to_owned()));
    assert_eq!(call(&f, SUPER, undelete, und).await, not_found, "already restored");
    let (s, b) = call(&f, SUPER, "/v1/store/secrets?action=get", r#"{"path":"u/x"}"#).await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, r#"{"data":{"k":"2"}}"#));
}

/// Interop with SPIKE's put guard (spike-sdk-go `net.RespondErrOnBadValues`; found by
/// `tests/interop/go`, `TestSDKSecretLifecycle`): every key of `values` must match SPIKE's name
/// rule `^[a-zA-Z0-9-_ ]+$` (at most 250 bytes), else 400 `{"err":"api_bad_request"}` and
/// nothing is written. Before the fix any key was stored.
#[tokio::test]
async fn interop_secret_value_keys_follow_spikes_name_rule() {
    let f = fixture(BackendKind::Memory);
    let bad_request = (StatusCode::BAD_REQUEST, r#"{"err":"api_bad_request"}"#.to_owned());
    let long = "k".repeat(251);
    for key in ["a.b", "tls.crt", "a/b", "", "\u{e9}", "a\\u0000b", long.as_str()] {
        let body = format!(r#"{{"path":"keys/x","values":{{"ok":"1","{key}":"v"}}}}"#);
        assert_eq!(call(&f, SUPER, "/v1/store/secrets", &body).await, bad_request, "{key:?}");
    }
    let (s, _) = call(&f, SUPER, "/v1/store/secrets?action=get", r#"{"path":"keys/x"}"#).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a refused put writes nothing");
    let ok = format!(r#"{{"path":"keys/x","values":{{"a-b_c d":"1","{}":"2"}}}}"#, "k".repeat(250));
    assert_eq!(call(&f, SUPER, "/v1/store/secrets", &ok).await, (StatusCode::OK, "{}".to_owned()));
}
