//! The aggregator: when this node's prober confirms a state that differs from the
//! replicated one, gather signed `/state` answers from the other monitoring nodes
//! until the signers' stake reaches the quorum, aggregate them with this node's own,
//! and post the event to Zellular — then keep posting that same event until the
//! replica shows it. It also posts heartbeats (`[]`) so the replicas' clock moves.
//!
//! Any number of aggregators may run. They take turns by a deterministic rank per
//! change — a hash of the target, the state, the replicated state's `since` and
//! the node id — each waiting `rank × rank_step` and standing down when the replica
//! already shows the change, so a change costs O(N) `/state` calls and usually one
//! posted event. Ranks are over the nodes known to aggregate (asked at `/health`);
//! an unreachable one is left out, so a dead first-ranked node costs nothing. At its
//! turn a node first asks the nearest-ranked aggregators what they are doing about
//! the target ([`crate::pursuit`]): it adopts a proof one of them holds (checked),
//! waits while one is gathering (a bounded number of steps), and gathers only
//! otherwise — so a change applied more slowly than a rank step still costs one
//! proof, not one per step.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::certificate::{Certificate, CertificateSignature};
use crate::config::AggregationConfig;
use crate::events::{state_message, Event, NodeState};
use crate::metrics;
use crate::node::context::NodeContext;
use crate::peers::{Answer, Collection};
use crate::pursuit::{decide, defer_epoch, Decision, Phase, PursuitView, Pursuits, Wanted};
use crate::signer::StateAttestation;
use crate::zellular::Client;

/// Why one attempt did not produce a proof.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("this node no longer sees {0} as {1}")]
    ChangedMind(String, NodeState),
    #[error("only {signed} of {total} stake confirmed {state}")]
    NoQuorum {
        state: NodeState,
        signed: f64,
        total: f64,
    },
}

/// How often a node waiting for its turn checks whether the change is done.
const TURN_CHECK: Duration = Duration::from_millis(100);

/// How many settled epochs back an aggregator certifies an epoch left without a
/// certificate (say, while the sequencer was down).
pub const CERTIFY_BACKLOG: i64 = 16;

/// How the aggregator paces itself (from [`AggregationConfig`]).
#[derive(Debug, Clone)]
struct Pace {
    confirm_timeout: Duration,
    retry_initial: Duration,
    retry_max: Duration,
    start_jitter: Duration,
    reconcile_interval: Duration,
    rank_step: Duration,
    heartbeat: Duration,
    roles_refresh: Duration,
}

impl Pace {
    fn new(cfg: &AggregationConfig, heartbeat_ms: u64) -> Self {
        let ms = Duration::from_millis;
        Pace {
            confirm_timeout: ms(cfg.confirm_timeout_ms),
            retry_initial: ms(cfg.retry_initial_ms),
            retry_max: ms(cfg.retry_max_ms.max(cfg.retry_initial_ms)),
            start_jitter: ms(cfg.start_jitter_ms),
            reconcile_interval: ms(cfg.reconcile_interval_ms.max(1)),
            rank_step: ms(cfg.rank_step_ms),
            heartbeat: ms(heartbeat_ms.max(1)),
            roles_refresh: ms(cfg.roles_refresh_ms.max(1)),
        }
    }
}

/// The rank key of one change, the same on every node.
pub fn rank_key(address: &str, state: NodeState, since: i64, node_id: &str) -> u128 {
    let h = crate::zellular::chain::xxh128_hex(
        format!("livenessd-rank|{address}|{state}|{since}|{node_id}").as_bytes(),
    );
    u128::from_str_radix(&h, 16).unwrap_or(0)
}

/// This node's rank (0 = first) for a change among `candidates` (ids, this node's
/// included).
pub fn rank_of(
    me: &str,
    candidates: &[String],
    address: &str,
    state: NodeState,
    since: i64,
) -> usize {
    let mine = rank_key(address, state, since, me);
    candidates
        .iter()
        .filter(|id| id.as_str() != me)
        .filter(|id| {
            let k = rank_key(address, state, since, id);
            (k, id.as_str()) < (mine, me)
        })
        .count()
}

/// `candidates` in rank order for a change (first = rank 0).
pub fn ranked(candidates: &[String], address: &str, state: NodeState, since: i64) -> Vec<String> {
    let mut keyed: Vec<(u128, &String)> = candidates
        .iter()
        .map(|id| (rank_key(address, state, since, id), id))
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, id)| id.clone()).collect()
}

/// The aggregator task.
pub struct Aggregator {
    ctx: NodeContext,
    client: Client,
    pace: Pace,
    /// Targets with a pursuit running: at most one per target.
    in_flight: Mutex<HashSet<String>>,
    /// Which peers aggregate (from their `/health`); a peer missing here is not
    /// ranked. Refreshed every `roles_refresh`.
    aggregators: Mutex<HashMap<String, bool>>,
}

impl Aggregator {
    /// An aggregator over the node's shared context, posting through `client`.
    pub fn new(ctx: &NodeContext, client: Client, cfg: &AggregationConfig) -> Arc<Self> {
        Arc::new(Aggregator {
            pace: Pace::new(cfg, ctx.settings.heartbeat_interval_ms),
            ctx: ctx.clone(),
            client,
            in_flight: Mutex::new(HashSet::new()),
            aggregators: Mutex::new(HashMap::new()),
        })
    }

    /// Runs the aggregator (pursuits, heartbeats, role discovery) until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let heartbeats = tokio::spawn(self.clone().heartbeats(stop.clone()));
        let roles = tokio::spawn(self.clone().discover_roles(stop.clone()));
        let certificates = tokio::spawn(self.clone().certify(stop.clone()));
        self.pursue_changes(&stop).await;
        let _ = heartbeats.await;
        let _ = roles.await;
        let _ = certificates.await;
    }

    /// Watches the prober and starts a pursuit for every target whose confirmed
    /// state differs from the replica's.
    async fn pursue_changes(self: &Arc<Self>, stop: &CancellationToken) {
        let mut changes = self.ctx.prober.subscribe();
        let mut tick = tokio::time::interval(self.pace.reconcile_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pursuits = JoinSet::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = changes.recv() => {}
                _ = tick.tick() => {}
                Some(_) = pursuits.join_next(), if !pursuits.is_empty() => continue,
            }
            // A stale replica's states may be old: start nothing until it is fresh.
            if self.ctx.status.check().is_err() {
                continue;
            }
            // A node the network has not added (or has removed) proves nothing.
            if !self.ctx.is_member(&self.ctx.net()) {
                continue;
            }
            let replicated = match self.ctx.store.states().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "aggregator cannot read the replica");
                    continue;
                }
            };
            for (address, damper) in self.ctx.prober.view() {
                let current = replicated.get(&address).map_or(NodeState::Up, |t| t.state);
                if damper.state == current {
                    continue;
                }
                if !self
                    .in_flight
                    .lock()
                    .expect("in-flight lock")
                    .insert(address.clone())
                {
                    continue;
                }
                let me = self.clone();
                let stop = stop.clone();
                pursuits.spawn(async move {
                    me.pursue(&address, damper.state, &stop).await;
                    me.in_flight
                        .lock()
                        .expect("in-flight lock")
                        .remove(&address);
                });
            }
        }
        pursuits.shutdown().await;
    }

    /// The ids ranked for a change: this node and every peer known to aggregate.
    fn candidates(&self) -> Vec<String> {
        let roles = self.aggregators.lock().expect("roles lock");
        let mut out: Vec<String> = self
            .ctx
            .monitors()
            .nodes()
            .iter()
            .filter(|m| *m.id == *self.ctx.node_id || roles.get(&m.id).copied().unwrap_or(false))
            .map(|m| m.id.clone())
            .collect();
        out.sort();
        out
    }

    /// The candidates in rank order for a change, and this node's rank among them.
    fn turns(&self, address: &str, state: NodeState, since: i64) -> (Vec<String>, usize) {
        let order = ranked(&self.candidates(), address, state, since);
        let rank = order
            .iter()
            .position(|id| **id == *self.ctx.node_id)
            .unwrap_or(order.len());
        (order, rank)
    }

    /// Asks every peer's `/health` whether it aggregates, every `roles_refresh` (every
    /// second while one is silent in the first period, as a network starts).
    async fn discover_roles(self: Arc<Self>, stop: CancellationToken) {
        let started = tokio::time::Instant::now();
        loop {
            let mut asks = JoinSet::new();
            for m in self.ctx.monitors().nodes() {
                if *m.id == *self.ctx.node_id {
                    continue;
                }
                let peers = self.ctx.peers.clone();
                let (id, url) = (m.id.clone(), m.url.clone());
                asks.spawn(async move {
                    let a: Answer<serde_json::Value> = peers.get(&url, "/health", &[]).await;
                    match a {
                        Answer::Ok(v) => (id, Some(v["aggregator"].as_bool().unwrap_or(false))),
                        _ => (id, None),
                    }
                });
            }
            let mut roles = HashMap::new();
            let mut silent = 0;
            while let Some(Ok((id, a))) = asks.join_next().await {
                silent += usize::from(a.is_none());
                roles.insert(id, a.unwrap_or(false));
            }
            *self.aggregators.lock().expect("roles lock") = roles;
            // While a peer is silent in the first refresh period (the network
            // starting), ask again within a second: a node not known to aggregate is
            // not ranked, and each would think itself first.
            let next = if silent > 0 && started.elapsed() < self.pace.roles_refresh {
                self.pace.roles_refresh.min(Duration::from_secs(1))
            } else {
                self.pace.roles_refresh
            };
            if sleep_or_stop(&stop, next).await {
                return;
            }
        }
    }

    /// Posts `[]` when nothing has been finalized for the heartbeat interval. The
    /// aggregators take turns here too: each waits the interval plus its rank for
    /// this round (keyed on `log_time`) × a step (a tenth of the interval, at least
    /// the 250 ms a heartbeat takes to reach the replicas), plus a little jitter, so
    /// one heartbeat is usually posted per round however many aggregate, and a
    /// silent first-ranked node only delays the next one. Timed on the monotonic
    /// clock: whole seconds would put every rank on the same second.
    async fn heartbeats(self: Arc<Self>, stop: CancellationToken) {
        let interval = self.pace.heartbeat;
        let step = (interval / 10).max(Duration::from_millis(250));
        let check = (step / 5).clamp(Duration::from_millis(20), Duration::from_secs(1));
        let mut last_posted: Option<tokio::time::Instant> = None;
        let mut failures = 0u32;
        loop {
            if sleep_or_stop(&stop, check).await {
                return;
            }
            let idle = self.ctx.status.idle();
            let since_post = last_posted.map_or(Duration::MAX, |t| t.elapsed());
            let round = self.ctx.status.log_time();
            let rank = rank_of(
                &self.ctx.node_id,
                &self.candidates(),
                "heartbeat",
                NodeState::Up,
                round,
            );
            let due = if failures > 0 {
                (interval * failures.min(6)).min(self.pace.retry_max.max(interval))
            } else {
                interval + step * rank as u32 + step.mul_f64(rand::thread_rng().gen_range(0.0..0.5))
            };
            if idle < due || since_post < due {
                continue;
            }
            match self.client.submit("[]").await {
                Ok(()) => {
                    metrics::heartbeat_posted();
                    tracing::debug!(idle_ms = idle.as_millis() as u64, rank, "heartbeat posted");
                    failures = 0;
                    last_posted = Some(tokio::time::Instant::now());
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(error = %e, "heartbeat not posted: the sequencer is unavailable");
                    }
                    // Try again after a back-off, not at every check.
                    last_posted = Some(tokio::time::Instant::now());
                }
            }
        }
    }

    /// Certifies settled epochs: every settled epoch without a certificate (oldest
    /// first, at most [`CERTIFY_BACKLOG`] behind the newest settled one, none before
    /// monitoring began) gets one, the aggregators taking turns by rank as for
    /// changes.
    async fn certify(self: Arc<Self>, stop: CancellationToken) {
        let every = self.pace.reconcile_interval.max(Duration::from_millis(500));
        loop {
            if sleep_or_stop(&stop, every).await {
                return;
            }
            let Ok(fresh) = self.ctx.status.check() else {
                continue;
            };
            if !self.ctx.is_member(&self.ctx.net()) {
                continue;
            }
            let answers = &self.ctx.answers;
            // The newest epoch that ended at or before the settled watermark.
            let last = answers.epoch_of(fresh.settled) - 1;
            let first = match answers.first_monitored_epoch().await {
                Ok(Some(f)) => f,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "aggregator cannot read the replica");
                    continue;
                }
            };
            for n in first.max(last - CERTIFY_BACKLOG + 1)..=last {
                match self.ctx.store.has_certificate(n).await {
                    Ok(false) => {}
                    Ok(true) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "aggregator cannot read the replica");
                        break;
                    }
                }
                if self.certify_epoch(n, &stop).await {
                    return;
                }
            }
        }
    }

    /// One turn at certifying epoch `n`; true when stopped.
    async fn certify_epoch(&self, n: i64, stop: &CancellationToken) -> bool {
        let (order, rank) = self.turns("livenessd-epoch-certificate", NodeState::Up, n);
        let jitter = self
            .pace
            .start_jitter
            .mul_f64(rand::thread_rng().gen_range(0.0..1.0));
        // Until the turn, stand down as soon as the certificate is applied.
        match self
            .await_certificate(n, self.pace.rank_step * rank as u32 + jitter, stop)
            .await
        {
            Waited::Applied => return false,
            Waited::Stopped => return true,
            Waited::TimedOut => {}
        }
        // A nearby-ranked node certifying this epoch is waited for: a certificate
        // needs no haste, and each one posted costs every replica a table.
        let ask = crate::pursuit::to_ask(&order, rank);
        let step = self
            .pace
            .rank_step
            .max(self.pace.confirm_timeout / crate::pursuit::MAX_DEFERRALS);
        let mut deferrals = 0;
        loop {
            if matches!(self.ctx.store.has_certificate(n).await, Ok(true)) {
                return false;
            }
            if ask.is_empty() {
                break;
            }
            let answers = self.consult(&ask, ("epoch", n.to_string())).await;
            if !defer_epoch(n, &answers, self.pace.confirm_timeout, deferrals) {
                break;
            }
            deferrals += 1;
            metrics::aggregator_deferred();
            match self.await_certificate(n, step, stop).await {
                Waited::Applied => return false,
                Waited::Stopped => return true,
                Waited::TimedOut => {}
            }
        }
        let _told = ToldEpoch(&self.ctx.pursuits, n);
        self.ctx.pursuits.certifying(n, Phase::Gathering);
        let Ok(fresh) = self.ctx.status.check() else {
            return false;
        };
        let table = match self.ctx.answers.epoch_table(n, fresh.settled).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(epoch = n, error = %e, "epoch table not computed");
                return false;
            }
        };
        if table.rows.is_empty() {
            return false;
        }
        let net = self.ctx.net();
        if !self.ctx.is_member(&net) {
            return false;
        }
        let own = self.ctx.signer.sign_epoch(&table, &net.id, net.version);
        let statement = own.statement.clone();
        let msg = statement.message();
        let Ok(own_sig) = crate::crypto::bls::Signature::from_hex(&own.signature) else {
            return false;
        };
        let wanted = statement.clone();
        let g = self
            .ctx
            .peers
            .gather(
                Collection {
                    set: &net.monitors,
                    me: &self.ctx.node_id,
                    msg: msg.as_bytes(),
                    stop_at_quorum: true,
                },
                own_sig,
                move |peers, m| {
                    let path = format!("/v1/certificates/epochs/{n}/signature");
                    async move { peers.get::<CertificateSignature>(&m.url, &path, &[]).await }
                },
                |s: &CertificateSignature| {
                    if s.statement == wanted {
                        Ok(s.signature.clone())
                    } else {
                        Err(format!(
                            "its table differs ({} rows, root {}; network version {})",
                            s.statement.rows, s.statement.root, s.statement.network_version
                        ))
                    }
                },
            )
            .await;
        if !net.monitors.quorum_reached(g.stake) {
            tracing::warn!(epoch = n, signed = g.stake, total = net.monitors.total_stake(),
                refusals = ?g.refusals, "epoch certificate: no quorum; nothing posted");
            return false;
        }
        let cert = Certificate::new(
            statement,
            g.aggregate().expect("own signature").to_hex(),
            g.non_signers(&net.monitors),
        );
        if let Err(e) = self.client.submit(&json!([cert]).to_string()).await {
            tracing::warn!(epoch = n, error = %e, "posting the epoch certificate failed");
            return false;
        }
        metrics::certificate_posted();
        self.ctx.pursuits.certifying(n, Phase::Held);
        tracing::info!(epoch = n, rows = cert.rows, root = %cert.root,
            nonsigners = ?cert.non_signing_nodes, "epoch certificate posted");
        matches!(
            self.await_certificate(n, self.pace.confirm_timeout, stop)
                .await,
            Waited::Stopped
        )
    }

    /// Waits up to `within` for epoch `n`'s certificate to be applied.
    async fn await_certificate(
        &self,
        n: i64,
        within: Duration,
        stop: &CancellationToken,
    ) -> Waited {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if matches!(self.ctx.store.has_certificate(n).await, Ok(true)) {
                return Waited::Applied;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            if sleep_or_stop(stop, (deadline - now).min(TURN_CHECK)).await {
                return Waited::Stopped;
            }
        }
        Waited::TimedOut
    }

    /// Drives one target to `desired` in the replicated log.
    async fn pursue(&self, address: &str, desired: NodeState, stop: &CancellationToken) {
        // Whatever happens, this node says it does nothing about the target after.
        let _told = Told(&self.ctx.pursuits, address);
        // Take turns: wait for the nodes ranked before this one.
        let since = match self.ctx.store.state_of(address).await {
            Ok(t) => t.since,
            Err(e) => {
                tracing::warn!(error = %e, "aggregator cannot read the replica");
                return;
            }
        };
        let (order, rank) = self.turns(address, desired, since);
        self.ctx.pursuits.waiting(address, desired);
        let jitter = self
            .pace
            .start_jitter
            .mul_f64(rand::thread_rng().gen_range(0.0..1.0));
        // Until the turn, stand down as soon as the change is applied or this node
        // no longer sees it: a late-ranked node must not hold the target's pursuit
        // (one at a time) for many steps after the change is done.
        let turn = tokio::time::Instant::now() + self.pace.rank_step * rank as u32 + jitter;
        loop {
            let now = tokio::time::Instant::now();
            if now >= turn {
                break;
            }
            if sleep_or_stop(stop, (turn - now).min(TURN_CHECK)).await {
                return;
            }
            if matches!(self.ctx.store.state_of(address).await, Ok(s) if s.state == desired) {
                if rank > 0 {
                    metrics::aggregator_stood_down();
                }
                return;
            }
            if self.ctx.prober.view().get(address).map(|d| d.state) != Some(desired) {
                return;
            }
        }
        let max_age = self.proof_max_age();
        // At the turn: a nearby-ranked node may already hold a proof, or be gathering.
        let mut held: Option<Event> = None;
        let mut deferrals = 0;
        loop {
            match self.ctx.store.state_of(address).await {
                Ok(s) if s.state == desired => {
                    if rank > 0 {
                        metrics::aggregator_stood_down();
                    }
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "aggregator cannot read the replica"),
                _ => {}
            }
            if self.ctx.prober.view().get(address).map(|d| d.state) != Some(desired) {
                return;
            }
            let ask = crate::pursuit::to_ask(&order, rank);
            if ask.is_empty() {
                break;
            }
            let answers: Vec<Option<PursuitView>> =
                self.consult(&ask, ("address", address.to_owned())).await;
            tracing::debug!(%address, state = %desired, rank, asked = ask.len(),
                answered = answers.iter().flatten().count(), deferrals, "turn");
            let monitors = self.ctx.monitors();
            let wanted = Wanted {
                address,
                state: desired,
                since,
                now: self.ctx.clock.now(),
                max_age,
                gather_bound: self.pace.confirm_timeout,
                deferrals,
            };
            match decide(&wanted, &answers, |e| {
                monitors
                    .verify_quorum(&e.message(), &e.aggregated_signature, &e.non_signing_nodes)
                    .is_ok()
            }) {
                Decision::Adopt(event) => {
                    metrics::aggregator_proof_adopted();
                    tracing::debug!(%address, state = %desired, timestamp = event.timestamp,
                        "a nearby-ranked aggregator holds a proof; waiting for it to apply");
                    self.ctx.pursuits.held(&event);
                    if self.await_replication(address, desired, stop).await {
                        metrics::aggregator_stood_down();
                        return;
                    }
                    held = Some(event);
                    break;
                }
                Decision::Defer => {
                    deferrals += 1;
                    metrics::aggregator_deferred();
                    if sleep_or_stop(stop, self.pace.rank_step).await {
                        return;
                    }
                }
                Decision::Gather => {
                    tracing::debug!(%address, state = %desired, rank, "gathering a proof");
                    break;
                }
            }
        }
        let mut backoff = self.pace.retry_initial;
        loop {
            match self.ctx.store.state_of(address).await {
                Ok(s) if s.state == desired => {
                    if rank > 0 && held.is_none() {
                        metrics::aggregator_stood_down();
                    }
                    return;
                }
                // History moved past the proof held (another change applied after it).
                Ok(s) if held.as_ref().is_some_and(|e| s.since > e.timestamp) => return,
                Err(e) => tracing::warn!(error = %e, "aggregator cannot read the replica"),
                _ => {}
            }
            if held
                .as_ref()
                .is_some_and(|e| self.ctx.clock.now() - e.timestamp >= max_age)
            {
                // Too old for the replicas to accept: only now a fresh proof.
                tracing::info!(%address, state = %desired, "held proof expired; gathering a fresh one");
                held = None;
                self.ctx.pursuits.clear(address);
            }
            if held.is_none() {
                if self.ctx.prober.view().get(address).map(|d| d.state) != Some(desired) {
                    return;
                }
                if let Err(why) = self.ctx.status.check() {
                    tracing::debug!(%address, reason = %why, "replica stale: pursuit waits");
                } else {
                    metrics::aggregator_attempt();
                    self.ctx.pursuits.gathering(address, desired);
                    match self.attempt(address, desired).await {
                        Ok(event) => {
                            self.ctx.pursuits.held(&event);
                            held = Some(event);
                        }
                        Err(AttemptError::ChangedMind(..)) => return,
                        Err(e) => {
                            self.ctx.pursuits.clear(address);
                            metrics::aggregator_no_quorum();
                            tracing::warn!(%address, state = %desired, error = %e,
                                "suspected change not confirmed by a quorum; nothing posted");
                        }
                    }
                }
            }
            if let Some(event) = &held {
                match self.client.submit(&json!([event]).to_string()).await {
                    Ok(()) => {
                        metrics::aggregator_event_posted(desired);
                        tracing::info!(%address, state = %desired, timestamp = event.timestamp,
                            nonsigners = ?event.non_signing_nodes, "event posted");
                        if self.await_replication(address, desired, stop).await {
                            return;
                        }
                        metrics::aggregator_resubmission();
                    }
                    Err(e) => {
                        metrics::aggregator_submit_failed();
                        tracing::warn!(%address, error = %e, "posting the event failed; keeping its proof");
                    }
                }
            }
            if sleep_or_stop(stop, backoff).await {
                return;
            }
            backoff = (backoff * 2).min(self.pace.retry_max);
        }
    }

    /// Asks the aggregators `ids` what they are doing about a target or an epoch
    /// (`query`), all at once, each for at most one rank step (between 200 ms and
    /// 2 s); `None` for a node doing nothing, or not answering in time.
    async fn consult<T>(&self, ids: &[String], query: (&'static str, String)) -> Vec<Option<T>>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let wait = self
            .pace
            .rank_step
            .clamp(Duration::from_millis(200), Duration::from_secs(2));
        let monitors = self.ctx.monitors();
        let mut asks = JoinSet::new();
        for m in ids.iter().filter_map(|id| monitors.get(id)) {
            let peers = self.ctx.peers.clone();
            let url = m.url.clone();
            let q = [query.clone()];
            asks.spawn(async move {
                let a =
                    tokio::time::timeout(wait, peers.get::<Option<T>>(&url, "/v1/pursuits", &q))
                        .await;
                match a {
                    Ok(Answer::Ok(v)) => v,
                    _ => None,
                }
            });
        }
        let mut out = Vec::with_capacity(ids.len());
        while let Some(r) = asks.join_next().await {
            out.push(r.unwrap_or(None));
        }
        out
    }

    /// How old a proof may be for this node to post it: the replicas take an event
    /// up to `max_event_age` older than its sync point, less a margin for the time it
    /// takes to be finalized (the clock drift allowance, at most half the age).
    fn proof_max_age(&self) -> i64 {
        let s = &self.ctx.settings;
        s.max_event_age - s.max_clock_drift.min(s.max_event_age / 2)
    }

    /// Waits for the posted change to be applied; false on timeout.
    async fn await_replication(
        &self,
        address: &str,
        desired: NodeState,
        stop: &CancellationToken,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + self.pace.confirm_timeout;
        while tokio::time::Instant::now() < deadline {
            if matches!(self.ctx.store.state_of(address).await, Ok(s) if s.state == desired) {
                return true;
            }
            if sleep_or_stop(stop, Duration::from_millis(50)).await {
                return true;
            }
        }
        false
    }

    /// Gathers a quorum proof of `address` being `state` now.
    pub async fn attempt(&self, address: &str, state: NodeState) -> Result<Event, AttemptError> {
        let ctx = &self.ctx;
        let timestamp = ctx.clock.now();
        // This node's own fresh observation first: it signs only what it sees.
        let obs = ctx
            .prober
            .probe(address)
            .await
            .filter(|o| o.state() == state)
            .ok_or_else(|| AttemptError::ChangedMind(address.to_owned(), state))?;
        let (_, own) = ctx
            .signer
            .attest_signed(&obs, timestamp)
            .map_err(|_| AttemptError::ChangedMind(address.to_owned(), state))?;
        let msg = state_message(address, state, timestamp);
        let query_address = address.to_owned();
        let monitors = ctx.monitors();
        let g = ctx
            .peers
            .gather(
                Collection {
                    set: &monitors,
                    me: &ctx.node_id,
                    msg: msg.as_bytes(),
                    stop_at_quorum: true,
                },
                own,
                move |peers, m| {
                    let q = [
                        ("address", query_address.clone()),
                        ("timestamp", timestamp.to_string()),
                    ];
                    async move { peers.get::<StateAttestation>(&m.url, "/state", &q).await }
                },
                |a: &StateAttestation| {
                    if a.address == address && a.state == state && a.timestamp == timestamp {
                        Ok(a.signature.clone())
                    } else {
                        Err(format!("saw {} at {}", a.state, a.timestamp))
                    }
                },
            )
            .await;
        if !monitors.quorum_reached(g.stake) {
            return Err(AttemptError::NoQuorum {
                state,
                signed: g.stake,
                total: monitors.total_stake(),
            });
        }
        Ok(Event {
            address: address.to_owned(),
            state,
            timestamp,
            aggregated_signature: g.aggregate().expect("own signature").to_hex(),
            non_signing_nodes: g.non_signers(&monitors),
        })
    }
}

/// How a wait for something to be applied ended.
enum Waited {
    Applied,
    Stopped,
    TimedOut,
}

/// Clears this node's word on an epoch when its certifying ends, however it ends.
struct ToldEpoch<'a>(&'a Pursuits, i64);

impl Drop for ToldEpoch<'_> {
    fn drop(&mut self) {
        self.0.certified(self.1);
    }
}

/// Clears this node's word on a target when its pursuit ends, however it ends.
struct Told<'a>(&'a Pursuits, &'a str);

impl Drop for Told<'_> {
    fn drop(&mut self) {
        self.0.clear(self.1);
    }
}

async fn sleep_or_stop(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_a_permutation_the_same_on_every_node_and_vary_per_change() {
        let ids: Vec<String> = (1..=64).map(|i| format!("Node{i}")).collect();
        for (address, state, since) in [
            ("0xA", NodeState::Down, 0),
            ("0xA", NodeState::Up, 1_700),
            ("0xB", NodeState::Down, 0),
        ] {
            let mut ranks: Vec<usize> = ids
                .iter()
                .map(|me| rank_of(me, &ids, address, state, since))
                .collect();
            ranks.sort();
            assert_eq!(ranks, (0..64).collect::<Vec<_>>());
        }
        let first = |address: &str, state, since| {
            ids.iter()
                .find(|me| rank_of(me, &ids, address, state, since) == 0)
                .unwrap()
                .clone()
        };
        let leaders: HashSet<String> = (0..20)
            .map(|k| first("0xA", NodeState::Down, k * 100))
            .collect();
        assert!(
            leaders.len() > 5,
            "the first rank moves between changes: {leaders:?}"
        );
        // Leaving a node out (unreachable) moves everyone after it up by one.
        let leader = first("0xA", NodeState::Down, 0);
        let rest: Vec<String> = ids.iter().filter(|i| **i != leader).cloned().collect();
        let second = rest
            .iter()
            .find(|me| rank_of(me, &ids, "0xA", NodeState::Down, 0) == 1)
            .unwrap();
        assert_eq!(rank_of(second, &rest, "0xA", NodeState::Down, 0), 0);
    }
}
