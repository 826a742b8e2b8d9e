//! Finalized Zellular batches → parsed, batch-verified events → the replica.
//!
//! Applying is a pure function of the sequence and the configured monitoring nodes
//! and targets, so replicas at the same index hold the same rows. Rules
//! (PROTOCOL.md §3): drop what fails parsing or verification (log + metric); apply
//! only real transitions (state differs, timestamp ≥ the last applied one); the
//! events, the states and the cursor commit in one transaction per chunk.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::events::{parse_batch, Event, EventError, MonitorSet};
use crate::metrics;
use crate::store::node::{Applied, Position, ReplicaStore, Transition};
use crate::zellular::{Client, Cursor, FinalizedBatch, OperatorSource, StreamError};

/// What one chunk did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChunkReport {
    pub batches: usize,
    pub applied: usize,
    pub rejected: usize,
}

/// Applies the verified sequence to the replica.
pub struct Replicator {
    store: ReplicaStore,
    monitors: Arc<MonitorSet>,
    addresses: HashSet<String>,
    /// Current state of every address, mirrored from the store (the only writer).
    states: HashMap<String, Transition>,
    client: Client,
    operators: OperatorSource,
    caught_up: Arc<AtomicBool>,
}

fn reject(zindex: u64, pos: Option<usize>, e: &EventError) {
    metrics::inc("events_rejected_total", &[("reason", e.reason())]);
    match pos {
        Some(p) => {
            tracing::warn!(index = zindex, position = p, reason = e.reason(), error = %e, "event not applied")
        }
        None => {
            tracing::warn!(index = zindex, reason = e.reason(), error = %e, "batch not applied")
        }
    }
}

impl Replicator {
    pub async fn new(
        store: ReplicaStore,
        monitors: Arc<MonitorSet>,
        addresses: &[String],
        client: Client,
        operators: OperatorSource,
        caught_up: Arc<AtomicBool>,
    ) -> Result<Self, crate::store::StoreError> {
        store.init_addresses(addresses).await?;
        let states = store.states().await?;
        Ok(Replicator {
            store,
            monitors,
            addresses: addresses.iter().cloned().collect(),
            states,
            client,
            operators,
            caught_up,
        })
    }

    /// Verifies and applies one chunk of finalized batches (which must follow the
    /// replica's cursor), committing it in one transaction.
    pub async fn apply_chunk(
        &mut self,
        chunk: &[FinalizedBatch],
    ) -> Result<(Position, ChunkReport), crate::store::StoreError> {
        let Some(last) = chunk.last() else {
            return Ok((self.store.position().await?, ChunkReport::default()));
        };
        let mut report = ChunkReport {
            batches: chunk.len(),
            ..Default::default()
        };
        // Parse; structural failures are dropped here.
        let mut candidates: Vec<(u64, u32, Event, i64)> = Vec::new();
        for b in chunk {
            match parse_batch(&b.body) {
                Err(e) => {
                    reject(b.index, None, &e);
                    report.rejected += 1;
                }
                Ok(items) => {
                    for (pos, item) in items.into_iter().enumerate() {
                        match item.and_then(|ev| {
                            if self.addresses.contains(&ev.address) {
                                Ok(ev)
                            } else {
                                Err(EventError::UnknownAddress(ev.address))
                            }
                        }) {
                            Ok(ev) => candidates.push((b.index, pos as u32, ev, b.timestamp)),
                            Err(e) => {
                                reject(b.index, Some(pos), &e);
                                report.rejected += 1;
                            }
                        }
                    }
                }
            }
        }
        // Verify every signature of the chunk in one batch (off the async threads).
        let monitors = self.monitors.clone();
        let (candidates, verdicts) = tokio::task::spawn_blocking(move || {
            let refs: Vec<&Event> = candidates.iter().map(|c| &c.2).collect();
            let verdicts = monitors.verify_events(&refs);
            (candidates, verdicts)
        })
        .await
        .expect("verification task");
        // Apply the rules in sequence order.
        let mut accepted = Vec::new();
        let mut next_states = self.states.clone();
        for ((zindex, pos, ev, finalized_at), verdict) in candidates.into_iter().zip(verdicts) {
            let cur = next_states.get(&ev.address).copied().unwrap_or(Transition {
                state: crate::events::NodeState::Up,
                timestamp: 0,
            });
            let res = verdict.and_then(|()| {
                if ev.state == cur.state {
                    Err(EventError::RepeatedState {
                        state: ev.state,
                        timestamp: ev.timestamp,
                    })
                } else if ev.timestamp < cur.timestamp {
                    Err(EventError::Stale {
                        timestamp: ev.timestamp,
                        last: cur.timestamp,
                    })
                } else {
                    Ok(())
                }
            });
            match res {
                Ok(()) => {
                    next_states.insert(
                        ev.address.clone(),
                        Transition {
                            state: ev.state,
                            timestamp: ev.timestamp,
                        },
                    );
                    tracing::info!(index = zindex, address = %ev.address, state = %ev.state, timestamp = ev.timestamp, "event applied");
                    accepted.push(Applied {
                        zellular_index: zindex,
                        position: pos,
                        event: ev,
                        finalized_at,
                    });
                }
                Err(e) => {
                    reject(zindex, Some(pos as usize), &e);
                    report.rejected += 1;
                }
            }
        }
        let position = self
            .store
            .apply(&accepted, last.index, &last.chaining_hash)
            .await?;
        self.states = next_states;
        report.applied = accepted.len();
        metrics::add("events_applied_total", &[], accepted.len() as u64);
        metrics::add("batches_applied_total", &[], chunk.len() as u64);
        Ok((position, report))
    }

    /// Replicates until `stop`. A gateway that fails verification is never trusted:
    /// nothing it sent is applied, the stream restarts from the persisted cursor at
    /// the next gateway after a pause.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut pause = Duration::from_millis(500);
        'outer: loop {
            let pos = match self.store.position().await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the replica cursor");
                    if sleep_or_stop(&stop, pause).await {
                        return;
                    }
                    continue;
                }
            };
            tracing::info!(index = pos.index, "replicating from the cursor");
            let mut stream = self
                .client
                .finalized_stream(
                    Cursor::at(pos.index, pos.chaining_hash),
                    self.operators.clone(),
                )
                .with_caught_up_flag(self.caught_up.clone());
            loop {
                let chunk = tokio::select! {
                    _ = stop.cancelled() => return,
                    c = stream.next_chunk() => c,
                };
                match chunk {
                    Ok(chunk) => {
                        if let Err(e) = self.apply_chunk(&chunk).await {
                            metrics::inc("replicator_errors_total", &[("kind", "store")]);
                            tracing::error!(error = %e, "applying a chunk failed; resuming from the cursor");
                            if let Ok(states) = self.store.states().await {
                                self.states = states;
                            }
                            if sleep_or_stop(&stop, pause).await {
                                return;
                            }
                            continue 'outer;
                        }
                        pause = Duration::from_millis(500);
                    }
                    Err(e) if e.is_fatal() => {
                        metrics::inc("replicator_errors_total", &[("kind", "integrity")]);
                        tracing::error!(error = %e, "gateway failed verification; nothing from it is applied");
                        self.client.rotate_gateway();
                        pause = (pause * 2).min(Duration::from_secs(30));
                        if sleep_or_stop(&stop, pause).await {
                            return;
                        }
                        continue 'outer;
                    }
                    Err(e) => {
                        metrics::inc("replicator_errors_total", &[("kind", "transient")]);
                        tracing::warn!(error = %e, "sequencer unavailable; retrying");
                        if sleep_or_stop(&stop, Duration::from_secs(1)).await {
                            return;
                        }
                        if matches!(
                            e,
                            StreamError::Unproven { .. } | StreamError::OperatorSet { .. }
                        ) {
                            // This gateway's answers cannot be proven: try the next
                            // one, from the persisted cursor.
                            self.client.rotate_gateway();
                            continue 'outer;
                        }
                    }
                }
            }
        }
    }
}

/// Sleeps; true if `stop` fired first.
async fn sleep_or_stop(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}
