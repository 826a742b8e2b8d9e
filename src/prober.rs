//! Probes the monitored targets: all concurrently each interval (bounded, with
//! jitter and a per-probe timeout), with flap damping, publishing confirmed changes.
//!
//! HTTP health follows the EigenLayer node API: 200 up, 206 up but degraded,
//! anything else (or no answer in time) down. A TCP target is up when it accepts a
//! connection.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use tokio::sync::{broadcast, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{ProbeConfig, Target};
use crate::events::NodeState;
use crate::metrics;

/// What one probe saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Up,
    /// HTTP 206: up, but the node reports itself degraded.
    Degraded,
    Down,
}

impl Health {
    pub fn state(self) -> NodeState {
        match self {
            Health::Up | Health::Degraded => NodeState::Up,
            Health::Down => NodeState::Down,
        }
    }
}

/// A probe this node made itself. Only this module creates one, so whatever signs
/// an `Observation` signs what the node observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    address: String,
    health: Health,
    /// Unix seconds when the probe finished.
    at: i64,
}

impl Observation {
    pub fn address(&self) -> &str {
        &self.address
    }
    pub fn health(&self) -> Health {
        self.health
    }
    pub fn state(&self) -> NodeState {
        self.health.state()
    }
    pub fn at(&self) -> i64 {
        self.at
    }
}

/// A state change confirmed by flap damping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmed {
    pub address: String,
    pub state: NodeState,
    /// Unix seconds of the probe that confirmed it.
    pub at: i64,
}

/// Flap damping of one target: `failures_to_down` consecutive failures before
/// down, `successes_to_up` consecutive successes before up again.
#[derive(Debug, Clone, Serialize)]
pub struct Damper {
    pub state: NodeState,
    pub last: Option<Health>,
    pub failures: u32,
    pub successes: u32,
    pub last_probe_at: i64,
}

impl Default for Damper {
    fn default() -> Self {
        Damper {
            state: NodeState::Up,
            last: None,
            failures: 0,
            successes: 0,
            last_probe_at: 0,
        }
    }
}

impl Damper {
    /// Records one probe; returns the new state if it changed.
    pub fn record(
        &mut self,
        h: Health,
        at: i64,
        failures_to_down: u32,
        successes_to_up: u32,
    ) -> Option<NodeState> {
        self.last = Some(h);
        self.last_probe_at = at;
        match h.state() {
            NodeState::Down => {
                self.failures = self.failures.saturating_add(1);
                self.successes = 0;
                if self.state == NodeState::Up && self.failures >= failures_to_down {
                    self.state = NodeState::Down;
                    return Some(NodeState::Down);
                }
            }
            NodeState::Up => {
                self.successes = self.successes.saturating_add(1);
                self.failures = 0;
                if self.state == NodeState::Down && self.successes >= successes_to_up {
                    self.state = NodeState::Up;
                    return Some(NodeState::Up);
                }
            }
        }
        None
    }
}

#[derive(Debug, Clone)]
enum Check {
    Http(String),
    Tcp(String),
}

struct Inner {
    cfg: ProbeConfig,
    http: reqwest::Client,
    targets: Vec<(String, Check)>,
    view: RwLock<HashMap<String, Damper>>,
    changes: broadcast::Sender<Confirmed>,
}

/// The prober; cheap to clone.
#[derive(Clone)]
pub struct Prober {
    inner: Arc<Inner>,
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Prober {
    pub fn new(targets: &[Target], cfg: ProbeConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms))
            .pool_max_idle_per_host(1)
            .build()
            .unwrap_or_default();
        let targets: Vec<(String, Check)> = targets
            .iter()
            .map(|t| {
                let check = match (&t.http, &t.tcp) {
                    (Some(u), _) => Check::Http(u.clone()),
                    (None, Some(a)) => Check::Tcp(a.clone()),
                    (None, None) => Check::Tcp(String::new()),
                };
                (t.address.clone(), check)
            })
            .collect();
        let view = targets
            .iter()
            .map(|(a, _)| (a.clone(), Damper::default()))
            .collect();
        let (changes, _) = broadcast::channel(1024);
        Prober {
            inner: Arc::new(Inner {
                cfg,
                http,
                targets,
                view: RwLock::new(view),
                changes,
            }),
        }
    }

    /// Confirmed changes, as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<Confirmed> {
        self.inner.changes.subscribe()
    }

    /// The local view: damped state and last probe of every target.
    pub fn view(&self) -> HashMap<String, Damper> {
        self.inner.view.read().expect("view lock").clone()
    }

    pub fn knows(&self, address: &str) -> bool {
        self.inner.targets.iter().any(|(a, _)| a == address)
    }

    async fn check(&self, check: &Check) -> Health {
        let timeout = Duration::from_millis(self.inner.cfg.timeout_ms);
        match check {
            Check::Http(url) => match self.inner.http.get(url).send().await {
                Ok(r) if r.status().as_u16() == 200 => Health::Up,
                Ok(r) if r.status().as_u16() == 206 => Health::Degraded,
                _ => Health::Down,
            },
            Check::Tcp(addr) => {
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                    Ok(Ok(_)) => Health::Up,
                    _ => Health::Down,
                }
            }
        }
    }

    /// Probes `address` now (no damping); `None` for an unknown address.
    pub async fn probe(&self, address: &str) -> Option<Observation> {
        let (_, check) = self.inner.targets.iter().find(|(a, _)| a == address)?;
        let health = self.check(check).await;
        metrics::inc("probes_total", &[("result", health_label(health))]);
        Some(Observation {
            address: address.to_owned(),
            health,
            at: now_secs(),
        })
    }

    fn record(&self, obs: &Observation) {
        let cfg = &self.inner.cfg;
        let changed = {
            let mut view = self.inner.view.write().expect("view lock");
            let d = view.entry(obs.address.clone()).or_default();
            d.record(
                obs.health,
                obs.at,
                cfg.failures_to_down,
                cfg.successes_to_up,
            )
        };
        if let Some(state) = changed {
            metrics::inc("probe_transitions_total", &[("state", state.as_str())]);
            tracing::info!(address = %obs.address, %state, "target state confirmed");
            let _ = self.inner.changes.send(Confirmed {
                address: obs.address.clone(),
                state,
                at: obs.at,
            });
        }
    }

    /// One round: every target once, at most `concurrency` at a time, each after a
    /// random delay up to `jitter_ms`.
    pub async fn round(&self) {
        let sem = Arc::new(Semaphore::new(self.inner.cfg.concurrency));
        let mut set = JoinSet::new();
        for i in 0..self.inner.targets.len() {
            let p = self.clone();
            let sem = sem.clone();
            let jitter = self.inner.cfg.jitter_ms;
            set.spawn(async move {
                if jitter > 0 {
                    let d = rand::thread_rng().gen_range(0..=jitter);
                    tokio::time::sleep(Duration::from_millis(d)).await;
                }
                let _permit = sem.acquire().await.expect("semaphore open");
                let (address, check) = &p.inner.targets[i];
                let health = p.check(check).await;
                metrics::inc("probes_total", &[("result", health_label(health))]);
                p.record(&Observation {
                    address: address.clone(),
                    health,
                    at: now_secs(),
                });
            });
        }
        while set.join_next().await.is_some() {}
    }

    /// Probes every interval until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.inner.cfg.interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.round() => {}
            }
        }
    }
}

fn health_label(h: Health) -> &'static str {
    match h {
        Health::Up => "up",
        Health::Degraded => "degraded",
        Health::Down => "down",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damping_needs_consecutive_results() {
        let mut d = Damper::default();
        let (f, s) = (3, 2);
        assert_eq!(d.record(Health::Down, 1, f, s), None);
        assert_eq!(d.record(Health::Down, 2, f, s), None);
        assert_eq!(
            d.record(Health::Up, 3, f, s),
            None,
            "a success resets the failures"
        );
        assert_eq!(d.record(Health::Down, 4, f, s), None);
        assert_eq!(d.record(Health::Down, 5, f, s), None);
        assert_eq!(d.record(Health::Down, 6, f, s), Some(NodeState::Down));
        assert_eq!(
            d.record(Health::Down, 7, f, s),
            None,
            "no repeat while down"
        );
        assert_eq!(d.record(Health::Degraded, 8, f, s), None);
        assert_eq!(d.record(Health::Down, 9, f, s), None);
        assert_eq!(d.record(Health::Up, 10, f, s), None);
        assert_eq!(
            d.record(Health::Degraded, 11, f, s),
            Some(NodeState::Up),
            "206 counts as up"
        );
        assert_eq!(d.last, Some(Health::Degraded));
    }
}
