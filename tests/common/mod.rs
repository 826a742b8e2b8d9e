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

/// A network change signed by `signers` (what `livenessd network propose` posts).
pub fn signed_change(
    signers: &[&Identity],
    nonsigners: &[&str],
    p: &livenessd::network::Proposal,
) -> serde_json::Value {
    use livenessd::crypto::bls::Signature;
    let msg = p.message();
    let sigs: Vec<Signature> = signers.iter().map(|s| s.sk.sign(msg.as_bytes())).collect();
    serde_json::to_value(livenessd::network::SignedChange::new(
        p.clone(),
        Signature::aggregate(&sigs).unwrap().to_hex(),
        nonsigners.iter().map(|s| s.to_string()).collect(),
    ))
    .unwrap()
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

/// Like [`eventually`], for a value: polls `f` until it gives one.
pub async fn eventually_some<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
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

/// Hands signatures to the reference library, blspy (`PopSchemeMPL`), as a third
/// party would check them. `scripts/test.sh` installs it and sets `BLSPY_PYTHON`
/// (and `BLSPY_REQUIRED`, so a missing library fails instead of skipping).
/// Each item: `{"kind", "message", "public_keys": [hex G1], "signature": hex G2}`.
pub fn blspy_check(items: &[Value]) {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "blspy-{}-{}.json",
        std::process::id(),
        items.len()
    ));
    std::fs::write(&path, serde_json::to_string_pretty(items).unwrap()).unwrap();
    let Ok(python) = std::env::var("BLSPY_PYTHON") else {
        assert!(
            std::env::var_os("BLSPY_REQUIRED").is_none(),
            "BLSPY_REQUIRED is set but BLSPY_PYTHON is not"
        );
        println!(
            "BLSPY_PYTHON not set (scripts/test.sh sets it): blspy check written to {}",
            path.display()
        );
        return;
    };
    let out = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/blspy_verify.py"
        ))
        .arg(&path)
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "blspy rejected: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority made for a test, and a certificate for `localhost` /
/// `127.0.0.1` signed by it.
pub struct TestCa {
    /// The CA certificate, PEM: what a client must trust.
    pub ca_pem: String,
    server: std::sync::Arc<tokio_rustls::rustls::ServerConfig>,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
        livenessd::http_client::install_crypto_provider();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "livenessd test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        leaf_params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        let key =
            tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())
                .unwrap();
        let server = tokio_rustls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), ca_cert.der().clone()], key)
            .unwrap();
        TestCa {
            ca_pem: ca_cert.pem(),
            server: std::sync::Arc::new(server),
        }
    }

    /// Serves `router` over HTTPS on a loopback port; the URL is `https://localhost:PORT`.
    pub fn serve(&self, router: axum::Router) -> Running {
        use hyper_util::rt::TokioIo;
        use hyper_util::service::TowerToHyperService;
        let listener = bind(any_port());
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server.clone());
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = token.cancelled() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                let (acceptor, router) = (acceptor.clone(), router.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = TowerToHyperService::new(router);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Running {
            addr,
            url: format!("https://localhost:{}", addr.port()),
            stop,
            task,
        }
    }

    /// Writes the CA certificate to `dir/ca.pem`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let p = dir.join("ca.pem");
        std::fs::write(&p, &self.ca_pem).unwrap();
        p
    }
}
