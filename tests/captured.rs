//! The client against answers captured from real zsequencer nodes and the SDK's own
//! replays: it must yield exactly what the SDK yields, verifying every signature.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use common::{s, serve_router, vector, vector_text};
use livenessd::zellular::{Client, ClientConfig, Cursor, OperatorSet, OperatorSource, StreamError};
use serde_json::{json, Value};

/// A gateway that answers `finalized?after=N` from a table, `data: null` otherwise.
fn table_gateway(app: &str, answers: HashMap<u64, Value>, last: Value) -> common::Running {
    let answers = Arc::new(answers);
    let router = Router::new()
        .route(
            &format!("/node/{app}/batches/finalized"),
            get(|State(a): State<Arc<HashMap<u64, Value>>>, Query(q): Query<HashMap<String, u64>>| async move {
                let after = q.get("after").copied().unwrap_or(0);
                Json(a.get(&after).cloned().unwrap_or(json!({"status": "success", "message": "Operation successful", "data": null})))
            }),
        )
        .route(&format!("/node/{app}/batches/finalized/last"), get(move || async move { Json(last) }))
        .with_state(answers);
    serve_router(router)
}

fn config(url: &str, app: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new(app, vec![url.to_owned()]);
    cfg.poll_min = Duration::from_millis(5);
    cfg.poll_max = Duration::from_millis(20);
    cfg.retry_initial = Duration::from_millis(5);
    cfg
}

fn example_set() -> OperatorSource {
    let v = vector("zellular_bn254.json");
    let set = &v["operator_sets"]["set4"];
    let ops = serde_json::to_string(&set["operators"]).unwrap();
    OperatorSource::Static(Arc::new(OperatorSet::from_json(&ops, 67.0).unwrap()))
}

fn example_gateway() -> common::Running {
    let v = vector("zellular_bn254.json");
    let ex = &v["example_finalized_responses"];
    let answers = ex["responses"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, r)| (k.trim_start_matches("after=").parse().unwrap(), r.clone()))
        .collect();
    table_gateway("simple_app", answers, ex["last"].clone())
}

async fn read_n(client: &Client, cursor: Cursor, ops: OperatorSource, n: usize) -> Vec<Value> {
    let mut stream = client.finalized_stream(cursor, ops);
    let mut got = Vec::new();
    while got.len() < n {
        let b = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap();
        got.push(json!([b.index, b.timestamp, b.body]));
    }
    // Nothing more is finalized: the stream waits instead of yielding.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), stream.next())
            .await
            .is_err()
    );
    got
}

#[tokio::test]
async fn yields_what_the_sdk_yields_from_genesis() {
    let gw = example_gateway();
    let client = Client::new(config(&gw.url, "simple_app"));
    let want =
        vector("zellular_bn254.json")["example_finalized_responses"]["sdk_yields_after_0"].clone();
    let got = read_n(
        &client,
        Cursor::genesis(),
        example_set(),
        want.as_array().unwrap().len(),
    )
    .await;
    assert_eq!(Value::Array(got), want);
}

#[tokio::test]
async fn resumes_from_an_index_alone_like_the_sdk() {
    let gw = example_gateway();
    let client = Client::new(config(&gw.url, "simple_app"));
    let want =
        vector("zellular_bn254.json")["example_finalized_responses"]["sdk_yields_after_5"].clone();
    let cursor = Cursor {
        index: 5,
        chaining_hash: None,
    };
    let got = read_n(
        &client,
        cursor,
        example_set(),
        want.as_array().unwrap().len(),
    )
    .await;
    assert_eq!(Value::Array(got), want);
}

#[tokio::test]
async fn resumes_exactly_at_a_sync_point() {
    // The SDK stalls here (sdk_resume_quirk); livenessd must not.
    let gw = example_gateway();
    let client = Client::new(config(&gw.url, "simple_app"));
    let all =
        vector("zellular_bn254.json")["example_finalized_responses"]["sdk_yields_after_0"].clone();
    let want: Vec<Value> = all.as_array().unwrap()[3..].to_vec();
    let got = read_n(
        &client,
        Cursor {
            index: 3,
            chaining_hash: None,
        },
        example_set(),
        want.len(),
    )
    .await;
    assert_eq!(got, want);
    // With the chain known the gateway is asked after=3 directly: answer not in the
    // table, so the stream waits, and nothing is yielded wrongly.
    let mut stream = client.finalized_stream(
        Cursor::at(3, "f6fa404dad515ffb416eea42a57ca8f7"),
        example_set(),
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), stream.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn last_finalized_verifies() {
    let gw = example_gateway();
    let client = Client::new(config(&gw.url, "simple_app"));
    let last = client
        .last_finalized(&example_set())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last.index, 12);
    assert_eq!(last.body, "日本語のバッチ");
}

fn zsequencer_set() -> OperatorSource {
    let text = vector_text("zsequencer_responses/operators.json");
    OperatorSource::Static(Arc::new(OperatorSet::from_json(&text, 67.0).unwrap()))
}

#[tokio::test]
async fn reads_a_real_zsequencer_network() {
    let r = |f: &str| vector(&format!("zsequencer_responses/{f}"));
    let answers = HashMap::from([
        (0, r("app_batches_finalized_after_0.json")),
        (15, r("app_batches_finalized_after_15.json")),
        (27, r("app_batches_finalized_after_27_empty.json")),
    ]);
    let gw = table_gateway("simple_app", answers, r("app_batches_finalized_last.json"));
    let client = Client::new(config(&gw.url, "simple_app"));
    let got = read_n(&client, Cursor::genesis(), zsequencer_set(), 27).await;
    let bodies: Vec<&str> = got.iter().map(|g| s(&g[2])).collect();
    assert_eq!(bodies[0], r#"[{"tx":1,"to":"0xabc"}]"#);
    assert_eq!(bodies[15], "blocking-one");
    assert_eq!(bodies[26], "last batch");
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g[0].as_u64().unwrap(), i as u64 + 1);
    }
    let last = client
        .last_finalized(&zsequencer_set())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last.index, 27);
}

#[tokio::test]
async fn a_captured_answer_checked_against_the_wrong_operators_stops_the_stream() {
    let answers = HashMap::from([(
        0,
        vector("zsequencer_responses/app_batches_finalized_after_0.json"),
    )]);
    let gw = table_gateway("simple_app", answers, Value::Null);
    let client = Client::new(config(&gw.url, "simple_app"));
    let mut stream = client.finalized_stream(Cursor::genesis(), example_set());
    let err = stream.next().await.unwrap_err();
    assert!(
        matches!(err, StreamError::BadSignature { index: 3, .. }),
        "{err}"
    );
    // The stream stays stopped: the same error again, nothing yielded.
    let again = stream.next().await.unwrap_err();
    assert_eq!(again.to_string(), err.to_string());
}
