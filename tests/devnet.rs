//! The real binary end to end: `livenessd devnet --demo` (separate processes, real
//! ports), then `livenessd verify` on the proof it saved, as a third party would.

use std::process::Command;

fn livenessd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_livenessd"))
}

#[test]
fn devnet_demo_then_offline_verification() {
    let dir = tempfile::tempdir().unwrap();
    let out = livenessd()
        .args([
            "devnet",
            "--demo",
            "--nodes",
            "4",
            "--targets",
            "3",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "devnet --demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("demo complete: every step held"));
    assert!(stdout.contains("all 4 replicas hold this table"));

    let proof = dir.path().join("demo-proof.json");
    let nodes = dir.path().join("nodes.json");
    // Valid: exit 0.
    let ok = livenessd()
        .arg("verify")
        .arg(&proof)
        .arg("--nodes")
        .arg(&nodes)
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("valid:"));

    // Tampered: exit 1 with the reason.
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&proof).unwrap()).unwrap();
    v["total_downtime_seconds"] =
        serde_json::json!(v["total_downtime_seconds"].as_i64().unwrap() + 1);
    let bad = dir.path().join("tampered.json");
    std::fs::write(&bad, v.to_string()).unwrap();
    let out = livenessd()
        .arg("verify")
        .arg(&bad)
        .arg("--nodes")
        .arg(&nodes)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("does not verify"));
    // Claiming a signer that did not sign: listed as signer but key absent from the aggregate.
    v["total_downtime_seconds"] =
        serde_json::json!(v["total_downtime_seconds"].as_i64().unwrap() - 1);
    v["non_signing_nodes"] = serde_json::json!(["Node1", "Node2"]);
    std::fs::write(&bad, v.to_string()).unwrap();
    let out = livenessd()
        .arg("verify")
        .arg(&bad)
        .arg("--nodes")
        .arg(&nodes)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Unreadable: exit 2.
    std::fs::write(&bad, "not json").unwrap();
    let out = livenessd()
        .arg("verify")
        .arg(&bad)
        .arg("--nodes")
        .arg(&nodes)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = livenessd()
        .arg("verify")
        .arg(&proof)
        .arg("--nodes")
        .arg(dir.path().join("missing.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // An applied event verifies too (taken from the replica's log by the demo's node).
    let log = std::fs::read_to_string(dir.path().join("node1/node.log")).unwrap();
    assert!(log.contains("event applied"), "{log}");
}
