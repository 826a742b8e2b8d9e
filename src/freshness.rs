//! How current the replica is, evaluated at every question.
//!
//! The replica is *fresh* while (1) it has reached its gateway's head since the
//! stream (re)started, (2) its `log_time` — the newest verified sync-point timestamp
//! it applied — is at most `bound` seconds behind the clock, and (3) no persistent
//! fault (store error, unknown app, a gateway failing verification) stands. A stale
//! replica signs nothing about history and its aggregator starts nothing. Nothing
//! latches: every call re-evaluates.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::clock::Clock;
use crate::metrics;

/// The head cell's value before the stream reached its gateway's head.
const NO_HEAD: u64 = u64::MAX;

/// Shared by the replicator (writer) and everything that signs or aggregates.
#[derive(Clone)]
pub struct ReplicaStatus {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Clock,
    /// Freshness bound, seconds.
    bound: i64,
    /// Network-wide: history older than `log_time - max_event_age` is settled.
    max_event_age: i64,
    log_time: AtomicI64,
    index: AtomicU64,
    /// Clock time at which a newly finalized batch was last applied (or the start).
    last_sync_seen_at: AtomicI64,
    /// The same, on the monotonic clock (sub-second: heartbeats take turns by it).
    last_sync_seen: Mutex<tokio::time::Instant>,
    /// The index at which the finalized stream first found nothing new at its
    /// gateway (`NO_HEAD` until then; reset when a new stream starts: resume,
    /// gateway switch). The replica is at the head once it has applied up to it.
    head: Arc<AtomicU64>,
    /// A persistent fault, with its reason (set and cleared by the replicator).
    fault: Mutex<Option<String>>,
    /// Whether the last evaluation found the replica stale (for episode counts).
    stale: AtomicBool,
}

/// Why the replica may not sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Stale(pub String);

/// A fresh replica's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fresh {
    pub log_time: i64,
    /// `now - log_time`, seconds.
    pub lag: i64,
    /// `log_time - max_event_age`: signed answers cover only windows ending at or
    /// before this.
    pub settled: i64,
}

impl ReplicaStatus {
    pub fn new(clock: Clock, bound_secs: i64, max_event_age: i64) -> Self {
        let now = clock.now();
        ReplicaStatus {
            inner: Arc::new(Inner {
                clock,
                bound: bound_secs,
                max_event_age,
                log_time: AtomicI64::new(0),
                index: AtomicU64::new(0),
                last_sync_seen_at: AtomicI64::new(now),
                last_sync_seen: Mutex::new(tokio::time::Instant::now()),
                head: Arc::new(AtomicU64::new(NO_HEAD)),
                fault: Mutex::new(None),
                stale: AtomicBool::new(true),
            }),
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// The freshness bound, seconds.
    pub fn bound(&self) -> i64 {
        self.inner.bound
    }

    /// The replica applied up to `index`, with clock `log_time`.
    pub fn applied(&self, index: u64, log_time: i64) {
        self.inner.index.store(index, Ordering::Relaxed);
        let before = self.inner.log_time.fetch_max(log_time, Ordering::Relaxed);
        if log_time > before {
            self.sync_seen();
        }
        metrics::replica_position(index, log_time);
    }

    /// A newly finalized batch was applied (its timestamp may equal the last one).
    pub fn sync_seen(&self) {
        self.inner
            .last_sync_seen_at
            .store(self.inner.clock.now(), Ordering::Relaxed);
        *self.inner.last_sync_seen.lock().expect("sync lock") = tokio::time::Instant::now();
    }

    /// The stream reached its gateway's head (`true`: at the replica's present
    /// index), or a new stream starts (`false`).
    pub fn set_reached_head(&self, v: bool) {
        let head = if v { self.index() } else { NO_HEAD };
        self.inner.head.store(head, Ordering::Relaxed);
    }

    /// The cell for the finalized stream to record, once, the index at which its
    /// gateway had nothing new.
    pub fn head_flag(&self) -> Arc<AtomicU64> {
        self.inner.head.clone()
    }

    /// Whether the replica has applied everything the sequencer had finalized when
    /// the stream first reached its head (batches read ahead but not yet applied
    /// still count as catching up).
    pub fn reached_head(&self) -> bool {
        self.index() >= self.inner.head.load(Ordering::Relaxed)
    }

    /// Sets (or clears, with `None`) the persistent fault.
    pub fn set_fault(&self, why: Option<String>) {
        *self.inner.fault.lock().expect("fault lock") = why;
    }

    pub fn fault(&self) -> Option<String> {
        self.inner.fault.lock().expect("fault lock").clone()
    }

    pub fn log_time(&self) -> i64 {
        self.inner.log_time.load(Ordering::Relaxed)
    }

    pub fn index(&self) -> u64 {
        self.inner.index.load(Ordering::Relaxed)
    }

    /// How long since a newly finalized batch was last applied, on the monotonic
    /// clock (for heartbeats).
    pub fn idle(&self) -> std::time::Duration {
        self.inner
            .last_sync_seen
            .lock()
            .expect("sync lock")
            .elapsed()
    }

    /// Seconds since a newly finalized batch was last applied, by the clock.
    pub fn since_last_sync(&self) -> i64 {
        self.inner.clock.now() - self.inner.last_sync_seen_at.load(Ordering::Relaxed)
    }

    /// The settled watermark (`log_time - max_event_age`), or `None` before the
    /// first sync point.
    pub fn settled(&self) -> Option<i64> {
        let t = self.log_time();
        (t > 0).then(|| t - self.inner.max_event_age)
    }

    /// Fresh, or why not. Also records stale episodes and the lag for `/metrics`.
    pub fn check(&self) -> Result<Fresh, Stale> {
        let r = self.evaluate();
        let was_stale = self.inner.stale.swap(r.is_err(), Ordering::Relaxed);
        if r.is_err() && !was_stale {
            metrics::stale_episode();
        }
        metrics::replica_fresh(r.is_ok());
        r
    }

    fn evaluate(&self) -> Result<Fresh, Stale> {
        if let Some(f) = self.fault() {
            return Err(Stale(f));
        }
        let log_time = self.log_time();
        if !self.reached_head() {
            return Err(Stale(format!(
                "catching up with the sequencer (applied up to index {})",
                self.index()
            )));
        }
        if log_time == 0 {
            return Err(Stale(
                "no verified sync point yet: the sequencer has finalized nothing for this app"
                    .into(),
            ));
        }
        let lag = self.inner.clock.now() - log_time;
        if lag > self.inner.bound {
            return Err(Stale(format!(
                "log_time {log_time} is {lag} s behind the clock (freshness bound {} s): \
                 nothing finalized since then",
                self.inner.bound
            )));
        }
        Ok(Fresh {
            log_time,
            lag,
            settled: log_time - self.inner.max_event_age,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_is_evaluated_at_every_call_and_never_latches() {
        let clock = Clock::manual(1_000);
        let s = ReplicaStatus::new(clock.clone(), 30, 120);
        assert!(s.check().unwrap_err().0.contains("catching up"));
        s.set_reached_head(true);
        assert!(s.check().unwrap_err().0.contains("no verified sync point"));
        s.applied(5, 995);
        let f = s.check().unwrap();
        assert_eq!((f.log_time, f.lag, f.settled), (995, 5, 875));
        clock.advance(40);
        let why = s.check().unwrap_err().0;
        assert!(why.contains("45 s behind"), "{why}");
        s.applied(6, 1_039);
        assert!(s.check().is_ok(), "recovers by itself");
        s.set_fault(Some("store: database or disk is full".into()));
        assert_eq!(s.check().unwrap_err().0, "store: database or disk is full");
        s.set_fault(None);
        assert!(s.check().is_ok());
        // log_time never moves back.
        s.applied(7, 10);
        assert_eq!(s.log_time(), 1_039);
    }

    #[test]
    fn the_head_is_reached_when_what_was_read_ahead_is_applied() {
        let s = ReplicaStatus::new(Clock::manual(1_000), 30, 120);
        s.applied(5, 995);
        assert!(!s.reached_head());
        // The stream found nothing new after index 9, then later after 12: the
        // first head counts.
        let cell = s.head_flag();
        for at in [9, 12] {
            let _ = cell.compare_exchange(NO_HEAD, at, Ordering::Relaxed, Ordering::Relaxed);
        }
        assert!(!s.reached_head(), "batches 6-9 are read, not applied");
        s.applied(9, 999);
        assert!(s.reached_head());
        // A new stream (resume, another gateway) starts over.
        s.set_reached_head(false);
        assert!(!s.reached_head());
        assert!(s.check().unwrap_err().0.contains("catching up"));
    }
}
