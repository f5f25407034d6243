//! The Keeper client Nexus and Bootstrap use: SPIKE's two Keeper routes over SPIFFE mTLS,
//! accepting only a server that presents `spiffe://<keeper trust root>/spike/keeper`.
//!
//! One pooled HTTP client serves every Keeper; each call has its own timeout, so a Keeper that
//! hangs costs one timeout, never a stuck caller. Errors name the Keeper's URL and what to do;
//! they never carry shard bytes.

use std::time::Duration;

use spike_client::identity::IdentitySource;
use spike_client::tls::IdMatcher;
use spike_core::error::chain;
use spike_core::secret::KeeperShare;
use spike_core::wire::keeper::*;
use spike_core::wire::{
    self, PATH_KEEPER_CHECKPOINT, PATH_KEEPER_CONTRIBUTE, PATH_KEEPER_SHARD, ShardBytes,
};

use super::KeeperError;

/// What a Keeper's `/readyz` says (a spike-rs extension; SPIKE's Go Keeper has no such route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeeperProbe {
    /// It holds a shard.
    Armed,
    /// It is up and holds no shard (it was restarted): send it one.
    Empty,
    /// It answered, but not in a way we understand (e.g. a SPIKE Go Keeper).
    Unknown,
}

/// A client of SPIKE Keepers.
#[derive(Debug, Clone)]
pub struct KeeperClient {
    http: reqwest::Client,
}

impl KeeperClient {
    /// A client presenting `source`'s SVID and accepting only Keepers whose SPIFFE ID one of
    /// `keepers` accepts (see [`super::keeper_matchers`]); every request gives up after
    /// `timeout`.
    pub fn new(
        source: IdentitySource,
        keepers: impl IntoIterator<Item = IdMatcher>,
        timeout: Duration,
    ) -> Result<Self, KeeperError> {
        let http = mtls_http_client(source, keepers, timeout)?;
        Ok(Self { http })
    }

    /// Sends this Keeper its shard (`POST /v1/store/contribute`).
    pub async fn contribute(&self, url: &str, share: &KeeperShare) -> Result<(), KeeperError> {
        let req = ShardContributeRequest { shard: Some(ShardBytes::from_keeper_share(share)) };
        let _: ShardContributeResponse = self.call(url, PATH_KEEPER_CONTRIBUTE, &req).await?;
        Ok(())
    }

    /// Posts `req` to `path` and decodes a 200 answer carrying no error code.
    async fn call<Req, Resp>(&self, url: &str, path: &str, req: &Req) -> Result<Resp, KeeperError>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned + wire::WireResponse,
    {
        let body = wire::encode(req).map_err(|e| KeeperError::Protocol {
            url: url.to_owned(),
            reason: format!("encoding the request failed: {e}"),
        })?;
        let (status, bytes) = self.post(url, path, body.to_vec()).await?;
        if status != 200 {
            return Err(status_error(url, status, &bytes));
        }
        let resp: Resp = wire::decode(&bytes)
            .map_err(|e| KeeperError::Protocol { url: url.to_owned(), reason: e.to_string() })?;
        match resp.error_code() {
            None => Ok(resp),
            Some(code) => Err(KeeperError::Rejected {
                url: url.to_owned(),
                status,
                code: code.as_str().to_owned(),
            }),
        }
    }

    /// Asks this Keeper for its shard (`POST /v1/store/shard`), which becomes share `index`
    /// (Keeper IDs are positional). `Ok(None)` means the Keeper is up but holds no shard.
    pub async fn shard(&self, url: &str, index: u8) -> Result<Option<KeeperShare>, KeeperError> {
        let (status, bytes) = self.post(url, PATH_KEEPER_SHARD, b"{}".to_vec()).await?;
        match status {
            200 => {
                let resp: ShardGetResponse = wire::decode(&bytes).map_err(|e| {
                    KeeperError::Protocol { url: url.to_owned(), reason: e.to_string() }
                })?;
                match (resp.err, resp.shard) {
                    (Some(code), _) => Err(KeeperError::Rejected {
                        url: url.to_owned(),
                        status,
                        code: code.as_str().to_owned(),
                    }),
                    (None, Some(shard)) if !shard.is_zero() => {
                        Ok(Some(shard.to_keeper_share(index)))
                    }
                    (None, _) => Ok(None),
                }
            }
            // SPIKE's Keeper answers 400 `api_bad_request` until a shard is contributed.
            400 => Ok(None),
            _ => Err(status_error(url, status, &bytes)),
        }
    }

    /// Offers this Keeper a rollback checkpoint (if `offer` is set) and returns the checkpoint it
    /// holds afterwards (`POST /v1/store/checkpoint`, a spike-rs extension). `Ok(None)`: the
    /// Keeper holds none.
    pub async fn checkpoint(
        &self,
        url: &str,
        offer: Option<RollbackCheckpoint>,
    ) -> Result<Option<RollbackCheckpoint>, KeeperError> {
        let req = CheckpointRequest { checkpoint: offer };
        let resp: CheckpointResponse = self.call(url, PATH_KEEPER_CHECKPOINT, &req).await?;
        Ok(resp.checkpoint)
    }

    /// Asks the Keeper whether it holds a shard (`GET /readyz`, a spike-rs extension that
    /// reveals nothing but that fact).
    pub async fn probe(&self, url: &str) -> Result<KeeperProbe, KeeperError> {
        let target = format!("{}/readyz", url.trim_end_matches('/'));
        let response = self.http.get(&target).send().await.map_err(|e| unreachable(url, &e))?;
        Ok(match response.status().as_u16() {
            200 => KeeperProbe::Armed,
            503 => KeeperProbe::Empty,
            _ => KeeperProbe::Unknown,
        })
    }

    async fn post(
        &self,
        url: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, zeroize::Zeroizing<Vec<u8>>), KeeperError> {
        let target = format!("{}{path}", url.trim_end_matches('/'));
        let response = self
            .http
            .post(&target)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| unreachable(url, &e))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| unreachable(url, &e))?;
        Ok((status, zeroize::Zeroizing::new(bytes.to_vec())))
    }
}

/// A pooled HTTP client that presents `source`'s SVID and accepts only a server whose SPIFFE ID
/// one of `servers` accepts (HTTP/2 or HTTP/1.1 by ALPN); every request gives up after
/// `timeout`.
pub(crate) fn mtls_http_client(
    source: IdentitySource,
    servers: impl IntoIterator<Item = IdMatcher>,
    timeout: Duration,
) -> Result<reqwest::Client, KeeperError> {
    let mut servers = servers.into_iter();
    let first = servers.next().ok_or_else(|| {
        KeeperError::Tls(
            "no server SPIFFE ID to accept (is a SPIKE_TRUST_ROOT* list empty?)".into(),
        )
    })?;
    let tls = servers
        .fold(spike_client::tls::mtls_client_matching(source, first), |b, m| {
            b.also_accept_matching(m)
        })
        .alpn_protocols([b"h2".to_vec(), b"http/1.1".to_vec()])
        .build()
        .map_err(|e| KeeperError::Tls(e.to_string()))?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .no_proxy()
        .build()
        .map_err(|e| KeeperError::Tls(format!("cannot build the HTTP client: {}", chain(&e))))
}

fn unreachable(url: &str, e: &reqwest::Error) -> KeeperError {
    KeeperError::Unreachable { url: url.to_owned(), reason: chain(e) }
}

fn status_error(url: &str, status: u16, body: &[u8]) -> KeeperError {
    if status == 401 || status == 403 {
        return KeeperError::Refused { url: url.to_owned(), status };
    }
    let code = wire::decode::<wire::FallbackResponse>(body)
        .ok()
        .and_then(|r| r.err)
        .map(|c| c.as_str().to_owned())
        .unwrap_or_default();
    KeeperError::Rejected { url: url.to_owned(), status, code }
}
