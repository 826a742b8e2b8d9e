//! Every metric of the process, on the Prometheus client library
//! (`prometheus-client`): typed families with HELP and TYPE, the `livenessd_`
//! prefix, base units (`_seconds`, ratios 0–1, `_total`), plus the standard
//! `process_*` family. Rendered in the text exposition format at `GET /metrics`.
//!
//! Every rejected input increments a counter labelled with the reason, so an
//! operator can alert on it. Per-target families carry an `address` label; their
//! cardinality is the number of configured targets.

use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::events::NodeState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Address {
    address: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AddressReason {
    address: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AddressWindow {
    address: String,
    /// `epoch` (the current one) or `24h`.
    window: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteOnly {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Class {
    class: String,
}

type FGauge = Gauge<f64, AtomicU64>;

/// The families.
struct Metrics {
    registry: Registry,
    // replication
    zellular_index: Gauge,
    log_time: Gauge,
    log_time_lag: Gauge,
    since_sync: Gauge,
    replica_fresh: Gauge,
    stale_episodes: Counter,
    events_applied: Counter,
    events_rejected: Family<Reason, Counter>,
    events_duplicate: Counter,
    network_version: Gauge,
    network_changes: Counter,
    network_signatures: Family<Reason, Counter>,
    certificates_applied: Counter,
    last_certified_epoch: Gauge,
    certificate_signatures: Family<Reason, Counter>,
    certificates_posted: Counter,
    performance_score: Family<Address, Gauge>,
    replicator_errors: Family<Kind, Counter>,
    gateway_switches: Family<Reason, Counter>,
    // zellular client
    zellular_request_errors: Family<Op, Counter>,
    zellular_batches_submitted: Counter,
    zellular_sync_points: Counter,
    zellular_integrity_errors: Counter,
    // probes
    probes: Family<ResultLabel, Counter>,
    probe_success: Family<Address, Gauge>,
    probe_duration: Family<Address, Histogram>,
    probe_failures: Family<AddressReason, Counter>,
    probe_transitions: Family<StateLabel, Counter>,
    target_up: Family<Address, Gauge>,
    target_uptime: Family<AddressWindow, FGauge>,
    detection_latency: Histogram,
    // aggregator
    aggregator_attempts: Counter,
    aggregator_no_quorum: Counter,
    aggregator_events_posted: Family<StateLabel, Counter>,
    aggregator_resubmissions: Counter,
    aggregator_submit_failures: Counter,
    aggregator_stood_down: Counter,
    aggregator_deferrals: Counter,
    aggregator_proofs_adopted: Counter,
    heartbeats: Counter,
    // peers, attestations, signed answers
    attestations: Counter,
    attestations_refused: Family<Reason, Counter>,
    state_probes_shared: Counter,
    peer_answers_rejected: Family<Reason, Counter>,
    aggregate_downtime_failed: Counter,
    signed_answers_refused: Family<Reason, Counter>,
    // http
    http_requests: Family<Route, Counter>,
    http_duration: Family<RouteOnly, Histogram>,
    http_connections_open: Gauge,
    http_connections_rejected: Family<Reason, Counter>,
    http_rate_limited: Family<Class, Counter>,
    webhook_notifications: Family<ResultLabel, Counter>,
    // dev sequencer
    devseq_batches: Counter,
    devseq_finalizations: Counter,
    devseq_rejected: Family<Reason, Counter>,
    devseq_errors: Family<Op, Counter>,
}

fn latency_buckets() -> Histogram {
    // 1 ms … ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    fn new() -> Metrics {
        let mut top = Registry::default();
        top.register_collector(Box::new(crate::process_metrics::ProcessCollector::new()));
        let r = top.sub_registry_with_prefix("livenessd");
        let m = Metrics {
            registry: Registry::default(),
            zellular_index: Default::default(),
            log_time: Default::default(),
            log_time_lag: Default::default(),
            since_sync: Default::default(),
            replica_fresh: Default::default(),
            stale_episodes: Default::default(),
            events_applied: Default::default(),
            events_rejected: Default::default(),
            events_duplicate: Default::default(),
            network_version: Default::default(),
            network_changes: Default::default(),
            network_signatures: Default::default(),
            certificates_applied: Default::default(),
            last_certified_epoch: Default::default(),
            certificate_signatures: Default::default(),
            certificates_posted: Default::default(),
            performance_score: Default::default(),
            replicator_errors: Default::default(),
            gateway_switches: Default::default(),
            zellular_request_errors: Default::default(),
            zellular_batches_submitted: Default::default(),
            zellular_sync_points: Default::default(),
            zellular_integrity_errors: Default::default(),
            probes: Default::default(),
            probe_success: Default::default(),
            probe_duration: Family::new_with_constructor(latency_buckets),
            probe_failures: Default::default(),
            probe_transitions: Default::default(),
            target_up: Default::default(),
            target_uptime: Default::default(),
            detection_latency: Histogram::new(exponential_buckets(0.25, 2.0, 12)),
            aggregator_attempts: Default::default(),
            aggregator_no_quorum: Default::default(),
            aggregator_events_posted: Default::default(),
            aggregator_resubmissions: Default::default(),
            aggregator_submit_failures: Default::default(),
            aggregator_stood_down: Default::default(),
            aggregator_deferrals: Default::default(),
            aggregator_proofs_adopted: Default::default(),
            heartbeats: Default::default(),
            attestations: Default::default(),
            attestations_refused: Default::default(),
            state_probes_shared: Default::default(),
            peer_answers_rejected: Default::default(),
            aggregate_downtime_failed: Default::default(),
            signed_answers_refused: Default::default(),
            http_requests: Default::default(),
            http_duration: Family::new_with_constructor(latency_buckets),
            http_connections_open: Default::default(),
            http_connections_rejected: Default::default(),
            http_rate_limited: Default::default(),
            webhook_notifications: Default::default(),
            devseq_batches: Default::default(),
            devseq_finalizations: Default::default(),
            devseq_rejected: Default::default(),
            devseq_errors: Default::default(),
        };
        let s = Unit::Seconds;
        r.register(
            "zellular_index",
            "Last Zellular index applied to the replica",
            m.zellular_index.clone(),
        );
        r.register_with_unit("log_time", "Timestamp of the newest verified sync point applied (the replica's clock), unix seconds", s.clone(), m.log_time.clone());
        r.register_with_unit(
            "log_time_lag",
            "How far log_time is behind this node's clock",
            s.clone(),
            m.log_time_lag.clone(),
        );
        r.register_with_unit(
            "since_last_sync_point",
            "Time since a newly finalized batch was last applied",
            s.clone(),
            m.since_sync.clone(),
        );
        r.register(
            "replica_fresh",
            "1 while the replica is fresh (signs and aggregates), 0 while stale",
            m.replica_fresh.clone(),
        );
        r.register(
            "replica_stale_episodes",
            "Times the replica turned stale",
            m.stale_episodes.clone(),
        );
        r.register(
            "events_applied",
            "Events applied to the replica",
            m.events_applied.clone(),
        );
        r.register("events_rejected", "Finalized items not applied, by reason (duplicates of an applied change are counted apart)", m.events_rejected.clone());
        r.register(
            "events_duplicate",
            "Second reports of the change already in force (several aggregators): no-ops",
            m.events_duplicate.clone(),
        );
        r.register(
            "replicator_errors",
            "Replication failures by kind (store, integrity, transient, unknown_app)",
            m.replicator_errors.clone(),
        );
        r.register(
            "gateway_switches",
            "Switches to another gateway, by reason",
            m.gateway_switches.clone(),
        );
        r.register(
            "network_version",
            "Version of the network in force (1: its genesis)",
            m.network_version.clone(),
        );
        r.register(
            "network_changes_applied",
            "Network changes applied from the log",
            m.network_changes.clone(),
        );
        r.register(
            "network_change_signatures",
            "Asks to sign a network change, by outcome (signed, not_approved, refused)",
            m.network_signatures.clone(),
        );
        r.register(
            "certificates_applied",
            "Epoch certificates applied from the log",
            m.certificates_applied.clone(),
        );
        r.register(
            "last_certified_epoch",
            "The newest epoch with a certificate in the replica (-1: none)",
            m.last_certified_epoch.clone(),
        );
        r.register(
            "certificate_signatures",
            "Asks to sign an epoch's certificate, by outcome (signed, refused)",
            m.certificate_signatures.clone(),
        );
        r.register(
            "aggregator_certificates_posted",
            "Epoch certificates posted to Zellular by this aggregator",
            m.certificates_posted.clone(),
        );
        r.register(
            "eigen_performance_score",
            "0-100: a target's uptime in the newest certified epoch, floor(uptime_ppm / 10000) (absent: not in that epoch's table)",
            m.performance_score.clone(),
        );
        r.register(
            "zellular_request_errors",
            "Failed requests to Zellular gateways, by operation",
            m.zellular_request_errors.clone(),
        );
        r.register(
            "zellular_batches_submitted",
            "Batches accepted by a Zellular gateway",
            m.zellular_batches_submitted.clone(),
        );
        r.register(
            "zellular_sync_points_verified",
            "Finality signatures verified",
            m.zellular_sync_points.clone(),
        );
        r.register(
            "zellular_stream_integrity_errors",
            "Gateway answers that failed verification (chain or signature)",
            m.zellular_integrity_errors.clone(),
        );
        r.register(
            "probes",
            "Probes made, by result (up, degraded, down)",
            m.probes.clone(),
        );
        r.register("probe_success", "This node's own view of a target: 1 if its last probe succeeded (blackbox_exporter's probe_success)", m.probe_success.clone());
        // Histograms carry their unit in the name only (the UNIT line is optional,
        // and some OpenMetrics parsers refuse it on histograms).
        r.register(
            "probe_duration_seconds",
            "Duration of probes, by target, seconds",
            m.probe_duration.clone(),
        );
        r.register("probe_failures", "Failed probes by target and cause (http_status, refused, timeout, tls, dns, body, connect)", m.probe_failures.clone());
        r.register(
            "probe_transitions",
            "Changes of this node's damped view, by new state",
            m.probe_transitions.clone(),
        );
        r.register(
            "target_up",
            "The replicated (quorum-signed) state of a target: 1 up, 0 down",
            m.target_up.clone(),
        );
        r.register(
            "target_uptime_ratio",
            "Uptime over monitored time, 0-1, for the current epoch and the last 24 h",
            m.target_uptime.clone(),
        );
        r.register("detection_latency_seconds", "From the first probe that disagreed with a target's state to the change being applied on this replica, seconds", m.detection_latency.clone());
        r.register(
            "aggregator_attempts",
            "Quorum collections started",
            m.aggregator_attempts.clone(),
        );
        r.register(
            "aggregator_no_quorum",
            "Quorum collections that did not reach the threshold",
            m.aggregator_no_quorum.clone(),
        );
        r.register(
            "aggregator_events_posted",
            "Events posted to Zellular by this aggregator, by state",
            m.aggregator_events_posted.clone(),
        );
        r.register(
            "aggregator_resubmissions",
            "Posted events not applied in time and posted again",
            m.aggregator_resubmissions.clone(),
        );
        r.register(
            "aggregator_submit_failures",
            "Events that could not be posted (the proof is kept)",
            m.aggregator_submit_failures.clone(),
        );
        r.register(
            "aggregator_stood_down",
            "Changes left to a better-ranked aggregator that posted first",
            m.aggregator_stood_down.clone(),
        );
        r.register(
            "aggregator_deferrals",
            "Rank steps waited at a turn because a nearby-ranked aggregator was gathering",
            m.aggregator_deferrals.clone(),
        );
        r.register(
            "aggregator_proofs_adopted",
            "Changes whose proof was taken, checked, from a nearby-ranked aggregator instead of gathered",
            m.aggregator_proofs_adopted.clone(),
        );
        r.register(
            "heartbeats_posted",
            "Empty batches posted to keep log_time moving",
            m.heartbeats.clone(),
        );
        r.register(
            "attestations",
            "Signed /state answers",
            m.attestations.clone(),
        );
        r.register(
            "attestations_refused",
            "/state asks refused, by reason",
            m.attestations_refused.clone(),
        );
        r.register(
            "state_probes_shared",
            "/state asks answered by a probe already in flight",
            m.state_probes_shared.clone(),
        );
        r.register(
            "peer_answers_rejected",
            "Answers from other monitoring nodes not counted, by reason",
            m.peer_answers_rejected.clone(),
        );
        r.register(
            "aggregate_downtime_failed",
            "/aggregate_downtime asks without a quorum",
            m.aggregate_downtime_failed.clone(),
        );
        r.register(
            "signed_answers_refused",
            "Signed answers refused, by reason (stale, unsettled)",
            m.signed_answers_refused.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests by route and status",
            m.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency by route, seconds",
            m.http_duration.clone(),
        );
        r.register(
            "http_connections_open",
            "Open HTTP connections",
            m.http_connections_open.clone(),
        );
        r.register(
            "http_connections_rejected",
            "Connections refused or limited, by reason",
            m.http_connections_rejected.clone(),
        );
        r.register(
            "http_rate_limited",
            "Requests answered 429, by endpoint class",
            m.http_rate_limited.clone(),
        );
        r.register(
            "webhook_notifications",
            "Webhook notifications by result (delivered, retried, undeliverable, dropped_queue_full, dropped_lagged)",
            m.webhook_notifications.clone(),
        );
        r.register(
            "devseq_batches",
            "Batches sequenced by the dev sequencer",
            m.devseq_batches.clone(),
        );
        r.register(
            "devseq_finalizations",
            "Sync points signed by the dev sequencer",
            m.devseq_finalizations.clone(),
        );
        r.register(
            "devseq_rejected",
            "Requests refused by the dev sequencer, by reason",
            m.devseq_rejected.clone(),
        );
        r.register(
            "devseq_errors",
            "Dev sequencer failures, by operation",
            m.devseq_errors.clone(),
        );
        Metrics { registry: top, ..m }
    }
}

fn m() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

/// Every metric in the Prometheus text exposition format.
pub fn render() -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &m().registry)
        .expect("writing to a String does not fail");
    out
}

/// The value of one sample of the rendered text (`name{labels}`), for tests and
/// the status page. Labels must match exactly (order as rendered).
pub fn sample(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want = if labels.is_empty() {
        name.to_owned()
    } else {
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        format!("{name}{{{}}}", l.join(","))
    };
    render().lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        (key == want).then(|| value.parse().ok()).flatten()
    })
}

fn r(s: &str) -> Reason {
    Reason { reason: s.into() }
}

// ---- replication

pub fn replica_position(index: u64, log_time: i64) {
    m().zellular_index.set(index as i64);
    m().log_time.set(log_time);
}

pub fn replica_lag(lag: i64, since_sync: i64) {
    m().log_time_lag.set(lag);
    m().since_sync.set(since_sync);
}

pub fn replica_fresh(fresh: bool) {
    m().replica_fresh.set(i64::from(fresh));
}

pub fn stale_episode() {
    m().stale_episodes.inc();
}

pub fn events_applied(n: u64) {
    m().events_applied.inc_by(n);
}

pub fn event_rejected(reason: &str) {
    m().events_rejected.get_or_create(&r(reason)).inc();
}

pub fn event_duplicate() {
    m().events_duplicate.inc();
}

/// The network version in force (set at start and after each change).
pub fn network_version(v: u64) {
    m().network_version.set(v as i64);
}

pub fn network_change_applied() {
    m().network_changes.inc();
}

/// An ask to sign a network change, by outcome.
pub fn network_change_signature(outcome: &str) {
    m().network_signatures.get_or_create(&r(outcome)).inc();
}

pub fn certificate_applied(epoch: i64) {
    m().certificates_applied.inc();
    m().last_certified_epoch.set(epoch);
}

/// The newest certified epoch at start (-1: none).
pub fn last_certified_epoch(epoch: Option<i64>) {
    m().last_certified_epoch.set(epoch.unwrap_or(-1));
}

pub fn certificate_signature(outcome: &str) {
    m().certificate_signatures.get_or_create(&r(outcome)).inc();
}

pub fn certificate_posted() {
    m().certificates_posted.inc();
}

/// The score of every row of the newest certified epoch; addresses not in it lose theirs.
pub fn performance_scores(scores: &[(String, i64)]) {
    let f = &m().performance_score;
    f.clear();
    for (a, v) in scores {
        f.get_or_create(&Address { address: a.clone() }).set(*v);
    }
}

pub fn replicator_error(kind: &str) {
    m().replicator_errors
        .get_or_create(&Kind { kind: kind.into() })
        .inc();
}

pub fn gateway_switch(reason: &str) {
    m().gateway_switches.get_or_create(&r(reason)).inc();
}

// ---- zellular client

pub fn zellular_request_error(op: &str) {
    m().zellular_request_errors
        .get_or_create(&Op { op: op.into() })
        .inc();
}

pub fn zellular_batch_submitted() {
    m().zellular_batches_submitted.inc();
}

pub fn zellular_sync_point_verified() {
    m().zellular_sync_points.inc();
}

pub fn zellular_integrity_error() {
    m().zellular_integrity_errors.inc();
}

// ---- probes

/// One probe of `address` with `result` (up, degraded, down), its latency and,
/// when it failed, the cause's label.
pub fn probe(address: &str, result: &str, latency: Duration, failure: Option<&str>) {
    let mm = m();
    mm.probes
        .get_or_create(&ResultLabel {
            result: result.into(),
        })
        .inc();
    mm.probe_duration
        .get_or_create(&Address {
            address: address.into(),
        })
        .observe(latency.as_secs_f64());
    if let Some(reason) = failure {
        mm.probe_failures
            .get_or_create(&AddressReason {
                address: address.into(),
                reason: reason.into(),
            })
            .inc();
    }
}

pub fn probe_success(address: &str, ok: bool) {
    m().probe_success
        .get_or_create(&Address {
            address: address.into(),
        })
        .set(i64::from(ok));
}

pub fn probe_transition(state: NodeState) {
    m().probe_transitions
        .get_or_create(&StateLabel {
            state: state.as_str().into(),
        })
        .inc();
}

/// The replicated state of a target (`None`: not monitored yet, no sample).
pub fn target_up(address: &str, state: Option<NodeState>) {
    let a = Address {
        address: address.into(),
    };
    match state {
        Some(s) => {
            m().target_up
                .get_or_create(&a)
                .set(i64::from(s == NodeState::Up));
        }
        None => {
            m().target_up.remove(&a);
        }
    }
}

/// Uptime ratio of a target over the current epoch and the last 24 h.
pub fn target_uptime(address: &str, epoch: Option<f64>, day: Option<f64>) {
    for (window, v) in [("epoch", epoch), ("24h", day)] {
        let key = AddressWindow {
            address: address.into(),
            window: window.into(),
        };
        match v {
            Some(v) => {
                m().target_uptime.get_or_create(&key).set(v);
            }
            None => {
                m().target_uptime.remove(&key);
            }
        }
    }
}

pub fn detection_latency(d: Duration) {
    m().detection_latency.observe(d.as_secs_f64());
}

// ---- aggregator

pub fn aggregator_attempt() {
    m().aggregator_attempts.inc();
}

pub fn aggregator_no_quorum() {
    m().aggregator_no_quorum.inc();
}

pub fn aggregator_event_posted(state: NodeState) {
    m().aggregator_events_posted
        .get_or_create(&StateLabel {
            state: state.as_str().into(),
        })
        .inc();
}

pub fn aggregator_resubmission() {
    m().aggregator_resubmissions.inc();
}

pub fn aggregator_submit_failed() {
    m().aggregator_submit_failures.inc();
}

pub fn aggregator_stood_down() {
    m().aggregator_stood_down.inc();
}

pub fn aggregator_deferred() {
    m().aggregator_deferrals.inc();
}

pub fn aggregator_proof_adopted() {
    m().aggregator_proofs_adopted.inc();
}

pub fn heartbeat_posted() {
    m().heartbeats.inc();
}

// ---- peers and answers

pub fn attestation() {
    m().attestations.inc();
}

pub fn attestation_refused(reason: &str) {
    m().attestations_refused.get_or_create(&r(reason)).inc();
}

pub fn state_probe_shared() {
    m().state_probes_shared.inc();
}

pub fn peer_answer_rejected(reason: &str) {
    m().peer_answers_rejected.get_or_create(&r(reason)).inc();
}

pub fn aggregate_downtime_failed() {
    m().aggregate_downtime_failed.inc();
}

pub fn signed_answer_refused(reason: &str) {
    m().signed_answers_refused.get_or_create(&r(reason)).inc();
}

// ---- http

pub fn http_request(route: &str, status: u16, latency: Duration) {
    let mm = m();
    mm.http_requests
        .get_or_create(&Route {
            route: route.into(),
            status: status.to_string(),
        })
        .inc();
    mm.http_duration
        .get_or_create(&RouteOnly {
            route: route.into(),
        })
        .observe(latency.as_secs_f64());
}

pub fn http_connection_opened() {
    m().http_connections_open.inc();
}

pub fn http_connection_closed() {
    m().http_connections_open.dec();
}

pub fn http_connection_rejected(reason: &str) {
    m().http_connections_rejected
        .get_or_create(&r(reason))
        .inc();
}

pub fn http_rate_limited(class: &str) {
    m().http_rate_limited
        .get_or_create(&Class {
            class: class.into(),
        })
        .inc();
}

pub fn webhook_notifications(result: &str, n: u64) {
    m().webhook_notifications
        .get_or_create(&ResultLabel {
            result: result.into(),
        })
        .inc_by(n);
}

// ---- dev sequencer

pub fn devseq_batch() {
    m().devseq_batches.inc();
}

pub fn devseq_finalization() {
    m().devseq_finalizations.inc();
}

pub fn devseq_rejected(reason: &str) {
    m().devseq_rejected.get_or_create(&r(reason)).inc();
}

pub fn devseq_error(op: &str) {
    m().devseq_errors.get_or_create(&Op { op: op.into() }).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every recorder writes to a registered family that renders (a family
    /// without registration would count in silence).
    #[test]
    fn every_family_is_registered_and_renders() {
        replica_position(1, 2);
        replica_lag(1, 1);
        replica_fresh(true);
        stale_episode();
        events_applied(1);
        event_rejected("x");
        event_duplicate();
        replicator_error("x");
        gateway_switch("x");
        zellular_request_error("x");
        zellular_batch_submitted();
        zellular_sync_point_verified();
        zellular_integrity_error();
        probe("a", "down", Duration::from_millis(1), Some("timeout"));
        probe_success("a", false);
        probe_transition(NodeState::Down);
        target_up("a", Some(NodeState::Up));
        target_uptime("a", Some(1.0), Some(1.0));
        detection_latency(Duration::from_secs(1));
        aggregator_attempt();
        aggregator_no_quorum();
        aggregator_event_posted(NodeState::Down);
        aggregator_resubmission();
        aggregator_submit_failed();
        aggregator_stood_down();
        aggregator_deferred();
        aggregator_proof_adopted();
        heartbeat_posted();
        attestation();
        attestation_refused("x");
        state_probe_shared();
        peer_answer_rejected("x");
        aggregate_downtime_failed();
        signed_answer_refused("x");
        http_request("/x", 200, Duration::from_millis(1));
        http_connection_opened();
        http_connection_rejected("x");
        http_rate_limited("x");
        webhook_notifications("x", 1);
        devseq_batch();
        devseq_finalization();
        devseq_rejected("x");
        devseq_error("x");
        network_version(1);
        network_change_applied();
        network_change_signature("signed");
        certificate_applied(1);
        certificate_signature("signed");
        certificate_posted();
        performance_scores(&[("a".into(), 99)]);
        let text = render();
        let declared: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .filter(|n| n.starts_with("livenessd_"))
            .collect();
        assert_eq!(declared.len(), 56, "every family renders:\n{text}");
        for name in declared {
            assert!(
                text.lines()
                    .any(|l| !l.starts_with('#') && l.starts_with(name)),
                "{name} has no sample"
            );
        }
    }
}
