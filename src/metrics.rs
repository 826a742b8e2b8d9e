//! Process-wide counters, rendered in the Prometheus text format at `GET /metrics`.
//!
//! Every rejected input increments a counter named for what was rejected, so an
//! operator can alert on it. Counters are created on first use.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

type Key = (String, String);

fn registry() -> &'static Mutex<BTreeMap<Key, Arc<AtomicU64>>> {
    static R: OnceLock<Mutex<BTreeMap<Key, Arc<AtomicU64>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

fn label_string(labels: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(s, "{k}=\"{v}\"");
    }
    s
}

/// The counter `name{labels}`; keep the handle on hot paths.
pub fn counter(name: &str, labels: &[(&str, &str)]) -> Arc<AtomicU64> {
    let key = (name.to_owned(), label_string(labels));
    registry()
        .lock()
        .expect("metrics registry lock")
        .entry(key)
        .or_default()
        .clone()
}

/// Adds one to `name{labels}`.
pub fn inc(name: &str, labels: &[(&str, &str)]) {
    add(name, labels, 1);
}

/// Adds `n` to `name{labels}`.
pub fn add(name: &str, labels: &[(&str, &str)], n: u64) {
    counter(name, labels).fetch_add(n, Ordering::Relaxed);
}

/// The current value of `name{labels}` (0 if never touched).
pub fn get(name: &str, labels: &[(&str, &str)]) -> u64 {
    let key = (name.to_owned(), label_string(labels));
    registry()
        .lock()
        .expect("metrics registry lock")
        .get(&key)
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

/// All counters in the Prometheus text exposition format.
pub fn render() -> String {
    let reg = registry().lock().expect("metrics registry lock");
    let mut out = String::new();
    let mut last = "";
    for ((name, labels), v) in reg.iter() {
        if name != last {
            let _ = writeln!(out, "# TYPE {name} counter");
            last = name;
        }
        let v = v.load(Ordering::Relaxed);
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
    out
}
