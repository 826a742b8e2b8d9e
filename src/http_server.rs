//! Serving one accepted connection with the bounds every livenessd server applies
//! (the node's API and the dev sequencer): HTTP/1.1, a deadline for each request
//! head — also for the next one on a kept-alive connection, so an idle connection
//! is closed — and a write-stall timeout, so a client that takes nothing of an
//! answer (its buffers full: it pipelines requests and never reads) is dropped
//! rather than holding the connection forever.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tower::ServiceExt;

/// The bounds of one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionBounds {
    /// A request head must be complete this long after the connection opened or
    /// after the previous answer.
    pub header_timeout: Duration,
    /// Writing that makes no progress this long fails the connection.
    pub write_timeout: Duration,
    /// Whether more than one request may be served.
    pub keep_alive: bool,
}

/// Serves `router` on `stream` (from `peer`, given to handlers as
/// [`ConnectInfo`]) until the connection ends; watched by `graceful` for
/// shutdown.
pub fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    bounds: ConnectionBounds,
    graceful: &GracefulShutdown,
) -> impl Future<Output = ()> + Send + 'static {
    let svc = router.map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    });
    let _ = stream.set_nodelay(true);
    let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
    stream.set_write_timeout(Some(bounds.write_timeout));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.header_timeout)
        .keep_alive(bounds.keep_alive)
        .serve_connection(
            TokioIo::new(Box::pin(stream)),
            TowerToHyperService::new(svc),
        );
    let conn = graceful.watch(conn);
    async move {
        let _ = conn.await;
    }
}
