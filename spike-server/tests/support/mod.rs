//! Shared by the in-process router tests: one request to a Nexus or Keeper router as a given
//! SPIFFE ID, the way the mTLS listener hands an authenticated caller to the router.

// Each test binary that declares `mod support;` uses its own subset of these helpers.
#![allow(dead_code)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use spike_server::nexus::Caller;
use tower::ServiceExt;

/// Sends one request to `app` as `caller` (a SPIFFE ID) and returns the whole response.
pub async fn request_as(
    app: Router,
    caller: &str,
    method: &str,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Response {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    req.extensions_mut().insert(Caller(Arc::from(caller)));
    app.oneshot(req).await.unwrap()
}

/// POSTs `body` (JSON) to `uri` of `app` as `caller`: the status and the body's bytes.
pub async fn post_bytes_as(
    app: Router,
    caller: &str,
    uri: &str,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let resp = request_as(app, caller, "POST", uri, "application/json", body).await;
    let status = resp.status();
    (status, axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap().to_vec())
}

/// POSTs `body` (JSON) to `uri` of `app` as `caller`: the status and the body as text (bytes
/// that are not UTF-8 show as U+FFFD).
pub async fn post_as(app: Router, caller: &str, uri: &str, body: &str) -> (StatusCode, String) {
    let (status, bytes) = post_bytes_as(app, caller, uri, body.as_bytes().to_vec()).await;
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Certificate parameters of a leaf X509-SVID for `spiffe_id`, as SPIRE issues them: the ID as
/// the only URI SAN, not a CA, digital signature, client and server authentication. Callers
/// set the validity and sign.
pub fn leaf_svid_params(spiffe_id: &str) -> rcgen::CertificateParams {
    use rcgen::{DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType};
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "test leaf");
    params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().unwrap())];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params
}
