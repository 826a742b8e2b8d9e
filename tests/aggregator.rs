//! The aggregator end to end: 4 nodes (some aggregators) + dev sequencer + targets on
//! loopback. Detection, recovery, election-free duplicates, partitions, proofs.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{fast, Cluster, FAST_FAILURES_TO_DOWN, FAST_PROBE_MS};
use common::*;
use livenessd::crypto::bls::{PublicKey, Signature};
use serde_json::{json, Value};

const INTERVAL_MS: u64 = FAST_PROBE_MS;
const FAILURES_TO_DOWN: u32 = FAST_FAILURES_TO_DOWN;

async fn state_everywhere(c: &Cluster, target: usize, want: &str) {
    for i in 0..c.nodes.len() {
        eventually(
            20,
            &format!("node {i} sees target {target} {want}"),
            || async move { c.items(i, "/v1/targets").await[target]["state"] == want },
        )
        .await;
    }
}

async fn events_of(c: &Cluster, i: usize, address: &str) -> Vec<Value> {
    c.items(i, &format!("/v1/events?address={address}")).await
}

fn monitor_key(c: &Cluster, id: &str) -> PublicKey {
    c.ids.iter().find(|x| x.id == id).unwrap().sk.public_key()
}

fn signers_key(c: &Cluster, nonsigners: &Value) -> (PublicKey, Vec<String>) {
    let ns: Vec<&str> = nonsigners
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let signers: Vec<&Identity> = c
        .ids
        .iter()
        .filter(|i| !ns.contains(&i.id.as_str()))
        .collect();
    let keys: Vec<PublicKey> = signers.iter().map(|i| i.sk.public_key()).collect();
    (
        PublicKey::aggregate(&keys).unwrap(),
        keys.iter().map(|k| k.to_hex()).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_detected_proven_replicated_and_answered() {
    // 4 nodes, nodes 0 and 1 aggregate; 3 targets.
    let c = Cluster::start_with(
        4,
        3,
        Box::new(|i, cfg| {
            fast(cfg);
            cfg.aggregator = i < 2;
        }),
    )
    .await;
    c.settle().await;
    let a = Cluster::address(1);
    tokio::time::sleep(Duration::from_millis(600)).await;

    // Stop the target: every replica records `down` within failures × interval + a bound.
    c.targets[1].set(503);
    let t0 = Instant::now();
    state_everywhere(&c, 1, "down").await;
    let detect = t0.elapsed();
    println!("detection latency: {detect:?}");
    let bound =
        Duration::from_millis(INTERVAL_MS * FAILURES_TO_DOWN as u64) + Duration::from_secs(3);
    assert!(detect <= bound, "down after {detect:?}, bound {bound:?}");
    tokio::time::sleep(Duration::from_millis(1_200)).await;

    // Restart it: `up`.
    c.targets[1].set(200);
    state_everywhere(&c, 1, "up").await;
    c.settle().await;

    // The log holds exactly one down and one up, identical on every replica, and
    // nothing for the targets that stayed up.
    let first = events_of(&c, 0, &a).await;
    let states: Vec<&str> = first.iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(states, vec!["down", "up"], "{first:?}");
    for i in 1..4 {
        assert_eq!(events_of(&c, i, &a).await, first);
        assert_eq!(
            c.position(i).await["events_digest"],
            c.position(0).await["events_digest"]
        );
    }
    assert!(events_of(&c, 0, &Cluster::address(0)).await.is_empty());
    assert!(events_of(&c, 0, &Cluster::address(2)).await.is_empty());

    // Each event's proof verifies against the configured keys.
    let mut items = Vec::new();
    for e in &first {
        let (apk, keys) = signers_key(&c, &e["non_signing_nodes"]);
        let msg = format!(
            "Address: {a}, State: {}, Timestamp: {}",
            e["state"].as_str().unwrap(),
            e["timestamp"]
        );
        let sig = Signature::from_hex(e["aggregated_signature"].as_str().unwrap()).unwrap();
        assert!(sig.verify(&apk, msg.as_bytes()));
        items.push(json!({"kind": "event", "message": msg, "public_keys": keys, "signature": e["aggregated_signature"]}));
    }

    // /downtime answers agree on every replica; /aggregate_downtime gives a proof,
    // once the window is settled everywhere.
    let to = first[1]["timestamp"].as_i64().unwrap() + 1;
    c.settled_until(to).await;
    let q = format!("address={a}&from_timestamp=0&to_timestamp={to}");
    let mut seconds = Vec::new();
    for i in 0..4 {
        let (status, d) = c.get(i, &format!("/downtime?{q}")).await;
        assert_eq!(status, 200);
        seconds.push(d["total_downtime_seconds"].clone());
        let msg = format!(
            "Address: {a}, Downtime: {}, From: 0, To: {to}",
            d["total_downtime_seconds"]
        );
        items.push(json!({"kind": "downtime", "message": msg, "public_keys": [c.ids[i].sk.public_key().to_hex()],
                          "signature": d["signature"]}));
    }
    assert!(seconds.windows(2).all(|w| w[0] == w[1]), "{seconds:?}");
    let expected =
        first[1]["timestamp"].as_i64().unwrap() - first[0]["timestamp"].as_i64().unwrap();
    assert_eq!(seconds[0], expected);
    let (status, agg) = c.get(3, &format!("/aggregate_downtime?{q}")).await;
    assert_eq!(status, 200, "{agg}");
    let (apk, keys) = signers_key(&c, &agg["non_signing_nodes"]);
    let msg = format!("Address: {a}, Downtime: {expected}, From: 0, To: {to}");
    assert!(
        Signature::from_hex(agg["aggregated_signature"].as_str().unwrap())
            .unwrap()
            .verify(&apk, msg.as_bytes())
    );
    items.push(json!({"kind": "aggregate_downtime", "message": msg, "public_keys": keys, "signature": agg["aggregated_signature"]}));

    // A /state attestation.
    let now = c.clock.now();
    let (_, st) = c
        .get(2, &format!("/state?address={a}&timestamp={now}"))
        .await;
    items.push(json!({"kind": "state", "message": format!("Address: {a}, State: up, Timestamp: {now}"),
                      "public_keys": [monitor_key(&c, "Node3").to_hex()], "signature": st["signature"]}));
    // A proof of possession.
    items.push(json!({"kind": "pop", "message": "pop", "public_keys": [c.ids[0].sk.public_key().to_hex()],
                      "signature": c.ids[0].sk.sign(b"pop").to_hex(), "pop": c.ids[0].sk.prove_possession().to_hex()}));
    blspy_check(&items);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_aggregators_one_down_and_one_up() {
    let c = Cluster::start_with(
        4,
        1,
        Box::new(|i, cfg| {
            fast(cfg);
            cfg.aggregator = i < 3;
            cfg.aggregation.start_jitter_ms = 0; // make them race
        }),
    )
    .await;
    c.settle().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let a = Cluster::address(0);
    c.targets[0].set(500);
    state_everywhere(&c, 0, "down").await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    c.targets[0].set(200);
    state_everywhere(&c, 0, "up").await;
    // Let any late duplicate land, then compare.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    c.settle().await;
    for i in 0..4 {
        let ev = events_of(&c, i, &a).await;
        let states: Vec<&str> = ev.iter().map(|e| e["state"].as_str().unwrap()).collect();
        assert_eq!(states, vec!["down", "up"], "replica {i}: {ev:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_unreachable_from_one_node_is_never_marked_down() {
    let c = Cluster::start_with(
        4,
        1,
        Box::new(|i, cfg| {
            fast(cfg);
            cfg.aggregator = true;
            if i == 0 {
                // Node 1 alone cannot reach the target.
                let dead = dead_addr();
                cfg.targets[0].http = Some(format!("http://{dead}/health"));
            }
        }),
    )
    .await;
    c.settle().await;
    let no_quorum =
        || livenessd::metrics::sample("livenessd_aggregator_no_quorum_total", &[]).unwrap_or(0.0);
    let before = no_quorum();
    // Node 1 sees the target down...
    eventually(10, "node 1 suspects the target", || async {
        c.items(0, "/v1/targets").await[0]["local"]["state"] == "down"
    })
    .await;
    // ...and keeps failing to find a quorum, for many probe intervals.
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS * 15)).await;
    assert!(no_quorum() > before);
    c.settle().await;
    for i in 0..4 {
        assert_eq!(c.items(i, "/v1/targets").await[0]["state"], "up");
        assert_eq!(c.position(i).await["events_count"], 0);
    }
}

/// Every event for `address` in the sequencer's finalized log (posted proofs,
/// duplicates included), as `(state, timestamp)`.
async fn posted(c: &Cluster, address: &str) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    let mut after = 0;
    while let Some(page) = c.client.fetch_finalized(after).await.unwrap() {
        if page.batches.is_empty() {
            break;
        }
        after += page.batches.len() as u64;
        for b in &page.batches {
            let Ok(Value::Array(items)) = serde_json::from_str::<Value>(b) else {
                continue;
            };
            for e in items.iter().filter(|e| e["address"] == address) {
                out.push((
                    e["state"].as_str().unwrap().to_owned(),
                    e["timestamp"].as_i64().unwrap(),
                ));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_slower_to_apply_than_a_rank_step_costs_one_proof() {
    // All four aggregate; the sequencer finalizes every 3 s, so a posted proof takes
    // up to 3 s to apply — ten rank steps. At their turns the others find it held
    // by a nearby-ranked node, check it and wait instead of gathering their own.
    let c = Cluster::start_slow(
        4,
        1,
        Box::new(|_, cfg| {
            fast(cfg);
            cfg.aggregator = true;
            cfg.aggregation.start_jitter_ms = 0;
            cfg.aggregation.rank_step_ms = 300;
            cfg.aggregation.confirm_timeout_ms = 30_000;
            cfg.settlement.max_event_age_secs = 30;
        }),
        Duration::from_secs(3),
    )
    .await;
    c.settle().await;
    // Every node has learned who aggregates.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let a = Cluster::address(0);
    let (status, none) = c.get(0, &format!("/v1/pursuits?address={a}")).await;
    assert_eq!((status, none), (200, Value::Null));
    assert_eq!(c.get(0, "/v1/pursuits?address=0xUnknown").await.0, 404);
    let adopted = || {
        livenessd::metrics::sample("livenessd_aggregator_proofs_adopted_total", &[]).unwrap_or(0.0)
    };
    let before = adopted();
    for (health, want) in [(500, "down"), (200, "up")] {
        c.targets[0].set(health);
        // While the proof waits for finality, a node says it holds it.
        let view = eventually_some(20, "a node says it holds the proof", || async {
            for i in 0..4 {
                let (_, v) = c.get(i, &format!("/v1/pursuits?address={a}")).await;
                // (The last change's pursuers may still be finishing.)
                if v["phase"] == "held" && v["state"] == want {
                    return Some(v);
                }
            }
            None
        })
        .await;
        assert_eq!(view["event"]["address"], a.as_str(), "{view}");
        state_everywhere(&c, 0, want).await;
    }
    // Any late duplicate would land within a finalization or two.
    tokio::time::sleep(Duration::from_secs(7)).await;
    c.settle().await;
    let log = posted(&c, &a).await;
    let states: Vec<&str> = log.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(states, vec!["down", "up"], "one proof per change: {log:?}");
    assert!(adopted() > before, "the others took the held proof");
    for i in 0..4 {
        let ev = events_of(&c, i, &a).await;
        let applied: Vec<&str> = ev.iter().map(|e| e["state"].as_str().unwrap()).collect();
        assert_eq!(applied, vec!["down", "up"], "replica {i}: {ev:?}");
        assert_eq!(
            c.get(i, &format!("/v1/pursuits?address={a}")).await.1,
            Value::Null,
            "node {i} says nothing once applied"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_ranked_node_stands_down_as_soon_as_the_change_applies() {
    // Rank steps of 20 s: the last of four nodes would wait a minute for its turn.
    // A node pursues a target once at a time, so one still waiting for its turn
    // after the change is done would hold up the target's next change; it stands
    // down as soon as its replica shows the change.
    let mut c = Cluster::start_with(
        4,
        1,
        Box::new(|_, cfg| {
            fast(cfg);
            cfg.aggregator = true;
            cfg.aggregation.rank_step_ms = 20_000;
            cfg.aggregation.confirm_timeout_ms = 60_000;
        }),
    )
    .await;
    c.settle().await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let a = Cluster::address(0);
    // With the sequencer away, the change cannot apply: every node confirms it and
    // pursues it (the first-ranked one holds its proof, the others wait their turn).
    c.stop_sequencer().await;
    c.targets[0].set(500);
    for i in 0..4 {
        let c = &c;
        let a = &a;
        eventually(10, &format!("node {i} pursues the change"), || async move {
            let (_, v) = c.get(i, &format!("/v1/pursuits?address={a}")).await;
            v["state"] == "down"
        })
        .await;
    }
    // The first-ranked one gathers and holds its proof (it cannot post it); the
    // other three wait their turn.
    let (cr, ar) = (&c, &a);
    eventually(
        10,
        "one holds the proof, three wait their turn",
        || async move {
            let (c, a) = (cr, ar);
            let mut phases = Vec::new();
            for i in 0..4 {
                phases
                    .push(c.get(i, &format!("/v1/pursuits?address={a}")).await.1["phase"].clone());
            }
            let waiting = phases.iter().filter(|p| **p == "waiting").count();
            let held = phases.iter().filter(|p| **p == "held").count();
            (waiting, held) == (3, 1)
        },
    )
    .await;
    c.start_sequencer().await;
    state_everywhere(&c, 0, "down").await;
    // Every node stands down at once, not at its turn (20, 40, 60 s away).
    let c = &c;
    for i in 0..4 {
        let a = &a;
        eventually(5, &format!("node {i} stands down"), || async move {
            c.get(i, &format!("/v1/pursuits?address={a}")).await.1 == Value::Null
        })
        .await;
    }
    c.targets[0].set(200);
    state_everywhere(c, 0, "up").await;
}
