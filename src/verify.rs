//! `livenessd verify`: checks a quorum proof offline, as a third party would — an
//! `/aggregate_downtime` answer, one event, or a batch (a JSON array of events) —
//! against the monitoring nodes' keys (each key's proof of possession checked first).

use std::path::Path;

use serde_json::Value;

use crate::answers::AggregateDowntime;
use crate::config::{load_reference_nodes, Threshold};
use crate::events::{downtime_message, Event, MonitorSet};

/// The outcome of a check that could read its input.
#[derive(Debug)]
pub enum Verdict {
    Valid(String),
    Invalid(String),
}

/// Input that could not be read or understood (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

/// Checks the proof in `file` against the nodes in `nodes` (reference
/// `monitoring_nodes.json` format).
pub fn verify_file(
    file: &Path,
    nodes: &Path,
    threshold: Threshold,
    allow_without_pop: bool,
) -> Result<Verdict, Unreadable> {
    let monitors = load_reference_nodes(nodes).map_err(|e| Unreadable(e.to_string()))?;
    let allow: Vec<String> = if allow_without_pop {
        monitors.iter().map(|m| m.id.clone()).collect()
    } else {
        Vec::new()
    };
    let set = match MonitorSet::new(&monitors, &allow, threshold) {
        Ok(s) => s,
        Err(e) => {
            return Ok(Verdict::Invalid(format!(
                "the nodes file cannot be trusted: {e}"
            )))
        }
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| Unreadable(format!("{}: {e}", file.display())))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Unreadable(format!("{}: not JSON: {e}", file.display())))?;
    verify_value(&v, &set).map_err(Unreadable)
}

/// Checks a parsed proof.
pub fn verify_value(v: &Value, set: &MonitorSet) -> Result<Verdict, String> {
    if let Value::Array(items) = v {
        if items.is_empty() {
            return Err("an empty list holds no proof".into());
        }
        let mut lines = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match verify_value(item, set)? {
                Verdict::Valid(s) => lines.push(s),
                Verdict::Invalid(why) => return Ok(Verdict::Invalid(format!("item {i}: {why}"))),
            }
        }
        return Ok(Verdict::Valid(lines.join("\n")));
    }
    if v.get("total_downtime_seconds").is_some() {
        let a: AggregateDowntime = serde_json::from_value(v.clone())
            .map_err(|e| format!("not an /aggregate_downtime answer: {e}"))?;
        let msg = downtime_message(
            &a.address,
            a.total_downtime_seconds,
            a.from_timestamp,
            a.to_timestamp,
        );
        return Ok(
            match set.verify_quorum(&msg, &a.aggregated_signature, &a.non_signing_nodes) {
                Ok(()) => Verdict::Valid(format!(
                    "valid: {} was down {} s in [{}, {}], signed by {} of {} monitoring nodes",
                    a.address,
                    a.total_downtime_seconds,
                    a.from_timestamp,
                    a.to_timestamp,
                    set.nodes().len() - a.non_signing_nodes.len(),
                    set.nodes().len()
                )),
                Err(e) => Verdict::Invalid(e.to_string()),
            },
        );
    }
    if v.get("state").is_some() {
        let e = Event::from_value(v).map_err(|e| format!("not an event: {e}"))?;
        return Ok(
            match set.verify_quorum(&e.message(), &e.aggregated_signature, &e.non_signing_nodes) {
                Ok(()) => Verdict::Valid(format!(
                    "valid: {} went {} at {}, signed by {} of {} monitoring nodes",
                    e.address,
                    e.state,
                    e.timestamp,
                    set.nodes().len() - e.non_signing_nodes.len(),
                    set.nodes().len()
                )),
                Err(err) => Verdict::Invalid(err.to_string()),
            },
        );
    }
    Err("neither an /aggregate_downtime answer nor an event".into())
}
