//! The aggregator: when this node's prober confirms a state that differs from the
//! replicated one, gather signed `/state` answers from the other monitoring nodes
//! until the signers' stake reaches the quorum, aggregate them with this node's own,
//! and post the event to Zellular — retrying until the replicated state agrees or the
//! prober changes its mind.
//!
//! Election-free: any number of aggregators may run. The apply rules make a second
//! report of the same change a no-op, and each aggregator keeps at most one
//! submission in flight per target.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::crypto::bls::Signature;
use crate::events::{state_message, Event, MonitorSet, NodeState};
use crate::http::AppState;
use crate::metrics;
use crate::prober::{now_secs, Prober};
use crate::signer::{Signer, StateAttestation};
use crate::store::node::ReplicaStore;
use crate::zellular::Client;

/// Aggregator timing.
#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    /// How long to wait for a posted event to show up in the replica before
    /// gathering a fresh proof and posting again.
    pub confirm_timeout: Duration,
    /// First pause after a failed attempt (no quorum, sequencer down); doubles.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Before the first attempt, wait a random time up to this, then look again:
    /// another aggregator's event may already have landed.
    pub start_jitter: Duration,
    /// How often the prober's view and the replica are compared (catches anything
    /// a missed notification would leave behind).
    pub reconcile_interval: Duration,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        AggregatorConfig {
            confirm_timeout: Duration::from_secs(30),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            start_jitter: Duration::from_millis(300),
            reconcile_interval: Duration::from_secs(5),
        }
    }
}

/// Why one attempt did not post an event.
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
    #[error("submitting failed: {0}")]
    Submit(#[from] crate::zellular::SubmitError),
    #[error("replica unreadable: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// The aggregator task.
pub struct Aggregator {
    node_id: String,
    monitors: Arc<MonitorSet>,
    prober: Prober,
    signer: Arc<Signer>,
    store: ReplicaStore,
    client: Client,
    peers: reqwest::Client,
    peer_timeout: Duration,
    cfg: AggregatorConfig,
    /// Targets with a pursuit running: at most one submission in flight each.
    in_flight: Mutex<HashSet<String>>,
    /// Set once the replica has caught up: before that its states are stale and
    /// nothing is pursued.
    caught_up: Arc<AtomicBool>,
}

impl Aggregator {
    /// An aggregator over the node's shared state, posting through `client`.
    pub fn new(state: &AppState, client: Client, cfg: AggregatorConfig) -> Arc<Self> {
        Arc::new(Aggregator {
            node_id: state.node_id.to_string(),
            monitors: state.monitors.clone(),
            prober: state.prober.clone(),
            signer: state.signer.clone(),
            store: state.store.clone(),
            client,
            peers: state.peers.clone(),
            peer_timeout: state.peer_timeout,
            cfg,
            in_flight: Mutex::new(HashSet::new()),
            caught_up: state.caught_up.clone(),
        })
    }

    /// Watches the prober until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut changes = self.prober.subscribe();
        let mut tick = tokio::time::interval(self.cfg.reconcile_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pursuits = JoinSet::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = changes.recv() => {}
                _ = tick.tick() => {}
                Some(_) = pursuits.join_next(), if !pursuits.is_empty() => continue,
            }
            if !self.caught_up.load(Ordering::Relaxed) {
                continue;
            }
            let replicated = match self.store.states().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "aggregator cannot read the replica");
                    continue;
                }
            };
            for (address, damper) in self.prober.view() {
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

    async fn replicated(&self, address: &str) -> Result<NodeState, crate::store::StoreError> {
        Ok(self
            .store
            .states()
            .await?
            .get(address)
            .map_or(NodeState::Up, |t| t.state))
    }

    fn locally(&self, address: &str) -> Option<NodeState> {
        self.prober.view().get(address).map(|d| d.state)
    }

    /// Drives one target to `desired` in the replicated log, or gives up when the
    /// replica already agrees or this node no longer sees `desired`.
    async fn pursue(&self, address: &str, desired: NodeState, stop: &CancellationToken) {
        let jitter = self
            .cfg
            .start_jitter
            .mul_f64(rand::thread_rng().gen_range(0.0..1.0));
        let mut backoff = self.cfg.retry_initial;
        if sleep_or_stop(stop, jitter).await {
            return;
        }
        loop {
            match self.replicated(address).await {
                Ok(s) if s == desired => return,
                Err(e) => tracing::warn!(error = %e, "aggregator cannot read the replica"),
                _ => {}
            }
            if self.locally(address) != Some(desired) {
                return;
            }
            match self.attempt(address, desired).await {
                Ok(event) => {
                    tracing::info!(%address, state = %desired, timestamp = event.timestamp,
                        nonsigners = ?event.non_signing_nodes, "event posted");
                    if self.await_replication(address, desired, stop).await {
                        return;
                    }
                    metrics::inc("aggregator_resubmissions_total", &[]);
                    // Not applied in time (the sequencer or the replica lags):
                    // back off before gathering a fresh proof.
                    if sleep_or_stop(stop, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(self.cfg.retry_max);
                }
                Err(AttemptError::ChangedMind(..)) => return,
                Err(e) => {
                    if matches!(e, AttemptError::NoQuorum { .. }) {
                        metrics::inc("aggregator_no_quorum_total", &[]);
                        tracing::warn!(%address, state = %desired, error = %e,
                            "suspected change not confirmed by a quorum; nothing posted");
                    } else {
                        metrics::inc("aggregator_errors_total", &[]);
                        tracing::warn!(%address, error = %e, "aggregation attempt failed");
                    }
                    if sleep_or_stop(stop, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(self.cfg.retry_max);
                }
            }
            if stop.is_cancelled() {
                return;
            }
        }
    }

    /// Waits for the posted change to be applied; false on timeout.
    async fn await_replication(
        &self,
        address: &str,
        desired: NodeState,
        stop: &CancellationToken,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + self.cfg.confirm_timeout;
        while tokio::time::Instant::now() < deadline {
            if matches!(self.replicated(address).await, Ok(s) if s == desired) {
                return true;
            }
            if self.locally(address) != Some(desired)
                || sleep_or_stop(stop, Duration::from_millis(50)).await
            {
                return true;
            }
        }
        false
    }

    /// Gathers a quorum proof of `address` being `state` now and posts it.
    pub async fn attempt(&self, address: &str, state: NodeState) -> Result<Event, AttemptError> {
        let timestamp = now_secs();
        // This node's own fresh observation first: it signs only what it sees.
        let obs = self
            .prober
            .probe(address)
            .await
            .filter(|o| o.state() == state)
            .ok_or_else(|| AttemptError::ChangedMind(address.to_owned(), state))?;
        let (_, own_sig) = self
            .signer
            .attest_signed(&obs, timestamp)
            .map_err(|_| AttemptError::ChangedMind(address.to_owned(), state))?;
        let msg = state_message(address, state, timestamp);
        let mut sigs = vec![own_sig];
        let mut signed: HashSet<String> = HashSet::from([self.node_id.clone()]);
        let mut stake = self.monitors.get(&self.node_id).map_or(0.0, |m| m.stake);

        let mut peers: Vec<_> = self
            .monitors
            .nodes()
            .iter()
            .filter(|m| m.id != self.node_id)
            .collect();
        peers.shuffle(&mut rand::thread_rng());
        let mut asks = JoinSet::new();
        for m in peers {
            if self.monitors.quorum_reached(stake) {
                break;
            }
            let (http, id, url, timeout) = (
                self.peers.clone(),
                m.id.clone(),
                m.url.clone(),
                self.peer_timeout,
            );
            let query = [
                ("address", address.to_owned()),
                ("timestamp", timestamp.to_string()),
            ];
            asks.spawn(async move {
                let r = http
                    .get(format!("{url}/state"))
                    .query(&query)
                    .timeout(timeout)
                    .send()
                    .await;
                let att = match r {
                    Ok(r) => crate::http::peer_json::<StateAttestation>(r).await,
                    Err(_) => None,
                };
                (id, att)
            });
        }
        while !self.monitors.quorum_reached(stake) {
            let Some(res) = asks.join_next().await else {
                break;
            };
            let Ok((id, Some(att))) = res else { continue };
            let Some(m) = self.monitors.get(&id) else {
                continue;
            };
            if att.address != address || att.state != state || att.timestamp != timestamp {
                continue;
            }
            match Signature::from_hex(&att.signature) {
                Ok(sig) if sig.verify(&m.public_key, msg.as_bytes()) => {
                    if signed.insert(id) {
                        sigs.push(sig);
                        stake += m.stake;
                    }
                }
                _ => {
                    metrics::inc(
                        "peer_answers_rejected_total",
                        &[("reason", "bad_signature")],
                    );
                    tracing::warn!(peer = %id, "attestation with a bad signature ignored");
                }
            }
        }
        // Stop asking: the quorum is reached (or nobody is left).
        asks.abort_all();
        if !self.monitors.quorum_reached(stake) {
            return Err(AttemptError::NoQuorum {
                state,
                signed: stake,
                total: self.monitors.total_stake(),
            });
        }
        let aggregated = Signature::aggregate(&sigs).expect("at least our own signature");
        let event = Event {
            address: address.to_owned(),
            state,
            timestamp,
            aggregated_signature: aggregated.to_hex(),
            non_signing_nodes: self
                .monitors
                .nodes()
                .iter()
                .filter(|m| !signed.contains(&m.id))
                .map(|m| m.id.clone())
                .collect(),
        };
        let batch = json!([event]).to_string();
        self.client.submit(&batch).await?;
        metrics::inc(
            "aggregator_events_posted_total",
            &[("state", state.as_str())],
        );
        Ok(event)
    }
}

async fn sleep_or_stop(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}
