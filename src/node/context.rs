//! The shared context every service of a node takes. It depends on no service
//! module, so services can take it without forming a cycle with the wiring.

use std::sync::Arc;

use crate::answers::Answers;
use crate::clock::Clock;
use crate::events::MonitorSet;
use crate::freshness::ReplicaStatus;
use crate::network::{NetworkHandle, NetworkState};
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
    /// Where its operator's approvals of network changes are.
    pub approvals: std::path::PathBuf,
}

/// Everything the node's services share; cheap to clone.
#[derive(Clone)]
pub struct NodeContext {
    pub node_id: Arc<str>,
    pub clock: Clock,
    /// The network in force: monitoring nodes, targets, version (moved on by the
    /// replicator as changes apply).
    pub network: NetworkHandle,
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
    /// What this node's aggregator is doing about each target (told to peers).
    pub pursuits: crate::pursuit::Pursuits,
}

impl NodeContext {
    /// The monitoring nodes in force.
    pub fn monitors(&self) -> Arc<MonitorSet> {
        self.network.monitors()
    }

    /// The network in force.
    pub fn net(&self) -> Arc<NetworkState> {
        self.network.current()
    }

    /// Whether this node is a monitoring node of the version in force, with its
    /// own key: only then does it sign states, downtime and changes. A node the
    /// network has not added yet (or has removed) replicates and answers unsigned.
    pub fn is_member(&self, net: &NetworkState) -> bool {
        net.monitors
            .get(&self.node_id)
            .is_some_and(|m| m.public_key == *self.signer.public_key())
    }
}
