//! The node's HTTP API: a thin adapter over the [`NodeContext`]; nothing else in
//! the crate imports it but the node that serves it.
//!
//! The reference monitoring node's peer endpoints (`/health`, `/state`, `/downtime`,
//! `/aggregate_downtime`) keep its JSON shapes and status codes; `/ready`, the
//! replica's answers under `/v1/`, and `/metrics` are livenessd's own.
//!
//! The server is bounded: at most `max_connections` connections are served; beyond
//! that a small overflow pool answers only `/health` and `/ready` (and `503` to
//! anything else) and closes each connection after one answer; beyond that,
//! connections are closed at once. A connection that sends no complete request
//! head within `header_read_timeout_ms` — including a keep-alive connection left
//! idle — is closed, and so is one whose client takes nothing of its answer for
//! `write_timeout_ms` (a client that never reads cannot pin a slot). One client
//! (an IP address, an IPv6 /64) holds at most `max_connections_per_client` slots;
//! beyond that it is served like the overflow. Every request has a deadline, a body
//! limit and a rate limit.

mod api;
pub mod ratelimit;
pub mod status;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::{HttpConfig, RateLimitConfig};
use crate::http_server::ConnectionBounds;
use crate::metrics;
use crate::node::context::NodeContext;
use ratelimit::{Class, RateLimits};

/// Connections beyond `max_connections` that may still ask `/health` or `/ready`.
pub const OVERFLOW_CONNECTIONS: usize = 32;

/// `Retry-After` of a 503: the conditions behind it (a stale replica, a busy
/// target, the connection limit) pass within seconds, or are re-checked by then.
const UNAVAILABLE_RETRY_SECS: u64 = 5;

/// Error bodies longer than this are not rewritten (none of ours come close).
const MAX_ERROR_BODY: usize = 64 << 10;

/// How long an overflow connection may take to send its request head.
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_millis(500);

/// One error type for every handler: a status code and the reference node's
/// `{"detail": ...}` body. Internal causes are logged, not sent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    FailedDependency(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unavailable(String),
    /// A signed answer about history that is not settled yet.
    #[error("{detail}")]
    TooEarly {
        detail: String,
        settled_until: i64,
        log_time: i64,
        retry_after: u64,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::FailedDependency(_) => StatusCode::FAILED_DEPENDENCY,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::TooEarly { .. } => StatusCode::TOO_EARLY,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        match self {
            Error::Internal(cause) => {
                tracing::error!(cause = %cause, "request failed");
                (status, Json(json!({ "detail": "Internal server error" }))).into_response()
            }
            Error::TooEarly {
                detail,
                settled_until,
                log_time,
                retry_after,
            } => {
                let mut r = (
                    status,
                    Json(json!({ "detail": detail, "settled_until": settled_until, "log_time": log_time })),
                )
                    .into_response();
                r.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    HeaderValue::from(retry_after.max(1)),
                );
                r
            }
            Error::Unavailable(detail) => {
                // A passing condition (stale, busy, not yet a member): ask again soon.
                let mut r = (status, Json(json!({ "detail": detail }))).into_response();
                r.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    HeaderValue::from(UNAVAILABLE_RETRY_SECS),
                );
                r
            }
            other => (status, Json(json!({ "detail": other.to_string() }))).into_response(),
        }
    }
}

/// The router (no socket), so tests can call it directly.
pub fn app(ctx: NodeContext, cfg: &HttpConfig, limits: RateLimits) -> Router {
    // Rate limits and request metrics cover unknown routes too (as `unmatched`).
    api::routes(ctx.clone())
        .layer(middleware::from_fn_with_state(limits, rate_limit))
        .layer(middleware::from_fn(record))
        .layer(middleware::from_fn(pretty))
        .layer(axum::extract::DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(cfg.request_timeout_ms),
        ))
        // A bug in a handler answers 500; it never takes the connection or the node down.
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(middleware::from_fn(json_errors))
}

/// Every error answer is the reference node's `{"detail": ...}` JSON, also those
/// made outside the handlers (unknown route, wrong method, body too large, request
/// timeout, panic), which come with an empty or plain-text body.
async fn json_errors(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let status = resp.status();
    let plain = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_none_or(|t| t.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_ERROR_BODY)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let detail = match status {
        StatusCode::NOT_FOUND if text.is_empty() => format!("no such endpoint: {path}"),
        StatusCode::METHOD_NOT_ALLOWED if text.is_empty() => {
            format!("method not allowed on {path}")
        }
        StatusCode::REQUEST_TIMEOUT if text.is_empty() => {
            "the request took longer than http.request_timeout_ms".to_owned()
        }
        _ if text.is_empty() => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_owned(),
        _ => text,
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    let mut r = Json(json!({ "detail": detail })).into_response();
    *r.status_mut() = status;
    for (k, v) in parts.headers.iter() {
        if !r.headers().contains_key(k) {
            r.headers_mut().insert(k.clone(), v.clone());
        }
    }
    r
}

/// What an overflow connection may ask.
fn overflow_app(ctx: NodeContext) -> Router {
    api::ops_routes(ctx)
        .fallback(|| async {
            metrics::http_connection_rejected("overflow_request");
            Error::Unavailable(
                "connection limit reached: only /health and /ready are answered".into(),
            )
        })
        .route_layer(middleware::from_fn(record))
}

/// `?pretty` (or `pretty=1`): a JSON answer indented for reading.
async fn pretty(req: Request, next: Next) -> Response {
    let wanted = req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "pretty" || kv == "pretty=1" || kv == "pretty=true")
    });
    let resp = next.run(req).await;
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !wanted || !is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    // Pages are bounded (1 MiB of rows), so the answer is too.
    let Ok(bytes) = axum::body::to_bytes(body, 8 << 20).await else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "answer too large to indent",
        )
            .into_response();
    };
    let out = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v) => serde_json::to_vec_pretty(&v).map(|mut b| {
            b.push(b'\n');
            b
        }),
        Err(_) => Ok(bytes.to_vec()),
    };
    let mut resp = Response::from_parts(parts, axum::body::Body::from(out.unwrap_or_default()));
    resp.headers_mut()
        .remove(axum::http::header::CONTENT_LENGTH);
    resp
}

/// Counts every request by route and status, with its latency.
async fn record(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let resp = next.run(req).await;
    metrics::http_request(&route, resp.status().as_u16(), started.elapsed());
    resp
}

/// Refuses a request over its client's quota for the endpoint's class.
async fn rate_limit(
    axum::extract::State(limits): axum::extract::State<RateLimits>,
    req: Request,
    next: Next,
) -> Response {
    let class = Class::of(req.uri().path());
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = client {
        if let Err(wait) = limits.check(class, ip) {
            metrics::http_rate_limited(class.label());
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({ "detail": format!(
                    "rate limit of {} requests exceeded; retry in {secs} s", class.label()) })),
            )
                .into_response();
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
            return r;
        }
    }
    next.run(req).await
}

/// How many full-service connections each client holds.
#[derive(Clone, Default)]
struct ClientSlots(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One full-service connection of a client; released when dropped.
struct Share {
    slots: ClientSlots,
    client: IpAddr,
}

impl ClientSlots {
    fn held(&self, client: IpAddr) -> usize {
        let map = self.0.lock().expect("client slots lock");
        map.get(&client).copied().unwrap_or(0)
    }

    fn take(&self, client: IpAddr) -> Share {
        *self
            .0
            .lock()
            .expect("client slots lock")
            .entry(client)
            .or_default() += 1;
        Share {
            slots: self.clone(),
            client,
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut map = self.slots.0.lock().expect("client slots lock");
        if let Some(n) = map.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.client);
            }
        }
    }
}

/// The file-descriptor budget: raises the soft limit to the hard one and returns
/// how many connections fit beside what the node needs for itself.
fn connection_budget(configured: usize, reserve: usize) -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (lim.current, lim.maximum) {
        if cur < max {
            let _ = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(max),
                    maximum: Some(max),
                },
            );
        }
    }
    let Some(fds) = getrlimit(Resource::Nofile).current else {
        return configured;
    };
    let fit = (fds as usize)
        .saturating_sub(reserve + OVERFLOW_CONNECTIONS)
        .max(8);
    if fit < configured {
        tracing::warn!(
            max_connections = configured,
            fit,
            open_files_limit = fds,
            "http.max_connections lowered to fit the open-files limit"
        );
    }
    configured.min(fit)
}

/// Serves the API on `listener` until `stop`, then drains connections (at most the
/// request timeout).
pub async fn serve(
    listener: TcpListener,
    ctx: NodeContext,
    cfg: HttpConfig,
    rate_limit: RateLimitConfig,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let limits = RateLimits::new(&rate_limit);
    {
        // The monitoring nodes' addresses get their larger quotas; re-resolved
        // every minute (DNS names move) and after a network change, stale client
        // state forgotten.
        let limits = limits.clone();
        let stop = stop.clone();
        let network = ctx.network.clone();
        tokio::spawn(async move {
            let mut versions = network.subscribe();
            loop {
                let peer_urls: Vec<String> = network
                    .monitors()
                    .nodes()
                    .iter()
                    .map(|m| m.url.clone())
                    .collect();
                limits.set_peers(ratelimit::resolve_peers(&peer_urls).await);
                limits.housekeeping();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                    _ = versions.changed() => {}
                }
            }
        });
    }
    let clients = ClientSlots::default();
    let peers = limits.clone();
    let full = app(ctx.clone(), &cfg, limits);
    let overflow = overflow_app(ctx);
    let max = connection_budget(cfg.max_connections, cfg.reserved_fds);
    let slots = Arc::new(Semaphore::new(max));
    let spare = Arc::new(Semaphore::new(OVERFLOW_CONNECTIONS));
    let header_timeout = Duration::from_millis(cfg.header_read_timeout_ms);
    let write_timeout = Duration::from_millis(cfg.write_timeout_ms);
    let graceful = GracefulShutdown::new();
    let mut accept_errors = 0u64;
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => { accept_errors = 0; x }
                Err(e) => {
                    // Out of file descriptors, say: wait a little, never spin.
                    accept_errors += 1;
                    if accept_errors == 1 || accept_errors.is_power_of_two() {
                        tracing::warn!(error = %e, count = accept_errors, "accepting a connection failed");
                    }
                    metrics::http_connection_rejected("accept_error");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let client = ratelimit::client_key(peer.ip());
        let over_share =
            !peers.is_peer(client) && clients.held(client) >= cfg.max_connections_per_client;
        let slot = if over_share {
            None
        } else {
            slots.clone().try_acquire_owned().ok()
        };
        let (router, permit, keep_alive, timeout, share) = if let Some(p) = slot {
            let share = clients.take(client);
            (full.clone(), p, true, header_timeout, Some(share))
        } else if let Ok(p) = spare.clone().try_acquire_owned() {
            metrics::http_connection_rejected(if over_share { "per_client" } else { "overflow" });
            (overflow.clone(), p, false, OVERFLOW_HEADER_TIMEOUT, None)
        } else {
            metrics::http_connection_rejected(if over_share { "per_client" } else { "full" });
            drop(stream);
            continue;
        };
        let conn = crate::http_server::serve_connection(
            stream,
            peer,
            router,
            ConnectionBounds {
                header_timeout: timeout,
                write_timeout,
                keep_alive,
            },
            &graceful,
        );
        metrics::http_connection_opened();
        tokio::spawn(async move {
            let _ = conn.await;
            metrics::http_connection_closed();
            drop(share);
            drop(permit);
        });
    }
    drop(listener);
    let grace = Duration::from_millis(cfg.request_timeout_ms.min(10_000));
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open at shutdown");
    }
    Ok(())
}
