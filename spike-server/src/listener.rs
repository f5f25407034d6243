//! The mTLS HTTP listener shared by Nexus and Keeper: TLS handshake by SPIFFE ID, then HTTP/1.1
//! or HTTP/2 to an axum router, with the verified peer ID attached to every request.
//!
//! TLS sessions may be resumed (issue 15): the caller's ID is then read from the chain restored
//! from the ticket, after [`crate::tls::peer_spiffe_id`] has checked it is still valid; see
//! [`crate::tls::resumption`].
//!
//! Connection lifecycle (issue 13; limits in [`ConnectionLimits`], bookkeeping in
//! [`crate::connections`]): a handshake must finish within the handshake timeout; request
//! headers within the header-read timeout and the head size cap; a whole request body within
//! the body-read timeout (the body then fails with [`BodyReadTimeout`]); a connection idle past
//! the idle timeout is closed; at the global cap the least recently used idle connection is
//! closed to admit a new one; each SPIFFE ID may hold only so many connections. Closing is
//! always graceful, so a request in flight is never cut.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use hyper::Request;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use spiffe::SpiffeId;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::connections::Registration;
pub use crate::connections::{ConnectionLimits, Connections};
use crate::tls::{is_resumed, peer_spiffe_id};

/// Time allowed for a TLS handshake by default.
pub const HANDSHAKE_TIMEOUT: Duration = crate::connections::DEFAULT_HANDSHAKE_TIMEOUT;
/// Connections served at once by default.
pub const MAX_CONNECTIONS: usize = crate::connections::DEFAULT_MAX_CONNECTIONS;

/// A request body was not sent in full within the body-read timeout.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "the request body was not sent within {0:?}; send it at once, or raise the body-read timeout"
)]
pub struct BodyReadTimeout(pub Duration);

/// True when `error` (or an error it wraps) is a [`BodyReadTimeout`].
pub fn is_body_read_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<BodyReadTimeout>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// A bound TCP listener with what serving it needs: its TLS config, the connection table
/// (limits and counters; share it with `/metrics`) and how long in-flight requests may finish
/// after shutdown. Serve it with [`TlsListener::serve_mtls`] or [`TlsListener::serve_bearer`].
#[derive(Debug)]
pub struct TlsListener {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    connections: Arc<Connections>,
    drain: Duration,
}

impl TlsListener {
    /// Bundles a bound `listener` with its TLS config, connection table and drain period.
    pub fn new(
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        connections: Arc<Connections>,
        drain: Duration,
    ) -> Self {
        Self { listener, tls, connections, drain }
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish (up to the drain
    /// period). `app` builds the router for one connection from its verified peer ID.
    pub async fn serve_mtls<F>(self, app: F, shutdown: impl Future<Output = ()>)
    where
        F: Fn(SpiffeId) -> Router + Send + Sync + 'static,
    {
        // Certificate mode always has a peer ID; the empty router is never reached.
        let app = move |peer: Option<SpiffeId>| peer.map_or_else(Router::new, &app);
        self.serve(PeerAuth::Certificate, app, shutdown).await;
    }

    /// Like [`TlsListener::serve_mtls`] for a TLS config that asks for no client certificate
    /// (the JWT-SVID listener): callers authenticate per request (`Authorization: Bearer`),
    /// which `app`'s router checks. Connections are counted per client IP address for the
    /// per-caller cap.
    pub async fn serve_bearer<F>(self, app: F, shutdown: impl Future<Output = ()>)
    where
        F: Fn() -> Router + Send + Sync + 'static,
    {
        self.serve(PeerAuth::Bearer, move |_: Option<SpiffeId>| app(), shutdown).await;
    }

    /// The accept loop both modes share.
    async fn serve<F>(self, auth: PeerAuth, app: F, shutdown: impl Future<Output = ()>)
    where
        F: Fn(Option<SpiffeId>) -> Router + Send + Sync + 'static,
    {
        let Self { listener, tls, connections, drain } = self;
        let limits = *connections.limits();
        let acceptor = TlsAcceptor::from(tls);
        let app = Arc::new(app);
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // hyper's floor is 8 KiB; a longer head is answered 431 before it is parsed.
            .max_buf_size(limits.max_head_bytes.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .max_header_list_size(u32::try_from(limits.max_head_bytes).unwrap_or(u32::MAX));
        let builder = Arc::new(builder);
        tokio::pin!(shutdown);
        loop {
            let (socket, peer_addr) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // At the cap this closes the least recently used idle connection, or waits for one to
            // close while every connection is busy (further sockets wait in the kernel backlog).
            let registration = tokio::select! {
                _ = &mut shutdown => break,
                r = connections.admit() => r,
            };
            let _ = socket.set_nodelay(true);
            let task = ConnectionTask {
                registration,
                connections: connections.clone(),
                acceptor: acceptor.clone(),
                builder: builder.clone(),
                limits,
                auth,
            };
            let app = app.clone();
            tokio::spawn(task.run(socket, peer_addr, move |peer| app(peer)));
        }
        drop(listener);
        connections.close_all();
        if tokio::time::timeout(drain, connections.closed()).await.is_err() {
            tracing::warn!("connections still open after the drain period; closing them");
        }
    }
}

/// How a listener learns who its peers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerAuth {
    /// From the client's X509-SVID at the handshake (mTLS).
    Certificate,
    /// Per request, from a bearer token; no client certificate.
    Bearer,
}

/// One accepted connection, from handshake to close.
struct ConnectionTask {
    registration: Registration,
    connections: Arc<Connections>,
    acceptor: TlsAcceptor,
    builder: Arc<Builder<TokioExecutor>>,
    limits: ConnectionLimits,
    auth: PeerAuth,
}

impl ConnectionTask {
    async fn run(
        self,
        socket: TcpStream,
        peer_addr: SocketAddr,
        app: impl FnOnce(Option<SpiffeId>) -> Router,
    ) {
        let handshake = tokio::select! {
            _ = self.registration.connection().close_requested() => return,
            h = tokio::time::timeout(self.limits.handshake_timeout, self.acceptor.accept(socket)) => h,
        };
        let stream = match handshake {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                self.connections.count_handshake_refused();
                tracing::debug!(peer = %peer_addr, error = %e, "TLS handshake refused");
                return;
            }
            Err(_) => {
                self.connections.count_handshake_refused();
                tracing::debug!(peer = %peer_addr, "TLS handshake timed out");
                return;
            }
        };
        // Full or resumed handshake alike: the ID comes from the peer chain rustls holds, and a
        // resumed session whose restored chain has expired is refused here (crate::tls).
        let peer = match self.auth {
            PeerAuth::Certificate => match peer_spiffe_id(&stream) {
                Ok(id) => Some(id),
                Err(e) => {
                    self.connections.count_handshake_refused();
                    tracing::debug!(peer = %peer_addr, error = %e, "no usable peer SPIFFE ID");
                    return;
                }
            },
            PeerAuth::Bearer => None,
        };
        if is_resumed(stream.get_ref().1) {
            self.connections.count_tls_resumed();
        }
        let holder = match &peer {
            Some(id) => id.to_string(),
            None => format!("bearer@{}", peer_addr.ip()),
        };
        if let Err(at_cap) = self.registration.identify(Arc::from(holder)) {
            tracing::debug!(
                peer = %peer_addr,
                caller = %at_cap.caller,
                cap = at_cap.cap,
                "connection refused: the caller holds its cap of busy connections"
            );
            return;
        }
        let registration = Arc::new(self.registration);
        let service = ConnectionService {
            router: app(peer),
            registration: registration.clone(),
            body_read_timeout: self.limits.body_read_timeout,
        };
        let conn = self.builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        loop {
            let idle_deadline = registration
                .idle_deadline()
                .unwrap_or_else(|| std::time::Instant::now() + self.limits.idle_timeout);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(peer = %peer_addr, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = registration.connection().close_requested() => break,
                _ = tokio::time::sleep_until(Instant::from_std(idle_deadline)) => {
                    if registration.expire_if_idle() {
                        break;
                    }
                }
            }
        }
        // Graceful: HTTP/1.1 closes once the current request (if any) is answered, HTTP/2 sends
        // GOAWAY and lets open streams finish.
        conn.as_mut().graceful_shutdown();
        let bound = self.limits.body_read_timeout + self.limits.idle_timeout;
        if tokio::time::timeout(bound, conn.as_mut()).await.is_err() {
            tracing::debug!(peer = %peer_addr, "connection still busy after close was asked; dropping it");
        }
    }
}

/// The per-connection service: marks requests in flight and bounds body reads.
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    registration: Arc<Registration>,
    body_read_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.registration.begin_request();
        let timeout = self.body_read_timeout;
        let request = request.map(|body| Body::new(TimedBody::new(body, timeout)));
        // A Router is always ready (axum docs), so calling without poll_ready is fine.
        let mut router = self.router.clone();
        let response = router.call(request);
        Box::pin(async move {
            let response = response.await;
            drop(in_flight);
            response
        })
    }
}

/// A request body that fails with [`BodyReadTimeout`] if it is not all sent in time.
struct TimedBody {
    inner: Incoming,
    deadline: std::time::Instant,
    timeout: Duration,
    /// Armed only when the body is not already buffered (most are).
    sleep: Option<Pin<Box<Sleep>>>,
}

impl TimedBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self { inner, deadline: std::time::Instant::now() + timeout, timeout, sleep: None }
    }
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|r| r.map_err(Into::into))),
            Poll::Pending => {
                let deadline = Instant::from_std(this.deadline);
                let sleep =
                    this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyReadTimeout(this.timeout).into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Binds `addr`, naming it in the error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}; is the port in use?"))
    })
}
