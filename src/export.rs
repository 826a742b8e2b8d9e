//! `livenessd export`: what rewards and SLAs are paid from — certified epochs,
//! each export naming the certificate roots it was computed from.
//!
//! - `rewards`: an EigenLayer `OperatorDirectedRewardsSubmission` (ELIP-001) for a
//!   range of whole, certified days. Each target address that is an operator
//!   address (`0x` + 40 hex digits) gets a share of `--total` by a curve of its
//!   uptime over the range: `weight = max(0, uptime_ppm − floor_ppm) ^ exponent`
//!   (uptime over the monitored time of every epoch of the range), `amount =
//!   ⌊total × weight / Σ weights⌋`, the few units left by the rounding going one
//!   each to the largest remainders (ties: lower address first), so the amounts
//!   sum to `--total` exactly. Operators whose amount is 0 are left out (the
//!   contract refuses zero amounts); operators are in ascending order.
//! - `sla`: one row per target over the range (CSV or Markdown).
//!
//! Certificates are fetched from a node and verified before use, against the
//! network's history (from the node, or a trusted file with `--network`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use serde::Serialize;
use serde_json::Value;

use crate::certificate::{Certificate, Row, PPM};
use crate::network::history::History;

/// EigenLayer's rewards calculation interval: periods start and last whole days.
pub const DAY: i64 = 86_400;

/// One certified epoch with its rows, verified.
#[derive(Debug, Clone)]
pub struct Certified {
    pub certificate: Certificate,
    pub rows: Vec<Row>,
}

/// A target's figures over a range of epochs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub address: String,
    pub monitored_seconds: i64,
    pub downtime_seconds: i64,
    pub outages: u64,
    /// Epochs of the range in which its row is marked breached.
    pub breached_epochs: u64,
    /// Epochs of the range in which it has a row.
    pub epochs: u64,
    /// Over the monitored time of the range, parts per million.
    pub uptime_ppm: u64,
}

/// Sums the rows of `epochs`, per address (sorted).
pub fn totals(epochs: &[Certified]) -> Vec<Totals> {
    let mut by: BTreeMap<&str, Totals> = BTreeMap::new();
    for e in epochs {
        for r in &e.rows {
            let t = by.entry(&r.address).or_insert_with(|| Totals {
                address: r.address.clone(),
                monitored_seconds: 0,
                downtime_seconds: 0,
                outages: 0,
                breached_epochs: 0,
                epochs: 0,
                uptime_ppm: 0,
            });
            t.monitored_seconds += r.monitored_seconds;
            t.downtime_seconds += r.downtime_seconds;
            t.outages += r.outages;
            t.breached_epochs += u64::from(r.breached);
            t.epochs += 1;
        }
    }
    by.into_values()
        .map(|mut t| {
            t.uptime_ppm = if t.monitored_seconds > 0 {
                let up = (t.monitored_seconds - t.downtime_seconds).max(0) as u128;
                (up * PPM as u128 / t.monitored_seconds as u128) as u64
            } else {
                0
            };
            t
        })
        .collect()
}

/// The reward curve: `max(0, uptime_ppm − floor_ppm) ^ exponent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Curve {
    pub floor_ppm: u64,
    pub exponent: u32,
}

impl Curve {
    pub fn weight(&self, uptime_ppm: u64) -> u128 {
        (uptime_ppm.saturating_sub(self.floor_ppm) as u128).pow(self.exponent)
    }
}

/// Splits `total` by `weights` (largest remainders): the parts sum to `total`.
/// Ties in remainder go to the lower index. `None` if every weight is 0.
pub fn allocate(total: u128, weights: &[u128]) -> Option<Vec<u128>> {
    use num_bigint::BigUint;
    let sum: BigUint = weights.iter().map(|w| BigUint::from(*w)).sum();
    if sum == BigUint::from(0u8) {
        return None;
    }
    let total_b = BigUint::from(total);
    let mut parts = Vec::with_capacity(weights.len());
    let mut rema = Vec::with_capacity(weights.len());
    for w in weights {
        let x = &total_b * BigUint::from(*w);
        parts.push(u128::try_from(&x / &sum).expect("at most total"));
        rema.push(x % &sum);
    }
    let given: u128 = parts.iter().sum();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|a, b| rema[*b].cmp(&rema[*a]).then(a.cmp(b)));
    for &i in order.iter().take((total - given) as usize) {
        parts[i] += 1;
    }
    Some(parts)
}

/// A strategy and its multiplier (ELIP-001's `StrategyAndMultiplier`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StrategyAndMultiplier {
    pub strategy: String,
    pub multiplier: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatorReward {
    pub operator: String,
    pub amount: String,
}

/// ELIP-001's `OperatorDirectedRewardsSubmission`, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RewardsSubmission {
    pub strategies_and_multipliers: Vec<StrategyAndMultiplier>,
    pub token: String,
    pub operator_rewards: Vec<OperatorReward>,
    pub start_timestamp: i64,
    pub duration: i64,
    pub description: String,
}

/// What `export rewards` is asked for.
#[derive(Debug, Clone)]
pub struct RewardsSpec {
    pub token: String,
    pub strategies: Vec<StrategyAndMultiplier>,
    /// In the token's smallest unit.
    pub total: u128,
    pub curve: Curve,
    /// Now: the period must have ended (a retroactive submission).
    pub now: i64,
}

/// An EVM address, lower case; `None` if `s` is not one.
pub fn evm_address(s: &str) -> Option<String> {
    let h = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    (h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("0x{}", h.to_ascii_lowercase()))
}

/// The period `[start, end)` the certified epochs cover; they must be consecutive.
pub fn period(epochs: &[Certified]) -> anyhow::Result<(i64, i64)> {
    let first = epochs
        .first()
        .ok_or_else(|| anyhow!("no certified epoch in the range"))?;
    let mut end = first.certificate.start;
    for e in epochs {
        if e.certificate.start != end {
            bail!(
                "epoch {} is not certified (the range has a gap before epoch {})",
                e.certificate.epoch.saturating_sub(1),
                e.certificate.epoch
            );
        }
        end = e.certificate.end;
    }
    Ok((first.certificate.start, end))
}

/// The rewards submission for `epochs` (verified, consecutive, ascending).
pub fn rewards(
    network: &str,
    epochs: &[Certified],
    spec: &RewardsSpec,
) -> anyhow::Result<(RewardsSubmission, Vec<String>)> {
    let (start, end) = period(epochs)?;
    if start.rem_euclid(DAY) != 0 || (end - start).rem_euclid(DAY) != 0 {
        bail!(
            "the epochs cover [{start}, {end}), which is not whole UTC days: EigenLayer rewards \
             periods start at midnight UTC and last whole days (use epochs of a day, or a \
             multiple, starting at midnight: epoch.genesis a multiple of 86400)"
        );
    }
    if end > spec.now {
        bail!("the period ends at {end}, in the future: rewards submissions are retroactive");
    }
    if spec.strategies.is_empty() {
        bail!("at least one --strategy is needed");
    }
    let mut notes = Vec::new();
    let mut ops: Vec<(String, u64)> = Vec::new();
    for t in totals(epochs) {
        match evm_address(&t.address) {
            Some(a) => ops.push((a, t.uptime_ppm)),
            None => notes.push(format!(
                "{} is not an operator address (0x + 40 hex digits): left out",
                t.address
            )),
        }
    }
    ops.sort();
    if ops.windows(2).any(|w| w[0].0 == w[1].0) {
        bail!("two targets name the same operator address (in different letter cases)");
    }
    let weights: Vec<u128> = ops.iter().map(|(_, u)| spec.curve.weight(*u)).collect();
    let amounts = allocate(spec.total, &weights).ok_or_else(|| {
        anyhow!("no operator's uptime is above the curve's floor: nothing to pay")
    })?;
    let operator_rewards = ops
        .iter()
        .zip(&amounts)
        .filter(|(_, a)| **a > 0)
        .map(|((op, _), a)| OperatorReward {
            operator: op.clone(),
            amount: a.to_string(),
        })
        .collect();
    let roots: Vec<String> = epochs
        .iter()
        .map(|e| format!("{}:{}", e.certificate.epoch, e.certificate.root))
        .collect();
    let description = format!(
        "livenessd uptime rewards, network {network}, epochs {}-{}; certificate roots {}",
        epochs[0].certificate.epoch,
        epochs[epochs.len() - 1].certificate.epoch,
        roots.join(",")
    );
    let mut strategies = spec.strategies.clone();
    strategies.sort_by(|a, b| a.strategy.cmp(&b.strategy));
    Ok((
        RewardsSubmission {
            strategies_and_multipliers: strategies,
            token: spec.token.clone(),
            operator_rewards,
            start_timestamp: start,
            duration: end - start,
            description,
        },
        notes,
    ))
}

fn percent(ppm: u64) -> String {
    format!("{}.{:04}", ppm / 10_000, ppm % 10_000)
}

/// The SLA report: CSV (`markdown` false) or a Markdown table, one row per target.
pub fn sla(network: &str, epochs: &[Certified], markdown: bool) -> anyhow::Result<String> {
    let (start, end) = period(epochs)?;
    let rows = totals(epochs);
    let roots: Vec<String> = epochs
        .iter()
        .map(|e| format!("{}={}", e.certificate.epoch, e.certificate.root))
        .collect();
    let mut out = String::new();
    if markdown {
        out.push_str(&format!(
            "# Uptime report\n\nNetwork `{network}`, epochs {}–{} ([{start}, {end})), from epoch \
             certificates (roots: {}).\n\n",
            epochs[0].certificate.epoch,
            epochs[epochs.len() - 1].certificate.epoch,
            roots
                .iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        out.push_str(
            "| target | monitored s | downtime s | outages | uptime % | epochs breached |\n",
        );
        out.push_str("|---|---:|---:|---:|---:|---:|\n");
        for t in &rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} of {} |\n",
                t.address.replace('|', "\\|"),
                t.monitored_seconds,
                t.downtime_seconds,
                t.outages,
                percent(t.uptime_ppm),
                t.breached_epochs,
                t.epochs
            ));
        }
    } else {
        out.push_str("address,monitored_seconds,downtime_seconds,outages,uptime_percent,breached_epochs,epochs,period_start,period_end,certificate_roots\n");
        let roots = roots.join(" ");
        for t in &rows {
            let quoted = if t.address.contains([',', '"', '\n']) {
                format!("\"{}\"", t.address.replace('"', "\"\""))
            } else {
                t.address.clone()
            };
            out.push_str(&format!(
                "{quoted},{},{},{},{},{},{},{start},{end},{roots}\n",
                t.monitored_seconds,
                t.downtime_seconds,
                t.outages,
                percent(t.uptime_ppm),
                t.breached_epochs,
                t.epochs
            ));
        }
    }
    Ok(out)
}

/// Fetches certified epochs `from..=to` from `node` and verifies each (proof and
/// rows) against the network history: `history` if given, else the node's own.
pub async fn fetch(
    node: &str,
    from: i64,
    to: i64,
    history: Option<&Path>,
) -> anyhow::Result<(String, Vec<Certified>)> {
    if to < from {
        bail!("--to-epoch {to} is before --from-epoch {from}");
    }
    if to - from >= 3_660 {
        bail!("at most 3660 epochs at once");
    }
    let http = crate::http_client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let get = |path: String| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("{}{path}", node.trim_end_matches('/')))
                .send()
                .await
                .with_context(|| format!("{node}{path}"))?;
            let status = r.status();
            let v: Value = r.json().await.with_context(|| format!("{node}{path}"))?;
            if !status.is_success() {
                bail!(
                    "{node}{path}: {status}: {}",
                    v["detail"].as_str().unwrap_or_default()
                );
            }
            anyhow::Ok(v)
        }
    };
    let h: History = match history {
        Some(p) => serde_json::from_str(
            &std::fs::read_to_string(p)
                .map_err(|e| anyhow!("{}: {}", p.display(), crate::os_error::reason(&e)))?,
        )
        .with_context(|| format!("{}: not a network history", p.display()))?,
        None => {
            // Every page, joined.
            let mut h: History =
                serde_json::from_value(get("/v1/network/history?limit=1000".into()).await?)
                    .context("the node's network history")?;
            while let Some(cursor) = h.next.take() {
                let page: History = serde_json::from_value(
                    get(format!("/v1/network/history?limit=1000&cursor={cursor}")).await?,
                )
                .context("the node's network history")?;
                h.changes.extend(page.changes);
                h.next = page.next;
            }
            h
        }
    };
    let versions = h
        .replay()
        .map_err(|e| anyhow!("the network history does not check out: {e}"))?;
    let mut out = Vec::new();
    for n in from..=to {
        let mut rows = Vec::new();
        let mut cursor = String::new();
        let cert: Certificate = loop {
            let mut path = format!("/v1/certificates/epochs/{n}?limit=1000");
            if !cursor.is_empty() {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let v = get(path).await?;
            let page: Vec<Row> = serde_json::from_value(v["items"].clone())
                .with_context(|| format!("epoch {n}: malformed rows"))?;
            rows.extend(page);
            match v["next"].as_str() {
                Some(next) => cursor = next.to_owned(),
                None => {
                    break serde_json::from_value(v["certificate"].clone())
                        .with_context(|| format!("epoch {n}: malformed certificate"))?
                }
            }
        };
        if cert.network != h.network {
            bail!(
                "epoch {n}: the certificate is for network {}, not {}",
                cert.network,
                h.network
            );
        }
        let set = versions
            .get((cert.network_version as usize).wrapping_sub(1))
            .ok_or_else(|| anyhow!("epoch {n}: signed under a version the history lacks"))?;
        cert.verify(&set.monitors)
            .map_err(|e| anyhow!("epoch {n}: the certificate's proof fails: {e}"))?;
        let table = crate::certificate::Table::new(cert.epoch, cert.start, cert.end, rows);
        if table.root() != cert.root || table.rows.len() as u64 != cert.rows {
            bail!("epoch {n}: the rows the node gave do not make the certified root");
        }
        out.push(Certified {
            certificate: cert,
            rows: table.rows,
        });
    }
    Ok((h.network, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certified(epoch: i64, rows: &[(&str, i64, i64)]) -> Certified {
        let start = epoch * DAY;
        let rows: Vec<Row> = rows
            .iter()
            .map(|(a, m, d)| Row::new(a, *m, *d, u64::from(*d > 0), 0))
            .collect();
        let table = crate::certificate::Table::new(epoch, start, start + DAY, rows);
        Certified {
            certificate: Certificate::new(table.statement("n", 1), String::new(), vec![]),
            rows: table.rows,
        }
    }

    fn spec(total: u128, curve: Curve) -> RewardsSpec {
        RewardsSpec {
            token: "0x00000000000000000000000000000000000000aa".into(),
            strategies: vec![StrategyAndMultiplier {
                strategy: "0x00000000000000000000000000000000000000bb".into(),
                multiplier: "1000000000000000000".into(),
            }],
            total,
            curve,
            now: i64::MAX,
        }
    }

    /// Pays in proportion to uptime.
    const LINEAR: Curve = Curve {
        floor_ppm: 0,
        exponent: 1,
    };

    const A: &str = "0x000000000000000000000000000000000000000A";
    const B: &str = "0x000000000000000000000000000000000000000b";
    const C: &str = "0x000000000000000000000000000000000000000c";

    #[test]
    fn amounts_sum_to_the_total_in_ascending_operator_order() {
        let epochs = [
            certified(
                10,
                &[
                    (C, DAY, 0),
                    (A, DAY, 8_640),
                    (B, DAY, 100),
                    ("not-an-operator", DAY, 0),
                ],
            ),
            certified(11, &[(A, DAY, 0), (B, DAY, 0), (C, DAY, 43_200)]),
        ];
        for total in [1u128, 7, 1_000_000_000_000_000_000, u128::MAX / 4] {
            for curve in [
                LINEAR,
                Curve {
                    floor_ppm: 900_000,
                    exponent: 2,
                },
            ] {
                let (s, notes) = rewards("n", &epochs, &spec(total, curve)).unwrap();
                let sum: u128 = s
                    .operator_rewards
                    .iter()
                    .map(|r| r.amount.parse::<u128>().unwrap())
                    .sum();
                assert_eq!(sum, total, "{curve:?} {total}");
                let ops: Vec<&str> = s
                    .operator_rewards
                    .iter()
                    .map(|r| r.operator.as_str())
                    .collect();
                assert!(ops.windows(2).all(|w| w[0] < w[1]), "{ops:?}");
                assert!(s.operator_rewards.iter().all(|r| r.amount != "0"));
                assert_eq!((s.start_timestamp, s.duration), (10 * DAY, 2 * DAY));
                assert_eq!(s.start_timestamp % DAY, 0);
                assert!(s.description.contains(&epochs[0].certificate.root));
                assert_eq!(notes.len(), 1);
            }
        }
        // Linear: shares follow uptime. A: 95 %, B: 99.94 %, C: 75 %.
        let (s, _) = rewards("n", &epochs, &spec(1_000_000, LINEAR)).unwrap();
        let amounts: Vec<u128> = s
            .operator_rewards
            .iter()
            .map(|r| r.amount.parse().unwrap())
            .collect();
        assert!(
            amounts[1] > amounts[0] && amounts[0] > amounts[2],
            "{amounts:?}"
        );
        // Under a 90 % floor, C (75 %) gets nothing and is left out.
        let (s, _) = rewards(
            "n",
            &epochs,
            &spec(
                1_000_000,
                Curve {
                    floor_ppm: 900_000,
                    exponent: 1,
                },
            ),
        )
        .unwrap();
        assert_eq!(s.operator_rewards.len(), 2);
        assert_eq!(s.operator_rewards[0].operator, A.to_lowercase());
    }

    #[test]
    fn periods_must_be_whole_past_days_without_gaps() {
        let mut short = certified(10, &[(A, 600, 0)]);
        short.certificate.end = short.certificate.start + 600;
        assert!(rewards("n", &[short], &spec(10, LINEAR))
            .unwrap_err()
            .to_string()
            .contains("whole UTC days"));
        let gap = [certified(10, &[(A, DAY, 0)]), certified(12, &[(A, DAY, 0)])];
        assert!(rewards("n", &gap, &spec(10, LINEAR)).is_err());
        let mut s = spec(10, LINEAR);
        s.now = 10 * DAY + 10;
        assert!(rewards("n", &[certified(10, &[(A, DAY, 0)])], &s)
            .unwrap_err()
            .to_string()
            .contains("retroactive"));
        // Nobody above the floor: nothing to pay, said so.
        let e = [certified(10, &[(A, DAY, DAY)])];
        assert!(rewards("n", &e, &spec(10, LINEAR)).is_err());
    }

    #[test]
    fn allocation_by_largest_remainders() {
        assert_eq!(allocate(10, &[1, 1, 1]), Some(vec![4, 3, 3]));
        assert_eq!(allocate(2, &[1, 1, 1]), Some(vec![1, 1, 0]));
        assert_eq!(allocate(5, &[0, 3]), Some(vec![0, 5]));
        assert_eq!(allocate(5, &[0, 0]), None);
        let big = allocate(u128::MAX, &[u128::MAX, u128::MAX, 1]).unwrap();
        assert_eq!(big.iter().sum::<u128>(), u128::MAX);
    }

    #[test]
    fn the_sla_report_is_csv_or_markdown_with_its_roots() {
        let epochs = [certified(10, &[(A, DAY, 864), ("x,y", DAY, 0)])];
        let csv = sla("n", &epochs, false).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].starts_with(&format!("{A},86400,864,1,99.0000,0,1,")),
            "{csv}"
        );
        assert!(lines[2].starts_with("\"x,y\","), "{csv}");
        assert!(csv.contains(&epochs[0].certificate.root));
        let md = sla("n", &epochs, true).unwrap();
        assert!(
            md.contains("| 99.0000 |") && md.contains(&epochs[0].certificate.root),
            "{md}"
        );
    }
}
