//! Node configuration: defaults → `node.toml` → `LIVENESSD_*` environment → CLI flags
//! (figment), then validation that names the field at fault and why.
//!
//! Environment keys nest with `__`: `LIVENESSD_PROBE__INTERVAL_MS=1000`.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The whole node configuration. Every field has a doc comment in
/// `node.toml.example`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id among the monitoring nodes.
    pub node_id: String,
    /// The network's name (part of its genesis, hence of its id).
    pub network_name: String,
    /// A genesis document (`genesis.json`, as `livenessd network init` and the
    /// devnet write it). With it, the monitoring nodes, targets, threshold, epochs
    /// and settlement come from the file, and this node may be one the network
    /// adds later (it replicates, and signs once a change makes it a member).
    pub genesis_file: Option<PathBuf>,
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// The SQLite file holding the replicated log.
    pub database: PathBuf,
    /// File holding this node's BLS secret key (hex), mode 0600.
    pub bls_key_file: PathBuf,
    /// Monitoring nodes in the reference `monitoring_nodes.json` format, merged with
    /// `monitoring_nodes` (an id in both is an error).
    pub monitoring_nodes_file: Option<PathBuf>,
    /// The monitoring nodes (including this one).
    pub monitoring_nodes: Vec<MonitoringNode>,
    /// Ids whose key may be used without a proof of possession (the reference file
    /// format carries none). Unsafe against rogue-key attacks: a warning is logged.
    pub allow_without_pop: Vec<String>,
    /// The monitored targets.
    pub targets: Vec<Target>,
    /// Fraction of total stake the signers of an event or answer must reach:
    /// `"2/3"` or a decimal such as `0.67`.
    pub quorum_threshold: String,
    pub zellular: ZellularConfig,
    pub probe: ProbeConfig,
    pub epoch: EpochConfig,
    pub http: HttpConfig,
    /// Also run the aggregator (`--role aggregator`).
    pub aggregator: bool,
    pub aggregation: AggregationConfig,
    pub settlement: SettlementConfig,
    pub freshness: FreshnessConfig,
    pub rate_limit: RateLimitConfig,
    pub tls: TlsConfig,
    pub notify: NotifyConfig,
}

/// Notifications of applied (quorum-signed) transitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    pub webhooks: Vec<WebhookConfig>,
    /// Notifications waiting per webhook; more are dropped and counted.
    pub queue: usize,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhooks: Vec::new(),
            queue: 1_024,
        }
    }
}

/// One webhook.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// A file (mode 0600) holding the HMAC-SHA256 key; each body is signed in
    /// `X-Livenessd-Signature: sha256=<hex>`.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Only these targets (empty: every target).
    #[serde(default)]
    pub targets: Vec<String>,
    /// `livenessd` (the event and its proof) or `alertmanager` (its webhook body).
    #[serde(default)]
    pub format: WebhookFormat,
    /// Attempts before a notification is given up (counted).
    #[serde(default = "eight")]
    pub max_attempts: u32,
    /// First pause between attempts; doubles up to a minute.
    #[serde(default = "one_second")]
    pub retry_initial_ms: u64,
}

fn eight() -> u32 {
    8
}

fn one_second() -> u64 {
    1_000
}

/// The body of a webhook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    #[default]
    Livenessd,
    Alertmanager,
}

/// When an event may apply, and so when history is settled. Network-wide: every node
/// of a network must hold the same values, or their logs differ.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SettlementConfig {
    /// An event applies only if its timestamp is at most this much older than the
    /// sync point that finalizes it; history older than `log_time` minus this is
    /// settled, and only settled history is signed.
    pub max_event_age_secs: u64,
    /// An event applies only if its timestamp is at most this much later than the
    /// sync point that finalizes it.
    pub max_clock_drift_secs: u64,
}

impl Default for SettlementConfig {
    fn default() -> Self {
        SettlementConfig {
            max_event_age_secs: 120,
            max_clock_drift_secs: 10,
        }
    }
}

/// How this node keeps its replica's clock moving and decides it is fresh.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshnessConfig {
    /// An aggregator posts an empty batch when nothing has been finalized for this
    /// long (plus up to half of it at random), so `log_time` keeps moving.
    pub heartbeat_interval_ms: u64,
    /// The replica is fresh while its `log_time` is at most this far behind the
    /// clock; default 3 × the heartbeat interval.
    pub bound_ms: Option<u64>,
}

impl Default for FreshnessConfig {
    fn default() -> Self {
        FreshnessConfig {
            heartbeat_interval_ms: 10_000,
            bound_ms: None,
        }
    }
}

impl FreshnessConfig {
    /// The freshness bound, in whole seconds (log_time has a resolution of one second).
    pub fn bound_secs(&self) -> i64 {
        let ms = self.bound_ms.unwrap_or(3 * self.heartbeat_interval_ms);
        (ms.div_ceil(1000)).max(1) as i64
    }
}

/// Aggregator timing (used with `aggregator = true`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregationConfig {
    /// Wait this long for a posted event to be applied before posting a fresh proof.
    pub confirm_timeout_ms: u64,
    /// First pause after an attempt without quorum (or with the sequencer down); doubles.
    pub retry_initial_ms: u64,
    /// Longest pause between attempts.
    pub retry_max_ms: u64,
    /// Random wait before the first attempt, so concurrent aggregators rarely both post.
    pub start_jitter_ms: u64,
    /// How often the local view and the replica are compared.
    pub reconcile_interval_ms: u64,
    /// Aggregators take turns per change: the node of rank r waits r × this before
    /// it gathers a proof, and stands down if the change is applied meanwhile.
    pub rank_step_ms: u64,
    /// How often the peers are asked (at `/health`) whether they aggregate.
    pub roles_refresh_ms: u64,
}

impl Default for AggregationConfig {
    fn default() -> Self {
        AggregationConfig {
            confirm_timeout_ms: 30_000,
            retry_initial_ms: 1_000,
            retry_max_ms: 60_000,
            start_jitter_ms: 300,
            reconcile_interval_ms: 5_000,
            rank_step_ms: 2_000,
            roles_refresh_ms: 60_000,
        }
    }
}

/// One monitoring node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MonitoringNode {
    pub id: String,
    /// Base URL of its HTTP API.
    pub url: String,
    /// BLS public key, 48-byte compressed G1 hex.
    pub pubkey: String,
    /// Proof of possession of `pubkey`, 96-byte G2 hex.
    #[serde(default)]
    pub pop: Option<String>,
    /// Stake weight in the quorum.
    #[serde(default = "one")]
    pub stake: f64,
}

fn one() -> f64 {
    1.0
}

/// An entry of the reference `monitoring_nodes.json` (`{"Node1": {"url", "pubkey"}}`),
/// with optional `pop` and `stake` extensions.
#[derive(Debug, Clone, Deserialize)]
struct ReferenceNode {
    url: String,
    pubkey: String,
    #[serde(default)]
    pop: Option<String>,
    #[serde(default = "one")]
    stake: f64,
}

/// A monitored target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The name events carry (e.g. the operator's address `0xNodeA123`).
    pub address: String,
    /// HTTP health URL (EigenLayer node API: 200 up, 206 degraded, else down).
    #[serde(default)]
    pub http: Option<String>,
    /// Or a TCP `host:port` that must accept connections.
    #[serde(default)]
    pub tcp: Option<String>,
}

/// Where events are ordered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZellularConfig {
    /// The Zellular app the events go to.
    pub app: String,
    /// Gateway base URLs, tried in order; empty: the operators' sockets.
    pub gateways: Vec<String>,
    /// A static operator set (SDK `StaticNetwork` JSON: list or id → operator map);
    /// the dev sequencer writes one as `<data-dir>/operators.json`.
    pub operators_file: Option<PathBuf>,
    /// Or the EigenLayer subgraph to read operators from.
    pub subgraph_url: Option<String>,
    /// Finality threshold percent (the SDK default is 67).
    pub threshold_percent: f64,
    /// Per-request timeout, milliseconds.
    pub request_timeout_ms: u64,
    /// Longest wait between polls while nothing is new, milliseconds.
    pub poll_max_ms: u64,
}

/// How targets are probed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Every target is probed once per interval, milliseconds.
    pub interval_ms: u64,
    /// A probe with no answer by then counts as down, milliseconds.
    pub timeout_ms: u64,
    /// Each probe starts up to this much later than the tick, to spread load.
    pub jitter_ms: u64,
    /// Probes in flight at once.
    pub concurrency: usize,
    /// Consecutive failures before a target is considered down.
    pub failures_to_down: u32,
    /// Consecutive successes before a down target is considered up again.
    pub successes_to_up: u32,
    /// Whether HTTP 206 (the EigenLayer node API's "partially healthy") counts as
    /// up. `false` matches the reference Python node, which treats it as down.
    pub degraded_is_up: bool,
}

/// Epochs for the per-epoch summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochConfig {
    /// Unix time at which epoch 0 starts.
    pub genesis: i64,
    /// Epoch length, seconds.
    pub length_secs: u64,
    /// The uptime policy of epoch certificates: a target whose uptime in an epoch
    /// is below this many parts per million (990000 = 99 %) is marked `breached`
    /// in the epoch's certificate. 0: no policy. Network-wide (part of the genesis).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_uptime_ppm: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// HTTP server and peer-client limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// A request taking longer is answered 408, so slow clients cannot hold shutdown.
    pub request_timeout_ms: u64,
    /// Timeout of calls to other monitoring nodes (`/state`, `/downtime`).
    pub peer_timeout_ms: u64,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// Connections served at once; beyond it a few more may still ask `/health`
    /// and `/ready`, the rest are closed. Lowered at start to fit the open-files
    /// limit.
    pub max_connections: usize,
    /// File descriptors kept for the node's own use (replica, probes, peers,
    /// gateways) when fitting `max_connections` to the open-files limit.
    pub reserved_fds: usize,
    /// A connection that has not sent a complete request head this long after it
    /// opened, or after its last answer (an idle keep-alive connection), is closed.
    pub header_read_timeout_ms: u64,
    /// A connection whose answer the client does not take for this long (nothing
    /// can be written: its buffers are full) is closed.
    pub write_timeout_ms: u64,
    /// Connections one client (one IP address; IPv6: one /64) may hold at once
    /// beyond the overflow pool; the monitoring nodes' addresses are exempt.
    pub max_connections_per_client: usize,
}

/// Per-client rate limits, by endpoint class. A client is one IP address; the
/// monitoring nodes' own addresses get `peer_factor` times the quota.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub peer_factor: u32,
    /// `/state`: each call probes a target.
    pub probe: RateQuota,
    /// `/aggregate_downtime`: each call asks every monitoring node.
    pub aggregate: RateQuota,
    /// `/downtime` and other signed answers.
    pub signed: RateQuota,
    /// `/v1/…`, the status page and badges.
    pub query: RateQuota,
    /// `/health`, `/ready`, `/metrics`.
    pub ops: RateQuota,
}

/// A sustained rate and a burst.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateQuota {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        let q = |per_second, burst| RateQuota { per_second, burst };
        RateLimitConfig {
            enabled: true,
            peer_factor: 20,
            probe: q(5, 20),
            aggregate: q(1, 5),
            signed: q(20, 50),
            query: q(20, 100),
            ops: q(50, 200),
        }
    }
}

/// Outgoing HTTPS.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM files of extra certificate authorities to trust (a private CA), beside
    /// the platform's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` are honoured).
    pub ca_files: Vec<PathBuf>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_id: String::new(),
            network_name: "livenessd".into(),
            genesis_file: None,
            listen: "127.0.0.1:7001".parse().expect("literal address"),
            database: PathBuf::from("livenessd.sqlite"),
            bls_key_file: PathBuf::from("bls.key"),
            monitoring_nodes_file: None,
            monitoring_nodes: Vec::new(),
            allow_without_pop: Vec::new(),
            targets: Vec::new(),
            quorum_threshold: "2/3".into(),
            zellular: ZellularConfig::default(),
            probe: ProbeConfig::default(),
            epoch: EpochConfig::default(),
            http: HttpConfig::default(),
            aggregator: false,
            aggregation: AggregationConfig::default(),
            settlement: SettlementConfig::default(),
            freshness: FreshnessConfig::default(),
            rate_limit: RateLimitConfig::default(),
            tls: TlsConfig::default(),
            notify: NotifyConfig::default(),
        }
    }
}

impl Default for ZellularConfig {
    fn default() -> Self {
        ZellularConfig {
            app: "livenessd".into(),
            gateways: Vec::new(),
            operators_file: None,
            subgraph_url: None,
            // The SDK's default (`zellular::DEFAULT_THRESHOLD_PERCENT`; a test
            // keeps the two equal without making config depend on zellular).
            threshold_percent: 67.0,
            request_timeout_ms: 10_000,
            poll_max_ms: 1_000,
        }
    }
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            interval_ms: 10_000,
            timeout_ms: 3_000,
            jitter_ms: 500,
            concurrency: 256,
            failures_to_down: 3,
            successes_to_up: 2,
            degraded_is_up: true,
        }
    }
}

impl Default for EpochConfig {
    fn default() -> Self {
        EpochConfig {
            genesis: 0,
            length_secs: 86_400,
            min_uptime_ppm: 0,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            request_timeout_ms: 30_000,
            peer_timeout_ms: 3_000,
            max_body_bytes: 64 << 10,
            max_connections: 1_024,
            reserved_fds: 512,
            header_read_timeout_ms: 10_000,
            write_timeout_ms: 10_000,
            max_connections_per_client: 64,
        }
    }
}

/// A configuration problem, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// What figment found, one line per problem: where (file or variable), which
    /// key, what is wrong.
    #[error("{0}")]
    Figment(String),
    #[error("{field}: {why}")]
    Invalid { field: String, why: String },
    #[error("{path}: {why}")]
    File { path: String, why: String },
}

/// Figment's errors in one line each: `node.toml: probe.interval_ms: invalid type…`,
/// or the environment variable's own name.
fn figment_message(e: figment::Error) -> String {
    let mut lines = Vec::new();
    for err in e {
        let key = err.path.join(".");
        let source = match (&err.metadata, &err.profile) {
            (Some(m), _) => match &m.source {
                Some(figment::Source::File(p)) => p.display().to_string(),
                _ if m.name.contains("environment") && !err.path.is_empty() => format!(
                    "environment variable LIVENESSD_{}",
                    err.path.join("__").to_uppercase()
                ),
                _ => m.name.to_string(),
            },
            (None, _) => "configuration".to_owned(),
        };
        let kind = match &err.kind {
            figment::error::Kind::UnknownField(_, expected) => {
                format!("unknown key; expected one of {}", expected.join(", "))
            }
            k => k.to_string(),
        };
        lines.push(
            if key.is_empty() || source.starts_with("environment variable") {
                format!("{source}: {kind}")
            } else {
                format!("{source}: {key}: {kind}")
            },
        );
    }
    lines.join("\n")
}

fn invalid(field: impl Into<String>, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        why: why.into(),
    }
}

/// Reads monitoring nodes in the reference `monitoring_nodes.json` format:
/// `{"Node1": {"url": ..., "pubkey": ...}, ...}`, with optional `pop` and `stake`.
pub fn load_reference_nodes(path: &Path) -> Result<Vec<MonitoringNode>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.display().to_string(),
        why: e.to_string(),
    })?;
    let nodes: BTreeMap<String, ReferenceNode> =
        serde_json::from_str(&text).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            why: format!("not a monitoring_nodes.json map of id → {{url, pubkey}}: {e}"),
        })?;
    Ok(nodes
        .into_iter()
        .map(|(id, n)| MonitoringNode {
            id,
            url: n.url,
            pubkey: n.pubkey,
            pop: n.pop,
            stake: n.stake,
        })
        .collect())
}

/// Writes monitoring nodes in the reference `monitoring_nodes.json` format (with
/// the `pop` and `stake` extensions, which the reference node ignores).
pub fn reference_nodes_json(nodes: &[MonitoringNode]) -> String {
    let map: BTreeMap<&str, serde_json::Value> = nodes
        .iter()
        .map(|n| {
            (
                n.id.as_str(),
                serde_json::json!({"url": n.url, "pubkey": n.pubkey, "pop": n.pop, "stake": n.stake}),
            )
        })
        .collect();
    serde_json::to_string_pretty(&map).expect("nodes serialise")
}

/// Command-line overrides (the top layer).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CliOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bls_key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregator: Option<bool>,
}

/// A quorum threshold as a fraction `num/den` of total stake.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub num: f64,
    pub den: f64,
}

impl Threshold {
    pub const TWO_THIRDS: Threshold = Threshold { num: 2.0, den: 3.0 };

    pub fn parse(s: &str) -> Option<Threshold> {
        let t = match s.trim().split_once('/') {
            Some((n, d)) => Threshold {
                num: n.trim().parse().ok()?,
                den: d.trim().parse().ok()?,
            },
            None => Threshold {
                num: s.trim().parse().ok()?,
                den: 1.0,
            },
        };
        (t.num > 0.0 && t.den > 0.0 && t.num <= t.den && t.num.is_finite() && t.den.is_finite())
            .then_some(t)
    }

    /// `signed / total ≥ num / den`, compared without division.
    pub fn reached(&self, signed: f64, total: f64) -> bool {
        signed * self.den >= total * self.num
    }
}

impl NodeConfig {
    /// Loads `file` (if any) over the defaults, then the environment, then `cli`.
    pub fn load(file: Option<&Path>, cli: &CliOverrides) -> Result<NodeConfig, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(NodeConfig::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError::File {
                    path: f.display().to_string(),
                    why: "no such file".into(),
                });
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig
            .merge(
                Env::prefixed("LIVENESSD_")
                    .split("__")
                    .ignore(&["log_json"]),
            )
            .merge(Serialized::defaults(cli));
        let mut cfg: NodeConfig = fig
            .extract()
            .map_err(|e| ConfigError::Figment(figment_message(e)))?;
        let base = file.and_then(Path::parent).unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        cfg.merge_reference_nodes()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Relative paths in the file are relative to the file's directory.
    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() && !base.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.database);
        fix(&mut self.bls_key_file);
        if let Some(p) = &mut self.monitoring_nodes_file {
            fix(p);
        }
        if let Some(p) = &mut self.genesis_file {
            fix(p);
        }
        if let Some(p) = &mut self.zellular.operators_file {
            fix(p);
        }
        for p in &mut self.tls.ca_files {
            fix(p);
        }
        for w in &mut self.notify.webhooks {
            if let Some(p) = &mut w.secret_file {
                fix(p);
            }
        }
    }

    fn merge_reference_nodes(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.monitoring_nodes_file else {
            return Ok(());
        };
        for n in load_reference_nodes(path)? {
            if self.monitoring_nodes.iter().any(|m| m.id == n.id) {
                return Err(invalid(
                    "monitoring_nodes",
                    format!("{} is in both node.toml and {}", n.id, path.display()),
                ));
            }
            self.monitoring_nodes.push(n);
        }
        Ok(())
    }

    /// The quorum threshold, parsed.
    pub fn threshold(&self) -> Threshold {
        Threshold::parse(&self.quorum_threshold).unwrap_or(Threshold::TWO_THIRDS)
    }

    /// Checks what serde cannot: references, ranges, uniqueness.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id.is_empty() {
            return Err(invalid(
                "node_id",
                "is required (this node's id among monitoring_nodes)",
            ));
        }
        if self.network_name.is_empty() {
            return Err(invalid("network_name", "is empty"));
        }
        if self.genesis_file.is_some() {
            if !self.monitoring_nodes.is_empty()
                || !self.targets.is_empty()
                || self.monitoring_nodes_file.is_some()
            {
                return Err(invalid(
                    "genesis_file",
                    "the network is defined by the genesis file: leave monitoring_nodes, \
                     monitoring_nodes_file and targets out of node.toml",
                ));
            }
        } else {
            self.validate_network()?;
        }
        self.validate_local()
    }

    /// The network-wide part given inline (the genesis a node.toml describes).
    fn validate_network(&self) -> Result<(), ConfigError> {
        if self.monitoring_nodes.is_empty() {
            return Err(invalid(
                "monitoring_nodes",
                "at least one monitoring node is required (or monitoring_nodes_file)",
            ));
        }
        let mut ids = HashSet::new();
        for (i, n) in self.monitoring_nodes.iter().enumerate() {
            let f = |k: &str| format!("monitoring_nodes[{i}].{k}");
            if n.id.is_empty() {
                return Err(invalid(f("id"), "is empty"));
            }
            if !ids.insert(n.id.as_str()) {
                return Err(invalid(f("id"), format!("{} is listed twice", n.id)));
            }
            if !(n.url.starts_with("http://") || n.url.starts_with("https://")) {
                return Err(invalid(
                    f("url"),
                    format!("{:?} is not an http(s) URL", n.url),
                ));
            }
            if !(n.stake.is_finite() && n.stake > 0.0) {
                return Err(invalid(
                    f("stake"),
                    "must be a finite number greater than 0",
                ));
            }
        }
        if !ids.contains(self.node_id.as_str()) {
            return Err(invalid(
                "node_id",
                format!("{} is not one of the monitoring nodes", self.node_id),
            ));
        }
        for id in &self.allow_without_pop {
            if !ids.contains(id.as_str()) {
                return Err(invalid(
                    "allow_without_pop",
                    format!("{id} is not a monitoring node"),
                ));
            }
        }
        if Threshold::parse(&self.quorum_threshold).is_none() {
            return Err(invalid(
                "quorum_threshold",
                format!(
                    "{:?} is not a fraction in (0, 1] such as \"2/3\" or 0.67",
                    self.quorum_threshold
                ),
            ));
        }
        let mut addrs = HashSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let f = |k: &str| format!("targets[{i}].{k}");
            if t.address.is_empty() {
                return Err(invalid(f("address"), "is empty"));
            }
            if !addrs.insert(t.address.as_str()) {
                return Err(invalid(
                    f("address"),
                    format!("{} is listed twice", t.address),
                ));
            }
            match (&t.http, &t.tcp) {
                (Some(u), None) if u.starts_with("http://") || u.starts_with("https://") => {}
                (Some(u), None) => {
                    return Err(invalid(f("http"), format!("{u:?} is not an http(s) URL")))
                }
                (None, Some(a))
                    if a.rsplit_once(':')
                        .is_some_and(|(_, p)| p.parse::<u16>().is_ok()) => {}
                (None, Some(a)) => {
                    return Err(invalid(f("tcp"), format!("{a:?} is not host:port")))
                }
                _ => {
                    return Err(invalid(
                        format!("targets[{i}]"),
                        "needs exactly one of http or tcp",
                    ))
                }
            }
        }
        Ok(())
    }

    /// The node's own settings.
    fn validate_local(&self) -> Result<(), ConfigError> {
        let z = &self.zellular;
        if z.app.is_empty() {
            return Err(invalid("zellular.app", "is empty"));
        }
        match (&z.operators_file, &z.subgraph_url) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "zellular",
                    "set operators_file or subgraph_url, not both",
                ))
            }
            (None, None) => {
                return Err(invalid(
                    "zellular.operators_file",
                    "an operator set is required (operators_file, or subgraph_url)",
                ))
            }
            (None, Some(_)) if z.gateways.is_empty() => {
                return Err(invalid("zellular.gateways", "required with subgraph_url"))
            }
            _ => {}
        }
        if !(z.threshold_percent > 0.0 && z.threshold_percent <= 100.0) {
            return Err(invalid("zellular.threshold_percent", "must be in (0, 100]"));
        }
        let p = &self.probe;
        if p.interval_ms == 0 {
            return Err(invalid("probe.interval_ms", "must be positive"));
        }
        if p.timeout_ms == 0 {
            return Err(invalid("probe.timeout_ms", "must be positive"));
        }
        if p.concurrency == 0 {
            return Err(invalid("probe.concurrency", "must be positive"));
        }
        if p.failures_to_down == 0 || p.successes_to_up == 0 {
            return Err(invalid(
                "probe.failures_to_down",
                "and successes_to_up must be at least 1",
            ));
        }
        if self.aggregation.reconcile_interval_ms == 0 {
            return Err(invalid(
                "aggregation.reconcile_interval_ms",
                "must be positive",
            ));
        }
        let st = &self.settlement;
        if st.max_event_age_secs == 0 || st.max_event_age_secs > 30 * 86_400 {
            return Err(invalid(
                "settlement.max_event_age_secs",
                "must be between 1 s and 30 days",
            ));
        }
        if st.max_clock_drift_secs > 86_400 {
            return Err(invalid(
                "settlement.max_clock_drift_secs",
                "must be at most one day",
            ));
        }
        let f = &self.freshness;
        if f.heartbeat_interval_ms == 0 {
            return Err(invalid(
                "freshness.heartbeat_interval_ms",
                "must be positive",
            ));
        }
        if f.bound_ms.is_some_and(|b| b < f.heartbeat_interval_ms) {
            return Err(invalid(
                "freshness.bound_ms",
                "must be at least freshness.heartbeat_interval_ms, or every quiet moment turns the replica stale",
            ));
        }
        if self.http.max_connections == 0 {
            return Err(invalid("http.max_connections", "must be positive"));
        }
        if self.http.header_read_timeout_ms == 0 {
            return Err(invalid("http.header_read_timeout_ms", "must be positive"));
        }
        if self.http.write_timeout_ms == 0 {
            return Err(invalid("http.write_timeout_ms", "must be positive"));
        }
        if self.http.max_connections_per_client == 0 {
            return Err(invalid(
                "http.max_connections_per_client",
                "must be positive",
            ));
        }
        for (name, q) in [
            ("probe", &self.rate_limit.probe),
            ("aggregate", &self.rate_limit.aggregate),
            ("signed", &self.rate_limit.signed),
            ("query", &self.rate_limit.query),
            ("ops", &self.rate_limit.ops),
        ] {
            if q.per_second == 0 || q.burst == 0 {
                return Err(invalid(
                    format!("rate_limit.{name}"),
                    "per_second and burst must be positive (set rate_limit.enabled = false to turn limits off)",
                ));
            }
        }
        for (i, w) in self.notify.webhooks.iter().enumerate() {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return Err(invalid(
                    format!("notify.webhooks[{i}].url"),
                    format!("{:?} is not an http(s) URL", w.url),
                ));
            }
        }
        if self.epoch.length_secs == 0 || self.epoch.length_secs > 100 * 366 * 86_400 {
            return Err(invalid(
                "epoch.length_secs",
                "must be between 1 s and 100 years",
            ));
        }
        if self.epoch.min_uptime_ppm > 1_000_000 {
            return Err(invalid(
                "epoch.min_uptime_ppm",
                "is parts per million: at most 1000000",
            ));
        }
        Ok(())
    }
}
