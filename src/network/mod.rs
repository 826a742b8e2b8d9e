//! The network as replicated state.
//!
//! A network starts from one **genesis** document: its name, the monitoring nodes
//! (id, url, public key, proof of possession, stake), the targets, the quorum
//! threshold, and the network-wide settings (epochs, settlement). The SHA-256 of
//! its canonical JSON is the **network id**. A node.toml that lists the monitoring
//! nodes and targets inline (or reads the reference `monitoring_nodes.json`) simply
//! is a genesis.
//!
//! After it, the monitoring nodes, their stakes and URLs, the targets and the
//! threshold change only through **changes**: sequenced through Zellular like any
//! event, naming the version they make (current + 1), signed by a stake quorum of
//! the set in force over a domain-separated message, and applied at their position
//! in the log. Events after a change are verified against the new set, events
//! before it against the old one. Version 1 is the genesis.
//!
//! - [`init`]: `livenessd network init` — keys, the genesis and per-node configs.
//! - [`history`]: the chain of versions, and its offline verification.

pub mod history;
pub mod init;

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::config::{EpochConfig, MonitoringNode, NodeConfig, SettlementConfig, Target, Threshold};
use crate::events::{Event, EventError, MonitorSet, MonitorSetError};

/// The genesis format this build reads and writes.
pub const GENESIS_FORMAT: u32 = 1;

/// What a network is, at a version: who signs, what is monitored, how much stake a
/// quorum needs. The genesis is version 1 of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// Monitoring nodes, sorted by id.
    pub monitoring_nodes: Vec<MonitoringNode>,
    /// Ids whose key was accepted without a proof of possession (sorted).
    #[serde(default)]
    pub allow_without_pop: Vec<String>,
    /// Targets, sorted by address.
    pub targets: Vec<Target>,
    /// Fraction of stake a quorum needs: `"2/3"` or a decimal.
    pub quorum_threshold: String,
}

/// The document a network starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "GenesisFile")]
pub struct Genesis {
    /// The format ([`GENESIS_FORMAT`]).
    pub livenessd_genesis: u32,
    pub name: String,
    #[serde(flatten)]
    pub definition: Definition,
    /// Network-wide and fixed: epochs of the summaries and certificates.
    pub epoch: EpochConfig,
    /// Network-wide and fixed: the apply window.
    pub settlement: SettlementConfig,
}

/// The genesis as read (serde's `flatten` cannot read with `deny_unknown_fields`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenesisFile {
    livenessd_genesis: u32,
    name: String,
    monitoring_nodes: Vec<MonitoringNode>,
    #[serde(default)]
    allow_without_pop: Vec<String>,
    targets: Vec<Target>,
    quorum_threshold: String,
    epoch: EpochConfig,
    settlement: SettlementConfig,
}

impl From<GenesisFile> for Genesis {
    fn from(f: GenesisFile) -> Genesis {
        Genesis {
            livenessd_genesis: f.livenessd_genesis,
            name: f.name,
            definition: Definition {
                monitoring_nodes: f.monitoring_nodes,
                allow_without_pop: f.allow_without_pop,
                targets: f.targets,
                quorum_threshold: f.quorum_threshold,
            },
            epoch: f.epoch,
            settlement: f.settlement,
        }
    }
}

/// Canonical JSON: keys sorted, no whitespace — Python's
/// `json.dumps(v, sort_keys=True, separators=(",", ":"))` for the values a genesis
/// or a change holds (strings, integers, finite floats, lists, objects).
pub fn canonical(v: &impl Serialize) -> String {
    // serde_json's maps are ordered by key, and `to_value` goes through them.
    let v = serde_json::to_value(v).expect("serialisable");
    serde_json::to_string(&v).expect("serialisable")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Definition {
    /// Sorted, so that one network has one canonical form.
    fn normalise(&mut self) {
        self.monitoring_nodes.sort_by(|a, b| a.id.cmp(&b.id));
        self.allow_without_pop.sort();
        self.allow_without_pop.dedup();
        self.targets.sort_by(|a, b| a.address.cmp(&b.address));
        for n in &mut self.monitoring_nodes {
            n.url = n.url.trim_end_matches('/').to_owned();
        }
    }

    pub fn threshold(&self) -> Result<Threshold, NetworkError> {
        Threshold::parse(&self.quorum_threshold).ok_or_else(|| {
            NetworkError::Invalid(format!(
                "quorum_threshold {:?} is not a fraction in (0, 1]",
                self.quorum_threshold
            ))
        })
    }

    /// The verified monitoring-node set (PoPs, distinct keys, finite stakes).
    pub fn monitor_set(&self) -> Result<MonitorSet, NetworkError> {
        MonitorSet::new(
            &self.monitoring_nodes,
            &self.allow_without_pop,
            self.threshold()?,
        )
        .map_err(NetworkError::Nodes)
    }

    /// The rules every version must satisfy beyond the set's own.
    fn check(&self) -> Result<(), NetworkError> {
        let mut seen = BTreeSet::new();
        for t in &self.targets {
            if t.address.is_empty() {
                return Err(NetworkError::Invalid(
                    "a target has an empty address".into(),
                ));
            }
            if !seen.insert(&t.address) {
                return Err(NetworkError::Invalid(format!(
                    "target {} is listed twice",
                    t.address
                )));
            }
            match (&t.http, &t.tcp) {
                (Some(u), None) if u.starts_with("http://") || u.starts_with("https://") => {}
                (None, Some(a))
                    if a.rsplit_once(':')
                        .is_some_and(|(_, p)| p.parse::<u16>().is_ok()) => {}
                _ => {
                    return Err(NetworkError::Invalid(format!(
                        "target {} needs exactly one of http (an http(s) URL) or tcp (host:port)",
                        t.address
                    )))
                }
            }
        }
        for n in &self.monitoring_nodes {
            if !(n.url.starts_with("http://") || n.url.starts_with("https://")) {
                return Err(NetworkError::Invalid(format!(
                    "monitoring node {}: url {:?} is not an http(s) URL",
                    n.id, n.url
                )));
            }
        }
        Ok(())
    }
}

impl Genesis {
    /// The genesis of a node: its `genesis_file`, whose values then fill the
    /// network-wide fields of `cfg` (monitoring nodes, targets, threshold, epochs,
    /// settlement), or the genesis `cfg` describes inline.
    pub fn resolve(cfg: &mut NodeConfig) -> Result<Genesis, NetworkError> {
        let Some(path) = cfg.genesis_file.clone() else {
            return Genesis::from_config(cfg);
        };
        let g = Genesis::from_file(&path)?;
        g.definition
            .check()
            .map_err(|e| NetworkError::Invalid(format!("{}: {e}", path.display())))?;
        cfg.network_name = g.name.clone();
        cfg.monitoring_nodes = g.definition.monitoring_nodes.clone();
        cfg.allow_without_pop = g.definition.allow_without_pop.clone();
        cfg.targets = g.definition.targets.clone();
        cfg.quorum_threshold = g.definition.quorum_threshold.clone();
        cfg.epoch = g.epoch.clone();
        cfg.settlement = g.settlement.clone();
        Ok(g)
    }

    /// A genesis of these nodes and targets, with default epochs and settlement.
    pub fn new(
        name: &str,
        monitoring_nodes: Vec<MonitoringNode>,
        targets: Vec<Target>,
        quorum_threshold: &str,
    ) -> Genesis {
        let mut g = Genesis {
            livenessd_genesis: GENESIS_FORMAT,
            name: name.to_owned(),
            definition: Definition {
                monitoring_nodes,
                allow_without_pop: Vec::new(),
                targets,
                quorum_threshold: quorum_threshold.to_owned(),
            },
            epoch: EpochConfig::default(),
            settlement: SettlementConfig::default(),
        };
        g.definition.normalise();
        g
    }

    /// The genesis a node.toml describes (its monitoring nodes, targets, threshold,
    /// epochs and settlement).
    pub fn from_config(cfg: &NodeConfig) -> Result<Genesis, NetworkError> {
        let mut g = Genesis {
            livenessd_genesis: GENESIS_FORMAT,
            name: cfg.network_name.clone(),
            definition: Definition {
                monitoring_nodes: cfg.monitoring_nodes.clone(),
                allow_without_pop: cfg.allow_without_pop.clone(),
                targets: cfg.targets.clone(),
                quorum_threshold: cfg.quorum_threshold.clone(),
            },
            epoch: cfg.epoch.clone(),
            settlement: cfg.settlement.clone(),
        };
        g.definition.normalise();
        Ok(g)
    }

    /// Reads a genesis file.
    pub fn from_file(path: &std::path::Path) -> Result<Genesis, NetworkError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            NetworkError::Invalid(format!(
                "{}: {}",
                path.display(),
                crate::os_error::reason(&e)
            ))
        })?;
        let mut g: Genesis = serde_json::from_str(&text).map_err(|e| {
            NetworkError::Invalid(format!("{}: not a livenessd genesis: {e}", path.display()))
        })?;
        if g.livenessd_genesis != GENESIS_FORMAT {
            return Err(NetworkError::Invalid(format!(
                "{}: genesis format {} (this build reads {GENESIS_FORMAT})",
                path.display(),
                g.livenessd_genesis
            )));
        }
        g.definition.normalise();
        Ok(g)
    }

    /// The network id: SHA-256 (hex) of the canonical JSON.
    pub fn id(&self) -> String {
        sha256_hex(canonical(self).as_bytes())
    }

    /// The genesis as a pretty JSON file.
    pub fn to_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("serialisable") + "\n"
    }
}

/// One operation of a change: `{"op": "add_node", "node": {...}}` and so on.
///
/// (Read by hand: serde's internally tagged enums buffer their fields, and the
/// buffered numbers of `serde_json`'s `arbitrary_precision` do not read as `f64`.)
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A new monitoring node (with its proof of possession).
    AddNode {
        node: MonitoringNode,
    },
    RemoveNode {
        id: String,
    },
    SetStake {
        id: String,
        stake: f64,
    },
    SetUrl {
        id: String,
        url: String,
    },
    /// A new target. An address that was ever a target cannot come back (its
    /// history would have a gap of unknown time); give it a new address.
    AddTarget {
        target: Target,
    },
    RemoveTarget {
        address: String,
    },
    SetThreshold {
        quorum_threshold: String,
    },
}

impl<'de> Deserialize<'de> for Op {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Op, D::Error> {
        use serde::de::Error;
        fn read<T: serde::de::DeserializeOwned, E: Error>(v: Value) -> Result<T, E> {
            serde_json::from_value(v).map_err(E::custom)
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Node {
            node: MonitoringNode,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Id {
            id: String,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Stake {
            id: String,
            stake: f64,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Url {
            id: String,
            url: String,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct AddTarget {
            target: Target,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Address {
            address: String,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Threshold {
            quorum_threshold: String,
        }
        let mut m = serde_json::Map::<String, Value>::deserialize(d)?;
        let op = match m.remove("op") {
            Some(Value::String(s)) => s,
            _ => return Err(D::Error::custom("an operation needs \"op\" (a string)")),
        };
        let rest = Value::Object(m);
        Ok(match op.as_str() {
            "add_node" => Op::AddNode {
                node: read::<Node, _>(rest)?.node,
            },
            "remove_node" => Op::RemoveNode {
                id: read::<Id, _>(rest)?.id,
            },
            "set_stake" => {
                let x: Stake = read(rest)?;
                Op::SetStake {
                    id: x.id,
                    stake: x.stake,
                }
            }
            "set_url" => {
                let x: Url = read(rest)?;
                Op::SetUrl {
                    id: x.id,
                    url: x.url,
                }
            }
            "add_target" => Op::AddTarget {
                target: read::<AddTarget, _>(rest)?.target,
            },
            "remove_target" => Op::RemoveTarget {
                address: read::<Address, _>(rest)?.address,
            },
            "set_threshold" => Op::SetThreshold {
                quorum_threshold: read::<Threshold, _>(rest)?.quorum_threshold,
            },
            other => {
                return Err(D::Error::custom(format!(
                    "unknown operation {other:?} (add_node, remove_node, set_stake, set_url, \
                     add_target, remove_target, set_threshold)"
                )))
            }
        })
    }
}

/// An unsigned change: what operators approve and nodes sign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// The network id it is for.
    pub network: String,
    /// The version it makes: the current one + 1.
    pub version: u64,
    pub changes: Vec<Op>,
}

/// The `kind` of a change in a batch (an entry without `address`, which the
/// reference node skips).
pub const CHANGE_KIND: &str = "livenessd.network_change";

/// A change with its quorum proof, as sequenced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "SignedChangeFile")]
pub struct SignedChange {
    pub kind: String,
    #[serde(flatten)]
    pub proposal: Proposal,
    pub aggregated_signature: String,
    #[serde(default)]
    pub non_signing_nodes: Vec<String>,
}

impl Proposal {
    /// What is signed: `livenessd-network-change:v1:<network id>:<version>:<sha256
    /// of the canonical JSON of the changes>` — it can never read as a state or a
    /// downtime message (those begin with `Address: `).
    pub fn message(&self) -> String {
        format!(
            "livenessd-network-change:v1:{}:{}:{}",
            self.network,
            self.version,
            sha256_hex(canonical(&self.changes).as_bytes())
        )
    }

    /// A stable name for approvals: SHA-256 of the canonical proposal.
    pub fn hash(&self) -> String {
        sha256_hex(canonical(self).as_bytes())
    }

    /// The definition after this change, checked whole.
    pub fn apply_to(
        &self,
        d: &Definition,
        ever_targets: &BTreeSet<String>,
    ) -> Result<Definition, NetworkError> {
        if self.changes.is_empty() {
            return Err(NetworkError::Invalid("a change changes nothing".into()));
        }
        let mut next = d.clone();
        for op in &self.changes {
            let node = |next: &mut Definition, id: &str| {
                next.monitoring_nodes
                    .iter()
                    .position(|n| n.id == id)
                    .ok_or_else(|| NetworkError::Invalid(format!("no monitoring node {id}")))
            };
            match op {
                Op::AddNode { node: n } => {
                    if next.monitoring_nodes.iter().any(|m| m.id == n.id) {
                        return Err(NetworkError::Invalid(format!(
                            "monitoring node {} exists already",
                            n.id
                        )));
                    }
                    if n.pop.is_none() {
                        return Err(NetworkError::Invalid(format!(
                            "monitoring node {} comes without a proof of possession",
                            n.id
                        )));
                    }
                    next.monitoring_nodes.push(n.clone());
                }
                Op::RemoveNode { id } => {
                    let i = node(&mut next, id)?;
                    next.monitoring_nodes.remove(i);
                    next.allow_without_pop.retain(|a| a != id);
                }
                Op::SetStake { id, stake } => {
                    let i = node(&mut next, id)?;
                    next.monitoring_nodes[i].stake = *stake;
                }
                Op::SetUrl { id, url } => {
                    let i = node(&mut next, id)?;
                    next.monitoring_nodes[i].url = url.clone();
                }
                Op::AddTarget { target } => {
                    if ever_targets.contains(&target.address)
                        || next.targets.iter().any(|t| t.address == target.address)
                    {
                        return Err(NetworkError::Invalid(format!(
                            "{} is or was a target already; a target that comes back needs a new address",
                            target.address
                        )));
                    }
                    next.targets.push(target.clone());
                }
                Op::RemoveTarget { address } => {
                    let i = next
                        .targets
                        .iter()
                        .position(|t| t.address == *address)
                        .ok_or_else(|| NetworkError::Invalid(format!("no target {address}")))?;
                    next.targets.remove(i);
                }
                Op::SetThreshold { quorum_threshold } => {
                    next.quorum_threshold = quorum_threshold.clone();
                }
            }
        }
        next.normalise();
        next.check()?;
        next.monitor_set()?;
        Ok(next)
    }
}

/// A signed change as read (no `flatten`: see [`Op`]).
#[derive(Deserialize)]
struct SignedChangeFile {
    kind: String,
    network: String,
    version: u64,
    changes: Vec<Op>,
    aggregated_signature: String,
    #[serde(default)]
    non_signing_nodes: Vec<String>,
}

impl From<SignedChangeFile> for SignedChange {
    fn from(f: SignedChangeFile) -> SignedChange {
        SignedChange {
            kind: f.kind,
            proposal: Proposal {
                network: f.network,
                version: f.version,
                changes: f.changes,
            },
            aggregated_signature: f.aggregated_signature,
            non_signing_nodes: f.non_signing_nodes,
        }
    }
}

impl SignedChange {
    pub fn new(
        proposal: Proposal,
        aggregated_signature: String,
        non_signing_nodes: Vec<String>,
    ) -> Self {
        SignedChange {
            kind: CHANGE_KIND.into(),
            proposal,
            aggregated_signature,
            non_signing_nodes,
        }
    }

    /// Reads a batch item that says it is a change.
    pub fn from_value(v: &Value) -> Result<SignedChange, EventError> {
        let c: SignedChange = serde_json::from_value(v.clone())
            .map_err(|_| EventError::Malformed("network change does not parse"))?;
        if c.kind != CHANGE_KIND {
            return Err(EventError::Malformed("unknown kind"));
        }
        Ok(c)
    }
}

/// Where a node keeps its operator's approvals: `<database>.approvals/`, one
/// `<proposal hash>.json` each. A node signs a change only if its file is there.
pub fn approvals_dir(database: &std::path::Path) -> std::path::PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".approvals");
    std::path::PathBuf::from(name)
}

/// Records the operator's approval of `p` (owner-only file); returns its path.
pub fn approve(dir: &std::path::Path, p: &Proposal) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("{}: {}", dir.display(), crate::os_error::reason(&e)))?;
    let path = dir.join(format!("{}.json", p.hash()));
    if is_approved(dir, p) {
        return Ok(path);
    }
    let text = serde_json::to_string_pretty(p).expect("serialisable") + "\n";
    crate::keyfile::write_secret(&path, &text)?;
    Ok(path)
}

/// Whether the operator approved exactly `p`.
pub fn is_approved(dir: &std::path::Path, p: &Proposal) -> bool {
    let path = dir.join(format!("{}.json", p.hash()));
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<Proposal>(&t).ok())
        .is_some_and(|a| a == *p)
}

/// A proposal read from a file, or `-` for standard input.
pub fn read_proposal(file: &std::path::Path) -> anyhow::Result<Proposal> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("{}: {}", file.display(), crate::os_error::reason(&e)))?
    };
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a network change proposal ({{\"network\", \"version\", \"changes\"}}): {e}",
            file.display()
        )
    })
}

/// One node's signature of a proposal (`POST /v1/network/sign`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeSignature {
    pub node_id: String,
    pub signature: String,
    /// The version in force where it signed (the proposal's minus one).
    pub network_version: u64,
}

/// Why a network definition or a change is refused.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Nodes(#[from] MonitorSetError),
}

/// A network at one version.
#[derive(Debug)]
pub struct NetworkState {
    /// The network id (SHA-256 of the genesis).
    pub id: String,
    pub name: String,
    pub version: u64,
    pub definition: Definition,
    pub monitors: Arc<MonitorSet>,
    /// Every address that was ever a target, sorted: a removed target's history
    /// stays answerable, and its address cannot be a target again.
    pub known: Arc<Vec<String>>,
    /// The change that made this version (`None`: the genesis).
    pub made_by: Option<Proposal>,
}

impl NetworkState {
    /// Version 1: the genesis.
    pub fn genesis(g: &Genesis) -> Result<NetworkState, NetworkError> {
        g.definition.check()?;
        let monitors = g.definition.monitor_set()?;
        Ok(NetworkState {
            id: g.id(),
            name: g.name.clone(),
            version: 1,
            known: Arc::new(addresses_of(&g.definition)),
            made_by: None,
            definition: g.definition.clone(),
            monitors: Arc::new(monitors),
        })
    }

    /// The addresses monitored at this version.
    pub fn addresses(&self) -> Vec<String> {
        self.definition
            .targets
            .iter()
            .map(|t| t.address.clone())
            .collect()
    }

    /// Checks a signed change against this version and returns the next one:
    /// for this network, the next version, signed by a quorum of this set.
    pub fn next(&self, c: &SignedChange) -> Result<NetworkState, ChangeError> {
        let ever_targets: BTreeSet<String> = self.known.iter().cloned().collect();
        let ever_targets = &ever_targets;
        let p = &c.proposal;
        if p.network != self.id {
            return Err(ChangeError::OtherNetwork(p.network.clone()));
        }
        if p.version == self.version && self.made_by.as_ref() == Some(p) {
            return Err(ChangeError::Duplicate { version: p.version });
        }
        if p.version <= self.version {
            return Err(ChangeError::Replayed {
                version: p.version,
                current: self.version,
            });
        }
        if p.version != self.version + 1 {
            return Err(ChangeError::OutOfOrder {
                version: p.version,
                current: self.version,
            });
        }
        self.monitors
            .verify_quorum(&p.message(), &c.aggregated_signature, &c.non_signing_nodes)
            .map_err(ChangeError::Proof)?;
        let d = p
            .apply_to(&self.definition, ever_targets)
            .map_err(|e| ChangeError::Invalid(e.to_string()))?;
        let monitors = d
            .monitor_set()
            .map_err(|e| ChangeError::Invalid(e.to_string()))?;
        let mut known: BTreeSet<String> = self.known.iter().cloned().collect();
        known.extend(d.targets.iter().map(|t| t.address.clone()));
        Ok(NetworkState {
            id: self.id.clone(),
            name: self.name.clone(),
            version: p.version,
            known: Arc::new(known.into_iter().collect()),
            made_by: Some(p.clone()),
            definition: d,
            monitors: Arc::new(monitors),
        })
    }
}

fn addresses_of(d: &Definition) -> Vec<String> {
    let mut v: Vec<String> = d.targets.iter().map(|t| t.address.clone()).collect();
    v.sort();
    v
}

/// One item of a batch: a state event, or a network change.
#[derive(Debug, Clone)]
pub enum Item {
    Event(Event),
    Change(Box<SignedChange>),
    Certificate(Box<crate::certificate::Certificate>),
}

/// Reads a batch: a JSON array of events and changes. The outer error means the
/// whole batch is malformed; inner errors are per item. An item whose `kind` is
/// [`CHANGE_KIND`] is a change; anything else is read as an event.
pub fn parse_items(body: &str) -> Result<Vec<Result<Item, EventError>>, EventError> {
    let v: Value = serde_json::from_str(body).map_err(|_| EventError::MalformedBatch)?;
    let arr = v.as_array().ok_or(EventError::MalformedBatch)?;
    Ok(arr
        .iter()
        .map(|v| {
            let kind = v.get("kind").and_then(Value::as_str);
            if kind == Some(CHANGE_KIND) {
                SignedChange::from_value(v).map(|c| Item::Change(Box::new(c)))
            } else if kind == Some(crate::certificate::CERTIFICATE_KIND) {
                crate::certificate::Certificate::from_value(v)
                    .map(|c| Item::Certificate(Box::new(c)))
            } else {
                Event::from_value(v).map(Item::Event)
            }
        })
        .collect())
}

/// Why a change does not apply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChangeError {
    #[error("the change is for another network ({0})")]
    OtherNetwork(String),
    #[error("version {version} is in force already (a second report of its change)")]
    Duplicate { version: u64 },
    #[error("version {version} is not after the current one ({current}): a replay")]
    Replayed { version: u64, current: u64 },
    #[error("version {version} does not follow the current one ({current})")]
    OutOfOrder { version: u64, current: u64 },
    #[error("its proof fails: {0}")]
    Proof(EventError),
    #[error("it does not make a valid network: {0}")]
    Invalid(String),
}

impl ChangeError {
    /// The label of `livenessd_events_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            ChangeError::OtherNetwork(_) => "change_other_network",
            ChangeError::Duplicate { .. } => "change_duplicate",
            ChangeError::Replayed { .. } => "change_replayed",
            ChangeError::OutOfOrder { .. } => "change_out_of_order",
            ChangeError::Proof(_) => "change_bad_proof",
            ChangeError::Invalid(_) => "change_invalid",
        }
    }
}

impl From<ChangeError> for EventError {
    fn from(e: ChangeError) -> EventError {
        EventError::Change {
            reason: e.reason(),
            why: e.to_string(),
        }
    }
}

/// The network in force, shared by every service of a node. The replicator moves
/// it on; everything else reads it (and may watch it).
#[derive(Clone)]
pub struct NetworkHandle {
    current: Arc<RwLock<Arc<NetworkState>>>,
    tx: watch::Sender<Arc<NetworkState>>,
}

impl NetworkHandle {
    /// A handle on the genesis of `g` (panics on an invalid genesis: for tests and
    /// benchmarks).
    pub fn of_genesis(g: &Genesis) -> Self {
        NetworkHandle::new(NetworkState::genesis(g).expect("a valid genesis"))
    }

    pub fn new(state: NetworkState) -> Self {
        let state = Arc::new(state);
        let (tx, _) = watch::channel(state.clone());
        NetworkHandle {
            current: Arc::new(RwLock::new(state)),
            tx,
        }
    }

    /// The network in force now.
    pub fn current(&self) -> Arc<NetworkState> {
        self.current.read().expect("network lock").clone()
    }

    /// The monitoring nodes in force now.
    pub fn monitors(&self) -> Arc<MonitorSet> {
        self.current().monitors.clone()
    }

    /// Moves to `state` (the replicator, after applying a change).
    pub fn set(&self, state: Arc<NetworkState>) {
        *self.current.write().expect("network lock") = state.clone();
        let _ = self.tx.send(state);
    }

    /// Told of every new version.
    pub fn subscribe(&self) -> watch::Receiver<Arc<NetworkState>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::bls::{SecretKey, Signature};

    fn node(i: u8) -> (SecretKey, MonitoringNode) {
        let sk = SecretKey::key_gen(&[i; 32]).unwrap();
        let n = MonitoringNode {
            id: format!("N{i}"),
            url: format!("http://127.0.0.1:{}", 7000 + i as u16),
            pubkey: sk.public_key().to_hex(),
            pop: Some(sk.prove_possession().to_hex()),
            stake: 1.0,
        };
        (sk, n)
    }

    fn genesis(n: u8) -> (Vec<SecretKey>, Genesis) {
        let (keys, nodes): (Vec<_>, Vec<_>) = (1..=n).map(node).unzip();
        let g = Genesis {
            livenessd_genesis: 1,
            name: "test".into(),
            definition: Definition {
                monitoring_nodes: nodes,
                allow_without_pop: vec![],
                targets: vec![Target {
                    address: "0xA".into(),
                    http: Some("http://127.0.0.1:9/health".into()),
                    tcp: None,
                }],
                quorum_threshold: "2/3".into(),
            },
            epoch: EpochConfig::default(),
            settlement: SettlementConfig::default(),
        };
        (keys, g)
    }

    fn sign(keys: &[&SecretKey], p: &Proposal, nonsigners: &[&str]) -> SignedChange {
        let sigs: Vec<Signature> = keys
            .iter()
            .map(|k| k.sign(p.message().as_bytes()))
            .collect();
        SignedChange::new(
            p.clone(),
            Signature::aggregate(&sigs).unwrap().to_hex(),
            nonsigners.iter().map(|s| s.to_string()).collect(),
        )
    }

    #[test]
    fn the_id_is_the_hash_of_the_canonical_genesis_whatever_the_order() {
        let (_, g) = genesis(3);
        let mut h = g.clone();
        h.definition.monitoring_nodes.reverse();
        h.definition.normalise();
        assert_eq!(g.id(), h.id());
        let c = canonical(&g);
        assert!(c.starts_with("{\"allow_without_pop\":[],\"epoch\":"), "{c}");
        let mut other = g.clone();
        other.name = "other".into();
        assert_ne!(g.id(), other.id());
    }

    #[test]
    fn a_genesis_reads_back_what_it_writes_and_refuses_unknown_fields() {
        let (_, g) = genesis(2);
        let back: Genesis = serde_json::from_str(&g.to_pretty()).unwrap();
        assert_eq!(back, g);
        assert_eq!(back.id(), g.id());
        let mut v = serde_json::to_value(&g).unwrap();
        v["extra"] = 1.into();
        assert!(serde_json::from_value::<Genesis>(v).is_err());
    }

    #[test]
    fn changes_read_back_from_text_with_their_numbers() {
        let (keys, g) = genesis(3);
        let p = Proposal {
            network: g.id(),
            version: 2,
            changes: vec![
                Op::AddNode { node: node(4).1 },
                Op::SetStake {
                    id: "N1".into(),
                    stake: 2.5,
                },
                Op::SetThreshold {
                    quorum_threshold: "3/4".into(),
                },
            ],
        };
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains("\"op\":\"add_node\""), "{text}");
        assert_eq!(serde_json::from_str::<Proposal>(&text).unwrap(), p);
        let c = sign(&[&keys[0], &keys[1]], &p, &["N3"]);
        let text = serde_json::to_string(&c).unwrap();
        let items = parse_items(&format!("[{text}]")).unwrap();
        assert!(matches!(&items[0], Ok(Item::Change(back)) if **back == c));
        assert!(serde_json::from_str::<Proposal>(
            r#"{"network":"x","version":2,"changes":[{"op":"fly"}]}"#
        )
        .is_err());
        assert!(serde_json::from_str::<Proposal>(
            r#"{"network":"x","version":2,"changes":[{"op":"remove_node","id":"N1","x":1}]}"#
        )
        .is_err());
    }

    #[test]
    fn a_change_needs_the_next_version_this_network_and_a_quorum_of_the_set_in_force() {
        let (keys, g) = genesis(3);
        let v1 = NetworkState::genesis(&g).unwrap();
        let (k4, n4) = node(4);
        let p = Proposal {
            network: v1.id.clone(),
            version: 2,
            changes: vec![Op::AddNode { node: n4 }],
        };
        // Two of three sign: 2/3 of the stake.
        let good = sign(&[&keys[0], &keys[1]], &p, &["N3"]);
        let v2 = v1.next(&good).unwrap();
        assert_eq!((v2.version, v2.monitors.nodes().len()), (2, 4));
        // One of three: no quorum.
        let weak = sign(&[&keys[0]], &p, &["N2", "N3"]);
        assert!(matches!(v1.next(&weak), Err(ChangeError::Proof(_))));
        // The same change again: a second report (no-op); another change for a
        // version in force: a replay; and out of order.
        assert!(matches!(v2.next(&good), Err(ChangeError::Duplicate { .. })));
        let mut old = p.clone();
        old.changes = vec![Op::SetStake {
            id: "N1".into(),
            stake: 3.0,
        }];
        let old = sign(&[&keys[0], &keys[1], &keys[2]], &old, &[]);
        assert!(matches!(v2.next(&old), Err(ChangeError::Replayed { .. })));
        let mut later = p.clone();
        later.version = 3;
        let later = sign(&[&keys[0], &keys[1], &keys[2]], &later, &[]);
        assert!(matches!(
            v1.next(&later),
            Err(ChangeError::OutOfOrder { .. })
        ));
        // Another network.
        let mut other = p.clone();
        other.network = "00".repeat(32);
        let other = sign(&[&keys[0], &keys[1], &keys[2]], &other, &[]);
        assert!(matches!(v1.next(&other), Err(ChangeError::OtherNetwork(_))));
        // Version 2's set: N4's key now counts; a change needs 3 of 4.
        let p3 = Proposal {
            network: v1.id.clone(),
            version: 3,
            changes: vec![Op::RemoveNode { id: "N1".into() }],
        };
        let two = sign(&[&keys[0], &keys[1]], &p3, &["N3", "N4"]);
        assert!(matches!(v2.next(&two), Err(ChangeError::Proof(_))));
        let three = sign(&[&keys[1], &keys[2], &k4], &p3, &["N1"]);
        let v3 = v2.next(&three).unwrap();
        assert!(v3.monitors.get("N1").is_none());
    }

    #[test]
    fn the_change_message_cannot_read_as_a_state_or_downtime_message() {
        let (_, g) = genesis(1);
        let p = Proposal {
            network: g.id(),
            version: 2,
            changes: vec![Op::SetThreshold {
                quorum_threshold: "3/4".into(),
            }],
        };
        let m = p.message();
        assert!(m.starts_with("livenessd-network-change:v1:"));
        assert!(!m.starts_with("Address: "));
    }

    #[test]
    fn an_invalid_change_is_refused_whole() {
        let (_, g) = genesis(3);
        let d = &g.definition;
        let ever: BTreeSet<String> = ["0xOld".to_owned()].into();
        let p = |changes| Proposal {
            network: g.id(),
            version: 2,
            changes,
        };
        let dup = node(1).1;
        assert!(p(vec![Op::AddNode { node: dup }])
            .apply_to(d, &ever)
            .is_err());
        let mut nopop = node(5).1;
        nopop.pop = None;
        assert!(p(vec![Op::AddNode { node: nopop }])
            .apply_to(d, &ever)
            .is_err());
        assert!(p(vec![Op::SetStake {
            id: "N1".into(),
            stake: 0.0
        }])
        .apply_to(d, &ever)
        .is_err());
        assert!(p(vec![Op::RemoveTarget {
            address: "0xB".into()
        }])
        .apply_to(d, &ever)
        .is_err());
        let back = Target {
            address: "0xOld".into(),
            http: Some("http://x/health".into()),
            tcp: None,
        };
        assert!(p(vec![Op::AddTarget { target: back }])
            .apply_to(d, &ever)
            .is_err());
        assert!(p(vec![Op::SetThreshold {
            quorum_threshold: "3/2".into()
        }])
        .apply_to(d, &ever)
        .is_err());
        assert!(p(vec![]).apply_to(d, &ever).is_err());
        let new = Target {
            address: "0xNew".into(),
            tcp: Some("127.0.0.1:9".into()),
            http: None,
        };
        let next = p(vec![Op::AddTarget { target: new }])
            .apply_to(d, &ever)
            .unwrap();
        assert_eq!(next.targets.len(), 2);
    }
}
