//! Webhooks on applied (quorum-signed) transitions.
//!
//! Every transition this replica applies while it is live (not replaying history)
//! goes to each configured webhook whose target filter matches, as a JSON body — the
//! event with its quorum proof, or an Alertmanager-compatible body — signed with
//! HMAC-SHA256 (`X-Livenessd-Signature: sha256=<hex>`) when the webhook has a
//! secret. Each webhook has a bounded queue and its own delivery task retrying with
//! backoff: a slow or dead receiver never slows replication; what does not fit or
//! cannot be delivered is counted (`livenessd_webhook_notifications_total{result}`).

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::{WebhookConfig, WebhookFormat};
use crate::events::NodeState;
use crate::metrics;
use crate::stats::AppliedEvent;
use crate::timefmt::rfc3339;

/// One notification, ready to send.
#[derive(Debug, Clone)]
pub struct Notification {
    pub body: Vec<u8>,
    pub address: String,
}

/// A webhook's filter and queue (its delivery task holds the rest).
struct Hook {
    cfg: WebhookConfig,
    tx: mpsc::Sender<Notification>,
}

/// The body of a notification in livenessd's own format.
pub fn livenessd_body(node_id: &str, node_url: &str, a: &AppliedEvent) -> Value {
    let e = &a.event;
    json!({
        "kind": "livenessd.transition",
        "node_id": node_id,
        "address": e.address,
        "state": e.state,
        "timestamp": e.timestamp,
        "time": rfc3339(e.timestamp),
        "previous_state_since": a.previous_since,
        "zellular_index": a.zellular_index,
        "log_time": a.log_time,
        "network_version": a.network_version,
        // The quorum proof, as it went through Zellular: anyone can check it with
        // `livenessd verify` against the monitoring nodes' keys.
        "proof": e,
        "message": e.message(),
        "details": format!("{node_url}/targets/{}", e.address),
    })
}

/// The body of a notification as Alertmanager's webhook receiver sends it: `down`
/// fires `LivenessdTargetDown`, `up` resolves it.
pub fn alertmanager_body(node_id: &str, node_url: &str, a: &AppliedEvent) -> Value {
    let e = &a.event;
    let firing = e.state == NodeState::Down;
    let labels = json!({
        "alertname": "LivenessdTargetDown",
        "address": e.address,
        "severity": "critical",
        "source": "livenessd",
    });
    let starts = if firing {
        e.timestamp
    } else {
        a.previous_since.unwrap_or(e.timestamp)
    };
    let alert = json!({
        "status": if firing { "firing" } else { "resolved" },
        "labels": labels,
        "annotations": {
            "summary": format!("{} is {} (quorum-signed)", e.address, e.state),
            "description": format!(
                "A stake quorum of monitoring nodes signed that {} went {} at {}; node {} applied it at Zellular index {}.",
                e.address, e.state, rfc3339(e.timestamp), node_id, a.zellular_index
            ),
            "aggregated_signature": e.aggregated_signature,
            "non_signing_nodes": e.non_signing_nodes.join(","),
        },
        "startsAt": rfc3339(starts),
        "endsAt": if firing { "0001-01-01T00:00:00Z".to_owned() } else { rfc3339(e.timestamp) },
        "generatorURL": format!("{node_url}/targets/{}", e.address),
        "fingerprint": &crate::zellular::chain::xxh128_hex(format!("LivenessdTargetDown|{}", e.address).as_bytes())[..16],
    });
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{address=\"{}\"}}", e.address),
        "truncatedAlerts": 0,
        "status": alert["status"],
        "receiver": "livenessd",
        "groupLabels": {"address": e.address},
        "commonLabels": labels,
        "commonAnnotations": alert["annotations"],
        "externalURL": node_url,
        "alerts": [alert],
    })
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body).
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Runs the webhooks until `stop`: one queue and one delivery task each.
pub async fn run(
    hooks: Vec<WebhookConfig>,
    queue: usize,
    node_id: String,
    node_url: String,
    roots: crate::http_client::Roots,
    mut applied: broadcast::Receiver<AppliedEvent>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let http = crate::http_client::builder_with(&roots)
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut live = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for cfg in hooks {
        let secret = match &cfg.secret_file {
            Some(p) => Some(
                crate::keyfile::read_secret(p)
                    .map_err(|e| anyhow::anyhow!("notify.webhooks secret_file: {e}"))?
                    .trim()
                    .as_bytes()
                    .to_vec(),
            ),
            None => None,
        };
        let (tx, rx) = mpsc::channel(queue.max(1));
        tasks.spawn(deliver(http.clone(), cfg.clone(), secret, rx, stop.clone()));
        live.push(Hook { cfg, tx });
    }
    loop {
        let a = tokio::select! {
            _ = stop.cancelled() => break,
            a = applied.recv() => a,
        };
        let a = match a {
            Ok(a) => a,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                metrics::webhook_notifications("dropped_lagged", n);
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        if !a.live {
            continue;
        }
        for h in &live {
            if !h.cfg.targets.is_empty() && !h.cfg.targets.contains(&a.event.address) {
                continue;
            }
            let body = match h.cfg.format {
                WebhookFormat::Livenessd => livenessd_body(&node_id, &node_url, &a),
                WebhookFormat::Alertmanager => alertmanager_body(&node_id, &node_url, &a),
            };
            let n = Notification {
                body: body.to_string().into_bytes(),
                address: a.event.address.clone(),
            };
            if h.tx.try_send(n).is_err() {
                metrics::webhook_notifications("dropped_queue_full", 1);
            }
        }
    }
    drop(live);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Delivers one webhook's notifications in order, retrying each with backoff.
async fn deliver(
    http: reqwest::Client,
    cfg: WebhookConfig,
    secret: Option<Vec<u8>>,
    mut rx: mpsc::Receiver<Notification>,
    stop: CancellationToken,
) {
    while let Some(n) = tokio::select! {
        _ = stop.cancelled() => None,
        n = rx.recv() => n,
    } {
        let mut delay = Duration::from_millis(cfg.retry_initial_ms.max(1));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = http
                .post(&cfg.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-Livenessd-Event", "transition")
                .body(n.body.clone());
            if let Some(s) = &secret {
                req = req.header("X-Livenessd-Signature", signature(s, &n.body));
            }
            let result = req.send().await;
            match result {
                Ok(r) if r.status().is_success() => {
                    metrics::webhook_notifications("delivered", 1);
                    break;
                }
                other => {
                    let why = match other {
                        Ok(r) => format!("HTTP {}", r.status().as_u16()),
                        Err(e) => e.to_string(),
                    };
                    if attempt >= cfg.max_attempts.max(1) {
                        metrics::webhook_notifications("undeliverable", 1);
                        tracing::warn!(url = %redact(&cfg.url), address = %n.address, attempts = attempt,
                            error = %why, "webhook notification given up");
                        break;
                    }
                    metrics::webhook_notifications("retried", 1);
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
        }
    }
}

/// A URL without its query (tokens often live there), for logs.
fn redact(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or("").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
