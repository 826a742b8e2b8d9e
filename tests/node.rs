//! Monitoring nodes in-process on loopback: several nodes + the dev sequencer + fake
//! targets. Replication, bad events, restarts, signed answers, interop.

mod common;

use std::path::PathBuf;

use common::cluster::{node_url, Cluster, T0};
use common::*;
use livenessd::config::NodeConfig;
use livenessd::crypto::bls::{PublicKey, Signature};
use livenessd::node::Node;
use livenessd::zellular::{Client, ClientConfig};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// Every kind of bad event, in the order the test submits them.
const REJECTIONS: [&str; 11] = [
    "bad_signature",
    "too_few_signers",
    "unknown_nonsigner",
    "stale_timestamp",
    "malformed_batch",
    "malformed_event",
    "unknown_address",
    "duplicate_nonsigner",
    "too_old",
    "from_future",
    "bad_signature_encoding",
];

fn rejection_counts() -> Vec<f64> {
    REJECTIONS
        .iter()
        .map(|r| {
            livenessd::metrics::sample("livenessd_events_rejected_total", &[("reason", r)])
                .unwrap_or(0.0)
        })
        .collect()
}

fn duplicates() -> f64 {
    livenessd::metrics::sample("livenessd_events_duplicate_total", &[]).unwrap_or(0.0)
}

fn epochs_of_1000_s_from_t0_minus_1000(_: usize, cfg: &mut NodeConfig) {
    cfg.epoch.genesis = T0 - 1_000;
    cfg.epoch.length_secs = 1_000;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_apply_good_events_and_reject_bad_ones_identically() {
    let c = Cluster::start_manual(3, 2, Box::new(epochs_of_1000_s_from_t0_minus_1000)).await;
    let [n1, n2, n3] = [&c.ids[0], &c.ids[1], &c.ids[2]];
    let (a0, a1) = (Cluster::address(0), Cluster::address(1));
    let before = rejection_counts();
    let dups = duplicates();

    // Good: a0 down (all sign), a1 down (Node3 does not sign: 2/3 reaches the threshold).
    let good1 = signed_event(&[n1, n2, n3], &[], &a0, "down", T0 - 100);
    let good2 = signed_event(&[n1, n2], &["Node3"], &a1, "down", T0 - 95);
    c.submit(&json!([good1, good2]).to_string()).await;
    // Bad, each kind once.
    let mut forged = signed_event(&[n1, n2, n3], &[], &a0, "up", T0 - 90);
    forged["timestamp"] = json!(T0 - 89); // the signature covers T0 - 90
    let too_few = signed_event(&[n1], &["Node2", "Node3"], &a0, "up", T0 - 88);
    let unknown_ns = signed_event(&[n1, n2, n3], &["Node9"], &a0, "up", T0 - 87);
    let dup_ns = signed_event(&[n1], &["Node2", "Node2"], &a0, "up", T0 - 86);
    let repeated = signed_event(&[n1, n2, n3], &[], &a0, "down", T0 - 85);
    let unknown_addr = signed_event(&[n1, n2, n3], &[], "0xSomeoneElse", "down", T0 - 84);
    // Older than max_event_age before its sync point, and later than the drift after it.
    let too_old = signed_event(&[n1, n2, n3], &[], &a0, "up", T0 - 121);
    let from_future = signed_event(&[n1, n2, n3], &[], &a0, "up", T0 + 11);
    let mut garbled = signed_event(&[n1, n2, n3], &[], &a0, "up", T0 - 83);
    garbled["aggregated_signature"] = json!("zz");
    c.submit(&json!([forged, too_few, unknown_ns, dup_ns, repeated, unknown_addr, {"address": "0xNode0"},
                     too_old, from_future, garbled]).to_string())
        .await;
    c.submit("this is not json").await;
    c.submit(r#"{"not": "an array"}"#).await;
    // Good again: a0 up, then a stale down for a0 (older than its up).
    let good3 = signed_event(&[n1, n2, n3], &[], &a0, "up", T0);
    let stale = signed_event(&[n1, n2, n3], &[], &a0, "down", T0 - 50);
    c.submit(&json!([good3, stale]).to_string()).await;
    c.settle().await;

    // Every replica holds the same log.
    let mut p: Vec<Value> = Vec::new();
    for i in 0..c.nodes.len() {
        p.push(c.position(i).await);
    }
    assert_eq!(p[0]["events_count"], 3, "{p:?}");
    assert_eq!(p[0]["log_time"], T0);
    for x in &p[1..] {
        assert_eq!(x["events_digest"], p[0]["events_digest"]);
        assert_eq!(x["index"], p[0]["index"]);
        assert_eq!(x["chaining_hash"], p[0]["chaining_hash"]);
    }
    // Each bad kind was counted (three replicas in this process: at least 3 each),
    // and the repeated state as a duplicate, not a rejection.
    let after = rejection_counts();
    for (k, (b, a)) in before.iter().zip(&after).enumerate() {
        let min = if REJECTIONS[k] == "malformed_batch" {
            6.0
        } else {
            3.0
        };
        assert!(a - b >= min, "{}: {b} -> {a}", REJECTIONS[k]);
    }
    assert!(duplicates() - dups >= 3.0);
    // Current states.
    let targets = c.items(1, "/v1/targets").await;
    assert_eq!(targets[0]["state"], "up");
    assert_eq!(targets[0]["since"], T0);
    assert_eq!(targets[1]["state"], "down");
    assert_eq!(targets[1]["since"], T0 - 95);

    // Signed answers wait for settled history: `log_time` is T0, so nothing after
    // T0 - 120 is settled yet.
    let q = format!(
        "/downtime?address={a0}&from_timestamp=0&to_timestamp={}",
        T0 + 100
    );
    let (status, body) = c.get(2, &q).await;
    assert_eq!(status, 425, "{body}");
    assert_eq!(body["settled_until"], T0 - 120);
    c.advance(300).await;
    let (status, d) = c.get(2, &q).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["total_downtime_seconds"], 100);
    let msg = format!("Address: {a0}, Downtime: 100, From: 0, To: {}", T0 + 100);
    let sig = Signature::from_hex(d["signature"].as_str().unwrap()).unwrap();
    assert!(sig.verify(&n3.sk.public_key(), msg.as_bytes()));
    // The interval table and the epoch summary agree.
    let iv = c
        .items(
            0,
            &format!("/v1/intervals?address={a0}&from=0&to={}", T0 + 100),
        )
        .await;
    let rows: Vec<(String, i64, Option<i64>)> = iv
        .iter()
        .map(|r| {
            (
                r["state"].as_str().unwrap().to_owned(),
                r["start"].as_i64().unwrap(),
                r["end"].as_i64(),
            )
        })
        .collect();
    // Monitoring of a0 began with its first event (in the log's first batch): the
    // table starts there, not at 1970.
    assert_eq!(
        rows,
        vec![("down".into(), T0 - 100, Some(T0)), ("up".into(), T0, None)]
    );

    // Epoch 0 is [T0 - 1000, T0): a0 was monitored for its last 100 s, all down
    // (the up at T0 is epoch 1's). Unknown time is not counted as up.
    let ep = c.items(1, &format!("/v1/epochs/0?address={a0}")).await;
    assert_eq!(ep[0]["monitored_seconds"], 100);
    assert_eq!(ep[0]["downtime_seconds"], 100);
    assert_eq!(ep[0]["outages"], 1);
    assert_eq!(ep[0]["uptime_ratio"], 0.0);
    assert_eq!(ep[0]["end"], T0);
    let ep = c.items(1, &format!("/v1/epochs/0?address={a1}")).await;
    assert_eq!(
        (
            ep[0]["downtime_seconds"].as_i64(),
            ep[0]["outages"].as_u64()
        ),
        (Some(95), Some(1))
    );
    let ep = c.items(1, &format!("/v1/epochs/1?address={a1}")).await;
    assert_eq!(
        ep[0]["outages"], 1,
        "an outage running into the epoch counts"
    );
    assert_eq!(
        ep[0]["downtime_seconds"], 300,
        "up to now in the current epoch"
    );
    assert_eq!(ep[0]["complete"], false);
    // An epoch that has not begun has no figures.
    assert_eq!(c.get(1, &format!("/v1/epochs/5?address={a1}")).await.0, 404);

    // An aggregate proof from a quorum of the replicas verifies as a third party would.
    let (status, agg) = c
        .get(0, &q.replace("/downtime", "/aggregate_downtime"))
        .await;
    assert_eq!(status, 200, "{agg}");
    assert_eq!(agg["non_signing_nodes"], json!([]));
    let apk =
        PublicKey::aggregate(&c.ids.iter().map(|i| i.sk.public_key()).collect::<Vec<_>>()).unwrap();
    let sig = Signature::from_hex(agg["aggregated_signature"].as_str().unwrap()).unwrap();
    assert!(sig.verify(&apk, msg.as_bytes()));
    // Unknown address and bad ranges.
    assert_eq!(
        c.get(0, "/downtime?address=nope&from_timestamp=0&to_timestamp=1")
            .await
            .0,
        404
    );
    assert_eq!(
        c.get(
            0,
            &format!("/downtime?address={a0}&from_timestamp=5&to_timestamp=1")
        )
        .await
        .0,
        400
    );
    assert_eq!(
        c.get(
            0,
            &format!("/downtime?address={a0}&from_timestamp=x&to_timestamp=1")
        )
        .await
        .0,
        422
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_resumes_at_its_cursor_without_gaps_or_duplicates() {
    let mut c = Cluster::start_manual(3, 1, Box::new(|_, _| {})).await;
    let a = Cluster::address(0);
    // Alternating transitions of one address, 2 s apart.
    let batches: Vec<String> = {
        let ids: Vec<&Identity> = c.ids.iter().collect();
        (0..40)
            .map(|k| {
                json!([signed_event(
                    &ids,
                    &[],
                    &a,
                    ["down", "up"][k % 2],
                    T0 - 100 + 2 * k as i64
                )])
                .to_string()
            })
            .collect()
    };
    for b in &batches[..20] {
        c.submit(b).await;
    }
    c.settle().await;
    c.stop_node(2).await;
    for b in &batches[20..] {
        c.submit(b).await;
    }
    c.settle().await;
    c.restart_node(2).await;
    c.settle().await;
    let p0 = c.position(0).await;
    let p2 = c.position(2).await;
    assert_eq!(p0["events_count"], 40);
    for k in [
        "index",
        "chaining_hash",
        "events_digest",
        "events_count",
        "log_time",
    ] {
        assert_eq!(p2[k], p0[k], "{k}");
    }
    // /ready says so.
    eventually(10, "node 3 ready", || async {
        c.get(2, "/ready").await.0 == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_attestations_are_fresh_signed_probes() {
    let mut c = Cluster::start_manual(2, 1, Box::new(|_, _| {})).await;
    let a = Cluster::address(0);
    let now = c.clock.now();
    let (status, att) = c
        .get(0, &format!("/state?address={a}&timestamp={now}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(att["state"], "up");
    let msg = format!("Address: {a}, State: up, Timestamp: {now}");
    let sig = Signature::from_hex(att["signature"].as_str().unwrap()).unwrap();
    assert!(sig.verify(&c.ids[0].sk.public_key(), msg.as_bytes()));
    // The node probes at the moment of the request.
    c.targets[0].set(503);
    let (_, att) = c
        .get(1, &format!("/state?address={a}&timestamp={now}"))
        .await;
    assert_eq!(att["state"], "down");
    c.targets[0].set(206);
    let (_, att) = c
        .get(1, &format!("/state?address={a}&timestamp={now}"))
        .await;
    assert_eq!(att["state"], "up", "206 is up (degraded)");
    c.targets[0].set(200);
    // Drift and unknown addresses.
    let (status, body) = c
        .get(0, &format!("/state?address={a}&timestamp={}", now - 60))
        .await;
    assert_eq!(
        (status, body),
        (400, json!({"detail": "Timestamp drift too large"}))
    );
    let (status, body) = c
        .get(0, &format!("/state?address=0xNobody&timestamp={now}"))
        .await;
    assert_eq!(
        (status, body),
        (404, json!({"detail": "Address not found"}))
    );
    assert_eq!(c.get(0, &format!("/state?address={a}")).await.0, 422);
    // Timestamps far away never wrap around the drift check.
    for t in [i64::MIN, i64::MAX, now - (1 << 62)] {
        let (status, _) = c.get(0, &format!("/state?address={a}&timestamp={t}")).await;
        assert_eq!(status, 400, "timestamp {t}");
    }
    assert_eq!(
        c.get(0, &format!("/v1/epochs/{}?address={a}", i64::MAX))
            .await
            .0,
        400
    );
    assert_eq!(
        c.get(0, &format!("/v1/epochs/{}?address={a}", i64::MIN))
            .await
            .0,
        400
    );
    // Nothing is signed before the replica has a sync point (stale: 503)...
    let q = format!("/downtime?address={a}&from_timestamp=0&to_timestamp=10");
    let (status, body) = c.get(0, &q).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("stale"), "{body}");
    c.submit("[]").await;
    c.settle().await;
    assert_eq!(c.get(0, &q).await.0, 200);
    // ...and nothing about the future or unsettled history (425, with the watermark).
    let (status, body) = c
        .get(
            0,
            &format!(
                "/downtime?address={a}&from_timestamp=0&to_timestamp={}",
                now + 3600
            ),
        )
        .await;
    assert_eq!(status, 425, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("in the future"),
        "{body}"
    );
    assert_eq!(body["settled_until"], now - 120);
    // The local view follows the damped probes, and says why.
    c.targets[0].set(500);
    eventually(10, "local view down", || async {
        c.items(0, "/v1/targets").await[0]["local"]["state"] == "down"
    })
    .await;
    let t = &c.items(0, "/v1/targets").await[0];
    assert_eq!(t["local"]["last_failure"]["text"], "HTTP 500", "{t}");
    // Without a quorum of equal signed answers there is no proof: 424.
    let q = q.replace("/downtime", "/aggregate_downtime");
    assert_eq!(c.get(0, &q).await.0, 200, "both nodes answer");
    c.stop_node(1).await;
    let (status, body) = c.get(0, &q).await;
    assert_eq!(status, 424);
    assert_eq!(
        body["detail"],
        "Not enough valid signatures to aggregate downtime proof."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_made_by_the_reference_node_is_verified_and_applied() {
    // The reference node's keys (zsequencer downtime-monitoring example) and an
    // aggregate made by blspy, from the vectors.
    let v = vector("bls12381_pop.json");
    let key = |n: &str| {
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == n)
            .unwrap()
            .clone()
    };
    // A state event signed by all three with blspy: agg_all over "state_up".
    let agg_all = v["aggregates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "agg_all")
        .unwrap();
    let text = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "state_up")
        .unwrap()["text"]
        .as_str()
        .unwrap()
        .to_owned();
    // "Address: 0xNodeA123, State: up, Timestamp: 1700000000"
    let ts: i64 = text.rsplit(' ').next().unwrap().parse().unwrap();

    let dir = tempfile::tempdir().unwrap();
    // The sequencer's (and the node's) time: just after the blspy event's.
    let clock = livenessd::clock::Clock::manual(ts + 5);
    let mut sc = devseq_config(&dir.path().join("seq"));
    sc.clock = clock.clone();
    let (_seq, seq_srv) = start_devseq(sc, any_port()).await;
    let target = FakeTarget::start();
    let node_listener = bind(any_port());
    let node_addr = node_listener.local_addr().unwrap();
    // The reference monitoring_nodes.json: no proofs of possession.
    let nodes_file = dir.path().join("monitoring_nodes.json");
    let reference: serde_json::Map<String, Value> = ["Node1", "Node2", "Node3"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let url = if i == 0 {
                node_url(node_addr)
            } else {
                format!("http://127.0.0.1:{}", 1 + i)
            };
            (n.to_string(), json!({"url": url, "pubkey": key(n)["pk"]}))
        })
        .collect();
    std::fs::write(&nodes_file, serde_json::to_string(&reference).unwrap()).unwrap();
    let key_file = dir.path().join("node1.key");
    livenessd::keyfile::write_secret(&key_file, key("Node1")["sk"].as_str().unwrap()).unwrap();
    let toml = format!(
        r#"
node_id = "Node1"
listen = "{node_addr}"
database = "node1.sqlite"
bls_key_file = "node1.key"
monitoring_nodes_file = "monitoring_nodes.json"
[[targets]]
address = "0xNodeA123"
http = "{}"
[zellular]
operators_file = "seq/operators.json"
poll_max_ms = 50
"#,
        target.url
    );
    let cfg_path = dir.path().join("node.toml");
    std::fs::write(&cfg_path, toml).unwrap();
    // Without an explicit opt-in, keys without a proof of possession are refused.
    let cfg = NodeConfig::load(Some(&cfg_path), &Default::default()).unwrap();
    let err = Node::open(cfg).await.err().unwrap();
    assert!(
        format!("{err:#}").contains("Node1 has no proof of possession"),
        "{err:#}"
    );
    // With it, the node starts (and warns).
    std::fs::write(
        &cfg_path,
        std::fs::read_to_string(&cfg_path).unwrap().replace(
            "monitoring_nodes_file",
            "allow_without_pop = [\"Node1\", \"Node2\", \"Node3\"]\nmonitoring_nodes_file",
        ),
    )
    .unwrap();
    let cfg = NodeConfig::load(Some(&cfg_path), &Default::default()).unwrap();
    let node = Node::open_with_clock(cfg, clock.clone()).await.unwrap();
    let stop = CancellationToken::new();
    let listener = node_listener;
    let t = stop.clone();
    let task = tokio::spawn(async move { node.run(listener, t).await.unwrap() });

    // The reference event shape, as its handle_state_change builds it: first a
    // down (a fresh aggregate by Node1..3, as blspy would make it), then blspy's own up.
    let down_msg = format!("Address: 0xNodeA123, State: down, Timestamp: {}", ts - 100);
    let sks: Vec<livenessd::crypto::bls::SecretKey> = ["Node1", "Node2", "Node3"]
        .iter()
        .map(|n| {
            livenessd::crypto::bls::SecretKey::from_hex(key(n)["sk"].as_str().unwrap()).unwrap()
        })
        .collect();
    let down_sig = Signature::aggregate(
        &sks.iter()
            .map(|k| k.sign(down_msg.as_bytes()))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let events = json!([
        {"address": "0xNodeA123", "state": "down", "timestamp": ts - 100,
         "aggregated_signature": down_sig.to_hex(), "non_signing_nodes": []},
        {"address": "0xNodeA123", "state": "up", "timestamp": ts,
         "aggregated_signature": agg_all["aggregate_signature"], "non_signing_nodes": []},
    ]);
    let client = Client::new(ClientConfig::new("livenessd", vec![seq_srv.url.clone()]));
    client.submit(&events.to_string()).await.unwrap();
    let http = livenessd::http_client::builder().build().unwrap();
    eventually(20, "both events applied", || async {
        let p = get_json(&http, &format!("{}/v1/position", node_url(node_addr))).await;
        p["events_count"] == 2
    })
    .await;
    // Two minutes later (a heartbeat moves log_time), the window is settled.
    clock.advance(200);
    client.submit("[]").await.unwrap();
    eventually(20, "settled", || async {
        let r = get_json(&http, &format!("{}/ready", node_url(node_addr))).await;
        r["settled_until"].as_i64().is_some_and(|s| s >= ts)
    })
    .await;
    let url = format!(
        "{}/downtime?address=0xNodeA123&from_timestamp=0&to_timestamp={ts}",
        node_url(node_addr)
    );
    let d = get_json(&http, &url).await;
    assert_eq!(d["total_downtime_seconds"], 100);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn bad_config_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let write = |body: &str| -> PathBuf {
        let p = dir.path().join("node.toml");
        std::fs::write(&p, body).unwrap();
        p
    };
    let base = r#"
node_id = "Node1"
[[monitoring_nodes]]
id = "Node1"
url = "http://127.0.0.1:7001"
pubkey = "aa"
[zellular]
operators_file = "ops.json"
"#;
    let err = |body: &str| {
        NodeConfig::load(Some(&write(body)), &Default::default())
            .unwrap_err()
            .to_string()
    };
    NodeConfig::load(Some(&write(base)), &Default::default()).unwrap();
    assert!(err(&base.replace("node_id = \"Node1\"", "node_id = \"Node7\"")).contains("node_id"));
    assert!(err(&format!("{base}\n[probe]\ninterval_ms = 0\n")).contains("probe.interval_ms"));
    assert!(err(&format!("{base}\n[probe]\ninterval_ms = \"soon\"\n")).contains("interval_ms"));
    assert!(err(&format!("quorum_threshold = \"3/2\"\n{base}")).contains("quorum_threshold"));
    assert!(err(&format!("bogus_key = 1\n{base}")).contains("bogus_key"));
    assert!(err(&format!("{base}\n[[targets]]\naddress = \"a\"\n")).contains("targets[0]"));
    assert!(err(&format!(
        "{base}\n[[targets]]\naddress = \"a\"\ntcp = \"nohost\"\n"
    ))
    .contains("targets[0].tcp"));
    assert!(
        err(&base.replace("url = \"http://127.0.0.1:7001\"", "url = \"ftp://x\""))
            .contains("monitoring_nodes[0].url")
    );
    // CLI flags override the file.
    let cli = livenessd::config::CliOverrides {
        listen: Some("127.0.0.1:9999".parse().unwrap()),
        ..Default::default()
    };
    let cfg = NodeConfig::load(Some(&write(base)), &cli).unwrap();
    assert_eq!(cfg.listen.port(), 9999);
    assert_eq!(
        cfg.zellular.operators_file.unwrap(),
        dir.path().join("ops.json"),
        "relative to the file"
    );
}

#[test]
fn the_example_config_documents_every_key() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/node.toml.example")).unwrap();
    let defaults = serde_json::to_value(NodeConfig::default()).unwrap();
    fn keys(v: &Value, out: &mut Vec<String>) {
        if let Value::Object(m) = v {
            for (k, v) in m {
                out.push(k.clone());
                keys(v, out);
            }
        }
    }
    let mut all = Vec::new();
    keys(&defaults, &mut all);
    for k in [
        "id", "url", "pubkey", "pop", "stake", "address", "http", "tcp",
    ] {
        all.push(k.into());
    }
    for k in all {
        assert!(
            example
                .lines()
                .any(|l| l.trim_start_matches("# ").starts_with(&format!("{k} "))
                    || l.contains(&format!("[{k}]"))),
            "node.toml.example does not document {k}"
        );
    }
    // And it loads as it is.
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/node.toml.example"));
    let cfg = NodeConfig::load(Some(&path), &Default::default()).unwrap();
    assert_eq!(cfg.node_id, "Node1");
    assert_eq!(cfg.targets.len(), 1);
}

#[test]
fn environment_overrides_the_file_and_errors_name_the_field() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_livenessd"))
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/node.toml.example"),
        ])
        .env("LIVENESSD_PROBE__INTERVAL_MS", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("probe.interval_ms: must be positive"), "{err}");
}

#[test]
fn a_bad_proof_of_possession_stops_the_node_naming_the_key() {
    let (a, b) = (Identity::new(1), Identity::new(2));
    let mut nodes = vec![
        a.monitoring_node("http://127.0.0.1:1"),
        b.monitoring_node("http://127.0.0.1:2"),
    ];
    nodes[1].pop = nodes[0].pop.clone();
    let err =
        livenessd::events::MonitorSet::new(&nodes, &[], livenessd::config::Threshold::TWO_THIRDS)
            .unwrap_err();
    assert!(
        err.to_string().contains("Node2: bad proof of possession"),
        "{err}"
    );
    nodes[1].pop = None;
    let err =
        livenessd::events::MonitorSet::new(&nodes, &[], livenessd::config::Threshold::TWO_THIRDS)
            .unwrap_err();
    assert!(
        err.to_string().contains("Node2 has no proof of possession"),
        "{err}"
    );
    livenessd::events::MonitorSet::new(
        &nodes,
        &["Node2".into()],
        livenessd::config::Threshold::TWO_THIRDS,
    )
    .unwrap();
}

#[test]
fn keygen_writes_a_private_key_file_and_prints_a_valid_pop() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_livenessd"))
        .args(["keygen", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pk = PublicKey::from_hex(v["pubkey"].as_str().unwrap()).unwrap();
    assert!(pk.verify_pop(&Signature::from_hex(v["pop"].as_str().unwrap()).unwrap()));
    assert!(!String::from_utf8_lossy(&out.stdout)
        .contains(std::fs::read_to_string(&path).unwrap().trim()));
    // Never overwrites.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_livenessd"))
        .args(["keygen", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!again.status.success());
    // A key file others can read is refused.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = livenessd::signer::Signer::from_file(&path).err().unwrap();
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

/// The Kubernetes base's and the test network's node.toml load with the
/// StatefulSet's variables.
#[test]
fn the_kubernetes_configs_load() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s");
    let base = root.join("base/config");
    let cli = |node_id: Option<&str>| livenessd::config::CliOverrides {
        node_id: node_id.map(str::to_owned),
        listen: Some("0.0.0.0:7001".parse().unwrap()),
        database: Some("/data/replica.sqlite".into()),
        bls_key_file: Some("/keys/bls.key".into()),
        aggregator: Some(true),
    };
    let cfg = NodeConfig::load(Some(&base.join("node.toml")), &cli(None)).unwrap();
    assert_eq!(cfg.node_id, "operator-a");
    assert_eq!(cfg.monitoring_nodes.len(), 4);
    assert_eq!(cfg.targets.len(), 2);
    // The test network's files replace two of the base's (behavior: merge).
    let dir = tempfile::tempdir().unwrap();
    let net = root.join("overlays/test-network/config");
    for f in ["node.toml", "nodes.json"] {
        std::fs::copy(net.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::copy(
        base.join("operators.json"),
        dir.path().join("operators.json"),
    )
    .unwrap();
    let cfg = NodeConfig::load(Some(&dir.path().join("node.toml")), &cli(Some("node-2"))).unwrap();
    assert_eq!(cfg.monitoring_nodes.len(), 4);
    assert_eq!(
        cfg.monitoring_nodes[2].url,
        "http://livenessd-2.livenessd:7001"
    );
    assert_eq!(cfg.targets.len(), 4);
}
