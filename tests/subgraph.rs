//! The EigenLayer subgraph operator source against a local fake GraphQL server.

mod common;

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use common::serve_router;
use livenessd::crypto::bn254::SecretKey;
use livenessd::zellular::finality::FinalityMessage;
use livenessd::zellular::operators::{Subgraph, SDK_DEFAULT_NODES};
use livenessd::zellular::OperatorSource;
use serde_json::{json, Value};

struct Fake {
    queries: Mutex<Vec<String>>,
    operators: Value,
}

async fn graphql(State(f): State<Arc<Fake>>, Json(req): Json<Value>) -> Json<Value> {
    let q = req["query"].as_str().unwrap_or_default().to_owned();
    f.queries.lock().unwrap().push(q.clone());
    if q.contains("_meta") {
        Json(json!({"data": {"_meta": {"block": {"number": 1_000_105}}}}))
    } else if q.contains("operators") {
        Json(json!({"data": {"operators": f.operators}}))
    } else {
        Json(json!({"errors": [{"message": "unknown query"}]}))
    }
}

fn op_json(id: &str, sk: &SecretKey, wei: &str) -> Value {
    let (x, y) = sk.public_key_g2().to_xy();
    json!({"id": id, "socket": "http://127.0.0.1:1", "stake": wei, "pubkeyG2_X": x, "pubkeyG2_Y": y})
}

#[tokio::test]
async fn operators_come_from_the_subgraph_at_the_signature_tag() {
    let keys: Vec<SecretKey> = (1..=4)
        .map(|i| SecretKey::from_hex(&format!("{i:x}{i:x}{i:x}")).unwrap())
        .collect();
    let big = SDK_DEFAULT_NODES[0];
    let operators = json!([
        op_json(big, &keys[0], "3000000000000000000"), // 3 units, uncapped
        op_json("0xb", &keys[1], "5000000000000000000"), // 5 units, capped at 1
        op_json("0xc", &keys[2], "500000000000000000"), // 0.5 units
        op_json("0xd", &keys[3], "0"),                 // no stake
    ]);
    let fake = Arc::new(Fake {
        queries: Mutex::new(Vec::new()),
        operators,
    });
    let srv = serve_router(
        Router::new()
            .route("/graphql", post(graphql))
            .with_state(fake.clone()),
    );
    let sg = Arc::new(Subgraph::new(format!("{}/graphql", srv.url), 67.0));

    assert_eq!(
        sg.current_tag().await.unwrap(),
        1_000_100,
        "head block minus 5"
    );

    let source = OperatorSource::Subgraph(sg.clone());
    let set = source.at_tag(&json!(1_000_100)).await.unwrap();
    let stakes: Vec<f64> = set.operators().iter().map(|o| o.stake).collect();
    assert_eq!(stakes, vec![3.0, 1.0, 0.5, 0.0]);
    assert_eq!(set.total_stake(), 4.5);
    assert!(fake
        .queries
        .lock()
        .unwrap()
        .last()
        .unwrap()
        .contains("block: { number: 1000100 }"));

    // A second look-up at the same block is served from the cache.
    let before = fake.queries.lock().unwrap().len();
    source.at_tag(&json!(1_000_100)).await.unwrap();
    assert_eq!(fake.queries.lock().unwrap().len(), before);

    // A signature by 0xa and 0xc (0xb missing: 1/4.5 = 22% ≤ 33%) verifies.
    let msg = FinalityMessage {
        app_name: "app",
        chaining_hash: "ab",
        index: 1,
        parent_index: 0,
        state: "locked",
        timestamp: 7,
    };
    let sig = SecretKey::sum([&keys[0], &keys[2]]).sign(msg.signed_bytes().as_bytes());
    set.verify(&msg.to_json(), &sig.to_string(), &["0xb".into()])
        .unwrap();
    // Without 0xa (3/4.5 = 67% missing) it does not.
    let sig = SecretKey::sum([&keys[1], &keys[2]]).sign(msg.signed_bytes().as_bytes());
    assert!(set
        .verify(&msg.to_json(), &sig.to_string(), &[big.into()])
        .is_err());
    srv.shutdown().await;
}

#[tokio::test]
async fn subgraph_errors_are_clear() {
    let fake = Arc::new(Fake {
        queries: Mutex::new(Vec::new()),
        operators: json!([{"id": "0x1", "stake": "1"}]),
    });
    let srv = serve_router(
        Router::new()
            .route("/graphql", post(graphql))
            .with_state(fake),
    );
    let sg = Subgraph::new(format!("{}/graphql", srv.url), 67.0);
    let err = sg.operators(Some(5)).await.unwrap_err();
    assert!(err.to_string().contains("malformed"), "{err}");
    let sg = Subgraph::new(format!("{}/nope", srv.url), 67.0);
    let err = sg.current_tag().await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    srv.shutdown().await;
}
