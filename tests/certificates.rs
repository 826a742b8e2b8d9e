//! Epoch certificates: one signed table per settled epoch, identical on every
//! replica, checkable offline (livenessd verify, blspy + hashlib), and the exports
//! made from them. In-process clusters on loopback with a manual clock.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::cluster::{Cluster, T0};
use common::*;
use livenessd::certificate::{Certificate, Row, Statement, Table};
use livenessd::crypto::bls::Signature;
use livenessd::export::{Curve, RewardsSpec, StrategyAndMultiplier};
use serde_json::{json, Value};

const DAY: i64 = 86_400;

/// The targets as operator addresses (what rewards pay).
fn operator(t: usize) -> String {
    format!("0x{:040x}", 0xa0 + t)
}

fn day_epochs(i: usize, cfg: &mut livenessd::config::NodeConfig) {
    let _ = i;
    cfg.epoch.length_secs = DAY as u64;
    cfg.epoch.min_uptime_ppm = 990_000;
    for (t, target) in cfg.targets.iter_mut().enumerate() {
        target.address = operator(t);
    }
}

fn livenessd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_livenessd"))
}

fn write(c: &Cluster, name: &str, v: &Value) -> PathBuf {
    let p = c.dir.path().join(name);
    std::fs::write(&p, serde_json::to_string_pretty(v).unwrap()).unwrap();
    p
}

/// Runs `cmd`: its exit code and everything it printed.
fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `livenessd verify FILE ARGS…`: exit code and output.
fn verify(file: &std::path::Path, args: &[&std::ffi::OsStr]) -> (i32, String) {
    run(livenessd().arg("verify").arg(file).args(args))
}

/// The documented message, written out here from its specification.
fn documented_message(c: &Value) -> String {
    format!(
        "livenessd-epoch-certificate:v1:{}:{}:{}:{}:{}:{}:{}",
        s(&c["network"]),
        c["network_version"],
        c["epoch"],
        c["start"],
        c["end"],
        c["rows"],
        s(&c["root"])
    )
}

/// Signs `st` with `signers` (a certificate any quorum could post).
fn certificate(signers: &[&Identity], nonsigners: &[&str], st: &Statement) -> Value {
    let msg = st.message();
    let sigs: Vec<Signature> = signers.iter().map(|i| i.sk.sign(msg.as_bytes())).collect();
    serde_json::to_value(Certificate::new(
        st.clone(),
        Signature::aggregate(&sigs).unwrap().to_hex(),
        nonsigners.iter().map(|s| s.to_string()).collect(),
    ))
    .unwrap()
}

async fn rejected(c: &Cluster, reason: &str) -> f64 {
    c.metric(
        0,
        &format!("livenessd_events_rejected_total{{reason=\"{reason}\"}}"),
    )
    .await
}

/// A day of history on four replicas (operator 0 down 10 % of its monitored time,
/// operator 2 down 0.5 %, operator 1 never); the day's table signed by every node
/// on request; certificates that are for another network or version, under too
/// little stake, of a wrong root, of an unsettled epoch or with wrong bounds are
/// refused by every replica; the first valid one is stored everywhere and a later
/// one is a no-op; the certificate, every row's inclusion proof and a tampered row
/// are checked by `livenessd verify` and by blspy + hashlib; the exports follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certified_day_is_identical_everywhere_and_checks_offline() {
    let c = Cluster::start_manual(4, 3, Box::new(day_epochs)).await;
    let ids: Vec<&Identity> = c.ids.iter().collect();
    let net = c.get(0, "/v1/network").await.1["network"]
        .as_str()
        .unwrap()
        .to_owned();
    let (a0, a2) = (operator(0), operator(2));
    // Epoch n holds T0; monitoring starts with the first batch, at T0.
    let n = T0.div_euclid(DAY);
    let (start, end) = (n * DAY, (n + 1) * DAY);
    let monitored = end - T0;
    c.submit(
        &json!([
            signed_event(&ids, &[], &a0, "down", T0 + 10),
            signed_event(&ids, &[], &a2, "down", T0 + 5),
        ])
        .to_string(),
    )
    .await;
    // (Applied before the clock moves: their sync points carry T0.)
    c.settle().await;
    c.advance(288).await;
    c.submit(&json!([signed_event(&ids, &[], &a2, "up", T0 + 293)]).to_string())
        .await;
    c.settle().await;
    c.advance(5_760 - 288).await;
    c.submit(&json!([signed_event(&ids, &[], &a0, "up", T0 + 5_770)]).to_string())
        .await;
    c.settle().await;

    // Not settled yet: no node signs the day.
    let sig_path = format!("/v1/certificates/epochs/{n}/signature");
    let (status, v) = c.get(0, &sig_path).await;
    assert_eq!(status, 425, "{v}");
    assert_eq!(
        c.get(0, &format!("/v1/certificates/epochs/{n}")).await.0,
        404
    );
    // Before monitoring began there is nothing to certify, ever; no epoch -1.
    for path in [
        format!("/v1/certificates/epochs/{}", n - 1),
        format!("/v1/certificates/epochs/{}/signature", n - 1),
    ] {
        let (status, v) = c.get(0, &path).await;
        assert_eq!(status, 404, "{path}: {v}");
        assert!(
            v["detail"].as_str().unwrap().contains("never certified"),
            "{v}"
        );
    }
    for path in [
        "/v1/certificates/epochs/-1",
        "/v1/certificates/epochs/-1/signature",
        "/v1/epochs/-1",
    ] {
        assert_eq!(c.get(0, path).await.0, 400, "{path}");
    }

    // The day ends and settles (max_event_age 120 s).
    c.advance(end - c.clock.now() + 130).await;
    let mut statements = Vec::new();
    for i in 0..4 {
        let (status, v) = c.get(i, &sig_path).await;
        assert_eq!(status, 200, "node {i}: {v}");
        statements.push(v);
    }
    let st: Statement = serde_json::from_value(statements[0].clone()).unwrap();
    for v in &statements {
        let other: Statement = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(other, st, "every node signs the same table");
    }
    assert_eq!(
        (
            st.network.as_str(),
            st.network_version,
            st.epoch,
            st.start,
            st.end,
            st.rows
        ),
        (net.as_str(), 1, n, start, end, 3)
    );

    // Bad certificates, each refused by every replica.
    let reasons = [
        "certificate_bad_proof",
        "certificate_other_network",
        "certificate_wrong_root",
        "certificate_wrong_version",
        "certificate_unsettled",
        "certificate_invalid",
    ];
    let mut before = Vec::new();
    for r in reasons {
        before.push(rejected(&c, r).await);
    }
    let other_network = Statement {
        network: "f".repeat(64),
        ..st.clone()
    };
    let wrong_root = Statement {
        root: "0".repeat(64),
        ..st.clone()
    };
    let wrong_version = Statement {
        network_version: 2,
        ..st.clone()
    };
    let unsettled = Statement {
        epoch: n + 1,
        start: end,
        end: end + DAY,
        ..st.clone()
    };
    let bad_bounds = Statement {
        end: end - 1,
        ..st.clone()
    };
    c.submit(
        &json!([
            // Two of four: below two thirds.
            certificate(&ids[..2], &["Node3", "Node4"], &st),
            certificate(&ids, &[], &other_network),
            certificate(&ids, &[], &wrong_root),
            certificate(&ids, &[], &wrong_version),
            certificate(&ids, &[], &unsettled),
            certificate(&ids, &[], &bad_bounds),
        ])
        .to_string(),
    )
    .await;
    c.advance(1).await;
    for (k, r) in reasons.iter().enumerate() {
        let now = rejected(&c, r).await;
        assert!(now - before[k] >= 4.0, "{r}: {} → {now}", before[k]);
    }
    assert_eq!(
        c.get(2, &format!("/v1/certificates/epochs/{n}")).await.0,
        404
    );

    // The nodes' own signatures, aggregated (three of four): the first valid one.
    let sigs: Vec<Signature> = statements[..3]
        .iter()
        .map(|v| Signature::from_hex(s(&v["signature"])).unwrap())
        .collect();
    let first = serde_json::to_value(Certificate::new(
        st.clone(),
        Signature::aggregate(&sigs).unwrap().to_hex(),
        vec!["Node4".into()],
    ))
    .unwrap();
    c.submit(&json!([first]).to_string()).await;
    // A second one (all four) is a no-op.
    c.submit(&json!([certificate(&ids, &[], &st)]).to_string())
        .await;
    c.advance(1).await;
    let mut answers = Vec::new();
    for i in 0..4 {
        let (status, v) = c.get(i, &format!("/v1/certificates/epochs/{n}")).await;
        assert_eq!(status, 200, "node {i}: {v}");
        answers.push(v);
        let list = c.items(i, "/v1/certificates").await;
        assert_eq!(list.len(), 1, "node {i}: {list:?}");
    }
    let cert = answers[0]["certificate"].clone();
    assert_eq!(cert, first, "the first valid certificate is kept");
    for v in &answers {
        assert_eq!(v["certificate"], cert);
        assert_eq!(v["items"], answers[0]["items"]);
    }
    let rows: Vec<Row> = serde_json::from_value(answers[0]["items"].clone()).unwrap();
    let addrs: Vec<&str> = rows.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(addrs, [operator(0), operator(1), operator(2)]);
    assert_eq!(
        (
            rows[0].monitored_seconds,
            rows[0].downtime_seconds,
            rows[0].outages
        ),
        (monitored, 5_760, 1)
    );
    assert_eq!(
        rows[0].uptime_ppm,
        ((monitored - 5_760) * 1_000_000 / monitored) as u64
    );
    assert!(rows[0].breached);
    assert_eq!(
        (
            rows[1].downtime_seconds,
            rows[1].uptime_ppm,
            rows[1].breached
        ),
        (0, 1_000_000, false)
    );
    assert_eq!(
        (rows[2].downtime_seconds, rows[2].outages, rows[2].breached),
        (288, 1, false)
    );
    assert_eq!(
        Table::new(n, start, end, rows.clone()).root(),
        s(&cert["root"])
    );

    // Offline: the whole table, and every row with its proof.
    let whole = write(
        &c,
        "certificate.json",
        &json!({"certificate": cert, "rows": answers[0]["items"]}),
    );
    let nodes = c.dir.path().join("nodes.json");
    let genesis_nodes: Vec<_> = (0..4).map(|i| c.monitoring_node(i)).collect();
    std::fs::write(
        &nodes,
        livenessd::config::reference_nodes_json(&genesis_nodes),
    )
    .unwrap();
    let (code, out) = verify(&whole, &["--nodes".as_ref(), nodes.as_os_str()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 rows (1 breached)"), "{out}");
    // One page of rows is not the table: said so, not called invalid.
    let page = c
        .get(0, &format!("/v1/certificates/epochs/{n}?limit=1"))
        .await
        .1;
    assert!(page["next"].is_string(), "{page}");
    let page = write(&c, "page.json", &page);
    let (code, out) = verify(&page, &["--nodes".as_ref(), nodes.as_os_str()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("one page"), "{out}");
    let history = write(&c, "history.json", &c.get(3, "/v1/network/history").await.1);
    let (code, out) = verify(&whole, &["--network".as_ref(), history.as_os_str()]);
    assert_eq!(code, 0, "{out}");
    let mut blspy = Vec::new();
    let signer_keys: Vec<String> = c.ids[..3]
        .iter()
        .map(|i| i.sk.public_key().to_hex())
        .collect();
    blspy.push(json!({
        "kind": "epoch_certificate", "message": documented_message(&cert),
        "public_keys": signer_keys, "signature": cert["aggregated_signature"],
        "certificate": cert, "rows": answers[0]["items"],
    }));
    for r in &rows {
        let (status, p) = c
            .get(
                1,
                &format!("/v1/certificates/epochs/{n}/proof?address={}", r.address),
            )
            .await;
        assert_eq!(status, 200, "{p}");
        assert_eq!(p["row"], serde_json::to_value(r).unwrap());
        let file = write(&c, "row.json", &p);
        let (code, out) = verify(&file, &["--nodes".as_ref(), nodes.as_os_str()]);
        assert_eq!(code, 0, "{out}");
        blspy.push(json!({
            "kind": "epoch_certificate_row", "message": documented_message(&cert),
            "public_keys": signer_keys, "signature": cert["aggregated_signature"],
            "certificate": cert, "row": p["row"], "proof": p["proof"],
        }));
        // A tampered row does not prove.
        let mut bad = p.clone();
        bad["row"]["outages"] = json!(r.outages + 1);
        let file = write(&c, "bad-row.json", &bad);
        let (code, out) = verify(&file, &["--nodes".as_ref(), nodes.as_os_str()]);
        assert_eq!(code, 1, "{out}");
    }
    blspy_check(&blspy);
    assert_eq!(
        c.get(
            0,
            &format!("/v1/certificates/epochs/{n}/proof?address=0xnobody")
        )
        .await
        .0,
        404
    );
    // A tampered table, a wrong root and too little stake are invalid.
    let mut bad_rows = answers[0]["items"].clone();
    bad_rows[0]["outages"] = json!(0);
    let file = write(
        &c,
        "bad-table.json",
        &json!({"certificate": cert, "rows": bad_rows}),
    );
    assert_eq!(verify(&file, &["--nodes".as_ref(), nodes.as_os_str()]).0, 1);
    let mut bad_cert = cert.clone();
    bad_cert["root"] = json!("0".repeat(64));
    let file = write(&c, "bad-root.json", &json!({"certificate": bad_cert}));
    assert_eq!(verify(&file, &["--nodes".as_ref(), nodes.as_os_str()]).0, 1);
    let weak = certificate(&ids[..2], &["Node3", "Node4"], &st);
    let file = write(&c, "weak.json", &weak);
    assert_eq!(verify(&file, &["--nodes".as_ref(), nodes.as_os_str()]).0, 1);
    let foreign = write(&c, "foreign.json", &certificate(&ids, &[], &other_network));
    assert_eq!(
        verify(&foreign, &["--network".as_ref(), history.as_os_str()]).0,
        1
    );

    // Exports from the certified day.
    let url = format!("http://{}", c.addrs[0]);
    let (network, epochs) = livenessd::export::fetch(&url, n, n, None).await.unwrap();
    assert_eq!(network, net);
    let spec = RewardsSpec {
        token: operator(100),
        strategies: vec![StrategyAndMultiplier {
            strategy: operator(200),
            multiplier: "1000000000000000000".into(),
        }],
        total: 1_000_000_000_000_000_000_000,
        curve: Curve {
            floor_ppm: 900_000,
            exponent: 2,
        },
        now: end + 1,
    };
    let (sub, notes) = livenessd::export::rewards(&network, &epochs, &spec).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let sum: u128 = sub
        .operator_rewards
        .iter()
        .map(|r| r.amount.parse::<u128>().unwrap())
        .sum();
    assert_eq!(sum, spec.total);
    let ops: Vec<&str> = sub
        .operator_rewards
        .iter()
        .map(|r| r.operator.as_str())
        .collect();
    assert!(ops.windows(2).all(|w| w[0] < w[1]), "{ops:?}");
    assert_eq!((sub.start_timestamp, sub.duration), (start, DAY));
    assert!(sub.description.contains(s(&cert["root"])));
    // The day is not over yet for the wall clock of this test's T0 + a year.
    let sla = livenessd()
        .args([
            "export",
            "sla",
            "--node",
            &url,
            "--from-epoch",
            &n.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        sla.status.success(),
        "{}",
        String::from_utf8_lossy(&sla.stderr)
    );
    let csv = String::from_utf8(sla.stdout).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.contains(s(&cert["root"])), "{csv}");
    assert!(
        csv.lines().nth(1).unwrap().starts_with(&operator(0)),
        "{csv}"
    );
    // Audited offline, a stored certificate checks out; its rows edited behind the
    // node's back do not.
    let mut c = c;
    c.stop_node(2).await;
    c.stop_node(3).await;
    let audit = |i: usize| {
        let cfg = c.config(i);
        let toml = format!(
            "node_id = {:?}\ndatabase = {:?}\nbls_key_file = {:?}\ngenesis_file = {:?}\n\
             [zellular]\noperators_file = {:?}\n",
            cfg.node_id,
            cfg.database,
            cfg.bls_key_file,
            c.genesis_file(),
            cfg.zellular.operators_file.unwrap()
        );
        let path = c.dir.path().join(format!("audit{i}.toml"));
        std::fs::write(&path, toml).unwrap();
        run(livenessd().args(["audit", "--config"]).arg(&path))
    };
    let (code, out) = audit(2);
    assert_eq!(code, 0, "{out}");
    let db = c.config(3).database;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE certificates SET rows = replace(rows, '\"outages\":1', '\"outages\":0')")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (code, out) = audit(3);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("certificate of epoch {n}")), "{out}");
    // A replica restarted from its file serves the same certificate.
    c.restart_node(2).await;
    eventually(20, "node 2 is back", || async {
        c.get(2, &format!("/v1/certificates/epochs/{n}")).await.1 == answers[0]
    })
    .await;
}

/// Two aggregators race for every settled epoch: each epoch gets exactly one
/// stored certificate, the same on every replica, and nothing before monitoring
/// began is certified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_aggregators_store_one_certificate_per_epoch() {
    let c = Cluster::start_manual(
        4,
        2,
        Box::new(|i, cfg| {
            cfg.epoch.length_secs = 100;
            cfg.aggregator = i < 2;
            cfg.aggregation.rank_step_ms = 0;
            cfg.aggregation.start_jitter_ms = 0;
            cfg.aggregation.reconcile_interval_ms = 100;
        }),
    )
    .await;
    let c = &c;
    let a = Cluster::address(1);
    let n = T0 / 100;
    // The aggregators see the target go down at T0 and come back at T0 + 30.
    c.targets[1].set(503);
    let events = |i: usize| {
        let a = a.clone();
        async move { c.items(i, &format!("/v1/events?address={a}")).await }
    };
    for i in 0..4 {
        eventually(
            20,
            "down applied",
            || async move { events(i).await.len() == 1 },
        )
        .await;
    }
    c.advance(30).await;
    c.targets[1].set(200);
    for i in 0..4 {
        eventually(
            20,
            "up applied",
            || async move { events(i).await.len() == 2 },
        )
        .await;
    }
    let ev = events(0).await;
    let down_for = ev[1]["timestamp"].as_i64().unwrap() - ev[0]["timestamp"].as_i64().unwrap();
    assert!(down_for > 0);
    // Epochs of 100 s from 0 (T0 starts one); two whole epochs settle.
    c.advance(T0 + 200 + 121 - c.clock.now()).await;
    for i in 0..4 {
        eventually(
            30,
            &format!("node {i} stores epochs {n} and {}", n + 1),
            || async move { c.items(i, "/v1/certificates").await.len() == 2 },
        )
        .await;
    }
    let mut seen = Vec::new();
    for i in 0..4 {
        let list = c.items(i, "/v1/certificates").await;
        assert_eq!(list[0]["epoch"], n, "{list:?}");
        assert_eq!(list[1]["epoch"], n + 1);
        let (_, v) = c.get(i, &format!("/v1/certificates/epochs/{n}")).await;
        seen.push(v);
    }
    for v in &seen {
        assert_eq!(v["certificate"], seen[0]["certificate"]);
        assert_eq!(v["zellular_index"], seen[0]["zellular_index"]);
    }
    let rows = seen[0]["items"].as_array().unwrap();
    let down = rows.iter().find(|r| r["address"] == a.as_str()).unwrap();
    assert_eq!(
        (down["downtime_seconds"].as_i64(), down["outages"].as_u64()),
        (Some(down_for), Some(1))
    );
    // More posts than stored certificates is fine; a second store never happens.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..4 {
        assert_eq!(c.items(i, "/v1/certificates").await.len(), 2);
    }
}
