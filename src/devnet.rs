//! `livenessd devnet`: a whole local network in one command — the dev sequencer and
//! N nodes as separate processes of this binary, demo targets served by this process,
//! keys and configs written to a directory it prints. `--demo` tells the story end to
//! end and exits 0 only when every step held.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::{MonitoringNode, Threshold};
use crate::events::MonitorSet;
use crate::network::init::{InitSpec, NodeSpec};
use crate::verify::{verify_value, Verdict};

/// Options of `livenessd devnet`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevnetArgs {
    /// Number of monitoring nodes (the first two also aggregate).
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// Number of demo targets.
    #[arg(long, default_value_t = 3)]
    pub targets: usize,
    /// Where keys, configs, databases and logs go (default: a new temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Run the scripted story (outage, recovery, matching tables, verified proof), then exit.
    #[arg(long)]
    pub demo: bool,
    /// Probe interval of the nodes, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub probe_interval_ms: u64,
    /// How many nodes (the first ones) also aggregate; `all` for every node.
    #[arg(long, default_value = "2", value_parser = parse_aggregators)]
    pub aggregators: Aggregators,
    /// Also monitor this target, as ADDRESS=HEALTH_URL (repeatable).
    #[arg(long = "target", value_parser = parse_extra_target)]
    pub extra_targets: Vec<(String, String)>,
    /// Every node posts applied transitions to this webhook (repeatable).
    #[arg(long = "webhook")]
    pub webhooks: Vec<String>,
}

/// How many devnet nodes aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregators {
    First(usize),
    All,
}

impl Aggregators {
    fn includes(self, i: usize) -> bool {
        match self {
            Aggregators::All => true,
            Aggregators::First(n) => i <= n,
        }
    }
}

fn parse_aggregators(s: &str) -> Result<Aggregators, String> {
    if s == "all" {
        return Ok(Aggregators::All);
    }
    s.parse()
        .map(Aggregators::First)
        .map_err(|_| format!("{s:?}: a number of nodes, or `all`"))
}

fn parse_extra_target(s: &str) -> Result<(String, String), String> {
    crate::network::init::parse_target(s)
}

/// The devnet's epochs: short, so a certificate exists within a minute.
pub const EPOCH_SECS: u64 = 20;

/// The devnet's `settlement.max_event_age_secs`: history settles within seconds.
pub const MAX_EVENT_AGE: u64 = 5;

/// `n` distinct free loopback addresses. They are released for the child processes
/// to bind, so another program could take one in between; the devnet then reports
/// the child that failed to start.
fn free_ports(n: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let held = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(held
        .iter()
        .map(|l| l.local_addr())
        .collect::<Result<Vec<_>, _>>()?)
}

/// A demo target: serves `/eigen/node/health` with 200 until stopped.
struct DemoTarget {
    address: String,
    addr: SocketAddr,
    stop: Option<CancellationToken>,
}

impl DemoTarget {
    fn url(&self) -> String {
        format!("http://{}/eigen/node/health", self.addr)
    }

    async fn start(&mut self) -> anyhow::Result<()> {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.set_reuseaddr(true)?;
        sock.bind(self.addr)?;
        let listener = sock.listen(128)?;
        // First start on port 0: keep the port the system gave, to restart on it.
        self.addr = listener.local_addr()?;
        let token = CancellationToken::new();
        let t = token.clone();
        let router =
            axum::Router::new().route("/eigen/node/health", axum::routing::get(|| async { "ok" }));
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(t.cancelled_owned())
                .await;
        });
        self.stop = Some(token);
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(t) = self.stop.take() {
            t.cancel();
        }
    }
}

struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

fn spawn(name: &str, args: &[String], log: &Path) -> anyhow::Result<Proc> {
    let exe = std::env::current_exe().context("locating the livenessd binary")?;
    let out = std::fs::File::create(log).with_context(|| format!("{}", log.display()))?;
    let mut cmd = Command::new(exe);
    // The devnet's configs are the whole truth: no LIVENESSD_* override leaks in.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("LIVENESSD_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(Proc {
        name: name.to_owned(),
        child,
        log: log.to_owned(),
    })
}

/// SIGTERM (graceful), then SIGKILL after a grace period.
async fn terminate(p: &mut Proc) {
    // A signal from this process (no `kill` binary needed: the container image
    // holds nothing but livenessd).
    if let Some(pid) = p
        .child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(Duration::from_secs(10), p.child.wait())
        .await
        .is_err()
    {
        let _ = p.child.kill().await;
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

struct Devnet {
    dir: PathBuf,
    seq_url: String,
    node_urls: Vec<String>,
    monitors: Vec<MonitoringNode>,
    /// Demo targets, shared with the control endpoint.
    targets: Arc<Mutex<Vec<DemoTarget>>>,
    /// `(address, health URL)` of every target.
    target_info: Vec<(String, String)>,
    control_url: String,
    procs: Vec<Proc>,
    http: reqwest::Client,
    aggregators: Aggregators,
    /// The nodes running now (ids, dirs, URLs).
    specs: Vec<NodeSpec>,
    /// The tables of every node's configuration.
    tables: String,
    /// Adds and removals asked at the control endpoint, served by the run loop.
    requests: tokio::sync::mpsc::Receiver<NodeRequest>,
}

/// A change of the devnet's monitoring nodes, asked at the control endpoint.
enum NodeAsk {
    Add,
    Remove(String),
}

struct NodeRequest {
    ask: NodeAsk,
    reply: tokio::sync::oneshot::Sender<(StatusCode, String)>,
}

/// The tables every devnet node's configuration shares (written after its own
/// keys by `network::init`).
fn devnet_tables(args: &DevnetArgs) -> String {
    let probe_interval_ms = args.probe_interval_ms;
    format!(
        r#"[zellular]
operators_file = "../sequencer/operators.json"
poll_max_ms = 200

[probe]
interval_ms = {probe_interval_ms}
timeout_ms = {timeout}
jitter_ms = {jitter}
failures_to_down = 3
successes_to_up = 2

[aggregation]
retry_initial_ms = 500
retry_max_ms = 5000
start_jitter_ms = 200
reconcile_interval_ms = {probe_interval_ms}
confirm_timeout_ms = 10000
rank_step_ms = 500
roles_refresh_ms = 15000

# Short settings so a demo settles in seconds (a real network keeps the defaults;
# settlement and epoch values must be the same on every node of a network).
[epoch]
length_secs = {EPOCH_SECS}
# A target below 99 % uptime in an epoch is marked breached in its certificate.
min_uptime_ppm = 990000

[settlement]
max_event_age_secs = {MAX_EVENT_AGE}
max_clock_drift_secs = 10

[freshness]
heartbeat_interval_ms = 1000
bound_ms = 5000
{webhooks}"#,
        timeout = (probe_interval_ms * 4 / 5).max(100),
        jitter = probe_interval_ms / 10,
        webhooks = args
            .webhooks
            .iter()
            .map(|u| format!("\n[[notify.webhooks]]\nurl = {u:?}\n"))
            .collect::<String>(),
    )
}

impl Devnet {
    async fn start(args: &DevnetArgs) -> anyhow::Result<Devnet> {
        if args.nodes == 0 || args.targets == 0 {
            bail!("--nodes and --targets must be at least 1");
        }
        if args.aggregators == Aggregators::First(0) {
            bail!("--aggregators must be at least 1: heartbeats and events come from aggregators");
        }
        let dir = match &args.dir {
            Some(d) => d.clone(),
            None => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                std::env::temp_dir()
                    .join(format!("livenessd-devnet-{}-{stamp}", std::process::id()))
            }
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        let http = crate::http_client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;

        // The dev sequencer.
        let mut ports = free_ports(1 + args.nodes)?.into_iter();
        let seq_addr = ports.next().expect("one port per process");
        let seq_url = format!("http://{seq_addr}");
        let seq_dir = dir.join("sequencer");
        let mut procs = vec![spawn(
            "sequencer",
            &[
                "sequencer".into(),
                "--listen".into(),
                seq_addr.to_string(),
                "--data-dir".into(),
                seq_dir.display().to_string(),
                "--app".into(),
                "livenessd".into(),
            ],
            &dir.join("sequencer.log"),
        )?];
        wait_http(
            &http,
            &format!("{seq_url}/health"),
            &mut procs,
            Duration::from_secs(30),
        )
        .await?;

        // Demo targets, served here.
        let mut targets = Vec::new();
        for t in 1..=args.targets {
            let mut dt = DemoTarget {
                address: format!("0xTarget{t}"),
                addr: "127.0.0.1:0".parse().expect("literal address"),
                stop: None,
            };
            dt.start().await?;
            targets.push(dt);
        }

        // Keys, nodes.json, configs: a new network, as `livenessd network init` makes one.
        let mut target_info: Vec<(String, String)> = targets
            .iter()
            .map(|t| (t.address.clone(), t.url()))
            .collect();
        target_info.extend(args.extra_targets.iter().cloned());
        let listens: Vec<SocketAddr> = ports.by_ref().take(args.nodes).collect();
        let specs: Vec<NodeSpec> = listens
            .iter()
            .enumerate()
            .map(|(k, listen)| NodeSpec {
                id: format!("Node{}", k + 1),
                url: format!("http://{listen}"),
                listen: listen.to_string(),
                dir_name: format!("node{}", k + 1),
                aggregator: args.aggregators.includes(k + 1),
            })
            .collect();
        let tables = devnet_tables(args);
        let monitors = crate::network::init::init(&InitSpec {
            dir: dir.clone(),
            nodes: specs.clone(),
            targets: target_info.clone(),
            tables: tables.clone(),
            stake: 1.0,
        })?;
        let mut node_urls = Vec::new();
        for n in &specs {
            let ndir = dir.join(&n.dir_name);
            procs.push(spawn(
                &n.id,
                &[
                    "--config".into(),
                    ndir.join("node.toml").display().to_string(),
                ],
                &ndir.join("node.log"),
            )?);
            node_urls.push(n.url.clone());
        }
        for u in &node_urls {
            wait_http(
                &http,
                &format!("{u}/health"),
                &mut procs,
                Duration::from_secs(30),
            )
            .await?;
        }
        let targets = Arc::new(Mutex::new(targets));
        let (tx, requests) = tokio::sync::mpsc::channel(4);
        let control_url = serve_control(Control {
            targets: targets.clone(),
            nodes: tx,
        })
        .await?;
        std::fs::write(
            dir.join("devnet.json"),
            serde_json::to_string_pretty(&serde_json::json!({
                "sequencer": seq_url,
                "control": control_url,
                "nodes": node_urls,
                "genesis": dir.join("genesis.json"),
            }))? + "\n",
        )?;
        Ok(Devnet {
            dir,
            seq_url,
            node_urls,
            monitors,
            targets,
            target_info,
            control_url,
            procs,
            http,
            aggregators: args.aggregators,
            specs,
            tables,
            requests,
        })
    }

    /// Serves one add or removal of a monitoring node: the change is approved on
    /// every node that stays (the devnet operates them all), proposed through
    /// one of them, and the node started or stopped.
    async fn change_nodes(&mut self, ask: NodeAsk) -> anyhow::Result<String> {
        let proposer = match &ask {
            NodeAsk::Add => self.specs.first(),
            NodeAsk::Remove(id) => self.specs.iter().find(|s| s.id != *id),
        }
        .ok_or_else(|| anyhow::anyhow!("no node left to propose the change"))?
        .clone();
        let pdir = self.dir.join(&proposer.dir_name);
        let mut cfg =
            crate::config::NodeConfig::load(Some(&pdir.join("node.toml")), &Default::default())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        crate::network::Genesis::resolve(&mut cfg)?;
        let roots = crate::http_client::Roots::default();
        let peers = crate::peers::Peers::new(Duration::from_secs(5), &roots);
        let net = crate::propose::in_force(&peers, &proposer.url).await?;
        let (op, new) = match &ask {
            NodeAsk::Add => {
                let k = (1..)
                    .find(|k| !self.dir.join(format!("node{k}")).exists())
                    .expect("a free number");
                let listen = free_ports(1)?[0];
                let spec = NodeSpec {
                    id: format!("Node{k}"),
                    url: format!("http://{listen}"),
                    listen: listen.to_string(),
                    dir_name: format!("node{k}"),
                    aggregator: false,
                };
                let ndir = self.dir.join(&spec.dir_name);
                let node = crate::network::init::new_member(&ndir, &spec, 1.0)?;
                std::fs::write(
                    ndir.join("node.toml"),
                    crate::network::init::joining_node_toml(&spec, &self.tables),
                )?;
                // It starts from the genesis and replays the whole log.
                self.procs.push(spawn(
                    &spec.id,
                    &[
                        "--config".into(),
                        ndir.join("node.toml").display().to_string(),
                    ],
                    &ndir.join("node.log"),
                )?);
                if let Err(e) = wait_http(
                    &self.http,
                    &format!("{}/health", spec.url),
                    &mut self.procs,
                    Duration::from_secs(30),
                )
                .await
                {
                    if let Some(i) = self.procs.iter().position(|p| p.name == spec.id) {
                        let mut proc = self.procs.remove(i);
                        terminate(&mut proc).await;
                    }
                    return Err(e);
                }
                (crate::network::Op::AddNode { node }, Some(spec))
            }
            NodeAsk::Remove(id) => {
                if !self.specs.iter().any(|s| s.id == *id) {
                    bail!("no running node {id}");
                }
                (crate::network::Op::RemoveNode { id: id.clone() }, None)
            }
        };
        let p = crate::network::Proposal {
            network: net.id.clone(),
            version: net.version + 1,
            changes: vec![op],
        };
        for spec in &self.specs {
            let removed = matches!(&ask, NodeAsk::Remove(id) if *id == spec.id);
            if !removed {
                let db = self.dir.join(&spec.dir_name).join("replica.sqlite");
                crate::network::approve(&crate::network::approvals_dir(&db), &p)?;
            }
        }
        crate::propose::propose(&cfg, &p, Duration::from_secs(60)).await?;
        match ask {
            NodeAsk::Add => {
                let spec = new.expect("a new node");
                let line = format!(
                    "{} added at network version {} ({}; log {})\n",
                    spec.id,
                    p.version,
                    spec.url,
                    self.dir.join(&spec.dir_name).join("node.log").display()
                );
                self.node_urls.push(spec.url.clone());
                self.specs.push(spec);
                Ok(line)
            }
            NodeAsk::Remove(id) => {
                if let Some(i) = self.procs.iter().position(|p| p.name == id) {
                    let mut proc = self.procs.remove(i);
                    terminate(&mut proc).await;
                }
                if let Some(i) = self.specs.iter().position(|s| s.id == id) {
                    let spec = self.specs.remove(i);
                    self.node_urls.retain(|u| *u != spec.url);
                }
                Ok(format!(
                    "{id} removed at network version {} and stopped\n",
                    p.version
                ))
            }
        }
    }

    fn print(&self) {
        println!("livenessd devnet in {}", self.dir.display());
        println!(
            "  sequencer  {}  (operators: {}/sequencer/operators.json)",
            self.seq_url,
            self.dir.display()
        );
        for (i, u) in self.node_urls.iter().enumerate() {
            let role = if self.aggregators.includes(i + 1) {
                "aggregator"
            } else {
                "operator"
            };
            println!(
                "  Node{}      {u}  ({role}; {u}/v1/targets, {u}/metrics)",
                i + 1
            );
        }
        for (address, url) in &self.target_info {
            println!("  {address:<10} {url}");
        }
        println!(
            "  control    {c}  (curl -X POST {c}/targets/{t}/stop, then …/start)",
            c = self.control_url,
            t = self.target_info[0].0
        );
        println!(
            "  nodes      curl -X POST {c}/nodes   (adds a monitoring node through a network change);\n             curl -X POST {c}/nodes/Node2/remove",
            c = self.control_url
        );
        println!(
            "  monitoring nodes: {d}/nodes.json; genesis: {d}/genesis.json; configs and logs: {d}/node*/",
            d = self.dir.display()
        );
    }

    /// A child that exited is an error (with its last log lines).
    fn check_children(&mut self) -> anyhow::Result<()> {
        for p in &mut self.procs {
            if let Ok(Some(status)) = p.child.try_wait() {
                bail!(
                    "{} exited ({status}); its log ends:\n{}",
                    p.name,
                    tail(&p.log)
                );
            }
        }
        Ok(())
    }

    async fn get(&self, url: &str) -> Option<Value> {
        let r = self.http.get(url).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    async fn shutdown(&mut self) {
        for t in self.targets.lock().await.iter_mut() {
            t.stop();
        }
        // Nodes first, the sequencer last.
        for p in self.procs.iter_mut().rev() {
            terminate(p).await;
        }
    }

    /// Polls until `f` holds on every node, printing progress.
    async fn until_all(
        &mut self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let mut last = usize::MAX;
        loop {
            self.check_children()?;
            let mut ok = 0;
            for u in &self.node_urls {
                if let Some(v) = self.get(&format!("{u}/v1/targets")).await {
                    if f(&v) {
                        ok += 1;
                    }
                }
            }
            if ok != last {
                println!(
                    "  … {what}: {ok}/{} replicas ({:.1} s)",
                    self.node_urls.len(),
                    start.elapsed().as_secs_f64()
                );
                last = ok;
            }
            if ok == self.node_urls.len() {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                bail!("timed out after {timeout:?} waiting for: {what}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until every replica's settled watermark reaches `t`: no event applied
    /// later can change an answer about a window ending there.
    async fn until_settled(&mut self, t: i64) -> anyhow::Result<()> {
        println!(
            "\n== demo: waiting for history up to {} to settle on every replica \
             (log_time must pass it by max_event_age = {MAX_EVENT_AGE} s)",
            utc(t)
        );
        let start = Instant::now();
        let mut last_print = None;
        loop {
            self.check_children()?;
            let mut lowest: Option<i64> = None;
            for u in &self.node_urls {
                let s = self
                    .get(&format!("{u}/ready"))
                    .await
                    .and_then(|r| r["settled_until"].as_i64())
                    .unwrap_or(i64::MIN);
                lowest = Some(lowest.map_or(s, |l: i64| l.min(s)));
            }
            let lowest = lowest.unwrap_or(i64::MIN);
            if lowest >= t {
                println!(
                    "   settled everywhere after {:.1} s",
                    start.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            let left = t.saturating_sub(lowest);
            if last_print != Some(left) && lowest > 0 {
                println!("  … settled up to {} ({left} s to go)", utc(lowest));
                last_print = Some(left);
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("history up to {t} did not settle within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn demo(&mut self) -> anyhow::Result<()> {
        println!("\n== demo: waiting for every replica to be ready");
        let start = Instant::now();
        for u in self.node_urls.clone() {
            loop {
                self.check_children()?;
                if self.get(&format!("{u}/ready")).await.is_some() {
                    break;
                }
                if start.elapsed() > Duration::from_secs(60) {
                    bail!("{u} did not become ready");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let target = self.target_info[0].0.clone();
        let state_of = |t: String, want: &'static str| {
            move |v: &Value| {
                v["items"]
                    .as_array()
                    .and_then(|a| a.iter().find(|x| x["address"] == t.as_str()))
                    .is_some_and(|x| x["state"] == want)
            }
        };
        println!("== demo: stopping {target}; waiting for a finalized `down` on every replica");
        self.targets.lock().await[0].stop();
        let took = self
            .until_all(
                "down",
                Duration::from_secs(90),
                state_of(target.clone(), "down"),
            )
            .await?;
        println!("   down everywhere after {:.1} s", took.as_secs_f64());
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!("== demo: restarting {target}; waiting for `up`");
        self.targets.lock().await[0].start().await?;
        let took = self
            .until_all(
                "up",
                Duration::from_secs(90),
                state_of(target.clone(), "up"),
            )
            .await?;
        println!("   up everywhere after {:.1} s", took.as_secs_f64());

        // The downtime table, as every replica sees it.
        println!("\n== demo: the interval table of {target} on every replica");
        let mut tables = Vec::new();
        for (i, u) in self.node_urls.iter().enumerate() {
            let t = self
                .get(&format!("{u}/v1/intervals?address={target}"))
                .await
                .ok_or_else(|| anyhow::anyhow!("Node{}: no interval table", i + 1))?;
            tables.push(t["items"].clone());
        }
        print_table(&target, &tables[0]);
        if let Some(k) = tables
            .iter()
            .position(|t| strip_ongoing(t) != strip_ongoing(&tables[0]))
        {
            bail!("Node{} has a different table: {}", k + 1, tables[k]);
        }
        println!("   all {} replicas hold this table", tables.len());

        // Downtime answers agree; a quorum proof verifies offline.
        let events = self
            .get(&format!("{}/v1/events?address={target}", self.node_urls[0]))
            .await
            .ok_or_else(|| anyhow::anyhow!("no events"))?;
        let ts: Vec<i64> = events["items"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["timestamp"].as_i64()).collect())
            .unwrap_or_default();
        let (Some(&down), Some(&up)) = (ts.first(), ts.last()) else {
            bail!("expected a down and an up event, found {events}");
        };
        let (from, to) = ((down - 60).max(0), up + 1);
        self.until_settled(to).await?;
        let q = format!("address={target}&from_timestamp={from}&to_timestamp={to}");
        let mut answers = Vec::new();
        for u in &self.node_urls {
            let d = self
                .get(&format!("{u}/downtime?{q}"))
                .await
                .ok_or_else(|| anyhow::anyhow!("{u}: no /downtime"))?;
            answers.push(d["total_downtime_seconds"].clone());
        }
        if answers.windows(2).any(|w| w[0] != w[1]) {
            bail!("replicas disagree on the downtime: {answers:?}");
        }
        println!(
            "\n== demo: every replica says {target} was down {} s in [{from}, {to}]",
            answers[0]
        );
        let proof = self
            .get(&format!("{}/aggregate_downtime?{q}", self.node_urls[0]))
            .await
            .ok_or_else(|| anyhow::anyhow!("/aggregate_downtime gave no proof"))?;
        let path = self.dir.join("demo-proof.json");
        std::fs::write(&path, serde_json::to_string_pretty(&proof)? + "\n")?;
        println!(
            "   quorum proof saved to {}:\n{}",
            path.display(),
            serde_json::to_string_pretty(&proof)?
        );
        let set = std::sync::Arc::new(MonitorSet::new(&self.monitors, &[], Threshold::TWO_THIRDS)?);
        match verify_value(&proof, &|_| Ok(set.clone())).map_err(anyhow::Error::msg)? {
            Verdict::Valid(s) => println!("   livenessd verify: {s}"),
            Verdict::Invalid(why) => bail!("the proof does not verify: {why}"),
        }
        println!(
            "   check it yourself: livenessd verify {} --nodes {}",
            path.display(),
            self.dir.join("nodes.json").display()
        );
        self.demo_certificate(&target, down).await?;
        println!("\n== demo complete: every step held");
        Ok(())
    }
}

impl Devnet {
    /// Waits for the certificate of the epoch holding `t` on every replica; checks
    /// it and `target`'s row with its inclusion proof; saves them.
    async fn demo_certificate(&mut self, target: &str, t: i64) -> anyhow::Result<()> {
        let n = t.div_euclid(EPOCH_SECS as i64);
        println!(
            "\n== demo: waiting for the certificate of epoch {n} ({} s epochs) on every replica",
            EPOCH_SECS
        );
        let start = Instant::now();
        let mut certs: Vec<Value>;
        loop {
            self.check_children()?;
            certs = Vec::new();
            for u in &self.node_urls {
                if let Some(c) = self
                    .get(&format!("{u}/v1/certificates/epochs/{n}?limit=1000"))
                    .await
                {
                    certs.push(c);
                }
            }
            if certs.len() == self.node_urls.len() {
                break;
            }
            if start.elapsed() > Duration::from_secs(90) {
                bail!(
                    "epoch {n} was not certified on every replica within 90 s ({} of {})",
                    certs.len(),
                    self.node_urls.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if let Some(k) = certs.iter().position(|c| {
            c["certificate"] != certs[0]["certificate"] || c["items"] != certs[0]["items"]
        }) {
            bail!("Node{} holds a different certificate: {}", k + 1, certs[k]);
        }
        let c = &certs[0];
        println!(
            "   certified on all {} replicas after {:.1} s: {} rows, root {}",
            certs.len(),
            start.elapsed().as_secs_f64(),
            c["certificate"]["rows"],
            c["certificate"]["root"].as_str().unwrap_or_default()
        );
        for r in c["items"].as_array().into_iter().flatten() {
            println!(
                "   {:<14} monitored {:>3} s  down {:>3} s  outages {}  uptime {:>7.3} %{}",
                r["address"].as_str().unwrap_or_default(),
                r["monitored_seconds"],
                r["downtime_seconds"],
                r["outages"],
                r["uptime_ppm"].as_u64().unwrap_or(0) as f64 / 10_000.0,
                if r["breached"] == true {
                    "  breached"
                } else {
                    ""
                }
            );
        }
        let proof = self
            .get(&format!(
                "{}/v1/certificates/epochs/{n}/proof?address={target}",
                self.node_urls[0]
            ))
            .await
            .ok_or_else(|| anyhow::anyhow!("no inclusion proof of {target}"))?;
        let set = std::sync::Arc::new(MonitorSet::new(&self.monitors, &[], Threshold::TWO_THIRDS)?);
        let whole = serde_json::json!({"certificate": c["certificate"], "rows": c["items"]});
        for (what, v) in [
            ("the certificate and its rows", &whole),
            ("the row of the outage", &proof),
        ] {
            match verify_value(v, &|_| Ok(set.clone())).map_err(anyhow::Error::msg)? {
                Verdict::Valid(s) => println!("   livenessd verify ({what}): {s}"),
                Verdict::Invalid(why) => bail!("{what} does not verify: {why}"),
            }
        }
        let saved = serde_json::json!({
            "certificate": c["certificate"],
            "rows": c["items"],
            "row": proof["row"],
            "proof": proof["proof"],
        });
        let path = self.dir.join("demo-certificate.json");
        std::fs::write(&path, serde_json::to_string_pretty(&saved)? + "\n")?;
        println!(
            "   saved to {}; check it yourself: livenessd verify {} --nodes {}",
            path.display(),
            path.display(),
            self.dir.join("nodes.json").display()
        );
        Ok(())
    }
}

fn strip_ongoing(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(rows) = t.as_array_mut() {
        for r in rows {
            if r["end"].is_null() {
                r["duration"] = Value::Null;
            }
        }
    }
    t
}

use crate::timefmt::{human, utc};

fn print_table(address: &str, t: &Value) {
    println!(
        "   | {:<12} | {:<21} | {:<21} | {:<18} | {:<6} |",
        "Node", "Start (UTC)", "End (UTC)", "Duration", "Status"
    );
    for r in t.as_array().into_iter().flatten() {
        let start = r["start"].as_i64().unwrap_or(0);
        let end = r["end"]
            .as_i64()
            .map(utc)
            .unwrap_or_else(|| "ongoing".into());
        println!(
            "   | {:<12} | {:<21} | {:<21} | {:<18} | {:<6} |",
            address,
            utc(start),
            end,
            human(r["duration"].as_i64().unwrap_or(0)),
            r["state"].as_str().unwrap_or("?")
        );
    }
}

/// What the control endpoint acts on.
#[derive(Clone)]
struct Control {
    targets: Arc<Mutex<Vec<DemoTarget>>>,
    nodes: tokio::sync::mpsc::Sender<NodeRequest>,
}

/// The devnet's control endpoint: `POST /targets/{address}/{stop|start}`,
/// `POST /nodes` (add a monitoring node), `POST /nodes/{id}/remove`.
async fn serve_control(control: Control) -> anyhow::Result<String> {
    async fn target(
        State(c): State<Control>,
        UrlPath((address, action)): UrlPath<(String, String)>,
    ) -> (StatusCode, String) {
        let mut targets = c.targets.lock().await;
        let Some(t) = targets.iter_mut().find(|t| t.address == address) else {
            return (StatusCode::NOT_FOUND, format!("no target {address}\n"));
        };
        match action.as_str() {
            "stop" => {
                t.stop();
                (StatusCode::OK, format!("{address} stopped\n"))
            }
            "start" if t.stop.is_some() => (StatusCode::OK, format!("{address} already running\n")),
            "start" => match t.start().await {
                Ok(()) => (StatusCode::OK, format!("{address} started\n")),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            },
            _ => (StatusCode::NOT_FOUND, "use stop or start\n".into()),
        }
    }
    async fn ask(c: &Control, ask: NodeAsk) -> (StatusCode, String) {
        let (reply, rx) = tokio::sync::oneshot::channel();
        if c.nodes.send(NodeRequest { ask, reply }).await.is_err() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the devnet is stopping\n".into(),
            );
        }
        match tokio::time::timeout(Duration::from_secs(120), rx).await {
            Ok(Ok(r)) => r,
            _ => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not served (a --demo devnet changes no nodes)\n".into(),
            ),
        }
    }
    async fn add(State(c): State<Control>) -> (StatusCode, String) {
        ask(&c, NodeAsk::Add).await
    }
    async fn remove(
        State(c): State<Control>,
        UrlPath(id): UrlPath<String>,
    ) -> (StatusCode, String) {
        ask(&c, NodeAsk::Remove(id)).await
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let router = axum::Router::new()
        .route("/targets/{address}/{action}", axum::routing::post(target))
        .route("/nodes", axum::routing::post(add))
        .route("/nodes/{id}/remove", axum::routing::post(remove))
        .with_state(control);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(url)
}

async fn wait_http(
    http: &reqwest::Client,
    url: &str,
    procs: &mut [Proc],
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        for p in procs.iter_mut() {
            if let Ok(Some(status)) = p.child.try_wait() {
                bail!(
                    "{} exited ({status}); its log ends:\n{}",
                    p.name,
                    tail(&p.log)
                );
            }
        }
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if start.elapsed() > timeout {
            bail!("{url} did not answer within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the devnet until Ctrl-C (or, with `--demo`, until the story is told).
pub async fn run(args: DevnetArgs, stop: CancellationToken) -> anyhow::Result<ExitCode> {
    let mut net = Devnet::start(&args).await?;
    net.print();
    let result = if args.demo {
        tokio::select! {
            r = net.demo() => r,
            _ = stop.cancelled() => Err(anyhow::anyhow!("interrupted")),
        }
    } else {
        println!("\nCtrl-C stops everything.");
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break Ok(()),
                _ = tick.tick() => {
                    if let Err(e) = net.check_children() {
                        break Err(e);
                    }
                }
                Some(r) = net.requests.recv() => {
                    let answer = match net.change_nodes(r.ask).await {
                        Ok(line) => {
                            print!("{line}");
                            (StatusCode::OK, line)
                        }
                        Err(e) => (StatusCode::CONFLICT, format!("{e:#}\n")),
                    };
                    let _ = r.reply.send(answer);
                }
            }
        }
    };
    println!("stopping the devnet…");
    net.shutdown().await;
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("devnet: {e:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}
