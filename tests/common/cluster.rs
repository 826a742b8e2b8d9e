//! A cluster of monitoring nodes in-process: dev sequencer, nodes, fake targets.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use livenessd::clock::Clock;
use livenessd::config::{NodeConfig, Target};
use livenessd::devseq::DevSequencer;
use livenessd::node::Node;
use livenessd::zellular::{Client, ClientConfig};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::*;

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub seq: Option<DevSequencer>,
    pub seq_srv: Running,
    /// The sequencer's URL (kept across a stop and a restart on the same port).
    pub seq_url: String,
    pub ids: Vec<Identity>,
    /// How many of `ids` (the first ones) are in the genesis; the others joined
    /// later (they start from `genesis.json` and are added by a network change).
    pub members: usize,
    pub addrs: Vec<SocketAddr>,
    pub nodes: Vec<Option<Running>>,
    pub targets: Vec<FakeTarget>,
    pub client: Client,
    pub http: reqwest::Client,
    /// Applied to every node's config before it starts.
    pub tweak: Tweak,
    /// Listeners bound at start, handed to each node on its first run.
    listeners: std::sync::Mutex<Vec<Option<tokio::net::TcpListener>>>,
    /// The time of day of the sequencer and every node.
    pub clock: Clock,
    /// How often the sequencer finalizes.
    finalize: Duration,
}

/// Where a manual clock starts: any fixed, plausible time.
pub const T0: i64 = 1_800_000_000;

pub type Tweak = Box<dyn Fn(usize, &mut NodeConfig) + Send + Sync>;

/// Probe interval of [`fast`] clusters, ms.
pub const FAST_PROBE_MS: u64 = 200;
/// Failed probes before down in [`fast`] clusters.
pub const FAST_FAILURES_TO_DOWN: u32 = 3;

/// Quick probes and aggregator timing for real-time aggregator tests.
pub fn fast(cfg: &mut NodeConfig) {
    cfg.probe.interval_ms = FAST_PROBE_MS;
    cfg.probe.failures_to_down = FAST_FAILURES_TO_DOWN;
    cfg.probe.successes_to_up = 2;
    cfg.aggregation.retry_initial_ms = 200;
    cfg.aggregation.retry_max_ms = 1_000;
    cfg.aggregation.start_jitter_ms = 100;
    cfg.aggregation.reconcile_interval_ms = 200;
    cfg.aggregation.confirm_timeout_ms = 5_000;
    cfg.aggregation.rank_step_ms = 300;
    cfg.aggregation.roles_refresh_ms = 1_000;
}

pub fn node_url(a: SocketAddr) -> String {
    format!("http://{a}")
}

impl Cluster {
    pub async fn start(n_nodes: u8, n_targets: usize) -> Cluster {
        Self::start_with(n_nodes, n_targets, Box::new(|_, _| {})).await
    }

    /// With the system clock (the aggregator's real-time tests).
    pub async fn start_with(n_nodes: u8, n_targets: usize, tweak: Tweak) -> Cluster {
        Self::start_clocked(n_nodes, n_targets, tweak, Clock::system()).await
    }

    /// With a manual clock standing at [`T0`]: time moves only when the test says.
    pub async fn start_manual(n_nodes: u8, n_targets: usize, tweak: Tweak) -> Cluster {
        Self::start_clocked(n_nodes, n_targets, tweak, Clock::manual(T0)).await
    }

    pub async fn start_clocked(
        n_nodes: u8,
        n_targets: usize,
        tweak: Tweak,
        clock: Clock,
    ) -> Cluster {
        let finalize = devseq_config(Path::new("")).finalize_interval;
        Self::start_full(n_nodes, n_targets, tweak, clock, finalize).await
    }

    /// With the system clock and a sequencer that finalizes only every `finalize`.
    pub async fn start_slow(
        n_nodes: u8,
        n_targets: usize,
        tweak: Tweak,
        finalize: Duration,
    ) -> Cluster {
        Self::start_full(n_nodes, n_targets, tweak, Clock::system(), finalize).await
    }

    pub async fn start_full(
        n_nodes: u8,
        n_targets: usize,
        tweak: Tweak,
        clock: Clock,
        finalize: Duration,
    ) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut sc = devseq_config(&dir.path().join("seq"));
        sc.clock = clock.clone();
        sc.finalize_interval = finalize;
        let (seq, seq_srv) = start_devseq(sc, any_port()).await;
        let ids: Vec<Identity> = (1..=n_nodes).map(Identity::new).collect();
        // Bind every node's listener now and keep it until the node starts: a port
        // that is only reserved and released can be handed to another test.
        let listeners: Vec<tokio::net::TcpListener> =
            (0..n_nodes).map(|_| bind(any_port())).collect();
        let addrs = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let targets = (0..n_targets).map(|_| FakeTarget::start()).collect();
        let mut cc = ClientConfig::new("livenessd", vec![seq_srv.url.clone()]);
        cc.retry_initial = Duration::from_millis(10);
        let mut c = Cluster {
            dir,
            seq: Some(seq),
            seq_url: seq_srv.url.clone(),
            seq_srv,
            members: ids.len(),
            ids,
            addrs,
            nodes: Vec::new(),
            targets,
            client: Client::new(cc),
            http: livenessd::http_client::builder().build().unwrap(),
            tweak,
            listeners: std::sync::Mutex::new(listeners.into_iter().map(Some).collect()),
            clock,
            finalize,
        };
        for i in 0..n_nodes as usize {
            let r = c.run_node(i).await;
            c.nodes.push(Some(r));
        }
        c
    }

    pub fn address(t: usize) -> String {
        format!("0xNode{t}")
    }

    pub fn config(&self, i: usize) -> NodeConfig {
        let key_file = self.dir.path().join(format!("node{i}.key"));
        if !key_file.exists() {
            livenessd::keyfile::write_secret(&key_file, &self.ids[i].sk.to_hex()).unwrap();
        }
        let mut cfg = NodeConfig {
            node_id: self.ids[i].id.clone(),
            listen: self.addrs[i],
            database: self.dir.path().join(format!("node{i}.sqlite")),
            bls_key_file: key_file,
            monitoring_nodes: self
                .ids
                .iter()
                .zip(&self.addrs)
                .take(self.members)
                .map(|(id, a)| id.monitoring_node(&node_url(*a)))
                .collect(),
            targets: self
                .targets
                .iter()
                .enumerate()
                .map(|(t, ft)| Target {
                    address: Self::address(t),
                    http: Some(ft.url.clone()),
                    tcp: None,
                })
                .collect(),
            ..Default::default()
        };
        cfg.zellular.operators_file = Some(self.dir.path().join("seq/operators.json"));
        cfg.zellular.gateways = vec![self.seq_url.clone()];
        cfg.zellular.poll_max_ms = 50;
        cfg.probe.interval_ms = 100;
        cfg.probe.timeout_ms = 500;
        cfg.probe.jitter_ms = 0;
        if !self.clock.is_manual() {
            // Real time: history settles within seconds.
            cfg.settlement.max_event_age_secs = 3;
            cfg.freshness.heartbeat_interval_ms = 500;
            cfg.freshness.bound_ms = Some(10_000);
        }
        // Tests poll hard from loopback; the limits have their own tests.
        cfg.rate_limit.enabled = false;
        (self.tweak)(i, &mut cfg);
        if i >= self.members {
            // A node that joined: the network is the genesis every member has.
            cfg.genesis_file = Some(self.genesis_file());
            cfg.monitoring_nodes.clear();
            cfg.targets.clear();
        }
        cfg.validate().unwrap();
        cfg
    }

    /// The genesis of this cluster's network, written once to `genesis.json`.
    pub fn genesis_file(&self) -> std::path::PathBuf {
        let path = self.dir.path().join("genesis.json");
        if !path.exists() {
            let g = livenessd::network::Genesis::from_config(&self.config(0)).unwrap();
            std::fs::write(&path, g.to_pretty()).unwrap();
        }
        path
    }

    /// Starts a node with key `Identity::new(k)` that is not a monitoring node: it
    /// replicates from the genesis and signs nothing until a change adds it.
    /// Returns its index.
    pub async fn join(&mut self, k: u8) -> usize {
        self.genesis_file();
        let listener = bind(any_port());
        self.addrs.push(listener.local_addr().unwrap());
        self.listeners.lock().unwrap().push(Some(listener));
        self.ids.push(Identity::new(k));
        let i = self.ids.len() - 1;
        let r = self.run_node(i).await;
        self.nodes.push(Some(r));
        i
    }

    /// Node `i` as a monitoring node entry (what an `add_node` change carries).
    pub fn monitoring_node(&self, i: usize) -> livenessd::config::MonitoringNode {
        self.ids[i].monitoring_node(&node_url(self.addrs[i]))
    }

    /// A counter or gauge of node `i`'s `/metrics` (0 if absent).
    pub async fn metric(&self, i: usize, series: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", node_url(self.addrs[i])))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    }

    pub async fn run_node(&self, i: usize) -> Running {
        let cfg = self.config(i);
        let first = self.listeners.lock().unwrap()[i].take();
        let listener = first.unwrap_or_else(|| bind(self.addrs[i]));
        let node = Node::open_with_clock(cfg, self.clock.clone())
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            node.run(listener, token).await.unwrap();
        });
        Running {
            addr: self.addrs[i],
            url: node_url(self.addrs[i]),
            stop,
            task,
        }
    }

    pub async fn stop_node(&mut self, i: usize) {
        if let Some(r) = self.nodes[i].take() {
            r.shutdown().await;
        }
    }

    pub async fn restart_node(&mut self, i: usize) {
        let r = self.run_node(i).await;
        self.nodes[i] = Some(r);
    }

    pub async fn submit(&self, batch: &str) {
        self.client.submit(batch).await.unwrap();
    }

    pub async fn get(&self, i: usize, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", node_url(self.addrs[i])))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn position(&self, i: usize) -> Value {
        self.get(i, "/v1/position").await.1
    }

    /// Stops the sequencer (its log stays on disk).
    pub async fn stop_sequencer(&mut self) {
        let addr = self.seq_srv.addr;
        let stopped = std::mem::replace(
            &mut self.seq_srv,
            Running {
                addr,
                url: self.seq_url.clone(),
                stop: CancellationToken::new(),
                task: tokio::spawn(async {}),
            },
        );
        stopped.shutdown().await;
        // The last handle goes: the log's lock is released for a restart.
        self.seq = None;
    }

    /// Starts the sequencer again on the same port, from its log.
    pub async fn start_sequencer(&mut self) {
        let mut sc = devseq_config(&self.dir.path().join("seq"));
        sc.clock = self.clock.clone();
        sc.finalize_interval = self.finalize;
        let (seq, srv) = start_devseq(sc, self.seq_srv.addr).await;
        self.seq = Some(seq);
        self.seq_srv = srv;
    }

    /// The rows of a paginated `/v1/` answer (first page).
    pub async fn items(&self, i: usize, path: &str) -> Vec<Value> {
        let (status, v) = self.get(i, path).await;
        assert_eq!(status, 200, "{path}: {v}");
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// Moves the manual clock on by `secs`, posts a heartbeat and waits for every
    /// replica to apply it: their `log_time` is then the new time, and history up
    /// to it minus `max_event_age` is settled.
    pub async fn advance(&self, secs: i64) {
        self.clock.advance(secs);
        self.submit("[]").await;
        self.settle().await;
    }

    /// Waits until every running node is ready and its settled watermark reaches `t`.
    pub async fn settled_until(&self, t: i64) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_none() {
                continue;
            }
            eventually(30, &format!("node {i} settles {t}"), || async move {
                let (status, r) = self.get(i, "/ready").await;
                status == 200 && r["settled_until"].as_i64().is_some_and(|s| s >= t)
            })
            .await;
        }
    }

    /// Waits until every running node has applied up to the sequencer's last index.
    pub async fn settle(&self) {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.settle_only(&all).await;
    }

    /// [`Cluster::settle`] for some nodes only.
    pub async fn settle_only(&self, which: &[usize]) {
        let last = get_json(&self.http, &format!("{}/node/state", self.seq_url)).await;
        let want = last["data"]["apps"]["livenessd"]["last_sequenced_index"]
            .as_u64()
            .unwrap_or(0);
        for &i in which {
            if self.nodes[i].is_none() {
                continue;
            }
            eventually(
                20,
                &format!("node {i} reaches index {want}"),
                // At least: aggregators' heartbeats keep the log growing.
                || async move { self.position(i).await["index"].as_u64() >= Some(want) },
            )
            .await;
        }
    }
}
