//! The mTLS HTTP listener shared by Nexus and Keeper: TLS handshake by SPIFFE ID, then HTTP/1.1
//! or HTTP/2 to an axum router, with the verified peer ID attached to every request.
//!
//! Hardening: a handshake must finish within [`HANDSHAKE_TIMEOUT`]; request headers within the
//! configured header-read timeout; at most [`MAX_CONNECTIONS`] connections are served at once
//! (further ones wait in the kernel backlog rather than exhaust memory or descriptors).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use spiffe::SpiffeId;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::tls::peer_spiffe_id;

/// Time allowed for a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 4096;

/// Serves `listener` until `shutdown` completes, then lets in-flight requests finish (up to
/// `drain` long). `app` builds the router for one connection from its verified peer ID.
pub async fn serve_mtls<F>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    header_read_timeout: Duration,
    app: F,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) where
    F: Fn(SpiffeId) -> Router + Send + Sync + 'static,
{
    let acceptor = TlsAcceptor::from(tls);
    let app = Arc::new(app);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Duration::from_secs(30));
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
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
        let _ = socket.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %peer_addr, error = %e, "TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(peer = %peer_addr, "TLS handshake timed out");
                        return;
                    }
                };
            let peer = match peer_spiffe_id(&stream) {
                Ok(id) => id,
                Err(e) => {
                    tracing::debug!(peer = %peer_addr, error = %e, "no usable peer SPIFFE ID");
                    return;
                }
            };
            let service = TowerToHyperService::new(app(peer));
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(peer = %peer_addr, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after the drain period; closing them");
    }
}

/// Binds `addr`, naming it in the error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}; is the port in use?"))
    })
}
