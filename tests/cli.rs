//! The command line as a person meets it: a usage hint instead of an error, one
//! message per mistake with the path and the reason in words, a second process on
//! one database refused, an unknown Zellular app caught at start, and gateways
//! that are not the sequencer preferred.

mod common;

use std::process::{Command, Output};

use common::*;
use serde_json::{json, Value};

fn livenessd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_livenessd"));
    // A parent's LIVENESSD_* settings must not leak into these runs.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("LIVENESSD_") {
            c.env_remove(k);
        }
    }
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn without_a_command_or_config_it_prints_a_usage_hint_and_exits_2() {
    let out = livenessd().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("livenessd devnet --demo"), "{err}");
    assert!(err.contains("--config node.toml"), "{err}");
    assert!(err.contains("node.toml.example"), "{err}");
    assert!(
        !err.contains("configuration"),
        "not a configuration error: {err}"
    );
}

#[test]
fn log_json_accepts_1_true_and_yes() {
    let dir = tempfile::tempdir().unwrap();
    for (i, v) in ["1", "true", "yes", "0", "false", "no"].iter().enumerate() {
        let out = livenessd()
            .env("LIVENESSD_LOG_JSON", v)
            .args(["keygen", "--out"])
            .arg(dir.path().join(format!("k{i}.key")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{v}: {}", stderr(&out));
    }
    let out = livenessd()
        .env("LIVENESSD_LOG_JSON", "perhaps")
        .args(["keygen", "--out"])
        .arg(dir.path().join("k.key"))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// A network of two nodes written by `network init`, to break in various ways.
fn network(dir: &std::path::Path) -> std::path::PathBuf {
    let ops = vectors_dir().join("zsequencer_responses/operators.json");
    let out = livenessd()
        .args(["network", "init", "--nodes", "2", "--dir"])
        .arg(dir)
        .arg("--operators-file")
        .arg(&ops)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    dir.join("node-0/node.toml")
}

fn run(config: &std::path::Path, edit: impl Fn(String) -> String) -> String {
    let text = std::fs::read_to_string(config).unwrap();
    let edited = config.with_file_name("edited.toml");
    std::fs::write(&edited, edit(text)).unwrap();
    let out = livenessd()
        .args(["--config"])
        .arg(&edited)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    stderr(&out)
}

#[test]
fn network_init_writes_private_keys_a_shared_nodes_file_and_configs() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = network(dir.path());
    let nodes: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("nodes.json")).unwrap())
            .unwrap();
    assert_eq!(nodes.as_object().unwrap().len(), 2);
    for i in 0..2 {
        let key = dir.path().join(format!("node-{i}/bls.key"));
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(nodes[format!("node-{i}")]["pop"].is_string());
    }
    // The configuration loads as written, and PoPs check out.
    let loaded = livenessd::config::NodeConfig::load(Some(&cfg), &Default::default()).unwrap();
    assert_eq!(loaded.monitoring_nodes.len(), 2);
    livenessd::events::MonitorSet::new(
        &loaded.monitoring_nodes,
        &[],
        livenessd::config::Threshold::TWO_THIRDS,
    )
    .unwrap();
    assert_eq!(
        loaded.targets.len(),
        2,
        "the nodes monitor each other by default"
    );
}

#[test]
fn each_mistake_is_one_message_with_the_path_and_the_reason_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = network(dir.path());
    let once = |err: &str, needle: &str| {
        assert_eq!(err.matches(needle).count(), 1, "{needle:?} once in: {err}");
        assert!(!err.contains("os error"), "no OS error numbers: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    };
    let err = run(&cfg, |t| {
        t.replace(
            "bls_key_file = \"bls.key\"",
            "bls_key_file = \"missing.key\"",
        )
    });
    once(&err, "no such file or directory");
    assert!(err.contains("missing.key"), "{err}");
    let err = run(&cfg, |t| t + "\nbogus_key = 1\n");
    once(&err, "bogus_key");
    assert!(err.contains("edited.toml"), "{err}");
    let err = run(&cfg, |t| {
        t.replace(
            "database = \"replica.sqlite\"",
            "database = \"bls.key/replica.sqlite\"",
        )
    });
    once(&err, "is a file, not a directory");
    // A second process on the same database.
    let first = livenessd()
        .args(["--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _first = Kill(first);
    let lock = cfg.with_file_name("replica.sqlite.lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !lock.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first node never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let err = run(&cfg, |t| t);
    once(&err, "in use by another livenessd process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_zellular_app_stops_the_node_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut sc = devseq_config(&dir.path().join("seq"));
    sc.apps = vec!["livenessd".into()];
    let (_seq, _srv) = start_devseq(sc, any_port()).await;
    let id = Identity::new(1);
    let key = dir.path().join("k.key");
    livenessd::keyfile::write_secret(&key, &id.sk.to_hex()).unwrap();
    let mut cfg = livenessd::config::NodeConfig {
        node_id: id.id.clone(),
        database: dir.path().join("r.sqlite"),
        bls_key_file: key,
        monitoring_nodes: vec![id.monitoring_node("http://127.0.0.1:1")],
        ..Default::default()
    };
    cfg.zellular.operators_file = Some(dir.path().join("seq/operators.json"));
    cfg.zellular.app = "other-app".into();
    let err = livenessd::node::Node::open(cfg)
        .await
        .err()
        .expect("refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("other-app") && msg.contains("does not know this app"),
        "{msg}"
    );
}

/// With no gateways configured, the operators' sockets are used — the one that
/// says it is the sequencer last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_gateways_the_sequencer_is_asked_last() {
    let state = |sequencer: bool| {
        serve_router(axum::Router::new().route(
            "/node/state",
            axum::routing::get(move || async move {
                axum::Json(
                    json!({"status": "success", "data": {"sequencer": sequencer, "apps": {}}}),
                )
            }),
        ))
    };
    let (seq, other) = (state(true), state(false));
    let dir = tempfile::tempdir().unwrap();
    let mut ops: Value = vector("zsequencer_responses/operators.json");
    let list = ops.as_array_mut().unwrap();
    list.truncate(2);
    list[0]["socket"] = json!(seq.url);
    list[1]["socket"] = json!(other.url);
    let ops_file = dir.path().join("ops.json");
    std::fs::write(&ops_file, ops.to_string()).unwrap();
    let mut cfg = livenessd::config::NodeConfig::default();
    cfg.zellular.operators_file = Some(ops_file);
    let (client, _) = livenessd::node::zellular_client(&cfg).await.unwrap();
    assert_eq!(
        client.config().gateways,
        vec![other.url.clone(), seq.url.clone()]
    );
}
