//! Answers computed from the replicated log: downtime over a range (the reference
//! `calculate_downtime` semantics), the interval table, per-epoch summaries.

use serde::Serialize;

use crate::config::EpochConfig;
use crate::events::NodeState;
use crate::store::node::{ReplicaStore, Transition};
use crate::store::StoreError;

/// Downtime of one address over `[from, to]`, computed by this node from its replica.
/// Only this module builds one, so a signature over it signs what the node computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Downtime {
    address: String,
    from: i64,
    to: i64,
    seconds: i64,
}

impl Downtime {
    pub fn address(&self) -> &str {
        &self.address
    }
    pub fn from(&self) -> i64 {
        self.from
    }
    pub fn to(&self) -> i64 {
        self.to
    }
    pub fn seconds(&self) -> i64 {
        self.seconds
    }
}

/// The reference arithmetic: `before` is the state in force just before `from`,
/// `within` the transitions with `from ≤ t ≤ to` in order. With alternating
/// transitions (what the apply rules guarantee) this is the measure of the time in
/// `[from, to]` spent down.
pub fn downtime_seconds(before: NodeState, within: &[Transition], from: i64, to: i64) -> i64 {
    if within.is_empty() {
        return if before == NodeState::Down {
            to - from
        } else {
            0
        };
    }
    let mut total = 0;
    let mut down_since = from;
    for t in within {
        match t.state {
            NodeState::Down => down_since = t.timestamp,
            NodeState::Up => total += t.timestamp - down_since,
        }
    }
    if within.last().map(|t| t.state) == Some(NodeState::Down) {
        total += to - down_since;
    }
    total
}

/// One row of the interval table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interval {
    pub address: String,
    pub state: NodeState,
    pub start: i64,
    /// `None` while ongoing.
    pub end: Option<i64>,
    /// Seconds; an ongoing interval counts up to `now`.
    pub duration: i64,
}

/// Per-epoch figures for one address.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochSummary {
    pub address: String,
    pub epoch: i64,
    pub start: i64,
    /// Exclusive end; for the current epoch, figures run up to `now`.
    pub end: i64,
    pub downtime_seconds: i64,
    /// Down intervals overlapping the epoch (one that began earlier counts too).
    pub outages: u64,
    pub uptime_percent: f64,
}

/// Why a question cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("unknown address {0}")]
    UnknownAddress(String),
    #[error("{0}")]
    BadRange(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Answers questions from the replica.
#[derive(Clone)]
pub struct Answers {
    store: ReplicaStore,
    addresses: std::sync::Arc<Vec<String>>,
    epoch: EpochConfig,
}

fn check_range(from: i64, to: i64) -> Result<(), AnswerError> {
    if from < 0 || to < from {
        return Err(AnswerError::BadRange(format!(
            "need 0 ≤ from_timestamp ≤ to_timestamp, got {from}, {to}"
        )));
    }
    Ok(())
}

impl Answers {
    pub fn new(store: ReplicaStore, addresses: Vec<String>, epoch: EpochConfig) -> Self {
        Answers {
            store,
            addresses: std::sync::Arc::new(addresses),
            epoch,
        }
    }

    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    fn known(&self, address: &str) -> Result<(), AnswerError> {
        if self.addresses.iter().any(|a| a == address) {
            Ok(())
        } else {
            Err(AnswerError::UnknownAddress(address.to_owned()))
        }
    }

    /// Downtime of `address` over `[from, to]`.
    pub async fn downtime(
        &self,
        address: &str,
        from: i64,
        to: i64,
    ) -> Result<Downtime, AnswerError> {
        self.known(address)?;
        check_range(from, to)?;
        let before = self.store.state_before(address, from).await?;
        let within = self.store.transitions(address, from, to).await?;
        Ok(Downtime {
            address: address.to_owned(),
            from,
            to,
            seconds: downtime_seconds(before.state, &within, from, to),
        })
    }

    /// The intervals of `address` that overlap `[from, to]`, with their real bounds.
    pub async fn intervals(
        &self,
        address: &str,
        from: i64,
        to: i64,
        now: i64,
    ) -> Result<Vec<Interval>, AnswerError> {
        self.known(address)?;
        check_range(from, to)?;
        let before = self.store.state_before(address, from).await?;
        let within = self.store.transitions(address, from, to).await?;
        let mut starts = vec![before];
        starts.extend(within);
        let after = self.store.next_after(address, to).await?;
        let mut out = Vec::with_capacity(starts.len());
        for (i, t) in starts.iter().enumerate() {
            let end = starts.get(i + 1).or(after.as_ref()).map(|n| n.timestamp);
            // A transition at exactly `from` closes the state before it at zero width.
            if end == Some(t.timestamp) && i == 0 && t.timestamp < from {
                continue;
            }
            out.push(Interval {
                address: address.to_owned(),
                state: t.state,
                start: t.timestamp,
                end,
                duration: end.unwrap_or(now.max(t.timestamp)) - t.timestamp,
            });
        }
        Ok(out)
    }

    /// The epoch containing unix time `t`.
    pub fn epoch_of(&self, t: i64) -> i64 {
        t.saturating_sub(self.epoch.genesis)
            .div_euclid(self.epoch.length_secs as i64)
    }

    /// Figures for `address` in epoch `n`, up to `now` for the current one.
    pub async fn epoch_summary(
        &self,
        address: &str,
        n: i64,
        now: i64,
    ) -> Result<EpochSummary, AnswerError> {
        self.known(address)?;
        let len = self.epoch.length_secs as i64;
        let start = n
            .checked_mul(len)
            .and_then(|o| o.checked_add(self.epoch.genesis))
            .filter(|s| *s >= 0 && s.checked_add(len).is_some())
            .ok_or_else(|| AnswerError::BadRange(format!("epoch {n} is out of range")))?;
        let end = (start + len).min(now.max(start));
        let before = self.store.state_before(address, start).await?;
        // Transitions at exactly `end` belong to the next epoch.
        let within: Vec<Transition> = self
            .store
            .transitions(address, start, end)
            .await?
            .into_iter()
            .filter(|t| t.timestamp < end || end == start)
            .collect();
        let downtime = downtime_seconds(before.state, &within, start, end);
        let outages = u64::from(before.state == NodeState::Down)
            + within.iter().filter(|t| t.state == NodeState::Down).count() as u64;
        let span = end - start;
        let uptime_percent = if span > 0 {
            100.0 * (span - downtime) as f64 / span as f64
        } else {
            100.0
        };
        Ok(EpochSummary {
            address: address.to_owned(),
            epoch: n,
            start,
            end,
            downtime_seconds: downtime,
            outages,
            uptime_percent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn t(state: NodeState, timestamp: i64) -> Transition {
        Transition { state, timestamp }
    }

    /// The naive model: count the seconds s in [from, to) whose state (the last
    /// transition at or before s) is down.
    fn naive(history: &[Transition], from: i64, to: i64) -> i64 {
        (from..to)
            .filter(|&s| {
                history
                    .iter()
                    .rev()
                    .find(|t| t.timestamp <= s)
                    .is_some_and(|t| t.state == NodeState::Down)
            })
            .count() as i64
    }

    /// Random alternating histories, as the apply rules produce them.
    fn history(rng: &mut impl Rng) -> Vec<Transition> {
        let mut out = vec![t(NodeState::Up, 0)];
        let mut ts = 0;
        for _ in 0..rng.gen_range(0..12) {
            ts += rng.gen_range(0..20);
            let next = match out.last().map(|x| x.state) {
                Some(NodeState::Up) => NodeState::Down,
                _ => NodeState::Up,
            };
            out.push(t(next, ts));
        }
        out
    }

    #[test]
    fn downtime_matches_the_naive_model() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let h = history(&mut rng);
            let from = rng.gen_range(0..150);
            let to = from + rng.gen_range(0..150);
            // The initial `up since 0` is implicit: only later transitions are stored.
            let stored = &h[1..];
            let before = stored
                .iter()
                .rev()
                .find(|x| x.timestamp < from)
                .map_or(NodeState::Up, |x| x.state);
            let within: Vec<Transition> = stored
                .iter()
                .filter(|x| x.timestamp >= from && x.timestamp <= to)
                .copied()
                .collect();
            assert_eq!(
                downtime_seconds(before, &within, from, to),
                naive(&h, from, to),
                "history {h:?} over [{from}, {to}]"
            );
        }
    }

    #[test]
    fn reference_examples() {
        use NodeState::*;
        // Down at 100, up at 160: 60 s inside [0, 1000].
        assert_eq!(
            downtime_seconds(Up, &[t(Down, 100), t(Up, 160)], 0, 1000),
            60
        );
        // Window inside the outage.
        assert_eq!(downtime_seconds(Down, &[], 120, 150), 30);
        // Outage still going at the end of the window.
        assert_eq!(downtime_seconds(Up, &[t(Down, 900)], 0, 1000), 100);
        // Down before the window, up inside it.
        assert_eq!(downtime_seconds(Down, &[t(Up, 130)], 120, 150), 10);
    }
}
