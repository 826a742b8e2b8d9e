//! HTTPS in the default build: a target and a gateway served over TLS with a
//! certificate made by the test's own CA. Trusted through `tls.ca_files`, they
//! work; untrusted, a probe fails with a TLS cause — never a silent "connection
//! failed".

mod common;

use common::cluster::{Cluster, T0};
use common::*;
use livenessd::config::NodeConfig;
use serde_json::json;

fn health_router() -> axum::Router {
    axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_target_and_gateway_work_and_an_untrusted_certificate_is_a_tls_failure() {
    let ca = TestCa::new();
    let target = ca.serve(health_router());
    let target_url = format!("{}/health", target.url);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write(dir.path());
    // The dev sequencer's own API, also served over TLS: the gateway of node 1.
    let holder: std::sync::Arc<std::sync::Mutex<Option<Running>>> = Default::default();
    let h2 = holder.clone();
    let ca_for_nodes = ca_file.clone();
    let c = Cluster::start_manual(
        2,
        1,
        Box::new(move |i, cfg: &mut NodeConfig| {
            cfg.targets[0].http = Some(target_url.clone());
            if i == 0 {
                cfg.tls.ca_files = vec![ca_for_nodes.clone()];
                if let Some(gw) = h2.lock().unwrap().as_ref() {
                    cfg.zellular.gateways = vec![gw.url.clone()];
                }
            }
        }),
    )
    .await;
    let tls_gateway = ca.serve(c.seq.as_ref().unwrap().router());
    *holder.lock().unwrap() = Some(tls_gateway);
    let mut c = c;
    // Restart node 1 so it reads through the TLS gateway.
    c.stop_node(0).await;
    c.restart_node(0).await;
    let ids: Vec<&Identity> = c.ids.iter().collect();
    let a = Cluster::address(0);
    let event = json!([signed_event(&ids, &[], &a, "down", T0 - 5)]).to_string();
    c.submit(&event).await;
    c.settle().await;
    // Node 1 read and verified the stream through the HTTPS gateway.
    assert_eq!(c.position(0).await["events_count"], 1);
    assert_eq!(
        c.position(0).await["events_digest"],
        c.position(1).await["events_digest"]
    );
    // Node 1 trusts the CA: the HTTPS target is up.
    eventually(10, "node 1 probes the https target up", || async {
        c.items(0, "/v1/targets").await[0]["local"]["state"] == "up"
            && c.items(0, "/v1/targets").await[0]["local"]["last_probe"]["health"] == "up"
    })
    .await;
    let now = c.clock.now();
    let (status, att) = c
        .get(0, &format!("/state?address={a}&timestamp={now}"))
        .await;
    assert_eq!((status, att["state"].as_str()), (200, Some("up")));
    // Node 2 does not: every probe fails, and says it is TLS.
    eventually(10, "node 2 sees a TLS failure", || async {
        let t = &c.items(1, "/v1/targets").await[0];
        t["local"]["last_failure"]["cause"]["kind"] == "tls" && t["local"]["state"] == "down"
    })
    .await;
    let t = &c.items(1, "/v1/targets").await[0];
    assert_eq!(t["local"]["state"], "down", "{t}");
    let text = t["local"]["last_failure"]["text"].as_str().unwrap();
    assert!(text.starts_with("TLS"), "{text}");
}
