//! The sequencer client: submit batches, and read the finalized stream with every
//! chaining hash recomputed and every finality signature verified.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::de::DeserializeOwned;

use super::chain;
use super::finality::FinalityMessage;
use super::operators::{FinalityError, OperatorSource};
use super::wire::{Envelope, FinalizedBatches, StatefulBatch};
use crate::metrics;

/// How the client talks to gateways.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The Zellular app whose sequence is read and written.
    pub app: String,
    /// Base URLs (`http://host:port`), tried in order; a failing one hands over to the next.
    pub gateways: Vec<String>,
    /// Per-request timeout, so a stalled gateway cannot hold the stream.
    pub request_timeout: Duration,
    /// First retry delay after a transport error or 5xx; doubles up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Attempts (over all gateways) before a transient failure is returned.
    pub max_attempts: u32,
    /// Poll delay while the gateway has nothing new: starts here, doubles to `poll_max`.
    pub poll_min: Duration,
    pub poll_max: Duration,
    /// A larger gateway answer is refused (a lying gateway cannot exhaust memory).
    pub max_response_bytes: usize,
    /// Batches read but not yet covered by a finality signature are held up to this size.
    pub max_pending_bytes: usize,
    /// Extra certificate roots for HTTPS gateways.
    pub roots: crate::http_client::Roots,
}

impl ClientConfig {
    pub fn new(app: impl Into<String>, gateways: Vec<String>) -> Self {
        ClientConfig {
            app: app.into(),
            gateways: gateways
                .into_iter()
                .map(|g| g.trim_end_matches('/').to_owned())
                .collect(),
            request_timeout: Duration::from_secs(10),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            max_attempts: 8,
            poll_min: Duration::from_millis(20),
            poll_max: Duration::from_millis(1000),
            // zsequencer caps one answer at about 10 MB (divided by its node count).
            max_response_bytes: 16 << 20,
            max_pending_bytes: 32 << 20,
            roots: Default::default(),
        }
    }
}

/// A failed request to a gateway.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    #[error("{gateway}: connection failed: {detail}")]
    Transport { gateway: String, detail: String },
    #[error("{gateway}: HTTP {status}: {message}")]
    Status {
        gateway: String,
        status: u16,
        message: String,
    },
    #[error("{gateway}: malformed answer: {detail}")]
    Malformed { gateway: String, detail: String },
    #[error("no gateway configured")]
    NoGateway,
}

impl RequestError {
    /// The gateway does not know the app (zsequencer: 400 `Invalid app name.`): a
    /// configuration error, not an outage. Returns the gateway's message.
    pub fn unknown_app(&self) -> Option<&str> {
        match self {
            RequestError::Status {
                status: 400,
                message,
                ..
            } if message.contains("Invalid app name") => Some(message),
            _ => None,
        }
    }

    /// Worth retrying (maybe at another gateway): transport errors, 5xx, garbage.
    pub fn is_transient(&self) -> bool {
        match self {
            RequestError::Transport { .. } | RequestError::Malformed { .. } => true,
            RequestError::Status { status, .. } => *status >= 500 || *status == 429,
            RequestError::NoGateway => false,
        }
    }
}

/// Why the finalized stream stopped. Integrity errors (`ChainMismatch`, `BadSignature`)
/// are permanent: the stream returns the same error on every later call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StreamError {
    #[error("gateway unavailable: {0}")]
    Request(#[from] RequestError),
    #[error(
        "chaining hash mismatch at index {index}: recomputed {computed}, gateway says {claimed}"
    )]
    ChainMismatch {
        index: u64,
        computed: String,
        claimed: String,
    },
    #[error("finality signature at index {index} rejected: {source}")]
    BadSignature { index: u64, source: FinalityError },
    #[error("operator set for index {index} unavailable: {detail}")]
    OperatorSet { index: u64, detail: String },
    #[error(
        "gateway sent {bytes} bytes of batches after index {index} with no finality signature"
    )]
    Unproven { index: u64, bytes: usize },
}

impl StreamError {
    /// The gateway does not know the app: see [`RequestError::unknown_app`].
    pub fn unknown_app(&self) -> Option<&str> {
        match self {
            StreamError::Request(r) => r.unknown_app(),
            _ => None,
        }
    }

    /// An integrity failure: the gateway lied; the stream will not go on.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            StreamError::ChainMismatch { .. } | StreamError::BadSignature { .. }
        )
    }

    /// The sequence index the error is about, if any.
    pub fn index(&self) -> Option<u64> {
        match self {
            StreamError::ChainMismatch { index, .. }
            | StreamError::BadSignature { index, .. }
            | StreamError::OperatorSet { index, .. }
            | StreamError::Unproven { index, .. } => Some(*index),
            StreamError::Request(_) => None,
        }
    }
}

/// Why a submission failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    #[error("batch rejected: {0}")]
    Rejected(RequestError),
    #[error("no gateway accepted the batch: {0}")]
    Unavailable(RequestError),
}

/// A position in the finalized sequence: the last applied index and, when known, its
/// chaining hash (`""` at index 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub index: u64,
    pub chaining_hash: Option<String>,
}

impl Cursor {
    pub const fn genesis() -> Self {
        Cursor {
            index: 0,
            chaining_hash: None,
        }
    }

    pub fn at(index: u64, chaining_hash: impl Into<String>) -> Self {
        Cursor {
            index,
            chaining_hash: Some(chaining_hash.into()),
        }
    }

    fn known_chain(&self) -> Option<String> {
        if self.index == 0 {
            Some(String::new())
        } else {
            self.chaining_hash.clone()
        }
    }
}

/// One batch of the finalized sequence, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalizedBatch {
    pub index: u64,
    pub body: String,
    /// The timestamp of the finality signature that covers this batch.
    pub timestamp: i64,
    /// `chain_index`, to persist as the cursor.
    pub chaining_hash: String,
}

struct Inner {
    cfg: ClientConfig,
    http: reqwest::Client,
    /// Index into `cfg.gateways` of the gateway in use; moves on after a failure.
    current: AtomicUsize,
}

/// A Zellular client over a list of gateways. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Self {
        let http = crate::http_client::builder_with(&cfg.roots)
            .timeout(cfg.request_timeout)
            .pool_max_idle_per_host(4)
            .build()
            .unwrap_or_default();
        Client {
            inner: Arc::new(Inner {
                cfg,
                http,
                current: AtomicUsize::new(0),
            }),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    fn gateway(&self) -> Result<(usize, &str), RequestError> {
        let gws = &self.inner.cfg.gateways;
        if gws.is_empty() {
            return Err(RequestError::NoGateway);
        }
        let i = self.inner.current.load(Ordering::Relaxed) % gws.len();
        Ok((i, &gws[i]))
    }

    /// The gateway in use.
    pub fn current_gateway(&self) -> &str {
        self.gateway().map(|(_, g)| g).unwrap_or("")
    }

    /// Index into the configured gateways of the one in use.
    pub fn current_index(&self) -> usize {
        self.gateway().map(|(i, _)| i).unwrap_or(0)
    }

    /// Uses gateway `i` from now on.
    pub fn use_gateway(&self, i: usize) {
        let n = self.inner.cfg.gateways.len().max(1);
        self.inner.current.store(i % n, Ordering::Relaxed);
    }

    fn fail_over(&self, from: usize) {
        let n = self.inner.cfg.gateways.len().max(1);
        let _ = self.inner.current.compare_exchange(
            from,
            (from + 1) % n,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let cfg = &self.inner.cfg;
        let base = cfg
            .retry_initial
            .saturating_mul(1u32 << attempt.min(16))
            .min(cfg.retry_max);
        // ±20% jitter so many clients do not retry in lockstep.
        let jitter = rand::thread_rng().gen_range(0.8..1.2);
        base.mul_f64(jitter)
    }

    /// Runs `op` against the current gateway, failing over and backing off on
    /// transient errors, up to `max_attempts`.
    async fn with_retries<T, F, Fut>(
        &self,
        what: &'static str,
        mut op: F,
    ) -> Result<T, RequestError>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, RequestError>>,
    {
        let mut attempt = 0;
        loop {
            let (i, gw) = self.gateway()?;
            match op(gw.to_owned()).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && attempt + 1 < self.inner.cfg.max_attempts => {
                    metrics::zellular_request_error(what);
                    let delay = self.backoff(attempt);
                    tracing::warn!(op = what, error = %e, retry_in = ?delay, "gateway request failed; retrying");
                    self.fail_over(i);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => {
                    metrics::zellular_request_error(what);
                    // Next call goes elsewhere: one gateway that refuses (a 4xx from
                    // a misconfigured node, say) must not stall us while others work.
                    self.fail_over(i);
                    return Err(e);
                }
            }
        }
    }

    /// Reads a response body up to `max_response_bytes`.
    async fn read_body(
        &self,
        gw: &str,
        mut resp: reqwest::Response,
    ) -> Result<Vec<u8>, RequestError> {
        let limit = self.inner.cfg.max_response_bytes;
        let transport = |e: reqwest::Error| RequestError::Transport {
            gateway: gw.to_owned(),
            detail: e.to_string(),
        };
        if resp.content_length().is_some_and(|l| l as usize > limit) {
            return Err(RequestError::Malformed {
                gateway: gw.to_owned(),
                detail: format!("answer larger than {limit} bytes"),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > limit {
                return Err(RequestError::Malformed {
                    gateway: gw.to_owned(),
                    detail: format!("answer larger than {limit} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Sends a request and decodes the Zellular envelope's `data`.
    async fn call<T: DeserializeOwned>(
        &self,
        gw: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<Option<T>, RequestError> {
        let resp = req.send().await.map_err(|e| RequestError::Transport {
            gateway: gw.to_owned(),
            detail: e.to_string(),
        })?;
        let status = resp.status();
        let body = self.read_body(gw, resp).await?;
        if !status.is_success() {
            return Err(RequestError::Status {
                gateway: gw.to_owned(),
                status: status.as_u16(),
                message: error_message(&body),
            });
        }
        let env: Envelope<T> =
            serde_json::from_slice(&body).map_err(|e| RequestError::Malformed {
                gateway: gw.to_owned(),
                detail: e.to_string(),
            })?;
        if env.status != "success" {
            return Err(RequestError::Malformed {
                gateway: gw.to_owned(),
                detail: format!("status {:?}: {}", env.status, error_message(&body)),
            });
        }
        Ok(env.data)
    }

    /// `PUT /node/{app}/batches`: hands one batch to the sequencer.
    pub async fn submit(&self, batch: &str) -> Result<(), SubmitError> {
        let app = &self.inner.cfg.app;
        let res = self
            .with_retries("submit", |gw| {
                let req = self
                    .inner
                    .http
                    .put(format!("{gw}/node/{app}/batches"))
                    .header(reqwest::header::CONTENT_TYPE, "text/plain")
                    .body(batch.to_owned());
                async move { self.call::<serde_json::Value>(&gw, req).await.map(|_| ()) }
            })
            .await;
        match res {
            Ok(()) => {
                metrics::zellular_batch_submitted();
                Ok(())
            }
            Err(e) if e.is_transient() => Err(SubmitError::Unavailable(e)),
            Err(e) => Err(SubmitError::Rejected(e)),
        }
    }

    /// `GET /node/{app}/batches/finalized?after=N` (one answer, no verification).
    pub async fn fetch_finalized(
        &self,
        after: u64,
    ) -> Result<Option<FinalizedBatches>, RequestError> {
        let app = &self.inner.cfg.app;
        self.with_retries("finalized", |gw| {
            let req = self
                .inner
                .http
                .get(format!("{gw}/node/{app}/batches/finalized"))
                .query(&[("after", after)]);
            async move { self.call::<FinalizedBatches>(&gw, req).await }
        })
        .await
    }

    /// `GET /node/{app}/batches/finalized/last`, its finality signature verified.
    pub async fn last_finalized(
        &self,
        operators: &OperatorSource,
    ) -> Result<Option<StatefulBatch>, StreamError> {
        let app = &self.inner.cfg.app;
        let last = self
            .with_retries("last", |gw| {
                let req = self
                    .inner
                    .http
                    .get(format!("{gw}/node/{app}/batches/finalized/last"));
                async move { self.call::<StatefulBatch>(&gw, req).await }
            })
            .await?;
        self.verify_last(last, operators).await
    }

    /// [`Client::last_finalized`] from gateway `i` alone, once (no retry, no
    /// failover): to compare gateways.
    pub async fn last_finalized_at(
        &self,
        i: usize,
        operators: &OperatorSource,
    ) -> Result<Option<StatefulBatch>, StreamError> {
        let gw = self
            .inner
            .cfg
            .gateways
            .get(i)
            .ok_or(RequestError::NoGateway)?;
        let app = &self.inner.cfg.app;
        let req = self
            .inner
            .http
            .get(format!("{gw}/node/{app}/batches/finalized/last"));
        let last = self.call::<StatefulBatch>(gw, req).await?;
        self.verify_last(last, operators).await
    }

    async fn verify_last(
        &self,
        last: Option<StatefulBatch>,
        operators: &OperatorSource,
    ) -> Result<Option<StatefulBatch>, StreamError> {
        let app = &self.inner.cfg.app;
        let Some(last) = last else { return Ok(None) };
        let set = operators
            .at_tag(
                last.finalized_tag
                    .as_ref()
                    .unwrap_or(&serde_json::Value::Null),
            )
            .await
            .map_err(|e| StreamError::OperatorSet {
                index: last.index,
                detail: e.to_string(),
            })?;
        let msg = FinalityMessage {
            app_name: app,
            chaining_hash: &last.chaining_hash,
            index: last.index,
            parent_index: last.parent_index,
            state: "locked",
            timestamp: last.timestamp,
        };
        set.verify(
            &msg.to_json(),
            last.finalized_signature.as_deref().unwrap_or(""),
            last.finalized_nonsigners.as_deref().unwrap_or(&[]),
        )
        .map_err(|source| StreamError::BadSignature {
            index: last.index,
            source,
        })?;
        Ok(Some(last))
    }

    /// The verified finalized sequence after `cursor`.
    pub fn finalized_stream(&self, cursor: Cursor, operators: OperatorSource) -> FinalizedStream {
        FinalizedStream {
            client: self.clone(),
            operators,
            verified_index: cursor.index,
            verified_chain: cursor.known_chain(),
            pending: Vec::new(),
            pending_bytes: 0,
            ready: VecDeque::new(),
            failed: None,
            poll_delay: self.inner.cfg.poll_min,
            head: None,
        }
    }

    /// Moves to the next gateway (after a gateway failed verification, say).
    pub fn rotate_gateway(&self) {
        let (i, _) = match self.gateway() {
            Ok(g) => g,
            Err(_) => return,
        };
        self.fail_over(i);
    }
}

/// Pulls a human-readable message out of an error body (either Zellular's
/// `{"error": {"code", "message"}}` or FastAPI's `{"detail": ...}`).
fn error_message(body: &[u8]) -> String {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    };
    if let Some(e) = v.get("error") {
        let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
        let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
        return format!("{code}: {msg}");
    }
    if let Some(d) = v.get("detail") {
        return d.to_string().chars().take(200).collect();
    }
    v.to_string().chars().take(200).collect()
}

/// The finalized sequence from a cursor. Batches come out only once a finality
/// signature covering them has been verified against the recomputed chain.
pub struct FinalizedStream {
    client: Client,
    operators: OperatorSource,
    /// The last index whose chain a verified signature vouched for (or the cursor).
    verified_index: u64,
    /// `chain_{verified_index}`; `None` when resuming from an index alone.
    verified_chain: Option<String>,
    /// Batches after `verified_index`, each with its recomputed chaining hash.
    pending: Vec<(String, String)>,
    pending_bytes: usize,
    ready: VecDeque<FinalizedBatch>,
    /// Set by an integrity failure; returned again on every later call.
    failed: Option<StreamError>,
    poll_delay: Duration,
    /// Where to record the index at which the gateway first had nothing new.
    head: Option<Arc<AtomicU64>>,
}

impl FinalizedStream {
    /// Records in `flag`, once, the index up to which batches had been handed out
    /// when the gateway first had nothing new (the gateway's head). The cell holds
    /// `u64::MAX` until then; a value already there is kept.
    pub fn with_head_flag(mut self, flag: Arc<AtomicU64>) -> Self {
        self.head = Some(flag);
        self
    }

    /// The position up to which batches have been handed out or are ready.
    pub fn verified_index(&self) -> u64 {
        self.verified_index
    }

    /// The next verified batch; waits (polling with backoff) while there is none.
    pub async fn next(&mut self) -> Result<FinalizedBatch, StreamError> {
        loop {
            if let Some(b) = self.ready.pop_front() {
                return Ok(b);
            }
            self.fill().await?;
        }
    }

    /// Every verified batch available now, at least one; waits while there is none.
    pub async fn next_chunk(&mut self) -> Result<Vec<FinalizedBatch>, StreamError> {
        if self.ready.is_empty() {
            self.fill().await?;
        }
        Ok(self.ready.drain(..).collect())
    }

    /// Fetches until at least one batch is verified and ready.
    async fn fill(&mut self) -> Result<(), StreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        while self.ready.is_empty() {
            let last_known = self.verified_index + self.pending.len() as u64;
            let chain_known = match self.pending.last() {
                Some((_, c)) => Some(c.clone()),
                None => self.verified_chain.clone(),
            };
            // Resuming from an index alone: ask one earlier and take
            // `first_chaining_hash` as chain_N, as the SDK does.
            let after = if chain_known.is_some() {
                last_known
            } else {
                last_known - 1
            };
            let data = self.client.fetch_finalized(after).await?;
            let Some(data) = data.filter(|d| !d.batches.is_empty()) else {
                if self.pending.is_empty() {
                    if let Some(f) = &self.head {
                        let _ = f.compare_exchange(
                            u64::MAX,
                            self.verified_index,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                }
                tokio::time::sleep(self.poll_delay).await;
                self.poll_delay = (self.poll_delay * 2).min(self.client.inner.cfg.poll_max);
                continue;
            };
            self.poll_delay = self.client.inner.cfg.poll_min;
            if let Err(e) = self.absorb(after, chain_known, data).await {
                // Start over from the last verified index: the sync points that
                // cover what was pending will come again with the batches.
                self.pending.clear();
                self.pending_bytes = 0;
                if e.is_fatal() {
                    metrics::zellular_integrity_error();
                    tracing::error!(error = %e, "finalized stream stopped: gateway answer failed verification");
                    self.failed = Some(e.clone());
                }
                // Batches verified before the failure are still good: hand them
                // out first; the error comes after them.
                if self.ready.is_empty() {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Chains the answer's batches onto `pending`, then verifies every sync point in
    /// range and moves the batches it covers to `ready`.
    async fn absorb(
        &mut self,
        after: u64,
        chain_known: Option<String>,
        data: FinalizedBatches,
    ) -> Result<(), StreamError> {
        let mut batches = data.batches.into_iter();
        let mut idx = after;
        let chain_known_given = chain_known.is_some();
        let mut chain = match chain_known {
            Some(c) => c,
            None => {
                // Resuming: batch `after + 1` is the cursor's own batch; drop it.
                batches.next();
                idx += 1;
                // Only a claim until a sync point vouches for the chain built on it:
                // it is not recorded as verified.
                data.first_chaining_hash.clone()
            }
        };
        // With a known chain, the gateway's claim about the first batch must agree.
        let mut check_first = chain_known_given;
        for b in batches {
            idx += 1;
            chain = chain::next(&chain, &b);
            if std::mem::take(&mut check_first) && data.first_chaining_hash != chain {
                return Err(StreamError::ChainMismatch {
                    index: idx,
                    computed: chain,
                    claimed: data.first_chaining_hash,
                });
            }
            self.pending_bytes += b.len();
            self.pending.push((b, chain.clone()));
        }
        let mut sigs = data.finalized_signatures;
        sigs.sort_by_key(|s| s.index);
        let app = self.client.inner.cfg.app.clone();
        for sig in sigs {
            if sig.index <= self.verified_index {
                continue;
            }
            let offset = (sig.index - self.verified_index) as usize;
            let Some((_, computed)) = self.pending.get(offset - 1) else {
                break; // beyond what we hold: verified on a later answer
            };
            if *computed != sig.chaining_hash {
                return Err(StreamError::ChainMismatch {
                    index: sig.index,
                    computed: computed.clone(),
                    claimed: sig.chaining_hash,
                });
            }
            let set =
                self.operators
                    .at_tag(&sig.tag)
                    .await
                    .map_err(|e| StreamError::OperatorSet {
                        index: sig.index,
                        detail: e.to_string(),
                    })?;
            let msg = FinalityMessage {
                app_name: &app,
                chaining_hash: computed,
                index: sig.index,
                parent_index: sig.parent_index,
                state: "locked",
                timestamp: sig.timestamp,
            };
            set.verify(&msg.to_json(), &sig.signature, &sig.nonsigners)
                .map_err(|source| StreamError::BadSignature {
                    index: sig.index,
                    source,
                })?;
            metrics::zellular_sync_point_verified();
            let base = self.verified_index;
            for (k, (body, ch)) in self.pending.drain(..offset).enumerate() {
                self.pending_bytes -= body.len();
                self.ready.push_back(FinalizedBatch {
                    index: base + 1 + k as u64,
                    body,
                    timestamp: sig.timestamp,
                    chaining_hash: ch,
                });
            }
            self.verified_index = sig.index;
            self.verified_chain = Some(sig.chaining_hash);
        }
        if self.pending_bytes > self.client.inner.cfg.max_pending_bytes {
            return Err(StreamError::Unproven {
                index: self.verified_index,
                bytes: self.pending_bytes,
            });
        }
        Ok(())
    }
}
