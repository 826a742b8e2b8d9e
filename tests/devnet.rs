//! The real binary end to end: `livenessd devnet --demo` (separate processes, real
//! ports), then `livenessd verify` on the proof it saved, as a third party would.

use std::process::Command;

/// The devnets of these tests pick free ports for their processes; running them one
/// at a time keeps them from picking each other's.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `livenessd verify FILE --nodes NODES`.
fn verify(
    file: impl AsRef<std::ffi::OsStr>,
    nodes: impl AsRef<std::ffi::OsStr>,
) -> std::process::Output {
    livenessd()
        .arg("verify")
        .arg(file)
        .arg("--nodes")
        .arg(nodes)
        .output()
        .unwrap()
}

fn livenessd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_livenessd"))
}

#[test]
fn devnet_demo_then_offline_verification() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
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
    let ok = verify(&proof, &nodes);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("valid:"));
    // The certificate of the outage's epoch, with its rows and the outage's row.
    assert!(stdout.contains("certified on all 4 replicas"), "{stdout}");
    let cert = verify(dir.path().join("demo-certificate.json"), &nodes);
    let said = String::from_utf8_lossy(&cert.stdout);
    assert_eq!(cert.status.code(), Some(0), "{said}");
    assert!(said.contains("certified with 3 rows"), "{said}");

    // Tampered: exit 1 with the reason.
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&proof).unwrap()).unwrap();
    v["total_downtime_seconds"] =
        serde_json::json!(v["total_downtime_seconds"].as_i64().unwrap() + 1);
    let bad = dir.path().join("tampered.json");
    std::fs::write(&bad, v.to_string()).unwrap();
    let out = verify(&bad, &nodes);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("does not verify"));
    // Claiming a signer that did not sign: listed as signer but key absent from the aggregate.
    v["total_downtime_seconds"] =
        serde_json::json!(v["total_downtime_seconds"].as_i64().unwrap() - 1);
    v["non_signing_nodes"] = serde_json::json!(["Node1", "Node2"]);
    std::fs::write(&bad, v.to_string()).unwrap();
    let out = verify(&bad, &nodes);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Unreadable: exit 2.
    std::fs::write(&bad, "not json").unwrap();
    let out = verify(&bad, &nodes);
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

/// Without --demo: targets are switched through the control endpoint, and Ctrl-C
/// (SIGINT) stops every process cleanly.
#[test]
fn devnet_control_and_clean_ctrl_c() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let mut child = livenessd()
        .args([
            "devnet",
            "--nodes",
            "3",
            "--targets",
            "1",
            "--probe-interval-ms",
            "300",
            "--dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        printed.push(line.clone());
        if line.contains("Ctrl-C stops everything") {
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
    let (control, node, seq) = (url_of("control"), url_of("Node3"), url_of("sequencer"));
    let get = |u: &str| -> Option<serde_json::Value> {
        let out = Command::new("curl")
            .args(["-fsS", "--max-time", "5", u])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    };
    let post = |u: &str| {
        Command::new("curl")
            .args(["-fsS", "-X", "POST", u])
            .output()
            .unwrap()
    };
    assert!(post(&format!("{control}/targets/0xTarget1/stop"))
        .status
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if get(&format!("{node}/v1/targets")).is_some_and(|v| v["items"][0]["state"] == "down") {
            break;
        }
        assert!(Instant::now() < deadline, "target never went down");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(post(&format!("{control}/targets/0xTarget1/start"))
        .status
        .success());
    assert!(!post(&format!("{control}/targets/0xNope/stop"))
        .status
        .success());
    // One command adds a monitoring node through a network change, one removes it.
    let added = post(&format!("{control}/nodes"));
    assert!(
        added.status.success(),
        "{}{}",
        String::from_utf8_lossy(&added.stdout),
        String::from_utf8_lossy(&added.stderr)
    );
    let until_version = |v: u64, nodes: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let net = get(&format!("{node}/v1/network"));
            if net.as_ref().is_some_and(|n| n["version"] == v) {
                assert_eq!(
                    net.unwrap()["monitoring_nodes"].as_array().unwrap().len(),
                    nodes
                );
                return;
            }
            assert!(Instant::now() < deadline, "Node3 never reached version {v}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    until_version(2, 4);
    let removed = post(&format!("{control}/nodes/Node4/remove"));
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stdout)
    );
    until_version(3, 3);

    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "devnet did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    // Its processes are gone.
    assert!(get(&format!("{seq}/node/state")).is_none());
    assert!(get(&format!("{node}/health")).is_none());
}
