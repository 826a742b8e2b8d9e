//! The chain of network versions: the genesis, then every applied change with
//! where it was sequenced. `GET /v1/network/history` serves it; `livenessd verify
//! --network HISTORY` checks it from the genesis — each change signed by a quorum
//! of the set before it — so someone who trusts only the genesis can check any
//! later proof under the version it names.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{ChangeError, Genesis, NetworkError, NetworkState, SignedChange};

/// One applied change, where it was sequenced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    /// The version the change made.
    pub version: u64,
    /// Its batch in the Zellular sequence, and its place in the batch.
    pub zellular_index: u64,
    pub position: u32,
    /// The sync time it was applied at (the replica's clock).
    pub log_time: i64,
    pub change: SignedChange,
}

/// A network's whole history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The network id (SHA-256 of the genesis).
    pub network: String,
    pub genesis: Genesis,
    /// In version order: the change making version 2 first.
    pub changes: Vec<Recorded>,
    /// Served a page at a time: the cursor of the next page (`null` on the last).
    /// A history with more to come cannot be replayed alone.
    #[serde(default)]
    pub next: Option<String>,
}

/// Why a history does not check out.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("the genesis hashes to {computed}, not to the network id {claimed}")]
    WrongId { claimed: String, computed: String },
    #[error("the genesis is not a valid network: {0}")]
    Genesis(NetworkError),
    #[error("the change to version {version}: {error}")]
    Change { version: u64, error: ChangeError },
    #[error("the change listed as version {listed} makes version {made}")]
    Mislabelled { listed: u64, made: u64 },
    #[error(
        "this is one page of the history (next: cursor={0}): fetch the following pages \
         (GET /v1/network/history?cursor=…) and join their changes"
    )]
    Partial(String),
}

impl History {
    /// Replays the chain from the genesis, checking every change against the set
    /// before it; returns every version, version 1 first.
    pub fn replay(&self) -> Result<Vec<Arc<NetworkState>>, HistoryError> {
        if let Some(next) = &self.next {
            return Err(HistoryError::Partial(next.clone()));
        }
        let computed = self.genesis.id();
        if computed != self.network {
            return Err(HistoryError::WrongId {
                claimed: self.network.clone(),
                computed,
            });
        }
        let mut out = vec![Arc::new(
            NetworkState::genesis(&self.genesis).map_err(HistoryError::Genesis)?,
        )];
        for r in &self.changes {
            let last = out.last().expect("the genesis is there");
            let next = last.next(&r.change).map_err(|error| HistoryError::Change {
                version: r.change.proposal.version,
                error,
            })?;
            if next.version != r.version {
                return Err(HistoryError::Mislabelled {
                    listed: r.version,
                    made: next.version,
                });
            }
            out.push(Arc::new(next));
        }
        Ok(out)
    }
}
