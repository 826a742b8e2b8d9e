//! Epoch certificates: one table per settled epoch — for every target the network
//! monitored in it, its downtime, outages, monitored time and uptime — committed
//! to by a Merkle root (RFC 6962: SHA-256, leaves `0x00 ‖ row`, nodes `0x01 ‖ left
//! ‖ right`, rows sorted by address) and signed by a stake quorum of the monitoring
//! nodes over a domain-separated message. Posted to Zellular, the first valid one
//! of an epoch is stored by every replica; anyone can check it, or one row with its
//! inclusion proof, offline.
//!
//! Byte for byte (what a verifier in another language computes):
//! - a row is the JSON object `{"address", "breached", "downtime_seconds",
//!   "monitored_seconds", "outages", "uptime_ppm"}` with its keys in that (sorted)
//!   order and no whitespace — Python's `json.dumps(row, sort_keys=True,
//!   separators=(",", ":"), ensure_ascii=False).encode()`;
//! - leaf hash `SHA-256(0x00 ‖ row)`, node hash `SHA-256(0x01 ‖ left ‖ right)`, the
//!   tree of RFC 6962 §2.1 (the left subtree holds the largest power of two below
//!   the size); an empty table's root is `SHA-256("")`;
//! - the signed message is the ASCII text
//!   `livenessd-epoch-certificate:v1:<network id>:<network version>:<epoch>:<start>:<end>:<rows>:<root hex>`,
//!   signed with the BLS12-381 proof-of-possession ciphersuite (blspy `PopSchemeMPL`)
//!   like every other livenessd message.

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{InclusionProof, RootHash};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::events::{EventError, MonitorSet};

/// The `kind` of a certificate in a batch (an entry without `address`, which the
/// reference node skips).
pub const CERTIFICATE_KIND: &str = "livenessd.epoch_certificate";

/// Parts per million: uptime is an integer so that every replica writes the same bytes.
pub const PPM: u64 = 1_000_000;

/// One target's figures for one epoch. The fields are declared in sorted order:
/// serialised as is, a row is its canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub address: String,
    /// Uptime below the network's `epoch.min_uptime_ppm` (never when it is 0).
    pub breached: bool,
    pub downtime_seconds: i64,
    /// Seconds of the epoch during which the network monitored the target.
    pub monitored_seconds: i64,
    /// Down intervals overlapping the monitored part (one that began earlier counts too).
    pub outages: u64,
    /// `⌊(monitored − downtime) × 1,000,000 / monitored⌋`.
    pub uptime_ppm: u64,
}

impl Row {
    /// A row from the figures; `monitored` must be positive.
    pub fn new(
        address: &str,
        monitored: i64,
        downtime: i64,
        outages: u64,
        min_uptime_ppm: u64,
    ) -> Row {
        let monitored_u = monitored.max(1) as u128;
        let up = (monitored - downtime).clamp(0, monitored.max(0)) as u128;
        let uptime_ppm = (up * PPM as u128 / monitored_u) as u64;
        Row {
            address: address.to_owned(),
            breached: uptime_ppm < min_uptime_ppm,
            downtime_seconds: downtime,
            monitored_seconds: monitored,
            outages,
            uptime_ppm,
        }
    }

    /// The leaf bytes: the row's canonical JSON.
    pub fn leaf(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("serialisable")
    }
}

/// The table of one epoch, rows sorted by address (bytewise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub epoch: i64,
    pub start: i64,
    /// Exclusive.
    pub end: i64,
    pub rows: Vec<Row>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

impl Table {
    pub fn new(epoch: i64, start: i64, end: i64, mut rows: Vec<Row>) -> Table {
        rows.sort_by(|a, b| a.address.as_bytes().cmp(b.address.as_bytes()));
        Table {
            epoch,
            start,
            end,
            rows,
        }
    }

    fn tree(&self) -> MemoryBackedTree<Sha256, Vec<u8>> {
        let mut t = MemoryBackedTree::new();
        for r in &self.rows {
            t.push(r.leaf());
        }
        t
    }

    /// The Merkle root, hex.
    pub fn root(&self) -> String {
        hex(self.tree().root().as_bytes())
    }

    /// The row of `address` with its inclusion proof.
    pub fn proof(&self, address: &str) -> Option<(Row, RowProof)> {
        let i = self.rows.iter().position(|r| r.address == address)?;
        let p = self.tree().prove_inclusion(i);
        let path = p.as_bytes().chunks(32).map(hex).collect();
        Some((
            self.rows[i].clone(),
            RowProof {
                index: i as u64,
                path,
            },
        ))
    }

    /// The statement a node signs about this table.
    pub fn statement(&self, network: &str, network_version: u64) -> Statement {
        Statement {
            network: network.to_owned(),
            network_version,
            epoch: self.epoch,
            start: self.start,
            end: self.end,
            rows: self.rows.len() as u64,
            root: self.root(),
        }
    }
}

/// Where a row sits in its table and the sibling hashes from its leaf up to the
/// root (RFC 6962 §2.1.1's audit path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowProof {
    pub index: u64,
    pub path: Vec<String>,
}

/// Checks that `row` is leaf `proof.index` of the table of `rows` rows whose root
/// is `root`.
pub fn verify_row(root: &str, rows: u64, row: &Row, proof: &RowProof) -> Result<(), String> {
    let digest = unhex(root)
        .filter(|b| b.len() == 32)
        .ok_or("the root is not 32 bytes of hex")?;
    let mut bytes = Vec::with_capacity(proof.path.len() * 32);
    for h in &proof.path {
        let b = unhex(h)
            .filter(|b| b.len() == 32)
            .ok_or("a proof hash is not 32 bytes of hex")?;
        bytes.extend(b);
    }
    let root = RootHash::<Sha256>::new(
        ct_merkle::array::Array::try_from(digest.as_slice()).map_err(|_| "bad root")?,
        rows,
    );
    let index = proof.index;
    let proof = InclusionProof::<Sha256>::try_from_bytes(bytes).map_err(|e| format!("{e:?}"))?;
    root.verify_inclusion(&row.leaf(), index, &proof)
        .map_err(|e| format!("the row is not in the table: {e:?}"))
}

/// What a certificate asserts, and what each node signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub network: String,
    /// The version whose monitoring nodes sign it.
    pub network_version: u64,
    pub epoch: i64,
    pub start: i64,
    pub end: i64,
    pub rows: u64,
    pub root: String,
}

impl Statement {
    /// The signed message; it can never read as a state, downtime or network-change
    /// message.
    pub fn message(&self) -> String {
        format!(
            "livenessd-epoch-certificate:v1:{}:{}:{}:{}:{}:{}:{}",
            self.network,
            self.network_version,
            self.epoch,
            self.start,
            self.end,
            self.rows,
            self.root
        )
    }
}

/// A certificate with its quorum proof, as posted to Zellular and stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub kind: String,
    pub network: String,
    pub network_version: u64,
    pub epoch: i64,
    pub start: i64,
    pub end: i64,
    pub rows: u64,
    pub root: String,
    pub aggregated_signature: String,
    #[serde(default)]
    pub non_signing_nodes: Vec<String>,
}

impl Certificate {
    pub fn new(s: Statement, aggregated_signature: String, non_signing_nodes: Vec<String>) -> Self {
        Certificate {
            kind: CERTIFICATE_KIND.into(),
            network: s.network,
            network_version: s.network_version,
            epoch: s.epoch,
            start: s.start,
            end: s.end,
            rows: s.rows,
            root: s.root,
            aggregated_signature,
            non_signing_nodes,
        }
    }

    pub fn statement(&self) -> Statement {
        Statement {
            network: self.network.clone(),
            network_version: self.network_version,
            epoch: self.epoch,
            start: self.start,
            end: self.end,
            rows: self.rows,
            root: self.root.clone(),
        }
    }

    /// Checks the quorum proof against `set` (the monitoring nodes of the version
    /// it names).
    pub fn verify(&self, set: &MonitorSet) -> Result<(), EventError> {
        set.verify_quorum(
            &self.statement().message(),
            &self.aggregated_signature,
            &self.non_signing_nodes,
        )
    }

    /// Reads a batch item that says it is a certificate.
    pub fn from_value(v: &Value) -> Result<Certificate, EventError> {
        let c: Certificate = serde_json::from_value(v.clone())
            .map_err(|_| EventError::Malformed("epoch certificate does not parse"))?;
        if c.kind != CERTIFICATE_KIND {
            return Err(EventError::Malformed("unknown kind"));
        }
        Ok(c)
    }
}

/// One node's signature of an epoch's statement (`GET
/// /v1/certificates/epochs/{n}/signature`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateSignature {
    pub node_id: String,
    #[serde(flatten)]
    pub statement: Statement,
    pub signature: String,
}

/// SHA-256 of `bytes`, hex (for exports that name a root).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Vec<Row> {
        (0..n)
            .map(|i| Row::new(&format!("0xT{i:03}"), 100, i as i64, 1, 990_000))
            .collect()
    }

    #[test]
    fn a_row_is_its_canonical_json_with_integer_uptime() {
        let r = Row::new("0xA", 86_400, 864, 2, 990_000);
        assert_eq!(
            String::from_utf8(r.leaf()).unwrap(),
            r#"{"address":"0xA","breached":false,"downtime_seconds":864,"monitored_seconds":86400,"outages":2,"uptime_ppm":990000}"#
        );
        let r = Row::new("0xA", 86_400, 865, 2, 990_000);
        assert_eq!(r.uptime_ppm, 989_988);
        assert!(r.breached);
        assert!(!Row::new("0xA", 10, 10, 1, 0).breached);
    }

    #[test]
    fn the_root_is_rfc6962_and_every_row_proves_its_inclusion() {
        // RFC 6962 by hand for three leaves: ((a, b), c).
        let t = Table::new(1, 0, 10, rows(3));
        let leaf = |r: &Row| {
            let mut h = Sha256::new();
            h.update([0u8]);
            h.update(r.leaf());
            h.finalize().to_vec()
        };
        let node = |l: &[u8], r: &[u8]| {
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(l);
            h.update(r);
            h.finalize().to_vec()
        };
        let ab = node(&leaf(&t.rows[0]), &leaf(&t.rows[1]));
        assert_eq!(t.root(), hex(&node(&ab, &leaf(&t.rows[2]))));
        assert_eq!(Table::new(1, 0, 10, vec![]).root(), sha256_hex(b""));
        for n in [1, 2, 5, 8, 13] {
            let t = Table::new(1, 0, 10, rows(n));
            let root = t.root();
            for r in &t.rows {
                let (row, proof) = t.proof(&r.address).unwrap();
                verify_row(&root, n as u64, &row, &proof).unwrap();
                let mut bad = row.clone();
                bad.downtime_seconds += 1;
                assert!(verify_row(&root, n as u64, &bad, &proof).is_err());
            }
        }
    }

    #[test]
    fn rows_are_sorted_whatever_the_order_given() {
        let mut r = rows(6);
        r.reverse();
        assert_eq!(
            Table::new(1, 0, 10, r).root(),
            Table::new(1, 0, 10, rows(6)).root()
        );
    }

    #[test]
    fn the_message_is_domain_separated() {
        let s = Table::new(3, 30, 40, rows(2)).statement("ab", 2);
        let m = s.message();
        assert!(m.starts_with("livenessd-epoch-certificate:v1:ab:2:3:30:40:2:"));
        assert!(!m.starts_with("Address: ") && !m.starts_with("livenessd-network-change"));
    }
}
