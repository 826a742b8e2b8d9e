//! Node benchmarks; each prints one JSON object per line.
//!
//!   cargo bench --bench node [-- replicate|verify|queries|probing|detection|coldstart]
//!
//! See BENCHMARKS.md for what each measures and the figures on the reference machine.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use livenessd::answers::Answers;
use livenessd::clock::Clock;
use livenessd::config::{EpochConfig, MonitoringNode, ProbeConfig, Target, Threshold};
use livenessd::crypto::bls::{self, BatchItem, PublicKey, SecretKey, Signature};
use livenessd::devseq::{DevSeqConfig, DevSequencer};
use livenessd::events::{state_message, Event, MonitorSet, NodeState};
use livenessd::freshness::ReplicaStatus;
use livenessd::network::{Genesis, NetworkHandle};
use livenessd::node::{NodeContext, Settings};
use livenessd::peers::Peers;
use livenessd::prober::Prober;
use livenessd::replicator::ApplyWindow;
use livenessd::replicator::Replicator;
use livenessd::signer::Signer;
use livenessd::store::node::{Applied, ReplicaStore};
use livenessd::store::node::{CursorUpdate, TargetState};
use livenessd::zellular::{Client, ClientConfig, OperatorSource};
use num_bigint::BigUint;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const TARGET_SERVER_ENV: &str = "LIVENESSD_BENCH_TARGET_SERVER";

fn main() {
    if let Ok(spec) = std::env::var(TARGET_SERVER_ENV) {
        return target_server(&spec);
    }
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if want("verify") {
        verify(2_000);
    }
    if want("replicate") {
        rt.block_on(replicate(20_000, 100));
    }
    if want("coldstart") {
        rt.block_on(coldstart(100_000, 100));
    }
    if want("queries") {
        rt.block_on(queries(1_000_000, 1_000));
    }
    if want("probing") {
        rt.block_on(probing());
    }
    if want("detection") {
        rt.block_on(detection(3));
    }
}

// ---------------------------------------------------------------- fixtures

/// The monitoring nodes: 4 deterministic keys, equal stake.
struct Quorum {
    keys: Vec<SecretKey>,
    nodes: Vec<MonitoringNode>,
    /// Sum of the signers' secret keys: signing with it gives their aggregate.
    signers_sum: SecretKey,
}

fn quorum() -> Quorum {
    let keys: Vec<SecretKey> = (1..=4u8)
        .map(|i| SecretKey::key_gen(&[i; 32]).unwrap())
        .collect();
    let nodes = keys
        .iter()
        .enumerate()
        .map(|(i, k)| MonitoringNode {
            id: format!("Node{}", i + 1),
            url: format!("http://127.0.0.1:{}", 1 + i),
            pubkey: k.public_key().to_hex(),
            pop: Some(k.prove_possession().to_hex()),
            stake: 1.0,
        })
        .collect();
    // BLS12-381 group order.
    let r = BigUint::parse_bytes(
        b"73eda753299d7d483339d80809a1d80553bda402fffe5bfeffffffff00000001",
        16,
    )
    .unwrap();
    let sum = keys[..3]
        .iter()
        .map(|k| BigUint::parse_bytes(k.to_hex().as_bytes(), 16).unwrap())
        .fold(BigUint::default(), |a, b| (a + b) % &r);
    let signers_sum = SecretKey::from_hex(&format!("{sum:064x}")).unwrap();
    Quorum {
        keys,
        nodes,
        signers_sum,
    }
}

fn tcp_targets(addrs: &[String]) -> Vec<Target> {
    addrs
        .iter()
        .map(|a| Target {
            address: a.clone(),
            http: None,
            tcp: Some("127.0.0.1:9".into()),
        })
        .collect()
}

fn address(a: usize) -> String {
    format!("0xTarget{a:04}")
}

/// `n` real transitions over `addresses` targets (each alternates down/up), signed
/// by Node1..3 with Node4 listed as non-signer; built on all cores.
fn gen_events(q: &Quorum, n: usize, addresses: usize) -> Vec<Event> {
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(n))
                        .map(|k| {
                            let a = address(k % addresses);
                            let state = if (k / addresses).is_multiple_of(2) {
                                NodeState::Down
                            } else {
                                NodeState::Up
                            };
                            // Every event within the sequencer's window of its
                            // (manual) clock, timestamps never decreasing.
                            let ts = SEQ_TIME - 100 + (k * 100 / n) as i64;
                            Event {
                                aggregated_signature: q
                                    .signers_sum
                                    .sign(state_message(&a, state, ts).as_bytes())
                                    .to_hex(),
                                address: a,
                                state,
                                timestamp: ts,
                                non_signing_nodes: vec!["Node4".into()],
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

/// The dev sequencer's (manual) time in the replication benchmarks.
const SEQ_TIME: i64 = 1_700_000_000;

async fn start_devseq(dir: &Path) -> (String, OperatorSource, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut cfg = DevSeqConfig::new(dir, &url);
    cfg.clock = Clock::manual(SEQ_TIME);
    cfg.finalize_interval = Duration::from_millis(50);
    let seq = DevSequencer::open(cfg).await.unwrap();
    let ops = OperatorSource::Static(seq.operator_set());
    let stop = CancellationToken::new();
    tokio::spawn(seq.serve(listener, stop.clone()));
    (url, ops, stop)
}

fn client(url: &str) -> Client {
    let mut cc = ClientConfig::new("livenessd", vec![url.to_owned()]);
    cc.poll_min = Duration::from_millis(2);
    cc.poll_max = Duration::from_millis(20);
    Client::new(cc)
}

async fn submit_batches(c: &Client, events: &[Event], per_batch: usize) -> usize {
    let mut n = 0;
    for chunk in events.chunks(per_batch) {
        c.submit(&serde_json::to_string(chunk).unwrap())
            .await
            .unwrap();
        n += 1;
    }
    n
}

async fn replicate_until(store: &ReplicaStore, index: u64) {
    loop {
        if store.position().await.unwrap().index >= index {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn replicator(
    q: &Quorum,
    dir: &Path,
    addresses: usize,
    url: &str,
    ops: OperatorSource,
) -> (ReplicaStore, CancellationToken) {
    let store = ReplicaStore::open(&dir.join("replica.sqlite"))
        .await
        .unwrap();
    let addrs: Vec<String> = (0..addresses).map(address).collect();
    let r = Replicator::new(
        store.clone(),
        NetworkHandle::of_genesis(&Genesis::new(
            "bench",
            q.nodes.clone(),
            tcp_targets(&addrs),
            "2/3",
        )),
        ApplyWindow {
            max_event_age: 120,
            max_clock_drift: 10,
        },
        client(url),
        ops,
        ReplicaStatus::new(Clock::manual(SEQ_TIME), 30, 120),
    )
    .await
    .unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(r.run(stop.clone()));
    (store, stop)
}

fn emit(v: serde_json::Value) {
    println!("{v}");
}

// ---------------------------------------------------------------- benchmarks

/// Single vs batch vs batch on all cores.
fn verify(n: usize) {
    let q = quorum();
    let events = gen_events(&q, n, 100);
    let set = MonitorSet::new(&q.nodes, &[], Threshold::TWO_THIRDS).unwrap();
    let apk = PublicKey::aggregate(
        q.keys[..3]
            .iter()
            .map(|k| k.public_key())
            .collect::<Vec<_>>()
            .iter(),
    )
    .unwrap();
    let msgs: Vec<String> = events.iter().map(Event::message).collect();

    let t = Instant::now();
    for (e, m) in events.iter().zip(&msgs) {
        let sig = Signature::from_hex(&e.aggregated_signature).unwrap();
        assert!(sig.verify(&apk, m.as_bytes()));
    }
    let single = n as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let sigs: Vec<Signature> = events
        .iter()
        .map(|e| Signature::from_hex(&e.aggregated_signature).unwrap())
        .collect();
    let items: Vec<BatchItem> = msgs
        .iter()
        .zip(&sigs)
        .map(|(m, s)| BatchItem {
            msg: m.as_bytes(),
            pk: &apk,
            sig: s,
        })
        .collect();
    assert!(bls::verify_batch(&items));
    let batch = n as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let sigs: Vec<Signature> = events
        .iter()
        .map(|e| Signature::from_hex(&e.aggregated_signature).unwrap())
        .collect();
    let items: Vec<(&[u8], &Signature)> = msgs.iter().map(|m| m.as_bytes()).zip(&sigs).collect();
    assert!(bls::verify_batch_same_key(&apk, &items));
    let same_key = n as f64 / t.elapsed().as_secs_f64();

    let refs: Vec<&Event> = events.iter().collect();
    let t = Instant::now();
    assert!(set.verify_events(&refs).iter().all(Result::is_ok));
    let parallel = n as f64 / t.elapsed().as_secs_f64();
    emit(json!({"bench": "verify", "events": n,
        "single_per_s": single.round(), "batch_per_s": batch.round(), "batch_same_key_per_s": same_key.round(),
        "verify_events_per_s": parallel.round(),
        "batch_vs_single": (batch / single * 100.0).round() / 100.0,
        "batch_same_key_vs_single": (same_key / single * 100.0).round() / 100.0,
        "cores": std::thread::available_parallelism().map_or(1, |p| p.get())}));
}

/// Events submitted to the dev sequencer, read back finality-verified,
/// quorum-verified and applied, end to end.
async fn replicate(n: usize, per_batch: usize) {
    let q = quorum();
    let dir = tempfile::tempdir().unwrap();
    let addresses = 1_000;
    let events = gen_events(&q, n, addresses);
    let (url, ops, seq_stop) = start_devseq(&dir.path().join("seq")).await;
    let (store, stop) = replicator(&q, dir.path(), addresses, &url, ops).await;
    let c = client(&url);
    let t = Instant::now();
    let batches = submit_batches(&c, &events, per_batch).await;
    let submitted = t.elapsed();
    replicate_until(&store, batches as u64).await;
    let total = t.elapsed();
    let pos = store.position().await.unwrap();
    assert_eq!(pos.events_count as usize, n, "every event applied");
    emit(
        json!({"bench": "replicate", "events": n, "batch_events": per_batch, "monitoring_nodes": 4,
        "events_per_s": (n as f64 / total.as_secs_f64()).round(),
        "seconds": total.as_secs_f64(), "submit_seconds": submitted.as_secs_f64()}),
    );
    stop.cancel();
    seq_stop.cancel();
}

/// A fresh node replaying a long log from index 0.
async fn coldstart(n: usize, per_batch: usize) {
    let q = quorum();
    let dir = tempfile::tempdir().unwrap();
    let addresses = 1_000;
    let events = gen_events(&q, n, addresses);
    let (url, ops, seq_stop) = start_devseq(&dir.path().join("seq")).await;
    let batches = submit_batches(&client(&url), &events, per_batch).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let (store, stop) = replicator(&q, dir.path(), addresses, &url, ops).await;
    replicate_until(&store, batches as u64).await;
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(store.position().await.unwrap().events_count as usize, n);
    emit(
        json!({"bench": "coldstart", "events": n, "batches": batches,
        "events_per_s": (n as f64 / secs).round(), "seconds": secs}),
    );
    stop.cancel();
    seq_stop.cancel();
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    (sorted[i] * 1000.0).round() / 1000.0
}

/// Query latency over HTTP on a replica holding `n` events across `addresses` targets.
async fn queries(n: usize, addresses: usize) {
    use rand::{Rng, SeedableRng};
    let q = quorum();
    let dir = tempfile::tempdir().unwrap();
    let store = ReplicaStore::open(&dir.path().join("replica.sqlite"))
        .await
        .unwrap();
    let addrs: Vec<String> = (0..addresses).map(address).collect();
    store.init_targets(&addrs).await.unwrap();
    // Fill the replica directly (the signatures are not checked at this layer).
    let t = Instant::now();
    let sig = q.signers_sum.sign(b"x").to_hex();
    let chunk = 20_000;
    let mut states: std::collections::HashMap<String, TargetState> = Default::default();
    for start in (0..n).step_by(chunk) {
        let applied: Vec<Applied> = (start..(start + chunk).min(n))
            .map(|k| {
                let a = address(k % addresses);
                let state = if (k / addresses).is_multiple_of(2) {
                    NodeState::Down
                } else {
                    NodeState::Up
                };
                let ts = 1_600_000_000 + k as i64;
                let after = states
                    .get(&a)
                    .copied()
                    .unwrap_or(TargetState::INITIAL)
                    .after(state, ts);
                states.insert(a.clone(), after);
                Applied {
                    zellular_index: (k / 100 + 1) as u64,
                    position: (k % 100) as u32,
                    event: Event {
                        address: a,
                        state,
                        timestamp: ts,
                        aggregated_signature: sig.clone(),
                        non_signing_nodes: vec!["Node4".into()],
                    },
                    log_time: ts,
                    after,
                    network_version: 1,
                }
            })
            .collect();
        let end = (start + chunk).min(n);
        store
            .apply(
                &applied,
                None,
                &CursorUpdate {
                    index: (end / 100) as u64,
                    chaining_hash: "chain".into(),
                    partial_items: 0,
                    log_time: 1_600_000_000 + end as i64,
                    monitoring_starts: vec![],
                },
            )
            .await
            .unwrap();
    }
    let fill = t.elapsed().as_secs_f64();
    // What every start costs: the digest chain, running totals and states recomputed.
    let t = Instant::now();
    let checked = store.check_integrity().await.unwrap().unwrap();
    assert_eq!(checked as usize, n);
    emit(
        json!({"bench": "integrity_check", "events": n, "seconds": t.elapsed().as_secs_f64(),
        "events_per_s": (n as f64 / t.elapsed().as_secs_f64()).round()}),
    );

    let key_file = dir.path().join("bls.key");
    livenessd::keyfile::write_secret(&key_file, &q.keys[0].to_hex()).unwrap();
    let epoch = EpochConfig {
        genesis: 1_600_000_000,
        length_secs: 86_400,
        min_uptime_ppm: 0,
    };
    let targets: Vec<Target> = addrs
        .iter()
        .map(|a| Target {
            address: a.clone(),
            http: None,
            tcp: Some("127.0.0.1:9".into()),
        })
        .collect();
    // A fresh replica whose history is all settled.
    let log_time = 1_600_000_000 + n as i64 + 1_000;
    let clock = Clock::manual(log_time);
    let status = ReplicaStatus::new(clock.clone(), 30, 120);
    status.set_reached_head(true);
    status.applied((n / 100) as u64, log_time);
    let network = NetworkHandle::of_genesis(&Genesis::new(
        "bench",
        q.nodes.clone(),
        targets.clone(),
        "2/3",
    ));
    let ctx = NodeContext {
        node_id: "Node1".into(),
        prober: Prober::new(
            &targets,
            ProbeConfig::default(),
            clock.clone(),
            &Default::default(),
        ),
        signer: Arc::new(Signer::from_file(&key_file).unwrap()),
        answers: Answers::new(store.clone(), network.clone(), epoch),
        network,
        store: store.clone(),
        status,
        peers: Peers::new(Duration::from_secs(1), &Default::default()),
        clock,
        settings: Settings {
            max_event_age: 120,
            max_clock_drift: 10,
            heartbeat_interval_ms: 10_000,
            aggregator: false,
            url: "http://127.0.0.1:1".into(),
            approvals: dir.path().join("approvals"),
        },
        stats: Default::default(),
        pursuits: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let rl = livenessd::config::RateLimitConfig {
        enabled: false,
        ..Default::default()
    };
    let app = livenessd::http::app(
        ctx,
        &livenessd::config::HttpConfig::default(),
        livenessd::http::ratelimit::RateLimits::new(&rl),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = livenessd::http_client::builder().build().unwrap();
    let span = n as i64; // seconds covered by the log
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut report = serde_json::Map::new();
    for kind in ["downtime", "intervals", "epoch"] {
        let mut lat = Vec::new();
        for i in 0..1_200 {
            let a = address(rng.gen_range(0..addresses));
            let from = 1_600_000_000 + rng.gen_range(0..span - 86_400);
            let to = from + 86_400;
            let url = match kind {
                "downtime" => {
                    format!("{base}/downtime?address={a}&from_timestamp={from}&to_timestamp={to}")
                }
                "intervals" => format!("{base}/v1/intervals?address={a}&from={from}&to={to}"),
                _ => format!(
                    "{base}/v1/epochs/{}?address={a}",
                    rng.gen_range(0..span / 86_400)
                ),
            };
            let t = Instant::now();
            let r = http.get(&url).send().await.unwrap();
            assert!(r.status().is_success(), "{url}: {}", r.status());
            let _ = r.bytes().await.unwrap();
            if i >= 200 {
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        lat.sort_by(f64::total_cmp);
        report.insert(format!("{kind}_p50_ms"), json!(percentile(&lat, 0.5)));
        report.insert(format!("{kind}_p90_ms"), json!(percentile(&lat, 0.9)));
        report.insert(format!("{kind}_p99_ms"), json!(percentile(&lat, 0.99)));
        report.insert(format!("{kind}_max_ms"), json!(percentile(&lat, 1.0)));
    }
    let mut out = json!({"bench": "queries", "events": n, "addresses": addresses, "fill_seconds": fill,
        "window_seconds": 86_400});
    out.as_object_mut().unwrap().extend(report);
    emit(out);
}

/// Serves `/t/{i}` = 200 on `ports` loopback ports; prints the ports, one per line.
fn target_server(spec: &str) {
    let ports: usize = spec.parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let router = axum::Router::new().route("/t/{i}", axum::routing::get(|| async { "ok" }));
        for _ in 0..ports {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            println!("{}", l.local_addr().unwrap().port());
            let r = router.clone();
            tokio::spawn(async move { axum::serve(l, r).await });
        }
        println!("ready");
        std::future::pending::<()>().await;
    });
}

/// Starts the target server in a separate process: the prober's CPU and memory
/// are then its own.
fn spawn_targets(ports: usize) -> (std::process::Child, Vec<u16>) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(TARGET_SERVER_ENV, ports.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "ready" {
            break;
        }
        out.push(line.parse().unwrap());
    }
    (child, out)
}

fn proc_status(pid: &str, key: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds (user + system) of this process.
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime are fields 14, 15 (11, 12 after the command); clock ticks of 1/100 s.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// 10,000 HTTP targets probed in one round; then a real node with 1,000 targets.
async fn probing() {
    let (mut server, ports) = spawn_targets(100);
    let targets: Vec<Target> = (0..10_000)
        .map(|i| Target {
            address: format!("t{i}"),
            http: Some(format!("http://127.0.0.1:{}/t/{i}", ports[i % ports.len()])),
            tcp: None,
        })
        .collect();
    let cfg = ProbeConfig {
        interval_ms: 10_000,
        timeout_ms: 3_000,
        jitter_ms: 0,
        concurrency: 256,
        failures_to_down: 3,
        successes_to_up: 2,
        degraded_is_up: true,
    };
    let prober = Prober::new(&targets, cfg, Clock::system(), &Default::default());
    prober.round().await; // warm the connection pools
    let (cpu0, t) = (cpu_seconds(), Instant::now());
    prober.round().await;
    let secs = t.elapsed().as_secs_f64();
    let cpu = (cpu_seconds() - cpu0) / secs * 100.0;
    let up = prober
        .view()
        .values()
        .filter(|d| d.last == Some(livenessd::prober::Health::Up))
        .count();
    emit(
        json!({"bench": "probing", "targets": 10_000, "round_seconds": secs, "within_10s": secs < 10.0,
        "probes_per_s": (10_000.0 / secs).round(), "cpu_percent": cpu.round(),
        "rss_mb": proc_status("self", "VmRSS:").round(), "up": up}),
    );

    // A real node process monitoring 1,000 targets, probing every second.
    let dir = tempfile::tempdir().unwrap();
    let node_rss = node_with_targets(dir.path(), &ports, 1_000).await;
    emit(
        json!({"bench": "probing_node_rss", "targets": 1_000, "interval_ms": 1_000,
        "rss_mb": node_rss.0.round(), "peak_rss_mb": node_rss.1.round(), "under_100_mb": node_rss.1 < 100.0}),
    );
    let _ = server.kill();
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn node_with_targets(dir: &Path, ports: &[u16], n: usize) -> (f64, f64) {
    let bin = env!("CARGO_BIN_EXE_livenessd");
    let seq_addr = free_addr();
    let mut seq = std::process::Command::new(bin)
        .args(["sequencer", "--listen", &seq_addr.to_string(), "--data-dir"])
        .arg(dir.join("seq"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while !dir.join("seq/operators.json").exists() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sk = SecretKey::generate();
    livenessd::keyfile::write_secret(&dir.join("bls.key"), &sk.to_hex()).unwrap();
    let listen = free_addr();
    let mut toml = format!(
        "node_id = \"Node1\"\nlisten = \"{listen}\"\ndatabase = \"replica.sqlite\"\nbls_key_file = \"bls.key\"\n\
         [[monitoring_nodes]]\nid = \"Node1\"\nurl = \"http://{listen}\"\npubkey = \"{}\"\npop = \"{}\"\n\
         [zellular]\noperators_file = \"seq/operators.json\"\n[probe]\ninterval_ms = 1000\n",
        sk.public_key().to_hex(),
        sk.prove_possession().to_hex()
    );
    for i in 0..n {
        toml.push_str(&format!(
            "[[targets]]\naddress = \"t{i}\"\nhttp = \"http://127.0.0.1:{}/t/{i}\"\n",
            ports[i % ports.len()]
        ));
    }
    std::fs::write(dir.join("node.toml"), toml).unwrap();
    let mut node = std::process::Command::new(bin)
        .arg("--config")
        .arg(dir.join("node.toml"))
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let pid = node.id().to_string();
    let rss = (proc_status(&pid, "VmRSS:"), proc_status(&pid, "VmHWM:"));
    for p in [&mut node, &mut seq] {
        let _ = p.kill();
        let _ = p.wait();
    }
    rss
}

/// Target stops → `down` applied on every replica of a 4-node devnet (1 s probes).
async fn detection(trials: usize) {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_livenessd"))
        .args([
            "devnet",
            "--nodes",
            "4",
            "--targets",
            "3",
            "--probe-interval-ms",
            "1000",
            "--dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut printed = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.contains("Ctrl-C");
        printed.push(line);
        if done {
            break;
        }
    }
    let url_of = |prefix: &str| -> String {
        let l = printed
            .iter()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap();
        l.split_whitespace().nth(1).unwrap().to_owned()
    };
    let nodes: Vec<String> = (1..=4).map(|i| url_of(&format!("Node{i}"))).collect();
    let control = url_of("control");
    let http = livenessd::http_client::builder().build().unwrap();
    for n in &nodes {
        while !http
            .get(format!("{n}/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let all_are = |t: String, want: &'static str| {
        let (http, nodes) = (http.clone(), nodes.clone());
        async move {
            loop {
                let mut ok = 0;
                for n in &nodes {
                    let v: serde_json::Value =
                        match http.get(format!("{n}/v1/targets")).send().await {
                            Ok(r) => r.json().await.unwrap_or_default(),
                            Err(_) => Default::default(),
                        };
                    if v.as_array()
                        .and_then(|a| a.iter().find(|x| x["address"] == t.as_str()))
                        .is_some_and(|x| x["state"] == want)
                    {
                        ok += 1;
                    }
                }
                if ok == nodes.len() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let mut down = Vec::new();
    let mut up = Vec::new();
    for k in 0..trials {
        let t = format!("0xTarget{}", k % 3 + 1);
        // Start each trial at a random phase of the probe cycle.
        tokio::time::sleep(Duration::from_millis(1_000 + 337 * k as u64)).await;
        http.post(format!("{control}/targets/{t}/stop"))
            .send()
            .await
            .unwrap();
        let s = Instant::now();
        all_are(t.clone(), "down").await;
        down.push(s.elapsed().as_secs_f64());
        http.post(format!("{control}/targets/{t}/start"))
            .send()
            .await
            .unwrap();
        let s = Instant::now();
        all_are(t.clone(), "up").await;
        up.push(s.elapsed().as_secs_f64());
    }
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = child.wait();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    emit(
        json!({"bench": "detection", "nodes": 4, "probe_interval_ms": 1000, "failures_to_down": 3,
        "trials": trials, "down_mean_s": mean(&down), "down_max_s": max(&down),
        "up_mean_s": mean(&up), "up_max_s": max(&up)}),
    );
}
