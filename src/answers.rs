//! Answers computed from the replicated log: downtime over a range (the reference
//! `calculate_downtime` semantics), the interval table, per-epoch summaries.
//!
//! Every answer is two or three index look-ups whatever the history's length: each
//! stored event carries its address's running totals (seconds down since 0, down
//! transitions), so the downtime in `[F, T]` is `cum(T) − cum(F)` where `cum(t)` is
//! the total at the last event at or before `t` plus the open down interval after it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::certificate::{Row, Table};
use crate::config::EpochConfig;
use crate::events::NodeState;
use crate::network::NetworkHandle;
use crate::store::node::{ReplicaStore, StoredEvent, TargetState};
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

/// A quorum proof of a downtime answer (`/aggregate_downtime`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AggregateDowntime {
    pub address: String,
    pub from_timestamp: i64,
    pub to_timestamp: i64,
    pub total_downtime_seconds: i64,
    pub aggregated_signature: String,
    pub non_signing_nodes: Vec<String>,
    /// The network version whose monitoring nodes signed it (livenessd's
    /// extension: the reference fields are unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_version: Option<u64>,
}

/// The reference arithmetic: `before` is the state in force just before `from`,
/// `within` the transitions with `from ≤ t ≤ to` in order. With alternating
/// transitions (what the apply rules guarantee) this is the measure of the time in
/// `[from, to]` spent down. Kept as the specification the running totals are
/// tested against.
pub fn downtime_seconds(before: NodeState, within: &[(NodeState, i64)], from: i64, to: i64) -> i64 {
    if within.is_empty() {
        return if before == NodeState::Down {
            to - from
        } else {
            0
        };
    }
    let mut total = 0;
    let mut down_since = from;
    for &(state, t) in within {
        match state {
            NodeState::Down => down_since = t,
            NodeState::Up => total += t - down_since,
        }
    }
    if within.last().map(|t| t.0) == Some(NodeState::Down) {
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

/// Where the next page of an interval table starts: after the event `(timestamp,
/// seq)`, or at the beginning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalCursor {
    Start,
    After(i64, i64),
}

impl IntervalCursor {
    /// `"s"`, or `"<timestamp>.<seq>"`.
    pub fn encode(&self) -> String {
        match self {
            IntervalCursor::Start => "s".into(),
            IntervalCursor::After(t, s) => format!("{t}.{s}"),
        }
    }

    pub fn decode(s: &str) -> Option<IntervalCursor> {
        if s == "s" {
            return Some(IntervalCursor::Start);
        }
        let (t, q) = s.split_once('.')?;
        Some(IntervalCursor::After(t.parse().ok()?, q.parse().ok()?))
    }
}

/// Per-epoch figures for one address, over the time it was monitored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochSummary {
    pub address: String,
    pub epoch: i64,
    pub start: i64,
    /// Exclusive end; for the current epoch, figures run up to `now`.
    pub end: i64,
    /// Whether the epoch is over (`end` is its real end).
    pub complete: bool,
    /// Seconds of `[start, end)` during which the network monitored the address.
    pub monitored_seconds: i64,
    /// Seconds down within the monitored part.
    pub downtime_seconds: i64,
    /// Down intervals overlapping the monitored part (one that began earlier counts too).
    pub outages: u64,
    /// `(monitored − downtime) / monitored`, rounded to 6 decimals; `None` when
    /// nothing of the epoch was monitored: unknown is not up.
    pub uptime_ratio: Option<f64>,
}

/// A ratio rounded to 6 decimals (about 0.09 s a day): readable, and stable.
pub fn round_ratio(r: f64) -> f64 {
    (r * 1e6).round() / 1e6
}

/// Why a question cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("unknown address {0}")]
    UnknownAddress(String),
    #[error("{0}")]
    BadRange(String),
    /// About a time that has not come.
    #[error("{0}")]
    NotYet(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Answers questions from the replica.
#[derive(Clone)]
pub struct Answers {
    store: ReplicaStore,
    network: NetworkHandle,
    epoch: EpochConfig,
    /// Tables of settled epochs (they never change), the newest few.
    tables: Arc<Mutex<BTreeMap<i64, Arc<Table>>>>,
}

/// How many settled epoch tables are kept computed.
const TABLES_CACHED: usize = 8;

fn check_range(from: i64, to: i64) -> Result<(), AnswerError> {
    if from < 0 || to < from {
        return Err(AnswerError::BadRange(format!(
            "need 0 ≤ from_timestamp ≤ to_timestamp, got {from}, {to}"
        )));
    }
    Ok(())
}

impl Answers {
    pub fn new(store: ReplicaStore, network: NetworkHandle, epoch: EpochConfig) -> Self {
        Answers {
            store,
            network,
            epoch,
            tables: Arc::default(),
        }
    }

    /// Every address that is or was a target, sorted (a removed target's history
    /// stays answerable).
    pub fn addresses(&self) -> Arc<Vec<String>> {
        self.network.current().known.clone()
    }

    pub fn epoch_config(&self) -> &EpochConfig {
        &self.epoch
    }

    /// `UnknownAddress` unless the network monitors (or monitored) `address`.
    pub fn known(&self, address: &str) -> Result<(), AnswerError> {
        if self
            .addresses()
            .binary_search_by(|a| a.as_str().cmp(address))
            .is_ok()
        {
            Ok(())
        } else {
            Err(AnswerError::UnknownAddress(address.to_owned()))
        }
    }

    /// Seconds `address` was down in `[0, t]`: one index look-up.
    async fn cum(&self, address: &str, t: i64) -> Result<i64, StoreError> {
        Ok(self
            .store
            .state_at(address, t, false)
            .await?
            .map_or(0, |s| s.down_total_at(t)))
    }

    /// The state in force just before `t` (the last event strictly before it).
    async fn before(&self, address: &str, t: i64) -> Result<TargetState, StoreError> {
        Ok(self
            .store
            .state_at(address, t, true)
            .await?
            .unwrap_or(TargetState::INITIAL))
    }

    /// Downtime of `address` over `[from, to]`.
    /// Whether `downtime(address, from, to)` can be answered at all (a known address,
    /// a valid window): checked before "not yet", so a request that can never
    /// succeed is not told to come back.
    pub fn check_query(&self, address: &str, from: i64, to: i64) -> Result<(), AnswerError> {
        self.known(address)?;
        check_range(from, to)
    }

    pub async fn downtime(
        &self,
        address: &str,
        from: i64,
        to: i64,
    ) -> Result<Downtime, AnswerError> {
        self.check_query(address, from, to)?;
        // A removed target's history ends at its removal (cut in the query).
        let seconds = self.store.downtime_between(address, from, to).await?;
        Ok(Downtime {
            address: address.to_owned(),
            from,
            to,
            seconds,
        })
    }

    /// One page of the intervals of `address` that overlap `[from, to]`, with their
    /// real bounds, from `cursor`; at most `limit` rows, each with the cursor that
    /// resumes after it. The flag says whether more rows follow.
    pub async fn intervals(
        &self,
        address: &str,
        from: i64,
        to: i64,
        now: i64,
        cursor: IntervalCursor,
        limit: u32,
    ) -> Result<(Vec<(Interval, IntervalCursor)>, bool), AnswerError> {
        self.known(address)?;
        check_range(from, to)?;
        // The table starts where monitoring started (before it, nothing is known),
        // and a removed target's ends at its removal.
        let Some((since, until)) = self.store.monitored_span(address).await? else {
            return Ok((Vec::new(), false));
        };
        let from = from.max(since);
        let (to, now) = match until {
            Some(u) => (to.min(u), now.min(u)),
            None => (to, now),
        };
        if from > to {
            return Ok((Vec::new(), false));
        }
        let limit = limit.max(1) as usize;
        // (state, start, the cursor that resumes after this row)
        let mut rows: Vec<(NodeState, i64, IntervalCursor)> = Vec::new();
        let after = match cursor {
            IntervalCursor::Start => {
                let b = self.before(address, from).await?;
                rows.push((
                    b.state,
                    b.since.max(since),
                    IntervalCursor::After(i64::MIN, i64::MIN),
                ));
                None
            }
            IntervalCursor::After(t, s) => Some((t, s)),
        };
        // One event more than the page holds: it ends the page's last row.
        let want = limit + 1;
        let events: Vec<StoredEvent> = self
            .store
            .events_in(address, from, to, after, want as u32)
            .await?;
        for e in &events {
            rows.push((
                e.event.state,
                e.event.timestamp.max(since),
                IntervalCursor::After(e.event.timestamp, e.seq),
            ));
        }
        // The state before `from`, cut to nothing by monitoring's start or by a
        // transition at exactly `from`, is no row.
        if cursor == IntervalCursor::Start
            && rows.len() > 1
            && rows[0].1 == from
            && rows[1].1 == from
        {
            rows.remove(0);
        }
        let more = rows.len() > limit;
        let next_start = if more {
            Some(rows[limit].1)
        } else {
            self.store.next_after(address, to).await?
        };
        rows.truncate(limit);
        let mut out = Vec::with_capacity(rows.len());
        for (i, &(state, start, resume)) in rows.iter().enumerate() {
            let end = rows.get(i + 1).map(|r| r.1).or(next_start).or(until);
            out.push((
                Interval {
                    address: address.to_owned(),
                    state,
                    start,
                    end,
                    duration: end.unwrap_or(now.max(start)) - start,
                },
                resume,
            ));
        }
        Ok((out, more))
    }

    /// The epoch containing unix time `t`.
    pub fn epoch_of(&self, t: i64) -> i64 {
        t.saturating_sub(self.epoch.genesis)
            .div_euclid(self.epoch.length_secs as i64)
    }

    /// Start of epoch `n`, if representable.
    pub fn epoch_start(&self, n: i64) -> Option<i64> {
        let len = self.epoch.length_secs as i64;
        n.checked_mul(len)
            .and_then(|o| o.checked_add(self.epoch.genesis))
            .filter(|s| *s >= 0 && s.checked_add(len).is_some())
    }

    /// When the network began monitoring `address` (`None`: not yet).
    pub async fn monitored_since(&self, address: &str) -> Result<Option<i64>, AnswerError> {
        self.known(address)?;
        Ok(self.store.monitored_since(address).await?)
    }

    /// Figures for `address` over `[from, to)`, monitored time only.
    async fn figures(
        &self,
        address: &str,
        from: i64,
        to: i64,
    ) -> Result<(i64, i64, u64), AnswerError> {
        let Some((since, until)) = self.store.monitored_span(address).await? else {
            return Ok((0, 0, 0));
        };
        let start = from.max(since);
        let to = until.map_or(to, |u| to.min(u));
        if start >= to {
            return Ok((0, 0, 0));
        }
        let before = self.before(address, start).await?;
        let downtime = self.cum(address, to).await? - self.cum(address, start).await?;
        // Down transitions with start ≤ t < to: those at `to` belong to what follows.
        let downs_before = |s: Option<TargetState>| s.map_or(0, |s| s.outages);
        let outages = u64::from(before.state == NodeState::Down)
            + (downs_before(self.store.state_at(address, to, true).await?)
                - downs_before(self.store.state_at(address, start, true).await?))
                as u64;
        Ok((to - start, downtime, outages))
    }

    /// Uptime of `address` over `[from, to)`, monitored time only; `None` when none
    /// of it was monitored.
    pub async fn uptime(
        &self,
        address: &str,
        from: i64,
        to: i64,
    ) -> Result<Option<f64>, AnswerError> {
        self.known(address)?;
        let (monitored, down, _) = self.figures(address, from, to).await?;
        Ok((monitored > 0).then(|| round_ratio((monitored - down) as f64 / monitored as f64)))
    }

    /// Bounds `[start, end)` of epoch `n`, if representable.
    pub fn epoch_bounds(&self, n: i64) -> Option<(i64, i64)> {
        self.epoch_start(n)
            .map(|s| (s, s + self.epoch.length_secs as i64))
    }

    /// The table of epoch `n`: a row for every address the network monitored in
    /// it. Refused unless the epoch ended at or before `settled` (this replica's
    /// settled watermark): only then is it final, the same on every replica.
    pub async fn epoch_table(&self, n: i64, settled: i64) -> Result<Arc<Table>, AnswerError> {
        let (start, end) = self
            .epoch_bounds(n)
            .ok_or_else(|| AnswerError::BadRange(format!("epoch {n} is out of range")))?;
        if end > settled {
            return Err(AnswerError::NotYet(format!(
                "epoch {n} ends at {end}, after the settled watermark ({settled})"
            )));
        }
        if let Some(t) = self.tables.lock().expect("tables lock").get(&n) {
            return Ok(t.clone());
        }
        let mut rows = Vec::new();
        for a in self.addresses().iter() {
            let (monitored, down, outages) = self.figures(a, start, end).await?;
            if monitored > 0 {
                rows.push(Row::new(
                    a,
                    monitored,
                    down,
                    outages,
                    self.epoch.min_uptime_ppm,
                ));
            }
        }
        let t = Arc::new(Table::new(n, start, end, rows));
        let mut cache = self.tables.lock().expect("tables lock");
        cache.insert(n, t.clone());
        while cache.len() > TABLES_CACHED {
            let oldest = *cache.keys().next().expect("not empty");
            cache.remove(&oldest);
        }
        Ok(t)
    }

    /// The first epoch in which any target was monitored (`None`: none yet).
    pub async fn first_monitored_epoch(&self) -> Result<Option<i64>, AnswerError> {
        let starts = self.store.monitoring().await?;
        Ok(starts.values().flatten().min().map(|t| self.epoch_of(*t)))
    }

    /// Figures for `address` in epoch `n`, up to `now` for the current one; an
    /// epoch that has not begun is refused.
    pub async fn epoch_summary(
        &self,
        address: &str,
        n: i64,
        now: i64,
    ) -> Result<EpochSummary, AnswerError> {
        self.known(address)?;
        let len = self.epoch.length_secs as i64;
        let start = self
            .epoch_start(n)
            .ok_or_else(|| AnswerError::BadRange(format!("epoch {n} is out of range")))?;
        if start > now {
            return Err(AnswerError::NotYet(format!(
                "epoch {n} begins at {start}, in the future"
            )));
        }
        let end = (start + len).min(now.max(start));
        let (monitored, downtime, outages) = self.figures(address, start, end).await?;
        Ok(EpochSummary {
            address: address.to_owned(),
            epoch: n,
            start,
            end,
            complete: end == start + len,
            monitored_seconds: monitored,
            downtime_seconds: downtime,
            outages,
            uptime_ratio: (monitored > 0)
                .then(|| round_ratio((monitored - downtime) as f64 / monitored as f64)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The naive model: count the seconds s in [from, to) whose state (the last
    /// transition at or before s) is down.
    fn naive(history: &[(NodeState, i64)], from: i64, to: i64) -> i64 {
        (from..to)
            .filter(|&s| {
                history
                    .iter()
                    .rev()
                    .find(|t| t.1 <= s)
                    .is_some_and(|t| t.0 == NodeState::Down)
            })
            .count() as i64
    }

    /// Random alternating histories, as the apply rules produce them.
    fn history(rng: &mut impl Rng) -> Vec<(NodeState, i64)> {
        let mut out = vec![(NodeState::Up, 0)];
        let mut ts = 0;
        for _ in 0..rng.gen_range(0..12) {
            ts += rng.gen_range(0..20);
            let next = match out.last().map(|x| x.0) {
                Some(NodeState::Up) => NodeState::Down,
                _ => NodeState::Up,
            };
            out.push((next, ts));
        }
        out
    }

    #[test]
    fn reference_arithmetic_matches_the_naive_model() {
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
                .find(|x| x.1 < from)
                .map_or(NodeState::Up, |x| x.0);
            let within: Vec<(NodeState, i64)> = stored
                .iter()
                .filter(|x| x.1 >= from && x.1 <= to)
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
        assert_eq!(downtime_seconds(Up, &[(Down, 100), (Up, 160)], 0, 1000), 60);
        // Window inside the outage.
        assert_eq!(downtime_seconds(Down, &[], 120, 150), 30);
        // Outage still going at the end of the window.
        assert_eq!(downtime_seconds(Up, &[(Down, 900)], 0, 1000), 100);
        // Down before the window, up inside it.
        assert_eq!(downtime_seconds(Down, &[(Up, 130)], 120, 150), 10);
    }

    #[test]
    fn interval_cursors_round_trip() {
        for c in [
            IntervalCursor::Start,
            IntervalCursor::After(17, 4),
            IntervalCursor::After(-3, 0),
        ] {
            assert_eq!(IntervalCursor::decode(&c.encode()), Some(c));
        }
        assert_eq!(IntervalCursor::decode("x"), None);
    }
}
