//! What a handler hands back: status, body, and the facts the audit line needs.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use spike_core::wire::{self, ErrorCode, WireResponse};
use zeroize::Zeroizing;

use crate::audit::Decision;

/// Content type of JSON responses.
pub const JSON: &str = "application/json";
/// Content type of streaming cipher responses.
pub const OCTET_STREAM: &str = "application/octet-stream";
/// Content type of plain-text errors (SPIKE's streaming cipher errors).
pub const TEXT: &str = "text/plain; charset=utf-8";

/// A handler's answer. The body is zeroized when dropped (it may hold secret values).
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response body.
    pub body: Zeroizing<Vec<u8>>,
    /// Response content type.
    pub content_type: &'static str,
    /// SPIKE error code, for the audit line.
    pub code: Option<ErrorCode>,
    /// Authorisation decision, for the audit line.
    pub decision: Decision,
    /// Secret path or policy name concerned, for the audit line.
    pub path: Option<String>,
    /// Seconds to wait before retrying (429 only).
    pub retry_after: Option<u64>,
}

/// The extension field of a 400 body that says why (see [`Reply::bad_request_because`]).
pub const REASON: &str = "reason";

impl Reply {
    /// 200 with `body` as JSON.
    pub fn ok<T: Serialize>(body: &T) -> Self {
        match wire::encode(body) {
            Ok(bytes) => Self::raw(200, bytes, JSON),
            // Wire types are plain structs of strings, numbers and maps: encoding cannot fail.
            Err(_) => Self::internal::<wire::FallbackResponse>(),
        }
    }

    /// A body given as bytes.
    pub fn raw(status: u16, body: Zeroizing<Vec<u8>>, content_type: &'static str) -> Self {
        Self {
            status,
            body,
            content_type,
            code: None,
            decision: Decision::Allow,
            path: None,
            retry_after: None,
        }
    }

    /// The failure SPIKE sends for `code`: its status, and route `T`'s zero-valued body with
    /// the wire code in `err`.
    pub fn fail<T: WireResponse + Serialize>(code: ErrorCode) -> Self {
        let status = code.http_status();
        let body = wire::encode(&T::error(code.wire_code())).unwrap_or_default();
        Self { code: Some(code), ..Self::raw(status, body, JSON) }
    }

    /// A failure with an explicit status and code (spike-rs extensions such as 409 and 429).
    pub fn status_with_code<T: WireResponse + Serialize>(status: u16, code: ErrorCode) -> Self {
        let body = wire::encode(&T::error(code.clone())).unwrap_or_default();
        Self { code: Some(code), ..Self::raw(status, body, JSON) }
    }

    /// 400 `api_bad_request`.
    pub fn bad_request<T: WireResponse + Serialize>() -> Self {
        Self::fail::<T>(ErrorCode::ApiBadRequest)
    }

    /// 400 `api_bad_request` whose body also says why, in a `reason` field (a spike-rs
    /// extension; SPIKE's SDK ignores fields it does not know). `reason` names the field and
    /// the rule; it must never hold a secret value.
    pub fn bad_request_because<T: WireResponse + Serialize>(reason: impl Into<String>) -> Self {
        let mut reply = Self::bad_request::<T>();
        let with_reason =
            serde_json::from_slice::<serde_json::Value>(&reply.body).ok().and_then(|mut body| {
                body.as_object_mut()?.insert(REASON.into(), reason.into().into());
                wire::encode(&body).ok()
            });
        if let Some(body) = with_reason {
            reply.body = body;
        }
        reply
    }

    /// 401 `access_unauthorized`, recorded as a denial. Says nothing about whether the
    /// object exists.
    pub fn denied<T: WireResponse + Serialize>() -> Self {
        Self { decision: Decision::Deny, ..Self::fail::<T>(ErrorCode::AccessUnauthorized) }
    }

    /// 404 `api_not_found`.
    pub fn not_found<T: WireResponse + Serialize>() -> Self {
        Self::fail::<T>(ErrorCode::ApiNotFound)
    }

    /// 500 `api_internal_error`.
    pub fn internal<T: WireResponse + Serialize>() -> Self {
        Self::fail::<T>(ErrorCode::ApiInternal)
    }

    /// 507 `store_full` (a spike-rs extension): the store or the audit log has no space left,
    /// so the request is not acknowledged; the operator must free disk space.
    pub fn out_of_space<T: WireResponse + Serialize>() -> Self {
        Self::status_with_code::<T>(507, ErrorCode::Other(wire::STORE_FULL.into()))
    }

    /// 503 `state_not_ready`.
    pub fn not_ready<T: WireResponse + Serialize>() -> Self {
        Self::fail::<T>(ErrorCode::StateNotReady)
    }

    /// A plain-text failure (SPIKE's streaming cipher mode): body is the code and a newline.
    pub fn text(status: u16, code: ErrorCode) -> Self {
        let body = Zeroizing::new(format!("{}\n", code.as_str()).into_bytes());
        Self { code: Some(code), ..Self::raw(status, body, TEXT) }
    }

    /// Records which path or name the request concerned.
    pub fn at(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// The HTTP response, with SPIKE's no-cache headers (sdk `net/respond.go`) on every answer;
    /// shared by Nexus and Keeper so both send the same headers.
    pub fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = Response::new(Body::from(self.body.to_vec()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store, no-cache, must-revalidate, private"),
        );
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        headers.insert(header::EXPIRES, HeaderValue::from_static("0"));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
