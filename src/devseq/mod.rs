//! `livenessd sequencer`: the embedded, Zellular-compatible dev sequencer.
//!
//! One process that sequences batches per app, chains them, and finalizes them with
//! BN254 signatures of its configured operator keys — the reference node's endpoints,
//! JSON shapes and status codes, so the official `zellular` SDK accepts it. The log is
//! kept in SQLite: a restart keeps every batch and the chain.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::StringRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Notify, RwLock};
use tokio_util::sync::CancellationToken;

use crate::crypto::bn254::SecretKey;
use crate::keyfile;
use crate::metrics;
use crate::store::sequencer::{AppHead, Finalization, SequencerStore};
use crate::store::StoreError;
use crate::zellular::chain;
use crate::zellular::finality::FinalityMessage;
use crate::zellular::operators::{Operator, OperatorSet};
use crate::zellular::wire::{AppState, FinalizedBatches, StatefulBatch};

/// The zsequencer protocol version this server speaks (what `/node/state` reports,
/// and what a `Version` request header must say if a client sends one).
pub const PROTOCOL_VERSION: &str = "v0.1.7";

/// Name of the key file in the data directory.
pub const KEYS_FILE: &str = "sequencer-keys.json";
/// Name of the operator-set file written at every start (SDK `StaticNetwork` input).
pub const OPERATORS_FILE: &str = "operators.json";
/// Name of the SQLite log.
pub const DB_FILE: &str = "sequencer.sqlite";

/// Dev sequencer settings.
#[derive(Debug, Clone)]
pub struct DevSeqConfig {
    /// Where the log, the keys and `operators.json` live.
    pub data_dir: PathBuf,
    /// The URL clients reach this server at (the `socket` in `operators.json`).
    pub public_url: String,
    /// Apps served; empty serves any app name (created on first write).
    pub apps: Vec<String>,
    /// How many operator keys sign finality (created on first start, then kept).
    pub operators: usize,
    /// How many of them (the last ones) do not sign, to exercise the non-signer path.
    pub nonsigners: usize,
    /// Stake of each operator.
    pub stake: u64,
    /// Threshold the operator set is published for (the SDK default is 67).
    pub threshold_percent: f64,
    /// How often new batches are finalized; zero finalizes each batch as it arrives.
    pub finalize_interval: Duration,
    /// Larger batches are refused with 413.
    pub max_batch_bytes: usize,
    /// One `finalized?after=` answer holds at most this many batches...
    pub max_response_batches: u32,
    /// ...and about this many bytes of them (a reader loops, as with zsequencer).
    pub max_response_bytes: usize,
    /// A request head must arrive this soon (also on an idle kept-alive
    /// connection), and an answer must make progress this often.
    pub connection_timeout: Duration,
    /// The time of day for finality timestamps (a manual clock in tests).
    pub clock: crate::clock::Clock,
}

impl DevSeqConfig {
    pub fn new(data_dir: impl Into<PathBuf>, public_url: impl Into<String>) -> Self {
        DevSeqConfig {
            data_dir: data_dir.into(),
            public_url: public_url.into(),
            apps: Vec::new(),
            operators: 3,
            nonsigners: 0,
            stake: 10,
            threshold_percent: crate::zellular::DEFAULT_THRESHOLD_PERCENT,
            finalize_interval: Duration::from_millis(100),
            max_batch_bytes: 1 << 20,
            max_response_batches: 10_000,
            max_response_bytes: 4 << 20,
            connection_timeout: Duration::from_secs(10),
            clock: crate::clock::Clock::system(),
        }
    }
}

/// Why the dev sequencer could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevSeqError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] keyfile::KeyFileError),
    #[error("{0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct KeysFile {
    /// BN254 secret keys, hex.
    keys: Vec<String>,
}

struct DevKey {
    id: String,
    sk: SecretKey,
}

/// Shared server state.
struct Inner {
    cfg: DevSeqConfig,
    store: SequencerStore,
    set: Arc<OperatorSet>,
    /// Sum of the signing operators' keys: one scalar multiplication signs for all.
    signing_key: SecretKey,
    nonsigner_ids: Vec<String>,
    node_id: String,
    /// Per-app head; the mutex serialises appends and finalization of one app.
    apps: RwLock<HashMap<String, Arc<Mutex<AppHead>>>>,
    /// Wakes the finalizer when a batch arrives.
    arrived: Notify,
    /// Reads of the log served at once (each holds up to `max_response_bytes`).
    reads: tokio::sync::Semaphore,
}

/// The dev sequencer; cheap to clone.
#[derive(Clone)]
pub struct DevSequencer {
    inner: Arc<Inner>,
}

/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 512;
/// Serves `app` on `listener` until `stop`: at most [`MAX_CONNECTIONS`], each bounded
/// by `timeout` (request heads, stalled answers); then drains the open ones (at
/// most 10 s).
async fn serve_bounded(
    listener: TcpListener,
    app: Router,
    timeout: Duration,
    stop: &CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let bounds = crate::http_server::ConnectionBounds {
        header_timeout: timeout,
        write_timeout: timeout,
        keep_alive: true,
    };
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    // Out of file descriptors, say: wait a little, never spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics::devseq_rejected("connections");
            continue;
        };
        let conn =
            crate::http_server::serve_connection(stream, peer, app.clone(), bounds, &graceful);
        tokio::spawn(async move {
            conn.await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    Ok(())
}

/// Reads of the log served at once; more wait their turn (so memory stays near
/// `CONCURRENT_READS × max_response_bytes`, whatever the number of readers).
const CONCURRENT_READS: usize = 8;

fn operator_id(sk: &SecretKey) -> String {
    let pk = sk.public_key_g2().to_mcl_string();
    let h = chain::xxh128_hex(pk.as_bytes());
    let h2 = chain::xxh128_hex(h.as_bytes());
    format!("0x{h}{}", &h2[..8])
}

fn load_or_create_keys(dir: &Path, wanted: usize) -> Result<Vec<DevKey>, DevSeqError> {
    let path = dir.join(KEYS_FILE);
    let keys: Vec<SecretKey> = if path.exists() {
        let text = keyfile::read_secret(&path)?;
        let f: KeysFile =
            serde_json::from_str(&text).map_err(|e| keyfile::KeyFileError::Invalid {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
        let keys = f
            .keys
            .iter()
            .map(|k| SecretKey::from_hex(k))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| keyfile::KeyFileError::Invalid {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
        if keys.len() != wanted {
            return Err(DevSeqError::Config(format!(
                "{} holds {} operator keys but {wanted} were asked for; pass --operators {} or use a new data dir",
                path.display(),
                keys.len(),
                keys.len()
            )));
        }
        keys
    } else {
        let keys: Vec<SecretKey> = (0..wanted).map(|_| SecretKey::random()).collect();
        let f = KeysFile {
            keys: keys.iter().map(SecretKey::to_hex).collect(),
        };
        let text = serde_json::to_string_pretty(&f).expect("keys serialise");
        keyfile::write_secret(&path, &text)?;
        keys
    };
    Ok(keys
        .into_iter()
        .map(|sk| DevKey {
            id: operator_id(&sk),
            sk,
        })
        .collect())
}

fn valid_app_name(app: &str) -> bool {
    !app.is_empty()
        && app.len() <= 128
        && app
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

impl DevSequencer {
    /// Opens the log and keys in `cfg.data_dir` and writes `operators.json`.
    pub async fn open(cfg: DevSeqConfig) -> Result<Self, DevSeqError> {
        if cfg.operators == 0 {
            return Err(DevSeqError::Config("--operators must be at least 1".into()));
        }
        if cfg.nonsigners >= cfg.operators {
            return Err(DevSeqError::Config(format!(
                "--nonsigners {} leaves no signer among {} operators",
                cfg.nonsigners, cfg.operators
            )));
        }
        if let Some(bad) = cfg.apps.iter().find(|a| !valid_app_name(a)) {
            return Err(DevSeqError::Config(format!(
                "app name {bad:?}: use letters, digits, '_', '-' or '.'"
            )));
        }
        let dir = &cfg.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| DevSeqError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let keys = load_or_create_keys(dir, cfg.operators)?;
        let operators: Vec<Operator> = keys
            .iter()
            .map(|k| Operator {
                id: k.id.clone(),
                socket: cfg.public_url.clone(),
                stake: cfg.stake as f64,
                public_key: k.sk.public_key_g2(),
            })
            .collect();
        let set = OperatorSet::new(operators, cfg.threshold_percent)
            .map_err(|e| DevSeqError::Config(e.to_string()))?;
        let signers = &keys[..keys.len() - cfg.nonsigners];
        let nonsigner_ids: Vec<String> = keys[keys.len() - cfg.nonsigners..]
            .iter()
            .map(|k| k.id.clone())
            .collect();
        if let Err(e) = set.check_quorum(&nonsigner_ids) {
            tracing::warn!(error = %e, "the configured non-signers exceed the threshold: clients will reject every finality signature");
        }
        let ops_path = dir.join(OPERATORS_FILE);
        let ops_json = serde_json::to_string_pretty(&Value::Object(set.to_json_map()))
            .expect("operators serialise");
        std::fs::write(&ops_path, ops_json + "\n").map_err(|source| DevSeqError::Io {
            path: ops_path.display().to_string(),
            source,
        })?;

        let store = SequencerStore::open(&dir.join(DB_FILE)).await?;
        let mut apps = HashMap::new();
        for head in store.heads().await? {
            apps.insert(head.app.clone(), Arc::new(Mutex::new(head)));
        }
        for app in &cfg.apps {
            apps.entry(app.clone()).or_insert_with(|| {
                Arc::new(Mutex::new(AppHead {
                    app: app.clone(),
                    ..Default::default()
                }))
            });
        }
        let node_id = keys[0].id.clone();
        Ok(DevSequencer {
            inner: Arc::new(Inner {
                signing_key: SecretKey::sum(signers.iter().map(|k| &k.sk)),
                nonsigner_ids,
                node_id,
                set: Arc::new(set),
                store,
                apps: RwLock::new(apps),
                arrived: Notify::new(),
                reads: tokio::sync::Semaphore::new(CONCURRENT_READS),
                cfg,
            }),
        })
    }

    /// The operator set that signs finality (what `operators.json` holds).
    pub fn operator_set(&self) -> Arc<OperatorSet> {
        self.inner.set.clone()
    }

    /// Path of the `operators.json` written at start.
    pub fn operators_file(&self) -> PathBuf {
        self.inner.cfg.data_dir.join(OPERATORS_FILE)
    }

    /// The HTTP API.
    pub fn router(&self) -> Router {
        let limit = self.inner.cfg.max_batch_bytes;
        Router::new()
            .route(
                "/node/{app}/batches",
                put(put_batch).layer(DefaultBodyLimit::max(limit)),
            )
            .route("/node/{app}/batches/{state}", get(get_batches))
            .route("/node/{app}/batches/{state}/last", get(get_last))
            .route("/node/batches/{state}/last", get(get_all_last))
            .route("/node/state", get(get_state))
            .route(
                "/node/ready",
                get(|| async { Json(json!({"status": true})) }),
            )
            .layer(middleware::from_fn(check_version))
            .route("/health", get(|| async { "ok" }))
            .route("/metrics", get(|| async { metrics::render() }))
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown` is cancelled, finalizing in the background.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        // A batch acknowledged before a crash (appended, not yet finalized) is
        // finalized now, not when the next batch happens to arrive.
        if let Err(e) = self.finalize_all().await {
            metrics::devseq_error("finalize");
            tracing::error!(error = %e, "finalizing the batches left from before the restart failed");
        }
        let finalizer = (!self.inner.cfg.finalize_interval.is_zero()).then(|| {
            let seq = self.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move { seq.finalize_loop(stop).await })
        });
        let app = self
            .router()
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                Duration::from_secs(30),
            ));
        let timeout = self.inner.cfg.connection_timeout;
        let res = serve_bounded(listener, app, timeout, &shutdown).await;
        if let Some(f) = finalizer {
            shutdown.cancel();
            let _ = f.await;
        }
        // Sign whatever arrived last, so nothing sequenced stays unfinalized.
        if let Err(e) = self.finalize_all().await {
            tracing::error!(error = %e, "final finalization failed");
        }
        self.inner.store.close().await;
        res
    }

    async fn finalize_loop(&self, stop: CancellationToken) {
        let interval = self.inner.cfg.finalize_interval;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.inner.arrived.notified() => {}
            }
            // Gather what arrives during the interval into one sync point.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            if let Err(e) = self.finalize_all().await {
                metrics::devseq_error("finalize");
                tracing::error!(error = %e, "finalization failed");
            }
        }
    }

    async fn finalize_all(&self) -> Result<(), StoreError> {
        let apps: Vec<_> = self.inner.apps.read().await.values().cloned().collect();
        for app in apps {
            let mut head = app.lock().await;
            self.finalize_head(&mut head).await?;
        }
        Ok(())
    }

    /// Signs a sync point at the head of one app, if anything is new.
    async fn finalize_head(&self, head: &mut AppHead) -> Result<(), StoreError> {
        if head.last_index <= head.last_finalized_index {
            return Ok(());
        }
        let timestamp = self
            .inner
            .cfg
            .clock
            .now()
            .max(head.last_finalized_timestamp);
        let msg = FinalityMessage {
            app_name: &head.app,
            chaining_hash: &head.last_chain,
            index: head.last_index,
            parent_index: head.last_finalized_index,
            state: "locked",
            timestamp,
        };
        let signature = self.inner.signing_key.sign(msg.signed_bytes().as_bytes());
        let f = Finalization {
            index: head.last_index,
            parent_index: head.last_finalized_index,
            chaining_hash: head.last_chain.clone(),
            timestamp,
            signature: signature.to_string(),
            nonsigners: self.inner.nonsigner_ids.clone(),
            tag: 0,
        };
        self.inner.store.finalize(&head.app, &f).await?;
        head.last_finalized_index = f.index;
        head.last_finalized_timestamp = timestamp;
        metrics::devseq_finalization();
        Ok(())
    }

    async fn app(&self, name: &str, create: bool) -> Result<Option<Arc<Mutex<AppHead>>>, ApiError> {
        if let Some(a) = self.inner.apps.read().await.get(name) {
            return Ok(Some(a.clone()));
        }
        if !self.inner.cfg.apps.is_empty() || !valid_app_name(name) {
            return Err(ApiError::bad_request(
                "InvalidRequestError",
                "Invalid app name.",
            ));
        }
        if !create {
            return Ok(None);
        }
        let mut apps = self.inner.apps.write().await;
        Ok(Some(
            apps.entry(name.to_owned())
                .or_insert_with(|| {
                    Arc::new(Mutex::new(AppHead {
                        app: name.to_owned(),
                        ..Default::default()
                    }))
                })
                .clone(),
        ))
    }
}

/// An error answer in zsequencer's shape.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "dev sequencer internal error");
        metrics::devseq_error("request");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "InternalServerError",
            message: "internal error".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"status": "error", "error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

fn success<T: Serialize>(data: T) -> Response {
    Json(json!({"status": "success", "message": "Operation successful", "data": data}))
        .into_response()
}

async fn check_version(headers: HeaderMap, req: Request, next: Next) -> Response {
    if let Some(v) = headers.get("version") {
        if v.as_bytes() != PROTOCOL_VERSION.as_bytes() {
            metrics::devseq_rejected("version");
            return ApiError::bad_request(
                "InvalidNodeVersionError",
                "Invalid node version. Please get the latest version of node.",
            )
            .into_response();
        }
    }
    next.run(req).await
}

async fn put_batch(
    State(seq): State<DevSequencer>,
    UrlPath(app): UrlPath<String>,
    body: Result<String, StringRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rej| {
        let status = rej.status();
        let reason = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "body"
        };
        metrics::devseq_rejected(reason);
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!(
                "Batch is larger than {} bytes.",
                seq.inner.cfg.max_batch_bytes
            )
        } else {
            format!("Invalid batch: {}", rej.body_text())
        };
        ApiError {
            status,
            code: if status == StatusCode::PAYLOAD_TOO_LARGE {
                "BatchTooLargeError"
            } else {
                "InvalidRequestError"
            },
            message,
        }
    })?;
    if body.is_empty() {
        metrics::devseq_rejected("empty");
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "InvalidRequestError",
            message: "The batch is empty.".into(),
        });
    }
    let app_log = seq.app(&app, true).await?.expect("created");
    // The append and the head update run detached: a client that disconnects (or
    // a request timeout) cannot cancel them halfway, leaving a committed row the
    // in-memory head does not know about.
    let s2 = seq.clone();
    let appended = tokio::spawn(async move {
        let mut head = app_log.lock().await;
        let index = head.last_index + 1;
        let chain = chain::next(&head.last_chain, &body);
        s2.inner
            .store
            .append(&app, index, &body, &chain, s2.inner.cfg.clock.now())
            .await?;
        head.last_index = index;
        head.last_chain = chain;
        metrics::devseq_batch();
        if s2.inner.cfg.finalize_interval.is_zero() {
            // The batch is in the log either way; a failed finalization is retried
            // with the next batch, so the client must not resend it.
            if let Err(e) = s2.finalize_head(&mut head).await {
                metrics::devseq_error("finalize");
                tracing::error!(error = %e, "finalization failed");
            }
        } else {
            s2.inner.arrived.notify_one();
        }
        Ok::<(), StoreError>(())
    })
    .await;
    match appended {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(ApiError::internal(e)),
        Err(e) => return Err(ApiError::internal(e)),
    }
    Ok(Json(
        json!({"status": "success", "message": "The batch is received successfully.", "data": {}}),
    )
    .into_response())
}

/// `after`, validated the way zsequencer's FastAPI layer does; the error is the
/// `detail` of its 422 answer.
fn parse_after(q: &HashMap<String, String>) -> Result<u64, Value> {
    let Some(raw) = q.get("after") else {
        return Ok(0);
    };
    match raw.parse::<i64>() {
        Ok(v) if v >= 0 => Ok(v as u64),
        Ok(_) => Err(
            json!([{"type": "greater_than_equal", "loc": ["query", "after"],
            "msg": "Input should be greater than or equal to 0", "input": raw, "ctx": {"ge": 0}}]),
        ),
        Err(_) => Err(json!([{"type": "int_parsing", "loc": ["query", "after"],
            "msg": "Input should be a valid integer, unable to parse string as an integer", "input": raw}])),
    }
}

fn state_limit(state: &str, head: &AppHead) -> Result<u64, ApiError> {
    match state {
        "finalized" | "locked" => Ok(head.last_finalized_index),
        "sequenced" => Ok(head.last_index),
        _ => Err(ApiError::bad_request(
            "InvalidRequestError",
            "Invalid state. Must be 'sequenced', 'locked' or 'finalized'.",
        )),
    }
}

async fn get_batches(
    State(seq): State<DevSequencer>,
    UrlPath((app, state)): UrlPath<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let after = match parse_after(&q) {
        Ok(a) => a,
        Err(detail) => {
            metrics::devseq_rejected("after");
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "detail": detail })),
            )
                .into_response());
        }
    };
    let Some(app_log) = seq.app(&app, false).await? else {
        return Ok(success(Value::Null));
    };
    let upto = {
        let head = app_log.lock().await;
        state_limit(&state, &head)?
    };
    if after >= upto {
        return Ok(success(Value::Null));
    }
    let cfg = &seq.inner.cfg;
    let store = &seq.inner.store;
    let _turn = seq
        .inner
        .reads
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let rows = store
        .range(
            &app,
            after,
            upto,
            cfg.max_response_batches,
            cfg.max_response_bytes,
        )
        .await
        .map_err(ApiError::internal)?;
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(success(Value::Null));
    };
    let sigs = store
        .finalizations(&app, first.index, last.index)
        .await
        .map_err(ApiError::internal)?;
    let first_chaining_hash = first.chaining_hash.clone();
    let data = FinalizedBatches {
        batches: rows.into_iter().map(|r| r.body).collect(),
        first_chaining_hash,
        finalized_signatures: sigs.iter().map(Finalization::to_sig_info).collect(),
    };
    Ok(success(data))
}

async fn last_of(
    seq: &DevSequencer,
    app_log: &Mutex<AppHead>,
    state: &str,
) -> Result<Option<StatefulBatch>, ApiError> {
    let (app, index) = {
        let head = app_log.lock().await;
        if state != "finalized" && state != "locked" {
            return Err(ApiError::bad_request(
                "InvalidRequestError",
                "Invalid state. Must be 'locked' or 'finalized'.",
            ));
        }
        (head.app.clone(), head.last_finalized_index)
    };
    if index == 0 {
        return Ok(None);
    }
    let store = &seq.inner.store;
    let batch = store.batch(&app, index).await.map_err(ApiError::internal)?;
    let fin = store
        .finalizations(&app, index, index)
        .await
        .map_err(ApiError::internal)?;
    let (Some(batch), Some(fin)) = (batch, fin.into_iter().next()) else {
        return Err(ApiError::internal(format!(
            "{app}: finalized batch {index} missing from the log"
        )));
    };
    Ok(Some(StatefulBatch {
        app_name: app,
        body: batch.body,
        index,
        chaining_hash: batch.chaining_hash,
        timestamp: fin.timestamp,
        parent_index: fin.parent_index,
        next_index: None,
        locked_signature: None,
        locked_nonsigners: None,
        locked_tag: None,
        finalized_signature: Some(fin.signature),
        finalized_nonsigners: Some(fin.nonsigners),
        finalized_tag: Some(fin.tag.into()),
        state: state.to_owned(),
    }))
}

async fn get_last(
    State(seq): State<DevSequencer>,
    UrlPath((app, state)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    let Some(app_log) = seq.app(&app, false).await? else {
        return Ok(success(Value::Null));
    };
    Ok(success(last_of(&seq, &app_log, &state).await?))
}

async fn get_all_last(
    State(seq): State<DevSequencer>,
    UrlPath(state): UrlPath<String>,
) -> Result<Response, ApiError> {
    let apps: Vec<_> = seq
        .inner
        .apps
        .read()
        .await
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut out = serde_json::Map::new();
    for (name, log) in apps {
        if let Some(last) = last_of(&seq, &log, &state).await? {
            out.insert(
                name,
                serde_json::to_value(last).map_err(ApiError::internal)?,
            );
        }
    }
    Ok(success(out))
}

async fn get_state(State(seq): State<DevSequencer>) -> Response {
    let apps: Vec<_> = seq.inner.apps.read().await.values().cloned().collect();
    let mut app_states = serde_json::Map::new();
    for a in apps {
        let h = a.lock().await;
        let st = AppState {
            last_sequenced_index: h.last_index,
            last_locked_index: h.last_finalized_index,
            last_finalized_index: h.last_finalized_index,
        };
        app_states.insert(
            h.app.clone(),
            serde_json::to_value(st).unwrap_or(Value::Null),
        );
    }
    let id = &seq.inner.node_id;
    let (x, y) = seq
        .inner
        .set
        .get(id)
        .map(|o| o.public_key.to_xy())
        .unwrap_or_default();
    // `sequencer: false`: the SDK's gateway discovery skips nodes that say true, and
    // this single process is also the gateway clients must use.
    success(json!({
        "sequencer": false,
        "version": PROTOCOL_VERSION,
        "sequencer_id": id,
        "node_id": id,
        "pubkeyG2_X": x,
        "pubkeyG2_Y": y,
        "address": id,
        "apps": app_states,
    }))
}
