//! The network as replicated state: monitoring nodes and targets change through
//! quorum-signed changes in the log, applied by every replica at their position;
//! proofs made under any version verify from the genesis and the change history.
//! In-process clusters on loopback; the real binary for `verify` and `network approve`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::cluster::{fast, Cluster, T0};
use common::*;
use livenessd::config::{NodeConfig, Target};
use livenessd::network::{approvals_dir, approve, Op, Proposal};
use serde_json::{json, Value};

fn livenessd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_livenessd"))
}

/// The network id every node of `c` reports (and checks that they agree).
async fn network_id(c: &Cluster) -> String {
    let id = c.get(0, "/v1/network").await.1["network"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 1..c.nodes.len() {
        if c.nodes[i].is_some() {
            assert_eq!(c.get(i, "/v1/network").await.1["network"], id.as_str());
        }
    }
    id
}

/// Every running replica holds the same log: one index, one digest (events and
/// changes), one network version — returned.
async fn replicas_agree(c: &Cluster) -> (u64, String) {
    c.settle().await;
    let first = c.position(0).await;
    for i in 1..c.nodes.len() {
        if c.nodes[i].is_none() {
            continue;
        }
        let p = c.position(i).await;
        for k in ["index", "events_digest", "network", "network_version"] {
            assert_eq!(p[k], first[k], "node {i} differs in {k}: {p} vs {first}");
        }
    }
    (
        first["network_version"].as_u64().unwrap(),
        first["events_digest"].as_str().unwrap().to_owned(),
    )
}

/// Waits until every running replica is at network version `v`.
async fn version_everywhere(c: &Cluster, v: u64) {
    for i in 0..c.nodes.len() {
        if c.nodes[i].is_none() {
            continue;
        }
        eventually(
            20,
            &format!("node {i} at network version {v}"),
            || async move { c.get(i, "/v1/network").await.1["version"].as_u64() == Some(v) },
        )
        .await;
    }
}

async fn post_sign(c: &Cluster, i: usize, p: &Proposal) -> (u16, Value) {
    let r = c
        .http
        .post(format!("http://{}/v1/network/sign", c.addrs[i]))
        .json(p)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn approve_on(cfg: &NodeConfig, p: &Proposal) {
    approve(&approvals_dir(&cfg.database), p).unwrap();
}

/// A node.toml for node `i` of `c` that names the cluster's genesis file.
fn node_toml(c: &Cluster, i: usize) -> PathBuf {
    let cfg = c.config(i);
    let path = c.dir.path().join(format!("node{i}.toml"));
    let text = format!(
        "node_id = {:?}\nlisten = {:?}\ndatabase = {:?}\nbls_key_file = {:?}\ngenesis_file = {:?}\n\
         [zellular]\ngateways = [{:?}]\noperators_file = {:?}\n",
        cfg.node_id,
        cfg.listen.to_string(),
        cfg.database,
        cfg.bls_key_file,
        c.genesis_file(),
        c.seq_url,
        cfg.zellular.operators_file.as_ref().unwrap(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn write_json(dir: &Path, name: &str, v: &impl serde::Serialize) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(v).unwrap()).unwrap();
    p
}

fn verify(args: &[&std::ffi::OsStr]) -> std::process::Output {
    livenessd().arg("verify").args(args).output().unwrap()
}

/// A fifth operator joins: it replicates from the genesis as an observer and signs
/// nothing; its addition is approved by each operator on its own node, signed by a
/// quorum and posted; every replica applies it at the same position. From then on
/// its signature counts, and a proof it took part in verifies from the history —
/// not from the genesis set alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_by_a_signed_change_joins_and_its_proofs_verify_from_the_history() {
    let mut c = Cluster::start_manual(4, 1, Box::new(|_, _| {})).await;
    let a = Cluster::address(0);
    let id = network_id(&c).await;
    let j = c.join(5).await;
    c.settle().await;

    // Before the change: same network, version 1, an observer that signs nothing.
    let h = c.get(j, "/health").await.1;
    assert_eq!(h["network"], id.as_str());
    assert_eq!(h["network_version"], 1);
    assert_eq!(h["member"], false);
    assert_eq!(c.get(0, "/health").await.1["member"], true);
    c.advance(200).await;
    let q = format!(
        "/downtime?address={a}&from_timestamp={T0}&to_timestamp={}",
        T0 + 10
    );
    let (status, v) = c.get(j, &q).await;
    assert_eq!(status, 503, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("not a monitoring node"),
        "{v}"
    );
    assert_eq!(replicas_agree(&c).await.0, 1);
    // A proof made under version 1, before any change.
    let old_q = format!(
        "/aggregate_downtime?address={a}&from_timestamp={T0}&to_timestamp={}",
        T0 + 10
    );
    let (status, old_proof) = c.get(0, &old_q).await;
    assert_eq!(status, 200, "{old_proof}");
    assert_eq!(old_proof["network_version"], 1);
    let old_proof_file = write_json(c.dir.path(), "old-proof.json", &old_proof);

    let p = Proposal {
        network: id.clone(),
        version: 2,
        changes: vec![Op::AddNode {
            node: c.monitoring_node(j),
        }],
    };
    // Without its operator's approval a node does not sign.
    let (status, v) = post_sign(&c, 0, &p).await;
    assert_eq!(status, 403, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("network approve"),
        "{v}"
    );

    // Each operator approves on its own node (node 1's with the CLI), then one
    // proposes: its node gathers the signatures and posts the change.
    let change_file = write_json(c.dir.path(), "change.json", &p);
    let out = livenessd()
        .args(["network", "approve", "--config"])
        .arg(node_toml(&c, 1))
        .arg(&change_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&p.hash()));
    for i in [0, 2, 3] {
        approve_on(&c.config(i), &p);
    }
    let signed = livenessd::propose::propose(&c.config(0), &p, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(signed.non_signing_nodes.is_empty(), "{signed:?}");
    version_everywhere(&c, 2).await;
    assert_eq!(replicas_agree(&c).await.0, 2);
    assert_eq!(c.get(j, "/health").await.1["member"], true);
    assert_eq!(
        c.get(0, "/v1/network").await.1["monitoring_nodes"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    // The change is recorded once, at one position, on every replica.
    let hist = c.get(j, "/v1/network/history").await.1;
    assert_eq!(hist["changes"].as_array().unwrap().len(), 1, "{hist}");
    for i in 0..4 {
        assert_eq!(c.get(i, "/v1/network/history").await.1, hist);
    }

    // An event signed by all five applies everywhere, under version 2.
    let now = c.clock.now();
    let ids: Vec<&Identity> = c.ids.iter().collect();
    c.submit(&json!([signed_event(&ids, &[], &a, "down", now + 1)]).to_string())
        .await;
    c.clock.advance(20);
    let ids: Vec<&Identity> = c.ids.iter().collect();
    c.submit(&json!([signed_event(&ids, &[], &a, "up", now + 21)]).to_string())
        .await;
    c.settle().await;
    for i in 0..c.nodes.len() {
        let ev = c.items(i, &format!("/v1/events?address={a}")).await;
        assert_eq!(ev.len(), 2, "node {i}: {ev:?}");
        assert!(ev.iter().all(|e| e["network_version"] == 2), "{ev:?}");
    }
    c.advance(200).await;

    // The new member signs; a quorum proof under version 2 verifies from the history.
    let q = format!(
        "/downtime?address={a}&from_timestamp={now}&to_timestamp={}",
        now + 60
    );
    let (status, own) = c.get(j, &q).await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["total_downtime_seconds"], 20);
    assert_eq!(own["network_version"], 2);
    let q = format!(
        "/aggregate_downtime?address={a}&from_timestamp={now}&to_timestamp={}",
        now + 60
    );
    let (status, proof) = c.get(j, &q).await;
    assert_eq!(status, 200, "{proof}");
    assert_eq!(proof["total_downtime_seconds"], 20);
    assert_eq!(proof["network_version"], 2);
    let proof_file = write_json(c.dir.path(), "proof.json", &proof);
    let hist_file = write_json(
        c.dir.path(),
        "history.json",
        &c.get(0, "/v1/network/history").await.1,
    );
    let out = verify(&[
        proof_file.as_os_str(),
        "--network".as_ref(),
        hist_file.as_os_str(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The proof made before the change verifies from the same history.
    let out = verify(&[
        old_proof_file.as_os_str(),
        "--network".as_ref(),
        hist_file.as_os_str(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The genesis set alone does not make the new one valid (it does the old one).

    let genesis_nodes: Vec<_> = (0..4).map(|i| c.monitoring_node(i)).collect();
    let nodes_file = c.dir.path().join("nodes.json");
    std::fs::write(
        &nodes_file,
        livenessd::config::reference_nodes_json(&genesis_nodes),
    )
    .unwrap();
    let out = verify(&[
        proof_file.as_os_str(),
        "--nodes".as_ref(),
        nodes_file.as_os_str(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = verify(&[
        old_proof_file.as_os_str(),
        "--nodes".as_ref(),
        nodes_file.as_os_str(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Nor does a history whose change was tampered with.
    let mut forged: Value =
        serde_json::from_str(&std::fs::read_to_string(&hist_file).unwrap()).unwrap();
    forged["changes"][0]["change"]["changes"][0]["node"]["stake"] = json!(100.0);
    let forged_file = write_json(c.dir.path(), "forged.json", &forged);
    let out = verify(&[
        proof_file.as_os_str(),
        "--network".as_ref(),
        forged_file.as_os_str(),
    ]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A node started later from the genesis alone replays the change from index 0
    // and ends with the same log, version and digest.
    let late = c.join(6).await;
    c.settle().await;
    assert_eq!(c.get(late, "/v1/network").await.1["version"], 2);
    replicas_agree(&c).await;

    // The joined node restarts from its own database at version 2.
    c.stop_node(j).await;
    c.restart_node(j).await;
    eventually(20, "the joined node is back", || async {
        c.get(j, "/health").await.1["network_version"] == 2
    })
    .await;
    replicas_agree(&c).await;
}

/// A node removed by a change stops counting exactly at the change's position: in
/// one batch, an event signed with its key before the change applies and the
/// same signature after it does not; the remaining nodes alone are a quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_no_longer_counts_from_the_changes_position_in_the_log() {
    let c = Cluster::start_manual(4, 1, Box::new(|_, _| {})).await;
    let a = Cluster::address(0);
    let id = network_id(&c).await;
    let all: Vec<&Identity> = c.ids.iter().collect();
    let three: Vec<&Identity> = c.ids.iter().take(3).collect();
    let p = Proposal {
        network: id,
        version: 2,
        changes: vec![Op::RemoveNode { id: "Node4".into() }],
    };
    let rejected = c
        .metric(
            0,
            "livenessd_events_rejected_total{reason=\"bad_signature\"}",
        )
        .await;
    c.submit(
        &json!([
            signed_event(&all, &[], &a, "down", T0 + 1),
            signed_change(&all, &[], &p),
            signed_event(&all, &[], &a, "up", T0 + 5),
        ])
        .to_string(),
    )
    .await;
    version_everywhere(&c, 2).await;
    c.submit(&json!([signed_event(&three, &[], &a, "up", T0 + 6)]).to_string())
        .await;
    replicas_agree(&c).await;
    for i in 0..4 {
        let ev = c.items(i, &format!("/v1/events?address={a}")).await;
        assert_eq!(ev.len(), 2, "node {i}: {ev:?}");
        assert_eq!(
            (&ev[0]["state"], &ev[0]["network_version"]),
            (&json!("down"), &json!(1))
        );
        assert_eq!(
            (&ev[1]["state"], &ev[1]["timestamp"]),
            (&json!("up"), &json!(T0 + 6))
        );
        assert_eq!(ev[1]["network_version"], 2);
    }
    // Refused on every replica (the registry is the test process's: all four count).
    let now = c
        .metric(
            0,
            "livenessd_events_rejected_total{reason=\"bad_signature\"}",
        )
        .await;
    assert!(now - rejected >= 4.0, "{rejected} → {now}");
    // Naming the removed node as a non-signer does not help either: it is unknown.
    c.submit(&json!([signed_event(&three, &["Node4"], &a, "down", T0 + 8)]).to_string())
        .await;
    c.advance(200).await;
    for i in 0..4 {
        assert_eq!(
            c.items(i, &format!("/v1/events?address={a}")).await.len(),
            2
        );
    }
    // The removed node still replicates, and signs nothing.
    let q = format!(
        "/downtime?address={a}&from_timestamp={T0}&to_timestamp={}",
        T0 + 10
    );
    assert_eq!(c.get(3, &q).await.0, 503);
    let (status, v) = c.get(0, &q).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["total_downtime_seconds"], 5);
}

/// A change is signed only where its operator approved exactly it, for this
/// network and the next version: without a quorum of approvals nothing is posted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_without_a_quorum_of_approvals_is_never_posted() {
    let c = Cluster::start_manual(4, 1, Box::new(|_, _| {})).await;
    let id = network_id(&c).await;
    let extra = FakeTarget::start();
    let p = Proposal {
        network: id.clone(),
        version: 2,
        changes: vec![Op::AddTarget {
            target: Target {
                address: "0xAdded".into(),
                http: Some(extra.url.clone()),
                tcp: None,
            },
        }],
    };
    for i in 0..4 {
        assert_eq!(post_sign(&c, i, &p).await.0, 403);
    }
    // Approved on two of four: below two thirds of the stake.
    approve_on(&c.config(0), &p);
    approve_on(&c.config(1), &p);
    let err = livenessd::propose::propose(&c.config(0), &p, Duration::from_secs(5))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no quorum"), "{err}");
    // Approval covers exactly one proposal: another version, network or content is
    // not signed.
    let wrong_version = Proposal {
        version: 3,
        ..p.clone()
    };
    approve_on(&c.config(0), &wrong_version);
    assert_eq!(post_sign(&c, 0, &wrong_version).await.0, 422);
    let other_network = Proposal {
        network: "0".repeat(64),
        ..p.clone()
    };
    approve_on(&c.config(0), &other_network);
    assert_eq!(post_sign(&c, 0, &other_network).await.0, 422);
    let other_content = Proposal {
        changes: vec![Op::SetThreshold {
            quorum_threshold: "1/4".into(),
        }],
        ..p.clone()
    };
    assert_eq!(post_sign(&c, 0, &other_content).await.0, 403);
    // An invalid network (a threshold that is no fraction) is refused even approved.
    let invalid = Proposal {
        changes: vec![Op::SetThreshold {
            quorum_threshold: "lots".into(),
        }],
        ..p.clone()
    };
    approve_on(&c.config(0), &invalid);
    assert_eq!(post_sign(&c, 0, &invalid).await.0, 422);
    c.advance(5).await;
    assert_eq!(replicas_agree(&c).await.0, 1);

    // A third approval makes the quorum; the node that did not approve is named.
    approve_on(&c.config(2), &p);
    let signed = livenessd::propose::propose(&c.config(0), &p, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(signed.non_signing_nodes, vec!["Node4".to_owned()]);
    version_everywhere(&c, 2).await;
    assert_eq!(replicas_agree(&c).await.0, 2);
    // The node that did not approve still follows the network: it is the log's.
    let targets = c.get(3, "/v1/network").await.1["targets"].clone();
    assert!(
        targets
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["address"] == "0xAdded"),
        "{targets}"
    );
}

/// Changes that are replayed, out of order, for another network, forged or
/// signed by too few are refused by every replica, counted by reason, and leave
/// every replica at the same version and digest; a valid one posted twice
/// applies once. Events for an address apply only from the change that adds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_changes_are_refused_alike_on_every_replica_and_a_good_one_applies_once() {
    let c = Cluster::start_manual(4, 1, Box::new(|_, _| {})).await;
    let id = network_id(&c).await;
    let all: Vec<&Identity> = c.ids.iter().collect();
    let extra = FakeTarget::start();
    let add = |address: &str, version: u64, network: &str| Proposal {
        network: network.to_owned(),
        version,
        changes: vec![Op::AddTarget {
            target: Target {
                address: address.into(),
                http: Some(extra.url.clone()),
                tcp: None,
            },
        }],
    };
    let reasons = [
        "change_out_of_order",
        "change_other_network",
        "change_bad_proof",
        "change_replayed",
        "unknown_address",
    ];
    let series = |r: &str| format!("livenessd_events_rejected_total{{reason=\"{r}\"}}");
    let mut before = Vec::new();
    for r in reasons {
        before.push(c.metric(0, &series(r)).await);
    }
    let duplicates = c.metric(0, "livenessd_events_duplicate_total").await;

    let good = add("0xAdded", 2, &id);
    c.submit(
        &json!([
            signed_change(&all, &[], &add("0xAdded", 3, &id)),
            signed_change(&all, &[], &add("0xAdded", 2, &"f".repeat(64))),
            // Signed by one node, claimed as all four.
            signed_change(&all[..1], &[], &good),
            // Two of four, honestly: below the threshold.
            signed_change(&all[..2], &["Node3", "Node4"], &good),
            signed_event(&all, &[], "0xAdded", "down", T0 + 1),
            signed_change(&all, &[], &good),
            signed_event(&all, &[], "0xAdded", "down", T0 + 2),
        ])
        .to_string(),
    )
    .await;
    version_everywhere(&c, 2).await;
    // Posted again (as a second proposer would), and a different version 2.
    c.submit(
        &json!([
            signed_change(&all, &[], &good),
            signed_change(&all, &[], &add("0xOther", 2, &id)),
        ])
        .to_string(),
    )
    .await;
    c.advance(5).await;
    let (version, _) = replicas_agree(&c).await;
    assert_eq!(version, 2);
    for i in 0..4 {
        let hist = c.get(i, "/v1/network/history").await.1;
        assert_eq!(
            hist["changes"].as_array().unwrap().len(),
            1,
            "node {i}: {hist}"
        );
        let ev = c.items(i, "/v1/events?address=0xAdded").await;
        assert_eq!(ev.len(), 1, "node {i}: {ev:?}");
        assert_eq!(ev[0]["timestamp"], T0 + 2);
        let t = c.get(i, "/v1/network").await.1;
        assert!(!t["targets"].to_string().contains("0xOther"));
    }
    // Each refusal, on each of the four replicas (one registry for the process).
    let want = [1.0, 1.0, 2.0, 1.0, 1.0];
    for (k, r) in reasons.iter().enumerate() {
        let now = c.metric(0, &series(r)).await;
        assert!(
            now - before[k] >= 4.0 * want[k],
            "{r}: {} → {now}",
            before[k]
        );
    }
    assert!(c.metric(0, "livenessd_events_duplicate_total").await - duplicates >= 4.0);

    // The history is paginated like every list: one change a page, following
    // `next`, is the whole history; one page alone is refused by `verify`.
    c.submit(&json!([signed_change(&all, &[], &add("0xOther", 3, &id))]).to_string())
        .await;
    c.advance(5).await;
    assert_eq!(replicas_agree(&c).await.0, 3);
    let whole = c.get(0, "/v1/network/history").await.1;
    assert_eq!(whole["changes"].as_array().unwrap().len(), 2, "{whole}");
    assert!(whole["next"].is_null());
    let first = c.get(0, "/v1/network/history?limit=1").await.1;
    assert_eq!(first["changes"].as_array().unwrap().len(), 1);
    assert_eq!(first["next"], "2");
    let second = c.get(0, "/v1/network/history?limit=1&cursor=2").await.1;
    assert!(second["next"].is_null());
    assert_eq!(
        json!([first["changes"][0], second["changes"][0]]),
        whole["changes"]
    );
    assert_eq!(c.get(0, "/v1/network/history?cursor=x").await.0, 400);
    let page: livenessd::network::history::History = serde_json::from_value(first).unwrap();
    let why = page.replay().unwrap_err().to_string();
    assert!(why.contains("one page"), "{why}");
}

fn state_q(c: &Cluster) -> String {
    format!("/state?address=0xAdded&timestamp={}", c.clock.now())
}

/// A target added while the network runs is probed by every node from the
/// change on, its outage is proven by a quorum and applied by every replica; once
/// removed, its recorded history stays answerable and it is probed no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_added_while_running_is_probed_and_its_outage_proven_everywhere() {
    let c = Cluster::start_with(
        3,
        1,
        Box::new(|_, cfg| {
            fast(cfg);
            cfg.aggregator = true;
        }),
    )
    .await;
    let c = &c;
    c.settle().await;
    let id = network_id(c).await;
    let added = FakeTarget::start();
    added.set(503);
    let all: Vec<&Identity> = c.ids.iter().collect();
    assert_eq!(c.get(0, &state_q(c)).await.0, 404);
    let add = Proposal {
        network: id.clone(),
        version: 2,
        changes: vec![Op::AddTarget {
            target: Target {
                address: "0xAdded".into(),
                http: Some(added.url.clone()),
                tcp: None,
            },
        }],
    };
    c.submit(&json!([signed_change(&all, &[], &add)]).to_string())
        .await;
    version_everywhere(c, 2).await;
    for i in 0..3 {
        eventually(
            20,
            &format!("node {i} applies the outage of 0xAdded"),
            || async move {
                let ev = c.items(i, "/v1/events?address=0xAdded").await;
                ev.first()
                    .is_some_and(|e| e["state"] == "down" && e["network_version"] == 2)
            },
        )
        .await;
    }
    let (status, v) = c.get(1, &state_q(c)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "down");

    let remove = Proposal {
        network: id,
        version: 3,
        changes: vec![Op::RemoveTarget {
            address: "0xAdded".into(),
        }],
    };
    c.submit(&json!([signed_change(&all, &[], &remove)]).to_string())
        .await;
    version_everywhere(c, 3).await;
    replicas_agree(c).await;
    for i in 0..3 {
        // No longer probed on demand; still listed in history.
        assert_eq!(c.get(i, &state_q(c)).await.0, 404);
        let ev = c.items(i, "/v1/events?address=0xAdded").await;
        assert_eq!(ev.len(), 1, "node {i}: {ev:?}");
    }
    // Recovering now is not news: nobody posts for an address no longer monitored.
    added.set(200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..3 {
        assert_eq!(c.items(i, "/v1/events?address=0xAdded").await.len(), 1);
    }
}

/// A replica belongs to one network: a node whose genesis differs from the one
/// its database was made with is refused at start, saying how to change a network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_another_network_is_refused_at_start() {
    let mut c = Cluster::start_manual(3, 1, Box::new(|_, _| {})).await;
    c.settle().await;
    c.stop_node(0).await;
    let mut cfg = c.config(0);
    cfg.quorum_threshold = "3/4".into();
    let err = livenessd::node::Node::open_with_clock(cfg, c.clock.clone())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("belongs to network"), "{err}");
    assert!(err.contains("network propose"), "{err}");
    // With its own genesis it starts again.
    c.restart_node(0).await;
    replicas_agree(&c).await;
}
