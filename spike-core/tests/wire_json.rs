//! Pins the exact JSON bytes of every SPIKE v1 wire type.
//!
//! Each expected string is what Go's `encoding/json` writes for the corresponding spike-sdk-go
//! v0.19.9 struct (field order = Go declaration order, `omitempty` as tagged, nil = `null`),
//! reasoned from the struct definitions cited above each test.

use std::collections::BTreeMap;

use serde::Serialize;
use spike_core::secret::SecretValues;
use spike_core::wire::{
    self, Action, BootstrapVerifyRequest, BootstrapVerifyResponse, CipherDecryptRequest,
    CipherDecryptResponse, CipherEncryptRequest, CipherEncryptResponse, CipherStream, ErrorCode,
    FallbackResponse, GO_ZERO_TIME, Policy, PolicyDeleteRequest, PolicyDeleteResponse,
    PolicyGetRequest, PolicyGetResponse, PolicyListItem, PolicyListRequest, PolicyListResponse,
    PolicyPermission, PolicyPutRequest, PolicyPutResponse, RecoverRequest, RecoverResponse,
    RestoreRequest, RestoreResponse, Route, SecretBytes, SecretDeleteRequest, SecretDeleteResponse,
    SecretDestroyRequest, SecretGetRequest, SecretGetResponse, SecretListRequest,
    SecretListResponse, SecretMetadataContent, SecretMetadataRequest, SecretMetadataResponse,
    SecretPutRequest, SecretPutResponse, SecretUndeleteRequest, SecretUndeleteResponse,
    SecretVersionInfo, Service, ShardBytes, ShardContributeRequest, ShardContributeResponse,
    ShardGetRequest, ShardGetResponse, WireResponse,
};
use time::macros::datetime;

const CANARY: &str = "canary-5e1f-never-print-me";

fn json<T: Serialize + ?Sized>(value: &T) -> String {
    String::from_utf8(wire::encode(value).expect("encodes").to_vec()).expect("utf-8")
}

fn values(pairs: &[(&str, &str)]) -> SecretValues {
    pairs.iter().map(|(k, v)| (*k, *v)).collect()
}

fn shard(fill: u8) -> ShardBytes {
    ShardBytes::from_bytes(&mut [fill; 32])
}

/// `[n,n,...]` with 32 elements, as Go writes a `[32]byte` array.
fn array32(fill: u8) -> String {
    format!("[{}]", vec![fill.to_string(); 32].join(","))
}

// ---------------------------------------------------------------------------------------------
// Secrets — spike-sdk-go api/entity/v1/reqres/secret.go, api/entity/data/{secret,metadata}.go
// ---------------------------------------------------------------------------------------------

#[test]
fn secret_put_request_matches_go_bytes() {
    // type SecretPutRequest struct { Path `json:"path"`; Values map[string]string
    // `json:"values"`; Err `json:"err,omitempty"` } — map keys sorted.
    let req = SecretPutRequest {
        path: "app/db".into(),
        values: Some(values(&[("user", "admin"), ("password", "s3cr3t")])),
        ..Default::default()
    };
    assert_eq!(json(&req), r#"{"path":"app/db","values":{"password":"s3cr3t","user":"admin"}}"#);

    // A nil map is null; the extensions vanish when None.
    let nil = SecretPutRequest { path: "p".into(), ..Default::default() };
    assert_eq!(json(&nil), r#"{"path":"p","values":null}"#);

    // Extensions follow Go's fields and are omitted unless set.
    let ext = SecretPutRequest {
        path: "p".into(),
        values: Some(values(&[])),
        cas: Some(3),
        metadata: Some(BTreeMap::from([("owner".to_owned(), "team-a".to_owned())])),
    };
    assert_eq!(json(&ext), r#"{"path":"p","values":{},"cas":3,"metadata":{"owner":"team-a"}}"#);
}

#[test]
fn secret_put_request_decodes_go_json_and_ignores_unknown_fields() {
    let body = br#"{"path":"app/db","values":{"k":"v","k":"last"},"err":"","future":1}"#;
    let req: SecretPutRequest = wire::decode(body).expect("decodes");
    assert_eq!(req.path, "app/db");
    let v = req.values.expect("values");
    assert_eq!(v.get("k"), Some("last"), "Go keeps the last duplicate key");
    assert_eq!(req.cas, None);

    let null: SecretPutRequest = wire::decode(br#"{"path":"p","values":null}"#).expect("decodes");
    assert!(null.values.is_none());
    let missing: SecretPutRequest = wire::decode(br#"{}"#).expect("Go zero values");
    assert_eq!(missing.path, "");
    assert!(missing.values.is_none());

    let ext: SecretPutRequest =
        wire::decode(br#"{"path":"p","values":{},"cas":0,"metadata":{"a":"b"}}"#).expect("ext");
    assert_eq!(ext.cas, Some(0));
    assert_eq!(ext.metadata.expect("metadata")["a"], "b");
}

#[test]
fn secret_put_response_matches_go_bytes() {
    // type SecretPutResponse struct { Err `json:"err,omitempty"` }
    assert_eq!(json(&SecretPutResponse::default()), "{}");
    assert_eq!(
        json(&SecretPutResponse::error(ErrorCode::ApiBadRequest)),
        r#"{"err":"api_bad_request"}"#
    );
    let ok: SecretPutResponse = wire::decode(br#"{"err":""}"#).expect("decodes");
    assert_eq!(ok.error_code(), None, "an empty err is success");
}

#[test]
fn secret_get_request_matches_go_bytes() {
    // type SecretGetRequest struct { Path `json:"path"`; Version int `json:"version,omitempty"` }
    let current = SecretGetRequest { path: "app/db".into(), version: 0 };
    assert_eq!(json(&current), r#"{"path":"app/db"}"#);
    let v2 = SecretGetRequest { path: "app/db".into(), version: 2 };
    assert_eq!(json(&v2), r#"{"path":"app/db","version":2}"#);
    let back: SecretGetRequest = wire::decode(br#"{"path":"app/db","version":2}"#).expect("ok");
    assert_eq!(back, v2);
    assert!(wire::decode::<SecretGetRequest>(br#"{"path":"p","version":-1}"#).is_err());
    assert!(wire::decode::<SecretGetRequest>(br#"{"path":"p","version":1.5}"#).is_err());
}

#[test]
fn secret_get_response_matches_go_bytes() {
    // type SecretGetResponse struct { data.Secret (Data map[string]string `json:"data"`);
    // Err `json:"err,omitempty"` }
    let ok = SecretGetResponse { data: Some(values(&[("k", "v")])), err: None };
    assert_eq!(json(&ok), r#"{"data":{"k":"v"}}"#);
    assert_eq!(
        json(&SecretGetResponse::error(ErrorCode::ApiNotFound)),
        r#"{"data":null,"err":"api_not_found"}"#
    );
    let back: SecretGetResponse =
        wire::decode(br#"{"data":{"user":"admin"},"err":""}"#).expect("decodes");
    assert_eq!(back.data.expect("data").get("user"), Some("admin"));
    assert_eq!(back.err, None);
}

#[test]
fn secret_delete_and_undelete_requests_match_go_bytes() {
    // type SecretDeleteRequest struct { Path `json:"path"`; Versions []int `json:"versions"` }
    // The SDK's DeleteSecret sends []int{}; a nil slice would be null.
    let latest = SecretDeleteRequest { path: "a".into(), versions: Some(vec![]) };
    assert_eq!(json(&latest), r#"{"path":"a","versions":[]}"#);
    let nil = SecretDeleteRequest { path: "a".into(), versions: None };
    assert_eq!(json(&nil), r#"{"path":"a","versions":null}"#);
    let some = SecretUndeleteRequest { path: "a".into(), versions: Some(vec![1, 3]) };
    assert_eq!(json(&some), r#"{"path":"a","versions":[1,3]}"#);
    let destroy = SecretDestroyRequest { path: "a".into(), versions: Some(vec![2]) };
    assert_eq!(json(&destroy), r#"{"path":"a","versions":[2]}"#);

    let back: SecretDeleteRequest =
        wire::decode(br#"{"path":"a","versions":null}"#).expect("null versions");
    assert_eq!(back.versions, None);

    assert_eq!(json(&SecretDeleteResponse::default()), "{}");
    assert_eq!(
        json(&SecretUndeleteResponse::error(ErrorCode::AccessUnauthorized)),
        r#"{"err":"access_unauthorized"}"#
    );
}

#[test]
fn secret_list_matches_go_bytes() {
    // type SecretListRequest struct {}; type SecretListResponse struct { Keys []string
    // `json:"keys"`; Err `json:"err,omitempty"` }
    assert_eq!(json(&SecretListRequest {}), "{}");
    let _: SecretListRequest = wire::decode(b"{}").expect("empty object");
    let ok = SecretListResponse { keys: Some(vec!["a".into(), "b/c".into()]), err: None };
    assert_eq!(json(&ok), r#"{"keys":["a","b/c"]}"#);
    // SPIKE's ListKeys returns a non-nil empty slice.
    let empty = SecretListResponse { keys: Some(vec![]), err: None };
    assert_eq!(json(&empty), r#"{"keys":[]}"#);
    assert_eq!(
        json(&SecretListResponse::error(ErrorCode::AccessUnauthorized)),
        r#"{"keys":null,"err":"access_unauthorized"}"#
    );
}

#[test]
fn secret_metadata_request_matches_go_bytes() {
    // type SecretMetadataRequest struct { Path `json:"path"`; Version int
    // `json:"version,omitempty"` }
    assert_eq!(json(&SecretMetadataRequest { path: "x".into(), version: 0 }), r#"{"path":"x"}"#);
    assert_eq!(
        json(&SecretMetadataRequest { path: "x".into(), version: 7 }),
        r#"{"path":"x","version":7}"#
    );
}

fn sample_metadata() -> SecretMetadataResponse {
    let t1 = datetime!(2025-01-02 03:04:05.123456789 UTC);
    let t2 = datetime!(2025-01-02 03:04:06.5 UTC);
    let t3 = datetime!(2025-01-02 03:04:07 UTC);
    let mut versions = BTreeMap::new();
    versions.insert(1, SecretVersionInfo { created_time: t1, version: 1, deleted_time: None });
    versions.insert(2, SecretVersionInfo { created_time: t2, version: 2, deleted_time: Some(t3) });
    versions.insert(10, SecretVersionInfo { created_time: t3, version: 10, deleted_time: None });
    SecretMetadataResponse {
        versions: Some(versions),
        metadata: SecretMetadataContent {
            current_version: 10,
            oldest_version: 1,
            created_time: t1,
            updated_time: t3,
            max_versions: 10,
        },
        err: None,
    }
}

#[test]
fn secret_metadata_response_matches_go_bytes() {
    // type SecretMetadataResponse struct { data.SecretMetadata; Err `json:"err,omitempty"` }
    // SecretMetadata { Versions map[int]SecretVersionInfo `json:"versions,omitempty"`;
    //   Metadata SecretMetaDataContent `json:"metadata,omitempty"` }
    // SecretVersionInfo { CreatedTime time.Time `json:"createdTime"`; Version int
    //   `json:"version"`; DeletedTime *time.Time `json:"deletedTime"` }
    // SecretMetaDataContent { CurrentVersion, OldestVersion, CreatedTime, UpdatedTime,
    //   MaxVersions } — map[int] keys are sorted as strings: "1" < "10" < "2".
    let expected = concat!(
        r#"{"versions":{"#,
        r#""1":{"createdTime":"2025-01-02T03:04:05.123456789Z","version":1,"deletedTime":null},"#,
        r#""10":{"createdTime":"2025-01-02T03:04:07Z","version":10,"deletedTime":null},"#,
        r#""2":{"createdTime":"2025-01-02T03:04:06.5Z","version":2,"#,
        r#""deletedTime":"2025-01-02T03:04:07Z"}},"#,
        r#""metadata":{"currentVersion":10,"oldestVersion":1,"#,
        r#""createdTime":"2025-01-02T03:04:05.123456789Z","#,
        r#""updatedTime":"2025-01-02T03:04:07Z","maxVersions":10}}"#
    );
    let resp = sample_metadata();
    assert_eq!(json(&resp), expected);
    let back: SecretMetadataResponse = wire::decode(expected.as_bytes()).expect("decodes");
    assert_eq!(back, resp);
}

#[test]
fn secret_metadata_error_keeps_zero_metadata_and_omits_versions() {
    // omitempty drops a nil or empty map but never a struct, so the zero-valued metadata with
    // Go's zero time stays.
    let expected = concat!(
        r#"{"metadata":{"currentVersion":0,"oldestVersion":0,"#,
        r#""createdTime":"0001-01-01T00:00:00Z","updatedTime":"0001-01-01T00:00:00Z","#,
        r#""maxVersions":0},"err":"api_not_found"}"#
    );
    assert_eq!(json(&SecretMetadataResponse::error(ErrorCode::ApiNotFound)), expected);
    let empty_map =
        SecretMetadataResponse { versions: Some(BTreeMap::new()), ..Default::default() };
    assert!(!json(&empty_map).contains("versions"));
    let back: SecretMetadataResponse = wire::decode(expected.as_bytes()).expect("decodes");
    assert_eq!(back.metadata.created_time, GO_ZERO_TIME);
    assert_eq!(back.versions, None);
}

// ---------------------------------------------------------------------------------------------
// Policies — spike-sdk-go api/entity/v1/reqres/policy.go, api/entity/data/policy.go
// ---------------------------------------------------------------------------------------------

#[test]
fn policy_put_request_matches_go_bytes() {
    // type PolicyPutRequest struct { Name `json:"name"`; SPIFFEIDPattern
    // `json:"spiffeidPattern"`; PathPattern `json:"pathPattern"`; Permissions
    // []data.PolicyPermission `json:"permissions"` }
    let req = PolicyPutRequest {
        name: "web".into(),
        spiffeid_pattern: r"^spiffe://example\.org/web$".into(),
        path_pattern: "^secrets/web/.*$".into(),
        permissions: Some(vec![PolicyPermission::Read, PolicyPermission::List]),
    };
    assert_eq!(
        json(&req),
        concat!(
            r#"{"name":"web","spiffeidPattern":"^spiffe://example\\.org/web$","#,
            r#""pathPattern":"^secrets/web/.*$","permissions":["read","list"]}"#
        )
    );
    let back: PolicyPutRequest = wire::decode(json(&req).as_bytes()).expect("decodes");
    assert_eq!(back, req);
    assert!(
        wire::decode::<PolicyPutRequest>(br#"{"name":"x","permissions":["admin"]}"#).is_err(),
        "unknown permissions are a 400 in SPIKE too"
    );
}

#[test]
fn policy_put_response_matches_go_bytes() {
    // type PolicyPutResponse struct { ID `json:"id,omitempty"`; Err `json:"err,omitempty"` }
    assert_eq!(json(&PolicyPutResponse::default()), "{}");
    let with_id = PolicyPutResponse { id: "web".into(), err: None };
    assert_eq!(json(&with_id), r#"{"id":"web"}"#);
    assert_eq!(
        json(&PolicyPutResponse::error(ErrorCode::ApiBadRequest)),
        r#"{"err":"api_bad_request"}"#
    );
}

#[test]
fn policy_get_and_delete_requests_match_go_bytes() {
    // type PolicyReadRequest struct { ID `json:"id"` }; PolicyDeleteRequest likewise.
    assert_eq!(json(&PolicyGetRequest { id: "web".into() }), r#"{"id":"web"}"#);
    assert_eq!(json(&PolicyDeleteRequest { id: "web".into() }), r#"{"id":"web"}"#);
    assert_eq!(json(&PolicyDeleteResponse::default()), "{}");
}

#[test]
fn policy_get_response_matches_go_bytes() {
    // type PolicyReadResponse struct { data.Policy; Err `json:"err,omitempty"` }
    // data.Policy { ID `json:"id"`; Name `json:"name"`; SPIFFEIDPattern `json:"spiffiedPattern"`;
    //   PathPattern `json:"pathPattern"`; Permissions `json:"permissions"`; CreatedAt
    //   `json:"createdAt"`; UpdatedAt `json:"updatedAt"` }
    let resp = PolicyGetResponse {
        policy: Policy {
            id: String::new(),
            name: "web".into(),
            spiffeid_pattern: "^spiffe://example.org/web$".into(),
            path_pattern: "^secrets/web/.*$".into(),
            permissions: Some(vec![PolicyPermission::Read]),
            created_at: datetime!(2025-01-02 03:04:05 UTC),
            updated_at: datetime!(2025-01-02 03:04:05.1 UTC),
        },
        err: None,
    };
    let expected = concat!(
        r#"{"id":"","name":"web","spiffiedPattern":"^spiffe://example.org/web$","#,
        r#""pathPattern":"^secrets/web/.*$","permissions":["read"],"#,
        r#""createdAt":"2025-01-02T03:04:05Z","updatedAt":"2025-01-02T03:04:05.1Z"}"#
    );
    assert_eq!(json(&resp), expected);
    let back: PolicyGetResponse = wire::decode(expected.as_bytes()).expect("decodes");
    assert_eq!(back, resp);

    let err = concat!(
        r#"{"id":"","name":"","spiffiedPattern":"","pathPattern":"","permissions":null,"#,
        r#""createdAt":"0001-01-01T00:00:00Z","updatedAt":"0001-01-01T00:00:00Z","#,
        r#""err":"api_not_found"}"#
    );
    assert_eq!(json(&PolicyGetResponse::error(ErrorCode::ApiNotFound)), err);
    let back: PolicyGetResponse = wire::decode(err.as_bytes()).expect("decodes");
    assert_eq!(back.error_code(), Some(&ErrorCode::ApiNotFound));
}

#[test]
fn policy_list_matches_go_bytes() {
    // type PolicyListRequest struct { SPIFFEIDPattern `json:"spiffeidPattern"`; PathPattern
    // `json:"pathPattern"` } — no omitempty, so both are always sent.
    assert_eq!(json(&PolicyListRequest::default()), r#"{"spiffeidPattern":"","pathPattern":""}"#);
    // type PolicyListResponse struct { Policies []data.PolicyListItem `json:"policies"`; Err }
    let ok = PolicyListResponse {
        policies: Some(vec![PolicyListItem { id: String::new(), name: "web".into() }]),
        err: None,
    };
    assert_eq!(json(&ok), r#"{"policies":[{"id":"","name":"web"}]}"#);
    let none = PolicyListResponse { policies: Some(vec![]), err: None };
    assert_eq!(json(&none), r#"{"policies":[]}"#);
    assert_eq!(
        json(&PolicyListResponse::error(ErrorCode::AccessUnauthorized)),
        r#"{"policies":null,"err":"access_unauthorized"}"#
    );
}

#[test]
fn strings_are_html_escaped_like_go() {
    // Go's json.Marshal escapes <, >, & and U+2028/U+2029; serde_json alone would not.
    let req = PolicyPutRequest {
        name: "a&b".into(),
        path_pattern: "(?P<x>a)\u{2028}\u{2029}\"\\\n\u{1}\u{8}\u{c}\u{7f}".into(),
        ..Default::default()
    };
    assert_eq!(
        json(&req),
        concat!(
            r#"{"name":"a\u0026b","spiffeidPattern":"","#,
            r#""pathPattern":"(?P\u003cx\u003ea)\u2028\u2029\"\\\n\u0001\b\f"#,
            "\u{7f}",
            r#"","permissions":null}"#
        )
    );
    let back: PolicyPutRequest = wire::decode(json(&req).as_bytes()).expect("decodes");
    assert_eq!(back, req);
    // Map keys are escaped too.
    let put = SecretPutRequest {
        path: "p".into(),
        values: Some(values(&[("<k>", "&")])),
        ..Default::default()
    };
    assert_eq!(json(&put), r#"{"path":"p","values":{"\u003ck\u003e":"\u0026"}}"#);
}

#[test]
fn large_bodies_encode_exactly_with_escapes_at_any_position() {
    // Longer than the encoder's first buffer, so it grows (zeroizing as it goes); escapes at
    // the start, inside and at the end of a long ASCII run, and non-ASCII that starts with the
    // same byte as U+2028 (0xE2) but is not escaped.
    for len in [0usize, 15, 16, 17, 2_000, 70_000] {
        let plain = "a".repeat(len);
        let value = format!("<{plain}&\u{2028}\u{20ac}{plain}>");
        let put = SecretPutRequest {
            path: "p".into(),
            values: Some(values(&[("k", value.as_str())])),
            ..Default::default()
        };
        let expected =
            format!(r#"{{"path":"p","values":{{"k":"\u003c{plain}\u0026\u2028€{plain}\u003e"}}}}"#);
        assert_eq!(json(&put), expected, "length {len}");
    }
}

// ---------------------------------------------------------------------------------------------
// Cipher — spike-sdk-go api/entity/v1/reqres/cipher.go, net/cipher.go
// ---------------------------------------------------------------------------------------------

#[test]
fn cipher_encrypt_matches_go_bytes() {
    // type CipherEncryptRequest struct { Plaintext []byte `json:"plaintext"`; Algorithm
    // `json:"algorithm,omitempty"` }
    let req = CipherEncryptRequest {
        plaintext: Some(SecretBytes::from_slice(b"hello")),
        algorithm: String::new(),
    };
    assert_eq!(json(&req), r#"{"plaintext":"aGVsbG8="}"#);
    let alg = CipherEncryptRequest {
        plaintext: Some(SecretBytes::from_slice(b"")),
        algorithm: "aes-gcm".into(),
    };
    assert_eq!(json(&alg), r#"{"plaintext":"","algorithm":"aes-gcm"}"#);
    assert_eq!(json(&CipherEncryptRequest::default()), r#"{"plaintext":null}"#);

    // type CipherEncryptResponse struct { Version byte `json:"version"`; Nonce []byte
    // `json:"nonce"`; Ciphertext []byte `json:"ciphertext"`; Err `json:"err,omitempty"` }
    let resp = CipherEncryptResponse {
        version: 1,
        nonce: Some((0u8..12).collect()),
        ciphertext: Some(vec![0xde, 0xad, 0xbe, 0xef]),
        err: None,
    };
    assert_eq!(json(&resp), r#"{"version":1,"nonce":"AAECAwQFBgcICQoL","ciphertext":"3q2+7w=="}"#);
    assert_eq!(
        json(&CipherEncryptResponse::error(ErrorCode::ApiInternal)),
        r#"{"version":0,"nonce":null,"ciphertext":null,"err":"api_internal_error"}"#
    );
    let back: CipherEncryptResponse = wire::decode(json(&resp).as_bytes()).expect("decodes");
    assert_eq!(back, resp);
}

#[test]
fn cipher_decrypt_matches_go_bytes() {
    // type CipherDecryptRequest struct { Version byte; Nonce []byte; Ciphertext []byte;
    // Algorithm `json:"algorithm,omitempty"` }
    let req = CipherDecryptRequest {
        version: 1,
        nonce: Some(vec![0; 12]),
        ciphertext: Some(vec![0xff; 17]),
        algorithm: String::new(),
    };
    assert_eq!(
        json(&req),
        r#"{"version":1,"nonce":"AAAAAAAAAAAAAAAA","ciphertext":"//////////////////////8="}"#
    );
    let back: CipherDecryptRequest = wire::decode(json(&req).as_bytes()).expect("decodes");
    assert_eq!(back, req);
    assert_eq!(req.validate(65_536), Ok(()));
    let bad_version = CipherDecryptRequest { version: 2, ..req.clone() };
    assert_eq!(bad_version.validate(65_536), Err(ErrorCode::CryptoUnsupportedCipherVersion));
    let bad_nonce = CipherDecryptRequest { nonce: Some(vec![0; 11]), ..req.clone() };
    assert_eq!(bad_nonce.validate(65_536), Err(ErrorCode::DataInvalidInput));
    assert_eq!(req.validate(16), Err(ErrorCode::DataInvalidInput));
    assert!(wire::decode::<CipherDecryptRequest>(br#"{"version":256}"#).is_err());

    // type CipherDecryptResponse struct { Plaintext []byte `json:"plaintext"`; Err }
    let resp =
        CipherDecryptResponse { plaintext: Some(SecretBytes::from_slice(b"hello")), err: None };
    assert_eq!(json(&resp), r#"{"plaintext":"aGVsbG8="}"#);
    assert_eq!(
        json(&CipherDecryptResponse::error(ErrorCode::ApiBadRequest)),
        r#"{"plaintext":null,"err":"api_bad_request"}"#
    );
    let back: CipherDecryptResponse = wire::decode(br#"{"plaintext":"aGVsbG8="}"#).expect("ok");
    assert_eq!(back.plaintext.expect("plaintext").expose_secret(), b"hello");
}

#[test]
fn cipher_stream_framing_matches_spike() {
    // net/cipher.go: version byte 0x01, then the 12-byte nonce, then ciphertext.
    let nonce = [7u8; 12];
    let framed = CipherStream { version: 1, nonce: &nonce, ciphertext: b"ct+tag" }.to_bytes();
    assert_eq!(framed[0], 1);
    assert_eq!(&framed[1..13], &nonce);
    let parsed = CipherStream::parse(&framed).expect("parses");
    assert_eq!(parsed.ciphertext, b"ct+tag");
    assert_eq!(CipherStream::parse(b""), Err(ErrorCode::CryptoFailedToReadVersion));
    assert_eq!(CipherStream::parse(&[2; 20]), Err(ErrorCode::CryptoUnsupportedCipherVersion));
    assert_eq!(CipherStream::parse(&[1; 12]), Err(ErrorCode::CryptoFailedToReadNonce));
    assert_eq!(CipherStream::parse(&[1; 13]).expect("empty ciphertext").ciphertext, b"");
}

#[test]
fn byte_slices_are_base64_and_shards_are_number_arrays() {
    // []byte ⇒ base64 string; [32]byte ⇒ array of numbers. Each rejects the other's form.
    let b64_as_shard = r#"{"shard":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}"#;
    assert!(wire::decode::<ShardContributeRequest>(b64_as_shard.as_bytes()).is_err());
    let array_as_nonce = format!(r#"{{"nonce":{},"ciphertext":null}}"#, array32(0));
    assert!(wire::decode::<BootstrapVerifyRequest>(array_as_nonce.as_bytes()).is_err());

    // Non-canonical or unpadded base64 is rejected (Go's encoder never writes it).
    assert!(wire::decode::<CipherEncryptRequest>(br#"{"plaintext":"aGVsbG8"}"#).is_err());
    assert!(wire::decode::<CipherDecryptRequest>(br#"{"nonce":"aGVsbG9="}"#).is_err());
    assert!(wire::decode::<CipherDecryptRequest>(br#"{"nonce":"aGVs bG8="}"#).is_err());

    // Exactly 32 numbers, each 0..=255.
    let short = format!(r#"{{"shard":[{}]}}"#, vec!["1"; 31].join(","));
    assert!(wire::decode::<ShardContributeRequest>(short.as_bytes()).is_err());
    let long = format!(r#"{{"shard":[{}]}}"#, vec!["1"; 33].join(","));
    assert!(wire::decode::<ShardContributeRequest>(long.as_bytes()).is_err());
    let big = format!(r#"{{"shard":[256{}]}}"#, ",1".repeat(31));
    assert!(wire::decode::<ShardContributeRequest>(big.as_bytes()).is_err());
    let ok = format!(r#"{{"shard":{}}}"#, array32(255));
    let req: ShardContributeRequest = wire::decode(ok.as_bytes()).expect("decodes");
    assert_eq!(req.shard.expect("shard").expose_secret(), &[255u8; 32]);
}

// ---------------------------------------------------------------------------------------------
// Operator — spike-sdk-go api/entity/v1/reqres/operator.go, api/entity/data/operator.go
// ---------------------------------------------------------------------------------------------

#[test]
fn recover_matches_go_bytes() {
    // type RecoverRequest struct {}; type RecoverResponse struct { Shards map[int]*[32]byte
    // `json:"shards"`; Err `json:"err,omitempty"` }
    assert_eq!(json(&RecoverRequest {}), "{}");
    let mut shards = BTreeMap::new();
    shards.insert(1, shard(1));
    shards.insert(2, shard(2));
    shards.insert(10, shard(10));
    let resp = RecoverResponse { shards: Some(shards), err: None };
    let expected =
        format!(r#"{{"shards":{{"1":{},"10":{},"2":{}}}}}"#, array32(1), array32(10), array32(2));
    assert_eq!(json(&resp), expected);
    let back: RecoverResponse = wire::decode(expected.as_bytes()).expect("decodes");
    let back = back.shards.expect("shards");
    assert_eq!(back.keys().copied().collect::<Vec<_>>(), vec![1, 2, 10]);
    assert_eq!(back[&10].expose_secret(), &[10u8; 32]);

    assert_eq!(
        json(&RecoverResponse::error(ErrorCode::ApiBadRequest)),
        r#"{"shards":null,"err":"api_bad_request"}"#
    );
}

#[test]
fn map_int_keys_are_decimal_strings() {
    let body = format!(r#"{{"shards":{{"+3":{},"007":{}}}}}"#, array32(3), array32(7));
    let resp: RecoverResponse = wire::decode(body.as_bytes()).expect("Go's ParseInt accepts these");
    assert_eq!(resp.shards.expect("shards").keys().copied().collect::<Vec<_>>(), vec![3, 7]);
    for bad in ["x", "1.0", " 1", "-1", ""] {
        let body = format!(r#"{{"shards":{{"{bad}":{}}}}}"#, array32(1));
        assert!(wire::decode::<RecoverResponse>(body.as_bytes()).is_err(), "key {bad:?}");
    }
    let versions = br#"{"versions":{"2":{"createdTime":"2025-01-02T03:04:05Z","version":2,"deletedTime":null}},"metadata":{}}"#;
    let meta: SecretMetadataResponse = wire::decode(versions).expect("decodes");
    assert_eq!(meta.versions.expect("versions")[&2].version, 2);
}

#[test]
fn restore_matches_go_bytes() {
    // type RestoreRequest struct { ID int `json:"id"`; Shard *[32]byte `json:"shard"` }
    let req = RestoreRequest { id: 2, shard: Some(shard(9)) };
    assert_eq!(json(&req), format!(r#"{{"id":2,"shard":{}}}"#, array32(9)));
    assert_eq!(req.validate(1000), Ok(()));
    assert_eq!(
        RestoreRequest { id: 0, shard: Some(shard(9)) }.validate(1000),
        Err(ErrorCode::ApiBadRequest)
    );
    assert_eq!(RestoreRequest { id: 1, shard: None }.validate(1000), Err(ErrorCode::ApiBadRequest));
    assert_eq!(
        RestoreRequest { id: 1, shard: Some(shard(0)) }.validate(1000),
        Err(ErrorCode::ApiBadRequest)
    );
    assert_eq!(json(&RestoreRequest::default()), r#"{"id":0,"shard":null}"#);

    // type RestoreResponse struct { data.RestorationStatus (ShardsCollected `json:"collected"`;
    // ShardsRemaining `json:"remaining"`; Restored bool `json:"restored"`); Err }
    let resp = RestoreResponse { collected: 1, remaining: 1, restored: false, err: None };
    assert_eq!(json(&resp), r#"{"collected":1,"remaining":1,"restored":false}"#);
    assert_eq!(
        json(&RestoreResponse::error(ErrorCode::AccessUnauthorized)),
        r#"{"collected":0,"remaining":0,"restored":false,"err":"access_unauthorized"}"#
    );
    let back: RestoreResponse =
        wire::decode(br#"{"collected":2,"remaining":0,"restored":true}"#).expect("decodes");
    assert!(back.restored);
}

// ---------------------------------------------------------------------------------------------
// Bootstrap — spike-sdk-go api/entity/v1/reqres/bootstrap.go
// ---------------------------------------------------------------------------------------------

#[test]
fn bootstrap_verify_matches_go_bytes() {
    // type BootstrapVerifyRequest struct { Nonce []byte `json:"nonce"`; Ciphertext []byte
    // `json:"ciphertext"` }
    let req =
        BootstrapVerifyRequest { nonce: Some(vec![1; 12]), ciphertext: Some(b"abc".to_vec()) };
    assert_eq!(json(&req), r#"{"nonce":"AQEBAQEBAQEBAQEB","ciphertext":"YWJj"}"#);
    assert_eq!(req.validate(65_536), Ok(()));
    assert_eq!(
        BootstrapVerifyRequest::default().validate(65_536),
        Err(ErrorCode::DataInvalidInput)
    );
    // type BootstrapVerifyResponse struct { Hash string `json:"hash"`; Err `json:"err,omitempty"` }
    let hash = "a591a6d40bf420404a011733cfb7b190d62c65bf0bcda32b57b277d9ad9f146e";
    let resp = BootstrapVerifyResponse { hash: hash.into(), err: None };
    assert_eq!(json(&resp), format!(r#"{{"hash":"{hash}"}}"#));
    assert_eq!(
        json(&BootstrapVerifyResponse::error(ErrorCode::ApiInternal)),
        r#"{"hash":"","err":"api_internal_error"}"#
    );
}

// ---------------------------------------------------------------------------------------------
// Keeper — spike-sdk-go api/entity/v1/reqres/shamir.go
// ---------------------------------------------------------------------------------------------

#[test]
fn keeper_contribute_matches_go_bytes() {
    // type ShardPutRequest struct { Shard *[32]byte `json:"shard"` }
    let req = ShardContributeRequest { shard: Some(shard(5)) };
    assert_eq!(json(&req), format!(r#"{{"shard":{}}}"#, array32(5)));
    assert_eq!(json(&ShardContributeRequest::default()), r#"{"shard":null}"#);
    assert_eq!(req.validate(), Ok(()));
    assert_eq!(ShardContributeRequest::default().validate(), Err(ErrorCode::ShamirNilShard));
    let zero = ShardContributeRequest { shard: Some(shard(0)) };
    assert_eq!(zero.validate(), Err(ErrorCode::ShamirEmptyShard));
    // type ShardPutResponse struct { Err `json:"err,omitempty"` }
    assert_eq!(json(&ShardContributeResponse::default()), "{}");
}

#[test]
fn keeper_shard_get_writes_capitalised_err_always() {
    // type ShardGetRequest struct {}; type ShardGetResponse struct { Shard *[32]byte
    // `json:"shard"`; Err sdkErrors.ErrorCode } — no tag: key "Err", never omitted.
    assert_eq!(json(&ShardGetRequest {}), "{}");
    let ok = ShardGetResponse { shard: Some(shard(4)), err: None };
    assert_eq!(json(&ok), format!(r#"{{"shard":{},"Err":""}}"#, array32(4)));
    assert_eq!(
        json(&ShardGetResponse::error(ErrorCode::ApiBadRequest)),
        r#"{"shard":null,"Err":"api_bad_request"}"#
    );
    let back: ShardGetResponse =
        wire::decode(format!(r#"{{"shard":{},"Err":""}}"#, array32(4)).as_bytes()).expect("ok");
    assert_eq!(back.err, None);
    assert_eq!(back.shard.expect("shard").expose_secret(), &[4u8; 32]);
    let lower: ShardGetResponse =
        wire::decode(br#"{"shard":null,"err":"api_bad_request"}"#).expect("alias");
    assert_eq!(lower.err, Some(ErrorCode::ApiBadRequest));
}

// ---------------------------------------------------------------------------------------------
// Times — Go time.Time.MarshalJSON (RFC3339Nano) and UnmarshalJSON (strict RFC 3339)
// ---------------------------------------------------------------------------------------------

#[test]
fn times_are_formatted_like_go_rfc3339nano() {
    use time::macros::offset;
    let cases = [
        (datetime!(2025-01-02 03:04:05 UTC), "2025-01-02T03:04:05Z"),
        (datetime!(2025-01-02 03:04:05.123456789 UTC), "2025-01-02T03:04:05.123456789Z"),
        (datetime!(2025-01-02 03:04:05.120 UTC), "2025-01-02T03:04:05.12Z"),
        (datetime!(2025-01-02 03:04:05.000000001 UTC), "2025-01-02T03:04:05.000000001Z"),
        (datetime!(2025-01-02 03:04:05.5 UTC), "2025-01-02T03:04:05.5Z"),
        (datetime!(2025-01-02 03:04:05 +05:30), "2025-01-02T03:04:05+05:30"),
        (datetime!(2025-01-02 03:04:05.1 -08:00), "2025-01-02T03:04:05.1-08:00"),
        (
            datetime!(2025-01-02 03:04:05 UTC).to_offset(offset!(+00:00:30)),
            "2025-01-02T03:04:35+00:00",
        ),
        (GO_ZERO_TIME, "0001-01-01T00:00:00Z"),
    ];
    for (t, expected) in cases {
        assert_eq!(wire::format_go_time(&t).as_deref(), Some(expected), "{t}");
    }
    assert_eq!(wire::format_go_time(&datetime!(-0001-12-31 0:00 UTC)), None);
    assert_eq!(wire::format_go_time(&datetime!(2025-01-02 0:00 +24:00)), None);
}

#[test]
fn times_parse_like_go_strict_rfc3339() {
    let t = wire::parse_go_time("2025-01-02T03:04:05.123456789Z").expect("parses");
    assert_eq!(t, datetime!(2025-01-02 03:04:05.123456789 UTC));
    // Any number of fraction digits; extra precision is truncated.
    assert_eq!(
        wire::parse_go_time("2025-01-02T03:04:05.1234567891Z"),
        Some(datetime!(2025-01-02 03:04:05.123456789 UTC))
    );
    let off = wire::parse_go_time("2025-01-02T03:04:05+02:00").expect("offset");
    assert_eq!(wire::format_go_time(&off).as_deref(), Some("2025-01-02T03:04:05+02:00"));
    let zero_offset = wire::parse_go_time("2025-01-02T03:04:05+00:00").expect("offset");
    assert_eq!(wire::format_go_time(&zero_offset).as_deref(), Some("2025-01-02T03:04:05Z"));
    for bad in [
        "2025-01-02 03:04:05Z",
        "2025-01-02t03:04:05Z",
        "2025-01-02T03:04:05z",
        "2025-01-02T03:04:60Z",
        "2025-01-02T03:04:05",
        "2025-01-02T03:04:05.Z",
        "2025-1-02T03:04:05Z",
        "2025-01-02T03:04:05+24:00",
    ] {
        assert_eq!(wire::parse_go_time(bad), None, "{bad}");
    }
    // null leaves Go's zero time; a pointer time stays nil.
    let v: SecretVersionInfo =
        wire::decode(br#"{"createdTime":null,"version":1,"deletedTime":null}"#).expect("null");
    assert_eq!(v.created_time, GO_ZERO_TIME);
    assert_eq!(v.deleted_time, None);
}

// ---------------------------------------------------------------------------------------------
// Error codes — spike-sdk-go errors/sentinel.go; statuses from net/{http,serve,auth,post}.go
// ---------------------------------------------------------------------------------------------

#[test]
fn error_codes_are_spikes_exact_strings() {
    for (code, s) in [
        (ErrorCode::ApiBadRequest, "api_bad_request"),
        (ErrorCode::ApiNotFound, "api_not_found"),
        (ErrorCode::ApiInternal, "api_internal_error"),
        (ErrorCode::StateNotReady, "state_not_ready"),
        (ErrorCode::AccessUnauthorized, "access_unauthorized"),
        (ErrorCode::EntityNotFound, "entity_not_found"),
        (ErrorCode::EntityCreationFailed, "object_creation_failed"),
        (ErrorCode::FsStreamWriteFailed, "stream_write_failed"),
        (ErrorCode::CryptoUnsupportedCipherVersion, "crypto_unsupported_version"),
        (ErrorCode::GeneralFailure, "gen_general_failure"),
    ] {
        assert_eq!(code.as_str(), s);
        assert_eq!(ErrorCode::from_code(s), code);
        assert_eq!(json(&code), format!("\"{s}\""));
    }
    assert_eq!(ErrorCode::ALL.len(), 113);
    let mut seen = std::collections::HashSet::new();
    for code in ErrorCode::ALL {
        assert!(seen.insert(code.as_str()), "duplicate {code}");
        assert_eq!(&ErrorCode::from_code(code.as_str()), code);
        assert!(!code.message().is_empty());
    }
    let other = ErrorCode::from_code("brand_new_code");
    assert_eq!(other, ErrorCode::Other("brand_new_code".into()));
    assert_eq!(other.as_str(), "brand_new_code");
    let resp: SecretPutResponse = wire::decode(br#"{"err":"brand_new_code"}"#).expect("decodes");
    assert_eq!(resp.err, Some(other));
}

#[test]
fn error_codes_map_to_spike_http_statuses() {
    for (code, status) in [
        (ErrorCode::ApiBadRequest, 400),
        (ErrorCode::AccessUnauthorized, 401),
        (ErrorCode::ApiNotFound, 404),
        (ErrorCode::ApiInternal, 500),
        (ErrorCode::StateNotReady, 503),
        (ErrorCode::EntityNotFound, 404),
        (ErrorCode::DataInvalidInput, 400),
        (ErrorCode::ShamirEmptyShard, 400),
        (ErrorCode::SpiffeInvalidSpiffeId, 401),
        (ErrorCode::EntityLoadFailed, 500),
        (ErrorCode::CryptoCipherNotAvailable, 500),
        (ErrorCode::Other("x".into()), 500),
    ] {
        assert_eq!(code.http_status(), status, "{code}");
    }
    assert_eq!(ErrorCode::EntityNotFound.wire_code(), ErrorCode::ApiNotFound);
    assert_eq!(ErrorCode::DataInvalidInput.wire_code(), ErrorCode::ApiBadRequest);
    assert_eq!(ErrorCode::EntitySaveFailed.wire_code(), ErrorCode::ApiInternal);
    for code in ErrorCode::ALL {
        let wire = code.wire_code();
        assert_eq!(wire.http_status(), code.http_status(), "{code}");
        assert!(ErrorCode::from_http_status(wire.http_status()).is_some());
    }
    assert_eq!(ErrorCode::from_http_status(200), None);
    assert_eq!(ErrorCode::from_http_status(500), Some(ErrorCode::NetPeerConnection));
    assert_eq!(ErrorCode::from_http_status(503), Some(ErrorCode::StateNotReady));
}

#[test]
fn fallback_response_matches_go_bytes() {
    // type FallbackResponse struct { Err errors.ErrorCode `json:"err,omitempty"` }
    assert_eq!(
        json(&FallbackResponse::error(ErrorCode::StateNotReady)),
        r#"{"err":"state_not_ready"}"#
    );
    assert_eq!(json(&FallbackResponse::default()), "{}");
}

// ---------------------------------------------------------------------------------------------
// Routes — spike-sdk-go api/url/config.go; spike app/nexus/internal/route/base/impl.go,
// app/keeper/internal/route/base/route.go
// ---------------------------------------------------------------------------------------------

#[test]
fn routes_have_spikes_paths_and_actions() {
    for (route, pq) in [
        (Route::SecretPut, "/v1/store/secrets"),
        (Route::SecretGet, "/v1/store/secrets?action=get"),
        (Route::SecretDelete, "/v1/store/secrets?action=delete"),
        (Route::SecretUndelete, "/v1/store/secrets?action=undelete"),
        (Route::SecretList, "/v1/store/secrets?action=list"),
        (Route::SecretDestroy, "/v1/store/secrets?action=destroy"),
        (Route::SecretMetadataGet, "/v1/store/secrets/metadata?action=get"),
        (Route::PolicyPut, "/v1/acl/policy"),
        (Route::PolicyGet, "/v1/acl/policy?action=get"),
        (Route::PolicyDelete, "/v1/acl/policy?action=delete"),
        (Route::PolicyList, "/v1/acl/policy?action=list"),
        (Route::CipherEncrypt, "/v1/cipher/encrypt"),
        (Route::CipherDecrypt, "/v1/cipher/decrypt"),
        (Route::OperatorRecover, "/v1/operator/recover"),
        (Route::OperatorRestore, "/v1/operator/restore"),
        (Route::OperatorRotate, "/v1/operator/rotate"),
        (Route::BootstrapVerify, "/v1/bootstrap/verify"),
        (Route::KeeperContribute, "/v1/store/contribute"),
        (Route::KeeperShard, "/v1/store/shard"),
        (Route::KeeperCheckpoint, "/v1/store/checkpoint"),
        (Route::ImportSecret, "/v1/operator/import/secret"),
        (Route::ImportPolicy, "/v1/operator/import/policy"),
        (Route::ImportCipherKey, "/v1/operator/import/cipher-key"),
    ] {
        assert_eq!(route.path_and_query(), pq);
        let (path, query) = pq.split_once('?').unwrap_or((pq, ""));
        assert_eq!(Route::resolve(route.service(), "POST", path, query), Some(route), "{pq}");
    }
    assert_eq!(Route::ALL.len(), 23);
    assert!(Route::SecretDestroy.is_extension() && Route::OperatorRotate.is_extension());
    assert!(Route::KeeperCheckpoint.is_extension() && Route::ImportSecret.is_extension());
    assert!(!Route::SecretPut.is_extension());
}

#[test]
fn route_resolution_mirrors_spikes_route_factory() {
    let r = |m: &str, p: &str, q: &str| Route::resolve(Service::Nexus, m, p, q);
    assert_eq!(r("GET", "/v1/store/secrets", "action=get"), None, "only POST");
    assert_eq!(r("post", "/v1/store/secrets", ""), None, "method is case-sensitive");
    assert_eq!(r("POST", "/v1/store/secrets/", ""), None, "exact path");
    assert_eq!(r("POST", "/v1/store/secrets", "action=GET"), None, "exact action");
    assert_eq!(r("POST", "/v1/store/secrets", "action=bogus"), None);
    assert_eq!(r("POST", "/v1/acl/policy", "action=undelete"), None);
    assert_eq!(r("POST", "/v1/store/shard", ""), None, "keeper route on nexus");
    assert_eq!(r("POST", "/v1/store/secrets", "action=%67et"), Some(Route::SecretGet));
    assert_eq!(
        r("POST", "/v1/store/secrets", "x=1&action=list&action=get"),
        Some(Route::SecretList)
    );
    assert_eq!(r("POST", "/v1/store/secrets", "action="), Some(Route::SecretPut));
    // Go ≥ 1.17 drops query segments containing ';' (and bad escapes), so no action remains.
    assert_eq!(r("POST", "/v1/store/secrets", "a=1;action=get"), Some(Route::SecretPut));
    assert_eq!(r("POST", "/v1/store/secrets", "action=%zzget"), Some(Route::SecretPut));
    assert_eq!(wire::query_action("action=a+b%20c"), "a b c");
    assert_eq!(Action::from_query_value("undelete"), Some(Action::Undelete));
    assert_eq!(Action::Default.as_str(), "");
    assert_eq!(
        Route::resolve(Service::Keeper, "POST", "/v1/store/contribute", ""),
        Some(Route::KeeperContribute)
    );
}

// ---------------------------------------------------------------------------------------------
// Redaction
// ---------------------------------------------------------------------------------------------

#[test]
fn debug_output_never_shows_secret_material() {
    let put = SecretPutRequest {
        path: "app/db".into(),
        values: Some(values(&[("password", CANARY)])),
        ..Default::default()
    };
    let get = SecretGetResponse { data: Some(values(&[("password", CANARY)])), err: None };
    let enc = CipherEncryptRequest {
        plaintext: Some(SecretBytes::from_slice(CANARY.as_bytes())),
        algorithm: String::new(),
    };
    let dec = CipherDecryptResponse {
        plaintext: Some(SecretBytes::from_slice(CANARY.as_bytes())),
        err: None,
    };
    let secret_shard = ShardBytes::from_bytes(&mut [0x5a; 32]);
    let restore = RestoreRequest { id: 1, shard: Some(ShardBytes::from_bytes(&mut [0x5a; 32])) };
    let shown = format!("{put:?} {get:?} {enc:?} {dec:?} {secret_shard:?} {restore:?}");
    assert!(!shown.contains(CANARY), "{shown}");
    assert!(!shown.contains("90"), "0x5a must not appear as a number: {shown}");
    assert!(shown.contains("password"), "keys are names and may be shown: {shown}");
    assert!(shown.contains("[REDACTED]"));
}

#[test]
fn decode_errors_do_not_echo_input() {
    let body = format!(r#"{{"path":"p","version":"{CANARY}"}}"#);
    let err = wire::decode::<SecretGetRequest>(body.as_bytes()).expect_err("bad version");
    assert!(!err.to_string().contains(CANARY));
    assert!(!format!("{err:?}").contains(CANARY));
    assert_eq!(err.category, "data");
}

#[test]
fn shard_bytes_round_trip_through_keeper_share() {
    let wire_shard = ShardBytes::from_bytes(&mut [3; 32]);
    let share = wire_shard.to_keeper_share(2);
    assert_eq!(share.index(), 2);
    let back = ShardBytes::from_keeper_share(&share);
    assert!(back.ct_eq(&wire_shard));
    assert!(!back.is_zero());
    let mut caller = [9u8; 32];
    let _ = ShardBytes::from_bytes(&mut caller);
    assert_eq!(caller, [0u8; 32], "the caller's copy is zeroized");
}

/// SPIKE's rule for the keys of a secret's values (spike-sdk-go v0.19.9
/// `net.RespondErrOnBadValues` → `validation.ValidateName`: `^[a-zA-Z0-9-_ ]+$`, at most 250
/// bytes). Found by `tests/interop/go` (`TestSDKSecretLifecycle`): Nexus accepted any key. The
/// expectations are Go's `regexp.MatchString` answers for the same inputs.
#[test]
fn interop_value_keys_follow_spikes_name_rule() {
    use spike_core::wire::secrets::{MAX_VALUE_KEY_LEN, is_valid_value_key};

    assert_eq!(MAX_VALUE_KEY_LEN, 250);
    for ok in ["a", "Z9", "user", "a-b", "a_b", "a b", " ", "-", "_", &"k".repeat(250)] {
        assert!(is_valid_value_key(ok), "{ok:?} should be accepted");
    }
    for bad in [
        "",
        "a.b",
        "a/b",
        "a:b",
        "a;b",
        "a\\b",
        "a^b",
        "a`b",
        "é",
        "a\tb",
        "a\nb",
        "a\0b",
        &"k".repeat(251),
    ] {
        assert!(!is_valid_value_key(bad), "{bad:?} should be refused");
    }
}

#[test]
fn keeper_checkpoint_extension_bytes_are_pinned() {
    use spike_core::wire::keeper::{CheckpointRequest, CheckpointResponse, RollbackCheckpoint};
    let ask = CheckpointRequest::default();
    assert_eq!(&spike_core::wire::encode(&ask).unwrap()[..], b"{}");
    let cp = RollbackCheckpoint { counter: 42, mac: "ab".repeat(32) };
    let offer = CheckpointRequest { checkpoint: Some(cp.clone()) };
    let json = format!(r#"{{"checkpoint":{{"counter":42,"mac":"{}"}}}}"#, "ab".repeat(32));
    assert_eq!(&spike_core::wire::encode(&offer).unwrap()[..], json.as_bytes());
    let none: CheckpointResponse = spike_core::wire::decode(br#"{"checkpoint":null}"#).unwrap();
    assert_eq!(none, CheckpointResponse::default());
    let held = CheckpointResponse { checkpoint: Some(cp), err: None };
    let round: CheckpointResponse =
        spike_core::wire::decode(&spike_core::wire::encode(&held).unwrap()).unwrap();
    assert_eq!(round, held);
}
