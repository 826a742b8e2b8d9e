//! What an SRE plugs in: /metrics parsed by a real OpenMetrics parser, with every
//! family the alert rules and the dashboard use; SVG badges that are valid SVG;
//! webhooks with the event, its proof and an HMAC signature (and an Alertmanager
//! body); indented JSON on request.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use common::cluster::{Cluster, T0};
use common::*;
use livenessd::config::{WebhookConfig, WebhookFormat};
use serde_json::{json, Value};

fn repo(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// Every `livenessd_…` / `process_…` metric name a file mentions, without the
/// suffixes of histogram series.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["livenessd_", "process_"] {
        for (i, _) in text.match_indices(prefix) {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name)
                .to_owned();
            out.insert(base);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_openmetrics_and_hold_every_family_the_rules_and_dashboard_use() {
    let c = Cluster::start_manual(2, 2, Box::new(|i, cfg| cfg.aggregator = i == 0)).await;
    let ids: Vec<&Identity> = c.ids.iter().collect();
    let a = Cluster::address(0);
    c.submit(&json!([signed_event(&ids, &[], &a, "down", T0 - 10)]).to_string())
        .await;
    c.submit("[1]").await; // one rejected item, so the family has a sample
    c.targets[1].set(503); // failed probes, so their family has samples
    c.advance(0).await;
    // The stats cache refreshes after applied events.
    eventually(10, "target_up and probe failures sampled", || async {
        livenessd::metrics::sample("livenessd_target_up", &[("address", &a)]) == Some(0.0)
            && livenessd::metrics::render().contains("livenessd_probe_failures_total{")
    })
    .await;
    let r = c
        .http
        .get(format!("{}/metrics", c.nodes[0].as_ref().unwrap().url))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = r.text().await.unwrap();
    let exposition = openmetrics_parser::openmetrics::parse_openmetrics(&text)
        .unwrap_or_else(|e| panic!("not valid OpenMetrics: {e:?}\n{text}"));
    let families: BTreeSet<String> = exposition.families.keys().cloned().collect();
    // HELP and TYPE on every family, the livenessd_ prefix, base units.
    for f in &families {
        assert!(text.contains(&format!("# HELP {f} ")), "no HELP for {f}");
        assert!(text.contains(&format!("# TYPE {f} ")), "no TYPE for {f}");
        assert!(
            f.starts_with("livenessd_") || f.starts_with("process_"),
            "{f}"
        );
        assert!(
            !f.contains("_ms") && !f.contains("percent"),
            "base units: {f}"
        );
    }
    // The series names a query uses: counters end in _total.
    let series: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let name: String = l.chars().take_while(|c| *c != '{' && *c != ' ').collect();
            ["_bucket", "_count", "_sum", "_created"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name)
                .to_owned()
        })
        .collect();
    for name in [
        "livenessd_target_up",
        "livenessd_probe_success",
        "livenessd_probe_duration_seconds",
        "livenessd_probe_failures_total",
        "livenessd_target_uptime_ratio",
        "livenessd_zellular_index",
        "livenessd_log_time_lag_seconds",
        "livenessd_since_last_sync_point_seconds",
        "livenessd_events_applied_total",
        "livenessd_events_rejected_total",
        "livenessd_http_requests_total",
        "livenessd_http_request_duration_seconds",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(series.contains(name), "{name} missing from /metrics");
    }
    // Every metric the alert rules and the dashboard query is one this node
    // serves. Families appear with their first sample; these have none in this
    // small network yet, so one is recorded in each (this test process only).
    livenessd::metrics::zellular_request_error("test");
    livenessd::metrics::aggregator_no_quorum();
    livenessd::metrics::aggregator_event_posted(livenessd::events::NodeState::Down);
    livenessd::metrics::heartbeat_posted();
    livenessd::metrics::event_duplicate();
    livenessd::metrics::http_rate_limited("test");
    let text = livenessd::metrics::render();
    let declared: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .flat_map(|f| [f.to_owned(), format!("{f}_total")])
        .collect();
    for file in [
        "deploy/monitoring/alerts.yaml",
        "deploy/monitoring/dashboard.json",
    ] {
        for m in metric_names(&repo(file)) {
            assert!(
                declared.contains(&m),
                "{file} uses {m}, which /metrics does not declare"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn badges_are_valid_svg_and_json_is_indented_on_request() {
    let c = Cluster::start_manual(1, 1, Box::new(|_, _| {})).await;
    c.advance(0).await;
    let base = c.nodes[0].as_ref().unwrap().url.clone();
    let a = Cluster::address(0);
    // Monitoring began with the heartbeat; the figures follow within seconds.
    eventually(10, "the badge shows the target up", || async {
        match c.http.get(format!("{base}/badge/{a}.svg")).send().await {
            Ok(r) if r.status() == 200 => r.text().await.unwrap_or_default().contains(">up"),
            _ => false,
        }
    })
    .await;
    let r = c
        .http
        .get(format!("{base}/badge/{a}.svg"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    let svg = r.text().await.unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    assert!(svg.contains(&a) && svg.contains("up"), "{svg}");
    assert_eq!(
        c.http
            .get(format!("{base}/badge/0xNobody.svg"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // The status page lists the target; JSON answers indent with ?pretty.
    let page = c
        .http
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&format!("data-address=\"{a}\"")), "{page}");
    let pretty = c
        .http
        .get(format!("{base}/v1/position?pretty"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(pretty.contains("\n  \"index\": "), "{pretty}");
    let compact = c
        .http
        .get(format!("{base}/v1/position"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!compact.contains('\n'));
}

/// What a receiver got: each body with its signature header.
type Received = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A webhook receiver that keeps every body and its signature header.
fn receiver() -> (Running, Received) {
    use axum::http::HeaderMap;
    let got: Received = Default::default();
    let g = got.clone();
    let srv = serve_router(axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: HeaderMap, body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                let sig = h
                    .get("x-livenessd-signature")
                    .map(|v| v.to_str().unwrap().to_owned());
                let v: Value = serde_json::from_slice(&body).unwrap();
                // The signature is over the exact bytes received.
                if let Some(s) = &sig {
                    assert_eq!(*s, livenessd::notify::signature(b"s3cret", &body));
                }
                g.lock().unwrap().push((sig, v));
                "ok"
            }
        }),
    ));
    (srv, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_transitions_are_posted_to_webhooks_signed_and_filtered() {
    let (hook, got) = receiver();
    let received = got.clone();
    let (am, got_am) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hook.secret");
    livenessd::keyfile::write_secret(&secret, "s3cret\n").unwrap();
    let (url, am_url) = (format!("{}/hook", hook.url), format!("{}/hook", am.url));
    let mut c = Cluster::start_manual(
        3,
        2,
        Box::new(move |i, cfg| {
            if i == 0 {
                cfg.notify.webhooks = vec![
                    WebhookConfig {
                        url: url.clone(),
                        secret_file: Some(secret.clone()),
                        targets: vec![],
                        format: WebhookFormat::Livenessd,
                        max_attempts: 3,
                        retry_initial_ms: 50,
                    },
                    WebhookConfig {
                        url: am_url.clone(),
                        secret_file: None,
                        // Only the second target.
                        targets: vec![Cluster::address(1)],
                        format: WebhookFormat::Alertmanager,
                        max_attempts: 3,
                        retry_initial_ms: 50,
                    },
                ];
            }
        }),
    )
    .await;
    c.advance(0).await;
    let owned_ids: Vec<Identity> = (1..=3).map(Identity::new).collect();
    let ids: Vec<&Identity> = owned_ids.iter().collect();
    let (a0, a1) = (Cluster::address(0), Cluster::address(1));
    c.submit(
        &json!([
            signed_event(&ids, &[], &a0, "down", T0 - 5),
            signed_event(&ids, &[], &a1, "down", T0 - 4)
        ])
        .to_string(),
    )
    .await;
    c.submit(&json!([signed_event(&ids, &[], &a1, "up", T0 - 1)]).to_string())
        .await;
    c.settle().await;
    eventually(10, "three notifications and two alerts", || async {
        got.lock().unwrap().len() == 3 && got_am.lock().unwrap().len() == 2
    })
    .await;
    let got = got.lock().unwrap().clone();
    // Signed, in log order, each with a proof anyone can verify.
    let set = livenessd::events::MonitorSet::new(
        &c.config(0).monitoring_nodes,
        &[],
        livenessd::config::Threshold::TWO_THIRDS,
    )
    .unwrap();
    let states: Vec<(String, String)> = got
        .iter()
        .map(|(sig, v)| {
            assert!(sig.as_deref().is_some_and(|s| s.starts_with("sha256=")));
            assert_eq!(v["kind"], "livenessd.transition");
            let proof = &v["proof"];
            let e = livenessd::events::Event::from_value(proof).unwrap();
            set.verify_quorum(&e.message(), &e.aggregated_signature, &e.non_signing_nodes)
                .unwrap();
            (
                v["address"].as_str().unwrap().to_owned(),
                v["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            (a0.clone(), "down".into()),
            (a1.clone(), "down".into()),
            (a1.clone(), "up".into())
        ]
    );
    // The Alertmanager-style receiver saw only its target: firing, then resolved.
    let am = got_am.lock().unwrap().clone();
    let status: Vec<&str> = am
        .iter()
        .map(|(_, v)| v["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, vec!["firing", "resolved"]);
    assert_eq!(am[0].1["alerts"][0]["labels"]["address"], a1.as_str());
    assert_eq!(
        am[0].1["alerts"][0]["labels"]["alertname"],
        "LivenessdTargetDown"
    );
    assert!(am[0].0.is_none(), "no secret: no signature header");

    // History is not news: while node 0 is stopped, one transition is finalized
    // more than the freshness bound (30 s) before it comes back, one just before.
    // It applies both; it announces only the recent one.
    c.stop_node(0).await;
    c.submit(&json!([signed_event(&ids, &[], &a0, "up", T0)]).to_string())
        .await;
    // Finalized (the running nodes applied it) before the clock moves on.
    c.settle().await;
    c.advance(60).await;
    c.submit(&json!([signed_event(&ids, &[], &a1, "down", T0 + 59)]).to_string())
        .await;
    c.settle().await;
    c.restart_node(0).await;
    c.settle().await;
    assert_eq!(
        c.items(0, "/v1/targets").await[0]["state"],
        "up",
        "the old transition is applied"
    );
    eventually(10, "the recent transition announced", || async {
        received.lock().unwrap().len() >= 4
    })
    .await;
    let after: Vec<(String, String)> = received.lock().unwrap()[3..]
        .iter()
        .map(|(_, v)| {
            (
                v["address"].as_str().unwrap().to_owned(),
                v["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(after, vec![(a1.clone(), "down".to_owned())]);
    eventually(10, "deliveries counted", || async {
        livenessd::metrics::sample(
            "livenessd_webhook_notifications_total",
            &[("result", "delivered")],
        )
        .unwrap_or(0.0)
            >= 5.0
    })
    .await;
}
