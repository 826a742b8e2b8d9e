//! JSON shapes of the Zellular node API, as zsequencer serves them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The success envelope: `{"status": "success", "message": "...", "data": ...}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default = "none")]
    pub data: Option<T>,
    /// Present on errors: `{"code": "...", "message": "..."}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
}

fn none<T>() -> Option<T> {
    None
}

/// The error body: `{"status": "error", "error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

/// `data` of `GET /node/{app}/batches/finalized?after=N`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinalizedBatches {
    pub batches: Vec<String>,
    pub first_chaining_hash: String,
    pub finalized_signatures: Vec<SigInfo>,
}

/// One finality signature (a sync point) as listed in `finalized_signatures`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SigInfo {
    #[serde(default = "locked")]
    pub state: String,
    pub index: u64,
    pub parent_index: u64,
    pub chaining_hash: String,
    pub signature: String,
    /// `null` is read as no non-signers, as the SDK does.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub nonsigners: Vec<String>,
    /// The operator-set version the signers were taken from (a block number on
    /// EigenLayer; constant for a static set).
    #[serde(default)]
    pub tag: Value,
    pub timestamp: i64,
}

fn locked() -> String {
    "locked".into()
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// `data` of `GET /node/{app}/batches/finalized/last`: a stateful batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatefulBatch {
    pub app_name: String,
    pub body: String,
    pub index: u64,
    pub chaining_hash: String,
    /// The finalization timestamp (what the finality signature covers).
    pub timestamp: i64,
    pub parent_index: u64,
    #[serde(default)]
    pub next_index: Option<u64>,
    #[serde(default)]
    pub locked_signature: Option<String>,
    #[serde(default)]
    pub locked_nonsigners: Option<Vec<String>>,
    #[serde(default)]
    pub locked_tag: Option<Value>,
    #[serde(default)]
    pub finalized_signature: Option<String>,
    #[serde(default)]
    pub finalized_nonsigners: Option<Vec<String>>,
    #[serde(default)]
    pub finalized_tag: Option<Value>,
    pub state: String,
}

/// Per-app counters in `GET /node/state`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct AppState {
    pub last_sequenced_index: u64,
    pub last_locked_index: u64,
    pub last_finalized_index: u64,
}

/// The operator-set tag as a block number, when it is one.
pub fn tag_block(tag: &Value) -> Option<u64> {
    match tag {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}
