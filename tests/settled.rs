//! Signed answers are a pure function of settled, verified history: they never
//! change and never contradict each other, whatever the sequencer or a gateway
//! does. In-process clusters on loopback with a manual clock: time moves only when
//! a test says so.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::cluster::{Cluster, T0};
use common::*;
use livenessd::config::NodeConfig;
use serde_json::{json, Value};

/// Every signed `/aggregate_downtime` answer seen, per window, from every node.
#[derive(Default)]
struct Answers {
    by_window: HashMap<(i64, i64), Vec<(String, i64)>>,
    refused: usize,
}

impl Answers {
    async fn collect(&mut self, c: &Cluster, when: &str, windows: &[(i64, i64)], address: &str) {
        for &(from, to) in windows {
            for i in 0..c.nodes.len() {
                if c.nodes[i].is_none() {
                    continue;
                }
                let q = format!(
                    "/aggregate_downtime?address={address}&from_timestamp={from}&to_timestamp={to}"
                );
                let (status, v) = c.get(i, &q).await;
                match status {
                    200 => self.by_window.entry((from, to)).or_default().push((
                        format!("{when}@node{i}"),
                        v["total_downtime_seconds"].as_i64().unwrap(),
                    )),
                    // Not settled, stale, or not enough settled peers: no signature.
                    425 | 503 | 424 => self.refused += 1,
                    other => panic!("{q}: unexpected {other}: {v}"),
                }
            }
        }
    }

    /// No two signed answers for one window differ.
    fn assert_agree(&self) {
        for (w, answers) in &self.by_window {
            let first = answers[0].1;
            assert!(
                answers.iter().all(|a| a.1 == first),
                "contradicting signed answers for {w:?}: {answers:?}"
            );
        }
    }
}

/// (a) A sequencer outage in the middle of a target's outage: the event ending it
/// waits to be sequenced. Every signed answer for a fixed set of windows, asked
/// before, during and after, agrees with every other one for the same window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_answers_never_contradict_each_other_across_a_sequencer_outage() {
    let mut c = Cluster::start_manual(3, 1, Box::new(|_, _| {})).await;
    let a = Cluster::address(0);
    let (down, up) = {
        let ids: Vec<&Identity> = c.ids.iter().collect();
        (
            json!([signed_event(&ids, &[], &a, "down", T0 + 10)]).to_string(),
            json!([signed_event(&ids, &[], &a, "up", T0 + 40)]).to_string(),
        )
    };
    let windows = [
        (T0 - 200, T0 - 150),
        (T0 - 50, T0 + 30),
        (T0, T0 + 60),
        (T0 + 20, T0 + 100),
        (0, T0 + 200),
    ];
    let mut seen = Answers::default();
    c.advance(0).await;
    seen.collect(&c, "before", &windows, &a).await;

    // The target goes down at T0 + 10; the event is sequenced at once.
    c.clock.advance(10);
    c.submit(&down).await;
    c.settle().await;
    seen.collect(&c, "down", &windows, &a).await;

    // The sequencer stops; the target recovers at T0 + 40 but the event that says
    // so cannot be sequenced. Replicas keep answering while time passes.
    c.clock.advance(5);
    c.stop_sequencer().await;
    for _ in 0..8 {
        c.clock.advance(10);
        seen.collect(&c, "outage", &windows, &a).await;
    }
    // T0 + 95: the sequencer is back and the held event (timestamp T0 + 40) lands.
    c.start_sequencer().await;
    c.submit(&up).await;
    c.settle().await;
    seen.collect(&c, "back", &windows, &a).await;
    // Time passes with heartbeats until every window is settled.
    for _ in 0..8 {
        c.advance(50).await;
        seen.collect(&c, "after", &windows, &a).await;
    }
    seen.assert_agree();
    // Every window got its signed answers in the end, and they are the truth.
    let truth = |from: i64, to: i64| ((T0 + 40).min(to) - (T0 + 10).max(from)).max(0);
    for &(from, to) in &windows {
        let got = &seen.by_window[&(from, to)];
        assert!(got.len() >= 3, "{:?}: {got:?}", (from, to));
        assert_eq!(got[0].1, truth(from, to), "{:?}: {got:?}", (from, to));
    }
    assert!(
        seen.refused > 0,
        "unsettled windows were refused on the way"
    );
}

/// (c) The sequencer stops: within the freshness bound every node turns unready
/// and signs nothing; it recovers by itself (aggregators' heartbeats) once the
/// sequencer is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_sequencer_makes_every_node_unready_until_it_returns() {
    let mut c = Cluster::start_manual(
        3,
        1,
        Box::new(|i, cfg| {
            cfg.aggregator = i == 0;
            cfg.freshness.heartbeat_interval_ms = 1_000;
            cfg.freshness.bound_ms = Some(30_000);
        }),
    )
    .await;
    let a = Cluster::address(0);
    c.advance(200).await;
    let q = format!("/downtime?address={a}&from_timestamp=0&to_timestamp={}", T0);
    for i in 0..3 {
        assert_eq!(c.get(i, "/ready").await.0, 200);
        assert_eq!(c.get(i, &q).await.0, 200);
    }
    c.stop_sequencer().await;
    // Within the bound: still fresh. Past it: unready, and nothing is signed.
    c.clock.advance(30);
    assert_eq!(c.get(1, "/ready").await.0, 200);
    c.clock.advance(2);
    for i in 0..3 {
        let (status, r) = c.get(i, "/ready").await;
        assert_eq!(status, 503, "{r}");
        assert!(
            r["detail"].as_str().unwrap().contains("behind the clock"),
            "{r}"
        );
        let (status, body) = c.get(i, &q).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(
            c.get(i, &q.replace("/downtime", "/aggregate_downtime"))
                .await
                .0,
            503
        );
    }
    let stale = livenessd::metrics::sample("livenessd_replica_stale_episodes_total", &[]);
    assert!(stale.unwrap_or(0.0) >= 1.0);
    // Back: node 0's heartbeats move log_time again; everyone is fresh again.
    c.start_sequencer().await;
    let c = &c;
    for i in 0..3 {
        eventually(30, &format!("node {i} fresh again"), || async move {
            c.get(i, "/ready").await.0 == 200
        })
        .await;
        assert_eq!(c.get(i, &q).await.0, 200);
    }
}

/// (d) A future or unsettled `to_timestamp` is refused with 425, the watermark and
/// a Retry-After; a settled one is signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn future_and_unsettled_windows_get_425_with_the_watermark() {
    let c = Cluster::start_manual(2, 1, Box::new(|_, _| {})).await;
    let a = Cluster::address(0);
    c.advance(0).await;
    for (to, why) in [(T0 + 5, "in the future"), (T0 - 60, "not settled yet")] {
        let r = c
            .http
            .get(format!(
                "{}/downtime?address={a}&from_timestamp=0&to_timestamp={to}",
                c.nodes[0].as_ref().unwrap().url
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 425);
        let retry: i64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(retry, to - (T0 - 120));
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["settled_until"], T0 - 120);
        assert_eq!(body["log_time"], T0);
        assert!(body["detail"].as_str().unwrap().contains(why), "{body}");
    }
    let ok = format!(
        "/downtime?address={a}&from_timestamp=0&to_timestamp={}",
        T0 - 120
    );
    assert_eq!(c.get(1, &ok).await.0, 200);
    // A request that can never be answered is not told to come back later.
    let future = T0 + 100;
    for (q, status) in [
        (
            format!("address=0xNope&from_timestamp=0&to_timestamp={future}"),
            404,
        ),
        (
            format!("address={a}&from_timestamp=-5&to_timestamp={future}"),
            400,
        ),
        (
            format!("address={a}&from_timestamp={future}&to_timestamp=0"),
            400,
        ),
    ] {
        for path in ["/downtime", "/aggregate_downtime"] {
            assert_eq!(
                c.get(0, &format!("{path}?{q}")).await.0,
                status,
                "{path}?{q}"
            );
        }
    }
    // Unsigned answers may look past the watermark, and say where it is.
    let (_, iv) = c.get(0, &format!("/v1/intervals?address={a}")).await;
    assert_eq!(iv["settled_until"], T0 - 120);
}

/// A fake gateway that answers `data: null` to everything: "nothing new, ever".
fn null_gateway() -> Running {
    use axum::routing::{get, put};
    let null = || async { axum::Json(json!({"status": "success", "message": "ok", "data": null})) };
    serve_router(
        axum::Router::new()
            .route("/node/{app}/batches/{state}", get(null))
            .route("/node/{app}/batches/{state}/last", get(null))
            .route("/node/{app}/batches", put(null)),
    )
}

/// (b) A gateway answering `data: null` forever beside an honest one: the node
/// notices it is stale, finds the honest gateway ahead, switches and catches up —
/// and never signs from the empty replica. With no honest gateway it stays
/// unready and signs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_says_nothing_is_left_for_one_that_is_ahead() {
    let liar = null_gateway();
    let liar_url = liar.url.clone();
    let _keep = liar;
    let c = Cluster::start_manual(
        3,
        1,
        Box::new(move |i, cfg: &mut NodeConfig| {
            // Node 2 reads the liar first, then the honest sequencer; Node 3 only
            // the liar.
            match i {
                1 => cfg.zellular.gateways.insert(0, liar_url.clone()),
                2 => cfg.zellular.gateways = vec![liar_url.clone()],
                _ => {}
            }
        }),
    )
    .await;
    let ids: Vec<&Identity> = c.ids.iter().collect();
    let a = Cluster::address(0);
    c.submit(&json!([signed_event(&ids, &[], &a, "down", T0 - 30)]).to_string())
        .await;
    // Finalized (at T0) before the clock moves on.
    c.settle_only(&[0]).await;
    c.clock.advance(200);
    c.submit("[]").await;
    c.settle_only(&[0]).await;
    let q = format!(
        "/downtime?address={a}&from_timestamp=0&to_timestamp={}",
        T0 + 50
    );
    let (status, honest) = c.get(0, &q).await;
    assert_eq!(status, 200, "{honest}");
    assert_eq!(honest["total_downtime_seconds"], 80);
    // Node 2 never signed from its empty replica meanwhile: it was stale (503).
    // Node 2 switched to the honest gateway and answers the same.
    eventually(30, "node 2 fails over and catches up", || async {
        c.get(1, "/ready").await.0 == 200
    })
    .await;
    let (status, d) = c.get(1, &q).await;
    assert_eq!((status, &d["total_downtime_seconds"]), (200, &json!(80)));
    assert_eq!(
        c.position(1).await["events_digest"],
        c.position(0).await["events_digest"]
    );
    let switches =
        livenessd::metrics::sample("livenessd_gateway_switches_total", &[("reason", "behind")]);
    assert!(switches.unwrap_or(0.0) >= 1.0);
    // Node 3 has only the liar: unready, with the reason, and it signs nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, r) = c.get(2, "/ready").await;
    assert_eq!(status, 503, "{r}");
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("no verified sync point"),
        "{r}"
    );
    assert_eq!(c.get(2, &q).await.0, 503);
    assert_eq!(c.position(2).await["index"], 0);
}

/// (f) The aggregator gathers its quorum proof while the sequencer is down, keeps
/// it through a 60 s outage, and the event finally applied carries the time a
/// quorum first confirmed the change — not the time the sequencer came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_quorum_proof_is_kept_through_a_sequencer_outage() {
    let mut c = Cluster::start_manual(
        3,
        1,
        Box::new(|i, cfg| {
            cfg.aggregator = i == 0;
            cfg.aggregation.start_jitter_ms = 0;
            cfg.aggregation.retry_initial_ms = 100;
            cfg.aggregation.retry_max_ms = 300;
            cfg.aggregation.reconcile_interval_ms = 100;
            cfg.freshness.heartbeat_interval_ms = 3_600_000;
        }),
    )
    .await;
    let a = Cluster::address(0);
    c.advance(0).await;
    c.stop_sequencer().await;
    // The target fails at T0; node 0 confirms it and gathers a proof (time T0).
    c.targets[0].set(503);
    let c0 = &c;
    eventually(10, "node 0 sees the target down", || async move {
        c0.items(0, "/v1/targets").await[0]["local"]["state"] == "down"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A minute without a sequencer.
    for _ in 0..6 {
        c.clock.advance(10);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.start_sequencer().await;
    let c = &c;
    let a = &a;
    eventually(30, "the held event is applied everywhere", || async move {
        let mut all = true;
        for i in 0..3 {
            all &= c.items(i, &format!("/v1/events?address={a}")).await.len() == 1;
        }
        all
    })
    .await;
    for i in 0..3 {
        let ev = c.items(i, &format!("/v1/events?address={a}")).await;
        assert_eq!(ev[0]["state"], "down");
        assert_eq!(
            ev[0]["timestamp"],
            T0,
            "the first quorum time, not {}",
            T0 + 60
        );
        assert_eq!(ev[0]["log_time"], T0 + 60);
    }
}

fn base_toml(extra_nodes: &str) -> String {
    let a = Identity::new(1);
    format!(
        r#"
node_id = "Node1"
quorum_threshold = "2/3"
[[monitoring_nodes]]
id = "Node1"
url = "http://127.0.0.1:7001"
pubkey = "{}"
pop = "{}"
{extra_nodes}
[zellular]
operators_file = "ops.json"
"#,
        a.sk.public_key().to_hex(),
        a.sk.prove_possession().to_hex()
    )
}

fn node_entry(id: &str, who: &Identity, stake: &str) -> String {
    format!(
        "[[monitoring_nodes]]\nid = \"{id}\"\nurl = \"http://127.0.0.1:7002\"\npubkey = \"{}\"\npop = \"{}\"\nstake = {stake}\n",
        who.sk.public_key().to_hex(),
        who.sk.prove_possession().to_hex()
    )
}

/// (g) A configuration that would let one key be a quorum is refused, and the
/// message names the ids.
#[test]
fn a_config_that_lets_one_key_be_a_quorum_is_refused() {
    use livenessd::events::MonitorSet;
    let dir = tempfile::tempdir().unwrap();
    let load = |body: String| {
        let p = dir.path().join("node.toml");
        std::fs::write(&p, body).unwrap();
        NodeConfig::load(Some(&p), &Default::default())
    };
    let set = |cfg: NodeConfig| {
        MonitorSet::new(
            &cfg.monitoring_nodes,
            &cfg.allow_without_pop,
            cfg.threshold(),
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    // The same public key under two ids (Node1's key again, as "Sybil").
    let err = set(load(base_toml(&node_entry("Sybil", &Identity::new(1), "1"))).unwrap());
    assert!(
        err.contains("Node1") && err.contains("Sybil") && err.contains("same public key"),
        "{err}"
    );
    // Stakes whose sum overflows to infinity.
    let two_huge = base_toml(&format!(
        "{}{}",
        node_entry("Node2", &Identity::new(2), "1e308"),
        node_entry("Node3", &Identity::new(3), "1e308")
    ));
    let err = set(load(two_huge).unwrap());
    assert!(err.contains("total stake"), "{err}");
    // A stake that is not finite and > 0.
    for bad in ["0", "-1", "nan", "inf"] {
        let err = load(base_toml(&node_entry("Node2", &Identity::new(2), bad)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("monitoring_nodes[1].stake"), "{bad}: {err}");
    }
    // A threshold outside (0, 1].
    for bad in ["0", "1.5", "0/3", "3/2", "-1"] {
        let err = load(base_toml("").replace("\"2/3\"", &format!("\"{bad}\"")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("quorum_threshold"), "{bad}: {err}");
    }
    load(base_toml(&node_entry("Node2", &Identity::new(2), "2.5"))).unwrap();
}

/// (h) One changed timestamp in the SQLite file: the node refuses to start,
/// naming the row, and `livenessd audit` finds it too (exit 1); the untouched
/// replica audits clean (exit 0); an unreadable one exits 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_row_is_caught_at_start_and_by_audit() {
    let mut c = Cluster::start_manual(3, 1, Box::new(|_, _| {})).await;
    let a = Cluster::address(0);
    let events = {
        let ids: Vec<&Identity> = c.ids.iter().collect();
        json!([
            signed_event(&ids, &[], &a, "down", T0 - 90),
            signed_event(&ids, &[], &a, "up", T0 - 59),
            signed_event(&ids, &[], &a, "down", T0 - 20)
        ])
        .to_string()
    };
    c.submit(&events).await;
    c.settle().await;
    c.stop_node(2).await;
    c.stop_node(1).await;

    // The untouched replica audits clean, through the real binary.
    let cfg_path = write_audit_config(&c, 1);
    let audit = |path: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_livenessd"))
            .args(["audit", "--config"])
            .arg(path)
            .output()
            .unwrap()
    };
    let out = audit(&cfg_path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("consistent: 3 events"), "{stdout}");

    // One timestamp changed behind the node's back (81 s of downtime instead of 31).
    let db = c.config(1).database;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE events SET timestamp = timestamp - 50 WHERE seq = 2")
        .execute(&pool)
        .await
        .unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(check, "ok", "SQLite itself sees nothing wrong");
    pool.close().await;

    let err = livenessd::node::Node::open_with_clock(c.config(1), c.clock.clone())
        .await
        .err()
        .expect("a tampered replica is refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("integrity check") && msg.contains("seq 2"),
        "{msg}"
    );
    let out = audit(&cfg_path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("seq 2"), "{stdout}");

    // An audit that cannot read its input: exit 2.
    let missing = dir_with_missing_db(&c);
    assert_eq!(audit(&missing).status.code(), Some(2));
}

/// A node.toml for `livenessd audit` of node `i` of the cluster.
fn write_audit_config(c: &Cluster, i: usize) -> std::path::PathBuf {
    let cfg = c.config(i);
    let mut toml = format!(
        "node_id = \"{}\"\ndatabase = \"{}\"\nbls_key_file = \"{}\"\n",
        cfg.node_id,
        cfg.database.display(),
        cfg.bls_key_file.display()
    );
    for n in &cfg.monitoring_nodes {
        toml += &format!(
            "[[monitoring_nodes]]\nid = \"{}\"\nurl = \"{}\"\npubkey = \"{}\"\npop = \"{}\"\n",
            n.id,
            n.url,
            n.pubkey,
            n.pop.as_deref().unwrap()
        );
    }
    for t in &cfg.targets {
        toml += &format!(
            "[[targets]]\naddress = \"{}\"\nhttp = \"{}\"\n",
            t.address,
            t.http.as_deref().unwrap()
        );
    }
    toml += &format!(
        "[zellular]\noperators_file = \"{}\"\n",
        cfg.zellular.operators_file.as_ref().unwrap().display()
    );
    let path = c.dir.path().join(format!("audit{i}.toml"));
    std::fs::write(&path, toml).unwrap();
    path
}

fn dir_with_missing_db(c: &Cluster) -> std::path::PathBuf {
    let p = write_audit_config(c, 2);
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("node2.sqlite", "no-such-replica.sqlite");
    let q = c.dir.path().join("audit-missing.toml");
    std::fs::write(&q, text).unwrap();
    q
}
