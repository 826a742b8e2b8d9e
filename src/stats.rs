//! Per-target figures for people and dashboards, kept fresh in the background:
//! the replicated state (or `unknown` before monitoring began), uptime over the last
//! 24 h, 7 d and the current epoch (monitored time only), the recent outages. The
//! status page, the badges and the Prometheus gauges read this cache, so a page
//! view or a scrape costs no query. Also where applied changes meet this node's own
//! probes: the detection-latency histogram.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::answers::{AnswerError, Answers};
use crate::clock::Clock;
use crate::events::{Event, NodeState};
use crate::metrics;
use crate::prober::Prober;
use crate::store::node::ReplicaStore;

/// How many recent outages are kept per target.
pub const RECENT_OUTAGES: usize = 10;

/// An event this replica applied, as announced to the rest of the node.
#[derive(Debug, Clone)]
pub struct AppliedEvent {
    pub zellular_index: u64,
    pub event: Event,
    /// The sync time the event was checked against.
    pub log_time: i64,
    /// Since when the address was in its previous state (`None`: the initial one).
    pub previous_since: Option<i64>,
    /// The network version the event was verified under.
    pub network_version: u64,
    /// Whether the replica had reached the sequencer's head: false while it replays
    /// history (no notification for those).
    pub live: bool,
}

/// One down interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outage {
    pub start: i64,
    /// `None` while it lasts.
    pub end: Option<i64>,
}

/// What is known of one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStats {
    pub address: String,
    /// `up`, `down`, or `unknown` (not monitored yet).
    pub state: &'static str,
    /// Since when, if known.
    pub since: Option<i64>,
    pub monitored_since: Option<i64>,
    pub uptime_24h: Option<f64>,
    pub uptime_7d: Option<f64>,
    pub uptime_epoch: Option<f64>,
    /// Most recent first.
    pub recent_outages: Vec<Outage>,
}

/// The cache; cheap to clone.
#[derive(Clone, Default)]
pub struct Stats {
    inner: Arc<RwLock<Vec<TargetStats>>>,
}

impl Stats {
    /// Every target's figures, in address order.
    pub fn all(&self) -> Vec<TargetStats> {
        self.inner.read().expect("stats lock").clone()
    }

    pub fn get(&self, address: &str) -> Option<TargetStats> {
        self.inner
            .read()
            .expect("stats lock")
            .iter()
            .find(|t| t.address == address)
            .cloned()
    }

    /// Recomputes every target's figures and the per-target gauges.
    pub async fn refresh(
        &self,
        answers: &Answers,
        store: &ReplicaStore,
        now: i64,
    ) -> Result<(), AnswerError> {
        let states = store.states().await?;
        let monitoring = store.monitoring().await?;
        let mut addresses: Vec<String> = answers.addresses().to_vec();
        addresses.sort();
        let epoch = answers.epoch_of(now);
        let mut out = Vec::with_capacity(addresses.len());
        for a in addresses {
            let since = monitoring.get(&a).copied().flatten();
            let st = states.get(&a);
            let (state, state_since) = match (since, st) {
                (None, _) => ("unknown", None),
                (Some(m), Some(t)) => (t.state.as_str(), Some(t.since.max(m))),
                (Some(m), None) => ("up", Some(m)),
            };
            let uptime_24h = answers.uptime(&a, now - 86_400, now).await?;
            let uptime_7d = answers.uptime(&a, now - 7 * 86_400, now).await?;
            let uptime_epoch = answers
                .epoch_summary(&a, epoch, now)
                .await
                .ok()
                .and_then(|s| s.uptime_ratio);
            let recent_outages = recent_outages(store, &a, since).await?;
            metrics::target_up(
                &a,
                match state {
                    "up" => Some(NodeState::Up),
                    "down" => Some(NodeState::Down),
                    _ => None,
                },
            );
            metrics::target_uptime(&a, uptime_epoch, uptime_24h);
            out.push(TargetStats {
                address: a,
                state,
                since: state_since,
                monitored_since: since,
                uptime_24h,
                uptime_7d,
                uptime_epoch,
                recent_outages,
            });
        }
        *self.inner.write().expect("stats lock") = out;
        Ok(())
    }

    /// Keeps the cache fresh until `stop`: every `every`, and at once after each
    /// applied event (which also records the detection latency).
    pub async fn run(
        self,
        src: Sources,
        mut applied: broadcast::Receiver<AppliedEvent>,
        every: Duration,
        stop: CancellationToken,
    ) {
        let Sources {
            answers,
            store,
            prober,
            clock,
        } = src;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
                a = applied.recv() => match a {
                    Ok(a) => {
                        if let Some(started) = prober.take_detection_start(&a.event.address, a.event.state) {
                            metrics::detection_latency(started.elapsed());
                        }
                        // Several events at once: one refresh.
                        while applied.try_recv().is_ok() {}
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
            if let Err(e) = self.refresh(&answers, &store, clock.now()).await {
                tracing::warn!(error = %e, "per-target figures not refreshed");
            }
        }
    }
}

/// Where the figures come from.
pub struct Sources {
    pub answers: Answers,
    pub store: ReplicaStore,
    pub prober: Prober,
    pub clock: Clock,
}

/// The last outages of `address` (most recent first), within monitored time.
async fn recent_outages(
    store: &ReplicaStore,
    address: &str,
    since: Option<i64>,
) -> Result<Vec<Outage>, AnswerError> {
    let Some(since) = since else {
        return Ok(Vec::new());
    };
    // Two events per outage (its down and its up), newest first.
    let events = store
        .recent_events(address, 2 * RECENT_OUTAGES as u32 + 1)
        .await?;
    let mut out = Vec::new();
    let mut end: Option<i64> = None;
    for (state, t) in events {
        match state {
            NodeState::Up => end = Some(t),
            NodeState::Down => {
                if end.is_some_and(|e| e <= since) {
                    break;
                }
                out.push(Outage {
                    start: t.max(since),
                    end,
                });
                end = None;
                if out.len() == RECENT_OUTAGES {
                    break;
                }
            }
        }
    }
    Ok(out)
}
