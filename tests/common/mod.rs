//! Helpers shared by the integration tests: vectors, in-process servers on loopback.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use livenessd::devseq::{DevSeqConfig, DevSequencer};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod cluster;

pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

pub fn vector(name: &str) -> Value {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn vector_text(name: &str) -> String {
    std::fs::read_to_string(vectors_dir().join(name)).unwrap()
}

pub fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// Binds a loopback listener, reusing the address so a restarted server gets it back.
pub fn bind(addr: SocketAddr) -> TcpListener {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_reuseaddr(true).unwrap();
    sock.bind(addr).unwrap();
    sock.listen(1024).unwrap()
}

pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A running in-process server.
pub struct Running {
    pub addr: SocketAddr,
    pub url: String,
    pub stop: CancellationToken,
    pub task: JoinHandle<()>,
}

impl Running {
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// Serves an axum router on a loopback port.
pub fn serve_router(router: axum::Router) -> Running {
    let listener = bind(any_port());
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(token.cancelled_owned())
            .await
            .unwrap();
    });
    Running {
        addr,
        url: format!("http://{addr}"),
        stop,
        task,
    }
}

/// A dev sequencer config for tests: fast finalization, given data dir.
pub fn devseq_config(dir: &Path) -> DevSeqConfig {
    let mut cfg = DevSeqConfig::new(dir, "http://unset");
    cfg.finalize_interval = Duration::from_millis(10);
    cfg
}

/// Starts a dev sequencer at `addr` (port 0 for any).
pub async fn start_devseq(mut cfg: DevSeqConfig, addr: SocketAddr) -> (DevSequencer, Running) {
    let listener = bind(addr);
    let addr = listener.local_addr().unwrap();
    cfg.public_url = format!("http://{addr}");
    let seq = DevSequencer::open(cfg).await.unwrap();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let s2 = seq.clone();
    let task = tokio::spawn(async move {
        s2.serve(listener, token).await.unwrap();
    });
    (
        seq,
        Running {
            addr,
            url: format!("http://{addr}"),
            stop,
            task,
        },
    )
}

/// A fake monitored target: `/health` answers the status set with `set`.
pub struct FakeTarget {
    pub url: String,
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    _srv: Running,
}

impl FakeTarget {
    pub fn start() -> FakeTarget {
        use axum::extract::State;
        use axum::http::StatusCode;
        let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(200));
        let router = axum::Router::new()
            .route(
                "/health",
                axum::routing::get(
                    |State(s): State<std::sync::Arc<std::sync::atomic::AtomicU16>>| async move {
                        StatusCode::from_u16(s.load(std::sync::atomic::Ordering::Relaxed)).unwrap()
                    },
                ),
            )
            .with_state(status.clone());
        let srv = serve_router(router);
        FakeTarget {
            url: format!("{}/health", srv.url),
            status,
            _srv: srv,
        }
    }

    pub fn set(&self, status: u16) {
        self.status
            .store(status, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A monitoring node's identity for tests: deterministic BLS key.
pub struct Identity {
    pub id: String,
    pub sk: livenessd::crypto::bls::SecretKey,
}

impl Identity {
    pub fn new(i: u8) -> Identity {
        Identity {
            id: format!("Node{i}"),
            sk: livenessd::crypto::bls::SecretKey::key_gen(&[i; 32]).unwrap(),
        }
    }

    pub fn monitoring_node(&self, url: &str) -> livenessd::config::MonitoringNode {
        livenessd::config::MonitoringNode {
            id: self.id.clone(),
            url: url.to_owned(),
            pubkey: self.sk.public_key().to_hex(),
            pop: Some(self.sk.prove_possession().to_hex()),
            stake: 1.0,
        }
    }
}

/// Signs an event as a quorum of `signers` would (what an aggregator posts).
pub fn signed_event(
    signers: &[&Identity],
    nonsigners: &[&str],
    address: &str,
    state: &str,
    timestamp: i64,
) -> serde_json::Value {
    use livenessd::crypto::bls::Signature;
    let msg = format!("Address: {address}, State: {state}, Timestamp: {timestamp}");
    let sigs: Vec<Signature> = signers.iter().map(|s| s.sk.sign(msg.as_bytes())).collect();
    serde_json::json!({
        "address": address,
        "state": state,
        "timestamp": timestamp,
        "aggregated_signature": Signature::aggregate(&sigs).unwrap().to_hex(),
        "non_signing_nodes": nonsigners,
    })
}

/// Polls `f` until it is true or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if f().await {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An address nothing answers on (connections are refused), reserved for the rest
/// of the test process so no other test can be given it.
pub fn dead_addr() -> SocketAddr {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(any_port()).unwrap();
    let addr = sock.local_addr().unwrap();
    // Bound but never listening: kept (not closed) so the port stays taken.
    std::mem::forget(sock);
    addr
}

/// The entry of `v[list]` whose `name` is `name`.
pub fn named<'a>(v: &'a Value, list: &str, name: &str) -> &'a Value {
    v[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

/// GET `url` and decode its JSON body.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}
