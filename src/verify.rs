//! `livenessd verify`: checks a quorum proof offline, as a third party would — an
//! `/aggregate_downtime` answer, one event, a network change, an epoch certificate
//! (with its rows, or one row and its inclusion proof), or a JSON array of them — against the monitoring nodes' keys (each key's proof of possession checked
//! first): a static nodes file, or a network history checked from its genesis, the
//! proof then checked under the version it names.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::answers::AggregateDowntime;
use crate::certificate::{verify_row, Certificate, Row, RowProof, Table, CERTIFICATE_KIND};
use crate::config::{load_reference_nodes, Threshold};
use crate::events::{downtime_message, Event, MonitorSet};
use crate::network::history::History;
use crate::network::{SignedChange, CHANGE_KIND};

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
    let v = read_json(file)?;
    let set = std::sync::Arc::new(set);
    verify_value(&v, &|_| Ok(set.clone())).map_err(Unreadable)
}

fn read_json(file: &Path) -> Result<Value, Unreadable> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        Unreadable(format!(
            "{}: {}",
            file.display(),
            crate::os_error::reason(&e)
        ))
    })?;
    serde_json::from_str(&text)
        .map_err(|e| Unreadable(format!("{}: not JSON: {e}", file.display())))
}

/// Checks the proof in `file` under the network `history` (`GET
/// /v1/network/history`): the chain of changes from the genesis first, then the
/// proof with the monitoring nodes of the version it names (version 1 when it
/// names none).
pub fn verify_file_with_history(file: &Path, history: &Path) -> Result<Verdict, Unreadable> {
    let h: History = serde_json::from_value(read_json(history)?)
        .map_err(|e| Unreadable(format!("{}: not a network history: {e}", history.display())))?;
    let versions = match h.replay() {
        Ok(v) => v,
        Err(e) => {
            return Ok(Verdict::Invalid(format!(
                "the network history does not check out: {e}"
            )))
        }
    };
    let v = read_json(file)?;
    if let Some(c) = certificate_of(&v) {
        let named = c.get("network").and_then(Value::as_str).unwrap_or_default();
        if named != h.network {
            return Ok(Verdict::Invalid(format!(
                "the certificate is for network {named}, the history is of network {}",
                h.network
            )));
        }
    }
    let verdict = verify_value(&v, &|version| {
        let n = version.unwrap_or(1);
        versions
            .get((n as usize).wrapping_sub(1))
            .map(|s| s.monitors.clone())
            .ok_or_else(|| {
                format!(
                    "it names network version {n}, but the history ends at version {}",
                    versions.len()
                )
            })
    });
    match verdict {
        Ok(Verdict::Valid(s)) => Ok(Verdict::Valid(format!(
            "{s}\n(network {}, history of {} versions checked from its genesis)",
            h.network,
            versions.len()
        ))),
        Ok(x) => Ok(x),
        // A version the history lacks is a proof that cannot be trusted here.
        Err(e) if e.starts_with("it names network version") => Ok(Verdict::Invalid(e)),
        Err(e) => Err(Unreadable(e)),
    }
}

/// The monitoring nodes of a network version (`None`: the proof names none).
type SetOf<'a> = dyn Fn(Option<u64>) -> Result<Arc<MonitorSet>, String> + 'a;

fn version_of(v: &Value) -> Option<u64> {
    v.get("network_version").and_then(Value::as_u64)
}

/// The certificate in `v`: `v` itself, or its `certificate` (a certificate with
/// its rows, or one row with its proof).
fn certificate_of(v: &Value) -> Option<&Value> {
    let is = |c: &Value| c.get("kind").and_then(Value::as_str) == Some(CERTIFICATE_KIND);
    if is(v) {
        Some(v)
    } else {
        v.get("certificate").filter(|c| is(c))
    }
}

/// A certificate: its quorum proof under the version it names; then, if given,
/// its rows (all of them: the root is recomputed) or one row with its proof.
fn verify_certificate(v: &Value, c: &Value, sets: &SetOf<'_>) -> Result<Verdict, String> {
    let c = Certificate::from_value(c).map_err(|e| format!("not an epoch certificate: {e}"))?;
    let set = sets(Some(c.network_version))?;
    if let Err(e) = c.verify(&set) {
        return Ok(Verdict::Invalid(format!(
            "the certificate's proof fails: {e}"
        )));
    }
    let signed = format!(
        "signed by {} of {} monitoring nodes of network version {}",
        set.nodes().len() - c.non_signing_nodes.len(),
        set.nodes().len(),
        c.network_version
    );
    let rows = v
        .get("rows")
        .or_else(|| v.get("items"))
        .filter(|r| r.is_array());
    if let Some(next) = v.get("next").and_then(Value::as_str) {
        return Err(format!(
            "this holds one page of the epoch's rows (more follow: &cursor={next}); ask with \
             limit=1000 and every next page, and put all the rows under \"rows\""
        ));
    }
    if let Some(rows) = rows {
        let rows: Vec<Row> =
            serde_json::from_value(rows.clone()).map_err(|e| format!("malformed rows: {e}"))?;
        let table = Table::new(c.epoch, c.start, c.end, rows);
        if table.rows.len() as u64 != c.rows || table.root() != c.root {
            return Ok(Verdict::Invalid(format!(
                "the rows do not make the certified table: {} rows with root {}, certified {} with root {}",
                table.rows.len(),
                table.root(),
                c.rows,
                c.root
            )));
        }
        let breached = table.rows.iter().filter(|r| r.breached).count();
        return Ok(Verdict::Valid(format!(
            "valid: epoch {} [{}, {}) certified with {} rows ({breached} breached), root {}, {signed}",
            c.epoch, c.start, c.end, c.rows, c.root
        )));
    }
    if let (Some(row), Some(proof)) = (v.get("row"), v.get("proof")) {
        let row: Row =
            serde_json::from_value(row.clone()).map_err(|e| format!("malformed row: {e}"))?;
        let proof: RowProof =
            serde_json::from_value(proof.clone()).map_err(|e| format!("malformed proof: {e}"))?;
        return Ok(match verify_row(&c.root, c.rows, &row, &proof) {
            Ok(()) => Verdict::Valid(format!(
                "valid: in epoch {} [{}, {}) {} was monitored {} s, down {} s ({} {}), uptime {}.{:04} %{}; \
                 leaf {} of {} under root {}, {signed}",
                c.epoch,
                c.start,
                c.end,
                row.address,
                row.monitored_seconds,
                row.downtime_seconds,
                row.outages,
                if row.outages == 1 { "outage" } else { "outages" },
                row.uptime_ppm / 10_000,
                row.uptime_ppm % 10_000,
                if row.breached { " (below the network's minimum)" } else { "" },
                proof.index,
                c.rows,
                c.root
            )),
            Err(e) => Verdict::Invalid(e),
        });
    }
    Ok(Verdict::Valid(format!(
        "valid: epoch {} [{}, {}) certified with {} rows, root {} (no rows given to check against it), {signed}",
        c.epoch, c.start, c.end, c.rows, c.root
    )))
}

/// Checks a parsed proof.
pub fn verify_value(v: &Value, sets: &SetOf<'_>) -> Result<Verdict, String> {
    if let Value::Array(items) = v {
        if items.is_empty() {
            return Err("an empty list holds no proof".into());
        }
        let mut lines = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match verify_value(item, sets)? {
                Verdict::Valid(s) => lines.push(s),
                Verdict::Invalid(why) => return Ok(Verdict::Invalid(format!("item {i}: {why}"))),
            }
        }
        return Ok(Verdict::Valid(lines.join("\n")));
    }
    if v.get("kind").and_then(Value::as_str) == Some(CHANGE_KIND) {
        let c = SignedChange::from_value(v).map_err(|e| format!("not a network change: {e}"))?;
        let p = &c.proposal;
        let set = sets(Some(p.version.saturating_sub(1)))?;
        return Ok(
            match set.verify_quorum(&p.message(), &c.aggregated_signature, &c.non_signing_nodes) {
                Ok(()) => Verdict::Valid(format!(
                    "valid: the change to network version {} ({} operations), signed by {} of {} monitoring nodes of version {}",
                    p.version,
                    p.changes.len(),
                    set.nodes().len() - c.non_signing_nodes.len(),
                    set.nodes().len(),
                    p.version.saturating_sub(1)
                )),
                Err(e) => Verdict::Invalid(e.to_string()),
            },
        );
    }
    if let Some(c) = certificate_of(v) {
        return verify_certificate(v, c, sets);
    }
    let set = sets(version_of(v))?;
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
    Err("neither an /aggregate_downtime answer, an event, a network change nor an epoch certificate".into())
}
