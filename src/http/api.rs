//! The handlers.
//!
//! Signed answers about history (`/downtime`, `/aggregate_downtime`) are given
//! only by a fresh replica (else `503` with the reason) and only for windows that
//! end at or before the settled watermark `log_time − max_event_age` (else `425 Too
//! Early` with the watermark and a `Retry-After`): no event applied later can change
//! them. Unsigned `/v1/` answers may reach past the watermark and say where it is.
//!
//! Every list is paginated: `limit` rows (default [`DEFAULT_PAGE_ROWS`], at most
//! [`MAX_PAGE_ROWS`]) and at most [`MAX_PAGE_BYTES`] of rows; `next` is the cursor of
//! the next page (`null` on the last), passed back as `cursor`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};

use super::Error;
use crate::answers::{AggregateDowntime, AnswerError, IntervalCursor};
use crate::events::downtime_message;
use crate::metrics;
use crate::node::context::NodeContext;
use crate::peers::Collection;
use crate::prober::ProbeError;
use crate::signer::DowntimeAnswer;

/// Rows per page unless `limit` says otherwise.
pub const DEFAULT_PAGE_ROWS: usize = 100;
/// Most rows per page.
pub const MAX_PAGE_ROWS: usize = 1_000;
/// Most bytes of rows per page (a page may stop short of `limit` to stay under it).
pub const MAX_PAGE_BYTES: usize = 1 << 20;

type Params = Query<HashMap<String, String>>;

impl From<AnswerError> for Error {
    fn from(e: AnswerError) -> Self {
        match e {
            AnswerError::UnknownAddress(_) => Error::NotFound("Address not found".into()),
            AnswerError::BadRange(why) => Error::BadRequest(why),
            AnswerError::NotYet(why) => Error::NotFound(why),
            AnswerError::Store(e) => Error::Internal(e.to_string()),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

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

fn page_limit(q: &HashMap<String, String>) -> Result<usize, Error> {
    let l = opt_int(q, "limit", DEFAULT_PAGE_ROWS as i64)?;
    if l < 1 {
        return Err(Error::BadRequest("limit must be at least 1".into()));
    }
    Ok((l as usize).min(MAX_PAGE_ROWS))
}

/// Serialized rows, each with the cursor that resumes after it, cut to the byte
/// budget. `more`: rows exist beyond `rows`. Returns the page and its `next`.
fn paginate<T: Serialize>(
    rows: Vec<(T, String)>,
    more: bool,
) -> Result<(Vec<Value>, Option<String>), Error> {
    let mut out = Vec::with_capacity(rows.len());
    let mut bytes = 0;
    let mut next = None;
    let n = rows.len();
    for (i, (row, after)) in rows.into_iter().enumerate() {
        let v = serde_json::to_value(&row).map_err(internal)?;
        let size = v.to_string().len() + 1;
        if bytes + size > MAX_PAGE_BYTES && !out.is_empty() {
            return Ok((out, next));
        }
        bytes += size;
        out.push(v);
        next = Some(after);
        if i + 1 == n && !more {
            next = None;
        }
    }
    Ok((out, next))
}

pub(super) fn routes(ctx: NodeContext) -> Router {
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
        .route("/v1/pursuits", get(pursuit))
        .route("/v1/network", get(network))
        .route("/v1/network/history", get(network_history))
        .route("/v1/network/sign", axum::routing::post(network_sign))
        .route("/v1/certificates", get(certificates))
        .route("/v1/certificates/epochs/{epoch}", get(certificate))
        .route(
            "/v1/certificates/epochs/{epoch}/proof",
            get(certificate_proof),
        )
        .route(
            "/v1/certificates/epochs/{epoch}/signature",
            get(certificate_signature),
        )
        .route("/metrics", get(render_metrics))
        .route("/", get(super::status::index))
        .route("/targets/{address}", get(super::status::target))
        .route("/badge/{file}", get(super::status::badge))
        .with_state(ctx)
}

/// What an overflow connection may ask.
pub(super) fn ops_routes(ctx: NodeContext) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(ctx)
}

async fn render_metrics(State(ctx): State<NodeContext>) -> impl axum::response::IntoResponse {
    if let Ok(f) = ctx.status.check() {
        metrics::replica_lag(f.lag, ctx.status.since_last_sync());
    } else {
        let t = ctx.status.log_time();
        let lag = if t > 0 { ctx.clock.now() - t } else { 0 };
        metrics::replica_lag(lag, ctx.status.since_last_sync());
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics::render(),
    )
}

async fn health(State(ctx): State<NodeContext>) -> Json<Value> {
    let net = ctx.net();
    Json(json!({
        "status": "up",
        "node_id": &*ctx.node_id,
        "aggregator": ctx.settings.aggregator,
        "version": env!("CARGO_PKG_VERSION"),
        "network": net.id,
        "network_version": net.version,
        "member": ctx.is_member(&net),
    }))
}

/// 200 while the replica is fresh, 503 with the reason otherwise — evaluated now.
async fn ready(State(ctx): State<NodeContext>) -> Result<Json<Value>, Error> {
    match ctx.status.check() {
        Ok(f) => Ok(Json(json!({
            "status": "ready",
            "index": ctx.status.index(),
            "log_time": f.log_time,
            "lag_seconds": f.lag,
            "settled_until": f.settled,
        }))),
        Err(why) => Err(Error::Unavailable(format!("not ready: {why}"))),
    }
}

/// What this node's aggregator is doing about a target (`address=A`) or an epoch's
/// certificate (`epoch=N`) — `null`: nothing. Asked by the other aggregators at
/// their turn (see [`crate::pursuit`]).
async fn pursuit(State(ctx): State<NodeContext>, Query(q): Params) -> Result<Json<Value>, Error> {
    if q.contains_key("epoch") {
        let n = int_param(&q, "epoch")?;
        return Ok(Json(json!(ctx.pursuits.view_epoch(n))));
    }
    let address = param(&q, "address")?;
    if !ctx.prober.knows(address) {
        return Err(Error::NotFound("Address not found".into()));
    }
    Ok(Json(json!(ctx.pursuits.view(address))))
}

async fn state_attestation(
    State(ctx): State<NodeContext>,
    Query(q): Params,
) -> Result<Json<crate::signer::StateAttestation>, Error> {
    let address = param(&q, "address")?;
    let timestamp = int_param(&q, "timestamp")?;
    if !ctx.prober.knows(address) {
        return Err(Error::NotFound("Address not found".into()));
    }
    let net = member(&ctx)?;
    if ctx.clock.now().abs_diff(timestamp) > crate::signer::MAX_TIMESTAMP_DRIFT.unsigned_abs() {
        metrics::attestation_refused("drift");
        return Err(Error::BadRequest("Timestamp drift too large".into()));
    }
    let obs = ctx
        .prober
        .probe_shared(address)
        .await
        .map_err(|e| match e {
            ProbeError::Unknown => Error::NotFound("Address not found".into()),
            ProbeError::Busy => {
                metrics::attestation_refused("busy");
                Error::Unavailable("too many state requests for this target at once".into())
            }
        })?;
    let mut att = ctx.signer.attest(&obs, timestamp).map_err(|e| {
        metrics::attestation_refused("drift");
        Error::BadRequest(format!("Timestamp drift too large: {e}"))
    })?;
    att.network_version = Some(net.version);
    metrics::attestation();
    Ok(Json(att))
}

/// A downtime answer this node signs: only from a fresh replica, only about
/// settled history.
async fn signed_downtime(
    ctx: &NodeContext,
    q: &HashMap<String, String>,
) -> Result<DowntimeAnswer, Error> {
    let address = param(q, "address")?;
    let from = int_param(q, "from_timestamp")?;
    let to = int_param(q, "to_timestamp")?;
    // A request that can never be answered says so before "stale" or "too early".
    ctx.answers.check_query(address, from, to)?;
    let net = member(ctx)?;
    let fresh = ctx.status.check().map_err(|why| {
        metrics::signed_answer_refused("stale");
        Error::Unavailable(format!(
            "this replica signs nothing while it is stale: {why}"
        ))
    })?;
    if to > fresh.settled {
        metrics::signed_answer_refused("unsettled");
        let detail = if to > ctx.clock.now() {
            format!(
                "to_timestamp {to} is in the future; history is settled up to {}",
                fresh.settled
            )
        } else {
            format!(
                "to_timestamp {to} is not settled yet: events for it may still arrive until \
                 log_time passes {}; settled up to {}",
                to + ctx.settings.max_event_age,
                fresh.settled
            )
        };
        return Err(Error::TooEarly {
            detail,
            settled_until: fresh.settled,
            log_time: fresh.log_time,
            retry_after: to.saturating_sub(fresh.settled).clamp(1, 86_400) as u64,
        });
    }
    let d = ctx.answers.downtime(address, from, to).await?;
    let mut a = ctx.signer.sign_downtime(&d);
    a.network_version = Some(net.version);
    Ok(a)
}

/// The network in force, if this node is one of its monitoring nodes (it signs
/// nothing otherwise).
fn member(ctx: &NodeContext) -> Result<std::sync::Arc<crate::network::NetworkState>, Error> {
    let net = ctx.net();
    if ctx.is_member(&net) {
        Ok(net)
    } else {
        metrics::signed_answer_refused("not_member");
        Err(Error::Unavailable(format!(
            "this node ({}) is not a monitoring node of network version {}: it signs nothing \
             until a network change adds it",
            ctx.node_id, net.version
        )))
    }
}

async fn downtime(
    State(ctx): State<NodeContext>,
    Query(q): Params,
) -> Result<Json<DowntimeAnswer>, Error> {
    Ok(Json(signed_downtime(&ctx, &q).await?))
}

async fn aggregate_downtime(
    State(ctx): State<NodeContext>,
    Query(q): Params,
) -> Result<Json<AggregateDowntime>, Error> {
    let own = signed_downtime(&ctx, &q).await?;
    let monitors = ctx.monitors();
    let msg = downtime_message(
        &own.address,
        own.total_downtime_seconds,
        own.from_timestamp,
        own.to_timestamp,
    );
    let own_sig = crate::crypto::bls::Signature::from_hex(&own.signature).map_err(internal)?;
    let query = vec![
        ("address", own.address.clone()),
        ("from_timestamp", own.from_timestamp.to_string()),
        ("to_timestamp", own.to_timestamp.to_string()),
    ];
    let expect = own.clone();
    let g = ctx
        .peers
        .gather(
            Collection {
                set: &monitors,
                me: &ctx.node_id,
                msg: msg.as_bytes(),
                // Every node that agrees signs the proof, as with the reference node.
                stop_at_quorum: false,
            },
            own_sig,
            move |peers, m| {
                let query = query.clone();
                async move {
                    let q: Vec<(&str, String)> =
                        query.iter().map(|(k, v)| (*k, v.clone())).collect();
                    peers.get::<DowntimeAnswer>(&m.url, "/downtime", &q).await
                }
            },
            move |a: &DowntimeAnswer| {
                if a.address == expect.address
                    && a.from_timestamp == expect.from_timestamp
                    && a.to_timestamp == expect.to_timestamp
                    && a.total_downtime_seconds == expect.total_downtime_seconds
                {
                    Ok(a.signature.clone())
                } else {
                    Err(format!("answered {} s", a.total_downtime_seconds))
                }
            },
        )
        .await;
    if !monitors.quorum_reached(g.stake) {
        metrics::aggregate_downtime_failed();
        tracing::info!(address = %own.address, refusals = ?g.refusals, "no quorum for a downtime proof");
        return Err(Error::FailedDependency(
            "Not enough valid signatures to aggregate downtime proof.".into(),
        ));
    }
    let aggregated = g.aggregate().ok_or_else(|| internal("no signature"))?;
    Ok(Json(AggregateDowntime {
        address: own.address,
        from_timestamp: own.from_timestamp,
        to_timestamp: own.to_timestamp,
        total_downtime_seconds: own.total_downtime_seconds,
        aggregated_signature: aggregated.to_hex(),
        non_signing_nodes: g.non_signers(&monitors),
        network_version: own.network_version,
    }))
}

/// Addresses in order, from the `cursor` (an address, exclusive).
fn address_page(ctx: &NodeContext, q: &HashMap<String, String>) -> Vec<String> {
    let all = ctx.answers.addresses();
    let start = match q.get("cursor") {
        Some(c) => all.partition_point(|a| a.as_str() <= c.as_str()),
        None => 0,
    };
    all[start..].to_vec()
}

async fn targets(State(ctx): State<NodeContext>, Query(q): Params) -> Result<Json<Value>, Error> {
    let limit = page_limit(&q)?;
    let states = ctx.store.states().await.map_err(internal)?;
    let monitoring = ctx.store.monitoring().await.map_err(internal)?;
    let view = ctx.prober.view();
    let addrs = address_page(&ctx, &q);
    let more = addrs.len() > limit;
    let rows: Vec<(Value, String)> = addrs
        .iter()
        .take(limit)
        .map(|a| {
            let st = states.get(a);
            let local = view.get(a);
            let monitored_since = monitoring.get(a).copied().flatten();
            // Before the network began monitoring it, its state is unknown.
            let (state, since) = match monitored_since {
                None => ("unknown", None),
                Some(m) => (
                    st.map(|t| t.state.as_str()).unwrap_or("up"),
                    Some(st.map_or(m, |t| t.since.max(m))),
                ),
            };
            (
                json!({
                    "address": a,
                    "state": state,
                    "since": since,
                    "monitored_since": monitored_since,
                    "local": local.map(|d| json!({
                        "state": d.state,
                        "last_probe": d.last,
                        "last_probe_at": d.last_probe_at,
                        "latency_seconds": d.last_latency_seconds,
                        "last_failure": d.last_failure.as_ref().map(|c| json!({"cause": c, "text": c.to_string(), "at": d.last_failure_at})),
                    })),
                }),
                a.clone(),
            )
        })
        .collect();
    let (items, next) = paginate(rows, more)?;
    Ok(Json(json!({ "items": items, "next": next })))
}

async fn intervals(State(ctx): State<NodeContext>, Query(q): Params) -> Result<Json<Value>, Error> {
    let now = ctx.clock.now();
    let from = opt_int(&q, "from", 0)?;
    let to = opt_int(&q, "to", now)?;
    let limit = page_limit(&q)?;
    // The cursor: "<address>~<position in its table>".
    let (start_addr, start_cursor) = match q.get("cursor") {
        Some(c) => {
            let (a, p) = c
                .rsplit_once('~')
                .ok_or_else(|| Error::BadRequest("malformed cursor".into()))?;
            let p = IntervalCursor::decode(p)
                .ok_or_else(|| Error::BadRequest("malformed cursor".into()))?;
            (Some(a.to_owned()), p)
        }
        None => (None, IntervalCursor::Start),
    };
    let mut addrs: Vec<String> = match q.get("address") {
        Some(a) => vec![a.clone()],
        None => {
            let mut all = ctx.answers.addresses().to_vec();
            all.sort();
            all
        }
    };
    if let Some(a) = &start_addr {
        addrs.retain(|x| x >= a);
    }
    let mut rows: Vec<(Value, String)> = Vec::new();
    let mut more = false;
    for (k, a) in addrs.iter().enumerate() {
        if rows.len() >= limit {
            more = true;
            break;
        }
        let cursor = if k == 0 && start_addr.as_deref() == Some(a.as_str()) {
            start_cursor
        } else {
            IntervalCursor::Start
        };
        let room = (limit - rows.len()) as u32;
        let (page, table_more) = ctx
            .answers
            .intervals(a, from, to, now, cursor, room)
            .await?;
        let n = page.len();
        for (i, (row, resume)) in page.into_iter().enumerate() {
            // After the last row of a finished table, the next page starts with
            // the next address's table.
            let after = match addrs.get(k + 1) {
                Some(next) if i + 1 == n && !table_more => {
                    format!("{next}~{}", IntervalCursor::Start.encode())
                }
                _ => format!("{a}~{}", resume.encode()),
            };
            rows.push((json!(row), after));
        }
        if table_more {
            more = true;
            break;
        }
    }
    let (items, next) = paginate(rows, more)?;
    let settled = ctx.status.settled();
    Ok(Json(
        json!({ "items": items, "next": next, "settled_until": settled }),
    ))
}

async fn epoch_summary(
    State(ctx): State<NodeContext>,
    Path(epoch): Path<String>,
    Query(q): Params,
) -> Result<Json<Value>, Error> {
    let now = ctx.clock.now();
    let n = match epoch.as_str() {
        "current" => ctx.answers.epoch_of(now),
        e => e.parse().map_err(|_| {
            Error::Unprocessable(format!(
                "epoch must be an integer or \"current\", got {e:?}"
            ))
        })?,
    };
    let limit = page_limit(&q)?;
    let addrs: Vec<String> = match q.get("address") {
        Some(a) => vec![a.clone()],
        None => address_page(&ctx, &q),
    };
    let more = addrs.len() > limit;
    let settled = ctx.status.settled();
    let mut rows = Vec::new();
    for a in addrs.into_iter().take(limit) {
        let s = ctx.answers.epoch_summary(&a, n, now).await?;
        let mut v = json!(s);
        v["settled"] =
            json!(settled
                .is_some_and(|w| s.end <= w
                    && s.end == s.start + ctx.answers.epoch_config().length_secs as i64));
        rows.push((v, a));
    }
    let (items, next) = paginate(rows, more)?;
    Ok(Json(
        json!({ "items": items, "next": next, "settled_until": settled }),
    ))
}

async fn position(State(ctx): State<NodeContext>) -> Result<Json<Value>, Error> {
    let p = ctx.store.position().await.map_err(internal)?;
    let net = ctx.net();
    Ok(Json(json!({
        "node_id": &*ctx.node_id,
        "network": net.id,
        "network_version": net.version,
        "index": p.index,
        "chaining_hash": p.chaining_hash,
        "partial_items": p.partial_items,
        "log_time": p.log_time,
        "settled_until": ctx.status.settled(),
        "events_digest": p.events_digest,
        "events_count": p.events_count,
    })))
}

/// Applied events with their quorum proofs, in log order (`cursor` = last seq seen).
async fn events(State(ctx): State<NodeContext>, Query(q): Params) -> Result<Json<Value>, Error> {
    let after = match q.get("cursor") {
        Some(c) => c
            .parse()
            .map_err(|_| Error::BadRequest("malformed cursor".into()))?,
        None => opt_int(&q, "after", 0)?,
    };
    let limit = page_limit(&q)?;
    if let Some(a) = q.get("address") {
        ctx.answers.known(a)?;
    }
    let rows = ctx
        .store
        .events(
            q.get("address").map(String::as_str),
            after,
            limit as u32 + 1,
        )
        .await
        .map_err(internal)?;
    let more = rows.len() > limit;
    let rows: Vec<(Value, String)> = rows
        .into_iter()
        .take(limit)
        .map(|r| {
            let e = r.event;
            (
                json!({
                    "seq": r.seq, "zellular_index": r.zellular_index,
                    "address": e.address, "state": e.state, "timestamp": e.timestamp,
                    "aggregated_signature": e.aggregated_signature,
                    "non_signing_nodes": e.non_signing_nodes,
                    "log_time": r.log_time,
                    "network_version": r.network_version,
                }),
                r.seq.to_string(),
            )
        })
        .collect();
    let (items, next) = paginate(rows, more)?;
    Ok(Json(json!({ "items": items, "next": next })))
}

/// The network in force: id, version, monitoring nodes, targets, threshold.
async fn network(State(ctx): State<NodeContext>) -> Json<Value> {
    let net = ctx.net();
    Json(json!({
        "network": net.id,
        "name": net.name,
        "version": net.version,
        "monitoring_nodes": net.definition.monitoring_nodes,
        "allow_without_pop": net.definition.allow_without_pop,
        "targets": net.definition.targets,
        "quorum_threshold": net.definition.quorum_threshold,
        "total_stake": net.monitors.total_stake(),
        "known_addresses": net.known.len(),
    }))
}

/// The genesis and every applied change with its proof: enough to check any
/// answer from the genesis alone (`livenessd verify --network`).
async fn network_history(
    State(ctx): State<NodeContext>,
    Query(q): Params,
) -> Result<Json<Value>, Error> {
    let limit = page_limit(&q)?;
    // The cursor is the last version of the page before (the genesis is version 1).
    let after: u64 = match q.get("cursor") {
        None => 1,
        Some(c) => c
            .parse()
            .map_err(|_| Error::BadRequest(format!("cursor {c:?} is not a network version")))?,
    };
    let (id, genesis) = ctx
        .store
        .network()
        .await
        .map_err(internal)?
        .ok_or_else(|| internal("the replica is bound to no network"))?;
    let genesis: crate::network::Genesis = serde_json::from_str(&genesis).map_err(internal)?;
    let stored = ctx
        .store
        .changes_after(after, limit as u32 + 1)
        .await
        .map_err(internal)?;
    let more = stored.len() > limit;
    let mut rows = Vec::new();
    for c in stored.into_iter().take(limit) {
        let after = c.version.to_string();
        let r = crate::network::history::Recorded {
            version: c.version,
            zellular_index: c.zellular_index,
            position: c.position,
            log_time: c.log_time,
            change: serde_json::from_str(&c.change).map_err(internal)?,
        };
        rows.push((r, after));
    }
    let (changes, next) = paginate(rows, more)?;
    Ok(Json(json!({
        "network": id,
        "genesis": genesis,
        "changes": changes,
        "next": next,
    })))
}

/// Signs a network change, if this node's operator approved exactly it and it
/// applies to the version in force.
async fn network_sign(
    State(ctx): State<NodeContext>,
    body: axum::body::Bytes,
) -> Result<Json<crate::network::ChangeSignature>, Error> {
    let p: crate::network::Proposal = serde_json::from_slice(&body).map_err(|e| {
        metrics::network_change_signature("refused");
        Error::BadRequest(format!("not a network change proposal: {e}"))
    })?;
    let net = member(&ctx)?;
    let refuse = |why: String| {
        metrics::network_change_signature("refused");
        Error::Unprocessable(why)
    };
    if p.network != net.id {
        return Err(refuse(format!(
            "the proposal is for network {}, this node is in {}",
            p.network, net.id
        )));
    }
    if p.version != net.version + 1 {
        return Err(refuse(format!(
            "the proposal makes version {}, but version {} is in force (a change makes the next one)",
            p.version, net.version
        )));
    }
    let known: std::collections::BTreeSet<String> = net.known.iter().cloned().collect();
    p.apply_to(&net.definition, &known)
        .map_err(|e| refuse(format!("the change does not make a valid network: {e}")))?;
    if !crate::network::is_approved(&ctx.settings.approvals, &p) {
        metrics::network_change_signature("not_approved");
        return Err(Error::Forbidden(format!(
            "this node's operator has not approved change {} (run `livenessd network approve` on it)",
            p.hash()
        )));
    }
    let signature = ctx.signer.sign_network_change(&p).to_hex();
    metrics::network_change_signature("signed");
    tracing::info!(version = p.version, change = %p.hash(), "signed an approved network change");
    Ok(Json(crate::network::ChangeSignature {
        node_id: ctx.node_id.to_string(),
        signature,
        network_version: net.version,
    }))
}

fn epoch_param(epoch: &str) -> Result<i64, Error> {
    epoch
        .parse()
        .map_err(|_| Error::Unprocessable(format!("epoch must be an integer, got {epoch:?}")))
}

/// A stored certificate, or 404 saying why there is none (yet).
async fn stored_certificate(
    ctx: &NodeContext,
    n: i64,
) -> Result<
    (
        crate::certificate::Certificate,
        crate::store::node::StoredCertificate,
    ),
    Error,
> {
    let Some(c) = ctx.store.certificate(n).await.map_err(internal)? else {
        let Some((_, end)) = ctx.answers.epoch_bounds(n) else {
            return Err(Error::BadRequest(format!("epoch {n} is out of range")));
        };
        before_monitoring(ctx, n).await?;
        let settled = ctx.status.settled();
        let why = match settled {
            Some(w) if end <= w => format!(
                "epoch {n} is settled but not certified yet (an aggregator certifies it once a \
                 quorum signs its table)"
            ),
            _ => format!(
                "epoch {n} is not settled yet (it ends at {end}; settled up to {})",
                settled.map_or("nothing".into(), |w| w.to_string())
            ),
        };
        return Err(Error::NotFound(why));
    };
    let cert = serde_json::from_str(&c.certificate).map_err(internal)?;
    Ok((cert, c))
}

/// 404 for an epoch before monitoring began: nothing to certify, ever.
async fn before_monitoring(ctx: &NodeContext, n: i64) -> Result<(), Error> {
    match ctx.answers.first_monitored_epoch().await? {
        None => Err(Error::NotFound(
            "the network monitors nothing yet: no epoch has a certificate".into(),
        )),
        Some(f) if n < f => Err(Error::NotFound(format!(
            "epoch {n} ended before the network monitored anything (its first epoch is {f}): \
             it is never certified"
        ))),
        Some(_) => Ok(()),
    }
}

fn stored_rows(
    c: &crate::store::node::StoredCertificate,
) -> Result<Vec<crate::certificate::Row>, Error> {
    serde_json::from_str(c.rows.as_deref().unwrap_or("[]")).map_err(internal)
}

/// The certified epochs, ascending (`cursor` = the last epoch seen).
async fn certificates(
    State(ctx): State<NodeContext>,
    Query(q): Params,
) -> Result<Json<Value>, Error> {
    let after = match q.get("cursor") {
        Some(c) => c
            .parse()
            .map_err(|_| Error::BadRequest("malformed cursor".into()))?,
        None => i64::MIN,
    };
    let limit = page_limit(&q)?;
    let rows = ctx
        .store
        .certificates(after, limit as u32 + 1)
        .await
        .map_err(internal)?;
    let more = rows.len() > limit;
    let mut out = Vec::new();
    for r in rows.into_iter().take(limit) {
        let c: crate::certificate::Certificate =
            serde_json::from_str(&r.certificate).map_err(internal)?;
        out.push((
            json!({
                "epoch": c.epoch, "start": c.start, "end": c.end,
                "network_version": c.network_version, "rows": c.rows, "root": c.root,
                "zellular_index": r.zellular_index, "log_time": r.log_time,
            }),
            r.epoch.to_string(),
        ));
    }
    let (items, next) = paginate(out, more)?;
    Ok(Json(json!({ "items": items, "next": next })))
}

/// An epoch's certificate and its rows (paginated by address: `cursor` = the
/// last address seen).
async fn certificate(
    State(ctx): State<NodeContext>,
    Path(epoch): Path<String>,
    Query(q): Params,
) -> Result<Json<Value>, Error> {
    let n = epoch_param(&epoch)?;
    let (cert, stored) = stored_certificate(&ctx, n).await?;
    let rows = stored_rows(&stored)?;
    let limit = page_limit(&q)?;
    let after = q.get("cursor").cloned().unwrap_or_default();
    let rest: Vec<_> = rows
        .into_iter()
        .filter(|r| after.is_empty() || r.address.as_bytes() > after.as_bytes())
        .collect();
    let more = rest.len() > limit;
    let page: Vec<_> = rest
        .into_iter()
        .take(limit)
        .map(|r| {
            let a = r.address.clone();
            (r, a)
        })
        .collect();
    let (items, next) = paginate(page, more)?;
    Ok(Json(json!({
        "certificate": cert,
        "zellular_index": stored.zellular_index,
        "position": stored.position,
        "log_time": stored.log_time,
        "items": items,
        "next": next,
    })))
}

/// One row of a certified epoch with its inclusion proof.
async fn certificate_proof(
    State(ctx): State<NodeContext>,
    Path(epoch): Path<String>,
    Query(q): Params,
) -> Result<Json<Value>, Error> {
    let n = epoch_param(&epoch)?;
    let address = param(&q, "address")?;
    let (cert, stored) = stored_certificate(&ctx, n).await?;
    let table =
        crate::certificate::Table::new(cert.epoch, cert.start, cert.end, stored_rows(&stored)?);
    let (row, proof) = table.proof(address).ok_or_else(|| {
        Error::NotFound(format!(
            "{address} has no row in epoch {n}: the network did not monitor it then"
        ))
    })?;
    Ok(Json(
        json!({ "certificate": cert, "row": row, "proof": proof }),
    ))
}

/// This node's signature of an epoch's table: only about a settled epoch, from a
/// fresh replica, by a monitoring node of the version in force.
async fn certificate_signature(
    State(ctx): State<NodeContext>,
    Path(epoch): Path<String>,
) -> Result<Json<crate::certificate::CertificateSignature>, Error> {
    let n = epoch_param(&epoch)?;
    let refused = |e: Error| {
        metrics::certificate_signature("refused");
        e
    };
    let net = member(&ctx).map_err(refused)?;
    let fresh = ctx.status.check().map_err(|why| {
        refused(Error::Unavailable(format!(
            "this replica signs nothing while it is stale: {why}"
        )))
    })?;
    let (_, end) = ctx
        .answers
        .epoch_bounds(n)
        .ok_or_else(|| refused(Error::BadRequest(format!("epoch {n} is out of range"))))?;
    before_monitoring(&ctx, n).await.map_err(refused)?;
    if end > fresh.settled {
        return Err(refused(Error::TooEarly {
            detail: format!(
                "epoch {n} ends at {end}, after the settled watermark ({})",
                fresh.settled
            ),
            settled_until: fresh.settled,
            log_time: fresh.log_time,
            retry_after: end.saturating_sub(fresh.settled).clamp(1, 86_400) as u64,
        }));
    }
    let table = ctx
        .answers
        .epoch_table(n, fresh.settled)
        .await
        .map_err(|e| refused(e.into()))?;
    let mut s = ctx.signer.sign_epoch(&table, &net.id, net.version);
    s.node_id = ctx.node_id.to_string();
    metrics::certificate_signature("signed");
    Ok(Json(s))
}
