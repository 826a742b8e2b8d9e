//! The shared context every service of a node takes. It depends on no service
//! module, so services can take it without forming a cycle with the wiring.

use std::sync::Arc;

use crate::answers::Answers;
use crate::clock::Clock;
use crate::events::MonitorSet;
use crate::freshness::ReplicaStatus;
use crate::peers::Peers;
use crate::prober::Prober;
use crate::signer::Signer;
use crate::store::node::ReplicaStore;

/// The runtime knobs services read, from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Network-wide: an event may be at most this much older than its sync point.
    pub max_event_age: i64,
    /// Network-wide: an event may be at most this much later than its sync point.
    pub max_clock_drift: i64,
    /// Heartbeats are posted after this much silence, milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Whether this node runs the aggregator (said at `/health`, for ranking).
    pub aggregator: bool,
    /// This node's URL as its peers reach it (links in notifications).
    pub url: String,
}

/// Everything the node's services share; cheap to clone.
#[derive(Clone)]
pub struct NodeContext {
    pub node_id: Arc<str>,
    pub clock: Clock,
    pub monitors: Arc<MonitorSet>,
    pub prober: Prober,
    pub signer: Arc<Signer>,
    pub answers: Answers,
    pub store: ReplicaStore,
    /// How current the replica is (written by the replicator).
    pub status: ReplicaStatus,
    /// Client for calls to other monitoring nodes.
    pub peers: Peers,
    pub settings: Settings,
    /// Per-target figures for people and dashboards (refreshed in the background).
    pub stats: crate::stats::Stats,
}
