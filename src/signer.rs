//! The only holder of the node's BLS secret key. It signs what this node observed
//! (a fresh [`Observation`]) or computed (a [`Downtime`] from its own replica) —
//! never a message handed to it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::answers::Downtime;
use crate::crypto::bls::{PublicKey, SecretKey, Signature};
use crate::events::{downtime_message, state_message, NodeState};
use crate::keyfile::{self, KeyFileError};
use crate::prober::Observation;

/// How far a requested timestamp may be from the time of the probe, seconds.
pub const MAX_TIMESTAMP_DRIFT: i64 = 10;

/// A signed `/state` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateAttestation {
    pub address: String,
    pub state: NodeState,
    pub timestamp: i64,
    pub signature: String,
    /// The network version the signer was a member of (livenessd's extension; a
    /// verifier takes that version's keys from the network history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_version: Option<u64>,
}

/// A signed `/downtime` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DowntimeAnswer {
    pub address: String,
    pub from_timestamp: i64,
    pub to_timestamp: i64,
    pub total_downtime_seconds: i64,
    pub signature: String,
    /// The network version it was made under (livenessd's extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_version: Option<u64>,
}

/// The timestamp is too far from the observation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "timestamp {requested} is more than {MAX_TIMESTAMP_DRIFT} s from the probe time {observed}"
)]
pub struct DriftError {
    pub requested: i64,
    pub observed: i64,
}

/// Signed downtime answers remembered: a settled answer never changes and a BLS
/// signature is deterministic, so the same question needs no second signature
/// (auditors repeat windows; `/aggregate_downtime` asks every node the same one).
const DOWNTIME_CACHE: usize = 8_192;

/// The node's signing key.
pub struct Signer {
    sk: SecretKey,
    public_key: PublicKey,
    /// Signature (hex) of each downtime message signed recently; cleared when full.
    downtime_cache: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl Signer {
    pub fn new(sk: SecretKey) -> Self {
        let public_key = sk.public_key();
        Signer {
            sk,
            public_key,
            downtime_cache: Default::default(),
        }
    }

    /// Reads the key file (hex), refusing files others can read.
    pub fn from_file(path: &Path) -> Result<Self, KeyFileError> {
        let text = keyfile::read_secret(path)?;
        let sk = SecretKey::from_hex(text.trim()).map_err(|e| KeyFileError::Invalid {
            path: path.display().to_string(),
            detail: format!("not a 32-byte hex BLS secret key: {e}"),
        })?;
        Ok(Signer::new(sk))
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// Signs what a probe of this node saw, stamped with the requester's `timestamp`
    /// (which must be within [`MAX_TIMESTAMP_DRIFT`] of the probe).
    pub fn attest(
        &self,
        obs: &Observation,
        timestamp: i64,
    ) -> Result<StateAttestation, DriftError> {
        self.attest_signed(obs, timestamp).map(|(a, _)| a)
    }

    /// [`Signer::attest`], also returning the signature itself (for aggregation).
    pub fn attest_signed(
        &self,
        obs: &Observation,
        timestamp: i64,
    ) -> Result<(StateAttestation, Signature), DriftError> {
        if obs.at().abs_diff(timestamp) > MAX_TIMESTAMP_DRIFT.unsigned_abs() {
            return Err(DriftError {
                requested: timestamp,
                observed: obs.at(),
            });
        }
        let sig = self
            .sk
            .sign(state_message(obs.address(), obs.state(), timestamp).as_bytes());
        let att = StateAttestation {
            address: obs.address().to_owned(),
            state: obs.state(),
            timestamp,
            signature: sig.to_hex(),
            network_version: None,
        };
        Ok((att, sig))
    }

    /// Signs a network change. Only for a change this node's operator approved
    /// and the node checked against the version in force (the caller does both).
    pub fn sign_network_change(&self, p: &crate::network::Proposal) -> Signature {
        self.sk.sign(p.message().as_bytes())
    }

    /// Signs the certificate statement of an epoch table this node computed from
    /// its replica (only `answers` builds one, from settled history).
    pub fn sign_epoch(
        &self,
        table: &crate::certificate::Table,
        network: &str,
        network_version: u64,
    ) -> crate::certificate::CertificateSignature {
        let statement = table.statement(network, network_version);
        let signature = self.sk.sign(statement.message().as_bytes()).to_hex();
        crate::certificate::CertificateSignature {
            node_id: String::new(),
            statement,
            signature,
        }
    }

    /// Signs a downtime this node computed from its replica.
    pub fn sign_downtime(&self, d: &Downtime) -> DowntimeAnswer {
        let msg = downtime_message(d.address(), d.seconds(), d.from(), d.to());
        let cached = self
            .downtime_cache
            .lock()
            .expect("cache lock")
            .get(&msg)
            .cloned();
        let signature = match cached {
            Some(s) => s,
            None => {
                let s = self.sk.sign(msg.as_bytes()).to_hex();
                let mut cache = self.downtime_cache.lock().expect("cache lock");
                if cache.len() >= DOWNTIME_CACHE {
                    cache.clear();
                }
                cache.insert(msg, s.clone());
                s
            }
        };
        DowntimeAnswer {
            address: d.address().to_owned(),
            from_timestamp: d.from(),
            to_timestamp: d.to(),
            total_downtime_seconds: d.seconds(),
            signature,
            network_version: None,
        }
    }
}
