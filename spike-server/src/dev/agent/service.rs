//! The SPIFFE Workload API service (SPIFFE Workload API spec §5–6) over the agent's state:
//! X509-SVIDs and bundles, and JWT-SVIDs, their bundles and their validation.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use futures::Stream;
use spiffe::SpiffeId;
use tokio::sync::watch;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};

use super::Shared;
use super::proto::spiffe_workload_api_server::SpiffeWorkloadApi;
use super::proto::{
    JwtBundlesRequest, JwtBundlesResponse, Jwtsvid, JwtsvidRequest, JwtsvidResponse,
    ValidateJwtsvidRequest, ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse,
    X509svid, X509svidRequest, X509svidResponse,
};

/// The metadata header every Workload API call must carry (Workload API spec §5.2): it proves
/// the call came from a local client rather than a browser-style proxy.
pub(super) const SECURITY_HEADER: &str = "workload.spiffe.io";

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// How a socket decides who the caller is.
#[derive(Debug, Clone)]
pub(super) enum Attestor {
    /// Every caller of this socket is this entry (the socket's file permissions guard it).
    Entry(usize),
    /// Callers are matched against entries' `unix:uid:N` selectors via SO_PEERCRED.
    PeerUid,
}

#[derive(Clone)]
pub(super) struct WorkloadApi {
    pub(super) shared: Arc<Shared>,
    pub(super) attestor: Attestor,
}

impl WorkloadApi {
    fn check_header<T>(request: &Request<T>) -> Result<(), Status> {
        match request.metadata().get(SECURITY_HEADER).map(|v| v.to_str()) {
            Some(Ok("true")) => Ok(()),
            _ => Err(Status::invalid_argument(
                "security header missing from request: set \"workload.spiffe.io: true\"",
            )),
        }
    }

    /// The indices of the entries the caller is entitled to, in registration order.
    fn attest<T>(&self, request: &Request<T>) -> Result<Vec<usize>, Status> {
        Self::check_header(request)?;
        match &self.attestor {
            Attestor::Entry(index) => Ok(vec![*index]),
            Attestor::PeerUid => {
                let uid = request
                    .extensions()
                    .get::<UdsConnectInfo>()
                    .and_then(|info| info.peer_cred)
                    .map(|cred| cred.uid())
                    .ok_or_else(|| {
                        Status::permission_denied("no registration entry: caller's uid is unknown")
                    })?;
                let matched: Vec<usize> = self
                    .shared
                    .entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.matches_uid(uid))
                    .map(|(i, _)| i)
                    .collect();
                if matched.is_empty() {
                    tracing::debug!(uid, "Workload API caller matches no registration entry");
                    return Err(Status::permission_denied(format!(
                        "no registration entry matches this caller (unix:uid:{uid})"
                    )));
                }
                Ok(matched)
            }
        }
    }

    fn x509_response(&self, entries: &[usize], state: &super::Snapshot) -> X509svidResponse {
        let bundle = self.shared.ca.cert_der().to_vec();
        let svids = entries
            .iter()
            .filter_map(|&i| state.svids.get(i))
            .map(|issued| X509svid {
                spiffe_id: issued.spiffe_id.to_string(),
                x509_svid: issued.cert_der.clone(),
                x509_svid_key: issued.key_der.to_vec(),
                bundle: bundle.clone(),
                hint: String::new(),
            })
            .collect();
        X509svidResponse { svids, crl: Vec::new(), federated_bundles: HashMap::new() }
    }
}

impl WorkloadApi {
    /// A response stream of one message made from `source`'s current value, then one more each
    /// time its `generation` changes; it ends when the agent shuts down or `source`'s sender is
    /// gone (or when the client hangs up and drops it).
    fn on_every_generation<S, T>(
        &self,
        source: watch::Receiver<Arc<S>>,
        generation: fn(&S) -> u64,
        message: impl Fn(&S) -> T + Clone + Send + 'static,
    ) -> ResponseStream<T>
    where
        S: Send + Sync + 'static,
        T: Send + 'static,
    {
        let shutdown = self.shared.shutdown.clone();
        Box::pin(futures::stream::unfold(
            (source, shutdown, None::<u64>),
            move |(mut source, mut shutdown, sent)| {
                let message = message.clone();
                async move {
                    loop {
                        let current = Arc::clone(&source.borrow_and_update());
                        if sent != Some(generation(&current)) {
                            let next = (source, shutdown, Some(generation(&current)));
                            return Some((Ok(message(&current)), next));
                        }
                        tokio::select! {
                            changed = source.changed() => if changed.is_err() { return None },
                            () = until_shutdown(&mut shutdown) => return None,
                        }
                    }
                }
            },
        ))
    }
}

/// Ends when the agent shuts down, so graceful shutdown is not held up by open streams.
async fn until_shutdown(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which is also a shutdown.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadApi {
    type FetchX509SVIDStream = ResponseStream<X509svidResponse>;
    type FetchX509BundlesStream = ResponseStream<X509BundlesResponse>;
    type FetchJWTBundlesStream = ResponseStream<JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let entries = self.attest(&request)?;
        let this = self.clone();
        // One message now, then one per rotation, until the client hangs up or we stop.
        Ok(Response::new(self.on_every_generation(
            self.shared.state.clone(),
            |snapshot| snapshot.generation,
            move |snapshot| this.x509_response(&entries, snapshot),
        )))
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        self.attest(&request)?;
        let key = self.shared.trust_domain.id_string();
        let message = X509BundlesResponse {
            crl: Vec::new(),
            bundles: HashMap::from([(key, self.shared.ca.cert_der().to_vec())]),
        };
        let mut shutdown = self.shared.shutdown.clone();
        // The dev CA never changes while the agent runs: one message, then hold the stream
        // open (as the spec's clients expect) until shutdown.
        let first = futures::stream::once(async move { Ok(message) });
        let rest = futures::stream::once(async move {
            until_shutdown(&mut shutdown).await;
        })
        .filter_map(|()| async { None });
        Ok(Response::new(Box::pin(futures::StreamExt::chain(first, rest))))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        Self::check_header(&request)?;
        let audience = &request.get_ref().audience;
        if audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if audience.iter().any(String::is_empty) {
            return Err(Status::invalid_argument("an audience must not be empty"));
        }
        let wanted = match request.get_ref().spiffe_id.as_str() {
            "" => None,
            id => Some(SpiffeId::new(id).map_err(|e| {
                Status::invalid_argument(format!("spiffe_id {id:?} is not a SPIFFE ID: {e}"))
            })?),
        };
        let entries = self.attest(&request)?;
        // Like SPIRE: one JWT-SVID per identity the caller is entitled to, or only the one
        // asked for, which the caller must be entitled to.
        let ids: Vec<&SpiffeId> = entries
            .iter()
            .filter_map(|&i| self.shared.entries.get(i))
            .map(|e| e.spiffe_id())
            .filter(|id| wanted.as_ref().is_none_or(|w| w == *id))
            .collect();
        if ids.is_empty() {
            // SPIRE's wording, which clients (the `spiffe` crate) recognise.
            return Err(Status::permission_denied(format!(
                "no identity issued: this caller is not entitled to {}",
                wanted.as_ref().map(ToString::to_string).unwrap_or_default()
            )));
        }
        let keys = Arc::clone(&self.shared.jwt.borrow());
        let now = SystemTime::now();
        let svids = ids
            .into_iter()
            .map(|id| {
                let svid = keys.mint(id, audience, now, self.shared.jwt_svid_ttl).map_err(|e| {
                    tracing::error!(error = %e, "could not mint a JWT-SVID");
                    Status::internal(e.to_string())
                })?;
                Ok(Jwtsvid { spiffe_id: id.to_string(), svid, hint: String::new() })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        tracing::debug!(svids = svids.len(), key_generation = keys.generation, "issued JWT-SVIDs");
        Ok(Response::new(JwtsvidResponse { svids }))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        self.attest(&request)?;
        // One message now, then one per key change (rotation, a retired key leaving), until
        // the client hangs up or we stop.
        Ok(Response::new(self.on_every_generation(
            self.shared.jwt.clone(),
            |keys| keys.generation,
            |keys| JwtBundlesResponse {
                bundles: HashMap::from([(keys.trust_domain().id_string(), keys.jwks())]),
            },
        )))
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        Self::check_header(&request)?;
        let ValidateJwtsvidRequest { audience, svid } = request.get_ref();
        if audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if svid.is_empty() {
            return Err(Status::invalid_argument("svid must be specified"));
        }
        self.attest(&request)?;
        let keys = Arc::clone(&self.shared.jwt.borrow());
        // The reason never quotes the token (nor is the token logged).
        let validated = keys.validate(svid, audience, SystemTime::now()).map_err(|e| {
            tracing::debug!(reason = e.0, "refused a JWT-SVID");
            Status::invalid_argument(e.to_string())
        })?;
        Ok(Response::new(ValidateJwtsvidResponse {
            spiffe_id: validated.spiffe_id.to_string(),
            claims: Some(super::jwt::to_struct(validated.claims)),
        }))
    }
}

use futures::StreamExt as _;
