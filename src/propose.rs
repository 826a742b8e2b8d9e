//! `livenessd network approve` and `livenessd network propose`: an operator
//! consents to a network change on its own node, and a proposer gathers the
//! approving nodes' signatures (a stake quorum of the set in force, as the
//! aggregator gathers them for events) and posts the signed change to Zellular.
//! Every replica applies it at its position in the log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

use crate::config::NodeConfig;
use crate::crypto::bls::Signature;
use crate::events::MonitorSet;
use crate::network::{ChangeSignature, Definition, Proposal, SignedChange};
use crate::peers::{Answer, Collection, Peers};

/// The network in force, as this operator's own node reports it.
pub struct InForce {
    pub id: String,
    pub version: u64,
    pub definition: Definition,
    pub monitors: Arc<MonitorSet>,
}

/// The URL this node's API answers on, from its configuration (its own entry's
/// URL if it is a member, else its listen address).
pub fn own_url(cfg: &NodeConfig) -> String {
    if let Some(n) = cfg.monitoring_nodes.iter().find(|n| n.id == cfg.node_id) {
        return n.url.clone();
    }
    let mut l = cfg.listen;
    if l.ip().is_unspecified() {
        l.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{l}")
}

/// Asks `url` for the network in force.
pub async fn in_force(peers: &Peers, url: &str) -> anyhow::Result<InForce> {
    let v: Value = match peers.get(url, "/v1/network", &[]).await {
        Answer::Ok(v) => v,
        Answer::Refused { status, detail } => bail!("{url}/v1/network: {status}: {detail}"),
        Answer::Failed(why) => bail!("{url}/v1/network: {why} (is the node running?)"),
    };
    let definition: Definition = serde_json::from_value(serde_json::json!({
        "monitoring_nodes": v["monitoring_nodes"],
        "allow_without_pop": v["allow_without_pop"],
        "targets": v["targets"],
        "quorum_threshold": v["quorum_threshold"],
    }))
    .with_context(|| format!("{url}/v1/network: unexpected answer"))?;
    let monitors = Arc::new(definition.monitor_set()?);
    Ok(InForce {
        id: v["network"].as_str().unwrap_or_default().to_owned(),
        version: v["version"].as_u64().unwrap_or(0),
        definition,
        monitors,
    })
}

/// Gathers a quorum of approving nodes' signatures over `p` (this operator's own
/// node first), posts the signed change and waits until the own node applied it.
pub async fn propose(
    cfg: &NodeConfig,
    p: &Proposal,
    wait: Duration,
) -> anyhow::Result<SignedChange> {
    let roots = crate::http_client::Roots::from_files(&cfg.tls.ca_files).context("tls.ca_files")?;
    let peers = Peers::new(Duration::from_millis(cfg.http.peer_timeout_ms), &roots);
    let url = own_url(cfg);
    let net = in_force(&peers, &url).await?;
    if p.network != net.id {
        bail!(
            "the change is for network {}, but {url} is in network {}",
            p.network,
            net.id
        );
    }
    if p.version != net.version + 1 {
        bail!(
            "the change makes version {}, but version {} is in force: a change makes the next one \
             (write it again against the network in force)",
            p.version,
            net.version
        );
    }
    let msg = p.message();
    let body = serde_json::to_value(p)?;
    // This operator's own node signs first: only if this operator approved it.
    let own: ChangeSignature = match peers.post(&url, "/v1/network/sign", &body).await {
        Answer::Ok(s) => s,
        Answer::Refused { status, detail } => {
            bail!("this node ({url}) does not sign: {status}: {detail}")
        }
        Answer::Failed(why) => bail!("this node ({url}): {why}"),
    };
    let own = Signature::from_hex(&own.signature)
        .map_err(|e| anyhow!("this node's signature does not decode: {e}"))?;
    let g = peers
        .gather(
            Collection {
                set: &net.monitors,
                me: &cfg.node_id,
                msg: msg.as_bytes(),
                stop_at_quorum: false,
            },
            own,
            move |peers, m| {
                let body = body.clone();
                async move {
                    peers
                        .post::<ChangeSignature>(&m.url, "/v1/network/sign", &body)
                        .await
                }
            },
            |s: &ChangeSignature| Ok(s.signature.clone()),
        )
        .await;
    for (id, why) in &g.refusals {
        eprintln!("  {id} did not sign: {why}");
    }
    if !net.monitors.quorum_reached(g.stake) {
        bail!(
            "no quorum: nodes holding {} of {} stake signed ({}); a change applies only with the \
             approval of a quorum of the operators in force",
            g.stake,
            net.monitors.total_stake(),
            g.signers.join(", ")
        );
    }
    let signed = SignedChange::new(
        p.clone(),
        g.aggregate().expect("own signature").to_hex(),
        g.non_signers(&net.monitors),
    );
    let (client, _) = crate::node::zellular_client(cfg).await?;
    client
        .submit(&serde_json::json!([signed]).to_string())
        .await
        .map_err(|e| anyhow!("posting the change to Zellular: {e}"))?;
    eprintln!(
        "  signed by {} ({} of {} stake); posted; waiting for {url} to apply it",
        g.signers.join(", "),
        g.stake,
        net.monitors.total_stake()
    );
    let started = Instant::now();
    loop {
        if let Ok(now) = in_force(&peers, &url).await {
            if now.version >= p.version {
                return Ok(signed);
            }
        }
        if started.elapsed() > wait {
            bail!(
                "posted, but {url} had not applied version {} after {} s (it applies the change \
                 once the sequencer finalizes it; check GET /v1/network later)",
                p.version,
                wait.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
