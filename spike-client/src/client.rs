//! [`Spike`]: one mTLS connection pool to Nexus, typed calls, retries and clear errors.
//!
//! - **Identity**: the SVID comes from an [`IdentitySource`]; each TLS handshake uses the
//!   current SVID, so rotation needs no restart and open connections are not torn down.
//! - **Server authentication**: Nexus must present an SVID with the expected SPIFFE ID or one
//!   below it (`spiffe://<trust root>/spike/nexus[/...]` by default, SPIKE's role rule), never
//!   checked by DNS name.
//! - **Pooling**: one `reqwest` client per `Spike`, HTTP keep-alive; clone `Spike` freely.
//!   New connections resume the TLS 1.3 session of an earlier one when Nexus offers tickets
//!   (one session store per `Spike`, see [`crate::tls::resumption`]).
//! - **Retries**: only idempotent calls, only transient failures (connect errors, 429, 503),
//!   with jittered exponential backoff.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use spike_core::error::chain;
use spike_core::wire::{self, Route};

use crate::config;
use crate::error::{Error, Result};
use crate::identity::{IdentitySource, SvidChoice};
use crate::tls::IdMatcher;

/// Whether a call may be repeated safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Reads and other calls with no effect when repeated.
    Idempotent,
    /// Writes that must not be sent twice (put creates a version each time).
    Once,
}

/// Retry settings for idempotent calls.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in total (1 = no retry).
    pub attempts: u32,
    /// First backoff; doubles each time, with ±50 % jitter.
    pub base_delay: Duration,
    /// Largest backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        }
    }
}

/// A client of SPIKE Nexus. Cheap to clone; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct Spike {
    http: reqwest::Client,
    base: String,
    retry: RetryPolicy,
    source: IdentitySource,
    /// JWT mode: the bearer tokens sent instead of a client certificate.
    jwt: Option<std::sync::Arc<crate::jwt::JwtTokens>>,
}

/// Builds a [`Spike`]; every setting falls back to SPIKE's environment variables.
#[derive(Debug, Default)]
pub struct SpikeBuilder {
    socket: Option<String>,
    url: Option<String>,
    source: Option<IdentitySource>,
    nexus_id: Option<String>,
    svid_id: Option<String>,
    timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    svid_timeout: Option<Duration>,
    retry: Option<RetryPolicy>,
    max_idle_connections: Option<usize>,
    no_resumption: bool,
    jwt_audience: Option<String>,
}

impl SpikeBuilder {
    /// The Workload API socket (default: `SPIFFE_ENDPOINT_SOCKET`).
    pub fn socket(mut self, endpoint: impl Into<String>) -> Self {
        self.socket = Some(endpoint.into());
        self
    }

    /// Nexus's URL (default: `SPIKE_NEXUS_API_URL`, then `SPIKE_NEXUS_URL`).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Uses this identity source instead of the Workload API (files, in-memory, a shared one).
    pub fn identity(mut self, source: IdentitySource) -> Self {
        self.source = Some(source);
        self
    }

    /// The SPIFFE ID Nexus must present, or an ID below it (SPIKE's role rule; default:
    /// `spiffe://<td>/spike/nexus` or below, for each trust domain of `SPIKE_TRUST_ROOT_NEXUS`,
    /// else `SPIKE_TRUST_ROOT`).
    pub fn nexus_id(mut self, id: impl Into<String>) -> Self {
        self.nexus_id = Some(id.into());
        self
    }

    /// The SPIFFE ID of the SVID to present when the Workload API hands out several (default:
    /// `SPIKE_SVID_ID`, else the first). Ignored with [`SpikeBuilder::identity`].
    pub fn svid_id(mut self, id: impl Into<String>) -> Self {
        self.svid_id = Some(id.into());
        self
    }

    /// Limit for a whole request, including retries of one attempt's body.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Limit for connecting (TCP and TLS).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long to wait for the first SVID from the Workload API.
    pub fn svid_timeout(mut self, timeout: Duration) -> Self {
        self.svid_timeout = Some(timeout);
        self
    }

    /// Retry settings for idempotent calls.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Idle connections kept open for reuse (default: no limit, each closed after 90 s idle).
    /// 0 opens a new connection for every call, as SPIKE's Go SDK does, and speaks HTTP/1.1 on
    /// it (HTTP/2's connection setup buys nothing for one call).
    pub fn max_idle_connections(mut self, max: usize) -> Self {
        self.max_idle_connections = Some(max);
        self
    }

    /// Resumes TLS 1.3 sessions with Nexus (default: on), which makes a new connection about
    /// as cheap as the key exchange; see [`crate::tls::resumption`] for what stands in for the
    /// skipped certificate checks. Off, every connection runs a full mTLS handshake.
    pub fn session_resumption(mut self, on: bool) -> Self {
        self.no_resumption = !on;
        self
    }

    /// Authenticates with a JWT-SVID for `audience` instead of a client certificate, for
    /// Nexus's JWT listener (`SPIKE_NEXUS_JWT_TLS_PORT`; its audience is
    /// `SPIKE_NEXUS_JWT_AUDIENCE`, default `spike-nexus`). Tokens come from the Workload API
    /// and are renewed before they expire; Nexus is still authenticated by its X509-SVID. The
    /// URL then defaults to `SPIKE_NEXUS_JWT_API_URL`. A spike-rs extension: SPIKE's Nexus has
    /// no JWT listener.
    pub fn jwt_audience(mut self, audience: impl Into<String>) -> Self {
        self.jwt_audience = Some(audience.into());
        self
    }

    /// Connects to the identity source and prepares the connection pool.
    pub async fn build(self) -> Result<Spike> {
        let jwt = match &self.jwt_audience {
            Some(audience) if audience.trim().is_empty() => {
                return Err(Error::InvalidInput {
                    what: "JWT audience".into(),
                    reason: "it is empty; use Nexus's SPIKE_NEXUS_JWT_AUDIENCE (spike-nexus)"
                        .into(),
                });
            }
            Some(audience) => {
                let endpoint = config::workload_endpoint(self.socket.clone())?;
                Some(std::sync::Arc::new(crate::jwt::JwtTokens::new(endpoint, audience.clone())))
            }
            None => None,
        };
        let source = match self.source {
            Some(s) => s,
            None => {
                let endpoint = config::workload_endpoint(self.socket)?;
                let choice = match self.svid_id.or_else(|| config::env(config::ENV_SVID_ID)) {
                    None => SvidChoice::First,
                    Some(id) => SvidChoice::Id(crate::SpiffeId::new(&id).map_err(|e| {
                        Error::InvalidSpiffeId { value: id.clone(), reason: e.to_string() }
                    })?),
                };
                IdentitySource::workload_api_choosing(
                    &endpoint,
                    self.svid_timeout.unwrap_or(config::DEFAULT_SVID_TIMEOUT),
                    choice,
                )
                .await?
            }
        };
        let nexus = match self.nexus_id {
            Some(id) => vec![IdMatcher::OrBelow(crate::SpiffeId::new(&id).map_err(|e| {
                Error::InvalidSpiffeId { value: id.clone(), reason: e.to_string() }
            })?)],
            None => config::nexus_matchers_from_env()?,
        };
        let mut nexus = nexus.into_iter();
        let first = nexus.next().ok_or_else(|| Error::InvalidInput {
            what: "Nexus's SPIFFE ID".into(),
            reason: "no trust domain to expect Nexus in".into(),
        })?;
        // A connection that carries one call gains nothing from HTTP/2 multiplexing and would
        // pay its preface, SETTINGS exchange and connection task (issue 15).
        let alpn: Vec<Vec<u8>> = if self.max_idle_connections == Some(0) {
            vec![b"http/1.1".to_vec()]
        } else {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        };
        let mut tls = nexus
            .fold(crate::tls::mtls_client_matching(source.clone(), first), |b, m| {
                b.also_accept_matching(m)
            })
            .alpn_protocols(alpn)
            .session_resumption(!self.no_resumption);
        if jwt.is_some() {
            tls = tls.without_client_certificate();
        }
        let tls = tls.build()?;
        let mut http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(self.timeout.unwrap_or(config::DEFAULT_TIMEOUT))
            .connect_timeout(self.connect_timeout.unwrap_or(config::DEFAULT_CONNECT_TIMEOUT))
            .pool_idle_timeout(Duration::from_secs(90));
        if let Some(max) = self.max_idle_connections {
            http = http.pool_max_idle_per_host(max);
        }
        let http = http
            .tcp_nodelay(true)
            .no_proxy()
            .build()
            .map_err(|e| Error::InvalidInput { what: "HTTP client".into(), reason: chain(&e) })?;
        let base = match (self.url, &jwt) {
            (Some(url), _) => url,
            (None, Some(_)) => {
                config::env(config::ENV_NEXUS_JWT_API_URL).ok_or_else(|| Error::InvalidInput {
                    what: "Nexus's JWT listener URL".into(),
                    reason: format!(
                        "{} is not set; point it at the listener of SPIKE_NEXUS_JWT_TLS_PORT \
                         (`spike dev` writes it to its env file)",
                        config::ENV_NEXUS_JWT_API_URL
                    ),
                })?
            }
            (None, None) => config::nexus_url_from_env(),
        };
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("https://") {
            return Err(Error::InvalidInput {
                what: format!("Nexus URL {base:?}"),
                reason: "it must start with https:// (Nexus only speaks mTLS)".into(),
            });
        }
        Ok(Spike { http, base, retry: self.retry.unwrap_or_default(), source, jwt })
    }
}

/// A raw response: status and body.
pub(crate) struct RawResponse {
    pub status: u16,
    pub body: zeroize::Zeroizing<Vec<u8>>,
    pub retry_after: Option<Duration>,
}

impl Spike {
    /// A client configured from the environment: `SPIFFE_ENDPOINT_SOCKET`,
    /// `SPIKE_NEXUS_API_URL` (or `SPIKE_NEXUS_URL`) and `SPIKE_TRUST_ROOT`.
    pub async fn new() -> Result<Self> {
        Self::builder().build().await
    }

    /// A builder for explicit settings.
    pub fn builder() -> SpikeBuilder {
        SpikeBuilder::default()
    }

    /// The Nexus URL this client talks to.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The identity source whose SVID this client presents.
    pub fn identity(&self) -> &IdentitySource {
        &self.source
    }

    /// POSTs `body` to `route` and decodes SPIKE's response type, mapping failures to
    /// [`Error`] the way spike-sdk-go reads statuses.
    pub(crate) async fn call<Req, Resp>(
        &self,
        route: Route,
        body: &Req,
        idempotency: Idempotency,
    ) -> Result<Resp>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned + wire::WireResponse,
    {
        let bytes = wire::encode(body)
            .map_err(|e| Error::Protocol(format!("encoding the request failed: {e}")))?;
        let raw = self.send(route, &bytes, "application/json", idempotency).await?;
        if raw.status != 200 {
            return Err(status_error(raw.status, &raw.body, raw.retry_after));
        }
        let resp: Resp = wire::decode(&raw.body)
            .map_err(|e| Error::Protocol(format!("Nexus sent a body that does not decode: {e}")))?;
        if let Some(code) = resp.error_code() {
            return Err(Error::Server { status: 200, code: code.as_str().to_owned() });
        }
        Ok(resp)
    }

    /// Sends raw bytes, retrying idempotent calls on transient failures.
    pub(crate) async fn send(
        &self,
        route: Route,
        body: &[u8],
        content_type: &'static str,
        idempotency: Idempotency,
    ) -> Result<RawResponse> {
        let url = format!("{}{}", self.base, route.path_and_query());
        let attempts = match idempotency {
            Idempotency::Idempotent => self.retry.attempts.max(1),
            Idempotency::Once => 1,
        };
        let mut delay = self.retry.base_delay;
        let mut attempt = 1;
        loop {
            let result = self.send_once(&url, body, content_type).await;
            let transient = match &result {
                Err(Error::NexusUnreachable { .. }) => true,
                Ok(r) => r.status == 503 || r.status == 429,
                Err(_) => false,
            };
            if !transient || attempt >= attempts {
                return result;
            }
            let wait = match &result {
                Ok(RawResponse { retry_after: Some(after), .. }) => *after,
                _ => jitter(delay),
            };
            tracing::debug!(attempt, ?wait, route = route.path(), "transient failure; retrying");
            tokio::time::sleep(wait.min(self.retry.max_delay)).await;
            delay = (delay * 2).min(self.retry.max_delay);
            attempt += 1;
        }
    }

    async fn send_once(&self, url: &str, body: &[u8], content_type: &str) -> Result<RawResponse> {
        let mut request = self.http.post(url).header(reqwest::header::CONTENT_TYPE, content_type);
        if let Some(jwt) = &self.jwt {
            let token = jwt.bearer().await?;
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", *token))
                .map_err(|_| {
                Error::Protocol("the JWT-SVID is not a valid header value".into())
            })?;
            value.set_sensitive(true);
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let response = request
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| Error::NexusUnreachable { url: self.base.clone(), reason: chain(&e) })?;
        let status = response.status().as_u16();
        if status == 401
            && let Some(jwt) = &self.jwt
        {
            // A refused token (expired early, keys rotated) is not sent again.
            jwt.forget().await;
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Error::NexusUnreachable { url: self.base.clone(), reason: chain(&e) })?;
        Ok(RawResponse { status, body: zeroize::Zeroizing::new(bytes.to_vec()), retry_after })
    }
}

/// Maps a non-200 status to an error, as spike-sdk-go does (`net/post.go`), plus our 409/429.
pub(crate) fn status_error(status: u16, body: &[u8], retry_after: Option<Duration>) -> Error {
    let code = wire::decode::<wire::FallbackResponse>(body)
        .ok()
        .and_then(|r| r.err)
        .map(|c| c.as_str().to_owned())
        .unwrap_or_default();
    // spike-rs's Nexus says why it refused in `reason` (SPIKE's does not).
    #[derive(serde::Deserialize)]
    struct Reason {
        reason: Option<String>,
    }
    let reason = serde_json::from_slice::<Reason>(body).ok().and_then(|r| r.reason);
    match status {
        400 => Error::BadRequest(match (reason, code.is_empty()) {
            (Some(reason), _) => reason,
            (None, true) => "api_bad_request".into(),
            (None, false) => code,
        }),
        401 | 403 => Error::Forbidden,
        404 => Error::NotFound,
        409 => Error::Conflict,
        413 => Error::BadRequest("request body too large for this Nexus".into()),
        429 => Error::RateLimited { retry_after },
        503 => Error::NotReady,
        _ => Error::Server { status, code },
    }
}

fn jitter(delay: Duration) -> Duration {
    // ±50 % so a fleet of clients does not retry in lockstep.
    let factor = 0.5 + fastrand::f64();
    delay.mul_f64(factor)
}
