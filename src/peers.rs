//! Calls to the other monitoring nodes, and the one way their signatures are
//! gathered: ask every peer at once (random order), verify each answer against that
//! peer's key over the message this node expects, stop as soon as the signers' stake
//! reaches the quorum.
//!
//! Nothing a peer sends is trusted: an answer counts only if it says exactly what
//! this node would sign and its signature verifies for that peer's key.

use std::collections::HashSet;
use std::time::Duration;

use rand::seq::SliceRandom;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use crate::crypto::bls::Signature;
use crate::events::{Monitor, MonitorSet};
use crate::metrics;

/// The largest answer read from another monitoring node.
pub const MAX_PEER_ANSWER_BYTES: usize = 64 << 10;

/// A client for the other monitoring nodes' HTTP APIs. Cheap to clone.
#[derive(Clone)]
pub struct Peers {
    http: reqwest::Client,
    /// Per-call timeout: a silent peer must not hold a quorum collection.
    timeout: Duration,
}

/// What one peer said, once decoded.
pub enum Answer<T> {
    /// A 2xx answer that decoded as `T`.
    Ok(T),
    /// Any other status, with the `detail` of its body (e.g. `425` not yet settled).
    Refused { status: u16, detail: String },
    /// No usable answer: transport error, timeout, oversized or undecodable body.
    Failed(String),
}

/// The signatures gathered for one message.
#[derive(Debug, Default)]
pub struct Gathered {
    /// Verified signatures, this node's own first.
    pub signatures: Vec<Signature>,
    /// Ids of the signers, in the same order.
    pub signers: Vec<String>,
    /// Their stake.
    pub stake: f64,
    /// Peers that answered but did not sign, with why (status and detail).
    pub refusals: Vec<(String, String)>,
}

impl Gathered {
    /// The ids of every monitoring node that did not sign, in set order.
    pub fn non_signers(&self, set: &MonitorSet) -> Vec<String> {
        let signed: HashSet<&str> = self.signers.iter().map(String::as_str).collect();
        set.nodes()
            .iter()
            .filter(|m| !signed.contains(m.id.as_str()))
            .map(|m| m.id.clone())
            .collect()
    }

    /// The aggregate of the gathered signatures.
    pub fn aggregate(&self) -> Option<Signature> {
        Signature::aggregate(&self.signatures)
    }
}

/// What is being collected: signatures of `set`'s nodes over `msg`, by node `me`.
pub struct Collection<'a> {
    pub set: &'a MonitorSet,
    pub me: &'a str,
    pub msg: &'a [u8],
    /// Stop as soon as the signers' stake reaches the quorum (else wait for all).
    pub stop_at_quorum: bool,
}

impl Peers {
    pub fn new(timeout: Duration, roots: &crate::http_client::Roots) -> Self {
        let http = crate::http_client::builder_with(roots)
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        Peers { http, timeout }
    }

    /// `GET {url}{path}?{query}` on one peer, its JSON answer decoded (bounded).
    pub async fn get<T: DeserializeOwned>(
        &self,
        url: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Answer<T> {
        let r = self
            .http
            .get(format!("{url}{path}"))
            .query(query)
            .timeout(self.timeout)
            .send()
            .await;
        match r {
            Ok(r) => read_answer(r).await,
            Err(e) => Answer::Failed(e.to_string()),
        }
    }

    /// `POST {url}{path}` with a JSON body on one peer, its JSON answer decoded.
    pub async fn post<T: DeserializeOwned>(
        &self,
        url: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Answer<T> {
        let r = self
            .http
            .post(format!("{url}{path}"))
            .json(body)
            .timeout(self.timeout)
            .send()
            .await;
        match r {
            Ok(r) => read_answer(r).await,
            Err(e) => Answer::Failed(e.to_string()),
        }
    }

    /// Gathers signatures over `msg` from the peers of `set` (every node but `me`),
    /// starting from this node's `own` signature, until every peer has answered
    /// or — with `stop_at_quorum` — the signers' stake reaches the quorum.
    ///
    /// `ask(peers, monitor)` calls one peer; `signature_of(answer)` returns the
    /// signature (hex) the answer carries if, and only if, the answer says exactly
    /// what this node expects — anything else is not counted.
    pub async fn gather<T, Ask, Fut, Check>(
        &self,
        c: Collection<'_>,
        own: Signature,
        ask: Ask,
        signature_of: Check,
    ) -> Gathered
    where
        T: Send + 'static,
        Ask: Fn(Peers, Monitor) -> Fut,
        Fut: std::future::Future<Output = Answer<T>> + Send + 'static,
        Check: Fn(&T) -> Result<String, String>,
    {
        let Collection {
            set,
            me,
            msg,
            stop_at_quorum,
        } = c;
        let mut g = Gathered {
            stake: set.get(me).map_or(0.0, |m| m.stake),
            signatures: vec![own],
            signers: vec![me.to_owned()],
            refusals: Vec::new(),
        };
        let mut peers: Vec<&Monitor> = set.nodes().iter().filter(|m| m.id != me).collect();
        peers.shuffle(&mut rand::thread_rng());
        let mut asks = JoinSet::new();
        for m in peers {
            let fut = ask(self.clone(), m.clone());
            let id = m.id.clone();
            asks.spawn(async move { (id, fut.await) });
        }
        while !(stop_at_quorum && set.quorum_reached(g.stake)) {
            let Some(joined) = asks.join_next().await else {
                break;
            };
            let Ok((id, answer)) = joined else { continue };
            let Some(m) = set.get(&id) else { continue };
            let answer = match answer {
                Answer::Ok(a) => a,
                Answer::Refused { status, detail } => {
                    g.refusals.push((id, format!("{status}: {detail}")));
                    continue;
                }
                Answer::Failed(why) => {
                    g.refusals.push((id, why));
                    continue;
                }
            };
            let sig_hex = match signature_of(&answer) {
                Ok(s) => s,
                Err(why) => {
                    metrics::peer_answer_rejected("disagrees");
                    g.refusals.push((id, why));
                    continue;
                }
            };
            match Signature::from_hex(&sig_hex) {
                Ok(sig) if sig.verify(&m.public_key, msg) => {
                    if !g.signers.contains(&id) {
                        g.signatures.push(sig);
                        g.signers.push(id);
                        g.stake += m.stake;
                    }
                }
                _ => {
                    metrics::peer_answer_rejected("bad_signature");
                    tracing::warn!(peer = %id, "answer with a bad signature ignored");
                    g.refusals.push((id, "bad signature".into()));
                }
            }
        }
        // Quorum reached (or everyone answered): stop asking.
        asks.abort_all();
        g
    }
}

/// Reads a peer's answer, refusing bodies over [`MAX_PEER_ANSWER_BYTES`].
async fn read_answer<T: DeserializeOwned>(mut resp: reqwest::Response) -> Answer<T> {
    let status = resp.status();
    if resp
        .content_length()
        .is_some_and(|l| l as usize > MAX_PEER_ANSWER_BYTES)
    {
        metrics::peer_answer_rejected("too_large");
        return Answer::Failed("answer too large".into());
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_PEER_ANSWER_BYTES {
                    metrics::peer_answer_rejected("too_large");
                    return Answer::Failed("answer too large".into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Answer::Failed(e.to_string()),
        }
    }
    if !status.is_success() {
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("detail").map(|d| d.to_string()))
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into());
        return Answer::Refused {
            status: status.as_u16(),
            detail,
        };
    }
    match serde_json::from_slice(&body) {
        Ok(v) => Answer::Ok(v),
        Err(e) => Answer::Failed(format!("undecodable answer: {e}")),
    }
}
