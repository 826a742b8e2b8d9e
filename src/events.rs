//! Downtime events (what goes through Zellular) and the monitoring-node set that
//! signs them: message formats, parsing, quorum rules, verification.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{MonitoringNode, Threshold};
use crate::crypto::bls::{self, PublicKey, Signature};

/// A target's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Up,
    Down,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Down => "down",
        }
    }

    pub fn parse(s: &str) -> Option<NodeState> {
        match s {
            "up" => Some(NodeState::Up),
            "down" => Some(NodeState::Down),
            _ => None,
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Address: {A}, State: {state}, Timestamp: {T}` — what a state attestation signs.
pub fn state_message(address: &str, state: NodeState, timestamp: i64) -> String {
    format!("Address: {address}, State: {state}, Timestamp: {timestamp}")
}

/// `Address: {A}, Downtime: {D}, From: {F}, To: {T}` — what a downtime answer signs.
pub fn downtime_message(address: &str, downtime: i64, from: i64, to: i64) -> String {
    format!("Address: {address}, Downtime: {downtime}, From: {from}, To: {to}")
}

/// A downtime event as carried in a Zellular batch (PROTOCOL.md §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub address: String,
    pub state: NodeState,
    pub timestamp: i64,
    pub aggregated_signature: String,
    pub non_signing_nodes: Vec<String>,
}

impl Event {
    pub fn message(&self) -> String {
        state_message(&self.address, self.state, self.timestamp)
    }

    /// Reads one event, ignoring unknown fields; a missing `non_signing_nodes` is
    /// empty (as the reference node reads it).
    pub fn from_value(v: &Value) -> Result<Event, EventError> {
        let obj = v
            .as_object()
            .ok_or(EventError::Malformed("event is not an object"))?;
        let address = obj
            .get("address")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
            .ok_or(EventError::Malformed("address is missing or not a string"))?;
        let state = obj
            .get("state")
            .and_then(Value::as_str)
            .and_then(NodeState::parse)
            .ok_or(EventError::Malformed("state is not \"up\" or \"down\""))?;
        let timestamp = obj
            .get("timestamp")
            .and_then(|t| t.as_i64())
            .ok_or(EventError::Malformed("timestamp is not an integer"))?;
        let aggregated_signature = obj
            .get("aggregated_signature")
            .and_then(Value::as_str)
            .ok_or(EventError::Malformed(
                "aggregated_signature is not a string",
            ))?;
        let non_signing_nodes = match obj.get("non_signing_nodes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|n| n.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(EventError::Malformed(
                    "non_signing_nodes holds a non-string",
                ))?,
            Some(_) => return Err(EventError::Malformed("non_signing_nodes is not a list")),
        };
        Ok(Event {
            address: address.to_owned(),
            state,
            timestamp,
            aggregated_signature: aggregated_signature.to_owned(),
            non_signing_nodes,
        })
    }
}

/// Reads a batch: a JSON array of events. The outer error means the whole batch is
/// malformed; inner errors are per event.
pub fn parse_batch(body: &str) -> Result<Vec<Result<Event, EventError>>, EventError> {
    let v: Value = serde_json::from_str(body).map_err(|_| EventError::MalformedBatch)?;
    let arr = v.as_array().ok_or(EventError::MalformedBatch)?;
    Ok(arr.iter().map(Event::from_value).collect())
}

/// Why an event (or a signed answer) is not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    #[error("batch is not a JSON array")]
    MalformedBatch,
    #[error("malformed event: {0}")]
    Malformed(&'static str),
    #[error("unknown address {0}")]
    UnknownAddress(String),
    #[error("unknown non-signer {0}")]
    UnknownNonSigner(String),
    #[error("non-signer {0} listed twice")]
    DuplicateNonSigner(String),
    #[error("signers hold {signed} of {total} stake, below the quorum threshold")]
    TooFewSigners { signed: f64, total: f64 },
    #[error("aggregated signature does not decode: {0}")]
    BadEncoding(bls::BlsError),
    #[error("aggregated signature does not verify")]
    InvalidSignature,
    #[error("network change refused: {why}")]
    Change { reason: &'static str, why: String },
    #[error("epoch certificate refused: {why}")]
    Certificate { reason: &'static str, why: String },
    #[error("state {state} at {timestamp} repeats the current state")]
    RepeatedState { state: NodeState, timestamp: i64 },
    #[error("timestamp {timestamp} is older than the last applied event ({last})")]
    Stale { timestamp: i64, last: i64 },
    #[error(
        "timestamp {timestamp} is more than {max_age} s older than its sync point ({sync_time})"
    )]
    TooOld {
        timestamp: i64,
        sync_time: i64,
        max_age: i64,
    },
    #[error(
        "timestamp {timestamp} is more than {max_drift} s later than its sync point ({sync_time})"
    )]
    FromFuture {
        timestamp: i64,
        sync_time: i64,
        max_drift: i64,
    },
}

impl EventError {
    /// The label of the `events_rejected_total` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            EventError::MalformedBatch => "malformed_batch",
            EventError::Malformed(_) => "malformed_event",
            EventError::UnknownAddress(_) => "unknown_address",
            EventError::UnknownNonSigner(_) => "unknown_nonsigner",
            EventError::DuplicateNonSigner(_) => "duplicate_nonsigner",
            EventError::TooFewSigners { .. } => "too_few_signers",
            EventError::BadEncoding(_) => "bad_signature_encoding",
            EventError::InvalidSignature => "bad_signature",
            EventError::Change { reason, .. } => reason,
            EventError::Certificate { reason, .. } => reason,
            EventError::RepeatedState { .. } => "repeated_state",
            EventError::Stale { .. } => "stale_timestamp",
            EventError::TooOld { .. } => "too_old",
            EventError::FromFuture { .. } => "from_future",
        }
    }

    /// A second report of the change already in force (several aggregators report
    /// the same change): expected, counted apart, not a rejection.
    pub fn is_duplicate(&self) -> bool {
        matches!(
            self,
            EventError::RepeatedState { .. }
                | EventError::Change {
                    reason: "change_duplicate",
                    ..
                }
                | EventError::Certificate {
                    reason: "certificate_duplicate",
                    ..
                }
        )
    }
}

/// Fewer items than this per thread are not worth a thread of their own.
const MIN_PER_THREAD: usize = 16;

/// An event whose quorum rules hold, waiting for its signature check.
struct Pending<'a> {
    index: usize,
    msg: String,
    pk: PublicKey,
    sig_hex: &'a str,
}

/// Decodes (with the subgroup check) and batch-verifies signatures; returns the
/// failures. Items are checked one by one only when the batch fails.
fn verify_part(part: &[Pending<'_>]) -> Vec<(usize, EventError)> {
    let mut failures = Vec::new();
    let mut ok: Vec<(&Pending<'_>, Signature)> = Vec::with_capacity(part.len());
    for p in part {
        match Signature::from_hex(p.sig_hex) {
            Ok(sig) => ok.push((p, sig)),
            Err(e) => failures.push((p.index, EventError::BadEncoding(e))),
        }
    }
    // Events with the same non-signers share one key: one Miller loop per distinct
    // key for the whole batch, one final exponentiation.
    let mut groups: HashMap<[u8; 48], Vec<usize>> = HashMap::new();
    for (k, (p, _)) in ok.iter().enumerate() {
        groups.entry(p.pk.to_bytes()).or_default().push(k);
    }
    let items: Vec<(&PublicKey, Vec<bls::Signed<'_>>)> = groups
        .values()
        .map(|members| {
            let pk = &ok[members[0]].0.pk;
            (
                pk,
                members
                    .iter()
                    .map(|&k| (ok[k].0.msg.as_bytes(), &ok[k].1))
                    .collect(),
            )
        })
        .collect();
    let refs: Vec<bls::KeyGroup<'_>> = items.iter().map(|(pk, v)| (*pk, v.as_slice())).collect();
    if !bls::verify_batch_grouped(&refs) {
        failures.extend(
            ok.iter()
                .filter(|(p, sig)| !sig.verify(&p.pk, p.msg.as_bytes()))
                .map(|(p, _)| (p.index, EventError::InvalidSignature)),
        );
    }
    failures
}

/// A monitoring node with its verified key.
#[derive(Debug, Clone)]
pub struct Monitor {
    pub id: String,
    pub url: String,
    pub public_key: PublicKey,
    pub stake: f64,
}

/// Why the monitoring-node set could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MonitorSetError {
    #[error("monitoring node {id}: bad public key: {source}")]
    BadKey { id: String, source: bls::BlsError },
    #[error("monitoring node {id}: bad proof of possession: {why}")]
    BadPop { id: String, why: String },
    #[error("monitoring node {id} has no proof of possession; add `pop`, or list it in allow_without_pop to accept the rogue-key risk")]
    MissingPop { id: String },
    #[error("monitoring nodes {first} and {second} have the same public key: one key would count twice towards a quorum")]
    DuplicateKey { first: String, second: String },
    #[error("monitoring node {id}: stake {stake} must be a finite number greater than 0")]
    BadStake { id: String, stake: f64 },
    #[error("the total stake of the monitoring nodes ({total}) is too large to compare against the threshold")]
    TotalStake { total: f64 },
    #[error("monitoring node id {0} is listed twice")]
    DuplicateId(String),
    #[error("no monitoring nodes")]
    Empty,
}

/// The monitoring nodes that sign events and answers, with the quorum rule.
#[derive(Debug, Clone)]
pub struct MonitorSet {
    nodes: Vec<Monitor>,
    by_id: HashMap<String, usize>,
    total_stake: f64,
    threshold: Threshold,
}

/// The verification key of one non-signer set, with the signers' stake.
#[derive(Debug, Clone)]
pub struct SignerKey {
    pub public_key: PublicKey,
    pub signed_stake: f64,
}

impl MonitorSet {
    /// Builds the set, checking every key's proof of possession. Keys without one
    /// are refused unless their id is in `allow_without_pop` (then a warning is logged).
    pub fn new(
        nodes: &[MonitoringNode],
        allow_without_pop: &[String],
        threshold: Threshold,
    ) -> Result<Self, MonitorSetError> {
        if nodes.is_empty() {
            return Err(MonitorSetError::Empty);
        }
        let mut out = Vec::with_capacity(nodes.len());
        let mut keys: HashMap<[u8; 48], &str> = HashMap::new();
        let mut ids: HashMap<&str, ()> = HashMap::new();
        for n in nodes {
            if ids.insert(&n.id, ()).is_some() {
                return Err(MonitorSetError::DuplicateId(n.id.clone()));
            }
            if !(n.stake.is_finite() && n.stake > 0.0) {
                return Err(MonitorSetError::BadStake {
                    id: n.id.clone(),
                    stake: n.stake,
                });
            }
            let public_key =
                PublicKey::from_hex(&n.pubkey).map_err(|source| MonitorSetError::BadKey {
                    id: n.id.clone(),
                    source,
                })?;
            // By the key's bytes, so two spellings of one key (case, say) are caught.
            if let Some(first) = keys.insert(public_key.to_bytes(), &n.id) {
                return Err(MonitorSetError::DuplicateKey {
                    first: first.to_owned(),
                    second: n.id.clone(),
                });
            }
            match &n.pop {
                Some(pop) => {
                    let pop = Signature::from_hex(pop).map_err(|e| MonitorSetError::BadPop {
                        id: n.id.clone(),
                        why: e.to_string(),
                    })?;
                    if !public_key.verify_pop(&pop) {
                        return Err(MonitorSetError::BadPop {
                            id: n.id.clone(),
                            why: "it does not verify for this key".into(),
                        });
                    }
                }
                None if allow_without_pop.contains(&n.id) => {
                    tracing::warn!(
                        node = %n.id,
                        "monitoring node key accepted WITHOUT proof of possession (allow_without_pop): \
                         a rogue key could forge quorum proofs"
                    );
                }
                None => return Err(MonitorSetError::MissingPop { id: n.id.clone() }),
            }
            out.push(Monitor {
                id: n.id.clone(),
                url: n.url.trim_end_matches('/').to_owned(),
                public_key,
                stake: n.stake,
            });
        }
        let total_stake: f64 = out.iter().map(|m| m.stake).sum();
        // The quorum rule multiplies the total by the threshold's terms: both
        // products must stay finite, or a single signer could "reach" infinity.
        if !(total_stake.is_finite()
            && (total_stake * threshold.den).is_finite()
            && (total_stake * threshold.num).is_finite())
        {
            return Err(MonitorSetError::TotalStake { total: total_stake });
        }
        let by_id = out
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i))
            .collect();
        Ok(MonitorSet {
            nodes: out,
            by_id,
            total_stake,
            threshold,
        })
    }

    pub fn nodes(&self) -> &[Monitor] {
        &self.nodes
    }

    pub fn get(&self, id: &str) -> Option<&Monitor> {
        self.by_id.get(id).map(|&i| &self.nodes[i])
    }

    pub fn total_stake(&self) -> f64 {
        self.total_stake
    }

    pub fn threshold(&self) -> Threshold {
        self.threshold
    }

    /// Whether signers holding `stake` reach the quorum.
    pub fn quorum_reached(&self, stake: f64) -> bool {
        self.threshold.reached(stake, self.total_stake)
    }

    /// The aggregate key of everyone but `nonsigners`, after the quorum rules:
    /// every non-signer known and listed once, signers' stake ≥ threshold.
    pub fn signer_key(&self, nonsigners: &[String]) -> Result<SignerKey, EventError> {
        let mut excluded = vec![false; self.nodes.len()];
        for id in nonsigners {
            let &i = self
                .by_id
                .get(id)
                .ok_or_else(|| EventError::UnknownNonSigner(id.clone()))?;
            if std::mem::replace(&mut excluded[i], true) {
                return Err(EventError::DuplicateNonSigner(id.clone()));
            }
        }
        let signers: Vec<&Monitor> = self
            .nodes
            .iter()
            .zip(&excluded)
            .filter(|(_, &x)| !x)
            .map(|(m, _)| m)
            .collect();
        let signed_stake: f64 = signers.iter().map(|m| m.stake).sum();
        if !self.quorum_reached(signed_stake) {
            return Err(EventError::TooFewSigners {
                signed: signed_stake,
                total: self.total_stake,
            });
        }
        // None: the signers' keys cancel out; nothing can be proven with them.
        let public_key = PublicKey::aggregate(signers.iter().map(|m| &m.public_key))
            .ok_or(EventError::InvalidSignature)?;
        Ok(SignerKey {
            public_key,
            signed_stake,
        })
    }

    /// Full check of one quorum-signed message.
    pub fn verify_quorum(
        &self,
        msg: &str,
        aggregated_signature: &str,
        nonsigners: &[String],
    ) -> Result<(), EventError> {
        let key = self.signer_key(nonsigners)?;
        let sig = Signature::from_hex(aggregated_signature).map_err(EventError::BadEncoding)?;
        if sig.verify(&key.public_key, msg.as_bytes()) {
            Ok(())
        } else {
            Err(EventError::InvalidSignature)
        }
    }

    /// Verifies many events: structural and quorum checks one by one, then the
    /// signatures in batches spread over the cores; only a batch that fails is
    /// checked item by item, to isolate the bad ones. Results are in input order.
    pub fn verify_events(&self, events: &[&Event]) -> Vec<Result<(), EventError>> {
        let mut results: Vec<Result<(), EventError>> = Vec::with_capacity(events.len());
        let mut prepared: Vec<Pending<'_>> = Vec::new();
        // Most events share a signer set: aggregate each set's key once.
        let mut keys: HashMap<&[String], Result<SignerKey, EventError>> = HashMap::new();
        // An event repeated (same message, signature and signers: a replay, or junk
        // copied to cost CPU) is checked once; the copies take its result.
        let mut first_of: HashMap<(String, &str, &[String]), usize> = HashMap::new();
        let mut copies: Vec<(usize, usize)> = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let msg = e.message();
            match first_of.entry((msg.clone(), &e.aggregated_signature, &e.non_signing_nodes)) {
                std::collections::hash_map::Entry::Occupied(o) => {
                    copies.push((i, *o.get()));
                    results.push(Ok(()));
                    continue;
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(i);
                }
            }
            let key = keys
                .entry(e.non_signing_nodes.as_slice())
                .or_insert_with(|| self.signer_key(&e.non_signing_nodes))
                .clone();
            match key {
                Ok(k) => {
                    prepared.push(Pending {
                        index: i,
                        msg,
                        pk: k.public_key,
                        sig_hex: &e.aggregated_signature,
                    });
                    results.push(Ok(()));
                }
                Err(err) => results.push(Err(err)),
            }
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let parts = threads.min(prepared.len() / MIN_PER_THREAD).max(1);
        let per = prepared.len().div_ceil(parts).max(1);
        let failures: Vec<(usize, EventError)> = std::thread::scope(|scope| {
            let handles: Vec<_> = prepared
                .chunks(per)
                .map(|part| scope.spawn(move || verify_part(part)))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("verification thread"))
                .collect()
        });
        for (i, err) in failures {
            results[i] = Err(err);
        }
        for (copy, first) in copies {
            results[copy] = results[first].clone();
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::bls::SecretKey;

    #[test]
    fn batch_verification_isolates_exactly_the_bad_events() {
        let keys: Vec<SecretKey> = (1..=4u8)
            .map(|i| SecretKey::key_gen(&[i; 32]).unwrap())
            .collect();
        let nodes: Vec<MonitoringNode> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| MonitoringNode {
                id: format!("N{i}"),
                url: "http://x".into(),
                pubkey: k.public_key().to_hex(),
                pop: Some(k.prove_possession().to_hex()),
                stake: 1.0,
            })
            .collect();
        let set = MonitorSet::new(&nodes, &[], Threshold::TWO_THIRDS).unwrap();
        // Three signer sets (so three keys in the grouped batch).
        let mut events: Vec<Event> = (0..100)
            .map(|i| {
                let msg = state_message(&format!("0x{i}"), NodeState::Down, i);
                let missing = [3usize, 2, 4][i as usize % 3];
                let sigs: Vec<Signature> = keys
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| *k != missing)
                    .map(|(_, k)| k.sign(msg.as_bytes()))
                    .collect();
                Event {
                    address: format!("0x{i}"),
                    state: NodeState::Down,
                    timestamp: i,
                    aggregated_signature: Signature::aggregate(&sigs).unwrap().to_hex(),
                    non_signing_nodes: if missing < 4 {
                        vec![format!("N{missing}")]
                    } else {
                        vec![]
                    },
                }
            })
            .collect();
        events[7].timestamp += 1; // signature no longer matches
        events[61].aggregated_signature = events[62].aggregated_signature.clone();
        events[90].aggregated_signature = "zz".into();
        events[40].non_signing_nodes = vec!["N3".into()]; // names the wrong non-signer
        events[95].non_signing_nodes = vec!["N3".into(), "N2".into()];
        let refs: Vec<&Event> = events.iter().collect();
        let results = set.verify_events(&refs);
        let bad: Vec<(usize, &'static str)> = results
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().err().map(|e| (i, e.reason())))
            .collect();
        assert_eq!(
            bad,
            vec![
                (7, "bad_signature"),
                (40, "bad_signature"),
                (61, "bad_signature"),
                (90, "bad_signature_encoding"),
                (95, "too_few_signers")
            ]
        );
        // Copies take the result of their first occurrence, good or bad.
        let copies: Vec<&Event> = [7, 8, 7, 8, 90, 95, 7]
            .iter()
            .map(|&i| &events[i])
            .collect();
        let reasons: Vec<Option<&str>> = set
            .verify_events(&copies)
            .iter()
            .map(|r| r.as_ref().err().map(|e| e.reason()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                Some("bad_signature"),
                None,
                Some("bad_signature"),
                None,
                Some("bad_signature_encoding"),
                Some("too_few_signers"),
                Some("bad_signature")
            ]
        );
    }
}
