//! The client against the dev sequencer over loopback: volume, restarts, failover,
//! and a tampering proxy for every way a gateway can lie.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use common::{any_port, devseq_config, serve_router, start_devseq, vector};
use livenessd::crypto::bn254::SecretKey;
use livenessd::devseq::DevSequencer;
use livenessd::zellular::operators::FinalityError;
use livenessd::zellular::{
    Client, ClientConfig, Cursor, FinalizedBatch, OperatorSet, OperatorSource, StreamError,
    SubmitError,
};
use serde_json::Value;

fn config(urls: &[&str], app: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new(app, urls.iter().map(|u| u.to_string()).collect());
    cfg.poll_min = Duration::from_millis(5);
    cfg.poll_max = Duration::from_millis(50);
    cfg.retry_initial = Duration::from_millis(10);
    cfg.retry_max = Duration::from_millis(200);
    cfg.max_attempts = 50;
    cfg.request_timeout = Duration::from_secs(5);
    cfg
}

fn source_from_file(path: &std::path::Path) -> OperatorSource {
    let text = std::fs::read_to_string(path).unwrap();
    OperatorSource::Static(Arc::new(OperatorSet::from_json(&text, 67.0).unwrap()))
}

/// Submits `body`, then reads the first batch of the finalized stream from genesis.
async fn submit_and_read(
    client: &Client,
    seq: &DevSequencer,
    body: &str,
) -> Result<FinalizedBatch, StreamError> {
    client.submit(body).await.unwrap();
    client
        .finalized_stream(Cursor::genesis(), source_from_file(&seq.operators_file()))
        .next()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_batches_round_trip_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (seq, srv) = start_devseq(devseq_config(dir.path()), any_port()).await;
    let ops = source_from_file(&seq.operators_file());
    let client = Client::new(config(&[&srv.url], "app"));
    const N: usize = 3000;
    // Four concurrent writers: order within each writer must be kept.
    let mut writers = Vec::new();
    for w in 0..4 {
        let c = client.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..N / 4 {
                c.submit(&format!("w{w}-{i:05}")).await.unwrap();
            }
        }));
    }
    let mut stream = client.finalized_stream(Cursor::genesis(), ops);
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut chain = String::new();
    for expected_index in 1..=N as u64 {
        let b = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.index, expected_index);
        chain = livenessd::zellular::chain::next(&chain, &b.body);
        assert_eq!(b.chaining_hash, chain);
        let (w, i) = b.body[1..].split_once('-').unwrap();
        let (w, i): (usize, usize) = (w.parse().unwrap(), i.parse().unwrap());
        let next = seen.entry(w).or_default();
        assert_eq!(i, *next, "writer {w} out of order");
        *next += 1;
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(seen.values().sum::<usize>(), N);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_restart_mid_stream_and_the_client_resumes_without_gap_or_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let (seq, srv) = start_devseq(devseq_config(dir.path()), any_port()).await;
    let addr = srv.addr;
    let ops = source_from_file(&seq.operators_file());
    let client = Client::new(config(&[&srv.url], "app"));
    for i in 0..500 {
        client.submit(&format!("b{i}")).await.unwrap();
    }
    let mut stream = client.finalized_stream(Cursor::genesis(), ops.clone());
    let mut got = Vec::new();
    while got.len() < 300 {
        got.push(stream.next().await.unwrap());
    }
    // The client stops (its cursor is what a replica would have persisted)...
    let cursor = Cursor::at(
        got.last().unwrap().index,
        got.last().unwrap().chaining_hash.clone(),
    );
    drop(stream);
    // ...and the sequencer restarts on the same data dir and port.
    srv.shutdown().await;
    drop(seq);
    let (seq2, srv2) = start_devseq(devseq_config(dir.path()), addr).await;
    assert_eq!(
        source_from_file(&seq2.operators_file())
            .at_tag(&Value::Null)
            .await
            .unwrap()
            .aggregate_key(),
        ops.at_tag(&Value::Null).await.unwrap().aggregate_key(),
        "keys survive the restart"
    );
    let client2 = Client::new(config(&[&srv2.url], "app"));
    for i in 500..800 {
        client2.submit(&format!("b{i}")).await.unwrap();
    }
    let mut stream = client2.finalized_stream(cursor, ops.clone());
    while got.len() < 800 {
        got.push(
            tokio::time::timeout(Duration::from_secs(20), stream.next())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    for (i, b) in got.iter().enumerate() {
        assert_eq!(b.index, i as u64 + 1);
        assert_eq!(b.body, format!("b{i}"));
    }
    // An index-only cursor (chain unknown) resumes the same way.
    let mut stream = client2.finalized_stream(
        Cursor {
            index: 650,
            chaining_hash: None,
        },
        ops,
    );
    let b = stream.next().await.unwrap();
    assert_eq!((b.index, b.body.as_str()), (651, "b650"));
    assert_eq!(b.chaining_hash, got[650].chaining_hash);
    srv2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_rides_out_a_sequencer_outage() {
    let dir = tempfile::tempdir().unwrap();
    let (seq, srv) = start_devseq(devseq_config(dir.path()), any_port()).await;
    let addr = srv.addr;
    let ops = source_from_file(&seq.operators_file());
    let client = Client::new(config(&[&srv.url], "app"));
    client.submit("before").await.unwrap();
    let mut stream = client.finalized_stream(Cursor::genesis(), ops);
    assert_eq!(stream.next().await.unwrap().body, "before");
    srv.shutdown().await;
    drop(seq);
    let reader = tokio::spawn(async move { stream.next().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_seq, srv) = start_devseq(devseq_config(dir.path()), addr).await;
    client.submit("after").await.unwrap();
    let b = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((b.index, b.body.as_str()), (2, "after"));
    srv.shutdown().await;
}

#[tokio::test]
async fn fails_over_to_the_next_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let (seq, srv) = start_devseq(devseq_config(dir.path()), any_port()).await;
    // Nothing listens on the first gateway.
    let dead_url = format!("http://{}", common::dead_addr());
    let client = Client::new(config(&[&dead_url, &srv.url], "app"));
    assert_eq!(submit_and_read(&client, &seq, "x").await.unwrap().body, "x");
    srv.shutdown().await;
}

#[tokio::test]
async fn submit_gives_a_clear_error_on_4xx_without_retrying() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = devseq_config(dir.path());
    cfg.apps = vec!["only".into()];
    cfg.max_batch_bytes = 1024;
    let (_seq, srv) = start_devseq(cfg, any_port()).await;
    let client = Client::new(config(&[&srv.url], "only"));
    let started = std::time::Instant::now();
    let err = client.submit(&"x".repeat(4096)).await.unwrap_err();
    assert!(
        matches!(&err, SubmitError::Rejected(e) if e.to_string().contains("413")),
        "{err}"
    );
    let err = Client::new(config(&[&srv.url], "other"))
        .submit("y")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Invalid app name"), "{err}");
    let err = client.submit("").await.unwrap_err();
    assert!(matches!(err, SubmitError::Rejected(_)), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "4xx must not be retried"
    );
    client.submit(&"x".repeat(1024)).await.unwrap();
    srv.shutdown().await;
}

#[tokio::test]
async fn submit_retries_5xx_then_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (_seq, srv) = start_devseq(devseq_config(dir.path()), any_port()).await;
    let proxy = Proxy::start(&srv.url, Tamper::FailFirst(3));
    let client = Client::new(config(&[&proxy.url], "app"));
    client.submit("x").await.unwrap();
    // With too few attempts the failure is reported as unavailability.
    let proxy2 = Proxy::start(&srv.url, Tamper::FailFirst(100));
    let mut cfg = config(&[&proxy2.url], "app");
    cfg.max_attempts = 2;
    let err = Client::new(cfg).submit("y").await.unwrap_err();
    assert!(matches!(err, SubmitError::Unavailable(_)), "{err}");
    srv.shutdown().await;
}

/// How the proxy lies.
#[derive(Clone)]
enum Tamper {
    /// Answer 503 to the first N requests.
    FailFirst(usize),
    /// Change the body of the batch with this index.
    Batch(u64),
    /// Change the chaining hash of the sync point with this index.
    SyncChain(u64),
    /// Replace the signature of the sync point with this index by another key's.
    ForgeSignature(u64),
    /// Add an operator to the non-signers of every sync point.
    ExtraNonsigner(String),
    /// Answer with broken JSON.
    Malformed,
}

struct Proxy {
    url: String,
    _srv: common::Running,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    tamper: Tamper,
    count: Arc<Mutex<usize>>,
    http: reqwest::Client,
}

impl Proxy {
    fn start(upstream: &str, tamper: Tamper) -> Proxy {
        let state = ProxyState {
            upstream: upstream.to_owned(),
            tamper,
            count: Arc::new(Mutex::new(0)),
            http: livenessd::http_client::builder().build().unwrap(),
        };
        let srv = serve_router(Router::new().fallback(forward).with_state(state));
        Proxy {
            url: srv.url.clone(),
            _srv: srv,
        }
    }
}

async fn forward(State(st): State<ProxyState>, req: Request) -> Response {
    let n = {
        let mut c = st.count.lock().unwrap();
        *c += 1;
        *c
    };
    if let Tamper::FailFirst(k) = st.tamper {
        if n <= k {
            return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
        }
    }
    let method = req.method().clone();
    let uri = req.uri().clone();
    let headers = req.headers().clone();
    let body: Bytes = axum::body::to_bytes(req.into_body(), 1 << 24)
        .await
        .unwrap();
    let url = format!("{}{}", st.upstream, uri.path_and_query().unwrap());
    let mut r = st.http.request(method, &url).body(body);
    if let Some(ct) = headers.get("content-type") {
        r = r.header("content-type", ct);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    if !uri.path().ends_with("/batches/finalized") {
        return (status, text).into_response();
    }
    let after: u64 = uri
        .query()
        .and_then(|q| q.strip_prefix("after="))
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let mut v: Value = serde_json::from_str(&text).unwrap();
    if v["data"].is_null() {
        return (status, text).into_response();
    }
    let data = &mut v["data"];
    match &st.tamper {
        Tamper::FailFirst(_) => {}
        Tamper::Malformed => {
            return (
                status,
                "{\"status\": \"success\", \"data\": {\"batches\": [",
            )
                .into_response()
        }
        Tamper::Batch(i) => {
            if *i > after {
                if let Some(b) = data["batches"].get_mut((*i - after - 1) as usize) {
                    *b = Value::String("tampered".into());
                }
            }
        }
        Tamper::SyncChain(i) | Tamper::ForgeSignature(i) => {
            for sig in data["finalized_signatures"].as_array_mut().unwrap() {
                if sig["index"] == *i {
                    if matches!(st.tamper, Tamper::SyncChain(_)) {
                        sig["chaining_hash"] = Value::String("0".repeat(32));
                    } else {
                        let forger = SecretKey::from_hex("1234").unwrap();
                        sig["signature"] = Value::String(forger.sign(b"whatever").to_string());
                    }
                }
            }
        }
        Tamper::ExtraNonsigner(id) => {
            for sig in data["finalized_signatures"].as_array_mut().unwrap() {
                sig["nonsigners"]
                    .as_array_mut()
                    .unwrap()
                    .push(Value::String(id.clone()));
            }
        }
    }
    (status, serde_json::to_string(&v).unwrap()).into_response()
}

/// Submits `n` batches one by one (each finalized alone), then streams through `proxy`.
async fn stream_through(tamper: Tamper, n: usize) -> (Vec<u64>, StreamError) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = devseq_config(dir.path());
    cfg.finalize_interval = Duration::ZERO;
    let (seq, srv) = start_devseq(cfg, any_port()).await;
    let client = Client::new(config(&[&srv.url], "app"));
    for i in 0..n {
        client.submit(&format!("[{i}]")).await.unwrap();
    }
    let proxy = Proxy::start(&srv.url, tamper);
    let mut cfg = config(&[&proxy.url], "app");
    cfg.max_attempts = 3;
    let client = Client::new(cfg);
    let mut stream =
        client.finalized_stream(Cursor::genesis(), source_from_file(&seq.operators_file()));
    let mut ok = Vec::new();
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
        {
            Ok(b) => ok.push(b.index),
            Err(e) => break e,
        }
    };
    // A fatal error sticks; a transient one may be retried by the caller.
    if err.is_fatal() {
        assert_eq!(
            stream.next().await.unwrap_err().to_string(),
            err.to_string()
        );
    }
    srv.shutdown().await;
    (ok, err)
}

#[tokio::test]
async fn a_tampered_batch_stops_the_stream_at_its_index() {
    let (ok, err) = stream_through(Tamper::Batch(5), 8).await;
    assert_eq!(
        ok,
        vec![1, 2, 3, 4],
        "nothing at or after the tampered batch is yielded"
    );
    assert!(
        matches!(err, StreamError::ChainMismatch { index: 5, .. }),
        "{err}"
    );
    assert!(err.is_fatal());
    assert!(err.to_string().contains("index 5"));
}

#[tokio::test]
async fn a_wrong_chaining_hash_stops_the_stream() {
    let (ok, err) = stream_through(Tamper::SyncChain(3), 6).await;
    assert_eq!(ok, vec![1, 2]);
    assert!(
        matches!(err, StreamError::ChainMismatch { index: 3, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_forged_signature_stops_the_stream() {
    let (ok, err) = stream_through(Tamper::ForgeSignature(4), 6).await;
    assert_eq!(ok, vec![1, 2, 3]);
    assert!(
        matches!(
            err,
            StreamError::BadSignature {
                index: 4,
                source: FinalityError::Invalid
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn malformed_json_is_an_error_not_a_panic() {
    let (ok, err) = stream_through(Tamper::Malformed, 3).await;
    assert!(ok.is_empty());
    assert!(!err.is_fatal());
    assert!(err.to_string().contains("malformed"), "{err}");
}

#[tokio::test]
async fn nonsigners_over_the_threshold_stop_the_stream() {
    // The dev sequencer itself finalizes with 1 of 3 equal-stake operators missing:
    // 33.3% > 33%, so no signature it makes is acceptable.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = devseq_config(dir.path());
    cfg.nonsigners = 1;
    let (seq, srv) = start_devseq(cfg, any_port()).await;
    let client = Client::new(config(&[&srv.url], "app"));
    let err = submit_and_read(&client, &seq, "x").await.unwrap_err();
    assert!(
        matches!(
            err,
            StreamError::BadSignature {
                index: 1,
                source: FinalityError::QuorumNotMet { .. }
            }
        ),
        "{err}"
    );
    srv.shutdown().await;
    // One non-signer of four is within the threshold and verifies.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = devseq_config(dir.path());
    cfg.operators = 4;
    cfg.nonsigners = 1;
    let (seq, srv) = start_devseq(cfg, any_port()).await;
    let client = Client::new(config(&[&srv.url], "app"));
    assert_eq!(submit_and_read(&client, &seq, "y").await.unwrap().body, "y");
    srv.shutdown().await;
}

#[tokio::test]
async fn a_gateway_that_adds_nonsigners_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = devseq_config(dir.path());
    cfg.operators = 4;
    let (seq, srv) = start_devseq(cfg, any_port()).await;
    let set = source_from_file(&seq.operators_file())
        .at_tag(&Value::Null)
        .await
        .unwrap();
    let victim = set.operators()[0].id.clone();
    let client = Client::new(config(&[&srv.url], "app"));
    client.submit("x").await.unwrap();
    let proxy = Proxy::start(&srv.url, Tamper::ExtraNonsigner(victim));
    let client = Client::new(config(&[&proxy.url], "app"));
    let mut stream =
        client.finalized_stream(Cursor::genesis(), source_from_file(&seq.operators_file()));
    let err = stream.next().await.unwrap_err();
    assert!(
        matches!(
            err,
            StreamError::BadSignature {
                index: 1,
                source: FinalityError::Invalid
            }
        ),
        "{err}"
    );
    srv.shutdown().await;
}

/// The dev sequencer answers with zsequencer's exact shapes and status codes.
#[tokio::test]
async fn reference_shapes_and_status_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = devseq_config(dir.path());
    cfg.apps = vec!["simple_app".into()];
    let (_seq, srv) = start_devseq(cfg, any_port()).await;
    let http = livenessd::http_client::builder().build().unwrap();
    let get = |path: &str| http.get(format!("{}{path}", srv.url)).send();
    let check = |resp: reqwest::Response, file: &'static str| async move {
        let index: Value = vector("zsequencer_responses/index.json");
        let entry = index
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["file"] == file)
            .unwrap()
            .clone();
        assert_eq!(
            resp.status().as_u16() as u64,
            entry["http_status"].as_u64().unwrap(),
            "{file}"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body,
            vector(&format!("zsequencer_responses/{file}")),
            "{file}"
        );
    };
    check(
        get("/node/no_such_app/batches/finalized?after=0")
            .await
            .unwrap(),
        "error_unknown_app.json",
    )
    .await;
    check(
        get("/node/simple_app/batches/finalized?after=-1")
            .await
            .unwrap(),
        "error_negative_after.json",
    )
    .await;
    check(
        get("/node/simple_app/batches/sequenced/last")
            .await
            .unwrap(),
        "error_bad_state_last.json",
    )
    .await;
    check(
        http.get(format!("{}/node/state", srv.url))
            .header("Version", "v0.0.0")
            .send()
            .await
            .unwrap(),
        "error_wrong_version_header.json",
    )
    .await;
    let put = http
        .put(format!("{}/node/simple_app/batches", srv.url))
        .header("Content-Type", "text/plain")
        .body("captured-put")
        .send()
        .await
        .unwrap();
    check(put, "put_app_batch.json").await;
    check(
        get("/node/simple_app/batches/finalized?after=5")
            .await
            .unwrap(),
        "app_batches_finalized_after_27_empty.json",
    )
    .await;
    // Same keys as the reference's state answer.
    let state: Value = get("/node/state").await.unwrap().json().await.unwrap();
    let reference = vector("zsequencer_responses/node_state.json");
    let keys = |v: &Value| {
        v["data"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&state), keys(&reference));
    assert_eq!(
        state["data"]["apps"]["simple_app"]["last_sequenced_index"],
        1
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn a_gateway_that_refuses_is_left_for_the_next_one() {
    // Gateway A does not serve the app (400 Invalid app name); B does.
    let dir_a = tempfile::tempdir().unwrap();
    let mut cfg = devseq_config(dir_a.path());
    cfg.apps = vec!["other".into()];
    let (_a, srv_a) = start_devseq(cfg, any_port()).await;
    let dir_b = tempfile::tempdir().unwrap();
    let (seq_b, srv_b) = start_devseq(devseq_config(dir_b.path()), any_port()).await;
    let client = Client::new(config(&[&srv_a.url, &srv_b.url], "app"));
    // The first submission is refused by A with its reason; the next goes to B.
    let err = client.submit("x").await.unwrap_err();
    assert!(err.to_string().contains("Invalid app name"), "{err}");
    client.submit("x").await.unwrap();
    let mut stream =
        client.finalized_stream(Cursor::genesis(), source_from_file(&seq_b.operators_file()));
    let mut errors = 0;
    let b = loop {
        match stream.next().await {
            Ok(b) => break b,
            Err(e) => {
                assert!(!e.is_fatal(), "{e}");
                errors += 1;
                assert!(errors < 3, "stuck on the refusing gateway: {e}");
            }
        }
    };
    assert_eq!((b.index, b.body.as_str()), (1, "x"));
    srv_a.shutdown().await;
    srv_b.shutdown().await;
}

/// A batch the dev sequencer acknowledged but had not finalized when it stopped is
/// finalized when it starts again, without waiting for another batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_batch_is_finalized_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = devseq_config(dir.path());
    // Finalization would only come in an hour.
    cfg.finalize_interval = Duration::from_secs(3_600);
    let (seq, srv) = start_devseq(cfg.clone(), any_port()).await;
    let ops = source_from_file(&seq.operators_file());
    let client = Client::new(config(&[&srv.url], "app"));
    client.submit("acknowledged").await.unwrap();
    assert!(client.last_finalized(&ops).await.unwrap().is_none());
    let addr = srv.addr;
    // A stop that skips the final finalization, like a SIGKILL: the task is
    // aborted, the handles dropped.
    srv.task.abort();
    let _ = srv.task.await;
    // (Its background finalizer only stops on the token, which it takes as
    // "stop now", not "finalize first".)
    srv.stop.cancel();
    drop(seq);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (seq, srv) = start_devseq(cfg, addr).await;
    let last = client
        .last_finalized(&source_from_file(&seq.operators_file()))
        .await
        .unwrap()
        .expect("finalized at start");
    assert_eq!((last.index, last.body.as_str()), (1, "acknowledged"));
    srv.shutdown().await;
}

/// A gateway that answers with an endless body is cut off at the size cap: an
/// error, not unbounded memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_gateway_answer_is_refused_at_the_cap() {
    use axum::body::Body;
    let endless = serve_router(Router::new().fallback(|| async {
        let chunk = Bytes::from(vec![b'x'; 1 << 20]);
        let stream =
            futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
        Response::new(Body::from_stream(stream))
    }));
    let mut cfg = config(&[&endless.url], "app");
    cfg.max_attempts = 1;
    let client = Client::new(cfg);
    let err = client.fetch_finalized(0).await.unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
}

/// The dev sequencer bounds its connections as the node does: one that sends no
/// request head in time — also idle after an answer — is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sequencer_closes_idle_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = devseq_config(dir.path());
    cfg.connection_timeout = Duration::from_millis(300);
    let (_seq, srv) = start_devseq(cfg, any_port()).await;
    let mut silent = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let mut kept = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    for s in [&mut silent, &mut kept] {
        let mut all = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all))
            .await
            .expect("closed by the sequencer")
            .unwrap();
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 200"),
            "{text}"
        );
    }
}
