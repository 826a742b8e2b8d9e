//! Load benchmarks against real processes of the release binary; each prints one
//! JSON object per line.
//!
//!   cargo bench --bench load -- abuse     # hostile clients, large histories, bad gateways
//!   cargo bench --bench load -- scale     # devnets of 16, 32 and 64 nodes, all aggregating
//!
//! See BENCHMARKS.md for what each measures and the figures on the reference machine.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use livenessd::config::MonitoringNode;
use livenessd::crypto::bls::SecretKey;
use livenessd::events::{state_message, Event, NodeState};
use livenessd::store::node::{Applied, CursorUpdate, ReplicaStore, TargetState};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_livenessd");

fn emit(v: Value) {
    println!("{v}");
}

fn now() -> i64 {
    livenessd::clock::system_now()
}

fn http() -> reqwest::Client {
    livenessd::http_client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    (sorted[i] * 1000.0).round() / 1000.0
}

/// Peak and current resident memory of a process, MB.
fn rss_mb(pid: u32) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| (kb / 1024.0 * 10.0).round() / 10.0)
    };
    (get("VmHWM:"), get("VmRSS:"))
}

/// CPU seconds of a process.
fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Its children too, if it led a process group (a devnet does).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_ok(http: &reqwest::Client, url: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} not ready in {secs} s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------- a devnet

struct Devnet {
    _proc: Proc,
    nodes: Vec<String>,
    control: String,
}

/// `livenessd devnet` as a separate process; returns once every node is ready.
async fn devnet(
    dir: &Path,
    nodes: usize,
    targets: usize,
    extra: &[String],
    aggregators: &str,
) -> Devnet {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "devnet",
        "--nodes",
        &nodes.to_string(),
        "--targets",
        &targets.to_string(),
        "--aggregators",
        aggregators,
        "--probe-interval-ms",
        "1000",
        "--dir",
    ])
    .arg(dir);
    for t in extra {
        cmd.args(["--target", t]);
    }
    // Its own process group, so that nothing it started outlives it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // BENCH_LOG sets the nodes' RUST_LOG (say, to see the aggregators' turns).
        .env(
            "RUST_LOG",
            std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut node_urls, mut control) = (Vec::new(), String::new());
    for line in lines.by_ref() {
        let line = line.unwrap();
        let t = line.trim_start();
        if t.starts_with("Node") {
            node_urls.push(t.split_whitespace().nth(1).unwrap().to_owned());
        }
        if t.starts_with("control") {
            control = t.split_whitespace().nth(1).unwrap().to_owned();
        }
        if line.contains("Ctrl-C stops everything") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let h = http();
    for u in &node_urls {
        wait_ok(&h, &format!("{u}/ready"), 120).await;
    }
    Devnet {
        _proc: Proc(child),
        nodes: node_urls,
        control,
    }
}

/// The sum of a metric over every node (`name` with the labels given).
async fn metric_sum(h: &reqwest::Client, nodes: &[String], name: &str, label: &str) -> f64 {
    let mut total = 0.0;
    for u in nodes {
        let Ok(r) = h.get(format!("{u}/metrics")).send().await else {
            continue;
        };
        let text = r.text().await.unwrap_or_default();
        for line in text.lines() {
            if line.starts_with(name) && line.contains(label) {
                if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                    total += v;
                }
            }
        }
    }
    total
}

/// Seconds until every node's replica shows `address` in `state`: every node is
/// asked at once each round (one after another, a round over 64 loaded nodes
/// would itself take about a second), and a node counts from the answer that
/// first shows it.
async fn until_state(h: &reqwest::Client, nodes: &[String], address: &str, state: &str) -> f64 {
    let t = Instant::now();
    let mut pending: Vec<String> = nodes.to_vec();
    let mut last_seen = 0.0f64;
    while !pending.is_empty() {
        let asks = pending.iter().map(|u| {
            let (h, u) = (h.clone(), u.clone());
            let (address, state) = (address.to_owned(), state.to_owned());
            async move {
                let ok = match h.get(format!("{u}/v1/targets?limit=1000")).send().await {
                    Ok(r) => r.json::<Value>().await.ok().is_some_and(|v| {
                        v["items"].as_array().is_some_and(|a| {
                            a.iter().any(|x| {
                                x["address"] == address.as_str() && x["state"] == state.as_str()
                            })
                        })
                    }),
                    Err(_) => false,
                };
                (u, ok, t.elapsed().as_secs_f64())
            }
        });
        let answers = futures_util::future::join_all(asks).await;
        pending = Vec::new();
        for (u, ok, at) in answers {
            if ok {
                last_seen = last_seen.max(at);
            } else {
                pending.push(u);
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "{address} never {state}"
        );
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    last_seen
}

// ---------------------------------------------------------------- scale

/// One change in a devnet where every node aggregates: `/state` calls, posted
/// events, detection time, at 16, 32 and 64 nodes.
async fn scale() {
    // SCALE_SIZES=64 runs one size alone.
    let sizes: Vec<usize> = std::env::var("SCALE_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![16, 32, 64]);
    for n in sizes {
        let dir = tempfile::tempdir().unwrap();
        let net = devnet(dir.path(), n, 16, &[], "all").await;
        if std::env::var_os("SCALE_KEEP").is_some() {
            // Its logs stay for a look afterwards.
            eprintln!("scale: {n} nodes in {}", dir.path().display());
            std::mem::forget(dir);
        }
        let h = http();
        // Every node has learned who aggregates (role discovery every 15 s).
        tokio::time::sleep(Duration::from_secs(17)).await;
        let mut calls = Vec::new();
        let mut posted = Vec::new();
        let mut detect = Vec::new();
        let mut heartbeats = Vec::new();
        for trial in 0..4usize {
            let target = format!("0xTarget{}", trial % 16 + 1);
            let (action, state) = if trial % 2 == 0 {
                ("stop", "down")
            } else {
                ("start", "up")
            };
            let target = if trial % 2 == 0 {
                target
            } else {
                format!("0xTarget{}", (trial - 1) % 16 + 1)
            };
            let s0 = metric_sum(
                &h,
                &net.nodes,
                "livenessd_http_requests_total",
                "route=\"/state\"",
            )
            .await;
            let e0 = metric_sum(
                &h,
                &net.nodes,
                "livenessd_aggregator_events_posted_total",
                "",
            )
            .await;
            let b0 = metric_sum(&h, &net.nodes, "livenessd_heartbeats_posted_total", "").await;
            let t0 = Instant::now();
            h.post(format!("{}/targets/{target}/{action}", net.control))
                .send()
                .await
                .unwrap();
            let d = until_state(&h, &net.nodes, &target, state).await;
            // Late duplicates, if any, land within a few seconds.
            tokio::time::sleep(Duration::from_secs(4)).await;
            let s1 = metric_sum(
                &h,
                &net.nodes,
                "livenessd_http_requests_total",
                "route=\"/state\"",
            )
            .await;
            let e1 = metric_sum(
                &h,
                &net.nodes,
                "livenessd_aggregator_events_posted_total",
                "",
            )
            .await;
            let b1 = metric_sum(&h, &net.nodes, "livenessd_heartbeats_posted_total", "").await;
            calls.push(s1 - s0);
            posted.push(e1 - e0);
            detect.push(d);
            heartbeats.push((b1 - b0) / t0.elapsed().as_secs_f64());
        }
        // The next size starts on a quiet machine: every node of this one gone.
        let urls = net.nodes.clone();
        drop(net);
        let gone = Instant::now();
        for u in &urls {
            while h.get(format!("{u}/health")).send().await.is_ok()
                && gone.elapsed() < Duration::from_secs(120)
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
        emit(
            json!({"bench": "scale", "nodes": n, "targets": 16, "aggregators": n, "changes": calls.len(),
            "state_calls_per_change_mean": mean(&calls), "state_calls_per_change_max": max(&calls),
            "state_calls_per_node": (mean(&calls) / n as f64 * 100.0).round() / 100.0,
            "events_posted_per_change_max": max(&posted), "events_posted_per_change_mean": mean(&posted),
            "detection_s_mean": (mean(&detect) * 100.0).round() / 100.0, "detection_s_max": (max(&detect) * 100.0).round() / 100.0,
            "detection_s": detect.iter().map(|d| (d * 100.0).round() / 100.0).collect::<Vec<_>>(),
            "heartbeats_per_s": (mean(&heartbeats) * 100.0).round() / 100.0}),
        );
    }
}

// ---------------------------------------------------------------- abuse

/// The monitoring node of the single-node networks below.
fn single_node() -> (SecretKey, MonitoringNode) {
    let sk = SecretKey::key_gen(&[42; 32]).unwrap();
    let node = MonitoringNode {
        id: "Node1".into(),
        url: String::new(),
        pubkey: sk.public_key().to_hex(),
        pop: Some(sk.prove_possession().to_hex()),
        stake: 1.0,
    };
    (sk, node)
}

/// A replica holding `n` transitions of one address, settled long ago; cursor 0,
/// so the node reads the (empty) sequencer from the start.
async fn prefilled(db: &Path, address: &str, n: usize) {
    let store = ReplicaStore::open(db).await.unwrap();
    store.init_targets(&[address.to_owned()]).await.unwrap();
    let mut cur = TargetState::INITIAL;
    let start = now() - n as i64 * 10 - 10_000;
    let mut batch = Vec::new();
    for k in 0..n {
        let state = if k % 2 == 0 {
            NodeState::Down
        } else {
            NodeState::Up
        };
        let ts = start + k as i64 * 10;
        cur = cur.after(state, ts);
        batch.push(Applied {
            zellular_index: k as u64 / 100 + 1,
            position: (k % 100) as u32,
            event: Event {
                address: address.into(),
                state,
                timestamp: ts,
                aggregated_signature: "a".repeat(192),
                non_signing_nodes: vec![],
            },
            log_time: ts,
            after: cur,
            network_version: 1,
        });
        if batch.len() == 10_000 || k + 1 == n {
            store
                .apply(
                    &batch,
                    None,
                    &CursorUpdate {
                        index: 0,
                        chaining_hash: String::new(),
                        partial_items: 0,
                        log_time: ts,
                        monitoring_starts: vec![],
                    },
                )
                .await
                .unwrap();
            batch.clear();
        }
    }
    store.close().await;
}

struct Node {
    proc: Proc,
    url: String,
    log: PathBuf,
}

/// A sequencer process and one node process (aggregator: it posts heartbeats).
async fn single_node_network(
    dir: &Path,
    targets: &[(String, String)],
    gateway: Option<u16>,
    ulimit: Option<u32>,
) -> (Proc, Node) {
    let (sk, mut node) = single_node();
    let seq_port = free_port();
    let seq = Proc(
        Command::new(BIN)
            .args([
                "sequencer",
                "--listen",
                &format!("127.0.0.1:{seq_port}"),
                "--data-dir",
            ])
            .arg(dir.join("seq"))
            .args(["--app", "livenessd", "--finalize-interval-ms", "50"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let h = http();
    wait_ok(&h, &format!("http://127.0.0.1:{seq_port}/health"), 30).await;
    let port = free_port();
    node.url = format!("http://127.0.0.1:{port}");
    livenessd::keyfile::write_secret(&dir.join("bls.key"), &sk.to_hex()).ok();
    let mut toml = format!(
        "node_id = \"Node1\"\nlisten = \"127.0.0.1:{port}\"\ndatabase = \"replica.sqlite\"\nbls_key_file = \"bls.key\"\naggregator = true\n\
         [[monitoring_nodes]]\nid = \"Node1\"\nurl = \"{}\"\npubkey = \"{}\"\npop = \"{}\"\n",
        node.url,
        node.pubkey,
        node.pop.as_deref().unwrap()
    );
    for (a, u) in targets {
        toml += &format!("[[targets]]\naddress = \"{a}\"\nhttp = \"{u}\"\n");
    }
    let gateways = gateway.map_or(String::new(), |g| {
        format!("gateways = [\"http://127.0.0.1:{g}\"]\n")
    });
    toml += &format!(
        "[zellular]\noperators_file = \"seq/operators.json\"\npoll_max_ms = 200\n{gateways}\
         [freshness]\nheartbeat_interval_ms = 1000\nbound_ms = 10000\n\
         [probe]\ninterval_ms = 1000\ntimeout_ms = 800\n\
         # The figures are of the endpoints themselves: no client quota in the way.\n\
         [rate_limit]\nenabled = false\n"
    );
    std::fs::write(dir.join("node.toml"), toml).unwrap();
    let log = dir.join("node.log");
    let cmdline = format!(
        "{}exec {BIN} --config {}",
        ulimit
            .map(|n| format!("ulimit -n {n}; "))
            .unwrap_or_default(),
        dir.join("node.toml").display()
    );
    let child = Command::new("sh")
        .args(["-c", &cmdline])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let n = Node {
        proc: Proc(child),
        url: node.url.clone(),
        log,
    };
    (seq, n)
}

/// `/health` latency on fresh connections while `idle` sockets sit on the node.
async fn health_under_idle(url: &str, idle: usize) -> (f64, f64, usize) {
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..idle {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    let opened = held.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut lat = Vec::new();
    for _ in 0..100 {
        let c = livenessd::http_client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let t = Instant::now();
        let ok = c
            .get(format!("{url}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        lat.push(if ok {
            t.elapsed().as_secs_f64() * 1000.0
        } else {
            10_000.0
        });
    }
    lat.sort_by(f64::total_cmp);
    drop(held);
    (percentile(&lat, 0.5), percentile(&lat, 0.99), opened)
}

/// `clients` loops of `ask(i)` for `secs`: requests/s, p99 ms, largest answer.
async fn load<F>(clients: usize, secs: u64, ask: F) -> (f64, f64, usize, usize)
where
    F: Fn(usize) -> String + Send + Sync + 'static + Clone,
{
    let h = http();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (h, ask) = (h.clone(), ask.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let (mut largest, mut errors, mut i) = (0usize, 0usize, c * 1_000_003);
            while Instant::now() < deadline {
                let t = Instant::now();
                match h.get(ask(i)).send().await {
                    Ok(r) if r.status().is_success() => {
                        let b = r.bytes().await.map(|b| b.len()).unwrap_or(0);
                        largest = largest.max(b);
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => errors += 1,
                }
                i += 1;
            }
            (lat, largest, errors)
        });
    }
    let (mut all, mut largest, mut errors) = (Vec::new(), 0, 0);
    while let Some(r) = tasks.join_next().await {
        let (l, b, e) = r.unwrap();
        all.extend(l);
        largest = largest.max(b);
        errors += e;
    }
    all.sort_by(f64::total_cmp);
    (
        all.len() as f64 / secs as f64,
        percentile(&all, 0.99),
        largest,
        errors,
    )
}

/// A TCP server that accepts and never answers (a hung target).
fn hung_server() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

/// A gateway that answers every request with an endless body.
async fn endless_gateway() -> u16 {
    use axum::body::{Body, Bytes};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let router = axum::Router::new().fallback(|| async {
        let chunk = Bytes::from(vec![b'x'; 1 << 20]);
        let s = futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
        axum::response::Response::new(Body::from_stream(s))
    });
    tokio::spawn(async move { axum::serve(l, router).await });
    port
}

async fn abuse() {
    let h = http();
    let long = "0xLong".to_owned();
    let hung = hung_server();
    let dir = tempfile::tempdir().unwrap();
    prefilled(&dir.path().join("replica.sqlite"), &long, 100_000).await;
    let targets = vec![
        (long.clone(), format!("http://127.0.0.1:{hung}/health")),
        (
            "0xHung".to_owned(),
            format!("http://127.0.0.1:{hung}/health"),
        ),
    ];
    let (_seq, node) = single_node_network(dir.path(), &targets, None, None).await;
    wait_ok(&h, &format!("{}/ready", node.url), 60).await;
    let pid = node.proc.0.id();

    // (a) 400 idle connections, then /health.
    let (p50, p99, opened) = health_under_idle(&node.url, 400).await;
    emit(
        json!({"bench": "abuse_idle_connections", "idle": opened, "open_files_limit": "default",
        "health_p50_ms": p50, "health_p99_ms": p99, "under_100_ms": p99 < 100.0}),
    );

    // (b) 8 clients x 30 s on the interval table and the events of the long address.
    let u = node.url.clone();
    let a = long.clone();
    let (rps_i, p99_i, largest_i, err_i) = load(8, 30, move |i| {
        format!(
            "{u}/v1/intervals?address={a}&limit=1000&from={}",
            (i % 90) as i64 * 10_000
        )
    })
    .await;
    let u = node.url.clone();
    let a = long.clone();
    let (rps_e, p99_e, largest_e, err_e) = load(8, 30, move |i| {
        format!(
            "{u}/v1/events?address={a}&limit=1000&cursor={}",
            (i % 99) * 1_000
        )
    })
    .await;
    let (peak, rss) = rss_mb(pid);
    emit(
        json!({"bench": "abuse_lists", "events": 100_000, "clients": 8, "seconds": 30,
        "intervals_rps": rps_i.round(), "intervals_p99_ms": p99_i, "intervals_largest_bytes": largest_i, "intervals_errors": err_i,
        "events_rps": rps_e.round(), "events_p99_ms": p99_e, "events_largest_bytes": largest_e, "events_errors": err_e,
        "every_answer_under_2_mb": largest_i.max(largest_e) <= 2 << 20,
        "peak_rss_mb": peak, "rss_mb": rss, "peak_under_150_mb": peak < 150.0}),
    );

    // (c) 16 clients x 20 s of /downtime over the whole history.
    let ready: Value = h
        .get(format!("{}/ready", node.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let settled = ready["settled_until"].as_i64().unwrap();
    let u = node.url.clone();
    let a = long.clone();
    let (rps, p99, _, errors) = load(16, 20, move |_| {
        format!("{u}/downtime?address={a}&from_timestamp=0&to_timestamp={settled}")
    })
    .await;
    emit(
        json!({"bench": "abuse_downtime_whole_history", "events": 100_000, "clients": 16, "seconds": 20,
        "window": "the same, [0, settled]", "rps": rps.round(), "p99_ms": p99, "errors": errors,
        "p99_under_5_ms": p99 < 5.0}),
    );
    // Every request a different window over the history (no answer asked twice).
    let u = node.url.clone();
    let a = long.clone();
    let (rps, p99, _, errors) = load(16, 20, move |i| {
        let from = (i as i64 * 7_919) % 50_000;
        format!(
            "{u}/downtime?address={a}&from_timestamp={from}&to_timestamp={}",
            settled - (i as i64 % 100_000)
        )
    })
    .await;
    emit(
        json!({"bench": "abuse_downtime_whole_history", "events": 100_000, "clients": 16, "seconds": 20,
        "window": "a new one each request", "rps": rps.round(), "p99_ms": p99, "errors": errors,
        "p99_under_5_ms": p99 < 5.0}),
    );

    // (f) One 600 KB junk batch: how many log bytes does it cost?
    let log0 = std::fs::metadata(&node.log).map(|m| m.len()).unwrap_or(0);
    let junk: Vec<Value> = (0..7_500)
        .map(|i| json!({"address": long, "state": "down", "timestamp": now(), "aggregated_signature": format!("{i:08}")}))
        .collect();
    let body = serde_json::to_string(&junk).unwrap();
    let seq_url = {
        let t = std::fs::read_to_string(dir.path().join("seq/operators.json")).unwrap();
        let v: Value = serde_json::from_str(&t).unwrap();
        v.as_object().unwrap().values().next().unwrap()["socket"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let r = h
        .put(format!("{seq_url}/node/livenessd/batches"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "junk batch: {}", r.status());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log1 = std::fs::metadata(&node.log).map(|m| m.len()).unwrap_or(0);
    emit(
        json!({"bench": "abuse_junk_batch_logs", "batch_bytes": body.len(), "items": junk.len(),
        "log_bytes_written": log1.saturating_sub(log0)}),
    );
    drop(node);
    drop(_seq);

    // (a') The same with an open-files limit of 256.
    let dir2 = tempfile::tempdir().unwrap();
    let (_seq2, node2) = single_node_network(dir2.path(), &targets[1..], None, Some(256)).await;
    wait_ok(&h, &format!("{}/ready", node2.url), 60).await;
    let (p50, p99, opened) = health_under_idle(&node2.url, 400).await;
    emit(
        json!({"bench": "abuse_idle_connections", "idle": opened, "open_files_limit": 256,
        "health_p50_ms": p50, "health_p99_ms": p99, "under_100_ms": p99 < 100.0}),
    );
    drop(node2);

    // (e) A gateway sending endless bodies: the node's memory stays bounded.
    let gw = endless_gateway().await;
    let dir3 = tempfile::tempdir().unwrap();
    let (_seq3, node3) = single_node_network(dir3.path(), &targets[1..], Some(gw), None).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (peak, rss) = rss_mb(node3.proc.0.id());
    let cpu = cpu_secs(node3.proc.0.id());
    emit(
        json!({"bench": "abuse_endless_gateway", "seconds": 20, "peak_rss_mb": peak, "rss_mb": rss,
        "cpu_seconds": cpu, "peak_under_100_mb": peak < 100.0}),
    );
}

/// A `/state` flood for a hung target while another target goes down: detection
/// time with and without it.
async fn flood() {
    let hung = hung_server();
    let dir = tempfile::tempdir().unwrap();
    let net = devnet(
        dir.path(),
        4,
        2,
        &[format!("0xHung=http://127.0.0.1:{hung}/health")],
        "2",
    )
    .await;
    let h = http();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut results = serde_json::Map::new();
    for (k, flooded) in [(1usize, false), (2, true)] {
        let stop = tokio_util::sync::CancellationToken::new();
        let mut flooders = tokio::task::JoinSet::new();
        let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let limited = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        if flooded {
            for f in 0..64 {
                let (h, stop, url) = (http(), stop.clone(), net.nodes[f % net.nodes.len()].clone());
                let (served, limited) = (served.clone(), limited.clone());
                flooders.spawn(async move {
                    while !stop.is_cancelled() {
                        let t = now();
                        if let Ok(r) = h
                            .get(format!("{url}/state?address=0xHung&timestamp={t}"))
                            .send()
                            .await
                        {
                            if r.status() == 429 {
                                limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            } else {
                                served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let target = format!("0xTarget{k}");
        h.post(format!("{}/targets/{target}/stop", net.control))
            .send()
            .await
            .unwrap();
        let d = until_state(&h, &net.nodes, &target, "down").await;
        stop.cancel();
        while flooders.join_next().await.is_some() {}
        let key = if flooded {
            "with_flood"
        } else {
            "without_flood"
        };
        results.insert(
            format!("detection_s_{key}"),
            json!((d * 100.0).round() / 100.0),
        );
        if flooded {
            results.insert(
                "flood_answered".into(),
                json!(served.load(std::sync::atomic::Ordering::Relaxed)),
            );
            results.insert(
                "flood_rate_limited".into(),
                json!(limited.load(std::sync::atomic::Ordering::Relaxed)),
            );
        }
    }
    let a = results["detection_s_without_flood"].as_f64().unwrap();
    let b = results["detection_s_with_flood"].as_f64().unwrap();
    results.insert("within_1_s".into(), json!((a - b).abs() <= 1.0));
    let mut out = json!({"bench": "abuse_state_flood", "nodes": 4, "flooders": 64});
    out.as_object_mut().unwrap().extend(results);
    emit(out);
}

/// SIGKILL a node again and again while it replays a backlog of large batches:
/// every run makes progress.
async fn kill_loop() {
    let (sk, _) = single_node();
    let dir = tempfile::tempdir().unwrap();
    let (seq, node) = single_node_network(
        dir.path(),
        &[("0xK".into(), "http://127.0.0.1:9/health".into())],
        None,
        None,
    )
    .await;
    drop(node);
    let seq_url = {
        let t = std::fs::read_to_string(dir.path().join("seq/operators.json")).unwrap();
        let v: Value = serde_json::from_str(&t).unwrap();
        v.as_object().unwrap().values().next().unwrap()["socket"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // 16 batches of 2,500 transitions each over 2,500 addresses (a batch is under the
    // sequencer's 1 MiB cap; one gateway answer holds several).
    let addresses: Vec<String> = (0..2_500).map(|i| format!("0xK{i:05}")).collect();
    let toml = std::fs::read_to_string(dir.path().join("node.toml")).unwrap();
    let mut extra = String::new();
    for a in &addresses {
        extra += &format!("[[targets]]\naddress = \"{a}\"\ntcp = \"127.0.0.1:9\"\n");
    }
    let toml = toml.replacen("[zellular]", &format!("{extra}[zellular]"), 1);
    std::fs::write(dir.path().join("node.toml"), &toml).unwrap();
    let _ = std::fs::remove_file(dir.path().join("replica.sqlite"));
    let h = http();
    let t_sign = Instant::now();
    let t0 = now();
    for b in 0..16 {
        let state = if b % 2 == 0 {
            NodeState::Down
        } else {
            NodeState::Up
        };
        let ts = t0 - 60 + b as i64;
        let events: Vec<Event> = addresses
            .iter()
            .map(|a| Event {
                address: a.clone(),
                state,
                timestamp: ts,
                aggregated_signature: sk.sign(state_message(a, state, ts).as_bytes()).to_hex(),
                non_signing_nodes: vec![],
            })
            .collect();
        let r = h
            .put(format!("{seq_url}/node/livenessd/batches"))
            .body(serde_json::to_string(&events).unwrap())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    let signing = t_sign.elapsed().as_secs_f64();
    let db = dir.path().join("replica.sqlite");
    let mut counts = Vec::new();
    for _ in 0..15 {
        // KILL_LOG=FILE keeps the node's logs of every run.
        let log = match std::env::var_os("KILL_LOG") {
            Some(f) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(f)
                    .unwrap(),
            ),
            None => Stdio::null(),
        };
        let mut child = Command::new(BIN)
            .args(["--config"])
            .arg(dir.path().join("node.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(2_500));
        let _ = child.kill();
        let _ = child.wait();
        let store = ReplicaStore::open_read_only(&db).await;
        let n = match store {
            Ok(s) => {
                let p = s.position().await.unwrap();
                s.close().await;
                p.events_count
            }
            Err(_) => 0,
        };
        counts.push(n);
        if n >= 40_000 {
            break;
        }
    }
    let progress = counts.windows(2).all(|w| w[1] > w[0] || w[0] >= 40_000);
    emit(
        json!({"bench": "abuse_sigkill_loop", "backlog_events": 40_000, "batch_events": 2_500,
        "kill_after_s": 2.5, "events_after_each_kill": counts, "every_run_made_progress": progress,
        "signing_seconds": signing}),
    );
    drop(seq);
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |n: &str| which.is_empty() || which.iter().any(|w| w == n);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if want("abuse") || want("abuse_http") {
        rt.block_on(abuse());
    }
    if want("abuse") || want("abuse_flood") {
        rt.block_on(flood());
    }
    if want("abuse") || want("abuse_kill") {
        rt.block_on(kill_loop());
    }
    if want("scale") {
        rt.block_on(scale());
    }
}
