//! What this node's aggregator is doing about each target, told to the other
//! aggregators at `GET /v1/pursuits?address=A`, and what a node makes of their
//! answers before it gathers a proof itself.
//!
//! Aggregators take turns per change by rank (see the aggregator), but a turn
//! is counted from each node's own confirmation, and a proof takes time to be
//! gathered, posted and applied: on a busy network the next-ranked nodes reach their
//! turn while the first one's proof is still on its way. So at its turn a node first
//! asks the nodes ranked just before it (and the next few after it, in case one of
//! them started earlier) what they are doing about this target:
//!
//! - one **holds a proof** of the change: the node checks it (quorum signature
//!   against the monitoring set in force, the target, state, age) and adopts it — it
//!   gathers nothing and posts nothing, and posts that same proof itself only if the
//!   change is still not applied after `confirm_timeout`;
//! - one is **gathering** (and has been for less than `confirm_timeout`): the node
//!   waits one more rank step and asks again, at most [`MAX_DEFERRALS`] times;
//! - otherwise it gathers a proof itself.
//!
//! A proof is checked, so a peer cannot make a node adopt anything false; a peer
//! that claims to be gathering when it is not can delay a change by at most
//! [`MAX_DEFERRALS`] rank steps, no more than a silent first-ranked node costs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::events::{Event, NodeState};

/// How many rank steps in a row a node waits for peers that say they are gathering.
pub const MAX_DEFERRALS: u32 = 4;
/// How many nodes ranked before this one are asked (the nearest ones).
pub const ASK_BEFORE: usize = 6;
/// How many nodes ranked after this one are asked.
pub const ASK_AFTER: usize = 2;

/// What a node says of its pursuit of one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for its turn (nothing to wait for, for the others).
    Waiting,
    /// Asking the monitoring nodes for their signatures.
    Gathering,
    /// Holding a quorum proof (posted, or about to be).
    Held,
}

/// `GET /v1/pursuits?address=A`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PursuitView {
    pub address: String,
    pub state: NodeState,
    pub phase: Phase,
    /// How long it has been in this phase, milliseconds.
    pub age_ms: u64,
    /// The proof, when held.
    #[serde(default)]
    pub event: Option<Event>,
}

#[derive(Debug, Clone)]
struct Entry {
    state: NodeState,
    phase: Phase,
    event: Option<Event>,
    since: Instant,
}

/// `GET /v1/pursuits?epoch=N`: this node is certifying epoch N.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochPursuitView {
    pub epoch: i64,
    pub phase: Phase,
    /// How long it has been in this phase, milliseconds.
    pub age_ms: u64,
}

/// This node's pursuits, one per target at most, and the epochs it is certifying
/// (a few at most); cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Pursuits(
    Arc<Mutex<HashMap<String, Entry>>>,
    Arc<Mutex<HashMap<i64, (Phase, Instant)>>>,
);

impl Pursuits {
    fn set(&self, address: &str, state: NodeState, phase: Phase, event: Option<Event>) {
        self.0.lock().expect("pursuits lock").insert(
            address.to_owned(),
            Entry {
                state,
                phase,
                event,
                since: Instant::now(),
            },
        );
    }

    /// This node waits for its turn at `address` being `state`.
    pub fn waiting(&self, address: &str, state: NodeState) {
        self.set(address, state, Phase::Waiting, None);
    }

    /// This node is gathering signatures for `address` being `state`.
    pub fn gathering(&self, address: &str, state: NodeState) {
        self.set(address, state, Phase::Gathering, None);
    }

    /// This node holds `event`, a quorum proof.
    pub fn held(&self, event: &Event) {
        self.set(
            &event.address,
            event.state,
            Phase::Held,
            Some(event.clone()),
        );
    }

    /// This node is doing nothing about `address` (waiting, or done).
    pub fn clear(&self, address: &str) {
        self.0.lock().expect("pursuits lock").remove(address);
    }

    /// This node is certifying epoch `n` (gathering, or holding the certificate).
    pub fn certifying(&self, n: i64, phase: Phase) {
        self.1
            .lock()
            .expect("pursuits lock")
            .insert(n, (phase, Instant::now()));
    }

    /// This node is no longer certifying epoch `n`.
    pub fn certified(&self, n: i64) {
        self.1.lock().expect("pursuits lock").remove(&n);
    }

    /// What this node says of epoch `n`.
    pub fn view_epoch(&self, n: i64) -> Option<EpochPursuitView> {
        let map = self.1.lock().expect("pursuits lock");
        map.get(&n).map(|(phase, since)| EpochPursuitView {
            epoch: n,
            phase: phase.clone(),
            age_ms: since.elapsed().as_millis() as u64,
        })
    }

    /// What this node says of `address`.
    pub fn view(&self, address: &str) -> Option<PursuitView> {
        let map = self.0.lock().expect("pursuits lock");
        map.get(address).map(|e| PursuitView {
            address: address.to_owned(),
            state: e.state,
            phase: e.phase.clone(),
            age_ms: e.since.elapsed().as_millis() as u64,
            event: e.event.clone(),
        })
    }
}

/// What a node does at its turn, from its peers' answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Take this peer's proof (already checked).
    Adopt(Event),
    /// Wait a rank step: a peer is gathering.
    Defer,
    /// Gather a proof.
    Gather,
}

/// The change a node is about to pursue.
pub struct Wanted<'a> {
    pub address: &'a str,
    pub state: NodeState,
    /// `since` of the replicated state: a proof must be newer.
    pub since: i64,
    /// Now, on the node's clock (seconds).
    pub now: i64,
    /// Proofs at least this old are not adopted (the replicas would refuse them).
    pub max_age: i64,
    /// Gathering claims at least this old are ignored.
    pub gather_bound: Duration,
    /// Rank steps already waited for gathering peers.
    pub deferrals: u32,
}

/// Decides from the peers' answers (`None`: no pursuit, or no answer). A held proof
/// counts only if it is for this target and state, newer than the replicated state,
/// young enough, and `proof_ok` (its quorum signature) holds; a gathering claim
/// counts only if younger than `gather_bound`, and only [`MAX_DEFERRALS`] times.
pub fn decide(
    wanted: &Wanted<'_>,
    answers: &[Option<PursuitView>],
    proof_ok: impl Fn(&Event) -> bool,
) -> Decision {
    let mut gathering = false;
    for v in answers.iter().flatten() {
        if v.address != wanted.address || v.state != wanted.state {
            continue;
        }
        match (&v.phase, &v.event) {
            (Phase::Held, Some(e))
                if e.address == wanted.address
                    && e.state == wanted.state
                    && e.timestamp > wanted.since
                    && wanted.now - e.timestamp < wanted.max_age
                    && proof_ok(e) =>
            {
                return Decision::Adopt(e.clone());
            }
            (Phase::Gathering, _) if Duration::from_millis(v.age_ms) < wanted.gather_bound => {
                gathering = true
            }
            _ => {}
        }
    }
    if gathering && wanted.deferrals < MAX_DEFERRALS {
        Decision::Defer
    } else {
        Decision::Gather
    }
}

/// Whether a node about to certify epoch `n` waits: some asked peer says, for less
/// than `bound`, that it is certifying `n` (a certificate needs no haste, so any
/// such word is waited for, at most [`MAX_DEFERRALS`] times).
pub fn defer_epoch(
    n: i64,
    answers: &[Option<EpochPursuitView>],
    bound: Duration,
    deferrals: u32,
) -> bool {
    deferrals < MAX_DEFERRALS
        && answers.iter().flatten().any(|v| {
            v.epoch == n && v.phase != Phase::Waiting && Duration::from_millis(v.age_ms) < bound
        })
}

/// Which of `ranked` (ids in rank order) a node at `rank` asks: up to
/// [`ASK_BEFORE`] nearest before it and [`ASK_AFTER`] after it.
pub fn to_ask(ranked: &[String], rank: usize) -> Vec<String> {
    let from = rank.saturating_sub(ASK_BEFORE);
    let to = (rank + 1 + ASK_AFTER).min(ranked.len());
    ranked[from.min(to)..to]
        .iter()
        .enumerate()
        .filter(|(i, _)| from + i != rank)
        .map(|(_, id)| id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ts: i64, state: NodeState) -> Event {
        Event {
            address: "0xA".into(),
            state,
            timestamp: ts,
            aggregated_signature: "ab".into(),
            non_signing_nodes: vec![],
        }
    }

    fn wanted(deferrals: u32) -> Wanted<'static> {
        Wanted {
            address: "0xA",
            state: NodeState::Down,
            since: 100,
            now: 200,
            max_age: 60,
            gather_bound: Duration::from_secs(10),
            deferrals,
        }
    }

    fn held(e: Event) -> Option<PursuitView> {
        Some(PursuitView {
            address: e.address.clone(),
            state: e.state,
            phase: Phase::Held,
            age_ms: 10,
            event: Some(e),
        })
    }

    fn gathering(age_ms: u64) -> Option<PursuitView> {
        Some(PursuitView {
            address: "0xA".into(),
            state: NodeState::Down,
            phase: Phase::Gathering,
            age_ms,
            event: None,
        })
    }

    #[test]
    fn a_checked_proof_is_adopted_before_any_claim() {
        let good = event(190, NodeState::Down);
        let d = decide(
            &wanted(0),
            &[None, gathering(5), held(good.clone())],
            |_| true,
        );
        assert_eq!(d, Decision::Adopt(good));
    }

    #[test]
    fn a_proof_is_not_adopted_unless_every_check_holds() {
        let ok = |_: &Event| true;
        // Its signature does not verify.
        let d = decide(&wanted(0), &[held(event(190, NodeState::Down))], |_| false);
        assert_eq!(d, Decision::Gather);
        // Another state.
        assert_eq!(
            decide(&wanted(0), &[held(event(190, NodeState::Up))], ok),
            Decision::Gather
        );
        // Not newer than the replicated state.
        assert_eq!(
            decide(&wanted(0), &[held(event(100, NodeState::Down))], ok),
            Decision::Gather
        );
        // Too old for the replicas.
        assert_eq!(
            decide(&wanted(0), &[held(event(140, NodeState::Down))], ok),
            Decision::Gather
        );
        // Another target, under this target's name.
        let mut other = event(190, NodeState::Down);
        other.address = "0xB".into();
        let mut v = held(other).unwrap();
        v.address = "0xA".into();
        assert_eq!(decide(&wanted(0), &[Some(v)], ok), Decision::Gather);
        // Held, but no proof in it.
        let mut empty = held(event(190, NodeState::Down)).unwrap();
        empty.event = None;
        assert_eq!(decide(&wanted(0), &[Some(empty)], ok), Decision::Gather);
    }

    #[test]
    fn gathering_claims_defer_a_bounded_number_of_times() {
        let ok = |_: &Event| true;
        for k in 0..MAX_DEFERRALS {
            assert_eq!(decide(&wanted(k), &[gathering(10)], ok), Decision::Defer);
        }
        assert_eq!(
            decide(&wanted(MAX_DEFERRALS), &[gathering(10)], ok),
            Decision::Gather
        );
        // A claim older than the bound is ignored.
        assert_eq!(
            decide(&wanted(0), &[gathering(10_000)], ok),
            Decision::Gather
        );
        // A peer waiting for its turn is nothing to wait for.
        let mut waiting = gathering(10).unwrap();
        waiting.phase = Phase::Waiting;
        assert_eq!(decide(&wanted(0), &[Some(waiting)], ok), Decision::Gather);
        // Nobody pursuing, or nobody answering.
        assert_eq!(decide(&wanted(0), &[None, None], ok), Decision::Gather);
        assert_eq!(decide(&wanted(0), &[], ok), Decision::Gather);
    }

    #[test]
    fn the_nearest_ranks_are_asked() {
        let ids: Vec<String> = (0..20).map(|i| format!("N{i}")).collect();
        assert_eq!(to_ask(&ids, 0), vec!["N1", "N2"]);
        assert_eq!(to_ask(&ids, 1), vec!["N0", "N2", "N3"]);
        assert_eq!(
            to_ask(&ids, 10),
            vec!["N4", "N5", "N6", "N7", "N8", "N9", "N11", "N12"]
        );
        assert_eq!(
            to_ask(&ids, 19),
            vec!["N13", "N14", "N15", "N16", "N17", "N18"]
        );
        assert_eq!(to_ask(&ids[..1], 0), Vec::<String>::new());
    }

    #[test]
    fn certifying_peers_are_waited_for_a_bounded_number_of_times() {
        let p = Pursuits::default();
        assert_eq!(p.view_epoch(7), None);
        p.certifying(7, Phase::Gathering);
        let v = p.view_epoch(7);
        assert_eq!(
            v.as_ref().map(|v| (v.epoch, &v.phase)),
            Some((7, &Phase::Gathering))
        );
        let bound = Duration::from_secs(10);
        assert!(defer_epoch(7, &[None, v.clone()], bound, 0));
        assert!(!defer_epoch(
            7,
            std::slice::from_ref(&v),
            bound,
            MAX_DEFERRALS
        ));
        assert!(
            !defer_epoch(8, std::slice::from_ref(&v), bound, 0),
            "another epoch"
        );
        let mut old = v.clone().unwrap();
        old.age_ms = 10_000;
        assert!(!defer_epoch(7, &[Some(old)], bound, 0), "too old a claim");
        assert!(!defer_epoch(7, &[None], bound, 0));
        p.certified(7);
        assert_eq!(p.view_epoch(7), None);
    }

    #[test]
    fn a_view_says_what_this_node_does() {
        let p = Pursuits::default();
        assert_eq!(p.view("0xA"), None);
        p.gathering("0xA", NodeState::Down);
        let v = p.view("0xA").unwrap();
        assert_eq!(
            (v.phase, v.state, v.event),
            (Phase::Gathering, NodeState::Down, None)
        );
        let e = event(190, NodeState::Down);
        p.held(&e);
        assert_eq!(p.view("0xA").unwrap().event, Some(e));
        p.clear("0xA");
        assert_eq!(p.view("0xA"), None);
    }
}
