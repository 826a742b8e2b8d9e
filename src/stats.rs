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

/// How often the figures of the targets that are down are recomputed.
const DOWN_EVERY: Duration = Duration::from_secs(10);

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
    /// Whether it is news: finalized within the freshness bound of the node's clock
    /// when applied. False for history replayed after a restart or on a new
    /// replica (no notification for those).
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
#[derive(Clone)]
pub struct Stats {
    inner: Arc<RwLock<Vec<TargetStats>>>,
    /// Whether the figures were computed once (the first time in the background,
    /// so a node with many targets and a long history starts serving at once).
    computed: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            inner: Default::default(),
            computed: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }
}

impl Stats {
    /// Waits, at most `within`, until the figures have been computed once; false if
    /// they have not (the caller shows what there is).
    pub async fn computed(&self, within: Duration) -> bool {
        let mut rx = self.computed.subscribe();
        let done = tokio::time::timeout(within, rx.wait_for(|done| *done))
            .await
            .is_ok_and(|r| r.is_ok());
        done
    }

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
        let mut addresses: Vec<String> = answers.addresses().to_vec();
        addresses.sort();
        let out = compute(answers, store, &addresses, now).await?;
        *self.inner.write().expect("stats lock") = out;
        self.computed.send_replace(true);
        Ok(())
    }

    /// Recomputes the figures of some targets only (after a change of theirs).
    pub async fn refresh_some(
        &self,
        answers: &Answers,
        store: &ReplicaStore,
        addresses: &[String],
        now: i64,
    ) -> Result<(), AnswerError> {
        let fresh = compute(answers, store, addresses, now).await?;
        let mut all = self.inner.write().expect("stats lock");
        for t in fresh {
            match all.binary_search_by(|x| x.address.cmp(&t.address)) {
                Ok(i) => all[i] = t,
                Err(i) => all.insert(i, t),
            }
        }
        Ok(())
    }
}

/// The figures of `addresses` (and their gauges).
async fn compute(
    answers: &Answers,
    store: &ReplicaStore,
    addresses: &[String],
    now: i64,
) -> Result<Vec<TargetStats>, AnswerError> {
    {
        let states = store.states().await?;
        let monitoring = store.monitoring().await?;
        let epoch = answers.epoch_of(now);
        let mut out = Vec::with_capacity(addresses.len());
        for a in addresses.iter().cloned() {
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
        Ok(out)
    }
}

impl Stats {
    /// Keeps the cache fresh until `stop`: all of it every `every`, and a target's
    /// own figures after each applied event of it (which also records the detection
    /// latency).
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
        // Every few seconds: has a target's monitoring begun? (A heartbeat can start
        // it without any event.) Everything is recomputed then, and every `every`.
        let mut tick = tokio::time::interval(Duration::from_secs(2).min(every));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_full = tokio::time::Instant::now();
        let mut last_down = tokio::time::Instant::now();
        let mut monitoring = store.monitoring().await.unwrap_or_default();
        // The first figures, while the node already replicates and serves.
        if let Err(e) = self.refresh(&answers, &store, clock.now()).await {
            tracing::warn!(error = %e, "status figures not computed");
        }
        loop {
            let changed: Option<Vec<String>> = tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    let now_monitoring = store.monitoring().await.unwrap_or_default();
                    if now_monitoring != monitoring || last_full.elapsed() >= every {
                        monitoring = now_monitoring;
                        last_full = tokio::time::Instant::now();
                        None
                    } else if last_down.elapsed() >= DOWN_EVERY {
                        // An outage's figures change by the second: the targets
                        // that are down (usually few) more often.
                        last_down = tokio::time::Instant::now();
                        let down: Vec<String> = self
                            .all()
                            .into_iter()
                            .filter(|t| t.state == "down")
                            .map(|t| t.address)
                            .collect();
                        if down.is_empty() {
                            continue;
                        }
                        Some(down)
                    } else {
                        continue;
                    }
                }
                a = applied.recv() => match a {
                    Ok(a) => {
                        let mut changed = vec![a.event.address.clone()];
                        let seen = |a: &AppliedEvent| {
                            if let Some(started) =
                                prober.take_detection_start(&a.event.address, a.event.state)
                            {
                                metrics::detection_latency(started.elapsed());
                            }
                        };
                        seen(&a);
                        // Several events at once: one refresh of their targets.
                        while let Ok(b) = applied.try_recv() {
                            seen(&b);
                            if !changed.contains(&b.event.address) {
                                changed.push(b.event.address.clone());
                            }
                        }
                        Some(changed)
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => None,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            let r = match changed {
                Some(c) => self.refresh_some(&answers, &store, &c, clock.now()).await,
                None => self.refresh(&answers, &store, clock.now()).await,
            };
            if let Err(e) = r {
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
