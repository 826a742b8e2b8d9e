//! The node's HTTP API: the reference monitoring node's peer endpoints
//! (`/health`, `/state`, `/downtime`, `/aggregate_downtime`) with its JSON shapes and
//! status codes, plus `/ready`, the replica's answers under `/v1/`, and `/metrics`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use crate::answers::{AnswerError, Answers};
use crate::crypto::bls::Signature;
use crate::events::{downtime_message, MonitorSet};
use crate::metrics;
use crate::prober::{now_secs, Prober};
use crate::signer::{DowntimeAnswer, Signer};
use crate::store::node::ReplicaStore;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub node_id: Arc<str>,
    pub monitors: Arc<MonitorSet>,
    pub prober: Prober,
    pub signer: Arc<Signer>,
    pub answers: Answers,
    pub store: ReplicaStore,
    /// Set while the replica is at the sequencer's head.
    pub caught_up: Arc<AtomicBool>,
    /// Client for calls to other monitoring nodes.
    pub peers: reqwest::Client,
    pub peer_timeout: Duration,
    /// Bounds the fresh probes `/state` may run at once: requests are cheap to
    /// send, probes are not.
    pub state_probes: Arc<tokio::sync::Semaphore>,
}

/// How many `/state` probes may run at once; more are answered 503.
pub const MAX_CONCURRENT_STATE_PROBES: usize = 64;

/// The largest answer read from another monitoring node.
const MAX_PEER_ANSWER_BYTES: usize = 64 << 10;

/// Reads a peer's JSON answer, refusing bodies over [`MAX_PEER_ANSWER_BYTES`].
pub(crate) async fn peer_json<T: serde::de::DeserializeOwned>(
    mut resp: reqwest::Response,
) -> Option<T> {
    if !resp.status().is_success()
        || resp
            .content_length()
            .is_some_and(|l| l as usize > MAX_PEER_ANSWER_BYTES)
    {
        return None;
    }
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        if body.len() + chunk.len() > MAX_PEER_ANSWER_BYTES {
            metrics::inc("peer_answers_rejected_total", &[("reason", "too_large")]);
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).ok()
}

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
    Unavailable(String),
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
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let detail = match &self {
            Error::Internal(cause) => {
                tracing::error!(cause = %cause, "request failed");
                metrics::inc("http_errors_total", &[("kind", "internal")]);
                "Internal server error".to_owned()
            }
            other => {
                metrics::inc("http_errors_total", &[("status", status.as_str())]);
                other.to_string()
            }
        };
        (status, Json(json!({ "detail": detail }))).into_response()
    }
}

impl From<AnswerError> for Error {
    fn from(e: AnswerError) -> Self {
        match e {
            AnswerError::UnknownAddress(_) => Error::NotFound("Address not found".into()),
            AnswerError::BadRange(why) => Error::BadRequest(why),
            AnswerError::Store(e) => Error::Internal(e.to_string()),
        }
    }
}

type Params = Query<HashMap<String, String>>;

fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Result<&'a str, Error> {
    q.get(name)
        .map(String::as_str)
        .ok_or_else(|| Error::Unprocessable(format!("query parameter {name} is required")))
}

fn int_param(q: &HashMap<String, String>, name: &str) -> Result<i64, Error> {
    let raw = param(q, name)?;
    raw.parse().map_err(|_| {
        Error::Unprocessable(format!(
            "query parameter {name} must be an integer, got {raw:?}"
        ))
    })
}

fn opt_int(q: &HashMap<String, String>, name: &str, default: i64) -> Result<i64, Error> {
    if q.contains_key(name) {
        int_param(q, name)
    } else {
        Ok(default)
    }
}

/// The router (no socket), so tests can call it directly.
pub fn app(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/state", get(state_attestation))
        .route("/downtime", get(downtime))
        .route("/aggregate_downtime", get(aggregate_downtime))
        .route("/v1/targets", get(targets))
        .route("/v1/intervals", get(intervals))
        .route("/v1/epochs/{epoch}", get(epoch_summary))
        .route("/v1/position", get(position))
        .route("/v1/events", get(events))
        .route("/metrics", get(|| async { metrics::render() }))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn health(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({"status": "up", "node_id": &*s.node_id}))
}

async fn ready(State(s): State<AppState>) -> Result<Json<serde_json::Value>, Error> {
    if s.caught_up.load(Ordering::Relaxed) {
        let pos = s
            .store
            .position()
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Json(json!({"status": "ready", "index": pos.index})))
    } else {
        Err(Error::Unavailable(
            "replica is catching up with the sequencer".into(),
        ))
    }
}

async fn state_attestation(State(s): State<AppState>, Query(q): Params) -> Result<Response, Error> {
    let address = param(&q, "address")?;
    let timestamp = int_param(&q, "timestamp")?;
    if !s.prober.knows(address) {
        return Err(Error::NotFound("Address not found".into()));
    }
    if now_secs().abs_diff(timestamp) > crate::signer::MAX_TIMESTAMP_DRIFT.unsigned_abs() {
        metrics::inc("attestations_refused_total", &[("reason", "drift")]);
        return Err(Error::BadRequest("Timestamp drift too large".into()));
    }
    let _permit = s.state_probes.try_acquire().map_err(|_| {
        metrics::inc("attestations_refused_total", &[("reason", "busy")]);
        Error::Unavailable("too many state requests at once".into())
    })?;
    let obs = s
        .prober
        .probe(address)
        .await
        .ok_or_else(|| Error::NotFound("Address not found".into()))?;
    let att = s.signer.attest(&obs, timestamp).map_err(|e| {
        metrics::inc("attestations_refused_total", &[("reason", "drift")]);
        Error::BadRequest(format!("Timestamp drift too large: {e}"))
    })?;
    metrics::inc("attestations_total", &[]);
    Ok(Json(att).into_response())
}

async fn signed_downtime(
    s: &AppState,
    q: &HashMap<String, String>,
) -> Result<DowntimeAnswer, Error> {
    let address = param(q, "address")?;
    let from = int_param(q, "from_timestamp")?;
    let to = int_param(q, "to_timestamp")?;
    // Sign only what the replica knows: nothing about the future, nothing while
    // the replica is still catching up.
    if to > now_secs().saturating_add(crate::signer::MAX_TIMESTAMP_DRIFT) {
        return Err(Error::BadRequest("to_timestamp is in the future".into()));
    }
    if !s.caught_up.load(Ordering::Relaxed) {
        return Err(Error::Unavailable(
            "replica is catching up with the sequencer".into(),
        ));
    }
    let d = s.answers.downtime(address, from, to).await?;
    Ok(s.signer.sign_downtime(&d))
}

async fn downtime(
    State(s): State<AppState>,
    Query(q): Params,
) -> Result<Json<DowntimeAnswer>, Error> {
    Ok(Json(signed_downtime(&s, &q).await?))
}

/// A quorum proof of a downtime answer.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct AggregateDowntime {
    pub address: String,
    pub from_timestamp: i64,
    pub to_timestamp: i64,
    pub total_downtime_seconds: i64,
    pub aggregated_signature: String,
    pub non_signing_nodes: Vec<String>,
}

async fn aggregate_downtime(
    State(s): State<AppState>,
    Query(q): Params,
) -> Result<Json<AggregateDowntime>, Error> {
    let own = signed_downtime(&s, &q).await?;
    let msg = downtime_message(
        &own.address,
        own.total_downtime_seconds,
        own.from_timestamp,
        own.to_timestamp,
    );
    let own_sig =
        Signature::from_hex(&own.signature).map_err(|e| Error::Internal(e.to_string()))?;
    let mut tasks = tokio::task::JoinSet::new();
    for m in s.monitors.nodes().iter().filter(|m| *m.id != *s.node_id) {
        let (client, id, url, timeout) =
            (s.peers.clone(), m.id.clone(), m.url.clone(), s.peer_timeout);
        let query = [
            ("address", own.address.clone()),
            ("from_timestamp", own.from_timestamp.to_string()),
            ("to_timestamp", own.to_timestamp.to_string()),
        ];
        tasks.spawn(async move {
            let resp = client
                .get(format!("{url}/downtime"))
                .query(&query)
                .timeout(timeout)
                .send()
                .await;
            let answer = match resp {
                Ok(r) => peer_json::<DowntimeAnswer>(r).await,
                Err(_) => None,
            };
            (id, answer)
        });
    }
    let mut sigs = vec![own_sig];
    let mut signed: Vec<String> = vec![s.node_id.to_string()];
    while let Some(res) = tasks.join_next().await {
        let Ok((id, Some(a))) = res else { continue };
        let Some(m) = s.monitors.get(&id) else {
            continue;
        };
        if a.address != own.address
            || a.from_timestamp != own.from_timestamp
            || a.to_timestamp != own.to_timestamp
            || a.total_downtime_seconds != own.total_downtime_seconds
        {
            continue;
        }
        match Signature::from_hex(&a.signature) {
            Ok(sig) if sig.verify(&m.public_key, msg.as_bytes()) => {
                sigs.push(sig);
                signed.push(id);
            }
            _ => metrics::inc(
                "peer_answers_rejected_total",
                &[("reason", "bad_signature")],
            ),
        }
    }
    let stake: f64 = signed
        .iter()
        .filter_map(|id| s.monitors.get(id))
        .map(|m| m.stake)
        .sum();
    if !s.monitors.quorum_reached(stake) {
        metrics::inc("aggregate_downtime_failed_total", &[]);
        return Err(Error::FailedDependency(
            "Not enough valid signatures to aggregate downtime proof.".into(),
        ));
    }
    let aggregated =
        Signature::aggregate(&sigs).ok_or_else(|| Error::Internal("no signature".into()))?;
    let non_signing_nodes = s
        .monitors
        .nodes()
        .iter()
        .filter(|m| !signed.contains(&m.id))
        .map(|m| m.id.clone())
        .collect();
    Ok(Json(AggregateDowntime {
        address: own.address,
        from_timestamp: own.from_timestamp,
        to_timestamp: own.to_timestamp,
        total_downtime_seconds: own.total_downtime_seconds,
        aggregated_signature: aggregated.to_hex(),
        non_signing_nodes,
    }))
}

async fn targets(State(s): State<AppState>) -> Result<Json<serde_json::Value>, Error> {
    let states = s
        .store
        .states()
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    let view = s.prober.view();
    let mut out = Vec::new();
    for a in s.answers.addresses() {
        let st = states.get(a);
        let local = view.get(a);
        out.push(json!({
            "address": a,
            "state": st.map(|t| t.state.as_str()).unwrap_or("up"),
            "since": st.map(|t| t.timestamp).unwrap_or(0),
            "local": local.map(|d| json!({
                "state": d.state, "last_probe": d.last, "last_probe_at": d.last_probe_at,
            })),
        }));
    }
    Ok(Json(json!(out)))
}

async fn intervals(
    State(s): State<AppState>,
    Query(q): Params,
) -> Result<Json<serde_json::Value>, Error> {
    let now = now_secs();
    let from = opt_int(&q, "from", 0)?;
    let to = opt_int(&q, "to", now)?;
    let addrs: Vec<String> = match q.get("address") {
        Some(a) => vec![a.clone()],
        None => s.answers.addresses().to_vec(),
    };
    let mut out = Vec::new();
    for a in addrs {
        out.extend(s.answers.intervals(&a, from, to, now).await?);
    }
    Ok(Json(json!(out)))
}

async fn epoch_summary(
    State(s): State<AppState>,
    Path(epoch): Path<String>,
    Query(q): Params,
) -> Result<Json<serde_json::Value>, Error> {
    let now = now_secs();
    let n = match epoch.as_str() {
        "current" => s.answers.epoch_of(now),
        e => e.parse().map_err(|_| {
            Error::Unprocessable(format!(
                "epoch must be an integer or \"current\", got {e:?}"
            ))
        })?,
    };
    let addrs: Vec<String> = match q.get("address") {
        Some(a) => vec![a.clone()],
        None => s.answers.addresses().to_vec(),
    };
    let mut out = Vec::new();
    for a in addrs {
        out.push(s.answers.epoch_summary(&a, n, now).await?);
    }
    Ok(Json(json!(out)))
}

async fn position(State(s): State<AppState>) -> Result<Json<serde_json::Value>, Error> {
    let p = s
        .store
        .position()
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Json(json!({
        "node_id": &*s.node_id,
        "index": p.index,
        "chaining_hash": p.chaining_hash,
        "events_digest": p.events_digest,
        "events_count": p.events_count,
    })))
}

/// Applied events with their quorum proofs, in log order (`after` = last seq seen).
async fn events(
    State(s): State<AppState>,
    Query(q): Params,
) -> Result<Json<serde_json::Value>, Error> {
    let after = opt_int(&q, "after", 0)?;
    let limit = opt_int(&q, "limit", 1000)?.clamp(1, 10_000) as u32;
    let rows = s
        .store
        .events(q.get("address").map(String::as_str), after, limit)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    let out: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(seq, index, e)| {
            json!({
                "seq": seq, "zellular_index": index,
                "address": e.address, "state": e.state, "timestamp": e.timestamp,
                "aggregated_signature": e.aggregated_signature, "non_signing_nodes": e.non_signing_nodes,
            })
        })
        .collect();
    Ok(Json(json!(out)))
}
