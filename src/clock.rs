//! Wall-clock time in unix seconds, as one injectable handle.
//!
//! Everything that reads the time of day (probe times, the drift check of `/state`,
//! event timestamps, freshness, the dev sequencer's finality timestamps) asks a
//! [`Clock`], so tests can hold time still and move it on by hand instead of
//! sleeping. Timers (`tokio::time`) are not affected: they measure durations.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// The system clock, or a manual one that only moves when told to. Cheap to clone;
/// clones share the same time.
#[derive(Clone, Default)]
pub struct Clock {
    /// `None`: the system clock. `Some`: a manual clock's current unix time.
    manual: Option<Arc<AtomicI64>>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::system"),
            Some(t) => write!(f, "Clock::manual({})", t.load(Ordering::Relaxed)),
        }
    }
}

impl Clock {
    /// The operating system's clock.
    pub fn system() -> Self {
        Clock { manual: None }
    }

    /// A clock standing at unix time `start` until [`Clock::advance`] or [`Clock::set`].
    pub fn manual(start: i64) -> Self {
        Clock {
            manual: Some(Arc::new(AtomicI64::new(start))),
        }
    }

    /// Unix seconds now.
    pub fn now(&self) -> i64 {
        match &self.manual {
            Some(t) => t.load(Ordering::Relaxed),
            None => system_now(),
        }
    }

    /// Moves a manual clock on by `secs`; the system clock cannot be moved.
    pub fn advance(&self, secs: i64) {
        if let Some(t) = &self.manual {
            t.fetch_add(secs, Ordering::Relaxed);
        }
    }

    /// Sets a manual clock to `t`; the system clock cannot be set.
    pub fn set(&self, t: i64) {
        if let Some(c) = &self.manual {
            c.store(t, Ordering::Relaxed);
        }
    }

    /// Whether this is a manual clock (tests).
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }
}

/// Unix seconds by the operating system's clock (0 before 1970).
pub fn system_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let c = Clock::manual(1_000);
        let d = c.clone();
        assert_eq!(c.now(), 1_000);
        d.advance(5);
        assert_eq!(c.now(), 1_005);
        c.set(42);
        assert_eq!(d.now(), 42);
        let s = Clock::system();
        s.advance(1_000_000);
        assert!((s.now() - system_now()).abs() <= 1);
    }
}
