//! `livenessd audit`: replays a replica offline and says whether it is what the
//! apply rules make of its own log — every event's quorum proof re-verified, every
//! rule re-checked in order, every derived value (digest chain, running totals,
//! states, cursor) recomputed. Exit 0 consistent, 1 not (naming the first bad row),
//! 2 unreadable.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::certificate::{Certificate, Row, Table};
use crate::config::NodeConfig;
use crate::events::Event;
use crate::network::history::{History, Recorded};
use crate::network::{Genesis, NetworkState};
use crate::replicator::ApplyWindow;
use crate::store::node::{ReplicaStore, StoredEvent, TargetState};

/// The outcome of an audit that could read its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Consistent { events: u64, digest: String },
    Inconsistent(String),
}

/// Rows verified per signature batch.
const PAGE: u32 = 4_096;

/// Audits the replica at `database` (default: the configuration's) against the
/// network the configuration describes.
pub async fn audit(cfg: &NodeConfig, database: Option<&Path>) -> anyhow::Result<Verdict> {
    let path = database.unwrap_or(&cfg.database);
    let store = ReplicaStore::open_read_only(path)
        .await
        .map_err(|e| anyhow::anyhow!("database {}: {e}", path.display()))?;
    let mut cfg = cfg.clone();
    let genesis = Genesis::resolve(&mut cfg).map_err(|e| anyhow::anyhow!("genesis: {e}"))?;
    let window = ApplyWindow {
        max_event_age: cfg.settlement.max_event_age_secs as i64,
        max_clock_drift: cfg.settlement.max_clock_drift_secs as i64,
    };
    let verdict = match network_history(&store, genesis).await? {
        Ok(h) => match replay(&store, &h, window).await? {
            v @ Verdict::Consistent { .. } => match certificates(&store, &h).await? {
                Some(why) => Ok(Verdict::Inconsistent(why)),
                None => Ok(v),
            },
            v => Ok(v),
        },
        Err(why) => Ok(Verdict::Inconsistent(why)),
    };
    store.close().await;
    verdict
}

/// Every stored epoch certificate: its proof under the version it names, for this
/// network, its rows making its root. The first that fails, if any.
async fn certificates(store: &ReplicaStore, h: &Versions) -> anyhow::Result<Option<String>> {
    let mut after = i64::MIN;
    loop {
        let page = store.certificates(after, 256).await?;
        let Some(last) = page.last() else {
            return Ok(None);
        };
        after = last.epoch;
        for summary in page {
            let Some(stored) = store.certificate(summary.epoch).await? else {
                continue;
            };
            let n = stored.epoch;
            let c: Certificate = match serde_json::from_str(&stored.certificate) {
                Ok(c) => c,
                Err(e) => {
                    return Ok(Some(format!(
                        "certificate of epoch {n}: does not parse: {e}"
                    )))
                }
            };
            let Some(set) = h.states.get((c.network_version as usize).wrapping_sub(1)) else {
                return Ok(Some(format!(
                    "certificate of epoch {n}: names network version {}, which the replica lacks",
                    c.network_version
                )));
            };
            if c.network != set.id || c.epoch != n {
                return Ok(Some(format!(
                    "certificate of epoch {n}: names another network or epoch"
                )));
            }
            if let Err(e) = c.verify(&set.monitors) {
                return Ok(Some(format!(
                    "certificate of epoch {n}: its proof fails: {e}"
                )));
            }
            let rows: Vec<Row> = match serde_json::from_str(stored.rows.as_deref().unwrap_or("")) {
                Ok(r) => r,
                Err(e) => {
                    return Ok(Some(format!(
                        "certificate of epoch {n}: rows do not parse: {e}"
                    )))
                }
            };
            let t = Table::new(c.epoch, c.start, c.end, rows);
            if t.root() != c.root || t.rows.len() as u64 != c.rows {
                return Ok(Some(format!(
                    "certificate of epoch {n}: the stored rows do not make its root"
                )));
            }
        }
    }
}

/// The replica's network versions, checked from the configured genesis, with the
/// log position of the change that made each (none for version 1).
async fn network_history(
    store: &ReplicaStore,
    genesis: Genesis,
) -> anyhow::Result<Result<Versions, String>> {
    let id = genesis.id();
    match store.network().await? {
        Some((stored, _)) if stored != id => {
            return Ok(Err(format!(
                "the replica belongs to network {stored}, the configuration describes {id}"
            )))
        }
        _ => {}
    }
    let mut changes = Vec::new();
    let mut keys = Vec::new();
    for c in store.changes().await? {
        keys.push((c.zellular_index, c.position));
        changes.push(Recorded {
            version: c.version,
            zellular_index: c.zellular_index,
            position: c.position,
            log_time: c.log_time,
            change: serde_json::from_str(&c.change)?,
        });
    }
    let h = History {
        network: id,
        genesis,
        changes,
        next: None,
    };
    Ok(match h.replay() {
        Ok(states) => Ok(Versions { states, keys }),
        Err(e) => Err(format!("the replica's network history fails: {e}")),
    })
}

/// Every version (version 1 first) and where the changes sit in the log.
struct Versions {
    states: Vec<Arc<NetworkState>>,
    keys: Vec<(u64, u32)>,
}

impl Versions {
    /// The version in force at log position `key`.
    fn at(&self, key: (u64, u32)) -> usize {
        self.keys.partition_point(|k| *k < key)
    }
}

async fn replay(
    store: &ReplicaStore,
    versions: &Versions,
    window: ApplyWindow,
) -> anyhow::Result<Verdict> {
    // Derived values first: digest chain, totals, states, cursor.
    let count = match store.check_integrity().await? {
        Ok(n) => n,
        Err(bad) => return Ok(Verdict::Inconsistent(bad.to_string())),
    };
    let pos = store.position().await?;
    // Then the rules, in log order, and every proof.
    let mut states: HashMap<String, TargetState> = HashMap::new();
    let mut last_key: Option<(u64, u32)> = None;
    let mut last_log_time = i64::MIN;
    let mut after = 0i64;
    loop {
        let page: Vec<StoredEvent> = store.events(None, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        // Each row under the version in force at its position.
        let at: Vec<usize> = page
            .iter()
            .map(|r| versions.at((r.zellular_index, r.position)))
            .collect();
        let sets: Vec<Arc<NetworkState>> = versions.states.clone();
        let (page, verdicts) = tokio::task::spawn_blocking(move || {
            let mut verdicts = Vec::with_capacity(page.len());
            let mut start = 0;
            while start < page.len() {
                let v = at[start];
                let end = start + at[start..].iter().take_while(|x| **x == v).count();
                let refs: Vec<&Event> = page[start..end].iter().map(|r| &r.event).collect();
                verdicts.extend(sets[v].monitors.verify_events(&refs));
                start = end;
            }
            (page, verdicts)
        })
        .await?;
        for (row, verdict) in page.iter().zip(verdicts) {
            let e = &row.event;
            let v = versions.at((row.zellular_index, row.position));
            let net = &versions.states[v];
            let bad = |why: String| {
                Ok(Verdict::Inconsistent(format!(
                    "events row seq {} ({} {} at {}, Zellular index {}): {why}",
                    row.seq, e.address, e.state, e.timestamp, row.zellular_index
                )))
            };
            if row.network_version != net.version {
                return bad(format!(
                    "it records network version {}, but version {} was in force at its position",
                    row.network_version, net.version
                ));
            }
            if !net
                .definition
                .targets
                .iter()
                .any(|t| t.address == e.address)
            {
                return bad(format!(
                    "the address is not a target of network version {}",
                    net.version
                ));
            }
            if let Err(err) = verdict {
                return bad(format!("its quorum proof fails: {err}"));
            }
            let key = (row.zellular_index, row.position);
            if last_key.is_some_and(|k| key <= k) {
                return bad(format!("out of log order after {last_key:?}"));
            }
            last_key = Some(key);
            if row.log_time < last_log_time || row.log_time > pos.log_time {
                return bad(format!(
                    "its log_time {} runs backwards (previous {last_log_time}, cursor {})",
                    row.log_time, pos.log_time
                ));
            }
            last_log_time = row.log_time;
            if let Err(err) = window.check(e.timestamp, row.log_time) {
                return bad(format!("it should not have applied: {err}"));
            }
            let prev = states
                .get(&e.address)
                .copied()
                .unwrap_or(TargetState::INITIAL);
            if e.state == prev.state {
                return bad(format!(
                    "it repeats the state in force since {}",
                    prev.since
                ));
            }
            if e.timestamp < prev.since {
                return bad(format!(
                    "it is older than the previous event of its address ({})",
                    prev.since
                ));
            }
            states.insert(e.address.clone(), prev.after(e.state, e.timestamp));
        }
    }
    if let Some((k, _)) = last_key {
        if k > pos.index + u64::from(pos.partial_items > 0) {
            return Ok(Verdict::Inconsistent(format!(
                "an event comes from Zellular index {k}, past the cursor ({})",
                pos.index
            )));
        }
    }
    Ok(Verdict::Consistent {
        events: count,
        digest: pos.events_digest,
    })
}
