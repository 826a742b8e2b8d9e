//! Finalized Zellular batches → parsed, verified events → the replica.
//!
//! Applying is a pure function of the finalized sequence (with its sync-point
//! timestamps) and the network definition, so replicas at the same index hold the
//! same rows. The rules (ARCHITECTURE.md, "The apply rules"), in order:
//! 1. a batch that is not a JSON array, or an event that does not parse, is dropped;
//! 2. an event about an unknown address is dropped;
//! 3. with `sync_time` = the newest sync-point timestamp applied, this batch's
//!    included (`log_time`): an event older than `sync_time - max_event_age` is
//!    `too_old`, one later than `sync_time + max_clock_drift` is `from_future`;
//! 4. the quorum proof must verify (known, distinct non-signers; signers' stake
//!    reaches the threshold; the aggregate signature);
//! 5. only a real transition applies: the state differs from the current one and the
//!    timestamp is not older than the address's last applied event.
//!
//! A network change (an item of kind `livenessd.network_change`) applies at its
//! position if it names this network and the next version and a quorum of the set
//! in force signed it; it ends its transaction, and the items after it are checked
//! against the new set and targets.
//!
//! Events, states, totals, `log_time` and the cursor commit together in
//! transactions of at most [`MAX_ITEMS_PER_TRANSACTION`] items, so a node that keeps
//! crashing still makes progress, and nothing is half-written.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::answers::{AnswerError, Answers};
use crate::certificate::Certificate;
use crate::config::EpochConfig;
use crate::events::{Event, EventError};
use crate::freshness::ReplicaStatus;
use crate::metrics;
use crate::network::{canonical, parse_items, Item, NetworkHandle, NetworkState};
use crate::stats::AppliedEvent;
use crate::store::node::{
    Applied, AppliedCertificate, AppliedChange, CursorUpdate, Position, ReplicaStore, TargetState,
};
use crate::store::StoreError;
use crate::zellular::{Client, Cursor, FinalizedBatch, OperatorSource, StreamError};

/// Items (events, or a whole batch that is dropped or empty) per transaction.
pub const MAX_ITEMS_PER_TRANSACTION: usize = 1_000;

/// Chunks the stream may read ahead of the replica (bounds memory).
const READ_AHEAD_CHUNKS: usize = 2;

/// How often freshness is evaluated (and gateways cross-checked when stale).
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// `livenessd_eigen_performance_score` from the rows (JSON) of the newest
/// certified epoch: `⌊uptime_ppm / 10,000⌋`, 0–100.
pub fn publish_scores(rows: &str) {
    if let Ok(rows) = serde_json::from_str::<Vec<crate::certificate::Row>>(rows) {
        let scores: Vec<(String, i64)> = rows
            .into_iter()
            .map(|r| (r.address, (r.uptime_ppm / 10_000) as i64))
            .collect();
        metrics::performance_scores(&scores);
    }
}

/// The network-wide settlement settings, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyWindow {
    pub max_event_age: i64,
    pub max_clock_drift: i64,
}

impl ApplyWindow {
    /// Rule 3: is `timestamp` acceptable against `sync_time`?
    pub fn check(&self, timestamp: i64, sync_time: i64) -> Result<(), EventError> {
        if timestamp < sync_time.saturating_sub(self.max_event_age) {
            Err(EventError::TooOld {
                timestamp,
                sync_time,
                max_age: self.max_event_age,
            })
        } else if timestamp > sync_time.saturating_add(self.max_clock_drift) {
            Err(EventError::FromFuture {
                timestamp,
                sync_time,
                max_drift: self.max_clock_drift,
            })
        } else {
            Ok(())
        }
    }
}

/// What one chunk did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChunkReport {
    pub batches: usize,
    pub applied: usize,
    pub rejected: usize,
    pub duplicates: usize,
    pub transactions: usize,
}

/// One unit of work of a batch: an item of its array, or the batch itself when it
/// holds no item (empty, or not an array).
struct Unit {
    index: u64,
    /// Position in the batch (0 for a batch-level unit).
    position: u32,
    /// The parsed event, or why the item (or the batch) is dropped; `None` for an
    /// empty batch.
    item: Option<Result<Item, EventError>>,
    /// `log_time` once this unit's batch is applied.
    sync_time: i64,
    /// Whether this is the batch's last unit, and its chaining hash then.
    batch_end: Option<String>,
}

/// Per batch and reason: how many items were dropped, and the first one's error.
#[derive(Default)]
struct Rejections {
    by_batch: BTreeMap<(u64, &'static str), (u64, String)>,
}

impl Rejections {
    fn add(&mut self, index: u64, e: &EventError) {
        metrics::event_rejected(e.reason());
        let entry = self
            .by_batch
            .entry((index, e.reason()))
            .or_insert_with(|| (0, e.to_string()));
        entry.0 += 1;
    }
}

/// Log lines about dropped input, at most `BURST` at once and `PER_SEC` a second:
/// a flood of junk costs counters, not disk.
struct LogBudget {
    tokens: f64,
    last: std::time::Instant,
    suppressed: u64,
}

impl LogBudget {
    const BURST: f64 = 20.0;
    const PER_SEC: f64 = 2.0;

    fn new() -> Self {
        LogBudget {
            tokens: Self::BURST,
            last: std::time::Instant::now(),
            suppressed: 0,
        }
    }

    fn take(&mut self) -> bool {
        let now = std::time::Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * Self::PER_SEC)
            .min(Self::BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// Logs one line per batch and reason, within the budget; returns how many.
    fn report(&mut self, r: Rejections) -> usize {
        let mut lines = 0;
        for ((index, reason), (count, first)) in r.by_batch {
            if self.take() {
                let suppressed = std::mem::take(&mut self.suppressed);
                tracing::warn!(index, reason, count, example = %first, suppressed_lines = suppressed,
                    "items of a finalized batch not applied");
                lines += 1;
            }
        }
        lines
    }
}

/// Applies the verified sequence to the replica.
pub struct Replicator {
    store: ReplicaStore,
    /// The network in force (this replicator moves it on).
    network: NetworkHandle,
    net: Arc<NetworkState>,
    /// The current targets.
    addresses: HashSet<String>,
    /// Current state of every address, mirrored from the store (the only writer).
    states: HashMap<String, TargetState>,
    /// The store's position, mirrored.
    position: Position,
    /// Targets whose monitoring has not started: it starts with the next batch.
    unmonitored: HashSet<String>,
    window: ApplyWindow,
    client: Client,
    operators: OperatorSource,
    status: ReplicaStatus,
    log: LogBudget,
    /// Every applied event is announced here (stats, webhooks); a slow listener
    /// lags and loses its oldest, never slows replication.
    announce: tokio::sync::broadcast::Sender<AppliedEvent>,
    /// Epoch tables, to check certificates against.
    answers: Answers,
}

impl Replicator {
    pub async fn new(
        store: ReplicaStore,
        network: NetworkHandle,
        window: ApplyWindow,
        client: Client,
        operators: OperatorSource,
        status: ReplicaStatus,
    ) -> Result<Self, StoreError> {
        let net = network.current();
        let addresses: Vec<String> = net.addresses();
        store.init_targets(&addresses).await?;
        let states = store.states().await?;
        let position = store.position().await?;
        let unmonitored = store
            .monitoring()
            .await?
            .into_iter()
            .filter(|(a, since)| since.is_none() && addresses.contains(a))
            .map(|(a, _)| a)
            .collect();
        status.applied(position.index, position.log_time);
        let (store_for_answers, network_for_answers) = (store.clone(), network.clone());
        Ok(Replicator {
            store,
            network,
            addresses: addresses.into_iter().collect(),
            net,
            states,
            position,
            unmonitored,
            window,
            client,
            operators,
            status,
            log: LogBudget::new(),
            announce: tokio::sync::broadcast::channel(16).0,
            answers: Answers::new(
                store_for_answers,
                network_for_answers,
                EpochConfig::default(),
            ),
        })
    }

    /// Epochs as the network defines them (for certificates; the default otherwise).
    pub fn with_epochs(mut self, epoch: EpochConfig) -> Self {
        self.answers = Answers::new(self.store.clone(), self.network.clone(), epoch);
        self
    }

    /// The apply rule of an epoch certificate: for this network and the version in
    /// force, the first of its epoch, for a whole epoch settled at its position,
    /// signed by a quorum of the set in force, and committing to the table this
    /// replica computes for that epoch.
    async fn check_certificate(
        &self,
        c: &Certificate,
        u: &Unit,
    ) -> Result<Result<AppliedCertificate, EventError>, StoreError> {
        let refuse =
            |reason: &'static str, why: String| Ok(Err(EventError::Certificate { reason, why }));
        if c.network != self.net.id {
            return refuse(
                "certificate_other_network",
                format!("it is for network {}", c.network),
            );
        }
        if c.network_version != self.net.version {
            return refuse(
                "certificate_wrong_version",
                format!(
                    "it is signed under network version {}, {} is in force",
                    c.network_version, self.net.version
                ),
            );
        }
        if self.store.has_certificate(c.epoch).await? {
            return refuse(
                "certificate_duplicate",
                format!("epoch {} is certified already", c.epoch),
            );
        }
        if self.answers.epoch_bounds(c.epoch) != Some((c.start, c.end)) {
            return refuse(
                "certificate_invalid",
                format!(
                    "[{}, {}) are not the bounds of epoch {}",
                    c.start, c.end, c.epoch
                ),
            );
        }
        let settled = u.sync_time.saturating_sub(self.window.max_event_age);
        if c.end > settled {
            return refuse(
                "certificate_unsettled",
                format!(
                    "epoch {} ends at {}, after the settled watermark {settled}",
                    c.epoch, c.end
                ),
            );
        }
        if let Err(e) = c.verify(&self.net.monitors) {
            return refuse("certificate_bad_proof", e.to_string());
        }
        let table = match self.answers.epoch_table(c.epoch, settled).await {
            Ok(t) => t,
            Err(AnswerError::Store(e)) => return Err(e),
            Err(e) => return refuse("certificate_invalid", e.to_string()),
        };
        let root = table.root();
        if root != c.root || table.rows.len() as u64 != c.rows {
            return refuse(
                "certificate_wrong_root",
                format!(
                    "it certifies {} rows with root {}; this replica's table has {} with root {root}",
                    c.rows,
                    c.root,
                    table.rows.len()
                ),
            );
        }
        Ok(Ok(AppliedCertificate {
            epoch: c.epoch,
            network_version: c.network_version,
            start: c.start,
            end: c.end,
            root,
            row_count: c.rows,
            certificate: serde_json::to_string(c).expect("serialisable"),
            rows: serde_json::to_string(&table.rows).expect("serialisable"),
            zellular_index: u.index,
            position: u.position,
            log_time: u.sync_time,
        }))
    }

    /// Announces every applied event on `tx` from now on.
    pub fn announce_to(mut self, tx: tokio::sync::broadcast::Sender<AppliedEvent>) -> Self {
        self.announce = tx;
        self
    }

    /// The replica's position as last committed.
    pub fn position(&self) -> &Position {
        &self.position
    }

    /// Splits a chunk into units, skipping what the cursor says is already applied.
    fn units(&self, chunk: &[FinalizedBatch]) -> Vec<Unit> {
        let mut out = Vec::new();
        let mut sync_time = self.position.log_time;
        for b in chunk {
            if b.index <= self.position.index {
                continue;
            }
            sync_time = sync_time.max(b.timestamp);
            let skip = if b.index == self.position.index + 1 {
                self.position.partial_items as usize
            } else {
                0
            };
            let first = out.len();
            match parse_items(&b.body) {
                Err(e) => out.push(Unit {
                    index: b.index,
                    position: 0,
                    item: Some(Err(e)),
                    sync_time,
                    batch_end: None,
                }),
                Ok(items) => {
                    let n = items.len();
                    for (pos, item) in items.into_iter().enumerate().skip(skip) {
                        out.push(Unit {
                            index: b.index,
                            position: pos as u32,
                            item: Some(item),
                            sync_time,
                            batch_end: None,
                        });
                    }
                    if out.len() == first {
                        // An empty batch (a heartbeat), or one whose items were all
                        // applied before the cursor moved past it: only its end.
                        out.push(Unit {
                            index: b.index,
                            position: n as u32,
                            item: None,
                            sync_time,
                            batch_end: None,
                        });
                    }
                }
            }
            if let Some(last) = out.last_mut() {
                last.batch_end = Some(b.chaining_hash.clone());
            }
        }
        out
    }

    /// Verifies and applies one chunk of finalized batches (which must follow the
    /// replica's cursor), committing in transactions of bounded size.
    pub async fn apply_chunk(
        &mut self,
        chunk: &[FinalizedBatch],
    ) -> Result<(Position, ChunkReport), StoreError> {
        let mut report = ChunkReport {
            batches: chunk.len(),
            ..Default::default()
        };
        let units = self.units(chunk);
        if units.is_empty() {
            return Ok((self.position.clone(), report));
        }
        // A network change ends its transaction: what follows is checked under
        // the version it makes.
        // An epoch certificate is a transaction of its own: its table is computed
        // from everything before it, committed.
        let mut slice = Vec::new();
        for u in units {
            let certificate = matches!(u.item, Some(Ok(Item::Certificate(_))));
            if certificate && !slice.is_empty() {
                self.apply_slice(std::mem::take(&mut slice), &mut report)
                    .await?;
                report.transactions += 1;
            }
            let ends = certificate || matches!(u.item, Some(Ok(Item::Change(_))));
            slice.push(u);
            if ends || slice.len() == MAX_ITEMS_PER_TRANSACTION {
                self.apply_slice(std::mem::take(&mut slice), &mut report)
                    .await?;
                report.transactions += 1;
            }
        }
        if !slice.is_empty() {
            self.apply_slice(slice, &mut report).await?;
            report.transactions += 1;
        }
        self.status.sync_seen();
        Ok((self.position.clone(), report))
    }

    async fn apply_slice(
        &mut self,
        slice: Vec<Unit>,
        report: &mut ChunkReport,
    ) -> Result<(), StoreError> {
        let mut rejections = Rejections::default();
        // Replaying history (not at the sequencer's head yet): one line per slice, not
        // one per event.
        let replaying = !self.status.reached_head();
        // Rules 1-3, cheap, before any signature work.
        let mut candidates: Vec<(usize, Event)> = Vec::new();
        let mut change = None;
        let mut certificate = None;
        for (k, u) in slice.iter().enumerate() {
            let Some(item) = &u.item else { continue };
            let item = match item {
                Ok(Item::Change(c)) => {
                    change = Some((k, c.clone()));
                    continue;
                }
                Ok(Item::Certificate(c)) => {
                    certificate = Some((k, c.clone()));
                    continue;
                }
                Ok(Item::Event(ev)) => Ok(ev.clone()),
                Err(e) => Err(e.clone()),
            };
            let checked = item.and_then(|ev| {
                if !self.addresses.contains(&ev.address) {
                    return Err(EventError::UnknownAddress(ev.address));
                }
                self.window.check(ev.timestamp, u.sync_time)?;
                Ok(ev)
            });
            match checked {
                Ok(ev) => candidates.push((k, ev)),
                Err(e) => {
                    rejections.add(u.index, &e);
                    report.rejected += 1;
                }
            }
        }
        // Rule 4: every signature of the slice in one batch, off the async threads.
        let monitors = self.net.monitors.clone();
        let (candidates, verdicts) = tokio::task::spawn_blocking(move || {
            let refs: Vec<&Event> = candidates.iter().map(|c| &c.1).collect();
            let verdicts = monitors.verify_events(&refs);
            (candidates, verdicts)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("verification task failed: {e}")))?;
        // Rule 5, in sequence order.
        let mut accepted = Vec::new();
        let mut previous = Vec::new();
        let mut next_states = self.states.clone();
        for ((k, ev), verdict) in candidates.into_iter().zip(verdicts) {
            let u = &slice[k];
            let cur = next_states
                .get(&ev.address)
                .copied()
                .unwrap_or(TargetState::INITIAL);
            let res = verdict.and_then(|()| {
                if ev.state == cur.state {
                    Err(EventError::RepeatedState {
                        state: ev.state,
                        timestamp: ev.timestamp,
                    })
                } else if ev.timestamp < cur.since {
                    Err(EventError::Stale {
                        timestamp: ev.timestamp,
                        last: cur.since,
                    })
                } else {
                    Ok(())
                }
            });
            match res {
                Ok(()) => {
                    let after = cur.after(ev.state, ev.timestamp);
                    next_states.insert(ev.address.clone(), after);
                    previous.push(
                        (cur.since > 0 || cur.state != TargetState::INITIAL.state)
                            .then_some(cur.since),
                    );
                    if replaying {
                        tracing::debug!(index = u.index, address = %ev.address,
                            state = %ev.state, timestamp = ev.timestamp, "event applied");
                    } else {
                        tracing::info!(index = u.index, address = %ev.address,
                            state = %ev.state, timestamp = ev.timestamp, "event applied");
                    }
                    accepted.push(Applied {
                        zellular_index: u.index,
                        position: u.position,
                        event: ev,
                        log_time: u.sync_time,
                        after,
                        network_version: self.net.version,
                    });
                }
                Err(e) if e.is_duplicate() => {
                    metrics::event_duplicate();
                    tracing::debug!(index = u.index, address = %ev.address, state = %ev.state,
                        "second report of the change in force (no-op)");
                    report.duplicates += 1;
                }
                Err(e) => {
                    rejections.add(u.index, &e);
                    report.rejected += 1;
                }
            }
        }
        // The change that ends the slice, after its events, under the set in force.
        let mut next_net = None;
        let applied_change = match change {
            None => None,
            Some((k, c)) => {
                let u = &slice[k];
                match self.net.next(&c) {
                    Ok(next) => {
                        let before: HashSet<&String> = self.addresses.iter().collect();
                        let after: Vec<String> = next.addresses();
                        let added: Vec<String> = after
                            .iter()
                            .filter(|a| !before.contains(a))
                            .cloned()
                            .collect();
                        let removed: Vec<String> = self
                            .addresses
                            .iter()
                            .filter(|a| !after.contains(a))
                            .cloned()
                            .collect();
                        tracing::info!(
                            index = u.index,
                            version = next.version,
                            nodes = next.monitors.nodes().len(),
                            targets = after.len(),
                            ?added,
                            ?removed,
                            "network change applied"
                        );
                        let applied = AppliedChange {
                            version: next.version,
                            zellular_index: u.index,
                            position: u.position,
                            log_time: u.sync_time,
                            change: canonical(&*c),
                            added,
                            removed,
                        };
                        next_net = Some(Arc::new(next));
                        Some(applied)
                    }
                    Err(e) => {
                        let e = EventError::from(e);
                        if e.is_duplicate() {
                            metrics::event_duplicate();
                            report.duplicates += 1;
                        } else {
                            rejections.add(u.index, &e);
                            report.rejected += 1;
                        }
                        None
                    }
                }
            }
        };
        let applied_certificate = match certificate {
            None => None,
            Some((k, c)) => {
                let u = &slice[k];
                match self.check_certificate(&c, u).await? {
                    Ok(a) => {
                        tracing::info!(index = u.index, epoch = c.epoch, rows = c.rows,
                            root = %c.root, "epoch certificate applied");
                        Some(a)
                    }
                    Err(e) if e.is_duplicate() => {
                        metrics::event_duplicate();
                        report.duplicates += 1;
                        None
                    }
                    Err(e) => {
                        rejections.add(u.index, &e);
                        report.rejected += 1;
                        None
                    }
                }
            }
        };
        // The cursor after this slice: the last batch completed, plus how far into
        // the next one it got.
        let last = slice.last().expect("a slice is never empty");
        // Targets not monitored yet start with this slice's first batch: at its sync
        // time, or at their first event in that batch if that is older (events may
        // be). Only that batch: how many batches a slice holds depends on how the
        // replica read the stream, and every replica must find the same start.
        let first_batch = slice[0].index;
        let monitoring_starts: Vec<(String, i64)> = self
            .unmonitored
            .iter()
            .map(|a| {
                let first = accepted
                    .iter()
                    .find(|x| x.event.address == *a && x.zellular_index == first_batch)
                    .map_or(i64::MAX, |x| x.event.timestamp);
                (a.clone(), slice[0].sync_time.min(first))
            })
            .collect();
        let cursor = match &last.batch_end {
            Some(chain) => CursorUpdate {
                index: last.index,
                chaining_hash: chain.clone(),
                partial_items: 0,
                log_time: last.sync_time,
                monitoring_starts,
            },
            // A partial batch's sync point counts too: its remaining items carry
            // timestamps no older than that sync time allows.
            None => CursorUpdate {
                index: last.index - 1,
                chaining_hash: self.chain_before(&slice, last.index),
                partial_items: last.position + 1,
                log_time: last.sync_time,
                monitoring_starts,
            },
        };
        let position = match &applied_certificate {
            Some(c) => self.store.apply_certificate(c, &cursor).await?,
            None => {
                self.store
                    .apply(&accepted, applied_change.as_ref(), &cursor)
                    .await?
            }
        };
        if let Some(c) = &applied_certificate {
            metrics::certificate_applied(c.epoch);
            publish_scores(&c.rows);
        }
        self.states = next_states;
        self.position = position;
        self.unmonitored.clear();
        if let Some(next) = next_net {
            self.addresses = next.addresses().into_iter().collect();
            if let Some(c) = &applied_change {
                for a in &c.added {
                    self.states.insert(a.clone(), TargetState::INITIAL);
                }
            }
            self.net = next.clone();
            self.network.set(next);
            metrics::network_version(self.net.version);
            metrics::network_change_applied();
        }
        self.status
            .applied(self.position.index, self.position.log_time);
        // News, not history: finalized within the freshness bound of now (a
        // transition that happened while this node was away is still news; one
        // replayed from long ago, or read ahead past the head, is not).
        let now = self.status.clock().now();
        let bound = self.status.bound();
        for (a, previous_since) in accepted.iter().zip(previous) {
            let live = now - a.log_time <= bound;
            let _ = self.announce.send(AppliedEvent {
                zellular_index: a.zellular_index,
                event: a.event.clone(),
                log_time: a.log_time,
                previous_since,
                network_version: a.network_version,
                live,
            });
        }
        if replaying && !accepted.is_empty() {
            tracing::info!(
                index = self.position.index,
                events = accepted.len(),
                "replaying history: events applied"
            );
        }
        report.applied += accepted.len();
        metrics::events_applied(accepted.len() as u64);
        self.log.report(rejections);
        Ok(())
    }

    /// The chaining hash of batch `index - 1`: from the slice if it ended there,
    /// else the cursor's.
    fn chain_before(&self, slice: &[Unit], index: u64) -> String {
        slice
            .iter()
            .rev()
            .find(|u| u.index == index - 1 && u.batch_end.is_some())
            .and_then(|u| u.batch_end.clone())
            .unwrap_or_else(|| self.position.chaining_hash.clone())
    }

    /// Starts the verified stream from the committed cursor, reading ahead into a
    /// bounded channel.
    fn spawn_stream(
        &self,
    ) -> (
        JoinHandle<()>,
        mpsc::Receiver<Result<Vec<FinalizedBatch>, StreamError>>,
    ) {
        let (tx, rx) = mpsc::channel(READ_AHEAD_CHUNKS);
        self.status.set_reached_head(false);
        let mut stream = self
            .client
            .finalized_stream(
                Cursor::at(self.position.index, self.position.chaining_hash.clone()),
                self.operators.clone(),
            )
            .with_head_flag(self.status.head_flag());
        let task = tokio::spawn(async move {
            loop {
                let r = stream.next_chunk().await;
                let fatal = matches!(&r, Err(e) if e.is_fatal());
                if tx.send(r).await.is_err() || fatal {
                    return;
                }
            }
        });
        (task, rx)
    }

    /// Replicates until `stop`. A gateway that fails verification is never trusted:
    /// nothing it sent is applied; the stream restarts from the committed cursor at
    /// the next gateway after a pause. A store that cannot write (disk full,
    /// read-only) makes the replica unready with the reason and is retried with an
    /// exponential backoff until it can.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        let mut cross_checked_at: Option<i64> = None;
        'outer: loop {
            if stop.is_cancelled() {
                return;
            }
            tracing::info!(index = self.position.index, partial = self.position.partial_items,
                gateway = %self.client.current_gateway(), "replicating from the cursor");
            let (task, mut rx) = self.spawn_stream();
            let _abort = AbortOnDrop(task);
            let mut tick = tokio::time::interval(CHECK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {
                        let stale = self.status.check().is_err();
                        if !stale {
                            cross_checked_at = None;
                            continue;
                        }
                        // Stale: is another gateway ahead of ours? Asked once per
                        // freshness bound while the episode lasts.
                        let now = self.status.clock().now();
                        if cross_checked_at.is_some_and(|t| now - t < self.status.bound()) {
                            continue;
                        }
                        let first = cross_checked_at.is_none();
                        cross_checked_at = Some(now);
                        if self.cross_check(first).await {
                            continue 'outer;
                        }
                    }
                    msg = rx.recv() => {
                        let Some(msg) = msg else { continue 'outer };
                        match msg {
                            Ok(chunk) => match self.apply_chunk(&chunk).await {
                                Ok(_) => {
                                    if backoff.reset() {
                                        self.status.set_fault(None);
                                        tracing::info!("the replica is writable again");
                                    }
                                }
                                Err(e) => {
                                    self.store_failed(&e, &mut backoff, &stop).await;
                                    continue 'outer;
                                }
                            },
                            Err(e) => {
                                if self.stream_failed(&e, &mut backoff, &stop).await {
                                    return;
                                }
                                continue 'outer;
                            }
                        }
                    }
                }
            }
        }
    }

    /// After a failed write: report, reload the mirror from the store, back off.
    async fn store_failed(
        &mut self,
        e: &StoreError,
        backoff: &mut Backoff,
        stop: &CancellationToken,
    ) {
        metrics::replicator_error("store");
        let delay = backoff.next();
        let why = format!("the replica cannot be written ({e}); retrying in {delay:?}");
        if backoff.attempts() == 1 || e.is_persistent() {
            tracing::error!(error = %e, retry_in = ?delay, "applying finalized batches failed");
        }
        self.status.set_fault(Some(why));
        if let (Ok(states), Ok(pos)) = (self.store.states().await, self.store.position().await) {
            self.states = states;
            self.position = pos;
        }
        sleep_or_stop(stop, delay).await;
    }

    /// After a stream error: true if the node must stop.
    async fn stream_failed(
        &mut self,
        e: &StreamError,
        backoff: &mut Backoff,
        stop: &CancellationToken,
    ) -> bool {
        if let Some(why) = e.unknown_app() {
            metrics::replicator_error("unknown_app");
            let msg = format!(
                "the sequencer does not know the Zellular app {:?} ({why}): check zellular.app",
                self.client.config().app
            );
            if self.status.fault().as_deref() != Some(msg.as_str()) {
                tracing::error!("{msg}");
            }
            self.status.set_fault(Some(msg));
            return sleep_or_stop(stop, backoff.next()).await;
        }
        if e.is_fatal() {
            metrics::replicator_error("integrity");
            tracing::error!(error = %e, gateway = %self.client.current_gateway(),
                "gateway failed verification; nothing from it is applied");
            self.client.rotate_gateway();
            return sleep_or_stop(stop, backoff.next()).await;
        }
        metrics::replicator_error("transient");
        tracing::warn!(error = %e, "sequencer unavailable; retrying");
        if matches!(
            e,
            StreamError::Unproven { .. } | StreamError::OperatorSet { .. }
        ) {
            // This gateway's answers cannot be proven: try the next one.
            self.client.rotate_gateway();
        }
        sleep_or_stop(stop, Duration::from_secs(1)).await
    }

    /// Asks every gateway for its verified `finalized/last`; if one is ahead of
    /// this replica and of the current gateway, switches to it. True if switched.
    async fn cross_check(&mut self, log_it: bool) -> bool {
        let gateways = self.client.config().gateways.clone();
        if gateways.len() < 2 {
            return false;
        }
        let current = self.client.current_index();
        let mut heads: Vec<(usize, Option<u64>)> = Vec::new();
        for (i, gateway) in gateways.iter().enumerate() {
            match self.client.last_finalized_at(i, &self.operators).await {
                Ok(last) => heads.push((i, Some(last.map_or(0, |b| b.index)))),
                Err(e) => {
                    tracing::debug!(%gateway, error = %e, "gateway head unavailable");
                    heads.push((i, None));
                }
            }
        }
        let ours = heads.iter().find(|(i, _)| *i == current).and_then(|h| h.1);
        let Some(&(best, Some(best_index))) = heads
            .iter()
            .filter(|(_, h)| h.is_some())
            .max_by_key(|(i, h)| (*h, *i == current))
        else {
            return false;
        };
        if best == current || best_index <= self.position.index || Some(best_index) <= ours {
            if log_it {
                tracing::warn!(
                    applied = self.position.index,
                    ?heads,
                    "replica is stale and no gateway is ahead of it"
                );
            }
            return false;
        }
        metrics::gateway_switch("behind");
        tracing::warn!(from = %gateways[current], to = %gateways[best], ours = ?ours, theirs = best_index,
            applied = self.position.index, "gateway is behind another one; switching");
        self.client.use_gateway(best);
        true
    }
}

/// Exponential backoff with a cap.
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    attempts: u32,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial,
            attempts: 0,
        }
    }

    fn next(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        self.attempts += 1;
        d
    }

    fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Back to the start; true if there had been failures.
    fn reset(&mut self) -> bool {
        self.next = self.initial;
        std::mem::take(&mut self.attempts) > 0
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sleeps; true if `stop` fired first.
async fn sleep_or_stop(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MonitoringNode;
    use crate::crypto::bls::SecretKey;
    use crate::events::{state_message, NodeState};
    use crate::zellular::{ClientConfig, Operator, OperatorSet};

    const SYNC: i64 = 1_700_000_000;

    struct Fixture {
        _dir: tempfile::TempDir,
        dir: std::path::PathBuf,
        genesis: crate::network::Genesis,
        batch: FinalizedBatch,
    }

    /// One batch of `n` down events (one per address), signed by the only
    /// monitoring node.
    fn fixture(n: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let sk = SecretKey::key_gen(&[7; 32]).unwrap();
        let node = MonitoringNode {
            id: "N".into(),
            url: "http://127.0.0.1:1".into(),
            pubkey: sk.public_key().to_hex(),
            pop: Some(sk.prove_possession().to_hex()),
            stake: 1.0,
        };
        let addresses: Vec<String> = (0..n).map(|i| format!("0x{i:05}")).collect();
        let genesis = crate::network::Genesis {
            livenessd_genesis: crate::network::GENESIS_FORMAT,
            name: "test".into(),
            definition: crate::network::Definition {
                monitoring_nodes: vec![node],
                allow_without_pop: vec![],
                targets: addresses
                    .iter()
                    .map(|a| crate::config::Target {
                        address: a.clone(),
                        http: None,
                        tcp: Some("127.0.0.1:1".into()),
                    })
                    .collect(),
                quorum_threshold: "2/3".into(),
            },
            epoch: Default::default(),
            settlement: Default::default(),
        };
        let events: Vec<Event> = addresses
            .iter()
            .map(|a| Event {
                address: a.clone(),
                state: NodeState::Down,
                timestamp: SYNC - 10,
                aggregated_signature: sk
                    .sign(state_message(a, NodeState::Down, SYNC - 10).as_bytes())
                    .to_hex(),
                non_signing_nodes: vec![],
            })
            .collect();
        let body = serde_json::to_string(&events).unwrap();
        Fixture {
            dir: dir.path().to_owned(),
            _dir: dir,
            genesis,
            batch: FinalizedBatch {
                index: 1,
                chaining_hash: crate::zellular::chain::next("", &body),
                body,
                timestamp: SYNC,
            },
        }
    }

    async fn replicator(f: &Fixture, db: &str) -> Replicator {
        let store = ReplicaStore::open(&f.dir.join(db)).await.unwrap();
        let op = Operator {
            id: "op".into(),
            socket: "http://127.0.0.1:1".into(),
            stake: 1.0,
            public_key: crate::crypto::bn254::SecretKey::random().public_key_g2(),
        };
        Replicator::new(
            store,
            NetworkHandle::new(NetworkState::genesis(&f.genesis).unwrap()),
            ApplyWindow {
                max_event_age: 120,
                max_clock_drift: 10,
            },
            Client::new(ClientConfig::new("app", vec!["http://127.0.0.1:1".into()])),
            OperatorSource::Static(Arc::new(OperatorSet::new(vec![op], 67.0).unwrap())),
            ReplicaStatus::new(crate::clock::Clock::manual(SYNC), 30, 120),
        )
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_batch_spans_bounded_transactions_and_an_interrupted_one_resumes() {
        let f = fixture(2_500);
        // In one go: three transactions of at most 1,000 items.
        let mut whole = replicator(&f, "whole.sqlite").await;
        let (pos, report) = whole
            .apply_chunk(std::slice::from_ref(&f.batch))
            .await
            .unwrap();
        assert_eq!((report.applied, report.transactions), (2_500, 3));
        assert_eq!(
            (pos.index, pos.partial_items, pos.events_count),
            (1, 0, 2_500)
        );

        // Interrupted after its first transaction (a crash): the cursor says how far
        // into the batch it got, and a new process finishes it to the same digest.
        let mut first = replicator(&f, "resumed.sqlite").await;
        let units = first.units(std::slice::from_ref(&f.batch));
        let head: Vec<Unit> = units.into_iter().take(MAX_ITEMS_PER_TRANSACTION).collect();
        first
            .apply_slice(head, &mut ChunkReport::default())
            .await
            .unwrap();
        assert_eq!(
            (first.position().index, first.position().partial_items),
            (0, 1_000)
        );
        assert_eq!(first.position().log_time, SYNC);
        drop(first);
        let mut again = replicator(&f, "resumed.sqlite").await;
        let (resumed, report) = again
            .apply_chunk(std::slice::from_ref(&f.batch))
            .await
            .unwrap();
        assert_eq!((report.applied, report.transactions), (1_500, 2));
        assert_eq!(resumed, pos, "the same log as in one go");
    }

    #[test]
    fn rejected_items_are_summarised_per_batch_and_reason_within_a_budget() {
        let mut budget = LogBudget::new();
        // One junk batch of 12,500 items: one line.
        let mut r = Rejections::default();
        for _ in 0..12_500 {
            r.add(7, &EventError::Malformed("junk"));
        }
        assert_eq!(budget.report(r), 1);
        // A flood of 100 junk batches with three reasons each: at most the burst.
        let mut r = Rejections::default();
        for index in 0..100 {
            r.add(index, &EventError::Malformed("junk"));
            r.add(index, &EventError::InvalidSignature);
            r.add(index, &EventError::UnknownAddress("x".into()));
        }
        let lines = budget.report(r);
        assert!(lines < LogBudget::BURST as usize, "{lines}");
        assert!(budget.suppressed > 250, "{}", budget.suppressed);
    }
}
