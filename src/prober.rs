//! Probes the monitored targets: all concurrently each interval (bounded, with
//! jitter and a per-probe timeout), with flap damping, publishing confirmed changes.
//! It keeps, per target, the last failure's cause and every probe's latency.
//!
//! HTTP health follows the EigenLayer node API: 200 up, 206 up but degraded (up
//! unless `degraded_is_up = false`, the reference node's reading), anything else
//! (or no answer in time) down. A TCP target is up when it accepts a connection.
//!
//! `/state` asks go through [`Prober::probe_shared`]: concurrent asks for one target
//! share one probe, with a bound on waiters per target, so a hung or flooded target
//! cannot starve another. The aggregator's own probes ([`Prober::probe`]) never
//! wait behind them.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use tokio::sync::{broadcast, watch, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{ProbeConfig, Target};
use crate::events::NodeState;
use crate::metrics;

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// The target answered with this HTTP status.
    Status { code: u16 },
    /// Nothing listens at the address (connection refused).
    Refused,
    /// No answer within the probe timeout.
    Timeout,
    /// The TLS handshake failed (untrusted or invalid certificate, protocol error).
    Tls { detail: String },
    /// The host name did not resolve.
    Dns { detail: String },
    /// The connection broke while the answer was read.
    Body { detail: String },
    /// Any other connection failure.
    Connect { detail: String },
}

impl Cause {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Cause::Status { .. } => "http_status",
            Cause::Refused => "refused",
            Cause::Timeout => "timeout",
            Cause::Tls { .. } => "tls",
            Cause::Dns { .. } => "dns",
            Cause::Body { .. } => "body",
            Cause::Connect { .. } => "connect",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Status { code } => write!(f, "HTTP {code}"),
            Cause::Refused => f.write_str("connection refused"),
            Cause::Timeout => f.write_str("timed out"),
            Cause::Tls { detail } => write!(f, "TLS: {detail}"),
            Cause::Dns { detail } => write!(f, "DNS: {detail}"),
            Cause::Body { detail } => write!(f, "answer broken off: {detail}"),
            Cause::Connect { detail } => write!(f, "connection failed: {detail}"),
        }
    }
}

/// What one probe saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "health", rename_all = "lowercase")]
pub enum Health {
    Up,
    /// HTTP 206: the node reports itself partially healthy.
    Degraded,
    Down {
        cause: Cause,
    },
}

impl Health {
    /// The state this health means, under the `degraded_is_up` reading of 206.
    pub fn state(&self, degraded_is_up: bool) -> NodeState {
        match self {
            Health::Up => NodeState::Up,
            Health::Degraded if degraded_is_up => NodeState::Up,
            Health::Degraded => NodeState::Down,
            Health::Down { .. } => NodeState::Down,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Degraded => "degraded",
            Health::Down { .. } => "down",
        }
    }
}

/// A probe this node made itself. Only this module creates one, so whatever signs
/// an `Observation` signs what the node observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    address: String,
    health: Health,
    state: NodeState,
    /// Unix seconds when the probe finished.
    at: i64,
    latency: Duration,
}

impl Observation {
    pub fn address(&self) -> &str {
        &self.address
    }
    pub fn health(&self) -> &Health {
        &self.health
    }
    pub fn state(&self) -> NodeState {
        self.state
    }
    pub fn at(&self) -> i64 {
        self.at
    }
    pub fn latency(&self) -> Duration {
        self.latency
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
/// down, `successes_to_up` consecutive successes before up again; and what the
/// last probes saw.
#[derive(Debug, Clone, Serialize)]
pub struct Damper {
    pub state: NodeState,
    pub last: Option<Health>,
    pub failures: u32,
    pub successes: u32,
    /// Unix seconds of the last probe (0: never probed).
    pub last_probe_at: i64,
    /// Latency of the last probe, seconds.
    pub last_latency_seconds: f64,
    /// The cause of the last failed probe, kept after the target recovers.
    pub last_failure: Option<Cause>,
    /// Unix seconds of the last failed probe.
    pub last_failure_at: Option<i64>,
    /// When the run of probes disagreeing with `state` began (detection latency).
    #[serde(skip)]
    pub streak_started: Option<Instant>,
    /// The last confirmed change and when its run began, until the replica applies
    /// it (detection latency).
    #[serde(skip)]
    pub confirmed: Option<(NodeState, Instant)>,
}

impl Default for Damper {
    fn default() -> Self {
        Damper {
            state: NodeState::Up,
            last: None,
            failures: 0,
            successes: 0,
            last_probe_at: 0,
            last_latency_seconds: 0.0,
            last_failure: None,
            last_failure_at: None,
            streak_started: None,
            confirmed: None,
        }
    }
}

impl Damper {
    /// Records one probe that means `seen`; returns the new state if it changed.
    pub fn record(
        &mut self,
        seen: NodeState,
        at: i64,
        failures_to_down: u32,
        successes_to_up: u32,
    ) -> Option<NodeState> {
        self.last_probe_at = at;
        if seen == self.state {
            self.streak_started = None;
        } else if self.streak_started.is_none() {
            self.streak_started = Some(Instant::now());
        }
        match seen {
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

/// One shared `/state` probe in flight, and how many wait for it.
struct Flight {
    result: watch::Receiver<Option<Observation>>,
    waiters: AtomicUsize,
}

/// Most `/state` asks that may wait for one target's probe; more are refused.
pub const MAX_WAITERS_PER_TARGET: usize = 256;

struct Inner {
    cfg: ProbeConfig,
    clock: Clock,
    http: reqwest::Client,
    /// The targets in force (replaced when a network change adds or removes one).
    targets: RwLock<Arc<Vec<(String, Check)>>>,
    view: RwLock<HashMap<String, Damper>>,
    changes: broadcast::Sender<Confirmed>,
    /// Shared `/state` probes in flight, per target.
    flights: Mutex<HashMap<String, Arc<Flight>>>,
}

/// The prober; cheap to clone.
#[derive(Clone)]
pub struct Prober {
    inner: Arc<Inner>,
}

/// `/state` could not get a probe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("unknown address")]
    Unknown,
    #[error("too many state requests for this target at once")]
    Busy,
}

/// Classifies a failed HTTP request.
fn http_cause(e: &reqwest::Error) -> Cause {
    if e.is_timeout() {
        return Cause::Timeout;
    }
    // The chain below reqwest: hyper-util's connect error, io errors, rustls errors.
    let mut chain = Vec::new();
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        chain.push(s.to_string());
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Cause::Refused,
                std::io::ErrorKind::TimedOut => return Cause::Timeout,
                _ => {}
            }
        }
        if s.downcast_ref::<rustls::Error>().is_some() {
            return Cause::Tls {
                detail: s.to_string(),
            };
        }
        src = s.source();
    }
    let detail = chain.last().cloned().unwrap_or_default();
    let all = chain.join(": ").to_lowercase();
    if all.contains("dns error") || all.contains("failed to lookup address") {
        Cause::Dns { detail }
    } else if all.contains("certificate") || all.contains("tls") || all.contains("handshake") {
        Cause::Tls { detail }
    } else if e.is_body() || e.is_decode() {
        Cause::Body { detail }
    } else {
        Cause::Connect { detail }
    }
}

impl Prober {
    pub fn new(
        targets: &[Target],
        cfg: ProbeConfig,
        clock: Clock,
        roots: &crate::http_client::Roots,
    ) -> Self {
        let http = crate::http_client::builder_with(roots)
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms))
            .pool_max_idle_per_host(1)
            .build()
            .unwrap_or_default();
        let targets = checks(targets);
        let view = targets
            .iter()
            .map(|(a, _)| (a.clone(), Damper::default()))
            .collect();
        let (changes, _) = broadcast::channel(1024);
        Prober {
            inner: Arc::new(Inner {
                cfg,
                clock,
                http,
                targets: RwLock::new(Arc::new(targets)),
                view: RwLock::new(view),
                changes,
                flights: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Replaces the targets (a network change): new ones are probed from the
    /// next round, removed ones are forgotten.
    pub fn set_targets(&self, targets: &[Target]) {
        let next = checks(targets);
        let mut view = self.inner.view.write().expect("view lock");
        view.retain(|a, _| next.iter().any(|(b, _)| a == b));
        for (a, _) in &next {
            view.entry(a.clone()).or_default();
        }
        *self.inner.targets.write().expect("targets lock") = Arc::new(next);
    }

    fn targets(&self) -> Arc<Vec<(String, Check)>> {
        self.inner.targets.read().expect("targets lock").clone()
    }

    fn find(&self, address: &str) -> Option<Check> {
        self.targets()
            .iter()
            .find(|(a, _)| a == address)
            .map(|(_, c)| c.clone())
    }

    /// Confirmed changes, as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<Confirmed> {
        self.inner.changes.subscribe()
    }

    /// The local view: damped state and last probe of every target.
    pub fn view(&self) -> HashMap<String, Damper> {
        self.inner.view.read().expect("view lock").clone()
    }

    /// The local view of one target.
    pub fn view_of(&self, address: &str) -> Option<Damper> {
        self.inner
            .view
            .read()
            .expect("view lock")
            .get(address)
            .cloned()
    }

    pub fn knows(&self, address: &str) -> bool {
        self.targets().iter().any(|(a, _)| a == address)
    }

    async fn check(&self, check: &Check) -> Health {
        let timeout = Duration::from_millis(self.inner.cfg.timeout_ms);
        match check {
            Check::Http(url) => match self.inner.http.get(url).send().await {
                Ok(r) if r.status().as_u16() == 200 => Health::Up,
                Ok(r) if r.status().as_u16() == 206 => Health::Degraded,
                Ok(r) => Health::Down {
                    cause: Cause::Status {
                        code: r.status().as_u16(),
                    },
                },
                Err(e) => Health::Down {
                    cause: http_cause(&e),
                },
            },
            Check::Tcp(addr) => {
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                    Ok(Ok(_)) => Health::Up,
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        Health::Down {
                            cause: Cause::Refused,
                        }
                    }
                    Ok(Err(e)) => Health::Down {
                        cause: if e.to_string().contains("lookup") {
                            Cause::Dns {
                                detail: e.to_string(),
                            }
                        } else {
                            Cause::Connect {
                                detail: crate::os_error::reason(&e),
                            }
                        },
                    },
                    Err(_) => Health::Down {
                        cause: Cause::Timeout,
                    },
                }
            }
        }
    }

    /// Probes a target now and counts it.
    async fn observe(&self, address: &str, check: &Check) -> Observation {
        let started = Instant::now();
        let health = self.check(check).await;
        let latency = started.elapsed();
        metrics::probe(
            address,
            health.label(),
            latency,
            match &health {
                Health::Down { cause } => Some(cause.label()),
                _ => None,
            },
        );
        Observation {
            address: address.to_owned(),
            state: health.state(self.inner.cfg.degraded_is_up),
            health,
            at: self.inner.clock.now(),
            latency,
        }
    }

    /// Probes `address` now (no damping, not shared); `None` for an unknown address.
    pub async fn probe(&self, address: &str) -> Option<Observation> {
        let check = self.find(address)?;
        Some(self.observe(address, &check).await)
    }

    /// Probes `address` for a `/state` ask: joins the probe already in flight for
    /// it, or starts one that later asks join. The probe runs in its own task, so a
    /// caller that gives up does not cancel it for the others.
    pub async fn probe_shared(&self, address: &str) -> Result<Observation, ProbeError> {
        let check = self.find(address).ok_or(ProbeError::Unknown)?;
        let flight = {
            let mut flights = self.inner.flights.lock().expect("flights lock");
            match flights.get(address) {
                Some(f) => {
                    if f.waiters.fetch_add(1, Ordering::Relaxed) >= MAX_WAITERS_PER_TARGET {
                        f.waiters.fetch_sub(1, Ordering::Relaxed);
                        return Err(ProbeError::Busy);
                    }
                    metrics::state_probe_shared();
                    f.clone()
                }
                None => {
                    let (tx, rx) = watch::channel(None);
                    let f = Arc::new(Flight {
                        result: rx,
                        waiters: AtomicUsize::new(1),
                    });
                    flights.insert(address.to_owned(), f.clone());
                    let me = self.clone();
                    let key = address.to_owned();
                    let mine = f.clone();
                    tokio::spawn(async move {
                        let obs = me.observe(&key, &check).await;
                        // Later asks start a new probe: this one is done.
                        let mut flights = me.inner.flights.lock().expect("flights lock");
                        if flights.get(&key).is_some_and(|g| Arc::ptr_eq(g, &mine)) {
                            flights.remove(&key);
                        }
                        drop(flights);
                        let _ = tx.send(Some(obs));
                    });
                    f
                }
            }
        };
        let mut rx = flight.result.clone();
        let obs = rx
            .wait_for(Option::is_some)
            .await
            .map(|v| v.clone())
            .ok()
            .flatten();
        flight.waiters.fetch_sub(1, Ordering::Relaxed);
        obs.ok_or(ProbeError::Busy)
    }

    fn record(&self, obs: &Observation) {
        let cfg = &self.inner.cfg;
        let (changed, cause_changed, streak) = {
            let mut view = self.inner.view.write().expect("view lock");
            let d = view.entry(obs.address.clone()).or_default();
            let mut cause_changed = None;
            if let Health::Down { cause } = &obs.health {
                if d.last_failure.as_ref() != Some(cause)
                    || !matches!(d.last, Some(Health::Down { .. }))
                {
                    cause_changed = Some(cause.clone());
                }
                d.last_failure = Some(cause.clone());
                d.last_failure_at = Some(obs.at);
            }
            d.last = Some(obs.health.clone());
            d.last_latency_seconds = obs.latency.as_secs_f64();
            let changed = d.record(obs.state, obs.at, cfg.failures_to_down, cfg.successes_to_up);
            let streak = d.streak_started;
            if let Some(state) = changed {
                d.confirmed = streak.map(|t| (state, t));
            }
            (changed, cause_changed, streak)
        };
        metrics::probe_success(&obs.address, obs.state == NodeState::Up);
        if let Some(cause) = cause_changed {
            // One line per change of cause, not per probe.
            tracing::info!(address = %obs.address, %cause, "probe failing");
        }
        if let Some(state) = changed {
            metrics::probe_transition(state);
            let why = match &obs.health {
                Health::Down { cause } => cause.to_string(),
                Health::Degraded => "HTTP 206 (degraded)".into(),
                Health::Up => "answering".into(),
            };
            tracing::info!(address = %obs.address, %state, cause = %why,
                after_s = streak.map(|s| s.elapsed().as_secs_f64()), "target state confirmed");
            let _ = self.inner.changes.send(Confirmed {
                address: obs.address.clone(),
                state,
                at: obs.at,
            });
        }
    }

    /// When the first probe of the run that made this node confirm `state` for
    /// `address` happened, taken once (the replica applied the change: detection
    /// latency).
    pub fn take_detection_start(&self, address: &str, state: NodeState) -> Option<Instant> {
        let mut view = self.inner.view.write().expect("view lock");
        let d = view.get_mut(address)?;
        match d.confirmed {
            Some((s, t)) if s == state => {
                d.confirmed = None;
                Some(t)
            }
            _ => None,
        }
    }

    /// One round: every target once, at most `concurrency` at a time, each after a
    /// random delay up to `jitter_ms`.
    pub async fn round(&self) {
        let sem = Arc::new(Semaphore::new(self.inner.cfg.concurrency));
        let mut set = JoinSet::new();
        let targets = self.targets();
        for i in 0..targets.len() {
            let p = self.clone();
            let targets = targets.clone();
            let sem = sem.clone();
            let jitter = self.inner.cfg.jitter_ms;
            set.spawn(async move {
                if jitter > 0 {
                    let d = rand::thread_rng().gen_range(0..=jitter);
                    tokio::time::sleep(Duration::from_millis(d)).await;
                }
                let _permit = sem.acquire().await.expect("semaphore open");
                let (address, check) = &targets[i];
                let obs = p.observe(address, check).await;
                // A target removed during the round is not recorded.
                if Arc::ptr_eq(&p.targets(), &targets) || p.knows(address) {
                    p.record(&obs);
                }
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

/// How each target is checked.
fn checks(targets: &[Target]) -> Vec<(String, Check)> {
    targets
        .iter()
        .map(|t| {
            let check = match (&t.http, &t.tcp) {
                (Some(u), _) => Check::Http(u.clone()),
                (None, Some(a)) => Check::Tcp(a.clone()),
                (None, None) => Check::Tcp(String::new()),
            };
            (t.address.clone(), check)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damping_needs_consecutive_results() {
        let mut d = Damper::default();
        let (f, s) = (3, 2);
        use NodeState::{Down, Up};
        assert_eq!(d.record(Down, 1, f, s), None);
        assert_eq!(d.record(Down, 2, f, s), None);
        assert_eq!(d.record(Up, 3, f, s), None, "a success resets the failures");
        assert_eq!(d.record(Down, 4, f, s), None);
        assert_eq!(d.record(Down, 5, f, s), None);
        assert_eq!(d.record(Down, 6, f, s), Some(Down));
        assert_eq!(d.record(Down, 7, f, s), None, "no repeat while down");
        assert_eq!(d.record(Up, 8, f, s), None);
        assert_eq!(d.record(Down, 9, f, s), None);
        assert_eq!(d.record(Up, 10, f, s), None);
        assert_eq!(d.record(Up, 11, f, s), Some(Up));
    }

    #[test]
    fn a_206_is_up_or_down_as_configured() {
        assert_eq!(Health::Degraded.state(true), NodeState::Up);
        assert_eq!(Health::Degraded.state(false), NodeState::Down);
        assert_eq!(
            Health::Down {
                cause: Cause::Refused
            }
            .state(true),
            NodeState::Down
        );
    }
}
