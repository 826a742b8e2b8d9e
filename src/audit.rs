//! `livenessd audit`: replays a replica offline and says whether it is what the
//! apply rules make of its own log — every event's quorum proof re-verified, every
//! rule re-checked in order, every derived value (digest chain, running totals,
//! states, cursor) recomputed. Exit 0 consistent, 1 not (naming the first bad row),
//! 2 unreadable.

use std::collections::HashMap;
use std::path::Path;

use crate::config::NodeConfig;
use crate::events::{Event, MonitorSet};
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
    let allow: Vec<String> = cfg.allow_without_pop.clone();
    let monitors = MonitorSet::new(&cfg.monitoring_nodes, &allow, cfg.threshold())
        .map_err(|e| anyhow::anyhow!("monitoring_nodes: {e}"))?;
    let window = ApplyWindow {
        max_event_age: cfg.settlement.max_event_age_secs as i64,
        max_clock_drift: cfg.settlement.max_clock_drift_secs as i64,
    };
    let addresses: std::collections::HashSet<&str> =
        cfg.targets.iter().map(|t| t.address.as_str()).collect();
    let verdict = replay(&store, std::sync::Arc::new(monitors), &addresses, window).await;
    store.close().await;
    verdict
}

async fn replay(
    store: &ReplicaStore,
    monitors: std::sync::Arc<MonitorSet>,
    addresses: &std::collections::HashSet<&str>,
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
        let m = monitors.clone();
        let (page, verdicts) = tokio::task::spawn_blocking(move || {
            let refs: Vec<&Event> = page.iter().map(|r| &r.event).collect();
            let v = m.verify_events(&refs);
            (page, v)
        })
        .await?;
        for (row, verdict) in page.iter().zip(verdicts) {
            let e = &row.event;
            let bad = |why: String| {
                Ok(Verdict::Inconsistent(format!(
                    "events row seq {} ({} {} at {}, Zellular index {}): {why}",
                    row.seq, e.address, e.state, e.timestamp, row.zellular_index
                )))
            };
            if !addresses.contains(e.address.as_str()) {
                return bad("the address is not a monitored target".into());
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
